// S2CS as a library: start a control server with its in-process data server.
// startControlServer assembles the parts: settings (server-settings.ts), the data
// side (server-agents.ts), the stream table, the gRPC service on its control port,
// metrics and status, reload, and shutdown.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { Authenticator } from '../auth/index.js';
import { Control, tolerantService } from '../protocol/contract.js';
import { ScistreamError, invalidArgument } from '../protocol/errors.js';
import type { AgentHandle, AgentPool, AgentSummary, DataServer, PortRange } from '../s2ds/index.js';
import type { AccessLog } from '../s2ds/access-log.js';
import type { Refusals } from '../limits/refusals.js';
import { controlHandlers, statusView, type ServiceDeps, type StatusView, type Viewer } from './service.js';
import { GatewayMetrics } from './metrics.js';
import { StreamTable, type RatePolicy } from './streams/index.js';
import { controlServerOptions, type ControlPortLimits } from './control-port.js';
import { CONTROL_ADMISSION_DEFAULTS, ControlAdmission, admitThrough, type ControlAdmissionLimits } from './control-admission.js';
import type { Supervisor } from './supervisor.js';
import type { AdmissionOptions } from '../s2ds/admission.js';
import { checkTimeouts, DEFAULTS, defaultMaxPortsPerUser, helloLimits, logDataLegPolicy, logRatePolicy, resolveSettings, type ServerSettings } from './server-settings.js';
import { firstAnswers, startDataSide, warnPortsHeldByOthers, type DataSide } from './server-agents.js';
import type { UdpOptions } from '../s2ds/flags.js';
import { StandingTunnels, type TunnelChanges, type TunnelSpec } from './tunnels/index.js';

export interface ControlServerOptions extends AdmissionOptions, UdpOptions {
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
  /** The in-process data server's access log (--workers 0; workers get --access-log); default: the logger. */
  accessLog?: AccessLog;
  /** Counts and rate-limits the log lines of refusals; shared by the data server and the stream table. */
  refusals?: Refusals;
  /**
   * Accept UpdateTargets without per-stream credentials (plain-TCP WAN leg) on any
   * bind address; on loopback they are accepted without it (plaintextDataPolicy).
   */
  allowPlaintextData?: boolean;
  /** With token checking on, accept on Hello the stream owner's token in place of its application secret. */
  helloAcceptsOwnerToken?: boolean;
  /** --data-allow-from: canonical CIDR blocks bounding every stream's listeners (streams/options.ts dataAllowFrom). */
  dataAllowFrom?: string[];
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
  /** Control connections and TLS handshakes per source address, and connections in all (control-admission.ts). */
  controlAdmission?: Partial<ControlAdmissionLimits>;
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
  /** Stream lifetimes after setup (streams/leases.ts): --idle-stream-timeout (default 1 h; 0: never), --max-stream-lifetime (default: none), --broken-grace (default 5 s; 0: broken streams are not released). */
  idleStreamTimeoutMs?: number;
  maxStreamLifetimeMs?: number;
  brokenGraceMs?: number;
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
  /** Who holds control connections now (per-source limits). */
  readonly admission: ControlAdmission;
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
  /**
   * Makes the standing tunnels what the [[tunnel]] tables of `file` say (at start, and
   * at each reload): changed ones set up again, removed ones released, the others untouched.
   */
  applyTunnels(file: string, specs: TunnelSpec[]): Promise<TunnelChanges>;
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
  /** --data-allow-from anew (canonical CIDR blocks; [] lifts the bound); streams requested after take it. */
  dataAllowFrom?: string[];
  /** Control connections per source and in all (connections held beyond a lowered limit stay until they end). */
  controlAdmission?: ControlAdmissionLimits;
}

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const settings = resolveSettings(opts);
  const data = await startDataSide(opts, settings);
  const table = newStreamTable(opts, settings, data.dataServer);
  // Agents that outlived a previous s2cs (kill -9, crash, upgrade) still forward its streams: take them back first.
  if (data.pool && data.agents) {
    await firstAnswers(data.agents, 5000);
    await table.adopt(await data.pool.adopt());
  }
  const service = controlService(opts, settings, data, table);
  const port = await openControlPort(opts, settings, service.server, data, table);
  logDataLegPolicy(opts, settings);
  if (data.local) warnPortsHeldByOthers(data.local.engine, opts.portRange, settings.logger);
  logRatePolicy(opts, settings);
  forgetLostStreams(data, table, settings.logger);
  const stop = shutdown(settings, service.server, data, table);
  const tunnels = new StandingTunnels(table, settings.logger);
  return {
    port,
    refusals: settings.refusals,
    admission: service.admission,
    table,
    dataServer: data.dataServer,
    pool: data.pool,
    supervisor: data.supervisor,
    agents: service.agents,
    metrics: service.metrics,
    status: (viewer, uid) => statusView(service.deps, viewer, uid),
    health: () => health(stop.serving(), data.pool, service.agents),
    close: () => {
      tunnels.stop();
      return stop.close();
    },
    reconfigure: reconfigurer(opts, settings, table, service.deps, service.admission),
    detach: async () => {
      tunnels.stop();
      try {
        await stop.detach();
      } catch (err) {
        tunnels.resume();
        throw err;
      }
    },
    applyTunnels: (file, specs) => tunnels.apply(file, specs),
  };
}

