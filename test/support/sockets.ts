// Socket helpers the data-plane and protocol tests share.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Address } from '../../src/protocol/address.js';

/** How a socket's reading ended: 'end' (clean EOF) or the error code, with the bytes read and their SHA-256. */
export interface Outcome {
  bytes: number;
  sha: string;
  end: string;
}

/** Reads `s` to its end; a clean EOF is 'end', an error its code. */
export function outcome(s: Socket): Promise<Outcome> {
  const hash = createHash('sha256');
  let bytes = 0;
  s.on('data', (c: Buffer) => {
    bytes += c.length;
    hash.update(c);
  });
  return new Promise((resolve) => {
    let settled = false;
    const done = (end: string) => {
      if (settled) return;
      settled = true;
      resolve({ bytes, sha: hash.digest('hex'), end });
    };
    // libuv reports EOF after a hang-up following a partial read, so a reset that
    // arrives while data waits in the kernel shows as 'end'; a write of nothing
    // brings out the reset's pending error (see passEnd in the forwarder).
    s.once('end', () => {
      if (s.writable && !s.writableEnded) s.write(Buffer.alloc(0), (err) => done(err ? ((err as NodeJS.ErrnoException).code ?? err.message) : 'end'));
      else done('end');
    });
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code ?? e.message));
  });
}

/** Whether a TCP connection to host:port opens. */
export function canConnect(address: string): Promise<boolean> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const s = connect({ host: host!, port: Number(port) });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A TCP relay whose connections to `target` leave from `localAddress`: the
 * gateway then sees a second caller address on this one machine.
 */
export async function relayFrom(localAddress: string, target: string): Promise<{ address: string; close(): Promise<void> }> {
  const [host, port] = target.split(':');
  const server: Server = createServer((client) => {
    const upstream = connect({ host: host!, port: Number(port), localAddress });
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: p } = server.address() as import('node:net').AddressInfo;
  return {
    address: `127.0.0.1:${p}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A target on loopback that sends back what it reads. */
export async function echoServer(): Promise<{ server: Server; address: Address }> {
  const server = createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, address: { host: '127.0.0.1', port: (server.address() as { port: number }).port } };
}

/** How a client connection ended, updated as it happens: 'open' while it lives, else whether it was reset. */
export function watchEnd(s: Socket): { state: 'open' | 'reset' | 'closed' } {
  const w = { state: 'open' as 'open' | 'reset' | 'closed' };
  s.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE') w.state = 'reset';
  });
  s.on('close', () => {
    if (w.state === 'open') w.state = 'closed';
  });
  return w;
}

/** A connected TCP pair on loopback: `ours` (the accepted end) and `peer`; errors on either are ignored. */
export async function socketPair(): Promise<{ ours: Socket; peer: Socket; close: () => Promise<void> }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const peer = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port });
  const [[ours]] = await Promise.all([once(server, 'connection') as Promise<[Socket]>, once(peer, 'connect')]);
  for (const s of [ours, peer]) s.on('error', () => {});
  return {
    ours,
    peer,
    close: async () => {
      ours.destroy();
      peer.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A target that answers each connection with "hi", reads to the end and ends too (half-close allowed). */
export async function target(): Promise<{ server: Server; port: number; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    s.on('error', () => {});
    s.write('hi');
    s.on('end', () => s.end());
    s.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port, sockets };
}

/** A connection through the listener that has received the target's "hi". */
export async function through(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise<void>((resolve) => s.once('data', () => resolve()));
  return s;
}

/**
 * Connects to `to` (from `localAddress` when given), sends `text` and resolves with what came
 * back once it is all there (the echo), or with the error or close that ended it first.
 */
export function exchange(to: Address | string, text: string, localAddress?: string): Promise<{ data: string; error?: string }> {
  const a = typeof to === 'string' ? { host: to.slice(0, to.lastIndexOf(':')), port: Number(to.slice(to.lastIndexOf(':') + 1)) } : to;
  return new Promise((resolve) => {
    const s = connect({ host: a.host, port: a.port, ...(localAddress ? { localAddress } : {}) });
    let data = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(text));
    s.on('data', (d: string) => {
      data += d;
      if (data.length >= text.length) {
        s.destroy();
        resolve({ data });
      }
    });
    s.on('error', (err: NodeJS.ErrnoException) => resolve({ data, error: err.code ?? err.message }));
    s.on('close', () => resolve({ data, error: 'closed' }));
  });
}
