// Dead-peer detection on the framed (TLS) WAN leg, one guard per data server
// (per agent): heartbeats on idle directions, and a connection that hears
// nothing from its peer for --wan-dead-after is broken. Issue 18 measured why: a
// 1 s reset burst on the WAN left the consumer hanging for good, a black hole for
// 21.5 min; TCP alone notices neither in time on a connection that only receives.
//
// One coarse sweep (an interval per guard, not per connection) keeps the hot path
// free of timers and clocks: it compares each connection's bytesRead with the
// previous sweep's, and writes a HEARTBEAT frame (transport/frames.ts) on
// connections whose outgoing direction wrote nothing since. A connection counts as
// silent only while it reads: paused by backpressure (a slow consumer) or the
// stream's rate cap, or after its peer's END, it is not judged.
//
// Broken WAN connections (dead peer, reset by a middlebox, ended without END,
// malformed, timed out by the kernel) are counted by cause and logged with the
// stream, the peer and the cause, at most a few lines a second plus a summary.
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { HEARTBEAT_FRAME } from '../transport/frames.js';

/** --wan-dead-after default. */
export const WAN_DEAD_AFTER_DEFAULT_MS = 30_000;
/**
 * The sweep's period: an idle direction carries a heartbeat at least every two
 * periods, so a peer's --wan-dead-after may be as low as MIN_WAN_DEAD_AFTER_S.
 */
export const SWEEP_MS = 1000;
/** The lowest --wan-dead-after: three sweeps, above the longest gap between heartbeats. */
export const MIN_WAN_DEAD_AFTER_S = 3;

/** Why a WAN connection broke; the label of scistream_wan_broken_total. */
export const WAN_BREAK_CAUSES = ['dead-peer', 'reset', 'timeout', 'unended', 'malformed', 'error'] as const;
export type WanBreakCause = (typeof WAN_BREAK_CAUSES)[number];

/** What each cause means, for the log line. */
const MEANING: Record<WanBreakCause, string> = {
  'dead-peer': 'heard nothing from the peer gateway (not even a heartbeat) for --wan-dead-after',
  reset: 'the connection was reset (by the peer gateway, or a firewall or middlebox on the path)',
  timeout: 'the kernel gave up on the peer (TCP keepalive or user timeout: unacknowledged for about --wan-dead-after)',
  unended: 'the connection ended without its END frame (a gateway died, or a FIN was injected on the path)',
  malformed: 'the peer sent bytes that are not a valid frame',
  error: 'the connection failed',
};

/** The cause of a WAN socket's error. */
export function causeOf(err: NodeJS.ErrnoException): WanBreakCause {
  if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ECONNABORTED') return 'reset';
  if (err.code === 'ETIMEDOUT') return 'timeout';
  return 'error';
}

/** The error both sockets of a broken connection are destroyed with ('close' then has hadError true). */
export class WanBrokenError extends Error {
  readonly code: string;
  constructor(
    readonly breakCause: WanBreakCause,
    detail: string,
  ) {
    super(`WAN connection broken (${breakCause}): ${detail}`);
    this.name = 'WanBrokenError';
    this.code = breakCause === 'reset' ? 'ECONNRESET' : breakCause === 'timeout' || breakCause === 'dead-peer' ? 'ETIMEDOUT' : 'EPROTO';
  }
}

interface Watched {
  wan: Socket;
  incomingEnded: () => boolean;
  onDead: (silentMs: number) => void;
  lastRead: number;
  lastWritten: number;
  /** When the last sweep saw bytes arrive (or could not judge). */
  heardAt: number;
}

export interface WanGuardOptions {
  /** --wan-dead-after, ms. */
  deadAfterMs: number;
  logger: Logger;
  /** Sweep period (tests); default SWEEP_MS. */
  sweepMs?: number;
  /** Log lines of breaks per second before they are summed up; default 3. */
  linesPerSecond?: number;
}

