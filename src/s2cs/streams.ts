// The stream table of one S2CS: what each uid reserved, who owns it, and the
// Hello/req rendezvous. Independent of gRPC so that it can be tested and reused.
import type { Logger } from '../log.js';
import type { Refusals } from '../limits/refusals.js';
import { generateAppSecret, hashAppSecret, verifyAppSecretHash, type Identity } from '../auth/index.js';
import { decodeRecord, encodeRecord } from './records.js';
import type { AdoptedStream } from '../s2ds/index.js';
import type { DataServer, StreamStats } from '../s2ds/index.js';
import { formatAddress, parseAddressList, type Address } from '../protocol/address.js';
import { fingerprint } from '../security/certificates.js';
import {
  aborted,
  alreadyExists,
  deadlineExceeded,
  failedPrecondition,
  invalidArgument,
  notFound,
  resourceExhausted,
  ScistreamError,
} from '../protocol/errors.js';
import { sameAddresses, type HelloMessage, type Role, type StreamRequest, type TargetUpdate } from '../protocol/validate.js';
import { PendingByPeer } from './pending.js';
import { RateWindow, SAMPLE_INTERVAL_MS } from './rates.js';
import { ipBytes, isV4Mapped } from '../s2ds/ports.js';
import { formatBitRate } from '../units.js';

export interface StreamTableOptions {
  /** Returns listeners as advertised (each with its agent's --listener-ip). */
  dataServer: DataServer;
  /** How long req(PROD) waits for the producer's Hello, and a PROD Hello is held for its req. */
  helloTimeoutMs: number;
  /**
   * How long a consumer Hello waits for its req (at most helloTimeoutMs; default
   * CONS_HELLO_WAIT_MS). Short: the call holds a connection, and controllers (ours
   * and the reference's) retry, so a Hello sent too early is answered soon.
   */
  consHelloWaitMs?: number;
  /**
   * A stream without UpdateTargets this long after its first req is released
   * (--setup-timeout; never below helloTimeoutMs).
   */
  setupTimeoutMs: number;
  /** Producer Hellos that may wait for their req at once, all peers together, and from one peer address. */
  maxPendingHellos: number;
  maxPendingHellosPerPeer: number;
  /** Consumer Hellos that may wait for their req: each holds an open call, so fewer. */
  maxWaitingConsHellos: number;
  maxWaitingConsHellosPerPeer: number;
  /** Most producer listeners a Hello held before its req may carry (keeps each held Hello small). */
  maxHeldListeners: number;
  /** Ports one user may hold at once across its streams (--max-ports-per-user). */
  maxPortsPerUser: number;
  /**
   * Count ports per caller address instead of per identity: with --auth none every
   * caller is the same anonymous identity, so a per-identity bound would be one
   * bound for everybody, which the first flooder fills.
   */
  portsPerPeer: boolean;
  refusals: Refusals;
  /** Identities allowed to release any stream. */
  admins?: ReadonlySet<string>;
  /** Accept UpdateTargets without credentials on any bind address (--allow-plaintext-data): the WAN leg is then plain TCP. */
  allowPlaintextData?: boolean;
  /** Address the data listeners bind to (--bind-ip): on loopback, plain-TCP legs are accepted without the flag (see plaintextDataPolicy). */
  dataBindHost?: string;
  /**
   * Give each stream an application secret and accept a Hello only with it (s2cs
   * checks tokens). Off (--auth none): Hello needs no secret, as in the reference.
   */
  requireAppSecret?: boolean;
  /**
   * With secrets on, also accept a Hello whose `authorization` token authenticates
   * as the stream's owner (--hello-accepts-owner-token): the reference's controllers
   * send the user's token, never a secret.
   */
  helloAcceptsOwnerToken?: boolean;
  /** What a stream's rate means here (--rate-policy); default none: stored and reported only. */
  ratePolicy?: RatePolicy;
  /** With ratePolicy reserve: what the gateway admits streams against, bytes per second (--capacity). */
  capacityBps?: number;
  logger: Logger;
}

/** What a running table may be given anew (StreamTable.reconfigure). */
export type TableSettings = Partial<
  Pick<
    StreamTableOptions,
    | 'helloTimeoutMs'
    | 'setupTimeoutMs'
    | 'maxPendingHellos'
    | 'maxPendingHellosPerPeer'
    | 'maxWaitingConsHellos'
    | 'maxWaitingConsHellosPerPeer'
    | 'maxHeldListeners'
    | 'maxPortsPerUser'
    | 'admins'
    | 'helloAcceptsOwnerToken'
  >
>;

/**
 * none: Request.rate is stored and reported (the reference's behaviour); cap: each
 * stream is held to its rate; reserve: cap, and a req is admitted only while the
 * live streams' rates fit in --capacity.
 */
export const RATE_POLICIES = ['none', 'cap', 'reserve'] as const;
export type RatePolicy = (typeof RATE_POLICIES)[number];

export type StreamState = 'reserving' | 'awaiting-hello' | 'awaiting-update' | 'ready';

export interface StreamReply {
  listeners: string[];
  prodListeners: string[];
}

export interface StreamStatus extends StreamRequest {
  state: StreamState;
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
}

