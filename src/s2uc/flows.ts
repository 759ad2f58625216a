// S2UC as a library: the request flows of the seed's rules 1-7, for the CLI and
// for workflow engines that import SciStream.
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { ControlConnection, RemoteError, isReferenceUnknownUid, type ConnectionOptions } from '../protocol/client.js';
import { validateUid, type Role } from '../protocol/validate.js';
import { failedPrecondition, invalidArgument } from '../protocol/errors.js';
import { createStreamCredentials } from '../security/stream-credentials.js';
import { preloadCertificates } from '../security/certificates.js';
import { helloUntilRequested } from '../app/controller.js';
import type { Request } from '../protocol/contract.js';

export interface FlowOptions extends ConnectionOptions {
  /** Called with the uid before anything is sent, so the user can hand it to the application controllers. */
  onUid?: (uid: string) => void;
  /** Progress for humans ("waiting for the producer's Hello ..."). */
  onStep?: (step: string) => void;
  /**
   * A gateway's application secret for the stream, as soon as the gateway has taken
   * the req (before the producer's Hello, which must carry it); '' from a gateway
   * that checks no tokens (its Hello needs no secret).
   */
  onAppSecret?: (secret: string, s2cs: string, role: Role) => void;
  /**
   * The flow now waits for the application controller's Hello at `s2cs` (the gateway
   * took the req and issued `appSecret`, '' when it checks no tokens): once per wait.
   */
  onAwaitHello?: (uid: string, s2cs: string, role: Role, appSecret: string) => void;
  /**
   * Set up a stream whose WAN leg is plain TCP when a gateway cannot take per-stream
   * credentials (the Python reference's s2cs). Off: such a request is refused
   * before anything is reserved.
   */
  allowPlaintextData?: boolean;
  /** Warnings for humans (a plain-text WAN leg). */
  onWarning?: (warning: string) => void;
}

/** What a gateway can do, asked before anything is reserved. */
export interface GatewayCapabilities {
  server: string;
  /** 'scistream-ts', or 'reference' for a gateway without the capabilities rpc. */
  implementation: string;
  version: string;
  /** Takes UpdateTargets.credentials: its WAN leg runs TLS with the stream's credentials. */
  streamCredentials: boolean;
  /** Takes UpdateTargets without credentials (a plain-TCP WAN leg). */
  plaintextData: boolean;
  /** Sends the application secret when it takes a req (before the Hello); otherwise none is issued. */
  earlyAppSecret: boolean;
  /** Answers a req only after a Hello for its uid, on either side (the reference). */
  reqWaitsForHello: boolean;
  /** What it does with a stream's rate: none (stores it), cap or reserve (holds the stream to it). */
  ratePolicy: string;
}

/**
 * Asks a gateway what it can do. The reference has no such rpc: UNIMPLEMENTED means
 * a gateway that ignores credentials (plain-TCP WAN leg), issues no application
 * secret and answers every req only after a Hello.
 */
export function gatewayCapabilities(c: ControlConnection): Promise<GatewayCapabilities> {
  // Kept a while per connection: a pooled connection (workflow engines, the
  // benchmark) sets up many streams, and the answer changes only with a restart.
  const cached = known.get(c);
  if (cached && Date.now() - cached.at < CAPABILITIES_TTL_MS) return cached.caps;
  const caps = askCapabilities(c);
  known.set(c, { at: Date.now(), caps });
  caps.catch(() => known.delete(c));
  return caps;
}

const CAPABILITIES_TTL_MS = 30_000;
const known = new WeakMap<ControlConnection, { at: number; caps: Promise<GatewayCapabilities> }>();

async function askCapabilities(c: ControlConnection): Promise<GatewayCapabilities> {
  try {
    const r = await c.capabilities();
    return {
      server: c.server,
      implementation: r.implementation,
      version: r.version,
      streamCredentials: r.stream_credentials,
      plaintextData: r.plaintext_data,
      earlyAppSecret: r.early_app_secret,
      reqWaitsForHello: false,
      ratePolicy: r.rate_policy || 'none',
    };
  } catch (err) {
    if (!(err instanceof RemoteError) || err.code !== status.UNIMPLEMENTED) throw err;
    return { server: c.server, implementation: 'reference', version: '', streamCredentials: false, plaintextData: true, earlyAppSecret: false, reqWaitsForHello: true, ratePolicy: 'none' };
  }
}

