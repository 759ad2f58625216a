// End-of-stream integrity across the WAN leg (TLS, and plain where it matters): a clean close reaches the other
// application as a clean close after every byte; anything else (a reset, a gateway
// dying or shut down mid-stream, a FIN injected on the WAN) reaches it as an error,
// never as a clean, shorter stream. Real sockets, real TLS, real processes where a
// gateway must die. No timing assertions: timeouts only turn a hang into a failure.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { LocalDataServer } from '../../src/s2ds/index.js';
import { silentLogger } from '../../src/log.js';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { createStreamCredentials } from '../../src/security/stream-credentials.js';
import type { Address } from '../../src/protocol/address.js';
import { END_FRAME, dataHeader, type StreamCredentials } from '../../src/transport/index.js';
import { forward } from '../../src/s2ds/forwarder.js';
import { lingerAvailable } from '../../src/transport/linger.js';
import { outcome } from '../support/sockets.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const TIMEOUT = 60_000;

/** Resolves once `s` has read at least `n` bytes. */
function received(s: Socket, n: number): Promise<void> {
  let got = 0;
  return new Promise((resolve) => {
    const on = (c: Buffer) => {
      got += c.length;
      if (got >= n) {
        s.off('data', on);
        resolve();
      }
    };
    s.on('data', on);
  });
}

/** Writes random data until the socket fails or closes (a producer that never ends on its own). */
function writeForever(s: Socket): void {
  const chunk = randomBytes(64 * KiB);
  const pump = () => {
    while (!s.destroyed && s.writable) {
      if (!s.write(chunk)) {
        s.once('drain', pump);
        return;
      }
    }
  };
  s.on('error', () => {});
  pump();
}

