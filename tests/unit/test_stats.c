/* Unit tests for stats: what /stats (JSON), /metrics (Prometheus text 0.0.4)
 * and the shutdown summary show after known events. */
#include "stats/stats.h"
#include "util/err.h"
#include "util/log.h"

#include <criterion/criterion.h>

#include <ctype.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const all_routes[] = {"kv_get", "kv_head", "kv_put",  "kv_delete", "clear",
                                         "health", "stats",   "metrics", "other"};
#define N_ROUTES (sizeof all_routes / sizeof all_routes[0])

static const struct stats_gauges gauges = {
    .keys = 11,
    .bytes = 2222,
    .log_bytes = 333,
    .last_index = 44,
    .durable_index = 46,
    .commit_index = 45,
    .applied_index = 44,
    .uptime_s = 55,
    .connections = 6,
};

static struct stats *st;

static void setup(void)
{
    st = stats_new();
    cr_assert_not_null(st);
}

static void teardown(void)
{
    stats_free(st);
}

TestSuite(stats, .init = setup, .fini = teardown);

static char *render_json(void)
{
    struct buf b = {0};
    cr_assert_eq(stats_render_json(st, &b, &gauges), 0);
    char *s = buf_take(&b, NULL);
    cr_assert_not_null(s);
    return s;
}

static char *render_prom(void)
{
    struct buf b = {0};
    cr_assert_eq(stats_render_prometheus(st, &b, &gauges), 0);
    char *s = buf_take(&b, NULL);
    cr_assert_not_null(s);
    return s;
}

static void assert_contains(const char *doc, const char *needle)
{
    cr_assert_not_null(strstr(doc, needle), "missing %s in:\n%s", needle, doc);
}

/* ---- a strict JSON checker (RFC 8259 grammar, no extensions) ---- */

static bool json_value(const char **p, int depth);

static void json_ws(const char **p)
{
    while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
        (*p)++;
}

static bool json_string(const char **p)
{
    if (**p != '"')
        return false;
    for ((*p)++; **p != '"'; (*p)++) {
        unsigned char c = (unsigned char)**p;
        if (c < 0x20)
            return false; /* includes the terminating NUL */
        if (c == '\\') {
            (*p)++;
            if (**p == 'u') {
                for (int i = 0; i < 4; i++) {
                    (*p)++;
                    if (!isxdigit((unsigned char)**p))
                        return false;
                }
            } else if (strchr("\"\\/bfnrt", **p) == NULL || **p == '\0') {
                return false;
            }
        }
    }
    (*p)++;
    return true;
}

static bool json_number(const char **p)
{
    if (**p == '-')
        (*p)++;
    if (**p == '0') {
        (*p)++;
    } else if (**p >= '1' && **p <= '9') {
        while (isdigit((unsigned char)**p))
            (*p)++;
    } else {
        return false;
    }
    if (**p == '.') {
        (*p)++;
        if (!isdigit((unsigned char)**p))
            return false;
        while (isdigit((unsigned char)**p))
            (*p)++;
    }
    if (**p == 'e' || **p == 'E') {
        (*p)++;
        if (**p == '+' || **p == '-')
            (*p)++;
        if (!isdigit((unsigned char)**p))
            return false;
        while (isdigit((unsigned char)**p))
            (*p)++;
    }
    return true;
}

/* Object or array: `open`, items separated by commas, `close`. */
static bool json_container(const char **p, int depth, char close, bool keyed)
{
    (*p)++;
    json_ws(p);
    if (**p == close) {
        (*p)++;
        return true;
    }
    for (;;) {
        json_ws(p);
        if (keyed) {
            if (!json_string(p))
                return false;
            json_ws(p);
            if (**p != ':')
                return false;
            (*p)++;
        }
        if (!json_value(p, depth + 1))
            return false;
        json_ws(p);
        if (**p == close) {
            (*p)++;
            return true;
        }
        if (**p != ',')
            return false;
        (*p)++;
    }
}