export class WanGuard {
  readonly deadAfterMs: number;
  private readonly sweepMs: number;
  private readonly watched = new Set<Watched>();
  private timer: NodeJS.Timeout | undefined;
  private lastSweep = 0;
  private readonly counts = new Map<WanBreakCause, number>();
  // Rate limit of the log: lines in the current second, and breaks left unlogged.
  private windowStart = 0;
  private linesInWindow = 0;
  private unlogged = 0;
  private summary: NodeJS.Timeout | undefined;

  constructor(private readonly opts: WanGuardOptions) {
    this.deadAfterMs = opts.deadAfterMs;
    this.sweepMs = opts.sweepMs ?? SWEEP_MS;
  }

  /**
   * Watches a forwarding WAN connection: heartbeats while its outgoing direction
   * is idle (until our END), and `onDead` once if it hears nothing for
   * deadAfterMs while reading (until the peer's END). Returns the unwatch.
   */
  watch(wan: Socket, incomingEnded: () => boolean, onDead: (silentMs: number) => void): () => void {
    const w: Watched = { wan, incomingEnded, onDead, lastRead: wan.bytesRead, lastWritten: wan.bytesWritten ?? 0, heardAt: Date.now() };
    this.watched.add(w);
    if (!this.timer) {
      this.lastSweep = Date.now();
      this.timer = setInterval(() => this.sweep(), this.sweepMs);
      this.timer.unref();
    }
    return () => {
      this.watched.delete(w);
      if (this.watched.size === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  /** Connections watched now. */
  get size(): number {
    return this.watched.size;
  }

  /** One pass over the watched connections (the interval's; tests call it directly). */
  sweep(now = Date.now()): void {
    // After an event-loop stall, bytes may wait unread in the kernel: judge nothing this time.
    const stalled = now - this.lastSweep > 3 * this.sweepMs;
    this.lastSweep = now;
    for (const w of this.watched) {
      const s = w.wan;
      if (s.destroyed) continue;
      if (!s.writableEnded && s.writableLength === 0) {
        const written = s.bytesWritten ?? 0;
        if (written === w.lastWritten) s.write(HEARTBEAT_FRAME);
        w.lastWritten = s.bytesWritten ?? written;
      }
      const read = s.bytesRead;
      if (read !== w.lastRead || stalled || s.isPaused() || w.incomingEnded()) {
        w.lastRead = read;
        w.heardAt = now;
      } else if (now - w.heardAt >= this.deadAfterMs) {
        this.watched.delete(w);
        w.onDead(now - w.heardAt);
      }
    }
  }

  /** Counts and logs (rate-limited) one broken WAN connection. */
  broken(uid: string, peer: string, cause: WanBreakCause, detail: string): void {
    this.counts.set(cause, (this.counts.get(cause) ?? 0) + 1);
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.linesInWindow = 0;
    }
    if (this.linesInWindow < (this.opts.linesPerSecond ?? 3)) {
      this.linesInWindow++;
      this.opts.logger.warn(
        { uid, peer, cause, detail },
        `stream ${uid}: WAN connection to ${peer} broken (${cause}): ${MEANING[cause]}${detail ? ` (${detail})` : ''}; both applications' connections were reset`,
      );
      return;
    }
    this.unlogged++;
    if (!this.summary) {
      this.summary = setTimeout(() => this.summarize(), 1000);
      this.summary.unref();
    }
  }

  private summarize(): void {
    this.summary = undefined;
    if (this.unlogged === 0) return;
    const n = this.unlogged;
    this.unlogged = 0;
    const byCause = [...this.counts].map(([c, k]) => `${c} ${k}`).join(', ');
    this.opts.logger.warn({ count: n, totals: Object.fromEntries(this.counts) }, `${n} more broken WAN connection(s) not logged one by one; since start: ${byCause}`);
  }

  /** Broken WAN connections since start, by cause. */
  totals(): { cause: WanBreakCause; count: number }[] {
    return [...this.counts].map(([cause, count]) => ({ cause, count }));
  }

  /** Stops the sweep and logs what is unlogged (shutdown). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.watched.clear();
    if (this.summary) clearTimeout(this.summary);
    this.summarize();
  }
}
