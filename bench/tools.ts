// What the benchmark needs from the machine: the contenders' packages, processes it
// starts and always stops, and the CPU time and memory of those processes.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { cpus, release } from 'node:os';
import { watchChild, type Proc } from '../src/demo/procs.js';

/** Debian packages of the other contenders, installed when a program is missing. */
const PACKAGES: Record<string, string> = { iperf3: 'iperf3', haproxy: 'haproxy', stunnel: 'stunnel4', socat: 'socat' };

/** Whether a program is on PATH. */
export function which(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Debian's Python, which the distribution's python3-* packages install for (not a pyenv shim on PATH). */
export const PYTHON = '/usr/bin/python3';
/** Python modules of the ZeroMQ rows' publisher and subscriber (bench/zmq-pubsub.py), by Debian package. */
const PYTHON_MODULES: Record<string, string> = { zmq: 'python3-zmq' };

function importable(module: string): boolean {
  try {
    execFileSync(PYTHON, ['-c', `import ${module}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function ensureTools(say: (line: string) => void): void {
  // What is missing, and the Debian package that brings it.
  const lacking = () => [
    ...Object.entries(PACKAGES).filter(([program]) => !which(program)).map(([program, pkg]) => ({ what: program, pkg })),
    ...Object.entries(PYTHON_MODULES).filter(([module]) => !importable(module)).map(([module, pkg]) => ({ what: `${PYTHON}'s module ${module}`, pkg })),
  ];
  const missing = lacking();
  if (missing.length === 0) return;
  const pkgs = missing.map((m) => m.pkg);
  say(`installing ${pkgs.join(', ')} from the distribution's packages`);
  if (process.getuid?.() !== 0) throw new Error(`missing ${missing.map((m) => m.what).join(', ')}: install ${pkgs.join(' ')} (apt-get install ${pkgs.join(' ')}), or run the benchmark as root`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'ignore', env });
  const still = lacking();
  if (still.length > 0) throw new Error(`still missing after apt-get: ${still.map((m) => m.what).join(', ')}`);
}

const running = new Set<Proc>();

/** Starts an external program; every one is stopped by stopAll (also on failure or Ctrl-C). */
export function start(name: string, command: string, args: string[]): Proc {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const p = watchChild(name, `${command} ${args.join(' ')}`, child);
  track(p);
  return p;
}

export function track(p: Proc): Proc {
  running.add(p);
  void p.exited.then(() => running.delete(p));
  return p;
}

/** Every worker pid seen (agentPids), for the sweep in stopAll. */
const workers = new Set<number>();

/**
 * The local workers of an s2cs, from the pid files in its agents directory
 * (`<state-dir>/agents-<port>/worker-N.pid`). They are detached children of s2cs
 * in their own process groups: not in its /proc stat's children's times while
 * they run, so their CPU time is counted separately.
 */
export function agentPids(agentsDir: string): number[] {
  let files: string[];
  try {
    files = readdirSync(agentsDir).filter((f) => /^worker-\d+\.pid$/.test(f));
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const f of files) {
    try {
      const pid = Number.parseInt(readFileSync(join(agentsDir, f), 'utf8').trim(), 10);
      if (Number.isInteger(pid) && pid > 1) {
        pids.push(pid);
        workers.add(pid);
      }
    } catch {
      // removed between the listing and the read: the worker is stopping
    }
  }
  return pids;
}

function isWorker(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('s2ds.js');
  } catch {
    return false;
  }
}

/**
 * Runs a bench script's `main`: a failure is one line and exit code 1, and whatever
 * it started is stopped and its scratch directory removed either way.
 */
export function runScript(label: string, dir: string, main: () => Promise<void>): void {
  main()
    .catch((err: unknown) => {
      console.error(`${label} failed: ${(err as Error).message}`);
      process.exitCode = 1;
    })
    .finally(async () => {
      await stopAll();
      rmSync(dir, { recursive: true, force: true });
    });
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop('SIGTERM', 3000)));
  // s2cs stops its workers on SIGTERM; one it did not stop in time (or an s2cs
  // killed after the grace) would outlive the benchmark: end its process group.
  const left = [...workers].filter(isWorker);
  for (const pid of left) signalGroup(pid, 'SIGTERM');
  for (let i = 0; i < 30 && left.some(isWorker); i++) await new Promise((r) => setTimeout(r, 100));
  for (const pid of left.filter(isWorker)) signalGroup(pid, 'SIGKILL');
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

const TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds a process (and its waited-for children, e.g. socat's forks) has used. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined || !existsSync(`/proc/${pid}/stat`)) return 0;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14-17 of stat(5), counted from after the command name: utime stime cutime cstime.
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS;
}

/** Resident memory now and at its peak (VmRSS, VmHWM), in bytes. */
export function memory(pid: number | undefined): { rss: number; peak: number } {
  if (pid === undefined || !existsSync(`/proc/${pid}/status`)) return { rss: 0, peak: 0 };
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  kernel: string;
  node: string;
  memoryGiB: number;
  versions: Record<string, string>;
  /** cryptoCeilingGbps(), measured by the runs with TLS rows. */
  cryptoCeilingGbps?: number;
}

/**
 * The crypto ceiling of one core: AES-128-GCM (what the WAN leg's TLS 1.3 negotiates
 * here) over 16 KiB blocks, as `openssl speed -evp aes-128-gcm` measures it, in Gbit/s.
 * The TLS rows' Gbit per CPU-second read against it. Undefined when openssl is missing.
 */
export function cryptoCeilingGbps(): number | undefined {
  try {
    const out = execFileSync('openssl', ['speed', '-seconds', '2', '-bytes', '16384', '-evp', 'aes-128-gcm'], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 }).toString();
    // The last line: "AES-128-GCM    5148027.10k" (thousands of bytes per second).
    const k = Number(/^AES-128-GCM\s+([\d.]+)k\s*$/m.exec(out)?.[1]);
    return Number.isFinite(k) && k > 0 ? (k * 1000 * 8) / 1e9 : undefined;
  } catch {
    return undefined;
  }
}

/** The machine in one line, as every section prints it under its table; with the tools' versions unless `short`. */
export function machineLine(info: MachineInfo, short = false): string {
  const base = `machine: ${info.cores} x ${info.cpu}, ${info.memoryGiB} GiB, Linux ${info.kernel}, Node ${info.node}`;
  return short ? base : `${base}; ${Object.values(info.versions).join('; ')}`;
}

export function machine(): MachineInfo {
  const first = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString().split('\n').find((l) => l.trim()) ?? '?';
    } catch (err) {
      // stunnel prints its version on stderr
      const e = err as { stderr?: Buffer };
      return e.stderr?.toString().split('\n').find((l) => /stunnel \d/.test(l)) ?? '?';
    }
  };
  const memTotal = Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0) * 1024;
  return {
    cpu: cpus()[0]?.model ?? '?',
    cores: cpus().length,
    kernel: release(),
    node: process.version,
    memoryGiB: Math.round(memTotal / 2 ** 30),
    versions: {
      haproxy: first('haproxy', ['-v']),
      stunnel: first('sh', ['-c', 'stunnel -version 2>&1 | grep -m1 "^stunnel"']),
      socat: first('sh', ['-c', 'socat -V | grep -m1 "socat version"']),
      iperf3: first('iperf3', ['-v']),
    },
  };
}
