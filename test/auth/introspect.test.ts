// IntrospectionAuth against a real OpenID Provider (oidc-provider) on 127.0.0.1:
// opaque access tokens, RFC 7662 introspection with HTTP Basic client credentials.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as http from 'node:http';
import { Metadata } from '@grpc/grpc-js';
import { IntrospectionAuth, basicCredential, type IntrospectionAuthOptions } from '../../src/auth/introspect.js';
import { AuthConfigError } from '../../src/auth/common.js';
import { startIdP, GW_CLIENT, ODD_CLIENT, SCOPE_A, SCOPE_B, SCOPE_S, SHORT_TTL, type TestIdP } from './idp.js';
import { assertNoSecrets, captureLogger, scistreamError } from './capture.js';

let idp: TestIdP;
const { logger, lines } = captureLogger();
const secrets: string[] = [];
const messages: string[] = [];
const INTROSPECTION = '/token/introspection';

before(async () => {
  idp = await startIdP();
  secrets.push(idp.gwSecret, idp.oddSecret);
  literal = await startLiteralServer();
});
after(async () => {
  await idp.close();
  await literal.close();
});

/**
 * A small RFC 7662 introspection endpoint that, like Globus Auth, reads HTTP Basic
 * credentials literally: the base64-decoded header must equal `id:secret` byte for byte
 * (no percent-decoding). client_secret_post (form body) is accepted too. Any token
 * starting with "good-" is active with SCOPE_A for subject "globus-user".
 */
interface LiteralServer {
  url: string;
  /** Authorization header values (decoded) and client_id form values received, in order. */
  seen: { basic?: string; postId?: string }[];
  clients: Map<string, string>;
  /** How a 401 looks: WWW-Authenticate and an OAuth error body, the body only, or neither. */
  refusal: 'challenge' | 'json' | 'bare';
  close(): Promise<void>;
}
let literal: LiteralServer;
const UUID_ID = 'c5b1e0a4-92d7-4f36-a8e1-0d3f6b7c2a19';
const UNRESERVED_SECRET = 'Ab9-._~'.repeat(4) + ':colon:and~more';
const AMBIGUOUS_SECRET = 'p+q%2Fr-._~:s%';

