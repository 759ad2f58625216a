// s2uc login / logout / check-auth / whoami / getToken against a real OpenID Provider
// (oidc-provider) on 127.0.0.1. The user's browser is scripted (test/auth/idp.ts); the
// tokens obtained are then checked by the gateway-side authenticators.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { UserAuth, type AuthIO, type DeviceAuthorizationInfo } from '../../src/s2uc/auth/login.js';
import { GLOBUS_AUTH_CODE_PAGE, GLOBUS_ISSUER, loadClientConfig } from '../../src/s2uc/auth/config.js';
import type { TokenFile } from '../../src/s2uc/auth/tokens.js';
import { IntrospectionAuth } from '../../src/auth/introspect.js';
import { JwtAuth } from '../../src/auth/jwt.js';
import { AuthConfigError } from '../../src/auth/common.js';
import { Browser, CLI_CLIENT, GW_CLIENT, JWT_AUDIENCE, SCOPE_A, SCOPE_J, SCOPE_S, SHORT_TTL, startIdP, type TestIdP } from '../auth/idp.js';
import { assertNoSecrets, captureLogger, scistreamError } from '../auth/capture.js';

const GW_A = '127.0.0.1:5001';
const GW_J = 'gw-j.example.org:5000';
const GW_S = '127.0.0.1:5003';

let idp: TestIdP;
let root: string;
const { logger, lines } = captureLogger();
const printed: string[] = [];
const messages: string[] = [];
const secrets = new Set<string>();

before(async () => {
  idp = await startIdP();
  root = await mkdtemp(join(tmpdir(), 's2uc-auth-'));
});
after(async () => {
  await idp.close();
  await rm(root, { recursive: true, force: true });
});

let homes = 0;
/** A fresh $SCISTREAM_HOME (not yet created: s2uc creates it) with a config.toml for the test provider. */
async function home(extra = ''): Promise<string> {
  const dir = join(root, `home-${++homes}`, '.scistream');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(
    join(dir, 'config.toml'),
    `[auth]
issuer = "${idp.issuer}"
client_id = "${CLI_CLIENT}"
redirect_uri = "${idp.redirectUri}"
scopes = ["openid", "profile", "email"]

[servers."${GW_A}"]
scope = "${SCOPE_A}"
[servers."${GW_J}"]
scope = "${SCOPE_J}"
[servers."${GW_S}"]
scope = "${SCOPE_S}"
${extra}`,
  );
  return dir;
}

async function open(dir: string): Promise<UserAuth> {
  return UserAuth.open({ home: dir, logger, expiryMarginSeconds: 0 });
}

/** The user of the code flow: opens the printed URL, logs in, and pastes the code shown (or the whole URL). */
function codeUser(user: string, paste: 'code' | 'url' = 'code'): AuthIO {
  const mine: string[] = [];
  return {
    print: (line) => {
      mine.push(line);
      printed.push(line);
    },
    prompt: async () => {
      const url = mine.map((l) => l.trim()).find((l) => l.startsWith('http'));
      assert.ok(url, 'login printed a URL');
      const end = await new Browser(user).run(url, idp.redirectUri);
      if (paste === 'url') return end.url;
      // What the user sees on the auth-code page, copied by hand.
      const pageText = await (await fetch(end.url)).text();
      const code = /<code>([^<]+)<\/code>/.exec(pageText)?.[1];
      assert.ok(code, 'the auth-code page shows the code');
      return `  ${code}\n`;
    },
  };
}

/** The user of the device flow: opens the verification URL on "another device" while s2uc polls. */
function deviceUser(user: string): AuthIO & { done: Promise<unknown>; info?: DeviceAuthorizationInfo } {
  let resolve!: (v: unknown) => void;
  let reject!: (e: unknown) => void;
  const io: AuthIO & { done: Promise<unknown>; info?: DeviceAuthorizationInfo } = {
    done: new Promise((res, rej) => ((resolve = res), (reject = rej))),
    print: (line) => void printed.push(line),
    prompt: async () => {
      throw new Error('the device flow must not prompt');
    },
    onDeviceAuthorization: (info) => {
      io.info = info;
      new Browser(user).run(info.verificationUriComplete ?? info.verificationUri).then(resolve, reject);
    },
  };
  return io;
}

