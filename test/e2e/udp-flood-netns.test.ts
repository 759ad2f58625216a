// Issue 21, point 5: a flood of datagrams from many spoofed-looking sources stays within the
// gateway's bounds. A real gateway (s2cs with one worker) in gwa carries an inbound UDP
// stream from its WAN address to a UDP echo in prod (the facility LAN). A legitimate sender
// on the WAN (the gwb host; no gateway runs there in this test) opens its flow first. Then
// the attacker on the WAN (user) floods the stream's port with raw IPv4 packets whose
// source addresses cover a /16 (a random port each, some sending a few datagrams), mixed
// with forged large datagrams (sent as fragments, near the 65,507-byte bound) and bursts of
// full-size datagrams from its own address; twice, from different addresses. Checked while
// and after flooding: the gateway and its worker live; flows never go over --max-udp-flows
// (status, and the worker's descriptors: each plain flow holds a socket towards the target);
// RSS stays under a fixed bound and does not grow from one flood to the next; the
// legitimate flow keeps getting its echoes during and after; the drops are counted
// (status, /metrics); once the forged flows idle out the descriptors are back to their
// baseline and a new sender gets a flow again.
// Needs root, iproute2 and python3 (raw sockets; see test/support/netns.ts).
import { describe, test } from 'node:test';
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
import { parseAddress } from '../../src/protocol/address.js';

const FLOOD = fileURLToPath(new URL('../../../test/e2e/udp_flood.py', import.meta.url));
const MAX_FLOWS = 64;
const IDLE_S = 2;
const TARGET = { host: ADDR.prod, port: 7000 };
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
const STEP = { timeout: 300_000 };

/** A UDP echo: every datagram back to its sender; prints how many it saw on SIGTERM. */
const ECHO = `
const [host, port] = process.argv.slice(1);
const s = require('node:dgram').createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
let n = 0;
s.on('message', (d, from) => { n++; s.send(d, from.port, from.address); });
s.on('error', () => {});
s.bind(Number(port), host, () => console.log('echo listening'));
process.on('SIGTERM', () => { console.log(JSON.stringify({ received: n })); process.exit(0); });
`;

/**
 * A legitimate sender: a numbered 200-byte datagram every EVERY ms from one socket, the
 * echoes checked and timed. Prints "flow open" at the first echo and, on SIGTERM, when each
 * datagram left and each echo came back.
 */
const LEGIT = `
const [host, port, every] = process.argv.slice(1);
const MAGIC = 0x5c157ea7, SIZE = 200;
const s = require('node:dgram').createSocket('udp4');
const sentAt = [], echoes = [];
let bad = 0, timer;
s.on('message', (d) => {
  const seq = d.length === SIZE && d.readUInt32BE(4) === MAGIC ? d.readUInt32BE(0) : -1;
  if (seq < 0 || seq >= sentAt.length || d.subarray(8).some((b) => b !== (seq & 0xff))) { bad++; return; }
  if (echoes.length === 0) console.log('flow open from port ' + s.address().port);
  echoes.push([seq, Date.now()]);
});
s.on('error', () => {});
s.bind(0, () => {
  timer = setInterval(() => {
    const d = Buffer.alloc(SIZE, sentAt.length & 0xff);
    d.writeUInt32BE(sentAt.length, 0);
    d.writeUInt32BE(MAGIC, 4);
    sentAt.push(Date.now());
    s.send(d, Number(port), host);
  }, Number(every));
});
process.on('SIGTERM', () => { clearInterval(timer); console.log(JSON.stringify({ sentAt, echoes, bad })); process.exit(0); });
`;

const FETCH_METRICS = `fetch('http://${METRICS}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { console.error(e.message); process.exit(1); });`;

interface StreamRow {
  uid: string;
  datagrams?: { toTarget: number; fromTarget: number; flows: number; flowsOpened: number; drops: Record<string, number> };
}

interface Usage {
  t: number;
  workerRss: number;
  s2csRss: number;
  workerFds: number;
}

interface LegitReport {
  sentAt: number[];
  echoes: [number, number][];
  bad: number;
}