function newStreamTable(opts: ControlServerOptions, s: ServerSettings, dataServer: DataServer): StreamTable {
  return new StreamTable({
    dataServer,
    helloTimeoutMs: s.helloTimeoutMs,
    setupTimeoutMs: s.setupTimeoutMs,
    idleStreamTimeoutMs: opts.idleStreamTimeoutMs ?? DEFAULTS.idleStreamTimeoutMs,
    maxStreamLifetimeMs: opts.maxStreamLifetimeMs,
    brokenGraceMs: opts.brokenGraceMs,
    ...helloLimits(s.maxPendingHellos, s.maxPendingHellosPerPeer, s.maxConn),
    maxPortsPerUser: opts.maxPortsPerUser ?? defaultMaxPortsPerUser(opts.portRange, s.maxConn),
    portsPerPeer: s.auth.mode === 'none',
    refusals: s.refusals,
    allowPlaintextData: opts.allowPlaintextData ?? false,
    dataBindHost: s.dataBindHost,
    requireAppSecret: s.auth.mode !== 'none',
    bindStreams: s.auth.mode === 'none',
    helloAcceptsOwnerToken: opts.helloAcceptsOwnerToken ?? false,
    dataAllowFrom: opts.dataAllowFrom ?? [],
    ratePolicy: s.ratePolicy,
    capacityBps: opts.capacityBps,
    admins: new Set(opts.admins ?? []),
    logger: s.logger,
  });
}

interface ControlService {
  server: grpc.Server;
  admission: ControlAdmission;
  /** What the handlers read at each call (auth and limits: reconfigure replaces them). */
  deps: ServiceDeps;
  metrics: GatewayMetrics;
  agents: () => AgentSummary[];
}

/** The gRPC control service with its metrics, not yet bound. */
function controlService(opts: ControlServerOptions, s: ServerSettings, data: DataSide, table: StreamTable): ControlService {
  const { dataServer, pool } = data;
  const server = new grpc.Server(controlServerOptions(opts.controlPort));
  const admission = new ControlAdmission({ ...CONTROL_ADMISSION_DEFAULTS, ...opts.controlAdmission }, s.refusals);
  admitThrough(server, admission);
  // The handlers read auth and limits from here at each call; reconfigure replaces them.
  // An agent's rate is its streams' rates summed, from the samples the streams' own come from (not the agent's byte total).
  const agents = () => {
    if (!pool) return [];
    const rates = table.agentRates();
    const handles = pool.handles();
    return pool.agents().map((a, i) => ({ ...a, bytesPerSecond: rates.get(handles[i]!) ?? 0 }));
  };
  const metrics = new GatewayMetrics({ table, dataServer, agents, refusals: s.refusals });
  const deps: ServiceDeps = { table, dataServer, agents, auth: s.auth, limits: { maxConn: s.maxConn }, refusals: s.refusals, logger: s.logger, observe: metrics.observeRpc };
  server.addService(tolerantService(Control.service), controlHandlers(deps));
  return { server, admission, deps, metrics, agents };
}

/**
 * Binds the control port. Workers started before do not outlive a start that
 * fails, unless they carry streams.
 */
async function openControlPort(opts: ControlServerOptions, s: ServerSettings, server: grpc.Server, data: DataSide, table: StreamTable): Promise<number> {
  const host = opts.host ?? DEFAULTS.host;
  const target = host.includes(':') ? `[${host}]:${opts.port}` : `${host}:${opts.port}`;
  return new Promise<number>((resolve, reject) => {
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
      data.supervisor?.detach();
      await Promise.allSettled((data.agents ?? []).map((a) => a.close()));
      s.logger.warn({ streams: table.size }, 'the control port could not be opened; the streams taken back from the data-server agents go on, for the next s2cs to take');
    } else {
      await data.pool?.close();
      await data.supervisor?.stop();
    }
    throw err;
  });
}

