// Start-up refuses broken state, plainly (issue 18 point 7), on the real CLIs: a key or
// certificate that is empty, unreadable, not PEM or not a pair (state dir or flags,
// --client-ca, --s2ds-cert, s2ds --s2cs-cert) ends `start` with exit 2 naming the file
// and the fix; a read-only or full state dir says so; a private key others may read and
// an open-files limit below what the bounds admit are warnings with the numbers.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN_DIR, freePort, freePortRange, spawnCli, watchChild, type Proc } from '../../src/demo/procs.js';
import { createSelfSigned } from '../../src/security/certificates.js';
import { createPrivateKey } from 'node:crypto';

const home = mkdtempSync(join(tmpdir(), 'scistream-startup-'));
const env = { ...process.env, SCISTREAM_HOME: home };
let pair: { cert: string; key: string };
let other: { cert: string; key: string };
let n = 0;

before(async () => {
  pair = await createSelfSigned({ commonName: 'startup test', names: ['127.0.0.1'], validDays: 1 });
  other = await createSelfSigned({ commonName: 'another', names: ['127.0.0.1'], validDays: 1 });
});
after(() => rmSync(home, { recursive: true, force: true }));

/** A fresh directory under home, with files (mode 600 unless given). */
function dir(files: Record<string, string | { text: string; mode: number }> = {}): string {
  const d = join(home, `d${n++}`);
  mkdirSync(d, { recursive: true });
  for (const [name, f] of Object.entries(files)) {
    const { text, mode } = typeof f === 'string' ? { text: f, mode: 0o600 } : f;
    mkdirSync(join(d, name, '..'), { recursive: true });
    writeFileSync(join(d, name), text, { mode });
    chmodSync(join(d, name), mode);
  }
  return d;
}

async function s2csArgs(extra: string[]): Promise<string[]> {
  const range = await freePortRange(4);
  return ['start', '--listener-ip', '127.0.0.1', '--control-host', '127.0.0.1', '--port', String(await freePort()), '--port-range', `${range.first}-${range.last}`, '--workers', '0', ...extra];
}

/**
 * Runs `proc` until it exits, or until it says ready (then it is stopped: start-up let it through).
 * s2cs copies its workers' logs, "s2ds ready" among them: the program's own line is awaited.
 */
async function outcome(proc: Proc): Promise<{ code: number | 'ready'; stderr: string }> {
  const program = proc.name.split(' ')[0]!;
  const ready = proc.waitFor(new RegExp(`${program} ready: `), { timeoutMs: 20_000 }).then(
    () => 'ready' as const,
    () => undefined,
  );
  const first = await Promise.race([proc.exited, ready]);
  if (first === 'ready') {
    await proc.stop('SIGTERM', 5000);
    return { code: 'ready', stderr: proc.stderr() };
  }
  return { code: await proc.exited, stderr: proc.stderr() };
}

const s2cs = async (extra: string[]) => outcome(spawnCli('s2cs', await s2csArgs(extra), { env }));

/** The one error line, which must name each of `words`. */
function refused(r: { code: number | 'ready'; stderr: string }, ...words: string[]): void {
  assert.equal(r.code, 2, `exit code; stderr:\n${r.stderr}`);
  const line = r.stderr.split('\n').find((l) => l.includes('error: '));
  assert.ok(line, `an error line in:\n${r.stderr}`);
  for (const w of words) assert.ok(line.includes(w), `"${w}" in: ${line}`);
}