static bool json_value(const char **p, int depth)
{
    if (depth > 64)
        return false;
    json_ws(p);
    switch (**p) {
    case '{':
        return json_container(p, depth, '}', true);
    case '[':
        return json_container(p, depth, ']', false);
    case '"':
        return json_string(p);
    case 't':
        return strncmp(*p, "true", 4) == 0 ? (*p += 4, true) : false;
    case 'f':
        return strncmp(*p, "false", 5) == 0 ? (*p += 5, true) : false;
    case 'n':
        return strncmp(*p, "null", 4) == 0 ? (*p += 4, true) : false;
    default:
        return json_number(p);
    }
}

static bool json_valid(const char *doc)
{
    const char *p = doc;
    if (*p != '{' || !json_value(&p, 0))
        return false;
    json_ws(&p);
    return *p == '\0';
}

/* The unsigned number right after `key` following the first `anchor`. */
static uint64_t json_u64(const char *doc, const char *anchor, const char *key)
{
    const char *a = strstr(doc, anchor);
    cr_assert_not_null(a, "no %s", anchor);
    const char *k = strstr(a, key);
    cr_assert_not_null(k, "no %s after %s", key, anchor);
    return strtoull(k + strlen(key), NULL, 10);
}

Test(stats, json_checker_rejects_broken_documents)
{
    /* The checker is what the JSON tests rely on; it must be able to say no. */
    cr_assert(json_valid("{\"a\":[1,2.5,-3e2,\"x\\n\"],\"b\":{},\"c\":true}"));
    cr_assert_not(json_valid("{\"a\":1,}"));
    cr_assert_not(json_valid("{\"a\":01}"));
    cr_assert_not(json_valid("{\"a\":1"));
    cr_assert_not(json_valid("{\"a\" 1}"));
    cr_assert_not(json_valid("{\"a\":1}}"));
    cr_assert_not(json_valid("{\"a\":nan}"));
    cr_assert_not(json_valid("{\"a\":1.}"));
}

Test(stats, json_is_valid_and_lists_every_route_when_idle)
{
    char *doc = render_json();
    cr_assert(json_valid(doc), "invalid JSON:\n%s", doc);
    for (size_t i = 0; i < N_ROUTES; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "\"%s\":{\"count\":0,", all_routes[i]);
        assert_contains(doc, needle);
    }
    assert_contains(doc, "{\"uptime_s\":55,\"keys\":11,\"bytes\":2222,\"connections\":6,");
    assert_contains(doc, "\"log_bytes\":333,\"last_index\":44,\"durable_index\":46,"
                         "\"commit_index\":45,\"applied_index\":44}");
    assert_contains(doc, "\"latency_us\":{\"min\":0,\"avg\":0.00,\"p50\":0,");
    free(doc);
}

Test(stats, json_counts_requests_by_route_and_status)
{
    for (int i = 0; i < 3; i++)
        stats_record_request(st, ROUTE_KV_PUT, 200, 1000);
    stats_record_request(st, ROUTE_KV_GET, 404, 10);
    stats_record_request(st, ROUTE_KV_GET, 418, 10); /* not a tracked code */
    stats_record_request(st, ROUTE_OTHER, 405, 10);
    char *doc = render_json();
    cr_assert(json_valid(doc), "invalid JSON:\n%s", doc);
    assert_contains(doc, "\"kv_put\":{\"count\":3,\"status\":{\"200\":3,");
    assert_contains(doc, "\"kv_get\":{\"count\":2,");
    cr_assert_eq(json_u64(doc, "\"kv_get\":", "\"404\":"), 1);
    cr_assert_eq(json_u64(doc, "\"kv_get\":", "\"other\":"), 1);
    cr_assert_eq(json_u64(doc, "\"kv_get\":", "\"200\":"), 0);
    cr_assert_eq(json_u64(doc, "\"requests\":{", "\"other\":{\"count\":"), 1);
    cr_assert_eq(json_u64(doc, "\"other\":{\"count\":", "\"405\":"), 1);
    assert_contains(doc, "\"kv_delete\":{\"count\":0,");
    free(doc);
}

