// Raw bytes and malformed HTTP/2 on the control port of a real s2cs process: random bytes,
// the HTTP/2 preface followed by random HPACK, DATA frames with bogus lengths, random frame
// sequences, half-open and silent connections. The process must live, give back every
// descriptor within a bounded wait, and still answer a normal rpc.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { H2_KINDS, H2_PREFACE, h2Frame, Rng, Sender, fdCount, fuzzSeed, h2Garbage, rssMiB, settleFds, startS2cs, type H2Kind, type S2csUnderTest } from '../support/hostile.js';

const SEED = fuzzSeed();
/** The figure: 500 malformed connections, descriptors back at baseline. */
const CONNECTIONS = 500;
/** How long s2cs may take to free what it cannot use ("within seconds"). */
const SETTLE_MS = 15_000;

interface Outcome {
  /** Connections the server closed while ours was still open. */
  closedByServer: number;
  opened: number;
  refused: number;
}

/**
 * Opens `n` connections (`parallel` at a time), writes the garbage of `kind` on each, waits
 * `holdMs`, then closes our end unless `keepOpen`. Sockets are returned so that the caller
 * can destroy the ones still open.
 */
async function hammer(gw: S2csUnderTest, rng: Rng, kind: H2Kind, n: number, opts: { tls?: boolean; holdMs: number; parallel: number; keepOpen?: boolean }): Promise<Outcome & { sockets: Socket[] }> {
  const [host, portText] = gw.address.split(':') as [string, string];
  const port = Number(portText);
  const out: Outcome & { sockets: Socket[] } = { closedByServer: 0, opened: 0, refused: 0, sockets: [] };
  const one = (r: Rng) =>
    new Promise<void>((resolve) => {
      const bytes = h2Garbage(r, kind);
      let ended = false;
      const s: Socket = opts.tls ? tlsConnect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'] }) : connect({ host, port });
      const finish = () => {
        if (ended) return;
        ended = true;
        resolve();
      };
      s.on('error', () => undefined);
      s.on('data', () => undefined);
      s.once('close', () => {
        out.closedByServer++;
        finish();
      });
      s.once(opts.tls ? 'secureConnect' : 'connect', () => {
        out.opened++;
        if (kind === 'half-open') s.end(bytes);
        else if (kind !== 'silent') s.write(bytes);
        setTimeout(() => {
          if (!opts.keepOpen) {
            s.removeAllListeners('close');
            s.destroy();
          } else out.sockets.push(s);
          finish();
        }, opts.holdMs);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'ECONNREFUSED') out.refused++;
        finish();
      });
    });
  for (let i = 0; i < n; i += opts.parallel) {
    await Promise.all(Array.from({ length: Math.min(opts.parallel, n - i) }, () => one(rng.fork())));
  }
  return out;
}

async function normalRpcWorks(gw: S2csUnderTest): Promise<void> {
  const s = new Sender(gw.address, gw.credentials, 5000);
  try {
    const st = await s.typed.status({ uid: '' });
    assert.equal(st.reserved_ports, 0);
  } finally {
    s.close();
  }
}

