// Token problems through the real CLIs, against a real OpenID Provider (oidc-provider in
// this process) and real s2cs processes with --auth introspect: each failure says which it
// is and what to do. On the client: no token for a gateway's scope, an expired token whose
// refresh token was revoked, an expired token while the provider is down. From a gateway:
// a revoked token, a token for another audience. A gateway that cannot check tokens (its
// authorization server down, its own client secret wrong) must not read as the user's
// token being bad, and its log names the real cause.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import type { TokenFile } from '../../src/s2uc/auth/tokens.js';
import { Browser, CLI_CLIENT, GW_CLIENT, SCOPE_A, SCOPE_B, startIdP, type TestIdP } from '../auth/idp.js';
import { assertNoSecrets } from '../auth/capture.js';

let idp: TestIdP;
let dir: string;
let home: string;
const procs: Proc[] = [];
const secrets: string[] = [];

async function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnCli('s2uc', args, { env: { ...process.env, SCISTREAM_HOME: home, ...env } });
  procs.push(p);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

async function startS2cs(name: string, authArgs: string[], env: NodeJS.ProcessEnv = {}): Promise<{ proc: Proc; address: string; trust: string[] }> {
  const port = await freePort();
  const range = await freePortRange(2);
  const proc = spawnCli(
    's2cs',
    ['start', '--state-dir', join(dir, name), '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--auth', 'introspect', ...authArgs],
    { env: { ...process.env, ...env } },
  );
  procs.push(proc);
  await proc.waitFor(/s2cs ready/);
  return { proc, address: `127.0.0.1:${port}`, trust: ['--server-cert', join(dir, name, 'tls', 'cert.pem')] };
}

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

before(async () => {
  idp = await startIdP();
  dir = await mkdtemp(join(tmpdir(), 'scistream-auth-diag-'));
  home = join(dir, 'home', '.scistream');
  await mkdir(home, { recursive: true, mode: 0o700 });
  secrets.push(idp.gwSecret);
});
after(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await idp?.close();
  await rm(dir, { recursive: true, force: true });
});

