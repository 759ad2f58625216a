// s2cs with token checking, against a real OpenID Provider (oidc-provider on
// 127.0.0.1): `capabilities` without a token, and --hello-accepts-owner-token (a
// Hello carrying the stream owner's token instead of the application secret, as
// the reference's application controllers send it), including Hellos that come
// before their req. Nothing here is mocked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { IntrospectionAuth } from '../../src/auth/introspect.js';
import { ControlConnection, RemoteError } from '../../src/protocol/client.js';
import { GW_CLIENT, SCOPE_A, SCOPE_B, startIdP, type TestIdP } from '../auth/idp.js';
import { assertNoSecrets, captureLogger } from '../auth/capture.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

let idp: TestIdP;
let plain: TestGateway; // tokens checked, Hello needs the application secret (the default)
let owner: TestGateway; // tokens checked, --hello-accepts-owner-token
const { logger, lines } = captureLogger();
const secrets: string[] = [];
const tokens = new Map<string, string>();

const introspect = () =>
  new IntrospectionAuth({ introspectionUrl: idp.introspectionUrl, clientId: GW_CLIENT, clientSecret: idp.gwSecret, scope: SCOPE_A, cacheMaxSeconds: 0, logger });

async function token(user: string, scope = SCOPE_A): Promise<string> {
  const key = `${user} ${scope}`;
  let t = tokens.get(key);
  if (!t) {
    t = (await idp.issueToken(scope, user)).access_token;
    tokens.set(key, t);
    secrets.push(t);
  }
  return t;
}

const as = (gw: TestGateway, t?: string) => new ControlConnection(gw.address, { insecure: true, deadlineMs: 10_000, token: t });

async function refusedWith(p: Promise<unknown>, status: string | string[], re?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RemoteError, `a RemoteError, not ${String(err)}`);
    assert.ok((Array.isArray(status) ? status : [status]).includes(err.status), `${err.status}: ${err.details}`);
    if (re) assert.match(err.details, re);
    return true;
  });
}

before(async () => {
  idp = await startIdP();
  plain = await startGateway({ auth: introspect(), logger });
  owner = await startGateway({ auth: introspect(), helloAcceptsOwnerToken: true, helloTimeoutMs: 5000, logger });
});
after(async () => {
  await Promise.all([plain?.close(), owner?.close()]);
  await idp?.close();
  assertNoSecrets(lines, secrets);
});

test('capabilities needs no token on a gateway that checks tokens, and says it checks them', async () => {
  const caps = await as(plain).capabilities();
  assert.equal(caps.checks_tokens, true);
  assert.equal(caps.implementation, 'scistream-ts');
  // Every other rpc does need one.
  await refusedWith(as(plain).status({ uid: '' }), 'UNAUTHENTICATED');
});

test('without the option, a Hello with the owner token and no secret is refused, naming --hello-accepts-owner-token', async () => {
  const alice = await token('alice');
  const uid = randomUUID();
  // Before the req (nothing to match), then after it.
  await refusedWith(as(plain, alice).hello({ uid, role: 'CONS', prod_listeners: [] }), 'UNAUTHENTICATED', /no stream with uid .*--hello-accepts-owner-token/);
  const r = await as(plain, alice).req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
  secrets.push(r.app_secret);
  await refusedWith(as(plain, alice).hello({ uid, role: 'CONS', prod_listeners: [] }), 'UNAUTHENTICATED', /application secret.*--hello-accepts-owner-token/);
  // Without any token the message does not talk about tokens.
  await refusedWith(as(plain).hello({ uid, role: 'CONS', prod_listeners: [] }), 'UNAUTHENTICATED', /^(?!.*hello-accepts-owner-token).*application secret/);
  await as(plain, alice).release({ uid });
});

test('--hello-accepts-owner-token: needs token checking', async () => {
  await assert.rejects(startGateway({ helloAcceptsOwnerToken: true }), /--hello-accepts-owner-token needs token checking/);
});

