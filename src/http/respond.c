#include "http/respond.h"


#include <stdlib.h>
#include <string.h>

#define TEXT_PLAIN "text/plain; charset=utf-8"

static const struct {
    unsigned status;
    const char *body;
    const char *allow;
} fixed[RESP__COUNT] = {
    [RESP_OK] = {200, "ok\n", NULL},
    [RESP_KEY_EMPTY] = {400, "key cannot be empty\n", NULL},
    [RESP_VALUE_EMPTY] = {400, "value cannot be empty\n", NULL},
    [RESP_INVALID_KEY] = {400, "invalid key\n", NULL},
    [RESP_KEY_NOT_FOUND] = {404, "key not found\n", NULL},
    [RESP_NOT_FOUND] = {404, "not found\n", NULL},
    [RESP_METHOD_KV] = {405, "method not allowed\n", "GET, HEAD, PUT, DELETE"},
    [RESP_METHOD_CLEAR] = {405, "method not allowed\n", "DELETE"},
    [RESP_METHOD_READ] = {405, "method not allowed\n", "GET, HEAD"},
    [RESP_TIMEOUT] = {408, "request timeout\n", NULL},
    [RESP_TOO_LARGE] = {413, "value too large\n", NULL},
    [RESP_HEADERS_TOO_LARGE] = {431, "request header fields too large\n", NULL},
    [RESP_INTERNAL] = {500, "storage failed\n", NULL},
    [RESP_UNAVAILABLE] = {503, "shutting down\n", NULL},
    [RESP_NO_SPACE] = {507, "insufficient storage\n", NULL},
};

/* Written once by respond_new, read-only afterwards. */
struct respond {
    struct MHD_Response *built[RESP__COUNT];
};

struct respond *respond_new(void)
{
    struct respond *rs = calloc(1, sizeof *rs);
    if (!rs)
        return NULL;
    for (int i = 0; i < RESP__COUNT; i++) {
        struct MHD_Response *r = MHD_create_response_from_buffer(
            strlen(fixed[i].body), (void *)fixed[i].body, MHD_RESPMEM_PERSISTENT);
        if (!r || MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, TEXT_PLAIN) != MHD_YES ||
            (fixed[i].allow &&
             MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, fixed[i].allow) != MHD_YES)) {
            if (r)
                MHD_destroy_response(r);
            respond_free(rs);
            return NULL;
        }
        rs->built[i] = r;
    }
    return rs;
}

void respond_free(struct respond *rs)
{
    if (!rs)
        return;
    for (int i = 0; i < RESP__COUNT; i++) {
        if (rs->built[i])
            MHD_destroy_response(rs->built[i]);
    }
    free(rs);
}

struct MHD_Response *respond_get(const struct respond *rs, enum resp_id id, unsigned *status)
{
    *status = fixed[id].status;
    return rs->built[id];
}

enum resp_id respond_method_not_allowed(enum http_endpoint ep)
{
    switch (ep) {
    case EP_KV:
        return RESP_METHOD_KV;
    case EP_CLEAR:
        return RESP_METHOD_CLEAR;
    default:
        return RESP_METHOD_READ;
    }
}

static void unref_entry_cb(void *cls)
{
    kv_entry_unref(cls);
}

struct MHD_Response *respond_value(struct kv_entry *e)
{
    kv_entry_ref(e);
    /* MHD never writes through the buffer pointer; the cast only satisfies
     * its prototype. */
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback_cls(
        kv_entry_vlen(e), (void *)kv_entry_value(e), unref_entry_cb, e);
    if (!r) {
        kv_entry_unref(e);
        return NULL;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, TEXT_PLAIN) != MHD_YES) {
        MHD_destroy_response(r); /* runs unref_entry_cb */
        return NULL;
    }
    return r;
}

struct MHD_Response *respond_owned(char *body, size_t len, const char *content_type)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return NULL;
    }
    if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
        MHD_destroy_response(r);
        return NULL;
    }
    return r;
}
