// The few Node-API declarations linger.c uses, for machines without Node's headers
// (Debian's nodejs ships them in a separate package, libnode-dev). Node-API is a
// stable C ABI: these match js_native_api_types.h / js_native_api.h / node_api.h.
// Where the real node_api.h is found, linger.c uses that instead.
#ifndef SCISTREAM_NODE_API_MIN_H
#define SCISTREAM_NODE_API_MIN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef enum { napi_ok = 0 } napi_status;
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);
typedef enum { napi_default = 0, napi_enumerable = 1 << 1 } napi_property_attributes;
typedef struct {
  const char *utf8name;
  napi_value name;
  napi_callback method;
  napi_callback getter;
  napi_callback setter;
  napi_value value;
  napi_property_attributes attributes;
  void *data;
} napi_property_descriptor;

napi_status napi_get_cb_info(napi_env env, napi_callback_info cbinfo, size_t *argc, napi_value *argv, napi_value *this_arg, void **data);
napi_status napi_get_value_int32(napi_env env, napi_value value, int32_t *result);
napi_status napi_get_value_bool(napi_env env, napi_value value, bool *result);
napi_status napi_throw_type_error(napi_env env, const char *code, const char *msg);
napi_status napi_create_int32(napi_env env, int32_t value, napi_value *result);
napi_status napi_get_value_string_utf8(napi_env env, napi_value value, char *buf, size_t bufsize, size_t *result);
napi_status napi_create_array_with_length(napi_env env, size_t length, napi_value *result);
napi_status napi_set_element(napi_env env, napi_value object, uint32_t index, napi_value value);
napi_status napi_define_properties(napi_env env, napi_value object, size_t property_count, const napi_property_descriptor *properties);

// As node_api.h's NAPI_MODULE: Node calls the init function by this name.
#define NAPI_MODULE(modname, regfunc)                                                            \
  __attribute__((visibility("default"))) int32_t node_api_module_get_api_version_v1(void) {       \
    return NAPI_VERSION;                                                                          \
  }                                                                                               \
  __attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) { \
    return regfunc(env, exports);                                                                 \
  }
#endif
