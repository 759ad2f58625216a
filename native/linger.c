// SO_LINGER for the data plane's sockets, which Node cannot set (no setsockopt).
// With {on, 0}, any close the gateway did not choose (process death included)
// sends a TCP reset, so an application never takes a broken stream for a clean
// end; {off} restores the normal close before a clean end. Plain Node-API: no Node
// or V8 version ties, nothing to link against, and Node's headers optional
// (node_api_min.h). See src/transport/linger.ts.
//
// Also TCP keepalive and TCP_USER_TIMEOUT, whose intervals Node cannot set (its
// setKeepAlive sets the idle time only): a data connection whose peer died or
// whose path black-holes its packets then fails within about --wan-dead-after,
// not after the kernel's 15 minutes of retransmissions. See
// src/transport/socket-options.ts.
//
// Also a port held without listening (reservePort, listenReserved): a TCP socket
// bound to the data server's address but not listening, which Node cannot make
// (its bind always listens). The kernel answers a SYN to it with a reset, so a
// client is refused before anything is accepted, and the port stays the
// gateway's until a stream takes it. See src/transport/socket-options.ts.
//
// Also SO_REUSEPORT, which Node 20 cannot set: the listener a stream's connections
// arrive at is opened by every local worker (s2cs --workers), and the kernel
// spreads the connections over them (setReusePort on the first worker's bound
// socket, reservePort(..., true) for the others). See src/s2ds/shared-listeners.ts.
#define NAPI_VERSION 8
#if __has_include(<node_api.h>)
#include <node_api.h>
#else
#include "node_api_min.h"
#endif
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

// The getters' one argument, fd: false (with a TypeError saying `usage` thrown) when it is not a number.
static bool fd_argument(napi_env env, napi_callback_info info, const char *usage, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], fd) != napi_ok) {
    napi_throw_type_error(env, NULL, usage);
    return false;
  }
  return true;
}

// The getters' answer: a JS array of `n` int32 values.
static napi_value int32_array(napi_env env, const int32_t *values, uint32_t n) {
  napi_value result, v;
  napi_create_array_with_length(env, n, &result);
  for (uint32_t i = 0; i < n; i++) {
    napi_create_int32(env, values[i], &v);
    napi_set_element(env, result, i, v);
  }
  return result;
}

// setLinger(fd, on): 0, or the errno of a failed setsockopt.
static napi_value set_linger(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1;
  bool on = false;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    napi_throw_type_error(env, NULL, "setLinger(fd: number, on: boolean)");
    return NULL;
  }
  struct linger l = { .l_onoff = on ? 1 : 0, .l_linger = 0 };
  int err = setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l) == 0 ? 0 : errno;
  napi_create_int32(env, err, &result);
  return result;
}

// getLinger(fd): [errno, l_onoff, l_linger] (errno 0 on success).
static napi_value get_linger(napi_env env, napi_callback_info info) {
  int32_t fd = -1;
  if (!fd_argument(env, info, "getLinger(fd: number)", &fd)) return NULL;
  struct linger l = { 0, 0 };
  socklen_t len = sizeof l;
  int err = getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0 ? 0 : errno;
  int32_t values[3] = { err, l.l_onoff, l.l_linger };
  return int32_array(env, values, 3);
}

// setKeepAlive(fd, idleS, intervalS, count, userTimeoutMs): 0, or the errno of the
// first setsockopt that failed. SO_KEEPALIVE on, TCP_KEEPIDLE/KEEPINTVL/KEEPCNT,
// then TCP_USER_TIMEOUT (0 keeps the kernel's default).
static napi_value set_keep_alive(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  int32_t v[5] = { -1, 0, 0, 0, 0 };
  napi_value result;
  bool ok = napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 5;
  for (size_t i = 0; ok && i < 5; i++) ok = napi_get_value_int32(env, argv[i], &v[i]) == napi_ok;
  if (!ok) {
    napi_throw_type_error(env, NULL, "setKeepAlive(fd, idleS, intervalS, count, userTimeoutMs: number)");
    return NULL;
  }
  int fd = v[0], on = 1;
  int err = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v[1], sizeof v[1]) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v[2], sizeof v[2]) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v[3], sizeof v[3]) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v[4], sizeof v[4]) != 0)
    err = errno;
  napi_create_int32(env, err, &result);
  return result;
}

// getKeepAlive(fd): [errno, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT].
static napi_value get_keep_alive(napi_env env, napi_callback_info info) {
  int32_t fd = -1;
  if (!fd_argument(env, info, "getKeepAlive(fd: number)", &fd)) return NULL;
  static const int levels[5] = { SOL_SOCKET, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP, IPPROTO_TCP };
  static const int names[5] = { SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT };
  int32_t values[6] = { 0, 0, 0, 0, 0, 0 };
  for (int i = 0; i < 5 && values[0] == 0; i++) {
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(fd, levels[i], names[i], &value, &len) != 0) values[0] = errno;
    else values[i + 1] = value;
  }
  return int32_array(env, values, 6);
}

