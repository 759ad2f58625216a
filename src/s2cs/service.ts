// gRPC handlers of scistream.Control: authenticate, validate, call the stream
// table, map errors to statuses. No stream logic lives here.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { Authenticator, RpcName } from '../auth/index.js';
import { APP_SECRET_HEADER, type ControlHandlers } from '../protocol/contract.js';
import { ScistreamError, toServiceError } from '../protocol/errors.js';
import { validateHello, validateRelease, validateRequest, validateUid, validateUpdate, type Limits } from '../protocol/validate.js';
import type { DataServer } from '../s2ds/index.js';
import { isCountedRefusal, type StreamTable } from './streams.js';
import type { Refusals } from '../limits/refusals.js';
import { peerKey } from './pending.js';

export interface ServiceDeps {
  table: StreamTable;
  dataServer: DataServer;
  auth: Authenticator;
  limits: Limits;
  refusals: Refusals;
  logger: Logger;
}

export function controlHandlers(deps: ServiceDeps): ControlHandlers {
  const { table, auth, limits } = deps;
  const unary =
    <Req extends { uid?: string }, Res>(rpc: RpcName, fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> =>
    (call, callback) => {
      fn(call.request, call).then(
        (res) => callback(null, res),
        (err: unknown) => {
          logFailure(deps.logger, rpc, call.request.uid, call.getPeer(), err);
          callback(toServiceError(err));
        },
      );
    };

  return {
    req: unary('req', async (msg, call) => {
      const caller = await auth.authenticate(call.metadata, 'req');
      const request = validateRequest(msg, limits);
      const ready = table.req(request, caller, peerKey(call.getPeer()));
      // Headers go out at once, with the secret when there is one: a producer's req
      // is answered only after the Hello that must carry it.
      const appSecret = table.appSecret(request.uid);
      const md = new grpc.Metadata();
      if (appSecret) md.set(APP_SECRET_HEADER, appSecret);
      call.sendMetadata(md);
      const r = await ready;
      return { listeners: r.listeners, prod_listeners: r.prodListeners, app_secret: appSecret };
    }),
    update: unary('update', async (msg, call) => {
      const caller = await auth.authenticate(call.metadata, 'update');
      const r = await table.update(validateUpdate(msg), caller);
      return { listeners: r.listeners, prod_listeners: r.prodListeners };
    }),
    release: unary('release', async (msg, call) => {
      const caller = await auth.authenticate(call.metadata, 'release');
      await table.release(validateRelease(msg), caller);
      return { listeners: [], prod_listeners: [] };
    }),
    // Application controllers present the stream's application secret, not a user
    // token; the table checks it when s2cs checks tokens.
    // Hello is not authenticated: its caps count by the caller's address.
    hello: unary('hello', async (msg, call) => table.hello(validateHello(msg), peerKey(call.getPeer()))),
    status: unary('status', async (msg, call) => {
      const caller = await auth.authenticate(call.metadata, 'status');
      // With tokens checked, users see their own streams; --admin identities see all.
      const all = table.status(msg.uid ? validateUid(msg.uid) : undefined);
      const streams = auth.mode === 'none' || table.isAdmin(caller.subject) ? all : all.filter((s) => s.owner === caller.subject);
      const ports = deps.dataServer.ports();
      return {
        streams: streams.map((s) => ({
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
          lease_remaining_s: s.leaseRemainingS,
        })),
        reserved_ports: ports.reserved,
        free_ports: ports.free,
        refusals: deps.refusals.totals(),
      };
    }),
  };
}

function logFailure(logger: Logger, rpc: string, uid: string | undefined, peer: string, err: unknown): void {
  const safeUid = typeof uid === 'string' ? uid.slice(0, 128) : undefined;
  if (isCountedRefusal(err)) {
    // A flood of these must not flood the log: Refusals logs them once per interval.
    logger.debug({ rpc, uid: safeUid, peer }, 'refused (counted in status refusals)');
  } else if (err instanceof ScistreamError) {
    logger.info({ rpc, uid: safeUid, peer, status: err.kind }, err.message);
  } else {
    logger.error({ rpc, uid: safeUid, peer, err }, 'unexpected failure while serving an rpc');
  }
}