/** Refuses, before anything is reserved, a stream that a gateway would not take without credentials. */
function requirePlaintextAccepted(caps: GatewayCapabilities[]): void {
  const strict = caps.filter((c) => !c.plaintextData);
  if (strict.length === 0) return;
  throw failedPrecondition(
    `${strict.map((c) => c.server).join(' and ')} ${strict.length > 1 ? 'accept' : 'accepts'} only streams with per-stream credentials ` +
      "(the data listeners are not on loopback and s2cs runs without --allow-plaintext-data), and this flow has none to send; nothing was reserved. " +
      'Ask the gateway operator to start s2cs with --allow-plaintext-data, or set the stream up with s2uc request between two SciStream-TS gateways',
  );
}

/**
 * Sends, on the user's connection, the Hello a reference gateway waits for before it
 * answers a consumer-side req (ours answers at once). Retried until the req exists.
 */
function helloForReference(c: ControlConnection, uid: string, role: Role, prodListeners: string[], opts: ConnectionOptions): Promise<unknown> {
  return helloUntilRequested(c, { uid, role, prod_listeners: prodListeners }, Date.now() + (opts.deadlineMs ?? 30_000));
}

export interface StreamSpec {
  numConn: number;
  rate?: number;
  uid?: string;
  /**
   * Seconds the stream may live, from its request (Request.lifetime_s): then each
   * gateway releases it. A gateway's --max-stream-lifetime may bound it further;
   * absent or 0: no limit of its own. The Python reference ignores it.
   */
  lifetimeS?: number;
  /**
   * Who may connect to the stream's listeners (Request.allow_from: CIDR blocks or
   * addresses); in a two-gateway request, the consumer gateway's listeners (where the
   * consumer application connects). Absent: anyone the gateway's --data-allow-from admits.
   */
  allowFrom?: string[];
  /** The listener ports to ask for, one per connection (Request.listener_ports); in a two-gateway request, the consumer gateway's. */
  listenerPorts?: number[];
  /**
   * Two-gateway request only: the producer gateway's WAN listeners, which the consumer
   * gateway dials. wanAllowFrom: the consumer gateway's source addresses as the
   * producer gateway sees them (its address on the WAN, or its NAT's); s2uc cannot
   * know them, so only this makes the WAN listeners accept the peer gateway only.
   */
  wanAllowFrom?: string[];
  wanListenerPorts?: number[];
  /**
   * The stream's transport (Request.protocol): 'udp' forwards datagrams (a flow per
   * sender); absent or 'tcp': TCP, and the req is exactly what a reference client sends.
   * A two-gateway UDP stream crosses the WAN inside its TLS connections, or as plain UDP
   * when the client opts in (allowPlaintextData) and both gateways accept plaintext data.
   */
  protocol?: 'tcp' | 'udp';
}

/** The two-facility connection map: consumer -> consumer gateway -> producer gateway (WAN) -> producer. */
export interface ConnectionMap {
  uid: string;
  numConn: number;
  rate: number;
  prodS2cs: string;
  consS2cs: string;
  /** The producer gateway's WAN listeners. */
  prodListeners: string[];
  /** Where the consumer application connects (the consumer gateway's listeners). */
  consListeners: string[];
  /** Where the producer application listens (from its Hello). */
  prodAppListeners: string[];
  /** What the producer's application controller presents with Hello (gateways that check tokens). */
  prodAppSecret?: string;
  /** What the consumer's application controller presents with Hello (gateways that check tokens). */
  consAppSecret?: string;
  /**
   * What proves at each gateway that the stream is the caller's (Response.control_secret):
   * update and release present it. '' from a gateway that issues none (the reference).
   */
  prodControlSecret: string;
  consControlSecret: string;
  /** The WAN leg: TLS with the stream's credentials, or plain TCP (--allow-plaintext-data with a reference gateway). */
  wan: 'tls' | 'plain';
  /**
   * With wan 'plain': the gateways that answered like the Python reference's s2cs. Each
   * one's own data server decides what the WAN leg speaks (plain TCP with HAProxy; with
   * stunnel, TLS-PSK that only another such gateway meets), which its answers do not reveal.
   */
  referenceGateways?: string[];
  /** Each gateway's --rate-policy: whether it holds the stream to `rate` (cap, reserve) or only stores it (none). */
  ratePolicies: { prod: string; cons: string };
  /** The lifetime asked for, in seconds from the request (absent: none; each gateway may bound it, see status). */
  lifetimeS?: number;
}

