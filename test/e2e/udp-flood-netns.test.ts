// Issue 21, point 5: a flood of datagrams from many spoofed-looking sources stays within the
// gateway's bounds. A real gateway (s2cs with one worker) in gwa carries an inbound UDP
// stream from its WAN address to a UDP echo in prod (the facility LAN). A legitimate sender
// on the WAN (the gwb host; no gateway runs there in this test) opens its flow first. Then
// the attacker on the WAN (user) floods the stream's port with raw IPv4 packets whose
// source addresses cover a /16 (udp_flood.py: one-off sources with random ports, some
// sending a few datagrams, steady forged sources that hold flows, large forged datagrams near
// the 65,507-byte bound sent as fragments, bursts of full-size datagrams from its own
// address, and a few datagrams forged from the stream's target itself); twice, from
// different addresses. Checked while and after flooding: the gateway and its worker live and
// log nothing per datagram; flows never go over --max-udp-flows (status, and the worker's
// descriptors: each plain flow holds a socket towards the target); RSS stays under a fixed
// bound and does not grow from one flood to the next; the legitimate flow keeps getting its
// echoes during and after; the datagrams from the target are dropped (loop), not bounced
// between gateway and target; the drops are counted (status, /metrics); once the forged
// flows idle out the descriptors are back to their baseline and a new sender gets a flow.
// Needs root, iproute2 and python3 (raw sockets; see test/support/netns.ts).
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDR, labForSuite, type NetnsLab, type NsProc } from '../support/netns.js';
import { LAB_CONTROL } from '../support/lab-gateways.js';
import { fdCount, rssMiB } from '../support/hostile.js';
import { PYTHON } from '../support/python.js';
import { until } from '../support/until.js';
import { UDP_ECHO_APP, UDP_PACED_SENDER_APP, echoedBetween, longestSilence, pacedReport } from '../support/udp-apps.js';
import { parseAddress, type Address } from '../../src/protocol/address.js';

const FLOOD = fileURLToPath(new URL('../../../test/e2e/udp_flood.py', import.meta.url));
const MAX_FLOWS = 64;
const IDLE_S = 2;
const TARGET: Address = { host: ADDR.prod, port: 7000 };
const METRICS = '127.0.0.1:9464';
/** The forged sources: 10.77.0.1 to 10.77.255.254. */
const FORGED_NET = '10.77';
const FLOOD_DATAGRAMS = 60_000;
/** Datagrams per flood forged from the stream's target itself (dropped: loop). */
const AS_TARGET = 3;
/** The legitimate sender's pace. */
const LEGIT_EVERY_MS = 20;
/** A fixed bound on each process's resident memory (a Node process idles near 60-90 MiB). */
const RSS_BOUND_MIB = 300;
/** How much more the second flood may leave resident than the first (GC timing, not a trend). */
const RSS_SLACK_MIB = 40;
/** How long flows may take to idle out: the timeout, its sweep, a status poll, a loaded machine. */
const SETTLE_MS = (IDLE_S + 8) * 1000;
const STEP = { timeout: 300_000 };

const FETCH_METRICS = `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { console.error(e.message); process.exit(1); });`;

interface DatagramRow {
  toTarget: number;
  fromTarget: number;
  flows: number;
  flowsOpened: number;
  drops: Record<string, number>;
}

interface Usage {
  workerRss: number;
  s2csRss: number;
  workerFds: number;
}

interface FloodRecord {
  start: number;
  end: number;
  sent: Record<string, number>;
  peak: Usage;
}

