// docs/migrating.md puts the Python reference's documented commands beside ours. This runs every
// command block of the page, in page order, as the page says, and checks what the page says
// they print and how they exit. Blocks run in network namespaces named after the machine the
// reference's docs run them on, holding those docs' own addresses, so their lines run as written:
// the tutorial's producer, producers2, consumers2 and consumer, and `quickstart`, one host whose
// loopback is the quickstart's localhost, where a real OpenID Provider stands in for Globus Auth.
// A block's info string says what to expect (see test/support/doc-blocks.ts): `on=HOST`, `exit=N`
// (default 0), `out="regex"` (stdout and stderr), `bg="regex"` (runs on in the background once that
// appears; with `startonly`, is stopped then), `set="NAME=regex"`, `set2=...` (the first group, for
// later blocks as $NAME), `sub="TEXT>NAME ..."` (the test puts $NAME's value where the page writes TEXT: values
// only a run knows, such as the provider's client id), `browser` (a scripted browser approves the
// login URL the command prints), `timeout=s`; `name=X` on a background block and `await=X` on a
// later one: after that later block, X must end with exit 0, and its `final="NAME=regex"` sets $NAME.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { watchChild, type Proc } from '../../src/demo/procs.js';
import { docBlocks, type DocBlock } from '../support/doc-blocks.js';
import { FlatLab } from '../support/flat-lab.js';
import type { IdpInfo } from '../support/idp-process.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PAGE = join(ROOT, 'docs', 'migrating.md');

/** The reference tutorial's machines (docs/guides/tutorials.md there) with its addresses, and the quickstart's one host. */
const HOSTS = {
  producer: ['192.168.10.10'],
  producers2: ['192.168.10.11'],
  consumers2: ['192.168.30.10'],
  consumer: ['192.168.20.10'],
  quickstart: ['192.168.50.10'],
} as const;

let lab: FlatLab;
let idp: Proc;
const vars = new Map<string, string>();
const background: Proc[] = [];
const named = new Map<string, { proc: Proc; block: DocBlock }>();

before(async () => {
  lab = new FlatLab(HOSTS);
  await lab.setup();
  // The provider where the quickstart's programs reach it: on that host's loopback.
  const child = spawn('ip', ['netns', 'exec', lab.ns('quickstart'), process.execPath, fileURLToPath(new URL('../support/idp-process.js', import.meta.url))], { stdio: ['pipe', 'pipe', 'pipe'] });
  idp = watchChild('OpenID Provider (in quickstart)', 'idp-process.js', child);
  const info = JSON.parse((await idp.waitFor(/^(\{.*\})$/m, { timeoutMs: 30_000 }))[1]!) as IdpInfo;
  vars.set('ISSUER', info.issuer);
  vars.set('CLI_CLIENT_ID', info.cliClient);
  vars.set('GW_CLIENT_ID', info.gwClient);
  vars.set('GW_CLIENT_SECRET', info.gwSecret);
  vars.set('SCOPE', info.scope);
  vars.set('INTROSPECTION_URL', info.introspectionUrl);
}, { timeout: 120_000 });

after(async () => {
  await Promise.all(background.map((p) => lab.stop(p)));
  idp?.child.stdin?.end();
  await idp?.stop('SIGTERM', 5000);
  await lab?.destroy();
}, { timeout: 120_000 });

/** The block's text with the run's values in place of what the page writes. */
function script(b: DocBlock): string {
  let text = b.body;
  for (const pair of (b.attrs.get('sub') ?? '').split(/\s+/).filter(Boolean)) {
    const [from, name] = pair.split('>');
    const value = vars.get(name!);
    assert.ok(from && value !== undefined, `line ${b.line}: sub "${pair}" names no known value`);
    text = text.split(from).join(value);
  }
  return text;
}

