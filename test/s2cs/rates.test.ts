// Rates in status over a real s2ds agent process: a stream taken back after an
// s2cs restart shows no rate until two samples exist (its counters are not a
// burst), and an agent carrying one stream shows that stream's rate.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ControlConnection } from '../../src/protocol/client.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { startProducer, type Producer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { parseAddress, formatAddress } from '../../src/protocol/address.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { startAgentProcess, type AgentProcess } from '../support/agent.js';

const BYTES = 32 * 1024 * 1024;
let agent: AgentProcess;
let producer: Producer;

before(async () => {
  agent = await startAgentProcess({ ports: 8 });
  producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: BYTES, seed: 41 });
});
after(async () => {
  await producer?.close();
  await agent?.close();
});

const gatewayOnAgent = () => startGateway({ agents: [new RemoteAgent({ address: agent.address })] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A PROD stream of one connection to the producer; every byte of it consumed through the gateway. */
async function streamThrough(gw: TestGateway, uid: string): Promise<string[]> {
  await gw.client.hello({ uid, role: 'PROD', prod_listeners: producer.addresses.map(formatAddress) });
  const r = await gw.client.req({ uid, role: 'PROD', num_conn: 1, rate: 0 });
  await gw.client.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
  const got = await consume({ connect: r.listeners.map((l) => parseAddress(l)), bytes: BYTES, seed: 41 });
  assert.equal(got.bytes, BYTES);
  return r.listeners;
}

test('a stream taken back after an s2cs restart shows rate 0 until two samples exist, never its counters as a burst', async () => {
  const uid = randomUUID();
  const first = await gatewayOnAgent();
  let second: TestGateway | undefined;
  try {
    await streamThrough(first, uid);
    const secret = first.client.controlSecret(uid);
    // s2cs goes away without releasing (as after kill -9 or SIGUSR2); the agent keeps the stream and its counters.
    first.client.close();
    await first.server.detach();
    second = await gatewayOnAgent();
    const c = new ControlConnection(second.address, { insecure: true, deadlineMs: 10_000 });
    c.rememberControlSecret(uid, secret);
    try {
      // The idle stream, read every 100 ms for 3.5 s (past its first samples): never a rate.
      let sawCounters = false;
      for (let i = 0; i < 35; i++) {
        const st = await c.status({ uid: '' });
        const s = st.streams.find((x) => x.uid === uid);
        assert.ok(s, `the stream was taken back: ${JSON.stringify(st.streams.map((x) => x.uid))}`);
        if (Number(s.bytes_to_target) + Number(s.bytes_from_target) >= BYTES) sawCounters = true;
        assert.equal(s.to_target_bps, '0', `read ${i}: an idle adopted stream shows no rate toward its target`);
        assert.equal(s.from_target_bps, '0', `read ${i}: an idle adopted stream shows no rate from its target`);
        for (const a of st.agents) assert.equal(a.bytes_per_second, '0', `read ${i}: agent ${a.name} shows no rate`);
        await sleep(100);
      }
      assert.ok(sawCounters, 'status shows the counters the agent kept (what the burst was made of)');
      await c.release({ uid });
    } finally {
      c.close();
    }
  } finally {
    first.client.close();
    await second?.close();
    await first.server.close().catch(() => undefined);
  }
});

test("with one stream on one agent, the agent's rate is the stream's (both ways together)", async () => {
  const uid = randomUUID();
  const gw = await gatewayOnAgent();
  try {
    await streamThrough(gw, uid);
    // Within the 10 s window after the bytes moved: both rates are non-zero and come from the same samples.
    let compared = 0;
    for (let i = 0; i < 40 && compared < 5; i++) {
      const st = await gw.client.status({ uid: '' });
      const s = st.streams.find((x) => x.uid === uid);
      assert.ok(s);
      assert.equal(st.agents.length, 1);
      const streamBps = Number(s.to_target_bps) + Number(s.from_target_bps);
      const agentBps = Number(st.agents[0]!.bytes_per_second);
      if (streamBps > 0) {
        assert.ok(Math.abs(agentBps - streamBps) <= 2, `agent ${agentBps} B/s vs its only stream ${streamBps} B/s`);
        compared++;
      } else {
        assert.equal(agentBps, 0, 'no agent rate while its only stream shows none');
      }
      await sleep(250);
    }
    assert.equal(compared, 5, 'the rates were compared while the stream showed one');
    await gw.client.release({ uid });
  } finally {
    await gw.close();
  }
});
