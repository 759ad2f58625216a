// What a stream table is configured with, and what a running one may be given anew.
import type { Logger } from '../../log.js';
import type { Refusals } from '../../limits/refusals.js';
import type { DataServer } from '../../s2ds/index.js';

export interface StreamTableOptions {
  /** Returns listeners as advertised (each with its agent's --listener-ip). */
  dataServer: DataServer;
  /** How long req(PROD) waits for the producer's Hello, and a PROD Hello is held for its req. */
  helloTimeoutMs: number;
  /**
   * How long a consumer Hello waits for its req (at most helloTimeoutMs; default
   * CONS_HELLO_WAIT_MS). Short: the call holds a connection, and controllers (ours
   * and the reference's) retry, so a Hello sent too early is answered soon.
   */
  consHelloWaitMs?: number;
  /**
   * A stream without UpdateTargets this long after its first req is released
   * (--setup-timeout; never below helloTimeoutMs).
   */
  setupTimeoutMs: number;
  /**
   * A stream with its connection map that has had no connection this long (since
   * the map, or since its last connection ended) is released (--idle-stream-timeout);
   * absent or 0: never. See leases.ts.
   */
  idleStreamTimeoutMs?: number;
  /** No stream lives longer than this from its req, whatever its Request.lifetime_s (--max-stream-lifetime); absent or 0: no bound. */
  maxStreamLifetimeMs?: number;
  /**
   * How long a broken stream (its connections all ended abnormally) is kept before
   * it is released, so that an application that reconnects at once is not cut off
   * (--broken-grace; default BROKEN_GRACE_MS); 0: broken streams are shown, never
   * released for it (applications that end their connections with resets, iperf3 -R -P 4).
   */
  brokenGraceMs?: number;
  /** Producer Hellos that may wait for their req at once, all peers together, and from one peer address. */
  maxPendingHellos: number;
  maxPendingHellosPerPeer: number;
  /** Consumer Hellos that may wait for their req: each holds an open call, so fewer. */
  maxWaitingConsHellos: number;
  maxWaitingConsHellosPerPeer: number;
  /** Most producer listeners a Hello held before its req may carry (keeps each held Hello small). */
  maxHeldListeners: number;
  /** Ports one user may hold at once across its streams (--max-ports-per-user). */
  maxPortsPerUser: number;
  /**
   * Count ports per caller address instead of per identity: with --auth none every
   * caller is the same anonymous identity, so a per-identity bound would be one
   * bound for everybody, which the first flooder fills.
   */
  portsPerPeer: boolean;
  refusals: Refusals;
  /** Identities allowed to release any stream. */
  admins?: ReadonlySet<string>;
  /** Accept UpdateTargets without credentials on any bind address (--allow-plaintext-data): the WAN leg is then plain TCP. */
  allowPlaintextData?: boolean;
  /** Address the data listeners bind to (--bind-ip): on loopback, plain-TCP legs are accepted without the flag (see plaintextDataPolicy). */
  dataBindHost?: string;
  /**
   * Give each stream an application secret and accept a Hello only with it (s2cs
   * checks tokens). Off (--auth none): Hello needs no secret, as in the reference.
   */
  requireAppSecret?: boolean;
  /**
   * No token checking (--auth none): each stream is bound to its requester's control
   * secret or address (binding.ts), and only that proof may update, release or
   * re-request it. Off: the owner's identity decides, and a secret given is checked too.
   */
  bindStreams?: boolean;
  /**
   * With secrets on, also accept a Hello whose `authorization` token authenticates
   * as the stream's owner (--hello-accepts-owner-token): the reference's controllers
   * send the user's token, never a secret.
   */
  helloAcceptsOwnerToken?: boolean;
  /** What a stream's rate means here (--rate-policy); default none: stored and reported only. */
  ratePolicy?: RatePolicy;
  /** With ratePolicy reserve: what the gateway admits streams against, bytes per second (--capacity). */
  capacityBps?: number;
  /**
   * The gateway's bound on who may connect to any data listener (--data-allow-from,
   * canonical CIDR blocks); absent or empty: no bound. Each stream's own allow-list
   * is narrowed to it at its req (a reload applies to streams requested after it).
   */
  dataAllowFrom?: string[];
  logger: Logger;
}

/** What a running table may be given anew (StreamTable.reconfigure). */
export type TableSettings = Partial<
  Pick<
    StreamTableOptions,
    | 'helloTimeoutMs'
    | 'setupTimeoutMs'
    | 'maxPendingHellos'
    | 'maxPendingHellosPerPeer'
    | 'maxWaitingConsHellos'
    | 'maxWaitingConsHellosPerPeer'
    | 'maxHeldListeners'
    | 'maxPortsPerUser'
    | 'admins'
    | 'helloAcceptsOwnerToken'
    | 'dataAllowFrom'
  >
>;

/**
 * none: Request.rate is stored and reported (the reference's behaviour); cap: each
 * stream is held to its rate; reserve: cap, and a req is admitted only while the
 * live streams' rates fit in --capacity.
 */
export const RATE_POLICIES = ['none', 'cap', 'reserve'] as const;
export type RatePolicy = (typeof RATE_POLICIES)[number];

/** How long a broken stream is kept before it is released, by default: an application reconnecting at once is not cut off. */
export const BROKEN_GRACE_MS = 5_000;

/** How long a consumer Hello waits for its req by default. */
export const CONS_HELLO_WAIT_MS = 10_000;

/** How long a consumer Hello waits for its req under these options. */
export function consHelloWait(opts: StreamTableOptions): number {
  return Math.min(opts.consHelloWaitMs ?? CONS_HELLO_WAIT_MS, opts.helloTimeoutMs);
}
