// The stream table of one S2CS: what each uid reserved, who owns it, and the
// Hello/req rendezvous. Independent of gRPC so that it can be tested and reused.
// This class assembles the parts of a stream's life, each in its own file:
// admission.ts (rate and ports), hello.ts (Hello matching), leases.ts,
// persistence.ts (records on the agents, adoption), targets.ts (UpdateTargets),
// release.ts and status.ts; ownership.ts says who may act on a stream, and
// binding.ts what binds a stream to its requester without token checking.
import { generateAppSecret, hashAppSecret, type Identity } from '../../auth/index.js';
import { formatAddress } from '../../protocol/address.js';
import { aborted, alreadyExists } from '../../protocol/errors.js';
import { requestFields, sameRequest, type HelloMessage, type StreamRequest, type TargetUpdate } from '../../protocol/validate.js';
import type { AdoptedStream, ListenerOptions } from '../../s2ds/index.js';
import { RateWindow } from '../rates.js';
import { Admission } from './admission.js';
import { HelloRendezvous, type HelloCredentials } from './hello.js';
import { Leases, type LetGoReason } from './leases.js';
import type { RatePolicy, StreamTableOptions, TableSettings } from './options.js';
import { checkControl, checkRetry } from './ownership.js';
import { bindStream, type ControlProof } from './binding.js';
import { adoptStreams, RecordKeeper, type AdoptionParts } from './persistence.js';
import { noop, released, reply, type StreamRecord, type StreamReply, type TableState } from './record.js';
import { RELEASED_BY_REQUEST, Releases, SHUTTING_DOWN, type EndedStream } from './release.js';
import { RateSampler, agentRates, releasingStatus, streamStatus, type StreamStatus } from './status.js';
import { acceptsPlaintextData, updateTargets, type TargetParts } from './targets.js';

/** What the data servers are asked to open for a stream: its cap, allow-list and chosen ports, when it has them. */
function listenerOptions(record: StreamRecord): ListenerOptions {
  const { listenerPorts } = record.request;
  return {
    ...(record.capBps > 0 ? { capBps: record.capBps } : {}),
    ...(record.allowFrom.length > 0 ? { allowFrom: record.allowFrom } : {}),
    ...(listenerPorts ? { ports: listenerPorts } : {}),
    ...(record.request.protocol === 'udp' ? { protocol: 'udp' as const } : {}),
  };
}

/** Who sent a req, for the stream's binding (binding.ts): its exact address, whether it will present the control secret, and the secret it proposes. */
export interface Requester {
  peer: string;
  bySecret: boolean;
  secret?: string;
  /** A standing tunnel of this configuration file (tunnels/): only its secret's holder may change or release it, no lifetime ends it. */
  standing?: string;
}

export class StreamTable {
  private readonly state: TableState;
  private readonly admission: Admission;
  private readonly hellos: HelloRendezvous;
  private readonly leases: Leases;
  private readonly keeper: RecordKeeper;
  private readonly releases: Releases;
  private readonly sampler: RateSampler;
  /** What adoption and UpdateTargets go through. */
  private readonly parts: AdoptionParts & TargetParts;

  constructor(opts: StreamTableOptions) {
    this.state = { opts, records: new Map() };
    this.admission = new Admission(this.state);
    this.hellos = new HelloRendezvous(this.state);
    this.leases = new Leases(this.state, (record, why, level) => this.releases.release(record, why, level));
    this.keeper = new RecordKeeper(this.state);
    this.releases = new Releases(this.state, this.leases, this.admission);
    this.sampler = new RateSampler(this.state, (now) => this.leases.check(now));
    const { state, admission, leases, hellos, keeper, releases } = this;
    this.parts = { state, admission, leases, hellos, keeper, release: (record, why, level) => releases.release(record, why, level) };
  }

  /**
   * New limits and policies from a configuration reload (SIGHUP). They apply to what
   * comes next: streams already granted keep their ports and their lease; Hellos held
   * now are held at most the new Hello timeout.
   */
  reconfigure(changes: TableSettings): void {
    this.state.opts = { ...this.state.opts, ...changes };
    this.hellos.setLimits(this.state.opts);
  }

  /** Bytes the streams released so far carried, as last read before their release (scistream_bytes_total). */
  get releasedBytes(): { readonly toTarget: number; readonly fromTarget: number } {
    return this.releases.releasedBytes;
  }

  /** Streams the gateway let go by itself after setup since it started: broken, idle, lifetime over (leases.ts). */
  get streamsLetGo(): Readonly<Record<LetGoReason, number>> {
    return this.leases.letGo;
  }

  get size(): number {
    return this.state.records.size;
  }

