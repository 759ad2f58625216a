// Leases: a stream whose connection map never comes is released by the gateway
// after --setup-timeout, with a log line; status shows state and lease.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { status as grpcStatus } from '@grpc/grpc-js';
import { RemoteError } from '../../src/protocol/client.js';
import { startControlServer } from '../../src/s2cs/server.js';
import { ScistreamError } from '../../src/protocol/errors.js';
import { freePortRange, spawnCli } from '../../src/demo/procs.js';
import { captureLogger } from '../auth/capture.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { canConnect } from '../support/sockets.js';

const SETUP_MS = 2000;
const HELLO_MS = 1000;


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `uid` is gone from the gateway (or fails after `ms`). */
async function gone(gw: TestGateway, uid: string, ms = 6000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if ((await gw.client.status({ uid })).streams.length === 0) return;
    await sleep(100);
  }
  assert.fail(`stream ${uid} still held ${ms} ms later`);
}

describe('leases', () => {
  let gw: TestGateway;
  const { logger, lines } = captureLogger();
  before(async () => {
    gw = await startGateway({ helloTimeoutMs: HELLO_MS, setupTimeoutMs: SETUP_MS, logger }, 16);
  });
  after(() => gw.close());

  const leaseLog = (uid: string) =>
    lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['uid'] === uid && /lease ended/.test(String(l['why'])));

  test('a CONS reservation without UpdateTargets is released when its lease ends, with a log line', async () => {
    const uid = randomUUID();
    const r = await gw.client.req({ uid, role: 'CONS', num_conn: 2, rate: 0 });
    const st = (await gw.client.status({ uid })).streams[0]!;
    assert.equal(st.state, 'awaiting-update');
    assert.ok(st.lease_remaining_s >= 1 && st.lease_remaining_s <= SETUP_MS / 1000, `lease ${st.lease_remaining_s} s`);
    assert.ok(await canConnect(r.listeners[0]!));
    await gone(gw, uid);
    assert.equal(gw.server.dataServer.ports().reserved, 0);
    for (const l of r.listeners) assert.equal(await canConnect(l), false, `${l} closed once the lease ended`);
    const logged = leaseLog(uid);
    assert.equal(logged.length, 1, 'one log line for the expiry');
    assert.equal(logged[0]!['owner'], 'anonymous');
    assert.match(String(logged[0]!['why']), /no UpdateTargets within 2 s/);
    // UpdateTargets too late: the stream is gone, and the answer says why it may be.
    await assert.rejects(gw.client.update({ uid, remote_listeners: ['127.0.0.1:9'], role: 'CONS' }), (err: unknown) => {
      assert.ok(err instanceof RemoteError);
      assert.equal(err.code, grpcStatus.NOT_FOUND);
      assert.match(err.details, /within 2 s of its request is released/);
      return true;
    });
  });

  test('a PROD stream that got its Hello but no UpdateTargets is released when its lease ends', async () => {
    const uid = randomUUID();
    const pending = gw.client.req({ uid, role: 'PROD', num_conn: 1, rate: 0 });
    // While it waits for the Hello, status says so.
    let st = (await gw.client.status({ uid })).streams[0];
    for (let i = 0; i < 20 && st?.state !== 'awaiting-hello'; i++) {
      await sleep(20);
      st = (await gw.client.status({ uid })).streams[0];
    }
    assert.equal(st?.state, 'awaiting-hello');
    await gw.client.hello({ uid, role: 'PROD', prod_listeners: ['127.0.0.1:7000'] });
    const r = await pending;
    assert.deepEqual(r.prod_listeners, ['127.0.0.1:7000']);
    st = (await gw.client.status({ uid })).streams[0]!;
    assert.equal(st.state, 'awaiting-update');
    assert.ok(st.lease_remaining_s >= 1);
    await gone(gw, uid);
    assert.equal(gw.server.dataServer.ports().reserved, 0);
    assert.equal(leaseLog(uid).length, 1);
  });

  test('UpdateTargets within the lease: ready, lease 0, and the stream outlives the setup timeout', async () => {
    const uid = randomUUID();
    await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    await gw.client.update({ uid, remote_listeners: ['127.0.0.1:9'], role: 'CONS' });
    let st = (await gw.client.status({ uid })).streams[0]!;
    assert.equal(st.state, 'ready');
    assert.equal(st.lease_remaining_s, 0);
    await sleep(SETUP_MS + 500);
    st = (await gw.client.status({ uid })).streams[0]!;
    assert.equal(st?.state, 'ready', 'still there after the setup timeout');
    assert.equal(leaseLog(uid).length, 0);
    await gw.client.release({ uid });
  });

  test('a retried req answers the same and does not extend the lease', async () => {
    const uid = randomUUID();
    const first = await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    await sleep(1200);
    const again = await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    assert.deepEqual(again.listeners, first.listeners);
    const st = (await gw.client.status({ uid })).streams[0]!;
    assert.ok(st.lease_remaining_s <= 1, `the lease still counts from the first req (${st.lease_remaining_s} s left)`);
    await gone(gw, uid, 3000);
    // After the lease a retry is a new reservation, with a new lease.
    await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    assert.ok((await gw.client.status({ uid })).streams[0]!.lease_remaining_s >= 1);
    await gw.client.release({ uid });
  });

  test('s2uc status shows the state and the lease, in its table and in --json', async () => {
    // A lease of its own, long enough for two CLI processes to start on a busy machine.
    const long = await startGateway({ setupTimeoutMs: 50_000, helloTimeoutMs: 10_000 });
    try {
      const uid = randomUUID();
      await long.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
      const table = spawnCli('s2uc', ['--insecure', 'status', uid, '--s2cs', long.address]);
      const json = spawnCli('s2uc', ['--insecure', 'status', uid, '--s2cs', long.address, '--json']);
      assert.equal(await table.exited, 0, table.stderr());
      assert.equal(await json.exited, 0, json.stderr());
      const m = new RegExp(`stream ${uid} \\(CONS, 1 connection\\)\\n +state +awaiting-update, lease (\\d+)s left\\n`).exec(table.stdout());
      assert.ok(m && Number(m[1]) >= 1 && Number(m[1]) <= 50, table.stdout());
      const parsed = (JSON.parse(json.stdout()) as { gateways: { streams: { state: string; leaseRemainingS: number }[] }[] }).gateways[0]!;
      assert.equal(parsed.streams[0]!.state, 'awaiting-update');
      assert.ok(parsed.streams[0]!.leaseRemainingS >= 1 && parsed.streams[0]!.leaseRemainingS <= 50);
      await long.client.release({ uid });
    } finally {
      await long.close();
    }
  });
});

describe('--setup-timeout below --hello-timeout', () => {
  test('the library refuses it before reserving anything', async () => {
    const range = await freePortRange(2);
    await assert.rejects(
      startControlServer({ port: 0, host: '127.0.0.1', listenerIp: '127.0.0.1', portRange: range, helloTimeoutMs: 5000, setupTimeoutMs: 2000 }),
      (err: unknown) => err instanceof ScistreamError && err.kind === 'INVALID_ARGUMENT' && /below the Hello timeout/.test(err.message),
    );
  });

  test('s2cs start: one line, exit code 2', async () => {
    const p = spawnCli('s2cs', ['start', '--insecure', '--port', '0', '--listener-ip', '127.0.0.1', '--hello-timeout', '10', '--setup-timeout', '5']);
    const code = await p.exited;
    assert.equal(code, 2);
    const err = p.stderr().trim();
    assert.equal(err.split('\n').length, 1, err);
    assert.match(err, /--setup-timeout 5 is below --hello-timeout 10/);
  });
});
