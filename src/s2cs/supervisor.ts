// The local data-server agents of `s2cs start --workers N`: one s2ds process per
// worker, each on a Unix socket in the state dir with its own slice of the port
// range. Each runs in its own process group, so that a kill -9 of s2cs leaves them
// forwarding; a restarted s2cs finds them on their sockets and adopts them.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../log.js';
import { invalidArgument } from '../protocol/errors.js';
import type { PortRange } from '../s2ds/index.js';

export interface SupervisorOptions {
  count: number;
  /** Where the workers' sockets, pid files and logs go (the s2ds --state-dir of each). */
  dir: string;
  /** Remove `dir` when the workers are stopped (a directory of this s2cs run only). */
  removeDirOnStop?: boolean;
  /** Split evenly over the workers. */
  portRange: PortRange;
  /** Flags every worker gets besides --listen, --port-range, --name and --state-dir (--listener-ip, bounds...). */
  args: string[];
  /** The agent's script (default: this package's bin/s2ds.js). */
  script?: string;
  logger: Logger;
  /** Called when a worker's process ended unexpectedly (its streams are gone), before it is restarted. */
  onWorkerLost?: (index: number, why: string) => void;
  /** First restart delay, doubled on each quick failure up to maxBackoffMs (defaults 500 ms and 30 s). */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** How long a worker has to answer on its socket after it was started (default 15 s). */
  readyTimeoutMs?: number;
  /**
   * Receives what the workers append to their log files, as it is written (s2cs
   * copies it to its own log output, so an operator reads one log). Only what is
   * written after start() is passed on.
   */
  onLog?: (chunk: Buffer) => void;
}

/** How often the workers' log files are read for new lines (onLog). */
const LOG_FOLLOW_MS = 250;

/** A worker that ran this long before it ended was healthy: its next restart starts from the first delay. */
const STABLE_MS = 60_000;
const STOP_GRACE_MS = 10_000;

export const DEFAULT_AGENT_SCRIPT = fileURLToPath(new URL('../../../bin/s2ds.js', import.meta.url));

/** Splits a port range into `n` contiguous slices as even as they can be; throws when a slice would be empty. */
export function splitPortRange(range: PortRange, n: number): PortRange[] {
  const size = range.last - range.first + 1;
  if (n < 1 || size < n) {
    throw invalidArgument(`--port-range ${range.first}-${range.last} has ${size} port(s), fewer than --workers ${n}: each worker needs its own ports; widen --port-range or lower --workers`);
  }
  const out: PortRange[] = [];
  let first = range.first;
  for (let i = 0; i < n; i++) {
    const len = Math.floor(size / n) + (i < size % n ? 1 : 0);
    out.push({ first, last: first + len - 1 });
    first += len;
  }
  return out;
}

interface Worker {
  index: number;
  name: string;
  socket: string;
  pidFile: string;
  logFile: string;
  range: PortRange;
  pid: number | undefined;
  child: ChildProcess | undefined;
  /** Poll of a worker adopted from a previous s2cs (not our child: no exit event). */
  watch: NodeJS.Timeout | undefined;
  startedAt: number;
  backoff: number;
  restartTimer: NodeJS.Timeout | undefined;
  exited: Promise<void>;
}

export class Supervisor {
  private readonly workers: Worker[] = [];
  private stopping = false;
  private follower: NodeJS.Timeout | undefined;
  readonly dir: string;

  constructor(private readonly opts: SupervisorOptions) {
    this.dir = opts.dir;
    const ranges = splitPortRange(opts.portRange, opts.count);
    for (let i = 0; i < opts.count; i++) {
      this.workers.push({
        index: i,
        name: `worker-${i}`,
        socket: join(this.dir, `worker-${i}.sock`),
        pidFile: join(this.dir, `worker-${i}.pid`),
        logFile: join(this.dir, `worker-${i}.log`),
        range: ranges[i]!,
        pid: undefined,
        child: undefined,
        watch: undefined,
        startedAt: 0,
        backoff: opts.backoffMs ?? 500,
        restartTimer: undefined,
        exited: Promise.resolve(),
      });
    }
  }

