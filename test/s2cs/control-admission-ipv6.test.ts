// IPv6 sources are counted by their /64 (issue 18 point 4): in a network namespace of
// its own, s2cs listens on IPv6; two addresses of one /64 flood its control port and are
// held together to --max-control-conns-per-source, while an address of another /64
// keeps its connections and completes a call (s2uc status), which shows the refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { BIN_DIR, freePortRange, watchChild, type Proc } from '../../src/demo/procs.js';
import { requireNetns } from '../support/netns.js';

const NS = `ssctl${process.pid % 10000}`;
const FLOODER_A = 'fd00:18:0:1::2';
const FLOODER_B = 'fd00:18:0:1::5';
const OTHER = 'fd00:18:0:2::3';
const PER_SOURCE = 20;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
const inNs = (argv: string[]): Proc => watchChild(argv[1] ?? argv[0]!, `ip netns exec ${NS} ${argv.join(' ')}`, spawn('ip', ['netns', 'exec', NS, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] }));

/** Opens `n` TCP connections to [to]:port from each `from` address in turn; after a second prints how many each still holds, then holds them until killed. */
const HOLD = `
const net = require('node:net');
const [to, port, n, ...from] = process.argv.slice(1);
const socks = [];
for (let i = 0; i < Number(n); i++) {
  const localAddress = from[i % from.length];
  const s = net.connect({ host: to, port: Number(port), localAddress });
  s.on('error', () => {});
  socks.push({ s, localAddress });
}
setTimeout(() => {
  const held = {};
  for (const { s, localAddress } of socks) if (!s.destroyed && s.readyState === 'open') held[localAddress] = (held[localAddress] ?? 0) + 1;
  console.log(JSON.stringify(held));
}, 1000);
setInterval(() => {}, 1000);
`;

test('IPv6 sources count by /64: two addresses of one /64 share its limit, another /64 is served', { timeout: 60_000 }, async () => {
  requireNetns();
  try {
    ip('netns', 'del', NS);
  } catch {
    // Not left over from a crashed run.
  }
  ip('netns', 'add', NS);
  const procs: Proc[] = [];
  try {
    ip('-n', NS, 'link', 'set', 'lo', 'up');
    for (const a of [FLOODER_A, FLOODER_B, OTHER]) ip('-n', NS, 'addr', 'add', `${a}/64`, 'dev', 'lo', 'nodad');
    const range = await freePortRange(4);
    const s2cs = inNs([process.execPath, `${BIN_DIR}s2cs.js`, 'start', '--insecure', '--auth', 'none', '--control-host', '::', '--port', '0', '--listener-ip', '::1', '--port-range', `${range.first}-${range.last}`, '--workers', '0', '--max-control-conns-per-source', String(PER_SOURCE)]);
    procs.push(s2cs);
    const port = (await s2cs.waitFor(/s2cs ready: control on [^\s]+:(\d+)/, { timeoutMs: 20_000 }))[1]!;
    const flood = inNs([process.execPath, '-e', HOLD, FLOODER_A, port, '200', FLOODER_A, FLOODER_B]);
    procs.push(flood);
    const floodHeld = JSON.parse((await flood.waitFor(/^\{.*\}$/m, { timeoutMs: 20_000 }))[0]) as Record<string, number>;
    const together = (floodHeld[FLOODER_A] ?? 0) + (floodHeld[FLOODER_B] ?? 0);
    assert.equal(together, PER_SOURCE, `held from one /64: ${JSON.stringify(floodHeld)}`);
    assert.ok((floodHeld[FLOODER_A] ?? 0) > 0 && (floodHeld[FLOODER_B] ?? 0) > 0, `both addresses got some: ${JSON.stringify(floodHeld)}`);
    // Another /64, while the flood holds its share.
    const other = inNs([process.execPath, '-e', HOLD, OTHER, port, '10', OTHER]);
    procs.push(other);
    const otherHeld = JSON.parse((await other.waitFor(/^\{.*\}$/m, { timeoutMs: 20_000 }))[0]) as Record<string, number>;
    assert.equal(otherHeld[OTHER], 10, `held from another /64: ${JSON.stringify(otherHeld)}`);
    const status = inNs([process.execPath, `${BIN_DIR}s2uc.js`, 'status', '--insecure', '--json', '--s2cs', `[${OTHER}]:${port}`]);
    procs.push(status);
    assert.equal(await status.exited, 0, status.describe());
    const st = JSON.parse(status.stdout()) as { gateways: { refusals: Record<string, number> }[] };
    const refused = st.gateways[0]?.refusals['control-conns-per-source'];
    assert.equal(refused, 200 - PER_SOURCE);
    assert.match(s2cs.stderr(), /control connection from fd00:18:0:1::\/64 refused \(reset\)/);
  } finally {
    for (const p of procs) await p.stop('SIGTERM', 5000);
    ip('netns', 'del', NS);
  }
});
