// s2uc: the user's client. Output for humans by default; --json for scripts
// (one JSON object on stdout, except request: one per line, the uid first and the
// result last; progress and errors go to stderr).
import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { EXIT, UsageError, VERSION, addExamples, integer, option, runCli } from '../cli.js';
import { parseAddress, parseAddressList, formatAddress } from '../protocol/address.js';
import type { ConnectionOptions } from '../protocol/client.js';
import type { ConnectionMap, FlowOptions, SideResult, StreamSpec } from './flows.js';
import { validateAllowList } from '../protocol/cidr.js';
import type { UserAuth } from './auth/login.js';
import type { ClientConfig } from './auth/config.js';
import { addAuthCommands } from './auth/commands.js';
import type { Role } from '../protocol/validate.js';
import { formatBitRate, parseDuration, parseRate } from '../units.js';
import { ControlSecretStore } from './control-secrets.js';
import { StreamGateways } from './stream-gateways.js';
import { MOCK_UID, REFERENCE_RECEIVER_PORTS, mockedUid, parseClickBool, receiverAddresses, scopeString } from './reference.js';

// What a command does not use is not loaded: `s2uc --help` starts without gRPC, the
// protocol, TLS or OIDC code; each command imports what it calls when it runs.
const flows = () => import('./flows.js');

interface GlobalFlags {
  insecure?: boolean;
  allowPlaintextData?: boolean;
  serverCert?: string;
  clientCert?: string;
  clientKey?: string;
  timeout: number;
  verbose?: boolean;
}

interface SpecFlags {
  numConn: number;
  rate: number;
  lifetime?: number;
  uid?: string;
  json?: boolean;
  appSecretFile?: string;
  allowFrom: string[];
  listenerPorts?: number[];
  wanAllowFrom?: string[];
  wanListenerPorts?: number[];
  protocol: 'tcp' | 'udp';
}

/** A number of seconds from `min` to `max`, fractions allowed (--interval 0.5). */
const seconds = (min: number, max: number) => (text: string): number => {
  const n = Number(text);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(text.trim()) || n < min || n > max) throw new Error(`"${text}" is not a number of seconds from ${min} to ${max}`);
  return n;
};

const address = (field: string) => option((t: string) => formatAddress(parseAddress(t, field)));
const addressList = (field: string) => option((t: string) => parseAddressList(t, field).map(formatAddress));

const program = new Command('s2uc')
  .description('SciStream user client: sets up streams between facilities through their gateways')
  .version(VERSION, '-V, --version')
  .option('--insecure', 'plain-text control channel (only with an s2cs started with --insecure)')
  .option('--client-cert <file>', 'PEM certificate to present to an s2cs that requires one (--client-ca)')
  .option('--client-key <file>', 'PEM private key of --client-cert')
  .option('--server-cert <file>', "CA bundle or the servers' own certificates (PEM) to verify s2cs with; default: pin on first use")
  .option('--timeout <seconds>', 'deadline for each call that does not wait for an application', option(integer(1, 3600)), 30)
  .option('--allow-plaintext-data', "accept a plain-TCP WAN leg when a gateway cannot take per-stream credentials (the Python reference's s2cs); without it such a request is refused before anything is reserved")
  .option('-v, --verbose', 'stack traces on errors');

let warnedInsecure = false;
let secretStore: ControlSecretStore | undefined;
const secrets = (): ControlSecretStore => (secretStore ??= ControlSecretStore.forUser());
let gatewayRecord: StreamGateways | undefined;
/** Where each stream this user set up lives, beside the control secrets. */
const homes = (): StreamGateways => (gatewayRecord ??= StreamGateways.inHome(dirname(secrets().dir)));
/** The control secrets this process proposed, by uid and gateway (for the first line of request --json). */
const proposed = new Map<string, string>();

/** Forgets that `uid` lives at `server`; a record that cannot be updated only costs a needless release later. */
function forgetHome(uid: string, server: string): void {
  try {
    homes().forget(uid, server);
  } catch {
    // unreadable or not ours: s2uc release says so when it reads it
  }
}
let clientConfig: Promise<ClientConfig> | undefined;
let userAuth: Promise<UserAuth> | undefined;

const loadConfig = () => (clientConfig ??= import('./auth/config.js').then((m) => m.loadClientConfig()));
/** Scopes given with --scope (the reference's spelling), by the gateway they are for. */
const scopeByServer = new Map<string, string>();

