// The Python reference's s2cs spellings, translated to ours in one place. Its s2cs is python-fire
// over one function, start(listener_ip, port, port_range, type, v, verbose, client_id,
// client_secret, version, server_crt, server_key, ssl): no subcommand, `--flag value` or
// `--flag=value`, booleans as `--ssl=False`. What its users type keeps working here, or is refused
// with one line saying what to type; nothing of it reaches the configuration file's schema.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CLIENT_SECRET_ENV } from '../auth/index.js';

/** The reference's data server types (its --type): all replaced by our built-in data server. */
export const REFERENCE_TYPES = ['Haproxy', 'Nginx', 'Stunnel', 'StunnelSubprocess', 'HaproxySubprocess', 'S2DS'] as const;

/** Where the reference introspects tokens (Globus Auth), and the scope it expects of them. */
export const GLOBUS_INTROSPECTION_URL = 'https://auth.globus.org/v2/oauth2/token/introspect';
export const globusScope = (clientId: string): string => `https://auth.globus.org/scopes/${clientId}/scistream`;

/** The files the reference reads for its control-channel TLS when --ssl is on (its default). */
export const REFERENCE_CERT = 'server.crt';
export const REFERENCE_KEY = 'server.key';

export interface Notice {
  level: 'info' | 'warn';
  text: string;
}

export interface Translated {
  /** What commander parses (without node and the script). */
  args: string[];
  /** Lines for the log once it exists (start), or for stderr (check-config). */
  notices: Notice[];
  /** Variables to set in this process before the flags are checked (the client secret). */
  env: Record<string, string>;
  /** A usage error, one line: nothing runs. */
  problem?: string;
  /**
   * A reference start line that cannot mean here what it meant there (no --listener-ip, a client
   * id without its secret): what to type, one line. Said once the options are known good (an
   * unknown option is said first, as commander says it).
   */
  lateProblem?: string;
}

const SUBCOMMANDS = new Set(['start', 'check-config']);

/**
 * Translates `args` (process.argv without node and the script). `s2cs` alone, `s2cs --help` and
 * any other subcommand pass unchanged; options without a subcommand are the reference's start.
 */
export function translateReferenceArgs(args: string[], cwd: string = process.cwd(), environment: NodeJS.ProcessEnv = process.env): Translated {
  const first = args[0];
  if (first === undefined) return { args, notices: [], env: {} };
  if (!first.startsWith('-')) {
    if (!SUBCOMMANDS.has(first)) return { args, notices: [], env: {} };
    return translateOptions(first, args.slice(1), { reference: false, cwd, secretInEnvironment: false });
  }
  if (args.some((a) => a === '-h' || a === '--help')) return { args, notices: [], env: {} };
  // The reference prints its version and exits whatever else is given.
  if (args.some((a) => a === '-V' || a === '--version' || /^--version=(true|1)$/i.test(a))) return { args: ['--version'], notices: [], env: {} };
  return translateOptions('start', args, { reference: true, cwd, secretInEnvironment: Boolean(environment[CLIENT_SECRET_ENV]?.trim()) });
}

/** What the command line said, for the defaults that depend on it. */
interface Seen {
  listenerIp: boolean;
  config: boolean;
  tlsCert: boolean;
  tlsKey: boolean;
  insecure: boolean;
  auth: boolean;
  introspectionUrl: boolean;
  scope: boolean;
  clientId?: string;
  secretOnCommandLine: boolean;
  secretFile: boolean;
  /** --ssl=False or --nossl. */
  sslOff: boolean;
  type?: string;
}

const BOOLEAN_TRUE = /^(true|1|yes)$/i;
const BOOLEAN_FALSE = /^(false|0|no)$/i;

