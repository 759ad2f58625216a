// The supervisor's process management with real child processes (a stand-in agent script):
// own process groups, restart after kill -9, adoption by a new supervisor, stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, createServer } from 'node:net';
import { startControlServer } from '../../src/s2cs/server.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { Supervisor, splitPortRange } from '../../src/s2cs/supervisor.js';
import { captureLogger } from '../auth/capture.js';
import { freePortRange, spawnCli } from '../../src/demo/procs.js';
import { ControlConnection } from '../../src/protocol/client.js';
import { startProducer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { parseAddress } from '../../src/protocol/address.js';
import { lingerAvailable } from '../../src/transport/linger.js';
import { outcome } from '../support/sockets.js';
import { alive } from '../support/process.js';

const STAND_IN = fileURLToPath(new URL('../support/stand-in-agent.js', import.meta.url));


function pgid(pid: number): number {
  return Number(execFileSync('ps', ['-o', 'pgid=', '-p', String(pid)], { encoding: 'utf8' }).trim());
}

/** Processes whose command line holds `text`. */
function pgrep(text: string): string {
  try {
    return execFileSync('pgrep', ['-f', text], { encoding: 'utf8' }).trim();
  } catch {
    return '';
  }
}

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the port range is split evenly; too small a range names both flags', () => {
  assert.deepEqual(splitPortRange({ first: 5100, last: 5110 }, 3), [
    { first: 5100, last: 5103 },
    { first: 5104, last: 5107 },
    { first: 5108, last: 5110 },
  ]);
  assert.throws(() => splitPortRange({ first: 5100, last: 5101 }, 3), /--port-range 5100-5101 has 2 port\(s\), fewer than --workers 3/);
});

