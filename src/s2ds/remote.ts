// RemoteAgent: s2cs's handle on one s2ds agent, a client of proto/s2ds.proto over
// TCP with mutual TLS or over a Unix socket. A poll (Health and ListStreams, every
// second) keeps the sync reads current and tells when the agent goes down, comes
// back or restarted.
//
// Liveness counts polls, not deadlines: a poll that has not answered when the next
// one is due is a failed poll, so an agent that stops answering (a partition, a
// SIGSTOP) is down after DOWN_AFTER_FAILED_POLLS intervals, not after three call
// deadlines (a hung poll used to hold the next ones back: 30 s). When it is marked
// down, the calls still waiting on it fail at once, so that a request is placed
// again elsewhere and a release reports what it could not do.
import { agentLinkCause } from '../protocol/diagnose.js';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { formatAddress, parseAddress, type Address } from '../protocol/address.js';
import { Agent, type AgentClient, type AgentHealthMessage__Output, type StreamInfo__Output } from '../protocol/agent-contract.js';
import { ScistreamError, statusName, type ErrorKind } from '../protocol/errors.js';
import { agentChannelCredentials, type AgentClientTls } from '../security/agent-tls.js';
import type { AgentHandle, AgentHealth, AgentStream, ListenerOptions, StreamStats, WanLeg } from './index.js';
import { RECENT_CONNECTIONS } from './access-log.js';

export interface RemoteAgentOptions {
  /** host:port (mutual TLS, `tls` required) or unix:/path. */
  address: string;
  tls?: AgentClientTls;
  /** Shown until the agent has answered Health with its own name. */
  name?: string;
  /** Default 1000. */
  pollIntervalMs?: number;
  /** Deadline of each call to an agent that answers its polls; default 10 s. */
  deadlineMs?: number;
  logger?: Logger;
}

/** Consecutive failed polls after which an agent is down. */
export const DOWN_AFTER_FAILED_POLLS = 3;

/** How often the channel to an agent that is down is made anew. */
const RENEW_CHANNEL_MS = 5_000;

/** gRPC's CANCELLED: a call this handle gave up because the agent was marked down. */
const CANCELLED = 1;

/**
 * Whether a failed agent call means the agent did not answer (unreachable, no
 * answer in time, given up when it was marked down), rather than a refusal: the
 * call may have been done there, and another agent may do it instead.
 */
export function unanswered(err: unknown): boolean {
  return err instanceof AgentCallError && (err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.DEADLINE_EXCEEDED || err.code === CANCELLED);
}

/** A call to an agent that failed; the message names the agent and says what it answered. */
export class AgentCallError extends ScistreamError {
  constructor(
    kind: ErrorKind,
    readonly agent: string,
    readonly address: string,
    readonly rpc: string,
    readonly code: number,
    details: string,
  ) {
    super(kind, `data-server agent ${agent} at ${address}: ${details}`);
    this.name = 'AgentCallError';
  }
}

