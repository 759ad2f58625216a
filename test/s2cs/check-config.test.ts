// s2cs check-config checks what start checks, short of serving (issue 19): addresses of
// this host, free ports, readable files, certificates that match their keys; it prints
// start's warnings and exits 2 with start's message. Real processes, sockets and files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnCli } from '../../src/demo/procs.js';
import { createSelfSigned } from '../../src/security/certificates.js';

const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs s2cs to its end with SCISTREAM_HOME in `home`. */
async function s2cs(home: string, args: string[]): Promise<Result> {
  const p = spawnCli('s2cs', args, { env: { ...process.env, SCISTREAM_HOME: home } });
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** The last stderr line, which is the error when the exit code is 2 (warnings come before it). */
function errorLine(r: Result): string {
  assert.equal(r.code, 2, `exit 2: ${r.stdout}${r.stderr}`);
  return r.stderr.trim().split('\n').at(-1)!;
}

async function withHome(fn: (home: string) => Promise<void>): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'ss-checkcfg-'));
  try {
    await fn(home);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

function listen(port = 0): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port }, () => resolve(server));
  });
}

const close = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));
const LOOPBACK = ['--listener-ip', '127.0.0.1', '--port', '0'];

test("the example file's documentation address is not on this host: check-config says so, with start's line", async () => {
  await withHome(async (home) => {
    const example = join(EXAMPLES, 's2cs.toml');
    const checked = errorLine(await s2cs(home, ['check-config', '--config', example]));
    assert.match(checked, /^s2cs: error: cannot open data listeners on 198\.51\.100\.7 \(EADDRNOTAVAIL\); give an address of this host/);
    const started = errorLine(await s2cs(home, ['start', '--config', example]));
    assert.equal(checked, started, 'check-config exits with the line start exits with');
    // --json: the same line on stderr, and the problem in the JSON.
    const json = await s2cs(home, ['check-config', '--config', example, '--json']);
    assert.equal(errorLine(json), checked);
    const shown = JSON.parse(json.stdout) as { valid: boolean; problem: string };
    assert.equal(shown.valid, false);
    assert.equal(`s2cs: error: ${shown.problem}`, checked);
    // The same file with an address of this host is valid.
    const ok = await s2cs(home, ['check-config', '--config', example, ...LOOPBACK]);
    assert.equal(ok.code, 0, ok.stderr);
  });
});

test('a --control-host or --metrics-listen address not on this host, a control or metrics port in use: the problem start would give', async () => {
  await withHome(async (home) => {
    const held = await listen();
    const port = (held.address() as { port: number }).port;
    try {
      const inUse = await s2cs(home, ['check-config', '--listener-ip', '127.0.0.1', '--port', String(port)]);
      assert.equal(errorLine(inUse), `s2cs: error: control port 127.0.0.1:${port} is in use by another program; stop it or choose another --port`);
      assert.equal(inUse.stdout, '', 'an invalid configuration is not printed as valid');
      const started = await s2cs(home, ['start', '--listener-ip', '127.0.0.1', '--port', String(port)]);
      assert.equal(errorLine(started), errorLine(inUse));
      const metrics = await s2cs(home, ['check-config', ...LOOPBACK, '--metrics-listen', `127.0.0.1:${port}`, '--json']);
      assert.match(errorLine(metrics), /--metrics-listen 127\.0\.0\.1:\d+ is in use by another program/);
      const shown = JSON.parse(metrics.stdout) as { valid: boolean; problem: string; warnings: string[] };
      assert.equal(shown.valid, false);
      assert.equal(`s2cs: error: ${shown.problem}`, errorLine(metrics));
    } finally {
      await close(held);
    }
    const foreign = await s2cs(home, ['check-config', ...LOOPBACK, '--control-host', '198.51.100.7', '--auth', 'none']);
    assert.match(errorLine(foreign), /^s2cs: error: cannot serve the control channel on 198\.51\.100\.7:0 \(EADDRNOTAVAIL\); check --control-host/);
    const foreignMetrics = await s2cs(home, ['check-config', ...LOOPBACK, '--metrics-listen', '198.51.100.7:9464', '--metrics-public']);
    assert.match(errorLine(foreignMetrics), /^s2cs: error: cannot serve metrics on 198\.51\.100\.7:9464 \(EADDRNOTAVAIL\); give an address of this host/);
  });
});

