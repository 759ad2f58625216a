// The control port is bounded per source (issue 18 point 4): a real s2cs process, a
// flood of thousands of connections from one address (127.0.0.2), first silent TCP
// connections that never finish a TLS handshake, then complete TLS + HTTP/2 sessions
// that make no call. The source is held to --max-control-handshakes-per-source and
// --max-control-conns-per-source, the rest are reset and counted, a client from another
// address (127.0.0.1) completes its calls throughout, and s2cs's descriptors and memory
// come back near their baseline once the flood ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import * as http2 from 'node:http2';
import { ControlConnection } from '../../src/protocol/client.js';
import { fdCount, rssMiB, settleFds, startS2cs } from '../support/hostile.js';
import { startGateway } from '../support/gateway.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePortRange, spawnCli } from '../../src/demo/procs.js';

const FLOOD_FROM = '127.0.0.2';
const PER_SOURCE = 200;
const HANDSHAKES_PER_SOURCE = 50;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Held {
  /** Resolves true when the connection is up (TCP, or the HTTP/2 session), false when it failed or was reset. */
  up: Promise<boolean>;
  open(): boolean;
  destroy(): void;
}

/** A TCP connection from FLOOD_FROM that sends nothing: a TLS handshake that never starts. */
function silent(port: number): Held {
  const s: Socket = netConnect({ host: '127.0.0.1', port, localAddress: FLOOD_FROM });
  let closed = false;
  s.on('error', () => undefined);
  s.on('close', () => (closed = true));
  return {
    up: new Promise((resolve) => {
      s.once('connect', () => resolve(true));
      s.once('close', () => resolve(false));
    }),
    open: () => !closed,
    destroy: () => s.destroy(),
  };
}

/** A TLS + HTTP/2 session from FLOOD_FROM that makes no call (it answers PINGs as a client does). */
function idleSession(port: number): Held {
  const session = http2.connect(`https://127.0.0.1:${port}`, {
    createConnection: () =>
      tlsConnect({ socket: netConnect({ host: '127.0.0.1', port, localAddress: FLOOD_FROM }), servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['h2'] }),
  });
  let closed = false;
  session.on('error', () => undefined);
  session.on('close', () => (closed = true));
  return {
    up: new Promise((resolve) => {
      session.once('connect', () => resolve(true));
      session.once('close', () => resolve(false));
    }),
    open: () => !closed,
    destroy: () => session.destroy(),
  };
}

