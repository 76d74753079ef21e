#include "http/server.h"

#include "http/respond.h"
#include "http/route.h"
#include "kv/kv_cmd.h"
#include "stats/stats.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bodies of requests refused before their body is read (wrong method, bad
 * key) are read and dropped when at most this long, so the connection can be
 * kept alive; longer ones get the error at once and the connection closes. */
#define DISCARD_BODY_MAX (64 * 1024)

/* A PUT body up to this size goes straight into the command allocated from
 * its Content-Length. A larger one grows the command as bytes arrive, so a
 * client declaring 10 MiB and sending little pins little memory. */
#define DIRECT_BODY_MAX (64 * 1024)

/* Deadlines MHD cannot enforce on its own (its timeout is reset by every
 * byte, so a client trickling a request would never be cut): one record per
 * open connection, checked by the reaper thread. */
struct conn {
    int fd;
    _Atomic uint64_t deadline_ns; /* UINT64_MAX: none (request being answered) */
    bool shut;                    /* reaper already shut it down; under reap_lock */
    uint64_t hup_deadline;        /* deadline when the peer was first seen gone; reaper only */
    struct conn *prev, *next;     /* under reap_lock */
};

struct http_server {
    struct http_server_config cfg;
    struct store *store;
    struct respond *responses; /* built at start, read-only until stop */
    struct MHD_Daemon *daemon;
    int listen_fd;
    atomic_bool draining;
    atomic_uint_fast64_t connections;
    atomic_uint_fast64_t in_flight; /* requests between URI log and completion */
    time_t started;

    pthread_mutex_t reap_lock; /* guards the conn list and conn->shut */
    pthread_cond_t reap_wake;
    struct conn *conns;
    struct pollfd *watch;     /* reaper's scratch: connections polled for a departed peer */
    struct conn **watch_conn;
    size_t watch_cap;
    bool reaper_stop;
    pthread_t reaper;
};

enum req_phase { PHASE_HEADERS, PHASE_BODY, PHASE_WAITING };

/* One request, from its request line to its completion callback. Lives in
 * MHD's per-request context pointer. */
struct req {
    struct http_server *srv;
    struct MHD_Connection *conn;
    struct conn *track;      /* the connection's deadline record, or NULL */
    uint64_t start_ns;
    enum req_phase phase;
    struct http_route route;
    enum stats_route stats_route;
    int error;               /* an enum resp_id to answer with, or -1 */
    bool chunked;            /* body length unknown until it ends */
    uint64_t body_len;       /* bytes received so far */
    uint64_t content_length; /* declared length when !chunked */
    /* PUT: the command being filled in, its head (op, key) first, then the
     * value at value_at as it arrives. Owned until submitted. */
    struct lkv_blob *cmd;
    size_t value_at;
    bool cmd_sized;          /* allocated whole from Content-Length */
    size_t value_cap;        /* otherwise: value bytes it has room for */
    struct store_req sreq;
    int store_status;        /* written by the store's writer thread before resume */
    char key[];              /* max_key_bytes, decoded */
};

static enum stats_route stats_route_for(const struct http_route *r)
{
    if (!r->method_allowed)
        return ROUTE_OTHER;
    switch (r->ep) {
    case EP_KV:
        switch (r->method) {
        case HTTP_GET: return ROUTE_KV_GET;
        case HTTP_HEAD: return ROUTE_KV_HEAD;
        case HTTP_PUT: return ROUTE_KV_PUT;
        default: return ROUTE_KV_DELETE;
        }
    case EP_CLEAR: return ROUTE_CLEAR;
    case EP_HEALTH: return ROUTE_HEALTH;
    case EP_STATS: return ROUTE_STATS;
    case EP_METRICS: return ROUTE_METRICS;
    case EP_NOT_FOUND: break;
    }
    return ROUTE_OTHER;
}

/* Queues `resp` with `status` and records the request's statistics. */
static enum MHD_Result send_response(struct req *r, unsigned status, struct MHD_Response *resp)
{
    stats_record_request(r->srv->cfg.stats, r->stats_route, status,
                         (clock_now_ns() - r->start_ns) / 1000);
    return MHD_queue_response(r->conn, status, resp);
}

