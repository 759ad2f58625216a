// The gateway's data servers as one: a stream's listeners are spread over the
// agents (processes on this node, other gateway nodes) that are up, by free ports
// and load, and each listener keeps its place in the stream's global order so that
// connection i still goes to targets[i % targets.length].
import type { Logger } from '../log.js';
import { formatAddress, type Address } from '../protocol/address.js';
import { ScistreamError, alreadyExists, invalidArgument, notFound, resourceExhausted } from '../protocol/errors.js';
import type { PortRange } from './ports.js';
import { unanswered } from './remote.js';
import { PendingReleases } from './releases.js';
import { mergeEnds } from './connection-ends.js';
import { RECENT_CONNECTIONS } from './access-log.js';
import { sharedListenersUnavailable } from './shared-listeners.js';
import { JoinedShares, type Share } from './pool-joins.js';
import * as totals from './pool-totals.js';
import { NO_RECORD, byStream, readBack, wrapRecord } from './pool-adopt.js';
import { SpareListeners } from './pool-spares.js';
import type { AdoptedStream, AgentHandle, DataServer, ListenerOptions, StreamStats, UnreleasedShare, WanLeg } from './index.js';

/** One agent as status shows it. */
export interface AgentSummary {
  name: string;
  address: string;
  /** Host its listeners are advertised with (undefined before its first answer). */
  listenerIp: string | undefined;
  up: boolean;
  /** Streams it holds a share of. */
  streams: number;
  freePorts: number;
  bytesPerSecond: number;
}

/** Where a new stream's listeners go: each agent's global indices, and the workers that join them all (shared). */
interface Plan {
  owners: Map<AgentHandle, number[]>;
  joiners: AgentHandle[];
}

/** A stream read back from the agents (adopt). */
export interface PoolStream extends AdoptedStream {
  /** Every listener in the stream's global order (a hole where a share is missing: see `complete`). */
  listeners: Address[];
  /** One per listener, in global order; empty before SetTargets. */
  targets: Address[];
  /** What s2cs stored with pool.setRecord (empty if nothing). */
  encrypted: boolean;
  shares: { agent: string; address: string; indices: number[]; listeners: Address[] }[];
  /** Every listener was found on an agent that answered. */
  complete: boolean;
  stats: StreamStats;
}

export interface AdoptResult {
  streams: PoolStream[];
  /** Streams found incomplete while every agent answered: a part of them is gone, so the rest was released. */
  released: { uid: string; why: string }[];
  /** Agents that did not answer (their shares may still live). */
  unanswered: string[];
}

export type StreamsLostListener = (uids: string[], why: string) => void;

interface Placement {
  uid: string;
  count: number;
  listeners: Address[];
  shares: Share[];
  /** Workers to join its listeners once it is placed (reserve: they listen, joinable). */
  joiners?: AgentHandle[];
}

export interface AgentPoolOptions {
  logger: Logger;
  /**
   * Spare listeners kept open on each agent that can hold them (RemoteAgent), so
   * that a request takes them without a round trip to the agent. 0 (default): none.
   */
  spares?: number;
}

/** How long after a stream took spares they are replaced. */
const REFILL_DELAY_MS = 50;

export class AgentPool implements DataServer {
  private readonly members: AgentHandle[] = [];
  private readonly placements = new Map<string, Placement>();
  private readonly starting = new Map<string, Promise<unknown>>();
  /** Listeners being reserved on each agent now (not yet in its cached free count). */
  private readonly pending = new Map<AgentHandle, number>();
  /** What the pool last said about each agent (a log line per change, not per poll). */
  private readonly seenUp = new Map<AgentHandle, boolean | undefined>();
  /** Releases an agent did not confirm (it did not answer); retried until it does. */
  private readonly releases: PendingReleases;
  private readonly lostListeners: StreamsLostListener[] = [];
  /** Spare listeners kept on the agents that can hold them. */
  private readonly spares: SpareListeners;
  /** Streams whose listeners were spares: the assignment under way, awaited before any other call for the uid. */
  private readonly assigning = new Map<string, Promise<void>>();
  /** Port ranges of agents whose handles do not say them (knowRange). */
  private readonly ranges = new Map<AgentHandle, PortRange>();
  /** The gateway's local workers, which share each TCP stream's listeners (shareListeners). */
  private siblings: readonly AgentHandle[] = [];
  /** The workers that joined shared listeners, and what they are told. */
  private readonly joins: JoinedShares;
  private closed = false;

  constructor(
    agents: readonly AgentHandle[],
    private readonly opts: AgentPoolOptions,
  ) {
    this.spares = new SpareListeners({ logger: opts.logger, target: opts.spares ?? 0, closed: () => this.closed, reserving: (a) => this.pending.get(a) ?? 0 });
    this.releases = new PendingReleases({
      logger: opts.logger,
      placedOn: (agent, uid) => (this.starting.has(uid) ? 'starting' : this.placements.get(uid)?.shares.some((s) => s.agent === agent) ? 'placed' : 'no'),
    });
    this.joins = new JoinedShares({ logger: opts.logger, releases: this.releases });
    for (const a of agents) this.add(a);
  }

