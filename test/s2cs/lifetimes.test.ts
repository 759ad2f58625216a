// Stream lifetimes after setup (issue 18 point 2), with real gateways, a real worker
// process (the producer side's agent), real sockets and real applications: a stream
// whose connections all ended abnormally is `broken` and let go on each gateway after
// a short grace; clean ends are not; --idle-stream-timeout, Request.lifetime_s (s2uc
// --lifetime) and --max-stream-lifetime release streams with why; status shows it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { sendHello } from '../../src/app/controller.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { outboundRequest, releaseStream, requestStream, type ConnectionMap } from '../../src/s2uc/flows.js';
import { validateRequest } from '../../src/protocol/validate.js';
import { freePort, freePortRange, spawnCli } from '../../src/demo/procs.js';
import { RemoteError } from '../../src/protocol/client.js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { captureLogger } from '../auth/capture.js';
import { tempDir } from '../support/agent.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { startReferenceGateway } from '../support/reference-gateway.js';
import { canConnect } from '../support/sockets.js';
import { until } from '../support/until.js';

const OPTS = { insecure: true, deadlineMs: 20_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The producer application: sends a greeting on each connection, mirrors a clean end, and records how each connection ended. */
interface ProducerApp {
  server: Server;
  address: string;
  ends: Promise<string>[];
  close(): Promise<void>;
}

async function producerApp(): Promise<ProducerApp> {
  const ends: Promise<string>[] = [];
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    ends.push(endOf(s));
    s.write('hello from the producer\n');
    s.on('end', () => s.end());
    s.on('close', () => sockets.delete(s));
    s.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    ends,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** How a socket ended: 'end' (FIN) or its error code. */
function endOf(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.once('end', () => resolve('end'));
    s.once('close', () => resolve('closed'));
  });
}

/** A consumer connection that has received the producer's greeting. */
async function consumerConnection(address: string): Promise<{ socket: Socket; end: Promise<string> }> {
  const [host, port] = address.split(':');
  const socket = connect({ host: host!, port: Number(port), allowHalfOpen: true });
  const end = endOf(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('data', () => resolve());
    socket.once('error', reject);
  });
  return { socket, end };
}

interface Status {
  state: string;
  broken_reason: string;
  expires_in_s: number;
  active_connections: number;
}

async function streamOn(gw: TestGateway, uid: string): Promise<Status | undefined> {
  return (await gw.client.status({ uid })).streams[0] as Status | undefined;
}

async function endedOn(gw: TestGateway, uid: string): Promise<string | undefined> {
  const r = await gw.client.status({});
  if (r.streams.some((s) => s.uid === uid)) return undefined;
  return r.ended.find((e) => e.uid === uid)?.why;
}

/** Every listener closed. */
async function allClosed(listeners: string[]): Promise<boolean> {
  for (const l of listeners) if (await canConnect(l)) return false;
  return true;
}

/** The 'stream released' log lines of `uid`. */
function releasedLines(lines: string[], uid: string): Record<string, unknown>[] {
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l['uid'] === uid && l['msg'] === 'stream released');
}

