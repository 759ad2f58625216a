// `node dist/bench/caps.js [--seconds S] [--repeats N] [--conns N]`: how closely
// --rate-policy cap holds a stream to its rate, and what the cap costs in CPU.
// One plain S2DS hop (s2cs --rate-policy cap --workers 1) in front of an iperf3
// server; for each cap (100 Mbit/s, 1 Gbit/s, 5 Gbit/s, and no cap), a stream set
// up with `inbound-request --rate`, iperf3 -R -P N through its listener. Reported:
// the achieved rate (iperf3's bytes over its seconds), its error against the cap,
// CPU seconds of s2cs and its worker per GB and per second (share of one core).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { freePort } from '../src/demo/procs.js';
import { controlSecretsOf, inboundRequest, releaseStream } from '../src/s2uc/flows.js';
import { formatBitRate, parseRate } from '../src/units.js';
import { gateway } from './contenders.js';
import { cpuSeconds, ensureTools, runScript, start } from './tools.js';

export interface CapRow {
  /** As given, e.g. "1Gbit/s"; "none" for the uncapped stream. */
  cap: string;
  capBps: number;
  conns: number;
  /** Medians over the repeats. */
  achievedBps: number;
  /** (achieved - cap) / cap; undefined for no cap. */
  error: number | undefined;
  minBps: number;
  maxBps: number;
  cpuSecondsPerGB: number;
  /** CPU seconds per second of the run: the share of one core. */
  coreShare: number;
}

export const CAPS = ['100Mbit/s', '1Gbit/s', '5Gbit/s', 'none'] as const;

async function iperf(port: number, conns: number, seconds: number): Promise<{ bytes: number; seconds: number }> {
  const child = spawn('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-P', String(conns), '-t', String(seconds), '-R', '-J'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((r) => child.on('close', r));
  const report = JSON.parse(out || '{}') as { error?: string; end?: { sum_received?: { bytes: number; seconds: number } } };
  if (code !== 0 || !report.end?.sum_received) throw new Error(`iperf3 through port ${port} failed: ${report.error ?? out.slice(0, 300)}`);
  return report.end.sum_received;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Runs the cap rows; `say` reports progress. */
export async function capRows(opts: { seconds: number; repeats: number; conns: number; dir: string; say: (line: string) => void }): Promise<CapRow[]> {
  const iperfPort = await freePort();
  start('iperf3 server (caps)', 'iperf3', ['-s', '-p', String(iperfPort)]);
  await new Promise((r) => setTimeout(r, 300));
  const gw = await gateway('caps-w1', opts.dir, ['--insecure', '--allow-plaintext-data', '--rate-policy', 'cap'], 1);
  const rows: CapRow[] = [];
  for (const cap of CAPS) {
    const kbps = cap === 'none' ? 0 : parseRate(cap);
    const side = await inboundRequest(gw.address, [`127.0.0.1:${iperfPort}`], { numConn: 1, rate: kbps }, { insecure: true });
    const port = Number(side.listeners[0]!.split(':').pop());
    const rates: number[] = [];
    const perGB: number[] = [];
    const share: number[] = [];
    for (let i = 0; i < opts.repeats; i++) {
      const pids = gw.pids();
      const c0 = pids.reduce((s, p) => s + cpuSeconds(p), 0);
      const r = await iperf(port, opts.conns, opts.seconds);
      const cpu = pids.reduce((s, p) => s + cpuSeconds(p), 0) - c0;
      rates.push(r.bytes / r.seconds);
      perGB.push(cpu / (r.bytes / 1e9));
      share.push(cpu / r.seconds);
      // iperf3 serves one test at a time; let it finish closing the last one.
      await new Promise((res) => setTimeout(res, 500));
    }
    await releaseStream(side.uid, [gw.address], { insecure: true, controlSecretFor: controlSecretsOf(side) });
    const achieved = median(rates);
    const row: CapRow = {
      cap,
      capBps: kbps * 1000,
      conns: opts.conns,
      achievedBps: achieved,
      error: kbps > 0 ? (achieved - kbps * 1000) / (kbps * 1000) : undefined,
      minBps: Math.min(...rates),
      maxBps: Math.max(...rates),
      cpuSecondsPerGB: median(perGB),
      coreShare: median(share),
    };
    opts.say(`cap ${cap}: ${formatBitRate(achieved)}${row.error !== undefined ? ` (${(100 * row.error).toFixed(1)} %)` : ''}, ${row.cpuSecondsPerGB.toFixed(3)} CPU s/GB, ${(100 * row.coreShare).toFixed(1)} % of a core`);
    rows.push(row);
  }
  return rows;
}

export function capTable(rows: CapRow[]): string {
  const lines = [
    '| cap (--rate-policy cap) | conns | achieved (median) | min-max | error vs cap | CPU s/GB (s2cs + worker) | CPU, share of one core |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.cap} | ${r.conns} | ${formatBitRate(r.achievedBps)} | ${formatBitRate(r.minBps)}-${formatBitRate(r.maxBps)} | ${r.error === undefined ? '-' : `${r.error >= 0 ? '+' : ''}${(100 * r.error).toFixed(1)} %`} | ${r.cpuSecondsPerGB.toFixed(3)} | ${(100 * r.coreShare).toFixed(1)} % |`,
    );
  }
  return lines.join('\n');
}

// Run on its own: node dist/bench/caps.js
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  process.noDeprecation = true;
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '5' }, repeats: { type: 'string', default: '3' }, conns: { type: 'string', default: '4' } } });
  const dir = mkdtempSync(join(tmpdir(), 'scistream-caps-'));
  const say = (line: string) => process.stderr.write(`${line}\n`);
  ensureTools(say);
  runScript('caps bench', dir, async () => {
    console.log(capTable(await capRows({ seconds: Number(values.seconds), repeats: Number(values.repeats), conns: Number(values.conns), dir, say })));
  });
}
