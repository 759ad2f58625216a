// The last-resort guard of every rpc handler, on the control port and on the agent
// link: whatever a handler throws, or throws while its answer is sent, becomes a
// status for this call and a log line with an incident id. It never reaches the
// event loop, where it would end the process and every stream it forwards.
import { randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { undecodable } from './contract.js';
import { status as grpcStatus } from '@grpc/grpc-js';
import { ScistreamError, invalidArgument, statusName, toServiceError } from './errors.js';
import { shown } from './text.js';

export interface GuardOptions {
  /** The gRPC service, for the answer to a request that does not decode: 'scistream.Control'. */
  service: string;
  /** Where that service is defined: 'proto/scistream.proto'. */
  protoFile: string;
  logger: Logger;
  /** Logs a failed call; `incident` is the id its status carries too. */
  logFailure: (rpc: string, call: grpc.ServerUnaryCall<unknown, unknown>, err: unknown, incident: string) => void;
  /** The details sent for an unexpected error (default: toServiceError's). */
  internalDetails?: (incident: string) => string;
  /** Told of every answered call: its status name ('OK', 'NOT_FOUND', ...) and how long it took (metrics). */
  observe?: (rpc: string, code: string, seconds: number) => void;
}

export type Guarded = <Req, Res>(
  rpc: string,
  fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
) => grpc.handleUnaryCall<Req, Res>;

export function guardedUnary(opts: GuardOptions): Guarded {
  return (rpc, fn) => (call, callback) => {
    let answered = false;
    const started = process.hrtime.bigint();
    const observed = (code: string) => {
      if (!opts.observe) return;
      try {
        opts.observe(rpc, code, Number(process.hrtime.bigint() - started) / 1e9);
      } catch (err) {
        opts.logger.error({ rpc, err }, 'recording the call in the metrics failed');
      }
    };
    const fail = (err: unknown) => {
      const incident = randomBytes(4).toString('hex');
      opts.logFailure(rpc, call as grpc.ServerUnaryCall<unknown, unknown>, err, incident);
      if (answered) return;
      answered = true;
      try {
        const status = toServiceError(err, incident);
        if (!(err instanceof ScistreamError) && opts.internalDetails) status.details = opts.internalDetails(incident);
        callback(status);
        observed(statusName(status.code ?? grpcStatus.INTERNAL));
      } catch (sendErr) {
        opts.logger.error({ rpc, incident, err: sendErr }, 'could not send the error status; the call is left to its deadline');
      }
    };
    const succeed = (res: Parameters<typeof callback>[1]) => {
      if (answered) return;
      try {
        callback(null, res);
        answered = true;
        observed('OK');
      } catch (err) {
        fail(err);
      }
    };
    const garbled = undecodable(call.request);
    if (garbled !== undefined) {
      fail(invalidArgument(`the ${rpc} request is not a ${opts.service} ${rpc} message (${shown(garbled, 120)}); send it with a client built from ${opts.protoFile}`));
      return;
    }
    try {
      Promise.resolve(fn(call.request, call)).then(succeed, fail);
    } catch (err) {
      fail(err);
    }
  };
}
