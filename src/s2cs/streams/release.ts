// The end of a stream: released by its owner, by its lease, with its agent, or at
// shutdown; what the released streams carried, and which ones the gateway ended
// by itself lately (status shows why).
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

export class Releases {
  /** After detach() the streams belong to the next s2cs: nothing here may release them. */
  detached = false;
  /** Bytes the streams released so far carried, as last read before their release (scistream_bytes_total). */
  readonly releasedBytes = { toTarget: 0, fromTarget: 0 };
  /** Streams this gateway ended by itself lately, newest last (status shows why). */
  private readonly endedLately: EndedStream[] = [];

  constructor(
    private readonly state: TableState,
    private readonly leases: Leases,
    private readonly admission: Admission,
  ) {}

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
    } finally {
      // Counted until the ports are really free, so that a user cannot outrun its bound by releasing.
      this.admission.returnPorts(record);
    }
    if (!wasReserving || stats || level === 'warn') {
      this.state.opts.logger[level](
        { uid, owner: record.owner.subject, why, bytesToTarget: stats?.bytesToTarget ?? 0, bytesFromTarget: stats?.bytesFromTarget ?? 0, connections: stats?.acceptedConnections ?? 0 },
        'stream released',
      );
    }
  }

  /** Streams this gateway ended by itself lately (not released by their owner), newest last. */
  endedRecently(): readonly EndedStream[] {
    return this.endedLately;
  }
}
