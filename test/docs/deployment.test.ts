// docs/deployment.md works as written: its firewall tables (§2), its s2cs start lines (§3), the
// certificate bundle (§4), its stream commands (§6) and the upgrade signal without systemd (§9)
// are read from the guide itself and run, with the guide's example addresses replaced by the lab's
// (test/support/netns.ts), across two facilities whose gateways drop everything the tables do not
// accept. The programs are the installed names (s2cs, s2uc, s2app) on PATH: symlinks to bin/*.js.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN_DIR } from '../../src/demo/procs.js';
import { ADDR, labForSuite, type Host, type NetnsLab, type NsProc } from '../support/netns.js';
import { docBlocks } from '../support/doc-blocks.js';
import { until } from '../support/until.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const GUIDE = readFileSync(join(ROOT, 'docs', 'deployment.md'), 'utf8');
const STEP = { timeout: 120_000 };

/** Debian 12's /etc/nftables.conf as the nftables package installs it. */
const DEBIAN_NFTABLES_CONF = `#!/usr/sbin/nft -f

flush ruleset

table inet filter {
\tchain input {
\t\ttype filter hook input priority filter;
\t}
\tchain forward {
\t\ttype filter hook forward priority filter;
\t}
\tchain output {
\t\ttype filter hook output priority filter;
\t}
}
`;

/** The guide's example addresses and networks, and the lab's in their place (longest first). */
const ADDRESSES: readonly (readonly [string, string])[] = [
  ['10.1.0.0/24', '10.201.1.0/24'],
  ['10.2.0.0/24', '10.201.3.0/24'],
  ['192.0.2.0/24', `${ADDR.user}/32`],
  ['198.51.100.7', ADDR.gwaWan],
  ['203.0.113.9', ADDR.gwbWan],
  ['198.51.100.8', ADDR.gwa2Wan],
  ['10.1.0.2', ADDR.gwa2Lan],
  ['10.1.0.5', ADDR.prod],
  ['10.1.0.1', ADDR.gwaLan],
  ['10.2.0.1', ADDR.gwbLan],
  ['10.2.0.8', ADDR.cons],
];

/** The guide's text with the lab's addresses; and the amount of data cut down (two streams run here). */
function forTheLab(text: string): string {
  let out = text;
  for (const [doc, lab] of ADDRESSES) out = out.replace(new RegExp(`(?<![\\d.])${doc.replace(/[./]/g, '\\$&')}(?![\\d/])`, 'g'), lab);
  return out.replace(/--bytes 1GiB/g, '--bytes 32MiB');
}

/** The fenced code blocks of the section whose heading starts with `<n>.` */
function blocks(section: number): string[] {
  const found = docBlocks(GUIDE).filter((b) => b.section.startsWith(`${section}. `));
  assert.ok(found.length > 0, `docs/deployment.md has code in a section ${section}`);
  return found.map((b) => b.body);
}

/** A command of a shell block, and the host it runs on: the last comment naming one says which. */
interface Line {
  host: Host;
  command: string;
}

