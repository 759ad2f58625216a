// Standing tunnels: the [[tunnel]] tables of s2cs.toml, read and checked the way
// start, check-config and a reload (SIGHUP) all need them. Each table is one stream the
// gateway keeps by itself: inbound (its listeners forward to services of this
// facility, `targets`) or outbound (its listeners forward to another gateway's
// listeners, `remote-listeners`).
import { readFileSync } from 'node:fs';
import { validateAllowList } from '../../protocol/cidr.js';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ConfigError, readTableArray } from '../../config-file.js';
import { formatAddress, parseAddress, type Address } from '../../protocol/address.js';
import { validateCredentials, MAX_ADDRESSES } from '../../protocol/validate.js';
import type { StreamCredentials } from '../../transport/index.js';
import type { PortRange } from '../../s2ds/index.js';
import { parseRate } from '../../units.js';

export type TunnelDirection = 'inbound' | 'outbound';

/** One [[tunnel]] table, checked. */
export interface TunnelSpec {
  /** Its name, also the stream's uid (so status and logs read the same across restarts). */
  name: string;
  direction: TunnelDirection;
  /** inbound: the services it forwards to; outbound: the remote listeners. */
  targets: Address[];
  numConn: number;
  /** Its stated rate, kB/s (Request.rate; held to it under --rate-policy cap or reserve); 0: none. */
  rate: number;
  /** Ports its listeners take (within --port-range); absent: the gateway picks. */
  listenerPorts?: number[];
  /** Who may connect to its listeners (CIDRs); absent: the gateway's bound only. */
  allowFrom?: string[];
  /** The WAN leg's TLS credentials (peer-cert given); absent: plain TCP. */
  credentials?: StreamCredentials;
}

/** What the tunnels are checked against: the gateway's settings. */
export interface TunnelContext {
  portRange: PortRange;
  maxConn: number;
  /** Whether a leg without credentials is accepted (loopback data listeners, or --allow-plaintext-data). */
  plaintextAccepted: boolean;
  /** The gateway's own certificate and key (--tls-cert, --tls-key): the default of a tunnel's cert and key. */
  tlsCert?: string;
  tlsKey?: string;
}

/** The owner a standing tunnel's stream is shown with. */
export function tunnelOwner(name: string): string {
  return `config:${name}`;
}

const KEYS = ['name', 'targets', 'remote-listeners', 'num-conn', 'rate', 'listener-ports', 'allow-from', 'peer-cert', 'cert', 'key'] as const;
type Key = (typeof KEYS)[number];

const NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** The [[tunnel]] tables of `file`, checked; ConfigError (one line, naming the tunnel and the key) at the first problem. */
export function readTunnels(file: string, ctx: TunnelContext): TunnelSpec[] {
  const tables = readTableArray(file, 'tunnel');
  const specs = tables.map((t, i) => tunnelOf(file, t, i, ctx));
  const names = new Set<string>();
  const ports = new Map<number, string>();
  for (const s of specs) {
    if (names.has(s.name)) throw new ConfigError(`${file}: [[tunnel]] name = "${s.name}" is given twice; each tunnel needs a name of its own`);
    names.add(s.name);
    for (const p of s.listenerPorts ?? []) {
      const held = ports.get(p);
      if (held !== undefined) throw new ConfigError(`${file}: [[tunnel]] "${s.name}": listener-ports ${p} is also a port of tunnel "${held}"; give each port to one tunnel`);
      ports.set(p, s.name);
    }
  }
  return specs;
}

function tunnelOf(file: string, t: Record<string, unknown>, index: number, ctx: TunnelContext): TunnelSpec {
  const raw = new Map<Key, unknown>();
  const label = typeof t.name === 'string' ? `"${t.name}"` : `#${index + 1}`;
  const fail = (why: string): never => {
    throw new ConfigError(`${file}: [[tunnel]] ${label}: ${why}`);
  };
  for (const [k, v] of Object.entries(t)) {
    const key = k.replace(/_/g, '-') as Key;
    if (!KEYS.includes(key)) fail(`unknown key ${k} (a tunnel takes ${KEYS.join(', ')})`);
    if (raw.has(key)) fail(`${key} is given twice`);
    raw.set(key, v);
  }
  const name = raw.get('name');
  if (typeof name !== 'string' || !NAME.test(name)) fail('needs a name of 1-128 characters of A-Z a-z 0-9 . _ - (it is the stream\'s uid in status and logs)');
  const inbound = raw.get('targets');
  const outbound = raw.get('remote-listeners');
  if ((inbound === undefined) === (outbound === undefined)) {
    fail('give either targets (inbound: the services of this facility its listeners forward to) or remote-listeners (outbound: the other gateway\'s listeners), not both');
  }
  const direction: TunnelDirection = inbound !== undefined ? 'inbound' : 'outbound';
  const targetsKey = direction === 'inbound' ? 'targets' : 'remote-listeners';
  const targets = addresses(inbound ?? outbound, targetsKey, fail);
  const listenerPorts = raw.has('listener-ports') ? ports(raw.get('listener-ports'), ctx.portRange, fail) : undefined;
  const numConn = raw.has('num-conn') ? raw.get('num-conn') : (listenerPorts?.length ?? targets.length);
  if (typeof numConn !== 'number' || !Number.isInteger(numConn) || numConn < 1 || numConn > ctx.maxConn) {
    fail(`num-conn ${String(numConn)} is out of range: this gateway takes 1 to ${ctx.maxConn} connections per stream (--max-conn)`);
  }
  if (listenerPorts && listenerPorts.length !== numConn) fail(`listener-ports names ${listenerPorts.length} port(s) and num-conn is ${String(numConn)}: give one port per connection`);
  const rate = raw.has('rate') ? rateOf(raw.get('rate'), fail) : 0;
  const allowFrom = raw.has('allow-from') ? cidrs(raw.get('allow-from'), fail) : undefined;
  const credentials = credentialsOf(file, raw, ctx, fail);
  if (!credentials && !ctx.plaintextAccepted) {
    fail(
      'has no peer-cert, so its WAN leg would be plain TCP, and this gateway\'s data listeners are not on loopback: ' +
        "give peer-cert (the other gateway's certificate; with cert and key, or the gateway's --tls-cert and --tls-key) for a TLS leg, or start s2cs with --allow-plaintext-data",
    );
  }
  const spec: TunnelSpec = { name: name as string, direction, targets, numConn: numConn as number, rate };
  if (listenerPorts) spec.listenerPorts = listenerPorts;
  if (allowFrom) spec.allowFrom = allowFrom;
  if (credentials) spec.credentials = credentials;
  return spec;
}

