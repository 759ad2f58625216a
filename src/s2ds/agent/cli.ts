// s2ds: the data-server agent on a gateway node, driven by s2cs over the agent link.
import { Command, Option } from 'commander';
import * as grpc from '@grpc/grpc-js';
import { LOG_FORMATS, createLogger, resolveLogFormat, type LogFormat } from '../../log.js';
import { ACCESS_LOG_FLAG, openAccessLog, type AccessLog } from '../access-log.js';
import { EXIT, UsageError, VERSION, addExamples, integer, onShutdown, option, runCli } from '../../cli.js';
import { DATA_DEFAULTS } from '../local.js';
import { sparesUnavailable } from '../local-spares.js';
import { WAN_DEAD_AFTER_FLAG, addAdmissionOptions, addUdpOptions, canBind, checkDataPlaneFlags, udpOptionsOf, type UdpFlags } from '../flags.js';
import { admissionOptionsOf, type AdmissionFlags } from '../admission.js';
import { parseSize } from '../../units.js';
import { agentStateDir, certificateBundle, loadAgentTls } from '../../security/agent-tls.js';
import type { AgentListen } from '../../security/agent-tls.js';
import { existingServerTls, type ServerTls } from '../../security/control-tls.js';
import { lingerUnavailable } from '../../transport/linger.js';
import { loadCertificateBundle } from '../../security/pem-files.js';
import { stateDirUnwritable } from '../../security/state-dir.js';
import { nofileWarning } from '../../limits/nofile.js';
import { AGENT_WAIT_TIMEOUT_MS, parseListen, startAgent } from './server.js';
import type { PortRange } from '../ports.js';
import { addCommandOption, copyOptions, effectiveSettings, formatSettings, unreadableFile, withConfigFile } from '../../config-file.js';

interface StartFlags extends AdmissionFlags, UdpFlags {
  config?: string;
  listen: string;
  listenerIp: string;
  portRange: string;
  bindIp?: string;
  bufferSize: number;
  stateDir?: string;
  name?: string;
  tlsCert?: string;
  tlsKey?: string;
  s2csCert?: string;
  maxConnsPerListener: number;
  maxWaitingConns: number;
  maxBufferMemory: number;
  waitTimeout: number;
  orphanTimeout: number;
  wanDeadAfter: number;
  accessLog?: string;
  verbose?: boolean;
  logJson?: boolean;
  logFormat: LogFormat;
}

const program = new Command('s2ds')
  .description('SciStream data-server agent: opens the data listeners of a gateway node and forwards streams, driven by s2cs over an authenticated link')
  .version(VERSION, '-V, --version');

