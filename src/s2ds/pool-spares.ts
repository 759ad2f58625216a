// Spare listeners: ports the pool keeps reserved on each agent that can hold them
// (bound, not listening), so that a request takes them with one call (AssignSpares)
// instead of waiting for binds. They belong to this pool's s2cs process (owner), are
// opened in the background up to a target, never take the last ports a request could
// use, and are forgotten whenever their agent goes down or restarts.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log.js';
import type { Address } from '../protocol/address.js';
import { AgentCallError } from './remote.js';
import type { AgentHandle } from './index.js';

/** At most this many spares per agent, whatever the option says (the agent's own bound per owner is 16). */
export const MAX_SPARES_PER_AGENT = 8;
/** gRPC's UNIMPLEMENTED: the agent's contract has no such call. */
const UNIMPLEMENTED = 12;
/** gRPC's FAILED_PRECONDITION from ReserveSpares: the agent cannot hold ports without listening (no native addon). */
const FAILED_PRECONDITION = 9;

export interface SpareListenersOptions {
  logger: Logger;
  /** Spares per agent (0: none). */
  target: number;
  /** Whether the pool is closed (nothing is opened any more). */
  closed: () => boolean;
  /** Listeners a request is reserving on the agent now: no refill meanwhile. */
  reserving: (agent: AgentHandle) => number;
}

export class SpareListeners {
  /** Who these spares belong to on the agents: one id per s2cs process. */
  readonly owner = randomBytes(12).toString('base64url');
  readonly target: number;
  /** Ready to be taken, by agent. */
  private readonly held = new Map<AgentHandle, Address[]>();
  /** Changes when an agent's spares are dropped (down, restarted): refills asked before are stale. */
  private readonly epoch = new Map<AgentHandle, number>();
  /** Refills under way, by agent: settled once what they opened is kept, or closed again when stale. */
  private readonly refilling = new Map<AgentHandle, { work: Promise<void>; count: number }>();
  /** Agents that answered that they keep no spares (an older s2ds, or one without the native addon): asked no more until they restart. */
  private readonly refused = new WeakSet<AgentHandle>();

  constructor(private readonly opts: SpareListenersOptions) {
    this.target = Math.max(0, Math.min(MAX_SPARES_PER_AGENT, Math.floor(opts.target)));
  }

  /** The spares on an agent, ready to be taken. */
  on(agent: AgentHandle): readonly Address[] {
    return this.held.get(agent) ?? [];
  }

  /** Spares on the agent, and those a refill under way may open: ports a request cannot count on. */
  claimed(agent: AgentHandle): number {
    return this.on(agent).length + (this.refilling.get(agent)?.count ?? 0);
  }

  uses(agent: AgentHandle): boolean {
    return this.target > 0 && !this.opts.closed() && !this.refused.has(agent) && agent.reserveSpares !== undefined && agent.assignSpares !== undefined && agent.releaseSpares !== undefined;
  }

  /** Takes `n` of the agent's spares for a stream (the caller made sure it has them). */
  take(agent: AgentHandle, n: number): Address[] {
    return (this.held.get(agent) ?? []).splice(0, n);
  }

  /** Forgets spares on these ports (the agent takes them over for a stream). */
  forget(agent: AgentHandle, ports: ReadonlySet<number>): void {
    const list = this.held.get(agent);
    if (list) this.held.set(agent, list.filter((a) => !ports.has(a.port)));
  }

  /** A new process: it may keep spares now (upgraded, or its native addon built). */
  restarted(agent: AgentHandle): void {
    this.refused.delete(agent);
  }

  /**
   * An agent answers (first time, or back after being down): spares left on it by
   * an s2cs that is gone, or by this pool before the agent went down, are closed,
   * then this pool's are opened.
   */
  prepare(agent: AgentHandle): void {
    // Cleared even when this pool keeps none: they hold ports no stream can use.
    if (this.opts.closed() || !agent.releaseSpares || this.refused.has(agent)) return;
    const epoch = this.drop(agent);
    void Promise.all([agent.releaseSpares(this.owner, true), agent.releaseSpares(this.owner, false)]).then(
      () => {
        if (this.epoch.get(agent) === epoch) this.refill(agent);
      },
      (err: unknown) => this.failed(agent, err, 'could not clear spare listeners on a data-server agent'),
    );
  }

  /** Forgets the agent's spares (it went down or restarted); returns the new epoch. */
  drop(agent: AgentHandle): number {
    this.held.delete(agent);
    const epoch = (this.epoch.get(agent) ?? 0) + 1;
    this.epoch.set(agent, epoch);
    return epoch;
  }

  /**
   * Opens spares up to the target in the background, one call per agent at a
   * time, and only while the agent has at least twice as many other free ports:
   * spares never take the last ports a request could use.
   */
  refill(agent: AgentHandle): void {
    if (!this.uses(agent) || !agent.up() || this.refilling.has(agent)) return;
    // A request is reserving on this agent: the ports are its own (refilled when it is done).
    if (this.opts.reserving(agent) > 0) return;
    const want = this.target - this.on(agent).length;
    if (want <= 0 || agent.ports().free < 2 * this.target) return;
    const epoch = this.epoch.get(agent) ?? 0;
    const work = agent.reserveSpares!(this.owner, want).then(
      async (opened) => {
        if (this.opts.closed() || this.epoch.get(agent) !== epoch) {
          // Dropped meanwhile (given back for a request, the agent went down): these are stale too.
          await agent.releaseSpares!(this.owner, false, opened).catch(noop);
          return;
        }
        this.held.set(agent, [...this.on(agent), ...opened]);
      },
      (err: unknown) => this.failed(agent, err, 'could not open spare listeners on a data-server agent'),
    );
    const entry = { work, count: want };
    this.refilling.set(agent, entry);
    void work.finally(() => {
      if (this.refilling.get(agent) === entry) this.refilling.delete(agent);
    });
  }

  /** Gives an agent's spares back (a request needs its ports); refills come later. */
  async giveBack(agent: AgentHandle): Promise<void> {
    const list = this.held.get(agent) ?? [];
    // A refill under way is stale too: what it opens is closed on arrival, before the request goes on.
    this.drop(agent);
    const refill = this.refilling.get(agent)?.work;
    await Promise.all([refill, list.length > 0 ? agent.releaseSpares?.(this.owner, false, list).catch(noop) : undefined]);
  }

  /** A graceful stop: spares belong to no stream, so they are closed (a detach leaves them for the next s2cs to clear). */
  async close(agents: readonly AgentHandle[]): Promise<void> {
    await Promise.allSettled(agents.map((a) => (this.target > 0 && a.releaseSpares && a.up() ? a.releaseSpares(this.owner, false) : undefined)));
    this.held.clear();
  }

  private failed(agent: AgentHandle, err: unknown, what: string): void {
    if (err instanceof AgentCallError && (err.code === UNIMPLEMENTED || err.code === FAILED_PRECONDITION)) {
      this.refused.add(agent);
      const why = err.code === UNIMPLEMENTED ? 'an older s2ds' : 'its native addon is not loaded, so it cannot hold a port without listening: see its log';
      this.opts.logger.info({ agent: agent.name }, `data-server agent ${agent.name} keeps no spare listeners (${why}): requests wait for it to open theirs`);
      return;
    }
    this.opts.logger.debug({ agent: agent.name, err: (err as Error).message }, what);
  }
}

function noop(): void {}
