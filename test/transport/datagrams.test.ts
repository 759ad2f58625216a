// A UDP stream's WAN leg: datagrams framed inside the stream's TLS connections,
// real sockets and real TLS with per-stream credentials. Over TLS nothing is lost,
// duplicated or reordered within a flow; what does not fit is dropped and counted;
// a hostile peer loses its connection, never the gateway its memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { Socket } from 'node:net';
import { TlsTransport, listenTcp, type TcpListener } from '../../src/transport/index.js';
import { FramedDatagramCarrier, type DatagramCarrierOptions } from '../../src/transport/datagrams.js';
import { DATAGRAM_HEADER, MAX_DATAGRAM, dataHeader, writeDatagramHeader, writeFlowEnd } from '../../src/transport/frames.js';
import { createStreamCredentials } from '../../src/security/stream-credentials.js';
import type { StreamCredentials__Output as StreamCredentials } from '../../src/protocol/generated/scistream/StreamCredentials.js';
import { resetOnClose } from '../../src/transport/linger.js';
import { untilTrue } from '../support/until.js';

const OPTS = { highWaterMark: 256 * 1024 };
const transport = (c: StreamCredentials) => new TlsTransport({ cert: c.certificate, key: c.private_key, peerCert: c.peer_certificate });

interface Leg {
  consumer: FramedDatagramCarrier;
  producer: FramedDatagramCarrier;
  /** The consumer side's raw sockets, per slot. */
  dialed: Socket[];
  /** The producer side's accepted sockets, per slot. */
  accepted: Socket[];
  close(): Promise<void>;
}

/** n TLS connections between two carriers, slot i to listener i, as the gateways set them up. */
async function leg(n: number, options: DatagramCarrierOptions = {}, attachProducer = true, attachConsumer = true): Promise<Leg> {
  const c = await createStreamCredentials('udp');
  const prod = transport(c.producerSide);
  const cons = transport(c.consumerSide);
  const producer = new FramedDatagramCarrier(n, options);
  const consumer = new FramedDatagramCarrier(n, options);
  const accepted: Socket[] = [];
  const listeners: TcpListener[] = [];
  const ready: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    let done!: () => void;
    ready.push(new Promise((r) => (done = r)));
    listeners.push(
      await listenTcp({ host: '127.0.0.1', port: 0 }, OPTS, (raw) => {
        void prod.accept(raw, OPTS).then((s) => {
          accepted[i] = s;
          if (attachProducer) producer.attach(i, s);
          done();
        });
      }),
    );
  }
  const dialed = await Promise.all(listeners.map((l) => cons.connect(l.address, OPTS)));
  if (attachConsumer) dialed.forEach((s, i) => consumer.attach(i, s));
  else for (const s of dialed) s.on('error', () => {});
  await Promise.all(ready);
  return {
    consumer,
    producer,
    dialed,
    accepted,
    async close() {
      consumer.close();
      producer.close();
      for (const s of [...dialed, ...accepted]) s.destroy();
      await Promise.all(listeners.map((l) => l.close()));
    },
  };
}

/** A numbered, checksummed datagram: seq (4 bytes), crc32 of the rest (4 bytes), random bytes. Sizes 8..65,507. */
function datagram(seq: number, size: number): Buffer {
  const d = randomBytes(size);
  d.writeUInt32BE(seq, 0);
  d.writeUInt32BE(crc32(d.subarray(8)), 4);
  return d;
}

interface Tally {
  got: number;
  corrupt: number;
  dup: number;
  reordered: number;
  bytes: number;
}

/** Receives numbered datagrams per flow, counting corruption, duplicates and reordering. */
function tally(carrier: FramedDatagramCarrier): Tally {
  const t: Tally = { got: 0, corrupt: 0, dup: 0, reordered: 0, bytes: 0 };
  const next = new Map<number, number>();
  carrier.onDatagram((flow, d) => {
    t.got++;
    t.bytes += d.length;
    if (d.length < 8 || d.readUInt32BE(4) !== crc32(d.subarray(8))) {
      t.corrupt++;
      return;
    }
    const seq = d.readUInt32BE(0);
    const want = next.get(flow) ?? 0;
    if (seq < want) t.dup++;
    else if (seq > want) t.reordered++;
    next.set(flow, seq + 1);
  });
  return t;
}

