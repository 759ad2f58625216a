// SendQueue (src/s2ds/udp/send-queue.ts) where the kernel really refuses datagrams for
// a while: in a network namespace of its own whose loopback is shaped to 1 Mbit/s, small
// send buffers fill and libuv queues what the kernel would not take. The bytes it counts
// in flight must hold the flow's and the server's bounds, come back to zero once the
// queue drained, and come back when a socket closes with datagrams still queued.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { requireNetns } from '../support/netns.js';

const CHILD = fileURLToPath(new URL('../support/send-queue-child.js', import.meta.url));
const DATAGRAM = 1400;

interface Seen {
  limits: { server: number; flowA: number };
  accepted: number;
  refusedA: number;
  refusedB: number;
  maxFlowA: number;
  maxServer: number;
  queuedSeen: number;
  inFlightAfterBurst: number;
  drained: { received: number; server: number; flowA: number; flowB: number };
  acceptedC: number;
  queuedBeforeClose: { server: number; flow: number; count: number };
  afterClose: { server: number; flow: number };
  drops: string[];
}

/** The child in a network namespace that lives as long as it does (unshare: nothing to delete after). */
function runShaped(): Promise<Seen> {
  const script = `ip link set lo up && tc qdisc add dev lo root tbf rate 1mbit burst 1600 limit 1000000 && exec "${process.execPath}" "${CHILD}"`;
  return new Promise((resolve, reject) => {
    execFile('unshare', ['--net', 'sh', '-c', script], { timeout: 60_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`the shaped-loopback child failed: ${stderr.trim() || err.message}`));
      resolve(JSON.parse(stdout.trim().split('\n').at(-1)!) as Seen);
    });
  });
}

test('bytes in flight without a callback per datagram: bounds hold while the kernel queues, and come back when the queue drains or the socket closes', async () => {
  requireNetns();
  const s = await runShaped();
  // The kernel did refuse datagrams for a while (else this tests nothing).
  assert.ok(s.queuedSeen > 0, `libuv queued datagrams: ${JSON.stringify(s)}`);
  // Flow a's bound and the server's held throughout; over them, sends were refused.
  assert.ok(s.maxFlowA <= s.limits.flowA, `flow a's bytes in flight ${s.maxFlowA} <= ${s.limits.flowA}`);
  assert.ok(s.maxServer <= s.limits.server, `server's bytes in flight ${s.maxServer} <= ${s.limits.server}`);
  assert.ok(s.refusedA > 0 && s.refusedB > 0, `both flows were refused once the bounds were reached: ${JSON.stringify(s)}`);
  assert.ok(s.inFlightAfterBurst > 0, 'the queued datagrams were counted');
  // Everything accepted was sent, and every byte counted came back.
  assert.equal(s.drained.received, s.accepted, 'every accepted datagram arrived');
  assert.deepEqual({ server: s.drained.server, flowA: s.drained.flowA, flowB: s.drained.flowB }, { server: 0, flowA: 0, flowB: 0 });
  // An unconnected socket (a listener's replies) queues the same way; closed with its
  // queue not empty, it gives the bytes back.
  assert.ok(s.queuedBeforeClose.count > 0 && s.queuedBeforeClose.flow > 0, `replies queued: ${JSON.stringify(s.queuedBeforeClose)}`);
  assert.equal(s.queuedBeforeClose.server, s.queuedBeforeClose.flow);
  assert.ok(s.queuedBeforeClose.flow <= s.acceptedC * DATAGRAM);
  assert.deepEqual(s.afterClose, { server: 0, flow: 0 });
  assert.deepEqual(s.drops, [], 'nothing refused as too large');
});
