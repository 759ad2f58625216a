// The access log (s2ds/access-log.ts) of a real s2cs: one line per data connection at
// its end (a clean end, a reset by either side, a refusal), written by the data server
// that carried it (a worker process here), JSON or text as the log is; reopened on
// SIGHUP after logrotate renamed it; rate-limited with a summary in a flood; and a
// stream's last connections in `s2uc status UID`. In process too: a TLS WAN leg (leg wan,
// refused:wan-auth, shutdown), a producer reset mid-stream, a WAN path gone silent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ControlConnection } from '../../src/protocol/client.js';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { tempDir } from '../support/agent.js';
import { until } from '../support/until.js';
import { parseStrictJson } from '../support/strict-json.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { AccessLog, LocalDataServer } from '../../src/s2ds/index.js';
import { target, through } from '../support/sockets.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { createStreamCredentials } from '../../src/security/stream-credentials.js';
import type { StreamCredentials } from '../../src/transport/index.js';

const closed = (s: Socket) => new Promise<void>((resolve) => (s.destroyed && s.closed ? resolve() : s.once('close', () => resolve())));

interface Line {
  time: string;
  uid: string;
  listener: string;
  leg: string;
  peer: string;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  end: string;
}

/** The file's lines, each parsed strictly (a repeated key fails). */
function jsonLines(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => parseStrictJson(l) as Line);
}

async function linesUntil(file: string, what: string, n: number): Promise<Line[]> {
  return until(what, 15_000, async () => {
    const lines = jsonLines(file);
    return lines.length >= n ? lines : undefined;
  });
}

async function stopped(p: Proc): Promise<void> {
  assert.equal(await p.stop('SIGTERM', 15_000), 0, p.describe());
}