function translateOptions(command: string, rest: string[], opts: { reference: boolean; cwd: string; secretInEnvironment: boolean }): Translated {
  const out: string[] = [command];
  const notices: Notice[] = [];
  const env: Record<string, string> = {};
  const seen: Seen = { listenerIp: false, config: false, tlsCert: false, tlsKey: false, insecure: false, auth: false, introspectionUrl: false, scope: false, secretOnCommandLine: false, secretFile: false, sslOff: false };
  const fail = (problem: string): Translated => ({ args: out, notices, env, problem });
  // The tokens that carried a client secret: never repeated back (logs keep stderr).
  const secretTokens = new Set<number>();
  for (let i = 0; i < rest.length; i++) {
    const token = rest[i]!;
    if (token === '--') {
      out.push(...rest.slice(i));
      break;
    }
    const parsed = parseToken(token);
    if (!parsed) {
      out.push(token);
      continue;
    }
    const { name, inline } = parsed;
    // The value of an option that takes one: `--name=value`, else the next token (consumed).
    const valueOf = (): string | undefined => {
      if (inline !== undefined) return inline;
      const next = rest[i + 1];
      if (next === undefined || next.startsWith('-')) return undefined;
      i++;
      return next;
    };
    switch (name) {
      case '--type':
      case '-t': {
        const value = valueOf();
        const known = REFERENCE_TYPES.find((t) => t.toLowerCase() === value?.toLowerCase());
        if (!known) return fail(`${value === undefined ? '--type needs a value' : `--type ${shellWord(value)} is not a data server type`}: give one of ${REFERENCE_TYPES.join(', ')} (the reference's types; all are replaced by our built-in data server), or leave it out`);
        seen.type = known;
        break;
      }
      case '--server-crt':
      case '--server-key': {
        const ours = name === '--server-crt' ? '--tls-cert' : '--tls-key';
        const value = valueOf();
        if (value === undefined) return fail(`${name} needs a file: ${name}=FILE (the same as ${ours} FILE)`);
        out.push(ours, value);
        if (name === '--server-crt') seen.tlsCert = true;
        else seen.tlsKey = true;
        break;
      }
      case '--ssl':
      case '--nossl': {
        let on = name === '--ssl';
        if (name === '--ssl') {
          // python-fire: `--ssl` alone is True; `--ssl False` and `--ssl=False` give a value.
          const value = inline ?? (rest[i + 1] !== undefined && (BOOLEAN_TRUE.test(rest[i + 1]!) || BOOLEAN_FALSE.test(rest[i + 1]!)) ? rest[++i] : undefined);
          if (value !== undefined && !BOOLEAN_TRUE.test(value) && !BOOLEAN_FALSE.test(value)) return fail(`--ssl=${shellWord(value)}: give --ssl=True (TLS, the default) or --ssl=False (a plain-text control channel, our --insecure)`);
          on = value === undefined || BOOLEAN_TRUE.test(value);
        }
        if (!on) seen.sslOff = true;
        if (!on && !seen.insecure) {
          out.push('--insecure');
          seen.insecure = true;
        }
        break;
      }
      case '--client-secret': {
        // This token and, when the value is the next one, that one too.
        secretTokens.add(i);
        const value = valueOf();
        secretTokens.add(i);
        if (value === undefined || value.trim() === '') return fail(`--client-secret needs a value; better: put the secret in a file only you can read (chmod 600 FILE) and pass --client-secret-file FILE, or set ${CLIENT_SECRET_ENV}`);
        env[CLIENT_SECRET_ENV] = value;
        seen.secretOnCommandLine = true;
        notices.push({ level: 'warn', text: `--client-secret on the command line can be read by every user of this host (ps, /proc) and stays in your shell history; use --client-secret-file FILE (a file only you can read: chmod 600 FILE) or the environment variable ${CLIENT_SECRET_ENV} instead` });
        break;
      }
      case '--v':
        out.push('--verbose');
        break;
      case '--verbose':
      case '-v': {
        if (inline !== undefined && BOOLEAN_FALSE.test(inline)) break;
        if (inline !== undefined && !BOOLEAN_TRUE.test(inline)) return fail(`--verbose=${shellWord(inline)}: give --verbose (debug logs) or leave it out`);
        out.push('--verbose');
        break;
      }
      default: {
        track(seen, name, inline, rest[i + 1]);
        out.push(token);
      }
    }
  }
  if (seen.type) notices.push({ level: 'warn', text: typeNotice(seen.type) });
  if (seen.sslOff) notices.push({ level: 'warn', text: '--ssl=False: plain-text control channel, as our --insecure; our clients need --insecure too' });
  const auth = authDefaults(seen, opts.reference);
  if (auth) {
    out.push(...auth.args);
    notices.push({ level: 'info', text: auth.notice });
  }
  if (!opts.reference || seen.config) return { args: out, notices, env };
  const lateProblem = referenceProblem(seen, opts.secretInEnvironment, () => typedLine(rest, secretTokens));
  if (!lateProblem && !seen.insecure) {
    const tls = referenceCertificate(seen, opts.cwd);
    out.push(...tls.args);
    if (tls.notice) notices.push({ level: 'info', text: tls.notice });
  }
  return { args: out, notices, env, lateProblem };
}

