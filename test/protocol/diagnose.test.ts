// A client's control connection failure names what actually happened, provoked for real:
// an untrusted certificate (its subject and fingerprint, and the option to trust it),
// nothing listening (refused), no answer at all (a drop rule in a network namespace),
// and TLS against plain text or the reverse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTlsServer } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ControlConnection } from '../../src/protocol/client.js';
import { loadServerTls, serverCredentials } from '../../src/security/control-tls.js';
import { createSelfSigned } from '../../src/security/certificates.js';
import { startGateway } from '../support/gateway.js';
import { requireNetns } from '../support/netns.js';

async function statusError(address: string, opts: ConstructorParameters<typeof ControlConnection>[1]): Promise<string> {
  try {
    const c = await ControlConnection.open(address, opts);
    try {
      await c.status({ uid: '' });
    } finally {
      c.close();
    }
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail(`status on ${address} succeeded`);
}

async function closedPort(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return `127.0.0.1:${port}`;
}

test('an untrusted certificate is named by subject and fingerprint, with the option to trust it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-diag-'));
  try {
    const tls = await loadServerTls({ stateDir: dir, names: [] });
    const gw = await startGateway({ credentials: serverCredentials(tls) });
    try {
      const other = join(dir, 'other.pem');
      writeFileSync(other, (await createSelfSigned({ commonName: 'other', validDays: 1 })).cert);
      const msg = await statusError(gw.address, { insecure: false, deadlineMs: 3000, tls: { serverCert: other } });
      t.diagnostic(msg);
      assert.match(msg, /presented a certificate .* does not trust/);
      assert.ok(msg.includes(tls.fingerprint), msg);
      assert.match(msg, /subject CN=/);
      assert.match(msg, /--server-cert/);
      assert.doesNotMatch(msg, /cannot reach|check that s2cs runs there/);
    } finally {
      await gw.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('nothing listening is said as refused, with TLS (pinning and --server-cert) and without', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-diag-'));
  try {
    const address = await closedPort();
    const cert = join(dir, 'cert.pem');
    writeFileSync(cert, (await createSelfSigned({ commonName: 'x', validDays: 1 })).cert);
    for (const opts of [
      { insecure: true },
      { insecure: false, tls: { knownServers: join(dir, 'known_servers') } },
      { insecure: false, tls: { serverCert: cert } },
    ]) {
      const msg = await statusError(address, { ...opts, deadlineMs: 3000 });
      assert.match(msg, /^cannot reach s2cs at 127\.0\.0\.1:\d+( for status)? \([^)]*\); nothing listens there \(connection refused\)/, msg);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TLS against plain text and plain text against TLS still say so', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-diag-'));
  try {
    const plain = await startGateway({ credentials: grpc.ServerCredentials.createInsecure() });
    try {
      const msg = await statusError(plain.address, { insecure: false, deadlineMs: 3000, tls: { knownServers: join(dir, 'known_servers') } });
      assert.match(msg, /answered in plain text/);
    } finally {
      await plain.close();
    }
    const tls = await loadServerTls({ stateDir: dir, names: [] });
    const secure = await startGateway({ credentials: serverCredentials(tls) });
    try {
      const msg = await statusError(secure.address, { insecure: true, deadlineMs: 3000 });
      assert.match(msg, /answered with TLS/);
    } finally {
      await secure.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TLS against plain text and plain text against TLS: every client mode (--server-cert, pinning, --insecure)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-diag-'));
  try {
    await loadServerTls({ stateDir: dir, names: [] });
    const certFile = join(dir, 'tls', 'cert.pem');
    const plain = await startGateway({ credentials: grpc.ServerCredentials.createInsecure() });
    try {
      for (const tlsOpts of [{ serverCert: certFile }, { knownServers: join(dir, 'ks') }]) {
        const msg = await statusError(plain.address, { insecure: false, deadlineMs: 3000, tls: tlsOpts });
        assert.match(msg, /^s2cs at 127\.0\.0\.1:\d+ answered in plain text: it was started with --insecure; pass --insecure/, msg);
      }
    } finally {
      await plain.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A TCP server for the probes below; every socket it accepts is ended with it. */
async function serve(make: (onSocket: (s: Socket) => void) => Server, onSocket: (s: Socket) => void): Promise<{ address: string; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv = make((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
    onSocket(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  return {
    address: `127.0.0.1:${port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

test('something that is not s2cs on the port is named by what it answered, for every client mode', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-diag-'));
  try {
    const tls = await loadServerTls({ stateDir: dir, names: [] });
    const certFile = join(dir, 'tls', 'cert.pem');
    const http = createHttpServer((_q, res) => res.end('hello'));
    const cases: { name: string; server: () => Promise<{ address: string; close: () => Promise<void> }>; expect: RegExp }[] = [
      {
        name: 'an HTTP/1 server',
        server: async () => {
          await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
          return { address: `127.0.0.1:${(http.address() as { port: number }).port}`, close: () => new Promise<void>((r) => { http.closeAllConnections(); http.close(() => r()); }) };
        },
        expect: /something that is not s2cs answers there: an HTTP\/1 server, it answered "HTTP\/1\.1 400 Bad Request"/,
      },
      { name: 'an echo server', server: () => serve(createServer, (s) => s.pipe(s)), expect: /something that is not s2cs answers there: an echo service/ },
      { name: 'an ssh-like banner', server: () => serve(createServer, (s) => s.end('SSH-2.0-OpenSSH_9.2\r\n')), expect: /something that is not s2cs answers there: a server that sent "SSH-2\.0-OpenSSH_9\.2"/ },
      {
        name: 'a TLS server without HTTP/2',
        server: () => serve((on) => createTlsServer({ cert: tls.cert, key: tls.key }, on), () => {}),
        expect: /something that is not s2cs answers there: a TLS server that does not speak HTTP\/2/,
      },
      { name: 'a silent server', server: () => serve(createServer, () => {}), expect: /something accepted the TCP connection but answered neither TLS nor HTTP\/2 within/ },
      { name: 'a server that closes at once', server: () => serve(createServer, (s) => s.destroy()), expect: /something accepted the TCP connection and closed it without answering TLS or HTTP\/2/ },
    ];
    for (const c of cases) {
      const srv = await c.server();
      try {
        // The three client modes at once (each waits out its probes).
        await Promise.all(
          (
            [
              ['insecure', { insecure: true }],
              ['server-cert', { insecure: false, tls: { serverCert: certFile } }],
              ['pinning', { insecure: false, tls: { knownServers: join(dir, `ks-${c.name}`) } }],
            ] as const
          ).map(async ([mode, opts]) => {
            const start = Date.now();
            const msg = await statusError(srv.address, { ...opts, deadlineMs: 3000 });
            t.diagnostic(`${c.name}, ${mode}, after ${Date.now() - start} ms: ${msg}`);
            assert.match(msg, new RegExp(`^cannot reach s2cs at ${srv.address.replace(/\./g, '\\.')}`), `${c.name}, ${mode}: ${msg}`);
            assert.match(msg, c.expect, `${c.name}, ${mode}: ${msg}`);
            assert.doesNotMatch(msg, /--insecure|certificate/, `${c.name}, ${mode}: ${msg}`);
          }),
        );
        // Pinning on first use never pinned what is not s2cs.
        assert.throws(() => readFileSync(join(dir, `ks-${c.name}`), 'utf8'));
      } finally {
        await srv.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a --server-cert file that cannot be read says so, not a bare ENOENT', async () => {
  const msg = await statusError(await closedPort(), { insecure: false, tls: { serverCert: '/nonexistent/s2cs-cert.pem' } });
  assert.match(msg, /^cannot read --server-cert \/nonexistent\/s2cs-cert\.pem \(ENOENT\); give the s2cs certificate/);
});

test("mutual TLS: no client certificate, or one the gateway's --client-ca did not issue, is said as such", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-diag-'));
  try {
    const tls = await loadServerTls({ stateDir: dir, names: [] });
    const ca = await createSelfSigned({ commonName: 'client ca', validDays: 1 });
    writeFileSync(join(dir, 'ca.pem'), ca.cert);
    const other = await createSelfSigned({ commonName: 'another client', validDays: 1 });
    writeFileSync(join(dir, 'other.pem'), other.cert);
    writeFileSync(join(dir, 'other.key'), other.key, { mode: 0o600 });
    const gw = await startGateway({ credentials: serverCredentials(tls, join(dir, 'ca.pem')) });
    try {
      for (const [trust, i] of [[{ serverCert: join(dir, 'tls', 'cert.pem') }, 1], [{ knownServers: join(dir, 'known_servers') }, 2]] as const) {
        const none = await statusError(gw.address, { insecure: false, deadlineMs: 3000, tls: trust });
        assert.match(none, /^s2cs at 127\.0\.0\.1:\d+ requires a client certificate \(it was started with --client-ca\) and the client presented none; give --client-cert and --client-key/, `${i}: ${none}`);
        const refused = await statusError(gw.address, { insecure: false, deadlineMs: 3000, tls: { ...trust, clientCert: join(dir, 'other.pem'), clientKey: join(dir, 'other.key') } });
        assert.match(refused, /^s2cs at 127\.0\.0\.1:\d+ refused the client certificate the client presented \(--client-cert\): it accepts only certificates its --client-ca issued/, `${i}: ${refused}`);
      }
    } finally {
      await gw.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The client runs inside a namespace of its own whose nftables table drops every packet
// to the control port: SYNs go unanswered, as behind a dropping firewall.
const CHILD = `
const { ControlConnection } = await import(process.argv[2]);
const [, , , address, certFile, knownServers] = process.argv;
const out = [];
for (const [mode, opts, deadlineMs] of [
  ['insecure', { insecure: true }, 3000],
  ['server-cert', { insecure: false, tls: { serverCert: certFile } }, 3000],
  ['pinning', { insecure: false, tls: { knownServers } }, 3000],
  // s2app's Hello waits minutes for its answer: a dropped SYN must still be said within seconds.
  ['insecure, 200 s deadline', { insecure: true }, 200000],
  ['server-cert, 200 s deadline', { insecure: false, tls: { serverCert: certFile } }, 200000],
]) {
  const start = Date.now();
  try {
    const c = await ControlConnection.open(address, { ...opts, deadlineMs });
    try { await c.status({ uid: '' }); out.push({ mode, message: 'succeeded' }); } finally { c.close(); }
  } catch (err) {
    out.push({ mode, message: err.message, ms: Date.now() - start });
  }
}
// grpc-js keeps a dropped connection attempt alive after close(); s2uc exits likewise.
process.stdout.write(JSON.stringify(out), () => process.exit(0));
`;

test('a black-holed control port is said as no answer at all, not as TLS', { timeout: 90_000 }, async (t) => {
  requireNetns();
  const ns = `ssdiag-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'ss-diag-'));
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  try {
    ip('netns', 'add', ns);
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
    execFileSync('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      input: 'table inet ssdiag {\n  chain input {\n    type filter hook input priority 0;\n    tcp dport 5000 drop\n  }\n}\n',
    });
    const cert = join(dir, 'cert.pem');
    writeFileSync(cert, (await createSelfSigned({ commonName: 'x', validDays: 1 })).cert);
    const script = join(dir, 'child.mjs');
    writeFileSync(script, CHILD);
    const client = new URL('../../src/protocol/client.js', import.meta.url).href;
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(
        'ip',
        ['netns', 'exec', ns, process.execPath, script, client, '127.0.0.1:5000', cert, join(dir, 'known_servers')],
        { timeout: 60_000, encoding: 'utf8' },
        (err, out, errOut) => (err ? reject(new Error(`${err.message}: ${errOut}`)) : resolve(out)),
      ),
    );
    const results = JSON.parse(stdout) as { mode: string; message: string; ms: number }[];
    assert.equal(results.length, 5);
    for (const r of results) {
      t.diagnostic(`${r.mode} after ${r.ms} ms: ${r.message}`);
      assert.match(r.message, /^cannot reach s2cs at 127\.0\.0\.1:5000( for status)?: no answer at all, the TCP connection was not established/, `${r.mode}: ${r.message}`);
      assert.doesNotMatch(r.message, /TLS handshake|--insecure/, `${r.mode}: ${r.message}`);
      // The deadline (3 s) or the certificate fetch (10 s), plus one probe (3 s) at most; with
      // a long deadline, the connect watch (4 s, then a probe of 7 s at most).
      assert.ok(r.ms < 16_000, `${r.mode} took ${r.ms} ms`);
    }
  } finally {
    try {
      ip('netns', 'exec', ns, 'nft', 'delete', 'table', 'inet', 'ssdiag');
    } catch {
      /* the namespace may not have been made */
    }
    try {
      ip('netns', 'delete', ns);
    } catch {
      /* not made */
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
