// Allow-lists on data listeners (Request.allow_from, s2cs --data-allow-from): a
// source on the list is forwarded, any other is reset at once (never served, never
// a clean empty stream) and counted as refusal kind allow-list. Two source addresses
// on loopback (127.0.0.1, 127.0.0.2) stand for two hosts. Real sockets, real gRPC,
// and a real worker process for the agent case.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { RemoteError } from '../../src/protocol/client.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { captureLogger } from '../auth/capture.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { echoServer, exchange } from '../support/sockets.js';
import { tempDir } from '../support/agent.js';
import { until } from '../support/until.js';

function refusals(st: { refusals: { kind: string; count: string | number }[] }, kind: string): number {
  return Number(st.refusals.find((r) => r.kind === kind)?.count ?? 0);
}

/** An inbound-like stream: CONS with the echo server as target. */
async function streamTo(gw: TestGateway, target: string, fields: { allow_from?: string[]; num_conn?: number } = {}): Promise<{ uid: string; listeners: string[] }> {
  const uid = randomUUID();
  const r = await gw.client.req({ uid, role: 'CONS', num_conn: fields.num_conn ?? 1, rate: 0, ...(fields.allow_from ? { allow_from: fields.allow_from } : {}) });
  await gw.client.update({ uid, role: 'CONS', remote_listeners: [target] });
  return { uid, listeners: r.listeners };
}

function rejectsWith(p: Promise<unknown>, status: string, details: RegExp): Promise<void> {
  return assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof RemoteError, String(err));
    assert.equal(err.status, status, err.details);
    assert.match(err.details, details);
    return true;
  });
}

