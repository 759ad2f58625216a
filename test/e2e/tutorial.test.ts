// The seed tutorial, as a new user types it, against an s2cs started with defaults
// on loopback: `s2cs start --port=5000 --listener-ip=127.0.0.1`, `s2uc request1`
// with no options (localhost:5000, 5 connections, TLS pinned on first use), the
// producer's Hello, verified bytes through the gateway, `s2uc release UID`.
// It runs in a network namespace of its own, where port 5000 is surely free.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { labForSuite, type NsProc } from '../support/netns.js';

const STEP = { timeout: 60_000 };
const PRODUCER = ['7000', '17000', '27000', '37000', '47000'].map((p) => `127.0.0.1:${p}`).join(',');

describe('the seed tutorial on defaults on loopback', () => {
  const L = labForSuite();
  let s2cs: NsProc | undefined;
  let producer: NsProc | undefined;
  let uid = '';
  let listeners = '';
  const run = async (program: 's2uc' | 's2app', args: string[]) => {
    const p = L().cli('gwa', program, args);
    const code = await p.exited;
    return { code, stdout: p.stdout(), stderr: p.stderr(), describe: p.describe() };
  };

  test('s2cs start --port=5000 --listener-ip=127.0.0.1 starts, with plain-TCP data legs allowed on loopback', STEP, async () => {
    s2cs = L().cli('gwa', 's2cs', ['start', '--port=5000', '--listener-ip=127.0.0.1']);
    await s2cs.waitFor(/s2cs ready/, { timeoutMs: 20_000 });
    producer = L().cli('gwa', 's2app', ['produce', '--listen', PRODUCER, '--bytes', '1MiB', '--seed', '5']);
    await producer.waitFor(/producer listening on/, { timeoutMs: 20_000 });
  });

  test("s2uc request1 with no options waits for the producer's Hello, then prints the listeners", STEP, async () => {
    const request = L().cli('gwa', 's2uc', ['request1']);
    const m = await request.waitFor(/^uid: (\S+)$/m, { stream: 'stdout' });
    uid = m[1]!;
    const hello = await run('s2app', ['hello', '--s2cs', 'localhost:5000', '--uid', uid, '--role', 'PROD', '--listeners', PRODUCER]);
    assert.equal(hello.code, 0, hello.describe);
    const code = await request.exited;
    assert.equal(code, 0, request.describe());
    const l = /^listeners: (\S+)$/m.exec(request.stdout());
    assert.ok(l, request.describe());
    listeners = l[1]!;
    assert.equal(listeners.split(',').length, 5, 'the reference default of 5 connections');
    assert.doesNotMatch(request.stderr(), /error/i);
  });

  test('the bytes arrive, verified, on every listener', STEP, async () => {
    const r = await run('s2app', ['consume', '--connect', listeners, '--bytes', '1MiB', '--seed', '5']);
    assert.equal(r.code, 0, r.describe);
  });

  test('s2uc release UID (default localhost:5000) prints Release completed, twice', STEP, async () => {
    for (let i = 0; i < 2; i++) {
      const r = await run('s2uc', ['release', uid]);
      assert.equal(r.code, 0, r.describe);
      assert.match(r.stdout, new RegExp(`Release completed: ${uid}`));
    }
    await producer?.stop();
    assert.equal(await s2cs!.stop('SIGTERM'), 0, s2cs!.describe());
  });
});
