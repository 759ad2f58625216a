// s2cs: the control server on a gateway node.
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import * as grpc from '@grpc/grpc-js';
import { LOG_FORMATS, createLogger, resolveLogFormat } from '../log.js';
import { EXIT, VERSION, addExamples, integer, onShutdown, option, runCli } from '../cli.js';
import { DATA_DEFAULTS } from '../s2ds/index.js';
import { WAN_DEAD_AFTER_FLAG, addAdmissionOptions, addUdpOptions, udpOptionsOf } from '../s2ds/flags.js';
import { ACCESS_LOG_FLAG, openAccessLog } from '../s2ds/access-log.js';
import { admissionOptionsOf } from '../s2ds/admission.js';
import { parseDuration, parseRate, parseSize } from '../units.js';
import { BROKEN_GRACE_MS, RATE_POLICIES } from './streams/index.js';
import { startControlServer } from './server.js';
import { DEFAULTS } from './server-settings.js';
import { CONTROL_PORT_DEFAULTS } from './control-port.js';
import { CONTROL_ADMISSION_DEFAULTS } from './control-admission.js';
import { join, resolve } from 'node:path';
import { serverCredentials } from '../security/control-tls.js';
import { AUTH_MODES, INTROSPECTION_CLIENT_AUTH, createAuthenticator, type Authenticator } from '../auth/index.js';
import { lingerUnavailable } from '../transport/linger.js';
import { RemoteAgent } from '../s2ds/remote.js';
import type { AgentClientTls } from '../security/agent-tls.js';
import { addCommandOption, allowTableArray, copyOptions, effectiveSettings, formatSettings, unreadableFile, withConfigFile } from '../config-file.js';
import { checkStartFlags, derivedSettings, reloadConfig, type Running, type StartFlags, type StartPlan } from './config.js';
import { startMonitor, type Monitor } from './monitor.js';
import { formatAddress } from '../protocol/address.js';
import { isLoopback } from './streams/index.js';
import { startupCheck } from './startup-checks.js';
import { translateReferenceArgs, type Notice } from './reference-flags.js';

// The reference's spellings (reference-flags.ts): what they mean here, said once at start.
const reference = translateReferenceArgs(process.argv.slice(2));
const sayNotices = (say: (n: Notice) => void) => reference.notices.forEach(say);

const program = new Command('s2cs')
  .description("SciStream control server: reserves gateway ports for streams and drives the data server (S2DS) that forwards them. Options without a command are s2cs start, as the reference's s2cs is typed (its --type, --server_crt/--server_key, --ssl=False, --client-id/--client-secret too: README, \"The reference's spellings\")")
  .version(VERSION, '-V, --version');

