// What the token authenticators share: reading the bearer token from gRPC metadata,
// scope checks, error classification and URL policy. Tokens never appear in messages
// or logs; `tokenRef` (a short hash prefix) is what logs may show.
import { createHash } from 'node:crypto';
import type { Metadata } from '@grpc/grpc-js';
import { ScistreamError, cannotCheckTokens } from '../protocol/errors.js';

/** What to tell a user whose token is missing, unknown, expired or revoked. */
export const LOGIN_ADVICE = 'run `s2uc login` (and `s2uc check-auth` to see which tokens you have), then retry';

/** What to tell a user whose token is for another gateway (its audience). */
export const WRONG_SCOPE_ADVICE =
  "check that ~/.scistream/config.toml names the scope this gateway's operator gives for it (under [servers.\"host:port\"]), then run `s2uc login` and retry";

/**
 * Bad authentication configuration (a missing client id, an insecure secret file,
 * an http:// URL to a remote host). The CLIs report it as a usage/configuration
 * error (exit code 2), because it is an INVALID_ARGUMENT ScistreamError.
 */
export class AuthConfigError extends ScistreamError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
    this.name = 'AuthConfigError';
  }
}

export const unauthenticated = (m: string) => new ScistreamError('UNAUTHENTICATED', m);
export const permissionDenied = (m: string) => new ScistreamError('PERMISSION_DENIED', m);
export const unavailable = (m: string) => new ScistreamError('UNAVAILABLE', m);

/** Whom to tell when the gateway cannot check tokens. */
export const TELL_OPERATOR = "tell the gateway's operator (the s2cs log says more)";

/**
 * The gateway cannot check tokens at all (its authorization server does not answer, or
 * refuses the gateway's own credentials): UNAVAILABLE, never read as the user's token
 * being bad. `cause` names the server and what it did; `next` what the user can do.
 */
export function cannotCheck(cause: string, next = TELL_OPERATOR): ScistreamError {
  return cannotCheckTokens(`this gateway cannot check access tokens: ${cause}; this is not a problem with your token: ${next}`);
}

const MAX_TOKEN_LENGTH = 16 * 1024;
// RFC 6750 b64token plus the characters JWTs and opaque tokens use in practice.
const TOKEN_CHARS = /^[A-Za-z0-9\-._~+/=]+$/;

/**
 * The access token of a call: the single `authorization` metadata value, with or
 * without a (case-insensitive) `Bearer ` prefix. Throws UNAUTHENTICATED when it is
 * missing or malformed; `scope` is named in the message so that the user knows what to ask for.
 */
export function bearerToken(metadata: Metadata, scope: string): string {
  const values = metadata.get('authorization');
  if (values.length === 0) {
    throw unauthenticated(
      `this s2cs requires an access token with scope "${scope}" and the request carried none: ` +
        `s2uc sends one when ~/.scistream/config.toml names that scope for this gateway (add [servers."HOST:PORT"] scope = "${scope}", HOST:PORT as given to --s2cs); ${LOGIN_ADVICE}`,
    );
  }
  if (values.length > 1) throw unauthenticated('the request carried more than one authorization value; send exactly one access token');
  const raw = values[0];
  if (typeof raw !== 'string') throw unauthenticated('the authorization value must be text (an access token), not binary');
  let token = raw.trim();
  const m = /^bearer(\s+|$)/i.exec(token);
  if (m) token = token.slice(m[0].length).trim();
  if (token.length === 0) throw unauthenticated(`the authorization value is empty: ${LOGIN_ADVICE}`);
  if (token.length > MAX_TOKEN_LENGTH || !TOKEN_CHARS.test(token)) {
    throw unauthenticated(`the authorization value is not a well-formed access token: ${LOGIN_ADVICE}`);
  }
  return token;
}

/** SHA-256 of a token (hex): the cache key, so that raw tokens are never held as keys. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A short, non-reversible reference to a token for log lines. */
export function tokenRef(token: string): string {
  return tokenHash(token).slice(0, 12);
}