/** Reports a gateway's application secret (when it issued one) and keeps it for the result. */
function secretSink(opts: FlowOptions, server: string, role: Role, awaitHelloOf?: string): { value: string; take: (secret: string) => void } {
  const sink = {
    value: '',
    take: (secret: string) => {
      sink.value = secret;
      opts.onAppSecret?.(secret, server, role);
      if (awaitHelloOf !== undefined) opts.onAwaitHello?.(awaitHelloOf, server, role, secret);
    },
  };
  return sink;
}

/** The most Request.lifetime_s (a uint32 of seconds) can say: about 136 years. */
export const MAX_LIFETIME_S = 2 ** 32 - 1;

/** Request.allow_from and listener_ports, present only when given: without them the req is exactly the reference's. */
function placementFields(allowFrom: string[] | undefined, ports: number[] | undefined): Pick<Request, 'allow_from' | 'listener_ports'> {
  return { ...(allowFrom && allowFrom.length > 0 ? { allow_from: allowFrom } : {}), ...(ports && ports.length > 0 ? { listener_ports: ports } : {}) };
}

/**
 * A reference gateway ignores allow_from and listener_ports without a word: asking
 * one for them would leave listeners open to anyone, or on other ports. Refused
 * before anything is reserved.
 */
function requireListenerFields(spec: StreamSpec, caps: GatewayCapabilities[]): void {
  const asked = [spec.allowFrom, spec.listenerPorts, spec.wanAllowFrom, spec.wanListenerPorts].some((l) => l && l.length > 0);
  const reference = caps.filter((c) => c.implementation === 'reference').map((c) => c.server);
  if (asked && reference.length > 0) {
    throw failedPrecondition(
      `${reference.join(' and ')} ${reference.length > 1 ? 'answer' : 'answers'} like the Python reference's s2cs, which ignores allow-lists and chosen listener ports: ` +
        'nothing was reserved. Drop --allow-from / --listener-ports (and their --wan- forms) for that gateway, or run SciStream-TS s2cs there',
    );
  }
}

function begin(spec: StreamSpec, opts: FlowOptions, caps: GatewayCapabilities[]): { uid: string; rate: number; request: (role: Role, extra?: Pick<Request, 'allow_from' | 'listener_ports'>) => Request } {
  requireListenerFields(spec, caps);
  const lifetimeS = spec.lifetimeS ?? 0;
  if (!Number.isInteger(lifetimeS) || lifetimeS < 0 || lifetimeS > MAX_LIFETIME_S) throw invalidArgument(`lifetime ${lifetimeS} s is not valid: give a whole number of seconds from 1 to ${MAX_LIFETIME_S}, or none`);
  const uid = spec.uid !== undefined ? validateUid(spec.uid, '--uid') : randomUUID();
  opts.onUid?.(uid);
  const rate = spec.rate ?? 0;
  if (lifetimeS > 0) {
    const ignoring = caps.filter((c) => c.implementation === 'reference').map((c) => c.server);
    if (ignoring.length > 0) opts.onWarning?.(`${ignoring.join(' and ')} ${ignoring.length > 1 ? 'are' : 'is'} the Python reference's s2cs, which ignores the stream's lifetime: there the stream lives until it is released`);
  }
  // Without a lifetime the req is exactly what a reference client sends.
  const protocol = spec.protocol === 'udp' ? { protocol: 'udp' } : {};
  const request = (role: Role, extra = placementFields(spec.allowFrom, spec.listenerPorts)): Request => ({ uid, role, num_conn: spec.numConn, rate, ...(lifetimeS > 0 ? { lifetime_s: lifetimeS } : {}), ...protocol, ...extra });
  return { uid, rate, request };
}

