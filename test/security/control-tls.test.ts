// The control channel over TLS: --server-cert, pinning on first use, a changed
// certificate refused, mutual TLS with --client-ca, and credentials reused across
// connections (each still its own TCP connection).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { createServer as createTlsServer, connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { webcrypto, randomBytes } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { ControlConnection } from '../../src/protocol/client.js';
import { channelCredentials, loadServerTls, serverCredentials, type ServerTls } from '../../src/security/control-tls.js';
import { createSelfSigned } from '../../src/security/certificates.js';
import { startGateway } from '../support/gateway.js';

async function tlsGateway(stateDir: string, clientCa?: string) {
  const tls = await loadServerTls({ stateDir, names: [] });
  return { tls, gw: await startGateway({ credentials: serverCredentials(tls, clientCa) }) };
}

async function status(address: string, opts: ConstructorParameters<typeof ControlConnection>[1]): Promise<number> {
  const c = await ControlConnection.open(address, opts);
  try {
    return (await c.status({ uid: '' })).free_ports;
  } finally {
    c.close();
  }
}

test('the self-signed certificate is made once and reused; --server-cert verifies it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-tls-'));
  try {
    const first = await loadServerTls({ stateDir: dir, names: [] });
    const again = await loadServerTls({ stateDir: dir, names: [] });
    assert.ok(first.created);
    assert.equal(again.created, undefined);
    assert.equal(again.fingerprint, first.fingerprint);
    assert.equal(statSync(join(dir, 'tls', 'key.pem')).mode & 0o077, 0, 'the key is private');
    const { gw } = await tlsGateway(dir);
    try {
      assert.ok((await status(gw.address, { insecure: false, tls: { serverCert: join(dir, 'tls', 'cert.pem') } })) > 0);
      // A plain-text client gets nothing from a TLS server.
      await assert.rejects(status(gw.address, { insecure: true, deadlineMs: 3000 }));
      // Another certificate in --server-cert: refused.
      const other = join(dir, 'other.pem');
      writeFileSync(other, (await createSelfSigned({ commonName: 'other', validDays: 1 })).cert);
      await assert.rejects(status(gw.address, { insecure: false, deadlineMs: 3000, tls: { serverCert: other } }));
    } finally {
      await gw.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('pinning on first use: warns once, then checks; a changed certificate is refused loudly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-tofu-'));
  const knownServers = join(dir, 'known_servers');
  const warnings: string[] = [];
  const tls = { knownServers, warn: (m: string) => warnings.push(m) };
  try {
    const a = await tlsGateway(join(dir, 'a'));
    try {
      assert.ok((await status(a.gw.address, { insecure: false, tls })) > 0);
      assert.equal(warnings.length, 1);
      assert.ok(warnings[0]!.includes(a.tls.fingerprint));
      assert.ok(readFileSync(knownServers, 'utf8').includes(a.tls.fingerprint));
      assert.equal(statSync(knownServers).mode & 0o077, 0);
      assert.ok((await status(a.gw.address, { insecure: false, tls })) > 0);
      assert.equal(warnings.length, 1, 'no warning the second time');
      // The same address now answers with another certificate.
      const pinnedLine = readFileSync(knownServers, 'utf8').trim().split(' ');
      writeFileSync(knownServers, `${pinnedLine[0]} 00:11:22\n`);
      await assert.rejects(status(a.gw.address, { insecure: false, tls }), /CHANGED/);
    } finally {
      await a.gw.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('credentials are made once per --server-cert content and reused; a changed file counts at once; each connection keeps its own TCP connection', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-tls-reuse-'));
  try {
    const { gw } = await tlsGateway(dir);
    const good = readFileSync(join(dir, 'tls', 'cert.pem'), 'utf8');
    const bundle = join(dir, 'bundle.pem');
    writeFileSync(bundle, good);
    try {
      const opts = { insecure: false, tls: { serverCert: bundle } } as const;
      const a = await channelCredentials(gw.address, opts.tls);
      assert.equal(await channelCredentials(gw.address, opts.tls), a, 'the same bundle: the same credentials');
      // Two connections open at once, each with its own TCP connection to the server.
      const both = await Promise.all([ControlConnection.open(gw.address, opts), ControlConnection.open(gw.address, opts)]);
      try {
        await Promise.all(both.map((c) => c.status({ uid: '' })));
        const port = gw.address.slice(gw.address.lastIndexOf(':') + 1);
        const ss = execFileSync('ss', ['-Htn', 'state', 'established', `( dport = :${port} )`], { encoding: 'utf8' });
        assert.equal(ss.split('\n').filter((l) => l.trim()).length, 2, `one TCP connection per ControlConnection:\n${ss}`);
      } finally {
        for (const c of both) c.close();
      }
      // The file now trusts another certificate only: refused at once, not served from before.
      writeFileSync(bundle, (await createSelfSigned({ commonName: 'other', validDays: 1 })).cert);
      assert.notEqual(await channelCredentials(gw.address, opts.tls), a);
      await assert.rejects(status(gw.address, { ...opts, deadlineMs: 3000 }));
      writeFileSync(bundle, good);
      assert.ok((await status(gw.address, opts)) > 0);
    } finally {
      await gw.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mutual TLS: with --client-ca, only clients with a certificate from that CA get in', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-mtls-'));
  try {
    const client = await createSelfSigned({ commonName: 'scientist', validDays: 1 });
    const ca = join(dir, 'client-ca.pem');
    writeFileSync(ca, client.cert);
    writeFileSync(join(dir, 'client.pem'), client.cert);
    writeFileSync(join(dir, 'client.key'), client.key);
    const { gw } = await tlsGateway(join(dir, 's'), ca);
    const serverCert = join(dir, 's', 'tls', 'cert.pem');
    try {
      assert.ok((await status(gw.address, { insecure: false, tls: { serverCert, clientCert: join(dir, 'client.pem'), clientKey: join(dir, 'client.key') } })) > 0);
      await assert.rejects(status(gw.address, { insecure: false, deadlineMs: 3000, tls: { serverCert } }));
    } finally {
      await gw.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** An RSA certificate, as an operator may give with --tls-cert (ours are ECDSA). */
async function rsaCertificate(): Promise<{ cert: string; key: string }> {
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) } as const;
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01' + randomBytes(8).toString('hex'),
    name: 'CN=rsa control test',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys: keys as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[0]['keys'],
    signingAlgorithm: alg,
  });
  const pkcs8 = Buffer.from((await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)) as ArrayBuffer).toString('base64');
  return { cert: cert.toString('pem'), key: `-----BEGIN PRIVATE KEY-----\n${pkcs8.replace(/(.{64})/g, '$1\n')}\n-----END PRIVATE KEY-----\n` };
}

type Handshake = { ok: true; cipher: string; version: string } | { ok: false; error: string };

function handshake(port: number, opts: ConnectionOptions): Promise<Handshake> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['h2'], ...opts });
    s.once('secureConnect', () => {
      resolve({ ok: true, cipher: s.getCipher().name, version: s.getProtocol() ?? '' });
      s.destroy();
    });
    s.once('error', (err) => resolve({ ok: false, error: err.message }));
  });
}

