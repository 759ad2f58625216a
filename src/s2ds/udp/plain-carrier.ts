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

interface PlainFlow {
  socket: Socket;
  /** Bytes handed to send, not yet sent. */
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
    const n = datagram.length;
    const server = this.opts.server;
    if (f.inFlight + n > this.opts.perFlowLimit || server.bytes + n > server.limit) return false;
    f.inFlight += n;
    server.bytes += n;
    if (f.waiting) f.waiting.push(datagram);
    else this.write(f, datagram);
    return true;
  }

  private write(f: PlainFlow, datagram: Buffer): void {
    const n = datagram.length;
    const server = this.opts.server;
    f.socket.send(datagram, (err) => {
      f.inFlight -= n;
      server.bytes -= n;
      if (err && (err as NodeJS.ErrnoException).code === 'EMSGSIZE') this.opts.dropped('too-large');
    });
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

  /** Datagrams that never reached send give their bytes back. */
  private forget(f: PlainFlow): void {
    for (const d of f.waiting ?? []) {
      f.inFlight -= d.length;
      this.opts.server.bytes -= d.length;
    }
    f.waiting = undefined;
  }

  private open(flow: number): PlainFlow {
    const target = this.opts.targetOf(flow);
    const socket = createSocket({ type: isIPv6(target.host) ? 'udp6' : 'udp4' });
    const f: PlainFlow = { socket, inFlight: 0, waiting: [], ended: false };
    this.flows.set(flow, f);
    socket.on('message', (datagram) => this.datagramListener(flow, datagram));
    // An ICMP unreachable from the target (nothing listens yet) surfaces as an error on
    // a connected socket: the flow goes on (the application may start later).
    socket.on('error', noop);
    socket.on('connect', () => {
      const waiting = f.waiting ?? [];
      f.waiting = undefined;
      for (const d of waiting) this.write(f, d);
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
