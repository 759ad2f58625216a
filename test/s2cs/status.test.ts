// Status rows on the gateway: the state says what the stream has ('ready' only with
// targets), its age, and byte rates sampled from the data server's counters.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { ControlConnection, type StatusResponse } from '../../src/protocol/client.js';
import { until } from '../support/until.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ignore = (p: Promise<unknown>) => p.catch(() => undefined);

/** Every row that says 'ready' has its connection map (and, for PROD, the producer's listeners). */
function checkReadyRows(st: StatusResponse, seen: Set<string>): void {
  for (const s of st.streams) {
    seen.add(`${s.role} ${s.state}`);
    if (s.state !== 'ready') continue;
    assert.ok(s.targets.length > 0, `${s.uid} (${s.role}) is ready with no targets`);
    if (s.role === 'PROD') assert.ok(s.prod_listeners.length > 0, `${s.uid} is ready without the producer's listeners`);
  }
}

describe('status state', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ helloTimeoutMs: 3000, setupTimeoutMs: 4000 }, 48);
  });
  after(() => gw.close());

  test("'ready' only once the connection map is applied, whatever order req, Hello and UpdateTargets come in", async () => {
    // Bound to the address, as a reference client: an UpdateTargets racing its req cannot carry the control secret the req answers with.
    const c = new ControlConnection(gw.address, { insecure: true, deadlineMs: 10_000, bindBySecret: false });
    const seen = new Set<string>();
    let polling = true;
    const poller = (async () => {
      while (polling) {
        checkReadyRows(await c.status({ uid: '' }), seen);
        await new Promise((r) => setImmediate(r));
      }
    })();
    try {
      for (let i = 0; i < 3; i++) {
        // CONS: UpdateTargets racing the req.
        let uid = randomUUID();
        await Promise.all([ignore(c.req({ uid, role: 'CONS', num_conn: 1, rate: 0 })), ignore(c.update({ uid, remote_listeners: ['127.0.0.1:9'], role: 'CONS' }))]);
        // PROD: UpdateTargets before the Hello.
        uid = randomUUID();
        const pending = ignore(c.req({ uid, role: 'PROD', num_conn: 1, rate: 0 }));
        await sleep(20);
        await ignore(c.update({ uid, remote_listeners: ['127.0.0.1:9'], role: 'PROD' }));
        const early = (await c.status({ uid })).streams[0];
        assert.equal(early?.state, 'awaiting-hello', 'targets alone do not make a producer stream ready');
        await c.hello({ uid, role: 'PROD', prod_listeners: ['127.0.0.1:7'] });
        await pending;
        assert.equal((await c.status({ uid })).streams[0]?.state, 'ready');
        // PROD: Hello first, then req and UpdateTargets together.
        uid = randomUUID();
        await c.hello({ uid, role: 'PROD', prod_listeners: ['127.0.0.1:7'] });
        await Promise.all([ignore(c.req({ uid, role: 'PROD', num_conn: 1, rate: 0 })), ignore(c.update({ uid, remote_listeners: ['127.0.0.1:9'], role: 'PROD' }))]);
      }
    } finally {
      polling = false;
      await poller;
    }
    checkReadyRows(await c.status({ uid: '' }), seen);
    assert.ok(seen.has('PROD ready') && seen.has('CONS ready'), `states seen: ${[...seen].join(', ')}`);
    for (const s of (await c.status({ uid: '' })).streams) await c.release({ uid: s.uid });
    c.close();
  });
});

test('a stream whose UpdateTargets was refused is awaiting-update with its lease, not ready', async () => {
  const gw = await startGateway({ allowPlaintextData: false, helloTimeoutMs: 10_000, setupTimeoutMs: 30_000 });
  try {
    const uid = randomUUID();
    const pending = gw.client.req({ uid, role: 'PROD', num_conn: 1, rate: 0 });
    await gw.client.hello({ uid, role: 'PROD', prod_listeners: ['127.0.0.1:7'] });
    const r = await pending;
    // Refused: the role does not match the stream's.
    await assert.rejects(gw.client.update({ uid, remote_listeners: r.prod_listeners, role: 'CONS' }), /FAILED_PRECONDITION/);
    const st = (await gw.client.status({ uid })).streams[0]!;
    assert.equal(st.state, 'awaiting-update');
    assert.deepEqual(st.targets, []);
    assert.ok(st.lease_remaining_s > 0);
  } finally {
    await gw.close();
  }
});

describe('age and rates', () => {
  let gw: TestGateway;
  let sink: Server;
  let sinkAddress: string;
  before(async () => {
    gw = await startGateway();
    // The target echoes, so that bytes flow both ways.
    sink = createServer((s) => {
      s.on('error', () => undefined);
      s.pipe(s);
    });
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
    sinkAddress = `127.0.0.1:${(sink.address() as { port: number }).port}`;
  });
  after(async () => {
    await gw.close();
    await new Promise((resolve) => sink.close(resolve));
  });

  async function row(uid: string) {
    const s = (await gw.client.status({ uid })).streams[0];
    assert.ok(s, `stream ${uid} listed`);
    return s;
  }


  test('bytes through the stream show as rates each way, back to 0 once the window has passed; the sampler stops with the last stream', async () => {
    const uid = randomUUID();
    const r = await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    await gw.client.update({ uid, remote_listeners: [sinkAddress], role: 'CONS' });
    assert.equal(gw.server.table.sampling, true, 'sampling while a stream exists');
    let st = await row(uid);
    assert.equal(st.to_target_bps, '0');
    assert.equal(st.from_target_bps, '0');

    const [host, port] = r.listeners[0]!.split(':');
    const client: Socket = connect({ host: host!, port: Number(port) });
    client.on('error', () => undefined);
    client.resume();
    const chunk = Buffer.alloc(64 * 1024, 7);
    let sending = true;
    const pump = () => {
      while (sending && client.write(chunk));
    };
    client.on('drain', pump);
    client.once('connect', pump);
    try {
      st = await until('rates above 0 both ways', 10_000, async () => {
        const s = await row(uid);
        return Number(s.to_target_bps) > 0 && Number(s.from_target_bps) > 0 ? s : undefined;
      });
      assert.ok(Number(st.bytes_to_target) > 0);
    } finally {
      sending = false;
      // A clean end: a reset would leave the stream broken, and released before the window has passed.
      client.end();
    }
    const stopped = Date.now();
    st = await until('rates back to 0', 20_000, async () => {
      const s = await row(uid);
      return s.to_target_bps === '0' && s.from_target_bps === '0' ? s : undefined;
    });
    assert.ok(Date.now() - stopped >= 8_000, 'rates are averaged over the window: they do not drop to 0 as soon as bytes stop');
    assert.ok(Number(st.bytes_to_target) > 0, 'the byte counts stay');
    assert.ok(st.age_s >= 8, `age ${st.age_s} s`);

    await gw.client.release({ uid });
    await until('the sampler to stop', 5_000, async () => (gw.server.table.sampling ? undefined : true));
  });
});
