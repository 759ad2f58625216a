// A real OpenID Provider (oidc-provider 8) on 127.0.0.1 for the authentication tests,
// and a scripted user (a tiny cookie-keeping browser) that logs in and consents.
//
// Resource servers stand for SciStream gateways; each is selected by its scope (the
// way Globus Auth scopes name resource servers), so clients send scopes only:
//   SCOPE_A, SCOPE_B  opaque tokens (checked by introspection), audience gw-a / gw-b
//   SCOPE_J           JWT access tokens, audience JWT_AUDIENCE
//   SCOPE_S           opaque tokens that live SHORT_TTL seconds (expiry and refresh tests)
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import { exportJWK, generateKeyPair } from 'jose';
import * as oidc from 'openid-client';

export const SCOPE_A = 'https://auth.test/scopes/gw-a/scistream';
export const SCOPE_B = 'https://auth.test/scopes/gw-b/scistream';
export const SCOPE_J = 'https://auth.test/scopes/gw-j/scistream';
export const SCOPE_S = 'https://auth.test/scopes/gw-s/scistream';
export const JWT_AUDIENCE = 'urn:scistream:gw-j';
export const SHORT_TTL = 2;
/** The public native client s2uc uses. */
export const CLI_CLIENT = 's2uc-test';
/** The confidential client the gateways use for introspection. */
export const GW_CLIENT = 'gw-a';
/** A second one, spelled like a Globus client (a UUID); its secret (`oddSecret`) has `-._~:+%`. */
export const ODD_CLIENT = '6f1c2a9e-3b4d-4c5e-8f70-91a2b3c4d5e6';

interface ResourceServer {
  scope: string;
  audience: string;
  accessTokenFormat: 'opaque' | 'jwt';
  accessTokenTTL: number;
  jwt?: { sign: { alg: string } };
}

const RESOURCES: Record<string, ResourceServer> = {
  'https://gw-a.test/': { scope: SCOPE_A, audience: 'gw-a', accessTokenFormat: 'opaque', accessTokenTTL: 3600 },
  'https://gw-b.test/': { scope: SCOPE_B, audience: 'gw-b', accessTokenFormat: 'opaque', accessTokenTTL: 3600 },
  'https://gw-j.test/': { scope: SCOPE_J, audience: JWT_AUDIENCE, accessTokenFormat: 'jwt', accessTokenTTL: 3600, jwt: { sign: { alg: 'RS256' } } },
  'https://gw-s.test/': { scope: SCOPE_S, audience: 'gw-s', accessTokenFormat: 'opaque', accessTokenTTL: SHORT_TTL },
};

export interface TestIdP {
  issuer: string;
  /** Where the native client is sent after consent (the "auth-code" page). */
  redirectUri: string;
  introspectionUrl: string;
  gwSecret: string;
  /** ODD_CLIENT's secret: characters that HTTP Basic spells differently when form-encoded. */
  oddSecret: string;
  /** Requests served, by path (e.g. "/token/introspection"). */
  requests(path: string): number;
  /** Logs `user` in at the provider through the code flow and returns its token response. */
  issueToken(scope: string, user?: string): Promise<oidc.TokenEndpointResponse>;
  /** Revokes a token (RFC 7009) as the client it was issued to. */
  revoke(token: string): Promise<void>;
  close(): Promise<void>;
}

type Any = any; // oidc-provider's objects are untyped

/** oidc-provider's own in-memory storage, named so that it does not warn about using it. */
class TestAdapter extends MemoryAdapter {}

