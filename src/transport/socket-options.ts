// TCP keepalive and TCP_USER_TIMEOUT on every data socket (WAN and LAN, TLS and
// plain, accepted and opened), through the native addon of linger.ts.
//
// Why: without them a connection whose peer vanished (a host that died, a firewall
// that black-holes the path) stays open until the kernel's retransmissions give
// up, about 15 minutes with data in flight and never when idle (measured: a
// consumer hung 21.5 min behind a black-holed WAN leg). With them the kernel
// fails the socket (ETIMEDOUT) after about --wan-dead-after: probes start after
// half of it on an idle connection, and data unacknowledged for all of it ends
// the connection. Not sooner: an outage shorter than --wan-dead-after must lose
// nothing and kill nothing (TCP retransmits through it).
//
// Without the addon Node's setKeepAlive sets the idle time only (the kernel's
// probe interval and count, no user timeout); s2cs and s2ds warn at start.
import type { Socket } from 'node:net';
import { errnoError, nativeSocketAddon, socketFd } from './linger.js';

/** What a data socket is set to for a given --wan-dead-after. */
export interface KeepAlive {
  /** Idle time before the first probe (TCP_KEEPIDLE), seconds. */
  idleS: number;
  /** Between probes (TCP_KEEPINTVL), seconds. */
  intervalS: number;
  /** Unanswered probes before the connection fails (TCP_KEEPCNT). */
  count: number;
  /** Data unacknowledged this long fails the connection (TCP_USER_TIMEOUT), ms. */
  userTimeoutMs: number;
}

/** Probes start after half of `deadAfterMs`; three unanswered ones a sixth apart end it: about deadAfterMs in all. */
export function keepAliveFor(deadAfterMs: number): KeepAlive {
  const s = deadAfterMs / 1000;
  return {
    idleS: Math.max(1, Math.round(s / 2)),
    intervalS: Math.max(1, Math.round(s / 6)),
    count: 3,
    userTimeoutMs: Math.max(1000, Math.round(deadAfterMs)),
  };
}

/** Whether the addon can set the probe interval, count and user timeout here. */
export function keepAliveNative(): boolean {
  return typeof nativeSocketAddon()?.setKeepAlive === 'function';
}

/**
 * Sets keepalive and the user timeout on a data socket (a TLS socket: on its TCP
 * descriptor). Best effort, per connection: a socket already closed by its peer
 * may refuse, and then it does not matter.
 */
export function keepDataSocketAlive(socket: Socket, deadAfterMs: number): void {
  const k = keepAliveFor(deadAfterMs);
  const addon = nativeSocketAddon();
  const fd = socketFd(socket);
  if (addon?.setKeepAlive && fd !== undefined) {
    addon.setKeepAlive(fd, k.idleS, k.intervalS, k.count, k.userTimeoutMs);
    return;
  }
  try {
    socket.setKeepAlive(true, k.idleS * 1000);
  } catch {
    // a socket without a handle any more: nothing to keep alive
  }
}

/** Sets the values on a descriptor; throws the errno's error, or when the addon is absent. */
export function setKeepAlive(fd: number, k: KeepAlive): void {
  const addon = nativeSocketAddon();
  if (!addon?.setKeepAlive) throw new Error('the native addon (native/build/linger.node) with setKeepAlive is not loaded');
  const errno = addon.setKeepAlive(fd, k.idleS, k.intervalS, k.count, k.userTimeoutMs);
  if (errno !== 0) throw errnoError(errno, 'setsockopt', 'keepalive');
}

/** A descriptor's keepalive settings read back; throws the errno's error, or when the addon is absent. */
export function getKeepAlive(fd: number): KeepAlive & { on: boolean } {
  const addon = nativeSocketAddon();
  if (!addon?.getKeepAlive) throw new Error('the native addon (native/build/linger.node) with getKeepAlive is not loaded');
  const [errno, on, idleS, intervalS, count, userTimeoutMs] = addon.getKeepAlive(fd);
  if (errno !== 0) throw errnoError(errno, 'getsockopt', 'keepalive');
  return { on: on !== 0, idleS, intervalS, count, userTimeoutMs };
}

