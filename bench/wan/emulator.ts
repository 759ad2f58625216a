// Builds the packet-level WAN emulator (bench/wan/emulator.c) with the machine's C compiler,
// at bench time, like native/build.mjs does for the addon: no download, nothing but a compiler.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The C source, found from dist/bench/wan/ as from bench/wan/. */
export const EMULATOR_SOURCE = fileURLToPath(new URL('../../../bench/wan/emulator.c', import.meta.url));

/** Compiles the emulator into `dir`; throws, naming what is missing, when no compiler works. */
export function buildEmulator(dir: string): string {
  const out = join(dir, 'wan-emulator');
  const compilers = [process.env.CC, 'cc', 'gcc', 'clang'].filter((c): c is string => typeof c === 'string' && c.length > 0);
  const failures: string[] = [];
  for (const cc of compilers) {
    const r = spawnSync(cc, ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', '-o', out, EMULATOR_SOURCE], { encoding: 'utf8' });
    if (r.error) {
      failures.push(`${cc}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`);
      continue;
    }
    if (r.status === 0) return out;
    throw new Error(`${cc} could not build the WAN emulator from ${EMULATOR_SOURCE} (exit ${r.status}): ${r.stderr.trim().split('\n').slice(0, 5).join(' | ')}`);
  }
  throw new Error(`the WAN section builds its packet emulator from ${EMULATOR_SOURCE} and needs a C compiler (${failures.join('; ')}): apt-get install -y gcc, or set CC`);
}

/** One direction's counters, as the emulator prints them. */
export interface DirectionCounters {
  passed: number;
  passedBytes: number;
  /** Dropped by the loss setting. */
  lost: number;
  /** Dropped because the direction's queue (the router's buffer) was full. */
  queueFull: number;
  /** Larger than a slot: offloads were not off. */
  oversize: number;
  sendErrors: number;
  /** Dropped by the kernel before the emulator read them (it was too slow). */
  socketDrops: number;
  /** Waiting for their time when the counters were printed. */
  queued: number;
  /** Times the next interface refused a frame (its receiving gateway was behind); the frame waited. */
  pushedBack: number;
  /** Sent more than 1 ms after their time: the emulator did not keep up (CPU). */
  late: number;
  /** The latest a frame was sent after its time, in microseconds (since start). */
  lateMaxUs: number;
}

/** aToB: from the emulator's first interface (gateway A's side) to the second. */
export interface EmulatorCounters {
  aToB: DirectionCounters;
  bToA: DirectionCounters;
}

/** The last counters line in the emulator's output. */
export function parseCounters(stdout: string): EmulatorCounters {
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
  if (!line) throw new Error(`the WAN emulator printed no counters: ${stdout.slice(-300)}`);
  return JSON.parse(line) as EmulatorCounters;
}

/** b - a, per direction and counter (what one run added). */
export function countersSince(a: EmulatorCounters, b: EmulatorCounters): EmulatorCounters {
  const diff = (x: DirectionCounters, y: DirectionCounters): DirectionCounters => {
    const out = { ...y };
    for (const k of Object.keys(y) as (keyof DirectionCounters)[]) if (k !== 'queued' && k !== 'lateMaxUs') out[k] = y[k] - x[k];
    return out;
  };
  return { aToB: diff(a.aToB, b.aToB), bToA: diff(a.bToA, b.bToA) };
}
