// Validation of every control message: wire messages in, typed domain values out.
// A message that fails here changes nothing on the server.
import { invalidArgument } from './errors.js';
import { shown } from './text.js';
import { parseAddress, formatAddress, type Address } from './address.js';
import type { Request__Output } from './generated/scistream/Request.js';
import type { UpdateTargets__Output } from './generated/scistream/UpdateTargets.js';
import type { Hello__Output } from './generated/scistream/Hello.js';
import type { Release__Output } from './generated/scistream/Release.js';
import type { StreamCredentials } from '../transport/index.js';
import { checkPrivateKey, checkStreamCertificate } from '../security/certificates.js';

export type Role = 'PROD' | 'CONS';

export interface StreamRequest {
  uid: string;
  role: Role;
  numConn: number;
  rate: number;
  /** Seconds the stream may live from its req (Request.lifetime_s); absent or 0: no limit of its own. */
  lifetimeS?: number;
  /** Ports the listeners are to take (Request.listener_ports); absent: the gateway picks. */
  listenerPorts?: number[];
  /** Who may connect to the listeners, CIDRs (Request.allow_from); absent: the gateway's bound only. */
  allowFrom?: string[];
}

export interface TargetUpdate {
  uid: string;
  /** Absent when a legacy client leaves role empty: the stream's own role applies. */
  role: Role | undefined;
  targets: Address[];
  /** The WAN leg's credentials; absent from reference clients. */
  credentials: StreamCredentials | undefined;
}

export interface HelloMessage {
  uid: string;
  role: Role;
  prodListeners: Address[];
  /** The application secret presented ('' when none). */
  appSecret: string;
}

export interface Limits {
  maxConn: number;
}

/** At most this many addresses in one message, whatever --max-conn says. */
export const MAX_ADDRESSES = 4096;

const UID = /^[A-Za-z0-9._-]{1,128}$/;

export function validateUid(uid: string, field = 'uid'): string {
  if (!uid) throw invalidArgument(`${field} is empty; give the stream's uid (1-128 characters of A-Z a-z 0-9 . _ -)`);
  if (!UID.test(uid)) {
    throw invalidArgument(`${field} "${shown(uid)}" is not valid: use 1-128 characters of A-Z a-z 0-9 . _ - (a UUID works)`);
  }
  return uid;
}

export function validateRole(role: string, field = 'role'): Role {
  if (role === 'PROD' || role === 'CONS') return role;
  throw invalidArgument(`${field} "${shown(role, 20)}" is not valid: use PROD (producer side) or CONS (consumer side)`);
}

export function validateAddresses(list: string[], field: string): Address[] {
  if (list.length > MAX_ADDRESSES) throw invalidArgument(`${field} has ${list.length} addresses; at most ${MAX_ADDRESSES} are accepted`);
  return list.map((a, i) => parseAddress(a, `${field}[${i}]`));
}

export function validateRequest(msg: Request__Output, limits: Limits): StreamRequest {
  const uid = validateUid(msg.uid);
  const role = validateRole(msg.role);
  const numConn = msg.num_conn;
  if (!Number.isInteger(numConn) || numConn < 1 || numConn > limits.maxConn) {
    throw invalidArgument(`num_conn ${numConn} is out of range: this server accepts 1 to ${limits.maxConn} connections per stream`);
  }
  if (!Number.isInteger(msg.rate) || msg.rate < 0) {
    throw invalidArgument(`rate ${msg.rate} is not valid; give 0 (unlimited) or a positive whole number`);
  }
  const lifetimeS = msg.lifetime_s ?? 0;
  if (!Number.isInteger(lifetimeS) || lifetimeS < 0) throw invalidArgument(`lifetime_s ${lifetimeS} is not valid; give 0 (no limit of its own) or a number of seconds`);
  // Reference clients never send it: their requests read exactly as before.
  return lifetimeS > 0 ? { uid, role, numConn, rate: msg.rate, lifetimeS } : { uid, role, numConn, rate: msg.rate };
}

