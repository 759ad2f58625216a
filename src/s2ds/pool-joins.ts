// The workers that join a stream's shared listeners (shared-listeners.ts) help, and
// none is needed: the client's calls wait only for the worker that owns the
// listeners, and what the joiners are told (the join, then the stream's targets and
// records) follows in the background, in order, per stream: a slow or silent joiner
// holds up no client. The join starts as soon as the owner listens, not later: a
// script's first connections come right after the answer, and those the owner takes
// before the join stay on it for their lifetime (a join delayed by 50 ms left all 32
// of a test's connections on the owner). A joiner that fails a call is left out of
// the stream (its listeners closed, its connections reset), as one that could not join.
import type { Logger } from '../log.js';
import type { Address } from '../protocol/address.js';
import type { AgentHandle } from './index.js';
import type { PendingReleases } from './releases.js';
import { unanswered } from './remote.js';

/** An agent's part of a stream (pool.ts): the global indices of its listeners. */
export interface Share {
  agent: AgentHandle;
  indices: number[];
  /** It joined the owner's listeners (SO_REUSEPORT) instead of opening its own. */
  joined?: boolean;
}

/** What of a placed stream the joins read and change. */
export interface JoinedStream {
  listeners: Address[];
  shares: Share[];
}

export class JoinedShares {
  /** Per stream: what its joiners are being told, in order. */
  private readonly work = new Map<string, Promise<void>>();
  /** Workers that answered a join with listeners of their own (an older s2ds): not asked to join until they restart. */
  private readonly noJoin = new WeakSet<AgentHandle>();

  constructor(private readonly opts: { logger: Logger; releases: PendingReleases }) {}

  canJoin(agent: AgentHandle): boolean {
    return !this.noJoin.has(agent);
  }

  /** A new process: it may join again. */
  restarted(agent: AgentHandle): void {
    this.noJoin.delete(agent);
  }

  /** The other workers join the owner's listeners (which listen already), in the background. */
  start(uid: string, stream: JoinedStream, owner: Share, joiners: readonly AgentHandle[], allowFrom: readonly string[], record?: Uint8Array): void {
    this.then(uid, async () => {
      const joined = await this.join(uid, owner, stream.listeners, joiners, allowFrom, record);
      for (const agent of joined) stream.shares.push({ agent, indices: owner.indices, joined: true });
    });
  }

  /**
   * Sends `call` now to the shares that own listeners, and to the others (joined, or
   * joining) after what they were told before; resolves once the owners answered. With
   * no owner left (it died and the joiners carry on), every share is an owner.
   */
  async tell(uid: string, stream: JoinedStream, what: string, call: (s: Share) => Promise<unknown>): Promise<void> {
    let now = stream.shares.filter((s) => !s.joined);
    if (now.length === 0) now = [...stream.shares];
    if (!this.work.has(uid) && now.length === stream.shares.length) {
      await Promise.all(now.map(call));
      return;
    }
    const told = new Set(now);
    this.then(uid, async () => {
      const later = stream.shares.filter((s) => !told.has(s));
      const results = await Promise.allSettled(later.map(call));
      results.forEach((r, i) => {
        if (r.status === 'rejected') this.leaveOut(uid, stream, later[i]!, `${what} failed: ${(r.reason as Error).message}`);
      });
    });
    await Promise.all(now.map(call));
  }

  /** Waits for what the stream's joiners are being told (a release goes after it). */
  async settled(uid: string): Promise<void> {
    await this.work.get(uid);
  }

  /** Everything under way, for a close. */
  pending(): Promise<void>[] {
    return [...this.work.values()];
  }

  /** Runs `step` after the stream's earlier steps; a step never rejects the chain. */
  private then(uid: string, step: () => Promise<void>): void {
    const next = (this.work.get(uid) ?? Promise.resolve()).then(step).catch((err: unknown) => {
      this.opts.logger.error({ uid, err }, `telling the workers that joined stream ${uid} failed`);
    });
    this.work.set(uid, next);
    void next.finally(() => {
      if (this.work.get(uid) === next) this.work.delete(uid);
    });
  }

  /** A joined worker that failed a call: its listeners close, the stream goes on in the others. */
  private leaveOut(uid: string, stream: JoinedStream, share: Share, why: string): void {
    stream.shares = stream.shares.filter((s) => s !== share);
    void this.opts.releases.releaseOn(share.agent, uid);
    this.opts.logger.warn({ uid, agent: share.agent.name }, `data-server worker ${share.agent.name} left stream ${uid} (${why}); the other workers carry its connections`);
  }

  /**
   * Each join helps, none is needed: a worker that cannot join (an error, silence, or
   * listeners of its own instead: an older s2ds, asked no more) is left out of the
   * stream, which its other carriers serve; returns the workers that joined.
   */
  private async join(uid: string, owner: Share, listeners: readonly Address[], joiners: readonly AgentHandle[], allowFrom: readonly string[], record?: Uint8Array): Promise<AgentHandle[]> {
    const ports = owner.indices.map((g) => listeners[g]!.port);
    const results = await Promise.allSettled(
      joiners.map((a) => a.startListeners(uid, ports.length, { join: ports, ...(allowFrom.length > 0 ? { allowFrom } : {}), ...(record ? { record } : {}) })),
    );
    const joined: AgentHandle[] = [];
    results.forEach((r, i) => {
      const agent = joiners[i]!;
      if (r.status === 'fulfilled' && r.value.map((l) => l.port).join() === ports.join()) {
        joined.push(agent);
        return;
      }
      let why: string;
      if (r.status === 'fulfilled') {
        this.noJoin.add(agent);
        why = 'it opened listeners of its own instead (an older s2ds): it takes no part in shared listeners until it restarts';
      } else {
        why = (r.reason as Error).message;
      }
      // Whatever it opened (or may have, when it did not answer) is closed, now or once it answers.
      if (r.status === 'fulfilled' || unanswered(r.reason)) void this.opts.releases.releaseOn(agent, uid);
      this.opts.logger.warn({ uid, agent: agent.name }, `data-server worker ${agent.name} could not join the listeners of stream ${uid} (${why}); the other workers carry its connections`);
    });
    return joined;
  }
}
