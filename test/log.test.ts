// Log format: one JSON object per line when stderr is not a terminal (a supervisor, a
// file, a pipe), readable on a terminal; --log-format forces either.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN_DIR, freePortRange, spawnCli, watchChild } from '../src/demo/procs.js';
import { resolveLogFormat } from '../src/log.js';
import { alive } from './support/process.js';


test('resolveLogFormat: json forced by --log-json or --log-format json, pretty forced, auto follows the terminal', () => {
  assert.equal(resolveLogFormat({}, true), 'pretty');
  assert.equal(resolveLogFormat({}, false), 'json');
  assert.equal(resolveLogFormat({ format: 'auto' }, false), 'json');
  assert.equal(resolveLogFormat({ json: true }, true), 'json');
  assert.equal(resolveLogFormat({ format: 'json' }, true), 'json');
  assert.equal(resolveLogFormat({ format: 'pretty' }, false), 'pretty');
});

test('s2cs with stderr on a pipe: every line is one JSON object, its workers\' lines included; SIGTERM exits 0 and stops the workers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'scistream-log-'));
  const range = await freePortRange(4);
  const s2cs = spawnCli('s2cs', ['start', '--insecure', '--port', '0', '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--workers', '1', '--state-dir', dir]);
  try {
    await s2cs.waitFor(/s2cs ready/, { stream: 'stderr', timeoutMs: 30_000 });
    // The worker's own lines reach s2cs's log through its log file (copied every 250 ms).
    await s2cs.waitFor(/"name":"s2ds"/, { stream: 'stderr', timeoutMs: 10_000 });
    const workerPid = Number((/"pid":(\d+),"ports"/.exec(s2cs.stderr()) ?? [])[1]);
    assert.ok(workerPid > 0 && alive(workerPid), s2cs.describe());
    assert.equal(await s2cs.stop('SIGTERM'), 0, s2cs.describe());
    assert.equal(alive(workerPid), false, 'the worker is stopped with s2cs');
    const lines = s2cs.stderr().split('\n').filter((l) => l.length > 0);
    assert.ok(lines.length >= 3, s2cs.describe());
    const names = new Set<string>();
    for (const line of lines) {
      let entry: { level?: unknown; msg?: unknown; name?: unknown; time?: unknown };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        assert.fail(`not a JSON line: ${line}\n${s2cs.describe()}`);
      }
      assert.equal(typeof entry.level, 'number', line);
      assert.equal(typeof entry.msg, 'string', line);
      assert.equal(typeof entry.time, 'number', line);
      names.add(String(entry.name));
    }
    assert.deepEqual([...names].sort(), ['s2cs', 's2ds']);
    assert.ok(lines.some((l) => (JSON.parse(l) as { msg: string }).msg.startsWith('s2cs ready')));
  } finally {
    await s2cs.stop('SIGKILL', 0);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--log-format pretty on a pipe: readable lines, no JSON', async () => {
  const range = await freePortRange(2);
  const s2cs = spawnCli('s2cs', ['start', '--insecure', '--port', '0', '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--log-format', 'pretty']);
  try {
    await s2cs.waitFor(/INFO.*s2cs ready/, { stream: 'stderr' });
    assert.equal(await s2cs.stop('SIGTERM'), 0, s2cs.describe());
    assert.doesNotMatch(s2cs.stderr(), /^\{/m);
  } finally {
    await s2cs.stop('SIGKILL', 0);
  }
});

test('on a terminal (a pty from script(1)): readable lines by default; --log-json still forces JSON', async () => {
  const range = await freePortRange(2);
  const dir = mkdtempSync(join(tmpdir(), 'scistream-log-'));
  const run = (extra: string) => {
    // script gives the command a pseudo-terminal; its output comes back on our pipe.
    const command = `exec ${process.execPath} ${BIN_DIR}s2ds.js start --listen unix:${join(dir, `agent-${extra ? 'j' : 'p'}.sock`)} --listener-ip 127.0.0.1 --port-range ${range.first}-${range.last} ${extra}`;
    const child = spawn('script', ['-qfec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    return watchChild('s2ds under script', command, child);
  };
  for (const [extra, expect] of [['', /INFO.*s2ds ready/], ['--log-json', /\{"level":30,.*"msg":"s2ds ready/]] as const) {
    const p = run(extra);
    try {
      await p.waitFor(expect, { timeoutMs: 20_000 });
      if (extra === '') assert.doesNotMatch(p.stdout(), /"level":/);
    } finally {
      // s2ds runs in the pty's own session (script calls setsid), so neither script's process
      // group nor the terminal's hangup (s2ds ignores SIGHUP) ends it: it is stopped by pid.
      for (const pid of childrenOf(p.pid!)) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // gone
        }
      }
      await p.stop('SIGTERM', 5000);
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

/** The direct children of a process (Linux /proc). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