  /** Where s2cs reaches each worker (unix:/path), by index. */
  addresses(): string[] {
    return this.workers.map((w) => `unix:${w.socket}`);
  }

  names(): string[] {
    return this.workers.map((w) => w.name);
  }

  /** Process ids of the workers running now. */
  pids(): number[] {
    return this.workers.map((w) => w.pid).filter((p): p is number => p !== undefined);
  }

  /** Adopts the workers a previous s2cs left running, starts the others, and waits until each answers. */
  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.followLogs();
    try {
      await Promise.all(this.workers.map((w) => this.startWorker(w)));
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  private async startWorker(w: Worker): Promise<void> {
    const pid = readPid(w.pidFile);
    if (pid !== undefined && alive(pid) && (await answers(w.socket))) {
      w.pid = pid;
      w.startedAt = Date.now();
      this.watchAdopted(w);
      this.opts.logger.info({ worker: w.name, pid, socket: w.socket }, `${w.name} (pid ${pid}) is still running from a previous s2cs: adopting it and its streams`);
      return;
    }
    this.spawnWorker(w);
    await this.ready(w);
  }

  private spawnWorker(w: Worker): void {
    // A socket left by a worker that is gone: the new one binds the path afresh.
    rmSync(w.socket, { force: true });
    const args = [
      this.opts.script ?? DEFAULT_AGENT_SCRIPT,
      'start',
      '--listen', `unix:${w.socket}`,
      '--port-range', `${w.range.first}-${w.range.last}`,
      '--name', w.name,
      '--state-dir', this.dir,
      ...this.opts.args,
    ];
    // The worker's logs go to a file: a pipe to s2cs would break when s2cs dies, and the worker must outlive it.
    const log = openSync(w.logFile, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    w.child = child;
    w.pid = child.pid;
    w.startedAt = Date.now();
    if (child.pid !== undefined) writeFileSync(w.pidFile, `${child.pid}\n`, { mode: 0o600 });
    w.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', (code, signal) => {
      if (w.child !== child) return;
      w.child = undefined;
      w.pid = undefined;
      this.ended(w, signal ? `killed by ${signal}` : `exited with code ${code}`);
    });
    // Not counted by the event loop: s2cs's own exit is not held up by its workers.
    child.unref();
    this.opts.logger.info({ worker: w.name, pid: child.pid, ports: `${w.range.first}-${w.range.last}`, log: w.logFile }, `started ${w.name}`);
  }

  private watchAdopted(w: Worker): void {
    const pid = w.pid!;
    w.exited = new Promise((resolve) => {
      w.watch = setInterval(() => {
        if (alive(pid)) return;
        clearInterval(w.watch);
        w.watch = undefined;
        w.pid = undefined;
        resolve();
        this.ended(w, 'ended');
      }, 250);
      w.watch.unref();
    });
  }

  /** A worker's process ended: unexpected unless s2cs is stopping; its streams are gone; restart it after a delay. */
  private ended(w: Worker, how: string): void {
    if (this.stopping) return;
    const ranFor = Date.now() - w.startedAt;
    if (ranFor >= STABLE_MS) w.backoff = this.opts.backoffMs ?? 500;
    const delay = w.backoff;
    w.backoff = Math.min(w.backoff * 2, this.opts.maxBackoffMs ?? 30_000);
    const why = `data-server worker ${w.name} ${how}: the connections it carried were reset`;
    this.opts.logger.error({ worker: w.name, log: w.logFile, restartInMs: delay }, `${why}; restarting it in ${(delay / 1000).toFixed(1)} s (its log: ${w.logFile})`);
    this.opts.onWorkerLost?.(w.index, why);
    w.restartTimer = setTimeout(() => {
      w.restartTimer = undefined;
      if (this.stopping) return;
      this.spawnWorker(w);
      this.ready(w).catch((err: unknown) => this.opts.logger.error({ worker: w.name }, (err as Error).message));
    }, delay);
    w.restartTimer.unref();
  }

