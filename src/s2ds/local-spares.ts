// A data server's spare ports: each held ahead of any stream by a socket bound to it
// that does not listen. The kernel refuses connections to it (a reset answers the
// SYN: the client sees ECONNREFUSED, nothing is accepted), and no other program can
// bind it. A stream that takes it listens on that socket (LocalDataServer.assignSpares).
// Needs the native addon.
import { closeReserved, reservePort, reservePortNative } from '../transport/socket-options.js';
import type { PortPool } from './ports.js';

/** Bind errors that mean "someone else holds this port": the next one is tried. */
export const BIND_CONFLICTS = new Set(['EADDRINUSE', 'EACCES']);

export interface Spare {
  port: number;
  /** The bound socket's descriptor, the data server's until a stream's listener takes it over. */
  fd: number;
}

/** Why this data server holds no spares (undefined: it can), for the one log line and the refusal. */
export function sparesUnavailable(): string | undefined {
  if (reservePortNative()) return undefined;
  return (
    'spare listeners are off: holding a port without listening on it needs the native addon (native/build/linger.node) with reservePort, ' +
    'not loaded here; each request waits for its listeners to be opened instead (a few ms more). Build it with `npm run build:native` and restart'
  );
}

export class SparePorts {
  private readonly held = new Map<number, Spare>();

  constructor(private readonly pool: PortPool) {}

  has(port: number): boolean {
    return this.held.has(port);
  }

  /** Ports of the spares not taken by a stream. */
  ports(): number[] {
    return [...this.held.keys()];
  }

  /**
   * Binds up to `count` ports of the pool at `host` as spares. Returns them, and the
   * ports found held by another program (back in the pool already). On any other
   * bind error the spares opened by this call are closed and the error thrown.
   */
  open(host: string, count: number): { opened: number[]; busy: number[] } {
    const opened: number[] = [];
    const busy: number[] = [];
    try {
      while (opened.length < count) {
        const port = this.pool.take();
        if (port === undefined) break;
        try {
          this.held.set(port, { port, fd: reservePort(host, port) });
          opened.push(port);
        } catch (err) {
          busy.push(port);
          if (!BIND_CONFLICTS.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
        }
      }
    } catch (err) {
      for (const p of this.close(opened)) this.pool.give(p);
      throw err;
    } finally {
      for (const p of busy) this.pool.give(p);
    }
    return { opened, busy };
  }

  /** The spares on these ports, taken out for a stream (its listeners take their descriptors); undefined where a port is none. */
  take(ports: readonly number[]): (Spare | undefined)[] {
    const taken = ports.map((p) => this.held.get(p));
    for (const s of taken) if (s) this.held.delete(s.port);
    return taken;
  }

  /** Closes the spares on these ports (others are ignored); returns their ports, which the caller gives back or reuses. */
  close(ports: readonly number[]): number[] {
    const closed: number[] = [];
    for (const p of ports) {
      const s = this.held.get(p);
      if (!s) continue;
      this.held.delete(p);
      closeReserved(s.fd);
      closed.push(p);
    }
    return closed;
  }
}
