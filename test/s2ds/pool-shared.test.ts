// AgentPool with listeners shared by the local workers (shareListeners), over two
// in-process agents with real sockets: a stream with fewer listeners than workers is
// opened by one and joined by the other, its connections spread over both, its
// counters summed and its listeners counted once; as many listeners as workers, or a
// cap, keep the spread one listener per worker; a worker that cannot join leaves
// nothing behind; a release closes the port on both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { LocalAgent } from '../../src/s2ds/local-agent.js';
import { AgentPool } from '../../src/s2ds/pool.js';
import { freePortRange } from '../../src/demo/procs.js';
import { captureLogger } from '../auth/capture.js';
import { startProducer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { reusePortNative } from '../../src/transport/socket-options.js';
import type { Address } from '../../src/protocol/address.js';

const skip = reusePortNative() ? false : 'the native addon with SO_REUSEPORT is not built';

async function agent(name: string, ports: number): Promise<LocalAgent> {
  return new LocalAgent({ name, bindHost: '127.0.0.1', portRange: await freePortRange(ports), bufferSize: 256 * 1024, waitLimit: 16, waitTimeoutMs: 10_000, logger: captureLogger().logger });
}

/** An agent whose joins fail as an agent's that stopped answering would. */
class NoJoinAgent extends LocalAgent {
  override async startListeners(uid: string, count: number, opts?: Parameters<LocalAgent['startListeners']>[2]): Promise<Address[]> {
    if (opts?.join) throw new Error('connection to the agent was lost');
    return super.startListeners(uid, count, opts);
  }
}

/** An agent whose joins answer only when the test says so. */
class SlowJoinAgent extends LocalAgent {
  readonly calls: string[] = [];
  private open!: () => void;
  readonly held = new Promise<void>((resolve) => (this.open = resolve));
  go(): void {
    this.open();
  }
  override async startListeners(uid: string, count: number, opts?: Parameters<LocalAgent['startListeners']>[2]): Promise<Address[]> {
    if (opts?.join) {
      this.calls.push('join');
      await this.held;
    }
    return super.startListeners(uid, count, opts);
  }
  override async setTargets(...args: Parameters<LocalAgent['setTargets']>): Promise<void> {
    this.calls.push('setTargets');
    return super.setTargets(...args);
  }
  override async setRecord(...args: Parameters<LocalAgent['setRecord']>): Promise<void> {
    this.calls.push('setRecord');
    return super.setRecord(...args);
  }
}

/** An agent whose process the test restarts, as the supervisor would after a crash. */
class RestartableAgent extends LocalAgent {
  async restart(): Promise<void> {
    await this.engine.close();
    this.emit('restarted');
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

test('one listener over two workers: one owns, the other joins; connections on both; counters summed; release closes it on both', { skip }, async (t) => {
  const a = await agent('worker-0', 4);
  const b = await agent('worker-1', 4);
  const pool = new AgentPool([a, b], { logger: captureLogger().logger });
  pool.shareListeners([a, b]);
  const bytes = 64 * 1024;
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes, seed: 9 });
  t.after(async () => {
    await pool.close();
    await producer.close();
  });
  const [listener] = await pool.startListeners('one', 1);
  // The other worker joins after the answer; the targets go to it once it has.
  await pool.setTargets('one', producer.addresses);
  await pool.joined('one');
  const shares = pool.sharesOf('one')!;
  assert.deepEqual(shares.map((s) => [s.indices, s.joined === true]).sort(), [[[0], false], [[0], true]], 'an owner and a joiner, both with listener 0');
  const got = await consume({ connect: Array.from({ length: 24 }, () => listener!), bytes, seed: 9 });
  assert.equal(got.bytes, 24 * bytes);
  const each = [a, b].map((x) => x.engine.stats('one')!.acceptedConnections);
  t.diagnostic(`accepted by worker-0 / worker-1: ${each.join(' / ')}`);
  assert.ok(each.every((n) => n > 0), `both workers took connections: ${each.join(' / ')}`);
  const sum = pool.stats('one')!;
  assert.equal(sum.listeners, 1, 'the shared listener counted once');
  assert.equal(sum.acceptedConnections, 24, 'connections summed over the workers');
  assert.equal(sum.bytesFromTarget, 24 * bytes);

  await pool.release('one');
  assert.deepEqual([a.engine.uids(), b.engine.uids()], [[], []], 'released on both');
  assert.equal(await bindable(listener!.port), true, 'the port is free');
  assert.equal(pool.ports().reserved, 0);
});

test('a slow joiner holds up nothing: the owner is told and answers; the joiner is told the same, in order, once it has joined', { skip }, async (t) => {
  const a = await agent('worker-0', 4);
  // Fewer free ports: worker-0 owns, worker-1 joins.
  const b = new SlowJoinAgent({ name: 'worker-1', bindHost: '127.0.0.1', portRange: await freePortRange(2), bufferSize: 256 * 1024, waitLimit: 16, waitTimeoutMs: 10_000, logger: captureLogger().logger });
  const pool = new AgentPool([a, b], { logger: captureLogger().logger });
  pool.shareListeners([a, b]);
  const bytes = 32 * 1024;
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes, seed: 5 });
  t.after(async () => {
    b.go();
    await pool.close();
    await producer.close();
  });
  const [listener] = await pool.startListeners('slow', 1);
  await pool.setTargets('slow', producer.addresses);
  await pool.setRecord('slow', new Uint8Array([7]));
  assert.deepEqual(b.calls, ['join'], 'answered while the join was still under way; nothing else sent to the joiner yet');
  assert.deepEqual(pool.sharesOf('slow')!.map((s) => s.agent.name), ['worker-0']);
  // Meanwhile the owner carries the stream.
  assert.equal((await consume({ connect: [listener!], bytes, seed: 5 })).bytes, bytes);
  b.go();
  await pool.joined('slow');
  assert.deepEqual(b.calls, ['join', 'setTargets', 'setRecord'], 'the joiner told what the owner was, in order');
  assert.deepEqual(pool.sharesOf('slow')!.map((s) => [s.agent.name, s.joined === true]), [['worker-0', false], ['worker-1', true]]);
  assert.deepEqual(b.engine.targetsOf('slow')!.targets, producer.addresses);
  const got = await consume({ connect: Array.from({ length: 16 }, () => listener!), bytes, seed: 5 });
  assert.equal(got.bytes, 16 * bytes);
  assert.ok(b.engine.stats('slow')!.acceptedConnections > 0, 'the joiner takes connections with the targets it was given');
  await pool.release('slow');
  assert.deepEqual([a.engine.uids(), b.engine.uids()], [[], []], 'released on both');
});

