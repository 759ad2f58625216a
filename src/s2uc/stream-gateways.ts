// Where each stream s2uc set up lives: $SCISTREAM_HOME/streams/<uid>, the gateways
// (host:port as s2uc writes them) one per line, mode 600 in a mode 700 directory,
// written atomically. Recorded before the first req is sent, so that a request
// interrupted or killed meanwhile is still releasable by `s2uc release UID` alone;
// a gateway is forgotten once the stream is released there, the file with the last.
// Synchronous, as the control secret store beside it: Ctrl-C may follow at once.
import { readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { validateUid } from '../protocol/validate.js';
import { writePrivateFile } from './control-secrets.js';

export class StreamGateways {
  constructor(readonly dir: string) {}

  static inHome(home: string): StreamGateways {
    return new StreamGateways(join(home, 'streams'));
  }

  path(uid: string): string {
    return join(this.dir, validateUid(uid, 'uid'));
  }

  /** Adds `servers` to what is recorded for `uid`. */
  record(uid: string, servers: string[]): void {
    const known = this.gateways(uid) ?? [];
    this.write(uid, [...known, ...servers.filter((s) => !known.includes(s))]);
  }

  /**
   * The gateways recorded for `uid`, or undefined when none are. Throws when group or
   * others can write the file (someone else could point a release elsewhere).
   */
  gateways(uid: string): string[] | undefined {
    const file = this.path(uid);
    let mode: number;
    try {
      mode = statSync(file).mode;
    } catch {
      return undefined;
    }
    if ((mode & 0o022) !== 0) throw new Error(`${file} is writable by other users (mode ${(mode & 0o777).toString(8)}): remove it and release the stream with s2uc release ${uid} --s2cs HOST:PORT for each gateway`);
    try {
      const servers = readFileSync(file, 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
      return servers.length > 0 ? servers : undefined;
    } catch {
      return undefined;
    }
  }

  /** Forgets that `uid` lives at `server`; the record goes with its last gateway. */
  forget(uid: string, server: string): void {
    const known = this.gateways(uid);
    if (!known?.includes(server)) return;
    const left = known.filter((s) => s !== server);
    if (left.length > 0) this.write(uid, left);
    else {
      try {
        unlinkSync(this.path(uid));
      } catch {
        // already gone
      }
    }
  }

  private write(uid: string, servers: string[]): void {
    writePrivateFile(this.path(uid), `${servers.join('\n')}\n`);
  }
}
