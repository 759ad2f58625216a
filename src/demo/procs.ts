// Child processes of the SciStream CLIs, for the demo and the end-to-end tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const BIN_DIR = fileURLToPath(new URL('../../../bin/', import.meta.url));

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number | undefined;
  /** Everything printed so far. */
  stdout(): string;
  stderr(): string;
  /**
   * Resolves with the first match of `re` in the chosen output (both by default), looking only
   * at what came after character `from`; rejects with the output if the process exits or time runs out.
   */
  waitFor(re: RegExp, opts?: { timeoutMs?: number; stream?: 'stdout' | 'stderr'; from?: number }): Promise<RegExpMatchArray>;
  /** Exit code, or 128+signal number. */
  readonly exited: Promise<number>;
  running(): boolean;
  /** Sends `signal`, then SIGKILL if it has not exited after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number>;
  /** stdout and stderr, for failure messages. */
  describe(): string;
}

export interface SpawnOptions {
  /** Copy the child's stderr to ours as it arrives (progress bars, logs). */
  inheritStderr?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** Runs one of bin/ (s2cs, s2uc, s2app, s2ds) with `node`, capturing its output. */
export function spawnCli(program: 's2cs' | 's2uc' | 's2app' | 's2ds' | 'appctrl', args: string[], opts: SpawnOptions = {}): Proc {
  // s2cs forwards in its own process here unless the caller asks for workers or agents:
  // the demo and the tests written before local workers (issue 11) count on that.
  if (program === 's2cs' && args[0] === 'start' && !args.some((a) => a === '--workers' || a === '--s2ds')) args = [...args, '--workers', '0'];
  const child = spawn(process.execPath, [`${BIN_DIR}${program}.js`, ...args], {
    stdio: ['ignore', 'pipe', opts.inheritStderr ? 'inherit' : 'pipe'],
    env: opts.env ?? process.env,
  });
  return watchChild(`${program} ${args[0] ?? ''}`.trim(), `${program} ${args.join(' ')}`, child);
}

/** Captures a child's output and gives ways to wait for it and stop it. */
export function watchChild(name: string, commandLine: string, child: ChildProcess): Proc {
  let out = '';
  let err = '';
  const watchers = new Set<() => void>();
  const notify = () => {
    for (const w of watchers) w();
  };
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    notify();
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    notify();
  });
  const exited = new Promise<number>((resolve) => {
    child.on('close', (code, signal) => resolve(code ?? 128 + signalNumber(signal)));
    child.on('error', (e) => {
      err += `cannot start: ${e.message}\n`;
      resolve(127);
    });
  });
  let done = false;
  void exited.then(() => (done = true));
  const describe = () => `--- ${name}: ${commandLine}\n--- stdout:\n${out.trim()}\n--- stderr:\n${err.trim()}`;
  return {
    name,
    child,
    pid: child.pid,
    stdout: () => out,
    stderr: () => err,
    exited,
    running: () => !done,
    describe,
    waitFor(re, { timeoutMs = 30_000, stream, from = 0 } = {}) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = (stream !== 'stderr' ? re.exec(out.slice(from)) : null) ?? (stream !== 'stdout' ? re.exec(err.slice(from)) : null);
          if (m) {
            cleanup();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${name}: nothing matching ${re} after ${timeoutMs / 1000} s\n${describe()}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          watchers.delete(check);
        };
        watchers.add(check);
        void exited.then((code) => {
          check();
          if (watchers.has(check)) {
            cleanup();
            reject(new Error(`${name} exited with code ${code} before printing ${re}\n${describe()}`));
          }
        });
        check();
      });
    },
    async stop(signal = 'SIGTERM', graceMs = 10_000) {
      if (!done) child.kill(signal);
      const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
  };
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal ? (({ SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 0) : 0;
}

/** A port that was free a moment ago on `host`. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen({ host, port: 0 }, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A range of `size` ports that were free a moment ago (S2DS skips any taken since),
 * below the kernel's ephemeral ports: freePort() and outgoing connections take
 * theirs from there, and a gateway's listeners (spares open at start) must not
 * take the port another process was just told is free.
 */
export async function freePortRange(size: number, host = '127.0.0.1'): Promise<{ first: number; last: number }> {
  const below = Math.max(10_000 + size + 1, ephemeralPorts().first);
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 10_000 + Math.floor(Math.random() * (below - size - 10_000));
    const free = await Promise.all(Array.from({ length: size }, (_, i) => isFree(host, first + i)));
    if (free.every(Boolean)) return { first, last: first + size - 1 };
  }
  throw new Error(`no ${size} consecutive free ports found on ${host}`);
}

/** The kernel's ephemeral port range (Linux); the usual default elsewhere. */
function ephemeralPorts(): { first: number; last: number } {
  try {
    const [first, last] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(first) && Number.isInteger(last)) return { first: first!, last: last! };
  } catch {
    // not Linux
  }
  return { first: 32_768, last: 60_999 };
}

function isFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}