test('control TLS 1.2 offers ECDHE with AES-GCM or ChaCha20-Poly1305 only; TLS 1.3 as before', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-ciphers-'));
  const ecdsa = await loadServerTls({ stateDir: dir, names: [] });
  const rsa = await rsaCertificate();
  const cases: { name: string; tls: ServerTls | { cert: string; key: string }; good: string[]; bad: string[] }[] = [
    {
      name: 'ECDSA certificate',
      tls: ecdsa,
      good: ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305'],
      bad: ['ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA384', 'ECDHE-ECDSA-AES128-CCM8', 'ECDHE-ECDSA-AES128-CCM', 'ECDHE-ECDSA-ARIA128-GCM-SHA256'],
    },
    {
      name: 'RSA certificate',
      tls: rsa,
      good: ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305'],
      bad: ['AES128-SHA', 'AES128-GCM-SHA256', 'ECDHE-RSA-AES128-SHA', 'DHE-RSA-AES128-GCM-SHA256', 'DHE-RSA-AES128-CCM8', 'ECDHE-ARIA128-GCM-SHA256'],
    },
  ];
  try {
    for (const c of cases) {
      const gw = await startGateway({ credentials: serverCredentials({ fingerprint: '', ...c.tls }) });
      // A server that takes every suite: proves the client really offers each refused one.
      const open = createTlsServer({ cert: c.tls.cert, key: c.tls.key, ciphers: 'ALL:@SECLEVEL=0', dhparam: 'auto', ALPNProtocols: ['h2'] }, (s) => s.on('error', () => {}));
      await new Promise<void>((r) => open.listen(0, '127.0.0.1', r));
      const openPort = (open.address() as { port: number }).port;
      try {
        for (const cipher of c.good) {
          const h = await handshake(gw.server.port, { ciphers: cipher, maxVersion: 'TLSv1.2' });
          assert.deepEqual(h, { ok: true, cipher, version: 'TLSv1.2' }, `${c.name}: ${cipher}`);
        }
        for (const cipher of c.bad) {
          const reference = await handshake(openPort, { ciphers: cipher, maxVersion: 'TLSv1.2' });
          assert.ok(reference.ok && reference.cipher === cipher, `${c.name}: the client can negotiate ${cipher} elsewhere (${JSON.stringify(reference)})`);
          const h = await handshake(gw.server.port, { ciphers: cipher, maxVersion: 'TLSv1.2' });
          assert.equal(h.ok, false, `${c.name}: ${cipher} must be refused, got ${JSON.stringify(h)}`);
        }
        // Only weak suites offered: refused whatever their order.
        assert.equal((await handshake(gw.server.port, { ciphers: c.bad.join(':'), maxVersion: 'TLSv1.2' })).ok, false);
        const t13 = await handshake(gw.server.port, { minVersion: 'TLSv1.3' });
        assert.ok(t13.ok && t13.version === 'TLSv1.3', `${c.name}: TLS 1.3 (${JSON.stringify(t13)})`);
        // A default client still gets in, and gRPC works over it.
        const certFile = join(dir, 'server.pem');
        writeFileSync(certFile, c.tls.cert);
        assert.ok((await status(gw.address, { insecure: false, tls: { serverCert: certFile } })) > 0);
      } finally {
        open.close();
        await gw.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
