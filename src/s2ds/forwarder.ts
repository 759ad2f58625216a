// Buffer-and-forward between two sockets: the data plane's hot path.
// No logging, no allocation per chunk: each chunk is counted and handed on; the
// source pauses when the destination's write buffer is full (or, for a target
// that reads into a reused buffer, until the destination has taken the bytes).
// Both sockets are created with highWaterMark = the configured buffer size (see
// Transport), so memory per direction stays bounded whatever the amount streamed.
import type { Socket } from 'node:net';
import type { ConnectionReads, RingReadBuffer, ReusedReadBuffer } from '../transport/index.js';

/** Byte counts of one stream; the forwarder adds to them as chunks pass. */
export interface ByteCounters {
  /** From the accepting side to the target (e.g. consumer -> producer requests, or WAN -> producer). */
  toTarget: number;
  /** From the target back to the accepting side (the data a producer streams). */
  fromTarget: number;
}

/**
 * Forwards both ways until both directions have ended or either side fails.
 * Half-close passes through (FIN after all buffered bytes); a reset or error on
 * one side resets the other. `onDone` runs once, after both sockets are closed.
 * With `targetReads` (the memory the target was opened to read into), data from
 * the target is written straight from there: from a reused buffer, the target
 * reads again only once the kernel has taken the bytes; from a ring, each read is
 * held until its write completes (see transport/reads.ts).
 */
export function forward(accepted: Socket, target: Socket, counters: ByteCounters, onDone: () => void, targetReads?: ConnectionReads): void {
  let open = 2;
  const closed = () => {
    if (--open === 0) onDone();
  };

  const toTarget = batched(target);
  accepted.on('data', (chunk: Buffer) => {
    counters.toTarget += chunk.length;
    if (!toTarget(chunk)) accepted.pause();
  });
  target.on('drain', () => accepted.resume());

  if (targetReads?.kind === 'reused') fromReusedBuffer(accepted, target, counters, targetReads);
  else if (targetReads?.kind === 'ring') fromRing(accepted, target, counters, targetReads);
  else {
    const toAccepted = batched(accepted);
    target.on('data', (chunk: Buffer) => {
      counters.fromTarget += chunk.length;
      if (!toAccepted(chunk)) target.pause();
    });
    accepted.on('drain', () => target.resume());
  }

  accepted.on('end', () => target.end());
  target.on('end', () => accepted.end());

  // Errors are reported by 'close' (hadError); the listeners keep them from
  // becoming uncaught exceptions.
  accepted.on('error', noop);
  target.on('error', noop);

  accepted.on('close', () => {
    if (!cleanlyDone(accepted)) abort(target);
    closed();
  });
  target.on('close', () => {
    if (!cleanlyDone(target)) abort(accepted);
    closed();
  });

  accepted.resume();
  target.resume();
}

/**
 * Writes to `dest`, gathering what arrives in one turn of the event loop into one
 * system call. A TLS socket hands over each decrypted 16 KiB record as its own
 * chunk, each in its own callback; corking until the loop's check phase turns a
 * write per record into one writev per batch of records (measured: the TLS path
 * went from below stunnel to above it). Backpressure is unchanged: write() still
 * says when the buffer is full.
 */
function batched(dest: Socket): (chunk: Buffer, written?: () => void) => boolean {
  let corked = false;
  const uncork = () => {
    corked = false;
    dest.uncork();
  };
  return (chunk, written) => {
    if (!corked) {
      corked = true;
      dest.cork();
      setImmediate(uncork);
    }
    return dest.write(chunk, written);
  };
}

// Target data read into one reused buffer: written from there, and the target reads
// again only once the kernel has taken those bytes.
function fromReusedBuffer(accepted: Socket, target: Socket, counters: ByteCounters, reads: ReusedReadBuffer): void {
  let waiting = false;
  // Runs when a write from the buffer has reached the kernel; one function for every write.
  const flushed = () => {
    if (waiting && accepted.writableLength === 0) {
      waiting = false;
      target.resume();
    }
  };
  const early = reads.take((bytes, buffer) => {
    counters.fromTarget += bytes;
    accepted.write(buffer.subarray(0, bytes), flushed);
    // Still queued: those bytes live in the buffer, so no read may overwrite them yet.
    if (accepted.writableLength > 0) {
      waiting = true;
      return false;
    }
    return true;
  });
  for (const chunk of early) {
    counters.fromTarget += chunk.length;
    accepted.write(chunk);
  }
}

// Target data (TLS records) read into a ring: each record is held until written,
// and backpressure pauses the target as with ordinary chunks.
function fromRing(accepted: Socket, target: Socket, counters: ByteCounters, reads: RingReadBuffer): void {
  const toAccepted = batched(accepted);
  const written = () => reads.release();
  const early = reads.take((bytes, buffer) => {
    counters.fromTarget += bytes;
    const view = buffer.subarray(0, bytes);
    reads.hold(view);
    if (!toAccepted(view, written)) target.pause();
    return true;
  });
  for (const chunk of early) {
    counters.fromTarget += chunk.length;
    toAccepted(chunk);
  }
  accepted.on('drain', () => target.resume());
}

function noop(): void {}

function cleanlyDone(s: Socket): boolean {
  return s.readableEnded && s.writableFinished;
}

/** Passes an abrupt end on as a TCP reset, so the peer sees an error, not a clean EOF. */
export function abort(s: Socket): void {
  if (s.destroyed) return;
  if (typeof s.resetAndDestroy === 'function' && !s.connecting && s.readyState !== 'closed') {
    try {
      s.resetAndDestroy();
      return;
    } catch {
      // a TLS socket or one without a handle: fall through
    }
  }
  s.destroy();
}
