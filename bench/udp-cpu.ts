// `node dist/bench/udp-cpu.js [--rate BPS] [--seconds S] [--runs N] [--compare S2CS_SCRIPT] [--out DIR] [--perf DIR]`:
// what one plain UDP hop costs per datagram. iperf3 -u at a fixed offered rate (well
// under what the hop takes, so that loss does not change the work) through our hop
// (s2cs --workers 1), the least a relay on Node's dgram does (bench/udp-node-floor.ts)
// and nginx's stream UDP proxy, both directions, the paths taking turns run by run; per
// path: CPU microseconds per datagram received and CPU s per GB (median over the runs),
// split by process (s2cs, worker). With --compare, a second hop on another checkout's
// bin/s2cs.js (a before/after in the same minutes); with --out, a V8 CPU profile of every
// s2cs and worker (bench/cpu-prof-preload.ts); with --perf, a perf recording of our
// worker and nginx's in each run.
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from '../src/demo/procs.js';
import { gateway } from './contenders.js';
import { iperfUdp } from './udp-iperf.js';
import { ensureUdpTools, nginxUdp, nodeFloorUdp, treeCpuSeconds } from './udp-contenders.js';
import { cpuSeconds, runScript, start } from './tools.js';
import { execFileSync, spawn } from 'node:child_process';

process.noDeprecation = true;
const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '150000000' },
    seconds: { type: 'string', default: '5' },
    runs: { type: 'string', default: '3' },
    length: { type: 'string', default: '1400' },
    compare: { type: 'string' },
    out: { type: 'string' },
    perf: { type: 'string' },
  },
});
const rate = Number(values.rate);
const seconds = Number(values.seconds);
const runs = Number(values.runs);
const length = Number(values.length);
const dir = mkdtempSync(join(tmpdir(), 'scistream-udpcpu-'));

interface Path {
  name: string;
  port: number;
  /** The forwarding processes, each counted on its own (never a process and its children twice). */
  pids: () => { role: string; pid: number; tree?: boolean }[];
}

interface Sample {
  received: number;
  datagrams: number;
  loss: number;
  cpu: Record<string, number>;
}

async function hop(name: string, script?: string): Promise<Path> {
  const gw = await gateway(name, dir, ['--insecure', '--allow-plaintext-data'], 1, script);
  const out = execFileSync(process.execPath, [join(script ? join(script, '..') : new URL('../../bin/', import.meta.url).pathname, 's2uc.js'), '--insecure', 'inbound-request', '--s2cs', gw.address, '--targets', `127.0.0.1:${iperfPort}`, '--num-conn', '1', '--protocol', 'udp', '--json']).toString();
  const side = JSON.parse(out.trim().split('\n').at(-1)!) as { listeners: string[] };
  const port = Number(side.listeners[0]!.split(':').pop());
  return { name, port, pids: () => gw.pids().map((pid, i) => ({ role: i === 0 ? 's2cs' : `worker`, pid })) };
}

let iperfPort = 0;

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function sample(p: Path, reverse: boolean): Promise<Sample> {
  await new Promise((r) => setTimeout(r, 500));
  const procs = p.pids();
  const cpu0 = (x: { pid: number; tree?: boolean }) => (x.tree ? treeCpuSeconds(x.pid) : cpuSeconds(x.pid));
  const c0 = procs.map(cpu0);
  // perf (--perf DIR): the worker's samples with call graphs, from a second into the run to a second before its end.
  // The process that forwards: our worker, nginx's worker (its master's child).
  const forwarder = procs.find((x) => x.role === 'worker' || x.role === 'relay')?.pid ?? procs.flatMap((x) => (x.tree ? children(x.pid) : []))[0];
  const perf =
    values.perf && forwarder
      ? spawn('perf', ['record', '-q', '-g', '-F', '1999', '-o', join(values.perf, `${p.name}-${reverse ? 'reply' : 'forward'}-${Date.now()}.perf.data`), '-p', String(forwarder), '--', 'sleep', String(Math.max(1, seconds - 2))], { stdio: 'ignore' })
      : undefined;
  const perfDone = perf && new Promise((r) => perf.on('close', r));
  const run = await iperfUdp({ port: p.port, offeredBps: rate, seconds, length, reverse });
  await perfDone;
  const cpu: Record<string, number> = {};
  procs.forEach((x, i) => (cpu[x.role] = (cpu[x.role] ?? 0) + cpu0(x) - c0[i]!));
  return { received: run.receivedBytes, datagrams: run.receivedBytes / length, loss: run.lossPercent, cpu };
}

