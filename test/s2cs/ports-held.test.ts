// Ports of --port-range held by other programs (here: net.Servers of the test):
// warned about at start-up, left out of status's free_ports, and named as the cause
// when a req cannot get its ports. Real sockets, real gRPC.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { RemoteError } from '../../src/protocol/client.js';
import { readFileSync } from 'node:fs';
import { captureLogger } from '../auth/capture.js';
import { startGateway } from '../support/gateway.js';

/**
 * Free consecutive ports below the kernel's ephemeral range, where no socket of a
 * test running alongside lands by listening on port 0 (the counts below are exact).
 */
async function rangeBelowEphemeral(size: number): Promise<{ first: number; last: number }> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // keep Linux's default
  }
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 10_000 + Math.floor(Math.random() * Math.max(1, low - 10_000 - size));
    const probes = await Promise.all(Array.from({ length: size }, (_, i) => hold('0.0.0.0', first + i).catch(() => undefined)));
    await Promise.all(probes.map((s) => s && new Promise((resolve) => s.close(resolve))));
    if (probes.every(Boolean)) return { first, last: first + size - 1 };
  }
  throw new Error(`no ${size} consecutive free ports below ${low}`);
}

async function hold(host: string, port: number): Promise<Server> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen({ host, port, exclusive: true }, resolve);
  });
  return s;
}

test('ports held by other programs: a start-up warning, not counted free, and named when a req cannot get its ports', async (t) => {
  if (!existsSync('/proc/net/tcp')) return t.skip('no /proc/net/tcp here: other programs are found only when a stream tries their ports');
  const range = await rangeBelowEphemeral(6);
  // Two on the gateway's own address, one on the wildcard (which also takes 127.0.0.1).
  const held = await Promise.all([hold('127.0.0.1', range.first), hold('127.0.0.1', range.first + 2), hold('0.0.0.0', range.first + 4)]);
  const { logger, lines } = captureLogger();
  const gw = await startGateway({ portRange: range, maxPortsPerUser: 6, logger });
  try {
    const warning = lines.filter((l) => l.includes('in use by other programs'));
    assert.equal(warning.length, 1, 'one start-up warning');
    assert.match(warning[0]!, new RegExp(`3 of the 6 ports in --port-range ${range.first}-${range.last} are in use by other programs \\(${range.first}, ${range.first + 2}, ${range.first + 4}\\)`));
    assert.match(warning[0]!, /stop those programs or choose another --port-range/);

    let st = await gw.client.status({ uid: '' });
    assert.equal(st.free_ports, 3, 'free_ports leaves out the held ports');
    assert.equal(st.reserved_ports, 0);

    const uid = randomUUID();
    const r = await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0 });
    assert.equal(r.listeners.length, 2);
    const taken = new Set([range.first, range.first + 2, range.first + 4].map(String));
    for (const l of r.listeners) assert.ok(!taken.has(l.split(':')[1]!), `${l} is not a held port`);
    // /proc is read through a one-second cache: wait it out, so that the next reading
    // also sees the stream's own listeners (which must not count as other programs').
    await new Promise((resolve) => setTimeout(resolve, 1100));
    st = await gw.client.status({ uid: '' });
    assert.equal(st.free_ports, 1);
    assert.equal(st.reserved_ports, 2);

    await assert.rejects(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 2, rate: 0 }), (err: unknown) => {
      assert.ok(err instanceof RemoteError, String(err));
      assert.equal(err.status, 'RESOURCE_EXHAUSTED', err.details);
      assert.match(err.details, /streams on this gateway hold 2 of its 6 ports, other programs listen on 3 and 1 is free/);
      assert.match(err.details, new RegExp(`stop the programs listening on ${range.first}, ${range.first + 2}, ${range.first + 4}, or start s2cs with a --port-range they do not use`));
      return true;
    });
    await gw.client.release({ uid });
    assert.equal(gw.server.dataServer.ports().reserved, 0, 'the refused req left nothing reserved');
  } finally {
    await gw.close();
    await Promise.all(held.map((s) => new Promise((resolve) => s.close(resolve))));
  }
});

test('a port range nobody else uses: no warning, every port free', async () => {
  const { logger, lines } = captureLogger();
  const gw = await startGateway({ logger }, 4);
  try {
    assert.ok(!lines.some((l) => l.includes('in use by other programs')));
    assert.equal((await gw.client.status({ uid: '' })).free_ports, 4);
  } finally {
    await gw.close();
  }
});
