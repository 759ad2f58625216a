// Logs go to stderr: readable on a terminal, one JSON object per line with --log-json.
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export interface LogOptions {
  verbose?: boolean;
  json?: boolean;
  /** Silence everything (library use, tests). */
  silent?: boolean;
  name?: string;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.silent ? 'silent' : opts.verbose ? 'debug' : 'info';
  const base = { name: opts.name };
  if (opts.json) return pino({ level, base }, pino.destination({ fd: 2, sync: true }));
  return pino(
    { level, base },
    pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
