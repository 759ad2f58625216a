// The data server running inside the s2cs process.
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { Refusals } from '../limits/refusals.js';
import { formatAddress, type Address } from '../protocol/address.js';
import { resourceExhausted, alreadyExists, notFound, type ScistreamError } from '../protocol/errors.js';
import { FRAME_HEADER, ReusedReadBuffer, RingReadBuffer, TcpTransport, TlsTransport, listenTcp, type TcpListener, type Transport } from '../transport/index.js';
import type { DataServer, ListenerOptions, StreamStats, WanLeg } from './index.js';
import { Pacer, type StreamPacing } from './pacer.js';
import type { RefusalKind } from '../limits/refusals.js';
import { abort, forward, type ByteCounters } from './forwarder.js';
import { ConnectionEnds } from './connection-ends.js';
import { resetOnClose } from '../transport/linger.js';
import { ListeningPorts, PortPool, type PortRange } from './ports.js';

export interface LocalDataServerOptions {
  /** Address the listeners bind to. */
  bindHost: string;
  /**
   * Host of the addresses startListeners returns, where peers reach the listeners
   * (the gateway's --listener-ip); default bindHost.
   */
  advertiseHost?: string;
  portRange: PortRange;
  /** Per-socket buffer bound in bytes (each direction of each connection). */
  bufferSize: number;
  /**
   * Connections that may wait for targets (arrived before UpdateTargets), per
   * stream. They are paused, so they hold a descriptor each but no buffers.
   */
  waitLimit: number;
  /** How long an early connection waits for UpdateTargets before it is closed. */
  waitTimeoutMs: number;
  /** Connections open at once on one listener (waiting or forwarding); more are refused. Default DATA_DEFAULTS. */
  maxConnsPerListener?: number;
  /**
   * Buffer memory all forwarded connections may hold together, in bytes. Each
   * connection reserves its worst case (connectionMemory) before its handshake
   * and target; one that does not fit is refused. Default DATA_DEFAULTS.
   */
  maxBufferMemory?: number;
  /** Where refusals are counted and logged (shared with the stream table). Default: a new one. */
  refusals?: Refusals;
  logger: Logger;
}

export const DATA_DEFAULTS = {
  /**
   * Load generators open many connections through one listener (the benchmark's
   * iperf3 -P 64 opens 65); beyond a few per core they add no throughput on a
   * 2-core gateway. 128 keeps such tools working while one listener cannot take
   * more than 256 descriptors; memory is bounded separately by maxBufferMemory.
   */
  maxConnsPerListener: 128,
  maxBufferMemory: 1024 ** 3,
  waitLimit: 1024,
} as const;

interface Waiting {
  socket: Socket;
  hold: Hold;
  timer: NodeJS.Timeout;
}

const TCP = new TcpTransport();

/** One accepted connection's hold on the gateway: its listener slot and its buffer reservation. */
interface Hold {
  listenerIndex: number;
  /** Bytes reserved from the buffer budget (0 while waiting for targets). */
  bytes: number;
}

class Stream {
  readonly sockets = new Set<Socket>();
  readonly waiting = new Set<Waiting>();
  readonly holds = new Set<Hold>();
  /** Open connections by listener index. */
  readonly perListener: number[];
  readonly counters: ByteCounters = { toTarget: 0, fromTarget: 0 };
  /** How its forwarded connections ended (s2cs tells a broken stream by it). */
  readonly ends = new ConnectionEnds();
  targets: Address[] | undefined;
  /** How accepted connections are taken on and targets reached; set with the targets. */
  acceptVia: Transport = TCP;
  connectVia: Transport = TCP;
  accepted = 0;
  refused = 0;
  active = 0;
  released = false;
  /** The stream's cap here, shared by its connections (absent: not capped). */
  readonly pacing: StreamPacing | undefined;

  constructor(
    readonly uid: string,
    readonly listeners: TcpListener[],
    readonly ports: number[],
    count: number,
    readonly capBps = 0,
  ) {
    this.perListener = new Array<number>(count).fill(0);
    this.pacing = capBps > 0 ? { toTarget: new Pacer(capBps), fromTarget: new Pacer(capBps) } : undefined;
  }
}

