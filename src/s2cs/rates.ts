// Byte rates for status, from the counters the data server keeps anyway: the
// stream table samples them once a second (never in the forwarding path), and a
// stream keeps a fixed ring of its last samples, so memory per stream is bounded.

/** The window rates are averaged over (StreamStatus.to_target_bps: "the last 10 s"). */
export const RATE_WINDOW_MS = 10_000;
/** How often the table samples the counters while it has streams. */
export const SAMPLE_INTERVAL_MS = 1_000;

/** Samples kept: enough to reach back one window at one sample per interval, plus one. */
const SLOTS = RATE_WINDOW_MS / SAMPLE_INTERVAL_MS + 2;

export interface Rates {
  toTargetBps: number;
  fromTargetBps: number;
}

/** One stream's recent counter samples: time, bytes to target, bytes from target. */
export class RateWindow {
  private readonly at = new Float64Array(SLOTS);
  private readonly to = new Float64Array(SLOTS);
  private readonly from = new Float64Array(SLOTS);
  private next = 0;
  private count = 0;

  /** `since`: when the counters were 0 (the stream's req), so rates are right before the first tick. */
  constructor(since: number) {
    this.sample(since, 0, 0);
  }

  sample(now: number, toTarget: number, fromTarget: number): void {
    this.at[this.next] = now;
    this.to[this.next] = toTarget;
    this.from[this.next] = fromTarget;
    this.next = (this.next + 1) % SLOTS;
    if (this.count < SLOTS) this.count++;
  }

  /**
   * Bytes per second between the oldest sample inside the window and the counters
   * now; 0 when nothing moved in the window (or no sample is old enough to tell).
   */
  rates(now: number, toTarget: number, fromTarget: number): Rates {
    let oldest = -1;
    for (let k = 0; k < this.count; k++) {
      const i = (this.next - 1 - k + 2 * SLOTS) % SLOTS;
      if (now - this.at[i]! > RATE_WINDOW_MS) break;
      oldest = i;
    }
    const span = oldest < 0 ? 0 : (now - this.at[oldest]!) / 1000;
    // Under a fifth of a second is too short to say anything but noise.
    if (oldest < 0 || span < 0.2) return { toTargetBps: 0, fromTargetBps: 0 };
    return {
      toTargetBps: Math.max(0, Math.round((toTarget - this.to[oldest]!) / span)),
      fromTargetBps: Math.max(0, Math.round((fromTarget - this.from[oldest]!) / span)),
    };
  }
}
