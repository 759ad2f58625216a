// The stream table of one S2CS: what each uid reserved, who owns it, and the
// Hello/req rendezvous. Independent of gRPC so that it can be tested and reused.
import type { Logger } from '../log.js';
import { generateAppSecret, verifyAppSecret, type Identity } from '../auth/index.js';
import type { DataServer, StreamStats } from '../s2ds/index.js';
import { formatAddress, type Address } from '../protocol/address.js';
import { fingerprint } from '../security/certificates.js';
import {
  aborted,
  alreadyExists,
  deadlineExceeded,
  failedPrecondition,
  notFound,
  resourceExhausted,
  ScistreamError,
} from '../protocol/errors.js';
import { sameAddresses, type HelloMessage, type Role, type StreamRequest, type TargetUpdate } from '../protocol/validate.js';

export interface StreamTableOptions {
  dataServer: DataServer;
  /** Host advertised in listeners (--listener-ip). */
  advertiseHost: string;
  /** How long req(PROD) waits for the producer's Hello, and a Hello for its req. */
  helloTimeoutMs: number;
  /** Hellos that may wait for their req at once. */
  maxPendingHellos: number;
  /** Identities allowed to release any stream. */
  admins?: ReadonlySet<string>;
  /** Accept UpdateTargets without credentials (reference clients): the WAN leg is then plain TCP. */
  allowPlaintextData?: boolean;
  /**
   * Give each stream an application secret and accept a Hello only with it (s2cs
   * checks tokens). Off (--auth none): Hello needs no secret, as in the reference.
   */
  requireAppSecret?: boolean;
  logger: Logger;
}

export type StreamState = 'reserving' | 'awaiting-hello' | 'ready';

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
}

interface StreamRecord {
  request: StreamRequest;
  owner: Identity;
  /** What the stream's application controllers present with Hello ('' when not required). */
  appSecret: string;
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
  abort?: (err: ScistreamError) => void;
}

interface PendingHello {
  listeners: Address[];
  timer: NodeJS.Timeout;
}

export class StreamTable {
  private readonly records = new Map<string, StreamRecord>();
  private readonly pendingHellos = new Map<string, PendingHello>();
  private readonly recordWaiters = new Map<string, Set<() => void>>();

  constructor(private readonly opts: StreamTableOptions) {}

  get size(): number {
    return this.records.size;
  }

  /** REQ: reserve listeners; retried with identical fields it answers the same. */
  req(request: StreamRequest, caller: Identity): Promise<StreamReply> {
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
    let boundDone!: () => void;
    const record: StreamRecord = {
      request,
      owner: caller,
      appSecret: this.opts.requireAppSecret ? generateAppSecret() : '',
      state: 'reserving',
      listeners: [],
      prodListeners: undefined,
      targets: undefined,
      wanIdentity: undefined,
      bound: new Promise<void>((resolve) => (boundDone = resolve)),
      ready: Promise.resolve({ listeners: [], prodListeners: [] }),
    };
    this.records.set(request.uid, record);
    record.ready = this.reserve(record, boundDone);
    record.ready.catch(noop);
    const waiters = this.recordWaiters.get(request.uid);
    if (waiters) for (const w of waiters) w();
    return record.ready;
  }

  private async reserve(record: StreamRecord, boundDone: () => void): Promise<StreamReply> {
    const { uid, role, numConn } = record.request;
    try {
      const bound = await this.opts.dataServer.startListeners(uid, numConn);
      record.listeners = bound.map((a) => ({ host: this.opts.advertiseHost, port: a.port }));
    } catch (err) {
      if (this.records.get(uid) === record) this.records.delete(uid);
      record.state = 'released';
      throw err;
    } finally {
      boundDone();
    }
    if (record.state === 'released') throw aborted(`stream ${uid} was released while its listeners were being reserved`);
    this.opts.logger.info(
      { uid, role, numConn, rate: record.request.rate, listeners: record.listeners.map(formatAddress) },
      'stream reserved',
    );
    if (role === 'PROD' && !record.prodListeners) {
      const early = this.pendingHellos.get(uid);
      if (early) {
        clearTimeout(early.timer);
        this.pendingHellos.delete(uid);
        record.prodListeners = early.listeners;
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
    record.state = 'ready';
    return reply(record);
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
      record.helloArrived = (listeners) => {
        clearTimeout(timer);
        resolve(listeners);
      };
      record.abort = (err) => {
        clearTimeout(timer);
        reject(err);
      };
    });
  }

