// One listener, every worker (issue 22, point 1), as a user runs it: `s2cs start
// --workers 2`, one stream with one listener, 32 connections to it. Each worker's
// access log shows the connections it forwarded: both forwarded some, every byte
// verified. kill -9 of s2cs and a new s2cs adopt the stream, still on both workers;
// its release frees the port on both. A worker that dies resets the connections it
// carried; the stream goes on in the other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { ControlConnection } from '../../src/protocol/client.js';
import { startProducer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { parseAddress, type Address } from '../../src/protocol/address.js';
import { alive } from '../support/process.js';
import { until, untilTrue } from '../support/until.js';
import { outcome } from '../support/sockets.js';
import { lingerAvailable } from '../../src/transport/linger.js';

const CONNECTIONS = 32;
const BYTES = 256 * 1024;
const UID = 'one-listener';

/** Connections of the stream each worker's access log has a line for, by worker index. */
function linesPerWorker(agentsDir: string): number[] {
  return [0, 1].map((i) => {
    let text = '';
    try {
      text = readFileSync(join(agentsDir, `worker-${i}.log`), 'utf8');
    } catch {
      return 0;
    }
    return text.split('\n').filter((l) => l.includes(`"uid":"${UID}"`) && l.includes('"bytesOut"')).length;
  });
}

/** Whether a socket without SO_REUSEPORT can take the port: nothing holds it. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

test('s2cs --workers 2: one listener, its connections forwarded by both workers; adopted after kill -9 of s2cs; released on both', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shared-'));
  const port = await freePort();
  const range = await freePortRange(8);
  const args = [
    'start', '--insecure', '--port', String(port), '--control-host', '127.0.0.1', '--listener-ip', '127.0.0.1',
    '--port-range', `${range.first}-${range.last}`, '--state-dir', dir, '--workers', '2', '--allow-plaintext-data', '--log-format', 'json',
  ];
  const agentsDir = join(dir, `agents-${port}`);
  const workerPids = () => [0, 1].map((i) => Number(readFileSync(join(agentsDir, `worker-${i}.pid`), 'utf8').trim()));
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: BYTES, seed: 22 });
  let s2cs: Proc | undefined = spawnCli('s2cs', args);
  let client: ControlConnection | undefined;
  let pids: number[] = [];
  t.after(async () => {
    client?.close();
    if (s2cs?.running()) await s2cs.stop('SIGTERM', 15_000);
    for (const p of pids) if (alive(p)) process.kill(-p, 'SIGKILL');
    await producer.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await s2cs.waitFor(/s2cs ready/, { timeoutMs: 30_000 });
  pids = workerPids();
  client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
  await client.hello({ uid: UID, role: 'PROD', prod_listeners: producer.addresses.map((a) => `${a.host}:${a.port}`) });
  const r = await client.req({ uid: UID, role: 'PROD', num_conn: 1, rate: 0 });
  await client.update({ uid: UID, remote_listeners: r.prod_listeners, role: 'PROD' });
  assert.equal(r.listeners.length, 1, 'one listener');
  const listener: Address = parseAddress(r.listeners[0]!);

  // 32 connections to the one listener, each verified byte for byte.
  const run = async (before: number[]) => {
    const got = await consume({ connect: Array.from({ length: CONNECTIONS }, () => listener), bytes: BYTES, seed: 22 });
    assert.equal(got.bytes, CONNECTIONS * BYTES, 'every byte of every connection, verified');
    await untilTrue('an access-log line per connection', () => linesPerWorker(agentsDir).reduce((a, b) => a + b, 0) - before.reduce((a, b) => a + b, 0) === CONNECTIONS, 15_000);
    const now = linesPerWorker(agentsDir);
    const each = now.map((n, i) => n - before[i]!);
    t.diagnostic(`connections forwarded by worker-0 / worker-1: ${each.join(' / ')}`);
    assert.ok(each.every((n) => n > 0), `both workers forwarded connections of the one listener: ${each.join(' / ')}`);
    return now;
  };
  let seen = await run([0, 0]);
  const st = await client.status({ uid: UID });
  const stream = st.streams.find((s) => s.uid === UID);
  assert.ok(stream, 'status lists the stream');
  assert.equal(stream.listeners.length, 1, 'status: one listener, counted once');

  // s2cs dies (kill -9); the workers go on; a new s2cs adopts them and the stream.
  client.close();
  client = undefined;
  await s2cs.stop('SIGKILL', 1000);
  assert.ok(pids.every(alive), 'the workers outlive s2cs');
  s2cs = spawnCli('s2cs', args);
  await s2cs.waitFor(/s2cs ready/, { timeoutMs: 30_000 });
  assert.deepEqual(workerPids(), pids, 'the same workers, adopted');
  client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
  const adopted = (await client.status({ uid: UID })).streams.find((s) => s.uid === UID);
  assert.ok(adopted, `the stream was taken back: ${s2cs.describe().slice(-2000)}`);
  // Status shows the listeners to their requester only (--auth none): the new s2cs's log says them.
  assert.match(s2cs.stderr(), new RegExp(`"uid":"${UID}","listeners":\\["${r.listeners[0]}"\\],"msg":"took back a stream from the data-server agents"`), 'taken back with its listener');
  assert.equal(adopted.accepted_connections, CONNECTIONS, 'its counters: the sums over both workers');
  seen = await run(seen);

  // Release: answered once no worker holds the port any more.
  await client.release({ uid: UID, control_secret: r.control_secret });
  assert.equal(await bindable(listener.port), true, `port ${listener.port} is free on both workers once the release answered`);
  const after = await client.status({ uid: '' });
  assert.equal(after.reserved_ports, 0, 'no port reserved');

  client.close();
  client = undefined;
  assert.equal(await s2cs.stop('SIGTERM', 15_000), 0, 'SIGTERM: exit 0');
  await untilTrue('the workers stopped', () => pids.every((p) => !alive(p)), 15_000);
});

test('s2cs --workers 2: a chosen port shared by both workers; kill -9 of the joining worker resets its connections, the stream goes on in the owner; released, the port is free', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shared-'));
  const port = await freePort();
  const range = await freePortRange(8);
  // The last port of the range: worker-1's slice owns it, worker-0 joins.
  const chosen = range.last;
  const args = [
    'start', '--insecure', '--port', String(port), '--control-host', '127.0.0.1', '--listener-ip', '127.0.0.1',
    '--port-range', `${range.first}-${range.last}`, '--state-dir', dir, '--workers', '2', '--allow-plaintext-data', '--log-format', 'json',
  ];
  const agentsDir = join(dir, `agents-${port}`);
  const endless = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: 1024 ** 4, seed: 23 });
  const s2cs = spawnCli('s2cs', args);
  let client: ControlConnection | undefined;
  let pids: number[] = [];
  const sockets: Socket[] = [];
  t.after(async () => {
    for (const s of sockets) s.destroy();
    client?.close();
    if (s2cs.running()) await s2cs.stop('SIGTERM', 15_000);
    for (const p of pids) if (alive(p)) process.kill(-p, 'SIGKILL');
    await endless.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await s2cs.waitFor(/s2cs ready/, { timeoutMs: 30_000 });
  pids = [0, 1].map((i) => Number(readFileSync(join(agentsDir, `worker-${i}.pid`), 'utf8').trim()));
  client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
  await client.hello({ uid: 'live', role: 'PROD', prod_listeners: endless.addresses.map((a) => `${a.host}:${a.port}`) });
  const r = await client.req({ uid: 'live', role: 'PROD', num_conn: 1, rate: 0, listener_ports: [chosen] });
  await client.update({ uid: 'live', remote_listeners: r.prod_listeners, role: 'PROD' });
  assert.deepEqual(r.listeners, [`127.0.0.1:${chosen}`]);

  for (let i = 0; i < 16; i++) sockets.push(connect({ host: '127.0.0.1', port: chosen }));
  const ends = sockets.map((s) => outcome(s));
  await Promise.all(sockets.map((s) => new Promise((res) => s.once('data', res))));
  // The workers' counters reach s2cs with its next poll of them.
  await until('all 16 forwarding in status (the sum over both workers)', 10_000, async () => ((await client!.status({ uid: 'live' })).streams[0]?.active_connections === 16 ? true : undefined));

  process.kill(pids[0]!, 'SIGKILL');
  // The joiner's connections are reset; the owner's go on.
  const settledOrNot = await Promise.all(ends.map((e) => Promise.race([e, new Promise<undefined>((res) => setTimeout(() => res(undefined), 3000))])));
  const cut = settledOrNot.filter((o) => o !== undefined);
  t.diagnostic(`connections cut with worker-0: ${cut.length} of 16 (${cut.map((o) => o!.end).join(', ')})`);
  assert.ok(cut.length > 0 && cut.length < 16, `worker-0's connections were cut, worker-1's were not: ${cut.length} of 16`);
  if (lingerAvailable) assert.ok(cut.every((o) => o!.end !== 'end'), `never a clean end: ${cut.map((o) => o!.end).join(', ')}`);
  await s2cs.waitFor(/data-server worker worker-0 killed by SIGKILL: the connections it carried were reset; 1 stream\(s\) whose listeners it shared go on in the other workers: live/, { timeoutMs: 10_000 });

  // New connections: all on worker-1 now, every one served.
  const more = await Promise.all(Array.from({ length: 8 }, () => firstData(chosen)));
  assert.equal(more.filter(Boolean).length, 8, 'every new connection served by the worker left');
  const st = (await client.status({ uid: 'live' })).streams[0];
  assert.equal(st?.state, 'ready', 'the stream goes on');

  await client.release({ uid: 'live', control_secret: r.control_secret });
  const rest = await Promise.all(ends);
  if (lingerAvailable) assert.ok(rest.every((o) => o.end !== 'end'), 'released: the rest reset, never a clean end');
  assert.equal(await bindable(chosen), true, 'the port is free once the release answered');
  assert.equal((await client.status({ uid: '' })).reserved_ports, 0);
  await until('worker-0 restarted', 15_000, async () => (alive(Number(readFileSync(join(agentsDir, 'worker-0.pid'), 'utf8').trim())) ? true : undefined));
});

/** Whether a connection to the port gets a first byte (then closed). */
function firstData(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('data', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('close', () => resolve(false));
  });
}
