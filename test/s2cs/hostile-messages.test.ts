// Messages that once ended the s2cs process: astral-plane text in any field, and
// stream credentials OpenSSL refuses. Each now gets INVALID_ARGUMENT and changes nothing;
// an unexpected exception in a handler is INTERNAL with an incident id, and the server serves on.
import 'reflect-metadata';
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, webcrypto, X509Certificate } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import { RemoteError } from '../../src/protocol/client.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { createStreamCredentials } from '../../src/security/stream-credentials.js';
import { LocalDataServer } from '../../src/s2ds/index.js';
import { freePortRange } from '../../src/demo/procs.js';
import { silentLogger } from '../../src/log.js';
import { pino } from 'pino';
import { Writable } from 'node:stream';

const ASTRAL = '\u{1F600}'.repeat(40) + 'a';

async function rejects(p: Promise<unknown>, code: status, mentions: RegExp): Promise<RemoteError> {
  let seen: RemoteError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RemoteError, `expected a RemoteError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${status[code]}, got ${err.status}: ${err.details}`);
    assert.match(err.details, mentions);
    seen = err;
    return true;
  });
  return seen!;
}

/** A self-signed certificate and PKCS#8 key with the given WebCrypto algorithm and dates. */
async function certificate(
  algorithm: webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams | { name: 'Ed25519' },
  sign: webcrypto.Algorithm | webcrypto.EcdsaParams,
  notBefore = new Date(Date.now() - 60_000),
  notAfter = new Date(Date.now() + 86_400_000),
): Promise<{ cert: string; key: string }> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=test',
    notBefore,
    notAfter,
    keys: keys as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'],
    signingAlgorithm: sign,
  });
  const pkcs8 = Buffer.from((await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)) as ArrayBuffer).toString('base64');
  return { cert: cert.toString('pem'), key: `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/(.{64})/g, '$1\n')}\n-----END PRIVATE KEY-----\n` };
}

