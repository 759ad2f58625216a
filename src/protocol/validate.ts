// Validation of every control message: wire messages in, typed domain values out.
// A message that fails here changes nothing on the server.
import { invalidArgument } from './errors.js';
import { shown } from './text.js';
import { parseAddress, formatAddress, type Address } from './address.js';
import { validateAllowList } from './cidr.js';
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
  /**
   * Who may connect to the stream's listeners (Request.allow_from): canonical CIDR
   * blocks, sorted (cidr.ts); absent: anyone the gateway's --data-allow-from admits.
   */
  allowFrom?: string[];
  /** The listener ports asked for (Request.listener_ports), one per connection, in order; absent: the gateway picks. */
  listenerPorts?: number[];
  /** Request.protocol: 'udp' for a UDP stream; absent: TCP (reference clients never send it). */
  protocol?: StreamProtocol;
}

/** A stream's transport (Request.protocol); '' on the wire means tcp. */
export type StreamProtocol = 'tcp' | 'udp';

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
  // Reference clients never send these: their requests read exactly as before.
  const request: StreamRequest = lifetimeS > 0 ? { uid, role, numConn, rate: msg.rate, lifetimeS } : { uid, role, numConn, rate: msg.rate };
  const allowFrom = validateAllowList(msg.allow_from ?? [], 'allow_from');
  if (allowFrom.length > 0) request.allowFrom = allowFrom;
  const listenerPorts = validateListenerPorts(msg.listener_ports ?? [], numConn);
  if (listenerPorts.length > 0) request.listenerPorts = listenerPorts;
  // tcp is kept absent, so that a TCP request reads (and compares, and is recorded) as before.
  if (validateProtocol(msg.protocol ?? '') === 'udp') request.protocol = 'udp';
  return request;
}

/** Request.protocol: '' or tcp (a TCP stream) or udp; anything else is INVALID_ARGUMENT naming the field. */
export function validateProtocol(protocol: string, field = 'protocol'): StreamProtocol {
  if (protocol === '' || protocol === 'tcp') return 'tcp';
  if (protocol === 'udp') return 'udp';
  throw invalidArgument(`${field} "${shown(protocol, 20)}" is not valid: use tcp (the default, as reference clients get) or udp`);
}

/**
 * Request.listener_ports: none, or exactly one per connection (listener i takes
 * port i), each a port number, no port twice. Whether they are in the gateway's
 * range and free is the data server's to say.
 */
export function validateListenerPorts(list: readonly number[], numConn: number): number[] {
  if (list.length === 0) return [];
  if (list.length !== numConn) {
    throw invalidArgument(`listener_ports names ${list.length} port(s) but num_conn is ${numConn}: give one port per connection (listener i takes port i), or none to let the gateway choose`);
  }
  const seen = new Set<number>();
  for (const [i, port] of list.entries()) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalidArgument(`listener_ports[${i}] ${port} is not a port number (1-65535)`);
    if (seen.has(port)) throw invalidArgument(`listener_ports names port ${port} twice; each listener needs its own port`);
    seen.add(port);
  }
  return [...list];
}

/** Whether two requests for one uid ask for the same thing (a retry), every field compared. */
export function sameRequest(a: StreamRequest, b: StreamRequest): boolean {
  return (
    a.role === b.role &&
    a.numConn === b.numConn &&
    a.rate === b.rate &&
    (a.lifetimeS ?? 0) === (b.lifetimeS ?? 0) &&
    (a.allowFrom ?? []).join(',') === (b.allowFrom ?? []).join(',') &&
    (a.listenerPorts ?? []).join(',') === (b.listenerPorts ?? []).join(',') &&
    (a.protocol ?? 'tcp') === (b.protocol ?? 'tcp')
  );
}

/** A request's fields as a retry must repeat them, for an error message. */
export function requestFields(r: StreamRequest): string {
  return (
    `role=${r.role} num_conn=${r.numConn} rate=${r.rate}${r.lifetimeS ? ` lifetime_s=${r.lifetimeS}` : ''}` +
    (r.allowFrom ? ` allow_from=${r.allowFrom.join(',')}` : '') +
    (r.listenerPorts ? ` listener_ports=${r.listenerPorts.join(',')}` : '') +
    (r.protocol ? ` protocol=${r.protocol}` : '')
  );
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
