// s2uc's authentication settings: $SCISTREAM_HOME/config.toml (default ~/.scistream).
//
//   [auth]
//   issuer = "https://auth.globus.org"        # OIDC discovery at ISSUER/.well-known/openid-configuration
//   client_id = "..."                         # this installation's (native app) client id
//   redirect_uri = "https://auth.globus.org/v2/web/auth-code"   # the page that shows the code to paste
//   scopes = ["openid", "profile", "email"]   # asked for at login, besides every server's scope
//   # without discovery: authorization_endpoint, token_endpoint, device_authorization_endpoint,
//   #                    revocation_endpoint, userinfo_endpoint
//   # extra authorization request parameters (Globus default: access_type = "offline"):
//   # [auth.authorize_params]
//
//   [servers."gw-a.example.org:5000"]
//   scope = "https://auth.globus.org/scopes/<id>/scistream"
//   [servers."*"]                             # any other server
//   scope = "..."
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { formatAddress, parseAddress } from '../../protocol/address.js';
import { AuthConfigError, endpointUrl } from '../../auth/common.js';

export const GLOBUS_ISSUER = 'https://auth.globus.org';
export const GLOBUS_AUTH_CODE_PAGE = 'https://auth.globus.org/v2/web/auth-code';
export const DEFAULT_SCOPES: readonly string[] = ['openid', 'profile', 'email'];

export interface AuthSettings {
  issuer: string;
  /** Undefined until configured; `requireClientId()` says how to set it. */
  clientId?: string;
  /** Where the provider sends the user after consent (the code is shown there). Undefined when none is known. */
  redirectUri?: string;
  scopes: string[];
  authorizationEndpoint?: string;
  tokenEndpoint?: string;
  deviceAuthorizationEndpoint?: string;
  revocationEndpoint?: string;
  userinfoEndpoint?: string;
  /** Extra parameters of the authorization request. */
  authorizeParams: Record<string, string>;
}

export interface ServerAuth {
  scope: string;
}

export interface ClientConfig {
  /** The base directory ($SCISTREAM_HOME or ~/.scistream). */
  home: string;
  /** The config file path (it may not exist). */
  path: string;
  /** Whether the config file exists. */
  exists: boolean;
  auth: AuthSettings;
  /** Per-server settings keyed as written ("host:port" or "*"). */
  servers: Record<string, ServerAuth>;
  /** The scope an s2cs needs: the exact `host:port` entry, then `[servers."*"]`; undefined when neither exists. */
  scopeFor(server: string): string | undefined;
  /** Every distinct scope of the configured servers ("*" included). */
  serverScopes(): string[];
  /** The client id, or an AuthConfigError that says where to set it. */
  requireClientId(): string;
}

/** $SCISTREAM_HOME, else ~/.scistream. */
export function scistreamHome(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.SCISTREAM_HOME?.trim();
  return fromEnv ? resolve(fromEnv) : join(homedir(), '.scistream');
}

