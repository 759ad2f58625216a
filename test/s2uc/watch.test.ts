// `s2uc status --watch` as a process against real s2cs processes: a block per sample when
// stdout is not a terminal, one JSON line per sample with --json (rates between samples
// included), a gateway that goes down and comes back, Ctrl-C ending it with exit 0, and the
// picture redrawn in place on a pseudo-terminal (Python's pty module).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { BIN_DIR, freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';
import { inboundRequest } from '../../src/s2uc/flows.js';

async function startS2cs(port?: number): Promise<{ proc: Proc; address: string; port: number }> {
  port ??= await freePort();
  const range = await freePortRange(4);
  const proc = spawnCli('s2cs', ['start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`]);
  await proc.waitFor(/s2cs ready/);
  return { proc, address: `127.0.0.1:${port}`, port };
}

const escape = (s: string) => s.replace(/[.]/g, '\\.');
const count = (text: string, re: RegExp) => (text.match(new RegExp(re.source, 'gm')) ?? []).length;

test('not a terminal: a block per interval; a gateway down is an error line and is shown again once it is back; Ctrl-C exits 0', async () => {
  const a = await startS2cs();
  const bPort = await freePort();
  const bAddress = `127.0.0.1:${bPort}`;
  let b: Awaited<ReturnType<typeof startS2cs>> | undefined;
  const watch = spawnCli('s2uc', ['--insecure', 'status', '--s2cs', a.address, '--s2cs', bAddress, '--watch', '--interval', '0.5']);
  try {
    await watch.waitFor(/^--- \d{4}-\d\d-\d\dT[^\n]*\n(?:(?!^--- )[^])*^--- /m, { stream: 'stdout' });
    assert.match(watch.stdout(), new RegExp(`^gateway ${escape(a.address)}: 0 streams`, 'm'));
    await watch.waitFor(new RegExp(`s2uc: error: cannot reach s2cs at ${escape(bAddress)}`), { stream: 'stderr' });
    assert.doesNotMatch(watch.stdout(), new RegExp(`gateway ${escape(bAddress)}`));
    b = await startS2cs(bPort);
    const from = watch.stdout().length;
    await watch.waitFor(new RegExp(`^gateway ${escape(bAddress)}: 0 streams`, 'm'), { stream: 'stdout', from, timeoutMs: 15_000 });
    assert.equal(await watch.stop('SIGINT'), 0, watch.describe());
    assert.ok(count(watch.stdout(), /^--- /) >= 3, watch.describe());
    // Every block shows the gateway that stayed up.
    assert.equal(count(watch.stdout(), /^--- /), count(watch.stdout(), new RegExp(`^gateway ${escape(a.address)}:`)), watch.describe());
  } finally {
    await watch.stop('SIGKILL');
    await a.proc.stop();
    await b?.proc.stop();
  }
});

/** A producer that keeps sending (64 KiB every 20 ms) until the test ends. */
async function tricklingProducer(): Promise<{ server: Server; address: string; close: () => void }> {
  const sockets = new Set<Socket>();
  const chunk = Buffer.alloc(64 * 1024, 7);
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    const timer = setInterval(() => s.write(chunk), 20);
    s.on('close', () => {
      clearInterval(timer);
      sockets.delete(s);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    server,
    address: `127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

interface Line {
  at: string;
  intervalS: number;
  gateways: { s2cs: string; error?: string; streams?: { uid: string; bytesFromTarget: number; sampled?: { fromTargetBps: number; toTargetBps: number; seconds: number } }[] }[];
}

test('--json --watch: one JSON line per sample; a stream carrying data gets the rate between samples', async () => {
  const a = await startS2cs();
  const producer = await tricklingProducer();
  let consumer: Socket | undefined;
  const watch = spawnCli('s2uc', ['--insecure', 'status', '--s2cs', a.address, '--watch', '--interval', '0.5', '--json']);
  try {
    const side = await inboundRequest(a.address, [producer.address], { numConn: 1 }, { insecure: true, deadlineMs: 10_000 });
    const [host, port] = [side.listeners[0]!.slice(0, side.listeners[0]!.lastIndexOf(':')), Number(side.listeners[0]!.slice(side.listeners[0]!.lastIndexOf(':') + 1))];
    consumer = connect({ host, port });
    consumer.on('data', () => undefined).on('error', () => undefined);
    const from = watch.stdout().length;
    await watch.waitFor(/"sampled":\{[^}]*"fromTargetBps":[1-9][^\n]*\n[^\n]*"sampled":\{[^}]*"fromTargetBps":[1-9]/, { stream: 'stdout', from, timeoutMs: 20_000 });
    assert.equal(await watch.stop('SIGINT'), 0, watch.describe());
    const lines = watch.stdout().trim().split('\n').map((l) => JSON.parse(l) as Line);
    assert.ok(lines.length >= 3);
    for (const l of lines) {
      assert.equal(l.intervalS, 0.5);
      assert.ok(!Number.isNaN(Date.parse(l.at)));
      assert.deepEqual(l.gateways.map((g) => g.s2cs), [a.address]);
    }
    const rows = lines.flatMap((l) => l.gateways[0]!.streams!.filter((s) => s.uid === side.uid));
    const sampled = rows.filter((s) => s.sampled && s.sampled.fromTargetBps > 0);
    assert.ok(sampled.length >= 1, watch.stdout());
    // 64 KiB every 20 ms is about 3 MB/s; the sampled rate is of that order, not a count of bytes.
    for (const s of sampled) assert.ok(s.sampled!.fromTargetBps > 100_000 && s.sampled!.fromTargetBps < 100_000_000, JSON.stringify(s));
    assert.equal(rows[0]!.sampled, undefined, 'no rate before there are two samples');
  } finally {
    consumer?.destroy();
    producer.close();
    await watch.stop('SIGKILL');
    await a.proc.stop();
  }
});

test('on a terminal: redrawn in place, cut to its size, Ctrl-C restores the cursor and exits 0', async () => {
  const a = await startS2cs();
  const down = `127.0.0.1:${await freePort()}`;
  try {
    const script = fileURLToPath(new URL('../../../test/s2uc/pty_run.py', import.meta.url));
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(
        'python3',
        [script, '3', '12', '70', process.execPath, `${BIN_DIR}s2uc.js`, '--insecure', 'status', '--s2cs', a.address, '--s2cs', down, '--watch', '--interval', '0.5'],
        { timeout: 30_000 },
        (err, out) => (err ? reject(err) : resolve(out)),
      ),
    );
    const r = JSON.parse(stdout) as { code: number; output: string };
    assert.equal(r.code, 0, r.output);
    const out = r.output;
    assert.ok(out.includes('\x1b[?25l\x1b[2J'), 'hides the cursor and clears the screen once');
    assert.ok(count(out, /\x1b\[Hs2uc status: every 0\.5 s/) >= 2, `redrawn from the top: ${JSON.stringify(out)}`);
    assert.match(out, new RegExp(`gateway ${escape(a.address)}: 0 streams`));
    assert.match(out, new RegExp(`gateway ${escape(down)}: error: cannot reach`));
    // No line wider than the terminal: the redraw counts on it.
    const drawn = out.split(/\r?\n/).filter((l) => l.includes('\x1b[K'));
    assert.ok(drawn.some((l) => l.endsWith('...\x1b[K')), 'long lines are cut');
    for (const line of drawn) assert.ok(line.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').length <= 70, line);
    assert.ok(out.trimEnd().endsWith('\x1b[?25h'), 'the cursor is shown again');
  } finally {
    await a.proc.stop();
  }
});
