// `s2uc login | logout | check-auth | whoami`: thin commander bindings over UserAuth.
// Instructions and prompts go to stderr, results to stdout (one JSON object with --json).
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { EXIT } from '../../cli.js';
import { formatAddress, parseAddress } from '../../protocol/address.js';
import { ScistreamError } from '../../protocol/errors.js';
import type { AuthIO, LoginFlow, UserAuth } from './login.js';
import type { StoredIdentity } from './tokens.js';
import { scopeString } from '../reference.js';

/** login.js brings openid-client and jose: loaded by these commands only, not at every s2uc start. */
async function openUserAuth(): Promise<UserAuth> {
  return (await import('./login.js')).UserAuth.open();
}

const say = (line: string) => process.stderr.write(`${line}\n`);

/** Reads one line of stdin; a closed stdin (a script, CI) is a clear error instead of a hang. */
function promptLine(question: string, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: process.stdin.isTTY === true });
    let answered = false;
    const onAbort = () => rl.close();
    signal.addEventListener('abort', onAbort, { once: true });
    rl.question(question, (answer) => {
      answered = true;
      rl.close();
      resolve(answer);
    });
    rl.once('close', () => {
      signal.removeEventListener('abort', onAbort);
      if (!answered) {
        reject(
          signal.aborted
            ? new ScistreamError('ABORTED', 'login interrupted')
            : new ScistreamError('INVALID_ARGUMENT', 'no authorization code: standard input closed; run `s2uc login` in a terminal, or use `s2uc login --device`'),
        );
      }
    });
  });
}

function who(id: StoredIdentity | undefined): string {
  if (!id) return 'an unnamed identity';
  const name = id.preferred_username ?? id.email ?? id.name;
  return name ? `${name} (sub ${id.sub})` : `sub ${id.sub}`;
}

const serverList = (v: string, prev: string[] = []) => [...prev, formatAddress(parseAddress(v, '--s2cs'))];

/** A --scope as the provider knows it, saying so when a reference-style Globus id was expanded. */
function asScope(scope: string, auth: UserAuth): string {
  const s = scopeString(scope, auth.config.auth.issuer);
  if (s !== scope) say(`s2uc: note: --scope ${scope} taken as ${s} (the scope the reference asked Globus Auth for)`);
  return s;
}

/** `check-auth --scope`: the token state for one scope; exit 1 when it is not usable. The token itself is not printed. */
async function checkScope(auth: UserAuth, scope: string, json: boolean | undefined): Promise<void> {
  const s = await auth.checkScope(scope);
  const st = s.scope;
  const ok = s.loggedIn && (st.state === 'valid' || (st.state === 'expired' && st.refreshable));
  if (json) {
    process.stdout.write(`${JSON.stringify({ ...s, ok })}\n`);
  } else {
    process.stdout.write(s.loggedIn ? `logged in at ${s.issuer} as ${who(s.identity)}\n` : `not logged in at ${s.issuer}${s.note ? ` (${s.note})` : ''}: run \`s2uc login --scope ${scope}\`\n`);
    const state =
      st.state === 'valid'
        ? `token valid${st.expiresAt ? ` until ${st.expiresAt.toISOString()}` : ''}`
        : st.state === 'expired'
          ? st.refreshable
            ? 'token expired; refreshed on next use'
            : `token expired: run \`s2uc login --scope ${scope}\``
          : `no token: run \`s2uc login --scope ${scope}\``;
    process.stdout.write(`  scope ${scope}: ${state}\n`);
  }
  if (!ok) process.exitCode = EXIT.failed;
}

