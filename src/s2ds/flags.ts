// The data-plane flags s2cs and s2ds share, checked the same way at start, so that
// a bad value is one clear line (exit 2) rather than a failure at the first stream.
import { createServer } from 'node:net';
import { connectionMemory } from './local.js';
import { parsePortRange, type PortRange } from './ports.js';
import { MIN_WAN_DEAD_AFTER_S, WAN_DEAD_AFTER_DEFAULT_MS } from './liveness.js';

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
