// S2DS, the data server: the buffer-and-forward agent on a gateway node.
// S2CS drives it through this interface only, so that it can later run as a
// separate agent on each gateway (the seed: S2CS and S2DS talk over a LAN).
import type { Address } from '../protocol/address.js';
import type { StreamCredentials } from '../transport/index.js';
import type { ConnectionEndCounts } from './connection-ends.js';
import type { PortRange } from './ports.js';
import type { ConnectionRecord } from './access-log.js';

/**
 * The stream's WAN leg. `accept`: this gateway's listeners face the WAN (the
 * producer side); `connect`: its targets are the other gateway's WAN listeners
 * (the consumer side). Absent: plain TCP on both legs (--allow-plaintext-data).
 */
export interface WanLeg {
  side: 'accept' | 'connect';
  credentials: StreamCredentials;
}

export interface ListenerOptions {
  /**
   * The stream's rate cap on this data server, bytes per second each direction
   * over all its connections here (pacer.ts); absent or 0: not capped.
   */
  capBps?: number;
  /** Data-server agents: the record s2cs keeps with the stream (see setRecord). */
  record?: Uint8Array;
  /**
   * Who may connect (canonical CIDR blocks, protocol/cidr.ts): a connection from
   * any other source is refused at once with a reset, counted as allow-list.
   * Absent or empty: anyone.
   */
  allowFrom?: readonly string[];
  /**
   * The ports to listen on, one per listener, in order (Request.listener_ports):
   * each granted if free, else the whole call fails naming it; never another port.
   */
  ports?: readonly number[];
  /**
   * 'udp': each listener is also a UDP socket on the same port (bound at request time,
   * never from spares), forwarding datagrams by flow (udp/). Absent or 'tcp': TCP only.
   */
  protocol?: 'tcp' | 'udp';
  /**
   * The gateway's other local workers will join these listeners (shared-listeners.ts):
   * bound as any, then made joinable with SO_REUSEPORT. TCP only.
   */
  shared?: boolean;
  /**
   * Listeners to join instead of opening: ports another local worker owns and opened
   * `shared`, one per listener in order; the kernel spreads their connections over
   * every worker listening. `count` and `ports` do not apply. TCP only.
   */
  join?: readonly number[];
}

/** A UDP stream's datagram counters on a data server (udp/counters.ts). */
export interface DatagramStats {
  datagramsToTarget: number;
  datagramsFromTarget: number;
  drops: { cause: string; count: number }[];
  /** Flows open now, and opened since the stream started. */
  flows: number;
  flowsOpened: number;
}

/**
 * A stream's counters on a data server. The connection ends (connection-ends.ts)
 * are absent from data servers that do not report them (agents from before them).
 */
export interface StreamStats extends Partial<ConnectionEndCounts> {
  uid: string;
  /** Listeners open for the stream. */
  listeners: number;
  /** Connections forwarding now. */
  activeConnections: number;
  /** Connections accepted but waiting for targets (before UpdateTargets). */
  waitingConnections: number;
  /** Connections accepted over the stream's life. */
  acceptedConnections: number;
  bytesToTarget: number;
  bytesFromTarget: number;
  /**
   * Connections refused for this stream: over --max-conns-per-listener, over the
   * waiting bound or its wait time, over --max-buffer-memory, a WAN peer without
   * the stream's credentials, or a target that could not be reached.
   */
  refusedConnections: number;
  /** Its last connections that ended, newest last (access-log.ts); absent from agents that do not report them. */
  recentConnections?: ConnectionRecord[];
  /** UDP streams: their datagrams (bytes are in bytesToTarget/bytesFromTarget); absent for TCP streams. */
  datagrams?: DatagramStats;
}

export interface DataServer {
  /** StartLstn: opens `count` listeners for a stream, all or none. Returns their bound addresses. */
  startListeners(uid: string, count: number, opts?: ListenerOptions): Promise<Address[]>;
  /**
   * StartConn/Connect: connections on listener i go to targets[i % targets.length].
   * `record` (data servers that keep records): replaces the stream's record once the
   * targets apply, in the same call.
   */
  setTargets(uid: string, targets: Address[], wan?: WanLeg, record?: Uint8Array): Promise<void>;
  /** Closes the stream's listeners and connections and returns its ports. Unknown uid: no-op. */
  release(uid: string): Promise<void>;
  stats(uid: string): StreamStats | undefined;
  /** Ports of the range reserved now (over all streams) and still free. */
  ports(): { reserved: number; free: number };
  /** Buffer memory reserved by the connections open now, and the bound (--max-buffer-memory), in bytes. */
  bufferMemory(): { reserved: number; limit: number };
  /** Data connections accepted and not yet authenticated or matched to a target (agents: as of their last poll). */
  pendingConnections?(): number;
  /** Releases everything. */
  close(): Promise<void>;
  /** Framed WAN connections that broke since start, by cause (s2ds/liveness.ts); absent: not counted. */
  wanBreakTotals?(): { cause: string; count: number }[];
  /** Datagrams of UDP streams dropped since start (released streams included), by cause, and UDP flows open now; absent: not counted. */
  datagramTotals?(): { drops: { cause: string; count: number }[]; flows: number };
  /** Data-server agents: keep `record` with the stream (SetRecord), for a restarted s2cs. */
  setRecord?(uid: string, record: Uint8Array): Promise<void>;
  /** Data-server agents: the streams they hold now, each with the record s2cs kept with it. */
  adopt?(): Promise<AdoptedStream[]>;
  /**
   * Data-server agents: the parts of a stream whose release (a release() that threw
   * PartialRelease) an agent has not confirmed yet; undefined when none is left.
   */
  releasing?(uid: string): readonly UnreleasedShare[] | undefined;
  /** Data-server agents: each agent's part of the stream's counters, with the agent's handle (rates by agent in status). */
  shareStats?(uid: string): { agent: AgentHandle; stats: StreamStats }[];
  /** Data-server agents: called once every agent confirmed a release that was partial, with how it ended there. */
  onReleased?(listener: (uid: string, how: string) => void): void;
}

