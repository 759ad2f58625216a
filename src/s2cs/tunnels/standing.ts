// The standing tunnels a running s2cs keeps: made at start from the [[tunnel]] tables,
// and at each reload (SIGHUP) made, remade or released where the tables changed, the
// others left alone (their connections go on). Each goes through the stream table as
// a client's stream would (req, the producer's Hello for an inbound one, UpdateTargets),
// under the owner config:NAME and bound to a secret only this object holds, so that no
// client can change or release it (ownership.ts checkStanding).
import { generateAppSecret, type Identity } from '../../auth/index.js';
import type { Logger } from '../../log.js';
import { formatAddress } from '../../protocol/address.js';
import type { StreamRequest } from '../../protocol/validate.js';
import { fingerprint } from '../../security/certificates.js';
import { placedRequest, type StreamTable } from '../streams/index.js';
import { sameTunnel, tunnelOwner, type TunnelSpec } from './spec.js';

interface Held {
  spec: TunnelSpec;
  /** The control secret the tunnel's stream is bound to. */
  secret: string;
}

/** What a set of tunnels came to: names set up, released, kept, and those that failed with why. */
export interface TunnelChanges {
  created: string[];
  released: string[];
  kept: string[];
  failed: { name: string; why: string }[];
}

/** How often the tunnels are checked: one whose stream ended (its agent died) or could not be set up is set up again. */
export const TUNNEL_CHECK_MS = 5000;

export class StandingTunnels {
  private readonly held = new Map<string, Held>();
  /** One apply at a time (start, then each reload, in order). */
  private applying: Promise<unknown> = Promise.resolve();
  /** What the file said last: the check keeps the tunnels so. */
  private desired: { file: string; specs: TunnelSpec[] } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  /** Why each tunnel last failed to set up: the check logs a failure again only when its cause changes. */
  private readonly failures = new Map<string, string>();
  /** Until the first apply is done, streams taken back from the agents may be tunnels of the previous s2cs. */
  private adopting = true;

  constructor(
    private readonly table: StreamTable,
    private readonly logger: Logger,
  ) {}

  /** The tunnels held now, by name. */
  names(): string[] {
    return [...this.held.keys()];
  }

  /**
   * Makes the tunnels of `file` what `specs` say: a tunnel no longer there, or changed,
   * is released (a changed one then set up again); a new one is set up; one unchanged
   * and still up is left alone. A tunnel that cannot be set up is logged and left out
   * (the next reload tries again); the others go on.
   */
  apply(file: string, specs: TunnelSpec[]): Promise<TunnelChanges> {
    this.desired = { file, specs };
    this.resume();
    return this.run(file, specs, false);
  }

  /** No more checks (shutdown, detach): the tunnels are left to the table. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Checks again (a detach that could not be done). */
  resume(): void {
    if (this.timer || !this.desired || this.desired.specs.length === 0) return;
    this.timer = setInterval(() => this.check(), TUNNEL_CHECK_MS);
    this.timer.unref();
  }

  private run(file: string, specs: TunnelSpec[], quiet: boolean): Promise<TunnelChanges> {
    const run = this.applying.then(() => this.applyNow(file, specs, quiet));
    this.applying = run.catch(() => undefined);
    return run;
  }

  /** Between reloads: a tunnel whose stream ended, or that could not be set up, is set up again. */
  private check(): void {
    const desired = this.desired;
    // One check at a time: a slow one (an agent that does not answer) is not queued again behind itself.
    if (!desired || this.checking || desired.specs.every((s) => this.held.has(s.name) && this.isUp(s.name))) return;
    this.checking = true;
    void this.run(desired.file, desired.specs, true)
      .catch((err: unknown) => this.logger.error({ err }, 'checking the standing tunnels failed'))
      .finally(() => (this.checking = false));
  }

  private async applyNow(file: string, specs: TunnelSpec[], quiet: boolean): Promise<TunnelChanges> {
    const changes: TunnelChanges = { created: [], released: [], kept: [], failed: [] };
    const wanted = new Map(specs.map((s) => [s.name, s]));
    if (this.adopting) await this.releaseOrphans(file, wanted, changes);
    for (const [name, held] of [...this.held]) {
      const next = wanted.get(name);
      if (next && sameTunnel(held.spec, next) && this.isUp(name)) continue;
      await this.release(name, held.secret, !next ? 'removed from the configuration file' : this.isUp(name) ? 'changed in the configuration file' : 'its stream had ended');
      changes.released.push(name);
    }
    for (const name of [...this.failures.keys()]) if (!wanted.has(name)) this.failures.delete(name);
    for (const spec of specs) {
      if (this.held.has(spec.name)) {
        changes.kept.push(spec.name);
        continue;
      }
      try {
        await this.create(file, spec);
        changes.created.push(spec.name);
        this.failures.delete(spec.name);
      } catch (err) {
        const why = (err as Error).message;
        changes.failed.push({ name: spec.name, why });
        if (!quiet || this.failures.get(spec.name) !== why) {
          this.logger.error({ tunnel: spec.name, uid: spec.name }, `standing tunnel ${spec.name} of ${file} could not be set up: ${why}; tried again every ${TUNNEL_CHECK_MS / 1000} s and at each reload (SIGHUP)`);
        }
        this.failures.set(spec.name, why);
      }
    }
    this.adopting = false;
    return changes;
  }