static enum MHD_Result send_fixed(struct req *r, enum resp_id id)
{
    unsigned status;
    struct MHD_Response *resp = respond_get(r->srv->responses, id, &status);
    return send_response(r, status, resp);
}

/* Sends a response built for this request and drops our reference to it. */
static enum MHD_Result send_built(struct req *r, unsigned status, struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO; /* out of memory: close the connection */
    enum MHD_Result rc = send_response(r, status, resp);
    MHD_destroy_response(resp);
    return rc;
}


static enum MHD_Result sum_header_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    size_t *total = cls;
    *total += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
    return MHD_YES;
}

static size_t request_header_bytes(struct MHD_Connection *conn)
{
    size_t total = 0;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, sum_header_cb, &total);
    return total;
}

/* Reads Content-Length / Transfer-Encoding. MHD has already rejected a
 * malformed Content-Length with 400. */
static void read_body_framing(struct req *r)
{
    const char *te = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (te && strstr(te, "chunked")) {
        r->chunked = true;
        return;
    }
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    r->content_length = cl ? strtoull(cl, NULL, 10) : 0;
}

/* Allocates the PUT's command with room for vlen value bytes and writes its
 * head (op, key), so the value can follow at value_at as it arrives. */
static bool start_command(struct req *r, size_t vlen)
{
    size_t klen = r->route.klen;
    r->cmd = lkv_blob_new(kv_cmd_payload_len(KV_OP_SET, klen, vlen));
    if (!r->cmd)
        return false;
    r->value_at = kv_cmd_encode(r->cmd->data, r->cmd->len, KV_OP_SET, r->key, klen, NULL, 0);
    return true;
}

/* First call: headers are in, no body byte has been read yet. An error that
 * must not read the body (too large) is answered now, which makes MHD close
 * the connection afterwards; others wait for the body to be dropped. */
static enum MHD_Result on_headers(struct req *r, const char *url, const char *method)
{
    struct http_server *srv = r->srv;
    http_route_parse(http_method_parse(method), url, strlen(url), srv->cfg.max_key_bytes,
                     r->key, &r->route);
    r->stats_route = stats_route_for(&r->route);
    read_body_framing(r);
    r->phase = PHASE_BODY;

    if (atomic_load(&srv->draining))
        return send_fixed(r, RESP_UNAVAILABLE);
    if (request_header_bytes(r->conn) > srv->cfg.max_header_bytes)
        return send_fixed(r, RESP_HEADERS_TOO_LARGE);

    if (r->route.ep == EP_NOT_FOUND)
        r->error = RESP_NOT_FOUND;
    else if (!r->route.method_allowed)
        r->error = respond_method_not_allowed(r->route.ep);
    else if (r->route.ep == EP_KV && r->route.key == KEY_EMPTY)
        r->error = RESP_KEY_EMPTY;
    else if (r->route.ep == EP_KV && r->route.key == KEY_INVALID)
        r->error = RESP_INVALID_KEY;

    if (r->error >= 0) {
        if (r->chunked || r->content_length > DISCARD_BODY_MAX)
            return send_fixed(r, (enum resp_id)r->error);
        return MHD_YES;
    }
    if (r->route.ep != EP_KV || r->route.method != HTTP_PUT)
        return MHD_YES;
    if (!r->chunked && r->content_length > srv->cfg.max_value_bytes)
        return send_fixed(r, RESP_TOO_LARGE);
    if (!r->chunked && r->content_length > 0 && r->content_length <= DIRECT_BODY_MAX) {
        if (!start_command(r, (size_t)r->content_length))
            return MHD_NO;
        r->cmd_sized = true;
    }
    return MHD_YES;
}

/* Makes room for `len` more value bytes in a command that grows as the body
 * arrives: doubling from 4 KiB, never past --max-value-bytes. */
static bool grow_command(struct req *r, size_t len)
{
    size_t need = (size_t)r->body_len + len;
    if (r->cmd && need <= r->value_cap)
        return true;
    size_t cap = r->value_cap ? r->value_cap : 4096;
    while (cap < need)
        cap *= 2;
    if (cap > r->srv->cfg.max_value_bytes)
        cap = r->srv->cfg.max_value_bytes;
    if (!r->cmd) {
        if (!start_command(r, cap))
            return false;
    } else {
        struct lkv_blob *b = lkv_blob_resize(r->cmd, r->value_at + cap);
        if (!b)
            return false;
        r->cmd = b;
    }
    r->value_cap = cap;
    return true;
}

