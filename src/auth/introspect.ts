// `--auth introspect`: opaque access tokens checked with OAuth 2.0 Token Introspection
// (RFC 7662) the way Globus Auth offers it to resource servers: POST token=... to the
// introspection endpoint with the gateway's client credentials in HTTP Basic (default)
// or in the form body (client_secret_post, `--introspection-auth post`).
import * as oidc from 'openid-client';
import type { Metadata } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import type { Authenticator, Identity, RpcName } from './index.js';
import {
  AuthConfigError,
  LOGIN_ADVICE,
  WRONG_SCOPE_ADVICE,
  bearerToken,
  classifyFailure,
  endpointUrl,
  grantedScopes,
  isLoopbackHttp,
  missingScope,
  tokenHash,
  unauthenticated,
  cannotCheck,
  TELL_OPERATOR,
} from './common.js';

export interface IntrospectionAuthOptions {
  /** The authorization server's introspection endpoint, e.g. https://auth.globus.org/v2/oauth2/token/introspect */
  introspectionUrl: string;
  /** This gateway's client id at the authorization server (a Globus resource server client). */
  clientId: string;
  /** Its client secret (see `readClientSecret`). Never logged. */
  clientSecret: string;
  /**
   * How the client id and secret reach the endpoint: 'basic' (HTTP Basic, default; see
   * `basicCredential` for the escaping) or 'post' (client_secret_post: in the form body).
   */
  clientAuth?: IntrospectionClientAuth;
  /** The scope every caller's token must carry, e.g. https://auth.globus.org/scopes/<id>/scistream */
  scope: string;
  /** When set, the introspection response's `aud` must contain this value (for Globus: this gateway's client id). */
  audience?: string;
  /** How many introspection results to keep (least recently used go first). Default 1000. */
  cacheSize?: number;
  /**
   * The longest a result is reused, in seconds; results are never reused past the
   * token's `exp`. Default 60. A revoked token stays accepted for at most this long. 0 disables caching.
   */
  cacheMaxSeconds?: number;
  /** Timeout of one introspection request, in seconds. Default 10. */
  timeoutSeconds?: number;
  logger?: Logger;
}

/** What introspection said about an active token (the cached part; no token inside). */
interface Introspected {
  subject?: string;
  username?: string;
  clientId?: string;
  scopes: Set<string>;
  aud: string[];
  exp?: number;
  nbf?: number;
  tokenType?: string;
  /** Epoch ms until which this result may be reused. */
  reuseUntil: number;
}

const CLOCK_SKEW_SECONDS = 5;

export type IntrospectionClientAuth = 'basic' | 'post';
export const INTROSPECTION_CLIENT_AUTH: readonly IntrospectionClientAuth[] = ['basic', 'post'];

/**
 * A client id or secret as it goes into HTTP Basic. Providers disagree here: RFC 6749
 * 2.3.1 says to form-encode both first (openid-client escapes every character but
 * A-Z a-z 0-9, so `cid-1234` goes as `cid%2D1234`), and decoding servers
 * (oidc-provider, for one) undo it; others compare the decoded base64 literally,
 * as `curl -u` and globus_sdk send it (Globus Auth, whose client ids are UUIDs). So only
 * characters that a decoding server would read differently from a literal one are
 * escaped, and everything else (unreserved characters, other punctuation, spaces,
 * non-ASCII as UTF-8) goes as is, which both kinds read the same:
 *   `%` and `+`  a decoder turns `%xx` into a byte and `+` into a space. No spelling
 *                satisfies both kinds; with `literal` false they are escaped (%25, %2B)
 *                as the RFC says, with `literal` true sent as is (IntrospectionAuth tries
 *                both, see `basicForms`);
 *   `:` in the id  it would end the id for every server (RFC 7617 forbids it there), so
 *                it is always escaped; in the secret it is safe (both split at the first `:`).
 */
