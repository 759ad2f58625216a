// The S2CS–S2DS link over TCP, authenticated both ways, against a real agent process:
// only the listed s2cs certificate gets in, s2cs trusts only the listed agent, the
// agent's key stays mode 600, and the CLI refuses an unprotected listen address.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, statSync, rmSync, writeFileSync } from 'node:fs';
import 'reflect-metadata';
import { webcrypto, randomBytes } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { RemoteAgent, AgentCallError } from '../../src/s2ds/remote.js';
import { Agent, type AgentClient } from '../../src/protocol/agent-contract.js';
import { createSelfSigned, fingerprint } from '../../src/security/certificates.js';
import { certificateBundle } from '../../src/security/agent-tls.js';
import { spawnCli } from '../../src/demo/procs.js';
import { startProducer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { startAgentProcess, tempDir, type AgentProcess } from '../support/agent.js';

async function healthError(client: AgentClient): Promise<grpc.ServiceError | null> {
  return new Promise((resolve) => client.Health({}, { deadline: Date.now() + 5000 }, (err) => resolve(err)));
}

describe('s2ds over TCP with mutual TLS', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({ tcp: true });
  });
  after(async () => {
    await agent.close();
  });

  test('prints its fingerprint; its key is mode 600 in the state dir', () => {
    const cert = agent.agentCert!;
    assert.match(agent.proc.stderr(), new RegExp(fingerprint(cert)));
    assert.equal(statSync(join(agent.stateDir, 'tls', 'key.pem')).mode & 0o777, 0o600);
  });

  test('the listed s2cs reaches the agent at an IP address and streams through it', async () => {
    const remote = new RemoteAgent({ address: agent.address, tls: { agentCerts: agent.agentCert!, clientCert: agent.s2cs!.cert, clientKey: agent.s2cs!.key } });
    const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 4 << 20, seed: 2 });
    try {
      await remote.poll();
      assert.ok(remote.up(), 'the agent answered Health');
      const [l] = await remote.startListeners('tcp-link', 1);
      await remote.setTargets('tcp-link', producer.addresses);
      const r = await consume({ connect: [l!], bytes: 4 << 20, seed: 2 });
      assert.equal(r.bytes, 4 << 20);
      await remote.release('tcp-link');
    } finally {
      await producer.close();
      await remote.close();
    }
  });

  test('a client without a certificate is refused', async () => {
    const client = new Agent(agent.address, grpc.credentials.createSsl(Buffer.from(agent.agentCert!), null, null, { checkServerIdentity: () => undefined })) as unknown as AgentClient;
    const err = await healthError(client);
    client.close();
    assert.equal(err?.code, grpc.status.UNAVAILABLE, String(err?.details));
  });

  test('a client with an unlisted certificate is refused', async () => {
    const stranger = await createSelfSigned({ commonName: 'test s2cs', validDays: 1 });
    const remote = new RemoteAgent({ address: agent.address, name: 'gw-a-2', tls: { agentCerts: agent.agentCert!, clientCert: stranger.cert, clientKey: stranger.key } });
    try {
      const err = await remote.startListeners('nope', 1).catch((e: unknown) => e);
      assert.ok(err instanceof AgentCallError, String(err));
      assert.equal(err.kind, 'UNAVAILABLE');
      assert.match(err.message, new RegExp(`^data-server agent gw-a-2 at ${agent.address}: unreachable`));
      assert.equal(remote.up(), false);
    } finally {
      await remote.close();
    }
  });

  test('an agent with another certificate than the listed one is refused by s2cs', async () => {
    const other = await createSelfSigned({ commonName: 'some agent', names: ['127.0.0.1', 'localhost'], validDays: 1 });
    const remote = new RemoteAgent({ address: agent.address, tls: { agentCerts: other.cert, clientCert: agent.s2cs!.cert, clientKey: agent.s2cs!.key } });
    try {
      const err = await remote.listStreams().catch((e: unknown) => e);
      assert.ok(err instanceof AgentCallError, String(err));
      assert.equal(err.kind, 'UNAVAILABLE');
    } finally {
      await remote.close();
    }
  });

  test('an s2cs certificate issued by a CA in --s2cs-cert is accepted; s2cs pins a CA-issued agent certificate by itself', async () => {
    const ca = await createSelfSigned({ commonName: 'test ca', validDays: 1 });
    const s2cs = await issue(ca, 'test s2cs issued');
    const agentIdentity = await issue(ca, 'test agent issued');
    const dir = tempDir('scistream-s2ds-ca-');
    try {
      writeFileSync(join(dir, 'agent.pem'), agentIdentity.cert);
      writeFileSync(join(dir, 'agent.key'), agentIdentity.key, { mode: 0o600 });
      const a = await startAgentProcess({ tcp: true, dir, s2cs: ca, extra: ['--tls-cert', join(dir, 'agent.pem'), '--tls-key', join(dir, 'agent.key')] });
      try {
        // s2cs lists the agent's own certificate only (not the CA): pinned, whatever its issuer and names.
        const remote = new RemoteAgent({ address: a.address, tls: { agentCerts: agentIdentity.cert, clientCert: s2cs.cert, clientKey: s2cs.key } });
        await remote.poll();
        assert.ok(remote.up());
        await remote.close();
      } finally {
        await a.proc.stop('SIGTERM', 5000);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the bundle reader refuses files without certificates', () => {
    assert.throws(() => certificateBundle('hello', 'f'), /holds no PEM certificate/);
  });
});

describe('s2ds start refuses an unprotected link (exit 2, one line)', () => {
  test('a TCP --listen without --s2cs-cert', async () => {
    const p = spawnCli('s2ds', ['start', '--listen', '127.0.0.1:0', '--listener-ip', '127.0.0.1', '--port-range', '40000-40001']);
    assert.equal(await p.exited, 2);
    assert.match(p.stderr(), /^s2ds: error: --listen 127\.0\.0\.1:0 is a TCP address, which needs --s2cs-cert FILE: .*mutual TLS/);
  });

  test('a Unix socket in a directory others may write', async () => {
    const dir = tempDir('scistream-s2ds-open-');
    try {
      const open = join(dir, 'open');
      mkdirSync(open);
      chmodSync(open, 0o777);
      const p = spawnCli('s2ds', ['start', '--listen', `unix:${join(open, 'a.sock')}`, '--listener-ip', '127.0.0.1', '--port-range', '40000-40001']);
      assert.equal(await p.exited, 2);
      assert.match(p.stderr(), /^s2ds: error: .*is writable by other users \(mode 777\)/);
      assert.equal(existsSync(join(open, 'a.sock')), false, 'no socket was made');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A certificate that `ca` issued (not self-signed), as an organisation's CA would. */
async function issue(ca: { cert: string; key: string }, commonName: string): Promise<{ cert: string; key: string }> {
  const der = Buffer.from(ca.key.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const caKey = await webcrypto.subtle.importKey('pkcs8', der, ALGORITHM, false, ['sign']);
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const issuer = new x509.X509Certificate(ca.cert);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString('hex').replace(/^[89a-f]/, '7'),
    subject: `CN=${commonName}`,
    issuer: issuer.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey as unknown as x509.PublicKeyType,
    signingKey: caKey as never,
    extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  const pkcs8 = Buffer.from((await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)) as ArrayBuffer);
  return { cert: cert.toString('pem') + '\n', key: `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64')}\n-----END PRIVATE KEY-----\n` };
}
