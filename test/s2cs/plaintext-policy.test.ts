// When s2cs accepts plain-TCP data legs (UpdateTargets without per-stream
// credentials): on a loopback bind address by default, elsewhere only with
// --allow-plaintext-data. Real gateways over real gRPC; the non-loopback cases
// bind their data listeners to 0.0.0.0 (present everywhere) and, where the host
// has one, to a non-loopback address of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { RemoteError } from '../../src/protocol/client.js';
import { isLoopback, plaintextDataPolicy } from '../../src/s2cs/streams/index.js';
import { captureLogger } from '../auth/capture.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

test('isLoopback: 127.0.0.0/8, ::1 in any spelling, mapped 127.x, localhost; nothing else', () => {
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST']) assert.ok(isLoopback(h), h);
  for (const h of ['0.0.0.0', '::', '10.1.2.3', '128.0.0.1', '::2', '::ffff:10.0.0.1', 'example.org', '', '127.0.0.1.example.org']) assert.ok(!isLoopback(h), h);
});

test('plaintextDataPolicy: loopback accepts, other addresses only with the flag', () => {
  assert.equal(plaintextDataPolicy('127.0.0.1', false).accepts, true);
  assert.equal(plaintextDataPolicy('::1', false).accepts, true);
  assert.equal(plaintextDataPolicy('0.0.0.0', false).accepts, false);
  assert.equal(plaintextDataPolicy('10.1.2.3', false).accepts, false);
  assert.equal(plaintextDataPolicy(undefined, false).accepts, false);
  assert.equal(plaintextDataPolicy('10.1.2.3', true).accepts, true);
  assert.match(plaintextDataPolicy('10.1.2.3', false).why, /10\.1\.2\.3, not loopback.*--allow-plaintext-data/);
});

/** A credential-less req + update on `gw`; resolves the update's outcome. */
async function plainUpdate(gw: TestGateway): Promise<unknown> {
  const uid = randomUUID();
  await gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
  try {
    return await gw.client.update({ uid, role: 'CONS', remote_listeners: ['127.0.0.1:9'] });
  } finally {
    await gw.client.release({ uid });
  }
}

function refusedPlain(address: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof RemoteError, String(err));
    assert.equal(err.status, 'FAILED_PRECONDITION', err.details);
    assert.ok(err.details.includes(`data listeners are on ${address}, not loopback`), err.details);
    assert.match(err.details, /start s2cs with --allow-plaintext-data/);
    assert.match(err.details, /`s2uc request` between two SciStream-TS gateways/);
    assert.doesNotMatch(err.details, /use an s2uc that sends/);
    return true;
  };
}

test('data listeners on loopback: a credential-less UpdateTargets is accepted without the flag, capabilities says so, the policy is logged once', async () => {
  const { logger, lines } = captureLogger();
  const gw = await startGateway({ allowPlaintextData: false, logger });
  try {
    assert.equal((await gw.client.capabilities()).plaintext_data, true);
    await plainUpdate(gw);
    const policy = lines.filter((l) => l.includes('plain-TCP data legs'));
    assert.equal(policy.length, 1, 'one policy line');
    assert.match(policy[0]!, /loopback \(127\.0\.0\.1\)/);
    // The warning for the plain stream itself is kept.
    assert.ok(lines.some((l) => l.includes('without credentials') && l.includes('data listeners on loopback')));
  } finally {
    await gw.close();
  }
});

const otherAddresses = [
  '0.0.0.0',
  ...Object.values(networkInterfaces())
    .flat()
    .filter((i) => i && i.family === 'IPv4' && !i.internal)
    .map((i) => i!.address)
    .slice(0, 1),
];

for (const bindIp of otherAddresses) {
  test(`data listeners on ${bindIp}: refused without the flag (naming address and flag), accepted with it; capabilities follows`, async () => {
    const strict = await startGateway({ allowPlaintextData: false, bindIp });
    const open = await startGateway({ allowPlaintextData: true, bindIp });
    try {
      assert.equal((await strict.client.capabilities()).plaintext_data, false);
      await assert.rejects(plainUpdate(strict), refusedPlain(bindIp));
      assert.equal(strict.server.dataServer.ports().reserved, 0, 'the refused stream was released');
      assert.equal((await open.client.capabilities()).plaintext_data, true);
      await plainUpdate(open);
    } finally {
      await Promise.all([strict.close(), open.close()]);
    }
  });
}
