// The plain carrier: each flow its own connected UDP socket towards the flow's target
// (the application, or the other gateway's UDP listener with --allow-plaintext-data),
// as a UDP proxy does; replies come back on that socket only (the kernel drops what
// does not come from the connected address).
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Address } from '../../protocol/address.js';
import type { DatagramCarrier } from '../../transport/datagrams-carrier.js';
import type { InFlight } from './budget.js';
import type { DropCause } from './counters.js';
import { SendQueue } from './send-queue.js';

interface PlainFlow {
  socket: Socket;
  /** Its sends, bounded by bytes in flight; created once connected. */
  queue: SendQueue | undefined;
  /** Bytes waiting here or in libuv's queue, not yet sent. */
  inFlight: number;
  /** Until connect() resolves, datagrams wait here (counted in inFlight): a connecting socket cannot send. */
  waiting: Buffer[] | undefined;
  ended: boolean;
}

export interface PlainCarrierOptions {
  /** The target of a flow (listener i's target), asked when its first datagram is sent. */
  targetOf(flow: number): Address;
  perFlowLimit: number;
  server: InFlight;
  /**
   * Each flow socket's receive buffer (the target's datagrams wait there while the
   * worker is busy); the kernel caps it at net.core.rmem_max.
   */
  bufferSize: number;
  /** A datagram dropped here (send refused, over a bound). */
  dropped(cause: DropCause): void;
}

export class PlainUdpCarrier implements DatagramCarrier {
  private readonly flows = new Map<number, PlainFlow>();
  private datagramListener: (flow: number, datagram: Buffer) => void = noop;
  private flowEndListener: (flow: number) => void = noop;
  private closed = false;

  constructor(private readonly opts: PlainCarrierOptions) {}

  send(flow: number, datagram: Buffer): boolean {
    if (this.closed) return false;
    const f = this.flows.get(flow) ?? this.open(flow);
    if (f.queue) return f.queue.send(datagram, f, this.opts.perFlowLimit);
    // Its connect failed and the socket is closing: the sender's next datagram opens another.
    const waiting = f.waiting;
    if (!waiting) return false;
    const n = datagram.length;
    const server = this.opts.server;
    if (f.inFlight + n > this.opts.perFlowLimit || server.bytes + n > server.limit) return false;
    f.inFlight += n;
    server.bytes += n;
    waiting.push(datagram);
    return true;
  }

  onDatagram(cb: (flow: number, datagram: Buffer) => void): void {
    this.datagramListener = cb;
  }

  onFlowEnd(cb: (flow: number) => void): void {
    this.flowEndListener = cb;
  }

  endFlow(flow: number): void {
    const f = this.flows.get(flow);
    if (!f) return;
    this.flows.delete(flow);
    f.ended = true;
    this.forget(f);
    f.socket.close();
  }

  close(): void {
    this.closed = true;
    for (const flow of [...this.flows.keys()]) this.endFlow(flow);
  }

  /** Datagrams that never reached the kernel give their bytes back. */
  private forget(f: PlainFlow): void {
    this.unwait(f);
    f.queue?.forget();
  }

  /** The datagrams that waited for connect() give their bytes back; the list is gone. */
  private unwait(f: PlainFlow): Buffer[] {
    const waiting = f.waiting ?? [];
    for (const d of waiting) {
      f.inFlight -= d.length;
      this.opts.server.bytes -= d.length;
    }
    f.waiting = undefined;
    return waiting;
  }

  private open(flow: number): PlainFlow {
    const target = this.opts.targetOf(flow);
    const socket = createSocket({ type: isIPv6(target.host) ? 'udp6' : 'udp4', recvBufferSize: this.opts.bufferSize });
    const f: PlainFlow = { socket, queue: undefined, inFlight: 0, waiting: [], ended: false };
    this.flows.set(flow, f);
    socket.on('message', (datagram) => this.datagramListener(flow, datagram));
    // An ICMP unreachable from the target (nothing listens yet) surfaces as an error on
    // a connected socket: the flow goes on (the application may start later).
    socket.on('error', noop);
    socket.on('connect', () => {
      const queue = (f.queue = new SendQueue(socket, this.opts.server, this.opts.dropped));
      // Given back, then sent within the same bounds (nothing else ran in between).
      for (const d of this.unwait(f)) if (!queue.send(d, f, this.opts.perFlowLimit)) this.opts.dropped('queue-full');
    });
    socket.on('close', () => {
      if (!f.ended) {
        this.forget(f);
        this.flows.delete(flow);
        this.flowEndListener(flow);
      }
    });
    socket.connect(target.port, target.host, (err?: Error) => {
      // Not resolvable or not reachable: the flow ends (its sender's next datagram opens another).
      if (err && !f.ended) socket.close();
    });
    return f;
  }
}

function noop(): void {}
