// s2ds --orphan-timeout against a real agent process: when no s2cs has called it
// for that long, it drops its streams (connections reset, ports freed) and logs
// which and why; the s2cs that comes back reports them lost. Without the flag
// (default: never) a stream outlives its s2cs (test/s2ds/agent.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { AgentPool } from '../../../src/s2ds/pool.js';
import { RemoteAgent } from '../../../src/s2ds/remote.js';
import { silentLogger } from '../../../src/log.js';
import { startAgentProcess } from '../../support/agent.js';
import { echoServer } from '../../support/sockets.js';
import { untilTrue } from '../../support/until.js';

test('an agent no s2cs calls for --orphan-timeout drops its streams, says which and why; the s2cs reports them lost when it hears again', async () => {
  const agent = await startAgentProcess({ ports: 4, extra: ['--orphan-timeout', '2'] });
  // Polls 5 s apart: to the agent, s2cs is silent for longer than its --orphan-timeout between them.
  const remote = new RemoteAgent({ address: agent.address, pollIntervalMs: 5_000 });
  const pool = new AgentPool([remote], { logger: silentLogger });
  const echo = await echoServer();
  const lost: { uids: string[]; why: string }[] = [];
  pool.onStreamsLost((uids, why) => lost.push({ uids, why }));
  try {
    await untilTrue('up', () => remote.answering());
    const [listener] = await pool.startListeners('orphan', 1);
    await pool.setTargets('orphan', [echo.address]);
    const socket = connect({ host: listener!.host, port: listener!.port });
    const ended = new Promise<string>((resolve) => {
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      socket.on('close', () => resolve('closed'));
    });
    await new Promise<void>((resolve) => {
      socket.once('connect', () => socket.write('ping'));
      socket.once('data', () => resolve());
    });
    const connectedAt = Date.now();
    await agent.proc.waitFor(/no s2cs has called this agent for \d+ s \(--orphan-timeout 2\).*dropped.*orphan/, { timeoutMs: 10_000 });
    assert.equal(await ended, 'ECONNRESET', 'the connection is reset, never ended cleanly');
    assert.ok(Date.now() - connectedAt < 10_000, `dropped ${Date.now() - connectedAt} ms after the last call (--orphan-timeout 2)`);
    // The next poll sees it gone: reported lost, with why.
    await untilTrue('the stream reported lost', () => lost.length > 0, 10_000);
    assert.deepEqual(lost[0]!.uids, ['orphan']);
    assert.match(lost[0]!.why, /dropped its part: it was cut off from s2cs for longer than its --orphan-timeout/);
    assert.equal(pool.stats('orphan'), undefined);
    assert.equal(remote.ports().reserved, 0, 'its ports are free');
  } finally {
    await pool.close();
    echo.server.close();
    await agent.close();
  }
});
