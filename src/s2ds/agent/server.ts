// An s2ds agent: the data-server engine behind the scistream.s2ds.Agent service,
// on a TCP address with mutual TLS or on a Unix socket (security/agent-tls.ts).
import type { AccessLog } from '../access-log.js';
import type { UdpOptions } from '../flags.js';
import * as grpc from '@grpc/grpc-js';
import { hostname } from 'node:os';
import type { Logger } from '../../log.js';
import { Refusals } from '../../limits/refusals.js';
import { parseAddress, formatAddress } from '../../protocol/address.js';
import { AGENT_MAX_MESSAGE_BYTES, Agent, tolerantService } from '../../protocol/agent-contract.js';
import { agentServerCredentials, bindUnixSocket, prepareSocketPath, type AgentListen } from '../../security/agent-tls.js';
import type { ServerTls } from '../../security/control-tls.js';
import { DATA_DEFAULTS, LocalDataServer } from '../local.js';
import type { PortRange } from '../ports.js';
import type { AdmissionOptions } from '../admission.js';
import { AgentService } from './service.js';
import { watchOrphans } from './orphans.js';

/** How long an early connection waits for SetTargets by default: s2cs's --hello-timeout default. */
export const AGENT_WAIT_TIMEOUT_MS = 180_000;

export interface AgentOptions extends AdmissionOptions, UdpOptions {
  /** Where each data connection's line goes when it ends (--access-log); default: the logger. */
  accessLog?: AccessLog;
  listen: AgentListen;
  listenerIp: string;
  /** Address the data listeners bind to; default listenerIp. */
  bindIp?: string;
  portRange: PortRange;
  bufferSize: number;
  name?: string;
  /** TCP only: the agent's certificate and the s2cs certificates (PEM bundle) it accepts. */
  tls?: { server: ServerTls; s2csCerts: string };
  maxConnsPerListener?: number;
  maxWaitingConns?: number;
  maxBufferMemory?: number;
  waitTimeoutMs?: number;
  /** Drop every stream when no s2cs has called for this long (--orphan-timeout); 0 or absent: never. */
  orphanTimeoutMs?: number;
  /** --wan-dead-after, ms (default 30 s). */
  wanDeadAfterMs?: number;
  logger: Logger;
}

export interface RunningAgent {
  /** Where s2cs reaches it: host:port (the bound port) or unix:/path. */
  readonly address: string;
  readonly name: string;
  readonly service: AgentService;
  /** Releases every stream (connections reset) and stops serving. */
  close(): Promise<void>;
}

/** Parses --listen: host:port, or unix:/absolute/path. */
export function parseListen(text: string): AgentListen {
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (!path) throw new Error('give the socket path after unix:, e.g. unix:/home/me/.scistream/s2ds/agent.sock');
    return { kind: 'unix', path };
  }
  const a = parseAddress(text, '--listen', { allowPortZero: true });
  return { kind: 'tcp', host: a.host, port: a.port };
}

export function formatListen(l: AgentListen): string {
  return l.kind === 'unix' ? `unix:${l.path}` : formatAddress(l);
}

export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const refusals = new Refusals(opts.logger);
  const engine = new LocalDataServer({
    bindHost: opts.bindIp ?? opts.listenerIp,
    portRange: opts.portRange,
    bufferSize: opts.bufferSize,
    waitLimit: opts.maxWaitingConns ?? DATA_DEFAULTS.waitLimit,
    waitTimeoutMs: opts.waitTimeoutMs ?? AGENT_WAIT_TIMEOUT_MS,
    maxConnsPerListener: opts.maxConnsPerListener ?? DATA_DEFAULTS.maxConnsPerListener,
    maxBufferMemory: opts.maxBufferMemory ?? DATA_DEFAULTS.maxBufferMemory,
    maxPendingConns: opts.maxPendingConns,
    maxPendingConnsPerPeer: opts.maxPendingConnsPerPeer,
    maxPendingConnsPerPeerPerListener: opts.maxPendingConnsPerPeerPerListener,
    handshakeTimeoutMs: opts.handshakeTimeoutMs,
    refusals,
    wanDeadAfterMs: opts.wanDeadAfterMs,
    udpIdleTimeoutMs: opts.udpIdleTimeoutMs,
    maxUdpFlows: opts.maxUdpFlows,
    accessLog: opts.accessLog,
    logger: opts.logger,
  });
  const name = opts.name ?? `${hostname()} ${formatListen(opts.listen)}`;
  const service = new AgentService({ engine, listenerIp: opts.listenerIp, name, logger: opts.logger });
  const server = new grpc.Server({
    'grpc.max_receive_message_length': AGENT_MAX_MESSAGE_BYTES,
  });
  server.addService(tolerantService(Agent.service), service.handlers());
  let address: string;
  if (opts.listen.kind === 'unix') {
    const problem = await prepareSocketPath(opts.listen.path);
    if (problem) throw new Error(problem);
    await bindUnixSocket(server, opts.listen.path);
    address = `unix:${opts.listen.path}`;
  } else {
    if (!opts.tls) throw new Error('a TCP listen address needs the agent certificate and --s2cs-cert (mutual TLS)');
    const credentials = agentServerCredentials(opts.tls.server, opts.tls.s2csCerts);
    const target = formatAddress({ host: opts.listen.host, port: opts.listen.port });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync(target, credentials, (err, p) => (err ? reject(err) : resolve(p))));
    address = formatAddress({ host: opts.listen.host, port });
  }
  const orphans = watchOrphans({
    timeoutMs: opts.orphanTimeoutMs ?? 0,
    lastContact: () => service.lastContactMs,
    streams: () => service.uids(),
    drop: (uid) => service.release(uid),
    logger: opts.logger,
  });
  let closing: Promise<void> | undefined;
  return {
    address,
    name,
    service,
    close() {
      closing ??= (async () => {
        orphans.stop();
        await service.close();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 2000);
          server.tryShutdown(() => {
            clearTimeout(timer);
            resolve();
          });
        });
        refusals.close();
      })();
      return closing;
    },
  };
}