/** An agent's part of a stream that it has not confirmed releasing (it did not answer). */
export interface UnreleasedShare {
  agent: string;
  address: string;
  /** Connections it carried for the stream at its last answer: they may still forward. */
  connections: number;
}

/** A stream a restarted s2cs finds on its agents. */
export interface AdoptedStream {
  uid: string;
  record: Uint8Array;
}

/** One stream as an agent holds it: what a restarted s2cs reads back (ListStreams). */
export interface AgentStream {
  uid: string;
  /** host:port as advertised (the agent's --listener-ip), in StartListeners order. */
  listeners: string[];
  /** One per listener; empty before SetTargets. */
  targets: string[];
  /** What s2cs stored with SetRecord (or StartListeners); opaque to the agent. */
  record: Uint8Array;
  encrypted: boolean;
  stats: StreamStats;
}

/** An agent's answer to Health. */
export interface AgentHealth {
  name: string;
  version: string;
  listenerIp: string;
  reservedPorts: number;
  freePorts: number;
  activeConnections: number;
  /** Bytes forwarded since the agent started, both directions. */
  bytesTotal: number;
  bufferMemoryReserved: number;
  bufferMemoryLimit: number;
  startedAtMs: number;
  /** Data connections it refused since it started, by kind (agents in other processes; absent in process). */
  refusals?: { kind: string; count: number }[];
  /** Ports held by spare listeners (every owner); counted in reservedPorts. */
  sparePorts?: number;
  /** Data connections not yet authenticated or matched to a target, now (admission.ts). */
  pendingConnections?: number;
  /** Framed WAN connections that broke since it started, by cause (s2ds/liveness.ts). */
  wanBreaks?: { cause: string; count: number }[];
  /** Datagrams of UDP streams it dropped since it started, by cause (s2ds/udp/counters.ts). */
  datagramDrops?: { cause: string; count: number }[];
  /** UDP flows open on it now. */
  udpFlows?: number;
}

/**
 * A data-server agent as s2cs sees it (issue 11): a DataServer for its share of
 * each stream, plus what placement, status and recovery need. Implemented by
 * RemoteAgent (a client of proto/s2ds.proto, TCP with mutual TLS or a Unix socket)
 * and by LocalAgent (in process, for tests and libraries). The sync reads (stats,
 * ports, bufferMemory, health) come from the last poll, at most about a second old.
 */
export interface AgentHandle extends DataServer {
  /** --name of the agent, or its address until it has answered. */
  readonly name: string;
  /** Where s2cs reaches it (host:port or unix:/path). */
  readonly address: string;
  /** Not marked down (it answered one of its last polls); a down agent gets no new streams. */
  up(): boolean;
  /** Up and answered its very last poll (absent: same as up()); only such an agent gets new streams. */
  answering?(): boolean;
  /** The last Health answer (undefined before the first). */
  health(): AgentHealth | undefined;
  /** Recent load for placement: bytes per second over the last polls, both directions. */
  bytesPerSecond(): number;
  /** Stores (replaces) the record s2cs keeps with a stream this agent holds part of. */
  setRecord(uid: string, record: Uint8Array): Promise<void>;
  /** Every stream the agent holds now, with records and counters (asks the agent). */
  listStreams(): Promise<AgentStream[]>;
  /** Called when the agent goes down or comes back, or restarted (its streams are gone). */
  onChange(listener: (event: 'down' | 'up' | 'restarted') => void): void;
  /** Called with the streams the agent dropped by itself (s2ds --orphan-timeout), seen at a poll. */
  onStreamsGone?(listener: (uids: string[]) => void): void;
  /**
   * Spare listeners (agents in other processes, where opening listeners costs a
   * round trip): opened ahead for `owner`, given to a stream without waiting
   * (AgentPool), and released. Absent: the pool opens listeners per request.
   */
  reserveSpares?(owner: string, count: number): Promise<Address[]>;
  /** Makes spares the stream's listeners (in this order) with its record; the handle counts the stream from the call on. */
  assignSpares?(uid: string, owner: string, listeners: Address[], record: Uint8Array, capBps?: number, allowFrom?: readonly string[], shared?: boolean): Promise<void>;
  /** Closes the owner's spares (only `listeners`, when given), or (others) every other owner's. */
  releaseSpares?(owner: string, others: boolean, listeners?: Address[]): Promise<void>;
  /** The port range its listeners take ports from, when the handle knows it (in-process agents); the pool routes chosen ports by it. */
  portRange?(): PortRange;
}

export { ConnectionEnds, mergeEnds, type ConnectionEndCounts } from './connection-ends.js';
export { AccessLog, RECENT_CONNECTIONS, type ConnectionRecord, type Leg } from './access-log.js';
export { LocalDataServer, DATA_DEFAULTS, type LocalDataServerOptions } from './local.js';
export { connectionMemory } from './buffers.js';
export { PortPool, parsePortRange, type PortRange } from './ports.js';
export { Pacer } from './pacer.js';
export { LocalAgent, type LocalAgentOptions } from './local-agent.js';
export { AgentPool, type AgentSummary, type PoolStream, type AdoptResult } from './pool.js';
export type { Share } from './pool-joins.js';
