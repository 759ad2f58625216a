// Sample producer: listens on one or more addresses and sends every connection the
// same deterministic stream, so any consumer with the seed can verify what it got.
import { createServer, type Server, type Socket } from 'node:net';
import { formatAddress, type Address } from '../protocol/address.js';
import { Pattern, writePattern } from './data.js';

export interface ProducerOptions {
  listen: Address[];
  /** Bytes sent on each connection. */
  bytes: number;
  seed: number;
  /** When given, `done` resolves once this many connections have been served. */
  count?: number;
  /** Told about each connection that fails; the producer keeps running. */
  onConnectionError?: (err: Error, remote: string) => void;
}

export interface Producer {
  /** The bound addresses (port 0 replaced by the port picked). */
  readonly addresses: Address[];
  /** Connections that got all their bytes and then closed cleanly. */
  readonly served: number;
  /** Connections that broke off before that. */
  readonly failed: number;
  /** Resolves after `count` connections were served; rejects if closed before. Never settles without `count`. */
  done: Promise<void>;
  /** Stops listening and drops live connections. */
  close(): Promise<void>;
}

export async function startProducer(opts: ProducerOptions): Promise<Producer> {
  if (opts.listen.length === 0) throw new Error('producer: no listen address given');
  const { count } = opts;
  if (count !== undefined && (!Number.isSafeInteger(count) || count < 1)) {
    throw new Error(`producer: count must be a positive integer, got ${count}`);
  }
  // Bad sizes fail here rather than on the first connection.
  const bytes = opts.bytes;
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new Error(`producer: bytes must be a non-negative integer, got ${bytes}`);
  }
  const pattern = new Pattern(opts.seed);

  const sockets = new Set<Socket>();
  let served = 0;
  let failed = 0;
  let closed = false;
  let resolveDone!: () => void;
  let rejectDone!: (err: Error) => void;
  const done = new Promise<void>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  // Callers that never look at `done` must not see an unhandled rejection on close().
  done.catch(() => {});

  const onConnection = (socket: Socket) => {
    if (closed) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    let error: Error | undefined;
    socket.on('error', (err) => {
      error ??= err;
    });
    // Whatever the peer sends is discarded.
    socket.resume();
    const sending = writePattern(socket, pattern, bytes).then(
      () => true,
      (err: Error) => {
        error ??= err;
        return false;
      },
    );
    // A connection counts as served only once it closed cleanly after the last
    // byte: stopping the producer right after 'finish' could otherwise cut it short.
    socket.once('close', (hadError) => {
      sockets.delete(socket);
      void sending.then((sent) => {
        if (sent && !hadError && !error) {
          served++;
          if (count !== undefined && served === count) resolveDone();
        } else {
          failed++;
          opts.onConnectionError?.(error ?? new Error('connection closed before the stream was complete'), remote);
        }
      });
    });
  };

  const servers: Server[] = [];
  const addresses: Address[] = [];
  try {
    for (const address of opts.listen) {
      const server = createServer({ allowHalfOpen: true }, onConnection);
      servers.push(server);
      addresses.push(await listen(server, address));
    }
  } catch (err) {
    await Promise.all(servers.map(closeServer));
    throw err;
  }

  return {
    addresses,
    get served() {
      return served;
    },
    get failed() {
      return failed;
    },
    done,
    async close() {
      if (closed) return;
      closed = true;
      const closing = Promise.all(servers.map(closeServer));
      for (const socket of sockets) socket.destroy();
      await closing;
      if (count !== undefined && served < count) {
        rejectDone(new Error(`producer closed after serving ${served} of ${count} connections`));
      }
    },
  };
}

function listen(server: Server, address: Address): Promise<Address> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(new Error(`producer cannot listen on ${formatAddress(address)}: ${bindAdvice(err)}`));
    };
    server.once('error', onError);
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
      server.off('error', onError);
      // A listening server can still report errors; they must not crash the process.
      server.on('error', () => {});
      const bound = server.address();
      resolve({ host: address.host, port: typeof bound === 'object' && bound ? bound.port : address.port });
    });
  });
}

function bindAdvice(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return 'the port is already in use (EADDRINUSE); pick another port, use port 0 for a free one, or stop the process holding it';
    case 'EACCES':
      return 'permission denied (EACCES); ports below 1024 need privileges, pick a higher port';
    case 'EADDRNOTAVAIL':
      return 'the host is not an address of this machine (EADDRNOTAVAIL); listen on a local address or 0.0.0.0';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `the host name does not resolve (${err.code}); check the spelling or use an IP address`;
    default:
      return `${err.message}; check the address`;
  }
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}
