// The control channel over TLS: --server-cert, pinning on first use, a changed
// certificate refused, and mutual TLS with --client-ca.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlConnection } from '../../src/protocol/client.js';
import { loadServerTls, serverCredentials } from '../../src/security/control-tls.js';
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
