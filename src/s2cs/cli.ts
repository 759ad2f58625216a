// s2cs: the control server on a gateway node.
import { createServer } from 'node:net';
import { Command, Option } from 'commander';
import * as grpc from '@grpc/grpc-js';
import { createLogger } from '../log.js';
import { EXIT, VERSION, integer, onShutdown, option, runCli } from '../cli.js';
import { parsePortRange } from '../s2ds/index.js';
import { parseSize } from '../units.js';
import { startControlServer, DEFAULTS } from './server.js';
import { join } from 'node:path';
import { loadServerTls, scistreamHome, serverCredentials, type ServerTls } from '../security/control-tls.js';

interface StartFlags {
  port: number;
  listenerIp: string;
  bindIp?: string;
  controlHost: string;
  portRange: string;
  helloTimeout: number;
  maxConn: number;
  bufferSize: number;
  insecure?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  clientCa?: string;
  stateDir?: string;
  allowPlaintextData?: boolean;
  verbose?: boolean;
  logJson?: boolean;
}

const program = new Command('s2cs')
  .description('SciStream control server: reserves gateway ports for streams and drives the data server (S2DS) that forwards them')
  .version(VERSION, '-V, --version');

program
  .command('start')
  .description('serve the control protocol (req, hello, update, release) and forward streams')
  .option('--port <port>', 'control port (gRPC)', option(integer(0, 65535)), 5000)
  .requiredOption('--listener-ip <ip>', 'IP of this gateway that peers connect to; advertised in listeners')
  .option('--bind-ip <ip>', 'address the data listeners bind to (default: --listener-ip; 0.0.0.0 for all)')
  .option('--control-host <ip>', 'address the control port binds to', DEFAULTS.host)
  .option('--port-range <first-last>', 'ports the data listeners are taken from', '5100-5200')
  .option('--hello-timeout <seconds>', "how long a producer request waits for the application's Hello", option(integer(1, 86_400)), DEFAULTS.helloTimeoutMs / 1000)
  .option('--max-conn <n>', 'most connections one stream may ask for', option(integer(1, 4096)), DEFAULTS.maxConn)
  .addOption(
    new Option('--buffer-size <size>', 'buffer per connection and direction, e.g. 4MiB')
      .argParser(option(parseSize))
      .default(DEFAULTS.bufferSize, '4MiB'),
  )
  .option('--allow-plaintext-data', 'accept streams without per-stream credentials (reference clients): their WAN leg is unencrypted')
  .option('--tls-cert <file>', 'PEM certificate for the control channel (with --tls-key)')
  .option('--tls-key <file>', 'PEM private key of --tls-cert')
  .option('--client-ca <file>', 'require client certificates issued by this CA bundle (mutual TLS)')
  .option('--state-dir <dir>', 'where s2cs keeps its self-signed certificate (default: $SCISTREAM_HOME/s2cs, ~/.scistream/s2cs)')
  .option('--insecure', 'plain-text control channel (no TLS); clients must pass --insecure too')
  .option('-v, --verbose', 'debug logs')
  .option('--log-json', 'logs as JSON lines')
  .action(async (flags: StartFlags) => {
    const logger = createLogger({ verbose: flags.verbose, json: flags.logJson, name: 's2cs' });
    // grpc-js prints its own lines to stderr; route them into our log at debug level.
    grpc.setLogger({ error: (...args: unknown[]) => logger.debug({ grpc: args.join(' ') }, 'grpc-js') });
    const usage = (message: string): never => {
      process.stderr.write(`s2cs: error: ${message}\n`);
      process.exit(EXIT.usage);
    };
    let portRange;
    try {
      portRange = parsePortRange(flags.portRange);
    } catch (err) {
      return usage(`--port-range: ${(err as Error).message}`);
    }
    if (flags.bufferSize < 4096) usage(`--buffer-size ${flags.bufferSize} is too small; give at least 4KiB`);
    const bindIp = flags.bindIp ?? flags.listenerIp;
    const bindProblem = await canBind(bindIp, 0);
    if (bindProblem) usage(`cannot open data listeners on ${bindIp} (${bindProblem}); give an address of this host with --listener-ip, or --bind-ip 0.0.0.0`);
    if (flags.port !== 0) {
      const controlProblem = await canBind(flags.controlHost, flags.port);
      if (controlProblem === 'EADDRINUSE') usage(`control port ${flags.controlHost}:${flags.port} is in use by another program; stop it or choose another --port`);
      if (controlProblem) usage(`cannot serve the control channel on ${flags.controlHost}:${flags.port} (${controlProblem}); check --control-host and --port`);
    }
    let tls: ServerTls | undefined;
    if (!flags.insecure) {
      try {
        tls = await loadServerTls({
          certFile: flags.tlsCert,
          keyFile: flags.tlsKey,
          stateDir: flags.stateDir ?? join(scistreamHome(), 's2cs'),
          names: [flags.listenerIp, flags.controlHost].filter((n) => n !== '0.0.0.0' && n !== '::'),
        });
      } catch (err) {
        return usage(`control channel TLS: ${(err as Error).message}`);
      }
    }
    let server;
    try {
      server = await startControlServer({
        host: flags.controlHost,
        port: flags.port,
        listenerIp: flags.listenerIp,
        bindIp,
        portRange,
        helloTimeoutMs: flags.helloTimeout * 1000,
        maxConn: flags.maxConn,
        bufferSize: flags.bufferSize,
        allowPlaintextData: flags.allowPlaintextData ?? false,
        credentials: serverCredentials(tls, flags.clientCa),
        logger,
      });
    } catch (err) {
      return usage((err as Error).message);
    }
    if (!tls) logger.warn('control channel is plain text (--insecure): anyone on the network can read and forge control messages');
    else {
      if (tls.created) logger.info({ file: tls.created }, 'made a self-signed certificate for the control channel');
      logger.info({ fingerprint: tls.fingerprint }, `control channel TLS certificate SHA-256 fingerprint: ${tls.fingerprint}`);
    }
    logger.info(
      { control: `${flags.controlHost}:${server.port}`, listenerIp: flags.listenerIp, portRange: flags.portRange, version: VERSION },
      `s2cs ready: control on ${flags.controlHost}:${server.port}, data listeners on ${bindIp} ports ${flags.portRange}`,
    );
    onShutdown(async (signal) => {
      logger.info({ signal }, 'shutting down: releasing every stream');
      await server.close();
      logger.info('stopped');
    });
  });

/** Start-up check of an address, so that a bad flag is one clear line, not a failure later. */
function canBind(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(undefined)));
  });
}

await runCli(program);
