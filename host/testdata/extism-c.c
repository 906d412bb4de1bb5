/*
 * extism-c.c — an Extism-ABI test guest in C that exercises the host's
 * Extism kernel and user functions, one per JSON-RPC method. It is the
 * fixture host/testdata/extism-c.wasm, built with (from host/testdata):
 *
 *     clang -O2 --target=wasm32-unknown-unknown -mbulk-memory -nostdlib -Wl,--no-entry \
 *           -Wl,--strip-all -o extism-c.wasm extism-c.c
 *
 * Extism's C header is not vendored here: the few imports are declared below.
 * Methods: "kv/incr" and "var/incr" count in the key/value store and in an
 * Extism var and reject with the count as the message; "kv/del" deletes the
 * counter; "config" rejects with config "team"; "log" logs at info; "error"
 * sets an Extism error and returns 1; "http" GETs config "url" and rejects
 * with "STATUS BODY"; "oom" allocates until the host stops it; "spin" never
 * returns; anything else continues.
 */
#include <stdint.h>

#define IMPORT(m, n) __attribute__((import_module(m), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))

IMPORT("extism:host/env", "input_length") uint64_t input_length(void);
IMPORT("extism:host/env", "input_load_u8") uint32_t input_load_u8(uint64_t);
IMPORT("extism:host/env", "alloc") uint64_t alloc(uint64_t);
IMPORT("extism:host/env", "length") uint64_t length(uint64_t);
IMPORT("extism:host/env", "load_u8") uint32_t load_u8(uint64_t);
IMPORT("extism:host/env", "store_u8") void store_u8(uint64_t, uint32_t);
IMPORT("extism:host/env", "output_set") void output_set(uint64_t, uint64_t);
IMPORT("extism:host/env", "error_set") void error_set(uint64_t);
IMPORT("extism:host/env", "config_get") uint64_t config_get(uint64_t);
IMPORT("extism:host/env", "var_get") uint64_t var_get(uint64_t);
IMPORT("extism:host/env", "var_set") void var_set(uint64_t, uint64_t);
IMPORT("extism:host/env", "log_info") void log_info(uint64_t);
IMPORT("extism:host/env", "http_request") uint64_t http_request(uint64_t, uint64_t);
IMPORT("extism:host/env", "http_status_code") int32_t http_status_code(void);
IMPORT("extism:host/user", "kv_get") uint64_t kv_get(uint64_t);
IMPORT("extism:host/user", "kv_set") void kv_set(uint64_t, uint64_t);
IMPORT("extism:host/user", "kv_delete") void kv_delete(uint64_t);

static char buf[4096];
static uint32_t in_len;

static uint32_t slen(const char *s) {
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}

/* put copies n bytes into a new Extism block. */
static uint64_t put(const char *p, uint32_t n) {
    uint64_t off = alloc(n);
    for (uint32_t i = 0; i < n; i++) store_u8(off + i, (uint8_t)p[i]);
    return off;
}

/* get copies an Extism block into dst (at most cap bytes); returns its length. */
static uint32_t get(uint64_t off, char *dst, uint32_t cap) {
    uint32_t n = (uint32_t)length(off);
    for (uint32_t i = 0; i < n && i < cap; i++) dst[i] = (char)load_u8(off + i);
    return n;
}

/* method finds "method":"…" in the input (copied to buf) and returns it. */
static const char *method(uint32_t *n) {
    static const char key[] = "\"method\":\"";
    for (uint32_t i = 0; i + sizeof key - 1 < in_len; i++) {
        uint32_t j = 0;
        while (key[j] && buf[i + j] == key[j]) j++;
        if (key[j]) continue;
        const char *m = buf + i + j;
        *n = 0;
        while (i + j + *n < in_len && m[*n] != '"') (*n)++;
        return m;
    }
    *n = 0;
    return "";
}

