/*
 * sluice.h — the Sluice native plugin ABI (sdk/ABI.md, version 1) for C.
 *
 * One file, no libc. In exactly one translation unit:
 *
 *     #define SLUICE_IMPLEMENTATION
 *     #include "sluice.h"
 *
 * which defines the exports sluice_abi_version and sluice_alloc. Then export
 * your handlers with SLUICE_EXPORT("sluice_on_request") etc. Build with:
 *
 *     clang -O2 --target=wasm32-unknown-unknown -mbulk-memory -nostdlib \
 *           -Wl,--no-entry -o plugin.wasm plugin.c
 *
 * Memory: sluice_alloc resets a bump arena above __heap_base on every call and
 * places the envelope at its start; sluice_arena() hands out more of it while
 * a handler runs (answers, scratch). Everything in the arena is gone at the
 * next host call, which is exactly as long as an answer must live. Keep state
 * that must last longer in static variables or the key/value store.
 */
#ifndef SLUICE_H
#define SLUICE_H

#include <stdint.h>

#define SLUICE_EXPORT(name) __attribute__((export_name(name)))
#define SLUICE_IMPORT(name) __attribute__((import_module("sluice"), import_name(name)))

/* Hooks (envelope offset 4). */
enum { SLUICE_HOOK_REQUEST = 1, SLUICE_HOOK_RESPONSE = 2, SLUICE_HOOK_HTTP_RESPONSE = 3 };
/* Envelope flags (offset 5). */
enum { SLUICE_FLAG_NOTIFICATION = 1, SLUICE_FLAG_RELAY = 2 };
/* Actions (answer offset 0). */
enum { SLUICE_CONTINUE = 0, SLUICE_REPLACE = 1, SLUICE_RESPOND = 2, SLUICE_REJECT = 3, SLUICE_DROP = 4 };
/* Header-edit ops. */
enum { SLUICE_HEADER_SET = 1, SLUICE_HEADER_ADD = 2, SLUICE_HEADER_DELETE = 3 };
/* Log levels. */
enum { SLUICE_DEBUG = 0, SLUICE_INFO = 1, SLUICE_WARN = 2, SLUICE_ERROR = 3 };

/* Host imports (module "sluice"). */
SLUICE_IMPORT("log") void sluice_log(int32_t level, const char *ptr, uint32_t len);
SLUICE_IMPORT("config") uint32_t sluice_config(char *ptr, uint32_t cap);
SLUICE_IMPORT("kv_get") int32_t sluice_kv_get(const char *k, uint32_t klen, void *v, uint32_t vcap);
SLUICE_IMPORT("kv_set") void sluice_kv_set(const char *k, uint32_t klen, const void *v, uint32_t vlen);
SLUICE_IMPORT("kv_delete") void sluice_kv_delete(const char *k, uint32_t klen);

/* A string inside the envelope (not NUL-terminated). */
typedef struct {
    const char *ptr;
    uint32_t len;
} sluice_str;

/* A parsed envelope; all strings point into the envelope buffer. */
typedef struct {
    uint32_t version;
    uint8_t hook, flags;
    uint32_t status;
    sluice_str tunnel, channel, session_id, request_id, method, tool, caller;
    uint32_t header_count;
    const uint8_t *headers; /* header_count × (name, value); iterate with sluice_next_header */
    sluice_str body;
} sluice_envelope;

static inline uint32_t sluice__u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void sluice__put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static inline int sluice__str(const uint8_t *p, uint32_t len, uint32_t *o, sluice_str *s) {
    if (*o + 4 > len) return 0;
    uint32_t n = sluice__u32(p + *o);
    if (n > len - *o - 4) return 0;
    s->ptr = (const char *)p + *o + 4;
    s->len = n;
    *o += 4 + n;
    return 1;
}

/* sluice_parse reads the envelope (ptr, len) handed to a handler; 0 on error. */
static inline int sluice_parse(const uint8_t *p, uint32_t len, sluice_envelope *e) {
    if (len < 12) return 0;
    e->version = sluice__u32(p);
    e->hook = p[4];
    e->flags = p[5];
    e->status = sluice__u32(p + 8);
    uint32_t o = 12;
    sluice_str *f[7] = {&e->tunnel, &e->channel, &e->session_id, &e->request_id, &e->method, &e->tool, &e->caller};
    for (int i = 0; i < 7; i++)
        if (!sluice__str(p, len, &o, f[i])) return 0;
    if (o + 4 > len) return 0;
    e->header_count = sluice__u32(p + o);
    o += 4;
    e->headers = p + o;
    sluice_str skip;
    for (uint32_t i = 0; i < e->header_count * 2; i++)
        if (!sluice__str(p, len, &o, &skip)) return 0;
    return sluice__str(p, len, &o, &e->body);
}