/** `--scope X` on a request: the token for scope X is sent to that gateway, whatever config.toml says. */
async function useScope(server: string, scope: string | undefined): Promise<void> {
  if (scope === undefined || scope.trim() === '') return;
  const s = scopeString(scope, (await loadConfig()).auth.issuer);
  if (s !== scope.trim()) process.stderr.write(`s2uc: note: --scope ${scope} taken as ${s} (the scope the reference asked Globus Auth for)\n`);
  scopeByServer.set(server, s);
}

/** The token for a server from tokens.json, by its --scope or the scope config.toml names for it (none named: none sent). */
async function tokenFor(server: string): Promise<string | undefined> {
  const config = await loadConfig();
  const given = scopeByServer.get(server);
  // No scope for this server: no token, and no need to load the OIDC client (about 40 ms).
  if (given === undefined && config.scopeFor(server) === undefined) return undefined;
  const auth = await (userAuth ??= import('./auth/login.js').then((m) => m.UserAuth.open({ config })));
  return given !== undefined ? auth.tokenForScope(given, `s2cs ${server}`) : auth.getToken(server);
}

function connection(): ConnectionOptions {
  const g = program.opts<GlobalFlags>();
  if (g.insecure && !warnedInsecure) {
    warnedInsecure = true;
    process.stderr.write('s2uc: warning: --insecure: the control channel is plain text; anyone on the path can read and forge it\n');
  }
  return {
    insecure: g.insecure ?? false,
    deadlineMs: g.timeout * 1000,
    tokenFor,
    tls: { serverCert: g.serverCert, clientCert: g.clientCert, clientKey: g.clientKey, warn: (m) => process.stderr.write(`s2uc: warning: ${m}\n`) },
    // Control secrets are kept per gateway and uid, so that a later s2uc release or status
    // (another process) proves the stream is this user's; forgotten once released.
    onControlSecret: (uid, secret, server) => {
      proposed.set(`${uid} ${server}`, secret);
      try {
        secrets().save(uid, server, secret);
      } catch (err) {
        process.stderr.write(`s2uc: warning: could not keep the control secret of ${uid} at ${server} (${(err as Error).message}): release it with --control-secret ${secret}\n`);
      }
    },
    controlSecretFor: (server, uid) => secrets().read(uid, server),
    controlSecretsFor: (server, uid) => (uid ? [secrets().read(uid, server) ?? ''].filter(Boolean) : secrets().allFor(server)),
    onReleased: (uid, server) => {
      secrets().remove(uid, server);
      forgetHome(uid, server);
    },
  };
}

/** The s2app hello command line that sends the Hello this flow waits for. */
function helloCommand(uid: string, server: string, role: Role, appSecret: string, appSecretFile?: string): string {
  const g = program.opts<GlobalFlags>();
  // The secret itself stays out of stderr (often logged): stdout or the file has it.
  const secret = !appSecret ? '' : appSecretFile !== undefined ? ` --app-secret-file ${appSecretFile}` : ' --app-secret SECRET (the app secret printed for this gateway)';
  const listeners = role === 'PROD' ? ' --listeners HOST:PORT[,...]' : '';
  return `s2app hello${g.insecure ? ' --insecure' : ''} --uid ${uid} --s2cs ${server} --role ${role}${listeners}${secret}`;
}

/**
 * The first line of request --json: the uid, its gateways, and the secrets known once
 * both gateways took the req, so that a script can start the Hello while s2uc waits.
 * Printed once, at the latest just before the result.
 */
class FirstLine {
  private uid = '';
  private readonly appSecrets = new Map<string, string>();
  private printed = false;

  constructor(private readonly prodS2cs: string, private readonly consS2cs: string) {}

  uidChosen(uid: string): void {
    this.uid = uid;
  }

  appSecret(secret: string, server: string, role: Role): void {
    this.appSecrets.set(`${role} ${server}`, secret);
    if (this.appSecrets.has(`PROD ${this.prodS2cs}`) && this.appSecrets.has(`CONS ${this.consS2cs}`)) this.print();
  }

