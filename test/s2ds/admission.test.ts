// Admission of data connections with real sockets and real TLS on loopback: a
// connection that has not completed the stream's WAN handshake holds a small fixed
// reservation, counted against caps per source address (127.0.0.x are distinct
// sources on Linux loopback), per listener and in all, and is closed at the handshake
// timeout; the full reservation is taken once it authenticates, and a connection
// already forwarding is never touched for new arrivals.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { LocalDataServer, connectionMemory, type LocalDataServerOptions } from '../../src/s2ds/index.js';
import { Admission, PENDING_CONNECTION_MEMORY, type Ticket } from '../../src/s2ds/admission.js';
import { Refusals } from '../../src/limits/refusals.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange } from '../../src/demo/procs.js';
import { createStreamCredentials } from '../../src/security/stream-credentials.js';
import type { Address } from '../../src/protocol/address.js';
import type { StreamCredentials } from '../../src/transport/index.js';
import { watchEnd } from '../support/sockets.js';

const KiB = 1024;
const BUFFER = 256 * KiB;
/** What a connection from the WAN (TLS) to a plain target reserves once admitted. */
const FULL = connectionMemory(BUFFER, 'tls', 'tcp');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  for (let t = 0; t < ms && !ok(); t += 20) await sleep(20);
  assert.ok(ok(), what);
}

const asTransport = (c: { certificate: string; private_key: string; peer_certificate: string }): StreamCredentials => ({
  cert: c.certificate,
  key: c.private_key,
  peerCert: c.peer_certificate,
});

/** An application that sends back what it reads. */
async function echoApp(): Promise<{ address: Address; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: { host: '127.0.0.1', port: (server.address() as { port: number }).port },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Two gateways joined by a TLS WAN leg: `prod` (WAN listeners, the one under test)
 * forwards to an echo application; clients of the stream connect to `cons`.
 */
async function gateways(listeners: number, prodOpts: Partial<LocalDataServerOptions>) {
  const app = await echoApp();
  const creds = await createStreamCredentials('admission');
  const refusals = new Refusals(silentLogger);
  const make = async (opts: Partial<LocalDataServerOptions>) =>
    new LocalDataServer({ bindHost: '127.0.0.1', portRange: await freePortRange(listeners + 2), bufferSize: BUFFER, waitLimit: 64, waitTimeoutMs: 10_000, logger: silentLogger, ...opts });
  const prod = await make({ refusals, ...prodOpts });
  // No warm WAN connections (s2ds/warm.ts): each would hold a share at prod, and the counts here are exact.
  const cons = await make({ maxConnsPerListener: 1000, warmWanConnections: false });
  const wan = await prod.startListeners('s', listeners);
  const lan = await cons.startListeners('s', listeners);
  await prod.setTargets('s', [app.address], { side: 'accept', credentials: asTransport(creds.producerSide) });
  await cons.setTargets('s', wan, { side: 'connect', credentials: asTransport(creds.consumerSide) });
  const clients: Socket[] = [];
  return {
    prod,
    wan,
    refusals,
    count: (kind: string) => refusals.totals().find((t) => t.kind === kind)?.count ?? 0,
    /** A client of the stream (through cons and the WAN leg), echoing once before it resolves. */
    async client(listener = 0): Promise<Socket> {
      const s = connect(lan[listener]!.port, '127.0.0.1');
      clients.push(s);
      s.on('error', () => undefined);
      await echoes(s);
      return s;
    },
    /** A raw TCP connection to prod's WAN listener `listener` from `source` (127.0.0.x). */
    raw(source: string, listener = 0): { socket: Socket; w: { state: string } } {
      const socket = connect({ host: '127.0.0.1', port: wan[listener]!.port, localAddress: source });
      clients.push(socket);
      return { socket, w: watchEnd(socket) };
    },
    async close() {
      for (const c of clients) c.destroy();
      await Promise.all([prod.close(), cons.close()]);
      await app.close();
      refusals.close();
    },
  };
}

/** Writes a few bytes and resolves once they came back (the stream forwards). */
async function echoes(s: Socket): Promise<void> {
  const probe = Buffer.from(`probe ${Math.random()}\n`);
  const back = new Promise<void>((resolve, reject) => {
    let got = Buffer.alloc(0);
    const on = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= probe.length) {
        s.off('data', on);
        if (got.subarray(0, probe.length).equals(probe)) resolve();
        else reject(new Error(`echo mismatch: ${got.toString()}`));
      }
    };
    s.on('data', on);
    s.once('close', () => reject(new Error('the stream connection closed')));
  });
  s.write(probe);
  const timer = setTimeout(() => s.destroy(new Error('no echo within 10 s')), 10_000);
  try {
    await back;
  } finally {
    clearTimeout(timer);
  }
}

