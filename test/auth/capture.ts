// A pino logger that writes into an array, to check what the auth code logs.
import { pino, type Logger } from 'pino';
import { ScistreamError, type ErrorKind } from '../../src/protocol/errors.js';

export function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

/** An assert.rejects matcher: a ScistreamError of `kind` whose message matches `re`. */
export function scistreamError(kind: ErrorKind, re?: RegExp): (err: unknown) => boolean {
  return (err: unknown) => {
    if (!(err instanceof ScistreamError)) throw new Error(`expected a ScistreamError ${kind}, got ${String(err)}`);
    if (err.kind !== kind) throw new Error(`expected ${kind}, got ${err.kind}: ${err.message}`);
    if (re && !re.test(err.message)) throw new Error(`message "${err.message}" does not match ${re}`);
    return true;
  };
}

/** Asserts that none of `secrets` occurs in any of `texts`. */
export function assertNoSecrets(texts: string[], secrets: string[]): void {
  for (const secret of secrets) {
    if (!secret) continue;
    for (const text of texts) {
      if (text.includes(secret)) throw new Error(`a secret (${secret.slice(0, 6)}...) appears in: ${text.slice(0, 300)}`);
    }
  }
}