Test(stats, json_latency_summary_is_exact_for_small_values)
{
    stats_record_request(st, ROUTE_KV_GET, 200, 10);
    stats_record_request(st, ROUTE_KV_GET, 200, 30);
    stats_record_request(st, ROUTE_KV_GET, 200, 20);
    char *doc = render_json();
    assert_contains(doc, "\"kv_get\":{\"count\":3,");
    assert_contains(doc, "\"latency_us\":{\"min\":10,\"avg\":20.00,\"p50\":20,\"p90\":30,"
                         "\"p99\":30,\"p999\":30,\"max\":30}");
    free(doc);
}

Test(stats, json_shows_log_checkpoint_and_recovery_figures)
{
    stats_record_batch(st, 3, 300, 40);
    stats_record_batch(st, 5, 500, 60);
    stats_record_checkpoint(st, 1500, 42, 4096);
    stats_record_checkpoint(st, 2500, 99, 8192);
    stats_record_recovery(st, 777, 7, 11);
    char *doc = render_json();
    cr_assert(json_valid(doc), "invalid JSON:\n%s", doc);
    assert_contains(doc, "\"log\":{\"batches\":2,\"records\":8,");
    assert_contains(doc, "\"records_per_batch\":{\"min\":3,\"avg\":4.00,");
    assert_contains(doc, "\"bytes_written\":800,");
    assert_contains(doc, "\"fsync_us\":{\"min\":40,\"avg\":50.00,");
    cr_assert_eq(json_u64(doc, "\"fsync_us\":", "\"max\":"), 60);
    assert_contains(doc, "\"checkpoints\":{\"count\":2,\"total_duration_us\":4000,"
                         "\"last_duration_us\":2500,\"last_index\":99,\"last_bytes\":8192,");
    cr_assert_eq(json_u64(doc, "\"checkpoints\":", "\"max\":"), 2500);
    assert_contains(doc, "\"recovery\":{\"duration_us\":777,\"snapshot_index\":7,"
                         "\"replayed\":11}");
    free(doc);
}

Test(stats, reset_zeroes_everything)
{
    stats_record_request(st, ROUTE_KV_PUT, 200, 5);
    stats_record_batch(st, 1, 10, 10);
    stats_record_checkpoint(st, 1, 2, 3);
    stats_record_recovery(st, 1, 2, 3);
    stats_reset(st);
    char *doc = render_json();
    assert_contains(doc, "\"kv_put\":{\"count\":0,");
    assert_contains(doc, "\"log\":{\"batches\":0,\"records\":0,");
    assert_contains(doc, "\"bytes_written\":0,");
    assert_contains(doc, "\"checkpoints\":{\"count\":0,\"total_duration_us\":0,"
                         "\"last_duration_us\":0,\"last_index\":0,\"last_bytes\":0,");
    assert_contains(doc, "\"recovery\":{\"duration_us\":0,\"snapshot_index\":0,\"replayed\":0}");
    free(doc);
}

/* Two servers in one process (tests) must not count into each other. */
Test(stats, two_instances_count_apart)
{
    struct stats *other = stats_new();
    cr_assert_not_null(other);
    stats_record_request(st, ROUTE_KV_PUT, 200, 10);
    stats_record_request(st, ROUTE_KV_PUT, 200, 10);
    stats_record_batch(other, 7, 700, 1);
    char *doc = render_json();
    assert_contains(doc, "\"kv_put\":{\"count\":2,");
    assert_contains(doc, "\"log\":{\"batches\":0,\"records\":0,");
    free(doc);
    struct buf b = {0};
    cr_assert_eq(stats_render_json(other, &b, &gauges), 0);
    doc = buf_take(&b, NULL);
    assert_contains(doc, "\"kv_put\":{\"count\":0,");
    assert_contains(doc, "\"log\":{\"batches\":1,\"records\":7,");
    free(doc);
    stats_free(other);
}