async function approveLogin(p: Proc, where: string): Promise<void> {
  const url = (await p.waitFor(/(http:\/\/127\.0\.0\.1:\d+\/\S+)/, { timeoutMs: 30_000 }))[1]!;
  const from = idp.stdout().length;
  idp.child.stdin!.write(`approve ${url}\n`);
  const m = await idp.waitFor(/^(approved|not approved: .*)$/m, { from, timeoutMs: 30_000 });
  assert.equal(m[1], 'approved', `${where}: the browser could not approve ${url}`);
}

async function runBlock(b: DocBlock): Promise<void> {
  const where = `docs/migrating.md line ${b.line} (${b.section})`;
  const host = b.attrs.get('on')!;
  assert.ok(host in HOSTS, `${where}: on=${host} is not one of ${Object.keys(HOSTS).join(', ')}`);
  const p = lab.shell(host, script(b), Object.fromEntries(vars));
  const timeoutMs = Number(b.attrs.get('timeout') ?? 60) * 1000;
  if (b.flags.has('browser')) await approveLogin(p, where);
  const bg = b.attrs.get('bg');
  if (bg !== undefined) {
    await p.waitFor(new RegExp(bg), { timeoutMs }).catch((err: Error) => assert.fail(`${where}: ${err.message}\n${p.describe()}`));
    if (b.flags.has('startonly')) await lab.stop(p);
    else background.push(p);
    const name = b.attrs.get('name');
    if (name !== undefined) named.set(name, { proc: p, block: b });
  } else {
    const timer = setTimeout(() => void lab.stop(p), timeoutMs);
    const code = await p.exited;
    clearTimeout(timer);
    assert.equal(code, Number(b.attrs.get('exit') ?? 0), `${where}: exit code\n${p.describe()}`);
  }
  setVars(b, p, 'set', where);
  const awaited = b.attrs.get('await');
  if (awaited !== undefined) {
    const other = named.get(awaited);
    assert.ok(other, `${where}: await=${awaited} names no earlier background block`);
    const timer = setTimeout(() => void lab.stop(other.proc), timeoutMs);
    const code = await other.proc.exited;
    clearTimeout(timer);
    assert.equal(code, 0, `${where}: ${awaited} (line ${other.block.line}) exit code\n${other.proc.describe()}`);
    setVars(other.block, other.proc, 'final', `line ${other.block.line}`);
  }
}

/** The `<prefix>="NAME=regex"` attributes (`set`, `set2`, ...): $NAME is the first group's match in the output. */
function setVars(b: DocBlock, p: Proc, prefix: string, where: string): void {
  const output = `${p.stdout()}\n${p.stderr()}`;
  const out = prefix === 'set' ? b.attrs.get('out') : undefined;
  if (out !== undefined) assert.match(output, new RegExp(out), `${where}: output\n${p.describe()}`);
  for (const [key, set] of b.attrs) {
    if (!new RegExp(`^${prefix}\\d*$`).test(key)) continue;
    const eq = set.indexOf('=');
    const m = new RegExp(set.slice(eq + 1)).exec(output);
    assert.ok(m?.[1], `${where}: nothing matched ${set.slice(eq + 1)} to set $${set.slice(0, eq)}\n${p.describe()}`);
    vars.set(set.slice(0, eq), m[1]);
  }
}

test('every command block of docs/migrating.md runs as the page says', { timeout: 600_000 }, async () => {
  const blocks = docBlocks(readFileSync(PAGE, 'utf8')).filter((b) => b.lang === 'sh');
  assert.ok(blocks.length >= 20, `found ${blocks.length} command blocks`);
  const unrun = blocks.filter((b) => !b.attrs.has('on'));
  assert.deepEqual(unrun.map((b) => `line ${b.line}`), [], 'every command block says where it runs (on=...)');
  for (const b of blocks) {
    try {
      await runBlock(b);
    } catch (err) {
      // What the gateways and servers said meanwhile is usually the cause.
      const context = background.map((p) => `${p.describe().slice(-3000)}`).join('\n');
      throw Object.assign(err as Error, { message: `${(err as Error).message}\n=== background processes:\n${context}` });
    }
  }
});
