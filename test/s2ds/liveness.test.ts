// The WAN guard's count and log of broken WAN connections (the sweep itself runs on
// real sockets in forwarder.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { WanGuard, WanBrokenError, causeOf } from '../../src/s2ds/liveness.js';

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