// The agent's statuses that s2cs passes on as they are; anything else is the agent being unreachable or broken.
const PASSED_ON: Partial<Record<number, ErrorKind>> = {
  [grpc.status.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [grpc.status.NOT_FOUND]: 'NOT_FOUND',
  [grpc.status.ALREADY_EXISTS]: 'ALREADY_EXISTS',
  [grpc.status.RESOURCE_EXHAUSTED]: 'RESOURCE_EXHAUSTED',
  [grpc.status.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
  [grpc.status.ABORTED]: 'ABORTED',
  [grpc.status.DEADLINE_EXCEEDED]: 'DEADLINE_EXCEEDED',
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
};

type Event = 'down' | 'up' | 'restarted';

export class RemoteAgent implements AgentHandle {
  readonly address: string;
  private client: AgentClient;
  private readonly newClient: () => AgentClient;
  /** When the channel in use was made (renewed while the agent is down: see pollFailed). */
  private channelSince = Date.now();
  private readonly deadlineMs: number;
  private readonly logger: Logger;
  private readonly listeners: ((event: Event) => void)[] = [];
  private readonly goneListeners: ((uids: string[]) => void)[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly configuredName: string | undefined;
  private lastHealth: AgentHealth | undefined;
  private streams = new Map<string, StreamStats>();
  /** Streams started or released through this handle, by the poll count then: a poll already under way does not know of them. */
  private readonly changed = new Map<string, { seq: number; stats: StreamStats | undefined }>();
  private pollSeq = 0;
  /**
   * Port counts read right after a call that changed them (Release, ReleaseSpares,
   * ReserveSpares), with the poll count then: a poll that started before knows
   * less, so its counts do not replace these.
   */
  private freshPorts: { seq: number; health: AgentHealth } | undefined;
  private rate = 0;
  private previous: { bytes: number; at: number } | undefined;
  private isUp = false;
  /** Whether 'down' was told since the last 'up' (or since the start). */
  private toldDown = false;
  private failedPolls = 0;
  /** The last poll that ended answered (a tick that found one overdue does not change it). */
  private lastPollOk = false;
  /** When the poll under way started. */
  private pollStartedAt: number | undefined;
  private polling: Promise<void> | undefined;
  private readonly intervalMs: number;
  /** Calls other than polls waiting for an answer: given up when the agent is marked down. */
  private readonly inflight = new Set<grpc.ClientUnaryCall>();
  private closed = false;

  constructor(opts: RemoteAgentOptions) {
    this.address = opts.address;
    this.configuredName = opts.name;
    this.deadlineMs = opts.deadlineMs ?? 10_000;
    // Its lines name the agent themselves (its name changes once it answers): the logger given must not bind `agent` or `address`.
    this.logger = opts.logger ?? silentLogger;
    let credentials: grpc.ChannelCredentials;
    if (opts.address.startsWith('unix:')) {
      credentials = grpc.credentials.createInsecure();
    } else {
      parseAddress(opts.address, 'agent address');
      if (!opts.tls) throw new Error(`data-server agent at ${opts.address}: a TCP agent needs mutual TLS (its certificate or CA, and s2cs's certificate and key)`);
      credentials = agentChannelCredentials(opts.tls);
    }
    this.newClient = () =>
      new Agent(opts.address, credentials, {
        // An agent that comes back is found within about a second, not after grpc-js's default backoff of up to two minutes.
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 1000,
        // ListStreams carries every stream's record (up to 64 KiB each).
        'grpc.max_receive_message_length': 256 * 1024 * 1024,
      }) as unknown as AgentClient;
    this.client = this.newClient();
    const interval = (this.intervalMs = opts.pollIntervalMs ?? 1000);
    this.timer = setInterval(() => this.tick(), interval);
    this.timer.unref();
    void this.poll();
  }

  get name(): string {
    return this.lastHealth?.name || this.configuredName || this.address;
  }

  up(): boolean {
    return this.isUp;
  }

  /**
   * Up and answered its last poll, and the poll under way (if any) is not overdue:
   * only such an agent gets new streams. Overdue means a second or more (an
   * interval, when longer): a faster poll interval does not make a busy agent skipped.
   */
  answering(): boolean {
    if (!this.isUp || !this.lastPollOk) return false;
    return this.pollStartedAt === undefined || Date.now() - this.pollStartedAt < Math.max(this.intervalMs, 1000);
  }

  health(): AgentHealth | undefined {
    return this.lastHealth;
  }

  bytesPerSecond(): number {
    return this.rate;
  }

  onChange(listener: (event: Event) => void): void {
    this.listeners.push(listener);
  }

  onStreamsGone(listener: (uids: string[]) => void): void {
    this.goneListeners.push(listener);
  }

  stats(uid: string): StreamStats | undefined {
    return this.streams.get(uid);
  }

  ports(): { reserved: number; free: number } {
    const h = this.lastHealth;
    return { reserved: h?.reservedPorts ?? 0, free: this.isUp ? (h?.freePorts ?? 0) : 0 };
  }

  bufferMemory(): { reserved: number; limit: number } {
    return { reserved: this.lastHealth?.bufferMemoryReserved ?? 0, limit: this.lastHealth?.bufferMemoryLimit ?? 0 };
  }

  async startListeners(uid: string, count: number, opts: ListenerOptions = {}): Promise<Address[]> {
    const { record, capBps = 0, ports = [], allowFrom = [], protocol = '', join = [], shared = false } = opts;
    const r = await this.call<{ listeners: string[] }>('StartListeners', {
      uid,
      count,
      record: record ? Buffer.from(record) : Buffer.alloc(0),
      cap_bps: String(Math.round(capBps)),
      ports: [...ports],
      allow_from: [...allowFrom],
      // Empty for TCP: an agent from before UDP streams reads the call as before.
      protocol: protocol === 'udp' ? 'udp' : '',
      join_ports: [...join],
      shared,
    });
    const listeners = r.listeners.map((l, i) => parseAddress(l, `listeners[${i}] from the agent`));
    const stats = emptyStats(uid, listeners.length);
    this.streams.set(uid, stats);
    this.changed.set(uid, { seq: this.pollSeq, stats });
    return listeners;
  }

  async setTargets(uid: string, targets: Address[], wan?: WanLeg, record?: Uint8Array): Promise<void> {
    await this.call('SetTargets', {
      uid,
      targets: targets.map(formatAddress),
      wan: wan ? { side: wan.side, certificate: wan.credentials.cert, private_key: wan.credentials.key, peer_certificate: wan.credentials.peerCert } : null,
      record: record ? Buffer.from(record) : Buffer.alloc(0),
    });
  }

  async reserveSpares(owner: string, count: number): Promise<Address[]> {
    const r = await this.call<{ listeners: string[] }>('ReserveSpares', { owner, count });
    await this.refreshPorts();
    return r.listeners.map((l, i) => parseAddress(l, `spare listeners[${i}] from the agent`));
  }

  assignSpares(uid: string, owner: string, listeners: Address[], record: Uint8Array, capBps = 0, allowFrom: readonly string[] = [], shared = false): Promise<void> {
    // Counted from now: the pool answers the request before the agent does.
    const stats = emptyStats(uid, listeners.length);
    this.streams.set(uid, stats);
    this.changed.set(uid, { seq: this.pollSeq, stats });
    return this.call('AssignSpares', { uid, owner, listeners: listeners.map(formatAddress), record: Buffer.from(record), cap_bps: String(Math.round(capBps)), allow_from: [...allowFrom], shared }).then(
      () => undefined,
      (err: unknown) => {
        if (this.streams.get(uid) === stats) {
          this.streams.delete(uid);
          this.changed.set(uid, { seq: this.pollSeq, stats: undefined });
        }
        throw err;
      },
    );
  }

  async releaseSpares(owner: string, others: boolean, listeners: Address[] = []): Promise<void> {
    await this.call('ReleaseSpares', { owner, others, listeners: listeners.map(formatAddress) });
    await this.refreshPorts();
  }

  async setRecord(uid: string, record: Uint8Array): Promise<void> {
    await this.call('SetRecord', { uid, record: Buffer.from(record) });
  }

  async release(uid: string): Promise<void> {
    await this.call('Release', { uid });
    this.streams.delete(uid);
    this.changed.set(uid, { seq: this.pollSeq, stats: undefined });
    // Answered once the ports are free there: the pool places the next request by them at once, not after the next poll.
    await this.refreshPorts();
  }

  /**
   * Reads the agent's port counts now (after a call that changed them). Never
   * throws: an agent that does not answer keeps its last counts (its polls tell).
   */
  private async refreshPorts(): Promise<void> {
    const seq = this.pollSeq;
    let health: AgentHealthMessage__Output;
    try {
      health = await this.call<AgentHealthMessage__Output>('Health', {});
    } catch {
      return;
    }
    const h = toHealth(health);
    const last = this.lastHealth;
    // A restart is the poll's to find; a fresher reading is kept.
    if (this.closed || !last || last.startedAtMs !== h.startedAtMs) return;
    if (this.freshPorts && this.freshPorts.seq > seq) return;
    this.freshPorts = { seq, health: h };
    this.lastHealth = withPorts(last, h);
  }

  async listStreams(): Promise<AgentStream[]> {
    const r = await this.call<{ streams: StreamInfo__Output[] }>('ListStreams', {});
    const now = Date.now();
    return r.streams.map((s) => toAgentStream(s, now));
  }

  /** Stops polling and closes the channel. Releases nothing: the agent's streams outlive this s2cs. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.client.close();
  }

  /** Every interval: a poll still waiting since the last tick is a failed poll; else a new one. */
  private tick(): void {
    if (this.closed) return;
    if (this.polling) {
      this.pollFailed(`no answer to its poll within ${this.intervalMs} ms`);
      return;
    }
    void this.poll();
  }

  private pollFailed(why: string): void {
    this.failedPolls++;
    if (this.failedPolls >= DOWN_AFTER_FAILED_POLLS) this.markDown(`${this.failedPolls} polls in a row failed (last: ${why})`);
    if (!this.isUp && Date.now() - this.channelSince >= RENEW_CHANNEL_MS) this.renewChannel();
  }

  /**
   * A new channel to an agent that is down. After a partition, the old one's TCP
   * connection (or its connect attempt) waits out the kernel's retransmission
   * backoff, up to minutes after the network is back; a fresh connection every few
   * seconds finds the agent within seconds of the heal.
   */
  private renewChannel(): void {
    const old = this.client;
    this.client = this.newClient();
    this.channelSince = Date.now();
    old.close();
  }

  /** Asks Health and ListStreams now (the timer does it every interval); resolves when both answered or failed. */
  poll(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (!this.polling) this.pollStartedAt = Date.now();
    this.polling ??= this.pollOnce().finally(() => {
      this.polling = undefined;
      this.pollStartedAt = undefined;
    });
    return this.polling;
  }

  private async pollOnce(): Promise<void> {
    const seq = ++this.pollSeq;
    let health: AgentHealthMessage__Output;
    let list: { streams: StreamInfo__Output[] };
    try {
      [health, list] = await Promise.all([
        this.call<AgentHealthMessage__Output>('Health', {}, true),
        this.call<{ streams: StreamInfo__Output[] }>('ListStreams', {}, true),
      ]);
    } catch (err) {
      if (this.closed) return;
      this.lastPollOk = false;
      this.pollFailed((err as Error).message);
      return;
    }
    if (this.closed) return;
    this.failedPolls = 0;
    this.lastPollOk = true;
    const h = toHealth(health);
    const restarted = this.lastHealth !== undefined && this.lastHealth.startedAtMs !== h.startedAtMs;
    const now = Date.now();
    if (this.previous && !restarted && now > this.previous.at) {
      this.rate = Math.max(0, (h.bytesTotal - this.previous.bytes) / ((now - this.previous.at) / 1000));
    } else if (restarted) {
      this.rate = 0;
    }
    this.previous = { bytes: h.bytesTotal, at: now };
    const fresh = this.freshPorts;
    // Counts read after a release this poll did not know of are newer than its own.
    if (fresh && fresh.seq >= seq && !restarted && fresh.health.startedAtMs === h.startedAtMs) this.lastHealth = withPorts(h, fresh.health);
    else {
      if (fresh && fresh.seq < seq) this.freshPorts = undefined;
      this.lastHealth = h;
    }
    const streams = new Map(list.streams.map((s) => [s.uid, toAgentStream(s, now).stats]));
    for (const [uid, c] of this.changed) {
      if (c.seq >= seq) {
        // Started or released after this poll asked: its answer is older than what this handle knows.
        if (c.stats) streams.set(uid, streams.get(uid) ?? c.stats);
        else streams.delete(uid);
      } else {
        this.changed.delete(uid);
      }
    }
    // Streams it held at the last answer and dropped by itself since (--orphan-timeout), not released through this handle.
    const gone = restarted ? [] : [...this.streams.keys()].filter((uid) => !streams.has(uid) && !this.changed.has(uid));
    this.streams = streams;
    if (gone.length > 0) {
      for (const l of this.goneListeners) {
        try {
          l(gone);
        } catch (err) {
          this.logger.error({ err, agent: this.name, address: this.address }, 'a streams-gone listener threw');
        }
      }
    }
    if (restarted) {
      this.logger.warn({ agent: h.name, address: this.address }, 'data-server agent restarted: the streams it carried are gone');
      this.emit('restarted');
    }
    if (!this.isUp) {
      this.isUp = true;
      this.toldDown = false;
      this.logger.info({ agent: h.name, address: this.address }, 'data-server agent is up');
      this.emit('up');
    }
  }

  private markDown(why: string): void {
    const wasUp = this.isUp;
    this.isUp = false;
    // Whoever waits on a call to it learns now, not at the deadline.
    for (const c of [...this.inflight]) c.cancel();
    this.inflight.clear();
    if (wasUp || !this.toldDown) {
      this.toldDown = true;
      this.logger.warn({ agent: this.name, address: this.address }, `data-server agent is down: ${why}`);
      // What answers at its address, probed once per going down (see diagnose.ts).
      if (!this.address.startsWith('unix:')) {
        void agentLinkCause(this.address, why).then((cause) => {
          if (!this.closed) this.logger.warn({ agent: this.name, address: this.address }, `data-server agent ${this.name} is down: ${cause}`);
        });
      }
      this.emit('down');
    }
  }

  private emit(event: Event): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch (err) {
        this.logger.error({ err, event, agent: this.name, address: this.address }, 'an agent change listener threw');
      }
    }
  }

  private call<Res>(rpc: 'StartListeners' | 'SetTargets' | 'SetRecord' | 'Release' | 'ListStreams' | 'Health' | 'ReserveSpares' | 'AssignSpares' | 'ReleaseSpares', request: object, fromPoll = false): Promise<Res> {
    return new Promise((resolve, reject) => {
      const method = (this.client as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall>)[rpc]!;
      // A poll has DOWN_AFTER_FAILED_POLLS intervals (the ticks count it failed meanwhile); a call
      // to an agent that is down has one, to find it back without making its caller wait long.
      const deadlineMs = fromPoll ? Math.min(this.deadlineMs, DOWN_AFTER_FAILED_POLLS * this.intervalMs) : this.isUp ? this.deadlineMs : Math.min(this.deadlineMs, Math.max(this.intervalMs, 500));
      const call = method.call(this.client, request, { deadline: Date.now() + deadlineMs }, (err, res) => {
        this.inflight.delete(call);
        if (!err) {
          resolve(res!);
          return;
        }
        const kind = err.code === CANCELLED ? 'UNAVAILABLE' : (PASSED_ON[err.code] ?? 'INTERNAL');
        const details =
          err.code === grpc.status.UNAVAILABLE
            ? `unreachable (${err.details || statusName(err.code)}); check that s2ds runs there and that the certificates match`
            : err.code === CANCELLED
              ? `does not answer (${DOWN_AFTER_FAILED_POLLS} polls in a row failed: marked down); check the agent's host and the network to it`
              : err.code === grpc.status.DEADLINE_EXCEEDED
                ? `no answer within ${deadlineMs} ms; check the agent's host and the network to it`
                : err.details || statusName(err.code);
        if (err.code === grpc.status.UNAVAILABLE && !fromPoll && !this.closed) this.markDown(err.details);
        reject(new AgentCallError(kind, this.name, this.address, rpc, err.code, details));
      });
      if (!fromPoll) this.inflight.add(call);
    });
  }
}

/** `base` with the port counts of `from`. */
function withPorts(base: AgentHealth, from: AgentHealth): AgentHealth {
  return { ...base, freePorts: from.freePorts, reservedPorts: from.reservedPorts, sparePorts: from.sparePorts };
}

function emptyStats(uid: string, listeners: number): StreamStats {
  return { uid, listeners, activeConnections: 0, waitingConnections: 0, acceptedConnections: 0, bytesToTarget: 0, bytesFromTarget: 0, refusedConnections: 0 };
}

/** `now`: when the answer arrived; the agent says how long ago the last connection ended, so no clocks need agree. */
function toAgentStream(s: StreamInfo__Output, now: number): AgentStream {
  const ended = s.clean_ends + s.abnormal_ends > 0;
  return {
    uid: s.uid,
    listeners: s.listeners,
    targets: s.targets,
    record: new Uint8Array(s.record),
    encrypted: s.encrypted,
    stats: {
      uid: s.uid,
      listeners: s.listeners.length,
      activeConnections: s.active_connections,
      waitingConnections: s.waiting_connections,
      acceptedConnections: s.accepted_connections,
      refusedConnections: s.refused_connections,
      bytesToTarget: Number(s.bytes_to_target),
      bytesFromTarget: Number(s.bytes_from_target),
      cleanEnds: s.clean_ends,
      abnormalEnds: s.abnormal_ends,
      lastEndAt: ended ? now - Number(s.ms_since_last_end) : 0,
      lastEndAbnormal: ended && s.last_end_abnormal,
      lastEndError: s.last_end_error.slice(0, 200),
      // An agent's answer is not trusted to be short.
      recentConnections: s.recent_connections.slice(-RECENT_CONNECTIONS).map((r) => ({
        uid: s.uid,
        listener: r.listener.slice(0, 100),
        leg: r.leg === 'wan' ? 'wan' : 'lan',
        peer: r.peer.slice(0, 100),
        bytesIn: Number(r.bytes_in),
        bytesOut: Number(r.bytes_out),
        durationMs: r.duration_ms,
        end: r.end.slice(0, 100),
        endedAtMs: now - Number(r.ms_since_end),
      })),
      ...(s.protocol === 'udp'
        ? {
            datagrams: {
              datagramsToTarget: Number(s.datagrams_to_target),
              datagramsFromTarget: Number(s.datagrams_from_target),
              drops: s.datagram_drops.slice(0, 16).map((d) => ({ cause: d.kind.slice(0, 40), count: Number(d.count) })),
              flows: s.udp_flows,
              flowsOpened: Number(s.udp_flows_opened),
            },
          }
        : {}),
    },
  };
}

function toHealth(h: AgentHealthMessage__Output): AgentHealth {
  return {
    name: h.name,
    version: h.version,
    listenerIp: h.listener_ip,
    reservedPorts: h.reserved_ports,
    freePorts: h.free_ports,
    activeConnections: h.active_connections,
    bytesTotal: Number(h.bytes_total),
    bufferMemoryReserved: Number(h.buffer_memory_reserved),
    bufferMemoryLimit: Number(h.buffer_memory_limit),
    startedAtMs: Number(h.started_at_ms),
    sparePorts: h.spare_ports,
    pendingConnections: h.pending_connections,
    refusals: h.refusals.slice(0, 64).map((r) => ({ kind: r.kind, count: Number(r.count) })),
    wanBreaks: (h.wan_breaks ?? []).slice(0, 16).map((b) => ({ cause: b.cause, count: Number(b.count) })),
    datagramDrops: (h.datagram_drops ?? []).slice(0, 16).map((d) => ({ cause: d.kind.slice(0, 40), count: Number(d.count) })),
    udpFlows: h.udp_flows ?? 0,
  };
}
