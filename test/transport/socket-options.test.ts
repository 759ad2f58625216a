// Keepalive and TCP_USER_TIMEOUT on data sockets (socket-options.ts), read back from
// the kernel with getsockopt, as linger.test.ts does for SO_LINGER; and ports held
// without listening (spare data ports), tried with real connections and binds.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Socket, connect, createServer } from 'node:net';
import { fstatSync, openSync, readdirSync } from 'node:fs';
import { freePort } from '../../src/demo/procs.js';
import { listenTcpOn } from '../../src/transport/tcp.js';
import { TLSSocket } from 'node:tls';
import { socketFd } from '../../src/transport/linger.js';
import { socketPair } from '../support/sockets.js';
import {
  closeReserved,
  getKeepAlive,
  getReusePort,
  keepAliveFor,
  keepAliveNative,
  keepDataSocketAlive,
  listenReserved,
  reservePort,
  reservePortNative,
  reusePortNative,
  setKeepAlive,
  setReusePort,
} from '../../src/transport/socket-options.js';

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

/** What a client gets on connecting: 'connected', or the error code. */
function dial(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

/** What another program gets on listening there: 'listening' (closed again at once), or the error code. */
function listenThere(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    server.listen({ host, port }, () => server.close(() => resolve('listening')));
  });
}

const openFds = () => readdirSync('/proc/self/fd').length;

describe('ports held without listening (spare data ports)', () => {
  it('the addon can (required in CI, where it must have been built by npm ci)', (t) => {
    if (!reservePortNative() && !process.env.CI) {
      t.skip('native addon not built here');
      return;
    }
    assert.equal(reservePortNative(), true);
  });

  it('a held port refuses connections (nothing accepted) and no other program can listen on it, IPv4 or dual-stack IPv6', { skip: !reservePortNative() }, async () => {
    const port = await freePort();
    for (const host of ['127.0.0.1', '::']) {
      const fd = reservePort(host, port);
      try {
        assert.equal(await dial('127.0.0.1', port), 'ECONNREFUSED', `${host}: refused, never accepted then reset`);
        assert.equal(await listenThere('127.0.0.1', port), 'EADDRINUSE', `${host}: another program cannot take 127.0.0.1:${port}`);
        assert.equal(await listenThere('::', port), 'EADDRINUSE', `${host}: nor [::]:${port}`);
        assert.throws(() => reservePort(host, port), (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE' && err.syscall === 'bind', 'nor can a second hold');
      } finally {
        closeReserved(fd);
      }
      assert.equal(await listenThere('127.0.0.1', port), 'listening', `${host}: closed, the port is free again`);
    }
  });

  it('a stream takes it: it listens on that socket and serves, even with connections of an earlier stream in TIME_WAIT; closed, it is refused again', { skip: !reservePortNative() }, async () => {
    const port = await freePort();
    const before = openFds();
    for (let round = 0; round < 3; round++) {
      const fd = reservePort('127.0.0.1', port);
      listenReserved(fd, 511);
      // The gateway closes first, as a release does: its side of each connection stays in TIME_WAIT.
      const listener = listenTcpOn(fd, { host: '127.0.0.1', port }, { highWaterMark: 65536 }, (s) => {
        s.on('error', () => {});
        // Data servers' sockets arrive paused: read, so that the peer's FIN is seen and the socket closes.
        s.resume();
        s.end(`round ${round}`);
      }, (err) => assert.fail(err));
      assert.equal(listener.address.port, port);
      for (let i = 0; i < 3; i++) {
        const got = await new Promise<string>((resolve, reject) => {
          let text = '';
          const s = connect({ host: '127.0.0.1', port });
          s.setEncoding('utf8');
          s.on('data', (d: string) => (text += d));
          s.on('end', () => resolve(text));
          s.on('error', reject);
        });
        assert.equal(got, `round ${round}`);
      }
      await listener.close();
      assert.equal(await dial('127.0.0.1', port), 'ECONNREFUSED');
    }
    assert.equal(openFds(), before, 'each descriptor closed once, with its listener');
  });

  it('errors: a name instead of an address, a bad descriptor; a failed listen closes the descriptor', { skip: !reservePortNative() }, () => {
    assert.throws(() => reservePort('localhost', 5100), (err: NodeJS.ErrnoException) => err.code === 'EINVAL');
    assert.throws(() => listenReserved(-1, 511), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
    // A descriptor that is not a socket: listen fails, and it is closed for the caller.
    const fd = openSync('/dev/null', 'r');
    assert.throws(() => listenReserved(fd, 511), (err: NodeJS.ErrnoException) => err.code === 'ENOTSOCK');
    assert.throws(() => fstatSync(fd), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
  });
});

describe('SO_REUSEPORT (listeners shared by the workers)', () => {
  it('the addon can (required in CI, where it must have been built by npm ci)', (t) => {
    if (!reusePortNative() && !process.env.CI) {
      t.skip('native addon not built here');
      return;
    }
    assert.equal(reusePortNative(), true);
  });

  it('a held port has it off and cannot be joined; set on the bound socket, a joiner of this user binds and both listen; anyone without it cannot; an unknown descriptor is EBADF', { skip: !reusePortNative() }, async () => {
    const port = await freePort();
    const fd = reservePort('127.0.0.1', port);
    let joiner: number | undefined;
    try {
      assert.equal(getReusePort(fd), false, 'held as a spare: off');
      assert.throws(() => reservePort('127.0.0.1', port, true), (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE', 'not joinable while off');
      setReusePort(fd);
      assert.equal(getReusePort(fd), true);
      joiner = reservePort('127.0.0.1', port, true);
      assert.equal(getReusePort(joiner), true);
      listenReserved(fd, 511);
      listenReserved(joiner, 511);
      assert.equal(await listenThere('127.0.0.1', port), 'EADDRINUSE', 'a listener without SO_REUSEPORT cannot take the port');
      assert.throws(() => reservePort('127.0.0.1', port), (err: NodeJS.ErrnoException) => err.code === 'EADDRINUSE', 'nor a hold without it');
    } finally {
      closeReserved(fd);
      if (joiner !== undefined) closeReserved(joiner);
    }
    assert.equal(await listenThere('127.0.0.1', port), 'listening', 'both closed: the port is free');
    assert.throws(() => setReusePort(-1), (err: NodeJS.ErrnoException) => err.code === 'EBADF');
  });
});
