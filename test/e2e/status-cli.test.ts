// `s2uc status` across several gateways, as separate processes: one of them stopped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnCli('s2uc', args);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

async function startS2cs(): Promise<{ proc: Proc; address: string }> {
  const port = await freePort();
  const range = await freePortRange(4);
  const proc = spawnCli('s2cs', ['start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`]);
  await proc.waitFor(/s2cs ready/);
  return { proc, address: `127.0.0.1:${port}` };
}

const escape = (s: string) => s.replace(/[.]/g, '\\.');

test('s2uc status --s2cs A --s2cs B --s2cs C with B stopped: A and C shown in order, one error line naming B, exit 1', async () => {
  const [a, b, c] = await Promise.all([startS2cs(), startS2cs(), startS2cs()]);
  try {
    assert.equal(await b.proc.stop(), 0);
    const args = ['--insecure', '--timeout', '5', 'status', '--s2cs', a.address, '--s2cs', b.address, '--s2cs', c.address];

    const human = await run(args);
    assert.equal(human.code, 1);
    assert.match(human.stdout, new RegExp(`^gateway ${escape(a.address)}: 0 streams, 0 ports reserved, 4 free\\n[^]*^gateway ${escape(c.address)}: `, 'm'));
    const errors = human.stderr.split('\n').filter((l) => l.startsWith('s2uc: error:'));
    assert.equal(errors.length, 1, human.stderr);
    assert.match(errors[0]!, new RegExp(`cannot reach s2cs at ${escape(b.address)}`));
    assert.doesNotMatch(human.stdout, new RegExp(escape(b.address)));

    const json = await run([...args, '--json']);
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout) as { gateways: { s2cs: string; error?: string; freePorts?: number; streams?: unknown[] }[] };
    assert.deepEqual(report.gateways.map((g) => g.s2cs), [a.address, b.address, c.address]);
    assert.equal(report.gateways[0]!.freePorts, 4);
    assert.deepEqual(report.gateways[2]!.streams, []);
    assert.match(report.gateways[1]!.error ?? '', new RegExp(escape(b.address)));
    assert.equal(Object.keys(report.gateways[1]!).sort().join(','), 'error,s2cs');

    const allUp = await run(['--insecure', 'status', '--s2cs', a.address, '--s2cs', c.address, '--json']);
    assert.equal(allUp.code, 0, allUp.stderr);
    assert.equal((JSON.parse(allUp.stdout) as { gateways: unknown[] }).gateways.length, 2);
  } finally {
    await Promise.all([a.proc.stop(), b.proc.stop(), c.proc.stop()]);
  }
});

test('s2uc status | head -1: the reader closing early is not an error', async () => {
  const a = await startS2cs();
  try {
    // A reader that is gone before s2uc writes (as `head -1` is after its line): the writes meet EPIPE.
    const p = spawnCli('s2uc', ['--insecure', 'status', '--s2cs', a.address, '--s2cs', a.address]);
    p.child.stdout!.destroy();
    const code = await p.exited;
    assert.equal(code, 0, p.stderr());
    assert.doesNotMatch(p.stderr(), /EPIPE|Unhandled|at .*\.js:\d+/);
  } finally {
    await a.proc.stop();
  }
});
