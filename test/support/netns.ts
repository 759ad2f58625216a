// A small lab of Linux network namespaces for multi-host end-to-end tests:
// two facility LANs that cannot reach each other, joined only through two
// gateways on a WAN segment.
//
//   prod ──A LAN── gwa ──┐                 ┌── gwb ──B LAN── cons
//   10.201.1.2   .1.1    │ .2.1   WAN  .2.2 │   .3.1       10.201.3.2
//                        └──── bridge ──────┘
//                               │ .2.3
//                              user (s2uc; also the WAN attacker)
//
// With `secondGatewayA`, facility A has a second gateway node, gwa2 (A LAN .1.3,
// WAN .2.4), and the A LAN is a bridge in prod's namespace (prod keeps .1.2 on it).
//
// The WAN is a Linux bridge in its own namespace, so tcpdump there sees the
// whole segment. Gateways do not forward IP and no namespace has a default
// route: the only way across is through the gateways' own sockets.
//
// Everything is named `<prefix>-...`, so parallel runs do not collide and a
// later run with the same prefix can remove what a crashed run left behind.
// This module has no side effects on import: the test runner loads every .js
// file under dist/test/.
import { execFile, execFileSync, spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN_DIR, watchChild, type Proc } from '../../src/demo/procs.js';

export type Host = 'prod' | 'gwa' | 'gwa2' | 'gwb' | 'cons' | 'user' | 'wan';
const BASE_HOSTS: readonly Host[] = ['prod', 'gwa', 'gwb', 'cons', 'user', 'wan'];

/** Addresses in the lab (10.201.x.y exists only inside these namespaces). */
export const ADDR = {
  prod: '10.201.1.2',
  gwaLan: '10.201.1.1',
  gwaWan: '10.201.2.1',
  gwa2Lan: '10.201.1.3',
  gwa2Wan: '10.201.2.4',
  gwbWan: '10.201.2.2',
  gwbLan: '10.201.3.1',
  cons: '10.201.3.2',
  user: '10.201.2.3',
} as const;

/** Unique enough per concurrent run, and short enough for 15-character interface names. */
export function defaultPrefix(): string {
  return `ss${process.pid % 10000}`;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A process running inside a namespace, with its output captured. */
/** A process in a namespace: the same handle as the demo's CLI processes. */
export type NsProc = Proc;

/** A tcpdump writing a pcap file. */
export interface Capture {
  readonly proc: NsProc;
  readonly file: string;
  /**
   * Waits until tcpdump has written everything that crossed the interface so far, then SIGINT
   * (tcpdump prints its counters) and returns the whole file.
   */
  stop(): Promise<Buffer>;
}

/**
 * A UDP datagram sent across the captured interface after the traffic of interest: once it is in
 * the file, so is everything that crossed before it. (On SIGINT tcpdump does not write what it
 * has received but not yet processed, so stopping it right after the traffic loses packets.)
 */
export interface CaptureSync {
  from: Host;
  /** host:port on the other side of the interface; nothing needs to listen there. */
  to: string;
}

/**
 * Throws, with what is missing and how to get it, unless this process can create network
 * namespaces. The test must fail, not skip: CI runs as root with iproute2 installed (.ci/run).
 */
export function requireNetns(): void {
  const missing: string[] = [];
  if (process.platform !== 'linux') missing.push(`Linux (this is ${process.platform})`);
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    missing.push(`root (running as uid ${process.getuid()}; network namespaces and veth pairs need CAP_SYS_ADMIN and CAP_NET_ADMIN)`);
  }
  try {
    execFileSync('ip', ['-V'], { stdio: 'pipe' });
  } catch {
    missing.push('iproute2 (the `ip` command; apt-get install -y iproute2)');
  }
  if (missing.length > 0) {
    throw new Error(`the network-namespace test cannot build its hosts: it needs ${missing.join(', ')}. CI provides these (.ci/run).`);
  }
}


/** Runs a command to completion (no namespace); rejects with its stderr on a non-zero exit. */
function exec(cmd: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const e = err as NodeJS.ErrnoException & { code?: number | string };
      if (e.code === 'ENOENT') return reject(new Error(`${cmd} is not installed (apt-get install -y ${cmd === 'ip' ? 'iproute2' : cmd})`));
      reject(new Error(`\`${cmd} ${args.join(' ')}\` failed (exit ${e.code ?? 'signal'}): ${stderr.trim() || err.message}`));
    });
  });
}

