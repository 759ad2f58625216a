// Agents that stop answering, against real agent processes over Unix sockets, made
// silent with SIGSTOP (the kernel still accepts on their sockets; nothing answers,
// as in a partition) and back with SIGCONT. What must hold: the agent is down after
// three failed polls (seconds, not the 30 s of three call deadlines); a release
// during the silence says which agent and how many connections may still forward,
// the rest is released, and the agent releases its part when it answers again
// (its connections end, its ports free); a request is not placed on the silent
// agent, and one that it does not answer goes to the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { AgentPool } from '../../src/s2ds/pool.js';
import { PartialRelease } from '../../src/s2ds/releases.js';
import { RemoteAgent } from '../../src/s2ds/remote.js';
import type { Address } from '../../src/protocol/address.js';
import { captureLogger } from '../auth/capture.js';
import { startAgentProcess, tempDir, type AgentProcess } from '../support/agent.js';
import { echoServer } from '../support/sockets.js';
import { untilTrue } from '../support/until.js';
import { rmSync } from 'node:fs';

/** A client connection through a listener, echoed once to know it forwards; `ended` says how it ended. */
async function through(a: Address): Promise<{ socket: Socket; ended: Promise<string> }> {
  const socket = connect({ host: a.host, port: a.port });
  const ended = new Promise<string>((resolve) => {
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    socket.on('close', () => resolve('closed'));
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => socket.write('ping'));
    socket.once('data', () => resolve());
    socket.once('error', reject);
  });
  return { socket, ended };
}

function pause(agent: AgentProcess): void {
  agent.proc.child.kill('SIGSTOP');
}

function resume(agent: AgentProcess): void {
  agent.proc.child.kill('SIGCONT');
}

test('a silent agent is down after three failed polls; calls waiting on it fail then, not at their deadline', async () => {
  const agent = await startAgentProcess({ ports: 4 });
  const remote = new RemoteAgent({ address: agent.address });
  const events: { event: string; at: number }[] = [];
  remote.onChange((event) => events.push({ event, at: Date.now() }));
  try {
    await untilTrue('up', () => remote.up());
    const silentSince = Date.now();
    pause(agent);
    const waiting = remote.startListeners('hangs', 1).then(
      () => undefined,
      (err: unknown) => ({ err: err as Error, at: Date.now() }),
    );
    await untilTrue('down', () => events.some((e) => e.event === 'down'), 10_000);
    const downAfter = events.find((e) => e.event === 'down')!.at - silentSince;
    assert.ok(downAfter >= 2_000 && downAfter <= 8_000, `marked down ${downAfter} ms after it stopped answering (three 1 s polls, and a few seconds for a loaded machine)`);
    console.log(`# marked down ${downAfter} ms after SIGSTOP`);
    assert.equal(remote.answering(), false);
    const failed = await waiting;
    assert.ok(failed, 'the call failed');
    assert.match(failed.err.message, /does not answer \(3 polls in a row failed: marked down\)/);
    assert.ok(failed.at - silentSince < 9_000, `the waiting call failed ${failed.at - silentSince} ms in, with the mark down`);
    console.log(`# a StartListeners waiting on it failed ${failed.at - silentSince} ms after SIGSTOP: ${failed.err.message}`);
    resume(agent);
    await untilTrue('up again', () => remote.up() && remote.answering(), 10_000);
    // What the silent agent did meanwhile is released, not leaked.
    await remote.release('hangs');
    await untilTrue('no port held', () => {
      void remote.poll();
      return remote.ports().reserved === 0;
    });
  } finally {
    resume(agent);
    await remote.close();
    await agent.close();
  }
});