Test(stats, route_names_are_stable)
{
    for (int r = 0; r < ROUTE__COUNT; r++)
        cr_assert_str_eq(stats_route_name((enum stats_route)r), all_routes[r]);
    cr_assert_eq((size_t)ROUTE__COUNT, N_ROUTES);
    cr_assert_str_eq(stats_route_name(ROUTE__COUNT), "other");
}

Test(stats, out_of_range_route_is_counted_as_other)
{
    stats_record_request(st, ROUTE__COUNT, 200, 1);
    char *doc = render_json();
    assert_contains(doc, "\"other\":{\"count\":1,");
    free(doc);
}

Test(stats, render_into_failed_buffer_reports_enomem)
{
    struct buf b = {0};
    b.failed = 1;
    cr_assert_eq(stats_render_json(st, &b, &gauges), LKV_ENOMEM);
    cr_assert_eq(stats_render_prometheus(st, &b, &gauges), LKV_ENOMEM);
    buf_free(&b);
}

#define PER_THREAD 50000

static void *requests_cb(void *arg)
{
    unsigned status = *(const unsigned *)arg;
    for (uint64_t i = 0; i < PER_THREAD; i++)
        stats_record_request(st, ROUTE_KV_PUT, status, i);
    return NULL;
}

Test(stats, concurrent_requests_are_all_counted)
{
    unsigned ok = 200, full = 507;
    pthread_t a, b;
    cr_assert_eq(pthread_create(&a, NULL, requests_cb, &ok), 0);
    cr_assert_eq(pthread_create(&b, NULL, requests_cb, &full), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    char *doc = render_json();
    cr_assert_eq(json_u64(doc, "\"kv_put\":", "\"count\":"), 2 * PER_THREAD);
    cr_assert_eq(json_u64(doc, "\"kv_put\":", "\"200\":"), PER_THREAD);
    cr_assert_eq(json_u64(doc, "\"kv_put\":", "\"507\":"), PER_THREAD);
    cr_assert_eq(json_u64(doc, "\"kv_put\":", "\"max\":"), PER_THREAD - 1);
    free(doc);
}

/* ---- a Prometheus 0.0.4 text checker ---- */

#define MAX_FAMILIES 64

struct prom_check {
    char names[MAX_FAMILIES][96];
    char types[MAX_FAMILIES][32];
    bool help[MAX_FAMILIES];
    int n;
    /* The histogram series being read: name + labels without le. */
    char series[256];
    double last_le;
    uint64_t last_bucket;
    bool saw_inf;
    uint64_t inf_value;
    int samples;
    char err[512]; /* the first problem found */
};

/* Records the first problem and makes the enclosing checker return false. */
#define CHECK(c, cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf((c)->err, sizeof(c)->err, __VA_ARGS__);                                       \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

static int family_index(struct prom_check *c, const char *name)
{
    for (int i = 0; i < c->n; i++) {
        if (strcmp(c->names[i], name) == 0)
            return i;
    }
    if (c->n == MAX_FAMILIES)
        return -1;
    snprintf(c->names[c->n], sizeof c->names[0], "%s", name);
    c->types[c->n][0] = '\0';
    c->help[c->n] = false;
    return c->n++;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The family a sample belongs to: its own name, or for a histogram's
 * _bucket/_sum/_count samples the name without the suffix. */
static int sample_family(struct prom_check *c, const char *name, const char **suffix)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    *suffix = "";
    for (size_t i = 0; i < 3; i++) {
        if (!ends_with(name, suffixes[i]))
            continue;
        char base[96];
        snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - strlen(suffixes[i])), name);
        for (int f = 0; f < c->n; f++) {
            if (strcmp(c->names[f], base) == 0 && strcmp(c->types[f], "histogram") == 0) {
                *suffix = suffixes[i];
                return f;
            }
        }
    }
    for (int f = 0; f < c->n; f++) {
        if (strcmp(c->names[f], name) == 0)
            return f;
    }
    return -1;
}

