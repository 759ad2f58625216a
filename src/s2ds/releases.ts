// Releases a data-server agent has not confirmed. An agent that does not answer a
// Release (a partition, a hung host) may still forward the stream's connections:
// s2cs must not say the stream is gone. The release is kept here and retried on
// that agent until it answers (or restarts, which ends its connections anyway);
// a release asked by a user is reported partial (PartialRelease) and followed
// until every agent confirmed it (onReleased).
import type { Logger } from '../log.js';
import { ScistreamError } from '../protocol/errors.js';
import type { AgentHandle, UnreleasedShare } from './index.js';

/**
 * A release that some agents did not confirm: the rest is released, their parts
 * may still forward. An error, not an OK with a warning: the Python reference
 * client prints "Release completed" on any OK, and workflow scripts check the exit
 * code; the stream is not released yet. DEADLINE_EXCEEDED, gRPC's code for "not
 * done in time, maybe done in part": not UNAVAILABLE, which clients retry at once
 * and read as "s2cs unreachable".
 */
export class PartialRelease extends ScistreamError {
  constructor(
    readonly uid: string,
    readonly shares: readonly UnreleasedShare[],
  ) {
    super('DEADLINE_EXCEEDED', partialReleaseMessage(uid, shares));
    this.name = 'PartialRelease';
  }
}

export function partialReleaseMessage(uid: string, shares: readonly UnreleasedShare[]): string {
  const connections = shares.reduce((n, s) => n + s.connections, 0);
  // Names only: agents' addresses are the facility's own (status shows them to operators).
  const agents = shares.map((s) => `${s.agent} (${s.connections} connection(s))`).join(', ');
  const one = shares.length === 1;
  return (
    `release of stream ${uid} is partial: data-server agent${one ? '' : 's'} ${agents} did not answer, so ${connections} connection(s) of the stream ` +
    `may still forward there; the rest is released. s2cs retries the release on ${one ? 'it' : 'them'} until ${one ? 'it answers' : 'they answer'}, then the stream ends ` +
    `(status shows it releasing meanwhile). To cut it off now, stop that s2ds or its host's network; see "Partial release" in docs/troubleshooting.md`
  );
}

export interface PendingReleasesOptions {
  logger: Logger;
  /** How often releases are retried on agents that are up (down ones are retried when they answer again). */
  retryMs?: number;
  /**
   * Whether the uid is on the agent again as a new stream ('placed': the old part
   * is gone, nothing to release) or being placed ('starting': retry later).
   */
  placedOn(agent: AgentHandle, uid: string): 'placed' | 'starting' | 'no';
}

interface Followed {
  shares: Map<AgentHandle, UnreleasedShare>;
  since: number;
}

export class PendingReleases {
  /** Uids to release on each agent. */
  private readonly byAgent = new Map<AgentHandle, Set<string>>();
  /** Releases asked by users that are partial: what each agent still holds. */
  private readonly followed = new Map<string, Followed>();
  private readonly retrying = new Set<AgentHandle>();
  private readonly listeners: ((uid: string, how: string) => void)[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: PendingReleasesOptions) {}

  /** Releases `uid` on the agent; false (and kept for a retry) when it did not confirm. Never throws. */
  async releaseOn(agent: AgentHandle, uid: string): Promise<boolean> {
    try {
      await agent.release(uid);
      return true;
    } catch (err) {
      const set = this.byAgent.get(agent) ?? new Set<string>();
      if (!set.has(uid)) {
        this.opts.logger.warn({ uid, agent: agent.name, err: (err as Error).message }, `could not release stream ${uid} on data-server agent ${agent.name}; retrying until it answers`);
      }
      set.add(uid);
      this.byAgent.set(agent, set);
      this.startTimer();
      return false;
    }
  }

  /** Follows a user's release that `shares` did not confirm; returns the error that tells the user. */
  partial(uid: string, shares: { agent: AgentHandle; connections: number }[]): PartialRelease {
    const map = new Map(shares.map((s) => [s.agent, { agent: s.agent.name, address: s.agent.address, connections: s.connections }]));
    this.followed.set(uid, { shares: map, since: Date.now() });
    return new PartialRelease(uid, [...map.values()]);
  }

  /** What agents still hold of a partial release (undefined: none, or not followed). */
  releasing(uid: string): readonly UnreleasedShare[] | undefined {
    const f = this.followed.get(uid);
    return f ? [...f.shares.values()] : undefined;
  }

  onReleased(listener: (uid: string, how: string) => void): void {
    this.listeners.push(listener);
  }

  /** Retries the releases kept for the agent now (it answers again). */
  retry(agent: AgentHandle): void {
    const set = this.byAgent.get(agent);
    if (!set || this.retrying.has(agent) || this.closed) return;
    this.retrying.add(agent);
    void (async () => {
      for (const uid of [...set]) {
        if (this.closed) break;
        const placed = this.opts.placedOn(agent, uid);
        if (placed === 'starting') continue;
        if (placed === 'placed') {
          set.delete(uid);
          this.confirmed(agent, uid, `data-server agent ${agent.name} holds a new stream ${uid}: its old part was gone`);
          continue;
        }
        try {
          await agent.release(uid);
        } catch (err) {
          this.opts.logger.debug({ uid, agent: agent.name, err: (err as Error).message }, 'retrying a release: the agent still does not answer');
          // Still silent: the next ones would wait the same way.
          break;
        }
        set.delete(uid);
        this.opts.logger.info({ uid, agent: agent.name }, `data-server agent ${agent.name} answered: stream ${uid} released there`);
        this.confirmed(agent, uid);
      }
      if (set.size === 0 && this.byAgent.get(agent) === set) this.byAgent.delete(agent);
    })().finally(() => this.retrying.delete(agent));
  }

  /** The agent restarted or ended: what it held is gone, its connections with it. */
  agentGone(agent: AgentHandle, why: string): void {
    const set = this.byAgent.get(agent);
    this.byAgent.delete(agent);
    for (const uid of set ?? []) this.confirmed(agent, uid, why);
  }

  private confirmed(agent: AgentHandle, uid: string, how?: string): void {
    const f = this.followed.get(uid);
    if (!f || !f.shares.delete(agent)) return;
    if (f.shares.size > 0) return;
    this.followed.delete(uid);
    const seconds = Math.round((Date.now() - f.since) / 1000);
    const why = how
      ? `released by request; partial for ${seconds} s (${how})`
      : `released by request; partial for ${seconds} s: data-server agent ${agent.name} did not answer, then released its part when it answered again`;
    for (const l of this.listeners) {
      try {
        l(uid, why);
      } catch (err) {
        this.opts.logger.error({ err }, 'a released listener failed');
      }
    }
  }

  private startTimer(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => {
      if (this.byAgent.size === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
        return;
      }
      // Down agents are retried when they answer again (the pool calls retry on 'up').
      for (const agent of this.byAgent.keys()) if (agent.up()) this.retry(agent);
    }, this.opts.retryMs ?? 1000);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
