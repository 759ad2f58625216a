// The CLIs as a user runs them, for tests: one program to completion, and a plain-text-control
// s2cs on loopback with a range of free ports.
import { freePort, freePortRange, spawnCli, type Proc } from '../../src/demo/procs.js';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `program args` to its end (the test's environment). */
export async function runCli(program: 's2cs' | 's2uc' | 's2app', args: string[]): Promise<CliRun> {
  const p = spawnCli(program, args);
  const code = await p.exited;
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** `s2cs start --insecure` on 127.0.0.1, a free control port and `ports` free data ports, plus `extra`; resolves once ready. */
export async function startCliGateway(extra: string[] = [], ports = 8): Promise<{ proc: Proc; address: string }> {
  const port = await freePort();
  const range = await freePortRange(ports);
  const proc = spawnCli('s2cs', ['start', '--insecure', '--port', String(port), '--listener-ip', '127.0.0.1', '--port-range', `${range.first}-${range.last}`, ...extra]);
  await proc.waitFor(/s2cs ready/);
  return { proc, address: `127.0.0.1:${port}` };
}