interface StreamRecord {
  request: StreamRequest;
  owner: Identity;
  /**
   * What the stream's application controllers present with Hello ('' when not
   * required, and after an s2cs restart: only its hash is kept on the agents).
   */
  appSecret: string;
  /** SHA-256 of the application secret ('' when not required): what Hello is checked against. */
  appSecretHash: string;
  state: StreamState | 'released';
  listeners: Address[];
  prodListeners: Address[] | undefined;
  targets: Address[] | undefined;
  /** Fingerprint of the WAN certificate in force ('' for plain TCP); tells a retry from a change. */
  wanIdentity: string | undefined;
  /** Settles once the listeners are bound (or reserving failed). */
  bound: Promise<void>;
  /** Settles with the req answer: at once for CONS, after Hello for PROD. */
  ready: Promise<StreamReply>;
  helloArrived?: (listeners: Address[]) => void;
  abort?: (why: string) => void;
  /** Whose port budget the stream's ports count against, and whether they were given back. */
  quotaKey: string;
  quotaReturned: boolean;
  /** When the lease ends (ms since epoch) unless UpdateTargets come first. */
  leaseEnds: number;
  leaseTimer: NodeJS.Timeout | undefined;
  /** An UpdateTargets in progress: the lease waits for its outcome. */
  updating: Promise<unknown> | undefined;
  /** When the first req arrived (ms since epoch). */
  createdAt: number;
  /** Recent samples of the data server's byte counters, for the rates in status. */
  rates: RateWindow;
  /** Bytes per second the stream is held to (and, with reserve, takes of --capacity); 0: none. */
  capBps: number;
}

interface PendingHello {
  /** The producer listeners as one comma-separated text: a one-byte string, not an object per address. */
  listeners: string;
  /** Whose token the Hello carried (--hello-accepts-owner-token); the req must come from the same subject. */
  owner?: string;
}

/** What a Hello carried besides its message: whether a user token, and how to authenticate it. */
export interface HelloCredentials {
  /** The call had an `authorization` value. */
  token: boolean;
  /** Authenticates that value as a user (the same check as req). */
  authenticate?: () => Promise<Identity>;
}

const NO_TOKEN: HelloCredentials = { token: false };

/** Most characters of producer listeners a Hello held before its req may carry: 10,000 held Hellos stay under 50 MB. */
const MAX_HELD_LISTENERS_TEXT = 4096;

interface ConsWaiter {
  uid: string;
  resolve: (record: StreamRecord) => void;
  reject: (err: ScistreamError) => void;
}

/** How long a consumer Hello waits for its req by default. */
export const CONS_HELLO_WAIT_MS = 10_000;

export class StreamTable {
  private readonly records = new Map<string, StreamRecord>();
  /** Producer Hellos that came before their req, by uid. */
  private readonly pendingHellos: PendingByPeer<PendingHello>;
  /** Consumer Hellos waiting for their req, by waiter id; recordWaiters finds them by uid. */
  private readonly consWaiters: PendingByPeer<ConsWaiter>;
  private readonly recordWaiters = new Map<string, Set<string>>();
  private nextWaiter = 0;
  /** Ports held by each quota key (see portsPerPeer), counted from req on, so that concurrent reqs cannot overshoot. */
  private readonly portsHeld = new Map<string, number>();
  /** Samples byte counters for the rates in status; runs only while there are streams. */
  private sampler: NodeJS.Timeout | undefined;

  constructor(private opts: StreamTableOptions) {
    const consWait = () => Math.min(this.opts.consHelloWaitMs ?? CONS_HELLO_WAIT_MS, this.opts.helloTimeoutMs);
    this.pendingHellos = new PendingByPeer<PendingHello>(
      { max: opts.maxPendingHellos, maxPerPeer: opts.maxPendingHellosPerPeer, ttlMs: opts.helloTimeoutMs },
      () => {},
    );
    this.consWaiters = new PendingByPeer<ConsWaiter>(
      { max: opts.maxWaitingConsHellos, maxPerPeer: opts.maxWaitingConsHellosPerPeer, ttlMs: consWait() },
      (id, w) => {
        this.forgetWaiter(id, w.uid);
        w.reject(
          deadlineExceeded(
            `no request for uid ${w.uid} arrived within ${consWait() / 1000} s; run s2uc request first and hand its uid to the application controller (s2app hello retries by itself until its --timeout)`,
          ),
        );
      },
    );
  }

  /**
   * New limits and policies from a configuration reload (SIGHUP). They apply to what
   * comes next: streams already granted keep their ports and their lease; Hellos held
   * now are held at most the new Hello timeout.
   */
  reconfigure(changes: TableSettings): void {
    this.opts = { ...this.opts, ...changes };
    const o = this.opts;
    this.pendingHellos.setLimits({ max: o.maxPendingHellos, maxPerPeer: o.maxPendingHellosPerPeer, ttlMs: o.helloTimeoutMs });
    this.consWaiters.setLimits({
      max: o.maxWaitingConsHellos,
      maxPerPeer: o.maxWaitingConsHellosPerPeer,
      ttlMs: Math.min(o.consHelloWaitMs ?? CONS_HELLO_WAIT_MS, o.helloTimeoutMs),
    });
  }

  private detached = false;
  /** Streams this gateway ended by itself lately, newest last (status shows why). */
  private readonly endedLately: EndedStream[] = [];