// The admission flags (s2ds/flags.ts) follow the other data-plane bounds.
const start: Command = addAdmissionOptions(program
  .command('start')
  .description('serve the control protocol (req, hello, update, release) and forward streams')
  .option('--port <port>', 'control port (gRPC)', option(integer(0, 65535)), 5000)
  .requiredOption('--listener-ip <ip>', 'IP of this gateway that peers connect to; advertised in listeners')
  .option('--bind-ip <ip>', 'address the data listeners bind to (default: --listener-ip; 0.0.0.0 for all)')
  .option('--control-host <ip>', `address the control port binds to (default: 127.0.0.1 when --listener-ip is loopback, else ${DEFAULTS.host}, which needs --auth)`)
  .option('--port-range <first-last>', 'ports the data listeners are taken from', '5100-5200')
  .option('--hello-timeout <seconds>', "how long a producer request waits for the application's Hello", option(integer(1, 86_400)), DEFAULTS.helloTimeoutMs / 1000)
  .option('--max-conn <n>', 'most connections one stream may ask for', option(integer(1, 4096)), DEFAULTS.maxConn)
  // Leases and limits (issue 9): what one abandoned setup or one user may hold.
  .option('--setup-timeout <seconds>', `release a stream that has no UpdateTargets this long after its request (default: ${DEFAULTS.setupTimeoutMs / 1000}, or --hello-timeout when longer; never below it)`, option(integer(1, 86_400)))
  .option('--idle-stream-timeout <duration>', 'release a stream that has had no connection this long, counted from its connection map or from the end of its last connection: seconds, or e.g. 30m, 2h; 0: never', option(parseDuration), DEFAULTS.idleStreamTimeoutMs / 1000)
  .option('--broken-grace <duration>', 'release a broken stream (its connections ended abnormally: reset, error, dead peer; none open) this long after its last connection ended, so that an application that reconnects at once is not cut off; 0: never (status still shows it broken), for applications that end their connections with resets', option(parseDuration), BROKEN_GRACE_MS / 1000)
  .option('--max-stream-lifetime <duration>', 'release every stream this long after its request at the latest, whatever lifetime it asked for (s2uc --lifetime): seconds, or e.g. 12h, 7d (default: no bound)', option(parseDuration))
  .option('--max-ports-per-user <n>', 'ports one identity may hold at once across its streams; with --auth none, one caller address (default: half the port range, at least --max-conn)', option(integer(1, 65_536)))
  .option('--max-pending-hellos <n>', 'producer Hellos held before their request, from all addresses; consumer Hellos waiting for theirs: a tenth', option(integer(1, 1_000_000)), DEFAULTS.maxPendingHellos)
  .option('--max-pending-hellos-per-peer <n>', 'the same from one address (IPv6: one /64); consumer Hellos: a tenth', option(integer(1, 1_000_000)), DEFAULTS.maxPendingHellosPerPeer)
  .addOption(
    new Option('--buffer-size <size>', 'buffer per connection and direction, e.g. 4MiB')
      .argParser(option(parseSize))
      .default(DEFAULTS.bufferSize, '4MiB'),
  )
  // Data-plane bounds (README, "Limits and protections"): beyond each, new connections are refused (reset), never buffered.
  .option('--max-conns-per-listener <n>', 'connections forwarding at once on one data listener (authenticated, or matched to their target); more are refused', option(integer(1, 65_536)), DATA_DEFAULTS.maxConnsPerListener)
  .option('--max-waiting-conns <n>', "connections per stream that may wait for the stream's connection map (UpdateTargets); more are refused", option(integer(1, 65_536)), DATA_DEFAULTS.waitLimit)
  .addOption(
    new Option('--max-buffer-memory <size>', 'buffer memory all data connections may hold together (each reserves its worst case once authenticated or matched to its target: at 4MiB --buffer-size, 2.25 MiB plain to plain up to 8.5 MiB from TLS; 64 KiB before); beyond it new connections are refused')
      .argParser(option(parseSize))
      .default(DATA_DEFAULTS.maxBufferMemory, '1GiB'),
  ))
  .option(WAN_DEAD_AFTER_FLAG.flags, WAN_DEAD_AFTER_FLAG.help, option(integer(WAN_DEAD_AFTER_FLAG.min, WAN_DEAD_AFTER_FLAG.max)), WAN_DEAD_AFTER_FLAG.default)
  // Stream rates (issue 13): Request.rate is kB/s.
  .addOption(
    new Option('--rate-policy <policy>', "what a stream's stated rate means here: none (stored and reported, as the reference does), cap (each stream held to its rate, each direction, all its connections together), reserve (cap, and a request admitted only while the streams' rates fit in --capacity; one stating no rate is refused)")
      .choices(RATE_POLICIES)
      .default('none'),
  )
  .option('--capacity <rate>', 'with --rate-policy reserve: what this gateway can carry, e.g. 10Gbit/s or 1250MB/s (a plain number: kB/s)', option((v: string) => parseRate(v) * 1000))
  .option('--allow-plaintext-data', 'accept streams without per-stream credentials (single-gateway flows, reference gateways and clients) on any address: their WAN leg is unencrypted. Without it they are accepted only when the data listeners are on loopback (--bind-ip 127.x or ::1)')
  .option('--tls-cert <file>', 'PEM certificate for the control channel (with --tls-key)')
  .option('--tls-key <file>', 'PEM private key of --tls-cert')
  .option('--client-ca <file>', 'require client certificates issued by this CA bundle (mutual TLS)')
  .option('--state-dir <dir>', 'where s2cs keeps its self-signed certificate (default: $SCISTREAM_HOME/s2cs, ~/.scistream/s2cs)')
  .option('--insecure', 'plain-text control channel (no TLS); clients must pass --insecure too')
  .addOption(new Option('--auth <mode>', 'how callers are identified: introspect (RFC 7662, e.g. Globus Auth), jwt, or none (default when no provider is configured)').choices(AUTH_MODES))
  .option('--introspection-url <url>', 'introspect: the token introspection endpoint, e.g. https://auth.globus.org/v2/oauth2/token/introspect')
  .option('--client-id <id>', "introspect: this gateway's client id at the provider")
  .option('--client-secret-file <file>', `introspect: file (mode 600) holding the client secret; default: the environment variable S2CS_CLIENT_SECRET`)
  .addOption(new Option('--introspection-auth <method>', 'introspect: how the client id and secret are sent: basic (HTTP Basic, escaping only % and + and trying them both ways; default) or post (in the form body, client_secret_post)').choices(INTROSPECTION_CLIENT_AUTH))
  .option('--scope <scope>', "the scope every caller's token must carry")
  .option('--issuer <url>', 'jwt: the token issuer; its keys come from OpenID Connect discovery unless --jwks-url')
  .option('--audience <aud>', 'jwt: the audience tokens for this gateway carry (introspect: checked when given)')
  .option('--jwks-url <url>', "jwt: the issuer's key set (JWKS) URL")
  .option('--hello-accepts-owner-token', "with --auth introspect or jwt: accept on Hello, in place of the stream's application secret, the token of the user who requested the stream (the reference's application controllers send it); hands that token to the application hosts")
  .option('--data-allow-from <cidrs>', 'sources (CIDR blocks or addresses, comma-separated; repeat for more) that may connect to any data listener: every stream\'s own allow-list (s2uc --allow-from) is narrowed to them; others are reset at once and counted (refusal allow-list). Reloadable (SIGHUP): applies to streams requested after (default: anyone)', (v: string, prev: string[]) => [...prev, ...v.split(',').map((s) => s.trim()).filter((s) => s.length > 0)], [] as string[])
  .option('--admin <sub>', 'an identity (token subject) that may see and release every stream; repeat for more', (v: string, prev: string[]) => [...prev, v], [] as string[])
  // Data-server agents (issue 11): local worker processes, or agents on gateway nodes.
  .option('--workers <n>', 'local data-server agents (s2ds processes) to run and supervise, each with an even slice of --port-range; 0: forward inside the s2cs process (default: the number of CPU cores)', option(integer(0, 1024)))
  .option('--s2ds <addr>', 'a data-server agent to drive, e.g. on another gateway node: host:port (mutual TLS, see --s2ds-cert) or unix:/path; repeat for more (local workers then only with --workers)', (v: string, prev: string[]) => [...prev, v], [] as string[])
  .option('--s2ds-cert <file>', "PEM bundle of the --s2ds agents' certificates, or the CA that issued them (TCP agents); s2cs presents its control-channel certificate to them")
  // Control-port connections (control-port.ts).
  .option('--idle-timeout <seconds>', 'close a control connection that has had no call in flight for this long; clients reconnect by themselves', option(integer(1, 86_400)), CONTROL_PORT_DEFAULTS.idleTimeoutMs / 1000)
  .option('--handshake-timeout <seconds>', 'close a control connection that has not finished its TLS handshake, or not answered an HTTP/2 PING, within this time', option(integer(1, 300)), CONTROL_PORT_DEFAULTS.handshakeTimeoutMs / 1000)
  // Control-port admission (control-admission.ts): checked at accept, before TLS; more are reset and counted.
  .option('--max-control-conns-per-source <n>', 'control connections one address (IPv6: one /64) may hold open at once; more are reset', option(integer(1, 1_000_000)), CONTROL_ADMISSION_DEFAULTS.maxConnsPerSource)
  .option('--max-control-handshakes-per-source <n>', 'control connections of one address (IPv6: one /64) in their TLS handshake at once; more are reset', option(integer(1, 1_000_000)), CONTROL_ADMISSION_DEFAULTS.maxHandshakesPerSource)
  .option('--max-control-conns <n>', 'control connections open at once from all addresses; more are reset', option(integer(1, 1_000_000)), CONTROL_ADMISSION_DEFAULTS.maxConns)
  // Monitoring (monitor.ts): off unless asked for.
  .option('--metrics-listen <host:port>', 'serve /metrics (Prometheus), /healthz and the live status page (/) over HTTP at this address, e.g. 127.0.0.1:9464 or [::1]:9464 (it shows every stream: see --metrics-public)')
  .option('--metrics-public', 'allow --metrics-listen on an address that is not loopback, knowing that whoever reaches it sees every stream, owner and address')
  .option(ACCESS_LOG_FLAG.flags, ACCESS_LOG_FLAG.help)
  .option('-v, --verbose', 'debug logs')
  .addOption(new Option('--log-json', 'logs as JSON lines (same as --log-format json)').conflicts('logFormat'))
  .addOption(new Option('--log-format <format>', 'auto: readable on a terminal, one JSON object per line otherwise (a file, a pipe, journald); pretty or json forces one').choices(LOG_FORMATS).default('auto'))
  .action(async (flags: StartFlags) => {
    const logger = createLogger({ verbose: flags.verbose, json: flags.logJson, format: flags.logFormat, name: 's2cs' });
    sayNotices((n) => logger[n.level](n.text));
    // grpc-js prints its own lines to stderr; route them into our log at debug level.
    grpc.setLogger({ error: (...args: unknown[]) => logger.debug({ grpc: args.join(' ') }, 'grpc-js') });
    const usage = (message: string): never => {
      process.stderr.write(`s2cs: error: ${message}\n`);
      process.exit(EXIT.usage);
    };
    // Until the server runs there is nothing to reload; SIGHUP must not end s2cs (its default action).
    let onHangup = () => logger.info('SIGHUP during start-up: ignored; send it again once s2cs is ready');
    process.on('SIGHUP', () => onHangup());
    let plan: StartPlan;
    try {
      plan = await checkStartFlags(flags, { logger, probe: true });
    } catch (err) {
      return usage((err as Error).message);
    }
    const { bindIp, controlHost, portRange, setupTimeout, maxPortsPerUser, workers, stateDir } = plan;
    // Broken state (state dir, certificates, ports taken) ends start-up here, not at the first handshake.
    const checked = await startupCheck(flags, plan, { dryRun: false });
    for (const warning of checked.warnings) logger.warn(warning);
    if (checked.problem) usage(checked.problem);
    const tls = checked.tls;
    // Each data server writes its own connections' lines: the in-process one here, each worker to the same file (O_APPEND).
    const logFormat = resolveLogFormat({ json: flags.logJson, format: flags.logFormat });
    const accessLogFile = flags.accessLog === undefined ? undefined : resolve(flags.accessLog);
    let accessLog;
    try {
      accessLog = workers === 0 ? openAccessLog(accessLogFile, logFormat, logger) : undefined;
      // Workers open it themselves: one that cannot would exit at each restart; say so here, once.
      if (workers > 0 && accessLogFile !== undefined) openAccessLog(accessLogFile, logFormat, logger).close();
    } catch (err) {
      return usage((err as Error).message);
    }
    let auth: Authenticator;
    try {
      auth = createAuthenticator(plan.authConfig);
    } catch (err) {
      return usage((err as Error).message);
    }
    let agents: RemoteAgent[] | undefined;
    if (flags.s2ds.length > 0) {
      const tcp = flags.s2ds.filter((a) => !a.startsWith('unix:'));
      let agentTls: AgentClientTls | undefined;
      if (tcp.length > 0) {
        // s2cs authenticates to its agents with its control-channel certificate, made or loaded even with --insecure (startupCheck).
        const own = checked.agentLinkTls!;
        let agentCerts: string;
        try {
          agentCerts = readFileSync(flags.s2dsCert!, 'utf8');
        } catch (err) {
          return usage(`--s2ds-cert ${flags.s2dsCert}: ${(err as Error).message}`);
        }
        agentTls = { agentCerts, clientCert: own.cert, clientKey: own.key };
      }
      try {
        agents = flags.s2ds.map((address) => new RemoteAgent({ address, tls: address.startsWith('unix:') ? undefined : agentTls, logger }));
      } catch (err) {
        return usage(`--s2ds: ${(err as Error).message}`);
      }
    }
    // A stop signal while agents start must not kill s2cs before it can stop them (they would be left running):
    // note it, and stop once the server is up.
    let stopDuringStart: NodeJS.Signals | undefined;
    const noteStop = (signal: NodeJS.Signals) => {
      stopDuringStart = signal;
      logger.info({ signal }, `${signal} during start-up: stopping once the data-server agents have started`);
    };
    process.on('SIGTERM', noteStop);
    process.on('SIGINT', noteStop);
    let server;
    try {
      server = await startControlServer({
        agents,
        // Workers are found again by state dir and control port (an s2cs restarted for an upgrade keeps its --port);
        // with --port 0 no later s2cs can be the same one, so the directory is this run's alone.
        // Workers log to files (auto would mean JSON there): they get the format s2cs writes, so the log s2cs copies them into reads as one.
        workers: workers > 0 ? { count: workers, dir: join(stateDir, flags.port === 0 ? `agents-0-${process.pid}` : `agents-${flags.port}`), removeDirOnStop: flags.port === 0, extraArgs: [...(flags.verbose ? ['--verbose'] : []), '--log-format', logFormat, ...(accessLogFile ? ['--access-log', accessLogFile] : [])], onLog: (chunk) => process.stderr.write(chunk) } : undefined,
        connectAgent: (address, name) => new RemoteAgent({ address, name, logger }),
        host: controlHost,
        port: flags.port,
        listenerIp: flags.listenerIp,
        bindIp,
        portRange,
        helloTimeoutMs: flags.helloTimeout * 1000,
        setupTimeoutMs: setupTimeout * 1000,
        idleStreamTimeoutMs: flags.idleStreamTimeout * 1000,
        maxStreamLifetimeMs: flags.maxStreamLifetime ? flags.maxStreamLifetime * 1000 : undefined,
        brokenGraceMs: flags.brokenGrace * 1000,
        maxPortsPerUser,
        maxPendingHellos: flags.maxPendingHellos,
        maxPendingHellosPerPeer: flags.maxPendingHellosPerPeer,
        maxConn: flags.maxConn,
        bufferSize: flags.bufferSize,
        maxConnsPerListener: flags.maxConnsPerListener,
        maxWaitingConns: flags.maxWaitingConns,
        maxBufferMemory: flags.maxBufferMemory,
        ...admissionOptionsOf(flags),
        wanDeadAfterMs: flags.wanDeadAfter * 1000,
        ...udpOptionsOf(flags),
        accessLog,
        allowPlaintextData: flags.allowPlaintextData ?? false,
        helloAcceptsOwnerToken: flags.helloAcceptsOwnerToken ?? false,
        dataAllowFrom: plan.dataAllowFrom,
        ratePolicy: flags.ratePolicy,
        capacityBps: flags.capacity,
        credentials: serverCredentials(tls, flags.clientCa, flags.handshakeTimeout * 1000),
        controlPort: { idleTimeoutMs: flags.idleTimeout * 1000, handshakeTimeoutMs: flags.handshakeTimeout * 1000 },
        controlAdmission: { maxConnsPerSource: flags.maxControlConnsPerSource, maxHandshakesPerSource: flags.maxControlHandshakesPerSource, maxConns: flags.maxControlConns },
        auth,
        admins: flags.admin,
        logger,
      });
    } catch (err) {
      for (const a of agents ?? []) await a.close();
      return usage((err as Error).message);
    }
    let monitor: Monitor | undefined;
    if (plan.metrics) {
      try {
        monitor = await startMonitor({ host: plan.metrics.host, port: plan.metrics.port, gateway: server, title: `s2cs ${formatAddress({ host: flags.listenerIp, port: server.port })}`, logger: logger.child({ component: 'monitor' }) });
      } catch (err) {
        await server.close();
        return usage(`--metrics-listen ${flags.metricsListen}: ${(err as Error).message}`);
      }
      const at = formatAddress({ host: plan.metrics.host, port: monitor.port });
      logger.info({ metrics: at }, `metrics at http://${at}/metrics, health at /healthz, status page at http://${at}/`);
      if (!isLoopback(plan.metrics.host)) logger.warn({ metrics: at }, `the status page and /metrics on ${at} show every stream, owner and address to whoever reaches that address (plain HTTP): keep it to your management network`);
    }
    for (const a of server.agents()) logger.info({ agent: a.name, address: a.address, up: a.up, listenerIp: a.listenerIp, freePorts: a.freePorts }, `data-server agent ${a.name} at ${a.address}${a.up ? '' : ' (not answering yet)'}`);
    if (auth.mode === 'none') {
      logger.warn('no authentication (--auth none): anyone who reaches the control port can reserve, redirect and release streams; configure a provider with --auth introspect or --auth jwt');
    } else {
      logger.info({ auth: auth.mode, scope: flags.scope, admins: flags.admin.length }, `callers need an access token with scope ${flags.scope} (${auth.mode}); application controllers need the stream's application secret${flags.helloAcceptsOwnerToken ? " or the stream owner's token (--hello-accepts-owner-token)" : ''}`);
    }
    if (!tls) logger.warn('control channel is plain text (--insecure): anyone on the network can read and forge control messages');
    else {
      if (tls.created) logger.info({ file: tls.created }, 'made a self-signed certificate for the control channel');
      logger.info({ fingerprint: tls.fingerprint }, `control channel TLS certificate SHA-256 fingerprint: ${tls.fingerprint}`);
    }
    const noLinger = lingerUnavailable();
    if (noLinger) logger.warn(noLinger);
    if (accessLogFile !== undefined) logger.info({ accessLog: accessLogFile }, `access log: one line per data connection at its end, in ${accessLogFile}${workers > 0 ? ' (written by each worker)' : ''}; SIGHUP reopens it`);
    // Handlers first: whoever waits for the ready line may signal at once.
    // SIGUSR2: exit for a restart (an upgrade) and leave the streams to the agents.
    process.on('SIGUSR2', () => {
      server.detach().then(
        () => {
          logger.info('SIGUSR2: stopped without releasing: the data-server agents go on forwarding every stream; start s2cs again with the same --state-dir and --port to take them back');
          process.exit(EXIT.ok);
        },
        (err: Error) => logger.warn(`SIGUSR2 ignored: ${err.message}`),
      );
    });
    // SIGHUP: read the configuration file again and apply what can change while serving.
    let running: Running = { flags, plan };
    let reloading = Promise.resolve();
    onHangup = () => {
      // logrotate renamed the access log: this process and every worker open it again by its name.
      if (accessLogFile !== undefined) {
        accessLog?.reopen();
        for (const pid of server.supervisor?.pids() ?? []) {
          try {
            process.kill(pid, 'SIGHUP');
          } catch {
            // a worker that just ended: its successor opens the file anew
          }
        }
        logger.info({ accessLog: accessLogFile }, `SIGHUP: reopened the access log ${accessLogFile}`);
      }
      reloading = reloading.then(async () => {
        running = await reloadConfig(start, running, server, logger);
      });
    };
    // The standing tunnels of the file ([[tunnel]]), before the ready line: whoever waits for it finds them up
    // (with none, what a previous s2cs's tunnels left on the agents is released).
    if (flags.config !== undefined) await server.applyTunnels(flags.config, plan.tunnels);
    process.off('SIGTERM', noteStop);
    process.off('SIGINT', noteStop);
    if (stopDuringStart) {
      await server.close();
      await monitor?.close();
      logger.info({ signal: stopDuringStart }, 'stopped');
      process.exit(EXIT.ok);
    }
    onShutdown(async (signal) => {
      logger.info({ signal }, `shutting down: releasing every stream${server.supervisor ? ' and stopping the local workers' : ''}`);
      await server.close();
      accessLog?.close();
      await monitor?.close();
      logger.info('stopped');
    });
    logger.info(
      { control: `${controlHost}:${server.port}`, listenerIp: flags.listenerIp, portRange: flags.portRange, setupTimeout, maxPortsPerUser, version: VERSION },
      `s2cs ready: control on ${controlHost}:${server.port}, data listeners on ${bindIp} ports ${flags.portRange}`,
    );
  });
