// Listeners shared by workers (shared-listeners.ts), with two data servers standing in
// for two workers (SO_REUSEPORT works the same between sockets of one process): the
// owner opens a stream's listener joinable, the other joins it, and the kernel gives
// each its part of the connections. Who may join: a joinable listener only, never a
// spare nor a port a socket holds without SO_REUSEPORT; and no socket without
// SO_REUSEPORT can take a shared port while it is shared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { pino } from 'pino';
import { Refusals } from '../../src/limits/refusals.js';
import { watchEnd } from '../support/sockets.js';
import { LocalDataServer } from '../../src/s2ds/local.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange } from '../../src/demo/procs.js';
import { startProducer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { ScistreamError } from '../../src/protocol/errors.js';
import { reservePort, closeReserved, reusePortNative } from '../../src/transport/socket-options.js';
import type { PortRange } from '../../src/s2ds/ports.js';

const skip = reusePortNative() ? false : 'the native addon with SO_REUSEPORT is not built';

function server(portRange: PortRange, extra: { maxConnsPerListener?: number; refusals?: Refusals } = {}): LocalDataServer {
  return new LocalDataServer({ bindHost: '127.0.0.1', portRange, bufferSize: 256 * 1024, waitLimit: 64, waitTimeoutMs: 5000, logger: silentLogger, ...extra });
}

/** Whether a socket without SO_REUSEPORT (Node's listen) can take the port. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** What joining the port with SO_REUSEPORT gets: 'joined' (closed again at once) or the error code. */
function tryJoin(port: number): string {
  try {
    closeReserved(reservePort('127.0.0.1', port, true));
    return 'joined';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

function kindOf(err: unknown): string {
  return err instanceof ScistreamError ? err.kind : String(err);
}

test('one listener, two data servers: the connections are spread over both, every byte verified; release by both frees the port', { skip }, async (t) => {
  const [a, b] = [await freePortRange(4), await freePortRange(4)];
  const owner = server(a);
  const joiner = server(b);
  const bytes = 128 * 1024;
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes, seed: 5 });
  t.after(async () => {
    await Promise.all([owner.close(), joiner.close(), producer.close()]);
  });
  const [listener] = await owner.startListeners('s', 1, { shared: true });
  assert.equal(await bindable(listener!.port), false, 'while shared, no socket without SO_REUSEPORT can take the port');
  const joined = await joiner.startListeners('s', 1, { join: [listener!.port] });
  assert.equal(joined[0]!.port, listener!.port, 'the joiner listens on the same port');
  assert.deepEqual(joiner.ports(), { reserved: 0, free: 4 }, "the joined port is not the joiner's: its own range is untouched");
  for (const s of [owner, joiner]) await s.setTargets('s', producer.addresses);

  const got = await consume({ connect: Array.from({ length: 32 }, () => listener!), bytes, seed: 5 });
  assert.equal(got.bytes, 32 * bytes, 'every byte of the 32 connections');
  const accepted = [owner, joiner].map((s) => s.stats('s')!.acceptedConnections);
  t.diagnostic(`accepted by the owner / the joiner: ${accepted.join(' / ')}`);
  assert.equal(accepted[0]! + accepted[1]!, 32);
  assert.ok(accepted.every((n) => n > 0), `both took connections: ${accepted.join(' / ')}`);

  // The joiner leaves first: the owner serves on alone, and its port stays its own.
  await joiner.release('s');
  assert.deepEqual(joiner.ports(), { reserved: 0, free: 4 });
  const after = await consume({ connect: [listener!, listener!], bytes, seed: 5 });
  assert.equal(after.bytes, 2 * bytes);
  assert.equal(owner.stats('s')!.acceptedConnections, accepted[0]! + 2, 'the owner alone takes them now');
  await owner.release('s');
  assert.equal(await bindable(listener!.port), true, 'released by both: the port is free');
  assert.deepEqual(owner.ports(), { reserved: 0, free: 4 }, "back in the owner's range");
});

test('a spare is never joinable; made a shared stream, it is; a port held without SO_REUSEPORT cannot be joined', { skip }, async (t) => {
  const [a, b] = [await freePortRange(4), await freePortRange(4)];
  const owner = server(a);
  const joiner = server(b);
  let plain: Server | undefined;
  t.after(async () => {
    await Promise.all([owner.close(), joiner.close()]);
    await new Promise<void>((r) => (plain ? plain.close(() => r()) : r()));
  });
  const [spare, other] = await owner.openSpares(2);
  assert.equal(tryJoin(spare!), 'EADDRINUSE', 'a spare cannot be joined: bound without SO_REUSEPORT');
  await assert.rejects(joiner.startListeners('early', 1, { join: [spare!] }), (err) => kindOf(err) === 'FAILED_PRECONDITION' && /cannot join listener port \d+ \(EADDRINUSE\)/.test((err as Error).message));
  assert.deepEqual(joiner.uids(), [], 'nothing left on the joiner');

  // Not shared: the spare's stream stays closed to joiners.
  owner.assignSpares('alone', [other!]);
  assert.equal(tryJoin(other!), 'EADDRINUSE', 'a stream not shared cannot be joined');
  // Shared: joinable once it listens.
  owner.assignSpares('shared', [spare!], 0, [], true);
  const joined = await joiner.startListeners('shared', 1, { join: [spare!] });
  assert.equal(joined[0]!.port, spare);

  // Any other socket on a port: nothing to join.
  const [free] = await freePortRange(1).then((r) => [r.first]);
  plain = createServer();
  await new Promise<void>((r) => plain!.listen({ host: '127.0.0.1', port: free }, () => r()));
  await assert.rejects(joiner.startListeners('foreign', 1, { join: [free!] }), (err) => kindOf(err) === 'FAILED_PRECONDITION');
});

test('join is refused for its own ports, with ports or shared, and for UDP streams', { skip }, async (t) => {
  const range = await freePortRange(4);
  const s = server(range);
  t.after(() => s.close());
  await assert.rejects(s.startListeners('own', 1, { join: [range.first] }), (err) => kindOf(err) === 'INVALID_ARGUMENT' && /own range/.test((err as Error).message));
  await assert.rejects(s.startListeners('both', 1, { join: [1], shared: true }), (err) => kindOf(err) === 'INVALID_ARGUMENT');
  await assert.rejects(s.startListeners('udp', 1, { join: [1], protocol: 'udp' }), (err) => kindOf(err) === 'INVALID_ARGUMENT' && /UDP/.test((err as Error).message));
  await assert.rejects(s.startListeners('udp2', 1, { shared: true, protocol: 'udp' }), (err) => kindOf(err) === 'INVALID_ARGUMENT');
  assert.deepEqual(s.uids(), []);
  assert.deepEqual(s.ports(), { reserved: 0, free: 4 });
});

test('--max-conns-per-listener holds in each worker sharing a listener: each admits that many, and its refusal says so', { skip }, async (t) => {
  const lines: { msg: string; refusal?: string }[] = [];
  const refusals = new Refusals(pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) }), 60_000);
  const owner = server(await freePortRange(2), { maxConnsPerListener: 2, refusals });
  const joiner = server(await freePortRange(2), { maxConnsPerListener: 2, refusals });
  // A target that accepts and never reads: admitted connections stay.
  const held: Socket[] = [];
  const target = createServer({ pauseOnConnect: true }, (s) => {
    s.on('error', () => {});
    held.push(s);
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  const clients: Socket[] = [];
  t.after(async () => {
    for (const c of [...clients, ...held]) c.destroy();
    await Promise.all([owner.close(), joiner.close(), new Promise<void>((r) => target.close(() => r()))]);
    refusals.close();
  });
  const [l] = await owner.startListeners('s', 1, { shared: true });
  await joiner.startListeners('s', 1, { join: [l!.port] });
  const to = { host: '127.0.0.1', port: (target.address() as { port: number }).port };
  for (const s of [owner, joiner]) await s.setTargets('s', [to]);
  for (let i = 0; i < 12; i++) clients.push(connect(l!.port, l!.host));
  const states = clients.map(watchEnd);
  const settled = () => [owner, joiner].reduce((n, s) => n + s.stats('s')!.activeConnections + s.stats('s')!.refusedConnections, 0) === 12;
  for (let i = 0; i < 250 && !settled(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(settled(), 'every connection forwarded or refused');
  const active = [owner, joiner].map((s) => s.stats('s')!.activeConnections);
  t.diagnostic(`forwarding in the owner / the joiner: ${active.join(' / ')}; refused: ${states.filter((s) => s.state !== 'open').length}`);
  assert.ok(active.every((n) => n <= 2), `at most 2 in each worker: ${active.join(' / ')}`);
  // Twelve connections all hashed to one worker: one chance in 2048.
  assert.ok(active[0]! + active[1]! > 2, 'more than one worker admitted: the bound is per worker');
  const line = lines.find((x) => x.refusal === 'conns-per-listener');
  assert.match(line?.msg ?? '', /already has 2 connections in this worker \(the listener is shared by the gateway's workers: each admits that many\)/);
});