// The admission flags (s2ds/flags.ts) follow the other data-plane bounds.
const start: Command = addAdmissionOptions(program
  .command('start')
  .description('serve the agent link (scistream.s2ds.Agent, proto/s2ds.proto) and forward streams')
  .requiredOption('--listen <addr>', 'where s2cs reaches this agent: host:port (TCP, mutual TLS) or unix:/path (Unix socket, mode 0600)')
  .requiredOption('--listener-ip <ip>', 'IP of this node that peers connect to; advertised in listeners')
  .requiredOption('--port-range <first-last>', 'ports the data listeners are taken from')
  .option('--bind-ip <ip>', 'address the data listeners bind to (default: --listener-ip; 0.0.0.0 for all)')
  .addOption(new Option('--buffer-size <size>', 'buffer per connection and direction, e.g. 4MiB').argParser(option(parseSize)).default(4 * 1024 * 1024, '4MiB'))
  .option('--state-dir <dir>', 'where the agent keeps its self-signed certificate (default: $SCISTREAM_HOME/s2ds, ~/.scistream/s2ds)')
  .option('--name <name>', 'name reported to s2cs (default: host name and --listen)')
  .option('--tls-cert <file>', 'TCP: PEM certificate the agent presents (with --tls-key; default: self-signed, made once in --state-dir)')
  .option('--tls-key <file>', 'TCP: PEM private key of --tls-cert')
  .option('--s2cs-cert <file>', 'TCP: PEM bundle of the s2cs certificates (or the CA that issued them) allowed to drive this agent; required with a TCP --listen')
  .option('--max-conns-per-listener <n>', 'connections forwarding at once on one data listener (authenticated, or matched to their target); more are refused', option(integer(1, 65_536)), DATA_DEFAULTS.maxConnsPerListener)
  .option('--max-waiting-conns <n>', "connections per stream that may wait for the stream's targets; more are refused", option(integer(1, 65_536)), DATA_DEFAULTS.waitLimit)
  .addOption(
    new Option('--max-buffer-memory <size>', 'buffer memory all data connections may hold together; beyond it new connections are refused')
      .argParser(option(parseSize))
      .default(DATA_DEFAULTS.maxBufferMemory, '1GiB'),
  )
  .option('--wait-timeout <seconds>', 'how long a connection that arrived before its targets waits for them', option(integer(1, 86_400)), AGENT_WAIT_TIMEOUT_MS / 1000)
  .option(
    '--orphan-timeout <seconds>',
    'drop every stream (connections reset, ports freed) when no s2cs has called this agent for this long (s2cs polls each second); 0: never, so streams outlive a crashed s2cs',
    option(integer(0, 31_536_000)),
    0,
  )
  .option(WAN_DEAD_AFTER_FLAG.flags, WAN_DEAD_AFTER_FLAG.help, option(integer(WAN_DEAD_AFTER_FLAG.min, WAN_DEAD_AFTER_FLAG.max)), WAN_DEAD_AFTER_FLAG.default))
  .option(ACCESS_LOG_FLAG.flags, ACCESS_LOG_FLAG.help)
  .option('-v, --verbose', 'debug logs')
  .addOption(new Option('--log-json', 'logs as JSON lines (same as --log-format json)').conflicts('logFormat'))
  .addOption(new Option('--log-format <format>', 'auto: readable on a terminal, one JSON object per line otherwise (a file, a pipe, journald); pretty or json forces one').choices(LOG_FORMATS).default('auto'))
  .action(async (flags: StartFlags) => {
    const logger = createLogger({ verbose: flags.verbose, json: flags.logJson, format: flags.logFormat, name: 's2ds' });
    grpc.setLogger({ error: (...args: unknown[]) => logger.debug({ grpc: args.join(' ') }, 'grpc-js') });
    const usage = (message: string): never => {
      process.stderr.write(`s2ds: error: ${message}\n`);
      process.exit(EXIT.usage);
    };
    let checked: CheckedAgentFlags;
    try {
      checked = await checkAgentFlags(flags, { probe: true });
    } catch (err) {
      return usage((err as Error).message);
    }
    const { listen, bindIp, portRange } = checked;
    const startup = await agentStartupCheck(flags, checked, { dryRun: false });
    for (const warning of startup.warnings) logger.warn(warning);
    if (startup.problem) usage(startup.problem);
    const tls = startup.tls;
    let accessLog: AccessLog;
    try {
      accessLog = openAccessLog(flags.accessLog, resolveLogFormat({ json: flags.logJson, format: flags.logFormat }), logger);
    } catch (err) {
      return usage((err as Error).message);
    }
    let agent;
    try {
      agent = await startAgent({
        listen,
        listenerIp: flags.listenerIp,
        bindIp,
        portRange,
        bufferSize: flags.bufferSize,
        name: flags.name,
        tls,
        maxConnsPerListener: flags.maxConnsPerListener,
        maxWaitingConns: flags.maxWaitingConns,
        maxBufferMemory: flags.maxBufferMemory,
        waitTimeoutMs: flags.waitTimeout * 1000,
        orphanTimeoutMs: flags.orphanTimeout * 1000,
        ...admissionOptionsOf(flags),
        wanDeadAfterMs: flags.wanDeadAfter * 1000,
        ...udpOptionsOf(flags),
        accessLog,
        logger,
      });
    } catch (err) {
      return usage(`cannot serve the agent link on ${flags.listen}: ${(err as Error).message}`);
    }
    if (tls) {
      if (tls.server.created) logger.info({ file: tls.server.created }, 'made a self-signed certificate for the agent link');
      logger.info({ fingerprint: tls.server.fingerprint }, `agent link TLS certificate SHA-256 fingerprint: ${tls.server.fingerprint}`);
    }
    const noLinger = lingerUnavailable();
    if (noLinger) logger.warn(noLinger);
    if (flags.accessLog !== undefined) logger.info({ accessLog: flags.accessLog }, `access log: one line per data connection at its end, in ${flags.accessLog}; SIGHUP reopens it`);
    const noSpares = sparesUnavailable();
    if (noSpares) logger.info(noSpares);
    // SIGHUP's default would end the agent and every stream it carries (a service manager's reload, a closed terminal).
    // It reopens the access log (logrotate renamed it), and only that.
    process.on('SIGHUP', () => {
      if (flags.accessLog !== undefined) {
        accessLog.reopen();
        logger.info({ accessLog: flags.accessLog }, `SIGHUP: reopened the access log ${flags.accessLog}; nothing else is reloaded`);
      } else logger.warn('SIGHUP: s2ds reloads nothing (its settings apply at start); it goes on forwarding. To apply a changed --config, restart it: the streams it carries then end');
    });
    // SIGUSR2 restarts s2cs for an upgrade; a service manager that signals the whole unit must not end the workers with it.
    process.on('SIGUSR2', () => logger.info('SIGUSR2: ignored by s2ds (it tells s2cs to exit for an upgrade); forwarding goes on'));
    onShutdown(async (signal) => {
      logger.info({ signal, streams: agent.service.size }, 'shutting down: releasing every stream');
      await agent.close();
      accessLog.close();
      logger.info('stopped');
    });
    logger.info(
      { listen: agent.address, agent: agent.name, listenerIp: flags.listenerIp, portRange: flags.portRange, version: VERSION },
      `s2ds ready: agent link on ${agent.address} (${tls ? 'mutual TLS' : 'Unix socket, mode 0600'}), data listeners on ${bindIp} ports ${flags.portRange}`,
    );
  });