describe('s2cs start: the control certificate and key', () => {
  test('state dir: an empty key.pem exits 2 naming it and saying to remove the pair', async () => {
    const d = dir({ 'tls/cert.pem': pair.cert, 'tls/key.pem': '' });
    refused(await s2cs(['--state-dir', d]), `${d}/tls/key.pem is empty`, `remove ${d}/tls/cert.pem and ${d}/tls/key.pem`);
  });

  test('state dir: a key that is not PEM, and a key of another certificate, exit 2 naming the files', async () => {
    const garbage = dir({ 'tls/cert.pem': pair.cert, 'tls/key.pem': 'not a key\n' });
    refused(await s2cs(['--state-dir', garbage]), `${garbage}/tls/key.pem holds no PEM private key`);
    const mismatched = dir({ 'tls/cert.pem': pair.cert, 'tls/key.pem': other.key });
    refused(await s2cs(['--state-dir', mismatched]), `${mismatched}/tls/key.pem does not belong to`, `${mismatched}/tls/cert.pem`);
    const noCert = dir({ 'tls/key.pem': pair.key });
    refused(await s2cs(['--state-dir', noCert]), `${noCert}/tls/cert.pem`, 'does not exist');
  });

  test('--tls-cert/--tls-key: missing, a directory, empty, not a certificate, not a pair, or encrypted: exit 2 naming the flag and the file', async () => {
    const encrypted = createPrivateKey(pair.key).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'secret' }) as string;
    const d = dir({ 'cert.pem': pair.cert, 'key.pem': pair.key, 'other.key': other.key, 'empty.pem': '', 'key-as-cert.pem': pair.key, 'encrypted.key': encrypted });
    refused(await s2cs(['--tls-cert', `${d}/nope.pem`, '--tls-key', `${d}/key.pem`]), `cannot read --tls-cert ${d}/nope.pem: it does not exist`);
    refused(await s2cs(['--tls-cert', `${d}/cert.pem`, '--tls-key', d]), `cannot read --tls-key ${d}: it is a directory`);
    refused(await s2cs(['--tls-cert', `${d}/empty.pem`, '--tls-key', `${d}/key.pem`]), `--tls-cert ${d}/empty.pem is empty`);
    refused(await s2cs(['--tls-cert', `${d}/key-as-cert.pem`, '--tls-key', `${d}/key.pem`]), `--tls-cert ${d}/key-as-cert.pem holds no PEM certificate`);
    refused(await s2cs(['--tls-cert', `${d}/cert.pem`, '--tls-key', `${d}/other.key`]), `--tls-key ${d}/other.key does not belong to --tls-cert ${d}/cert.pem`);
    refused(await s2cs(['--tls-cert', `${d}/cert.pem`, '--tls-key', `${d}/encrypted.key`]), `--tls-key ${d}/encrypted.key is encrypted with a passphrase`);
  });

  test('--tls-key unreadable by the user s2cs runs as: exit 2 saying permission denied', async (t) => {
    // Root reads any file: run s2cs as nobody then.
    const asNobody = process.getuid?.() === 0;
    if (asNobody && spawnSync('setpriv', ['--version']).status !== 0) return t.skip('running as root without setpriv');
    const d = dir({ 'cert.pem': { text: pair.cert, mode: 0o644 }, 'key.pem': { text: pair.key, mode: 0o000 } });
    chmodSync(d, 0o755);
    chmodSync(home, 0o755);
    const args = await s2csArgs(['--tls-cert', `${d}/cert.pem`, '--tls-key', `${d}/key.pem`]);
    const child = asNobody
      ? spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, `${BIN_DIR}s2cs.js`, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...env, SCISTREAM_HOME: d } })
      : spawn(process.execPath, [`${BIN_DIR}s2cs.js`, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    refused(await outcome(watchChild('s2cs start', 's2cs start', child)), `cannot read --tls-key ${d}/key.pem: permission denied`);
  });

  test('a private key others may read is a warning naming it and the chmod; start goes on', async () => {
    const d = dir({ 'cert.pem': pair.cert, 'key.pem': { text: pair.key, mode: 0o644 } });
    const r = await s2cs(['--tls-cert', `${d}/cert.pem`, '--tls-key', `${d}/key.pem`]);
    assert.equal(r.code, 'ready', r.stderr);
    assert.match(r.stderr, new RegExp(`the private key --tls-key ${d}/key.pem may be read by its group and every user \\(mode 0644\\).*chmod 600 ${d}/key.pem`));
    // The default limit here fits the default bounds: no open-files warning.
    assert.doesNotMatch(r.stderr, /open-files limit/);
  });
});

