// gRPC handlers of scistream.Control: authenticate, validate, call the stream
// table, map errors to statuses. No stream logic lives here.
import * as grpc from '@grpc/grpc-js';
import { safeDetails, shown } from '../protocol/text.js';
import type { Logger } from '../log.js';
import type { Authenticator, Identity } from '../auth/index.js';
import { APP_SECRET_HEADER, BINDING_HEADER, BINDS_BY_SECRET, CONTROL_SECRET_HEADER, PROPOSED_SECRET, type ControlHandlers } from '../protocol/contract.js';
import { guardedUnary } from '../protocol/guard.js';
import { ScistreamError } from '../protocol/errors.js';
import {
  validateControlSecret,
  validateHello,
  validateRelease,
  validateRequest,
  validateStatusSecrets,
  validateUid,
  validateUpdate,
  type Limits,
} from '../protocol/validate.js';
import { hashAppSecret } from '../auth/index.js';
import { peerAddress, showsInFull, type ControlProof } from './streams/binding.js';
import type { DataServer } from '../s2ds/index.js';
import { isCountedRefusal, type StreamStatus, type StreamTable } from './streams/index.js';
import type { AgentSummary } from '../s2ds/pool.js';
import { VERSION } from '../version.js';
import type { Refusals } from '../limits/refusals.js';
import { peerKey } from './pending.js';

export interface ServiceDeps {
  table: StreamTable;
  /** The data-server agents behind the gateway, for status (none when a data server is used as is). */
  agents?: () => AgentSummary[];
  dataServer: DataServer;
  auth: Authenticator;
  limits: Limits;
  refusals: Refusals;
  logger: Logger;
  /** Told of every answered rpc with its status name and duration (the gateway's metrics). */
  observe?: (rpc: string, code: string, seconds: number) => void;
}

/** Who asks for status: an identity, and whether it sees every stream and the agents. */
export interface Viewer {
  subject: string;
  seesAll: boolean;
  /**
   * Whether a stream it sees is shown in full (listeners, targets); absent: every one.
   * Without token checking, only streams the caller proves are its own (binding.ts).
   */
  full?: (s: StreamStatus) => boolean;
}

/** What a status caller brings besides its identity: its address and the control secrets it presents. */
export interface StatusProof {
  peer: string;
  secrets: string[];
}

/**
 * With tokens checked, users see their own streams; --admin identities see all. With
 * --auth none everyone sees every stream, but only its own in full.
 */
export function viewerOf(auth: Authenticator, table: StreamTable, caller: Identity, proof?: StatusProof): Viewer {
  if (auth.mode !== 'none') return { subject: caller.subject, seesAll: table.isAdmin(caller.subject) };
  const peer = proof?.peer ?? '';
  const hashes = new Set((proof?.secrets ?? []).map(hashAppSecret));
  return { subject: caller.subject, seesAll: true, full: (s) => showsInFull(s.binding, peer, hashes) };
}

/** What `status` shows a caller, numbers as numbers; the HTTP status page shows the same (monitor.ts). */
export type StatusView = ReturnType<typeof statusView>;

