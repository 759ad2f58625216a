// The CLIs as separate processes, as users and workflow engines run them.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { runCli as run, startCliGateway as startS2cs } from '../support/cli-gateway.js';

// The programs keep state (control secrets of the streams s2uc sets up) under
// $SCISTREAM_HOME: a directory of this run's, not the home of whoever runs the tests.
const HOME = mkdtempSync(join(tmpdir(), 'scistream-cli-home-'));
process.env.SCISTREAM_HOME = HOME;
after(() => rmSync(HOME, { recursive: true, force: true }));

describe('every program has --help and --version', () => {
  for (const program of ['s2cs', 's2uc', 's2app'] as const) {
    test(program, async () => {
      const help = await run(program, ['--help']);
      assert.equal(help.code, 0);
      assert.match(help.stdout, new RegExp(`Usage: ${program}`));
      const version = await run(program, ['--version']);
      assert.equal(version.code, 0);
      assert.match(version.stdout.trim(), /^\d+\.\d+\.\d+$/);
    });
  }
});

describe('bad start-up flags: one clear line and exit code 2', () => {
  test('reversed port range', async () => {
    const r = await run('s2cs', ['start', '--insecure', '--port', '0', '--listener-ip', '127.0.0.1', '--port-range', '5200-5100']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--port-range.*reversed/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  });
  test('control port in use', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: 0 }, resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = await run('s2cs', ['start', '--insecure', '--control-host', '127.0.0.1', '--port', String(port), '--listener-ip', '127.0.0.1']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${port}.*in use`));
      assert.equal(r.stderr.trim().split('\n').length, 1);
    } finally {
      blocker.close();
    }
  });
  test('listener ip that is not on this host', async () => {
    const r = await run('s2cs', ['start', '--insecure', '--port', '0', '--listener-ip', '192.0.2.1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /192\.0\.2\.1/);
  });
  test('s2uc with a malformed address', async () => {
    const r = await run('s2uc', ['request', '--prod-s2cs', 'nohost', '--cons-s2cs', '127.0.0.1:1', '--num-conn', '1']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--prod-s2cs/);
  });
});

test('s2uc against an s2cs that is not running: one line naming the server, exit 1', async () => {
  const port = await freePort();
  const r = await run('s2uc', ['--insecure', '--timeout', '5', 'release', 'some-uid', '--s2cs', `127.0.0.1:${port}`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`cannot reach s2cs at 127\\.0\\.0\\.1:${port}`));
  assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace without --verbose');
});

describe('two facilities through both gateways, every program a separate process', () => {
  let prod: { proc: Proc; address: string };
  let cons: { proc: Proc; address: string };
  let producer: Proc;
  before(async () => {
    [prod, cons] = await Promise.all([startS2cs(), startS2cs()]);
    producer = spawnCli('s2app', ['produce', '--listen', '127.0.0.1:0,127.0.0.1:0', '--bytes', '8MiB', '--seed', '42']);
    await producer.waitFor(/producer listening on/);
  });
  after(async () => {
    await producer.stop();
    // SIGTERM releases everything and exits 0.
    assert.equal(await prod.proc.stop(), 0);
    assert.equal(await cons.proc.stop(), 0);
  });

  test('request, Hello with the printed uid, consumer Hello, verified data, status, release', async () => {
    const prodListeners = (await producer.waitFor(/producer listening on (\S+)/))[1]!;
    // Reference spelling of the option (--num_conn) works too.
    const request = spawnCli('s2uc', ['--insecure', 'request', '--prod-s2cs', prod.address, '--cons-s2cs', cons.address, '--num_conn', '3']);
    const uid = (await request.waitFor(/^uid: (\S+)$/m))[1]!;
    const hello = await run('s2app', ['hello', '--insecure', '--s2cs', prod.address, '--uid', uid, '--role', 'PROD', '--listeners', prodListeners]);
    assert.equal(hello.code, 0, hello.stderr);
    assert.equal(await request.exited, 0, request.stderr());
    const lines = request.stdout().trim().split('\n');
    assert.equal(lines[0], `uid: ${uid}`, 'the uid comes first');
    const consListeners = /^consumer connects to: (\S+)$/.exec(lines.at(-2)!)?.[1];
    assert.ok(consListeners, `the listener map comes last but the release command: ${lines.at(-2)}`);
    assert.equal(lines.at(-1), `to release it: s2uc --insecure release ${uid}`);
    assert.equal(consListeners.split(',').length, 3);

    const consHello = await run('s2app', ['hello', '--insecure', '--s2cs', cons.address, '--uid', uid, '--role', 'CONS', '--json']);
    assert.equal(consHello.code, 0, consHello.stderr);
    assert.deepEqual((JSON.parse(consHello.stdout) as { listeners: string[] }).listeners.join(','), consListeners);

    // 3 connections onto 2 producer listeners: the third wraps round to the first.
    const consume = await run('s2app', ['consume', '--connect', consListeners, '--bytes', '8MiB', '--seed', '42', '--json']);
    assert.equal(consume.code, 0, consume.stderr);
    const result = JSON.parse(consume.stdout) as { ok: boolean; bytes: number; connections: number };
    assert.deepEqual([result.ok, result.bytes, result.connections], [true, 3 * 8 * 1024 * 1024, 3]);

    const status = await run('s2uc', ['--insecure', 'status', uid, '--s2cs', prod.address, '--json']);
    assert.equal(status.code, 0, status.stderr);
    const st = (JSON.parse(status.stdout) as { gateways: { streams: { bytesFromTarget: number; acceptedConnections: number }[] }[] }).gateways[0]!;
    assert.equal(st.streams[0]!.bytesFromTarget, 3 * 8 * 1024 * 1024);
    assert.equal(st.streams[0]!.acceptedConnections, 3);

    const release = await run('s2uc', ['--insecure', 'release', uid, '--s2cs', prod.address, '--s2cs', cons.address]);
    assert.equal(release.code, 0, release.stderr);
    assert.match(release.stdout, /Release completed/);
    const after = await run('s2uc', ['--insecure', 'status', '--s2cs', prod.address, '--json']);
    assert.equal((JSON.parse(after.stdout) as { gateways: { reservedPorts: number }[] }).gateways[0]!.reservedPorts, 0);
  });

  test('a consumer with the wrong seed fails with a mismatch and exit 1', async () => {
    const prodListeners = (await producer.waitFor(/producer listening on (\S+)/))[1]!;
    const request = spawnCli('s2uc', ['--insecure', 'request', '--prod-s2cs', prod.address, '--cons-s2cs', cons.address, '--num-conn', '1', '--json', '--uid', 'wrong-seed-run']);
    const hello = await run('s2app', ['hello', '--insecure', '--s2cs', prod.address, '--uid', 'wrong-seed-run', '--role', 'PROD', '--listeners', prodListeners]);
    assert.equal(hello.code, 0, hello.stderr);
    assert.equal(await request.exited, 0, request.stderr());
    const map = JSON.parse(request.stdout().trim().split('\n').at(-1)!) as { uid: string; consListeners: string[]; prodListeners: string[] };
    assert.equal(map.uid, 'wrong-seed-run');
    assert.equal(map.prodListeners.length, 1);
    const consume = await run('s2app', ['consume', '--connect', map.consListeners.join(','), '--bytes', '8MiB', '--seed', '43']);
    assert.equal(consume.code, 1);
    assert.match(consume.stderr, /mismatch/i);
    assert.equal((await run('s2uc', ['--insecure', 'release', map.uid, '--s2cs', prod.address, '--s2cs', cons.address])).code, 0);
  });
});

test('npm run demo: streams through both gateways and verifies (small size)', async () => {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const demo = fileURLToPath(new URL('../../src/demo/run.js', import.meta.url));
  const child = spawn(process.execPath, [demo, '--bytes', '32MiB'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, out);
  assert.match(out, /verified 32\.00 MiB over 4 connection/);
  assert.match(out, /demo finished/);
});

describe('interrupts', () => {
  for (const [signal, code] of [['SIGINT', 130], ['SIGHUP', 130]] as const) {
  test(`${signal} on s2uc while it waits for Hello releases what it reserved`, async () => {
    const [prod, cons] = await Promise.all([startS2cs(), startS2cs()]);
    try {
      const request = spawnCli('s2uc', ['--insecure', 'request', '--prod-s2cs', prod.address, '--cons-s2cs', cons.address, '--num-conn', '2']);
      await request.waitFor(/^uid: \S+$/m);
      // Wait until both sides hold the reservation.
      for (let i = 0; i < 100; i++) {
        const s = await run('s2uc', ['--insecure', 'status', '--s2cs', cons.address, '--json']);
        if ((JSON.parse(s.stdout) as { gateways: { reservedPorts: number }[] }).gateways[0]!.reservedPorts === 2) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(await request.stop(signal), code);
      assert.match(request.stderr(), /releasing/);
      for (const gw of [prod, cons]) {
        const s = await run('s2uc', ['--insecure', 'status', '--s2cs', gw.address, '--json']);
        assert.equal((JSON.parse(s.stdout) as { gateways: { reservedPorts: number }[] }).gateways[0]!.reservedPorts, 0, `nothing reserved on ${gw.address}`);
      }
    } finally {
      await Promise.all([prod.proc.stop(), cons.proc.stop()]);
    }
  });  }


  test('SIGINT on s2cs with a live stream releases it, closes its ports and exits 0', async () => {
    // inbound-request exposes a plain TCP service: no gateway on the other side to hold credentials.
    const gw = await startS2cs(['--allow-plaintext-data']);
    const producer = spawnCli('s2app', ['produce', '--listen', '127.0.0.1:0', '--bytes', '1TiB']);
    try {
      const prodListeners = (await producer.waitFor(/producer listening on (\S+)/))[1]!;
      const inbound = await run('s2uc', ['--insecure', 'inbound-request', '--s2cs', gw.address, '--targets', prodListeners, '--num-conn', '1', '--json']);
      assert.equal(inbound.code, 0, inbound.stderr);
      const listener = (JSON.parse(inbound.stdout) as { listeners: string[] }).listeners[0]!;
      // A consumer in the middle of a (practically endless) stream.
      const consumer = spawnCli('s2app', ['consume', '--connect', listener, '--bytes', '1TiB']);
      for (let i = 0; i < 100; i++) {
        const s = await run('s2uc', ['--insecure', 'status', '--s2cs', gw.address, '--json']);
        if (((JSON.parse(s.stdout) as { gateways: { streams: { bytesFromTarget: number }[] }[] }).gateways[0]!.streams[0]?.bytesFromTarget ?? 0) > 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(await gw.proc.stop('SIGINT'), 0);
      assert.match(gw.proc.stderr(), /stream released/);
      // The consumer sees its stream cut short and says so.
      assert.equal(await consumer.exited, 1);
      const [host, port] = listener.split(':');
      const { connect } = await import('node:net');
      const refused = await new Promise<boolean>((resolve) => {
        connect(Number(port), host!).on('error', () => resolve(true)).on('connect', () => resolve(false));
      });
      assert.ok(refused, 'the data listener is closed');
    } finally {
      await producer.stop();
      await gw.proc.stop();
    }
  });
});

test('s2uc release with one gateway down (TLS) still releases on the others, and says which it could not reach', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const home = mkdtempSync(join(tmpdir(), 'release-partial-'));
  const env = { ...process.env, SCISTREAM_HOME: home };
  const port = await freePort();
  const range = await freePortRange(4);
  const gw = spawnCli('s2cs', ['start', '--state-dir', join(home, 's2cs'), '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`], { env });
  const address = `127.0.0.1:${port}`;
  const down = `127.0.0.1:${await freePort()}`;
  try {
    await gw.waitFor(/s2cs ready/);
    const { ControlConnection } = await import('../../src/protocol/client.js');
    const c = await ControlConnection.open(address, { insecure: false, deadlineMs: 5000, tls: { serverCert: join(home, 's2cs', 'tls', 'cert.pem') } });
    const { control_secret: secret } = await c.req({ uid: 'release-partial', role: 'CONS', num_conn: 2, rate: 0 });
    c.close();
    // The stream's control secret, given as a workflow engine would (none for the gateway that is down).
    const p = spawnCli('s2uc', ['release', 'release-partial', '--s2cs', down, '--s2cs', address, '--control-secret', `,${secret}`], { env });
    assert.equal(await p.exited, 1, p.stderr());
    assert.match(p.stderr(), new RegExp(`released release-partial on ${address}; not released on ${down}`));
    const c2 = await ControlConnection.open(address, { insecure: false, deadlineMs: 5000, tls: { serverCert: join(home, 's2cs', 'tls', 'cert.pem') } });
    assert.equal((await c2.status({ uid: '' })).reserved_ports, 0);
    c2.close();
  } finally {
    await gw.stop();
    rmSync(home, { recursive: true, force: true });
  }
});
