// Deterministic stream content for the sample producer/consumer: both sides derive
// the same bytes from a seed, so the consumer can verify without a side channel.
import type { Socket } from 'node:net';

/**
 * Period of the pattern. Odd and not a power of two, so data delivered at a wrong
 * offset (dropped, duplicated or reordered chunks of any power-of-two size) differs.
 */
export const PATTERN_PERIOD = 1_048_573;

/** Write chunk size: big enough to keep syscalls few, small enough to wrap often. */
const CHUNK = 256 * 1024;

/** The byte sequence of a stream: byte i is `buf[i % PATTERN_PERIOD]`. */
export class Pattern {
  readonly seed: number;
  readonly buf: Buffer;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new Error(`pattern seed must be an integer, got ${seed}`);
    this.seed = seed;
    this.buf = Buffer.allocUnsafe(PATTERN_PERIOD);
    // xorshift32; the seed's high and low words go through a mixer so that nearby
    // seeds (0, 1, 2...) give unrelated sequences and the state is never 0.
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 0x1_0000_0000) >>> 0;
    let x = fmix32(lo ^ fmix32((hi + 0x9e3779b9) >>> 0)) || 0x6d2b79f5;
    const buf = this.buf;
    for (let i = 0; i < PATTERN_PERIOD; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      // Explicit byte order keeps the pattern identical on any host.
      buf[i] = x;
      if (i + 1 < PATTERN_PERIOD) buf[i + 1] = x >>> 8;
      if (i + 2 < PATTERN_PERIOD) buf[i + 2] = x >>> 16;
      if (i + 3 < PATTERN_PERIOD) buf[i + 3] = x >>> 24;
    }
  }

  /**
   * A view (no copy) of the stream starting at `offset`, at most `maxLength` bytes
   * long; shorter when it reaches the end of the period.
   */
  view(offset: number, maxLength: number): Buffer {
    const start = offset % PATTERN_PERIOD;
    return this.buf.subarray(start, Math.min(PATTERN_PERIOD, start + maxLength));
  }

  /** Byte `offset` of the stream. */
  byteAt(offset: number): number {
    return this.buf[offset % PATTERN_PERIOD]!;
  }
}

/** murmur3's 32-bit finaliser: a cheap, well-mixing bijection. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function checkByteCount(bytes: number, what: string): void {
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new Error(`${what} must be a non-negative integer number of bytes, got ${bytes}`);
  }
}

/**
 * Writes exactly `bytes` bytes of `pattern` to `socket`, then ends it. Resolves once
 * the write side has finished (everything handed to the kernel); rejects if the
 * socket errors or closes first. The caller should keep its own 'error' listener on
 * the socket: this function removes its listeners when it settles.
 */
export function writePattern(socket: Socket, pattern: Pattern, bytes: number): Promise<void> {
  checkByteCount(bytes, 'writePattern: bytes');
  return new Promise<void>((resolve, reject) => {
    let sent = 0;
    let settled = false;

    const cleanup = () => {
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.off('finish', onFinish);
      socket.off('drain', pump);
    };
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(err);
    };
    const onError = (err: Error) => fail(err);
    const onClose = () => fail(new Error(`connection closed after ${sent} of ${bytes} bytes were written`));
    const onFinish = () => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve();
    };

    // Writes until the socket's buffer is full, then continues on 'drain'. The
    // chunks are views of the shared pattern buffer, so nothing is allocated per chunk.
    function pump(): void {
      while (sent < bytes) {
        if (settled || socket.destroyed) return;
        const chunk = pattern.view(sent, Math.min(CHUNK, bytes - sent));
        sent += chunk.length;
        if (!socket.write(chunk)) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    }

    if (socket.destroyed) {
      fail(new Error('cannot write: the connection is already closed'));
      return;
    }
    socket.on('error', onError);
    socket.once('close', onClose);
    socket.once('finish', onFinish);
    pump();
  });
}

/** Checks a received stream, chunk by chunk, against a pattern. */
export class Verifier {
  /** Bytes received so far, including any beyond `expectedBytes`. */
  received = 0;
  /** Stream offset of the first byte that differs from the pattern. */
  mismatchAt: number | undefined;
  /** More than `expectedBytes` arrived. */
  overrun = false;
  /** The byte received at `mismatchAt`. */
  private mismatchGot = 0;

  constructor(
    readonly pattern: Pattern,
    readonly expectedBytes: number,
  ) {
    checkByteCount(expectedBytes, 'Verifier: expectedBytes');
  }

  push(chunk: Buffer): void {
    const offset = this.received;
    this.received += chunk.length;
    // After the first problem the stream is known bad; only keep counting.
    if (this.mismatchAt !== undefined || this.overrun) return;
    let length = chunk.length;
    if (offset + length > this.expectedBytes) {
      this.overrun = true;
      length = this.expectedBytes - offset;
    }
    let pos = 0;
    while (pos < length) {
      const expected = this.pattern.view(offset + pos, length - pos);
      const actual = chunk.subarray(pos, pos + expected.length);
      if (!actual.equals(expected)) {
        // Slow path, taken once: locate the first differing byte.
        let i = 0;
        while (actual[i] === expected[i]) i++;
        this.mismatchAt = offset + pos + i;
        this.mismatchGot = actual[i]!;
        return;
      }
      pos += expected.length;
    }
  }

  /** True when exactly the expected bytes arrived and all matched. */
  get ok(): boolean {
    return this.received === this.expectedBytes && this.mismatchAt === undefined && !this.overrun;
  }

  /** What is wrong with the stream so far, or undefined if nothing is (yet). */
  get problem(): string | undefined {
    if (this.mismatchAt !== undefined) {
      const want = hex(this.pattern.byteAt(this.mismatchAt));
      return `data mismatch at byte offset ${this.mismatchAt} (expected 0x${want}, got 0x${hex(this.mismatchGot)})`;
    }
    if (this.overrun) return `overrun: received ${this.received} bytes, more than the expected ${this.expectedBytes}`;
    if (this.received < this.expectedBytes) {
      return `short stream: received ${this.received} of expected ${this.expectedBytes} bytes`;
    }
    return undefined;
  }
}

function hex(b: number): string {
  return b.toString(16).padStart(2, '0');
}
