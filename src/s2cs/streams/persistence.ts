// A stream's record kept on its data-server agents, and the streams a previous
// s2cs set up taken back from them (adopt).
import { boundAllowList } from '../../protocol/cidr.js';
import { formatAddress, type Address } from '../../protocol/address.js';
import { aborted } from '../../protocol/errors.js';
import type { AdoptedStream } from '../../s2ds/index.js';
import { decodeRecord, encodeRecord } from '../records.js';
import { RateWindow } from '../rates.js';
import type { Admission } from './admission.js';
import type { HelloRendezvous } from './hello.js';
import type { Leases } from './leases.js';
import { noop, released, reply, type Release, type StreamRecord, type TableState } from './record.js';

export class RecordKeeper {
  constructor(private readonly state: TableState) {}

  /**
   * persist() off the request's path: the records a stream's setup stores before its
   * connection map are stored in order behind the answer (a restarted s2cs that
   * finds none releases the stream: only one whose s2cs died within those
   * milliseconds). UpdateTargets waits for them and carries its own record.
   */
  persistSoon(record: StreamRecord): void {
    if (!this.state.opts.dataServer.setRecord || record.persistQueued) return;
    record.persistQueued = true;
    record.persisting = (record.persisting ?? Promise.resolve()).then(() => {
      record.persistQueued = false;
      return this.persist(record);
    });
  }

  /**
   * Keeps the stream's record on its data-server agents (when they keep records),
   * so that a restarted s2cs can take the stream back. A failure costs only that:
   * the stream goes on, with a warning.
   */
  async persist(record: StreamRecord): Promise<void> {
    const setRecord = this.state.opts.dataServer.setRecord?.bind(this.state.opts.dataServer);
    if (!setRecord || released(record) || record.mapCarriesRecord) return;
    try {
      await setRecord(record.request.uid, this.encode(record, {}));
    } catch (err) {
      if (released(record)) return;
      this.state.opts.logger.warn({ uid: record.request.uid, err: (err as Error).message }, 'could not keep the stream\'s record on its data-server agents: a restarted s2cs would not take this stream back');
    }
  }

  /** The stream's record for its agents, with `changes` applied. */
  encode(record: StreamRecord, changes: { targets?: Address[]; wanIdentity?: string; state?: StreamRecord['state'] }): Uint8Array {
    const state = changes.state ?? record.state;
    return encodeRecord({
      request: record.request,
      owner: record.owner,
      appSecretHash: record.appSecretHash,
      binding: record.binding,
      state: state === 'released' ? 'ready' : state,
      listeners: record.listeners,
      prodListeners: record.prodListeners,
      targets: changes.targets ?? record.targets,
      wanIdentity: changes.wanIdentity ?? record.wanIdentity,
      quotaKey: record.quotaKey,
      createdAt: record.createdAt,
      leaseEnds: record.leaseEnds,
    });
  }
}

/** The parts of the table adopt() sets a stream up again with. */
export interface AdoptionParts {
  state: TableState;
  admission: Admission;
  leases: Leases;
  hellos: HelloRendezvous;
  keeper: RecordKeeper;
  release: Release;
}

/**
 * Takes back the streams a previous s2cs set up, as the agents still forward them
 * (after a crash, kill -9 or an upgrade): same owner, state, addresses, lease,
 * Hello secret and binding (secrets checked against their hashes). A stream whose record cannot be read is
 * released: nobody could update or release it otherwise.
 */
export async function adoptStreams(parts: AdoptionParts, found: AdoptedStream[]): Promise<{ adopted: string[]; dropped: string[] }> {
  const { state, admission, leases, hellos, keeper, release } = parts;
  const adopted: string[] = [];
  const dropped: string[] = [];
  const now = Date.now();
  for (const f of found) {
    let p;
    try {
      if (state.records.has(f.uid)) throw new Error('a stream with this uid is already held');
      p = decodeRecord(f.record, f.uid);
    } catch (err) {
      dropped.push(f.uid);
      state.opts.logger.error({ uid: f.uid, why: (err as Error).message }, 'a stream found on the data-server agents cannot be taken back; releasing it');
      await state.opts.dataServer.release(f.uid).catch(noop);
      continue;
    }
    const record: StreamRecord = {
      request: p.request,
      owner: p.owner,
      appSecret: '',
      appSecretHash: p.appSecretHash,
      binding: p.binding,
      controlSecret: '',
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
      // Its counters carry everything it forwarded before the restart: no rate until two samples exist.
      rates: new RateWindow(),
      // The agents hold the cap they were given at req; this is what the policy now counts.
      capBps: admission.capFor(p.request),
      // The agents enforce what they were given at req; status shows it as the bound now makes it.
      allowFrom: boundAllowList(p.request.allowFrom ?? [], state.opts.dataAllowFrom ?? []) ?? p.request.allowFrom ?? [],
    };
    admission.holdAgain(p.quotaKey, p.request.numConn);
    state.records.set(p.request.uid, record);
    if (!record.targets) leases.start(record, Math.max(0, p.leaseEnds - now));
    if (record.state === 'awaiting-hello') {
      record.ready = hellos.awaitHello(record).then(
        (listeners) => {
          record.prodListeners = listeners;
          if (released(record)) throw aborted(`stream ${record.request.uid} was released while it was being set up`);
          record.state = record.targets ? 'ready' : 'awaiting-update';
          void keeper.persist(record);
          return reply(record);
        },
        async (err: unknown) => {
          if (state.records.get(record.request.uid) === record) await release(record, 'no Hello');
          throw err;
        },
      );
      record.ready.catch(noop);
    } else {
      record.ready = Promise.resolve(reply(record));
    }
    adopted.push(p.request.uid);
    state.opts.logger.info({ uid: p.request.uid, owner: p.owner.subject, state: record.state, listeners: record.listeners.map(formatAddress) }, 'stream taken back from the data-server agents');
  }
  return { adopted, dropped };
}
