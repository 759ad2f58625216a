// iperf3 -u as the UDP rows run it, and what its JSON report (-J) says about one run.
import { spawn } from 'node:child_process';

/** One UDP run, as the receiving end counted it. */
export interface UdpRun {
  /** The rate asked of the sender (-b), bit/s. */
  offeredBps: number;
  /** What the sender sent, bit/s. */
  sentBps: number;
  /** What arrived, bit/s over the run's seconds. */
  receivedBps: number;
  receivedBytes: number;
  /** Lost datagrams (by sequence number) over those expected, in %. */
  lossPercent: number;
  /** Datagrams that arrived out of order (iperf3 3.12 counts them per stream). */
  outOfOrder: number;
}

interface UdpSum {
  bytes?: number;
  seconds?: number;
  bits_per_second?: number;
  lost_packets?: number;
  packets?: number;
  lost_percent?: number;
}

/**
 * Reads `iperf3 -u -J`'s report (the client's, which holds the receiver's counts as
 * end.sum_received). Throws with iperf3's own error, or what is missing.
 */
export function parseUdpReport(text: string, offeredBps: number): UdpRun {
  let report: { error?: string; start?: { test_start?: { protocol?: string } }; end?: { sum_sent?: UdpSum; sum_received?: UdpSum; streams?: { udp?: { out_of_order?: number } }[] } };
  try {
    report = JSON.parse(text) as typeof report;
  } catch {
    throw new Error(`iperf3 printed no JSON report: ${text.slice(0, 200) || '(nothing)'}`);
  }
  if (report.error) throw new Error(`iperf3: ${report.error}`);
  if (report.start?.test_start?.protocol !== 'UDP') throw new Error('iperf3 report is not of a UDP test');
  const sent = report.end?.sum_sent;
  const got = report.end?.sum_received;
  const num = (x: number | undefined) => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
  const sentBps = num(sent?.bits_per_second);
  const bytes = num(got?.bytes);
  const seconds = num(got?.seconds);
  const lost = num(got?.lost_packets);
  const packets = num(got?.packets);
  if (sentBps === undefined || bytes === undefined || !seconds || lost === undefined || packets === undefined) {
    throw new Error('iperf3 report lacks end.sum_sent or end.sum_received (bytes, seconds, lost_packets, packets)');
  }
  return {
    offeredBps,
    sentBps,
    receivedBps: (bytes * 8) / seconds,
    receivedBytes: bytes,
    // Nothing expected, nothing arrived: all lost, not none.
    lossPercent: packets > 0 ? (100 * lost) / packets : 100,
    outOfOrder: (report.end?.streams ?? []).reduce((s, x) => s + (x.udp?.out_of_order ?? 0), 0),
  };
}

export interface UdpRunOptions {
  port: number;
  offeredBps: number;
  seconds: number;
  /** Datagram payload, bytes (-l). */
  length: number;
  /** -R: the server (the target behind the path) sends, the client receives. */
  reverse: boolean;
}

/** The iperf3 client's arguments for one run. */
export function udpArgs(o: UdpRunOptions): string[] {
  return ['-c', '127.0.0.1', '-p', String(o.port), '-u', '-b', String(Math.round(o.offeredBps)), '-l', String(o.length), '-t', String(o.seconds), '-J', ...(o.reverse ? ['-R'] : [])];
}

/** One iperf3 -u run through a path; its control connection takes the same port number over TCP. */
export async function iperfUdp(o: UdpRunOptions): Promise<UdpRun> {
  const args = udpArgs(o);
  const child = spawn('iperf3', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  // A path that drops the control connection or never answers must not hang the run.
  const timer = setTimeout(() => child.kill('SIGKILL'), (o.seconds + 20) * 1000);
  await new Promise<void>((resolve) => child.on('close', () => resolve()));
  clearTimeout(timer);
  try {
    return parseUdpReport(out, o.offeredBps);
  } catch (err) {
    throw new Error(`iperf3 ${args.join(' ')}: ${(err as Error).message}`);
  }
}
