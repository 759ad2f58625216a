// The UDP paths compared, all on loopback in front of one iperf3 server:
//   direct            iperf3 -u client -> iperf3 server
//   one plain hop     socat's UDP relay (fork), nginx's stream UDP proxy; ours: s2uc inbound-request --protocol udp
//   two TLS gateways  ours: s2uc request --protocol udp (datagrams inside the stream's TLS on the WAN leg)
// iperf3 -u also opens a TCP control connection, to the same port number as its
// datagrams: every path relays TCP on its UDP port too (nginx in the same process, our
// one-hop stream on the same listener ports, the others through a second socat), and only the
// UDP relay's CPU is counted.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { BIN_DIR, freePort, spawnCli, type Proc } from '../src/demo/procs.js';
import { gateway } from './contenders.js';
import { cpuSeconds, start, track } from './tools.js';

export type UdpGroup = 'direct' | 'hop' | 'tls';

export interface UdpContender {
  name: string;
  group: UdpGroup;
  /** Where the iperf3 client sends (UDP) and connects its control (TCP). */
  port: number;
  /** The processes that forward the datagrams, for CPU time. */
  pids: () => number[];
}

const HOST = '127.0.0.1';

/** Debian packages the UDP rows need beyond the TCP rows' (nginx's stream module is a separate package). */
const UDP_PACKAGES = ['nginx', 'libnginx-mod-stream'];

function installed(pkg: string): boolean {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { stdio: ['ignore', 'pipe', 'ignore'] }).toString() === 'install ok installed';
  } catch {
    return false;
  }
}

/**
 * Installs nginx and its stream module as the TCP rows install HAProxy and stunnel:
 * Debian packages, as root. nginx is run by the benchmark with its own configuration,
 * never as the system service.
 */
export function ensureUdpTools(say: (line: string) => void): void {
  const missing = UDP_PACKAGES.filter((p) => !installed(p));
  if (missing.length === 0) return;
  say(`installing ${missing.join(', ')} from the distribution's packages`);
  if (process.getuid?.() !== 0) throw new Error(`missing ${missing.join(', ')}: install them (apt-get install ${missing.join(' ')}), or run the benchmark as root`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'ignore', env });
  const still = missing.filter((p) => !installed(p));
  if (still.length > 0) throw new Error(`still missing after apt-get: ${still.join(', ')}`);
}

/** Live children of a process (socat's forks, nginx's workers). */
function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * CPU seconds of processes and all their descendants, each process counted once: its
 * own, its reaped children's (in its stat), and its live descendants' own. Once matters:
 * our local workers are s2cs's children and listed beside it, so summing each listed
 * process's tree counted every worker twice (the UDP rows of 2026-12-07 07:16 showed our
 * hop at twice its CPU per GB).
 */
export function treeCpuSeconds(...pids: number[]): number {
  const all = new Set<number>();
  const walk = (pid: number): void => {
    if (all.has(pid)) return;
    all.add(pid);
    for (const c of children(pid)) walk(c);
  };
  for (const p of pids) walk(p);
  return [...all].reduce((s, p) => s + cpuSeconds(p), 0);
}

export function directUdp(iperfPort: number): UdpContender {
  return { name: 'direct UDP', group: 'direct', port: iperfPort, pids: () => [] };
}

/** iperf3's control connection, relayed over TCP on the UDP path's port number. */
async function tcpControl(port: number, iperfPort: number, label: string): Promise<Proc> {
  // Someone else's listener on the port would pass for the relay's in /proc/net/tcp.
  if (inTable('tcp', port, '0A')) throw new Error(`TCP port ${port} is already taken (${label}): iperf3's control connection cannot be relayed beside its UDP port`);
  const p = start(`socat (iperf3 control, ${label})`, 'socat', [`TCP4-LISTEN:${port},bind=${HOST},reuseaddr,fork`, `TCP4:${HOST}:${iperfPort}`]);
  await bound('tcp', port, p);
  return p;
}