export function validateUpdate(msg: UpdateTargets__Output): TargetUpdate {
  const uid = validateUid(msg.uid);
  const role = msg.role === '' ? undefined : validateRole(msg.role);
  if (msg.remote_listeners.length === 0) {
    throw invalidArgument('remote_listeners is empty; give at least one host:port to forward to');
  }
  const targets = validateAddresses(msg.remote_listeners, 'remote_listeners');
  return { uid, role, targets, credentials: validateCredentials(msg.credentials) };
}

const MAX_PEM = 16 * 1024;

/** The PEM fields of a stream's credentials as they arrive (control UpdateTargets, agent SetTargets' WanLeg). */
export interface CredentialFields {
  certificate: string;
  private_key: string;
  peer_certificate: string;
}

/**
 * Checks the credentials completely: each certificate parses, has an accepted key
 * type and strength and is within its dates, and the key belongs to the
 * certificate. (The TLS context is built from them by the data server before the
 * update is taken.) Messages name the field and never quote it: it holds a key.
 * `field` names the message part in errors (credentials, wan).
 */
export function validateCredentials(c: CredentialFields | null, field = 'credentials'): StreamCredentials | undefined {
  if (!c) return undefined;
  for (const name of ['certificate', 'private_key', 'peer_certificate'] as const) {
    if (!c[name]) throw invalidArgument(`${field}.${name} is empty; send all three of certificate, private_key and peer_certificate`);
    if (c[name].length > MAX_PEM) throw invalidArgument(`${field}.${name} is larger than ${MAX_PEM} bytes`);
  }
  const own = checkStreamCertificate(c.certificate);
  if ('problem' in own) throw invalidArgument(`${field}.certificate ${own.problem}`);
  const keyProblem = checkPrivateKey(own.cert, c.private_key);
  if (keyProblem) throw invalidArgument(`${field}.private_key ${keyProblem}`);
  const peer = checkStreamCertificate(c.peer_certificate);
  if ('problem' in peer) throw invalidArgument(`${field}.peer_certificate ${peer.problem}`);
  return { cert: c.certificate, key: c.private_key, peerCert: c.peer_certificate };
}

export function validateHello(msg: Hello__Output): HelloMessage {
  const uid = validateUid(msg.uid);
  // Early reference controllers send no role: they speak for the producer.
  const role = msg.role === '' ? 'PROD' : validateRole(msg.role);
  const prodListeners = validateAddresses(msg.prod_listeners, 'prod_listeners');
  if (role === 'PROD' && prodListeners.length === 0) {
    throw invalidArgument('prod_listeners is empty; a PROD Hello must say where the producer listens (host:port)');
  }
  const appSecret = msg.app_secret ?? '';
  if (appSecret.length > 256) throw invalidArgument('app_secret is longer than 256 characters; give the secret s2uc request printed');
  return { uid, role, prodListeners, appSecret };
}

export function validateRelease(msg: Release__Output): string {
  return validateUid(msg.uid);
}

/** Longest control secret accepted (ours are 43 characters). */
export const MAX_CONTROL_SECRET = 256;
/** Most control secrets one status request may present. */
export const MAX_STATUS_SECRETS = 1024;

/** The control_secret field of UpdateTargets and Release ('' when none is presented). */
export function validateControlSecret(secret: string | undefined | null, field = 'control_secret'): string {
  const s = secret ?? '';
  if (s.length > MAX_CONTROL_SECRET) throw invalidArgument(`${field} is longer than ${MAX_CONTROL_SECRET} characters; give the control secret the stream's req answered with`);
  return s;
}

/** StatusRequest.control_secrets: the secrets of the caller's streams, empty ones dropped. */
export function validateStatusSecrets(secrets: string[] | undefined | null): string[] {
  const list = secrets ?? [];
  if (list.length > MAX_STATUS_SECRETS) throw invalidArgument(`control_secrets has ${list.length} secrets; at most ${MAX_STATUS_SECRETS} are accepted in one status request`);
  return list.map((s, i) => validateControlSecret(s, `control_secrets[${i}]`)).filter((s) => s.length > 0);
}

export const sameAddresses = (a: Address[], b: Address[]): boolean =>
  a.length === b.length && a.every((x, i) => formatAddress(x) === formatAddress(b[i]!));
