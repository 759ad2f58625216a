// s2uc's side of federated authentication: `login` (authorization code + PKCE for a
// native app, or the device authorization grant), `logout` (RFC 7009 revocation),
// `check-auth`, `whoami`, and `getToken(server)` for the rpcs, which refreshes expired
// access tokens with the refresh token. Every protocol step is openid-client's.
//
// Tokens are kept per scope: each s2cs names the scope it requires (config.toml
// [servers."host:port"].scope), and the token sent to a server carries that scope.
// One login asks for all configured scopes; the provider's answer (and, with Globus
// Auth, its `other_tokens`) is stored, and scopes still without a token are obtained
// by refreshing with a narrower `scope` (RFC 6749 section 6).
import { readFile } from 'node:fs/promises';
import * as oidc from 'openid-client';
import type { Logger } from '../../log.js';
import { silentLogger } from '../../log.js';
import { ScistreamError } from '../../protocol/errors.js';
import { AuthConfigError, classifyFailure, endpointUrl, isLoopbackHttp, tokenRef, unauthenticated, unavailable } from '../../auth/common.js';
import { loadClientConfig, type ClientConfig } from './config.js';
import { TokenStore, findToken, isExpired, type StoredIdentity, type StoredToken, type TokenFile } from './tokens.js';

/** How login talks to the user; the CLI binds it to stderr and a line of stdin, tests script it. */
export interface AuthIO {
  /** One line of instructions for the user. */
  print(line: string): void;
  /** Asks the user for one line (the code, or the whole URL the browser ended on). */
  prompt(question: string): Promise<string>;
  /** Called with the device flow's code and URL before polling starts (besides print). */
  onDeviceAuthorization?(info: DeviceAuthorizationInfo): void;
}

export interface DeviceAuthorizationInfo {
  verificationUri: string;
  verificationUriComplete?: string;
  userCode: string;
  /** Seconds until the code expires. */
  expiresIn: number;
}

export interface UserAuthOptions {
  /** The base directory; default $SCISTREAM_HOME or ~/.scistream. */
  home?: string;
  env?: NodeJS.ProcessEnv;
  /** An already loaded configuration (default: read from home). */
  config?: ClientConfig;
  logger?: Logger;
  /** A token that expires within this many seconds is refreshed before use. Default 30. */
  expiryMarginSeconds?: number;
}

export type LoginFlow = 'auto' | 'code' | 'device';

export interface LoginOptions {
  io: AuthIO;
  /**
   * 'code': authorization code + PKCE (open a URL, paste the code back);
   * 'device': the device authorization grant (RFC 8628);
   * 'auto' (default): device when the provider advertises it (falling back to code
   * if this client may not use it), else code.
   */
  flow?: LoginFlow;
  /** More scopes to ask for, besides [auth].scopes and every configured server scope. */
  scopes?: string[];
  /** Aborts waiting for the user (Ctrl-C). */
  signal?: AbortSignal;
}

export interface LoginResult {
  flow: 'code' | 'device';
  identity?: StoredIdentity;
  /** The scopes that now have a token. */
  scopes: string[];
  /** Server scopes that could not be obtained, with the reason. */
  missing: { scope: string; reason: string }[];
}

export interface LogoutResult {
  /** How many tokens the provider accepted for revocation. */
  revoked: number;
  /** Tokens that could not be revoked (they stay valid until they expire). */
  failed: { kind: 'access_token' | 'refresh_token'; reason: string }[];
  /** Whether tokens.json existed and was deleted. */
  removed: boolean;
}

export type TokenState = 'valid' | 'expired' | 'missing' | 'not-configured';

export interface ServerAuthStatus {
  server: string;
  /** The scope this server requires; undefined when config.toml names none. */
  scope?: string;
  state: TokenState;
  /** Whether a refresh token can renew it without logging in again. */
  refreshable: boolean;
  expiresAt?: Date;
}

export type ScopeStatus = Omit<ServerAuthStatus, 'server'> & { scope: string };

/** What tokens.json holds for `scope`. */
function scopeState(file: TokenFile | undefined, scope: string, now: number): ScopeStatus {
  const found = findToken(file, scope, now);
  if (!found) return { scope, state: 'missing', refreshable: false };
  const s: ScopeStatus = { scope, state: isExpired(found.token, now, 0) ? 'expired' : 'valid', refreshable: found.token.refresh_token !== undefined };
  if (found.token.expires_at !== undefined) s.expiresAt = new Date(found.token.expires_at * 1000);
  return s;
}