  /** The application secret of a stream ('' when secrets are off or the uid is unknown). */
  appSecret(uid: string): string {
    return this.records.get(uid)?.appSecret ?? '';
  }

  /** Whether `subject` is listed with --admin (may release, and see, every stream). */
  isAdmin(subject: string): boolean {
    return this.opts.admins?.has(subject) ?? false;
  }

  /** Hello from an application controller: where the producer listens (PROD), or where the consumer connects (CONS). */
  async hello(msg: HelloMessage): Promise<{ message: string; listeners: string[] }> {
    if (this.opts.requireAppSecret) this.checkAppSecret(msg);
    return msg.role === 'PROD' ? this.producerHello(msg) : this.consumerHello(msg);
  }

  // With secrets on, a Hello must name a stream that exists here: the secret only
  // exists once s2uc has requested the stream.
  private checkAppSecret(msg: HelloMessage): void {
    const record = this.records.get(msg.uid);
    if (!record) {
      throw new ScistreamError(
        'UNAUTHENTICATED',
        `no stream with uid ${msg.uid} on this server, so no application secret can match: run s2uc request first, then send Hello with the uid and the application secret it prints`,
      );
    }
    if (!verifyAppSecret(msg.appSecret, record.appSecret)) {
      throw new ScistreamError(
        'UNAUTHENTICATED',
        msg.appSecret
          ? `the application secret does not match stream ${msg.uid}; give the secret s2uc request printed for this gateway (s2app hello --app-secret)`
          : `this s2cs checks tokens, so a Hello must carry the stream's application secret: give the one s2uc request printed for this gateway (s2app hello --app-secret)`,
      );
    }
  }

  private producerHello(msg: HelloMessage): { message: string; listeners: string[] } {
    const record = this.records.get(msg.uid);
    if (record) {
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
    if (pending) {
      if (!sameAddresses(pending.listeners, msg.prodListeners)) {
        throw alreadyExists(`a Hello for uid ${msg.uid} with other producer listeners is already waiting for its request`);
      }
      return { message: 'Hello received; waiting for the request for this uid', listeners: [] };
    }
    if (this.pendingHellos.size >= this.opts.maxPendingHellos) {
      throw resourceExhausted(`too many Hellos are waiting for their request (${this.opts.maxPendingHellos}); send Hello after s2uc request, or retry later`);
    }
    const timer = setTimeout(() => this.pendingHellos.delete(msg.uid), this.opts.helloTimeoutMs);
    timer.unref();
    this.pendingHellos.set(msg.uid, { listeners: msg.prodListeners, timer });
    this.opts.logger.info({ uid: msg.uid, prodListeners: msg.prodListeners.map(formatAddress) }, 'producer Hello before its request; holding it');
    return { message: 'Hello received; waiting for the request for this uid', listeners: [] };
  }

  private async consumerHello(msg: HelloMessage): Promise<{ message: string; listeners: string[] }> {
    const record = this.records.get(msg.uid) ?? (await this.waitForRecord(msg.uid));
    this.checkRole(record, 'CONS', 'Hello');
    const r = await record.ready;
    return { message: 'Hello received', listeners: r.listeners };
  }

  private waitForRecord(uid: string): Promise<StreamRecord> {
    return new Promise<StreamRecord>((resolve, reject) => {
      let set = this.recordWaiters.get(uid);
      if (!set) this.recordWaiters.set(uid, (set = new Set()));
      const waiters = set;
      const done = () => {
        clearTimeout(timer);
        waiters.delete(onRecord);
        if (waiters.size === 0) this.recordWaiters.delete(uid);
      };
      const onRecord = () => {
        done();
        resolve(this.records.get(uid)!);
      };
      const timer = setTimeout(() => {
        done();
        reject(deadlineExceeded(`no request for uid ${uid} arrived within ${this.opts.helloTimeoutMs / 1000} s; run s2uc request first and hand its uid to the application controller`));
      }, this.opts.helloTimeoutMs);
      waiters.add(onRecord);
    });
  }

  /** UpdateTargets: the connection map for this side; repeated with the same targets it changes nothing. */
  async update(u: TargetUpdate, caller: Identity): Promise<StreamReply> {
    const record = this.records.get(u.uid);
    if (!record) throw notFound(`no stream with uid ${u.uid} on this server; request it first (s2uc request), or check the uid`);
    this.checkOwner(record, caller, 'update');
    if (u.role) this.checkRole(record, u.role, 'UpdateTargets');
    if (!u.credentials && !this.opts.allowPlaintextData) {
      throw failedPrecondition(
        `UpdateTargets for ${u.uid} carries no credentials for the WAN leg, and this s2cs forwards only encrypted streams; ` +
          'use an s2uc that sends per-stream credentials (SciStream-TS), or start s2cs with --allow-plaintext-data to accept unencrypted streams',
      );
    }
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
      record.targets = u.targets;
      record.wanIdentity = wanIdentity;
      if (u.credentials) {
        this.opts.logger.info({ uid: u.uid, targets: u.targets.map(formatAddress), wan: 'tls' }, 'connection map updated; forwarding with the stream\'s credentials');
      } else {
        this.opts.logger.warn(
          { uid: u.uid, targets: u.targets.map(formatAddress), wan: 'plain' },
          'connection map updated without credentials: this stream crosses the WAN unencrypted and unauthenticated (--allow-plaintext-data)',
        );
      }
    }
    return reply(record);
  }

