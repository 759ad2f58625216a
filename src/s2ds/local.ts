// The data server running inside the s2cs process.
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { formatAddress, type Address } from '../protocol/address.js';
import { resourceExhausted, alreadyExists, notFound } from '../protocol/errors.js';
import { FRAME_HEADER, ReusedReadBuffer, RingReadBuffer, TcpTransport, TlsTransport, listenTcp, type TcpListener, type Transport } from '../transport/index.js';
import type { DataServer, StreamStats, WanLeg } from './index.js';
import { abort, forward, type ByteCounters } from './forwarder.js';
import { PortPool, type PortRange } from './ports.js';

export interface LocalDataServerOptions {
  /** Address the listeners bind to. */
  bindHost: string;
  portRange: PortRange;
  /** Per-socket buffer bound in bytes (each direction of each connection). */
  bufferSize: number;
  /** Connections that may wait for targets, per stream. */
  waitLimit: number;
  /** How long an early connection waits for UpdateTargets before it is closed. */
  waitTimeoutMs: number;
  logger: Logger;
}

interface Waiting {
  socket: Socket;
  listenerIndex: number;
  timer: NodeJS.Timeout;
}

const TCP = new TcpTransport();

class Stream {
  readonly sockets = new Set<Socket>();
  readonly waiting = new Set<Waiting>();
  readonly counters: ByteCounters = { toTarget: 0, fromTarget: 0 };
  targets: Address[] | undefined;
  /** How accepted connections are taken on and targets reached; set with the targets. */
  acceptVia: Transport = TCP;
  connectVia: Transport = TCP;
  accepted = 0;
  refused = 0;
  active = 0;
  released = false;

  constructor(
    readonly uid: string,
    readonly listeners: TcpListener[],
    readonly ports: number[],
  ) {}
}

const BIND_CONFLICTS = new Set(['EADDRINUSE', 'EACCES']);

export class LocalDataServer implements DataServer {
  private readonly pool: PortPool;
  private readonly streams = new Map<string, Stream>();
  private readonly starting = new Map<string, Promise<unknown>>();

  constructor(private readonly opts: LocalDataServerOptions) {
    this.pool = new PortPool(opts.portRange);
  }

  ports(): { reserved: number; free: number } {
    return { reserved: this.pool.reserved, free: this.pool.available };
  }

  async startListeners(uid: string, count: number): Promise<Address[]> {
    if (this.streams.has(uid) || this.starting.has(uid)) throw alreadyExists(`stream ${uid} already has listeners on this data server`);
    const work = this.bind(uid, count);
    this.starting.set(uid, work);
    try {
      const stream = await work;
      this.streams.set(uid, stream);
      return stream.listeners.map((l) => l.address);
    } finally {
      this.starting.delete(uid);
    }
  }

  private async bind(uid: string, count: number): Promise<Stream> {
    const { first, last } = this.opts.portRange;
    const exhausted = () =>
      resourceExhausted(
        `not enough free ports in ${first}-${last} for ${count} connection(s) (${this.pool.available} free of ${this.pool.size}); ` +
          'release streams that are no longer needed, ask for fewer connections, or widen --port-range',
      );
    if (this.pool.available < count) throw exhausted();
    const listeners: TcpListener[] = [];
    const ports: number[] = [];
    const busy: number[] = [];
    const stream = new Stream(uid, listeners, ports);
    try {
      while (listeners.length < count) {
        const port = this.pool.take();
        if (port === undefined) throw exhausted();
        const index = listeners.length;
        try {
          const listener = await listenTcp({ host: this.opts.bindHost, port }, { highWaterMark: this.opts.bufferSize }, (socket) =>
            this.accept(stream, index, socket),
          );
          listeners.push(listener);
          ports.push(port);
        } catch (err) {
          busy.push(port);
          const code = (err as NodeJS.ErrnoException).code ?? '';
          if (!BIND_CONFLICTS.has(code)) throw err;
          this.opts.logger.debug({ port, code }, 'port in range is taken by another program; skipping it');
        }
      }
      return stream;
    } catch (err) {
      stream.released = true;
      await Promise.all(listeners.map((l) => l.close()));
      for (const p of ports) this.pool.give(p);
      throw err;
    } finally {
      for (const p of busy) this.pool.give(p);
    }
  }

  private accept(stream: Stream, listenerIndex: number, socket: Socket): void {
    socket.on('error', noop);
    if (stream.released) {
      socket.destroy();
      return;
    }
    stream.accepted++;
    stream.sockets.add(socket);
    socket.once('close', () => stream.sockets.delete(socket));
    if (stream.targets) {
      this.connect(stream, listenerIndex, socket);
      return;
    }
    if (stream.waiting.size >= this.opts.waitLimit) {
      this.opts.logger.warn({ uid: stream.uid, peer: socket.remoteAddress }, 'too many connections waiting for the connection map; closing one');
      socket.destroy();
      return;
    }
    const waiting: Waiting = {
      socket,
      listenerIndex,
      timer: setTimeout(() => {
        stream.waiting.delete(waiting);
        this.opts.logger.warn({ uid: stream.uid, peer: socket.remoteAddress }, 'no UpdateTargets in time; closing a waiting connection');
        socket.destroy();
      }, this.opts.waitTimeoutMs),
    };
    stream.waiting.add(waiting);
    socket.once('close', () => {
      clearTimeout(waiting.timer);
      stream.waiting.delete(waiting);
    });
  }