const HOST_COMMENTS: readonly (readonly [RegExp, Host])[] = [
  [/^# gwa\b/, 'gwa'],
  [/^# gwa2\b/, 'gwa2'],
  [/^# gwb\b/, 'gwb'],
  [/^# producer/, 'prod'],
  [/^# consumer/, 'cons'],
  [/^# user\b/, 'user'],
];

function lines(block: string): Line[] {
  let host: Host | undefined;
  const out: Line[] = [];
  for (const raw of block.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    if (line.startsWith('#')) {
      host = HOST_COMMENTS.find(([re]) => re.test(line))?.[1] ?? host;
      continue;
    }
    assert.ok(host, `the guide says on which host \`${line}\` runs (a comment before it: # gwa, # gwb, # producer, # consumer, # user)`);
    out.push({ host, command: forTheLab(line) });
  }
  return out;
}

/** What a command that goes on running prints once it is ready; the others run to completion. */
function readiness(command: string): RegExp | undefined {
  if (/^s2cs start\b/.test(command)) return /s2cs ready/;
  if (/^s2ds start\b/.test(command)) return /s2ds ready/;
  if (/^s2app produce\b/.test(command)) return /producer listening on/;
  // Waits for the producer's Hello, which a later line sends.
  if (/^s2uc\b.* request( |$)/.test(command)) return /^uid: \S+$/m;
  return undefined;
}

/** Every code line of the guide, continuation lines (`\\` at the end) joined. */
function allCodeLines(): string[] {
  const code = docBlocks(GUIDE).map((b) => b.body).join('\n');
  return code.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
}

/** The long options a program's --help lists (`s2uc --help` for the global ones). */
const helps = new Map<string, { options: Set<string>; commands: string[] }>();
function helpOptions(program: string, command?: string): { options: Set<string>; commands: string[] } {
  const key = `${program} ${command ?? ''}`;
  const known = helps.get(key);
  if (known) return known;
  const help = execFileSync(process.execPath, [join(BIN_DIR, `${program}.js`), ...(command ? [command] : []), '--help'], { encoding: 'utf8' });
  const options = new Set([...help.matchAll(/^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1]!));
  const commands = [...(help.split('\nCommands:\n')[1] ?? '').matchAll(/^ {2}([a-z][a-z0-9-]*)(?:\|([a-z0-9-]+))?/gm)].flatMap((m) => [m[1]!, ...(m[2] ? [m[2]] : [])]);
  helps.set(key, { options, commands });
  return { options, commands };
}

test("every s2cs, s2ds, s2uc and s2app line of the guide names a command and options that exist", () => {
  const checked: string[] = [];
  const wrong: string[] = [];
  for (const line of allCodeLines()) {
    const words = line.replace(/^sudo /, '').split(/\s+/);
    const program = words[0]!;
    if (!['s2cs', 's2ds', 's2uc', 's2app'].includes(program)) continue;
    const global = helpOptions(program);
    const command = words.slice(1).find((w) => global.commands.includes(w));
    const known = command ? new Set([...global.options, ...helpOptions(program, command).options]) : global.options;
    // The words up to a comment; an option's value after `=` is not part of its name.
    const end = words.indexOf('#');
    for (const w of words.slice(1, end < 0 ? undefined : end).filter((x) => x.startsWith('--'))) {
      const option = w.split('=')[0]!;
      if (!known.has(option)) wrong.push(`${option} in: ${line}`);
    }
    if (command === undefined && !words.includes('--version')) wrong.push(`no command in: ${line}`);
    checked.push(line);
  }
  assert.ok(checked.length >= 15, `found ${checked.length} command lines`);
  assert.deepEqual(wrong, [], 'options or commands the programs do not have');
});

test('every file of the repository the guide names exists', () => {
  const named = [...GUIDE.matchAll(/(?<![\w/.-])((?:deploy|examples|docs|bin)\/[\w@./-]*\w)/g)].map((m) => m[1]!);
  assert.ok(named.length >= 5, named.join(' '));
  const missing = [...new Set(named)].filter((f) => !existsSync(join(ROOT, f)));
  assert.deepEqual(missing, []);
});

describe('docs/deployment.md, run as written across two facilities behind its firewall tables', () => {
  const L = labForSuite({ secondGatewayA: true });
  let work = '';
  let path = '';
  /** gwa's processes share a PID namespace of their own, so that §9's pkill finds only gwa's s2cs. */
  let gwaInit = 0;
  const s2cs = new Map<Host, NsProc>();
  /** s2uc request processes waiting for their Hello: awaited once the next command has run. */
  const waiting: NsProc[] = [];

  before(async () => {
    const lab = L();
    work = join(lab.dir, 'work');
    mkdirSync(work);
    const bin = join(lab.dir, 'bin');
    mkdirSync(bin);
    for (const p of ['s2cs', 's2ds', 's2uc', 's2app']) symlinkSync(join(BIN_DIR, `${p}.js`), join(bin, p));
    path = [bin, dirname(process.execPath), process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(':');
    // Its init is bash, which reaps whatever is left to it, as a host's init does: §9's workers outlive their s2cs.
    const init = 'while :; do sleep 0.2; done';
    const holder = lab.spawn('gwa', ['unshare', '--pid', '--fork', '--mount-proc', '--kill-child', 'bash', '-c', init], { name: "gwa's PID namespace" });
    gwaInit = await until('the PID namespace of gwa', 10_000, async () => {
      const children = readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim();
      return children ? Number(children.split(' ')[0]) : undefined;
    });
  });

  function start(lab: NetnsLab, { host, command }: Line): NsProc {
    // A single command replaces the shell (exec), so that signals reach the program itself.
    const shell = ['sh', '-c', `cd '${work}' && ${/[|;&]/.test(command) ? '' : 'exec '}${command}`];
    const argv = host === 'gwa' ? ['nsenter', `--target=${gwaInit}`, '--pid', '--mount', '--', ...shell] : shell;
    return lab.spawn(host, argv, { name: `${command.split(' ').filter((w, i) => i === 0 || /^(start|request|hello|produce|consume|release)$/.test(w)).slice(0, 2).join(' ')} (in ${host})`, env: { PATH: path } });
  }

  /** `s2uc release UID` without --s2cs released the stream on both gateways. */
  function releasedOnBoth(release: NsProc): void {
    for (const gw of [ADDR.gwaWan, ADDR.gwbWan]) assert.match(release.stdout(), new RegExp(`^Release completed: \\S+ on ${gw.replace(/\./g, '\\.')}:5000$`, 'm'), release.describe());
  }

  /** s2ds agents the guide's commands started. */
  const agents: NsProc[] = [];
  /** The sample producers the guide's commands started (they serve until stopped). */
  const producers: NsProc[] = [];
  async function stopProducers(): Promise<void> {
    await Promise.all(producers.splice(0).map((p) => p.stop()));
  }

  /** Loads a table of the guide on `host` as its section 2 says (twice: loading again replaces it). */
  async function loadTable(host: Host, table: string): Promise<void> {
    const lab = L();
    const file = join(lab.dir, `${host}.nft`);
    writeFileSync(file, forTheLab(table));
    assert.equal((await lab.run(host, ['nft', 'list', 'ruleset'], { check: true })).stdout.trim(), '', `${host} starts with no ruleset, as a fresh Debian 12`);
    for (let i = 0; i < 2; i++) await lab.run(host, ['nft', '-f', file], { check: true });
    const listed = (await lab.run(host, ['nft', 'list', 'ruleset'], { check: true })).stdout;
    assert.match(listed, /hook input priority filter; policy drop;/, listed);
    assert.equal(listed.match(/^table /gm)?.length, 1, `loading twice leaves one table\n${listed}`);
  }

  /** Connection attempts and how each ends: ECONNREFUSED (let through, nothing listens) or ETIMEDOUT (dropped). */
  async function probe(probes: [Host, string, string][]): Promise<void> {
    for (const [from, to, expected] of probes) {
      const r = await L().tryConnect(from, to, 1500);
      assert.equal(r.error, expected, `${from} to ${to}: ${r.output}`);
    }
  }

  /** Ends the s2cs of `host` with SIGTERM (it releases its streams and stops its workers); resolves with its exit code. */
  async function stopS2cs(host: Host): Promise<number> {
    const p = s2cs.get(host)!;
    // gwa's s2cs is the child of nsenter, which forwards no signal: signal it inside its PID namespace.
    if (host === 'gwa') await L().run('gwa', ['nsenter', `--target=${gwaInit}`, '--pid', '--mount', '--', 'pkill', '-TERM', '-x', 's2cs'], { check: true });
    else p.child.kill('SIGTERM');
    return p.exited;
  }

  /** Runs the guide's commands in order: those that go on running until they are ready, the others to exit 0. */
  async function run(commands: Line[]): Promise<NsProc[]> {
    const lab = L();
    const procs: NsProc[] = [];
    for (const line of commands) {
      const p = start(lab, line);
      procs.push(p);
      const ready = readiness(line.command);
      if (ready) {
        await p.waitFor(ready, { timeoutMs: 30_000 });
        if (/^s2uc\b/.test(line.command)) waiting.push(p);
        else if (/^s2cs start/.test(line.command)) s2cs.set(line.host, p);
        else if (/^s2ds start/.test(line.command)) agents.push(p);
        else producers.push(p);
        continue;
      }
      const code = await p.exited;
      assert.equal(code, 0, `\`${line.command}\` on ${line.host} exits 0\n${p.describe()}`);
      for (const w of waiting.splice(0)) assert.equal(await w.exited, 0, `the request ends once it has its Hello\n${w.describe()}`);
    }
    return procs;
  }

  test('§2: the tables load on a fresh host, load again, and drop what they do not name', STEP, async () => {
    const [gwa, gwb] = blocks(2).filter((b) => b.includes('table inet scistream'));
    assert.ok(gwa?.includes('define peer_gw') && gwb?.includes('define lan_ip'), 'section 2 has the table of gwa, then the table of gwb');
    await loadTable('gwa', gwa);
    await loadTable('gwb', gwb);
    // Nothing listens yet: a port the table opens refuses, a port it does not open never answers.
    await probe([
      ['user', `${ADDR.gwaWan}:5000`, 'ECONNREFUSED'],
      ['gwb', `${ADDR.gwaWan}:5100`, 'ECONNREFUSED'],
      ['prod', `${ADDR.gwaLan}:5000`, 'ECONNREFUSED'],
      ['cons', `${ADDR.gwbLan}:5150`, 'ECONNREFUSED'],
      ['user', `${ADDR.gwaWan}:5100`, 'ETIMEDOUT'],
      ['prod', `${ADDR.gwaLan}:5100`, 'ETIMEDOUT'],
      ['user', `${ADDR.gwbWan}:5100`, 'ETIMEDOUT'],
      ['gwa', `${ADDR.gwbWan}:5000`, 'ETIMEDOUT'],
    ]);
  });

  test('§3: s2cs starts on each gateway as written', STEP, async () => {
    const [block] = blocks(3);
    const commands = lines(block!);
    assert.deepEqual(commands.map((c) => c.host), ['gwa', 'gwb']);
    await run(commands);
    assert.equal(s2cs.size, 2);
  });

  test("§4: the users' bundle of the gateways' certificates", STEP, async () => {
    const lab = L();
    // "copy each gateway's tls/cert.pem to the users": the state dir is $SCISTREAM_HOME/s2cs.
    for (const host of ['gwa', 'gwb'] as const) copyFileSync(join(lab.home(host), 's2cs', 'tls', 'cert.pem'), join(work, `${host}-cert.pem`));
    const cat = blocks(4).flatMap((b) => b.split('\n')).map((l) => l.trim()).find((l) => l.startsWith('cat '));
    assert.ok(cat, 'section 4 bundles the certificates with cat');
    await run([{ host: 'user', command: forTheLab(cat) }]);
    assert.equal(readFileSync(join(work, 'gateways.pem'), 'utf8').match(/BEGIN CERTIFICATE/g)?.length, 2);
  });

  /** §6's commands; the uid and the listeners come from the request's output, not from the test. */
  const streamCommands = () => lines(blocks(6)[0]!);

  test('§6: a stream from the producer to the consumer, its ports taken from the request', STEP, async () => {
    const commands = streamCommands();
    assert.deepEqual(commands.map((c) => c.host), ['prod', 'user', 'prod', 'cons', 'user']);
    const procs = await run(commands).finally(stopProducers);
    const [, request, , consumer, release] = procs;
    const listeners = /^consumer connects to: (\S+)$/m.exec(request!.stdout())?.[1];
    assert.equal(listeners?.split(',').length, 2, request!.describe());
    assert.match(consumer!.stdout(), /^verified \S+ MiB over 2 connection\(s\)/m, consumer!.describe());
    releasedOnBoth(release!);
  });

  test('§9: pkill -USR2 -x s2cs on gwa, s2cs started again: the stream set up before goes on', STEP, async () => {
    const all = streamCommands();
    const consume = all.findIndex((c) => c.command.startsWith('s2app consume'));
    try {
      await streamAcrossRestart(all, consume);
    } finally {
      await stopProducers();
    }
  });

  test("§10: the log queries, on the gateways' logs (journalctl -u s2cs -o cat prints the same lines)", STEP, async () => {
    const lab = L();
    const queries = lines(`# gwb\n${blocks(10)[0]!}`).map((l) => l.command);
    assert.equal(queries.length, 2);
    const released = queries.find((q) => q.includes('stream released'))!;
    for (const host of ['gwa', 'gwb'] as const) {
      const log = join(lab.dir, `${host}-s2cs.log`);
      writeFileSync(log, s2cs.get(host)!.stderr());
      for (const query of queries) {
        const r = await run([{ host, command: query.replace('journalctl -u s2cs -o cat', `cat '${log}'`) }]);
        // Each released §9's stream (gwa's second s2cs after adopting it), so each log has the line.
        if (query === released) assert.match(r[0]!.stdout(), /"msg":"stream released"/, r[0]!.describe());
      }
    }
    // "each worker also keeps its own log in the state dir (agents-<port>/worker-N.log)"
    for (const host of ['gwa', 'gwb'] as const) assert.ok(existsSync(join(lab.home(host), 's2cs', 'agents-5000', 'worker-0.log')), `${host}'s worker log`);
    for (const host of ['gwa', 'gwb'] as const) assert.equal(await stopS2cs(host), 0, s2cs.get(host)!.describe());
  });

  test('§7: an s2ds agent on gwa2 behind its table carries part of a stream', STEP, async () => {
    const lab = L();
    const [commands, table] = blocks(7);
    assert.ok(table?.includes('table inet scistream'), 'section 7 has the table of gwa2 after its commands');
    await loadTable('gwa2', table);
    await probe([
      ['user', `${ADDR.gwa2Wan}:7200`, 'ETIMEDOUT'],
      ['prod', `${ADDR.gwa2Lan}:7200`, 'ETIMEDOUT'],
      ['gwa', `${ADDR.gwa2Lan}:7200`, 'ECONNREFUSED'],
      ['gwb', `${ADDR.gwa2Wan}:5100`, 'ECONNREFUSED'],
      ['user', `${ADDR.gwa2Wan}:5100`, 'ETIMEDOUT'],
    ]);
    const [keyPair, agent, gateway] = lines(commands!);
    assert.deepEqual([keyPair, agent, gateway].map((c) => c?.host), ['gwa2', 'gwa2', 'gwa']);
    await run([keyPair!]);
    // "copy ... gwa's tls/cert.pem (from s2cs's state dir) to gwa2 as s2cs-gwa.pem" (gwa2.pem is where gwa reads it).
    copyFileSync(join(lab.home('gwa'), 's2cs', 'tls', 'cert.pem'), join(work, 's2cs-gwa.pem'));
    await run([agent!, gateway!, lines(blocks(3)[0]!)[1]!]);
    // Taken in as soon as it answers, which may come after s2cs is ready.
    await s2cs.get('gwa')!.waitFor(new RegExp(`"address":"${ADDR.gwa2Lan.replace(/\./g, '\\.')}:7200".*data-server agent is up|data-server agent is up.*${ADDR.gwa2Lan.replace(/\./g, '\\.')}:7200`), { stream: 'stderr', timeoutMs: 20_000 });
    try {
      const procs = await run(streamCommands());
      const request = procs[1]!;
      const producerSide = /^producer gateway listeners: (\S+)$/m.exec(request.stdout())?.[1] ?? '';
      assert.match(producerSide, new RegExp(`${ADDR.gwa2Wan.replace(/\./g, '\\.')}:`), `part of the stream is on gwa2\n${request.describe()}`);
      assert.match(procs[3]!.stdout(), /^verified \S+ MiB over 2 connection\(s\)/m, procs[3]!.describe());
      releasedOnBoth(procs[4]!);
    } finally {
      await stopProducers();
    }
    for (const host of ['gwa', 'gwb'] as const) assert.equal(await stopS2cs(host), 0, s2cs.get(host)!.describe());
    for (const a of agents.splice(0)) assert.equal(await a.stop('SIGTERM', 20_000), 0, a.describe());
  });

  /** Sets up §6's stream, restarts gwa's s2cs as §9 says, then runs the rest of §6 through the adopted workers. */
  async function streamAcrossRestart(all: Line[], consume: number): Promise<void> {
    await run(all.slice(0, consume));
    const old = s2cs.get('gwa')!;
    const [signal, restart] = lines(blocks(9)[1]!);
    assert.match(signal!.command, /^pkill /);
    await run([signal!]);
    assert.equal(await old.exited, 0, old.describe());
    assert.match(old.stderr(), /SIGUSR2: stopped without releasing/);
    await run([restart!]);
    assert.match(s2cs.get('gwa')!.stderr(), /adopting it and its streams/, s2cs.get('gwa')!.describe());
    const [consumer, release] = await run(all.slice(consume));
    assert.match(consumer!.stdout(), /^verified \S+ MiB over 2 connection\(s\)/m, consumer!.describe());
    releasedOnBoth(release!);
  }

  test("§2: loaded at boot from Debian 12's /etc/nftables.conf; beside an operator's own drop policy, merged into it as it says", STEP, async () => {
    const lab = L();
    const table = forTheLab(blocks(2).find((b) => b.includes('define peer_gw'))!);
    const file = join(lab.dir, 'scistream.nft');
    writeFileSync(file, table);
    const nft = async (text: string) => {
      const f = join(lab.dir, 'ruleset.nft');
      writeFileSync(f, text);
      await lab.run('gwa', ['nft', '-f', f], { check: true });
    };
    // Nothing listens on gwa now: let through is refused, dropped is no answer.
    const allowed: [Host, string, string][] = [
      ['user', `${ADDR.gwaWan}:5000`, 'ECONNREFUSED'],
      ['gwb', `${ADDR.gwaWan}:5100`, 'ECONNREFUSED'],
      ['user', `${ADDR.gwaWan}:5100`, 'ETIMEDOUT'],
    ];
    // Debian 12's own /etc/nftables.conf, with the include the guide adds at its end.
    await nft(`${DEBIAN_NFTABLES_CONF}\ninclude "${file}"\n`);
    await probe(allowed);
    // Beside an operator's table with a drop policy, the guide's accepts do not count...
    const own = (rules: string) => `flush ruleset\ntable inet filter {\n  chain input {\n    type filter hook input priority filter; policy drop;\n${rules}\n  }\n}\n`;
    await nft(`${own('    ct state established,related accept\n    iif lo accept\n    tcp dport 22 accept')}\ninclude "${file}"\n`);
    await probe([['user', `${ADDR.gwaWan}:5000`, 'ETIMEDOUT'], ['gwb', `${ADDR.gwaWan}:5100`, 'ETIMEDOUT']]);
    // ...so the guide says to add its lines, from \`ct state\` on, with the defines, to the operator's chain.
    const defines = table.split('\n').filter((l) => l.startsWith('define ')).join('\n');
    const body = table.slice(table.indexOf('ct state'), table.lastIndexOf('}', table.lastIndexOf('}') - 1)).trimEnd();
    await nft(`${defines}\n${own(`    ${body}`)}`);
    await probe(allowed);
    await lab.run('gwa', ['nft', 'flush', 'ruleset'], { check: true });
  });
});
