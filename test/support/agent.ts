// s2ds agent processes (bin/s2ds.js) for tests: over a Unix socket in a private
// directory, or over TCP with mutual TLS and a certificate made in its state dir.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { createSelfSigned, type CertificateAndKey } from '../../src/security/certificates.js';

export interface AgentProcess {
  proc: Proc;
  /** unix:/path or 127.0.0.1:port */
  address: string;
  dir: string;
  stateDir: string;
  /** TCP: the agent's own certificate (made in its state dir). */
  agentCert?: string;
  /** TCP: the s2cs identity the agent accepts. */
  s2cs?: CertificateAndKey;
  /** Stops the agent (SIGTERM) and removes its directory. */
  close(): Promise<void>;
}

export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o700);
  return dir;
}

/** Starts `s2ds start` and waits for its ready line. `dir` reuses a directory (a restart on the same socket). */
export async function startAgentProcess(opts: { tcp?: boolean; dir?: string; ports?: number; extra?: string[]; s2cs?: CertificateAndKey } = {}): Promise<AgentProcess> {
  const dir = opts.dir ?? tempDir('scistream-s2ds-');
  const stateDir = join(dir, 'state');
  const range = await freePortRange(opts.ports ?? 8);
  const common = ['--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--state-dir', stateDir, '--buffer-size', '256KiB', ...(opts.extra ?? [])];
  const env = { ...process.env, SCISTREAM_HOME: join(dir, 'home') };
  if (!opts.tcp) {
    const address = `unix:${join(stateDir, 'agent.sock')}`;
    const proc = spawnCli('s2ds', ['start', '--listen', address, ...common], { env });
    await proc.waitFor(/s2ds ready/, { timeoutMs: 20_000 });
    return { proc, address, dir, stateDir, close: closer(proc, dir, opts.dir === undefined) };
  }
  const s2cs = opts.s2cs ?? (await createSelfSigned({ commonName: 'test s2cs', validDays: 1 }));
  const s2csCertFile = join(dir, 's2cs-cert.pem');
  writeFileSync(s2csCertFile, s2cs.cert);
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const proc = spawnCli('s2ds', ['start', '--listen', address, '--s2cs-cert', s2csCertFile, ...common], { env });
  await proc.waitFor(/s2ds ready/, { timeoutMs: 20_000 });
  const given = common.indexOf('--tls-cert');
  const agentCert = readFileSync(given >= 0 ? common[given + 1]! : join(stateDir, 'tls', 'cert.pem'), 'utf8');
  return { proc, address, dir, stateDir, agentCert, s2cs, close: closer(proc, dir, opts.dir === undefined) };
}

function closer(proc: Proc, dir: string, removeDir: boolean): () => Promise<void> {
  return async () => {
    await proc.stop('SIGTERM', 5000);
    if (removeDir) rmSync(dir, { recursive: true, force: true });
  };
}