/** Scopes granted to a token: the space-separated `scope` claim and/or the `scp` claim (array or string). */
export function grantedScopes(claims: { scope?: unknown; scp?: unknown }): Set<string> {
  const out = new Set<string>();
  const add = (v: unknown) => {
    const items: unknown[] = typeof v === 'string' ? v.split(/\s+/) : Array.isArray(v) ? v : [];
    for (const s of items) {
      if (typeof s === 'string' && s.length > 0) out.add(s);
    }
  };
  add(claims.scope);
  add(claims.scp);
  return out;
}

export function missingScope(scope: string): ScistreamError {
  return permissionDenied(
    `the access token does not carry the scope this s2cs requires ("${scope}"); ` +
      `log in again so that the token includes it (\`s2uc login\`, with that scope configured for this server in ~/.scistream/config.toml)`,
  );
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** True for http://127.0.0.1, http://localhost and http://[::1] URLs (tests, local development). */
export function isLoopbackHttp(url: URL): boolean {
  return url.protocol === 'http:' && LOOPBACK.has(url.hostname.toLowerCase());
}

/**
 * Parses an endpoint URL from configuration. https is required, except for
 * http on a loopback address (a provider running on the same host, e.g. in tests).
 */
export function endpointUrl(text: string, what: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new AuthConfigError(`${what} "${text}" is not a URL; write it as https://host/path`);
  }
  if (url.protocol !== 'https:' && !isLoopbackHttp(url)) {
    throw new AuthConfigError(`${what} "${text}" must use https:// (plain http is only accepted for 127.0.0.1 and localhost)`);
  }
  if (url.username || url.password) throw new AuthConfigError(`${what} must not contain credentials`);
  return url;
}

export type FailureClass = 'network' | 'server' | 'rejected' | 'other';

/**
 * Classifies a failure of an HTTP exchange with an authorization server, without
 * reading anything that may echo a token: 'network' (unreachable, timeout),
 * 'server' (5xx), 'rejected' (an OAuth error response such as invalid_client or
 * invalid_grant; `code` holds the OAuth error), 'other'.
 */
export function classifyFailure(err: unknown): { kind: FailureClass; code?: string; status?: number } {
  if (!(err instanceof Error)) return { kind: 'other' };
  const name = err.name;
  if (name === 'TimeoutError' || name === 'AbortError' || name === 'JWKSTimeout') return { kind: 'network', code: name };
  // fetch() failures: TypeError('fetch failed') with a cause such as ECONNREFUSED.
  if (err instanceof TypeError && /fetch failed/i.test(err.message)) {
    const cause = (err as { cause?: { code?: unknown } }).cause;
    return { kind: 'network', code: typeof cause?.code === 'string' ? cause.code : 'fetch failed' };
  }
  const e = err as { error?: unknown; status?: unknown; code?: unknown; cause?: unknown };
  // oauth4webapi ResponseBodyError: an OAuth error response ({ error, error_description }).
  if (typeof e.error === 'string' && typeof e.status === 'number') {
    return { kind: e.status >= 500 ? 'server' : 'rejected', code: e.error, status: e.status };
  }
  // oauth4webapi WWWAuthenticateChallengeError: a 401/403 carrying WWW-Authenticate (e.g.
  // `Basic realm=...` when the client credentials are refused), whatever the body says.
  if (e.code === 'OAUTH_WWW_AUTHENTICATE_CHALLENGE' && typeof e.status === 'number') {
    return { kind: e.status >= 500 ? 'server' : 'rejected', code: `HTTP ${e.status}`, status: e.status };
  }
  // openid-client ClientError for an unexpected status code: the cause is the Response.
  if (e.cause instanceof Response) {
    const status = e.cause.status;
    return { kind: status >= 500 ? 'server' : 'rejected', code: `HTTP ${status}`, status };
  }
  if (typeof e.code === 'string' && /TIMEOUT|ECONN|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH/.test(e.code)) {
    return { kind: 'network', code: e.code };
  }
  return { kind: 'other', code: typeof e.code === 'string' ? e.code : name };
}
