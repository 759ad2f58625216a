// What s2cs keeps with each stream on the data-server agents (SetRecord), so that
// a restarted s2cs takes back the streams they still forward: the request, its
// owner, its state and addresses, a hash of the application secret, and what binds
// the stream to its requester: the control secret's hash and the requester's address
// (the secrets themselves and every private key stay out of it). JSON, versioned, checked field by
// field when read back: an agent's answer is not trusted blindly.
import type { Identity } from '../auth/index.js';
import type { Address } from '../protocol/address.js';
import { formatAddress, parseAddressList } from '../protocol/address.js';
import { validateListenerPorts, validateProtocol, validateUid, type StreamRequest } from '../protocol/validate.js';
import { validateAllowList } from '../protocol/cidr.js';
import type { StreamBinding } from './streams/binding.js';

export type PersistedState = 'reserving' | 'awaiting-hello' | 'awaiting-update' | 'ready';

export interface PersistedStream {
  request: StreamRequest;
  owner: Identity;
  /** SHA-256 (hex) of the application secret; '' when Hello needs none. */
  appSecretHash: string;
  /** The control secret's hash and the requester's address; all '' in a record an older s2cs wrote. */
  binding: StreamBinding;
  state: PersistedState;
  listeners: Address[];
  prodListeners: Address[] | undefined;
  targets: Address[] | undefined;
  /** Fingerprint of the WAN certificate in force ('' for plain TCP; undefined before UpdateTargets). */
  wanIdentity: string | undefined;
  quotaKey: string;
  createdAt: number;
  leaseEnds: number;
}

const VERSION = 1;
/** The agents keep at most 64 KiB per stream. */
export const MAX_RECORD_BYTES = 64 * 1024;

export function encodeRecord(p: PersistedStream): Uint8Array {
  const list = (a: Address[] | undefined) => (a ? a.map(formatAddress).join(',') : null);
  const json = JSON.stringify({
    v: VERSION,
    uid: p.request.uid,
    role: p.request.role,
    numConn: p.request.numConn,
    rate: p.request.rate,
    ...(p.request.lifetimeS ? { lifetimeS: p.request.lifetimeS } : {}),
    ...(p.request.allowFrom ? { allowFrom: p.request.allowFrom } : {}),
    ...(p.request.listenerPorts ? { listenerPorts: p.request.listenerPorts } : {}),
    ...(p.request.protocol ? { protocol: p.request.protocol } : {}),
    owner: { subject: p.owner.subject, username: p.owner.username, clientId: p.owner.clientId },
    appSecretHash: p.appSecretHash,
    controlSecretHash: p.binding.secretHash,
    requester: p.binding.source,
    bindsBySecret: p.binding.bySecret,
    state: p.state,
    listeners: list(p.listeners),
    prodListeners: list(p.prodListeners),
    targets: list(p.targets),
    wanIdentity: p.wanIdentity ?? null,
    quotaKey: p.quotaKey,
    createdAt: p.createdAt,
    leaseEnds: p.leaseEnds,
  });
  const bytes = Buffer.from(json, 'utf8');
  if (bytes.length > MAX_RECORD_BYTES) throw new Error(`the record of stream ${p.request.uid} is ${bytes.length} bytes, over the agents' ${MAX_RECORD_BYTES}`);
  return bytes;
}

