// `s2uc status --watch`: the gateways asked again every interval. On a terminal the
// picture is redrawn in place; otherwise each sample is appended (one JSON line each
// with --json), for scripts and logs. Rates between successive samples are computed
// here, next to the gateway's own 10-second average.
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlConnection, type ConnectionOptions } from '../protocol/client.js';
import { validateUid } from '../protocol/validate.js';
import { asFailure, formatGatewayStatus, isFailure, toGatewayStatus, type GatewayFailure, type GatewayStatus, type SampledRates, type StreamStatusRow } from './status.js';

export interface WatchOptions {
  /** Seconds between samples. */
  intervalS: number;
  json?: boolean;
  /** Redraw in place (a terminal); otherwise append a block per sample. */
  tty: boolean;
  /** Terminal height: a picture taller than it is cut, so that redrawing stays in place. */
  rows?: () => number | undefined;
  /** Terminal width: longer lines are cut rather than wrapped onto lines the redraw does not count. */
  columns?: () => number | undefined;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
  /** Aborted: stop after the current sample (Ctrl-C). */
  signal: AbortSignal;
}

/** A stream of the JSON lines: the gateway's figures plus the rates between this sample and the last. */
type WatchedStream = StreamStatusRow & { sampled?: SampledRates };

interface Counters {
  at: number;
  to: number;
  from: number;
}

const CSI = '\x1b[';

/**
 * Samples until `signal` aborts; returns the exit code (0: stopped by the user). A
 * gateway that cannot be asked is shown as an error in its place and asked again at the
 * next sample on a fresh connection, so it comes back as soon as it answers.
 */
export async function watchStatus(servers: string[], uid: string | undefined, conn: ConnectionOptions, opts: WatchOptions): Promise<number> {
  if (uid !== undefined) validateUid(uid, 'uid');
  const connections = new Map<string, Promise<ControlConnection>>();
  const last = new Map<string, Counters>();
  // A down gateway must not hold a sample for the whole --timeout: each call gets about one interval.
  const deadlineMs = Math.min(conn.deadlineMs ?? 30_000, Math.max(2_000, opts.intervalS * 1000));
  const ask = async (server: string): Promise<GatewayStatus> => {
    let c = connections.get(server);
    if (!c) connections.set(server, (c = ControlConnection.open(server, { ...conn, deadlineMs, pool: undefined, retry: false })));
    try {
      return toGatewayStatus(server, await (await c).status({ uid: uid ?? '' }));
    } catch (err) {
      // A fresh channel next time: grpc-js would otherwise wait out its reconnection backoff (up to minutes).
      connections.delete(server);
      c.then((x) => x.close(), () => undefined);
      throw err;
    }
  };
  // Ctrl-C during a sample stops at once, not when a gateway that is down has timed out.
  const stopped = new Promise<undefined>((resolve) => opts.signal.addEventListener('abort', () => resolve(undefined), { once: true }));
  if (opts.tty) opts.out.write(`${CSI}?25l${CSI}2J`); // hide the cursor, clear the screen once
  try {
    while (!opts.signal.aborted) {
      const started = Date.now();
      const results = await Promise.race([Promise.allSettled(servers.map(ask)), stopped]);
      if (!results || opts.signal.aborted) break;
      const now = performance.now();
      const gateways = results.map((r, i) => (r.status === 'fulfilled' ? r.value : asFailure(servers[i]!, r.reason)));
      const sampled = samplesFrom(gateways, last, now);
      if (opts.json) opts.out.write(`${JSON.stringify({ at: new Date(started).toISOString(), intervalS: opts.intervalS, gateways: withSampled(gateways, sampled) })}\n`);
      else if (opts.tty) opts.out.write(picture(gateways, sampled, started, opts));
      else {
        opts.out.write(`--- ${new Date(started).toISOString()}\n`);
        for (const g of gateways) {
          if (isFailure(g)) opts.err.write(`s2uc: error: ${g.error}\n`);
          else opts.out.write(formatGatewayStatus(g, (s) => sampled.get(key(g.s2cs, s.uid))));
        }
      }
      await sleep(Math.max(0, started + opts.intervalS * 1000 - Date.now()), undefined, { signal: opts.signal }).catch(() => undefined);
    }
  } finally {
    for (const c of connections.values()) c.then((x) => x.close(), () => undefined);
    if (opts.tty) opts.out.write(`${CSI}?25h\n`); // the cursor back, below the last picture
  }
  return 0;
}

const key = (s2cs: string, uid: string) => `${s2cs} ${uid}`;

/** Rates since the previous sample, per stream; remembers this sample's counters for the next. */
function samplesFrom(gateways: (GatewayStatus | GatewayFailure)[], last: Map<string, Counters>, now: number): Map<string, SampledRates> {
  const rates = new Map<string, SampledRates>();
  const seen = new Set<string>();
  for (const g of gateways) {
    if (isFailure(g)) {
      // Keep its streams' counters: when it answers again the rate spans the gap.
      for (const k of last.keys()) if (k.startsWith(`${g.s2cs} `)) seen.add(k);
      continue;
    }
    for (const s of g.streams) {
      const k = key(g.s2cs, s.uid);
      seen.add(k);
      const before = last.get(k);
      const seconds = before ? (now - before.at) / 1000 : 0;
      // Counters that went down belong to another stream with the same uid (released, asked again).
      if (before && seconds > 0 && s.bytesToTarget >= before.to && s.bytesFromTarget >= before.from) {
        rates.set(k, { toTargetBps: (s.bytesToTarget - before.to) / seconds, fromTargetBps: (s.bytesFromTarget - before.from) / seconds, seconds });
      }
      last.set(k, { at: now, to: s.bytesToTarget, from: s.bytesFromTarget });
    }
  }
  for (const k of [...last.keys()]) if (!seen.has(k)) last.delete(k);
  return rates;
}

function withSampled(gateways: (GatewayStatus | GatewayFailure)[], sampled: Map<string, SampledRates>): (GatewayStatus | GatewayFailure)[] {
  return gateways.map((g) =>
    isFailure(g)
      ? g
      : {
          ...g,
          streams: g.streams.map((s): WatchedStream => {
            const r = sampled.get(key(g.s2cs, s.uid));
            return r ? { ...s, sampled: r } : s;
          }),
        },
  );
}

/** The whole screen: cursor home, each line cleared to its end, the rest of the screen cleared. */
function picture(gateways: (GatewayStatus | GatewayFailure)[], sampled: Map<string, SampledRates>, at: number, opts: WatchOptions): string {
  const time = new Date(at).toTimeString().slice(0, 8);
  let text = `s2uc status: every ${opts.intervalS} s, at ${time} (Ctrl-C to stop)\n\n`;
  for (const g of gateways) {
    text += isFailure(g) ? `gateway ${g.s2cs}: error: ${g.error} (asking again every ${opts.intervalS} s)\n` : formatGatewayStatus(g, (s) => sampled.get(key(g.s2cs, s.uid)));
  }
  let lines = text.replace(/\n$/, '').split('\n');
  const rows = opts.rows?.();
  if (rows !== undefined && rows > 2 && lines.length > rows - 1) {
    const hidden = lines.length - (rows - 2);
    lines = [...lines.slice(0, rows - 2), `... ${hidden} more lines: a taller terminal, one stream (s2uc status UID --watch), or --json shows them`];
  }
  const columns = opts.columns?.();
  if (columns !== undefined && columns > 10) lines = lines.map((l) => (l.length > columns ? `${l.slice(0, columns - 3)}...` : l));
  return `${CSI}H${lines.map((l) => `${l}${CSI}K`).join('\n')}\n${CSI}J`;
}
