// What a UDP stream forwarded and dropped: datagrams and bytes each direction, drops
// by cause. Nothing of a UDP stream is buffered without bound, so every datagram that
// does not fit is dropped and counted here (status, /metrics).

/**
 * Why a datagram was dropped. queue-full: the flow's or the agent's bytes in flight
 * (sent, not yet handed to the kernel) are at their bound; too-large: over 65,507 bytes
 * (all Linux refuses as too large with our sockets' options), or refused by the kernel as
 * too large (EMSGSIZE) after waiting in libuv's queue (send-queue.ts); no-flow: a reply for a flow that
 * ended, or a datagram before the stream has targets; rate-cap: the stream's cap
 * (--rate-policy) is spent; flow-limit: a new sender over --max-udp-flows on the
 * listener; allow-list: a sender outside the stream's allow_from; no-connection: the
 * encrypted WAN leg's connection for the flow is down (lost, being redialed); loop: a
 * datagram whose sender is one of the stream's own targets (address and port), which
 * would loop between the gateway and the target for ever (loop-guard.ts).
 */
export type DropCause = 'queue-full' | 'too-large' | 'no-flow' | 'rate-cap' | 'flow-limit' | 'allow-list' | 'no-connection' | 'loop';

export const DROP_CAUSES: readonly DropCause[] = ['queue-full', 'too-large', 'no-flow', 'rate-cap', 'flow-limit', 'allow-list', 'no-connection', 'loop'];

/** The largest UDP payload over IPv4 (65,535 - 8 - 20). */
export const MAX_DATAGRAM = 65_507;

export class DatagramCounters {
  datagramsToTarget = 0;
  datagramsFromTarget = 0;
  bytesToTarget = 0;
  bytesFromTarget = 0;
  flowsOpened = 0;
  private readonly drops = new Map<DropCause, number>();

  constructor(private readonly also?: DropTotals) {}

  drop(cause: DropCause): void {
    this.drops.set(cause, (this.drops.get(cause) ?? 0) + 1);
    this.also?.drop(cause);
  }

  /** Drops by cause, causes never seen left out. */
  dropCounts(): { cause: DropCause; count: number }[] {
    return DROP_CAUSES.filter((c) => this.drops.has(c)).map((cause) => ({ cause, count: this.drops.get(cause)! }));
  }
}

/** A data server's drops over all its UDP streams, released ones included. */
export class DropTotals {
  private readonly drops = new Map<DropCause, number>();

  drop(cause: DropCause): void {
    this.drops.set(cause, (this.drops.get(cause) ?? 0) + 1);
  }

  totals(): { cause: DropCause; count: number }[] {
    return DROP_CAUSES.filter((c) => this.drops.has(c)).map((cause) => ({ cause, count: this.drops.get(cause)! }));
  }
}
