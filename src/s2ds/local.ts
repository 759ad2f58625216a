// The data server running inside the s2cs process.
import { lookup } from 'node:dns/promises';
import { isIP, type Socket } from 'node:net';
import type { Logger } from '../log.js';
import { Refusals } from '../limits/refusals.js';
import { formatAddress, type Address } from '../protocol/address.js';
import { ScistreamError, resourceExhausted, alreadyExists, failedPrecondition, invalidArgument, notFound } from '../protocol/errors.js';
import { AllowList } from '../protocol/cidr.js';
import {
  FRAME_HEADER,
  HandshakeTimedOut,
  TCP_CONNECTION_FRAME,
  ReusedReadBuffer,
  RingReadBuffer,
  TlsTransport,
  isTcpConnectionFrame,
  listenTcp,
  listenTcpOn,
  opensAtFrame,
  readFirstFrame,
  type TcpListener,
} from '../transport/index.js';
import type { DataServer, ListenerOptions, StreamStats, WanLeg } from './index.js';
import type { RefusalKind } from '../limits/refusals.js';
import { abort, forward } from './forwarder.js';
import { AccessLog, keepRecent, type ConnectionRecord } from './access-log.js';
import { resetOnClose } from '../transport/linger.js';
import { closeReserved, keepDataSocketAlive, listenReserved } from '../transport/socket-options.js';
import { BIND_CONFLICTS, SparePorts, sparesUnavailable, type Spare } from './local-spares.js';
import { BACKLOG, bindShared, listenShared, shareReserved, sharedListenersUnavailable } from './shared-listeners.js';
import { WAN_DEAD_AFTER_DEFAULT_MS, WanGuard } from './liveness.js';
import { ListeningPorts, PortPool, type PortRange } from './ports.js';
import { ADMISSION_DEFAULTS, Admission, type AdmissionOptions } from './admission.js';
import { connectionMemory, readSize, ringSize } from './buffers.js';
import { DropTotals, InFlight, UDP_DEFAULTS, UdpStream } from './udp/index.js';
import { WarmConnections, WARM_WAIT_MS, type Dialed } from './warm.js';
import { acceptInto, acceptLeg, closeLeg, dialLeg, retarget, type UdpWanLeg, type UdpWanLegHooks } from './udp/wan-leg.js';
import type { UdpWanOptions } from './udp/wan.js';
import { Stream, TCP, type Connection, type Trace, type Waiting } from './local-stream.js';

export interface LocalDataServerOptions extends AdmissionOptions {
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
  /**
   * Connections admitted at once on one listener (authenticated, or matched to their
   * target, and forwarding); more are refused. Default DATA_DEFAULTS.
   */
  maxConnsPerListener?: number;
  /**
   * Buffer memory all connections may hold together, in bytes. A connection holds a
   * small fixed share until it is admitted (admission.ts), then its worst case
   * (connectionMemory); one that does not fit is refused. Default DATA_DEFAULTS.
   */
  maxBufferMemory?: number;
  /** Where refusals are counted and logged (shared with the stream table). Default: a new one. */
  refusals?: Refusals;
  /**
   * --wan-dead-after, ms: a framed WAN connection that hears nothing for this long is
   * broken (liveness.ts); every data socket's keepalive and TCP user timeout follow
   * it (transport/socket-options.ts). Default 30 s.
   */
  wanDeadAfterMs?: number;
  /**
   * Consumer gateway: keep a WAN connection ready per listener of an encrypted stream in
   * use (warm.ts). Default true; tests that count the producer gateway's reservations
   * exactly turn it off.
   */
  warmWanConnections?: boolean;
  /** UDP streams: flows per listener (--max-udp-flows), default UDP_DEFAULTS. */
  maxUdpFlows?: number;
  /** UDP streams: a flow ends after this long without a datagram (--udp-idle-timeout), ms. */
  udpIdleTimeoutMs?: number;
  /** UDP streams: bytes in flight per flow, and over every flow (udp/budget.ts). */
  maxUdpQueuedPerFlow?: number;
  maxUdpQueued?: number;
  /** Where each connection's line goes when it ends (--access-log). Default: the logger (stderr). */
  accessLog?: AccessLog;
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

export class LocalDataServer implements DataServer {
  private readonly pool: PortPool;
  /** Ports of the range other programs listen on (read from /proc, cached; never in the data path). */
  private readonly others: ListeningPorts;
  private readonly streams = new Map<string, Stream>();
  private readonly starting = new Map<string, Promise<unknown>>();
  private readonly refusals: Refusals;
  private readonly maxConnsPerListener: number;
  /** Pending and admitted connections' buffer reservations and per-source caps. */
  private readonly admission: Admission;
  private readonly handshakeTimeoutMs: number;
  /** Bytes forwarded by streams already released (bytesTotal). */
  private releasedBytes = 0;
  /**
   * Ports whose listeners this server closed, with when: the reading of /proc
   * (cached for a second) may still show them listening, and they are not another
   * program's: free the moment a release answers.
   */
  private readonly closedLately = new Map<number, number>();
  /** Spare listeners by port: bound, their ports taken from the pool, no stream yet. */
  private readonly spares: SparePorts;
  /** Heartbeats and dead-peer checks of the framed WAN connections; counts their breaks. */
  private readonly wan: WanGuard;
  private readonly accessLog: AccessLog;
  /** The access log is this server's own (not given): closed with it. */
  private readonly ownsAccessLog: boolean;
  /** Each accepted socket's trace, so that any refusal of it (refuse) names its cause in the access log. */
  private readonly traces = new WeakMap<Socket, Trace>();
  /** close() under way: connections it ends ended with the gateway ('shutdown'), not with a release. */
  private closing = false;
  /** UDP streams: bytes in flight over every flow, and drops over every stream (released ones too). */
  private readonly udpInFlight: InFlight;
  private readonly datagramDrops = new DropTotals();

