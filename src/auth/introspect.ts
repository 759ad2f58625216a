// `--auth introspect`: opaque access tokens checked with OAuth 2.0 Token Introspection
// (RFC 7662) the way Globus Auth offers it to resource servers: POST token=... to the
// introspection endpoint with the gateway's client credentials in HTTP Basic.
import * as oidc from 'openid-client';
import type { Metadata } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { ScistreamError } from '../protocol/errors.js';
import type { Authenticator, Identity, RpcName } from './index.js';
import {
  AuthConfigError,
  LOGIN_ADVICE,
  bearerToken,
  classifyFailure,
  endpointUrl,
  grantedScopes,
  isLoopbackHttp,
  missingScope,
  tokenHash,
  unauthenticated,
  unavailable,
} from './common.js';

export interface IntrospectionAuthOptions {
  /** The authorization server's introspection endpoint, e.g. https://auth.globus.org/v2/oauth2/token/introspect */
  introspectionUrl: string;
  /** This gateway's client id at the authorization server (a Globus resource server client). */
  clientId: string;
  /** Its client secret (see `readClientSecret`). Never logged. */
  clientSecret: string;
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

export class IntrospectionAuth implements Authenticator {
  readonly mode = 'introspect';
  private readonly config: oidc.Configuration;
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
    // No discovery: a bare introspection endpoint is all a resource server needs.
    this.config = new oidc.Configuration(
      { issuer: this.endpoint.origin, introspection_endpoint: this.endpoint.href },
      opts.clientId,
      undefined,
      oidc.ClientSecretBasic(opts.clientSecret),
    );
    if (isLoopbackHttp(this.endpoint)) oidc.allowInsecureRequests(this.config);
    this.config.timeout = opts.timeoutSeconds ?? 10;
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

  private async introspect(token: string, key: string, ref: string): Promise<Introspected> {
    let res: oidc.IntrospectionResponse;
    try {
      res = await oidc.tokenIntrospection(this.config, token, { token_type_hint: 'access_token' });
    } catch (err) {
      const f = classifyFailure(err);
      this.logger.warn({ token: ref, failure: f.kind, code: f.code, status: f.status, endpoint: this.endpoint.href }, 'token introspection failed');
      if (f.kind === 'network' || f.kind === 'server') {
        throw unavailable(
          `s2cs cannot check the access token: the authorization server's introspection endpoint ${this.endpoint.origin} did not answer (${f.code ?? f.kind}); retry later`,
        );
      }
      throw new ScistreamError(
        'INTERNAL',
        `s2cs cannot check access tokens: the authorization server refused its introspection request (${f.code ?? 'unexpected response'}); ` +
          `the gateway operator should check the s2cs client id and secret`,
      );
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
      throw unauthenticated(`the access token was issued for another service (its audience does not include "${this.opts.audience}"): ${LOGIN_ADVICE}`);
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
