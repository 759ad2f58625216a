// ReusedReadBuffer: reads land in one buffer; nothing is lost before the forwarder takes them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { ReusedReadBuffer } from '../../src/transport/index.js';

test('reads before anyone takes them are copied, one at most, and reading pauses until then', async () => {
  const payload = Buffer.alloc(1 << 20);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 13) & 0xff;
  const server = createServer((s) => s.end(payload)).listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const reads = new ReusedReadBuffer(Buffer.alloc(8192));
    const socket = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, onread: reads.onread });
    socket.resume(); // reading starts with nobody to take the data
    await once(socket, 'connect');
    await new Promise((r) => setTimeout(r, 200));
    const chunks: Buffer[] = [];
    let reused = true;
    const early = reads.take((n, buf) => {
      reused &&= buf.buffer === reads.buffer.buffer;
      chunks.push(Buffer.from(buf.subarray(0, n)));
      return true;
    });
    assert.equal(early.length, 1, 'one read was held, then reading paused');
    assert.notEqual(early[0]!.buffer, reads.buffer.buffer, 'the held read is a copy, not the reused buffer');
    socket.resume();
    await once(socket, 'end');
    assert.ok(reused, 'later reads land in the reused buffer');
    assert.ok(Buffer.concat([...early, ...chunks]).equals(payload));
  } finally {
    server.close();
  }
});
