/* libFuzzer target: routes arbitrary bytes as a request path and checks the
 * key decoder against an independent model, then round-trips every decoded
 * key through %XX escapes and through its raw spelling.
 *
 * Input: byte 0 picks the method (low 3 bits) and max_key (1..16, high
 * bits); the rest is the path. */
#include "http/route.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_KEY_LIMIT 16

static const char *const method_names[] = {"GET", "HEAD", "PUT", "DELETE", "POST"};

static bool key_byte_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == ':' || c == '_' || c == '.' || c == '-';
}

static int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)(c | 0x20);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The contract of http_route_parse for the key part, written out again. */
static enum http_key_status model_key(const uint8_t *s, size_t len, size_t max_key,
                                      uint8_t *out, size_t *out_len)
{
    size_t n = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c == '%') {
            if (len - i < 3)
                return KEY_INVALID;
            int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0)
                return KEY_INVALID;
            c = (unsigned char)(hi << 4 | lo);
            i += 3;
        } else {
            i++;
        }
        if (!key_byte_ok(c) || n == max_key)
            return KEY_INVALID;
        out[n++] = c;
    }
    *out_len = n;
    return n == 0 ? KEY_EMPTY : KEY_OK;
}

static bool path_eq(const uint8_t *p, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(p, lit, len) == 0;
}

/* The endpoints named by exactly their path. */
static const struct {
    const char *path;
    enum http_endpoint ep;
} exact_paths[] = {
    {"/kv", EP_KV},
    {"/clear", EP_CLEAR},
    {"/health", EP_HEALTH},
    {"/stats", EP_STATS},
    {"/metrics", EP_METRICS},
    {"/raft", EP_RAFT},
    {"/cluster/info", EP_CLUSTER_INFO},
    {"/cluster/members", EP_CLUSTER_MEMBERS},
    {"/cluster/leader", EP_CLUSTER_LEADER},
};

static enum http_endpoint model_endpoint(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < sizeof exact_paths / sizeof exact_paths[0]; i++) {
        if (path_eq(p, len, exact_paths[i].path))
            return exact_paths[i].ep;
    }
    if (len >= 4 && memcmp(p, "/kv/", 4) == 0)
        return EP_KV;
    if (len > 17 && memcmp(p, "/cluster/members/", 17) == 0)
        return EP_CLUSTER_MEMBER; /* the address after it is checked by the handler */
    return EP_NOT_FOUND;
}

/* Whether `allow` ("GET, HEAD, ...") lists the method. */
static bool allow_lists(const char *allow, enum http_method m)
{
    if (m == HTTP_OTHER)
        return false;
    const char *name = method_names[m];
    size_t nl = strlen(name);
    for (const char *p = allow; (p = strstr(p, name)) != NULL; p += nl) {
        bool starts = p == allow || p[-1] == ' ';
        bool ends = p[nl] == '\0' || p[nl] == ',';
        if (starts && ends)
            return true;
    }
    return false;
}

/* Parses `path` from an exactly sized heap copy (so ASan sees any read past
 * path_len) into an exactly sized key buffer. Returns the key buffer, which
 * the caller frees. */
static char *route(enum http_method m, const uint8_t *path, size_t len, size_t max_key,
                   struct http_route *r)
{
    char *copy = malloc(len ? len : 1);
    char *key = malloc(max_key);
    if (copy == NULL || key == NULL)
        abort();
    if (len > 0)
        memcpy(copy, path, len);
    http_route_parse(m, copy, len, max_key, key, r);
    free(copy);
    return key;
}

/* A decoded key must come back unchanged from /kv/ + its escaped (upper or
 * lower case hex) and raw spellings. */
static void check_key_round_trip(enum http_method m, const char *key, size_t klen,
                                 size_t max_key)
{
    static const char upper[] = "0123456789ABCDEF", lower[] = "0123456789abcdef";
    size_t cap = 4 + 3 * klen;
    uint8_t *path = malloc(cap);
    if (path == NULL)
        abort();
    for (int pass = 0; pass < 3; pass++) {
        memcpy(path, "/kv/", 4);
        size_t n = 4;
        for (size_t i = 0; i < klen; i++) {
            unsigned char c = (unsigned char)key[i];
            if (pass == 2) {
                path[n++] = c;
                continue;
            }
            const char *hex = pass == 0 ? upper : lower;
            path[n++] = '%';
            path[n++] = (uint8_t)hex[c >> 4];
            path[n++] = (uint8_t)hex[c & 15];
        }
        struct http_route r;
        char *again = route(m, path, n, max_key, &r);
        assert(r.ep == EP_KV);
        assert(r.key == KEY_OK);
        assert(r.klen == klen);
        assert(memcmp(again, key, klen) == 0);
        free(again);
    }
    free(path);
}

static void check_method_parse(const uint8_t *data, size_t size)
{
    size_t n = size < 16 ? size : 16;
    char tok[17];
    memcpy(tok, data, n);
    tok[n] = '\0';
    enum http_method m = http_method_parse(tok);
    if (m == HTTP_OTHER) {
        for (size_t i = 0; i < sizeof method_names / sizeof method_names[0]; i++)
            assert(strcmp(tok, method_names[i]) != 0);
    } else {
        assert((size_t)m < sizeof method_names / sizeof method_names[0]);
        assert(strcmp(tok, method_names[m]) == 0);
    }
    for (size_t i = 0; i < sizeof method_names / sizeof method_names[0]; i++)
        assert(http_method_parse(method_names[i]) == (enum http_method)i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum http_method m = (enum http_method)((data[0] & 7) % 6);
    size_t max_key = 1 + (size_t)(data[0] >> 3) % MAX_KEY_LIMIT;
    const uint8_t *path = data + 1;
    size_t len = size - 1;

    check_method_parse(path, len);

    struct http_route r;
    char *key = route(m, path, len, max_key, &r);

    assert(r.method == m);
    assert(r.ep == model_endpoint(path, len));
    const char *allow = http_route_allow(r.ep);
    if (r.ep == EP_NOT_FOUND)
        assert(allow == NULL && r.method_allowed);
    else
        assert(allow != NULL && r.method_allowed == allow_lists(allow, m));

    if (r.ep == EP_CLUSTER_MEMBER)
        assert(r.member_at == 17 && r.member_at < len);
    if (r.ep == EP_KV) {
        assert(r.klen <= max_key);
        size_t off = len > 4 ? 4 : len;
        uint8_t want[MAX_KEY_LIMIT];
        size_t want_len = 0;
        enum http_key_status st = model_key(path + off, len - off, max_key, want, &want_len);
        assert(r.key == st);
        if (r.key == KEY_OK) {
            assert(r.klen >= 1 && r.klen == want_len);
            assert(memcmp(key, want, r.klen) == 0);
            for (size_t i = 0; i < r.klen; i++)
                assert(key_byte_ok((unsigned char)key[i]));
            check_key_round_trip(m, key, r.klen, max_key);
        }
    }
    free(key);
    return 0;
}
