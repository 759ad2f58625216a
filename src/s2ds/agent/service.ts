// The agent's gRPC handlers (proto/s2ds.proto) over the data-server engine
// (LocalDataServer): validate, call the engine, keep what ListStreams and Health
// report. Everything here lives in memory only, stream credentials included.
import { createHash } from 'node:crypto';
import type { Logger } from '../../log.js';
import { formatAddress } from '../../protocol/address.js';
import { MAX_RECORD_BYTES, type AgentHandlers, type AgentHealthMessage, type StreamInfo } from '../../protocol/agent-contract.js';
import { ScistreamError, aborted, alreadyExists, invalidArgument, notFound, resourceExhausted } from '../../protocol/errors.js';
import { guardedUnary, type Guarded } from '../../protocol/guard.js';
import { shown, safeDetails } from '../../protocol/text.js';
import { MAX_ADDRESSES, validateAddresses, validateCredentials, validateListenerPorts, validateProtocol, validateUid } from '../../protocol/validate.js';
import { validateAllowList } from '../../protocol/cidr.js';
import { VERSION } from '../../version.js';
import type { LocalDataServer } from '../local.js';
import type { WanLeg } from '../index.js';

export interface AgentServiceOptions {
  engine: LocalDataServer;
  /** Advertised in every listener (--listener-ip). */
  listenerIp: string;
  /** --name, reported by Health. */
  name: string;
  logger: Logger;
}

interface Entry {
  listeners: string[];
  targets: string[];
  record: Buffer;
  encrypted: boolean;
  /** What SetTargets last applied (targets, side, certificates; never the key), to make a repeat a no-op. */
  applied: string;
}

/** Spares one owner (an s2cs process) may hold on an agent. */
export const MAX_SPARES_PER_OWNER = 16;
/** Spares all owners together may hold: a bound whatever the owners ask. */
export const MAX_SPARES = 64;

/** The agent's own view of its streams, next to the engine's sockets. */
export class AgentService {
  private readonly entries = new Map<string, Entry>();
  /** Spare listeners' ports by owner (ReserveSpares). */
  private readonly spares = new Map<string, Set<number>>();
  /** Bytes forwarded by streams already released, so that Health's total never goes down. */
  private releasedBytes = 0;
  readonly startedAtMs = Date.now();
  /** When an s2cs last called (any rpc): what --orphan-timeout measures. */
  lastContactMs = Date.now();

  constructor(private readonly opts: AgentServiceOptions) {}

  async startListeners(
    uidText: string,
    count: number,
    record: Buffer,
    capText = '0',
    portList: number[] = [],
    allowList: string[] = [],
    protocolText = '',
    share: { join_ports?: number[]; shared?: boolean } = {},
  ): Promise<string[]> {
    const uid = validateUid(uidText);
    if (!Number.isInteger(count) || count < 1 || count > MAX_ADDRESSES) {
      throw invalidArgument(`count ${count} is out of range: an agent opens 1 to ${MAX_ADDRESSES} listeners per stream`);
    }
    checkRecord(record);
    const ports = validateListenerPorts(portList, count);
    const allowFrom = validateAllowList(allowList, 'allow_from');
    const protocol = validateProtocol(protocolText);
    const join = validateJoin(share.join_ports ?? [], count);
    const bound = await this.opts.engine.startListeners(uid, count, { capBps: capOf(capText), ports, allowFrom, protocol, join, shared: share.shared === true });
    // A chosen port that was a spare is the stream's now, whoever held it.
    for (const [owner, set] of this.spares) {
      for (const p of ports) set.delete(p);
      if (set.size === 0) this.spares.delete(owner);
    }
    // A Release that arrived while the ports were being bound has closed them already.
    if (!this.opts.engine.stats(uid)) throw aborted(`stream ${uid} was released while its listeners were being opened`);
    const listeners = bound.map((a) => formatAddress({ host: this.opts.listenerIp, port: a.port }));
    this.entries.set(uid, { listeners, targets: [], record: Buffer.from(record), encrypted: false, applied: '' });
    return listeners;
  }

