// The application controller: tells S2CS where the producer listens (PROD
// Hello), or asks where the consumer connects (CONS Hello).
import { ControlConnection, type ConnectionOptions } from '../protocol/client.js';
import { validateUid, type Role } from '../protocol/validate.js';

export interface HelloResult {
  uid: string;
  role: Role;
  message: string;
  /** The gateway's listeners for this stream (for CONS: where the consumer connects). */
  listeners: string[];
}

export async function sendHello(s2cs: string, uid: string, role: Role, prodListeners: string[], opts: ConnectionOptions): Promise<HelloResult> {
  validateUid(uid, '--uid');
  const conn = await ControlConnection.open(s2cs, opts);
  try {
    const r = await conn.hello({ uid, role, prod_listeners: prodListeners });
    return { uid, role, message: r.message, listeners: r.listeners };
  } finally {
    conn.close();
  }
}
