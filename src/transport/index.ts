// A transport carries one leg of a stream (LAN or WAN). The forwarder sees only
// net.Socket, so plain TCP and TLS (a net.Socket subclass) are interchangeable.
import type { Socket } from 'node:net';
import type { Address } from '../protocol/address.js';

export interface ListenOptions {
  /** Kernel and stream buffer size for accepted sockets, in bytes. */
  highWaterMark: number;
}

export interface TransportListener {
  /** Where it is bound (the actual port when 0 was asked). */
  readonly address: Address;
  close(): Promise<void>;
}

export interface Transport {
  readonly name: string;
  /**
   * Accepts connections on `address`. Sockets arrive paused and half-open
   * capable: nothing is read until the forwarder resumes them.
   */
  listen(address: Address, options: ListenOptions, onConnection: (socket: Socket) => void): Promise<TransportListener>;
  /** Opens a connection; resolves once it is established. */
  connect(address: Address, options: ListenOptions): Promise<Socket>;
}

export { TcpTransport } from './tcp.js';