test('as many listeners as workers, or a cap: one listener per worker, none joined', { skip }, async (t) => {
  const a = await agent('worker-0', 4);
  const b = await agent('worker-1', 4);
  const pool = new AgentPool([a, b], { logger: captureLogger().logger });
  pool.shareListeners([a, b]);
  t.after(() => pool.close());
  await pool.startListeners('two', 2);
  assert.deepEqual(pool.sharesOf('two')!.map((s) => [s.indices.length, s.joined === true]), [[1, false], [1, false]]);
  await pool.startListeners('capped', 1, { capBps: 1_000_000 });
  assert.deepEqual(pool.sharesOf('capped')!.map((s) => [s.indices.length, s.joined === true]), [[1, false]], 'a capped stream stays on one worker');
  assert.equal([a, b].reduce((n, x) => n + (x.engine.capOf('capped') ?? 0), 0), 1_000_000, 'its whole cap there');
  await pool.startListeners('udp', 1, { protocol: 'udp' });
  assert.equal(pool.sharesOf('udp')!.length, 1, 'a UDP stream stays on one worker');
});

test('a worker that cannot join is left out: the stream runs on the owner alone, released there', { skip }, async (t) => {
  const a = await agent('worker-0', 4);
  // Fewer free ports: worker-0 owns.
  const b = new NoJoinAgent({ name: 'worker-1', bindHost: '127.0.0.1', portRange: await freePortRange(2), bufferSize: 256 * 1024, waitLimit: 16, waitTimeoutMs: 10_000, logger: captureLogger().logger });
  const { logger, lines } = captureLogger();
  const pool = new AgentPool([a, b], { logger });
  pool.shareListeners([a, b]);
  t.after(() => pool.close());
  const [listener] = await pool.startListeners('x', 1);
  // The joins run after the answer, in the background.
  await pool.setRecord('x', new Uint8Array([1]));
  await pool.joined('x');
  assert.deepEqual(pool.sharesOf('x')!.map((s) => s.agent.name), ['worker-0'], 'the owner alone');
  assert.ok(lines.some((l) => /data-server worker worker-1 could not join the listeners of stream x \(connection to the agent was lost\); the other workers carry its connections/.test(l)), lines.join('\n'));
  assert.deepEqual(b.engine.uids(), [], 'nothing on the worker that could not join');
  await pool.release('x');
  assert.deepEqual(a.engine.uids(), []);
  assert.equal(await bindable(listener!.port), true, 'the port is free');
});

