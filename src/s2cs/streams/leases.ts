// A stream's lease: from its first req it has --setup-timeout to get its
// connection map (UpdateTargets), or the gateway releases it.
import type { Release, StreamRecord, TableState } from './record.js';

export class Leases {
  constructor(
    private readonly state: TableState,
    private readonly release: Release,
  ) {}

  /** Starts the stream's lease: it ends in `ms` unless UpdateTargets come first. */
  start(record: StreamRecord, ms: number): void {
    record.leaseTimer = setTimeout(() => this.ended(record), ms);
    record.leaseTimer.unref();
  }

  /** The lease is over without ending the stream (its connection map came, or it is released). */
  end(record: StreamRecord): void {
    if (record.leaseTimer) clearTimeout(record.leaseTimer);
    record.leaseTimer = undefined;
  }

  /** The lease ends: a stream still without its connection map is released (an UpdateTargets under way decides first). */
  private ended(record: StreamRecord): void {
    record.leaseTimer = undefined;
    if (this.state.records.get(record.request.uid) !== record || record.targets) return;
    // While the producer's Hello is awaited, its own timeout (never longer than the
    // lease) answers the req with the advice that fits; the lease is checked after.
    if (record.state === 'reserving' || record.state === 'awaiting-hello') {
      const again = () => this.ended(record);
      record.ready.then(again, again);
      return;
    }
    if (record.updating) {
      const again = () => this.ended(record);
      record.updating.then(again, again);
      return;
    }
    const seconds = this.state.opts.setupTimeoutMs / 1000;
    void this.release(record, `lease ended: no UpdateTargets within ${seconds} s of its request (--setup-timeout) in state ${record.state}`, 'warn').catch(
      (err: unknown) => this.state.opts.logger.error({ uid: record.request.uid, err }, 'releasing a stream whose lease ended failed'),
    );
  }
}
