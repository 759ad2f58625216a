// A UDP stream's encrypted WAN leg between two gateways' pieces: the consumer side
// dials one TLS connection per producer listener and keeps them up, the producer
// side takes them in by listener, flows keep to their listener's connection.
// Real TCP listeners, real TLS with per-stream credentials.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { connect as tcpConnect } from 'node:net';
import { TCP_CONNECTION_FRAME, TlsTransport, dataHeader, listenTcp, type TcpListener } from '../../src/transport/index.js';
import { resetOnClose } from '../../src/transport/linger.js';
import { createStreamCredentials } from '../../src/security/stream-credentials.js';
import type { StreamCredentials__Output as StreamCredentials } from '../../src/protocol/generated/scistream/StreamCredentials.js';
import { FlowIds, UdpWanAcceptor, UdpWanDialer, bridge, listenerOf, type UdpWanOptions } from '../../src/s2ds/udp/wan.js';
import { untilTrue } from '../support/until.js';

const transport = (c: StreamCredentials) => new TlsTransport({ cert: c.certificate, key: c.private_key, peerCert: c.peer_certificate });
const OPTS: UdpWanOptions = { highWaterMark: 256 * 1024, redialFirstMs: 100, redialMaxMs: 400, handshakeTimeoutMs: 2000 };

/** The producer gateway's side: n TCP listeners feeding an acceptor. */
async function producerSide(c: StreamCredentials, n: number, problems: string[], tcp: (socket: Socket) => void = (s) => s.destroy()) {
  const acceptor = new UdpWanAcceptor(transport(c), n, { ...OPTS, onProblem: (_i, p) => problems.push(p) });
  const raws = new Set<Socket>();
  const listeners: TcpListener[] = [];
  for (let i = 0; i < n; i++) {
    listeners.push(
      await listenTcp({ host: '127.0.0.1', port: 0 }, OPTS, (raw) => {
        raws.add(raw);
        raw.once('close', () => raws.delete(raw));
        acceptor.accept(i, raw, { carrier: noop, tcp, refused: noop });
      }),
    );
  }
  return {
    acceptor,
    addresses: listeners.map((l) => l.address),
    raws,
    async close() {
      acceptor.close();
      await Promise.all(listeners.map((l) => l.close()));
      await untilTrue('the producer side closed its connections', () => raws.size === 0, 10_000);
    },
  };
}

test('the consumer side dials each producer listener once; flows of listener i ride connection i, replies come back', async () => {
  const c = await createStreamCredentials('udp-wan');
  const problems: string[] = [];
  const prod = await producerSide(c.producerSide, 3, problems);
  const dialer = new UdpWanDialer(transport(c.consumerSide), prod.addresses, OPTS);
  try {
    await dialer.ready(5000);
    await untilTrue('the producer side took 3 connections', () => [0, 1, 2].every((i) => prod.acceptor.carrier.attached(i)));
    // The producer echoes each datagram with the listener it arrived for.
    prod.acceptor.carrier.onDatagram((flow, d) => prod.acceptor.carrier.send(flow, Buffer.concat([Buffer.from([listenerOf(flow, 3)]), d])));
    const ids = new FlowIds(3, 2);
    const flows = [0, 1, 2, 0, 1, 2].map((listener) => ({ listener, id: ids.open(listener)! }));
    assert.deepEqual(flows.map((f) => f.id), [0, 1, 2, 3, 4, 5]);
    assert.equal(ids.open(0), undefined, 'two flows per listener at most');
    const replies = new Map<number, Buffer[]>();
    dialer.carrier.onDatagram((flow, d) => replies.set(flow, [...(replies.get(flow) ?? []), d]));
    for (const f of flows) for (let k = 0; k < 5; k++) assert.equal(dialer.carrier.send(f.id, Buffer.from(`flow ${f.id} #${k}`)), true);
    await untilTrue('every reply', () => flows.every((f) => replies.get(f.id)?.length === 5));
    for (const f of flows) {
      assert.deepEqual(
        replies.get(f.id)!.map((d) => [d[0], d.subarray(1).toString()]),
        [0, 1, 2, 3, 4].map((k) => [f.listener, `flow ${f.id} #${k}`]),
        `flow ${f.id}: its listener's connection, in order`,
      );
    }
    ids.release(3);
    assert.equal(ids.open(0), 3, 'an ended flow\'s id is reused');
    assert.deepEqual(problems, []);
  } finally {
    dialer.close();
    await prod.close();
  }
});