describe('broken streams', () => {
  const GRACE_CONS_MS = 3000;
  const GRACE_PROD_MS = 1000;
  let prod: TestGateway;
  let cons: TestGateway;
  let app: ProducerApp;
  let dir: string;
  const prodLog = captureLogger();
  const consLog = captureLogger();

  before(async () => {
    dir = tempDir('scistream-lifetimes-');
    app = await producerApp();
    [prod, cons] = await Promise.all([
      // The producer side through a worker process: its agent reports the ends over proto/s2ds.proto.
      startGateway({
        workers: { count: 1, dir: join(dir, 'agents') },
        connectAgent: (address, name) => new RemoteAgent({ address, name, pollIntervalMs: 250 }),
        brokenGraceMs: GRACE_PROD_MS,
        logger: prodLog.logger,
      }),
      startGateway({ brokenGraceMs: GRACE_CONS_MS, logger: consLog.logger }),
    ]);
  });
  after(async () => {
    await Promise.all([prod?.close(), cons?.close()]);
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function setUp(numConn: number): Promise<ConnectionMap> {
    const uid = randomUUID();
    const hellos: Promise<unknown>[] = [];
    const map = await requestStream(prod.address, cons.address, { numConn, uid }, {
      ...OPTS,
      onAppSecret: (secret, server, role) => {
        if (role === 'PROD') hellos.push(sendHello(server, uid, 'PROD', [app.address], { ...OPTS, appSecret: secret }));
      },
    });
    await Promise.all(hellos);
    assert.equal(map.wan, 'tls');
    return map;
  }

  test('connections reset by the consumer: broken on both gateways, then released there with why, ports free', async (t) => {
    const map = await setUp(2);
    const { uid } = map;
    const before = app.ends.length;
    const conns = await Promise.all(map.consListeners.map(consumerConnection));
    await until('both connections active on both gateways', 5000, async () => {
      const [p, c] = await Promise.all([streamOn(prod, uid), streamOn(cons, uid)]);
      return p?.active_connections === 2 && c?.active_connections === 2 ? true : undefined;
    });
    const resetAt = Date.now();
    for (const c of conns) c.socket.resetAndDestroy();
    // The producer sees a reset on each of its connections (never a clean end).
    const producerSaw = await Promise.all(app.ends.slice(before));
    assert.deepEqual(producerSaw, ['ECONNRESET', 'ECONNRESET']);
    const c = await until('the stream broken on the consumer gateway', 5000, async () => {
      const s = await streamOn(cons, uid);
      return s?.state === 'broken' ? s : undefined;
    });
    assert.match(c.broken_reason, /^its last connection ended abnormally \(ECONNRESET\) and none is open; 2 of 2 ended abnormally/);
    assert.ok(c.expires_in_s >= 1 && c.expires_in_s <= GRACE_CONS_MS / 1000, `expires in ${c.expires_in_s} s`);
    const [prodWhy, consWhy] = await Promise.all([
      until('released on the producer gateway', 10_000, () => endedOn(prod, uid)),
      until('released on the consumer gateway', 10_000, () => endedOn(cons, uid)),
    ]);
    const after = (Date.now() - resetAt) / 1000;
    t.diagnostic(`reset by the consumer: producer saw ${producerSaw.join(', ')}; both gateways released the stream ${after.toFixed(1)} s later: "${consWhy}"`);
    assert.match(prodWhy, /^broken: its last connection ended abnormally/);
    assert.match(consWhy, /^broken: its last connection ended abnormally \(ECONNRESET\)/);
    // Released there like a release rpc: the agents closed the listeners and gave the ports back.
    assert.ok(await allClosed([...map.consListeners, ...map.prodListeners]), 'every listener of the stream closed');
    assert.equal(cons.server.dataServer.ports().reserved, 0);
    await until('the worker reports its ports free', 5000, async () => (prod.server.dataServer.ports().reserved === 0 ? true : undefined));
    assert.match(await cons.server.metrics.registry.metrics(), /^scistream_streams_let_go_total\{reason="broken"\} 1$/m);
    for (const [lines, gw] of [[prodLog.lines, 'producer'], [consLog.lines, 'consumer']] as const) {
      const logged = releasedLines(lines, uid);
      assert.equal(logged.length, 1, `one release logged on the ${gw} gateway`);
      assert.equal(logged[0]!['level'], 40, 'a warning');
      assert.match(String(logged[0]!['why']), /^broken: /);
    }
  });

  test('a consumer that reconnects at once is not cut off', async () => {
    const map = await setUp(1);
    const first = await consumerConnection(map.consListeners[0]!);
    first.socket.resetAndDestroy();
    // At once: the new connection is active well within the grace.
    const again = await consumerConnection(map.consListeners[0]!);
    await sleep(GRACE_CONS_MS + 1500);
    const [p, c] = await Promise.all([streamOn(prod, map.uid), streamOn(cons, map.uid)]);
    assert.equal(p?.state, 'ready');
    assert.equal(c?.state, 'ready');
    assert.equal(c?.broken_reason, '');
    assert.equal(c?.active_connections, 1);
    again.socket.write('still here');
    again.socket.destroy();
    await releaseStream(map.uid, [prod.address, cons.address], OPTS);
  });

  test('connections that end cleanly (FIN both ways) do not release the stream; its idle clock runs', async () => {
    const map = await setUp(2);
    const conns = await Promise.all(map.consListeners.map(consumerConnection));
    for (const c of conns) c.socket.end();
    // The producer mirrors the end: each consumer sees a clean end.
    assert.deepEqual(await Promise.all(conns.map((c) => c.end)), ['end', 'end']);
    await until('no connection open on either gateway', 5000, async () => {
      const [p, c] = await Promise.all([streamOn(prod, map.uid), streamOn(cons, map.uid)]);
      return p?.active_connections === 0 && c?.active_connections === 0 ? true : undefined;
    });
    await sleep(GRACE_CONS_MS + 1500);
    for (const gw of [prod, cons]) {
      const s = await streamOn(gw, map.uid);
      assert.equal(s?.state, 'ready');
      assert.equal(s?.broken_reason, '');
      // The default --idle-stream-timeout (1 h) counts from the last end.
      assert.ok(s!.expires_in_s > 3590 && s!.expires_in_s <= 3600, `expires in ${s!.expires_in_s} s`);
    }
    await releaseStream(map.uid, [prod.address, cons.address], OPTS);
  });
});

describe('a lost peer', () => {
  test('the producer gateway is killed: the consumer gateway sees its connections reset, and lets the stream go', async (t) => {
    const app = await producerApp();
    const dir = tempDir('scistream-lifetimes-peer-');
    const port = await freePort();
    const range = await freePortRange(8);
    // The peer in its own process, forwarding in it (--workers 0): kill -9 takes its sockets with it.
    const peer = spawnCli('s2cs', ['start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--state-dir', dir, '--workers', '0']);
    const log = captureLogger();
    const cons = await startGateway({ brokenGraceMs: 1000, logger: log.logger });
    try {
      await peer.waitFor(/s2cs ready/, { timeoutMs: 20_000 });
      const prodAddress = `127.0.0.1:${port}`;
      const uid = randomUUID();
      const hellos: Promise<unknown>[] = [];
      const map = await requestStream(prodAddress, cons.address, { numConn: 1, uid }, {
        ...OPTS,
        onAppSecret: (secret, server, role) => {
          if (role === 'PROD') hellos.push(sendHello(server, uid, 'PROD', [app.address], { ...OPTS, appSecret: secret }));
        },
      });
      await Promise.all(hellos);
      const c = await consumerConnection(map.consListeners[0]!);
      const killedAt = Date.now();
      await peer.stop('SIGKILL');
      const consumerSaw = await c.end;
      const sawAfter = (Date.now() - killedAt) / 1000;
      const why = await until('released on the consumer gateway', 10_000, () => endedOn(cons, uid));
      t.diagnostic(`producer gateway killed: the consumer saw ${consumerSaw} after ${sawAfter.toFixed(1)} s; the consumer gateway released the stream ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill: "${why}"`);
      assert.equal(consumerSaw, 'ECONNRESET');
      assert.match(why, /^broken: its last connection ended abnormally \(ECONNRESET\)/);
      assert.ok(await allClosed(map.consListeners));
      assert.equal(cons.server.dataServer.ports().reserved, 0);
    } finally {
      if (peer.running()) await peer.stop('SIGKILL');
      await cons.close();
      await app.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('--broken-grace 0', () => {
  test('a broken stream is shown broken and kept (applications that end their connections with resets)', async () => {
    const app = await producerApp();
    const gw = await startGateway({ brokenGraceMs: 0 });
    try {
      const { uid, listeners } = await referenceStream(gw, app.address);
      const c = await consumerConnection(listeners[0]!);
      c.socket.resetAndDestroy();
      await until('the stream broken', 5000, async () => {
        const st = await streamOn(gw, uid);
        return st?.state === 'broken' ? st : undefined;
      });
      await sleep(1500);
      const still = await streamOn(gw, uid);
      assert.equal(still?.state, 'broken');
      // Only the idle deadline (the default hour, from the last end) remains.
      assert.ok(still!.expires_in_s > 3590, `expires in ${still!.expires_in_s} s`);
      // A new connection makes it ready again.
      const again = await consumerConnection(listeners[0]!);
      assert.equal((await streamOn(gw, uid))?.state, 'ready');
      again.socket.destroy();
    } finally {
      await gw.close();
      await app.close();
    }
  });
});

/** A single gateway; the stream a reference client sets up: req (no lifetime) and UpdateTargets to `target`. */
async function referenceStream(gw: TestGateway, target: string, lifetime_s?: number): Promise<{ uid: string; listeners: string[] }> {
  const uid = randomUUID();
  const r = await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0, ...(lifetime_s === undefined ? {} : { lifetime_s }) });
  await gw.client.update({ uid, remote_listeners: [target], role: 'CONS' });
  return { uid, listeners: r.listeners };
}

describe('--idle-stream-timeout', () => {
  const IDLE_MS = 2000;
  let gw: TestGateway;
  let app: ProducerApp;
  const log = captureLogger();
  before(async () => {
    app = await producerApp();
    gw = await startGateway({ idleStreamTimeoutMs: IDLE_MS, logger: log.logger });
  });
  after(async () => {
    await gw?.close();
    await app?.close();
  });

  test('a stream that never had a connection is released once idle that long after its connection map', async (t) => {
    const start = Date.now();
    const { uid, listeners } = await referenceStream(gw, app.address);
    const s = await streamOn(gw, uid);
    assert.equal(s?.state, 'ready');
    assert.ok(s!.expires_in_s >= 1 && s!.expires_in_s <= IDLE_MS / 1000, `expires in ${s!.expires_in_s} s`);
    const why = await until('the idle stream released', 6000, () => endedOn(gw, uid));
    const took = Date.now() - start;
    t.diagnostic(`released ${(took / 1000).toFixed(1)} s after its connection map: ${why}`);
    assert.equal(why, 'idle: no connection for 2 s (--idle-stream-timeout)');
    assert.ok(took >= IDLE_MS - 100, `released after ${took} ms`);
    assert.ok(await allClosed(listeners));
    assert.equal(gw.server.dataServer.ports().reserved, 0);
    assert.equal(releasedLines(log.lines, uid)[0]?.['why'], why);
    assert.match(await gw.server.metrics.registry.metrics(), /^scistream_streams_let_go_total\{reason="idle"\} 1$/m);
  });

  test('an open connection keeps a stream; its idle clock starts when the connection ends', async () => {
    const { uid, listeners } = await referenceStream(gw, app.address);
    const c = await consumerConnection(listeners[0]!);
    await sleep(IDLE_MS + 1500);
    const open = await streamOn(gw, uid);
    assert.equal(open?.state, 'ready', 'held while a connection is open');
    assert.equal(open?.expires_in_s, 0, 'no deadline while a connection is open');
    c.socket.end();
    assert.equal(await c.end, 'end');
    const endedAt = Date.now();
    const why = await until('released once idle after the end', 6000, () => endedOn(gw, uid));
    assert.match(why, /^idle: /);
    assert.ok(Date.now() - endedAt >= IDLE_MS - 300, `released ${Date.now() - endedAt} ms after the end`);
  });
});

describe('lifetimes: Request.lifetime_s and --max-stream-lifetime', () => {
  const MAX_MS = 3000;
  let gw: TestGateway;
  let app: ProducerApp;
  before(async () => {
    app = await producerApp();
    // Never idle: only lifetimes end these streams.
    gw = await startGateway({ maxStreamLifetimeMs: MAX_MS, idleStreamTimeoutMs: 0 });
  });
  after(async () => {
    await gw?.close();
    await app?.close();
  });

  test('a stream asking 1 s (library API) is released 1 s after its request, its open connection reset', async (t) => {
    const start = Date.now();
    const r = await outboundRequest(gw.address, [app.address], { numConn: 1, lifetimeS: 1 }, OPTS);
    assert.equal(r.lifetimeS, 1);
    const c = await consumerConnection(r.listeners[0]!);
    const why = await until('released at the end of its lifetime', 5000, () => endedOn(gw, r.uid));
    t.diagnostic(`released ${((Date.now() - start) / 1000).toFixed(1)} s after its request: ${why}`);
    assert.equal(why, 'lifetime over: 1 s since its request (its requested lifetime, s2uc --lifetime)');
    assert.equal(await c.end, 'ECONNRESET', 'the application sees a reset, as with a release');
    assert.ok(Date.now() - start >= 1000);
  });

  test('--max-stream-lifetime bounds a longer lifetime, and one not given', async () => {
    const long = await outboundRequest(gw.address, [app.address], { numConn: 1, lifetimeS: 100 }, OPTS);
    const none = await referenceStream(gw, app.address);
    for (const uid of [long.uid, none.uid]) {
      const s = await streamOn(gw, uid);
      assert.ok(s!.expires_in_s >= 1 && s!.expires_in_s <= MAX_MS / 1000, `expires in ${s!.expires_in_s} s`);
    }
    const [longWhy, noneWhy] = await Promise.all([until('the long one released', 6000, () => endedOn(gw, long.uid)), until('the other released', 6000, () => endedOn(gw, none.uid))]);
    assert.equal(longWhy, 'lifetime over: 3 s since its request (--max-stream-lifetime of this gateway, below the 100 s requested)');
    assert.equal(noneWhy, 'lifetime over: 3 s since its request (--max-stream-lifetime of this gateway)');
  });

  test('a retried req must repeat its lifetime, as any other field', async () => {
    const uid = randomUUID();
    const first = await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0, lifetime_s: 100 });
    assert.deepEqual((await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0, lifetime_s: 100 })).listeners, first.listeners);
    await assert.rejects(gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0, lifetime_s: 50 }), (err: unknown) => {
      assert.ok(err instanceof RemoteError);
      assert.equal(err.code, grpcStatus.ALREADY_EXISTS);
      assert.match(err.details, /lifetime_s=100/);
      return true;
    });
    await gw.client.release({ uid });
  });
});