  add(agent: AgentHandle): void {
    this.members.push(agent);
    // undefined: not heard of yet (a RemoteAgent before its first poll).
    if (agent.up()) {
      this.seenUp.set(agent, true);
      this.spares.prepare(agent);
    }
    agent.onChange((event) => this.changed(agent, event));
    agent.onStreamsGone?.((uids) => this.sharesGone(agent, uids));
  }

  /**
   * The agent dropped streams by itself (it was cut off from every s2cs for longer
   * than its --orphan-timeout): each of them is broken, so the rest is released and
   * they are reported lost (unless other workers share its listeners: carriedOn).
   */
  private sharesGone(agent: AgentHandle, uids: string[]): void {
    const lost: string[] = [];
    for (const uid of uids) {
      const p = this.placements.get(uid);
      if (!p || !p.shares.some((s) => s.agent === agent)) continue;
      if (this.carriedOn(p, agent)) continue;
      this.placements.delete(uid);
      for (const s of p.shares) if (s.agent !== agent) void this.releases.releaseOn(s.agent, uid);
      lost.push(uid);
    }
    if (lost.length > 0) {
      this.tellLost(lost, `data-server agent ${agent.name} (${agent.address}) dropped its part: it was cut off from s2cs for longer than its --orphan-timeout, and its connections were reset`);
    }
  }

  /** This pool's spares on an agent, ready to be taken. */
  sparesOn(agent: AgentHandle): readonly Address[] {
    return this.spares.on(agent);
  }

  /** Who this pool's spares belong to on the agents: one id per s2cs process. */
  get owner(): string {
    return this.spares.owner;
  }

  /** The agents, in the order they were given. */
  handles(): readonly AgentHandle[] {
    return this.members;
  }

  /** Called with the uids of streams that lost a part (their agent restarted or died); the rest of them is already released. */
  onStreamsLost(listener: StreamsLostListener): void {
    this.lostListeners.push(listener);
  }

  agents(): AgentSummary[] {
    return this.members.map((a) => ({
      name: a.name,
      address: a.address,
      listenerIp: a.health()?.listenerIp,
      up: a.up(),
      streams: [...this.placements.values()].filter((p) => p.shares.some((s) => s.agent === a)).length,
      freePorts: a.ports().free + (a.health()?.sparePorts ?? 0),
      bytesPerSecond: a.bytesPerSecond(),
    }));
  }

  private changed(agent: AgentHandle, event: 'down' | 'up' | 'restarted'): void {
    const log = this.opts.logger;
    if (event === 'down') {
      this.spares.drop(agent);
      if (this.seenUp.get(agent) === false) return;
      this.seenUp.set(agent, false);
      log.warn({ agent: agent.name, address: agent.address }, `data-server agent ${agent.name} (${agent.address}) does not answer: marked down, new streams avoid it`);
      return;
    }
    if (event === 'restarted') {
      // A new process: it may keep spares now (upgraded, or its native addon built), and join listeners.
      this.spares.restarted(agent);
      this.joins.restarted(agent);
      // Its spares went with it (agentLost forgets them); nothing to report: they belonged to no stream.
      this.agentLost(agent, `data-server agent ${agent.name} (${agent.address}) restarted: the connections it carried were reset`);
    }
    const before = this.seenUp.get(agent);
    if (before !== true || event === 'restarted') this.spares.prepare(agent);
    if (before !== true) {
      this.seenUp.set(agent, true);
      // Its first answer is no news; after being down, it is.
      if (before === false) log.info({ agent: agent.name, address: agent.address }, `data-server agent ${agent.name} (${agent.address}) answers: taking it back`);
    }
    this.releases.retry(agent);
  }

  /**
   * The agent lost every stream it held (its process ended or restarted): each
   * stream it had a share of is broken, so the rest of it is released on the other
   * agents (its connections reset, never ended cleanly) and reported lost.
   */
  agentLost(agent: AgentHandle, why: string): void {
    // Its spares went with it (they are opened again when it answers as restarted).
    this.spares.drop(agent);
    const lost: Placement[] = [];
    const kept: string[] = [];
    for (const p of this.placements.values()) {
      if (!p.shares.some((s) => s.agent === agent)) continue;
      if (this.carriedOn(p, agent)) kept.push(p.uid);
      else lost.push(p);
    }
    this.releases.agentGone(agent, why);
    if (kept.length > 0) {
      this.opts.logger.warn({ agent: agent.name, uids: kept }, `${why}; ${kept.length} stream(s) whose listeners it shared go on in the other workers: ${kept.slice(0, 10).join(', ')}${kept.length > 10 ? ', ...' : ''}`);
    }
    if (lost.length === 0) return;
    for (const p of lost) {
      this.placements.delete(p.uid);
      for (const s of p.shares) if (s.agent !== agent) void this.releases.releaseOn(s.agent, p.uid);
    }
    const uids = lost.map((p) => p.uid);
    this.opts.logger.warn({ agent: agent.name, uids }, `${why}; ${uids.length} stream(s) ended: ${uids.slice(0, 10).join(', ')}${uids.length > 10 ? ', ...' : ''}`);
    for (const l of this.lostListeners) {
      try {
        l(uids, why);
      } catch (err) {
        this.opts.logger.error({ err }, 'a streams-lost listener failed');
      }
    }
  }