  /** Waits until the worker answers on its socket; fails with the end of its log if it exits or takes too long. */
  private async ready(w: Worker): Promise<void> {
    const child = w.child;
    const end = Date.now() + (this.opts.readyTimeoutMs ?? 15_000);
    while (Date.now() < end) {
      if (w.child !== child || !child || child.exitCode !== null || child.signalCode !== null) break;
      if (await answers(w.socket)) {
        this.opts.logger.info({ worker: w.name, pid: w.pid }, `${w.name} answers on its socket`);
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const exited = !child || child.exitCode !== null || child.signalCode !== null;
    throw new Error(`data-server worker ${w.name} ${exited ? 'exited at start' : 'did not answer on its socket in time'}: ${tail(w.logFile)}`);
  }

  /**
   * Stops supervising and leaves the workers running with their streams (a new
   * s2cs adopts them): no restart, no stop.
   */
  /**
   * Copies what the workers append to their logs to onLog. The logs are files, not
   * pipes: a pipe would break when s2cs dies, and the workers must outlive it; a new
   * s2cs starts reading at their current ends.
   */
  private followLogs(): void {
    const onLog = this.opts.onLog;
    if (!onLog || this.follower) return;
    const offsets = this.workers.map((w) => fileSize(w.logFile));
    this.follower = setInterval(() => {
      this.workers.forEach((w, i) => {
        const size = fileSize(w.logFile);
        if (size < offsets[i]!) offsets[i] = 0; // truncated or replaced (logrotate)
        if (size === offsets[i]) return;
        const length = Math.min(size - offsets[i]!, 1 << 20);
        let fd: number | undefined;
        try {
          fd = openSync(w.logFile, 'r');
          const chunk = Buffer.alloc(length);
          const n = readSync(fd, chunk, 0, length, offsets[i]!);
          offsets[i]! += n;
          if (n > 0) onLog(chunk.subarray(0, n));
        } catch {
          // The file is gone for now (a worker being restarted); read again next time.
        } finally {
          if (fd !== undefined) closeSync(fd);
        }
      });
    }, LOG_FOLLOW_MS);
    this.follower.unref();
  }

  private stopFollowing(): void {
    if (this.follower) clearInterval(this.follower);
    this.follower = undefined;
  }

  detach(): void {
    this.stopFollowing();
    this.stopping = true;
    for (const w of this.workers) {
      if (w.restartTimer) clearTimeout(w.restartTimer);
      if (w.watch) clearInterval(w.watch);
      w.child?.removeAllListeners('exit');
    }
  }

  /** Stops every worker (SIGTERM to its process group, SIGKILL after a grace time) and waits until each is gone. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.workers.map(async (w) => {
        if (w.restartTimer) clearTimeout(w.restartTimer);
        const pid = w.pid;
        if (pid === undefined) return;
        signalGroup(pid, 'SIGTERM');
        const killed = setTimeout(() => signalGroup(pid, 'SIGKILL'), STOP_GRACE_MS);
        // An adopted worker is watched by polling; make sure that poll runs while s2cs waits.
        if (w.watch) w.watch.ref();
        await w.exited;
        clearTimeout(killed);
        w.pid = undefined;
        rmSync(w.pidFile, { force: true });
      }),
    );
    this.stopFollowing();
    if (this.opts.removeDirOnStop) rmSync(this.dir, { recursive: true, force: true });
  }
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function readPid(file: string): number | undefined {
  if (!existsSync(file)) return undefined;
  const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
}

/** Whether something accepts connections on the Unix socket. */
function answers(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

function tail(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    return lines.slice(-3).join(' | ') || 'its log is empty';
  } catch {
    return 'no log';
  }
}
