// Child processes of the SciStream CLIs, for the demo and the end-to-end tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

export const BIN_DIR = fileURLToPath(new URL('../../../bin/', import.meta.url));

export interface Proc {
  readonly name: string;
  readonly child: ChildProcess;
  /** Everything printed so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first match of `re` on stdout or stderr; rejects if the process exits first. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code (or 128+signal). */
  readonly exited: Promise<number>;
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export interface SpawnOptions {
  /** Copy the child's stderr to ours as it arrives (progress bars, logs). */
  inheritStderr?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** Runs one of bin/ (s2cs, s2uc, s2app) with `node`, capturing its output. */
export function spawnCli(program: 's2cs' | 's2uc' | 's2app', args: string[], opts: SpawnOptions = {}): Proc {
  const child = spawn(process.execPath, [`${BIN_DIR}${program}.js`, ...args], {
    stdio: ['ignore', 'pipe', opts.inheritStderr ? 'inherit' : 'pipe'],
    env: opts.env ?? process.env,
  });
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
    child.on('exit', (code, signal) => {
      resolve(code ?? 128 + (signal ? signalNumber(signal) : 0));
    });
    child.on('error', () => resolve(127));
  });
  const name = `${program} ${args[0] ?? ''}`.trim();
  const proc: Proc = {
    name,
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(out) ?? re.exec(err);
          if (m) {
            cleanup();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${name}: no output matching ${re} after ${timeoutMs / 1000} s\nstdout: ${out}\nstderr: ${err}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          watchers.delete(check);
        };
        watchers.add(check);
        exited.then((code) => {
          check();
          if (watchers.has(check)) {
            cleanup();
            reject(new Error(`${name} exited with code ${code} before printing ${re}\nstdout: ${out}\nstderr: ${err}`));
          }
        });
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(killer);
      return code;
    },
  };
  return proc;
}

function signalNumber(signal: NodeJS.Signals): number {
  return ({ SIGINT: 2, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 0;
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

/** A range of `size` ports that were free a moment ago (S2DS skips any taken since). */
export async function freePortRange(size: number, host = '127.0.0.1'): Promise<{ first: number; last: number }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 20_000 + Math.floor(Math.random() * 30_000);
    const free = await Promise.all(Array.from({ length: size }, (_, i) => isFree(host, first + i)));
    if (free.every(Boolean)) return { first, last: first + size - 1 };
  }
  throw new Error(`no ${size} consecutive free ports found on ${host}`);
}

function isFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}