  async setTargets(uidText: string, targetTexts: string[], wanMessage: { side: string; certificate: string; private_key: string; peer_certificate: string } | null, record: Buffer = EMPTY): Promise<void> {
    const uid = validateUid(uidText);
    checkRecord(record);
    const entry = this.entries.get(uid);
    if (!entry) throw notFound(`stream ${uid} has no listeners on this agent; call StartListeners first`);
    if (targetTexts.length !== entry.listeners.length) {
      throw invalidArgument(`targets has ${Math.min(targetTexts.length, 1_000_000)} address(es) but stream ${uid} has ${entry.listeners.length} listener(s) on this agent; give one target per listener`);
    }
    const targets = validateAddresses(targetTexts, 'targets');
    let wan: WanLeg | undefined;
    if (wanMessage) {
      const side = wanMessage.side;
      if (side !== 'accept' && side !== 'connect') throw invalidArgument(`wan.side "${shown(side, 20)}" is not valid: use accept (producer side) or connect (consumer side)`);
      wan = { side, credentials: validateCredentials(wanMessage, 'wan')! };
    }
    const formatted = targets.map(formatAddress);
    const applied = createHash('sha256')
      .update(JSON.stringify([formatted, wan?.side ?? '', wan?.credentials.cert ?? '', wan?.credentials.peerCert ?? '']))
      .digest('hex');
    if (entry.applied !== applied) {
      await this.opts.engine.setTargets(uid, targets, wan);
      if (this.entries.get(uid) !== entry) throw aborted(`stream ${uid} was released while its targets were being set`);
      entry.targets = formatted;
      entry.encrypted = wan !== undefined;
      entry.applied = applied;
    }
    if (record.length > 0) entry.record = Buffer.from(record);
  }

  private sparesHeld(): number {
    let n = 0;
    for (const set of this.spares.values()) n += set.size;
    return n;
  }

  async reserveSpares(ownerText: string, count: number): Promise<string[]> {
    const owner = validateOwner(ownerText);
    const mine = this.spares.get(owner)?.size ?? 0;
    if (!Number.isInteger(count) || count < 1 || mine + count > MAX_SPARES_PER_OWNER) {
      throw invalidArgument(`count ${count} is out of range: owner ${owner} holds ${mine} spare listener(s) and may hold at most ${MAX_SPARES_PER_OWNER}`);
    }
    if (this.sparesHeld() + count > MAX_SPARES) {
      throw resourceExhausted(`this agent already holds ${this.sparesHeld()} spare listeners, the most it keeps (${MAX_SPARES}); ReleaseSpares those of owners that are gone`);
    }
    const ports = await this.opts.engine.openSpares(count);
    let set = this.spares.get(owner);
    if (!set) this.spares.set(owner, (set = new Set()));
    for (const p of ports) set.add(p);
    return ports.map((port) => formatAddress({ host: this.opts.listenerIp, port }));
  }

  assignSpares(uidText: string, ownerText: string, listenerTexts: string[], record: Buffer, capText = '0', allowList: string[] = [], shared = false): void {
    const uid = validateUid(uidText);
    const owner = validateOwner(ownerText);
    checkRecord(record);
    if (listenerTexts.length < 1 || listenerTexts.length > MAX_SPARES_PER_OWNER) {
      throw invalidArgument(`listeners has ${Math.min(listenerTexts.length, 1_000_000)} address(es); give 1 to ${MAX_SPARES_PER_OWNER} spare listeners`);
    }
    const ports = validateAddresses(listenerTexts, 'listeners').map((a) => a.port);
    const set = this.spares.get(owner);
    const notMine = ports.filter((p) => !set?.has(p));
    if (notMine.length > 0) throw notFound(`port(s) ${notMine.join(', ')} are not spare listeners of owner ${owner} on this agent (released, taken, or the agent restarted)`);
    if (this.entries.has(uid)) throw alreadyExists(`stream ${uid} already has listeners on this agent`);
    this.opts.engine.assignSpares(uid, ports, capOf(capText), validateAllowList(allowList, 'allow_from'), shared);
    for (const p of ports) set!.delete(p);
    if (set!.size === 0) this.spares.delete(owner);
    const listeners = ports.map((port) => formatAddress({ host: this.opts.listenerIp, port }));
    this.entries.set(uid, { listeners, targets: [], record: Buffer.from(record), encrypted: false, applied: '' });
  }

  async releaseSpares(ownerText: string, others: boolean, listenerTexts: string[] = []): Promise<void> {
    const owner = validateOwner(ownerText);
    const ports: number[] = [];
    if (listenerTexts.length > 0 && !others) {
      if (listenerTexts.length > MAX_SPARES) throw invalidArgument(`listeners has ${Math.min(listenerTexts.length, 1_000_000)} address(es); an agent holds at most ${MAX_SPARES} spares`);
      const set = this.spares.get(owner);
      for (const a of validateAddresses(listenerTexts, 'listeners')) {
        // Not (or no longer) a spare of this owner: nothing to release.
        if (set?.delete(a.port)) ports.push(a.port);
      }
      if (set?.size === 0) this.spares.delete(owner);
    } else {
      for (const [o, set] of this.spares) {
        if ((o === owner) === others) continue;
        ports.push(...set);
        this.spares.delete(o);
      }
    }
    await this.opts.engine.releaseSpares(ports);
  }

