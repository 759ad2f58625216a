// What `s2cs start` checks before it serves, beyond the flags themselves (config.ts,
// which also probes the data bind address): that the state dir can be written, that the
// CA bundles it is given are PEM certificates, that the control and metrics ports are
// free on addresses of this host, that the certificate and key parse and match, and
// whether the open-files limit fits the data-plane bounds. `s2cs check-config` runs the
// same checks (dryRun: nothing is made and nothing stays open). Problems end start-up
// (exit 2); the rest are warnings.
import { loadCertificateBundle } from '../security/pem-files.js';
import { stateDirUnwritable } from '../security/state-dir.js';
import { existingServerTls, loadServerTls, type ServerTls } from '../security/control-tls.js';
import { canBind } from '../s2ds/flags.js';
import { nofileWarning } from '../limits/nofile.js';
import type { StartFlags, StartPlan } from './config.js';

export interface StartupCheck {
  /** The first problem, in the one line start exits with; undefined when none. */
  problem?: string;
  warnings: string[];
  /** The control channel's certificate (not with --insecure); with dryRun, only one that already exists. */
  tls?: ServerTls;
  /** The certificate s2cs presents to TCP agents (--s2ds host:port): the control channel's, made or loaded even with --insecure. */
  agentLinkTls?: ServerTls;
}

/**
 * Every check start makes after the flags and before it serves, in start's order, so
 * that check-config exits with the same first problem. `dryRun`: make no state dir or
 * self-signed certificate (a missing one is one start would make).
 */
export async function startupCheck(flags: StartFlags, plan: StartPlan, opts: { dryRun: boolean }): Promise<StartupCheck> {
  const warnings = startupWarnings(flags, plan);
  const problem = startupProblem(flags, plan, opts) ?? (await portProblem(flags, plan));
  if (problem) return { problem, warnings };
  const tcpAgents = flags.s2ds.some((a) => !a.startsWith('unix:'));
  if (flags.insecure && !tcpAgents) return { warnings };
  const files = { certFile: flags.tlsCert, keyFile: flags.tlsKey, stateDir: plan.stateDir, names: [flags.listenerIp, plan.controlHost].filter((n) => n !== '0.0.0.0' && n !== '::') };
  let own: ServerTls | undefined;
  try {
    own = opts.dryRun ? existingServerTls(files) : await loadServerTls(files);
  } catch (err) {
    return { problem: `${flags.insecure ? 'certificate for the agent link' : 'control channel TLS'}: ${(err as Error).message}`, warnings };
  }
  warnings.push(...(own?.warnings ?? []));
  return { warnings, tls: flags.insecure ? undefined : own, agentLinkTls: tcpAgents ? own : undefined };
}

/**
 * The control port and --metrics-listen: each on an address of this host and free. A
 * probe bind, closed at once (port 0: the address only, as the server then takes any).
 */
export async function portProblem(flags: StartFlags, plan: StartPlan): Promise<string | undefined> {
  const control = await canBind(plan.controlHost, flags.port);
  if (control === 'EADDRINUSE') return `control port ${plan.controlHost}:${flags.port} is in use by another program; stop it or choose another --port`;
  if (control) return `cannot serve the control channel on ${plan.controlHost}:${flags.port} (${control}); check --control-host and --port`;
  if (plan.metrics) {
    const metrics = await canBind(plan.metrics.host, plan.metrics.port);
    if (metrics === 'EADDRINUSE') return `--metrics-listen ${flags.metricsListen} is in use by another program; stop it or choose another port`;
    if (metrics) return `cannot serve metrics on ${flags.metricsListen} (${metrics}); give an address of this host`;
  }
  return undefined;
}

/** The first problem that must stop start-up, in one line naming the file or directory and the fix; undefined when none. */
export function startupProblem(flags: StartFlags, plan: StartPlan, opts: { dryRun?: boolean } = {}): string | undefined {
  // The state dir holds the self-signed certificate (also the agent link's, with --insecure) and the workers' sockets and logs.
  const tcpAgents = flags.s2ds.some((a) => !a.startsWith('unix:'));
  const selfSigned = !flags.tlsCert && (!flags.insecure || tcpAgents);
  if (plan.workers > 0 || selfSigned) {
    const problem = stateDirUnwritable(plan.stateDir, { create: !opts.dryRun });
    if (problem) return problem;
  }
  try {
    if (flags.clientCa !== undefined) {
      loadCertificateBundle(flags.clientCa, `--client-ca ${flags.clientCa}`, 'give the PEM bundle of the CA certificates that issue your clients\' certificates');
    }
    if (flags.s2dsCert !== undefined) {
      loadCertificateBundle(flags.s2dsCert, `--s2ds-cert ${flags.s2dsCert}`, "give the agents' certificates (each agent's --tls-cert, or tls/cert.pem in its state dir) or the CA that issued them, PEM");
    }
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

/** What start-up warns about: an open-files limit below what the data-plane bounds admit. */
export function startupWarnings(flags: StartFlags, plan: StartPlan): string[] {
  // With only --s2ds agents, the data connections are held by them, not here.
  if (plan.workers === 0 && flags.s2ds.length > 0) return [];
  const warning = nofileWarning({
    ports: plan.portRange.last - plan.portRange.first + 1,
    processes: Math.max(1, plan.workers),
    maxConn: flags.maxConn,
    maxConnsPerListener: flags.maxConnsPerListener,
    maxBufferMemory: flags.maxBufferMemory,
    bufferSize: flags.bufferSize,
    pendingConns: flags.maxPendingConns,
  });
  return warning ? [warning] : [];
}
