// The WAN leg: only the peer holding the stream's credentials gets through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ReusedReadBuffer, TlsTransport, listenTcp } from '../../src/transport/index.js';
import { createStreamCredentials } from '../../src/security/stream-credentials.js';
import type { StreamCredentials__Output as StreamCredentials } from '../../src/protocol/generated/scistream/StreamCredentials.js';

const OPTS = { highWaterMark: 64 * 1024 };
const transport = (c: StreamCredentials) => new TlsTransport({ cert: c.certificate, key: c.private_key, peerCert: c.peer_certificate });

async function server(t: TlsTransport) {
  const results: ('ok' | string)[] = [];
  const listener = await listenTcp({ host: '127.0.0.1', port: 0 }, OPTS, (raw) => {
    t.accept(raw, OPTS).then(
      (s) => {
        results.push('ok');
        s.end('secret stream data');
      },
      (err: Error) => results.push(err.message),
    );
  });
  return { listener, results };
}

function readAll(s: import('node:net').Socket): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('error', () => {});
    // The WAN sockets are half-open capable: answer the peer's end with ours.
    s.on('end', () => s.end());
    s.on('close', () => resolve(got));
    s.resume();
  });
}

test('the two gateways of a stream connect, over TLS 1.3', async () => {
  const c = await createStreamCredentials('s');
  const { listener, results } = await server(transport(c.producerSide));
  try {
    const s = await transport(c.consumerSide).connect(listener.address, OPTS);
    assert.equal((s as import('node:tls').TLSSocket).getProtocol(), 'TLSv1.3');
    assert.equal(await readAll(s), 'secret stream data');
    assert.deepEqual(results, ['ok']);
  } finally {
    await listener.close();
  }
});

test('another stream\'s credentials, no certificate, or plain TCP get nothing', async () => {
  const c = await createStreamCredentials('s');
  const other = await createStreamCredentials('other');
  const { listener, results } = await server(transport(c.producerSide));
  try {
    // A consumer gateway of another stream: the producer side refuses it.
    await assert.rejects(transport(other.consumerSide).connect(listener.address, OPTS));
    // A TLS client without a certificate.
    const bare = tlsConnect({ host: '127.0.0.1', port: listener.address.port, rejectUnauthorized: false });
    assert.equal(await readAll(bare), '');
    // Plain TCP that sends bytes.
    const plain = tcpConnect(listener.address.port, '127.0.0.1');
    plain.write('GET / HTTP/1.0\r\n\r\n');
    assert.equal(await readAll(plain), '');
    // A peer that goes silent mid-handshake is dropped by the handshake timeout (10 s).
    for (let i = 0; i < 150 && results.length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(results.length, 3);
    assert.ok(results.every((r) => r !== 'ok'), `all refused: ${results.join(' | ')}`);
  } finally {
    await listener.close();
  }
});

test('the consumer side refuses a producer side that is not the stream\'s', async () => {
  const c = await createStreamCredentials('s');
  const other = await createStreamCredentials('other');
  // An impostor listening where the producer gateway should be, with valid-looking credentials of its own.
  const { listener, results } = await server(transport({ ...other.producerSide, peer_certificate: c.consumerSide.certificate }));
  try {
    await assert.rejects(transport(c.consumerSide).connect(listener.address, OPTS));
    assert.ok(!results.includes('ok'));
  } finally {
    await listener.close();
  }
});

test('TLS connections refuse a reused read buffer: decryption goes on into it after a pause', async () => {
  const c = await createStreamCredentials('reuse');
  const reads = new ReusedReadBuffer(Buffer.alloc(4096));
  assert.throws(() => transport(c.consumerSide).connect({ host: '127.0.0.1', port: 9 }, { ...OPTS, reads }), /reused buffer/);
});