// The UDP stream flags (a key of the configuration file each, as every option).
addUdpOptions(start);

// Before the configuration file's own check of required options (its hook comes next).
start.hook('preAction', () => {
  if (!reference.lateProblem) return;
  process.stderr.write(`s2cs: error: ${reference.lateProblem}\n`);
  process.exit(EXIT.usage);
});
withConfigFile(start);
allowTableArray(start, 'tunnel');

// Same options as start (the same Option objects), checked the same way (addresses and ports
// by a probe bind closed at once, files read); nothing stays open, nothing is made or started.
const checkConfig = copyOptions(start, program.command('check-config'))
  .description('check the settings start would run with (the --config file, then the flags given here) as start checks them (addresses of this host, free ports, readable files, certificates that match their keys) and print each with where it came from; exit 0 when valid, 2 with the problem start would give when not')
  .action(async (flags: StartFlags & { json?: boolean }) => {
    const silent = createLogger({ silent: true });
    sayNotices((n) => process.stderr.write(`s2cs: ${n.level === 'warn' ? 'warning' : 'notice'}: ${n.text}\n`));
    const fail = (message: string): never => {
      process.stderr.write(`s2cs: error: ${message}\n`);
      process.exit(EXIT.usage);
    };
    let plan: StartPlan;
    try {
      plan = await checkStartFlags(flags, { logger: silent, probe: true });
    } catch (err) {
      // --json: a program reads the problem from stdout too (the settings as given; nothing follows from them yet).
      if (flags.json) process.stdout.write(`${JSON.stringify({ valid: false, config: flags.config ?? null, problem: (err as Error).message, warnings: [], settings: effectiveSettings(checkConfig) }, null, 2)}\n`);
      return fail((err as Error).message);
    }
    const checked = await startupCheck(flags, plan, { dryRun: true });
    // Start's own message first; then any file start would not read yet (e.g. --tls-cert with --insecure).
    const problem = checked.problem ?? unreadableFile(checkConfig, flags as unknown as Record<string, unknown>);
    const { warnings } = checked;
    const settings = effectiveSettings(checkConfig);
    const derived = derivedSettings(flags, plan);
    if (flags.json) {
      const shown = settings.map((s) => (s.source === 'unset' && derived[s.key] ? { ...s, value: derived[s.key]!.value, source: 'default', from: derived[s.key]!.from } : s));
      const tunnels = plan.tunnels.map((t) => ({ ...t, targets: t.targets.map(formatAddress), credentials: undefined, wan: t.credentials ? 'tls' : 'plain' }));
      process.stdout.write(`${JSON.stringify({ valid: !problem, config: flags.config ?? null, ...(problem ? { problem } : {}), warnings, settings: shown, tunnels }, null, 2)}\n`);
    } else {
      for (const warning of warnings) process.stderr.write(`s2cs: warning: ${warning}\n`);
      if (!problem) {
        process.stdout.write(`# s2cs ${VERSION}: effective configuration${flags.config ? ` from ${flags.config} and the flags` : ' from the flags'}; valid${warnings.length ? ` (${warnings.length} warning${warnings.length > 1 ? 's' : ''})` : ''}\n`);
        process.stdout.write(formatSettings(settings, derived));
        for (const t of plan.tunnels) {
          const ports = t.listenerPorts ? ` on ports ${t.listenerPorts.join(',')}` : '';
          process.stdout.write(`# tunnel ${t.name}: ${t.direction}, ${t.numConn} connection(s)${ports} -> ${t.targets.map(formatAddress).join(',')}, WAN leg ${t.credentials ? 'TLS' : 'plain TCP'}${t.allowFrom ? `, from ${t.allowFrom.join(',')}` : ''}\n`);
        }
      }
    }
    if (problem) fail(problem);
  });
