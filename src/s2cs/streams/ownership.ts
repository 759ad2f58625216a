// Who may act on a stream: its owner (and, to release it, an admin), with the role it was requested as.
import type { Identity } from '../../auth/index.js';
import { failedPrecondition, ScistreamError } from '../../protocol/errors.js';
import type { Role } from '../../protocol/validate.js';
import type { StreamRecord } from './record.js';

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
