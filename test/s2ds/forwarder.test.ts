// The forwarder over real loopback sockets: client -> proxy (TcpTransport listen +
// connect + forward) -> upstream. No timing assertions: the timeouts are only a
// safety net so that a hang fails instead of blocking the runner.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { TcpTransport, listenTcp, type TcpListener } from '../../src/transport/tcp.js';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { END_FRAME, HEARTBEAT_FRAME, ReusedReadBuffer, RingReadBuffer, dataHeader, type ConnectionReads } from '../../src/transport/index.js';
import { forward, type ByteCounters, type WanWatch } from '../../src/s2ds/forwarder.js';
import { WanGuard } from '../../src/s2ds/liveness.js';
import { outcome } from '../support/sockets.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const HWM = 64 * KiB;
const TEST_TIMEOUT = 120_000;

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}
function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

type ReadMode = 'new' | 'reused' | 'ring';

/** How the target reads, and whether the accepted socket is moved onto a reused buffer (TcpTransport.accept with reads). */
interface Modes {
  target: ReadMode;
  accepted: 'new' | 'reused';
}

/** One proxied connection as seen by the harness. */
interface Leg {
  accepted: Socket;
  target: Socket;
  counters: ByteCounters;
  /** Resolves when forward()'s onDone runs (the first time). */
  done: Promise<void>;
  doneCalls: () => number;
}

class Harness {
  private readonly sockets = new Set<Socket>();
  upstreamServer!: Server;
  proxy!: TcpListener;
  /** Upstream-side sockets, in accept order. */
  readonly upstreamConns: Socket[] = [];
  private readonly upstreamWaiters: Array<(s: Socket) => void> = [];
  private readonly legWaiters: Array<Deferred<Leg>> = [];
  private readonly legs: Leg[] = [];

  private constructor(private readonly modes: Modes) {}

  /**
   * How the target reads: new Buffers, one reused buffer (TCP targets), or a ring
   * (TLS targets); how the accepted socket reads: new Buffers or one reused buffer.
   */
  static async start(modes: Modes = { target: 'new', accepted: 'new' }): Promise<Harness> {
    const h = new Harness(modes);
    await h.init();
    return h;
  }

  track(s: Socket): Socket {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    return s;
  }

  private async init(): Promise<void> {
    const transport = new TcpTransport();
    this.upstreamServer = createServer({ allowHalfOpen: true }, (s) => {
      this.track(s);
      this.upstreamConns.push(s);
      const waiter = this.upstreamWaiters.shift();
      if (waiter) waiter(s);
    });
    this.upstreamServer.listen(0, '127.0.0.1');
    await once(this.upstreamServer, 'listening');
    const upPort = (this.upstreamServer.address() as { port: number }).port;

    this.proxy = await listenTcp({ host: '127.0.0.1', port: 0 }, { highWaterMark: HWM }, async (raw) => {
      this.track(raw);
      raw.on('error', () => {}); // until forward() owns it, as in LocalDataServer
      // A small ring, so that wrapping and the one-off buffers of a full ring happen too.
      const { target: mode } = this.modes;
      const reads: ConnectionReads | undefined =
        mode === 'reused' ? new ReusedReadBuffer(Buffer.allocUnsafe(HWM)) : mode === 'ring' ? new RingReadBuffer(Buffer.allocUnsafe(40 * KiB), 16 * KiB) : undefined;
      const acceptedReads = this.modes.accepted === 'reused' ? new ReusedReadBuffer(Buffer.allocUnsafe(HWM)) : undefined;
      const accepted = this.track(await transport.accept(raw, { highWaterMark: HWM, reads: acceptedReads }));
      accepted.on('error', () => {});
      if (acceptedReads) assert.notEqual(accepted, raw, 'the accepted connection moved onto its reused buffer');
      transport.connect({ host: '127.0.0.1', port: upPort }, { highWaterMark: HWM, reads }).then(
        (target) => {
          this.track(target);
          const counters: ByteCounters = { toTarget: 0, fromTarget: 0 };
          const done = deferred<void>();
          let calls = 0;
          forward(
            accepted,
            target,
            counters,
            () => {
              calls++;
              done.resolve();
            },
            reads,
            undefined,
            acceptedReads,
          );
          const leg: Leg = { accepted, target, counters, done: done.promise, doneCalls: () => calls };
          this.legs.push(leg);
          const w = this.legWaiters.shift();
          if (w) w.resolve(leg);
        },
        (err: unknown) => {
          accepted.destroy();
          const w = this.legWaiters.shift();
          if (w) w.reject(err);
        },
      );
    });
  }

