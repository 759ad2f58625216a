// One UDP socket's sends, bounded by bytes in flight (budget.ts) without a callback per
// datagram. Node's dgram first tries to send at once (uv_udp_try_send): nearly always the
// kernel takes the datagram there and then, and nothing is in flight. A callback would
// cost a process.nextTick and a closure per datagram, a good part of the hop's CPU. Only a
// datagram the kernel could not take at once waits in libuv's queue: those are charged to
// their flow and the server, and given back as the socket's queue count (first in, first
// out) says they left.
import type { Socket } from 'node:dgram';
import { lookup, type LookupOneOptions } from 'node:dns';
import { isIP } from 'node:net';
import type { InFlight } from './budget.js';
import type { DropCause } from './counters.js';

/** Whose bytes in flight a datagram counts in: a flow (a listener's sender, a carrier's flow). */
export interface Budgeted {
  inFlight: number;
}

/** While datagrams wait, the queue is looked at this often too (a datagram sent without a callback tells nobody when it leaves). */
const SETTLE_EVERY_MS = 5;

export class SendQueue {
  /** The datagrams waiting in libuv's queue, oldest first: whose and how many bytes. */
  private readonly waiting: { flow: Budgeted; bytes: number }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly settled = (err: Error | null): void => {
    if (err && (err as NodeJS.ErrnoException).code === 'EMSGSIZE') this.dropped('too-large');
    this.settle();
  };

  constructor(
    private readonly socket: Socket,
    private readonly server: InFlight,
    /** A datagram the kernel refused after it waited (too large). */
    private readonly dropped: (cause: DropCause) => void,
  ) {}

  /**
   * Sends a datagram of `flow` (to port and a numeric address on an unconnected socket,
   * which must have been created with literalFirst as its lookup); false,
   * and not sent, when it would take the flow over `perFlowLimit` or the server over its
   * limit. A datagram the kernel refuses at once (an error the socket kept from an
   * earlier ICMP message) is lost as a UDP datagram on the wire would be.
   */
  send(datagram: Buffer, flow: Budgeted, perFlowLimit: number, port?: number, address?: string): boolean {
    const n = datagram.length;
    const waiting = this.waiting;
    if (waiting.length > 0) this.settle();
    const server = this.server;
    if (flow.inFlight + n > perFlowLimit || server.bytes + n > server.limit) return false;
    if (waiting.length === 0) {
      if (port === undefined) this.socket.send(datagram);
      else this.socket.send(datagram, port, address);
      // Taken by the kernel (or refused) at once: nothing in flight.
      if (this.socket.getSendQueueCount() === 0) return true;
      this.charge(flow, n);
      return true;
    }
    // Behind others in libuv's queue: its callback says when the queue moved on.
    this.charge(flow, n);
    if (port === undefined) this.socket.send(datagram, this.settled);
    else this.socket.send(datagram, port, address, this.settled);
    return true;
  }

  /** Gives every waiting datagram's bytes back (the socket is closing: they are not sent). */
  forget(): void {
    for (const w of this.waiting) this.release(w.flow, w.bytes);
    this.waiting.length = 0;
    this.stopTimer();
  }

  private charge(flow: Budgeted, bytes: number): void {
    flow.inFlight += bytes;
    this.server.bytes += bytes;
    this.waiting.push({ flow, bytes });
    this.timer ??= setInterval(() => this.settle(), SETTLE_EVERY_MS).unref();
  }

  private release(flow: Budgeted, bytes: number): void {
    flow.inFlight -= bytes;
    this.server.bytes -= bytes;
  }

  /** The datagrams that left libuv's queue (it keeps their order): all but the last `count`. */
  private settle(): void {
    let count: number;
    try {
      count = this.socket.getSendQueueCount();
    } catch {
      count = 0; // closed: nothing of it is sent any more
    }
    const waiting = this.waiting;
    const left = waiting.length - count;
    if (left <= 0) return;
    for (let i = 0; i < left; i++) this.release(waiting[i]!.flow, waiting[i]!.bytes);
    waiting.splice(0, left);
    if (waiting.length === 0) this.stopTimer();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/**
 * The lookup for an unconnected socket whose sends go through a SendQueue. Such a socket
 * looks up the address of every datagram it sends, and dns.lookup answers even a numeric
 * one on the next tick: a tick per datagram, and the datagram not yet handed to the
 * kernel when send() returns, where SendQueue looks. A numeric address is answered at
 * once; a name (a bind's host) is looked up.
 */
export function literalFirst(address: string, family: LookupOneOptions | number, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const f = isIP(address);
  if (f !== 0) cb(null, address, f);
  // dgram asks with the socket's family (4 or 6).
  else if (typeof family === 'number') lookup(address, family, cb);
  else lookup(address, family, cb);
}