/* Splits `labels` into the le value and the other labels. */
static bool split_le(struct prom_check *c, const char *labels, char *rest, size_t rest_size,
                     char *le, size_t le_size)
{
    le[0] = '\0';
    const char *p = strstr(labels, "le=\"");
    if (p == NULL) {
        snprintf(rest, rest_size, "%s", labels);
        return true;
    }
    const char *end = strchr(p + 4, '"');
    CHECK(c, end != NULL, "unterminated le in {%s}", labels);
    snprintf(le, le_size, "%.*s", (int)(end - (p + 4)), p + 4);
    snprintf(rest, rest_size, "%.*s%s", (int)(p - labels), labels, end + 1);
    size_t n = strlen(rest);
    if (n > 0 && rest[n - 1] == ',')
        rest[n - 1] = '\0'; /* a bucket's labels are "route=..,le=.." */
    return true;
}

static bool check_histogram_sample(struct prom_check *c, const char *suffix, const char *family,
                                   const char *labels, uint64_t v)
{
    char rest[192], le[32], key[256];
    if (!split_le(c, labels, rest, sizeof rest, le, sizeof le))
        return false;
    snprintf(key, sizeof key, "%s{%s}", family, rest);
    if (strcmp(suffix, "_bucket") == 0) {
        CHECK(c, le[0] != '\0', "bucket without le: %s", key);
        if (strcmp(c->series, key) != 0) {
            CHECK(c, c->series[0] == '\0' || c->saw_inf, "%s ended without +Inf", c->series);
            snprintf(c->series, sizeof c->series, "%s", key);
            c->last_le = -1;
            c->last_bucket = 0;
            c->saw_inf = false;
        }
        CHECK(c, !c->saw_inf, "bucket after +Inf in %s", key);
        bool inf = strcmp(le, "+Inf") == 0;
        double bound = inf ? 1e300 : strtod(le, NULL);
        CHECK(c, bound > c->last_le, "le not increasing in %s at %s", key, le);
        CHECK(c, v >= c->last_bucket, "buckets not cumulative in %s at le=%s", key, le);
        c->last_le = bound;
        c->last_bucket = v;
        c->saw_inf = inf;
        c->inf_value = v;
    } else if (strcmp(suffix, "_count") == 0) {
        CHECK(c, strcmp(c->series, key) == 0, "_count without buckets: %s", key);
        CHECK(c, c->saw_inf, "no +Inf bucket in %s", key);
        CHECK(c, v == c->inf_value, "+Inf bucket %llu != _count %llu in %s",
              (unsigned long long)c->inf_value, (unsigned long long)v, key);
    }
    return true;
}

static bool check_sample(struct prom_check *c, const char *line)
{
    char name[96], labels[192] = "";
    size_t i = 0;
    while (isalnum((unsigned char)line[i]) || line[i] == '_' || line[i] == ':')
        i++;
    CHECK(c, i > 0 && i < sizeof name, "bad metric name in: %s", line);
    snprintf(name, sizeof name, "%.*s", (int)i, line);
    if (line[i] == '{') {
        const char *end = strchr(line + i, '}');
        CHECK(c, end != NULL, "unterminated labels: %s", line);
        snprintf(labels, sizeof labels, "%.*s", (int)(end - line - (long)i - 1), line + i + 1);
        i = (size_t)(end - line) + 1;
    }
    CHECK(c, line[i] == ' ', "no space before the value: %s", line);
    char *endp;
    double v = strtod(line + i + 1, &endp);
    CHECK(c, endp != line + i + 1 && *endp == '\0', "bad value: %s", line);
    CHECK(c, v >= 0.0, "negative value: %s", line);

    const char *suffix;
    int f = sample_family(c, name, &suffix);
    CHECK(c, f >= 0, "sample before its # TYPE: %s", line);
    CHECK(c, c->help[f], "no # HELP before %s", line);
    if (strcmp(c->types[f], "histogram") == 0) {
        CHECK(c, suffix[0] != '\0', "histogram sample without a suffix: %s", line);
        if (!check_histogram_sample(c, suffix, c->names[f], labels, (uint64_t)v))
            return false;
    }
    if (strcmp(c->types[f], "counter") == 0)
        CHECK(c, ends_with(name, "_total"), "counter %s should end in _total", name);
    c->samples++;
    return true;
}

