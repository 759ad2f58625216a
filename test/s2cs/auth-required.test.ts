// The start-up rule of issue 18, point 5: without an authentication provider, s2cs
// serves its control port only on loopback unless --auth none says so knowingly; with
// a loopback --listener-ip and no --control-host, the control port is on loopback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCli, freePortRange } from '../../src/demo/procs.js';
import { ControlConnection } from '../../src/protocol/client.js';

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnCli('s2cs', args);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** The local addresses listening on `port` (TCP, v4 and v6), from /proc/net. */
function listeningOn(port: number): string[] {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const found: string[] = [];
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] !== '0A') continue; // LISTEN
      const [addr, p] = cols[1]!.split(':');
      if (p === hex) found.push(addr!);
    }
  }
  return found;
}

test('no provider and a control port that is not loopback: exit 2 asking for --auth introspect|jwt or an explicit --auth none', async () => {
  const range = await freePortRange(2);
  const r = await run(['start', '--insecure', '--port', '0', '--listener-ip', '127.0.0.1', '--control-host', '0.0.0.0', '--port-range', `${range.first}-${range.last}`, '--workers', '0']);
  assert.equal(r.code, 2, r.stderr);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^s2cs: error: no authentication provider is configured and the control port would listen on 0\.0\.0\.0, which is not loopback/);
  assert.match(lines[0]!, /--auth introspect or --auth jwt/);
  assert.match(lines[0]!, /--auth none to run without token checking knowingly/);
  // check-config says the same, and a non-loopback --listener-ip without --control-host is the same case
  // (the data listeners on loopback: check-config, as start, refuses an address that is not on this host).
  const foreign = ['--listener-ip', '198.51.100.7', '--bind-ip', '127.0.0.1', '--port', '0'];
  const c = await run(['check-config', ...foreign]);
  assert.equal(c.code, 2, c.stderr);
  assert.match(c.stderr, /control port would listen on 0\.0\.0\.0, which is not loopback/);
  const ok = await run(['check-config', ...foreign, '--auth', 'none', '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const settings = new Map((JSON.parse(ok.stdout) as { settings: { key: string; value: unknown }[] }).settings.map((s) => [s.key, s.value]));
  assert.equal(settings.get('control-host'), '0.0.0.0');
});

test('an explicit --auth none serves every address, with the warning', async () => {
  const range = await freePortRange(2);
  const dir = mkdtempSync(join(tmpdir(), 'ss-authreq-'));
  const proc = spawnCli('s2cs', ['start', '--insecure', '--auth', 'none', '--port', '0', '--listener-ip', '127.0.0.1', '--control-host', '0.0.0.0', '--port-range', `${range.first}-${range.last}`, '--workers', '0', '--state-dir', dir]);
  try {
    const port = Number((await proc.waitFor(/s2cs ready: control on 0\.0\.0\.0:(\d+)/))[1]);
    assert.match(proc.stderr() + proc.stdout(), /no authentication \(--auth none\)/);
    assert.deepEqual(listeningOn(port), ['00000000']);
  } finally {
    const code = await proc.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, proc.describe());
  }
});

test('--listener-ip 127.0.0.1 without --control-host: the control port is on loopback, and the tutorial defaults run', async () => {
  const range = await freePortRange(2);
  const dir = mkdtempSync(join(tmpdir(), 'ss-authreq-'));
  const proc = spawnCli('s2cs', ['start', '--insecure', '--port', '0', '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--workers', '0', '--state-dir', dir]);
  let client: ControlConnection | undefined;
  try {
    const port = Number((await proc.waitFor(/s2cs ready: control on 127\.0\.0\.1:(\d+)/))[1]);
    assert.deepEqual(listeningOn(port), ['0100007F']);
    client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
    assert.equal((await client.capabilities()).implementation, 'scistream-ts');
  } finally {
    client?.close();
    const code = await proc.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(code, 0, proc.describe());
  }
});
