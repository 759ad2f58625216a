// The CLI conventions a new user meets first, on real processes: bad usage exits 2 with one
// prefixed line, --help has examples that parse, a TLS/plain-text mismatch says which side to
// change, a reader that stops early is no crash, and the demo follows the same rules.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { freePort, freePortRange, spawnCli, watchChild, type Proc } from '../../src/demo/procs.js';
import { Control } from '../../src/protocol/contract.js';

type Program = 's2cs' | 's2uc' | 's2app' | 's2ds';
const PROGRAMS: Program[] = ['s2uc', 's2cs', 's2app', 's2ds'];

// Pins, tokens and self-signed certificates of this file's runs stay here.
const home = mkdtempSync(join(tmpdir(), 'scistream-cli-usage-'));
const env = { ...process.env, SCISTREAM_HOME: home };
after(() => rmSync(home, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(program: Program, args: string[], opts: { capMs?: number } = {}): Promise<Run & { stopped: boolean }> {
  const p = spawnCli(program, args, { env });
  let stopped = false;
  const cap = opts.capMs === undefined ? undefined : setTimeout(() => ((stopped = true), void p.stop('SIGTERM', 3000)), opts.capMs);
  const code = await p.exited;
  clearTimeout(cap);
  return { code, stdout: p.stdout(), stderr: p.stderr(), stopped };
}

/** The error lines (warnings, such as --insecure's, are not errors). */
const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.includes('error'));
const COMMANDER_ERROR = /\(see: .* --help\)$/m;

async function startS2cs(tls: boolean): Promise<{ proc: Proc; address: string; cert: string }> {
  const port = await freePort();
  const range = await freePortRange(4);
  const stateDir = join(home, `gw-${port}`);
  const proc = spawnCli(
    's2cs',
    ['start', ...(tls ? ['--state-dir', stateDir] : ['--insecure']), '--control-host', '127.0.0.1', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`],
    { env },
  );
  await proc.waitFor(/s2cs ready/);
  return { proc, address: `127.0.0.1:${port}`, cert: join(stateDir, 'tls', 'cert.pem') };
}

describe('no arguments is bad usage: help on stderr, exit 2; --help is help on stdout, exit 0', () => {
  for (const program of PROGRAMS) {
    test(program, async () => {
      const bare = await run(program, []);
      assert.equal(bare.code, 2, bare.stderr);
      assert.equal(bare.stdout, '');
      assert.match(bare.stderr, new RegExp(`^Usage: ${program} `));
      const help = await run(program, ['--help']);
      assert.equal(help.code, 0);
      assert.equal(help.stderr, '');
      assert.match(help.stdout, new RegExp(`^Usage: ${program} `));
    });
  }
});

describe("commander's errors: one line with the program's prefix and the command's --help, exit 2", () => {
  const cases: [Program, string[], RegExp][] = [
    ['s2uc', ['request', '--cons-s2cs', '127.0.0.1:5000', '--num-conn', '1'], /^s2uc: error: required option '--prod-s2cs <host:port>' not specified \(see: s2uc request --help\)$/],
    ['s2uc', ['--bogus', 'status'], /^s2uc: error: unknown option '--bogus' \(see: s2uc --help\)$/],
    ['s2uc', ['reqest'], /^s2uc: error: unknown command 'reqest' \(Did you mean request\?\) \(see: s2uc --help\)$/],
    ['s2uc', ['status', '--s2cs', '127.0.0.1:5000', '--bogus'], /^s2uc: error: unknown option '--bogus' \(see: s2uc status --help\)$/],
    ['s2uc', ['request1', '--s2cs', '127.0.0.1:5000', '--num-conn', 'many'], /^s2uc: error: option '--num-conn <n>' argument 'many' is invalid\. .* \(see: s2uc request1 --help\)$/],
    ['s2cs', ['start'], /^s2cs: error: required option '--listener-ip <ip>' not specified \(see: s2cs start --help\)$/],
    ['s2cs', ['stop'], /^s2cs: error: unknown command 'stop' \(see: s2cs --help\)$/],
    ['s2app', ['hello', '--s2cs', '127.0.0.1:5000', '--uid', 'u', '--role', 'BOTH'], /^s2app: error: option '--role <PROD\|CONS>' argument 'BOTH' is invalid\. .* \(see: s2app hello --help\)$/],
  ];
  for (const [program, args, expected] of cases) {
    test(`${program} ${args.join(' ')}`, async () => {
      const r = await run(program, args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.split('\n').length, 2, `one line: ${JSON.stringify(r.stderr)}`);
      assert.match(r.stderr.trim(), expected);
    });
  }
});

/** The commands a program's --help lists. */
function commandsOf(help: string): string[] {
  const section = (help.split(/^Commands:$/m)[1] ?? '').split(/\n\s*\n/)[0]!;
  return section
    .split('\n')
    .map((l) => /^ {2}([^\s|]+)/.exec(l)?.[1])
    .filter((c): c is string => c !== undefined && c !== 'help');
}

/** The example command lines of a --help text, without their comments. */
function examplesOf(help: string): string[] {
  const section = help.split(/^Examples:$/m)[1] ?? '';
  return section
    .split('\n')
    .map((l) => /^ {2}\$ (.*)$/.exec(l)?.[1]?.replace(/\s+#.*$/, '').trim())
    .filter((l): l is string => !!l);
}

describe('--help shows examples for every command, and each one parses', () => {
  for (const program of PROGRAMS) {
    test(program, async () => {
      const top = await run(program, ['--help']);
      const commands = commandsOf(top.stdout);
      assert.ok(commands.length > 0, top.stdout);
      const lines = examplesOf(top.stdout);
      assert.ok(lines.length > 0, `${program} --help has examples`);
      for (const cmd of commands) {
        const help = await run(program, [cmd, '--help']);
        assert.equal(help.code, 0, help.stderr);
        const ex = examplesOf(help.stdout);
        assert.ok(ex.length > 0, `${program} ${cmd} --help has examples:\n${help.stdout}`);
        for (const l of ex) assert.ok(l.startsWith(`${program} `) && l.split(/\s+/).includes(cmd), `an example of ${program} ${cmd}: ${l}`);
        lines.push(...ex);
      }
      // Run each example with every address pointed at a closed loopback port (control port 0
      // for s2cs): whatever then fails, it must not be commander rejecting the line.
      const closed = `127.0.0.1:${await freePort()}`;
      for (const line of lines) {
        const args = line
          .split(/\s+/)
          .slice(1)
          .map((a) => a.replace(/\b(?:[\w-]+\.example\.org|localhost|\d+\.\d+\.\d+\.\d+):\d+\b/g, closed))
          .map((a, i, all) => (all[i - 1] === '--port' ? '0' : a));
        // A gateway that does start serves on loopback only, for the few seconds it runs.
        if (program === 's2cs') args.push('--control-host', '127.0.0.1');
        const r = await run(program, args, { capMs: 4000 });
        assert.doesNotMatch(r.stderr, COMMANDER_ERROR, `the example parses: ${line}\n${r.stderr}`);
        assert.doesNotMatch(r.stderr, /^\s+at .*:\d+:\d+\)?$/m, `no stack trace: ${line}\n${r.stderr}`);
      }
    });
  }
});

describe('TLS and plain text mixed on the control channel: one line saying which side to change', () => {
  let plain: Awaited<ReturnType<typeof startS2cs>>;
  let tls: Awaited<ReturnType<typeof startS2cs>>;
  before(async () => {
    [plain, tls] = await Promise.all([startS2cs(false), startS2cs(true)]);
  });
  after(async () => {
    assert.equal(await plain.proc.stop(), 0);
    assert.equal(await tls.proc.stop(), 0);
  });

  const oneErrorLine = (r: Run, expected: RegExp) => {
    assert.equal(r.code, 1, r.stderr);
    const errors = errorLines(r.stderr);
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0]!, expected);
    assert.doesNotMatch(r.stderr, /SSL routines|ssl3_|Resolution note/, 'no raw OpenSSL or grpc-js text');
  };

  test('s2uc (TLS, pinning on first use) against s2cs --insecure', async () => {
    const r = await run('s2uc', ['status', '--s2cs', plain.address]);
    oneErrorLine(r, new RegExp(`^s2uc: error: s2cs at ${plain.address} answered in plain text: it was started with --insecure; pass --insecure to s2uc too \\(or start s2cs with TLS\\)$`));
  });
  test('s2uc --server-cert against s2cs --insecure', async () => {
    const r = await run('s2uc', ['--server-cert', tls.cert, 'release', 'some-uid', '--s2cs', plain.address]);
    oneErrorLine(r, new RegExp(`^s2uc: error: s2cs at ${plain.address} answered in plain text: .*pass --insecure to s2uc too`));
  });
  test('s2uc --insecure against a TLS s2cs', async () => {
    const r = await run('s2uc', ['--insecure', 'status', '--s2cs', tls.address]);
    oneErrorLine(r, new RegExp(`^s2uc: error: s2cs at ${tls.address} answered with TLS: it was started without --insecure; drop --insecure from s2uc \\(or start s2cs with --insecure too\\)$`));
  });
  test('s2app hello, both ways', async () => {
    const toPlain = await run('s2app', ['hello', '--s2cs', plain.address, '--uid', 'u1', '--role', 'CONS', '--timeout', '5']);
    oneErrorLine(toPlain, new RegExp(`^s2app: error: s2cs at ${plain.address} answered in plain text: .*pass --insecure to s2app too`));
    const toTls = await run('s2app', ['hello', '--insecure', '--s2cs', tls.address, '--uid', 'u1', '--role', 'CONS', '--timeout', '5']);
    oneErrorLine(toTls, new RegExp(`^s2app: error: s2cs at ${tls.address} answered with TLS: .*drop --insecure from s2app`));
  });
  test('nothing listening: still "cannot reach", without grpc-js scaffolding', async () => {
    const port = await freePort();
    const r = await run('s2uc', ['--insecure', 'status', '--s2cs', `127.0.0.1:${port}`]);
    oneErrorLine(r, new RegExp(`^s2uc: error: cannot reach s2cs at 127\\.0\\.0\\.1:${port} for status \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\); `));
  });

  test('a reader that closes the pipe before s2uc writes (status | head -0): no EPIPE crash', async () => {
    for (let i = 0; i < 3; i++) {
      const child = spawn(process.execPath, [fileURLToPath(new URL('../../../bin/s2uc.js', import.meta.url)), '--insecure', 'status', '--s2cs', plain.address], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env,
      });
      // Our end of the real pipe closes at once: every write of s2uc's gets EPIPE.
      child.stdout.destroy();
      const p = watchChild('s2uc status', 's2uc --insecure status', child);
      const code = await p.exited;
      assert.equal(code, 0, p.stderr());
      assert.doesNotMatch(p.stderr(), /EPIPE|Unhandled|^\s+at /m, p.stderr());
    }
  });
});

test("a server's refusal spanning lines (a Python traceback) is still one error line", async () => {
  // A stand-in gateway on a real socket, answering the way a failing Python servicer does.
  const server = new grpc.Server();
  const traceback = 'Exception calling application: entry not found\nTraceback (most recent call last):\n  File "s2cs.py", line 80, in release\nKeyError: \'u1\'';
  const refuse = (_call: unknown, cb: grpc.sendUnaryData<never>) => cb({ code: grpc.status.UNKNOWN, details: traceback });
  server.addService(Control.service, { req: refuse, update: refuse, release: refuse, hello: refuse, status: refuse, capabilities: refuse });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  try {
    const r = await run('s2uc', ['--insecure', 'status', '--s2cs', `127.0.0.1:${port}`]);
    assert.equal(r.code, 1, r.stderr);
    const errors = errorLines(r.stderr);
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0]!, /^s2uc: error: s2cs at 127\.0\.0\.1:\d+ refused status: UNKNOWN: Exception calling application: entry not found Traceback .* KeyError: 'u1'$/);
  } finally {
    server.forceShutdown();
  }
});

describe('npm run demo: the same conventions', () => {
  const demo = fileURLToPath(new URL('../../src/demo/run.js', import.meta.url));
  const runDemo = async (args: string[]): Promise<Run> => {
    const p = watchChild('demo', `demo ${args.join(' ')}`, spawn(process.execPath, [demo, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env }));
    return { code: await p.exited, stdout: p.stdout(), stderr: p.stderr() };
  };
  test('--help: usage, options and examples on stdout, exit 0', async () => {
    const r = await runDemo(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: demo /);
    assert.match(r.stdout, /--bytes <size>/);
    assert.match(r.stdout, /\$ npm run demo -- --bytes 256MiB --num-conn 2/);
  });
  for (const [args, expected] of [
    [['--bytes', 'lots'], /^demo: error: option '--bytes <size>' argument 'lots' is invalid\. invalid size "lots".* \(see: demo --help\)$/],
    [['--num-conn', '0'], /^demo: error: option '--num-conn <n>' argument '0' is invalid/],
    [['--bytes', '3', '--num-conn', '4'], /^demo: error: --bytes 3 is less than one byte per connection/],
  ] as const) {
    test(`${args.join(' ')}: one line, exit 2, nothing started`, async () => {
      const r = await runDemo([...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.split('\n').length, 2, r.stderr);
      assert.match(r.stderr.trim(), expected);
    });
  }
});