static bool check_comment(struct prom_check *c, const char *line)
{
    char name[96], type[32];
    if (strncmp(line, "# HELP ", 7) == 0) {
        CHECK(c, sscanf(line + 7, "%95s", name) == 1, "bad HELP: %s", line);
        int f = family_index(c, name);
        CHECK(c, f >= 0, "too many families");
        CHECK(c, !c->help[f], "second # HELP for %s", name);
        CHECK(c, strlen(line) > 8 + strlen(name), "empty help for %s", name);
        c->help[f] = true;
        return true;
    }
    CHECK(c, strncmp(line, "# TYPE ", 7) == 0, "stray comment: %s", line);
    CHECK(c, sscanf(line + 7, "%95s %31s", name, type) == 2, "bad TYPE: %s", line);
    int f = family_index(c, name);
    CHECK(c, f >= 0, "too many families");
    CHECK(c, c->types[f][0] == '\0', "second # TYPE for %s", name);
    CHECK(c,
          strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
              strcmp(type, "histogram") == 0,
          "unexpected type %s", type);
    snprintf(c->types[f], sizeof c->types[0], "%s", type);
    return true;
}

/* Checks an exposition; on failure copies the first problem into err. */
static bool prom_valid(const char *text, char *err, size_t err_size)
{
    struct prom_check *c = calloc(1, sizeof *c);
    char *copy = strdup(text);
    cr_assert(c != NULL && copy != NULL);
    bool ok = ends_with(text, "\n");
    if (!ok)
        snprintf(c->err, sizeof c->err, "exposition must end with a newline");
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); ok && line != NULL;
         line = strtok_r(NULL, "\n", &save))
        ok = line[0] == '#' ? check_comment(c, line) : check_sample(c, line);
    for (int f = 0; ok && f < c->n; f++) {
        if (!c->help[f] || c->types[f][0] == '\0' || strncmp(c->names[f], "lkv_", 4) != 0) {
            snprintf(c->err, sizeof c->err, "%s: needs HELP, TYPE and the lkv_ prefix",
                     c->names[f]);
            ok = false;
        }
    }
    if (ok && c->series[0] != '\0' && !c->saw_inf) {
        snprintf(c->err, sizeof c->err, "%s ended without +Inf", c->series);
        ok = false;
    }
    if (ok && c->samples == 0) {
        snprintf(c->err, sizeof c->err, "no samples");
        ok = false;
    }
    snprintf(err, err_size, "%s", c->err);
    free(copy);
    free(c);
    return ok;
}

static void assert_prom_valid(const char *text)
{
    char err[512];
    cr_assert(prom_valid(text, err, sizeof err), "%s", err);
}

static void record_spread(void)
{
    for (uint64_t v = 1; v < 20000000; v = v * 3 / 2 + 1) {
        stats_record_request(st, ROUTE_KV_GET, 200, v);
        stats_record_request(st, ROUTE_KV_PUT, v % 2 ? 200 : 507, v);
        stats_record_batch(st, v % 100 + 1, v, v);
        stats_record_checkpoint(st, v * 10, v, v);
    }
    stats_record_recovery(st, 1234567, 5, 6);
}