/**
 * socat's UDP relay: the listening socat forks a child per sender address, which
 * sends on to the target from its own socket and relays the target's replies back
 * (iperf3's connect handshake, and all the data with -R). -T ends a child idle for
 * 2 s, so the children of one run are gone (and their CPU in the parent's) by the next.
 */
export async function socatUdp(iperfPort: number): Promise<UdpContender> {
  const port = await freeUdpAndTcpPort();
  const p = start('socat (UDP)', 'socat', ['-T', '2', `UDP4-LISTEN:${port},bind=${HOST},reuseaddr,fork`, `UDP4:${HOST}:${iperfPort}`]);
  await bound('udp', port, p);
  await tcpControl(port, iperfPort, 'socat row');
  return { name: 'socat (UDP4-LISTEN fork)', group: 'hop', port, pids: () => [p.pid!] };
}

/** Debian's nginx loads the stream module dynamically; a build with it compiled in needs no load_module. */
function streamModule(): string {
  const dynamic = '/usr/lib/nginx/modules/ngx_stream_module.so';
  return existsSync(dynamic) ? `load_module ${dynamic};\n` : '';
}

/**
 * nginx's stream proxy, as the reference's data server uses it (`listen PORT udp;
 * proxy_pass DST;`), with one worker process (as socat's one relay and our --workers 1),
 * its own configuration and prefix in the run's directory, ended by its pid.
 */
export async function nginxUdp(iperfPort: number, dir: string): Promise<UdpContender> {
  const port = await freeUdpAndTcpPort();
  const conf = join(dir, 'nginx-udp.conf');
  writeFileSync(
    conf,
    `${streamModule()}daemon off;
master_process on;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'nginx-error.log')} warn;
events { worker_connections 4096; }
stream {
  # iperf3's control connection
  server { listen ${HOST}:${port}; proxy_pass ${HOST}:${iperfPort}; }
  # the datagrams; a session per sender ends 5 s after its last datagram
  server { listen ${HOST}:${port} udp; proxy_pass ${HOST}:${iperfPort}; proxy_timeout 5s; }
}
`,
  );
  const p = start('nginx (stream)', 'nginx', ['-p', dir, '-e', join(dir, 'nginx-error.log'), '-c', conf]);
  await bound('udp', port, p);
  await bound('tcp', port, p);
  return { name: 'nginx (stream, udp, 1 worker)', group: 'hop', port, pids: () => [p.pid!] };
}

/**
 * The floor of a relay on Node's dgram (bench/udp-node-floor.ts): what Node itself costs
 * per datagram, for bench/udp-cpu.ts to set our hop against.
 */
export async function nodeFloorUdp(iperfPort: number): Promise<UdpContender> {
  const port = await freeUdpAndTcpPort();
  const script = fileURLToPath(new URL('./udp-node-floor.js', import.meta.url));
  const p = start('Node dgram floor relay', process.execPath, [script, String(port), String(iperfPort)]);
  await bound('udp', port, p);
  await bound('tcp', port, p);
  return { name: 'Node dgram floor (bench/udp-node-floor.ts)', group: 'hop', port, pids: () => [p.pid!] };
}

/** `nginx -v` (printed on stderr), for the results. */
export function nginxVersion(): string {
  const r = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  return `${r.stderr ?? ''}${r.stdout ?? ''}`.trim() || '?';
}

/** Whether this build's s2uc takes --protocol (UDP streams, issue 21). */
export function oursHasUdp(): boolean {
  const help = spawnHelp();
  return /--protocol\b/.test(help);
}

function spawnHelp(): string {
  try {
    return execFileSync(process.execPath, [join(BIN_DIR, 's2uc.js'), 'request', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  } catch (err) {
    return (err as { stdout?: Buffer }).stdout?.toString() ?? '';
  }
}

const listenerPort = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));