  /**
   * REQ: reserve listeners; retried with identical fields it answers the same.
   * `peer` is the caller's address (peerKey), used for the port bound with portsPerPeer.
   *
   * A retry neither extends nor restarts the lease: it counts from the first req,
   * so re-sending req cannot hold ports without ever giving a connection map, and
   * a client whose retry races the lease's end sees either the stream (with the
   * time left in status) or, once released, a new reservation with new listeners
   * and a new lease: never a stream half released.
   */
  req(request: StreamRequest, caller: Identity, peer = '', requester?: Requester): Promise<StreamReply> {
    if (this.releases.releasing(request.uid)) {
      const on = this.releases.on(request.uid).map((s) => s.agent).join(', ');
      throw alreadyExists(
        `uid ${request.uid} is still being released here: data-server agent ${on || '(one)'} has not confirmed its part yet; ` +
          'use a new uid, or retry once status no longer shows the stream releasing',
      );
    }
    const existing = this.state.records.get(request.uid);
    if (existing) {
      const r = existing.request;
      if (!sameRequest(r, request)) {
        throw alreadyExists(
          `uid ${request.uid} is already in use here with ${requestFields(r)}; ` +
            'a retry must repeat the same fields; for a different stream use a new uid',
        );
      }
      checkRetry(existing, caller, requester?.peer, this.state.opts, requester?.secret);
      return existing.ready;
    }
    const allowFrom = this.admission.allowListFor(request);
    const capBps = this.admission.admit(request, caller, peer);
    const quotaKey = this.admission.takePorts(request, caller, peer);
    let boundDone!: () => void;
    const now = Date.now();
    const appSecret = this.state.opts.requireAppSecret ? generateAppSecret() : '';
    const control = bindStream(requester?.peer ?? '', requester?.bySecret ?? false, requester?.secret);
    const record: StreamRecord = {
      request,
      owner: caller,
      appSecret,
      appSecretHash: appSecret ? hashAppSecret(appSecret) : '',
      binding: control.binding,
      controlSecret: control.secret,
      state: 'reserving',
      listeners: [],
      prodListeners: undefined,
      targets: undefined,
      wanIdentity: undefined,
      bound: new Promise<void>((resolve) => (boundDone = resolve)),
      ready: Promise.resolve({ listeners: [], prodListeners: [] }),
      quotaKey,
      quotaReturned: false,
      leaseEnds: now + this.state.opts.setupTimeoutMs,
      leaseTimer: undefined,
      updating: undefined,
      createdAt: now,
      rates: new RateWindow(now),
      capBps,
      allowFrom,
      ...(requester?.standing !== undefined ? { standing: requester.standing } : {}),
    };
    this.leases.start(record, this.state.opts.setupTimeoutMs);
    this.state.records.set(request.uid, record);
    this.sampler.start();
    record.ready = this.reserve(record, boundDone);
    record.ready.catch(noop);
    this.hellos.requested(record);
    return record.ready;
  }

  private async reserve(record: StreamRecord, boundDone: () => void): Promise<StreamReply> {
    const { uid, role, numConn } = record.request;
    try {
      const bound = await this.state.opts.dataServer.startListeners(uid, numConn, listenerOptions(record));
      record.listeners = bound;
    } catch (err) {
      if (this.state.records.get(uid) === record) this.state.records.delete(uid);
      record.state = 'released';
      this.leases.end(record);
      this.admission.returnPorts(record);
      throw err;
    } finally {
      boundDone();
    }
    if (record.state === 'released') throw aborted(`stream ${uid} was released while its listeners were being reserved`);
    this.state.opts.logger.info(
      { uid, role, numConn, rate: record.request.rate, listeners: record.listeners.map(formatAddress) },
      'stream reserved',
    );
    this.keeper.persistSoon(record);
    const early = this.hellos.takeHeld(record);
    if (early) {
      record.prodListeners = early;
    } else if (role === 'PROD' && !record.prodListeners) {
      record.state = 'awaiting-hello';
      try {
        record.prodListeners = await this.hellos.awaitHello(record);
      } catch (err) {
        if (this.state.records.get(uid) === record) await this.releases.release(record, 'no Hello');
        throw err;
      }
    }
    if (released(record)) throw aborted(`stream ${uid} was released while it was being set up`);
    record.state = record.targets ? 'ready' : 'awaiting-update';
    this.keeper.persistSoon(record);
    return reply(record);
  }

  /** Hello from an application controller: where the producer listens (PROD), or where the consumer connects (CONS). */
  hello(msg: HelloMessage, peer = '', creds?: HelloCredentials): Promise<{ message: string; listeners: string[] }> {
    return this.hellos.hello(msg, peer, creds);
  }

  /** UpdateTargets: the connection map for this side; repeated with the same targets it changes nothing. */
  update(u: TargetUpdate, caller: Identity, proof?: ControlProof): Promise<StreamReply> {
    return updateTargets(this.parts, u, caller, proof);
  }

