// A UDP stream through two gateways with the default, encrypted WAN leg: datagrams
// cross between the gateways only inside the stream's TLS connections (the consumer
// gateway dials the producer gateway's listeners). Nothing is sent in plain: a plain
// datagram straight to the producer gateway's UDP port is dropped, a TCP connection
// without the stream's credentials gets nothing. TCP to the stream's ports (iperf3 -u's
// control connection) crosses in TLS connections of its own.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, spawnCli } from '../../src/demo/procs.js';
import { runCli as run, startCliGateway as startS2cs } from '../support/cli-gateway.js';
import type { Address } from '../../src/protocol/address.js';
import { sendHello } from '../../src/app/controller.js';
import { parseAddress } from '../../src/protocol/address.js';
import { releaseStream, requestStream } from '../../src/s2uc/flows.js';
import { startGateway } from '../support/gateway.js';
import { numbered, sendSequence, settled, udpEcho, udpSender } from '../support/datagrams.js';
import { until } from '../support/until.js';

const OPTS = { insecure: true, deadlineMs: 20_000 };

// The CLIs keep state under $SCISTREAM_HOME: this run's own directory.
const HOME = mkdtempSync(join(tmpdir(), 'scistream-udp-tls-home-'));
process.env.SCISTREAM_HOME = HOME;
after(() => rmSync(HOME, { recursive: true, force: true }));

/** Connects over TCP, writes a few bytes, and tells how many came back before the gateway closed it. */
function tcpKnock(to: Address): Promise<{ bytes: number; closedMs: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let bytes = 0;
    const s = connect(to.port, to.host, () => s.write(numbered(9, 99, 100)));
    s.on('data', (d) => (bytes += d.length));
    s.on('error', () => {});
    s.on('close', () => resolve({ bytes, closedMs: Date.now() - t0 }));
    setTimeout(() => s.destroy(), 15_000).unref();
  });
}

/** A TCP server on the UDP target's port: greets, then echoes what it reads, and ends when its peer ends. */
async function tcpGreeterEcho(port: number): Promise<{ close(): Promise<void> }> {
  const { createServer } = await import('node:net');
  const server = createServer((s) => {
    s.on('error', () => {});
    s.write('hello from the producer\n');
    s.pipe(s);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
  return { close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** Reads the greeting, sends `n` patterned bytes, counts those echoed back intact, ends, and says how the connection ended. */
function tcpTalk(to: Address, n: number): Promise<{ greeting: string; echoed: number; end: 'clean' | 'reset' }> {
  const GREETING = 'hello from the producer\n'.length;
  const payload = Buffer.alloc(n, 0);
  for (let i = 0; i < n; i++) payload[i] = (i * 7) & 0xff;
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    let sent = false;
    let end: 'clean' | 'reset' = 'clean';
    const s = connect(to.port, to.host);
    const timer = setTimeout(() => s.destroy(new Error('no answer within 15 s')), 15_000);
    s.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (!sent && got.length >= GREETING) {
        sent = true;
        s.write(payload);
      }
      if (got.length >= GREETING + n) s.end();
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') end = 'reset';
      else reject(err);
    });
    s.on('close', () => {
      clearTimeout(timer);
      const greeting = got.subarray(0, GREETING).toString();
      const echoed = got.subarray(GREETING);
      let intact = 0;
      while (intact < echoed.length && intact < n && echoed[intact] === payload[intact]) intact++;
      resolve({ greeting, echoed: intact, end });
    });
  });
}

