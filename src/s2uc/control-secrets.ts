// The control secrets of the streams s2uc set up, kept so that a later `s2uc release
// UID` or `s2uc status` (another process) can prove the streams are the user's:
// $SCISTREAM_HOME/control-secrets/<uid>/<gateway>, one secret per file, mode 600 in
// mode 700 directories, written atomically. Removed when the stream is released.
// Synchronous: it is written from the req's early metadata, and Ctrl-C may follow at once.
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { validateUid, MAX_STATUS_SECRETS } from '../protocol/validate.js';

export class ControlSecretStore {
  constructor(readonly dir: string) {}

  static inHome(home: string): ControlSecretStore {
    return new ControlSecretStore(join(home, 'control-secrets'));
  }

  /** The user's store: $SCISTREAM_HOME, else ~/.scistream (the rule of auth/config.ts, without loading its TOML parser). */
  static forUser(env: NodeJS.ProcessEnv = process.env): ControlSecretStore {
    const fromEnv = env.SCISTREAM_HOME?.trim();
    return ControlSecretStore.inHome(fromEnv ? resolve(fromEnv) : join(homedir(), '.scistream'));
  }

  /** Where the secret of `uid` at `server` (host:port as s2uc writes it) is kept. */
  path(uid: string, server: string): string {
    return join(this.dir, validateUid(uid, 'uid'), encodeURIComponent(server));
  }

  save(uid: string, server: string, secret: string): void {
    writePrivateFile(this.path(uid, server), `${secret}\n`);
  }

  /**
   * The secret kept for `uid` at `server`, or undefined. Throws when group or others
   * can read the file (the secret may have leaked: it says what to do).
   */
  read(uid: string, server: string): string | undefined {
    const file = this.path(uid, server);
    let mode: number;
    try {
      mode = statSync(file).mode;
    } catch {
      return undefined;
    }
    if ((mode & 0o077) !== 0) {
      throw new Error(
        `${file} is accessible by other users (mode ${(mode & 0o777).toString(8)}), so the control secret of stream ${uid} may have leaked: ` +
          `release the stream (s2uc release ${uid} --control-secret "$(cat ${file})") and set it up again`,
      );
    }
    try {
      return readFileSync(file, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  }

  /** Forgets the secret of `uid` at `server` (and the uid's directory once empty). */
  remove(uid: string, server: string): void {
    try {
      unlinkSync(this.path(uid, server));
    } catch {
      return;
    }
    try {
      rmdirSync(join(this.dir, uid));
    } catch {
      // the stream's secrets at other gateways remain
    }
  }

  /** The secrets kept for `server`, newest streams first, at most what one status request takes. */
  allFor(server: string): string[] {
    let uids: string[];
    try {
      uids = readdirSync(this.dir);
    } catch {
      return [];
    }
    const found: { secret: string; at: number }[] = [];
    const name = encodeURIComponent(server);
    for (const uid of uids) {
      const file = join(this.dir, uid, name);
      try {
        const st = statSync(file);
        if ((st.mode & 0o077) !== 0) continue;
        const secret = readFileSync(file, 'utf8').trim();
        if (secret) found.push({ secret, at: st.mtimeMs });
      } catch {
        // not at this gateway
      }
    }
    return found.sort((a, b) => b.at - a.at).slice(0, MAX_STATUS_SECRETS).map((f) => f.secret);
  }
}

/**
 * Writes `text` to `file` readable by its owner alone (0600 in a 0700 directory, whatever
 * the umask), atomically: a reader sees the old content or the new, never half of it.
 */
export function writePrivateFile(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
  try {
    chmodSync(tmp, 0o600); // whatever the umask
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw err;
  }
}
