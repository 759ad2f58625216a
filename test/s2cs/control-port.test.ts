// The control port frees what it cannot use: malformed HTTP/2, stalled TLS
// handshakes, silent and idle connections are closed by the server and their
// descriptors freed; clients reconnect after an idle close.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import * as http2 from 'node:http2';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { loadServerTls, serverCredentials } from '../../src/security/control-tls.js';
import { ConnectionPool, ControlConnection } from '../../src/protocol/client.js';
import type { ControlPortLimits } from '../../src/s2cs/control-port.js';
import { freePort, freePortRange, spawnCli } from '../../src/demo/procs.js';

const fdCount = (pid: number | 'self' = 'self') => readdirSync(`/proc/${pid}/fd`).length;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits (up to `boundMs`, generous) for the descriptor count to come back to `baseline` ± 5. */
async function settled(baseline: number, pid: number | 'self' = 'self', boundMs = 20_000): Promise<number> {
  const end = Date.now() + boundMs;
  while (Math.abs(fdCount(pid) - baseline) > 5 && Date.now() < end) await sleep(50);
  return fdCount(pid);
}

/** Seeded, so that a failure can be replayed. */
function rng(seed: number): (n: number) => Buffer {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  return (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(next() * 256)));
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
function frame(type: number, flags: number, stream: number, payload: Buffer, length = payload.length): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}
const SETTINGS = frame(4, 0, 0, Buffer.alloc(0));
/** These tests hold hundreds of connections from 127.0.0.1: the per-source limits (control-admission.test.ts) are out of the way. */
const UNBOUNDED = { maxConnsPerSource: 100_000, maxHandshakesPerSource: 100_000, maxConns: 100_000 };

async function tlsGateway(dir: string, limits: ControlPortLimits): Promise<{ gw: TestGateway; certFile: string }> {
  const tls = await loadServerTls({ stateDir: dir, names: [] });
  const certFile = join(dir, 'server.pem');
  writeFileSync(certFile, tls.cert);
  return { gw: await startGateway({ credentials: serverCredentials(tls, undefined, limits.handshakeTimeoutMs), controlPort: limits, controlAdmission: UNBOUNDED }), certFile };
}

interface Opened {
  /** Resolves when the server has closed the connection. */
  closed: Promise<void>;
  openedAt: number;
  destroy(): void;
  /** For failure messages. */
  kind?: string;
}

/** A raw connection that writes `chunks` (one per turn) and keeps its side open until the server closes it. */
function raw(port: number, tls: boolean, chunks: Buffer[], connected?: () => void): Opened {
  const openedAt = Date.now();
  const s: Socket = tls
    ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['h2'] })
    : netConnect({ host: '127.0.0.1', port });
  s.on('error', () => {});
  // Written as soon as the transport is up, in separate writes a few milliseconds apart.
  s.once(tls ? 'secureConnect' : 'connect', async () => {
    connected?.();
    for (const c of chunks) {
      if (s.destroyed) return;
      s.write(c);
      await sleep(5);
    }
  });
  s.resume();
  return { closed: new Promise((resolve) => s.once('close', () => resolve())), openedAt, destroy: () => s.destroy() };
}

/** Resolves when every connection was closed by the server; fails after a generous bound. */
async function allClosed(conns: Opened[], what: string, boundMs = 60_000): Promise<number[]> {
  const closedAt: number[] = new Array(conns.length);
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const open = new Map<string, number>();
      conns.forEach((c, i) => {
        if (closedAt[i] === undefined) open.set(c.kind ?? '?', (open.get(c.kind ?? '?') ?? 0) + 1);
      });
      const total = [...open.values()].reduce((a, b) => a + b, 0);
      reject(new Error(`${total} of ${conns.length} ${what} connections still open after ${boundMs} ms: ${JSON.stringify(Object.fromEntries(open))}`));
    }, boundMs);
  });
  try {
    await Promise.race([Promise.all(conns.map((c, i) => c.closed.then(() => void (closedAt[i] = Date.now())))), bound]);
  } finally {
    clearTimeout(timer);
    for (const c of conns) c.destroy();
  }
  return closedAt;
}

