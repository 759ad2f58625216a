// Loaded into s2cs and its workers by bench/profile-tls.ts through
// NODE_OPTIONS=--import (Node refuses --cpu-prof there): a V8 CPU profile of the
// whole process, written to $SCISTREAM_BENCH_PROF_DIR when it exits.
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.SCISTREAM_BENCH_PROF_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  const name = process.argv.includes('--name') ? process.argv[process.argv.indexOf('--name') + 1] : 's2cs';
  // The main thread's session answers synchronously, so this works in 'exit'.
  process.on('exit', () => {
    session.post('Profiler.stop', (err, r) => {
      if (!err) writeFileSync(join(dir, `${name}-${process.pid}.cpuprofile`), JSON.stringify(r.profile));
    });
  });
}
