// A stand-in for bin/s2ds.js in the supervisor's process-management tests: listens on
// its --listen unix:PATH and stops on SIGTERM. (The real agent is tested with real s2cs processes.)
import { createServer } from 'node:net';

const at = process.argv.indexOf('--listen');
const path = (process.argv[at + 1] ?? '').replace(/^unix:/, '');
const server = createServer((s) => s.on('error', () => {}));
server.listen(path);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