static void drop_command(struct req *r)
{
    lkv_blob_unref(r->cmd);
    r->cmd = NULL;
    r->value_cap = 0;
}

/* A piece of the request body: copied into the command, allocated whole
 * (small bodies) or growing (large or chunked ones). Bodies of refused
 * requests, and of a growing PUT once it passes the limit, are counted and
 * dropped. */
static enum MHD_Result on_body(struct req *r, const char *data, size_t len)
{
    bool keep = r->error < 0 && r->route.ep == EP_KV && r->route.method == HTTP_PUT;
    if (keep && !r->cmd_sized && r->body_len + len > r->srv->cfg.max_value_bytes) {
        r->error = RESP_TOO_LARGE;
        drop_command(r);
        keep = false;
    }
    if (keep && !r->cmd_sized && !grow_command(r, len))
        return MHD_NO;
    if (keep)
        memcpy(r->cmd->data + r->value_at + r->body_len, data, len);
    r->body_len += len;
    return MHD_YES;
}

static void store_done_cb(struct store_req *sreq, int status)
{
    struct req *r = (struct req *)((char *)sreq - offsetof(struct req, sreq));
    r->store_status = status;
    MHD_resume_connection(r->conn);
}

/* Hands a write to the store; consumes cmd. The connection is suspended
 * first: from store_submit on, the writer thread may resume it at any
 * moment. */
static enum MHD_Result submit_write(struct req *r, struct lkv_blob *cmd)
{
    r->sreq = (struct store_req){.cmd = cmd, .done_cb = store_done_cb};
    r->phase = PHASE_WAITING;
    MHD_suspend_connection(r->conn);
    store_submit(r->srv->store, &r->sreq);
    return MHD_YES;
}

static enum MHD_Result on_put(struct req *r)
{
    if (r->body_len == 0)
        return send_fixed(r, RESP_VALUE_EMPTY);
    size_t len = r->value_at + (size_t)r->body_len;
    if (!r->cmd_sized) {
        /* Cut the spare room off; should that fail, the blob just keeps it. */
        struct lkv_blob *b = lkv_blob_resize(r->cmd, len);
        r->cmd = b ? b : r->cmd;
        r->cmd->len = len;
    }
    struct lkv_blob *cmd = r->cmd; /* ownership moves to the store */
    r->cmd = NULL;
    return submit_write(r, cmd);
}

/* DELETE /kv/<key> and DELETE /clear: small commands built whole. */
static enum MHD_Result on_delete(struct req *r, uint8_t op)
{
    size_t klen = op == KV_OP_DELETE ? r->route.klen : 0;
    struct lkv_blob *cmd = lkv_blob_new(kv_cmd_payload_len(op, klen, 0));
    if (!cmd)
        return MHD_NO;
    kv_cmd_encode(cmd->data, cmd->len, op, klen ? r->key : NULL, klen, NULL, 0);
    return submit_write(r, cmd);
}

static enum MHD_Result on_get(struct req *r)
{
    struct kv_entry *e = store_get(r->srv->store, r->key, r->route.klen);
    if (!e)
        return send_fixed(r, RESP_KEY_NOT_FOUND);
    struct MHD_Response *resp = respond_value(e);
    kv_entry_unref(e); /* the response holds its own reference */
    return send_built(r, MHD_HTTP_OK, resp);
}

static enum MHD_Result on_stats(struct req *r, bool prometheus)
{
    struct http_server *srv = r->srv;
    struct stats_gauges g = {0};
    store_gauges(srv->store, &g);
    g.uptime_s = (uint64_t)(time(NULL) - srv->started);
    g.connections = atomic_load(&srv->connections);
    struct buf b = {0};
    const struct stats *st = srv->cfg.stats;
    int rc = prometheus ? stats_render_prometheus(st, &b, &g) : stats_render_json(st, &b, &g);
    if (rc != 0) {
        buf_free(&b);
        return MHD_NO;
    }
    size_t len;
    char *body = buf_take(&b, &len);
    return send_built(r, MHD_HTTP_OK,
                      respond_owned(body, len,
                                    prometheus ? "text/plain; version=0.0.4; charset=utf-8"
                                               : "application/json"));
}

