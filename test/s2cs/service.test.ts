// Every rpc of scistream.Control over real gRPC, including each bad input.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { RemoteError } from '../../src/protocol/client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { canConnect } from '../support/sockets.js';
import { captureLogger } from '../auth/capture.js';

async function rejects(p: Promise<unknown>, code: status, mentions: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RemoteError, `expected a RemoteError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${status[code]}, got ${err.status}: ${err.details}`);
    assert.match(err.details, mentions);
    return true;
  });
}

function reserved(gw: TestGateway): number {
  return gw.server.dataServer.ports().reserved;
}


describe('s2cs rpcs', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ maxConn: 8, helloTimeoutMs: 1500 }, 10);
  });
  after(() => gw.close());

  test('req CONS returns num_conn listeners at once on the listener ip', async () => {
    const uid = randomUUID();
    const r = await gw.client.req({ uid, role: 'CONS', num_conn: 3, rate: 100 });
    assert.equal(r.listeners.length, 3);
    for (const l of r.listeners) {
      assert.match(l, /^127\.0\.0\.1:\d+$/);
      assert.ok(await canConnect(l), `${l} accepts connections`);
    }
    assert.deepEqual(r.prod_listeners, []);
    const st = await gw.client.status({ uid });
    assert.equal(st.streams[0]!.rate, 100);
    await gw.client.release({ uid });
    assert.equal(reserved(gw), 0);
    for (const l of r.listeners) assert.equal(await canConnect(l), false, `${l} closed after release`);
  });

  test('req PROD waits for Hello sent after it', async () => {
    const uid = randomUUID();
    const pending = gw.client.req({ uid, role: 'PROD', num_conn: 2, rate: 0 });
    await new Promise((r) => setTimeout(r, 100));
    const h = await gw.client.hello({ uid, role: 'PROD', prod_listeners: ['127.0.0.1:7000', '127.0.0.1:7001'] });
    assert.match(h.message, /Hello/);
    const r = await pending;
    assert.equal(r.listeners.length, 2);
    assert.deepEqual(r.prod_listeners, ['127.0.0.1:7000', '127.0.0.1:7001']);
    await gw.client.release({ uid });
  });

  test('req PROD answers at once when Hello came first', async () => {
    const uid = randomUUID();
    await gw.client.hello({ uid, role: 'PROD', prod_listeners: ['127.0.0.1:7000'] });
    const r = await gw.client.req({ uid, role: 'PROD', num_conn: 1, rate: 0 });
    assert.deepEqual(r.prod_listeners, ['127.0.0.1:7000']);
    await gw.client.release({ uid });
  });

  test('a Hello without role (legacy controller) counts as PROD', async () => {
    const uid = randomUUID();
    await gw.client.hello({ uid, prod_listeners: ['127.0.0.1:7000'] });
    const r = await gw.client.req({ uid, role: 'PROD', num_conn: 1, rate: 0 });
    assert.deepEqual(r.prod_listeners, ['127.0.0.1:7000']);
    await gw.client.release({ uid });
  });

  test('no Hello: DEADLINE_EXCEEDED and everything reserved is released', async () => {
    const uid = randomUUID();
    await rejects(gw.client.req({ uid, role: 'PROD', num_conn: 4, rate: 0 }), status.DEADLINE_EXCEEDED, /Hello/);
    assert.equal(reserved(gw), 0);
    assert.equal((await gw.client.status({ uid })).streams.length, 0);
  });

  test('CONS Hello returns the listeners for the consumer, also when it comes before req', async () => {
    const uid = randomUUID();
    const hello = gw.client.hello({ uid, role: 'CONS', prod_listeners: [] });
    await new Promise((r) => setTimeout(r, 100));
    const r = await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0 });
    assert.deepEqual((await hello).listeners, r.listeners);
    assert.deepEqual((await gw.client.hello({ uid, role: 'CONS', prod_listeners: [] })).listeners, r.listeners);
    await gw.client.release({ uid });
  });

  test("a Hello with role PROD on a CONS stream is its consumer Hello (the reference's outbound-request); a CONS Hello on a PROD stream is refused", async () => {
    const uid = randomUUID();
    const prodUid = randomUUID();
    try {
      const r = await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0 });
      const h = await gw.client.hello({ uid, role: 'PROD', prod_listeners: ['localhost:5074', 'localhost:5075'] });
      assert.deepEqual(h.listeners, r.listeners, 'answered as a consumer Hello');
      const st = (await gw.client.status({ uid })).streams[0]!;
      assert.deepEqual([st.role, st.prod_listeners], ['CONS', []], 'its listeners are ignored');

      const pending = gw.client.req({ uid: prodUid, role: 'PROD', num_conn: 1, rate: 0 });
      await new Promise((resolve) => setTimeout(resolve, 100));
      await rejects(gw.client.hello({ uid: prodUid, role: 'CONS', prod_listeners: [] }), status.FAILED_PRECONDITION, /Hello with role CONS does not match stream .*requested as PROD/);
      await gw.client.hello({ uid: prodUid, role: 'PROD', prod_listeners: ['127.0.0.1:7000'] });
      await pending;
    } finally {
      await Promise.all([gw.client.release({ uid }), gw.client.release({ uid: prodUid })]);
    }
  });

  test('update answers as the reference: the listeners, and in prod_listeners the targets round-robin to num_conn', async () => {
    const uid = randomUUID();
    const prodUid = randomUUID();
    try {
      const c = await gw.client.req({ uid, role: 'CONS', num_conn: 3, rate: 0 });
      const u = await gw.client.update({ uid, remote_listeners: ['127.0.0.1:6000', '127.0.0.1:6001'], role: 'CONS' });
      assert.deepEqual(u.listeners, c.listeners);
      assert.deepEqual(u.prod_listeners, ['127.0.0.1:6000', '127.0.0.1:6001', '127.0.0.1:6000']);

      await gw.client.hello({ uid: prodUid, role: 'PROD', prod_listeners: ['127.0.0.1:7000'] });
      const p = await gw.client.req({ uid: prodUid, role: 'PROD', num_conn: 2, rate: 0 });
      const pu = await gw.client.update({ uid: prodUid, remote_listeners: p.prod_listeners, role: 'PROD' });
      assert.deepEqual(pu.listeners, p.listeners);
      assert.deepEqual(pu.prod_listeners, ['127.0.0.1:7000', '127.0.0.1:7000']);
    } finally {
      await Promise.all([gw.client.release({ uid }), gw.client.release({ uid: prodUid })]);
    }
  });

  test('retried req with identical fields returns the same listeners; different fields: ALREADY_EXISTS', async () => {
    const uid = randomUUID();
    const [a, b] = await Promise.all([
      gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 5 }),
      gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 5 }),
    ]);
    assert.deepEqual(a.listeners, b.listeners);
    const c = await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 5 });
    assert.deepEqual(c.listeners, a.listeners);
    assert.equal(reserved(gw), 2);
    await rejects(gw.client.req({ uid, role: 'CONS', num_conn: 3, rate: 5 }), status.ALREADY_EXISTS, /num_conn=2/);
    await rejects(gw.client.req({ uid, role: 'PROD', num_conn: 2, rate: 5 }), status.ALREADY_EXISTS, /uid/);
    assert.equal(reserved(gw), 2);
    await gw.client.release({ uid });
  });

  test('update: same targets twice changes nothing; unknown uid NOT_FOUND; wrong role FAILED_PRECONDITION', async () => {
    const uid = randomUUID();
    await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0 });
    const targets = ['127.0.0.1:6000'];
    const u1 = await gw.client.update({ uid, remote_listeners: targets, role: 'CONS' });
    const u2 = await gw.client.update({ uid, remote_listeners: targets, role: 'CONS' });
    assert.deepEqual(u1, u2);
    assert.deepEqual((await gw.client.status({ uid })).streams[0]!.targets, targets);
    await rejects(gw.client.update({ uid: randomUUID(), remote_listeners: targets, role: 'CONS' }), status.NOT_FOUND, /no stream/);
    await rejects(gw.client.update({ uid, remote_listeners: targets, role: 'PROD' }), status.FAILED_PRECONDITION, /requested as CONS/);
    await gw.client.release({ uid });
  });

  test('release is idempotent and unknown uids succeed', async () => {
    const uid = randomUUID();
    await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    await gw.client.release({ uid });
    await gw.client.release({ uid });
    await gw.client.release({ uid: randomUUID() });
    assert.equal(reserved(gw), 0);
  });

  test('release while req PROD waits for Hello: the req fails ABORTED and ports return', async () => {
    const uid = randomUUID();
    const outcome = rejects(gw.client.req({ uid, role: 'PROD', num_conn: 2, rate: 0 }), status.ABORTED, /released/);
    await new Promise((r) => setTimeout(r, 150));
    await gw.client.release({ uid });
    await outcome;
    assert.equal(reserved(gw), 0);
  });

  test('not enough free ports: RESOURCE_EXHAUSTED with nothing reserved', async () => {
    const a = randomUUID();
    await gw.client.req({ uid: a, role: 'CONS', num_conn: 8, rate: 0 });
    await rejects(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 3, rate: 0 }), status.RESOURCE_EXHAUSTED, /free ports/);
    assert.equal(reserved(gw), 8);
    await gw.client.release({ uid: a });
    assert.equal(reserved(gw), 0);
  });

  const bad: [string, () => Promise<unknown>, RegExp][] = [
    ['empty uid', () => gw.client.req({ uid: '', role: 'CONS', num_conn: 1, rate: 0 }), /uid/],
    ['uid with a slash', () => gw.client.req({ uid: 'a/b', role: 'CONS', num_conn: 1, rate: 0 }), /uid/],
    ['uid of 129 characters', () => gw.client.req({ uid: 'x'.repeat(129), role: 'CONS', num_conn: 1, rate: 0 }), /uid/],
    ['role not PROD/CONS', () => gw.client.req({ uid: 'u1', role: 'prod', num_conn: 1, rate: 0 }), /role/],
    ['num_conn 0', () => gw.client.req({ uid: 'u1', role: 'CONS', num_conn: 0, rate: 0 }), /num_conn/],
    ['num_conn above --max-conn', () => gw.client.req({ uid: 'u1', role: 'CONS', num_conn: 9, rate: 0 }), /num_conn/],
    ['negative rate', () => gw.client.req({ uid: 'u1', role: 'CONS', num_conn: 1, rate: -1 }), /rate/],
    ['update with a bad address', () => gw.client.update({ uid: 'u1', remote_listeners: ['127.0.0.1:1', 'nohost'], role: 'CONS' }), /remote_listeners\[1\]/],
    ['update with port 70000', () => gw.client.update({ uid: 'u1', remote_listeners: ['127.0.0.1:70000'], role: 'CONS' }), /remote_listeners\[0\]/],
    ['update with no targets', () => gw.client.update({ uid: 'u1', remote_listeners: [], role: 'CONS' }), /remote_listeners/],
    ['update with a bad role', () => gw.client.update({ uid: 'u1', remote_listeners: ['127.0.0.1:1'], role: 'X' }), /role/],
    ['hello with a bad address', () => gw.client.hello({ uid: 'u1', prod_listeners: ['1.2.3.4'], role: 'PROD' }), /prod_listeners\[0\]/],
    ['PROD hello without listeners', () => gw.client.hello({ uid: 'u1', prod_listeners: [], role: 'PROD' }), /prod_listeners/],
    ['release with a bad uid', () => gw.client.release({ uid: 'a b' }), /uid/],
  ];
  for (const [name, call, mentions] of bad) {
    test(`INVALID_ARGUMENT: ${name}, nothing reserved, server still serving`, async () => {
      await rejects(call(), status.INVALID_ARGUMENT, mentions);
      assert.equal(reserved(gw), 0);
      assert.equal(gw.server.table.size, 0);
      const uid = randomUUID();
      await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
      await gw.client.release({ uid });
    });
  }
});

test('a Hello with role PROD held before its CONS req: the req is answered at once and the held Hello is let go', async () => {
  // One held producer Hello per address: the next Hello is held only if the first was let go.
  const { logger, lines } = captureLogger();
  const gw = await startGateway({ maxPendingHellosPerPeer: 1, helloTimeoutMs: 5000, logger }, 4);
  try {
    const uid = randomUUID();
    const h = await gw.client.hello({ uid, role: 'PROD', prod_listeners: ['localhost:5074'] });
    assert.match(h.message, /waiting for the request/);
    const r = await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    assert.equal(r.listeners.length, 1);
    assert.deepEqual(r.prod_listeners, []);
    assert.ok(lines.some((l) => /taken as the CONS stream's consumer Hello/.test(l)), 'logged at debug');
    const other = await gw.client.hello({ uid: randomUUID(), role: 'PROD', prod_listeners: ['127.0.0.1:7000'] });
    assert.match(other.message, /waiting for the request/, 'the held Hello no longer counts against this address');
    await gw.client.release({ uid });
  } finally {
    await gw.close();
  }
});
