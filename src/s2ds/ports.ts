// The gateway's port range. Hands out ports round-robin so that a port just
// released is not reused at once (late packets of an old stream find nothing).
import { closeSync, openSync, readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { isIPv4, isIPv6 } from 'node:net';
import { endianness } from 'node:os';
import { invalidArgument } from '../protocol/errors.js';

export interface PortRange {
  first: number;
  last: number;
}

export function parsePortRange(text: string): PortRange {
  const m = /^([0-9]{1,5})-([0-9]{1,5})$/.exec(text.trim());
  if (!m) throw invalidArgument(`port range "${text}" is not valid; write FIRST-LAST, e.g. 5100-5200`);
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (first < 1 || last > 65535) throw invalidArgument(`port range "${text}" is not valid; ports are 1-65535`);
  if (first > last) throw invalidArgument(`port range "${text}" is reversed; write the lower port first, e.g. ${last}-${first}`);
  return { first, last };
}

export class PortPool {
  private readonly inUse = new Set<number>();
  private cursor: number;

  constructor(readonly range: PortRange) {
    this.cursor = range.first;
  }

  get size(): number {
    return this.range.last - this.range.first + 1;
  }

  get available(): number {
    return this.size - this.inUse.size;
  }

  get reserved(): number {
    return this.inUse.size;
  }

  /** The next free port after the cursor, or undefined when all are taken. */
  take(): number | undefined {
    if (this.available === 0) return undefined;
    for (let i = 0; i < this.size; i++) {
      const port = this.cursor;
      this.cursor = port === this.range.last ? this.range.first : port + 1;
      if (!this.inUse.has(port)) {
        this.inUse.add(port);
        return port;
      }
    }
    return undefined;
  }

  /** Takes this very port (a listener port a request chose); the caller checked it is in range and free. */
  takePort(port: number): void {
    this.inUse.add(port);
  }

  /** Whether the port is handed out now. */
  isTaken(port: number): boolean {
    return this.inUse.has(port);
  }

  give(port: number): void {
    this.inUse.delete(port);
  }
}

/**
 * An IP address as bytes: 4 for IPv4, 16 for IPv6; undefined for a name or
 * anything else. Bracketed IPv6 is accepted.
 */
export function ipBytes(host: string): Buffer | undefined {
  const h = host.replace(/^\[(.*)\]$/, '$1');
  if (isIPv4(h)) return Buffer.from(h.split('.').map(Number));
  if (!isIPv6(h)) return undefined;
  const zone = h.indexOf('%');
  const text = zone >= 0 ? h.slice(0, zone) : h;
  // A trailing dotted IPv4 part counts as two groups.
  const groups = (part: string): number[] =>
    part === ''
      ? []
      : part.split(':').flatMap((g) => {
          if (!g.includes('.')) return [parseInt(g, 16)];
          const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number);
          return [(a << 8) | b, (c << 8) | d];
        });
  const [head = '', tail] = text.split('::');
  const h1 = groups(head);
  const t1 = tail === undefined ? [] : groups(tail);
  const all = [...h1, ...Array<number>(Math.max(0, 8 - h1.length - t1.length)).fill(0), ...t1];
  const out = Buffer.alloc(16);
  all.slice(0, 8).forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** Whether 16 address bytes are an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
export function isV4Mapped(b: Buffer): boolean {
  return b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
}

interface ListeningSocket {
  /** 4 bytes (from /proc/net/tcp) or 16 (from /proc/net/tcp6). */
  address: Buffer;
  port: number;
}

/** How long a reading of /proc/net/tcp{,6} is reused: status may be asked often, and the files can be large. */
const LISTENING_CACHE_MS = 1000;
/** Older than this, a reading is not answered from while a new one is read: it is read at once. */
const LISTENING_STALE_MS = 5000;

/**
 * Ports of the range on which some socket already listens where a listener on
 * `bindHost` would conflict (the same address, or a wildcard on either side),
 * read from /proc/net/tcp and /proc/net/tcp6 of this network namespace and cached
 * for about a second. The listeners of this very process are in there too: the
 * data server leaves out its own ports. Only the control plane reads this (start-up,
 * status, a refused reservation), never the data path; but it runs on the data
 * path's thread, and the kernel takes milliseconds to write these files when many
 * sockets are open or closing (7 ms for 1,200 in TIME_WAIT here): a reading due while
 * the last one is less than a few seconds old is taken off the thread (the last one
 * answers meanwhile), so that the status poll every second does not stall the
 * datagrams (a stalled UDP socket overflows and loses them).
 */
export class ListeningPorts {
  private cached: { at: number; ports: number[] | undefined } | undefined;
  private refreshing = false;
  private readonly bind: Buffer | undefined;

  constructor(
    private readonly range: PortRange,
    bindHost: string,
    private readonly read: () => ListeningSocket[] | undefined = readProcNetListening,
    /** The same reading off the event loop's thread; absent (a reader given for a test): read at once. */
    private readonly readLater: (() => Promise<ListeningSocket[] | undefined>) | undefined = read === readProcNetListening ? readProcNetListeningLater : undefined,
  ) {
    this.bind = ipBytes(bindHost.toLowerCase() === 'localhost' ? '127.0.0.1' : bindHost);
  }

  /** When the reading ports() returns was taken (ms since epoch; undefined before the first). */
  readAt(): number | undefined {
    return this.cached?.at;
  }

  /** Sorted ports in the range that conflict; undefined where /proc cannot be read (then nothing is known). */
  ports(): number[] | undefined {
    const now = Date.now();
    const cached = this.cached;
    if (cached && now - cached.at < LISTENING_CACHE_MS) return cached.ports;
    if (cached && this.readLater && now - cached.at < LISTENING_STALE_MS) {
      this.refresh(now);
      return cached.ports;
    }
    this.cached = { at: now, ports: this.conflicting(this.read()) };
    return this.cached.ports;
  }

  private refresh(startedAt: number): void {
    if (this.refreshing) return;
    this.refreshing = true;
    this.readLater!()
      .then((sockets) => {
        // A reading taken at once meanwhile is as new or newer.
        if (!this.cached || this.cached.at < startedAt) this.cached = { at: startedAt, ports: this.conflicting(sockets) };
      })
      .catch(() => undefined)
      .finally(() => (this.refreshing = false));
  }

  private conflicting(sockets: ListeningSocket[] | undefined): number[] | undefined {
    return (
      sockets && [...new Set(sockets.filter((s) => s.port >= this.range.first && s.port <= this.range.last && this.conflicts(s.address)).map((s) => s.port))].sort((a, b) => a - b)
    );
  }

  /** Conservative where the kernel's answer depends on options /proc does not show (a [::] listener counts as dual-stack). */
  private conflicts(other: Buffer): boolean {
    const bind = this.bind;
    if (!bind) return true; // a host name: any listener on the port may be in the way
    const zero = (b: Buffer) => b.every((x) => x === 0);
    if (bind.length === 4) {
      if (other.length === 4) return zero(other) || zero(bind) || other.equals(bind);
      return zero(other) || (isV4Mapped(other) && (zero(bind) || other.subarray(12).equals(bind)));
    }
    if (other.length === 16) return zero(other) || zero(bind) || other.equals(bind);
    if (zero(bind)) return true; // [::] takes IPv4 too (dual-stack)
    return isV4Mapped(bind) && (zero(other) || other.equals(bind.subarray(12)));
  }
}

/** LISTEN sockets of this network namespace, or undefined where /proc/net/tcp cannot be read. */
function readProcNetListening(): ListeningSocket[] | undefined {
  const v4 = readListeningRows('/proc/net/tcp');
  if (v4 === undefined) return undefined;
  return [...parseProcNetTcp(v4), ...parseProcNetTcp(readListeningRows('/proc/net/tcp6') ?? '')];
}

/** readProcNetListening through the thread pool. */
async function readProcNetListeningLater(): Promise<ListeningSocket[] | undefined> {
  const [v4, v6] = await Promise.all([readListeningRowsLater('/proc/net/tcp'), readListeningRowsLater('/proc/net/tcp6')]);
  if (v4 === undefined) return undefined;
  return [...parseProcNetTcp(v4), ...parseProcNetTcp(v6 ?? '')];
}

/**
 * The kernel writes a file's LISTEN rows first (it walks its listening hash before the
 * established one, whose every bucket it visits: tens of thousands, and every connection
 * and TIME_WAIT socket): reading stops at the end of the read that brought the first
 * other row. It also stops after a short read: the kernel fills a page per read (4 KiB
 * or more) with whole rows of under 200 bytes, and stops short only at the end of the
 * file; asking once more would walk the whole established hash again to find that out.
 */
const OTHER_ROW = /^ *\d+: [0-9A-Fa-f]+:[0-9A-Fa-f]+ [0-9A-Fa-f]+:[0-9A-Fa-f]+ (?!0A )[0-9A-Fa-f]{2} /m;
const READ_CHUNK = 64 * 1024;
const SHORT_READ = 2048;

function readListeningRows(file: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    let text = '';
    for (let n = readSync(fd, buf, 0, READ_CHUNK, null); n > 0; n = readSync(fd, buf, 0, READ_CHUNK, null)) {
      const chunk = buf.toString('latin1', 0, n);
      text += chunk;
      if (n < SHORT_READ || OTHER_ROW.test(chunk)) break;
    }
    return text;
  } catch {
    return undefined;
  } finally {
    try {
      closeSync(fd);
    } catch {
      // nothing to do: the reading is taken
    }
  }
}

