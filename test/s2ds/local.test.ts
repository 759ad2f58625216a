// The in-process data server with real sockets: early connections, wrap-round, release.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { LocalDataServer } from '../../src/s2ds/index.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange } from '../../src/demo/procs.js';
import { startProducer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';

async function dataServer(waitLimit = 4, waitTimeoutMs = 10_000): Promise<LocalDataServer> {
  return new LocalDataServer({
    bindHost: '127.0.0.1',
    portRange: await freePortRange(8),
    bufferSize: 256 * 1024,
    waitLimit,
    waitTimeoutMs,
    logger: silentLogger,
  });
}

function closedBy(s: Socket): Promise<void> {
  return new Promise((resolve) => s.once('close', () => resolve()));
}

test('a connection that arrives before UpdateTargets waits, then streams', async () => {
  const ds = await dataServer();
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 2 * 1024 * 1024, seed: 3 });
  try {
    const [listener] = await ds.startListeners('early', 1);
    const result = consume({ connect: [listener!], bytes: 2 * 1024 * 1024, seed: 3 });
    // The consumer is connected and waiting: the stream has no targets yet.
    for (let i = 0; i < 200 && ds.stats('early')!.waitingConnections === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(ds.stats('early')!.waitingConnections, 1);
    await ds.setTargets('early', producer.addresses);
    const r = await result;
    assert.equal(r.bytes, 2 * 1024 * 1024);
    assert.equal(ds.stats('early')!.bytesFromTarget, 2 * 1024 * 1024);
  } finally {
    await producer.close();
    await ds.close();
  }
});

test('waiting connections are bounded in number and in time', async () => {
  const ds = await dataServer(2, 300);
  try {
    const [l] = await ds.startListeners('bounded', 1);
    const sockets = [0, 1, 2].map(() => connect(l!.port, l!.host).on('error', () => {}));
    const closes = sockets.map(closedBy);
    // The third is over the limit and closed at once; the first two after the wait time.
    await Promise.all(closes);
    assert.equal(ds.stats('bounded')!.waitingConnections, 0);
    assert.equal(ds.stats('bounded')!.acceptedConnections, 3);
  } finally {
    await ds.close();
  }
});

test('listener i forwards to target i mod the number of targets', async () => {
  const ds = await dataServer();
  const a = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 1000, seed: 10 });
  const b = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 1000, seed: 20 });
  try {
    const ls = await ds.startListeners('wrap', 3);
    await ds.setTargets('wrap', [...a.addresses, ...b.addresses]);
    // Each listener must deliver its target's seed; a crossed map fails verification.
    await consume({ connect: [ls[0]!, ls[2]!], bytes: 1000, seed: 10 });
    await consume({ connect: [ls[1]!], bytes: 1000, seed: 20 });
  } finally {
    await a.close();
    await b.close();
    await ds.close();
  }
});

test('release closes live connections and listeners and returns the ports', async () => {
  const ds = await dataServer();
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 1024 ** 4, seed: 1 });
  try {
    const [l] = await ds.startListeners('live', 1);
    await ds.setTargets('live', producer.addresses);
    const s = connect(l!.port, l!.host).on('error', () => {});
    await new Promise<void>((resolve) => s.once('data', () => resolve()));
    const closed = closedBy(s);
    await ds.release('live');
    await closed;
    assert.equal(ds.ports().reserved, 0);
    assert.equal(ds.stats('live'), undefined);
    const refused = await new Promise<boolean>((resolve) => {
      connect(l!.port, l!.host).on('error', () => resolve(true)).on('connect', () => resolve(false));
    });
    assert.ok(refused, 'the listener is closed');
  } finally {
    await producer.close();
    await ds.close();
  }
});

test('a port of the range held by another program is skipped', async () => {
  const range = await freePortRange(3);
  const { createServer } = await import('node:net');
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: range.first }, resolve));
  const ds = new LocalDataServer({
    bindHost: '127.0.0.1',
    portRange: range,
    bufferSize: 65536,
    waitLimit: 1,
    waitTimeoutMs: 1000,
    logger: silentLogger,
  });
  try {
    const ls = await ds.startListeners('skip', 2);
    assert.deepEqual(ls.map((l) => l.port), [range.first + 1, range.first + 2]);
    // One port is left but it is taken: nothing is reserved.
    await assert.rejects(ds.startListeners('more', 1), /not enough free ports/);
    assert.equal(ds.ports().reserved, 2);
  } finally {
    blocker.close();
    await ds.close();
  }
});
