// What one user or one address may hold on a gateway: ports per user (per
// address with --auth none), Hellos waiting for their request. Refusals are
// RESOURCE_EXHAUSTED with a message that says what to do, counted in status and
// logged at most once per interval.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { relayFrom } from '../support/sockets.js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { ControlConnection, RemoteError } from '../../src/protocol/client.js';
import { IntrospectionAuth } from '../../src/auth/introspect.js';
import { Refusals } from '../../src/limits/refusals.js';
import { LocalDataServer } from '../../src/s2ds/index.js';
import { StreamTable, type StreamTableOptions } from '../../src/s2cs/streams/index.js';
import { peerKey } from '../../src/s2cs/pending.js';
import { defaultMaxPortsPerUser } from '../../src/s2cs/server-settings.js';
import { parseAddress } from '../../src/protocol/address.js';
import { ScistreamError } from '../../src/protocol/errors.js';
import { freePortRange } from '../../src/demo/procs.js';
import { GW_CLIENT, SCOPE_A, startIdP, type TestIdP } from '../auth/idp.js';
import { captureLogger } from '../auth/capture.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

async function exhausted(p: Promise<unknown>, mentions: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RemoteError, `expected a RemoteError, got ${String(err)}`);
    assert.equal(err.code, grpcStatus.RESOURCE_EXHAUSTED, `expected RESOURCE_EXHAUSTED, got ${err.status}: ${err.details}`);
    assert.match(err.details, mentions);
    return true;
  });
}

function refusals(st: { refusals: { kind: string; count: string | number }[] }, kind: string): number {
  return Number(st.refusals.find((r) => r.kind === kind)?.count ?? 0);
}

describe('ports per user, with tokens (real OpenID Provider)', () => {
  let idp: TestIdP;
  let gw: TestGateway;
  const tokens: Record<string, string> = {};
  const as = (user: string) => new ControlConnection(gw.address, { insecure: true, deadlineMs: 10_000, token: tokens[user] });
  before(async () => {
    idp = await startIdP();
    const auth = new IntrospectionAuth({ introspectionUrl: idp.introspectionUrl, clientId: GW_CLIENT, clientSecret: idp.gwSecret, scope: SCOPE_A, cacheMaxSeconds: 60, logger: captureLogger().logger });
    gw = await startGateway({ auth, maxConn: 4, maxPortsPerUser: 4 }, 16);
    for (const user of ['alice', 'bob']) tokens[user] = (await idp.issueToken(SCOPE_A, user)).access_token;
  });
  after(async () => {
    await gw?.close();
    await idp?.close();
  });

  test('one user is bound, another is not affected, retries are not counted twice, release gives ports back', async () => {
    const alice = as('alice');
    const bob = as('bob');
    try {
      const a1 = randomUUID();
      await alice.req({ uid: a1, role: 'CONS', num_conn: 3, rate: 0 });
      await exhausted(alice.req({ uid: randomUUID(), role: 'CONS', num_conn: 2, rate: 0 }), /user alice already holds 3 port\(s\).*asks for 2 more.*at most 4.*--max-ports-per-user.*s2uc release/);
      // A retry of a stream alice holds is the same stream, not 3 more ports.
      await alice.req({ uid: a1, role: 'CONS', num_conn: 3, rate: 0 });
      const b1 = randomUUID();
      await bob.req({ uid: b1, role: 'CONS', num_conn: 4, rate: 0 });
      assert.equal(gw.server.dataServer.ports().reserved, 7);
      await alice.release({ uid: a1 });
      const a2 = randomUUID();
      await alice.req({ uid: a2, role: 'CONS', num_conn: 4, rate: 0 });
      // Asking alone for more than the bound says so.
      await exhausted(bob.req({ uid: randomUUID(), role: 'CONS', num_conn: 4, rate: 0 }), /user bob already holds 4/);
      const st = await alice.status({ uid: '' });
      assert.equal(refusals(st, 'ports-per-user'), 2);
      await alice.release({ uid: a2 });
      await bob.release({ uid: b1 });
      assert.equal(gw.server.dataServer.ports().reserved, 0);
    } finally {
      alice.close();
      bob.close();
    }
  });

  test('concurrent reqs do not overshoot the bound', async () => {
    const alice = as('alice');
    try {
      const uids = Array.from({ length: 12 }, () => randomUUID());
      const results = await Promise.allSettled(uids.map((uid) => alice.req({ uid, role: 'CONS', num_conn: 1, rate: 0 })));
      const ok = results.filter((r) => r.status === 'fulfilled').length;
      assert.equal(ok, 4, 'exactly the bound');
      for (const r of results) {
        if (r.status === 'rejected') assert.equal((r.reason as RemoteError).code, grpcStatus.RESOURCE_EXHAUSTED);
      }
      assert.equal(gw.server.dataServer.ports().reserved, 4);
      for (const uid of uids) await alice.release({ uid });
      assert.equal(gw.server.dataServer.ports().reserved, 0);
    } finally {
      alice.close();
    }
  });
});

