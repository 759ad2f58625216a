// Who may hold the control port: connections and unfinished TLS handshakes per source
// address (IPv6 per /64) and connections in all, checked when a connection is accepted,
// before Node builds a TLS socket or an HTTP/2 session for it. A refused connection is
// reset at once (RST: no TIME_WAIT, nothing kept) and counted; one source's flood then
// holds at most its share, and other sources go on being served.
import type { Server as NetServer, Socket } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import type { Refusals } from '../limits/refusals.js';
import { peerKey } from './pending.js';

export interface ControlAdmissionLimits {
  /** Connections one source (an address; IPv6: a /64) may hold open at once. */
  maxConnsPerSource: number;
  /** Connections of one source still in their TLS handshake at once. */
  maxHandshakesPerSource: number;
  /** Connections open at once, all sources together. */
  maxConns: number;
}

export const CONTROL_ADMISSION_DEFAULTS: ControlAdmissionLimits = {
  // A client process uses one connection per channel; a site behind one NAT address runs a few dozen.
  maxConnsPerSource: 256,
  // A client finishes its handshake within a round trip or two; more at once from one address is a flood.
  maxHandshakesPerSource: 64,
  // About 80 KiB each once TLS and HTTP/2 are up (measured: 3,900 connections, about 300 MiB).
  maxConns: 4096,
};

interface Source {
  conns: number;
  handshakes: number;
}

/** Counts per source, and the listeners' accept hook that applies the limits. */
export class ControlAdmission {
  private readonly sources = new Map<string, Source>();
  /** Connections in their TLS handshake, by "address|port" (how the TLS socket finds its raw socket's entry). */
  private readonly handshaking = new Map<string, string>();
  private total = 0;

  constructor(
    private limits: ControlAdmissionLimits,
    private readonly refusals: Refusals | undefined,
  ) {}

  setLimits(limits: ControlAdmissionLimits): void {
    this.limits = { ...limits };
  }

  /** Open connections and unfinished handshakes now, and the number of sources holding any. */
  held(): { conns: number; handshakes: number; sources: number } {
    return { conns: this.total, handshakes: this.handshaking.size, sources: this.sources.size };
  }

  heldBy(address: string): { conns: number; handshakes: number } {
    const s = this.sources.get(peerKey(address));
    return { conns: s?.conns ?? 0, handshakes: s?.handshakes ?? 0 };
  }

  /**
   * Puts the limits in front of a listener: its 'connection' listeners (Node's TLS or
   * HTTP/2 set-up, grpc-js's own checks) run only for an admitted connection.
   * `tls`: the listener does a TLS handshake, finished at its 'secureConnection'.
   */
  guard(server: NetServer, tls: boolean): void {
    const setUp = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      if (!this.admit(socket, tls)) return;
      for (const listener of setUp) listener.call(server, socket);
    });
    if (tls) server.on('secureConnection', (socket: Socket) => this.handshakeDone(`${socket.remoteAddress}|${socket.remotePort ?? 0}`));
  }

  private admit(socket: Socket, tls: boolean): boolean {
    const address = socket.remoteAddress;
    if (address === undefined) {
      // Gone before it was accepted (reset by the peer): nothing to serve.
      socket.destroy();
      return false;
    }
    const key = peerKey(address);
    const s = this.sources.get(key) ?? { conns: 0, handshakes: 0 };
    const refused =
      this.total >= this.limits.maxConns
        ? { kind: 'control-conns' as const, why: `${this.total} control connections are open, the most s2cs holds (--max-control-conns ${this.limits.maxConns})` }
        : s.conns >= this.limits.maxConnsPerSource
          ? { kind: 'control-conns-per-source' as const, why: `${key} holds ${s.conns} control connections, the most one source may (--max-control-conns-per-source ${this.limits.maxConnsPerSource})` }
          : tls && s.handshakes >= this.limits.maxHandshakesPerSource
            ? { kind: 'control-handshakes-per-source' as const, why: `${key} has ${s.handshakes} TLS handshakes unfinished on the control port, the most one source may (--max-control-handshakes-per-source ${this.limits.maxHandshakesPerSource})` }
            : undefined;
    if (refused) {
      this.refusals?.count(refused.kind, `control connection from ${key} refused (reset): ${refused.why}`, { source: key });
      socket.on('error', () => undefined);
      socket.resetAndDestroy();
      return false;
    }
    s.conns++;
    this.total++;
    this.sources.set(key, s);
    const id = `${address}|${socket.remotePort ?? 0}`;
    if (tls) {
      s.handshakes++;
      this.handshaking.set(id, key);
    }
    socket.once('close', () => {
      this.handshakeDone(id);
      s.conns--;
      this.total--;
      if (s.conns === 0) this.sources.delete(key);
    });
    return true;
  }

  /** The TLS handshake of connection `id` ended: finished, failed or cut off. */
  private handshakeDone(id: string): void {
    const key = this.handshaking.get(id);
    if (key === undefined) return;
    this.handshaking.delete(id);
    const s = this.sources.get(key);
    if (s) s.handshakes--;
  }
}

/** The part of grpc-js's Server that makes the HTTP/2 listener for each bound address (not in its typings). */
interface ListenerFactory {
  createHttp2Server?: (credentials: grpc.ServerCredentials) => NetServer;
}

/**
 * Makes every listener `server` opens from now on (bindAsync) start behind `admission`.
 * grpc-js offers no hook between accept and its TLS set-up; it makes each listener in
 * createHttp2Server, which is wrapped here. Throws when a grpc-js version lacks it, so
 * that an upgrade cannot silently drop the limits (test/s2cs/control-admission.test.ts).
 */
export function admitThrough(server: grpc.Server, admission: ControlAdmission): void {
  const factory = server as unknown as ListenerFactory;
  const create = factory.createHttp2Server;
  if (typeof create !== 'function') throw new Error('this @grpc/grpc-js has no Server.createHttp2Server: the control port cannot apply its per-source limits; install the version in package.json');
  factory.createHttp2Server = (credentials) => {
    const listener = create.call(server, credentials);
    admission.guard(listener, credentials._isSecure());
    return listener;
  };
}
