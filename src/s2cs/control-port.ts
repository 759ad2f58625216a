// How the control port lets go of connections it cannot use: the grpc-js server
// options that close idle, silent and broken HTTP/2 connections. TLS handshake
// time and cipher suites are set with the credentials (security/control-tls.ts).
import type * as grpc from '@grpc/grpc-js';
import { HANDSHAKE_TIMEOUT_MS } from '../security/control-tls.js';

export const CONTROL_PORT_DEFAULTS = {
  /** A connection with no call in flight for this long is closed (GOAWAY, then the socket). */
  idleTimeoutMs: 300_000,
  /** Time to finish a TLS handshake, and to answer an HTTP/2 PING. */
  handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
  /**
   * How often the server pings each connection to learn that it is still alive. Short, so that a
   * broken or silent connection is gone within seconds (2 s + the handshake timeout); a PING is
   * 17 bytes each way, and idle connections are closed after idleTimeoutMs anyway.
   */
  keepaliveIntervalMs: 2_000,
  /** Per-connection HTTP/2 session memory, in MiB (Node's own default; grpc-js lifts it to unlimited). */
  maxSessionMemoryMiB: 10,
} as const;

export interface ControlPortLimits {
  idleTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  keepaliveIntervalMs?: number;
}

/**
 * grpc-js server options for the control port.
 *
 * Why the keepalive PING is needed, not only the idle timeout (Node 20's http2,
 * not grpc-js): when nghttp2 meets a connection error in what a peer sent (bad
 * HPACK, a frame longer than allowed, ...) it queues a GOAWAY and stops wanting
 * input. Node sends that GOAWAY, then stops reading the socket and tells
 * JavaScript nothing: no 'error', no 'goaway', no 'close' on the session, and the
 * peer's FIN is never read. grpc-js keeps no timer on a session by default, so
 * the socket stayed open for ever. Such a session never sends again, so a PING
 * it is given goes unanswered, and grpc-js's keepalive then destroys it and frees
 * the socket: a broken connection lasts at most keepaliveInterval + handshakeTimeout.
 * The same PING closes a plain connection that never sent an HTTP/2 preface.
 */
export function controlServerOptions(limits: ControlPortLimits = {}): grpc.ServerOptions {
  const idle = limits.idleTimeoutMs ?? CONTROL_PORT_DEFAULTS.idleTimeoutMs;
  return {
    'grpc.max_connection_idle_ms': idle,
    'grpc.keepalive_time_ms': limits.keepaliveIntervalMs ?? CONTROL_PORT_DEFAULTS.keepaliveIntervalMs,
    'grpc.keepalive_timeout_ms': limits.handshakeTimeoutMs ?? CONTROL_PORT_DEFAULTS.handshakeTimeoutMs,
    'grpc-node.max_session_memory': CONTROL_PORT_DEFAULTS.maxSessionMemoryMiB,
    // Channelz (not served here) keeps a registry entry and trace per connection; none needed.
    'grpc.enable_channelz': 0,
  };
}