test('token problems say which they are and what to do, and a gateway that cannot check tokens says so', { timeout: 180_000 }, async (t) => {
  const introspection = ['--introspection-url', idp.introspectionUrl, '--client-id', GW_CLIENT, '--scope', SCOPE_A];
  const good = { S2CS_CLIENT_SECRET: idp.gwSecret };
  const wrongSecret = `wrong-${idp.gwSecret}`;
  secrets.push(wrongSecret);
  // `unused` sees the user's token only once it is revoked (gateways cache introspection results).
  const [ok, badSecret, authDown, otherAudience, unused] = await Promise.all([
    startS2cs('ok', introspection, good),
    startS2cs('bad-secret', introspection, { S2CS_CLIENT_SECRET: wrongSecret }),
    startS2cs('auth-down', ['--introspection-url', `http://127.0.0.1:${await closedPort()}/token/introspection`, '--client-id', GW_CLIENT, '--scope', SCOPE_A], good),
    startS2cs('other-audience', [...introspection, '--audience', 'urn:scistream:another-gateway'], good),
    startS2cs('unused', introspection, good),
  ]);
  const unscoped = `127.0.0.1:${await closedPort()}`;
  const config = (issuer: string, extra = '') =>
    `[auth]\nissuer = "${issuer}"\nclient_id = "${CLI_CLIENT}"\nredirect_uri = "${idp.redirectUri}"\n\n` +
    [ok, badSecret, authDown, otherAudience, unused].map((g) => `[servers."${g.address}"]\nscope = "${SCOPE_A}"\n`).join('') +
    extra;
  await writeFile(join(home, 'config.toml'), config(idp.issuer));

  // Not logged in at all.
  const none = await run([...ok.trust, 'status', '--s2cs', ok.address]);
  t.diagnostic(`not logged in: ${none.stderr.trim()}`);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /not logged in|no access token/);
  assert.match(none.stderr, /s2uc login/);

  const login = spawnCli('s2uc', ['login', '--device'], { env: { ...process.env, SCISTREAM_HOME: home } });
  procs.push(login);
  await new Browser('alice').run((await login.waitFor(/open this URL in a browser[^\n]*\n\s*(\S+)/, { stream: 'stderr' }))[1]!);
  assert.equal(await login.exited, 0, login.describe());
  const tokens = JSON.parse(await readFile(join(home, 'tokens.json'), 'utf8')) as TokenFile;
  for (const tk of Object.values(tokens.tokens)) secrets.push(tk.access_token, ...(tk.refresh_token ? [tk.refresh_token] : []));

  const fine = await run([...ok.trust, 'status', '--s2cs', ok.address]);
  assert.equal(fine.code, 0, fine.stderr);

  // A gateway the login did not cover: config.toml names a scope no token was obtained for.
  await writeFile(join(home, 'config.toml'), config(idp.issuer, `[servers."${unscoped}"]\nscope = "${SCOPE_B}"\n`));
  const noToken = await run(['--insecure', 'status', '--s2cs', unscoped]);
  t.diagnostic(`no token for the scope: ${noToken.stderr.trim()}`);
  assert.equal(noToken.code, 1);
  assert.match(noToken.stderr, new RegExp(`no access token for s2cs ${unscoped.replace(/\./g, '\\.')} \\(scope "${SCOPE_B.replace(/[./]/g, '\\$&')}"\\).*s2uc login`));

  // A gateway that checks tokens, which config.toml names no scope for: s2uc sends none.
  await writeFile(join(home, 'config.toml'), config(idp.issuer).replace(`[servers."${unused.address}"]\nscope = "${SCOPE_A}"\n`, ''));
  const unnamed = await run([...unused.trust, 'status', '--s2cs', unused.address]);
  t.diagnostic(`no scope in config.toml: ${unnamed.stderr.trim()}`);
  assert.equal(unnamed.code, 1);
  assert.ok(unnamed.stderr.includes(`add [servers."HOST:PORT"] scope = "${SCOPE_A}"`), unnamed.stderr);
  assert.match(unnamed.stderr, /s2uc login/);
  await writeFile(join(home, 'config.toml'), config(idp.issuer));

  // The gateway cannot check tokens: UNAVAILABLE, not the user's token; the log says why.
  for (const [gw, cause, logged] of [
    [badSecret, /its authorization server at http:\/\/127\.0\.0\.1:\d+ refused the gateway's client credentials/, /rejected this gateway's client credentials/],
    [authDown, /its authorization server at http:\/\/127\.0\.0\.1:\d+ did not answer \(ECONNREFUSED\)/, /the introspection endpoint did not answer/],
  ] as const) {
    const asked = idp.requests(new URL(idp.introspectionUrl).pathname);
    const r = await run([...gw.trust, 'status', '--s2cs', gw.address]);
    t.diagnostic(`gateway cannot check tokens: ${r.stderr.trim()}`);
    // s2uc did not resend the call (grpc-js resends UNAVAILABLE up to 4 times unless told not to).
    if (gw === badSecret) assert.equal(idp.requests(new URL(idp.introspectionUrl).pathname), asked + 1, 'one introspection request: the call was not resent');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /UNAVAILABLE: this gateway cannot check access tokens: /);
    assert.match(r.stderr, cause);
    assert.match(r.stderr, /this is not a problem with your token/);
    assert.match(r.stderr, /tell the gateway's operator/);
    assert.doesNotMatch(r.stderr, /s2uc login|cannot reach s2cs|expired|revoked/);
    assert.match(gw.proc.stderr(), logged);
    const req = await run([...gw.trust, 'request', '--prod-s2cs', gw.address, '--cons-s2cs', gw.address, '--num-conn', '1']);
    assert.equal(req.code, 1);
    assert.match(req.stderr, /this gateway cannot check access tokens/);
  }

  // The gateway refuses the token: issued for another audience.
  const aud = await run([...otherAudience.trust, 'status', '--s2cs', otherAudience.address]);
  t.diagnostic(`another audience: ${aud.stderr.trim()}`);
  assert.equal(aud.code, 1);
  assert.match(aud.stderr, /UNAUTHENTICATED: the access token was issued for another service.*names the scope this gateway's operator gives for it.*s2uc login/);

  // The gateway refuses the token: revoked at the provider (s2uc still holds it as unexpired).
  const accessA = Object.values(tokens.tokens).find((tk) => tk.scope.split(' ').includes(SCOPE_A))!;
  await idp.revoke(accessA.access_token);
  const revoked = await run([...unused.trust, 'status', '--s2cs', unused.address]);
  t.diagnostic(`revoked access token: ${revoked.stderr.trim()}`);
  assert.equal(revoked.code, 1);
  assert.match(revoked.stderr, /UNAUTHENTICATED: the access token is expired, revoked or unknown to the authorization server: run `s2uc login`/);

  // Expired, and the provider cannot be reached for a refresh: says which.
  const saved = await readFile(join(home, 'tokens.json'), 'utf8');
  const expired = JSON.parse(saved) as TokenFile;
  for (const tk of Object.values(expired.tokens)) tk.expires_at = 1;
  const down = `http://127.0.0.1:${await closedPort()}`;
  await writeFile(join(home, 'tokens.json'), JSON.stringify({ ...expired, issuer: down }), { mode: 0o600 });
  await writeFile(join(home, 'config.toml'), config(down));
  const unreachable = await run([...ok.trust, 'status', '--s2cs', ok.address]);
  t.diagnostic(`expired, provider down: ${unreachable.stderr.trim()}`);
  assert.equal(unreachable.code, 1);
  assert.match(unreachable.stderr, new RegExp(`has expired and could not be refreshed: cannot reach the authorization server ${down.replace(/[./]/g, '\\$&')}`));
  assert.doesNotMatch(unreachable.stderr, /cannot reach s2cs/);

  // Expired, and the refresh token was revoked: log in again.
  await writeFile(join(home, 'config.toml'), config(idp.issuer));
  await writeFile(join(home, 'tokens.json'), JSON.stringify(expired), { mode: 0o600 });
  for (const rt of new Set(Object.values(expired.tokens).flatMap((tk) => (tk.refresh_token ? [tk.refresh_token] : [])))) await idp.revoke(rt);
  const noRefresh = await run([...ok.trust, 'status', '--s2cs', ok.address]);
  t.diagnostic(`expired, refresh token revoked: ${noRefresh.stderr.trim()}`);
  assert.equal(noRefresh.code, 1);
  assert.match(noRefresh.stderr, /has expired and could not be refreshed: the authorization server refused .*\(invalid_grant.*revoked.*s2uc login/);

  for (const gw of [ok, badSecret, authDown, otherAudience, unused]) assert.ok(gw.proc.running(), 'the gateways kept serving');
  assertNoSecrets(
    procs.flatMap((p) => [p.stdout(), p.stderr()]),
    secrets,
  );
});
