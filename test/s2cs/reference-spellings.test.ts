// The Python reference's s2cs command lines, as its docs write them (tutorials, quickstart,
// authentication guide, troubleshooting), on real s2cs processes: each one serves with the same
// meaning, or exits 2 with one line saying what to type. Loopback and free ports only; the
// introspection case runs against the tests' own OpenID Provider, never an external address.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { BIN_DIR, freePortRange, spawnCli, watchChild, type Proc } from '../../src/demo/procs.js';
import { ControlConnection, RemoteError } from '../../src/protocol/client.js';
import { createSelfSigned } from '../../src/security/certificates.js';
import { GLOBUS_INTROSPECTION_URL, REFERENCE_TYPES, translateReferenceArgs } from '../../src/s2cs/reference-flags.js';
import { GW_CLIENT, SCOPE_A, startIdP, type TestIdP } from '../auth/idp.js';
import { requireNetns } from '../support/netns.js';

const home = mkdtempSync(join(tmpdir(), 'scistream-ref-s2cs-'));
const env: NodeJS.ProcessEnv = { ...process.env, SCISTREAM_HOME: home };
delete env.S2CS_CLIENT_SECRET;
after(() => rmSync(home, { recursive: true, force: true }));

const running = new Set<Proc>();
after(async () => {
  for (const p of running) await p.stop('SIGTERM', 5000);
});

