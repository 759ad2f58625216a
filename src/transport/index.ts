// A transport carries one leg of a stream: the LAN legs are plain TCP, the WAN
// leg between two gateways is TLS with the stream's own credentials. Listening
// is always TCP; a transport turns an accepted connection into an established
// one (TLS: after the handshake) and opens connections. The forwarder sees only
// net.Socket, of which tls.TLSSocket is a subclass.
import type { Socket } from 'node:net';
import type { Address } from '../protocol/address.js';
import type { ConnectionReads } from './reads.js';

export interface SocketOptions {
  /** Stream buffer bound per direction, in bytes (see the forwarder). */
  highWaterMark: number;
  /**
   * Read into memory allocated once instead of a new Buffer per chunk (see reads.ts):
   * connections opened, and plain TCP connections accepted (a ReusedReadBuffer).
   */
  reads?: ConnectionReads;
  /** TLS: how long the peer has to complete its handshake (default 10 s). */
  handshakeTimeoutMs?: number;
}

export interface Transport {
  readonly name: 'tcp' | 'tls';
  /** Server side of a connection accepted on a listener; rejects when the peer fails to authenticate. */
  accept(raw: Socket, options: SocketOptions): Promise<Socket>;
  /** Client side: opens a connection; resolves once it is established. */
  connect(address: Address, options: SocketOptions): Promise<Socket>;
}

export { TcpTransport, listenTcp, listenTcpOn, readInto, type TcpListener } from './tcp.js';
export { TlsTransport, HandshakeTimedOut, WAN_OPEN_ALPN, opensAtFrame, type StreamCredentials } from './tls.js';
export { readFirstFrame } from './first-frame.js';
export { ReusedReadBuffer, RingReadBuffer, type ConnectionReads } from './reads.js';
export { FrameReader, END_FRAME, HEARTBEAT_FRAME, FRAME_HEADER, MAX_FRAME_PAYLOAD, TCP_CONNECTION_FRAME, dataHeader, isTcpConnectionFrame, writeDataHeader } from './frames.js';