async function main(): Promise<void> {
  ensureUdpTools((l) => process.stderr.write(`${l}\n`));
  iperfPort = await freePort();
  start('iperf3 server', 'iperf3', ['-s', '-p', String(iperfPort)]);
  await new Promise((r) => setTimeout(r, 300));
  if (values.out) {
    mkdirSync(values.out, { recursive: true });
    process.env.SCISTREAM_BENCH_PROF_DIR = values.out;
    process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import=${new URL('./cpu-prof-preload.js', import.meta.url).href}`.trim();
  }
  if (values.perf) {
    mkdirSync(values.perf, { recursive: true });
    // Names the JavaScript functions in `perf report`.
    process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --perf-basic-prof`.trim();
  }
  const paths: Path[] = [await hop('ours')];
  if (values.compare) paths.push(await hop('compared', values.compare));
  delete process.env.NODE_OPTIONS;
  delete process.env.SCISTREAM_BENCH_PROF_DIR;
  const floor = await nodeFloorUdp(iperfPort);
  paths.push({ name: 'node-floor', port: floor.port, pids: () => floor.pids().map((pid) => ({ role: 'relay', pid })) });
  const ng = await nginxUdp(iperfPort, dir);
  paths.push({ name: 'nginx', port: ng.port, pids: () => ng.pids().map((pid) => ({ role: 'nginx', pid, tree: true })) });
  const rows = paths.flatMap((p) => [false, true].map((reverse) => ({ p, reverse, samples: [] as Sample[] })));
  for (let i = 0; i < runs; i++) {
    for (const [j] of rows.entries()) {
      const r = rows[(i + j) % rows.length]!;
      const s = await sample(r.p, r.reverse);
      r.samples.push(s);
      const total = Object.values(s.cpu).reduce((a, b) => a + b, 0);
      process.stderr.write(`  ${r.p.name} ${r.reverse ? 'reply' : 'forward'}: ${((8 * s.received) / seconds / 1e9).toFixed(3)} Gbit/s, ${s.loss.toFixed(3)} % lost, ${((1e6 * total) / s.datagrams).toFixed(2)} us/datagram\n`);
    }
  }
  console.log(`\niperf3 -u at ${(rate / 1e9).toFixed(3)} Gbit/s offered, ${length}-byte datagrams, ${seconds} s, ${runs} runs per row (medians; CPU of every process on its own, nginx with its worker)`);
  console.log('| path | direction | Gbit/s received | loss % | CPU us per datagram | CPU s/GB | by process, us per datagram |');
  console.log('|---|---|---|---|---|---|---|');
  for (const r of rows) {
    const total = (s: Sample) => Object.values(s.cpu).reduce((a, b) => a + b, 0);
    const roles = Object.keys(r.samples[0]!.cpu);
    const by = roles.map((role) => `${role} ${median(r.samples.map((s) => (1e6 * (s.cpu[role] ?? 0)) / s.datagrams)).toFixed(2)}`).join(', ');
    console.log(
      `| ${r.p.name} | ${r.reverse ? 'reply' : 'forward'} | ${median(r.samples.map((s) => (8 * s.received) / seconds / 1e9)).toFixed(3)} | ${median(r.samples.map((s) => s.loss)).toFixed(3)} | ${median(r.samples.map((s) => (1e6 * total(s)) / s.datagrams)).toFixed(2)} | ${median(r.samples.map((s) => total(s) / (s.received / 1e9))).toFixed(2)} | ${by} |`,
    );
  }
}

runScript('udp-cpu', dir, main);