const BIND_CONFLICTS = new Set(['EADDRINUSE', 'EACCES']);

/** Where a spare listener's connections go: nowhere (reset) until a stream takes it. */
interface Seat {
  stream: Stream | undefined;
  index: number;
}

interface Spare {
  listener: TcpListener;
  port: number;
  seat: Seat;
}

export class LocalDataServer implements DataServer {
  private readonly pool: PortPool;
  /** Ports of the range other programs listen on (read from /proc, cached; never in the data path). */
  private readonly others: ListeningPorts;
  private readonly streams = new Map<string, Stream>();
  private readonly starting = new Map<string, Promise<unknown>>();
  private readonly refusals: Refusals;
  private readonly maxConnsPerListener: number;
  private readonly maxBufferMemory: number;
  /** Bytes reserved by all connections now (see connectionMemory). */
  private reservedMemory = 0;
  /** Bytes forwarded by streams already released (bytesTotal). */
  private releasedBytes = 0;
  /** Spare listeners by port: bound, their ports taken from the pool, no stream yet. */
  private readonly spares = new Map<number, Spare>();

  constructor(private readonly opts: LocalDataServerOptions) {
    this.pool = new PortPool(opts.portRange);
    this.others = new ListeningPorts(opts.portRange, opts.bindHost);
    this.refusals = opts.refusals ?? new Refusals(opts.logger);
    this.maxConnsPerListener = opts.maxConnsPerListener ?? DATA_DEFAULTS.maxConnsPerListener;
    this.maxBufferMemory = opts.maxBufferMemory ?? DATA_DEFAULTS.maxBufferMemory;
  }

  /** What this data server refused, by kind (with a shared Refusals, the stream table's too). */
  refusalTotals(): { kind: string; count: number }[] {
    return this.refusals.totals();
  }

  bufferMemory(): { reserved: number; limit: number } {
    return { reserved: this.reservedMemory, limit: this.maxBufferMemory };
  }

  /** Free: neither reserved by a stream nor listened on by another program (as far as /proc tells). */
  ports(): { reserved: number; free: number } {
    return { reserved: this.pool.reserved, free: Math.max(0, this.pool.available - this.portsHeldByOthers().length) };
  }

  /**
   * Ports of the range that other programs (or other sockets of this process)
   * listen on where this server's listeners would bind; [] where /proc is absent.
   */
  portsHeldByOthers(): number[] {
    return (this.others.ports() ?? []).filter((p) => !this.pool.isTaken(p));
  }

  /** Whether portsHeldByOthers can know anything here (Linux /proc). */
  canSeeOtherPrograms(): boolean {
    return this.others.ports() !== undefined;
  }

  async startListeners(uid: string, count: number, opts: ListenerOptions = {}): Promise<Address[]> {
    if (this.streams.has(uid) || this.starting.has(uid)) throw alreadyExists(`stream ${uid} already has listeners on this data server`);
    const work = this.bind(uid, count, opts.capBps ?? 0);
    this.starting.set(uid, work);
    try {
      const stream = await work;
      this.streams.set(uid, stream);
      const host = this.opts.advertiseHost ?? this.opts.bindHost;
      return stream.listeners.map((l) => ({ host, port: l.address.port }));
    } finally {
      this.starting.delete(uid);
    }
  }

