// Hello matching: an application controller's Hello meets its stream's req, in
// either order. Producer Hellos that come first are held (pending), consumer
// Hellos that come first wait on their call (waiters); a PROD req waits for its
// producer's Hello.
import { verifyAppSecretHash, type Identity } from '../../auth/index.js';
import { formatAddress, parseAddressList, type Address } from '../../protocol/address.js';
import { aborted, alreadyExists, deadlineExceeded, resourceExhausted, ScistreamError } from '../../protocol/errors.js';
import { sameAddresses, type HelloMessage } from '../../protocol/validate.js';
import { PendingByPeer } from '../pending.js';
import { counted } from './counted.js';
import { consHelloWait, type StreamTableOptions } from './options.js';
import { checkHelloOwner, checkRole } from './ownership.js';
import type { StreamRecord, TableState } from './record.js';

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

export class HelloRendezvous {
  /** Producer Hellos that came before their req, by uid. */
  private readonly pendingHellos: PendingByPeer<PendingHello>;
  /** Consumer Hellos waiting for their req, by waiter id; recordWaiters finds them by uid. */
  private readonly consWaiters: PendingByPeer<ConsWaiter>;
  private readonly recordWaiters = new Map<string, Set<string>>();
  private nextWaiter = 0;

  constructor(private readonly state: TableState) {
    const opts = state.opts;
    this.pendingHellos = new PendingByPeer<PendingHello>(
      { max: opts.maxPendingHellos, maxPerPeer: opts.maxPendingHellosPerPeer, ttlMs: opts.helloTimeoutMs },
      () => {},
    );
    this.consWaiters = new PendingByPeer<ConsWaiter>(
      { max: opts.maxWaitingConsHellos, maxPerPeer: opts.maxWaitingConsHellosPerPeer, ttlMs: consHelloWait(opts) },
      (id, w) => {
        this.forgetWaiter(id, w.uid);
        w.reject(
          deadlineExceeded(
            `no request for uid ${w.uid} arrived within ${consHelloWait(this.state.opts) / 1000} s; run s2uc request first and hand its uid to the application controller (s2app hello retries by itself until its --timeout)`,
          ),
        );
      },
    );
  }

  /** The limits of new options (a reload): Hellos held now are held at most the new Hello timeout. */
  setLimits(o: StreamTableOptions): void {
    this.pendingHellos.setLimits({ max: o.maxPendingHellos, maxPerPeer: o.maxPendingHellosPerPeer, ttlMs: o.helloTimeoutMs });
    this.consWaiters.setLimits({ max: o.maxWaitingConsHellos, maxPerPeer: o.maxWaitingConsHellosPerPeer, ttlMs: consHelloWait(o) });
  }

  /** A stream was requested: the consumer Hellos waiting for its uid go on with it. */
  requested(record: StreamRecord): void {
    const waiters = this.recordWaiters.get(record.request.uid);
    if (!waiters) return;
    this.recordWaiters.delete(record.request.uid);
    for (const id of waiters) this.consWaiters.delete(id)?.resolve(record);
  }

  /**
   * A stream's listeners are reserved: takes the Hello held for its uid, and
   * returns the producer listeners it brought (PROD), if it may be used.
   */
  takeHeld(record: StreamRecord): Address[] | undefined {
    const { uid, role } = record.request;
    // A Hello with role PROD that came before this CONS req (the reference's
    // outbound-request sends one) was held as a producer's; it was this side's Hello.
    if (role === 'CONS') {
      if (this.pendingHellos.delete(uid)) {
        this.state.opts.logger.debug({ uid }, 'a Hello with role PROD held for this uid was taken as the CONS stream\'s consumer Hello, listeners ignored');
      }
      return undefined;
    }
    if (record.prodListeners) return undefined;
    const early = this.pendingHellos.delete(uid);
    if (early?.owner !== undefined && early.owner !== record.owner.subject) {
      // Someone else's token opened it: the owner's controller must send its own Hello.
      this.state.opts.logger.warn({ uid, helloFrom: early.owner, owner: record.owner.subject }, "dropped a Hello held for this uid: it carried another user's token than the request's");
      return undefined;
    }
    return early ? parseAddressList(early.listeners, 'prod_listeners') : undefined;
  }

  /** The stream is released: a Hello held for its uid goes too. */
  forgetHeld(uid: string): void {
    this.pendingHellos.delete(uid);
  }

  /** Drops what is held and answers what waits (detach, close). */
  clear(why: string): void {
    this.pendingHellos.clear();
    this.recordWaiters.clear();
    for (const w of this.consWaiters.clear()) w.reject(aborted(why));
  }

