// The encrypted WAN leg of a UDP stream, gateway side (docs/protocol.md, "UDP
// streams: the WAN leg"). The consumer gateway dials one TLS connection to each of
// the producer gateway's listeners (TCP, on the stream's port numbers) and keeps
// them up; the producer gateway takes the connections its listeners accept into
// the carrier, slot i for listener i. Flows opened at the consumer gateway's UDP
// listener i get ids with id % n === i (FlowIds), so they ride connection i and
// reach listener i's target at the producer side, as a TCP stream's connections do.
import type { Socket } from 'node:net';
import type { Address } from '../../protocol/address.js';
import type { DatagramCarrier } from '../../transport/datagrams-carrier.js';
import { FramedDatagramCarrier, type DatagramCarrierOptions } from '../../transport/datagrams.js';
import { HEARTBEAT_FRAME, isTcpConnectionFrame } from '../../transport/frames.js';
import { readFirstFrame } from '../../transport/first-frame.js';
import type { Transport } from '../../transport/index.js';
import { resetOnClose } from '../../transport/linger.js';
import { keepDataSocketAlive } from '../../transport/socket-options.js';

export interface UdpWanOptions extends DatagramCarrierOptions {
  /** The TLS socket's buffer bound (the data server's --buffer-size). */
  highWaterMark: number;
  /** How long the peer has to complete its handshake (--data-handshake-timeout). */
  handshakeTimeoutMs?: number;
  /** First and longest wait before the consumer side dials a lost connection again. Default 0.5 s and 10 s. */
  redialFirstMs?: number;
  redialMaxMs?: number;
  /** Handshakes under way at once per listener at the producer side; more are reset. Default 4. */
  maxPendingPerListener?: number;
  /** Told when a connection is lost or refused (rate-limited logging is the caller's). */
  onProblem?: (index: number, problem: string) => void;
}

/**
 * Flow ids of one carrier: small integers, id % n === the listener index, the
 * smallest free one first, reused once their flow has ended.
 */
export class FlowIds {
  private readonly free: number[][];
  private readonly next: number[];
  private readonly used = new Set<number>();

  constructor(
    readonly connections: number,
    /** Flows per listener at most (--max-udp-flows). */
    readonly perListener: number,
  ) {
    this.free = Array.from({ length: connections }, () => []);
    this.next = Array.from({ length: connections }, (_, i) => i);
  }

  /** A new id for a flow of listener `listenerIndex`; undefined when the listener has perListener flows. */
  open(listenerIndex: number): number | undefined {
    const slot = listenerIndex % this.connections;
    const id = this.free[slot]!.pop() ?? (this.next[slot]! < this.perListener * this.connections ? this.next[slot]! : undefined);
    if (id === undefined) return undefined;
    if (id === this.next[slot]) this.next[slot]! += this.connections;
    this.used.add(id);
    return id;
  }

  release(id: number): void {
    if (this.used.delete(id)) this.free[id % this.connections]!.push(id);
  }

  get size(): number {
    return this.used.size;
  }
}

/** Listener index (producer side: the connection) a flow belongs to. */
export function listenerOf(flow: number, connections: number): number {
  return flow % connections;
}

/**
 * The consumer gateway's side: one TLS connection to each of the producer
 * gateway's WAN listeners (`targets`, in listener order), dialed at once and again
 * after a loss (backoff), until close().
 */
export class UdpWanDialer {
  readonly carrier: FramedDatagramCarrier;
  private closed = false;
  private readonly delays: number[];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly dialing = new Set<Socket>();

  constructor(
    private readonly transport: Transport,
    private readonly targets: readonly Address[],
    private readonly options: UdpWanOptions,
  ) {
    this.carrier = new FramedDatagramCarrier(targets.length, options);
    this.delays = targets.map(() => 0);
    this.carrier.onBroken((index, cause) => {
      options.onProblem?.(index, cause);
      this.later(index);
    });
    targets.forEach((_, i) => this.dial(i));
  }

  /** Resolves once every connection is up (or rejects after `ms`). */
  ready(ms: number): Promise<void> {
    const end = Date.now() + ms;
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.targets.every((_, i) => this.carrier.attached(i))) resolve();
        else if (this.closed || Date.now() > end) reject(new Error(`the UDP stream's WAN connections are not all up after ${ms / 1000} s`));
        else setTimeout(check, 20).unref();
      };
      check();
    });
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const s of this.dialing) s.destroy();
    this.carrier.close();
  }

  private dial(index: number): void {
    if (this.closed) return;
    const { highWaterMark, handshakeTimeoutMs } = this.options;
    this.transport.connect(this.targets[index]!, { highWaterMark, handshakeTimeoutMs }).then(
      (socket) => {
        if (this.closed || this.carrier.attached(index)) {
          socket.destroy();
          return;
        }
        socket.on('error', noop);
        resetOnClose(socket);
        keepDataSocketAlive(socket, this.options.deadAfterMs ?? 30_000);
        this.delays[index] = 0;
        // The acceptor reads a connection's first frame to tell the carrier from a TCP connection (frames.ts).
        socket.write(HEARTBEAT_FRAME);
        this.carrier.attach(index, socket);
      },
      (err: Error) => {
        this.options.onProblem?.(index, `cannot open the WAN connection to the producer gateway: ${err.message}`);
        this.later(index);
      },
    );
  }

  private later(index: number): void {
    if (this.closed) return;
    const first = this.options.redialFirstMs ?? 500;
    const delay = (this.delays[index] = Math.min(this.options.redialMaxMs ?? 10_000, this.delays[index] ? this.delays[index]! * 2 : first));
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.dial(index);
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }
}

