// The UDP benchmark's pure parts: reading iperf3 -u -J reports and the rate search.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseUdpReport, udpArgs } from '../../bench/udp-iperf.js';
import { searchMaxRate, SEARCH_DEFAULTS, type SearchProbe } from '../../bench/udp-search.js';

const report = (over: object = {}) =>
  JSON.stringify({
    start: { test_start: { protocol: 'UDP' } },
    end: {
      streams: [{ udp: { out_of_order: 3 } }],
      sum_sent: { bytes: 1400e4, seconds: 1, bits_per_second: 1.12e8, lost_packets: 0, packets: 1e4 },
      sum_received: { bytes: 1400 * 9990, seconds: 2, bits_per_second: 0, lost_packets: 10, packets: 1e4 },
    },
    ...over,
  });

test('parseUdpReport reads the receiver side of an iperf3 -u -J report', () => {
  const r = parseUdpReport(report(), 1e8);
  assert.equal(r.offeredBps, 1e8);
  assert.equal(r.sentBps, 1.12e8);
  assert.equal(r.receivedBytes, 1400 * 9990);
  assert.equal(r.receivedBps, (1400 * 9990 * 8) / 2);
  assert.equal(r.lossPercent, 0.1);
  assert.equal(r.outOfOrder, 3);
});

test('parseUdpReport: nothing expected counts as all lost', () => {
  const text = report({ end: { sum_sent: { bits_per_second: 0 }, sum_received: { bytes: 0, seconds: 1, lost_packets: 0, packets: 0 } } });
  assert.equal(parseUdpReport(text, 1e9).lossPercent, 100);
});

test('parseUdpReport names what is wrong: iperf3 error, no JSON, a TCP report, missing sums', () => {
  assert.throws(() => parseUdpReport(JSON.stringify({ error: 'unable to connect to server' }), 1), /iperf3: unable to connect/);
  assert.throws(() => parseUdpReport('', 1), /no JSON report/);
  assert.throws(() => parseUdpReport(report({ start: { test_start: { protocol: 'TCP' } } }), 1), /not of a UDP test/);
  assert.throws(() => parseUdpReport(report({ end: {} }), 1), /lacks end.sum_sent/);
});

test('udpArgs: a UDP client at the offered rate, datagram length and direction', () => {
  assert.deepEqual(udpArgs({ port: 5201, offeredBps: 1e9, seconds: 3, length: 1400, reverse: true }), ['-c', '127.0.0.1', '-p', '5201', '-u', '-b', '1000000000', '-l', '1400', '-t', '3', '-J', '-R']);
});

/** A path that loses nothing up to `limit` bit/s and a lot above, with a sender that reaches `sendCap`. */
const path = (limit: number, sendCap = Infinity) => async (offeredBps: number): Promise<SearchProbe> => {
  const sentBps = Math.min(offeredBps, sendCap);
  return { offeredBps, sentBps, receivedBps: Math.min(sentBps, limit), lossPercent: sentBps <= limit ? 0 : 100 * (1 - limit / sentBps) };
};

test('searchMaxRate bisects up from 1 Gbit/s to within the precision, in bounded probes', async () => {
  const r = await searchMaxRate(path(3e9), { maxProbes: 20 });
  assert.ok(r.best && r.best.offeredBps <= 3e9 && r.best.offeredBps * SEARCH_DEFAULTS.precision >= 3e9 / SEARCH_DEFAULTS.precision, `best ${r.best?.offeredBps}`);
  assert.ok(r.firstFailingBps! > 3e9);
  assert.equal(r.senderLimited, false);
  const bounded = await searchMaxRate(path(3e9), { maxProbes: 3 });
  assert.equal(bounded.probes.length, 3);
});

test('searchMaxRate goes down when 1 Gbit/s loses, and finds nothing below the minimum', async () => {
  const r = await searchMaxRate(path(0.2e9), { maxProbes: 20 });
  assert.ok(r.best && r.best.offeredBps <= 0.2e9 && r.best.offeredBps > 0.15e9, `best ${r.best?.offeredBps}`);
  const none = await searchMaxRate(path(1e6), { maxProbes: 20 });
  assert.equal(none.best, undefined);
  assert.equal(none.probes.at(-1)!.offeredBps, SEARCH_DEFAULTS.minBps);
});

test('searchMaxRate stops when the sender, not the path, is the limit', async () => {
  const r = await searchMaxRate(path(1e12, 2.5e9), { maxProbes: 20 });
  assert.equal(r.senderLimited, true);
  assert.equal(r.best!.offeredBps, 4e9);
  assert.equal(r.probes.length, 3);
});
