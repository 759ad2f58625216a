// Listeners shared by workers over real agent processes (two `s2ds start`, as s2cs's
// workers are): a one-listener stream taken from a spare is joined by the other agent
// (AssignSpares shared, then StartListeners join_ports), its connections reach both; a
// second pool over the same agents (a restarted s2cs) takes it back from both, and its
// release closes the port on both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { AgentPool } from '../../src/s2ds/pool.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { silentLogger } from '../../src/log.js';
import { startProducer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { reusePortNative } from '../../src/transport/socket-options.js';
import { startAgentProcess } from '../support/agent.js';
import { until } from '../support/until.js';

const skip = reusePortNative() ? false : 'the native addon with SO_REUSEPORT is not built';

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

test('a spare made a shared listener, joined by the other agent; taken back by a new pool from both; released on both', { skip }, async (t) => {
  const agents = [await startAgentProcess({ ports: 4 }), await startAgentProcess({ ports: 4 })];
  const bytes = 64 * 1024;
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes, seed: 4 });
  const pools: AgentPool[] = [];
  t.after(async () => {
    for (const p of pools) await p.close().catch(() => undefined);
    await Promise.all(agents.map((a) => a.close()));
    await producer.close();
  });
  const handles = agents.map((a, i) => new RemoteAgent({ address: a.address, name: `worker-${i}`, pollIntervalMs: 200, logger: silentLogger }));
  const pool = new AgentPool(handles, { logger: silentLogger, spares: 2 });
  pools.push(pool);
  pool.shareListeners(handles);
  await until('both agents hold spares', 15_000, async () => (handles.every((h) => pool.sparesOn(h).length >= 1) ? true : undefined));
  const spares = handles.flatMap((h) => pool.sparesOn(h).map((a) => a.port));

  const [listener] = await pool.startListeners('s', 1);
  assert.ok(spares.includes(listener!.port), `the listener was a spare: ${listener!.port} of ${spares.join(', ')}`);
  await pool.setRecord('s', new TextEncoder().encode('record'));
  await pool.setTargets('s', producer.addresses);
  await pool.joined('s');
  assert.deepEqual(pool.sharesOf('s')!.map((s) => [s.indices, s.joined === true]), [[[0], false], [[0], true]], 'owned from a spare, joined by the other');
  const got = await consume({ connect: Array.from({ length: 24 }, () => listener!), bytes, seed: 4 });
  assert.equal(got.bytes, 24 * bytes);
  const each = await until('both agents report their connections', 10_000, async () => {
    const n = handles.map((h) => h.stats('s')?.acceptedConnections ?? 0);
    return n[0]! + n[1]! === 24 ? n : undefined;
  });
  t.diagnostic(`accepted by worker-0 / worker-1: ${each.join(' / ')}`);
  assert.ok(each.every((n) => n > 0), `both agents took connections: ${each.join(' / ')}`);

  // A restarted s2cs: a new pool over the same agents takes the stream back from both.
  const again = agents.map((a, i) => new RemoteAgent({ address: a.address, name: `worker-${i}`, pollIntervalMs: 200, logger: silentLogger }));
  const second = new AgentPool(again, { logger: silentLogger });
  pools.push(second);
  await until('the agents answer the new pool', 10_000, async () => (again.every((h) => h.up()) ? true : undefined));
  const adopted = await second.adoptAll();
  const s = adopted.streams.find((x) => x.uid === 's');
  assert.ok(s, 'taken back');
  assert.equal(s.complete, true);
  assert.deepEqual(s.listeners, [listener]);
  assert.equal(s.shares.length, 2, 'from both agents');
  assert.equal(new TextDecoder().decode(s.record), 'record', "the joiner's and the owner's record");
  assert.equal(s.stats.listeners, 1, 'one listener, counted once');
  assert.equal(s.stats.acceptedConnections, 24, 'the counters summed');

  await second.release('s');
  assert.equal(await bindable(listener!.port), true, 'released on both: the port is free');
});