async function cli(program: 's2uc' | 's2app', args: string[]): Promise<string> {
  const p = track(spawnCli(program, args));
  if ((await p.exited) !== 0) {
    const cause = p.stderr().trim().split('\n').at(-1) ?? '';
    throw new Error(`${program} ${args.find((a) => !a.startsWith('-') && !a.includes('/')) ?? ''} failed: ${cause}\n${program} ${args.join(' ')}\n${p.describe()}`);
  }
  return p.stdout();
}

/** Ours, one plain hop: `s2uc inbound-request --protocol udp` on an s2cs with one local worker. */
export async function oursHopUdp(iperfPort: number, dir: string, workers: number): Promise<UdpContender> {
  const gw = await gateway('udp-hop', dir, ['--insecure', '--allow-plaintext-data'], workers);
  const out = await cli('s2uc', ['--insecure', 'inbound-request', '--s2cs', gw.address, '--targets', `${HOST}:${iperfPort}`, '--num-conn', '1', '--protocol', 'udp', '--json']);
  const side = JSON.parse(out.trim().split('\n').at(-1)!) as { listeners: string[] };
  const port = listenerPort(side.listeners[0]!);
  // No relay for iperf3's control connection: a UDP stream's listener ports forward TCP to the
  // same targets too (as the reference's Nginx does), and that carries it.
  return { name: `ours, S2DS UDP (--workers ${workers})`, group: 'hop', port, pids: gw.pids };
}

/** Ours, two gateways: `s2uc request --protocol udp`, the producer's Hello by s2app; the WAN leg is TLS with the stream's credentials. */
export async function oursTlsUdp(iperfPort: number, dir: string, workers: number): Promise<UdpContender> {
  const [prod, cons] = await Promise.all([gateway('udp-gw-prod', dir, [], workers), gateway('udp-gw-cons', dir, [], workers)]);
  const bundle = join(dir, 'udp-gateways.pem');
  writeFileSync(bundle, ['udp-gw-prod', 'udp-gw-cons'].map((g) => readFileSync(join(dir, g, 'tls', 'cert.pem'), 'utf8')).join(''));
  const uid = randomUUID();
  const trust = ['--server-cert', bundle];
  const [out] = await Promise.all([
    cli('s2uc', [...trust, 'request', '--prod-s2cs', prod.address, '--cons-s2cs', cons.address, '--num-conn', '1', '--uid', uid, '--protocol', 'udp', '--json']),
    cli('s2app', ['hello', ...trust, '--s2cs', prod.address, '--uid', uid, '--role', 'PROD', '--listeners', `${HOST}:${iperfPort}`]),
  ]);
  const map = JSON.parse(out.trim().split('\n').at(-1)!) as { consListeners: string[] };
  const port = listenerPort(map.consListeners[0]!);
  // iperf3's TCP control connection to the same port crosses the WAN leg in a TLS connection of
  // its own (docs/protocol.md, "TCP beside the datagrams"): no relay for it either.
  return { name: `ours, 2 x S2DS UDP, TLS WAN leg (--workers ${workers} each)`, group: 'tls', port, pids: () => [...prod.pids(), ...cons.pids()] };
}

/** A port free for both UDP and TCP (iperf3 -u uses the number for both). */
async function freeUdpAndTcpPort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await freePort();
    if (!inTable('udp', port)) return port;
  }
  throw new Error('no port free for both TCP and UDP on 127.0.0.1');
}

function inTable(proto: 'tcp' | 'udp', port: number, state?: string): boolean {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync(`/proc/net/${proto}`, 'utf8')
    .split('\n')
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[1] === local && (state === undefined || f[3] === state);
    });
}

/**
 * Waits until the program has its socket on the port (TCP: listening), read from
 * /proc/net rather than probed: a probe would be relayed to iperf3 and taken for a test.
 */
async function bound(proto: 'tcp' | 'udp', port: number, p: Proc): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (!p.running()) throw new Error(`${p.name} exited before binding ${proto} ${port}\n${p.describe()}`);
    if (inTable(proto, port, proto === 'tcp' ? '0A' : undefined)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${p.name} did not bind ${proto} ${port}\n${p.describe()}`);
}