describe('ports per address with --auth none', () => {
  let gw: TestGateway;
  let relay: Awaited<ReturnType<typeof relayFrom>>;
  let other: ControlConnection;
  before(async () => {
    gw = await startGateway({ maxConn: 2, maxPortsPerUser: 2, helloTimeoutMs: 1000, setupTimeoutMs: 1000 }, 16);
    relay = await relayFrom('127.0.0.2', gw.address);
    other = new ControlConnection(relay.address, { insecure: true, deadlineMs: 10_000 });
  });
  after(async () => {
    other?.close();
    await relay?.close();
    await gw?.close();
  });

  test('each caller address has its own bound; an expired lease gives the ports back', async () => {
    await gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 2, rate: 0 });
    await exhausted(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0 }), /callers from 127\.0\.0\.1 \(no authentication: ports are counted per address\) already hold 2/);
    // Another address is not affected by the first one's ports.
    const o = randomUUID();
    await other.req({ uid: o, role: 'CONS', num_conn: 2, rate: 0 });
    // Nobody sends UpdateTargets: the leases end and the bound is free again.
    const end = Date.now() + 5000;
    while (gw.server.dataServer.ports().reserved > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    assert.equal(gw.server.dataServer.ports().reserved, 0);
    const again = randomUUID();
    await gw.client.req({ uid: again, role: 'CONS', num_conn: 2, rate: 0 });
    await gw.client.release({ uid: again });
  });
});

