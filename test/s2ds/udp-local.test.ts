// UDP streams on the in-process data server with real sockets: datagrams through and
// back by flow, several senders, idle flows ending, the flow bound, mixed with TCP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { createSocket } from 'node:dgram';
import { LocalDataServer } from '../../src/s2ds/index.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange } from '../../src/demo/procs.js';
import { echoServer } from '../support/sockets.js';
import { untilTrue } from '../support/until.js';
import { numbered, sendSequence, settled, udpEcho, udpSender } from '../support/datagrams.js';

async function dataServer(extra: Partial<ConstructorParameters<typeof LocalDataServer>[0]> = {}): Promise<LocalDataServer> {
  return new LocalDataServer({ bindHost: '127.0.0.1', portRange: await freePortRange(8), bufferSize: 4 * 1024 * 1024, waitLimit: 4, waitTimeoutMs: 5000, logger: silentLogger, ...extra });
}

test('numbered datagrams go through a UDP stream and come back to their sender: none corrupt, none duplicated', async () => {
  const ds = await dataServer();
  const echo = await udpEcho();
  const sender = await udpSender(7);
  try {
    const [listener] = await ds.startListeners('udp-seq', 1, { protocol: 'udp' });
    await ds.setTargets('udp-seq', [echo.address]);
    const count = 2000;
    await sendSequence(sender, 7, listener!, count, 1200);
    // The same targets again (a retried UpdateTargets): the flow goes on.
    await ds.setTargets('udp-seq', [echo.address]);
    await untilTrue('the echoes come back', () => sender.tally.seen.size >= count * 0.99, 10_000);
    await new Promise((r) => setTimeout(r, 200));
    const t = sender.tally;
    console.log(`# udp one hop: sent ${count}, back ${t.seen.size}, lost ${t.lost(count)}, dup ${t.duplicates}, reordered ${t.reordered}, corrupt ${t.corrupt}`);
    assert.equal(t.corrupt, 0);
    assert.equal(t.duplicates, 0);
    assert.equal(t.foreign, 0);
    const st = ds.stats('udp-seq')!;
    assert.equal(st.datagrams!.flows, 1);
    assert.equal(st.datagrams!.flowsOpened, 1);
    assert.ok(st.datagrams!.datagramsToTarget >= t.seen.size);
    assert.equal(st.datagrams!.datagramsFromTarget, echo.received());
    assert.equal(st.bytesToTarget, st.datagrams!.datagramsToTarget * (16 + 1200));
  } finally {
    await sender.close();
    await echo.close();
    await ds.close();
  }
});

test('the largest datagram (65,507 bytes) keeps its boundary', async () => {
  const ds = await dataServer();
  const echo = await udpEcho();
  const sender = await udpSender(3);
  try {
    const [listener] = await ds.startListeners('udp-big', 1, { protocol: 'udp' });
    await ds.setTargets('udp-big', [echo.address]);
    await sender.send(listener!, numbered(3, 0, 65_507 - 16));
    await sender.send(listener!, numbered(3, 1, 1));
    await untilTrue('both come back', () => sender.tally.seen.size === 2, 5000);
    assert.equal(sender.tally.corrupt, 0);
  } finally {
    await sender.close();
    await echo.close();
    await ds.close();
  }
});

test('replies reach the right sender: flows from many source addresses', async () => {
  const ds = await dataServer();
  const echo = await udpEcho();
  const senders = await Promise.all([2, 3, 4, 5, 6, 7].map((i) => udpSender(i, `127.0.0.${i}`)));
  try {
    const [listener] = await ds.startListeners('udp-many', 1, { protocol: 'udp' });
    await ds.setTargets('udp-many', [echo.address]);
    await Promise.all(senders.map((s, i) => sendSequence(s, i + 2, listener!, 200, 300)));
    await untilTrue('every sender has its echoes', () => senders.every((s) => s.tally.seen.size >= 190), 10_000);
    for (const s of senders) {
      assert.equal(s.tally.foreign, 0, 'no sender gets another one\'s replies');
      assert.equal(s.tally.corrupt, 0);
      assert.equal(s.tally.duplicates, 0);
    }
    assert.equal(ds.stats('udp-many')!.datagrams!.flows, 6);
    // Each flow its own socket towards the target.
    assert.equal(echo.senders().size, 6);
  } finally {
    await Promise.all(senders.map((s) => s.close()));
    await echo.close();
    await ds.close();
  }
});

