// Reads into memory allocated once per connection (the socket's `onread` option)
// instead of a new Buffer per chunk: no garbage on the data path. The forwarder
// takes the reads; until it does, they are copied and reading pauses, so nothing
// that arrives early (e.g. right behind a TLS handshake) is lost.

type ReadHandler = (bytes: number, buffer: Buffer) => boolean;

interface OnRead {
  buffer: Buffer | (() => Buffer);
  callback: (bytes: number, buffer: Uint8Array) => boolean;
}

abstract class TargetReads {
  private handler: ReadHandler | undefined;
  private early: Buffer[] = [];
  /** The `onread` option of net.connect / tls.connect / new net.Socket (an accepted connection, tcp.ts). */
  abstract readonly onread: OnRead;

  /** Hands every later read to `handler`; returns (copies of) what arrived before it was set. */
  take(handler: ReadHandler): Buffer[] {
    this.handler = handler;
    const early = this.early;
    this.early = [];
    return early;
  }

  protected deliver(bytes: number, buffer: Buffer): boolean {
    if (this.handler) return this.handler(bytes, buffer);
    this.early.push(Buffer.from(buffer.subarray(0, bytes)));
    return false;
  }
}

/**
 * Every read lands in the same buffer, as large as the buffer: plain TCP only. The
 * taker must be done with the bytes before the socket reads again (return false
 * to pause it until then). Not for TLS: it keeps decrypting records it has already
 * received into the buffer after a pause, over bytes still waiting to be written.
 */
export class ReusedReadBuffer extends TargetReads {
  readonly kind = 'reused';
  readonly onread: OnRead;

  /**
   * Reads land at `headroom` in `buffer`; the bytes before stay free, so a frame
   * header can go in front of what was read and both leave in one write (the WAN
   * leg's framing, see frames.ts).
   */
  constructor(
    readonly buffer: Buffer,
    readonly headroom = 0,
  ) {
    super();
    const into = headroom > 0 ? buffer.subarray(headroom) : buffer;
    this.onread = { buffer: into, callback: (bytes, chunk) => this.deliver(bytes, chunk as Buffer) };
  }
}

/**
 * Reads land one after the other in a ring of memory, for TLS, which hands over
 * each decrypted record (at most 16 KiB) as it comes. The taker hold()s what it
 * writes and release()s it once written; a region is handed out again only when
 * nothing held lies in it. When the ring is full, a read gets a one-off buffer
 * (each one a new ArrayBuffer: malloc, free and garbage-collector work per record,
 * so the taker keeps the ring from filling: see `room`).
 */
export class RingReadBuffer extends TargetReads {
  readonly kind = 'ring';
  readonly onread: OnRead;
  private head = 0;
  /** Start of the oldest region still held; -1 when none is. */
  private tail = -1;
  private holds = 0;
  /** Releases still to come for writes settle() has already counted as done. */
  private settledReleases = 0;
  /** Whether reads have gone round to the start since the oldest held region. */
  private wrapped = false;

  constructor(
    private readonly ring: Buffer,
    private readonly region = 16 * 1024,
  ) {
    super();
    this.onread = {
      buffer: () => this.next(),
      callback: (bytes, chunk) => {
        const at = this.offset(chunk as Buffer);
        if (at >= 0) this.head = at + bytes;
        return this.deliver(bytes, chunk as Buffer);
      },
    };
  }

  /** `view` (part of the last read) is being written; it stays untouched until release(). */
  hold(view: Buffer): void {
    this.holds++;
    if (this.tail === -1) this.tail = this.offset(view);
  }

  /** One held write has completed (writes complete in the order they were made). */
  release(): void {
    if (this.settledReleases > 0) this.settledReleases--;
    else if (--this.holds === 0) this.empty();
  }

  /**
   * Every held write has completed (the destination's queue is empty), though
   * their release()s are still to come (a write that completes at once calls back
   * on the next tick, after the next read already took its region): the whole
   * ring is free now, and those release()s free nothing more.
   */
  settle(): void {
    this.settledReleases += this.holds;
    this.holds = 0;
    this.empty();
  }

  // Nothing held: no oldest region, and nothing read has gone round past it (else
  // a hold before the next read would be measured against a wrap that no longer is,
  // and the ring taken for full).
  private empty(): void {
    this.tail = -1;
    this.wrapped = false;
  }

  /** Whether the next read lands in the ring (else it gets a one-off buffer). */
  get room(): boolean {
    const { region, tail, head } = this;
    if (tail === -1) return true;
    if (!this.wrapped) return head + region <= this.ring.length || tail >= region;
    return head + region <= tail;
  }

  private offset(b: Buffer): number {
    return b.buffer === this.ring.buffer ? b.byteOffset - this.ring.byteOffset : -1;
  }

  // The region for the next read: after the last read if that is free, else from
  // the start if the oldest held region leaves room there, else a one-off buffer.
  // Held bytes run from `tail` to `head`, across the end of the ring once wrapped;
  // wrapped, head may catch up with tail, and only `wrapped` tells full from empty.
  private next(): Buffer {
    const { region, tail } = this;
    if (tail === -1) {
      this.wrapped = false;
      if (this.head + region > this.ring.length) this.head = 0;
    } else if (!this.wrapped) {
      if (this.head + region > this.ring.length) {
        if (tail < region) return Buffer.allocUnsafe(region);
        this.head = 0;
        this.wrapped = true;
      }
    } else if (this.head + region > tail) {
      return Buffer.allocUnsafe(region);
    }
    return this.ring.subarray(this.head, this.head + region);
  }
}

export type ConnectionReads = ReusedReadBuffer | RingReadBuffer;