/** The lifetime for a result (absent when none was asked). */
function lifetimeOf(spec: StreamSpec): { lifetimeS?: number } {
  return spec.lifetimeS ? { lifetimeS: spec.lifetimeS } : {};
}

/**
 * The control secrets of the streams this process set up, by uid and gateway, until
 * they are released: a later releaseStream (or update) on a new connection presents
 * them by itself. Bounded: the oldest are forgotten first (a workflow engine that sets
 * up more streams at once gives them back with controlSecretsOf).
 */
const issued = new Map<string, string>();
const MAX_ISSUED = 10_000;

function withIssuedSecrets(opts: ConnectionOptions): ConnectionOptions {
  return {
    ...opts,
    onControlSecret: (uid, secret, server) => {
      issued.delete(`${uid} ${server}`);
      issued.set(`${uid} ${server}`, secret);
      if (issued.size > MAX_ISSUED) issued.delete(issued.keys().next().value!);
      opts.onControlSecret?.(uid, secret, server);
    },
    controlSecretFor: (server, uid) => opts.controlSecretFor?.(server, uid) ?? issued.get(`${uid} ${server}`),
    controlSecretsFor: (server, uid) => {
      const kept = opts.controlSecretsFor?.(server, uid) ?? [];
      if (uid) return [...kept, ...[issued.get(`${uid} ${server}`) ?? ''].filter(Boolean)];
      return [...kept, ...[...issued].filter(([k]) => k.endsWith(` ${server}`)).map(([, v]) => v)];
    },
    onReleased: (uid, server) => {
      issued.delete(`${uid} ${server}`);
      opts.onReleased?.(uid, server);
    },
  };
}

/** Runs `fn` with connections to the given servers and closes them afterwards. */
export async function withServers<T>(servers: string[], connection: ConnectionOptions, fn: (c: ControlConnection[]) => Promise<T>): Promise<T> {
  const opts = withIssuedSecrets(connection);
  if (opts.pool) {
    const pool = opts.pool;
    return fn(await Promise.all(servers.map((s) => pool.get(s, opts))));
  }
  // Opened together: pinning on first use reads each server's certificate over its own TLS
  // handshake. One server named twice is opened in turn, so that it is pinned once.
  const distinct = new Set(servers).size === servers.length;
  const opened: PromiseSettledResult<ControlConnection>[] = [];
  if (distinct) opened.push(...(await Promise.allSettled(servers.map((s) => ControlConnection.open(s, opts)))));
  else for (const s of servers) opened.push(...(await Promise.allSettled([ControlConnection.open(s, opts)])));
  const conns = opened.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  try {
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return await fn(conns);
  } finally {
    for (const c of conns) c.close();
  }
}

/** Undoes a half-built stream; the original failure is what the caller reports. */
async function releaseQuietly(conns: ControlConnection[], uid: string): Promise<void> {
  await Promise.allSettled(conns.map((c) => c.release({ uid })));
}

