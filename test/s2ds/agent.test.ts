// A real s2ds agent process over its Unix socket: streams with per-stream credentials
// through it, records, listing after a new client, release, Health counters, hostile
// requests, and a client killed with -9 while the agent forwards.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { RemoteAgent, AgentCallError } from '../../src/s2ds/remote.js';
import { createStreamCredentials } from '../../src/security/stream-credentials.js';
import { startProducer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { watchChild } from '../../src/demo/procs.js';
import { parseAddress } from '../../src/protocol/address.js';
import { startAgentProcess, type AgentProcess } from '../support/agent.js';

const MiB = 1024 * 1024;

function asCredentials(c: { certificate: string; private_key: string; peer_certificate: string }) {
  return { cert: c.certificate, key: c.private_key, peerCert: c.peer_certificate };
}

async function refusedKind(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AgentCallError, String(err));
    return err.kind;
  }
  assert.fail('the call was accepted');
}

describe('s2ds over a Unix socket', () => {
  let agent: AgentProcess;
  let remote: RemoteAgent;
  before(async () => {
    agent = await startAgentProcess({ ports: 12 });
    remote = new RemoteAgent({ address: agent.address, pollIntervalMs: 200 });
    await remote.poll();
  });
  after(async () => {
    await remote.close();
    await agent.close();
  });

  test('the socket is 0600 in a 0700 directory, and the agent answers Health', async () => {
    const path = agent.address.slice('unix:'.length);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(path, '..')).mode & 0o777, 0o700);
    assert.ok(remote.up());
    const h = remote.health()!;
    assert.equal(h.listenerIp, '127.0.0.1');
    assert.equal(h.freePorts, 12);
    assert.ok(h.startedAtMs > 0 && h.startedAtMs <= Date.now());
    assert.match(remote.name, /unix:/);
  });

  test('both gateways of a TLS stream through the agent: verified bytes, records, listing from a new client, release', async () => {
    const creds = await createStreamCredentials('tls-through-agent');
    const bytes = 8 * MiB;
    const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }, { host: '127.0.0.1', port: 0 }], bytes, seed: 11 });
    try {
      // Producer side: its listeners face the WAN (accept), its targets are the producer.
      const prod = await remote.startListeners('p-side', 2, { record: Buffer.from('prod record') });
      await remote.setTargets('p-side', producer.addresses, { side: 'accept', credentials: asCredentials(creds.producerSide) });
      // Consumer side: its targets are the producer side's WAN listeners (connect).
      const cons = await remote.startListeners('c-side', 2);
      await remote.setTargets('c-side', prod, { side: 'connect', credentials: asCredentials(creds.consumerSide) });
      // Repeating SetTargets with the same values changes nothing.
      await remote.setTargets('c-side', prod, { side: 'connect', credentials: asCredentials(creds.consumerSide) });
      await remote.setRecord('c-side', Buffer.from('cons record'));
      const r = await consume({ connect: cons, bytes, seed: 11 });
      assert.equal(r.bytes, 2 * bytes);

      const other = new RemoteAgent({ address: agent.address });
      try {
        const streams = await other.listStreams();
        const p = streams.find((s) => s.uid === 'p-side')!;
        const c = streams.find((s) => s.uid === 'c-side')!;
        assert.equal(Buffer.from(p.record).toString(), 'prod record');
        assert.equal(Buffer.from(c.record).toString(), 'cons record');
        assert.deepEqual(p.listeners, prod.map((a) => `127.0.0.1:${a.port}`));
        assert.deepEqual(c.targets, p.listeners);
        assert.ok(p.encrypted && c.encrypted);
        assert.equal(c.stats.bytesFromTarget, 2 * bytes);
        assert.equal(p.stats.bytesFromTarget, 2 * bytes);
      } finally {
        await other.close();
      }
      await remote.poll();
      assert.equal(remote.stats('c-side')!.bytesFromTarget, 2 * bytes);
      assert.equal(remote.ports().reserved, 4);
      const before = remote.health()!.bytesTotal;
      assert.ok(before >= 4 * bytes, `bytes_total ${before}`);

      await remote.release('p-side');
      await remote.release('c-side');
      await remote.release('c-side'); // unknown uid: nothing to do
      await remote.poll();
      assert.equal(remote.ports().reserved, 0);
      assert.equal(remote.stats('c-side'), undefined);
      // Released streams still count in the total.
      assert.equal(remote.health()!.bytesTotal, before);
      assert.deepEqual(await remote.listStreams(), []);
      // The ports are closed.
      const refused = await new Promise<boolean>((resolve) => {
        const s = connect(cons[0]!.port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), resolve(false)));
        s.once('error', () => resolve(true));
      });
      assert.ok(refused);
    } finally {
      await producer.close();
    }
  });

  test('hostile requests get INVALID_ARGUMENT and the agent keeps serving', async () => {
    assert.equal(await refusedKind(remote.startListeners('bad uid!', 1)), 'INVALID_ARGUMENT');
    assert.equal(await refusedKind(remote.startListeners('x'.repeat(129), 1)), 'INVALID_ARGUMENT');
    assert.equal(await refusedKind(remote.startListeners('huge', 4_000_000_000)), 'INVALID_ARGUMENT');
    assert.equal(await refusedKind(remote.startListeners('zero', 0)), 'INVALID_ARGUMENT');
    assert.equal(await refusedKind(remote.startListeners('big-record', 1, { record: Buffer.alloc(65 * 1024) })), 'INVALID_ARGUMENT');
    await remote.startListeners('h', 1);
    try {
      assert.equal(await refusedKind(remote.setRecord('h', Buffer.alloc(65 * 1024))), 'INVALID_ARGUMENT');
      await remote.setRecord('h', Buffer.alloc(64 * 1024, 1));
      assert.equal(await refusedKind(remote.setTargets('h', [parseAddress('127.0.0.1:1'), parseAddress('127.0.0.1:2')])), 'INVALID_ARGUMENT');
      const creds = await createStreamCredentials('h');
      const wrongKey = { ...asCredentials(creds.producerSide), key: creds.consumerSide.private_key };
      assert.equal(await refusedKind(remote.setTargets('h', [parseAddress('127.0.0.1:1')], { side: 'accept', credentials: wrongKey })), 'INVALID_ARGUMENT');
      assert.equal(await refusedKind(remote.setTargets('h', [parseAddress('127.0.0.1:1')], { side: 'sideways' as 'accept', credentials: asCredentials(creds.producerSide) })), 'INVALID_ARGUMENT');
      assert.equal(await refusedKind(remote.setTargets('nope', [parseAddress('127.0.0.1:1')])), 'NOT_FOUND');
      assert.equal(await refusedKind(remote.startListeners('h', 1)), 'ALREADY_EXISTS');
      assert.equal(await refusedKind(remote.startListeners('too-many', 4096)), 'RESOURCE_EXHAUSTED');
      const err = await remote.startListeners('bad uid!', 1).catch((e: Error) => e);
      assert.match(String((err as Error).message), /^data-server agent .* at unix:.*: uid "bad uid!" is not valid/);

      // Bytes that are no Agent message at all, and an address that is not one.
      const raw = new grpc.Client(agent.address, grpc.credentials.createInsecure());
      for (const method of ['StartListeners', 'SetTargets', 'SetRecord', 'Release']) {
        const code = await new Promise<number>((resolve) =>
          raw.makeUnaryRequest(`/scistream.s2ds.Agent/${method}`, (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x0a]), (e) => resolve(e?.code ?? 0)),
        );
        assert.equal(code, grpc.status.INVALID_ARGUMENT, method);
      }
      raw.close();
      const bad = await new Promise<number>((resolve) => {
        const c = new grpc.Client(agent.address, grpc.credentials.createInsecure());
        // targets: ["not an address"], uid "h" (hand-encoded protobuf)
        const msg = Buffer.concat([Buffer.from([0x0a, 1, 0x68, 0x12, 14]), Buffer.from('not an address')]);
        c.makeUnaryRequest('/scistream.s2ds.Agent/SetTargets', (b: Buffer) => b, (b: Buffer) => b, msg, (e) => (c.close(), resolve(e?.code ?? 0)));
      });
      assert.equal(bad, grpc.status.INVALID_ARGUMENT);
      await remote.poll();
      assert.ok(remote.up());
      assert.ok(agent.proc.running());
    } finally {
      await remote.release('h');
    }
  });

  test("kill -9 of the client side mid-stream: the agent keeps forwarding, a new client lists and releases the stream", async () => {
    const bytes = 48 * MiB;
    const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes, seed: 5 });
    const script = join(agent.dir, 'client.mjs');
    const remoteModule = fileURLToPath(new URL('../../src/s2ds/remote.js', import.meta.url));
    writeFileSync(
      script,
      `import { RemoteAgent } from ${JSON.stringify(remoteModule)};
const a = new RemoteAgent({ address: process.argv[2] });
const [l] = await a.startListeners('survivor', 1);
await a.setTargets('survivor', [{ host: '127.0.0.1', port: Number(process.argv[3]) }]);
console.log('ready ' + l.port);
setInterval(() => {}, 1000);
`,
    );
    const child = watchChild('client', 'client.mjs', spawn(process.execPath, [script, agent.address, String(producer.addresses[0]!.port)], { stdio: ['ignore', 'pipe', 'pipe'] }));
    try {
      const [, port] = await child.waitFor(/ready (\d+)/);
      let killed = false;
      const r = await consume({
        connect: [{ host: '127.0.0.1', port: Number(port) }],
        bytes,
        seed: 5,
        onProgress: (got) => {
          if (!killed && got > 0) {
            killed = true;
            child.child.kill('SIGKILL');
          }
        },
      });
      assert.ok(killed);
      assert.equal(await child.exited, 137);
      assert.equal(r.bytes, bytes);
      const streams = await remote.listStreams();
      assert.equal(streams.find((s) => s.uid === 'survivor')?.stats.bytesFromTarget, bytes);
      await remote.release('survivor');
    } finally {
      await child.stop('SIGKILL', 1000);
      await producer.close();
    }
  });
});

