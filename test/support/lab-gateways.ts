// The two gateways of the network-namespace lab (s2cs in gwa and gwb) and a stream
// requested through them the way a user does it: `s2uc request` from one host while
// the producer sends its Hello to gateway A over the A LAN.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADDR, type Host, type NetnsLab, type NsProc } from './netns.js';
import { createSelfSigned } from '../../src/security/certificates.js';

/** Where the lab's gateways serve their control port (5000). */
export const LAB_CONTROL = {
  gwa: `${ADDR.gwaWan}:5000`,
  /** Gateway A as the producer reaches it, over the A LAN. */
  gwaFromLan: `${ADDR.gwaLan}:5000`,
  gwb: `${ADDR.gwbWan}:5000`,
} as const;

export interface LabGatewayOptions {
  /** Both gateways' data ports (--port-range). */
  portRange?: string;
  /** Worker agents (--workers): one number for both, or per gateway; omitted: s2cs's default. */
  workers?: number | { gwa: number; gwb: number };
  /** Flags both gateways get. */
  flags?: string[];
  /** Flags for one gateway only (a --tls-cert here is the certificate the bundle trusts). */
  gwaFlags?: string[];
  gwbFlags?: string[];
  /** How long each may take to say "s2cs ready". */
  readyTimeoutMs?: number;
}

export interface LabGateways {
  gwa: NsProc;
  gwb: NsProc;
  /** The command lines they were started with (`start ...`), to start one again. */
  gwaArgs: string[];
  gwbArgs: string[];
  stateDirs: { gwa: string; gwb: string };
  /** Both gateways' certificates, for the clients' --server-cert. */
  bundle: string;
}

/**
 * Starts s2cs in gwa (data listeners on the WAN) and gwb (data listeners on the B LAN),
 * waits until both are ready and writes the trust bundle of their certificates.
 * Their control ports are off loopback, so they run with --auth none.
 */
export async function startLabGateways(lab: NetnsLab, opts: LabGatewayOptions = {}): Promise<LabGateways> {
  const stateDirs = { gwa: join(lab.dir, 'state-gwa'), gwb: join(lab.dir, 'state-gwb') };
  const workers = typeof opts.workers === 'number' ? { gwa: opts.workers, gwb: opts.workers } : opts.workers;
  const args = (gw: 'gwa' | 'gwb', listenerIp: string, own: string[] = []): string[] => [
    'start', '--auth', 'none', '--port', '5000', '--listener-ip', listenerIp, '--port-range', opts.portRange ?? '5100-5120', '--state-dir', stateDirs[gw],
    ...(workers ? ['--workers', String(workers[gw])] : []), ...(opts.flags ?? []), ...own,
  ];
  const gwaArgs = args('gwa', ADDR.gwaWan, opts.gwaFlags);
  const gwbArgs = args('gwb', ADDR.gwbLan, opts.gwbFlags);
  const gwa = lab.cli('gwa', 's2cs', gwaArgs);
  const gwb = lab.cli('gwb', 's2cs', gwbArgs);
  await Promise.all([gwa, gwb].map((g) => g.waitFor(/s2cs ready/, { stream: 'stderr', timeoutMs: opts.readyTimeoutMs })));
  const certFile = (gw: NsProc, gwArgs: string[], stateDir: string): string => {
    const given = gwArgs.indexOf('--tls-cert');
    const file = given >= 0 ? gwArgs[given + 1]! : join(stateDir, 'tls', 'cert.pem');
    assert.ok(existsSync(file), `${gw.name} has no certificate at ${file}\n${gw.describe()}`);
    return file;
  };
  const bundle = join(lab.dir, 'gateways.pem');
  const certs = [certFile(gwa, gwaArgs, stateDirs.gwa), certFile(gwb, gwbArgs, stateDirs.gwb)];
  writeFileSync(bundle, certs.map((f) => readFileSync(f, 'utf8').trim()).join('\n') + '\n');
  return { gwa, gwb, gwaArgs, gwbArgs, stateDirs, bundle };
}

