// IntrospectionAuth against a real OpenID Provider (oidc-provider) on 127.0.0.1:
// opaque access tokens, RFC 7662 introspection with HTTP Basic client credentials.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { Metadata } from '@grpc/grpc-js';
import { IntrospectionAuth, type IntrospectionAuthOptions } from '../../src/auth/introspect.js';
import { AuthConfigError } from '../../src/auth/common.js';
import { startIdP, GW_CLIENT, SCOPE_A, SCOPE_B, SCOPE_S, SHORT_TTL, type TestIdP } from './idp.js';
import { assertNoSecrets, captureLogger, scistreamError } from './capture.js';

let idp: TestIdP;
const { logger, lines } = captureLogger();
const secrets: string[] = [];
const messages: string[] = [];
const INTROSPECTION = '/token/introspection';

before(async () => {
  idp = await startIdP();
  secrets.push(idp.gwSecret);
});
after(async () => {
  await idp.close();
});

function md(value?: string | string[]): Metadata {
  const m = new Metadata();
  for (const v of value === undefined ? [] : Array.isArray(value) ? value : [value]) m.add('authorization', v);
  return m;
}

function auth(opts: Partial<IntrospectionAuthOptions> = {}): IntrospectionAuth {
  return new IntrospectionAuth({
    introspectionUrl: idp.introspectionUrl,
    clientId: GW_CLIENT,
    clientSecret: idp.gwSecret,
    scope: SCOPE_A,
    logger,
    ...opts,
  });
}

async function token(scope: string, user = 'alice'): Promise<string> {
  const t = await idp.issueToken(scope, user);
  secrets.push(t.access_token);
  if (t.refresh_token) secrets.push(t.refresh_token);
  return t.access_token;
}

/** Runs `p`, expecting a rejection matched by `check`; keeps the message for the secrets check. */
async function refused(p: Promise<unknown>, check: (err: unknown) => boolean): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    messages.push((err as Error).message);
    return check(err);
  });
}

test('a good token is accepted raw and with a Bearer prefix (any case); the identity is its sub', async () => {
  const t = await token(SCOPE_A, 'alice');
  const a = auth();
  assert.deepEqual((await a.authenticate(md(t), 'req')).subject, 'alice');
  assert.equal((await a.authenticate(md(`Bearer ${t}`), 'update')).subject, 'alice');
  assert.equal((await a.authenticate(md(`bearer   ${t}`), 'release')).subject, 'alice');
  const other = await token(SCOPE_A, 'bob');
  assert.equal((await auth().authenticate(md(`BEARER ${other}`), 'status')).subject, 'bob');
});

test('results are cached: a second call with the same token does not reach the provider', async () => {
  const t = await token(SCOPE_A);
  const a = auth();
  const before = idp.requests(INTROSPECTION);
  await a.authenticate(md(t), 'req');
  assert.equal(idp.requests(INTROSPECTION), before + 1);
  await a.authenticate(md(`Bearer ${t}`), 'update');
  await a.authenticate(md(t), 'release');
  assert.equal(idp.requests(INTROSPECTION), before + 1, 'served from the cache');
  // Concurrent calls with a new token share one introspection request.
  const t2 = await token(SCOPE_A);
  const n = idp.requests(INTROSPECTION);
  await Promise.all([a.authenticate(md(t2), 'req'), a.authenticate(md(t2), 'req'), a.authenticate(md(t2), 'status')]);
  assert.equal(idp.requests(INTROSPECTION), n + 1);
  // cacheMaxSeconds 0 turns caching off.
  const uncached = auth({ cacheMaxSeconds: 0 });
  const m = idp.requests(INTROSPECTION);
  await uncached.authenticate(md(t), 'req');
  await uncached.authenticate(md(t), 'req');
  assert.equal(idp.requests(INTROSPECTION), m + 2);
});

test('the cache is bounded: the least recently used entry goes first', async () => {
  const [t1, t2] = [await token(SCOPE_A), await token(SCOPE_A)];
  const a = auth({ cacheSize: 1 });
  const n = idp.requests(INTROSPECTION);
  await a.authenticate(md(t1), 'req');
  await a.authenticate(md(t2), 'req'); // evicts t1
  await a.authenticate(md(t2), 'req'); // cached
  await a.authenticate(md(t1), 'req'); // introspected again
  assert.equal(idp.requests(INTROSPECTION), n + 3);
});

