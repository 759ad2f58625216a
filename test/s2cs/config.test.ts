// s2cs start --config, s2cs check-config and the SIGHUP reload, on real processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnCli, freePortRange, type Proc } from '../../src/demo/procs.js';
import { ControlConnection, RemoteError } from '../../src/protocol/client.js';
import { JWT_AUDIENCE, SCOPE_J, startIdP } from '../auth/idp.js';
import { createSelfSigned } from '../../src/security/certificates.js';

const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));

/** Runs a CLI to its end: exit code and output. */
async function run(program: 's2cs' | 's2ds', args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnCli(program, args, env ? { env } : {});
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

function oneErrorLine(r: { code: number; stderr: string }, re: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, re);
}

interface Setting {
  key: string;
  value: unknown;
  source: string;
}

async function checkConfigJson(program: 's2cs' | 's2ds', args: string[]): Promise<Map<string, Setting>> {
  const r = await run(program, ['check-config', ...args, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return new Map((JSON.parse(r.stdout) as { settings: Setting[] }).settings.map((s) => [s.key, s]));
}

/** Keys shown in an example file, set or commented out (`# key = default`). */
function exampleKeys(file: string): Set<string> {
  return new Set([...readFileSync(file, 'utf8').matchAll(/^#? ?([a-z][a-z0-9-]*) = /gm)].map((m) => m[1]!));
}

test('examples/s2cs.toml and examples/s2ds.toml are valid for check-config and show every key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-config-'));
  try {
    // check-config checks the addresses as start does: the example's documentation address (198.51.100.7) is not
    // on this host (test/s2cs/check-config.test.ts shows that), so an address of this host and a free port override it.
    const s2cs = await checkConfigJson('s2cs', ['--config', join(EXAMPLES, 's2cs.toml'), '--listener-ip', '127.0.0.1', '--port', '0']);
    assert.equal(s2cs.get('auth')?.source, 'file');
    assert.deepEqual([...s2cs.keys()].filter((k) => !exampleKeys(join(EXAMPLES, 's2cs.toml')).has(k)), [], 'every s2cs start option is in examples/s2cs.toml');
    // The example names the s2cs certificate at its installed place; a flag points it elsewhere here (check-config
    // reads it as start does). Its addresses are documentation ones: addresses of this host override them.
    const cert = join(dir, 's2cs-cert.pem');
    writeFileSync(cert, (await createSelfSigned({ commonName: 's2cs test', validDays: 1 })).cert);
    const s2ds = await checkConfigJson('s2ds', ['--config', join(EXAMPLES, 's2ds.toml'), '--s2cs-cert', cert, '--listener-ip', '127.0.0.1', '--listen', '127.0.0.1:0', '--state-dir', join(dir, 's2ds')]);
    assert.deepEqual(s2ds.get('s2cs-cert'), { key: 's2cs-cert', value: cert, source: 'flag', secret: false });
    assert.equal(s2ds.get('port-range')?.source, 'file');
    const foreign = await run('s2ds', ['check-config', '--config', join(EXAMPLES, 's2ds.toml'), '--s2cs-cert', cert]);
    oneErrorLine(foreign, /^s2ds: error: cannot open data listeners on 198\.51\.100\.8 \(EADDRNOTAVAIL\)/);
    assert.deepEqual([...s2ds.keys()].filter((k) => !exampleKeys(join(EXAMPLES, 's2ds.toml')).has(k)), [], 'every s2ds start option is in examples/s2ds.toml');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an unknown key, a wrong type, a bad value, a nested --config or broken TOML: one line naming the file and the key, exit 2', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-config-'));
  const file = join(dir, 'gw.toml');
  const with_ = (text: string) => {
    writeFileSync(file, `listener-ip = "127.0.0.1"\n${text}\n`);
    return file;
  };
  try {
    oneErrorLine(await run('s2cs', ['start', '--config', with_('max-con = 4')]), /^s2cs: error: .*gw\.toml: max-con: unknown key; did you mean max-conn\?/);
    oneErrorLine(await run('s2cs', ['check-config', '--config', with_('max-conn = "lots"')]), /gw\.toml: max-conn = "lots": .*whole number from 1 to 4096/);
    oneErrorLine(await run('s2cs', ['check-config', '--config', with_('insecure = "yes"')]), /gw\.toml: insecure: expects true or false/);
    oneErrorLine(await run('s2cs', ['check-config', '--config', with_('port-range = ["5100-5200"]')]), /gw\.toml: port-range: expects one value .*only repeatable options take a list/);
    oneErrorLine(await run('s2cs', ['check-config', '--config', with_('auth = "kerberos"')]), /gw\.toml: auth = "kerberos": .*none, introspect, jwt/);
    oneErrorLine(await run('s2cs', ['check-config', '--config', with_('buffer-size = "4 parsecs"')]), /gw\.toml: buffer-size = "4 parsecs": invalid size/);
    oneErrorLine(await run('s2cs', ['check-config', '--config', with_('config = "other.toml"')]), /gw\.toml: config: a configuration file cannot name another one/);
    oneErrorLine(await run('s2cs', ['check-config', '--config', with_('max-conn = [')]), /gw\.toml:\d+:\d+: not valid TOML/);
    // Checks across settings are the ones start makes.
    oneErrorLine(await run('s2cs', ['check-config', '--config', with_('hello-timeout = 60\nsetup-timeout = 30')]), /--setup-timeout 30 is below --hello-timeout 60/);
    writeFileSync(file, 'port = 5000\n');
    oneErrorLine(await run('s2cs', ['start', '--config', file]), /required option '--listener-ip <ip>' not specified \(give it, or listener-ip in .*gw\.toml\)/);
    oneErrorLine(await run('s2cs', ['check-config', '--config', join(dir, 'missing.toml')]), /missing\.toml: cannot read the configuration file \(ENOENT\)/);
    oneErrorLine(await run('s2ds', ['start', '--config', with_('listen-on = "unix:/tmp/x.sock"')]), /^s2ds: error: .*gw\.toml: listen-on: unknown key; did you mean listen\?/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('check-config: every setting with its source (default, file, flag), relative paths resolved against the file, the client secret never shown', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-config-'));
  try {
    mkdirSync(join(dir, 'etc'));
    const secretFile = join(dir, 'etc', 'client-secret');
    const secret = `s3cr3t-${randomUUID()}`;
    writeFileSync(secretFile, `${secret}\n`);
    chmodSync(secretFile, 0o600);
    const file = join(dir, 'etc', 'gw.toml');
    writeFileSync(
      file,
      [
        'listener-ip = "127.0.0.1"',
        // check-config probes the control port: any free one, not the default 5000 another program may hold.
        'port = 0',
        'max-conn = 8',
        'admin = ["carol", "dave"]',
        'introspection-url = "https://auth.example.org/introspect"',
        'client-id = "gw-a"',
        'client-secret-file = "client-secret"',
        'scope = "scistream"',
        'buffer-size = "8MiB"',
        'max_pending_hellos = 50',
      ].join('\n'),
    );
    const r = await run('s2cs', ['check-config', '--config', file, '--max-conn', '16'], { ...process.env, S2CS_CLIENT_SECRET: `env-${secret}` });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), 'the secret is not printed');
    assert.match(r.stdout, /^max-conn = 16 +# flag$/m);
    assert.match(r.stdout, /^listener-ip = "127\.0\.0\.1" +# file$/m);
    assert.match(r.stdout, /^admin = \["carol", "dave"\] +# file$/m);
    assert.match(r.stdout, new RegExp(`^client-secret-file = "${secretFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" +# file$`, 'm'));
    assert.match(r.stdout, /^buffer-size = 8388608 +# file$/m);
    assert.match(r.stdout, /^max-pending-hellos = 50 +# file$/m);
    assert.match(r.stdout, /^port = 0 +# file$/m);
    assert.match(r.stdout, /^hello-timeout = \d+ +# default$/m);
    assert.match(r.stdout, /^auth = "introspect" +# default \(the provider settings given\)$/m);
    assert.match(r.stdout, /^max-ports-per-user = \d+ +# default/m);
    // The output is itself a configuration: check-config takes it back.
    const again = join(dir, 'etc', 'printed.toml');
    writeFileSync(again, r.stdout);
    const back = await checkConfigJson('s2cs', ['--config', again]);
    assert.equal(back.get('max-conn')?.value, 16);
    assert.equal(back.get('client-secret-file')?.value, secretFile);
    // A client secret file others may read is refused as start refuses it.
    chmodSync(secretFile, 0o644);
    oneErrorLine(await run('s2cs', ['check-config', '--config', file]), /client secret file .* is accessible by other users/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A gateway started with --config; its control port from the ready line. */
async function startWithConfig(file: string, extra: string[] = []): Promise<{ proc: Proc; port: number }> {
  const proc = spawnCli('s2cs', ['start', '--config', file, ...extra]);
  try {
    const port = Number((await proc.waitFor(/s2cs ready: control on [^\s]+:(\d+)/))[1]);
    return { proc, port };
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
}

async function refused(p: Promise<unknown>, status: string, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RemoteError, String(err));
    assert.equal(err.status, status, err.message);
    assert.match(err.details, re);
    return true;
  });
}

test('start --config: file values apply, flags override them; SIGHUP applies a changed file, reports what needs a restart, and keeps the running settings when the file is broken', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-config-'));
  const file = join(dir, 'gw.toml');
  const range = await freePortRange(12);
  const base = ['listener-ip = "127.0.0.1"', 'control-host = "127.0.0.1"', 'port = 0', `port-range = "${range.first}-${range.last}"`, 'insecure = true', 'workers = 0', `state-dir = "state"`];
  writeFileSync(file, [...base, 'max-conn = 2', 'max-ports-per-user = 1'].join('\n'));
  // The flag wins over max-ports-per-user = 1 in the file.
  const { proc, port } = await startWithConfig(file, ['--max-ports-per-user', '6']);
  const client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
  try {
    await refused(client.req({ uid: randomUUID(), role: 'CONS', num_conn: 3, rate: 0 }), 'INVALID_ARGUMENT', /num_conn.*3.*2|2.*num_conn|--max-conn/);
    const first = randomUUID();
    assert.equal((await client.req({ uid: first, role: 'CONS', num_conn: 2, rate: 0 })).listeners.length, 2, 'two ports, beyond the file\'s max-ports-per-user 1');

    // Reload: max-conn grows; the port range would need a restart; max-ports-per-user stays the flag's.
    let from = proc.stderr().length;
    writeFileSync(file, [...base.map((l) => l.replace(/port-range = .*/, `port-range = "${range.first}-${range.last - 1}"`)), 'max-conn = 4', 'max-ports-per-user = 1'].join('\n'));
    proc.child.kill('SIGHUP');
    await proc.waitFor(/reloaded: max-conn 2 -> 4/, { from });
    await proc.waitFor(/needs a restart: port-range/, { from });
    assert.doesNotMatch(proc.stderr().slice(from), /max-ports-per-user/, 'a flag given on the command line is not reloaded from the file');
    const second = randomUUID();
    assert.equal((await client.req({ uid: second, role: 'CONS', num_conn: 4, rate: 0 })).listeners.length, 4, 'max-conn 4 is in force');
    await refused(client.req({ uid: randomUUID(), role: 'CONS', num_conn: 4, rate: 0 }), 'RESOURCE_EXHAUSTED', /already hold.*6 port|max-ports-per-user/);

    // A broken file: an error line, the running configuration kept, still serving.
    from = proc.stderr().length;
    writeFileSync(file, [...base, 'max-conn = 1', 'max-conn-typo = 3'].join('\n'));
    proc.child.kill('SIGHUP');
    await proc.waitFor(/not reloaded, the running configuration is kept: .*gw\.toml: max-conn-typo: unknown key; did you mean max-conn\?/, { from });
    await client.release({ uid: second });
    assert.equal((await client.req({ uid: randomUUID(), role: 'CONS', num_conn: 4, rate: 0 })).listeners.length, 4, 'max-conn is still 4');
    assert.ok(proc.running());
  } finally {
    client.close();
    const code = await proc.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, proc.describe());
  }
});

test('SIGHUP without --config: logged, s2cs keeps serving', async () => {
  const range = await freePortRange(4);
  const dir = mkdtempSync(join(tmpdir(), 'ss-config-'));
  const proc = spawnCli('s2cs', ['start', '--insecure', '--port', '0', '--control-host', '127.0.0.1', '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--state-dir', dir]);
  let client: ControlConnection | undefined;
  try {
    const port = Number((await proc.waitFor(/s2cs ready: control on [^\s]+:(\d+)/))[1]);
    proc.child.kill('SIGHUP');
    await proc.waitFor(/SIGHUP: s2cs was started without --config: there is no configuration file to reload/);
    client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
    assert.equal((await client.capabilities()).implementation, 'scistream-ts');
    assert.ok(proc.running());
  } finally {
    client?.close();
    const code = await proc.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, proc.describe());
  }
});

test('SIGHUP reloads admin: an identity added to the file sees every stream without a restart', async () => {
  const idp = await startIdP();
  const dir = mkdtempSync(join(tmpdir(), 'ss-config-'));
  const file = join(dir, 'gw.toml');
  const range = await freePortRange(4);
  const base = [
    'listener-ip = "127.0.0.1"', 'control-host = "127.0.0.1"', 'port = 0', `port-range = "${range.first}-${range.last}"`, 'insecure = true', 'workers = 0', 'state-dir = "state"',
    'auth = "jwt"', `issuer = "${idp.issuer}"`, `audience = "${JWT_AUDIENCE}"`, `scope = "${SCOPE_J}"`,
  ];
  writeFileSync(file, [...base, 'admin = ["dave"]'].join('\n'));
  let proc: Proc | undefined;
  try {
    const started = await startWithConfig(file);
    proc = started.proc;
    const as = async (user: string) => new ControlConnection(`127.0.0.1:${started.port}`, { insecure: true, deadlineMs: 10_000, token: (await idp.issueToken(SCOPE_J, user)).access_token });
    const [alice, carol] = [await as('alice'), await as('carol')];
    try {
      await alice.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0 });
      assert.equal((await carol.status({ uid: '' })).streams.length, 0, "carol does not see alice's stream");
      const from = proc.stderr().length;
      writeFileSync(file, [...base, 'admin = ["dave", "carol"]'].join('\n'));
      proc.child.kill('SIGHUP');
      // Logs to a pipe are JSON lines: the quotes come escaped.
      await proc.waitFor(/reloaded: admin \[\\?"dave\\?"\] -> \[\\?"dave\\?", \\?"carol\\?"\]/, { from });
      assert.equal((await carol.status({ uid: '' })).streams.length, 1, 'carol, now an admin, sees every stream');
    } finally {
      alice.close();
      carol.close();
    }
  } finally {
    const code = proc ? await proc.stop() : 0;
    await idp.close();
    rmSync(dir, { recursive: true, force: true });
    if (proc) assert.equal(code, 0, proc.describe());
  }
});
