#!/usr/bin/env node
// A larger young generation: the data plane's short-lived Buffers (one per TLS
// record) otherwise trigger a scavenge every few milliseconds (docs/benchmarks.md).
import { setFlagsFromString } from 'node:v8';
setFlagsFromString('--max-semi-space-size=64');
await import('../dist/src/s2ds/agent/cli.js');
