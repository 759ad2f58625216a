import { Server, Socket, createServer, connect, type NetConnectOpts, type SocketConstructorOpts } from 'node:net';
import type { Address } from '../protocol/address.js';
import type { SocketOptions, Transport } from './index.js';
import type { ConnectionReads } from './reads.js';

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
  const server = dataServer(options, onConnection);
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

function dataServer(options: SocketOptions, onConnection: (socket: Socket) => void): Server {
  return createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true, highWaterMark: options.highWaterMark }, onConnection);
}

/**
 * As listenTcp, on a descriptor that already listens (a reserved port: see
 * transport/socket-options.ts listenReserved), which Node owns from now on and
 * closes with the listener. Synchronous: Node listens on a descriptor at once.
 * `onError`: an error Node reports later about the descriptor (not expected).
 */
export function listenTcpOn(fd: number, address: Address, options: SocketOptions, onConnection: (socket: Socket) => void, onError: (err: Error) => void): TcpListener {
  const server = dataServer(options, onConnection);
  server.on('error', onError);
  server.listen({ fd });
  const bound = server.address();
  return {
    address: { host: address.host, port: typeof bound === 'object' && bound ? bound.port : address.port },
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
}

/** Plain TCP: the LAN legs, and the WAN leg only where s2cs runs with --allow-plaintext-data. */
export class TcpTransport implements Transport {
  readonly name = 'tcp';

  /** With `options.reads`: the connection, from now on read into that memory (see readInto). */
  async accept(raw: Socket, options: SocketOptions): Promise<Socket> {
    return options.reads ? readInto(raw, options.reads, options.highWaterMark) : raw;
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

/** The parts of net.Socket that hand a connection's handle to another Socket. */
interface HandleHolder {
  _handle: object | null;
}

/**
 * A socket for the connection `raw` (accepted by a net.Server with pauseOnConnect,
 * not yet read from) that reads into `reads` instead of a new Buffer per chunk.
 * net.Server takes no `onread`, but net.Socket does, along with the handle of an
 * established connection (as child_process and cluster pass connections on): the
 * handle, same descriptor and socket options (SO_LINGER, TCP_NODELAY included),
 * moves to a new Socket and `raw` keeps none. `raw` still counts as the server's
 * connection, so it is closed with the new one (and the new one with it): its
 * 'close' keeps meaning "the connection is gone" for whoever watches it, and the
 * server's close() still waits for it. Paused, like `raw`, until resumed.
 * Plain TCP only: a TLS socket over `raw` keeps reading its own way (reads.ts).
 */
export function readInto(raw: Socket, reads: ConnectionReads, highWaterMark: number): Socket {
  if (reads.kind !== 'reused') throw new Error('an accepted plain TCP connection reads into a ReusedReadBuffer');
  const holder = raw as unknown as HandleHolder;
  const handle = holder._handle;
  // Closed meanwhile: nothing to move; the caller sees `raw` destroyed.
  if (raw.destroyed || !handle) return raw;
  // Read from already: some bytes would be in `raw`, the rest in the new socket.
  if (raw.readableFlowing === true || raw.bytesRead > 0) throw new Error('readInto: the accepted connection has been read from already');
  // `handle`, `pauseOnCreate` and `onread` are not in @types/node's constructor options.
  const opts: SocketConstructorOpts & {
    handle: object;
    pauseOnCreate: boolean;
    readableHighWaterMark: number;
    writableHighWaterMark: number;
    onread: NetConnectOpts['onread'];
  } = {
    handle,
    pauseOnCreate: true,
    allowHalfOpen: raw.allowHalfOpen,
    readable: true,
    writable: true,
    readableHighWaterMark: highWaterMark,
    writableHighWaterMark: highWaterMark,
    onread: reads.onread as NetConnectOpts['onread'],
  };
  holder._handle = null;
  const socket = new Socket(opts);
  socket.once('close', () => raw.destroy());
  raw.once('close', () => socket.destroy());
  return socket;
}