addCommandOption(checkConfig, new Option('--json', 'print the settings as JSON'));
withConfigFile(checkConfig);
allowTableArray(checkConfig, 'tunnel');

addExamples(program, {
  '': [
    's2cs start --port 5000 --listener-ip 127.0.0.1 --port-range 5100-5200',
    "s2cs --port=5000 --listener-ip=127.0.0.1 --verbose    # the reference's spelling, without start: the same as s2cs start",
  ],
  'check-config': ['s2cs check-config --config /etc/scistream/s2cs.toml', 's2cs check-config --config /etc/scistream/s2cs.toml --max-conn 128 --json'],
  start: [
    's2cs start --config /etc/scistream/s2cs.toml    # settings from a file (examples/s2cs.toml); flags given override it',
    's2cs start --port 5000 --listener-ip 127.0.0.1 --port-range 5100-5200    # loopback; self-signed TLS certificate',
    's2cs start --port 5000 --listener-ip 198.51.100.7 --port-range 5100-5200 --tls-cert /etc/scistream/cert.pem --tls-key /etc/scistream/key.pem',
    's2cs start --port 5000 --listener-ip 198.51.100.7 --auth jwt --issuer https://idp.example.org --audience gw-a --scope scistream',
    's2cs start --port 5000 --listener-ip 127.0.0.1 --insecure    # plain-text control channel: clients need --insecure too',
    's2cs start --port 5000 --listener-ip 198.51.100.7 --port-range 5100-5299 --workers 4    # four local data-server processes, 50 ports each',
    's2cs start --port 5000 --listener-ip 198.51.100.7 --metrics-listen 127.0.0.1:9464    # Prometheus at /metrics, status page at http://127.0.0.1:9464/',
    's2cs start --port 5000 --listener-ip 198.51.100.7 --s2ds 10.0.0.2:6000 --s2ds 10.0.0.3:6000 --s2ds-cert /etc/scistream/agents.pem    # agents on two gateway nodes',
    's2cs start --port 5000 --listener-ip 198.51.100.7 --idle-stream-timeout 30m --max-stream-lifetime 7d    # let go of streams idle for 30 min, and of every stream after a week',
  ],
});

if (reference.problem) {
  process.stderr.write(`s2cs: error: ${reference.problem}\n`);
  process.exit(EXIT.usage);
}
Object.assign(process.env, reference.env);
await runCli(program, [...process.argv.slice(0, 2), ...reference.args]);
