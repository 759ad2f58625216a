// Buffer-and-forward between two sockets: the data plane's hot path.
// No logging, no allocation per chunk: each chunk is counted and handed on; the
// source pauses when the destination's write buffer is full (or, for a target
// that reads into a reused buffer, until the destination has taken the bytes).
// Both sockets are created with highWaterMark = the configured buffer size (see
// Transport), so memory per direction stays bounded whatever the amount streamed.
import type { Socket } from 'node:net';
import { END_FRAME, FRAME_HEADER, FrameReader, MAX_FRAME_PAYLOAD, dataHeader, writeDataHeader } from '../transport/frames.js';
import type { ConnectionReads, RingReadBuffer, ReusedReadBuffer } from '../transport/index.js';
import { closeCleanly, resetOnClose } from '../transport/linger.js';
import { Valve, type StreamPacing } from './pacer.js';
import { WanBrokenError, causeOf, type WanBreakCause, type WanGuard } from './liveness.js';
import { failedSide } from './connection-ends.js';

/** Byte counts of one stream; the forwarder adds to them as chunks pass. */
export interface ByteCounters {
  /** From the accepting side to the target (e.g. consumer -> producer requests, or WAN -> producer). */
  toTarget: number;
  /** From the target back to the accepting side (the data a producer streams). */
  fromTarget: number;
}

/**
 * Which of the two sockets is the WAN leg between two gateways over TLS: it
 * carries frames (transport/frames.ts), so that its end says whether the other
 * side ended cleanly. Absent: both legs are plain bytes.
 */
export type FramedSide = 'accepted' | 'target';

/** The framed WAN leg's guard (liveness.ts) and the stream it belongs to, for the log. */
export interface WanWatch {
  guard: WanGuard;
  uid: string;
}

/**
 * Forwards both ways until both directions have ended or either side fails.
 * Half-close passes through (FIN after all buffered bytes); a reset or error on
 * one side resets the other. `onDone` runs once, after both sockets are closed.
 * With `targetReads` (the memory the target was opened to read into), data from
 * the target is written straight from there: from a reused buffer, the target
 * reads again only once the kernel has taken the bytes; from a ring, each read is
 * held until its write completes (see transport/reads.ts). `acceptedReads` does
 * the same for a plain accepted socket moved onto a reused buffer (transport/tcp.ts
 * readInto).
 * With `framed`, that socket's directions end only with an END frame: a clean end
 * from the other side is sent as one, and the framed leg ending without one, or
 * carrying anything malformed, resets both sides.
 * With `pacing`, each direction reads no faster than its stream's cap (pacer.ts),
 * together with the stream's other connections.
 * With `wan` (framed only), the WAN leg carries heartbeats while idle and a peer
 * heard from for --wan-dead-after is taken for dead (liveness.ts). A broken WAN
 * leg (dead peer, reset, ended without END, malformed) is counted and logged
 * there. Whatever breaks the connection, both sockets are destroyed with an error
 * (their 'close' has hadError true) and reset where they can be.
 */