test('numbered datagrams through two gateways over the TLS WAN leg: none lost, duplicated, reordered or corrupt; plain ones to the producer gateway dropped', async () => {
  // Default secure data settings: no --allow-plaintext-data on either gateway.
  const [prod, cons] = await Promise.all([startGateway({ allowPlaintextData: false }), startGateway({ allowPlaintextData: false })]);
  const echo = await udpEcho();
  const senders = await Promise.all([2, 3].map((i) => udpSender(i, `127.0.0.${i}`)));
  const stranger = await udpSender(9, '127.0.0.9');
  try {
    const uid = randomUUID();
    const hellos: Promise<unknown>[] = [];
    const map = await requestStream(prod.address, cons.address, { numConn: 2, uid, protocol: 'udp' }, {
      ...OPTS,
      onAppSecret: (secret, server, role) => {
        if (role === 'PROD') hellos.push(sendHello(server, uid, 'PROD', [`127.0.0.1:${echo.address.port}`], { ...OPTS, appSecret: secret }));
      },
    });
    await Promise.all(hellos);
    assert.equal(map.wan, 'tls');
    const started = Date.now();
    // The consumer gateway dials its WAN connections once it has its targets: wait until datagrams pass.
    const probe = await udpSender(4, '127.0.0.4');
    const first = parseAddress(map.consListeners[0]!, 'listener');
    const second = parseAddress(map.consListeners[1]!, 'listener');
    try {
      // Each round sends seq 0 to both listeners: a duplicate means both WAN connections carried one.
      await until('datagrams through both WAN connections', 10_000, async () => {
        await probe.send(first, numbered(4, 0, 10));
        await probe.send(second, numbered(4, 0, 10));
        await new Promise((r) => setTimeout(r, 100));
        return probe.tally.duplicates > 0 ? true : undefined;
      });
    } finally {
      await probe.close();
    }
    console.log(`# both WAN connections up ${Date.now() - started} ms after the request returned`);
    const count = 1000;
    const before = echo.received();
    await Promise.all(senders.map((s, i) => sendSequence(s, i + 2, i === 0 ? first : second, count, 1000, 8, 5)));
    await settled(() => senders.reduce((n, s) => n + s.tally.seen.size, 0));
    for (const s of senders) {
      const t = s.tally;
      console.log(`# two gateways, TLS WAN: sender ${t.sender}: sent ${count}, back ${t.seen.size}, lost ${t.lost(count)}, dup ${t.duplicates}, reordered ${t.reordered}, corrupt ${t.corrupt}, foreign ${t.foreign}`);
      assert.equal(t.corrupt, 0);
      assert.equal(t.duplicates, 0);
      assert.equal(t.reordered, 0);
      assert.equal(t.foreign, 0, 'replies reach their own sender');
      assert.equal(t.lost(count), 0);
    }
    assert.equal(echo.received() - before, 2 * count);

    // The producer gateway's UDP port of the stream takes nothing in plain.
    const prodListener = parseAddress(map.prodListeners[0]!, 'listener');
    const echoed = echo.received();
    for (let i = 0; i < 5; i++) await stranger.send(prodListener, numbered(9, i, 100));
    await until('the plain datagrams counted as dropped (no-flow)', 5_000, async () => {
      const p = (await prod.client.status({ uid })).streams[0]!;
      return p.datagram_drops.some((d) => d.kind === 'no-flow' && Number(d.count) >= 5) ? true : undefined;
    });
    assert.equal(stranger.tally.seen.size, 0);

    // A TCP connection to it without the stream's credentials: closed, nothing forwarded.
    const got = await tcpKnock(prodListener);
    console.log(`# TCP without credentials to the producer gateway's listener: ${got.bytes} bytes back (TLS alert at most), closed after ${got.closedMs} ms`);
    assert.ok(got.bytes < 64, 'at most a TLS alert');
    await until('the producer gateway counts the failed handshake (wan-auth)', 5_000, async () => {
      const st = await prod.client.status({});
      return st.refusals.some((r) => r.kind === 'wan-auth' && Number(r.count) >= 1) ? true : undefined;
    });
    assert.equal(echo.received(), echoed, 'nothing plain reached the target');
    // TCP to the consumer gateway's port of the stream (what iperf3 -u opens beside its
    // datagrams) crosses the WAN leg in its own TLS connection to the producer's target on
    // the same port: a server that speaks first, then echoes.
    const tcp = await tcpGreeterEcho(echo.address.port);
    try {
      const talk = await tcpTalk(first, 256 * 1024);
      console.log(`# TCP through the encrypted UDP stream: greeting ${JSON.stringify(talk.greeting)}, ${talk.echoed} of ${256 * 1024} bytes echoed intact, ended ${talk.end}`);
      assert.equal(talk.greeting, 'hello from the producer\n');
      assert.equal(talk.echoed, 256 * 1024);
      assert.equal(talk.end, 'clean');
    } finally {
      await tcp.close();
    }
    // The datagram carrier went on beside it.
    const after = echo.received();
    await sendSequence(senders[0]!, 2, first, 100, 1000, 8, 5);
    await until('datagrams still cross after the TCP connection', 5_000, async () => (echo.received() - after >= 100 ? true : undefined));

    // Status: both sides report a UDP stream with its counters.
    const [pp, c] = await Promise.all([prod.client.status({ uid }), cons.client.status({ uid })]);
    for (const [name, st] of [['producer', pp.streams[0]!], ['consumer', c.streams[0]!]] as const) {
      assert.equal(st.protocol, 'udp', name);
      assert.ok(Number(st.datagrams_to_target) >= 2 * count, `${name} counted the datagrams to the target`);
      assert.ok(Number(st.datagrams_from_target) >= 2 * count, `${name} counted the replies`);
    }
    const held = [...map.prodListeners, ...map.consListeners].map((l) => parseAddress(l, 'listener').port);
    await releaseStream(uid, [prod.address, cons.address], OPTS);
    // Release frees the ports: each can be bound again, TCP and UDP.
    for (const port of held) await assertFree(port);
  } finally {
    await Promise.all([...senders, stranger].map((s) => s.close()));
    await echo.close();
    await Promise.all([prod.close(), cons.close()]);
  }
});

