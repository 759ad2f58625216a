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

/** A logger's children (pino's levels do not pass to children made earlier), for setLogLevel. */
const families = new WeakMap<Logger, Set<WeakRef<Logger>>>();

/** The format a logger with these options writes: never 'auto'. */
export function resolveLogFormat(opts: Pick<LogOptions, 'json' | 'format'>, stderrIsTty: boolean = process.stderr.isTTY === true): 'pretty' | 'json' {
  if (opts.json) return 'json';
  if (opts.format === 'pretty' || opts.format === 'json') return opts.format;
  return stderrIsTty ? 'pretty' : 'json';
}

export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.silent ? 'silent' : opts.verbose ? 'debug' : 'info';
  const base = { name: opts.name };
  const family = new Set<WeakRef<Logger>>();
  const onChild = (child: Logger) => void family.add(new WeakRef(child));
  const logger = resolveLogFormat(opts) === 'json'
    ? pino({ level, base, onChild }, pino.destination({ fd: 2, sync: true }))
    : pino(
      { level, base, onChild },
      pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l' }),
    );
  families.set(logger, family);
  return logger;
}

/** Sets the level of a logger made by createLogger and of every child made from it (SIGHUP reload of --verbose). */
export function setLogLevel(logger: Logger, level: 'debug' | 'info'): void {
  logger.level = level;
  const family = families.get(logger);
  for (const ref of family ?? []) {
    const child = ref.deref();
    if (child) child.level = level;
    else family!.delete(ref);
  }
}

export const silentLogger: Logger = pino({ level: 'silent' });
