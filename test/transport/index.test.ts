// ReusedReadBuffer: reads land in one buffer; nothing is lost before the forwarder takes them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { ReusedReadBuffer, RingReadBuffer } from '../../src/transport/index.js';

test('reads before anyone takes them are copied, one at most, and reading pauses until then', async () => {
  const payload = Buffer.alloc(1 << 20);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 13) & 0xff;
  const server = createServer((s) => s.end(payload)).listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const reads = new ReusedReadBuffer(Buffer.alloc(8192));
    const socket = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, onread: reads.onread });
    socket.resume(); // reading starts with nobody to take the data
    await once(socket, 'connect');
    await new Promise((r) => setTimeout(r, 200));
    const chunks: Buffer[] = [];
    let reused = true;
    const early = reads.take((n, buf) => {
      reused &&= buf.buffer === reads.buffer.buffer;
      chunks.push(Buffer.from(buf.subarray(0, n)));
      return true;
    });
    assert.equal(early.length, 1, 'one read was held, then reading paused');
    assert.notEqual(early[0]!.buffer, reads.buffer.buffer, 'the held read is a copy, not the reused buffer');
    socket.resume();
    await once(socket, 'end');
    assert.ok(reused, 'later reads land in the reused buffer');
    assert.ok(Buffer.concat([...early, ...chunks]).equals(payload));
  } finally {
    server.close();
  }
});

test('a ring never hands out memory that is still held, wraps when the start is free, and falls back to one-off buffers when full', () => {
  const ringMemory = Buffer.alloc(64);
  const ring = new RingReadBuffer(ringMemory, 16);
  const next = ring.onread.buffer as () => Buffer;
  const inRing = (b: Buffer) => b.buffer === ringMemory.buffer;
  const held: Buffer[] = [];
  ring.take((n, buf) => {
    const view = buf.subarray(0, n);
    ring.hold(view);
    held.push(view);
    return true;
  });
  const read = (n: number) => {
    const region = next();
    region.fill(held.length + 1, 0, n);
    ring.onread.callback(n, region);
    return region;
  };
  // 16 + 16 + 16 + 10 bytes: the ring fills up from the start.
  const offsets = [read(16), read(16), read(16), read(10)].map((b) => (inRing(b) ? b.byteOffset - ringMemory.byteOffset : -1));
  assert.deepEqual(offsets, [0, 16, 32, 48]);
  // Everything is held and only 6 bytes are left: a one-off buffer, not the ring.
  assert.equal(inRing(read(16)), false);
  // Held bytes are intact whatever was read since.
  held.forEach((v, i) => assert.ok(v.every((x) => x === i + 1), `read ${i + 1} untouched`));
  // All written: the next region starts again at the front.
  for (let i = 0; i < held.length; i++) ring.release();
  held.length = 0;
  const again = read(8);
  assert.ok(inRing(again) && again.byteOffset === ringMemory.byteOffset);
  // Held from offset 0, head at 8: the next region follows it, it does not overwrite it.
  const after = read(8);
  assert.equal(after.byteOffset - ringMemory.byteOffset, 8);
});

/**
 * A 64-byte ring of 16-byte regions whose taker holds every read; read(n) reads n bytes and
 * says where they landed: the offset in the ring, or -1 for a one-off buffer. With `checkRoom`,
 * each read also checks that `room` said beforehand where it would land.
 */
function holdingRing(checkRoom = false): { ring: RingReadBuffer; read: (n: number) => number; next: () => Buffer; at: (region: Buffer) => number } {
  const ringMemory = Buffer.alloc(64);
  const ring = new RingReadBuffer(ringMemory, 16);
  const next = ring.onread.buffer as () => Buffer;
  ring.take((n, buf) => {
    ring.hold(buf.subarray(0, n));
    return true;
  });
  const at = (region: Buffer) => (region.buffer === ringMemory.buffer ? region.byteOffset - ringMemory.byteOffset : -1);
  const read = (n: number) => {
    const inRing = ring.room;
    const region = next();
    if (checkRoom) assert.equal(at(region) >= 0, inRing, 'room agrees with where the read lands');
    ring.onread.callback(n, region);
    return at(region);
  };
  return { ring, read, next, at };
}

test('a ring that has gone round and caught up with its oldest held region is full, not empty', () => {
  const { ring, read } = holdingRing();
  assert.equal(read(16), 0);
  ring.release(); // nothing held
  // Held from 16 on; the ring fills to its end, goes round to 0, and reaches 16 again.
  assert.deepEqual([read(16), read(16), read(16), read(16)], [16, 32, 48, 0]);
  assert.equal(read(16), -1, 'full: a one-off buffer, not the held region at 16');
});

test('a settled ring is free at once: the release()s of the settled writes free nothing held after them', () => {
  const { ring, read } = holdingRing();
  assert.deepEqual([read(16), read(16), read(16), read(16)], [0, 16, 32, 48]);
  assert.equal(ring.room, false);
  // The destination took all four writes; their callbacks are still to come.
  ring.settle();
  assert.equal(ring.room, true);
  assert.equal(read(16), 0, 'the whole ring is free again');
  assert.equal(read(16), 16);
  // The four late release()s of the settled writes: the two new reads stay held.
  for (let i = 0; i < 4; i++) ring.release();
  assert.deepEqual([read(16), read(16)], [32, 48]);
  assert.equal(ring.room, false, 'held from 0: nothing left');
  assert.equal(read(16), -1);
});

test('room says whether the next read lands in the ring, at the end, after going round, and when everything held was written before the next read', () => {
  const { ring, read, next, at } = holdingRing(true);
  assert.deepEqual([read(16), read(16)], [0, 16]);
  ring.release();
  ring.release();
  assert.deepEqual([read(16), read(16), read(16)], [32, 48, 0], 'held from 32: goes round to the start');
  // The next region is handed out (the read into it comes later); meanwhile all
  // three held writes complete. The read that then lands is the only one held: it
  // must not be measured against the wrap that ended with the others.
  const region = next();
  assert.equal(at(region), 16);
  for (let i = 0; i < 3; i++) ring.release();
  ring.onread.callback(16, region);
  assert.equal(ring.room, true);
  assert.deepEqual([read(16), read(16), read(16)], [32, 48, 0]);
  assert.equal(read(16), -1, 'caught up with 16: full');
});
