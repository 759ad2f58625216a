// A stand-in for the encrypted WAN carrier (transport/datagrams.ts, built in parallel):
// two DatagramCarrier ends in one process, joined by the event loop, so that the flow side
// of a UDP stream (consumer: setTargets with a carrier; producer: acceptFrom) can be tested
// at its seam. Bounded like the real one: send is false over `limit` datagrams in flight.
import type { DatagramCarrier } from '../../src/transport/datagrams-carrier.js';

class End implements DatagramCarrier {
  other!: End;
  inFlight = 0;
  closed = false;
  datagram: (flow: number, d: Buffer) => void = () => {};
  flowEnd: (flow: number) => void = () => {};

  constructor(private readonly limit: number) {}

  send(flow: number, datagram: Buffer): boolean {
    if (this.closed || this.inFlight >= this.limit) return false;
    this.inFlight++;
    const copy = Buffer.from(datagram);
    setImmediate(() => {
      this.inFlight--;
      if (!this.other.closed) this.other.datagram(flow, copy);
    });
    return true;
  }

  onDatagram(cb: (flow: number, datagram: Buffer) => void): void {
    this.datagram = cb;
  }

  onFlowEnd(cb: (flow: number) => void): void {
    this.flowEnd = cb;
  }

  endFlow(flow: number): void {
    setImmediate(() => this.other.flowEnd(flow));
  }

  close(): void {
    this.closed = true;
  }
}

export function carrierPair(limit = 1024): [DatagramCarrier, DatagramCarrier] {
  const a = new End(limit);
  const b = new End(limit);
  a.other = b;
  b.other = a;
  return [a, b];
}
