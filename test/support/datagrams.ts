// UDP test parts with real sockets: an echo target, and numbered, checksummed datagram
// sequences counted for loss, duplication, reordering and corruption.
import { createHash } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import type { Address } from '../../src/protocol/address.js';

/** A UDP target that sends every datagram back to whoever sent it; counts what it saw. */
export async function udpEcho(host = '127.0.0.1'): Promise<{ address: Address; received: () => number; senders: () => Set<string>; close(): Promise<void> }> {
  const socket = createSocket('udp4');
  let received = 0;
  const senders = new Set<string>();
  socket.on('message', (d, from) => {
    received++;
    senders.add(`${from.address}:${from.port}`);
    socket.send(d, from.port, from.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, host, () => resolve()));
  return {
    address: { host, port: socket.address().port },
    received: () => received,
    senders: () => senders,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}

const HEADER = 4 + 4 + 8;

/** Datagram `seq` of sender `sender`: [sender u32][seq u32][sha256(payload) 8 bytes][payload of `size`]. */
export function numbered(sender: number, seq: number, size: number): Buffer {
  const d = Buffer.alloc(HEADER + size);
  d.writeUInt32BE(sender, 0);
  d.writeUInt32BE(seq, 4);
  for (let i = 0; i < size; i++) d[HEADER + i] = (seq * 31 + i * 7 + sender) & 0xff;
  createHash('sha256').update(d.subarray(HEADER)).digest().copy(d, 8, 0, 8);
  return d;
}

/** What a receiver saw of one sender's sequence. */
export class SequenceTally {
  readonly seen = new Set<number>();
  duplicates = 0;
  reordered = 0;
  corrupt = 0;
  foreign = 0;
  private highest = -1;

  constructor(readonly sender: number) {}

  add(d: Buffer): void {
    if (d.length < HEADER) {
      this.corrupt++;
      return;
    }
    if (d.readUInt32BE(0) !== this.sender) {
      this.foreign++;
      return;
    }
    const digest = createHash('sha256').update(d.subarray(HEADER)).digest().subarray(0, 8);
    if (!digest.equals(d.subarray(8, 16))) {
      this.corrupt++;
      return;
    }
    const seq = d.readUInt32BE(4);
    if (this.seen.has(seq)) this.duplicates++;
    if (seq < this.highest) this.reordered++;
    this.highest = Math.max(this.highest, seq);
    this.seen.add(seq);
  }

  lost(sent: number): number {
    return sent - this.seen.size;
  }
}

/** A UDP sender bound on `host` (any 127.0.0.x works on Linux) that tallies what comes back. */
export async function udpSender(sender: number, host = '127.0.0.1'): Promise<{ socket: Socket; tally: SequenceTally; send(to: Address, d: Buffer): Promise<void>; close(): Promise<void> }> {
  const socket = createSocket('udp4');
  const tally = new SequenceTally(sender);
  socket.on('message', (d) => tally.add(d));
  await new Promise<void>((resolve) => socket.bind(0, host, () => resolve()));
  return {
    socket,
    tally,
    send: (to, d) => new Promise((resolve, reject) => socket.send(d, to.port, to.host, (err) => (err ? reject(err) : resolve()))),
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}

/** Sends `count` numbered datagrams, pausing a little every `burst` so that loopback buffers are not the test. */
export async function sendSequence(s: { send(to: Address, d: Buffer): Promise<void> }, sender: number, to: Address, count: number, size: number, burst = 32, pauseMs = 2): Promise<void> {
  for (let seq = 0; seq < count; seq++) {
    await s.send(to, numbered(sender, seq, size));
    if (seq % burst === burst - 1) await new Promise((r) => setTimeout(r, pauseMs));
  }
}

/** Waits until `count()` stops changing for `quietMs` (what was in flight arrived or is lost), at most `maxMs`. */
export async function settled(count: () => number, quietMs = 500, maxMs = 15_000): Promise<void> {
  const start = Date.now();
  let last = -1;
  let since = Date.now();
  while (Date.now() - start < maxMs) {
    const n = count();
    if (n !== last) {
      last = n;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}
