// appctrl: the Python reference's application controller (`appctrl mock` and
// `appctrl create-appctrl`), over our Hello. It sends the Hello the reference's
// controller sends: PROD names CONTROLLER_IP:5074,5075,5076,37000,47000, CONS the uid
// only; the TOKEN goes in the `authorization` metadata (what a reference gateway
// checks) and, when it fits, as the application secret (what ours checks: the secret
// s2uc prints for the Hello).
import { isIP } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { status } from '@grpc/grpc-js';
import { formatAddress } from '../protocol/address.js';
import { RemoteError } from '../protocol/client.js';
import type { Role } from '../protocol/validate.js';
import { sendHello, type HelloOptions, type HelloResult } from './controller.js';

/** The ports the reference's controller names for its producer, whatever the application. */
export const REFERENCE_PROD_PORTS = [5074, 5075, 5076, 37000, 47000] as const;
/** Tries before giving up, and the pause between them, as the reference's controller. */
export const HELLO_TRIES = 5;
const PAUSE_MS = 100;
/** Longest application secret a Hello carries (validate.ts); a longer TOKEN is a user's access token only. */
const MAX_APP_SECRET = 256;

export interface ReferenceHello {
  uid: string;
  s2cs: string;
  token: string;
  role: Role;
  controllerIp: string;
}

/** TOKEN travels in gRPC metadata: printable ASCII only (an access token or our application secret always is). */
export function checkToken(token: string): void {
  if (!/^[\x21-\x7e]*$/.test(token.trim())) throw new Error('TOKEN must be printable ASCII without spaces: the application secret s2uc printed, or an access token');
}

/** ROLE as the reference compares it (PROD, else a consumer), but a typo is an error here. */
export function parseRole(text: string): Role {
  const r = text.trim().toUpperCase();
  if (r !== 'PROD' && r !== 'CONS') throw new Error(`ROLE "${text}" is neither PROD nor CONS`);
  return r;
}

/** The producer listeners of the reference's Hello: CONTROLLER_IP at its fixed ports. */
export function referenceProdListeners(controllerIp: string): string[] {
  if (isIP(controllerIp) === 0) throw new Error(`CONTROLLER_IP "${controllerIp}" is not an IP address (the producer's address, e.g. 10.0.0.1)`);
  return REFERENCE_PROD_PORTS.map((port) => formatAddress({ host: controllerIp, port }));
}

/** Answers no retry changes: the reference gives up on a refused token; so do we, and on a refused Hello. */
function final(err: unknown): boolean {
  if (!(err instanceof RemoteError)) return true;
  return [status.UNAUTHENTICATED, status.INVALID_ARGUMENT, status.PERMISSION_DENIED].includes(err.code);
}

/**
 * Sends the reference controller's Hello, up to HELLO_TRIES times (a pause of 0.1 s
 * between tries, as the reference). A Hello that comes before the request is held by
 * sendHello until the gateway knows the uid (up to the deadline), which the reference's
 * five quick tries could not do.
 */
export async function referenceHello(h: ReferenceHello, opts: HelloOptions, warn: (line: string) => void): Promise<HelloResult> {
  const listeners = h.role === 'PROD' ? referenceProdListeners(h.controllerIp) : [];
  const token = h.token.trim();
  const hello: HelloOptions = {
    ...opts,
    ownerToken: token === '' ? undefined : token,
    appSecret: token !== '' && token.length <= MAX_APP_SECRET ? token : undefined,
  };
  for (let attempt = 1; ; attempt++) {
    try {
      return await sendHello(h.s2cs, h.uid, h.role, listeners, hello);
    } catch (err) {
      if (final(err) || attempt >= HELLO_TRIES) {
        if (attempt > 1 && !final(err)) throw new Error(`Hello failed after ${HELLO_TRIES} tries: ${(err as Error).message}`);
        throw err;
      }
      warn(`Hello try ${attempt} of ${HELLO_TRIES} failed: ${(err as Error).message}`);
      await delay(PAUSE_MS);
    }
  }
}