  /**
   * A stream lost an agent's share: when every listener of that share is in another
   * agent's share too (listeners shared by the workers), the others go on taking its
   * connections (the kernel gives none to a closed socket), so the share is dropped
   * and the stream kept (true); otherwise the stream is broken (false).
   */
  private carriedOn(p: Placement, agent: AgentHandle): boolean {
    const others = p.shares.filter((s) => s.agent !== agent);
    const held = new Set(others.flatMap((s) => s.indices));
    if (others.length === 0 || !p.shares.every((s) => s.agent !== agent || s.indices.every((g) => held.has(g)))) return false;
    p.shares = others;
    return true;
  }

  /** Free ports of an agent for placement: its last reading and this pool's spares there, less what is being reserved on it now. */
  private freeOn(agent: AgentHandle): number {
    return Math.max(0, agent.ports().free + this.spares.on(agent).length - (this.pending.get(agent) ?? 0));
  }

  /**
   * Which agent takes each of `count` listeners: one at a time, to the up agent
   * with a free port and the lowest load plus what this stream gave it already.
   * Load is counted in connections: an agent's open connections, averaged with the
   * same number spread by throughput (its share of the pool's bytes per second), so
   * an agent carrying the fast connections counts as more loaded than one with as
   * many idle ones.
   */
  private place(uid: string, count: number, silent: ReadonlySet<AgentHandle> = new Set()): Map<AgentHandle, number[]> {
    // Never an agent that missed its last poll, nor one that did not answer this request.
    const up = this.members.filter((a) => a.up() && (a.answering?.() ?? true) && !silent.has(a));
    if (up.length === 0) {
      throw new ScistreamError(
        'UNAVAILABLE',
        `no data-server agent answers (${this.members.map((a) => `${a.name} at ${a.address}`).join(', ') || 'none configured'})${silent.size > 0 ? ` for stream ${uid}` : ''}; check that s2ds runs and is reachable, then retry`,
      );
    }
    const conns = up.map((a) => a.health()?.activeConnections ?? 0);
    const rates = up.map((a) => a.bytesPerSecond());
    const totalConns = conns.reduce((x, y) => x + y, 0);
    const totalRate = rates.reduce((x, y) => x + y, 0);
    const load = up.map((_, i) => (totalRate > 0 ? (conns[i]! + (Math.max(totalConns, 1) * rates[i]!) / totalRate) / 2 : conns[i]!));
    // One agent: it places everything itself, and its refusal says best what holds its ports.
    if (up.length === 1) return new Map([[up[0]!, Array.from({ length: count }, (_, g) => g)]]);
    const free = up.map((a) => this.freeOn(a));
    const totalFree = free.reduce((x, y) => x + y, 0);
    if (totalFree < count) {
      const down = this.members.length - up.length;
      throw resourceExhausted(
        `not enough free ports for ${count} connection(s) of stream ${uid}: the data-server agents that answer have ${totalFree} free ` +
          `(${up.map((a, i) => `${a.name}: ${free[i]}`).join(', ')})${down > 0 ? ` and ${down} agent(s) are down` : ''}; ` +
          'release streams no longer needed (s2uc release UID), ask for fewer connections, or widen --port-range',
      );
    }
    const given = up.map(() => 0);
    const plan = new Map<AgentHandle, number[]>();
    for (let g = 0; g < count; g++) {
      let best = -1;
      for (let i = 0; i < up.length; i++) {
        if (given[i]! >= free[i]!) continue;
        if (best < 0) {
          best = i;
          continue;
        }
        const d = load[i]! + given[i]! - (load[best]! + given[best]!);
        if (d < 0 || (d === 0 && free[i]! - given[i]! > free[best]! - given[best]!)) best = i;
      }
      given[best]!++;
      const agent = up[best]!;
      const list = plan.get(agent) ?? [];
      list.push(g);
      plan.set(agent, list);
    }
    return plan;
  }

