// Stream rates as users write them (s2uc --rate, s2cs --capacity) and as reports show them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_RATE_KBPS, formatBitRate, parseRate } from '../src/units.js';

test('parseRate: a plain number is kB/s (the reference --rate); units are decimal, bits or bytes', () => {
  assert.equal(parseRate('10000'), 10_000);
  assert.equal(parseRate('0'), 0);
  assert.equal(parseRate('200Mbit/s'), 25_000);
  assert.equal(parseRate('200 mbit/s'), 25_000);
  assert.equal(parseRate('1Gbit/s'), 125_000);
  assert.equal(parseRate('1.5Gbit/s'), 187_500);
  assert.equal(parseRate('10Gbps'), 1_250_000);
  assert.equal(parseRate('25MB/s'), 25_000);
  assert.equal(parseRate('500kB/s'), 500);
  assert.equal(parseRate('8kbit/s'), 1);
  assert.equal(parseRate('1bit/s'), 1, 'a rate that is not 0 never rounds down to none');
  assert.equal(parseRate(String(MAX_RATE_KBPS)), MAX_RATE_KBPS);
});

test('parseRate: anything else is refused with the forms that work', () => {
  for (const bad of ['', 'fast', '-1', '1e3', '20TB/s', `${MAX_RATE_KBPS + 1}`, '5 Mbit', 'Mbit/s', '1,000', '１００']) {
    assert.throws(() => parseRate(bad), /invalid rate .*200Mbit\/s, 1Gbit\/s/, bad);
  }
});

test('formatBitRate: bytes per second in decimal bits, four digits at most', () => {
  assert.equal(formatBitRate(25_000_000), '200 Mbit/s');
  assert.equal(formatBitRate(125_000_000), '1 Gbit/s');
  assert.equal(formatBitRate(1_176_250_000), '9.41 Gbit/s');
  assert.equal(formatBitRate(10_000), '80 kbit/s');
  assert.equal(formatBitRate(0), '0 kbit/s');
  assert.equal(formatBitRate(2.5e12), '20 Tbit/s');
});

test('parseDuration: seconds, or numbers with units s, m, h, d, alone or together', async () => {
  const { parseDuration } = await import('../src/units.js');
  for (const [text, seconds] of [['90', 90], ['90s', 90], ['30m', 1800], ['30min', 1800], ['2h', 7200], ['1h30m', 5400], ['1.5h', 5400], ['7d', 604_800], [' 45 s ', 45], ['0', 0]] as const) {
    assert.equal(parseDuration(text), seconds, text);
  }
  for (const bad of ['', 'soon', '-5m', '5 parsecs', 'h', '1h-30m']) assert.throws(() => parseDuration(bad), /invalid duration/, bad);
});