async function transfer(n: number, flows: number, perFlow: number): Promise<void> {
  const l = await leg(n, { maxQueuedBytes: 64 * 1024 * 1024 });
  try {
    const atProducer = tally(l.producer);
    const atConsumer = tally(l.consumer);
    let sent = 0;
    let sentBack = 0;
    for (let seq = 0; seq < perFlow; seq++) {
      for (let flow = 0; flow < flows; flow++) {
        // Random sizes over the whole range, both ends of it included now and then.
        const size = seq === 0 ? MAX_DATAGRAM : seq === 1 ? 8 : randomInt(8, MAX_DATAGRAM + 1);
        assert.equal(l.consumer.send(flow, datagram(seq, size)), true);
        sent++;
        // Replies the other way on the same flows, smaller.
        assert.equal(l.producer.send(flow, datagram(seq, randomInt(8, 1500))), true);
        sentBack++;
      }
      // Let the receivers keep up: the test is about integrity, not about drops.
      if (seq % 20 === 19) await untilTrue('the batch to arrive', () => atProducer.got === sent && atConsumer.got === sentBack);
    }
    await untilTrue('every datagram to arrive', () => atProducer.got === sent && atConsumer.got === sentBack);
    for (const t of [atProducer, atConsumer]) assert.deepEqual({ corrupt: t.corrupt, dup: t.dup, reordered: t.reordered }, { corrupt: 0, dup: 0, reordered: 0 });
    assert.equal(l.consumer.counters.datagramsOut, sent);
    assert.equal(l.producer.counters.datagramsIn, sent);
    assert.equal(l.producer.counters.bytesIn, atProducer.bytes);
    assert.deepEqual(l.consumer.counters.drops, { queueFull: 0, tooLarge: 0, noFlow: 0, noConnection: 0 });
    // Nothing more arrives later (no duplicates in flight).
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(atProducer.got, sent);
  } finally {
    await l.close();
  }
}

test('numbered, checksummed datagrams of random sizes up to 65,507 over one TLS connection: no loss, no duplicate, order kept', async () => {
  await transfer(1, 3, 120);
});

test('over four TLS connections, flows side by side (flow % 4): no loss, no duplicate, order kept per flow', async () => {
  await transfer(4, 8, 60);
});

test('each connection carries only its flows (flow % n)', async () => {
  const l = await leg(4);
  try {
    const seen = new Map<number, number>();
    l.producer.onDatagram((flow) => seen.set(flow, (seen.get(flow) ?? 0) + 1));
    const before = l.accepted.map((s) => s.bytesRead);
    for (let i = 0; i < 10; i++) l.consumer.send(6, datagram(i, 1000));
    await untilTrue('flow 6', () => seen.get(6) === 10);
    const grown = l.accepted.map((s, i) => s.bytesRead - before[i]!);
    assert.ok(grown[2]! >= 10 * (1000 + DATAGRAM_HEADER), `slot 2 carried flow 6 (${grown})`);
    for (const i of [0, 1, 3]) assert.ok(grown[i]! < 1000, `slot ${i} carried at most heartbeats (${grown})`);
  } finally {
    await l.close();
  }
});

test('a peer that stops reading: sends beyond the queue bound are dropped and counted, memory stays bounded', async () => {
  const maxQueuedBytes = 1024 * 1024;
  // The producer side accepts but never reads.
  const l = await leg(1, { maxQueuedBytes }, false);
  try {
    const total = 2000;
    let ok = 0;
    const d = Buffer.alloc(60_000, 1);
    for (let i = 0; i < total; i++) {
      if (l.consumer.send(0, d)) ok++;
      assert.ok(l.dialed[0]!.writableLength <= maxQueuedBytes + d.length + DATAGRAM_HEADER, 'queue bounded');
    }
    const c = l.consumer.counters;
    assert.ok(c.drops.queueFull > 0, 'drops counted');
    assert.equal(c.datagramsOut, ok);
    assert.equal(c.datagramsOut + c.drops.queueFull, total);
    assert.equal(l.consumer.send(0, Buffer.alloc(MAX_DATAGRAM + 1)), false);
    assert.equal(c.drops.tooLarge, 1);
  } finally {
    await l.close();
  }
});

