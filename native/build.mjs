// Builds native/build/linger.node (see linger.c) with the machine's C compiler and,
// where found, Node's own headers: no node-gyp, no download, nothing but a compiler. Run on
// install; it never fails the install: without the addon the data plane works as
// before, except that a killed gateway shows as a clean end to local applications
// (s2cs warns at start). `npm run build:native` runs it again and shows why it failed.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'build', 'linger.node');
const strict = process.argv.includes('--strict');

// Node's headers: npm's nodedir if set, else next to this node binary (a Debian or
// NodeSource package puts them in /usr/include/node, a tarball in <prefix>/include/node).
const prefix = dirname(dirname(process.execPath));
const candidates = [process.env.npm_config_nodedir, prefix, '/usr', '/usr/local']
  .filter((d) => typeof d === 'string' && d.length > 0)
  .map((d) => join(d, 'include', 'node'));
let include = candidates.find((d) => existsSync(join(d, 'node_api.h')));

function give_up(why) {
  const message = `scistream: SO_LINGER addon not built (${why}); the data plane works without it, but a killed gateway then shows as a clean end of stream to local applications. Needs a C compiler (cc, gcc or g++); then run \`npm run build:native\`.`;
  console.warn(message);
  process.exit(strict ? 1 : 0);
}

if (process.platform !== 'linux') give_up(`only built on Linux, this is ${process.platform}`);
// Without them, linger.c declares the few Node-API functions it uses itself (node_api_min.h).
if (process.env.SCISTREAM_NO_NODE_HEADERS) include = undefined;

const compilers = [process.env.CC, 'cc', 'gcc', 'g++', 'clang'].filter(Boolean);
const tmp = `${out}.${process.pid}.tmp`;
mkdirSync(dirname(out), { recursive: true });
const failures = [];
for (const cc of compilers) {
  // -x c: g++ compiles it as C too. Node's symbols are resolved when the addon loads.
  const args = ['-x', 'c', '-std=gnu11', '-O2', '-Wall', '-Werror', '-fPIC', '-shared', ...(include ? [`-I${include}`] : []), '-DNODE_GYP_MODULE_NAME=linger', '-o', tmp, join(here, 'linger.c')];
  const r = spawnSync(cc, args, { encoding: 'utf8' });
  if (r.error) {
    failures.push(`${cc}: ${r.error.code ?? r.error.message}`);
    continue;
  }
  if (r.status === 0) {
    renameSync(tmp, out);
    console.log(`scistream: built ${out} with ${cc} (${include ? `Node's headers in ${include}` : 'no Node headers found: native/node_api_min.h'})`);
    process.exit(0);
  }
  rmSync(tmp, { force: true });
  failures.push(`${cc} exited ${r.status}: ${(r.stderr || '').trim().split('\n').slice(0, 3).join(' | ')}`);
  break;
}
give_up(failures.length ? `compiler: ${failures.join('; ')}` : 'no C compiler');
