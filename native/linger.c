// SO_LINGER for the data plane's sockets, which Node cannot set (no setsockopt).
// With {on, 0}, any close the gateway did not choose (process death included)
// sends a TCP reset, so an application never takes a broken stream for a clean
// end; {off} restores the normal close before a clean end. Plain Node-API: no Node
// or V8 version ties, nothing to link against, and Node's headers optional
// (node_api_min.h). See src/transport/linger.ts.
#define NAPI_VERSION 8
#if __has_include(<node_api.h>)
#include <node_api.h>
#else
#include "node_api_min.h"
#endif
#include <errno.h>
#include <sys/socket.h>

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
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  napi_value result, v;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "getLinger(fd: number)");
    return NULL;
  }
  struct linger l = { 0, 0 };
  socklen_t len = sizeof l;
  int err = getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &len) == 0 ? 0 : errno;
  int32_t values[3] = { err, l.l_onoff, l.l_linger };
  napi_create_array_with_length(env, 3, &result);
  for (uint32_t i = 0; i < 3; i++) {
    napi_create_int32(env, values[i], &v);
    napi_set_element(env, result, i, v);
  }
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "setLinger", NULL, set_linger, NULL, NULL, NULL, napi_enumerable, NULL },
    { "getLinger", NULL, get_linger, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, 2, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
