// The WAN bench's lab: two facilities whose gateways are joined only through the packet
// emulator (bench/wan/emulator.c) running in a namespace of its own.
//
//   prod ──A LAN── gwa ── w-a ═ wan-emulator ═ w-b ── gwb ──B LAN── cons
//   10.202.1.2  .1.1  .2.1                          .2.2  .3.1  10.202.3.2
//
// The wan namespace has no bridge, no addresses and no forwarding: its two veth ends are
// read and written only by the emulator, so without it nothing crosses (setup checks
// that). The gateways route between their LAN and the WAN, so that direct TCP from cons
// to prod takes the same emulated link as the gateways' own connections.
//
// Offloads are off (ethtool -K: no TSO/GSO/GRO, no checksum offload) on the four WAN
// veth ends: the stack then hands the emulator MTU-sized frames with real checksums, so
// the delay and the loss apply per packet as on a real link. (With offloads on, one
// 64 KiB super-frame would be delayed or lost as a unit, and a frame injected with a
// partial checksum would be dropped by the receiver.) Only the gateways' receive GRO is
// turned back on, for their NAPI threads (see setup).
//
// Everything is named `<prefix>-...`; destroy() (also on process exit) ends every
// process in the namespaces and deletes them.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchChild, type Proc } from '../../src/demo/procs.js';
import { buildEmulator, parseCounters, type EmulatorCounters } from './emulator.js';
import { which } from '../tools.js';

export type WanHost = 'prod' | 'gwa' | 'wan' | 'gwb' | 'cons';
const HOSTS: readonly WanHost[] = ['prod', 'gwa', 'wan', 'gwb', 'cons'];

export const WAN_ADDR = {
  prod: '10.202.1.2',
  gwaLan: '10.202.1.1',
  gwaWan: '10.202.2.1',
  gwbWan: '10.202.2.2',
  gwbLan: '10.202.3.1',
  cons: '10.202.3.2',
} as const;

/** The link's parameters. */
export interface LinkSettings {
  /** One-way delay, each direction. */
  delayMs: number;
  /** Probability that a frame is lost, each direction (0.0001 = 0.01 %). */
  loss: number;
  /** Frames each direction's queue holds (the router's buffer). */
  queueFrames: number;
}

/**
 * 25 ms each way (50 ms RTT), 0.01 % loss; 16384 frames of up to 1514 bytes per direction
 * is about 24 MiB, more than the bandwidth-delay product of 5 Gbit/s x 25 ms (15.6 MB).
 */
export const DEFAULT_LINK: LinkSettings = { delayMs: 25, loss: 0.0001, queueFrames: 16384 };

/**
 * TCP buffer limits set in every namespace of the lab (net.ipv4.tcp_rmem/tcp_wmem are per
 * namespace; the global net.core.* limits are left alone): autotuning may grow a
 * connection's buffers to 64 MiB, twice the BDP of 5 Gbit/s x 50 ms.
 */
export const TCP_BUFFERS = { 'net.ipv4.tcp_rmem': '4096 131072 67108864', 'net.ipv4.tcp_wmem': '4096 16384 67108864' } as const;

/** Debian packages the lab uses, by program. */
const PACKAGES: Record<string, string> = { ip: 'iproute2', ethtool: 'ethtool', ping: 'iputils-ping' };


/** Root, and ethtool, ping and ip (installed from Debian's packages when missing). */
export function ensureWanTools(say: (line: string) => void): void {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    throw new Error('the WAN section builds network namespaces and raw sockets: run the benchmark as root on Linux');
  }
  const missing = Object.keys(PACKAGES).filter((p) => !which(p));
  if (missing.length === 0) return;
  const pkgs = missing.map((p) => PACKAGES[p]!);
  say(`installing ${pkgs.join(', ')} from the distribution's packages (the WAN lab)`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'ignore', env });
  const still = missing.filter((p) => !which(p));
  if (still.length > 0) throw new Error(`still missing after apt-get: ${still.join(', ')}`);
}