export interface AuthStatus {
  issuer: string;
  tokenFile: string;
  loggedIn: boolean;
  identity?: StoredIdentity;
  servers: ServerAuthStatus[];
  /** Why nothing is usable, when that is not simply "never logged in". */
  note?: string;
}

export interface WhoAmI extends StoredIdentity {
  issuer: string;
  source: 'id_token' | 'userinfo';
}

const LOGIN = 'run `s2uc login`';

export class UserAuth {
  readonly store: TokenStore;
  private readonly logger: Logger;
  private readonly marginSec: number;
  private configs = new Map<string, Promise<oidc.Configuration>>();

  private constructor(
    readonly config: ClientConfig,
    opts: UserAuthOptions,
  ) {
    this.store = TokenStore.inHome(config.home);
    this.logger = (opts.logger ?? silentLogger).child({ component: 's2uc-auth' });
    this.marginSec = opts.expiryMarginSeconds ?? 30;
  }

  /** Loads config.toml (or uses `opts.config`). Does no network I/O. */
  static async open(opts: UserAuthOptions = {}): Promise<UserAuth> {
    const config = opts.config ?? (await loadClientConfig({ home: opts.home, env: opts.env }));
    return new UserAuth(config, opts);
  }

  /** The provider's metadata via OIDC discovery (or the endpoints set in config.toml). */
  async discover(): Promise<oidc.ServerMetadata> {
    const c = await this.oidcConfig(this.config.auth.issuer, this.config.requireClientId());
    return c.serverMetadata();
  }

  /** Logs in and replaces tokens.json with the new tokens. */
  async login(opts: LoginOptions): Promise<LoginResult> {
    const clientId = this.config.requireClientId();
    const issuer = this.config.auth.issuer;
    const config = await this.oidcConfig(issuer, clientId);
    const meta = config.serverMetadata();
    const serverScopes = this.config.serverScopes();
    const requested = unique([...this.config.auth.scopes, ...serverScopes, ...(opts.scopes ?? [])]);
    if (requested.length === 0) throw new AuthConfigError(`nothing to log in for: set [auth] scopes or [servers."host:port"] scope in ${this.config.path}`);
    const scope = requested.join(' ');
    const flow = opts.flow ?? 'auto';

    let response: TokenResponse;
    let used: 'code' | 'device';
    if (flow === 'device' || (flow === 'auto' && meta.device_authorization_endpoint)) {
      if (!meta.device_authorization_endpoint) {
        throw new AuthConfigError(`${issuer} offers no device login (no device_authorization_endpoint); log in without --device`);
      }
      let started: oidc.DeviceAuthorizationResponse | undefined;
      try {
        started = await oidc.initiateDeviceAuthorization(config, { scope });
      } catch (err) {
        const f = classifyFailure(err);
        if (flow !== 'auto' || f.kind !== 'rejected') throw this.grantError(err, 'starting the device login');
        this.logger.debug({ code: f.code }, 'device authorization refused; falling back to the code flow');
        opts.io.print(`(device login is not available for this client: ${f.code}; using a login URL instead)`);
      }
      if (started) {
        response = await this.deviceFlow(config, started, opts);
        used = 'device';
      } else {
        response = await this.codeFlow(config, scope, opts);
        used = 'code';
      }
    } else {
      response = await this.codeFlow(config, scope, opts);
      used = 'code';
    }

    return this.store.locked(async () => {
      const file: TokenFile = { version: 1, issuer, client_id: clientId, tokens: {} };
      const identity = identityFrom(response);
      if (identity) file.identity = identity;
      const now = nowSec();
      const main = toStored(response, scope, now);
      file.tokens[main.scope] = main;
      // Globus Auth: one token per resource server besides the main one.
      const others = (response as { other_tokens?: unknown }).other_tokens;
      if (Array.isArray(others)) {
        for (const o of others) {
          if (isTokenLike(o)) {
            const t = toStored(o, '', now);
            if (t.scope) file.tokens[t.scope] = t;
          }
        }
      }
      const missing: { scope: string; reason: string }[] = [];
      // Scopes asked for by name (login --scope) are obtained the same way as the servers'.
      for (const s of unique([...serverScopes, ...(opts.scopes ?? [])])) {
        if (findToken(file, s)) continue;
        const rt = latestRefreshToken(file);
        if (!rt) {
          missing.push({ scope: s, reason: 'the provider issued no refresh token to obtain it with, and the login token does not carry it' });
          continue;
        }
        try {
          await this.refreshInto(config, file, s, rt, s);
        } catch (err) {
          missing.push({ scope: s, reason: err instanceof Error ? err.message : String(err) });
        }
      }
      await this.store.save(file);
      this.logger.debug({ flow: used, sub: identity?.sub, scopes: Object.keys(file.tokens), missing: missing.map((m) => m.scope) }, 'logged in');
      return { flow: used, identity, scopes: Object.keys(file.tokens), missing };
    });
  }

