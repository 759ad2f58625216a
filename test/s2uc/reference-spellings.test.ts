// The Python reference's s2uc command lines, as its docs write them, against real gateways
// on loopback (an s2cs process with TLS, for --server_cert=FILE; in-process ones otherwise).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { MOCK_UID } from '../../src/s2uc/reference.js';
import { VERSION } from '../../src/version.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { IntrospectionAuth } from '../../src/auth/introspect.js';
import { Browser, CLI_CLIENT, GW_CLIENT, SCOPE_B, startIdP, type TestIdP } from '../auth/idp.js';

const home = mkdtempSync(join(tmpdir(), 'scistream-ref-spellings-'));
const env = { ...process.env, SCISTREAM_HOME: home };
let gw: TestGateway;
let tls: { proc: Proc; address: string; cert: string };

async function s2uc(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnCli('s2uc', args, { env });
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

before(async () => {
  gw = await startGateway();
  const port = await freePort();
  const range = await freePortRange(8);
  const stateDir = join(home, 'gw-tls');
  const proc = spawnCli('s2cs', ['start', '--state-dir', stateDir, '--control-host', '127.0.0.1', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--allow-plaintext-data'], { env });
  await proc.waitFor(/s2cs ready/);
  tls = { proc, address: `127.0.0.1:${port}`, cert: join(stateDir, 'tls', 'cert.pem') };
});

after(async () => {
  await gw.close();
  await tls.proc.stop('SIGTERM', 5000);
  rmSync(home, { recursive: true, force: true });
});

/** The `listener -> target` lines of a single-gateway result. */
const mapping = (stdout: string) => [...stdout.matchAll(/^ {2}(\S+) -> (\S+)$/gm)].map((m) => [m[1]!, m[2]!]);

test('inbound_request --s2cs GW --remote_ip IP --receiver_ports P: the underscore command, its targets', async () => {
  const r = await s2uc(['--insecure', 'inbound_request', '--s2cs', gw.address, '--remote_ip', '10.0.1.5', '--receiver_ports', '5001']);
  assert.equal(r.code, 0, r.stderr);
  const m = mapping(r.stdout);
  assert.equal(m.length, 5, r.stdout); // the reference's --num_conn default
  assert.ok(m.every(([, t]) => t === '10.0.1.5:5001'), r.stdout);
});

test('inbound_request --mock True: the fixed uid, said once; release YOUR_UID --s2cs GW releases it', async () => {
  const r = await s2uc(['--insecure', 'inbound_request', '--s2cs', gw.address, '--remote_ip', '127.0.0.1', '--receiver_ports', '5001,5002', '--num_conn', '2', '--mock', 'True', '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout.trim().split('\n').at(-1)!).uid, MOCK_UID);
  assert.equal(r.stderr.match(/--mock True/g)?.length, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`s2uc: note: --mock True: the stream's uid is ${MOCK_UID}, as the reference's; prefer --uid UID`));
  const rel = await s2uc(['--insecure', 'release', MOCK_UID, '--s2cs', gw.address]);
  assert.equal(rel.code, 0, rel.stderr);
  assert.match(rel.stdout, new RegExp(`Release completed: ${MOCK_UID} on ${gw.address}`));
  // --mock False (and 0) is no mock: a new uid each time.
  const off = await s2uc(['--insecure', 'inbound-request', '--s2cs', gw.address, '--remote_ip', '127.0.0.1', '--receiver_ports', '5001', '--num_conn', '1', '--mock', '0', '--json']);
  assert.equal(off.code, 0, off.stderr);
  assert.notEqual(JSON.parse(off.stdout.trim().split('\n').at(-1)!).uid, MOCK_UID);
  const bad = await s2uc(['--insecure', 'inbound-request', '--s2cs', gw.address, '--mock', 'maybe']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^s2uc: error: option '--mock <bool>' argument 'maybe' is invalid\. "maybe" is not a boolean: give True or False/m);
});

test('outbound_request --remote_ip --receiver_ports UID LISTENER: forwards to LISTENER, one note for the pair', async () => {
  const uid = '4f8583bc-a4d3-11ee-9fd6-034d1fcbd7c4';
  const r = await s2uc(['--insecure', 'outbound_request', '--s2cs', gw.address, '--remote_ip', '192.168.20.10', '--receiver_ports', '5100', '--num_conn', '2', uid, '192.168.10.11:5100']);
  assert.equal(r.code, 0, r.stderr);
  const m = mapping(r.stdout);
  assert.equal(m.length, 2, r.stdout);
  assert.ok(m.every(([, t]) => t === '192.168.10.11:5100'), r.stdout);
  assert.deepEqual(
    r.stderr.split('\n').filter((l) => l.includes('note')),
    ['s2uc: note: --remote_ip/--receiver_ports not needed: the reference sent them in a stand-in Hello that only let its request return; the gateway forwards to 192.168.10.11:5100'],
  );
  assert.equal((await s2uc(['--insecure', 'release', uid, '--s2cs', gw.address])).code, 0);
});

test('inbound-request --remote_ip --s2cs --receiver_ports --server_cert=FILE against a TLS gateway; release <uid> by the record', async () => {
  const r = await s2uc(['inbound-request', '--remote_ip', '127.0.0.1', '--s2cs', tls.address, '--receiver_ports', '5300', `--server_cert=${tls.cert}`, '--num_conn', '1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const uid = JSON.parse(r.stdout.trim().split('\n').at(-1)!).uid as string;
  const rel = await s2uc(['release', uid, `--server_cert=${tls.cert}`]);
  assert.equal(rel.code, 0, rel.stderr);
  assert.match(rel.stdout, new RegExp(`Release completed: ${uid} on ${tls.address}`));
});

test('inbound_request with no services says what to type, in one line', async () => {
  const r = await s2uc(['--insecure', 'inbound_request', '--s2cs', gw.address]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    "s2uc: error: say which services to expose: --targets host:port[,...] or --remote_ip IP --receiver_ports P[,...] (the reference's defaults: --remote_ip localhost --receiver_ports 5074,5075,5076,37000,47000)\n",
  );
});

test('s2uc -v and --version print the version; prod_req and check_auth are commands', async () => {
  for (const flag of ['-v', '--version']) {
    const r = await s2uc([flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), VERSION);
  }
  for (const name of ['prod_req', 'check_auth', 'outbound_request', 'inbound_request']) {
    const r = await s2uc([name, '--help']);
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    assert.match(r.stdout, /^Usage: s2uc /);
  }
  // An unknown underscore word is still unknown, with commander's suggestion.
  const typo = await s2uc(['inbound_reqest']);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /unknown command 'inbound_reqest'/);
});

test('check-auth --scope: the state for that scope, with the login command to run; a Globus id is expanded', async () => {
  const id = 'c42c0dac-0a52-408e-a04f-5d31bfe0aef8';
  const r = await s2uc(['check-auth', '--scope', id]);
  assert.equal(r.code, 1);
  const full = `https://auth.globus.org/scopes/${id}/scistream`;
  assert.equal(r.stderr, `s2uc: note: --scope ${id} taken as ${full} (the scope the reference asked Globus Auth for)\n`);
  assert.match(r.stdout, new RegExp(`scope ${full.replace(/[./]/g, '\\$&')}: no token: run \`s2uc login --scope ${full.replace(/[./]/g, '\\$&')}\``));
});

test('login --scope S, check-auth --scope S, inbound-request --scope S: a real provider and a gateway that checks S', async () => {
  const idp: TestIdP = await startIdP();
  // A gateway that requires SCOPE_B, which config.toml names for no server: only --scope sends it.
  const checking = await startGateway({ auth: new IntrospectionAuth({ introspectionUrl: idp.introspectionUrl, clientId: GW_CLIENT, clientSecret: idp.gwSecret, scope: SCOPE_B, cacheMaxSeconds: 0 }) });
  const dir = join(home, 'scoped');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, 'config.toml'), `[auth]\nissuer = "${idp.issuer}"\nclient_id = "${CLI_CLIENT}"\nredirect_uri = "${idp.redirectUri}"\nscopes = ["openid", "profile", "email"]\n`);
  const scopedEnv = { ...process.env, SCISTREAM_HOME: dir };
  const run = async (args: string[]) => {
    const p = spawnCli('s2uc', args, { env: scopedEnv });
    const code = await p.exited;
    return { code, stdout: p.stdout(), stderr: p.stderr() };
  };
  try {
    const before = await run(['check-auth', '--scope', SCOPE_B]);
    assert.equal(before.code, 1);
    assert.match(before.stdout, /no token: run `s2uc login --scope /);
    const login = spawnCli('s2uc', ['login', '--device', '--scope', SCOPE_B], { env: scopedEnv });
    const url = (await login.waitFor(/^ {2}(http\S+)$/m, { stream: 'stderr' }))[1]!;
    await new Browser('alice').run(url);
    assert.equal(await login.exited, 0, login.stderr());
    const after = await run(['check-auth', '--scope', SCOPE_B]);
    assert.equal(after.code, 0, after.stdout + after.stderr);
    assert.match(after.stdout, new RegExp(`scope ${SCOPE_B.replace(/[./]/g, '\\$&')}: token valid until `));
    assert.doesNotMatch(after.stdout + after.stderr, /eyJ/, 'the token itself is not printed');
    // Without --scope no token is sent, and the gateway refuses; with it the request goes through.
    const without = await run(['--insecure', 'inbound-request', '--s2cs', checking.address, '--remote_ip', '127.0.0.1', '--receiver_ports', '5001', '--num_conn', '1']);
    assert.equal(without.code, 1, without.stderr);
    assert.match(without.stderr, /UNAUTHENTICATED|token/i);
    const withScope = await run(['--insecure', 'inbound_request', '--s2cs', checking.address, '--remote_ip', '127.0.0.1', '--receiver_ports', '5001', '--num_conn', '1', '--scope', SCOPE_B, '--json']);
    assert.equal(withScope.code, 0, withScope.stderr);
    const uid = JSON.parse(withScope.stdout.trim().split('\n').at(-1)!).uid as string;
    assert.equal(checking.server.table.size, 1);
    void uid;
  } finally {
    await checking.close();
    await idp.close();
  }
});
