// S2CS as a library: start a control server with its in-process data server.
import * as grpc from '@grpc/grpc-js';
import { createLogger, type Logger } from '../log.js';
import { NoAuth, type Authenticator } from '../auth/index.js';
import { Control } from '../protocol/contract.js';
import { ScistreamError } from '../protocol/errors.js';
import { LocalDataServer, type DataServer, type PortRange } from '../s2ds/index.js';
import { controlHandlers } from './service.js';
import { StreamTable } from './streams.js';
import { controlServerOptions, type ControlPortLimits } from './control-port.js';

export interface ControlServerOptions {
  /** Address the gRPC control service binds to. */
  host?: string;
  /** Control port; 0 picks a free one. */
  port: number;
  /** IP advertised in listeners (the address peers reach the gateway at). */
  listenerIp: string;
  /** Address the data listeners bind to; defaults to listenerIp. */
  bindIp?: string;
  portRange: PortRange;
  helloTimeoutMs?: number;
  maxConn?: number;
  bufferSize?: number;
  /** Accept UpdateTargets without per-stream credentials (plain-TCP WAN leg). */
  allowPlaintextData?: boolean;
  /** How callers are identified (default: NoAuth, every caller anonymous). */
  auth?: Authenticator;
  /** Identities (token subjects) that may release and see every stream. */
  admins?: string[];
  credentials?: grpc.ServerCredentials;
  /** When the control port closes idle, silent and broken connections (control-port.ts). */
  controlPort?: ControlPortLimits;
  logger?: Logger;
  dataServer?: DataServer;
}

export interface ControlServer {
  /** The control port actually bound. */
  readonly port: number;
  readonly table: StreamTable;
  readonly dataServer: DataServer;
  /** Releases every stream, then stops serving. */
  close(): Promise<void>;
}

export const DEFAULTS = {
  host: '0.0.0.0',
  helloTimeoutMs: 180_000,
  maxConn: 64,
  bufferSize: 4 * 1024 * 1024,
  maxPendingHellos: 10_000,
} as const;

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const logger = opts.logger ?? createLogger({ silent: true });
  const helloTimeoutMs = opts.helloTimeoutMs ?? DEFAULTS.helloTimeoutMs;
  const bufferSize = opts.bufferSize ?? DEFAULTS.bufferSize;
  const dataServer =
    opts.dataServer ??
    new LocalDataServer({
      bindHost: opts.bindIp ?? opts.listenerIp,
      portRange: opts.portRange,
      bufferSize,
      waitLimit: 1024,
      waitTimeoutMs: helloTimeoutMs,
      logger: logger.child({ component: 's2ds' }),
    });
  const auth = opts.auth ?? new NoAuth();
  const table = new StreamTable({
    dataServer,
    advertiseHost: opts.listenerIp,
    helloTimeoutMs,
    maxPendingHellos: DEFAULTS.maxPendingHellos,
    allowPlaintextData: opts.allowPlaintextData ?? false,
    requireAppSecret: auth.mode !== 'none',
    admins: new Set(opts.admins ?? []),
    logger,
  });
  const server = new grpc.Server(controlServerOptions(opts.controlPort));
  server.addService(
    Control.service,
    controlHandlers({ table, dataServer, auth, limits: { maxConn: opts.maxConn ?? DEFAULTS.maxConn }, logger }),
  );
  const host = opts.host ?? DEFAULTS.host;
  const target = host.includes(':') ? `[${host}]:${opts.port}` : `${host}:${opts.port}`;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(target, opts.credentials ?? grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) {
        reject(
          new ScistreamError(
            'UNAVAILABLE',
            `cannot serve the control channel on ${target}: ${err.message.includes('No address added') ? 'the port is in use or the address is not on this host' : err.message}; choose another --port`,
          ),
        );
      } else resolve(bound);
    });
  });
  let closing: Promise<void> | undefined;
  return {
    port,
    table,
    dataServer,
    close: () =>
      (closing ??= (async () => {
        await table.close();
        await dataServer.close();
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 2000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
      })()),
  };
}