/** Reads $SCISTREAM_HOME/config.toml; an absent file gives the Globus Auth defaults. Throws AuthConfigError on a bad file. */
export async function loadClientConfig(opts: { home?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ClientConfig> {
  const home = opts.home ?? scistreamHome(opts.env ?? process.env);
  const path = join(home, 'config.toml');
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new AuthConfigError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  let doc: Record<string, unknown> = {};
  if (text !== undefined) {
    try {
      doc = parseToml(text) as Record<string, unknown>;
    } catch (err) {
      throw new AuthConfigError(`${path} is not valid TOML: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return buildConfig(home, path, text !== undefined, doc);
}

/** Builds a ClientConfig from an already parsed document (exported for tests and for embedding). */
export function buildConfig(home: string, path: string, exists: boolean, doc: Record<string, unknown>): ClientConfig {
  const bad = (key: string, want: string) => new AuthConfigError(`${path}: ${key} must be ${want}`);
  const table = (v: unknown, key: string): Record<string, unknown> => {
    if (v === undefined) return {};
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(key, 'a table');
    return v as Record<string, unknown>;
  };
  const str = (t: Record<string, unknown>, key: string, where: string): string | undefined => {
    const v = t[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v.trim() === '') throw bad(`${where}.${key}`, 'a non-empty string');
    return v.trim();
  };
  const url = (t: Record<string, unknown>, key: string): string | undefined => {
    const v = str(t, key, 'auth');
    if (v === undefined) return undefined;
    try {
      return endpointUrl(v, `${path}: auth.${key}`).href;
    } catch (err) {
      throw err instanceof AuthConfigError ? err : bad(`auth.${key}`, 'a URL');
    }
  };

  const a = table(doc.auth, 'auth');
  const issuerText = str(a, 'issuer', 'auth') ?? GLOBUS_ISSUER;
  endpointUrl(issuerText, `${path}: auth.issuer`);
  const issuer = issuerText.replace(/\/+$/, '');
  const isGlobus = issuer === GLOBUS_ISSUER;

  let scopes = [...DEFAULT_SCOPES];
  if (a.scopes !== undefined) {
    if (!Array.isArray(a.scopes) || !a.scopes.every((s) => typeof s === 'string' && s.trim() !== '' && !/\s/.test(s.trim()))) {
      throw bad('auth.scopes', 'a list of scope strings, e.g. ["openid", "profile"]');
    }
    scopes = (a.scopes as string[]).map((s) => s.trim());
  }

  const authorizeParams: Record<string, string> = isGlobus ? { access_type: 'offline' } : {};
  const extra = table(a.authorize_params, 'auth.authorize_params');
  for (const [k, v] of Object.entries(extra)) {
    if (typeof v !== 'string') throw bad(`auth.authorize_params.${k}`, 'a string');
    authorizeParams[k] = v;
  }

  let redirectUri = str(a, 'redirect_uri', 'auth');
  if (redirectUri !== undefined) {
    try {
      new URL(redirectUri);
    } catch {
      throw bad('auth.redirect_uri', 'a URL');
    }
  } else if (isGlobus) {
    redirectUri = GLOBUS_AUTH_CODE_PAGE;
  }

  const auth: AuthSettings = {
    issuer,
    clientId: str(a, 'client_id', 'auth'),
    redirectUri,
    scopes,
    authorizationEndpoint: url(a, 'authorization_endpoint'),
    tokenEndpoint: url(a, 'token_endpoint'),
    deviceAuthorizationEndpoint: url(a, 'device_authorization_endpoint'),
    revocationEndpoint: url(a, 'revocation_endpoint'),
    userinfoEndpoint: url(a, 'userinfo_endpoint'),
    authorizeParams,
  };

  const servers: Record<string, ServerAuth> = {};
  for (const [key, value] of Object.entries(table(doc.servers, 'servers'))) {
    const t = table(value, `servers."${key}"`);
    const scope = str(t, 'scope', `servers."${key}"`);
    if (scope === undefined) throw bad(`servers."${key}".scope`, 'set (the scope this s2cs requires)');
    if (/\s/.test(scope)) throw bad(`servers."${key}".scope`, 'one scope (no spaces)');
    if (key !== '*') {
      try {
        servers[formatAddress(parseAddress(key, `${path}: servers key`))] = { scope };
        continue;
      } catch {
        throw new AuthConfigError(`${path}: servers."${key}" must be named host:port (or "*" for any other server)`);
      }
    }
    servers[key] = { scope };
  }

  return {
    home,
    path,
    exists,
    auth,
    servers,
    scopeFor(server: string): string | undefined {
      let key = server;
      try {
        key = formatAddress(parseAddress(server, 's2cs address'));
      } catch {
        // not host:port: only the exact key or "*" can match
      }
      return servers[key]?.scope ?? servers[server]?.scope ?? servers['*']?.scope;
    },
    serverScopes(): string[] {
      return [...new Set(Object.values(servers).map((s) => s.scope))];
    },
    requireClientId(): string {
      if (auth.clientId) return auth.clientId;
      throw new AuthConfigError(
        `no OAuth client id configured: add client_id = "..." under [auth] in ${path} ` +
          `(register a native app, e.g. at https://app.globus.org/settings/developers, and use its client id)`,
      );
    },
  };
}
