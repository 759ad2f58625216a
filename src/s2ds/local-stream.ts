// One stream on a data server (local.ts), and its connections from accept to close:
// what each holds (admission ticket, listener slot), what the access log will say of
// it, and the stream's listeners, targets, transports, counters and warm connections.
import type { Socket } from 'node:net';
import type { Address } from '../protocol/address.js';
import type { TcpListener, Transport } from '../transport/index.js';
import { TcpTransport } from '../transport/index.js';
import type { AllowList } from '../protocol/cidr.js';
import { Pacer, type StreamPacing } from './pacer.js';
import type { ByteCounters } from './forwarder.js';
import { ConnectionEnds } from './connection-ends.js';
import type { ConnectionRecord } from './access-log.js';
import type { Ticket } from './admission.js';
import type { UdpStream } from './udp/index.js';
import type { UdpWanLeg } from './udp/wan-leg.js';
import type { WarmConnections } from './warm.js';

export const TCP = new TcpTransport();

/**
 * One accepted connection, from its accept until its socket closes: its standing
 * with admission (pending, then admitted with its buffer reservation) and its
 * listener slot once admitted.
 */
export interface Connection {
  readonly listenerIndex: number;
  readonly ticket: Ticket;
  /** Holds a slot of perListener (admitted). */
  slot: boolean;
  /** Refused (reset): whatever settles later for it is dropped, not counted again. */
  refused: boolean;
  readonly trace: Trace;
}

/** What the access log says of a connection, gathered from its accept to its end. */
export interface Trace {
  /** When it was accepted; for a warm WAN connection, when it opened. */
  startedAt: number;
  /** A warm WAN connection not (yet) used: its end is no connection's (no access-log record). */
  warm?: boolean;
  readonly listener: string;
  readonly peer: string;
  /** The socket it is read from now (the accepted one, moved onto a reused buffer, or its TLS socket). */
  socket: Socket;
  /** refused:<kind>, once refused. */
  refused?: string;
  /** Forwarding: its end is known once both sockets closed (ConnectionEnds.watch). */
  forwarded: boolean;
  done: boolean;
}

export interface Waiting {
  socket: Socket;
  connection: Connection;
  timer: NodeJS.Timeout;
}

export class Stream {
  readonly sockets = new Set<Socket>();
  readonly waiting = new Set<Waiting>();
  readonly connections = new Set<Connection>();
  /** Admitted connections by listener index. */
  readonly perListener: number[];
  readonly counters: ByteCounters = { toTarget: 0, fromTarget: 0 };
  /** How its forwarded connections ended (s2cs tells a broken stream by it). */
  readonly ends = new ConnectionEnds();
  /** Its last connections' access-log records, newest last (status: recent_connections). */
  readonly recent: ConnectionRecord[] = [];
  targets: Address[] | undefined;
  /** How accepted connections are taken on and targets reached; set with the targets. */
  acceptVia: Transport = TCP;
  connectVia: Transport = TCP;
  accepted = 0;
  refused = 0;
  active = 0;
  released = false;
  /** The stream's cap here, shared by its connections (absent: not capped). */
  readonly pacing: StreamPacing | undefined;
  /** Who may connect (absent: anyone); checked first thing after accept. */
  allow: AllowList | undefined;
  /** A UDP stream's datagram side (its UDP sockets on the listeners' ports); absent for TCP. */
  udp: UdpStream | undefined;
  /** A UDP stream's encrypted WAN leg here (udp/wan-leg.ts); absent for plain or single-gateway streams. */
  udpWan: UdpWanLeg | undefined;
  /** Its listeners joined another worker's (shared-listeners.ts): their ports are that worker's, never given back here. */
  joined = false;
  /** Its listeners are shared with the gateway's other workers (owned joinable, or joined). */
  shared = false;
  /** Consumer gateway: WAN connections kept ready per target (warm.ts), once the producer gateway showed it waits for the open frame. */
  warm: WarmConnections | undefined;
  /** Producer gateway: authenticated WAN connections waiting for their open frame, by listener index. */
  readonly opening: number[];

  constructor(
    readonly uid: string,
    readonly listeners: TcpListener[],
    readonly ports: number[],
    count: number,
    readonly capBps = 0,
  ) {
    this.perListener = new Array<number>(count).fill(0);
    this.opening = new Array<number>(count).fill(0);
    this.pacing = capBps > 0 ? { toTarget: new Pacer(capBps), fromTarget: new Pacer(capBps) } : undefined;
  }
}
