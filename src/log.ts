// Logs go to stderr: readable (pretty) on a terminal, one JSON object per line
// otherwise (a file, a pipe, journald, a container's log driver), so that what a
// supervisor collects is machine-readable without a flag. --log-format forces either.
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LogOptions {
  verbose?: boolean;
  /** Same as format: 'json' (the --log-json flag). */
  json?: boolean;
  /** auto (default): pretty when stderr is a terminal, JSON lines otherwise. */
  format?: LogFormat;
  /** Silence everything (library use, tests). */
  silent?: boolean;
  name?: string;
}

/** The format a logger with these options writes: never 'auto'. */
export function resolveLogFormat(opts: Pick<LogOptions, 'json' | 'format'>, stderrIsTty: boolean = process.stderr.isTTY === true): 'pretty' | 'json' {
  if (opts.json) return 'json';
  if (opts.format === 'pretty' || opts.format === 'json') return opts.format;
  return stderrIsTty ? 'pretty' : 'json';
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.silent ? 'silent' : opts.verbose ? 'debug' : 'info';
  const base = { name: opts.name };
  if (resolveLogFormat(opts) === 'json') return pino({ level, base }, pino.destination({ fd: 2, sync: true }));
  return pino(
    { level, base },
    pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