  /** A PROD stream waits for its producer's Hello, at most the Hello timeout; released meanwhile, it is aborted. */
  awaitHello(record: StreamRecord): Promise<Address[]> {
    const { uid } = record.request;
    const seconds = this.state.opts.helloTimeoutMs / 1000;
    return new Promise<Address[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          deadlineExceeded(
            `no Hello from the producer's application controller for uid ${uid} within ${seconds} s; ` +
              'its ports are released. Start the producer and send Hello (s2app hello --role PROD) with this uid, then request again',
          ),
        );
      }, this.state.opts.helloTimeoutMs);
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

  /** Hello from an application controller: where the producer listens (PROD), or where the consumer connects (CONS). */
  async hello(msg: HelloMessage, peer = '', creds: HelloCredentials = NO_TOKEN): Promise<{ message: string; listeners: string[] }> {
    const owner = this.state.opts.requireAppSecret ? await this.checkHelloCredentials(msg, creds) : undefined;
    if (msg.role === 'PROD' && this.state.records.get(msg.uid)?.request.role === 'CONS') {
      // The reference's s2uc outbound-request sends the consumer-side gateway a Hello
      // with role PROD (and its default receivers), which the reference's s2cs takes as
      // the Hello its CONS req waits for. Taken here as that stream's consumer Hello;
      // its listeners mean nothing on this side.
      this.state.opts.logger.debug(
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
    const record = this.state.records.get(msg.uid);
    if (record && verifyAppSecretHash(msg.appSecret, record.appSecretHash)) return undefined;
    if (this.state.opts.helloAcceptsOwnerToken && creds.token && creds.authenticate) {
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
      const now = this.state.records.get(msg.uid);
      if (now) checkHelloOwner(now, who.subject);
      return who.subject;
    }
    const tokenHint = creds.token
      ? this.state.opts.helloAcceptsOwnerToken
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

  private producerHello(msg: HelloMessage, peer: string, owner?: string): { message: string; listeners: string[] } {
    const record = this.state.records.get(msg.uid);
    if (record) {
      if (owner !== undefined) checkHelloOwner(record, owner);
      checkRole(record, 'PROD', 'Hello');
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
      this.state.opts.logger.info({ uid: msg.uid, prodListeners: msg.prodListeners.map(formatAddress) }, 'producer Hello');
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
    if (msg.prodListeners.length > this.state.opts.maxHeldListeners || listenersText.length > MAX_HELD_LISTENERS_TEXT) {
      throw resourceExhausted(
        `a Hello sent before its request may carry at most ${this.state.opts.maxHeldListeners} producer listeners (--max-conn) in ${MAX_HELD_LISTENERS_TEXT} characters, ` +
          `and this one has ${msg.prodListeners.length} in ${listenersText.length}; send it after s2uc request has reserved the stream`,
      );
    }
    const added = this.pendingHellos.add(msg.uid, peer, owner === undefined ? { listeners: listenersText } : { listeners: listenersText, owner });
    if (!added.ok) throw this.helloRefused('producer', peer, added.held, this.state.opts.maxPendingHellos, this.state.opts.maxPendingHellosPerPeer, added.why, msg.uid);
    if (added.evicted) this.helloEvicted('producer', added.evicted.peer, added.evicted.key);
    this.state.opts.logger.debug({ uid: msg.uid, prodListeners: msg.prodListeners.map(formatAddress) }, 'producer Hello before its request; holding it');
    return { message: 'Hello received; waiting for the request for this uid', listeners: [] };
  }

  private async consumerHello(msg: HelloMessage, peer: string, owner?: string): Promise<{ message: string; listeners: string[] }> {
    const record = this.state.records.get(msg.uid) ?? (await this.waitForRecord(msg.uid, peer));
    if (owner !== undefined) checkHelloOwner(record, owner);
    checkRole(record, 'CONS', 'Hello');
    const r = await record.ready;
    return { message: 'Hello received', listeners: r.listeners };
  }

  private waitForRecord(uid: string, peer: string): Promise<StreamRecord> {
    return new Promise<StreamRecord>((resolve, reject) => {
      const id = String(this.nextWaiter++);
      const added = this.consWaiters.add(id, peer, { uid, resolve, reject });
      if (!added.ok) {
        reject(this.helloRefused('consumer', peer, added.held, this.state.opts.maxWaitingConsHellos, this.state.opts.maxWaitingConsHellosPerPeer, added.why, uid));
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
    this.state.opts.refusals.count('pending-hellos', message, { uid, peer, side });
    return counted(resourceExhausted(message));
  }

  private helloEvicted(side: 'producer' | 'consumer', peer: string, uid: string): void {
    this.state.opts.refusals.count('pending-hellos', `a waiting ${side} Hello from ${peer} (the address holding the most) was dropped to make room for one from a quieter address`, {
      uid,
      peer,
      side,
      evicted: true,
    });
  }
}
