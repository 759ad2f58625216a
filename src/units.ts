// Human-readable sizes and rates, for flags (--bytes 1GiB, --buffer-size 4MiB) and reports.
const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };
const SIZE = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgt])(?:i?b)?|b)?$/i;

/**
 * Parses a human size: "1024", "64KiB", "256MiB", "1G", "10M", "1.5GiB" (K/M/G/T,
 * with or without "iB"/"B", always binary multiples). Fractions round down.
 */
export function parseSize(text: string): number {
  const m = typeof text === 'string' ? SIZE.exec(text.trim()) : null;
  const value = m ? Number(m[1]) * UNITS[(m[2] ?? '').toLowerCase()]! : NaN;
  const bytes = Math.floor(value);
  if (!m || !Number.isSafeInteger(bytes)) {
    throw new Error(
      `invalid size "${String(text)}": write a non-negative number with an optional unit ` +
        `K, M, G or T (binary multiples of 1024; "KiB", "KB" and "K" are the same), ` +
        `e.g. 1024, 64KiB, 256MiB, 1.5GiB, 10M`,
    );
  }
  return bytes;
}

/** "512 B", "64.00 KiB", "1.00 GiB". */
export function formatBytes(n: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  if (Math.abs(n) < 1024) return `${n} B`;
  let value = n / 1024;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${value.toFixed(2)} ${units[i]}`;
}

/** Throughput in decimal bits: "9.41 Gbit/s", "812.50 Mbit/s". */
export function formatRate(bytes: number, seconds: number): string {
  if (!(seconds > 0)) return 'n/a';
  const bits = (bytes * 8) / seconds;
  return bits >= 1e9 ? `${(bits / 1e9).toFixed(2)} Gbit/s` : `${(bits / 1e6).toFixed(2)} Mbit/s`;
}

// Stream rates (issue 13): the wire's Request.rate is kilobytes per second, 1 kB = 1,000 bytes.
const RATE = /^(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgt]?)(bit|b)\/s|([kmgt]?)bps)?$/i;
const DECIMAL: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12 };
/** The most Request.rate (an int32 of kB/s) can say: about 17 Tbit/s. */
export const MAX_RATE_KBPS = 2 ** 31 - 1;

/**
 * Parses a stream rate into kB/s (Request.rate): a plain number is kB/s, as the
 * reference's --rate; with a unit, "200Mbit/s", "1Gbit/s", "25MB/s", "500kB/s",
 * "10Gbps" (decimal multiples; "bit" for bits, "B" for bytes). Rounds to the
 * nearest kB/s; a rate that is not 0 never rounds down to 0.
 */
export function parseRate(text: string): number {
  const m = typeof text === 'string' ? RATE.exec(text.trim()) : null;
  let kbps = NaN;
  if (m) {
    const value = Number(m[1]);
    if (m[3]) kbps = (value * DECIMAL[m[2]!.toLowerCase()]! * (m[3] === 'B' ? 1 : 1 / 8)) / 1000;
    else if (m[4] !== undefined) kbps = (value * DECIMAL[m[4].toLowerCase()]!) / 8 / 1000;
    else kbps = value;
  }
  const rounded = kbps > 0 && kbps < 1 ? 1 : Math.round(kbps);
  if (!m || !Number.isSafeInteger(rounded) || rounded > MAX_RATE_KBPS) {
    throw new Error(
      `invalid rate "${String(text)}": write kilobytes per second as a plain number (1 kB = 1,000 bytes; 0: none), ` +
        `or a number with a unit: 200Mbit/s, 1Gbit/s, 10Gbps, 25MB/s, 500kB/s (at most about 17 Tbit/s)`,
    );
  }
  return rounded;
}

/** Bytes per second in decimal bits: "200 Mbit/s", "1.5 Gbit/s", "80 kbit/s". */
export function formatBitRate(bytesPerSecond: number): string {
  const bits = bytesPerSecond * 8;
  const [value, unit] = bits >= 1e12 ? [bits / 1e12, 'Tbit/s'] : bits >= 1e9 ? [bits / 1e9, 'Gbit/s'] : bits >= 1e6 ? [bits / 1e6, 'Mbit/s'] : [bits / 1e3, 'kbit/s'];
  return `${Number(value.toPrecision(4))} ${unit}`;
}

// Durations (s2uc --lifetime, s2cs --idle-stream-timeout, --max-stream-lifetime).
const DURATION_UNITS: Record<string, number> = { s: 1, sec: 1, m: 60, min: 60, h: 3600, d: 86_400 };
const DURATION = /^(?:\d+(?:\.\d+)?\s*(?:s|sec|m|min|h|d)\s*)+$/i;
const DURATION_PART = /(\d+(?:\.\d+)?)\s*(s|sec|min|m|h|d)/gi;

/**
 * Parses a duration into whole seconds: a plain number is seconds; otherwise
 * numbers with units s, m (or min), h, d, alone or together: "90s", "30m", "2h",
 * "1h30m", "1.5h". Rounds to the nearest second.
 */
export function parseDuration(text: string): number {
  const t = typeof text === 'string' ? text.trim() : '';
  let seconds = NaN;
  if (/^\d+(?:\.\d+)?$/.test(t)) seconds = Number(t);
  else if (DURATION.test(t)) {
    seconds = 0;
    for (const m of t.matchAll(DURATION_PART)) seconds += Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!;
  }
  const whole = Math.round(seconds);
  if (!Number.isSafeInteger(whole)) {
    throw new Error(`invalid duration "${String(text)}": write seconds as a plain number, or a number with a unit s, m, h or d, e.g. 90s, 30m, 2h, 1h30m`);
  }
  return whole;
}