  /**
   * Revokes every stored token (RFC 7009; access tokens first, then refresh tokens)
   * and deletes tokens.json, even when some revocations fail (those are returned).
   */
  async logout(opts: { io?: Pick<AuthIO, 'print'> } = {}): Promise<LogoutResult> {
    return this.store.locked(async () => {
      let file: TokenFile | undefined;
      try {
        file = await this.store.load();
      } catch (err) {
        // A token file others could read is exactly what should be revoked: read it anyway.
        if (!(err instanceof AuthConfigError)) throw err;
        file = await this.loadIgnoringMode();
      }
      if (!file) return { revoked: 0, failed: [], removed: await this.store.remove() };
      const result: LogoutResult = { revoked: 0, failed: [], removed: false };
      const access = unique(Object.values(file.tokens).map((t) => t.access_token));
      const refresh = unique(Object.values(file.tokens).flatMap((t) => (t.refresh_token ? [t.refresh_token] : [])));
      let config: oidc.Configuration | undefined;
      try {
        config = await this.oidcConfig(file.issuer, file.client_id);
        if (!config.serverMetadata().revocation_endpoint) throw new AuthConfigError(`${file.issuer} offers no token revocation`);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        result.failed.push(...access.map(() => ({ kind: 'access_token' as const, reason })));
        result.failed.push(...refresh.map(() => ({ kind: 'refresh_token' as const, reason })));
        config = undefined;
      }
      if (config) {
        const revoke = async (token: string, kind: 'access_token' | 'refresh_token') => {
          try {
            await oidc.tokenRevocation(config, token, { token_type_hint: kind });
            result.revoked++;
            this.logger.debug({ token: tokenRef(token), kind }, 'token revoked');
          } catch (err) {
            const f = classifyFailure(err);
            result.failed.push({ kind, reason: `${f.kind}${f.code ? ` (${f.code})` : ''}` });
            this.logger.debug({ token: tokenRef(token), kind, failure: f.kind, code: f.code }, 'token revocation failed');
          }
        };
        for (const t of access) await revoke(t, 'access_token');
        for (const t of refresh) await revoke(t, 'refresh_token');
      }
      if (result.failed.length > 0) {
        opts.io?.print(`could not revoke ${result.failed.length} token(s) (${result.failed[0]!.reason}); they stay valid until they expire`);
      }
      result.removed = await this.store.remove();
      return result;
    });
  }

  /** Which servers have a usable token. Servers default to those in config.toml. No network I/O. */
  async checkAuth(servers?: string[]): Promise<AuthStatus> {
    const { file, note } = await this.loadOwn();
    const now = nowSec();
    const names = servers ?? Object.keys(this.config.servers);
    const status: AuthStatus = {
      issuer: this.config.auth.issuer,
      tokenFile: this.store.path,
      loggedIn: file !== undefined,
      servers: names.map((server) => {
        const scope = this.config.scopeFor(server);
        if (scope === undefined) return { server, state: 'not-configured', refreshable: false };
        return { server, ...scopeState(file, scope, now) };
      }),
    };
    if (file?.identity) status.identity = file.identity;
    if (note) status.note = note;
    return status;
  }