test('SIGTERM releases every stream with a reset (never a clean end) and exits 0', async () => {
  const agent = await startAgentProcess();
  const remote = new RemoteAgent({ address: agent.address });
  const silent = createServer((s) => s.on('error', () => {}));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  try {
    const [l] = await remote.startListeners('stopping', 1);
    await remote.setTargets('stopping', [{ host: '127.0.0.1', port: (silent.address() as { port: number }).port }]);
    const s = connect(l!.port, '127.0.0.1');
    const ended = new Promise<string>((resolve) => {
      s.once('end', () => resolve('clean end'));
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    await new Promise((r) => s.once('connect', r));
    for (let i = 0; i < 100 && (await remote.listStreams())[0]?.stats.activeConnections !== 1; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await agent.proc.stop('SIGTERM', 5000), 0, agent.proc.describe());
    assert.equal(await ended, 'ECONNRESET');
    assert.match(agent.proc.stderr(), /shutting down: releasing every stream/);
  } finally {
    await remote.close();
    silent.close();
    await agent.close();
  }
});

test('SIGHUP and SIGUSR2 (a reload, an s2cs upgrade signalled to the whole unit) neither end the agent nor its streams', async () => {
  const agent = await startAgentProcess();
  const remote = new RemoteAgent({ address: agent.address });
  try {
    await remote.startListeners('hangup', 1);
    let from = agent.proc.stderr().length;
    agent.proc.child.kill('SIGHUP');
    await agent.proc.waitFor(/SIGHUP: s2ds reloads nothing/, { from });
    from = agent.proc.stderr().length;
    agent.proc.child.kill('SIGUSR2');
    await agent.proc.waitFor(/SIGUSR2: ignored by s2ds/, { from });
    assert.ok(agent.proc.running(), agent.proc.describe());
    assert.deepEqual((await remote.listStreams()).map((s) => s.uid), ['hangup']);
  } finally {
    await remote.close();
    await agent.close();
  }
});
