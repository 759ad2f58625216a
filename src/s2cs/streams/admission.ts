// Admission of a stream and its ports: the rate it is held to and, under
// --rate-policy reserve, whether it fits in --capacity; the ports each user (or
// caller address) holds against --max-ports-per-user.
import type { Identity } from '../../auth/index.js';
import { invalidArgument, resourceExhausted } from '../../protocol/errors.js';
import type { StreamRequest } from '../../protocol/validate.js';
import { formatBitRate } from '../../units.js';
import { boundAllowList } from '../../protocol/cidr.js';
import { counted } from './counted.js';
import type { RatePolicy } from './options.js';
import type { StreamRecord, TableState } from './record.js';

export class Admission {
  /** Ports held by each quota key (see portsPerPeer), counted from req on, so that concurrent reqs cannot overshoot. */
  private readonly portsHeld = new Map<string, number>();

  constructor(private readonly state: TableState) {}

  /** What the stream's rate is held to under the policy, bytes per second (0: not capped). */
  capFor(request: StreamRequest): number {
    return (this.state.opts.ratePolicy ?? 'none') !== 'none' ? request.rate * 1000 : 0;
  }

  /** The rate policy, and with reserve the capacity streams are admitted against (bytes per second). */
  rateLimits(): { policy: RatePolicy; capacityBps: number } {
    const policy = this.state.opts.ratePolicy ?? 'none';
    return { policy, capacityBps: policy === 'reserve' ? (this.state.opts.capacityBps ?? 0) : 0 };
  }

  /** With --rate-policy reserve: the rates of the streams held now, bytes per second. */
  reservedBps(): number {
    let sum = 0;
    for (const r of this.state.records.values()) if (r.state !== 'released') sum += r.capBps;
    return sum;
  }

  /**
   * Under reserve, admits the stream only if its rate fits in what --capacity
   * leaves (synchronously, like the port bound: concurrent reqs cannot overshoot),
   * or refuses with RESOURCE_EXHAUSTED saying how much is free. A req stating no
   * rate (0) is refused: admitting it would promise nothing and let it take what
   * the others were promised. Returns the stream's cap.
   */
  admit(request: StreamRequest, caller: Identity, peer: string): number {
    const cap = this.capFor(request);
    if (this.state.opts.ratePolicy !== 'reserve') return cap;
    const capacity = this.state.opts.capacityBps ?? 0;
    const held = this.reservedBps();
    const free = Math.max(0, capacity - held);
    const fields = { uid: request.uid, owner: caller.subject, peer, asked: cap, free, capacity };
    if (cap === 0) {
      const message =
        `stream ${request.uid} states no rate, and this gateway admits streams by their rate (--rate-policy reserve): ` +
        `state one, e.g. s2uc --rate 200Mbit/s (Request.rate in kB/s); ${formatBitRate(free)} of its ${formatBitRate(capacity)} are free now`;
      this.state.opts.refusals.count('capacity', message, fields);
      throw counted(invalidArgument(message));
    }
    if (cap > free) {
      const message =
        `stream ${request.uid} asks for ${formatBitRate(cap)}, but the streams on this gateway hold ${formatBitRate(held)} of its ${formatBitRate(capacity)} (--capacity) ` +
        `and ${formatBitRate(free)} ${free > 0 ? 'is' : 'are'} free: ask for at most ${formatBitRate(free)} (s2uc --rate), or retry when streams are released`;
      this.state.opts.refusals.count('capacity', message, fields);
      throw counted(resourceExhausted(message));
    }
    return cap;
  }

  /**
   * Counts the stream's ports against its user's bound before anything is
   * reserved (synchronously: concurrent reqs cannot all pass the check), or
   * refuses with RESOURCE_EXHAUSTED. Returns the key they are counted under.
   */
  takePorts(request: StreamRequest, caller: Identity, peer: string): string {
    const key = this.state.opts.portsPerPeer ? `address ${peer || 'unknown'}` : `user ${caller.subject}`;
    const held = this.portsHeld.get(key) ?? 0;
    const max = this.state.opts.maxPortsPerUser;
    if (held + request.numConn > max) {
      const who = this.state.opts.portsPerPeer ? `callers from ${peer || 'an unknown address'} (no authentication: ports are counted per address)` : `user ${caller.subject}`;
      const free = this.state.opts.dataServer.ports().free;
      const message =
        `${who} already hold${this.state.opts.portsPerPeer ? '' : 's'} ${held} port(s) on this gateway and stream ${request.uid} asks for ${request.numConn} more; ` +
        `one user may hold at most ${max} at once (--max-ports-per-user); this gateway has ${free} free ports. ` +
        (request.numConn > max
          ? 'Ask for fewer connections (--num-conn), or ask the operator to raise --max-ports-per-user'
          : `Release streams you no longer need (s2uc release UID), let unfinished ones expire (${this.state.opts.setupTimeoutMs / 1000} s after their request without UpdateTargets), then retry`);
      this.state.opts.refusals.count('ports-per-user', message, { uid: request.uid, owner: caller.subject, peer, held, asked: request.numConn, max });
      throw counted(resourceExhausted(message));
    }
    this.portsHeld.set(key, held + request.numConn);
    return key;
  }

  /**
   * The allow-list the stream's listeners enforce: its own (Request.allow_from)
   * narrowed to the gateway's --data-allow-from (cidr.ts boundAllowList); [] when
   * neither names any (anyone may connect). Asking only for sources outside the
   * gateway's bound is refused with INVALID_ARGUMENT: the stream could never be used.
   */
  allowListFor(request: StreamRequest): string[] {
    const gateway = this.state.opts.dataAllowFrom ?? [];
    const bound = boundAllowList(request.allowFrom ?? [], gateway);
    if (bound) return bound;
    throw invalidArgument(
      `allow_from of stream ${request.uid} (${(request.allowFrom ?? []).join(', ')}) lies wholly outside what this gateway admits on its data listeners ` +
        `(--data-allow-from ${gateway.join(',')}): no source could connect. Ask for sources within it, or ask the operator`,
    );
  }

  /** Gives the stream's ports back to its key's budget (once). */
  returnPorts(record: StreamRecord): void {
    if (record.quotaReturned) return;
    record.quotaReturned = true;
    const left = (this.portsHeld.get(record.quotaKey) ?? 0) - record.request.numConn;
    if (left > 0) this.portsHeld.set(record.quotaKey, left);
    else this.portsHeld.delete(record.quotaKey);
  }

  /** A stream taken back from the agents holds its ports again, under the key it had. */
  holdAgain(quotaKey: string, numConn: number): void {
    this.portsHeld.set(quotaKey, (this.portsHeld.get(quotaKey) ?? 0) + numConn);
  }
}
