// S2CS with authentication on, against a real OpenID Provider (oidc-provider on
// 127.0.0.1): tokens on every rpc, refusals that reserve nothing, ownership, and
// application secrets on Hello. Nothing here is mocked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { IntrospectionAuth } from '../../src/auth/introspect.js';
import { JwtAuth } from '../../src/auth/jwt.js';
import { ControlConnection, RemoteError } from '../../src/protocol/client.js';
import { releaseStream, requestStream } from '../../src/s2uc/flows.js';
import { streamStatus } from '../../src/s2uc/status.js';
import { sendHello } from '../../src/app/controller.js';
import { GW_CLIENT, JWT_AUDIENCE, SCOPE_A, SCOPE_B, SCOPE_J, SCOPE_S, SHORT_TTL, startIdP, type TestIdP } from '../auth/idp.js';
import { assertNoSecrets, captureLogger } from '../auth/capture.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

let idp: TestIdP;
let gwA: TestGateway; // introspection, scope A, admin "carol"
let gwB: TestGateway; // introspection, scope B
const { logger, lines } = captureLogger();
const secrets: string[] = [];
const tokens = new Map<string, string>();

const introspect = (scope: string) =>
  new IntrospectionAuth({ introspectionUrl: idp.introspectionUrl, clientId: GW_CLIENT, clientSecret: idp.gwSecret, scope, cacheMaxSeconds: 0, logger });

/** alice's (or `user`'s) access token for `scope`, issued once through the code flow. */
async function token(scope: string, user = 'alice'): Promise<string> {
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

async function refusedWith(p: Promise<unknown>, status: string, re?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RemoteError, `a RemoteError, not ${String(err)}`);
    assert.equal(err.status, status, err.message);
    if (re) assert.match(err.details, re);
    return true;
  });
}

function nothingReserved(gw: TestGateway): void {
  assert.equal(gw.server.table.size, 0, 'no stream recorded');
  assert.equal(gw.server.dataServer.ports().reserved, 0, 'no port reserved');
}

before(async () => {
  idp = await startIdP();
  gwA = await startGateway({ auth: introspect(SCOPE_A), admins: ['carol'], logger });
  gwB = await startGateway({ auth: introspect(SCOPE_B), logger });
});
after(async () => {
  await Promise.all([gwA?.close(), gwB?.close()]);
  await idp?.close();
  // Neither tokens nor application secrets reach the logs, at debug level either.
  assert.ok(lines.length > 0, 'the gateways logged something');
  assertNoSecrets(lines, secrets);
});

test('a token with the right scope works on every rpc; each gateway gets its own token; Hello needs the stream secret', async () => {
  const [tA, tB] = await Promise.all([token(SCOPE_A), token(SCOPE_B)]);
  const uid = randomUUID();
  const producer = '127.0.0.1:9';
  const helloResults: Promise<unknown>[] = [];
  const issued: Record<string, string> = {};
  const map = await requestStream(
    gwA.address,
    gwB.address,
    { numConn: 2, uid },
    {
      insecure: true,
      deadlineMs: 10_000,
      // Raw to one gateway, with the Bearer prefix to the other: both are accepted.
      tokenFor: async (server) => (server === gwA.address ? tA : `Bearer ${tB}`),
      onAppSecret: (secret, server, role) => {
        issued[role] = secret;
        secrets.push(secret);
        if (role !== 'PROD') return;
        assert.equal(server, gwA.address);
        helloResults.push(
          (async () => {
            // Without the secret, or with another, the Hello is refused and changes nothing.
            await refusedWith(sendHello(gwA.address, uid, 'PROD', [producer], { insecure: true }), 'UNAUTHENTICATED', /application secret/);
            await refusedWith(sendHello(gwA.address, uid, 'PROD', [producer], { insecure: true, appSecret: `${secret}x` }), 'UNAUTHENTICATED', /does not match/);
            // A user token is no substitute for the secret.
            await refusedWith(sendHello(gwA.address, uid, 'PROD', [producer], { insecure: true, token: tA }), 'UNAUTHENTICATED');
            return sendHello(gwA.address, uid, 'PROD', [producer], { insecure: true, appSecret: secret });
          })(),
        );
      },
    },
  );
  await Promise.all(helloResults);
  assert.deepEqual(map.prodAppListeners, [producer]);
  assert.equal(map.prodAppSecret, issued.PROD);
  assert.equal(map.consAppSecret, issued.CONS);
  assert.ok(map.prodAppSecret && map.prodAppSecret.length >= 32, 'a long random secret');
  assert.notEqual(map.prodAppSecret, map.consAppSecret, 'each gateway issues its own');

  // The consumer's controller asks where to connect, with its gateway's secret.
  const consHello = await sendHello(gwB.address, uid, 'CONS', [], { insecure: true, appSecret: map.consAppSecret });
  assert.deepEqual(consHello.listeners, map.consListeners);
  await refusedWith(sendHello(gwB.address, uid, 'CONS', [], { insecure: true, appSecret: map.prodAppSecret }), 'UNAUTHENTICATED');

  const status = await streamStatus(gwA.address, uid, { insecure: true, token: tA });
  assert.equal(status.streams.length, 1);
  assert.equal(status.streams[0]!.owner, 'alice');
  assert.equal(status.streams[0]!.state, 'ready');

  await releaseStream(uid, [gwA.address], { insecure: true, token: tA });
  await releaseStream(uid, [gwB.address], { insecure: true, token: tB });
  nothingReserved(gwA);
  nothingReserved(gwB);
});

