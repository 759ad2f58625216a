// The highest offered rate a UDP path takes without losing more than a bound:
// doubling up (or halving down) from a start rate until one side fails, then
// bisecting geometrically between the best passing and the lowest failing rate.
// Bounded by a number of probes; pure, so that the logic is tested alone.

export interface SearchProbe {
  offeredBps: number;
  sentBps: number;
  receivedBps: number;
  lossPercent: number;
}

export interface SearchOptions {
  startBps: number;
  /** Loss above this (in %) fails a probe. */
  maxLossPercent: number;
  /** At most this many probes. */
  maxProbes: number;
  minBps: number;
  maxBps: number;
  /** Stop when the failing rate is within this factor of the passing one. */
  precision: number;
  /**
   * A passing probe whose sender sent less than this share of the offered rate: the
   * sender, not the path, is the limit; going higher measures nothing more.
   */
  senderLimitedShare: number;
}

export const SEARCH_DEFAULTS: SearchOptions = { startBps: 1e9, maxLossPercent: 0.1, maxProbes: 7, minBps: 10e6, maxBps: 40e9, precision: 1.15, senderLimitedShare: 0.9 };

export interface SearchResult<P extends SearchProbe> {
  /** The passing probe at the highest offered rate; none if even minBps lost too much. */
  best: P | undefined;
  /** The lowest offered rate that failed, if one was probed. */
  firstFailingBps: number | undefined;
  /** The sender could not send the offered rate while the path lost nothing much. */
  senderLimited: boolean;
  probes: P[];
}

export async function searchMaxRate<P extends SearchProbe>(probe: (offeredBps: number) => Promise<P>, options: Partial<SearchOptions> = {}): Promise<SearchResult<P>> {
  const o = { ...SEARCH_DEFAULTS, ...options };
  const probes: P[] = [];
  let best: P | undefined;
  let failing: number | undefined;
  let senderLimited = false;
  let rate = clamp(o.startBps, o.minBps, o.maxBps);
  while (probes.length < o.maxProbes) {
    const p = await probe(rate);
    probes.push(p);
    if (p.lossPercent <= o.maxLossPercent) {
      if (!best || p.offeredBps > best.offeredBps) best = p;
      if (p.sentBps < o.senderLimitedShare * p.offeredBps) {
        senderLimited = true;
        break;
      }
    } else if (failing === undefined || p.offeredBps < failing) failing = p.offeredBps;
    const next = nextRate(best?.offeredBps, failing, o);
    if (next === undefined) break;
    rate = next;
  }
  return { best, firstFailingBps: failing, senderLimited, probes };
}

/** The next rate to offer, or undefined when the search is done. */
export function nextRate(passing: number | undefined, failing: number | undefined, o: SearchOptions): number | undefined {
  if (passing !== undefined && failing !== undefined) return failing / passing <= o.precision ? undefined : Math.sqrt(passing * failing);
  if (passing !== undefined) return passing >= o.maxBps ? undefined : Math.min(o.maxBps, passing * 2);
  if (failing !== undefined) return failing <= o.minBps ? undefined : Math.max(o.minBps, failing / 2);
  return o.startBps;
}

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));