  async startListeners(uid: string, count: number, opts: ListenerOptions = {}): Promise<Address[]> {
    if (this.placements.has(uid) || this.starting.has(uid)) throw alreadyExists(`stream ${uid} already has listeners on this gateway`);
    const capBps = opts.capBps ?? 0;
    const allowFrom = opts.allowFrom ?? [];
    const chosen = opts.ports && opts.ports.length > 0 ? opts.ports : undefined;
    // Spares are bound for TCP only: a UDP stream binds its ports (both kinds) at request time.
    const udp = opts.protocol === 'udp';
    const plan = this.planFor(uid, count, udp, chosen, undefined, capBps);
    if (!chosen && !udp && [...plan.owners].every(([a, idx]) => this.spares.uses(a) && this.spares.on(a).length >= idx.length)) {
      const { listeners, listening } = this.fromSpares(uid, count, plan, capBps, allowFrom);
      // Answered once the agents listen there: a spare is bound but not listening, so a client that
      // connects the moment it has the answer would otherwise be refused. (Not once the other workers
      // joined: until then the owner takes every connection.)
      await listening.catch((err: unknown) => {
        throw lostListeners(uid, err);
      });
      return listeners;
    }
    // Known as starting before anything is awaited: a release that comes meanwhile waits for it
    // (release() finds it in `starting`) instead of finding nothing and leaving the listeners behind.
    const work = chosen ? this.reserveChosen(uid, chosen, plan, capBps, allowFrom, udp) : this.reserveAnywhere(uid, count, plan, capBps, allowFrom, udp);
    this.starting.set(uid, work);
    try {
      const placement = await work;
      this.placements.set(uid, placement);
      if (placement.joiners) this.joins.start(uid, placement, placement.shares[0]!, placement.joiners, allowFrom);
      placement.joiners = undefined;
      return placement.listeners;
    } finally {
      this.starting.delete(uid);
    }
  }

  /**
   * Tells the pool which agents are this gateway's local workers (s2cs --workers):
   * they bind the same address, so that each TCP stream's listeners, opened by one of
   * them, are joined by the others and the kernel spreads the connections over all
   * (shared-listeners.ts). Only while every agent of the pool is such a worker (no
   * --s2ds agents on other nodes), two or more answer, and SO_REUSEPORT can be set.
   */
  shareListeners(workers: readonly AgentHandle[]): void {
    this.siblings = workers;
  }

  /**
   * Whether a new stream's listeners are shared by the local workers: a TCP stream
   * with fewer listeners than workers that answer (with as many or more, each listener
   * has a worker of its own and the connection map spreads the connections over them
   * one per listener, which a hash cannot match), and not capped (a cap split over
   * workers the kernel gives connections to by a hash would hold a stream whose few
   * connections landed on one worker below its rate; so its carriers need no share of one).
   */
  private shares(count: number, udp: boolean, capBps: number, silent: ReadonlySet<AgentHandle>): boolean {
    if (udp || capBps > 0 || this.siblings.length < 2 || sharedListenersUnavailable() !== undefined) return false;
    if (!this.members.every((a) => this.siblings.includes(a))) return false;
    const answering = this.siblings.filter((a) => a.up() && (a.answering?.() ?? true) && !silent.has(a) && this.joins.canJoin(a));
    return count < answering.length;
  }

  /** The workers other than `owner` that join its listeners: those that answer now. */
  private joinersOf(owner: AgentHandle, silent: ReadonlySet<AgentHandle>): AgentHandle[] {
    return this.siblings.filter((a) => a !== owner && a.up() && (a.answering?.() ?? true) && !silent.has(a) && this.joins.canJoin(a));
  }

  /**
   * Where a new stream's listeners go. Shared (see shares): all on one worker, the one
   * with spares enough, then the most free ports (every worker carries the
   * connections anyway), joined by the others; chosen ports in one worker's slice, the
   * same. Otherwise spread over the agents by load (place, placeChosen).
   */
  private planFor(uid: string, count: number, udp: boolean, chosen: readonly number[] | undefined, silent: ReadonlySet<AgentHandle> = new Set(), capBps = 0): Plan {
    const share = this.shares(count, udp, capBps, silent);
    if (chosen) {
      const owners = this.placeChosen(uid, chosen);
      const owner = owners.size === 1 ? [...owners.keys()][0]! : undefined;
      return { owners, joiners: share && owner ? this.joinersOf(owner, silent) : [] };
    }
    if (share) {
      // Not a worker that cannot join (an older s2ds): it cannot open listeners joinable either.
      const fits = this.siblings.filter((a) => a.up() && (a.answering?.() ?? true) && !silent.has(a) && this.joins.canJoin(a) && this.freeOn(a) >= count);
      const spared = fits.filter((a) => this.spares.uses(a) && this.spares.on(a).length >= count);
      const owner = (spared.length > 0 ? spared : fits).reduce<AgentHandle | undefined>((best, a) => (!best || this.freeOn(a) > this.freeOn(best) ? a : best), undefined);
      if (owner) {
        const joiners = this.joinersOf(owner, silent);
        if (joiners.length > 0) return { owners: new Map([[owner, Array.from({ length: count }, (_, g) => g)]]), joiners };
      }
    }
    return { owners: this.place(uid, count, silent), joiners: [] };
  }

  /** Reserves by the plan; when agents do not answer, places the stream again on the others (while they have the ports). */
  private async reserveAnywhere(uid: string, count: number, first: Plan, capBps: number, allowFrom: readonly string[], udp: boolean): Promise<Placement> {
    const silent = new Set<AgentHandle>();
    let plan = first;
    for (;;) {
      try {
        return await this.reserveOnce(uid, count, plan, capBps, allowFrom, udp);
      } catch (err) {
        if (!(err instanceof SilentAgents)) throw err;
        for (const a of err.agents) silent.add(a);
        try {
          plan = this.planFor(uid, count, udp, undefined, silent, capBps);
        } catch (placing) {
          this.opts.logger.debug({ uid, err: (placing as Error).message }, 'no other agent can take a stream its agent did not answer for');
          throw err.cause;
        }
        this.opts.logger.warn(
          { uid, agents: err.agents.map((a) => a.name) },
          `data-server agent ${err.agents.map((a) => a.name).join(', ')} did not answer for stream ${uid}: placing it on the other agents`,
        );
      }
    }
  }