  /** Resolves with the next proxied leg once forward() is running on it. */
  nextLeg(): Promise<Leg> {
    const ready = this.legs.shift();
    if (ready) return Promise.resolve(ready);
    const d = deferred<Leg>();
    this.legWaiters.push(d);
    return d.promise;
  }

  /** Resolves with the next socket the upstream server accepts. */
  nextUpstream(): Promise<Socket> {
    const seen = this.upstreamConns.length;
    return new Promise((resolve) => {
      if (this.upstreamConns.length > seen) resolve(this.upstreamConns[seen]!);
      else this.upstreamWaiters.push(resolve);
    });
  }

  /** A client connected to the proxy, plus the upstream socket and the leg that carry it. */
  async client(opts: { allowHalfOpen?: boolean } = {}): Promise<{ client: Socket; upstream: Socket; leg: Leg }> {
    const upstreamP = this.nextUpstream();
    const legP = this.nextLeg();
    const client = this.track(
      connect({ host: '127.0.0.1', port: this.proxy.address.port, allowHalfOpen: opts.allowHalfOpen ?? false }),
    );
    await once(client, 'connect');
    const [upstream, leg] = await Promise.all([upstreamP, legP]);
    return { client, upstream, leg };
  }

  async close(): Promise<void> {
    for (const s of this.sockets) {
      s.on('error', () => {});
      s.destroy();
    }
    this.upstreamServer.close();
    await Promise.all([once(this.upstreamServer, 'close'), this.proxy.close()]);
  }
}

/** Writes `data` in chunks, respecting backpressure, then optionally ends. */
async function writeAll(s: Socket, data: Buffer, chunk = 256 * KiB, end = true): Promise<void> {
  for (let off = 0; off < data.length; off += chunk) {
    if (!s.write(data.subarray(off, off + chunk))) await once(s, 'drain');
  }
  if (end) s.end();
}

