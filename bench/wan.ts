// The WAN rows (`npm run bench -- --only wan`, and at the end of a full run): both gateways in
// network namespaces joined by a link of 50 ms RTT and 0.01 % loss made by a packet-level
// emulator (bench/wan/emulator.c; this kernel has no netem), beside direct TCP and a stunnel
// pair over the same link, with 1, 4 and 8 connections (iperf3 -P, data from the producer's
// side to the consumer's, as the loopback "download" rows). Contenders take turns within each
// repetition, so that a busy moment of the machine hits them all.
import { loadavg } from 'node:os';
import { percentile } from './control.js';
import { STUNNEL } from './contenders.js';
import { cpuSeconds } from './tools.js';
import { countersSince, type EmulatorCounters } from './wan/emulator.js';
import { DEFAULT_LINK, TCP_BUFFERS, WanLab, ensureWanTools, type Emulator, type LinkSettings, type PingStats } from './wan/lab.js';
import { IPERF_PORT, directWan, oursWan, stunnelWan, type WanContender } from './wan/contenders.js';

export interface WanSettings {
  seconds: number;
  repeats: number;
  workers: number;
  link?: LinkSettings;
  say: (line: string) => void;
}

interface WanSample {
  gbps: number;
  receivedBytes: number;
  retransmits: number;
  cpuSeconds: number;
  emulatorCpuSeconds: number;
  link: EmulatorCounters;
}

export interface WanRow {
  contender: string;
  parallel: number;
  samples: WanSample[];
}

export interface WanResults {
  settings: Omit<WanSettings, 'say'> & { link: LinkSettings; tcpBuffers: typeof TCP_BUFFERS; congestionControl: string };
  ping: PingStats;
  rows: WanRow[];
  /** The emulator's counters over the whole section. */
  link: EmulatorCounters;
  retriedRuns: number;
  loadAverage: number[];
}

const CONNECTIONS = [1, 4, 8] as const;

/** One iperf3 -R run from cons; checks that what arrived is what was sent, less what was in flight. */
async function iperf(lab: WanLab, c: WanContender, parallel: number, seconds: number): Promise<{ gbps: number; receivedBytes: number; retransmits: number }> {
  const args = ['iperf3', '-c', c.target, '-p', String(c.port), '-P', String(parallel), '-t', String(seconds), '-R', '-J'];
  const p = lab.spawn('cons', args, `iperf3 client (${c.name})`);
  await p.exited;
  let report: { error?: string; end?: { sum_sent?: { bytes: number; retransmits?: number }; sum_received?: { bytes: number; bits_per_second: number } } };
  try {
    report = JSON.parse(p.stdout() || '{}');
  } catch {
    throw new Error(`iperf3 through ${c.name} printed no JSON report: ${p.describe()}`);
  }
  const sent = report.end?.sum_sent?.bytes;
  const received = report.end?.sum_received;
  if (report.error || sent === undefined || !received) throw new Error(`iperf3 through ${c.name} failed: ${report.error ?? p.describe().slice(0, 400)}`);
  // At the end, up to a BDP or so per connection is still in buffers along the path (64 MiB TCP buffers).
  if (received.bytes <= 0 || received.bytes > sent || sent - received.bytes > parallel * 3 * 64 * 2 ** 20) {
    throw new Error(`iperf3 through ${c.name}: sent ${sent} bytes but ${received.bytes} arrived; the path loses or invents data`);
  }
  return { gbps: received.bits_per_second / 1e9, receivedBytes: received.bytes, retransmits: report.end!.sum_sent!.retransmits ?? 0 };
}

