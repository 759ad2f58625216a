// iperf3 -u through a UDP stream: a UDP stream's listener ports carry TCP as well (as
// the reference's Nginx listens on both), so iperf3's TCP control connection and its UDP
// datagrams both go through the one stream, to the same target port.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRange, spawnCli } from '../../src/demo/procs.js';
import { canConnect } from '../support/sockets.js';

const HOME = mkdtempSync(join(tmpdir(), 'scistream-udp-iperf-home-'));
process.env.SCISTREAM_HOME = HOME;
after(() => rmSync(HOME, { recursive: true, force: true }));

test('iperf3 -u through one gateway (s2uc inbound-request --protocol udp)', async () => {
  const port = await freePort();
  const range = await freePortRange(4);
  const gw = spawnCli('s2cs', ['start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--allow-plaintext-data', '--workers', '0']);
  const serverPort = await freePort();
  const server = spawn('iperf3', ['-s', '-p', String(serverPort)], { detached: true, stdio: 'ignore' });
  try {
    await gw.waitFor(/s2cs ready/);
    for (let i = 0; i < 50 && !(await canConnect(`127.0.0.1:${serverPort}`)); i++) await new Promise((r) => setTimeout(r, 100));
    const req = spawnCli('s2uc', ['--insecure', 'inbound-request', '--s2cs', `127.0.0.1:${port}`, '--protocol', 'udp', '--targets', `127.0.0.1:${serverPort}`, '--num-conn', '1', '--json']);
    assert.equal(await req.exited, 0, req.stderr());
    const listener = (JSON.parse(req.stdout()) as { listeners: string[] }).listeners[0]!;
    const [host, lport] = listener.split(':');
    const client = spawn('iperf3', ['-c', host!, '-p', lport!, '-u', '-b', '20M', '-t', '2', '-l', '1400', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    client.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const code = await new Promise<number>((resolve) => client.on('exit', (c) => resolve(c ?? 1)));
    assert.equal(code, 0, out);
    const result = JSON.parse(out) as { error?: string };
    assert.equal(result.error, undefined, out.slice(0, 2000));
    const sum = (JSON.parse(out) as { end: { sum: { packets: number; lost_packets: number; lost_percent: number; bits_per_second: number } } }).end.sum;
    console.log(`# iperf3 -u -b 20M -t 2 through a UDP stream: ${sum.packets} packets, ${sum.lost_packets} lost (${sum.lost_percent.toFixed(2)} %), ${(sum.bits_per_second / 1e6).toFixed(1)} Mbit/s`);
    assert.ok(sum.packets > 0);
    // Loopback on a shared machine: loss is reported, bounded loosely.
    assert.ok(sum.lost_percent < 50, `${sum.lost_percent} % lost`);
  } finally {
    try {
      process.kill(-server.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    await gw.stop();
  }
});