  /** The stored token's state for one scope (`s2uc check-auth --scope`, as the reference's). No network I/O. */
  async checkScope(scope: string): Promise<Omit<AuthStatus, 'servers'> & { scope: ScopeStatus }> {
    const { file, note } = await this.loadOwn();
    const status: Omit<AuthStatus, 'servers'> & { scope: ScopeStatus } = {
      issuer: this.config.auth.issuer,
      tokenFile: this.store.path,
      loggedIn: file !== undefined,
      scope: scopeState(file, scope, nowSec()),
    };
    if (file?.identity) status.identity = file.identity;
    if (note) status.note = note;
    return status;
  }

  /**
   * Who is logged in: the claims of the login's ID token; with `userinfo: true` (or
   * when the ID token gave no username) the provider's userinfo endpoint is asked.
   */
  async whoami(opts: { userinfo?: boolean } = {}): Promise<WhoAmI> {
    const { file, note } = await this.loadOwn();
    if (!file) throw unauthenticated(`not logged in${note ? ` (${note})` : ''}: ${LOGIN}`);
    const stored = file.identity;
    const wantUserinfo = opts.userinfo === true || !stored?.preferred_username;
    if (wantUserinfo && findToken(file, 'openid')) {
      try {
        const at = await this.tokenForScope('openid', 'userinfo');
        const config = await this.oidcConfig(file.issuer, file.client_id);
        if (config.serverMetadata().userinfo_endpoint) {
          const info = await oidc.fetchUserInfo(config, at, stored?.sub ?? oidc.skipSubjectCheck);
          const id = pickIdentity(info);
          if (id) return { ...id, issuer: file.issuer, source: 'userinfo' };
        }
      } catch (err) {
        if (opts.userinfo === true || !stored) throw this.grantError(err, 'asking the userinfo endpoint');
        this.logger.debug({ error: (err as Error).message }, 'userinfo failed; using the ID token claims');
      }
    }
    if (!stored) throw unauthenticated(`the login did not say who you are (add "openid" to [auth] scopes in ${this.config.path}), then ${LOGIN}`);
    return { ...stored, issuer: file.issuer, source: 'id_token' };
  }

  /**
   * The access token to send to `server` (host:port), refreshed first if it has
   * expired. Undefined when config.toml names no scope for that server (then no token
   * is sent). Throws UNAUTHENTICATED ScistreamErrors that say to run `s2uc login`,
   * UNAVAILABLE when the provider cannot be reached for a refresh.
   */
  async getToken(server: string): Promise<string | undefined> {
    const scope = this.config.scopeFor(server);
    if (scope === undefined) return undefined;
    return this.tokenForScope(scope, `s2cs ${server}`);
  }

  /** Like getToken, but a server without a configured scope is an error that says what to add. */
  async requireToken(server: string): Promise<string> {
    const token = await this.getToken(server);
    if (token === undefined) {
      throw new AuthConfigError(`no scope configured for s2cs ${server}: add [servers."${server}"] scope = "..." (the scope its operator gives) to ${this.config.path}`);
    }
    return token;
  }

  /** The access token for `scope`, refreshed if needed. */
  async tokenForScope(scope: string, label = `scope "${scope}"`): Promise<string> {
    const first = await this.loadOwn();
    const found = findToken(first.file, scope);
    if (!found) {
      throw unauthenticated(`no access token for ${label} (scope "${scope}")${first.note ? ` (${first.note})` : ''}: ${LOGIN}`);
    }
    if (!isExpired(found.token, nowSec(), this.marginSec)) return found.token.access_token;
    if (!found.token.refresh_token) throw unauthenticated(`the access token for ${label} has expired and cannot be refreshed: ${LOGIN}`);
    return this.store.locked(async () => {
      // Another s2uc may have refreshed it while we waited for the lock.
      const { file } = await this.loadOwn();
      const again = findToken(file, scope);
      if (!file || !again) throw unauthenticated(`no access token for ${label} (scope "${scope}"): ${LOGIN}`);
      if (!isExpired(again.token, nowSec(), this.marginSec)) return again.token.access_token;
      if (!again.token.refresh_token) throw unauthenticated(`the access token for ${label} has expired and cannot be refreshed: ${LOGIN}`);
      let fresh: StoredToken;
      try {
        const config = await this.oidcConfig(file.issuer, file.client_id);
        fresh = await this.refreshInto(config, file, again.key, again.token.refresh_token, again.token.refresh_scope);
      } catch (err) {
        // Which of the two: the provider did not answer, or it refused the refresh token.
        if (err instanceof ScistreamError && !(err instanceof AuthConfigError)) {
          throw new ScistreamError(err.kind, `the access token for ${label} has expired and could not be refreshed: ${err.message}`);
        }
        throw err;
      }
      await this.store.save(file);
      this.logger.debug({ scope, token: tokenRef(fresh.access_token) }, 'access token refreshed');
      return fresh.access_token;
    });
  }