  constructor(private readonly opts: LocalDataServerOptions) {
    this.udpInFlight = new InFlight(opts.maxUdpQueued ?? UDP_DEFAULTS.maxQueuedPerServer);
    this.pool = new PortPool(opts.portRange);
    this.spares = new SparePorts(this.pool);
    this.others = new ListeningPorts(opts.portRange, opts.bindHost);
    this.refusals = opts.refusals ?? new Refusals(opts.logger);
    this.maxConnsPerListener = opts.maxConnsPerListener ?? DATA_DEFAULTS.maxConnsPerListener;
    this.admission = new Admission({
      maxBufferMemory: opts.maxBufferMemory ?? DATA_DEFAULTS.maxBufferMemory,
      maxPending: opts.maxPendingConns ?? ADMISSION_DEFAULTS.maxPending,
      maxPendingPerPeer: opts.maxPendingConnsPerPeer ?? ADMISSION_DEFAULTS.maxPendingPerPeer,
      maxPendingPerPeerPerListener: opts.maxPendingConnsPerPeerPerListener ?? ADMISSION_DEFAULTS.maxPendingPerPeerPerListener,
    });
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? ADMISSION_DEFAULTS.handshakeTimeoutMs;
    this.wan = new WanGuard({ deadAfterMs: opts.wanDeadAfterMs ?? WAN_DEAD_AFTER_DEFAULT_MS, logger: opts.logger });
    this.ownsAccessLog = opts.accessLog === undefined;
    this.accessLog = opts.accessLog ?? new AccessLog({ format: 'json', logger: opts.logger });
  }

  /** Broken WAN connections since start, by cause (liveness.ts). */
  wanBreakTotals(): { cause: string; count: number }[] {
    return this.wan.totals();
  }

  /** What this data server refused, by kind (with a shared Refusals, the stream table's too). */
  refusalTotals(): { kind: string; count: number }[] {
    return this.refusals.totals();
  }

  bufferMemory(): { reserved: number; limit: number } {
    return this.admission.memory();
  }

  /** Connections accepted and not yet authenticated (WAN handshake) or matched to a target. */
  pendingConnections(): number {
    return this.admission.pending;
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
    const listening = this.others.ports() ?? [];
    const readAt = this.others.readAt() ?? 0;
    // Closed before the reading: it knows.
    for (const [port, at] of this.closedLately) if (at < readAt) this.closedLately.delete(port);
    return listening.filter((p) => !this.pool.isTaken(p) && !this.closedLately.has(p));
  }

  /** Ports of listeners this server closed, back in the pool. */
  private giveBack(ports: Iterable<number>): void {
    const now = Date.now();
    for (const p of ports) {
      this.pool.give(p);
      this.closedLately.set(p, now);
    }
  }

  /** Whether portsHeldByOthers can know anything here (Linux /proc). */
  canSeeOtherPrograms(): boolean {
    return this.others.ports() !== undefined;
  }

  async startListeners(uid: string, count: number, opts: ListenerOptions = {}): Promise<Address[]> {
    if (this.streams.has(uid) || this.starting.has(uid)) throw alreadyExists(`stream ${uid} already has listeners on this data server`);
    const share = shareOf(opts);
    const cap = opts.capBps ?? 0;
    const work =
      share === 'join' ? this.join(uid, opts.join!, cap) : opts.ports && opts.ports.length > 0 ? this.bindChosen(uid, opts.ports, cap, share === 'own') : this.bind(uid, count, cap, share === 'own');
    this.starting.set(uid, work);
    try {
      const stream = await work;
      if (opts.allowFrom && opts.allowFrom.length > 0) stream.allow = new AllowList(opts.allowFrom);
      if (opts.protocol === 'udp') await this.bindUdp(stream);
      this.streams.set(uid, stream);
      const host = this.opts.advertiseHost ?? this.opts.bindHost;
      return stream.listeners.map((l) => ({ host, port: l.address.port }));
    } finally {
      this.starting.delete(uid);
    }
  }

  /**
   * A UDP stream: a UDP socket on each of its listeners' ports (the TCP listener keeps
   * the port's place in the pool, and carries TCP as the reference's Nginx does on both).
   * All or none: on failure the TCP listeners are closed and their ports given back.
   */
  private async bindUdp(stream: Stream): Promise<void> {
    const udp = new UdpStream(
      stream.uid,
      stream.ports.length,
      {
        maxFlowsPerListener: this.opts.maxUdpFlows ?? UDP_DEFAULTS.maxFlowsPerListener,
        idleTimeoutMs: this.opts.udpIdleTimeoutMs ?? UDP_DEFAULTS.idleTimeoutS * 1000,
        maxQueuedPerFlow: this.opts.maxUdpQueuedPerFlow ?? UDP_DEFAULTS.maxQueuedPerFlow,
        server: this.udpInFlight,
        totals: this.datagramDrops,
        bufferSize: this.opts.bufferSize,
      },
      stream.pacing,
      () => stream.allow,
    );
    try {
      await udp.bind(this.opts.bindHost, stream.ports);
    } catch (err) {
      stream.released = true;
      await Promise.all(stream.listeners.map((l) => l.close()));
      this.giveBack(stream.ports);
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (!BIND_CONFLICTS.has(code)) throw err;
      throw resourceExhausted(`stream ${stream.uid}: a UDP socket could not bind one of ports ${portList(stream.ports)} (${code}): another program holds it for UDP; ask for other ports, or stop that program`);
    }
    stream.udp = udp;
  }

