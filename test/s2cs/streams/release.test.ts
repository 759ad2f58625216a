// The stream table's release when a data-server agent does not answer (issue 18,
// point 6), through a real s2cs on loopback and two real agent processes, one made
// silent with SIGSTOP: the release is DEADLINE_EXCEEDED naming the agent (a repeat
// too), status shows the stream releasing with that agent, its uid is not reusable
// and its ports stay counted; after SIGCONT the stream ends, listed with how.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { ControlConnection, RemoteError } from '../../../src/protocol/client.js';
import { RemoteAgent } from '../../../src/s2ds/remote.js';
import { silentLogger } from '../../../src/log.js';
import { startGateway } from '../../support/gateway.js';
import { startAgentProcess, tempDir } from '../../support/agent.js';
import { PYTHON, generatePythonStubs } from '../../support/python.js';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const REFERENCE_LIKE = fileURLToPath(new URL('../../../../test/e2e/reference_like_client.py', import.meta.url));

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('release with a silent agent: partial and named, status releasing, uid held, ended with how once the agent answers', async () => {
  const a = await startAgentProcess({ ports: 4 });
  const b = await startAgentProcess({ ports: 4 });
  const ra = new RemoteAgent({ address: a.address, name: 'a' });
  const rb = new RemoteAgent({ address: b.address, name: 'b' });
  const gw = await startGateway({ agents: [ra, rb], spareListeners: 0, logger: silentLogger });
  const uid = randomUUID();
  // Requested as a reference client would (bound to its address, no control secret), so that the Python client below may release it.
  const client = new ControlConnection(gw.address, { insecure: true, deadlineMs: 10_000, bindBySecret: false });
  try {
    await until('both agents answer', () => (ra.answering() && rb.answering()) || undefined);
    await client.req({ uid, role: 'CONS', num_conn: 4, rate: 0 });
    assert.equal(gw.server.pool!.sharesOf(uid)!.length, 2, 'spread over both agents');
    b.proc.child.kill('SIGSTOP');
    const err = await client.release({ uid }).then(
      () => assert.fail('the release must not say OK'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof RemoteError, String(err));
    assert.equal(err.status, 'DEADLINE_EXCEEDED');
    assert.match(err.details, new RegExp(`^release of stream ${uid} is partial: data-server agent ${rb.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(0 connection\\(s\\)\\) did not answer`));

    const st = gw.server.status({ subject: '', seesAll: true }).streams.find((s) => s.uid === uid);
    assert.equal(st?.state, 'releasing');
    assert.equal(st.releasing_on.length, 1);
    assert.ok(st.releasing_on[0]!.startsWith(`${rb.name}: 0 connection(s) may still forward`), st.releasing_on[0]);
    const again = await client.release({ uid }).catch((e: unknown) => e);
    assert.ok(again instanceof RemoteError && again.status === 'DEADLINE_EXCEEDED', String(again));
    // A reference client does not print "Release completed": it prints its release error.
    const py = tempDir('scistream-refrel-');
    try {
      generatePythonStubs(py);
      // Not spawnSync: this s2cs runs in this process and must answer meanwhile.
      const child = spawn(PYTHON, [REFERENCE_LIKE, 'release', '--insecure', '--s2cs', gw.address, uid], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SCISTREAM_PY_STUBS: py } });
      const ref = { stdout: '', stderr: '' };
      child.stdout.on('data', (d: Buffer) => (ref.stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (ref.stderr += d.toString()));
      await new Promise((resolve) => child.on('close', resolve));
      assert.doesNotMatch(ref.stdout, /Release completed/, ref.stdout + ref.stderr);
      assert.match(ref.stdout, /Error during release: [\s\S]*DEADLINE_EXCEEDED[\s\S]*is partial: data-server agent/, ref.stdout + ref.stderr);
    } finally {
      rmSync(py, { recursive: true, force: true });
    }
    const reuse = await client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 }).catch((e: unknown) => e);
    assert.ok(reuse instanceof RemoteError && reuse.status === 'ALREADY_EXISTS' && /is still being released here/.test(reuse.details), String(reuse));

    b.proc.child.kill('SIGCONT');
    const ended = await until('the stream to end', () => {
      const s = gw.server.status({ subject: '', seesAll: true });
      return s.streams.some((x) => x.uid === uid) ? undefined : s.ended.find((e) => e.uid === uid);
    });
    assert.match(ended.why, /^released by request; partial for \d+ s: data-server agent .* did not answer, then released its part when it answered again$/);
    await client.release({ uid });
    await until('b holds nothing', () => {
      void rb.poll();
      return rb.ports().reserved === 0 || undefined;
    });
    // The uid is free again.
    await client.req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    await client.release({ uid });
  } finally {
    client.close();
    b.proc.child.kill('SIGCONT');
    await gw.close();
    await a.close();
    await b.close();
  }
});