describe('Hellos waiting for their request', () => {
  test('a flood of 10,000 producer Hellos from one address does not starve an early Hello from another', async () => {
    const { logger, lines } = captureLogger();
    const { table, close, refusals: r } = await tableFor({ logger });
    try {
      const flood = await Promise.allSettled(
        Array.from({ length: 10_000 }, (_, i) => table.hello({ uid: `flood-${i}`, role: 'PROD', prodListeners: [parseAddress('127.0.0.1:7000', 'x')], appSecret: '' }, '192.0.2.66')),
      );
      const refused = flood.filter((x) => x.status === 'rejected');
      assert.equal(refused.length, 9_000, 'all but the per-address cap refused');
      const first = (refused[0] as PromiseRejectedResult).reason as ScistreamError;
      assert.equal(first.kind, 'RESOURCE_EXHAUSTED');
      assert.match(first.message, /1000 producer Hellos from 192\.0\.2\.66 are already waiting.*send Hello after s2uc request/);
      // The early Hello of a quiet address is held, and its req finds it.
      const hello = await table.hello({ uid: 'legit', role: 'PROD', prodListeners: [parseAddress('127.0.0.1:7001', 'x')], appSecret: '' }, '198.51.100.7');
      assert.match(hello.message, /waiting for the request/);
      const reply = await table.req({ uid: 'legit', role: 'PROD', numConn: 1, rate: 0 }, { subject: 'anonymous' }, '198.51.100.7');
      assert.deepEqual(reply.prodListeners, ['127.0.0.1:7001']);
      assert.equal(r.totals().find((t) => t.kind === 'pending-hellos')?.count, 9_000);
      const logged = lines.filter((l) => l.includes('"refusal":"pending-hellos"'));
      assert.equal(logged.length, 1, 'one log line for 9,000 refusals within the interval');
    } finally {
      await close();
    }
  });

  test('when the table is full, the oldest Hello of the address holding the most makes room for a quieter one', async () => {
    const { table, close } = await tableFor({ maxPendingHellos: 30, maxPendingHellosPerPeer: 10 });
    try {
      const hello = (uid: string, peer: string) => table.hello({ uid, role: 'PROD', prodListeners: [parseAddress('127.0.0.1:7000', 'x')], appSecret: '' }, peer);
      for (let i = 0; i < 10; i++) await hello(`a${i}`, 'A');
      for (let i = 0; i < 10; i++) await hello(`b${i}`, 'B');
      for (let i = 0; i < 9; i++) await hello(`c${i}`, 'C');
      await hello('c9', 'C'); // the 30th: full now
      await hello('d0', 'D'); // A (first of the biggest) gives its oldest, a0
      const reply = await table.req({ uid: 'd0', role: 'PROD', numConn: 1, rate: 0 }, { subject: 'anonymous' }, 'D');
      assert.deepEqual(reply.prodListeners, ['127.0.0.1:7000']);
    } finally {
      await close();
    }
  });

  test('a full table refuses an address that holds as many as any other', async () => {
    const { table, close } = await tableFor({ maxPendingHellos: 4, maxPendingHellosPerPeer: 3 });
    try {
      const hello = (uid: string, peer: string) => table.hello({ uid, role: 'PROD', prodListeners: [parseAddress('127.0.0.1:7000', 'x')], appSecret: '' }, peer);
      await hello('a0', 'A');
      await hello('a1', 'A');
      await hello('b0', 'B');
      await hello('b1', 'B');
      await assert.rejects(hello('a2', 'A'), (err: unknown) => err instanceof ScistreamError && err.kind === 'RESOURCE_EXHAUSTED' && /4 producer Hellos are waiting/.test(err.message));
      await hello('c0', 'C'); // holds fewer: A's oldest gives way
      const reply = await table.req({ uid: 'a1', role: 'PROD', numConn: 1, rate: 0 }, { subject: 'anonymous' }, 'A');
      assert.deepEqual(reply.prodListeners, ['127.0.0.1:7000'], 'a1, the newer of A, is still held');
    } finally {
      await close();
    }
  });

  test('a full table of waiting consumer Hellos: the oldest of the address holding the most is answered RESOURCE_EXHAUSTED', async () => {
    const { table, close } = await tableFor({ maxWaitingConsHellos: 3, maxWaitingConsHellosPerPeer: 2 });
    try {
      const hello = (uid: string, peer: string) => table.hello({ uid, role: 'CONS', prodListeners: [], appSecret: '' }, peer);
      const a0 = hello('a0', 'A');
      const a1 = hello('a1', 'A');
      const b0 = hello('b0', 'B');
      let a0Settled = false;
      a0.catch(() => {}).finally(() => (a0Settled = true));
      const c0 = hello('c0', 'C');
      await assert.rejects(a0, (err: unknown) => err instanceof ScistreamError && err.kind === 'RESOURCE_EXHAUSTED' && /gave way/.test(err.message));
      assert.ok(a0Settled);
      // The others are still waiting, and are answered when their req comes.
      for (const uid of ['a1', 'b0', 'c0']) await table.req({ uid, role: 'CONS', numConn: 1, rate: 0 }, { subject: 'anonymous' }, 'X' + uid);
      for (const p of [a1, b0, c0]) assert.equal((await p).listeners.length, 1);
    } finally {
      await close();
    }
  });

  test('consumer Hellos waiting for their request are capped per address and in all (over gRPC)', async () => {
    // 100/50 for producers: 10 consumer Hellos may wait in all, 5 from one address.
    const { logger, lines } = captureLogger();
    const gw = await startGateway({ maxPendingHellos: 100, maxPendingHellosPerPeer: 50, helloTimeoutMs: 3000, setupTimeoutMs: 3000, logger }, 8);
    const relay = await relayFrom('127.0.0.2', gw.address);
    const other = new ControlConnection(relay.address, { insecure: true, deadlineMs: 10_000 });
    try {
      const waiting = Array.from({ length: 5 }, () => gw.client.hello({ uid: randomUUID(), role: 'CONS', prod_listeners: [] }));
      for (const w of waiting) w.catch(() => {});
      await new Promise((r) => setTimeout(r, 200));
      await exhausted(gw.client.hello({ uid: randomUUID(), role: 'CONS', prod_listeners: [] }), /5 consumer Hellos from 127\.0\.0\.1 are already waiting.*most one address may have \(5\)/);
      for (let i = 0; i < 20; i++) await exhausted(gw.client.hello({ uid: randomUUID(), role: 'CONS', prod_listeners: [] }), /already waiting/);
      // 21 refusals, one warning line: the rest is summed when the interval ends.
      assert.equal(lines.filter((l) => l.includes('"refusal":"pending-hellos"')).length, 1);
      assert.equal(lines.filter((l) => l.includes('RESOURCE_EXHAUSTED') && !l.includes('"level":20')).length, 0, 'no line per refused rpc above debug');
      // Another address still gets in, and its Hello is answered once the req comes.
      const uid = randomUUID();
      const early = other.hello({ uid, role: 'CONS', prod_listeners: [] });
      await new Promise((r) => setTimeout(r, 200));
      const r = await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
      assert.deepEqual((await early).listeners, r.listeners);
      const st = await gw.client.status({ uid: '' });
      assert.equal(refusals(st, 'pending-hellos'), 21);
      await gw.client.release({ uid });
      // The ones that never got a req time out.
      for (const w of waiting) await assert.rejects(w, (err: unknown) => err instanceof RemoteError && err.code === grpcStatus.DEADLINE_EXCEEDED);
    } finally {
      other.close();
      await relay.close();
      await gw.close();
    }
  });
});

