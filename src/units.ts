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