/** What a reference start line lacks to mean the same here, as the line to type; undefined when nothing. */
function referenceProblem(seen: Seen, secretInEnvironment: boolean, typed: () => string): string | undefined {
  if (!seen.listenerIp) {
    const lead = "--listener-ip is required: the reference's default 0.0.0.0 cannot be advertised to peers; type:";
    const peers = "--listener-ip=<this gateway's address that peers reach>";
    if (seen.clientId !== undefined || seen.auth || seen.introspectionUrl) return `${lead} s2cs ${typed()} ${peers} (127.0.0.1 to try it on this host alone)`;
    // Without a provider, a control port others reach needs --auth none said knowingly (the reference checks nothing then).
    return `${lead} s2cs ${typed()} --listener-ip=127.0.0.1 to try it on this host alone, or s2cs ${typed()} ${peers} --auth none to let peers in without token checking as the reference does (or a provider: --client-id ID --client-secret-file FILE)`;
  }
  if (seen.clientId !== undefined && !seen.secretOnCommandLine && !seen.secretFile && !secretInEnvironment && !seen.auth && !seen.introspectionUrl) {
    // The reference runs without authentication then (its secret defaults to empty).
    return `--client-id without a client secret: the reference then checks no tokens, s2cs would check them as that client; add --client-secret-file FILE (chmod 600 FILE) or set ${CLIENT_SECRET_ENV}, or leave out --client-id to check no tokens (only on a loopback control port)`;
  }
  return undefined;
}

/** The line as typed, for a message: a client secret shown as the file option that should hold it. */
function typedLine(rest: string[], secretTokens: Set<number>): string {
  return rest
    .map((w, at) => (!secretTokens.has(at) ? shellWord(w) : secretTokens.has(at - 1) ? '' : '--client-secret-file=FILE'))
    .filter((w) => w !== '')
    .join(' ');
}

/** A word as a shell shows it: quoted when it holds anything but plain characters. */
function shellWord(word: string): string {
  if (/^[\w@%+=:,./-]+$/.test(word)) return word;
  // Control characters as bash's $'...' spells them: the message stays one line.
  if (/[\u0000-\u001f\u007f]/.test(word)) return `$'${JSON.stringify(word).slice(1, -1).replace(/'/g, "\\'")}'`;
  return `'${word.replace(/'/g, "'\\''")}'`;
}

/** `--name=value`, `--name`, `-t`, `-tValue`, with the reference's underscores as dashes; undefined for a value. */
function parseToken(token: string): { name: string; inline?: string } | undefined {
  if (token.startsWith('--')) {
    const eq = token.indexOf('=');
    const name = (eq < 0 ? token : token.slice(0, eq)).replace(/_/g, '-');
    return { name, inline: eq < 0 ? undefined : token.slice(eq + 1) };
  }
  if (/^-t./.test(token)) return { name: '-t', inline: token.slice(2).replace(/^=/, '') };
  if (token.startsWith('-') && token.length > 1 && !/^-[0-9]/.test(token)) return { name: token };
  return undefined;
}

