// appctrl, the reference's application controller: real Hello round trips with a real
// gateway (our s2uc waiting on the other side), and create-appctrl's real iperf3.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { alive } from '../support/process.js';
import { untilTrue } from '../support/until.js';
import { portInUse } from '../../src/app/iperf.js';
import { IntrospectionAuth } from '../../src/auth/introspect.js';
import { Browser, CLI_CLIENT, GW_CLIENT, SCOPE_B, startIdP, type TestIdP } from '../auth/idp.js';

const home = mkdtempSync(join(tmpdir(), 'scistream-appctrl-'));
const env = { ...process.env, SCISTREAM_HOME: home };
const APPCTRL = fileURLToPath(new URL('../../../bin/appctrl.js', import.meta.url));
/** Process groups the tests started (iperf3, detached by appctrl): ended in after(). */
const groups = new Set<number>();
let gw: TestGateway;
let uids = 0;
const newUid = () => `7e1c0000-0000-4000-8000-${String(++uids).padStart(12, '0')}`;

before(async () => {
  gw = await startGateway();
});

after(async () => {
  for (const pgid of groups) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await gw.close();
  rmSync(home, { recursive: true, force: true });
});

/** appctrl in `cwd` (its iperf3 output files land there). */
function appctrl(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [APPCTRL, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

function workdir(name: string): string {
  const dir = join(home, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** s2uc request1 (prod-req) waiting for the producer's Hello. */
function prodReq(uid: string, extra: string[] = []): Proc {
  return spawnCli('s2uc', ['--insecure', 'prod_req', '--s2cs', gw.address, '--uid', uid, '--json', ...extra], { env });
}

test("appctrl mock UID S2CS TOKEN PROD IP: the reference's Hello; s2uc prod-req maps the stream to IP:5074,...", async () => {
  const uid = newUid();
  const req = prodReq(uid);
  try {
    const r = await appctrl(['--insecure', 'mock', uid, gw.address, 'TOKEN', 'PROD', '10.0.0.1'], workdir('mock-prod'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^AppCtrl: SENDING HELLO\nAppCtrl: Hello sent\n/);
    assert.match(r.stdout, /Created AppCtrl instance\n$/);
    assert.equal(await req.exited, 0, req.stderr());
    const side = JSON.parse(req.stdout().trim().split('\n').at(-1)!) as { targets: string[]; listeners: string[] };
    assert.deepEqual(side.targets, ['10.0.0.1:5074', '10.0.0.1:5075', '10.0.0.1:5076', '10.0.0.1:37000', '10.0.0.1:47000']);
    assert.equal(side.listeners.length, 5);
  } finally {
    await req.stop('SIGTERM', 3000);
  }
});

test('appctrl mock ... CONS: the consumer Hello answers with the gateway listeners', async () => {
  const uid = newUid();
  const out = spawnCli('s2uc', ['--insecure', 'outbound-request', '--s2cs', gw.address, '--num-conn', '2', '--json', uid, '127.0.0.1:9'], { env });
  assert.equal(await out.exited, 0, out.stderr());
  const side = JSON.parse(out.stdout().trim().split('\n').at(-1)!) as { listeners: string[] };
  const r = await appctrl(['--insecure', 'mock', uid, gw.address, 'TOKEN', 'CONS'], workdir('mock-cons'));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`consumer connects to: ${side.listeners.join(',')}\n`));
});

test('appctrl: a bad ROLE or CONTROLLER_IP is one usage line; a gateway that is down: 5 tries, then the cause', async () => {
  const dir = workdir('bad');
  const role = await appctrl(['--insecure', 'mock', newUid(), gw.address, 'TOKEN', 'BOTH'], dir);
  assert.equal(role.code, 2);
  assert.equal(role.stderr, 'appctrl: error: ROLE "BOTH" is neither PROD nor CONS\n');
  const ip = await appctrl(['--insecure', 'mock', newUid(), gw.address, 'TOKEN', 'PROD', 'gw.example'], dir);
  assert.equal(ip.code, 2);
  assert.match(ip.stderr, /^appctrl: error: CONTROLLER_IP "gw.example" is not an IP address/);
  const down = await appctrl(['--insecure', 'mock', newUid(), `127.0.0.1:${await freePort()}`, 'TOKEN', 'PROD'], dir);
  assert.equal(down.code, 1);
  assert.equal(down.stderr.match(/Hello try \d of 5 failed/g)?.length, 4, down.stderr);
  assert.match(down.stderr, /appctrl: error: Hello failed after 5 tries: .*refused/);
  const spaced = await appctrl(['--insecure', 'mock', newUid(), gw.address, 'two words', 'PROD'], dir);
  assert.equal(spaced.code, 2);
  assert.match(spaced.stderr, /^appctrl: error: TOKEN must be printable ASCII without spaces/);
  // The reference's underscore spelling of the command.
  const underscore = await appctrl(['create_appctrl', '--help'], dir);
  assert.equal(underscore.code, 0, underscore.stderr);
  assert.match(underscore.stdout, /^Usage: appctrl create-appctrl /);
  const zmq = await appctrl(['subscribe', '127.0.0.1:7000'], dir);
  assert.equal(zmq.code, 2);
  assert.equal(zmq.stderr, "appctrl: error: subscribe: the reference's ZeroMQ sample application is not kept; use: s2app consume --connect HOST:PORT --bytes SIZE\n");
});

test('create-appctrl ... PROD starts the iperf3 server (and says where the Hello points); ./server.crt is trusted as in the reference', async () => {
  // A TLS gateway, its certificate copied to ./server.crt as the reference's users do.
  const port = await freePort();
  const range = await freePortRange(6);
  const stateDir = join(home, 'gw-tls');
  const s2cs = spawnCli('s2cs', ['start', '--state-dir', stateDir, '--control-host', '127.0.0.1', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--allow-plaintext-data'], { env });
  try {
    await s2cs.waitFor(/s2cs ready/);
    const address = `127.0.0.1:${port}`;
    const dir = workdir('create-prod');
    copyFileSync(join(stateDir, 'tls', 'cert.pem'), join(dir, 'server.crt'));
    const uid = newUid();
    const req = spawnCli('s2uc', ['--server-cert', join(dir, 'server.crt'), 'prod-req', '--s2cs', address, '--uid', uid, '--json'], { env });
    const appPort = await freePort();
    const r = await appctrl(['create-appctrl', uid, address, 'TOKEN', 'PROD', '127.0.0.1', '--app-port', String(appPort)], dir);
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(/pid (\d+)/.exec(r.stdout)?.[1]);
    groups.add(pid);
    assert.match(r.stderr, /appctrl: note: trusting \.\/server\.crt, as the reference did; pass --server-cert FILE to choose another/);
    assert.match(r.stderr, new RegExp(`appctrl: note: the iperf3 server listens on ${appPort} while the Hello names 127.0.0.1 at 5074,5075,5076,37000,47000`));
    assert.match(r.stdout, new RegExp(`iperf3 -s -p ${appPort}\nCreated IperfCtrl instance\n$`));
    assert.equal(await req.exited, 0, req.stderr());
    await untilTrue('the iperf3 server listens', () => alive(pid), 5000);
    let listening = false;
    for (let i = 0; i < 50 && !listening; i++) {
      listening = await portInUse(appPort);
      if (!listening) await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(listening, 'iperf3 -s listens on --app-port');
    // Started twice: the port is taken, and the reference's answer is kept.
    const again = await appctrl(['--insecure', 'iperf-server', String(appPort)], dir);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`port ${appPort} is already in use`));
    process.kill(-pid, 'SIGTERM');
    await untilTrue('the iperf3 server ended', () => !alive(pid), 5000);
    groups.delete(pid);
  } finally {
    await s2cs.stop('SIGTERM', 5000);
  }
});

test('create-appctrl ... CONS: an iperf3 client through the consumer gateway to a real iperf3 server', async () => {
  const dir = workdir('create-cons');
  const serverPort = await freePort();
  const server = spawn('iperf3', ['-s', '-p', String(serverPort)], { detached: true, stdio: 'ignore' });
  groups.add(server.pid!);
  try {
    let up = false;
    for (let i = 0; i < 50 && !up; i++) {
      up = await portInUse(serverPort);
      if (!up) await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(up, 'iperf3 server up');
    const uid = newUid();
    // The reference's outbound command: its --remote_ip/--receiver_ports are not needed here.
    const out = spawnCli('s2uc', ['--insecure', 'outbound_request', '--s2cs', gw.address, '--remote_ip', '127.0.0.1', '--receiver_ports', '5100', '--num_conn', '1', uid, `127.0.0.1:${serverPort}`], { env });
    assert.equal(await out.exited, 0, out.stderr());
    const started = Date.now();
    const r = await appctrl(['--insecure', 'create-appctrl', uid, gw.address, 'TOKEN', 'CONS', '--delay', '0', '--time', '2'], dir);
    assert.equal(r.code, 0, r.stderr);
    const pid = Number(/pid: (\d+)/.exec(r.stdout)?.[1]);
    groups.add(pid);
    assert.match(r.stdout, /iperf3 -t 2 -c 127\.0\.0\.1 -p \d+ -R\nCreated IperfCtrl instance\n$/);
    await untilTrue('the iperf3 client finished', () => !alive(pid), 30_000);
    const output = readFileSync(join(dir, 'client_output.txt'), 'utf8');
    assert.match(output, /iperf Done\./, output);
    assert.match(output, /receiver/, output);
    process.stderr.write(`# iperf3 through the gateway finished ${Date.now() - started} ms after create-appctrl: ${output.split('\n').find((l) => l.includes('receiver'))?.trim()}\n`);
    groups.delete(pid);
  } finally {
    try {
      process.kill(-server.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
    groups.delete(server.pid!);
  }
});

test('appctrl --help and every command\'s --help show examples; no arguments is usage (exit 2)', async () => {
  const dir = workdir('help');
  const top = await appctrl(['--help'], dir);
  assert.equal(top.code, 0);
  const commands = [...top.stdout.matchAll(/^ {2}([a-z][\w-]*) /gm)].map((m) => m[1]!).filter((c) => c !== 'help');
  assert.deepEqual(commands, ['mock', 'create-appctrl', 'iperf-server', 'iperf-client', 'subscribe', 'run-producer']);
  for (const cmd of commands) {
    const h = await appctrl([cmd, '--help'], dir);
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, new RegExp(`Examples:\n {2}\\$ appctrl ${cmd} `), h.stdout);
  }
  const bare = await appctrl([], dir);
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /^Usage: appctrl /);
});

test('appctrl against a gateway that checks tokens: TOKEN is the application secret s2uc wrote; a wrong one is refused at once, naming the cause', async () => {
  const idp: TestIdP = await startIdP();
  const checking = await startGateway({ auth: new IntrospectionAuth({ introspectionUrl: idp.introspectionUrl, clientId: GW_CLIENT, clientSecret: idp.gwSecret, scope: SCOPE_B, cacheMaxSeconds: 0 }) });
  const dir = workdir('tokens');
  const scistream = join(dir, '.scistream');
  mkdirSync(scistream, { recursive: true, mode: 0o700 });
  writeFileSync(
    join(scistream, 'config.toml'),
    `[auth]\nissuer = "${idp.issuer}"\nclient_id = "${CLI_CLIENT}"\nredirect_uri = "${idp.redirectUri}"\nscopes = ["openid"]\n[servers."${checking.address}"]\nscope = "${SCOPE_B}"\n`,
  );
  const userEnv = { ...process.env, SCISTREAM_HOME: scistream };
  const reqs: Proc[] = [];
  try {
    const login = spawnCli('s2uc', ['login', '--device'], { env: userEnv });
    await new Browser('alice').run((await login.waitFor(/^ {2}(http\S+)$/m, { stream: 'stderr' }))[1]!);
    assert.equal(await login.exited, 0, login.stderr());

    const uid = newUid();
    const secretFile = join(dir, 'prod.secret');
    const req = spawnCli('s2uc', ['--insecure', 'prod-req', '--s2cs', checking.address, '--uid', uid, '--num-conn', '2', '--app-secret-file', secretFile, '--json'], { env: userEnv });
    reqs.push(req);
    let secret = '';
    await untilTrue('s2uc wrote the application secret', () => {
      try {
        secret = readFileSync(secretFile, 'utf8').trim();
      } catch {
        secret = '';
      }
      return secret !== '';
    }, 20_000);
    const ok = await appctrl(['--insecure', 'mock', uid, checking.address, secret, 'PROD', '127.0.0.1'], dir);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(await req.exited, 0, req.stderr());
    const side = JSON.parse(req.stdout().trim().split('\n').at(-1)!) as { targets: string[] };
    assert.equal(side.targets[0], '127.0.0.1:5074');

    const uid2 = newUid();
    const req2 = spawnCli('s2uc', ['--insecure', 'prod-req', '--s2cs', checking.address, '--uid', uid2, '--num-conn', '1', '--app-secret-file', join(dir, 'prod2.secret')], { env: userEnv });
    reqs.push(req2);
    await untilTrue('the second request is under way', () => checking.server.table.size >= 2, 20_000);
    const bad = await appctrl(['--insecure', 'mock', uid2, checking.address, 'not-the-secret', 'PROD', '127.0.0.1'], dir);
    assert.equal(bad.code, 1);
    assert.doesNotMatch(bad.stderr, /Hello try/, 'a refused secret is not tried again');
    assert.match(bad.stderr, /^appctrl: error: .*the application secret does not match stream/m);
  } finally {
    for (const r of reqs) await r.stop('SIGTERM', 5000);
    await checking.close();
    await idp.close();
  }
});
