// One stream's record as the table holds it, the state the table's parts share,
// and the answers read from a record.
import type { Identity } from '../../auth/index.js';
import { formatAddress, type Address } from '../../protocol/address.js';
import type { StreamRequest } from '../../protocol/validate.js';
import type { RateWindow } from '../rates.js';
import type { StreamTableOptions } from './options.js';
import type { StreamBinding } from './binding.js';

export type StreamState = 'reserving' | 'awaiting-hello' | 'awaiting-update' | 'ready';

export interface StreamReply {
  listeners: string[];
  prodListeners: string[];
}

export interface StreamRecord {
  request: StreamRequest;
  owner: Identity;
  /**
   * What the stream's application controllers present with Hello ('' when not
   * required, and after an s2cs restart: only its hash is kept on the agents).
   */
  appSecret: string;
  /** SHA-256 of the application secret ('' when not required): what Hello is checked against. */
  appSecretHash: string;
  /** What proves control of the stream (binding.ts): its control secret's hash, the requester's address. */
  binding: StreamBinding;
  /** The control secret until the req that made the stream has taken it for its answer; '' after (only its hash is kept). */
  controlSecret: string;
  state: StreamState | 'released';
  listeners: Address[];
  prodListeners: Address[] | undefined;
  targets: Address[] | undefined;
  /** Fingerprint of the WAN certificate in force ('' for plain TCP); tells a retry from a change. */
  wanIdentity: string | undefined;
  /** Settles once the listeners are bound (or reserving failed). */
  bound: Promise<void>;
  /** Settles with the req answer: at once for CONS, after Hello for PROD. */
  ready: Promise<StreamReply>;
  helloArrived?: (listeners: Address[]) => void;
  abort?: (why: string) => void;
  /** Whose port budget the stream's ports count against, and whether they were given back. */
  quotaKey: string;
  quotaReturned: boolean;
  /** When the lease ends (ms since epoch) unless UpdateTargets come first. */
  leaseEnds: number;
  leaseTimer: NodeJS.Timeout | undefined;
  /** An UpdateTargets in progress: the lease waits for its outcome. */
  updating: Promise<unknown> | undefined;
  /** The record's last store on the agents (persistSoon), in order; never rejects. */
  persisting?: Promise<void>;
  /** A store is queued and not started: it will read the record as it is then, so another is not needed. */
  persistQueued?: boolean;
  /**
   * An UpdateTargets carrying the whole record was sent (or applied): a store
   * queued before it would only put an older record after it, so it is skipped.
   */
  mapCarriesRecord?: boolean;
  /** When the first req arrived (ms since epoch). */
  createdAt: number;
  /** When its connection map first applied (ms since epoch; for an adopted stream, when this s2cs first looked): the idle clock starts there (leases.ts). */
  mappedAt?: number;
  /** Recent samples of the data server's byte counters, for the rates in status. */
  rates: RateWindow;
  /** Bytes per second the stream is held to (and, with reserve, takes of --capacity); 0: none. */
  capBps: number;
  /** Who may connect to its listeners, as they enforce it (its allow_from within --data-allow-from); []: anyone. */
  allowFrom: string[];
  /** A standing tunnel: the configuration file that holds it ([[tunnel]]); only a reload changes it (tunnels/). */
  standing?: string;
}

/** Releases a stream, saying why (release.ts). */
export type Release = (record: StreamRecord, why: string, level?: 'info' | 'warn') => Promise<void>;

/** What every part of the table reads: its options (reconfigure replaces them) and its streams by uid. */
export interface TableState {
  opts: StreamTableOptions;
  readonly records: Map<string, StreamRecord>;
}

export function reply(record: StreamRecord): StreamReply {
  return { listeners: record.listeners.map(formatAddress), prodListeners: (record.prodListeners ?? []).map(formatAddress) };
}

export function noop(): void {}

/** Read through a function: TypeScript would otherwise keep a narrowing made before an await. */
export function released(record: StreamRecord): boolean {
  return record.state === 'released';
}