function exec(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return execAny(cmd, args, timeoutMs).then((r) => {
    if (r.code !== 0) throw new Error(`\`${cmd} ${args.join(' ')}\` failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  });
}

/** Runs a command to its end, whatever its exit code (ping exits 1 when nothing came back). */
function execAny(cmd: string, args: string[], timeoutMs = 30_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout, stderr: err && code === -1 ? `${stderr}${err.message}` : stderr });
    });
  });
}

/** Namespaces named `<prefix>-*`. */
function labNamespaces(prefix: string): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(`${prefix}-`));
}

/** SIGKILLs every process in the lab's namespaces (detached workers included), then deletes them. */
function removeNamespaces(prefix: string): void {
  for (const ns of labNamespaces(prefix)) {
    try {
      const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
      for (const pid of pids.split('\n').map(Number).filter((x) => x > 0)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
    } catch {
      // the namespace went away meanwhile
    }
  }
  for (const ns of labNamespaces(prefix)) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}

export interface PingStats {
  sent: number;
  received: number;
  minMs: number;
  avgMs: number;
  maxMs: number;
}

/** The summary lines of `ping -q`. */
export function parsePing(text: string): PingStats {
  const counts = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(text);
  if (!counts) throw new Error(`ping printed no summary: ${text.slice(-300)}`);
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\//.exec(text);
  return { sent: Number(counts[1]), received: Number(counts[2]), minMs: Number(rtt?.[1] ?? NaN), avgMs: Number(rtt?.[2] ?? NaN), maxMs: Number(rtt?.[3] ?? NaN) };
}

/** The emulator running in the wan namespace. */
export interface Emulator {
  proc: Proc;
  settings: LinkSettings;
  /** Its counters now (SIGUSR1). */
  counters(): Promise<EmulatorCounters>;
  /** Stops it (SIGTERM) and returns its final counters. */
  stop(): Promise<EmulatorCounters>;
}

export class WanLab {
  readonly prefix: string;
  readonly dir: string;
  private readonly procs = new Set<Proc>();
  private readonly onExit = () => this.destroySync();
  private emulatorBinary: string | undefined;

  constructor(prefix = `sw${process.pid % 10000}`) {
    this.prefix = prefix;
    this.dir = mkdtempSync(join(tmpdir(), `scistream-wan-${prefix}-`));
    process.on('exit', this.onExit);
  }

  ns(host: WanHost): string {
    return `${this.prefix}-${host}`;
  }

  /** Interface names (at most 15 characters). */
  get ifaces() {
    const p = this.prefix;
    return { prod: `${p}-prod0`, gwaLan: `${p}-gwa-lan`, gwaWan: `${p}-gwa-wan`, wanA: `${p}-w-a`, wanB: `${p}-w-b`, gwbWan: `${p}-gwb-wan`, gwbLan: `${p}-gwb-lan`, cons: `${p}-cons0` };
  }

  async ip(host: WanHost, ...args: string[]): Promise<string> {
    return exec('ip', ['-n', this.ns(host), ...args]);
  }

  /** Runs to completion in `host`; rejects on a non-zero exit with its output. */
  async run(host: WanHost, argv: string[], timeoutMs = 30_000): Promise<string> {
    return exec('ip', ['netns', 'exec', this.ns(host), ...argv], timeoutMs);
  }

  /** Starts `argv` in `host` (`ip netns exec` execs it: the pid is the program's). */
  spawn(host: WanHost, argv: string[], name = `${argv[0]} (in ${host})`, env?: NodeJS.ProcessEnv): Proc {
    const child = spawn('ip', ['netns', 'exec', this.ns(host), ...argv], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    const p = watchChild(name, `ip netns exec ${this.ns(host)} ${argv.join(' ')}`, child);
    this.procs.add(p);
    void p.exited.then(() => this.procs.delete(p));
    return p;
  }

  /** Builds the namespaces and links, and checks that nothing crosses the WAN without the emulator. */
  async setup(): Promise<void> {
    for (const n of Object.values(this.ifaces)) if (n.length > 15) throw new Error(`interface name ${n} is longer than 15 characters: use a shorter prefix`);
    this.emulatorBinary = buildEmulator(this.dir);
    removeNamespaces(this.prefix);
    for (const h of HOSTS) {
      await exec('ip', ['netns', 'add', this.ns(h)]);
      await this.ip(h, 'link', 'set', 'lo', 'up');
      // IPv4 only: no router solicitations or link-local chatter on the emulated link.
      await this.sysctls(h, { 'net.ipv6.conf.all.disable_ipv6': '1', 'net.ipv6.conf.default.disable_ipv6': '1', ...TCP_BUFFERS });
    }
    const i = this.ifaces;
    await this.veth('prod', i.prod, `${WAN_ADDR.prod}/24`, 'gwa', i.gwaLan, `${WAN_ADDR.gwaLan}/24`);
    await this.veth('gwa', i.gwaWan, `${WAN_ADDR.gwaWan}/24`, 'wan', i.wanA, undefined);
    await this.veth('gwb', i.gwbWan, `${WAN_ADDR.gwbWan}/24`, 'wan', i.wanB, undefined);
    await this.veth('gwb', i.gwbLan, `${WAN_ADDR.gwbLan}/24`, 'cons', i.cons, `${WAN_ADDR.cons}/24`);
    for (const [host, dev] of [['gwa', i.gwaWan], ['wan', i.wanA], ['wan', i.wanB], ['gwb', i.gwbWan]] as const) {
      try {
        await this.run(host, ['ethtool', '-K', dev, 'tx', 'off', 'sg', 'off', 'tso', 'off', 'gso', 'off', 'gro', 'off']);
      } catch (err) {
        throw new Error(`cannot turn the offloads off on ${dev} (is ethtool installed? apt-get install -y ethtool): ${(err as Error).message}`);
      }
    }
    // The gateways' kernel receive work runs in their own NAPI threads, not in the emulator's:
    // a veth receives through NAPI only with GRO on, and a threaded NAPI is a kernel thread the
    // scheduler runs wherever there is room, as a NIC's receive work is the host's, not the
    // link's. (Without it, every frame the emulator writes is forwarded and taken up by TCP in
    // the emulator's own system call, and the emulator's core caps the link.) GRO here merges
    // frames after their delay and loss, as a NIC's does. A veth with NAPI pushes back when its
    // ring is full only through a qdisc: a short pfifo on the emulator's ends refuses a frame
    // (ENOBUFS) and the emulator keeps it first in line; short, so that little waits below the
    // emulator's own timing.
    for (const [host, dev] of [['gwa', i.gwaWan], ['gwb', i.gwbWan]] as const) {
      await this.run(host, ['ethtool', '-K', dev, 'gro', 'on']);
      await this.run(host, ['sh', '-c', `echo 1 > /sys/class/net/${dev}/threaded`]);
    }
    for (const dev of [i.wanA, i.wanB]) await this.run('wan', ['tc', 'qdisc', 'replace', 'dev', dev, 'root', 'pfifo', 'limit', '128']);
    await this.ip('prod', 'route', 'add', 'default', 'via', WAN_ADDR.gwaLan);
    await this.ip('cons', 'route', 'add', 'default', 'via', WAN_ADDR.gwbLan);
    await this.ip('gwa', 'route', 'add', '10.202.3.0/24', 'via', WAN_ADDR.gwbWan);
    await this.ip('gwb', 'route', 'add', '10.202.1.0/24', 'via', WAN_ADDR.gwaWan);
    await this.sysctls('gwa', { 'net.ipv4.ip_forward': '1' });
    await this.sysctls('gwb', { 'net.ipv4.ip_forward': '1' });
    await this.sysctls('wan', { 'net.ipv4.ip_forward': '0' });
    const alone = await this.ping(2, 'gwa', WAN_ADDR.gwbWan, 1);
    if (alone.received !== 0) throw new Error(`gwa reaches gwb without the emulator: the wan namespace forwards or bridges frames itself`);
  }

  private async veth(hostA: WanHost, ifA: string, addrA: string | undefined, hostB: WanHost, ifB: string, addrB: string | undefined): Promise<void> {
    // Created with both ends already in their namespaces: nothing appears in the root namespace.
    await exec('ip', ['-n', this.ns(hostA), 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', this.ns(hostB)]);
    if (addrA) await this.ip(hostA, 'addr', 'add', addrA, 'dev', ifA);
    if (addrB) await this.ip(hostB, 'addr', 'add', addrB, 'dev', ifB);
    await this.ip(hostA, 'link', 'set', ifA, 'up');
    await this.ip(hostB, 'link', 'set', ifB, 'up');
  }

  async sysctls(host: WanHost, values: Record<string, string>): Promise<void> {
    const script = Object.entries(values)
      .map(([k, v]) => `echo '${v}' > /proc/sys/${k.replace(/\./g, '/')}`)
      .join(' && ');
    await this.run(host, ['sh', '-c', script]);
  }

  async sysctl(host: WanHost, key: string): Promise<string> {
    return (await this.run(host, ['cat', `/proc/sys/${key.replace(/\./g, '/')}`])).trim().replace(/\s+/g, ' ');
  }

  /** Starts the emulator between the two WAN veth ends (a: gateway A's side). */
  async startEmulator(settings: LinkSettings = DEFAULT_LINK): Promise<Emulator> {
    if (!this.emulatorBinary) throw new Error('WanLab.setup() first');
    const i = this.ifaces;
    const proc = this.spawn(
      'wan',
      [this.emulatorBinary, '--a', i.wanA, '--b', i.wanB, '--delay-ms', String(settings.delayMs), '--loss', String(settings.loss), '--queue-frames', String(settings.queueFrames)],
      'wan-emulator',
    );
    await proc.waitFor(/wan-emulator ready/, { stream: 'stderr', timeoutMs: 10_000 });
    // Resolves ARP both ways (setup's check left gwa's entry for gwb failed), so that later
    // pings measure the link, not neighbour discovery.
    await this.ping(1, 'gwa', WAN_ADDR.gwbWan, 5);
    const counters = async () => {
      const from = proc.stdout().length;
      proc.child.kill('SIGUSR1');
      await proc.waitFor(/\{.*\}\n/, { stream: 'stdout', from, timeoutMs: 5000 });
      return parseCounters(proc.stdout());
    };
    const stop = async () => {
      const code = await proc.stop('SIGTERM', 5000);
      if (code !== 0) throw new Error(`the WAN emulator exited with ${code}\n${proc.describe()}`);
      return parseCounters(proc.stdout());
    };
    return { proc, settings, counters, stop };
  }

  /** Round-trip time from gwa to gwb across the link. */
  async ping(count = 10, from: WanHost = 'gwa', to: string = WAN_ADDR.gwbWan, waitS = 2): Promise<PingStats> {
    const r = await execAny('ip', ['netns', 'exec', this.ns(from), 'ping', '-q', '-c', String(count), '-i', '0.2', '-W', String(waitS), to], 60_000);
    return parsePing(`${r.stdout}${r.stderr}`);
  }

  /** Stops every process it started, then everything left in its namespaces, and deletes them. */
  async destroy(): Promise<void> {
    await Promise.all([...this.procs].map((p) => p.stop('SIGTERM', 3000)));
    this.destroySync();
  }

  private destroySync(): void {
    for (const p of this.procs) if (p.running()) p.child.kill('SIGKILL');
    removeNamespaces(this.prefix);
    rmSync(this.dir, { recursive: true, force: true });
    process.off('exit', this.onExit);
  }
}
