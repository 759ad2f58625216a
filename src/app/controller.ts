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

export interface HelloOptions extends ConnectionOptions {
  /** The stream's application secret from s2uc request; needed when s2cs checks tokens. */
  appSecret?: string;
}

export async function sendHello(s2cs: string, uid: string, role: Role, prodListeners: string[], opts: HelloOptions): Promise<HelloResult> {
  validateUid(uid, '--uid');
  // A controller identifies itself with the secret, never with a user's token.
  const { appSecret, pool, ...connection } = opts;
  const anonymous = { ...connection, token: undefined, tokenFor: undefined };
  const conn = pool ? await pool.get(s2cs, anonymous) : await ControlConnection.open(s2cs, anonymous);
  try {
    const r = await conn.hello({ uid, role, prod_listeners: prodListeners, app_secret: appSecret ?? '' });
    return { uid, role, message: r.message, listeners: r.listeners };
  } finally {
    if (!pool) conn.close();
  }
}
