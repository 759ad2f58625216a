// Warm WAN connections (issue 22 point 5). A consumer's new connection through an
// encrypted stream waited for a TLS handshake with the producer gateway, 1-3 ms of
// CPU on both gateways and more when they are busy: its first byte came 2-4x later
// than through a stunnel pair. The consumer gateway therefore keeps, per listener
// of a stream in use, one connection to the producer gateway with its handshake
// done, and a new consumer connection takes it: its first byte waits only for the
// open frame and the producer gateway's connect to the producer.
//
// The producer gateway dials the producer for such a connection only at its open
// frame (tls.ts WAN_OPEN_ALPN), so a warm connection costs the producer nothing.
// Warm connections are kept only towards a producer gateway that negotiated that
// (an older one would dial the producer at once), only while the stream is used
// (a connection within WARM_WHILE_USED_MS), and each for WARM_MAX_AGE_MS at most,
// well within the producer gateway's wait (WARM_WAIT_MS).
import type { Socket } from 'node:net';
import type { ConnectionReads } from '../transport/index.js';

/** A warm connection is closed and replaced after this long unused. */
export const WARM_MAX_AGE_MS = 60_000;
/** How long the producer gateway keeps an authenticated connection waiting for its open frame. */
export const WARM_WAIT_MS = 2 * WARM_MAX_AGE_MS;
/** Connections are kept warm while the stream had a new connection within this long. */
export const WARM_WHILE_USED_MS = 5 * 60_000;
/**
 * A taken connection is replaced this long after: a handshake started at once ran
 * beside the new connection's first bytes on both gateways' event loops and cost
 * them about as much as it saved (first byte 2.8 ms against 3.6 cold; 1.2 ms with
 * the replacement 20 ms later, both gateways in one process).
 */
export const REFILL_DELAY_MS = 20;

/** A dialed, authenticated connection to the producer gateway, and the reads it was opened with. */
export interface Dialed {
  socket: Socket;
  reads: ConnectionReads;
}

interface Ready extends Dialed {
  timer: NodeJS.Timeout;
  dropped: () => void;
}

/** A dial under way; `claimed`: a connection that came meanwhile takes it when it is done. */
interface Dialing {
  done: Promise<Dialed | undefined>;
  claimed: boolean;
}

export class WarmConnections {
  private readonly ready: (Ready | undefined)[];
  private readonly dialing: (Dialing | undefined)[];
  private lastUsed = 0;
  private closed = false;

  /** `dial(i)`: a new connection to the producer gateway's listener `i` (its handshake done); `targets`: how many. */
  constructor(
    targets: number,
    private readonly dial: (i: number) => Promise<Dialed>,
    private readonly opensAtFrame: (socket: Socket) => boolean,
  ) {
    this.ready = new Array<Ready | undefined>(targets).fill(undefined);
    this.dialing = new Array<Dialing | undefined>(targets).fill(undefined);
  }

  /**
   * The warm connection to listener `i`: the one ready, or the one being dialed (its
   * handshake is under way: sooner than a new one); undefined: dial one now. Another
   * is dialed REFILL_DELAY_MS later.
   */
  take(i: number): Promise<Dialed | undefined> | undefined {
    this.lastUsed = Date.now();
    const w = this.ready[i];
    this.ready[i] = undefined;
    const inflight = this.dialing[i];
    setTimeout(() => this.refill(i), REFILL_DELAY_MS).unref();
    if (w) {
      clearTimeout(w.timer);
      w.socket.off('close', w.dropped);
      if (!w.socket.destroyed) return Promise.resolve({ socket: w.socket, reads: w.reads });
    }
    if (inflight && !inflight.claimed) {
      inflight.claimed = true;
      return inflight.done;
    }
    return undefined;
  }

  /** Closes the connections kept warm; none is dialed any more. */
  close(): void {
    this.closed = true;
    for (const w of this.ready) {
      if (!w) continue;
      clearTimeout(w.timer);
      w.socket.destroy();
    }
    this.ready.fill(undefined);
  }

  private refill(i: number): void {
    if (this.closed || this.dialing[i] || this.ready[i] || Date.now() - this.lastUsed > WARM_WHILE_USED_MS) return;
    const dialing: Dialing = { claimed: false, done: Promise.resolve(undefined) };
    dialing.done = this.dial(i).then(
      (d) => {
        this.dialing[i] = undefined;
        // An older producer gateway would have dialed the producer already: no warm connections to it.
        if (this.closed || !this.opensAtFrame(d.socket)) {
          if (!this.closed) this.close();
          d.socket.destroy();
          return undefined;
        }
        if (dialing.claimed) {
          setTimeout(() => this.refill(i), REFILL_DELAY_MS).unref();
          return d;
        }
        this.keep(i, d);
        return undefined;
      },
      () => {
        // Unreachable now: the next take dials (cold) and tries again.
        this.dialing[i] = undefined;
        return undefined;
      },
    );
    this.dialing[i] = dialing;
  }

  private keep(i: number, d: Dialed): void {
    const w: Ready = {
      ...d,
      // Replaced before the producer gateway stops waiting for it.
      timer: setTimeout(() => {
        if (this.ready[i] !== w) return;
        this.ready[i] = undefined;
        w.socket.destroy();
        this.refill(i);
      }, WARM_MAX_AGE_MS),
      // Closed by the peer (restarted, released): dialed again at the next take.
      dropped: () => {
        if (this.ready[i] !== w) return;
        clearTimeout(w.timer);
        this.ready[i] = undefined;
      },
    };
    w.timer.unref();
    d.socket.once('close', w.dropped);
    this.ready[i] = w;
  }
}