/** The status answer for one viewer: its streams (or all), and the agents only for those who see all. */
export function statusView(deps: Pick<ServiceDeps, 'table' | 'agents' | 'dataServer' | 'refusals'>, viewer: Viewer, uid?: string) {
  const { table } = deps;
  const caller = viewer;
  const { seesAll } = viewer;
  const all = table.status(uid);
  const streams = seesAll ? all : all.filter((s) => s.owner === caller.subject);
  const ports = deps.dataServer.ports();
  const full = (s: StreamStatus): boolean => viewer.full?.(s) ?? true;
  return {
    streams: streams.map((s) => redactedUnless(full(s), {
      uid: s.uid,
      role: s.role,
      num_conn: s.numConn,
      rate: s.rate,
      state: s.state,
      owner: s.owner,
      listeners: s.listeners,
      prod_listeners: s.prodListeners,
      targets: s.targets,
      bytes_to_target: s.stats?.bytesToTarget ?? 0,
      bytes_from_target: s.stats?.bytesFromTarget ?? 0,
      active_connections: s.stats?.activeConnections ?? 0,
      waiting_connections: s.stats?.waitingConnections ?? 0,
      accepted_connections: s.stats?.acceptedConnections ?? 0,
      refused_connections: s.stats?.refusedConnections ?? 0,
      lease_remaining_s: s.leaseRemainingS,
      age_s: s.ageS,
      to_target_bps: s.toTargetBps,
      from_target_bps: s.fromTargetBps,
      cap_bps: s.capBps,
      allow_from: s.allowFrom ?? [],
      releasing_on: s.releasingOn ?? [],
      redacted: false,
      broken_reason: s.brokenReason,
      expires_in_s: s.expiresInS,
      standing: s.standing,
      protocol: s.protocol ?? 'tcp',
      ...(s.stats?.datagrams
        ? {
            datagrams_to_target: s.stats.datagrams.datagramsToTarget,
            datagrams_from_target: s.stats.datagrams.datagramsFromTarget,
            datagram_drops: s.stats.datagrams.drops.map((d) => ({ kind: d.cause, count: d.count })),
            udp_flows: s.stats.datagrams.flows,
            udp_flows_opened: s.stats.datagrams.flowsOpened,
          }
        : {}),
      recent_connections: (s.stats?.recentConnections ?? []).map((r) => ({
        listener: r.listener,
        leg: r.leg,
        peer: r.peer,
        bytes_in: r.bytesIn,
        bytes_out: r.bytesOut,
        duration_ms: r.durationMs,
        end: r.end,
        ended_at_ms: r.endedAtMs,
      })),
    })),
    rate_policy: table.rateLimits().policy,
    capacity_bps: table.rateLimits().capacityBps,
    reserved_bps: table.rateLimits().policy === 'reserve' ? table.reservedBps() : 0,
    reserved_ports: ports.reserved,
    free_ports: ports.free,
    refusals: deps.refusals.totals(),
    ended: table
      .endedRecently()
      .filter((e) => seesAll || e.owner === caller.subject)
      .filter((e) => !uid || e.uid === uid)
      .map((e) => ({ uid: e.uid, owner: e.owner, why: e.why, ago_s: Math.max(0, Math.floor((Date.now() - e.at) / 1000)) })),
    // The facility's internal addresses: for operators, not for every user.
    agents: seesAll
      ? (deps.agents?.() ?? []).map((a) => ({
        name: a.name,
        address: a.address,
        listener_ip: a.listenerIp ?? '',
        up: a.up,
        streams: a.streams,
        free_ports: a.freePorts,
        bytes_per_second: Math.round(a.bytesPerSecond),
      }))
      : [],
  };
}

/** A stream row without where it listens and forwards to, for who cannot show it is theirs. */
function redactedUnless<T extends { listeners: string[]; prod_listeners: string[]; targets: string[]; recent_connections: unknown[]; redacted: boolean }>(full: boolean, row: T): T {
  return full ? row : { ...row, listeners: [], prod_listeners: [], targets: [], recent_connections: [], redacted: true };
}

