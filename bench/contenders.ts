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
import { agentPids, start, track } from './tools.js';

export type Group = 'direct' | 'hop' | 'tls' | 'workers';

export interface Contender {
  name: string;
  group: Group;
  /**
   * Where the iperf3 clients connect: one port, or one per iperf3 server (the
   * workers rows: a stream with one listener per target, the connections split
   * evenly over them).
   */
  ports: number[];
  /**
   * The forwarding processes now (for CPU time and memory): s2cs and its local
   * workers, which run detached in their own process groups and are found by
   * their pid files, read each time since a worker may have been restarted.
   */
  pids: () => number[];
}

export interface Target {
  host: string;
  port: number;
}

const HOST = '127.0.0.1';

export function direct(target: Target): Contender {
  return { name: 'direct TCP', group: 'direct', ports: [target.port], pids: () => [] };
}

/** How a contender's name says its workers. */
export const workersLabel = (workers: number) => (workers === 0 ? 'in-process, --workers 0' : `--workers ${workers}`);

export interface Gateway {
  proc: Proc;
  address: string;
  /** s2cs and its workers' pids now. */
  pids: () => number[];
}

/**
 * `s2cs` with `workers` local workers, stated on the command line (s2cs's default
 * is the number of cores): this checkout's, or another's bin/s2cs.js (a
 * before/after comparison).
 */
export async function gateway(name: string, dir: string, extra: string[], workers: number, s2csScript?: string): Promise<Gateway> {
  const [port, range] = await Promise.all([freePort(), freePortRange(16)]);
  const stateDir = join(dir, name);
  // iperf3 -R -P N resets its data connections at the end of a run, which leaves a stream
  // broken; each stream here serves every run, with other contenders' runs in between, so
  // it is not let go for that (an s2cs to compare with may predate the flag).
  const lifetime = s2csScript ? [] : ['--broken-grace', '0'];
  const args = ['start', '--state-dir', stateDir, '--port', String(port), '--listener-ip', HOST, '--port-range', `${range.first}-${range.last}`, '--workers', String(workers), ...lifetime, ...extra];
  const proc = track(
    s2csScript
      ? watchChild('s2cs start', `${s2csScript} ${args.join(' ')}`, spawn(process.execPath, [s2csScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }))
      : spawnCli('s2cs', args),
  );
  await proc.waitFor(/s2cs ready/);
  const agents = join(stateDir, `agents-${port}`);
  return { proc, address: `${HOST}:${port}`, pids: () => [proc.pid!, ...(workers > 0 ? agentPids(agents) : [])] };
}

/**
 * One S2DS hop, set up as an operator would for a non-SciStream service
 * (inbound-request): one listener per target, in the targets' order, which the
 * gateway spreads over its workers.
 */
export async function s2dsHop(targets: Target[], dir: string, workers: number, opts: { name?: string; group?: Group; s2csScript?: string } = {}): Promise<Contender> {
  const label = `${opts.name ?? (opts.s2csScript ? 'hop-compared' : 'hop')}-w${workers}`;
  const gw = await gateway(label.replace(/\W+/g, '-'), dir, ['--insecure', '--allow-plaintext-data'], workers, opts.s2csScript);
  const side = await inboundRequest(gw.address, targets.map((t) => `${t.host}:${t.port}`), { numConn: targets.length }, { insecure: true });
  const ports = side.listeners.map((l) => Number(l.split(':').pop()));
  const name = opts.name ?? (opts.s2csScript ? `S2DS (${opts.s2csScript}, ${workersLabel(workers)})` : `S2DS (${workersLabel(workers)})`);
  return { name, group: opts.group ?? 'hop', ports, pids: gw.pids };
}

/** The name of HAProxy's row with `option splice-auto`, as users who tune it run it. */
export const HAPROXY_SPLICE = 'HAProxy (splice-auto)';

/** HAProxy in mode tcp: with its defaults, or with `option splice-auto` (kernel splice between the sockets when it pays). */
export async function haproxy(target: Target, dir: string, opts: { splice?: boolean } = {}): Promise<Contender> {
  const port = await freePort();
  const cfg = join(dir, opts.splice ? 'haproxy-splice.cfg' : 'haproxy.cfg');
  writeFileSync(
    cfg,
    `global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
${opts.splice ? '  option splice-auto\n' : ''}frontend bench
  bind ${HOST}:${port}
  default_backend iperf
backend iperf
  server s1 ${target.host}:${target.port}
`,
  );
  const p = start(opts.splice ? 'haproxy splice' : 'haproxy', 'haproxy', ['-db', '-f', cfg]);
  await listening(port, p);
  return { name: opts.splice ? HAPROXY_SPLICE : 'HAProxy', group: 'hop', ports: [port], pids: () => [p.pid!] };
}

export async function socat(target: Target): Promise<Contender> {
  const port = await freePort();
  const p = start('socat', 'socat', [`TCP-LISTEN:${port},bind=${HOST},reuseaddr,fork`, `TCP:${target.host}:${target.port}`]);
  await listening(port, p);
  return { name: 'socat', group: 'hop', ports: [port], pids: () => [p.pid!] };
}