export async function startIdP(): Promise<TestIdP> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;
  const redirectUri = `${issuer}/auth-code`;
  const gwSecret = `gw-secret-${randomBytes(16).toString('hex')}`;
  const oddSecret = `odd-._~:+%2F ${randomBytes(16).toString('hex')}`;

  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signingKey = { ...(await exportJWK(privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };

  const page = (body: string) => `<!DOCTYPE html><html><body>${body}</body></html>`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLI_CLIENT,
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
        response_types: ['code'],
        redirect_uris: [redirectUri],
      },
      {
        client_id: GW_CLIENT,
        client_secret: gwSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
      {
        client_id: ODD_CLIENT,
        client_secret: oddSecret,
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: [],
        response_types: [],
        redirect_uris: [],
      },
    ],
    adapter: TestAdapter,
    jwks: { keys: [signingKey] },
    ttl: {
      AccessToken: (_ctx: Any, token: Any) => token.resourceServer?.accessTokenTTL ?? 3600,
      AuthorizationCode: 60,
      DeviceCode: 600,
      Grant: 86400,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 86400,
      Session: 86400,
    },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name'], email: ['email'] },
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    issueRefreshToken: async (_ctx: Any, client: Any) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    findAccount: async (_ctx: Any, sub: string) => ({
      accountId: sub,
      claims: async () => ({ sub, preferred_username: sub, name: `Test ${sub}`, email: `${sub}@example.org` }),
    }),
    interactions: { url: (_ctx: Any, interaction: Any) => `/interaction/${interaction.uid}` },
    renderError: async (ctx: Any, out: Any) => {
      ctx.type = 'html';
      ctx.body = page(`<pre>${String(out.error)}: ${String(out.error_description)}</pre>`);
    },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: async (ctx: Any, form: string) => {
          ctx.body = page(form);
        },
        userCodeConfirmSource: async (ctx: Any, form: string) => {
          ctx.body = page(form);
        },
        successSource: async (ctx: Any) => {
          ctx.body = page('<p>Sign-in Success</p>');
        },
      },
      introspection: { enabled: true, allowedPolicy: async () => true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        useGrantedResource: async () => false,
        // Clients send scopes only (as with Globus Auth); a scope names its resource server.
        defaultResource: async (ctx: Any, _client: Any, oneOf?: string[]) => {
          const requested = new Set(String(ctx.oidc.params.scope ?? '').split(' '));
          const matching = Object.keys(RESOURCES).filter((id) => requested.has(RESOURCES[id]!.scope));
          if (oneOf) return oneOf.find((id) => matching.includes(id)) ?? oneOf[0];
          if (matching.length === 0) return undefined;
          return matching.length === 1 ? matching[0] : matching;
        },
        getResourceServerInfo: async (_ctx: Any, indicator: string) => {
          const rs = RESOURCES[indicator];
          if (!rs) throw new errors.InvalidTarget!();
          return rs;
        },
      },
    },
  });
  // RFC 8628 lets the server set the polling interval; 1 s keeps the tests quick.
  provider.use(async (ctx: Any, next: () => Promise<void>) => {
    await next();
    if (ctx.oidc?.route === 'device_authorization' && ctx.body && typeof ctx.body === 'object') ctx.body.interval = 1;
  });
  provider.on('server_error', (_ctx: Any, err: Error) => {
    process.stderr.write(`oidc-provider server_error: ${err.stack ?? err.message}\n`);
  });

  // Login and consent without HTML: whoever the browser says it is (x-test-user) logs in
  // and grants everything asked for.
  async function interaction(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const details = await provider.interactionDetails(req, res);
    const { prompt, params, session, grantId } = details;
    if (prompt.name === 'login') {
      const user = String(req.headers['x-test-user'] ?? 'alice');
      await provider.interactionFinished(req, res, { login: { accountId: user } }, { mergeWithLastSubmission: false });
      return;
    }
    if (prompt.name === 'consent') {
      const grant = grantId ? await provider.Grant.find(grantId) : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const d = prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      if (d.missingResourceScopes) {
        for (const [indicator, scopes] of Object.entries(d.missingResourceScopes as Record<string, string[]>)) grant.addResourceScope(indicator, scopes.join(' '));
      }
      const id = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId: id } }, { mergeWithLastSubmission: true });
      return;
    }
    res.statusCode = 400;
    res.end(`unexpected prompt ${String(prompt.name)}`);
  }

  const counts = new Map<string, number>();
  const callback = provider.callback();
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = new URL(req.url ?? '/', issuer).pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
    if (path.startsWith('/interaction/')) {
      interaction(req, res).catch((err: Error) => {
        res.statusCode = 500;
        res.end(`interaction failed: ${err.message}`);
      });
      return;
    }
    if (path === '/auth-code') {
      // What Globus's auth-code page does: show the code for the user to copy.
      const code = new URL(req.url ?? '/', issuer).searchParams.get('code') ?? '';
      res.setHeader('content-type', 'text/html');
      res.end(page(`<p>Your authorization code:</p><code>${code.replace(/[^A-Za-z0-9_-]/g, '')}</code>`));
      return;
    }
    callback(req, res);
  });

  const cliConfig = () => oidc.discovery(new URL(issuer), CLI_CLIENT, undefined, oidc.None(), { execute: [oidc.allowInsecureRequests] });

  return {
    issuer,
    redirectUri,
    introspectionUrl: `${issuer}/token/introspection`,
    gwSecret,
    oddSecret,
    requests: (path) => counts.get(path) ?? 0,
    async revoke(token: string) {
      await oidc.tokenRevocation(await cliConfig(), token);
    },
    async issueToken(scope: string, user = 'alice') {
      const config = await cliConfig();
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri,
        scope,
        code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state,
      });
      const end = await new Browser(user).run(url.href, redirectUri);
      return oidc.authorizationCodeGrant(config, new URL(end.url), { pkceCodeVerifier: verifier, expectedState: state });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * The user's browser, scripted: follows redirects, keeps cookies, submits the
 * provider's forms (auto-post, device confirmation) as they are, and logs in as `user`.
 */
