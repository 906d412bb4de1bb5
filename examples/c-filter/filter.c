/*
 * filter.c — the example security filter in C, on the native ABI through
 * sdk/sluice.h (no libc). Every example filter (examples/LANG-filter) does the
 * same, configured with:
 *
 *     block: [delete_file, drop_table]  # tools/call of these tools is rejected (-32001)
 *     tag: infra                        # every other request gets header X-Sluice-Tag: infra
 *     mask: "ACCT-####"                 # in responses, each match becomes ********* (# = a digit)
 *
 * Build (from the repository root; `make examples` builds every example):
 *
 *     clang -O2 --target=wasm32-unknown-unknown -mbulk-memory -nostdlib \
 *           -Wl,--no-entry -Wl,--strip-all -I sdk -o examples/c-filter/c-filter.wasm examples/c-filter/filter.c
 */
#define SLUICE_IMPLEMENTATION
#include "sluice.h"

#define MAX_CONFIG 8192
#define MAX_BLOCK 64

static const char describe_json[] =
    "{\"name\":\"c-filter\",\"version\":\"1.0.0\",\"hooks\":[\"request\",\"response\"],"
    "\"config\":[\"block\",\"mask\",\"tag\"]}";

SLUICE_EXPORT("sluice_describe") int64_t sluice_describe(void) {
    return (int64_t)((uint64_t)(uintptr_t)describe_json << 32 | (sizeof describe_json - 1));
}

/* The parsed config: strings point into config_buf (JSON escapes are not
 * decoded; a value holding a backslash is refused). */
static char config_buf[MAX_CONFIG];
static int loaded;
static sluice_str block[MAX_BLOCK];
static uint32_t nblock;
static sluice_str tag, mask;
static uint32_t lit; /* offset of the mask's first literal (non-'#') byte; mask.len if none */

static void fail(const char *why) {
    uint32_t n = 0;
    while (why[n]) n++;
    sluice_log(SLUICE_ERROR, why, n);
    __builtin_trap(); /* a plugin failure: the stage's on-error decides */
}

/* A minimal reader for the host's config object: string keys, string or
 * array-of-string values, other values refused. */
typedef struct {
    const char *p;
    uint32_t n, i;
} reader;

static void skip_ws(reader *r) {
    while (r->i < r->n && (r->p[r->i] == ' ' || r->p[r->i] == '\n' || r->p[r->i] == '\t' || r->p[r->i] == '\r')) r->i++;
}

static int expect(reader *r, char c) {
    skip_ws(r);
    if (r->i < r->n && r->p[r->i] == c) {
        r->i++;
        return 1;
    }
    return 0;
}

static sluice_str read_string(reader *r) {
    sluice_str s = {0, 0};
    if (!expect(r, '"')) fail("c-filter: config: string expected");
    s.ptr = r->p + r->i;
    while (r->i < r->n && r->p[r->i] != '"') {
        if (r->p[r->i] == '\\') fail("c-filter: config: escaped characters are not supported");
        r->i++;
    }
    if (r->i >= r->n) fail("c-filter: config: unterminated string");
    s.len = (uint32_t)(r->p + r->i - s.ptr);
    r->i++;
    return s;
}

static void load_config(void) {
    uint32_t n = sluice_config(config_buf, MAX_CONFIG);
    if (n > MAX_CONFIG) fail("c-filter: config larger than 8 KiB");
    reader r = {config_buf, n, 0};
    if (!expect(&r, '{')) fail("c-filter: config: object expected");
    if (!expect(&r, '}')) {
        do {
            sluice_str key = read_string(&r);
            if (!expect(&r, ':')) fail("c-filter: config: ':' expected");
            if (sluice_str_eq(key, "block")) {
                if (!expect(&r, '[')) fail("c-filter: config: block must be a list of tool names");
                if (!expect(&r, ']')) {
                    do {
                        if (nblock == MAX_BLOCK) fail("c-filter: config: more than 64 blocked tools");
                        block[nblock++] = read_string(&r);
                    } while (expect(&r, ','));
                    if (!expect(&r, ']')) fail("c-filter: config: ']' expected");
                }
            } else if (sluice_str_eq(key, "tag")) {
                tag = read_string(&r);
            } else if (sluice_str_eq(key, "mask")) {
                mask = read_string(&r);
            } else {
                fail("c-filter: config: unknown key");
            }
        } while (expect(&r, ','));
        if (!expect(&r, '}')) fail("c-filter: config: '}' expected");
    }
    for (uint32_t i = 0; i < mask.len; i++)
        if (mask.ptr[i] == '"' || (unsigned char)mask.ptr[i] < 0x20) fail("c-filter: config: mask may not hold quotes or control characters");
    for (uint32_t i = 0; i < tag.len; i++)
        if (tag.ptr[i] == '\r' || tag.ptr[i] == '\n') fail("c-filter: config: tag may not hold line breaks");
    while (lit < mask.len && mask.ptr[lit] == '#') lit++;
    loaded = 1;
}

