// Standing tunnels ([[tunnel]] in s2cs.toml), on real processes: set up at start and
// again after a restart with no client involved, seen in `s2uc status --json` as
// standing, closed to clients, changed and removed by SIGHUP without touching the others;
// check-config's checks; a two-gateway standing pair with a TLS WAN leg.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCli, freePort, freePortRange, type Proc } from '../../src/demo/procs.js';
import { ControlConnection, RemoteError } from '../../src/protocol/client.js';
import { createSelfSigned } from '../../src/security/certificates.js';
import type { PortRange } from '../../src/s2ds/index.js';
import { canConnect } from '../support/sockets.js';

interface Service {
  server: Server;
  address: string;
  close(): Promise<void>;
}

/** A service of the facility: says its name to each connection, then echoes. */
async function service(name: string): Promise<Service> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.write(`${name}\n`);
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    server,
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A consumer: connects, and collects what arrives. */
async function consumer(address: string): Promise<{ socket: Socket; received: () => string; waitFor: (text: string) => Promise<void> }> {
  const i = address.lastIndexOf(':');
  const socket = connect(Number(address.slice(i + 1)), address.slice(0, i).replace(/^\[|\]$/g, ''));
  let got = '';
  socket.setEncoding('utf8').on('data', (d: string) => (got += d));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const waitFor = async (text: string) => {
    const end = Date.now() + 10_000;
    while (!got.includes(text)) {
      if (Date.now() > end) throw new Error(`${address}: waited 10 s for ${JSON.stringify(text)}, got ${JSON.stringify(got)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { socket, received: () => got, waitFor };
}

interface StatusStream {
  uid: string;
  owner: string;
  standing?: boolean;
  listeners: string[];
  targets: string[];
  state: string;
}

/** `s2uc status --json` against one gateway: its streams. */
async function statusOf(control: string, home: string): Promise<StatusStream[]> {
  const p = spawnCli('s2uc', ['--insecure', 'status', '--s2cs', control, '--json'], { env: { ...process.env, SCISTREAM_HOME: home } });
  const code = await p.exited;
  assert.equal(code, 0, p.describe());
  const report = JSON.parse(p.stdout()) as { gateways: { streams: StatusStream[] }[] };
  return report.gateways[0]!.streams;
}

async function standing(control: string, home: string, uid: string): Promise<StatusStream> {
  const s = (await statusOf(control, home)).find((x) => x.uid === uid);
  assert.ok(s, `${uid} in status`);
  assert.equal(s.standing, true, `${uid} shown as standing`);
  assert.equal(s.owner, `config:${uid}`);
  return s;
}

function baseConfig(range: PortRange, extra: string[] = []): string[] {
  return ['listener-ip = "127.0.0.1"', 'control-host = "127.0.0.1"', 'port = 0', `port-range = "${range.first}-${range.last}"`, 'insecure = true', 'state-dir = "state"', ...extra];
}

function tunnel(name: string, keys: Record<string, string | number | string[] | number[]>): string {
  const lines = Object.entries(keys).map(([k, v]) => `${k} = ${JSON.stringify(v)}`);
  return ['', '[[tunnel]]', `name = "${name}"`, ...lines].join('\n');
}

async function startS2cs(file: string): Promise<{ proc: Proc; control: string }> {
  const proc = spawnCli('s2cs', ['start', '--config', file]);
  try {
    const port = Number((await proc.waitFor(/s2cs ready: control on [^\s]+:(\d+)/))[1]);
    return { proc, control: `127.0.0.1:${port}` };
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
}

test('a standing tunnel streams after start and after a restart with no client; SIGHUP moves a changed one, leaves the other connected, releases a removed one; clients cannot touch it; one whose uid a client holds is set up once it is free', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-tunnels-'));
  const file = join(dir, 'gw.toml');
  const range = await freePortRange(8);
  const [a, b, c] = await Promise.all([service('service-A'), service('service-B'), service('service-C')]);
  const write = (svcTarget: string | undefined) =>
    writeFileSync(file, [...baseConfig(range), ...(svcTarget ? [tunnel('svc', { targets: [svcTarget] })] : []), tunnel('other', { targets: [b.address], num_conn: 1 })].join('\n') + '\n');
  write(a.address);
  let gw = await startS2cs(file);
  const sockets: Socket[] = [];
  try {
    assert.match(gw.proc.stderr(), /standing tunnel svc set up/);
    let svc = await standing(gw.control, dir, 'svc');
    assert.deepEqual(svc.targets, [a.address]);
    const human = spawnCli('s2uc', ['--insecure', 'status', 'svc', '--s2cs', gw.control], { env: { ...process.env, SCISTREAM_HOME: dir } });
    assert.equal(await human.exited, 0, human.describe());
    assert.match(human.stdout(), /stream svc \(PROD, 1 connection, standing tunnel of the gateway's configuration file\)/);
    assert.match(human.stdout(), /owner +config:svc/);
    const first = await consumer(svc.listeners[0]!);
    sockets.push(first.socket);
    await first.waitFor('service-A\n');

    // Clients (admins included) cannot update or release it: the file owns it.
    const client = new ControlConnection(gw.control, { insecure: true, deadlineMs: 10_000 });
    try {
      await assert.rejects(client.release({ uid: 'svc' }), (err: unknown) => err instanceof RemoteError && err.status === 'PERMISSION_DENIED' && /standing tunnel of .*gw\.toml/.test(err.details));
      await assert.rejects(client.update({ uid: 'svc', remote_listeners: [c.address], role: 'PROD' }), (err: unknown) => err instanceof RemoteError && err.status === 'PERMISSION_DENIED' && /reload s2cs \(SIGHUP\)/.test(err.details));
      await assert.rejects(client.req({ uid: 'svc', role: 'PROD', num_conn: 1, rate: 0 }), (err: unknown) => err instanceof RemoteError && err.status === 'PERMISSION_DENIED');
    } finally {
      client.close();
    }

    // SIGTERM, start again: the tunnel is back, and streams, with no client involved.
    first.socket.destroy();
    assert.equal(await gw.proc.stop('SIGTERM'), 0, gw.proc.describe());
    gw = await startS2cs(file);
    svc = await standing(gw.control, dir, 'svc');
    const again = await consumer(svc.listeners[0]!);
    sockets.push(again.socket);
    await again.waitFor('service-A\n');

    // A connection through the other tunnel stays open across the reloads below.
    const other = await standing(gw.control, dir, 'other');
    const held = await consumer(other.listeners[0]!);
    sockets.push(held.socket);
    await held.waitFor('service-B\n');

    // SIGHUP with svc changed (another target): it is set up again and goes there; other is untouched.
    let from = gw.proc.stderr().length;
    write(c.address);
    gw.proc.child.kill('SIGHUP');
    await gw.proc.waitFor(/standing tunnel svc released: changed in the configuration file/, { from });
    await gw.proc.waitFor(/standing tunnel svc set up/, { from });
    assert.doesNotMatch(gw.proc.stderr().slice(from), /standing tunnel other/, 'the unchanged tunnel is left alone');
    svc = await standing(gw.control, dir, 'svc');
    assert.deepEqual(svc.targets, [c.address]);
    const moved = await consumer(svc.listeners[0]!);
    sockets.push(moved.socket);
    await moved.waitFor('service-C\n');
    held.socket.write('still here\n');
    await held.waitFor('still here\n');
    assert.deepEqual((await standing(gw.control, dir, 'other')).listeners, other.listeners);

    // Removed from the file: released, its listener closed; other still carries its connection.
    from = gw.proc.stderr().length;
    write(undefined);
    gw.proc.child.kill('SIGHUP');
    await gw.proc.waitFor(/standing tunnel svc released: removed from the configuration file/, { from });
    assert.equal((await statusOf(gw.control, dir)).some((s) => s.uid === 'svc'), false);
    assert.equal(await canConnect(svc.listeners[0]!), false, 'the removed tunnel\'s listener is closed');
    held.socket.write('and still\n');
    await held.waitFor('and still\n');

    // A file whose tunnels do not check: not reloaded, every tunnel kept as it runs.
    from = gw.proc.stderr().length;
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, good + tunnel('other', { targets: [c.address] }) + '\n');
    gw.proc.child.kill('SIGHUP');
    await gw.proc.waitFor(/not reloaded, the running configuration is kept: .*gw\.toml: \[\[tunnel\]\] name = \\?"other\\?" is given twice/, { from });
    held.socket.write('unmoved\n');
    await held.waitFor('unmoved\n');
    writeFileSync(file, good);

    // A tunnel whose uid a client's stream holds: not set up (the client's stream untouched), and set up once it is released.
    const owner = new ControlConnection(gw.control, { insecure: true, deadlineMs: 10_000 });
    try {
      await owner.req({ uid: 'late', role: 'CONS', num_conn: 1, rate: 0 });
      from = gw.proc.stderr().length;
      writeFileSync(file, readFileSync(file, 'utf8') + tunnel('late', { targets: [a.address] }) + '\n');
      gw.proc.child.kill('SIGHUP');
      await gw.proc.waitFor(/standing tunnel late of .*gw\.toml could not be set up: .*uid late/, { from });
      const clients = (await statusOf(gw.control, dir)).find((s) => s.uid === 'late');
      assert.equal(clients?.owner, 'anonymous', 'the client\'s stream is untouched');
      await owner.release({ uid: 'late' });
      await gw.proc.waitFor(/standing tunnel late set up/, { from, timeoutMs: 15_000 });
      const late = await standing(gw.control, dir, 'late');
      const app = await consumer(late.listeners[0]!);
      sockets.push(app.socket);
      await app.waitFor('service-A\n');
    } finally {
      owner.close();
    }
  } finally {
    for (const s of sockets) s.destroy();
    const code = await gw.proc.stop();
    await Promise.all([a.close(), b.close(), c.close()]);
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, gw.proc.describe());
  }
});

test('check-config checks the tunnels: names unique, targets parse, ports within --port-range and not twice, files readable, plaintext only where accepted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-tunnels-'));
  const file = join(dir, 'gw.toml');
  const range = await freePortRange(8);
  const check = async (tunnels: string[], extra: string[] = []) => {
    writeFileSync(file, [...baseConfig(range, extra), ...tunnels].join('\n') + '\n');
    const p = spawnCli('s2cs', ['check-config', '--config', file]);
    return { code: await p.exited, stdout: p.stdout(), stderr: p.stderr() };
  };
  const fails = async (tunnels: string[], re: RegExp, extra: string[] = []) => {
    const r = await check(tunnels, extra);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, re);
  };
  try {
    const ok = await check([tunnel('hpc', { targets: ['10.0.0.5:5001', '10.0.0.5:5002'], 'listener-ports': [range.first, range.first + 1] }), tunnel('out', { 'remote-listeners': ['198.51.100.7:5100'] })]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, new RegExp(`# tunnel hpc: inbound, 2 connection\\(s\\) on ports ${range.first},${range.first + 1} -> 10\\.0\\.0\\.5:5001,10\\.0\\.0\\.5:5002, WAN leg plain TCP`));
    assert.match(ok.stdout, /# tunnel out: outbound, 1 connection\(s\) -> 198\.51\.100\.7:5100/);
    await fails([tunnel('x', { targets: ['a:1'] }), tunnel('x', { targets: ['b:2'] })], /\[\[tunnel\]\] name = "x" is given twice/);
    await fails([tunnel('x', { targets: ['nope'] })], /\[\[tunnel\]\] "x": targets\[0\]: "nope" is not a valid host:port/);
    await fails([tunnel('x', { targets: ['a:1'], 'listener-ports': [range.last + 1] })], new RegExp(`listener-ports ${range.last + 1} is outside this gateway's --port-range`));
    await fails([tunnel('x', { targets: ['a:1'], 'listener-ports': [range.first] }), tunnel('y', { targets: ['a:1'], 'listener-ports': [range.first] })], new RegExp(`"y": listener-ports ${range.first} is also a port of tunnel "x"`));
    await fails([tunnel('x', { targets: ['a:1'], 'remote-listeners': ['b:2'] })], /give either targets .* or remote-listeners/);
    await fails([tunnel('x', { targets: ['a:1'], 'peer-cert': 'missing.pem', cert: 'c.pem', key: 'k.pem' })], /"x": cert .*c\.pem: cannot read it \(ENOENT\)/);
    await fails([tunnel('x', { targets: ['a:1'], 'num-conn': 99 })], /num-conn 99 is out of range/);
    await fails([tunnel('x', { targets: ['a:1'], colour: 'blue' })], /unknown key colour/);
    await fails([tunnel('bad name', { targets: ['a:1'] })], /needs a name of 1-128 characters/);
    await fails(['[tunnel]', 'name = "x"', 'targets = ["a:1"]'], /tunnel: expects \[\[tunnel\]\] tables, got a table/);
    await fails([tunnel('x', { targets: ['a:1'], rate: 'fast' })], /"x": rate: invalid rate "fast"/);
    await fails([tunnel('x', { targets: ['a:1'], 'allow-from': ['10.0.0.0/33'] })], /allow-from\[0\]: "10\.0\.0\.0\/33" is not a valid CIDR block \(the prefix length must be 0 to 32\)/);
    // Data listeners on every address: a tunnel without peer-cert would cross the WAN in plain text.
    await fails([tunnel('x', { targets: ['a:1'] })], /"x": has no peer-cert, so its WAN leg would be plain TCP.*--allow-plaintext-data/, ['bind-ip = "0.0.0.0"']);
    assert.equal((await check([tunnel('x', { targets: ['a:1'] })], ['bind-ip = "0.0.0.0"', 'allow-plaintext-data = true'])).code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a two-gateway standing pair: outbound tunnel on B to the inbound tunnel of A, TLS between them with pinned certificates, no client', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-tunnels-'));
  const [rangeA, rangeB] = [await freePortRange(1), await freePortRange(2)];
  const target = await service('hpc-service');
  const [certA, certB] = await Promise.all([createSelfSigned({ commonName: 'gateway A tunnel', validDays: 2 }), createSelfSigned({ commonName: 'gateway B tunnel', validDays: 2 })]);
  for (const [n, v] of Object.entries({ 'a.crt': certA.cert, 'a.key': certA.key, 'b.crt': certB.cert, 'b.key': certB.key })) writeFileSync(join(dir, n), v, { mode: 0o600 });
  // A's port range is one port: its tunnel's listener is that one (until listener-ports is honoured, B needs to know it).
  const listenerA = `127.0.0.1:${rangeA.first}`;
  writeFileSync(join(dir, 'a.toml'), [...baseConfig(rangeA, ['state-dir = "state-a"']).filter((l) => !l.startsWith('state-dir = "state"')), tunnel('pair', { targets: [target.address], 'peer-cert': 'b.crt', cert: 'a.crt', key: 'a.key' })].join('\n') + '\n');
  writeFileSync(join(dir, 'b.toml'), [...baseConfig(rangeB, ['state-dir = "state-b"']).filter((l) => !l.startsWith('state-dir = "state"')), tunnel('pair', { 'remote-listeners': [listenerA], 'peer-cert': 'a.crt', cert: 'b.crt', key: 'b.key' })].join('\n') + '\n');
  const gws: Proc[] = [];
  const sockets: Socket[] = [];
  try {
    // check-config --json lists the tunnel with its WAN leg, never its key.
    const checked = spawnCli('s2cs', ['check-config', '--config', join(dir, 'b.toml'), '--json']);
    assert.equal(await checked.exited, 0, checked.describe());
    assert.deepEqual((JSON.parse(checked.stdout()) as { tunnels: { name: string; direction: string; wan: string; targets: string[] }[] }).tunnels.map((t) => [t.name, t.direction, t.wan, t.targets]), [['pair', 'outbound', 'tls', [listenerA]]]);
    assert.doesNotMatch(checked.stdout(), /PRIVATE KEY|BEGIN CERTIFICATE/);
    const a = await startS2cs(join(dir, 'a.toml'));
    gws.push(a.proc);
    const b = await startS2cs(join(dir, 'b.toml'));
    gws.push(b.proc);
    assert.deepEqual((await standing(a.control, dir, 'pair')).listeners, [listenerA]);
    assert.match(a.proc.stderr(), /"wan":"tls"|wan: tls|forwarding with the stream's credentials/);
    assert.match(b.proc.stderr(), /standing tunnel pair set up/);
    const out = await standing(b.control, dir, 'pair');
    const app = await consumer(out.listeners[0]!);
    sockets.push(app.socket);
    await app.waitFor('hpc-service\n');
    app.socket.write('through both gateways\n');
    await app.waitFor('through both gateways\n');
    // A plain connection to A's listener is not the pinned peer: it never reaches the service.
    const intruder = await consumer(listenerA);
    sockets.push(intruder.socket);
    intruder.socket.write('hello?\n');
    await new Promise((r) => setTimeout(r, 500));
    assert.doesNotMatch(intruder.received(), /hpc-service/);
  } finally {
    for (const s of sockets) s.destroy();
    const codes = await Promise.all(gws.map((p) => p.stop()));
    await target.close();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(codes, gws.map(() => 0), gws.map((p) => p.describe()).join('\n'));
  }
});

test('an upgrade restart (SIGUSR2, local workers): the next s2cs takes the tunnel back unchanged and its connection goes on, and releases one removed from the file meanwhile; a worker that dies takes the stream, and the tunnel is set up again by itself', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-tunnels-'));
  const file = join(dir, 'gw.toml');
  const range = await freePortRange(4);
  const port = await freePort();
  const target = await service('kept-service');
  // Workers are found again by --state-dir and --port: a fixed control port.
  const config = (...names: string[]) => writeFileSync(file, [...baseConfig(range).map((l) => (l === 'port = 0' ? `port = ${port}` : l)), ...names.map((n) => tunnel(n, { targets: [target.address] }))].join('\n') + '\n');
  config('kept', 'gone');
  const start = async () => {
    const proc = spawnCli('s2cs', ['start', '--config', file, '--workers', '1']);
    await proc.waitFor(/s2cs ready/).catch(async (err: unknown) => {
      await proc.stop('SIGKILL');
      throw err;
    });
    return proc;
  };
  const control = `127.0.0.1:${port}`;
  let gw = await start();
  let detached = false;
  const sockets: Socket[] = [];
  try {
    const before = await standing(control, dir, 'kept');
    const app = await consumer(before.listeners[0]!);
    sockets.push(app.socket);
    await app.waitFor('kept-service\n');
    await standing(control, dir, 'gone');
    gw.child.kill('SIGUSR2');
    detached = true;
    assert.equal(await gw.exited, 0, gw.describe());
    // The next s2cs reads a file without 'gone': it takes 'kept' back, and releases what is left of 'gone'.
    config('kept');
    gw = await start();
    detached = false;
    assert.match(gw.stderr(), /standing tunnel kept taken back from the data-server agents as it was/);
    assert.match(gw.stderr(), /standing tunnel gone released: taken back from the data-server agents, no longer in the configuration file/);
    assert.equal((await statusOf(control, dir)).some((s) => s.uid === 'gone'), false);
    assert.doesNotMatch(gw.stderr(), /standing tunnel kept set up/);
    const after = await standing(control, dir, 'kept');
    assert.deepEqual(after.listeners, before.listeners);
    app.socket.write('across the upgrade\n');
    await app.waitFor('across the upgrade\n');
    // Still the file's: a client cannot release it.
    const client = new ControlConnection(control, { insecure: true, deadlineMs: 10_000 });
    try {
      await assert.rejects(client.release({ uid: 'kept' }), (err: unknown) => err instanceof RemoteError && err.status === 'PERMISSION_DENIED');
    } finally {
      client.close();
    }

    // The worker dies (its streams with it): the supervisor starts another, and the tunnel is set up again by itself.
    const from = gw.stderr().length;
    const workerPid = Number(readFileSync(join(dir, 'state', `agents-${port}`, 'worker-0.pid'), 'utf8').trim());
    process.kill(workerPid, 'SIGKILL');
    await gw.waitFor(/standing tunnel kept set up/, { from, timeoutMs: 30_000 });
    const revived = await standing(control, dir, 'kept');
    const again = await consumer(revived.listeners[0]!);
    sockets.push(again.socket);
    await again.waitFor('kept-service\n');
  } finally {
    for (const s of sockets) s.destroy();
    // A start that failed after SIGUSR2 left the workers running: one more s2cs takes them back and stops them.
    if (detached) gw = await start();
    const code = await gw.stop();
    await target.close();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, gw.describe());
  }
});

test('a tunnel takes its listener-ports, and its allow-from refuses other sources', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ss-tunnels-'));
  const file = join(dir, 'gw.toml');
  const range = await freePortRange(6);
  const target = await service('chosen-service');
  writeFileSync(file, [...baseConfig(range), tunnel('chosen', { targets: [target.address], 'listener-ports': [range.first + 4] }), tunnel('fenced', { targets: [target.address], 'allow-from': ['192.0.2.0/24'] })].join('\n') + '\n');
  const gw = await startS2cs(file);
  const sockets: Socket[] = [];
  try {
    const chosen = await standing(gw.control, dir, 'chosen');
    assert.deepEqual(chosen.listeners, [`127.0.0.1:${range.first + 4}`]);
    const app = await consumer(chosen.listeners[0]!);
    sockets.push(app.socket);
    await app.waitFor('chosen-service\n');
    // 127.0.0.1 is not in 192.0.2.0/24: refused, never reaching the service.
    const fenced = await standing(gw.control, dir, 'fenced');
    const outsider = await consumer(fenced.listeners[0]!).catch(() => undefined);
    if (outsider) {
      sockets.push(outsider.socket);
      await new Promise((r) => setTimeout(r, 500));
      assert.doesNotMatch(outsider.received(), /chosen-service/);
    }
  } finally {
    for (const s of sockets) s.destroy();
    const code = await gw.proc.stop();
    await target.close();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, gw.proc.describe());
  }
});
