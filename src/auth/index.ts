// Who is calling: the seam where token validation plugs into S2CS.
//
// Modes (see createAuthenticator):
//   none       every caller is "anonymous" (a trusted network, tests);
//   introspect opaque tokens checked with RFC 7662 introspection (Globus Auth);
//   jwt        JWT access tokens verified against the issuer's published keys.
// Failures are ScistreamErrors: UNAUTHENTICATED (no/unknown/expired/revoked token:
// the user should run `s2uc login`), PERMISSION_DENIED (the token lacks the scope),
// UNAVAILABLE (the authorization server cannot be reached), so they map to gRPC
// statuses in src/protocol/errors.ts like every other error.
import { readFileSync, statSync } from 'node:fs';
import type { Metadata } from '@grpc/grpc-js';
import { AuthConfigError } from './common.js';
import { IntrospectionAuth, type IntrospectionAuthOptions } from './introspect.js';
import { JwtAuth, type JwtAuthOptions } from './jwt.js';

export interface Identity {
  /** Stable subject of the caller (an OAuth2 `sub`); the owner of the streams it creates. */
  subject: string;
  /** A human-readable name when the authorization server gives one (introspection `username`). For logs only. */
  username?: string;
  /** The OAuth client the caller used (`client_id`), when known. For logs only. */
  clientId?: string;
}

export type RpcName = 'req' | 'update' | 'release' | 'hello' | 'status' | 'capabilities';

export interface Authenticator {
  readonly mode: string;
  /** Resolves the caller's identity, or rejects with an UNAUTHENTICATED / PERMISSION_DENIED / UNAVAILABLE ScistreamError. */
  authenticate(metadata: Metadata, rpc: RpcName): Promise<Identity>;
}

/** `--auth none`: every caller is the same anonymous identity. */
export class NoAuth implements Authenticator {
  readonly mode = 'none';
  private static readonly anonymous: Identity = { subject: 'anonymous' };
  async authenticate(): Promise<Identity> {
    return NoAuth.anonymous;
  }
}

export type AuthMode = 'none' | 'introspect' | 'jwt';
export const AUTH_MODES: readonly AuthMode[] = ['none', 'introspect', 'jwt'];

export type AuthConfig =
  | { mode: 'none' }
  | ({ mode: 'introspect' } & IntrospectionAuthOptions)
  | ({ mode: 'jwt' } & JwtAuthOptions);

/**
 * The Authenticator for a configuration. Throws AuthConfigError (an INVALID_ARGUMENT
 * ScistreamError: the CLIs exit with code 2) when the configuration is incomplete.
 */
export function createAuthenticator(config: AuthConfig): Authenticator {
  switch (config.mode) {
    case 'none':
      return new NoAuth();
    case 'introspect': {
      const { mode: _mode, ...opts } = config;
      return new IntrospectionAuth(opts);
    }
    case 'jwt': {
      const { mode: _mode, ...opts } = config;
      return new JwtAuth(opts);
    }
    default:
      throw new AuthConfigError(`unknown auth mode "${(config as { mode: unknown }).mode}"; use one of ${AUTH_MODES.join(', ')}`);
  }
}

export const CLIENT_SECRET_ENV = 'S2CS_CLIENT_SECRET';

/**
 * The gateway's client secret: the trimmed contents of `file` when given, else the
 * environment variable S2CS_CLIENT_SECRET. A file that group or others may access
 * (mode & 0o077) is refused, with the chmod that fixes it. Throws AuthConfigError.
 */
export function readClientSecret(opts: { file?: string; env: NodeJS.ProcessEnv }): string {
  if (opts.file !== undefined && opts.file !== '') {
    const file = opts.file;
    let mode: number;
    try {
      mode = statSync(file).mode;
    } catch (err) {
      throw new AuthConfigError(`cannot read the client secret file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      throw new AuthConfigError(
        `the client secret file ${file} is accessible by other users (mode ${(mode & 0o777).toString(8).padStart(3, '0')}); run: chmod 600 ${file}`,
      );
    }
    let secret: string;
    try {
      secret = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new AuthConfigError(`cannot read the client secret file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (secret === '') throw new AuthConfigError(`the client secret file ${file} is empty`);
    return secret;
  }
  const fromEnv = opts.env[CLIENT_SECRET_ENV]?.trim();
  if (fromEnv) return fromEnv;
  throw new AuthConfigError(
    `no client secret for token introspection: put it in a file only you can read (chmod 600 FILE) and name that file, or set ${CLIENT_SECRET_ENV}`,
  );
}

export { IntrospectionAuth, INTROSPECTION_CLIENT_AUTH, type IntrospectionAuthOptions, type IntrospectionClientAuth } from './introspect.js';
export { JwtAuth, type JwtAuthOptions } from './jwt.js';
export { AuthConfigError, bearerToken, tokenRef } from './common.js';
export { generateAppSecret, verifyAppSecret, hashAppSecret, verifyAppSecretHash } from './app-secret.js';
