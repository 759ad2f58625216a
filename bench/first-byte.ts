// Time to first byte (`npm run bench -- --only first-byte`, or `node dist/bench/first-byte.js`):
// how fast a new connection's first small message crosses each path. The producer writes a
// small message as soon as it accepts; the consumer times from its connect() to that message's
// first byte, then sends a message of the same size and times the producer's echo (the first
// round trip on the connection). Connections one after another, FIRST_BYTE_GAP_MS apart (as a
// workflow's clients come, not back to back: each is timed on its own, not behind the set-up of
// the previous one's replacement or its teardown), each path idle and again with
// an iperf3 -R stream at full speed through the same forwarding processes (another stream of
// the same gateways, another service of the same stunnel pair). A publisher that drops what it
// sends before a subscription reaches it (ZeroMQ PUB/SUB, bench/zmq.ts) loses about this long.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { freePort } from '../src/demo/procs.js';
import { percentile } from './control.js';
import { STUNNEL, type Target } from './contenders.js';
import { directPair, hopPair, scistreamPair, stunnelPair, type PairedPath } from './paired-paths.js';
import { ensureTools, machine, machineLine, runScript, start } from './tools.js';

export interface FirstByteSettings {
  /** Timed connections per path and load. */
  connections: number;
  /** Pause between them, ms (0: back to back). */
  gapMs: number;
  /** The connections are taken in this many rounds, the paths taking turns in each. */
  rounds: number;
  workers: number;
  dir: string;
  say: (line: string) => void;
}

export type Load = 'idle' | 'another stream at full speed';

export interface FirstByteRow {
  contender: string;
  group: string;
  load: Load;
  /** connect() to the producer's first byte, ms. */
  firstByteMs: number[];
  /** The consumer's first message to the producer's echo of it, ms. */
  roundTripMs: number[];
  /** The other stream's rate during each loaded round, Gbit/s. */
  otherGbps: number[];
}

export interface FirstByteResults {
  settings: Omit<FirstByteSettings, 'dir' | 'say'>;
  messageBytes: number;
  rows: FirstByteRow[];
  loadAverage: number[];
}

const HOST = '127.0.0.1';
/** The producer's greeting and the consumer's first message: a small message each way. */
const MESSAGE_BYTES = 64;
const PROBE_TIMEOUT_MS = 10_000;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The default pause between timed connections. */
export const FIRST_BYTE_GAP_MS = 25;

/** A producer that writes MESSAGE_BYTES as soon as it accepts, then echoes what it reads. */
export async function greetingProducer(): Promise<{ server: Server; target: Target }> {
  const greeting = Buffer.alloc(MESSAGE_BYTES, 'g');
  const server = createServer({ noDelay: true, allowHalfOpen: false }, (s) => {
    s.on('error', () => s.destroy());
    s.write(greeting);
    s.on('data', (d) => s.write(d));
  });
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return { server, target: { host: HOST, port: (server.address() as { port: number }).port } };
}

/**
 * One connection: connect() to the greeting's first byte, then one message out and its echo
 * back. Ends the connection cleanly (FIN both ways) and resolves once it is closed, so that
 * the next connection does not overlap it.
 */
export function probe(port: number): Promise<{ firstByteMs: number; roundTripMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = connect({ host: HOST, port, noDelay: true });
    let firstByteMs = NaN;
    let sentAt = NaN;
    let got = 0;
    let result: { firstByteMs: number; roundTripMs: number } | undefined;
    const timer = setTimeout(() => s.destroy(new Error(`no greeting and echo within ${PROBE_TIMEOUT_MS} ms (${got} bytes arrived)`)), PROBE_TIMEOUT_MS);
    s.on('data', (d: Buffer) => {
      const now = performance.now();
      if (got === 0) firstByteMs = now - t0;
      got += d.length;
      if (got >= MESSAGE_BYTES && Number.isNaN(sentAt)) {
        sentAt = performance.now();
        s.write(Buffer.alloc(MESSAGE_BYTES, 'c'));
      }
      if (got >= 2 * MESSAGE_BYTES && !result) {
        result = { firstByteMs, roundTripMs: now - sentAt };
        s.end();
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`connection to port ${port}: ${err.message}`));
    });
    s.on('close', () => {
      clearTimeout(timer);
      if (result) resolve(result);
      else reject(new Error(`connection to port ${port} closed after ${got} of ${2 * MESSAGE_BYTES} bytes`));
    });
  });
}