  /**
   * Opens listener `index` of a stream on `port`: as Node listens, or (shared) as the
   * owner of a listener the gateway's other workers join (shared-listeners.ts).
   */
  private async listenOn(stream: Stream, index: number, port: number, share: 'own' | 'join' | undefined): Promise<TcpListener> {
    const address = { host: this.opts.bindHost, port };
    const options = { highWaterMark: this.opts.bufferSize };
    const onConnection = (socket: Socket) => this.accept(stream, index, socket);
    if (!share) return listenTcp(address, options, onConnection);
    const fd = bindShared(await this.numericBindHost(), port, share === 'join');
    return listenShared(fd, address, options, onConnection, (err) =>
      this.opts.logger.warn({ uid: stream.uid, port, err: err.message }, 'a listener shared by the workers failed'),
    );
  }

  /**
   * Joins listeners another worker of this gateway owns (shared-listeners.ts): the
   * same ports, bound with SO_REUSEPORT, so that the kernel gives this worker its part
   * of their connections. The ports are not this server's: outside its range, never
   * taken from or given back to its pool. All or none.
   */
  private async join(uid: string, ports: readonly number[], capBps: number): Promise<Stream> {
    const { first, last } = this.opts.portRange;
    const mine = ports.filter((p) => p >= first && p <= last);
    if (mine.length > 0) {
      throw invalidArgument(`port(s) ${portList(mine)} are in this data server's own range ${first}-${last}: a worker joins only listeners other workers own; open its own ports with StartListeners`);
    }
    const listeners: TcpListener[] = [];
    const stream = new Stream(uid, listeners, [...ports], ports.length, capBps);
    stream.joined = true;
    stream.shared = true;
    try {
      for (const [index, port] of ports.entries()) {
        try {
          listeners.push(await this.listenOn(stream, index, port, 'join'));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? '';
          if (!BIND_CONFLICTS.has(code)) throw err;
          throw new ScistreamError(
            'FAILED_PRECONDITION',
            `stream ${uid}: cannot join listener port ${port} (${code}): it is held by a socket that does not share it (another program, or another user's); release the stream and request it again`,
          );
        }
      }
      return stream;
    } catch (err) {
      stream.released = true;
      await Promise.all(listeners.map((l) => l.close()));
      throw err;
    }
  }