  /**
   * Streams a previous s2cs's tunnels left on the agents (SIGUSR2) whose tables are gone
   * from the file: released (the table does not keep a tunnel's standing across a restart,
   * so no client could otherwise).
   */
  private async releaseOrphans(file: string, wanted: Map<string, TunnelSpec>, changes: TunnelChanges): Promise<void> {
    for (const s of this.table.status()) {
      if (wanted.has(s.uid) || s.standing || s.owner !== tunnelOwner(s.uid)) continue;
      const secret = generateAppSecret();
      if (!this.table.claimStanding(s.uid, s.owner, file, secret)) continue;
      await this.release(s.uid, secret, 'taken back from the data-server agents, no longer in the configuration file');
      changes.released.push(s.uid);
    }
  }

  private isUp(name: string): boolean {
    return this.table.status(name).some((s) => s.standing && s.state !== 'releasing');
  }

  private async create(file: string, spec: TunnelSpec): Promise<void> {
    const uid = spec.name;
    const caller: Identity = { subject: tunnelOwner(spec.name) };
    const secret = generateAppSecret();
    const proof = { peer: '', secret };
    const role = spec.direction === 'inbound' ? 'PROD' : 'CONS';
    // A stream taken back from the agents (s2cs restarted with SIGUSR2): kept when it is this tunnel as it is now.
    // Only then: later, a stream of this uid is a client's, whatever its owner is called.
    const adopted = this.adopting ? this.table.claimStanding(uid, caller.subject, file, secret) : undefined;
    if (adopted) {
      if (sameStream(adopted, spec, role)) {
        this.held.set(uid, { spec, secret });
        this.logger.info({ tunnel: uid, uid }, `standing tunnel ${uid} taken back from the data-server agents as it was`);
        return;
      }
      await this.table.release(uid, caller, proof);
    }
    // Checked and canonical as a request from the wire (the allow-list sorted, as a retry compares it).
    const request = placedRequest({ uid, role, numConn: spec.numConn, rate: spec.rate, allowFrom: spec.allowFrom, listenerPorts: spec.listenerPorts }, `standing tunnel ${uid}: `);
    // Each tunnel its own port budget: they are the operator's, not a user's.
    const ready = this.table.req(request, caller, caller.subject, { peer: '', bySecret: false, secret, standing: file });
    this.table.takeControlSecret(uid);
    try {
      if (role === 'PROD') await this.table.hello({ uid, role, prodListeners: spec.targets, appSecret: this.table.appSecret(uid) });
      const reply = await ready;
      await this.table.update({ uid, role, targets: spec.targets, credentials: spec.credentials }, caller, proof);
      this.held.set(uid, { spec, secret });
      this.logger.info(
        { tunnel: uid, uid, direction: spec.direction, listeners: reply.listeners, targets: spec.targets.map(formatAddress), wan: spec.credentials ? 'tls' : 'plain' },
        `standing tunnel ${uid} set up: ${reply.listeners.join(',')} -> ${spec.targets.map(formatAddress).join(',')}`,
      );
    } catch (err) {
      // Never half set up: what was reserved goes (someone else's stream with this uid is not ours to release).
      await this.table.release(uid, caller, proof).catch(() => undefined);
      throw err;
    }
  }

  private async release(name: string, secret: string, why: string): Promise<void> {
    this.held.delete(name);
    try {
      await this.table.release(name, { subject: tunnelOwner(name) }, { peer: '', secret });
      this.logger.info({ tunnel: name, uid: name }, `standing tunnel ${name} released: ${why}`);
    } catch (err) {
      this.logger.error({ tunnel: name, uid: name }, `standing tunnel ${name} (${why}) could not be released: ${(err as Error).message}`);
    }
  }
}

/** Whether a stream taken back is this tunnel as its table says now. */
function sameStream(adopted: { request: StreamRequest; targets: string[]; wanIdentity: string }, spec: TunnelSpec, role: 'PROD' | 'CONS'): boolean {
  const wan = spec.credentials ? fingerprint(spec.credentials.cert) : '';
  return (
    adopted.request.role === role &&
    adopted.request.numConn === spec.numConn &&
    adopted.request.rate === spec.rate &&
    adopted.wanIdentity === wan &&
    adopted.targets.join(',') === spec.targets.map(formatAddress).join(',') &&
    (adopted.request.listenerPorts ?? []).join(',') === (spec.listenerPorts ?? []).join(',') &&
    (adopted.request.allowFrom ?? []).join(',') === (spec.allowFrom ?? []).join(',')
  );
}
