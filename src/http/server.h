/* server: the HTTP front end on GNU libmicrohttpd: listening, connection
 * limits and timeouts, request bodies, and the endpoints of the API. */
#ifndef LKV_HTTP_SERVER_H
#define LKV_HTTP_SERVER_H

#include "stats/stats.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_server_config {
    const char *bind;            /* IPv4 or IPv6 literal */
    uint16_t port;
    unsigned threads;            /* worker threads, >= 1 */
    unsigned max_connections;
    size_t max_key_bytes;
    size_t max_value_bytes;
    size_t max_header_bytes;
    unsigned idle_timeout_s;
    unsigned request_timeout_s;
    struct stats *stats;         /* requests are counted here; /stats and /metrics show it.
                                    Borrowed, never NULL, must outlive the server */
};

struct http_server;

/* Binds, listens and starts the worker threads; requests go to `store`
 * (borrowed: it must outlive the server). Returns 0 and sets *out, or a
 * negative LKV_E* code with a one-line reason in err. */
int http_server_start(const struct http_server_config *cfg, struct store *store,
                      struct http_server **out, char *err, size_t errlen);

/* Starts draining: every request that arrives from now on, on a new or an
 * open connection, gets 503 and its connection is closed. */
void http_server_quiesce(struct http_server *h);

/* Waits until no request is in progress or timeout_ms has passed; returns
 * true if none is left. */
bool http_server_wait_idle(struct http_server *h, unsigned timeout_ms);

/* Closes every connection, stops the threads and frees the server. Every
 * store write it submitted must have completed (store_shutdown does that). */
void http_server_stop(struct http_server *h);

/* Open connections right now. */
uint64_t http_server_connections(const struct http_server *h);

/* The port it listens on: cfg->port, or the one the kernel chose when that
 * was 0. */
uint16_t http_server_port(const struct http_server *h);

#endif
