// The application controller: tells S2CS where the producer listens (PROD
// Hello), or asks where the consumer connects (CONS Hello).
import { status } from '@grpc/grpc-js';
import { ControlConnection, RemoteError, isReferenceStreamNotReady, isReferenceUnknownUid, type ConnectionOptions } from '../protocol/client.js';
import type { AppResponse__Output, Hello } from '../protocol/contract.js';
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
  /**
   * A token for the `authorization` metadata: what a reference gateway checks on Hello,
   * and ours with --hello-accepts-owner-token (appctrl's TOKEN). s2app sends none.
   */
  ownerToken?: string;
}

export async function sendHello(s2cs: string, uid: string, role: Role, prodListeners: string[], opts: HelloOptions): Promise<HelloResult> {
  validateUid(uid, '--uid');
  // A controller identifies itself with the secret, never with a user's token (unless given one: appctrl's TOKEN).
  const { appSecret, ownerToken, pool, ...connection } = opts;
  const anonymous = { ...connection, token: ownerToken, tokenFor: undefined };
  const conn = pool ? await pool.get(s2cs, anonymous) : await ControlConnection.open(s2cs, anonymous);
  try {
    const r = await helloUntilRequested(conn, { uid, role, prod_listeners: prodListeners, app_secret: appSecret ?? '' }, Date.now() + (connection.deadlineMs ?? DEFAULT_HELLO_MS));
    return { uid, role, message: r.message, listeners: r.listeners };
  } finally {
    if (!pool) conn.close();
  }
}

/**
 * Sends a Hello on `conn` until the gateway knows the stream or `until` (epoch ms)
 * passes. A Hello may come before s2uc's req: the gateway then answers that it knows
 * no such stream yet (ours with a short wait, the reference at once).
 */
export async function helloUntilRequested(conn: ControlConnection, msg: Hello, until: number): Promise<AppResponse__Output> {
  let pause = 250;
  for (;;) {
    try {
      return await conn.hello(msg, Math.max(1, until - Date.now()));
    } catch (err) {
      if (!notRequestedYet(err) || Date.now() + pause >= until) throw err;
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 2000);
    }
  }
}

const DEFAULT_HELLO_MS = 200_000;

/**
 * Answers that mean "no request for this uid here yet": ours (a consumer Hello's
 * wait ended, or no stream to check the application secret against) and the
 * reference's (`entry not found`, as UNKNOWN, or its stream published before its
 * listeners: UNKNOWN `'listeners'`).
 */
function notRequestedYet(err: unknown): boolean {
  if (!(err instanceof RemoteError)) return false;
  switch (err.code) {
    case status.NOT_FOUND:
      return true;
    case status.UNKNOWN:
      return isReferenceUnknownUid(err) || isReferenceStreamNotReady(err);
    case status.DEADLINE_EXCEEDED:
      return /no request for uid/.test(err.details);
    case status.UNAUTHENTICATED:
      return /no stream with uid \S+ on this server/.test(err.details);
    default:
      return false;
  }
}