async function tokenFile(dir: string): Promise<TokenFile> {
  const file = JSON.parse(await readFile(join(dir, 'tokens.json'), 'utf8')) as TokenFile;
  for (const t of Object.values(file.tokens)) {
    secrets.add(t.access_token);
    if (t.refresh_token) secrets.add(t.refresh_token);
  }
  return file;
}

function md(token: string): Metadata {
  const m = new Metadata();
  m.set('authorization', token);
  return m;
}

const introspector = (scope: string) =>
  new IntrospectionAuth({ introspectionUrl: idp.introspectionUrl, clientId: GW_CLIENT, clientSecret: idp.gwSecret, scope, cacheMaxSeconds: 0, logger });

async function refused(p: Promise<unknown>, check: (err: unknown) => boolean): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    messages.push((err as Error).message);
    return check(err);
  });
}

test('config: Globus Auth defaults without a file; a missing client id is a clear error', async () => {
  const dir = join(root, 'empty-home');
  const config = await loadClientConfig({ env: { SCISTREAM_HOME: dir } });
  assert.equal(config.home, dir);
  assert.equal(config.exists, false);
  assert.equal(config.auth.issuer, GLOBUS_ISSUER);
  assert.equal(config.auth.redirectUri, GLOBUS_AUTH_CODE_PAGE);
  assert.deepEqual(config.auth.scopes, ['openid', 'profile', 'email']);
  assert.deepEqual(config.auth.authorizeParams, { access_type: 'offline' });
  assert.equal(config.auth.clientId, undefined);
  assert.throws(() => config.requireClientId(), (e: unknown) => e instanceof AuthConfigError && /client_id/.test(e.message) && e.message.includes(config.path));
  const auth = await UserAuth.open({ config });
  await assert.rejects(auth.login({ io: codeUser('alice') }), (e: unknown) => e instanceof AuthConfigError && /client_id/.test(e.message));
  assert.equal(await auth.getToken('gw.example.org:5000'), undefined, 'no scope configured: no token is sent');
});

test('config: scopeFor matches host:port exactly (normalized), then "*"; bad files are named', async () => {
  const dir = await home(`[servers."*"]\nscope = "default-scope"\n[servers."[::1]:7000"]\nscope = "v6-scope"\n`);
  const config = await loadClientConfig({ home: dir });
  assert.equal(config.scopeFor(GW_A), SCOPE_A);
  assert.equal(config.scopeFor('[::1]:7000'), 'v6-scope');
  assert.equal(config.scopeFor('other.example.org:5000'), 'default-scope');
  assert.deepEqual(config.serverScopes().sort(), [SCOPE_A, SCOPE_J, SCOPE_S, 'default-scope', 'v6-scope'].sort());

  const bad = join(root, 'bad-home');
  await mkdir(bad, { recursive: true });
  await writeFile(join(bad, 'config.toml'), '[auth\nissuer = 1');
  await assert.rejects(loadClientConfig({ home: bad }), (e: unknown) => e instanceof AuthConfigError && e.message.includes(join(bad, 'config.toml')));
  await writeFile(join(bad, 'config.toml'), '[auth]\nissuer = "http://auth.example.org"\n');
  await assert.rejects(loadClientConfig({ home: bad }), /https/);
  await writeFile(join(bad, 'config.toml'), '[servers."no-port"]\nscope = "x"\n');
  await assert.rejects(loadClientConfig({ home: bad }), /host:port/);
  await writeFile(join(bad, 'config.toml'), '[auth]\nscopes = "openid"\n');
  await assert.rejects(loadClientConfig({ home: bad }), /auth.scopes/);
});

test('discovery finds the provider endpoints', async () => {
  const auth = await open(await home());
  const meta = await auth.discover();
  assert.equal(meta.issuer, idp.issuer);
  assert.ok(meta.authorization_endpoint && meta.token_endpoint && meta.device_authorization_endpoint && meta.revocation_endpoint);
});

