// What `s2cs start` checks before it opens anything, beyond the flags themselves
// (config.ts): that the state dir can be written, that the CA bundles it is given are
// PEM certificates, and whether the open-files limit fits the data-plane bounds.
// The control channel's own certificate and key are checked where they are loaded
// (security/control-tls.ts). Problems end start-up (exit 2); the rest are warnings.
import { loadCertificateBundle } from '../security/pem-files.js';
import { stateDirUnwritable } from '../security/state-dir.js';
import { nofileWarning } from '../limits/nofile.js';
import type { StartFlags, StartPlan } from './config.js';

/** The first problem that must stop start-up, in one line naming the file or directory and the fix; undefined when none. */
export function startupProblem(flags: StartFlags, plan: StartPlan): string | undefined {
  // The state dir holds the self-signed certificate (also the agent link's, with --insecure) and the workers' sockets and logs.
  const tcpAgents = flags.s2ds.some((a) => !a.startsWith('unix:'));
  const selfSigned = !flags.tlsCert && (!flags.insecure || tcpAgents);
  if (plan.workers > 0 || selfSigned) {
    const problem = stateDirUnwritable(plan.stateDir);
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
