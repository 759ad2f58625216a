// Data-server agents on several gateway nodes (issue 11, item 6). Facility A has
// two gateway nodes: gwa runs s2cs and one local worker, gwa2 runs an s2ds agent
// that gwa's s2cs drives over the A LAN with mutual TLS; facility B has one node.
// A 4-connection stream is spread over both A nodes; s2cs on gwa is killed with -9
// mid-stream and the stream completes with every byte verified; the restarted s2cs
// takes the stream back (status shows it) and release frees the listeners on both
// nodes. Needs root and iproute2 (CI installs them); without them it fails, saying so.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ADDR, labForSuite, type NsProc } from '../support/netns.js';
import { LAB_CONTROL, requestLabStream, startLabAgent, startLabGateways } from '../support/lab-gateways.js';

const NUM_CONN = 4;
const BYTES_PER_CONN = '512MiB';
const SEED = '17';
const PRODUCER_ADDR = `${ADDR.prod}:7000`;
const GWA = LAB_CONTROL.gwa;
const GWB = LAB_CONTROL.gwb;
const STEP = { timeout: 180_000 };

const logs = (...procs: (NsProc | undefined)[]) => procs.filter((p): p is NsProc => p !== undefined).map((p) => p.describe()).join('\n');

describe('S2DS agents on two gateway nodes: a stream survives kill -9 of s2cs and is taken back', () => {
  const L = labForSuite({ secondGatewayA: true });
  let gwa: NsProc | undefined;
  let gwb: NsProc | undefined;
  let agent: NsProc | undefined;
  let producer: NsProc | undefined;
  let gwaArgs: string[] = [];
  let bundle = '';
  let uid = '';
  let prodListeners: string[] = [];
  let consListeners: string[] = [];
  const runIn = async (host: 'user', program: 's2uc', args: string[]) => {
    const p = L().cli(host, program, args);
    const code = await p.exited;
    return { code, stdout: p.stdout(), stderr: p.stderr() };
  };

  test('gwa2 runs an agent that accepts only gwa\'s s2cs; gwa runs s2cs with a local worker and that agent; gwb runs s2cs', STEP, async () => {
    const lab = L();
    const remote = await startLabAgent(lab);
    agent = remote.agent;
    ({ gwa, gwb, bundle, gwaArgs } = await startLabGateways(lab, { workers: 1, gwaFlags: remote.gwaFlags }));
  });

  test('a 4-connection stream is spread over both A nodes', STEP, async () => {
    const lab = L();
    assert.ok(gwa && gwb && agent, 'the gateways did not start (see the previous failure)');
    producer = lab.cli('prod', 's2app', ['produce', '--listen', PRODUCER_ADDR, '--bytes', BYTES_PER_CONN, '--seed', SEED]);
    await producer.waitFor(/producer listening/, { stream: 'stdout' });
    uid = `agents-${randomBytes(6).toString('hex')}`;
    const map = await requestLabStream(lab, { bundle, uid, numConn: NUM_CONN, producer: PRODUCER_ADDR, show: [gwa, gwb, agent] });
    prodListeners = map.prodListeners;
    consListeners = map.consListeners;
    const onGwa = prodListeners.filter((l) => l.startsWith(`${ADDR.gwaWan}:`)).length;
    const onGwa2 = prodListeners.filter((l) => l.startsWith(`${ADDR.gwa2Wan}:`)).length;
    assert.equal(onGwa + onGwa2, NUM_CONN, `every listener is on one of the A nodes: ${prodListeners.join(', ')}`);
    assert.ok(onGwa >= 1 && onGwa2 >= 1, `the stream is spread over both A nodes: ${prodListeners.join(', ')}`);
  });

  test('kill -9 of gwa\'s s2cs mid-stream: the stream completes with every byte verified', STEP, async () => {
    const lab = L();
    assert.ok(gwa && consListeners.length === NUM_CONN, 'the stream was not set up (see the previous failure)');
    const consumer = lab.cli('cons', 's2app', ['consume', '--connect', consListeners.join(','), '--bytes', BYTES_PER_CONN, '--seed', SEED, '--json']);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(consumer.running(), `the stream ended before s2cs could be killed mid-stream; raise BYTES_PER_CONN\n${consumer.describe()}`);
    gwa.child.kill('SIGKILL');
    assert.equal(await gwa.exited, 128 + 9);
    const code = await consumer.exited;
    assert.equal(code, 0, `the consumer did not get every byte after s2cs was killed\n${logs(consumer, agent, gwb)}`);
    const result = JSON.parse(consumer.stdout().trim().split('\n').at(-1) ?? '{}') as { ok?: boolean; connections?: number };
    assert.equal(result.ok, true);
    assert.equal(result.connections, NUM_CONN);
  });

  test('the restarted s2cs takes the stream back: status shows it; release frees the listeners on both nodes', STEP, async () => {
    const lab = L();
    assert.ok(uid && gwaArgs.length > 0, 'the stream was not set up (see the previous failures)');
    gwa = lab.cli('gwa', 's2cs', gwaArgs);
    await gwa.waitFor(/s2cs ready/, { stream: 'stderr' });
    const status = await runIn('user', 's2uc', ['--server-cert', bundle, 'status', uid, '--s2cs', GWA, '--json']);
    assert.equal(status.code, 0, `${status.stdout}${status.stderr}\n${logs(gwa)}`);
    const s = JSON.parse(status.stdout) as {
      gateways: { streams: { uid: string; state: string; owner: string; listeners: string[] }[]; agents: { name: string; up: boolean; listenerIp: string; streams: number }[] }[];
    };
    const agents = s.gateways[0]?.agents ?? [];
    assert.equal(agents.length, 2, `status lists the local worker and gwa2's agent: ${status.stdout}`);
    assert.ok(agents.every((a) => a.up && a.streams === 1), `both agents up, each with a share of the stream: ${status.stdout}`);
    assert.deepEqual(agents.map((a) => a.listenerIp).sort(), [ADDR.gwaWan, ADDR.gwa2Wan].sort());
    const st = s.gateways[0]?.streams.find((x) => x.uid === uid);
    assert.ok(st, `the restarted s2cs does not list stream ${uid}: ${status.stdout}\n${gwa.describe()}`);
    assert.equal(st.state, 'ready');
    assert.deepEqual([...st.listeners].sort(), [...prodListeners].sort());

    const release = await runIn('user', 's2uc', ['--server-cert', bundle, 'release', uid, '--s2cs', GWA, '--s2cs', GWB]);
    assert.equal(release.code, 0, `${release.stdout}${release.stderr}\n${logs(gwa, gwb)}`);
    for (const l of prodListeners) {
      const r = await lab.tryConnect('user', l);
      assert.equal(r.connected, false, `listener ${l} still accepts connections after release`);
    }
    for (const p of [gwa, gwb]) assert.equal(await p!.stop('SIGTERM'), 0, p!.describe());
    assert.equal(await agent!.stop('SIGTERM'), 0, agent!.describe());
  });
});
