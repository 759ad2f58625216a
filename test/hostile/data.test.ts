// Raw bytes to the data listeners of a real s2cs process, before and after UpdateTargets,
// for both roles and for a target that refuses: connections that write garbage and go,
// reset, half-close, or stay. Asserts: alive, nothing reserved after release, descriptors
// back at baseline, the control port still answers.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Rng, Sender, fdCount, fuzzSeed, rssMiB, settleFds, startS2cs } from '../support/hostile.js';
import { freePort } from '../../src/demo/procs.js';

const SEED = fuzzSeed();

/** A target that reads everything, counting bytes and connections. */
async function sink(): Promise<{ server: Server; address: string; bytes: () => number; connections: () => number; close(): Promise<void> }> {
  let bytes = 0;
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    connections++;
    sockets.add(s);
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  return {
    server,
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    bytes: () => bytes,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

type Style = 'write-and-close' | 'reset' | 'half-close' | 'stay' | 'connect-only';
const STYLES: Style[] = ['write-and-close', 'reset', 'half-close', 'stay', 'connect-only'];

/** `n` connections to the listeners, each in a random style; returns those that stay open. */
async function garbage(rng: Rng, listeners: string[], n: number): Promise<Socket[]> {
  const stay: Socket[] = [];
  await Promise.all(
    Array.from({ length: n }, (_, i) => {
      const r = rng.fork();
      const [host, port] = listeners[i % listeners.length]!.split(':') as [string, string];
      const style = r.pick(STYLES);
      return new Promise<void>((resolve) => {
        const s = connect({ host, port: Number(port) });
        s.on('error', () => resolve());
        s.on('data', () => undefined);
        s.once('connect', () => {
          const bytes = r.bytes(r.pick([1, 100, 16 * 1024, 256 * 1024]));
          if (style !== 'connect-only') s.write(bytes);
          if (style === 'write-and-close') s.end();
          else if (style === 'reset') s.resetAndDestroy();
          else if (style === 'half-close') s.end();
          else stay.push(s);
          setTimeout(resolve, 20);
        });
      });
    }),
  );
  return stay;
}

describe('raw bytes to data listeners', () => {
  test('before and after UpdateTargets, both roles, and a target that refuses', { timeout: 60_000 }, async (t) => {
    t.diagnostic(`seed ${SEED} (replay: SCISTREAM_FUZZ_SEED=${SEED})`);
    const gw = await startS2cs({ ports: 12 });
    const target = await sink();
    const sender = new Sender(gw.address, gw.credentials, 5000);
    const open: Socket[] = [];
    try {
      await sender.typed.status({ uid: '' });
      const fdBefore = fdCount(gw.pid);
      const rssBefore = rssMiB(gw.pid);
      const rng = new Rng(SEED);
      const c = sender.typed;

      // Consumer side: connections arrive before the targets, then after.
      const cons = await c.req({ uid: 'raw-cons', role: 'CONS', num_conn: 3, rate: 0 });
      open.push(...(await garbage(rng.fork(), cons.listeners, 60)));
      await c.update({ uid: 'raw-cons', role: 'CONS', remote_listeners: [target.address] });
      open.push(...(await garbage(rng.fork(), cons.listeners, 60)));

      // Producer side: Hello first (held until the req), then the same.
      await c.hello({ uid: 'raw-prod', role: 'PROD', prod_listeners: [target.address], app_secret: '' });
      const prod = await c.req({ uid: 'raw-prod', role: 'PROD', num_conn: 3, rate: 0 });
      open.push(...(await garbage(rng.fork(), prod.listeners, 60)));
      await c.update({ uid: 'raw-prod', role: 'PROD', remote_listeners: [target.address] });
      open.push(...(await garbage(rng.fork(), prod.listeners, 60)));

      // A target that refuses every connection.
      const closed = `127.0.0.1:${await freePort()}`;
      const refusing = await c.req({ uid: 'raw-refused', role: 'CONS', num_conn: 2, rate: 0 });
      await c.update({ uid: 'raw-refused', role: 'CONS', remote_listeners: [closed] });
      open.push(...(await garbage(rng.fork(), refusing.listeners, 60)));

      await new Promise((r) => setTimeout(r, 500));
      assert.ok(gw.alive(), `s2cs died (seed ${SEED})\n${gw.proc.stderr().slice(-3000)}`);
      const st = await c.status({ uid: '' });
      const rssPeak = rssMiB(gw.pid);
      t.diagnostic(
        `target got ${target.connections()} connections, ${target.bytes()} bytes; streams: ` +
          st.streams.map((s) => `${s.uid} accepted=${s.accepted_connections} active=${s.active_connections} waiting=${s.waiting_connections}`).join(', '),
      );
      assert.ok(target.connections() > 0, 'no connection reached the target after UpdateTargets');

      for (const uid of ['raw-cons', 'raw-prod', 'raw-refused']) await c.release({ uid });
      for (const s of open) s.destroy();
      const after = await c.status({ uid: '' });
      assert.equal(after.reserved_ports, 0);
      assert.equal(after.streams.length, 0);
      const fdAfter = await settleFds(gw.pid, fdBefore + 5, 10_000);
      t.diagnostic(`crashes: ${gw.alive() ? 0 : 1}; descriptors before ${fdBefore}, after ${fdAfter}; RSS before ${rssBefore} MiB, peak ${rssPeak} MiB, after ${rssMiB(gw.pid)} MiB`);
      assert.ok(fdAfter <= fdBefore + 5, `s2cs holds ${fdAfter} descriptors after release, ${fdBefore} before (seed ${SEED})`);
      assert.ok(gw.alive());
    } finally {
      for (const s of open) s.destroy();
      sender.close();
      await target.close();
      await gw.stop();
    }
  });
});