/** `s2uc request`: both facilities. */
export async function requestStream(prodS2cs: string, consS2cs: string, spec: StreamSpec, opts: FlowOptions): Promise<ConnectionMap> {
  // The stream's credentials need the certificate library: loaded while the gateways answer.
  preloadCertificates().catch(() => undefined);
  return withServers([prodS2cs, consS2cs], opts, async ([prod, cons]) => {
    const both = [prod!, cons!];
    // Before anything is reserved: can the WAN leg be encrypted?
    const [prodCaps, consCaps] = await Promise.all(both.map(gatewayCapabilities)) as [GatewayCapabilities, GatewayCapabilities];
    const lacking = [prodCaps, consCaps].filter((c) => !c.streamCredentials);
    if (lacking.length > 0) {
      const names = `${lacking.map((c) => c.server).join(' and ')} ${lacking.length > 1 ? 'answer' : 'answers'} like the Python reference's s2cs`;
      if (!opts.allowPlaintextData) {
        throw failedPrecondition(
          `${names}, which cannot take per-stream credentials: the WAN leg between the gateways would be plain TCP, readable and forgeable on the path. ` +
            'Nothing was reserved. Rerun with s2uc --allow-plaintext-data to accept that, or run SciStream-TS s2cs on both gateways',
        );
      }
      requirePlaintextAccepted([prodCaps, consCaps]);
    }
    // A UDP stream whose client opted in crosses the WAN as plain UDP (as the reference's
    // Nginx does), even between two SciStream-TS gateways: both must accept plaintext data.
    const plainUdp = spec.protocol === 'udp' && opts.allowPlaintextData === true && lacking.length === 0;
    if (plainUdp) requirePlaintextAccepted([prodCaps, consCaps]);
    const encrypted = lacking.length === 0 && !plainUdp;
    const { uid, rate, request } = begin(spec, opts, [prodCaps, consCaps]);
    if (plainUdp) {
      opts.onWarning?.(`the WAN leg of UDP stream ${uid} is plain UDP (--allow-plaintext-data): neither encrypted nor authenticated, readable and forgeable on the path`);
    } else if (!encrypted) {
      opts.onWarning?.(
        `the WAN leg of stream ${uid} is neither encrypted nor authenticated by SciStream: ${lacking.map((c) => c.server).join(' and ')} cannot take per-stream credentials (--allow-plaintext-data); ` +
          `${lacking.length > 1 ? 'their' : 'its'} own data server decides what the leg speaks (plain TCP with HAProxy; with stunnel no data crosses to a SciStream-TS gateway)`,
      );
    }
    try {
      opts.onStep?.(`REQ to both gateways; waiting for the producer's Hello at ${prod!.server}`);
      const prodSecret = secretSink(opts, prod!.server, 'PROD', uid);
      const consSecret = secretSink(opts, cons!.server, 'CONS');
      // A gateway that issues no secret has none to wait for: say so at once, so that
      // a script waiting on --app-secret-file can start the application controller.
      if (!prodCaps.earlyAppSecret) prodSecret.take('');
      if (!consCaps.earlyAppSecret) consSecret.take('');
      const [p, c, credentials] = await Promise.all([
        prod!.req(request('PROD', placementFields(spec.wanAllowFrom, spec.wanListenerPorts)), 0, prodSecret.take),
        cons!.req(request('CONS'), undefined, consSecret.take),
        encrypted ? createStreamCredentials(uid) : undefined,
        consCaps.reqWaitsForHello ? helloForReference(cons!, uid, 'CONS', [], opts) : undefined,
      ]);
      opts.onStep?.('sending the connection map (UpdateTargets)' + (credentials ? ' and the stream credentials' : '') + ' to both gateways');
      await Promise.all([
        prod!.update({ uid, remote_listeners: p.prod_listeners, role: 'PROD', credentials: credentials?.producerSide }),
        cons!.update({ uid, remote_listeners: p.listeners, role: 'CONS', credentials: credentials?.consumerSide }),
      ]);
      const map: ConnectionMap = {
        uid,
        numConn: spec.numConn,
        rate,
        prodS2cs: prod!.server,
        consS2cs: cons!.server,
        prodListeners: p.listeners,
        consListeners: c.listeners,
        prodAppListeners: p.prod_listeners,
        prodControlSecret: prod!.controlSecret(uid),
        consControlSecret: cons!.controlSecret(uid),
        wan: encrypted ? 'tls' : 'plain',
        ...(encrypted || plainUdp ? {} : { referenceGateways: lacking.map((c) => c.server) }),
        ratePolicies: { prod: prodCaps.ratePolicy, cons: consCaps.ratePolicy },
        ...lifetimeOf(spec),
      };
      const prodAppSecret = p.app_secret || prodSecret.value;
      const consAppSecret = c.app_secret || consSecret.value;
      if (prodAppSecret) map.prodAppSecret = prodAppSecret;
      if (consAppSecret) map.consAppSecret = consAppSecret;
      return map;
    } catch (err) {
      await releaseQuietly(both, uid);
      throw err;
    }
  });
}

