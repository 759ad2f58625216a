#!/usr/bin/env node
// A larger young generation: the data plane's short-lived Buffers (one per TLS
// record) otherwise trigger a scavenge every few milliseconds (docs/benchmarks.md).
import { setFlagsFromString } from 'node:v8';
import { writeFileSync } from 'node:fs';
// The process is node: name it s2cs (/proc/PID/comm) so that `pkill -USR2 -x s2cs`,
// `pgrep -x s2cs` and `ps -C s2cs` find it. Not process.title, which would also
// overwrite the command line that ps shows. Not Linux: nothing to do.
try { writeFileSync('/proc/self/comm', 's2cs'); } catch {}
setFlagsFromString('--max-semi-space-size=64');
await import('../dist/src/s2cs/cli.js');
