// Faults on the WAN leg between two gateways, mid-stream (issue 18, points 1 and 8):
// the two-facility lab of test/support/netns.ts, a stream from the producer host
// through both gateways to the consumer host, and nftables rules in gateway B's
// namespace (a table of our own, removed at the end) on the WAN data connections:
//   (a) a 1 s burst of `reject with tcp reset`, (b) a black hole (drop, kept), both
//       with --wan-dead-after 5: BOTH applications must see an error, never a clean
//       end, within wan-dead-after plus a few seconds (before: the consumer hung for
//       387+ s after (a), 21.5 min after (b));
//   (c) a 5 s outage (drop, then removed) with the default 30 s: every byte verified
//       at the consumer.
// What each application saw and after how long is printed as test diagnostics.
// Needs root, iproute2 and nftables (CI installs them, .ci/run).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ADDR, labForSuite, type NsProc } from '../support/netns.js';
import { LAB_CONTROL, requestLabStream, startLabGateways, type LabStreamMap } from '../support/lab-gateways.js';
import { until } from '../support/until.js';

const NUM_CONN = 2;
const PORT_RANGE = '5100-5120';
const GWA = LAB_CONTROL.gwa;
const GWB = LAB_CONTROL.gwb;
const DEAD_AFTER_S = 5;
/** What "a few seconds" past wan-dead-after may take: a sweep, the other side's own detection, process scheduling. */
const SLACK_MS = 5_000;
const TABLE = 'scistream_wan_fault';
const STEP = { timeout: 60_000 };
/** Each gateway's /metrics, inside its own namespace. */
const METRICS = '127.0.0.1:9464';

/**
 * A producer that never ends on its own: on each connection, 64 KiB every 10 ms while
 * the socket takes it. One JSON line per event, with the time (ms since the epoch:
 * namespaces share the clock).
 */
const PRODUCER_SCRIPT = `
const [host, port] = process.argv.slice(1);
const chunk = Buffer.alloc(64 * 1024, 7);
let n = 0;
const log = (o) => console.log(JSON.stringify({ ...o, t: Date.now() }));
require('node:net').createServer({ allowHalfOpen: true }, (s) => {
  const id = ++n;
  let sent = 0;
  log({ ev: 'accepted', id });
  const timer = setInterval(() => { if (s.writable && s.writableLength === 0) { s.write(chunk); sent += chunk.length; } }, 10);
  s.on('data', () => {});
  s.on('error', (e) => log({ ev: 'error', id, code: e.code || e.message, sent }));
  s.on('end', () => log({ ev: 'end', id, sent }));
  s.on('close', (hadError) => { clearInterval(timer); log({ ev: 'close', id, hadError, sent }); });
}).listen(Number(port), host, () => log({ ev: 'listening' }));
process.on('SIGTERM', () => process.exit(0));
`;

/** Reads each address until it ends or fails; one JSON line per event. */
const CONSUMER_SCRIPT = `
const log = (o) => console.log(JSON.stringify({ ...o, t: Date.now() }));
process.argv.slice(1).forEach((address, id) => {
  const i = address.lastIndexOf(':');
  const s = require('node:net').connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
  let got = 0;
  let flowing = false;
  s.on('data', (d) => { got += d.length; if (!flowing && got >= 1048576) { flowing = true; log({ ev: 'flowing', id }); } });
  s.on('error', (e) => log({ ev: 'error', id, code: e.code || e.message, got }));
  s.on('end', () => log({ ev: 'end', id, got }));
  s.on('close', (hadError) => log({ ev: 'close', id, hadError, got }));
});
process.on('SIGTERM', () => process.exit(0));
`;

interface AppEvent {
  ev: string;
  id?: number;
  code?: string;
  t: number;
  hadError?: boolean;
}

const events = (p: NsProc): AppEvent[] =>
  p
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as AppEvent);

