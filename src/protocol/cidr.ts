// Source-address allow-lists of data listeners (Request.allow_from, s2cs
// --data-allow-from): CIDR blocks, IPv4 and IPv6, parsed from hostile input,
// written in one canonical form (what retries compare and status shows), and
// narrowed by the gateway's bound.
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { invalidArgument } from './errors.js';
import { shown } from './text.js';

/** At most this many blocks in one allow-list: each connection is checked against them all. */
export const MAX_ALLOW_FROM = 64;

export interface Cidr {
  family: 4 | 6;
  /** The network address as bits (host bits cleared). */
  bits: bigint;
  prefix: number;
}

const WIDTH = { 4: 32, 6: 128 } as const;

function toBits(address: string, family: 4 | 6): bigint {
  if (family === 4) return address.split('.').reduce((n, part) => (n << 8n) | BigInt(Number(part)), 0n);
  const [head = '', tail] = address.split('::') as [string, string | undefined];
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const expand = (list: string[]): number[] =>
    list.flatMap((g) => (g.includes('.') ? (() => { const b = toBits(g, 4); return [Number(b >> 16n), Number(b & 0xffffn)]; })() : [parseInt(g, 16)]));
  const h = expand(groups(head));
  const t = tail === undefined ? [] : expand(groups(tail));
  const all = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  return all.reduce((n, g) => (n << 16n) | BigInt(g), 0n);
}

function fromBits(bits: bigint, family: 4 | 6): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((bits >> s) & 0xffn)).join('.');
  const groups = Array.from({ length: 8 }, (_, i) => Number((bits >> BigInt(112 - 16 * i)) & 0xffffn));
  // The longest run of zero groups (two or more) becomes "::" (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/**
 * Parses "addr/prefix" or a bare address (a single host: /32, /128). Host bits set
 * below the prefix are refused rather than silently cleared: 10.0.0.1/8 most likely
 * means a mistake. `field` names the input in the error.
 */
export function parseCidr(text: string, field: string): Cidr {
  const fail = (why: string) => invalidArgument(`${field}: "${shown(text, 60)}" is not a valid CIDR block (${why}); write it as 192.0.2.0/24, 2001:db8::/32 or a single address`);
  if (typeof text !== 'string' || text.length === 0) throw fail('it is empty');
  if (text.length > 64) throw fail('it is too long');
  const slash = text.indexOf('/');
  const address = slash < 0 ? text : text.slice(0, slash);
  const family = isIPv4(address) ? 4 : isIPv6(address) && !address.includes('%') ? 6 : 0;
  if (family === 0) throw fail(`"${shown(address, 45)}" is not an IPv4 or IPv6 address`);
  const width = WIDTH[family];
  let prefix: number = width;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > width) throw fail(`the prefix length must be 0 to ${width}`);
    prefix = Number(p);
  }
  const bits = toBits(address, family);
  const hostMask = (1n << BigInt(width - prefix)) - 1n;
  if ((bits & hostMask) !== 0n) throw fail(`it has host bits set below /${prefix}: write ${fromBits(bits & ~hostMask, family)}/${prefix}`);
  return { family, bits, prefix };
}

/** The canonical text: network/prefix, IPv6 compressed. */
export function formatCidr(c: Cidr): string {
  return `${fromBits(c.bits, c.family)}/${c.prefix}`;
}

/** Whether `inner` lies within `outer` (same family, no shorter prefix, same network bits). */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  if (inner.family !== outer.family || inner.prefix < outer.prefix) return false;
  const shift = BigInt(WIDTH[outer.family] - outer.prefix);
  return inner.bits >> shift === outer.bits >> shift;
}

/**
 * Validates an allow-list as it arrives (hostile input): at most MAX_ALLOW_FROM
 * blocks, each valid; returns them canonical, sorted and without duplicates, so
 * that a retry naming the same blocks in another order or spelling is the same.
 */
export function validateAllowList(list: readonly string[], field: string): string[] {
  if (list.length > MAX_ALLOW_FROM) throw invalidArgument(`${field} has ${list.length} entries; at most ${MAX_ALLOW_FROM} CIDR blocks are accepted`);
  const blocks = list.map((text, i) => formatCidr(parseCidr(text, `${field}[${i}]`)));
  return [...new Set(blocks)].sort();
}

/**
 * A stream's allow-list bounded by the gateway's: the blocks of one that lie in a
 * block of the other (two CIDR blocks are nested or disjoint, so this is their
 * intersection). Either empty: the other alone. Both given and nothing in common:
 * undefined (the caller refuses the stream).
 */
export function boundAllowList(stream: readonly string[], gateway: readonly string[]): string[] | undefined {
  if (gateway.length === 0) return [...stream];
  if (stream.length === 0) return [...gateway];
  const s = stream.map((t) => parseCidr(t, 'allow_from'));
  const g = gateway.map((t) => parseCidr(t, 'data_allow_from'));
  const out = new Set<string>();
  for (const a of s) {
    for (const b of g) {
      if (cidrWithin(a, b)) out.add(formatCidr(a));
      else if (cidrWithin(b, a)) out.add(formatCidr(b));
    }
  }
  return out.size > 0 ? [...out].sort() : undefined;
}

/**
 * What a listener checks each accepted connection's source against. Node's
 * BlockList, matched with the address as the socket reports it; an IPv4 peer on a
 * dual-stack listener ("::ffff:192.0.2.1") is matched as IPv4.
 */
export class AllowList {
  private readonly list = new BlockList();

  constructor(readonly blocks: readonly string[]) {
    for (const text of blocks) {
      const c = parseCidr(text, 'allow_from');
      this.list.addSubnet(fromBits(c.bits, c.family), c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
    }
  }

  allows(address: string | undefined): boolean {
    if (!address) return false;
    const mapped = /^::ffff:([0-9.]+)$/i.exec(address);
    if (mapped) return this.list.check(mapped[1]!, 'ipv4');
    return isIPv4(address) ? this.list.check(address, 'ipv4') : isIPv6(address) && this.list.check(address, 'ipv6');
  }
}
