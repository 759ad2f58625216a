// Who may act on a stream: its owner (and, to release it, an admin), what binds it to
// its requester without token checking (binding.ts), and the role it was requested as.
import { verifyAppSecretHash, type Identity } from '../../auth/index.js';
import { failedPrecondition, ScistreamError } from '../../protocol/errors.js';
import type { Role } from '../../protocol/validate.js';
import type { StreamRecord } from './record.js';
import type { StreamTableOptions } from './options.js';
import { controlDenied, controlProblem, retryProblem, type ControlProof } from './binding.js';

export function checkRole(record: StreamRecord, role: Role, what: string): void {
  if (record.request.role !== role) {
    throw failedPrecondition(
      `${what} with role ${role} does not match stream ${record.request.uid}, which was requested as ${record.request.role} on this server`,
    );
  }
}

/** `admins`, where given (release), may act on every stream. */
export function checkOwner(record: StreamRecord, caller: Identity, action: string, admins?: ReadonlySet<string>): void {
  if (record.owner.subject === caller.subject) return;
  if (admins?.has(caller.subject)) return;
  throw new ScistreamError('PERMISSION_DENIED', `stream ${record.request.uid} belongs to another user; only its owner may ${action} it`);
}

/** A Hello that carried a user token in place of the application secret (--hello-accepts-owner-token): the token must be the owner's. */
export function checkHelloOwner(record: StreamRecord, subject: string): void {
  if (record.owner.subject === subject) return;
  throw new ScistreamError(
    'PERMISSION_DENIED',
    `stream ${record.request.uid} belongs to another user: a Hello without its application secret must carry the token of the user who requested it (--hello-accepts-owner-token)`,
  );
}

/**
 * A standing tunnel (tunnels/) is changed and released by the configuration file
 * alone: no client, admin included, may act on it; the tunnels' own calls carry the
 * secret it is bound to.
 */
function checkStanding(record: StreamRecord, secret: string | undefined, action: 'update' | 'release' | 'request'): void {
  if (record.standing === undefined) return;
  if (secret && verifyAppSecretHash(secret, record.binding.secretHash)) return;
  throw new ScistreamError(
    'PERMISSION_DENIED',
    `stream ${record.request.uid} is a standing tunnel of ${record.standing} ([[tunnel]] name = "${record.request.uid}"): no client may ${action} it; ` +
      'change or remove it in that file and reload s2cs (SIGHUP), or use another uid',
  );
}

/** What a call without a proof brings (the table used directly, as in tests): no address, no secret. */
const NO_PROOF: ControlProof = { peer: '', secret: '' };

/**
 * An update or release: the owner's identity (or, to release, an admin's), then what
 * binds the stream (binding.ts): with --auth none the requester's secret or address;
 * with token checking a control secret only when one is given.
 */
export function checkControl(record: StreamRecord, caller: Identity, proof: ControlProof | undefined, action: 'update' | 'release', opts: StreamTableOptions): void {
  checkStanding(record, proof?.secret, action);
  const admins = action === 'release' ? opts.admins : undefined;
  checkOwner(record, caller, action, admins);
  // Admin rules stay: an admin releases any stream without its secret.
  if (record.owner.subject !== caller.subject && admins?.has(caller.subject)) return;
  const problem = controlProblem(record.binding, proof ?? NO_PROOF, opts.bindStreams !== true);
  if (problem) throw controlDenied(record.request.uid, action, problem);
}

/** A req repeated for a stream held: the owner's identity, and with --auth none the first req's address. */
export function checkRetry(record: StreamRecord, caller: Identity, peer: string | undefined, opts: StreamTableOptions, secret?: string): void {
  checkStanding(record, secret, 'request');
  checkOwner(record, caller, 'request');
  const problem = retryProblem(record.binding, peer ?? '', opts.bindStreams !== true, secret);
  if (problem) throw controlDenied(record.request.uid, 'request', problem);
}
