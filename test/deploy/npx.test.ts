// `npx s2cs` from the repository root, as the README runs the programs: on a fresh machine
// (npm's cache empty) npm 11 links the checkout into npx's cache and runs its `prepare`
// there. That must neither rebuild nor delete dist/: two gateways started at the same
// moment both come up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePortRange, watchChild, type Proc } from '../../src/demo/procs.js';
import { alive } from '../support/process.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
// What a fresh clone has: no node_modules, no build output.
const NOT_CLONED = /^(node_modules|dist|dist\.[^/]*|\.git|native\/build)(\/|$)/;
const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dirname(process.execPath)}:/usr/bin:/bin` };
for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k];

let dir: string;
let repo: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'scistream-npx-'));
  repo = join(dir, 'repo');
  cpSync(ROOT, repo, { recursive: true, filter: (src) => !NOT_CLONED.test(relative(ROOT, src)) });
  // --prefer-offline: the dependencies' tarballs come from npm's cache, as in install.test.ts.
  const ci = spawnSync('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: repo, encoding: 'utf8', env, timeout: 180_000 });
  assert.equal(ci.status, 0, `npm ci failed:\n${ci.stdout}\n${ci.stderr}`);
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('two `npx s2cs start` at the same moment, npm cache empty: both come up, dist/ is not rebuilt', async () => {
  const marker = join(repo, 'dist', 'src', 's2cs', 'cli.js');
  const built = statSync(marker);
  const cache = join(dir, 'npm-cache'); // empty: the first npx on a fresh machine
  const gateways: { proc: Proc; pid: number }[] = [];
  try {
    for (const name of ['a', 'b']) {
      const range = await freePortRange(2);
      // Its own process group: npx runs npm, which runs s2cs under a shell.
      const child = spawn('npx', ['s2cs', 'start', '--insecure', '--port', '0', '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, '--workers', '0', '--state-dir', join(dir, `state-${name}`)], {
        cwd: repo,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...env, npm_config_cache: cache, npm_config_update_notifier: 'false' },
      });
      gateways.push({ proc: watchChild(`npx s2cs (${name})`, 'npx s2cs start', child), pid: child.pid! });
    }
    await Promise.all(gateways.map(({ proc }) => proc.waitFor(/s2cs ready/, { stream: 'stderr', timeoutMs: 45_000 })));
    const after = statSync(marker);
    assert.equal(after.ino, built.ino, 'dist/ was not replaced');
    assert.equal(after.mtimeMs, built.mtimeMs, 'dist/ was not rebuilt');
  } finally {
    for (const { pid } of gateways) if (alive(pid)) process.kill(-pid, 'SIGTERM');
    await Promise.all(gateways.map(({ proc }) => proc.stop('SIGTERM', 10_000)));
    for (const { pid } of gateways) if (alive(pid)) process.kill(-pid, 'SIGKILL');
  }
});