  setRecord(uidText: string, record: Buffer): void {
    const uid = validateUid(uidText);
    checkRecord(record);
    const entry = this.entries.get(uid);
    if (!entry) throw notFound(`stream ${uid} has no listeners on this agent; nothing to keep a record with`);
    entry.record = Buffer.from(record);
  }

  async release(uidText: string): Promise<void> {
    const uid = validateUid(uidText);
    const engine = this.opts.engine;
    // Read in the same tick as the engine resets the connections: no byte is counted twice or lost.
    const s = engine.stats(uid);
    if (s) this.releasedBytes += s.bytesToTarget + s.bytesFromTarget;
    this.entries.delete(uid);
    await engine.release(uid);
  }

  listStreams(): StreamInfo[] {
    const out: StreamInfo[] = [];
    for (const [uid, e] of this.entries) {
      const s = this.opts.engine.stats(uid);
      if (!s) continue;
      out.push({
        uid,
        listeners: e.listeners,
        targets: e.targets,
        record: e.record,
        encrypted: e.encrypted,
        active_connections: s.activeConnections,
        waiting_connections: s.waitingConnections,
        accepted_connections: s.acceptedConnections,
        refused_connections: s.refusedConnections,
        bytes_to_target: s.bytesToTarget,
        bytes_from_target: s.bytesFromTarget,
        clean_ends: s.cleanEnds ?? 0,
        abnormal_ends: s.abnormalEnds ?? 0,
        ms_since_last_end: s.lastEndAt ? Math.max(0, Date.now() - s.lastEndAt) : 0,
        last_end_abnormal: s.lastEndAbnormal ?? false,
        last_end_error: s.lastEndError ?? '',
        recent_connections: (s.recentConnections ?? []).map((r) => ({
          listener: r.listener,
          leg: r.leg,
          peer: r.peer,
          bytes_in: r.bytesIn,
          bytes_out: r.bytesOut,
          duration_ms: r.durationMs,
          end: r.end,
          ms_since_end: Math.max(0, Date.now() - r.endedAtMs),
        })),
        ...(s.datagrams
          ? {
              protocol: 'udp',
              datagrams_to_target: s.datagrams.datagramsToTarget,
              datagrams_from_target: s.datagrams.datagramsFromTarget,
              datagram_drops: s.datagrams.drops.map((d) => ({ kind: d.cause, count: d.count })),
              udp_flows: s.datagrams.flows,
              udp_flows_opened: s.datagrams.flowsOpened,
            }
          : { protocol: 'tcp' }),
      });
    }
    return out;
  }

  health(): AgentHealthMessage {
    const engine = this.opts.engine;
    let active = 0;
    let bytes = this.releasedBytes;
    for (const uid of this.entries.keys()) {
      const s = engine.stats(uid);
      if (!s) continue;
      active += s.activeConnections;
      bytes += s.bytesToTarget + s.bytesFromTarget;
    }
    const ports = engine.ports();
    const memory = engine.bufferMemory();
    const udp = engine.datagramTotals();
    return {
      name: this.opts.name,
      version: VERSION,
      listener_ip: this.opts.listenerIp,
      reserved_ports: ports.reserved,
      free_ports: ports.free,
      active_connections: active,
      bytes_total: bytes,
      buffer_memory_reserved: memory.reserved,
      buffer_memory_limit: memory.limit,
      started_at_ms: this.startedAtMs,
      spare_ports: this.sparesHeld(),
      refusals: engine.refusalTotals(),
      pending_connections: engine.pendingConnections(),
      wan_breaks: engine.wanBreakTotals(),
      datagram_drops: udp.drops.map((d) => ({ kind: d.cause, count: d.count })),
      udp_flows: udp.flows,
    };
  }

  /** Streams held now. */
  get size(): number {
    return this.entries.size;
  }

  /** The uids of the streams held now. */
  uids(): string[] {
    return [...this.entries.keys()];
  }

  /** Releases every stream (connections reset): the agent's graceful stop. */
  async close(): Promise<void> {
    this.opts.engine.shuttingDown();
    await Promise.all([...this.entries.keys()].map((uid) => this.release(uid)));
    await this.opts.engine.close();
  }

