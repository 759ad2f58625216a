// AgentPool over several in-process agents with real listeners and sockets:
// placement, global order, all-or-none, down agents, streams lost with an agent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { LocalAgent, type LocalAgentOptions } from '../../src/s2ds/local-agent.js';
import { AgentPool } from '../../src/s2ds/pool.js';
import { freePortRange } from '../../src/demo/procs.js';
import { formatAddress, type Address } from '../../src/protocol/address.js';
import { captureLogger } from '../auth/capture.js';
import { outcome } from '../support/sockets.js';

async function agent(name: string, ports: number, extra: Partial<LocalAgentOptions> = {}): Promise<LocalAgent> {
  return new LocalAgent({ name, bindHost: '127.0.0.1', portRange: await freePortRange(ports), bufferSize: 256 * 1024, waitLimit: 16, waitTimeoutMs: 10_000, logger: captureLogger().logger, ...extra });
}

/** An agent whose liveness the test sets, as a RemoteAgent's polls would. */
class FlakyAgent extends LocalAgent {
  private isAnswering = true;
  override up(): boolean {
    return this.isAnswering;
  }
  setUp(up: boolean): void {
    this.isAnswering = up;
    this.emit(up ? 'up' : 'down');
  }
  /** The agent's process ended and a new one started: every connection reset, every port free. */
  async restart(): Promise<void> {
    await this.engine.close();
    this.emit('restarted');
  }
  static async make(name: string, ports: number): Promise<FlakyAgent> {
    return new FlakyAgent({ name, bindHost: '127.0.0.1', portRange: await freePortRange(ports), bufferSize: 256 * 1024, waitLimit: 16, waitTimeoutMs: 10_000, logger: captureLogger().logger });
  }
}

/** An agent whose StartListeners fails after the others succeeded (an agent that stops answering mid-way). */
class FailingAgent extends LocalAgent {
  override async startListeners(): Promise<Address[]> {
    await new Promise((r) => setTimeout(r, 50));
    throw new Error('connection to the agent was lost');
  }
}

/** A target that says who it is (one byte), then echoes. */
async function taggedEcho(tag: number): Promise<{ server: Server; address: Address }> {
  const server = createServer((s) => {
    s.on('error', () => {});
    s.write(Buffer.from([tag]));
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, address: { host: '127.0.0.1', port: (server.address() as { port: number }).port } };
}

/** Connects, sends `payload`, reads tag + echo; returns the tag and whether the echo matched. */
function roundTrip(at: Address, payload: Buffer): Promise<{ tag: number; ok: boolean }> {
  return new Promise((resolve, reject) => {
    const s = connect(at.port, at.host);
    const chunks: Buffer[] = [];
    let got = 0;
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      if (got >= payload.length + 1) {
        const all = Buffer.concat(chunks);
        s.destroy();
        resolve({ tag: all[0]!, ok: all.subarray(1).equals(payload) });
      }
    });
    s.once('error', reject);
    s.write(payload);
  });
}

function held(pool: AgentPool, uid: string): Map<string, number[]> {
  return new Map(pool.sharesOf(uid)!.map((s) => [s.agent.name, s.indices]));
}

test('listeners are spread by free ports: the agent with more room takes more, and a stream that does not fit takes nothing', async () => {
  const small = await agent('small', 2);
  const big = await agent('big', 6);
  const pool = new AgentPool([small, big], { logger: captureLogger().logger });
  try {
    const listeners = await pool.startListeners('s1', 6);
    assert.equal(listeners.length, 6);
    const shares = held(pool, 's1');
    assert.equal(shares.get('small')!.length, 2);
    assert.equal(shares.get('big')!.length, 4);
    assert.deepEqual(pool.ports(), { reserved: 6, free: 2 });
    // Each listener is advertised by its own agent and really listens.
    assert.equal(new Set(listeners.map(formatAddress)).size, 6);
    await assert.rejects(pool.startListeners('s2', 3), (e: Error & { kind?: string }) => /not enough free ports for 3 connection\(s\) of stream s2/.test(e.message) && /small: 0, big: 2/.test(e.message));
    assert.equal(pool.ports().reserved, 6, 'the refused stream reserved nothing');
    await pool.release('s1');
    assert.deepEqual(pool.ports(), { reserved: 0, free: 8 });
  } finally {
    await pool.close();
  }
});

