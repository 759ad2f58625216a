// s2cs settings: the checks `start` makes before it opens anything (shared with
// `check-config` and the SIGHUP reload), and what a reload may change while running.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../cli.js';
import { reloadedValues, sameValue, settingOptions, shownValue } from '../config-file.js';
import { AUTH_MODES, createAuthenticator, readClientSecret, type AuthConfig, type AuthMode } from '../auth/index.js';
import { connectionMemory, type PortRange } from '../s2ds/index.js';
import { checkDataPlaneFlags } from '../s2ds/flags.js';
import type { AdmissionFlags } from '../s2ds/admission.js';
import type { UdpFlags } from '../s2ds/flags.js';
import { scistreamHome } from '../security/control-tls.js';
import { setLogLevel, type LogFormat, type Logger } from '../log.js';
import type { ControlServer, RuntimeSettings } from './server.js';
import { DEFAULTS, defaultMaxPortsPerUser } from './server-settings.js';
import { splitPortRange } from './supervisor.js';
import { isLoopback, plaintextDataPolicy, type RatePolicy } from './streams/index.js';
import { monitorExposureProblem } from './monitor.js';
import { parseAddress, type Address } from '../protocol/address.js';
import { validateAllowList } from '../protocol/cidr.js';
import { readTunnels, type TunnelSpec } from './tunnels/index.js';

/** The options of `s2cs start`, as commander hands them over. */
export interface StartFlags extends AdmissionFlags, UdpFlags {
  config?: string;
  port: number;
  listenerIp: string;
  bindIp?: string;
  /** Default: loopback when --listener-ip is loopback, else every address (plan.controlHost). */
  controlHost?: string;
  portRange: string;
  helloTimeout: number;
  setupTimeout?: number;
  /** Seconds; 0: never. */
  idleStreamTimeout: number;
  /** Seconds; absent or 0: no bound. */
  maxStreamLifetime?: number;
  /** Seconds; 0: broken streams are not released. */
  brokenGrace: number;
  maxPortsPerUser?: number;
  maxPendingHellos: number;
  maxPendingHellosPerPeer: number;
  maxConn: number;
  bufferSize: number;
  maxConnsPerListener: number;
  maxWaitingConns: number;
  maxBufferMemory: number;
  /** --wan-dead-after, seconds. */
  wanDeadAfter: number;
  insecure?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  clientCa?: string;
  stateDir?: string;
  allowPlaintextData?: boolean;
  helloAcceptsOwnerToken?: boolean;
  /** --data-allow-from as given (checked into StartPlan.dataAllowFrom). */
  dataAllowFrom: string[];
  ratePolicy: RatePolicy;
  capacity?: number;
  auth?: string;
  introspectionUrl?: string;
  clientId?: string;
  scope?: string;
  clientSecretFile?: string;
  introspectionAuth?: 'basic' | 'post';
  issuer?: string;
  audience?: string;
  jwksUrl?: string;
  admin: string[];
  workers?: number;
  s2ds: string[];
  s2dsCert?: string;
  verbose?: boolean;
  logJson?: boolean;
  logFormat: LogFormat;
  idleTimeout: number;
  handshakeTimeout: number;
  maxControlConnsPerSource: number;
  maxControlHandshakesPerSource: number;
  maxControlConns: number;
  metricsListen?: string;
  metricsPublic?: boolean;
  /** --access-log: one line per data connection at its end (s2ds/access-log.ts). */
  accessLog?: string;
}

/** What follows from the flags once they are checked. */
export interface StartPlan {
  bindIp: string;
  /** Where the control port binds: --control-host, else loopback for a loopback --listener-ip, else every address. */
  controlHost: string;
  portRange: PortRange;
  /** Seconds. */
  setupTimeout: number;
  maxPortsPerUser: number;
  /** Local worker processes (0: forward in the s2cs process). */
  workers: number;
  stateDir: string;
  authConfig: AuthConfig;
  /** Where the monitor serves (--metrics-listen); undefined: off. */
  metrics?: Address;
  /** --data-allow-from, canonical CIDR blocks ([]: no bound). */
  dataAllowFrom: string[];
  /** The standing tunnels of the configuration file ([[tunnel]]). */
  tunnels: TunnelSpec[];
}

/**
 * Checks the flags of `s2cs start` against each other; throws UsageError (one line)
 * at the first problem. `probe`: also try the data bind address (start does; check-config
 * and a reload open nothing). Reads the client secret file (introspection).
 */
