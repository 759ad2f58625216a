// The paths the WAN rows compare, all from an iperf3 client in cons to the iperf3 server in
// prod, across the same emulated link (bench/wan/lab.ts):
//   direct TCP   cons -> gwb (routes) -> link -> gwa (routes) -> prod
//   stunnel x 2  cons -> stunnel client in gwb -> TLS across the link -> stunnel server in gwa -> prod
//   ours         cons -> s2cs in gwb -> TLS WAN leg across the link -> s2cs in gwa -> prod,
//                set up as users do it: `s2uc request` (in cons) and the producer's `s2app hello` (in prod)
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN_DIR, type Proc } from '../../src/demo/procs.js';
import { createSelfSigned } from '../../src/security/certificates.js';
import { TLS13_CIPHERS } from '../../src/transport/tls.js';
import { workersLabel, STUNNEL } from '../contenders.js';
import { agentPids } from '../tools.js';
import { WAN_ADDR, type WanHost, type WanLab } from './lab.js';

export interface WanContender {
  name: string;
  /** Where the iperf3 client in cons connects. */
  target: string;
  port: number;
  /** The forwarding processes now (for their CPU time); none for direct TCP. */
  pids: () => number[];
}

/** The iperf3 server's port in prod. */
export const IPERF_PORT = 5201;

export function directWan(): WanContender {
  return { name: 'direct TCP', target: WAN_ADDR.prod, port: IPERF_PORT, pids: () => [] };
}

