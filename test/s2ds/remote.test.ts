// RemoteAgent against a real agent process: sync reads from the poll, close() releases
// nothing, down after the agent dies (kill -9), up and restarted when it comes back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { RemoteAgent, AgentCallError } from '../../src/s2ds/remote.js';
import { startAgentProcess, tempDir } from '../support/agent.js';

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a RemoteAgent follows its agent: streams outlive the client, down on kill -9, up and restarted when it is back', async () => {
  const dir = tempDir('scistream-remote-');
  let agent = await startAgentProcess({ dir, ports: 4 });
  const events: string[] = [];
  const remote = new RemoteAgent({ address: agent.address, name: 'node-2', pollIntervalMs: 200 });
  remote.onChange((e) => events.push(e));
  try {
    await until('the first answer', () => remote.up());
    assert.deepEqual(events, ['up']);
    assert.notEqual(remote.name, 'node-2', 'the name is the agent\'s own once it answered');
    assert.deepEqual(remote.ports(), { reserved: 0, free: 4 });
    assert.ok(remote.bufferMemory().limit > 0);
    const startedAt = remote.health()!.startedAtMs;

    await remote.startListeners('kept', 2);
    // Known at once, before the next poll.
    assert.equal(remote.stats('kept')?.listeners, 2);
    await until('the poll to see the ports', () => remote.ports().reserved === 2);
    await remote.close();

    // close() released nothing: another client finds the stream.
    const again = new RemoteAgent({ address: agent.address, pollIntervalMs: 200 });
    again.onChange((e) => events.push(e));
    try {
      assert.deepEqual((await again.listStreams()).map((s) => s.uid), ['kept']);
      await until('up', () => again.up());

      agent.proc.child.kill('SIGKILL');
      await agent.proc.exited;
      await until('down', () => events.includes('down'));
      assert.equal(again.up(), false);
      assert.equal(again.ports().free, 0, 'a down agent offers no ports');
      const err = await again.startListeners('while-down', 1).catch((e: unknown) => e);
      assert.ok(err instanceof AgentCallError, String(err));
      assert.equal(err.kind, 'UNAVAILABLE');
      assert.match(err.message, /^data-server agent .* at unix:.*: unreachable/);

      // The same socket path: the dead agent's socket file is replaced.
      agent = await startAgentProcess({ dir, ports: 4 });
      await until('restarted and up', () => events.includes('restarted') && again.up());
      assert.notEqual(again.health()!.startedAtMs, startedAt);
      assert.deepEqual(await again.listStreams(), []);
      assert.equal(events.filter((e) => e === 'down').length, 1);
    } finally {
      await again.close();
    }
  } finally {
    await remote.close();
    await agent.proc.stop('SIGTERM', 5000);
    rmSync(dir, { recursive: true, force: true });
  }
});
