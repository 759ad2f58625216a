// Bytes in flight: dgram's send is asynchronous (the datagram waits in libuv until the
// socket is writable), so a fast sender could queue without bound. Each flow and the
// whole data server count what they handed to send and not yet got back; a datagram
// that would go over either bound is dropped (queue-full) instead.

/** A data server's bytes in flight over all UDP flows (--max-buffer-memory-like bound for datagrams). */
export class InFlight {
  bytes = 0;
  constructor(readonly limit: number) {}
}

export const UDP_DEFAULTS = {
  /** Flows (senders) per listener: --max-udp-flows. */
  maxFlowsPerListener: 1024,
  /** --udp-idle-timeout, seconds. */
  idleTimeoutS: 60,
  /** Bytes one flow may have in flight, each direction together: a few dozen large datagrams. */
  maxQueuedPerFlow: 1024 * 1024,
  /** Bytes in flight over every flow of the data server. */
  maxQueuedPerServer: 64 * 1024 * 1024,
} as const;
