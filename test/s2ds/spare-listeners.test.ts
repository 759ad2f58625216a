// Spare listeners never look like broken streams (issue 19 point 6). A real s2cs
// process with a worker process that keeps spares: a connection to a port of the
// range no stream holds is refused (ECONNREFUSED: the kernel answers the SYN with a
// reset, nothing is accepted), spares included; a stream that takes a spare serves
// on it; after the release the port is refused again; and many request/release
// cycles leave the worker's and s2cs's descriptor counts where they were. Without
// the native addon an agent holds no spares (it cannot hold a port without
// listening), says so once, and requests are served by binding as before.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { connect, createServer } from 'node:net';
import { ControlConnection } from '../../src/protocol/client.js';
import { startProducer } from '../../src/app/produce.js';
import { reservePortNative } from '../../src/transport/socket-options.js';
import { fdCount, settleFds, startS2cs } from '../support/hostile.js';
import { alive } from '../support/process.js';
import { tempDir } from '../support/agent.js';
import { AgentPool } from '../../src/s2ds/pool.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange, watchChild } from '../../src/demo/procs.js';
import { echoServer } from '../support/sockets.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const PORTS = 6;
const CYCLES = 40;

/** What a client gets on connecting: 'connected' (closed again at once), or the error code. */
function dial(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** Whether some socket holds the port: another program's listen there fails with EADDRINUSE. */
function held(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(true));
    server.listen({ host: '127.0.0.1', port }, () => server.close(() => resolve(false)));
  });
}

/** The first bytes a connection to the port receives (the producer's, through the stream). */
function firstBytes(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('data', (d: Buffer) => {
      s.destroy();
      resolve(d.length);
    });
    s.on('error', reject);
  });
}

async function until<T>(what: string, get: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function children(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

test('s2cs with a worker keeping spares: a port no stream holds is refused, a stream serves on its spare, release refuses it again, descriptors stay put', { skip: !reservePortNative() && 'native addon not built here' }, async (t) => {
  const s2cs = await startS2cs({ ports: PORTS, helloTimeoutS: 10, extra: ['--workers', '1'] });
  const client = new ControlConnection(s2cs.address, { insecure: true, deadlineMs: 10_000 });
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 4096, seed: 3 });
  const range = Array.from({ length: PORTS }, (_, i) => s2cs.portRange.first + i);
  let worker: number | undefined;
  try {
    worker = await until('the worker process', async () => children(s2cs.pid)[0]);
    // Two spares (the default with workers): two ports of the range held, by sockets that do not listen.
    const spares = await until('two spares held', async () => {
      const h = [];
      for (const p of range) if (await held(p)) h.push(p);
      return h.length === 2 ? h : undefined;
    });
    for (const p of range) assert.equal(await dial(p), 'ECONNREFUSED', `port ${p}${spares.includes(p) ? ' (a spare)' : ''}: refused, never accepted then reset`);
    // Spares belong to no stream: status counts them free.
    const st = await until('status to see the spares', async () => {
      const s = await client.status({ uid: '' });
      return s.free_ports === PORTS ? s : undefined;
    });
    assert.equal(st.reserved_ports, 0);

    const cycle = async (first: boolean): Promise<void> => {
      const uid = randomUUID();
      await client.hello({ uid, role: 'PROD', prod_listeners: producer.addresses.map((a) => `${a.host}:${a.port}`) });
      const r = await client.req({ uid, role: 'PROD', num_conn: 2, rate: 0 });
      const ports = r.listeners.map((l) => Number(l.split(':').pop()));
      if (first) assert.deepEqual([...ports].sort(), [...spares].sort(), 'the stream took the spares');
      await client.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
      for (const p of ports) assert.ok((await firstBytes(p)) > 0, `port ${p} serves the stream`);
      await client.release({ uid });
      for (const p of ports) assert.equal(await dial(p), 'ECONNREFUSED', `port ${p}: refused once the release answered`);
    };
    await cycle(true);
    await cycle(false);
    // The refill after each release is done once two spares are held again.
    const settled = async () => until('two spares held again', async () => {
      let n = 0;
      for (const p of range) if (await held(p)) n++;
      return n === 2 ? n : undefined;
    });
    await settled();
    const workerBefore = await settleFds(worker, 0, 500);
    const s2csBefore = fdCount(s2cs.pid);
    for (let i = 0; i < CYCLES; i++) await cycle(false);
    await settled();
    const workerAfter = await settleFds(worker, workerBefore, 5000);
    const s2csAfter = await settleFds(s2cs.pid, s2csBefore, 5000);
    t.diagnostic(`descriptors before/after ${CYCLES} cycles: worker ${workerBefore}/${workerAfter}, s2cs ${s2csBefore}/${s2csAfter}`);
    assert.ok(workerAfter <= workerBefore, `worker descriptors: ${workerBefore} before ${CYCLES} cycles, ${workerAfter} after`);
    assert.ok(s2csAfter <= s2csBefore, `s2cs descriptors: ${s2csBefore} before ${CYCLES} cycles, ${s2csAfter} after`);
    for (const p of range) assert.equal(await dial(p), 'ECONNREFUSED', `port ${p}: refused after the cycles`);
    const end = await until('status to settle', async () => {
      const s = await client.status({ uid: '' });
      return s.free_ports === PORTS && s.reserved_ports === 0 ? s : undefined;
    });
    assert.equal(end.streams.length, 0);
  } finally {
    client.close();
    await producer.close();
    await s2cs.stop();
    if (worker !== undefined) {
      const w = worker;
      await until('the worker to end with s2cs', async () => (alive(w) ? undefined : true), 10_000).catch(() => process.kill(-w, 'SIGKILL'));
    }
  }
});