export function forward(
  accepted: Socket,
  target: Socket,
  counters: ByteCounters,
  onDone: () => void,
  targetReads?: ConnectionReads,
  framed?: FramedSide,
  acceptedReads?: ReusedReadBuffer,
  pacing?: StreamPacing,
  wan?: WanWatch,
): void {
  // A framed (TLS) accepted side decrypts into its own buffers (see transport/reads.ts).
  if (acceptedReads && framed === 'accepted') throw new Error('forward: a framed accepted socket cannot read into a reused buffer');
  let open = 2;
  const closed = () => {
    if (--open === 0) onDone();
  };
  let broken = false;
  let unwatch: (() => void) | undefined;
  // The connection is broken: both applications get a reset, both sockets close with an error.
  // `origin`: the socket that failed (the access log names its side; the other only follows it).
  const fail = (err: Error, origin?: Socket) => {
    if (broken) return;
    broken = true;
    if (origin) failedSide.set(err, origin === accepted ? 'peer' : 'target');
    unwatch?.();
    breakOff(accepted, err);
    breakOff(target, err);
  };
  const acceptedReader = framed === 'accepted' ? new FrameReader(() => endCleanly(target)) : undefined;
  const targetReader = framed === 'target' ? new FrameReader(() => endCleanly(accepted)) : undefined;
  const wanSocket = framed === 'accepted' ? accepted : framed === 'target' ? target : undefined;
  const wanReader = acceptedReader ?? targetReader;
  const peer = wanSocket && wan ? `${wanSocket.remoteAddress}:${wanSocket.remotePort}` : '';
  // The WAN leg broke under us (not our choice): counted and logged once, then both sides reset.
  const wanBroke = (cause: WanBreakCause, detail: string) => {
    if (broken) return;
    wan?.guard.broken(wan.uid, peer, cause, detail);
    fail(new WanBrokenError(cause, detail), wanSocket);
  };
  const malformed = () => wanBroke('malformed', 'not a frame');
  if (wanSocket && wanReader && wan) {
    unwatch = wan.guard.watch(
      wanSocket,
      () => wanReader.ended,
      (silentMs) => wanBroke('dead-peer', `nothing for ${(silentMs / 1000).toFixed(1)} s`),
    );
  }

  const fromAccepted = new Valve(accepted, pacing?.toTarget);
  if (acceptedReads) fromReusedBuffer(target, counters, 'toTarget', acceptedReads, framed === 'target', fromAccepted);
  else {
    const toTarget = batched(target, framed === 'target');
    if (acceptedReader) {
      acceptedReader.onData = (view) => {
        counters.toTarget += view.length;
        if (!toTarget(view)) fromAccepted.fill();
      };
      accepted.on('data', (chunk: Buffer) => {
        if (!acceptedReader.push(chunk, chunk.length)) malformed();
        else fromAccepted.spent(chunk.length);
      });
    } else {
      accepted.on('data', (chunk: Buffer) => {
        counters.toTarget += chunk.length;
        if (!toTarget(chunk)) fromAccepted.fill();
        fromAccepted.spent(chunk.length);
      });
    }
    target.on('drain', () => fromAccepted.drained());
  }

  const fromTarget = new Valve(target, pacing?.fromTarget);
  if (targetReads?.kind === 'reused') fromReusedBuffer(accepted, counters, 'fromTarget', targetReads, framed === 'accepted', fromTarget);
  else if (targetReads?.kind === 'ring') fromRing(accepted, counters, targetReads, framed === 'accepted', targetReader, malformed, fromTarget);
  else {
    const toAccepted = batched(accepted, framed === 'accepted');
    if (targetReader) {
      targetReader.onData = (view) => {
        counters.fromTarget += view.length;
        if (!toAccepted(view)) fromTarget.fill();
      };
      target.on('data', (chunk: Buffer) => {
        if (!targetReader.push(chunk, chunk.length)) malformed();
        else fromTarget.spent(chunk.length);
      });
    } else {
      target.on('data', (chunk: Buffer) => {
        counters.fromTarget += chunk.length;
        if (!toAccepted(chunk)) fromTarget.fill();
        fromTarget.spent(chunk.length);
      });
    }
    accepted.on('drain', () => fromTarget.drained());
  }

  const unended = () => wanBroke('unended', 'no END frame');
  passEnd(accepted, target, acceptedReader, framed === 'target', (err) => fail(err, accepted), unended);
  passEnd(target, accepted, targetReader, framed === 'accepted', (err) => fail(err, target), unended);

  // The first error of each socket says why it closed (the listeners also keep
  // errors from becoming uncaught exceptions).
  let acceptedError: NodeJS.ErrnoException | undefined;
  let targetError: NodeJS.ErrnoException | undefined;
  accepted.on('error', (err: NodeJS.ErrnoException) => (acceptedError ??= err));
  target.on('error', (err: NodeJS.ErrnoException) => (targetError ??= err));

  const onClose = (s: Socket, reader: FrameReader | undefined, error: () => NodeJS.ErrnoException | undefined) => () => {
    if (!cleanlyDone(s, reader)) {
      const err = error();
      if (s === wanSocket && err && !broken) wanBroke(causeOf(err), err.code ?? err.message);
      else fail(err ?? new Error('the other side of the connection closed before its end'), s);
    }
    unwatch?.();
    closed();
  };
  accepted.on('close', onClose(accepted, acceptedReader, () => acceptedError));
  target.on('close', onClose(target, targetReader, () => targetError));

  accepted.resume();
  target.resume();
}

/**
 * A clean end of `from` ends `to` (after an END frame if `to` is framed). A framed
 * `from` has passed its clean end on at its END frame already; its end without
 * one is a broken stream.
 */
function passEnd(from: Socket, to: Socket, fromReader: FrameReader | undefined, toFramed: boolean, fail: (err: Error) => void, unended: () => void): void {
  const pass = () => endCleanly(to, toFramed ? END_FRAME : undefined);
  from.on('end', () => {
    if (fromReader) {
      if (!fromReader.ended) unended();
      return;
    }
    // 'end' is not always a FIN: libuv reports EOF, without reading again, when the
    // socket hangs up after a partial read, so a reset that arrives while data waits
    // in the kernel (the producer resets mid-stream) looks like a clean end after
    // fewer bytes. The reset's error is still pending on the socket, and a write of
    // nothing brings it out (measured: ECONNRESET after a reset, success after a
    // FIN). Not possible once this side has sent its own FIN: then 'end' is taken
    // as it comes.
    if (from.writable && !from.writableEnded) {
      from.write(EMPTY, (err) => {
        if (err) fail(err);
        else pass();
      });
    } else pass();
  });
}