static void set_deadline(struct conn *c, uint64_t deadline_ns)
{
    if (c)
        atomic_store_explicit(&c->deadline_ns, deadline_ns, memory_order_relaxed);
}

/* The whole request is in: act on it. */
static enum MHD_Result on_complete(struct req *r)
{
    set_deadline(r->track, UINT64_MAX); /* answering is the server's job now */
    if (r->error >= 0)
        return send_fixed(r, (enum resp_id)r->error);
    switch (r->route.ep) {
    case EP_KV:
        switch (r->route.method) {
        case HTTP_PUT: return on_put(r);
        case HTTP_DELETE: return on_delete(r, KV_OP_DELETE);
        default: return on_get(r);
        }
    case EP_CLEAR:
        return on_delete(r, KV_OP_CLEAR);
    case EP_HEALTH:
        return send_fixed(r, atomic_load(&r->srv->draining) ? RESP_UNAVAILABLE : RESP_OK);
    case EP_STATS:
        return on_stats(r, false);
    case EP_METRICS:
        return on_stats(r, true);
    case EP_NOT_FOUND:
        break;
    }
    return send_fixed(r, RESP_NOT_FOUND);
}

/* The store finished the write and resumed the connection. */
static enum MHD_Result on_write_done(struct req *r)
{
    switch (r->store_status) {
    case 0: return send_fixed(r, RESP_OK);
    case LKV_ENOSPC:
    case LKV_EMEMLIMIT: return send_fixed(r, RESP_NO_SPACE);
    case LKV_ESHUTDOWN: return send_fixed(r, RESP_UNAVAILABLE);
    default: return send_fixed(r, RESP_INTERNAL);
    }
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    (void)cls;
    (void)version;
    struct req *r = *con_cls;
    if (!r)
        return MHD_NO; /* the URI log callback could not allocate */
    switch (r->phase) {
    case PHASE_HEADERS:
        r->conn = conn;
        return on_headers(r, url, method);
    case PHASE_BODY:
        if (*upload_data_size != 0) {
            enum MHD_Result rc = on_body(r, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return rc;
        }
        return on_complete(r);
    case PHASE_WAITING:
        return on_write_done(r);
    }
    return MHD_NO;
}

/* Called when the request line has arrived: the earliest moment a request
 * exists, so its clock starts here. The return value becomes *con_cls. */
static void *uri_log_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)uri;
    struct http_server *srv = cls;
    struct req *r = calloc(1, sizeof *r + srv->cfg.max_key_bytes);
    if (!r)
        return NULL;
    r->srv = srv;
    r->conn = conn;
    r->start_ns = clock_now_ns();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->track = ci ? ci->socket_context : NULL;
    set_deadline(r->track, r->start_ns + (uint64_t)srv->cfg.request_timeout_s * 1000000000u);
    r->error = -1;
    r->stats_route = ROUTE_OTHER;
    atomic_fetch_add(&srv->in_flight, 1);
    return r;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    struct http_server *srv = cls;
    struct req *r = *con_cls;
    *con_cls = NULL;
    if (!r)
        return;
    set_deadline(r->track, clock_now_ns() + (uint64_t)srv->cfg.idle_timeout_s * 1000000000u);
    lkv_blob_unref(r->cmd);
    free(r);
    atomic_fetch_sub(&srv->in_flight, 1);
}

static void connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *srv = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&srv->connections, 1);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        struct conn *c = calloc(1, sizeof *c);
        if (!c || !ci) {
            free(c);
            return; /* untracked: MHD's own inactivity timeout still applies */
        }
        c->fd = ci->connect_fd;
        atomic_init(&c->deadline_ns,
                    clock_now_ns() + (uint64_t)srv->cfg.idle_timeout_s * 1000000000u);
        pthread_mutex_lock(&srv->reap_lock);
        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        pthread_mutex_unlock(&srv->reap_lock);
        *socket_context = c;
        return;
    }
    atomic_fetch_sub(&srv->connections, 1);
    struct conn *c = *socket_context;
    if (!c)
        return;
    /* MHD closes the socket only after this returns, so under reap_lock the
     * reaper never shuts down a descriptor number that was reused. */
    pthread_mutex_lock(&srv->reap_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&srv->reap_lock);
    *socket_context = NULL;
    free(c);
}

