// Spare listeners (AgentPool with `spares`): a request answered from listeners an
// agent opened ahead, against real agent processes over Unix sockets. What must
// hold: connections on a spare are refused (never accepted), the stream forwards once its targets
// come, ports count spares as free, spares never make a request fail that fits,
// they vanish with their agent without a stream reported lost, and whatever an
// s2cs left behind is closed by the next one or by a graceful stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { AgentPool } from '../../src/s2ds/pool.js';
import { unwrapRecord } from '../../src/s2ds/pool-adopt.js';
import { RemoteAgent, AgentCallError } from '../../src/s2ds/remote.js';
import { formatAddress } from '../../src/protocol/address.js';
import { silentLogger } from '../../src/log.js';
import { startAgentProcess, tempDir } from '../support/agent.js';
import { echoServer, exchange } from '../support/sockets.js';

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a request is answered from spares: a connection on a spare is refused, the stream forwards with its record, ports count spares as free, close releases them', async () => {
  const agent = await startAgentProcess({ ports: 8 });
  const remote = new RemoteAgent({ address: agent.address, pollIntervalMs: 200 });
  const pool = new AgentPool([remote], { logger: silentLogger, spares: 2 });
  const echo = await echoServer();
  const lost: string[] = [];
  pool.onStreamsLost((uids) => lost.push(...uids));
  try {
    await until('two spares', () => pool.sparesOn(remote).length === 2);
    const spares = pool.sparesOn(remote).map(formatAddress);
    await until('the poll to see them', () => remote.health()?.sparePorts === 2);
    // Spares belong to no stream: free for any request.
    assert.deepEqual(pool.ports(), { reserved: 0, free: 8 });
    const onSpare = await exchange(pool.sparesOn(remote)[0]!, 'hello');
    assert.equal(onSpare.data, '', 'nothing is forwarded from a spare');
    assert.equal(onSpare.error, 'ECONNREFUSED', 'a connection on a spare is refused, never accepted then reset');

    const listeners = await pool.startListeners('s1', 1);
    assert.ok(spares.includes(formatAddress(listeners[0]!)), `${formatAddress(listeners[0]!)} is one of the spares ${spares.join(', ')}`);
    // Stored right after the answer, as s2cs does: it goes with the assignment.
    await pool.setRecord('s1', new TextEncoder().encode('early'));
    assert.equal(new TextDecoder().decode(unwrapRecord((await remote.listStreams())[0]!.record)!.record), 'early');
    assert.equal(pool.stats('s1')?.listeners, 1, 'counted once the assignment is sent, before the agent answers');
    await pool.setTargets('s1', [echo.address], undefined, new TextEncoder().encode('the record'));
    assert.deepEqual(await exchange(listeners[0]!, 'through the stream'), { data: 'through the stream' });
    const [listed] = await remote.listStreams();
    assert.equal(listed?.uid, 's1');
    assert.equal(new TextDecoder().decode(unwrapRecord(listed!.record)!.record), 'the record', 'SetTargets stored the record');

    await until('the spare taken to be replaced', () => pool.sparesOn(remote).length === 2);
    await pool.release('s1');
    await pool.close();
    const probe = new RemoteAgent({ address: agent.address });
    try {
      const h = await probe.listStreams().then(async () => {
        await probe.poll();
        return probe.health()!;
      });
      assert.equal(h.sparePorts, 0, 'a graceful stop closes its spares');
      assert.equal(h.reservedPorts, 0);
    } finally {
      await probe.close();
    }
    assert.deepEqual(lost, []);
  } finally {
    await pool.close();
    echo.server.close();
    await agent.close();
  }
});

test('spares that vanished from their agent: the request taking them fails (never answered with dead listeners) and is reported lost', async () => {
  const agent = await startAgentProcess({ ports: 8 });
  const remote = new RemoteAgent({ address: agent.address, pollIntervalMs: 200 });
  const pool = new AgentPool([remote], { logger: silentLogger, spares: 2 });
  const lost: { uids: string[]; why: string }[] = [];
  pool.onStreamsLost((uids, why) => lost.push({ uids, why }));
  try {
    await until('two spares', () => pool.sparesOn(remote).length === 2);
    // Behind the pool's back (as if the agent lost them): the pool still lists them.
    await remote.releaseSpares(pool.owner, false);
    // The answer waits for the agent to listen on them, so the loss is the request's error.
    const err = await pool.startListeners('gone', 1).catch((e: unknown) => e);
    assert.ok(err instanceof Error && /lost its listeners/.test(err.message), String(err));
    assert.deepEqual(lost.map((l) => l.uids), [['gone']]);
    assert.match(lost[0]!.why, /could not be given to it/);
    assert.equal(pool.stats('gone'), undefined);
    assert.deepEqual(await remote.listStreams(), []);
  } finally {
    await pool.close();
    await agent.close();
  }
});

