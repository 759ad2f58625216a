// The state directory (certificates, workers' sockets and logs) must be writable before a
// server starts: a read-only, full or foreign directory is said so in plain words, not as
// an errno from whichever write happened to fail first.
import { accessSync, constants, existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** A write problem in plain words, with what to do (an errno code, else the message). */
export function stateDirProblem(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EROFS':
      return 'it is on a read-only file system (EROFS); give a --state-dir on a writable file system (under systemd: StateDirectory= and ReadWritePaths=)';
    case 'EACCES':
    case 'EPERM':
      return `this user (uid ${process.getuid?.() ?? '?'}) may not write there (${code}); give a --state-dir it owns, or chown it to this user`;
    case 'ENOSPC':
      return 'its file system is full (ENOSPC, no space left on device); free space there or give another --state-dir';
    case 'EDQUOT':
      return "this user's disk quota there is used up (EDQUOT); free space or give another --state-dir";
    case 'ENOTDIR':
      return 'a part of its path is a file, not a directory (ENOTDIR); give a directory as --state-dir';
    case 'EEXIST':
      return 'it exists and is not a directory (EEXIST); give a directory as --state-dir';
    default:
      return `${code ?? 'error'}: ${(err as Error).message}`;
  }
}

/**
 * Makes `dir` (mode 700 when new) and writes and removes a small probe file in it, so
 * that a read-only or full file system shows now. Returns the problem, or undefined.
 * `create: false` (check-config) leaves a missing `dir` missing: its first existing
 * ancestor must then be a directory this user may write.
 */
export function stateDirUnwritable(dir: string, opts: { create?: boolean } = {}): string | undefined {
  if (opts.create === false && !existsSync(dir)) return missingDirUnwritable(dir);
  const probe = join(dir, `.write-probe-${process.pid}`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // A few KiB: a full file system often still has inodes for an empty file.
    writeFileSync(probe, Buffer.alloc(16 * 1024));
  } catch (err) {
    rmSync(probe, { force: true });
    return `the state dir ${dir} cannot be written: ${stateDirProblem(ancestorProblem(dir, err))}`;
  }
  rmSync(probe, { force: true });
  return undefined;
}

/** Whether a missing `dir` could be made: its first existing ancestor is a writable directory. */
function missingDirUnwritable(dir: string): string | undefined {
  let up = dirname(dir);
  while (!existsSync(up) && dirname(up) !== up) up = dirname(up);
  try {
    if (!statSync(up).isDirectory()) throw Object.assign(new Error(`${up} is not a directory`), { code: 'ENOTDIR' });
    accessSync(up, constants.W_OK);
  } catch (err) {
    return `the state dir ${dir} cannot be written: ${stateDirProblem(err)}`;
  }
  return undefined;
}

/**
 * Node's recursive mkdir reports ENOENT when a missing directory cannot be made under a
 * read-only or foreign parent; the first existing ancestor then tells the real cause.
 */
function ancestorProblem(dir: string, err: unknown): unknown {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return err;
  let up = dirname(dir);
  while (!existsSync(up) && dirname(up) !== up) up = dirname(up);
  try {
    accessSync(up, constants.W_OK);
  } catch (cause) {
    return cause;
  }
  return err;
}
