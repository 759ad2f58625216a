// A flat lab of network namespaces: named hosts with the addresses a document writes, on one
// bridge, so commands copied from a tutorial run as written (192.168.10.11 is a host here).
// Unlike NetnsLab (two facilities joined only through gateways) nothing here isolates anything:
// it exists to run documented command lines, not to prove where packets may go.
//
// Everything is named `<prefix>-...`; a later run with the same prefix removes what a crashed
// run left. No side effects on import (the test runner loads every file under dist/test/).
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN_DIR, watchChild, type Proc } from '../../src/demo/procs.js';
import { removeLabNamespaces, requireNetns } from './netns.js';

function exec(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`\`${cmd} ${args.join(' ')}\` failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** The programs a document names, as commands on PATH (node bin/<program>.js). */
const PROGRAMS = ['s2cs', 's2uc', 's2app', 's2ds', 'appctrl'] as const;

export class FlatLab {
  readonly dir: string;
  /** A directory with s2cs, s2uc, s2app, s2ds and appctrl commands, put first on PATH. */
  readonly binDir: string;
  private readonly procs = new Set<Proc>();
  private readonly onExit = () => this.destroySync();
  private started = false;

  /** `hosts`: name (a few letters) -> its addresses, all in `prefixLength`. */
  constructor(
    readonly hosts: Readonly<Record<string, readonly string[]>>,
    readonly prefix = `fl${process.pid % 10000}`,
    private readonly prefixLength = 16,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), `scistream-flat-${prefix}-`));
    this.binDir = join(this.dir, 'bin');
    mkdirSync(this.binDir);
    for (const p of PROGRAMS) {
      const file = join(this.binDir, p);
      writeFileSync(file, `#!/bin/sh\nexec '${process.execPath}' '${BIN_DIR}${p}.js' "$@"\n`);
      chmodSync(file, 0o755);
    }
    process.on('exit', this.onExit);
  }

  ns(host: string): string {
    return `${this.prefix}-${host}`;
  }

  private get names(): string[] {
    return [...Object.keys(this.hosts), 'br'];
  }

  async setup(): Promise<void> {
    requireNetns();
    this.started = true;
    await removeLabNamespaces(this.prefix);
    for (const n of this.names) {
      await exec('ip', ['netns', 'add', this.ns(n)]);
      await exec('ip', ['-n', this.ns(n), 'link', 'set', 'lo', 'up']);
    }
    const bridge = `${this.prefix}-br`;
    await exec('ip', ['-n', this.ns('br'), 'link', 'add', bridge, 'type', 'bridge']);
    await exec('ip', ['-n', this.ns('br'), 'link', 'set', bridge, 'up']);
    for (const [n, [host, addrs]] of Object.entries(this.hosts).entries()) {
      // By number: host names need not fit Linux's 15-character interface names.
      const iface = `${this.prefix}-h${n}`;
      const port = `${this.prefix}-p${n}`;
      // Both ends are created in their namespaces: nothing ever appears in the root namespace.
      await exec('ip', ['-n', this.ns(host), 'link', 'add', iface, 'type', 'veth', 'peer', 'name', port, 'netns', this.ns('br')]);
      for (const a of addrs) await exec('ip', ['-n', this.ns(host), 'addr', 'add', `${a}/${this.prefixLength}`, 'dev', iface]);
      await exec('ip', ['-n', this.ns(host), 'link', 'set', iface, 'up']);
      await exec('ip', ['-n', this.ns('br'), 'link', 'set', port, 'master', bridge]);
      await exec('ip', ['-n', this.ns('br'), 'link', 'set', port, 'up']);
    }
  }

  /** Per-host SCISTREAM_HOME and working directory. */
  home(host: string): string {
    const d = join(this.dir, `home-${host}`);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** `bash -c script` in `host`, in its home directory, with the lab's commands first on PATH. */
  shell(host: string, script: string, env: NodeJS.ProcessEnv = {}): Proc {
    const child = spawn('ip', ['netns', 'exec', this.ns(host), 'bash', '-c', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: this.home(host),
      // Its own process group: a shell's children (iperf3, node) end with it.
      detached: true,
      env: { ...process.env, SCISTREAM_HOME: this.home(host), PATH: `${this.binDir}:${process.env.PATH ?? ''}`, ...env },
    });
    const proc = watchChild(`${script.split('\n')[0]} (in ${host})`, script, child);
    this.procs.add(proc);
    void proc.exited.then(() => this.procs.delete(proc));
    return proc;
  }

  /** Ends a shell and everything it started (its process group). */
  async stop(proc: Proc, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<number> {
    if (proc.running() && proc.pid !== undefined) {
      try {
        process.kill(-proc.pid, signal);
      } catch {
        // Gone meanwhile.
      }
    }
    const timer = setTimeout(() => {
      try {
        if (proc.pid !== undefined) process.kill(-proc.pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }, graceMs);
    const code = await proc.exited;
    clearTimeout(timer);
    return code;
  }

  async destroy(): Promise<void> {
    try {
      await Promise.all([...this.procs].map((p) => this.stop(p)));
      if (this.started) await removeLabNamespaces(this.prefix);
    } finally {
      rmSync(this.dir, { recursive: true, force: true });
      process.off('exit', this.onExit);
    }
  }

  private destroySync(): void {
    for (const p of this.procs) {
      try {
        if (p.pid !== undefined) process.kill(-p.pid, 'SIGKILL');
      } catch {
        // Gone.
      }
    }
    for (const n of this.started ? this.names : []) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', this.ns(n)], { encoding: 'utf8' });
        for (const pid of pids.split('\n').map(Number).filter((x) => x > 0)) process.kill(pid, 'SIGKILL');
        execFileSync('ip', ['netns', 'del', this.ns(n)], { stdio: 'ignore' });
      } catch {
        // Already gone.
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
