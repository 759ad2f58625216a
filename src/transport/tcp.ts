import { createServer, connect, type NetConnectOpts, type Socket } from 'node:net';
import type { Address } from '../protocol/address.js';
import type { ListenOptions, Transport, TransportListener } from './index.js';

export class TcpTransport implements Transport {
  readonly name = 'tcp';

  listen(address: Address, options: ListenOptions, onConnection: (socket: Socket) => void): Promise<TransportListener> {
    const server = createServer(
      { allowHalfOpen: true, pauseOnConnect: true, noDelay: true, highWaterMark: options.highWaterMark },
      onConnection,
    );
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: address.host, port: address.port, exclusive: true }, () => {
        server.off('error', reject);
        const bound = server.address();
        const port = typeof bound === 'object' && bound ? bound.port : address.port;
        resolve({
          address: { host: address.host, port },
          close: () =>
            new Promise<void>((done) => {
              server.close(() => done());
            }),
        });
      });
    });
  }

  connect(address: Address, options: ListenOptions): Promise<Socket> {
    return new Promise((resolve, reject) => {
      // highWaterMark is passed on to the stream constructor (not in @types/node's options type).
      const opts: NetConnectOpts & { highWaterMark: number } = {
        host: address.host,
        port: address.port,
        allowHalfOpen: true,
        noDelay: true,
        highWaterMark: options.highWaterMark,
      };
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