export interface SideResult {
  uid: string;
  s2cs: string;
  /** The gateway's listeners for this stream. */
  listeners: string[];
  /** Where they forward to. */
  targets: string[];
  /** What the stream's application controller presents with Hello (gateways that check tokens). */
  appSecret?: string;
  /** What proves at the gateway that the stream is the caller's, for update and release ('' from a reference gateway). */
  controlSecret: string;
  /** The lifetime asked for, in seconds from the request (absent: none). */
  lifetimeS?: number;
  /** The gateway's data legs: single-gateway flows carry no stream credentials, so never encrypted by SciStream. */
  wan: 'plain';
}

/**
 * Says on stderr (onWarning) that a single-gateway flow through a reference gateway is
 * not encrypted: it takes no credentials, and its own data server (HAProxy: plain TCP;
 * stunnel) decides what its listeners speak.
 */
function warnReferenceSide(opts: FlowOptions, caps: GatewayCapabilities, uid: string): void {
  if (caps.streamCredentials) return;
  opts.onWarning?.(
    `stream ${uid} is not encrypted by SciStream: ${caps.server} answers like the Python reference's s2cs, which takes no per-stream credentials; ` +
      'its own data server decides what its listeners speak (plain TCP with its HAProxy data server)',
  );
}

function side(gw: ControlConnection, uid: string, listeners: string[], targets: string[], appSecret: string, spec: StreamSpec): SideResult {
  const r: SideResult = { uid, s2cs: gw.server, listeners, targets, controlSecret: gw.controlSecret(uid), ...lifetimeOf(spec), wan: 'plain' };
  if (appSecret) r.appSecret = appSecret;
  return r;
}

/**
 * `s2uc inbound-request`: expose services inside one facility (targets) on its
 * gateway. S2UC speaks for the application controller: it sends the Hello itself.
 */
export async function inboundRequest(s2cs: string, targets: string[], spec: StreamSpec, opts: FlowOptions): Promise<SideResult> {
  return withServers([s2cs], opts, async ([gw]) => {
    const caps = await gatewayCapabilities(gw!);
    requirePlaintextAccepted([caps]);
    const { uid, request } = begin(spec, opts, [caps]);
    warnReferenceSide(opts, caps, uid);
    try {
      // The Hello goes out once the gateway has taken the req and issued the
      // stream's application secret (none when it checks no tokens). A gateway that
      // issues none (the reference) gets it at once, retried until the req exists.
      let issued!: (secret: string) => void;
      const secret = new Promise<string>((resolve) => (issued = resolve));
      if (!caps.earlyAppSecret) issued('');
      const [, r] = await Promise.all([
        secret.then((app_secret) => helloUntilRequested(gw!, { uid, role: 'PROD', prod_listeners: targets, app_secret }, Date.now() + (opts.deadlineMs ?? 30_000))),
        gw!.req(request('PROD'), 0, issued),
      ]);
      await gw!.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
      return side(gw!, uid, r.listeners, r.prod_listeners, '', spec);
    } catch (err) {
      await releaseQuietly([gw!], uid);
      throw err;
    }
  });
}

