// Per-stream credentials: well-formed, paired, and checked without ever being quoted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createStreamCredentials } from '../../src/security/stream-credentials.js';
import { fingerprint } from '../../src/security/certificates.js';
import { validateUpdate } from '../../src/protocol/validate.js';
import { ScistreamError } from '../../src/protocol/errors.js';

const update = (credentials: { certificate: string; private_key: string; peer_certificate: string } | null) => ({
  uid: 'u',
  remote_listeners: ['127.0.0.1:7000'],
  role: 'PROD',
  control_secret: '',
  credentials,
});

test('each side pins the other and the two sides differ per stream', async () => {
  const a = await createStreamCredentials('a');
  const b = await createStreamCredentials('b');
  assert.equal(a.producerSide.peer_certificate, a.consumerSide.certificate);
  assert.equal(a.consumerSide.peer_certificate, a.producerSide.certificate);
  assert.notEqual(fingerprint(a.producerSide.certificate), fingerprint(a.consumerSide.certificate));
  assert.notEqual(fingerprint(a.producerSide.certificate), fingerprint(b.producerSide.certificate));
  const v = validateUpdate(update(a.producerSide));
  assert.equal(v.credentials?.peerCert, a.consumerSide.certificate);
});

test('malformed credentials are INVALID_ARGUMENT and the message never quotes them', async () => {
  const a = await createStreamCredentials('a');
  const b = await createStreamCredentials('b');
  const cases = [
    { ...a.producerSide, private_key: b.producerSide.private_key },
    { ...a.producerSide, certificate: 'garbage' },
    { ...a.producerSide, private_key: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' },
    { ...a.producerSide, peer_certificate: 'not a certificate' },
    { ...a.producerSide, peer_certificate: '' },
  ];
  for (const c of cases) {
    assert.throws(
      () => validateUpdate(update(c)),
      (err: unknown) => {
        assert.ok(err instanceof ScistreamError);
        assert.equal(err.kind, 'INVALID_ARGUMENT');
        assert.match(err.message, /credentials/);
        assert.doesNotMatch(err.message, /BEGIN|garbage|AAAA/);
        return true;
      },
    );
  }
});