  private async reserveOnce(uid: string, count: number, planned: Plan, capBps: number, allowFrom: readonly string[], udp: boolean): Promise<Placement> {
    const plan = planned.owners;
    for (const [a, idx] of plan) this.pending.set(a, (this.pending.get(a) ?? 0) + idx.length);
    try {
      // Spares an agent has are given back when its share needs more ports than it has
      // free otherwise: they must not make a request fail that would fit without them.
      // (The agent's free count may date from before its spares opened: counted without them.)
      // A refill under way may take the very ports this share needs: given back as well.
      await Promise.all([...plan].map(([a, idx]) => (a.ports().free - this.spares.claimed(a) < idx.length ? this.spares.giveBack(a) : undefined)));
      return await this.reserve(uid, count, planned, capBps, allowFrom, udp).catch(async (err: unknown) => {
        // The agent's free count was older than its spares: give them back and try once more.
        const holding = [...plan.keys()].filter((a) => this.spares.claimed(a) > 0);
        if (!(err instanceof ScistreamError && err.kind === 'RESOURCE_EXHAUSTED') || holding.length === 0) throw err;
        await Promise.all(holding.map((a) => this.spares.giveBack(a)));
        return this.reserve(uid, count, planned, capBps, allowFrom, udp);
      });
    } finally {
      for (const [a, idx] of plan) {
        this.pending.set(a, (this.pending.get(a) ?? 0) - idx.length);
        this.spares.refill(a);
      }
    }
  }

  /**
   * The stream's listeners are spares, taken now: the answer needs one round trip
   * (AssignSpares, which makes them listen), not a bind. startListeners waits for it;
   * every later call for the uid does too. Should an assignment fail (the agent went away), the
   * stream is reported lost like one whose agent died, and the rest released.
   */
  private fromSpares(uid: string, count: number, planned: Plan, capBps: number, allowFrom: readonly string[]): { listeners: Address[]; listening: Promise<void> } {
    const listeners = new Array<Address>(count);
    const shares: Share[] = [];
    const taken: Address[][] = [];
    const { joiners } = planned;
    for (const [agent, indices] of planned.owners) {
      const mine = this.spares.take(agent, indices.length);
      indices.forEach((g, j) => (listeners[g] = mine[j]!));
      shares.push({ agent, indices });
      taken.push(mine);
    }
    const owned = [...shares];
    const placement: Placement = { uid, count, listeners, shares };
    this.placements.set(uid, placement);
    // The answer waits for this, so s2cs's record of the stream (setRecord, after the
    // answer) follows in a call of its own; until then each share carries only its indices.
    const listening = Promise.all(
      owned.map((s, i) =>
        s.agent.assignSpares!(uid, this.spares.owner, taken[i]!, wrapRecord(count, s.indices, NO_RECORD), shareOfCap(capBps, s.indices.length, count), allowFrom, joiners.length > 0),
      ),
    ).then(() => undefined);
    const work = listening.then(
      () => {
        // The owner's listeners are joinable once they listen: the other workers join them now.
        if (joiners.length > 0) this.joins.start(uid, placement, owned[0]!, joiners, allowFrom, wrapRecord(count, owned[0]!.indices, NO_RECORD));
      },
      (err: unknown) => {
        if (this.placements.get(uid) === placement) {
          this.placements.delete(uid);
          for (const s of shares) void this.releases.releaseOn(s.agent, uid);
          // Spares an agent refused to assign, should they still be open there.
          owned.forEach((s, i) => void s.agent.releaseSpares?.(this.spares.owner, false, taken[i]).catch(noop));
          this.tellLost([uid], `its listeners could not be given to it on the data-server agents (${(err as Error).message})`);
        }
        throw err;
      },
    );
    work.catch(noop);
    this.assigning.set(uid, work);
    void work.finally(() => {
      if (this.assigning.get(uid) === work) this.assigning.delete(uid);
    }).catch(noop);
    // A little later: the calls that set this stream up go first on both event loops.
    setTimeout(() => {
      for (const s of owned) this.spares.refill(s.agent);
    }, REFILL_DELAY_MS).unref();
    return { listeners, listening };
  }

  /** Pending data connections on every agent, as of their last Health answers. */
  pendingConnections(): number {
    return totals.pendingConnections(this.members);
  }

  /** What the agents refused (counted in their own processes), by kind, summed over the agents' last answers. */
  refusalTotals(): { kind: string; count: number }[] {
    return totals.refusals(this.members);
  }

  /** Framed WAN connections that broke on the agents, by cause, summed over the agents' last answers. */
  wanBreakTotals(): { cause: string; count: number }[] {
    return totals.wanBreaks(this.members);
  }

