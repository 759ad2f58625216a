// `npm run bench`: S2DS against direct TCP, HAProxy, socat and stunnel on loopback,
// plus the control plane's setup latency and the memory of idle streams. Contenders
// alternate within each repetition, so that a busy moment of a shared machine hits
// them all; figures are medians with their spread, compared only within this run.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { BIN_DIR, freePort, spawnCli } from '../src/demo/procs.js';
import { HAPROXY_SPLICE, direct, haproxy, workersLabel, s2dsHop, scistream, socat, stunnel, STUNNEL, type Contender, type Target } from './contenders.js';
import { idleStreamMemory, oneByteProducer, percentile, setupOnce, setupOnceCli, setupRate, startGateways } from './control.js';
import { cpuSeconds, cryptoCeilingGbps, ensureTools, machine, machineLine, memory, start, stopAll, track } from './tools.js';
import { ConnectionPool } from '../src/protocol/client.js';
import { capRows, capTable, type CapRow } from './caps.js';
import { udpSection, udpTable } from './udp.js';
import { wanSection, wanTable } from './wan.js';
import { FIRST_BYTE_GAP_MS, firstByteSection, firstByteTable } from './first-byte.js';
import { ZMQ_DEFAULTS, zmqSection, zmqSettings, zmqTable } from './zmq.js';

// grpc-js names loopback IPs as TLS server names, which Node flags on every call.
process.noDeprecation = true;

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    repeats: { type: 'string' },
    seconds: { type: 'string' },
    json: { type: 'string' },
    // Only these throughput rows, e.g. `upload-1,download-4`: for iterating on one
    // path. Skips the SciStream/stunnel contenders when no TLS row is asked, and the
    // verified, control-plane and memory sections.
    rows: { type: 'string' },
    // Another checkout's bin/s2cs.js (built), run as one more one-hop contender:
    // before/after comparisons within one run.
    compare: { type: 'string' },
    // Local workers of every S2DS gateway in the main rows (stated on the command line),
    // by default s2cs's own: the number of cores, as users get them. The workers rows use 1 and 2.
    workers: { type: 'string', default: String(availableParallelism()) },
    'compare-workers': { type: 'string' },
    // `--only control`: the control-plane section alone (setup latency taking turns
    // between --workers 0 and 2, the CLI setups and the 50 concurrent clients);
    // `--only startup`: the start-up rows and the CLI setup row (a minute, not the whole run);
    // `--only udp`: the UDP rows (iperf3 -u through each path, bench/udp.ts);
    // `--only wan`: the WAN rows (an emulated 50 ms, 0.01 % loss link between two namespaces, bench/wan.ts).
    // `--only first-byte`: time to first byte per connection (bench/first-byte.ts);
    // `--only zmq`: ZeroMQ PUB/SUB with a sync socket through each path (bench/zmq.ts).
    only: { type: 'string' },
    // Timed connections per path and load in the first-byte rows.
    'first-byte-connections': { type: 'string' },
    // Pause between the timed connections of a path, ms (0: back to back).
    'first-byte-gap': { type: 'string' },
    // The ZeroMQ rows: bytes per run, message size, runs per path.
    'zmq-bytes': { type: 'string', default: ZMQ_DEFAULTS.bytes },
    'zmq-message-bytes': { type: 'string', default: ZMQ_DEFAULTS.messageBytes },
    'zmq-runs': { type: 'string' },
    // Runs per start-up row and CLI setups in an --only startup run.
    runs: { type: 'string' },
  },
});
const ONLY = ['control', 'startup', 'udp', 'wan', 'first-byte', 'zmq'];
if (values.only !== undefined && !ONLY.includes(values.only)) {
  process.stderr.write('bench: --only takes "control" (the control-plane section), "startup" (the start-up rows and the CLI setup row), "udp" (the UDP rows), "wan" (the WAN rows), "first-byte" (time to first byte per connection) or "zmq" (ZeroMQ PUB/SUB with sync)\n');
  process.exit(2);
}
const onlyControl = values.only === 'control';
const workers = Number(values.workers);
const compareWorkers = Number(values['compare-workers'] ?? workers);
if (![workers, compareWorkers].every((w) => Number.isInteger(w) && w >= 0)) {
  process.stderr.write('bench: --workers and --compare-workers take a whole number >= 0\n');
  process.exit(2);
}
const quick = values.quick!;
const repeats = Number(values.repeats ?? (quick ? 1 : 4));
const seconds = Number(values.seconds ?? (quick ? 1 : 3));
const setups = quick ? 20 : 100;
const onlyRows = values.rows?.split(',').map((r) => r.trim());
if (onlyRows?.some((r) => !/^(download|upload)-\d+$/.test(r))) {
  process.stderr.write('bench: --rows takes DIRECTION-CONNS items, e.g. upload-1,download-4\n');
  process.exit(2);
}
const firstByteConnections = Number(values['first-byte-connections'] ?? (quick ? 40 : 200));
const firstByteGapMs = Number(values['first-byte-gap'] ?? FIRST_BYTE_GAP_MS);
if (!Number.isInteger(firstByteGapMs) || firstByteGapMs < 0) {
  process.stderr.write('bench: --first-byte-gap takes a whole number of ms >= 0\n');
  process.exit(2);
}
if (!Number.isInteger(firstByteConnections) || firstByteConnections < 4) {
  process.stderr.write('bench: --first-byte-connections takes a whole number >= 4\n');
  process.exit(2);
}
const zmq = (() => {
  try {
    return zmqSettings(values['zmq-bytes']!, values['zmq-message-bytes']!, values['zmq-runs'] ?? (quick ? '1' : ZMQ_DEFAULTS.runs), String(workers));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    process.exit(2);
  }
})();
if (!Number.isInteger(repeats) || repeats < 1 || !(seconds >= 1)) {
  process.stderr.write('bench: --repeats must be a whole number >= 1 and --seconds >= 1\n');
  process.exit(2);
}

