/* respond: the fixed responses (errors, "ok") built once when a server
 * starts and shared by all its connections, and builders for the variable
 * ones. */
#ifndef LKV_HTTP_RESPOND_H
#define LKV_HTTP_RESPOND_H

#include "http/route.h"
#include "kv/kv_map.h"

#include <microhttpd.h>

enum resp_id {
    RESP_OK,                /* 200 ok */
    RESP_KEY_EMPTY,         /* 400 key cannot be empty */
    RESP_VALUE_EMPTY,       /* 400 value cannot be empty */
    RESP_INVALID_KEY,       /* 400 invalid key */
    RESP_KEY_NOT_FOUND,     /* 404 key not found */
    RESP_NOT_FOUND,         /* 404 not found */
    RESP_METHOD_KV,         /* 405, Allow: GET, HEAD, PUT, DELETE */
    RESP_METHOD_CLEAR,      /* 405, Allow: DELETE */
    RESP_METHOD_READ,       /* 405, Allow: GET, HEAD */
    RESP_TIMEOUT,           /* 408 request timeout */
    RESP_TOO_LARGE,         /* 413 value too large */
    RESP_HEADERS_TOO_LARGE, /* 431 request header fields too large */
    RESP_INTERNAL,          /* 500 storage failed */
    RESP_UNAVAILABLE,       /* 503 shutting down */
    RESP_NO_SPACE,          /* 507 insufficient storage */
    RESP__COUNT
};

/* One server's set of fixed responses: each server builds its own, so that
 * stopping one never frees what another is sending. */
struct respond;

/* Builds every fixed response. Returns the set, owned by the caller, or
 * NULL when out of memory. */
struct respond *respond_new(void);

/* Releases them (NULL is accepted). No connection of a daemon that queued
 * them may still be open: call it after MHD_stop_daemon. */
void respond_free(struct respond *rs);

/* The shared response and its status code (never NULL). Any thread. */
struct MHD_Response *respond_get(const struct respond *rs, enum resp_id id, unsigned *status);

/* The 405 response for an endpoint. */
enum resp_id respond_method_not_allowed(enum http_endpoint ep);

/* A 200 response whose body is e's value, without copying it. Takes a new
 * reference to e, dropped when MHD frees the response. The caller owns the
 * returned response (MHD_destroy_response after queueing). NULL on ENOMEM. */
struct MHD_Response *respond_value(struct kv_entry *e);

/* A response that takes ownership of `body` (malloc'ed, len bytes) with the
 * given Content-Type. NULL on ENOMEM (body is freed in that case too). */
struct MHD_Response *respond_owned(char *body, size_t len, const char *content_type);

#endif