test('listeners go to the agent with less load (open connections)', async () => {
  const a = await agent('a', 8);
  const b = await agent('b', 8);
  const pool = new AgentPool([a, b], { logger: captureLogger().logger });
  const echo = await taggedEcho(1);
  const open: Socket[] = [];
  try {
    // Equal agents: the first stream's one listener goes to the first agent.
    const [busy] = await pool.startListeners('busy', 1);
    assert.deepEqual(held(pool, 'busy'), new Map([['a', [0]]]));
    await pool.setTargets('busy', [echo.address]);
    for (let i = 0; i < 4; i++) {
      const s = connect(busy!.port, busy!.host);
      s.on('error', () => {});
      open.push(s);
    }
    for (let i = 0; i < 200 && a.health().activeConnections < 4; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(a.health().activeConnections, 4);
    await pool.startListeners('next', 4);
    assert.deepEqual(held(pool, 'next'), new Map([['b', [0, 1, 2, 3]]]), 'agent a carries 4 connections: all 4 listeners go to b');
    await pool.startListeners('after', 4);
    // b now holds 4 listeners of 'next' without connections; load is connections, then the listeners given in this stream.
    assert.equal(held(pool, 'after').get('b')!.length + (held(pool, 'after').get('a')?.length ?? 0), 4);
    const summary = pool.agents();
    assert.deepEqual(summary.map((x) => [x.name, x.up, x.streams, x.listenerIp]), [['a', true, summary[0]!.streams, '127.0.0.1'], ['b', true, summary[1]!.streams, '127.0.0.1']]);
  } finally {
    for (const s of open) s.destroy();
    await pool.close();
    echo.server.close();
  }
});

test('global order: listener i on any agent goes to targets[i % n], each agent gets its own share in its own order', async () => {
  const agents = [await agent('a', 3), await agent('b', 3), await agent('c', 3)];
  const pool = new AgentPool(agents, { logger: captureLogger().logger });
  const targets = [await taggedEcho(0), await taggedEcho(1), await taggedEcho(2), await taggedEcho(3)];
  try {
    const listeners = await pool.startListeners('order', 7);
    const shares = pool.sharesOf('order')!;
    assert.ok(shares.length >= 2, 'the stream is spread over several agents');
    assert.equal(shares.reduce((n, s) => n + s.indices.length, 0), 7);
    await pool.setTargets('order', targets.map((t) => t.address));
    for (let g = 0; g < 7; g++) {
      const payload = randomBytes(64 * 1024 + g);
      const r = await roundTrip(listeners[g]!, payload);
      assert.equal(r.tag, g % 4, `listener ${g} reaches target ${g % 4}`);
      assert.ok(r.ok, `listener ${g}: every byte came back`);
    }
    // Each agent forwarded its own connections only.
    for (const s of shares) assert.equal(s.agent.stats('order')!.acceptedConnections, s.indices.length);
    assert.equal(pool.stats('order')!.acceptedConnections, 7);
    assert.equal(pool.stats('order')!.listeners, 7);
  } finally {
    await pool.close();
    for (const t of targets) t.server.close();
  }
});

test('all or none: when one agent fails its share, the others release theirs', async () => {
  const good = await agent('good', 4);
  const bad = new FailingAgent({ name: 'bad', bindHost: '127.0.0.1', portRange: await freePortRange(4), bufferSize: 65536, waitLimit: 4, waitTimeoutMs: 1000, logger: captureLogger().logger });
  const pool = new AgentPool([good, bad], { logger: captureLogger().logger });
  try {
    await assert.rejects(pool.startListeners('half', 4), /agent bad .*could not open listeners for stream half: connection to the agent was lost/);
    assert.equal(good.ports().reserved, 0, 'the share on the good agent was released');
    assert.equal(pool.stats('half'), undefined);
    // And the uid can be used again.
    await assert.rejects(pool.startListeners('half', 4), /could not open listeners/);
  } finally {
    await pool.close();
  }
});

test('a down agent gets no new streams, is logged once, and is taken back when it answers', async () => {
  const { logger, lines } = captureLogger();
  const a = await agent('a', 4);
  const b = await FlakyAgent.make('b', 4);
  const pool = new AgentPool([a, b], { logger });
  try {
    b.setUp(false);
    b.setUp(false);
    assert.equal(lines.filter((l) => /agent b .*does not answer: marked down/.test(l)).length, 1);
    assert.equal(pool.agents()[1]!.up, false);
    await pool.startListeners('while-down', 4);
    assert.deepEqual(held(pool, 'while-down'), new Map([['a', [0, 1, 2, 3]]]));
    assert.deepEqual(pool.ports(), { reserved: 4, free: 0 }, 'the down agent\'s ports are not offered');
    await assert.rejects(pool.startListeners('no-room', 1), /not enough free ports/);
    b.setUp(true);
    assert.equal(lines.filter((l) => /agent b .*answers: taking it back/.test(l)).length, 1);
    await pool.startListeners('back', 2);
    assert.deepEqual(held(pool, 'back'), new Map([['b', [0, 1]]]));
    // No agent up at all: a clear UNAVAILABLE.
    const lonely = new AgentPool([b], { logger });
    b.setUp(false);
    await assert.rejects(lonely.startListeners('x', 1), /no data-server agent answers \(b at in-process\)/);
  } finally {
    await pool.close();
  }
});

test('an agent that restarts: its streams are reported lost, their other shares reset and released', async () => {
  const a = await agent('a', 4);
  const b = await FlakyAgent.make('b', 4);
  const pool = new AgentPool([a, b], { logger: captureLogger().logger });
  const echo = await taggedEcho(7);
  const lost: { uids: string[]; why: string }[] = [];
  pool.onStreamsLost((uids, why) => lost.push({ uids, why }));
  try {
    const listeners = await pool.startListeners('spread', 2);
    await pool.startListeners('only-a', 1);
    assert.deepEqual(held(pool, 'spread'), new Map([['a', [0]], ['b', [1]]]));
    await pool.setTargets('spread', [echo.address]);
    const onA = connect(listeners[0]!.port, listeners[0]!.host);
    const onB = connect(listeners[1]!.port, listeners[1]!.host);
    const ends = [outcome(onA), outcome(onB)];
    onA.write('x');
    onB.write('y');
    for (let i = 0; i < 200 && pool.stats('spread')!.activeConnections < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await b.restart();
    const [endA, endB] = await Promise.all(ends);
    assert.notEqual(endA!.end, 'end', 'the connection on the surviving agent is reset, not ended cleanly');
    assert.notEqual(endB!.end, 'end', 'the connection on the restarted agent is reset');
    assert.deepEqual(lost.map((l) => l.uids), [['spread']]);
    assert.match(lost[0]!.why, /agent b .*restarted/);
    assert.equal(pool.stats('spread'), undefined);
    for (let i = 0; i < 100 && a.ports().reserved > 1; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(a.ports().reserved, 1, "only 'only-a' still holds a port on a");
    assert.ok(pool.stats('only-a'));
  } finally {
    await pool.close();
    echo.server.close();
  }
});

test('adopt: a new pool over the same agents takes the streams back in global order, with the record', async () => {
  const agents = [await agent('a', 4), await agent('b', 4)];
  const first = new AgentPool(agents, { logger: captureLogger().logger });
  const echo = await taggedEcho(5);
  try {
    const listeners = await first.startListeners('kept', 5);
    await first.setTargets('kept', [echo.address]);
    await first.setRecord('kept', new TextEncoder().encode('owner=alice'));
    const sharesBefore = first.sharesOf('kept')!.map((s) => [s.agent.name, s.indices]);
    // s2cs restarts: a new pool, same agents.
    const second = new AgentPool(agents, { logger: captureLogger().logger });
    const result = await second.adoptAll();
    assert.deepEqual(result.unanswered, []);
    assert.equal(result.streams.length, 1);
    const s = result.streams[0]!;
    assert.equal(s.uid, 'kept');
    assert.ok(s.complete);
    assert.deepEqual(s.listeners.map(formatAddress), listeners.map(formatAddress));
    assert.deepEqual(s.targets.map(formatAddress), new Array(5).fill(formatAddress(echo.address)));
    assert.equal(new TextDecoder().decode(s.record), 'owner=alice');
    assert.deepEqual(s.shares.map((x) => [x.agent, x.indices]), sharesBefore);
    // The new pool drives the stream: a connection still streams, release frees both agents.
    const r = await roundTrip(s.listeners[3]!, randomBytes(1000));
    assert.ok(r.ok && r.tag === 5);
    await second.release('kept');
    assert.equal(agents[0]!.ports().reserved + agents[1]!.ports().reserved, 0);
  } finally {
    await first.close();
    echo.server.close();
  }
});

test('a release that comes while a stream is being reserved waits for it and frees its listeners', async () => {
  const a = await agent('a', 4);
  const pool = new AgentPool([a], { logger: captureLogger().logger });
  try {
    // Released in the same turn as the request: before any agent call has answered.
    const starting = pool.startListeners('raced', 2);
    const releasing = pool.release('raced');
    await Promise.allSettled([starting, releasing]);
    assert.equal(a.ports().reserved, 0, 'no listener left behind');
    assert.equal(pool.stats('raced'), undefined);
    // The uid is free again.
    assert.equal((await pool.startListeners('raced', 1)).length, 1);
    await pool.release('raced');
  } finally {
    await pool.close();
  }
});