export function basicCredential(value: string, kind: 'id' | 'secret', literal = false): string {
  const special = kind === 'id' ? (literal ? /:/g : /[%+:]/g) : literal ? null : /[%+]/g;
  return special === null ? value : value.replace(special, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The Authorization header value for `id`/`secret` (UTF-8 before base64). */
export function basicHeader(id: string, secret: string, literal = false): string {
  const pair = `${basicCredential(id, 'id', literal)}:${basicCredential(secret, 'secret', literal)}`;
  return `Basic ${Buffer.from(pair, 'utf8').toString('base64')}`;
}

/**
 * The HTTP Basic spellings to try, preferred first: one when no character is read
 * differently by decoding and literal servers, else the RFC-escaped one and then the literal one.
 */
function basicForms(id: string, secret: string): { header: string; name: string }[] {
  const escaped = basicHeader(id, secret, false);
  const literal = basicHeader(id, secret, true);
  return escaped === literal ? [{ header: escaped, name: 'basic' }] : [
    { header: escaped, name: 'basic (%, + escaped)' },
    { header: literal, name: 'basic (literal)' },
  ];
}

/** Client authentication for openid-client: a fixed Authorization header. */
function fixedBasic(header: string): oidc.ClientAuth {
  return (_as, _client, _body, headers) => headers.set('authorization', header);
}

export class IntrospectionAuth implements Authenticator {
  readonly mode = 'introspect';
  /** One per way of sending the client credentials (see basicForms); `preferred` is the one that last worked. */
  private readonly configs: { config: oidc.Configuration; name: string }[];
  private preferred = 0;
  private readonly endpoint: URL;
  private readonly cache = new Map<string, Introspected>();
  private readonly inflight = new Map<string, Promise<Introspected>>();
  private readonly cacheSize: number;
  private readonly cacheMaxMs: number;
  private readonly logger: Logger;

  constructor(private readonly opts: IntrospectionAuthOptions) {
    for (const key of ['introspectionUrl', 'clientId', 'clientSecret', 'scope'] as const) {
      if (typeof opts[key] !== 'string' || opts[key].trim() === '') throw new AuthConfigError(`introspection: ${key} is required`);
    }
    if (/\s/.test(opts.scope)) throw new AuthConfigError(`introspection: scope "${opts.scope}" must be one scope (no spaces)`);
    this.endpoint = endpointUrl(opts.introspectionUrl, 'introspection URL');
    this.cacheSize = Math.max(1, Math.floor(opts.cacheSize ?? 1000));
    this.cacheMaxMs = Math.max(0, (opts.cacheMaxSeconds ?? 60) * 1000);
    this.logger = (opts.logger ?? silentLogger).child({ auth: 'introspect' });
    const method = opts.clientAuth ?? 'basic';
    if (!INTROSPECTION_CLIENT_AUTH.includes(method)) {
      throw new AuthConfigError(`introspection: client authentication "${String(method)}" is not one of ${INTROSPECTION_CLIENT_AUTH.join(', ')}`);
    }
    const auths =
      method === 'post'
        ? [{ auth: oidc.ClientSecretPost(opts.clientSecret), name: 'post' }]
        : basicForms(opts.clientId, opts.clientSecret).map((f) => ({ auth: fixedBasic(f.header), name: f.name }));
    this.configs = auths.map(({ auth, name }) => {
      // No discovery: a bare introspection endpoint is all a resource server needs.
      const config = new oidc.Configuration({ issuer: this.endpoint.origin, introspection_endpoint: this.endpoint.href }, opts.clientId, undefined, auth);
      if (isLoopbackHttp(this.endpoint)) oidc.allowInsecureRequests(config);
      config.timeout = opts.timeoutSeconds ?? 10;
      return { config, name };
    });
  }

  async authenticate(metadata: Metadata, rpc: RpcName): Promise<Identity> {
    const token = bearerToken(metadata, this.opts.scope);
    const key = tokenHash(token);
    const ref = key.slice(0, 12);
    let result = this.fromCache(key);
    const cached = result !== undefined;
    result ??= await this.introspectOnce(token, key, ref);
    try {
      const identity = this.check(result);
      this.logger.debug({ rpc, token: ref, sub: identity.subject, cached }, 'access token accepted');
      return identity;
    } catch (err) {
      this.logger.debug({ rpc, token: ref, cached, reason: (err as Error).message }, 'access token refused');
      throw err;
    }
  }

  /** Forgets every cached introspection result (e.g. after revoking tokens). */
  clearCache(): void {
    this.cache.clear();
  }

  private fromCache(key: string): Introspected | undefined {
    const hit = this.cache.get(key);
    if (!hit) return undefined;
    this.cache.delete(key);
    if (hit.reuseUntil <= Date.now()) return undefined;
    this.cache.set(key, hit); // most recently used last
    return hit;
  }

  /** One introspection request per token at a time, however many calls carry it. */
  private introspectOnce(token: string, key: string, ref: string): Promise<Introspected> {
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.introspect(token, key, ref).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  /**
   * One introspection request, with the preferred way of sending the client credentials;
   * when the provider rejects them (401) and another spelling exists, that one is tried
   * and, if it works, kept for the next requests.
   */
  private async request(token: string, ref: string): Promise<oidc.IntrospectionResponse> {
    const first = this.preferred;
    let lastErr: unknown;
    for (let n = 0; n < this.configs.length; n++) {
      const i = (first + n) % this.configs.length;
      try {
        const res = await oidc.tokenIntrospection(this.configs[i].config, token, { token_type_hint: 'access_token' });
        if (i !== this.preferred) {
          this.preferred = i;
          this.logger.info({ clientAuth: this.configs[i].name, endpoint: this.endpoint.href }, 'the introspection endpoint accepted the client credentials in this form; using it from now on');
        }
        return res;
      } catch (err) {
        lastErr = err;
        if (!credentialsRejected(classifyFailure(err))) break;
        if (n + 1 < this.configs.length) this.logger.debug({ token: ref, clientAuth: this.configs[i].name }, 'client credentials rejected in this form; trying the next');
      }
    }
    throw lastErr;
  }

  private async introspect(token: string, key: string, ref: string): Promise<Introspected> {
    let res: oidc.IntrospectionResponse;
    try {
      res = await this.request(token, ref);
    } catch (err) {
      const f = classifyFailure(err);
      const tried = this.configs.map((c) => c.name).join(', then ');
      const at = { token: ref, failure: f.kind, code: f.code, status: f.status, endpoint: this.endpoint.href, clientAuth: tried };
      if (f.kind === 'network' || f.kind === 'server') {
        this.logger.warn(at, 'token introspection failed: the introspection endpoint did not answer');
        const what = f.kind === 'server' ? `failed (${f.code ?? 'HTTP 5xx'})` : `did not answer (${f.code ?? f.kind})`;
        throw cannotCheck(`its authorization server at ${this.endpoint.origin} ${what}`, `retry later; if it lasts, ${TELL_OPERATOR}`);
      }
      if (credentialsRejected(f)) {
        this.logger.error(
          at,
          `token introspection failed: the provider rejected this gateway's client credentials (${f.code ?? 'HTTP 401'}); ` +
            'check --client-id and the client secret, and try --introspection-auth post if the provider expects them in the form body',
        );
        throw cannotCheck(`its authorization server at ${this.endpoint.origin} refused the gateway's client credentials (${f.code ?? 'HTTP 401'})`);
      }
      this.logger.error(at, 'token introspection failed: the introspection endpoint refused the request or answered something unexpected');
      throw cannotCheck(`its authorization server at ${this.endpoint.origin} refused the gateway's introspection request (${f.code ?? 'unexpected response'})`);
    }
    if (res.active !== true) {
      this.logger.debug({ token: ref }, 'introspection: token is not active');
      throw unauthenticated(`the access token is expired, revoked or unknown to the authorization server: ${LOGIN_ADVICE}`);
    }
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
    const str = (v: unknown) => (typeof v === 'string' && v.length > 0 ? v : undefined);
    const aud = typeof res.aud === 'string' ? [res.aud] : Array.isArray(res.aud) ? res.aud.filter((a): a is string => typeof a === 'string') : [];
    const exp = num(res.exp);
    const now = Date.now();
    let reuseUntil = now + this.cacheMaxMs;
    if (exp !== undefined) reuseUntil = Math.min(reuseUntil, exp * 1000);
    const result: Introspected = {
      subject: str(res.sub),
      username: str(res.username),
      clientId: str(res.client_id),
      scopes: grantedScopes(res),
      aud,
      exp,
      nbf: num(res.nbf),
      tokenType: str(res.token_type),
      reuseUntil,
    };
    if (this.cacheMaxMs > 0 && reuseUntil > now) {
      this.cache.set(key, result);
      while (this.cache.size > this.cacheSize) {
        const oldest = this.cache.keys().next().value as string;
        this.cache.delete(oldest);
      }
    }
    return result;
  }

  private check(r: Introspected): Identity {
    const nowSec = Date.now() / 1000;
    if (r.exp !== undefined && r.exp <= nowSec) {
      throw unauthenticated(`the access token has expired: ${LOGIN_ADVICE}`);
    }
    if (r.nbf !== undefined && r.nbf > nowSec + CLOCK_SKEW_SECONDS) {
      throw unauthenticated('the access token is not valid yet (nbf is in the future); check the clocks of this host and the client');
    }
    if (r.tokenType !== undefined && !/^(bearer|dpop)$/i.test(r.tokenType)) {
      throw unauthenticated(`the token is a ${r.tokenType}, not an access token: ${LOGIN_ADVICE}`);
    }
    if (this.opts.audience !== undefined && !r.aud.includes(this.opts.audience)) {
      throw unauthenticated(`the access token was issued for another service (its audience does not include "${this.opts.audience}"): ${WRONG_SCOPE_ADVICE}`);
    }
    if (!r.scopes.has(this.opts.scope)) throw missingScope(this.opts.scope);
    const subject = r.subject ?? r.username;
    if (!subject) throw unauthenticated('the authorization server did not say whose token this is (no sub or username); ask the gateway operator');
    const identity: Identity = { subject };
    if (r.username) identity.username = r.username;
    if (r.clientId) identity.clientId = r.clientId;
    return identity;
  }
}

/** The provider said no to the gateway's own credentials (HTTP 401, or an invalid_client error). */
function credentialsRejected(f: ReturnType<typeof classifyFailure>): boolean {
  return f.kind === 'rejected' && (f.status === 401 || f.code === 'invalid_client');
}