/** A stream that lost a part with its agent is broken: the pool reset the rest; the table forgets it. */
function forgetLostStreams(data: DataSide, table: StreamTable, logger: Logger): void {
  data.pool?.onStreamsLost((uids, why) => {
    for (const uid of uids) {
      table.ended(uid, why).catch((err: unknown) => logger.error({ uid, err }, 'releasing a stream lost with its agent failed'));
    }
  });
}

/** Whether the gateway can serve new streams now (the monitor's /healthz). */
function health(serving: boolean, pool: AgentPool | undefined, agentSummaries: () => AgentSummary[]): { ok: true } | { ok: false; why: string } {
  if (!serving) return { ok: false, why: 'the control server is shutting down' };
  const agents = agentSummaries();
  if (pool && !agents.some((a) => a.up)) {
    return { ok: false, why: `no data-server agent answers (${agents.map((a) => `${a.name} at ${a.address}`).join(', ')})` };
  }
  return { ok: true };
}

/** How the control server stops: close (releases every stream) or detach (leaves them to the next s2cs). */
function shutdown(s: ServerSettings, server: grpc.Server, data: DataSide, table: StreamTable): { serving: () => boolean; close: () => Promise<void>; detach: () => Promise<void> } {
  const { refusals } = s;
  let closing: Promise<void> | undefined;
  let serving = true;
  return {
    serving: () => serving,
    close: () =>
      (closing ??= (async () => {
        serving = false;
        data.local?.engine.shuttingDown();
        await table.close();
        await data.dataServer.close();
        await data.supervisor?.stop();
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
    detach: async () => {
      const agents = data.agents;
      if (!agents || agents.length === 0) {
        throw new Error('the streams are forwarded inside this s2cs process (--workers 0), so they cannot outlive it; stop it with SIGTERM (which releases them) instead');
      }
      serving = false;
      table.detach();
      server.forceShutdown();
      data.supervisor?.detach();
      // RemoteAgent.close() stops polling and closes the link; it releases nothing.
      await Promise.allSettled(agents.map((a) => a.close()));
      refusals.close();
    },
  };
}

/** ControlServer.reconfigure: new settings checked against the running ones, then given to the table and the handlers. */
function reconfigurer(opts: ControlServerOptions, s: ServerSettings, table: StreamTable, deps: ServiceDeps, admission: ControlAdmission): (settings: RuntimeSettings) => void {
  // What reconfigure checks new values against.
  const running = {
    helloTimeoutMs: s.helloTimeoutMs,
    setupTimeoutMs: s.setupTimeoutMs,
    maxPendingHellos: s.maxPendingHellos,
    maxPendingHellosPerPeer: s.maxPendingHellosPerPeer,
    helloAcceptsOwnerToken: opts.helloAcceptsOwnerToken ?? false,
  };
  return (settings) => {
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
    checkTimeouts(next.setupTimeoutMs, next.helloTimeoutMs);
    if (next.helloAcceptsOwnerToken && auth.mode === 'none') throw invalidArgument('--hello-accepts-owner-token needs token checking');
    const perPeer = Math.min(next.maxPendingHellosPerPeer, next.maxPendingHellos);
    const maxConn = settings.maxConn ?? deps.limits.maxConn;
    table.reconfigure({
      helloTimeoutMs: next.helloTimeoutMs,
      setupTimeoutMs: next.setupTimeoutMs,
      ...helloLimits(next.maxPendingHellos, perPeer, maxConn),
      helloAcceptsOwnerToken: next.helloAcceptsOwnerToken,
      ...(settings.maxPortsPerUser !== undefined ? { maxPortsPerUser: settings.maxPortsPerUser } : {}),
      ...(settings.admins !== undefined ? { admins: new Set(settings.admins) } : {}),
      ...(settings.dataAllowFrom !== undefined ? { dataAllowFrom: settings.dataAllowFrom } : {}),
    });
    Object.assign(running, next);
    if (settings.controlAdmission) admission.setLimits(settings.controlAdmission);
    deps.auth = auth;
    deps.limits = { ...deps.limits, maxConn };
  };
}
