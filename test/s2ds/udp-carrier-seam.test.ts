// The seam between a UDP stream's flows and the WAN carrier (DatagramCarrier): the
// consumer side hands its flows to a carrier, the producer side takes them from one and
// opens a plain socket per flow towards its target. Real UDP sockets at both ends; the
// carrier between is a stand-in until the TLS carrier (transport/datagrams.ts) is merged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UdpStream, DropTotals, InFlight, UDP_DEFAULTS } from '../../src/s2ds/udp/index.js';
import { freePortRange } from '../../src/demo/procs.js';
import { carrierPair } from '../support/carrier-pair.js';
import { numbered, sendSequence, settled, udpEcho, udpSender } from '../support/datagrams.js';

function udpStream(uid: string, count: number): UdpStream {
  return new UdpStream(uid, count, { maxFlowsPerListener: 8, idleTimeoutMs: 60_000, maxQueuedPerFlow: UDP_DEFAULTS.maxQueuedPerFlow, server: new InFlight(UDP_DEFAULTS.maxQueuedPerServer), totals: new DropTotals(), bufferSize: 1024 * 1024 }, undefined, () => undefined);
}

test('flows cross a carrier: consumer listener -> carrier -> producer flow socket -> target, and the replies back to each sender', async () => {
  const range = await freePortRange(4);
  const cons = udpStream('seam-cons', 1);
  const prod = udpStream('seam-prod', 1);
  const echo = await udpEcho();
  const senders = await Promise.all([2, 3].map((i) => udpSender(i, `127.0.0.${i}`)));
  const [consEnd, prodEnd] = carrierPair();
  try {
    await cons.bind('127.0.0.1', [range.first]);
    await prod.bind('127.0.0.1', [range.first + 1]);
    cons.setTargets([{ host: '127.0.0.1', port: range.first + 1 }], consEnd);
    prod.acceptFrom(prodEnd, () => echo.address);
    const listener = { host: '127.0.0.1', port: range.first };
    await Promise.all(senders.map((s, i) => sendSequence(s, i + 2, listener, 500, 800, 8, 5)));
    await settled(() => senders.reduce((n, s) => n + s.tally.seen.size, 0));
    for (const s of senders) {
      assert.equal(s.tally.seen.size, 500);
      assert.equal(s.tally.corrupt + s.tally.duplicates + s.tally.foreign, 0);
    }
    assert.equal(prod.stats().flows, 2);
    assert.equal(cons.stats().flows, 2);
    assert.equal(echo.senders().size, 2, 'a socket per flow towards the target');
    // Plain datagrams on the producer's UDP listener proved nothing: dropped while the carrier feeds it.
    await senders[0]!.send({ host: '127.0.0.1', port: range.first + 1 }, numbered(2, 9999, 10));
    await settled(() => prod.stats().drops.length, 200, 3000);
    assert.deepEqual(prod.stats().drops, [{ cause: 'no-flow', count: 1 }]);
  } finally {
    await Promise.all(senders.map((s) => s.close()));
    await echo.close();
    await Promise.all([cons.close(), prod.close()]);
  }
});