  print(): void {
    if (this.printed || !this.uid) return;
    this.printed = true;
    const uid = this.uid;
    const line: Record<string, string> = { uid, prodS2cs: this.prodS2cs, consS2cs: this.consS2cs };
    const prodControl = proposed.get(`${uid} ${this.prodS2cs}`);
    const consControl = proposed.get(`${uid} ${this.consS2cs}`);
    if (prodControl) line.prodControlSecret = prodControl;
    if (consControl) line.consControlSecret = consControl;
    const prodApp = this.appSecrets.get(`PROD ${this.prodS2cs}`);
    const consApp = this.appSecrets.get(`CONS ${this.consS2cs}`);
    if (prodApp) line.prodAppSecret = prodApp;
    if (consApp) line.consAppSecret = consApp;
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
}

function flow(f: SpecFlags, servers: string[], secretRole: Role, first?: FirstLine): FlowOptions {
  const json = f.json;
  let hinted = false;
  return {
    ...connection(),
    allowPlaintextData: program.opts<GlobalFlags>().allowPlaintextData ?? false,
    onWarning: (warning) => process.stderr.write(`s2uc: warning: ${warning}\n`),
    // Printed as soon as issued: the application controller needs it before the
    // producer-side req can be answered.
    onAppSecret: (secret, server, role) => {
      if (secret && !json) process.stdout.write(`app secret for the ${role} Hello at ${server}: ${secret}\n`);
      if (f.appSecretFile !== undefined && role === secretRole) writeSecret(f.appSecretFile, secret);
      first?.appSecret(secret, server, role);
    },
    // Said once, on stderr: without it a user sees s2uc wait and nothing happen.
    onAwaitHello: (uid, server, role, appSecret) => {
      if (hinted) return;
      hinted = true;
      const who = role === 'PROD' ? "producer's" : "consumer's";
      process.stderr.write(`s2uc: waiting for the ${who} Hello at ${server}; its application controller sends it with: ${helloCommand(uid, server, role, appSecret, role === secretRole ? f.appSecretFile : undefined)}\n`);
    },
    // The uid goes first so the user can start the application controllers while we wait.
    onUid: (uid) => {
      if (!json) process.stdout.write(`uid: ${uid}\n`);
      first?.uidChosen(uid);
      // Before any req: a request interrupted or killed from now on is still releasable by its uid alone.
      try {
        homes().record(uid, servers);
      } catch (err) {
        process.stderr.write(`s2uc: warning: could not record where ${uid} is set up (${(err as Error).message}): release it with s2uc release ${uid} ${servers.map((s) => `--s2cs ${s}`).join(' ')}\n`);
      }
      releaseOnInterrupt(uid, servers);
    },
    onStep: (step) => {
      if (!json && process.stderr.isTTY) process.stderr.write(`... ${step}\n`);
    },
  };
}

/** The environment variable with the control secrets of `s2uc release` (workflow engines), as --control-secret. */
const CONTROL_SECRET_ENV = 'SCISTREAM_CONTROL_SECRET';

/** Writes the secret readable by the owner only, atomically, so that a reader never sees half of it. */
function writeSecret(file: string, secret: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, secret ? `${secret}\n` : '', { mode: 0o600 });
  renameSync(tmp, file);
}

/**
 * Ctrl-C, SIGTERM, or the terminal closing (SIGHUP) while a request is being set up
 * releases what it reserved instead of leaving it until the Hello timeout.
 */