/** The SciStream path: two gateways (separate processes), WAN leg over TLS 1.3 with the stream's own certificates. */
export async function scistream(target: Target, dir: string, numConn: number, workers: number, gatewayArgs: string[] = []): Promise<Contender & { gateways: GatewayPair }> {
  const gateways = await gatewayPair(dir, workers, gatewayArgs);
  const port = await streamThrough(gateways, target, numConn);
  return {
    name: `SciStream (2 x S2DS, TLS, ${workersLabel(workers)} each)`,
    group: 'tls',
    ports: [port],
    pids: () => [...gateways.prod.pids(), ...gateways.cons.pids()],
    gateways,
  };
}

/** A producer-side and a consumer-side gateway (separate s2cs processes), with no stream yet. */
export async function gatewayPair(dir: string, workers: number, gatewayArgs: string[] = []): Promise<GatewayPair> {
  const [prod, cons] = await Promise.all([gateway('gw-prod', dir, gatewayArgs, workers), gateway('gw-cons', dir, gatewayArgs, workers)]);
  const bundle = join(dir, 'gateways.pem');
  writeFileSync(bundle, ['gw-prod', 'gw-cons'].map((g) => readFileSync(join(dir, g, 'tls', 'cert.pem'), 'utf8')).join(''));
  return { prod, cons, bundle };
}

/** The two gateways of a SciStream path, and the bundle of their certificates that clients trust. */
export interface GatewayPair {
  prod: Gateway;
  cons: Gateway;
  bundle: string;
}

/**
 * One more stream through the gateways, as `s2uc request` and the producer's `s2app hello`
 * set it up; returns the port of its (first) consumer-side listener.
 */
export async function streamThrough(gw: GatewayPair, target: Target, numConn: number): Promise<number> {
  const conn = { insecure: false, tls: { serverCert: gw.bundle } };
  const uid = randomUUID();
  const hellos: Promise<unknown>[] = [];
  const map = await requestStream(gw.prod.address, gw.cons.address, { numConn, uid }, {
    ...conn,
    // The producer's application controller: Hello once the gateway has taken the request.
    onAppSecret: (secret, server, role) => {
      if (role === 'PROD') hellos.push(sendHello(server, uid, 'PROD', [`${target.host}:${target.port}`], { ...conn, appSecret: secret }));
    },
  });
  await Promise.all(hellos);
  return Number(map.consListeners[0]!.split(':').pop());
}

export const STUNNEL = 'stunnel x 2 (TLS)';

/**
 * Two stunnel processes with TLS 1.3 and mutual, pinned certificates, as the reference deploys them.
 * `also`: more targets through the same pair (a service each); their consumer-side ports in `alsoPorts`.
 */
export async function stunnel(target: Target, dir: string, also: Target[] = []): Promise<Contender & { alsoPorts: number[] }> {
  const [a, b] = await Promise.all([
    createSelfSigned({ commonName: 'bench producer gateway', validDays: 1 }),
    createSelfSigned({ commonName: 'bench consumer gateway', validDays: 1 }),
  ]);
  const files: Record<string, string> = { 'prod.crt': a.cert, 'prod.key': a.key, 'cons.crt': b.cert, 'cons.key': b.key };
  for (const [f, text] of Object.entries(files)) writeFileSync(join(dir, f), text, { mode: 0o600 });
  const targets = [target, ...also];
  const wanPorts = await Promise.all(targets.map(() => freePort()));
  const lanPorts = await Promise.all(targets.map(() => freePort()));
  const conf = (name: string, body: string) => {
    const path = join(dir, `${name}.conf`);
    writeFileSync(path, `foreground = yes\npid =\ndebug = 3\n${body}`);
    return path;
  };
  // The same TLS 1.3 cipher suites as SciStream's WAN leg, so that the cipher is not what differs.
  const common = `sslVersionMin = TLSv1.3\nverifyPeer = yes\nciphersuites = ${TLS13_CIPHERS}\n`;
  const service = (i: number) => (i === 0 ? '' : String(i + 1));
  const prodConf = conf(
    'stunnel-prod',
    targets
      .map((t, i) => `[wan${service(i)}]\naccept = ${HOST}:${wanPorts[i]}\nconnect = ${t.host}:${t.port}\ncert = ${join(dir, 'prod.crt')}\nkey = ${join(dir, 'prod.key')}\nCAfile = ${join(dir, 'cons.crt')}\n${common}`)
      .join(''),
  );
  const consConf = conf(
    'stunnel-cons',
    targets
      .map((_, i) => `[lan${service(i)}]\nclient = yes\naccept = ${HOST}:${lanPorts[i]}\nconnect = ${HOST}:${wanPorts[i]}\ncert = ${join(dir, 'cons.crt')}\nkey = ${join(dir, 'cons.key')}\nCAfile = ${join(dir, 'prod.crt')}\n${common}`)
      .join(''),
  );
  const prod = start('stunnel (producer side)', 'stunnel', [prodConf]);
  const cons = start('stunnel (consumer side)', 'stunnel', [consConf]);
  await Promise.all([...wanPorts.map((p) => listening(p, prod)), ...lanPorts.map((p) => listening(p, cons))]);
  return { name: STUNNEL, group: 'tls', ports: [lanPorts[0]!], alsoPorts: lanPorts.slice(1), pids: () => [prod.pid!, cons.pid!] };
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