describe('raw bytes and malformed HTTP/2 on the control port', () => {
  test(`${CONNECTIONS} malformed connections of every kind, plain control channel: alive, descriptors back, rpc works`, { timeout: 90_000 }, async (t) => {
    t.diagnostic(`seed ${SEED} (replay: SCISTREAM_FUZZ_SEED=${SEED})`);
    const gw = await startS2cs({ ports: 4 });
    try {
      await normalRpcWorks(gw);
      const fdBefore = fdCount(gw.pid);
      const rssBefore = rssMiB(gw.pid);
      const rng = new Rng(SEED);
      const per = Math.ceil(CONNECTIONS / H2_KINDS.length);
      const lines: string[] = [];
      for (const kind of H2_KINDS) {
        const o = await hammer(gw, rng.fork(), kind, per, { holdMs: 150, parallel: 50 });
        lines.push(`${kind}: ${o.opened} opened, ${o.closedByServer} closed by s2cs within 150 ms, ${o.refused} refused; descriptors now ${fdCount(gw.pid)}`);
        assert.ok(gw.alive(), `s2cs died during ${kind} (seed ${SEED})\n${gw.proc.stderr().slice(-3000)}`);
      }
      const fdAfter = await settleFds(gw.pid, fdBefore + 5, SETTLE_MS);
      for (const l of lines) t.diagnostic(l);
      t.diagnostic(`crashes: ${gw.alive() ? 0 : 1}; descriptors before ${fdBefore}, after ${fdAfter} (waited up to ${SETTLE_MS / 1000} s); RSS before ${rssBefore} MiB, after ${rssMiB(gw.pid)} MiB`);
      assert.ok(fdAfter <= fdBefore + 5, `s2cs holds ${fdAfter} descriptors ${SETTLE_MS / 1000} s after ${per * H2_KINDS.length} malformed connections were closed, ${fdBefore} before (seed ${SEED})`);
      await normalRpcWorks(gw);
    } finally {
      await gw.stop();
    }
  });

  test('s2cs closes malformed HTTP/2 connections itself, while the client keeps its end open', { timeout: 60_000 }, async (t) => {
    const gw = await startS2cs({ ports: 4 });
    const open: Socket[] = [];
    try {
      await normalRpcWorks(gw);
      const fdBefore = fdCount(gw.pid);
      const rng = new Rng(SEED ^ 0x1234);
      let closed = 0;
      let sent = 0;
      for (const kind of ['random-bytes', 'preface-hpack', 'bogus-data-length', 'random-frames'] as const) {
        const o = await hammer(gw, rng.fork(), kind, 40, { holdMs: 50, parallel: 40, keepOpen: true });
        open.push(...o.sockets);
        sent += o.opened;
        closed += o.closedByServer;
      }
      // Whatever the server will not serve it must close: wait for it, our ends stay open.
      const end = Date.now() + SETTLE_MS;
      while (open.some((s) => !s.closed && !s.readableEnded) && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
      const stillOpen = open.filter((s) => !s.closed && !s.readableEnded).length;
      const fdAfter = await settleFds(gw.pid, fdBefore + 5, 2000);
      t.diagnostic(`${sent} malformed connections; closed by s2cs at once: ${closed}; still open after ${SETTLE_MS / 1000} s: ${stillOpen}; descriptors before ${fdBefore}, after ${fdAfter}`);
      assert.ok(gw.alive());
      assert.equal(stillOpen, 0, `s2cs left ${stillOpen} malformed connections open for ${SETTLE_MS / 1000} s (seed ${SEED})`);
      assert.ok(fdAfter <= fdBefore + 5, `s2cs holds ${fdAfter} descriptors, ${fdBefore} before`);
      await normalRpcWorks(gw);
    } finally {
      for (const s of open) s.destroy();
      await gw.stop();
    }
  });

  test('control TLS: random bytes, stalled handshakes, garbage after the handshake', { timeout: 60_000 }, async (t) => {
    const gw = await startS2cs({ ports: 4, tls: true });
    try {
      await normalRpcWorks(gw);
      const fdBefore = fdCount(gw.pid);
      const rng = new Rng(SEED ^ 0x7777);
      // Into the TLS handshake itself (plain sockets), then HTTP/2 garbage inside TLS.
      for (const kind of ['random-bytes', 'silent', 'half-open'] as const) {
        await hammer(gw, rng.fork(), kind, 60, { holdMs: 100, parallel: 30 });
        assert.ok(gw.alive(), `s2cs died during TLS ${kind}`);
      }
      for (const kind of ['preface-hpack', 'bogus-data-length', 'random-frames'] as const) {
        await hammer(gw, rng.fork(), kind, 40, { holdMs: 100, parallel: 20, tls: true });
        assert.ok(gw.alive(), `s2cs died during TLS ${kind}`);
      }
      const fdAfter = await settleFds(gw.pid, fdBefore + 5, SETTLE_MS);
      t.diagnostic(`descriptors before ${fdBefore}, after ${fdAfter}; RSS ${rssMiB(gw.pid)} MiB`);
      assert.ok(fdAfter <= fdBefore + 5, `s2cs holds ${fdAfter} descriptors, ${fdBefore} before (seed ${SEED})`);
      await normalRpcWorks(gw);
    } finally {
      await gw.stop();
    }
  });

  test('idle control connections (silent, or a valid HTTP/2 start and nothing more) are closed after --idle-timeout', { timeout: 60_000 }, async (t) => {
    const IDLE_S = 2;
    const gw = await startS2cs({ ports: 4, extra: ['--idle-timeout', String(IDLE_S)] });
    const open: Socket[] = [];
    try {
      await normalRpcWorks(gw);
      const fdBefore = fdCount(gw.pid);
      // 200 silent, 200 with the preface and an empty SETTINGS frame; our ends kept open.
      const [host, port] = gw.address.split(':') as [string, string];
      await Promise.all(
        Array.from({ length: 400 }, (_, i) =>
          new Promise<void>((resolve) => {
            const s = connect({ host, port: Number(port) });
            open.push(s);
            s.on('error', () => undefined);
            s.on('data', () => undefined);
            s.once('connect', () => {
              if (i % 2) s.write(Buffer.concat([H2_PREFACE, h2Frame(4, 0, 0, Buffer.alloc(0))]));
              resolve();
            });
            s.once('error', () => resolve());
          }),
        ),
      );
      const end = Date.now() + (IDLE_S + 8) * 1000;
      while (open.some((s) => !s.closed && !s.readableEnded) && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
      const stillOpen = open.filter((s) => !s.closed && !s.readableEnded).length;
      const fdAfter = await settleFds(gw.pid, fdBefore + 5, 2000);
      t.diagnostic(`400 idle connections; still open ${IDLE_S + 8} s later: ${stillOpen}; descriptors before ${fdBefore}, after ${fdAfter}`);
      assert.equal(stillOpen, 0, `s2cs kept ${stillOpen} idle control connections open beyond --idle-timeout ${IDLE_S}`);
      assert.ok(fdAfter <= fdBefore + 5);
      await normalRpcWorks(gw);
    } finally {
      for (const s of open) s.destroy();
      await gw.stop();
    }
  });
});