/** Collects everything a socket reads until 'end'. */
function collect(s: Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

/**
 * Resolves with hadError on 'close'. (events.once(s, 'close') would reject on
 * an 'error' event, which these tests expect in some cases.)
 */
function closed(s: Socket): Promise<boolean> {
  if (s.closed) return Promise.resolve(false);
  return new Promise((resolve) => s.once('close', (hadError: boolean) => resolve(hadError)));
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

// Every case runs with each way the target can read, and with the accepted socket
// reading new Buffers or (moved onto one by TcpTransport.accept) a reused buffer.
const MODES: Modes[] = [
  { target: 'new', accepted: 'new' },
  { target: 'reused', accepted: 'new' },
  { target: 'ring', accepted: 'new' },
  { target: 'reused', accepted: 'reused' },
  { target: 'ring', accepted: 'reused' },
];
for (const reads of MODES) describe(`forward (target reads: ${reads.target}, accepted reads: ${reads.accepted})`, () => {
  it('carries bytes both ways intact and counts them exactly', { timeout: TEST_TIMEOUT }, async () => {
    harness = await Harness.start(reads);
    // Half-open capable: the upstream may finish (FIN) before the client has sent
    // everything, and the client must keep sending after that.
    const { client, upstream, leg } = await harness.client({ allowHalfOpen: true });
    client.on('error', () => {});
    upstream.on('error', () => {});
    const up = randomBytes(32 * MiB); // client -> upstream
    const down = randomBytes(8 * MiB + 12345); // upstream -> client, at the same time

    const atUpstream = collect(upstream);
    const atClient = collect(client);
    const clientClosed = closed(client);
    const upstreamClosed = closed(upstream);
    await Promise.all([writeAll(client, up), writeAll(upstream, down, 100_000)]);

    const [gotUp, gotDown] = await Promise.all([atUpstream, atClient]);
    assert.equal(gotUp.length, up.length);
    assert.equal(sha(gotUp), sha(up));
    assert.equal(gotDown.length, down.length);
    assert.equal(sha(gotDown), sha(down));

    await leg.done;
    await Promise.all([clientClosed, upstreamClosed]);
    assert.equal(leg.counters.toTarget, up.length);
    assert.equal(leg.counters.fromTarget, down.length);
    assert.equal(leg.doneCalls(), 1);
    assert.equal(leg.accepted.destroyed, true);
    assert.equal(leg.target.destroyed, true);
  });

  it('carries many small writes in order', { timeout: TEST_TIMEOUT }, async () => {
    harness = await Harness.start(reads);
    const { client, upstream, leg } = await harness.client();
    const atUpstream = collect(upstream);
    const parts: Buffer[] = [];
    for (let i = 0; i < 5000; i++) {
      const b = Buffer.from(`msg ${i};`);
      parts.push(b);
      client.write(b);
    }
    client.end();
    const got = await atUpstream;
    assert.equal(got.toString(), Buffer.concat(parts).toString());
    upstream.end();
    await leg.done;
    assert.equal(leg.counters.toTarget, got.length);
    assert.equal(leg.counters.fromTarget, 0);
  });

  it('passes a half-close through and lets the other side still reply', { timeout: TEST_TIMEOUT }, async () => {
    harness = await Harness.start(reads);
    const { client, upstream, leg } = await harness.client({ allowHalfOpen: true });
    const events: string[] = [];
    const request = Buffer.from('GET everything\n');
    const reply = randomBytes(3 * MiB);

    // Upstream: read the whole request; only after its 'end' (the client's FIN) send the reply.
    const upstreamChunks: Buffer[] = [];
    upstream.on('data', (c: Buffer) => upstreamChunks.push(c));
    const upstreamSawEnd = new Promise<void>((resolve) =>
      upstream.once('end', () => {
        events.push('upstream end');
        resolve();
      }),
    );
    const clientGot = collect(client).then((b) => {
      events.push('client end');
      return b;
    });
    const clientClose = closed(client);
    const upstreamClose = closed(upstream);

    client.end(request);
    await upstreamSawEnd;
    assert.deepEqual(Buffer.concat(upstreamChunks), request);
    // The client's write side is finished; its read side is still open.
    assert.equal(client.writableFinished, true);
    assert.equal(client.readableEnded, false);
    assert.equal(client.destroyed, false);

    events.push('upstream replies');
    await writeAll(upstream, reply);
    const got = await clientGot;
    assert.equal(got.length, reply.length);
    assert.equal(sha(got), sha(reply));
    assert.deepEqual(events, ['upstream end', 'upstream replies', 'client end']);

    // Both sides have ended cleanly: everything closes, without errors, and onDone runs once.
    const [clientHadError, upstreamHadError] = await Promise.all([clientClose, upstreamClose]);
    assert.equal(clientHadError, false);
    assert.equal(upstreamHadError, false);
    await leg.done;
    await sleep(20); // let any stray second call land before counting
    assert.equal(leg.doneCalls(), 1);
    assert.equal(leg.counters.toTarget, request.length);
    assert.equal(leg.counters.fromTarget, reply.length);
  });

  it('half-close the other way: upstream ends first, client keeps sending', { timeout: TEST_TIMEOUT }, async () => {
    harness = await Harness.start(reads);
    const { client, upstream, leg } = await harness.client({ allowHalfOpen: true });
    const greeting = Buffer.from('hello, then FIN\n');
    const clientGot = collect(client);
    const upstreamGot = collect(upstream);
    upstream.end(greeting);
    assert.deepEqual(await clientGot, greeting);
    const body = randomBytes(2 * MiB);
    await writeAll(client, body);
    const got = await upstreamGot;
    assert.equal(sha(got), sha(body));
    await leg.done;
    assert.equal(leg.doneCalls(), 1);
    assert.equal(leg.counters.toTarget, body.length);
    assert.equal(leg.counters.fromTarget, greeting.length);
  });

  it('keeps memory bounded when the reader stalls, then delivers everything', { timeout: TEST_TIMEOUT }, async (t) => {
    harness = await Harness.start(reads);
    const { client, upstream, leg } = await harness.client();
    client.pause(); // the consumer does not read for a while

    // 17 distinct chunks (an odd count) cycled, so reordering or loss changes the hash.
    const CHUNK = 64 * KiB;
    const TOTAL = 256 * MiB;
    const LIMIT = 32 * MiB;
    const pool = Array.from({ length: 17 }, () => randomBytes(CHUNK));
    const sentHash = createHash('sha256');
    let handedToSocket = 0; // bytes passed to upstream.write()
    let blocked = false; // waiting for 'drain'
    let maxProxyWriteBuffer = 0;
    let maxProxyReadBuffer = 0;
    const sample = () => {
      maxProxyWriteBuffer = Math.max(maxProxyWriteBuffer, leg.accepted.writableLength);
      maxProxyReadBuffer = Math.max(maxProxyReadBuffer, leg.target.readableLength);
    };

    const writer = (async () => {
      let i = 0;
      while (handedToSocket < TOTAL) {
        const chunk = pool[i++ % pool.length]!;
        sentHash.update(chunk);
        handedToSocket += chunk.length;
        if (!upstream.write(chunk)) {
          blocked = true;
          await once(upstream, 'drain');
          blocked = false;
        }
      }
      upstream.end();
    })();

    // Wait until the pipeline has stalled: the writer is blocked and nothing has
    // moved for a while (or everything was buffered, which fails below).
    let last = -1;
    let still = 0;
    while (still < 20 && handedToSocket < TOTAL) {
      await sleep(25);
      sample();
      const moved = handedToSocket !== last || !blocked;
      last = handedToSocket;
      still = moved ? 0 : still + 1;
    }
    const writtenWhilePaused = handedToSocket;
    const kernelBound = writtenWhilePaused - upstream.writableLength;
    t.diagnostic(
      `while paused: upstream handed ${writtenWhilePaused} bytes to write(), ${kernelBound} left its buffer; ` +
        `proxy read ${leg.counters.fromTarget}; proxy buffers max write ${maxProxyWriteBuffer} / read ${maxProxyReadBuffer}`,
    );
    assert.ok(
      writtenWhilePaused < LIMIT,
      `upstream wrote ${(writtenWhilePaused / MiB).toFixed(1)} MiB while the client was paused; expected < ${LIMIT / MiB} MiB`,
    );
    assert.ok(kernelBound >= 0);
    assert.ok(leg.counters.fromTarget <= writtenWhilePaused);
    // The proxy's own buffers stay near one highWaterMark per direction.
    assert.ok(maxProxyWriteBuffer <= 2 * HWM, `proxy write buffer reached ${maxProxyWriteBuffer} bytes`);
    assert.ok(maxProxyReadBuffer <= 2 * HWM, `proxy read buffer reached ${maxProxyReadBuffer} bytes`);

    // Resume: the client gets all 256 MiB, in order.
    const recvHash = createHash('sha256');
    let received = 0;
    client.on('data', (c: Buffer) => {
      received += c.length;
      recvHash.update(c);
      if ((received & (16 * MiB - 1)) < c.length) sample();
    });
    const clientClosed = closed(client);
    client.resume();
    await once(client, 'end');
    await writer;
    assert.equal(received, TOTAL);
    assert.equal(recvHash.digest('hex'), sentHash.digest('hex'));
    await leg.done;
    await clientClosed;
    assert.equal(leg.counters.fromTarget, TOTAL);
    assert.equal(leg.counters.toTarget, 0);
    assert.ok(maxProxyWriteBuffer <= 2 * HWM, `proxy write buffer reached ${maxProxyWriteBuffer} bytes`);
    assert.equal(leg.doneCalls(), 1);
  });

  it('keeps memory bounded when the target stalls, then, read slowly, delivers every byte in order', { timeout: TEST_TIMEOUT }, async (t) => {
    harness = await Harness.start(reads);
    const { client, upstream, leg } = await harness.client();
    upstream.pause(); // the target does not read for a while

    // 17 distinct chunks cycled: a read landing over bytes still waiting to be
    // written (a reused buffer refilled too early), a loss or a reordering changes the hash.
    const CHUNK = 64 * KiB;
    const TOTAL = 128 * MiB;
    const LIMIT = 32 * MiB;
    const pool = Array.from({ length: 17 }, () => randomBytes(CHUNK));
    const sentHash = createHash('sha256');
    let handed = 0;
    let blocked = false;
    let maxWrite = 0;
    let maxRead = 0;
    const sample = () => {
      maxWrite = Math.max(maxWrite, leg.target.writableLength);
      maxRead = Math.max(maxRead, leg.accepted.readableLength);
    };
    const writer = (async () => {
      let i = 0;
      while (handed < TOTAL) {
        const chunk = pool[i++ % pool.length]!;
        sentHash.update(chunk);
        handed += chunk.length;
        if (!client.write(chunk)) {
          blocked = true;
          await once(client, 'drain');
          blocked = false;
        }
      }
      client.end();
    })();

    let last = -1;
    let still = 0;
    while (still < 20 && handed < TOTAL) {
      await sleep(25);
      sample();
      const moved = handed !== last || !blocked;
      last = handed;
      still = moved ? 0 : still + 1;
    }
    t.diagnostic(`while stalled: client handed ${handed} bytes to write(); proxy took ${leg.counters.toTarget}; proxy buffers max write ${maxWrite} / read ${maxRead}`);
    assert.ok(handed < LIMIT, `client wrote ${(handed / MiB).toFixed(1)} MiB while the target was stalled; expected < ${LIMIT / MiB} MiB`);
    assert.ok(maxWrite <= 2 * HWM, `proxy write buffer reached ${maxWrite} bytes`);
    assert.ok(maxRead <= 2 * HWM, `proxy read buffer reached ${maxRead} bytes`);

    // A slow reader: it takes a little, stops, takes a little more, so that the
    // forwarder is held back and let go many times.
    const recvHash = createHash('sha256');
    let received = 0;
    let sinceStop = 0;
    upstream.on('data', (c: Buffer) => {
      received += c.length;
      recvHash.update(c);
      sinceStop += c.length;
      if (sinceStop >= 4 * MiB) {
        sinceStop = 0;
        sample();
        upstream.pause();
        setTimeout(() => upstream.resume(), 2);
      }
    });
    const ended = once(upstream, 'end');
    upstream.resume();
    await ended;
    await writer;
    upstream.end();
    assert.equal(received, TOTAL);
    assert.equal(recvHash.digest('hex'), sentHash.digest('hex'));
    await leg.done;
    assert.equal(leg.counters.toTarget, TOTAL);
    assert.equal(leg.counters.fromTarget, 0);
    assert.ok(maxWrite <= 2 * HWM, `proxy write buffer reached ${maxWrite} bytes`);
    assert.equal(leg.doneCalls(), 1);
  });

  // A reset is only reported as ECONNRESET when it arrives at a socket with an
  // empty receive queue: with data still queued, libuv on Linux (Node 20) may
  // take POLLHUP after a partial read for a clean EOF (libuv/libuv#2319, #4997).
  // So the deterministic tests reset once everything sent so far has been read.
  it('passes an upstream reset on to the client as an error, not a clean end', { timeout: TEST_TIMEOUT }, async () => {
    harness = await Harness.start(reads);
    const { client, upstream, leg } = await harness.client();
    upstream.on('error', () => {});
    let clientError: NodeJS.ErrnoException | undefined;
    let clientEnded = false;
    let received = 0;
    client.on('error', (err) => (clientError = err));
    client.on('end', () => (clientEnded = true));
    const clientClosed = closed(client);
    const SENT = 4 * MiB;
    const gotAll = deferred<void>();
    client.on('data', (c: Buffer) => {
      received += c.length;
      if (received === SENT) gotAll.resolve();
    });

    // The upstream streams 4 MiB without ending, the client reads it all, then the upstream dies.
    await writeAll(upstream, randomBytes(SENT), 64 * KiB, false);
    await gotAll.promise;
    upstream.resetAndDestroy();

    const hadError = await clientClosed;
    await leg.done;
    assert.equal(clientEnded, false, 'the client must not see a clean end');
    assert.equal(hadError, true, 'client close should report an error');
    assert.equal(clientError?.code, 'ECONNRESET');
    assert.equal(received, SENT);
    assert.equal(leg.counters.fromTarget, SENT);
    assert.equal(leg.doneCalls(), 1);
  });

  it('passes a client reset on to the upstream as an error', { timeout: TEST_TIMEOUT }, async () => {
    harness = await Harness.start(reads);
    const { client, upstream, leg } = await harness.client();
    client.on('error', () => {});
    let upstreamError: NodeJS.ErrnoException | undefined;
    let upstreamEnded = false;
    upstream.on('error', (err) => (upstreamError = err));
    upstream.on('end', () => (upstreamEnded = true));
    const upstreamClosed = closed(upstream);
    const SENT = 512 * KiB;
    let received = 0;
    const gotAll = deferred<void>();
    upstream.on('data', (c: Buffer) => {
      received += c.length;
      if (received === SENT) gotAll.resolve();
    });

    client.write(randomBytes(SENT));
    await gotAll.promise;
    client.resetAndDestroy();

    const hadError = await upstreamClosed;
    await leg.done;
    assert.equal(upstreamEnded, false, 'the upstream must not see a clean end');
    assert.equal(hadError, true, 'upstream close should report an error');
    assert.equal(upstreamError?.code, 'ECONNRESET');
    assert.equal(leg.counters.toTarget, SENT);
    assert.equal(leg.doneCalls(), 1);
  });

  it('never completes the transfer when the upstream resets with data in flight', { timeout: TEST_TIMEOUT }, async (t) => {
    harness = await Harness.start(reads);
    const { client, upstream, leg } = await harness.client();
    upstream.on('error', () => {});
    let clientError: NodeJS.ErrnoException | undefined;
    let clientEnded = false;
    let received = 0;
    client.on('error', (err) => (clientError = err));
    client.on('end', () => (clientEnded = true));
    const clientClosed = closed(client);
    const TOTAL = 64 * MiB;
    const gotSome = deferred<void>();
    client.on('data', (c: Buffer) => {
      received += c.length;
      if (received >= MiB) gotSome.resolve();
    });

    const chunk = randomBytes(64 * KiB);
    let written = 0;
    const writer = (async () => {
      while (written < TOTAL && !upstream.destroyed) {
        written += chunk.length;
        if (!upstream.write(chunk)) await Promise.race([once(upstream, 'drain'), closed(upstream)]);
      }
    })();
    await gotSome.promise;
    upstream.resetAndDestroy();
    await writer;

    const hadError = await clientClosed;
    await leg.done;
    assert.ok(received < TOTAL, 'the transfer must not complete');
    assert.ok(received <= leg.counters.fromTarget);
    t.diagnostic(`client saw ${clientEnded ? 'a clean end (reset taken for EOF)' : `an error (${clientError?.code})`} after ${received} bytes`);
    // Either outcome is possible here (see above); both must close everything.
    if (!clientEnded) {
      assert.equal(hadError, true);
      assert.equal(clientError?.code, 'ECONNRESET');
    }
    assert.equal(leg.doneCalls(), 1);
    assert.equal(leg.accepted.destroyed, true);
    assert.equal(leg.target.destroyed, true);
  });

  it('runs onDone once when both sides are destroyed at the same time', { timeout: TEST_TIMEOUT }, async () => {
    harness = await Harness.start(reads);
    const { client, upstream, leg } = await harness.client();
    client.on('error', () => {});
    upstream.on('error', () => {});
    client.destroy();
    upstream.destroy();
    await leg.done;
    await sleep(20);
    assert.equal(leg.doneCalls(), 1);
  });

  it('handles several concurrent connections independently', { timeout: TEST_TIMEOUT }, async () => {
    harness = await Harness.start(reads);
    const n = 4;
    const conns = [];
    for (let i = 0; i < n; i++) conns.push(await harness.client());
    const payloads = conns.map(() => randomBytes(2 * MiB));
    const results = await Promise.all(
      conns.map(async ({ client, upstream, leg }, i) => {
        // Upstream echoes everything back.
        upstream.on('data', (c: Buffer) => {
          if (!upstream.write(c)) upstream.pause();
        });
        upstream.on('drain', () => upstream.resume());
        upstream.on('end', () => upstream.end());
        const got = collect(client);
        await writeAll(client, payloads[i]!);
        const echoed = await got;
        await leg.done;
        return { echoed, leg };
      }),
    );
    results.forEach(({ echoed, leg }, i) => {
      assert.equal(sha(echoed), sha(payloads[i]!));
      assert.equal(leg.counters.toTarget, payloads[i]!.length);
      assert.equal(leg.counters.fromTarget, payloads[i]!.length);
      assert.equal(leg.doneCalls(), 1);
    });
  });
});

// ---------------------------------------------------------------------------------------
// The framed WAN leg's liveness (liveness.ts): heartbeats while a direction is idle, a
// silent peer taken for dead after wan-dead-after. The test plays the peer gateway with
// a plain socket (the frames do not depend on TLS), so that it can stay silent or send
// exactly what it wants; the forwarder's side is either the accepted socket (the
// producer's gateway) or the target it opened, read into a ring (the consumer's).

type WanRole = 'accepted' | 'target';

interface WanHop {
  /** The test, playing the peer gateway: reads and writes raw frames. */
  peer: Socket;
  /** The application on the forwarder's LAN side. */
  app: Socket;
  wanSide: Socket;
  lanSide: Socket;
  /** hadError of the forwarder's two sockets' 'close'. */
  wanClosed: Promise<boolean>;
  lanClosed: Promise<boolean>;
  guard: WanGuard;
  logs: Array<Record<string, unknown>>;
  close: () => Promise<void>;
}

async function wanHop(role: WanRole, deadAfterMs: number): Promise<WanHop> {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const guard = new WanGuard({ deadAfterMs, logger: pino({ level: 'info' }, sink), sweepMs: 100 });
  const sockets: Socket[] = [];
  const servers: Server[] = [];
  const listen = async (onConn: (s: Socket) => void): Promise<number> => {
    const server = createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => {});
      sockets.push(s);
      onConn(s);
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return (server.address() as { port: number }).port;
  };
  const dial = async (port: number, opts: { onread?: RingReadBuffer['onread'] } = {}): Promise<Socket> => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true, ...opts });
    s.on('error', () => {});
    sockets.push(s);
    await once(s, 'connect');
    return s;
  };
  const arrivals: Socket[] = [];
  const arrived: Array<(s: Socket) => void> = [];
  const take = (): Promise<Socket> => new Promise((r) => (arrivals.length > 0 ? r(arrivals.shift()!) : arrived.push(r)));
  const port = await listen((s) => (arrived.length > 0 ? arrived.shift()!(s) : arrivals.push(s)));
  let peer: Socket, app: Socket, wanSide: Socket, lanSide: Socket;
  const wan: WanWatch = { guard, uid: 'liveness-test' };
  if (role === 'accepted') {
    peer = await dial(port);
    wanSide = await take();
    const appPort = await listen((s) => arrivals.push(s));
    lanSide = await dial(appPort);
    app = arrivals.shift()!;
    forward(wanSide, lanSide, { toTarget: 0, fromTarget: 0 }, () => {}, undefined, 'accepted', undefined, undefined, wan);
  } else {
    app = await dial(port);
    lanSide = await take();
    const peerPort = await listen((s) => arrivals.push(s));
    const ring = new RingReadBuffer(Buffer.allocUnsafe(64 * KiB));
    wanSide = await dial(peerPort, { onread: ring.onread });
    peer = arrivals.shift()!;
    forward(lanSide, wanSide, { toTarget: 0, fromTarget: 0 }, () => {}, ring, 'target', undefined, undefined, wan);
  }
  peer.setNoDelay(true);
  return {
    peer,
    app,
    wanSide,
    lanSide,
    wanClosed: closed(wanSide),
    lanClosed: closed(lanSide),
    guard,
    logs,
    close: async () => {
      for (const s of sockets) s.destroy();
      guard.close();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
}

/** Splits what the peer received into frames: [type letter, payload length][]; throws on a partial frame. */
function framesOf(wire: Buffer): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  let at = 0;
  while (at < wire.length) {
    assert.ok(wire.length - at >= 4, 'a whole frame header');
    const h = wire.readUInt32BE(at);
    const len = h & 0xffffff;
    out.push([String.fromCharCode(h >>> 24), len]);
    at += 4 + len;
  }
  assert.equal(at, wire.length, 'whole frames');
  return out;
}