const say = (line: string) => process.stderr.write(`${line}\n`);
const dir = mkdtempSync(join(tmpdir(), 'scistream-bench-'));

interface Sample {
  gbps: number;
  cpuSeconds: number;
  sentBytes: number;
  receivedBytes: number;
}

interface Row {
  path: string;
  contender: string;
  parallel: number;
  direction: 'download' | 'upload';
  samples: Sample[];
  peakRssBytes?: number;
}

/** One iperf3 run; checks that what arrived is what was sent, less what was still in flight at the end. */
async function iperf(port: number, parallel: number, secs: number, reverse: boolean): Promise<Omit<Sample, 'cpuSeconds'>> {
  const args = ['-c', '127.0.0.1', '-p', String(port), '-P', String(parallel), '-t', String(secs), '-J', ...(reverse ? ['-R'] : [])];
  const child = spawn('iperf3', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? 1)));
  const report = JSON.parse(out || '{}') as { error?: string; end?: { sum_sent?: { bytes: number }; sum_received?: { bytes: number; bits_per_second: number } } };
  if (code !== 0 || report.error || !report.end?.sum_received || !report.end.sum_sent) throw new Error(`iperf3 ${args.join(' ')} failed: ${report.error ?? out.slice(0, 300)}`);
  const sent = report.end.sum_sent.bytes;
  const received = report.end.sum_received.bytes;
  // The receiver stops counting when the test ends: what is still in socket buffers
  // along the path is not counted. More missing than that means lost data.
  const inFlight = parallel * 64 * 2 ** 20;
  if (received <= 0 || received > sent || sent - received > inFlight) {
    throw new Error(`iperf3 through port ${port}: sent ${sent} bytes but ${received} arrived; the path loses or invents data`);
  }
  return { gbps: report.end.sum_received.bits_per_second / 1e9, sentBytes: sent, receivedBytes: received };
}

let retried = 0;

/**
 * iperf3 serves one test at a time, and the previous one may still be closing its
 * connections through a proxy. Then the server refuses the new test: directly that
 * reads "busy"; through a proxy the refusal can arrive as a closed control connection.
 * Such a run is repeated (and counted in the results); any other failure stops the benchmark.
 */
async function iperfWhenFree(name: string, port: number, parallel: number, secs: number, reverse: boolean): Promise<Omit<Sample, 'cpuSeconds'>> {
  for (let attempt = 0; ; attempt++) {
    await new Promise((r) => setTimeout(r, 300));
    try {
      return await iperf(port, parallel, secs, reverse);
    } catch (err) {
      const message = (err as Error).message;
      if (!/busy|control socket has closed/.test(message) || attempt >= 5) throw new Error(`${name}: ${message}`);
      retried++;
    }
  }
}

/**
 * One sample: the connections split evenly over the contender's ports (one iperf3
 * client per port, at once), their rates and bytes summed. CPU time is that of the
 * contender's processes, s2cs's workers included.
 */