  get size(): number {
    return this.records.size;
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
  req(request: StreamRequest, caller: Identity, peer = ''): Promise<StreamReply> {
    const existing = this.records.get(request.uid);
    if (existing) {
      const r = existing.request;
      if (r.role !== request.role || r.numConn !== request.numConn || r.rate !== request.rate) {
        throw alreadyExists(
          `uid ${request.uid} is already in use here with role=${r.role} num_conn=${r.numConn} rate=${r.rate}; ` +
            'a retry must repeat the same fields; for a different stream use a new uid',
        );
      }
      this.checkOwner(existing, caller, 'request');
      return existing.ready;
    }
    const capBps = this.admit(request, caller, peer);
    const quotaKey = this.takePorts(request, caller, peer);
    let boundDone!: () => void;
    const now = Date.now();
    const appSecret = this.opts.requireAppSecret ? generateAppSecret() : '';
    const record: StreamRecord = {
      request,
      owner: caller,
      appSecret,
      appSecretHash: appSecret ? hashAppSecret(appSecret) : '',
      state: 'reserving',
      listeners: [],
      prodListeners: undefined,
      targets: undefined,
      wanIdentity: undefined,
      bound: new Promise<void>((resolve) => (boundDone = resolve)),
      ready: Promise.resolve({ listeners: [], prodListeners: [] }),
      quotaKey,
      quotaReturned: false,
      leaseEnds: now + this.opts.setupTimeoutMs,
      leaseTimer: undefined,
      updating: undefined,
      createdAt: now,
      rates: new RateWindow(now),
      capBps,
    };
    record.leaseTimer = setTimeout(() => this.leaseEnded(record), this.opts.setupTimeoutMs);
    record.leaseTimer.unref();
    this.records.set(request.uid, record);
    this.startSampling();
    record.ready = this.reserve(record, boundDone);
    record.ready.catch(noop);
    const waiters = this.recordWaiters.get(request.uid);
    if (waiters) {
      this.recordWaiters.delete(request.uid);
      for (const id of waiters) this.consWaiters.delete(id)?.resolve(record);
    }
    return record.ready;
  }

  /** What the stream's rate is held to under the policy, bytes per second (0: not capped). */
  private capFor(request: StreamRequest): number {
    return (this.opts.ratePolicy ?? 'none') !== 'none' ? request.rate * 1000 : 0;
  }

  /** The rate policy, and with reserve the capacity streams are admitted against (bytes per second). */
  rateLimits(): { policy: RatePolicy; capacityBps: number } {
    const policy = this.opts.ratePolicy ?? 'none';
    return { policy, capacityBps: policy === 'reserve' ? (this.opts.capacityBps ?? 0) : 0 };
  }

  /** With --rate-policy reserve: the rates of the streams held now, bytes per second. */
  reservedBps(): number {
    let sum = 0;
    for (const r of this.records.values()) if (r.state !== 'released') sum += r.capBps;
    return sum;
  }

  /**
   * Under reserve, admits the stream only if its rate fits in what --capacity
   * leaves (synchronously, like the port bound: concurrent reqs cannot overshoot),
   * or refuses with RESOURCE_EXHAUSTED saying how much is free. A req stating no
   * rate (0) is refused: admitting it would promise nothing and let it take what
   * the others were promised. Returns the stream's cap.
   */
  private admit(request: StreamRequest, caller: Identity, peer: string): number {
    const cap = this.capFor(request);
    if (this.opts.ratePolicy !== 'reserve') return cap;
    const capacity = this.opts.capacityBps ?? 0;
    const held = this.reservedBps();
    const free = Math.max(0, capacity - held);
    const fields = { uid: request.uid, owner: caller.subject, peer, asked: cap, free, capacity };
    if (cap === 0) {
      const message =
        `stream ${request.uid} states no rate, and this gateway admits streams by their rate (--rate-policy reserve): ` +
        `state one, e.g. s2uc --rate 200Mbit/s (Request.rate in kB/s); ${formatBitRate(free)} of its ${formatBitRate(capacity)} are free now`;
      this.opts.refusals.count('capacity', message, fields);
      throw counted(invalidArgument(message));
    }
    if (cap > free) {
      const message =
        `stream ${request.uid} asks for ${formatBitRate(cap)}, but the streams on this gateway hold ${formatBitRate(held)} of its ${formatBitRate(capacity)} (--capacity) ` +
        `and ${formatBitRate(free)} ${free > 0 ? 'is' : 'are'} free: ask for at most ${formatBitRate(free)} (s2uc --rate), or retry when streams are released`;
      this.opts.refusals.count('capacity', message, fields);
      throw counted(resourceExhausted(message));
    }
    return cap;
  }

  /**
   * Counts the stream's ports against its user's bound before anything is
   * reserved (synchronously: concurrent reqs cannot all pass the check), or
   * refuses with RESOURCE_EXHAUSTED. Returns the key they are counted under.
   */
  private takePorts(request: StreamRequest, caller: Identity, peer: string): string {
    const key = this.opts.portsPerPeer ? `address ${peer || 'unknown'}` : `user ${caller.subject}`;
    const held = this.portsHeld.get(key) ?? 0;
    const max = this.opts.maxPortsPerUser;
    if (held + request.numConn > max) {
      const who = this.opts.portsPerPeer ? `callers from ${peer || 'an unknown address'} (no authentication: ports are counted per address)` : `user ${caller.subject}`;
      const free = this.opts.dataServer.ports().free;
      const message =
        `${who} already hold${this.opts.portsPerPeer ? '' : 's'} ${held} port(s) on this gateway and stream ${request.uid} asks for ${request.numConn} more; ` +
        `one user may hold at most ${max} at once (--max-ports-per-user); this gateway has ${free} free ports. ` +
        (request.numConn > max
          ? 'Ask for fewer connections (--num-conn), or ask the operator to raise --max-ports-per-user'
          : `Release streams you no longer need (s2uc release UID), let unfinished ones expire (${this.opts.setupTimeoutMs / 1000} s after their request without UpdateTargets), then retry`);
      this.opts.refusals.count('ports-per-user', message, { uid: request.uid, owner: caller.subject, peer, held, asked: request.numConn, max });
      throw counted(resourceExhausted(message));
    }
    this.portsHeld.set(key, held + request.numConn);
    return key;
  }

  private returnPorts(record: StreamRecord): void {
    if (record.quotaReturned) return;
    record.quotaReturned = true;
    const left = (this.portsHeld.get(record.quotaKey) ?? 0) - record.request.numConn;
    if (left > 0) this.portsHeld.set(record.quotaKey, left);
    else this.portsHeld.delete(record.quotaKey);
  }

  /** The lease ends: a stream still without its connection map is released (an UpdateTargets under way decides first). */
  private leaseEnded(record: StreamRecord): void {
    record.leaseTimer = undefined;
    if (this.records.get(record.request.uid) !== record || record.targets) return;
    // While the producer's Hello is awaited, its own timeout (never longer than the
    // lease) answers the req with the advice that fits; the lease is checked after.
    if (record.state === 'reserving' || record.state === 'awaiting-hello') {
      const again = () => this.leaseEnded(record);
      record.ready.then(again, again);
      return;
    }
    if (record.updating) {
      const again = () => this.leaseEnded(record);
      record.updating.then(again, again);
      return;
    }
    const seconds = this.opts.setupTimeoutMs / 1000;
    void this.releaseRecord(record, `lease ended: no UpdateTargets within ${seconds} s of its request (--setup-timeout) in state ${record.state}`, 'warn').catch(
      (err: unknown) => this.opts.logger.error({ uid: record.request.uid, err }, 'releasing a stream whose lease ended failed'),
    );
  }

  private async reserve(record: StreamRecord, boundDone: () => void): Promise<StreamReply> {
    const { uid, role, numConn } = record.request;
    try {
      const bound = await this.opts.dataServer.startListeners(uid, numConn, record.capBps > 0 ? { capBps: record.capBps } : {});
      record.listeners = bound;
    } catch (err) {
      if (this.records.get(uid) === record) this.records.delete(uid);
      record.state = 'released';
      this.endLease(record);
      this.returnPorts(record);
      throw err;
    } finally {
      boundDone();
    }
    if (record.state === 'released') throw aborted(`stream ${uid} was released while its listeners were being reserved`);
    this.opts.logger.info(
      { uid, role, numConn, rate: record.request.rate, listeners: record.listeners.map(formatAddress) },
      'stream reserved',
    );
    await this.persist(record);
    // A Hello with role PROD that came before this CONS req (the reference's
    // outbound-request sends one) was held as a producer's; it was this side's Hello.
    if (role === 'CONS' && this.pendingHellos.delete(uid)) {
      this.opts.logger.debug({ uid }, 'a Hello with role PROD held for this uid was taken as the CONS stream\'s consumer Hello, listeners ignored');
    }
    if (role === 'PROD' && !record.prodListeners) {
      let early = this.pendingHellos.delete(uid);
      if (early?.owner !== undefined && early.owner !== record.owner.subject) {
        // Someone else's token opened it: the owner's controller must send its own Hello.
        this.opts.logger.warn({ uid, helloFrom: early.owner, owner: record.owner.subject }, "dropped a Hello held for this uid: it carried another user's token than the request's");
        early = undefined;
      }
      if (early) {
        record.prodListeners = parseAddressList(early.listeners, 'prod_listeners');
      } else {
        record.state = 'awaiting-hello';
        try {
          record.prodListeners = await this.awaitHello(record);
        } catch (err) {
          if (this.records.get(uid) === record) await this.releaseRecord(record, 'no Hello');
          throw err;
        }
      }
    }
    if (released(record)) throw aborted(`stream ${uid} was released while it was being set up`);
    record.state = record.targets ? 'ready' : 'awaiting-update';
    await this.persist(record);
    return reply(record);
  }

  /**
   * Keeps the stream's record on its data-server agents (when they keep records),
   * so that a restarted s2cs can take the stream back. A failure costs only that:
   * the stream goes on, with a warning.
   */
  private async persist(record: StreamRecord): Promise<void> {
    const setRecord = this.opts.dataServer.setRecord?.bind(this.opts.dataServer);
    if (!setRecord || released(record)) return;
    const state = record.state === 'released' ? 'ready' : record.state;
    try {
      await setRecord(
        record.request.uid,
        encodeRecord({
          request: record.request,
          owner: record.owner,
          appSecretHash: record.appSecretHash,
          state,
          listeners: record.listeners,
          prodListeners: record.prodListeners,
          targets: record.targets,
          wanIdentity: record.wanIdentity,
          quotaKey: record.quotaKey,
          createdAt: record.createdAt,
          leaseEnds: record.leaseEnds,
        }),
      );
    } catch (err) {
      this.opts.logger.warn({ uid: record.request.uid, err: (err as Error).message }, 'could not keep the stream\'s record on its data-server agents: a restarted s2cs would not take this stream back');
    }
  }

  /**
   * Takes back the streams a previous s2cs set up, as the agents still forward them
   * (after a crash, kill -9 or an upgrade): same owner, state, addresses, lease and
   * Hello secret (checked against its hash). A stream whose record cannot be read is
   * released: nobody could update or release it otherwise.
   */
  async adopt(found: AdoptedStream[]): Promise<{ adopted: string[]; dropped: string[] }> {
    const adopted: string[] = [];
    const dropped: string[] = [];
    const now = Date.now();
    for (const f of found) {
      let p;
      try {
        if (this.records.has(f.uid)) throw new Error('a stream with this uid is already held');
        p = decodeRecord(f.record, f.uid);
      } catch (err) {
        dropped.push(f.uid);
        this.opts.logger.error({ uid: f.uid, why: (err as Error).message }, 'a stream found on the data-server agents cannot be taken back; releasing it');
        await this.opts.dataServer.release(f.uid).catch(noop);
        continue;
      }
      const record: StreamRecord = {
        request: p.request,
        owner: p.owner,
        appSecret: '',
        appSecretHash: p.appSecretHash,
        state: p.targets ? 'ready' : p.request.role === 'PROD' && !p.prodListeners ? 'awaiting-hello' : 'awaiting-update',
        listeners: p.listeners,
        prodListeners: p.prodListeners,
        targets: p.targets,
        wanIdentity: p.wanIdentity,
        bound: Promise.resolve(),
        ready: Promise.resolve({ listeners: [], prodListeners: [] }),
        quotaKey: p.quotaKey,
        quotaReturned: false,
        leaseEnds: p.leaseEnds,
        leaseTimer: undefined,
        updating: undefined,
        createdAt: p.createdAt,
        rates: new RateWindow(now),
        // The agents hold the cap they were given at req; this is what the policy now counts.
        capBps: this.capFor(p.request),
      };
      this.portsHeld.set(p.quotaKey, (this.portsHeld.get(p.quotaKey) ?? 0) + p.request.numConn);
      this.records.set(p.request.uid, record);
      if (!record.targets) {
        record.leaseTimer = setTimeout(() => this.leaseEnded(record), Math.max(0, p.leaseEnds - now));
        record.leaseTimer.unref();
      }
      if (record.state === 'awaiting-hello') {
        record.ready = this.awaitHello(record).then(
          (listeners) => {
            record.prodListeners = listeners;
            if (released(record)) throw aborted(`stream ${record.request.uid} was released while it was being set up`);
            record.state = record.targets ? 'ready' : 'awaiting-update';
            void this.persist(record);
            return reply(record);
          },
          async (err: unknown) => {
            if (this.records.get(record.request.uid) === record) await this.releaseRecord(record, 'no Hello');
            throw err;
          },
        );
        record.ready.catch(noop);
      } else {
        record.ready = Promise.resolve(reply(record));
      }
      adopted.push(p.request.uid);
      this.opts.logger.info({ uid: p.request.uid, owner: p.owner.subject, state: record.state, listeners: record.listeners.map(formatAddress) }, 'stream taken back from the data-server agents');
    }
    if (this.records.size > 0) this.startSampling();
    return { adopted, dropped };
  }

  private endLease(record: StreamRecord): void {
    if (record.leaseTimer) clearTimeout(record.leaseTimer);
    record.leaseTimer = undefined;
  }

  private awaitHello(record: StreamRecord): Promise<Address[]> {
    const { uid } = record.request;
    const seconds = this.opts.helloTimeoutMs / 1000;
    return new Promise<Address[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          deadlineExceeded(
            `no Hello from the producer's application controller for uid ${uid} within ${seconds} s; ` +
              'its ports are released. Start the producer and send Hello (s2app hello --role PROD) with this uid, then request again',
          ),
        );
      }, this.opts.helloTimeoutMs);
      // The open req call keeps the server busy; the timer alone must not keep a detached one alive.
      timer.unref();
      record.helloArrived = (listeners) => {
        clearTimeout(timer);
        resolve(listeners);
      };
      record.abort = (why) => {
        clearTimeout(timer);
        reject(aborted(`stream ${uid} was released (${why}) while waiting for the producer's Hello`));
      };
    });
  }

  /** The application secret of a stream ('' when secrets are off or the uid is unknown). */
  appSecret(uid: string): string {
    return this.records.get(uid)?.appSecret ?? '';
  }

  /** Whether UpdateTargets without credentials (a plain-TCP WAN leg) is accepted. */
  acceptsPlaintextData(): boolean {
    return plaintextDataPolicy(this.opts.dataBindHost, this.opts.allowPlaintextData === true).accepts;
  }

  /** Whether `subject` is listed with --admin (may release, and see, every stream). */
  isAdmin(subject: string): boolean {
    return this.opts.admins?.has(subject) ?? false;
  }

  /** Hello from an application controller: where the producer listens (PROD), or where the consumer connects (CONS). */
  async hello(msg: HelloMessage, peer = '', creds: HelloCredentials = NO_TOKEN): Promise<{ message: string; listeners: string[] }> {
    const owner = this.opts.requireAppSecret ? await this.checkHelloCredentials(msg, creds) : undefined;
    if (msg.role === 'PROD' && this.records.get(msg.uid)?.request.role === 'CONS') {
      // The reference's s2uc outbound-request sends the consumer-side gateway a Hello
      // with role PROD (and its default receivers), which the reference's s2cs takes as
      // the Hello its CONS req waits for. Taken here as that stream's consumer Hello;
      // its listeners mean nothing on this side.
      this.opts.logger.debug(
        { uid: msg.uid, prodListeners: msg.prodListeners.map(formatAddress) },
        'Hello with role PROD for a stream requested as CONS: taken as its consumer Hello, listeners ignored (the reference s2uc outbound-request sends it)',
      );
      return this.consumerHello(msg, peer, owner);
    }
    return msg.role === 'PROD' ? this.producerHello(msg, peer, owner) : this.consumerHello(msg, peer, owner);
  }

  /**
   * With secrets on, a Hello carries the stream's application secret, which exists
   * only once s2uc has requested the stream; or, with --hello-accepts-owner-token,
   * its owner's token. Returns that token's subject (undefined for a secret): a
   * Hello before its req is then held, or waits, and the owner is checked when the
   * req arrives.
   */
  private async checkHelloCredentials(msg: HelloMessage, creds: HelloCredentials): Promise<string | undefined> {
    const record = this.records.get(msg.uid);
    if (record && verifyAppSecretHash(msg.appSecret, record.appSecretHash)) return undefined;
    if (this.opts.helloAcceptsOwnerToken && creds.token && creds.authenticate) {
      let who: Identity;
      try {
        who = await creds.authenticate();
      } catch (err) {
        if (!(err instanceof ScistreamError)) throw err;
        throw new ScistreamError(
          err.kind,
          `the Hello for ${msg.uid} has no valid application secret, and its token (accepted in its place from the stream's owner, --hello-accepts-owner-token) was refused: ${err.message}`,
        );
      }
      const now = this.records.get(msg.uid);
      if (now) this.checkHelloOwner(now, who.subject);
      return who.subject;
    }
    const tokenHint = creds.token
      ? this.opts.helloAcceptsOwnerToken
        ? ''
        : "; a user token on Hello is accepted in its place only when s2cs runs with --hello-accepts-owner-token (and is its stream owner's)"
      : '';
    if (!record) {
      throw new ScistreamError(
        'UNAUTHENTICATED',
        `no stream with uid ${msg.uid} on this server, so no application secret can match: run s2uc request first, then send Hello with the uid and the application secret it prints${tokenHint}`,
      );
    }
    throw new ScistreamError(
      'UNAUTHENTICATED',
      msg.appSecret
        ? `the application secret does not match stream ${msg.uid}; give the secret s2uc request printed for this gateway (s2app hello --app-secret)${tokenHint}`
        : `this s2cs checks tokens, so a Hello must carry the stream's application secret: give the one s2uc request printed for this gateway (s2app hello --app-secret)${tokenHint}`,
    );
  }

  private checkHelloOwner(record: StreamRecord, subject: string): void {
    if (record.owner.subject === subject) return;
    throw new ScistreamError(
      'PERMISSION_DENIED',
      `stream ${record.request.uid} belongs to another user: a Hello without its application secret must carry the token of the user who requested it (--hello-accepts-owner-token)`,
    );
  }

  private producerHello(msg: HelloMessage, peer: string, owner?: string): { message: string; listeners: string[] } {
    const record = this.records.get(msg.uid);
    if (record) {
      if (owner !== undefined) this.checkHelloOwner(record, owner);
      this.checkRole(record, 'PROD', 'Hello');
      if (record.prodListeners) {
        if (!sameAddresses(record.prodListeners, msg.prodListeners)) {
          throw alreadyExists(
            `stream ${msg.uid} already has producer listeners ${record.prodListeners.map(formatAddress).join(',')}; ` +
              'release it and request again to change them',
          );
        }
      } else {
        record.prodListeners = msg.prodListeners;
        record.helloArrived?.(msg.prodListeners);
      }
      this.opts.logger.info({ uid: msg.uid, prodListeners: msg.prodListeners.map(formatAddress) }, 'producer Hello');
      return { message: 'Hello received', listeners: record.listeners.map(formatAddress) };
    }
    const pending = this.pendingHellos.get(msg.uid);
    const listenersText = msg.prodListeners.map(formatAddress).join(',');
    if (pending) {
      if (pending.owner !== owner) {
        throw new ScistreamError('PERMISSION_DENIED', `a Hello for uid ${msg.uid} from another user is already waiting for its request; use a uid of your own`);
      }
      if (pending.listeners !== listenersText) {
        throw alreadyExists(`a Hello for uid ${msg.uid} with other producer listeners is already waiting for its request`);
      }
      return { message: 'Hello received; waiting for the request for this uid', listeners: [] };
    }
    if (msg.prodListeners.length > this.opts.maxHeldListeners || listenersText.length > MAX_HELD_LISTENERS_TEXT) {
      throw resourceExhausted(
        `a Hello sent before its request may carry at most ${this.opts.maxHeldListeners} producer listeners (--max-conn) in ${MAX_HELD_LISTENERS_TEXT} characters, ` +
          `and this one has ${msg.prodListeners.length} in ${listenersText.length}; send it after s2uc request has reserved the stream`,
      );
    }
    const added = this.pendingHellos.add(msg.uid, peer, owner === undefined ? { listeners: listenersText } : { listeners: listenersText, owner });
    if (!added.ok) throw this.helloRefused('producer', peer, added.held, this.opts.maxPendingHellos, this.opts.maxPendingHellosPerPeer, added.why, msg.uid);
    if (added.evicted) this.helloEvicted('producer', added.evicted.peer, added.evicted.key);
    this.opts.logger.debug({ uid: msg.uid, prodListeners: msg.prodListeners.map(formatAddress) }, 'producer Hello before its request; holding it');
    return { message: 'Hello received; waiting for the request for this uid', listeners: [] };
  }

  private async consumerHello(msg: HelloMessage, peer: string, owner?: string): Promise<{ message: string; listeners: string[] }> {
    const record = this.records.get(msg.uid) ?? (await this.waitForRecord(msg.uid, peer));
    if (owner !== undefined) this.checkHelloOwner(record, owner);
    this.checkRole(record, 'CONS', 'Hello');
    const r = await record.ready;
    return { message: 'Hello received', listeners: r.listeners };
  }

  private waitForRecord(uid: string, peer: string): Promise<StreamRecord> {
    return new Promise<StreamRecord>((resolve, reject) => {
      const id = String(this.nextWaiter++);
      const added = this.consWaiters.add(id, peer, { uid, resolve, reject });
      if (!added.ok) {
        reject(this.helloRefused('consumer', peer, added.held, this.opts.maxWaitingConsHellos, this.opts.maxWaitingConsHellosPerPeer, added.why, uid));
        return;
      }
      if (added.evicted) {
        const w = added.evicted.value;
        this.forgetWaiter(added.evicted.key, w.uid);
        this.helloEvicted('consumer', added.evicted.peer, w.uid);
        w.reject(
          counted(
            resourceExhausted(
              `this consumer Hello for uid ${w.uid} waited for its request while too many Hellos were waiting, and gave way to one from a quieter address; ` +
                'send Hello after s2uc request has reserved the stream',
            ),
          ),
        );
      }
      let set = this.recordWaiters.get(uid);
      if (!set) this.recordWaiters.set(uid, (set = new Set()));
      set.add(id);
    });
  }

  private forgetWaiter(id: string, uid: string): void {
    const set = this.recordWaiters.get(uid);
    set?.delete(id);
    if (set?.size === 0) this.recordWaiters.delete(uid);
  }

  private helloRefused(side: 'producer' | 'consumer', peer: string, held: number, max: number, maxPerPeer: number, why: 'peer' | 'full', uid: string): ScistreamError {
    const message =
      why === 'peer'
        ? `${held} ${side} Hellos from ${peer || 'your address'} are already waiting for their request here, the most one address may have (${maxPerPeer}); ` +
          'send Hello after s2uc request has reserved the stream, or wait for the ones waiting to be answered or to time out'
        : `${max} ${side} Hellos are waiting for their request here, the most this gateway holds, and your address holds as many as any other; ` +
          'send Hello after s2uc request has reserved the stream, or retry later';
    this.opts.refusals.count('pending-hellos', message, { uid, peer, side });
    return counted(resourceExhausted(message));
  }

  private helloEvicted(side: 'producer' | 'consumer', peer: string, uid: string): void {
    this.opts.refusals.count('pending-hellos', `a waiting ${side} Hello from ${peer} (the address holding the most) was dropped to make room for one from a quieter address`, {
      uid,
      peer,
      side,
      evicted: true,
    });
  }

  /** UpdateTargets: the connection map for this side; repeated with the same targets it changes nothing. */
  async update(u: TargetUpdate, caller: Identity): Promise<StreamReply> {
    const record = this.records.get(u.uid);
    if (!record) {
      throw notFound(
        `no stream with uid ${u.uid} on this server; request it first (s2uc request), or check the uid ` +
          `(a stream without UpdateTargets within ${this.opts.setupTimeoutMs / 1000} s of its request is released)`,
      );
    }
    this.checkOwner(record, caller, 'update');
    if (u.role) this.checkRole(record, u.role, 'UpdateTargets');
    if (!u.credentials && !this.acceptsPlaintextData()) {
      throw failedPrecondition(
        `UpdateTargets for ${u.uid} carries no credentials for the WAN leg, and this gateway's data listeners are on ${this.opts.dataBindHost ?? 'an address that is not loopback'}, not loopback, ` +
          'where s2cs forwards only encrypted streams: start s2cs with --allow-plaintext-data to accept unencrypted streams, ' +
          'or set the stream up with `s2uc request` between two SciStream-TS gateways, which sends per-stream credentials',
      );
    }
    const updating = this.applyUpdate(record, u);
    record.updating = updating;
    try {
      return await updating;
    } finally {
      if (record.updating === updating) record.updating = undefined;
    }
  }

  private async applyUpdate(record: StreamRecord, u: TargetUpdate): Promise<StreamReply> {
    await record.bound;
    if (record.state === 'released') throw notFound(`stream ${u.uid} was released; request it again`);
    const wanIdentity = u.credentials ? fingerprint(u.credentials.cert) : '';
    if (!record.targets || !sameAddresses(record.targets, u.targets) || record.wanIdentity !== wanIdentity) {
      const role = record.request.role;
      await this.opts.dataServer.setTargets(
        u.uid,
        u.targets,
        u.credentials ? { side: role === 'PROD' ? 'accept' : 'connect', credentials: u.credentials } : undefined,
      );
      if (released(record)) throw notFound(`stream ${u.uid} was released while its connection map was being applied; request it again`);
      record.targets = u.targets;
      record.wanIdentity = wanIdentity;
      // The connection map is what the lease waited for.
      this.endLease(record);
      if (record.state === 'awaiting-update') record.state = 'ready';
      await this.persist(record);
      if (u.credentials) {
        this.opts.logger.info({ uid: u.uid, targets: u.targets.map(formatAddress), wan: 'tls' }, 'connection map updated; forwarding with the stream\'s credentials');
      } else {
        this.opts.logger.warn(
          { uid: u.uid, targets: u.targets.map(formatAddress), wan: 'plain' },
          `connection map updated without credentials: this stream crosses the WAN unencrypted and unauthenticated (${this.opts.allowPlaintextData ? '--allow-plaintext-data' : 'data listeners on loopback'})`,
        );
      }
    }
    return updateReply(record, u.targets);
  }

  /** REL: idempotent; an unknown uid is already released. */
  async release(uid: string, caller: Identity): Promise<void> {
    this.pendingHellos.delete(uid);
    const record = this.records.get(uid);
    if (!record) return;
    this.checkOwner(record, caller, 'release', true);
    await this.releaseRecord(record, RELEASED_BY_REQUEST);
  }

  /** A stream the data servers no longer carry (its agent ended): released here too, with why. */
  async ended(uid: string, why: string): Promise<void> {
    const record = this.records.get(uid);
    if (record) await this.releaseRecord(record, why, 'warn');
  }

  private async releaseRecord(record: StreamRecord, why: string, level: 'info' | 'warn' = 'info'): Promise<void> {
    const { uid } = record.request;
    // After detach() the streams belong to the next s2cs: nothing here may release them.
    if (this.detached) return;
    if (this.records.get(uid) === record) this.records.delete(uid);
    const wasReserving = record.state === 'reserving';
    record.state = 'released';
    if (why !== RELEASED_BY_REQUEST && why !== SHUTTING_DOWN) {
      this.endedLately.push({ uid, owner: record.owner.subject, why, at: Date.now() });
      if (this.endedLately.length > MAX_ENDED_KEPT) this.endedLately.shift();
    }
    this.endLease(record);
    record.abort?.(why);
    const stats = this.opts.dataServer.stats(uid);
    try {
      await this.opts.dataServer.release(uid);
    } finally {
      // Counted until the ports are really free, so that a user cannot outrun its bound by releasing.
      this.returnPorts(record);
    }
    if (!wasReserving || stats || level === 'warn') {
      this.opts.logger[level](
        { uid, owner: record.owner.subject, why, bytesToTarget: stats?.bytesToTarget ?? 0, bytesFromTarget: stats?.bytesFromTarget ?? 0, connections: stats?.acceptedConnections ?? 0 },
        'stream released',
      );
    }
  }

  status(uid?: string): StreamStatus[] {
    const now = Date.now();
    const records = uid ? [this.records.get(uid)].filter((r): r is StreamRecord => r !== undefined) : [...this.records.values()];
    return records.flatMap((r) => {
      if (r.state === 'released') return [];
      const stats = this.opts.dataServer.stats(r.request.uid);
      const rates = r.rates.rates(now, stats?.bytesToTarget ?? 0, stats?.bytesFromTarget ?? 0);
      return [
        {
          ...r.request,
          state: shownState(r),
          leaseRemainingS: r.targets ? 0 : Math.max(0, Math.ceil((r.leaseEnds - now) / 1000)),
          owner: r.owner.subject,
          listeners: r.listeners.map(formatAddress),
          prodListeners: (r.prodListeners ?? []).map(formatAddress),
          targets: (r.targets ?? []).map(formatAddress),
          stats,
          ageS: Math.max(0, Math.floor((now - r.createdAt) / 1000)),
          ...rates,
          capBps: r.capBps,
        },
      ];
    });
  }

  /** Streams this gateway ended by itself lately (not released by their owner), newest last. */
  endedRecently(): readonly EndedStream[] {
    return this.endedLately;
  }

  /** Whether the rate sampler runs (it should only while there are streams). */
  get sampling(): boolean {
    return this.sampler !== undefined;
  }

  /** Starts sampling byte counters once a second (an unref'd timer: it never keeps the process alive). */
  private startSampling(): void {
    if (this.sampler) return;
    this.sampler = setInterval(() => this.sample(), SAMPLE_INTERVAL_MS);
    this.sampler.unref();
  }

  private stopSampling(): void {
    if (this.sampler) clearInterval(this.sampler);
    this.sampler = undefined;
  }

  private sample(): void {
    if (this.records.size === 0) {
      this.stopSampling();
      return;
    }
    const now = Date.now();
    for (const r of this.records.values()) {
      const stats = this.opts.dataServer.stats(r.request.uid);
      if (stats) r.rates.sample(now, stats.bytesToTarget, stats.bytesFromTarget);
    }
  }

  /**
   * Lets go of every stream without releasing any (a restart for an upgrade: the
   * agents keep forwarding and the next s2cs takes the streams back). Timers stop;
   * nothing this table does afterwards reaches the data server.
   */
  detach(): void {
    this.detached = true;
    this.stopSampling();
    for (const r of this.records.values()) this.endLease(r);
    this.pendingHellos.clear();
    this.recordWaiters.clear();
    for (const w of this.consWaiters.clear()) w.reject(aborted('s2cs is restarting; send Hello again once it is back'));
  }

  /** Releases every stream (shutdown). */
  async close(): Promise<void> {
    this.stopSampling();
    this.pendingHellos.clear();
    this.recordWaiters.clear();
    for (const w of this.consWaiters.clear()) w.reject(aborted('s2cs is shutting down; send Hello again once it is back'));
    await Promise.all([...this.records.values()].map((r) => this.releaseRecord(r, SHUTTING_DOWN)));
  }

  private checkRole(record: StreamRecord, role: Role, what: string): void {
    if (record.request.role !== role) {
      throw failedPrecondition(
        `${what} with role ${role} does not match stream ${record.request.uid}, which was requested as ${record.request.role} on this server`,
      );
    }
  }

  private checkOwner(record: StreamRecord, caller: Identity, action: string, adminMay = false): void {
    if (record.owner.subject === caller.subject) return;
    if (adminMay && this.opts.admins?.has(caller.subject)) return;
    throw new ScistreamError('PERMISSION_DENIED', `stream ${record.request.uid} belongs to another user; only its owner may ${action} it`);
  }
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

