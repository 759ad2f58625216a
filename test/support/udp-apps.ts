// UDP applications as inline Node scripts for the network-namespace lab (NetnsLab.node):
// an echo target, and a sender that paces numbered datagrams and times their echoes.
import type { NsProc } from './netns.js';

/** Args: host port. Sends every datagram back to its sender; "echo listening" once bound; on SIGTERM prints {"received": n}. */
export const UDP_ECHO_APP = `
const [host, port] = process.argv.slice(1);
const s = require('node:dgram').createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
let n = 0;
s.on('message', (d, from) => { n++; s.send(d, from.port, from.address); });
s.on('error', () => {});
s.bind(Number(port), host, () => console.log('echo listening'));
process.on('SIGTERM', () => { console.log(JSON.stringify({ received: n })); process.exit(0); });
`;

/**
 * Args: host port everyMs. A numbered 200-byte datagram every `everyMs` from one socket,
 * the echoes checked (number, length, content) and timed. Prints "flow open from port P" at
 * the first echo and, on SIGTERM, one JSON line (PacedReport).
 */
export const UDP_PACED_SENDER_APP = `
const [host, port, every] = process.argv.slice(1);
const MAGIC = 0x5c157ea7, SIZE = 200;
const s = require('node:dgram').createSocket('udp4');
const sentAt = [], echoes = [];
let bad = 0, timer;
s.on('message', (d) => {
  const seq = d.length === SIZE && d.readUInt32BE(4) === MAGIC ? d.readUInt32BE(0) : -1;
  if (seq < 0 || seq >= sentAt.length || d.subarray(8).some((b) => b !== (seq & 0xff))) { bad++; return; }
  if (echoes.length === 0) console.log('flow open from port ' + s.address().port);
  echoes.push([seq, Date.now()]);
});
s.on('error', () => {});
s.bind(0, () => {
  timer = setInterval(() => {
    const d = Buffer.alloc(SIZE, sentAt.length & 0xff);
    d.writeUInt32BE(sentAt.length, 0);
    d.writeUInt32BE(MAGIC, 4);
    sentAt.push(Date.now());
    s.send(d, Number(port), host);
  }, Number(every));
});
process.on('SIGTERM', () => { clearInterval(timer); console.log(JSON.stringify({ sentAt, echoes, bad })); process.exit(0); });
`;

/** What UDP_PACED_SENDER_APP saw: when datagram i left (sentAt[i], ms), [seq, ms] per echo, echoes that were not its own. */
export interface PacedReport {
  sentAt: number[];
  echoes: [number, number][];
  bad: number;
}

/** Stops a UDP_PACED_SENDER_APP and reads its report. */
export async function pacedReport(p: NsProc): Promise<PacedReport> {
  const code = await p.stop('SIGTERM');
  const line = p.stdout().trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line) as PacedReport;
  } catch {
    throw new Error(`${p.name} printed no report (exit ${code})\n${p.describe()}`);
  }
}

/** Of the datagrams sent in [from, to): how many, and how many came back. */
export function echoedBetween(r: PacedReport, from: number, to: number): { sent: number; back: number } {
  const back = new Set(r.echoes.map(([seq]) => seq));
  let sent = 0;
  let echoed = 0;
  r.sentAt.forEach((at, seq) => {
    if (at < from || at >= to) return;
    sent++;
    if (back.has(seq)) echoed++;
  });
  return { sent, back: echoed };
}

/** The longest time between two echoes, ms (0 with fewer than two). */
export function longestSilence(r: PacedReport): number {
  const times = r.echoes.map(([, at]) => at).sort((a, b) => a - b);
  let gap = 0;
  for (let i = 1; i < times.length; i++) gap = Math.max(gap, times[i]! - times[i - 1]!);
  return gap;
}