export async function checkStartFlags(flags: StartFlags, opts: { logger: Logger; probe: boolean }): Promise<StartPlan> {
  const bindIp = flags.bindIp ?? flags.listenerIp;
  const checked = await checkDataPlaneFlags({ portRange: flags.portRange, bufferSize: flags.bufferSize, maxBufferMemory: flags.maxBufferMemory, bindIp }, { probe: opts.probe });
  if ('problem' in checked) throw new UsageError(checked.problem);
  const { portRange } = checked;
  if (flags.setupTimeout !== undefined && flags.setupTimeout < flags.helloTimeout) {
    throw new UsageError(`--setup-timeout ${flags.setupTimeout} is below --hello-timeout ${flags.helloTimeout}: a producer stream would be released while it may still wait for its Hello; give at least ${flags.helloTimeout}`);
  }
  const setupTimeout = flags.setupTimeout ?? Math.max(DEFAULTS.setupTimeoutMs / 1000, flags.helloTimeout);
  const maxPortsPerUser = flags.maxPortsPerUser ?? defaultMaxPortsPerUser(portRange, flags.maxConn);
  const stateDir = flags.stateDir ?? join(scistreamHome(), 's2cs');
  let authConfig: AuthConfig;
  try {
    authConfig = authConfigOf(flags, opts.logger);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const controlHost = controlHostOf(flags);
  if (flags.auth === undefined && authConfig.mode === 'none' && !isLoopback(controlHost)) {
    throw new UsageError(
      `no authentication provider is configured and the control port would listen on ${controlHost}, which is not loopback: anyone who reaches it could set up streams through this gateway. ` +
        'Give --auth introspect or --auth jwt with the provider settings (README, "Authentication"), or --auth none to run without token checking knowingly ' +
        "(each stream is then bound to its requester's control secret or address), or --control-host 127.0.0.1 to serve this host only",
    );
  }
  if (flags.helloAcceptsOwnerToken && authConfig.mode === 'none') {
    throw new UsageError('--hello-accepts-owner-token needs token checking (--auth introspect or --auth jwt): with --auth none a Hello needs neither secret nor token');
  }
  let dataAllowFrom: string[];
  try {
    dataAllowFrom = validateAllowList(flags.dataAllowFrom ?? [], '--data-allow-from');
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (flags.s2dsCert !== undefined && flags.s2ds.length === 0) throw new UsageError('--s2ds-cert applies to the agents named with --s2ds');
  const tcp = flags.s2ds.filter((a) => !a.startsWith('unix:'));
  if (tcp.length > 0 && !flags.s2dsCert) throw new UsageError(`--s2ds ${tcp[0]} is a TCP agent: give its certificate (or the CA that issued it) with --s2ds-cert`);
  // With --s2ds the agents named there forward; local workers only when asked for too.
  const workers = flags.workers ?? (flags.s2ds.length > 0 ? 0 : availableParallelism());
  if (workers > 0) {
    try {
      splitPortRange(portRange, workers);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    const perWorker = Math.floor(flags.maxBufferMemory / workers);
    const perConnection = connectionMemory(flags.bufferSize, 'tcp', 'tls');
    if (perWorker < perConnection) {
      throw new UsageError(
        `--max-buffer-memory ${flags.maxBufferMemory} split over --workers ${workers} leaves ${perWorker} bytes per worker, below what one connection reserves with --buffer-size ${flags.bufferSize} (${perConnection} bytes); raise it, lower --workers or --buffer-size`,
      );
    }
  }
  const metrics = checkMetricsFlags(flags, authConfig.mode);
  const tunnels = flags.config === undefined ? [] : readTunnels(flags.config, {
    portRange,
    maxConn: flags.maxConn,
    plaintextAccepted: plaintextDataPolicy(bindIp, flags.allowPlaintextData ?? false).accepts,
    tlsCert: flags.tlsCert,
    tlsKey: flags.tlsKey,
  });
  return { bindIp, controlHost, portRange, setupTimeout, maxPortsPerUser, workers, stateDir, authConfig, metrics, dataAllowFrom, tunnels };
}

/**
 * --control-host, else loopback when the gateway advertises a loopback --listener-ip
 * (the tutorial: nothing off this host needs the control port), else every address.
 */
function controlHostOf(flags: StartFlags): string {
  if (flags.controlHost !== undefined) return flags.controlHost;
  if (!isLoopback(flags.listenerIp)) return DEFAULTS.host;
  return flags.listenerIp.includes(':') && !flags.listenerIp.includes('.') ? '::1' : '127.0.0.1';
}

/** --metrics-listen and --metrics-public: the address, bracketed when IPv6, and who may reach it (monitorExposureProblem). */
function checkMetricsFlags(flags: StartFlags, authMode: string): Address | undefined {
  if (flags.metricsListen === undefined) {
    if (flags.metricsPublic) throw new UsageError('--metrics-public applies to --metrics-listen');
    return undefined;
  }
  let at: Address;
  try {
    at = parseAddress(flags.metricsListen, '--metrics-listen', { allowPortZero: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  // The reference's unbracketed v6 form is read for listeners only; a flag is written one way.
  if (at.host.includes(':') && !flags.metricsListen.startsWith('[')) throw new UsageError(`--metrics-listen ${flags.metricsListen}: an IPv6 address belongs in brackets, e.g. [::1]:9464`);
  const exposed = monitorExposureProblem(at.host, authMode, flags.metricsPublic ?? false);
  if (exposed) throw new UsageError(exposed);
  return at;
}

/**
 * The authentication configuration from the flags. Without --auth, the mode follows
 * from the provider flags given; `none` only when there are none.
 */
function authConfigOf(flags: StartFlags, logger: Logger): AuthConfig {
  const introspectFlags = flags.introspectionUrl !== undefined || flags.clientId !== undefined || flags.clientSecretFile !== undefined || flags.introspectionAuth !== undefined;
  const jwtFlags = flags.issuer !== undefined || flags.jwksUrl !== undefined;
  let mode = flags.auth as AuthMode | undefined;
  if (mode !== undefined && !AUTH_MODES.includes(mode)) throw new Error(`--auth ${mode}: choose one of ${AUTH_MODES.join(', ')}`);
  if (mode === undefined) {
    if (introspectFlags && jwtFlags) throw new Error('both introspection and JWT flags are given; choose one with --auth introspect or --auth jwt');
    mode = introspectFlags ? 'introspect' : jwtFlags ? 'jwt' : flags.scope !== undefined ? undefined : 'none';
    if (mode === undefined) throw new Error('--scope needs a provider: add --auth introspect with --introspection-url and --client-id, or --auth jwt with --issuer and --audience');
  }
  const need = (value: string | undefined, flag: string, what: string): string => {
    if (value === undefined || value.trim() === '') throw new Error(`--auth ${mode} needs ${flag} (${what})`);
    return value.trim();
  };
  const authLogger = logger.child({ component: 'auth' });
  switch (mode) {
    case 'none':
      if (introspectFlags || jwtFlags || flags.scope !== undefined || flags.audience !== undefined) {
        throw new Error('--auth none takes no provider flags (--introspection-url, --client-id, --client-secret-file, --introspection-auth, --scope, --issuer, --audience, --jwks-url); remove them or choose --auth introspect or jwt');
      }
      if (flags.admin.length > 0) throw new Error('--admin needs authentication: with --auth none every caller is the same anonymous user');
      return { mode };
    case 'introspect':
      if (jwtFlags) throw new Error('--issuer and --jwks-url belong to --auth jwt; introspection needs --introspection-url, --client-id and --scope');
      return {
        mode,
        introspectionUrl: need(flags.introspectionUrl, '--introspection-url', "the provider's token introspection endpoint"),
        clientId: need(flags.clientId, '--client-id', "this gateway's client id at the provider"),
        clientSecret: readClientSecret({ file: flags.clientSecretFile, env: process.env }),
        clientAuth: flags.introspectionAuth,
        scope: need(flags.scope, '--scope', "the scope callers' tokens must carry"),
        audience: flags.audience,
        logger: authLogger,
      };
    case 'jwt':
      if (introspectFlags) throw new Error('--introspection-url, --client-id, --client-secret-file and --introspection-auth belong to --auth introspect; JWT validation needs --issuer, --audience and --scope');
      return {
        mode,
        issuer: need(flags.issuer, '--issuer', 'the token issuer URL'),
        audience: need(flags.audience, '--audience', 'the audience tokens for this gateway carry'),
        scope: need(flags.scope, '--scope', "the scope callers' tokens must carry"),
        jwksUrl: flags.jwksUrl,
        logger: authLogger,
      };
  }
}

/** Values that follow from other settings when not given, for check-config. */
export function derivedSettings(flags: StartFlags, plan: StartPlan): Record<string, { value: unknown; from: string }> {
  return {
    'bind-ip': { value: plan.bindIp, from: 'listener-ip' },
    'control-host': { value: plan.controlHost, from: `127.0.0.1 when listener-ip is loopback, else ${DEFAULTS.host}` },
    'setup-timeout': { value: plan.setupTimeout, from: `${DEFAULTS.setupTimeoutMs / 1000}, or hello-timeout when longer` },
    'max-ports-per-user': { value: plan.maxPortsPerUser, from: 'half the port range, at least max-conn' },
    workers: { value: plan.workers, from: flags.s2ds.length > 0 ? 'agents given with s2ds' : 'CPU cores' },
    'state-dir': { value: plan.stateDir, from: '$SCISTREAM_HOME/s2cs' },
    auth: { value: plan.authConfig.mode, from: 'the provider settings given' },
  };
}

/** Settings a running s2cs takes on SIGHUP; every other change needs a restart. */
const AUTH_KEYS = ['auth', 'introspection-url', 'client-id', 'client-secret-file', 'introspection-auth', 'scope', 'issuer', 'audience', 'jwks-url'];
export const RELOADABLE = new Set([
  ...AUTH_KEYS,
  'admin',
  'hello-accepts-owner-token',
  'data-allow-from',
  'max-ports-per-user',
  'max-pending-hellos',
  'max-pending-hellos-per-peer',
  'hello-timeout',
  'setup-timeout',
  'max-conn',
  'max-control-conns-per-source',
  'max-control-handshakes-per-source',
  'max-control-conns',
  'verbose',
]);

/** What the running s2cs holds: its flags and what followed from them. */
export interface Running {
  flags: StartFlags;
  plan: StartPlan;
}

/** A setting's value as it is in force (a default that follows from others included). */
function effective(key: string, r: Running, attr: string, isSwitch: boolean): unknown {
  if (key === 'setup-timeout') return r.plan.setupTimeout;
  if (key === 'max-ports-per-user') return r.plan.maxPortsPerUser;
  if (key === 'auth') return r.plan.authConfig.mode;
  const value = (r.flags as unknown as Record<string, unknown>)[attr];
  // A switch not given is off.
  return isSwitch && value === undefined ? false : value;
}

function clientSecretOf(c: AuthConfig): string | undefined {
  return c.mode === 'introspect' ? c.clientSecret : undefined;
}

/**
 * SIGHUP: reads the configuration file again (flags given on the command line still
 * win), checks it as start does, and applies what can change safely. Logs each change;
 * returns the new running state, or the old one when the file cannot be used.
 */
export async function reloadConfig(cmd: Command, current: Running, server: Pick<ControlServer, 'reconfigure'> & Partial<Pick<ControlServer, 'applyTunnels'>>, logger: Logger): Promise<Running> {
  const file = current.flags.config;
  if (file === undefined) {
    logger.info('SIGHUP: s2cs was started without --config: there is no configuration file to reload');
    return current;
  }
  let next: Running;
  try {
    const flags = reloadedValues(cmd, file) as unknown as StartFlags;
    next = { flags, plan: await checkStartFlags(flags, { logger, probe: false }) };
  } catch (err) {
    logger.error(`SIGHUP: ${file} not reloaded, the running configuration is kept: ${(err as Error).message}`);
    return current;
  }
  const changed: string[] = [];
  for (const [key, opt] of settingOptions(cmd)) {
    const attr = opt.attributeName();
    if (!sameValue(effective(key, current, attr, opt.isBoolean()), effective(key, next, attr, opt.isBoolean()))) changed.push(key);
  }
  const tokensBefore = current.plan.authConfig.mode !== 'none';
  const tokensAfter = next.plan.authConfig.mode !== 'none';
  const secretChanged = clientSecretOf(current.plan.authConfig) !== clientSecretOf(next.plan.authConfig);
  const restart = changed.filter((k) => !RELOADABLE.has(k) || (AUTH_KEYS.includes(k) && tokensBefore !== tokensAfter));
  const apply = changed.filter((k) => !restart.includes(k));
  // Token checking on or off changes what every stream holds (an application secret, an owner): restart only.
  const authChanged = tokensBefore === tokensAfter && (apply.some((k) => AUTH_KEYS.includes(k)) || secretChanged);
  const settings: RuntimeSettings = {};
  if (authChanged) settings.auth = createAuthenticator(next.plan.authConfig);
  if (apply.includes('admin')) settings.admins = next.flags.admin;
  if (apply.includes('hello-accepts-owner-token')) settings.helloAcceptsOwnerToken = next.flags.helloAcceptsOwnerToken ?? false;
  if (apply.includes('data-allow-from')) settings.dataAllowFrom = next.plan.dataAllowFrom;
  if (apply.includes('max-conn')) settings.maxConn = next.flags.maxConn;
  if (apply.includes('max-ports-per-user')) settings.maxPortsPerUser = next.plan.maxPortsPerUser;
  if (apply.includes('max-pending-hellos')) settings.maxPendingHellos = next.flags.maxPendingHellos;
  if (apply.includes('max-pending-hellos-per-peer')) settings.maxPendingHellosPerPeer = next.flags.maxPendingHellosPerPeer;
  if (apply.includes('hello-timeout')) settings.helloTimeoutMs = next.flags.helloTimeout * 1000;
  if (apply.includes('setup-timeout')) settings.setupTimeoutMs = next.plan.setupTimeout * 1000;
  if (['max-control-conns-per-source', 'max-control-handshakes-per-source', 'max-control-conns'].some((k) => apply.includes(k))) {
    settings.controlAdmission = { maxConnsPerSource: next.flags.maxControlConnsPerSource, maxHandshakesPerSource: next.flags.maxControlHandshakesPerSource, maxConns: next.flags.maxControlConns };
  }
  try {
    server.reconfigure(settings);
  } catch (err) {
    logger.error(`SIGHUP: ${file} not reloaded, the running configuration is kept: ${(err as Error).message}`);
    return current;
  }
  if (apply.includes('verbose')) setLogLevel(logger, next.flags.verbose ? 'debug' : 'info');
  const shown = (key: string, r: Running) => {
    const opt = settingOptions(cmd).get(key)!;
    return shownValue(cmd, key, effective(key, r, opt.attributeName(), opt.isBoolean()));
  };
  for (const key of apply) {
    // The data servers got these at start (--wait-timeout, --verbose of the workers); they keep them.
    const note =
      key === 'hello-timeout'
        ? ` (data connections that arrive before their stream's targets still wait at most ${current.flags.helloTimeout} s until a restart)`
        : key === 'verbose' && current.plan.workers > 0
          ? ' (the local workers keep their log level until a restart)'
          : '';
    logger.info(`reloaded: ${key} ${shown(key, current)} -> ${shown(key, next)}${note}`);
  }
  if (secretChanged && tokensBefore === tokensAfter) logger.info(`reloaded: the client secret${next.flags.clientSecretFile ? ` (contents of ${next.flags.clientSecretFile})` : ''}`);
  for (const key of restart) logger.warn(`needs a restart: ${key} (${shown(key, current)} -> ${shown(key, next)}); the running value is kept until s2cs is restarted`);
  // Tunnels follow their tables (each logs what it did); the others are left alone.
  const tunnels = server.applyTunnels ? await server.applyTunnels(file, next.plan.tunnels) : undefined;
  const tunnelsChanged = tunnels !== undefined && (tunnels.created.length > 0 || tunnels.released.length > 0 || tunnels.failed.length > 0);
  if (changed.length === 0 && !secretChanged && !tunnelsChanged) logger.info(`SIGHUP: ${file} reloaded, nothing changed`);
  // Settings needing a restart keep their running values, so that a second SIGHUP reports them again.
  const kept = { ...next.flags } as unknown as Record<string, unknown>;
  for (const key of restart) {
    const attr = settingOptions(cmd).get(key)!.attributeName();
    kept[attr] = (current.flags as unknown as Record<string, unknown>)[attr];
  }
  const keptFlags = kept as unknown as StartFlags;
  const keptPlan: StartPlan = {
    ...current.plan,
    setupTimeout: next.plan.setupTimeout,
    maxPortsPerUser: next.plan.maxPortsPerUser,
    authConfig: tokensBefore === tokensAfter ? next.plan.authConfig : current.plan.authConfig,
    tunnels: next.plan.tunnels,
  };
  return { flags: keptFlags, plan: keptPlan };
}