static int eq(const char *a, uint32_t n, const char *lit) {
    uint32_t l = slen(lit);
    if (l != n) return 0;
    for (uint32_t i = 0; i < n; i++)
        if (a[i] != lit[i]) return 0;
    return 1;
}

/* reject answers with a JSON-RPC error whose message is msg (no escaping). */
static int32_t reject(const char *msg, uint32_t n) {
    static char out[1024];
    static const char pre[] = "{\"action\":\"reject\",\"error\":{\"code\":-32001,\"message\":\"";
    static const char post[] = "\"}}";
    uint32_t o = 0;
    for (uint32_t i = 0; i < sizeof pre - 1; i++) out[o++] = pre[i];
    for (uint32_t i = 0; i < n && o < sizeof out - 8; i++) out[o++] = msg[i];
    for (uint32_t i = 0; i < sizeof post - 1; i++) out[o++] = post[i];
    output_set(put(out, o), o);
    return 0;
}

static uint32_t utoa(uint32_t v, char *dst) {
    char tmp[12];
    uint32_t n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (uint32_t i = 0; i < n; i++) dst[i] = tmp[n - 1 - i];
    return n;
}

static uint32_t atou(const char *p, uint32_t n) {
    uint32_t v = 0;
    for (uint32_t i = 0; i < n; i++) v = v * 10 + (uint32_t)(p[i] - '0');
    return v;
}

/* incr increments the counter "n" read by getf and written by setf. */
static int32_t incr(uint64_t (*getf)(uint64_t), void (*setf)(uint64_t, uint64_t)) {
    char num[12];
    uint32_t v = 0;
    uint64_t off = getf(put("n", 1));
    if (off) v = atou(num, get(off, num, sizeof num));
    uint32_t n = utoa(v + 1, num);
    setf(put("n", 1), put(num, n));
    return reject(num, n);
}

static int32_t handle(void) {
    in_len = (uint32_t)input_length();
    if (in_len > sizeof buf) in_len = sizeof buf;
    for (uint32_t i = 0; i < in_len; i++) buf[i] = (char)input_load_u8(i);
    uint32_t n;
    const char *m = method(&n);
    if (eq(m, n, "kv/incr")) return incr(kv_get, kv_set);
    if (eq(m, n, "var/incr")) return incr(var_get, var_set);
    if (eq(m, n, "kv/del")) {
        kv_delete(put("n", 1));
        return 0;
    }
    if (eq(m, n, "config")) {
        char v[64];
        uint64_t off = config_get(put("team", 4));
        if (!off) return reject("none", 4);
        return reject(v, get(off, v, sizeof v));
    }
    if (eq(m, n, "log")) {
        const char *msg = "hello from extism-c";
        log_info(put(msg, slen(msg)));
        return 0;
    }
    if (eq(m, n, "error")) {
        error_set(put("boom", 4));
        return 1;
    }
    if (eq(m, n, "http")) {
        static char req[512], body[256];
        static const char pre[] = "{\"method\":\"GET\",\"url\":\"";
        uint32_t o = 0;
        for (uint32_t i = 0; i < sizeof pre - 1; i++) req[o++] = pre[i];
        uint64_t u = config_get(put("url", 3));
        if (!u) return reject("no url", 6);
        o += get(u, req + o, 400);
        req[o++] = '"';
        req[o++] = '}';
        uint64_t r = http_request(put(req, o), 0);
        uint32_t bn = utoa((uint32_t)http_status_code(), body);
        body[bn++] = ' ';
        if (r) bn += get(r, body + bn, sizeof body - bn - 1);
        return reject(body, bn);
    }
    if (eq(m, n, "oom")) {
        for (;;) alloc(1 << 20);
    }
    if (eq(m, n, "spin")) {
        for (volatile uint32_t i = 0;; i++) {
        }
    }
    return 0;
}

EXPORT("on_request") int32_t on_request(void) { return handle(); }
EXPORT("on_response") int32_t on_response(void) { return handle(); }