/** Reads a record back; throws with what is wrong. `uid`: the stream the agent says it belongs to. */
export function decodeRecord(bytes: Uint8Array, uid: string): PersistedStream {
  if (bytes.length === 0) throw new Error('the agent holds no record for it');
  if (bytes.length > MAX_RECORD_BYTES) throw new Error(`its record is ${bytes.length} bytes, over ${MAX_RECORD_BYTES}`);
  let o: unknown;
  try {
    o = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new Error('its record is not JSON');
  }
  if (typeof o !== 'object' || o === null) throw new Error('its record is not an object');
  const r = o as Record<string, unknown>;
  if (r.v !== VERSION) throw new Error(`its record has version ${String(r.v)}, this s2cs reads ${VERSION}`);
  const str = (k: string): string => {
    if (typeof r[k] !== 'string') throw new Error(`its record has no text ${k}`);
    return r[k] as string;
  };
  const int = (k: string, min: number, max: number): number => {
    const n = r[k];
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) throw new Error(`its record's ${k} is not a whole number from ${min} to ${max}`);
    return n;
  };
  const addresses = (k: string): Address[] | undefined => {
    if (r[k] === null || r[k] === undefined) return undefined;
    return parseAddressList(str(k), `record ${k}`);
  };
  const recordUid = validateUid(str('uid'), 'record uid');
  if (recordUid !== uid) throw new Error(`its record belongs to uid ${recordUid}`);
  const role = str('role');
  if (role !== 'PROD' && role !== 'CONS') throw new Error(`its record's role ${role} is neither PROD nor CONS`);
  const state = str('state');
  if (!['reserving', 'awaiting-hello', 'awaiting-update', 'ready'].includes(state)) throw new Error(`its record's state ${state} is unknown`);
  const owner = r.owner as Record<string, unknown> | null;
  if (typeof owner !== 'object' || owner === null || typeof owner.subject !== 'string' || owner.subject.length === 0) throw new Error('its record names no owner');
  const listeners = addresses('listeners') ?? [];
  const numConn = int('numConn', 1, 65_536);
  if (listeners.length !== numConn) throw new Error(`its record lists ${listeners.length} listeners for num_conn ${numConn}`);
  const hash = str('appSecretHash');
  if (hash !== '' && !/^[0-9a-f]{64}$/.test(hash)) throw new Error('its record has a malformed application secret hash');
  // Absent from the records of an s2cs that did not bind streams: such a stream stays as it was.
  const controlHash = r.controlSecretHash === undefined ? '' : str('controlSecretHash');
  if (controlHash !== '' && !/^[0-9a-f]{64}$/.test(controlHash)) throw new Error('its record has a malformed control secret hash');
  const requester = r.requester === undefined ? '' : str('requester');
  if (requester.length > 256) throw new Error("its record's requester address is too long");
  if (r.bindsBySecret !== undefined && typeof r.bindsBySecret !== 'boolean') throw new Error("its record's bindsBySecret is not true or false");
  const bySecret = r.bindsBySecret === true;
  if (bySecret && controlHash === '') throw new Error('its record binds the stream to a control secret but holds no hash of it');
  return {
    request: {
      uid,
      role,
      numConn,
      rate: int('rate', 0, 2 ** 31 - 1),
      ...(r.lifetimeS === undefined ? {} : { lifetimeS: int('lifetimeS', 1, 2 ** 32 - 1) }),
      ...optionalLists(r, numConn),
      // Absent from TCP streams' records (and from those of an s2cs before UDP streams).
      ...(r.protocol === undefined ? {} : validateProtocol(str('protocol'), 'record protocol') === 'udp' ? { protocol: 'udp' as const } : {}),
    },
    owner: {
      subject: owner.subject,
      ...(typeof owner.username === 'string' ? { username: owner.username } : {}),
      ...(typeof owner.clientId === 'string' ? { clientId: owner.clientId } : {}),
    },
    appSecretHash: hash,
    binding: { secretHash: controlHash, source: requester, bySecret },
    state: state as PersistedState,
    listeners,
    prodListeners: addresses('prodListeners'),
    targets: addresses('targets'),
    wanIdentity: r.wanIdentity === null || r.wanIdentity === undefined ? undefined : str('wanIdentity'),
    quotaKey: str('quotaKey'),
    createdAt: int('createdAt', 0, Number.MAX_SAFE_INTEGER),
    leaseEnds: int('leaseEnds', 0, Number.MAX_SAFE_INTEGER),
  };
}

/** A record's allowFrom and listenerPorts (absent from records of streams without them), checked as a req's are. */
function optionalLists(r: Record<string, unknown>, numConn: number): { allowFrom?: string[]; listenerPorts?: number[] } {
  const out: { allowFrom?: string[]; listenerPorts?: number[] } = {};
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
  const numbers = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => typeof x === 'number');
  if (r.allowFrom !== undefined) {
    if (!strings(r.allowFrom)) throw new Error("its record's allowFrom is not a list of CIDR blocks");
    out.allowFrom = validateAllowList(r.allowFrom, 'record allowFrom');
  }
  if (r.listenerPorts !== undefined) {
    if (!numbers(r.listenerPorts)) throw new Error("its record's listenerPorts is not a list of ports");
    out.listenerPorts = validateListenerPorts(r.listenerPorts, numConn);
  }
  return out;
}