/**
 * Whether plain-TCP data legs (UpdateTargets without per-stream credentials) are
 * accepted, and why, in one line for the start-up log. On a loopback bind address
 * nothing can reach the listeners from another host, so the seed tutorial works on
 * defaults; on any other address only with --allow-plaintext-data.
 */
export function plaintextDataPolicy(bindHost: string | undefined, allowFlag: boolean): { accepts: boolean; why: string } {
  if (allowFlag) {
    return { accepts: true, why: 'plain-TCP data legs accepted on every address (--allow-plaintext-data): streams set up without per-stream credentials cross the WAN unencrypted' };
  }
  if (bindHost !== undefined && isLoopback(bindHost)) {
    return { accepts: true, why: `plain-TCP data legs accepted: the data listeners are on loopback (${bindHost}), which no other host reaches; on any other address only encrypted streams unless --allow-plaintext-data` };
  }
  return {
    accepts: false,
    why: `only encrypted data legs (per-stream credentials, sent by \`s2uc request\` between two SciStream-TS gateways): the data listeners are on ${bindHost ?? 'an address'}, not loopback; --allow-plaintext-data accepts unencrypted streams`,
  };
}

/** 127.0.0.0/8, ::1, IPv4-mapped 127.x, and the name localhost. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost') return true;
  const bytes = ipBytes(h);
  if (!bytes) return false;
  if (bytes.length === 4) return bytes[0] === 127;
  return isV4Mapped(bytes) ? bytes[12] === 127 : bytes.equals(IPV6_LOOPBACK);
}

const IPV6_LOOPBACK = Buffer.from('00000000000000000000000000000001', 'hex');

function reply(record: StreamRecord): StreamReply {
  return { listeners: record.listeners.map(formatAddress), prodListeners: (record.prodListeners ?? []).map(formatAddress) };
}

/**
 * The UpdateTargets answer, as the reference gives it: the stream's listeners, and
 * in prod_listeners the target each listener forwards to (targets taken round-robin
 * up to num_conn, as the data server maps them).
 */
function updateReply(record: StreamRecord, targets: Address[]): StreamReply {
  const prodListeners = Array.from({ length: record.request.numConn }, (_, i) => formatAddress(targets[i % targets.length]!));
  return { listeners: record.listeners.map(formatAddress), prodListeners };
}

function noop(): void {}

const RELEASED_BY_REQUEST = 'released by request';
const SHUTTING_DOWN = 'server shutting down';
/** How many self-ended streams status remembers (a few KiB). */
const MAX_ENDED_KEPT = 100;

export interface EndedStream {
  uid: string;
  owner: string;
  why: string;
  /** When it ended (ms since epoch). */
  at: number;
}

const countedRefusals = new WeakSet<Error>();

function counted(err: ScistreamError): ScistreamError {
  countedRefusals.add(err);
  return err;
}

/** Whether an error is a refusal Refusals has already counted and logs at most once per interval (so the rpc log need not). */
export function isCountedRefusal(err: unknown): boolean {
  return err instanceof Error && countedRefusals.has(err);
}

/** Read through a function: TypeScript would otherwise keep a narrowing made before an await. */
function released(record: StreamRecord): boolean {
  return record.state === 'released';
}
