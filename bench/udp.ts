// The UDP rows (`npm run bench -- --only udp`, or `node dist/bench/udp.js`): iperf3 -u
// through each path at an offered 1 Gbit/s, and the highest offered rate each path
// takes losing at most 0.1 % of the datagrams (searchMaxRate). Contenders take turns
// within each repetition of the 1 Gbit/s runs, as in the TCP rows.
import { mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../src/demo/procs.js';
import { iperfUdp, type UdpRun } from './udp-iperf.js';
import { searchMaxRate, SEARCH_DEFAULTS, type SearchResult } from './udp-search.js';
import { directUdp, ensureUdpTools, nginxUdp, nginxVersion, oursHasUdp, oursHopUdp, oursTlsUdp, socatUdp, treeCpuSeconds, type UdpContender } from './udp-contenders.js';
import { ensureTools, machine, machineLine, runScript, start } from './tools.js';

export interface UdpSettings {
  seconds: number;
  /** Runs at 1 Gbit/s per contender and direction. */
  repeats: number;
  /** Datagram payload, bytes. */
  length: number;
  /** Probes per search. */
  maxProbes: number;
  workers: number;
  dir: string;
  say: (line: string) => void;
}

/** One run with the CPU the path's processes used for it. */
export type UdpSample = UdpRun & { cpuSeconds: number };

export interface UdpRow {
  contender: string;
  group: string;
  direction: 'forward' | 'reply';
  /** The 1 Gbit/s runs. */
  at1G: UdpSample[];
  search: SearchResult<UdpSample>;
}

export interface UdpResults {
  settings: Omit<UdpSettings, 'dir' | 'say'>;
  rows: UdpRow[];
  /** Why any of our rows is missing (this build has no UDP streams, or a setup failed). */
  oursSkipped: string[];
  nginx: string;
  loadAverage: number[];
}

export const OURS_UNAVAILABLE = 'ours: UDP streams not available in this build';

/**
 * Directions: forward, the iperf3 client (the flow's opener) sends to the target;
 * reply, the target sends (iperf3 -R), so the data takes the path's reply route.
 */
const DIRECTIONS = [
  { direction: 'forward', reverse: false },
  { direction: 'reply', reverse: true },
] as const;

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One run. iperf3 serves one test at a time, and the last one may still be closing
 * through the path: then the server refuses ("busy", or through a relay a closed
 * control connection) and the run is repeated, a few times at most.
 */
async function sample(c: UdpContender, offeredBps: number, reverse: boolean, s: UdpSettings): Promise<UdpSample> {
  const cpu = () => treeCpuSeconds(...c.pids());
  for (let attempt = 0; ; attempt++) {
    await pause(500);
    const c0 = cpu();
    try {
      const run = await iperfUdp({ port: c.port, offeredBps, seconds: s.seconds, length: s.length, reverse });
      return { ...run, cpuSeconds: cpu() - c0 };
    } catch (err) {
      const message = (err as Error).message;
      if (!/busy|control socket has closed/.test(message) || attempt >= 5) throw new Error(`${c.name}: ${message}`);
    }
  }
}

/**
 * Our rows, each set up on its own: a build may carry UDP on one hop before the
 * TLS WAN leg carries datagrams. A setup that fails is said and its row left out;
 * the contenders' rows still run.
 */
async function ours(iperfPort: number, s: UdpSettings, skipped: string[]): Promise<UdpContender[]> {
  if (!oursHasUdp()) {
    s.say(OURS_UNAVAILABLE);
    skipped.push(OURS_UNAVAILABLE);
    return [];
  }
  const out: UdpContender[] = [];
  for (const [label, setup] of [
    ['one plain hop', () => oursHopUdp(iperfPort, s.dir, s.workers)],
    ['two gateways, TLS WAN leg', () => oursTlsUdp(iperfPort, s.dir, s.workers)],
  ] as const) {
    try {
      out.push(await setup());
    } catch (err) {
      const why = `ours (${label}): setup failed, row left out: ${(err as Error).message.split('\n')[0]}`;
      s.say(why);
      skipped.push(why);
    }
  }
  return out;
}

export async function udpSection(s: UdpSettings): Promise<UdpResults> {
  ensureUdpTools(s.say);
  const iperfPort = await freePort();
  start('iperf3 server (UDP rows)', 'iperf3', ['-s', '-p', String(iperfPort)]);
  await pause(300);
  const oursSkipped: string[] = [];
  const contenders: UdpContender[] = [directUdp(iperfPort), await socatUdp(iperfPort), await nginxUdp(iperfPort, s.dir), ...(await ours(iperfPort, s, oursSkipped))];

  const rows = contenders.flatMap((c) => DIRECTIONS.map((d) => ({ c, ...d, at1G: [] as UdpSample[] })));
  s.say(`UDP: ${rows.length} rows, ${s.repeats} run(s) of ${s.seconds} s at 1 Gbit/s each, then up to ${s.maxProbes} runs searching for the most each takes at <= ${SEARCH_DEFAULTS.maxLossPercent} % loss`);
  for (let rep = 0; rep < s.repeats; rep++) {
    for (const [i] of rows.entries()) {
      const r = rows[(i + rep) % rows.length]!;
      const x = await sample(r.c, 1e9, r.reverse, s);
      r.at1G.push(x);
      s.say(`  1 Gbit/s ${r.c.name} ${r.direction}: ${gbit(x.receivedBps)} Gbit/s received, ${x.lossPercent.toFixed(3)} % lost`);
    }
  }
  // The searches take turns run by run (one iperf3 run at a time, queued in order),
  // so that a busy moment of the machine does not fall on one row's search alone.
  const oneAtATime = serial();
  const out: UdpRow[] = await Promise.all(
    rows.map(async (r) => {
      const search = await searchMaxRate((bps) => oneAtATime(() => sample(r.c, bps, r.reverse, s)), { maxProbes: s.maxProbes });
      s.say(`  most at <= ${SEARCH_DEFAULTS.maxLossPercent} % loss, ${r.c.name} ${r.direction}: ${search.best ? `${gbit(search.best.offeredBps)} Gbit/s offered` : 'none'} (${search.probes.map((p) => `${gbit(p.offeredBps)}:${p.lossPercent.toFixed(2)}%`).join(' ')})`);
      return { contender: r.c.name, group: r.c.group, direction: r.direction, at1G: r.at1G, search };
    }),
  );
  const { dir: _dir, say: _say, ...settings } = s;
  return { settings, rows: out, oursSkipped, nginx: nginxVersion(), loadAverage: loadavg() };
}

/** Runs the tasks given to it one after another, in the order given. */
function serial(): <T>(task: () => Promise<T>) => Promise<T> {
  let last: Promise<unknown> = Promise.resolve();
  return (task) => {
    const run = last.then(task);
    last = run.catch(() => undefined);
    return run;
  };
}

const gbit = (bps: number) => (bps / 1e9).toFixed(2);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** CPU seconds per GB delivered; '-' for a path without processes of its own (direct). */
function perGB(samples: UdpSample[], direct: boolean): string {
  const gb = samples.reduce((s, x) => s + x.receivedBytes, 0) / 1e9;
  if (direct || gb === 0) return '-';
  return (samples.reduce((s, x) => s + x.cpuSeconds, 0) / gb).toFixed(2);
}

/** The Markdown table (as it goes into docs/benchmarks.md). */
export function udpTable(r: UdpResults): string {
  const lines = [
    '| path | contender | direction | 1 Gbit/s offered: Gbit/s received (median) | loss % (median, min-max) | CPU s/GB | most offered at <= 0.1 % loss, Gbit/s | received there, Gbit/s | loss % there | CPU s/GB there |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const x of r.rows) {
    const loss = x.at1G.map((s) => s.lossPercent);
    const b = x.search.best;
    const lowest = Math.min(...x.search.probes.map((p) => p.offeredBps));
    const most = b ? `${gbit(b.offeredBps)}${x.search.senderLimited ? ' (sender-limited)' : ''}` : `none (lost more down to ${gbit(lowest)})`;
    lines.push(
      `| ${x.group} | ${x.contender} | ${x.direction} | ${gbit(median(x.at1G.map((s) => s.receivedBps)))} | ${median(loss).toFixed(3)} (${Math.min(...loss).toFixed(3)}-${Math.max(...loss).toFixed(3)}) | ${perGB(x.at1G, x.group === 'direct')} | ${most} | ${b ? gbit(b.receivedBps) : '-'} | ${b ? b.lossPercent.toFixed(3) : '-'} | ${b ? perGB([b], x.group === 'direct') : '-'} |`,
    );
  }
  const st = r.settings;
  lines.push(
    '',
    `iperf3 -u, ${st.length}-byte datagrams, ${st.seconds} s runs, ${st.repeats} run(s) at 1 Gbit/s per row; the search: at most ${st.maxProbes} runs, doubling or halving from 1 Gbit/s, then bisecting to within ${Math.round((SEARCH_DEFAULTS.precision - 1) * 100)} %. forward: the iperf3 client sends to the target; reply: the target sends (-R), back along the flow.`,
  );
  for (const why of r.oursSkipped) lines.push('', why === OURS_UNAVAILABLE ? `${why}: our rows (one plain hop, two gateways with the TLS WAN leg) come when UDP streams land.` : why);
  lines.push('', `${r.nginx}; load average at the end: ${r.loadAverage.map((l) => l.toFixed(2)).join(' ')}`);
  return `${lines.join('\n')}\n`;
}

// Run on its own: node dist/bench/udp.js [--seconds S] [--repeats N] [--probes N] [--length BYTES] [--workers N]
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  process.noDeprecation = true;
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, repeats: { type: 'string', default: '2' }, probes: { type: 'string', default: '7' }, length: { type: 'string', default: '1400' }, workers: { type: 'string', default: '1' } } });
  const n = (k: keyof typeof values, min: number) => {
    const x = Number(values[k]);
    if (!Number.isInteger(x) || x < min) {
      process.stderr.write(`udp bench: --${k} takes a whole number >= ${min}\n`);
      process.exit(2);
    }
    return x;
  };
  const settings = { seconds: n('seconds', 1), repeats: n('repeats', 1), maxProbes: n('probes', 1), length: n('length', 16), workers: n('workers', 0) };
  if (settings.length > 65507) {
    process.stderr.write('udp bench: --length is at most 65507 (the largest UDP payload over IPv4)\n');
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), 'scistream-udp-'));
  const say = (line: string) => process.stderr.write(`${line}\n`);
  ensureTools(say);
  runScript('UDP bench', dir, async () => {
    const info = machine();
    const r = await udpSection({ ...settings, dir, say });
    process.stdout.write(udpTable(r));
    process.stdout.write(`\n${machineLine(info)}\n`);
  });
}