  handlers(): AgentHandlers {
    const { logger } = this.opts;
    const guarded = guardedUnary({
      service: 'scistream.s2ds.Agent',
      protoFile: 'proto/s2ds.proto',
      logger,
      logFailure: (rpc, call, err, incident) => logFailure(logger, rpc, call.request, err, incident),
      internalDetails: (incident) => `internal error in s2ds ${this.opts.name} (incident ${incident}); the agent's log has the details under that id: please report it`,
    });
    // Every call comes from an authenticated s2cs (mutual TLS, or the socket's mode): each one is contact.
    const unary: Guarded = (rpc, handler) =>
      guarded(rpc, (m, call) => {
        this.lastContactMs = Date.now();
        return handler(m, call);
      });
    return {
      StartListeners: unary('StartListeners', async (m) => ({ listeners: await this.startListeners(m.uid, m.count, m.record, m.cap_bps, m.ports, m.allow_from, m.protocol, m) })),
      SetTargets: unary('SetTargets', async (m) => {
        await this.setTargets(m.uid, m.targets, m.wan, m.record);
        return {};
      }),
      SetRecord: unary('SetRecord', (m) => {
        this.setRecord(m.uid, m.record);
        return {};
      }),
      Release: unary('Release', async (m) => {
        await this.release(m.uid);
        return {};
      }),
      ListStreams: unary('ListStreams', () => ({ streams: this.listStreams() })),
      Health: unary('Health', () => this.health()),
      ReserveSpares: unary('ReserveSpares', async (m) => ({ listeners: await this.reserveSpares(m.owner, m.count) })),
      AssignSpares: unary('AssignSpares', (m) => {
        // Spares are bound for TCP only; s2cs binds a UDP stream's ports at request time (StartListeners).
        if (validateProtocol(m.protocol ?? '') === 'udp') throw invalidArgument('protocol udp: spares are TCP listeners only; open a UDP stream with StartListeners');
        this.assignSpares(m.uid, m.owner, m.listeners, m.record, m.cap_bps, m.allow_from, m.shared === true);
        return {};
      }),
      ReleaseSpares: unary('ReleaseSpares', async (m) => {
        await this.releaseSpares(m.owner, m.others, m.listeners);
        return {};
      }),
    };
  }
}

const EMPTY = Buffer.alloc(0);

/** join_ports: none, or one valid port per listener (count of them), each once. */
function validateJoin(ports: readonly number[], count: number): number[] {
  if (ports.length === 0) return [];
  if (ports.length !== count) throw invalidArgument(`join_ports has ${Math.min(ports.length, 1_000_000)} port(s) but count is ${count}: give one port to join per listener`);
  const bad = ports.filter((p) => !Number.isInteger(p) || p < 1 || p > 65535);
  if (bad.length > 0) throw invalidArgument(`join_ports: ${bad.slice(0, 5).join(', ')} ${bad.length === 1 ? 'is not a port' : 'are not ports'} (1 to 65535)`);
  if (new Set(ports).size !== ports.length) throw invalidArgument('join_ports names a port twice: give each listener to join once');
  return [...ports];
}

/** An owner of spares: the id an s2cs process picked (letters, digits, - and _; 1 to 64). */
function validateOwner(owner: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(owner)) throw invalidArgument(`owner "${shown(owner, 64)}" is not valid: 1 to 64 letters, digits, - or _`);
  return owner;
}

function checkRecord(record: Buffer): void {
  if (record.length > MAX_RECORD_BYTES) {
    throw invalidArgument(`record is ${record.length} bytes; an agent keeps at most ${MAX_RECORD_BYTES} bytes per stream`);
  }
}

function logFailure(logger: Logger, rpc: string, request: unknown, err: unknown, incident: string): void {
  const uid = typeof request === 'object' && request !== null && 'uid' in request && typeof request.uid === 'string' ? shown(request.uid, 128) : undefined;
  if (err instanceof ScistreamError) logger.info({ rpc, uid, status: err.kind }, safeDetails(err.message));
  else logger.error({ rpc, uid, incident, err }, `unexpected failure while serving an rpc (incident ${incident})`);
}

/** A stream's cap_bps (uint64 arrives as text); beyond 2^53 it is no cap any link could need. */
function capOf(text: string): number {
  const capBps = Number(text);
  if (!Number.isSafeInteger(capBps) || capBps < 0) throw invalidArgument(`cap_bps ${text} is not a whole number of bytes per second below 2^53`);
  return capBps;
}
