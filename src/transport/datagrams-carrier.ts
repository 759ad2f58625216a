/**
 * The contract between a UDP stream's flows (src/s2ds/udp) and what carries their datagrams
 * across the WAN: plain UDP (src/s2ds/udp) or framed inside the stream's TLS connections
 * (src/transport/datagrams.ts). Types only, so both sides code against the same file.
 */
/** Why the last send() returned false (the stream counts it under that cause). */
export type CarrierDrop = 'queue-full' | 'too-large' | 'no-flow' | 'no-connection';

export interface DatagramCarrier {
  /** Why the last refused send() was refused; absent: queue-full. */
  readonly lastDrop?: CarrierDrop;
  /** Sends one whole datagram of flow `flow`; false when it was dropped (queue full). */
  send(flow: number, datagram: Buffer): boolean;
  onDatagram(cb: (flow: number, datagram: Buffer) => void): void;
  onFlowEnd(cb: (flow: number) => void): void;
  endFlow(flow: number): void;
  close(): void;
}
