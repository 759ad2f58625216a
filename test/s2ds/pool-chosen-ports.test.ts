// Chosen ports and allow-lists through an agent the pool knows only by its address
// (an --s2ds agent: its port range is the agent's to check), holding spares: a
// chosen spare port is taken over and listens, a port outside the agent's range is
// refused by the agent with INVALID_ARGUMENT, and the allow-list travels with both
// StartListeners and AssignSpares. A real agent process over a Unix socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AgentPool } from '../../src/s2ds/pool.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import { ScistreamError } from '../../src/protocol/errors.js';
import { freePortRange } from '../../src/demo/procs.js';
import { silentLogger } from '../../src/log.js';
import { startAgentProcess } from '../support/agent.js';
import { echoServer, exchange } from '../support/sockets.js';

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('an agent of unknown range: a chosen spare port is taken, a port outside its range refused by it, allow-lists on both paths', async () => {
  const range = await freePortRange(8);
  const agent = await startAgentProcess({ extra: ['--port-range', `${range.first}-${range.last}`] });
  const remote = new RemoteAgent({ address: agent.address, pollIntervalMs: 200 });
  const pool = new AgentPool([remote], { logger: silentLogger, spares: 2 });
  const echo = await echoServer();
  try {
    await until('two spares', () => pool.sparesOn(remote).length === 2);
    const spare = pool.sparesOn(remote)[0]!.port;
    const listeners = await pool.startListeners('chosen', 1, { ports: [spare], allowFrom: ['127.0.0.2/32'] });
    assert.deepEqual(listeners.map((l) => l.port), [spare]);
    assert.ok(!pool.sparesOn(remote).some((s) => s.port === spare), 'no longer a spare of the pool');
    await pool.setTargets('chosen', [echo.address]);
    assert.deepEqual(await exchange(listeners[0]!, 'in', '127.0.0.2'), { data: 'in' });
    assert.equal((await exchange(listeners[0]!, 'out', '127.0.0.1')).error, 'ECONNRESET');

    await assert.rejects(pool.startListeners('outside', 1, { ports: [range.last + 1] }), (err: unknown) => {
      assert.ok(err instanceof ScistreamError, String(err));
      assert.equal(err.kind, 'INVALID_ARGUMENT');
      assert.match(err.message, new RegExp(`${range.last + 1} are outside this gateway's data port range ${range.first}-${range.last}`));
      return true;
    });
    await assert.rejects(pool.startListeners('held', 1, { ports: [spare] }), /held by another stream/);

    // From spares (no chosen port): the allow-list goes with AssignSpares.
    await until('the spares refilled', () => pool.sparesOn(remote).length === 2);
    const fromSpares = await pool.startListeners('spares', 1, { allowFrom: ['127.0.0.2/32'] });
    await pool.setTargets('spares', [echo.address]);
    assert.deepEqual(await exchange(fromSpares[0]!, 'in', '127.0.0.2'), { data: 'in' });
    assert.equal((await exchange(fromSpares[0]!, 'out', '127.0.0.1')).error, 'ECONNRESET');
    await until('the refusals reach the pool', () => pool.refusalTotals().some((r) => r.kind === 'allow-list' && r.count === 2));
  } finally {
    await pool.close();
    remote.close();
    await agent.close();
    echo.server.close();
  }
});
