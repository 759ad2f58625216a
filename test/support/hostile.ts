// Hostile inputs for s2cs, shared by the CI suite (test/hostile) and the soak (bench/soak.ts):
// a seeded PRNG, generators of control messages over every rpc and field, a raw protobuf
// writer for what the typed client would not encode, and the bookkeeping of what came back.
// Everything is reproducible from one seed: SCISTREAM_FUZZ_SEED=<n>.
import { readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { spawnCli, freePortRange, type Proc } from '../../src/demo/procs.js';
import { ControlConnection, RemoteError } from '../../src/protocol/client.js';

// ---------------------------------------------------------------- seeded PRNG

/** The seed of this run: SCISTREAM_FUZZ_SEED when set (to replay a failure), else a fresh one. */
export function fuzzSeed(env: NodeJS.ProcessEnv = process.env): number {
  const given = env.SCISTREAM_FUZZ_SEED;
  if (given !== undefined && given !== '') {
    const n = Number(given);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`SCISTREAM_FUZZ_SEED=${given} is not a whole number 0..4294967295`);
    return n;
  }
  return (Date.now() ^ (process.pid << 16) ^ Math.floor(Math.random() * 0x7fffffff)) >>> 0;
}

/** mulberry32: small, fast, and the same sequence on every machine for one seed. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  float(): number {
    return this.u32() / 0x100000000;
  }
  /** Whole number in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.float() < p;
  }
  pick<T>(list: readonly T[]): T {
    return list[this.int(0, list.length - 1)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      for (let j = 0; j < 4 && i + j < n; j++) b[i + j] = (v >>> (8 * j)) & 0xff;
    }
    return b;
  }
  /** A child generator, so that one part's draws do not shift another's. */
  fork(): Rng {
    return new Rng(this.u32());
  }
}

// ---------------------------------------------------------------- text

const GRINNING = '\u{1F600}';
/** Pieces known to break code that handles text as UTF-16 units, bytes, URIs or lines. */
const NASTY = [
  GRINNING.repeat(40) + 'a', // the reported crash: a surrogate pair cut by slice()
  GRINNING,
  '\u{10FFFF}',
  '\u{1D11E}', // musical symbol G clef
  '\uD83D', // lone high surrogate
  '\uDE00', // lone low surrogate
  '\uDE00\uD83D', // pair in the wrong order
  '\0',
  '\0\0\0',
  '\r\n',
  '\n',
  '\t',
  '\x1b[31m',
  '\x7f',
  '\u0085',
  '\u2028\u2029',
  '\uFEFF',
  '\u202E', // right-to-left override
  '\u200D\u200B',
  'e\u0301\u0301\u0301',
  '%',
  '%E0%A4%A',
  '%00',
  '%ZZ',
  '\\',
  '"',
  "'",
  '${x}',
  '../../',
  '{"a":',
  '<script>',
  'ＰＲＯＤ',
  'İı',
  'ß',
  '\uFFFD',
  '\uFFFF',
  '\uFFFE',
];

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-';

function randomCodePoint(rng: Rng): string {
  switch (rng.int(0, 5)) {
    case 0:
      return String.fromCodePoint(rng.int(0x20, 0x7e));
    case 1:
      return String.fromCodePoint(rng.int(0, 0x1f));
    case 2:
      return String.fromCodePoint(rng.int(0x80, 0xd7ff));
    case 3:
      return String.fromCodePoint(rng.int(0x10000, 0x10ffff)); // astral planes
    case 4:
      return String.fromCharCode(rng.int(0xd800, 0xdfff)); // lone surrogate
    default:
      return String.fromCodePoint(rng.int(0xe000, 0xfffd));
  }
}

/** A short text of random code points, lone surrogates and known-bad pieces. */
export function hostileText(rng: Rng, maxUnits = 200): string {
  let s = '';
  const target = rng.int(0, maxUnits);
  while (s.length < target) s += rng.chance(0.15) ? rng.pick(NASTY) : randomCodePoint(rng);
  // Astral characters right where messages are cut (index 36..40 and 128): the slice() bug.
  if (rng.chance(0.2)) s = ALNUM.slice(0, rng.int(15, 40)) + GRINNING.repeat(rng.int(1, 50)) + s;
  return s;
}

export function validUid(rng: Rng): string {
  let s = '';
  const n = rng.chance(0.05) ? 128 : rng.int(1, 40);
  for (let i = 0; i < n; i++) s += ALNUM[rng.int(0, ALNUM.length - 1)];
  return s;
}

/** A string too long for every field; sizes around the gRPC message limit (4 MiB) and beyond it. */
export function hugeText(rng: Rng): string {
  const size = rng.pick([64 * 1024, 1024 * 1024, 4 * 1024 * 1024 - 64, 4 * 1024 * 1024 + 64, 6 * 1024 * 1024]);
  const unit = rng.pick(['a', GRINNING, '\0', 'é']);
  return unit.repeat(Math.max(1, Math.floor(size / Buffer.byteLength(unit))));
}

const HUGE_P = 0.002;

