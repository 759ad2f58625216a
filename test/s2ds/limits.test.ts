// The data server's bounds with real sockets: connections per listener, connections
// waiting for targets, total buffer memory. A refused connection is reset at once
// (never buffered), counted for its stream and by kind, and logged once per interval.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { LocalDataServer, connectionMemory, type LocalDataServerOptions } from '../../src/s2ds/index.js';
import { Refusals } from '../../src/limits/refusals.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange } from '../../src/demo/procs.js';
import type { Address } from '../../src/protocol/address.js';
import { watchEnd } from '../support/sockets.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1024 ** 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function dataServer(opts: Partial<LocalDataServerOptions> = {}): Promise<LocalDataServer> {
  return new LocalDataServer({
    bindHost: '127.0.0.1',
    portRange: await freePortRange(4),
    bufferSize: 256 * 1024,
    waitLimit: 8,
    waitTimeoutMs: 10_000,
    logger: silentLogger,
    ...opts,
  });
}

/** A target that accepts connections and never reads from them. */
async function deafTarget(): Promise<{ server: Server; address: Address; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer({ pauseOnConnect: true }, (s) => {
    s.on('error', () => {});
    sockets.push(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { server, address: { host: '127.0.0.1', port }, sockets };
}

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  for (let t = 0; t < ms && !ok(); t += 20) await sleep(20);
  assert.ok(ok(), what);
}

function captureLogger() {
  const lines: { msg: string; refusal?: string; count?: number }[] = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

test('connections over --max-conns-per-listener are reset at once, counted and logged once', async () => {
  const { logger, lines } = captureLogger();
  const refusals = new Refusals(logger, 60_000);
  const ds = await dataServer({ maxConnsPerListener: 3, refusals });
  const target = await deafTarget();
  try {
    const [l] = await ds.startListeners('per-listener', 1);
    await ds.setTargets('per-listener', [target.address]);
    const clients = Array.from({ length: 8 }, () => connect(l!.port, l!.host));
    const states = clients.map(watchEnd);
    await until('five refused', () => states.filter((s) => s.state !== 'open').length === 5);
    assert.equal(states.filter((s) => s.state === 'reset').length, 5, 'refused connections see a reset, not a clean end');
    await until('three forwarded', () => target.sockets.length === 3);
    assert.equal(ds.stats('per-listener')!.refusedConnections, 5);
    assert.deepEqual(refusals.totals(), [{ kind: 'conns-per-listener', count: 5 }]);
    assert.equal(lines.filter((x) => x.refusal === 'conns-per-listener').length, 1, 'one log line for the burst');
    // A slot freed is a slot usable again (a reset: a FIN would leave the
    // connection half-open towards a target that never reads).
    clients.find((_, i) => states[i]!.state === 'open')!.resetAndDestroy();
    await until('slot given back', () => ds.bufferMemory().reserved === 2 * connectionMemory(256 * 1024, 'tcp', 'tcp'));
    const again = connect(l!.port, l!.host);
    const w = watchEnd(again);
    await until('forwarded again', () => target.sockets.length === 4);
    assert.equal(w.state, 'open');
    for (const c of [...clients, again]) c.destroy();
  } finally {
    await ds.close();
    target.server.close();
    for (const s of target.sockets) s.destroy();
    refusals.close();
  }
});

test('waiting connections over the bound, and those that wait too long, are refused as waiting-conns', async () => {
  const refusals = new Refusals(silentLogger);
  const ds = await dataServer({ waitLimit: 2, waitTimeoutMs: 300, refusals });
  try {
    const [l] = await ds.startListeners('waiting', 1);
    const states = [0, 1, 2].map(() => watchEnd(connect(l!.port, l!.host)));
    await until('all closed', () => states.every((s) => s.state !== 'open'));
    assert.ok(states.every((s) => s.state === 'reset'));
    assert.equal(ds.stats('waiting')!.refusedConnections, 3);
    assert.deepEqual(refusals.totals(), [{ kind: 'waiting-conns', count: 3 }]);
  } finally {
    await ds.close();
    refusals.close();
  }
});

test('an unreachable target is a counted refusal, not a log line per connection', async () => {
  const { logger, lines } = captureLogger();
  const refusals = new Refusals(logger, 60_000);
  const ds = await dataServer({ refusals });
  // A port nothing listens on.
  const gone = await deafTarget();
  gone.server.close();
  try {
    const [l] = await ds.startListeners('unreachable', 1);
    await ds.setTargets('unreachable', [gone.address]);
    const states = Array.from({ length: 6 }, () => watchEnd(connect(l!.port, l!.host)));
    await until('all reset', () => states.every((s) => s.state === 'reset'));
    assert.equal(ds.stats('unreachable')!.refusedConnections, 6);
    assert.deepEqual(refusals.totals(), [{ kind: 'target-unreachable', count: 6 }]);
    assert.equal(lines.length, 1);
    assert.equal(ds.bufferMemory().reserved, 0);
  } finally {
    await ds.close();
    refusals.close();
  }
});

test('memory stays under --max-buffer-memory with many connections pushing into a target that does not read, and comes back at release', async () => {
  const bufferSize = 1 * MiB;
  const perConnection = connectionMemory(bufferSize, 'tcp', 'tcp');
  const limit = 48 * MiB;
  const fits = Math.floor(limit / perConnection);
  const N = 40;
  const refusals = new Refusals(silentLogger);
  const ds = await dataServer({ bufferSize, maxBufferMemory: limit, maxConnsPerListener: 1000, refusals });
  const target = await deafTarget();
  // Every client writes the same chunk: the clients' own buffers hold references, not copies.
  const chunk = Buffer.alloc(256 * 1024, 7);
  const clients: Socket[] = [];
  try {
    const [l] = await ds.startListeners('memory', 1);
    await ds.setTargets('memory', [target.address]);
    gc();
    const before = process.memoryUsage();
    const states: { state: string }[] = [];
    for (let i = 0; i < N; i++) {
      const c = connect(l!.port, l!.host);
      states.push(watchEnd(c));
      const push = () => {
        while (!c.destroyed && c.write(chunk));
      };
      c.on('connect', push).on('drain', push);
      clients.push(c);
    }
    await until(`${N - fits} refused`, () => states.filter((s) => s.state === 'reset').length === N - fits);
    // Let the accepted connections fill every buffer the target leaves full.
    let last = -1;
    for (let i = 0; i < 100; i++) {
      await sleep(100);
      const now = ds.stats('memory')!.bytesToTarget;
      if (now === last) break;
      last = now;
    }
    gc();
    const loaded = process.memoryUsage();
    const grown = (k: 'arrayBuffers' | 'external' | 'rss') => loaded[k] - before[k];
    const figures = `arrayBuffers +${(grown('arrayBuffers') / MiB).toFixed(1)} MiB, external +${(grown('external') / MiB).toFixed(1)} MiB, rss +${(grown('rss') / MiB).toFixed(1)} MiB; ${fits} connections x ${(perConnection / MiB).toFixed(2)} MiB reserved`;
    if (process.env.LIMITS_DEBUG) console.log(figures, 'bytesToTarget', last);
    assert.equal(ds.stats('memory')!.activeConnections, fits);
    assert.ok(ds.bufferMemory().reserved <= limit);
    // The connections really filled their buffers (the bound is not met by idling)...
    assert.ok(grown('arrayBuffers') > fits * 2 * bufferSize * 0.8, figures);
    // ...and what they hold stays under the bound plus a modest overhead.
    const overhead = 16 * MiB;
    assert.ok(grown('arrayBuffers') < limit + overhead, figures);
    assert.ok(grown('external') < limit + overhead, figures);
    assert.ok(grown('rss') < limit + 4 * overhead, figures);
    assert.deepEqual(refusals.totals(), [{ kind: 'buffer-memory', count: N - fits }]);

    await ds.release('memory');
    for (const c of clients) c.destroy();
    for (const s of target.sockets) s.destroy();
    // Destroyed sockets drop their buffers once their close has run; then a GC frees them.
    let after = process.memoryUsage();
    for (let i = 0; i < 50 && after.arrayBuffers - before.arrayBuffers >= 4 * MiB; i++) {
      await sleep(100);
      gc();
      after = process.memoryUsage();
    }
    if (process.env.LIMITS_DEBUG) console.log('after release: arrayBuffers', (after.arrayBuffers - before.arrayBuffers) / MiB, 'rss', (after.rss - before.rss) / MiB);
    assert.equal(ds.bufferMemory().reserved, 0);
    assert.ok(after.arrayBuffers - before.arrayBuffers < 4 * MiB, `arrayBuffers back within 4 MiB of before (${((after.arrayBuffers - before.arrayBuffers) / MiB).toFixed(1)} MiB)`);
  } finally {
    for (const c of clients) c.destroy();
    await ds.close();
    target.server.close();
    for (const s of target.sockets) s.destroy();
    refusals.close();
  }
});