test('without the native addon an agent holds no spares, says so once, and requests bind their listeners: still refused until then', async () => {
  // A copy of the built programs without native/build: the addon does not load there.
  const dir = tempDir('nospares-');
  const app = join(dir, 'app');
  mkdirSync(join(app, 'dist'), { recursive: true });
  cpSync(join(ROOT, 'dist', 'src'), join(app, 'dist', 'src'), { recursive: true });
  for (const d of ['bin', 'proto']) cpSync(join(ROOT, d), join(app, d), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(app, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(app, 'node_modules'));
  const range = await freePortRange(4);
  const address = `unix:${join(dir, 'state', 'agent.sock')}`;
  const child = spawn(process.execPath, [join(app, 'bin', 's2ds.js'), 'start', '--listen', address, '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--state-dir', join(dir, 'state')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SCISTREAM_HOME: join(dir, 'home') },
  });
  const agent = watchChild('s2ds start', 's2ds start (no addon)', child);
  const echo = await echoServer();
  let pool: AgentPool | undefined;
  try {
    await agent.waitFor(/s2ds ready/, { timeoutMs: 20_000 });
    const log = agent.stdout() + agent.stderr();
    assert.match(log, /spare listeners are off: holding a port without listening on it needs the native addon/);
    assert.equal(log.split('spare listeners are off').length - 1, 1, 'said once');
    const remote = new RemoteAgent({ address, pollIntervalMs: 200 });
    pool = new AgentPool([remote], { logger: silentLogger, spares: 2 });
    await until('the agent polled', async () => (remote.health() ? true : undefined));
    // Asked once, refused with FAILED_PRECONDITION: no spares, and nothing of the range held.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(pool.sparesOn(remote).length, 0);
    for (let p = range.first; p <= range.last; p++) {
      assert.equal(await held(p), false, `port ${p} is not held`);
      assert.equal(await dial(p), 'ECONNREFUSED', `port ${p} is refused`);
    }
    const [listener] = await pool.startListeners('nospare', 1);
    await pool.setTargets('nospare', [echo.address]);
    assert.equal(await dial(listener!.port), 'connected', 'the stream listens on its port');
    await pool.release('nospare');
    assert.equal(await dial(listener!.port), 'ECONNREFUSED', 'refused once the release answered');
    assert.equal(pool.sparesOn(remote).length, 0, 'and no spares afterwards either');
  } finally {
    await pool?.close();
    echo.server.close();
    await agent.stop('SIGTERM', 5000);
    rmSync(dir, { recursive: true, force: true });
  }
});