const logs = (...procs: (NsProc | undefined)[]) => procs.filter((p): p is NsProc => p !== undefined).map((p) => p.describe()).join('\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Processes in a namespace of the lab (ip netns pids, from outside it). */
function pidsIn(lab: NetnsLab, host: 'gwa'): number[] {
  return execFileSync('ip', ['netns', 'pids', lab.ns(host)], { encoding: 'utf8' }).split('\n').map(Number).filter((p) => p > 0);
}

/** The gateway under flood: s2cs in gwa with one worker, and its UDP stream towards the echo in prod. */
class GatewayUnderFlood {
  private constructor(
    private readonly lab: NetnsLab,
    readonly gwa: NsProc,
    readonly echo: NsProc,
    private readonly cert: string,
    readonly uid: string,
    readonly listener: Address,
    /** The worker agent (its own process group, not our child). */
    readonly worker: number,
  ) {}

  static async start(lab: NetnsLab): Promise<GatewayUnderFlood> {
    const stateDir = join(lab.dir, 'state-gwa');
    const gwa = lab.cli('gwa', 's2cs', [
      'start', '--auth', 'none', '--port', '5000', '--listener-ip', ADDR.gwaWan, '--port-range', '5100-5110', '--state-dir', stateDir,
      '--workers', '1', '--allow-plaintext-data', '--max-udp-flows', String(MAX_FLOWS), '--udp-idle-timeout', String(IDLE_S), '--metrics-listen', METRICS,
    ]);
    const echo = lab.node('prod', 'udp echo', UDP_ECHO_APP, [TARGET.host, String(TARGET.port)]);
    try {
      await gwa.waitFor(/s2cs ready/, { stream: 'stderr', timeoutMs: 60_000 });
      await echo.waitFor(/echo listening/, { stream: 'stdout' });
      const cert = join(stateDir, 'tls', 'cert.pem');
      const run = lab.cli('user', 's2uc', ['--server-cert', cert, 'inbound-request', '--s2cs', LAB_CONTROL.gwa, '--protocol', 'udp', '--targets', `${TARGET.host}:${TARGET.port}`, '--num-conn', '1', '--json']);
      assert.equal(await run.exited, 0, logs(run, gwa));
      const req = JSON.parse(run.stdout().trim().split('\n').at(-1)!) as { uid: string; listeners: string[] };
      const worker = pidsIn(lab, 'gwa').find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('s2ds.js'));
      assert.ok(worker, `no s2ds worker among the processes of ${lab.ns('gwa')}`);
      return new GatewayUnderFlood(lab, gwa, echo, cert, req.uid, parseAddress(req.listeners[0]!, 'listener'), worker);
    } catch (err) {
      await echo.stop('SIGTERM');
      await gwa.stop('SIGTERM');
      throw err;
    }
  }

  async s2uc(args: string[]): Promise<string> {
    const p = this.lab.cli('user', 's2uc', ['--server-cert', this.cert, ...args]);
    assert.equal(await p.exited, 0, logs(p, this.gwa));
    return p.stdout();
  }

  /** The stream's datagram counters in `s2uc status --json` (as of s2cs's last poll of the worker). */
  async row(): Promise<DatagramRow> {
    const status = JSON.parse(await this.s2uc(['status', '--s2cs', LAB_CONTROL.gwa, '--json'])) as { gateways: { streams: { uid: string; datagrams?: DatagramRow }[] }[] };
    const stream = status.gateways[0]!.streams.find((s) => s.uid === this.uid);
    assert.ok(stream?.datagrams, `status shows no UDP stream ${this.uid}: ${JSON.stringify(status)}`);
    return stream.datagrams;
  }

  usage(): Usage {
    return { workerRss: rssMiB(this.worker), s2csRss: rssMiB(this.gwa.pid!), workerFds: fdCount(this.worker) };
  }

  /** Waits until status shows `flows` flows and the worker holds `fds` descriptors; returns how long that took. */
  async settle(flows: number, fds: number, what: string): Promise<number> {
    const start = Date.now();
    for (;;) {
      const shown = (await this.row()).flows;
      const held = fdCount(this.worker);
      if (shown === flows && held === fds) return Date.now() - start;
      assert.ok(Date.now() - start < SETTLE_MS, `${what}: ${shown} flows and ${held} descriptors after ${Date.now() - start} ms (waiting for ${flows} and ${fds})`);
      await sleep(250);
    }
  }

  async metric(name: string, labels: string): Promise<number | undefined> {
    const metrics = await this.lab.run('gwa', [process.execPath, '-e', FETCH_METRICS], { check: true });
    const m = new RegExp(`^${name}\\{${labels}\\} (\\d+)`, 'm').exec(metrics.stdout);
    return m ? Number(m[1]) : undefined;
  }
}