addUdpOptions(start);

interface CheckedAgentFlags {
  listen: AgentListen;
  bindIp: string;
  portRange: PortRange;
  stateDir: string;
}

/** The checks start makes before it opens anything (shared with check-config); throws UsageError. */
async function checkAgentFlags(flags: StartFlags, opts: { probe: boolean }): Promise<CheckedAgentFlags> {
  let listen: AgentListen;
  try {
    listen = parseListen(flags.listen);
  } catch (err) {
    throw new UsageError(`--listen: ${(err as Error).message}`);
  }
  const bindIp = flags.bindIp ?? flags.listenerIp;
  const checked = await checkDataPlaneFlags({ portRange: flags.portRange, bufferSize: flags.bufferSize, maxBufferMemory: flags.maxBufferMemory, bindIp }, opts);
  if ('problem' in checked) throw new UsageError(checked.problem);
  if (listen.kind === 'unix') {
    if (flags.tlsCert || flags.tlsKey || flags.s2csCert) {
      throw new UsageError('--tls-cert, --tls-key and --s2cs-cert apply to a TCP --listen address; a Unix socket is protected by its file mode (0600) and carries no TLS');
    }
  } else if (!flags.s2csCert) {
    throw new UsageError(
      `--listen ${flags.listen} is a TCP address, which needs --s2cs-cert FILE: the agent accepts only the s2cs certificates (or CA) listed there (mutual TLS), ` +
        'so that nobody else can open listeners or read stream credentials; for an agent on the same machine as s2cs, use --listen unix:PATH',
    );
  }
  return { listen, bindIp, portRange: checked.portRange, stateDir: flags.stateDir ?? agentStateDir() };
}

/** What start-up finds after the flags: the first problem (start's exit line), warnings, and the agent link's TLS. */
interface AgentStartupCheck {
  problem?: string;
  warnings: string[];
  /** TCP --listen: the agent's certificate (with dryRun, only one that already exists) and the s2cs it trusts. */
  tls?: { server: ServerTls; s2csCerts: string };
}

/**
 * Every check start makes after the flags and before it serves, in start's order, so that
 * check-config exits with the same first problem: the --s2cs-cert bundle, the state dir, a
 * TCP --listen address of this host and free (a probe bind closed at once), the agent's
 * certificate and key, the open-files limit. `dryRun`: make no state dir or certificate.
 */
async function agentStartupCheck(flags: StartFlags, checked: CheckedAgentFlags, opts: { dryRun: boolean }): Promise<AgentStartupCheck> {
  const { listen, portRange, stateDir } = checked;
  const warnings: string[] = [];
  const nofile = nofileWarning({ ports: portRange.last - portRange.first + 1, processes: 1, maxConn: 0, maxConnsPerListener: flags.maxConnsPerListener, maxBufferMemory: flags.maxBufferMemory, bufferSize: flags.bufferSize, pendingConns: flags.maxPendingConns });
  if (nofile) warnings.push(nofile);
  if (listen.kind !== 'tcp') return { warnings };
  let s2csCerts: string;
  try {
    s2csCerts = loadCertificateBundle(flags.s2csCert!, `--s2cs-cert ${flags.s2csCert}`, "give the certificates of the s2cs allowed to drive this agent (each s2cs's --tls-cert, or tls/cert.pem in its state dir) or the CA that issued them, PEM");
    for (const subject of certificateBundle(s2csCerts, `--s2cs-cert ${flags.s2csCert}`).notSelfSigned) {
      warnings.push(
        `--s2cs-cert holds a certificate that is not self-signed (${subject}): clients are trusted through it only when the file also holds its issuers up to a self-signed root CA, and then every certificate that CA issued is accepted`,
      );
    }
  } catch (err) {
    return { problem: (err as NodeJS.ErrnoException).code ? `--s2cs-cert: cannot read ${flags.s2csCert} (${(err as NodeJS.ErrnoException).code})` : (err as Error).message, warnings };
  }
  if (!flags.tlsCert) {
    const unwritable = stateDirUnwritable(stateDir, { create: !opts.dryRun });
    if (unwritable) return { problem: unwritable, warnings };
  }
  const bound = await canBind(listen.host, listen.port);
  if (bound === 'EADDRINUSE') return { problem: `--listen ${flags.listen} is in use by another program; stop it or choose another port`, warnings };
  if (bound) return { problem: `cannot serve the agent link on ${flags.listen} (${bound}); give an address of this host with --listen`, warnings };
  const files = { certFile: flags.tlsCert, keyFile: flags.tlsKey, stateDir, names: [flags.listenerIp, listen.host].filter((n) => n !== '0.0.0.0' && n !== '::') };
  let server: ServerTls | undefined;
  try {
    server = opts.dryRun ? existingServerTls(files) : await loadAgentTls(files);
  } catch (err) {
    return { problem: `agent link TLS: ${(err as Error).message}`, warnings };
  }
  warnings.push(...(server?.warnings ?? []));
  return { warnings, tls: server ? { server, s2csCerts } : undefined };
}

