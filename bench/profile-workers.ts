// `node dist/bench/profile-workers.js [--conns N] [--seconds S]`: why one plain hop's
// Gbit per CPU-second changes with the number of local workers. The same stream (two
// listeners, one per iperf3 server, half of the connections each) on an s2cs with
// --workers 1 and with --workers 2; per process: CPU seconds, read and write system
// calls (/proc/PID/io, no tracing overhead) per GB, and CPU used while idle (the
// supervisor's and pool's polling, which grows with the workers).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import { freePort } from '../src/demo/procs.js';
import { s2dsHop, type Contender } from './contenders.js';
import { cpuSeconds, runScript, start } from './tools.js';

process.noDeprecation = true;
const { values } = parseArgs({ options: { conns: { type: 'string', default: '4' }, seconds: { type: 'string', default: '5' } } });
const conns = Number(values.conns);
const seconds = Number(values.seconds);
const dir = mkdtempSync(join(tmpdir(), 'scistream-profw-'));

function io(pid: number): { r: number; w: number } {
  try {
    const t = readFileSync(`/proc/${pid}/io`, 'utf8');
    return { r: Number(/syscr: (\d+)/.exec(t)?.[1] ?? 0), w: Number(/syscw: (\d+)/.exec(t)?.[1] ?? 0) };
  } catch {
    return { r: 0, w: 0 };
  }
}

const role = (c: Contender, p: number) => (c.pids()[0] === p ? 's2cs' : `worker ${c.pids().indexOf(p) - 1}`);

async function iperf(port: number, p: number): Promise<number> {
  const child = spawn('iperf3', ['-c', '127.0.0.1', '-p', String(port), '-P', String(p), '-t', String(seconds), '-R', '-J'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((r) => child.on('close', r));
  return (JSON.parse(out) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes;
}

async function one(c: Contender): Promise<void> {
  const pids = c.pids();
  const idle0 = pids.map(cpuSeconds);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const idle = pids.map((p, i) => (cpuSeconds(p) - idle0[i]!) / seconds);
  const c0 = pids.map(cpuSeconds);
  const io0 = pids.map(io);
  const bytes = (await Promise.all(c.ports.map((port) => iperf(port, conns / c.ports.length)))).reduce((a, b) => a + b, 0);
  const gb = bytes / 1e9;
  console.log(`\n${c.name}: ${conns} connections, ${((8 * gb) / seconds).toFixed(2)} Gbit/s (from bytes), ${gb.toFixed(2)} GB`);
  console.log('| process | CPU s/GB | reads per GB | writes per GB | KiB per write | CPU while idle (% of a core) |');
  console.log('|---|---|---|---|---|---|');
  pids.forEach((p, i) => {
    const b = io(p);
    const w = (b.w - io0[i]!.w) / gb;
    console.log(`| ${role(c, p)} | ${((cpuSeconds(p) - c0[i]!) / gb).toFixed(3)} | ${((b.r - io0[i]!.r) / gb).toFixed(0)} | ${w.toFixed(0)} | ${w > 0 ? (1e9 / w / 1024).toFixed(0) : '-'} | ${(100 * idle[i]!).toFixed(1)} |`);
  });
}

async function main(): Promise<void> {
  const ports = [await freePort(), await freePort()];
  for (const p of ports) start('iperf3 server', 'iperf3', ['-s', '-p', String(p)]);
  await new Promise((r) => setTimeout(r, 300));
  const targets = ports.map((port) => ({ host: '127.0.0.1', port }));
  for (const w of [1, 2]) {
    const c = await s2dsHop(targets, dir, w, { name: `S2DS, 2 listeners, --workers ${w}`, group: 'workers' });
    await one(c);
  }
}

runScript('profile', dir, main);
