// Chosen listener ports (Request.listener_ports): granted when free, else
// RESOURCE_EXHAUSTED naming the port held, INVALID_ARGUMENT outside the range;
// never another port. In process, and through worker processes holding spares
// (a chosen port that is a spare is taken; a port is routed to the worker whose
// slice of --port-range holds it). Real sockets, real gRPC, real agent processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { RemoteError } from '../../src/protocol/client.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import type { AgentPool } from '../../src/s2ds/pool.js';
import { freePortRange } from '../../src/demo/procs.js';
import { startGateway } from '../support/gateway.js';
import { echoServer, exchange } from '../support/sockets.js';
import { tempDir } from '../support/agent.js';
import { until } from '../support/until.js';

function rejectsWith(p: Promise<unknown>, status: string, details: RegExp): Promise<void> {
  return assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RemoteError, String(err));
    assert.equal(err.status, status, err.details);
    assert.match(err.details, details);
    return true;
  });
}

const portOf = (l: string) => Number(l.split(':').pop());

async function hold(port: number): Promise<Server> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port, exclusive: true }, resolve);
  });
  return s;
}

test('chosen ports: granted exactly, retry-safe; held, taken by another program, outside the range or miscounted: refused naming the port', async () => {
  const range = await freePortRange(8);
  const echo = await echoServer();
  const gw = await startGateway({ portRange: range, maxPortsPerUser: 8 });
  let other: Server | undefined;
  try {
    const uid = randomUUID();
    const want = [range.first + 5, range.first + 2];
    const r = await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0, listener_ports: want });
    assert.deepEqual(r.listeners.map(portOf), want, 'the listeners are on the ports asked for, in that order');
    // A retry with the same fields: the same answer.
    assert.deepEqual((await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0, listener_ports: want })).listeners, r.listeners);
    await rejectsWith(gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0, listener_ports: [range.first + 5, range.first + 3] }), 'ALREADY_EXISTS', /listener_ports=\d+,\d+; a retry must repeat the same fields/);
    await gw.client.update({ uid, role: 'CONS', remote_listeners: [`127.0.0.1:${echo.address.port}`] });
    assert.deepEqual(await exchange(r.listeners[0]!, 'five'), { data: 'five' });

    await rejectsWith(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0, listener_ports: [range.first + 2] }), 'RESOURCE_EXHAUSTED', new RegExp(`listener port\\(s\\) ${range.first + 2} are held by another stream`));
    await rejectsWith(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0, listener_ports: [range.last + 1] }), 'INVALID_ARGUMENT', new RegExp(`listener port ${range.last + 1} of stream .* is in no data-server agent's port range here \\(${range.first}-${range.last}\\)`));
    await rejectsWith(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 2, rate: 0, listener_ports: [range.first] }), 'INVALID_ARGUMENT', /listener_ports names 1 port\(s\) but num_conn is 2/);
    await rejectsWith(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 2, rate: 0, listener_ports: [range.first, range.first] }), 'INVALID_ARGUMENT', /names port \d+ twice/);
    await rejectsWith(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0, listener_ports: [0] }), 'INVALID_ARGUMENT', /listener_ports\[0\] 0 is not a port number/);
    other = await hold(range.first + 7);
    // Both or none: the free one is not kept when the other is taken by another program.
    await rejectsWith(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 2, rate: 0, listener_ports: [range.first + 6, range.first + 7] }), 'RESOURCE_EXHAUSTED', new RegExp(`listener port ${range.first + 7} is in use by another program`));
    assert.equal(gw.server.dataServer.ports().reserved, 2, 'only the first stream holds ports');
    const next = await gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0, listener_ports: [range.first + 6] });
    assert.deepEqual(next.listeners.map(portOf), [range.first + 6], 'the port the failed request had tried is free again');

    await gw.client.release({ uid });
    const again = await gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0, listener_ports: [range.first + 2] });
    assert.deepEqual(again.listeners.map(portOf), [range.first + 2], 'a released port can be chosen again');
  } finally {
    other?.close();
    await gw.close();
    echo.server.close();
  }
});

test('chosen ports through worker processes with spares: routed to the worker owning each port, a spare on it taken', async () => {
  const dir = tempDir('scistream-chosen-ports-');
  const range = await freePortRange(12);
  const echo = await echoServer();
  const gw = await startGateway({
    portRange: range,
    maxPortsPerUser: 12,
    workers: { count: 2, dir: join(dir, 'agents') },
    connectAgent: (address, name) => new RemoteAgent({ address, name, pollIntervalMs: 250 }),
  });
  try {
    // Two workers of 6 ports each; each opens its spares (2) from the start of its slice.
    const pool = gw.server.dataServer as AgentPool;
    const spares = () => pool.handles().flatMap((a) => pool.sparesOn(a).map((s) => s.port));
    await until('the workers hold their spares', 15_000, async () => (spares().length === 4 ? true : undefined));
    const uid = randomUUID();
    // One spare port of each worker's slice.
    const want = [spares().find((p) => p >= range.first + 6)!, spares().find((p) => p < range.first + 6)!];
    assert.ok(want.every((p) => p !== undefined), `a spare in each slice: ${spares().join(', ')}`);
    const r = await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0, listener_ports: want });
    assert.deepEqual(r.listeners.map(portOf), want);
    await gw.client.update({ uid, role: 'CONS', remote_listeners: [`127.0.0.1:${echo.address.port}`] });
    for (const l of r.listeners) assert.deepEqual(await exchange(l, `via ${l}`), { data: `via ${l}` }, 'each chosen listener listens and forwards (a spare would refuse)');
    assert.ok(!spares().some((p) => want.includes(p)), 'the pool no longer counts the taken ports as its spares');
    // The pool's spares did not keep the taken ports: later requests still get listeners that work.
    for (let i = 0; i < 3; i++) {
      const u = randomUUID();
      const s = await gw.client.req({ uid: u, role: 'CONS', num_conn: 2, rate: 0 });
      for (const l of s.listeners) assert.ok(!want.includes(portOf(l)), `${l} is not a port of the first stream`);
      await gw.client.update({ uid: u, role: 'CONS', remote_listeners: [`127.0.0.1:${echo.address.port}`] });
      for (const l of s.listeners) assert.deepEqual(await exchange(l, 'x'), { data: 'x' });
      await gw.client.release({ uid: u });
    }
    await rejectsWith(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0, listener_ports: [range.first + 6] }), 'RESOURCE_EXHAUSTED', new RegExp(`${want[0]} are held by another stream`));
    const retry = await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0, listener_ports: want });
    assert.deepEqual(retry.listeners, r.listeners);
    await gw.client.release({ uid });
    const again = await gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0, listener_ports: [want[0]!] });
    assert.deepEqual(again.listeners.map(portOf), [want[0]]);
    await rejectsWith(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0, listener_ports: [range.last + 1] }), 'INVALID_ARGUMENT', new RegExp(`${range.last + 1} of stream .* is in no data-server agent's port range here \\(${range.first}-${range.first + 5}, ${range.first + 6}-${range.last}\\)`));
  } finally {
    await gw.close();
    echo.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
