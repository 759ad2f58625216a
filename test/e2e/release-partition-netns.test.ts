// Release during a partition of a remote agent (issue 18, points 6 and 8). Facility
// A has two gateway nodes: gwa runs s2cs with a local worker and drives gwa2's s2ds
// agent over the A LAN (mutual TLS). A 4-connection stream is spread over both; a
// slow consumer keeps its connections open. nftables in gwa2 then drops everything
// between gwa and gwa2 (a table of this test's own, removed at the heal): the
// agent link is cut, the data path (prod <-> gwa2 <-> WAN) is not. The user
// releases the stream on gwa: the release is reported partial, naming gwa2 and the
// connections it may still forward, s2uc exits non-zero, status shows the stream
// `releasing`; after the heal gwa2 releases its part (its connections end, its
// listeners close) and the stream is in status' ended list. Each step logs what the
// user saw and after how long. Needs root, iproute2 and nftables (CI installs them).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADDR, labForSuite, type NsProc } from '../support/netns.js';
import { LAB_CONTROL, requestLabStream, startLabAgent, startLabGateways } from '../support/lab-gateways.js';

const NUM_CONN = 4;
const PRODUCER_ADDR = `${ADDR.prod}:7000`;
const GWA = LAB_CONTROL.gwa;
const GWB = LAB_CONTROL.gwb;
const STEP = { timeout: 180_000 };
/** This test's own nftables table in gwa2's namespace. */
const TABLE = 's2test_partition';
/**
 * How long the partition lasts: long enough that TCP's retransmission backoff on the
 * agent link would delay its recovery well past the heal (s2cs renews the channel).
 */
const PARTITION_MS = 40_000;

// Connects to every listener and reads slowly (about 64 KiB/s each), so the stream
// lasts; prints each connection's byte count every 250 ms and how each one ended.
const SLOW_CONSUMER = `
const net = require('node:net');
const targets = process.argv[1].split(',');
const bytes = targets.map(() => 0);
const ended = targets.map(() => null);
const t0 = Date.now();
targets.forEach((t, i) => {
  const [host, port] = [t.slice(0, t.lastIndexOf(':')), Number(t.slice(t.lastIndexOf(':') + 1))];
  const s = net.connect({ host, port });
  s.on('data', (d) => { bytes[i] += d.length; s.pause(); setTimeout(() => s.resume(), 100); });
  s.on('error', (e) => { ended[i] ??= { how: e.code || e.message, atMs: Date.now() - t0 }; });
  s.on('close', () => { ended[i] ??= { how: 'closed', atMs: Date.now() - t0 }; });
});
setInterval(() => console.log(JSON.stringify({ atMs: Date.now() - t0, bytes, ended })), 250);
`;

interface ConsumerSample {
  atMs: number;
  bytes: number[];
  ended: ({ how: string; atMs: number } | null)[];
}

interface StatusJson {
  gateways: {
    streams: { uid: string; state: string; releasingOn?: string[]; listeners: string[] }[];
    ended: { uid: string; why: string; agoS: number }[];
    agents: { name: string; up: boolean }[];
  }[];
}

const logs = (...procs: (NsProc | undefined)[]) => procs.filter((p): p is NsProc => p !== undefined).map((p) => p.describe()).join('\n');

