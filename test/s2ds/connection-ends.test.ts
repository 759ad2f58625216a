// How a stream's forwarded connections ended, as the data server counts them
// (connection-ends.ts): a FIN both ways is a clean end; a reset from either
// application is an abnormal one, with its error. s2cs tells broken streams by them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LocalDataServer } from '../../src/s2ds/index.js';
import { target, through } from '../support/sockets.js';
import { silentLogger } from '../../src/log.js';
import { freePortRange } from '../../src/demo/procs.js';
import { until } from '../support/until.js';

test('clean ends and resets are counted per stream, with when and how the last one ended', async () => {
  const ds = new LocalDataServer({ bindHost: '127.0.0.1', portRange: await freePortRange(4), bufferSize: 256 * 1024, waitLimit: 4, waitTimeoutMs: 5000, logger: silentLogger });
  const t = await target();
  try {
    const [l] = await ds.startListeners('ends', 1);
    await ds.setTargets('ends', [{ host: '127.0.0.1', port: t.port }]);
    assert.deepEqual(pick(ds, 'ends'), { cleanEnds: 0, abnormalEnds: 0, lastEndAt: 0, lastEndAbnormal: false, lastEndError: '' });

    // FIN from the consumer, FIN back from the target: clean.
    const a = await through(l!.port);
    a.end();
    await new Promise((r) => a.once('close', r));
    await until('a clean end counted', 5000, async () => (ds.stats('ends')!.cleanEnds === 1 ? true : undefined));
    const afterClean = pick(ds, 'ends');
    assert.equal(afterClean.abnormalEnds, 0);
    assert.equal(afterClean.lastEndAbnormal, false);
    assert.ok(afterClean.lastEndAt > 0 && afterClean.lastEndAt <= Date.now());

    // The consumer resets its socket: abnormal, with the error the gateway saw.
    const b = await through(l!.port);
    b.resetAndDestroy();
    await until('an abnormal end counted', 5000, async () => (ds.stats('ends')!.abnormalEnds === 1 ? true : undefined));
    const afterReset = pick(ds, 'ends');
    assert.equal(afterReset.cleanEnds, 1);
    assert.equal(afterReset.lastEndAbnormal, true);
    assert.equal(afterReset.lastEndError, 'ECONNRESET');
    assert.equal(ds.stats('ends')!.activeConnections, 0);

    // The target resets: abnormal too.
    const c = await through(l!.port);
    const closed = new Promise((r) => c.once('close', r));
    t.sockets.at(-1)!.resetAndDestroy();
    await closed;
    await until('a second abnormal end counted', 5000, async () => (ds.stats('ends')!.abnormalEnds === 2 ? true : undefined));
    assert.equal(ds.stats('ends')!.lastEndAbnormal, true);
  } finally {
    await ds.close();
    t.server.close();
  }
});

function pick(ds: LocalDataServer, uid: string) {
  const s = ds.stats(uid)!;
  return { cleanEnds: s.cleanEnds!, abnormalEnds: s.abnormalEnds!, lastEndAt: s.lastEndAt!, lastEndAbnormal: s.lastEndAbnormal!, lastEndError: s.lastEndError! };
}