test('spares never make a request fail that fits: a stream asking for every port gets them', async () => {
  const agent = await startAgentProcess({ ports: 4 });
  const remote = new RemoteAgent({ address: agent.address, pollIntervalMs: 200 });
  const pool = new AgentPool([remote], { logger: silentLogger, spares: 2 });
  try {
    await until('two spares', () => pool.sparesOn(remote).length === 2);
    const listeners = await pool.startListeners('all', 4);
    assert.equal(new Set(listeners.map(formatAddress)).size, 4);
    assert.equal(pool.sparesOn(remote).length, 0);
    await pool.release('all');
  } finally {
    await pool.close();
    await agent.close();
  }
});

test('a flood of requests: as many streams as ports, the rest refused, and never more spares than asked for', async () => {
  const agent = await startAgentProcess({ ports: 8 });
  const remote = new RemoteAgent({ address: agent.address, pollIntervalMs: 200 });
  const pool = new AgentPool([remote], { logger: silentLogger, spares: 2 });
  try {
    await until('two spares', () => pool.sparesOn(remote).length === 2);
    const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => pool.startListeners(`flood-${i}`, 1)));
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    assert.equal(ok, 8, 'every port went to a stream: the spares were used or given back');
    for (const r of results) {
      if (r.status === 'rejected') assert.equal((r.reason as { kind?: string }).kind, 'RESOURCE_EXHAUSTED', String(r.reason));
    }
    await new Promise((r) => setTimeout(r, 300));
    await remote.poll();
    assert.ok((remote.health()?.sparePorts ?? 0) <= 2);
    await Promise.all(results.map((_, i) => pool.release(`flood-${i}`)));
    await remote.poll();
    assert.equal(remote.health()!.reservedPorts - (remote.health()!.sparePorts ?? 0), 0, 'every stream port is back');
    assert.ok((remote.health()!.sparePorts ?? 0) <= 2);
  } finally {
    await pool.close();
    await agent.close();
  }
});

test('spares vanish with their agent without a stream reported lost; a new s2cs closes the spares an old one left', async () => {
  const dir = tempDir('scistream-spares-');
  let agent = await startAgentProcess({ dir, ports: 8 });
  const old = new RemoteAgent({ address: agent.address, pollIntervalMs: 200 });
  const oldPool = new AgentPool([old], { logger: silentLogger, spares: 2 });
  const remote = new RemoteAgent({ address: agent.address, pollIntervalMs: 200 });
  let pool: AgentPool | undefined;
  const lost: string[] = [];
  try {
    await until('the old pool\'s spares', () => oldPool.sparesOn(old).length === 2);
    const left = [...oldPool.sparesOn(old)];
    // The old s2cs dies (no graceful stop): its spares stay on the agent until the next one starts.
    await old.close();
    pool = new AgentPool([remote], { logger: silentLogger, spares: 1 });
    pool.onStreamsLost((uids) => lost.push(...uids));
    await until('one spare', () => pool!.sparesOn(remote).length === 1);
    await until('the old spares closed', () => {
      void remote.poll();
      return remote.health()?.sparePorts === 1;
    });
    const mine = formatAddress(pool.sparesOn(remote)[0]!);
    for (const a of left.filter((l) => formatAddress(l) !== mine)) {
      assert.equal((await exchange(a, 'x')).error, 'ECONNREFUSED', `${formatAddress(a)} was closed`);
    }
    // An assignment of spares this owner does not hold is refused.
    const err = await remote.assignSpares('x', oldPool.owner, left, new Uint8Array()).catch((e: unknown) => e);
    assert.ok(err instanceof AgentCallError && err.kind === 'NOT_FOUND', String(err));
    // Owners and counts are checked.
    const bad = await remote.reserveSpares('no spaces allowed', 1).catch((e: unknown) => e);
    assert.ok(bad instanceof AgentCallError && bad.kind === 'INVALID_ARGUMENT', String(bad));
    const many = await remote.reserveSpares('someone', 17).catch((e: unknown) => e);
    assert.ok(many instanceof AgentCallError && many.kind === 'INVALID_ARGUMENT', String(many));

    const startedAt = remote.health()!.startedAtMs;
    agent.proc.child.kill('SIGKILL');
    await agent.proc.exited;
    agent = await startAgentProcess({ dir, ports: 8 });
    // Requests go only to an agent that answered its last poll: wait for the new one's.
    await until('the spare replaced after the restart', () => {
      const now = pool!.sparesOn(remote);
      return remote.answering() && remote.health()?.startedAtMs !== startedAt && now.length === 1 && remote.health()?.sparePorts === 1;
    });
    assert.deepEqual(lost, [], 'spares belong to no stream: nothing is reported lost');
    const listeners = await pool.startListeners('after', 1);
    assert.equal(listeners.length, 1);
    await pool.release('after');
  } finally {
    await pool?.close();
    await oldPool.close();
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
