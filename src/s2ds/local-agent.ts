// An agent in the s2cs process: the AgentHandle over a LocalDataServer. Used by
// tests, by libraries, and by `s2cs start --workers 0` (everything in one process).
import type { PortRange } from './ports.js';
import { formatAddress, type Address } from '../protocol/address.js';
import { notFound } from '../protocol/errors.js';
import { VERSION } from '../version.js';
import type { AgentHandle, AgentHealth, AgentStream, ListenerOptions, StreamStats, WanLeg } from './index.js';
import { LocalDataServer, type LocalDataServerOptions } from './local.js';

export interface LocalAgentOptions extends LocalDataServerOptions {
  /** Default: "local". */
  name?: string;
  /** How often bytesPerSecond is sampled (default 1000 ms). */
  sampleMs?: number;
}

type ChangeListener = (event: 'down' | 'up' | 'restarted') => void;

export class LocalAgent implements AgentHandle {
  readonly name: string;
  readonly address: string;
  readonly engine: LocalDataServer;
  private readonly records = new Map<string, Uint8Array>();
  private readonly listeners = new Map<string, Address[]>();
  private readonly changeListeners: ChangeListener[] = [];
  private readonly startedAtMs = Date.now();
  private readonly sampler: NodeJS.Timeout;
  private lastTotal = 0;
  private lastAt = Date.now();
  private rate = 0;

  constructor(private readonly opts: LocalAgentOptions) {
    this.engine = new LocalDataServer(opts);
    this.name = opts.name ?? 'local';
    this.address = 'in-process';
    const every = opts.sampleMs ?? 1000;
    this.sampler = setInterval(() => this.sample(), every);
    this.sampler.unref();
  }

  private sample(): void {
    const now = Date.now();
    const total = this.engine.bytesTotal();
    const seconds = (now - this.lastAt) / 1000;
    if (seconds > 0) this.rate = (total - this.lastTotal) / seconds;
    this.lastTotal = total;
    this.lastAt = now;
  }

  /** In process: it answers as long as s2cs runs. */
  up(): boolean {
    return true;
  }

  health(): AgentHealth {
    const ports = this.engine.ports();
    const memory = this.engine.bufferMemory();
    const udp = this.engine.datagramTotals();
    return {
      name: this.name,
      version: VERSION,
      listenerIp: this.opts.advertiseHost ?? this.opts.bindHost,
      reservedPorts: ports.reserved,
      freePorts: ports.free,
      activeConnections: this.engine.activeConnections(),
      bytesTotal: this.engine.bytesTotal(),
      bufferMemoryReserved: memory.reserved,
      bufferMemoryLimit: memory.limit,
      startedAtMs: this.startedAtMs,
      pendingConnections: this.engine.pendingConnections(),
      wanBreaks: this.engine.wanBreakTotals(),
      datagramDrops: udp.drops,
      udpFlows: udp.flows,
    };
  }

  bytesPerSecond(): number {
    return this.rate;
  }

  async startListeners(uid: string, count: number, opts?: ListenerOptions): Promise<Address[]> {
    const bound = await this.engine.startListeners(uid, count, opts);
    this.listeners.set(uid, bound);
    return bound;
  }

  async setTargets(uid: string, targets: Address[], wan?: WanLeg, record?: Uint8Array): Promise<void> {
    await this.engine.setTargets(uid, targets, wan);
    if (record && record.length > 0) this.records.set(uid, record);
  }

  async setRecord(uid: string, record: Uint8Array): Promise<void> {
    if (!this.engine.stats(uid)) throw notFound(`stream ${uid} has no listeners on data server ${this.name}`);
    this.records.set(uid, record);
  }

  async release(uid: string): Promise<void> {
    await this.engine.release(uid);
    this.records.delete(uid);
    this.listeners.delete(uid);
  }

  stats(uid: string): StreamStats | undefined {
    return this.engine.stats(uid);
  }

  ports(): { reserved: number; free: number } {
    return this.engine.ports();
  }

  portRange(): PortRange {
    return this.opts.portRange;
  }

  bufferMemory(): { reserved: number; limit: number } {
    return this.engine.bufferMemory();
  }

  async listStreams(): Promise<AgentStream[]> {
    const out: AgentStream[] = [];
    for (const uid of this.engine.uids()) {
      const stats = this.engine.stats(uid);
      const listeners = this.listeners.get(uid);
      // Still binding: not a stream yet.
      if (!stats || !listeners) continue;
      const t = this.engine.targetsOf(uid)!;
      out.push({
        uid,
        listeners: listeners.map(formatAddress),
        targets: t.targets.map(formatAddress),
        record: this.records.get(uid) ?? new Uint8Array(),
        encrypted: t.encrypted,
        stats,
      });
    }
    return out;
  }

  onChange(listener: ChangeListener): void {
    this.changeListeners.push(listener);
  }

  /** For subclasses that model an agent's liveness (tests). */
  protected emit(event: 'down' | 'up' | 'restarted'): void {
    for (const l of this.changeListeners) l(event);
  }

  async close(): Promise<void> {
    clearInterval(this.sampler);
    await this.engine.close();
    this.records.clear();
    this.listeners.clear();
  }
}
