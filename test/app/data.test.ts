import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PATTERN_PERIOD, Pattern, Verifier } from '../../src/app/data.js';
import { formatBytes, formatRate, parseSize } from '../../src/units.js';

/** The first `n` bytes of a stream, built byte by byte (independent of Pattern.view). */
function streamBytes(p: Pattern, offset: number, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = p.buf[(offset + i) % PATTERN_PERIOD]!;
  return out;
}

/** Splits the stream [0, total) into chunks of `size` bytes. */
function chunks(p: Pattern, total: number, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < total; off += size) out.push(streamBytes(p, off, Math.min(size, total - off)));
  return out;
}

test('pattern is deterministic per seed and differs between seeds', () => {
  const a = new Pattern(42);
  const b = new Pattern(42);
  const c = new Pattern(43);
  const zero = new Pattern(0);
  assert.equal(a.buf.length, PATTERN_PERIOD);
  assert.ok(a.buf.equals(b.buf));
  assert.ok(!a.buf.equals(c.buf));
  // Seed 0 must not degenerate (xorshift state 0 would give all zeros).
  assert.ok(zero.buf.some((x) => x !== 0));
  // Differs early, not just somewhere.
  assert.ok(!a.buf.subarray(0, 16).equals(c.buf.subarray(0, 16)));
  // Large seeds use their high bits too.
  assert.ok(!new Pattern(2 ** 32 + 1).buf.equals(new Pattern(1).buf));
  assert.throws(() => new Pattern(1.5), /integer/);
});

test('pattern view wraps at the period', () => {
  const p = new Pattern(7);
  const v = p.view(PATTERN_PERIOD - 10, 100);
  assert.equal(v.length, 10);
  assert.ok(v.equals(p.buf.subarray(PATTERN_PERIOD - 10)));
  assert.ok(p.view(PATTERN_PERIOD * 3 + 5, 4).equals(p.buf.subarray(5, 9)));
  assert.equal(p.byteAt(PATTERN_PERIOD + 1), p.buf[1]);
});

test('verifier accepts an intact stream across the wrap, in odd chunk sizes', () => {
  const p = new Pattern(1);
  const total = PATTERN_PERIOD * 2 + 12345;
  const v = new Verifier(p, total);
  for (const c of chunks(p, total, 99_991)) v.push(c);
  assert.equal(v.received, total);
  assert.equal(v.mismatchAt, undefined);
  assert.equal(v.overrun, false);
  assert.equal(v.problem, undefined);
  assert.ok(v.ok);
});

test('verifier reports the offset of a flipped byte', () => {
  const p = new Pattern(2);
  const total = 3 * 65536;
  const flipAt = 65536 + 1234;
  const v = new Verifier(p, total);
  for (const [i, c] of chunks(p, total, 65536).entries()) {
    if (i === 1) c[1234] ^= 0x01;
    v.push(c);
  }
  assert.equal(v.mismatchAt, flipAt);
  assert.equal(v.received, total);
  assert.ok(!v.ok);
  assert.match(v.problem!, new RegExp(`offset ${flipAt}\\b`));
});

test('verifier catches a flipped byte past the wrap', () => {
  const p = new Pattern(2);
  const total = PATTERN_PERIOD + 1000;
  const data = streamBytes(p, 0, total);
  data[PATTERN_PERIOD + 3] ^= 0x80;
  const v = new Verifier(p, total);
  v.push(data);
  assert.equal(v.mismatchAt, PATTERN_PERIOD + 3);
});

test('verifier catches a dropped chunk', () => {
  const p = new Pattern(3);
  const size = 65536;
  const all = chunks(p, 8 * size, size);
  const v = new Verifier(p, 8 * size);
  for (const [i, c] of all.entries()) if (i !== 3) v.push(c);
  assert.equal(v.mismatchAt, 3 * size);
  assert.ok(!v.ok);
});

test('verifier catches a duplicated chunk', () => {
  const p = new Pattern(4);
  const size = 65536;
  const all = chunks(p, 8 * size, size);
  const v = new Verifier(p, 8 * size);
  for (const [i, c] of all.entries()) {
    v.push(c);
    if (i === 5) v.push(c);
  }
  assert.equal(v.mismatchAt, 6 * size);
  assert.ok(!v.ok);
});

test('verifier catches reordered chunks', () => {
  const p = new Pattern(5);
  const size = 4096;
  const all = chunks(p, 4 * size, size);
  const v = new Verifier(p, 4 * size);
  for (const i of [0, 2, 1, 3]) v.push(all[i]!);
  assert.equal(v.mismatchAt, size);
});

test('verifier reports a short stream', () => {
  const p = new Pattern(6);
  const v = new Verifier(p, 10_000);
  v.push(streamBytes(p, 0, 9_999));
  assert.equal(v.mismatchAt, undefined);
  assert.equal(v.overrun, false);
  assert.ok(!v.ok);
  assert.match(v.problem!, /short stream: received 9999 of expected 10000 bytes/);
});

test('verifier reports an overrun', () => {
  const p = new Pattern(6);
  const v = new Verifier(p, 10_000);
  v.push(streamBytes(p, 0, 6_000));
  v.push(streamBytes(p, 6_000, 4_001));
  assert.equal(v.overrun, true);
  assert.equal(v.mismatchAt, undefined);
  assert.equal(v.received, 10_001);
  assert.ok(!v.ok);
  assert.match(v.problem!, /overrun/);
});

test('parseSize accepts plain numbers and binary units', () => {
  const cases: [string, number][] = [
    ['0', 0],
    ['1024', 1024],
    ['512B', 512],
    ['64KiB', 64 * 1024],
    ['64k', 64 * 1024],
    ['64KB', 64 * 1024],
    ['256MiB', 256 * 2 ** 20],
    ['10M', 10 * 2 ** 20],
    ['1GiB', 2 ** 30],
    ['1G', 2 ** 30],
    ['1gib', 2 ** 30],
    ['1.5GiB', 1.5 * 2 ** 30],
    ['2T', 2 * 2 ** 40],
    [' 8 MiB ', 8 * 2 ** 20],
    ['1.5', 1],
    ['0.3K', 307],
  ];
  for (const [text, want] of cases) assert.equal(parseSize(text), want, text);
});

test('parseSize rejects bad input with a clear message', () => {
  for (const text of ['', '   ', '-1', '-1G', 'abc', '1X', '1 GiBs', '1e9', 'G', '1iB', '0x10', '1..5M', '99999999999T']) {
    assert.throws(
      () => parseSize(text),
      (err: Error) => err.message.includes(`"${text}"`) && /64KiB/.test(err.message),
      `should reject ${JSON.stringify(text)}`,
    );
  }
});

test('formatBytes and formatRate', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(2 ** 30), '1.00 GiB');
  assert.equal(formatBytes(64 * 1024), '64.00 KiB');
  assert.equal(formatBytes(1.5 * 2 ** 20), '1.50 MiB');
  assert.equal(formatRate(9.41e9 / 8, 1), '9.41 Gbit/s');
  assert.equal(formatRate(100e6 / 8, 2), '50.00 Mbit/s');
  assert.equal(formatRate(100, 0), 'n/a');
});
