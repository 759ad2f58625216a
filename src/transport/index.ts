// A transport carries one leg of a stream: the LAN legs are plain TCP, the WAN
// leg between two gateways is TLS with the stream's own credentials. Listening
// is always TCP; a transport turns an accepted connection into an established
// one (TLS: after the handshake) and opens connections. The forwarder sees only
// net.Socket, of which tls.TLSSocket is a subclass.
import type { Socket } from 'node:net';
import type { Address } from '../protocol/address.js';

export interface SocketOptions {
  /** Stream buffer bound per direction, in bytes (see the forwarder). */
  highWaterMark: number;
  /** TCP connect only: read into this one buffer instead of a new Buffer per chunk (see ReusedReadBuffer). */
  reads?: ReusedReadBuffer;
}

type ReadHandler = (bytes: number, buffer: Buffer) => boolean;

/**
 * A connected socket's reads land in one buffer allocated once (the socket's
 * `onread` option): no allocation and no garbage per chunk, and reads as large as
 * the buffer. Only plain-TCP sockets we open can do this: net.Server has no
 * `onread`, and TLS keeps decrypting records it has already received into the
 * buffer after a pause. That is the producer's connection on the producer-side
 * gateway, where the stream's bulk data enters. Whoever takes the reads must be
 * done with the bytes before the socket reads again (return false to pause it).
 */
export class ReusedReadBuffer {
  private handler: ReadHandler | undefined;
  private early: Buffer[] = [];

  /** The `onread` option of net.connect. */
  readonly onread: { buffer: Buffer; callback: (bytes: number, buffer: Uint8Array) => boolean };

  constructor(readonly buffer: Buffer) {
    this.onread = {
      buffer,
      callback: (bytes, chunk) => (this.handler ? this.handler(bytes, chunk as Buffer) : this.keep(bytes, chunk as Buffer)),
    };
  }

  /** Hands every later read to `handler`; returns (copies of) what arrived before it was set. */
  take(handler: ReadHandler): Buffer[] {
    this.handler = handler;
    const early = this.early;
    this.early = [];
    return early;
  }

  // Before the forwarder takes over (e.g. data right behind the TLS handshake): keep
  // a copy and stop reading, so nothing is lost and at most one read is held.
  private keep(bytes: number, buffer: Buffer): boolean {
    this.early.push(Buffer.from(buffer.subarray(0, bytes)));
    return false;
  }
}

export interface Transport {
  readonly name: 'tcp' | 'tls';
  /** Server side of a connection accepted on a listener; rejects when the peer fails to authenticate. */
  accept(raw: Socket, options: SocketOptions): Promise<Socket>;
  /** Client side: opens a connection; resolves once it is established. */
  connect(address: Address, options: SocketOptions): Promise<Socket>;
}

export { TcpTransport, listenTcp, type TcpListener } from './tcp.js';
export { TlsTransport, type StreamCredentials } from './tls.js';
