// Admission of data connections: what an accepted connection may hold before it
// has proved anything, and the buffer budget it draws from once it has.
//
// A connection is *pending* from its accept until it is authenticated (the WAN leg's
// TLS handshake) or, on a plain leg, matched to its target: it then holds a small
// fixed reservation (PENDING_CONNECTION_MEMORY) and counts against per-source caps,
// per listener and on this data server, and against a bound on all pending
// connections. Only when *admitted* does it reserve its worst case (connectionMemory).
// Nobody needs credentials to open a TCP connection, so a flood of idle or slow
// handshakes costs the flooders their own slots, never a forwarding connection's
// memory nor another source's chance to get in.
import type { RefusalKind } from '../limits/refusals.js';
import { peerKey } from '../s2cs/pending.js';

export interface AdmissionLimits {
  /** Buffer memory all connections may hold together (--max-buffer-memory), bytes. */
  maxBufferMemory: number;
  /** Pending connections on this data server, all sources (--max-pending-conns). */
  maxPending: number;
  /** Pending connections from one source on this data server (--max-pending-conns-per-peer). */
  maxPendingPerPeer: number;
  /** Pending connections from one source on one listener (--max-pending-conns-per-peer-per-listener). */
  maxPendingPerPeerPerListener: number;
}

export const ADMISSION_DEFAULTS = {
  /**
   * 1024 pending connections hold at most 64 MiB of reservations (an eighth of a
   * worker's share of the default 1 GiB on two cores) and 1024 descriptors.
   */
  maxPending: 1024,
  /** A peer gateway opening several streams' connections at once stays well under it. */
  maxPendingPerPeer: 256,
  /**
   * As many as one listener admits (--max-conns-per-listener): a peer gateway whose
   * application opens that many connections at once (iperf3 -P 64) is never refused.
   */
  maxPendingPerPeerPerListener: 128,
  /** How long a WAN peer has for its TLS handshake (--data-handshake-timeout). */
  handshakeTimeoutMs: 5_000,
} as const;

/** The admission settings a data server takes (s2cs start and s2ds start flags, s2ds/flags.ts). */
export interface AdmissionOptions {
  /** --max-pending-conns. Default ADMISSION_DEFAULTS. */
  maxPendingConns?: number;
  /** --max-pending-conns-per-peer. Default ADMISSION_DEFAULTS. */
  maxPendingConnsPerPeer?: number;
  /** --max-pending-conns-per-peer-per-listener. Default ADMISSION_DEFAULTS. */
  maxPendingConnsPerPeerPerListener?: number;
  /** --data-handshake-timeout, in ms. Default ADMISSION_DEFAULTS. */
  handshakeTimeoutMs?: number;
}

/** The flags that give a worker process (s2ds start) these settings. */
export function admissionArgs(o: AdmissionOptions): string[] {
  return [
    '--max-pending-conns', String(o.maxPendingConns ?? ADMISSION_DEFAULTS.maxPending),
    '--max-pending-conns-per-peer', String(o.maxPendingConnsPerPeer ?? ADMISSION_DEFAULTS.maxPendingPerPeer),
    '--max-pending-conns-per-peer-per-listener', String(o.maxPendingConnsPerPeerPerListener ?? ADMISSION_DEFAULTS.maxPendingPerPeerPerListener),
    '--data-handshake-timeout', String((o.handshakeTimeoutMs ?? ADMISSION_DEFAULTS.handshakeTimeoutMs) / 1000),
  ];
}

/** The settings from the flags of s2cs start or s2ds start (commander's attribute names). */
export function admissionOptionsOf(flags: AdmissionFlags): AdmissionOptions {
  return {
    maxPendingConns: flags.maxPendingConns,
    maxPendingConnsPerPeer: flags.maxPendingConnsPerPeer,
    maxPendingConnsPerPeerPerListener: flags.maxPendingConnsPerPeerPerListener,
    handshakeTimeoutMs: flags.dataHandshakeTimeout * 1000,
  };
}

/** The admission flags as commander hands them over (see addAdmissionOptions in flags.ts). */
export interface AdmissionFlags {
  maxPendingConns: number;
  maxPendingConnsPerPeer: number;
  maxPendingConnsPerPeerPerListener: number;
  /** Seconds. */
  dataHandshakeTimeout: number;
}

/**
 * What a pending connection may hold: its socket objects and, on a TLS leg, the
 * state of a handshake in progress. Measured (2,000 connections to a TLS listener,
 * RSS of the data server): about 18 KiB per idle connection, 57 KiB once part of a
 * ClientHello is in (OpenSSL's input buffer takes one 64 KiB read). Its stream
 * buffers are only allocated once it is admitted.
 */
export const PENDING_CONNECTION_MEMORY = 64 * 1024;

/** One accepted connection's standing with admission, from accept until it closes. */
export interface Ticket {
  /** Who it counts against: its address (IPv6: its /64), see peerKey. */
  readonly source: string;
  /** The listener it arrived on (its local port: one bind host per data server). */
  readonly listener: number;
  /** held: authenticated, waiting for its open frame (a warm WAN connection, s2ds/warm.ts); no longer pending. */
  state: 'pending' | 'held' | 'admitted' | 'gone';
  /** Bytes reserved from the buffer budget. */
  bytes: number;
  /** Called when admission drops it to make room (see enter); the caller closes the connection. */
  readonly evicted: (message: string) => void;
}

export type Refused = { kind: RefusalKind; message: string };

