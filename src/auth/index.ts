// Who is calling: the seam where token validation plugs into S2CS.
import type { Metadata } from '@grpc/grpc-js';

export interface Identity {
  /** Stable subject of the caller (an OAuth2 `sub`); the owner of the streams it creates. */
  subject: string;
}

export type RpcName = 'req' | 'update' | 'release' | 'hello' | 'status';

export interface Authenticator {
  readonly mode: string;
  /** Resolves the caller's identity, or rejects with an UNAUTHENTICATED / PERMISSION_DENIED ScistreamError. */
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
