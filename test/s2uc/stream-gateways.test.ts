// s2uc remembers where a uid lives: `s2uc release UID` alone releases it on every gateway
// it was set up on (even after a request killed before its Hello); `request --json` prints
// the uid first, so that a script sends the Hello while s2uc waits; request1 says how.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCli, type Proc } from '../../src/demo/procs.js';
import { runCli as run, startCliGateway as startS2cs } from '../support/cli-gateway.js';
import { StreamGateways } from '../../src/s2uc/stream-gateways.js';

const HOME = mkdtempSync(join(tmpdir(), 'scistream-uid-home-'));
process.env.SCISTREAM_HOME = HOME;
after(() => rmSync(HOME, { recursive: true, force: true }));
const record = StreamGateways.inHome(HOME);

async function reservedPorts(address: string): Promise<number> {
  const st = await run('s2uc', ['--insecure', 'status', '--s2cs', address, '--json']);
  assert.equal(st.code, 0, st.stderr);
  return (JSON.parse(st.stdout) as { gateways: { reservedPorts: number }[] }).gateways[0]!.reservedPorts;
}

test('the record: gateways in order, mode 600 in a 700 directory, gone with its last gateway; refused when others can write it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'scistream-record-'));
  try {
    const r = StreamGateways.inHome(dir);
    assert.equal(r.gateways('u1'), undefined);
    r.record('u1', ['a:1', 'b:2']);
    r.record('u1', ['b:2', 'c:3']);
    assert.deepEqual(r.gateways('u1'), ['a:1', 'b:2', 'c:3']);
    assert.equal(statSync(r.path('u1')).mode & 0o777, 0o600);
    assert.equal(statSync(r.dir).mode & 0o777, 0o700);
    r.forget('u1', 'b:2');
    r.forget('u1', 'x:9');
    assert.deepEqual(r.gateways('u1'), ['a:1', 'c:3']);
    r.forget('u1', 'a:1');
    r.forget('u1', 'c:3');
    assert.equal(existsSync(r.path('u1')), false);
    assert.throws(() => r.record('../x', ['a:1']), /uid/);
    r.record('u2', ['a:1']);
    chmodSync(r.path('u2'), 0o622);
    assert.throws(() => r.gateways('u2'), /writable by other users/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe('s2uc with two real gateways', () => {
  let prod: { proc: Proc; address: string };
  let cons: { proc: Proc; address: string };
  before(async () => {
    [prod, cons] = await Promise.all([startS2cs(), startS2cs()]);
  });
  after(async () => {
    assert.equal(await prod.proc.stop(), 0);
    assert.equal(await cons.proc.stop(), 0);
  });

  test('request --json: the uid line first, the Hello sent from it while s2uc waits, the result last; release UID alone frees both gateways', async () => {
    const request = spawnCli('s2uc', ['--insecure', 'request', '--prod-s2cs', prod.address, '--cons-s2cs', cons.address, '--num-conn', '2', '--json']);
    try {
      const firstText = (await request.waitFor(/^(\{.*\})$/m, { stream: 'stdout' }))[1]!;
      const first = JSON.parse(firstText) as { uid: string; prodS2cs: string; consS2cs: string; prodControlSecret?: string; consControlSecret?: string };
      assert.equal(request.running(), true, 'the first line comes while s2uc waits for the Hello');
      assert.deepEqual([first.prodS2cs, first.consS2cs], [prod.address, cons.address]);
      assert.match(first.prodControlSecret ?? '', /^.{20,}$/, firstText);
      assert.match(first.consControlSecret ?? '', /^.{20,}$/, firstText);
      assert.deepEqual(record.gateways(first.uid), [prod.address, cons.address]);
      // The hint on stderr, once, with the command line that sends the Hello.
      await request.waitFor(/waiting for the producer's Hello/, { stream: 'stderr' });
      assert.ok(request.stderr().includes(`s2app hello --insecure --uid ${first.uid} --s2cs ${prod.address} --role PROD --listeners HOST:PORT[,...]`), request.stderr());
      assert.equal(request.stderr().match(/waiting for the producer's Hello/g)?.length, 1);

      const hello = await run('s2app', ['hello', '--insecure', '--s2cs', prod.address, '--uid', first.uid, '--role', 'PROD', '--listeners', '127.0.0.1:9']);
      assert.equal(hello.code, 0, hello.stderr);
      assert.equal(await request.exited, 0, request.describe());
      const lines = request.stdout().trim().split('\n');
      assert.equal(lines.length, 2, request.stdout());
      assert.equal(lines[0], firstText);
      const map = JSON.parse(lines[1]!) as { uid: string; consListeners: string[]; prodControlSecret: string };
      assert.equal(map.uid, first.uid);
      assert.equal(map.consListeners.length, 2);
      assert.equal(map.prodControlSecret, first.prodControlSecret);
      assert.equal(await reservedPorts(prod.address), 2);

      const release = await run('s2uc', ['--insecure', 'release', first.uid]);
      assert.equal(release.code, 0, release.stderr);
      assert.deepEqual(release.stdout.trim().split('\n'), [`Release completed: ${first.uid} on ${prod.address}`, `Release completed: ${first.uid} on ${cons.address}`]);
      assert.equal(await reservedPorts(prod.address), 0);
      assert.equal(await reservedPorts(cons.address), 0);
      assert.equal(existsSync(record.path(first.uid)), false, 'the record is gone once released everywhere');
    } finally {
      await request.stop('SIGKILL');
    }
  });

  test('a request killed before its Hello (no chance to release) is released on both gateways by s2uc release UID', async () => {
    const uid = 'killed-before-hello';
    const request = spawnCli('s2uc', ['--insecure', 'request', '--prod-s2cs', prod.address, '--cons-s2cs', cons.address, '--num-conn', '1', '--uid', uid]);
    await request.waitFor(/waiting for the producer's Hello/, { stream: 'stderr' });
    await request.stop('SIGKILL');
    assert.equal(await reservedPorts(prod.address), 1);
    assert.equal(await reservedPorts(cons.address), 1);
    const release = await run('s2uc', ['--insecure', 'release', uid]);
    assert.equal(release.code, 0, release.stderr);
    assert.match(release.stdout, new RegExp(`on ${prod.address}\\n.*on ${cons.address}`));
    assert.equal(await reservedPorts(prod.address), 0);
    assert.equal(await reservedPorts(cons.address), 0);
    // Again: no record now; it says so and goes to the default gateway as before.
    const again = await run('s2uc', ['--insecure', '--timeout', '2', 'release', uid]);
    assert.match(again.stderr, /no record of where killed-before-hello was set up .*: releasing on localhost:5000 only; name each gateway with --s2cs/);
  });

  test('request (human) ends with the release command; request1 --json says how to send the Hello it waits for', async () => {
    const request = spawnCli('s2uc', ['--insecure', 'request', '--prod-s2cs', prod.address, '--cons-s2cs', cons.address, '--num-conn', '1']);
    const uid = (await request.waitFor(/^uid: (\S+)$/m))[1]!;
    assert.equal((await run('s2app', ['hello', '--insecure', '--s2cs', prod.address, '--uid', uid, '--role', 'PROD', '--listeners', '127.0.0.1:9'])).code, 0);
    assert.equal(await request.exited, 0, request.describe());
    assert.equal(request.stdout().trim().split('\n').at(-1), `to release it: s2uc --insecure release ${uid}`);
    assert.equal((await run('s2uc', ['--insecure', 'release', uid])).code, 0);

    const one = spawnCli('s2uc', ['--insecure', 'request1', '--s2cs', prod.address, '--num-conn', '1', '--uid', 'one-gateway', '--json']);
    try {
      await one.waitFor(/waiting for the producer's Hello at \S+; its application controller sends it with: s2app hello --insecure --uid one-gateway --s2cs \S+ --role PROD --listeners/, { stream: 'stderr' });
      assert.equal((await run('s2app', ['hello', '--insecure', '--s2cs', prod.address, '--uid', 'one-gateway', '--role', 'PROD', '--listeners', '127.0.0.1:9'])).code, 0);
      assert.equal(await one.exited, 0, one.describe());
      assert.equal((JSON.parse(one.stdout()) as { uid: string }).uid, 'one-gateway');
      const release = await run('s2uc', ['--insecure', 'release', 'one-gateway']);
      assert.equal(release.stdout.trim(), `Release completed: one-gateway on ${prod.address}`);
      assert.equal(await reservedPorts(prod.address), 0);
    } finally {
      await one.stop('SIGKILL');
    }
  });
});
