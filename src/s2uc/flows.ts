// S2UC as a library: the request flows of the seed's rules 1-7, for the CLI and
// for workflow engines that import SciStream.
import { randomUUID } from 'node:crypto';
import { ControlConnection, type ConnectionOptions } from '../protocol/client.js';
import { validateUid, type Role } from '../protocol/validate.js';
import { createStreamCredentials } from '../security/stream-credentials.js';

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
}

export interface StreamSpec {
  numConn: number;
  rate?: number;
  uid?: string;
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
}

/** Reports a gateway's application secret (when it issued one) and keeps it for the result. */
function secretSink(opts: FlowOptions, server: string, role: Role): { value: string; take: (secret: string) => void } {
  const sink = {
    value: '',
    take: (secret: string) => {
      sink.value = secret;
      opts.onAppSecret?.(secret, server, role);
    },
  };
  return sink;
}

function begin(spec: StreamSpec, opts: FlowOptions): { uid: string; rate: number } {
  const uid = spec.uid !== undefined ? validateUid(spec.uid, '--uid') : randomUUID();
  opts.onUid?.(uid);
  return { uid, rate: spec.rate ?? 0 };
}

/** Runs `fn` with connections to the given servers and closes them afterwards. */
export async function withServers<T>(servers: string[], opts: ConnectionOptions, fn: (c: ControlConnection[]) => Promise<T>): Promise<T> {
  if (opts.pool) {
    const pool = opts.pool;
    return fn(await Promise.all(servers.map((s) => pool.get(s, opts))));
  }
  const conns: ControlConnection[] = [];
  try {
    for (const s of servers) conns.push(await ControlConnection.open(s, opts));
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
  const { uid, rate } = begin(spec, opts);
  return withServers([prodS2cs, consS2cs], opts, async ([prod, cons]) => {
    const both = [prod!, cons!];
    try {
      opts.onStep?.(`REQ to both gateways; waiting for the producer's Hello at ${prod!.server}`);
      const prodSecret = secretSink(opts, prod!.server, 'PROD');
      const consSecret = secretSink(opts, cons!.server, 'CONS');
      const [p, c, credentials] = await Promise.all([
        prod!.req({ uid, role: 'PROD', num_conn: spec.numConn, rate }, 0, prodSecret.take),
        cons!.req({ uid, role: 'CONS', num_conn: spec.numConn, rate }, undefined, consSecret.take),
        createStreamCredentials(uid),
      ]);
      opts.onStep?.('sending the connection map (UpdateTargets) and the stream credentials to both gateways');
      await Promise.all([
        prod!.update({ uid, remote_listeners: p.prod_listeners, role: 'PROD', credentials: credentials.producerSide }),
        cons!.update({ uid, remote_listeners: p.listeners, role: 'CONS', credentials: credentials.consumerSide }),
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
}

function side(uid: string, s2cs: string, listeners: string[], targets: string[], appSecret: string): SideResult {
  const r: SideResult = { uid, s2cs, listeners, targets };
  if (appSecret) r.appSecret = appSecret;
  return r;
}

/**
 * `s2uc inbound-request`: expose services inside one facility (targets) on its
 * gateway. S2UC speaks for the application controller: it sends the Hello itself.
 */
export async function inboundRequest(s2cs: string, targets: string[], spec: StreamSpec, opts: FlowOptions): Promise<SideResult> {
  const { uid, rate } = begin(spec, opts);
  return withServers([s2cs], opts, async ([gw]) => {
    try {
      // The Hello goes out once the gateway has taken the req and issued the
      // stream's application secret (none when it checks no tokens).
      let issued!: (secret: string) => void;
      const secret = new Promise<string>((resolve) => (issued = resolve));
      const [, r] = await Promise.all([
        secret.then((app_secret) => gw!.hello({ uid, role: 'PROD', prod_listeners: targets, app_secret })),
        gw!.req({ uid, role: 'PROD', num_conn: spec.numConn, rate }, 0, issued),
      ]);
      await gw!.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
      return side(uid, gw!.server, r.listeners, r.prod_listeners, '');
    } catch (err) {
      await releaseQuietly([gw!], uid);
      throw err;
    }
  });
}

/** `s2uc outbound-request`: let applications inside one facility reach remote listeners through its gateway. */
export async function outboundRequest(s2cs: string, remoteListeners: string[], spec: StreamSpec, opts: FlowOptions): Promise<SideResult> {
  const { uid, rate } = begin(spec, opts);
  return withServers([s2cs], opts, async ([gw]) => {
    try {
      const secret = secretSink(opts, gw!.server, 'CONS');
      const r = await gw!.req({ uid, role: 'CONS', num_conn: spec.numConn, rate }, undefined, secret.take);
      await gw!.update({ uid, remote_listeners: remoteListeners, role: 'CONS' });
      return side(uid, gw!.server, r.listeners, remoteListeners, r.app_secret || secret.value);
    } catch (err) {
      await releaseQuietly([gw!], uid);
      throw err;
    }
  });
}

/** `s2uc request1`: the seed tutorial's single-gateway flow; the producer's controller sends Hello. */
export async function request1(s2cs: string, spec: StreamSpec, opts: FlowOptions): Promise<SideResult> {
  const { uid, rate } = begin(spec, opts);
  return withServers([s2cs], opts, async ([gw]) => {
    try {
      opts.onStep?.(`REQ sent; waiting for the producer's Hello at ${gw!.server}`);
      const secret = secretSink(opts, gw!.server, 'PROD');
      const r = await gw!.req({ uid, role: 'PROD', num_conn: spec.numConn, rate }, 0, secret.take);
      await gw!.update({ uid, remote_listeners: r.prod_listeners, role: 'PROD' });
      return side(uid, gw!.server, r.listeners, r.prod_listeners, r.app_secret || secret.value);
    } catch (err) {
      await releaseQuietly([gw!], uid);
      throw err;
    }
  });
}

/** `s2uc release`: REL to every given server; idempotent, so safe to repeat. */
export async function releaseStream(uid: string, servers: string[], opts: ConnectionOptions): Promise<void> {
  validateUid(uid, 'uid');
  // Each gateway on its own connection: one that is down (or whose TLS cannot open)
  // must not keep the others from releasing.
  const results = await Promise.allSettled(servers.map((s) => withServers([s], opts, ([c]) => c!.release({ uid }))));
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ server: servers[i]!, err: r.reason as Error }] : []));
  if (failed.length === 0) return;
  if (servers.length === 1) throw failed[0]!.err;
  const done = servers.filter((s) => !failed.some((f) => f.server === s));
  throw new Error(
    `${done.length > 0 ? `released ${uid} on ${done.join(', ')}; ` : ''}not released on ${failed.map((f) => `${f.server} (${f.err.message})`).join('; ')}: ` +
      'run s2uc release again for those gateways once they are reachable (it is safe to repeat)',
  );
}