test('a stream allow-list: the allowed source is forwarded, another is reset at once and counted', async () => {
  const echo = await echoServer();
  const { logger, lines } = captureLogger();
  const gw = await startGateway({ logger });
  try {
    const { uid, listeners } = await streamTo(gw, `127.0.0.1:${echo.address.port}`, { allow_from: ['127.0.0.1'] });
    const st = await gw.client.status({ uid });
    assert.deepEqual(st.streams[0]!.allow_from, ['127.0.0.1/32'], 'status shows the list in force, canonical');

    assert.deepEqual(await exchange(listeners[0]!, 'hello', '127.0.0.1'), { data: 'hello' });
    const refused = await exchange(listeners[0]!, 'hello', '127.0.0.2');
    assert.equal(refused.data, '', 'nothing reached or came back from the target');
    assert.equal(refused.error, 'ECONNRESET', 'refused with a reset, never a clean end');

    const after = await gw.client.status({ uid });
    assert.equal(refusals(after, 'allow-list'), 1);
    assert.equal(Number(after.streams[0]!.refused_connections), 1);
    const line = lines.find((l) => l.includes('"refusal":"allow-list"'));
    assert.ok(line, 'the refusal is logged');
    assert.match(line, /refused a connection from 127\.0\.0\.2 to listener port \d+ of stream .*not in the stream's allow-list \(127\.0\.0\.1\/32\)/);
    assert.match(line, /"cause":"refused:allow-list"/);
    // A second refusal within the interval is counted, not logged again.
    await exchange(listeners[0]!, 'again', '127.0.0.2');
    assert.equal(refusals(await gw.client.status({ uid }), 'allow-list'), 2);
    assert.equal(lines.filter((l) => l.includes('"refusal":"allow-list"')).length, 1, 'rate-limited');
    assert.deepEqual(await exchange(listeners[0]!, 'still', '127.0.0.1'), { data: 'still' });
  } finally {
    await gw.close();
    echo.server.close();
  }
});

test('allow_from is checked as hostile input, and is part of what a retry must repeat', async () => {
  const gw = await startGateway();
  try {
    const req = (allow_from: string[], uid = randomUUID()) => gw.client.req({ uid, role: 'CONS', num_conn: 1, rate: 0, allow_from });
    await rejectsWith(req(['bogus']), 'INVALID_ARGUMENT', /allow_from\[0\]: "bogus" is not a valid CIDR block/);
    await rejectsWith(req(['127.0.0.1/8']), 'INVALID_ARGUMENT', /allow_from\[0\].*host bits set below \/8: write 127\.0\.0\.0\/8/);
    await rejectsWith(req(['10.0.0.0/33']), 'INVALID_ARGUMENT', /allow_from\[0\].*prefix length must be 0 to 32/);
    await rejectsWith(req(['2001:db8::/129']), 'INVALID_ARGUMENT', /prefix length must be 0 to 128/);
    await rejectsWith(req(Array.from({ length: 65 }, (_, i) => `10.0.${i}.0/24`)), 'INVALID_ARGUMENT', /allow_from has 65 entries; at most 64/);
    await rejectsWith(req(['x'.repeat(10_000)]), 'INVALID_ARGUMENT', /allow_from\[0\].*too long/);
    assert.equal(gw.server.dataServer.ports().reserved, 0, 'nothing reserved by the refused reqs');

    const uid = randomUUID();
    const first = await req(['2001:DB8:0:0::/32', '192.0.2.0/24'], uid);
    // The same blocks in another order and spelling: the same stream.
    const again = await req(['192.0.2.0/24', '2001:db8::/32'], uid);
    assert.deepEqual(again.listeners, first.listeners);
    await rejectsWith(req(['192.0.2.0/24'], uid), 'ALREADY_EXISTS', /allow_from=192\.0\.2\.0\/24,2001:db8::\/32.*a retry must repeat the same fields/);
    const st = await gw.client.status({ uid });
    assert.deepEqual(st.streams[0]!.allow_from, ['192.0.2.0/24', '2001:db8::/32']);
    await gw.client.release({ uid });
  } finally {
    await gw.close();
  }
});

test('--data-allow-from bounds every stream: a wider list is narrowed, a disjoint one refused, none takes the bound', async () => {
  const echo = await echoServer();
  const gw = await startGateway({ dataAllowFrom: ['127.0.0.2/32'] });
  try {
    const target = `127.0.0.1:${echo.address.port}`;
    // Asks for all of loopback: gets what the gateway admits of it.
    const wide = await streamTo(gw, target, { allow_from: ['127.0.0.0/8'] });
    assert.deepEqual((await gw.client.status({ uid: wide.uid })).streams[0]!.allow_from, ['127.0.0.2/32']);
    assert.deepEqual(await exchange(wide.listeners[0]!, 'in', '127.0.0.2'), { data: 'in' });
    assert.equal((await exchange(wide.listeners[0]!, 'out', '127.0.0.1')).error, 'ECONNRESET');

    // Asks for nothing: the gateway's bound alone.
    const open = await streamTo(gw, target);
    assert.deepEqual((await gw.client.status({ uid: open.uid })).streams[0]!.allow_from, ['127.0.0.2/32']);
    assert.equal((await exchange(open.listeners[0]!, 'out', '127.0.0.1')).error, 'ECONNRESET');
    assert.deepEqual(await exchange(open.listeners[0]!, 'in', '127.0.0.2'), { data: 'in' });

    // Only sources outside the bound: refused before anything is reserved.
    await rejectsWith(gw.client.req({ uid: randomUUID(), role: 'CONS', num_conn: 1, rate: 0, allow_from: ['10.0.0.0/8'] }), 'INVALID_ARGUMENT', /wholly outside .*--data-allow-from 127\.0\.0\.2\/32/);
    assert.equal(refusals(await gw.client.status({ uid: '' }), 'allow-list'), 2);

    // A reload lifts the bound for streams requested after it; the others keep theirs.
    gw.server.reconfigure({ dataAllowFrom: [] });
    const later = await streamTo(gw, target);
    assert.deepEqual((await gw.client.status({ uid: later.uid })).streams[0]!.allow_from, []);
    assert.deepEqual(await exchange(later.listeners[0]!, 'any', '127.0.0.1'), { data: 'any' });
    assert.equal((await exchange(open.listeners[0]!, 'out', '127.0.0.1')).error, 'ECONNRESET');
  } finally {
    await gw.close();
    echo.server.close();
  }
});

test('a worker process enforces the allow-list too; its refusals reach status', async () => {
  const dir = tempDir('scistream-allow-list-');
  const echo = await echoServer();
  const gw = await startGateway({
    workers: { count: 1, dir: join(dir, 'agents') },
    connectAgent: (address, name) => new RemoteAgent({ address, name, pollIntervalMs: 250 }),
  });
  try {
    const { uid, listeners } = await streamTo(gw, `127.0.0.1:${echo.address.port}`, { allow_from: ['127.0.0.2/32'], num_conn: 2 });
    for (const l of listeners) {
      assert.deepEqual(await exchange(l, 'ok', '127.0.0.2'), { data: 'ok' });
      assert.equal((await exchange(l, 'no', '127.0.0.1')).error, 'ECONNRESET');
    }
    await until('the worker reports its refusals', 10_000, async () => (refusals(await gw.client.status({ uid }), 'allow-list') === 2 ? true : undefined));
  } finally {
    await gw.close();
    echo.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