function anyText(rng: Rng, pool: string[]): string {
  const r = rng.float();
  if (r < HUGE_P) return hugeText(rng);
  if (r < 0.35) return rng.pick(pool);
  if (r < 0.45) return validUid(rng);
  if (r < 0.5) return '';
  if (r < 0.52) return 'x'.repeat(rng.pick([127, 128, 129, 4096, 70_000]));
  return hostileText(rng);
}

// ---------------------------------------------------------------- fields

export const ODD_ADDRESSES = [
  '[::1]:0',
  '[::1]:1',
  'host:99999',
  'a:-1',
  'a:',
  ':80',
  ':',
  '',
  '::1:80', // IPv6 without brackets
  'fe80::1%eth0:80',
  '[fe80::1%25eth0]:80',
  '[::1',
  '::1]:80',
  '[]:80',
  '127.0.0.1:0',
  '127.0.0.1:65535',
  '127.0.0.1:65536',
  '127.0.0.1:0x50',
  '127.0.0.1:+80',
  '127.0.0.1: 80',
  '127.0.0.1:80 ',
  ' 127.0.0.1:80',
  '127.0.0.1:1e3',
  '127.0.0.1:80:80',
  '256.256.256.256:80',
  '0.0.0.0:80',
  '255.255.255.255:80',
  'localhost:80',
  'a'.repeat(300) + ':80',
  ('a'.repeat(63) + '.').repeat(5) + 'com:80',
  'bücher.example:80',
  '\u{1F600}.example:80',
  GRINNING.repeat(40) + 'a:80',
  'xn--bcher-kva.example:80',
  'host\0name:80',
  'host\nname:80',
  'http://host:80',
  'host:80/path',
  'user@host:80',
  '127.0.0.1:00080',
  '127.0.0.1:' + '9'.repeat(400),
];

function oddAddress(rng: Rng, pool: string[]): string {
  const r = rng.float();
  if (r < 0.4) return rng.pick(ODD_ADDRESSES);
  if (r < 0.6) return `127.0.0.1:${rng.int(1, 65535)}`;
  if (r < 0.65) return `[::1]:${rng.int(1, 65535)}`;
  if (r < 0.9) return `${hostileText(rng, 40)}:${rng.int(-5, 70000)}`;
  return anyText(rng, pool);
}

function addressList(rng: Rng, pool: string[]): string[] {
  const r = rng.float();
  const n = r < 0.1 ? 0 : r < 0.9 ? rng.int(1, 6) : r < 0.98 ? rng.int(7, 200) : rng.pick([4096, 4097, 6000]);
  return Array.from({ length: n }, () => oddAddress(rng, pool));
}

const ROLES = ['PROD', 'CONS', '', 'prod', 'cons', 'Prod', 'PROD\0', ' PROD', 'CONS ', 'PRODUCER', 'ＰＲＯＤ', 'ᴾᴿᴼᴰ', 'PROD,CONS', 'PROD'.repeat(1000), 'CONS\u{1F600}', '\u{1F600}'.repeat(40) + 'a'];

function oddRole(rng: Rng, pool: string[]): string {
  const r = rng.float();
  if (r < 0.35) return rng.pick(['PROD', 'CONS']);
  if (r < 0.75) return rng.pick(ROLES);
  return anyText(rng, pool);
}

/** A number for an int32 field, from the typed client's point of view (it truncates what does not fit). */
function oddInt(rng: Rng): number {
  return rng.pick([0, 1, 2, 3, -1, -2, 64, 65, 4096, 4097, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 32, 2 ** 53, -(2 ** 53), 1.5, -0.5, rng.int(-1000, 1000), rng.int(1, 8)]);
}

