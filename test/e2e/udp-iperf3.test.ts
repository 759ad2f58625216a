// iperf3 -u through a UDP stream: a UDP stream's listener ports carry TCP as well (as
// the reference's Nginx listens on both), so iperf3's TCP control connection and its UDP
// datagrams both go through the one stream, to the same target port: through one
// gateway, and through two with the encrypted WAN leg (the control connection in a TLS
// connection of its own, the datagrams in the stream's carrier).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRange, spawnCli } from '../../src/demo/procs.js';
import { canConnect } from '../support/sockets.js';
import { runCli, startCliGateway } from '../support/cli-gateway.js';

const HOME = mkdtempSync(join(tmpdir(), 'scistream-udp-iperf-home-'));
process.env.SCISTREAM_HOME = HOME;
after(() => rmSync(HOME, { recursive: true, force: true }));

/** Runs iperf3 -u against `listener` (host:port) and checks its report; `reverse`: the server sends (-R). */
async function iperfUdp(listener: string, label: string, reverse = false): Promise<void> {
  const [host, lport] = listener.split(':');
  const client = spawn('iperf3', ['-c', host!, '-p', lport!, '-u', '-b', '20M', '-t', '2', '-l', '1400', '--json', ...(reverse ? ['-R'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  client.stdout.on('data', (b: Buffer) => (out += b.toString()));
  const code = await new Promise<number>((resolve) => client.on('exit', (c) => resolve(c ?? 1)));
  assert.equal(code, 0, out);
  const result = JSON.parse(out) as { error?: string; end: { sum: { packets: number; lost_packets: number; lost_percent: number; bits_per_second: number } } };
  assert.equal(result.error, undefined, out.slice(0, 2000));
  const sum = result.end.sum;
  console.log(`# iperf3 -u -b 20M -t 2${reverse ? ' -R' : ''} ${label}: ${sum.packets} packets, ${sum.lost_packets} lost (${sum.lost_percent.toFixed(2)} %), ${(sum.bits_per_second / 1e6).toFixed(1)} Mbit/s`);
  assert.ok(sum.packets > 0);
  // Loopback on a shared machine: loss is reported, bounded loosely.
  assert.ok(sum.lost_percent < 50, `${sum.lost_percent} % lost`);
}

async function iperfServer(): Promise<{ port: number; stop(): void }> {
  const port = await freePort();
  const server = spawn('iperf3', ['-s', '-p', String(port)], { detached: true, stdio: 'ignore' });
  for (let i = 0; i < 50 && !(await canConnect(`127.0.0.1:${port}`)); i++) await new Promise((r) => setTimeout(r, 100));
  return {
    port,
    stop() {
      try {
        process.kill(-server.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}

test('iperf3 -u through one gateway (s2uc inbound-request --protocol udp)', async () => {
  const port = await freePort();
  const range = await freePortRange(4);
  const gw = spawnCli('s2cs', ['start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--allow-plaintext-data', '--workers', '0']);
  const server = await iperfServer();
  try {
    await gw.waitFor(/s2cs ready/);
    const req = spawnCli('s2uc', ['--insecure', 'inbound-request', '--s2cs', `127.0.0.1:${port}`, '--protocol', 'udp', '--targets', `127.0.0.1:${server.port}`, '--num-conn', '1', '--json']);
    assert.equal(await req.exited, 0, req.stderr());
    const listener = (JSON.parse(req.stdout()) as { listeners: string[] }).listeners[0]!;
    await iperfUdp(listener, 'through a UDP stream');
  } finally {
    server.stop();
    await gw.stop();
  }
});

test('iperf3 -u both ways through two gateways with the encrypted WAN leg (s2uc request --protocol udp, s2app hello)', async () => {
  const [prod, cons] = await Promise.all([startCliGateway(['--workers', '1']), startCliGateway(['--workers', '1'])]);
  const server = await iperfServer();
  try {
    const uid = randomUUID();
    const request = spawnCli('s2uc', ['--insecure', 'request', '--prod-s2cs', prod.address, '--cons-s2cs', cons.address, '--num-conn', '1', '--protocol', 'udp', '--json', '--uid', uid]);
    const hello = await runCli('s2app', ['hello', '--insecure', '--s2cs', prod.address, '--uid', uid, '--role', 'PROD', '--listeners', `127.0.0.1:${server.port}`]);
    assert.equal(hello.code, 0, hello.stderr);
    assert.equal(await request.exited, 0, request.stderr());
    const map = JSON.parse(request.stdout().trim().split('\n').at(-1)!) as { consListeners: string[]; wan: string };
    assert.equal(map.wan, 'tls');
    await iperfUdp(map.consListeners[0]!, 'through two gateways, TLS WAN leg');
    await iperfUdp(map.consListeners[0]!, 'through two gateways, TLS WAN leg', true);
    const rel = await runCli('s2uc', ['--insecure', 'release', uid, '--s2cs', prod.address, '--s2cs', cons.address]);
    assert.equal(rel.code, 0, rel.stderr);
  } finally {
    server.stop();
    await Promise.all([prod.proc.stop(), cons.proc.stop()]);
  }
});
