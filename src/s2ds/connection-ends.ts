// How a stream's forwarded connections ended: cleanly (a FIN, or on a framed WAN
// leg an END frame, both ways) or abnormally (a reset, an error, a dead WAN peer).
// s2cs tells a broken stream by these (s2cs/streams/leases.ts): every connection
// that ended since the last clean end ended abnormally, and none is open. Per
// connection, never per chunk.
import type { Socket } from 'node:net';
import { abnormalEnd } from './access-log.js';

/** A stream's connection ends as its data server reports them (StreamStats, StreamInfo 50-54). */
export interface ConnectionEndCounts {
  cleanEnds: number;
  abnormalEnds: number;
  /** When the last one ended (ms since epoch); 0: none has. */
  lastEndAt: number;
  lastEndAbnormal: boolean;
  /** The error the last abnormal end came with (e.g. ECONNRESET); '' when none was reported. */
  lastEndError: string;
}

/**
 * The side whose failure broke a connection, by the error the forwarder then destroys
 * both sockets with: the other socket may report it first (a failed write's callback
 * runs before its socket is destroyed).
 */
export const failedSide = new WeakMap<Error, 'peer' | 'target'>();

/** Errors are codes or short messages; one from a peer is not trusted to be short. */
const MAX_ERROR_TEXT = 200;

export class ConnectionEnds {
  private clean = 0;
  private abnormal = 0;
  private lastAt = 0;
  private lastAbnormal = false;
  private lastError = '';

  /**
   * Watches one forwarded connection, its accepted socket and its target socket;
   * its end is counted once both have closed. It ended cleanly only if neither
   * closed with an error and each both read its peer's end and finished its own.
   * `onEnd` then hears how (access-log.ts abnormalEnd): by the first socket that
   * failed, the other being reset after it by the forwarder.
   */
  watch(accepted: Socket, target: Socket, onEnd?: (end: string) => void): void {
    let open = 2;
    let abnormal = false;
    let error = '';
    let first: { side: 'peer' | 'target'; err: NodeJS.ErrnoException | undefined } | undefined;
    const onError = (side: 'peer' | 'target') => (err: NodeJS.ErrnoException) => {
      if (!error) error = String(err.code ?? err.message).slice(0, MAX_ERROR_TEXT);
      first ??= { side: failedSide.get(err) ?? side, err };
    };
    const onClose = (s: Socket, side: 'peer' | 'target') => (hadError: boolean) => {
      if (hadError || !(s.readableEnded && s.writableFinished)) {
        abnormal = true;
        first ??= { side, err: undefined };
      }
      if (--open === 0) {
        this.ended(abnormal, error);
        onEnd?.(abnormal ? abnormalEnd(first!.side, first!.err) : 'clean');
      }
    };
    accepted.on('error', onError('peer'));
    target.on('error', onError('target'));
    accepted.once('close', onClose(accepted, 'peer'));
    target.once('close', onClose(target, 'target'));
  }

  counts(): ConnectionEndCounts {
    return { cleanEnds: this.clean, abnormalEnds: this.abnormal, lastEndAt: this.lastAt, lastEndAbnormal: this.lastAbnormal, lastEndError: this.lastError };
  }

  private ended(abnormal: boolean, error: string): void {
    if (abnormal) this.abnormal++;
    else this.clean++;
    this.lastAt = Date.now();
    this.lastAbnormal = abnormal;
    this.lastError = abnormal ? error : '';
  }
}

/**
 * The ends of one stream over several data servers: counts add up, and the last
 * end is the latest of theirs. A part without counts (an agent from before them) adds nothing.
 */
export function mergeEnds(into: Partial<ConnectionEndCounts>, part: Partial<ConnectionEndCounts>): void {
  into.cleanEnds = (into.cleanEnds ?? 0) + (part.cleanEnds ?? 0);
  into.abnormalEnds = (into.abnormalEnds ?? 0) + (part.abnormalEnds ?? 0);
  if ((part.lastEndAt ?? 0) > (into.lastEndAt ?? 0)) {
    into.lastEndAt = part.lastEndAt;
    into.lastEndAbnormal = part.lastEndAbnormal ?? false;
    into.lastEndError = part.lastEndError ?? '';
  }
}