/** `s2uc outbound-request`: let applications inside one facility reach remote listeners through its gateway. */
export async function outboundRequest(s2cs: string, remoteListeners: string[], spec: StreamSpec, opts: FlowOptions): Promise<SideResult> {
  return withServers([s2cs], opts, async ([gw]) => {
    const caps = await gatewayCapabilities(gw!);
    requirePlaintextAccepted([caps]);
    const { uid, request } = begin(spec, opts, [caps]);
    warnReferenceSide(opts, caps, uid);
    try {
      const secret = secretSink(opts, gw!.server, 'CONS');
      if (!caps.earlyAppSecret) secret.take('');
      const [r] = await Promise.all([
        gw!.req(request('CONS'), undefined, secret.take),
        caps.reqWaitsForHello ? helloForReference(gw!, uid, 'CONS', [], opts) : undefined,
      ]);
      await gw!.update({ uid, remote_listeners: remoteListeners, role: 'CONS' });
      return side(gw!, uid, r.listeners, remoteListeners, r.app_secret || secret.value, spec);
    } catch (err) {
      await releaseQuietly([gw!], uid);
      throw err;
    }
  });
}

/** `s2uc request1`: the seed tutorial's single-gateway flow; the producer's controller sends Hello. */
export async function request1(s2cs: string, spec: StreamSpec, opts: FlowOptions): Promise<SideResult> {
  return withServers([s2cs], opts, async ([gw]) => {
    const caps = await gatewayCapabilities(gw!);
    requirePlaintextAccepted([caps]);
    const { uid, request } = begin(spec, opts, [caps]);
    warnReferenceSide(opts, caps, uid);
    try {
      opts.onStep?.(`REQ sent; waiting for the producer's Hello at ${gw!.server}`);
      const secret = secretSink(opts, gw!.server, 'PROD', uid);
      if (!caps.earlyAppSecret) secret.take('');
      const r = await gw!.req(request('PROD'), 0, secret.take);
      await gw!.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
      return side(gw!, uid, r.listeners, r.prod_listeners, r.app_secret || secret.value, spec);
    } catch (err) {
      await releaseQuietly([gw!], uid);
      throw err;
    }
  });
}

/**
 * The control secrets a flow's result holds, by gateway, as ConnectionOptions.controlSecretFor
 * takes them: `releaseStream(map.uid, [map.prodS2cs, map.consS2cs], { ...opts, controlSecretFor: controlSecretsOf(map) })`.
 */
export function controlSecretsOf(...results: (ConnectionMap | SideResult)[]): (server: string, uid: string) => string | undefined {
  const known = new Map<string, string>();
  for (const r of results) {
    const pairs: [string, string][] = 'prodS2cs' in r ? [[r.prodS2cs, r.prodControlSecret], [r.consS2cs, r.consControlSecret]] : [[r.s2cs, r.controlSecret]];
    for (const [server, secret] of pairs) if (secret) known.set(`${r.uid} ${server}`, secret);
  }
  return (server, uid) => known.get(`${uid} ${server}`);
}

/**
 * `s2uc release`: REL to every given server; idempotent, so safe to repeat. Each
 * release carries the stream's control secret from `opts.controlSecretFor` (e.g.
 * controlSecretsOf(map)) unless the connection requested the stream itself.
 */
export async function releaseStream(uid: string, servers: string[], opts: ConnectionOptions): Promise<void> {
  validateUid(uid, 'uid');
  // Each gateway on its own connection: one that is down (or whose TLS cannot open)
  // must not keep the others from releasing.
  // The reference answers a release of a uid it does not hold (already released)
  // with an error; released is what the user asked for, so that counts as done.
  const releaseOn = (c: ControlConnection) => c.release({ uid }).catch((err: unknown) => {
    if (!isReferenceUnknownUid(err)) throw err;
  });
  const results = await Promise.allSettled(servers.map((s) => withServers([s], opts, ([c]) => releaseOn(c!))));
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ server: servers[i]!, err: r.reason as Error }] : []));
  if (failed.length === 0) return;
  if (servers.length === 1) throw failed[0]!.err;
  const done = servers.filter((s) => !failed.some((f) => f.server === s));
  throw new Error(
    `${done.length > 0 ? `released ${uid} on ${done.join(', ')}; ` : ''}not released on ${failed.map((f) => `${f.server} (${f.err.message})`).join('; ')}: ` +
      'run s2uc release again for those gateways once they are reachable (it is safe to repeat)',
  );
}
