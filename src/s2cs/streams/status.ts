// What status shows of each stream, and the byte-rate samples behind its rates.
import { formatAddress } from '../../protocol/address.js';
import type { StreamRequest } from '../../protocol/validate.js';
import type { StreamStats, UnreleasedShare } from '../../s2ds/index.js';
import { SAMPLE_INTERVAL_MS } from '../rates.js';
import { lifetimeOf } from './leases.js';
import type { StreamRecord, StreamState, TableState } from './record.js';
import type { StreamBinding } from './binding.js';

export interface StreamStatus extends StreamRequest {
  /** 'releasing': released, but an agent has not confirmed its part (see releasingOn); broken: see brokenReason (leases.ts). */
  state: StreamState | 'releasing' | 'broken';
  /** While releasing: each agent that has not confirmed, and the connections it may still forward. */
  releasingOn?: string[];
  /** Why the stream is broken; '' when it is not. */
  brokenReason: string;
  /** Seconds until the gateway lets the stream go by itself (lifetime, idle or broken; leases.ts); 0: none. */
  expiresInS: number;
  owner: string;
  listeners: string[];
  prodListeners: string[];
  targets: string[];
  stats: StreamStats | undefined;
  /** Seconds until the gateway releases the stream for want of UpdateTargets; 0 once they came. */
  leaseRemainingS: number;
  /** Seconds since the stream's first req. */
  ageS: number;
  /** Bytes per second each way, averaged over the last 10 s (rates.ts). */
  toTargetBps: number;
  fromTargetBps: number;
  /** Bytes per second the gateway holds the stream to, each way (0: not capped). */
  capBps: number;
  /** Who may see it in full and control it without token checking (never shown as such). */
  binding: StreamBinding;
  /** A standing tunnel of the configuration file ([[tunnel]]), not a client's request. */
  standing: boolean;
}

/** What status shows of one stream (uid) or of all; released ones are left out. */
export function streamStatus(state: TableState, uid?: string): StreamStatus[] {
  const now = Date.now();
  const records = uid ? [state.records.get(uid)].filter((r): r is StreamRecord => r !== undefined) : [...state.records.values()];
  return records.flatMap((r) => {
    if (r.state === 'released') return [];
    const stats = state.opts.dataServer.stats(r.request.uid);
    const rates = r.rates.rates(now);
    const life = lifetimeOf(r, stats, state.opts, now);
    return [
      {
        ...r.request,
        state: life.broken ? 'broken' : shownState(r),
        brokenReason: life.broken,
        expiresInS: life.deadline ? Math.max(1, Math.ceil((life.deadline.at - now) / 1000)) : 0,
        leaseRemainingS: r.targets ? 0 : Math.max(0, Math.ceil((r.leaseEnds - now) / 1000)),
        owner: r.owner.subject,
        listeners: r.listeners.map(formatAddress),
        prodListeners: (r.prodListeners ?? []).map(formatAddress),
        targets: (r.targets ?? []).map(formatAddress),
        stats,
        ageS: Math.max(0, Math.floor((now - r.createdAt) / 1000)),
        ...rates,
        capBps: r.capBps,
        binding: r.binding,
        allowFrom: r.allowFrom,
        standing: r.standing !== undefined,
      },
    ];
  });
}

/** A stream whose release an agent has not confirmed: what it was, and who may still forward it. */
export function releasingStatus(r: StreamRecord, since: number, on: readonly UnreleasedShare[]): StreamStatus {
  const now = Date.now();
  return {
    ...r.request,
    state: 'releasing',
    releasingOn: on.map((s) => `${s.agent}: ${s.connections} connection(s) may still forward; not confirmed for ${Math.max(0, Math.floor((now - since) / 1000))} s`),
    leaseRemainingS: 0,
    owner: r.owner.subject,
    listeners: r.listeners.map(formatAddress),
    prodListeners: (r.prodListeners ?? []).map(formatAddress),
    targets: (r.targets ?? []).map(formatAddress),
    stats: undefined,
    ageS: Math.max(0, Math.floor((now - r.createdAt) / 1000)),
    toTargetBps: 0,
    fromTargetBps: 0,
    capBps: r.capBps,
    binding: r.binding,
    allowFrom: r.allowFrom,
    brokenReason: '',
    expiresInS: 0,
    standing: r.standing !== undefined,
  };
}

/** Samples the streams' byte counters for the rates in status; runs only while there are streams. */
export class RateSampler {
  private timer: NodeJS.Timeout | undefined;

  /** `onSample`: run after each sample, with its time (the streams' lifetimes are checked there, leases.ts). */
  constructor(
    private readonly state: TableState,
    private readonly onSample?: (now: number) => void,
  ) {}

  /** Whether it runs (it should only while there are streams). */
  get running(): boolean {
    return this.timer !== undefined;
  }

  /** Starts sampling byte counters once a second (an unref'd timer: it never keeps the process alive). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sample(), SAMPLE_INTERVAL_MS);
    this.timer.unref();
  }

  /** Stops sampling (no streams, detach, close). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private sample(): void {
    if (this.state.records.size === 0) {
      this.stop();
      return;
    }
    const now = Date.now();
    for (const r of this.state.records.values()) {
      const stats = this.state.opts.dataServer.stats(r.request.uid);
      if (!stats) continue;
      const shares = this.state.opts.dataServer.shareStats?.(r.request.uid) ?? [];
      r.rates.sample(now, stats.bytesToTarget, stats.bytesFromTarget, shares.map((s) => ({ agent: s.agent, toTarget: s.stats.bytesToTarget, fromTarget: s.stats.bytesFromTarget })));
    }
    this.onSample?.(now);
  }
}

/**
 * Each agent's rate, by handle: the sum of its shares of the streams' rates, from
 * the same samples and window as the streams' own (so an agent carrying one stream
 * shows that stream's rate). Agents with no stream are absent (their rate is 0).
 */
export function agentRates(state: TableState): Map<object, number> {
  const now = Date.now();
  const out = new Map<object, number>();
  for (const r of state.records.values()) {
    if (r.state === 'released') continue;
    for (const [agent, bps] of r.rates.shareRates(now)) out.set(agent, (out.get(agent) ?? 0) + bps);
  }
  return out;
}

/**
 * The state status reports, read from what the stream has rather than from the
 * step its setup is at, so that 'ready' always means listeners, producer listeners
 * (PROD) and an applied connection map. (Before UpdateTargets existed as a step,
 * a stream was 'ready' once the Hello came, and showed `ready` with no targets.)
 */
function shownState(r: StreamRecord): StreamState {
  if (r.listeners.length === 0) return 'reserving';
  if (r.request.role === 'PROD' && !r.prodListeners) return 'awaiting-hello';
  if (!r.targets || r.targets.length === 0) return 'awaiting-update';
  return 'ready';
}
