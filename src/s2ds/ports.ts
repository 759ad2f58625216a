// The gateway's port range. Hands out ports round-robin so that a port just
// released is not reused at once (late packets of an old stream find nothing).
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

  give(port: number): void {
    this.inUse.delete(port);
  }
}
