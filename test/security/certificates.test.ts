// Self-signed certificates (made with @peculiar/x509 over Node's WebCrypto): read back
// by Node and by OpenSSL as the certificate we meant, and usable on a real TLS connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createServer, connect, type TLSSocket } from 'node:tls';
import { createSelfSigned } from '../../src/security/certificates.js';

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test('a self-signed certificate: names, CA, key usage, dates and signature as asked', async (t) => {
  const t0 = Date.now();
  const made = await createSelfSigned({ commonName: 's2cs gw-a, site=1', names: ['localhost', '127.0.0.1', '::1', 'gw-a.example.org'], validDays: 10 });
  const cert = new X509Certificate(made.cert);
  assert.equal(cert.subject, 'CN=s2cs gw-a_ site_1');
  assert.equal(cert.issuer, cert.subject);
  assert.equal(cert.ca, true);
  assert.ok(cert.verify(cert.publicKey), 'signed by its own key');
  assert.ok(cert.checkPrivateKey(createPrivateKey(made.key)));
  assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.equal(cert.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:gw-a.example.org');
  assert.ok(Date.parse(cert.validFrom) <= t0 && Date.parse(cert.validFrom) >= t0 - 6 * 60_000);
  assert.ok(Math.abs(Date.parse(cert.validTo) - (t0 + 10 * 86_400_000)) < 60_000);
  assert.match(cert.serialNumber, /^[0-7]?[0-9A-F]+$/);
  if (!hasOpenssl) t.diagnostic('no openssl command here: the extensions were checked by Node only');
  const dir = mkdtempSync(join(tmpdir(), 'scistream-cert-'));
  try {
    if (!hasOpenssl) return;
    writeFileSync(join(dir, 'c.pem'), made.cert);
    const text = execFileSync('openssl', ['x509', '-in', join(dir, 'c.pem'), '-noout', '-text'], { encoding: 'utf8' });
    assert.match(text, /Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    assert.match(text, /Key Usage: critical\s+Digital Signature, Certificate Sign\n/);
    assert.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(execFileSync('openssl', ['verify', '-CAfile', join(dir, 'c.pem'), join(dir, 'c.pem')], { encoding: 'utf8' }), /OK/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const again = await createSelfSigned({ commonName: 'x', validDays: 1 });
  assert.notEqual(new X509Certificate(again.cert).serialNumber, cert.serialNumber);
  assert.equal(new X509Certificate(again.cert).subjectAltName, undefined);
});

test('two self-signed certificates that pin each other carry a real TLS connection', async () => {
  const server = await createSelfSigned({ commonName: 'server', validDays: 1 });
  const client = await createSelfSigned({ commonName: 'client', validDays: 1 });
  const srv = createServer({ cert: server.cert, key: server.key, ca: client.cert, requestCert: true, rejectUnauthorized: true }, (s) => s.end('ok'));
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  try {
    const port = (srv.address() as { port: number }).port;
    const got = await new Promise<string>((resolve, reject) => {
      const s: TLSSocket = connect({ host: '127.0.0.1', port, cert: client.cert, key: client.key, ca: server.cert, checkServerIdentity: () => undefined });
      let data = '';
      s.setEncoding('utf8').on('data', (d: string) => (data += d)).once('end', () => resolve(data)).once('error', reject);
    });
    assert.equal(got, 'ok');
  } finally {
    srv.close();
  }
});
