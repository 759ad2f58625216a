// The WAN leg of a UDP stream: datagrams framed inside the stream's TLS
// connection(s) (see frames.ts and docs/protocol.md, "UDP streams: the WAN leg").
// Each datagram arrives whole or not at all; a flow sticks to connection
// flow % n, so its datagrams keep their order. What does not fit is dropped and
// counted, never queued without bound; a peer that breaks the framing loses its
// connection (a reset), never the gateway its memory.
import type { Socket } from 'node:net';
import type { CarrierDrop, DatagramCarrier } from './datagrams-carrier.js';
import { DATAGRAM_HEADER, DatagramFrameReader, END_FRAME, HEARTBEAT_FRAME, MAX_DATAGRAM, writeDatagramHeader, writeFlowEnd } from './frames.js';
import { resetOnClose } from './linger.js';

export interface DatagramCarrierOptions {
  /** Bytes a connection may hold unwritten before send() drops (queue full). Default 4 MiB. */
  maxQueuedBytes?: number;
  /** Flows alive at once on the carrier, both directions together. Default 4096. */
  maxFlows?: number;
  /** A connection that receives nothing (not even a heartbeat) this long is taken for dead; 0: never. Default 30 s. */
  deadAfterMs?: number;
  /** How often an idle outgoing direction sends a HEARTBEAT. Default 1 s. */
  heartbeatMs?: number;
  /** How long close() waits for the peer's END before it destroys a connection. Default 5 s. */
  closeTimeoutMs?: number;
  /**
   * The accepting side (producer gateway): a flow whose id does not belong to the connection it
   * arrives on (id % n ≠ index: the peer numbers flows over a different share of the stream's
   * listeners, as agents of the two gateways may) is given a local id of this connection,
   * instead of being a protocol error. Default false.
   */
  remapForeignFlows?: boolean;
  /** Told of each datagram from the peer dropped here (send()'s drops are its caller's to count). */
  droppedIncoming?: (cause: CarrierDrop) => void;
}

/** Local ids of remapped flows start above every wire id (u32), so the two never meet. */
const FOREIGN_BASE = 0x1_0000_0000;

export interface DatagramDrops {
  /** The connection's write queue was over maxQueuedBytes. */
  queueFull: number;
  /** Longer than 65,507 bytes. */
  tooLarge: number;
  /** A new flow beyond maxFlows (either direction), or a send on an ended or closed carrier. */
  noFlow: number;
  /** The flow's connection is not (or no longer) there. */
  noConnection: number;
}

export interface DatagramCounters {
  datagramsOut: number;
  bytesOut: number;
  datagramsIn: number;
  bytesIn: number;
  drops: DatagramDrops;
  /** Connections reset because the peer broke the framing (oversize, unknown type, wrong connection...). */
  protocolErrors: number;
  /** Connections lost otherwise: reset, ended without END, silent for deadAfterMs. */
  brokenConnections: number;
}

interface Link {
  readonly socket: Socket;
  readonly reader: DatagramFrameReader;
  lastRead: number;
  wrote: boolean;
  closing: boolean;
  /** Lost (reset or broken) and its flows ended. */
  lost: boolean;
}

type BrokenHandler = (index: number, cause: string) => void;

/** A DatagramCarrier over n established duplex connections (slots 0..n-1), TLS on the WAN. */
export class FramedDatagramCarrier implements DatagramCarrier {
  readonly counters: DatagramCounters = {
    datagramsOut: 0,
    bytesOut: 0,
    datagramsIn: 0,
    bytesIn: 0,
    drops: { queueFull: 0, tooLarge: 0, noFlow: 0, noConnection: 0 },
    protocolErrors: 0,
    brokenConnections: 0,
  };
  lastDrop: CarrierDrop | undefined;
  private readonly links: (Link | undefined)[];
  /** remapForeignFlows: local id -> the peer's id, and per connection the peer's id -> local id. */
  private readonly remap: boolean;
  private readonly droppedIncoming: (cause: CarrierDrop) => void;
  private readonly foreign = new Map<number, number>();
  private readonly foreignIn: Map<number, number>[];
  private nextForeign = 0;
  private readonly live = new Set<number>();
  private readonly maxQueued: number;
  private readonly maxFlows: number;
  private readonly deadAfter: number;
  private readonly closeTimeout: number;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  private datagramCb: (flow: number, datagram: Buffer) => void = () => {};
  private flowEndCb: (flow: number) => void = () => {};
  private brokenCb: BrokenHandler = () => {};

