// The stream table's records on its data-server agents during a setup: stored off
// the request's path, in order, and carried by the connection map itself, so that
// UpdateTargets costs one call to each agent and a restarted s2cs still finds the
// stream with its targets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamTable } from '../../src/s2cs/streams/index.js';
import { decodeRecord } from '../../src/s2cs/records.js';
import { AgentPool } from '../../src/s2ds/pool.js';
import { unwrapRecord } from '../../src/s2ds/pool-adopt.js';
import { LocalAgent } from '../../src/s2ds/local-agent.js';
import { Refusals } from '../../src/limits/refusals.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange } from '../../src/demo/procs.js';
import type { Address } from '../../src/protocol/address.js';
import type { WanLeg } from '../../src/s2ds/index.js';

/** A real in-process agent that notes the calls that store records. */
class NotingAgent extends LocalAgent {
  readonly calls: string[] = [];
  override async setRecord(uid: string, record: Uint8Array): Promise<void> {
    this.calls.push('SetRecord');
    await super.setRecord(uid, record);
  }
  override async setTargets(uid: string, targets: Address[], wan?: WanLeg, record?: Uint8Array): Promise<void> {
    this.calls.push(record ? 'SetTargets+record' : 'SetTargets');
    await super.setTargets(uid, targets, wan, record);
  }
}

test('the connection map carries the stream\'s record: one call per agent, and the agents hold it with its targets and state', async () => {
  const range = await freePortRange(4);
  const agent = new NotingAgent({ bindHost: '127.0.0.1', portRange: range, bufferSize: 65536, waitLimit: 16, waitTimeoutMs: 5000, logger: silentLogger });
  const pool = new AgentPool([agent], { logger: silentLogger });
  const refusals = new Refusals(silentLogger);
  const table = new StreamTable({
    dataServer: pool,
    helloTimeoutMs: 30_000,
    setupTimeoutMs: 30_000,
    maxPendingHellos: 100,
    maxPendingHellosPerPeer: 10,
    maxWaitingConsHellos: 10,
    maxWaitingConsHellosPerPeer: 10,
    maxHeldListeners: 64,
    maxPortsPerUser: 4,
    portsPerPeer: true,
    refusals,
    dataBindHost: '127.0.0.1',
    logger: silentLogger,
  });
  const owner = { subject: 'alice', username: 'alice' };
  try {
    await table.req({ uid: 'map-1', role: 'CONS', numConn: 1, rate: 0 }, owner);
    // Stored behind the answer: wait until the agent has it.
    await until(() => agent.calls.includes('SetRecord'));
    agent.calls.length = 0;
    const target = { host: '127.0.0.1', port: 9 };
    await table.update({ uid: 'map-1', targets: [target], role: 'CONS', credentials: undefined }, owner);
    assert.deepEqual(agent.calls, ['SetTargets+record'], 'UpdateTargets makes one call, which carries the record');
    const [held] = await agent.listStreams();
    const rec = decodeRecord(unwrapRecord(held!.record)!.record, 'map-1');
    assert.equal(rec.state, 'ready');
    assert.deepEqual(rec.targets, [target]);
    // Repeated with the same map: nothing to apply, nothing sent.
    await table.update({ uid: 'map-1', targets: [target], role: 'CONS', credentials: undefined }, owner);
    assert.deepEqual(agent.calls, ['SetTargets+record']);
  } finally {
    await table.close();
    await pool.close();
    refusals.close();
  }
});

async function until(cond: () => boolean): Promise<void> {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) assert.fail('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