test('an idle flow ends after the UDP idle timeout; its sender opens a new one', async () => {
  const ds = await dataServer({ udpIdleTimeoutMs: 400 });
  const echo = await udpEcho();
  const sender = await udpSender(1);
  try {
    const [listener] = await ds.startListeners('udp-idle', 1, { protocol: 'udp' });
    await ds.setTargets('udp-idle', [echo.address]);
    await sender.send(listener!, numbered(1, 0, 10));
    await untilTrue('the flow is open', () => ds.stats('udp-idle')!.datagrams!.flows === 1, 5000);
    const opened = Date.now();
    await untilTrue('the idle flow ends', () => ds.stats('udp-idle')!.datagrams!.flows === 0, 5000);
    const after = Date.now() - opened;
    console.log(`# idle flow ended after ${after} ms (timeout 400 ms)`);
    assert.ok(after >= 300, `ended after ${after} ms`);
    await sender.send(listener!, numbered(1, 1, 10));
    await untilTrue('a new flow', () => ds.stats('udp-idle')!.datagrams!.flowsOpened === 2, 5000);
    await untilTrue('its echo', () => sender.tally.seen.size === 2, 5000);
  } finally {
    await sender.close();
    await echo.close();
    await ds.close();
  }
});

test('a flood from many senders stays within the flow bound; what does not fit is dropped and counted', async () => {
  const ds = await dataServer({ maxUdpFlows: 4, maxUdpQueuedPerFlow: 16 * 1024 });
  const echo = await udpEcho();
  const senders = await Promise.all(Array.from({ length: 10 }, (_, i) => udpSender(i, `127.0.1.${i + 1}`)));
  try {
    const [listener] = await ds.startListeners('udp-flood', 1, { protocol: 'udp' });
    await ds.setTargets('udp-flood', [echo.address]);
    // No pause: as fast as the senders go.
    await Promise.all(senders.map(async (s, i) => {
      for (let seq = 0; seq < 300; seq++) await s.send(listener!, numbered(i, seq, 8000));
    }));
    await new Promise((r) => setTimeout(r, 300));
    const d = ds.stats('udp-flood')!.datagrams!;
    const drops = Object.fromEntries(d.drops.map((x) => [x.cause, x.count]));
    console.log(`# flood: flows ${d.flows} (opened ${d.flowsOpened}), forwarded ${d.datagramsToTarget}, drops ${JSON.stringify(drops)}`);
    assert.ok(d.flows <= 4);
    assert.ok(d.flowsOpened <= 4);
    // The kernel drops much of a loopback flood before the gateway reads it: what it read
    // from senders over the bound was dropped (flow-limit), and counted.
    assert.ok((drops['flow-limit'] ?? 0) > 0, 'the senders over the bound are dropped');
    assert.equal(echo.senders().size, d.flowsOpened);
    assert.equal(ds.datagramTotals().drops.find((x) => x.cause === 'flow-limit')!.count, drops['flow-limit']);
  } finally {
    await Promise.all(senders.map((s) => s.close()));
    await echo.close();
    await ds.close();
  }
});

test('a UDP stream and a TCP stream side by side on one data server; the UDP stream\'s ports carry TCP too', async () => {
  const ds = await dataServer();
  const echo = await udpEcho();
  const tcp = await echoServer();
  const sender = await udpSender(9);
  try {
    const [u] = await ds.startListeners('mixed-udp', 1, { protocol: 'udp' });
    const [t] = await ds.startListeners('mixed-tcp', 1);
    await ds.setTargets('mixed-udp', [echo.address]);
    await ds.setTargets('mixed-tcp', [tcp.address]);
    await sendSequence(sender, 9, u!, 100, 500);
    const echoed = await new Promise<string>((resolve, reject) => {
      const s = connect(t!.port, t!.host, () => s.end('hello tcp'));
      let got = '';
      s.on('data', (b) => (got += b.toString()));
      s.on('close', () => resolve(got));
      s.on('error', reject);
    });
    assert.equal(echoed, 'hello tcp');
    await untilTrue('udp echoes', () => sender.tally.seen.size >= 95, 5000);
    assert.equal(ds.stats('mixed-tcp')!.datagrams, undefined);
    assert.ok(ds.stats('mixed-udp')!.datagrams!.datagramsToTarget >= 95);
    await ds.release('mixed-udp');
    // Released: its UDP port is free again (bindable).
    await new Promise<void>((resolve, reject) => {
      const p = createSocket('udp4');
      p.once('error', reject);
      p.bind(u!.port, '127.0.0.1', () => p.close(() => resolve()));
    });
  } finally {
    await sender.close();
    await echo.close();
    tcp.server.close();
    await ds.close();
  }
});