static bool watch_add(struct http_server *srv, struct conn *c, size_t n)
{
    if (n == srv->watch_cap) {
        size_t cap = srv->watch_cap ? srv->watch_cap * 2 : 256;
        struct pollfd *p = realloc(srv->watch, cap * sizeof *p);
        if (!p)
            return false;
        srv->watch = p;
        struct conn **q = realloc(srv->watch_conn, cap * sizeof *q);
        if (!q)
            return false;
        srv->watch_conn = q;
        srv->watch_cap = cap;
    }
    srv->watch[n] = (struct pollfd){.fd = c->fd, .events = POLLRDHUP};
    srv->watch_conn[n] = c;
    return true;
}

/* A client that sends part of a request and closes at once can leave its
 * connection open until the deadline: libmicrohttpd (0.9.75, epoll) reads
 * the data, and the close that came with it raises no new event. A peer
 * seen gone on two rounds in a row, while the request made no progress
 * (same deadline), is shut down now. Two rounds, because a request that
 * arrived complete with the close is being parsed in the meantime. */
static void reap_departed(struct http_server *srv, size_t n)
{
    if (n == 0 || poll(srv->watch, n, 0) <= 0)
        return;
    for (size_t i = 0; i < n; i++) {
        struct conn *c = srv->watch_conn[i];
        if (!(srv->watch[i].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            c->hup_deadline = 0;
            continue;
        }
        uint64_t deadline = atomic_load_explicit(&c->deadline_ns, memory_order_relaxed);
        if (c->hup_deadline != deadline) {
            c->hup_deadline = deadline;
            continue;
        }
        c->shut = true;
        shutdown(c->fd, SHUT_RDWR);
        LOG_DEBUG("event=connection_departed fd=%d", c->fd);
    }
}

/* Shuts down connections past their deadline: a request not received in
 * --request-timeout, or an idle connection past --idle-timeout. MHD then
 * sees the socket close and cleans up on its own thread. */
static void *reaper_main(void *arg)
{
    struct http_server *srv = arg;
    pthread_mutex_lock(&srv->reap_lock);
    while (!srv->reaper_stop) {
        struct timespec ts = clock_realtime_after(250 * 1000000L);
        pthread_cond_timedwait(&srv->reap_wake, &srv->reap_lock, &ts);
        uint64_t now = clock_now_ns();
        size_t n = 0;
        for (struct conn *c = srv->conns; c; c = c->next) {
            uint64_t deadline = atomic_load_explicit(&c->deadline_ns, memory_order_relaxed);
            if (c->shut || deadline == UINT64_MAX)
                continue;
            if (deadline <= now) {
                c->shut = true;
                shutdown(c->fd, SHUT_RDWR);
                LOG_DEBUG("event=connection_timeout fd=%d", c->fd);
            } else if (watch_add(srv, c, n)) {
                n++;
            }
        }
        reap_departed(srv, n);
    }
    pthread_mutex_unlock(&srv->reap_lock);
    return NULL;
}

/* Keys are percent-decoded by the router, which knows which escapes are
 * allowed; MHD must hand the path over untouched. */
static size_t no_unescape_cb(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

static void mhd_log_cb(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (log_threshold < LOG_LVL_DEBUG)
        return;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    LOG_DEBUG("event=mhd msg=\"%s\"", msg);
}

static int open_listener(const struct http_server_config *cfg, bool *ipv6, char *err,
                         size_t errlen)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t slen;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, cfg->bind, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(cfg->port);
        slen = sizeof *v4;
        *ipv6 = false;
    } else if (inet_pton(AF_INET6, cfg->bind, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(cfg->port);
        slen = sizeof *v6;
        *ipv6 = true;
    } else {
        snprintf(err, errlen, "--bind: '%s' is not an IPv4 or IPv6 address", cfg->bind);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto err_socket;
    int one = 1;
    /* A restart on the same port must not wait for TIME_WAIT to expire. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&ss, slen) != 0 || listen(fd, 4096) != 0)
        goto err_after_socket;
    return fd;

err_after_socket:;
    int saved = errno;
    close(fd);
    errno = saved;
err_socket:
    snprintf(err, errlen, "cannot listen on %s port %u: %s", cfg->bind, cfg->port,
             strerror(errno));
    return -1;
}

int http_server_start(const struct http_server_config *cfg, struct store *store,
                      struct http_server **out, char *err, size_t errlen)
{
    struct http_server *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "cannot start the HTTP server: %s", lkv_strerror(LKV_ENOMEM));
        return LKV_ENOMEM;
    }
    h->cfg = *cfg;
    h->store = store;
    h->started = time(NULL);
    if (!(h->responses = respond_new())) {
        snprintf(err, errlen, "cannot start the HTTP server: %s", lkv_strerror(LKV_ENOMEM));
        goto err_after_alloc;
    }
    pthread_mutex_init(&h->reap_lock, NULL);
    pthread_cond_init(&h->reap_wake, NULL);
    bool ipv6;
    h->listen_fd = open_listener(cfg, &ipv6, err, errlen);
    if (h->listen_fd < 0)
        goto err_after_responses;

    /* The pool holds the request line and headers plus the reply's headers;
     * room beyond max_header_bytes lets the server answer 431 itself. */
    size_t pool = cfg->max_header_bytes + 8192;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, access_cb, h,
        MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
        MHD_OPTION_THREAD_POOL_SIZE, cfg->threads,
        MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s + 1, /* backstop to the reaper */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
        MHD_OPTION_URI_LOG_CALLBACK, uri_log_cb, h,
        MHD_OPTION_NOTIFY_COMPLETED, completed_cb, h,
        MHD_OPTION_NOTIFY_CONNECTION, connection_cb, h,
        MHD_OPTION_UNESCAPE_CALLBACK, no_unescape_cb, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log_cb, NULL,
        MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "cannot start the HTTP server on %s port %u", cfg->bind,
                 cfg->port);
        goto err_after_listen;
    }
    if (pthread_create(&h->reaper, NULL, reaper_main, h) != 0) {
        snprintf(err, errlen, "cannot start the connection reaper thread");
        MHD_stop_daemon(h->daemon);
        goto err_after_listen;
    }
    *out = h;
    return 0;

err_after_listen:
    close(h->listen_fd);
err_after_responses:
    respond_free(h->responses);
err_after_alloc:
    free(h);
    return LKV_EIO;
}