/**
 * Writes to `dest`, gathering what arrives in one turn of the event loop into one
 * system call. A TLS socket hands over each decrypted 16 KiB record as its own
 * chunk, each in its own callback; corking until the loop's check phase turns a
 * write per record into one writev per batch of records (measured: the TLS path
 * went from below stunnel to above it). Backpressure is unchanged: write() still
 * says when the buffer is full. `framed`: each chunk goes as a DATA frame.
 */
function batched(dest: Socket, framed: boolean): (chunk: Buffer, written?: () => void) => boolean {
  const batch = new Batch(dest, framed);
  return (chunk, written) => batch.write(chunk, written);
}

/** The writes of batched(), which can also be sent before the loop's check phase (flush()). */
class Batch {
  private corked = false;
  private scheduled = false;

  /** `sent`: runs after each batch has been handed to the socket. */
  constructor(
    private readonly dest: Socket,
    private readonly framed: boolean,
    private readonly sent?: () => void,
  ) {}

  write(chunk: Buffer, written?: () => void): boolean {
    if (!this.corked) {
      this.corked = true;
      this.dest.cork();
      // One wake-up per turn of the loop, however many batches flush() sent in it.
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.atCheck);
      }
    }
    return this.framed ? writeFrames(this.dest, chunk, written) : this.dest.write(chunk, written);
  }

  /** Sends what has been gathered now (one writev). */
  flush(): void {
    if (!this.corked) return;
    this.corked = false;
    this.dest.uncork();
    this.sent?.();
  }

  private readonly atCheck = (): void => {
    this.scheduled = false;
    this.flush();
  };
}

/** Writes `chunk` as DATA frame(s): a header of its own in front (Buffer's pool, no allocation). */
function writeFrames(dest: Socket, chunk: Buffer, written?: () => void): boolean {
  let from = 0;
  // Reads are far below the frame limit; a larger chunk is cut into frames.
  while (chunk.length - from > MAX_FRAME_PAYLOAD) {
    dest.write(dataHeader(MAX_FRAME_PAYLOAD));
    dest.write(chunk.subarray(from, from + MAX_FRAME_PAYLOAD));
    from += MAX_FRAME_PAYLOAD;
  }
  if (chunk.length === from) {
    // Nothing (left) to frame: an empty DATA frame would be malformed.
    if (written) dest.write(EMPTY, written);
    return dest.writableLength < dest.writableHighWaterMark;
  }
  dest.write(dataHeader(chunk.length - from));
  return dest.write(from === 0 ? chunk : chunk.subarray(from), written);
}

const EMPTY = Buffer.alloc(0);

// Data read into one reused buffer (from a TCP target, or from an accepted plain
// TCP connection): written from there, and `from` reads again only once the kernel
// has taken those bytes (`valve` stops and restarts the reading socket). Framed: the read landed behind room for the header, which
// goes in front of it in the same buffer, so header and payload leave in one write
// (one TLS write, no copy).
function fromReusedBuffer(to: Socket, counters: ByteCounters, count: keyof ByteCounters, reads: ReusedReadBuffer, framed: boolean, valve: Valve): void {
  let waiting = false;
  // Runs when a write from the buffer has reached the kernel; one function for every write.
  const flushed = () => {
    if (waiting && to.writableLength === 0) {
      waiting = false;
      valve.drained();
    }
  };
  const { headroom } = reads;
  const inPlace = framed && headroom >= FRAME_HEADER;
  const early = reads.take((bytes, buffer) => {
    counters[count] += bytes;
    if (inPlace && bytes <= MAX_FRAME_PAYLOAD) {
      writeDataHeader(reads.buffer, headroom - FRAME_HEADER, bytes);
      to.write(reads.buffer.subarray(headroom - FRAME_HEADER, headroom + bytes), flushed);
    } else if (framed) writeFrames(to, buffer.subarray(0, bytes), flushed);
    else to.write(buffer.subarray(0, bytes), flushed);
    const go = valve.spent(bytes);
    // Still queued: those bytes live in the buffer, so no read may overwrite them yet.
    if (to.writableLength > 0) {
      waiting = true;
      valve.fill();
      return false;
    }
    return go;
  });
  for (const chunk of early) {
    counters[count] += chunk.length;
    if (framed) writeFrames(to, chunk);
    else to.write(chunk);
    valve.spent(chunk.length);
  }
}

