// SO_LINGER on the data plane's TCP sockets, through a small native addon
// (native/linger.c, built on install by native/build.mjs): Node has no setsockopt.
//
// Why: when a gateway process dies, the kernel closes its sockets with a FIN
// wherever no unread data is left, and the application on the other end takes a
// broken stream for a clean, shorter one. With SO_LINGER {on, 0} any close the
// gateway did not choose sends a reset instead. Before a clean end (the forwarder
// passing on a FIN or an END frame) the option is turned off again: with linger 0,
// closing after end() discards whatever the kernel has not sent yet ('finish'
// means the kernel took the bytes, not that they left).
//
// Without the addon (not built, or an install without scripts) both calls do
// nothing and the data plane behaves as before; s2cs warns once at start.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

interface Addon {
  /** 0, or the errno of a failed setsockopt. */
  setLinger(fd: number, on: boolean): number;
  /** [errno, l_onoff, l_linger]. */
  getLinger(fd: number): [number, number, number];
  /** Keepalive and TCP_USER_TIMEOUT (socket-options.ts); absent from an addon built before them. */
  setKeepAlive?(fd: number, idleS: number, intervalS: number, count: number, userTimeoutMs: number): number;
  /** [errno, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT]. */
  getKeepAlive?(fd: number): [number, number, number, number, number, number];
  /** [errno, fd]: a TCP socket bound to a numeric host and port, not listening (socket-options.ts). */
  reservePort?(host: string, port: number, reusePort?: boolean): [number, number];
  /** 0, or the errno of a failed setsockopt SO_REUSEPORT (socket-options.ts); absent from an addon built before it. */
  setReusePort?(fd: number): number;
  /** [errno, SO_REUSEPORT]. */
  getReusePort?(fd: number): [number, number];
  /** 0, or the errno of a failed listen on a reserved descriptor. */
  listenReserved?(fd: number, backlog: number): number;
  /** 0, or the errno of a failed close. */
  closeFd?(fd: number): number;
}

/** Where the build puts the addon, from dist/src/transport/ (or src/transport/ under a TS loader). */
const ADDON = '../../../native/build/linger.node';

let addon: Addon | undefined;
let loadError: string | undefined;
try {
  addon = createRequire(import.meta.url)(ADDON) as Addon;
} catch (err) {
  const e = err as NodeJS.ErrnoException;
  loadError = e.code === 'MODULE_NOT_FOUND' ? 'not built' : e.message.split('\n')[0];
}

/** Whether the addon loaded: the data plane can turn process death into resets. */
export const lingerAvailable: boolean = addon !== undefined;

/** The addon, for socket-options.ts (undefined when not loaded). */
export function nativeSocketAddon(): Addon | undefined {
  return addon;
}

/**
 * Why the addon is not there (undefined when it is), with what to do: for the
 * one warning s2cs logs at start.
 */
export function lingerUnavailable(): string | undefined {
  if (addon) return undefined;
  return (
    `the SO_LINGER addon (native/build/linger.node) is not loaded (${loadError ?? 'unknown reason'}): ` +
    'if this gateway process is killed, local applications see a clean end of stream instead of a reset, ' +
    "and data connections get Node's keepalive (idle time only, no TCP_USER_TIMEOUT), so a dead peer or a black-holed path " +
    'is noticed by the kernel only after its retransmissions give up (many minutes; the WAN heartbeat still notices it within --wan-dead-after); ' +
    'build it with `npm run build:native` in the scistream package (needs a C compiler: cc, gcc or g++)'
  );
}

export function errnoError(errno: number, syscall: string, option = 'SO_LINGER'): NodeJS.ErrnoException {
  const code = getSystemErrorName(-errno);
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${option}: ${code}`);
  err.code = code;
  err.errno = -errno;
  err.syscall = syscall;
  return err;
}

/** Sets SO_LINGER {on, 0} or {off} on a descriptor; throws the errno's error. Throws if the addon is absent. */
export function setLinger(fd: number, on: boolean): void {
  if (!addon) throw new Error(lingerUnavailable());
  const errno = addon.setLinger(fd, on);
  if (errno !== 0) throw errnoError(errno, 'setsockopt');
}

/** The descriptor's SO_LINGER as {on, seconds}; throws the errno's error. Throws if the addon is absent. */
export function getLinger(fd: number): { on: boolean; seconds: number } {
  if (!addon) throw new Error(lingerUnavailable());
  const [errno, on, seconds] = addon.getLinger(fd);
  if (errno !== 0) throw errnoError(errno, 'getsockopt');
  return { on: on !== 0, seconds };
}

interface Handle {
  fd?: number;
  /** A TLS socket's handle: the TCP handle under it. */
  _parent?: Handle;
}

/** The TCP descriptor under `socket` (a TLS socket's is its TCP handle's), if it has one. */
export function socketFd(socket: Socket): number | undefined {
  let handle = (socket as unknown as { _handle?: Handle | null })._handle ?? undefined;
  for (let depth = 0; handle && depth < 3; depth++) {
    if (typeof handle.fd === 'number' && handle.fd >= 0) return handle.fd;
    handle = handle._parent;
  }
  return undefined;
}

function apply(socket: Socket, on: boolean): void {
  if (!addon) return;
  const fd = socketFd(socket);
  if (fd === undefined) return;
  // Best effort, per connection: a socket the peer has already closed may refuse,
  // and then its close does not matter any more.
  addon.setLinger(fd, on);
}

/** From now on, a close the gateway did not choose (its death included) resets the connection. */
export function resetOnClose(socket: Socket): void {
  apply(socket, true);
}

/** Before ending `socket` cleanly: its close sends every byte, then a FIN. */
export function closeCleanly(socket: Socket): void {
  apply(socket, false);
}
