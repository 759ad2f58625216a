// The access log: one line per data connection when it ends (who, on which listener
// and leg, bytes each way, how long, how it ended), as HAProxy and stunnel write.
// Each data server (the in-process one, each worker, each agent) writes the lines of
// its own connections: per connection, at its end, never per chunk. To stderr through
// the process's logger, or appended to a file (--access-log) that SIGHUP reopens, so
// that logrotate can rename it away without copytruncate. Several worker processes
// append to the same file: each line is one write(2) on an O_APPEND descriptor.
// A flood (thousands of refused connections a second) must not fill a disk: lines
// are rate-limited and what is left out is summarised, counted by how it ended.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Logger } from '../log.js';

export type Leg = 'lan' | 'wan';

/** One data connection, when it ended (ConnectionRecord in proto/scistream.proto). */
export interface ConnectionRecord {
  uid: string;
  /** The listener it came in on (host:port). */
  listener: string;
  leg: Leg;
  /** Its peer (host:port). */
  peer: string;
  /** Bytes from the peer, and to it; on a TLS WAN leg, inside TLS (the frames' headers counted, TLS records not). */
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  /** clean | reset-by-peer | reset-by-target | refused:<kind> | wan-broken:<cause> | released | shutdown | ... */
  end: string;
  /** ms since the Unix epoch. */
  endedAtMs: number;
}

export interface AccessLogOptions {
  /** Append to this file (reopened by reopen()); absent: through `logger` (stderr). */
  file?: string;
  /** json: one JSON object per line; text: one `key=value` line (the file only: the logger has its own format). */
  format: 'text' | 'json';
  logger: Logger;
  /** Lines written at once before the rate applies. Default ACCESS_LOG_DEFAULTS. */
  burst?: number;
  /** Lines a second in the long run. */
  perSecond?: number;
  /** How often what was left out is summarised (one line), ms. */
  summaryEveryMs?: number;
}

export const ACCESS_LOG_DEFAULTS = {
  /** iperf3 -P 128 ending at once is logged in full. */
  burst: 256,
  /** At about 200 bytes a line, at most 14 MB an hour per data server. */
  perSecond: 20,
  summaryEveryMs: 10_000,
} as const;

/** The last connections kept per stream for status (StreamStatus.recent_connections). */
export const RECENT_CONNECTIONS = 10;

export class AccessLog {
  private fd: number | undefined;
  private tokens: number;
  private refilledAt = Date.now();
  /** Lines left out since the last summary, by how their connection ended. */
  private suppressed = new Map<string, number>();
  private readonly summaries: NodeJS.Timeout;
  private writeFailed = false;
  private readonly burst: number;
  private readonly perSecond: number;

  constructor(private readonly opts: AccessLogOptions) {
    this.burst = opts.burst ?? ACCESS_LOG_DEFAULTS.burst;
    this.perSecond = opts.perSecond ?? ACCESS_LOG_DEFAULTS.perSecond;
    this.tokens = this.burst;
    if (opts.file !== undefined) this.fd = openSync(opts.file, 'a', 0o640);
    this.summaries = setInterval(() => this.summarise(), opts.summaryEveryMs ?? ACCESS_LOG_DEFAULTS.summaryEveryMs);
    this.summaries.unref();
  }

  /** Where the lines go, for the start-up log. */
  get destination(): string {
    return this.opts.file ?? 'stderr';
  }

  /** Writes the line of a connection that ended, unless the rate is spent (then it is counted). */
  record(r: ConnectionRecord): void {
    if (!this.take()) {
      this.suppressed.set(r.end, (this.suppressed.get(r.end) ?? 0) + 1);
      return;
    }
    if (this.fd === undefined) {
      this.opts.logger.info(
        { uid: r.uid, listener: r.listener, leg: r.leg, peer: r.peer, bytesIn: r.bytesIn, bytesOut: r.bytesOut, durationMs: r.durationMs, end: r.end },
        `connection ended: ${r.end}`,
      );
      return;
    }
    this.write(this.opts.format === 'json' ? jsonLine(r) : textLine(r));
  }

  /**
   * Opens the file again by its name (SIGHUP, after logrotate renamed it): later
   * lines go to the new file. The old descriptor is kept when the name cannot be opened.
   */
  reopen(): void {
    if (this.opts.file === undefined) return;
    let fd: number;
    try {
      fd = openSync(this.opts.file, 'a', 0o640);
    } catch (err) {
      this.opts.logger.error(`--access-log ${this.opts.file}: cannot reopen it (${(err as Error).message}); the access log goes on in the file open before`);
      return;
    }
    const old = this.fd;
    this.fd = fd;
    this.writeFailed = false;
    if (old !== undefined) closeSync(old);
  }