// Ports held without listening (native/linger.c reservePort): a spare data port is
// a bound socket that does not listen, so a connection to it is refused by the
// kernel (ECONNREFUSED at the client) instead of being accepted and then reset,
// and no other program can bind the port meanwhile. A stream that takes the port
// listens on that very socket (listenReserved, then Node's listen({ fd })).

/** Whether the addon can hold ports without listening (an addon built before reservePort cannot). */
export function reservePortNative(): boolean {
  const addon = nativeSocketAddon();
  return typeof addon?.reservePort === 'function' && typeof addon.listenReserved === 'function' && typeof addon.closeFd === 'function';
}

/**
 * Binds a TCP socket to `host` (a numeric address) and `port` without listening;
 * returns its descriptor, which the caller owns: listenReserved then hands it to
 * Node, or closeReserved closes it. Throws the errno's error (EADDRINUSE: another
 * socket holds the port), or when the addon cannot do it. `reusePort`: SO_REUSEPORT
 * before the bind, to join the listeners of a port another socket of this user
 * opened with setReusePort (and only those: any other holder is EADDRINUSE).
 */
export function reservePort(host: string, port: number, reusePort = false): number {
  const addon = nativeSocketAddon();
  if (!addon?.reservePort) throw new Error('the native addon (native/build/linger.node) with reservePort is not loaded');
  if (reusePort && !addon.setReusePort) throw new Error('the native addon (native/build/linger.node) with SO_REUSEPORT is not loaded');
  const [errno, fd] = reusePort ? addon.reservePort(host.replace(/^\[(.*)\]$/, '$1'), port, true) : addon.reservePort(host.replace(/^\[(.*)\]$/, '$1'), port);
  if (errno !== 0) throw errnoError(errno, 'bind', `${host}:${port}`);
  return fd;
}

/** Makes a reserved descriptor listen; on failure it is closed here (the caller owns nothing then) and the errno's error thrown. */
export function listenReserved(fd: number, backlog: number): void {
  const addon = nativeSocketAddon();
  const errno = addon?.listenReserved ? addon.listenReserved(fd, backlog) : -1;
  if (errno === 0) return;
  closeReserved(fd);
  if (errno < 0) throw new Error('the native addon (native/build/linger.node) with listenReserved is not loaded');
  throw errnoError(errno, 'listen', 'a reserved port');
}

/** Closes a reserved descriptor no stream took (best effort: it is the caller's, and closed once). */
export function closeReserved(fd: number): void {
  nativeSocketAddon()?.closeFd?.(fd);
}

// SO_REUSEPORT (native/linger.c): a listener shared by the gateway's local workers
// (s2ds/shared-listeners.ts). The first worker binds the port without it (so that
// nothing else holds the port, and nothing can join a port held as a spare) and
// sets it on the bound socket; the others bind with it and join.

/** Whether the addon can set SO_REUSEPORT (an addon built before it cannot). */
export function reusePortNative(): boolean {
  const addon = nativeSocketAddon();
  return reservePortNative() && typeof addon?.setReusePort === 'function' && typeof addon.getReusePort === 'function';
}

/** Sets SO_REUSEPORT on a reserved (bound, not listening) descriptor; throws the errno's error. */
export function setReusePort(fd: number): void {
  const addon = nativeSocketAddon();
  const errno = addon?.setReusePort ? addon.setReusePort(fd) : -1;
  if (errno < 0) throw new Error('the native addon (native/build/linger.node) with setReusePort is not loaded');
  if (errno !== 0) throw errnoError(errno, 'setsockopt', 'SO_REUSEPORT');
}

/** Whether a descriptor has SO_REUSEPORT on; throws the errno's error, or when the addon cannot tell. */
export function getReusePort(fd: number): boolean {
  const addon = nativeSocketAddon();
  if (!addon?.getReusePort) throw new Error('the native addon (native/build/linger.node) with getReusePort is not loaded');
  const [errno, on] = addon.getReusePort(fd);
  if (errno !== 0) throw errnoError(errno, 'getsockopt', 'SO_REUSEPORT');
  return on !== 0;
}