// Target data (TLS records) read into a ring: each record (or, framed, each run of
// payload in it) is held until written, and backpressure pauses the target as with
// ordinary chunks. The ring must not fill up, or every read takes a one-off buffer
// (measured, 4 connections through iperf3: 72 % of the records, and the garbage
// collector's major marking with it, since TLS decrypts up to 32 socket reads, about
// 50 records, in one turn of the loop): when the next read would find no room, the
// batch is sent at once (not at the loop's check phase), the ring is free again as
// soon as the socket has taken a batch whole, and while the socket keeps records
// queued and the ring has no room, the target stops reading. (Sending at half the
// ring instead cost about a fifth more CPU per GB with 4 connections: smaller writes.)
function fromRing(
  accepted: Socket,
  counters: ByteCounters,
  reads: RingReadBuffer,
  framed: boolean,
  reader: FrameReader | undefined,
  malformed: () => void,
  valve: Valve,
): void {
  const batch = new Batch(accepted, framed, () => {
    if (accepted.writableLength === 0) reads.settle();
  });
  // Stopped because the ring has no room (the accepted socket's queue holds it); the
  // other reason to stop, a full queue, is the accepted socket's writableNeedDrain.
  let ringFull = false;
  const written = () => {
    reads.release();
    if (ringFull && reads.room) {
      ringFull = false;
      if (!accepted.writableNeedDrain) valve.drained();
    }
  };
  let more = true;
  const deliver = (view: Buffer) => {
    counters.fromTarget += view.length;
    reads.hold(view);
    if (!batch.write(view, written)) more = false;
  };
  // After each read: send the batch if the ring has no room left for the next read;
  // stop reading when the queue is full or the ring still is.
  const after = (bytes: number) => {
    if (!reads.room) batch.flush();
    if (!more) valve.fill();
    else if (!reads.room) {
      ringFull = true;
      valve.fill();
    }
    valve.spent(bytes);
  };
  const early = reader
    ? reads.take((bytes, buffer) => {
        more = true;
        if (!reader.push(buffer, bytes)) {
          malformed();
          return false;
        }
        after(bytes);
        return true;
      })
    : reads.take((bytes, buffer) => {
        more = true;
        deliver(buffer.subarray(0, bytes));
        after(bytes);
        return true;
      });
  if (reader) reader.onData = deliver;
  for (const chunk of early) {
    more = true;
    if (reader) {
      if (!reader.push(chunk, chunk.length)) {
        malformed();
        return;
      }
    } else deliver(chunk);
    after(chunk.length);
  }
  accepted.on('drain', () => {
    if (!ringFull) valve.drained();
  });
}

/**
 * Ends `s` cleanly: its close must now send everything queued, then a FIN, where
 * until now (SO_LINGER 0, set when it was established) any close reset it.
 */
function endCleanly(s: Socket, last?: Buffer): void {
  closeCleanly(s);
  if (last) s.end(last);
  else s.end();
}

// A framed leg has ended cleanly only with its END frame.
function cleanlyDone(s: Socket, reader: FrameReader | undefined): boolean {
  return (reader ? reader.ended : s.readableEnded) && s.writableFinished;
}

/**
 * Destroys a socket of a broken connection with `err`, so that its 'close' has
 * hadError true, and as a reset where it can be (as abort does): through Node's
 * own reset path on a TCP handle, else (a TLS socket) through SO_LINGER {on, 0}.
 */
function breakOff(s: Socket, err: Error): void {
  if (s.destroyed) return;
  if (!s.connecting && !s.writableEnded && s.readyState !== 'closed') {
    const handle = (s as unknown as { _handle?: { reset?: unknown } | null })._handle;
    if (typeof handle?.reset === 'function' && typeof s.resetAndDestroy === 'function') {
      // What resetAndDestroy() does, with an error: Node then resets the handle on close.
      (s as unknown as { resetAndClosing: boolean }).resetAndClosing = true;
    } else resetOnClose(s);
  }
  s.destroy(err);
}

/** Passes an abrupt end on as a TCP reset, so the peer sees an error, not a clean EOF. */
export function abort(s: Socket): void {
  if (s.destroyed) return;
  // Not after end(): libuv refuses to reset a socket whose shutdown is under way
  // (uv_tcp_close_reset: EINVAL), and Node has by then dropped the handle without
  // closing it, so the descriptor leaked for ever (one per connection that a release
  // or a failure caught with its FIN queued). Such a socket is closed instead: the
  // direction it ended was complete, and its queued bytes still go out before the FIN.
  if (typeof s.resetAndDestroy === 'function' && !s.connecting && !s.writableEnded && s.readyState !== 'closed') {
    try {
      s.resetAndDestroy();
      return;
    } catch {
      // a TLS socket or one without a handle: fall through
    }
  }
  s.destroy();
}