  /** Writes the summary of what was left out, and closes the file; later lines (sockets still closing) go through the logger. */
  close(): void {
    clearInterval(this.summaries);
    this.summarise();
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private take(): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  /** One line for what was left out since the last one; nothing when nothing was. */
  private summarise(): void {
    if (this.suppressed.size === 0) return;
    const byEnd = [...this.suppressed].sort((a, b) => b[1] - a[1]);
    this.suppressed = new Map();
    const total = byEnd.reduce((n, [, c]) => n + c, 0);
    const counts = byEnd.map(([end, c]) => `${c} ${end}`).join(', ');
    const text = `suppressed ${total} lines (over ${this.perSecond} a second after a burst of ${this.burst}): ${counts}`;
    if (this.fd === undefined) {
      this.opts.logger.warn({ suppressed: total, byEnd: Object.fromEntries(byEnd) }, `access log: ${text}`);
      return;
    }
    const time = new Date().toISOString();
    this.write(this.opts.format === 'json' ? `${JSON.stringify({ time, suppressed: total, byEnd: Object.fromEntries(byEnd) })}\n` : `${time} ${text}\n`);
  }

  private write(line: string): void {
    try {
      writeSync(this.fd!, line);
    } catch (err) {
      // A full disk loses lines, never the connections: said once until it works again.
      if (!this.writeFailed) this.opts.logger.error(`--access-log ${this.opts.file}: cannot write (${(err as Error).message}); lines are lost until it can`);
      this.writeFailed = true;
      return;
    }
    this.writeFailed = false;
  }
}

function jsonLine(r: ConnectionRecord): string {
  const { endedAtMs, ...rest } = r;
  return `${JSON.stringify({ time: new Date(endedAtMs).toISOString(), ...rest })}\n`;
}

function textLine(r: ConnectionRecord): string {
  return (
    `${new Date(r.endedAtMs).toISOString()} uid=${r.uid} listener=${r.listener} leg=${r.leg} peer=${r.peer} ` +
    `in=${r.bytesIn} out=${r.bytesOut} duration=${(r.durationMs / 1000).toFixed(3)}s end=${r.end}\n`
  );
}

/**
 * How a forwarded connection ended, from the first error or unclean close of either
 * socket: `peer` is the accepted side, `target` the side this server opened.
 * A bounded set of strings (the summary counts by it): no free text of an error.
 */
export function abnormalEnd(side: 'peer' | 'target', err: NodeJS.ErrnoException | undefined): string {
  if (!err) return `closed-early-by-${side}`;
  const wan = (err as { breakCause?: unknown }).breakCause;
  if (err.name === 'WanBrokenError' && typeof wan === 'string') return `wan-broken:${wan}`;
  const code = err.code ?? '';
  if (code === 'ECONNRESET' || code === 'EPIPE' || code === 'ECONNABORTED') return `reset-by-${side}`;
  return /^E[A-Z]{2,20}$/.test(code) ? `error-by-${side}:${code}` : `error-by-${side}`;
}

/** The last `max` records, newest last. */
export function keepRecent(list: ConnectionRecord[], r: ConnectionRecord, max = RECENT_CONNECTIONS): void {
  list.push(r);
  if (list.length > max) list.splice(0, list.length - max);
}

/** The flag of s2cs start and s2ds start (a key of their configuration files too). */
export const ACCESS_LOG_FLAG = {
  flags: '--access-log <path>',
  help: 'append one line per data connection when it ends (stream, listener, lan|wan, peer, bytes each way, duration, how it ended) to this file, in the --log-format (json, else text); reopened on SIGHUP (logrotate without copytruncate). Default: those lines go to stderr with the rest of the log',
} as const;

/**
 * The access log of a server started with --access-log `file` (absent: through
 * `logger`), in the format of its log: JSON when that is JSON, else text lines.
 * Throws with the file named when it cannot be opened for appending.
 */
export function openAccessLog(file: string | undefined, logFormat: 'pretty' | 'json', logger: Logger): AccessLog {
  try {
    return new AccessLog({ file, format: logFormat === 'json' ? 'json' : 'text', logger });
  } catch (err) {
    throw new Error(`--access-log ${file}: cannot open it for appending (${(err as Error).message}); give a file in a directory this user can write`);
  }
}