/** Namespaces named `<prefix>-*` (a crashed run's leftovers, or ours). */
async function namespacesWithPrefix(prefix: string): Promise<string[]> {
  const { stdout } = await exec('ip', ['netns', 'list']);
  // Lines look like "ss1234-gwa (id: 3)" or just "ss1234-gwa".
  return stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(`${prefix}-`));
}

/**
 * Ends every process still in the namespaces named `<prefix>-*` (those a lab did not start itself,
 * such as the agents s2cs runs in their own process groups, are found by namespace), then deletes
 * the namespaces.
 */
export async function removeLabNamespaces(prefix: string): Promise<void> {
  for (const n of await namespacesWithPrefix(prefix)) {
    const { stdout } = await exec('ip', ['netns', 'pids', n]);
    for (const pid of stdout.split('\n').map(Number).filter((x) => x > 0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Gone meanwhile.
      }
    }
  }
  // Deleting a namespace deletes the veths and the bridge in it (and so their peers).
  for (const n of await namespacesWithPrefix(prefix)) await exec('ip', ['netns', 'del', n]);
}

export class NetnsLab {
  readonly prefix: string;
  /** Scratch directory for homes, state dirs, pcaps; removed by destroy(). */
  readonly dir: string;
  private readonly procs = new Set<NsProc>();
  private readonly onExit = () => this.destroySync();
  /** Whether setup got as far as touching namespaces (so there may be something to remove). */
  private started = false;

  private readonly hosts: readonly Host[];
  private readonly secondGatewayA: boolean;

  constructor(prefix = defaultPrefix(), opts: { secondGatewayA?: boolean } = {}) {
    this.prefix = prefix;
    this.secondGatewayA = opts.secondGatewayA ?? false;
    this.hosts = this.secondGatewayA ? [...BASE_HOSTS, 'gwa2'] : BASE_HOSTS;
    this.dir = mkdtempSync(join(tmpdir(), `scistream-netns-${prefix}-`));
    // If the test process dies before `after` runs, still leave nothing behind.
    process.on('exit', this.onExit);
  }

  ns(host: Host): string {
    return `${this.prefix}-${host}`;
  }

  /** Interface names; veth ends on the bridge are named after the host they lead to. */
  get ifaces() {
    const p = this.prefix;
    const names = {
      prodLan: `${p}-prod0`,
      gwaLan: `${p}-gwa-lan`,
      gwaWan: `${p}-gwa-wan`,
      gwbWan: `${p}-gwb-wan`,
      gwbLan: `${p}-gwb-lan`,
      consLan: `${p}-cons0`,
      userWan: `${p}-user0`,
      bridge: `${p}-br`,
      wanToGwa: `${p}-w-gwa`,
      wanToGwb: `${p}-w-gwb`,
      wanToUser: `${p}-w-user`,
      aBridge: `${p}-abr`,
      gwa2Lan: `${p}-gwa2-lan`,
      gwa2Wan: `${p}-gwa2-wan`,
      wanToGwa2: `${p}-w-gwa2`,
      aToGwa: `${p}-a-gwa`,
      aToGwa2: `${p}-a-gwa2`,
    };
    for (const n of Object.values(names)) if (n.length > 15) throw new Error(`interface name ${n} is longer than Linux's 15 characters; use a shorter prefix`);
    return names;
  }

