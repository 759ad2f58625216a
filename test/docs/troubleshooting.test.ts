// docs/troubleshooting.md quotes the messages users meet: each must still exist in the
// source, so the page cannot describe messages that are gone or reworded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'generated' ? [] : sources(p);
    return /\.(ts|mjs)$/.test(e.name) ? [p] : [];
  });
}

test('every message quoted in an entry heading of docs/troubleshooting.md is in the source', () => {
  // A source string's escaped quotes read as the user sees them.
  const code = [...sources(join(ROOT, 'src')), ...sources(join(ROOT, 'native'))].map((f) => readFileSync(f, 'utf8')).join('\n').replace(/\\(['"`])/g, '$1');
  const doc = readFileSync(join(ROOT, 'docs', 'troubleshooting.md'), 'utf8');
  const quotes = doc
    .split('\n')
    .filter((l) => l.startsWith('#### '))
    .flatMap((l) => [...l.matchAll(/`([^`]+)`/g)].map((m) => m[1]!))
    // gRPC status names head some entries; they are not messages.
    .filter((q) => !/^[A-Z_]+$/.test(q));
  assert.ok(quotes.length >= 40, `found ${quotes.length} quoted messages`);
  const missing: string[] = [];
  for (const quote of quotes) {
    // `…` stands for what varies; the text between must appear as written.
    for (const part of quote.split('…').map((p) => p.trim()).filter((p) => p.length > 0)) {
      if (part.length < 8) assert.fail(`"${part}" (in "${quote}") is too short to identify a message`);
      if (!code.includes(part)) missing.push(`${part}   (from: ${quote})`);
    }
  }
  assert.deepEqual(missing, [], 'quoted in docs/troubleshooting.md but not found in src/');
});
