// One listener, every worker (issue 22): the listener a stream's connections arrive
// at is opened by each of the gateway's local workers (s2cs --workers N), on the
// same address and port with SO_REUSEPORT, and the kernel spreads the connections
// over them by their addresses (a hash of the 4-tuple): no process in the data path.
//
// The worker whose slice of --port-range holds the port "owns" it: it binds the port
// as for any stream, without SO_REUSEPORT (so that the bind fails if anything else,
// a program or a socket a released stream left on another worker, holds the port),
// sets SO_REUSEPORT on the bound socket and listens. The other workers then "join":
// they bind the same port with SO_REUSEPORT, which the kernel allows only while
// every socket on it has SO_REUSEPORT and the same effective uid. A spare port is
// bound without it and never joinable; only a stream's shared listeners are, and
// only by processes of the gateway's user (docs/deployment.md says so).
import type { Socket } from 'node:net';
import type { Address } from '../protocol/address.js';
import { listenTcpOn, type TcpListener } from '../transport/index.js';
import { closeReserved, listenReserved, reservePort, reusePortNative, setReusePort } from '../transport/socket-options.js';

/** Node's default backlog, as listenTcp's listeners get. */
export const BACKLOG = 511;

/** Why listeners cannot be shared here (undefined: they can), for a refusal that says what to do. */
export function sharedListenersUnavailable(): string | undefined {
  if (reusePortNative()) return undefined;
  return (
    'listeners shared by workers need the native addon (native/build/linger.node) with SO_REUSEPORT, not loaded here; ' +
    'build it with `npm run build:native` and restart the gateway'
  );
}

/** A descriptor bound to `port`, ready to listen: the owner's (SO_REUSEPORT set after the bind) or a joiner's (set before). */
export function bindShared(host: string, port: number, join: boolean): number {
  const fd = reservePort(host, port, join);
  if (!join) shareReserved(fd);
  return fd;
}

/** Makes a bound descriptor joinable (SO_REUSEPORT); on failure it is closed here and the errno's error thrown. */
export function shareReserved(fd: number): void {
  try {
    setReusePort(fd);
  } catch (err) {
    closeReserved(fd);
    throw err;
  }
}

/**
 * Listens on a descriptor from bindShared (or a spare given SO_REUSEPORT): Node owns
 * it from now on. On failure the descriptor is closed and the errno's error thrown.
 */
export function listenShared(
  fd: number,
  address: Address,
  options: { highWaterMark: number },
  onConnection: (socket: Socket) => void,
  onError: (err: Error) => void,
): TcpListener {
  listenReserved(fd, BACKLOG);
  return listenTcpOn(fd, address, options, onConnection, onError);
}