test('release during an agent partition is partial, names the agent and its connections; the agent releases its part when it is back', async () => {
  const a = await startAgentProcess({ ports: 4 });
  const b = await startAgentProcess({ ports: 4 });
  const ra = new RemoteAgent({ address: a.address, name: 'a' });
  const rb = new RemoteAgent({ address: b.address, name: 'b' });
  const { logger } = captureLogger();
  const pool = new AgentPool([ra, rb], { logger });
  const echo = await echoServer();
  const released: { uid: string; how: string; at: number }[] = [];
  pool.onReleased((uid, how) => released.push({ uid, how, at: Date.now() }));
  const sockets: Socket[] = [];
  try {
    await untilTrue('both up', () => ra.answering() && rb.answering());
    const listeners = await pool.startListeners('split', 4);
    const onB = pool.sharesOf('split')!.find((s) => s.agent === rb)!.indices;
    assert.ok(onB.length > 0 && onB.length < 4, 'the stream is spread over both agents');
    await pool.setTargets('split', [echo.address]);
    const conns = await Promise.all(listeners.map((l) => through(l)));
    sockets.push(...conns.map((c) => c.socket));
    await untilTrue('the polls to count the connections', () => (rb.stats('split')?.activeConnections ?? 0) === onB.length && (ra.stats('split')?.activeConnections ?? 0) === 4 - onB.length);

    pause(b);
    const asked = Date.now();
    const err = await pool.release('split').then(
      () => assert.fail('the release says it is partial'),
      (e: unknown) => e,
    );
    const answeredMs = Date.now() - asked;
    assert.ok(err instanceof PartialRelease, String(err));
    assert.equal(err.kind, 'DEADLINE_EXCEEDED');
    assert.deepEqual(err.shares, [{ agent: rb.name, address: b.address, connections: onB.length }]);
    assert.ok(err.message.startsWith(`release of stream split is partial: data-server agent ${rb.name} (${onB.length} connection(s)) did not answer`), err.message);
    assert.ok(answeredMs < 9_000, `answered after ${answeredMs} ms (at the agent's mark down at the latest)`);
    console.log(`# release with b silent answered after ${answeredMs} ms: ${err.message}`);
    assert.deepEqual(pool.releasing('split'), err.shares);
    // The answering agent's part is gone: its connections reset, its ports free.
    for (const [i, c] of conns.entries()) if (!onB.includes(i)) assert.notEqual(await c.ended, undefined);
    await untilTrue('a\'s ports free', () => ra.ports().reserved === 0);
    // A new request does not go to the silent agent.
    await untilTrue('b down', () => !rb.up());
    await pool.startListeners('meanwhile', 2);
    assert.deepEqual(pool.sharesOf('meanwhile')!.map((s) => s.agent.name), [ra.name]);
    await pool.release('meanwhile');
    assert.equal(released.length, 0, 'not released while b is silent');

    const healed = Date.now();
    resume(b);
    await untilTrue('the release to complete', () => released.length === 1);
    assert.equal(released[0]!.uid, 'split');
    assert.match(released[0]!.how, /^released by request; partial for \d+ s: data-server agent .* did not answer, then released its part when it answered again$/);
    assert.ok(released[0]!.at - healed < 10_000, `completed ${released[0]!.at - healed} ms after the heal`);
    assert.equal(pool.releasing('split'), undefined);
    // b's connections end, its ports free.
    for (const i of onB) assert.notEqual(await conns[i]!.ended, undefined);
    await untilTrue('b\'s ports free', () => {
      void rb.poll();
      return rb.ports().reserved === 0;
    });
  } finally {
    resume(b);
    for (const s of sockets) s.destroy();
    await pool.close();
    echo.server.close();
    await a.close();
    await b.close();
  }
});

test('a request its agent does not answer is placed again on the others', async () => {
  const a = await startAgentProcess({ ports: 4 });
  const b = await startAgentProcess({ ports: 4 });
  const ra = new RemoteAgent({ address: a.address, name: 'a' });
  const rb = new RemoteAgent({ address: b.address, name: 'b' });
  const { logger, lines } = captureLogger();
  const pool = new AgentPool([ra, rb], { logger });
  try {
    await untilTrue('both up', () => ra.answering() && rb.answering());
    // Placed on both (before b misses a poll), b silent: its share goes to a.
    pause(b);
    const listeners = await pool.startListeners('moved', 4);
    assert.equal(listeners.length, 4);
    assert.deepEqual(pool.sharesOf('moved')!.map((s) => s.agent.name), [ra.name]);
    assert.ok(lines.some((l) => /did not answer for stream moved: placing it on the other agents/.test(l)), lines.join('\n'));
    // Whatever b opened before it went silent is released when it is back.
    resume(b);
    await untilTrue('b up', () => rb.answering());
    await untilTrue('b holds nothing', () => {
      void rb.poll();
      return rb.ports().reserved === 0 && rb.stats('moved') === undefined;
    });
    await pool.release('moved');
    // Neither has the ports: the failure is the silent agent's, not a placement.
    pause(b);
    await assert.rejects(pool.startListeners('too-big', 8), (e: Error) => /data-server agent b|not enough free ports|no data-server agent answers/.test(e.message));
  } finally {
    resume(b);
    await pool.close();
    await a.close();
    await b.close();
  }
});

test('a partial release ends when the silent agent restarts instead (its connections went with it)', async () => {
  const a = await startAgentProcess({ ports: 4 });
  const dir = tempDir('scistream-releases-');
  let b = await startAgentProcess({ ports: 4, dir });
  const ra = new RemoteAgent({ address: a.address, name: 'a' });
  const rb = new RemoteAgent({ address: b.address, name: 'b' });
  const pool = new AgentPool([ra, rb], { logger: captureLogger().logger });
  const released: { uid: string; how: string }[] = [];
  pool.onReleased((uid, how) => released.push({ uid, how }));
  try {
    await untilTrue('both up', () => ra.answering() && rb.answering());
    await pool.startListeners('gone', 4);
    assert.equal(pool.sharesOf('gone')!.length, 2);
    pause(b);
    await assert.rejects(pool.release('gone'), PartialRelease);
    b.proc.child.kill('SIGKILL');
    await b.proc.exited;
    b = await startAgentProcess({ ports: 4, dir });
    await untilTrue('the release to end with the restart', () => released.length === 1);
    assert.equal(released[0]!.uid, 'gone');
    assert.match(released[0]!.how, /^released by request; partial for \d+ s \(data-server agent .* restarted: the connections it carried were reset\)$/);
    assert.equal(pool.releasing('gone'), undefined);
  } finally {
    await pool.close();
    await a.close();
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