test('a worker writes one JSON line per connection: clean, reset by either side, refused; SIGHUP after a rename opens a new file; s2uc status shows them', async () => {
  const [port, range] = await Promise.all([freePort(), freePortRange(8)]);
  const dir = tempDir('scistream-access-log-');
  const file = join(dir, 'access.log');
  const t = await target();
  const s2cs = spawnCli('s2cs', [
    'start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`,
    '--state-dir', join(dir, 'state'), '--workers', '1', '--max-conns-per-listener', '1', '--log-format', 'json', '--access-log', file,
  ]);
  // Bound by address, not by a control secret: s2uc status from this host shows the stream in full.
  const client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000, bindBySecret: false });
  const uid = 'access-log-a';
  try {
    await s2cs.waitFor(/s2cs ready/, { timeoutMs: 20_000 });
    const r = await client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    const listener = r.listeners[0]!;
    const lport = Number(listener.split(':').pop());
    await client.update({ uid, remote_listeners: [`127.0.0.1:${t.port}`], role: 'CONS' });

    // Clean: FIN from the consumer, FIN back from the target.
    const a = await through(lport);
    a.write('12345');
    a.end();
    await closed(a);
    let lines = await linesUntil(file, 'the clean end', 1);

    // Reset by the consumer (the peer).
    const b = await through(lport);
    b.resetAndDestroy();
    lines = await linesUntil(file, 'the reset by the peer', 2);

    // Reset by the target.
    const c = await through(lport);
    const cClosed = closed(c);
    t.sockets.at(-1)!.resetAndDestroy();
    await cClosed;
    lines = await linesUntil(file, 'the reset by the target', 3);

    // Refused: the listener holds one connection (--max-conns-per-listener 1).
    const held = await through(lport);
    const extra = connect(lport, '127.0.0.1');
    extra.on('error', () => {});
    await closed(extra);
    lines = await linesUntil(file, 'the refusal', 4);
    held.end();
    await closed(held);
    lines = await linesUntil(file, 'the held connection', 5);

    for (const l of lines) {
      assert.equal(l.uid, uid);
      assert.equal(l.listener, listener);
      assert.equal(l.leg, 'lan');
      assert.match(l.peer, /^127\.0\.0\.1:\d+$/);
      assert.ok(Number.isInteger(l.durationMs) && l.durationMs >= 0);
      assert.ok(!Number.isNaN(Date.parse(l.time)));
    }
    assert.deepEqual(lines.map((l) => l.end), ['clean', 'reset-by-peer', 'reset-by-target', 'refused:conns-per-listener', 'clean']);
    // Bytes as the peer sent and received them: 5 in, "hi" out.
    assert.equal(lines[0]!.bytesIn, 5);
    assert.equal(lines[0]!.bytesOut, 2);
    assert.equal(lines[3]!.bytesIn, 0);
    assert.equal(lines[3]!.bytesOut, 0);
    console.log(`access log excerpt:\n${readFileSync(file, 'utf8').split('\n').slice(0, 4).join('\n')}`);

    // logrotate: rename, then SIGHUP; the worker opens the file again by its name.
    renameSync(file, `${file}.1`);
    const mark = s2cs.stderr().length;
    process.kill(s2cs.pid!, 'SIGHUP');
    await s2cs.waitFor(/reopened the access log[^\n]*nothing else is reloaded/, { stream: 'stderr', from: mark, timeoutMs: 10_000 });
    const d = await through(lport);
    d.end();
    await closed(d);
    const fresh = await linesUntil(file, 'a line in the new file', 1);
    assert.equal(fresh.length, 1);
    assert.equal(fresh[0]!.end, 'clean');
    assert.equal(jsonLines(`${file}.1`).length, 5, 'the renamed file got nothing more');

    // s2uc status UID: the last connections, newest first; --json carries them all.
    // (s2cs asks its workers each second: wait for the sixth.)
    await until('six recent connections in status', 10_000, async () => ((await client.status({ uid })).streams[0]?.recent_connections.length === 6 ? true : undefined));
    const human = spawnCli('s2uc', ['status', uid, '--s2cs', `127.0.0.1:${port}`, '--insecure']);
    assert.equal(await human.exited, 0, human.describe());
    const shown = human.stdout().split('\n').filter((l) => / lan 127\.0\.0\.1:\d+ -> /.test(l));
    assert.equal(shown.length, 6, human.stdout());
    assert.match(human.stdout(), /last ended +\d\d:\d\d:\d\d lan 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+, in 0 B, out 2 B, [\d.]+ s: clean/);
    assert.match(human.stdout(), /: refused:conns-per-listener\n/);
    console.log(`s2uc status ${uid}:\n${human.stdout()}`);
    const json = spawnCli('s2uc', ['status', uid, '--s2cs', `127.0.0.1:${port}`, '--insecure', '--json']);
    assert.equal(await json.exited, 0, json.describe());
    const report = JSON.parse(json.stdout()) as { gateways: { streams: { recentConnections: { end: string; leg: string; bytesIn: number }[] }[] }[] };
    const recent = report.gateways[0]!.streams[0]!.recentConnections;
    assert.deepEqual(recent.map((c) => c.end), ['clean', 'reset-by-peer', 'reset-by-target', 'refused:conns-per-listener', 'clean', 'clean']);
    assert.equal(recent[0]!.bytesIn, 5);

    await client.release({ uid });
  } finally {
    client.close();
    await stopped(s2cs);
    t.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a flood of refusals writes a bounded number of text lines and a summary of the rest, by cause', async () => {
  const [port, range] = await Promise.all([freePort(), freePortRange(4)]);
  const dir = tempDir('scistream-access-flood-');
  const file = join(dir, 'access.log');
  // In process (--workers 0), text lines (--log-format pretty).
  const s2cs = spawnCli('s2cs', [
    'start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`,
    '--state-dir', join(dir, 'state'), '--workers', '0', '--max-waiting-conns', '1', '--log-format', 'pretty', '--access-log', file,
  ]);
  const client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
  const FLOOD = 3000;
  let waiting: Socket | undefined;
  try {
    await s2cs.waitFor(/s2cs ready/, { timeoutMs: 20_000 });
    // No targets yet: one connection may wait, every other one is refused at once.
    const r = await client.req({ uid: 'flood', role: 'CONS', num_conn: 1, rate: 0 });
    const lport = Number(r.listeners[0]!.split(':').pop());
    waiting = connect(lport, '127.0.0.1');
    waiting.on('error', () => {});
    await until('the waiting connection', 5000, async () => ((await client.status({ uid: 'flood' })).streams[0]?.waiting_connections === 1 ? true : undefined));
    for (let sent = 0; sent < FLOOD; sent += 100) {
      await Promise.all(Array.from({ length: 100 }, () => {
        const s = connect(lport, '127.0.0.1');
        s.on('error', () => {});
        return closed(s);
      }));
    }
    await until('every refusal counted', 15_000, async () => (Number((await client.status({ uid: 'flood' })).streams[0]?.refused_connections) >= FLOOD ? true : undefined));
    waiting.destroy();
    await client.release({ uid: 'flood' });
  } finally {
    waiting?.destroy();
    client.close();
    // Stopping writes the summary of what the last interval left out.
    await stopped(s2cs);
  }
  try {
    const text = readFileSync(file, 'utf8').split('\n').filter(Boolean);
    const refused = text.filter((l) => / end=refused:waiting-conns$/.test(l));
    const summaries = text.filter((l) => / suppressed \d+ lines /.test(l));
    assert.ok(refused.length >= 256, `the burst is written in full: ${refused.length}`);
    assert.ok(refused.length < 256 + 20 * 60, `bounded: ${refused.length} lines`);
    assert.ok(summaries.length >= 1, text.slice(-5).join('\n'));
    const left = summaries.reduce((n, l) => n + Number(/ (\d+) refused:waiting-conns/.exec(l)?.[1] ?? 0), 0);
    assert.equal(refused.length + left, FLOOD, 'every refusal is either a line or counted in a summary');
    assert.match(refused[0]!, /^\d{4}-\d\d-\d\dT[\d:.]+Z uid=flood listener=127\.0\.0\.1:\d+ leg=lan peer=127\.0\.0\.1:\d+ in=0 out=0 duration=[\d.]+s end=refused:waiting-conns$/);
    console.log(`flood of ${FLOOD}: ${refused.length} lines, ${summaries.length} summary line(s): ${summaries.join(' | ')}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const asTransport = (c: { certificate: string; private_key: string; peer_certificate: string }): StreamCredentials => ({
  cert: c.certificate,
  key: c.private_key,
  peerCert: c.peer_certificate,
});

/** A logger writing JSON lines into `lines` (what stderr would get). */
function capturingLogger(lines: string[]): Logger {
  return pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(...chunk.toString().split('\n').filter(Boolean)), done()) }));
}

test('over a TLS WAN leg: the WAN side logs leg wan (to stderr by default), the LAN side leg lan; a peer without credentials is refused:wan-auth; shutdown ends the rest', async () => {
  const dir = tempDir('scistream-access-wan-');
  const file = join(dir, 'cons.log');
  const stderr: string[] = [];
  // The access-log lines among the rest of the log (refusals are logged too).
  const records = () => stderr.map((l) => parseStrictJson(l) as Line & { msg: string }).filter((l) => typeof l.end === 'string');
  const app = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appAddress = { host: '127.0.0.1', port: (app.address() as { port: number }).port };
  const creds = await createStreamCredentials('access-wan');
  const base = { bindHost: '127.0.0.1', bufferSize: 256 * 1024, waitLimit: 8, waitTimeoutMs: 10_000, logger: silentLogger };
  const prod = new LocalDataServer({ ...base, portRange: await freePortRange(3), logger: capturingLogger(stderr) });
  const consLog = new AccessLog({ file, format: 'json', logger: silentLogger });
  const cons = new LocalDataServer({ ...base, portRange: await freePortRange(3), accessLog: consLog });
  const open: Socket[] = [];
  try {
    const wan = await prod.startListeners('w', 1);
    const [lan] = await cons.startListeners('w', 1);
    await prod.setTargets('w', [appAddress], { side: 'accept', credentials: asTransport(creds.producerSide) });
    await cons.setTargets('w', wan, { side: 'connect', credentials: asTransport(creds.consumerSide) });

    // 1000 bytes there and back, then a clean end from the consumer (the echo app ends too).
    const s = connect(lan!.port, '127.0.0.1');
    s.on('error', () => {});
    let back = 0;
    s.on('data', (d: Buffer) => (back += d.length));
    s.end(Buffer.alloc(1000, 7));
    await closed(s);
    assert.equal(back, 1000);
    const lanLines = await linesUntil(file, 'the LAN line', 1);
    assert.equal(lanLines[0]!.leg, 'lan');
    assert.equal(lanLines[0]!.end, 'clean');
    assert.equal(lanLines[0]!.bytesIn, 1000);
    assert.equal(lanLines[0]!.bytesOut, 1000);
    const wanLine = await until('the WAN line on stderr', 10_000, async () =>
      records().find((l) => l.end === 'clean'));
    assert.equal(wanLine.leg, 'wan');
    assert.equal(wanLine.uid, 'w');
    assert.equal(wanLine.msg, 'connection ended: clean');
    // Through TLS with frames: more than the payload each way.
    assert.ok(wanLine.bytesIn > 1000 && wanLine.bytesOut > 1000, `${wanLine.bytesIn} in, ${wanLine.bytesOut} out`);
    console.log(`1000 bytes each way: LAN side ${lanLines[0]!.bytesIn} in / ${lanLines[0]!.bytesOut} out, WAN side ${wanLine.bytesIn} in / ${wanLine.bytesOut} out`);

    // A WAN peer without the stream's credentials (plain bytes, no TLS).
    const intruder = connect(wan[0]!.port, '127.0.0.1');
    intruder.on('error', () => {});
    intruder.write('GET / HTTP/1.0\r\n\r\n');
    await closed(intruder);
    const refused = await until('the refusal on stderr', 10_000, async () =>
      records().find((l) => l.end.startsWith('refused:')));
    assert.equal(refused.end, 'refused:wan-auth');
    assert.equal(refused.leg, 'wan');
    assert.ok(refused.bytesIn > 0, 'what the intruder sent was read');

    // A connection still forwarding when the data server stops: 'shutdown'.
    const last = connect(lan!.port, '127.0.0.1');
    last.on('error', () => {});
    open.push(last);
    last.write('x');
    await new Promise((r) => last.once('data', r));
    await prod.close();
    const ends = await until('the shutdown line', 10_000, async () => {
      const e = records().map((l) => l.end);
      return e.includes('shutdown') ? e : undefined;
    });
    assert.deepEqual(ends, ['clean', 'refused:wan-auth', 'shutdown']);
    assert.equal(prod.stats('w'), undefined);
  } finally {
    for (const s of open) s.destroy();
    await Promise.all([prod.close(), cons.close()]);
    consLog.close();
    app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a producer that resets mid-stream, its data still queued, is reset-by-target, never taken for the consumer', async () => {
  const dir = tempDir('scistream-access-midstream-');
  const file = join(dir, 'access.log');
  const log = new AccessLog({ file, format: 'json', logger: silentLogger });
  // The producer writes 2 MiB and resets at once: the reset can arrive while its data waits in the kernel.
  const producer = createServer((s) => {
    s.on('error', () => {});
    s.write(Buffer.alloc(2 * 1024 * 1024, 1), () => undefined);
    setImmediate(() => s.resetAndDestroy());
  });
  await new Promise<void>((r) => producer.listen(0, '127.0.0.1', r));
  const ds = new LocalDataServer({ bindHost: '127.0.0.1', portRange: await freePortRange(3), bufferSize: 256 * 1024, waitLimit: 8, waitTimeoutMs: 10_000, logger: silentLogger, accessLog: log });
  try {
    const [l] = await ds.startListeners('mid', 1);
    await ds.setTargets('mid', [{ host: '127.0.0.1', port: (producer.address() as { port: number }).port }]);
    const ROUNDS = 5;
    for (let i = 0; i < ROUNDS; i++) {
      const s = connect(l!.port, '127.0.0.1');
      s.on('error', () => {});
      s.resume();
      await closed(s);
    }
    const lines = await linesUntil(file, 'every round logged', ROUNDS);
    assert.deepEqual(lines.map((x) => x.end), Array(ROUNDS).fill('reset-by-target'));
  } finally {
    await ds.close();
    log.close();
    producer.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a WAN peer gone silent (a frozen path) ends both gateways\' lines as wan-broken:dead-peer, the WAN side leg wan', async () => {
  const dir = tempDir('scistream-access-dead-');
  const files = { prod: join(dir, 'prod.log'), cons: join(dir, 'cons.log') };
  const logs = { prod: new AccessLog({ file: files.prod, format: 'json', logger: silentLogger }), cons: new AccessLog({ file: files.cons, format: 'json', logger: silentLogger }) };
  const app = createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const creds = await createStreamCredentials('access-dead');
  const base = { bindHost: '127.0.0.1', bufferSize: 256 * 1024, waitLimit: 8, waitTimeoutMs: 10_000, logger: silentLogger, wanDeadAfterMs: 1500 };
  const prod = new LocalDataServer({ ...base, portRange: await freePortRange(3), accessLog: logs.prod });
  const cons = new LocalDataServer({ ...base, portRange: await freePortRange(3), accessLog: logs.cons });
  // The WAN path: a relay that can go silent without closing anything (a black-holing firewall).
  const relayed: Socket[] = [];
  let frozen = false;
  const wan = await prod.startListeners('d', 1);
  const relay = createServer((a) => {
    const b = connect(wan[0]!.port, '127.0.0.1');
    relayed.push(a, b);
    for (const [from, to] of [[a, b], [b, a]] as const) {
      from.on('error', () => {});
      from.on('data', (d: Buffer) => {
        if (!frozen) to.write(d);
      });
    }
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  try {
    const [lan] = await cons.startListeners('d', 1);
    await prod.setTargets('d', [{ host: '127.0.0.1', port: (app.address() as { port: number }).port }], { side: 'accept', credentials: asTransport(creds.producerSide) });
    await cons.setTargets('d', [{ host: '127.0.0.1', port: (relay.address() as { port: number }).port }], { side: 'connect', credentials: asTransport(creds.consumerSide) });
    const s = connect(lan!.port, '127.0.0.1');
    s.on('error', () => {});
    s.write('ping');
    await new Promise((r) => s.once('data', r));
    frozen = true;
    await closed(s);
    const [p] = await linesUntil(files.prod, 'the WAN side line', 1);
    const [c] = await linesUntil(files.cons, 'the LAN side line', 1);
    assert.equal(p!.end, 'wan-broken:dead-peer');
    assert.equal(p!.leg, 'wan');
    assert.equal(c!.end, 'wan-broken:dead-peer');
    assert.equal(c!.leg, 'lan');
    assert.equal(c!.bytesIn, 4);
    assert.equal(c!.bytesOut, 4);
  } finally {
    for (const x of relayed) x.destroy();
    await Promise.all([prod.close(), cons.close()]);
    logs.prod.close();
    logs.cons.close();
    relay.close();
    app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