function track(seen: Seen, name: string, inline: string | undefined, next: string | undefined): void {
  switch (name) {
    case '--listener-ip':
      seen.listenerIp = true;
      break;
    case '--config':
      seen.config = true;
      break;
    case '--tls-cert':
      seen.tlsCert = true;
      break;
    case '--tls-key':
      seen.tlsKey = true;
      break;
    case '--insecure':
      seen.insecure = true;
      break;
    case '--auth':
    case '--issuer':
    case '--jwks-url':
      seen.auth = true;
      break;
    case '--introspection-url':
      seen.introspectionUrl = true;
      break;
    case '--scope':
      seen.scope = true;
      break;
    case '--client-id':
      seen.clientId = inline ?? next;
      break;
    case '--client-secret-file':
      seen.secretFile = true;
      break;
  }
}

function typeNotice(type: string): string {
  const stunnel = type.toLowerCase().startsWith('stunnel');
  return (
    `--type ${type}: accepted and ignored: this s2cs runs no ${type}; its built-in data server (s2ds) forwards every stream. ` +
    'A stream set up by our s2uc request (two gateways) gets a TLS 1.3 WAN leg with per-stream certificates that each gateway pins; ' +
    "the single-gateway flows (request1, inbound-request, outbound-request), the reference's clients and reference gateways send no credentials, " +
    `so those streams' WAN leg is plain TCP${stunnel ? " (the reference's stunnel would encrypt it)" : ''}, accepted only with --allow-plaintext-data or data listeners on loopback`
  );
}

/**
 * The reference checks tokens by introspection at Globus Auth as the confidential client
 * --client-id/--client-secret, requiring scope https://auth.globus.org/scopes/<client id>/scistream.
 * The same, unless the command line names a provider, or a configuration file may.
 */
function authDefaults(seen: Seen, reference: boolean): { args: string[]; notice: string } | undefined {
  const clientId = seen.clientId?.trim();
  if (!clientId || seen.introspectionUrl || seen.auth || seen.config || !(reference || seen.secretOnCommandLine)) return undefined;
  const scope = globusScope(clientId);
  return {
    args: ['--introspection-url', GLOBUS_INTROSPECTION_URL, ...(seen.scope ? [] : ['--scope', scope])],
    notice: `--client-id: callers' tokens are checked by introspection at ${GLOBUS_INTROSPECTION_URL} (Globus Auth, as the reference does)${seen.scope ? '' : ` and must carry scope ${scope}`}; give --introspection-url and --scope for another provider`,
  };
}

/**
 * The reference reads ./server.crt and ./server.key for its control-channel TLS. When both are
 * in the working directory they are used; otherwise s2cs keeps its own self-signed certificate
 * (TLS still). One of the two given: the other is the reference's default file.
 */
function referenceCertificate(seen: Seen, cwd: string): { args: string[]; notice: string } {
  const crt = resolve(cwd, REFERENCE_CERT);
  const key = resolve(cwd, REFERENCE_KEY);
  if (seen.tlsCert && seen.tlsKey) return { args: [], notice: '' };
  if (seen.tlsCert || seen.tlsKey) {
    const [flag, file] = seen.tlsCert ? ['--tls-key', key] : ['--tls-cert', crt];
    return { args: [flag, file], notice: `${flag} ${file}: the reference's default file for the one of --server_crt/--server_key not given` };
  }
  if (existsSync(crt) && existsSync(key)) {
    return { args: ['--tls-cert', crt, '--tls-key', key], notice: `control channel TLS with ${crt} and ${key} from the working directory, as the reference reads them (ours: --tls-cert FILE --tls-key FILE)` };
  }
  return {
    args: [],
    notice: `no ./${REFERENCE_CERT} and ./${REFERENCE_KEY} here (the reference's default files): the control channel is TLS with s2cs's own self-signed certificate, tls/cert.pem in --state-dir (default $SCISTREAM_HOME/s2cs, ~/.scistream/s2cs); give that file to clients (our s2uc --server-cert FILE, the reference's s2uc --server_cert=FILE), or pass --server_crt/--server_key`,
  };
}
