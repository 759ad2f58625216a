// The data paths compared, all on loopback in front of one iperf3 server:
//   direct            iperf3 client -> iperf3 server
//   one plain hop     S2DS (s2cs inbound-request), HAProxy (mode tcp), socat (fork)
//   two TLS gateways  SciStream: consumer-side s2cs -> (TLS 1.3, per-stream certificates) -> producer-side s2cs,
//                     set up with the real protocol; stunnel client -> (TLS 1.3, mutual, pinned) -> stunnel server
// Every contender is set up once per benchmark run and measured many times.
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { spawnCli, freePort, freePortRange, watchChild, type Proc } from '../src/demo/procs.js';
import { inboundRequest, requestStream } from '../src/s2uc/flows.js';
import { sendHello } from '../src/app/controller.js';
import { createSelfSigned } from '../src/security/certificates.js';
import { TLS13_CIPHERS } from '../src/transport/tls.js';
import { start, track } from './tools.js';

export type Group = 'direct' | 'hop' | 'tls';

export interface Contender {
  name: string;
  group: Group;
  /** Where the iperf3 client connects. */
  port: number;
  /** The forwarding processes (for CPU time and memory). */
  pids: number[];
}

export interface Target {
  host: string;
  port: number;
}

const HOST = '127.0.0.1';

export function direct(target: Target): Contender {
  return { name: 'direct TCP', group: 'direct', port: target.port, pids: [] };
}

/** `s2cs`: this checkout's, or another's bin/s2cs.js (a before/after comparison). */
async function gateway(name: string, dir: string, extra: string[], s2csScript?: string): Promise<{ proc: Proc; address: string }> {
  const [port, range] = await Promise.all([freePort(), freePortRange(16)]);
  const args = ['start', '--state-dir', join(dir, name), '--port', String(port), '--listener-ip', HOST, '--port-range', `${range.first}-${range.last}`, ...extra];
  const proc = track(
    s2csScript
      ? watchChild('s2cs start', `${s2csScript} ${args.join(' ')}`, spawn(process.execPath, [s2csScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }))
      : spawnCli('s2cs', args),
  );
  await proc.waitFor(/s2cs ready/);
  return { proc, address: `${HOST}:${port}` };
}

/** One S2DS hop, set up as an operator would for a non-SciStream service (inbound-request). */
export async function s2dsHop(target: Target, dir: string, gatewayArgs: string[] = [], s2csScript?: string): Promise<Contender> {
  const gw = await gateway(s2csScript ? 'hop-compared' : 'hop', dir, ['--insecure', '--allow-plaintext-data', ...gatewayArgs], s2csScript);
  const side = await inboundRequest(gw.address, [`${target.host}:${target.port}`], { numConn: 1 }, { insecure: true });
  const port = Number(side.listeners[0]!.split(':').pop());
  return { name: s2csScript ? `S2DS (${s2csScript})` : 'S2DS (SciStream)', group: 'hop', port, pids: [gw.proc.pid!] };
}

export async function haproxy(target: Target, dir: string): Promise<Contender> {
  const port = await freePort();
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    `global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend bench
  bind ${HOST}:${port}
  default_backend iperf
backend iperf
  server s1 ${target.host}:${target.port}
`,
  );
  const p = start('haproxy', 'haproxy', ['-db', '-f', cfg]);
  await listening(port, p);
  return { name: 'HAProxy', group: 'hop', port, pids: [p.pid!] };
}

export async function socat(target: Target): Promise<Contender> {
  const port = await freePort();
  const p = start('socat', 'socat', [`TCP-LISTEN:${port},bind=${HOST},reuseaddr,fork`, `TCP:${target.host}:${target.port}`]);
  await listening(port, p);
  return { name: 'socat', group: 'hop', port, pids: [p.pid!] };
}