/**
 * An iperf3 -R stream at full speed through `port` until stop(), which returns its rate.
 * iperf3 serves one test at a time and the last may still be closing through the path:
 * a refused start is tried again.
 */
export async function otherStream(name: string, port: number): Promise<{ stop: () => Promise<number> }> {
  for (let attempt = 0; ; attempt++) {
    const child = spawn('iperf3', ['-c', HOST, '-p', String(port), '-R', '-t', '600', '-J'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
    // Let it reach full speed (slow start, the path's buffers) before the probes.
    const early = await Promise.race([exited.then(() => true), pause(1500).then(() => false)]);
    if (!early) {
      return {
        stop: async () => {
          child.kill('SIGINT');
          await exited;
          const report = JSON.parse(out || '{}') as { end?: { sum_received?: { bits_per_second: number } } };
          const bps = report.end?.sum_received?.bits_per_second;
          if (!bps) throw new Error(`${name}: the other stream's iperf3 reported no rate: ${out.slice(0, 300)}`);
          return bps / 1e9;
        },
      };
    }
    if (!/busy|control socket has closed/.test(out) || attempt >= 5) throw new Error(`${name}: the other stream's iperf3 failed: ${out.slice(0, 300)}`);
    await pause(500);
  }
}

async function paths(producer: Target, iperf: Target, s: FirstByteSettings): Promise<PairedPath[]> {
  const targets: [Target, Target] = [producer, iperf];
  return [
    directPair(targets),
    await hopPair(targets, join(s.dir, 'hop'), s.workers),
    await scistreamPair(targets, join(s.dir, 'ours'), s.workers),
    await stunnelPair(targets, join(s.dir, 'stunnel')),
  ];
}

export async function firstByteSection(s: FirstByteSettings): Promise<FirstByteResults> {
  mkdirSync(s.dir, { recursive: true });
  const iperfPort = await freePort();
  start('iperf3 server (first-byte rows)', 'iperf3', ['-s', '-p', String(iperfPort)]);
  const producer = await greetingProducer();
  try {
    await pause(300);
    const contenders = await paths(producer.target, { host: HOST, port: iperfPort }, s);
    const loads: Load[] = ['idle', 'another stream at full speed'];
    const rows = contenders.flatMap((c) => loads.map((load) => ({ c, row: { contender: c.name, group: c.group, load, firstByteMs: [], roundTripMs: [], otherGbps: [] } as FirstByteRow })));
    // Warm-up: the first connections of a fresh path are slower (code not yet optimised).
    for (const c of contenders) for (let i = 0; i < 20; i++) await probe(c.ports[0]);
    const perRound = Math.ceil(s.connections / s.rounds);
    s.say(`first byte: ${s.rounds} rounds of ${perRound} connections per path and load, ${s.gapMs} ms apart, paths taking turns`);
    for (let round = 0; round < s.rounds; round++) {
      for (const [i] of rows.entries()) {
        const { c, row } = rows[(i + round) % rows.length]!;
        const other = row.load === 'idle' ? undefined : await otherStream(c.name, c.ports[1]);
        try {
          for (let k = 0; k < perRound; k++) {
            const p = await probe(c.ports[0]).catch((err: Error) => {
              throw new Error(`${c.name} (${row.load}): ${err.message}`);
            });
            row.firstByteMs.push(p.firstByteMs);
            row.roundTripMs.push(p.roundTripMs);
            if (s.gapMs > 0) await pause(s.gapMs);
          }
        } finally {
          const gbps = await other?.stop();
          if (gbps !== undefined) row.otherGbps.push(gbps);
        }
        const sorted = [...row.firstByteMs].sort((a, b) => a - b);
        s.say(`  round ${round + 1}: ${c.name}, ${row.load}: first byte p50 ${ms(percentile(sorted, 50))} ms so far${row.otherGbps.length ? `, other stream ${row.otherGbps.at(-1)!.toFixed(2)} Gbit/s` : ''}`);
      }
    }
    const { dir: _dir, say: _say, ...settings } = s;
    return { settings, messageBytes: MESSAGE_BYTES, rows: rows.map((r) => r.row), loadAverage: loadavg() };
  } finally {
    producer.server.close();
  }
}

const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
const stat = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99) };
};