function releaseOnInterrupt(uid: string, servers: string[]): void {
  const handler = (signal: NodeJS.Signals) => {
    interrupted = true;
    // After SIGHUP the terminal may be gone: a failed write to it must not stop the release.
    process.stderr.on('error', () => undefined);
    process.stderr.write(`s2uc: ${signal}: releasing ${uid} on ${servers.join(', ')}\n`);
    flows().then((f) => f.releaseStream(uid, servers, { ...connection(), deadlineMs: 5000 })).then(
      () => process.exit(EXIT.interrupted),
      (err: Error) => {
        process.stderr.write(`s2uc: error: ${err.message}\n`);
        process.exit(EXIT.interrupted);
      },
    );
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.once(s, handler);
  disarm = () => {
    for (const s of signals) process.off(s, handler);
  };
}

/** Once the stream is set up, Ctrl-C no longer releases it. */
let disarm = (): void => {};
/** A signal came while the request was being set up: its release decides how s2uc ends. */
let interrupted = false;

async function settled<T>(setup: Promise<T>): Promise<T> {
  try {
    return await setup;
  } catch (err) {
    // The setup fails because the interrupt released its stream: that release exits (130), not this error (1).
    if (interrupted) await new Promise<never>(() => undefined);
    throw err;
  } finally {
    disarm();
  }
}

/** --lifetime: a duration of at least a second that Request.lifetime_s (uint32) can carry. */
function lifetime(text: string): number {
  const s = parseDuration(text);
  if (s < 1 || s > 2 ** 32 - 1) throw new Error(`--lifetime ${text}: give at least 1 s (and at most about 136 years), e.g. 90s, 30m, 2h`);
  return s;
}

/** The stream's spec from the flags; `uid` as given. */
function specOf(f: SpecFlags, uid = f.uid): StreamSpec {
  const ports = (flag: string, list: number[] | undefined): number[] | undefined => {
    if (list && list.length !== f.numConn) throw new UsageError(`${flag} names ${list.length} port(s) but --num-conn is ${f.numConn}: give one port per connection`);
    return list;
  };
  return {
    numConn: f.numConn,
    rate: f.rate,
    uid,
    ...(f.lifetime ? { lifetimeS: f.lifetime } : {}),
    ...(f.allowFrom.length > 0 ? { allowFrom: f.allowFrom } : {}),
    ...(f.listenerPorts ? { listenerPorts: ports('--listener-ports', f.listenerPorts) } : {}),
    ...(f.wanAllowFrom && f.wanAllowFrom.length > 0 ? { wanAllowFrom: f.wanAllowFrom } : {}),
    ...(f.wanListenerPorts ? { wanListenerPorts: ports('--wan-listener-ports', f.wanListenerPorts) } : {}),
    ...(f.protocol === 'udp' ? { protocol: 'udp' as const } : {}),
  };
}

/** --allow-from: CIDR blocks or addresses, comma-separated, repeatable; checked as the gateway will. */
const cidrList = (flag: string) => (text: string, prev: string[] = []): string[] => {
  const list = [...prev, ...text.split(',').map((s) => s.trim()).filter((s) => s.length > 0)];
  try {
    return validateAllowList(list, flag);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};

/** --listener-ports: ports, comma-separated, in listener order. */
const portList = (flag: string) => (text: string): number[] =>
  text.split(',').map((s) => {
    const n = Number(s.trim());
    if (!/^[0-9]{1,5}$/.test(s.trim()) || n < 1 || n > 65535) throw new InvalidArgumentError(`${flag}: "${s.trim()}" is not a port (1-65535); write e.g. 5100,5101`);
    return n;
  });

/** The two-gateway request's options for the producer gateway's WAN listeners. */
function wanOptions(cmd: Command): Command {
  return cmd
    .option('--wan-allow-from <cidrs>', "who may connect to the producer gateway's WAN listeners: the consumer gateway's address(es) as the producer gateway sees them (after any NAT), comma-separated CIDR blocks or addresses; default: anyone the gateway's --data-allow-from admits (the stream's credentials still guard the leg)", cidrList('--wan-allow-from'), [] as string[])
    .option('--wan-listener-ports <ports>', "ports for the producer gateway's WAN listeners, one per connection (e.g. 5100,5101): granted if free, else the request fails naming the port", portList('--wan-listener-ports'));
}

function specOptions(cmd: Command, json = 'print one JSON object on stdout'): Command {
  return cmd
    .option('--num-conn <n>', 'number of connections (listeners) for the stream', option(integer(1, 4096)), 5)
    .option('--rate <rate>', "the stream's rate: kB/s as a plain number (1 kB = 1,000 bytes), or with a unit: 200Mbit/s, 1Gbit/s, 25MB/s; gateways with --rate-policy cap or reserve hold the stream to it (default: 0, none stated)", option(parseRate), 0)
    .option('--lifetime <duration>', 'how long the stream may live, from its request: seconds, or e.g. 90s, 30m, 2h; then the gateways release it (each may bound it with --max-stream-lifetime; default: until released, or idle for their --idle-stream-timeout)', option(lifetime))
    .option('--allow-from <cidrs>', "who may connect to the stream's listeners (the consumer gateway's, in a two-gateway request): CIDR blocks or addresses, comma-separated, repeatable, IPv4 or IPv6; others are refused with a reset (default: anyone the gateway's --data-allow-from admits)", cidrList('--allow-from'), [] as string[])
    .option('--listener-ports <ports>', "the ports to listen on, one per connection, comma-separated (e.g. 5100,5101), within the gateway's --port-range; granted if free, else the request fails naming the port held (default: the gateway picks)", portList('--listener-ports'))
    .addOption(
      new Option('--protocol <protocol>', "the stream's transport: tcp, or udp (datagrams, a flow per sender; between two gateways inside the stream's TLS connections, or plain UDP with --allow-plaintext-data)")
        .choices(['tcp', 'udp'])
        .default('tcp'),
    )
    .option('--uid <uid>', 'stream uid (default: a new UUID)')
    .option('--json', json);
}

interface ReferenceFlags {
  mock?: boolean;
  scope?: string;
}

/** The reference's `--scope` (and, where it takes it, `--mock`) on a single-gateway request. */
function referenceOptions(cmd: Command, mock: boolean): Command {
  cmd.option('--scope <scope>', "send the token for this scope (from s2uc login --scope) to the gateway instead of config.toml's; a Globus resource server id means its .../scistream scope, as in the reference");
  if (mock) cmd.option('--mock <bool>', `the reference's spelling: True uses the fixed uid ${MOCK_UID} (prefer --uid)`, option(parseClickBool));
  return cmd;
}

const note = (line: string) => process.stderr.write(`${line}\n`);

/** For flows whose application controller sends Hello: scripts read the secret from a file while s2uc waits. */
function secretFileOption(cmd: Command): Command {
  return cmd.option(
    '--app-secret-file <file>',
    "write the application secret for the application controller's Hello to this file (mode 600) as soon as the gateway issues it (empty when the gateway checks no tokens)",
  );
}

/** The stated rate and which gateways hold the stream to it (their --rate-policy). */
function describeRate(map: ConnectionMap): string {
  const holds = (policy: string) => policy === 'cap' || policy === 'reserve';
  const prod = holds(map.ratePolicies.prod);
  const cons = holds(map.ratePolicies.cons);
  const by = prod && cons ? 'held to it by both gateways' : prod ? 'held to it by the producer gateway only' : cons ? 'held to it by the consumer gateway only' : 'stored only: neither gateway enforces rates (--rate-policy none)';
  return `${formatBitRate(map.rate * 1000)} (${map.rate} kB/s), ${by}`;
}

/**
 * What is known of the WAN leg. With a reference gateway on either side its own data
 * server decides (HAProxy: plain TCP; stunnel: a pair that carries nothing unless both
 * are such gateways), and nothing it answers tells which: so no more than that is said.
 */
function describeWan(map: ConnectionMap): string {
  if (map.wan === 'tls') return "TLS with the stream's own credentials";
  const refs = map.referenceGateways ?? [];
  if (refs.length === 0) return 'not encrypted by SciStream (--allow-plaintext-data)';
  return `not encrypted by SciStream (--allow-plaintext-data; ${refs.join(' and ')} ${refs.length > 1 ? 'are reference gateways: their' : 'is a reference gateway: its'} own data server decides what the leg speaks)`;
}

function printSide(r: SideResult, json: boolean | undefined, what: string): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  process.stdout.write(`gateway ${r.s2cs}: ${what}\n`);
  r.listeners.forEach((l, i) => process.stdout.write(`  ${l} -> ${r.targets[i % r.targets.length]}\n`));
  process.stdout.write(`listeners: ${r.listeners.join(',')}\n`);
  if (r.lifetimeS) process.stdout.write(`lifetime: ${r.lifetimeS} s from the request; then the gateway releases the stream\n`);
}

secretFileOption(wanOptions(specOptions(
  program
    .command('request')
    .description('set up a stream from a producer facility to a consumer facility (REQ, Hello, UpdateTargets)')
    .requiredOption('--prod-s2cs <host:port>', "producer facility's s2cs", address('--prod-s2cs'))
    .requiredOption('--cons-s2cs <host:port>', "consumer facility's s2cs", address('--cons-s2cs')),
  'print one JSON object per line on stdout: the uid (its gateways and secrets) as soon as both gateways took the req, the result last',
))).action(async (f: SpecFlags & { prodS2cs: string; consS2cs: string }) => {
  const { requestStream } = await flows();
  const first = f.json ? new FirstLine(f.prodS2cs, f.consS2cs) : undefined;
  const map = await settled(requestStream(f.prodS2cs, f.consS2cs, specOf(f), flow(f, [f.prodS2cs, f.consS2cs], 'PROD', first)));
  if (first) {
    first.print();
    process.stdout.write(`${JSON.stringify(map)}\n`);
    return;
  }
  if (map.prodControlSecret || map.consControlSecret) process.stdout.write(`control secrets (for s2uc release and status) kept in ${join(secrets().dir, map.uid)}\n`);
  process.stdout.write('connection map (consumer -> consumer gateway -> WAN -> producer gateway -> producer):\n');
  map.consListeners.forEach((c, i) => {
    const wan = map.prodListeners[i]!;
    const app = map.prodAppListeners[i % map.prodAppListeners.length]!;
    process.stdout.write(`  ${c} -> ${wan} -> ${app}\n`);
  });
  process.stdout.write(`producer gateway listeners: ${map.prodListeners.join(',')}\n`);
  process.stdout.write(`WAN leg: ${describeWan(map)}\n`);
  if (map.rate > 0) process.stdout.write(`rate: ${describeRate(map)}\n`);
  if (map.lifetimeS) process.stdout.write(`lifetime: ${map.lifetimeS} s from the request; then both gateways release the stream (s2uc status shows the time left)\n`);
  process.stdout.write(`consumer connects to: ${map.consListeners.join(',')}\n`);
  process.stdout.write(`to release it: ${releaseCommand(map.uid, [map.prodS2cs, map.consS2cs])}\n`);
});

/** The release command for a stream: by its uid alone when s2uc recorded where it lives. */
function releaseCommand(uid: string, servers: string[]): string {
  let recorded: string[] | undefined;
  try {
    recorded = homes().gateways(uid);
  } catch {
    recorded = undefined;
  }
  const all = recorded !== undefined && servers.every((s) => recorded.includes(s));
  const g = program.opts<GlobalFlags>();
  return `s2uc${g.insecure ? ' --insecure' : ''} release ${uid}${all ? '' : servers.map((s) => ` --s2cs ${s}`).join('')}`;
}

referenceOptions(specOptions(
  program
    .command('inbound-request')
    .description('expose services inside this facility on its gateway (S2UC sends the Hello itself)')
    .option('--s2cs <host:port>', "the facility's s2cs", address('--s2cs'), 'localhost:5000')
    .option('--targets <host:port,...>', 'services to expose, e.g. 10.0.0.5:5074,10.0.0.5:5075', addressList('--targets'))
    .option('--remote-ip <ip>', 'host of the services (reference spelling, with --receiver-ports; default localhost)')
    .option('--receiver-ports <port,...>', `ports of the services on --remote-ip (default, as the reference: ${REFERENCE_RECEIVER_PORTS})`),
), true).action(async (f: SpecFlags & ReferenceFlags & { s2cs: string; targets?: string[]; remoteIp?: string; receiverPorts?: string }) => {
  if (f.targets && (f.remoteIp || f.receiverPorts)) throw new UsageError('give the services once: --targets host:port[,...], or --remote-ip IP --receiver-ports P[,...]');
  // Either half of the reference's pair brings its other half's default, as in the reference.
  const targets = f.targets ?? (f.remoteIp || f.receiverPorts ? receiverAddresses(f.remoteIp ?? 'localhost', f.receiverPorts ?? REFERENCE_RECEIVER_PORTS) : undefined);
  if (!targets) throw new UsageError(`say which services to expose: --targets host:port[,...] or --remote_ip IP --receiver_ports P[,...] (the reference's defaults: --remote_ip localhost --receiver_ports ${REFERENCE_RECEIVER_PORTS})`);
  const spec = specOf(f, mockedUid(f.mock, f.uid, note));
  await useScope(f.s2cs, f.scope);
  const { inboundRequest } = await flows();
  printSide(await settled(inboundRequest(f.s2cs, targets, spec, flow(f, [f.s2cs], 'PROD'))), f.json, 'inbound listeners -> services');
});

referenceOptions(secretFileOption(specOptions(
  program
    .command('outbound-request')
    .description('let applications in this facility reach remote listeners through its gateway')
    .argument('[uid]', "the stream's uid (the reference's spelling; same as --uid)")
    .argument('[remote-listeners]', "listeners to reach (the reference's spelling; same as --remote-listeners)")
    .requiredOption('--s2cs <host:port>', "the facility's s2cs", address('--s2cs'))
    .option('--remote-listeners <host:port,...>', 'listeners to reach, e.g. the producer gateway WAN listeners', addressList('--remote-listeners'))
    .option('--remote-ip <ip>', "the reference's stand-in Hello address: accepted, not needed (s2uc completes the request itself)")
    .option('--receiver-ports <port,...>', 'with --remote-ip: accepted, not needed'),
)), false).action(async (uid: string | undefined, listeners: string | undefined, f: SpecFlags & ReferenceFlags & { s2cs: string; remoteListeners?: string[]; remoteIp?: string; receiverPorts?: string }) => {
  if (uid !== undefined && f.uid !== undefined && uid !== f.uid) throw new UsageError(`the uid is given twice, as ${uid} and as --uid ${f.uid}; give it once`);
  const remote = listeners !== undefined ? parseAddressList(listeners, 'remote listeners').map(formatAddress) : f.remoteListeners;
  if (!remote) throw new UsageError('say which listeners to reach: --remote-listeners host:port[,...] (or, as the reference: outbound-request UID HOST:PORT[,...])');
  if (f.remoteIp !== undefined || f.receiverPorts !== undefined) {
    // The reference sent them in a PROD Hello of its own only to let its CONS req return;
    // the data goes to the listeners named here either way. Checked, so that a typo is still an error.
    receiverAddresses(f.remoteIp ?? 'localhost', f.receiverPorts ?? REFERENCE_RECEIVER_PORTS);
    note(`s2uc: note: --remote_ip/--receiver_ports not needed: the reference sent them in a stand-in Hello that only let its request return; the gateway forwards to ${remote.join(',')}`);
  }
  const spec = specOf(f, uid ?? f.uid);
  await useScope(f.s2cs, f.scope);
  const { outboundRequest } = await flows();
  printSide(await settled(outboundRequest(f.s2cs, remote, spec, flow(f, [f.s2cs], 'CONS'))), f.json, 'outbound listeners -> remote listeners');
});

referenceOptions(secretFileOption(specOptions(
  program
    .command('request1')
    .alias('prod-req')
    .description("the seed tutorial's single-gateway flow: REQ, wait for the producer's Hello, UpdateTargets")
    .option('--s2cs <host:port>', "the producer facility's s2cs", address('--s2cs'), 'localhost:5000'),
)), true).action(async (f: SpecFlags & ReferenceFlags & { s2cs: string }) => {
  const spec = specOf(f, mockedUid(f.mock, f.uid, note));
  await useScope(f.s2cs, f.scope);
  const { request1 } = await flows();
  printSide(await settled(request1(f.s2cs, spec, flow(f, [f.s2cs], 'PROD'))), f.json, 'listeners -> producer');
});

program
  .command('release')
  .description('release a stream on one or more gateways (safe to repeat)')
  .argument('<uid>', 'the stream uid printed by s2uc request')
  .option('--s2cs <host:port>', 's2cs to release on; repeat for each gateway (default: every gateway s2uc set the stream up on, as recorded under $SCISTREAM_HOME/streams; without a record: localhost:5000, as in the seed tutorial)', (v: string, prev: string[] = []) => [...prev, address('--s2cs')(v)])
  .option('--control-secret <secret,...>', `the stream's control secret at each --s2cs, in the same order (default: ${CONTROL_SECRET_ENV}, else what s2uc request kept under $SCISTREAM_HOME/control-secrets)`)
  .option('--json', 'print one JSON object on stdout')
  .action(async (uid: string, f: { s2cs?: string[]; json?: boolean; controlSecret?: string }) => {
    const servers = f.s2cs ?? recordedHomes(uid);
    const given = f.controlSecret ?? process.env[CONTROL_SECRET_ENV];
    const explicit = given === undefined ? [] : given.split(',').map((s) => s.trim());
    if (given !== undefined && explicit.length !== servers.length) {
      const from = f.controlSecret !== undefined ? '--control-secret' : CONTROL_SECRET_ENV;
      throw new UsageError(`${from} gives ${explicit.length} secret(s) for ${servers.length} gateway(s); give one per --s2cs, comma-separated, in the same order`);
    }
    const base = connection();
    const secretFor = (server: string, u: string) => explicit[servers.indexOf(server)] || base.controlSecretFor?.(server, u);
    await (await flows()).releaseStream(uid, servers, { ...base, controlSecretFor: secretFor });
    // A gateway that no longer knew the uid (the reference's answer) released nothing, but holds nothing either.
    for (const s of servers) forgetHome(uid, s);
    if (f.json) process.stdout.write(`${JSON.stringify({ uid, released: servers })}\n`);
    else if (f.s2cs) process.stdout.write(`Release completed: ${uid} on ${servers.join(', ')}\n`);
    // By the record: one line per gateway, so that the user sees where the stream was.
    else for (const s of servers) process.stdout.write(`Release completed: ${uid} on ${s}\n`);
  });

/** The gateways recorded for `uid`; without a record, the seed tutorial's default, saying so. */
function recordedHomes(uid: string): string[] {
  const known = homes().gateways(uid);
  if (known) return known;
  process.stderr.write(`s2uc: no record of where ${uid} was set up (${homes().path(uid)}): releasing on localhost:5000 only; name each gateway with --s2cs\n`);
  return ['localhost:5000'];
}

program
  .command('status')
  .description("show gateways' streams: state, age, listeners -> targets, bytes and rates each way, connections, refusals")
  .argument('[uid]', 'one stream (default: all)')
  .option('--s2cs <host:port>', 's2cs to ask; repeat for several gateways (asked in parallel, shown in this order; default: localhost:5000)', (v: string, prev: string[] = []) => [...prev, address('--s2cs')(v)])
  .option('--json', 'print one JSON object on stdout: {"gateways":[...]} (with --watch: one line per sample)')
  .option('--watch', 'ask again every --interval until Ctrl-C: redrawn in place on a terminal, one block per sample otherwise; adds the rates between samples')
  .option('--interval <seconds>', 'seconds between samples with --watch', option(seconds(0.5, 3600)), 2)
  .action(async (uid: string | undefined, f: { s2cs?: string[]; json?: boolean; watch?: boolean; interval: number }, cmd: Command) => {
    const servers = f.s2cs ?? ['localhost:5000'];
    if (!f.watch) {
      if (cmd.getOptionValueSource('interval') === 'cli') throw new UsageError('--interval goes with --watch: s2uc status --watch --interval SECONDS');
      const { statusCommand } = await import('./status.js');
      // Exit once the output is written: a connection attempt to a gateway that drops packets would keep the process alive for minutes.
      const code = await statusCommand(servers, uid, connection(), { json: f.json });
      await new Promise<void>((resolve) => process.stdout.write('', () => process.stderr.write('', () => resolve())));
      process.exit(code);
    }
    const { watchStatus } = await import('./watch.js');
    // Ctrl-C, SIGTERM, a closed terminal or a reader that went away (| head) end the watch: exit 0.
    const stop = new AbortController();
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(s, () => stop.abort());
    process.stdout.on('error', () => stop.abort());
    const tty = process.stdout.isTTY === true && !f.json;
    const code = await watchStatus(servers, uid, connection(), {
      intervalS: f.interval,
      json: f.json,
      tty,
      rows: () => process.stdout.rows,
      columns: () => process.stdout.columns,
      out: process.stdout,
      err: process.stderr,
      signal: stop.signal,
    });
    // At once: a sample still under way (a gateway that does not answer) is of no use now.
    // stdout and stderr are synchronous on Linux terminals and pipes: nothing written is lost.
    process.exit(code);
  });

addAuthCommands(program);

// --help examples, by command name (kept apart from the definitions above). Gateways:
// gw-a (producer facility) and gw-b (consumer facility), control port 5000 as in s2cs --help.
const UID = '4f0c1b5e-6a57-4c4e-9d3e-2b7f5c1a9e10';
addExamples(program, {
  '': [
    's2uc request --prod-s2cs gw-a.example.org:5000 --cons-s2cs gw-b.example.org:5000 --num-conn 4',
    's2uc status --s2cs gw-a.example.org:5000',
    's2uc --insecure status --s2cs 127.0.0.1:5000    # an s2cs started with --insecure',
  ],
  request: [
    's2uc request --prod-s2cs gw-a.example.org:5000 --cons-s2cs gw-b.example.org:5000 --num-conn 4',
    's2uc --server-cert gateways.pem request --prod-s2cs gw-a.example.org:5000 --cons-s2cs gw-b.example.org:5000 --num-conn 4 --app-secret-file prod.secret --json',
    's2uc request --prod-s2cs gw-a.example.org:5000 --cons-s2cs gw-b.example.org:5000 --lifetime 2h    # both gateways release it two hours after the request',
  ],
  'inbound-request': [
    's2uc inbound-request --s2cs gw-a.example.org:5000 --targets 10.0.0.5:5074,10.0.0.5:5075 --num-conn 2',
    's2uc inbound-request --s2cs gw-a.example.org:5000 --remote_ip 10.0.0.5 --receiver_ports 5074,5075 --num_conn 2    # reference spelling',
  ],
  'outbound-request': [
    's2uc outbound-request --s2cs gw-b.example.org:5000 --remote-listeners 198.51.100.7:5100,198.51.100.7:5101 --num-conn 2',
    `s2uc outbound-request --s2cs gw-b.example.org:5000 ${UID} 198.51.100.7:5100,198.51.100.7:5101    # reference spelling`,
  ],
  request1: [
    's2uc request1 --s2cs localhost:5000 --num-conn 2    # then: s2app hello --role PROD with the uid it prints',
    's2uc request1 --s2cs gw-a.example.org:5000 --num-conn 4 --app-secret-file prod.secret',
  ],
  release: [
    `s2uc release ${UID}    # on every gateway s2uc set it up on`,
    `s2uc release ${UID} --s2cs gw-a.example.org:5000 --s2cs gw-b.example.org:5000`,
  ],
  status: [
    's2uc status --s2cs gw-a.example.org:5000',
    's2uc status --s2cs gw-a.example.org:5000 --s2cs gw-b.example.org:5000 --watch --interval 1',
    `s2uc status ${UID} --s2cs gw-a.example.org:5000 --json`,
  ],
  login: ['s2uc login', 's2uc login --device'],
  logout: ['s2uc logout'],
  'check-auth': ['s2uc check-auth', 's2uc check-auth --s2cs gw-a.example.org:5000 --json'],
  whoami: ['s2uc whoami', 's2uc whoami --userinfo --json'],
});

// The reference's `s2uc -v` is its version; ours is --verbose, which alone means nothing.
await runCli(program, process.argv.length === 3 && process.argv[2] === '-v' ? [...process.argv.slice(0, 2), '--version'] : process.argv);