test('code + PKCE login end to end; tokens work at the gateways; whoami; tokens.json is private', async () => {
  const auth = await open(await home());
  const result = await auth.login({ io: codeUser('alice'), flow: 'code' });
  assert.equal(result.flow, 'code');
  assert.equal(result.identity?.sub, 'alice');
  assert.deepEqual(result.missing, []);
  for (const s of [SCOPE_A, SCOPE_J, SCOPE_S]) assert.ok(result.scopes.includes(s), `a token for ${s}`);
  assert.ok(printed.some((l) => l.includes('/auth?') && l.includes('code_challenge_method=S256')), 'the printed URL uses PKCE');

  const tokenA = await auth.getToken(GW_A);
  assert.ok(tokenA);
  secrets.add(tokenA);
  assert.equal((await introspector(SCOPE_A).authenticate(md(tokenA), 'req')).subject, 'alice');
  const tokenJ = await auth.getToken(GW_J);
  assert.ok(tokenJ);
  secrets.add(tokenJ);
  const jwt = new JwtAuth({ issuer: idp.issuer, audience: JWT_AUDIENCE, scope: SCOPE_J, logger });
  assert.equal((await jwt.authenticate(md(`Bearer ${tokenJ}`), 'req')).subject, 'alice');
  assert.equal(await auth.getToken('10.9.9.9:5000'), undefined);
  await assert.rejects(auth.requireToken('10.9.9.9:5000'), (e: unknown) => e instanceof AuthConfigError && /servers\."10\.9\.9\.9:5000"/.test(e.message));

  const me = await auth.whoami();
  assert.equal(me.sub, 'alice');
  assert.equal(me.preferred_username, 'alice');
  assert.equal(me.source, 'id_token');
  const online = await auth.whoami({ userinfo: true });
  assert.equal(online.source, 'userinfo');
  assert.equal(online.email, 'alice@example.org');

  const authDir = auth.config.home;
  assert.equal((await stat(join(authDir, 'tokens.json'))).mode & 0o777, 0o600);
  assert.equal((await stat(authDir)).mode & 0o777, 0o700);
  const file = await tokenFile(authDir);
  assert.equal(file.issuer, idp.issuer);
  assert.equal(file.client_id, CLI_CLIENT);
});

test('s2uc creates $SCISTREAM_HOME with mode 0700 and tokens.json with mode 0600', async () => {
  const dir = join(root, 'fresh', '.scistream');
  const cfgDir = await home();
  const config = await loadClientConfig({ home: cfgDir });
  const auth = await UserAuth.open({ config: { ...config, home: dir }, logger });
  await auth.login({ io: codeUser('erin'), flow: 'code' });
  assert.equal((await stat(dir)).mode & 0o777, 0o700);
  assert.equal((await stat(join(dir, 'tokens.json'))).mode & 0o777, 0o600);
  await tokenFile(dir);
});

test('login by pasting the whole address of the page the browser ended on', async () => {
  const auth = await open(await home());
  const result = await auth.login({ io: codeUser('bob', 'url'), flow: 'code' });
  assert.equal(result.identity?.sub, 'bob');
  const t = await auth.getToken(GW_A);
  assert.ok(t);
  assert.equal((await introspector(SCOPE_A).authenticate(md(t), 'req')).subject, 'bob');
  await tokenFile(auth.config.home);
});

test('a wrong code is refused with advice, not a stack of protocol errors', async () => {
  const auth = await open(await home());
  const io: AuthIO = { print: (l) => void printed.push(l), prompt: async () => 'not-a-real-code' };
  await refused(auth.login({ io, flow: 'code' }), scistreamError('UNAUTHENTICATED', /s2uc login/));
});

test('device authorization grant end to end (chosen automatically: the provider advertises it)', async () => {
  const auth = await open(await home());
  const io = deviceUser('dave');
  const result = await auth.login({ io });
  await io.done;
  assert.equal(result.flow, 'device');
  assert.ok(io.info?.userCode);
  assert.ok(printed.some((l) => l.includes(io.info!.userCode)), 'the user code was printed');
  assert.equal(result.identity?.sub, 'dave');
  const t = await auth.getToken(GW_A);
  assert.ok(t);
  assert.equal((await introspector(SCOPE_A).authenticate(md(t), 'req')).subject, 'dave');
  await tokenFile(auth.config.home);
});