test('a rate cap holds a UDP stream: over it datagrams are dropped (rate-cap), never queued', async () => {
  const ds = await dataServer();
  const echo = await udpEcho();
  const sender = await udpSender(4);
  try {
    // 100 kB/s each way; the burst allowance is 64 KiB.
    const [listener] = await ds.startListeners('udp-cap', 1, { protocol: 'udp', capBps: 100_000 });
    await ds.setTargets('udp-cap', [echo.address]);
    const started = Date.now();
    await sendSequence(sender, 4, listener!, 1000, 1000, 50, 5);
    await settled(() => sender.tally.seen.size);
    const seconds = (Date.now() - started) / 1000;
    const d = ds.stats('udp-cap')!;
    const drops = Object.fromEntries(d.datagrams!.drops.map((x) => [x.cause, x.count]));
    console.log(`# rate cap 100 kB/s: ${d.bytesToTarget} bytes to target in ${seconds.toFixed(1)} s, drops ${JSON.stringify(drops)}`);
    assert.ok((drops['rate-cap'] ?? 0) > 0, 'datagrams over the cap are dropped and counted');
    assert.ok(d.bytesToTarget <= 64 * 1024 + 100_000 * (seconds + 1), `${d.bytesToTarget} bytes to target in ${seconds} s`);
    assert.equal(sender.tally.corrupt, 0);
  } finally {
    await sender.close();
    await echo.close();
    await ds.close();
  }
});

test('datagrams before the stream has targets are dropped (no-flow), not kept; senders outside allow_from are dropped (allow-list)', async () => {
  const ds = await dataServer();
  const echo = await udpEcho();
  const early = await udpSender(1);
  const outsider = await udpSender(2, '127.0.0.9');
  try {
    const [listener] = await ds.startListeners('udp-early', 1, { protocol: 'udp', allowFrom: ['127.0.0.1/32'] });
    await early.send(listener!, numbered(1, 0, 100));
    await untilTrue('counted', () => (ds.stats('udp-early')!.datagrams!.drops.find((d) => d.cause === 'no-flow')?.count ?? 0) === 1, 5000);
    await ds.setTargets('udp-early', [echo.address]);
    await early.send(listener!, numbered(1, 1, 100));
    await outsider.send(listener!, numbered(2, 0, 100));
    await untilTrue('the allowed sender gets its echo', () => early.tally.seen.size === 1, 5000);
    await untilTrue('the outsider is counted', () => (ds.stats('udp-early')!.datagrams!.drops.find((d) => d.cause === 'allow-list')?.count ?? 0) === 1, 5000);
    assert.equal(echo.received(), 1);
    assert.equal(outsider.tally.seen.size, 0);
  } finally {
    await early.close();
    await outsider.close();
    await echo.close();
    await ds.close();
  }
});

test('bytes in flight are bounded: a datagram that would go over the flow\'s bound is dropped (queue-full), and the bound is given back', async () => {
  const ds = await dataServer({ maxUdpQueuedPerFlow: 1000 });
  const echo = await udpEcho();
  const sender = await udpSender(5);
  try {
    const [listener] = await ds.startListeners('udp-queue', 1, { protocol: 'udp' });
    await ds.setTargets('udp-queue', [echo.address]);
    await sender.send(listener!, numbered(5, 0, 2000));
    await sendSequence(sender, 5, listener!, 50, 100, 10, 20);
    await settled(() => sender.tally.seen.size);
    const d = ds.stats('udp-queue')!.datagrams!;
    assert.deepEqual(d.drops, [{ cause: 'queue-full', count: 1 }], 'the one over the bound');
    // Small ones paced: their bytes came back to the budget each time.
    assert.equal(sender.tally.seen.size, 50);
  } finally {
    await sender.close();
    await echo.close();
    await ds.close();
  }
});
