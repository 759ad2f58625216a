// S2CS as a library: start a control server with its in-process data server.
import * as grpc from '@grpc/grpc-js';
import { createLogger, type Logger } from '../log.js';
import { NoAuth, type Authenticator } from '../auth/index.js';
import { Control, tolerantService } from '../protocol/contract.js';
import { ScistreamError, invalidArgument } from '../protocol/errors.js';
import { AgentPool, DATA_DEFAULTS, LocalAgent, type AgentHandle, type AgentSummary, type DataServer, type LocalDataServer, type PortRange } from '../s2ds/index.js';
import { Refusals } from '../limits/refusals.js';
import { controlHandlers, statusView, type ServiceDeps, type StatusView, type Viewer } from './service.js';
import { GatewayMetrics } from './metrics.js';
import { StreamTable, isLoopback, plaintextDataPolicy, type RatePolicy } from './streams.js';
import { formatBitRate } from '../units.js';
import { portList } from '../s2ds/local.js';
import { controlServerOptions, type ControlPortLimits } from './control-port.js';
import { Supervisor } from './supervisor.js';

export interface ControlServerOptions {
  /** Address the gRPC control service binds to. */
  host?: string;
  /** Control port; 0 picks a free one. */
  port: number;
  /** IP advertised in listeners (the address peers reach the gateway at). */
  listenerIp: string;
  /** Address the data listeners bind to; defaults to listenerIp. */
  bindIp?: string;
  portRange: PortRange;
  helloTimeoutMs?: number;
  maxConn?: number;
  bufferSize?: number;
  /** Connections open at once on one data listener (default DATA_DEFAULTS.maxConnsPerListener). */
  maxConnsPerListener?: number;
  /** Connections that may wait for their stream's UpdateTargets, per stream (default DATA_DEFAULTS.waitLimit). */
  maxWaitingConns?: number;
  /** Buffer memory all data connections may reserve together, in bytes (default 1 GiB). */
  maxBufferMemory?: number;
  /** --wan-dead-after in ms (default 30 s): dead-peer detection on the WAN leg, keepalive of data sockets. */
  wanDeadAfterMs?: number;
  /** Counts and rate-limits the log lines of refusals; shared by the data server and the stream table. */
  refusals?: Refusals;
  /**
   * Accept UpdateTargets without per-stream credentials (plain-TCP WAN leg) on any
   * bind address; on loopback they are accepted without it (plaintextDataPolicy).
   */
  allowPlaintextData?: boolean;
  /** With token checking on, accept on Hello the stream owner's token in place of its application secret. */
  helloAcceptsOwnerToken?: boolean;
  /** What a stream's Request.rate means here (default none: stored and reported). */
  ratePolicy?: RatePolicy;
  /** With ratePolicy reserve (required there): what the gateway admits streams against, bytes per second. */
  capacityBps?: number;
  /** How callers are identified (default: NoAuth, every caller anonymous). */
  auth?: Authenticator;
  /** Identities (token subjects) that may release and see every stream. */
  admins?: string[];
  credentials?: grpc.ServerCredentials;
  /** When the control port closes idle, silent and broken connections (control-port.ts). */
  controlPort?: ControlPortLimits;
  logger?: Logger;
  /** A data server used as is (tests); no agents, no pool. */
  dataServer?: DataServer;
  /**
   * The data-server agents (s2ds processes, or LocalAgents); their listeners carry
   * their own --listener-ip. Default: one LocalAgent in this process (--workers 0).
   */
  agents?: AgentHandle[];
  /**
   * Local s2ds worker processes to run and supervise (s2cs --workers N, N >= 1),
   * each with its slice of portRange; reached through `connectAgent`.
   */
  workers?: WorkerSettings;
  /** How s2cs reaches an agent at an address (RemoteAgent); needed with `workers`. */
  connectAgent?: (address: string, name: string) => AgentHandle;
  /**
   * Listeners kept open ahead on each agent in another process, so that a request
   * needs no round trip to it (AgentPool spares). Default SPARE_LISTENERS; 0: none.
   */
  spareListeners?: number;
  /** A stream without UpdateTargets this long after its req is released (default: 300 s, or helloTimeoutMs when longer; never below it). */
  setupTimeoutMs?: number;
  /** Ports one identity (with NoAuth: one caller address) may hold at once (default: see defaultMaxPortsPerUser). */
  maxPortsPerUser?: number;
  /** Producer Hellos held before their req: in all, and from one address (consumer Hellos waiting: a tenth of each). */
  maxPendingHellos?: number;
  maxPendingHellosPerPeer?: number;
}

