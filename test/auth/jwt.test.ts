// JwtAuth: JWT access tokens issued by a real OpenID Provider (oidc-provider with a
// JWT-format resource server), and by a tiny issuer of our own on 127.0.0.1 that
// serves its keys (jose-generated) over HTTP and rotates them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Metadata } from '@grpc/grpc-js';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWTPayload } from 'jose';
import { JwtAuth, type JwtAuthOptions } from '../../src/auth/jwt.js';
import { AuthConfigError } from '../../src/auth/common.js';
import { startIdP, JWT_AUDIENCE, SCOPE_A, SCOPE_J, type TestIdP } from './idp.js';
import { assertNoSecrets, captureLogger, scistreamError } from './capture.js';

let idp: TestIdP;
let keys: KeyServer;
const { logger, lines } = captureLogger();
const secrets: string[] = [];
const messages: string[] = [];

before(async () => {
  idp = await startIdP();
  keys = await startKeyServer();
});
after(async () => {
  await idp.close();
  await keys.close();
});

function md(value: string): Metadata {
  const m = new Metadata();
  m.set('authorization', value);
  return m;
}

function providerAuth(opts: Partial<JwtAuthOptions> = {}): JwtAuth {
  return new JwtAuth({ issuer: idp.issuer, audience: JWT_AUDIENCE, scope: SCOPE_J, logger, ...opts });
}

function ownAuth(opts: Partial<JwtAuthOptions> = {}): JwtAuth {
  return new JwtAuth({ issuer: keys.issuer, audience: 'urn:gw', scope: 'scistream', jwksCooldownMs: 0, logger, ...opts });
}

async function providerToken(scope: string, user = 'alice'): Promise<string> {
  const t = await idp.issueToken(scope, user);
  secrets.push(t.access_token);
  if (t.refresh_token) secrets.push(t.refresh_token);
  return t.access_token;
}

async function refused(p: Promise<unknown>, check: (err: unknown) => boolean): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    messages.push((err as Error).message);
    return check(err);
  });
}

test('a JWT access token from the provider is verified with keys found by OIDC discovery', async () => {
  const t = await providerToken(SCOPE_J, 'alice');
  assert.equal(t.split('.').length, 3, 'the provider issued a JWT');
  const a = providerAuth();
  const id = await a.authenticate(md(t), 'req');
  assert.equal(id.subject, 'alice');
  assert.equal(id.clientId, 's2uc-test');
  assert.equal((await a.authenticate(md(`Bearer ${t}`), 'status')).subject, 'alice');
  // An explicit key set URL works as well.
  assert.equal((await providerAuth({ jwksUrl: `${idp.issuer}/jwks` }).authenticate(md(t), 'req')).subject, 'alice');
});

test('wrong audience, wrong issuer, missing scope, opaque token', async () => {
  const t = await providerToken(SCOPE_J);
  await refused(providerAuth({ audience: 'urn:scistream:elsewhere' }).authenticate(md(t), 'req'), scistreamError('UNAUTHENTICATED', /audience.*s2uc login/));
  await refused(
    providerAuth({ issuer: `${idp.issuer}/other`, jwksUrl: `${idp.issuer}/jwks` }).authenticate(md(t), 'req'),
    scistreamError('UNAUTHENTICATED', /another authorization server/),
  );
  await refused(providerAuth({ scope: SCOPE_A }).authenticate(md(t), 'req'), scistreamError('PERMISSION_DENIED', new RegExp(`"${SCOPE_A.replace(/[./]/g, '\\$&')}"`)));
  const opaque = await providerToken(SCOPE_A);
  await refused(providerAuth().authenticate(md(opaque), 'req'), scistreamError('UNAUTHENTICATED', /not a JWT/));
});

test('an expired token is refused; `scp` arrays count as scopes', async () => {
  const a = ownAuth({ clockToleranceSeconds: 0 });
  const expired = await keys.sign({ scope: 'scistream' }, { exp: Math.floor(Date.now() / 1000) - 60 });
  await refused(a.authenticate(md(expired), 'req'), scistreamError('UNAUTHENTICATED', /expired.*s2uc login/));
  assert.equal((await a.authenticate(md(await keys.sign({ scp: ['other', 'scistream'] })), 'req')).subject, 'carol');
  assert.equal((await a.authenticate(md(await keys.sign({ scope: 'a scistream b' })), 'req')).subject, 'carol');
  await refused(a.authenticate(md(await keys.sign({ scp: ['other'] })), 'req'), scistreamError('PERMISSION_DENIED', /"scistream"/));
  await refused(a.authenticate(md(await keys.sign({})), 'req'), scistreamError('PERMISSION_DENIED'));
  await refused(a.authenticate(md(await keys.sign({ scope: 'scistream' }, { aud: 'urn:other' })), 'req'), scistreamError('UNAUTHENTICATED', /audience/));
  await refused(a.authenticate(md(await keys.sign({ scope: 'scistream' }, { iss: 'https://evil.example' })), 'req'), scistreamError('UNAUTHENTICATED', /another/));
});