  /**
   * Refreshes with `refreshToken` (asking for `refreshScope` when given) and stores the
   * result under `key`. A rotated refresh token replaces the old one in every entry.
   */
  private async refreshInto(config: oidc.Configuration, file: TokenFile, key: string, refreshToken: string, refreshScope?: string): Promise<StoredToken> {
    let response: TokenResponse;
    try {
      response = await oidc.refreshTokenGrant(config, refreshToken, refreshScope ? { scope: refreshScope } : undefined);
    } catch (err) {
      throw this.grantError(err, refreshScope ? `a token for scope "${refreshScope}"` : 'refreshing the access token');
    }
    const entry = toStored(response, refreshScope ?? file.tokens[key]?.scope ?? key, nowSec());
    if (refreshScope) entry.refresh_scope = refreshScope;
    if (!entry.refresh_token) entry.refresh_token = refreshToken;
    if (entry.refresh_token !== refreshToken) {
      for (const t of Object.values(file.tokens)) if (t.refresh_token === refreshToken) t.refresh_token = entry.refresh_token;
    }
    if (refreshScope && !entry.scope.split(/\s+/).includes(refreshScope)) {
      throw unauthenticated(`the authorization server did not grant scope "${refreshScope}" (granted: "${entry.scope}")`);
    }
    file.tokens[key] = entry;
    return entry;
  }

  private async codeFlow(config: oidc.Configuration, scope: string, opts: LoginOptions): Promise<TokenResponse> {
    const redirectUri = this.config.auth.redirectUri;
    if (!redirectUri) {
      throw new AuthConfigError(`no redirect_uri for the login URL: set redirect_uri under [auth] in ${this.config.path} (the page that shows the code), or log in with --device`);
    }
    const meta = config.serverMetadata();
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = scope.split(' ').includes('openid') ? oidc.randomNonce() : undefined;
    const params: Record<string, string> = {
      ...this.config.auth.authorizeParams,
      redirect_uri: redirectUri,
      scope,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    };
    if (nonce) params.nonce = nonce;
    const url = oidc.buildAuthorizationUrl(config, params);
    opts.io.print('Open this URL in a browser and log in:');
    opts.io.print(`  ${url.href}`);
    opts.io.print('Then paste the authorization code it shows (or the whole address of the page you end on).');
    const answer = (await opts.io.prompt('Authorization code: ')).trim().replace(/^["']|["']$/g, '');
    if (!answer) throw new ScistreamError('INVALID_ARGUMENT', 'no authorization code entered; run `s2uc login` again');
    let callback: URL;
    if (/^https?:\/\//i.test(answer)) {
      callback = new URL(answer);
      if (!callback.searchParams.has('code') && !callback.searchParams.has('error')) {
        throw new ScistreamError('INVALID_ARGUMENT', 'the pasted address has no code in it; paste the code, or the address of the page that shows it');
      }
    } else {
      if (/\s/.test(answer)) throw new ScistreamError('INVALID_ARGUMENT', 'an authorization code has no spaces; paste just the code');
      callback = new URL(redirectUri);
      callback.searchParams.set('code', answer);
      callback.searchParams.set('state', state);
      if (meta.authorization_response_iss_parameter_supported) callback.searchParams.set('iss', meta.issuer);
    }
    try {
      return await oidc.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: verifier,
        expectedState: state,
        ...(nonce ? { expectedNonce: nonce } : {}),
      });
    } catch (err) {
      throw this.grantError(err, 'exchanging the authorization code');
    }
  }

