// The applications the reference's `appctrl create-appctrl` starts: an iperf3 server
// for a producer, an iperf3 client (reverse mode: the server sends) for a consumer.
// As there, they run on after appctrl exits, in their own process group, their output
// in server_output.txt / client_output.txt in the current directory.
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import { parseAddress } from '../protocol/address.js';

export interface Started {
  pid: number;
  /** The command line, as the reference prints it. */
  command: string;
  output: string;
}

/** Whether something accepts connections on localhost:port (the reference's check before it starts a server). */
export function portInUse(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host });
    s.setTimeout(1000);
    const done = (used: boolean) => {
      s.destroy();
      resolve(used);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.once('timeout', () => done(false));
  });
}

/** Starts `argv` detached, stdout and stderr to `output`; resolves once it was spawned (or fails to be). */
function startDetached(argv: string[], output: string): Promise<number> {
  const fd = openSync(output, 'w');
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd] });
    return new Promise((resolve, reject) => {
      child.once('error', (err: NodeJS.ErrnoException) => reject(new Error(err.code === 'ENOENT' ? `${argv[0]} is not installed (or not on PATH)` : `cannot start ${argv[0]}: ${err.message}`)));
      child.once('spawn', () => {
        child.unref();
        resolve(child.pid!);
      });
    });
  } finally {
    closeSync(fd);
  }
}

/** `iperf3 -s -p PORT`, unless something already listens there (then an error saying so). */
export async function startIperfServer(port: number, output = 'server_output.txt'): Promise<Started> {
  if (await portInUse(port)) throw new Error(`port ${port} is already in use: stop what listens there, or give another port`);
  const argv = ['iperf3', '-s', '-p', String(port)];
  return { pid: await startDetached(argv, output), command: argv.join(' '), output };
}

/**
 * `iperf3 -t SECONDS -c HOST -p PORT -R` after `delayS` seconds (the reference waits 10 s
 * for the streams to be set up). The wait is the process's own (`sh`, replaced by
 * iperf3), so that the one process group holds it from the start.
 */
export async function startIperfClient(target: string, opts: { delayS: number; seconds: number }, output = 'client_output.txt'): Promise<Started> {
  const { host, port } = parseAddress(target, 'TARGET');
  const iperf = ['iperf3', '-t', String(opts.seconds), '-c', host, '-p', String(port), '-R'];
  const argv = opts.delayS > 0 ? ['sh', '-c', 'sleep "$0" && exec "$@"', String(opts.delayS), ...iperf] : iperf;
  return { pid: await startDetached(argv, output), command: iperf.join(' '), output };
}