  /** Builds the topology. Removes leftovers with the same prefix first. */
  async setup(): Promise<void> {
    requireNetns();
    this.started = true;
    await removeLabNamespaces(this.prefix);
    const i = this.ifaces;
    for (const h of this.hosts) {
      try {
        await exec('ip', ['netns', 'add', this.ns(h)]);
      } catch (err) {
        throw new Error(`cannot create network namespace ${this.ns(h)}: ${(err as Error).message} (needs root with CAP_SYS_ADMIN, and a writable /run/netns)`);
      }
      await this.ip(h, 'link', 'set', 'lo', 'up');
    }
    await this.ip('wan', 'link', 'add', i.bridge, 'type', 'bridge');
    await this.ip('wan', 'link', 'set', i.bridge, 'up');
    // Each veth is created with its two ends already in their namespaces, so nothing ever
    // appears in the root namespace, even if setup stops half-way.
    if (this.secondGatewayA) {
      // The A LAN as a bridge in prod's namespace, with both A gateways on it.
      await this.ip('prod', 'link', 'add', i.aBridge, 'type', 'bridge');
      await this.ip('prod', 'addr', 'add', `${ADDR.prod}/24`, 'dev', i.aBridge);
      await this.ip('prod', 'link', 'set', i.aBridge, 'up');
      for (const [host, iface, addr, port] of [
        ['gwa', i.gwaLan, ADDR.gwaLan, i.aToGwa],
        ['gwa2', i.gwa2Lan, ADDR.gwa2Lan, i.aToGwa2],
      ] as const) {
        await this.ip(host, 'link', 'add', iface, 'type', 'veth', 'peer', 'name', port, 'netns', this.ns('prod'));
        await this.ip(host, 'addr', 'add', `${addr}/24`, 'dev', iface);
        await this.ip(host, 'link', 'set', iface, 'up');
        await this.ip('prod', 'link', 'set', port, 'master', i.aBridge);
        await this.ip('prod', 'link', 'set', port, 'up');
      }
    } else {
      await this.veth('prod', i.prodLan, ADDR.prod, 'gwa', i.gwaLan, ADDR.gwaLan);
    }
    await this.veth('gwb', i.gwbLan, ADDR.gwbLan, 'cons', i.consLan, ADDR.cons);
    const wanPorts: (readonly [Host, string, string, string])[] = [
      ['gwa', i.gwaWan, ADDR.gwaWan, i.wanToGwa],
      ['gwb', i.gwbWan, ADDR.gwbWan, i.wanToGwb],
      ['user', i.userWan, ADDR.user, i.wanToUser],
    ];
    if (this.secondGatewayA) wanPorts.push(['gwa2', i.gwa2Wan, ADDR.gwa2Wan, i.wanToGwa2]);
    for (const [host, iface, addr, port] of wanPorts) {
      await this.ip(host, 'link', 'add', iface, 'type', 'veth', 'peer', 'name', port, 'netns', this.ns('wan'));
      await this.ip(host, 'addr', 'add', `${addr}/24`, 'dev', iface);
      await this.ip(host, 'link', 'set', iface, 'up');
      await this.ip('wan', 'link', 'set', port, 'master', i.bridge);
      await this.ip('wan', 'link', 'set', port, 'up');
    }
    // New namespaces start with forwarding off; force it anyway, so the isolation does not
    // depend on a distribution's defaults.
    for (const gw of this.hosts.filter((h) => h.startsWith('gw'))) {
      await this.run(gw, ['sh', '-c', 'echo 0 > /proc/sys/net/ipv4/ip_forward'], { check: true });
    }
  }

  private async veth(hostA: Host, ifA: string, addrA: string, hostB: Host, ifB: string, addrB: string): Promise<void> {
    await this.ip(hostA, 'link', 'add', ifA, 'type', 'veth', 'peer', 'name', ifB, 'netns', this.ns(hostB));
    await this.ip(hostA, 'addr', 'add', `${addrA}/24`, 'dev', ifA);
    await this.ip(hostB, 'addr', 'add', `${addrB}/24`, 'dev', ifB);
    await this.ip(hostA, 'link', 'set', ifA, 'up');
    await this.ip(hostB, 'link', 'set', ifB, 'up');
  }

  /** `ip -n <ns> ...`; rejects with ip's stderr. */
  async ip(host: Host, ...args: string[]): Promise<string> {
    return (await exec('ip', ['-n', this.ns(host), ...args])).stdout;
  }

  /** A sysctl as seen inside a namespace (net.* values are per namespace). */
  async sysctl(host: Host, key: string): Promise<string> {
    return (await this.run(host, ['cat', `/proc/sys/${key.replace(/\./g, '/')}`], { check: true })).stdout.trim();
  }