test('missing, malformed, unknown, wrong-scope and revoked tokens are refused, reserve nothing, and the server keeps serving', async () => {
  const req = (t?: string) => as(gwA, t).req({ uid: randomUUID(), role: 'CONS', num_conn: 2, rate: 0 });
  await refusedWith(req(), 'UNAUTHENTICATED', new RegExp(`requires an access token with scope "${SCOPE_A}".*s2uc login`));
  await refusedWith(req('not a token!'), 'UNAUTHENTICATED', /not a well-formed access token/);
  await refusedWith(req('AAAAunknownTokenAAAA'), 'UNAUTHENTICATED', /s2uc login/);
  // A real token for another gateway's scope: refused, and the message names the scope needed.
  await assert.rejects(req(await token(SCOPE_B)), (err: unknown) => {
    assert.ok(err instanceof RemoteError);
    assert.ok(['UNAUTHENTICATED', 'PERMISSION_DENIED'].includes(err.status), err.message);
    assert.ok(err.details.includes(SCOPE_A), err.details);
    return true;
  });
  const revoked = (await idp.issueToken(SCOPE_A, 'alice')).access_token;
  secrets.push(revoked);
  await as(gwA, revoked).release({ uid: randomUUID() });
  await idp.revoke(revoked);
  await refusedWith(req(revoked), 'UNAUTHENTICATED');
  // Every rpc checks the token, not only req.
  const uid = randomUUID();
  await refusedWith(as(gwA).update({ uid, remote_listeners: ['127.0.0.1:9'], role: 'CONS' }), 'UNAUTHENTICATED');
  await refusedWith(as(gwA).release({ uid }), 'UNAUTHENTICATED');
  await refusedWith(as(gwA).status({ uid: '' }), 'UNAUTHENTICATED');
  nothingReserved(gwA);

  const good = await as(gwA, await token(SCOPE_A)).req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
  assert.equal(good.listeners.length, 1);
  await as(gwA, await token(SCOPE_A)).release({ uid });
  nothingReserved(gwA);
});

test('an expired token is refused', async () => {
  const gwS = await startGateway({ auth: introspect(SCOPE_S), logger });
  try {
    const t = (await idp.issueToken(SCOPE_S)).access_token;
    secrets.push(t);
    const uid = randomUUID();
    await as(gwS, t).req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    await new Promise((r) => setTimeout(r, (SHORT_TTL + 1.5) * 1000));
    await refusedWith(as(gwS, t).release({ uid }), 'UNAUTHENTICATED');
    await refusedWith(as(gwS, t).req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0 }), 'UNAUTHENTICATED');
    assert.equal(gwS.server.table.size, 1, 'the refused req reserved nothing');
  } finally {
    await gwS.close();
  }
});

test("ownership: only the creator updates or releases a stream; --admin identities may release any; users see their own streams", async () => {
  const [alice, bob, carol] = await Promise.all([token(SCOPE_A, 'alice'), token(SCOPE_A, 'bob'), token(SCOPE_A, 'carol')]);
  const uid = randomUUID();
  const r = await as(gwA, alice).req({ uid, role: 'CONS', num_conn: 2, rate: 0 });
  await refusedWith(as(gwA, bob).update({ uid, remote_listeners: ['127.0.0.1:9'], role: 'CONS' }), 'PERMISSION_DENIED', /belongs to another user/);
  await refusedWith(as(gwA, bob).release({ uid }), 'PERMISSION_DENIED');
  // Reusing alice's uid gives bob neither her listeners nor her secret.
  await refusedWith(as(gwA, bob).req({ uid, role: 'CONS', num_conn: 2, rate: 0 }), 'PERMISSION_DENIED');
  assert.equal((await as(gwA, bob).status({ uid: '' })).streams.length, 0, "bob does not see alice's stream");
  assert.equal((await as(gwA, carol).status({ uid: '' })).streams.length, 1, 'an admin sees every stream');
  // alice's retry is answered as the first time, secret included.
  const again = await as(gwA, alice).req({ uid, role: 'CONS', num_conn: 2, rate: 0 });
  assert.deepEqual(again.listeners, r.listeners);
  assert.equal(again.app_secret, r.app_secret);
  secrets.push(r.app_secret);
  assert.equal(gwA.server.table.size, 1, 'the stream is still there');
  await as(gwA, carol).release({ uid });
  nothingReserved(gwA);
});

test('with tokens checked, a Hello for a uid that was never requested is refused (there is no secret yet)', async () => {
  // s2app hello retries this answer (the req may still come) until its deadline, then reports it.
  await refusedWith(sendHello(gwA.address, randomUUID(), 'PROD', ['127.0.0.1:9'], { insecure: true, appSecret: 'guess', deadlineMs: 1500 }), 'UNAUTHENTICATED', /run s2uc request first/);
  nothingReserved(gwA);
});

test('jwt: tokens verified against the issuer keys, with audience and scope', async () => {
  const gwJ = await startGateway({ auth: new JwtAuth({ issuer: idp.issuer, audience: JWT_AUDIENCE, scope: SCOPE_J, logger }), logger });
  try {
    const t = await token(SCOPE_J);
    assert.equal(t.split('.').length, 3, 'a JWT');
    const uid = randomUUID();
    const r = await as(gwJ, `Bearer ${t}`).req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    assert.equal(r.listeners.length, 1);
    secrets.push(r.app_secret);
    // An opaque token of another gateway is no JWT of this issuer and audience.
    await refusedWith(as(gwJ, await token(SCOPE_A)).release({ uid }), 'UNAUTHENTICATED');
    await as(gwJ, t).release({ uid });
    assert.equal(gwJ.server.table.size, 0);
  } finally {
    await gwJ.close();
  }
});
