// UpdateTargets: a stream's connection map (where its listeners forward to), and
// whether it may cross the WAN without per-stream credentials.
import type { Identity } from '../../auth/index.js';
import type { ControlProof } from './binding.js';
import { fingerprint } from '../../security/certificates.js';
import { formatAddress, type Address } from '../../protocol/address.js';
import { failedPrecondition, notFound } from '../../protocol/errors.js';
import { sameAddresses, type TargetUpdate } from '../../protocol/validate.js';
import type { Leases } from './leases.js';
import type { StreamTableOptions } from './options.js';
import { checkControl, checkRole } from './ownership.js';
import type { RecordKeeper } from './persistence.js';
import { plaintextDataPolicy } from './plaintext.js';
import { released, type StreamRecord, type StreamReply, type TableState } from './record.js';

/** The parts of the table an UpdateTargets goes through. */
export interface TargetParts {
  state: TableState;
  keeper: RecordKeeper;
  leases: Leases;
}

/** Whether UpdateTargets without credentials (a plain-TCP WAN leg) is accepted. */
export function acceptsPlaintextData(opts: StreamTableOptions): boolean {
  return plaintextDataPolicy(opts.dataBindHost, opts.allowPlaintextData === true).accepts;
}

/** UpdateTargets: the connection map for this side; repeated with the same targets it changes nothing. */
export async function updateTargets(parts: TargetParts, u: TargetUpdate, caller: Identity, proof?: ControlProof): Promise<StreamReply> {
  const { state } = parts;
  const record = state.records.get(u.uid);
  if (!record) {
    throw notFound(
      `no stream with uid ${u.uid} on this server; request it first (s2uc request), or check the uid ` +
        `(a stream without UpdateTargets within ${state.opts.setupTimeoutMs / 1000} s of its request is released)`,
    );
  }
  checkControl(record, caller, proof, 'update', state.opts);
  if (u.role) checkRole(record, u.role, 'UpdateTargets');
  if (!u.credentials && !acceptsPlaintextData(state.opts)) {
    throw failedPrecondition(
      `UpdateTargets for ${u.uid} carries no credentials for the WAN leg, and this gateway's data listeners are on ${state.opts.dataBindHost ?? 'an address that is not loopback'}, not loopback, ` +
        'where s2cs forwards only encrypted streams: start s2cs with --allow-plaintext-data to accept unencrypted streams, ' +
        'or set the stream up with `s2uc request` between two SciStream-TS gateways, which sends per-stream credentials',
    );
  }
  const updating = applyUpdate(parts, record, u);
  record.updating = updating;
  try {
    return await updating;
  } finally {
    if (record.updating === updating) record.updating = undefined;
  }
}

async function applyUpdate(parts: TargetParts, record: StreamRecord, u: TargetUpdate): Promise<StreamReply> {
  const { state, keeper, leases } = parts;
  await record.bound;
  if (record.state === 'released') throw notFound(`stream ${u.uid} was released; request it again`);
  const wanIdentity = u.credentials ? fingerprint(u.credentials.cert) : '';
  if (!record.targets || !sameAddresses(record.targets, u.targets) || record.wanIdentity !== wanIdentity) {
    const role = record.request.role;
    // The record as it will be once the map applies, stored by the agents with it in
    // one call; stores queued before it are skipped from now on (mapCarriesRecord),
    // and those already sent reach the agent before it (same channel, in order).
    const after = state.opts.dataServer.setRecord
      ? keeper.encode(record, { targets: u.targets, wanIdentity, state: record.state === 'awaiting-update' || record.state === 'ready' ? 'ready' : record.state })
      : undefined;
    record.mapCarriesRecord = after !== undefined;
    try {
      await state.opts.dataServer.setTargets(
        u.uid,
        u.targets,
        u.credentials ? { side: role === 'PROD' ? 'accept' : 'connect', credentials: u.credentials } : undefined,
        after,
      );
    } catch (err) {
      // Not applied: the agents keep the record from before this map; store what the stream is now.
      record.mapCarriesRecord = false;
      if (!record.targets) keeper.persistSoon(record);
      throw err;
    }
    if (released(record)) throw notFound(`stream ${u.uid} was released while its connection map was being applied; request it again`);
    record.targets = u.targets;
    record.wanIdentity = wanIdentity;
    // The connection map is what the lease waited for; from now on the stream's lifetime rules apply (leases.ts).
    leases.end(record);
    record.mappedAt ??= Date.now();
    if (record.state === 'awaiting-update') record.state = 'ready';
    if (u.credentials) {
      state.opts.logger.info({ uid: u.uid, targets: u.targets.map(formatAddress), wan: 'tls' }, 'connection map updated; forwarding with the stream\'s credentials');
    } else {
      state.opts.logger.warn(
        { uid: u.uid, targets: u.targets.map(formatAddress), wan: 'plain' },
        `connection map updated without credentials: this stream crosses the WAN unencrypted and unauthenticated (${state.opts.allowPlaintextData ? '--allow-plaintext-data' : 'data listeners on loopback'})`,
      );
    }
  }
  return updateReply(record, u.targets);
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
