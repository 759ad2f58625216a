// S2DS, the data server: the buffer-and-forward agent on a gateway node.
// S2CS drives it through this interface only, so that it can later run as a
// separate agent on each gateway (the seed: S2CS and S2DS talk over a LAN).
import type { Address } from '../protocol/address.js';
import type { StreamCredentials } from '../transport/index.js';

/**
 * The stream's WAN leg. `accept`: this gateway's listeners face the WAN (the
 * producer side); `connect`: its targets are the other gateway's WAN listeners
 * (the consumer side). Absent: plain TCP on both legs (--allow-plaintext-data).
 */
export interface WanLeg {
  side: 'accept' | 'connect';
  credentials: StreamCredentials;
}

export interface StreamStats {
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
}

export interface DataServer {
  /** StartLstn: opens `count` listeners for a stream, all or none. Returns their bound addresses. */
  startListeners(uid: string, count: number): Promise<Address[]>;
  /** StartConn/Connect: connections on listener i go to targets[i % targets.length]. */
  setTargets(uid: string, targets: Address[], wan?: WanLeg): Promise<void>;
  /** Closes the stream's listeners and connections and returns its ports. Unknown uid: no-op. */
  release(uid: string): Promise<void>;
  stats(uid: string): StreamStats | undefined;
  /** Ports of the range reserved now (over all streams) and still free. */
  ports(): { reserved: number; free: number };
  /** Buffer memory reserved by the connections open now, and the bound (--max-buffer-memory), in bytes. */
  bufferMemory(): { reserved: number; limit: number };
  /** Releases everything. */
  close(): Promise<void>;
}

export { LocalDataServer, DATA_DEFAULTS, connectionMemory, type LocalDataServerOptions } from './local.js';
export { PortPool, parsePortRange, type PortRange } from './ports.js';
