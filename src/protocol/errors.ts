// Typed errors of the control protocol and their one mapping to gRPC status codes.
import { createRequire } from 'node:module';
import type * as Grpc from '@grpc/grpc-js';
import type { ServiceError, status } from '@grpc/grpc-js';
import { safeDetails } from './text.js';

// grpc-js takes ~25 ms to load; a CLI that only parses its arguments or prints --help
// never needs it. Required on first use (the same module instance as an `import` of it).
let grpcModule: typeof Grpc | undefined;
const grpc = (): typeof Grpc => (grpcModule ??= createRequire(import.meta.url)('@grpc/grpc-js') as typeof Grpc);

export type ErrorKind =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'RESOURCE_EXHAUSTED'
  | 'DEADLINE_EXCEEDED'
  | 'FAILED_PRECONDITION'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'UNAVAILABLE'
  | 'ABORTED'
  | 'INTERNAL';

/** An error meant for a human: `message` says what went wrong and what to do next. */
export class ScistreamError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** false: a client should not resend the call at once (the cause lasts longer than a retry's backoff). */
    readonly retryable = true,
  ) {
    super(message);
    this.name = 'ScistreamError';
  }
}

/**
 * Trailer by which s2cs marks a status as its own answer: a client then knows the call
 * reached s2cs (an UNAVAILABLE it sent is not a connection failure, and is not probed).
 */
export const ANSWERED_HEADER = 'scistream-answered';

/**
 * UNAVAILABLE because this gateway cannot check access tokens (its authorization server
 * does not answer, or refuses the gateway's own client credentials): the user's token is
 * not the cause, and a resend within a second would meet the same (no retry).
 */
export const cannotCheckTokens = (m: string) => new ScistreamError('UNAVAILABLE', m, false);

export const invalidArgument = (m: string) => new ScistreamError('INVALID_ARGUMENT', m);
export const notFound = (m: string) => new ScistreamError('NOT_FOUND', m);
export const alreadyExists = (m: string) => new ScistreamError('ALREADY_EXISTS', m);
export const resourceExhausted = (m: string) => new ScistreamError('RESOURCE_EXHAUSTED', m);
export const deadlineExceeded = (m: string) => new ScistreamError('DEADLINE_EXCEEDED', m);
export const failedPrecondition = (m: string) => new ScistreamError('FAILED_PRECONDITION', m);
export const aborted = (m: string) => new ScistreamError('ABORTED', m);

/** gRPC's status code for each kind: the code is the kind's name. */
const code = (kind: ErrorKind): status => grpc().status[kind];

/**
 * The one place where server-side errors become gRPC statuses. Anything that is
 * not a ScistreamError is a bug: the client gets INTERNAL without internals, with
 * the incident id that the gateway's log line carries too.
 */
export function toServiceError(err: unknown, incident: string): Partial<ServiceError> {
  const { Metadata, status } = grpc();
  const metadata = new Metadata();
  metadata.set(ANSWERED_HEADER, '1');
  if (err instanceof ScistreamError) {
    // gRPC's retry rules: a negative pushback tells the client not to resend the call.
    if (!err.retryable) metadata.set('grpc-retry-pushback-ms', '-1');
    return { code: code(err.kind), details: safeDetails(err.message), metadata };
  }
  return {
    code: status.INTERNAL,
    details: `internal error in s2cs (incident ${incident}); the gateway's log has the details under that id: please report it`,
    metadata,
  };
}

/** The status name of a gRPC error seen by a client, e.g. "NOT_FOUND". */
export function statusName(code: number): string {
  return grpc().status[code] ?? `code ${code}`;
}