test('500 malformed connections: each is closed by the server, descriptors back to the baseline, the server still answers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-cport-'));
  // Short liveness times so that the test is quick; the idle timeout is out of the way.
  const limits: ControlPortLimits = { idleTimeoutMs: 600_000, keepaliveIntervalMs: 1000, handshakeTimeoutMs: 2000 };
  const plain = await startGateway({ controlPort: limits, controlAdmission: UNBOUNDED });
  const { gw: secure, certFile } = await tlsGateway(dir, limits);
  const tlsClient = await ControlConnection.open(secure.address, { insecure: false, tls: { serverCert: certFile }, deadlineMs: 10_000 });
  try {
    await plain.client.status({ uid: '' });
    await tlsClient.status({ uid: '' });
    const baseline = fdCount();
    const rand = rng(9);
    const kinds: [string, boolean, () => Buffer[]][] = [
      ['random bytes', false, () => [rand(1 + rand(1)[0]!)]],
      ['preface + random HPACK', false, () => [PREFACE, SETTINGS, frame(1, 4, 1, rand(40))]],
      ['preface + DATA with a bogus length', false, () => [Buffer.concat([PREFACE, SETTINGS, frame(0, 0, 1, rand(10), 0xffffff)])]],
      ['preface + random frames', false, () => [Buffer.concat([PREFACE, rand(200)])]],
      ['half a preface', false, () => [PREFACE.subarray(0, 10)]],
      ['nothing', false, () => []],
      ['partial ClientHello', false, () => [Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x01, 0x00, 0x01]), rand(20)])]],
      ['TLS, then random HPACK', true, () => [PREFACE, SETTINGS, frame(1, 4, 1, rand(40))]],
      ['TLS, then a bogus DATA length', true, () => [Buffer.concat([PREFACE, SETTINGS, frame(0, 0, 1, rand(10), 0xffffff)])]],
      ['TLS, then random bytes', true, () => [rand(100)]],
    ];
    const tlsPort = (kind: string) => kind.includes('TLS') || kind.includes('ClientHello');
    let sent = 0;
    for (let batch = 0; batch < 5; batch++) {
      const conns: Opened[] = [];
      for (let i = 0; i < 100; i++, sent++) {
        const [kind, overTls, payload] = kinds[sent % kinds.length]!;
        // 'nothing' goes to both ports in turn: a silent TCP connection and a stalled TLS handshake.
        const toTls = tlsPort(kind) || (kind === 'nothing' && batch % 2 === 1);
        conns.push({ ...raw(toTls ? secure.server.port : plain.server.port, overTls, payload()), kind: `${kind}${toTls ? ' (TLS port)' : ''}` });
      }
      await allClosed(conns, `batch ${batch}`);
    }
    assert.equal(sent, 500);
    // Alive and serving, on both ports.
    assert.ok((await plain.client.status({ uid: '' })).free_ports > 0);
    assert.ok((await tlsClient.status({ uid: '' })).free_ports > 0);
    const after = await settled(baseline);
    assert.ok(Math.abs(after - baseline) <= 5, `descriptors: ${baseline} before, ${after} after`);
  } finally {
    tlsClient.close();
    await plain.close();
    await secure.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('1,000 idle connections (plain and TLS, silent, preface only, HTTP/2 with no call) are closed after the idle timeout', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-cidle-'));
  const idleTimeoutMs = 2000;
  // Default liveness times (a PING every 2 s, 5 s to answer it): the idle timeout comes first.
  const plain = await startGateway({ controlPort: { idleTimeoutMs }, controlAdmission: UNBOUNDED });
  const { gw: secure } = await tlsGateway(dir, { idleTimeoutMs });
  try {
    await plain.client.status({ uid: '' });
    const baseline = fdCount();
    /** An HTTP/2 client session that makes no call (it answers PINGs and SETTINGS as a real client does). */
    const h2 = (port: number, tls: boolean): Opened => {
      const openedAt = Date.now();
      const session = http2.connect(`${tls ? 'https' : 'http'}://127.0.0.1:${port}`, tls ? { rejectUnauthorized: false } : {});
      session.on('error', () => {});
      return { openedAt, closed: new Promise((resolve) => session.once('close', () => resolve())), destroy: () => session.destroy() };
    };
    const kinds: [string, (connected: () => void) => Opened][] = [
      ['plain, silent', (c) => raw(plain.server.port, false, [], c)],
      ['plain, preface only', (c) => raw(plain.server.port, false, [PREFACE, SETTINGS], c)],
      ['plain, HTTP/2 with no call', () => h2(plain.server.port, false)],
      ['TLS, silent', (c) => raw(secure.server.port, true, [], c)],
      ['TLS, preface only', (c) => raw(secure.server.port, true, [PREFACE, SETTINGS], c)],
      ['TLS, HTTP/2 with no call', () => h2(secure.server.port, true)],
    ];
    const conns: Opened[] = [];
    const connectedAt: number[] = [];
    // Opened 100 at a time (the listen backlog), all held at once.
    for (let i = 0; i < 1000; i += 100) {
      const batch = Array.from({ length: 100 }, (_, j) => {
        const [kind, open] = kinds[(i + j) % kinds.length]!;
        return { ...open(() => void (connectedAt[i + j] = Date.now())), kind };
      });
      conns.push(...batch);
      await sleep(20);
    }
    const closedAt = await allClosed(conns, 'idle');
    // Timers do not fire early: nothing was closed before the idle timeout (from its own start).
    const early = closedAt.filter((t, i) => t - (connectedAt[i] ?? conns[i]!.openedAt) < idleTimeoutMs * 0.9).length;
    assert.equal(early, 0, `${early} connections closed before the idle timeout`);
    const after = await settled(baseline);
    assert.ok(Math.abs(after - baseline) <= 5, `descriptors: ${baseline} before, ${after} after`);
  } finally {
    await plain.close();
    await secure.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Established client-side TCP connections to 127.0.0.1:`port` (from /proc/net/tcp). */
function established(port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[2] === `0100007F:${hexPort}` && f[3] === '01').length;
}

test('a client whose connection the server closed as idle makes its next call on a new one (ControlConnection and ConnectionPool, plain and TLS)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-creconn-'));
  const idleTimeoutMs = 1000;
  const plain = await startGateway({ controlPort: { idleTimeoutMs } });
  const { gw: secure, certFile } = await tlsGateway(dir, { idleTimeoutMs });
  const pooled = await startGateway({ controlPort: { idleTimeoutMs } });
  const pool = new ConnectionPool();
  const tlsClient = await ControlConnection.open(secure.address, { insecure: false, tls: { serverCert: certFile }, deadlineMs: 10_000 });
  try {
    const clients = [
      { name: 'plain', gw: plain, call: () => plain.client.status({ uid: '' }) },
      { name: 'TLS', gw: secure, call: () => tlsClient.status({ uid: '' }) },
      { name: 'pooled', gw: pooled, call: async () => (await pool.get(pooled.address, { insecure: true, deadlineMs: 10_000 })).status({ uid: '' }) },
    ];
    for (const { name, gw, call } of clients) {
      assert.ok((await call()).free_ports > 0, name);
      assert.equal(established(gw.server.port), 1, `${name}: one connection`);
      const end = Date.now() + 20_000;
      while (established(gw.server.port) > 0 && Date.now() < end) await sleep(50);
      assert.equal(established(gw.server.port), 0, `${name}: the server closed the idle connection`);
      assert.ok((await call()).free_ports > 0, `${name}: a call after the idle close`);
    }
  } finally {
    tlsClient.close();
    pool.close();
    await plain.close();
    await secure.close();
    await pooled.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('s2cs start --idle-timeout and --handshake-timeout: a spawned gateway closes a stalled handshake and an idle session, and frees their descriptors', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-cflags-'));
  const port = await freePort();
  const range = await freePortRange(4);
  const proc = spawnCli('s2cs', [
    'start', '--port', String(port), '--listener-ip', '127.0.0.1', '--control-host', '127.0.0.1',
    '--port-range', `${range.first}-${range.last}`, '--state-dir', dir, '--idle-timeout', '2', '--handshake-timeout', '2',
  ]);
  try {
    await proc.waitFor(/s2cs ready/);
    const pid = proc.pid!;
    const baseline = fdCount(pid);
    const started = Date.now();
    const conns: Opened[] = [];
    for (let i = 0; i < 20; i++) conns.push(raw(port, false, i % 2 ? [Buffer.from([0x16, 0x03, 0x01])] : []));
    for (let i = 0; i < 20; i++) {
      const openedAt = Date.now();
      const session = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
      session.on('error', () => {});
      conns.push({ openedAt, closed: new Promise((resolve) => session.once('close', () => resolve())), destroy: () => session.destroy() });
    }
    await sleep(500);
    assert.ok(fdCount(pid) >= baseline + 30, `the gateway holds the connections (${fdCount(pid)} vs ${baseline})`);
    await allClosed(conns, 'stalled or idle', 30_000);
    assert.ok(Date.now() - started >= 1800, 'not closed before the configured time');
    const after = await settled(baseline, pid);
    assert.ok(Math.abs(after - baseline) <= 5, `gateway descriptors: ${baseline} before, ${after} after`);
    assert.ok(proc.running());
  } finally {
    await proc.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
