// The token store: $SCISTREAM_HOME/tokens.json, readable by its owner only (0600, in
// a 0700 directory). Written atomically (temp file + rename). A file that group or
// others can access is refused, since its tokens may have leaked.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { AuthConfigError } from '../../auth/common.js';

/** One access token and what came with it. */
export interface StoredToken {
  access_token: string;
  refresh_token?: string;
  /** Epoch seconds; absent when the provider did not say. */
  expires_at?: number;
  /** The scopes granted (space-separated). */
  scope: string;
  token_type?: string;
  /** Globus `resource_server`, when given. */
  resource_server?: string;
  /** Epoch seconds when it was obtained. */
  obtained_at: number;
  /** The `scope` to ask for when refreshing it (set when it was obtained by narrowing a broader grant). */
  refresh_scope?: string;
}

/** Who logged in, from the ID token (or userinfo). */
export interface StoredIdentity {
  sub: string;
  preferred_username?: string;
  name?: string;
  email?: string;
}

export interface TokenFile {
  version: 1;
  /** The issuer and client the tokens belong to; tokens for another pair are ignored. */
  issuer: string;
  client_id: string;
  identity?: StoredIdentity;
  /** Keyed by the scope the token was obtained for (for the login token: its granted scopes). */
  tokens: Record<string, StoredToken>;
}

const LOCK_STALE_MS = 30_000;
const LOCK_WAIT_MS = 15_000;

export class TokenStore {
  readonly path: string;
  private readonly lockPath: string;
  /** In-process serialization; the lock file serializes processes. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(path: string) {
    this.path = path;
    this.lockPath = `${path}.lock`;
  }

  static inHome(home: string): TokenStore {
    return new TokenStore(join(home, 'tokens.json'));
  }

  /**
   * The stored tokens, or undefined when there is no file. Throws AuthConfigError when
   * group or others can access the file (it says which chmod fixes it) or it is corrupt.
   */
  async load(): Promise<TokenFile | undefined> {
    let mode: number;
    try {
      mode = (await stat(this.path)).mode;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new AuthConfigError(`cannot read ${this.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      throw new AuthConfigError(
        `${this.path} is accessible by other users (mode ${(mode & 0o777).toString(8).padStart(3, '0')}), so its tokens may have leaked; ` +
          `run: chmod 600 ${this.path} (and consider \`s2uc logout\` then \`s2uc login\`)`,
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(this.path, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new AuthConfigError(`${this.path} is not a valid token file; delete it and run \`s2uc login\``);
    }
    if (!isTokenFile(parsed)) throw new AuthConfigError(`${this.path} is not a valid token file; delete it and run \`s2uc login\``);
    return parsed;
  }

  /** Writes the file atomically with mode 0600, creating the directory with mode 0700 if needed. */
  async save(file: TokenFile): Promise<void> {
    const dir = dirname(this.path);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(file, null, 2)}\n`, 'utf8');
      await fh.sync();
    } catch (err) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await fh.close();
    try {
      await chmod(tmp, 0o600); // in case of an unusual umask or file system
      await rename(tmp, this.path);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
  }

  /** Deletes the file; true if there was one. */
  async remove(): Promise<boolean> {
    try {
      await unlink(this.path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /**
   * Runs `fn` while holding the store's lock: one at a time in this process, and one
   * process at a time through `tokens.json.lock` (so that two s2uc commands do not
   * both spend the same rotating refresh token). A lock older than 30 s is taken over.
   */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(async () => {
      const release = await this.acquireFileLock();
      try {
        return await fn();
      } finally {
        await release();
      }
    });
    this.chain = run.catch(() => {});
    return run;
  }

  private async acquireFileLock(): Promise<() => Promise<void>> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        const fh = await open(this.lockPath, 'wx', 0o600);
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        return async () => {
          await rm(this.lockPath, { force: true });
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      try {
        const age = Date.now() - (await stat(this.lockPath)).mtimeMs;
        if (age > LOCK_STALE_MS) {
          await rm(this.lockPath, { force: true });
          continue;
        }
      } catch {
        continue; // it went away
      }
      if (Date.now() > deadline) {
        throw new AuthConfigError(`${this.lockPath} is held by another s2uc; if none is running, delete that file`);
      }
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
    }
  }
}

/**
 * The stored token for `scope`: the entry obtained for it, else any entry whose
 * granted scopes include it (an unexpired one first).
 */
export function findToken(file: TokenFile | undefined, scope: string, nowSec = Date.now() / 1000): { key: string; token: StoredToken } | undefined {
  if (!file) return undefined;
  const exact = file.tokens[scope];
  if (exact) return { key: scope, token: exact };
  const covering = Object.entries(file.tokens).filter(([, t]) => t.scope.split(/\s+/).includes(scope));
  covering.sort(([, a], [, b]) => Number(isExpired(a, nowSec)) - Number(isExpired(b, nowSec)));
  const first = covering[0];
  return first ? { key: first[0], token: first[1] } : undefined;
}

/** Whether a token is expired, or will be within `marginSec`. Tokens without an expiry are treated as valid. */
export function isExpired(t: StoredToken, nowSec = Date.now() / 1000, marginSec = 0): boolean {
  return t.expires_at !== undefined && t.expires_at - marginSec <= nowSec;
}

function isTokenFile(v: unknown): v is TokenFile {
  if (typeof v !== 'object' || v === null) return false;
  const f = v as Partial<TokenFile>;
  if (f.version !== 1 || typeof f.issuer !== 'string' || typeof f.client_id !== 'string') return false;
  if (typeof f.tokens !== 'object' || f.tokens === null) return false;
  return Object.values(f.tokens).every(
    (t) => typeof t === 'object' && t !== null && typeof t.access_token === 'string' && typeof t.scope === 'string',
  );
}