  /** Datagrams the agents dropped since they started, by cause, and their UDP flows open now, summed over their last answers. */
  datagramTotals(): { drops: { cause: string; count: number }[]; flows: number } {
    return totals.datagrams(this.members);
  }

  /** Waits for a stream's assignment from spares; its failure means the stream is gone. */
  private async assigned(uid: string): Promise<void> {
    const work = this.assigning.get(uid);
    if (!work) return;
    try {
      await work;
    } catch (err) {
      throw lostListeners(uid, err);
    }
  }

  private tellLost(uids: string[], why: string): void {
    this.opts.logger.warn({ uids }, `${uids.length} stream(s) ended: ${uids.slice(0, 10).join(', ')}${uids.length > 10 ? ', ...' : ''}: ${why}`);
    for (const l of this.lostListeners) {
      try {
        l(uids, why);
      } catch (err) {
        this.opts.logger.error({ err }, 'a streams-lost listener failed');
      }
    }
  }

  /** All or none: when one agent fails, what the others reserved is released. */
  private async reserve(uid: string, count: number, planned: Plan, capBps: number, allowFrom: readonly string[], udp: boolean, chosen?: readonly number[]): Promise<Placement> {
    const { joiners } = planned;
    const shares: Share[] = [...planned.owners].map(([agent, indices]) => ({ agent, indices }));
    const results = await Promise.allSettled(
      shares.map((s) =>
        s.agent.startListeners(uid, s.indices.length, {
          ...(capBps > 0 ? { capBps: shareOfCap(capBps, s.indices.length, count) } : {}),
          ...(joiners.length > 0 ? { shared: true } : {}),
          ...(allowFrom.length > 0 ? { allowFrom } : {}),
          ...(chosen ? { ports: s.indices.map((g) => chosen[g]!) } : {}),
          ...(udp ? { protocol: 'udp' as const } : {}),
        }),
      ),
    );
    const failed = results.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      const silent = shares.filter((_, i) => results[i]!.status === 'rejected' && unanswered((results[i] as PromiseRejectedResult).reason));
      // One that did not answer may have opened them all the same: released there when it answers (not awaited: it may not).
      for (const s of silent) void this.releases.releaseOn(s.agent, uid);
      await Promise.all(shares.map((s, i) => (results[i]!.status === 'fulfilled' ? this.releases.releaseOn(s.agent, uid) : undefined)));
      const err = (results[failed] as PromiseRejectedResult).reason as unknown;
      const agent = shares[failed]!.agent;
      this.opts.logger.debug({ uid, agent: agent.name, err }, 'an agent could not open its share of a stream; released the rest');
      const cause = err instanceof ScistreamError ? err : new ScistreamError('UNAVAILABLE', `data-server agent ${agent.name} (${agent.address}) could not open listeners for stream ${uid}: ${(err as Error).message}; retry`);
      // Every failure was silence: the stream may go to the others.
      if (silent.length === results.filter((r) => r.status === 'rejected').length) throw new SilentAgents(silent.map((s) => s.agent), cause);
      throw cause;
    }
    const listeners = new Array<Address>(count);
    shares.forEach((s, i) => {
      const bound = (results[i] as PromiseFulfilledResult<Address[]>).value;
      s.indices.forEach((g, j) => (listeners[g] = bound[j]!));
    });
    return { uid, count, listeners, shares, ...(joiners.length > 0 ? { joiners } : {}) };
  }

  /**
   * Which agent takes each chosen port (Request.listener_ports): the agent whose
   * port range holds it (local agents and workers, whose ranges s2cs knows). A port
   * no known range holds goes to the one agent whose range s2cs does not know (an
   * agent given with --s2ds), which answers INVALID_ARGUMENT if it is not its own;
   * with no such agent, or several, it is refused here with INVALID_ARGUMENT.
   */
  private placeChosen(uid: string, ports: readonly number[]): Map<AgentHandle, number[]> {
    const unknown = this.members.filter((a) => this.rangeOf(a) === undefined);
    const plan = new Map<AgentHandle, number[]>();
    for (const [g, port] of ports.entries()) {
      const owner = this.members.find((a) => {
        const r = this.rangeOf(a);
        return r !== undefined && port >= r.first && port <= r.last;
      }) ?? (unknown.length === 1 ? unknown[0] : undefined);
      if (!owner) {
        const known = this.members.map((a) => this.rangeOf(a)).filter((r): r is PortRange => r !== undefined);
        throw invalidArgument(
          `listener port ${port} of stream ${uid} is in no data-server agent's port range here (${known.map((r) => `${r.first}-${r.last}`).join(', ') || 'none known'}); ask for ports within --port-range, or for none`,
        );
      }
      if (!owner.up() || !(owner.answering?.() ?? true)) {
        throw new ScistreamError('UNAVAILABLE', `listener port ${port} of stream ${uid} belongs to data-server agent ${owner.name} (${owner.address}), which does not answer now; retry once it is back, or ask for other ports`);
      }
      const list = plan.get(owner) ?? [];
      list.push(g);
      plan.set(owner, list);
    }
    return plan;
  }

  /** The port range an agent listens in, when s2cs knows it (its own workers and in-process agents). */
  private rangeOf(agent: AgentHandle): PortRange | undefined {
    return this.ranges.get(agent) ?? agent.portRange?.();
  }

  /** Tells the pool the port range of an agent whose handle does not say it (a worker s2cs started with its slice). */
  knowRange(agent: AgentHandle, range: PortRange): void {
    this.ranges.set(agent, range);
  }

  /**
   * Reserves the chosen ports on the agents that own them. This pool's spares on
   * those ports are forgotten first (the agent takes them over for the stream); a
   * refill that raced and opened one is forgotten again after. No retry elsewhere:
   * a port belongs to one agent.
   */
  private async reserveChosen(uid: string, chosen: readonly number[], planned: Plan, capBps: number, allowFrom: readonly string[], udp: boolean): Promise<Placement> {
    const plan = planned.owners;
    const forget = (agent: AgentHandle) => {
      this.spares.forget(agent, new Set((plan.get(agent) ?? []).map((g) => chosen[g]!)));
    };
    for (const a of plan.keys()) forget(a);
    for (const [a, idx] of plan) this.pending.set(a, (this.pending.get(a) ?? 0) + idx.length);
    try {
      return await this.reserve(uid, chosen.length, planned, capBps, allowFrom, udp, chosen);
    } catch (err) {
      // The agent owning a port did not answer: no other agent can take it.
      throw err instanceof SilentAgents ? err.cause : err;
    } finally {
      for (const [a, idx] of plan) {
        this.pending.set(a, (this.pending.get(a) ?? 0) - idx.length);
        forget(a);
        // A spare taken over is replaced, as after any request.
        this.spares.refill(a);
      }
    }
  }

  /**
   * Settles once the workers joining the stream's shared listeners have joined and
   * been told everything the stream was told so far (the calls answer before that).
   */
  async joined(uid: string): Promise<void> {
    await this.assigning.get(uid)?.catch(noop);
    await this.joins.settled(uid);
  }

  /** Where each listener of a stream is: per agent, the global indices of its share (its own order). */
  sharesOf(uid: string): readonly Share[] | undefined {
    return this.placements.get(uid)?.shares;
  }

  async setTargets(uid: string, targets: Address[], wan?: WanLeg, record?: Uint8Array): Promise<void> {
    await this.assigned(uid);
    const p = this.placements.get(uid);
    if (!p) throw notFound(`stream ${uid} has no listeners on this gateway`);
    if (targets.length === 0) throw notFound(`stream ${uid}: no targets given`);
    await this.joins.tell(uid, p, 'setting its targets', (s) => s.agent.setTargets(uid, s.indices.map((g) => targets[g % targets.length]!), wan, record ? wrapRecord(p.count, s.indices, record) : undefined));
  }

  /**
   * Stores s2cs's record of the stream with every agent holding a share of it,
   * each prefixed with that share's global indices so that adopt() can put the
   * listeners back in order.
   */
  async setRecord(uid: string, record: Uint8Array): Promise<void> {
    // No await when nothing is being assigned: the call goes out now, before any later one for the uid.
    if (this.assigning.has(uid)) await this.assigned(uid);
    const p = this.placements.get(uid);
    if (!p) throw notFound(`stream ${uid} has no listeners on this gateway`);
    await this.joins.tell(uid, p, 'storing its record', (s) => s.agent.setRecord(uid, wrapRecord(p.count, s.indices, record)));
  }

  /**
   * Releases the stream on every agent holding a part of it. Throws PartialRelease
   * (UNAVAILABLE) when some did not answer: the rest is released, theirs is retried
   * until they answer (releasing(uid) says what is left; onReleased tells the end).
   */
  async release(uid: string): Promise<void> {
    const pending = this.starting.get(uid) ?? this.assigning.get(uid);
    if (pending) await pending.catch(noop);
    await this.joins.settled(uid);
    const p = this.placements.get(uid);
    if (!p) return;
    this.placements.delete(uid);
    // What each part carried at its agent's last answer: what may go on forwarding there.
    const connections = p.shares.map((s) => {
      const st = s.agent.stats(uid);
      return (st?.activeConnections ?? 0) + (st?.waitingConnections ?? 0);
    });
    const done = await Promise.all(p.shares.map((s) => this.releases.releaseOn(s.agent, uid)));
    for (const s of p.shares) this.spares.refill(s.agent);
    const left = p.shares.flatMap((s, i) => (done[i] ? [] : [{ agent: s.agent, connections: connections[i]! }]));
    if (left.length > 0) throw this.releases.partial(uid, left);
  }

  releasing(uid: string): readonly UnreleasedShare[] | undefined {
    return this.releases.releasing(uid);
  }

  onReleased(listener: (uid: string, how: string) => void): void {
    this.releases.onReleased(listener);
  }

  shareStats(uid: string): { agent: AgentHandle; stats: StreamStats }[] {
    return (this.placements.get(uid)?.shares ?? []).flatMap((s) => {
      const stats = s.agent.stats(uid);
      return stats ? [{ agent: s.agent, stats }] : [];
    });
  }

  stats(uid: string): StreamStats | undefined {
    const p = this.placements.get(uid);
    if (!p) return undefined;
    const sum: StreamStats = { uid, listeners: 0, activeConnections: 0, waitingConnections: 0, acceptedConnections: 0, bytesToTarget: 0, bytesFromTarget: 0, refusedConnections: 0 };
    // A listener shared by the workers is in each of their shares: counted once.
    const held = new Set<number>();
    for (const s of p.shares) {
      const st = s.agent.stats(uid);
      if (!st) continue;
      for (const g of s.indices.slice(0, st.listeners)) held.add(g);
      sum.listeners = held.size;
      sum.activeConnections += st.activeConnections;
      sum.waitingConnections += st.waitingConnections;
      sum.acceptedConnections += st.acceptedConnections;
      sum.bytesToTarget += st.bytesToTarget;
      sum.bytesFromTarget += st.bytesFromTarget;
      sum.refusedConnections += st.refusedConnections;
      if (st.datagrams) sum.datagrams = totals.addDatagrams(sum.datagrams, st.datagrams);
      mergeEnds(sum, st);
      if (st.recentConnections) (sum.recentConnections ??= []).push(...st.recentConnections);
    }
    // The stream's last connections over all its agents.
    sum.recentConnections = sum.recentConnections?.sort((a, b) => a.endedAtMs - b.endedAtMs).slice(-RECENT_CONNECTIONS);
    return sum;
  }

  /** Reserved over every agent; free over the agents that answer (a down agent's ports cannot be used). */
  ports(): { reserved: number; free: number } {
    return totals.ports(this.members);
  }

  bufferMemory(): { reserved: number; limit: number } {
    return totals.bufferMemory(this.members);
  }

  /**
   * After an s2cs restart: reads every agent's streams and takes them back, each
   * with its listeners in global order (from the indices setRecord stored; without
   * them, agent by agent). A stream with a part missing while every agent answered
   * is broken: its rest is released.
   */
  async adopt(): Promise<PoolStream[]> {
    const result = await this.adoptAll();
    if (result.unanswered.length > 0) {
      this.opts.logger.warn({ agents: result.unanswered }, `data-server agents did not answer while taking streams back: ${result.unanswered.join(', ')}; streams with a part there are taken back incomplete`);
    }
    return result.streams;
  }

  /** adopt(), with the streams released as broken and the agents that did not answer. */
  async adoptAll(): Promise<AdoptResult> {
    const answers = await Promise.allSettled(this.members.map((a) => a.listStreams()));
    const { byUid, unanswered } = byStream(this.members, answers);
    const streams: PoolStream[] = [];
    const released: { uid: string; why: string }[] = [];
    for (const [uid, parts] of byUid) {
      if (this.placements.has(uid) || this.starting.has(uid)) continue;
      const back = readBack(parts);
      if (!back.complete && unanswered.length === 0) {
        const why = `stream ${uid} has only ${back.listeners.filter(Boolean).length} of its ${back.count} listeners on the agents: a part ended with its agent`;
        await Promise.all(parts.map((p) => this.releases.releaseOn(p.agent, uid)));
        released.push({ uid, why });
        this.opts.logger.warn({ uid }, `${why}; released the rest`);
        continue;
      }
      this.placements.set(uid, { uid, count: back.count, listeners: back.listeners, shares: back.shares });
      streams.push({ uid, listeners: back.listeners, targets: back.targets, record: back.record, encrypted: back.encrypted, shares: back.described, complete: back.complete, stats: this.stats(uid)! });
    }
    for (const s of streams) this.opts.logger.info({ uid: s.uid, listeners: s.listeners.filter(Boolean).map(formatAddress) }, 'took back a stream from the data-server agents');
    return { streams, released, unanswered };
  }

  /** Releases every stream on every agent and closes the handles. */
  async close(): Promise<void> {
    await Promise.all([...this.starting.values(), ...this.assigning.values()].map((p) => p.catch(noop)));
    await Promise.all(this.joins.pending());
    this.closed = true;
    this.releases.close();
    await this.spares.close(this.members);
    this.placements.clear();
    await Promise.allSettled(this.members.map((a) => a.close()));
  }
}

/** A reservation failed only because these agents did not answer: the stream may be placed on the others. */
class SilentAgents extends Error {
  constructor(
    readonly agents: AgentHandle[],
    override readonly cause: ScistreamError,
  ) {
    super(cause.message);
  }
}

function noop(): void {}

/** A stream whose listeners could not be given to it (AssignSpares failed): it is gone. */
function lostListeners(uid: string, err: unknown): ScistreamError {
  return new ScistreamError('UNAVAILABLE', `stream ${uid} lost its listeners on the data-server agents (${(err as Error).message}); release it and request it again`);
}

/**
 * A cap is one bucket per agent: each holds its listeners' part of the stream's
 * rate (the connection map spreads the stream's connections over its listeners).
 */
function shareOfCap(capBps: number, listeners: number, count: number): number {
  return capBps > 0 ? (capBps * listeners) / count : 0;
}