// reservePort(host, port, reusePort?): [errno, fd]. host is a numeric address (an IPv6 one
// may carry a %zone); errno EINVAL for anything else. SO_REUSEADDR is on for the
// bind, as Node sets it, so that connections of an earlier stream still in
// TIME_WAIT do not hold the port; then off, so that no other program (which sets
// it too) can bind the port while it is held. An IPv6 socket is dual-stack
// (IPV6_V6ONLY off), as Node makes it unless told ipv6Only. Close-on-exec: the
// processes s2cs starts do not inherit it. With reusePort, SO_REUSEPORT is set
// before the bind: the socket joins the listeners another socket of this user
// holds on the port (setReusePort), and fails (EADDRINUSE) when the port is
// held by any socket without SO_REUSEPORT or of another user.
static napi_value reserve_port(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char host[128];
  size_t host_len = 0;
  int32_t port = -1;
  bool reuse_port = false;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], host, sizeof host, &host_len) != napi_ok ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok ||
      (argc >= 3 && napi_get_value_bool(env, argv[2], &reuse_port) != napi_ok)) {
    napi_throw_type_error(env, NULL, "reservePort(host: string, port: number, reusePort?: boolean)");
    return NULL;
  }
  int32_t values[2] = { EINVAL, -1 };
  char service[8];
  struct addrinfo hints = { 0 }, *ai = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  if (host_len + 1 >= sizeof host || port < 0 || port > 65535) return int32_array(env, values, 2);
  snprintf(service, sizeof service, "%d", (int)port);
  if (getaddrinfo(host, service, &hints, &ai) != 0 || ai == NULL) return int32_array(env, values, 2);
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_TCP);
  int on = 1, off = 0, err = 0;
  if (fd < 0) err = errno;
  else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
           (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) ||
           (ai->ai_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) != 0) ||
           bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
           setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &off, sizeof off) != 0)
    err = errno;
  freeaddrinfo(ai);
  if (err != 0 && fd >= 0) close(fd);
  values[0] = err;
  values[1] = err == 0 ? fd : -1;
  return int32_array(env, values, 2);
}

// listenReserved(fd, backlog): 0, or the errno of a failed setsockopt or listen.
// SO_REUSEADDR goes back on first, as on every listener Node opens (with it off,
// listen fails while connections of an earlier stream on the port are in TIME_WAIT).
static napi_value listen_reserved(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd = -1, backlog = 0;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &backlog) != napi_ok) {
    napi_throw_type_error(env, NULL, "listenReserved(fd: number, backlog: number)");
    return NULL;
  }
  int on = 1;
  int err = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0 && listen(fd, backlog) == 0 ? 0 : errno;
  napi_create_int32(env, err, &result);
  return result;
}

// setReusePort(fd): 0, or the errno of a failed setsockopt. On a socket already
// bound without it (reservePort): the bind made sure no other socket held the
// port, and from now on sockets of this user bound with SO_REUSEPORT
// (reservePort(..., true)) share its connections once both listen.
static napi_value set_reuse_port(napi_env env, napi_callback_info info) {
  int32_t fd = -1;
  napi_value result;
  if (!fd_argument(env, info, "setReusePort(fd: number)", &fd)) return NULL;
  int on = 1;
  napi_create_int32(env, setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) == 0 ? 0 : errno, &result);
  return result;
}

// getReusePort(fd): [errno, SO_REUSEPORT].
static napi_value get_reuse_port(napi_env env, napi_callback_info info) {
  int32_t fd = -1;
  if (!fd_argument(env, info, "getReusePort(fd: number)", &fd)) return NULL;
  int value = 0;
  socklen_t len = sizeof value;
  int32_t values[2] = { getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &value, &len) == 0 ? 0 : errno, 0 };
  values[1] = value;
  return int32_array(env, values, 2);
}

// closeFd(fd): 0, or the errno of a failed close. For a reserved port no stream took.
static napi_value close_fd(napi_env env, napi_callback_info info) {
  int32_t fd = -1;
  napi_value result;
  if (!fd_argument(env, info, "closeFd(fd: number)", &fd)) return NULL;
  napi_create_int32(env, close(fd) == 0 ? 0 : errno, &result);
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "setLinger", NULL, set_linger, NULL, NULL, NULL, napi_enumerable, NULL },
    { "getLinger", NULL, get_linger, NULL, NULL, NULL, napi_enumerable, NULL },
    { "setKeepAlive", NULL, set_keep_alive, NULL, NULL, NULL, napi_enumerable, NULL },
    { "getKeepAlive", NULL, get_keep_alive, NULL, NULL, NULL, napi_enumerable, NULL },
    { "reservePort", NULL, reserve_port, NULL, NULL, NULL, napi_enumerable, NULL },
    { "listenReserved", NULL, listen_reserved, NULL, NULL, NULL, napi_enumerable, NULL },
    { "closeFd", NULL, close_fd, NULL, NULL, NULL, napi_enumerable, NULL },
    { "setReusePort", NULL, set_reuse_port, NULL, NULL, NULL, napi_enumerable, NULL },
    { "getReusePort", NULL, get_reuse_port, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, 9, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