/* MHD_quiesce_daemon is not used: in 0.9.75 with a thread pool and epoll it
 * races the workers, which remove the listening socket from their epoll set
 * themselves once they see the flag it sets, and the loser of the race
 * aborts the process ("Failed to remove listen FD from epoll set"). New
 * connections are still accepted while draining, and their requests get
 * 503 and a close. */
void http_server_quiesce(struct http_server *h)
{
    atomic_store(&h->draining, true);
}

bool http_server_wait_idle(struct http_server *h, unsigned timeout_ms)
{
    uint64_t deadline = clock_now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (atomic_load(&h->in_flight) > 0) {
        if (clock_now_ns() >= deadline)
            return false;
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, NULL);
    }
    return true;
}

void http_server_stop(struct http_server *h)
{
    pthread_mutex_lock(&h->reap_lock);
    h->reaper_stop = true;
    pthread_cond_signal(&h->reap_wake);
    pthread_mutex_unlock(&h->reap_lock);
    pthread_join(h->reaper, NULL);
    free(h->watch);
    free(h->watch_conn);
    MHD_stop_daemon(h->daemon);
    close(h->listen_fd);
    respond_free(h->responses);
    free(h);
}

uint64_t http_server_connections(const struct http_server *h)
{
    return atomic_load(&h->connections);
}

uint16_t http_server_port(const struct http_server *h)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(h->listen_fd, (struct sockaddr *)&ss, &len) != 0)
        return h->cfg.port;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}