  /** REL: idempotent; an unknown uid is already released. */
  async release(uid: string, caller: Identity): Promise<void> {
    const pending = this.pendingHellos.get(uid);
    if (pending) {
      clearTimeout(pending.timer);
      this.pendingHellos.delete(uid);
    }
    const record = this.records.get(uid);
    if (!record) return;
    this.checkOwner(record, caller, 'release', true);
    await this.releaseRecord(record, 'released by request');
  }

  private async releaseRecord(record: StreamRecord, why: string): Promise<void> {
    const { uid } = record.request;
    if (this.records.get(uid) === record) this.records.delete(uid);
    const wasReserving = record.state === 'reserving';
    record.state = 'released';
    record.abort?.(aborted(`stream ${uid} was released while waiting for the producer's Hello`));
    const stats = this.opts.dataServer.stats(uid);
    await this.opts.dataServer.release(uid);
    if (!wasReserving || stats) {
      this.opts.logger.info(
        { uid, why, bytesToTarget: stats?.bytesToTarget ?? 0, bytesFromTarget: stats?.bytesFromTarget ?? 0, connections: stats?.acceptedConnections ?? 0 },
        'stream released',
      );
    }
  }

  status(uid?: string): StreamStatus[] {
    const records = uid ? [this.records.get(uid)].filter((r): r is StreamRecord => r !== undefined) : [...this.records.values()];
    return records.map((r) => ({
      ...r.request,
      state: r.state === 'released' ? 'ready' : r.state,
      owner: r.owner.subject,
      listeners: r.listeners.map(formatAddress),
      prodListeners: (r.prodListeners ?? []).map(formatAddress),
      targets: (r.targets ?? []).map(formatAddress),
      stats: this.opts.dataServer.stats(r.request.uid),
    }));
  }

  /** Releases every stream (shutdown). */
  async close(): Promise<void> {
    for (const p of this.pendingHellos.values()) clearTimeout(p.timer);
    this.pendingHellos.clear();
    await Promise.all([...this.records.values()].map((r) => this.releaseRecord(r, 'server shutting down')));
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

function reply(record: StreamRecord): StreamReply {
  return { listeners: record.listeners.map(formatAddress), prodListeners: (record.prodListeners ?? []).map(formatAddress) };
}

function noop(): void {}