test('a lost connection ends its flows on both sides and is dialed again; traffic resumes on it', async () => {
  const c = await createStreamCredentials('udp-wan');
  const problems: string[] = [];
  const prod = await producerSide(c.producerSide, 2, problems);
  const consumerProblems: string[] = [];
  const dialer = new UdpWanDialer(transport(c.consumerSide), prod.addresses, { ...OPTS, onProblem: (_i, p) => consumerProblems.push(p) });
  try {
    await dialer.ready(5000);
    const got: number[] = [];
    prod.acceptor.carrier.onDatagram((flow) => got.push(flow));
    const endedAtProducer: number[] = [];
    const endedAtConsumer: number[] = [];
    prod.acceptor.carrier.onFlowEnd((f) => endedAtProducer.push(f));
    dialer.carrier.onFlowEnd((f) => endedAtConsumer.push(f));
    for (const f of [0, 1, 3]) dialer.carrier.send(f, Buffer.from([f]));
    await untilTrue('three flows at the producer', () => got.length === 3);
    // Connection 1 is reset on the path (from the producer's side).
    const s = prod.acceptor.carrier.connection(1)!;
    resetOnClose(s);
    s.destroy();
    await untilTrue('flows 1 and 3 ended on both sides', () => [1, 3].every((f) => endedAtProducer.includes(f) && endedAtConsumer.includes(f)));
    assert.deepEqual([...endedAtProducer, ...endedAtConsumer].filter((f) => f === 0), [], 'flow 0 (connection 0) goes on');
    await untilTrue('connection 1 dialed again', () => dialer.carrier.attached(1) && prod.acceptor.carrier.attached(1), 10_000);
    dialer.carrier.send(5, Buffer.from([5]));
    dialer.carrier.send(0, Buffer.from([0]));
    await untilTrue('flow 5 (connection 1) and flow 0 (connection 0)', () => got.includes(5) && got.filter((f) => f === 0).length === 2);
    assert.ok(consumerProblems.length >= 1, 'the loss was told');
  } finally {
    dialer.close();
    await prod.close();
  }
});

