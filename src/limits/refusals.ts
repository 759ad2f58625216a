// Counts what a gateway refuses (connections over a bound, Hellos over the cap,
// ports over a user's share...), for `status`, and logs each kind at most once
// per interval: a flood of refused connections must not become a flood of log lines.
import type { Logger } from '../log.js';

/** Every kind of refusal a gateway counts; documented in the README's "Limits and protections". */
export const REFUSAL_KINDS = [
  'conns-per-listener',
  'waiting-conns',
  'buffer-memory',
  'wan-auth',
  'handshake-timeout',
  'pending-conns-per-peer',
  'pending-conns',
  'target-unreachable',
  'allow-list',
  'pending-hellos',
  'ports-per-user',
  'capacity',
  'control-conns-per-source',
  'control-handshakes-per-source',
  'control-conns',
] as const;
export type RefusalKind = (typeof REFUSAL_KINDS)[number];

export function isRefusalKind(kind: string): kind is RefusalKind {
  return (REFUSAL_KINDS as readonly string[]).includes(kind);
}

/** Refusals counted elsewhere (a data-server agent in another process), added to this gateway's totals. */
export type RefusalSource = () => Iterable<{ kind: string; count: number }>;

interface KindState {
  total: number;
  /** Refusals since the last log line of this kind. */
  unlogged: number;
  lastMessage: string;
  lastFields: Record<string, unknown>;
  timer: NodeJS.Timeout | undefined;
}

export class Refusals {
  private readonly kinds = new Map<RefusalKind, KindState>();
  private readonly sources: RefusalSource[] = [];

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
  ) {}

  /**
   * Counts one refusal. The first of a kind is logged at once; later ones within
   * the interval are summed into one line when it ends.
   */
  count(kind: RefusalKind, message: string, fields: Record<string, unknown> = {}): void {
    let s = this.kinds.get(kind);
    if (!s) this.kinds.set(kind, (s = { total: 0, unlogged: 0, lastMessage: message, lastFields: fields, timer: undefined }));
    s.total++;
    s.lastMessage = message;
    s.lastFields = fields;
    if (s.timer) {
      s.unlogged++;
      return;
    }
    this.logger.warn({ refusal: kind, ...fields }, message);
    const state = s;
    state.timer = setTimeout(() => this.flush(kind, state), this.intervalMs);
    state.timer.unref();
  }

  private flush(kind: RefusalKind, s: KindState): void {
    s.timer = undefined;
    if (s.unlogged === 0) return;
    const n = s.unlogged;
    s.unlogged = 0;
    this.logger.warn(
      { refusal: kind, count: n, total: s.total, ...s.lastFields },
      `${n} more refusal(s) of kind ${kind} in the last ${this.intervalMs / 1000} s (${s.total} in all); the last: ${s.lastMessage}`,
    );
    // Keep logging at most once per interval while the refusals go on.
    s.timer = setTimeout(() => this.flush(kind, s), this.intervalMs);
    s.timer.unref();
  }

  /** Totals since start, by kind. */
  /** What this gateway refused since it started: its own counts and its sources' (addSource). */
  totals(): { kind: RefusalKind; count: number }[] {
    const sums = new Map<RefusalKind, number>([...this.kinds.entries()].map(([kind, s]) => [kind, s.total]));
    for (const source of this.sources) {
      for (const { kind, count } of source()) {
        // Another process's numbers: only known kinds, only whole counts.
        if (isRefusalKind(kind) && Number.isSafeInteger(count) && count > 0) sums.set(kind, (sums.get(kind) ?? 0) + count);
      }
    }
    return [...sums.entries()].map(([kind, count]) => ({ kind, count }));
  }

  /** Counts kept by another process (a data-server agent: its refusals are counted and logged there). */
  addSource(source: RefusalSource): void {
    this.sources.push(source);
  }

  /** Logs what is still unlogged and stops the timers (shutdown). */
  close(): void {
    for (const [kind, s] of this.kinds) {
      if (s.timer) clearTimeout(s.timer);
      this.flush(kind, s);
      if (s.timer) clearTimeout(s.timer);
      s.timer = undefined;
    }
  }
}