describe('reference-style requests', () => {
  test('a req without lifetime_s reads as before and, with neither timeout, has no deadline', async () => {
    const uid = randomUUID();
    // What a reference client's req decodes to (proto3: an absent field reads 0): nothing new in the request.
    assert.deepEqual(validateRequest({ uid, role: 'PROD', num_conn: 2, rate: 0, lifetime_s: 0, allow_from: [], listener_ports: [], protocol: '' }, { maxConn: 64 }), { uid, role: 'PROD', numConn: 2, rate: 0 });
    const app = await producerApp();
    const gw = await startGateway({ idleStreamTimeoutMs: 0 });
    try {
      const { uid: held } = await referenceStream(gw, app.address);
      await sleep(1500);
      const s = await streamOn(gw, held);
      assert.equal(s?.state, 'ready');
      assert.equal(s?.expires_in_s, 0);
      assert.equal(s?.broken_reason, '');
    } finally {
      await gw.close();
      await app.close();
    }
  });

  test('--lifetime towards a reference-like gateway: it ignores the field, the stream is set up, s2uc warns', async () => {
    const ref = await startReferenceGateway({ helloTimeoutMs: 10_000 });
    const app = await producerApp();
    try {
      const warnings: string[] = [];
      const r = await outboundRequest(ref.address, [app.address], { numConn: 1, lifetimeS: 60 }, { ...OPTS, onWarning: (w) => warnings.push(w) });
      assert.equal(r.listeners.length, 1);
      // Besides the plain-leg notice every single-gateway flow through a reference gateway gives.
      assert.deepEqual(
        warnings.filter((w) => /lifetime/.test(w)),
        [`${ref.address} is the Python reference's s2cs, which ignores the stream's lifetime: there the stream lives until it is released`],
      );
      await releaseStream(r.uid, [ref.address], OPTS);
    } finally {
      await ref.close();
      await app.close();
    }
  });
});