test('a flood of thousands of control connections from one address is held to its per-source limits; another address is served throughout; descriptors and memory come back', { timeout: 180_000 }, async () => {
  const gw = await startS2cs({
    tls: true,
    extra: ['--workers', '0', '--metrics-listen', '127.0.0.1:0', '--max-control-conns-per-source', String(PER_SOURCE), '--max-control-handshakes-per-source', String(HANDSHAKES_PER_SOURCE)],
  });
  const port = Number(gw.address.split(':')[1]);
  const legit = new ControlConnection(gw.address, { insecure: false, credentials: gw.credentials, deadlineMs: 10_000 });
  const flood: Held[] = [];
  let legitCalls = 0;
  const legitCall = async () => {
    assert.ok((await legit.status({ uid: '' })).free_ports > 0);
    legitCalls++;
  };
  try {
    await legitCall();
    // Let start-up allocations settle before the baseline.
    await sleep(2000);
    const fdBase = fdCount(gw.pid);
    const rssBase = rssMiB(gw.pid);
    let fdPeak = fdBase;
    let rssPeak = rssBase;
    const sample = () => {
      fdPeak = Math.max(fdPeak, fdCount(gw.pid));
      rssPeak = Math.max(rssPeak, rssMiB(gw.pid));
    };

    // 1. 2,000 silent connections, 200 at a time (the listen backlog): TLS handshakes that never start.
    const silentOnes: Held[] = [];
    for (let i = 0; i < 2000; i += 200) {
      const batch = Array.from({ length: 200 }, () => silent(port));
      silentOnes.push(...batch);
      await Promise.all(batch.map((c) => c.up));
      sample();
      await legitCall();
    }
    await sleep(300);
    const silentHeld = silentOnes.filter((c) => c.open()).length;
    sample();
    assert.ok(silentHeld <= HANDSHAKES_PER_SOURCE, `silent connections held: ${silentHeld}, at most ${HANDSHAKES_PER_SOURCE}`);
    assert.ok(fdCount(gw.pid) <= fdBase + HANDSHAKES_PER_SOURCE + 10, `s2cs descriptors ${fdCount(gw.pid)}, baseline ${fdBase}`);
    for (const c of silentOnes) c.destroy();
    flood.push(...silentOnes);

    // 2. 1,500 TLS + HTTP/2 sessions, in waves below the handshake limit: held to the connection limit.
    const sessions: Held[] = [];
    for (let i = 0; i < 1500; i += 30) {
      const wave = Array.from({ length: 30 }, () => idleSession(port));
      sessions.push(...wave);
      await Promise.all(wave.map((c) => c.up));
      if (i % 300 === 0) {
        sample();
        await legitCall();
      }
    }
    await sleep(300);
    const sessionsHeld = sessions.filter((c) => c.open()).length;
    sample();
    await legitCall();
    assert.ok(sessionsHeld <= PER_SOURCE, `sessions held: ${sessionsHeld}, at most ${PER_SOURCE}`);
    // The limit is what stopped them: the source holds all it may.
    assert.ok(sessionsHeld >= PER_SOURCE - 5, `sessions held: ${sessionsHeld}, about ${PER_SOURCE} expected`);
    assert.ok(fdCount(gw.pid) <= fdBase + PER_SOURCE + 10, `s2cs descriptors ${fdCount(gw.pid)}, baseline ${fdBase}`);
    flood.push(...sessions);

    const st = await legit.status({ uid: '' });
    const refused = (kind: string) => Number(st.refusals?.find((r) => r.kind === kind)?.count ?? 0);
    assert.ok(refused('control-handshakes-per-source') >= 2000 - HANDSHAKES_PER_SOURCE - 10, `control-handshakes-per-source: ${refused('control-handshakes-per-source')}`);
    assert.ok(refused('control-conns-per-source') >= 1500 - PER_SOURCE - 10, `control-conns-per-source: ${refused('control-conns-per-source')}`);
    const metricsAt = /metrics at (http:\/\/[^\s]+\/metrics)/.exec(gw.proc.stderr())![1]!;
    const metrics = await (await fetch(metricsAt)).text();
    const metric = (reason: string) => Number(new RegExp(`^scistream_control_refused_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(metrics)?.[1]);
    assert.equal(metric('control-handshakes-per-source'), refused('control-handshakes-per-source'));
    assert.equal(metric('control-conns-per-source'), refused('control-conns-per-source'));
    assert.equal(metric('control-conns'), 0);
    // Rate-limited: a line per kind, not one per refusal.
    const lines = gw.proc.stderr().split('\n').filter((l) => l.includes('control connection from 127.0.0.2 refused'));
    assert.ok(lines.length >= 1 && lines.length <= 10, `${lines.length} refusal log lines`);

    // 3. The flood ends: descriptors come back to the baseline, memory near it.
    for (const c of sessions) c.destroy();
    const fdAfter = await settleFds(gw.pid, fdBase + 5, 20_000);
    await legitCall();
    let rssAfter = rssMiB(gw.pid);
    for (let i = 0; i < 40 && rssAfter > rssBase + 40; i++) {
      await sleep(500);
      rssAfter = rssMiB(gw.pid);
    }
    process.stderr.write(
      `control flood from ${FLOOD_FROM}: ${silentHeld} of 2000 silent and ${sessionsHeld} of 1500 HTTP/2 connections held; ` +
        `s2cs descriptors ${fdBase} -> peak ${fdPeak} -> ${fdAfter}; RSS ${rssBase} MiB -> peak ${rssPeak} MiB -> ${rssAfter} MiB; ${legitCalls} calls from 127.0.0.1 answered\n`,
    );
    assert.ok(fdAfter <= fdBase + 5, `s2cs descriptors: ${fdBase} before, ${fdAfter} after`);
    assert.ok(rssAfter <= rssBase + 40, `s2cs RSS: ${rssBase} MiB before, ${rssAfter} MiB after (peak ${rssPeak} MiB)`);
    assert.ok(gw.alive());
  } finally {
    for (const c of flood) c.destroy();
    legit.close();
    await gw.stop();
  }
});

test('--max-control-conns bounds the control connections of all sources together; a connection that ends gives its place back', { timeout: 60_000 }, async () => {
  const gw = await startGateway({ controlAdmission: { maxConns: 20, maxConnsPerSource: 1000, maxHandshakesPerSource: 1000 } });
  const port = gw.server.port;
  const conns: Socket[] = [];
  try {
    await gw.client.status({ uid: '' });
    // The test's own client holds one.
    const opened = await Promise.all(
      Array.from({ length: 40 }, () => {
        const s = netConnect({ host: '127.0.0.1', port });
        conns.push(s);
        s.on('error', () => undefined);
        return new Promise<Socket>((resolve) => s.once('connect', () => resolve(s)));
      }),
    );
    await sleep(300);
    const open = opened.filter((s) => !s.destroyed && s.readyState === 'open').length;
    assert.equal(open, 19, `connections held: ${open}`);
    assert.equal(gw.server.admission.held().conns, 20);
    const refusals = gw.server.refusals.totals().find((r) => r.kind === 'control-conns')?.count;
    assert.equal(refusals, 21);
    for (const s of opened) s.destroy();
    const end = Date.now() + 5000;
    while (gw.server.admission.held().conns > 1 && Date.now() < end) await sleep(50);
    assert.equal(gw.server.admission.held().conns, 1);
    assert.ok((await gw.client.status({ uid: '' })).free_ports > 0);
  } finally {
    for (const s of conns) s.destroy();
    await gw.close();
  }
});

test('SIGHUP applies new control-port limits from the --config file: connections held beyond them stay, new ones follow them', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-admission-'));
  const file = join(dir, 'gw.toml');
  const range = await freePortRange(4);
  const base = ['listener-ip = "127.0.0.1"', 'control-host = "127.0.0.1"', 'port = 0', `port-range = "${range.first}-${range.last}"`, 'insecure = true', 'workers = 0'];
  writeFileSync(file, [...base, 'max-control-conns-per-source = 5'].join('\n'));
  const proc = spawnCli('s2cs', ['start', '--config', file]);
  const conns: Held[] = [];
  try {
    const port = Number((await proc.waitFor(/s2cs ready: control on [^\s]+:(\d+)/, { timeoutMs: 20_000 }))[1]);
    const openMany = async (count: number) => {
      const wave = Array.from({ length: count }, () => silent(port));
      conns.push(...wave);
      await Promise.all(wave.map((c) => c.up));
      await sleep(300);
      return conns.filter((c) => c.open()).length;
    };
    assert.equal(await openMany(10), 5);
    const from = proc.stderr().length;
    writeFileSync(file, [...base, 'max-control-conns-per-source = 8'].join('\n'));
    proc.child.kill('SIGHUP');
    await proc.waitFor(/reloaded: max-control-conns-per-source 5 -> 8/, { from });
    assert.equal(await openMany(10), 8);
  } finally {
    for (const c of conns) c.destroy();
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
