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

/** Counters of one agent's share of a stream (DataServer.shareStats); the agent is its handle (addresses may repeat: in-process agents). */
export interface ShareCounters {
  agent: object;
  toTarget: number;
  fromTarget: number;
}

/**
 * One stream's recent counter samples: time, bytes to target, bytes from target;
 * and, on the same ticks, the samples of each agent's share of it, so that an
 * agent's rate is the sum of its streams' shares over the same window.
 */
export class RateWindow {
  private readonly at = new Float64Array(SLOTS);
  private readonly to = new Float64Array(SLOTS);
  private readonly from = new Float64Array(SLOTS);
  private next = 0;
  private count = 0;
  private readonly shares = new Map<object, RateWindow>();

  /**
   * `since`: when the counters were 0 (the stream's req), so rates are right before
   * the first tick. Undefined for a stream taken back after a restart: its counters
   * were not 0 at any time known here, so no rate is shown until two samples exist.
   */
  constructor(private readonly since?: number) {
    if (since !== undefined) this.sample(since, 0, 0);
  }

  sample(now: number, toTarget: number, fromTarget: number, shares: readonly ShareCounters[] = []): void {
    this.at[this.next] = now;
    this.to[this.next] = toTarget;
    this.from[this.next] = fromTarget;
    this.next = (this.next + 1) % SLOTS;
    if (this.count < SLOTS) this.count++;
    for (const s of shares) {
      let w = this.shares.get(s.agent);
      if (!w) this.shares.set(s.agent, (w = new RateWindow(this.since)));
      w.sample(now, s.toTarget, s.fromTarget);
    }
  }

  /**
   * Bytes per second between the oldest sample inside the window and the newest
   * one; 0 when nothing moved in the window, or fewer than two samples are in it
   * (the seed at req counts as one). Both ends are samples the ticker took, so the
   * stream's rate and its agents' rates come from the same readings.
   */
  rates(now: number): Rates {
    if (this.count < 2) return { toTargetBps: 0, fromTargetBps: 0 };
    const newest = (this.next - 1 + SLOTS) % SLOTS;
    let oldest = -1;
    for (let k = 1; k < this.count; k++) {
      const i = (this.next - 1 - k + 2 * SLOTS) % SLOTS;
      if (now - this.at[i]! > RATE_WINDOW_MS) break;
      oldest = i;
    }
    const span = oldest < 0 ? 0 : (this.at[newest]! - this.at[oldest]!) / 1000;
    // Under a fifth of a second is too short to say anything but noise.
    if (oldest < 0 || span < 0.2) return { toTargetBps: 0, fromTargetBps: 0 };
    return {
      toTargetBps: Math.max(0, Math.round((this.to[newest]! - this.to[oldest]!) / span)),
      fromTargetBps: Math.max(0, Math.round((this.from[newest]! - this.from[oldest]!) / span)),
    };
  }

  /** Each agent's share of the stream's rate, both ways together, by agent handle. */
  shareRates(now: number): Map<object, number> {
    const out = new Map<object, number>();
    for (const [agent, w] of this.shares) {
      const r = w.rates(now);
      out.set(agent, r.toTargetBps + r.fromTargetBps);
    }
    return out;
  }
}
