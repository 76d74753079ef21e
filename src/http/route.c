#include "http/route.h"

#include <string.h>

enum http_method http_method_parse(const char *m)
{
    static const struct {
        const char *name;
        enum http_method method;
    } methods[] = {{"GET", HTTP_GET}, {"HEAD", HTTP_HEAD}, {"PUT", HTTP_PUT},
                   {"DELETE", HTTP_DELETE}, {"POST", HTTP_POST}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strcmp(m, methods[i].name) == 0)
            return methods[i].method;
    }
    return HTTP_OTHER;
}

static bool key_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == ':' || c == '_' || c == '.' || c == '-';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes and validates a key. */
static enum http_key_status decode_key(const char *s, size_t len, size_t max_key, char *out,
                                       size_t *out_len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (len - i < 3)
                return KEY_INVALID;
            int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0)
                return KEY_INVALID;
            c = (unsigned char)(hi * 16 + lo);
            i += 2;
        }
        if (!key_char_ok(c) || n == max_key)
            return KEY_INVALID;
        out[n++] = (char)c;
    }
    *out_len = n;
    return n == 0 ? KEY_EMPTY : KEY_OK;
}

static bool path_is(const char *path, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(path, lit, len) == 0;
}

static bool allowed(enum http_endpoint ep, enum http_method m)
{
    switch (ep) {
    case EP_KV:
        return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_PUT || m == HTTP_DELETE;
    case EP_CLEAR:
        return m == HTTP_DELETE;
    case EP_HEALTH:
    case EP_STATS:
    case EP_METRICS:
    case EP_CLUSTER_INFO:
        return m == HTTP_GET || m == HTTP_HEAD;
    case EP_RAFT:
    case EP_CLUSTER_LEADER:
        return m == HTTP_POST;
    case EP_CLUSTER_MEMBERS:
        return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_POST || m == HTTP_PUT;
    case EP_CLUSTER_MEMBER:
        return m == HTTP_DELETE;
    case EP_NOT_FOUND:
        break;
    }
    return true;
}

bool http_route_needs_leader(const struct http_route *r)
{
    switch (r->ep) {
    case EP_KV:
    case EP_CLEAR:
    case EP_CLUSTER_MEMBER:
    case EP_CLUSTER_LEADER:
        return true;
    case EP_CLUSTER_MEMBERS:
        return r->method == HTTP_POST || r->method == HTTP_PUT;
    default:
        return false;
    }
}

void http_route_parse(enum http_method method, const char *path, size_t path_len,
                      size_t max_key, char *keybuf, struct http_route *out)
{
    memset(out, 0, sizeof *out);
    out->method = method;
    if (path_is(path, path_len, "/kv") ||
        (path_len >= 4 && memcmp(path, "/kv/", 4) == 0)) {
        out->ep = EP_KV;
        size_t off = path_len > 4 ? 4 : path_len;
        out->key = decode_key(path + off, path_len - off, max_key, keybuf, &out->klen);
    } else if (path_is(path, path_len, "/clear")) {
        out->ep = EP_CLEAR;
    } else if (path_is(path, path_len, "/health")) {
        out->ep = EP_HEALTH;
    } else if (path_is(path, path_len, "/stats")) {
        out->ep = EP_STATS;
    } else if (path_is(path, path_len, "/metrics")) {
        out->ep = EP_METRICS;
    } else if (path_is(path, path_len, "/raft")) {
        out->ep = EP_RAFT;
    } else if (path_is(path, path_len, "/cluster/info")) {
        out->ep = EP_CLUSTER_INFO;
    } else if (path_is(path, path_len, "/cluster/members")) {
        out->ep = EP_CLUSTER_MEMBERS;
    } else if (path_len > 17 && memcmp(path, "/cluster/members/", 17) == 0) {
        out->ep = EP_CLUSTER_MEMBER;
        out->member_at = 17;
    } else if (path_is(path, path_len, "/cluster/leader")) {
        out->ep = EP_CLUSTER_LEADER;
    } else {
        out->ep = EP_NOT_FOUND;
    }
    out->method_allowed = allowed(out->ep, method);
}

const char *http_route_allow(enum http_endpoint ep)
{
    switch (ep) {
    case EP_KV:
        return "GET, HEAD, PUT, DELETE";
    case EP_CLEAR:
        return "DELETE";
    case EP_HEALTH:
    case EP_STATS:
    case EP_METRICS:
    case EP_CLUSTER_INFO:
        return "GET, HEAD";
    case EP_RAFT:
    case EP_CLUSTER_LEADER:
        return "POST";
    case EP_CLUSTER_MEMBERS:
        return "GET, HEAD, POST, PUT";
    case EP_CLUSTER_MEMBER:
        return "DELETE";
    case EP_NOT_FOUND:
        break;
    }
    return NULL;
}
