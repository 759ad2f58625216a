// createAuthenticator, readClientSecret and the application secrets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuthConfigError,
  IntrospectionAuth,
  JwtAuth,
  NoAuth,
  createAuthenticator,
  generateAppSecret,
  readClientSecret,
  verifyAppSecret,
} from '../../src/auth/index.js';
import { ScistreamError } from '../../src/protocol/errors.js';

test('createAuthenticator builds each mode', async () => {
  const none = createAuthenticator({ mode: 'none' });
  assert.ok(none instanceof NoAuth);
  assert.equal((await none.authenticate()).subject, 'anonymous');
  const intro = createAuthenticator({
    mode: 'introspect',
    introspectionUrl: 'https://auth.globus.org/v2/oauth2/token/introspect',
    clientId: 'c',
    clientSecret: 's',
    scope: 'https://auth.globus.org/scopes/x/scistream',
  });
  assert.ok(intro instanceof IntrospectionAuth);
  assert.equal(intro.mode, 'introspect');
  const jwt = createAuthenticator({ mode: 'jwt', issuer: 'https://idp.example.org', audience: 'a', scope: 's' });
  assert.ok(jwt instanceof JwtAuth);
  assert.equal(jwt.mode, 'jwt');
  assert.throws(() => createAuthenticator({ mode: 'kerberos' } as never), (e: unknown) => e instanceof AuthConfigError && /none, introspect, jwt/.test(e.message));
  // Config errors are INVALID_ARGUMENT ScistreamErrors, which the CLIs treat as usage errors (exit 2).
  assert.throws(
    () => createAuthenticator({ mode: 'introspect', introspectionUrl: 'http://remote.example/x', clientId: 'c', clientSecret: 's', scope: 'x' }),
    (e: unknown) => e instanceof ScistreamError && e.kind === 'INVALID_ARGUMENT',
  );
});

test('readClientSecret: a 0600 file (trimmed), else S2CS_CLIENT_SECRET, else a clear error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'secret-'));
  try {
    const file = join(dir, 'secret');
    writeFileSync(file, '  s3cret-value\n', { mode: 0o600 });
    chmodSync(file, 0o600);
    assert.equal(readClientSecret({ file, env: { S2CS_CLIENT_SECRET: 'from-env' } }), 's3cret-value', 'the file wins');
    assert.equal(readClientSecret({ env: { S2CS_CLIENT_SECRET: ' from-env ' } }), 'from-env');
    assert.throws(() => readClientSecret({ env: {} }), (e: unknown) => e instanceof AuthConfigError && /S2CS_CLIENT_SECRET/.test(e.message));

    chmodSync(file, 0o644);
    assert.throws(
      () => readClientSecret({ file, env: {} }),
      (e: unknown) => e instanceof AuthConfigError && e.message.includes(`chmod 600 ${file}`) && !e.message.includes('s3cret'),
    );
    chmodSync(file, 0o640);
    assert.throws(() => readClientSecret({ file, env: {} }), /chmod 600/);

    const empty = join(dir, 'empty');
    writeFileSync(empty, '\n', { mode: 0o600 });
    assert.throws(() => readClientSecret({ file: empty, env: {} }), /empty/);
    assert.throws(() => readClientSecret({ file: join(dir, 'missing'), env: {} }), /ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('application secrets: 32 random bytes, base64url; verified in constant time', () => {
  const a = generateAppSecret();
  const b = generateAppSecret();
  assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(a, b);
  assert.equal(verifyAppSecret(a, a), true);
  assert.equal(verifyAppSecret(b, a), false);
  assert.equal(verifyAppSecret(`${a}x`, a), false, 'a longer value does not match');
  assert.equal(verifyAppSecret(a.slice(0, 10), a), false);
  assert.equal(verifyAppSecret(undefined, a), false);
  assert.equal(verifyAppSecret('', ''), false, 'an empty expected secret never matches');
});