test("with the option: the owner's token opens Hello (CONS and PROD); another user's, a bad or a wrong-scope token is refused naming the option; the secret still works", async () => {
  const [alice, bob, aliceB] = await Promise.all([token('alice'), token('bob'), token('alice', SCOPE_B)]);
  const cons = randomUUID();
  const r = await as(owner, alice).req({ uid: cons, role: 'CONS', num_conn: 2, rate: 0 });
  secrets.push(r.app_secret);
  const hello = await as(owner, alice).hello({ uid: cons, role: 'CONS', prod_listeners: [] });
  assert.deepEqual(hello.listeners, r.listeners);
  await refusedWith(as(owner, bob).hello({ uid: cons, role: 'CONS', prod_listeners: [] }), 'PERMISSION_DENIED', /belongs to another user.*--hello-accepts-owner-token/);
  await refusedWith(as(owner, 'INVALID_TOKEN').hello({ uid: cons, role: 'CONS', prod_listeners: [] }), 'UNAUTHENTICATED', /--hello-accepts-owner-token.*s2uc login/);
  await refusedWith(as(owner, aliceB).hello({ uid: cons, role: 'CONS', prod_listeners: [] }), ['UNAUTHENTICATED', 'PERMISSION_DENIED'], /--hello-accepts-owner-token/);
  assert.deepEqual((await as(owner).hello({ uid: cons, role: 'CONS', prod_listeners: [], app_secret: r.app_secret })).listeners, r.listeners);
  await as(owner, alice).release({ uid: cons });

  // A producer req waits for its Hello; the owner's token answers it.
  const prod = randomUUID();
  const req = as(owner, alice).req({ uid: prod, role: 'PROD', num_conn: 1, rate: 0 });
  await waitFor(() => owner.server.table.status(prod)[0]?.state === 'awaiting-hello');
  await refusedWith(as(owner, bob).hello({ uid: prod, role: 'PROD', prod_listeners: ['127.0.0.1:7001'] }), 'PERMISSION_DENIED');
  await as(owner, alice).hello({ uid: prod, role: 'PROD', prod_listeners: ['127.0.0.1:7000'] });
  const answered = await req;
  secrets.push(answered.app_secret);
  assert.deepEqual(answered.prod_listeners, ['127.0.0.1:7000']);
  await as(owner, alice).release({ uid: prod });
  assert.equal(owner.server.table.size, 0);
});

test('with the option, Hellos before their req: held with the token subject, used only for a req of the same user', async () => {
  const [alice, bob] = await Promise.all([token('alice'), token('bob')]);
  // The owner's early PROD Hello answers the req at once.
  const early = randomUUID();
  const held = await as(owner, alice).hello({ uid: early, role: 'PROD', prod_listeners: ['127.0.0.1:7002'] });
  assert.match(held.message, /waiting for the request/);
  const r = await as(owner, alice).req({ uid: early, role: 'PROD', num_conn: 1, rate: 0 });
  secrets.push(r.app_secret);
  assert.deepEqual(r.prod_listeners, ['127.0.0.1:7002']);
  await as(owner, alice).release({ uid: early });

  // Another user's early Hello is dropped when the owner's req comes; the owner's own Hello then answers it.
  const taken = randomUUID();
  await as(owner, bob).hello({ uid: taken, role: 'PROD', prod_listeners: ['127.0.0.1:7003'] });
  await refusedWith(as(owner, alice).hello({ uid: taken, role: 'PROD', prod_listeners: ['127.0.0.1:7004'] }), 'PERMISSION_DENIED', /another user is already waiting/);
  const req = as(owner, alice).req({ uid: taken, role: 'PROD', num_conn: 1, rate: 0 });
  await waitFor(() => owner.server.table.status(taken)[0]?.state === 'awaiting-hello');
  assert.ok(lines.some((l) => l.includes('dropped a Hello held') && l.includes(taken)), 'the drop is logged');
  await as(owner, alice).hello({ uid: taken, role: 'PROD', prod_listeners: ['127.0.0.1:7004'] });
  const answered = await req;
  secrets.push(answered.app_secret);
  assert.deepEqual(answered.prod_listeners, ['127.0.0.1:7004']);
  await as(owner, alice).release({ uid: taken });

  // A consumer Hello waiting for its req is answered only if the req is its token's user's.
  const cons = randomUUID();
  const bobsRefused = refusedWith(as(owner, bob).hello({ uid: cons, role: 'CONS', prod_listeners: [] }), 'PERMISSION_DENIED', /belongs to another user/);
  const alicesWait = as(owner, alice).hello({ uid: cons, role: 'CONS', prod_listeners: [] });
  await new Promise((resolve) => setTimeout(resolve, 200));
  const c = await as(owner, alice).req({ uid: cons, role: 'CONS', num_conn: 1, rate: 0 });
  secrets.push(c.app_secret);
  await bobsRefused;
  assert.deepEqual((await alicesWait).listeners, c.listeners);
  await as(owner, alice).release({ uid: cons });
  assert.equal(owner.server.table.size, 0);
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