async function readListeningRowsLater(file: string): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    let text = '';
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, READ_CHUNK, null);
      if (bytesRead === 0) break;
      const chunk = buf.toString('latin1', 0, bytesRead);
      text += chunk;
      if (bytesRead < SHORT_READ || OTHER_ROW.test(chunk)) break;
    }
    return text;
  } catch {
    return undefined;
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * LISTEN rows (state 0A) of /proc/net/tcp or tcp6: "sl local_address rem_address st ...",
 * the local address as hex of 32-bit words in host (little-endian) order, then ":PORT" in hex.
 */
const LITTLE_ENDIAN = endianness() === 'LE';

export function parseProcNetTcp(text: string): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  for (const line of text.split('\n')) {
    // Most rows are connections (thousands, in TIME_WAIT): only a LISTEN row is taken apart.
    if (!line.includes(' 0A ')) continue;
    const f = line.trim().split(/\s+/);
    if (f[3] !== '0A') continue;
    const m = /^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}):([0-9A-Fa-f]{4})$/.exec(f[1] ?? '');
    if (!m) continue;
    const raw = Buffer.from(m[1]!, 'hex');
    // The kernel prints each 32-bit word of the (network-order) address as a host-order number.
    if (LITTLE_ENDIAN) for (let i = 0; i < raw.length; i += 4) raw.subarray(i, i + 4).reverse();
    out.push({ address: raw, port: parseInt(m[2]!, 16) });
  }
  return out;
}
