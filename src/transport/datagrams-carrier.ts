// src/transport/datagrams-carrier.ts
export interface DatagramCarrier {
  /** Sends one whole datagram of flow `flow`; false when it was dropped (queue full). */
  send(flow: number, datagram: Buffer): boolean;
  onDatagram(cb: (flow: number, datagram: Buffer) => void): void;
  onFlowEnd(cb: (flow: number) => void): void;
  endFlow(flow: number): void;
  close(): void;
}
