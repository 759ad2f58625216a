// `--auth jwt`: JWT access tokens (RFC 9068 style) verified locally against the
// issuer's published keys. jose's remote JWK set caches the keys and, when a token
// names a key id it does not know (the issuer rotated its keys), fetches them again.
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
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
  missingScope,
  tokenRef,
  unauthenticated,
  cannotCheck,
  TELL_OPERATOR,
} from './common.js';

export interface JwtAuthOptions {
  /** The token issuer (`iss`), e.g. https://idp.example.org/realms/science */
  issuer: string;
  /** The audience (`aud`) tokens for this gateway carry. */
  audience: string;
  /** The scope every caller's token must carry (`scope` claim, space-separated, or `scp` array). */
  scope: string;
  /** Where the issuer's keys are. Default: `jwks_uri` from `${issuer}/.well-known/openid-configuration`. */
  jwksUrl?: string;
  /** Accepted signature algorithms. Default: the asymmetric ones (RS*, PS*, ES*, EdDSA). */
  algorithms?: string[];
  /** Clock skew tolerated on exp/nbf/iat, in seconds. Default 5. */
  clockToleranceSeconds?: number;
  /**
   * After a refetch of the keys, an unknown key id does not trigger another fetch for
   * this long (protects the issuer from floods of forged tokens). Default 30000 ms.
   */
  jwksCooldownMs?: number;
  /** Keys are refetched at least this often. Default 600000 ms (10 minutes). */
  jwksMaxAgeMs?: number;
  /** Timeout of one discovery or key-set request, in ms. Default 5000. */
  timeoutMs?: number;
  logger?: Logger;
}

const DEFAULT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

type KeySet = ReturnType<typeof createRemoteJWKSet>;

export class JwtAuth implements Authenticator {
  readonly mode = 'jwt';
  private keys: Promise<KeySet> | undefined;
  private readonly logger: Logger;
  private readonly timeoutMs: number;

