// A stream's rate cap (issue 13, --rate-policy cap|reserve): one token bucket per
// stream and direction, shared by all the stream's connections on this data server.
// The forwarder spends what it reads; a connection that finds the bucket in debt
// stops reading until the debt is paid, so the cap works through TCP backpressure
// (the sender's window closes) and buffers nothing more than the uncapped path does.
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';

/**
 * How much may pass at once above the rate, as time at the rate: enough to keep
 * a fast link busy between timer wake-ups, far from the seconds-long bursts a
 * per-second budget gives.
 */
const BURST_MS = 20;
/** A wait shorter than this is not worth a timer: go on and settle it with the next read. */
const MIN_WAIT_MS = 1;

export class Pacer {
  private tokens: number;
  private last = performance.now();
  private readonly burst: number;
  private readonly perMs: number;

  /** `bytesPerSecond` > 0. */
  constructor(readonly bytesPerSecond: number) {
    this.perMs = bytesPerSecond / 1000;
    // At least one 64 KiB read, so that a slow cap still moves whole reads.
    this.burst = Math.max(64 * 1024, this.perMs * BURST_MS);
    this.tokens = this.burst;
  }

  /** Takes `bytes` that have been read; returns how long (ms) reading must stop, 0 if it may go on. */
  spend(bytes: number): number {
    this.tokens -= bytes;
    return this.wait();
  }

  /** How long (ms) until the bucket is out of debt; 0 if it is now. */
  wait(): number {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.perMs);
    this.last = now;
    if (this.tokens >= 0) return 0;
    const ms = -this.tokens / this.perMs;
    return ms < MIN_WAIT_MS ? 0 : Math.ceil(ms);
  }
}

/** The two directions of a capped stream; either may be absent (uncapped). */
export interface StreamPacing {
  toTarget?: Pacer;
  fromTarget?: Pacer;
}

/**
 * One reading socket's two reasons to stop: its destination is full
 * (backpressure) and its stream's bucket is in debt (the cap). It reads again
 * only when neither holds. Without a pacer it is plain pause/resume.
 */
export class Valve {
  private full = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly source: Socket,
    private readonly pacer: Pacer | undefined,
  ) {
    if (pacer) source.once('close', () => this.stop());
  }

  /** The destination's buffer is full: stop reading until drained(). */
  fill(): void {
    this.full = true;
    this.source.pause();
  }

  /** The destination has room again. */
  drained(): void {
    this.full = false;
    if (this.timer === undefined) this.source.resume();
  }

  /** `bytes` were read; returns false when reading must stop for the cap (it resumes by itself). */
  spent(bytes: number): boolean {
    if (!this.pacer) return true;
    const ms = this.pacer.spend(bytes);
    if (ms === 0) return true;
    if (this.timer === undefined) {
      this.source.pause();
      this.timer = setTimeout(this.tick, ms);
    }
    return false;
  }

  /** Whether reading is stopped for the cap now. */
  get pacing(): boolean {
    return this.timer !== undefined;
  }

  private readonly tick = (): void => {
    // Other connections of the stream may have spent meanwhile.
    const ms = this.pacer!.wait();
    if (ms > 0) {
      this.timer = setTimeout(this.tick, ms);
      return;
    }
    this.timer = undefined;
    if (!this.full && !this.source.destroyed) this.source.resume();
  };

  private stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
