import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import { once } from 'node:events';
import type { Address } from '../../src/protocol/address.js';
import { startProducer, type Producer } from '../../src/app/produce.js';
import { consume } from '../../src/app/consume.js';

const MiB = 2 ** 20;
const local = (port = 0): Address => ({ host: '127.0.0.1', port });
const name = (a: Address) => `${a.host}:${a.port}`;

/** A port that was free a moment ago and has nothing listening on it now. */
async function closedPort(): Promise<Address> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return local(port);
}

async function withProducer<T>(p: Producer, fn: (p: Producer) => Promise<T>): Promise<T> {
  try {
    return await fn(p);
  } finally {
    await p.close();
  }
}

test('3 listeners x 8 MiB verify, and count resolves done', async () => {
  const producer = await startProducer({ listen: [local(), local(), local()], bytes: 8 * MiB, seed: 11, count: 3 });
  await withProducer(producer, async (p) => {
    assert.equal(p.addresses.length, 3);
    for (const a of p.addresses) assert.ok(a.port > 0);
    assert.equal(new Set(p.addresses.map((a) => a.port)).size, 3);

    const progress: number[] = [];
    const result = await consume({
      connect: p.addresses,
      bytes: 8 * MiB,
      seed: 11,
      onProgress: (received, expected) => {
        assert.equal(expected, 24 * MiB);
        progress.push(received);
      },
    });
    assert.equal(result.bytes, 24 * MiB);
    assert.ok(result.seconds > 0);
    assert.deepEqual(
      result.perConnection,
      p.addresses.map((a) => ({ address: name(a), received: 8 * MiB })),
    );
    // The final report always says "everything".
    assert.equal(progress.at(-1), 24 * MiB);
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i]! > progress[i - 1]!);

    await p.done;
    assert.equal(p.served, 3);
    assert.equal(p.failed, 0);
  });
});

test('done resolves only after count connections were served', async () => {
  const producer = await startProducer({ listen: [local()], bytes: 64 * 1024, seed: 1, count: 2 });
  await withProducer(producer, async (p) => {
    let doneYet = false;
    void p.done.then(() => (doneYet = true));
    await consume({ connect: p.addresses, bytes: 64 * 1024, seed: 1 });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(doneYet, false);
    assert.equal(p.served, 1);
    await consume({ connect: p.addresses, bytes: 64 * 1024, seed: 1 });
    await p.done;
    assert.equal(p.served, 2);
  });
});

test('done rejects when the producer is closed before count connections', async () => {
  const p = await startProducer({ listen: [local()], bytes: 1024, seed: 1, count: 5 });
  await p.close();
  await assert.rejects(p.done, /closed after serving 0 of 5/);
});

test('a consumer with a different seed fails with a mismatch naming the connection and offset', async () => {
  await withProducer(await startProducer({ listen: [local()], bytes: 4 * MiB, seed: 1 }), async (p) => {
    const addr = name(p.addresses[0]!);
    await assert.rejects(consume({ connect: p.addresses, bytes: 4 * MiB, seed: 2 }), (err: Error) => {
      assert.match(err.message, new RegExp(`${addr}.*mismatch at byte offset 0\\b`));
      return true;
    });
  });
});

test('a consumer expecting more bytes than sent fails with a short-stream error', async () => {
  await withProducer(await startProducer({ listen: [local()], bytes: 1 * MiB, seed: 3 }), async (p) => {
    const addr = name(p.addresses[0]!);
    await assert.rejects(consume({ connect: p.addresses, bytes: 2 * MiB, seed: 3 }), (err: Error) => {
      assert.match(err.message, new RegExp(`${addr}.*short stream: received ${MiB} of expected ${2 * MiB} bytes`));
      return true;
    });
  });
});

test('a consumer expecting fewer bytes than sent fails with an overrun', async () => {
  await withProducer(await startProducer({ listen: [local()], bytes: 2 * MiB, seed: 3 }), async (p) => {
    await assert.rejects(consume({ connect: p.addresses, bytes: 1 * MiB, seed: 3 }), /overrun/);
  });
});

test('connecting to a closed port fails with a message naming the address', async () => {
  const addr = await closedPort();
  await assert.rejects(consume({ connect: [addr], bytes: 1024, seed: 1 }), (err: Error) => {
    assert.ok(err.message.includes(name(addr)), err.message);
    assert.match(err.message, /refused/);
    return true;
  });
});

test('one failing connection fails the whole run and drops the others', async () => {
  // A large stream on the good address: the run must end on the bad one, not wait for this.
  await withProducer(await startProducer({ listen: [local()], bytes: 64 * 2 ** 30, seed: 1 }), async (p) => {
    const bad = await closedPort();
    await assert.rejects(consume({ connect: [p.addresses[0]!, bad], bytes: 64 * 2 ** 30, seed: 1 }), new RegExp(name(bad)));
  });
});

test('close() stops listening and drops live connections', async () => {
  const p = await startProducer({ listen: [local()], bytes: 64 * 2 ** 30, seed: 5 });
  const addr = p.addresses[0]!;
  let closing: Promise<void> | undefined;
  const run = consume({
    connect: [addr],
    bytes: 64 * 2 ** 30,
    seed: 5,
    // Close the producer mid-stream, once data is flowing.
    onProgress: (received) => {
      if (received > 0) closing ??= p.close();
    },
  });
  await assert.rejects(run, (err: Error) => {
    assert.ok(err.message.includes(name(addr)), err.message);
    assert.match(err.message, /reset|short stream|closed early/);
    return true;
  });
  await closing;
  await assert.rejects(consume({ connect: [addr], bytes: 1, seed: 5 }), /refused/);
});

test('the producer survives a peer that drops mid-stream and keeps serving', async () => {
  const errors: string[] = [];
  const producer = await startProducer({
    listen: [local()],
    bytes: 256 * MiB,
    seed: 9,
    onConnectionError: (err, remote) => errors.push(`${remote}: ${err.message}`),
  });
  await withProducer(producer, async (p) => {
    const s = connect(p.addresses[0]!.port, '127.0.0.1');
    await once(s, 'data');
    s.destroy();
    while (p.failed === 0) await new Promise((r) => setTimeout(r, 10));
    assert.equal(errors.length, 1);
    assert.equal(p.served, 0);
    const ok = await consume({ connect: p.addresses, bytes: 256 * MiB, seed: 9 });
    assert.equal(ok.bytes, 256 * MiB);
  });
});

test('a port in use rejects startProducer with a message naming the address', async () => {
  await withProducer(await startProducer({ listen: [local()], bytes: 1, seed: 1 }), async (p) => {
    const taken = p.addresses[0]!;
    await assert.rejects(startProducer({ listen: [local(), taken], bytes: 1, seed: 1 }), (err: Error) => {
      assert.ok(err.message.includes(name(taken)), err.message);
      assert.match(err.message, /in use.*port 0/);
      return true;
    });
  });
});