test("another stream's gateway, a plain TCP peer and a handshake flood get nothing and displace nothing", async () => {
  const c = await createStreamCredentials('udp-wan');
  const other = await createStreamCredentials('other');
  const problems: string[] = [];
  const prod = await producerSide(c.producerSide, 1, problems);
  const dialer = new UdpWanDialer(transport(c.consumerSide), prod.addresses, OPTS);
  const intruder = new UdpWanDialer(transport(other.consumerSide), prod.addresses, OPTS);
  const idle: Socket[] = [];
  try {
    await dialer.ready(5000);
    await untilTrue('a refusal', () => problems.some((p) => /did not prove the stream's credentials/.test(p)), 10_000);
    intruder.close();
    // Plain TCP connections that never handshake: at most 4 pending, the rest reset at once.
    for (let i = 0; i < 20; i++) {
      const s = tcpConnect(prod.addresses[0]!.port, '127.0.0.1');
      s.on('error', () => {});
      idle.push(s);
    }
    await untilTrue('the flood beyond 4 pending is reset', () => idle.filter((s) => s.destroyed).length >= 16, 5000);
    const got: number[] = [];
    prod.acceptor.carrier.onDatagram((flow) => got.push(flow));
    assert.equal(dialer.carrier.send(0, Buffer.from('still here')), true);
    await untilTrue('the real peer still carries', () => got.length === 1);
    assert.equal(prod.acceptor.carrier.counters.protocolErrors, 0);
  } finally {
    for (const s of idle) s.destroy();
    intruder.close();
    dialer.close();
    await prod.close();
  }
});

test('an authenticated connection says what it is: TCP_CONNECTION goes on as a TCP connection, silence is refused; neither displaces the carrier', async () => {
  const c = await createStreamCredentials('udp-wan');
  const problems: string[] = [];
  const tcpConnections: Socket[] = [];
  const prod = await producerSide(c.producerSide, 1, problems, (s) => tcpConnections.push(s));
  const dialer = new UdpWanDialer(transport(c.consumerSide), prod.addresses, OPTS);
  const opened: Socket[] = [];
  try {
    await dialer.ready(5000);
    await untilTrue('the carrier attached', () => prod.acceptor.carrier.attached(0));
    // A TCP connection of the stream: its first frame, then a TCP stream's frames.
    const tcp = await transport(c.consumerSide).connect(prod.addresses[0]!, { highWaterMark: 65536 });
    tcp.on('error', noop);
    opened.push(tcp);
    tcp.write(Buffer.concat([TCP_CONNECTION_FRAME, dataHeader(5), Buffer.from('hello')]));
    await untilTrue('handed on as a TCP connection', () => tcpConnections.length === 1);
    const rest: Buffer[] = [];
    tcpConnections[0]!.on('data', (d: Buffer) => rest.push(d));
    await untilTrue('the frames after the first one, untouched', () => Buffer.concat(rest).length === 9);
    assert.deepEqual(Buffer.concat(rest), Buffer.concat([dataHeader(5), Buffer.from('hello')]));
    // Authenticated but silent: refused once the handshake timeout has passed again.
    const silent = await transport(c.consumerSide).connect(prod.addresses[0]!, { highWaterMark: 65536 });
    silent.on('error', noop);
    opened.push(silent);
    await untilTrue('the silent connection refused', () => problems.some((p) => /sent no frame within 2 s of its handshake/.test(p)), 5000);
    await untilTrue('and closed', () => silent.destroyed || silent.readableEnded, 5000);
    const got: number[] = [];
    prod.acceptor.carrier.onDatagram((flow) => got.push(flow));
    assert.equal(dialer.carrier.send(0, Buffer.from('still here')), true);
    await untilTrue('the carrier still carries', () => got.length === 1);
    assert.equal(prod.acceptor.carrier.counters.protocolErrors, 0);
  } finally {
    for (const s of [...opened, ...tcpConnections]) s.destroy();
    dialer.close();
    await prod.close();
  }
});

test('bridge: a gateway in the middle passes flows and their ends on, both ways', async () => {
  const c1 = await createStreamCredentials('leg1');
  const c2 = await createStreamCredentials('leg2');
  const problems: string[] = [];
  const middle = await producerSide(c1.producerSide, 2, problems);
  const far = await producerSide(c2.producerSide, 2, problems);
  const near = new UdpWanDialer(transport(c1.consumerSide), middle.addresses, OPTS);
  const onward = new UdpWanDialer(transport(c2.consumerSide), far.addresses, OPTS);
  try {
    await Promise.all([near.ready(5000), onward.ready(5000)]);
    bridge(middle.acceptor.carrier, onward.carrier);
    far.acceptor.carrier.onDatagram((flow, d) => far.acceptor.carrier.send(flow, Buffer.concat([d, Buffer.from('!')])));
    const ended: number[] = [];
    far.acceptor.carrier.onFlowEnd((f) => ended.push(f));
    const replies: string[] = [];
    near.carrier.onDatagram((flow, d) => replies.push(`${flow}:${d.toString()}`));
    near.carrier.send(0, Buffer.from('a'));
    near.carrier.send(1, Buffer.from('b'));
    await untilTrue('both replies', () => replies.length === 2);
    assert.deepEqual(replies.sort(), ['0:a!', '1:b!']);
    near.carrier.endFlow(1);
    await untilTrue('flow 1 ended at the far end', () => ended.includes(1));
  } finally {
    near.close();
    onward.close();
    await middle.close();
    await far.close();
  }
});

test("agents of the two gateways holding the stream's listeners in other shares: flows are renumbered at the producer side, never a protocol error", async () => {
  // The producer gateway's agent holds listeners 0 and 1; the consumer gateway has one agent per listener, each numbering its flows 0, 1, ...
  const c = await createStreamCredentials('udp-wan');
  const problems: string[] = [];
  const prod = await producerSide(c.producerSide, 2, problems);
  const dialers = prod.addresses.map((a) => new UdpWanDialer(transport(c.consumerSide), [a], OPTS));
  try {
    await Promise.all(dialers.map((d) => d.ready(5000)));
    await untilTrue('the producer side took both connections', () => prod.acceptor.carrier.attached(0) && prod.acceptor.carrier.attached(1));
    const seen = new Set<number>();
    const ended: number[] = [];
    prod.acceptor.carrier.onDatagram((flow, d) => {
      seen.add(flow);
      prod.acceptor.carrier.send(flow, Buffer.concat([Buffer.from([listenerOf(flow, 2)]), d]));
    });
    prod.acceptor.carrier.onFlowEnd((f) => ended.push(f));
    const replies = dialers.map(() => new Map<number, string[]>());
    dialers.forEach((d, i) => d.carrier.onDatagram((flow, data) => replies[i]!.set(flow, [...(replies[i]!.get(flow) ?? []), `${data[0]}:${data.subarray(1).toString()}`])));
    for (const [i, d] of dialers.entries()) for (const flow of [0, 1]) for (let k = 0; k < 3; k++) assert.equal(d.carrier.send(flow, Buffer.from(`a${i} f${flow} #${k}`)), true);
    await untilTrue('every reply', () => replies.every((r) => [0, 1].every((f) => r.get(f)?.length === 3)));
    for (const [i, r] of replies.entries()) {
      for (const flow of [0, 1]) assert.deepEqual(r.get(flow), [0, 1, 2].map((k) => `${i}:a${i} f${flow} #${k}`), `agent ${i} flow ${flow}: listener ${i}, in order`);
    }
    assert.equal(seen.size, 4, 'four distinct flows at the producer');
    assert.equal(prod.acceptor.carrier.counters.protocolErrors, 0);
    // An end told by the consumer side reaches the renumbered flow.
    dialers[0]!.carrier.endFlow(1);
    await untilTrue('the renumbered flow ended at the producer', () => ended.length === 1);
    assert.deepEqual(problems, []);
  } finally {
    for (const d of dialers) d.close();
    await prod.close();
  }
});
function noop(): void {}