  /** Authenticates the accepted connection (WAN side), then opens its target and forwards. */
  private connect(stream: Stream, listenerIndex: number, raw: Socket): void {
    const targets = stream.targets!;
    const target = targets[listenerIndex % targets.length]!;
    const peer = `${raw.remoteAddress}:${raw.remotePort}`;
    const options = { highWaterMark: this.opts.bufferSize };
    const acceptVia = stream.acceptVia;
    const connectVia = stream.connectVia;
    acceptVia.accept(raw, options).then(
      (socket) => {
        if (stream.released) {
          socket.destroy();
          return;
        }
        stream.sockets.add(socket);
        socket.once('close', () => stream.sockets.delete(socket));
        socket.on('error', noop);
        // What comes from the target is read into memory allocated once per
        // connection: from the producer (plain TCP), one reused buffer; from the WAN
        // (TLS, record by record), a ring of them (see transport/reads.ts).
        // A TLS WAN leg is framed (transport/frames.ts): reads towards it leave room for the header.
        const framed = acceptVia.name === 'tls' ? 'accepted' : connectVia.name === 'tls' ? 'target' : undefined;
        const headroom = framed === 'accepted' ? FRAME_HEADER : 0;
        const reads =
          connectVia.name === 'tcp'
            ? new ReusedReadBuffer(Buffer.allocUnsafe(readSize(this.opts.bufferSize, acceptVia) + headroom), headroom)
            : new RingReadBuffer(Buffer.allocUnsafe(Math.min(this.opts.bufferSize, RING_SIZE)));
        connectVia.connect(target, { ...options, reads }).then(
          (out) => {
            if (stream.released || socket.destroyed) {
              out.destroy();
              socket.destroy();
              return;
            }
            stream.sockets.add(out);
            out.once('close', () => stream.sockets.delete(out));
            stream.active++;
            forward(
              socket,
              out,
              stream.counters,
              () => {
                stream.active--;
              },
              reads,
              framed,
            );
          },
          (err: NodeJS.ErrnoException) => {
            this.opts.logger.warn(
              { uid: stream.uid, target: formatAddress(target), transport: connectVia.name, code: err.code },
              `cannot connect to target ${formatAddress(target)}: ${err.message}; closing the incoming connection`,
            );
            abort(socket);
          },
        );
      },
      (err: Error) => {
        // The peer never reaches the target: nothing is opened for it.
        stream.refused++;
        this.opts.logger.warn({ uid: stream.uid, peer, reason: err.message }, `refused a connection from ${peer}: it did not prove the stream's credentials`);
        raw.destroy();
      },
    );
  }

  async setTargets(uid: string, targets: Address[], wan?: WanLeg): Promise<void> {
    const stream = this.streams.get(uid);
    if (!stream) throw notFound(`stream ${uid} has no listeners on this data server`);
    const secured = wan ? new TlsTransport(wan.credentials) : TCP;
    stream.acceptVia = wan?.side === 'accept' ? secured : TCP;
    stream.connectVia = wan?.side === 'connect' ? secured : TCP;
    stream.targets = targets;
    for (const w of stream.waiting) {
      clearTimeout(w.timer);
      stream.waiting.delete(w);
      this.connect(stream, w.listenerIndex, w.socket);
    }
  }

  async release(uid: string): Promise<void> {
    const pending = this.starting.get(uid);
    if (pending) await pending.catch(noop);
    const stream = this.streams.get(uid);
    if (!stream) return;
    this.streams.delete(uid);
    stream.released = true;
    for (const w of stream.waiting) clearTimeout(w.timer);
    stream.waiting.clear();
    // Streams cut short (release, shutdown) reach the applications as a reset, not a clean end.
    for (const s of stream.sockets) abort(s);
    await Promise.all(stream.listeners.map((l) => l.close()));
    for (const p of stream.ports) this.pool.give(p);
  }

  stats(uid: string): StreamStats | undefined {
    const s = this.streams.get(uid);
    if (!s) return undefined;
    return {
      uid,
      listeners: s.listeners.length,
      activeConnections: s.active,
      waitingConnections: s.waiting.size,
      acceptedConnections: s.accepted,
      bytesToTarget: s.counters.toTarget,
      bytesFromTarget: s.counters.fromTarget,
      refusedConnections: s.refused,
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.starting.values()].map((p) => p.catch(noop)));
    await Promise.all([...this.streams.keys()].map((uid) => this.release(uid)));
  }
}

/** The ring TLS records are read into: 16 records of 16 KiB. */
const RING_SIZE = 256 * 1024;

/**
 * How much one read from the producer takes. Measured (docs/benchmarks.md): 1 MiB
 * reads forward plain TCP near loopback speed for 1 to 64 connections (4 MiB is as
 * fast for one connection but slower for many); towards TLS, 256 KiB pieces keep
 * encryption and sending in step. Never more than the configured buffer.
 */
function readSize(bufferSize: number, towards: Transport): number {
  return Math.min(bufferSize, towards.name === 'tls' ? 256 * 1024 : 1024 * 1024);
}

function noop(): void {}
