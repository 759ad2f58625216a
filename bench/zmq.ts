// The ZeroMQ rows (`npm run bench -- --only zmq`, or `node dist/bench/zmq.js`): the workload of
// the reference team's mini-app (ZeroMQ PUB/SUB with a REQ/REP sync socket), run by a client of
// our own (bench/zmq-pubsub.py, Debian's python3-zmq) through each path: the subscriber reaches
// the PUB port and the sync port through one stream each (two streams of the same two gateways;
// two services of one stunnel pair). The publisher drops what it sends before the subscription
// reaches it, so "efficiency" (messages received of those sent) measures how fast the new
// connections' first small messages cross the path, and Gbit/s the bulk rate after that.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort } from '../src/demo/procs.js';
import { parseSize } from '../src/units.js';
import { type Target } from './contenders.js';
import { directPair, scistreamPair, stunnelPair, type PairedPath } from './paired-paths.js';
import { ensureTools, machine, machineLine, PYTHON, runScript, start } from './tools.js';

/** Our publisher and subscriber; the .py file stays in the source tree (tsc does not copy it). */
const SCRIPT = fileURLToPath(new URL('../../bench/zmq-pubsub.py', import.meta.url));
const HOST = '127.0.0.1';

/** Flags' defaults: a run of the section takes well under a minute here. */
export const ZMQ_DEFAULTS = { bytes: '1GiB', messageBytes: '64KiB', runs: '3' };

export interface ZmqSettings {
  /** Bytes the publisher sends per run (in messageBytes messages). */
  totalBytes: number;
  messageBytes: number;
  /** Runs per path, the paths taking turns. */
  runs: number;
  workers: number;
  dir: string;
  say: (line: string) => void;
}

/** What the subscriber printed. */
export interface ZmqRun {
  sent: number;
  received: number;
  receivedBytes: number;
  seconds: number;
  gbps: number;
  efficiencyPercent: number;
  firstMessageAfterSyncMs: number | null;
  endMarker: boolean;
}

export interface ZmqRow {
  contender: string;
  group: string;
  runs: ZmqRun[];
}

export interface ZmqResults {
  settings: Omit<ZmqSettings, 'dir' | 'say'>;
  rows: ZmqRow[];
  loadAverage: number[];
}

/** One run: a fresh publisher, then our subscriber through the path; both must end. */
async function once(path: PairedPath, pub: Target, sync: Target, s: ZmqSettings): Promise<ZmqRun> {
  const timeout = ['--timeout', '60'];
  const publisher = start('zmq publisher', PYTHON, [SCRIPT, 'pub', '--port', String(pub.port), '--sync', String(sync.port), '--message-bytes', String(s.messageBytes), '--total-bytes', String(s.totalBytes), ...timeout]);
  try {
    await publisher.waitFor(/^ready$/m, { stream: 'stdout', timeoutMs: 10_000 });
    const subscriber = start('zmq subscriber', PYTHON, [SCRIPT, 'sub', '--port', String(path.ports[0]), '--sync', String(path.ports[1]), ...timeout]);
    const code = await subscriber.exited;
    const line = subscriber.stdout().trim().split('\n').at(-1) ?? '';
    if (code !== 0 || !line.startsWith('{')) throw new Error(`${path.name}: the ZeroMQ subscriber failed\n${subscriber.describe()}\n${publisher.describe()}`);
    if ((await publisher.exited) !== 0) throw new Error(`${path.name}: the ZeroMQ publisher failed\n${publisher.describe()}`);
    return JSON.parse(line) as ZmqRun;
  } finally {
    await publisher.stop('SIGTERM', 2000);
  }
}

export async function zmqSection(s: ZmqSettings): Promise<ZmqResults> {
  mkdirSync(s.dir, { recursive: true });
  const [pubPort, syncPort] = [await freePort(), await freePort()];
  const pub = { host: HOST, port: pubPort };
  const sync = { host: HOST, port: syncPort };
  const paths = [directPair([pub, sync]), await stunnelPair([pub, sync], join(s.dir, 'stunnel')), await scistreamPair([pub, sync], join(s.dir, 'ours'), s.workers)];
  const rows: ZmqRow[] = paths.map((p) => ({ contender: p.name, group: p.group, runs: [] }));
  s.say(`ZeroMQ PUB/SUB with sync: ${s.runs} run(s) per path of ${(s.totalBytes / 2 ** 30).toFixed(2)} GiB in ${s.messageBytes}-byte messages, paths taking turns`);
  for (let run = 0; run < s.runs; run++) {
    for (const [i] of paths.entries()) {
      const k = (i + run) % paths.length;
      const r = await once(paths[k]!, pub, sync, s);
      rows[k]!.runs.push(r);
      s.say(`  ${paths[k]!.name}: ${r.gbps.toFixed(2)} Gbit/s, ${r.efficiencyPercent.toFixed(2)} % of the messages (${r.received} of ${r.sent}), first after the sync at ${r.firstMessageAfterSyncMs?.toFixed(1) ?? '-'} ms${r.endMarker ? '' : ', no end marker'}`);
    }
  }
  const { dir: _dir, say: _say, ...settings } = s;
  return { settings, rows, loadAverage: loadavg() };
}