/** gwa2's agent (lab with `secondGatewayA`), and the flags that make gwa's s2cs drive it. */
export interface LabAgent {
  agent: NsProc;
  /** gwa's --tls-cert and --tls-key (the identity the agent accepts), --s2ds and --s2ds-cert. */
  gwaFlags: string[];
}

/**
 * Starts an s2ds agent in gwa2 that accepts only gwa's s2cs, over the A LAN with mutual TLS.
 * gwa's s2cs certificate is made first: the agent must know it before s2cs starts.
 */
export async function startLabAgent(lab: NetnsLab): Promise<LabAgent> {
  const s2csTls = await createSelfSigned({ commonName: 's2cs gwa', names: [ADDR.gwaWan, ADDR.gwaLan], validDays: 30 });
  const s2csCert = join(lab.dir, 'gwa-s2cs.pem');
  const s2csKey = join(lab.dir, 'gwa-s2cs.key');
  writeFileSync(s2csCert, s2csTls.cert);
  writeFileSync(s2csKey, s2csTls.key, { mode: 0o600 });
  const address = `${ADDR.gwa2Lan}:7200`;
  const stateDir = join(lab.dir, 'state-gwa2');
  const agent = lab.cli('gwa2', 's2ds', [
    'start', '--listen', address, '--listener-ip', ADDR.gwa2Wan, '--port-range', '5300-5320', '--state-dir', stateDir, '--s2cs-cert', s2csCert, '--name', 'gwa2',
  ]);
  await agent.waitFor(/s2ds ready/, { stream: 'stderr' });
  const agentCert = join(stateDir, 'tls', 'cert.pem');
  assert.ok(existsSync(agentCert), `the agent made no certificate at ${agentCert}\n${agent.describe()}`);
  return { agent, gwaFlags: ['--tls-cert', s2csCert, '--tls-key', s2csKey, '--s2ds', address, '--s2ds-cert', agentCert] };
}

/** What `s2uc request --json` prints (the fields every caller reads). */
export interface LabStreamMap {
  uid: string;
  prodListeners: string[];
  consListeners: string[];
}

export interface LabStreamRequest {
  bundle: string;
  uid: string;
  numConn: number;
  /** The producer's listeners (its Hello's --listeners). */
  producer: string;
  /** Where s2uc runs (default: the user host on the WAN). */
  from?: Host;
  requestTimeoutS?: number;
  helloTimeoutS?: number;
  /** More `s2uc request` flags (--rate...). */
  requestArgs?: string[];
  /** Processes whose logs a failure shows (the gateways, agents). */
  show?: (NsProc | undefined)[];
}

/** `s2uc request --json` and the producer's `s2app hello`, in parallel; both must succeed. Returns the request's JSON map. */
export async function requestLabStream<T extends LabStreamMap = LabStreamMap>(lab: NetnsLab, r: LabStreamRequest): Promise<T> {
  const request = lab.cli(r.from ?? 'user', 's2uc', [
    '--server-cert', r.bundle, '--timeout', String(r.requestTimeoutS ?? 60), 'request', '--prod-s2cs', LAB_CONTROL.gwa, '--cons-s2cs', LAB_CONTROL.gwb,
    '--num-conn', String(r.numConn), ...(r.requestArgs ?? []), '--json', '--uid', r.uid,
  ]);
  const hello = lab.cli('prod', 's2app', [
    'hello', '--server-cert', r.bundle, '--timeout', String(r.helloTimeoutS ?? 90), '--s2cs', LAB_CONTROL.gwaFromLan, '--uid', r.uid, '--role', 'PROD', '--listeners', r.producer,
  ]);
  const [requestCode, helloCode] = await Promise.all([request.exited, hello.exited]);
  const logs = (...procs: (NsProc | undefined)[]) => procs.filter((p): p is NsProc => p !== undefined).map((p) => p.describe()).join('\n');
  assert.equal(helloCode, 0, `s2app hello in prod failed\n${logs(hello, ...(r.show ?? []))}`);
  assert.equal(requestCode, 0, `s2uc request failed\n${logs(request, ...(r.show ?? []))}`);
  try {
    return JSON.parse(request.stdout().trim().split('\n').at(-1)!) as T;
  } catch {
    assert.fail(`s2uc request --json did not end with a JSON object\n${request.describe()}`);
  }
}