/** The first bytes a TLS client sends (its ClientHello), to dribble at a listener. */
async function clientHello(): Promise<Buffer> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const got = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (d: Buffer) => (s.destroy(), resolve(d)))));
  const c = tlsConnect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, rejectUnauthorized: false });
  c.on('error', () => undefined);
  const hello = await got;
  c.destroy();
  server.close();
  return hello;
}

/** Sends `hello` one byte every `everyMs` until the socket closes (never the whole of it in the test's time). */
function dribble(s: Socket, hello: Buffer, everyMs: number): void {
  let i = 0;
  const timer = setInterval(() => {
    if (s.destroyed || i >= hello.length - 1) return clearInterval(timer);
    s.write(hello.subarray(i, ++i));
  }, everyMs);
  s.once('close', () => clearInterval(timer));
}

describe('data connection admission', () => {
  it('sources: IPv6 addresses count by their /64, IPv4-mapped IPv6 as IPv4', () => {
    const admission = new Admission({ maxBufferMemory: 1024 ** 3, maxPending: 100, maxPendingPerPeer: 2, maxPendingPerPeerPerListener: 100 });
    const enter = (address: string) => admission.enter(address, 5100, () => undefined);
    const ok = (r: ReturnType<typeof enter>): r is Ticket => !('kind' in r);
    assert.ok(ok(enter('2001:db8:0:1::1')));
    assert.ok(ok(enter('2001:db8:0:1:ffff::2')));
    const third = enter('2001:db8:0:1::3');
    assert.ok(!ok(third) && third.kind === 'pending-conns-per-peer' && third.message.includes('2001:db8:0:1::/64'), JSON.stringify(third));
    assert.ok(ok(enter('2001:db8:0:2::1')), 'another /64 is another source');
    assert.ok(ok(enter('::ffff:192.0.2.7')));
    assert.ok(ok(enter('192.0.2.7')));
    assert.ok(!ok(enter('192.0.2.7')), 'an IPv4-mapped address and the IPv4 address are one source');
    assert.equal(admission.pending, 5);
    assert.equal(admission.memory().reserved, 5 * PENDING_CONNECTION_MEMORY);
  });

  it('an unauthenticated connection holds 64 KiB, not a forwarding connection\'s reservation; the full one is taken once it authenticates', { timeout: 60_000 }, async () => {
    const g = await gateways(1, { handshakeTimeoutMs: 60_000 });
    try {
      const live = await g.client();
      assert.equal(g.prod.bufferMemory().reserved, FULL, 'the authenticated connection reserves its worst case');
      const hello = await clientHello();
      const idle = Array.from({ length: 40 }, () => g.raw('127.0.0.2'));
      const slow = Array.from({ length: 10 }, () => g.raw('127.0.0.3'));
      for (const s of slow) dribble(s.socket, hello, 100);
      await until('50 pending', () => g.prod.pendingConnections() === 50);
      assert.equal(g.prod.bufferMemory().reserved, FULL + 50 * PENDING_CONNECTION_MEMORY);
      await echoes(live);
      // A second client authenticates while they wait: it reserves its worst case in place of its pending share.
      const second = await g.client();
      assert.equal(g.prod.bufferMemory().reserved, 2 * FULL + 50 * PENDING_CONNECTION_MEMORY);
      // Ended by their peers before any handshake: let go at once, not at the timeout.
      for (const s of [...idle, ...slow]) s.socket.destroy();
      await until('none pending', () => g.prod.pendingConnections() === 0);
      assert.equal(g.prod.bufferMemory().reserved, 2 * FULL);
      await echoes(live);
      await echoes(second);
      assert.deepEqual(g.refusals.totals(), [{ kind: 'wan-auth', count: 50 }]);
    } finally {
      await g.close();
    }
  });

  it('pending connections are capped per source on a listener and on the data server, the oldest of the biggest source makes room for another, and all close at the handshake timeout', { timeout: 60_000 }, async () => {
    const g = await gateways(2, { maxPendingConns: 8, maxPendingConnsPerPeer: 5, maxPendingConnsPerPeerPerListener: 3, handshakeTimeoutMs: 3000 });
    try {
      const live = await g.client();
      // Source .2: 4 at listener 0 (3 fit there), then 4 at listener 1 (2 more fit on the data server).
      const a = Array.from({ length: 4 }, () => g.raw('127.0.0.2', 0));
      await until('per-listener cap', () => a.filter((x) => x.w.state === 'reset').length === 1 && g.prod.pendingConnections() === 3);
      const b = Array.from({ length: 4 }, () => g.raw('127.0.0.2', 1));
      await until('per-source cap', () => b.filter((x) => x.w.state === 'reset').length === 2 && g.prod.pendingConnections() === 5);
      assert.equal(g.count('pending-conns-per-peer'), 3);
      // Source .3 is another source: its 3 fit, and fill the data server's 8.
      const c = Array.from({ length: 3 }, () => g.raw('127.0.0.3', 0));
      await until('8 pending', () => g.prod.pendingConnections() === 8);
      assert.ok(c.every((x) => x.w.state === 'open'));
      // Source .4 holds none: the oldest of .2 (which holds 5) makes room.
      const d = g.raw('127.0.0.4', 0);
      await until('.2 evicted', () => a[0]!.w.state === 'reset');
      assert.equal(g.count('pending-conns'), 1);
      assert.equal(d.w.state, 'open');
      assert.equal(g.prod.bufferMemory().reserved, FULL + 8 * PENDING_CONNECTION_MEMORY);
      // The forwarding connection was never in question.
      await echoes(live);
      // None of them completes a handshake: all are reset at the timeout, and give everything back.
      const all = [...a, ...b, ...c, d];
      await until('all closed at the handshake timeout', () => all.every((x) => x.w.state !== 'open'), 10_000);
      assert.ok(all.every((x) => x.w.state === 'reset'), 'a refused connection sees a reset');
      assert.equal(g.count('handshake-timeout'), 8);
      assert.equal(g.prod.pendingConnections(), 0);
      assert.equal(g.prod.bufferMemory().reserved, FULL);
      await echoes(live);
      // New clients get in as before.
      await echoes(await g.client(1));
    } finally {
      await g.close();
    }
  });

  it('when the full reservation does not fit, only the connection that needs it is refused; the one forwarding goes on', { timeout: 60_000 }, async () => {
    const g = await gateways(1, { maxBufferMemory: FULL + FULL / 2 });
    try {
      const live = await g.client();
      const refused = connectRefused(g);
      await refused;
      assert.equal(g.count('buffer-memory'), 1);
      assert.equal(g.prod.bufferMemory().reserved, FULL);
      await echoes(live);
    } finally {
      await g.close();
    }
  });
});

/** A second stream client through cons: prod refuses its WAN connection after the handshake, so the client sees its connection end. */
async function connectRefused(g: Awaited<ReturnType<typeof gateways>>): Promise<void> {
  await assert.rejects(g.client(), /closed|no echo/);
}
