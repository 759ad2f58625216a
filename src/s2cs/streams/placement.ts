// Where a stream's listeners are and who may reach them (Request.allow_from and
// listener_ports), for callers inside s2cs that admit streams without a Request
// message (the configuration file's standing tunnels): the same checks and canonical
// form as a req from the wire, so that the table treats both alike (retries compare
// the canonical fields; --data-allow-from narrows the list at StreamTable.req).
import { validateAllowList } from '../../protocol/cidr.js';
import { validateListenerPorts, validateRole, validateUid, type Role, type StreamRequest } from '../../protocol/validate.js';
import { invalidArgument } from '../../protocol/errors.js';

export interface PlacedStream {
  uid: string;
  role: Role;
  numConn: number;
  /** kB/s as Request.rate (0: none stated). */
  rate?: number;
  lifetimeS?: number;
  /** CIDR blocks or addresses, any spelling (canonicalised here); absent or empty: the gateway's bound only. */
  allowFrom?: readonly string[];
  /** One port per connection, in listener order; absent or empty: the gateway picks. */
  listenerPorts?: readonly number[];
}

/**
 * The StreamRequest for StreamTable.req of a stream admitted from inside s2cs, with
 * chosen ports and an allow-list. Throws INVALID_ARGUMENT naming the field (`where`
 * prefixes it, e.g. "tunnel gpu-svc: ") as a req from the wire would get. Then:
 * `table.req(placedRequest(spec), owner, '', requester)`.
 */
export function placedRequest(spec: PlacedStream, where = ''): StreamRequest {
  try {
    const uid = validateUid(spec.uid);
    const role = validateRole(spec.role);
    if (!Number.isInteger(spec.numConn) || spec.numConn < 1) throw invalidArgument(`num_conn ${spec.numConn} is not valid: give 1 or more`);
    const rate = spec.rate ?? 0;
    if (!Number.isInteger(rate) || rate < 0) throw invalidArgument(`rate ${rate} is not valid; give 0 (unlimited) or a positive whole number`);
    const request: StreamRequest = { uid, role, numConn: spec.numConn, rate, ...(spec.lifetimeS ? { lifetimeS: spec.lifetimeS } : {}) };
    const allowFrom = validateAllowList(spec.allowFrom ?? [], 'allow_from');
    if (allowFrom.length > 0) request.allowFrom = allowFrom;
    const ports = validateListenerPorts(spec.listenerPorts ?? [], spec.numConn);
    if (ports.length > 0) request.listenerPorts = ports;
    return request;
  } catch (err) {
    if (where && err instanceof Error) err.message = `${where}${err.message}`;
    throw err;
  }
}