/** The SciStream path: two gateways (separate processes), WAN leg over TLS 1.3 with the stream's own certificates. */
export async function scistream(target: Target, dir: string, numConn: number, gatewayArgs: string[] = []): Promise<Contender> {
  const [prod, cons] = await Promise.all([gateway('gw-prod', dir, gatewayArgs), gateway('gw-cons', dir, gatewayArgs)]);
  const bundle = join(dir, 'gateways.pem');
  writeFileSync(bundle, ['gw-prod', 'gw-cons'].map((g) => readFileSync(join(dir, g, 'tls', 'cert.pem'), 'utf8')).join(''));
  const conn = { insecure: false, tls: { serverCert: bundle } };
  const uid = randomUUID();
  const hellos: Promise<unknown>[] = [];
  const map = await requestStream(prod.address, cons.address, { numConn, uid }, {
    ...conn,
    // The producer's application controller: Hello once the gateway has taken the request.
    onAppSecret: (secret, server, role) => {
      if (role === 'PROD') hellos.push(sendHello(server, uid, 'PROD', [`${target.host}:${target.port}`], { ...conn, appSecret: secret }));
    },
  });
  await Promise.all(hellos);
  const port = Number(map.consListeners[0]!.split(':').pop());
  return { name: 'SciStream (2 x S2DS, TLS)', group: 'tls', port, pids: [prod.proc.pid!, cons.proc.pid!] };
}

/** Two stunnel processes with TLS 1.3 and mutual, pinned certificates, as the reference deploys them. */
export async function stunnel(target: Target, dir: string): Promise<Contender> {
  const [a, b] = await Promise.all([
    createSelfSigned({ commonName: 'bench producer gateway', validDays: 1 }),
    createSelfSigned({ commonName: 'bench consumer gateway', validDays: 1 }),
  ]);
  const files: Record<string, string> = { 'prod.crt': a.cert, 'prod.key': a.key, 'cons.crt': b.cert, 'cons.key': b.key };
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text, { mode: 0o600 });
  const [wanPort, lanPort] = await Promise.all([freePort(), freePort()]);
  const conf = (name: string, body: string) => {
    const path = join(dir, `${name}.conf`);
    writeFileSync(path, `foreground = yes\npid =\ndebug = 3\n${body}`);
    return path;
  };
  // The same TLS 1.3 cipher suites as SciStream's WAN leg, so that the cipher is not what differs.
  const common = `sslVersionMin = TLSv1.3\nverifyPeer = yes\nciphersuites = ${TLS13_CIPHERS}\n`;
  const prodConf = conf(
    'stunnel-prod',
    `[wan]\naccept = ${HOST}:${wanPort}\nconnect = ${target.host}:${target.port}\ncert = ${join(dir, 'prod.crt')}\nkey = ${join(dir, 'prod.key')}\nCAfile = ${join(dir, 'cons.crt')}\n${common}`,
  );
  const consConf = conf(
    'stunnel-cons',
    `[lan]\nclient = yes\naccept = ${HOST}:${lanPort}\nconnect = ${HOST}:${wanPort}\ncert = ${join(dir, 'cons.crt')}\nkey = ${join(dir, 'cons.key')}\nCAfile = ${join(dir, 'prod.crt')}\n${common}`,
  );
  const prod = start('stunnel (producer side)', 'stunnel', [prodConf]);
  const cons = start('stunnel (consumer side)', 'stunnel', [consConf]);
  await Promise.all([listening(wanPort, prod), listening(lanPort, cons)]);
  return { name: 'stunnel x 2 (TLS)', group: 'tls', port: lanPort, pids: [prod.pid!, cons.pid!] };
}

/**
 * Waits until the program listens on the port, or fails with its output. Read from
 * /proc/net/tcp rather than by connecting: a probe connection would be forwarded to
 * the iperf3 server and taken for a test.
 */
async function listening(port: number, p: Proc): Promise<void> {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (let i = 0; i < 200; i++) {
    if (!p.running()) throw new Error(`${p.name} exited before listening on ${port}\n${p.describe()}`);
    const table = readFileSync('/proc/net/tcp', 'utf8').split('\n');
    if (table.some((line) => line.trim().split(/\s+/)[1] === local && line.trim().split(/\s+/)[3] === '0A')) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${p.name} did not listen on ${port}\n${p.describe()}`);
}