test('check-auth reports each server: missing before login; valid, expired, refreshable after', async () => {
  const auth = await open(await home());
  const before = await auth.checkAuth([GW_A, '10.9.9.9:1']);
  assert.equal(before.loggedIn, false);
  assert.deepEqual(
    before.servers.map((s) => s.state),
    ['missing', 'not-configured'],
  );
  await refused(auth.getToken(GW_A), scistreamError('UNAUTHENTICATED', /s2uc login/));
  await refused(auth.whoami(), scistreamError('UNAUTHENTICATED', /s2uc login/));

  await auth.login({ io: codeUser('alice'), flow: 'code' });
  const now = await auth.checkAuth();
  assert.equal(now.loggedIn, true);
  assert.equal(now.identity?.sub, 'alice');
  assert.deepEqual(
    now.servers.map((s) => [s.server, s.state, s.refreshable]),
    [
      [GW_A, 'valid', true],
      [GW_J, 'valid', true],
      [GW_S, 'valid', true],
    ],
  );
  assert.ok(now.servers[0]!.expiresAt! > new Date());
  await new Promise((r) => setTimeout(r, (SHORT_TTL + 1) * 1000));
  const later = await auth.checkAuth([GW_S]);
  assert.equal(later.servers[0]!.state, 'expired');
  assert.equal(later.servers[0]!.refreshable, true);
  await tokenFile(auth.config.home);
});

test('an expired access token is refreshed with the refresh token (rotated refresh tokens are kept consistent)', async () => {
  const auth = await open(await home());
  await auth.login({ io: codeUser('alice'), flow: 'code' });
  const dir = auth.config.home;
  const first = await tokenFile(dir);
  const oldS = await auth.getToken(GW_S);
  const oldRefresh = new Set(Object.values(first.tokens).map((t) => t.refresh_token));
  assert.equal(oldRefresh.size, 1, 'one grant, one refresh token');

  await new Promise((r) => setTimeout(r, (SHORT_TTL + 1) * 1000));
  await refused(introspector(SCOPE_S).authenticate(md(oldS!), 'req'), scistreamError('UNAUTHENTICATED'));
  const newS = await auth.getToken(GW_S);
  assert.ok(newS && newS !== oldS, 'a new access token');
  assert.equal((await introspector(SCOPE_S).authenticate(md(newS), 'req')).subject, 'alice');
  const second = await tokenFile(dir);
  assert.equal(second.tokens[SCOPE_S]!.access_token, newS, 'saved');
  const newRefresh = new Set(Object.values(second.tokens).map((t) => t.refresh_token));
  assert.equal(newRefresh.size, 1, 'the rotated refresh token replaced the old one everywhere');
  assert.ok(!newRefresh.has([...oldRefresh][0]));
  assert.equal((await stat(join(dir, 'tokens.json'))).mode & 0o777, 0o600, 'still 0600 after the rewrite');

  // Two tokens expire at once and two calls refresh them concurrently: they take turns,
  // so neither spends a refresh token the other has already rotated away.
  const file = await tokenFile(dir);
  file.tokens[SCOPE_A]!.expires_at = 1;
  file.tokens[SCOPE_J]!.expires_at = 1;
  await writeFile(join(dir, 'tokens.json'), JSON.stringify(file), { mode: 0o600 });
  const [a, j] = await Promise.all([auth.getToken(GW_A), auth.getToken(GW_J)]);
  assert.equal((await introspector(SCOPE_A).authenticate(md(a!), 'req')).subject, 'alice');
  assert.equal(j!.split('.').length, 3);
  // A second UserAuth (another s2uc process) sees the refreshed tokens.
  const other = await open(dir);
  assert.equal(await other.getToken(GW_A), a);
  await tokenFile(dir);
});

