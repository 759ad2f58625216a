// Text from the wire shown in messages: cut on code points, well formed, one line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { safeDetails, shown } from '../../src/protocol/text.js';
import { parseAddress } from '../../src/protocol/address.js';
import { validateRole, validateUid } from '../../src/protocol/validate.js';
import { ScistreamError } from '../../src/protocol/errors.js';

const ASTRAL = '\u{1F600}'.repeat(40) + 'a';

// What grpc-js does to status details; it throws URIError on a lone surrogate.
const asGrpcDetails = (s: string) => encodeURI(s);

test('astral-plane input is cut on code points, never between the halves of a pair', () => {
  const s = shown(ASTRAL, 37);
  assert.equal([...s.replace(/\.\.\.$/, '')].length, 37);
  assert.ok(s.endsWith('...'));
  assert.doesNotThrow(() => asGrpcDetails(s));
  for (let max = 0; max < 45; max++) assert.doesNotThrow(() => asGrpcDetails(shown(ASTRAL, max)), `max ${max}`);
});

test('lone surrogates, control characters and huge inputs are made safe', () => {
  assert.equal(shown('a\uD800b\uDC00c'), 'a\uFFFDb\uFFFDc');
  assert.equal(shown('line\nbreak\x00\x7f\u0085'), 'line\\x0abreak\\x00\\x7f\\x85');
  const huge = 'x'.repeat(4 * 1024 * 1024);
  assert.equal(shown(huge, 10), 'xxxxxxxxxx...');
  assert.doesNotThrow(() => asGrpcDetails(safeDetails('bad \uD83D end')));
  assert.equal([...safeDetails('\u{1F600}'.repeat(5000))].length, 2003);
});

test('every validation message about astral-plane input can be sent as gRPC details', () => {
  const inputs = [ASTRAL, `${ASTRAL}:80`, `[${ASTRAL}]:80`, `${'\u{1F600}'.repeat(39)}\uD83D:1`, '\uDFFF'.repeat(100)];
  const checks: ((s: string) => unknown)[] = [(s) => validateUid(s), (s) => validateRole(s), (s) => parseAddress(s, 'prod_listeners[0]')];
  for (const input of inputs) {
    for (const check of checks) {
      assert.throws(
        () => check(input),
        (err: unknown) => {
          assert.ok(err instanceof ScistreamError);
          assert.doesNotThrow(() => asGrpcDetails(err.message), err.message);
          return true;
        },
      );
    }
  }
});
