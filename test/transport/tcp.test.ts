// readInto: an accepted connection moved onto a socket that reads into one reused
// buffer, on real loopback sockets. What must hold: the bytes land in that buffer
// and nowhere else, the descriptor and its SO_LINGER go along, a reset still
// resets, and the listener's own socket (which the server counts, and the data
// server watches) closes with the new one.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { listenTcp, readInto, type TcpListener } from '../../src/transport/tcp.js';
import { ReusedReadBuffer, RingReadBuffer } from '../../src/transport/reads.js';
import { getLinger, lingerAvailable, resetOnClose, socketFd } from '../../src/transport/linger.js';
import { outcome } from '../support/sockets.js';

const KiB = 1024;
const TIMEOUT = 30_000;

/** A listener and one connection to it: `raw` as net.Server gave it (paused), `peer` the client. */
async function accepted(): Promise<{ listener: TcpListener; raw: Socket; peer: Socket }> {
  let got!: (s: Socket) => void;
  const arrival = new Promise<Socket>((r) => (got = r));
  const listener = await listenTcp({ host: '127.0.0.1', port: 0 }, { highWaterMark: 64 * KiB }, (s) => {
    s.on('error', () => {});
    got(s);
  });
  const peer = connect({ host: '127.0.0.1', port: listener.address.port, allowHalfOpen: true });
  peer.on('error', () => {});
  const [raw] = await Promise.all([arrival, once(peer, 'connect')]);
  return { listener, raw, peer };
}

function closed(s: Socket): Promise<void> {
  return s.closed ? Promise.resolve() : new Promise((r) => s.once('close', () => r()));
}

describe('readInto (an accepted connection read into a reused buffer)', () => {
  it('reads every byte into the one buffer, in order, and keeps the descriptor with its SO_LINGER', { timeout: TIMEOUT }, async () => {
    const { listener, raw, peer } = await accepted();
    if (lingerAvailable) resetOnClose(raw);
    const fd = socketFd(raw);
    const memory = Buffer.alloc(16 * KiB);
    const reads = new ReusedReadBuffer(memory);
    const socket = readInto(raw, reads, 64 * KiB);
    assert.notEqual(socket, raw);
    assert.equal(socketFd(raw), undefined, 'the listener-made socket keeps no handle');
    assert.equal(socketFd(socket), fd);
    if (lingerAvailable) assert.deepEqual(getLinger(fd!), { on: true, seconds: 0 });
    assert.equal(socket.remotePort, peer.localPort);

    const sent = randomBytes(3 * 1024 * KiB + 7);
    const hash = createHash('sha256');
    let bytes = 0;
    let elsewhere = 0;
    const early = reads.take((n, buffer) => {
      if (buffer.buffer !== memory.buffer) elsewhere++;
      bytes += n;
      hash.update(buffer.subarray(0, n));
      return true;
    });
    assert.deepEqual(early, []);
    socket.on('data', () => assert.fail('no Buffer per chunk: reads go to the callback'));
    const ended = once(socket, 'end');
    socket.resume();
    peer.end(sent);
    await ended;
    assert.equal(elsewhere, 0);
    assert.equal(bytes, sent.length);
    assert.equal(hash.digest('hex'), createHash('sha256').update(sent).digest('hex'));

    // Closing the new socket closes the old one; the server's close() waits for it.
    const rawClosed = closed(raw);
    let serverClosed = false;
    const listenerClosed = listener.close().then(() => (serverClosed = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(serverClosed, false, 'the connection still counts for the server');
    socket.end();
    await Promise.all([rawClosed, listenerClosed, closed(socket)]);
    peer.destroy();
  });

  it('passes a peer reset on as an error, and its own reset (abort) to the peer', { timeout: TIMEOUT }, async () => {
    const a = await accepted();
    const s1 = readInto(a.raw, new ReusedReadBuffer(Buffer.alloc(16 * KiB)), 64 * KiB);
    let error: NodeJS.ErrnoException | undefined;
    s1.on('error', (e) => (error = e));
    s1.resume();
    a.peer.resetAndDestroy();
    await closed(s1);
    assert.equal(error?.code, 'ECONNRESET');
    await closed(a.raw);
    await a.listener.close();

    const b = await accepted();
    const s2 = readInto(b.raw, new ReusedReadBuffer(Buffer.alloc(16 * KiB)), 64 * KiB);
    s2.on('error', () => {});
    const seen = outcome(b.peer);
    s2.resetAndDestroy();
    assert.equal((await seen).end, 'ECONNRESET');
    await closed(b.raw);
    await b.listener.close();
  });

  it('closes the new socket when the old one is destroyed (a release destroys every socket it knows)', { timeout: TIMEOUT }, async () => {
    const { listener, raw, peer } = await accepted();
    if (lingerAvailable) resetOnClose(raw);
    const socket = readInto(raw, new ReusedReadBuffer(Buffer.alloc(16 * KiB)), 64 * KiB);
    socket.on('error', () => {});
    const seen = outcome(peer);
    raw.destroy();
    await closed(socket);
    assert.equal(socket.destroyed, true);
    // With SO_LINGER 0 (moved along with the descriptor), that close is a reset.
    if (lingerAvailable) assert.equal((await seen).end, 'ECONNRESET');
    else peer.destroy();
    await listener.close();
  });

  it('leaves a closed connection as it is, and refuses one read from already or a ring', { timeout: TIMEOUT }, async () => {
    const a = await accepted();
    a.raw.destroy();
    assert.equal(readInto(a.raw, new ReusedReadBuffer(Buffer.alloc(KiB)), 64 * KiB), a.raw);
    a.peer.destroy();
    await a.listener.close();

    const b = await accepted();
    assert.throws(() => readInto(b.raw, new RingReadBuffer(Buffer.alloc(64 * KiB)), 64 * KiB), /ReusedReadBuffer/);
    b.raw.resume();
    b.peer.write('x');
    await once(b.raw, 'data');
    assert.throws(() => readInto(b.raw, new ReusedReadBuffer(Buffer.alloc(KiB)), 64 * KiB), /read from already/);
    b.raw.destroy();
    b.peer.destroy();
    await b.listener.close();
  });
});