export interface WorkerSettings {
  count: number;
  /** Where the workers' sockets, pid files and logs go; a new s2cs finds running workers there. */
  dir: string;
  /** Remove `dir` after a graceful stop (a directory for this run only). */
  removeDirOnStop?: boolean;
  /** The agent's script (default: bin/s2ds.js of this package). */
  script?: string;
  /** More flags for every worker (e.g. --verbose, --log-json). */
  extraArgs?: string[];
  /** First restart delay of a worker that died (default 500 ms). */
  backoffMs?: number;
  /** What the workers log, as they write it (the CLI copies it to its own log output). */
  onLog?: (chunk: Buffer) => void;
}

export interface ControlServer {
  /** The control port actually bound. */
  readonly port: number;
  readonly refusals: Refusals;
  readonly table: StreamTable;
  readonly dataServer: DataServer;
  /** The agents behind dataServer (undefined when a data server was given as is). */
  readonly pool: AgentPool | undefined;
  /** The local workers (with `workers`). */
  readonly supervisor: Supervisor | undefined;
  /** Status of each agent: name, address, listener ip, up, streams, free ports, bytes per second. */
  agents(): AgentSummary[];
  /** The gateway's Prometheus metrics (metrics.ts); served by the monitor (--metrics-listen). */
  readonly metrics: GatewayMetrics;
  /** What `status` shows this viewer (viewerOf: a caller's identity; the monitor: the operator, who sees all). */
  status(viewer: Viewer, uid?: string): StatusView;
  /** Whether the gateway can serve new streams now, and if not why (the monitor's /healthz). */
  health(): { ok: true } | { ok: false; why: string };
  /** Releases every stream, then stops serving. */
  close(): Promise<void>;
  /**
   * For a restart (an upgrade) without dropping streams: stops serving control calls
   * and lets go of the agents without releasing anything; the local workers go on
   * forwarding, and an s2cs started with the same --state-dir and --port takes the
   * streams back. Throws when streams live in this process (--workers 0).
   */
  detach(): Promise<void>;
  /**
   * Takes new settings while serving (a configuration reload, SIGHUP); what is not
   * given stays. Throws INVALID_ARGUMENT, changing nothing, for settings that cannot
   * go together or cannot change while running (token checking turned on or off).
   */
  reconfigure(settings: RuntimeSettings): void;
}

/** Settings a running control server can take anew (ControlServer.reconfigure). */
export interface RuntimeSettings {
  /** Replaces the token checking; must check tokens exactly when the running one does. */
  auth?: Authenticator;
  admins?: string[];
  helloAcceptsOwnerToken?: boolean;
  maxConn?: number;
  maxPortsPerUser?: number;
  maxPendingHellos?: number;
  maxPendingHellosPerPeer?: number;
  helloTimeoutMs?: number;
  setupTimeoutMs?: number;
}

export const DEFAULTS = {
  host: '0.0.0.0',
  helloTimeoutMs: 180_000,
  maxConn: 64,
  bufferSize: 4 * 1024 * 1024,
  setupTimeoutMs: 300_000,
  maxPendingHellos: 10_000,
  maxPendingHellosPerPeer: 1_000,
} as const;

/**
 * Half the port range, so that one user can never take the whole gateway and at
 * least half stays for others; but never below --max-conn (capped at the range),
 * so that one stream of the largest size the gateway accepts still fits on an
 * empty gateway.
 */
