// The supervisor's process management with real child processes (a stand-in agent script):
// own process groups, restart after kill -9, adoption by a new supervisor, stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Supervisor, splitPortRange } from '../../src/s2cs/supervisor.js';
import { captureLogger } from '../auth/capture.js';

const STAND_IN = fileURLToPath(new URL('../support/stand-in-agent.js', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function pgid(pid: number): number {
  return Number(execFileSync('ps', ['-o', 'pgid=', '-p', String(pid)], { encoding: 'utf8' }).trim());
}

/** Processes whose command line holds `text`. */
function pgrep(text: string): string {
  try {
    return execFileSync('pgrep', ['-f', text], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the port range is split evenly; too small a range names both flags', () => {
  assert.deepEqual(splitPortRange({ first: 5100, last: 5110 }, 3), [
    { first: 5100, last: 5103 },
    { first: 5104, last: 5107 },
    { first: 5108, last: 5110 },
  ]);
  assert.throws(() => splitPortRange({ first: 5100, last: 5101 }, 3), /--port-range 5100-5101 has 2 port\(s\), fewer than --workers 3/);
});

test('workers run in their own process groups, are restarted after kill -9 (reported lost), adopted by a new supervisor, and stopped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sup-'));
  const { logger, lines } = captureLogger();
  const lost: number[] = [];
  const settings = { count: 2, dir: join(dir, 'agents'), portRange: { first: 6100, last: 6103 }, args: ['--listener-ip', '127.0.0.1'], script: STAND_IN, logger, backoffMs: 100 };
  const first = new Supervisor({ ...settings, onWorkerLost: (i) => lost.push(i) });
  let second: Supervisor | undefined;
  const all = new Set<number>();
  try {
    await first.start();
    const [p0, p1] = first.pids();
    assert.ok(p0 && p1);
    for (const p of [p0, p1]) all.add(p);
    assert.equal(pgid(p0), p0, 'worker 0 leads its own process group');
    assert.equal(pgid(p1), p1);
    assert.notEqual(pgid(p0), pgid(process.pid));
    assert.deepEqual(first.addresses(), [`unix:${join(dir, 'agents', 'worker-0.sock')}`, `unix:${join(dir, 'agents', 'worker-1.sock')}`]);

    process.kill(p1, 'SIGKILL');
    await until('worker-1 restarted', () => first.pids().length === 2 && first.pids()[1] !== p1 && lines.filter((l) => /worker-1 answers on its socket/.test(l)).length === 2);
    all.add(first.pids()[1]!);
    assert.deepEqual(lost, [1]);
    assert.ok(lines.some((l) => /worker-1 killed by SIGKILL: the connections it carried were reset; restarting it/.test(l)));
    assert.ok(alive(p0), 'the other worker runs on');

    // s2cs dies without stopping its workers; a new one over the same state dir adopts them.
    first.detach();
    second = new Supervisor(settings);
    await second.start();
    assert.deepEqual(second.pids(), first.pids(), 'the running workers were adopted, none started');
    assert.ok(lines.some((l) => /worker-0 \(pid \d+\) is still running from a previous s2cs: adopting it/.test(l)));

    await second.stop();
    for (const p of all) assert.equal(alive(p), false, `worker pid ${p} is gone`);
    assert.equal(pgrep(join(dir, 'agents')), '', 'no process of this state dir is left');
  } finally {
    for (const p of all) if (alive(p)) process.kill(-p, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