/** A peer holding the stream's consumer credentials that writes raw bytes to a producer carrier (n slots, slot 0). */
async function hostile(bytes: Buffer, n = 1, end = false, options: DatagramCarrierOptions = {}) {
  const l = await leg(n, options);
  const got: number[] = [];
  l.producer.onDatagram((flow) => got.push(flow));
  const ends: number[] = [];
  l.producer.onFlowEnd((flow) => ends.push(flow));
  const broken: string[] = [];
  l.producer.onBroken((_i, cause) => broken.push(cause));
  const s = l.dialed[0]!;
  const outcome = new Promise<string>((resolve) => {
    s.removeAllListeners('data');
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.on('close', () => resolve('close'));
  });
  if (end) s.end(bytes);
  else s.write(bytes);
  return { l, got, ends, broken, outcome };
}

test('hostile frames reset the connection and are counted: oversize, unknown type, DATA, garbage, wrong connection', async () => {
  const oversize = Buffer.alloc(8);
  oversize.writeUInt32BE(((0x55 << 24) | (MAX_DATAGRAM + 5)) >>> 0, 0);
  const wrongSlot = Buffer.alloc(DATAGRAM_HEADER + 1);
  writeDatagramHeader(wrongSlot, 0, 1, 1);
  const cases: [string, Buffer, number][] = [
    ['a datagram frame longer than 65,507 + header', oversize, 1],
    ['the largest 24-bit frame', Buffer.from([0x55, 0xff, 0xff, 0xff]), 1],
    ['an unknown type', Buffer.from([0x17, 0, 0, 1, 0]), 1],
    ['a TCP DATA frame', Buffer.concat([dataHeader(3), Buffer.from('abc')]), 1],
    ['garbage', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 1],
    ['a datagram frame shorter than its flow id', Buffer.from([0x55, 0, 0, 3, 0, 0, 0]), 1],
    ['a flow-end frame with a payload', Buffer.from([0x46, 0, 0, 5, 0, 0, 0, 0, 0]), 1],
    ['flow 1 on connection 0 of 2', wrongSlot, 2],
  ];
  for (const [name, bytes, n] of cases) {
    const h = await hostile(bytes, n);
    try {
      await untilTrue(`${name}: counted`, () => h.l.producer.counters.protocolErrors === 1, 5000);
      const end = await h.outcome;
      assert.ok(['ECONNRESET', 'close', 'EPIPE'].includes(end), `${name}: the peer's connection is reset (${end})`);
      assert.deepEqual(h.got, [], `${name}: nothing delivered`);
      assert.equal(h.l.producer.attached(0), false, `${name}: the slot is free again`);
      assert.match(h.broken[0] ?? '', /malformed/, name);
    } finally {
      await h.l.close();
    }
  }
});

test('a truncated datagram (its connection ends in the middle) is not delivered; the break is counted', async () => {
  const head = Buffer.alloc(DATAGRAM_HEADER);
  writeDatagramHeader(head, 0, 0, 60_000);
  const h = await hostile(Buffer.concat([head, Buffer.alloc(100, 7)]), 1, true);
  try {
    await untilTrue('the break', () => h.l.producer.counters.brokenConnections === 1, 5000);
    assert.deepEqual(h.got, []);
    assert.match(h.broken[0]!, /truncated/);
  } finally {
    await h.l.close();
  }
});

