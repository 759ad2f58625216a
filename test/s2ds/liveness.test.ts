// The WAN guard: its sweep driven by hand on real sockets (the forwarder's use of it is in
// forwarder.test.ts), and its count and log of broken WAN connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { once } from 'node:events';
import { pino } from 'pino';
import { WanGuard, WanBrokenError, causeOf } from '../../src/s2ds/liveness.js';
import { HEARTBEAT_FRAME } from '../../src/transport/frames.js';
import { silentLogger } from '../../src/log.js';
import { socketPair } from '../support/sockets.js';

test('breaks are counted by cause; at most a few lines a second are logged, then one summary', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const guard = new WanGuard({ deadAfterMs: 30_000, logger: pino({ level: 'info' }, sink), linesPerSecond: 3 });
  for (let i = 0; i < 10; i++) guard.broken(`uid-${i}`, '10.0.0.2:5100', i < 8 ? 'reset' : 'dead-peer', 'x');
  assert.deepEqual(guard.totals(), [
    { cause: 'reset', count: 8 },
    { cause: 'dead-peer', count: 2 },
  ]);
  await sleep(1300);
  assert.equal(lines.length, 4, JSON.stringify(lines));
  assert.deepEqual(lines.slice(0, 3).map((l) => [l.uid, l.peer, l.cause]), [
    ['uid-0', '10.0.0.2:5100', 'reset'],
    ['uid-1', '10.0.0.2:5100', 'reset'],
    ['uid-2', '10.0.0.2:5100', 'reset'],
  ]);
  assert.match(String(lines[3]!.msg), /^7 more broken WAN connection\(s\) not logged one by one; since start: reset 8, dead-peer 2$/);
  guard.close();
});

test('socket errors map to causes; the error broken connections are destroyed with names its cause', () => {
  const err = (code: string) => Object.assign(new Error(code), { code });
  assert.equal(causeOf(err('ECONNRESET')), 'reset');
  assert.equal(causeOf(err('EPIPE')), 'reset');
  assert.equal(causeOf(err('ETIMEDOUT')), 'timeout');
  assert.equal(causeOf(err('ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC')), 'error');
  const e = new WanBrokenError('dead-peer', 'nothing for 30.2 s');
  assert.equal(e.code, 'ETIMEDOUT');
  assert.match(e.message, /dead-peer.*30\.2 s/);
});

// The sweep driven by hand, with its clock: a period far beyond the test, so that its own interval never runs.
const PERIOD = 60_000;
const DEAD = 150_000;

test('the sweep: silence for wan-dead-after is a dead peer (once); bytes, a pause, the peer\'s END or a stalled loop are not', async () => {
  const p = await socketPair();
  const guard = new WanGuard({ deadAfterMs: DEAD, logger: silentLogger, sweepMs: PERIOD });
  try {
    let dead = 0;
    let ended = false;
    const base = Date.now();
    guard.watch(p.ours, () => ended, () => dead++);
    guard.sweep(base + PERIOD);
    guard.sweep(base + 2 * PERIOD);
    assert.equal(dead, 0, 'silent for less than wan-dead-after');
    // Bytes arrive: heard.
    p.peer.write(HEARTBEAT_FRAME);
    await once(p.ours, 'data');
    guard.sweep(base + 3 * PERIOD);
    guard.sweep(base + 5 * PERIOD);
    assert.equal(dead, 0, 'heard at the third sweep');
    // Paused by backpressure: not judged, however long.
    p.ours.pause();
    guard.sweep(base + 6 * PERIOD);
    guard.sweep(base + 7 * PERIOD);
    guard.sweep(base + 8 * PERIOD);
    assert.equal(dead, 0, 'not judged while paused');
    p.ours.resume();
    // After the peer's END: not judged.
    ended = true;
    guard.sweep(base + 9 * PERIOD);
    guard.sweep(base + 10 * PERIOD);
    guard.sweep(base + 11 * PERIOD);
    assert.equal(dead, 0, "not judged after the peer's END");
    ended = false;
    // The event loop stalled (a gap of more than three periods): nothing judged this time.
    guard.sweep(base + 20 * PERIOD);
    guard.sweep(base + 21 * PERIOD);
    guard.sweep(base + 22 * PERIOD);
    assert.equal(dead, 0, 'a stalled loop is not silence');
    guard.sweep(base + 23 * PERIOD);
    assert.equal(dead, 1, `silent since the sweep at ${20 * PERIOD} ms: ${3 * PERIOD} ms >= ${DEAD} ms`);
    guard.sweep(base + 24 * PERIOD);
    assert.equal(dead, 1, 'reported once, then no longer watched');
    assert.equal(guard.size, 0);
  } finally {
    guard.close();
    await p.close();
  }
});

test('the sweep sends a heartbeat on a connection that wrote nothing since the last sweep, none after its END', async () => {
  const p = await socketPair();
  const guard = new WanGuard({ deadAfterMs: DEAD, logger: silentLogger, sweepMs: PERIOD });
  try {
    const got: Buffer[] = [];
    p.peer.on('data', (c: Buffer) => got.push(c));
    const base = Date.now();
    const unwatch = guard.watch(p.ours, () => false, () => {});
    const received = async (n: number) => {
      for (let i = 0; i < 100 && Buffer.concat(got).length < n; i++) await sleep(10);
      return Buffer.concat(got);
    };
    guard.sweep(base + PERIOD);
    assert.deepEqual(await received(4), HEARTBEAT_FRAME, 'idle since it was watched: one heartbeat');
    // Data written since the last sweep: no heartbeat.
    p.ours.write(Buffer.from('data'));
    await received(8);
    guard.sweep(base + 2 * PERIOD);
    guard.sweep(base + 3 * PERIOD);
    assert.deepEqual(await received(12), Buffer.concat([HEARTBEAT_FRAME, Buffer.from('data'), HEARTBEAT_FRAME]));
    // After our END (the socket's end()), nothing more.
    p.ours.end();
    await once(p.peer, 'end');
    guard.sweep(base + 4 * PERIOD);
    await sleep(50);
    assert.equal(Buffer.concat(got).length, 12);
    unwatch();
    assert.equal(guard.size, 0);
  } finally {
    guard.close();
    await p.close();
  }
});