/** One flood from the attacker (user), with the gateway's usage sampled and its status watched while it runs. */
async function flood(lab: NetnsLab, g: GatewayUnderFlood, t: TestContext, round: number, baseline: Usage): Promise<FloodRecord> {
  const peak = { ...baseline };
  let sampleError: unknown;
  const sampler = setInterval(() => {
    try {
      const u = g.usage();
      peak.workerRss = Math.max(peak.workerRss, u.workerRss);
      peak.s2csRss = Math.max(peak.s2csRss, u.s2csRss);
      peak.workerFds = Math.max(peak.workerFds, u.workerFds);
    } catch (err) {
      sampleError ??= err;
    }
  }, 100);
  let flooding = true;
  let maxFlows = 0;
  const watch = (async () => {
    while (flooding) {
      maxFlows = Math.max(maxFlows, (await g.row()).flows);
      await sleep(500);
    }
  })();
  const logFrom = g.gwa.stderr().length;
  const start = Date.now();
  const { host, port } = g.listener;
  const firstSource = String(round * (FLOOD_DATAGRAMS / 2));
  const run = await lab.run('user', [
    PYTHON, FLOOD, host, String(port), FORGED_NET, String(FLOOD_DATAGRAMS), '--first-source', firstSource, '--burst', '500', '--pause-ms', '30',
    '--as-target', `${TARGET.host}:${TARGET.port}`, '--as-target-count', String(AS_TARGET),
  ], { timeoutMs: 120_000 });
  const end = Date.now();
  flooding = false;
  clearInterval(sampler);
  await watch;
  assert.equal(run.code, 0, `the flood failed: ${run.stdout}${run.stderr}`);
  assert.equal(sampleError, undefined, `the gateway's processes could not be sampled during flood ${round + 1}\n${logs(g.gwa)}`);
  assert.ok(g.gwa.running(), `the gateway ended during flood ${round + 1}\n${logs(g.gwa)}`);
  const sent = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, number>;
  t.diagnostic(`flood ${round + 1}: ${JSON.stringify(sent)} in ${end - start} ms; peaks: worker ${peak.workerRss} MiB and ${peak.workerFds} descriptors, s2cs ${peak.s2csRss} MiB; most flows in status ${maxFlows}`);
  assert.ok(sent.addresses! >= 20_000, `the flood came from ${sent.addresses} addresses`);
  assert.ok(maxFlows <= MAX_FLOWS, `status showed ${maxFlows} flows, over --max-udp-flows ${MAX_FLOWS}`);
  // Every flow holds one socket towards the target: the descriptors bound the flows between polls too.
  assert.ok(peak.workerFds <= baseline.workerFds + MAX_FLOWS + 2, `the worker held ${peak.workerFds} descriptors (${baseline.workerFds} before any flow, --max-udp-flows ${MAX_FLOWS})`);
  assert.ok(peak.workerRss <= RSS_BOUND_MIB && peak.s2csRss <= RSS_BOUND_MIB, `resident memory went over ${RSS_BOUND_MIB} MiB: worker ${peak.workerRss}, s2cs ${peak.s2csRss}`);
  // Nothing is logged per datagram: a flood costs the log a few lines at most.
  const logged = g.gwa.stderr().slice(logFrom).split('\n').filter((l) => l.trim() !== '');
  assert.ok(logged.length <= 10, `the gateway logged ${logged.length} lines during flood ${round + 1}:\n${logged.slice(0, 20).join('\n')}`);
  return { start, end, sent, peak };
}

