// Sample consumer: reads one stream from each address at once and verifies every
// byte against the producer's pattern; any problem on any connection fails the run.
import { connect, type Socket } from 'node:net';
import { formatAddress, type Address } from '../protocol/address.js';
import { Pattern, Verifier } from './data.js';

export interface ConsumerOptions {
  connect: Address[];
  /** Bytes expected on each connection. */
  bytes: number;
  seed: number;
  /** Called at most about ten times a second while data flows, and once at the end. */
  onProgress?: (receivedTotal: number, expectedTotal: number) => void;
  /** Per-connection limit for establishing the TCP connection; default 10 s. */
  connectTimeoutMs?: number;
}

export interface ConsumeResult {
  /** Bytes received and verified over all connections. */
  bytes: number;
  /** From the start of connecting until the last stream ended. */
  seconds: number;
  perConnection: { address: string; received: number }[];
}

const PROGRESS_INTERVAL_MS = 100;

export async function consume(opts: ConsumerOptions): Promise<ConsumeResult> {
  if (opts.connect.length === 0) throw new Error('consumer: no address to connect to');
  if (!Number.isSafeInteger(opts.bytes) || opts.bytes < 0) {
    throw new Error(`consumer: bytes must be a non-negative integer, got ${opts.bytes}`);
  }
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
  const pattern = new Pattern(opts.seed);
  const expectedTotal = opts.bytes * opts.connect.length;
  const started = performance.now();

  return new Promise<ConsumeResult>((resolve, reject) => {
    let total = 0;
    let reported = -1;
    let remaining = opts.connect.length;
    let settled = false;
    const sockets: Socket[] = [];
    const timers: NodeJS.Timeout[] = [];

    const report = () => {
      if (total !== reported) {
        reported = total;
        opts.onProgress?.(total, expectedTotal);
      }
    };
    // A timer keeps the per-chunk cost at one addition.
    const progress = opts.onProgress ? setInterval(report, PROGRESS_INTERVAL_MS) : undefined;

    const finish = () => {
      if (progress) clearInterval(progress);
      for (const t of timers) clearTimeout(t);
    };
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      finish();
      for (const s of sockets) s.destroy();
      reject(err);
    };

    const connections = opts.connect.map((address) => {
      const name = formatAddress(address);
      const verifier = new Verifier(pattern, opts.bytes);
      let connected = false;
      let ended = false;

      const socket = connect({ host: address.host, port: address.port });
      sockets.push(socket);
      const timer = setTimeout(() => {
        fail(new Error(`cannot connect to ${name}: no answer within ${connectTimeoutMs} ms; check the address and any firewall`));
      }, connectTimeoutMs);
      timers.push(timer);

      socket.once('connect', () => {
        connected = true;
        clearTimeout(timer);
      });
      socket.on('data', (chunk: Buffer) => {
        total += chunk.length;
        verifier.push(chunk);
        if (verifier.mismatchAt !== undefined || verifier.overrun) {
          fail(new Error(`stream from ${name}: ${verifier.problem}`));
        }
      });
      socket.once('end', () => {
        ended = true;
        if (!verifier.ok) {
          fail(new Error(`stream from ${name}: ${verifier.problem ?? 'incomplete'}`));
          return;
        }
        if (--remaining === 0 && !settled) {
          settled = true;
          const seconds = (performance.now() - started) / 1000;
          finish();
          report();
          resolve({
            bytes: total,
            seconds,
            perConnection: connections.map((c) => ({ address: c.name, received: c.verifier.received })),
          });
        }
      });
      socket.on('error', (err: NodeJS.ErrnoException) => {
        fail(new Error(connected ? streamError(name, err, verifier) : connectError(name, err)));
      });
      // Covers a close without 'end' or 'error' (e.g. destroyed by the peer's side effects).
      socket.once('close', () => {
        if (!ended) fail(new Error(`connection to ${name} closed early: ${verifier.problem ?? 'before the end of the stream'}`));
      });
      return { name, verifier };
    });
  });
}

function connectError(name: string, err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return `cannot connect to ${name}: connection refused (ECONNREFUSED); is the producer or gateway listening there?`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `cannot connect to ${name}: host unreachable (${err.code}); check the address and the network route`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot connect to ${name}: the host name does not resolve (${err.code})`;
    case 'ETIMEDOUT':
      return `cannot connect to ${name}: timed out (ETIMEDOUT); check the address and any firewall`;
    default:
      return `cannot connect to ${name}: ${err.message}`;
  }
}

function streamError(name: string, err: NodeJS.ErrnoException, v: Verifier): string {
  const where = `after ${v.received} of ${v.expectedBytes} bytes`;
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
    return `connection to ${name} was reset ${where} (${err.code}); the sender or a gateway dropped it`;
  }
  return `connection to ${name} failed ${where}: ${err.message}`;
}
