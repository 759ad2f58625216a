// The control server's options with their defaults filled in and checked, and
// the stream table's limits read from them (at start and at each reload).
import { createLogger, type Logger } from '../log.js';
import { NoAuth, type Authenticator } from '../auth/index.js';
import { invalidArgument } from '../protocol/errors.js';
import { DATA_DEFAULTS, type PortRange } from '../s2ds/index.js';
import { Refusals } from '../limits/refusals.js';
import { isLoopback, plaintextDataPolicy, type RatePolicy, type TableSettings } from './streams/index.js';
import { formatBitRate } from '../units.js';
import type { ControlServerOptions } from './server.js';

export const DEFAULTS = {
  host: '0.0.0.0',
  helloTimeoutMs: 180_000,
  maxConn: 64,
  bufferSize: 4 * 1024 * 1024,
  setupTimeoutMs: 300_000,
  /** --idle-stream-timeout: a stream with no connection for an hour is let go. */
  idleStreamTimeoutMs: 3_600_000,
  maxPendingHellos: 10_000,
  maxPendingHellosPerPeer: 1_000,
} as const;

/**
 * Half the port range, so that one user can never take the whole gateway and at
 * least half stays for others; but never below --max-conn (capped at the range),
 * so that one stream of the largest size the gateway accepts still fits on an
 * empty gateway.
 */
export function defaultMaxPortsPerUser(range: PortRange, maxConn: number): number {
  const size = range.last - range.first + 1;
  return Math.min(size, Math.max(Math.ceil(size / 2), maxConn));
}

/** ControlServerOptions with the defaults applied and checked. */
export interface ServerSettings {
  logger: Logger;
  helloTimeoutMs: number;
  bufferSize: number;
  setupTimeoutMs: number;
  maxConn: number;
  maxPendingHellos: number;
  maxPendingHellosPerPeer: number;
  refusals: Refusals;
  /** Address the data listeners bind to. */
  dataBindHost: string;
  auth: Authenticator;
  ratePolicy: RatePolicy;
  maxBufferMemory: number;
}

/** Fills in the defaults; throws INVALID_ARGUMENT for options that cannot go together. */
export function resolveSettings(opts: ControlServerOptions): ServerSettings {
  const logger = opts.logger ?? createLogger({ silent: true });
  const helloTimeoutMs = opts.helloTimeoutMs ?? DEFAULTS.helloTimeoutMs;
  const setupTimeoutMs = opts.setupTimeoutMs ?? Math.max(DEFAULTS.setupTimeoutMs, helloTimeoutMs);
  checkTimeouts(setupTimeoutMs, helloTimeoutMs);
  const maxPendingHellos = opts.maxPendingHellos ?? DEFAULTS.maxPendingHellos;
  const auth = opts.auth ?? new NoAuth();
  if (opts.helloAcceptsOwnerToken && auth.mode === 'none') {
    throw invalidArgument('--hello-accepts-owner-token needs token checking (--auth introspect or --auth jwt): with --auth none a Hello needs neither secret nor token');
  }
  const ratePolicy = opts.ratePolicy ?? 'none';
  if (ratePolicy === 'reserve' && !(opts.capacityBps && opts.capacityBps > 0)) {
    throw invalidArgument('--rate-policy reserve admits streams against --capacity: give what this gateway can carry, e.g. --capacity 10Gbit/s');
  }
  if (ratePolicy !== 'reserve' && opts.capacityBps !== undefined) {
    throw invalidArgument(`--capacity is what --rate-policy reserve admits streams against; with --rate-policy ${ratePolicy} it would do nothing`);
  }
  return {
    logger,
    helloTimeoutMs,
    bufferSize: opts.bufferSize ?? DEFAULTS.bufferSize,
    setupTimeoutMs,
    maxConn: opts.maxConn ?? DEFAULTS.maxConn,
    maxPendingHellos,
    maxPendingHellosPerPeer: Math.min(opts.maxPendingHellosPerPeer ?? DEFAULTS.maxPendingHellosPerPeer, maxPendingHellos),
    refusals: opts.refusals ?? new Refusals(logger),
    dataBindHost: opts.bindIp ?? opts.listenerIp,
    auth,
    ratePolicy,
    maxBufferMemory: opts.maxBufferMemory ?? DATA_DEFAULTS.maxBufferMemory,
  };
}

export function checkTimeouts(setupTimeoutMs: number, helloTimeoutMs: number): void {
  if (setupTimeoutMs < helloTimeoutMs) {
    throw invalidArgument(`the setup timeout (${setupTimeoutMs / 1000} s) is below the Hello timeout (${helloTimeoutMs / 1000} s): a producer stream would be released while it may still wait for its Hello`);
  }
}

/** The stream table's bounds on waiting Hellos, from the producer Hellos held (maxPendingHellosPerPeer already at most maxPendingHellos). */
export function helloLimits(maxPendingHellos: number, maxPendingHellosPerPeer: number, maxConn: number): Required<Pick<TableSettings, 'maxPendingHellos' | 'maxPendingHellosPerPeer' | 'maxWaitingConsHellos' | 'maxWaitingConsHellosPerPeer' | 'maxHeldListeners'>> {
  return {
    maxPendingHellos,
    maxPendingHellosPerPeer,
    // A waiting consumer Hello holds an open call (about 11 KB); a held producer Hello a few hundred bytes.
    maxWaitingConsHellos: Math.max(1, Math.floor(maxPendingHellos / 10)),
    maxWaitingConsHellosPerPeer: Math.max(1, Math.floor(maxPendingHellosPerPeer / 10)),
    maxHeldListeners: maxConn,
  };
}

/** Start-up: says once which data legs are accepted, and why. */
export function logDataLegPolicy(opts: ControlServerOptions, s: ServerSettings): void {
  const { logger, dataBindHost } = s;
  const policy = plaintextDataPolicy(dataBindHost, opts.allowPlaintextData ?? false);
  // A warning only where plain text may cross a network: the flag on an address that is not loopback.
  logger[opts.allowPlaintextData && !isLoopback(dataBindHost) ? 'warn' : 'info']({ plaintextData: policy.accepts, bindIp: dataBindHost }, policy.why);
}

/** Start-up: says once what a stream's rate means here, unless only stored and reported. */
export function logRatePolicy(opts: ControlServerOptions, s: ServerSettings): void {
  const { logger, ratePolicy } = s;
  if (ratePolicy === 'none') return;
  const capacity = ratePolicy === 'reserve' ? `; streams admitted while their rates fit in ${formatBitRate(opts.capacityBps!)} (--capacity), a req stating no rate refused` : '';
  logger.info({ ratePolicy, capacityBps: opts.capacityBps }, `streams are held to their stated rate (--rate-policy ${ratePolicy})${capacity}`);
}