/** The Markdown table (as it goes into docs/benchmarks.md). */
export function firstByteTable(r: FirstByteResults): string {
  const lines = [
    `| path | contender | load | first byte p50 | p99 | p50 vs stunnel | first round trip p50 | p99 | other stream Gbit/s |`,
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const x of r.rows) {
    const f = stat(x.firstByteMs);
    const rt = stat(x.roundTripMs);
    const st = r.rows.find((y) => y.contender === STUNNEL && y.load === x.load);
    const vs = st && x.group !== 'direct' ? `${(f.p50 / stat(st.firstByteMs).p50).toFixed(2)}x` : '-';
    const other = x.otherGbps.length ? `${(x.otherGbps.reduce((a, b) => a + b, 0) / x.otherGbps.length).toFixed(2)}` : '-';
    lines.push(`| ${x.group} | ${x.contender} | ${x.load} | ${ms(f.p50)} ms | ${ms(f.p99)} ms | ${vs} | ${ms(rt.p50)} ms | ${ms(rt.p99)} ms | ${other} |`);
  }
  const n = r.rows[0]?.firstByteMs.length ?? 0;
  lines.push(
    '',
    `first byte: from the consumer's connect() to the first byte of the ${r.messageBytes}-byte message the producer writes as soon as it accepts; first round trip: a ${r.messageBytes}-byte message from the consumer to the producer's echo, right after. ${n} connections per row, one after another, in ${r.settings.rounds} rounds with the rows taking turns. The other stream: iperf3 -R through a second stream of the same two gateways (for stunnel a second service of the same pair, for the hop a second listener of the same stream), started 1.5 s before the round's connections; its mean rate over the rounds. p50 vs stunnel: against stunnel's row with the same load (lower is better).`,
    '',
    `load average at the end: ${r.loadAverage.map((l) => l.toFixed(2)).join(' ')}`,
  );
  return `${lines.join('\n')}\n`;
}

// Run on its own: node dist/bench/first-byte.js [--connections N] [--gap MS] [--rounds N] [--workers N]
if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  process.noDeprecation = true;
  const { values } = parseArgs({ options: { connections: { type: 'string', default: '200' }, gap: { type: 'string', default: String(FIRST_BYTE_GAP_MS) }, rounds: { type: 'string', default: '4' }, workers: { type: 'string', default: String(availableParallelism()) } } });
  const n = (k: keyof typeof values, min: number) => {
    const x = Number(values[k]);
    if (!Number.isInteger(x) || x < min) {
      process.stderr.write(`first-byte bench: --${k} takes a whole number >= ${min}\n`);
      process.exit(2);
    }
    return x;
  };
  const settings = { connections: n('connections', 1), gapMs: n('gap', 0), rounds: n('rounds', 1), workers: n('workers', 0) };
  const dir = mkdtempSync(join(tmpdir(), 'scistream-first-byte-'));
  const say = (line: string) => process.stderr.write(`${line}\n`);
  ensureTools(say);
  runScript('first-byte bench', dir, async () => {
    const info = machine();
    const r = await firstByteSection({ ...settings, dir, say });
    process.stdout.write(firstByteTable(r));
    process.stdout.write(`\n${machineLine(info)}\n`);
  });
}