describe('release during a partition of a remote agent: reported partial, completed after the heal', () => {
  const L = labForSuite({
    secondGatewayA: true,
    beforeDestroy: async () => {
      if (partitioned) await heal().catch(() => undefined);
    },
  });
  let gwa: NsProc | undefined;
  let gwb: NsProc | undefined;
  let agent: NsProc | undefined;
  let producer: NsProc | undefined;
  let consumer: NsProc | undefined;
  let bundle = '';
  let uid = '';
  let prodListeners: string[] = [];
  let consListeners: string[] = [];
  let partitioned = false;
  let cutAt = 0;
  const s2uc = async (args: string[]) => {
    const started = Date.now();
    const p = L().cli('user', 's2uc', ['--server-cert', bundle, ...args]);
    const code = await p.exited;
    return { code, stdout: p.stdout(), stderr: p.stderr(), ms: Date.now() - started };
  };
  const status = async (): Promise<StatusJson> => {
    const r = await s2uc(['status', '--s2cs', GWA, '--json']);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    return JSON.parse(r.stdout) as StatusJson;
  };
  const lastSample = (): ConsumerSample => {
    const line = consumer!.stdout().trim().split('\n').at(-1) ?? '';
    return JSON.parse(line) as ConsumerSample;
  };
  /** Indices (in the stream's order) of the listeners on gwa2. */
  const onGwa2 = () => prodListeners.flatMap((l, i) => (l.startsWith(`${ADDR.gwa2Wan}:`) ? [i] : []));
  /**
   * Established connections on a node's listener ports (as the host sees them: ss), and
   * how many of them carried the stream's data: the consumer gateway also keeps a warm
   * connection per listener it used (src/s2ds/warm.ts), authenticated but unopened, which
   * has sent only its handshake (a few KiB).
   */
  const established = async (host: 'gwa' | 'gwa2', first: number, last: number): Promise<{ all: number; carrying: number }> => {
    const r = await L().run(host, ['ss', '-Htni', 'state', 'established', `( sport >= :${first} and sport <= :${last} )`], { check: true });
    // One line per socket, then its details on an indented line.
    const sockets = r.stdout.split('\n').filter((l) => l.trim() && !/^\s/.test(l)).length;
    const sent = [...r.stdout.matchAll(/\bbytes_sent:(\d+)/g)].map((m) => Number(m[1]));
    return { all: sockets, carrying: sent.filter((b) => b >= 64 * 1024).length };
  };
  const heal = async () => {
    if (!partitioned) return;
    await L().run('gwa2', ['nft', 'delete', 'table', 'inet', TABLE], { check: true });
    partitioned = false;
  };

  test('gwa2 runs an agent for gwa\'s s2cs; gwa runs s2cs with a local worker and that agent; gwb runs s2cs', STEP, async () => {
    const lab = L();
    const remote = await startLabAgent(lab);
    agent = remote.agent;
    ({ gwa, gwb, bundle } = await startLabGateways(lab, { workers: 1, gwaFlags: remote.gwaFlags }));
  });

  test('a 4-connection stream spread over gwa and gwa2 forwards to a slow consumer', STEP, async () => {
    const lab = L();
    assert.ok(gwa && gwb && agent, 'the gateways did not start (see the previous failure)');
    producer = lab.cli('prod', 's2app', ['produce', '--listen', PRODUCER_ADDR, '--bytes', '64GiB']);
    await producer.waitFor(/producer listening/, { stream: 'stdout' });
    uid = `partition-${randomBytes(6).toString('hex')}`;
    const map = await requestLabStream(lab, { bundle, uid, numConn: NUM_CONN, producer: PRODUCER_ADDR, show: [gwa, gwb, agent] });
    prodListeners = map.prodListeners;
    consListeners = map.consListeners;
    const n = onGwa2().length;
    assert.ok(n >= 1 && n < NUM_CONN, `the stream is spread over both A nodes: ${prodListeners.join(', ')}`);
    consumer = lab.node('cons', 'slow consumer', SLOW_CONSUMER, [consListeners.join(',')]);
    await consumer.waitFor(/"atMs"/, { stream: 'stdout' });
    const end = Date.now() + 30_000;
    while (!lastSample().bytes.every((b) => b > 0)) {
      assert.ok(Date.now() < end, `not every connection forwards: ${consumer.stdout().split('\n').at(-2)}\n${logs(gwa, gwb, agent)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // The agents' polls (each second) see the connections.
    await new Promise((r) => setTimeout(r, 2_500));
  });

  test('partition gwa2 from gwa, release on gwa: partial, naming gwa2 and its connections; s2uc exits 1; status shows releasing', STEP, async () => {
    const lab = L();
    assert.ok(consumer && uid, 'the stream was not set up (see the previous failure)');
    const rules = join(lab.dir, 'partition.nft');
    writeFileSync(
      rules,
      `table inet ${TABLE} {\n` +
        `  chain in { type filter hook input priority -10; policy accept; ip saddr ${ADDR.gwaLan} drop; }\n` +
        `  chain out { type filter hook output priority -10; policy accept; ip daddr ${ADDR.gwaLan} drop; }\n` +
        '}\n',
    );
    await lab.run('gwa2', ['nft', '-f', rules], { check: true });
    partitioned = true;
    cutAt = Date.now();
    await new Promise((r) => setTimeout(r, 1_000));
    const release = await s2uc(['release', uid, '--s2cs', GWA]);
    const n = onGwa2().length;
    console.log(`# release 1 s into the partition answered after ${release.ms} ms, exit ${release.code}: ${release.stderr.trim()}${release.stdout.trim()}`);
    assert.equal(release.code, 1, `s2uc release must not succeed while gwa2 holds its part\n${release.stdout}${release.stderr}\n${logs(gwa)}`);
    assert.doesNotMatch(release.stdout, /Release completed/);
    assert.match(release.stderr, new RegExp(`release of stream ${uid} is partial: data-server agent gwa2 \\(${n} connection\\(s\\)\\) did not answer`));
    assert.ok(release.ms < 15_000, `answered after ${release.ms} ms`);

    const s = await status();
    const st = s.gateways[0]!.streams.find((x) => x.uid === uid);
    assert.ok(st, `status lists the stream while it is being released: ${JSON.stringify(s)}`);
    assert.equal(st.state, 'releasing');
    assert.equal(st.releasingOn?.length, 1);
    assert.match(st.releasingOn![0]!, new RegExp(`^gwa2: ${n} connection\\(s\\) may still forward`));
    assert.equal(s.gateways[0]!.agents.find((a) => a.name === 'gwa2')?.up, false, 'gwa2 is marked down');
    console.log(`# status ${Math.round((Date.now() - cutAt) / 1000)} s into the partition: ${st.state}, ${st.releasingOn![0]}`);

    // A repeat says the same, never "completed".
    const again = await s2uc(['release', uid, '--s2cs', GWA]);
    assert.equal(again.code, 1, `${again.stdout}${again.stderr}`);
    assert.match(again.stderr, /is partial: data-server agent gwa2/);

    // What the gateways hold meanwhile: gwa's part is gone; gwa2's connections are up, as the message says.
    assert.equal((await established('gwa', 5100, 5120)).all, 0, 'gwa released its part: no data connection left on its listener ports');
    for (let i = 0; i < NUM_CONN; i++) {
      if (!onGwa2().includes(i)) assert.equal((await lab.tryConnect('user', prodListeners[i]!)).connected, false, `gwa's listener ${prodListeners[i]} is closed`);
    }
    await new Promise((r) => setTimeout(r, 2_000));
    const held = await established('gwa2', 5300, 5320);
    console.log(`# gwa2 during the partition: ${held.all} connection(s) established on its listener ports, ${held.carrying} carrying data (the rest warm, unopened)`);
    assert.equal(held.carrying, n, `gwa2 still holds its ${n} connection(s) during the partition`);
    for (const i of onGwa2()) assert.equal((await lab.tryConnect('user', prodListeners[i]!)).connected, true, `gwa2's listener ${prodListeners[i]} is still open during the partition`);
    console.log(`# consumer during the partition (bytes per connection, how each ended): ${JSON.stringify(lastSample())}`);

    // A request meanwhile goes to gwa only: gwa2 has not answered its polls.
    const other = `partition-new-${randomBytes(4).toString('hex')}`;
    const asked = Date.now();
    const placed = (await requestLabStream(lab, { bundle, uid: other, numConn: 2, producer: PRODUCER_ADDR, show: [gwa, gwb] })).prodListeners;
    console.log(`# a request ${Math.round((asked - cutAt) / 1000)} s into the partition was set up in ${Date.now() - asked} ms on ${placed.join(', ')}`);
    assert.ok(placed.every((l) => l.startsWith(`${ADDR.gwaWan}:`)), `placed on gwa only: ${placed.join(', ')}`);
    const done = await s2uc(['release', other, '--s2cs', GWA, '--s2cs', GWB]);
    assert.equal(done.code, 0, `${done.stdout}${done.stderr}`);
  });

  test('after the heal gwa2 releases its part: its connections end, its listeners close, the stream is in the ended list', STEP, async () => {
    const lab = L();
    assert.ok(partitioned, 'the partition was not made (see the previous failure)');
    // Still releasing all along.
    await new Promise((r) => setTimeout(r, Math.max(0, PARTITION_MS - (Date.now() - cutAt))));
    const still = (await status()).gateways[0]!.streams.find((x) => x.uid === uid);
    assert.equal(still?.state, 'releasing', `still releasing ${Math.round((Date.now() - cutAt) / 1000)} s into the partition`);
    assert.equal((await established('gwa2', 5300, 5320)).carrying, onGwa2().length, 'gwa2 still holds its connections until it hears the release');
    console.log(`# ${Math.round((Date.now() - cutAt) / 1000)} s into the partition: ${still.releasingOn![0]}; healing`);
    await heal();
    const healedAt = Date.now();
    let ended: { uid: string; why: string } | undefined;
    for (;;) {
      const s = await status();
      const g = s.gateways[0]!;
      ended = g.ended.find((e) => e.uid === uid);
      if (ended && !g.streams.some((x) => x.uid === uid)) break;
      assert.ok(Date.now() - healedAt < 30_000, `the stream is not released 30 s after the heal: ${JSON.stringify(s)}\n${logs(gwa, agent)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    const endedAfter = Date.now() - healedAt;
    console.log(`# ${endedAfter} ms after the heal status lists the stream as ended: ${ended.why}`);
    assert.match(ended.why, /^released by request; partial for \d+ s: data-server agent gwa2 did not answer, then released its part when it answered again$/);
    assert.equal((await established('gwa2', 5300, 5320)).all, 0, 'gwa2 released its part: no data connection left on its listener ports');
    console.log(`# consumer after the heal (bytes per connection, how each ended): ${JSON.stringify(lastSample())}`);
    for (const i of onGwa2()) {
      const r = await lab.tryConnect('user', prodListeners[i]!);
      assert.equal(r.connected, false, `gwa2's listener ${prodListeners[i]} still accepts after the release`);
    }
    // The consumer's side, and everything this test started.
    const cleanup = await s2uc(['release', uid, '--s2cs', GWB]);
    assert.equal(cleanup.code, 0, `${cleanup.stdout}${cleanup.stderr}`);
    await consumer!.stop('SIGTERM');
    await producer!.stop('SIGTERM');
    for (const p of [gwa, gwb]) assert.equal(await p!.stop('SIGTERM'), 0, p!.describe());
    assert.equal(await agent!.stop('SIGTERM'), 0, agent!.describe());
    assert.equal((await lab.run('gwa2', ['nft', 'list', 'tables'])).stdout.includes(TABLE), false, 'the partition table is gone');
  });
});
