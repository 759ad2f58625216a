// `node dist/bench/profile-tls.js [--conns N] [--seconds S] [--workers W] [--out DIR]`:
// where the two-gateway TLS path spends its time. Sets up the SciStream path (two
// s2cs, each with W local workers) and the stunnel pair in front of one iperf3
// server, runs iperf3 -R through each, and writes per process: CPU seconds per GB
// split into user and system time; with --out, a V8 CPU profile of every s2cs and
// worker (written when they exit: their environment, which s2cs passes on to its
// workers, loads bench/cpu-prof-preload.ts) and, when
// `perf` is there, a perf profile of each side's busiest process for `perf report`.
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { spawn, spawnSync } from 'node:child_process';
import { freePort } from '../src/demo/procs.js';
import { scistream, stunnel, type Contender } from './contenders.js';
import { runScript, start } from './tools.js';

process.noDeprecation = true;
const { values } = parseArgs({
  options: {
    conns: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '5' },
    workers: { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});
const conns = Number(values.conns);
const seconds = Number(values.seconds);
const workers = Number(values.workers);
const dir = mkdtempSync(join(tmpdir(), 'scistream-prof-'));

function times(pid: number): { user: number; system: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(f[11]) / 100, system: Number(f[12]) / 100 };
  } catch {
    return { user: 0, system: 0 };
  }
}

function comm(pid: number): string {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (cmd.some((a) => a.endsWith('s2ds.js'))) return `s2ds ${cmd[cmd.indexOf('--name') + 1] ?? ''}`;
    if (cmd.some((a) => a.endsWith('s2cs.js'))) return 's2cs';
    return cmd[0]!.split('/').pop()!;
  } catch {
    return '?';
  }
}

async function run(c: Contender, label: string, side: (pid: number) => string, perfDir?: string): Promise<void> {
  const pids = c.pids();
  const t0 = new Map(pids.map((p) => [p, times(p)]));
  // `perf record -p` follows only the threads there when it starts (stunnel starts one
  // per connection): it starts a second into the run, and stops a second before its end.
  const perfData = (p: number) => join(perfDir!, `${label}-${side(p)}-${p}.perf.data`);
  // Each recorder's end, awaited from its start: it often ends before iperf3 does
  // (always with 64 connections, whose set-up delays iperf3's timed part), and a
  // 'close' listener added then would wait for ever.
  const perfs: Promise<unknown>[] = [];
  const perfStart = perfDir
    ? setTimeout(() => {
        for (const p of pids.filter((x) => comm(x) !== 's2cs')) {
          const recorder = spawn('perf', ['record', '-q', '-F', '999', '-o', perfData(p), '-p', String(p), '--', 'sleep', String(Math.max(1, seconds - 2))], { stdio: 'ignore' });
          perfs.push(new Promise((r) => recorder.on('close', r)));
        }
      }, 1000)
    : undefined;
  const child = spawn('iperf3', ['-c', '127.0.0.1', '-p', String(c.ports[0]), '-P', String(conns), '-t', String(seconds), '-R', '-J'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((r) => child.on('close', r));
  clearTimeout(perfStart);
  await Promise.all(perfs);
  const report = JSON.parse(out) as { end: { sum_received: { bytes: number; bits_per_second: number } } };
  const gb = report.end.sum_received.bytes / 1e9;
  console.log(`\n${label}: ${conns} connections, ${(report.end.sum_received.bits_per_second / 1e9).toFixed(2)} Gbit/s, ${gb.toFixed(2)} GB`);
  console.log('| process | side | user s/GB | system s/GB | total s/GB |');
  console.log('|---|---|---|---|---|');
  for (const p of pids) {
    const a = t0.get(p)!;
    const b = times(p);
    const u = (b.user - a.user) / gb;
    const s = (b.system - a.system) / gb;
    console.log(`| ${comm(p)} (${p}) | ${side(p)} | ${u.toFixed(3)} | ${s.toFixed(3)} | ${(u + s).toFixed(3)} |`);
  }
  if (perfDir) {
    console.log('\nperf samples per process, by kind (share of that process\'s samples):');
    console.log('| process | side | samples | kernel | OpenSSL | libc (copies, malloc) | JavaScript | V8 and Node (C++) | other |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const p of pids.filter((x) => comm(x) !== 's2cs')) {
      const k = perfKinds(perfData(p));
      const n = Object.values(k).reduce((a, b) => a + b, 0);
      const pc = (x: number) => `${((100 * x) / Math.max(n, 1)).toFixed(0)} %`;
      console.log(`| ${comm(p)} | ${side(p)} | ${n} | ${pc(k.kernel)} | ${pc(k.openssl)} | ${pc(k.libc)} | ${pc(k.js)} | ${pc(k.runtime)} | ${pc(k.other)} |`);
    }
  }
}

/** Samples of one process in a perf recording, by where they fell. */
function perfKinds(data: string): Record<'kernel' | 'openssl' | 'libc' | 'js' | 'runtime' | 'other', number> {
  const r = spawnSync('perf', ['report', '-i', data, '--no-children', '--sort', 'dso,sym', '--stdio', '-F', 'sample,dso,sym', '-g', 'none'], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  const k = { kernel: 0, openssl: 0, libc: 0, js: 0, runtime: 0, other: 0 };
  for (const line of r.stdout.split('\n')) {
    const m = /^\s*(\d+)\s+(.+?)\s+\[(.)\]\s+(.*)$/.exec(line);
    if (!m) continue;
    const [, count, dso, level, sym] = m;
    const n = Number(count);
    if (level === 'k') k.kernel += n;
    else if (/libssl|libcrypto/.test(dso!) || /^(_?aesni|_?aes_|gcm_|ossl_|EVP_|SSL_|ssl3?_|tls1?3?_|CRYPTO_|OPENSSL_|BIO_|sha\d|ERR_|RAND_|bn_|x25519)/i.test(sym!)) k.openssl += n;
    else if (/libc\.so|libc-/.test(dso!)) k.libc += n;
    else if (/^(JS:|LazyCompile|Builtin:|Function:|Script:)/.test(sym!) || /perf-\d+\.map|\[JIT\]/.test(dso!)) k.js += n;
    else if (/node|libnode|libuv|libv8/.test(dso!)) k.runtime += n;
    else k.other += n;
  }
  return k;
}

async function main(): Promise<void> {
  if (values.out) {
    mkdirSync(values.out, { recursive: true });
    // Node refuses --cpu-prof in NODE_OPTIONS: a preload starts the profiler instead.
    // --perf-basic-prof names the JavaScript functions in `perf report`.
    process.env.SCISTREAM_BENCH_PROF_DIR = values.out;
    process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --perf-basic-prof --import=${new URL('./cpu-prof-preload.js', import.meta.url).href}`.trim();
  }
  const port = await freePort();
  start('iperf3 server', 'iperf3', ['-s', '-p', String(port)]);
  await new Promise((r) => setTimeout(r, 300));
  const target = { host: '127.0.0.1', port };
  const sci = await scistream(target, dir, 1, workers);
  delete process.env.NODE_OPTIONS;
  delete process.env.SCISTREAM_BENCH_PROF_DIR;
  const st = await stunnel(target, dir);
  const prodPids = new Set(sci.gateways.prod.pids());
  await run(sci, 'scistream', (p) => (prodPids.has(p) ? 'producer' : 'consumer'), values.out);
  await new Promise((r) => setTimeout(r, 500));
  const [sp] = st.pids();
  await run(st, 'stunnel', (p) => (p === sp ? 'producer' : 'consumer'), values.out);
}

runScript('profile', dir, main);
