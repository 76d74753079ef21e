/* Unit tests for http/server with real stores behind it: two servers, each
 * on its own store, data directory and counters, live in one process
 * without touching each other's state, and stopping one leaves the other
 * answering. */
#include "http/server.h"
#include "stats/stats.h"
#include "store.h"
#include "util/log.h"

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* One server and everything behind it. */
struct node {
    char dir[64];
    struct stats *stats;
    struct store *store;
    struct http_server *http;
};

static void node_start(struct node *n)
{
    log_set_level("warn");
    snprintf(n->dir, sizeof n->dir, "/tmp/lkv-server-XXXXXX");
    cr_assert_not_null(mkdtemp(n->dir));
    n->stats = stats_new();
    cr_assert_not_null(n->stats);
    char err[512];
    struct store_config scfg = {.dir = n->dir, .checkpoint_bytes = 64u << 20, .stats = n->stats};
    cr_assert_eq(store_open(&scfg, &n->store, err, sizeof err), 0, "%s", err);
    struct http_server_config hcfg = {
        .bind = "127.0.0.1",
        .port = 0,
        .threads = 2,
        .max_connections = 64,
        .max_key_bytes = 1024,
        .max_value_bytes = 1 << 20,
        .max_header_bytes = 8192,
        .idle_timeout_s = 60,
        .request_timeout_s = 10,
        .stats = n->stats,
    };
    cr_assert_eq(http_server_start(&hcfg, n->store, &n->http, err, sizeof err), 0, "%s", err);
}

/* Stops the server the way main does: the store first, then HTTP. */
static void node_stop(struct node *n)
{
    if (!n->http)
        return;
    http_server_quiesce(n->http);
    cr_assert(http_server_wait_idle(n->http, 10000));
    cr_assert_eq(store_shutdown(n->store), 0);
    http_server_stop(n->http);
    store_free(n->store);
    stats_free(n->stats);
    n->http = NULL;
    DIR *d = opendir(n->dir);
    cr_assert_not_null(d);
    struct dirent *de;
    char path[600];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", n->dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(n->dir);
}

struct reply {
    int status; /* -1: no complete answer */
    char body[32768];
};

/* One request on a fresh connection (closed by the server after the
 * answer); every wait is bounded, so a silent server fails the test. The
 * answer is valid until the next call. */
static const struct reply *http(struct node *n, const char *method, const char *path,
                                const char *body)
{
    static struct reply out;
    static char buf[sizeof out.body + 4096];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(http_server_port(n->http))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[512];
    int len = snprintf(req, sizeof req,
                       "%s %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %zu"
                       "\r\n\r\n%s",
                       method, path, body ? strlen(body) : 0, body ? body : "");
    cr_assert_eq(send(fd, req, (size_t)len, 0), len);
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    out.status = -1;
    out.body[0] = '\0';
    const char *split = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.1 ", 9) != 0 || !split)
        return &out;
    out.status = atoi(buf + 9);
    snprintf(out.body, sizeof out.body, "%s", split + 4);
    return &out;
}

static unsigned long long stat_of(struct node *n, const char *after, const char *field)
{
    const struct reply *r = http(n, "GET", "/stats", NULL);
    cr_assert_eq(r->status, 200);
    const char *p = strstr(r->body, after);
    cr_assert_not_null(p, "no %s in %s", after, r->body);
    p = strstr(p, field);
    cr_assert_not_null(p, "no %s after %s in %s", field, after, r->body);
    return strtoull(p + strlen(field), NULL, 10);
}

static struct node a, b;

static void stop_both(void)
{
    node_stop(&a);
    node_stop(&b);
}

TestSuite(server, .fini = stop_both);

/* Regression: the fixed responses were process-wide, so the first server
 * to stop freed the ones the other was still sending ("not found", "ok");
 * and the counters were shared, so each /stats counted both servers. */
Test(server, two_servers_in_one_process_keep_their_own_state)
{
    node_start(&a);
    node_start(&b);
    cr_assert_eq(http(&a, "PUT", "/kv/k", "from-a")->status, 200);
    cr_assert_eq(http(&b, "PUT", "/kv/k", "from-b")->status, 200);
    cr_assert_eq(http(&b, "PUT", "/kv/j", "only-b")->status, 200);
    cr_assert_str_eq(http(&a, "GET", "/kv/k", NULL)->body, "from-a");
    cr_assert_str_eq(http(&b, "GET", "/kv/k", NULL)->body, "from-b");
    cr_assert_eq(http(&a, "GET", "/kv/j", NULL)->status, 404);
    cr_assert_eq(stat_of(&a, "\"kv_put\":", "\"count\":"), 1);
    cr_assert_eq(stat_of(&b, "\"kv_put\":", "\"count\":"), 2);
    cr_assert_eq(stat_of(&a, "\"log\":", "\"records\":"), 1);
    cr_assert_eq(stat_of(&b, "\"log\":", "\"records\":"), 2);

    node_stop(&a);

    const struct reply *r = http(&b, "GET", "/kv/missing", NULL);
    cr_assert_eq(r->status, 404, "b after a stopped: status %d", r->status);
    cr_assert_str_eq(r->body, "key not found\n");
    r = http(&b, "PUT", "/kv/k", "again");
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->body, "ok\n");
    cr_assert_str_eq(http(&b, "GET", "/kv/k", NULL)->body, "again");
    cr_assert_eq(stat_of(&b, "\"kv_put\":", "\"count\":"), 3);
}

Test(server, port_zero_gets_a_port_of_its_own)
{
    node_start(&a);
    node_start(&b);
    cr_assert_neq(http_server_port(a.http), 0);
    cr_assert_neq(http_server_port(a.http), http_server_port(b.http));
}