withConfigFile(start);

// Same options as start (the same Option objects), checked the same way (addresses and ports
// by a probe bind closed at once, files read); nothing stays open, nothing is made or started.
const checkConfig = copyOptions(start, program.command('check-config'))
  .description('check the settings start would run with (the --config file, then the flags given here) as start checks them (addresses of this host, free ports, readable files, certificates that match their keys) and print each with where it came from; exit 0 when valid, 2 with the problem start would give when not')
  .action(async (flags: StartFlags & { json?: boolean }) => {
    const fail = (message: string): never => {
      process.stderr.write(`s2ds: error: ${message}\n`);
      process.exit(EXIT.usage);
    };
    let checked: CheckedAgentFlags;
    try {
      checked = await checkAgentFlags(flags, { probe: true });
    } catch (err) {
      // --json: a program reads the problem from stdout too (the settings as given; nothing follows from them yet).
      if (flags.json) process.stdout.write(`${JSON.stringify({ valid: false, config: flags.config ?? null, problem: (err as Error).message, warnings: [], settings: effectiveSettings(checkConfig) }, null, 2)}\n`);
      return fail((err as Error).message);
    }
    const startup = await agentStartupCheck(flags, checked, { dryRun: true });
    // Start's own message first; then any file start would not read yet.
    const problem = startup.problem ?? unreadableFile(checkConfig, flags as unknown as Record<string, unknown>);
    const { warnings } = startup;
    const settings = effectiveSettings(checkConfig);
    const derived = {
      'bind-ip': { value: checked.bindIp, from: 'listener-ip' },
      'state-dir': { value: checked.stateDir, from: '$SCISTREAM_HOME/s2ds' },
    };
    if (flags.json) {
      const shown = settings.map((s) => (s.source === 'unset' && s.key in derived ? { ...s, ...derived[s.key as keyof typeof derived], source: 'default' } : s));
      process.stdout.write(`${JSON.stringify({ valid: !problem, config: flags.config ?? null, ...(problem ? { problem } : {}), warnings, settings: shown }, null, 2)}\n`);
    } else {
      for (const warning of warnings) process.stderr.write(`s2ds: warning: ${warning}\n`);
      if (!problem) {
        process.stdout.write(`# s2ds ${VERSION}: effective configuration${flags.config ? ` from ${flags.config} and the flags` : ' from the flags'}; valid${warnings.length ? ` (${warnings.length} warning${warnings.length > 1 ? 's' : ''})` : ''}\n`);
        process.stdout.write(formatSettings(settings, derived));
      }
    }
    if (problem) fail(problem);
  });
addCommandOption(checkConfig, new Option('--json', 'print the settings as JSON'));
withConfigFile(checkConfig);

addExamples(program, {
  '': ['s2ds start --listen unix:$HOME/.scistream/s2ds/agent.sock --listener-ip 127.0.0.1 --port-range 5100-5200'],
  'check-config': ['s2ds check-config --config /etc/scistream/s2ds.toml'],
  start: [
    's2ds start --config /etc/scistream/s2ds.toml    # settings from a file (examples/s2ds.toml); flags given override it',
    's2ds start --listen unix:$HOME/.scistream/s2ds/agent.sock --listener-ip 127.0.0.1 --port-range 5100-5200    # next to s2cs',
    's2ds start --listen 10.0.0.12:5050 --listener-ip 198.51.100.8 --port-range 5100-5200 --s2cs-cert /etc/scistream/s2cs-cert.pem    # a second gateway node; self-signed certificate',
    's2ds start --listen 10.0.0.12:5050 --listener-ip 198.51.100.8 --port-range 5100-5200 --s2cs-cert /etc/scistream/ca.pem --tls-cert /etc/scistream/s2ds.pem --tls-key /etc/scistream/s2ds.key',
  ],
});

await runCli(program);
