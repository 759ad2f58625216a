// --orphan-timeout: an agent that no s2cs has called for that long drops its
// streams. s2cs polls every agent once a second, so such silence means every s2cs
// is cut off from it (a partition, all of them gone): nobody can confirm that the
// streams are still wanted, nor release them. Off by default, so that streams
// outlive a crashed or restarting s2cs (the next one adopts them).
import type { Logger } from '../../log.js';

export interface OrphanWatchOptions {
  /** 0: never. */
  timeoutMs: number;
  /** When an s2cs last called this agent. */
  lastContact(): number;
  /** The streams held now. */
  streams(): string[];
  /** Releases one stream (connections reset, ports freed). */
  drop(uid: string): Promise<void>;
  logger: Logger;
}

export interface OrphanWatch {
  stop(): void;
}

export function watchOrphans(opts: OrphanWatchOptions): OrphanWatch {
  if (opts.timeoutMs <= 0) return { stop() {} };
  let dropping = false;
  const timer = setInterval(
    () => {
      const silentMs = Date.now() - opts.lastContact();
      if (dropping || silentMs < opts.timeoutMs) return;
      const uids = opts.streams();
      if (uids.length === 0) return;
      dropping = true;
      const seconds = Math.round(silentMs / 1000);
      opts.logger.warn(
        { uids, silentS: seconds, orphanTimeoutS: opts.timeoutMs / 1000 },
        `no s2cs has called this agent for ${seconds} s (--orphan-timeout ${opts.timeoutMs / 1000}): nobody can confirm its ${uids.length} stream(s) are still wanted, ` +
          `so they are dropped (connections reset, ports freed): ${uids.slice(0, 20).join(', ')}${uids.length > 20 ? ', ...' : ''}. ` +
          'Check the network between s2cs and this agent; the streams must be requested again',
      );
      void Promise.allSettled(uids.map((uid) => opts.drop(uid))).then((results) => {
        results.forEach((r, i) => {
          if (r.status === 'rejected') opts.logger.error({ uid: uids[i], err: r.reason as unknown }, 'dropping an orphaned stream failed');
        });
        dropping = false;
      });
    },
    Math.min(1000, Math.max(100, opts.timeoutMs / 4)),
  );
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