function recorder(s: Socket): () => Buffer {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return () => Buffer.concat(chunks);
}

const DEAD_AFTER = 600;

for (const role of ['accepted', 'target'] as const) describe(`the framed WAN leg's liveness (WAN side: ${role})`, () => {
  it('an idle connection carries heartbeats and lives as long as the peer sends its own; data and a clean end follow', { timeout: TEST_TIMEOUT }, async () => {
    const h = await wanHop(role, DEAD_AFTER);
    try {
      const atPeer = recorder(h.peer);
      const atApp = outcome(h.app);
      // Four times wan-dead-after of idle time, the peer sending heartbeats only.
      const beat = setInterval(() => h.peer.write(HEARTBEAT_FRAME), 100);
      await sleep(4 * DEAD_AFTER);
      clearInterval(beat);
      const idle = framesOf(atPeer());
      assert.ok(idle.length >= 5, `${idle.length} heartbeats in ${4 * DEAD_AFTER} ms`);
      assert.ok(idle.every(([t, n]) => t === 'H' && n === 0), JSON.stringify(idle.slice(0, 5)));
      const data = randomBytes(100 * KiB);
      h.peer.end(Buffer.concat([dataHeader(data.length), data, END_FRAME]));
      assert.deepEqual(await atApp, { bytes: data.length, sha: sha(data), end: 'end' });
      const peerEnded = once(h.peer, 'end');
      h.app.end();
      assert.equal(await h.lanClosed, false);
      assert.equal(await h.wanClosed, false);
      await peerEnded;
      assert.deepEqual(framesOf(atPeer()).at(-1), ['E', 0]);
      assert.deepEqual(h.guard.totals(), []);
      assert.equal(h.guard.size, 0, 'unwatched once closed');
    } finally {
      await h.close();
    }
  });

  it('a silent peer is dead after wan-dead-after: the application is reset, both sockets close with an error, counted and logged', { timeout: TEST_TIMEOUT }, async () => {
    const h = await wanHop(role, DEAD_AFTER);
    try {
      const started = Date.now();
      const atApp = outcome(h.app);
      const atPeer = outcome(h.peer);
      assert.equal((await atApp).end, 'ECONNRESET');
      const after = Date.now() - started;
      assert.ok(after >= DEAD_AFTER * 0.9, `reset after ${after} ms, not before wan-dead-after`);
      assert.notEqual((await atPeer).end, 'end');
      assert.equal(await h.wanClosed, true, "the WAN socket's close has hadError");
      assert.equal(await h.lanClosed, true, "the LAN socket's close has hadError");
      assert.deepEqual(h.guard.totals(), [{ cause: 'dead-peer', count: 1 }]);
      const line = h.logs.find((l) => l.cause === 'dead-peer');
      assert.ok(line, JSON.stringify(h.logs));
      assert.equal(line.uid, 'liveness-test');
      assert.match(String(line.peer), /^127\.0\.0\.1:\d+$/);
      assert.match(String(line.msg), /stream liveness-test: WAN connection to 127\.0\.0\.1:\d+ broken \(dead-peer\)/);
    } finally {
      await h.close();
    }
  });

  it('a reset WAN leg resets the application at once, counted as reset', { timeout: TEST_TIMEOUT }, async () => {
    const h = await wanHop(role, 60_000);
    try {
      const atApp = outcome(h.app);
      h.peer.resetAndDestroy();
      assert.equal((await atApp).end, 'ECONNRESET');
      assert.equal(await h.wanClosed, true);
      assert.equal(await h.lanClosed, true);
      assert.deepEqual(h.guard.totals(), [{ cause: 'reset', count: 1 }]);
    } finally {
      await h.close();
    }
  });

  it('a peer that is silent because this side stopped reading (a slow application) is not judged', { timeout: TEST_TIMEOUT }, async () => {
    const h = await wanHop(role, DEAD_AFTER);
    try {
      // The application reads nothing: the forwarder's buffers and the kernel's fill,
      // the WAN socket pauses, and the peer's writes back up. It then sends nothing,
      // not even heartbeats, for several times wan-dead-after.
      h.app.pause();
      const data = randomBytes(48 * MiB);
      const wire = Buffer.concat([0, 1, 2, 3].flatMap((i) => [dataHeader(12 * MiB), data.subarray(i * 12 * MiB, (i + 1) * 12 * MiB)]));
      const sent = new Promise<void>((r) => h.peer.write(wire, () => r()));
      await sleep(4 * DEAD_AFTER);
      assert.equal(h.wanSide.isPaused(), true, 'reading stopped by backpressure');
      assert.equal(h.lanSide.destroyed, false, `not taken for dead: ${JSON.stringify(h.logs)}`);
      const atApp = outcome(h.app);
      h.app.resume();
      await sent;
      h.peer.end(END_FRAME);
      assert.deepEqual(await atApp, { bytes: data.length, sha: sha(data), end: 'end' });
      assert.deepEqual(h.guard.totals(), []);
    } finally {
      await h.close();
    }
  });

  it("after the peer's END its silence is not judged, and no heartbeat follows this side's END", { timeout: TEST_TIMEOUT }, async () => {
    const h = await wanHop(role, DEAD_AFTER);
    try {
      const atPeer = recorder(h.peer);
      const atApp = outcome(h.app);
      h.peer.write(END_FRAME);
      assert.equal((await atApp).end, 'end');
      // The peer is silent now; the other direction stays open and idle.
      await sleep(4 * DEAD_AFTER);
      assert.equal(h.lanSide.destroyed, false, 'not taken for dead after its END');
      const peerEnded = once(h.peer, 'end');
      h.app.end('bye');
      await peerEnded;
      await sleep(300);
      h.peer.end();
      assert.equal(await h.wanClosed, false);
      const frames = framesOf(atPeer());
      assert.ok(frames.filter(([t]) => t === 'H').length >= 5, 'heartbeats while idle');
      assert.deepEqual(frames.slice(-2), [['D', 3], ['E', 0]], 'nothing after END');
      assert.deepEqual(h.guard.totals(), []);
    } finally {
      await h.close();
    }
  });
});