  constructor(
    readonly connections: number,
    options: DatagramCarrierOptions = {},
  ) {
    if (!Number.isInteger(connections) || connections < 1) throw new RangeError(`a datagram carrier needs 1 or more connections, not ${connections}`);
    this.links = new Array<Link | undefined>(connections).fill(undefined);
    this.remap = options.remapForeignFlows ?? false;
    this.droppedIncoming = options.droppedIncoming ?? (() => {});
    this.foreignIn = Array.from({ length: connections }, () => new Map<number, number>());
    this.maxQueued = options.maxQueuedBytes ?? 4 * 1024 * 1024;
    this.maxFlows = options.maxFlows ?? 4096;
    this.deadAfter = options.deadAfterMs ?? 30_000;
    this.closeTimeout = options.closeTimeoutMs ?? 5_000;
    this.sweeper = setInterval(() => this.sweep(), options.heartbeatMs ?? 1_000);
    this.sweeper.unref();
  }

  /** The connection in slot `index` (for its addresses in status), if any. */
  connection(index: number): Socket | undefined {
    return this.links[index]?.socket;
  }

  /** Whether slot `index` holds a connection. */
  attached(index: number): boolean {
    return this.links[index] !== undefined;
  }

  /**
   * Puts an established connection (paused, as transports hand them over) in slot
   * `index`, which must be empty; it carries flows f with f % n === index.
   */
  attach(index: number, socket: Socket): void {
    if (this.closed) throw new Error('the datagram carrier is closed');
    if (this.links[index]) throw new Error(`slot ${index} of the datagram carrier is taken`);
    const link: Link = {
      socket,
      lastRead: Date.now(),
      wrote: false,
      closing: false,
      lost: false,
      reader: new DatagramFrameReader({
        datagram: (flow, datagram) => this.received(index, flow, datagram),
        flowEnd: (flow) => this.receivedFlowEnd(index, flow),
        end: () => this.peerEnded(index, link),
      }),
    };
    this.links[index] = link;
    socket.on('data', (chunk: Buffer) => {
      link.lastRead = Date.now();
      if (!link.reader.push(chunk)) this.protocolError(index, link, link.reader.problem);
    });
    socket.on('end', () => {
      if (!link.reader.ended) this.broken(index, link, link.reader.midFrame ? 'a truncated frame, then the end' : 'the connection ended without END');
    });
    socket.on('error', (err: Error) => this.broken(index, link, err.message));
    // Destroyed under the carrier (by the gateway, say): lost like a reset.
    socket.on('close', () => {
      this.broken(index, link, 'the connection closed');
      this.detach(index, link);
    });
    socket.resume();
  }

  onDatagram(cb: (flow: number, datagram: Buffer) => void): void {
    this.datagramCb = cb;
  }

  onFlowEnd(cb: (flow: number) => void): void {
    this.flowEndCb = cb;
  }

  /** Called when a connection is lost (its flows have ended); the gateway may attach another. */
  onBroken(cb: BrokenHandler): void {
    this.brokenCb = cb;
  }

  /**
   * Keeps a reference to `datagram` until it is written: the caller must not
   * write into it afterwards (a dgram 'message' buffer is fresh each time).
   */
  send(flow: number, datagram: Buffer): boolean {
    const { counters } = this;
    if (datagram.length > MAX_DATAGRAM) {
      counters.drops.tooLarge++;
      this.lastDrop = 'too-large';
      return false;
    }
    const link = this.links[flow % this.connections];
    if (!link || link.closing || this.closed) {
      counters.drops.noConnection++;
      this.lastDrop = 'no-connection';
      return false;
    }
    if (!this.live.has(flow)) {
      if (this.live.size >= this.maxFlows || !validFlow(flow)) {
        counters.drops.noFlow++;
        this.lastDrop = 'no-flow';
        return false;
      }
      this.live.add(flow);
    }
    const socket = link.socket;
    if (socket.writableLength > this.maxQueued) {
      counters.drops.queueFull++;
      this.lastDrop = 'queue-full';
      return false;
    }
    // The header goes in a slice of Buffer's pool, not a buffer reused per
    // connection: a socket that is not writable at once keeps the header queued,
    // and a reused one would be overwritten under it. cork: header and payload go
    // to TLS in one writev, so in one record.
    const header = Buffer.allocUnsafe(DATAGRAM_HEADER);
    writeDatagramHeader(header, 0, flow < FOREIGN_BASE ? flow : this.foreign.get(flow)!, datagram.length);
    socket.cork();
    socket.write(header);
    if (datagram.length > 0) socket.write(datagram);
    socket.uncork();
    link.wrote = true;
    counters.datagramsOut++;
    counters.bytesOut += datagram.length;
    return true;
  }