export class Browser {
  private readonly jar = new Map<string, { name: string; value: string; path: string }>();

  constructor(private readonly user = 'alice') {}

  /** Browses from `start` until a redirect to a URL starting with `stopAt`, or a page with no form. */
  async run(start: string, stopAt?: string): Promise<{ url: string; body: string }> {
    let url = start;
    let method = 'GET';
    let body: URLSearchParams | undefined;
    for (let step = 0; step < 30; step++) {
      if (stopAt && step > 0 && url.startsWith(stopAt)) return { url, body: '' };
      const headers: Record<string, string> = { 'x-test-user': this.user };
      const cookie = this.cookieHeader(new URL(url).pathname);
      if (cookie) headers.cookie = cookie;
      if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
      const res = await fetch(url, { method, body, headers, redirect: 'manual' });
      this.keep(res);
      const text = await res.text();
      if (res.status >= 300 && res.status < 400) {
        url = new URL(res.headers.get('location') ?? '', url).href;
        method = 'GET';
        body = undefined;
        continue;
      }
      if (res.status !== 200) throw new Error(`browser: HTTP ${res.status} at ${url}: ${text.slice(0, 300)}`);
      const form = parseForm(text);
      if (!form) return { url, body: text };
      url = new URL(form.action, url).href;
      method = 'POST';
      body = new URLSearchParams(form.fields);
    }
    throw new Error('browser: too many steps');
  }

  private keep(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair = '', ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let path = '/';
      let gone = value === '';
      for (const a of attrs) {
        const [k = '', v = ''] = a.split('=');
        const key = k.trim().toLowerCase();
        if (key === 'path') path = v.trim() || '/';
        if (key === 'expires' && Date.parse(v) < Date.now()) gone = true;
        if (key === 'max-age' && Number(v) <= 0) gone = true;
      }
      const id = `${name}\n${path}`;
      if (gone) this.jar.delete(id);
      else this.jar.set(id, { name, value, path });
    }
  }

  private cookieHeader(pathname: string): string {
    return [...this.jar.values()]
      .filter((c) => pathname === c.path || pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`) || c.path === '/')
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }
}

const decode = (s: string) =>
  s.replace(/&quot;/g, '"').replace(/&#39;|&#x27;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

function parseForm(html: string): { action: string; fields: Record<string, string> } | undefined {
  const m = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html);
  if (!m) return undefined;
  const attrs = (s: string) => Object.fromEntries([...s.matchAll(/([\w-]+)\s*=\s*"([^"]*)"/g)].map((a) => [a[1]!.toLowerCase(), decode(a[2]!)]));
  const action = attrs(m[1]!).action ?? '';
  const fields: Record<string, string> = {};
  for (const input of m[2]!.matchAll(/<input\b([^>]*)>/gi)) {
    const a = attrs(input[1]!);
    if (a.name) fields[a.name] = a.value ?? '';
  }
  return { action, fields };
}