  /** Per-host SCISTREAM_HOME, so that known-servers and state files of different hosts never mix. */
  home(host: Host): string {
    const d = join(this.dir, `home-${host}`);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** Starts `argv` inside the namespace of `host`. `ip netns exec` execs the command, so the pid is the command's. */
  spawn(host: Host, argv: string[], opts: { name?: string; env?: NodeJS.ProcessEnv } = {}): NsProc {
    const name = opts.name ?? `${argv[0]} (in ${host})`;
    const child = spawn('ip', ['netns', 'exec', this.ns(host), ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SCISTREAM_HOME: this.home(host), ...opts.env },
    });
    const commandLine = argv.map((a) => (a.includes('\n') ? '<script>' : a)).join(' ');
    const proc = watchChild(name, `ip netns exec ${this.ns(host)} ${commandLine}`, child);
    this.procs.add(proc);
    proc.exited.then(() => this.procs.delete(proc));
    return proc;
  }

  /** One of the repository's CLIs (bin/s2cs.js, s2uc.js, s2app.js) on `host`. */
  cli(host: Host, program: 's2cs' | 's2uc' | 's2app' | 's2ds', args: string[]): NsProc {
    // The subcommand (start, request, hello...), not an option's value such as a path.
    const command = args.find((a) => /^[a-z][a-z0-9-]*$/.test(a)) ?? '';
    return this.spawn(host, [process.execPath, `${BIN_DIR}${program}.js`, ...args], { name: `${program} ${command} (in ${host})` });
  }

  /** An inline Node script (`node -e`) on `host`; `args` arrive as process.argv.slice(1). */
  node(host: Host, name: string, script: string, args: string[] = []): NsProc {
    return this.spawn(host, [process.execPath, '-e', script, ...args], { name: `${name} (in ${host})` });
  }