async function startLiteralServer(): Promise<LiteralServer> {
  const state: LiteralServer = { url: '', seen: [], clients: new Map(), refusal: 'challenge', close: async () => {} };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const refuse = () => {
        res.statusCode = 401;
        if (state.refusal === 'challenge') res.setHeader('www-authenticate', 'Basic realm="introspect"');
        if (state.refusal === 'bare') return void res.end();
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ error: 'invalid_client', error_description: 'client authentication failed' }));
      };
      const auth = req.headers.authorization;
      let ok = false;
      if (auth !== undefined) {
        const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(auth);
        const raw = m ? Buffer.from(m[1], 'base64').toString('utf8') : '';
        state.seen.push({ basic: raw });
        const i = raw.indexOf(':');
        ok = i > 0 && state.clients.get(raw.slice(0, i)) === raw.slice(i + 1);
      } else {
        const id = form.get('client_id') ?? '';
        state.seen.push({ postId: id });
        ok = state.clients.has(id) && state.clients.get(id) === form.get('client_secret');
      }
      if (req.method !== 'POST' || req.url !== '/introspect' || !ok) return refuse();
      const token = form.get('token') ?? '';
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(token.startsWith('good-') ? { active: true, scope: SCOPE_A, sub: 'globus-user', token_type: 'Bearer' } : { active: false }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/introspect`;
  state.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  state.clients.set(UUID_ID, UNRESERVED_SECRET);
  return state;
}

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
  await refused(
    a.authenticate(md('abcdefghijklmnopqrstuvwxyz'), 'req'),
    scistreamError('UNAVAILABLE', /^this gateway cannot check access tokens: its authorization server at http:\/\/127\.0\.0\.1:\d+ did not answer \(ECONNREFUSED\); this is not a problem with your token: retry later/),
  );
});

test('wrong client credentials: the operator is told to check them, the secret is not shown', async () => {
  const t = await token(SCOPE_A);
  const wrong = `wrong-${idp.gwSecret}`;
  secrets.push(wrong);
  await refused(auth({ clientSecret: wrong }).authenticate(md(t), 'req'), scistreamError('UNAVAILABLE', /^this gateway cannot check access tokens: .*refused the gateway's client credentials.*not a problem with your token: tell the gateway's operator/));
});

test('HTTP Basic escapes only what decoding and literal servers read differently', () => {
  assert.equal(basicCredential(UUID_ID, 'id'), UUID_ID, 'a UUID goes as is (not cid%2D...)');
  assert.equal(basicCredential('A-z.0_9~ !*()/=', 'secret'), 'A-z.0_9~ !*()/=');
  assert.equal(basicCredential('a:b', 'secret'), 'a:b', 'a colon in the secret is safe');
  assert.equal(basicCredential('a:b', 'id'), 'a%3Ab', 'a colon in the id would end it');
  assert.equal(basicCredential('a+b%c', 'secret'), 'a%2Bb%25c');
  assert.equal(basicCredential('a+b%c', 'secret', true), 'a+b%c');
  assert.equal(basicCredential('é', 'secret'), 'é', 'non-ASCII goes as UTF-8');
});

test('a server that reads Basic literally accepts a UUID client id and a secret with -._~ and :', async () => {
  const a = auth({ introspectionUrl: literal.url, clientId: UUID_ID, clientSecret: UNRESERVED_SECRET });
  const n = literal.seen.length;
  assert.equal((await a.authenticate(md('good-1'), 'req')).subject, 'globus-user');
  assert.deepEqual(literal.seen.slice(n), [{ basic: `${UUID_ID}:${UNRESERVED_SECRET}` }], 'one request, credentials exactly as configured');
  await refused(a.authenticate(md('stale-1'), 'req'), scistreamError('UNAUTHENTICATED', /s2uc login/));
});

test('a secret with + and %: escaped first (RFC 6749), then literally; the form that works is kept', async () => {
  literal.clients.set(UUID_ID, AMBIGUOUS_SECRET);
  secrets.push(AMBIGUOUS_SECRET);
  try {
    const a = auth({ introspectionUrl: literal.url, clientId: UUID_ID, clientSecret: AMBIGUOUS_SECRET });
    const n = literal.seen.length;
    assert.equal((await a.authenticate(md('good-2'), 'req')).subject, 'globus-user');
    assert.equal(literal.seen.length, n + 2, 'the escaped form was refused, the literal one accepted');
    assert.equal(literal.seen[n + 1].basic, `${UUID_ID}:${AMBIGUOUS_SECRET}`);
    await a.authenticate(md('good-3'), 'req');
    assert.equal(literal.seen.length, n + 3, 'the literal form is used straight away from then on');
    assert.ok(lines.some((l) => l.includes('accepted the client credentials in this form') && l.includes('basic (literal)')));
  } finally {
    literal.clients.set(UUID_ID, UNRESERVED_SECRET);
  }
});

test('a decoding provider (oidc-provider) accepts the same kinds of credentials: UUID id, secret with -._~:+% and a space', async () => {
  const t = await token(SCOPE_A, 'carol');
  const n = idp.requests(INTROSPECTION);
  const a = auth({ clientId: ODD_CLIENT, clientSecret: idp.oddSecret });
  assert.equal((await a.authenticate(md(t), 'req')).subject, 'carol');
  assert.equal(idp.requests(INTROSPECTION), n + 1, 'the RFC-escaped form is accepted at once');
  assert.equal((await auth({ clientId: ODD_CLIENT, clientSecret: idp.oddSecret, clientAuth: 'post' }).authenticate(md(t), 'req')).subject, 'carol');
  assert.equal((await auth({ clientAuth: 'post' }).authenticate(md(t), 'req')).subject, 'carol');
});

test('--introspection-auth post: the credentials go in the form body, no Authorization header', async () => {
  literal.clients.set(UUID_ID, AMBIGUOUS_SECRET);
  try {
    const n = literal.seen.length;
    const a = auth({ introspectionUrl: literal.url, clientId: UUID_ID, clientSecret: AMBIGUOUS_SECRET, clientAuth: 'post' });
    assert.equal((await a.authenticate(md('good-4'), 'req')).subject, 'globus-user');
    assert.deepEqual(literal.seen.slice(n), [{ postId: UUID_ID }]);
  } finally {
    literal.clients.set(UUID_ID, UNRESERVED_SECRET);
  }
  assert.throws(() => auth({ clientAuth: 'digest' as 'post' }), AuthConfigError);
});

test('credentials the provider rejects (401): UNAVAILABLE naming the gateway credentials, and an error log line naming the cause', async () => {
  for (const refusal of ['challenge', 'json', 'bare'] as const) {
    literal.refusal = refusal;
    const before = lines.length;
    const wrong = `wrong+${refusal}`;
    secrets.push(wrong);
    const a = auth({ introspectionUrl: literal.url, clientId: UUID_ID, clientSecret: wrong });
    await refused(a.authenticate(md('good-5'), 'req'), scistreamError('UNAVAILABLE', /refused the gateway's client credentials.*not a problem with your token.*tell the gateway's operator/));
    const logged = lines.slice(before).filter((l) => l.includes('"level":50'));
    assert.equal(logged.length, 1, `one error line (${refusal})`);
    assert.match(logged[0], /rejected this gateway's client credentials.*--client-id.*--introspection-auth post/);
    assert.match(logged[0], /"status":401/);
    assert.match(logged[0], /basic \(%, \+ escaped\), then basic \(literal\)/, 'says which forms were tried');
  }
  literal.refusal = 'challenge';
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
