// A restarted s2cs takes back the streams its agents still forward (issue 11, item
// 5), with token checking on: same owner (others are refused), the stream keeps
// flowing and can be updated and released by its owner, and a Hello for a stream
// still waiting for it verifies against the secret's hash. A real s2ds agent process
// and a real OpenID Provider; nothing is mocked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { IntrospectionAuth } from '../../src/auth/introspect.js';
import { ControlConnection, RemoteError } from '../../src/protocol/client.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { startProducer, type Producer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { parseAddress, formatAddress } from '../../src/protocol/address.js';
import { GW_CLIENT, SCOPE_A, startIdP, type TestIdP } from '../auth/idp.js';
import { captureLogger } from '../auth/capture.js';
import { startGateway } from '../support/gateway.js';
import { startAgentProcess, type AgentProcess } from '../support/agent.js';

let idp: TestIdP;
let agent: AgentProcess;
let producer: Producer;
const { logger, lines } = captureLogger();
const BYTES = 1024 * 1024;

before(async () => {
  idp = await startIdP();
  agent = await startAgentProcess({ ports: 8 });
  producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: BYTES, seed: 31 });
});
after(async () => {
  await producer?.close();
  await agent?.close();
  await idp?.close();
});

const gatewayOnAgent = () =>
  startGateway({
    auth: new IntrospectionAuth({ introspectionUrl: idp.introspectionUrl, clientId: GW_CLIENT, clientSecret: idp.gwSecret, scope: SCOPE_A, cacheMaxSeconds: 0, logger }),
    agents: [new RemoteAgent({ address: agent.address, logger })],
    helloTimeoutMs: 20_000,
    logger,
  });

test('after a restart: owner, state, flowing bytes, update and release by the owner only, Hello secret checked against its hash', async () => {
  const alice = (await idp.issueToken(SCOPE_A, 'alice')).access_token;
  const bob = (await idp.issueToken(SCOPE_A, 'bob')).access_token;
  const first = await gatewayOnAgent();
  const opened: ControlConnection[] = [];
  const as = (address: string, token?: string) => {
    const c = new ControlConnection(address, { insecure: true, deadlineMs: 10_000, token });
    opened.push(c);
    return c;
  };
  let a1 = as(first.address, alice);
  const ready = randomUUID();
  const waiting = randomUUID();
  let waitingSecret = '';
  try {
    // A ready stream: req, Hello with its secret, UpdateTargets.
    let secret = '';
    const pending = a1.req({ uid: ready, role: 'PROD', num_conn: 1, rate: 0 }, 20_000, (s) => (secret = s));
    for (let i = 0; i < 100 && !secret; i++) await new Promise((r) => setTimeout(r, 20));
    await as(first.address).hello({ uid: ready, role: 'PROD', prod_listeners: producer.addresses.map(formatAddress), app_secret: secret });
    const r = await pending;
    await a1.update({ uid: ready, remote_listeners: r.prod_listeners, role: 'PROD' });
    // A stream still waiting for its producer's Hello when s2cs goes away.
    const orphan = a1.req({ uid: waiting, role: 'PROD', num_conn: 1, rate: 0 }, 20_000, (s) => (waitingSecret = s));
    orphan.catch(() => undefined);
    for (let i = 0; i < 100 && !waitingSecret; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(waitingSecret, 'the waiting stream got its secret');
    for (let i = 0; i < 100 && first.server.table.status(waiting)[0]?.state !== 'awaiting-hello'; i++) await new Promise((r) => setTimeout(r, 20));

    // s2cs goes away without releasing (as after kill -9, or SIGUSR2).
    a1.close();
    first.client.close();
    await first.server.detach();

    const second = await gatewayOnAgent();
    a1 = as(second.address, alice);
    try {
      assert.ok(lines.some((l) => l.includes('stream taken back from the data-server agents')), 'the new s2cs logs what it took back');
      const st = await a1.status({ uid: '' });
      const byUid = new Map(st.streams.map((s) => [s.uid, s]));
      assert.equal(byUid.get(ready)?.state, 'ready');
      assert.equal(byUid.get(ready)?.owner, 'alice');
      assert.deepEqual(byUid.get(ready)?.listeners, r.listeners);
      assert.equal(byUid.get(waiting)?.state, 'awaiting-hello');
      assert.equal((await as(second.address, bob).status({ uid: '' })).streams.length, 0, 'bob sees none of them');

      // The stream forwards as before.
      const got = await consume({ connect: r.listeners.map((l) => parseAddress(l)), bytes: BYTES, seed: 31 });
      assert.equal(got.bytes, BYTES);

      // Only its owner may change it; repeating the connection map changes nothing.
      await assert.rejects(as(second.address, bob).update({ uid: ready, remote_listeners: r.prod_listeners, role: 'PROD' }), (e: unknown) => e instanceof RemoteError && e.status === 'PERMISSION_DENIED');
      await a1.update({ uid: ready, remote_listeners: r.prod_listeners, role: 'PROD' });

      // The Hello secret of the waiting stream verifies against the kept hash; a wrong one does not.
      await assert.rejects(as(second.address).hello({ uid: waiting, role: 'PROD', prod_listeners: ['127.0.0.1:9'], app_secret: `${waitingSecret}x` }), (e: unknown) => e instanceof RemoteError && e.status === 'UNAUTHENTICATED');
      await as(second.address).hello({ uid: waiting, role: 'PROD', prod_listeners: ['127.0.0.1:9'], app_secret: waitingSecret });
      assert.equal((await a1.status({ uid: waiting })).streams[0]?.state, 'awaiting-update');

      await assert.rejects(as(second.address, bob).release({ uid: ready }), (e: unknown) => e instanceof RemoteError && e.status === 'PERMISSION_DENIED');
      await a1.release({ uid: ready });
      await a1.release({ uid: waiting });
      const remote = new RemoteAgent({ address: agent.address });
      try {
        assert.deepEqual(await remote.listStreams(), [], 'the agent holds nothing any more');
      } finally {
        await remote.close();
      }
    } finally {
      a1.close();
      await second.close();
    }
  } finally {
    for (const c of opened) c.close();
  }
});