  private async bind(uid: string, count: number, capBps: number, shared = false): Promise<Stream> {
    const listeners: TcpListener[] = [];
    const ports: number[] = [];
    const busy: number[] = [];
    const exhausted = () => this.exhausted(count, ports.length, busy);
    if (this.pool.available < count) throw exhausted();
    const stream = new Stream(uid, listeners, ports, count, capBps);
    stream.shared = shared;
    try {
      while (listeners.length < count) {
        const port = this.pool.take();
        if (port === undefined) throw exhausted();
        const index = listeners.length;
        try {
          listeners.push(await this.listenOn(stream, index, port, shared ? 'own' : undefined));
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
      this.giveBack(ports);
      throw err;
    } finally {
      for (const p of busy) this.pool.give(p);
    }
  }

  /**
   * Listens on the ports asked for (Request.listener_ports), all or none: each must
   * be in this data server's range (else INVALID_ARGUMENT) and free (else
   * RESOURCE_EXHAUSTED naming it and what holds it); never another port. A port
   * held as a spare is free to take: its socket is closed and the port listened on.
   */
  private async bindChosen(uid: string, chosen: readonly number[], capBps: number, shared = false): Promise<Stream> {
    const { first, last } = this.opts.portRange;
    const outside = chosen.filter((p) => p < first || p > last);
    if (outside.length > 0) {
      throw invalidArgument(`listener port(s) ${portList(outside)} are outside this gateway's data port range ${first}-${last} (--port-range); ask for ports within it, or for none`);
    }
    const held = chosen.filter((p) => this.pool.isTaken(p) && !this.spares.has(p));
    if (held.length > 0) {
      throw resourceExhausted(`listener port(s) ${portList(held)} are held by another stream on this gateway; ask for other ports, or retry once that stream is released`);
    }
    // Taken now, synchronously: a concurrent request cannot take the same port.
    const spares = this.spares.close(chosen);
    for (const p of chosen) if (!spares.includes(p)) this.pool.takePort(p);
    const listeners: TcpListener[] = [];
    const stream = new Stream(uid, listeners, [...chosen], chosen.length, capBps);
    stream.shared = shared;
    try {
      for (const [index, port] of chosen.entries()) {
        try {
          listeners.push(await this.listenOn(stream, index, port, shared ? 'own' : undefined));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? '';
          if (!BIND_CONFLICTS.has(code)) throw err;
          throw resourceExhausted(`listener port ${port} is in use by another program on this gateway (${code}); ask for another port, or stop that program`);
        }
      }
      return stream;
    } catch (err) {
      stream.released = true;
      await Promise.all(listeners.map((l) => l.close()));
      this.giveBack(chosen);
      throw err;
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

  /**
   * A connection just accepted: pending (admission.ts) until it proves the stream's
   * credentials or is matched to its target; before the stream's targets are known
   * it waits for them, paused.
   */
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
    const trace: Trace = {
      startedAt: Date.now(),
      listener: formatAddress(stream.listeners[listenerIndex]!.address),
      peer: formatAddress({ host: socket.remoteAddress ?? 'unknown', port: socket.remotePort ?? 0 }),
      socket,
      forwarded: false,
      done: false,
    };
    this.traces.set(socket, trace);
    // A connection never forwarded ends with its accepted socket; a forwarded one once both sides closed (open).
    socket.once('close', () => {
      if (!trace.forwarded) this.ended(stream, trace, trace.refused ?? (stream.released ? this.releaseEnd() : 'abandoned'));
    });
    // Node cannot filter before accept: a source not allowed is reset at once, before
    // it holds any admission slot or reads a byte.
    if (stream.allow && !stream.allow.allows(socket.remoteAddress)) {
      const peer = socket.remoteAddress ?? 'unknown';
      this.refuse(stream, undefined, socket, 'allow-list', `refused a connection from ${peer} to listener port ${socket.localPort ?? '?'} of stream ${stream.uid}: its source is not in the stream's allow-list (${stream.allow.blocks.join(', ')})`, {
        peer,
        cause: 'refused:allow-list',
      });
      return;
    }
    let connection: Connection | undefined;
    const ticket = this.admission.enter(socket.remoteAddress, socket.localPort ?? 0, (message) => this.refuse(stream, connection, socket, 'pending-conns', message));
    if ('kind' in ticket) {
      this.refuse(stream, undefined, socket, ticket.kind, ticket.message, { peer: socket.remoteAddress });
      return;
    }
    keepDataSocketAlive(socket, this.wan.deadAfterMs);
    connection = { listenerIndex, ticket, slot: false, refused: false, trace };
    const c = connection;
    stream.connections.add(c);
    stream.sockets.add(socket);
    // Every path ends with the accepted socket closed (a TLS socket closes the one it wraps).
    socket.once('close', () => {
      stream.sockets.delete(socket);
      this.letGo(stream, c);
    });
    if (stream.targets) {
      this.start(stream, c, socket);
      return;
    }
    if (stream.waiting.size >= this.opts.waitLimit) {
      this.refuse(stream, c, socket, 'waiting-conns', `stream ${stream.uid} already has ${this.opts.waitLimit} connections waiting for its connection map (UpdateTargets); refusing more`);
      return;
    }
    const waiting: Waiting = {
      socket,
      connection: c,
      timer: setTimeout(() => {
        stream.waiting.delete(waiting);
        this.refuse(stream, c, socket, 'waiting-conns', `no UpdateTargets for stream ${stream.uid} within the wait time; closed a waiting connection`);
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
   * once per interval per kind; its access-log line ends refused:<kind>. Once per connection.
   */
  private refuse(stream: Stream, connection: Connection | undefined, socket: Socket, kind: RefusalKind, message: string, fields: Record<string, unknown> = {}): void {
    if (connection) {
      if (connection.refused) return;
      connection.refused = true;
    }
    // Its access-log line (written when it closes) says why: refused:<kind>.
    const trace = connection?.trace ?? this.traces.get(socket);
    if (trace) trace.refused ??= `refused:${kind}`;
    stream.refused++;
    this.refusals.count(kind, message, { uid: stream.uid, ...fields });
    abort(socket);
  }

  /** How connections cut short by a release ended: with the stream, or with the whole gateway. */
  private releaseEnd(): string {
    return this.closing ? 'shutdown' : 'released';
  }

  /** A connection ended: its record goes to the access log and to the stream's recent ones. Once per connection. */
  private ended(stream: Stream, trace: Trace, end: string): void {
    if (trace.done) return;
    trace.done = true;
    if (trace.warm) return;
    const now = Date.now();
    const record: ConnectionRecord = {
      uid: stream.uid,
      listener: trace.listener,
      leg: stream.acceptVia.name === 'tls' ? 'wan' : 'lan',
      peer: trace.peer,
      bytesIn: trace.socket.bytesRead,
      bytesOut: trace.socket.bytesWritten,
      durationMs: now - trace.startedAt,
      end,
      endedAtMs: now,
    };
    keepRecent(stream.recent, record);
    this.accessLog.record(record);
  }

  /** Gives back a connection's listener slot and buffer reservation; once per connection. */
  private letGo(stream: Stream, connection: Connection): void {
    if (!stream.connections.delete(connection)) return;
    if (connection.slot) stream.perListener[connection.listenerIndex]!--;
    this.admission.leave(connection.ticket);
  }

  /**
   * Takes on a connection of a stream with targets: a WAN peer (TLS) first proves
   * the stream's credentials, pending meanwhile, within the handshake timeout; a
   * plain connection is matched to its target at once. Admitted, it opens its target.
   */
  private start(stream: Stream, connection: Connection, raw: Socket): void {
    if (stream.udpWan?.side === 'accept') {
      this.startOnUdpWan(stream, stream.udpWan, connection, raw);
      return;
    }
    const { acceptVia, connectVia } = stream;
    const plain = acceptVia.name === 'tcp';
    if (plain && !this.admit(stream, connection, raw)) return;
    // A plain accepted connection is read into one reused buffer too (the socket
    // moves onto it, see transport/tcp.ts readInto); towards a TLS target, with room
    // for the WAN leg's frame header in front. TLS decrypts into its own buffers.
    const towardsFramed = plain && connectVia.name === 'tls';
    const acceptedReads = plain
      ? new ReusedReadBuffer(Buffer.allocUnsafe(readSize(this.opts.bufferSize, connectVia.name, stream.capBps) + (towardsFramed ? FRAME_HEADER : 0)), towardsFramed ? FRAME_HEADER : 0)
      : undefined;
    const peer = `${raw.remoteAddress}:${raw.remotePort}`;
    acceptVia.accept(raw, { highWaterMark: this.opts.bufferSize, reads: acceptedReads, handshakeTimeoutMs: this.handshakeTimeoutMs }).then(
      (socket) => {
        if (stream.released || raw.destroyed || connection.refused) {
          socket.destroy();
          return;
        }
        this.established(stream, connection, socket);
        if (!plain && opensAtFrame(socket)) {
          this.awaitOpen(stream, connection, socket);
          return;
        }
        // A WAN peer is admitted once it has proved the stream's credentials.
        if (!plain && !this.admit(stream, connection, socket)) return;
        this.open(stream, connection, socket, socket === raw ? undefined : acceptedReads);
      },
      (err: Error) => {
        // The peer never reaches the target: nothing is opened for it.
        if (stream.released || connection.refused) {
          raw.destroy();
          return;
        }
        if (err instanceof HandshakeTimedOut) {
          this.refuse(stream, connection, raw, 'handshake-timeout', `closed a connection from ${peer}: ${err.message} (--data-handshake-timeout)`, { peer });
        } else {
          this.refuse(stream, connection, raw, 'wan-auth', `refused a connection from ${peer}: it did not prove the stream's credentials (${err.message})`, { peer });
        }
      },
    );
  }

  /**
   * A TCP connection on an encrypted UDP stream's listener at the producer gateway:
   * the consumer gateway's, proving the stream's credentials (the acceptor checks
   * them, within its own pending bound, and counts refusals as wan-auth). Its first
   * frame says what it is: the datagram carrier's connection for this listener
   * (taken into the carrier; no listener slot, no buffer reservation of its own), or
   * one TCP connection of the stream (its senders' beside their datagrams), forwarded
   * to the listener's target as a TCP stream's WAN connection is.
   */
  private startOnUdpWan(stream: Stream, leg: UdpWanLeg & { side: 'accept' }, connection: Connection, raw: Socket): void {
    const trace = connection.trace;
    acceptInto(leg, connection.listenerIndex, raw, {
      carrier: () => {
        this.letGo(stream, connection);
        trace.forwarded = true;
        raw.once('close', () => this.ended(stream, trace, stream.released ? this.releaseEnd() : 'udp-wan'));
      },
      tcp: (socket) => {
        if (stream.released || raw.destroyed || connection.refused) {
          socket.destroy();
          return;
        }
        this.established(stream, connection, socket);
        if (this.admit(stream, connection, socket)) this.open(stream, connection, socket, undefined);
      },
      refused: () => {
        trace.refused ??= 'refused:wan-auth';
      },
    });
  }

  /**
   * Producer gateway: a WAN connection that negotiated the open frame (tls.ts). It
   * proved the stream's credentials, so it leaves the pending bounds, and waits
   * (no listener slot, no stream buffers) for TCP_CONNECTION: only then is the
   * producer dialed. The consumer gateway may hold it ready for a while (warm.ts);
   * one that closes unused, or waits past WARM_WAIT_MS, ends quietly.
   */
  private awaitOpen(stream: Stream, connection: Connection, socket: Socket): void {
    const i = connection.listenerIndex;
    const trace = connection.trace;
    // As many as may forward on the listener at once (a burst of new connections waits here for a moment).
    if (stream.opening[i]! >= this.maxConnsPerListener) {
      this.refuse(stream, connection, socket, 'conns-per-listener', `listener ${formatAddress(stream.listeners[i]!.address)} already has ${this.maxConnsPerListener} authenticated WAN connections waiting for their open frame (--max-conns-per-listener); refusing more`);
      return;
    }
    this.admission.hold(connection.ticket);
    stream.opening[i]!++;
    // Counted as the stream's connection once it opens (an unused warm one never is).
    stream.accepted--;
    trace.warm = true;
    readFirstFrame(socket, WARM_WAIT_MS).then(
      (header) => {
        stream.opening[i]!--;
        if (stream.released || socket.destroyed || connection.refused) {
          socket.destroy();
          return;
        }
        trace.warm = false;
        trace.startedAt = Date.now();
        stream.accepted++;
        if (!isTcpConnectionFrame(header)) {
          this.refuse(stream, connection, socket, 'wan-auth', `closed a WAN connection from ${trace.peer}: its first frame was not the open frame`, { peer: trace.peer });
          return;
        }
        if (this.admit(stream, connection, socket)) this.open(stream, connection, socket, undefined);
      },
      () => {
        // Never used (the consumer gateway replaced it, or went away): no connection of the stream ended.
        stream.opening[i]!--;
        socket.destroy();
      },
    );
  }

  /** An accepted connection past its handshake: the stream holds its socket (a release closes it). */
  private established(stream: Stream, connection: Connection, socket: Socket): void {
    stream.sockets.add(socket);
    socket.once('close', () => stream.sockets.delete(socket));
    socket.on('error', noop);
    connection.trace.socket = socket;
  }

  /**
   * Gives an authenticated (or matched) connection its listener slot and its full
   * buffer reservation; refuses it when either is not there. Connections already
   * forwarding are never touched for a new one.
   */
  private admit(stream: Stream, connection: Connection, socket: Socket): boolean {
    const i = connection.listenerIndex;
    if (stream.perListener[i]! >= this.maxConnsPerListener) {
      const where = stream.shared ? ' in this worker (the listener is shared by the gateway\'s workers: each admits that many)' : '';
      this.refuse(stream, connection, socket, 'conns-per-listener', `listener ${formatAddress(stream.listeners[i]!.address)} already has ${this.maxConnsPerListener} connections${where} (--max-conns-per-listener); refusing more`);
      return false;
    }
    const refused = this.admission.admit(connection.ticket, connectionMemory(this.opts.bufferSize, stream.acceptVia.name, stream.connectVia.name));
    if (refused) {
      this.refuse(stream, connection, socket, refused.kind, refused.message);
      return false;
    }
    stream.perListener[i]!++;
    connection.slot = true;
    return true;
  }

  /** Opens an admitted connection's target and forwards between them. */
  private open(stream: Stream, connection: Connection, socket: Socket, acceptedReads: ReusedReadBuffer | undefined): void {
    const targets = stream.targets!;
    const index = connection.listenerIndex % targets.length;
    const target = targets[index]!;
    const { acceptVia, connectVia } = stream;
    // A TLS WAN leg is framed (transport/frames.ts): reads towards it leave room for the header.
    const framed = acceptVia.name === 'tls' ? 'accepted' : connectVia.name === 'tls' ? 'target' : undefined;
    this.dial(stream, index, framed === 'accepted' ? FRAME_HEADER : 0).then(
      ({ socket: out, reads }) => {
        if (stream.released || socket.destroyed) {
          out.destroy();
          socket.destroy();
          return;
        }
        // The producer gateway dials the producer at this frame (tls.ts WAN_OPEN_ALPN); on an encrypted
        // UDP stream's listener it says this is a TCP connection, not the datagram carrier.
        if (stream.udpWan?.side === 'connect' || opensAtFrame(out)) out.write(TCP_CONNECTION_FRAME);
        resetOnClose(out);
        keepDataSocketAlive(out, this.wan.deadAfterMs);
        stream.sockets.add(out);
        out.once('close', () => stream.sockets.delete(out));
        stream.active++;
        const trace = connection.trace;
        trace.forwarded = true;
        stream.ends.watch(socket, out, (end) => this.ended(stream, trace, stream.released && end !== 'clean' ? this.releaseEnd() : end));
        forward(
          socket,
          out,
          stream.counters,
          () => {
            stream.active--;
          },
          reads,
          framed,
          acceptedReads,
          stream.pacing,
          framed ? { guard: this.wan, uid: stream.uid } : undefined,
        );
      },
      (err: NodeJS.ErrnoException) => {
        if (stream.released) {
          socket.destroy();
          return;
        }
        this.refuse(
          stream,
          connection,
          socket,
          'target-unreachable',
          `cannot connect to target ${formatAddress(target)}: ${err.message}; closing the incoming connection`,
          { target: formatAddress(target), transport: connectVia.name, code: err.code },
        );
      },
    );
  }

  /**
   * A connection to target `index` and the memory it is read into: from the producer
   * (plain TCP), one reused buffer, with `headroom` for a frame header; from the WAN
   * (TLS, record by record), a ring of them (transport/reads.ts). Towards the WAN, a
   * warm connection when one is ready (warm.ts).
   */
  private dial(stream: Stream, index: number, headroom: number): Promise<Dialed> {
    const { connectVia, acceptVia } = stream;
    const target = stream.targets![index]!;
    if (connectVia.name === 'tcp') {
      const reads = new ReusedReadBuffer(Buffer.allocUnsafe(readSize(this.opts.bufferSize, acceptVia.name, stream.capBps) + headroom), headroom);
      return connectVia.connect(target, { highWaterMark: this.opts.bufferSize, reads }).then((socket) => ({ socket, reads }));
    }
    const warm = stream.warm?.take(index);
    if (warm) return warm.then((d) => d ?? this.dialWan(stream, target));
    return this.dialWan(stream, target).then((d) => {
      // A producer gateway that waits for the open frame: connections can be kept ready for this stream's
      // consumers, from its next connection on (a stream used by one connection, as most setups, never dials one).
      if (this.opts.warmWanConnections !== false && !stream.released && !stream.udp && !stream.warm && opensAtFrame(d.socket)) {
        const targets = stream.targets!;
        stream.warm = new WarmConnections(targets.length, (i) => this.dialWan(stream, targets[i]!, true), opensAtFrame);
      }
      return d;
    });
  }

  /** A TLS connection to the producer gateway; `kept`: held ready (warm.ts), so a release must close it. */
  private dialWan(stream: Stream, target: Address, kept = false): Promise<Dialed> {
    const reads = new RingReadBuffer(Buffer.allocUnsafe(ringSize(this.opts.bufferSize)));
    return stream.connectVia.connect(target, { highWaterMark: this.opts.bufferSize, reads }).then((socket) => {
      if (kept) {
        socket.on('error', noop);
        keepDataSocketAlive(socket, this.wan.deadAfterMs);
        if (stream.released) socket.destroy();
      }
      return { socket, reads };
    });
  }

  async setTargets(uid: string, targets: Address[], wan?: WanLeg): Promise<void> {
    const stream = this.streams.get(uid);
    if (!stream) throw notFound(`stream ${uid} has no listeners on this data server`);
    const secured = wan ? new TlsTransport(wan.credentials) : TCP;
    // Ready connections were made to the old targets with the old credentials.
    stream.warm?.close();
    stream.warm = undefined;
    stream.acceptVia = wan?.side === 'accept' ? secured : TCP;
    stream.connectVia = wan?.side === 'connect' ? secured : TCP;
    if (stream.udp) this.setUdpTargets(stream, stream.udp, targets, wan);
    stream.targets = targets;
    for (const w of stream.waiting) {
      clearTimeout(w.timer);
      stream.waiting.delete(w);
      this.start(stream, w.connection, w.socket);
    }
  }

  /**
   * Where a UDP stream's datagrams go. Without a WAN leg (single gateway, or plain UDP
   * allowed), a plain socket per flow towards its target. With one, datagrams cross the
   * WAN only inside the stream's TLS connections (transport/datagrams.ts): the consumer
   * gateway dials them, the producer gateway accepts them on the stream's listeners.
   */
  private setUdpTargets(stream: Stream, udp: UdpStream, targets: Address[], wan: WanLeg | undefined): void {
    const leg = stream.udpWan;
    if (!wan) {
      closeLeg(leg);
      stream.udpWan = undefined;
      udp.setTargets(targets);
      return;
    }
    if (wan.side === 'accept' && leg?.side === 'accept') return retarget(leg, udp, targets);
    if (wan.side === 'connect' && leg?.side === 'connect' && leg.key === targets.map(formatAddress).join(',')) return;
    closeLeg(leg);
    const tls = new TlsTransport(wan.credentials);
    const options = this.udpWanOptions(stream);
    const hooks = this.udpWanHooks(stream);
    stream.udpWan = wan.side === 'accept' ? acceptLeg(udp, tls, stream.ports.length, targets, options, hooks) : dialLeg(udp, tls, targets, options, hooks);
  }

  private udpWanOptions(stream: Stream): UdpWanOptions {
    return {
      highWaterMark: this.opts.bufferSize,
      handshakeTimeoutMs: this.handshakeTimeoutMs,
      deadAfterMs: this.wan.deadAfterMs,
      maxFlows: (this.opts.maxUdpFlows ?? UDP_DEFAULTS.maxFlowsPerListener) * stream.ports.length,
    };
  }

  private udpWanHooks(stream: Stream): UdpWanLegHooks {
    return {
      refused: (kind, message) => {
        stream.refused++;
        this.refusals.count(kind, `stream ${stream.uid}: ${message}`, { uid: stream.uid });
      },
      broken: (peer, cause, detail) => this.wan.broken(stream.uid, peer, cause, detail),
    };
  }

  async release(uid: string): Promise<void> {
    const pending = this.starting.get(uid);
    if (pending) await pending.catch(noop);
    const stream = this.streams.get(uid);
    if (!stream) return;
    this.streams.delete(uid);
    stream.released = true;
    this.releasedBytes += stream.counters.toTarget + stream.counters.fromTarget + udpBytes(stream);
    for (const w of stream.waiting) clearTimeout(w.timer);
    stream.waiting.clear();
    // Streams cut short (release, shutdown) reach the applications as a reset, not a clean end.
    for (const s of stream.sockets) abort(s);
    // Destroyed sockets drop their buffers now; the reservations go with them, even
    // for a connection whose handshake or target dial is still settling.
    for (const c of [...stream.connections]) this.letGo(stream, c);
    stream.warm?.close();
    closeLeg(stream.udpWan);
    await Promise.all([...stream.listeners.map((l) => l.close()), stream.udp?.close()]);
    if (!stream.joined) this.giveBack(stream.ports);
  }

  /**
   * Holds up to `count` spare ports: each bound without listening (see Spare), so
   * that a stream can take them without a bind (assignSpares) while a connection
   * to one is refused. Returns their ports (fewer when the range runs out; none is
   * an error). FAILED_PRECONDITION without the native addon (sparesUnavailable).
   */
  async openSpares(count: number): Promise<number[]> {
    const off = sparesUnavailable();
    if (off) throw failedPrecondition(off);
    const { opened, busy } = this.spares.open(await this.numericBindHost(), count);
    if (opened.length === 0 && count > 0) throw this.exhausted(count, 0, busy);
    return opened;
  }

  /** The bind address as a number, as Node's listen resolves a name (the first answer of the system's resolver). */
  private async numericBindHost(): Promise<string> {
    const host = this.opts.bindHost.replace(/^\[(.*)\]$/, '$1');
    return isIP(host) ? host : (await lookup(host)).address;
  }

  /** Ports of the spare listeners not taken by a stream. */
  sparePorts(): number[] {
    return this.spares.ports();
  }

  /**
   * A new stream whose listeners are these spares, in this order: what
   * startListeners would have opened, without binding (each spare's socket starts
   * listening now). All or nothing.
   */
  assignSpares(uid: string, ports: readonly number[], capBps = 0, allowFrom: readonly string[] = [], shared = false): Address[] {
    if (this.streams.has(uid) || this.starting.has(uid)) throw alreadyExists(`stream ${uid} already has listeners on this data server`);
    const unshareable = shared ? sharedListenersUnavailable() : undefined;
    if (unshareable) throw failedPrecondition(unshareable);
    if (ports.length === 0) throw notFound(`stream ${uid}: no spare listeners given`);
    const missing = ports.filter((p) => !this.spares.has(p));
    if (missing.length > 0 || new Set(ports).size !== ports.length) {
      throw notFound(`stream ${uid}: port(s) ${portList(missing.length > 0 ? missing : ports)} are not spare listeners of this data server (already taken, released, or never opened)`);
    }
    const spares = this.spares.take(ports) as Spare[];
    const listeners: TcpListener[] = [];
    const stream = new Stream(uid, listeners, [...ports], ports.length, capBps);
    stream.shared = shared;
    if (allowFrom.length > 0) stream.allow = new AllowList(allowFrom);
    const host = this.opts.bindHost;
    for (const [i, s] of spares.entries()) {
      try {
        // Shared: the other workers join it once it listens (shared-listeners.ts).
        if (shared) shareReserved(s.fd);
        listenReserved(s.fd, BACKLOG);
      } catch (err) {
        // Its descriptor is closed; the others are given up too, and every port goes back.
        stream.released = true;
        for (const rest of spares.slice(i + 1)) closeReserved(rest.fd);
        void Promise.all(listeners.map((l) => l.close()));
        this.giveBack(ports);
        throw new ScistreamError('UNAVAILABLE', `stream ${uid}: spare port ${s.port} could not listen (${(err as Error).message}); request the stream again`);
      }
      listeners.push(
        listenTcpOn(s.fd, { host, port: s.port }, { highWaterMark: this.opts.bufferSize }, (socket) => this.accept(stream, i, socket), (err) =>
          this.opts.logger.warn({ uid, port: s.port, err: err.message }, 'a listener taken from a spare port failed'),
        ),
      );
    }
    this.streams.set(uid, stream);
    const advertised = this.opts.advertiseHost ?? host;
    return listeners.map((l) => ({ host: advertised, port: l.address.port }));
  }

  /** Closes spare ports' sockets and returns the ports (ports that are not spares: ignored). */
  async releaseSpares(ports: readonly number[]): Promise<void> {
    this.giveBack(this.spares.close(ports));
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
    for (const s of this.streams.values()) total += s.counters.toTarget + s.counters.fromTarget + udpBytes(s);
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
      bytesToTarget: s.counters.toTarget + (s.udp?.counters.bytesToTarget ?? 0),
      bytesFromTarget: s.counters.fromTarget + (s.udp?.counters.bytesFromTarget ?? 0),
      refusedConnections: s.refused,
      ...s.ends.counts(),
      recentConnections: s.recent.slice(),
      ...(s.udp ? { datagrams: datagramStats(s.udp) } : {}),
    };
  }

  /** Datagrams dropped since start over every UDP stream, by cause, and UDP flows open now. */
  datagramTotals(): { drops: { cause: string; count: number }[]; flows: number } {
    let flows = 0;
    for (const s of this.streams.values()) flows += s.udp?.flowCount ?? 0;
    return { drops: this.datagramDrops.totals(), flows };
  }

  /** The gateway (or agent) is stopping: connections its releases cut end as 'shutdown' in the access log. */
  shuttingDown(): void {
    this.closing = true;
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.starting.values()].map((p) => p.catch(noop)));
    await Promise.all([...this.streams.keys()].map((uid) => this.release(uid)));
    await this.releaseSpares(this.spares.ports());
    this.wan.close();
    // Its lines went through the logger: what a flood left out is summarised now.
    if (this.ownsAccessLog) this.accessLog.close();
  }
}

/** The first few ports of a list, for a message. */
export function portList(ports: readonly number[], max = 5): string {
  return ports.length <= max ? ports.join(', ') : `${ports.slice(0, max).join(', ')} and ${ports.length - max} more`;
}

function noop(): void {}

function udpBytes(s: Stream): number {
  return s.udp ? s.udp.counters.bytesToTarget + s.udp.counters.bytesFromTarget : 0;
}

function datagramStats(udp: UdpStream): NonNullable<StreamStats['datagrams']> {
  const u = udp.stats();
  return { datagramsToTarget: u.datagramsToTarget, datagramsFromTarget: u.datagramsFromTarget, drops: u.drops, flows: u.flows, flowsOpened: u.flowsOpened };
}

/** How a stream's listeners are shared with the gateway's other workers: owned and joinable, joined, or not at all. */
function shareOf(opts: ListenerOptions): 'own' | 'join' | undefined {
  const join = opts.join && opts.join.length > 0;
  if (!join && !opts.shared) return undefined;
  if (opts.protocol === 'udp') throw invalidArgument('a UDP stream is not shared by workers: its datagram flows live in one worker; open it without join or shared');
  if (join && (opts.shared || (opts.ports && opts.ports.length > 0))) throw invalidArgument('join names the ports itself: give it without shared and without ports');
  const off = sharedListenersUnavailable();
  if (off) throw failedPrecondition(off);
  return join ? 'join' : 'own';
}
