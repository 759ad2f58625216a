// Issue 18, point 5, on loopback: with --auth none each stream is bound to its
// requester. Our library gets a control secret on req and presents it by itself; a
// wrong or missing secret is PERMISSION_DENIED; a reference-style client (no secret)
// is bound to its address; status shows others' streams without their addresses; the
// binding survives an s2cs restart that adopts the streams. 127.0.0.2 is a second
// caller address on this machine (a real TCP relay whose connections leave from it).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ControlConnection, RemoteError, type StatusResponse } from '../../src/protocol/client.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { peerAddress } from '../../src/s2cs/streams/binding.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { relayFrom } from '../support/sockets.js';
import { startAgentProcess, type AgentProcess } from '../support/agent.js';
import { captureLogger } from '../auth/capture.js';

const TARGET = '127.0.0.1:9';

function denied(why: RegExp): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof RemoteError, String(e));
    assert.equal(e.status, 'PERMISSION_DENIED', e.message);
    assert.match(e.details, why);
    return true;
  };
}

function row(st: StatusResponse, uid: string) {
  const r = st.streams.find((s) => s.uid === uid);
  assert.ok(r, `status lists ${uid}: ${JSON.stringify(st.streams.map((s) => s.uid))}`);
  return r;
}

test('peerAddress: exact addresses, IPv4-mapped as IPv4, one spelling per IPv6 address, never a prefix', () => {
  assert.equal(peerAddress('127.0.0.2:40000'), '127.0.0.2');
  assert.equal(peerAddress('[::ffff:10.1.2.3]:5'), '10.1.2.3');
  assert.equal(peerAddress('[2001:db8::1]:5'), peerAddress('[2001:0db8:0:0:0:0:0:1]:7'));
  assert.notEqual(peerAddress('[2001:db8::1]:5'), peerAddress('[2001:db8::2]:5'), 'two hosts of one /64 are two callers');
  assert.equal(peerAddress('[fe80::1%eth0]:5'), peerAddress('[fe80::1]:6'));
});