const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
};
const spread = (xs: number[], digits: number) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`;

/** The Markdown table (as it goes into docs/benchmarks.md). */
export function zmqTable(r: ZmqResults): string {
  const stunnelGbps = r.rows.find((x) => x.group === 'tls' && x.contender.startsWith('stunnel'));
  const lines = ['| path | contender | runs | Gbit/s, median (min-max) | vs stunnel | efficiency %, median (min-max) | first message after the sync, ms, median |', '|---|---|---|---|---|---|---|'];
  for (const x of r.rows) {
    const g = x.runs.map((y) => y.gbps);
    const vs = stunnelGbps && x.group !== 'direct' ? `${(median(g) / median(stunnelGbps.runs.map((y) => y.gbps))).toFixed(2)}x` : '-';
    const first = x.runs.map((y) => y.firstMessageAfterSyncMs).filter((y): y is number => y !== null);
    lines.push(`| ${x.group} | ${x.contender} | ${x.runs.length} | ${spread(g, 2)} | ${vs} | ${spread(x.runs.map((y) => y.efficiencyPercent), 2)} | ${first.length ? median(first).toFixed(1) : '-'} |`);
  }
  const st = r.settings;
  lines.push(
    '',
    `ZeroMQ PUB/SUB with a REQ/REP sync socket (our client, bench/zmq-pubsub.py, pyzmq from Debian): per run a fresh publisher sends ${(st.totalBytes / 2 ** 30).toFixed(2)} GiB in ${st.messageBytes}-byte messages and an end marker once the subscriber's sync arrived; the subscriber (new connections through the path each run) counts what arrives. Gbit/s: bytes received over the time from the sync answer to the last message; efficiency: messages received of those sent (the publisher drops what it sends before the subscription reaches it). Two streams of the same two gateways (PUB port, sync port); for stunnel two services of one pair.`,
    '',
    `load average at the end: ${r.loadAverage.map((l) => l.toFixed(2)).join(' ')}`,
  );
  return `${lines.join('\n')}\n`;
}

// Run on its own: node dist/bench/zmq.js [--zmq-bytes 1GiB] [--zmq-message-bytes 64KiB] [--zmq-runs N] [--workers N]
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  process.noDeprecation = true;
  const { values } = parseArgs({ options: { 'zmq-bytes': { type: 'string', default: ZMQ_DEFAULTS.bytes }, 'zmq-message-bytes': { type: 'string', default: ZMQ_DEFAULTS.messageBytes }, 'zmq-runs': { type: 'string', default: ZMQ_DEFAULTS.runs }, workers: { type: 'string', default: '1' } } });
  let settings: Omit<ZmqSettings, 'dir' | 'say'>;
  try {
    settings = zmqSettings(values['zmq-bytes']!, values['zmq-message-bytes']!, values['zmq-runs']!, values.workers!);
  } catch (err) {
    process.stderr.write(`zmq bench: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const dir = mkdtempSync(join(tmpdir(), 'scistream-zmq-'));
  const say = (line: string) => process.stderr.write(`${line}\n`);
  ensureTools(say);
  runScript('ZeroMQ bench', dir, async () => {
    const info = machine();
    const r = await zmqSection({ ...settings, dir, say });
    process.stdout.write(zmqTable(r));
    process.stdout.write(`\n${machineLine(info)}\n`);
  });
}

/** The section's settings from command-line text; throws naming the flag. */
export function zmqSettings(bytes: string, messageBytes: string, runs: string, workers: string): Omit<ZmqSettings, 'dir' | 'say'> {
  const size = (flag: string, text: string) => {
    try {
      return parseSize(text);
    } catch (err) {
      throw new Error(`${flag}: ${(err as Error).message}`);
    }
  };
  const s = { totalBytes: size('--zmq-bytes', bytes), messageBytes: size('--zmq-message-bytes', messageBytes), runs: Number(runs), workers: Number(workers) };
  if (s.messageBytes < 2 || s.totalBytes < s.messageBytes) throw new Error('--zmq-message-bytes must be at least 2 bytes and --zmq-bytes at least one message');
  if (!Number.isInteger(s.runs) || s.runs < 1) throw new Error('--zmq-runs takes a whole number >= 1');
  if (!Number.isInteger(s.workers) || s.workers < 0) throw new Error('--workers takes a whole number >= 0');
  return s;
}