async function measure(c: Contender, parallel: number, reverse: boolean): Promise<Sample> {
  const pids = c.pids();
  const cpu0 = pids.reduce((s, p) => s + cpuSeconds(p), 0);
  const each = Math.max(1, Math.floor(parallel / c.ports.length));
  const rs = await Promise.all(c.ports.map((port) => iperfWhenFree(c.name, port, each, seconds, reverse)));
  const cpu1 = pids.reduce((s, p) => s + cpuSeconds(p), 0);
  const sum = (k: 'gbps' | 'sentBytes' | 'receivedBytes') => rs.reduce((s, r) => s + r[k], 0);
  return { gbps: sum('gbps'), sentBytes: sum('sentBytes'), receivedBytes: sum('receivedBytes'), cpuSeconds: cpu1 - cpu0 };
}

const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);

/** Our own generator end to end: s2app produce -> path -> s2app consume, every byte verified. */
async function verified(label: string, connectTo: (producer: string) => Promise<string>, parallel: number, bytes: number): Promise<{ label: string; parallel: number; gbps: number; bytes: number }> {
  const producer = track(spawnCli('s2app', ['produce', '--listen', '127.0.0.1:0', '--bytes', String(bytes)]));
  const address = (await producer.waitFor(/producer listening on (\S+)/))[1]!;
  try {
    const entry = await connectTo(address);
    const consumer = spawnCli('s2app', ['consume', '--connect', Array(parallel).fill(entry).join(','), '--bytes', String(bytes), '--json']);
    if ((await consumer.exited) !== 0) throw new Error(`verification failed through ${label}:\n${consumer.describe()}`);
    const r = JSON.parse(consumer.stdout()) as { ok: boolean; bytes: number; gbitPerSecond: number };
    if (!r.ok || r.bytes !== bytes * parallel) throw new Error(`verification through ${label}: ${r.bytes} of ${bytes * parallel} bytes`);
    return { label, parallel, gbps: r.gbitPerSecond, bytes: r.bytes };
  } finally {
    await producer.stop();
  }
}

/** `--only startup`: how long the programs take to start, and a stream set up through them. */
async function startupOnly(): Promise<void> {
  const info = machine();
  const runs = Number(values.runs ?? 20);
  if (!Number.isInteger(runs) || runs < 3) {
    process.stderr.write('bench: --runs must be a whole number >= 3\n');
    process.exit(2);
  }
  say(`${machineLine(info, true)}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  say(`start-up: ${runs} runs of each program, taking turns`);
  const startup = await startupRows(runs);
  say(`control plane: ${runs} setups through the CLIs (s2uc request + s2app hello as processes), --workers 2`);
  const gw = await startGateways(dir, 64, 2);
  const producer = await oneByteProducer();
  // Warm-up, as the full run's CLI setups come after hundreds of library setups: the first
  // setups on fresh gateways are slower (their code is not optimised yet).
  for (let i = 0; i < 30; i++) await setupOnce(gw, producer.address);
  for (let i = 0; i < 2; i++) await setupOnceCli(gw, producer.address);
  const cli: number[] = [];
  for (let i = 0; i < runs; i++) cli.push(await setupOnceCli(gw, producer.address));
  producer.server.close();
  const cliStat = latency(cli);
  const lines = [
    '| start-up and CLI setup | p50 | p99 |',
    '|---|---|---|',
    ...startup.map((r) => `| ${r.label}, ${r.n} runs | ${r.p50ms.toFixed(0)} ms | ${r.p99ms.toFixed(0)} ms |`),
    `| setup, CLI processes (s2uc request + s2app hello, Node start-up included), --workers 2, ${cliStat.n} setups | ${cliStat.p50ms.toFixed(0)} ms | ${cliStat.p99ms.toFixed(0)} ms |`,
    '',
    `${machineLine(info, true)}; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    '',
  ];
  process.stdout.write(lines.join('\n'));
  if (values.json) {
    writeFileSync(values.json, `${JSON.stringify({ date: new Date().toISOString(), machine: info, startup, cli: { ...cliStat, samplesMs: cli } }, null, 2)}\n`);
    say(`wrote ${values.json}`);
  }
}

const latency = (xs: number[]): Latency => {
  const sorted = [...xs].sort((a, b) => a - b);
  return { n: xs.length, p50ms: percentile(sorted, 50), p99ms: percentile(sorted, 99) };
};

