// Configuration files for the servers (s2cs start, s2ds start): TOML whose keys are the
// long option names of the command. Everything about a key (whether it exists, its
// type, how its value is parsed and checked) comes from the command's own option
// definitions, so an option added to the command is a key of the file with no more code.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { type Command, type Option } from 'commander';
import { parse as parseToml, TomlError } from 'smol-toml';
import { UsageError } from './cli.js';
import { oneLine } from './protocol/text.js';

/** Where an effective setting came from. */
export type SettingSource = 'default' | 'file' | 'flag' | 'unset';

export interface Setting {
  /** The key in the file: the long option name without its dashes. */
  key: string;
  value: unknown;
  source: SettingSource;
  /** A secret value: never printed or logged. */
  secret: boolean;
}

/** A file that cannot be used: one line naming the file and, when there is one, the key. */
export class ConfigError extends UsageError {}

const CONFIG_ATTR = 'config';
/** Options that are not settings: the file cannot hold them. */
const NOT_SETTINGS = new Set(['help', 'version', CONFIG_ATTR]);

/** Options of one command only (check-config --json), not settings. */
const commandOnly = new WeakSet<Option>();

/** Adds an option that belongs to this command only: no key of the file, not printed as a setting. */
export function addCommandOption(cmd: Command, opt: Option): Command {
  commandOnly.add(opt);
  return cmd.addOption(opt);
}

/** The option's key in a file, or undefined for options that are not settings. */
function keyOf(opt: Option): string | undefined {
  const key = opt.long?.replace(/^--/, '');
  return key === undefined || NOT_SETTINGS.has(key) || commandOnly.has(opt) ? undefined : key;
}

/** The options that a file may set, by key. */
export function settingOptions(cmd: Command): Map<string, Option> {
  const byKey = new Map<string, Option>();
  for (const opt of cmd.options) {
    const key = keyOf(opt);
    if (key !== undefined) byKey.set(key, opt);
  }
  return byKey;
}

/** Repeatable options (--admin A --admin B) collect into an array that starts as their default. */
function isRepeatable(opt: Option): boolean {
  return opt.variadic || Array.isArray(opt.defaultValue);
}

/** Options whose value is a path (`<file>`, `<dir>`): relative values in a file resolve against the file's directory. */
function isPath(opt: Option): boolean {
  return /<(file|dir|path)>/.test(opt.flags);
}

/**
 * A secret value: a value option named like a secret whose argument is not a path
 * (the client secret is given as a file, whose path is shown, never its contents).
 */
function isSecret(opt: Option): boolean {
  return !opt.isBoolean() && !isPath(opt) && /secret|password|token/.test(opt.long ?? '');
}

const REDACTED = '(redacted)';

/** Options made with requiredOption, whose check withConfigFile takes over (an Option may serve two commands). */
const required = new WeakSet<Option>();

function requiredOf(cmd: Command): Option[] {
  return cmd.options.filter((o) => o.mandatory || required.has(o));
}

/**
 * Adds `--config FILE` to a server's start command (and its check-config twin):
 * before the action runs, the file's settings are applied where no flag was given.
 * Options made with requiredOption may then come from the file: their presence is
 * checked after the file is read, with commander's own wording.
 */
export function withConfigFile(cmd: Command): Command {
  const mandatory = requiredOf(cmd);
  for (const o of mandatory) {
    required.add(o);
    o.mandatory = false;
  }
  cmd.option('--config <file>', 'read settings from this TOML file (keys: the long option names, e.g. listener-ip = "10.0.0.1"; relative paths resolve against the file\'s directory); flags given here override it');
  cmd.hook('preAction', (thisCommand) => {
    const file = thisCommand.getOptionValue(CONFIG_ATTR) as string | undefined;
    if (file !== undefined) {
      for (const [attr, value] of readConfigFile(thisCommand, file)) {
        if (thisCommand.getOptionValueSource(attr) !== 'cli') thisCommand.setOptionValueWithSource(attr, value, 'config');
      }
    }
    for (const o of mandatory) {
      if (thisCommand.getOptionValue(o.attributeName()) === undefined) {
        thisCommand.error(`error: required option '${o.flags}' not specified${file === undefined ? '' : ` (give it, or ${keyOf(o)} in ${file})`}`, {
          exitCode: 2,
          code: 'commander.missingMandatoryOptionValue',
        });
      }
    }
  });
  return cmd;
}

/** Keys of a command's file that hold arrays of tables ([[tunnel]]), read by readTableArray. */
const tableArrays = new WeakMap<Command, Set<string>>();

/** Lets `cmd`'s file hold `[[key]]` tables (e.g. tunnel): readConfigFile leaves them to readTableArray. */
export function allowTableArray(cmd: Command, key: string): Command {
  const keys = tableArrays.get(cmd) ?? new Set<string>();
  keys.add(key);
  tableArrays.set(cmd, keys);
  return cmd;
}