test('a worker that restarts: a stream whose listener it shared goes on in the other; one with a listener of its own ends', { skip }, async (t) => {
  const a = await agent('worker-0', 4);
  const b = new RestartableAgent({ name: 'worker-1', bindHost: '127.0.0.1', portRange: await freePortRange(4), bufferSize: 256 * 1024, waitLimit: 16, waitTimeoutMs: 10_000, logger: captureLogger().logger });
  const { logger, lines } = captureLogger();
  const pool = new AgentPool([a, b], { logger });
  pool.shareListeners([a, b]);
  const lost: string[] = [];
  pool.onStreamsLost((uids) => lost.push(...uids));
  t.after(() => pool.close());
  const [shared] = await pool.startListeners('shared', 1);
  await pool.setRecord('shared', new Uint8Array([1]));
  await pool.joined('shared');
  await pool.startListeners('spread', 2);
  assert.equal(pool.sharesOf('shared')!.length, 2);
  await b.restart();
  assert.deepEqual(lost, ['spread'], 'the stream with a listener of its own on worker-1 ended');
  assert.deepEqual(pool.sharesOf('shared')!.map((s) => s.agent.name), ['worker-0'], 'the shared one goes on in worker-0');
  assert.ok(lines.some((l) => /restarted: the connections it carried were reset; 1 stream\(s\) whose listeners it shared go on in the other workers: shared/.test(l)), lines.join('\n'));
  assert.deepEqual(a.engine.uids(), ['shared'], "spread's part on worker-0 released");
  await pool.release('shared');
  assert.equal(await bindable(shared!.port), true);
});

test('the owning worker restarts: the joiner goes on taking the connections; its release frees the port', { skip }, async (t) => {
  // More free ports: worker-1 owns.
  const a = await agent('worker-0', 2);
  const b = new RestartableAgent({ name: 'worker-1', bindHost: '127.0.0.1', portRange: await freePortRange(4), bufferSize: 256 * 1024, waitLimit: 16, waitTimeoutMs: 10_000, logger: captureLogger().logger });
  const pool = new AgentPool([a, b], { logger: captureLogger().logger });
  pool.shareListeners([a, b]);
  const lost: string[] = [];
  pool.onStreamsLost((uids) => lost.push(...uids));
  const bytes = 16 * 1024;
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes, seed: 3 });
  t.after(async () => {
    await pool.close();
    await producer.close();
  });
  const [listener] = await pool.startListeners('s', 1);
  await pool.setTargets('s', producer.addresses);
  await pool.joined('s');
  assert.deepEqual(pool.sharesOf('s')!.map((s) => [s.agent.name, s.joined === true]), [['worker-1', false], ['worker-0', true]]);
  await b.restart();
  assert.deepEqual(lost, []);
  const got = await consume({ connect: Array.from({ length: 8 }, () => listener!), bytes, seed: 3 });
  assert.equal(got.bytes, 8 * bytes, 'every connection served by the joiner alone');
  assert.equal(a.engine.stats('s')!.acceptedConnections >= 8, true);
  await pool.release('s');
  assert.equal(await bindable(listener!.port), true, 'released by the joiner: the port is free');
});