export function defaultMaxPortsPerUser(range: PortRange, maxConn: number): number {
  const size = range.last - range.first + 1;
  return Math.min(size, Math.max(Math.ceil(size / 2), maxConn));
}

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const logger = opts.logger ?? createLogger({ silent: true });
  const helloTimeoutMs = opts.helloTimeoutMs ?? DEFAULTS.helloTimeoutMs;
  const bufferSize = opts.bufferSize ?? DEFAULTS.bufferSize;
  const setupTimeoutMs = opts.setupTimeoutMs ?? Math.max(DEFAULTS.setupTimeoutMs, helloTimeoutMs);
  if (setupTimeoutMs < helloTimeoutMs) {
    throw invalidArgument(`the setup timeout (${setupTimeoutMs / 1000} s) is below the Hello timeout (${helloTimeoutMs / 1000} s): a producer stream would be released while it may still wait for its Hello`);
  }
  const maxConn = opts.maxConn ?? DEFAULTS.maxConn;
  const maxPendingHellos = opts.maxPendingHellos ?? DEFAULTS.maxPendingHellos;
  const maxPendingHellosPerPeer = Math.min(opts.maxPendingHellosPerPeer ?? DEFAULTS.maxPendingHellosPerPeer, maxPendingHellos);
  const refusals = opts.refusals ?? new Refusals(logger);
  const dataBindHost = opts.bindIp ?? opts.listenerIp;
  const auth = opts.auth ?? new NoAuth();
  if (opts.helloAcceptsOwnerToken && auth.mode === 'none') {
    throw invalidArgument('--hello-accepts-owner-token needs token checking (--auth introspect or --auth jwt): with --auth none a Hello needs neither secret nor token');
  }
  const ratePolicy = opts.ratePolicy ?? 'none';
  if (ratePolicy === 'reserve' && !(opts.capacityBps && opts.capacityBps > 0)) {
    throw invalidArgument('--rate-policy reserve admits streams against --capacity: give what this gateway can carry, e.g. --capacity 10Gbit/s');
  }
  if (ratePolicy !== 'reserve' && opts.capacityBps !== undefined) {
    throw invalidArgument(`--capacity is what --rate-policy reserve admits streams against; with --rate-policy ${ratePolicy} it would do nothing`);
  }
  const maxBufferMemory = opts.maxBufferMemory ?? DATA_DEFAULTS.maxBufferMemory;
  let supervisor: Supervisor | undefined;
  let agents = opts.agents;
  // Local workers and agents on other gateway nodes (--s2ds) may serve together.
  if (opts.workers && !opts.dataServer) {
    const w = opts.workers;
    if (!opts.connectAgent) throw invalidArgument('local workers need connectAgent (how s2cs reaches an agent)');
    const connectAgent = opts.connectAgent;
    let handles: AgentHandle[] = [];
    supervisor = new Supervisor({
      count: w.count,
      dir: w.dir,
      removeDirOnStop: w.removeDirOnStop,
      portRange: opts.portRange,
      script: w.script,
      backoffMs: w.backoffMs,
      onLog: w.onLog,
      logger: logger.child({ component: 'workers' }),
      // The gateway's buffer memory bound holds for all workers together.
      args: [
        '--listener-ip', opts.listenerIp,
        '--bind-ip', dataBindHost,
        '--buffer-size', String(bufferSize),
        '--max-conns-per-listener', String(opts.maxConnsPerListener ?? DATA_DEFAULTS.maxConnsPerListener),
        '--max-waiting-conns', String(opts.maxWaitingConns ?? DATA_DEFAULTS.waitLimit),
        '--max-buffer-memory', String(Math.floor(maxBufferMemory / w.count)),
        '--wait-timeout', String(Math.ceil(helloTimeoutMs / 1000)),
        ...(opts.wanDeadAfterMs !== undefined ? ['--wan-dead-after', String(Math.ceil(opts.wanDeadAfterMs / 1000))] : []),
        ...(w.extraArgs ?? []),
      ],
      onWorkerLost: (i, why) => {
        const handle = handles[i];
        if (handle) pool?.agentLost(handle, why);
      },
    });
    await supervisor.start();
    const names = supervisor.names();
    handles = supervisor.addresses().map((a, i) => connectAgent(a, names[i]!));
    agents = [...(opts.agents ?? []), ...handles];
  }
  const local = opts.dataServer || agents
    ? undefined
    : new LocalAgent({
      name: 'in-process',
      bindHost: dataBindHost,
      advertiseHost: opts.listenerIp,
      portRange: opts.portRange,
      bufferSize,
      waitLimit: opts.maxWaitingConns ?? DATA_DEFAULTS.waitLimit,
      waitTimeoutMs: helloTimeoutMs,
      maxConnsPerListener: opts.maxConnsPerListener ?? DATA_DEFAULTS.maxConnsPerListener,
      maxBufferMemory,
      refusals,
      wanDeadAfterMs: opts.wanDeadAfterMs,
      logger: logger.child({ component: 's2ds' }),
    });
  const pool: AgentPool | undefined = opts.dataServer
    ? undefined
    : new AgentPool(agents ?? [local!], { logger: logger.child({ component: 'agents' }), spares: opts.spareListeners ?? SPARE_LISTENERS });
  const dataServer: DataServer = opts.dataServer ?? pool!;
  // Agents in other processes count (and log) the data connections they refuse; status and /metrics show them with ours.
  if (pool) refusals.addSource(() => pool.refusalTotals());
  const table = new StreamTable({
    dataServer,
    helloTimeoutMs,
    setupTimeoutMs,
    maxPendingHellos,
    maxPendingHellosPerPeer,
    // A waiting consumer Hello holds an open call (about 11 KB); a held producer Hello a few hundred bytes.
    maxWaitingConsHellos: Math.max(1, Math.floor(maxPendingHellos / 10)),
    maxWaitingConsHellosPerPeer: Math.max(1, Math.floor(maxPendingHellosPerPeer / 10)),
    maxHeldListeners: maxConn,
    maxPortsPerUser: opts.maxPortsPerUser ?? defaultMaxPortsPerUser(opts.portRange, maxConn),
    portsPerPeer: auth.mode === 'none',
    refusals,
    allowPlaintextData: opts.allowPlaintextData ?? false,
    dataBindHost,
    requireAppSecret: auth.mode !== 'none',
    helloAcceptsOwnerToken: opts.helloAcceptsOwnerToken ?? false,
    ratePolicy,
    capacityBps: opts.capacityBps,
    admins: new Set(opts.admins ?? []),
    logger,
  });
  // Agents that outlived a previous s2cs (kill -9, crash, upgrade) still forward its streams: take them back first.
  if (pool && agents) {
    await firstAnswers(agents, 5000);
    await table.adopt(await pool.adopt());
  }
  const server = new grpc.Server(controlServerOptions(opts.controlPort));
  // The handlers read auth and limits from here at each call; reconfigure replaces them.
  const agentSummaries = () => pool?.agents() ?? [];
  const metrics = new GatewayMetrics({ table, dataServer, agents: agentSummaries, refusals });
  const deps: ServiceDeps = { table, dataServer, agents: agentSummaries, auth, limits: { maxConn }, refusals, logger, observe: metrics.observeRpc };
  server.addService(tolerantService(Control.service), controlHandlers(deps));
  // What reconfigure checks new values against.
  const running = { helloTimeoutMs, setupTimeoutMs, maxPendingHellos, maxPendingHellosPerPeer, helloAcceptsOwnerToken: opts.helloAcceptsOwnerToken ?? false };
  const host = opts.host ?? DEFAULTS.host;
  const target = host.includes(':') ? `[${host}]:${opts.port}` : `${host}:${opts.port}`;
  // Workers started above do not outlive a start that fails, unless they carry streams.
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(target, opts.credentials ?? grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) {
        reject(
          new ScistreamError(
            'UNAVAILABLE',
            `cannot serve the control channel on ${target}: ${err.message.includes('No address added') ? 'the port is in use or the address is not on this host' : err.message}; choose another --port`,
          ),
        );
      } else resolve(bound);
    });
  }).catch(async (err: unknown) => {
    if (table.size > 0) {
      // Streams taken back from running agents go on forwarding: a start on a free port takes them again.
      table.detach();
      supervisor?.detach();
      await Promise.allSettled((agents ?? []).map((a) => a.close()));
      logger.warn({ streams: table.size }, 'the control port could not be opened; the streams taken back from the data-server agents go on, for the next s2cs to take');
    } else {
      await pool?.close();
      await supervisor?.stop();
    }
    throw err;
  });
  const policy = plaintextDataPolicy(dataBindHost, opts.allowPlaintextData ?? false);
  // A warning only where plain text may cross a network: the flag on an address that is not loopback.
  logger[opts.allowPlaintextData && !isLoopback(dataBindHost) ? 'warn' : 'info']({ plaintextData: policy.accepts, bindIp: dataBindHost }, policy.why);
  if (local) warnPortsHeldByOthers(local.engine, opts.portRange, logger);
  if (ratePolicy !== 'none') {
    const capacity = ratePolicy === 'reserve' ? `; streams admitted while their rates fit in ${formatBitRate(opts.capacityBps!)} (--capacity), a req stating no rate refused` : '';
    logger.info({ ratePolicy, capacityBps: opts.capacityBps }, `streams are held to their stated rate (--rate-policy ${ratePolicy})${capacity}`);
  }
  // A stream that lost a part with its agent is broken: the pool reset the rest; the table forgets it.
  pool?.onStreamsLost((uids, why) => {
    for (const uid of uids) {
      table.ended(uid, why).catch((err: unknown) => logger.error({ uid, err }, 'releasing a stream lost with its agent failed'));
    }
  });
  let closing: Promise<void> | undefined;
  let serving = true;
  return {
    port,
    refusals,
    table,
    dataServer,
    pool,
    supervisor,
    agents: agentSummaries,
    metrics,
    status: (viewer, uid) => statusView(deps, viewer, uid),
    health: () => {
      if (!serving) return { ok: false, why: 'the control server is shutting down' };
      const agents = agentSummaries();
      if (pool && !agents.some((a) => a.up)) {
        return { ok: false, why: `no data-server agent answers (${agents.map((a) => `${a.name} at ${a.address}`).join(', ')})` };
      }
      return { ok: true };
    },
    close: () =>
      (closing ??= (async () => {
        serving = false;
        await table.close();
        await dataServer.close();
        await supervisor?.stop();
        refusals.close();
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 2000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
      })()),
    reconfigure: (settings) => {
      const next = {
        helloTimeoutMs: settings.helloTimeoutMs ?? running.helloTimeoutMs,
        setupTimeoutMs: settings.setupTimeoutMs ?? running.setupTimeoutMs,
        maxPendingHellos: settings.maxPendingHellos ?? running.maxPendingHellos,
        maxPendingHellosPerPeer: settings.maxPendingHellosPerPeer ?? running.maxPendingHellosPerPeer,
        helloAcceptsOwnerToken: settings.helloAcceptsOwnerToken ?? running.helloAcceptsOwnerToken,
      };
      const auth = settings.auth ?? deps.auth;
      if ((auth.mode === 'none') !== (deps.auth.mode === 'none')) {
        throw invalidArgument(`token checking cannot be turned ${auth.mode === 'none' ? 'off' : 'on'} while s2cs runs (streams hold application secrets and owners accordingly); restart s2cs`);
      }
      if (next.setupTimeoutMs < next.helloTimeoutMs) {
        throw invalidArgument(`the setup timeout (${next.setupTimeoutMs / 1000} s) is below the Hello timeout (${next.helloTimeoutMs / 1000} s): a producer stream would be released while it may still wait for its Hello`);
      }
      if (next.helloAcceptsOwnerToken && auth.mode === 'none') throw invalidArgument('--hello-accepts-owner-token needs token checking');
      const perPeer = Math.min(next.maxPendingHellosPerPeer, next.maxPendingHellos);
      const maxConn = settings.maxConn ?? deps.limits.maxConn;
      table.reconfigure({
        helloTimeoutMs: next.helloTimeoutMs,
        setupTimeoutMs: next.setupTimeoutMs,
        maxPendingHellos: next.maxPendingHellos,
        maxPendingHellosPerPeer: perPeer,
        maxWaitingConsHellos: Math.max(1, Math.floor(next.maxPendingHellos / 10)),
        maxWaitingConsHellosPerPeer: Math.max(1, Math.floor(perPeer / 10)),
        maxHeldListeners: maxConn,
        helloAcceptsOwnerToken: next.helloAcceptsOwnerToken,
        ...(settings.maxPortsPerUser !== undefined ? { maxPortsPerUser: settings.maxPortsPerUser } : {}),
        ...(settings.admins !== undefined ? { admins: new Set(settings.admins) } : {}),
      });
      Object.assign(running, next);
      deps.auth = auth;
      deps.limits = { ...deps.limits, maxConn };
    },
    detach: async () => {
      if (!agents || agents.length === 0) {
        throw new Error('the streams are forwarded inside this s2cs process (--workers 0), so they cannot outlive it; stop it with SIGTERM (which releases them) instead');
      }
      serving = false;
      table.detach();
      server.forceShutdown();
      supervisor?.detach();
      // RemoteAgent.close() stops polling and closes the link; it releases nothing.
      await Promise.allSettled(agents.map((a) => a.close()));
      refusals.close();
    },
  };
}

