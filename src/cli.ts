// What the three CLIs share: version, argument spelling, exit codes, error lines.
import { type Command, CommanderError, InvalidArgumentError } from 'commander';
import { ScistreamError } from './protocol/errors.js';
import { setClientName } from './security/client-name.js';
import { oneLine } from './protocol/text.js';

export { VERSION } from './version.js';

// grpc-js passes an IP address as TLS server name and Node flags that (DEP0123)
// on every call; the line means nothing to a user.
process.noDeprecation = true;

/** Exit codes: 0 ok, 1 the operation failed, 2 bad usage or bad configuration, 130 interrupted. */
export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

/** The reference spells options with underscores (--num_conn); accept both spellings. */
export function normalizeArgv(argv: string[]): string[] {
  return argv.map((a) => {
    if (!a.startsWith('--')) return a;
    const eq = a.indexOf('=');
    const name = eq < 0 ? a : a.slice(0, eq);
    return name.replace(/_/g, '-') + (eq < 0 ? '' : a.slice(eq));
  });
}

/**
 * The reference's command names are Python functions exposed by click with underscores
 * (`s2uc inbound_request`, `appctrl create_appctrl`); the first word that is not an
 * option (or an option's value) names the command, and is taken in its dashed spelling
 * when that names one of `program`'s commands.
 */
export function normalizeCommandName(program: Command, argv: string[]): string[] {
  const names = new Set(program.commands.flatMap((c) => [c.name(), ...c.aliases()]));
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return argv;
    if (a.startsWith('-')) {
      const takesValue = !a.includes('=') && program.options.some((o) => (o.long === a || o.short === a) && (o.required || o.optional));
      if (takesValue) i++;
      continue;
    }
    // `help inbound_request`: the command named is the next word.
    if (a === 'help' && !names.has('help') && i + 1 < argv.length) continue;
    const dashed = a.replace(/_/g, '-');
    if (dashed === a || names.has(a) || !names.has(dashed)) return argv;
    return [...argv.slice(0, i), dashed, ...argv.slice(i + 1)];
  }
  return argv;
}

/** Wraps a parser for commander so that a bad value is a usage error naming the option. */
export function option<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}

export const integer =
  (min: number, max: number) =>
  (text: string): number => {
    const n = Number(text);
    if (!/^-?[0-9]+$/.test(text.trim()) || n < min || n > max) throw new InvalidArgumentError(`"${text}" is not a whole number from ${min} to ${max}`);
    return n;
  };

/** `s2uc request`: the program and subcommand names, as typed. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}


/**
 * Commander's own errors (unknown option, missing option, bad value, unknown command) in our
 * form, `s2uc: error: ... (see: s2uc request --help)`, and exits that we decide (runCli).
 */
function conventions(cmd: Command, programName: string): void {
  cmd.exitOverride();
  cmd.configureOutput({
    outputError: (str, write) => write(`${programName}: ${oneLine(str)} (see: ${commandPath(cmd)} --help)\n`),
  });
  for (const sub of cmd.commands) conventions(sub, programName);
}

/**
 * A reader that stops early (`s2uc status | head -1`) closes the pipe. Its EPIPE is no
 * failure and no stack trace: the rest of the output is dropped, and the command finishes
 * what it started (a `request | head -1` still completes its setup or releases it) and exits
 * with its own status.
 */
function quietOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') return;
      // Output cannot be written at all (EIO, ENOSPC): nothing sensible is left to do or say.
      process.exit(EXIT.failed);
    });
  }
}

/** Shown after a command's --help: real command lines, one a line. */
export function examples(cmd: Command, lines: string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}`);
}

/**
 * Examples for a program ('') and its commands, found by name; a name with no command is
 * skipped (the usage test asks every listed command for its examples).
 */
export function addExamples(program: Command, byCommand: Record<string, string[]>): void {
  for (const [name, lines] of Object.entries(byCommand)) {
    const cmd = name === '' ? program : program.commands.find((c) => c.name() === name);
    if (cmd) examples(cmd, lines);
  }
}

/**
 * Runs a commander program; errors become one line on stderr and an exit code.
 * No arguments at all, or a command group without its subcommand, is bad usage:
 * help on stderr and exit 2. `--help` is help on stdout and exit 0.
 */
export async function runCli(program: Command, argv: string[] = process.argv): Promise<void> {
  quietOnClosedPipe();
  setClientName(program.name());
  conventions(program, program.name());
  const verbose = argv.includes('--verbose') || argv.includes('-v');
  try {
    await program.parseAsync(normalizeCommandName(program, normalizeArgv(argv)));
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') process.exit(EXIT.ok);
      // `help({ error: true })`: commander's answer to a missing subcommand (exit code 1 there).
      if (err.code === 'commander.help') process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
      process.exit(EXIT.usage);
    }
    fail(program.name(), err, verbose);
  }
}

export class UsageError extends Error {}

/** Prints what failed in one line (a stack only with --verbose) and exits. */
export function fail(name: string, err: unknown, verbose: boolean): never {
  const message = oneLine(err instanceof Error ? err.message : String(err));
  process.stderr.write(`${name}: error: ${message}\n`);
  // RemoteError by name: protocol/client.js (and gRPC with it) is loaded only by commands that call a server.
  if (verbose && err instanceof Error && err.name !== 'RemoteError' && err.stack) process.stderr.write(`${err.stack}\n`);
  const usage = err instanceof UsageError || (err instanceof ScistreamError && err.kind === 'INVALID_ARGUMENT');
  process.exit(usage ? EXIT.usage : EXIT.failed);
}

/** Runs `cleanup` on SIGINT/SIGTERM, then exits; a second signal exits at once. */
export function onShutdown(cleanup: (signal: NodeJS.Signals) => Promise<void>, exitCode = EXIT.ok): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(EXIT.interrupted);
    stopping = true;
    cleanup(signal).then(
      () => process.exit(exitCode),
      (err: unknown) => {
        process.stderr.write(`error while shutting down: ${(err as Error).message}\n`);
        process.exit(EXIT.failed);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
