#!/usr/bin/env node
// A larger young generation: the data plane's short-lived Buffers (one per TLS
// record) otherwise trigger a scavenge every few milliseconds (docs/benchmarks.md).
import { setFlagsFromString } from 'node:v8';
import { writeFileSync } from 'node:fs';
// Named in /proc/PID/comm (ps -C, pgrep -x, pkill -x): an agent is s2ds, a local worker of
// s2cs (it serves a Unix socket) s2ds-worker, so that signalling one never hits the other.
const worker = process.argv.some((a, i) => a.startsWith('unix:') && process.argv[i - 1] === '--listen');
try { writeFileSync('/proc/self/comm', worker ? 's2ds-worker' : 's2ds'); } catch {}
setFlagsFromString('--max-semi-space-size=64');
await import('../dist/src/s2ds/agent/cli.js');