/** Wall time from spawn to exit of each program, in turns so that a busy moment hits them all. */
async function startupRows(runs: number): Promise<(Latency & { label: string })[]> {
  const programs: { label: string; args: string[] }[] = [
    { label: '`node -e 0` (bare Node)', args: ['-e', '0'] },
    { label: '`s2uc --help`', args: [join(BIN_DIR, 's2uc.js'), '--help'] },
    { label: '`s2app hello --help`', args: [join(BIN_DIR, 's2app.js'), 'hello', '--help'] },
    { label: '`s2cs --help`', args: [join(BIN_DIR, 's2cs.js'), '--help'] },
    { label: '`s2cs start --help`', args: [join(BIN_DIR, 's2cs.js'), 'start', '--help'] },
  ];
  const times: number[][] = programs.map(() => []);
  const once = (args: string[]) =>
    new Promise<number>((resolve, reject) => {
      const t0 = performance.now();
      const child = spawn(process.execPath, args, { stdio: 'ignore' });
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`node ${args.join(' ')} exited with ${code}`))));
    });
  for (const p of programs) await once(p.args); // warm the file cache
  for (let i = 0; i < runs; i++) for (const [k, p] of programs.entries()) times[k]!.push(await once(p.args));
  return programs.map((p, k) => ({ label: p.label, ...latency(times[k]!) }));
}

/** The UDP rows: alone (`--only udp`), or after the rest of a full run; its JSON beside the run's. */
async function udpRows(info: ReturnType<typeof machine>): Promise<void> {
  const settings = { seconds: Math.max(1, Math.round(seconds)), repeats: Number(values.repeats ?? (quick ? 1 : 2)), length: 1400, maxProbes: quick ? 5 : 7, workers, dir: join(dir, 'udp'), say };
  mkdirSync(settings.dir);
  const r = await udpSection(settings);
  process.stdout.write(`\n${udpTable(r)}\n${machineLine(info)}\n`);
  writeSectionJson('udp', { date: new Date().toISOString(), machine: info, ...r });
}

/** The WAN rows: alone (`--only wan`), or at the end of a full run; its JSON beside the run's. */
async function wanRows(info: ReturnType<typeof machine>): Promise<void> {
  const r = await wanSection({ seconds: Number(values.seconds ?? (quick ? 2 : 4)), repeats: Number(values.repeats ?? (quick ? 1 : 2)), workers, say });
  process.stdout.write(`\n${wanTable(r)}\n${machineLine(info)}\n`);
  writeSectionJson('wan', { date: new Date().toISOString(), machine: info, ...r });
}

/** The first-byte rows: alone (`--only first-byte`), or after the rest of a full run; its JSON beside the run's. */
async function firstByteRows(info: ReturnType<typeof machine>): Promise<void> {
  const r = await firstByteSection({ connections: firstByteConnections, gapMs: firstByteGapMs, rounds: 4, workers, dir: join(dir, 'first-byte'), say });
  process.stdout.write(`\n${firstByteTable(r)}\n${machineLine(info)}\n`);
  writeSectionJson('first-byte', { date: new Date().toISOString(), machine: info, ...r });
}

/** The ZeroMQ rows: alone (`--only zmq`), or after the rest of a full run. */
async function zmqRows(info: ReturnType<typeof machine>): Promise<void> {
  const r = await zmqSection({ ...zmq, dir: join(dir, 'zmq'), say });
  process.stdout.write(`\n${zmqTable(r)}\n${machineLine(info)}\n`);
  writeSectionJson('zmq', { date: new Date().toISOString(), machine: info, ...r });
}

/** A section's JSON: the --json file in an --only run of it, else beside it (`NAME-SECTION.json`). */
function writeSectionJson(section: string, body: object): void {
  if (!values.json) return;
  const path = values.only === section ? values.json : values.json.replace(/(\.json)?$/, `-${section}.json`);
  writeFileSync(path, `${JSON.stringify(body, null, 2)}\n`);
  say(`wrote ${path}`);
}