test('a flood of flow ids stays within maxFlows: the rest is dropped as no-flow, the connection stays', async () => {
  const maxFlows = 100;
  const flood = 10_000;
  const wire = Buffer.alloc(flood * (DATAGRAM_HEADER + 1));
  for (let i = 0; i < flood; i++) writeDatagramHeader(wire, i * (DATAGRAM_HEADER + 1), i * 7 + 3, 1);
  let told = 0;
  const h = await hostile(wire, 1, false, {
    maxFlows,
    droppedIncoming: (cause) => {
      if (cause === 'no-flow') told++;
    },
  });
  try {
    await untilTrue('the flood counted', () => h.l.producer.counters.datagramsIn + h.l.producer.counters.drops.noFlow === flood, 5000);
    assert.equal(h.got.length, maxFlows);
    assert.equal(h.l.producer.counters.drops.noFlow, flood - maxFlows);
    assert.equal(told, flood - maxFlows, 'each incoming drop is told (the UDP stream counts it)');
    assert.equal(h.l.producer.counters.protocolErrors, 0);
    // Ending flows makes room again.
    const fe = Buffer.alloc(DATAGRAM_HEADER * 2 + DATAGRAM_HEADER + 1);
    writeFlowEnd(fe, 0, 3);
    writeFlowEnd(fe, DATAGRAM_HEADER, 10);
    writeDatagramHeader(fe, DATAGRAM_HEADER * 2, 999_999, 1);
    h.l.dialed[0]!.write(fe);
    await untilTrue('the new flow', () => h.got.includes(999_999), 5000);
    assert.deepEqual(h.ends, [3, 10]);
    assert.equal(h.l.producer.attached(0), true);
  } finally {
    await h.l.close();
  }
});

test('flow end propagates; a lost connection ends its flows on both sides; close() ends the other side cleanly', async () => {
  const l = await leg(2);
  try {
    const ended = { producer: [] as number[], consumer: [] as number[] };
    l.producer.onFlowEnd((f) => ended.producer.push(f));
    l.consumer.onFlowEnd((f) => ended.consumer.push(f));
    const got: number[] = [];
    l.producer.onDatagram((f) => got.push(f));
    for (const f of [0, 1, 2, 3]) l.consumer.send(f, Buffer.from([f]));
    // An empty datagram is a datagram too.
    l.consumer.send(5, Buffer.alloc(0));
    await untilTrue('five flows', () => got.length === 5);
    l.consumer.endFlow(2);
    await untilTrue('flow 2 ended at the producer', () => ended.producer.includes(2));
    assert.deepEqual(ended.consumer, [], 'the side that ends a flow is not told');
    // Connection 1 (flows 1, 3, 5) is reset under the carriers.
    resetOnClose(l.accepted[1]!);
    l.accepted[1]!.destroy();
    await untilTrue('flows of connection 1 ended on both sides', () => [1, 3, 5].every((f) => ended.producer.includes(f) && ended.consumer.includes(f)));
    assert.equal(l.consumer.send(3, Buffer.from([3])), false, 'no connection for flow 3');
    assert.equal(l.consumer.counters.drops.noConnection, 1);
    assert.equal(l.consumer.send(4, Buffer.from([4])), true, 'connection 0 still carries');
    const causes: string[] = [];
    l.producer.onBroken((_i, cause) => causes.push(cause));
    l.consumer.close();
    await untilTrue('the producer told of the clean end', () => causes.length === 1);
    assert.match(causes[0]!, /peer ended/);
    await untilTrue('flow 0 and 4 ended at the producer', () => ended.producer.includes(0) && ended.producer.includes(4));
    await untilTrue('the sockets closed', () => l.dialed.every((s) => s.destroyed) && l.accepted.every((s) => s.destroyed));
    assert.equal(l.producer.counters.protocolErrors, 0);
  } finally {
    await l.close();
  }
});

test('heartbeats keep an idle leg up; a silent peer is taken for dead after deadAfterMs and counted', async () => {
  const idle = await leg(2, { deadAfterMs: 1000, heartbeatMs: 200 });
  try {
    await new Promise((r) => setTimeout(r, 2500));
    for (const c of [idle.consumer, idle.producer]) {
      assert.equal(c.attached(0) && c.attached(1), true, 'idle but alive');
      assert.equal(c.counters.brokenConnections, 0);
    }
  } finally {
    await idle.close();
  }
  // The consumer side's connection never reaches a carrier: nothing, not even a heartbeat, comes from it.
  const silent = await leg(1, { deadAfterMs: 1000, heartbeatMs: 200 }, true, false);
  try {
    const causes: string[] = [];
    silent.producer.onBroken((_i, cause) => causes.push(cause));
    silent.dialed[0]!.resume();
    await untilTrue('the silent peer taken for dead', () => causes.length === 1, 5000);
    assert.match(causes[0]!, /nothing received for 1 s/);
    assert.equal(silent.producer.counters.brokenConnections, 1);
    assert.equal(silent.producer.attached(0), false);
  } finally {
    await silent.close();
  }
});