/** The file as a TOML document; ConfigError (one line) when it cannot be read or parsed. */
function parseConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read the configuration file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (err instanceof TomlError) throw new ConfigError(`${file}:${err.line}:${err.column}: not valid TOML: ${oneLine(err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, ''))}`);
    throw new ConfigError(`${file}: not valid TOML: ${oneLine((err as Error).message)}`);
  }
}

/**
 * The `[[key]]` tables of a file (key or its underscore spelling), in order; [] when
 * there are none. ConfigError when the key holds anything but tables.
 */
export function readTableArray(file: string, key: string): Record<string, unknown>[] {
  const doc = parseConfigFile(file);
  const found = Object.entries(doc).filter(([k]) => k.replace(/_/g, '-') === key);
  if (found.length === 0) return [];
  const [rawKey, raw] = found[0]!;
  const isTable = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Date);
  if (!Array.isArray(raw) || !raw.every(isTable)) throw new ConfigError(`${file}: ${rawKey}: expects [[${key}]] tables, got ${describe(raw)}`);
  return raw;
}

/**
 * Reads a configuration file for `cmd`: returns option attribute -> parsed value.
 * Throws ConfigError (one line) for a file that cannot be read or parsed, an
 * unknown key, a value of the wrong type, or a value the option's parser refuses.
 */
export function readConfigFile(cmd: Command, file: string): Map<string, unknown> {
  const doc = parseConfigFile(file);
  const options = settingOptions(cmd);
  const baseDir = dirname(resolve(file));
  const values = new Map<string, unknown>();
  const seen = new Map<string, string>();
  for (const [rawKey, raw] of Object.entries(doc)) {
    // The flags accept max_conn as well as max-conn (the reference's spelling); so does the file.
    const key = rawKey.replace(/_/g, '-');
    const where = `${file}: ${rawKey}`;
    if (key === CONFIG_ATTR) throw new ConfigError(`${where}: a configuration file cannot name another one; remove the key`);
    // [[tunnel]] and the like: read by their own reader (readTableArray).
    if (tableArrays.get(cmd)?.has(key)) continue;
    const opt = options.get(key);
    if (!opt) {
      if (raw !== null && typeof raw === 'object' && !Array.isArray(raw) && !(raw instanceof Date)) {
        throw new ConfigError(`${where}: unknown table [${rawKey}]; settings are plain top-level keys (key = value), without sections`);
      }
      const near = closest(key, [...options.keys()]);
      throw new ConfigError(`${where}: unknown key${near ? `; did you mean ${near}?` : ''} (keys are the long option names of \`${commandName(cmd)} --help\`)`);
    }
    if (seen.has(key)) throw new ConfigError(`${where}: given twice (also as ${seen.get(key)})`);
    seen.set(key, rawKey);
    values.set(opt.attributeName(), convert(opt, raw, where, baseDir));
  }
  return values;
}

/** A TOML value as the option would have it from the command line. */
function convert(opt: Option, raw: unknown, where: string, baseDir: string): unknown {
  const accepts = describeAccepted(opt);
  if (opt.isBoolean()) {
    if (typeof raw !== 'boolean') throw new ConfigError(`${where}: expects true or false, got ${describe(raw)}`);
    return raw;
  }
  const one = (item: unknown, previous: unknown): unknown => {
    if (typeof item === 'number' && !Number.isFinite(item)) throw new ConfigError(`${where}: expects ${accepts}, got ${String(item)}`);
    if (typeof item !== 'string' && typeof item !== 'number') throw new ConfigError(`${where}: expects ${accepts}, got ${describe(item)}`);
    let text = String(item);
    if (isPath(opt) && text !== '' && !isAbsolute(text)) text = resolve(baseDir, text);
    if (!opt.parseArg) return text;
    try {
      return opt.parseArg(text, previous);
    } catch (err) {
      throw new ConfigError(`${where} = ${JSON.stringify(item)}: ${oneLine((err as Error).message)}`);
    }
  };
  if (isRepeatable(opt)) {
    const items = Array.isArray(raw) ? raw : [raw];
    let acc: unknown = Array.isArray(opt.defaultValue) ? [...(opt.defaultValue as unknown[])] : [];
    for (const item of items) acc = opt.parseArg ? one(item, acc) : [...(acc as unknown[]), one(item, undefined)];
    return acc;
  }
  if (Array.isArray(raw)) throw new ConfigError(`${where}: expects one value (${accepts}), got a list; only repeatable options take a list`);
  return one(raw, opt.defaultValue);
}