  private async deviceFlow(config: oidc.Configuration, started: oidc.DeviceAuthorizationResponse, opts: LoginOptions): Promise<TokenResponse> {
    const info: DeviceAuthorizationInfo = {
      verificationUri: started.verification_uri,
      userCode: started.user_code,
      expiresIn: started.expires_in,
    };
    if (typeof started.verification_uri_complete === 'string') info.verificationUriComplete = started.verification_uri_complete;
    opts.io.print('To log in, open this URL in a browser (on any device):');
    opts.io.print(`  ${info.verificationUriComplete ?? info.verificationUri}`);
    opts.io.print(`and check that it shows (or enter) the code ${info.userCode}. Waiting up to ${Math.round(info.expiresIn / 60)} min...`);
    opts.io.onDeviceAuthorization?.(info);
    const timeout = AbortSignal.timeout(started.expires_in * 1000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    try {
      return await oidc.pollDeviceAuthorizationGrant(config, started, undefined, { signal });
    } catch (err) {
      if (opts.signal?.aborted) throw new ScistreamError('ABORTED', 'login interrupted');
      if (timeout.aborted) throw unauthenticated('the login code expired before the login was finished; run `s2uc login` again');
      throw this.grantError(err, 'the device login');
    }
  }

  /** openid-client Configuration for an issuer (memoized). Plain http only for loopback issuers. */
  private oidcConfig(issuer: string, clientId: string): Promise<oidc.Configuration> {
    const key = `${issuer} ${clientId}`;
    let c = this.configs.get(key);
    if (!c) {
      c = this.makeConfig(issuer, clientId);
      c.catch(() => this.configs.delete(key));
      this.configs.set(key, c);
    }
    return c;
  }

  private async makeConfig(issuer: string, clientId: string): Promise<oidc.Configuration> {
    const a = this.config.auth;
    const issuerUrl = endpointUrl(issuer, 'issuer');
    if (a.tokenEndpoint && issuer === a.issuer) {
      const endpoints: Record<string, string | undefined> = {
        authorization_endpoint: a.authorizationEndpoint,
        token_endpoint: a.tokenEndpoint,
        device_authorization_endpoint: a.deviceAuthorizationEndpoint,
        revocation_endpoint: a.revocationEndpoint,
        userinfo_endpoint: a.userinfoEndpoint,
      };
      const server: oidc.ServerMetadata = { issuer };
      for (const [k, v] of Object.entries(endpoints)) if (v) (server as Record<string, unknown>)[k] = v;
      const config = new oidc.Configuration(server, clientId, undefined, oidc.None());
      const urls = [issuerUrl, ...Object.values(endpoints).flatMap((v) => (v ? [new URL(v)] : []))];
      if (urls.some(isLoopbackHttp)) oidc.allowInsecureRequests(config);
      return config;
    }
    try {
      return await oidc.discovery(issuerUrl, clientId, undefined, oidc.None(), {
        execute: isLoopbackHttp(issuerUrl) ? [oidc.allowInsecureRequests] : [],
      });
    } catch (err) {
      const f = classifyFailure(err);
      if (f.kind === 'network' || f.kind === 'server') {
        throw unavailable(`cannot reach the authorization server ${issuer} (${f.code ?? f.kind}); check the network and [auth] issuer in ${this.config.path}`);
      }
      throw new AuthConfigError(
        `OIDC discovery at ${issuer}/.well-known/openid-configuration failed (${(err as Error).message}); check [auth] issuer in ${this.config.path}, or set the endpoints explicitly`,
      );
    }
  }

  /** tokens.json if it belongs to the configured issuer and client. */
  private async loadOwn(): Promise<{ file?: TokenFile; note?: string }> {
    const file = await this.store.load();
    if (!file) return {};
    const a = this.config.auth;
    if (file.issuer !== a.issuer || (a.clientId !== undefined && file.client_id !== a.clientId)) {
      return { note: `the stored tokens are for ${file.issuer} (client ${file.client_id}), not the configured ${a.issuer}` };
    }
    return { file };
  }

  private async loadIgnoringMode(): Promise<TokenFile | undefined> {
    try {
      const parsed = JSON.parse(await readFile(this.store.path, 'utf8')) as TokenFile;
      return parsed && typeof parsed === 'object' && parsed.tokens ? parsed : undefined;
    } catch {
      return undefined;
    }
  }

  /** A failed exchange with the provider, said for the user; never includes a token. */
  private grantError(err: unknown, what: string): Error {
    if (err instanceof ScistreamError) return err;
    if (err instanceof oidc.AuthorizationResponseError) {
      return unauthenticated(`the login was not completed: ${err.error}${err.error_description ? ` (${clip(err.error_description)})` : ''}; ${LOGIN} again`);
    }
    const f = classifyFailure(err);
    if (f.kind === 'network' || f.kind === 'server') {
      return unavailable(`cannot reach the authorization server for ${what} (${f.code ?? f.kind}); check the network and retry`);
    }
    if (f.kind === 'rejected') {
      const desc = (err as { error_description?: unknown }).error_description;
      const detail = `${f.code}${typeof desc === 'string' && desc ? `: ${clip(desc)}` : ''}`;
      switch (f.code) {
        case 'invalid_grant':
          return unauthenticated(`the authorization server refused ${what} (${detail}): the login expired, was revoked or the code was already used; ${LOGIN}`);
        case 'access_denied':
          return unauthenticated(`the login was declined (${detail}); ${LOGIN} again`);
        case 'expired_token':
          return unauthenticated(`the login code expired before the login was finished; ${LOGIN} again`);
        default:
          return unauthenticated(`the authorization server refused ${what} (${detail}); check [auth] in ${this.config.path}`);
      }
    }
    const code = (err as { code?: unknown }).code;
    if (code === 'OAUTH_JSON_ATTRIBUTE_COMPARISON' || code === 'OAUTH_JWT_CLAIM_COMPARISON') {
      return unauthenticated(`${what} failed: ${clip((err as Error).message)} (a code from another login attempt?); ${LOGIN} again and use the newest code`);
    }
    return unauthenticated(`${what} failed: ${err instanceof Error ? clip(err.message) : String(err)}`);
  }
}

/** The access token for `server` (see UserAuth.getToken), with the configuration of the environment. */
export async function getToken(server: string, opts: UserAuthOptions = {}): Promise<string | undefined> {
  return (await UserAuth.open(opts)).getToken(server);
}

type TokenResponse = oidc.TokenEndpointResponse & Partial<oidc.TokenEndpointResponseHelpers>;

interface TokenLike {
  access_token: string;
  refresh_token?: string;
  expires_in?: number;
  scope?: string;
  token_type?: string;
  resource_server?: string;
}

function isTokenLike(v: unknown): v is TokenLike {
  return typeof v === 'object' && v !== null && typeof (v as TokenLike).access_token === 'string';
}

function toStored(r: TokenLike | TokenResponse, requestedScope: string, now: number): StoredToken {
  const t: StoredToken = {
    access_token: r.access_token,
    scope: typeof r.scope === 'string' && r.scope.trim() ? r.scope.trim() : requestedScope,
    obtained_at: now,
  };
  if (typeof r.refresh_token === 'string' && r.refresh_token) t.refresh_token = r.refresh_token;
  if (typeof r.expires_in === 'number' && Number.isFinite(r.expires_in)) t.expires_at = now + Math.floor(r.expires_in);
  if (typeof r.token_type === 'string') t.token_type = r.token_type;
  const rs = (r as TokenLike).resource_server;
  if (typeof rs === 'string') t.resource_server = rs;
  return t;
}

function identityFrom(r: TokenResponse): StoredIdentity | undefined {
  const claims = typeof r.claims === 'function' ? r.claims() : undefined;
  return claims ? pickIdentity(claims) : undefined;
}

function pickIdentity(c: Record<string, unknown>): StoredIdentity | undefined {
  if (typeof c.sub !== 'string') return undefined;
  const id: StoredIdentity = { sub: c.sub };
  if (typeof c.preferred_username === 'string') id.preferred_username = c.preferred_username;
  if (typeof c.name === 'string') id.name = c.name;
  if (typeof c.email === 'string') id.email = c.email;
  return id;
}

/** The refresh token of the most recently obtained entry that has one. */
function latestRefreshToken(file: TokenFile): string | undefined {
  const withRt = Object.values(file.tokens).filter((t) => t.refresh_token);
  withRt.sort((a, b) => b.obtained_at - a.obtained_at);
  return withRt[0]?.refresh_token;
}

function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}

function clip(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}...` : s;
}