/** Writes `data` with backpressure, then ends (FIN). */
async function writeAll(s: Socket, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; off += 256 * KiB) {
    if (!s.write(data.subarray(off, off + 256 * KiB))) await once(s, 'drain');
  }
  s.end();
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The producer application: a TCP server; its accepted connections in order. */
async function application(): Promise<{ address: Address; next: () => Promise<Socket>; close: () => Promise<void> }> {
  const sockets: Socket[] = [];
  const waiting: Array<(s: Socket) => void> = [];
  const server: Server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    sockets.push(s);
    const w = waiting.shift();
    if (w) w(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  let taken = 0;
  return {
    address: { host: '127.0.0.1', port: (server.address() as { port: number }).port },
    next: () => {
      const i = taken++;
      const s = sockets[i];
      return s ? Promise.resolve(s) : new Promise((r) => waiting.push(r));
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

function connectTo(a: Address): Promise<Socket> {
  const s = connect({ host: a.host, port: a.port, allowHalfOpen: true });
  s.on('error', () => {});
  return once(s, 'connect').then(() => s);
}

/**
 * A TCP relay on the WAN between the two gateways. It forwards both ways; once
 * `cutAfter` bytes have gone from the producer side towards the consumer side, it
 * ends both connections with a plain FIN: at a TLS record boundary
 * (`atRecord`), or wherever the count falls (a truncated record).
 */
async function relay(to: Address, cutAfter: number, atRecord: boolean): Promise<{ address: Address; cut: Promise<number>; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let cutDone!: (forwarded: number) => void;
  const cut = new Promise<number>((r) => (cutDone = r));
  const server = createServer({ allowHalfOpen: true }, (down) => {
    const up = connect({ host: to.host, port: to.port, allowHalfOpen: true });
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {});
    }
    down.pipe(up);
    let forwarded = 0;
    let cutting = false;
    // TLS records: 5-byte header (type, version, length), then the length.
    let pending = Buffer.alloc(0);
    up.on('data', (c: Buffer) => {
      if (cutting) return;
      if (!atRecord) {
        const n = Math.min(c.length, cutAfter - forwarded);
        down.write(c.subarray(0, n));
        forwarded += n;
        if (forwarded >= cutAfter) finish();
        return;
      }
      pending = Buffer.concat([pending, c]);
      while (pending.length >= 5) {
        const size = 5 + pending.readUInt16BE(3);
        if (pending.length < size) break;
        down.write(pending.subarray(0, size));
        forwarded += size;
        pending = pending.subarray(size);
        if (forwarded >= cutAfter) {
          finish();
          return;
        }
      }
    });
    function finish(): void {
      cutting = true;
      down.unpipe(up);
      down.end();
      up.end();
      down.resume();
      up.resume();
      cutDone(forwarded);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    address: { host: '127.0.0.1', port: (server.address() as { port: number }).port },
    cut,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

const asTransport = (c: { certificate: string; private_key: string; peer_certificate: string }): StreamCredentials => ({
  cert: c.certificate,
  key: c.private_key,
  peerCert: c.peer_certificate,
});

/**
 * Two in-process gateways joined by a TLS WAN leg (optionally through a relay):
 * the consumer connects to `consumerAddress`, the producer application is `app`.
 */
async function gateways(wanVia?: (wan: Address) => Promise<Address>, plain = false) {
  const app = await application();
  const creds = await createStreamCredentials('integrity');
  const make = async () =>
    new LocalDataServer({ bindHost: '127.0.0.1', portRange: await freePortRange(4), bufferSize: 256 * KiB, waitLimit: 4, waitTimeoutMs: 10_000, logger: silentLogger });
  const [prod, cons] = await Promise.all([make(), make()]);
  const [wan] = await prod.startListeners('s', 1);
  const [consumerAddress] = await cons.startListeners('s', 1);
  await prod.setTargets('s', [app.address], plain ? undefined : { side: 'accept', credentials: asTransport(creds.producerSide) });
  const target = wanVia ? await wanVia(wan!) : wan!;
  await cons.setTargets('s', [target], plain ? undefined : { side: 'connect', credentials: asTransport(creds.consumerSide) });
  return {
    app,
    prod,
    cons,
    consumerAddress: consumerAddress!,
    async close() {
      await Promise.all([prod.close(), cons.close()]);
      await app.close();
    },
  };
}

describe('two TLS gateways in one process', () => {
  // 64 MiB: when the producer ends, megabytes are still queued in both gateways and
  // their kernels. The consumer's socket resets on any close (SO_LINGER 0) until the
  // forwarder ends it cleanly. When the consumer has already ended its side, the
  // gateway closes that socket as soon as the kernel has taken the last bytes, not
  // once they are sent: were the option still on then, the close would drop them
  // (a reset after fewer bytes).
  for (const plain of [false, true]) {
    for (const consumerFirst of [false, true]) {
      const how = `${plain ? 'plain' : 'TLS'} WAN leg, the consumer ${consumerFirst ? 'ending its side first' : 'ending its side last'}`;
      it(`a clean close by the producer (${how}): clean EOF at the consumer after every byte`, { timeout: TIMEOUT }, async () => {
        const g = await gateways(undefined, plain);
        try {
          const consumer = await connectTo(g.consumerAddress);
          const producer = await g.app.next();
          const atProducer = outcome(producer);
          if (consumerFirst) consumer.end();
          const data = randomBytes(64 * MiB + 123);
          const result = outcome(consumer);
          await writeAll(producer, data);
          const r = await result;
          assert.deepEqual(r, { bytes: data.length, sha: sha(data), end: 'end' });
          if (!consumerFirst) consumer.end();
          // The producer too sees a clean end of the other direction.
          assert.equal((await atProducer).end, 'end');
        } finally {
          await g.close();
        }
      });
    }
  }

  it('reverse direction, clean: the consumer\'s data and clean close reach the producer whole', { timeout: TIMEOUT }, async () => {
    const g = await gateways();
    try {
      const consumer = await connectTo(g.consumerAddress);
      const producer = await g.app.next();
      const data = randomBytes(8 * MiB + 7);
      const result = outcome(producer);
      await writeAll(consumer, data);
      assert.deepEqual(await result, { bytes: data.length, sha: sha(data), end: 'end' });
    } finally {
      await g.close();
    }
  });

  it('reverse direction, a producer that stalls and then reads slowly: every byte, in order (the consumer-side gateway reads into one reused buffer)', { timeout: TIMEOUT }, async () => {
    const g = await gateways();
    try {
      const consumer = await connectTo(g.consumerAddress);
      const producer = await g.app.next();
      producer.pause();
      const data = randomBytes(48 * MiB + 5);
      const written = writeAll(consumer, data);
      await new Promise((r) => setTimeout(r, 300));
      // Taken a little at a time: the gateways are held back and let go many times.
      let since = 0;
      producer.on('data', (c: Buffer) => {
        since += c.length;
        if (since >= 2 * MiB) {
          since = 0;
          producer.pause();
          setTimeout(() => producer.resume(), 2);
        }
      });
      const result = outcome(producer);
      producer.resume();
      await written;
      assert.deepEqual(await result, { bytes: data.length, sha: sha(data), end: 'end' });
    } finally {
      await g.close();
    }
  });

  it('both directions at once, half-closes in either order, all bytes both ways', { timeout: TIMEOUT }, async () => {
    const g = await gateways();
    try {
      const consumer = await connectTo(g.consumerAddress);
      const producer = await g.app.next();
      const up = randomBytes(3 * MiB + 1);
      const down = randomBytes(5 * MiB + 3);
      const atProducer = outcome(producer);
      const atConsumer = outcome(consumer);
      await Promise.all([writeAll(consumer, up), writeAll(producer, down)]);
      assert.deepEqual(await atProducer, { bytes: up.length, sha: sha(up), end: 'end' });
      assert.deepEqual(await atConsumer, { bytes: down.length, sha: sha(down), end: 'end' });
    } finally {
      await g.close();
    }
  });

  it('a producer reset mid-stream reaches the consumer as an error', { timeout: TIMEOUT }, async () => {
    const g = await gateways();
    try {
      const consumer = await connectTo(g.consumerAddress);
      const producer = await g.app.next();
      const result = outcome(consumer);
      writeForever(producer);
      await received(consumer, 2 * MiB);
      producer.resetAndDestroy();
      assert.equal((await result).end, 'ECONNRESET');
    } finally {
      await g.close();
    }
  });

  it('reverse direction: a consumer reset mid-stream reaches the producer as an error', { timeout: TIMEOUT }, async () => {
    const g = await gateways();
    try {
      const consumer = await connectTo(g.consumerAddress);
      const producer = await g.app.next();
      const result = outcome(producer);
      writeForever(consumer);
      await received(producer, 2 * MiB);
      consumer.resetAndDestroy();
      assert.equal((await result).end, 'ECONNRESET');
    } finally {
      await g.close();
    }
  });

  it('a release mid-stream resets both applications', { timeout: TIMEOUT }, async () => {
    const g = await gateways();
    try {
      const consumer = await connectTo(g.consumerAddress);
      const producer = await g.app.next();
      const atConsumer = outcome(consumer);
      writeForever(producer);
      await received(consumer, 1 * MiB);
      const atProducer = outcome(producer);
      await g.prod.release('s');
      assert.equal((await atConsumer).end, 'ECONNRESET');
      assert.notEqual((await atProducer).end, 'end');
    } finally {
      await g.close();
    }
  });

  for (const atRecord of [true, false]) {
    it(`a FIN injected on the WAN mid-stream (${atRecord ? 'at a TLS record boundary' : 'inside a record'}) reaches both applications as an error`, { timeout: TIMEOUT }, async () => {
      let r: Awaited<ReturnType<typeof relay>> | undefined;
      const g = await gateways(async (wan) => {
        r = await relay(wan, 3 * MiB + 77, atRecord);
        return r.address;
      });
      try {
        const consumer = await connectTo(g.consumerAddress);
        const producer = await g.app.next();
        const atConsumer = outcome(consumer);
        const atProducer = outcome(producer);
        writeForever(producer);
        const forwarded = await r!.cut;
        const c = await atConsumer;
        assert.equal(c.end, 'ECONNRESET');
        assert.ok(c.bytes < forwarded, 'the consumer got less than the relay let through (TLS and frames add bytes)');
        assert.equal((await atProducer).end, 'ECONNRESET');
      } finally {
        await g.close();
        await r?.close();
      }
    });
  }
});

describe('the framed WAN side of the forwarder, fed by hand', () => {
  // The frames do not depend on TLS: a plain socket plays the peer gateway here, so
  // that the test can write what no gateway would.
  async function framedHop() {
    const app = await application();
    const sockets: Socket[] = [];
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (wanSide) => {
      const target = connect({ host: app.address.host, port: app.address.port, allowHalfOpen: true });
      sockets.push(wanSide, target);
      target.pause();
      target.once('connect', () => forward(wanSide, target, { toTarget: 0, fromTarget: 0 }, () => {}, undefined, 'accepted'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const peer = await connectTo({ host: '127.0.0.1', port: (server.address() as { port: number }).port });
    peer.setNoDelay(true);
    const producer = await app.next();
    return {
      peer,
      producer,
      close: async () => {
        for (const s of [peer, ...sockets]) s.destroy();
        await new Promise((r) => server.close(r));
        await app.close();
      },
    };
  }

  it('frames with headers split across writes, then END: every byte and a clean end', { timeout: TIMEOUT }, async () => {
    const h = await framedHop();
    try {
      const data = randomBytes(300 * KiB);
      const atProducer = outcome(h.producer);
      const wire = Buffer.concat([dataHeader(100 * KiB), data.subarray(0, 100 * KiB), dataHeader(200 * KiB), data.subarray(100 * KiB), END_FRAME]);
      // Cut inside the headers and inside the END frame.
      for (const [from, to] of [[0, 2], [2, 100 * KiB + 6], [100 * KiB + 6, wire.length - 1], [wire.length - 1, wire.length]] as const) {
        h.peer.write(wire.subarray(from, to));
        await new Promise((r) => setTimeout(r, 20));
      }
      h.peer.end();
      assert.deepEqual(await atProducer, { bytes: data.length, sha: sha(data), end: 'end' });
    } finally {
      await h.close();
    }
  });

  it('a malformed frame resets both sides', { timeout: TIMEOUT }, async () => {
    const h = await framedHop();
    try {
      const atProducer = outcome(h.producer);
      const atPeer = outcome(h.peer);
      h.peer.write(Buffer.concat([dataHeader(3), Buffer.from('abc'), Buffer.from('GET / HTTP/1.1\r\n')]));
      const p = await atProducer;
      assert.equal(p.end, 'ECONNRESET');
      assert.notEqual((await atPeer).end, 'end');
    } finally {
      await h.close();
    }
  });

  it('the WAN side ending without END resets the application', { timeout: TIMEOUT }, async () => {
    const h = await framedHop();
    try {
      const atProducer = outcome(h.producer);
      h.peer.end(Buffer.concat([dataHeader(3), Buffer.from('abc')]));
      assert.deepEqual(await atProducer, { bytes: 3, sha: sha(Buffer.from('abc')), end: 'ECONNRESET' });
    } finally {
      await h.close();
    }
  });
});

/**
 * Two s2cs processes (control over plain gRPC) and one stream between them. The WAN
 * leg is TLS (s2uc request), or with `plain`, plain TCP: both gateways run with
 * --allow-plaintext-data, the producer side exposes the application (inbound-request)
 * and the consumer side reaches that listener (outbound-request).
 */
async function cliStream(plain = false): Promise<{ prodGw: Proc; consGw: Proc; consumer: Socket; producer: Socket; close: () => Promise<void> }> {
  const procs: Proc[] = [];
  const app = await application();
  const close = async () => {
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await app.close();
  };
  try {
    const start = async () => {
      const [port, range] = await Promise.all([freePort(), freePortRange(4)]);
      const extra = plain ? ['--allow-plaintext-data'] : [];
      const p = spawnCli('s2cs', ['start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, ...extra]);
      procs.push(p);
      await p.waitFor(/s2cs ready/);
      return { proc: p, address: `127.0.0.1:${port}` };
    };
    const [prod, cons] = await Promise.all([start(), start()]);
    const uid = 'integrity-cli';
    let consListener: string;
    if (plain) {
      const run = async (args: string[]) => {
        const p = spawnCli('s2uc', ['--insecure', ...args, '--num-conn', '1', '--json', '--uid', uid]);
        procs.push(p);
        assert.equal(await p.exited, 0, p.describe());
        return JSON.parse(p.stdout()) as { listeners: string[] };
      };
      const inbound = await run(['inbound-request', '--s2cs', prod.address, '--targets', `${app.address.host}:${app.address.port}`]);
      consListener = (await run(['outbound-request', '--s2cs', cons.address, '--remote-listeners', inbound.listeners[0]!])).listeners[0]!;
    } else {
      const request = spawnCli('s2uc', ['--insecure', 'request', '--prod-s2cs', prod.address, '--cons-s2cs', cons.address, '--num-conn', '1', '--json', '--uid', uid]);
      procs.push(request);
      const hello = spawnCli('s2app', ['hello', '--insecure', '--s2cs', prod.address, '--uid', uid, '--role', 'PROD', '--listeners', `${app.address.host}:${app.address.port}`]);
      procs.push(hello);
      assert.equal(await hello.exited, 0, hello.describe());
      assert.equal(await request.exited, 0, request.describe());
      consListener = (JSON.parse(request.stdout().trim().split('\n').at(-1)!) as { consListeners: string[] }).consListeners[0]!;
    }
    const [host, port] = consListener.split(':');
    const consumer = await connectTo({ host: host!, port: Number(port) });
    const producer = await app.next();
    return { prodGw: prod.proc, consGw: cons.proc, consumer, producer, close };
  } catch (err) {
    await close();
    throw err;
  }
}

describe('gateways as processes, one of them dying or stopped mid-stream', () => {
  // The data plane's sockets carry SO_LINGER 0 (transport/linger.ts): when a gateway
  // process dies, the kernel resets them instead of closing them with a FIN. Without
  // the addon (not built on this machine) that protection is absent and s2cs says so;
  // in CI it must be there (test/transport/linger.test.ts), so these always run there.
  const noAddon = !lingerAvailable && !process.env.CI ? 'the SO_LINGER addon is not built here (npm run build:native)' : false;
  for (const plain of [false, true]) {
    const wan = plain ? 'plain WAN leg' : 'TLS WAN leg';
    const cases: Array<{ name: string; gw: 'prodGw' | 'consGw'; signal: NodeJS.Signals }> = [
      { name: 'kill -9 of the producer-side gateway', gw: 'prodGw', signal: 'SIGKILL' },
      { name: 'kill -9 of the consumer-side gateway', gw: 'consGw', signal: 'SIGKILL' },
    ];
    if (!plain) {
      cases.push({ name: 'SIGTERM of the producer-side gateway', gw: 'prodGw', signal: 'SIGTERM' });
      cases.push({ name: 'SIGTERM of the consumer-side gateway', gw: 'consGw', signal: 'SIGTERM' });
    }
    for (const c of cases) {
      const skip = c.signal === 'SIGKILL' ? noAddon : false;
      it(`${c.name} mid-stream (${wan}): the consumer gets a reset, the producer an error`, { timeout: TIMEOUT, skip }, async () => {
        const s = await cliStream(plain);
        try {
          const atConsumer = outcome(s.consumer);
          const atProducer = outcome(s.producer);
          writeForever(s.producer);
          await received(s.consumer, 2 * MiB);
          s[c.gw].child.kill(c.signal);
          assert.equal((await atConsumer).end, 'ECONNRESET', 'the consumer saw a clean end of a broken stream');
          // The producer is writing: EPIPE or ECONNRESET, whichever its socket reports first.
          assert.notEqual((await atProducer).end, 'end', 'the producer saw a clean end of a broken stream');
        } finally {
          await s.close();
        }
      });
    }
    // Nothing in flight when the gateway dies: without SO_LINGER 0 the kernel closes
    // the dead gateway's sockets with a plain FIN, and both applications would see a
    // clean end (the plain WAN leg passes that FIN on as well).
    for (const gw of ['prodGw', 'consGw'] as const) {
      it(`kill -9 of the ${gw === 'prodGw' ? 'producer' : 'consumer'}-side gateway while idle (${wan}): both applications get a reset`, { timeout: TIMEOUT, skip: noAddon }, async () => {
        const s = await cliStream(plain);
        try {
          const atConsumer = outcome(s.consumer);
          const atProducer = outcome(s.producer);
          const first = received(s.consumer, 1 * MiB);
          s.producer.write(randomBytes(1 * MiB));
          await first;
          s[gw].child.kill('SIGKILL');
          assert.equal((await atConsumer).end, 'ECONNRESET', 'the consumer saw a clean end of a broken stream');
          assert.equal((await atProducer).end, 'ECONNRESET', 'the producer saw a clean end of a broken stream');
        } finally {
          await s.close();
        }
      });
    }
  }
});
