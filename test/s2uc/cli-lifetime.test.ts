// Stream lifetimes from the command line, on real processes: s2uc --lifetime (parsed,
// sent as Request.lifetime_s, in --json), and s2cs --idle-stream-timeout and
// --max-stream-lifetime as flags and as keys of a configuration file.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createServer, type Server } from 'node:net';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { ControlConnection } from '../../src/protocol/client.js';
import { until } from '../support/until.js';

const home = mkdtempSync(join(tmpdir(), 'scistream-lifetime-cli-'));
const env = { ...process.env, SCISTREAM_HOME: home };

async function run(program: 's2cs' | 's2uc', args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnCli(program, args, { env });
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

describe('s2uc --lifetime against s2cs --idle-stream-timeout and --max-stream-lifetime', () => {
  let s2cs: Proc;
  let address: string;
  let control: ControlConnection;
  let target: Server;
  let targetAddress: string;

  before(async () => {
    target = createServer((s) => s.on('error', () => {}));
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    targetAddress = `127.0.0.1:${(target.address() as { port: number }).port}`;
    const port = await freePort();
    const range = await freePortRange(8);
    // From a configuration file: the keys are the flags' names.
    const config = join(home, 's2cs.toml');
    writeFileSync(config, 'idle-stream-timeout = "3s"\nmax-stream-lifetime = "1h"\nbroken-grace = "1s"\n');
    s2cs = spawnCli('s2cs', ['start', '--config', config, '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--state-dir', join(home, 's2cs')], { env });
    await s2cs.waitFor(/s2cs ready/, { timeoutMs: 20_000 });
    address = `127.0.0.1:${port}`;
    control = new ControlConnection(address, { insecure: true, deadlineMs: 10_000 });
  });
  after(async () => {
    control?.close();
    if (s2cs) assert.equal(await s2cs.stop('SIGTERM', 10_000), 0, s2cs.describe());
    target?.close();
    rmSync(home, { recursive: true, force: true });
  });

  test('--lifetime 90s is sent and printed; the gateway shows the nearest deadline and releases the idle stream', async () => {
    const r = await run('s2uc', ['--insecure', 'outbound-request', '--s2cs', address, '--remote-listeners', targetAddress, '--num-conn', '1', '--lifetime', '90s', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { uid: string; lifetimeS: number };
    assert.equal(out.lifetimeS, 90);
    const s = (await control.status({ uid: out.uid })).streams[0]!;
    // The idle deadline (3 s) comes before the end of its lifetime (90 s).
    assert.ok(s.expires_in_s >= 1 && s.expires_in_s <= 3, `expires in ${s.expires_in_s} s`);
    const why = await until('the idle stream released', 8000, async () => {
      const st = await control.status({});
      return st.streams.some((x) => x.uid === out.uid) ? undefined : st.ended.find((e) => e.uid === out.uid)?.why;
    });
    assert.equal(why, 'idle: no connection for 3 s (--idle-stream-timeout)');
  });

  test('the human output says the lifetime; s2uc status shows when the gateway lets the stream go', async () => {
    const r = await run('s2uc', ['--insecure', 'outbound-request', '--s2cs', address, '--remote-listeners', targetAddress, '--num-conn', '1', '--lifetime', '2h']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^lifetime: 7200 s from the request; then the gateway releases the stream$/m);
    const st = await run('s2uc', ['--insecure', 'status', '--s2cs', address]);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /^ {4}expires {6}in [0-3]s$/m);
  });

  test('--broken-grace 1s: a stream whose connection was reset is released as broken a second after', async () => {
    const r = await run('s2uc', ['--insecure', 'outbound-request', '--s2cs', address, '--remote-listeners', targetAddress, '--num-conn', '1', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { uid: string; listeners: string[] };
    const [host, port] = out.listeners[0]!.split(':');
    const socket = connect({ host: host!, port: Number(port) });
    socket.on('error', () => {});
    await until('the connection forwarded', 5000, async () => ((await control.status({ uid: out.uid })).streams[0]?.active_connections === 1 ? true : undefined));
    const resetAt = Date.now();
    socket.resetAndDestroy();
    const why = await until('the broken stream released', 5000, async () => {
      const st = await control.status({});
      return st.streams.some((x) => x.uid === out.uid) ? undefined : st.ended.find((e) => e.uid === out.uid)?.why;
    });
    assert.match(why, /^broken: its last connection ended abnormally \(ECONNRESET\)/);
    assert.ok(Date.now() - resetAt >= 1000, `released ${Date.now() - resetAt} ms after the reset`);
  });

  test('a --lifetime that is not a duration is a usage error naming the flag', async () => {
    for (const bad of ['soon', '0', '-5m', '200y']) {
      const r = await run('s2uc', ['--insecure', 'outbound-request', '--s2cs', address, '--remote-listeners', targetAddress, '--lifetime', bad]);
      assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
      assert.match(r.stderr, /--lifetime/, bad);
    }
  });

  test('s2cs refuses an --idle-stream-timeout that is not a duration', async () => {
    const r = await run('s2cs', ['check-config', '--listener-ip', '127.0.0.1', '--idle-stream-timeout', 'forever']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /idle-stream-timeout.*invalid duration "forever"/);
  });
});
