// The WAN leg's framing: payload passes as views of what was read, headers may be
// split anywhere, and only a well-formed END ends a direction.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { END_FRAME, FrameReader, HEARTBEAT_FRAME, MAX_FRAME_PAYLOAD, dataHeader, writeDataHeader } from '../../src/transport/index.js';
import { DATAGRAM_HEADER, DatagramFrameReader, MAX_DATAGRAM, writeDatagramHeader, writeFlowEnd } from '../../src/transport/frames.js';

function reader(): { r: FrameReader; out: Buffer[]; ends: () => number } {
  let ends = 0;
  const r = new FrameReader(() => ends++);
  const out: Buffer[] = [];
  r.onData = (v) => out.push(v);
  return { r, out, ends: () => ends };
}

function frames(...payloads: Buffer[]): Buffer {
  return Buffer.concat([...payloads.flatMap((p) => [dataHeader(p.length), p]), END_FRAME]);
}

test('frames read back whole however the bytes are cut, payload as views of the reads', () => {
  const payloads = [randomBytes(1), randomBytes(5000), randomBytes(70_000), randomBytes(3)];
  const wire = frames(...payloads);
  for (const cut of [1, 2, 3, 4, 5, 7, 4096, 16384, wire.length]) {
    const { r, out, ends } = reader();
    for (let at = 0; at < wire.length; at += cut) {
      // Each read in a buffer of its own, with room behind it, as the ring hands them out.
      const read = Buffer.alloc(cut + 10);
      const n = wire.copy(read, 0, at, Math.min(at + cut, wire.length));
      const before = out.length;
      assert.equal(r.push(read, n), true, `cut ${cut} at ${at}`);
      for (const v of out.slice(before)) assert.equal(v.buffer, read.buffer, 'no copy of the payload');
    }
    assert.deepEqual(Buffer.concat(out), Buffer.concat(payloads), `cut ${cut}`);
    assert.equal(ends(), 1);
    assert.equal(r.ended, true);
  }
});

test('a stream without END is not ended', () => {
  const { r } = reader();
  const wire = frames(randomBytes(100)).subarray(0, -END_FRAME.length);
  assert.equal(r.push(wire, wire.length), true);
  assert.equal(r.ended, false);
});

test('malformed streams are refused: unknown type, empty DATA, END with a length, bytes after END', () => {
  const cases: Record<string, Buffer> = {
    'unknown type': Buffer.from([0x17, 0, 0, 1, 0]),
    'plain TLS-looking bytes': Buffer.from('GET / HTTP/1.1\r\n'),
    'empty DATA': Buffer.from([0x44, 0, 0, 0]),
    'END with a length': Buffer.from([0x45, 0, 0, 1, 0]),
    'bytes after END': Buffer.concat([END_FRAME, Buffer.from([0x44])]),
    'HEARTBEAT with a length': Buffer.from([0x48, 0, 0, 1, 0]),
    'a HEARTBEAT after END': Buffer.concat([END_FRAME, HEARTBEAT_FRAME]),
    'a frame after END': Buffer.concat([END_FRAME, dataHeader(1), Buffer.from([1])]),
  };
  for (const [name, wire] of Object.entries(cases)) {
    const { r } = reader();
    assert.equal(r.push(wire, wire.length), false, name);
  }
});

test('header limits: the largest payload is encoded and read back', () => {
  const h = Buffer.alloc(4);
  writeDataHeader(h, 0, MAX_FRAME_PAYLOAD);
  assert.deepEqual([...h], [0x44, 0xff, 0xff, 0xff]);
  const { r, out } = reader();
  assert.equal(r.push(h, 4), true);
  const big = Buffer.alloc(MAX_FRAME_PAYLOAD, 7);
  assert.equal(r.push(big, big.length), true);
  assert.equal(Buffer.concat(out).length, MAX_FRAME_PAYLOAD);
});