/** One sample; a run refused because the iperf3 server is still busy with the last one is repeated. */
async function sample(lab: WanLab, emulator: Emulator, c: WanContender, parallel: number, seconds: number, retried: { n: number }): Promise<WanSample> {
  for (let attempt = 0; ; attempt++) {
    await new Promise((r) => setTimeout(r, 500));
    const cpu = () => c.pids().reduce((s, p) => s + cpuSeconds(p), 0);
    const [cpu0, emu0, link0] = [cpu(), cpuSeconds(emulator.proc.pid), await emulator.counters()];
    try {
      const r = await iperf(lab, c, parallel, seconds);
      const link = countersSince(link0, await emulator.counters());
      return { ...r, cpuSeconds: cpu() - cpu0, emulatorCpuSeconds: cpuSeconds(emulator.proc.pid) - emu0, link };
    } catch (err) {
      const message = (err as Error).message;
      if (!/busy|control socket has closed/.test(message) || attempt >= 5) throw err;
      retried.n++;
    }
  }
}

export async function wanSection(s: WanSettings): Promise<WanResults> {
  ensureWanTools(s.say);
  const link = s.link ?? DEFAULT_LINK;
  const lab = new WanLab();
  try {
    s.say(`WAN: building the lab (namespaces ${lab.prefix}-*) and the emulator (${link.delayMs} ms each way, ${link.loss * 100} % loss, ${link.queueFrames} frames of queue per direction)`);
    await lab.setup();
    const emulator = await lab.startEmulator(link);
    const ping = await lab.ping(10);
    const rtt = 2 * link.delayMs;
    if (ping.received < 9 || !(ping.minMs >= rtt - 0.5 && ping.avgMs <= rtt * 1.5 + 2)) {
      throw new Error(`the emulated link's RTT is not about ${rtt} ms: ping gwa -> gwb ${JSON.stringify(ping)}`);
    }
    s.say(`WAN: ping gwa -> gwb ${ping.minMs.toFixed(1)}/${ping.avgMs.toFixed(1)}/${ping.maxMs.toFixed(1)} ms (min/avg/max); setting up direct TCP, stunnel and ours`);
    lab.spawn('prod', ['iperf3', '-s', '-p', String(IPERF_PORT)], 'iperf3 server (prod)');
    const contenders = [directWan(), await stunnelWan(lab), await oursWan(lab, s.workers)];
    const start = await emulator.counters();
    const rows: WanRow[] = CONNECTIONS.flatMap((parallel) => contenders.map((c) => ({ contender: c.name, parallel, samples: [] })));
    const runs = rows.length * s.repeats;
    s.say(`WAN: ${runs} iperf3 runs of ${s.seconds} s`);
    const retried = { n: 0 };
    let done = 0;
    for (const parallel of CONNECTIONS) {
      for (let rep = 0; rep < s.repeats; rep++) {
        for (let k = 0; k < contenders.length; k++) {
          const c = contenders[(k + rep) % contenders.length]!;
          const x = await sample(lab, emulator, c, parallel, s.seconds, retried);
          rows.find((r) => r.contender === c.name && r.parallel === parallel)!.samples.push(x);
          done++;
          process.stderr.write(`\r  ${done}/${runs} ${c.name} P=${parallel}: ${x.gbps.toFixed(2)} Gbit/s      `);
        }
      }
    }
    process.stderr.write('\n');
    const total = countersSince(start, await emulator.stop());
    return {
      settings: { seconds: s.seconds, repeats: s.repeats, workers: s.workers, link, tcpBuffers: TCP_BUFFERS, congestionControl: await lab.sysctl('cons', 'net.ipv4.tcp_congestion_control') },
      ping,
      rows,
      link: total,
      retriedRuns: retried.n,
      loadAverage: loadavg(),
    };
  } finally {
    await lab.destroy();
  }
}

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);

