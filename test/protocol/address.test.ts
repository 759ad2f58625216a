import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseAddress, formatAddress, parseAddressList, type Address } from '../../src/protocol/address.js';
import { ScistreamError } from '../../src/protocol/errors.js';

/** Asserts that `fn` throws an INVALID_ARGUMENT ScistreamError whose message names `field`. */
function assertInvalid(fn: () => unknown, field: string): ScistreamError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, 'expected an error, got none');
  assert.ok(caught instanceof ScistreamError, `expected ScistreamError, got ${String(caught)}`);
  assert.equal(caught.kind, 'INVALID_ARGUMENT');
  assert.ok(caught.message.includes(field), `message ${JSON.stringify(caught.message)} should name ${field}`);
  return caught;
}

describe('parseAddress', () => {
  // 253 characters: the longest host name DNS allows.
  const maxHost = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
  const good: Array<[string, Address]> = [
    ['127.0.0.1:5000', { host: '127.0.0.1', port: 5000 }],
    ['host.example:1', { host: 'host.example', port: 1 }],
    ['[::1]:65535', { host: '::1', port: 65535 }],
    // The reference writes IPv6 listeners without brackets.
    ['::1:5000', { host: '::1', port: 5000 }],
    ['2001:db8::7:443', { host: '2001:db8::7', port: 443 }],
    ['gw-a.lan:80', { host: 'gw-a.lan', port: 80 }],
    ['localhost:7000', { host: 'localhost', port: 7000 }],
    ['0.0.0.0:43579', { host: '0.0.0.0', port: 43579 }],
    ['[fe80::1:2]:22', { host: 'fe80::1:2', port: 22 }],
    ['[::ffff:127.0.0.1]:8080', { host: '::ffff:127.0.0.1', port: 8080 }],
    [`${maxHost}:9`, { host: maxHost, port: 9 }],
  ];
  for (const [text, expected] of good) {
    it(`accepts ${text.length > 60 ? `${text.slice(0, 20)}... (${text.length} chars)` : text}`, () => {
      assert.deepEqual(parseAddress(text), expected);
    });
  }

  const longHost = 'a'.repeat(300);
  const longLabel = `${'b'.repeat(64)}.example`;
  const bad: Array<[string, string]> = [
    ['', 'empty'],
    ['127.0.0.1', 'no port'],
    ['gw-a.lan', 'host name without port'],
    ['127.0.0.1:', 'empty port'],
    ['127.0.0.1:0', 'port 0'],
    ['127.0.0.1:65536', 'port 65536'],
    ['127.0.0.1:99999', 'port 99999'],
    ['127.0.0.1:123456', 'six-digit port'],
    ['abc', 'bare word'],
    [':5000', 'empty host'],
    ['1:2:3:5000', 'unbracketed text that is not IPv6'],
    ['gg::1:80', 'unbracketed IPv6 with a non-hex group'],
    ['[::1]5000', 'bracketed IPv6 without colon'],
    ['[::1]', 'bracketed IPv6 without port'],
    ['[::1:5000', 'unclosed bracket'],
    ['[notv6]:80', 'non-IPv6 in brackets'],
    ['[127.0.0.1]:80', 'IPv4 in brackets'],
    ['127.0.0.1:50a0', 'port with letters'],
    ['127.0.0.1:http', 'named port'],
    ['127.0.0.1:-1', 'negative port'],
    ['127.0.0.1:+80', 'signed port'],
    ['127.0.0.1: 80', 'space in port'],
    [' 127.0.0.1:80', 'leading space'],
    ['host name:80', 'space in host'],
    ['host_name:80', 'underscore in host'],
    ['-host:80', 'host starting with dash'],
    ['host-:80', 'host ending with dash'],
    ['host..example:80', 'empty label'],
    ['http://host:80', 'URL'],
    [`${longHost}:80`, 'host of 300 chars'],
    [`${maxHost}d:80`, 'host of 254 chars'],
    [`${longLabel}:80`, 'label longer than 63 chars'],
    [`127.0.0.1:${'9'.repeat(10_000)}`, 'very long port'],
    ['x'.repeat(100_000), 'very long garbage'],
  ];
  for (const [text, why] of bad) {
    it(`rejects ${why}`, () => {
      const err = assertInvalid(() => parseAddress(text, 'prod_listeners[3]'), 'prod_listeners[3]');
      // Long inputs are shortened in the message rather than echoed in full.
      assert.ok(err.message.length < 400, `message too long (${err.message.length} chars)`);
    });
  }

  it('names "address" when no field is given', () => {
    assertInvalid(() => parseAddress('nope'), 'address');
  });

  it('rejects a non-string at run time with INVALID_ARGUMENT', () => {
    assertInvalid(() => parseAddress(undefined as unknown as string, 'target'), 'target');
  });
});

describe('formatAddress', () => {
  it('writes IPv4 and host names as host:port', () => {
    assert.equal(formatAddress({ host: '127.0.0.1', port: 5000 }), '127.0.0.1:5000');
    assert.equal(formatAddress({ host: 'gw-a.lan', port: 80 }), 'gw-a.lan:80');
  });

  it('brackets IPv6 hosts', () => {
    assert.equal(formatAddress({ host: '::1', port: 65535 }), '[::1]:65535');
    assert.equal(formatAddress({ host: 'fe80::1:2', port: 22 }), '[fe80::1:2]:22');
  });

  for (const text of ['127.0.0.1:5000', 'host.example:1', '[::1]:65535', 'gw-a.lan:80', '[2001:db8::7]:443']) {
    it(`round-trips ${text}`, () => {
      const parsed = parseAddress(text);
      assert.equal(formatAddress(parsed), text);
      assert.deepEqual(parseAddress(formatAddress(parsed)), parsed);
    });
  }
});

describe('parseAddressList', () => {
  it('parses a single address', () => {
    assert.deepEqual(parseAddressList('127.0.0.1:5000'), [{ host: '127.0.0.1', port: 5000 }]);
  });

  it('tolerates spaces and a trailing comma', () => {
    assert.deepEqual(parseAddressList(' 127.0.0.1:5000 , [::1]:6000,gw-a.lan:80 , '), [
      { host: '127.0.0.1', port: 5000 },
      { host: '::1', port: 6000 },
      { host: 'gw-a.lan', port: 80 },
    ]);
  });

  it('skips empty entries', () => {
    assert.deepEqual(parseAddressList('a:1,,b:2'), [
      { host: 'a', port: 1 },
      { host: 'b', port: 2 },
    ]);
  });

  it('rejects an empty list, naming the field', () => {
    assertInvalid(() => parseAddressList('', 'targets'), 'targets');
    assertInvalid(() => parseAddressList(' , ,', 'targets'), 'targets');
    assertInvalid(() => parseAddressList(''), 'addresses');
  });

  it('names the index of the bad entry', () => {
    assertInvalid(() => parseAddressList('127.0.0.1:5000, 127.0.0.1:0', 'targets'), 'targets[1]');
    assertInvalid(() => parseAddressList('nohost, 127.0.0.1:1'), 'addresses[0]');
  });
});