export function addAuthCommands(program: Command): void {
  program
    .command('login')
    .description('log in at the OAuth2/OpenID Connect provider of ~/.scistream/config.toml and store tokens for every configured s2cs')
    .option('--device', 'use the device authorization grant (open a URL on any device; nothing to paste)')
    .option('--code', 'use a login URL and paste the code it shows (authorization code with PKCE)')
    .option('--scope <scope>', 'ask for this scope too; repeat for more', (v: string, prev: string[] = []) => [...prev, v])
    .option('--json', 'print one JSON object on stdout')
    .action(async (f: { device?: boolean; code?: boolean; scope?: string[]; json?: boolean }) => {
      if (f.device && f.code) throw new ScistreamError('INVALID_ARGUMENT', 'choose one of --device and --code');
      const flow: LoginFlow = f.device ? 'device' : f.code ? 'code' : 'auto';
      const auth = await openUserAuth();
      const scopes = f.scope?.map((s) => asScope(s, auth));
      const abort = new AbortController();
      const interrupt = () => abort.abort();
      process.once('SIGINT', interrupt);
      const io: AuthIO = { print: say, prompt: (q) => promptLine(q, abort.signal) };
      try {
        const r = await auth.login({ io, flow, scopes, signal: abort.signal });
        if (f.json) {
          process.stdout.write(`${JSON.stringify({ loggedIn: true, flow: r.flow, identity: r.identity, scopes: r.scopes, missing: r.missing, tokenFile: auth.store.path })}\n`);
        } else {
          process.stdout.write(`logged in as ${who(r.identity)}; tokens in ${auth.store.path}\n`);
        }
        for (const m of r.missing) say(`s2uc: warning: no token for scope ${m.scope}: ${m.reason}`);
      } finally {
        process.off('SIGINT', interrupt);
      }
    });

  program
    .command('logout')
    .description('revoke the stored tokens at the provider and delete tokens.json')
    .option('--json', 'print one JSON object on stdout')
    .action(async (f: { json?: boolean }) => {
      const auth = await openUserAuth();
      const r = await auth.logout({ io: { print: (l) => say(`s2uc: warning: ${l}`) } });
      if (f.json) process.stdout.write(`${JSON.stringify(r)}\n`);
      else if (!r.removed && r.revoked === 0) process.stdout.write('not logged in; nothing to do\n');
      else process.stdout.write(`logged out: ${r.revoked} token(s) revoked, ${auth.store.path} deleted\n`);
      if (r.failed.length > 0) process.exitCode = EXIT.failed;
    });

  program
    .command('check-auth')
    .description('show which s2cs have a usable token (exit 1 when one has none)')
    .option('--s2cs <host:port>', 'check this server; repeat for more (default: every server in config.toml)', serverList)
    .option('--scope <scope>', "check the token for this scope instead (the reference's spelling; a Globus resource server id means its .../scistream scope)")
    .option('--json', 'print one JSON object on stdout')
    .action(async (f: { s2cs?: string[]; scope?: string; json?: boolean }) => {
      const auth = await openUserAuth();
      if (f.scope !== undefined) {
        if (f.s2cs) throw new ScistreamError('INVALID_ARGUMENT', 'give --s2cs or --scope, not both');
        await checkScope(auth, asScope(f.scope, auth), f.json);
        return;
      }
      const s = await auth.checkAuth(f.s2cs);
      // An expired token that can be refreshed is fine: s2uc refreshes it on use.
      const usable = (st: (typeof s.servers)[number]) => st.state === 'valid' || (st.state === 'expired' && st.refreshable) || st.state === 'not-configured';
      const ok = s.loggedIn && s.servers.every(usable);
      if (f.json) {
        process.stdout.write(`${JSON.stringify({ ...s, ok })}\n`);
      } else {
        process.stdout.write(s.loggedIn ? `logged in at ${s.issuer} as ${who(s.identity)}\n` : `not logged in at ${s.issuer}${s.note ? ` (${s.note})` : ''}: run \`s2uc login\`\n`);
        if (s.servers.length === 0) process.stdout.write(`no servers configured in ${auth.config.path}; add [servers."host:port"] scope = "..." for each s2cs that checks tokens\n`);
        for (const st of s.servers) {
          const state =
            st.state === 'not-configured'
              ? 'no scope configured (no token sent)'
              : st.state === 'valid'
                ? `token valid${st.expiresAt ? ` until ${st.expiresAt.toISOString()}` : ''}`
                : st.state === 'expired'
                  ? st.refreshable
                    ? 'token expired; refreshed on next use'
                    : 'token expired: run `s2uc login`'
                  : 'no token: run `s2uc login`';
          process.stdout.write(`  ${st.server}${st.scope ? ` (scope ${st.scope})` : ''}: ${state}\n`);
        }
      }
      if (!ok) process.exitCode = EXIT.failed;
    });

  program
    .command('whoami')
    .description('show who is logged in')
    .option('--userinfo', "ask the provider's userinfo endpoint instead of reading the login's ID token")
    .option('--json', 'print one JSON object on stdout')
    .action(async (f: { userinfo?: boolean; json?: boolean }) => {
      const auth = await openUserAuth();
      const me = await auth.whoami({ userinfo: f.userinfo });
      if (f.json) process.stdout.write(`${JSON.stringify(me)}\n`);
      else process.stdout.write(`${who(me)} at ${me.issuer}${me.email && me.preferred_username ? ` <${me.email}>` : ''}\n`);
    });
}
