// Run by test/s2ds/udp-send-queue.test.ts inside a network namespace of its own whose
// loopback is shaped (tbf at 1 Mbit/s): there the kernel holds datagrams in the qdisc,
// a socket's small send buffer fills, and libuv queues what the kernel would not take,
// which is what SendQueue must count. Prints one JSON line of what it saw.
import { createSocket, type Socket } from 'node:dgram';
import { InFlight } from '../../src/s2ds/udp/budget.js';
import { literalFirst, SendQueue } from '../../src/s2ds/udp/send-queue.js';

const DATAGRAM = 1400;

async function receiver(): Promise<{ socket: Socket; port: number; got: () => number }> {
  const socket = createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  let got = 0;
  socket.on('message', () => got++);
  return { socket, port: socket.address().port, got: () => got };
}

function sender(): Socket {
  return createSocket({ type: 'udp4', sendBufferSize: 4096 });
}

const until = async (ok: () => boolean, ms = 10_000) => {
  for (const end = Date.now() + ms; !ok() && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
};

async function main(): Promise<void> {
  const rx = await receiver();
  const d = Buffer.alloc(DATAGRAM, 7);

  // Two connected senders (a carrier's flows) sharing one server bound; flow a's own bound is lower.
  const server = new InFlight(40 * DATAGRAM);
  const drops: string[] = [];
  const [sa, sb] = [sender(), sender()];
  await Promise.all([sa, sb].map((s) => new Promise<void>((r) => s.connect(rx.port, '127.0.0.1', () => r()))));
  const qa = new SendQueue(sa, server, (c) => drops.push(c));
  const qb = new SendQueue(sb, server, (c) => drops.push(c));
  const fa = { inFlight: 0 };
  const fb = { inFlight: 0 };
  let accepted = 0;
  let refusedA = 0;
  let refusedB = 0;
  let maxFlowA = 0;
  let maxServer = 0;
  let queuedSeen = 0;
  for (let i = 0; i < 150; i++) {
    if (qa.send(d, fa, 15 * DATAGRAM)) accepted++;
    else refusedA++;
    if (qb.send(d, fb, 1000 * DATAGRAM)) accepted++;
    else refusedB++;
    maxFlowA = Math.max(maxFlowA, fa.inFlight);
    maxServer = Math.max(maxServer, server.bytes);
    queuedSeen = Math.max(queuedSeen, sa.getSendQueueCount() + sb.getSendQueueCount());
  }
  const inFlightAfterBurst = server.bytes;
  await until(() => rx.got() >= accepted && server.bytes === 0);
  const drained = { received: rx.got(), server: server.bytes, flowA: fa.inFlight, flowB: fb.inFlight };

  // An unconnected socket (a listener's replies): then closed with datagrams still queued.
  const sc = createSocket({ type: 'udp4', sendBufferSize: 4096, lookup: literalFirst });
  await new Promise<void>((r) => sc.bind(0, '127.0.0.1', () => r()));
  const qc = new SendQueue(sc, server, (c) => drops.push(c));
  const fc = { inFlight: 0 };
  let acceptedC = 0;
  for (let i = 0; i < 30; i++) if (qc.send(d, fc, 1000 * DATAGRAM, rx.port, '127.0.0.1')) acceptedC++;
  const queuedBeforeClose = { server: server.bytes, flow: fc.inFlight, count: sc.getSendQueueCount() };
  qc.forget();
  sc.close();
  const afterClose = { server: server.bytes, flow: fc.inFlight };

  for (const s of [sa, sb, rx.socket]) s.close();
  process.stdout.write(
    `${JSON.stringify({ limits: { server: server.limit, flowA: 15 * DATAGRAM }, accepted, refusedA, refusedB, maxFlowA, maxServer, queuedSeen, inFlightAfterBurst, drained, acceptedC, queuedBeforeClose, afterClose, drops })}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