/** Waits until `host` has a TCP listener on `port` (read from its /proc/net/tcp: a probe connection would reach iperf3). */
async function listening(lab: WanLab, host: WanHost, port: number, p: Proc): Promise<void> {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (let i = 0; i < 200; i++) {
    if (!p.running()) throw new Error(`${p.name} exited before listening on ${port}\n${p.describe()}`);
    const table = await lab.run(host, ['cat', '/proc/net/tcp']);
    if (table.split('\n').some((l) => { const f = l.trim().split(/\s+/); return f[1]?.endsWith(hex) && f[3] === '0A'; })) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${p.name} did not listen on ${port}\n${p.describe()}`);
}

/** Two stunnel processes, TLS 1.3 with mutual pinned certificates and our cipher suites, as in the loopback rows. */
export async function stunnelWan(lab: WanLab): Promise<WanContender> {
  const dir = lab.dir;
  const [a, b] = await Promise.all([
    createSelfSigned({ commonName: 'bench producer gateway', validDays: 1 }),
    createSelfSigned({ commonName: 'bench consumer gateway', validDays: 1 }),
  ]);
  const files: Record<string, string> = { 'prod.crt': a.cert, 'prod.key': a.key, 'cons.crt': b.cert, 'cons.key': b.key };
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text, { mode: 0o600 });
  const common = `foreground = yes\npid =\ndebug = 3\n`;
  const tls = `sslVersionMin = TLSv1.3\nverifyPeer = yes\nciphersuites = ${TLS13_CIPHERS}\n`;
  const [wanPort, lanPort] = [6000, 6001];
  writeFileSync(join(dir, 'stunnel-gwa.conf'), `${common}[wan]\naccept = ${WAN_ADDR.gwaWan}:${wanPort}\nconnect = ${WAN_ADDR.prod}:${IPERF_PORT}\ncert = ${join(dir, 'prod.crt')}\nkey = ${join(dir, 'prod.key')}\nCAfile = ${join(dir, 'cons.crt')}\n${tls}`);
  writeFileSync(join(dir, 'stunnel-gwb.conf'), `${common}[lan]\nclient = yes\naccept = ${WAN_ADDR.gwbLan}:${lanPort}\nconnect = ${WAN_ADDR.gwaWan}:${wanPort}\ncert = ${join(dir, 'cons.crt')}\nkey = ${join(dir, 'cons.key')}\nCAfile = ${join(dir, 'prod.crt')}\n${tls}`);
  const server = lab.spawn('gwa', ['stunnel', join(dir, 'stunnel-gwa.conf')], 'stunnel (gwa, producer side)');
  const client = lab.spawn('gwb', ['stunnel', join(dir, 'stunnel-gwb.conf')], 'stunnel (gwb, consumer side)');
  await Promise.all([listening(lab, 'gwa', wanPort, server), listening(lab, 'gwb', lanPort, client)]);
  return { name: STUNNEL, target: WAN_ADDR.gwbLan, port: lanPort, pids: () => [server.pid!, client.pid!] };
}

const CONTROL_PORT = 5000;

/** A CLI of this checkout in `host`, with that host's own SCISTREAM_HOME. */
function cli(lab: WanLab, host: WanHost, program: 's2cs' | 's2uc' | 's2app', args: string[]): Proc {
  return lab.spawn(host, [process.execPath, `${BIN_DIR}${program}.js`, ...args], `${program} ${args.find((a) => /^[a-z]/.test(a)) ?? ''} (in ${host})`, { SCISTREAM_HOME: join(lab.dir, `home-${host}`) });
}

/** s2cs in gwa and gwb, and one stream through them requested with `s2uc request` + `s2app hello`. */
export async function oursWan(lab: WanLab, workers: number): Promise<WanContender> {
  const state = { gwa: join(lab.dir, 'state-gwa'), gwb: join(lab.dir, 'state-gwb') };
  // --broken-grace 0: iperf3 -R resets its data connections at the end of each run, and the
  // stream serves every run (as in the loopback rows).
  const start = (gw: 'gwa' | 'gwb', listenerIp: string) =>
    cli(lab, gw, 's2cs', ['start', '--auth', 'none', '--port', String(CONTROL_PORT), '--listener-ip', listenerIp, '--port-range', '5100-5131', '--state-dir', state[gw], '--workers', String(workers), '--broken-grace', '0']);
  const gwa = start('gwa', WAN_ADDR.gwaWan);
  const gwb = start('gwb', WAN_ADDR.gwbLan);
  await Promise.all([gwa, gwb].map((g) => g.waitFor(/s2cs ready/, { stream: 'stderr', timeoutMs: 60_000 })));
  const bundle = join(lab.dir, 'gateways.pem');
  writeFileSync(bundle, [state.gwa, state.gwb].map((d) => readFileSync(join(d, 'tls', 'cert.pem'), 'utf8').trim()).join('\n') + '\n');
  const uid = randomUUID();
  // The user in the consumer's facility asks; its control calls to gwa cross the emulated link.
  const request = cli(lab, 'cons', 's2uc', ['--server-cert', bundle, '--timeout', '60', 'request', '--prod-s2cs', `${WAN_ADDR.gwaWan}:${CONTROL_PORT}`, '--cons-s2cs', `${WAN_ADDR.gwbLan}:${CONTROL_PORT}`, '--num-conn', '1', '--json', '--uid', uid]);
  const hello = cli(lab, 'prod', 's2app', ['hello', '--server-cert', bundle, '--timeout', '90', '--s2cs', `${WAN_ADDR.gwaLan}:${CONTROL_PORT}`, '--uid', uid, '--role', 'PROD', '--listeners', `${WAN_ADDR.prod}:${IPERF_PORT}`]);
  const [requestCode, helloCode] = await Promise.all([request.exited, hello.exited]);
  if (helloCode !== 0 || requestCode !== 0) throw new Error(`the stream through the two gateways was not set up\n${hello.describe()}\n${request.describe()}\n${gwa.describe()}\n${gwb.describe()}`);
  const map = JSON.parse(request.stdout().trim().split('\n').at(-1)!) as { consListeners: string[] };
  const listener = map.consListeners[0]!;
  const pids = (gw: Proc, dir: string) => [gw.pid!, ...(workers > 0 ? agentPids(join(dir, `agents-${CONTROL_PORT}`)) : [])];
  return {
    name: `SciStream (2 x S2DS, TLS, ${workersLabel(workers)} each)`,
    target: listener.slice(0, listener.lastIndexOf(':')),
    port: Number(listener.slice(listener.lastIndexOf(':') + 1)),
    pids: () => [...pids(gwa, state.gwa), ...pids(gwb, state.gwb)],
  };
}