/** A list of host:port (a TOML list, or one comma-separated string). */
function addresses(v: unknown, key: string, fail: (why: string) => never): Address[] {
  const items = typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter((s) => s !== '') : v;
  if (!Array.isArray(items) || items.length === 0 || !items.every((x) => typeof x === 'string')) fail(`${key} expects a list of host:port, e.g. ["10.0.0.5:5001"]`);
  const list = items as string[];
  if (list.length > MAX_ADDRESSES) fail(`${key} has ${list.length} addresses; at most ${MAX_ADDRESSES}`);
  return list.map((a, i) => {
    try {
      return parseAddress(a, `${key}[${i}]`);
    } catch (err) {
      return fail((err as Error).message);
    }
  });
}

/** As s2uc --rate: kB/s as a plain number, or with a unit ("200Mbit/s"). */
function rateOf(v: unknown, fail: (why: string) => never): number {
  if (typeof v !== 'string' && typeof v !== 'number') return fail('rate expects kB/s as a number, or a rate with a unit such as "200Mbit/s"');
  try {
    return parseRate(String(v));
  } catch (err) {
    return fail(`rate: ${(err as Error).message}`);
  }
}

function ports(v: unknown, range: PortRange, fail: (why: string) => never): number[] {
  if (!Array.isArray(v) || v.length === 0) fail('listener-ports expects a list of ports, e.g. [5100, 5101]');
  const seen = new Set<number>();
  for (const p of v as unknown[]) {
    if (typeof p !== 'number' || !Number.isInteger(p)) fail(`listener-ports: ${JSON.stringify(p)} is not a port number`);
    const port = p as number;
    if (port < range.first || port > range.last) fail(`listener-ports ${port} is outside this gateway's --port-range ${range.first}-${range.last}`);
    if (seen.has(port)) fail(`listener-ports names ${port} twice`);
    seen.add(port);
  }
  return [...seen];
}

/** CIDRs (an address alone is its own /32 or /128), checked; kept as written. */
function cidrs(v: unknown, fail: (why: string) => never): string[] {
  const items = typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter((s) => s !== '') : v;
  if (!Array.isArray(items) || items.length === 0) fail('allow-from expects a list of addresses or CIDRs, e.g. ["198.51.100.0/24"]');
  for (const c of items as unknown[]) if (typeof c !== 'string') fail(`allow-from: ${JSON.stringify(c)} is not an address or CIDR`);
  try {
    // The canonical form a request's allow_from takes, so a taken-back stream compares equal.
    return validateAllowList(items as string[], 'allow-from');
  } catch (err) {
    return fail((err as Error).message);
  }
}

/** peer-cert (with cert and key, or the gateway's own): the TLS leg's credentials, checked as UpdateTargets checks them. */
function credentialsOf(file: string, raw: Map<Key, unknown>, ctx: TunnelContext, fail: (why: string) => never): StreamCredentials | undefined {
  const peer = raw.get('peer-cert');
  if (peer === undefined) {
    if (raw.has('cert') || raw.has('key')) fail('cert and key are this gateway\'s side of a TLS leg: give peer-cert (the other gateway\'s certificate) too');
    return undefined;
  }
  const baseDir = dirname(resolve(file));
  const path = (key: Key, fallback: string | undefined, flag: string): string => {
    const v = raw.get(key) ?? fallback;
    if (v === undefined) fail(`peer-cert needs this gateway's ${key} for the TLS leg: give ${key} here, or start s2cs with ${flag}`);
    if (typeof v !== 'string' || v === '') fail(`${key} expects a file name`);
    return isAbsolute(v as string) ? (v as string) : resolve(baseDir, v as string);
  };
  const read = (key: Key, p: string): string => {
    try {
      return readFileSync(p, 'utf8');
    } catch (err) {
      return fail(`${key} ${p}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  const peerFile = path('peer-cert', undefined, '');
  const certFile = path('cert', ctx.tlsCert, '--tls-cert');
  const keyFile = path('key', ctx.tlsKey, '--tls-key');
  const fields = { certificate: read('cert', certFile), private_key: read('key', keyFile), peer_certificate: read('peer-cert', peerFile) };
  try {
    return validateCredentials(fields, 'tunnel');
  } catch (err) {
    const named = (err as Error).message.replace('tunnel.certificate', `cert ${certFile}`).replace('tunnel.private_key', `key ${keyFile}`).replace('tunnel.peer_certificate', `peer-cert ${peerFile}`);
    return fail(named);
  }
}

/** Whether two specs set up the same stream (a reload leaves it alone). */
export function sameTunnel(a: TunnelSpec, b: TunnelSpec): boolean {
  return JSON.stringify(shape(a)) === JSON.stringify(shape(b));
}

function shape(s: TunnelSpec): unknown {
  return { ...s, targets: s.targets.map(formatAddress) };
}
