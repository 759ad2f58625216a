// A producer and a consumer of a known payload (a marker repeated), as inline Node
// scripts for the network-namespace lab (NetnsLab.node): the consumer checks every
// byte, and the marker can be looked for in packet captures.
import type { NsProc } from './netns.js';

/** Serves `marker` repeated to `bytes` on every accepted connection, then ends; one stdout line per accept. */
export const MARKER_PRODUCER = `
const [host, port, marker, bytes] = process.argv.slice(1);
const payload = Buffer.alloc(Number(bytes), marker);
let accepted = 0;
require('node:net')
  .createServer((s) => {
    accepted++;
    console.log('accepted ' + accepted + ' from ' + s.remoteAddress + ':' + s.remotePort);
    s.on('error', (e) => console.error('connection from ' + s.remoteAddress + ': ' + e.message));
    s.end(payload);
  })
  .listen(Number(port), host, () => console.log('producer listening on ' + host + ':' + port));
process.on('SIGTERM', () => process.exit(0));
`;

/** Reads each address to EOF and compares with the producer's payload; prints one JSON array. */
export const MARKER_CONSUMER = `
const [marker, bytes, list] = process.argv.slice(1);
const expected = Buffer.alloc(Number(bytes), marker);
const fetch = (address) => new Promise((resolve) => {
  const i = address.lastIndexOf(':');
  const s = require('node:net').connect({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
  const chunks = [];
  s.on('data', (d) => chunks.push(d));
  s.on('error', (e) => resolve({ address, ok: false, error: e.code || e.message, bytes: Buffer.concat(chunks).length }));
  s.on('end', () => {
    const got = Buffer.concat(chunks);
    let firstMismatch = -1;
    for (let k = 0; k < Math.min(got.length, expected.length); k++) if (got[k] !== expected[k]) { firstMismatch = k; break; }
    resolve({ address, ok: got.equals(expected), bytes: got.length, firstMismatch });
  });
});
const timer = setTimeout(() => { console.log(JSON.stringify([{ ok: false, error: 'no EOF within 120 s' }])); process.exit(1); }, 120000);
Promise.all(list.split(',').map(fetch)).then((r) => {
  clearTimeout(timer);
  console.log(JSON.stringify(r));
  process.exit(r.every((c) => c.ok) ? 0 : 1);
});
`;

/** How many connections the producer accepted so far (one stdout line each). */
export const acceptedCount = (p: NsProc): number => (p.stdout().match(/^accepted /gm) ?? []).length;
