// The data-plane flags s2cs and s2ds share, checked the same way at start, so that
// a bad value is one clear line (exit 2) rather than a failure at the first stream.
import { createServer } from 'node:net';
import { Option, type Command } from 'commander';
import { integer, option } from '../cli.js';
import { ADMISSION_DEFAULTS } from './admission.js';
import { connectionMemory } from './buffers.js';
import { parsePortRange, type PortRange } from './ports.js';
import { MIN_WAN_DEAD_AFTER_S, WAN_DEAD_AFTER_DEFAULT_MS } from './liveness.js';
import { UDP_DEFAULTS } from './udp/budget.js';

/** --wan-dead-after (s2cs start and s2ds start): seconds, as commander's option() parser takes them. */
export const WAN_DEAD_AFTER_FLAG = {
  flags: '--wan-dead-after <seconds>',
  help: `a WAN connection between two gateways that hears nothing from its peer (not even a heartbeat) for this long is broken and both applications are reset; every data socket's TCP keepalive and user timeout follow it. Outages shorter than this lose nothing (at least ${MIN_WAN_DEAD_AFTER_S}: heartbeats go every second)`,
  min: MIN_WAN_DEAD_AFTER_S,
  max: 86_400,
  default: WAN_DEAD_AFTER_DEFAULT_MS / 1000,
} as const;

export interface DataPlaneFlags {
  portRange: string;
  bufferSize: number;
  maxBufferMemory: number;
  /** Where the data listeners bind (--bind-ip, default --listener-ip). */
  bindIp: string;
}

/**
 * Returns the parsed port range, or the usage problem in one line. `probe: false`
 * (check-config, a reload) skips trying the bind address, so that nothing is opened.
 */
export async function checkDataPlaneFlags(flags: DataPlaneFlags, opts: { probe?: boolean } = {}): Promise<{ portRange: PortRange } | { problem: string }> {
  let portRange: PortRange;
  try {
    portRange = parsePortRange(flags.portRange);
  } catch (err) {
    return { problem: `--port-range: ${(err as Error).message}` };
  }
  if (flags.bufferSize < 4096) return { problem: `--buffer-size ${flags.bufferSize} is too small; give at least 4KiB` };
  const perConnection = connectionMemory(flags.bufferSize, 'tcp', 'tls');
  if (flags.maxBufferMemory < perConnection) {
    return {
      problem: `--max-buffer-memory ${flags.maxBufferMemory} is below what one connection reserves with --buffer-size ${flags.bufferSize} (${perConnection} bytes); raise it or lower --buffer-size`,
    };
  }
  if (opts.probe === false) return { portRange };
  const bindProblem = await canBind(flags.bindIp, 0);
  if (bindProblem) return { problem: `cannot open data listeners on ${flags.bindIp} (${bindProblem}); give an address of this host with --listener-ip, or --bind-ip 0.0.0.0` };
  return { portRange };
}

/** Whether this host can listen on host:port now (port 0: any); the error code when not. */
export function canBind(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}

/**
 * The admission flags (admission.ts), the same on s2cs start (its in-process data
 * server and each worker) and s2ds start: what a data connection may hold before it
 * has authenticated (WAN TLS handshake) or been matched to its target.
 */
export function addAdmissionOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--max-pending-conns <n>', 'data connections each data server (the s2cs process, each worker or agent) holds at once before they authenticate (WAN TLS handshake) or reach their target; when full, the oldest of the address holding the most makes room for another address')
        .argParser(option(integer(1, 1_000_000)))
        .default(ADMISSION_DEFAULTS.maxPending),
    )
    .addOption(
      new Option('--max-pending-conns-per-peer <n>', 'the same from one address (IPv6: one /64) on each data server; more are refused')
        .argParser(option(integer(1, 1_000_000)))
        .default(ADMISSION_DEFAULTS.maxPendingPerPeer),
    )
    .addOption(
      new Option('--max-pending-conns-per-peer-per-listener <n>', 'the same from one address on one data listener; more are refused')
        .argParser(option(integer(1, 1_000_000)))
        .default(ADMISSION_DEFAULTS.maxPendingPerPeerPerListener),
    )
    .addOption(
      new Option('--data-handshake-timeout <seconds>', "close a data connection that has not completed the stream's TLS handshake within this time")
        .argParser(option(integer(1, 300)))
        .default(ADMISSION_DEFAULTS.handshakeTimeoutMs / 1000),
    );
}

/** The UDP stream flags as commander hands them over (addUdpOptions). */
export interface UdpFlags {
  udpIdleTimeout: number;
  maxUdpFlows: number;
}

/** What the data servers take of them (LocalDataServerOptions). */
export interface UdpOptions {
  udpIdleTimeoutMs?: number;
  maxUdpFlows?: number;
}

/**
 * The UDP stream flags (issue 21), the same on s2cs start (its in-process data server
 * and each worker) and s2ds start.
 */
export function addUdpOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--udp-idle-timeout <seconds>', "UDP streams: a flow (one sender's datagrams and the replies to it) ends after this long without a datagram either way; its next datagram opens a new one")
        .argParser(option(integer(1, 86_400)))
        .default(UDP_DEFAULTS.idleTimeoutS),
    )
    .addOption(
      new Option('--max-udp-flows <n>', "UDP streams: flows (senders) at once on one data listener; a new sender's datagrams over it are dropped and counted (flow-limit)")
        .argParser(option(integer(1, 1_000_000)))
        .default(UDP_DEFAULTS.maxFlowsPerListener),
    );
}

export function udpOptionsOf(flags: UdpFlags): UdpOptions {
  return { udpIdleTimeoutMs: flags.udpIdleTimeout * 1000, maxUdpFlows: flags.maxUdpFlows };
}

/** The same flags for a worker's command line (s2cs start --workers). */
export function udpArgs(opts: UdpOptions): string[] {
  return [
    ...(opts.udpIdleTimeoutMs !== undefined ? ['--udp-idle-timeout', String(Math.ceil(opts.udpIdleTimeoutMs / 1000))] : []),
    ...(opts.maxUdpFlows !== undefined ? ['--max-udp-flows', String(opts.maxUdpFlows)] : []),
  ];
}