const logs = (...procs: (NsProc | undefined)[]) => procs.filter((p): p is NsProc => p !== undefined).map((p) => p.describe()).join('\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Processes in a namespace of the lab (ip netns pids, from outside it). */
function pidsIn(lab: NetnsLab, host: 'gwa'): number[] {
  return execFileSync('ip', ['netns', 'pids', lab.ns(host)], { encoding: 'utf8' }).split('\n').map(Number).filter((p) => p > 0);
}

/** The worker agent s2cs started in gwa's namespace (its own process group, not our child). */
function workerPid(lab: NetnsLab): number {
  for (const pid of pidsIn(lab, 'gwa')) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('s2ds.js')) return pid;
    } catch {
      // Ended meanwhile.
    }
  }
  assert.fail(`no s2ds worker among the processes of ${lab.ns('gwa')}`);
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
    const stateDir = join(lab.dir, 'state-gwa');
    const gwa = lab.cli('gwa', 's2cs', [
      'start', '--auth', 'none', '--port', '5000', '--listener-ip', ADDR.gwaWan, '--port-range', '5100-5110', '--state-dir', stateDir,
      '--workers', '1', '--allow-plaintext-data', '--max-udp-flows', String(MAX_FLOWS), '--udp-idle-timeout', String(IDLE_S), '--metrics-listen', METRICS,
    ]);
    const echo = lab.node('prod', 'udp echo', ECHO, [TARGET.host, String(TARGET.port)]);
    let legit: NsProc | undefined;
    try {
      await gwa.waitFor(/s2cs ready/, { stream: 'stderr', timeoutMs: 60_000 });
      await echo.waitFor(/echo listening/, { stream: 'stdout' });
      const cert = join(stateDir, 'tls', 'cert.pem');
      const s2uc = async (args: string[]): Promise<string> => {
        const p = lab.cli('user', 's2uc', ['--server-cert', cert, ...args]);
        assert.equal(await p.exited, 0, logs(p, gwa));
        return p.stdout();
      };
      const req = JSON.parse(await s2uc(['inbound-request', '--s2cs', LAB_CONTROL.gwa, '--protocol', 'udp', '--targets', `${TARGET.host}:${TARGET.port}`, '--num-conn', '1', '--json'])) as {
        uid: string;
        listeners: string[];
      };
      const listener = parseAddress(req.listeners[0]!, 'listener');
      const row = async (): Promise<NonNullable<StreamRow['datagrams']>> => {
        const status = JSON.parse(await s2uc(['status', '--s2cs', LAB_CONTROL.gwa, '--json'])) as { gateways: { streams: StreamRow[] }[] };
        const stream = status.gateways[0]!.streams.find((s) => s.uid === req.uid);
        assert.ok(stream?.datagrams, `status shows no UDP stream ${req.uid}: ${JSON.stringify(status)}`);
        return stream.datagrams;
      };
      const worker = workerPid(lab);
      const s2csPid = gwa.pid!;
      const usage = (): Usage => ({ t: Date.now(), workerRss: rssMiB(worker), s2csRss: rssMiB(s2csPid), workerFds: fdCount(worker) });
      const baseline = usage();
      t.diagnostic(`before any flow: worker ${baseline.workerRss} MiB, ${baseline.workerFds} descriptors; s2cs ${baseline.s2csRss} MiB`);

      // The legitimate flow, opened before the flood.
      legit = lab.node('gwb', 'legitimate sender', LEGIT, [listener.host, String(listener.port), String(LEGIT_EVERY_MS)]);
      await legit.waitFor(/flow open/, { stream: 'stdout', timeoutMs: 10_000 });

      const floods: { start: number; end: number; sent: Record<string, number>; samples: Usage[]; maxFlows: number }[] = [];
      for (const [round, firstSource] of [0, 30_000].entries()) {
        const samples: Usage[] = [];
        const sampler = setInterval(() => samples.push(usage()), 100);
        let flooding = true;
        let maxFlows = 0;
        // Status while flooding: what s2cs learnt from the worker's last poll.
        const watch = (async () => {
          while (flooding) {
            maxFlows = Math.max(maxFlows, (await row()).flows);
            await sleep(500);
          }
        })();
        const logFrom = gwa.stderr().length;
        const start = Date.now();
        const run = await lab.run('user', [PYTHON, FLOOD, listener.host, String(listener.port), FORGED_NET, String(FLOOD_DATAGRAMS), '--first-source', String(firstSource), '--burst', '500', '--pause-ms', '30', '--as-target', `${TARGET.host}:${TARGET.port}`, '--as-target-count', String(AS_TARGET)], {
          timeoutMs: 120_000,
        });
        const end = Date.now();
        flooding = false;
        await watch;
        clearInterval(sampler);
        assert.equal(run.code, 0, `the flood failed: ${run.stdout}${run.stderr}`);
        const sent = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<string, number>;
        assert.ok(gwa.running() && samples.length > 0, `the gateway ended during flood ${round + 1}\n${logs(gwa)}`);
        const peak = samples.reduce((m, s) => ({ t: s.t, workerRss: Math.max(m.workerRss, s.workerRss), s2csRss: Math.max(m.s2csRss, s.s2csRss), workerFds: Math.max(m.workerFds, s.workerFds) }), baseline);
        t.diagnostic(`flood ${round + 1}: ${JSON.stringify(sent)} in ${end - start} ms; peaks: worker ${peak.workerRss} MiB and ${peak.workerFds} descriptors, s2cs ${peak.s2csRss} MiB; most flows in status ${maxFlows}`);
        assert.ok(sent.addresses! >= 20_000, `the flood came from ${sent.addresses} addresses`);
        assert.ok(maxFlows <= MAX_FLOWS, `status showed ${maxFlows} flows, over --max-udp-flows ${MAX_FLOWS}`);
        // Every flow holds one socket towards the target: the descriptors bound the flows between polls too.
        assert.ok(peak.workerFds <= baseline.workerFds + MAX_FLOWS + 2, `the worker held ${peak.workerFds} descriptors (${baseline.workerFds} before any flow, --max-udp-flows ${MAX_FLOWS})`);
        assert.ok(peak.workerRss <= RSS_BOUND_MIB && peak.s2csRss <= RSS_BOUND_MIB, `resident memory went over ${RSS_BOUND_MIB} MiB: worker ${peak.workerRss}, s2cs ${peak.s2csRss}`);
        // Nothing is logged per datagram: a flood costs the log a few lines at most.
        const logged = gwa.stderr().slice(logFrom).split('\n').filter((l) => l.trim() !== '');
        assert.ok(logged.length <= 10, `the gateway logged ${logged.length} lines during flood ${round + 1}:\n${logged.slice(0, 20).join('\n')}`);
        floods.push({ start, end, sent, samples, maxFlows });

        // The forged flows idle out; the legitimate one, still sending, stays.
        const quiet = Date.now();
        let flows = -1;
        for (;;) {
          flows = (await row()).flows;
          if (flows === 1 && fdCount(worker) === baseline.workerFds + 1) break;
          assert.ok(Date.now() - quiet < (IDLE_S + 8) * 1000, `after flood ${round + 1}: ${flows} flows, ${fdCount(worker)} descriptors (${baseline.workerFds} before any flow) ${Date.now() - quiet} ms later`);
          await sleep(250);
        }
        t.diagnostic(`after flood ${round + 1}: only the legitimate flow left ${Date.now() - quiet} ms later (--udp-idle-timeout ${IDLE_S}); worker ${rssMiB(worker)} MiB`);
      }

      // No growth from one flood to the next: the second leaves no more than the first plus slack.
      const peakRss = (f: (typeof floods)[number]) => Math.max(...f.samples.map((s) => s.workerRss));
      assert.ok(peakRss(floods[1]!) <= peakRss(floods[0]!) + RSS_SLACK_MIB, `the worker's peak grew from ${peakRss(floods[0]!)} MiB (flood 1) to ${peakRss(floods[1]!)} MiB (flood 2)`);
      const s2csPeak = (f: (typeof floods)[number]) => Math.max(...f.samples.map((s) => s.s2csRss));
      assert.ok(s2csPeak(floods[1]!) <= s2csPeak(floods[0]!) + RSS_SLACK_MIB, `s2cs's peak grew from ${s2csPeak(floods[0]!)} to ${s2csPeak(floods[1]!)} MiB`);

      // The legitimate flow during and after the floods.
      const afterAll = Date.now();
      await sleep(2000);
      assert.equal(await legit.stop('SIGTERM'), 0, logs(legit));
      const report = JSON.parse(legit.stdout().trim().split('\n').at(-1)!) as LegitReport;
      legit = undefined;
      assert.equal(report.bad, 0, 'echoes that were not what the legitimate sender sent');
      const echoed = new Map(report.echoes);
      const windowed = (from: number, to: number) => {
        const seqs = report.sentAt.flatMap((at, seq) => (at >= from && at < to ? [seq] : []));
        return { sent: seqs.length, back: seqs.filter((s) => echoed.has(s)).length };
      };
      for (const [i, f] of floods.entries()) {
        const w = windowed(f.start, f.end);
        t.diagnostic(`legitimate flow during flood ${i + 1}: ${w.back} of ${w.sent} echoed`);
        assert.ok(w.back > 0 && w.back >= w.sent / 4, `the legitimate flow was cut off during flood ${i + 1}: ${w.back} of ${w.sent} echoed`);
      }
      // Not cut off: its longest silence stays below the idle timeout (which would have ended it).
      const times = report.echoes.map(([, at]) => at).sort((a, b) => a - b);
      const gap = Math.max(...times.slice(1).map((at, i) => at - times[i]!));
      t.diagnostic(`legitimate flow: ${report.echoes.length} of ${report.sentAt.length} echoed in all; longest time without an echo ${gap} ms`);
      assert.ok(gap < IDLE_S * 1000, `the legitimate flow went ${gap} ms without an echo`);
      const tail = windowed(floods[1]!.end + 500, afterAll + 1500);
      assert.ok(tail.sent > 0 && tail.back >= tail.sent * 0.9, `after the floods: ${tail.back} of ${tail.sent} echoed`);

      // Every flow idles out: the worker's descriptors are back where they were before any flow.
      const quiet = Date.now();
      for (;;) {
        const flows = (await row()).flows;
        if (flows === 0 && fdCount(worker) === baseline.workerFds) break;
        assert.ok(Date.now() - quiet < (IDLE_S + 8) * 1000, `${flows} flows and ${fdCount(worker)} descriptors (${baseline.workerFds} before any flow) ${Date.now() - quiet} ms after the last sender stopped`);
        await sleep(250);
      }
      const rest = usage();
      t.diagnostic(`all flows ended ${Date.now() - quiet} ms after the last sender stopped: worker ${rest.workerRss} MiB, ${rest.workerFds} descriptors; s2cs ${rest.s2csRss} MiB`);

      // A new sender gets a flow again.
      const newcomer = lab.node('gwb', 'new sender', LEGIT, [listener.host, String(listener.port), String(LEGIT_EVERY_MS)]);
      try {
        await newcomer.waitFor(/flow open/, { stream: 'stdout', timeoutMs: 10_000 });
      } finally {
        await newcomer.stop('SIGTERM');
      }

      // Counted: status and /metrics show the drops, flow-limit above all.
      const final = await row();
      t.diagnostic(`status: ${JSON.stringify(final)}`);
      assert.ok((final.drops['flow-limit'] ?? 0) > 0, `no flow-limit drops in status: ${JSON.stringify(final)}`);
      assert.ok(final.flowsOpened > MAX_FLOWS, `flows opened: ${final.flowsOpened}`);
      // What came from the target itself was dropped, not bounced: the target saw only what was forwarded.
      assert.equal(final.drops.loop, floods.reduce((n, f) => n + f.sent.as_target!, 0), `loop drops: ${JSON.stringify(final)}`);
      assert.equal(await echo.stop('SIGTERM'), 0, echo.describe());
      const targetSaw = (JSON.parse(echo.stdout().trim().split('\n').at(-1)!) as { received: number }).received;
      // s2cs knows the worker's counts as of its last poll: the newcomer's last datagrams may come with the next.
      const forwarded = await until('the gateway\'s count of datagrams forwarded to reach what the target received', 10_000, async () => {
        const n = (await row()).toTarget;
        return n >= targetSaw ? n : undefined;
      });
      t.diagnostic(`the target received ${targetSaw} datagrams; the gateway forwarded ${forwarded}`);
      const metrics = await lab.run('gwa', [process.execPath, '-e', FETCH_METRICS], { check: true });
      const metric = (name: string, labels: string) => {
        const m = new RegExp(`^${name}\\{${labels}\\} (\\d+)`, 'm').exec(metrics.stdout);
        return m ? Number(m[1]) : undefined;
      };
      const flowLimit = metric('scistream_stream_datagrams_dropped_total', `uid="${req.uid}",cause="flow-limit"`);
      t.diagnostic(`/metrics: flow-limit drops ${flowLimit}, queue-full ${metric('scistream_stream_datagrams_dropped_total', `uid="${req.uid}",cause="queue-full"`) ?? 0}`);
      assert.ok((flowLimit ?? 0) > 0, `no flow-limit drops in /metrics:\n${metrics.stdout}`);
      const snmp = (await lab.run('gwa', ['cat', '/proc/net/snmp'], { check: true })).stdout.split('\n').filter((l) => l.startsWith('Udp:'));
      t.diagnostic(`gwa kernel UDP counters: ${snmp.join(' | ')}`);

      await s2uc(['release', '--s2cs', LAB_CONTROL.gwa, req.uid]);
    } finally {
      await legit?.stop('SIGTERM');
      await echo.stop('SIGTERM');
      assert.equal(await gwa.stop('SIGTERM'), 0, gwa.describe());
    }
    // s2cs ended its worker: nothing of the gateway is left in its namespace.
    assert.deepEqual(pidsIn(lab, 'gwa'), [], `processes left in ${lab.ns('gwa')}`);
  });
});
