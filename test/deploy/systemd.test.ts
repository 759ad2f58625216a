// deploy/systemd: the units pass `systemd-analyze verify` without a warning, and keep
// the settings the deployment guide relies on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const UNITS = join(ROOT, 'deploy', 'systemd');

/** [Service] settings of a unit: key -> values (a key may repeat). */
function settings(text: string, section = 'Service'): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = header[1]!;
      continue;
    }
    if (current !== section) continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

function one(s: Map<string, string[]>, key: string): string {
  const v = s.get(key);
  assert.ok(v && v.length === 1, `${key}= is set once (got ${JSON.stringify(v)})`);
  return v[0]!;
}

test('systemd-analyze verify accepts every unit without a warning (ExecStart pointed at this checkout)', () => {
  const probe = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  assert.equal(probe.status, 0, `this test needs systemd-analyze (Debian package systemd; scripts/test-packages.sh installs it): ${probe.error?.message ?? probe.stderr}`);
  const dir = mkdtempSync(join(tmpdir(), 'scistream-units-'));
  try {
    const names: string[] = [];
    for (const file of readdirSync(UNITS).filter((f) => f.endsWith('.service'))) {
      // verify checks that ExecStart's program exists: the units name the installed one
      // (npm install -g, prefix /usr); here it is this checkout's bin/.
      const text = readFileSync(join(UNITS, file), 'utf8').replace(/\/usr\/bin\/(s2cs|s2ds)\b/g, (_m, p: string) => join(ROOT, 'bin', `${p}.js`));
      // A template is verified as one of its instances.
      const name = file.endsWith('@.service') ? file.replace('@.service', '@eth1.service') : file;
      writeFileSync(join(dir, name), text);
      names.push(name);
    }
    assert.deepEqual(names.sort(), ['s2cs.service', 's2ds.service', 's2ds@eth1.service']);
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...names.map((n) => join(dir, n))], { encoding: 'utf8', cwd: dir });
    // An unknown or misspelt key is only a warning (exit 0): no output at all is the bar.
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'systemd-analyze verify printed warnings');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const [file, program] of [['s2cs.service', 's2cs'], ['s2ds.service', 's2ds'], ['s2ds@.service', 's2ds']] as const) {
  test(`${file}: the installed program under a dedicated user, hardened, restarted on failure`, () => {
    const s = settings(readFileSync(join(UNITS, file), 'utf8'));
    // The program itself, so that systemd's signals reach it (not npx, not a shell).
    assert.match(one(s, 'ExecStart'), new RegExp(`^/usr/bin/${program} start --config /etc/scistream/`));
    assert.equal(one(s, 'User'), 'scistream');
    assert.equal(one(s, 'NoNewPrivileges'), 'yes');
    assert.equal(one(s, 'ProtectSystem'), 'strict');
    assert.equal(one(s, 'ProtectHome'), 'yes');
    assert.equal(one(s, 'PrivateTmp'), 'yes');
    assert.match(one(s, 'StateDirectory'), /^scistream\/s2(cs|ds)/);
    assert.ok(Number(one(s, 'LimitNOFILE')) >= 16_384, 'room for thousands of data connections');
    assert.equal(one(s, 'Restart'), 'on-failure');
    if (program === 's2cs') {
      // Workers outlive a crash or a SIGUSR2 exit of s2cs; the cgroup must not be killed then.
      assert.equal(one(s, 'KillMode'), 'process');
      assert.equal(one(s, 'ExecReload'), '/bin/kill -HUP $MAINPID');
    }
  });
}
