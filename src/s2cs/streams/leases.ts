// A stream's lease and lifetime. Before its connection map: from its first req it
// has --setup-timeout to get it (UpdateTargets), or the gateway releases it. After
// it, the gateway lets the stream go by itself when
// - it is broken: it had connections, none is open (active or waiting), and the
//   last to end ended abnormally (a reset, an error, a dead WAN peer: every one
//   since the last clean end did), for longer than a short grace (--broken-grace,
//   default BROKEN_GRACE_MS, so that an application that reconnects at once is not
//   cut off; 0: never, for applications that end their connections with resets);
// - it is idle: no connection for --idle-stream-timeout, counted from the map or
//   from the end of its last connection;
// and, in any state, when its lifetime is over: Request.lifetime_s (s2uc
// --lifetime) bounded by --max-stream-lifetime, counted from its req.
// Each is a release like the release rpc (release.ts), with why in the log and in
// status' ended streams. Checked at each sample of the data servers' counters
// (status.ts RateSampler, once a second), so a deadline is met within a second.
import type { StreamStats } from '../../s2ds/index.js';
import { BROKEN_GRACE_MS, type StreamTableOptions } from './options.js';
import type { Release, StreamRecord, TableState } from './record.js';

/** The states in which a stream's lifetime is checked. */
const LIVE_STATES: ReadonlySet<string> = new Set(['awaiting-hello', 'awaiting-update', 'ready']);

/** Why the gateway let a stream go by itself after setup (scistream_streams_let_go_total). */
export type LetGoReason = 'broken' | 'idle' | 'lifetime';

export class Leases {
  /** Streams let go since start, by why (the setup lease's are not counted here). */
  readonly letGo: Record<LetGoReason, number> = { broken: 0, idle: 0, lifetime: 0 };

  constructor(
    private readonly state: TableState,
    private readonly release: Release,
  ) {}

  /** Starts the stream's lease: it ends in `ms` unless UpdateTargets come first. */
  start(record: StreamRecord, ms: number): void {
    record.leaseTimer = setTimeout(() => this.ended(record), ms);
    record.leaseTimer.unref();
  }

  /** The lease is over without ending the stream (its connection map came, or it is released). */
  end(record: StreamRecord): void {
    if (record.leaseTimer) clearTimeout(record.leaseTimer);
    record.leaseTimer = undefined;
  }

  /**
   * Lets go of the streams whose lifetime says so (see the top of this file): run
   * at each sample of the data servers' counters.
   */
  check(now: number): void {
    for (const record of [...this.state.records.values()]) {
      // Reserving: for milliseconds, until its listeners are bound; the next check sees it.
      // Released (or being released): nothing more to do.
      if (!LIVE_STATES.has(record.state)) continue;
      // A stream taken back from the agents: its idle clock starts when this s2cs first looks.
      if (record.targets) record.mappedAt ??= now;
      const { deadline } = lifetimeOf(record, this.state.opts.dataServer.stats(record.request.uid), this.state.opts, now);
      if (!deadline || deadline.at > now) continue;
      this.letGo[deadline.reason]++;
      void this.release(record, deadline.why, deadline.level).catch((err: unknown) =>
        this.state.opts.logger.error({ uid: record.request.uid, err, why: deadline.why }, 'releasing a stream whose lifetime is over failed'),
      );
    }
  }

  /** The lease ends: a stream still without its connection map is released (an UpdateTargets under way decides first). */
  private ended(record: StreamRecord): void {
    record.leaseTimer = undefined;
    if (this.state.records.get(record.request.uid) !== record || record.targets) return;
    // While the producer's Hello is awaited, its own timeout (never longer than the
    // lease) answers the req with the advice that fits; the lease is checked after.
    if (record.state === 'reserving' || record.state === 'awaiting-hello') {
      const again = () => this.ended(record);
      record.ready.then(again, again);
      return;
    }
    if (record.updating) {
      const again = () => this.ended(record);
      record.updating.then(again, again);
      return;
    }
    const seconds = this.state.opts.setupTimeoutMs / 1000;
    void this.release(record, `lease ended: no UpdateTargets within ${seconds} s of its request (--setup-timeout) in state ${record.state}`, 'warn').catch(
      (err: unknown) => this.state.opts.logger.error({ uid: record.request.uid, err }, 'releasing a stream whose lease ended failed'),
    );
  }
}