test('no token, or a malformed one: UNAUTHENTICATED telling the user to log in', async () => {
  const a = auth();
  await refused(a.authenticate(md(), 'req'), scistreamError('UNAUTHENTICATED', /s2uc login/));
  await refused(a.authenticate(md(), 'req'), scistreamError('UNAUTHENTICATED', new RegExp(SCOPE_A.replace(/[./]/g, '\\$&'))));
  await refused(a.authenticate(md('Bearer '), 'req'), scistreamError('UNAUTHENTICATED', /empty/));
  await refused(a.authenticate(md('two words'), 'req'), scistreamError('UNAUTHENTICATED', /well-formed/));
  await refused(a.authenticate(md(['a', 'b']), 'req'), scistreamError('UNAUTHENTICATED', /more than one/));
  const bin = new Metadata();
  bin.add('authorization-bin', Buffer.from('x'));
  await refused(a.authenticate(bin, 'req'), scistreamError('UNAUTHENTICATED'));
});

test('an unknown token is UNAUTHENTICATED', async () => {
  const fake = 'x'.repeat(43);
  await refused(auth().authenticate(md(fake), 'req'), scistreamError('UNAUTHENTICATED', /expired, revoked or unknown.*s2uc login/));
});

test('a token without the required scope is PERMISSION_DENIED naming the scope', async () => {
  const t = await token(SCOPE_B);
  await refused(auth().authenticate(md(t), 'req'), scistreamError('PERMISSION_DENIED', new RegExp(`"${SCOPE_A.replace(/[./]/g, '\\$&')}"`)));
  // ...and the same token is fine where that scope is the one required.
  assert.equal((await auth({ scope: SCOPE_B }).authenticate(md(t), 'req')).subject, 'alice');
});

test('a revoked token is refused (once its cached result, if any, is gone)', async () => {
  const t = await token(SCOPE_A);
  const a = auth();
  await a.authenticate(md(t), 'req');
  await idp.revoke(t);
  a.clearCache();
  await refused(a.authenticate(md(t), 'req'), scistreamError('UNAUTHENTICATED', /s2uc login/));
  await refused(auth().authenticate(md(t), 'req'), scistreamError('UNAUTHENTICATED'));
});

test('an expired token is refused, and a cached result is not used past the expiry', async () => {
  const t = await token(SCOPE_S);
  const a = auth({ scope: SCOPE_S });
  assert.equal((await a.authenticate(md(t), 'req')).subject, 'alice');
  const n = idp.requests(INTROSPECTION);
  await new Promise((r) => setTimeout(r, (SHORT_TTL + 1) * 1000));
  await refused(a.authenticate(md(t), 'req'), scistreamError('UNAUTHENTICATED', /s2uc login/));
  assert.equal(idp.requests(INTROSPECTION), n + 1, 'asked the provider again');
});

test('audience: when configured, the token must be issued for it', async () => {
  const t = await token(SCOPE_A);
  assert.equal((await auth({ audience: 'gw-a' }).authenticate(md(t), 'req')).subject, 'alice');
  await refused(auth({ audience: 'gw-z' }).authenticate(md(t), 'req'), scistreamError('UNAUTHENTICATED', /audience/));
});

test('an unreachable introspection endpoint is UNAVAILABLE', async () => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const a = auth({ introspectionUrl: `http://127.0.0.1:${port}/introspect`, timeoutSeconds: 2 });
  await refused(a.authenticate(md('abcdefghijklmnopqrstuvwxyz'), 'req'), scistreamError('UNAVAILABLE', /retry/));
});

test('wrong client credentials: the operator is told to check them, the secret is not shown', async () => {
  const t = await token(SCOPE_A);
  const wrong = `wrong-${idp.gwSecret}`;
  secrets.push(wrong);
  await refused(auth({ clientSecret: wrong }).authenticate(md(t), 'req'), scistreamError('INTERNAL', /client id and secret/));
});

test('configuration errors are AuthConfigErrors (exit code 2 in the CLIs)', () => {
  assert.throws(() => auth({ introspectionUrl: 'http://auth.example.org/introspect' }), (e: unknown) => e instanceof AuthConfigError && /https/.test(e.message));
  assert.throws(() => auth({ introspectionUrl: 'not a url' }), AuthConfigError);
  assert.throws(() => auth({ clientSecret: '' }), (e: unknown) => e instanceof AuthConfigError && /clientSecret/.test(e.message));
  assert.throws(() => auth({ scope: 'a b' }), AuthConfigError);
  assert.doesNotThrow(() => auth({ introspectionUrl: 'https://auth.globus.org/v2/oauth2/token/introspect' }));
});

test('no token or client secret appears in any log line or error message', () => {
  assert.ok(lines.length > 10, 'the tests logged something');
  assert.ok(lines.some((l) => l.includes('access token accepted')));
  assertNoSecrets([...lines, ...messages], secrets);
});
