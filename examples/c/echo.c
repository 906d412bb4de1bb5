/*
 * echo.c — a native-ABI Sluice plugin in C using sdk/sluice.h. It is the
 * fixture host/testdata/cguest.wasm. Built with (from the repository root):
 *
 *     clang -O2 --target=wasm32-unknown-unknown -mbulk-memory -nostdlib \
 *           -Wl,--no-entry -Wl,--strip-all -I sdk -o host/testdata/cguest.wasm examples/c/echo.c
 *
 * Method "echo": replace with the message unchanged and header X-Lang: c.
 * tools/call of tool "forbidden": reject with -32001. Otherwise continue.
 */
#define SLUICE_IMPLEMENTATION
#include "sluice.h"

static const char describe_json[] =
    "{\"name\":\"c-echo\",\"version\":\"1.0.0\",\"hooks\":[\"request\",\"response\"]}";

SLUICE_EXPORT("sluice_describe") int64_t sluice_describe(void) {
    return (int64_t)((uint64_t)(uintptr_t)describe_json << 32 | (sizeof describe_json - 1));
}

static int64_t handle(const uint8_t *p, uint32_t len) {
    sluice_envelope e;
    if (!sluice_parse(p, len, &e)) __builtin_trap();
    if (sluice_str_eq(e.method, "echo")) {
        sluice_answer a;
        sluice_answer_begin(&a, SLUICE_REPLACE, 0, 64 + e.body.len);
        sluice_answer_header(&a, SLUICE_HEADER_SET, "X-Lang", 6, "c", 1);
        return sluice_answer_end(&a, e.body.ptr, e.body.len);
    }
    if (sluice_str_eq(e.method, "tools/call") && sluice_str_eq(e.tool, "forbidden")) {
        static const char err[] = "{\"code\":-32001,\"message\":\"tool forbidden\"}";
        sluice_log(SLUICE_INFO, "rejected a forbidden tool", 25);
        sluice_answer a;
        sluice_answer_begin(&a, SLUICE_REJECT, 0, 64 + sizeof err);
        return sluice_answer_end(&a, err, sizeof err - 1);
    }
    return 0; /* continue unchanged */
}

SLUICE_EXPORT("sluice_on_request") int64_t on_request(const uint8_t *p, uint32_t len) { return handle(p, len); }
SLUICE_EXPORT("sluice_on_response") int64_t on_response(const uint8_t *p, uint32_t len) { return handle(p, len); }