/** When the gateway lets a stream go by itself, and why (the release reason). */
export interface Deadline {
  /** ms since epoch. */
  at: number;
  reason: LetGoReason;
  why: string;
  /** How the release is logged: a broken stream is a warning, an end of life expected. */
  level: 'info' | 'warn';
}

/** What a stream's lifetime says now (status shows it; check() acts on it). */
export interface Lifetime {
  /** Why the stream is broken; '' when it is not. */
  broken: string;
  /** The nearest deadline; undefined: none. */
  deadline: Deadline | undefined;
}

/** A stream's lifetime now, from its record and its data servers' counters (`stats`). */
export function lifetimeOf(record: StreamRecord, stats: StreamStats | undefined, opts: StreamTableOptions, now: number): Lifetime {
  let deadline: Deadline | undefined;
  const nearer = (at: number, reason: LetGoReason, why: string, level: Deadline['level']) => {
    if (!deadline || at < deadline.at) deadline = { at, reason, why, level };
  };
  // A standing tunnel lives as long as its [[tunnel]] table: no lifetime, idleness or breakage ends it.
  const keeps = record.standing !== undefined;
  const limit = keeps ? undefined : lifetimeLimit(record.request.lifetimeS ?? 0, opts.maxStreamLifetimeMs ?? 0);
  if (limit) nearer(record.createdAt + limit.ms, 'lifetime', `lifetime over: ${duration(limit.ms)} since its request (${limit.by})`, 'info');
  let broken = '';
  if (record.targets && stats) {
    const open = stats.activeConnections + stats.waitingConnections;
    const ended = (stats.cleanEnds ?? 0) + (stats.abnormalEnds ?? 0);
    const lastEndAt = stats.lastEndAt ?? 0;
    if (open === 0 && ended > 0 && stats.lastEndAbnormal) {
      broken = brokenReason(stats);
      const grace = opts.brokenGraceMs ?? BROKEN_GRACE_MS;
      if (grace > 0 && !keeps) nearer(lastEndAt + grace, 'broken', `broken: ${broken}`, 'warn');
    }
    const idleMs = opts.idleStreamTimeoutMs ?? 0;
    if (idleMs > 0 && open === 0 && !keeps) {
      const since = Math.max(record.mappedAt ?? now, lastEndAt);
      nearer(since + idleMs, 'idle', `idle: no connection for ${duration(idleMs)} (--idle-stream-timeout)`, 'info');
    }
  }
  return { broken, deadline };
}

/** The stream's own lifetime bounded by the gateway's (ms), and which one rules; undefined: neither. */
function lifetimeLimit(lifetimeS: number, maxMs: number): { ms: number; by: string } | undefined {
  const own = lifetimeS * 1000;
  if (own > 0 && (maxMs <= 0 || own <= maxMs)) return { ms: own, by: 'its requested lifetime, s2uc --lifetime' };
  if (maxMs > 0) return { ms: maxMs, by: own > 0 ? `--max-stream-lifetime of this gateway, below the ${duration(own)} requested` : '--max-stream-lifetime of this gateway' };
  return undefined;
}

function brokenReason(stats: StreamStats): string {
  const abnormal = stats.abnormalEnds ?? 0;
  const ended = abnormal + (stats.cleanEnds ?? 0);
  const error = stats.lastEndError ? ` (${stats.lastEndError})` : '';
  return `its last connection ended abnormally${error} and none is open; ${abnormal} of ${ended} ended abnormally (reset, error or dead peer)`;
}

/** "90 s", "30 min", "2 h", "2 h 30 min". */
export function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120 || s % 60 !== 0) return `${s} s`;
  const min = s / 60;
  if (min % 60 === 0) return `${min / 60} h`;
  return min < 120 ? `${min} min` : `${Math.floor(min / 60)} h ${min % 60} min`;
}