/**
 * Spare listeners per agent: a request for up to this many connections on one
 * agent is answered without a round trip to it (about 5 ms under load, measured in
 * docs/benchmarks.md); more connections, or spares used up by a burst, take the
 * round trip as before. Each spare holds one port and one descriptor on its agent.
 */
export const SPARE_LISTENERS = 2;

/** Start-up: waits (at most `ms`) until every agent has answered once, so that the first streams and adopt() see them. */
async function firstAnswers(agents: readonly AgentHandle[], ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (agents.some((a) => !a.up()) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
}

/** Start-up: ports of the range other programs listen on cannot be reserved; say so once, with what to do. */
function warnPortsHeldByOthers(local: LocalDataServer, range: PortRange, logger: Logger): void {
  if (!local.canSeeOtherPrograms()) {
    logger.debug('cannot read /proc/net/tcp: ports of --port-range held by other programs are found only when a stream tries them');
    return;
  }
  const others = local.portsHeldByOthers();
  if (others.length === 0) return;
  const size = range.last - range.first + 1;
  logger.warn(
    { ports: others.slice(0, 20), count: others.length },
    `${others.length} of the ${size} ports in --port-range ${range.first}-${range.last} ${others.length === 1 ? 'is' : 'are'} in use by other programs (${portList(others)}): streams cannot use them; stop those programs or choose another --port-range`,
  );
}
