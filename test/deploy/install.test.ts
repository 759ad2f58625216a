// `npm install -g` of the packed package puts s2cs, s2ds, s2uc, s2app and appctrl on PATH, and
// the installed s2cs is the process a supervisor starts: a SIGTERM sent to that pid
// releases the streams, stops the workers and exits 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer, type Socket } from 'node:net';
import { freePort, freePortRange, watchChild } from '../../src/demo/procs.js';
import { canConnect } from '../support/sockets.js';
import { alive } from '../support/process.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PROGRAMS = ['s2cs', 's2ds', 's2uc', 's2app', 'appctrl'] as const;
const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

let dir: string;
let prefix: string;
// As a service manager runs it: node found through PATH (the bins start with #!/usr/bin/env node).
const env = { ...process.env, PATH: `${dirname(process.execPath)}:/usr/bin:/bin` };


before(() => {
  dir = mkdtempSync(join(tmpdir(), 'scistream-install-'));
  prefix = join(dir, 'prefix');
  // dist/ is built by `npm test` (and by npm's prepare when packing by hand); packing
  // without scripts leaves this checkout's dist/ alone while other tests use it.
  assert.ok(existsSync(join(ROOT, 'dist', 'src', 's2cs', 'cli.js')), 'dist/ is built (npm run build)');
  const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8', env });
  assert.equal(pack.status, 0, pack.stderr);
  const tgz = join(dir, pack.stdout.trim().split('\n').pop()!);
  assert.ok(existsSync(tgz), pack.stdout);
  // --prefer-offline: the dependencies' tarballs come from npm's cache (npm ci filled
  // it); only their metadata is asked of the registry. --allow-scripts: npm 11 asks
  // which packages may run install scripts; ours builds the SO_LINGER addon.
  const install = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--allow-scripts=scistream', tgz], { cwd: dir, encoding: 'utf8', env, timeout: 300_000 });
  assert.equal(install.status, 0, `npm install -g failed:\n${install.stdout}\n${install.stderr}`);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('the five programs are on PATH after npm install -g, and answer --version and --help', () => {
  assert.deepEqual(readdirSync(join(prefix, 'bin')).sort(), [...PROGRAMS].sort());
  for (const program of PROGRAMS) {
    const bin = join(prefix, 'bin', program);
    const v = spawnSync(bin, ['--version'], { encoding: 'utf8', env });
    assert.equal(v.status, 0, `${program} --version: ${v.stderr}`);
    assert.equal(v.stdout.trim(), version);
    const h = spawnSync(bin, ['--help'], { encoding: 'utf8', env });
    assert.equal(h.status, 0, `${program} --help: ${h.stderr}`);
    assert.match(h.stdout, new RegExp(`^Usage: ${program}`, 'm'));
  }
  // The install script compiled the addon where a C compiler exists (this machine has one).
  if (spawnSync('cc', ['--version']).status === 0) {
    assert.ok(existsSync(join(prefix, 'lib', 'node_modules', 'scistream', 'native', 'build', 'linger.node')), 'native/build/linger.node was built on install');
  }
});

test('the installed s2cs is the process its supervisor starts: SIGTERM to it releases the streams, stops the workers, exits 0', async () => {
  const port = await freePort();
  const range = await freePortRange(4);
  const home = join(dir, 'home');
  // As systemd starts the unit: the installed program, stdio not a terminal, SCISTREAM_HOME as the state.
  const child = spawn(join(prefix, 'bin', 's2cs'), ['start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--workers', '1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...env, SCISTREAM_HOME: home },
  });
  const s2cs = watchChild('installed s2cs', 's2cs start', child);
  // The stream's service: holds what connects until the test ends.
  const held = new Set<Socket>();
  const service = createServer((c) => {
    held.add(c);
    c.on('error', () => {});
  });
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
  const servicePort = (service.address() as { port: number }).port;
  let workerPid = 0;
  try {
    await s2cs.waitFor(/s2cs ready/, { stream: 'stderr', timeoutMs: 30_000 });
    // The pid the supervisor holds runs node with s2cs itself, not a launcher with a child.
    assert.equal(realpathSync(readlinkSync(`/proc/${child.pid}/exe`)), realpathSync(process.execPath));
    assert.match(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8'), /^node\0[^\0]*\/bin\/s2cs\0start\0/);
    workerPid = Number((/"pid":(\d+),"ports"/.exec(s2cs.stderr()) ?? [])[1]);
    assert.ok(workerPid > 0 && alive(workerPid), s2cs.describe());

    const request = spawnSync(join(prefix, 'bin', 's2uc'), ['--insecure', 'inbound-request', '--s2cs', `127.0.0.1:${port}`, '--targets', `127.0.0.1:${servicePort}`, '--num-conn', '1'], { encoding: 'utf8', env: { ...env, SCISTREAM_HOME: home } });
    assert.equal(request.status, 0, request.stderr);
    const listener = /^listeners: (\S+)$/m.exec(request.stdout)?.[1];
    assert.ok(listener, request.stdout);
    assert.equal(await canConnect(listener), true, `the stream listens: ${request.stdout}\n${s2cs.describe()}`);

    child.kill('SIGTERM');
    assert.equal(await s2cs.exited, 0, s2cs.describe());
    assert.match(s2cs.stderr(), /"why":"server shutting down".*"msg":"stream released"/);
    assert.equal(await canConnect(listener), false, 'the listener is closed');
    assert.equal(alive(workerPid), false, 'the worker is stopped');
  } finally {
    await s2cs.stop('SIGKILL', 0);
    // A killed s2cs leaves its workers on purpose (they outlive it); the test ends them.
    if (workerPid > 0 && alive(workerPid)) process.kill(-workerPid, 'SIGKILL');
    for (const c of held) c.destroy();
    service.close();
  }
});