test('a refresh that the provider refuses says to log in again; an unreachable provider is UNAVAILABLE', async () => {
  const auth = await open(await home());
  await auth.login({ io: codeUser('alice'), flow: 'code' });
  const dir = auth.config.home;
  const file = await tokenFile(dir);
  await idp.revoke(file.tokens[SCOPE_A]!.refresh_token!); // e.g. revoked in the provider's web UI
  file.tokens[SCOPE_A]!.expires_at = 1;
  await writeFile(join(dir, 'tokens.json'), JSON.stringify(file), { mode: 0o600 });
  await refused(auth.getToken(GW_A), scistreamError('UNAUTHENTICATED', /invalid_grant.*s2uc login/));

  // The same tokens, but the provider cannot be reached.
  const down = join(root, `down-${++homes}`);
  await mkdir(down, { recursive: true, mode: 0o700 });
  await writeFile(join(down, 'config.toml'), `[auth]\nissuer = "http://127.0.0.1:1"\nclient_id = "${CLI_CLIENT}"\n[servers."${GW_A}"]\nscope = "${SCOPE_A}"\n`);
  await writeFile(join(down, 'tokens.json'), JSON.stringify({ ...file, issuer: 'http://127.0.0.1:1' }), { mode: 0o600 });
  await refused((await open(down)).getToken(GW_A), scistreamError('UNAVAILABLE', /cannot reach/));
});

test('logout revokes every token (introspection then says inactive) and deletes tokens.json', async () => {
  const auth = await open(await home());
  await auth.login({ io: codeUser('alice'), flow: 'code' });
  const dir = auth.config.home;
  const file = await tokenFile(dir);
  const access = file.tokens[SCOPE_A]!.access_token;
  const refresh = file.tokens[SCOPE_A]!.refresh_token!;
  assert.equal((await introspector(SCOPE_A).authenticate(md(access), 'req')).subject, 'alice');
  assert.equal((await introspector(SCOPE_A).authenticate(md(refresh), 'req')).subject, 'alice', 'the refresh token is active before logout');

  const out = await auth.logout({ io: { print: (l) => void printed.push(l) } });
  assert.deepEqual(out.failed, []);
  assert.ok(out.revoked >= 2);
  assert.equal(out.removed, true);
  await assert.rejects(stat(join(dir, 'tokens.json')), /ENOENT/);
  await refused(introspector(SCOPE_A).authenticate(md(access), 'req'), scistreamError('UNAUTHENTICATED'));
  await refused(introspector(SCOPE_A).authenticate(md(refresh), 'req'), scistreamError('UNAUTHENTICATED'));
  await refused(auth.getToken(GW_A), scistreamError('UNAUTHENTICATED', /s2uc login/));
  assert.deepEqual(await auth.logout(), { revoked: 0, failed: [], removed: false }, 'logging out twice is fine');
});

test('a tokens.json that others can read is refused with the chmod that fixes it (logout still revokes it)', async () => {
  const auth = await open(await home());
  await auth.login({ io: codeUser('alice'), flow: 'code' });
  const path = join(auth.config.home, 'tokens.json');
  const file = await tokenFile(auth.config.home);
  await chmod(path, 0o644);
  await assert.rejects(auth.getToken(GW_A), (e: unknown) => e instanceof AuthConfigError && e.message.includes(`chmod 600 ${path}`));
  await assert.rejects(auth.checkAuth(), /chmod 600/);
  await assert.rejects((await open(auth.config.home)).whoami(), /chmod 600/);
  const out = await auth.logout();
  assert.equal(out.removed, true);
  assert.deepEqual(out.failed, []);
  await refused(introspector(SCOPE_A).authenticate(md(file.tokens[SCOPE_A]!.access_token), 'req'), scistreamError('UNAUTHENTICATED'));
  await chmod(path, 0o600).catch(() => {});
});

test('no access or refresh token appears in any log line, printed line or error message', () => {
  assert.ok(secrets.size > 10);
  assert.ok(lines.length > 0);
  assertNoSecrets([...lines, ...printed, ...messages], [...secrets]);
});
