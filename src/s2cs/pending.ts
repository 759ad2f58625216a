// Things that wait on a gateway for an event another caller must cause (Hellos
// waiting for their req), bounded per peer address and in all. Hello is never
// authenticated, so the peer address is the only handle on who is flooding.
import { isIPv4, isIPv6, isIP } from 'node:net';

export interface PendingLimits {
  /** Entries held at once, all peers together. */
  max: number;
  /** Entries one peer (see peerKey) may hold at once. */
  maxPerPeer: number;
  /** How long an entry is held before onExpire. */
  ttlMs: number;
}

interface Entry<T> {
  peer: string;
  value: T;
  expiresAt: number;
}

export type AddResult<T> =
  | { ok: true; evicted?: { key: string; peer: string; value: T } }
  | { ok: false; why: 'peer' | 'full'; held: number };

/**
 * Keyed entries in arrival order. A peer at its own cap is refused. When the
 * whole table is full, the oldest entry of the peer holding the most makes room,
 * but only for a peer that holds fewer: a flood from one address (or a few)
 * then costs the flooders their own oldest entries and never a quiet peer's.
 * All entries share one ttl, so the oldest expire first and one timer serves all
 * (no timer per entry: a few hundred bytes each, mostly the caller's value).
 */
export class PendingByPeer<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly byPeer = new Map<string, Set<string>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private limits: PendingLimits,
    private readonly onExpire: (key: string, value: T) => void,
  ) {}

  /**
   * New limits (a configuration reload). Entries held beyond a lowered max stay until
   * they go; a shorter ttl applies to held entries too, from now, which keeps them in
   * expiry order (the one timer relies on it).
   */
  setLimits(limits: PendingLimits): void {
    const shorter = limits.ttlMs < this.limits.ttlMs;
    this.limits = { ...limits };
    if (!shorter) return;
    const latest = Date.now() + limits.ttlMs;
    for (const e of this.entries.values()) e.expiresAt = Math.min(e.expiresAt, latest);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.schedule();
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): T | undefined {
    return this.entries.get(key)?.value;
  }

  heldBy(peer: string): number {
    return this.byPeer.get(peer)?.size ?? 0;
  }

  add(key: string, peer: string, value: T): AddResult<T> {
    const held = this.heldBy(peer);
    if (held >= this.limits.maxPerPeer) return { ok: false, why: 'peer', held };
    let evicted: { key: string; peer: string; value: T } | undefined;
    if (this.entries.size >= this.limits.max) {
      const victim = this.biggestPeer();
      if (!victim || victim.count <= held) return { ok: false, why: 'full', held };
      const victimKey = victim.keys.values().next().value as string;
      const e = this.entries.get(victimKey)!;
      this.delete(victimKey);
      evicted = { key: victimKey, peer: e.peer, value: e.value };
    }
    this.entries.set(key, { peer, value, expiresAt: Date.now() + this.limits.ttlMs });
    let keys = this.byPeer.get(peer);
    if (!keys) this.byPeer.set(peer, (keys = new Set()));
    keys.add(key);
    if (!this.timer) this.schedule();
    return evicted ? { ok: true, evicted } : { ok: true };
  }

  delete(key: string): T | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    this.entries.delete(key);
    const keys = this.byPeer.get(e.peer)!;
    keys.delete(key);
    if (keys.size === 0) this.byPeer.delete(e.peer);
    if (this.entries.size === 0 && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    return e.value;
  }

  /** Empties the table without calling onExpire; returns what it held. */
  clear(): T[] {
    const values = [...this.entries.values()].map((e) => e.value);
    this.entries.clear();
    this.byPeer.clear();
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    return values;
  }

  private biggestPeer(): { keys: Set<string>; count: number } | undefined {
    let best: Set<string> | undefined;
    for (const keys of this.byPeer.values()) if (!best || keys.size > best.size) best = keys;
    return best && { keys: best, count: best.size };
  }

  private schedule(): void {
    const first = this.entries.values().next();
    if (first.done) return;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, first.value.expiresAt - Date.now()));
    this.timer.unref();
  }

  private sweep(): void {
    this.timer = undefined;
    const now = Date.now();
    for (const [key, e] of this.entries) {
      if (e.expiresAt > now) break;
      this.delete(key);
      this.onExpire(key, e.value);
    }
    if (!this.timer) this.schedule();
  }
}

/**
 * Who a caller is when nothing else says so: its IP address from grpc-js's
 * getPeer() ("1.2.3.4:5678", "::1:5678"). IPv4-mapped IPv6 counts as IPv4, and
 * IPv6 counts by its /64, since one host usually holds a whole /64.
 */
export function peerKey(peer: string): string {
  let host = peer;
  if (!isIP(host)) {
    const colon = peer.lastIndexOf(':');
    if (colon > 0 && /^\d+$/.test(peer.slice(colon + 1))) host = peer.slice(0, colon);
    host = host.replace(/^\[(.*)\]$/, '$1');
  }
  const mapped = /^::ffff:(.*)$/i.exec(host);
  if (mapped && isIPv4(mapped[1]!)) return mapped[1]!;
  if (isIPv6(host)) return `${ipv6Prefix64(host)}::/64`;
  return host;
}

function ipv6Prefix64(addr: string): string {
  const [head = '', tail] = addr.split('::');
  const groups = (s: string | undefined): string[] => (s ? s.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return all
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':');
}