describe('a UDP flood from many forged sources stays within the gateway bounds (network namespaces)', () => {
  const L = labForSuite({
    afterSetup: async (lab) => {
      // The kernel delivers the forged datagrams only with reverse-path filtering off (the
      // namespaces inherit the host's setting); the replies to them leave towards the attacker's
      // host, which does not forward them: they go nowhere, as replies to forged sources do.
      for (const conf of ['all', 'default', lab.ifaces.gwaWan]) {
        await lab.run('gwa', ['sh', '-c', `echo 0 > /proc/sys/net/ipv4/conf/${conf}/rp_filter`], { check: true });
      }
      await lab.ip('gwa', 'route', 'add', `${FORGED_NET}.0.0/16`, 'via', ADDR.user);
      // The target can reach the stream's listener (as in most facilities), so that a datagram
      // forged from the target would bounce between them if the gateway forwarded it.
      await lab.ip('prod', 'route', 'add', `${ADDR.gwaWan}/32`, 'via', ADDR.gwaLan);
    },
  });

  test('the gateway survives, flows stay bounded, memory and descriptors come back, the legitimate flow goes on', STEP, async (t) => {
    const lab = L();
    const g = await GatewayUnderFlood.start(lab);
    const { host, port } = g.listener;
    let legit: NsProc | undefined;
    try {
      const baseline = g.usage();
      t.diagnostic(`before any flow: worker ${baseline.workerRss} MiB, ${baseline.workerFds} descriptors; s2cs ${baseline.s2csRss} MiB`);

      // The legitimate flow, opened before the flood.
      legit = lab.node('gwb', 'legitimate sender', UDP_PACED_SENDER_APP, [host, String(port), String(LEGIT_EVERY_MS)]);
      await legit.waitFor(/flow open/, { stream: 'stdout', timeoutMs: 10_000 });

      const floods: FloodRecord[] = [];
      for (const round of [0, 1]) {
        floods.push(await flood(lab, g, t, round, baseline));
        // The forged flows idle out; the legitimate one, still sending, stays.
        const ms = await g.settle(1, baseline.workerFds + 1, `after flood ${round + 1}`);
        t.diagnostic(`after flood ${round + 1}: only the legitimate flow left ${ms} ms later (--udp-idle-timeout ${IDLE_S}); worker ${rssMiB(g.worker)} MiB`);
      }
      // No growth from one flood to the next.
      const [first, second] = floods as [FloodRecord, FloodRecord];
      assert.ok(second.peak.workerRss <= first.peak.workerRss + RSS_SLACK_MIB, `the worker's peak grew from ${first.peak.workerRss} MiB (flood 1) to ${second.peak.workerRss} MiB (flood 2)`);
      assert.ok(second.peak.s2csRss <= first.peak.s2csRss + RSS_SLACK_MIB, `s2cs's peak grew from ${first.peak.s2csRss} MiB (flood 1) to ${second.peak.s2csRss} MiB (flood 2)`);

      // The legitimate flow during and after the floods: some loss allowed, never cut off.
      const afterAll = Date.now();
      await sleep(2000);
      const report = await pacedReport(legit);
      legit = undefined;
      assert.equal(report.bad, 0, 'echoes that were not what the legitimate sender sent');
      for (const [i, f] of floods.entries()) {
        const w = echoedBetween(report, f.start, f.end);
        t.diagnostic(`legitimate flow during flood ${i + 1}: ${w.back} of ${w.sent} echoed`);
        assert.ok(w.back > 0 && w.back >= w.sent / 4, `the legitimate flow was cut off during flood ${i + 1}: ${w.back} of ${w.sent} echoed`);
      }
      const gap = longestSilence(report);
      t.diagnostic(`legitimate flow: ${report.echoes.length} of ${report.sentAt.length} echoed in all; longest time without an echo ${gap} ms`);
      assert.ok(gap < 5000, `the legitimate flow went ${gap} ms without an echo`);
      const tail = echoedBetween(report, second.end + 500, afterAll + 1500);
      assert.ok(tail.sent > 0 && tail.back >= tail.sent * 0.9, `after the floods: ${tail.back} of ${tail.sent} echoed`);

      // Every flow idles out: the worker's descriptors are back where they were before any flow.
      const ms = await g.settle(0, baseline.workerFds, 'after the last sender stopped');
      const rest = g.usage();
      t.diagnostic(`all flows ended ${ms} ms after the last sender stopped: worker ${rest.workerRss} MiB, ${rest.workerFds} descriptors; s2cs ${rest.s2csRss} MiB`);

      // A new sender gets a flow again.
      const newcomer = lab.node('gwb', 'new sender', UDP_PACED_SENDER_APP, [host, String(port), String(LEGIT_EVERY_MS)]);
      try {
        await newcomer.waitFor(/flow open/, { stream: 'stdout', timeoutMs: 10_000 });
      } finally {
        await newcomer.stop('SIGTERM');
      }

      // Counted: status and /metrics show the drops.
      const final = await g.row();
      t.diagnostic(`status: ${JSON.stringify(final)}`);
      assert.ok((final.drops['flow-limit'] ?? 0) > 0, `no flow-limit drops in status: ${JSON.stringify(final)}`);
      assert.ok(final.flowsOpened > MAX_FLOWS, `flows opened: ${final.flowsOpened}`);
      assert.equal(final.drops.loop, first.sent.as_target! + second.sent.as_target!, `loop drops: ${JSON.stringify(final)}`);
      const flowLimit = await g.metric('scistream_stream_datagrams_dropped_total', `uid="${g.uid}",cause="flow-limit"`);
      const loop = await g.metric('scistream_stream_datagrams_dropped_total', `uid="${g.uid}",cause="loop"`);
      t.diagnostic(`/metrics: flow-limit drops ${flowLimit}, loop drops ${loop}`);
      assert.ok((flowLimit ?? 0) > 0, 'no flow-limit drops in /metrics');
      assert.equal(loop, final.drops.loop, 'the loop drops in /metrics');

      // The target saw only what the gateway forwarded (no loop traffic beside it). s2cs knows the
      // worker's counts as of its last poll: the newcomer's last datagrams may come with the next.
      assert.equal(await g.echo.stop('SIGTERM'), 0, g.echo.describe());
      const targetSaw = (JSON.parse(g.echo.stdout().trim().split('\n').at(-1)!) as { received: number }).received;
      const forwarded = await until('the count of datagrams forwarded to reach what the target received', 10_000, async () => {
        const n = (await g.row()).toTarget;
        return n >= targetSaw ? n : undefined;
      });
      const snmp = (await lab.run('gwa', ['cat', '/proc/net/snmp'], { check: true })).stdout.split('\n').filter((l) => l.startsWith('Udp:'));
      t.diagnostic(`the target received ${targetSaw} datagrams, the gateway forwarded ${forwarded}; gwa's kernel: ${snmp.join(' / ')}`);

      await g.s2uc(['release', '--s2cs', LAB_CONTROL.gwa, g.uid]);
    } finally {
      await legit?.stop('SIGTERM');
      await g.echo.stop('SIGTERM');
      assert.equal(await g.gwa.stop('SIGTERM'), 0, g.gwa.describe());
    }
    // s2cs ended its worker: nothing of the gateway is left in its namespace.
    assert.deepEqual(pidsIn(lab, 'gwa'), [], `processes left in ${lab.ns('gwa')}`);
  });
});