/** The WAN rows as one Markdown table, with the link's parameters and the emulator's counters. */
export function wanTable(r: WanResults): string {
  const gbps = (row: WanRow) => median(row.samples.map((x) => x.gbps));
  const find = (name: string, p: number) => r.rows.find((x) => x.contender === name && x.parallel === p);
  const ratio = (a: number, b: WanRow | undefined) => (b && gbps(b) > 0 ? `${(a / gbps(b)).toFixed(2)}x` : '-');
  const perGB = (row: WanRow, k: 'cpuSeconds' | 'emulatorCpuSeconds') => {
    const gb = row.samples.reduce((s, x) => s + x.receivedBytes, 0) / 1e9;
    const cpu = row.samples.reduce((s, x) => s + x[k], 0);
    return cpu > 0 && gb > 0 ? (cpu / gb).toFixed(3) : '-';
  };
  const lines = [
    '| WAN (emulated) | conns | Gbit/s (median) | min-max | vs direct | vs stunnel | CPU s/GB (gateways) | emulator CPU s/GB | retransmits (median) | lost / queue-dropped / late frames |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of r.rows) {
    const g = row.samples.map((x) => x.gbps);
    const m = gbps(row);
    const sum = (k: 'lost' | 'queueFull' | 'late') => row.samples.reduce((s, x) => s + x.link.aToB[k] + x.link.bToA[k], 0);
    lines.push(
      `| ${row.contender} | ${row.parallel} | ${m.toFixed(2)} | ${Math.min(...g).toFixed(2)}-${Math.max(...g).toFixed(2)} | ${row.contender === 'direct TCP' ? '-' : ratio(m, find('direct TCP', row.parallel))} | ${row.contender.startsWith('SciStream') ? ratio(m, find(STUNNEL, row.parallel)) : '-'} | ${perGB(row, 'cpuSeconds')} | ${perGB(row, 'emulatorCpuSeconds')} | ${median(row.samples.map((x) => x.retransmits)).toFixed(0)} | ${sum('lost')} / ${sum('queueFull')} / ${sum('late')} |`,
    );
  }
  const l = r.settings.link;
  const dir = (name: string, d: EmulatorCounters['aToB']) =>
    `${name}: ${d.passed} frames passed (${(d.passedBytes / 1e9).toFixed(2)} GB), ${d.lost} lost, ${d.queueFull} dropped by a full queue, ${d.socketDrops} dropped before the emulator read them, ${d.oversize} oversize, ${d.late} sent > 1 ms late (latest ${(d.lateMaxUs / 1000).toFixed(1)} ms), pushed back ${d.pushedBack} times by the receiving gateway`;
  lines.push(
    '',
    `link: ${l.delayMs} ms each way (ping gwa -> gwb before the runs: ${r.ping.minMs.toFixed(1)}/${r.ping.avgMs.toFixed(1)}/${r.ping.maxMs.toFixed(1)} ms min/avg/max), ${l.loss * 100} % of frames lost each way, a queue of ${l.queueFrames} frames per direction; MTU 1500, offloads off on the link's veths; ` +
      `${r.settings.repeats} run(s) of ${r.settings.seconds} s per row (iperf3 -R from cons, slow start included); TCP in every namespace: ${r.settings.congestionControl}, tcp_rmem/tcp_wmem max ${Number(r.settings.tcpBuffers['net.ipv4.tcp_rmem'].split(' ')[2]) / 2 ** 20} MiB`,
    `emulator over the section: ${dir('producer side -> consumer side', r.link.aToB)}; ${dir('consumer side -> producer side', r.link.bToA)}`,
    'CPU s/GB counts the gateways\' processes (s2cs and its workers, or the two stunnels); the gateways\' kernel receive work from the link runs in their NAPI threads, counted in no column, for every path alike. Lost: the loss setting; queue-dropped: the 16384-frame queue was full (the path downstream, emulator and receiving host on the same two cores, was the bottleneck); late: sent > 1 ms after their time (the emulator or the receiving gateway\'s NAPI thread waited for a core).',
    `iperf3 runs repeated because the server was still busy: ${r.retriedRuns}; load average at the end: ${r.loadAverage.map((x) => x.toFixed(2)).join(' ')}`,
  );
  return `${lines.join('\n')}\n`;
}