function describeAccepted(opt: Option): string {
  if (opt.argChoices) return `one of ${opt.argChoices.map((c) => JSON.stringify(c)).join(', ')}`;
  const arg = /<[^>]+>/.exec(opt.flags)?.[0] ?? 'value';
  return `${isRepeatable(opt) ? 'a list of values' : 'a value'} as for ${opt.long} ${arg} (a string or a number)`;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Date) return 'a date';
  if (v !== null && typeof v === 'object') return 'a table';
  return `${typeof v === 'string' ? 'a string' : typeof v === 'boolean' ? 'a boolean' : typeof v} ${JSON.stringify(v)}`;
}

/** `s2cs start`: the command whose --help lists the keys (check-config shares start's options). */
function commandName(cmd: Command): string {
  return cmd.parent ? `${cmd.parent.name()} start` : cmd.name();
}

/** The known key closest to `key`, when it is close enough to be a likely typo. */
export function closest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(key, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  const prefix = known.find((k) => k.startsWith(key) || key.startsWith(k));
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : prefix;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * The settings a reload would run with: each flag given on the command line keeps
 * its value, the rest comes from the file as it is now, or the option's default.
 * Returns option attribute -> value, the shape of `cmd.opts()`.
 */
export function reloadedValues(cmd: Command, file: string): Record<string, unknown> {
  const fromFile = readConfigFile(cmd, file);
  const values: Record<string, unknown> = { ...cmd.opts() };
  for (const opt of settingOptions(cmd).values()) {
    const attr = opt.attributeName();
    if (cmd.getOptionValueSource(attr) === 'cli') continue;
    values[attr] = fromFile.has(attr) ? fromFile.get(attr) : Array.isArray(opt.defaultValue) ? [...(opt.defaultValue as unknown[])] : opt.defaultValue;
  }
  const missing = requiredOf(cmd).find((o) => values[o.attributeName()] === undefined);
  if (missing) throw new ConfigError(`${file}: ${keyOf(missing)} is required (or the flag ${missing.long})`);
  return values;
}

/** Every setting of `cmd` after parsing: its value and where it came from. Secrets are redacted. */
export function effectiveSettings(cmd: Command, values: Record<string, unknown> = cmd.opts()): Setting[] {
  const settings: Setting[] = [];
  for (const [key, opt] of settingOptions(cmd)) {
    const attr = opt.attributeName();
    // A switch not given is off.
    const value = values[attr] === undefined && opt.isBoolean() ? false : values[attr];
    const origin = cmd.getOptionValueSource(attr);
    const source: SettingSource = value === undefined ? 'unset' : origin === 'cli' ? 'flag' : origin === 'config' ? 'file' : 'default';
    const secret = isSecret(opt);
    settings.push({ key, value: secret && value !== undefined ? REDACTED : value, source, secret });
  }
  return settings;
}

/** A value as TOML (strings quoted, lists bracketed), for check-config and the reload log. */
export function tomlValue(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(tomlValue).join(', ')}]`;
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

/** Whether two setting values are the same (lists compared item by item). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  return a === b;
}

/** A setting's value for a log line: redacted when secret. */
export function shownValue(cmd: Command, key: string, value: unknown): string {
  const opt = settingOptions(cmd).get(key);
  if (value === undefined) return '(unset)';
  return opt && isSecret(opt) ? REDACTED : tomlValue(value);
}

/**
 * Gives `to` (check-config) every setting option of `from` (start), the same Option
 * objects: a flag added to start is accepted, checked and printed by check-config too.
 */
export function copyOptions(from: Command, to: Command): Command {
  for (const opt of from.options) if (keyOf(opt) !== undefined) to.addOption(opt);
  return to;
}

/** Files named by path options (`<file>`) that cannot be read: one line for the first, or undefined. */
export function unreadableFile(cmd: Command, values: Record<string, unknown>): string | undefined {
  for (const [key, opt] of settingOptions(cmd)) {
    if (!/<file>/.test(opt.flags)) continue;
    const value = values[opt.attributeName()];
    for (const f of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
      try {
        readFileSync(String(f));
      } catch (err) {
        return `${key} ${String(f)}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
      }
    }
  }
  return undefined;
}

/**
 * check-config's output: every setting as a TOML line with where it came from, so that
 * the output is itself a configuration file; values worked out at start (a default that
 * follows from other settings) are shown with what they follow from.
 */
export function formatSettings(settings: Setting[], derived: Record<string, { value: unknown; from: string }> = {}): string {
  const lines = settings.map((s) => {
    const d = derived[s.key];
    if (s.source === 'unset' && d) return { text: `${s.key} = ${tomlValue(d.value)}`, note: `default (${d.from})` };
    if (s.source === 'unset') return { text: `# ${s.key} (not set)`, note: '' };
    return { text: `${s.key} = ${tomlValue(s.value)}`, note: s.source === 'flag' ? 'flag' : s.source === 'file' ? 'file' : 'default' };
  });
  const width = Math.min(60, Math.max(...lines.map((l) => l.text.length)));
  return lines.map((l) => (l.note ? `${l.text.padEnd(width)}  # ${l.note}` : l.text)).join('\n') + '\n';
}