const rsa = (bits: number) => ({ name: 'RSASSA-PKCS1-v1_5', modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' });

describe('hostile messages', () => {
  let gw: TestGateway;
  before(async () => {
    gw = await startGateway({ maxConn: 8, helloTimeoutMs: 1000, allowPlaintextData: false }, 8);
  });
  after(() => gw.close());

  test('astral-plane characters in every text field: INVALID_ARGUMENT, and the server lives', async () => {
    const calls: [string, () => Promise<unknown>, RegExp][] = [
      ['req uid', () => gw.client.req({ uid: ASTRAL, role: 'CONS', num_conn: 1, rate: 0 }), /uid/],
      ['req role', () => gw.client.req({ uid: 'u1', role: ASTRAL, num_conn: 1, rate: 0 }), /role/],
      ['hello uid', () => gw.client.hello({ uid: ASTRAL, role: 'PROD', prod_listeners: ['127.0.0.1:1'] }), /uid/],
      ['hello role', () => gw.client.hello({ uid: 'u1', role: ASTRAL, prod_listeners: ['127.0.0.1:1'] }), /role/],
      ['hello listener', () => gw.client.hello({ uid: 'u1', role: 'PROD', prod_listeners: [`${ASTRAL}:80`] }), /prod_listeners\[0\]/],
      ['hello v6 listener', () => gw.client.hello({ uid: 'u1', role: 'PROD', prod_listeners: [`[${ASTRAL}]:80`] }), /prod_listeners\[0\]/],
      ['update target', () => gw.client.update({ uid: 'u1', role: 'CONS', remote_listeners: [`${ASTRAL}:1`] }), /remote_listeners\[0\]/],
      ['release uid', () => gw.client.release({ uid: `${'\u{10FFFF}'.repeat(39)}\u{1F600}` }), /uid/],
      ['status uid', () => gw.client.status({ uid: ASTRAL }), /uid/],
    ];
    for (const [what, call] of calls) {
      const err = await rejects(call(), status.INVALID_ARGUMENT, /not valid|not a valid/);
      assert.doesNotThrow(() => encodeURI(err.details), what);
    }
    assert.deepEqual((await gw.client.status({ uid: '' })).streams, []);
    assert.equal(gw.server.dataServer.ports().reserved, 0);
  });

  test('stream credentials: weak, expired or odd keys are INVALID_ARGUMENT naming the field, and change nothing', async () => {
    const uid = randomUUID();
    await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    const good = await createStreamCredentials(uid);
    const rsa1024 = await certificate(rsa(1024), { name: 'RSASSA-PKCS1-v1_5' });
    const p521 = await certificate({ name: 'ECDSA', namedCurve: 'P-521' }, { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams);
    const expired = await certificate(
      { name: 'ECDSA', namedCurve: 'P-256' },
      { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
      new Date(Date.now() - 10 * 86_400_000),
      new Date(Date.now() - 86_400_000),
    );
    const future = await certificate(
      { name: 'ECDSA', namedCurve: 'P-256' },
      { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
      new Date(Date.now() + 86_400_000),
      new Date(Date.now() + 10 * 86_400_000),
    );
    const cases: [string, { certificate: string; private_key: string; peer_certificate: string }, RegExp][] = [
      ['RSA 1024', { ...good.consumerSide, certificate: rsa1024.cert, private_key: rsa1024.key }, /credentials\.certificate has a 1024-bit RSA key/],
      ['peer RSA 1024', { ...good.consumerSide, peer_certificate: rsa1024.cert }, /credentials\.peer_certificate has a 1024-bit/],
      ['P-521', { ...good.consumerSide, certificate: p521.cert, private_key: p521.key }, /credentials\.certificate has an EC key on curve secp521r1/],
      ['expired', { ...good.consumerSide, certificate: expired.cert, private_key: expired.key }, /credentials\.certificate expired/],
      ['not yet valid peer', { ...good.consumerSide, peer_certificate: future.cert }, /credentials\.peer_certificate is not valid before/],
      ['key of another certificate', { ...good.consumerSide, private_key: good.producerSide.private_key }, /credentials\.private_key does not belong/],
    ];
    for (const [what, credentials, mentions] of cases) {
      const err = await rejects(gw.client.update({ uid, role: 'CONS', remote_listeners: ['127.0.0.1:9'], credentials }), status.INVALID_ARGUMENT, mentions);
      assert.doesNotMatch(err.details, /BEGIN/, what);
      const st = (await gw.client.status({ uid })).streams[0]!;
      assert.deepEqual(st.targets, [], `${what}: no connection map taken`);
    }
    // Strong keys of the other accepted kinds are taken.
    const ed = await certificate({ name: 'Ed25519' }, { name: 'Ed25519' });
    const rsa2048 = await certificate(rsa(2048), { name: 'RSASSA-PKCS1-v1_5' });
    await gw.client.update({ uid, role: 'CONS', remote_listeners: ['127.0.0.1:9'], credentials: { ...good.consumerSide, peer_certificate: ed.cert } });
    await gw.client.update({ uid, role: 'CONS', remote_listeners: ['127.0.0.1:9'], credentials: { certificate: rsa2048.cert, private_key: rsa2048.key, peer_certificate: ed.cert } });
    assert.equal(new X509Certificate(rsa2048.cert).publicKey.asymmetricKeyDetails?.modulusLength, 2048);
    await gw.client.release({ uid });
  });
});

test('an unexpected exception in a handler is INTERNAL with an incident id, and the server serves on', async () => {
  const range = await freePortRange(4);
  class FaultyDataServer extends LocalDataServer {
    override async startListeners(uid: string, count: number) {
      if (uid.startsWith('boom')) throw new TypeError('injected fault');
      return super.startListeners(uid, count);
    }
  }
  const lines: string[] = [];
  const logger = pino({ level: 'error' }, new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) }));
  const gw = await startGateway({
    dataServer: new FaultyDataServer({ bindHost: '127.0.0.1', portRange: range, bufferSize: 65536, waitLimit: 4, waitTimeoutMs: 1000, logger: silentLogger }),
    logger,
  });
  try {
    const err = await rejects(gw.client.req({ uid: 'boom-1', role: 'CONS', num_conn: 1, rate: 0 }), status.INTERNAL, /incident [0-9a-f]{8}/);
    const incident = /incident ([0-9a-f]{8})/.exec(err.details)![1]!;
    assert.ok(lines.some((l) => JSON.parse(l).incident === incident && /injected fault/.test(l)), `the log carries incident ${incident}: ${lines.join(' | ')}`);
    const ok = await gw.client.req({ uid: 'fine-1', role: 'CONS', num_conn: 1, rate: 0 });
    assert.equal(ok.listeners.length, 1);
    await gw.client.release({ uid: 'fine-1' });
  } finally {
    await gw.close();
  }
});
