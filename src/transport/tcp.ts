import { createServer, connect, type NetConnectOpts, type Socket } from 'node:net';
import type { Address } from '../protocol/address.js';
import type { SocketOptions, Transport } from './index.js';

export interface TcpListener {
  /** Where it is bound (the actual port when 0 was asked). */
  readonly address: Address;
  close(): Promise<void>;
}

/**
 * Accepts TCP connections on `address`. Sockets arrive paused and half-open
 * capable: nothing is read until a transport or the forwarder takes them.
 */
export function listenTcp(address: Address, options: SocketOptions, onConnection: (socket: Socket) => void): Promise<TcpListener> {
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true, highWaterMark: options.highWaterMark }, onConnection);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
      server.off('error', reject);
      const bound = server.address();
      const port = typeof bound === 'object' && bound ? bound.port : address.port;
      resolve({
        address: { host: address.host, port },
        close: () => new Promise<void>((done) => server.close(() => done())),
      });
    });
  });
}

/** Plain TCP: the LAN legs, and the WAN leg only where s2cs runs with --allow-plaintext-data. */
export class TcpTransport implements Transport {
  readonly name = 'tcp';

  async accept(raw: Socket): Promise<Socket> {
    return raw;
  }

  connect(address: Address, options: SocketOptions): Promise<Socket> {
    return new Promise((resolve, reject) => {
      // highWaterMark is passed on to the stream constructor (not in @types/node's options type).
      const opts: NetConnectOpts & { highWaterMark: number } = {
        host: address.host,
        port: address.port,
        allowHalfOpen: true,
        noDelay: true,
        highWaterMark: options.highWaterMark,
      };
      if (options.reads) opts.onread = options.reads.onread as NetConnectOpts['onread'];
      const socket = connect(opts);
      socket.pause();
      const onError = (err: Error) => {
        socket.destroy();
        reject(err);
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve(socket);
      });
    });
  }
}
