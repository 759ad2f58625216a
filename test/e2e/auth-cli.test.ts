// Authentication through the real CLIs, as separate processes, against a real OpenID
// Provider in this process: s2cs with --auth introspect, s2uc login (device flow, the
// browser scripted), check-auth, whoami, a stream set up with per-server tokens and an
// application secret handed to s2app hello, then logout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import type { TokenFile } from '../../src/s2uc/auth/tokens.js';
import { Browser, CLI_CLIENT, GW_CLIENT, SCOPE_A, SCOPE_B, startIdP, type TestIdP } from '../auth/idp.js';
import { assertNoSecrets } from '../auth/capture.js';

let idp: TestIdP;
let dir: string;
let home: string;
let bundle: string;
const gateways: { proc: Proc; address: string }[] = [];
const others: Proc[] = [];
const secrets: string[] = [];

async function run(program: 's2cs' | 's2uc' | 's2app', args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnCli(program, args, { env: { ...process.env, SCISTREAM_HOME: home, ...env } });
  others.push(p);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

async function startS2cs(name: string, authArgs: string[], env: NodeJS.ProcessEnv = {}): Promise<{ proc: Proc; address: string }> {
  const port = await freePort();
  const range = await freePortRange(4);
  const proc = spawnCli(
    's2cs',
    ['start', '--state-dir', join(dir, name), '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--verbose', ...authArgs],
    { env: { ...process.env, ...env } },
  );
  const gw = { proc, address: `127.0.0.1:${port}` };
  gateways.push(gw);
  await proc.waitFor(/s2cs ready/);
  return gw;
}

before(async () => {
  idp = await startIdP();
  dir = await mkdtemp(join(tmpdir(), 'scistream-auth-cli-'));
  home = join(dir, 'home', '.scistream');
  await mkdir(home, { recursive: true, mode: 0o700 });
  secrets.push(idp.gwSecret);
});
after(async () => {
  await Promise.all([...others, ...gateways.map((g) => g.proc)].map((p) => p.stop()));
  await idp?.close();
  await rm(dir, { recursive: true, force: true });
});

test('s2cs start: bad authentication settings are one clear line and exit code 2; --auth none warns', async () => {
  const base = ['start', '--insecure', '--port', '0', '--listener-ip', '127.0.0.1'];
  const missing = await run('s2cs', [...base, '--auth', 'introspect', '--introspection-url', idp.introspectionUrl, '--scope', SCOPE_A]);
  assert.equal(missing.code, 2, missing.stderr);
  assert.match(missing.stderr, /--client-id/);
  assert.equal(missing.stderr.trim().split('\n').length, 1);

  const loose = join(dir, 'loose-secret');
  await writeFile(loose, idp.gwSecret, { mode: 0o644 });
  await chmod(loose, 0o644);
  const r = await run('s2cs', [...base, '--introspection-url', idp.introspectionUrl, '--client-id', GW_CLIENT, '--scope', SCOPE_A, '--client-secret-file', loose]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /chmod 600/);

  const noSecret = await run('s2cs', [...base, '--auth', 'introspect', '--introspection-url', idp.introspectionUrl, '--client-id', GW_CLIENT, '--scope', SCOPE_A], { S2CS_CLIENT_SECRET: '' });
  assert.equal(noSecret.code, 2);
  assert.match(noSecret.stderr, /S2CS_CLIENT_SECRET/);

  const both = await run('s2cs', [...base, '--introspection-url', idp.introspectionUrl, '--issuer', idp.issuer, '--scope', SCOPE_A]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /choose one with --auth/);

  const none = spawnCli('s2cs', [...base]);
  others.push(none);
  await none.waitFor(/s2cs ready/);
  assert.match(none.stderr(), /no authentication \(--auth none\)/);
  assert.equal(await none.stop(), 0);
});

test('login, a stream set up with per-server tokens and an application secret, then logout', async () => {
  const secretFile = join(dir, 'gw-a.secret');
  await writeFile(secretFile, `${idp.gwSecret}\n`, { mode: 0o600 });
  const introspection = ['--introspection-url', idp.introspectionUrl, '--client-id', GW_CLIENT];
  // One gateway reads its client secret from a file, the other from the environment.
  const [gwA, gwB] = await Promise.all([
    startS2cs('gw-a', ['--auth', 'introspect', ...introspection, '--client-secret-file', secretFile, '--scope', SCOPE_A]),
    startS2cs('gw-b', [...introspection, '--scope', SCOPE_B], { S2CS_CLIENT_SECRET: idp.gwSecret }),
  ]);
  bundle = join(dir, 'gateways.pem');
  await writeFile(bundle, (await Promise.all(['gw-a', 'gw-b'].map((g) => readFile(join(dir, g, 'tls', 'cert.pem'), 'utf8')))).join(''));
  const trust = ['--server-cert', bundle];

  await writeFile(
    join(home, 'config.toml'),
    `[auth]
issuer = "${idp.issuer}"
client_id = "${CLI_CLIENT}"
redirect_uri = "${idp.redirectUri}"

[servers."${gwA.address}"]
scope = "${SCOPE_A}"
[servers."${gwB.address}"]
scope = "${SCOPE_B}"
`,
  );

  // Before login: check-auth says so, and a request is refused before anything is reserved.
  const notYet = await run('s2uc', ['check-auth']);
  assert.equal(notYet.code, 1);
  assert.match(notYet.stdout, /not logged in/);
  const early = await run('s2uc', [...trust, 'request', '--prod-s2cs', gwA.address, '--cons-s2cs', gwB.address, '--num-conn', '1']);
  assert.equal(early.code, 1);
  assert.match(early.stderr, /s2uc login/);

  // Device login: s2uc prints a URL; the user opens it in a browser while s2uc polls.
  const login = spawnCli('s2uc', ['login', '--device'], { env: { ...process.env, SCISTREAM_HOME: home } });
  others.push(login);
  const url = (await login.waitFor(/open this URL in a browser[^\n]*\n\s*(\S+)/, { stream: 'stderr' }))[1]!;
  await new Browser('alice').run(url);
  assert.equal(await login.exited, 0, login.describe());
  assert.match(login.stdout(), /logged in as alice/);

  const tokenPath = join(home, 'tokens.json');
  assert.equal((await stat(tokenPath)).mode & 0o777, 0o600, 'tokens.json is 0600');
  const file = JSON.parse(await readFile(tokenPath, 'utf8')) as TokenFile;
  for (const t of Object.values(file.tokens)) secrets.push(t.access_token, ...(t.refresh_token ? [t.refresh_token] : []));
  assert.ok(Object.keys(file.tokens).some((s) => s.includes(SCOPE_A)) && Object.keys(file.tokens).some((s) => s.includes(SCOPE_B)), 'a token for each gateway');

  const check = await run('s2uc', ['check-auth', '--json']);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.equal((JSON.parse(check.stdout) as { ok: boolean }).ok, true);
  const me = await run('s2uc', ['whoami', '--json']);
  assert.equal(me.code, 0, me.stderr);
  assert.equal((JSON.parse(me.stdout) as { sub: string }).sub, 'alice');

  // The stream: s2uc writes the producer gateway's secret to a file as soon as it is
  // issued; the producer's controller waits for the file and sends Hello with it.
  const producer = spawnCli('s2app', ['produce', '--listen', '127.0.0.1:0', '--bytes', '4MiB', '--count', '1']);
  others.push(producer);
  const prodListener = (await producer.waitFor(/producer listening on (\S+)/))[1]!;
  const uid = randomUUID();
  const appSecretFile = join(dir, 'app-secret');
  const [request, hello] = await Promise.all([
    run('s2uc', [...trust, 'request', '--prod-s2cs', gwA.address, '--cons-s2cs', gwB.address, '--num-conn', '1', '--uid', uid, '--json', '--app-secret-file', appSecretFile]),
    run('s2app', ['hello', ...trust, '--s2cs', gwA.address, '--uid', uid, '--role', 'PROD', '--listeners', prodListener, '--app-secret-file', appSecretFile]),
  ]);
  assert.equal(hello.code, 0, hello.stderr);
  assert.equal(request.code, 0, request.stderr);
  assert.equal((await stat(appSecretFile)).mode & 0o777, 0o600);
  const map = JSON.parse(request.stdout.trim().split('\n').at(-1)!) as { consListeners: string[]; prodAppSecret: string; consAppSecret: string };
  assert.equal(map.prodAppSecret, (await readFile(appSecretFile, 'utf8')).trim());
  // The first line (printed before the Hello) already carried what the Hellos need.
  const first = JSON.parse(request.stdout.split('\n')[0]!) as { uid: string; prodAppSecret: string; consAppSecret: string };
  assert.deepEqual([first.uid, first.prodAppSecret, first.consAppSecret], [uid, map.prodAppSecret, map.consAppSecret]);
  secrets.push(map.prodAppSecret, map.consAppSecret);

  // A wrong secret is refused (exit 1, the server says why).
  const wrong = await run('s2app', ['hello', ...trust, '--s2cs', gwB.address, '--uid', uid, '--role', 'CONS', '--app-secret', 'not-the-secret']);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /UNAUTHENTICATED.*application secret/);
  const consHello = await run('s2app', ['hello', ...trust, '--s2cs', gwB.address, '--uid', uid, '--role', 'CONS', '--json'], { SCISTREAM_APP_SECRET: map.consAppSecret });
  assert.equal(consHello.code, 0, consHello.stderr);
  assert.deepEqual((JSON.parse(consHello.stdout) as { listeners: string[] }).listeners, map.consListeners);

  const consume = await run('s2app', ['consume', '--connect', map.consListeners.join(','), '--bytes', '4MiB']);
  assert.equal(consume.code, 0, consume.stderr);
  assert.equal(await producer.exited, 0);

  const status = await run('s2uc', [...trust, 'status', uid, '--s2cs', gwA.address, '--json']);
  assert.equal(status.code, 0, status.stderr);
  assert.equal((JSON.parse(status.stdout) as { gateways: { streams: { owner: string }[] }[] }).gateways[0]!.streams[0]!.owner, 'alice');
  const release = await run('s2uc', [...trust, 'release', uid, '--s2cs', gwA.address, '--s2cs', gwB.address]);
  assert.equal(release.code, 0, release.stderr);

  // Logout revokes and deletes; afterwards the gateways refuse the user.
  const logout = await run('s2uc', ['logout']);
  assert.equal(logout.code, 0, logout.stderr);
  assert.match(logout.stdout, /logged out: \d+ token\(s\) revoked/);
  await assert.rejects(stat(tokenPath), { code: 'ENOENT' });
  const loggedOut = await run('s2uc', [...trust, 'status', '--s2cs', gwA.address]);
  assert.equal(loggedOut.code, 1);
  assert.match(loggedOut.stderr, /s2uc login/);

  // No token, refresh token, client secret or application secret in any output, --verbose included.
  for (const gw of gateways) assert.ok(gw.proc.running(), 'the gateways kept serving');
  const outputs = [...gateways, ...others.map((proc) => ({ proc }))].flatMap((g) => [g.proc.stderr()]);
  outputs.push(request.stderr, hello.stderr, login.stderr(), login.stdout());
  assertNoSecrets(outputs, secrets);
});
