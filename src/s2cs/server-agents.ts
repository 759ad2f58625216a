// The data side of a control server: its local worker processes (--workers), the
// agents, and the pool that spreads streams over them; or a data server given as is.
import type { Logger } from '../log.js';
import { AgentPool, DATA_DEFAULTS, LocalAgent, type AgentHandle, type DataServer, type LocalDataServer, type PortRange } from '../s2ds/index.js';
import { invalidArgument } from '../protocol/errors.js';
import { portList } from '../s2ds/local.js';
import { admissionArgs } from '../s2ds/admission.js';
import { udpArgs } from '../s2ds/flags.js';
import type { ControlServerOptions } from './server.js';
import type { ServerSettings } from './server-settings.js';
import { Supervisor, splitPortRange } from './supervisor.js';

/**
 * Spare listeners per agent: a request for up to this many connections on one
 * agent is answered without a round trip to it (about 5 ms under load, measured in
 * docs/benchmarks.md); more connections, or spares used up by a burst, take the
 * round trip as before. Each spare holds one port and one descriptor on its agent.
 */
export const SPARE_LISTENERS = 2;

export interface DataSide {
  dataServer: DataServer;
  /** The agents behind dataServer (undefined when a data server was given as is). */
  pool: AgentPool | undefined;
  /** Agents that may outlive this s2cs (workers, --s2ds); undefined with the in-process agent alone. */
  agents: AgentHandle[] | undefined;
  /** The local workers (with `workers`). */
  supervisor: Supervisor | undefined;
  /** The in-process agent (--workers 0). */
  local: LocalAgent | undefined;
}

/** Starts the local workers (with `workers`) and pools the agents; a given data server is used as is. */
export async function startDataSide(opts: ControlServerOptions, s: ServerSettings): Promise<DataSide> {
  const { logger, dataBindHost, bufferSize, helloTimeoutMs, maxBufferMemory, refusals } = s;
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
        ...admissionArgs(opts),
        ...(opts.wanDeadAfterMs !== undefined ? ['--wan-dead-after', String(Math.ceil(opts.wanDeadAfterMs / 1000))] : []),
        ...udpArgs(opts),
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
      maxPendingConns: opts.maxPendingConns,
      maxPendingConnsPerPeer: opts.maxPendingConnsPerPeer,
      maxPendingConnsPerPeerPerListener: opts.maxPendingConnsPerPeerPerListener,
      handshakeTimeoutMs: opts.handshakeTimeoutMs,
      wanDeadAfterMs: opts.wanDeadAfterMs,
      udpIdleTimeoutMs: opts.udpIdleTimeoutMs,
      maxUdpFlows: opts.maxUdpFlows,
      accessLog: opts.accessLog,
      refusals,
      logger: logger.child({ component: 's2ds' }),
    });
  const pool: AgentPool | undefined = opts.dataServer
    ? undefined
    : new AgentPool(agents ?? [local!], { logger: logger.child({ component: 'agents' }), spares: opts.spareListeners ?? SPARE_LISTENERS });
  const dataServer: DataServer = opts.dataServer ?? pool!;
  // Agents in other processes count (and log) the data connections they refuse; status and /metrics show them with ours.
  if (pool) refusals.addSource(() => pool.refusalTotals());
  // Each worker listens in its slice of --port-range: a chosen listener port goes to the worker that owns it.
  // The others join its listeners (SO_REUSEPORT): one listener's connections are spread over every worker.
  if (pool && supervisor) {
    const slices = splitPortRange(opts.portRange, supervisor.names().length);
    const workers = agents!.slice(agents!.length - slices.length);
    workers.forEach((handle, i) => pool.knowRange(handle, slices[i]!));
    pool.shareListeners(workers);
  }
  return { dataServer, pool, agents, supervisor, local };
}

/** Start-up: waits (at most `ms`) until every agent has answered once, so that the first streams and adopt() see them. */
export async function firstAnswers(agents: readonly AgentHandle[], ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (agents.some((a) => !a.up()) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
}

/** Start-up: ports of the range other programs listen on cannot be reserved; say so once, with what to do. */
export function warnPortsHeldByOthers(local: LocalDataServer, range: PortRange, logger: Logger): void {
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