export function controlHandlers(deps: ServiceDeps): ControlHandlers {
  // auth and limits are read at each call: a configuration reload replaces them (ControlServer.reconfigure).
  const { table } = deps;
  const unary = guardedUnary({
    service: 'scistream.Control',
    protoFile: 'proto/scistream.proto',
    logger: deps.logger,
    logFailure: (rpc, call, err, incident) => logFailure(deps.logger, rpc, (call.request as { uid?: unknown } | undefined)?.uid, peerOf(call), err, incident),
    observe: deps.observe,
  });

  return {
    req: unary('req', async (msg, call) => {
      const caller = await deps.auth.authenticate(call.metadata, 'req');
      const request = validateRequest(msg, deps.limits);
      const peer = peerOf(call);
      const bySecret = call.metadata.get(BINDING_HEADER)[0] === BINDS_BY_SECRET;
      // A secret the client proposes (retry-safe, see contract.ts); anything not shaped like one is ignored.
      const proposed = call.metadata.get(CONTROL_SECRET_HEADER)[0];
      const secret = bySecret && typeof proposed === 'string' && PROPOSED_SECRET.test(proposed) ? proposed : undefined;
      const ready = table.req(request, caller, peerKey(peer), { peer: peerAddress(peer), bySecret, secret });
      // Only the req that created the stream gets its control secret (a retry gets none).
      const controlSecret = table.takeControlSecret(request.uid);
      // Headers go out at once, with the secrets when there are: a producer's req
      // is answered only after the Hello that must carry the app secret, and its
      // client may need the control secret to release it meanwhile.
      const appSecret = table.appSecret(request.uid);
      const md = new grpc.Metadata();
      if (appSecret) md.set(APP_SECRET_HEADER, appSecret);
      if (controlSecret) md.set(CONTROL_SECRET_HEADER, controlSecret);
      call.sendMetadata(md);
      const r = await ready;
      return { listeners: r.listeners, prod_listeners: r.prodListeners, app_secret: appSecret, control_secret: controlSecret };
    }),
    update: unary('update', async (msg, call) => {
      const caller = await deps.auth.authenticate(call.metadata, 'update');
      const r = await table.update(validateUpdate(msg), caller, proofOf(call, msg.control_secret));
      return { listeners: r.listeners, prod_listeners: r.prodListeners };
    }),
    release: unary('release', async (msg, call) => {
      const caller = await deps.auth.authenticate(call.metadata, 'release');
      await table.release(validateRelease(msg), caller, proofOf(call, msg.control_secret));
      return { listeners: [], prod_listeners: [] };
    }),
    // Application controllers present the stream's application secret, not a user
    // token; the table checks it when s2cs checks tokens, and with
    // --hello-accepts-owner-token takes the owner's token in its place (authenticated
    // only then: a Hello with a good secret costs no token check).
    // Hello is not authenticated: its caps count by the caller's address.
    hello: unary('hello', async (msg, call) => {
      const hello = validateHello(msg);
      const token = call.metadata.get('authorization').length > 0;
      return table.hello(hello, peerKey(peerOf(call)), { token, authenticate: () => deps.auth.authenticate(call.metadata, 'hello') });
    }),
    status: unary('status', async (msg, call) => {
      const caller = await deps.auth.authenticate(call.metadata, 'status');
      const proof = { peer: peerAddress(peerOf(call)), secrets: validateStatusSecrets(msg.control_secrets) };
      return statusView(deps, viewerOf(deps.auth, table, caller, proof), msg.uid ? validateUid(msg.uid) : undefined);
    }),
    // Asked by s2uc before it reserves anything (so no token: a client learns what
    // the gateway can do before it decides what to send). It reveals nothing about
    // streams or users.
    capabilities: unary('capabilities', async () => ({
      implementation: 'scistream-ts',
      version: VERSION,
      stream_credentials: true,
      plaintext_data: table.acceptsPlaintextData(),
      rate_policy: table.rateLimits().policy,
      early_app_secret: true,
      checks_tokens: deps.auth.mode !== 'none',
    })),
  };
}

/** What an update or release brings to show the stream is the caller's (binding.ts). */
function proofOf(call: grpc.ServerUnaryCall<unknown, unknown>, secret: string | undefined): ControlProof {
  return { peer: peerAddress(peerOf(call)), secret: validateControlSecret(secret) };
}

function peerOf(call: grpc.ServerUnaryCall<unknown, unknown>): string {
  try {
    return call.getPeer();
  } catch {
    return 'unknown';
  }
}

function logFailure(logger: Logger, rpc: string, uid: unknown, peer: string, err: unknown, incident: string): void {
  const safeUid = typeof uid === 'string' ? shown(uid, 128) : undefined;
  if (isCountedRefusal(err)) {
    // A flood of these must not flood the log: Refusals logs them once per interval.
    logger.debug({ rpc, uid: safeUid, peer }, 'refused (counted in status refusals)');
  } else if (err instanceof ScistreamError) {
    logger.info({ rpc, uid: safeUid, peer, status: err.kind }, safeDetails(err.message));
  } else {
    logger.error({ rpc, uid: safeUid, peer, incident, err }, `unexpected failure while serving an rpc (incident ${incident})`);
  }
}