  endFlow(flow: number): void {
    if (!this.live.delete(flow)) return;
    const wire = this.forget(flow);
    const link = this.links[flow % this.connections];
    if (!link || link.closing) return;
    const frame = Buffer.allocUnsafe(DATAGRAM_HEADER);
    writeFlowEnd(frame, 0, wire);
    link.socket.write(frame);
    link.wrote = true;
  }

  /** Ends every connection cleanly (END, then FIN); no callbacks after this. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.live.clear();
    this.foreign.clear();
    for (const m of this.foreignIn) m.clear();
    for (const link of this.links) if (link) this.endLink(link);
  }

  private received(index: number, wire: number, datagram: Buffer): boolean {
    let flow = wire;
    if (wire % this.connections !== index) {
      if (!this.remap) return false;
      flow = this.foreignIn[index]!.get(wire) ?? -1;
    }
    if (this.closed) return true;
    if (flow < 0 || !this.live.has(flow)) {
      if (this.live.size >= this.maxFlows) {
        this.counters.drops.noFlow++;
        this.droppedIncoming('no-flow');
        return true;
      }
      if (flow < 0) flow = this.localFor(index, wire);
      this.live.add(flow);
    }
    this.counters.datagramsIn++;
    this.counters.bytesIn += datagram.length;
    this.datagramCb(flow, datagram);
    return true;
  }

  private receivedFlowEnd(index: number, wire: number): boolean {
    let flow = wire;
    if (wire % this.connections !== index) {
      if (!this.remap) return false;
      flow = this.foreignIn[index]!.get(wire) ?? -1;
      if (flow < 0) return true;
      this.forget(flow);
    }
    if (this.live.delete(flow) && !this.closed) this.flowEndCb(flow);
    return true;
  }

  /** A local id of connection `index` (≡ index mod n) for the peer's flow `wire`. */
  private localFor(index: number, wire: number): number {
    const flow = FOREIGN_BASE + this.nextForeign++ * this.connections + index;
    this.foreign.set(flow, wire);
    this.foreignIn[index]!.set(wire, flow);
    return flow;
  }

  /** Drops a remapped flow's ids; returns the id the peer knows the flow by. */
  private forget(flow: number): number {
    if (flow < FOREIGN_BASE) return flow;
    const wire = this.foreign.get(flow)!;
    this.foreign.delete(flow);
    this.foreignIn[flow % this.connections]!.delete(wire);
    return wire;
  }

  private peerEnded(index: number, link: Link): void {
    // The peer closed the carrier's connection cleanly: its flows are over; answer with ours.
    this.endFlowsOf(index);
    if (!this.closed) this.brokenCb(index, 'the peer ended the connection');
    this.endLink(link);
  }

  private endLink(link: Link): void {
    if (link.closing) return;
    link.closing = true;
    const { socket } = link;
    if (!socket.destroyed && !socket.writableEnded) socket.end(END_FRAME);
    setTimeout(() => socket.destroy(), this.closeTimeout).unref();
  }

  private protocolError(index: number, link: Link, problem: string): void {
    if (link.lost) return;
    this.counters.protocolErrors++;
    this.lose(index, link, `malformed input: ${problem}`);
  }

  private broken(index: number, link: Link, cause: string): void {
    if (link.lost || link.closing) return;
    this.counters.brokenConnections++;
    this.lose(index, link, cause);
  }

  // Resets the connection (SO_LINGER 0: the peer sees an error, not a clean end) and ends its flows.
  private lose(index: number, link: Link, cause: string): void {
    link.lost = true;
    resetOnClose(link.socket);
    link.socket.destroy();
    this.detach(index, link);
    this.endFlowsOf(index);
    if (!this.closed) this.brokenCb(index, cause);
  }

  private detach(index: number, link: Link): void {
    if (this.links[index] === link) this.links[index] = undefined;
  }

  private endFlowsOf(index: number): void {
    for (const flow of this.live) {
      if (flow % this.connections !== index) continue;
      this.live.delete(flow);
      this.forget(flow);
      if (!this.closed) this.flowEndCb(flow);
    }
  }

  private sweep(): void {
    const now = Date.now();
    this.links.forEach((link, index) => {
      if (!link || link.closing) return;
      if (this.deadAfter > 0 && now - link.lastRead > this.deadAfter) {
        this.broken(index, link, `nothing received for ${this.deadAfter / 1000} s`);
        return;
      }
      // A heartbeat is needed only while nothing else goes out (and never piles up unread).
      if (!link.wrote && link.socket.writableLength <= this.maxQueued) link.socket.write(HEARTBEAT_FRAME);
      link.wrote = false;
    });
  }
}

function validFlow(flow: number): boolean {
  return Number.isInteger(flow) && flow >= 0 && flow <= 0xffff_ffff;
}