async function main(): Promise<void> {
  if (values.only === 'startup') return startupOnly();
  ensureTools(say);
  const info = machine();
  say(machineLine(info, true));
  if (values.only === 'udp') return udpRows(info);
  if (values.only === 'wan') return wanRows(info);
  if (values.only === 'first-byte') return firstByteRows(info);
  if (values.only === 'zmq') return zmqRows(info);
  const rows = new Map<string, Row>();
  const checks: { label: string; parallel: number; gbps: number; bytes: number }[] = [];
  if (!onlyControl) {
    info.cryptoCeilingGbps = cryptoCeilingGbps();
    await throughputAndChecks(info, rows, checks);
  }
  else say(`load average at the start: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  // A --rows run ends with its throughput rows.
  if (!onlyRows) await controlPlane(info, rows, checks);
  if (!onlyRows && !onlyControl) {
    await udpRows(info);
    await wanRows(info);
    await firstByteRows(info);
    await zmqRows(info);
  }
}

async function throughputAndChecks(info: ReturnType<typeof machine>, rows: Map<string, Row>, checks: { label: string; parallel: number; gbps: number; bytes: number }[]): Promise<void> {
  const [iperfPort, iperfPort2] = [await freePort(), await freePort()];
  start('iperf3 server', 'iperf3', ['-s', '-p', String(iperfPort)]);
  // The workers rows: a stream with one listener per target, and one iperf3 server per target.
  start('iperf3 server 2', 'iperf3', ['-s', '-p', String(iperfPort2)]);
  const target: Target = { host: '127.0.0.1', port: iperfPort };
  const target2: Target = { host: '127.0.0.1', port: iperfPort2 };
  await new Promise((r) => setTimeout(r, 300));

  say('setting up the contenders (SciStream paths through the real protocol)');
  // Uploads have no TLS row: a --rows run of uploads only skips those contenders.
  const tls = !onlyRows || onlyRows.some((r) => r.startsWith('download'));
  const workersRows = !onlyRows || onlyRows.some((r) => /-(4|64)$/.test(r));
  const contenders = [
    direct(target),
    await s2dsHop([target], dir, workers),
    await haproxy(target, dir),
    await haproxy(target, dir, { splice: true }),
    await socat(target),
    ...(values.compare ? [await s2dsHop([target], dir, compareWorkers, { s2csScript: values.compare })] : []),
    ...(tls ? [await scistream(target, dir, 1, workers), await stunnel(target, dir)] : []),
    // The workers dimension: the same stream (two listeners, one per iperf3 server,
    // half of the connections each) on one worker and spread over two.
    ...(workersRows
      ? [
          await s2dsHop([target, target2], dir, 1, { name: 'S2DS, 2 listeners, --workers 1', group: 'workers' }),
          await s2dsHop([target, target2], dir, 2, { name: 'S2DS, 2 listeners, --workers 2', group: 'workers' }),
        ]
      : []),
  ];
  const row = (c: Contender, parallel: number, direction: Row['direction']) => {
    const key = `${c.name}|${parallel}|${direction}`;
    let r = rows.get(key);
    if (!r) rows.set(key, (r = { path: c.group, contender: c.name, parallel, direction, samples: [] }));
    return r;
  };

  // Bulk data flows from the producer (the iperf3 server, -R) to the consumer (the client).
  const notWorkers = contenders.filter((c) => c.group !== 'workers');
  const plain = contenders.filter((c) => c.group !== 'tls');
  const fullPlan: { parallel: number; direction: Row['direction']; who: Contender[]; reps: number }[] = [
    { parallel: 1, direction: 'download', who: notWorkers, reps: repeats },
    { parallel: 4, direction: 'download', who: contenders, reps: repeats },
    { parallel: 1, direction: 'upload', who: notWorkers.filter((c) => c.group !== 'tls'), reps: repeats },
    { parallel: 4, direction: 'upload', who: plain, reps: repeats },
    { parallel: 64, direction: 'download', who: contenders.filter((c) => c.name !== 'socat'), reps: 1 },
    // One run each, but two for the workers rows: their point is the comparison of the two.
    { parallel: 64, direction: 'upload', who: plain.filter((c) => c.name !== 'socat' && c.group !== 'workers'), reps: 1 },
    { parallel: 64, direction: 'upload', who: plain.filter((c) => c.group === 'workers'), reps: 2 },
    { parallel: 64, direction: 'download', who: plain.filter((c) => c.group === 'workers'), reps: 1 },
  ];
  const plan = onlyRows ? fullPlan.filter((p) => onlyRows.includes(`${p.direction}-${p.parallel}`)) : fullPlan;
  const runs = plan.reduce((n, p) => n + p.reps * p.who.length, 0);
  say(`throughput: ${runs} iperf3 runs of ${seconds} s`);
  let done = 0;
  for (const step of plan) {
    for (let rep = 0; rep < step.reps; rep++) {
      // Rotate the order each repetition.
      const order = step.who.map((_, i) => step.who[(i + rep) % step.who.length]!);
      for (const c of order) {
        const s = await measure(c, step.parallel, step.direction === 'download');
        row(c, step.parallel, step.direction).samples.push(s);
        done++;
        process.stderr.write(`\r  ${done}/${runs} ${c.name} P=${step.parallel} ${step.direction}: ${s.gbps.toFixed(2)} Gbit/s      `);
      }
    }
  }
  process.stderr.write('\n');
  for (const r of rows.values()) {
    const c = contenders.find((x) => x.name === r.contender)!;
    r.peakRssBytes = c.pids().reduce((s, p) => s + memory(p).peak, 0);
  }

  const throughputOnly = table({ machine: info, retriedRuns: retried, throughput: summarize(rows), verified: [], setup: undefined, idleMemory: undefined });
  if (onlyRows) {
    process.stdout.write(throughputOnly);
    return;
  }
  // Kept should a later section fail: these rows took most of the run.
  say(throughputOnly);

  say('verifying every byte with our own generator (s2app produce -> path -> s2app consume)');
  const verifiedBytes = quick ? 256 * 2 ** 20 : 1024 * 2 ** 20;
  const at = (p: string): Target => ({ host: p.slice(0, p.lastIndexOf(':')), port: Number(p.slice(p.lastIndexOf(':') + 1)) });
  for (const parallel of [1, 4]) {
    checks.push(await verified('direct', async (p) => p, parallel, verifiedBytes));
    checks.push(await verified(`S2DS (${workersLabel(workers)})`, async (p) => `127.0.0.1:${(await s2dsHop([at(p)], join(dir, `verify-hop-${parallel}`), workers)).ports[0]}`, parallel, verifiedBytes));
    checks.push(
      await verified(`SciStream (2 x S2DS, TLS, ${workersLabel(workers)} each)`, async (p) => `127.0.0.1:${(await scistream(at(p), join(dir, `verify-${parallel}`), 1, workers)).ports[0]}`, parallel, verifiedBytes),
    );
  }
}

async function controlPlane(info: ReturnType<typeof machine>, rows: Map<string, Row>, checks: { label: string; parallel: number; gbps: number; bytes: number }[]): Promise<void> {
  // Two pairs of gateways: forwarding inside s2cs (--workers 0) and through two local
  // workers each (--workers 2), taking turns setup by setup so that the difference
  // the agents add is not a difference in the machine's load.
  say(`control plane: ${setups} setups each with --workers 0 and --workers 2, request to the consumer's first byte`);
  // With --compare, a third pair: --workers 2 run by the other checkout.
  const gws = [await startGateways(dir, 256, 0), await startGateways(dir, 256, 2), ...(values.compare ? [await startGateways(dir, 256, 2, values.compare)] : [])];
  const producer = await oneByteProducer();
  const turns = async (pools: (ConnectionPool | undefined)[]): Promise<number[][]> => {
    const out: number[][] = gws.map(() => []);
    for (let i = 0; i < setups; i++) for (const [k, g] of gws.entries()) out[k]!.push(await setupOnce(g, producer.address, pools[k]));
    return out;
  };
  for (const g of gws) for (let i = 0; i < 5; i++) await setupOnce(g, producer.address); // warm-up
  const lib = await turns([undefined, undefined]);
  const pools = gws.map(() => new ConnectionPool());
  for (const [k, g] of gws.entries()) await setupOnce(g, producer.address, pools[k]); // opens the pools' connections
  const warm = await turns(pools);
  for (const p of pools) p.close();
  const gw = gws[1]!;
  const cli: number[] = [];
  for (let i = 0; i < (quick ? 3 : 10); i++) cli.push(await setupOnceCli(gw, producer.address));
  say('start-up: each program, taking turns');
  const startup = await startupRows(quick ? 10 : 20);
  say('control plane: 50 concurrent clients, each keeping its control connections (--workers 2)');
  const rate = await setupRate(gw, producer.address, 50, quick ? 2 : 5);
  producer.server.close();

  const mem = onlyControl ? undefined : (say('memory of idle streams (s2cs --workers 1: s2cs and its worker)'), await idleStreamMemory(dir, quick ? [1, 100] : [1, 100, 1000], 1));

  const caps = onlyControl
    ? undefined
    : (say('rate caps (--rate-policy cap, one plain hop): 100 Mbit/s, 1 Gbit/s, 5 Gbit/s and none'),
      await capRows({ seconds: quick ? 2 : 5, repeats: quick ? 1 : 3, conns: 4, dir: join(dir, 'caps'), say }));

  const stat = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    return { n: xs.length, p50ms: percentile(sorted, 50), p99ms: percentile(sorted, 99) };
  };
  const cliSorted = [...cli].sort((a, b) => a - b);
  const results = {
    date: new Date().toISOString(),
    machine: info,
    settings: { repeats, seconds, quick },
    retriedRuns: retried,
    throughput: summarize(rows),
    verified: checks,
    setup: {
      byWorkers: gws.map((g, k) => ({ workers: g.workers, compared: g.compared, library: stat(lib[k]!), libraryWarm: stat(warm[k]!) })),
      cli: { n: cli.length, p50ms: percentile(cliSorted, 50), p99ms: percentile(cliSorted, 99) },
      startup,
      concurrent50: rate,
    },
    idleMemory: mem && {
      baselineBytes: mem.baseline,
      points: mem.points,
      perStreamBytes: mem.points.length > 1 ? (mem.points.at(-1)!.rssBytes - mem.points[0]!.rssBytes) / (mem.points.at(-1)!.streams - mem.points[0]!.streams) : NaN,
    },
    caps,
    loadAverage: loadavg(),
  };
  process.stdout.write(table(results));
  if (values.json) {
    writeFileSync(values.json, `${JSON.stringify(results, null, 2)}\n`);
    say(`wrote ${values.json}`);
  }
}