  /** REL: idempotent; an unknown uid is already released. */
  async release(uid: string, caller: Identity, proof?: ControlProof): Promise<void> {
    const releasing = this.releases.releasing(uid);
    if (releasing) {
      // Still partial: the repeat gets the same error, never an OK that would read as done.
      checkControl(releasing.record, caller, proof, 'release', this.state.opts);
      throw this.releases.stillPartial(uid);
    }
    const record = this.state.records.get(uid);
    if (record) checkControl(record, caller, proof, 'release', this.state.opts);
    this.hellos.forgetHeld(uid);
    if (!record) return;
    await this.releases.release(record, RELEASED_BY_REQUEST);
  }

  /** A stream the data servers no longer carry (its agent ended): released here too, with why. */
  async ended(uid: string, why: string): Promise<void> {
    const record = this.state.records.get(uid);
    if (record) await this.releases.release(record, why, 'warn');
  }

  /** Takes back the streams a previous s2cs set up (persistence.ts). */
  async adopt(found: AdoptedStream[]): Promise<{ adopted: string[]; dropped: string[] }> {
    const result = await adoptStreams(this.parts, found);
    if (this.state.records.size > 0) this.sampler.start();
    return result;
  }

  /**
   * The control secret of a stream the req just made, once: the req that created the
   * record takes it for its answer (synchronously after req()); a retry finds ''.
   */
  takeControlSecret(uid: string): string {
    const record = this.state.records.get(uid);
    if (!record) return '';
    const secret = record.controlSecret;
    record.controlSecret = '';
    return secret;
  }

  /**
   * A stream taken back from the agents (an s2cs restarted with SIGUSR2) that a standing
   * tunnel made: it is the tunnel's again, controlled with `secret`. Returns its request
   * and targets, or undefined when no such stream is held.
   */
  claimStanding(uid: string, owner: string, file: string, secret: string): { request: StreamRecord['request']; targets: string[]; wanIdentity: string } | undefined {
    const record = this.state.records.get(uid);
    if (!record || record.state === 'released' || record.owner.subject !== owner) return undefined;
    record.standing = file;
    record.binding = bindStream('', false, secret).binding;
    return { request: record.request, targets: (record.targets ?? []).map(formatAddress), wanIdentity: record.wanIdentity ?? '' };
  }

  /** The application secret of a stream ('' when secrets are off or the uid is unknown). */
  appSecret(uid: string): string {
    return this.state.records.get(uid)?.appSecret ?? '';
  }

  /** Whether UpdateTargets without credentials (a plain-TCP WAN leg) is accepted. */
  acceptsPlaintextData(): boolean {
    return acceptsPlaintextData(this.state.opts);
  }

  /** Whether `subject` is listed with --admin (may release, and see, every stream). */
  isAdmin(subject: string): boolean {
    return this.state.opts.admins?.has(subject) ?? false;
  }

  /** The rate policy, and with reserve the capacity streams are admitted against (bytes per second). */
  rateLimits(): { policy: RatePolicy; capacityBps: number } {
    return this.admission.rateLimits();
  }

  /** With --rate-policy reserve: the rates of the streams held now, bytes per second. */
  reservedBps(): number {
    return this.admission.reservedBps();
  }

  /** What status shows of one stream (uid) or of all. */
  status(uid?: string): StreamStatus[] {
    const releasing = this.releases.releasingAll().filter((r) => !uid || r.stream.record.request.uid === uid);
    return [...streamStatus(this.state, uid), ...releasing.map((r) => releasingStatus(r.stream.record, r.stream.since, r.on))];
  }

  /** Each agent's rate (by handle), the sum of its shares of the streams' rates (status.ts agentRates). */
  agentRates(): Map<object, number> {
    return agentRates(this.state);
  }

  /** Streams this gateway ended by itself lately (not released by their owner), newest last. */
  endedRecently(): readonly EndedStream[] {
    return this.releases.endedRecently();
  }

  /** Whether the rate sampler runs (it should only while there are streams). */
  get sampling(): boolean {
    return this.sampler.running;
  }

  /**
   * Lets go of every stream without releasing any (a restart for an upgrade: the
   * agents keep forwarding and the next s2cs takes the streams back). Timers stop;
   * nothing this table does afterwards reaches the data server.
   */
  detach(): void {
    this.releases.detached = true;
    this.sampler.stop();
    for (const r of this.state.records.values()) this.leases.end(r);
    this.hellos.clear('s2cs is restarting; send Hello again once it is back');
  }

  /** Releases every stream (shutdown). */
  async close(): Promise<void> {
    this.sampler.stop();
    this.hellos.clear('s2cs is shutting down; send Hello again once it is back');
    await Promise.all([...this.state.records.values()].map((r) => this.releases.release(r, SHUTTING_DOWN)));
  }
}