  private async bind(uid: string, count: number, capBps: number): Promise<Stream> {
    const listeners: TcpListener[] = [];
    const ports: number[] = [];
    const busy: number[] = [];
    const exhausted = () => this.exhausted(count, ports.length, busy);
    if (this.pool.available < count) throw exhausted();
    const stream = new Stream(uid, listeners, ports, count, capBps);
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

  /**
   * Why a reservation of `count` ports failed: how many the streams hold, how
   * many other programs hold (found busy in this attempt, or listening per /proc),
   * and what to do about each. `mine` and `busy` are this attempt's ports, still taken.
   */
  private exhausted(count: number, mine: number, busy: readonly number[]): ScistreamError {
    const { first, last } = this.opts.portRange;
    const others = [...new Set([...busy, ...this.portsHeldByOthers()])].sort((a, b) => a - b);
    const byStreams = Math.max(0, this.pool.reserved - mine - busy.length);
    const free = Math.max(0, this.pool.size - byStreams - others.length);
    const advice =
      others.length > 0
        ? `stop the programs listening on ${portList(others)}, or start s2cs with a --port-range they do not use; release streams no longer needed (s2uc release UID) or ask for fewer connections`
        : 'release streams no longer needed (s2uc release UID), ask for fewer connections, or widen --port-range';
    return resourceExhausted(
      `not enough free ports in ${first}-${last} (--port-range) for ${count} connection(s): streams on this gateway hold ${byStreams} of its ${this.pool.size} ports, ` +
        `other programs listen on ${others.length} and ${free} ${free === 1 ? 'is' : 'are'} free; ${advice}`,
    );
  }

  private accept(stream: Stream, listenerIndex: number, socket: Socket): void {
    socket.on('error', noop);
    if (stream.released) {
      socket.destroy();
      return;
    }
    stream.accepted++;
    // Until the forwarder ends it cleanly, any close (this process dying included)
    // reaches the peer as a reset, never as a clean end (transport/linger.ts).
    resetOnClose(socket);
    if (stream.perListener[listenerIndex]! >= this.maxConnsPerListener) {
      this.refuse(stream, socket, 'conns-per-listener', `listener ${formatAddress(stream.listeners[listenerIndex]!.address)} already has ${this.maxConnsPerListener} connections (--max-conns-per-listener); refusing more`);
      return;
    }
    const hold: Hold = { listenerIndex, bytes: 0 };
    stream.perListener[listenerIndex]!++;
    stream.holds.add(hold);
    stream.sockets.add(socket);
    // Every path ends with the accepted socket closed (a TLS socket closes the one it wraps).
    socket.once('close', () => {
      stream.sockets.delete(socket);
      this.unhold(stream, hold);
    });
    if (stream.targets) {
      this.connect(stream, hold, socket);
      return;
    }
    if (stream.waiting.size >= this.opts.waitLimit) {
      this.refuse(stream, socket, 'waiting-conns', `stream ${stream.uid} already has ${this.opts.waitLimit} connections waiting for its connection map (UpdateTargets); refusing more`);
      return;
    }
    const waiting: Waiting = {
      socket,
      hold,
      timer: setTimeout(() => {
        stream.waiting.delete(waiting);
        this.refuse(stream, socket, 'waiting-conns', `no UpdateTargets for stream ${stream.uid} within the wait time; closed a waiting connection`);
      }, this.opts.waitTimeoutMs),
    };
    stream.waiting.add(waiting);
    socket.once('close', () => {
      clearTimeout(waiting.timer);
      stream.waiting.delete(waiting);
    });
  }

  /**
   * Closes a connection the gateway will not serve, at once and with a reset (the
   * peer must not take it for a clean, empty stream); counted, and logged at most
   * once per interval per kind.
   */
  private refuse(stream: Stream, socket: Socket, kind: RefusalKind, message: string, fields: Record<string, unknown> = {}): void {
    stream.refused++;
    this.refusals.count(kind, message, { uid: stream.uid, ...fields });
    abort(socket);
  }

  /** Gives back a connection's listener slot and buffer reservation; once per connection. */
  private unhold(stream: Stream, hold: Hold): void {
    if (!stream.holds.delete(hold)) return;
    stream.perListener[hold.listenerIndex]!--;
    this.reservedMemory -= hold.bytes;
    hold.bytes = 0;
  }

  /**
   * Reserves the connection's buffer memory, authenticates it (WAN side), then
   * opens its target and forwards. The reservation is given back when the
   * accepted socket closes, or at release.
   */
  private connect(stream: Stream, hold: Hold, raw: Socket): void {
    const targets = stream.targets!;
    const target = targets[hold.listenerIndex % targets.length]!;
    const acceptVia = stream.acceptVia;
    const connectVia = stream.connectVia;
    const need = connectionMemory(this.opts.bufferSize, acceptVia.name, connectVia.name);
    if (this.reservedMemory + need > this.maxBufferMemory) {
      this.refuse(
        stream,
        raw,
        'buffer-memory',
        `connections hold ${mib(this.reservedMemory)} of the ${mib(this.maxBufferMemory)} buffer memory (--max-buffer-memory) and one more needs ${mib(need)}; refusing new connections`,
      );
      return;
    }
    hold.bytes = need;
    this.reservedMemory += need;
    const peer = `${raw.remoteAddress}:${raw.remotePort}`;
    const options = { highWaterMark: this.opts.bufferSize };
    // A plain accepted connection is read into one reused buffer too (the socket
    // moves onto it, see transport/tcp.ts readInto); towards a TLS target, with room
    // for the WAN leg's frame header in front. TLS decrypts into its own buffers.
    const towardsFramed = acceptVia.name === 'tcp' && connectVia.name === 'tls';
    const acceptedReads =
      acceptVia.name === 'tcp'
        ? new ReusedReadBuffer(Buffer.allocUnsafe(readSize(this.opts.bufferSize, connectVia.name, stream.capBps) + (towardsFramed ? FRAME_HEADER : 0)), towardsFramed ? FRAME_HEADER : 0)
        : undefined;
    acceptVia.accept(raw, { ...options, reads: acceptedReads }).then(
      (socket) => {
        if (stream.released || raw.destroyed) {
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
            ? new ReusedReadBuffer(Buffer.allocUnsafe(readSize(this.opts.bufferSize, acceptVia.name, stream.capBps) + headroom), headroom)
            : new RingReadBuffer(Buffer.allocUnsafe(ringSize(this.opts.bufferSize)));
        connectVia.connect(target, { ...options, reads }).then(
          (out) => {
            if (stream.released || socket.destroyed) {
              out.destroy();
              socket.destroy();
              return;
            }
            resetOnClose(out);
            stream.sockets.add(out);
            out.once('close', () => stream.sockets.delete(out));
            stream.active++;
            stream.ends.watch(socket, out);
            forward(
              socket,
              out,
              stream.counters,
              () => {
                stream.active--;
              },
              reads,
              framed,
              socket === raw ? undefined : acceptedReads,
              stream.pacing,
            );
          },
          (err: NodeJS.ErrnoException) => {
            if (stream.released) {
              socket.destroy();
              return;
            }
            this.refuse(
              stream,
              socket,
              'target-unreachable',
              `cannot connect to target ${formatAddress(target)}: ${err.message}; closing the incoming connection`,
              { target: formatAddress(target), transport: connectVia.name, code: err.code },
            );
          },
        );
      },
      (err: Error) => {
        // The peer never reaches the target: nothing is opened for it.
        if (stream.released) {
          raw.destroy();
          return;
        }
        this.refuse(stream, raw, 'wan-auth', `refused a connection from ${peer}: it did not prove the stream's credentials (${err.message})`, { peer });
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
      this.connect(stream, w.hold, w.socket);
    }
  }

  async release(uid: string): Promise<void> {
    const pending = this.starting.get(uid);
    if (pending) await pending.catch(noop);
    const stream = this.streams.get(uid);
    if (!stream) return;
    this.streams.delete(uid);
    stream.released = true;
    this.releasedBytes += stream.counters.toTarget + stream.counters.fromTarget;
    for (const w of stream.waiting) clearTimeout(w.timer);
    stream.waiting.clear();
    // Streams cut short (release, shutdown) reach the applications as a reset, not a clean end.
    for (const s of stream.sockets) abort(s);
    // Destroyed sockets drop their buffers now; the reservations go with them, even
    // for a connection whose handshake or target dial is still settling.
    for (const h of [...stream.holds]) this.unhold(stream, h);
    await Promise.all(stream.listeners.map((l) => l.close()));
    for (const p of stream.ports) this.pool.give(p);
  }

  /**
   * Opens up to `count` spare listeners: bound ahead of any stream so that a
   * stream can take them without waiting for a bind (assignSpares). A connection
   * arriving on a spare is reset. Returns their ports (fewer when the range runs
   * out; none is an error).
   */
  async openSpares(count: number): Promise<number[]> {
    const opened: number[] = [];
    const busy: number[] = [];
    try {
      while (opened.length < count) {
        const port = this.pool.take();
        if (port === undefined) break;
        const seat: Seat = { stream: undefined, index: 0 };
        try {
          const listener = await listenTcp({ host: this.opts.bindHost, port }, { highWaterMark: this.opts.bufferSize }, (socket) => {
            if (seat.stream) this.accept(seat.stream, seat.index, socket);
            else {
              socket.on('error', noop);
              abort(socket);
            }
          });
          this.spares.set(port, { listener, port, seat });
          opened.push(port);
        } catch (err) {
          busy.push(port);
          if (!BIND_CONFLICTS.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
        }
      }
    } catch (err) {
      await this.releaseSpares(opened);
      throw err;
    } finally {
      for (const p of busy) this.pool.give(p);
    }
    if (opened.length === 0 && count > 0) throw this.exhausted(count, 0, busy);
    return opened;
  }

  /** Ports of the spare listeners not taken by a stream. */
  sparePorts(): number[] {
    return [...this.spares.keys()];
  }

  /**
   * A new stream whose listeners are these spares, in this order: what
   * startListeners would have opened, without binding. All or nothing.
   */
  assignSpares(uid: string, ports: readonly number[], capBps = 0): Address[] {
    if (this.streams.has(uid) || this.starting.has(uid)) throw alreadyExists(`stream ${uid} already has listeners on this data server`);
    if (ports.length === 0) throw notFound(`stream ${uid}: no spare listeners given`);
    const taken = ports.map((p) => this.spares.get(p));
    const missing = ports.filter((_, i) => !taken[i]);
    if (missing.length > 0 || new Set(ports).size !== ports.length) {
      throw notFound(`stream ${uid}: port(s) ${portList(missing.length > 0 ? missing : ports)} are not spare listeners of this data server (already taken, released, or never opened)`);
    }
    const spares = taken as Spare[];
    const stream = new Stream(uid, spares.map((s) => s.listener), [...ports], ports.length, capBps);
    spares.forEach((s, i) => {
      this.spares.delete(s.port);
      s.seat.stream = stream;
      s.seat.index = i;
    });
    this.streams.set(uid, stream);
    const host = this.opts.advertiseHost ?? this.opts.bindHost;
    return spares.map((s) => ({ host, port: s.listener.address.port }));
  }

  /** Closes spare listeners and returns their ports (ports that are not spares: ignored). */
  async releaseSpares(ports: readonly number[]): Promise<void> {
    const spares = ports.map((p) => this.spares.get(p)).filter((s): s is Spare => s !== undefined);
    for (const s of spares) this.spares.delete(s.port);
    await Promise.all(spares.map((s) => s.listener.close()));
    for (const s of spares) this.pool.give(s.port);
  }

  /** Uids of the streams holding listeners now. */
  uids(): string[] {
    return [...this.streams.keys()];
  }

  /** The stream's rate cap on this data server in bytes per second (0: none); undefined for an unknown uid. */
  capOf(uid: string): number | undefined {
    return this.streams.get(uid)?.capBps;
  }

  /** Targets of a stream (after setTargets) and whether its WAN leg runs TLS. */
  targetsOf(uid: string): { targets: Address[]; encrypted: boolean } | undefined {
    const s = this.streams.get(uid);
    if (!s) return undefined;
    return { targets: s.targets ?? [], encrypted: s.acceptVia !== TCP || s.connectVia !== TCP };
  }

  /** Bytes forwarded by every stream since the server started, both directions (released streams included). */
  bytesTotal(): number {
    let total = this.releasedBytes;
    for (const s of this.streams.values()) total += s.counters.toTarget + s.counters.fromTarget;
    return total;
  }

  /** Connections forwarding now, over all streams. */
  activeConnections(): number {
    let n = 0;
    for (const s of this.streams.values()) n += s.active;
    return n;
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
      ...s.ends.counts(),
    };
  }

  async close(): Promise<void> {
    await Promise.all([...this.starting.values()].map((p) => p.catch(noop)));
    await Promise.all([...this.streams.keys()].map((uid) => this.release(uid)));
    await this.releaseSpares([...this.spares.keys()]);
  }
}

/** The ring TLS records are read into: 16 records of 16 KiB. */
const RING_SIZE = 256 * 1024;

function ringSize(bufferSize: number): number {
  return Math.min(bufferSize, RING_SIZE);
}

/**
 * Slack per connection over the stream buffers: a write is taken even when it
 * crosses the high-water mark, and a read is pushed before the mark stops the
 * next one (one 64 KiB read or one 16 KiB TLS record each), plus OpenSSL's record
 * buffers and the socket objects.
 */
const CONNECTION_SLACK = 256 * 1024;

/**
 * The most buffer memory one forwarded connection can hold (user space; kernel
 * socket buffers not counted), with every high-water mark at `bufferSize` (b):
 * - towards the target: plain TCP reads into one reused buffer (readSize) and
 *   reads again only once the kernel took it: that buffer only. A TLS accepted
 *   socket keeps decrypting while its destination is full, until its readable
 *   buffer holds b; the target's writable buffer holds b more. 2b: with a target
 *   that does not read, 2 x 4 MiB was the 8 MiB per connection measured from
 *   outside (before plain accepted sockets read into a reused buffer).
 * - from the target: plain TCP reads into one reused buffer (readSize) written
 *   from there, the next read waiting until the kernel took it: that buffer only.
 *   TLS reads into a ring (ringSize) whose records wait in the accepted socket's
 *   writable buffer, up to b of them (past the ring, in one-off buffers).
 * Measured (test/s2ds/limits.test.ts, b = 1 MiB): arrayBuffers grows by about 2 MiB
 * per plain connection pushing into a target that does not read (the two reused
 * read buffers); before accepted connections read into one, 2b + 1 MiB.
 */
export function connectionMemory(bufferSize: number, accept: 'tcp' | 'tls', connect: 'tcp' | 'tls'): number {
  const fromTarget = connect === 'tcp' ? readSize(bufferSize, accept) : ringSize(bufferSize) + bufferSize;
  const toTarget = accept === 'tcp' ? readSize(bufferSize, connect) : 2 * bufferSize;
  return toTarget + fromTarget + CONNECTION_SLACK;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(bytes < 1024 ** 2 ? 2 : 0)} MiB`;
}

/**
 * How much one read from the producer takes. Measured (docs/benchmarks.md): 1 MiB
 * reads forward plain TCP near loopback speed for 1 to 64 connections (4 MiB is as
 * fast for one connection but slower for many); towards TLS, 256 KiB pieces keep
 * encryption and sending in step. Never more than the configured buffer. A capped
 * stream reads at most what its cap passes in 20 ms (at least 64 KiB): each of its
 * connections may take one read when the bucket allows, so the read is what the
 * stream can run ahead of its rate (measured: 1 MiB reads put 4 connections 6 %
 * above a 100 Mbit/s cap over 4 s).
 */
function readSize(bufferSize: number, towards: 'tcp' | 'tls', capBps = 0): number {
  const size = Math.min(bufferSize, towards === 'tls' ? 256 * 1024 : 1024 * 1024);
  return capBps > 0 ? Math.min(size, Math.max(64 * 1024, Math.round(capBps * 0.02))) : size;
}

/** The first few ports of a list, for a message. */
export function portList(ports: readonly number[], max = 5): string {
  return ports.length <= max ? ports.join(', ') : `${ports.slice(0, max).join(', ')} and ${ports.length - max} more`;
}

function noop(): void {}