/** What became of a connection accepted on a listener of the stream (UdpWanAcceptor.accept). */
export interface AcceptedConnection {
  /** It proved the credentials and became the carrier's connection for its listener. */
  carrier(): void;
  /** It proved the credentials and carries one TCP connection of the stream (TCP_CONNECTION first): forward it. */
  tcp(socket: Socket): void;
  /** It did not prove the credentials, or sent no first frame in time; it is closed (and reported through onProblem). */
  refused(): void;
}

/**
 * The producer gateway's side: connections accepted on the stream's listener i
 * (TCP on the stream's port) prove the stream's credentials; the first frame says
 * whether one is the carrier's connection for slot i or carries one TCP connection
 * of the stream. A newer carrier connection replaces the one in its slot (the
 * consumer side redialed after a loss this side has not seen yet); only the peer
 * gateway can prove the credentials, so nobody else can displace it.
 */
export class UdpWanAcceptor {
  readonly carrier: FramedDatagramCarrier;
  private closed = false;
  private readonly pending: Set<Socket>[];
  private readonly current: (Socket | undefined)[];

  constructor(
    private readonly transport: Transport,
    readonly connections: number,
    private readonly options: UdpWanOptions,
  ) {
    // The consumer gateway's agents may hold the stream's listeners in other shares than this one's.
    this.carrier = new FramedDatagramCarrier(connections, { ...options, remapForeignFlows: true });
    this.pending = Array.from({ length: connections }, () => new Set<Socket>());
    this.current = new Array<Socket | undefined>(connections).fill(undefined);
    this.carrier.onBroken((index, cause) => options.onProblem?.(index, cause));
  }

  /** A connection just accepted on listener `index`; `outcome` hears what it turned out to be. */
  accept(index: number, raw: Socket, outcome: AcceptedConnection): void {
    raw.on('error', noop);
    resetOnClose(raw);
    const pending = this.pending[index];
    if (this.closed || !pending || pending.size >= (this.options.maxPendingPerListener ?? 4)) {
      raw.destroy();
      outcome.refused();
      return;
    }
    pending.add(raw);
    raw.once('close', () => pending.delete(raw));
    const { highWaterMark, handshakeTimeoutMs = 10_000 } = this.options;
    const refuse = (why: string) => {
      pending.delete(raw);
      raw.destroy();
      this.options.onProblem?.(index, `refused a WAN connection from ${raw.remoteAddress ?? 'unknown'}: ${why}`);
      outcome.refused();
    };
    this.transport.accept(raw, { highWaterMark, handshakeTimeoutMs }).then(
      (socket) =>
        readFirstFrame(socket, handshakeTimeoutMs).then(
          (header) => {
            pending.delete(raw);
            if (this.closed) {
              socket.destroy();
              outcome.refused();
            } else if (isTcpConnectionFrame(header)) {
              outcome.tcp(socket);
            } else {
              socket.unshift(header);
              this.take(index, socket);
              outcome.carrier();
            }
          },
          (err: Error) => {
            socket.destroy();
            refuse(err.message);
          },
        ),
      (err: Error) => refuse(`it did not prove the stream's credentials (${err.message})`),
    );
  }

  /** An authenticated datagram connection becomes slot `index`, replacing the one there. */
  private take(index: number, socket: Socket): void {
    socket.on('error', noop);
    keepDataSocketAlive(socket, this.options.deadAfterMs ?? 30_000);
    const old = this.current[index];
    if (old && this.carrier.attached(index)) old.destroy();
    this.current[index] = socket;
    // The old socket's close detaches it from the slot, a turn later than its destroy().
    const attach = () => (this.closed ? socket.destroy() : this.carrier.attached(index) ? setImmediate(attach) : this.carrier.attach(index, socket));
    attach();
  }

  close(): void {
    this.closed = true;
    for (const set of this.pending) for (const s of set) s.destroy();
    this.carrier.close();
  }
}

/**
 * Passes flows between two carriers, both ways, ids kept: at the producer
 * gateway, the WAN carrier and the one towards the targets (plain UDP, a socket
 * per flow); at a gateway in the middle, two WAN carriers. A flow ended on one
 * side is ended on the other. Datagrams the far side drops are counted there.
 */
export function bridge(a: DatagramCarrier, b: DatagramCarrier): void {
  a.onDatagram((flow, d) => b.send(flow, d));
  b.onDatagram((flow, d) => a.send(flow, d));
  a.onFlowEnd((flow) => b.endFlow(flow));
  b.onFlowEnd((flow) => a.endFlow(flow));
}

function noop(): void {}
