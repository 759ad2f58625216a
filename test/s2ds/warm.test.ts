// Warm WAN connections (src/s2ds/warm.ts), with two real data servers joined by
// the stream's TLS leg on loopback: after a stream's first connection the consumer
// gateway holds one authenticated connection per listener, the producer gateway
// dials the producer only when a consumer's connection takes it (the producer never
// sees a connection no consumer made), each consumer gets its own bytes, and a
// release leaves nothing. Against a producer gateway of an older build (no ALPN,
// it dials at the handshake), no connection is ever kept warm.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Server, Socket } from 'node:net';
import { LocalDataServer, connectionMemory } from '../../src/s2ds/index.js';
import { PENDING_CONNECTION_MEMORY } from '../../src/s2ds/admission.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange } from '../../src/demo/procs.js';
import { createStreamCredentials } from '../../src/security/stream-credentials.js';
import type { StreamCredentials } from '../../src/transport/index.js';
import { target, through } from '../support/sockets.js';
import { untilTrue } from '../support/until.js';

const BUFFER = 256 * 1024;
const FULL = connectionMemory(BUFFER, 'tls', 'tcp');

const asTransport = (c: { certificate: string; private_key: string; peer_certificate: string }): StreamCredentials => ({
  cert: c.certificate,
  key: c.private_key,
  peerCert: c.peer_certificate,
});

async function dataServer(): Promise<LocalDataServer> {
  return new LocalDataServer({ bindHost: '127.0.0.1', portRange: await freePortRange(4), bufferSize: BUFFER, waitLimit: 16, waitTimeoutMs: 10_000, logger: silentLogger });
}

test('the consumer gateway keeps a connection ready; the producer is dialed only when a consumer takes it', async (t) => {
  const producer = await target();
  const creds = await createStreamCredentials('warm');
  const [prod, cons] = [await dataServer(), await dataServer()];
  const clients: Socket[] = [];
  t.after(async () => {
    for (const c of clients) c.destroy();
    await Promise.all([prod.close(), cons.close()]);
    for (const s of producer.sockets) s.destroy();
    await new Promise((r) => producer.server.close(r));
  });
  const wan = await prod.startListeners('s', 1);
  const [lan] = await cons.startListeners('s', 1);
  await prod.setTargets('s', [{ host: '127.0.0.1', port: producer.port }], { side: 'accept', credentials: asTransport(creds.producerSide) });
  await cons.setTargets('s', wan, { side: 'connect', credentials: asTransport(creds.consumerSide) });

  clients.push(await through(lan!.port));
  assert.equal(producer.sockets.length, 1);
  // A stream used by one connection keeps none ready; from its second on, one is.
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(prod.bufferMemory().reserved, FULL, 'no warm connection after the first connection alone');
  clients.push(await through(lan!.port));
  assert.equal(producer.sockets.length, 2);
  // The warm connection: authenticated at prod, holding only its small share, no slot, no producer connection.
  await untilTrue('a warm connection held at the producer gateway', () => prod.bufferMemory().reserved === 2 * FULL + PENDING_CONNECTION_MEMORY, 10_000);
  assert.equal(prod.pendingConnections(), 0, 'authenticated: not pending');
  assert.equal(producer.sockets.length, 2, 'the producer saw no connection for it');
  assert.equal(prod.stats('s')!.activeConnections, 2);

  // Each new consumer takes the ready one, and another is dialed.
  for (let n = 3; n <= 5; n++) {
    clients.push(await through(lan!.port));
    assert.equal(producer.sockets.length, n, 'one producer connection per consumer');
    await untilTrue(`connection ${n}: a new warm one`, () => prod.bufferMemory().reserved === n * FULL + PENDING_CONNECTION_MEMORY, 10_000);
  }
  // Every consumer talks to its own producer connection: each end is clean and the bytes add up.
  for (const c of clients.splice(0)) {
    const closed = new Promise((r) => c.once('close', r));
    c.end();
    await closed;
  }
  await untilTrue('the forwarded connections ended', () => prod.stats('s')!.activeConnections === 0, 10_000);
  assert.equal(prod.stats('s')!.acceptedConnections, 5, 'the warm connection not yet used is not counted as accepted');
  assert.equal(prod.bufferMemory().reserved, PENDING_CONNECTION_MEMORY, 'only the warm one left');

  await cons.release('s');
  await untilTrue('the warm connection closed at the producer gateway, quietly', () => prod.bufferMemory().reserved === 0, 10_000);
  assert.equal(prod.stats('s')!.refusedConnections, 0, 'an unused warm connection is no refusal');
  assert.equal(producer.sockets.length, 5);
});

test('a producer gateway of an older build (no ALPN: it dials at the handshake) gets no warm connections and no open frame', async (t) => {
  const creds = await createStreamCredentials('warm-old');
  const seen: { first: Buffer | undefined }[] = [];
  const older: Server = createTlsServer(
    { cert: creds.producerSide.certificate, key: creds.producerSide.private_key, ca: [creds.producerSide.peer_certificate], requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' },
    (s: TLSSocket) => {
      const record: { first: Buffer | undefined } = { first: undefined };
      seen.push(record);
      s.on('error', () => undefined);
      // As an older producer gateway: forwards at once; here it sends 'hi' in a DATA frame.
      s.write(Buffer.from([0x44, 0, 0, 2, 0x68, 0x69]));
      s.once('data', (d: Buffer) => (record.first = d.subarray(0, 4)));
    },
  );
  await new Promise<void>((r) => older.listen(0, '127.0.0.1', r));
  const cons = await dataServer();
  const clients: Socket[] = [];
  t.after(async () => {
    for (const c of clients) c.destroy();
    await cons.close();
    await new Promise((r) => older.close(r));
  });
  const [lan] = await cons.startListeners('s', 1);
  await cons.setTargets('s', [{ host: '127.0.0.1', port: (older.address() as { port: number }).port }], { side: 'connect', credentials: asTransport(creds.consumerSide) });
  for (let n = 0; n < 3; n++) {
    const c = await through(lan!.port);
    clients.push(c);
    c.write('data');
  }
  await untilTrue('the older gateway read from all three', () => seen.length === 3 && seen.every((r) => r.first !== undefined), 10_000);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(seen.length, 3, 'one TLS connection per consumer, none kept warm');
  for (const r of seen) assert.equal(r.first![0], 0x44, 'the first frame is DATA, never the open frame');
});
