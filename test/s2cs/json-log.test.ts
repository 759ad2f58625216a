// Every line s2cs writes with --log-format json is one JSON object with no key
// twice: real s2cs processes (two s2ds workers; an s2ds agent over TCP with mutual
// TLS) through a request/release cycle with bytes, a refusal and a stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlConnection } from '../../src/protocol/client.js';
import { freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { startProducer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';
import { formatAddress, parseAddress } from '../../src/protocol/address.js';
import { createSelfSigned } from '../../src/security/certificates.js';
import { startAgentProcess } from '../support/agent.js';
import { parseStrictJson } from '../support/strict-json.js';

const BYTES = 2 * 1024 * 1024;

/** Every non-empty line of `text` parsed strictly: an object, no key twice. Returns how many lines. */
function everyLineStrict(who: string, text: string): number {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  for (const [n, line] of lines.entries()) {
    let parsed: unknown;
    try {
      parsed = parseStrictJson(line);
    } catch (err) {
      assert.fail(`${who} line ${n + 1} is not strict JSON: ${(err as Error).message}`);
    }
    assert.ok(parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed), `${who} line ${n + 1} is not a JSON object: ${line}`);
  }
  return lines.length;
}

/** req (PROD, 2 connections), bytes through it, release; then a release of a uid nobody has (a refusal is logged). */
async function cycle(client: ControlConnection, uid: string): Promise<void> {
  const producer = await startProducer({ listen: [{ host: '127.0.0.1', port: 0 }], bytes: BYTES, seed: 7 });
  try {
    await client.hello({ uid, role: 'PROD', prod_listeners: producer.addresses.map(formatAddress) });
    const r = await client.req({ uid, role: 'PROD', num_conn: 2, rate: 0 });
    await client.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
    const got = await consume({ connect: r.listeners.map((l) => parseAddress(l)), bytes: BYTES, seed: 7 });
    assert.equal(got.bytes, 2 * BYTES);
    await client.status({ uid: '' });
    await client.release({ uid });
    await assert.rejects(client.update({ uid: 'no-such-stream', remote_listeners: ['127.0.0.1:9'], role: 'PROD' }));
  } finally {
    await producer.close();
  }
}

test('the strict reader refuses a repeated key, as a log line with two "agent" values had', () => {
  assert.throws(() => parseStrictJson('{"level":30,"agent":"10.1.0.2:7200","agent":"vm 10.1.0.2:7200"}'), /duplicate key "agent"/);
  assert.throws(() => parseStrictJson('{"a":{"b":1,"b":2}}'), /duplicate key "b" in .a/);
  assert.deepEqual(parseStrictJson('{"a":[1,{"b":"x\\"y"}],"c":null}'), { a: [1, { b: 'x"y' }], c: null });
});

test('s2cs --workers 2 --log-format json: every stderr line (its own and its workers\') is strict JSON', async () => {
  const dir = mkdtempSync(join(tmpdir(), 's2cs-jsonlog-'));
  const range = await freePortRange(8);
  const s2cs = spawnCli('s2cs', [
    'start', '--insecure', '--port', '0', '--control-host', '127.0.0.1', '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`,
    '--state-dir', dir, '--workers', '2', '--allow-plaintext-data', '--log-format', 'json', '--verbose',
  ]);
  let client: ControlConnection | undefined;
  try {
    const port = Number((await s2cs.waitFor(/s2cs ready: control on [^\s]+:(\d+)/, { timeoutMs: 30_000 }))[1]);
    client = new ControlConnection(`127.0.0.1:${port}`, { insecure: true, deadlineMs: 10_000 });
    await cycle(client, 'jsonlog-workers');
  } finally {
    client?.close();
    await s2cs.stop('SIGTERM', 10_000);
    rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(everyLineStrict('s2cs', s2cs.stderr()) > 5, s2cs.describe());
});

test('s2cs --s2ds (an agent over TCP, mutual TLS) --log-format json: every line of s2cs and of the agent is strict JSON', async () => {
  const dir = mkdtempSync(join(tmpdir(), 's2cs-jsonlog-'));
  const identity = await createSelfSigned({ commonName: 'test s2cs', names: ['127.0.0.1', 'localhost'], validDays: 1 });
  const agent = await startAgentProcess({ tcp: true, s2cs: identity, extra: ['--log-format', 'json', '--name', 'vm'] });
  let s2cs: Proc | undefined;
  let client: ControlConnection | undefined;
  try {
    const cert = join(dir, 's2cs.pem');
    const key = join(dir, 's2cs.key');
    const agentCert = join(dir, 'agent.pem');
    writeFileSync(cert, identity.cert);
    writeFileSync(key, identity.key, { mode: 0o600 });
    writeFileSync(agentCert, agent.agentCert!);
    const range = await freePortRange(4);
    s2cs = spawnCli('s2cs', [
      'start', '--port', '0', '--control-host', '127.0.0.1', '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`,
      '--state-dir', join(dir, 'state'), '--tls-cert', cert, '--tls-key', key, '--s2ds', agent.address, '--s2ds-cert', agentCert,
      '--allow-plaintext-data', '--log-format', 'json', '--verbose',
    ]);
    const port = Number((await s2cs.waitFor(/s2cs ready: control on [^\s]+:(\d+)/, { timeoutMs: 30_000 }))[1]);
    client = await ControlConnection.open(`127.0.0.1:${port}`, { insecure: false, tls: { serverCert: cert }, deadlineMs: 10_000 });
    await cycle(client, 'jsonlog-agent').catch((err: unknown) => assert.fail(`${String(err)}\n${s2cs!.describe()}`));
    // The agent goes away and comes back: s2cs logs it down, then up (lines that name the agent).
    agent.proc.child.kill('SIGSTOP');
    await s2cs.waitFor(/data-server agent is down/, { timeoutMs: 20_000 });
    agent.proc.child.kill('SIGCONT');
    await s2cs.waitFor(/answers: taking it back|data-server agent is up/, { timeoutMs: 20_000, from: s2cs.stderr().lastIndexOf('data-server agent is down') });
  } finally {
    client?.close();
    await s2cs?.stop('SIGTERM', 10_000);
    await agent.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(everyLineStrict('s2cs', s2cs.stderr()) > 5, s2cs.describe());
  assert.match(s2cs.stderr(), /"agent":"vm"/, 'the lines name the agent by its name');
  everyLineStrict('s2ds', agent.proc.stderr());
});
