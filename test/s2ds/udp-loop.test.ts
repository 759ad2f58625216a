// A datagram whose sender is the stream's own target (address and port) is dropped
// (loop): forwarded, the echo of it would come back to the listener as another datagram
// from the target, for ever. Real sockets: the target here is an echo, and the datagram
// really leaves from the target's socket (in the wild it is forged).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { LocalDataServer } from '../../src/s2ds/index.js';
import { TargetSenders } from '../../src/s2ds/udp/loop-guard.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange } from '../../src/demo/procs.js';
import { untilTrue } from '../support/until.js';
import { udpSender, numbered } from '../support/datagrams.js';

/** A UDP echo whose socket the test can also send from. */
async function echoSocket(): Promise<{ socket: Socket; port: number; received: () => number }> {
  const socket = createSocket('udp4');
  let received = 0;
  socket.on('message', (d, from) => {
    received++;
    socket.send(d, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  return { socket, port: socket.address().port, received: () => received };
}

test('a datagram from the stream\'s own target is dropped (loop), not bounced between the gateway and the target', async () => {
  const ds = new LocalDataServer({ bindHost: '127.0.0.1', portRange: await freePortRange(4), bufferSize: 1 << 20, waitLimit: 4, waitTimeoutMs: 5000, logger: silentLogger, udpIdleTimeoutMs: 60_000 });
  const echo = await echoSocket();
  const sender = await udpSender(5, '127.0.0.5');
  try {
    const [listener] = await ds.startListeners('udp-loop', 1, { protocol: 'udp' });
    await ds.setTargets('udp-loop', [{ host: '127.0.0.1', port: echo.port }]);
    echo.socket.send(Buffer.from('from the target itself'), listener!.port, '127.0.0.1');
    await untilTrue('the loop drop is counted', () => (ds.stats('udp-loop')!.datagrams!.drops.find((d) => d.cause === 'loop')?.count ?? 0) === 1, 5000);
    // Without the guard the echo would see tens of thousands of datagrams by now.
    await new Promise((r) => setTimeout(r, 500));
    const st = ds.stats('udp-loop')!.datagrams!;
    assert.equal(echo.received(), 0, 'nothing reached the target');
    assert.equal(st.datagramsToTarget, 0);
    assert.equal(st.flows, 0);
    // A real sender still goes through.
    await sender.send(listener!, numbered(5, 0, 100));
    await untilTrue('the real sender gets its echo', () => sender.tally.seen.size === 1, 5000);
    assert.equal(echo.received(), 1);
  } finally {
    await sender.close();
    echo.socket.close();
    await ds.close();
  }
});

test('targets as senders: exact address and port, IPv4 as a dual-stack socket shows it, names once resolved', async () => {
  const g = new TargetSenders([{ host: '10.0.0.7', port: 7000 }, { host: '0:0:0:0:0:0:0:1', port: 9 }, { host: 'localhost', port: 7001 }]);
  assert.ok(g.has('10.0.0.7', 7000));
  assert.ok(g.has('::ffff:10.0.0.7', 7000));
  assert.ok(!g.has('10.0.0.7', 7001), 'another port of the target host is another sender');
  assert.ok(!g.has('10.0.0.8', 7000));
  assert.ok(g.has('::1', 9));
  await untilTrue('localhost resolved', () => g.has('127.0.0.1', 7001) || g.has('::1', 7001), 5000);
  g.close();
});