Test(stats, prometheus_checker_rejects_broken_expositions)
{
    /* The checker is what the /metrics tests rely on; it must be able to say no. */
    char err[512];
    const char *good = "# HELP lkv_x x\n# TYPE lkv_x histogram\n"
                       "lkv_x_bucket{le=\"1\"} 3\nlkv_x_bucket{le=\"+Inf\"} 4\n"
                       "lkv_x_sum 1\nlkv_x_count 4\n";
    cr_assert(prom_valid(good, err, sizeof err), "%s", err);
    const char *const bad[] = {
        /* buckets not cumulative */
        "# HELP lkv_x x\n# TYPE lkv_x histogram\n"
        "lkv_x_bucket{le=\"1\"} 5\nlkv_x_bucket{le=\"+Inf\"} 4\nlkv_x_sum 1\nlkv_x_count 4\n",
        /* +Inf bucket disagrees with _count */
        "# HELP lkv_x x\n# TYPE lkv_x histogram\n"
        "lkv_x_bucket{le=\"1\"} 3\nlkv_x_bucket{le=\"+Inf\"} 4\nlkv_x_sum 1\nlkv_x_count 5\n",
        /* no +Inf bucket */
        "# HELP lkv_x x\n# TYPE lkv_x histogram\nlkv_x_bucket{le=\"1\"} 3\nlkv_x_count 3\n",
        /* no HELP */
        "# TYPE lkv_y gauge\nlkv_y 1\n",
        /* no TYPE */
        "# HELP lkv_y y\nlkv_y 1\n",
        /* missing prefix */
        "# HELP y y\n# TYPE y gauge\ny 1\n",
        /* counter without _total */
        "# HELP lkv_y y\n# TYPE lkv_y counter\nlkv_y 1\n",
        /* no final newline */
        "# HELP lkv_y y\n# TYPE lkv_y gauge\nlkv_y 1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_not(prom_valid(bad[i], err, sizeof err), "accepted:\n%s", bad[i]);
}

Test(stats, prometheus_is_well_formed_when_idle)
{
    char *text = render_prom();
    assert_prom_valid(text);
    free(text);
}

Test(stats, prometheus_is_well_formed_after_traffic)
{
    record_spread();
    char *text = render_prom();
    assert_prom_valid(text);
    free(text);
}

Test(stats, prometheus_reports_known_figures_in_base_units)
{
    for (int i = 0; i < 3; i++)
        stats_record_request(st, ROUTE_KV_PUT, 200, 400);
    stats_record_request(st, ROUTE_KV_PUT, 200, 1500000);
    stats_record_batch(st, 4, 1000, 2000);
    stats_record_checkpoint(st, 3000000, 12, 65536);
    stats_record_recovery(st, 1500, 3, 9);
    char *text = render_prom();
    assert_contains(text, "# TYPE lkv_http_requests_total counter\n");
    assert_contains(text, "lkv_http_requests_total{route=\"kv_put\",code=\"200\"} 4\n");
    assert_contains(text, "lkv_http_requests_total{route=\"kv_get\",code=\"200\"} 0\n");
    assert_contains(text, "# TYPE lkv_http_request_duration_seconds histogram\n");
    const char *p = "lkv_http_request_duration_seconds_";
    char want[160];
    snprintf(want, sizeof want, "%sbucket{route=\"kv_put\",le=\"0.00025\"} 0\n", p);
    assert_contains(text, want);
    snprintf(want, sizeof want, "%sbucket{route=\"kv_put\",le=\"0.0005\"} 3\n", p);
    assert_contains(text, want);
    snprintf(want, sizeof want, "%sbucket{route=\"kv_put\",le=\"1\"} 3\n", p);
    assert_contains(text, want);
    snprintf(want, sizeof want, "%sbucket{route=\"kv_put\",le=\"2.5\"} 4\n", p);
    assert_contains(text, want);
    snprintf(want, sizeof want, "%sbucket{route=\"kv_put\",le=\"+Inf\"} 4\n", p);
    assert_contains(text, want);
    snprintf(want, sizeof want, "%ssum{route=\"kv_put\"} 1.501200\n", p);
    assert_contains(text, want);
    snprintf(want, sizeof want, "%scount{route=\"kv_put\"} 4\n", p);
    assert_contains(text, want);
    assert_contains(text, "lkv_log_batches_total 1\n");
    assert_contains(text, "lkv_log_records_total 4\n");
    assert_contains(text, "lkv_log_bytes_written_total 1000\n");
    assert_contains(text, "lkv_log_fsync_duration_seconds_sum 0.002000\n");
    assert_contains(text, "lkv_log_fsync_duration_seconds_count 1\n");
    assert_contains(text, "lkv_log_fsync_duration_seconds_bucket{le=\"0.0025\"} 1\n");
    assert_contains(text, "lkv_log_bytes 333\n");
    assert_contains(text, "lkv_log_last_index 44\n");
    assert_contains(text, "lkv_log_durable_index 46\n");
    assert_contains(text, "lkv_log_commit_index 45\n");
    assert_contains(text, "lkv_log_applied_index 44\n");
    assert_contains(text, "lkv_checkpoints_total 1\n");
    assert_contains(text, "lkv_checkpoint_duration_seconds_sum 3.000000\n");
    assert_contains(text, "lkv_checkpoint_last_duration_seconds 3.000000\n");
    assert_contains(text, "lkv_checkpoint_last_index 12\n");
    assert_contains(text, "lkv_checkpoint_last_bytes 65536\n");
    assert_contains(text, "lkv_recovery_duration_seconds 0.001500\n");
    assert_contains(text, "lkv_recovery_snapshot_index 3\n");
    assert_contains(text, "lkv_recovery_replayed_records 9\n");
    assert_contains(text, "lkv_keys 11\n");
    assert_contains(text, "lkv_data_bytes 2222\n");
    assert_contains(text, "lkv_uptime_seconds 55\n");
    assert_contains(text, "lkv_open_connections 6\n");
    free(text);
}

/* ---- shutdown summary ---- */

/* Runs stats_log_summary() with stderr sent to a temp file; returns the text. */
static char *capture_summary(void)
{
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    int saved = dup(STDERR_FILENO);
    cr_assert_geq(saved, 0);
    cr_assert_geq(dup2(fileno(tmp), STDERR_FILENO), 0);
    stats_log_summary(st);
    dup2(saved, STDERR_FILENO);
    close(saved);
    cr_assert_eq(fseek(tmp, 0, SEEK_END), 0);
    long n = ftell(tmp);
    cr_assert_geq(n, 0);
    char *text = calloc(1, (size_t)n + 1);
    cr_assert_not_null(text);
    rewind(tmp);
    cr_assert_eq(fread(text, 1, (size_t)n, tmp), (size_t)n);
    fclose(tmp);
    return text;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

Test(stats, log_summary_has_one_line_per_route_that_saw_requests)
{
    log_threshold = LOG_LVL_INFO;
    stats_record_request(st, ROUTE_KV_PUT, 200, 10);
    stats_record_request(st, ROUTE_KV_PUT, 200, 20);
    stats_record_request(st, ROUTE_KV_PUT, 507, 30);
    stats_record_request(st, ROUTE_HEALTH, 503, 5);
    char *text = capture_summary();
    cr_assert_eq(count_lines(text), 2, "got:\n%s", text);
    assert_contains(text, "level=info event=request_summary route=kv_put count=3 200=2 507=1 "
                          "min_us=10 avg_us=20.0 p50_us=20 p90_us=30 p99_us=30 p999_us=30 "
                          "max_us=30\n");
    assert_contains(text, "event=request_summary route=health count=1 503=1 min_us=5 ");
    cr_assert_null(strstr(text, "route=kv_get"), "idle routes must not be logged");
    free(text);
}

Test(stats, log_summary_is_silent_without_requests)
{
    log_threshold = LOG_LVL_INFO;
    stats_record_batch(st, 1, 1, 1);
    char *text = capture_summary();
    cr_assert_str_eq(text, "");
    free(text);
}