function summarize(rows: Map<string, Row>): Results['throughput'] {
  return [...rows.values()].map((r) => {
    const g = r.samples.map((s) => s.gbps);
    const gb = r.samples.reduce((s, x) => s + x.receivedBytes, 0) / 1e9;
    return {
      path: r.path,
      contender: r.contender,
      parallel: r.parallel,
      direction: r.direction,
      gbps: { median: median(g), min: Math.min(...g), max: Math.max(...g), samples: g },
      cpuSecondsPerGB: r.samples.reduce((s, x) => s + x.cpuSeconds, 0) / gb,
      peakRssBytes: r.peakRssBytes ?? 0,
    };
  });
}

type Latency = { n: number; p50ms: number; p99ms: number };

type Results = {
  machine: ReturnType<typeof machine>;
  retriedRuns: number;
  throughput: { path: string; contender: string; parallel: number; direction: string; gbps: { median: number; min: number; max: number; samples: number[] }; cpuSecondsPerGB: number; peakRssBytes: number }[];
  verified: { label: string; parallel: number; gbps: number; bytes: number }[];
  /** Absent in a --rows run. */
  loadAverage?: number[];
  setup?: { byWorkers: { workers: number; compared?: string; library: Latency; libraryWarm: Latency }[]; cli: { n: number; p50ms: number; p99ms: number }; startup: (Latency & { label: string })[]; concurrent50: { perSecond: number; setups: number; failures: number } };
  idleMemory?: { baselineBytes: number; points: { streams: number; rssBytes: number }[]; perStreamBytes: number };
  /** Absent in a --rows run. */
  caps?: CapRow[];
};

