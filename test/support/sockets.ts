// Socket helpers the data-plane and protocol tests share.
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';

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
