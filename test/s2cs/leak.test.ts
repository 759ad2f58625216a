// 100 streams created, used and released leave no port reserved and no socket open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { randomUUID } from 'node:crypto';
import { startGateway } from '../support/gateway.js';
import { startProducer } from '../../src/app/produce.js';

const openFds = () => readdirSync('/proc/self/fd').length;

async function settle(baseline: number): Promise<number> {
  // Closed sockets leave the fd table on the next turns of the event loop.
  for (let i = 0; i < 100 && openFds() > baseline; i++) await new Promise((r) => setTimeout(r, 20));
  return openFds();
}

test('100 requests created and released leave no port reserved and no socket open', async () => {
  const gw = await startGateway({ maxConn: 8 }, 32);
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 1024, seed: 7 });
  // Warm up gRPC's channel so that its sockets are part of the baseline.
  await gw.client.status({ uid: '' });
  const baseline = openFds();
  try {
    for (let i = 0; i < 100; i++) {
      const uid = randomUUID();
      if (i % 2 === 0) {
        await gw.client.hello({ uid, role: 'PROD', prod_listeners: producer.addresses.map((a) => `${a.host}:${a.port}`) });
        const r = await gw.client.req({ uid, role: 'PROD', num_conn: 3, rate: 0 });
        await gw.client.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
        // A live connection through the stream at release time.
        const [host, port] = r.listeners[0]!.split(':');
        const s = connect({ host: host!, port: Number(port) });
        await new Promise<void>((resolve) => s.once('data', () => resolve()));
        await gw.client.release({ uid });
        s.destroy();
      } else {
        await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0 });
        await gw.client.release({ uid });
      }
    }
    const st = await gw.client.status({ uid: '' });
    assert.equal(st.streams.length, 0);
    assert.equal(st.reserved_ports, 0);
    assert.equal(gw.server.dataServer.ports().reserved, 0);
    await producer.close();
    assert.equal(await settle(baseline - 1), baseline - 1, 'file descriptors back to the baseline (less the producer listener)');
  } finally {
    await producer.close();
    await gw.close();
  }
});