/* sluice_next_header reads the header at *cursor (start with e->headers). */
static inline const uint8_t *sluice_next_header(const uint8_t *cursor, sluice_str *name, sluice_str *value) {
    name->len = sluice__u32(cursor);
    name->ptr = (const char *)cursor + 4;
    cursor += 4 + name->len;
    value->len = sluice__u32(cursor);
    value->ptr = (const char *)cursor + 4;
    return cursor + 4 + value->len;
}

static inline int sluice_str_eq(sluice_str s, const char *lit) {
    uint32_t i = 0;
    for (; lit[i]; i++)
        if (i >= s.len || s.ptr[i] != lit[i]) return 0;
    return i == s.len;
}

/* sluice_arena returns n bytes valid until the host's next call, or 0. */
void *sluice_arena(uint32_t n);

/* An answer under construction, in the arena. */
typedef struct {
    uint8_t *buf;
    uint32_t len, cap;
    int failed;
} sluice_answer;

static inline void sluice__append(sluice_answer *a, const void *p, uint32_t n) {
    if (a->failed || n > a->cap - a->len) { a->failed = 1; return; }
    __builtin_memcpy(a->buf + a->len, p, n);
    a->len += n;
}

static inline void sluice__append32(sluice_answer *a, uint32_t v) {
    uint8_t b[4];
    sluice__put32(b, v);
    sluice__append(a, b, 4);
}

/* sluice_answer_begin starts an answer with room for cap bytes in total. */
static inline void sluice_answer_begin(sluice_answer *a, uint8_t action, uint32_t status, uint32_t cap) {
    a->len = 0;
    a->cap = cap < 16 ? 16 : cap;
    a->buf = (uint8_t *)sluice_arena(a->cap);
    a->failed = a->buf == 0;
    uint8_t head[12] = {action, 0, 0, 0};
    sluice__put32(head + 4, status);
    sluice__append(a, head, 12); /* header-edit count at 8, patched below */
}

/* sluice_answer_header adds a header edit; call before sluice_answer_end. */
static inline void sluice_answer_header(sluice_answer *a, uint8_t op, const char *name, uint32_t nlen,
                                        const char *value, uint32_t vlen) {
    if (a->failed) return;
    sluice__append(a, &op, 1);
    sluice__append32(a, nlen);
    sluice__append(a, name, nlen);
    sluice__append32(a, vlen);
    sluice__append(a, value, vlen);
    if (!a->failed) sluice__put32(a->buf + 8, sluice__u32(a->buf + 8) + 1);
}

/* sluice_answer_end appends the body (replace/respond: the new message;
 * reject: the error object; NULL = none) and returns the handler result. */
static inline int64_t sluice_answer_end(sluice_answer *a, const void *body, uint32_t blen) {
    if (body && (a->buf[0] == SLUICE_REPLACE || a->buf[0] == SLUICE_RESPOND) && !a->failed) a->buf[1] |= 1;
    sluice__append32(a, body ? blen : 0);
    if (body) sluice__append(a, body, blen);
    if (a->failed) __builtin_trap(); /* out of arena memory: a plugin failure */
    return (int64_t)((uint64_t)(uintptr_t)a->buf << 32 | a->len);
}

#ifdef SLUICE_IMPLEMENTATION
extern unsigned char __heap_base;
static uintptr_t sluice__top;

void *sluice_arena(uint32_t n) {
    uintptr_t start = (sluice__top + 15) & ~(uintptr_t)15;
    if (start < (uintptr_t)&__heap_base) start = ((uintptr_t)&__heap_base + 15) & ~(uintptr_t)15;
    if (n > 0xffffffffu - start) return 0;
    uintptr_t end = start + n;
    uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        uintptr_t pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (uintptr_t)-1) return 0;
    }
    sluice__top = end;
    return (void *)start;
}

SLUICE_EXPORT("sluice_abi_version") int32_t sluice_abi_version(void) { return 1; }

SLUICE_EXPORT("sluice_alloc") void *sluice_alloc(uint32_t n) {
    sluice__top = 0; /* a new host call: the arena starts over */
    return sluice_arena(n);
}
#endif /* SLUICE_IMPLEMENTATION */

#endif /* SLUICE_H */