  /** Runs to completion inside `host`; with `check`, rejects on a non-zero exit. */
  async run(host: Host, argv: string[], opts: { check?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    const p = this.spawn(host, argv);
    const timer = setTimeout(() => void p.stop('SIGKILL'), opts.timeoutMs ?? 60_000);
    const code = await p.exited;
    clearTimeout(timer);
    const r = { code, stdout: p.stdout(), stderr: p.stderr() };
    if (opts.check && code !== 0) throw new Error(`${p.name} failed with exit code ${code}\n${p.describe()}`);
    return r;
  }

  /** Tries a TCP connection from `host`; says whether it opened, or the error code (ETIMEDOUT after `timeoutMs`). */
  async tryConnect(host: Host, target: string, timeoutMs = 3000): Promise<{ connected: boolean; error?: string; output: string }> {
    const [addr, port] = target.split(':');
    const r = await this.run(host, [process.execPath, '-e', TRY_CONNECT, addr!, port!, String(timeoutMs)]);
    const line = r.stdout.trim().split('\n').at(-1) ?? '';
    try {
      return { ...(JSON.parse(line) as { connected: boolean; error?: string }), output: `${r.stdout}${r.stderr}` };
    } catch {
      throw new Error(`connection probe from ${host} to ${target} printed no result (exit ${r.code}): ${r.stdout}${r.stderr}`);
    }
  }

  /** Starts tcpdump on `iface` in `host` and resolves once it is capturing. */
  async capture(host: Host, iface: string, label: string, sync: CaptureSync): Promise<Capture> {
    const file = join(this.dir, `${label}.pcap`);
    // --immediate-mode and -U: packets reach the file as they arrive; -Z root: keep writing to
    // our scratch dir after tcpdump drops privileges; -B: a 32 MiB kernel buffer against drops.
    const proc = this.spawn(host, ['tcpdump', '-i', iface, '-n', '--immediate-mode', '-U', '-B', '32768', '-Z', 'root', '-w', file], {
      name: `tcpdump on ${iface} (in ${host})`,
    });
    try {
      await proc.waitFor(/listening on/, { stream: 'stderr', timeoutMs: 20_000 });
    } catch (err) {
      const missing = /No such file|not found|ENOENT/.test(proc.stderr()) ? ' (is tcpdump installed? apt-get install -y tcpdump)' : '';
      throw new Error(`tcpdump did not start capturing on ${iface} in ${host}${missing}: ${(err as Error).message}`);
    }
    return {
      proc,
      file,
      stop: async () => {
        await this.syncCapture(proc, file, sync, `${iface} in ${host}`);
        const code = await proc.stop('SIGINT');
        if (code !== 0) throw new Error(`tcpdump on ${iface} exited with ${code}\n${proc.describe()}`);
        return readFileSync(file);
      },
    };
  }

  private async syncCapture(proc: NsProc, file: string, sync: CaptureSync, where: string): Promise<void> {
    const sentinel = `SCISTREAM-CAPTURE-SYNC-${randomBytes(8).toString('hex')}`;
    const [addr, port] = sync.to.split(':');
    // Repeated, in case the first datagram waits for ARP or is lost; up to about 20 s.
    for (let attempt = 0; attempt < 40; attempt++) {
      if (!proc.running()) throw new Error(`tcpdump on ${where} stopped early\n${proc.describe()}`);
      await this.run(sync.from, [process.execPath, '-e', SEND_UDP, addr!, port!, sentinel], { check: true });
      await new Promise((r) => setTimeout(r, 500));
      if (existsSync(file) && readFileSync(file).includes(sentinel)) return;
    }
    throw new Error(`tcpdump on ${where} did not record a datagram from ${sync.from} to ${sync.to} within 20 s: the capture may be incomplete\n${proc.describe()}`);
  }

  /** Stops every process it started (SIGTERM, then SIGKILL), deletes the namespaces and the scratch directory. */
  async destroy(): Promise<void> {
    try {
      await Promise.all([...this.procs].map((p) => p.stop('SIGTERM', 5000)));
      if (this.started) await removeLabNamespaces(this.prefix);
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
      process.off('exit', this.onExit);
    }
  }

  /** Last resort on process exit: no awaiting possible, so SIGKILL and synchronous deletes. */
  private destroySync(): void {
    for (const p of this.procs) if (p.running()) p.child.kill('SIGKILL');
    for (const h of this.started ? this.hosts : []) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', this.ns(h)], { encoding: 'utf8' });
        for (const pid of pids.split('\n').map(Number).filter((x) => x > 0)) process.kill(pid, 'SIGKILL');
      } catch {
        // No such namespace, or the processes are gone.
      }
      try {
        execFileSync('ip', ['netns', 'del', this.ns(h)], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface SuiteLabOptions {
  secondGatewayA?: boolean;
  /** For each of the before and after hooks. */
  timeoutMs?: number;
  /** More setup once the namespaces exist (addresses...). */
  afterSetup?: (lab: NetnsLab) => Promise<void>;
  /** What to undo before the lab is destroyed (nftables rules that must not outlive a test...). */
  beforeDestroy?: (lab: NetnsLab) => Promise<void>;
}

/**
 * A lab for the tests of the describe() it is called in: built in a before hook, and
 * destroyed in an after hook that runs even when a test failed (every process stopped,
 * every namespace deleted). Returns the accessor the tests use, which fails clearly when
 * the before hook did not get as far as building the lab.
 */
export function labForSuite(opts: SuiteLabOptions = {}): () => NetnsLab {
  let lab: NetnsLab | undefined;
  const timeout = opts.timeoutMs ?? 120_000;
  before(async () => {
    lab = new NetnsLab(undefined, { secondGatewayA: opts.secondGatewayA });
    await lab.setup();
    await opts.afterSetup?.(lab);
  }, { timeout });
  after(async () => {
    try {
      if (lab) await opts.beforeDestroy?.(lab);
    } finally {
      await lab?.destroy();
    }
  }, { timeout });
  return () => {
    assert.ok(lab, 'the namespaces were not set up (see the failure of the before hook)');
    return lab;
  };
}

/** One UDP datagram: host, port, payload. */
const SEND_UDP = `
const [host, port, payload] = process.argv.slice(1);
const s = require('node:dgram').createSocket('udp4');
s.send(payload, Number(port), host, (err) => { if (err) { console.error(err.message); process.exit(1); } s.close(); });
`;

/** A TCP connect with a deadline; prints {"connected":bool,"error":code}. */
const TRY_CONNECT = `
const [host, port, ms] = process.argv.slice(1);
const s = require('node:net').connect({ host, port: Number(port) });
const done = (r) => { console.log(JSON.stringify(r)); s.destroy(); process.exit(0); };
s.setTimeout(Number(ms), () => done({ connected: false, error: 'ETIMEDOUT' }));
s.on('connect', () => done({ connected: true }));
s.on('error', (e) => done({ connected: false, error: e.code || e.message }));
`;

