// Allow-lists and chosen ports as operators and users type them: s2cs started from
// a configuration file with data_allow_from (and its worker processes), reloaded on
// SIGHUP; s2uc outbound-request --allow-from --listener-ports. Every program a
// separate process; sources 127.0.0.1 and 127.0.0.2 on loopback.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePortRange, spawnCli } from '../../src/demo/procs.js';
import { echoServer, exchange } from '../support/sockets.js';

const HOME = mkdtempSync(join(tmpdir(), 'scistream-allow-cli-'));
process.env.SCISTREAM_HOME = HOME;
after(() => rmSync(HOME, { recursive: true, force: true }));

async function s2uc(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnCli('s2uc', ['--insecure', ...args]);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

test('s2cs data_allow_from (file, SIGHUP) and s2uc --allow-from --listener-ports, through worker processes', async () => {
  const echo = await echoServer();
  const target = `127.0.0.1:${echo.address.port}`;
  const range = await freePortRange(8);
  const file = join(HOME, 'gw.toml');
  const base = ['listener-ip = "127.0.0.1"', 'control-host = "127.0.0.1"', 'port = 0', `port-range = "${range.first}-${range.last}"`, 'insecure = true', 'auth = "none"', 'workers = 2', 'state-dir = "state"'];
  writeFileSync(file, [...base, 'data_allow_from = ["127.0.0.2"]'].join('\n'));
  const proc = spawnCli('s2cs', ['start', '--config', file]);
  try {
    const port = Number((await proc.waitFor(/s2cs ready: control on [^\s]+:(\d+)/))[1]);
    const gw = `127.0.0.1:${port}`;

    const chosen = range.first + 5;
    const r = await s2uc(['outbound-request', '--s2cs', gw, '--remote-listeners', target, '--num-conn', '1', '--allow-from', '127.0.0.0/8', '--listener-ports', String(chosen), '--json']);
    assert.equal(r.code, 0, r.stderr);
    const side = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { uid: string; listeners: string[] };
    assert.deepEqual(side.listeners, [`127.0.0.1:${chosen}`]);
    assert.deepEqual(await exchange(side.listeners[0]!, 'in', '127.0.0.2'), { data: 'in' });
    assert.equal((await exchange(side.listeners[0]!, 'out', '127.0.0.1')).error, 'ECONNRESET', 'outside the gateway bound: reset');

    // The port is held: the next request asking for it fails, naming it.
    const held = await s2uc(['outbound-request', '--s2cs', gw, '--remote-listeners', target, '--num-conn', '1', '--listener-ports', String(chosen)]);
    assert.notEqual(held.code, 0);
    assert.match(held.stderr, new RegExp(`${chosen} are held by another stream`));
    const outside = await s2uc(['outbound-request', '--s2cs', gw, '--remote-listeners', target, '--num-conn', '1', '--listener-ports', String(range.last + 1)]);
    assert.notEqual(outside.code, 0);
    assert.match(outside.stderr, new RegExp(`listener port ${range.last + 1} .*port range`));
    const bad = await s2uc(['outbound-request', '--s2cs', gw, '--remote-listeners', target, '--allow-from', '10.0.0.1/8']);
    assert.equal(bad.code, 2, 'a usage error, before anything is sent');
    assert.match(bad.stderr, /--allow-from\[0\].*host bits set/);

    // The bound lifted by a reload: a new stream takes anyone, the first keeps its list.
    const from = proc.stderr().length;
    writeFileSync(file, base.join('\n'));
    proc.child.kill('SIGHUP');
    await proc.waitFor(/reloaded: data-allow-from/, { from });
    const open = await s2uc(['outbound-request', '--s2cs', gw, '--remote-listeners', target, '--num-conn', '1', '--json']);
    assert.equal(open.code, 0, open.stderr);
    const openSide = JSON.parse(open.stdout.trim().split('\n').at(-1)!) as { listeners: string[] };
    assert.deepEqual(await exchange(openSide.listeners[0]!, 'any', '127.0.0.1'), { data: 'any' });
    assert.equal((await exchange(side.listeners[0]!, 'out', '127.0.0.1')).error, 'ECONNRESET');

    const status = await s2uc(['status', '--s2cs', gw, '--json']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /"allow-list"|allow-list/);
  } finally {
    await proc.stop('SIGTERM');
    echo.server.close();
  }
});
