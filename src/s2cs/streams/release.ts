// The end of a stream: released by its owner, by its lease, with its agent, or at
// shutdown; what the released streams carried, and which ones the gateway ended
// by itself lately (status shows why).
//
// A release an agent does not answer is partial (PartialRelease): its part may go
// on forwarding. The stream then stays `releasing` in status, naming the agent,
// its ports stay counted, its uid cannot be requested again, and a release by
// request answers the error again; when the agent answers (the pool retries), the
// stream ends and is listed with the ended ones, with how it ended.
import { PartialRelease } from '../../s2ds/releases.js';
import type { UnreleasedShare } from '../../s2ds/index.js';
import type { Admission } from './admission.js';
import type { Leases } from './leases.js';
import type { StreamRecord, TableState } from './record.js';

export const RELEASED_BY_REQUEST = 'released by request';
export const SHUTTING_DOWN = 'server shutting down';
/** How many self-ended streams status remembers (a few KiB). */
const MAX_ENDED_KEPT = 100;

export interface EndedStream {
  uid: string;
  owner: string;
  why: string;
  /** When it ended (ms since epoch). */
  at: number;
}

/** A stream whose release an agent has not confirmed. */
export interface ReleasingStream {
  record: StreamRecord;
  why: string;
  /** When the release was asked (ms since epoch). */
  since: number;
}

export class Releases {
  /** After detach() the streams belong to the next s2cs: nothing here may release them. */
  detached = false;
  /** Streams whose release some agent has not confirmed, by uid. */
  private readonly partial = new Map<string, ReleasingStream>();
  /** Bytes the streams released so far carried, as last read before their release (scistream_bytes_total). */
  readonly releasedBytes = { toTarget: 0, fromTarget: 0 };
  /** Streams this gateway ended by itself lately, newest last (status shows why). */
  private readonly endedLately: EndedStream[] = [];

  constructor(
    private readonly state: TableState,
    private readonly leases: Leases,
    private readonly admission: Admission,
  ) {
    state.opts.dataServer.onReleased?.((uid, how) => this.completed(uid, how));
  }

  /** Releases the stream on the data server and gives its ports back; `why` goes to the log, and to endedRecently unless by request or shutdown. */
  async release(record: StreamRecord, why: string, level: 'info' | 'warn' = 'info'): Promise<void> {
    const { uid } = record.request;
    // After detach() the streams belong to the next s2cs: nothing here may release them.
    if (this.detached) return;
    if (this.state.records.get(uid) === record) this.state.records.delete(uid);
    const wasReserving = record.state === 'reserving';
    record.state = 'released';
    if (why !== RELEASED_BY_REQUEST && why !== SHUTTING_DOWN) {
      this.endedLately.push({ uid, owner: record.owner.subject, why, at: Date.now() });
      if (this.endedLately.length > MAX_ENDED_KEPT) this.endedLately.shift();
    }
    this.leases.end(record);
    record.abort?.(why);
    const stats = this.state.opts.dataServer.stats(uid);
    // The gateway's byte totals (metrics) keep what released streams carried.
    this.releasedBytes.toTarget += stats?.bytesToTarget ?? 0;
    this.releasedBytes.fromTarget += stats?.bytesFromTarget ?? 0;
    try {
      await this.state.opts.dataServer.release(uid);
    } catch (err) {
      if (!(err instanceof PartialRelease)) {
        this.admission.returnPorts(record);
        throw err;
      }
      // Its ports stay counted until the agent confirms: they are not free yet.
      this.partial.set(uid, { record, why, since: Date.now() });
      this.state.opts.logger.warn({ uid, owner: record.owner.subject, why, agents: err.shares }, `stream release partial: ${err.message}`);
      // The owner is told; the gateway's own releases (lease, lost agent, shutdown) are followed the same way.
      if (why === RELEASED_BY_REQUEST) throw err;
      return;
    }
    // Counted until the ports are really free, so that a user cannot outrun its bound by releasing.
    this.admission.returnPorts(record);
    if (!wasReserving || stats || level === 'warn') {
      this.state.opts.logger[level](
        { uid, owner: record.owner.subject, why, bytesToTarget: stats?.bytesToTarget ?? 0, bytesFromTarget: stats?.bytesFromTarget ?? 0, connections: stats?.acceptedConnections ?? 0 },
        'stream released',
      );
    }
  }

  /** Streams this gateway ended by itself lately (not released by their owner, or released in part first), newest last. */
  endedRecently(): readonly EndedStream[] {
    return this.endedLately;
  }

  /** The stream being released, when an agent has not confirmed it. */
  releasing(uid: string): ReleasingStream | undefined {
    return this.partial.get(uid);
  }

  /** Every stream being released, with what each agent still holds. */
  releasingAll(): { stream: ReleasingStream; on: readonly UnreleasedShare[] }[] {
    return [...this.partial.values()].map((stream) => ({ stream, on: this.on(stream.record.request.uid) }));
  }

  /** What agents still hold of a stream being released. */
  on(uid: string): readonly UnreleasedShare[] {
    return this.state.opts.dataServer.releasing?.(uid) ?? [];
  }

  /** The error a repeated release gets while an agent has not confirmed the first. */
  stillPartial(uid: string): PartialRelease {
    return new PartialRelease(uid, this.on(uid));
  }

  /** Every agent confirmed a partial release: the stream ends now. */
  private completed(uid: string, how: string): void {
    const entry = this.partial.get(uid);
    if (!entry || this.detached) return;
    this.partial.delete(uid);
    this.admission.returnPorts(entry.record);
    const why = entry.why === RELEASED_BY_REQUEST ? how : `${entry.why}; ${how.replace(/^released by request; /, '')}`;
    // A stream the gateway ended by itself is listed already (since its release began): completed in place.
    const listed = this.endedLately.find((e) => e.uid === uid && e.why === entry.why);
    if (listed) {
      listed.why = why;
      listed.at = Date.now();
    } else {
      this.endedLately.push({ uid, owner: entry.record.owner.subject, why, at: Date.now() });
      if (this.endedLately.length > MAX_ENDED_KEPT) this.endedLately.shift();
    }
    this.state.opts.logger.info({ uid, owner: entry.record.owner.subject, why }, 'stream released');
  }
}
