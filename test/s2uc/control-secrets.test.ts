// Where s2uc keeps the control secrets of the streams it set up: one file per uid and
// gateway, mode 600 in mode 700 directories, refused when others can read it, removed
// on release; and `s2uc release --control-secret` for secrets kept elsewhere.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlSecretStore } from '../../src/s2uc/control-secrets.js';
import { formatGatewayStatus, type GatewayStatus } from '../../src/s2uc/status.js';
import { spawnCli } from '../../src/demo/procs.js';

test('kept per uid and gateway, owner-only; a file others can read is refused; released ones are removed', () => {
  const home = mkdtempSync(join(tmpdir(), 'ss-secrets-'));
  try {
    const store = ControlSecretStore.forUser({ SCISTREAM_HOME: home });
    assert.equal(store.dir, join(home, 'control-secrets'));
    store.save('u-1', '10.0.0.1:5000', 'secret-a');
    store.save('u-1', '[2001:db8::1]:5000', 'secret-b');
    store.save('u-2', '10.0.0.1:5000', 'secret-c');
    assert.equal(store.read('u-1', '10.0.0.1:5000'), 'secret-a');
    assert.equal(store.read('u-1', '[2001:db8::1]:5000'), 'secret-b');
    assert.equal(store.read('u-1', '10.0.0.2:5000'), undefined);
    assert.equal(statSync(store.dir).mode & 0o777, 0o700);
    assert.equal(statSync(join(store.dir, 'u-1')).mode & 0o777, 0o700);
    assert.equal(statSync(store.path('u-1', '10.0.0.1:5000')).mode & 0o777, 0o600);
    assert.deepEqual(store.allFor('10.0.0.1:5000').sort(), ['secret-a', 'secret-c']);
    assert.throws(() => store.path('../x', '10.0.0.1:5000'), /uid/, 'a uid cannot leave the directory');
    chmodSync(store.path('u-2', '10.0.0.1:5000'), 0o644);
    assert.throws(() => store.read('u-2', '10.0.0.1:5000'), /accessible by other users .* may have leaked/);
    assert.deepEqual(store.allFor('10.0.0.1:5000'), ['secret-a'], 'status skips it');
    store.remove('u-1', '10.0.0.1:5000');
    assert.deepEqual(readdirSync(join(store.dir, 'u-1')), [encodeURIComponent('[2001:db8::1]:5000')]);
    store.remove('u-1', '[2001:db8::1]:5000');
    assert.deepEqual(readdirSync(store.dir), ['u-2'], "a uid's directory goes with its last secret");
    store.remove('u-1', '10.0.0.1:5000'); // already gone: nothing to do
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

test('s2uc release: one --control-secret (or SCISTREAM_CONTROL_SECRET) per --s2cs, or a usage error', async () => {
  const p = spawnCli('s2uc', ['--insecure', 'release', 'u-1', '--s2cs', '127.0.0.1:1', '--s2cs', '127.0.0.1:2', '--control-secret', 'only-one']);
  assert.equal(await p.exited, 2, p.describe());
  assert.match(p.stderr(), /--control-secret gives 1 secret\(s\) for 2 gateway\(s\); give one per --s2cs, comma-separated, in the same order/);
  const e = spawnCli('s2uc', ['--insecure', 'release', 'u-1', '--s2cs', '127.0.0.1:1'], { env: { ...process.env, SCISTREAM_CONTROL_SECRET: 'a,b' } });
  assert.equal(await e.exited, 2, e.describe());
  assert.match(e.stderr(), /SCISTREAM_CONTROL_SECRET gives 2 secret\(s\) for 1 gateway\(s\)/);
});

test("s2uc status says why another caller's stream shows no listeners", () => {
  const g: GatewayStatus = {
    s2cs: '127.0.0.1:5000', reservedPorts: 1, freePorts: 9, ratePolicy: 'none', capacityBps: 0, reservedBps: 0, refusals: {}, agents: [], ended: [],
    streams: [{
      uid: 'u-x', role: 'CONS', numConn: 1, rate: 0, capBps: 0, state: 'ready', owner: 'anonymous', ageS: 5, leaseRemainingS: 0,
      listeners: [], prodListeners: [], targets: [], bytesToTarget: 0, bytesFromTarget: 0, toTargetBps: 0, fromTargetBps: 0,
      activeConnections: 0, waitingConnections: 0, acceptedConnections: 0, refusedConnections: 0, redacted: true, brokenReason: '', expiresInS: 0,
    }],
  };
  const text = formatGatewayStatus(g);
  assert.match(text, /listeners +\(hidden: not shown to be yours/);
  assert.doesNotMatch(text, /not bound yet/);
});