const PEM_CERT = (body: string) => `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
const PEM_KEY = (body: string) => `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`;

function garbagePem(rng: Rng, wrap: (b: string) => string): string {
  switch (rng.int(0, 6)) {
    case 0:
      return wrap(rng.bytes(rng.int(0, 2000)).toString('base64'));
    case 1:
      return wrap(hostileText(rng, 300));
    case 2:
      return wrap('A'.repeat(16 * 1024));
    case 3:
      return wrap(rng.bytes(rng.int(0, 600)).toString('base64')).repeat(rng.int(2, 5));
    case 4:
      return '-----BEGIN CERTIFICATE-----\n' + rng.bytes(300).toString('base64');
    case 5:
      return rng.bytes(rng.int(1, 1000)).toString('latin1');
    default:
      return 'x'.repeat(16 * 1024 + 1);
  }
}

interface Creds {
  certificate: string;
  private_key: string;
  peer_certificate: string;
}

function oddCredentials(rng: Rng, pool: string[]): Creds | null {
  if (rng.chance(0.5)) return null;
  const field = (wrap: (b: string) => string) => (rng.chance(0.8) ? garbagePem(rng, wrap) : anyText(rng, pool));
  return { certificate: field(PEM_CERT), private_key: field(PEM_KEY), peer_certificate: field(PEM_CERT) };
}

// ---------------------------------------------------------------- messages

export const RPCS = ['req', 'update', 'release', 'hello', 'status', 'capabilities'] as const;
export type Rpc = (typeof RPCS)[number];

/** One message to send: typed (through ControlConnection) or raw protobuf bytes. */
export type FuzzItem =
  | { kind: 'typed'; rpc: Rpc; msg: Record<string, unknown> }
  | { kind: 'raw'; rpc: Rpc; bytes: Buffer; note: string; decodable: boolean }
  | { kind: 'method'; path: string; bytes: Buffer };

/**
 * Answers each rpc may give, and why. Anything else (INTERNAL, UNKNOWN, a dropped
 * connection) is a failure of the suite. Shared by the suite and the soak.
 */
export const ALLOWED: Record<Rpc, readonly string[]> = {
  // ABORTED: the stream was released while its req waited for the producer's Hello.
  // DEADLINE_EXCEEDED: a PROD req with no Hello within --hello-timeout (or the call's deadline).
  req: ['OK', 'INVALID_ARGUMENT', 'ALREADY_EXISTS', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'ABORTED', 'FAILED_PRECONDITION', 'PERMISSION_DENIED', 'UNAUTHENTICATED'],
  // NOT_FOUND: no such stream; FAILED_PRECONDITION: wrong role, or no credentials on a gateway that requires them.
  update: ['OK', 'INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'FAILED_PRECONDITION', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'PERMISSION_DENIED', 'UNAUTHENTICATED'],
  release: ['OK', 'INVALID_ARGUMENT', 'NOT_FOUND', 'FAILED_PRECONDITION', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'PERMISSION_DENIED', 'UNAUTHENTICATED'],
  // DEADLINE_EXCEEDED: no req for the uid within --hello-timeout; ABORTED: released while the CONS Hello waited.
  hello: ['OK', 'INVALID_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'FAILED_PRECONDITION', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'ABORTED', 'PERMISSION_DENIED', 'UNAUTHENTICATED'],
  status: ['OK', 'INVALID_ARGUMENT', 'NOT_FOUND', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED', 'PERMISSION_DENIED', 'UNAUTHENTICATED'],
  // No token and no state: only bytes that are not its message are refused.
  capabilities: ['OK', 'INVALID_ARGUMENT'],
};
/**
 * Bytes that are not the rpc's protobuf message get INVALID_ARGUMENT from s2cs
 * (its service decodes requests tolerantly; grpc-js alone would answer INTERNAL).
 * Bytes the generator meant as garbage may still decode (protobuf is lenient), and
 * are then judged as that rpc's answers.
 */
export const UNDECODABLE_ALLOWED = ['INVALID_ARGUMENT', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED'];
/** A method the service does not have. */
export const UNKNOWN_METHOD_ALLOWED = ['UNIMPLEMENTED', 'RESOURCE_EXHAUSTED', 'DEADLINE_EXCEEDED'];

/** A pool of valid uids, so that generated messages also reach the stateful paths (req, Hello, update, release of one stream). */
export function uidPool(rng: Rng, n = 40): string[] {
  return Array.from({ length: n }, (_, i) => `fz${i}-${validUid(rng).slice(0, 20)}`);
}

export function typedMessage(rng: Rng, rpc: Rpc, pool: string[]): Record<string, unknown> {
  // Validation stops at the first bad field, so most of the time only one field is hostile
  // and the rest valid: that carries the hostile one to the deeper checks (credentials,
  // addresses, the stream table).
  const base = validMessage(rng, rpc, pool);
  if (rng.chance(0.25)) return base;
  const wild = wildMessage(rng, rpc, pool);
  if (rng.chance(0.3)) return wild;
  const keys = Object.keys(wild);
  const k = rng.pick(keys);
  return { ...base, [k]: wild[k] };
}

function validMessage(rng: Rng, rpc: Rpc, pool: string[]): Record<string, unknown> {
  const uid = rng.pick(pool);
  const role = rng.pick(['PROD', 'CONS']);
  const listeners = () => Array.from({ length: rng.int(1, 3) }, () => `127.0.0.1:${rng.int(1024, 65535)}`);
  switch (rpc) {
    case 'req':
      return { uid, role, num_conn: rng.int(1, 3), rate: rng.chance(0.8) ? 0 : rng.int(1, 1000) };
    case 'update':
      return { uid, remote_listeners: listeners(), role: rng.pick([role, '']) };
    case 'release':
      return { uid };
    case 'hello':
      return { uid, prod_listeners: role === 'PROD' ? listeners() : [], role, app_secret: '' };
    case 'status':
      return { uid: rng.chance(0.5) ? '' : uid };
    case 'capabilities':
      return {};
  }
}

function wildMessage(rng: Rng, rpc: Rpc, pool: string[]): Record<string, unknown> {
  const uid = () => anyText(rng, pool);
  switch (rpc) {
    case 'req':
      return { uid: uid(), role: oddRole(rng, pool), num_conn: oddInt(rng), rate: oddInt(rng) };
    case 'update':
      return { uid: uid(), remote_listeners: addressList(rng, pool), role: oddRole(rng, pool), credentials: oddCredentials(rng, pool) ?? undefined };
    case 'release':
      return { uid: uid() };
    case 'hello':
      return { uid: uid(), prod_listeners: addressList(rng, pool), role: oddRole(rng, pool), app_secret: rng.chance(0.5) ? '' : anyText(rng, pool) };
    case 'status':
      return { uid: rng.chance(0.3) ? '' : uid() };
    case 'capabilities':
      return {};
  }
}

// ---------------------------------------------------------------- raw protobuf

/** A minimal protobuf writer that writes whatever it is told: invalid UTF-8, duplicates, wrong wire types, 64-bit values in int32 fields. */
export class Proto {
  private parts: Buffer[] = [];
  static varint(v: bigint): Buffer {
    let x = BigInt.asUintN(64, v);
    const out: number[] = [];
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x > 0n) b |= 0x80;
      out.push(b);
    } while (x > 0n);
    return Buffer.from(out);
  }
  tag(field: number, wire: number): this {
    this.parts.push(Proto.varint(BigInt(field) * 8n + BigInt(wire)));
    return this;
  }
  uint(field: number, v: bigint): this {
    return this.tag(field, 0).raw(Proto.varint(v));
  }
  bytes(field: number, b: Buffer | string): this {
    const buf = typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
    return this.tag(field, 2).raw(Proto.varint(BigInt(buf.length))).raw(buf);
  }
  raw(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** Byte strings that are not valid UTF-8: protobufjs on the server has to cope with them in string fields. */
function badUtf8(rng: Rng): Buffer {
  const pieces = [
    Buffer.from([0xff]),
    Buffer.from([0xc0, 0x80]), // overlong NUL
    Buffer.from([0xe0, 0x80]), // truncated
    Buffer.from([0xed, 0xa0, 0x80]), // encoded surrogate (CESU)
    Buffer.from([0xf4, 0x90, 0x80, 0x80]), // beyond U+10FFFF
    Buffer.from([0xf0, 0x9f, 0x98]), // a truncated U+1F600
    Buffer.from([0x80, 0x80, 0x80]),
    Buffer.from('ok', 'utf8'),
    rng.bytes(rng.int(1, 30)),
  ];
  return Buffer.concat(Array.from({ length: rng.int(1, 6) }, () => rng.pick(pieces)));
}

const FIELD_STRINGS: Record<Rpc, number[]> = { req: [1, 2], update: [1, 2, 3], release: [1], hello: [1, 2, 3, 16], status: [1], capabilities: [] };
const FIELD_INTS: Record<Rpc, number[]> = { req: [3, 4], update: [], release: [], hello: [], status: [], capabilities: [] };

/**
 * A raw message: well-formed protobuf with what the typed client would refuse or
 * normalise (invalid UTF-8, duplicated fields, 64-bit values in int32 fields, unknown
 * fields, a credentials message repeated), or bytes that are not protobuf at all.
 */
export function rawMessage(rng: Rng, rpc: Rpc, pool: string[]): { bytes: Buffer; note: string; decodable: boolean } {
  const p = new Proto();
  const kind = rng.int(0, 9);
  const str = (): Buffer => (rng.chance(0.5) ? badUtf8(rng) : Buffer.from(anyText(rng, pool).slice(0, 5000), 'utf8'));
  switch (kind) {
    case 0:
    case 1:
    case 2: {
      // Every string field, some twice or more (proto3: last one wins, repeated ones add up).
      for (const f of FIELD_STRINGS[rpc]) for (let i = rng.int(1, 3); i > 0; i--) p.bytes(f, str());
      for (const f of FIELD_INTS[rpc]) for (let i = rng.int(1, 2); i > 0; i--) p.uint(f, rng.pick([-1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 32n + 1n, 2n ** 31n, 0n, 1n, BigInt(rng.int(0, 100))]));
      return { bytes: p.build(), note: 'bad UTF-8 / duplicated fields / 64-bit ints', decodable: true };
    }
    case 3: {
      // Duplicated valid fields: a valid uid then a hostile one, and the reverse.
      const u = rng.pick(pool);
      if (rng.chance(0.5)) p.bytes(1, u).bytes(1, str());
      else p.bytes(1, str()).bytes(1, u);
      if (rpc === 'req') p.bytes(2, 'CONS').bytes(2, 'PROD').uint(3, 1n).uint(3, 2n);
      if (rpc === 'update' || rpc === 'hello') p.bytes(2, '127.0.0.1:9').bytes(3, 'PROD').bytes(3, 'CONS');
      return { bytes: p.build(), note: 'duplicated fields', decodable: true };
    }
    case 4: {
      // Unknown fields of every wire type that protobufjs can skip.
      p.bytes(1, rng.pick(pool)).uint(99, 5n).bytes(1000, rng.bytes(10)).tag(77, 1).raw(rng.bytes(8)).tag(78, 5).raw(rng.bytes(4));
      return { bytes: p.build(), note: 'unknown fields', decodable: true };
    }
    case 5: {
      // Credentials (field 16) sent twice with different garbage: proto3 merges sub-messages.
      if (rpc !== 'update') return rawMessage(rng, rpc, pool);
      p.bytes(1, rng.pick(pool)).bytes(2, '127.0.0.1:9');
      for (let i = rng.int(2, 3); i > 0; i--) {
        p.bytes(16, new Proto().bytes(1, garbagePem(rng, PEM_CERT)).bytes(2, badUtf8(rng)).bytes(3, garbagePem(rng, PEM_CERT)).build());
      }
      return { bytes: p.build(), note: 'credentials twice', decodable: true };
    }
    case 6:
      return { bytes: rng.bytes(rng.int(0, 200)), note: 'random bytes', decodable: false };
    case 7: {
      // A length that runs past the end of the message.
      p.tag(1, 2).raw(Proto.varint(BigInt(rng.int(10, 2 ** 30)))).raw(rng.bytes(rng.int(0, 5)));
      return { bytes: p.build(), note: 'truncated length-delimited field', decodable: false };
    }
    case 8: {
      // Wire types 3, 4 (groups), 6 and 7 (invalid) on known fields.
      p.tag(rng.pick(FIELD_STRINGS[rpc].length > 0 ? FIELD_STRINGS[rpc] : [1]), rng.pick([3, 4, 6, 7])).raw(rng.bytes(rng.int(0, 8)));
      return { bytes: p.build(), note: 'invalid wire type', decodable: false };
    }
    default: {
      // A varint that never ends.
      p.tag(1, 0).raw(Buffer.alloc(rng.int(11, 40), 0xff));
      return { bytes: p.build(), note: 'endless varint', decodable: false };
    }
  }
}

/** Messages for every rpc: mostly typed, some raw, a few to methods the service does not have. */
export function* messages(rng: Rng, count: number, pool: string[]): Generator<FuzzItem> {
  for (let i = 0; i < count; i++) {
    const rpc = RPCS[i % RPCS.length]!; // every rpc gets its share
    const r = rng.float();
    if (r < 0.8) yield { kind: 'typed', rpc, msg: typedMessage(rng, rpc, pool) };
    else if (r < 0.995) yield { kind: 'raw', rpc, ...rawMessage(rng, rpc, pool) };
    else yield { kind: 'method', path: rng.pick(['/scistream.Control/Req', '/scistream.Control/', '/x/y', `/scistream.Control/${hostileText(rng, 10).replace(/[^\x21-\x7e]/g, 'x')}`]), bytes: rng.bytes(rng.int(0, 40)) };
  }
}

/** A printable, bounded description of an item, for failure reports: code points escaped, long strings cut. */
export function describeItem(item: FuzzItem): string {
  if (item.kind === 'method') return `method ${item.path} bytes=${item.bytes.toString('hex')}`;
  if (item.kind === 'raw') return `raw ${item.rpc} (${item.note}) bytes=${item.bytes.subarray(0, 400).toString('hex')}${item.bytes.length > 400 ? `... (${item.bytes.length} bytes)` : ''}`;
  return `${item.rpc} ${JSON.stringify(item.msg, (_k, v: unknown) => (typeof v === 'string' ? escapeText(v) : Array.isArray(v) && v.length > 8 ? [...v.slice(0, 8), `... ${v.length} items`] : v))}`;
}

function escapeText(s: string): string {
  const head = s.length > 120 ? s.slice(0, 120) : s;
  let out = '';
  for (let i = 0; i < head.length; i++) {
    const c = head.charCodeAt(i);
    out += c >= 0x20 && c < 0x7f ? head[i] : `\\u${c.toString(16).padStart(4, '0')}`;
  }
  return s.length > 120 ? `${out}... (${s.length} UTF-16 units)` : out;
}

// ---------------------------------------------------------------- sending and tallying

export interface Answer {
  code: string;
  details: string;
}

const codeName = (code: number): string => grpc.status[code] ?? `code ${code}`;

/** Connections to one s2cs: the typed client and a raw one that sends bytes as they are. */
export class Sender {
  readonly typed: ControlConnection;
  private readonly raw: grpc.Client;
  constructor(
    address: string,
    credentials: grpc.ChannelCredentials,
    private readonly deadlineMs: number,
  ) {
    this.typed = new ControlConnection(address, { insecure: false, credentials, deadlineMs });
    // grpc-js reuses one channel per target and options; a distinct option keeps these apart.
    this.raw = new grpc.Client(address, credentials, { 'grpc.max_send_message_length': -1, 'scistream.fuzz.raw': 1 });
  }

  async send(item: FuzzItem): Promise<Answer> {
    if (item.kind === 'typed') {
      try {
        await this.typedCall(item.rpc, item.msg);
        return { code: 'OK', details: '' };
      } catch (err) {
        // grpc-js fails a call whose message it cannot serialise with a local INTERNAL: nothing was sent.
        if (err instanceof RemoteError && !/serialization failure/i.test(err.details)) return { code: codeName(err.code), details: err.details };
        // The typed client refused to encode: nothing was sent.
        return { code: 'CLIENT_REFUSED', details: (err as Error).message };
      }
    }
    const path = item.kind === 'raw' ? `/scistream.Control/${item.rpc}` : item.path;
    return this.rawCall(path, item.bytes);
  }

  private typedCall(rpc: Rpc, msg: Record<string, unknown>): Promise<unknown> {
    const c = this.typed as unknown as Record<Rpc, (m: unknown) => Promise<unknown>>;
    return c[rpc].call(this.typed, msg);
  }

  rawCall(path: string, bytes: Buffer): Promise<Answer> {
    return new Promise((resolve) => {
      this.raw.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        new grpc.Metadata(),
        { deadline: Date.now() + this.deadlineMs },
        (err) => resolve(err ? { code: codeName(err.code ?? grpc.status.UNKNOWN), details: err.details ?? '' } : { code: 'OK', details: '' }),
      );
    });
  }

  close(): void {
    this.typed.close();
    this.raw.close();
  }
}

/** What came back, by rpc and status; and every answer outside the table. */
export class Tally {
  sent = 0;
  clientRefused = 0;
  readonly byCode = new Map<string, number>();
  readonly byRpc = new Map<string, Map<string, number>>();
  readonly violations: string[] = [];
  /** Answers whose details carry C0 control characters (NUL, ESC, ...) taken from the input. */
  controlEchoes = 0;
  controlEchoExample = '';

  record(item: FuzzItem, a: Answer): void {
    if (a.code === 'CLIENT_REFUSED') {
      this.clientRefused++;
      return;
    }
    this.sent++;
    const rpc = item.kind === 'method' ? 'unknown-method' : item.rpc;
    this.byCode.set(a.code, (this.byCode.get(a.code) ?? 0) + 1);
    const m = this.byRpc.get(rpc) ?? new Map<string, number>();
    m.set(a.code, (m.get(a.code) ?? 0) + 1);
    this.byRpc.set(rpc, m);
    // grpc-js's own UNIMPLEMENTED answer quotes the (percent-decoded) path: not s2cs text.
    if (item.kind !== 'method' && /[\x00-\x08\x0b-\x1f\x7f]/.test(a.details)) {
      if (this.controlEchoes++ === 0) this.controlEchoExample = `${JSON.stringify(a.details.slice(0, 160))} for ${describeItem(item).slice(0, 300)}`;
    }
    const problem = judge(item, a);
    if (problem && this.violations.length < 50) this.violations.push(`${problem}\n    input: ${describeItem(item)}`);
  }

  summary(): string {
    const codes = [...this.byCode].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c}=${n}`).join(' ');
    const rpcs = [...this.byRpc].map(([r, m]) => `  ${r}: ${[...m].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c}=${n}`).join(' ')}`).join('\n');
    return (
      `messages sent: ${this.sent} (typed client refused to encode ${this.clientRefused} more)\nstatuses: ${codes}\n${rpcs}\n` +
      `details echoing control characters: ${this.controlEchoes}${this.controlEchoes ? `, e.g. ${this.controlEchoExample}` : ''}`
    );
  }
}

/** Why an answer is outside the contract, or undefined when it is fine. */
export function judge(item: FuzzItem, a: Answer): string | undefined {
  const allowed =
    item.kind === 'method' ? UNKNOWN_METHOD_ALLOWED : item.kind === 'raw' && !item.decodable ? [...new Set([...UNDECODABLE_ALLOWED, ...ALLOWED[item.rpc]])] : ALLOWED[item.rpc];
  if (!allowed.includes(a.code)) {
    return `${item.kind === 'method' ? item.path : item.rpc} answered ${a.code} (${JSON.stringify(a.details)}), not one of ${allowed.join(' ')}`;
  }
  const bad = badDetails(a.details);
  if (bad) return `status details ${bad}: ${JSON.stringify(a.details.slice(0, 200))}`;
  return undefined;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Status details must be text a client can show: a string, well-formed UTF-16 (a lone
 * surrogate is what made grpc-js throw URIError), bounded. Control characters echoed from
 * the input are counted apart (Tally.controlEchoes): grpc-js percent-encodes them, so they are
 * safe on the wire, but a client that prints details shows them (ESC sequences included).
 */
export function badDetails(d: string): string | undefined {
  if (typeof d !== 'string') return 'are not a string';
  if (LONE_SURROGATE.test(d)) return 'hold a lone surrogate';
  if (d.length > 8192) return `are ${d.length} characters long`;
  return undefined;
}

/** Sends every item with at most `concurrency` in flight; `onBatch` runs after every `batch` answers. */
export async function pump(
  sender: Sender,
  items: Iterable<FuzzItem>,
  tally: Tally,
  opts: { concurrency: number; batch: number; onBatch?: (done: number, inFlight: FuzzItem[]) => Promise<void> },
): Promise<void> {
  const it = items[Symbol.iterator]();
  const inFlight = new Set<FuzzItem>();
  let done = 0;
  let nextCheck = opts.batch;
  let failure: unknown;
  const worker = async (): Promise<void> => {
    for (;;) {
      if (failure) return;
      const n = it.next();
      if (n.done) return;
      const item = n.value;
      inFlight.add(item);
      const a = await sender.send(item);
      tally.record(item, a);
      done++;
      if (done >= nextCheck && opts.onBatch) {
        nextCheck += opts.batch;
        try {
          await opts.onBatch(done, [...inFlight]);
        } catch (err) {
          failure ??= err;
        }
      }
      inFlight.delete(item);
    }
  };
  await Promise.all(Array.from({ length: opts.concurrency }, worker));
  if (failure) throw failure;
  await opts.onBatch?.(done, []);
}

// ---------------------------------------------------------------- the process under test

/** Open descriptors of a process (Linux /proc). */
export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Resident memory of a process in MiB. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

export interface S2csUnderTest {
  proc: Proc;
  pid: number;
  address: string;
  credentials: grpc.ChannelCredentials;
  portRange: { first: number; last: number };
  alive(): boolean;
  stop(): Promise<number>;
}

/**
 * A real s2cs process on loopback with short Hello waits. `tls`: the default
 * self-signed control TLS (in a temporary state dir), else --insecure.
 */
export async function startS2cs(opts: { tls?: boolean; ports?: number; helloTimeoutS?: number; extra?: string[] } = {}): Promise<S2csUnderTest> {
  const portRange = await freePortRange(opts.ports ?? 32);
  const stateDir = opts.tls ? mkdtempSync(join(tmpdir(), 'hostile-s2cs-')) : undefined;
  const args = [
    'start',
    ...(opts.tls ? ['--state-dir', stateDir!] : ['--insecure']),
    '--port',
    '0',
    '--control-host',
    '127.0.0.1',
    '--listener-ip',
    '127.0.0.1',
    '--port-range',
    `${portRange.first}-${portRange.last}`,
    '--hello-timeout',
    String(opts.helloTimeoutS ?? 1),
    '--allow-plaintext-data',
    ...(opts.extra ?? []),
  ];
  const proc = spawnCli('s2cs', args);
  let port: number;
  try {
    port = Number((await proc.waitFor(/s2cs ready: control on [^\s]+:(\d+)/, { timeoutMs: 20_000 }))[1]);
  } catch (err) {
    await proc.stop('SIGKILL');
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
    // A bound that another branch adds: say which flag is missing rather than fail obscurely.
    const missing = /unknown option '([^']+)'/.exec(proc.stderr());
    if (missing) throw new Error(`this s2cs has no ${missing[1]} flag (not merged yet?); the test needs the bound it sets\n${proc.stderr().trim()}`);
    throw err;
  }
  const address = `127.0.0.1:${port}`;
  const credentials = opts.tls
    ? grpc.credentials.createSsl(readFileSync(join(stateDir!, 'tls', 'cert.pem')), null, null, { checkServerIdentity: () => undefined })
    : grpc.credentials.createInsecure();
  return {
    proc,
    pid: proc.pid!,
    address,
    credentials,
    portRange,
    alive: () => proc.running(),
    async stop() {
      const code = await proc.stop('SIGTERM', 5000);
      if (stateDir) rmSync(stateDir, { recursive: true, force: true });
      return code;
    },
  };
}

/** Releases every stream that status lists; returns the reserved port count afterwards. */
export async function releaseAll(sender: Sender): Promise<{ released: number; reservedPorts: number; leftUids: string[] }> {
  const st = await sender.typed.status({ uid: '' });
  let released = 0;
  const failed = new Map<string, string>();
  for (const s of st.streams) {
    try {
      await sender.typed.release({ uid: s.uid });
      released++;
    } catch (err) {
      // Counted by what status says next; said with the streams left.
      failed.set(s.uid, `${s.state}: ${(err as Error).message}`);
    }
  }
  // Agents in worker processes report their ports once a second: wait for the counts to settle.
  let after = await sender.typed.status({ uid: '' });
  for (let i = 0; i < 30 && after.reserved_ports > 0; i++) {
    await new Promise((r) => setTimeout(r, 200));
    after = await sender.typed.status({ uid: '' });
  }
  return { released, reservedPorts: after.reserved_ports, leftUids: after.streams.map((s) => `${s.uid} (${s.state}${failed.has(s.uid) ? `; its release failed: ${failed.get(s.uid)}` : ''})`) };
}

/** Waits until `pid` holds at most `limit` descriptors, or `ms` pass; returns the last count. */
export async function settleFds(pid: number, limit: number, ms: number): Promise<number> {
  const end = Date.now() + ms;
  let n = fdCount(pid);
  while (n > limit && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    n = fdCount(pid);
  }
  return n;
}

// ---------------------------------------------------------------- raw HTTP/2

export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
export const H2_KINDS = ['random-bytes', 'preface-hpack', 'bogus-data-length', 'random-frames', 'half-open', 'silent'] as const;
export type H2Kind = (typeof H2_KINDS)[number];

/** One HTTP/2 frame; `declared` overrides the length field (a lie about the payload). */
export function h2Frame(type: number, flags: number, stream: number, payload: Buffer, declared = payload.length): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(declared & 0xffffff, 0, 3);
  h[3] = type & 0xff;
  h[4] = flags & 0xff;
  h.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK "literal header field without indexing, new name", no Huffman: enough for a gRPC request. */
function hpackLiteral(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  if (n.length > 126 || v.length > 126) throw new Error('hpackLiteral: short strings only');
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
}

function grpcHeaders(rng: Rng): Buffer {
  return Buffer.concat([
    hpackLiteral(':method', 'POST'),
    hpackLiteral(':scheme', 'http'),
    hpackLiteral(':path', `/scistream.Control/${rng.pick(RPCS)}`),
    hpackLiteral(':authority', 'x'),
    hpackLiteral('content-type', 'application/grpc'),
    hpackLiteral('te', 'trailers'),
  ]);
}

const SETTINGS_EMPTY = h2Frame(4, 0, 0, Buffer.alloc(0));

/** The bytes one hostile control connection sends. */
export function h2Garbage(rng: Rng, kind: H2Kind): Buffer {
  switch (kind) {
    case 'random-bytes':
      return rng.chance(0.3) ? Buffer.concat([H2_PREFACE.subarray(0, rng.int(0, H2_PREFACE.length)), rng.bytes(rng.int(1, 2048))]) : rng.bytes(rng.int(1, 4096));
    case 'preface-hpack': {
      // Random HPACK in HEADERS (and sometimes CONTINUATION) frames, some after a valid start.
      const block = rng.chance(0.5) ? rng.bytes(rng.int(1, 600)) : Buffer.concat([grpcHeaders(rng).subarray(0, rng.int(0, 60)), rng.bytes(rng.int(1, 300))]);
      const frames = [H2_PREFACE, SETTINGS_EMPTY, h2Frame(1, rng.pick([0x4, 0x5, 0x0, 0x24]), rng.pick([1, 3, 2, 0, 0x7fffffff]), block)];
      if (rng.chance(0.3)) frames.push(h2Frame(9, 0x4, 1, rng.bytes(rng.int(0, 200))));
      return Buffer.concat(frames);
    }
    case 'bogus-data-length': {
      // A proper request start, then DATA whose frame or gRPC length lies.
      const grpcPrefix = Buffer.alloc(5);
      grpcPrefix[0] = rng.pick([0, 1, 2, 0xff]);
      grpcPrefix.writeUInt32BE(rng.pick([0xffffffff, 0x7fffffff, 4 * 1024 * 1024 + 1, 100, 0]), 1);
      const body = Buffer.concat([grpcPrefix, rng.bytes(rng.int(0, 64))]);
      const declared = rng.pick([body.length + 1000, 16_384, 0xffffff, 0, Math.max(0, body.length - 3)]);
      return Buffer.concat([H2_PREFACE, SETTINGS_EMPTY, h2Frame(1, 0x4, 1, grpcHeaders(rng)), h2Frame(0, rng.pick([0, 1]), 1, body, declared)]);
    }
    case 'random-frames': {
      const frames: Buffer[] = [H2_PREFACE];
      if (rng.chance(0.7)) frames.push(SETTINGS_EMPTY);
      for (let i = rng.int(1, 20); i > 0; i--) {
        const payload = rng.bytes(rng.int(0, 300));
        frames.push(h2Frame(rng.int(0, 12), rng.int(0, 255), rng.chance(0.5) ? rng.int(0, 9) : rng.u32(), payload, rng.chance(0.8) ? payload.length : rng.int(0, 0xffffff)));
      }
      return Buffer.concat(frames);
    }
    case 'half-open':
      // Sent, then our side half-closed (FIN) while we keep reading.
      return H2_PREFACE.subarray(0, rng.int(0, H2_PREFACE.length));
    case 'silent':
      return Buffer.alloc(0);
  }
}

// ---------------------------------------------------------------- a second caller address

/**
 * A TCP relay on 127.0.0.1 that reaches `target` from another loopback source address
 * (127.0.0.2 by default): s2cs sees that address as the caller, so bounds kept per address
 * (ports, pending Hellos with --auth none) can be tested with two callers on one machine.
 */
export async function relayFrom(target: string, localAddress = '127.0.0.2'): Promise<{ address: string; close(): Promise<void> }> {
  const { createServer, connect } = await import('node:net');
  const [host, port] = target.split(':') as [string, string];
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((inbound) => {
    const outbound = connect({ host, port: Number(port), localAddress });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  return {
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** One control (or data) connection that sends `bytes`, keeps its end open `holdMs`, then closes. Resolves whether s2cs closed first. */
export function garbageConnection(address: string, bytes: Buffer, holdMs: number): Promise<'closed-by-server' | 'closed-by-us' | 'refused'> {
  return import('node:net').then(
    ({ connect }) =>
      new Promise((resolve) => {
        const [host, port] = address.split(':') as [string, string];
        const s = connect({ host, port: Number(port) });
        let timer: NodeJS.Timeout | undefined;
        s.on('data', () => undefined);
        s.on('error', (e: NodeJS.ErrnoException) => {
          if (e.code === 'ECONNREFUSED') resolve('refused');
        });
        s.once('close', () => {
          clearTimeout(timer);
          resolve('closed-by-server');
        });
        s.once('connect', () => {
          if (bytes.length) s.write(bytes);
          timer = setTimeout(() => {
            s.removeAllListeners('close');
            s.destroy();
            resolve('closed-by-us');
          }, holdMs);
        });
      }),
  );
}