static int str_eq(sluice_str a, sluice_str b) {
    if (a.len != b.len) return 0;
    for (uint32_t i = 0; i < a.len; i++)
        if (a.ptr[i] != b.ptr[i]) return 0;
    return 1;
}

SLUICE_EXPORT("sluice_on_request") int64_t on_request(const uint8_t *p, uint32_t len) {
    if (!loaded) load_config();
    sluice_envelope e;
    if (!sluice_parse(p, len, &e)) __builtin_trap();
    if (sluice_str_eq(e.method, "tools/call")) {
        for (uint32_t i = 0; i < nblock; i++) {
            if (str_eq(e.tool, block[i])) {
                static const char err[] = "{\"code\":-32001,\"message\":\"tool blocked by policy\"}";
                sluice_answer a;
                sluice_answer_begin(&a, SLUICE_REJECT, 0, 64 + sizeof err);
                return sluice_answer_end(&a, err, sizeof err - 1);
            }
        }
    }
    if (tag.len == 0) return 0; /* continue unchanged */
    sluice_answer a;
    sluice_answer_begin(&a, SLUICE_REPLACE, 0, 64 + tag.len);
    sluice_answer_header(&a, SLUICE_HEADER_SET, "X-Sluice-Tag", 12, tag.ptr, tag.len);
    return sluice_answer_end(&a, 0, 0);
}

/* match_at: '#' matches one ASCII digit, any other byte itself; a match
 * right after a backslash (inside a JSON escape) does not count. */
static int match_at(const char *b, uint32_t i) {
    if (i > 0 && b[i - 1] == '\\') return 0;
    for (uint32_t j = 0; j < mask.len; j++) {
        char c = b[i + j], m = mask.ptr[j];
        if (m == '#' ? (c < '0' || c > '9') : c != m) return 0;
    }
    return 1;
}

/* next_match returns where the first match at or after from starts, or n.
 * Candidates are found by the mask's first literal byte. */
static uint32_t next_match(const char *b, uint32_t n, uint32_t from) {
    if (n < mask.len) return n;
    if (lit < mask.len) {
        char c = mask.ptr[lit];
        for (uint32_t i = from + lit; i + mask.len - lit <= n; i++)
            if (b[i] == c && match_at(b, i - lit)) return i - lit;
        return n;
    }
    for (uint32_t s = from; s + mask.len <= n; s++)
        if (match_at(b, s)) return s;
    return n;
}

SLUICE_EXPORT("sluice_on_response") int64_t on_response(const uint8_t *p, uint32_t len) {
    if (!loaded) load_config();
    if (mask.len == 0) return 0;
    sluice_envelope e;
    if (!sluice_parse(p, len, &e)) __builtin_trap();
    const char *b = e.body.ptr;
    uint32_t n = e.body.len;
    uint32_t s = next_match(b, n, 0);
    if (s == n) return 0; /* no match: continue */
    sluice_answer a;
    sluice_answer_begin(&a, SLUICE_REPLACE, 0, 64 + n);
    uint8_t *out = a.buf + a.len + 4; /* where sluice_answer_end puts the body */
    int64_t ret = sluice_answer_end(&a, b, n);
    for (; s < n; s = next_match(b, n, s + mask.len))
        for (uint32_t j = 0; j < mask.len; j++) out[s + j] = '*';
    return ret;
}