test('key rotation: a token signed with a new key is accepted after the issuer rotates its keys', async () => {
  const a = ownAuth();
  const oldToken = await keys.sign({ scope: 'scistream' });
  assert.equal((await a.authenticate(md(oldToken), 'req')).subject, 'carol');
  const fetches = keys.jwksFetches;
  await a.authenticate(md(oldToken), 'req');
  assert.equal(keys.jwksFetches, fetches, 'keys are cached');

  await keys.rotate(); // the old key is withdrawn, a new one (new kid) is published
  const newToken = await keys.sign({ scope: 'scistream' });
  assert.equal((await a.authenticate(md(newToken), 'req')).subject, 'carol');
  assert.equal(keys.jwksFetches, fetches + 1, 'the unknown kid made it fetch the keys again');
  // The withdrawn key no longer verifies anything.
  await refused(a.authenticate(md(oldToken), 'req'), scistreamError('UNAUTHENTICATED', /signature/));
});

test('forged and unsigned tokens are refused', async () => {
  const a = ownAuth();
  // Same kid as the real key, signed with someone else's key.
  const { privateKey } = await generateKeyPair('ES256');
  const forged = await keys.sign({ scope: 'scistream' }, { key: privateKey });
  await refused(a.authenticate(md(forged), 'req'), scistreamError('UNAUTHENTICATED', /signature/));
  // alg "none".
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${b64({ alg: 'none' })}.${b64({ iss: keys.issuer, aud: 'urn:gw', sub: 'mallory', scope: 'scistream', exp: now + 600 })}.`;
  await refused(a.authenticate(md(unsigned), 'req'), scistreamError('UNAUTHENTICATED'));
  // A symmetric algorithm with a made-up secret.
  const hs = await new SignJWT({ scope: 'scistream' })
    .setProtectedHeader({ alg: 'HS256', kid: keys.kid })
    .setIssuer(keys.issuer)
    .setAudience('urn:gw')
    .setSubject('mallory')
    .setExpirationTime('10m')
    .sign(new TextEncoder().encode('a-guessed-secret-of-some-length!!'));
  await refused(a.authenticate(md(hs), 'req'), scistreamError('UNAUTHENTICATED'));
});

test('an unreachable issuer or key set is UNAVAILABLE, and recovers', async () => {
  keys.failing = true;
  const a = ownAuth();
  const t = await keys.sign({ scope: 'scistream' });
  await refused(a.authenticate(md(t), 'req'), scistreamError('UNAVAILABLE', /retry/));
  keys.failing = false;
  assert.equal((await a.authenticate(md(t), 'req')).subject, 'carol', 'a failed discovery is retried');
  const dead = new JwtAuth({ issuer: 'http://127.0.0.1:1', audience: 'x', scope: 'y', timeoutMs: 2000, logger });
  await refused(dead.authenticate(md(t), 'req'), scistreamError('UNAVAILABLE'));
});

test('configuration errors are AuthConfigErrors', () => {
  assert.throws(() => new JwtAuth({ issuer: 'http://idp.example.org', audience: 'a', scope: 's' }), (e: unknown) => e instanceof AuthConfigError && /https/.test(e.message));
  assert.throws(() => new JwtAuth({ issuer: 'https://idp.example.org', audience: '', scope: 's' }), AuthConfigError);
  assert.throws(() => new JwtAuth({ issuer: 'https://idp.example.org', audience: 'a', scope: 's', jwksUrl: 'ftp://x' }), AuthConfigError);
});

test('no token appears in any log line or error message', () => {
  assert.ok(lines.some((l) => l.includes('access token accepted')));
  assertNoSecrets([...lines, ...messages], secrets);
});

interface KeyServer {
  issuer: string;
  kid: string;
  jwksFetches: number;
  failing: boolean;
  sign(claims: JWTPayload, opts?: { exp?: number; aud?: string; iss?: string; key?: CryptoKey }): Promise<string>;
  rotate(): Promise<void>;
  close(): Promise<void>;
}

/** An issuer that publishes an ES256 key at /jwks (with OIDC discovery) and can rotate it. */
async function startKeyServer(): Promise<KeyServer> {
  let generation = 0;
  let current = await newKey();
  async function newKey() {
    generation++;
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const kid = `key-${generation}`;
    return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
  }
  const server = http.createServer((req, res) => {
    if (ks.failing) {
      res.statusCode = 503;
      res.end();
      return;
    }
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration') {
      res.end(JSON.stringify({ issuer: ks.issuer, jwks_uri: `${ks.issuer}/jwks` }));
    } else if (req.url === '/jwks') {
      ks.jwksFetches++;
      res.end(JSON.stringify({ keys: [current.jwk] }));
    } else {
      res.statusCode = 404;
      res.end('{}');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const ks: KeyServer = {
    issuer: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get kid() {
      return current.kid;
    },
    jwksFetches: 0,
    failing: false,
    async sign(claims, opts = {}) {
      const jwt = await new SignJWT({ ...claims })
        .setProtectedHeader({ alg: 'ES256', kid: current.kid, typ: 'at+jwt' })
        .setIssuer(opts.iss ?? ks.issuer)
        .setAudience(opts.aud ?? 'urn:gw')
        .setSubject('carol')
        .setIssuedAt()
        .setExpirationTime(opts.exp ?? '10m')
        .sign(opts.key ?? current.privateKey);
      secrets.push(jwt);
      return jwt;
    },
    async rotate() {
      current = await newKey();
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return ks;
}