/** bin/s2cs.js with `args` exactly as typed, in `cwd`. */
function s2cs(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Proc {
  const child = spawn(process.execPath, [`${BIN_DIR}s2cs.js`, ...args], { cwd: opts.cwd ?? home, stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? env });
  const p = watchChild('s2cs', `s2cs ${args.join(' ')}`, child);
  running.add(p);
  void p.exited.then(() => running.delete(p));
  return p;
}

/** Starts a reference line (with loopback, a free range and no workers added) and waits until it serves. */
async function serving(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ proc: Proc; address: string }> {
  const range = await freePortRange(4);
  const proc = s2cs([...args, `--port-range=${range.first}-${range.last}`, '--workers=0'], opts);
  const port = (await proc.waitFor(/s2cs ready: control on [^\s"]+:(\d+)/, { timeoutMs: 20_000 }))[1];
  return { proc, address: `127.0.0.1:${port}` };
}

/** The log lines (JSON: stderr is a pipe) with their level and message. */
function logLines(proc: Proc): { level: number; msg: string }[] {
  return proc
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: number; msg: string });
}

const TYPE_NOTICE =
  /^--type Haproxy: accepted and ignored: this s2cs runs no Haproxy; its built-in data server \(s2ds\) forwards every stream\. A stream set up by our s2uc request \(two gateways\) gets a TLS 1\.3 WAN leg with per-stream certificates that each gateway pins; the single-gateway flows \(request1, inbound-request, outbound-request\), the reference's clients and reference gateways send no credentials, so those streams' WAN leg is plain TCP, accepted only with --allow-plaintext-data or data listeners on loopback$/;

/** One notice, once, at `level` (40 warn, 30 info). */
function saysOnce(proc: Proc, re: RegExp, level: number): void {
  const hits = logLines(proc).filter((l) => re.test(l.msg));
  assert.equal(hits.length, 1, `one line matching ${re}\n${proc.describe()}`);
  assert.equal(hits[0]!.level, level, hits[0]!.msg);
}

/** `s2uc status` against the gateway, as its user would check it. */
async function statusOk(address: string, trust: string[]): Promise<string> {
  const p = spawnCli('s2uc', ['status', '--s2cs', address, ...trust], { env });
  const code = await p.exited;
  assert.equal(code, 0, p.describe());
  assert.match(p.stdout(), new RegExp(`gateway ${address}: 0 streams`));
  return p.stdout();
}

async function stopped(proc: Proc): Promise<void> {
  assert.equal(await proc.stop('SIGTERM', 10_000), 0, proc.describe());
}

describe('the translation (reference-flags.ts)', () => {
  test('no subcommand is start; s2cs alone, --help and other commands pass as they are', () => {
    assert.deepEqual(translateReferenceArgs([]).args, []);
    assert.deepEqual(translateReferenceArgs(['--help']).args, ['--help']);
    assert.deepEqual(translateReferenceArgs(['start', '--port', '5']).args, ['start', '--port', '5']);
    assert.deepEqual(translateReferenceArgs(['--version', '--port=5']).args, ['--version']);
    assert.deepEqual(translateReferenceArgs(['--port=5', '--listener-ip=127.0.0.1', '--ssl=False']).args, ['start', '--port=5', '--listener-ip=127.0.0.1', '--insecure']);
  });

  test("python-fire's spellings of a boolean and of a value", () => {
    for (const off of [['--ssl=False'], ['--ssl=false'], ['--ssl=0'], ['--ssl', 'False'], ['--nossl']]) {
      assert.ok(translateReferenceArgs(['start', ...off]).args.includes('--insecure'), off.join(' '));
    }
    for (const on of [['--ssl'], ['--ssl=True'], ['--ssl', 'true'], ['--ssl=1']]) {
      assert.ok(!translateReferenceArgs(['start', ...on]).args.includes('--insecure'), on.join(' '));
    }
    assert.match(translateReferenceArgs(['start', '--ssl=maybe']).problem ?? '', /give --ssl=True .* or --ssl=False/);
    for (const t of [['-t', 'haproxy'], ['-tNginx'], ['--type=STUNNEL'], ['--type', 'StunnelSubprocess'], ['--type=haproxysubprocess'], ['--type=s2ds']]) {
      const r = translateReferenceArgs(['start', ...t]);
      assert.deepEqual(r.args, ['start'], t.join(' '));
      assert.equal(r.notices.length, 1);
      // The reference's stunnel types encrypted its own flows' WAN leg: what differs is said.
      assert.equal(/stunnel would encrypt it/.test(r.notices[0]!.text), /stunnel/i.test(t.join(' ')), r.notices[0]!.text);
    }
    assert.deepEqual(translateReferenceArgs(['start', '--server_crt', 'a.pem', '--server-key=b.pem']).args, ['start', '--tls-cert', 'a.pem', '--tls-key', 'b.pem']);
    assert.deepEqual(translateReferenceArgs(['start', '--v']).args, ['start', '--verbose']);
    assert.deepEqual(translateReferenceArgs(['start', '--verbose=False']).args, ['start']);
  });

  test('a client secret goes to the environment, never to the arguments, with a warning naming the safer spellings', () => {
    const r = translateReferenceArgs(['start', '--client_id=abc', '--client_secret', 's3cret']);
    assert.ok(!r.args.some((a) => a.includes('s3cret')));
    assert.deepEqual(r.env, { S2CS_CLIENT_SECRET: 's3cret' });
    assert.ok(r.notices.some((n) => n.level === 'warn' && /use --client-secret-file FILE .* or the environment variable S2CS_CLIENT_SECRET instead/.test(n.text)));
    // The reference's provider and scope when none is named: Globus Auth, scope of the client id.
    assert.deepEqual(r.args, ['start', '--client_id=abc', '--introspection-url', GLOBUS_INTROSPECTION_URL, '--scope', 'https://auth.globus.org/scopes/abc/scistream']);
    const own = translateReferenceArgs(['start', '--client-id', 'abc', '--client-secret=x', '--introspection-url', 'https://idp.example.org/i', '--scope', 's']);
    assert.deepEqual(own.args, ['start', '--client-id', 'abc', '--introspection-url', 'https://idp.example.org/i', '--scope', 's']);
  });
});

test('odd command lines never throw: a translation or one problem line', () => {
  const odd = ['--', '-', '--=', '--type', '-t', '-t=', '--ssl', '--ssl=', '--client-secret', '--client-secret=', '--server_crt', '--verbose=', '--x=y=z', "it's", '-5', '--client_id', '\u0000', '--type=\n'];
  for (let i = 0; i < 2000; i++) {
    const args = Array.from({ length: 1 + (i % 6) }, (_, k) => odd[(i * 7 + k * 13 + (i >> 3)) % odd.length]!);
    for (const line of [args, ['start', ...args], ['check-config', ...args]]) {
      const r = translateReferenceArgs(line, home, {});
      assert.ok(Array.isArray(r.args));
      for (const p of [r.problem, r.lateProblem]) if (p !== undefined) assert.doesNotMatch(p, /[\u0000-\u001f]/, 'one line, no control characters');
    }
  }
});

describe("the reference docs' s2cs lines that name no --listener-ip: one line saying what to type, exit 2", () => {
  const lines = [
    ['-t', 'Haproxy', '--verbose'],
    ['--type=Haproxy'],
    ['--port-range=10000-20000'],
    ['--type=Haproxy', '--ssl=False'],
    ['--verbose', '--type=Haproxy'],
    ['-t', 'Haproxy', '--verbose', '--client_id=YOUR_CLIENT_ID', '--client_secret=YOUR_CLIENT_SECRET'],
    ['-v'],
  ];
  for (const line of lines) {
    test(`s2cs ${line.join(' ')}`, async () => {
      const p = s2cs(line);
      assert.equal(await p.exited, 2, p.describe());
      const err = p.stderr().trim().split('\n');
      assert.equal(err.length, 1, p.describe());
      const withClient = line.some((w) => w.startsWith('--client_secret'));
      const shown = line.filter((w) => !w.startsWith('--client_secret')).join(' ');
      const lead = `s2cs: error: --listener-ip is required: the reference's default 0.0.0.0 cannot be advertised to peers; type: s2cs ${shown}`;
      if (withClient) {
        assert.ok(err[0]!.startsWith(lead), err[0]);
        assert.match(err[0]!, /--client-secret-file=FILE --listener-ip=<this gateway's address that peers reach> \(127\.0\.0\.1 to try it on this host alone\)$/);
      } else {
        // Both lines that work: this host alone, or peers with token checking off knowingly.
        assert.equal(err[0], `${lead} --listener-ip=127.0.0.1 to try it on this host alone, or s2cs ${shown} --listener-ip=<this gateway's address that peers reach> --auth none to let peers in without token checking as the reference does (or a provider: --client-id ID --client-secret-file FILE)`);
      }
      assert.doesNotMatch(err[0]!, /YOUR_CLIENT_SECRET/, 'the secret is not repeated');
      assert.equal(p.stdout(), '');
    });
  }
});

describe('wrong values: one line with the accepted ones, exit 2', () => {
  for (const [line, re] of [
    [['--type=Apache', '--listener-ip=127.0.0.1'], /^s2cs: error: --type Apache is not a data server type: give one of Haproxy, Nginx, Stunnel, StunnelSubprocess, HaproxySubprocess, S2DS \(the reference's types; all are replaced by our built-in data server\), or leave it out$/],
    [['--ssl=maybe', '--listener-ip=127.0.0.1'], /^s2cs: error: --ssl=maybe: give --ssl=True \(TLS, the default\) or --ssl=False/],
    [['--listener-ip=127.0.0.1', '--client-secret'], /^s2cs: error: --client-secret needs a value; better: .*--client-secret-file FILE, or set S2CS_CLIENT_SECRET$/],
    // The reference takes a client id without a secret as no authentication; here it would mean token checks.
    [['--listener-ip=127.0.0.1', '--client_id=abc'], /^s2cs: error: --client-id without a client secret: the reference then checks no tokens, s2cs would check them as that client; add --client-secret-file FILE \(chmod 600 FILE\) or set S2CS_CLIENT_SECRET, or leave out --client-id to check no tokens \(only on a loopback control port\)$/],
    // A misspelt option is said as such before anything else.
    [['--verbos', '--type=Haproxy'], /^s2cs: error: unknown option '--verbos' \(Did you mean --verbose\?\) \(see: s2cs start --help\)$/],
  ] as [string[], RegExp][]) {
    test(`s2cs ${line.join(' ')}`, async () => {
      const p = s2cs(line);
      assert.equal(await p.exited, 2, p.describe());
      assert.match(p.stderr().trim(), re);
      assert.equal(p.stderr().trim().split('\n').length, 1);
    });
  }
  test('every type the reference knows is accepted, in any case', () => {
    for (const t of REFERENCE_TYPES) assert.equal(translateReferenceArgs(['--listener-ip=127.0.0.1', `--type=${t.toUpperCase()}`]).problem, undefined, t);
  });
});

describe("the reference docs' s2cs lines with a listener address serve (loopback in place of the lab's addresses)", () => {
  test('tutorials: s2cs --verbose --port=5007 --listener-ip=IP --type=Haproxy: TLS with the self-signed certificate, debug logs, one --type notice', async () => {
    const { proc, address } = await serving(['--verbose', '--port=0', '--listener-ip=127.0.0.1', '--type=Haproxy']);
    saysOnce(proc, TYPE_NOTICE, 40);
    saysOnce(proc, /^no \.\/server\.crt and \.\/server\.key here \(the reference's default files\): the control channel is TLS with s2cs's own self-signed certificate, tls\/cert\.pem in --state-dir/, 30);
    await statusOk(address, ['--server-cert', join(home, 's2cs', 'tls', 'cert.pem')]);
    // --verbose: debug lines (a producer Hello before its request is held, and logged at debug level).
    const creds = grpc.credentials.createSsl(readFileSync(join(home, 's2cs', 'tls', 'cert.pem')), null, null, { checkServerIdentity: () => undefined });
    const early = new ControlConnection(address, { insecure: false, credentials: creds, retry: false });
    await early.hello({ uid: randomUUID(), role: 'PROD', prod_listeners: ['127.0.0.1:9'] }, 1000).catch(() => undefined);
    early.close();
    await proc.waitFor(/"level":20,.*producer Hello before its request/, { stream: 'stderr', timeoutMs: 5000 });
    await stopped(proc);
  });

  test('troubleshooting: s2cs --type=Haproxy --ssl=False (+ --listener-ip): plain-text control channel with our --insecure warnings', async () => {
    const { proc, address } = await serving(['--type=Haproxy', '--ssl=False', '--listener-ip=127.0.0.1', '--port=0']);
    saysOnce(proc, TYPE_NOTICE, 40);
    saysOnce(proc, /^--ssl=False: plain-text control channel, as our --insecure; our clients need --insecure too$/, 40);
    saysOnce(proc, /^control channel is plain text \(--insecure\)/, 40);
    await statusOk(address, ['--insecure']);
    await stopped(proc);
  });

  test('--ssl False (a separate word) and --listener_ip, --port_range with underscores', async () => {
    const range = await freePortRange(4);
    const proc = s2cs(['--ssl', 'False', '--listener_ip', '127.0.0.1', '--port', '0', '--port_range', `${range.first}-${range.last}`, '--workers', '0', '-v']);
    const port = (await proc.waitFor(/s2cs ready: control on [^\s"]+:(\d+), data listeners on 127\.0\.0\.1 ports (\d+-\d+)/, { timeoutMs: 20_000 }))[1];
    assert.match(proc.stderr(), new RegExp(`ports ${range.first}-${range.last}`));
    await statusOk(`127.0.0.1:${port}`, ['--insecure']);
    await stopped(proc);
  });

  test('./server.crt and ./server.key in the working directory are used, as the reference reads them', async () => {
    const dir = mkdtempSync(join(home, 'cwd-'));
    const { cert, key } = await createSelfSigned({ commonName: 'ref-gw', names: ['127.0.0.1'], validDays: 2 });
    writeFileSync(join(dir, 'server.crt'), cert);
    writeFileSync(join(dir, 'server.key'), key, { mode: 0o600 });
    const { proc, address } = await serving(['-t', 'Haproxy', '--listener-ip=127.0.0.1', '--port=0'], { cwd: dir });
    saysOnce(proc, new RegExp(`^control channel TLS with ${dir}/server\\.crt and ${dir}/server\\.key from the working directory, as the reference reads them \\(ours: --tls-cert FILE --tls-key FILE\\)$`), 30);
    await statusOk(address, ['--server-cert', join(dir, 'server.crt')]);
    await stopped(proc);
  });

  test('--server_crt/--server_key and --server-crt/--server-key are --tls-cert/--tls-key', async () => {
    const dir = mkdtempSync(join(home, 'certs-'));
    const { cert, key } = await createSelfSigned({ commonName: 'ref-gw', names: ['127.0.0.1'], validDays: 2 });
    writeFileSync(join(dir, 'gw.crt'), cert);
    writeFileSync(join(dir, 'gw.key'), key, { mode: 0o600 });
    for (const spelling of [[`--server_crt=${join(dir, 'gw.crt')}`, `--server_key=${join(dir, 'gw.key')}`], ['--server-crt', join(dir, 'gw.crt'), '--server-key', join(dir, 'gw.key')]]) {
      const { proc, address } = await serving(['--listener-ip=127.0.0.1', '--port=0', ...spelling]);
      await statusOk(address, ['--server-cert', join(dir, 'gw.crt')]);
      await stopped(proc);
    }
    // On s2cs start too.
    const { proc, address } = await serving(['start', '--listener-ip', '127.0.0.1', '--port', '0', '--server_crt', join(dir, 'gw.crt'), '--server_key', join(dir, 'gw.key')]);
    await statusOk(address, ['--server-cert', join(dir, 'gw.crt')]);
    await stopped(proc);
  });
});

describe('tutorials: --client-id "abc" --client-secret "xyz": introspection as that confidential client', () => {
  let idp: TestIdP;
  before(async () => {
    idp = await startIdP();
  });
  after(async () => {
    await idp?.close();
  });

  test('tokens are checked at the provider; the secret is accepted with the warning and never logged', async () => {
    // The lab's provider in place of Globus Auth (whose URL is the default): --introspection-url and --scope.
    const { proc, address } = await serving(['--verbose', '--port=0', '--listener-ip=127.0.0.1', '--type=Haproxy', '--client-id', GW_CLIENT, '--client-secret', idp.gwSecret, '--introspection-url', idp.introspectionUrl, '--scope', SCOPE_A, '--ssl=False']);
    saysOnce(proc, /^--client-secret on the command line can be read by every user of this host \(ps, \/proc\) and stays in your shell history; use --client-secret-file FILE \(a file only you can read: chmod 600 FILE\) or the environment variable S2CS_CLIENT_SECRET instead$/, 40);
    const conn = (token?: string) => new ControlConnection(address, { insecure: true, deadlineMs: 10_000, token });
    await assert.rejects(conn().status({ uid: '' }), (err: unknown) => err instanceof RemoteError && err.status === 'UNAUTHENTICATED');
    const token = (await idp.issueToken(SCOPE_A)).access_token;
    const uid = randomUUID();
    const r = await conn(token).req({ uid, role: 'CONS', num_conn: 1, rate: 0 });
    assert.equal(r.listeners.length, 1);
    await conn(token).release({ uid });
    assert.ok(idp.requests('/token/introspection') > 0, 'the provider was asked');
    await stopped(proc);
    assert.ok(!proc.stderr().includes(idp.gwSecret) && !proc.stdout().includes(idp.gwSecret), 'the secret is not in the logs');
  });

  test("only a client id and secret: Globus Auth's introspection URL and the reference's scope, said once (check-config: nothing is contacted)", async () => {
    const p = spawnCli('s2cs', ['check-config', '--listener-ip=127.0.0.1', '--port=0', '-t', 'Haproxy', '--client_id=abc', '--client_secret=xyz', '--ssl=False', '--json'], { env });
    assert.equal(await p.exited, 0, p.describe());
    const settings = (JSON.parse(p.stdout()) as { settings: { key: string; value: unknown }[] }).settings;
    const value = (key: string) => settings.find((s) => s.key === key)?.value;
    assert.equal(value('introspection-url'), GLOBUS_INTROSPECTION_URL);
    assert.equal(value('scope'), 'https://auth.globus.org/scopes/abc/scistream');
    assert.equal(value('client-id'), 'abc');
    assert.equal(value('insecure'), true);
    assert.ok(!p.stdout().includes('xyz') && !p.stderr().includes('xyz'), 'the secret is printed nowhere');
    const lines = p.stderr().trim().split('\n');
    assert.deepEqual(
      lines.map((l) => l.replace(/:.*/, '')),
      ['s2cs', 's2cs', 's2cs', 's2cs'],
    );
    assert.ok(lines.includes('s2cs: warning: --ssl=False: plain-text control channel, as our --insecure; our clients need --insecure too'));
    assert.ok(lines.some((l) => l.startsWith('s2cs: warning: --type Haproxy: accepted and ignored')));
    assert.ok(lines.some((l) => l.startsWith('s2cs: warning: --client-secret on the command line')));
    assert.ok(lines.some((l) => l.startsWith(`s2cs: notice: --client-id: callers' tokens are checked by introspection at ${GLOBUS_INTROSPECTION_URL} (Globus Auth, as the reference does) and must carry scope https://auth.globus.org/scopes/abc/scistream; give --introspection-url and --scope for another provider`)));
  });
});

describe('what is not a start line stays as it was', () => {
  test('s2cs --version and s2cs --version with start options print the version, exit 0', async () => {
    for (const args of [['--version'], ['--version', '--port=5000']]) {
      const p = s2cs(args);
      assert.equal(await p.exited, 0, p.describe());
      assert.match(p.stdout(), /^\d+\.\d+\.\d+/);
    }
  });
  test('s2cs alone: help on stderr, exit 2; s2cs --help: help on stdout, exit 0, with the reference spelling among the examples', async () => {
    const bare = s2cs([]);
    assert.equal(await bare.exited, 2);
    assert.match(bare.stderr(), /Usage: s2cs/);
    const help = s2cs(['--help']);
    assert.equal(await help.exited, 0);
    assert.match(help.stdout(), /\$ s2cs --port=5000 --listener-ip=127\.0\.0\.1 --verbose/);
  });
});

describe("the tutorials' lines exactly as written, in a network namespace that has their address", () => {
  // A namespace of its own: 192.168.10.11 and 192.168.30.10 on its loopback, its own ports (5007, 5100-5200).
  const ns = `refs2cs-${process.pid}`;
  const inNs = (program: 's2cs' | 's2uc', args: string[]): Proc => {
    // Its own process group: the default local workers are ended with it.
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, `${BIN_DIR}${program}.js`, ...args], { cwd: home, stdio: ['ignore', 'pipe', 'pipe'], env, detached: true });
    const p = watchChild(program, `${program} ${args.join(' ')}`, child);
    running.add(p);
    void p.exited.then(() => running.delete(p));
    return p;
  };
  const endGroup = async (p: Proc): Promise<number> => {
    const code = await p.stop('SIGTERM', 10_000);
    try {
      process.kill(-p.pid!, 'SIGKILL');
    } catch {
      // nothing left in the group
    }
    return code;
  };
  before(() => {
    requireNetns();
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    for (const a of ['192.168.10.11/32', '192.168.30.10/32']) execFileSync('ip', ['-n', ns, 'addr', 'add', a, 'dev', 'lo']);
  });
  after(() => {
    execFileSync('ip', ['netns', 'del', ns]);
  });

  test('s2cs --verbose --port=5007 --listener-ip=192.168.10.11 --type=Haproxy: no token checking on an open control port says what to type; with --auth none it serves', async () => {
    const line = ['--verbose', '--port=5007', '--listener-ip=192.168.10.11', '--type=Haproxy'];
    // The reference serves anyone there; ours asks for a provider, or for --auth none knowingly.
    const refused = inNs('s2cs', line);
    assert.equal(await refused.exited, 2, refused.describe());
    const errors = refused.stderr().split('\n').filter((l) => l.startsWith('s2cs: error:'));
    assert.equal(errors.length, 1, refused.describe());
    assert.match(errors[0]!, /^s2cs: error: no authentication provider is configured and the control port would listen on 0\.0\.0\.0, .*or --auth none to run without token checking knowingly .*or --control-host 127\.0\.0\.1 to serve this host only$/);
    const gw = inNs('s2cs', [...line, '--auth', 'none']);
    await gw.waitFor(/s2cs ready: control on 0\.0\.0\.0:5007, data listeners on 192\.168\.10\.11 ports 5100-5200/, { timeoutMs: 20_000 });
    saysOnce(gw, TYPE_NOTICE, 40);
    const st = inNs('s2uc', ['status', '--s2cs', '192.168.10.11:5007', '--server-cert', join(home, 's2cs', 'tls', 'cert.pem')]);
    assert.equal(await st.exited, 0, st.describe());
    assert.match(st.stdout(), /gateway 192\.168\.10\.11:5007: 0 streams, 0 ports reserved, 101 free/);
    assert.equal(await endGroup(gw), 0, gw.describe());
  });

  test('s2cs --verbose --port=5007 --listener-ip=192.168.30.10 --type=Haproxy --client-id "abc" --client-secret "xyz"', async () => {
    // Globus Auth's introspection URL is the default; nothing here reaches it: a call without a token is refused at the gateway.
    const gw = inNs('s2cs', ['--verbose', '--port=5007', '--listener-ip=192.168.30.10', '--type=Haproxy', '--client-id', 'abc', '--client-secret', 'xyz']);
    await gw.waitFor(/s2cs ready: control on 0\.0\.0\.0:5007/, { timeoutMs: 20_000 });
    saysOnce(gw, /^--client-secret on the command line can be read by every user of this host/, 40);
    saysOnce(gw, /^--client-id: callers' tokens are checked by introspection at https:\/\/auth\.globus\.org\/v2\/oauth2\/token\/introspect \(Globus Auth, as the reference does\) and must carry scope https:\/\/auth\.globus\.org\/scopes\/abc\/scistream; give --introspection-url and --scope for another provider$/, 30);
    const st = inNs('s2uc', ['status', '--s2cs', '192.168.30.10:5007', '--server-cert', join(home, 's2cs', 'tls', 'cert.pem')]);
    assert.equal(await st.exited, 1, st.describe());
    assert.match(st.stderr(), /https:\/\/auth\.globus\.org\/scopes\/abc\/scistream/);
    assert.equal(await endGroup(gw), 0, gw.describe());
    assert.ok(!gw.stderr().includes('xyz'), 'the secret is not logged');
  });
});