describe('with --auth none, a stream is bound to its requester', () => {
  let gw: TestGateway;
  let relay: Awaited<ReturnType<typeof relayFrom>>;
  const opened: ControlConnection[] = [];
  /** A client at this gateway, from 127.0.0.1 (`from: 'other'`: from 127.0.0.2). */
  const client = (from: 'here' | 'other', opts: { bindBySecret?: boolean } = {}) => {
    const c = new ControlConnection(from === 'here' ? gw.address : relay.address, { insecure: true, deadlineMs: 10_000, ...opts });
    opened.push(c);
    return c;
  };

  before(async () => {
    gw = await startGateway({}, 16);
    relay = await relayFrom('127.0.0.2', gw.address);
  });
  after(async () => {
    for (const c of opened) c.close();
    await relay.close();
    await gw.close();
  });

  test('retry-safe: the secret is the one the client proposed and holds before any answer; a retry with it is the requester\'s from any address, one with another secret from elsewhere is refused', async () => {
    const uid = randomUUID();
    const owner = client('here');
    // A reference-style req first would bind by address; here our library proposes its secret with the req.
    const r = await owner.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    const held = owner.controlSecret(uid);
    assert.match(held, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(r.control_secret, held, 'the gateway bound the stream to the proposed secret');
    // The answer lost, the client retries from another address (another route, NAT rebinding): the secret proves it.
    const moved = client('other');
    moved.rememberControlSecret(uid, held);
    assert.deepEqual((await moved.req({ uid, role: 'CONS', num_conn: 1, rate: 0 })).listeners, r.listeners);
    // Someone else retrying it from elsewhere proposes a secret of their own: refused.
    const stranger = client('other');
    await assert.rejects(stranger.req({ uid, role: 'CONS', num_conn: 1, rate: 0 }), denied(/was requested from another address/));
    assert.equal(stranger.controlSecret(uid), '', 'a secret proposed with a refused req is not kept');
    await moved.release({ uid });
  });

  test('our library: the secret comes once, is presented by itself, and works from any address; no or a wrong secret is refused', async () => {
    const owner = client('here');
    const uid = randomUUID();
    const r = await owner.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    assert.match(r.control_secret, /^[A-Za-z0-9_-]{43}$/, 'a random secret of 32 bytes, base64url');
    assert.equal(owner.controlSecret(uid), r.control_secret);
    // A repeated req from the same address is answered, without the secret.
    assert.equal((await owner.req({ uid, role: 'CONS', num_conn: 1, rate: 0 })).control_secret, '');
    // From another address, the repeat (which would name the listeners) is refused.
    await assert.rejects(client('other').req({ uid, role: 'CONS', num_conn: 1, rate: 0 }), denied(/was requested from another address/));

    const attacker = client('other');
    await assert.rejects(attacker.update({ uid, remote_listeners: ['127.0.0.1:10'], role: 'CONS' }), denied(/is bound to the control secret its request was answered with .* carries none/));
    await assert.rejects(attacker.update({ uid, remote_listeners: ['127.0.0.1:10'], role: 'CONS', control_secret: 'x'.repeat(43) }), denied(/the control secret given does not match stream/));
    await assert.rejects(attacker.release({ uid }), denied(/carries none/));
    // The requester's own address proves nothing for a stream bound to a secret (another user of its host).
    await assert.rejects(client('here').update({ uid, remote_listeners: ['127.0.0.1:10'], role: 'CONS' }), denied(/carries none/));
    assert.equal(gw.server.table.status(uid)[0]?.targets.length, 0, 'nothing refused changed the stream');

    await owner.update({ uid, remote_listeners: [TARGET], role: 'CONS' });
    // The secret, given explicitly, works from anywhere (a workflow engine on another host).
    const elsewhere = client('other');
    await elsewhere.update({ uid, remote_listeners: [TARGET], role: 'CONS', control_secret: r.control_secret });
    elsewhere.rememberControlSecret(uid, r.control_secret);
    await elsewhere.release({ uid });
    assert.equal(gw.server.table.status(uid).length, 0);
    await owner.release({ uid }); // released already: still OK
  });

  test('a reference-style client (no secret) is bound to the address its req came from', async () => {
    const ref = client('other', { bindBySecret: false });
    const uid = randomUUID();
    const r = await ref.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    assert.ok(r.control_secret, 'issued all the same');
    assert.equal(ref.controlSecret(uid), '', 'a reference-style client keeps none');
    const here = client('here', { bindBySecret: false });
    await assert.rejects(here.update({ uid, remote_listeners: ['127.0.0.1:10'], role: 'CONS' }), denied(/was requested from another address, and this gateway checks no tokens \(--auth none\)/));
    await assert.rejects(here.release({ uid }), denied(/only the address that requested it may release it/));
    await assert.rejects(here.req({ uid, role: 'CONS', num_conn: 1, rate: 0 }), denied(/requested from another address/));
    await ref.update({ uid, remote_listeners: [TARGET], role: 'CONS' });
    assert.deepEqual(gw.server.table.status(uid)[0]?.targets, [TARGET]);
    // A stale secret (another stream's of the same uid) does not lock the requester out; elsewhere it is refused.
    await ref.update({ uid, remote_listeners: [TARGET], role: 'CONS', control_secret: 'y'.repeat(43) });
    await assert.rejects(here.update({ uid, remote_listeners: [TARGET], role: 'CONS', control_secret: 'y'.repeat(43) }), denied(/does not match/));
    // The secret it was issued also proves it, from anywhere.
    await here.update({ uid, remote_listeners: [TARGET], role: 'CONS', control_secret: r.control_secret });
    await ref.release({ uid });
    assert.equal(gw.server.table.status(uid).length, 0);
  });

  test("status: every stream is listed, another's without listeners and targets; one's own in full, by secret or by address", async () => {
    const owner = client('here');
    const ref = client('other', { bindBySecret: false });
    const bySecret = randomUUID();
    const byAddress = randomUUID();
    await owner.req({ uid: bySecret, role: 'CONS', num_conn: 1, rate: 0 });
    await owner.update({ uid: bySecret, remote_listeners: [TARGET], role: 'CONS' });
    await ref.req({ uid: byAddress, role: 'CONS', num_conn: 1, rate: 0 });
    await ref.update({ uid: byAddress, remote_listeners: [TARGET], role: 'CONS' });
    try {
      const hidden = (s: ReturnType<typeof row>) => assert.deepEqual([s.listeners, s.prod_listeners, s.targets, s.redacted], [[], [], [], true], JSON.stringify(s));
      const shown = (s: ReturnType<typeof row>) => {
        assert.equal(s.redacted, false);
        assert.deepEqual(s.targets, [TARGET]);
        assert.equal(s.listeners.length, 1);
      };
      // A stranger on the owner's host: its address proves nothing for the secret-bound stream.
      const stranger = await client('here', { bindBySecret: false }).status({ uid: '' });
      hidden(row(stranger, bySecret));
      hidden(row(stranger, byAddress));
      assert.equal(row(stranger, bySecret).state, 'ready', 'the rest is shown');
      // The owner presents its secrets by itself.
      const mine = await owner.status({ uid: '' });
      shown(row(mine, bySecret));
      hidden(row(mine, byAddress));
      // One stream: with its secret given explicitly, from anywhere.
      const secret = owner.controlSecret(bySecret);
      shown(row(await client('other').status({ uid: bySecret, control_secrets: [secret] }), bySecret));
      // The reference-style client, from its address.
      const theirs = await client('other', { bindBySecret: false }).status({ uid: '' });
      shown(row(theirs, byAddress));
      hidden(row(theirs, bySecret));
      // Too many secrets in one status request: refused, not searched.
      await assert.rejects(client('here').status({ uid: '', control_secrets: Array.from({ length: 1025 }, () => 'x') }), (e: unknown) => e instanceof RemoteError && e.status === 'INVALID_ARGUMENT');
    } finally {
      await owner.release({ uid: bySecret });
      await ref.release({ uid: byAddress });
    }
  });
});

describe('the binding survives an s2cs restart that adopts the streams', () => {
  let agent: AgentProcess;
  before(async () => {
    agent = await startAgentProcess({ ports: 8 });
  });
  after(async () => {
    await agent?.close();
  });

  test('after the restart: the secret still opens its stream, the address still binds the reference-style one, others are refused', async () => {
    const { logger } = captureLogger();
    const onAgent = () => startGateway({ agents: [new RemoteAgent({ address: agent.address, logger })], logger });
    const first = await onAgent();
    let relay = await relayFrom('127.0.0.2', first.address);
    const opened: ControlConnection[] = [];
    const at = (address: string, opts: { bindBySecret?: boolean } = {}) => {
      const c = new ControlConnection(address, { insecure: true, deadlineMs: 10_000, ...opts });
      opened.push(c);
      return c;
    };
    const bySecret = randomUUID();
    const byAddress = randomUUID();
    let second: TestGateway | undefined;
    try {
      const owner = at(first.address);
      const secret = (await owner.req({ uid: bySecret, role: 'CONS', num_conn: 1, rate: 0 })).control_secret;
      await owner.update({ uid: bySecret, remote_listeners: [TARGET], role: 'CONS' });
      const ref = at(relay.address, { bindBySecret: false });
      await ref.req({ uid: byAddress, role: 'CONS', num_conn: 1, rate: 0 });
      await ref.update({ uid: byAddress, remote_listeners: [TARGET], role: 'CONS' });
      // s2cs goes away without releasing (kill -9, SIGUSR2); the next one adopts the streams.
      first.client.close();
      await first.server.detach();
      await relay.close();
      second = await onAgent();
      relay = await relayFrom('127.0.0.2', second.address);
      assert.deepEqual(second.server.table.status().map((s) => s.uid).sort(), [bySecret, byAddress].sort(), 'both taken back');

      await assert.rejects(at(second.address).update({ uid: bySecret, remote_listeners: ['127.0.0.1:10'], role: 'CONS' }), denied(/carries none/));
      await assert.rejects(at(second.address).release({ uid: bySecret, control_secret: `${secret.slice(1)}A` }), denied(/does not match/));
      await assert.rejects(at(second.address, { bindBySecret: false }).release({ uid: byAddress }), denied(/requested from another address/));
      const again = at(second.address);
      again.rememberControlSecret(bySecret, secret);
      await again.update({ uid: bySecret, remote_listeners: [TARGET], role: 'CONS' });
      await again.release({ uid: bySecret });
      await at(relay.address, { bindBySecret: false }).release({ uid: byAddress });
      assert.equal(second.server.table.size, 0);
    } finally {
      for (const c of opened) c.close();
      await relay.close();
      await second?.close();
      await first.close().catch(() => undefined);
    }
  });
});