describe('s2cs start: certificate bundles', () => {
  test('--client-ca empty or not PEM, --s2ds-cert not PEM: exit 2 naming the flag and the file', async () => {
    const d = dir({ 'empty.pem': '', 'junk.pem': 'hello\n', 'bad.pem': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' });
    refused(await s2cs(['--state-dir', dir(), '--client-ca', `${d}/empty.pem`]), `--client-ca ${d}/empty.pem is empty`);
    refused(await s2cs(['--state-dir', dir(), '--client-ca', `${d}/bad.pem`]), `--client-ca ${d}/bad.pem is not a valid PEM certificate`);
    refused(await s2cs(['--state-dir', dir(), '--s2ds', '127.0.0.1:1', '--s2ds-cert', `${d}/junk.pem`]), `--s2ds-cert ${d}/junk.pem holds no PEM certificate`);
  });
});

/** A tmpfs mounted at a new directory (root only); undefined where mounting is not allowed. */
function tmpfs(options: string): string | undefined {
  const d = dir();
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', d]);
  return r.status === 0 ? d : undefined;
}
const umount = (d: string) => spawnSync('umount', ['-l', d]);

describe('s2cs start: the state dir', () => {
  test('on a read-only file system: exit 2 saying so', async (t) => {
    const d = tmpfs('ro,size=1m');
    if (!d) return t.skip('cannot mount a tmpfs here (needs root)');
    try {
      refused(await s2cs(['--state-dir', join(d, 's2cs')]), `the state dir ${d}/s2cs cannot be written`, 'read-only file system');
    } finally {
      umount(d);
    }
  });

  test('on a full file system: exit 2 saying so', async (t) => {
    const d = tmpfs('size=256k');
    if (!d) return t.skip('cannot mount a tmpfs here (needs root)');
    try {
      mkdirSync(join(d, 's2cs'));
      // Fill it: dd stops at ENOSPC.
      spawnSync('dd', ['if=/dev/zero', `of=${d}/fill`, 'bs=4096']);
      refused(await s2cs(['--state-dir', join(d, 's2cs')]), `the state dir ${d}/s2cs cannot be written`, 'file system is full');
    } finally {
      umount(d);
    }
  });

  test('with local workers: a read-only state dir exits 2 before any worker starts', async (t) => {
    const d = tmpfs('ro,size=1m');
    if (!d) return t.skip('cannot mount a tmpfs here (needs root)');
    try {
      const args = (await s2csArgs(['--state-dir', d, '--insecure'])).filter((a) => a !== '--workers' && a !== '0');
      refused(await outcome(spawnCli('s2cs', [...args, '--workers', '1'], { env })), `the state dir ${d} cannot be written`, 'read-only');
    } finally {
      umount(d);
    }
  });
});

/** `program start` under a soft and hard open-files limit of `limit` (prlimit). */
function underNofile(limit: number, program: 's2cs' | 's2ds', args: string[]): Proc {
  const child = spawn('prlimit', [`--nofile=${limit}:${limit}`, process.execPath, `${BIN_DIR}${program}.js`, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  return watchChild(`${program} start`, `${program} ${args.join(' ')}`, child);
}

describe('the open-files limit', () => {
  test('s2cs under ulimit -n 256 warns with the numbers it needs, and starts', async () => {
    const r = await outcome(underNofile(256, 's2cs', await s2csArgs(['--insecure', '--max-conn', '400'])));
    assert.equal(r.code, 'ready', r.stderr);
    // Default bounds: 1 GiB of buffers at 4 MiB, 2.25 MiB per plain connection: 455 connections; 4 ports; 1024 pending connections.
    assert.match(r.stderr, /the open-files limit \(ulimit -n\) is 256, below the 2002 descriptors this process may need: 64 for the control port, logs and links, 4 data listeners, and 2 for each of 455 data connections/);
    assert.match(r.stderr, /not even one stream of --max-conn 400 connections fits/);
  });

  test('s2cs with local workers: the need of each worker', async () => {
    const range = await freePortRange(40);
    const args = ['start', '--listener-ip', '127.0.0.1', '--control-host', '127.0.0.1', '--port', String(await freePort()), '--port-range', `${range.first}-${range.last}`, '--insecure', '--workers', '2', '--state-dir', dir()];
    const r = await outcome(underNofile(256, 's2cs', args));
    assert.equal(r.code, 'ready', r.stderr);
    // Each worker: 20 ports, 512 MiB: 227 connections; 1024 pending connections (the cap is per data server).
    assert.match(r.stderr, /is 256, below the 1562 descriptors each of the 2 workers may need: 64 for the control port, logs and links, 20 data listeners, and 2 for each of 227 data connections/);
  });

  test('s2cs with a limit that fits: no warning', async () => {
    const r = await outcome(underNofile(4096, 's2cs', await s2csArgs(['--insecure'])));
    assert.equal(r.code, 'ready', r.stderr);
    assert.doesNotMatch(r.stderr, /open-files limit/);
  });
});

describe('s2ds start', () => {
  async function s2dsArgs(extra: string[]): Promise<string[]> {
    const range = await freePortRange(4);
    const s2csCert = join(dir({ 's2cs.pem': other.cert }), 's2cs.pem');
    return ['start', '--listen', `127.0.0.1:${await freePort()}`, '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--s2cs-cert', s2csCert, ...extra];
  }
  const s2ds = async (extra: string[]) => outcome(spawnCli('s2ds', await s2dsArgs(extra), { env }));

  test('an empty key in its state dir, a mismatched --tls-key, an empty --s2cs-cert: exit 2 naming the file', async () => {
    const d = dir({ 'tls/cert.pem': pair.cert, 'tls/key.pem': '' });
    refused(await s2ds(['--state-dir', d]), `${d}/tls/key.pem is empty`);
    const f = dir({ 'cert.pem': pair.cert, 'other.key': other.key, 'empty.pem': '' });
    refused(await s2ds(['--state-dir', dir(), '--tls-cert', `${f}/cert.pem`, '--tls-key', `${f}/other.key`]), `--tls-key ${f}/other.key does not belong to --tls-cert ${f}/cert.pem`);
    const args = (await s2dsArgs(['--state-dir', dir()])).map((a) => (a.endsWith('s2cs.pem') ? `${f}/empty.pem` : a));
    refused(await outcome(spawnCli('s2ds', args, { env })), `--s2cs-cert ${f}/empty.pem is empty`);
  });

  test('a read-only state dir exits 2 saying so', async (t) => {
    const d = tmpfs('ro,size=1m');
    if (!d) return t.skip('cannot mount a tmpfs here (needs root)');
    try {
      refused(await s2ds(['--state-dir', d]), `the state dir ${d} cannot be written`, 'read-only file system');
    } finally {
      umount(d);
    }
  });

  test('a key others may read and a low open-files limit are warnings; it starts', async () => {
    const f = dir({ 'cert.pem': pair.cert, 'key.pem': { text: pair.key, mode: 0o640 } });
    const r = await outcome(underNofile(128, 's2ds', await s2dsArgs(['--state-dir', dir(), '--tls-cert', `${f}/cert.pem`, '--tls-key', `${f}/key.pem`])));
    assert.equal(r.code, 'ready', r.stderr);
    assert.match(r.stderr, new RegExp(`the private key --tls-key ${f}/key.pem may be read by its group \\(mode 0640\\)`));
    assert.match(r.stderr, /the open-files limit \(ulimit -n\) is 128, below the 2002 descriptors this process may need/);
  });
});
