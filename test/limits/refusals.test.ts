// Refusal counts: a gateway's own, and those its data-server agents count in their own
// processes (a worker refusing data connections), added together in status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { rmSync } from 'node:fs';
import { Refusals } from '../../src/limits/refusals.js';
import { silentLogger } from '../../src/log.js';
import { ControlConnection } from '../../src/protocol/client.js';
import { freePort, freePortRange, spawnCli } from '../../src/demo/procs.js';
import { tempDir } from '../support/agent.js';
import { until } from '../support/until.js';

test('totals add the sources, keeping only known kinds and whole positive counts', () => {
  const r = new Refusals(silentLogger);
  r.count('wan-auth', 'x');
  r.count('wan-auth', 'x');
  r.addSource(() => [
    { kind: 'wan-auth', count: 3 },
    { kind: 'waiting-conns', count: 1 },
    { kind: '<script>', count: 5 },
    { kind: 'buffer-memory', count: -4 },
    { kind: 'buffer-memory', count: 1.5 },
  ]);
  r.addSource(() => [{ kind: 'waiting-conns', count: 2 }]);
  const totals = Object.fromEntries(r.totals().map((t) => [t.kind, t.count]));
  assert.deepEqual(totals, { 'wan-auth': 5, 'waiting-conns': 3 });
  r.close();
});

test("a worker process's refusals show in s2cs's status", async () => {
  const [port, range] = await Promise.all([freePort(), freePortRange(8)]);
  const dir = tempDir('scistream-refusals-');
  const s2cs = spawnCli('s2cs', ['start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--state-dir', dir, '--workers', '1', '--max-waiting-conns', '1']);
  const client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
  const sockets: ReturnType<typeof connect>[] = [];
  try {
    await s2cs.waitFor(/s2cs ready/, { timeoutMs: 20_000 });
    // A consumer-side stream: its listener holds connections until the map comes; one may wait.
    const r = await client.req({ uid: 'refused-in-worker', role: 'CONS', num_conn: 1, rate: 0 });
    const [host, p] = [r.listeners[0]!.slice(0, r.listeners[0]!.lastIndexOf(':')), Number(r.listeners[0]!.split(':').pop())];
    for (let i = 0; i < 3; i++) {
      const s = connect(p, host);
      s.on('error', () => {});
      sockets.push(s);
    }
    const counted = await until('the worker\'s refusals in status', 10_000, async () => {
      const st = await client.status({ uid: '' });
      const n = Number(st.refusals.find((x) => x.kind === 'waiting-conns')?.count ?? 0);
      return n >= 2 ? n : undefined;
    });
    assert.equal(counted, 2, 'two connections beyond the one that may wait');
    await client.release({ uid: 'refused-in-worker' });
  } finally {
    for (const s of sockets) s.destroy();
    client.close();
    assert.equal(await s2cs.stop('SIGTERM', 10_000), 0, s2cs.describe());
    rmSync(dir, { recursive: true, force: true });
  }
});