test('HEARTBEAT frames: 4 bytes, length 0, skipped anywhere before END (between frames, alone, split across reads)', () => {
  assert.deepEqual([...HEARTBEAT_FRAME], [0x48, 0, 0, 0]);
  const a = randomBytes(3000);
  const b = randomBytes(20);
  const wire = Buffer.concat([HEARTBEAT_FRAME, HEARTBEAT_FRAME, dataHeader(a.length), a, HEARTBEAT_FRAME, dataHeader(b.length), b, HEARTBEAT_FRAME, END_FRAME]);
  for (const cut of [1, 2, 3, 5, 4096, wire.length]) {
    const { r, out, ends } = reader();
    for (let at = 0; at < wire.length; at += cut) {
      const read = wire.subarray(at, Math.min(at + cut, wire.length));
      assert.equal(r.push(read, read.length), true, `cut ${cut} at ${at}`);
    }
    assert.deepEqual(Buffer.concat(out), Buffer.concat([a, b]), `cut ${cut}`);
    assert.equal(ends(), 1);
  }
  // Heartbeats alone: a live, idle direction, not ended.
  const { r, out } = reader();
  const idle = Buffer.concat([HEARTBEAT_FRAME, HEARTBEAT_FRAME, HEARTBEAT_FRAME]);
  assert.equal(r.push(idle, idle.length), true);
  assert.equal(out.length, 0);
  assert.equal(r.ended, false);
});

test('datagram frames read back whole however the bytes are cut; a datagram whole in one read is a view of it', () => {
  const sent = [randomBytes(1), Buffer.alloc(0), randomBytes(MAX_DATAGRAM), randomBytes(1400), randomBytes(3)];
  const parts: Buffer[] = [];
  sent.forEach((d, i) => {
    const h = Buffer.alloc(DATAGRAM_HEADER);
    writeDatagramHeader(h, 0, i * 3, d.length);
    parts.push(h, d, HEARTBEAT_FRAME);
  });
  const fe = Buffer.alloc(DATAGRAM_HEADER);
  writeFlowEnd(fe, 0, 6);
  const wire = Buffer.concat([...parts, fe, END_FRAME]);
  for (const cut of [1, 2, 3, 5, 7, 8, 9, 1500, 16384, wire.length]) {
    const got: [number, Buffer][] = [];
    const ends: number[] = [];
    let closed = 0;
    const r = new DatagramFrameReader({
      datagram: (flow, d) => (got.push([flow, Buffer.from(d)]), true),
      flowEnd: (flow) => (ends.push(flow), true),
      end: () => closed++,
    });
    for (let at = 0; at < wire.length; at += cut) {
      const read = Buffer.from(wire.subarray(at, Math.min(at + cut, wire.length)));
      assert.equal(r.push(read), true, `cut ${cut} at ${at}`);
    }
    assert.deepEqual(got.map(([f]) => f), [0, 3, 6, 9, 12], `cut ${cut}`);
    assert.deepEqual(got.map(([, d]) => d), sent, `cut ${cut}`);
    assert.deepEqual(ends, [6]);
    assert.equal(closed, 1);
    assert.equal(r.midFrame, false);
  }
  // Whole in one read: every non-empty datagram is a view of the read, not a copy.
  const whole = Buffer.from(wire);
  let views = 0;
  const rv = new DatagramFrameReader({ datagram: (_f, d) => (d.length > 0 && d.buffer === whole.buffer && views++, true), flowEnd: () => true, end: () => {} });
  assert.equal(rv.push(whole), true);
  assert.equal(views, sent.length - 1);
  // Truncated: a header promising more than came.
  const r = new DatagramFrameReader({ datagram: () => true, flowEnd: () => true, end: () => {} });
  assert.equal(r.push(wire.subarray(0, 2 * (DATAGRAM_HEADER + 4) + 1 + DATAGRAM_HEADER + 100)), true);
  assert.equal(r.midFrame, true);
});