test('a key that is not the certificate\'s, an unreadable file, a CA bundle that is not PEM: the line start exits with', async () => {
  await withHome(async (home) => {
    const a = await createSelfSigned({ commonName: 'gw-a', names: ['127.0.0.1'], validDays: 1 });
    const b = await createSelfSigned({ commonName: 'gw-b', names: ['127.0.0.1'], validDays: 1 });
    const cert = join(home, 'cert.pem');
    const otherKey = join(home, 'other-key.pem');
    writeFileSync(cert, a.cert);
    writeFileSync(otherKey, b.key, { mode: 0o600 });
    const pair = ['--tls-cert', cert, '--tls-key', otherKey];
    const mismatch = errorLine(await s2cs(home, ['check-config', ...LOOPBACK, ...pair]));
    assert.match(mismatch, /^s2cs: error: control channel TLS: --tls-key .*other-key\.pem does not belong to --tls-cert .*cert\.pem \(the key pair does not match\)/);
    assert.equal(errorLine(await s2cs(home, ['start', ...LOOPBACK, ...pair])), mismatch);
    const missing = errorLine(await s2cs(home, ['check-config', ...LOOPBACK, '--tls-cert', cert, '--tls-key', join(home, 'nope.pem')]));
    assert.match(missing, /cannot read --tls-key .*nope\.pem: it does not exist/);
    const notPem = join(home, 'ca.pem');
    writeFileSync(notPem, 'not a certificate\n');
    assert.match(errorLine(await s2cs(home, ['check-config', ...LOOPBACK, '--client-ca', notPem])), /--client-ca .*ca\.pem holds no PEM certificate/);
    // The state dir's self-signed pair is checked as start checks it.
    const state = join(home, 'state');
    mkdirSync(join(state, 'tls'), { recursive: true });
    writeFileSync(join(state, 'tls', 'cert.pem'), 'garbage\n');
    writeFileSync(join(state, 'tls', 'key.pem'), b.key, { mode: 0o600 });
    const broken = errorLine(await s2cs(home, ['check-config', ...LOOPBACK, '--state-dir', state]));
    assert.match(broken, /^s2cs: error: control channel TLS: the state dir's certificate .*cert\.pem holds no PEM certificate/);
    assert.equal(errorLine(await s2cs(home, ['start', ...LOOPBACK, '--state-dir', state])), broken);
  });
});

test("a private key others may read: start's warning, and still valid; a valid loopback configuration makes nothing", async () => {
  await withHome(async (home) => {
    const a = await createSelfSigned({ commonName: 'gw-a', names: ['127.0.0.1'], validDays: 1 });
    const cert = join(home, 'cert.pem');
    const key = join(home, 'key.pem');
    writeFileSync(cert, a.cert);
    writeFileSync(key, a.key);
    chmodSync(key, 0o644);
    const r = await s2cs(home, ['check-config', ...LOOPBACK, '--tls-cert', cert, '--tls-key', key]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^s2cs: warning: the private key --tls-key .*key\.pem may be read by its group and every user \(mode 0644\).*chmod 600/m);
    assert.match(r.stdout, /^# s2cs .*; valid \(\d+ warnings?\)$/m);
    const json = await s2cs(home, ['check-config', ...LOOPBACK, '--tls-cert', cert, '--tls-key', key, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const shown = JSON.parse(json.stdout) as { valid: boolean; warnings: string[]; problem?: string };
    assert.equal(shown.valid, true);
    assert.equal(shown.problem, undefined);
    assert.ok(shown.warnings.some((w) => /may be read by its group and every user/.test(w)), shown.warnings.join('\n'));
    // Loopback, the self-signed default: valid, and neither the state dir nor a certificate is made.
    const before = readdirSync(home).sort();
    const ok = await s2cs(home, ['check-config', ...LOOPBACK]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /; valid\n/);
    assert.deepEqual(readdirSync(home).sort(), before, 'check-config made nothing under SCISTREAM_HOME');
  });
});

/** Runs s2ds to its end with SCISTREAM_HOME in `home`. */
async function s2ds(home: string, args: string[]): Promise<Result> {
  const p = spawnCli('s2ds', args, { env: { ...process.env, SCISTREAM_HOME: home } });
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

test("s2ds check-config: the agent link's address in use, a key that is not the certificate's, a key others may read; valid makes nothing", async () => {
  await withHome(async (home) => {
    const s2csPair = await createSelfSigned({ commonName: 's2cs test', validDays: 1 });
    const a = await createSelfSigned({ commonName: 'agent-a', names: ['127.0.0.1'], validDays: 1 });
    const b = await createSelfSigned({ commonName: 'agent-b', names: ['127.0.0.1'], validDays: 1 });
    const s2csCert = join(home, 's2cs-cert.pem');
    const cert = join(home, 'cert.pem');
    const key = join(home, 'key.pem');
    const otherKey = join(home, 'other-key.pem');
    writeFileSync(s2csCert, s2csPair.cert);
    writeFileSync(cert, a.cert);
    writeFileSync(key, a.key, { mode: 0o600 });
    writeFileSync(otherKey, b.key, { mode: 0o600 });
    const base = ['--listener-ip', '127.0.0.1', '--port-range', '5100-5101', '--s2cs-cert', s2csCert];
    const held = await listen();
    const port = (held.address() as { port: number }).port;
    try {
      const inUse = errorLine(await s2ds(home, ['check-config', ...base, '--listen', `127.0.0.1:${port}`]));
      assert.equal(inUse, `s2ds: error: --listen 127.0.0.1:${port} is in use by another program; stop it or choose another port`);
      assert.equal(errorLine(await s2ds(home, ['start', ...base, '--listen', `127.0.0.1:${port}`])), inUse);
    } finally {
      await close(held);
    }
    const tcp = [...base, '--listen', '127.0.0.1:0'];
    const mismatch = errorLine(await s2ds(home, ['check-config', ...tcp, '--tls-cert', cert, '--tls-key', otherKey]));
    assert.match(mismatch, /^s2ds: error: agent link TLS: --tls-key .*other-key\.pem does not belong to --tls-cert/);
    assert.equal(errorLine(await s2ds(home, ['start', ...tcp, '--tls-cert', cert, '--tls-key', otherKey])), mismatch);
    chmodSync(key, 0o640);
    const exposed = await s2ds(home, ['check-config', ...tcp, '--tls-cert', cert, '--tls-key', key, '--json']);
    assert.equal(exposed.code, 0, exposed.stderr);
    const shown = JSON.parse(exposed.stdout) as { valid: boolean; warnings: string[] };
    assert.equal(shown.valid, true);
    assert.ok(shown.warnings.some((w) => /key\.pem may be read by its group \(mode 0640\)/.test(w)), shown.warnings.join('\n'));
    const before = readdirSync(home).sort();
    const ok = await s2ds(home, ['check-config', ...tcp]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(readdirSync(home).sort(), before, 's2ds check-config made no state dir or certificate');
  });
});