export class Admission {
  /** Bytes reserved by every ticket now. */
  private reserved = 0;
  private pendingCount = 0;
  /** Pending tickets by source, in arrival order (the oldest first is evicted). */
  private readonly pendingBySource = new Map<string, Set<Ticket>>();
  /** Pending tickets by listener and source ("port source"). */
  private readonly pendingByListener = new Map<string, number>();

  constructor(private limits: AdmissionLimits) {}

  memory(): { reserved: number; limit: number } {
    return { reserved: this.reserved, limit: this.limits.maxBufferMemory };
  }

  /** Connections accepted and not yet authenticated or matched to a target. */
  get pending(): number {
    return this.pendingCount;
  }

  /**
   * Takes on a connection just accepted from `address` on the listener at `port`, as
   * pending. When every pending slot is taken, the oldest pending connection of the
   * source holding the most makes room, but only for a source holding fewer: the
   * flooders pay for a flood, never a quiet peer.
   */
  enter(address: string | undefined, port: number, evicted: (message: string) => void): Ticket | Refused {
    const source = peerKey(address ?? 'unknown');
    const mine = this.pendingBySource.get(source)?.size ?? 0;
    const l = this.limits;
    if (mine >= l.maxPendingPerPeer) {
      return { kind: 'pending-conns-per-peer', message: `${source} already has ${mine} connections on this data server that have not authenticated or reached their target (--max-pending-conns-per-peer ${l.maxPendingPerPeer}); refusing more from it` };
    }
    const onListener = this.pendingByListener.get(`${port} ${source}`) ?? 0;
    if (onListener >= l.maxPendingPerPeerPerListener) {
      return { kind: 'pending-conns-per-peer', message: `${source} already has ${onListener} connections on listener port ${port} that have not authenticated or reached their target (--max-pending-conns-per-peer-per-listener ${l.maxPendingPerPeerPerListener}); refusing more from it` };
    }
    if (this.pendingCount >= l.maxPending && !this.evictFor(mine)) {
      return { kind: 'pending-conns', message: `${this.pendingCount} connections wait for their handshake or target (--max-pending-conns ${l.maxPending}), none from a source holding more than ${source}; refusing more` };
    }
    if (this.reserved + PENDING_CONNECTION_MEMORY > l.maxBufferMemory) {
      return { kind: 'buffer-memory', message: `connections hold ${mib(this.reserved)} of the ${mib(l.maxBufferMemory)} buffer memory (--max-buffer-memory); refusing new connections` };
    }
    const ticket: Ticket = { source, listener: port, state: 'pending', bytes: PENDING_CONNECTION_MEMORY, evicted };
    this.reserved += ticket.bytes;
    this.pendingCount++;
    let set = this.pendingBySource.get(source);
    if (!set) this.pendingBySource.set(source, (set = new Set()));
    set.add(ticket);
    this.pendingByListener.set(`${port} ${source}`, onListener + 1);
    return ticket;
  }

  /**
   * The connection proved itself (or was matched to its target): it reserves `need`
   * bytes in place of its pending share. A refusal leaves the ticket pending: the
   * caller closes the connection, which leaves.
   */
  admit(ticket: Ticket, need: number): Refused | undefined {
    if (ticket.state !== 'pending' && ticket.state !== 'held') return undefined;
    const more = need - ticket.bytes;
    if (this.reserved + more > this.limits.maxBufferMemory) {
      return {
        kind: 'buffer-memory',
        message: `connections hold ${mib(this.reserved)} of the ${mib(this.limits.maxBufferMemory)} buffer memory (--max-buffer-memory) and one more needs ${mib(need)}; refusing new connections`,
      };
    }
    if (ticket.state === 'pending') this.unpend(ticket);
    ticket.state = 'admitted';
    this.reserved += more;
    ticket.bytes = need;
    return undefined;
  }

  /**
   * The connection proved the stream's credentials and waits for its open frame: it
   * leaves the pending bounds (which are for peers not yet authenticated) and keeps
   * its pending share of memory until admit() or leave().
   */
  hold(ticket: Ticket): void {
    if (ticket.state !== 'pending') return;
    this.unpend(ticket);
    ticket.state = 'held';
  }

  /** Gives back what the ticket holds; once per ticket (later calls do nothing). */
  leave(ticket: Ticket): void {
    if (ticket.state === 'gone') return;
    if (ticket.state === 'pending') this.unpend(ticket);
    ticket.state = 'gone';
    this.reserved -= ticket.bytes;
    ticket.bytes = 0;
  }

  private unpend(ticket: Ticket): void {
    this.pendingCount--;
    const set = this.pendingBySource.get(ticket.source)!;
    set.delete(ticket);
    if (set.size === 0) this.pendingBySource.delete(ticket.source);
    const key = `${ticket.listener} ${ticket.source}`;
    const n = (this.pendingByListener.get(key) ?? 1) - 1;
    if (n > 0) this.pendingByListener.set(key, n);
    else this.pendingByListener.delete(key);
  }

  /** Drops the oldest pending connection of the biggest source, if it holds more than `held`. */
  private evictFor(held: number): boolean {
    let biggest: Set<Ticket> | undefined;
    for (const set of this.pendingBySource.values()) if (!biggest || set.size > biggest.size) biggest = set;
    if (!biggest || biggest.size <= held) return false;
    const victim = biggest.values().next().value as Ticket;
    const count = biggest.size;
    this.leave(victim);
    victim.evicted(`${this.limits.maxPending} connections wait for their handshake or target (--max-pending-conns); dropped the oldest of the ${count} from ${victim.source} to make room for another source`);
    return true;
  }
}

export function mib(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(bytes < 1024 ** 2 ? 2 : 0)} MiB`;
}