/** How each of an application's connections ended: the first error or clean end after the fault, and when. */
function endings(p: NsProc, since: number): Array<{ id: number; how: string; afterMs: number }> {
  const first = new Map<number, { how: string; afterMs: number }>();
  for (const e of events(p)) {
    if (e.id === undefined || first.has(e.id) || !(e.ev === 'error' || e.ev === 'end')) continue;
    first.set(e.id, { how: e.ev === 'end' ? 'clean end' : e.code ?? 'error', afterMs: e.t - since });
  }
  return [...first].map(([id, v]) => ({ id, ...v }));
}

/** The gateways' log lines about broken WAN connections (what each gateway noticed, and why). */
const breaks = (g: NsProc | undefined, from = 0): string[] =>
  (g?.stderr().slice(from) ?? '')
    .split('\n')
    .filter((l) => l.includes('broken ('))
    .map((l) => (/WAN connection to .*?(?=; both)/.exec(l) ?? [l])[0].replace(/: the .*?\(([^()]*)\)$/, ' ($1)'));

const logs = (...procs: (NsProc | undefined)[]) => procs.filter((p): p is NsProc => p !== undefined).map((p) => p.describe()).join('\n');

describe('faults on the WAN leg mid-stream: both applications see a reset, a short outage loses nothing', () => {
  const L = labForSuite({
    timeoutMs: 60_000,
    beforeDestroy: async (lab) => {
      await Promise.all(apps.map((p) => p.stop()));
      await Promise.all([gwa, gwb].map((g) => g?.stop()));
      await lab.run('gwb', ['nft', 'delete', 'table', 'inet', TABLE], { check: false });
    },
  });
  let gwa: NsProc | undefined;
  let gwb: NsProc | undefined;
  let bundle = '';
  const apps: NsProc[] = [];
  /** Where each gateway's log is now, and what they logged about broken WAN connections since. */
  const logMarks = () => ({ a: gwa?.stderr().length ?? 0, b: gwb?.stderr().length ?? 0 });
  const noticed = (from: { a: number; b: number }) => `gateway A: ${breaks(gwa, from.a).join(', ') || 'nothing'}; gateway B: ${breaks(gwb, from.b).join(', ') || 'nothing'}`;

  /** Both gateways (stopped first if running); the clients trust them through one bundle. */
  async function startGateways(extra: string[]): Promise<void> {
    await Promise.all([gwa, gwb].map((g) => g?.stop()));
    ({ gwa, gwb, bundle } = await startLabGateways(L(), {
      portRange: PORT_RANGE, workers: 1, flags: ['--metrics-listen', METRICS, ...extra], gwbFlags: ['--control-host', '0.0.0.0'],
    }));
  }

  /** s2uc request and the producer's Hello: a stream of NUM_CONN connections to `producerAddr`. */
  async function requestStream(producerAddr: string, requestArgs: string[] = []): Promise<LabStreamMap> {
    const uid = `wanfault-${randomBytes(6).toString('hex')}`;
    return requestLabStream(L(), { bundle, uid, numConn: NUM_CONN, producer: producerAddr, requestTimeoutS: 30, helloTimeoutS: 30, requestArgs, show: [gwa, gwb] });
  }

  /**
   * The fault: our own table in gateway B, on the WAN data connections to gateway A's
   * listeners (the control port stays open).
   * - reset: a middlebox resetting both ends: A's packets are answered with a reset to A,
   *   B's with a reset to B (the reset sent to A is not caught by the rule for B's packets);
   * - reset-a: only A gets a reset; B's packets and A's own reset to B are lost (what
   *   issue 18 measured: the consumer's side heard nothing more);
   * - drop: a black hole.
   */
  async function fault(kind: 'reset' | 'reset-a' | 'drop'): Promise<void> {
    const lab = L();
    const nft = (...args: string[]) => lab.run('gwb', ['nft', ...args], { check: true });
    await nft('add', 'table', 'inet', TABLE);
    await nft('add', 'chain', 'inet', TABLE, 'in', '{ type filter hook input priority 0 ; }');
    await nft('add', 'chain', 'inet', TABLE, 'out', '{ type filter hook output priority 0 ; }');
    const notResets = ['tcp', 'flags', '&', 'rst', '==', '0'];
    const reject = ['reject', 'with', 'tcp', 'reset'];
    const [inRule, outRule] =
      kind === 'reset' ? [[...notResets, ...reject], [...notResets, ...reject]] : kind === 'reset-a' ? [reject, [...notResets, 'drop']] : [['drop'], ['drop']];
    await nft('add', 'rule', 'inet', TABLE, 'in', 'ip', 'saddr', ADDR.gwaWan, 'tcp', 'sport', PORT_RANGE, 'counter', ...inRule);
    await nft('add', 'rule', 'inet', TABLE, 'out', 'ip', 'daddr', ADDR.gwaWan, 'tcp', 'dport', PORT_RANGE, 'counter', ...outRule);
  }

  /** Removes the fault; returns what its rules matched (packets in, packets out). */
  async function clear(): Promise<string> {
    const listed = await L().run('gwb', ['nft', 'list', 'table', 'inet', TABLE], { check: true });
    await L().run('gwb', ['nft', 'delete', 'table', 'inet', TABLE], { check: true });
    return [...listed.stdout.matchAll(/counter packets (\d+)/g)].map((m) => m[1]).join(' in, ') + ' out';
  }

  /** A gateway's scistream_wan_broken_total, all causes (counted in its worker, reported through AgentHealth). */
  async function brokenTotal(host: 'gwa' | 'gwb'): Promise<number> {
    const r = await L().run(host, [process.execPath, '-e', `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`], { check: true });
    return [...r.stdout.matchAll(/^scistream_wan_broken_total\{cause="[a-z-]+"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
  }

  /** Active data connections the gateways' status shows for `uid` (summed over both). */
  async function activeConnections(uid: string): Promise<number> {
    const status = L().cli('user', 's2uc', ['--server-cert', bundle, '--timeout', '20', 'status', uid, '--s2cs', GWA, '--s2cs', GWB, '--json']);
    assert.equal(await status.exited, 0, `s2uc status failed\n${status.describe()}`);
    let sum = 0;
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          if (k === 'activeConnections' && typeof x === 'number') sum += x;
          else walk(x);
        }
      }
    };
    walk(JSON.parse(status.stdout()));
    return sum;
  }

  /** Each gateway's status (s2uc status --json, both gateways). */
  async function gatewayStatus(): Promise<{ s2cs: string; reservedPorts: number; streams: { uid: string }[]; ended: { uid: string; why: string }[] }[]> {
    const status = L().cli('user', 's2uc', ['--server-cert', bundle, '--timeout', '20', 'status', '--s2cs', GWA, '--s2cs', GWB, '--json']);
    assert.equal(await status.exited, 0, `s2uc status failed\n${status.describe()}`);
    return (JSON.parse(status.stdout()) as { gateways: Awaited<ReturnType<typeof gatewayStatus>> }).gateways;
  }

  /** Ports the gateways hold with no stream of ours (their spare listeners): what a released stream's ports go back to. */
  let baselinePorts: number[] = [];

  /**
   * Both gateways let the broken stream go by themselves (issue 18, point 2: after
   * --broken-grace, 5 s): gone from status, listed as ended because broken, its ports free.
   */
  async function assertLetGoOnBoth(uid: string): Promise<number> {
    const t0 = Date.now();
    const seen = await until('both gateways to release the broken stream and free its ports', 30_000, async () => {
      const gws = await gatewayStatus();
      const done = gws.every((g, i) => !g.streams.some((x) => x.uid === uid) && g.ended.some((e) => e.uid === uid) && g.reservedPorts <= baselinePorts[i]!);
      return done ? gws : undefined;
    });
    for (const g of seen) assert.match(g.ended.find((e) => e.uid === uid)!.why, /^broken: /, `${g.s2cs} ended the stream as broken`);
    return Date.now() - t0;
  }

  /**
   * A stream flowing between the never-ending producer and the consumer, then `inject`
   * mid-stream: returns how each connection of each application ended, and when.
   */
  async function faultMidStream(port: number, inject: () => Promise<void>) {
    const lab = L();
    const producer = lab.node('prod', `producer ${port}`, PRODUCER_SCRIPT, [ADDR.prod, String(port)]);
    apps.push(producer);
    await producer.waitFor(/"listening"/, { stream: 'stdout' });
    const map = await requestStream(`${ADDR.prod}:${port}`);
    const consumer = lab.node('cons', `consumer ${port}`, CONSUMER_SCRIPT, map.consListeners);
    apps.push(consumer);
    await until('both consumer connections flowing', 20_000, async () => (events(consumer).filter((e) => e.ev === 'flowing').length === NUM_CONN ? true : undefined));
    const t0 = Date.now();
    await inject();
    const bound = DEAD_AFTER_S * 1000 + SLACK_MS;
    // Wait a little beyond the bound, so that a late or clean end shows as what it is.
    await until('both applications to see every connection end', bound + 5_000, async () =>
      endings(producer, t0).length === NUM_CONN && endings(consumer, t0).length === NUM_CONN ? true : undefined,
    ).catch(() => undefined);
    return { map, t0, bound, producer: endings(producer, t0), consumer: endings(consumer, t0), procs: [producer, consumer] };
  }

  function assertReset(what: string, r: Awaited<ReturnType<typeof faultMidStream>>): void {
    for (const [side, ends] of [['producer', r.producer], ['consumer', r.consumer]] as const) {
      const detail = `${what}: the ${side} saw ${JSON.stringify(ends)}\n${logs(...r.procs, gwa, gwb)}`;
      assert.equal(ends.length, NUM_CONN, `not every ${side} connection ended within ${r.bound + 5_000} ms. ${detail}`);
      for (const e of ends) {
        assert.notEqual(e.how, 'clean end', `a broken stream reached the ${side} as a clean end. ${detail}`);
        assert.ok(e.afterMs <= r.bound, `the ${side} saw the reset only after ${e.afterMs} ms (bound ${r.bound}). ${detail}`);
      }
    }
  }

  test(`gateways start with --wan-dead-after ${DEAD_AFTER_S}`, STEP, async () => {
    await startGateways(['--wan-dead-after', String(DEAD_AFTER_S)]);
    baselinePorts = (await gatewayStatus()).map((g) => g.reservedPorts);
  });

  test('(a) a 1 s burst of TCP resets on the WAN leg: both applications see a reset', STEP, async (t) => {
    const seen = logMarks();
    let matched = '';
    const r = await faultMidStream(7000, async () => {
      await fault('reset');
      await new Promise((res) => setTimeout(res, 1000));
      matched = await clear();
    });
    t.diagnostic(`reset burst (packets rejected: ${matched}): producer ${JSON.stringify(r.producer)}; consumer ${JSON.stringify(r.consumer)}; ${noticed(seen)}`);
    assertReset('a 1 s reset burst', r);
    // Counted in each gateway's worker, reported through AgentHealth, in s2cs's /metrics.
    await until('both gateways count the broken WAN connections in /metrics', 10_000, async () =>
      (await brokenTotal('gwa')) >= NUM_CONN && (await brokenTotal('gwb')) >= NUM_CONN ? true : undefined,
    );
    await until('the gateways show no active connection for the stream', 10_000, async () => ((await activeConnections(r.map.uid)) === 0 ? true : undefined));
    assert.match(gwa!.stderr() + gwb!.stderr(), /WAN connection to [\d.]+:\d+ broken \((reset|dead-peer|unended|timeout)\)/, 'a gateway logged the broken WAN connection');
    t.diagnostic(`reset burst: both gateways released the stream as broken, ports free, ${await assertLetGoOnBoth(r.map.uid)} ms after the applications' resets were checked`);
  });

  test('(a2) a 1 s burst of resets that reach gateway A only: the consumer\'s gateway notices too, both applications see a reset', STEP, async (t) => {
    const seen = logMarks();
    let matched = '';
    const r = await faultMidStream(7003, async () => {
      await fault('reset-a');
      await new Promise((res) => setTimeout(res, 1000));
      matched = await clear();
    });
    t.diagnostic(`reset burst, A only (packets rejected: ${matched}): producer ${JSON.stringify(r.producer)}; consumer ${JSON.stringify(r.consumer)}; ${noticed(seen)}`);
    assertReset('a 1 s reset burst reaching A only', r);
    await until('the gateways show no active connection for the stream', 10_000, async () => ((await activeConnections(r.map.uid)) === 0 ? true : undefined));
    assert.match(gwa!.stderr() + gwb!.stderr(), /WAN connection to [\d.]+:\d+ broken \((reset|dead-peer|unended|timeout)\)/, 'a gateway logged the broken WAN connection');
    t.diagnostic(`reset burst, A only: both gateways released the stream as broken, ports free, ${await assertLetGoOnBoth(r.map.uid)} ms later`);
  });

  test('(b) a black hole on the WAN leg (all packets dropped, kept in place): both applications see a reset', STEP, async (t) => {
    const seen = logMarks();
    const r = await faultMidStream(7001, () => fault('drop'));
    try {
      t.diagnostic(`black hole: producer ${JSON.stringify(r.producer)}; consumer ${JSON.stringify(r.consumer)}; ${noticed(seen)}`);
      assertReset('a black hole', r);
      await until('the gateways show no active connection for the stream', 10_000, async () => ((await activeConnections(r.map.uid)) === 0 ? true : undefined));
      t.diagnostic(`black hole: both gateways released the stream as broken, ports free, ${await assertLetGoOnBoth(r.map.uid)} ms later`);
    } finally {
      t.diagnostic(`black hole: packets dropped ${await clear()}`);
    }
  });

  test('(c) a 5 s outage with the default wan-dead-after: every byte verified at the consumer', STEP, async (t) => {
    const lab = L();
    // Held to 16 MB/s by the gateways (--rate-policy cap), so that the outage falls mid-stream.
    await startGateways(['--rate-policy', 'cap']);
    const bytes = 40 * 1024 * 1024;
    const producer = lab.cli('prod', 's2app', ['produce', '--listen', `${ADDR.prod}:7002`, '--bytes', String(bytes), '--count', String(NUM_CONN)]);
    apps.push(producer);
    await producer.waitFor(/producer listening/, { stream: 'stdout' });
    const map = await requestStream(`${ADDR.prod}:7002`, ['--rate', '16MB/s']);
    const started = Date.now();
    const consumer = lab.cli('cons', 's2app', ['consume', '--connect', map.consListeners.join(','), '--bytes', String(bytes), '--json']);
    apps.push(consumer);
    await new Promise((res) => setTimeout(res, 1000));
    await fault('drop');
    await new Promise((res) => setTimeout(res, 5000));
    const dropped = await clear();
    const code = await consumer.exited;
    t.diagnostic(`5 s outage (packets dropped: ${dropped}): consumer exit ${code} after ${((Date.now() - started) / 1000).toFixed(1)} s: ${consumer.stdout().trim()}`);
    assert.equal(code, 0, `the consumer did not verify every byte through a 5 s outage\n${logs(consumer, producer, gwa, gwb)}`);
    const result = JSON.parse(consumer.stdout().trim().split('\n').at(-1)!) as { ok: boolean; bytes: number };
    assert.deepEqual([result.ok, result.bytes], [true, NUM_CONN * bytes]);
    assert.doesNotMatch(gwa!.stderr() + gwb!.stderr(), /WAN connection to .* broken/, 'no WAN connection was taken for broken');
  });
});