test('workers run in their own process groups, are restarted after kill -9 (reported lost), adopted by a new supervisor, and stopped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sup-'));
  const { logger, lines } = captureLogger();
  const lost: number[] = [];
  const settings = { count: 2, dir: join(dir, 'agents'), portRange: { first: 6100, last: 6103 }, args: ['--listener-ip', '127.0.0.1'], script: STAND_IN, logger, backoffMs: 100 };
  const first = new Supervisor({ ...settings, onWorkerLost: (i) => lost.push(i) });
  let second: Supervisor | undefined;
  const all = new Set<number>();
  try {
    await first.start();
    const [p0, p1] = first.pids();
    assert.ok(p0 && p1);
    for (const p of [p0, p1]) all.add(p);
    assert.equal(pgid(p0), p0, 'worker 0 leads its own process group');
    assert.equal(pgid(p1), p1);
    assert.notEqual(pgid(p0), pgid(process.pid));
    assert.deepEqual(first.addresses(), [`unix:${join(dir, 'agents', 'worker-0.sock')}`, `unix:${join(dir, 'agents', 'worker-1.sock')}`]);

    process.kill(p1, 'SIGKILL');
    await until('worker-1 restarted', () => first.pids().length === 2 && first.pids()[1] !== p1 && lines.filter((l) => /worker-1 answers on its socket/.test(l)).length === 2);
    all.add(first.pids()[1]!);
    assert.deepEqual(lost, [1]);
    assert.ok(lines.some((l) => /worker-1 killed by SIGKILL: the connections it carried were reset; restarting it/.test(l)));
    assert.ok(alive(p0), 'the other worker runs on');

    // s2cs dies without stopping its workers; a new one over the same state dir adopts them.
    first.detach();
    second = new Supervisor(settings);
    await second.start();
    assert.deepEqual(second.pids(), first.pids(), 'the running workers were adopted, none started');
    assert.ok(lines.some((l) => /worker-0 \(pid \d+\) is still running from a previous s2cs: adopting it/.test(l)));

    await second.stop();
    for (const p of all) assert.equal(alive(p), false, `worker pid ${p} is gone`);
    assert.equal(pgrep(join(dir, 'agents')), '', 'no process of this state dir is left');
  } finally {
    for (const p of all) if (alive(p)) process.kill(-p, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('s2cs start --workers 2: a stream spread over both workers; kill -9 of a worker ends its streams with resets and restarts it; SIGTERM stops everything', async () => {
  const dir = mkdtempSync(join(tmpdir(), 's2cs-workers-'));
  const range = await freePortRange(8);
  const s2cs = spawnCli('s2cs', [
    'start', '--insecure', '--port', '0', '--control-host', '127.0.0.1', '--listener-ip', '127.0.0.1',
    '--port-range', `${range.first}-${range.last}`, '--state-dir', dir, '--workers', '2', '--hello-timeout', '5', '--allow-plaintext-data',
  ]);
  const small = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 4 * 1024 * 1024, seed: 11 });
  const endless = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 1024 ** 4, seed: 12 });
  let client: ControlConnection | undefined;
  try {
    const port = Number((await s2cs.waitFor(/s2cs ready: control on [^\s]+:(\d+)/, { timeoutMs: 30_000 }))[1]);
    client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
    const workers = () => pgrep(join(dir, 'agents-0-')).split('\n').filter(Boolean).map(Number);
    const worker1 = () => Number(pgrep('worker-1.sock').split('\n').filter(Boolean).map(Number).find((p) => workers().includes(p)));
    assert.equal(workers().length, 2, 'two s2ds workers run');
    const before = worker1();

    // A stream of 2 connections: one listener on each worker's slice of the range.
    const open = async (uid: string, producer: typeof small) => {
      await client!.hello({ uid, role: 'PROD', prod_listeners: producer.addresses.map((a) => `${a.host}:${a.port}`) });
      const r = await client!.req({ uid, role: 'PROD', num_conn: 2, rate: 0 });
      await client!.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
      return r.listeners.map((l) => parseAddress(l));
    };
    const listeners = await open('spread', small);
    const half = range.first + 4;
    assert.deepEqual(listeners.map((l) => l.port < half).sort(), [false, true], `one listener per worker: ${listeners.map((l) => l.port)}`);
    const r = await consume({ connect: listeners, bytes: 4 * 1024 * 1024, seed: 11 });
    assert.equal(r.bytes, 2 * 4 * 1024 * 1024, 'every byte through both workers, verified');
    await client.release({ uid: 'spread' });

    // A live stream over both workers; worker-1 is killed with -9.
    const live = await open('live', endless);
    const sockets = live.map((l) => connect(l.port, l.host));
    const ends = sockets.map((s) => outcome(s));
    await Promise.all(sockets.map((s) => new Promise((res) => s.once('data', res))));
    process.kill(before, 'SIGKILL');
    const [a, b] = await Promise.all(ends);
    if (lingerAvailable) {
      assert.notEqual(a!.end, 'end', 'never a clean end of stream');
      assert.notEqual(b!.end, 'end', 'never a clean end of stream');
    }
    let st = await client.status({ uid: '' });
    for (const end = Date.now() + 15_000; (st.streams.length > 0 || st.reserved_ports > 0) && Date.now() < end; ) {
      await new Promise((res) => setTimeout(res, 100));
      st = await client.status({ uid: '' });
    }
    assert.deepEqual(st.streams.map((x) => x.uid), [], 'status lists no stream');
    assert.equal(st.reserved_ports, 0, 'every port freed');
    const ended = st.ended.find((e) => e.uid === 'live');
    assert.ok(ended, `status says the stream ended: ${JSON.stringify(st.ended)}`);
    assert.match(ended.why, /data-server worker worker-1 killed by SIGKILL: the connections it carried were reset/);
    await until('worker-1 restarted', () => Number.isInteger(worker1()) && worker1() !== before && workers().length === 2, 15_000);
    assert.match(s2cs.stdout() + s2cs.stderr(), /data-server worker worker-1 killed by SIGKILL: the connections it carried were reset/);

    client.close();
    client = undefined;
    const pids = workers();
    assert.equal(await s2cs.stop('SIGTERM', 15_000), 0, 'SIGTERM: exit 0');
    for (const p of pids) assert.equal(alive(p), false, `worker ${p} stopped`);
    assert.equal(pgrep(dir), '', 'no process left');
  } finally {
    client?.close();
    await small.close();
    await endless.close();
    if (s2cs.running()) await s2cs.stop('SIGKILL');
    for (const p of pgrep(dir).split('\n').filter(Boolean)) process.kill(-Number(p), 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGUSR2 (restart for an upgrade): s2cs exits 0, the workers go on forwarding, the next s2cs takes the stream back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 's2cs-upgrade-'));
  const range = await freePortRange(4);
  const port = (await freePortRange(1)).first;
  const args = [
    'start', '--insecure', '--port', String(port), '--control-host', '127.0.0.1', '--listener-ip', '127.0.0.1',
    '--port-range', `${range.first}-${range.last}`, '--state-dir', dir, '--workers', '1',
  ];
  const BYTES = 64 * 1024 * 1024;
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: BYTES, seed: 13 });
  let first = spawnCli('s2cs', args);
  let client: ControlConnection | undefined;
  try {
    await first.waitFor(/s2cs ready/, { timeoutMs: 30_000 });
    client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
    const uid = 'upgrade-1';
    await client.hello({ uid, role: 'PROD', prod_listeners: producer.addresses.map((a) => `${a.host}:${a.port}`) });
    const r = await client.req({ uid, role: 'PROD', num_conn: 1, rate: 0 });
    await client.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
    const reading = consume({ connect: r.listeners.map((l) => parseAddress(l)), bytes: BYTES, seed: 13 });
    const worker = Number(pgrep('worker-0.sock').split('\n').filter(Boolean).map(Number).find((p) => pgrep(dir).includes(String(p))));

    first.child.kill('SIGUSR2');
    assert.equal(await first.exited, 0, first.describe());
    assert.match(first.stderr(), /stopped without releasing/);
    assert.ok(alive(worker), 'the worker outlives s2cs');
    assert.equal((await reading).bytes, BYTES, 'the stream went on and every byte arrived, verified');

    const second = spawnCli('s2cs', args);
    first = second;
    await second.waitFor(/s2cs ready/, { timeoutMs: 30_000 });
    const st = await client.status({ uid });
    assert.deepEqual(st.streams.map((s) => [s.uid, s.state]), [[uid, 'ready']], 'the new s2cs holds the stream');
    assert.deepEqual(st.streams[0]!.listeners, r.listeners);
    await client.release({ uid });
    // Port counts come from the agents' health polls (about a second).
    let reserved = -1;
    for (const end = Date.now() + 5000; reserved !== 0 && Date.now() < end; await new Promise((res) => setTimeout(res, 100))) {
      reserved = (await client.status({ uid: '' })).reserved_ports;
    }
    assert.equal(reserved, 0, 'the release freed the port on the worker');
    client.close();
    client = undefined;
    assert.equal(await second.stop('SIGTERM', 15_000), 0, 'SIGTERM: exit 0');
    assert.equal(alive(worker), false, 'SIGTERM stops the worker it took over');
  } finally {
    client?.close();
    await producer.close();
    if (first.running()) await first.stop('SIGKILL');
    for (const p of pgrep(dir).split('\n').filter(Boolean)) process.kill(-Number(p), 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a start whose control port is taken leaves the streams its adopted workers carry alone', async () => {
  const dir = mkdtempSync(join(tmpdir(), 's2cs-taken-'));
  const range = await freePortRange(4);
  const port = (await freePortRange(1)).first;
  const { logger } = captureLogger();
  const opts = {
    port,
    host: '127.0.0.1',
    listenerIp: '127.0.0.1',
    portRange: range,
    logger,
    workers: { count: 1, dir: join(dir, 'agents') },
    connectAgent: (address: string, name: string) => new RemoteAgent({ address, name }),
  };
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 1024 * 1024, seed: 21 });
  const blocker = createServer();
  let client: ControlConnection | undefined;
  let second: Awaited<ReturnType<typeof startControlServer>> | undefined;
  try {
    const first = await startControlServer(opts);
    client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
    const uid = 'taken-1';
    await client.hello({ uid, role: 'PROD', prod_listeners: producer.addresses.map((a) => `${a.host}:${a.port}`) });
    const r = await client.req({ uid, role: 'PROD', num_conn: 1, rate: 0 });
    await client.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
    const secret = client.controlSecret(uid);
    client.close();
    client = undefined;
    await first.detach();

    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
    await assert.rejects(startControlServer(opts), /cannot serve the control channel/);
    const got = await consume({ connect: r.listeners.map((l) => parseAddress(l)), bytes: 1024 * 1024, seed: 21 });
    assert.equal(got.bytes, 1024 * 1024, 'the worker still forwards the stream');
    await new Promise<void>((resolve) => blocker.close(() => resolve()));

    second = await startControlServer(opts);
    client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
    // The stream's control secret proves it is ours to the next s2cs too (its hash is in the record).
    client.rememberControlSecret(uid, secret);
    assert.deepEqual((await client.status({ uid })).streams.map((s) => s.state), ['ready'], 'the next start takes the stream back');
    await client.release({ uid });
    client.close();
    client = undefined;
    await second.close();
    second = undefined;
    assert.equal(pgrep(dir), '', 'close() stops the worker');
  } finally {
    client?.close();
    blocker.close();
    await second?.close();
    await producer.close();
    for (const p of pgrep(dir).split('\n').filter(Boolean)) process.kill(-Number(p), 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGTERM while the workers start stops them with s2cs instead of leaving them running', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sup-early-'));
  const range = await freePortRange(8);
  const s2cs = spawnCli('s2cs', [
    'start', '--insecure', '--port', '0', '--control-host', '127.0.0.1', '--listener-ip', '127.0.0.1',
    '--port-range', `${range.first}-${range.last}`, '--state-dir', dir, '--workers', '2', '--allow-plaintext-data',
  ]);
  const workers = () => pgrep(join(dir, 'agents-0-')).split('\n').filter(Boolean).map(Number);
  try {
    // A worker's first line comes before s2cs is ready: the signal lands while start-up awaits the agents.
    await s2cs.waitFor(/worker-0/, { timeoutMs: 30_000 });
    assert.ok(workers().length > 0, 'a worker runs when the signal is sent');
    assert.doesNotMatch(s2cs.stderr() + s2cs.stdout(), /s2cs ready/, 'the signal comes before s2cs is ready');
    const code = await s2cs.stop('SIGTERM', 20_000);
    assert.equal(code, 0, s2cs.describe());
    assert.match(s2cs.stderr() + s2cs.stdout(), /SIGTERM during start-up/);
    await until('no worker left', () => workers().length === 0);
  } finally {
    for (const p of workers()) process.kill(p, 'SIGKILL');
    await s2cs.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