  constructor(private readonly opts: JwtAuthOptions) {
    for (const key of ['issuer', 'audience', 'scope'] as const) {
      if (typeof opts[key] !== 'string' || opts[key].trim() === '') throw new AuthConfigError(`jwt: ${key} is required`);
    }
    if (/\s/.test(opts.scope)) throw new AuthConfigError(`jwt: scope "${opts.scope}" must be one scope (no spaces)`);
    endpointUrl(opts.issuer, 'jwt issuer');
    if (opts.jwksUrl !== undefined) endpointUrl(opts.jwksUrl, 'jwt key set URL');
    this.logger = (opts.logger ?? silentLogger).child({ auth: 'jwt' });
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  async authenticate(metadata: Metadata, rpc: RpcName): Promise<Identity> {
    const token = bearerToken(metadata, this.opts.scope);
    const ref = tokenRef(token);
    // A token that is not even a JWT is refused before any key is fetched.
    if (token.split('.').length !== 3) {
      this.logger.debug({ rpc, token: ref }, 'access token refused: not a JWT');
      throw unauthenticated(`the access token is not a JWT, but this s2cs verifies JWT access tokens: ${LOGIN_ADVICE}`);
    }
    const keys = await this.keySet();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: this.opts.issuer,
        audience: this.opts.audience,
        algorithms: this.opts.algorithms ?? DEFAULT_ALGORITHMS,
        clockTolerance: this.opts.clockToleranceSeconds ?? 5,
        requiredClaims: ['exp', 'sub'],
      }));
    } catch (err) {
      const mapped = this.mapError(err, ref);
      this.logger.debug({ rpc, token: ref, reason: mapped.message }, 'access token refused');
      throw mapped;
    }
    if (!grantedScopes(payload as { scope?: unknown; scp?: unknown }).has(this.opts.scope)) {
      this.logger.debug({ rpc, token: ref, sub: payload.sub }, 'access token refused: scope missing');
      throw missingScope(this.opts.scope);
    }
    const identity: Identity = { subject: payload.sub as string };
    const clientId = (payload as { client_id?: unknown }).client_id;
    if (typeof clientId === 'string') identity.clientId = clientId;
    this.logger.debug({ rpc, token: ref, sub: identity.subject }, 'access token accepted');
    return identity;
  }

  /** The remote key set; discovered once (a failed discovery is retried on the next call). */
  private keySet(): Promise<KeySet> {
    if (!this.keys) {
      this.keys = this.resolveJwksUrl().then(
        (url) =>
          createRemoteJWKSet(url, {
            timeoutDuration: this.timeoutMs,
            cooldownDuration: this.opts.jwksCooldownMs ?? 30_000,
            cacheMaxAge: this.opts.jwksMaxAgeMs ?? 600_000,
          }),
        (err: unknown) => {
          this.keys = undefined;
          throw err;
        },
      );
    }
    return this.keys;
  }

  private async resolveJwksUrl(): Promise<URL> {
    if (this.opts.jwksUrl) return endpointUrl(this.opts.jwksUrl, 'jwt key set URL');
    const issuer = this.opts.issuer.replace(/\/+$/, '');
    const where = `${issuer}/.well-known/openid-configuration`;
    let doc: { issuer?: unknown; jwks_uri?: unknown };
    try {
      const res = await fetch(where, { signal: AbortSignal.timeout(this.timeoutMs), redirect: 'error', headers: { accept: 'application/json' } });
      if (!res.ok) throw Object.assign(new Error(`HTTP ${res.status}`), { code: `HTTP ${res.status}` });
      doc = (await res.json()) as typeof doc;
    } catch (err) {
      const f = classifyFailure(err);
      this.logger.warn({ where, failure: f.kind, code: f.code }, 'OIDC discovery of the token issuer failed');
      throw cannotCheck(`its authorization server did not answer OIDC discovery at ${where} (${f.code ?? f.kind})`, `retry later; if it lasts, ${TELL_OPERATOR}`);
    }
    if (typeof doc.jwks_uri !== 'string') {
      throw cannotCheck(`${where} names no jwks_uri (the operator should give the key set URL)`);
    }
    if (typeof doc.issuer === 'string' && doc.issuer.replace(/\/+$/, '') !== issuer) {
      this.logger.warn({ where, advertised: doc.issuer }, 'discovery document names another issuer');
    }
    try {
      return endpointUrl(doc.jwks_uri, 'jwks_uri from discovery');
    } catch (err) {
      // A bad document is the operator's problem, not the caller's argument.
      throw cannotCheck(`${(err as Error).message} (the operator should give the key set URL)`);
    }
  }

  private mapError(err: unknown, ref: string): Error {
    if (err instanceof joseErrors.JWTExpired) return unauthenticated(`the access token has expired: ${LOGIN_ADVICE}`);
    if (err instanceof joseErrors.JWTClaimValidationFailed) {
      switch (err.claim) {
        case 'iss':
          return unauthenticated(`the access token was issued by another authorization server (expected "${this.opts.issuer}"): ${LOGIN_ADVICE}`);
        case 'aud':
          return unauthenticated(`the access token was issued for another service (its audience does not include "${this.opts.audience}"): ${WRONG_SCOPE_ADVICE}`);
        case 'nbf':
        case 'iat':
          return unauthenticated(`the access token is not valid yet (${err.claim}); check the clocks of this host and the client`);
        default:
          return unauthenticated(`the access token is missing or has a bad "${err.claim}" claim: ${LOGIN_ADVICE}`);
      }
    }
    if (
      err instanceof joseErrors.JWKSNoMatchingKey ||
      err instanceof joseErrors.JWKSMultipleMatchingKeys ||
      err instanceof joseErrors.JWSSignatureVerificationFailed ||
      err instanceof joseErrors.JWSInvalid ||
      err instanceof joseErrors.JWTInvalid ||
      err instanceof joseErrors.JOSEAlgNotAllowed ||
      err instanceof joseErrors.JOSENotSupported
    ) {
      return unauthenticated(`the access token's signature cannot be verified with the issuer's keys: ${LOGIN_ADVICE}`);
    }
    // Anything else is about fetching the key set: the token may be fine.
    const f = classifyFailure(err);
    this.logger.warn({ token: ref, failure: f.kind, code: f.code, error: err instanceof Error ? err.message : String(err) }, 'cannot fetch the issuer key set');
    return cannotCheck(`the key set of its authorization server could not be fetched (${f.code ?? f.kind})`, `retry later; if it lasts, ${TELL_OPERATOR}`);
  }
}
