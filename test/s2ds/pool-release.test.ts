// Release frees ports before it answers: once s2cs answered a release OK, a
// request for the same number of ports succeeds at once, whatever the pool's view
// of its agents was (their free counts come from a poll once a second) and
// whether spare listeners are being refilled. A real s2cs, a range of 4 ports:
// request 4, release, request 4 again, 50 times; in-process, with one worker
// process (it keeps spares) and with two (each holds half of the range).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { silentLogger } from '../../src/log.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { tempDir } from '../support/agent.js';

const CYCLES = 50;

/** Processes whose command line holds `text`. */
function pgrep(text: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', text], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function cycles(gw: TestGateway): Promise<void> {
  let uid = randomUUID();
  let r = await gw.client.req({ uid, role: 'CONS', num_conn: 4, rate: 0 });
  assert.equal(r.listeners.length, 4);
  for (let i = 0; i < CYCLES; i++) {
    // Every few cycles the agents' polls have seen the ports held before the release (the pool's view is at its worst).
    if (i % 5 === 0) await until('the poll to see the ports held', () => gw.server.dataServer.ports().free === 0);
    await gw.client.release({ uid });
    uid = randomUUID();
    r = await gw.client.req({ uid, role: 'CONS', num_conn: 4, rate: 0 }).catch((err: unknown) => assert.fail(`cycle ${i}: a request right after a release was refused: ${(err as Error).message}`));
    assert.equal(new Set(r.listeners).size, 4, `cycle ${i}: four listeners`);
  }
  await gw.client.release({ uid });
}

test('in process (--workers 0): a request right after a release gets the released ports, 50 times', async () => {
  const gw = await startGateway({ logger: silentLogger }, 4);
  try {
    await cycles(gw);
  } finally {
    await gw.close();
  }
});

for (const count of [1, 2]) {
  test(`with ${count} worker process(es)${count === 1 ? ' keeping spares' : ''}: a request right after a release gets the released ports, 50 times`, async () => {
    const dir = tempDir('relports-');
    let gw: TestGateway | undefined;
    try {
      gw = await startGateway(
        {
          logger: silentLogger,
          workers: { count, dir: join(dir, 'agents') },
          connectAgent: (address: string, name: string) => new RemoteAgent({ address, name }),
          spareListeners: 2,
        },
        4,
      );
      await cycles(gw);
      // Nothing is left held once the last stream is released.
      const ports = gw.server.dataServer.ports();
      assert.equal(ports.free, 4, `every port is free again (${JSON.stringify(ports)})`);
    } finally {
      await gw?.close();
      for (const p of pgrep(dir)) process.kill(-p, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