describe('helpers', () => {
  test('peerKey: IP without port, IPv4-mapped as IPv4, IPv6 by /64', () => {
    assert.equal(peerKey('127.0.0.1:5000'), '127.0.0.1');
    assert.equal(peerKey('::ffff:10.1.2.3:5000'), '10.1.2.3');
    assert.equal(peerKey('::1:5000'), '0:0:0:0::/64');
    assert.equal(peerKey('2001:db8:1:2:aaaa::1:443'), '2001:db8:1:2::/64');
    assert.equal(peerKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
    assert.equal(peerKey('[2001:db8::5]:1'), '2001:db8:0:0::/64');
    assert.equal(peerKey('unknown'), 'unknown');
  });

  test('default ports per user: half the range, at least --max-conn, at most the range', () => {
    assert.equal(defaultMaxPortsPerUser({ first: 5100, last: 5200 }, 64), 64);
    assert.equal(defaultMaxPortsPerUser({ first: 5000, last: 5999 }, 64), 500);
    assert.equal(defaultMaxPortsPerUser({ first: 5100, last: 5109 }, 4), 5);
    assert.equal(defaultMaxPortsPerUser({ first: 5100, last: 5101 }, 64), 2);
  });
});

/** A stream table over a real data server, without gRPC, for floods too large to send through it quickly. */
async function tableFor(o: Partial<StreamTableOptions>): Promise<{ table: StreamTable; refusals: Refusals; close(): Promise<void> }> {
  const logger = o.logger ?? captureLogger().logger;
  const dataServer = new LocalDataServer({ bindHost: '127.0.0.1', portRange: await freePortRange(4), bufferSize: 65536, waitLimit: 16, waitTimeoutMs: 5000, logger });
  const refusals = new Refusals(logger);
  const table = new StreamTable({
    dataServer,
    helloTimeoutMs: 30_000,
    setupTimeoutMs: 30_000,
    maxPendingHellos: 10_000,
    maxPendingHellosPerPeer: 1_000,
    maxWaitingConsHellos: 1_000,
    maxWaitingConsHellosPerPeer: 100,
    maxHeldListeners: 64,
    maxPortsPerUser: 4,
    portsPerPeer: true,
    refusals,
    ...o,
    logger,
  });
  return {
    table,
    refusals,
    async close() {
      await table.close();
      await dataServer.close();
      refusals.close();
    },
  };
}
