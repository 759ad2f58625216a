// The SO_LINGER helper on real sockets: what the option is set to, and what the
// peer sees when the socket closes with it on and off.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { outcome } from '../support/sockets.js';
import { closeCleanly, getLinger, lingerAvailable, lingerUnavailable, resetOnClose, setLinger, socketFd } from '../../src/transport/linger.js';

const MiB = 1024 * 1024;
/**
 * Written while the peer does not read: more than the peer's receive window, so
 * most of it is still in our send queue when our socket closes, and less than
 * Linux's default send buffer limit (tcp_wmem 4 MiB), so that the kernel takes it
 * all and the socket does close.
 */
const UNSENT = 1 * MiB;
const TIMEOUT = 30_000;

/** A connected pair: `ours` (the gateway's side, accepted) and `peer` (the application). */
async function connectedPair(): Promise<{ ours: Socket; peer: Socket; close: () => Promise<void> }> {
  const got: Socket[] = [];
  let arrived!: () => void;
  const arrival = new Promise<void>((r) => (arrived = r));
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    got.push(s);
    arrived();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const peer = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, allowHalfOpen: true });
  peer.on('error', () => {});
  await Promise.all([once(peer, 'connect'), arrival]);
  return {
    ours: got[0]!,
    peer,
    close: async () => {
      for (const s of [peer, ...got]) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Ends `s` with `data` and closes it once the kernel has taken the last bytes, as
 * Node does by itself when the other direction has ended already (the forwarder's
 * case: the application half-closed first).
 */
function endThenClose(s: Socket, data: Buffer): void {
  s.end(data);
  s.once('finish', () => s.destroy());
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('SO_LINGER helper', () => {
  it('the addon is loaded (required in CI, where it must have been built by npm ci)', (t) => {
    if (!lingerAvailable && !process.env.CI) {
      t.skip(`not built here: ${lingerUnavailable()}`);
      return;
    }
    assert.equal(lingerAvailable, true, lingerUnavailable());
    assert.equal(lingerUnavailable(), undefined);
  });

  it('resetOnClose sets {on, 0}, closeCleanly turns it off; a TLS socket\'s are its TCP descriptor\'s', { skip: !lingerAvailable }, async () => {
    const p = await connectedPair();
    try {
      const fd = socketFd(p.ours)!;
      assert.equal(typeof fd, 'number');
      assert.deepEqual(getLinger(fd), { on: false, seconds: 0 });
      resetOnClose(p.ours);
      assert.deepEqual(getLinger(fd), { on: true, seconds: 0 });
      closeCleanly(p.ours);
      assert.deepEqual(getLinger(fd), { on: false, seconds: 0 });
      // A TLS socket wrapping it (as the WAN leg's server side does) reaches the same descriptor.
      const tls = new TLSSocket(p.ours, { isServer: true });
      tls.on('error', () => {});
      assert.equal(socketFd(tls), fd);
      resetOnClose(tls);
      assert.deepEqual(getLinger(fd), { on: true, seconds: 0 });
      tls.destroy();
    } finally {
      await p.close();
    }
  });

  it('with resetOnClose, a close the gateway did not choose reaches the peer as a reset', { skip: !lingerAvailable, timeout: TIMEOUT }, async () => {
    const p = await connectedPair();
    try {
      const atPeer = outcome(p.peer);
      resetOnClose(p.ours);
      p.ours.write('partial');
      // destroy() closes the descriptor: without the option the peer would see a FIN.
      p.ours.destroy();
      assert.deepEqual(await atPeer, { bytes: 7, sha: sha(Buffer.from('partial')), end: 'ECONNRESET' });
    } finally {
      await p.close();
    }
  });

  it('without it, the same close is a clean end (what the option is for)', { timeout: TIMEOUT }, async () => {
    const p = await connectedPair();
    try {
      const atPeer = outcome(p.peer);
      p.ours.destroy();
      assert.equal((await atPeer).end, 'end');
    } finally {
      await p.close();
    }
  });

  it('closeCleanly before end(): every byte, then a clean end, even when the socket closes with most of them unsent', { skip: !lingerAvailable, timeout: TIMEOUT }, async () => {
    const p = await connectedPair();
    try {
      resetOnClose(p.ours);
      const data = randomBytes(UNSENT);
      const atPeer = outcome(p.peer);
      p.peer.pause();
      closeCleanly(p.ours);
      endThenClose(p.ours, data);
      // The peer reads only once our side has closed: the bytes were unsent then.
      await once(p.ours, 'close');
      p.peer.resume();
      assert.deepEqual(await atPeer, { bytes: data.length, sha: sha(data), end: 'end' });
    } finally {
      await p.close();
    }
  });

  it('and why closeCleanly matters: with the option still on, that close drops what was unsent and resets', { skip: !lingerAvailable, timeout: TIMEOUT }, async () => {
    const p = await connectedPair();
    try {
      resetOnClose(p.ours);
      const data = randomBytes(UNSENT);
      const atPeer = outcome(p.peer);
      p.peer.pause();
      endThenClose(p.ours, data);
      await once(p.ours, 'close');
      p.peer.resume();
      const r = await atPeer;
      assert.equal(r.end, 'ECONNRESET');
      assert.ok(r.bytes < data.length, `${r.bytes} of ${data.length} bytes`);
    } finally {
      await p.close();
    }
  });

  it('setLinger reports a bad descriptor as an errno error; the helpers skip sockets without one', { skip: !lingerAvailable }, () => {
    assert.throws(() => setLinger(-1, true), (err: NodeJS.ErrnoException) => err.code === 'EBADF' && err.syscall === 'setsockopt');
    const unconnected = new Socket();
    assert.equal(socketFd(unconnected), undefined);
    resetOnClose(unconnected);
    closeCleanly(unconnected);
  });
});
