// npm's `prepare`: builds dist/ unless it is already newer than every source, and never
// leaves a moment without a complete dist/. npm runs it after `npm ci` in a checkout and
// when packing, but also on every first `npx s2cs` from the checkout: npm 11 links the
// package of the current directory into npx's cache to run its own bin, and runs its
// prepare there. A rebuild then (formerly `rm -rf dist && tsc`) took 15 s and pulled
// dist/ from under the programs already running from it (the other gateway, s2uc).
// `npm run build` still rebuilds from scratch, for a developer who wants exactly that.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const dist = join(root, 'dist');
// tsc writes every output on each (non-incremental) build: one of them dates the build.
const marker = join(dist, 'src', 's2cs', 'cli.js');
const inputs = ['src', 'test', 'bench', 'tsconfig.json'].map((p) => join(root, p));

function newest(path) {
  if (!existsSync(path)) return 0;
  const s = statSync(path);
  if (!s.isDirectory()) return s.mtimeMs;
  let m = s.mtimeMs; // a deleted or renamed file changes its directory's mtime
  for (const entry of readdirSync(path)) m = Math.max(m, newest(join(path, entry)));
  return m;
}

function running(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
}

if (existsSync(marker) && statSync(marker).mtimeMs >= Math.max(...inputs.map(newest))) {
  console.log('scistream: dist/ is up to date with the sources; not rebuilt');
  process.exit(0);
}

// What a killed build left behind (its process is gone).
for (const entry of readdirSync(root)) {
  const pid = Number(/^dist\.(?:build|old)-(\d+)$/.exec(entry)?.[1] ?? 0);
  if (pid > 0 && !running(pid)) rmSync(join(root, entry), { recursive: true, force: true });
}

// Build beside dist/, then swap it in with two renames: a running program sees the old
// files or the new ones, never a half-written or missing tree for more than an instant.
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const fresh = join(root, `dist.build-${process.pid}`);
const old = join(root, `dist.old-${process.pid}`);
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json'), '--outDir', fresh], { stdio: 'inherit' });
if (r.status !== 0) {
  rmSync(fresh, { recursive: true, force: true });
  console.error(`scistream: tsc failed (${r.error?.message ?? `exit ${r.status}`}); dist/ left as it was`);
  process.exit(1);
}
try {
  renameSync(dist, old);
} catch (e) {
  if (e.code !== 'ENOENT') throw e; // no dist/ yet, or another build just moved it
}
try {
  renameSync(fresh, dist);
  console.log('scistream: built dist/');
} catch (e) {
  // Another prepare (a concurrent `npm ci` or npx) put its equally fresh build there first.
  if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
  console.log('scistream: dist/ was built meanwhile by another prepare; kept it');
}
for (const leftover of [fresh, old]) rmSync(leftover, { recursive: true, force: true });