/** One Markdown table (it goes into docs/benchmarks.md as printed). */
function table(r: Results): string {
  const t = r.throughput;
  const find = (name: string, p: number, dir: string) => t.find((x) => x.contender === name && x.parallel === p && x.direction === dir)?.gbps.median;
  // Against the better HAProxy of the run (defaults or splice-auto), the one a user would pick.
  const haproxyBest = (p: number, dir: string) => Math.max(find('HAProxy', p, dir) ?? 0, find(HAPROXY_SPLICE, p, dir) ?? 0) || undefined;
  const ratio = (a: number, b: number | undefined) => (b ? `${(a / b).toFixed(2)}x` : '-');
  // No throughput rows in an --only control run.
  const lines = t.length === 0 ? [] : [
    '| path | contender | conns | direction | Gbit/s (median) | min-max | vs direct | vs HAProxy | vs stunnel | CPU s/GB | Gbit per CPU-s | peak RSS MiB |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const x of t) {
    const m = x.gbps.median;
    lines.push(
      `| ${x.path} | ${x.contender} | ${x.parallel} | ${x.direction} | ${m.toFixed(2)} | ${x.gbps.min.toFixed(1)}-${x.gbps.max.toFixed(1)} | ${ratio(m, find('direct TCP', x.parallel, x.direction))} | ${x.path === 'hop' || x.path === 'workers' ? ratio(m, haproxyBest(x.parallel, x.direction)) : '-'} | ${x.path === 'tls' ? ratio(m, find(STUNNEL, x.parallel, x.direction)) : '-'} | ${x.cpuSecondsPerGB.toFixed(3)} | ${x.cpuSecondsPerGB > 0 ? (8 / x.cpuSecondsPerGB).toFixed(1) : '-'} | ${(x.peakRssBytes / 2 ** 20).toFixed(0)} |`,
    );
  }
  if (t.length > 0) {
    lines.push('', `vs HAProxy: against the faster of HAProxy with its defaults and with \`option splice-auto\` at the same connections and direction.`);
    if (r.machine.cryptoCeilingGbps) {
      lines.push('', `crypto ceiling of this machine: AES-128-GCM at ${r.machine.cryptoCeilingGbps.toFixed(1)} Gbit/s on one core (\`openssl speed -evp aes-128-gcm\`, 16 KiB blocks); a TLS path encrypts at one gateway and decrypts at the other, so read its Gbit per CPU-s against half of that.`);
    }
    lines.push('', `iperf3 runs repeated because the server was still busy with the previous one: ${r.retriedRuns}`);
  }
  if (r.setup) {
    if (r.verified.length > 0) {
      lines.push('', '| verified with s2app (every byte checked) | conns | Gbit/s |', '|---|---|---|');
      for (const v of r.verified) lines.push(`| ${v.label} | ${v.parallel} | ${v.gbps.toFixed(2)} |`);
    }
    const s = r.setup;
    lines.push(
      '',
      '| control plane | value |',
      '|---|---|',
      ...s.byWorkers.flatMap((b) => [
        `| setup, library, new control connections each time (request -> Hello -> map -> consumer's first byte), ${workersLabel(b.workers)}${b.compared ? ` (${b.compared})` : ''}, p50 / p99 over ${b.library.n} | ${b.library.p50ms.toFixed(1)} ms / ${b.library.p99ms.toFixed(1)} ms |`,
        `| setup, library, control connections kept open (ConnectionPool), ${workersLabel(b.workers)}${b.compared ? ` (${b.compared})` : ''}, p50 / p99 over ${b.libraryWarm.n} | ${b.libraryWarm.p50ms.toFixed(1)} ms / ${b.libraryWarm.p99ms.toFixed(1)} ms |`,
      ]),
      `| setup, CLI processes (s2uc request + s2app hello, Node start-up included), --workers 2, p50 / p99 over ${s.cli.n} | ${s.cli.p50ms.toFixed(0)} ms / ${s.cli.p99ms.toFixed(0)} ms |`,
      ...s.startup.map((r) => `| start-up, ${r.label}, p50 / p99 over ${r.n} | ${r.p50ms.toFixed(0)} ms / ${r.p99ms.toFixed(0)} ms |`),
      `| setups per second, 50 concurrent clients, --workers 2 | ${s.concurrent50.perSecond.toFixed(1)} (${s.concurrent50.setups} setups, ${s.concurrent50.failures} failures) |`,
      ...(r.idleMemory
        ? [
            `| s2cs + 1 worker RSS, no streams | ${(r.idleMemory.baselineBytes / 2 ** 20).toFixed(1)} MiB |`,
            ...r.idleMemory.points.map((p) => `| s2cs + 1 worker RSS, ${p.streams} idle stream(s) | ${(p.rssBytes / 2 ** 20).toFixed(1)} MiB |`),
            `| RSS per idle stream | ${(r.idleMemory.perStreamBytes / 1024).toFixed(1)} KiB |`,
          ]
        : []),
    );
    if (r.caps) lines.push('', capTable(r.caps));
    if (r.loadAverage) lines.push('', `load average at the end: ${r.loadAverage.map((l) => l.toFixed(2)).join(' ')}`);
  } else lines.push('', '(a --rows run: throughput rows only)');
  lines.push('', machineLine(r.machine), '');
  return `${lines.join('\n')}\n`;
}

let stopping = false;
const cleanup = async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
};
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    say(`\nbench: ${sig}: stopping everything it started`);
    void cleanup().finally(() => process.exit(130));
  });
}

main().then(
  async () => {
    await cleanup();
    process.exit(0);
  },
  async (err: unknown) => {
    say(`\nbench failed: ${(err as Error).message}`);
    await cleanup();
    process.exit(1);
  },
);
