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
#define NAPI_VERSION 8
#if __has_include(<node_api.h>)
#include <node_api.h>
#else
#include "node_api_min.h"
#endif
#include <errno.h>
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "setLinger", NULL, set_linger, NULL, NULL, NULL, napi_enumerable, NULL },
    { "getLinger", NULL, get_linger, NULL, NULL, NULL, napi_enumerable, NULL },
    { "setKeepAlive", NULL, set_keep_alive, NULL, NULL, NULL, napi_enumerable, NULL },
    { "getKeepAlive", NULL, get_keep_alive, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, 4, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
