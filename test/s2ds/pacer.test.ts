// The rate cap's bucket and valve, on real sockets: no timings asserted beyond what
// the arithmetic fixes (the end-to-end accuracy is test/e2e/rate.test.ts's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { Pacer, Valve } from '../../src/s2ds/pacer.js';

test('Pacer: a burst passes at once; beyond it, reading waits as long as the debt takes at the rate', () => {
  const p = new Pacer(1_000_000); // 1 MB/s: the burst is the 64 KiB floor
  assert.equal(p.spend(64 * 1024), 0, 'the burst');
  const wait = p.spend(100_000);
  assert.ok(wait >= 99 && wait <= 101, `100 kB of debt at 1 MB/s is 100 ms, got ${wait}`);
  assert.ok(p.wait() > 0, 'still in debt');
});

test('Pacer: a fast cap allows 20 ms of burst, never seconds', () => {
  const p = new Pacer(625_000_000); // 5 Gbit/s
  assert.equal(p.spend(12_000_000), 0, '12 MB is within 20 ms at 625 MB/s');
  assert.ok(p.spend(2_000_000) > 0, 'two more MB are not');
});

async function pair(): Promise<{ a: Socket; b: Socket; close: () => void }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const a = connect(port, '127.0.0.1');
  const [b] = await accepted;
  return { a, b, close: () => { a.destroy(); b.destroy(); server.close(); } };
}

test('Valve: the cap stops reading and restarts it by itself; backpressure held meanwhile keeps it stopped', async () => {
  const { a, b, close } = await pair();
  try {
    const pacer = new Pacer(1_000_000);
    const valve = new Valve(b, pacer);
    b.on('data', () => {});
    pacer.spend(64 * 1024); // the burst is gone
    assert.equal(valve.spent(50_000), false, 'in debt: stop');
    assert.equal(b.isPaused(), true);
    assert.equal(valve.pacing, true);
    valve.fill(); // the destination is full too
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(valve.pacing, false, 'the debt was paid');
    assert.equal(b.isPaused(), true, 'still full: not resumed');
    valve.drained();
    assert.equal(b.isPaused(), false);
    // Without a pacer, a valve is plain pause and resume.
    const plain = new Valve(a, undefined);
    assert.equal(plain.spent(1e9), true);
    plain.fill();
    assert.equal(a.isPaused(), true);
    plain.drained();
    assert.equal(a.isPaused(), false);
  } finally {
    close();
  }
});

test('Valve: a socket that closes while paced leaves no timer behind', async () => {
  const { b, close } = await pair();
  const pacer = new Pacer(1000);
  const valve = new Valve(b, pacer);
  pacer.spend(64 * 1024);
  assert.equal(valve.spent(10_000), false);
  close();
  await once(b, 'close');
  assert.equal(valve.pacing, false);
});