async function assertFree(port: number): Promise<void> {
  const { createServer } = await import('node:net');
  const { createSocket } = await import('node:dgram');
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const udp = createSocket('udp4');
  await new Promise<void>((resolve, reject) => udp.once('error', reject).bind(port, '127.0.0.1', () => resolve()));
  await new Promise<void>((resolve) => udp.close(() => resolve()));
}

interface UdpStatus {
  gateways: { streams: { uid: string; protocol?: string; datagrams?: { toTarget: number; fromTarget: number; flows: number } }[] }[];
}

test('s2cs, s2uc request --protocol udp and s2app hello as processes: datagrams cross the TLS WAN leg, status shows them, release frees the ports', async () => {
  const metricsPort = await freePort();
  const [prod, cons] = await Promise.all([startS2cs(['--metrics-listen', `127.0.0.1:${metricsPort}`]), startS2cs()]);
  const echo = await udpEcho();
  const senders = await Promise.all([2, 3].map((i) => udpSender(i, `127.0.0.${i}`)));
  try {
    const uid = randomUUID();
    const request = spawnCli('s2uc', ['--insecure', 'request', '--prod-s2cs', prod.address, '--cons-s2cs', cons.address, '--num-conn', '2', '--protocol', 'udp', '--json', '--uid', uid]);
    const hello = await run('s2app', ['hello', '--insecure', '--s2cs', prod.address, '--uid', uid, '--role', 'PROD', '--listeners', `127.0.0.1:${echo.address.port}`]);
    assert.equal(hello.code, 0, hello.stderr);
    assert.equal(await request.exited, 0, request.stderr());
    const map = JSON.parse(request.stdout().trim().split('\n').at(-1)!) as { consListeners: string[]; prodListeners: string[]; wan: string };
    assert.equal(map.wan, 'tls');
    const listeners = map.consListeners.map((l) => parseAddress(l, 'listener'));
    const probe = await udpSender(4, '127.0.0.4');
    try {
      await until('datagrams through both WAN connections', 10_000, async () => {
        for (const l of listeners) await probe.send(l, numbered(4, 0, 10));
        await new Promise((r) => setTimeout(r, 100));
        return probe.tally.duplicates > 0 ? true : undefined;
      });
    } finally {
      await probe.close();
    }
    const count = 1000;
    const before = echo.received();
    await Promise.all(senders.map((s, i) => sendSequence(s, i + 2, listeners[i]!, count, 1000, 8, 5)));
    await settled(() => senders.reduce((n, s) => n + s.tally.seen.size, 0));
    for (const s of senders) {
      const t = s.tally;
      console.log(`# processes, TLS WAN: sender ${t.sender}: sent ${count}, back ${t.seen.size}, lost ${t.lost(count)}, dup ${t.duplicates}, reordered ${t.reordered}, corrupt ${t.corrupt}, foreign ${t.foreign}`);
      assert.equal(t.corrupt, 0);
      assert.equal(t.duplicates, 0);
      assert.equal(t.reordered, 0);
      assert.equal(t.foreign, 0);
      assert.equal(t.lost(count), 0);
    }
    assert.equal(echo.received() - before, 2 * count);
    for (const gw of [prod, cons]) {
      const st = await run('s2uc', ['--insecure', 'status', '--s2cs', gw.address, '--json']);
      const stream = (JSON.parse(st.stdout) as UdpStatus).gateways[0]!.streams.find((x) => x.uid === uid)!;
      assert.equal(stream.protocol, 'udp');
      assert.ok(stream.datagrams!.toTarget >= 2 * count && stream.datagrams!.fromTarget >= 2 * count, JSON.stringify(stream.datagrams));
    }
    // Plain datagrams straight to the producer gateway's port are dropped (no-flow); the
    // gateway-wide counter, summed over its workers, keeps them after the release.
    const stranger = await udpSender(9, '127.0.0.9');
    try {
      for (let i = 0; i < 5; i++) await stranger.send(parseAddress(map.prodListeners[0]!, 'listener'), numbered(9, i, 100));
    } finally {
      await stranger.close();
    }
    const held = [...map.prodListeners, ...map.consListeners].map((l) => parseAddress(l, 'listener').port);
    const rel = await run('s2uc', ['--insecure', 'release', uid, '--s2cs', prod.address, '--s2cs', cons.address]);
    assert.equal(rel.code, 0, rel.stderr);
    for (const port of held) await assertFree(port);
    const dropped = await until('the released stream\'s drops in /metrics', 10_000, async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const n = Number(/^scistream_datagrams_dropped_total\{cause="no-flow"\} (\d+)$/m.exec(text)?.[1] ?? 0);
      return n >= 5 && !text.includes(`uid="${uid}"`) ? text : undefined;
    });
    assert.match(dropped, /^scistream_datagrams_dropped_total\{cause="queue-full"\} 0$/m, 'every cause from the first scrape');
  } finally {
    await Promise.all(senders.map((s) => s.close()));
    await echo.close();
    await Promise.all([prod.proc.stop(), cons.proc.stop()]);
  }
});
