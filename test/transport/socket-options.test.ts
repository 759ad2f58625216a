// Keepalive and TCP_USER_TIMEOUT on data sockets (socket-options.ts), read back from
// the kernel with getsockopt, as linger.test.ts does for SO_LINGER.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { socketFd } from '../../src/transport/linger.js';
import { socketPair } from '../support/sockets.js';
import { getKeepAlive, keepAliveFor, keepAliveNative, keepDataSocketAlive, setKeepAlive } from '../../src/transport/socket-options.js';

describe('keepalive and TCP user timeout of data sockets', () => {
  it('follow --wan-dead-after: probes from half of it, three a sixth apart, user timeout all of it', () => {
    assert.deepEqual(keepAliveFor(30_000), { idleS: 15, intervalS: 5, count: 3, userTimeoutMs: 30_000 });
    assert.deepEqual(keepAliveFor(5_000), { idleS: 3, intervalS: 1, count: 3, userTimeoutMs: 5_000 });
    assert.deepEqual(keepAliveFor(3_000), { idleS: 2, intervalS: 1, count: 3, userTimeoutMs: 3_000 });
  });

  it('the addon sets them (required in CI, where it must have been built by npm ci)', (t) => {
    if (!keepAliveNative() && !process.env.CI) {
      t.skip('native addon not built here');
      return;
    }
    assert.equal(keepAliveNative(), true);
  });

  it('keepDataSocketAlive sets them on the descriptor, a TLS socket on its TCP descriptor', { skip: !keepAliveNative() }, async () => {
    const p = await socketPair();
    try {
      const fd = socketFd(p.ours)!;
      assert.equal(getKeepAlive(fd).on, false);
      keepDataSocketAlive(p.ours, 30_000);
      assert.deepEqual(getKeepAlive(fd), { on: true, idleS: 15, intervalS: 5, count: 3, userTimeoutMs: 30_000 });
      const tls = new TLSSocket(p.ours, { isServer: true });
      tls.on('error', () => {});
      keepDataSocketAlive(tls, 5_000);
      assert.deepEqual(getKeepAlive(fd), { on: true, idleS: 3, intervalS: 1, count: 3, userTimeoutMs: 5_000 });
      tls.destroy();
    } finally {
      await p.close();
    }
  });

  it('a bad descriptor is an errno error; sockets without one are skipped', { skip: !keepAliveNative() }, () => {
    assert.throws(() => setKeepAlive(-1, keepAliveFor(30_000)), (err: NodeJS.ErrnoException) => err.code === 'EBADF' && err.syscall === 'setsockopt');
    assert.throws(() => getKeepAlive(-1), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
    keepDataSocketAlive(new Socket(), 30_000);
  });
});
