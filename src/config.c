#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum opt_kind { OPT_STR, OPT_UINT, OPT_SIZE, OPT_FLAG, OPT_BOOL };

struct opt {
    const char *name;   /* without the leading "--" */
    enum opt_kind kind;
    size_t offset;      /* into struct config */
    size_t str_cap;     /* OPT_STR: size of the char array */
    uint64_t min, max;  /* OPT_UINT/OPT_SIZE bounds, inclusive */
    const char *def;    /* default, parsed like a flag value */
    const char *help;
};

#define STR(field, def, help)                                                \
    {#field, OPT_STR, offsetof(struct config, field),                        \
     sizeof(((struct config *)0)->field), 0, 0, def, help}
#define NUM(name, kind, field, lo, hi, def, help)                            \
    {name, kind, offsetof(struct config, field), 0, lo, hi, def, help}

static const struct opt opts[] = {
    NUM("port", OPT_UINT, port, 1, 65535, "8080", "TCP port to listen on (env ADDR=host:port)"),
    STR(bind, "0.0.0.0", "IPv4 or IPv6 address to listen on"),
    {"working-dir", OPT_STR, offsetof(struct config, data_dir),
     sizeof(((struct config *)0)->data_dir), 0, 0, "./data",
     "directory for all durable state, created if missing (env DATA_DIR)"},
    STR(addr, "", "this node's host:port in the cluster, as peers and clients reach it "
                  "(env ADDR) [127.0.0.1:<port>]"),
    STR(peers, "", "the other members, host:port comma-separated (env PEERS); read only "
                   "when the data directory is new"),
    {"join", OPT_BOOL, offsetof(struct config, join), 0, 0, 1, NULL,
     "start empty and wait to be added to a running cluster (env JOIN=1)"},
    NUM("election-timeout-ms", OPT_UINT, election_timeout_ms, 20, 60000, "500",
        "election timeout T: each one is drawn from [T, 2T)"),
    NUM("heartbeat-ms", OPT_UINT, heartbeat_ms, 5, 30000, "100",
        "leader heartbeat interval, below the election timeout"),
    {"read-mode", OPT_STR, offsetof(struct config, read_mode),
     sizeof(((struct config *)0)->read_mode), 0, 0, "index",
     "linearizable reads on the leader: index (ReadIndex) or lease"},
    {"cluster-secret", OPT_STR, offsetof(struct config, cluster_secret),
     sizeof(((struct config *)0)->cluster_secret), 0, 0, "",
     "shared secret node-to-node messages must carry (env CLUSTER_SECRET)"},
    NUM("join-timeout", OPT_UINT, join_timeout_s, 1, 86400, "60",
        "seconds a new member has to catch up before it is promoted"),
    NUM("log-retain", OPT_UINT, log_retain, 0, (uint64_t)1 << 32, "10000",
        "log entries kept after a checkpoint, so slow followers catch up from the log"),
    NUM("threads", OPT_UINT, threads, 0, 256, "0", "HTTP worker threads, 0 = one per core"),
    NUM("max-connections", OPT_UINT, max_connections, 16, 1000000, "16000",
        "concurrent connections (bounded by the open-files limit)"),
    NUM("max-key-bytes", OPT_SIZE, max_key_bytes, 1, 65536, "1024", "longest key, in bytes"),
    NUM("max-value-bytes", OPT_SIZE, max_value_bytes, 1, (uint64_t)64 << 20, "10m",
        "largest value, in bytes (k/m/g suffixes)"),
    NUM("max-header-bytes", OPT_SIZE, max_header_bytes, 1024, 1 << 20, "8k",
        "total size of a request's headers"),
    NUM("idle-timeout", OPT_UINT, idle_timeout_s, 1, 86400, "60",
        "seconds an idle keep-alive connection stays open"),
    NUM("request-timeout", OPT_UINT, request_timeout_s, 1, 3600, "10",
        "seconds a client has to send a whole request"),
    NUM("shutdown-timeout", OPT_UINT, shutdown_timeout_s, 0, 3600, "15",
        "seconds to let in-flight requests finish on SIGTERM"),
    NUM("checkpoint-bytes", OPT_SIZE, checkpoint_bytes, 4096, (uint64_t)1 << 40, "64m",
        "log bytes since the last checkpoint that trigger a new one"),
    NUM("max-memory", OPT_SIZE, max_memory, 0, UINT64_MAX, "0",
        "key+value bytes after which writes get 507, 0 = unlimited"),
    {"log-level", OPT_STR, offsetof(struct config, log_level),
     sizeof(((struct config *)0)->log_level), 0, 0, "info", "error, warn, info or debug"},
    {"help", OPT_FLAG, 0, 0, 0, 0, NULL, "print this help and exit"},
    {"version", OPT_FLAG, 0, 0, 0, 0, NULL, "print the version and exit"},
};

#define NOPTS (sizeof opts / sizeof opts[0])

/* Copies at most n bytes of a user-supplied value into out (64 bytes) for an
 * error message, with control bytes escaped, so the message stays one line
 * whatever was typed. */
static const char *shown(const char *v, size_t n, char out[64])
{
    size_t o = 0;
    for (size_t i = 0; i < n && v[i] && o < 56; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f)
            o += (size_t)snprintf(out + o, 64 - o, "\\x%02x", ch);
        else
            out[o++] = (char)ch;
    }
    if (o >= 56 && n > 0)
        o += (size_t)snprintf(out + o, 64 - o, "...");
    out[o] = '\0';
    return out;
}

static const struct opt *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    }
    return NULL;
}

/* Parses a decimal number with an optional k/m/g (binary) suffix for sizes. */
static bool parse_number(const char *s, bool sized, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    unsigned shift = 0;
    if (sized && *end != '\0' && end[1] == '\0') {
        switch (*end) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return false;
        }
        end++;
    }
    if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
        return false;
    *out = (uint64_t)v << shift;
    return true;
}

static bool set_opt(struct config *c, const struct opt *o, const char *val, char *err,
                    size_t errlen)
{
    char *field = (char *)c + o->offset;
    if (o->kind == OPT_STR) {
        if (strlen(val) >= o->str_cap) {
            snprintf(err, errlen, "--%s: value too long (at most %zu bytes)", o->name,
                     o->str_cap - 1);
            return false;
        }
        memcpy(field, val, strlen(val) + 1);
        return true;
    }
    uint64_t v;
    if (!parse_number(val, o->kind == OPT_SIZE, &v) || v < o->min || v > o->max) {
        char q[64];
        snprintf(err, errlen, "--%s: invalid value '%s' (expected %s from %llu to %llu)",
                 o->name, shown(val, SIZE_MAX, q), o->kind == OPT_SIZE ? "a size" : "a whole number",
                 (unsigned long long)o->min, (unsigned long long)o->max);
        return false;
    }
    memcpy(field, &v, sizeof v);
    return true;
}

static void print_help(FILE *out)
{
    fprintf(out, "usage: little-key-value [options]\n\n"
                 "A durable HTTP key-value store. Options take '--opt value' or '--opt=value'.\n\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char left[48];
        bool bare = opts[i].kind == OPT_FLAG || opts[i].kind == OPT_BOOL;
        snprintf(left, sizeof left, "--%s%s", opts[i].name, bare ? "" : " V");
        fprintf(out, "  %-22s %s", left, opts[i].help);
        if (opts[i].def && opts[i].def[0])
            fprintf(out, " [%s]", opts[i].def);
        fputc('\n', out);
    }
}

/* host:port, host a name or IPv4 address (letters, digits, '.', '-', '_')
 * or a bracketed IPv6 address, port 1..65535; short enough to be a member
 * address. Sets *port. */
static bool valid_hostport(const char *s, uint64_t *port)
{
    size_t n = strlen(s);
    const char *colon = strrchr(s, ':');
    if (n == 0 || n >= 128 || !colon || colon == s)
        return false;
    if (!parse_number(colon + 1, false, port) || *port < 1 || *port > 65535)
        return false;
    if (s[0] == '[') {
        if (colon[-1] != ']' || colon - s < 3)
            return false;
        for (const char *p = s + 1; p < colon - 1; p++) {
            if (!strchr("0123456789abcdefABCDEF:.", *p))
                return false;
        }
        return true;
    }
    for (const char *p = s; p < colon; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

/* Splits --peers into c->peer[]: trimmed, validated, no duplicates, and
 * without this node's own address (a list that names everyone works too). */
static bool parse_peers(struct config *c, char *err, size_t errlen)
{
    c->npeers = 0;
    const char *p = c->peers;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ')
            end++;
        char one[128];
        size_t len = (size_t)(end - p);
        uint64_t port;
        char q[64];
        if (len >= sizeof one) {
            snprintf(err, errlen, "--peers/PEERS: address too long: '%s'", shown(p, len, q));
            return false;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        if (!valid_hostport(one, &port)) {
            snprintf(err, errlen, "--peers/PEERS: invalid address '%s' (expected host:port)",
                     shown(one, SIZE_MAX, q));
            return false;
        }
        bool dup = strcmp(one, c->addr) == 0;
        for (size_t i = 0; i < c->npeers; i++)
            dup = dup || strcmp(one, c->peer[i]) == 0;
        if (!dup) {
            if (c->npeers == sizeof c->peer / sizeof c->peer[0]) {
                snprintf(err, errlen, "--peers/PEERS: at most %zu other members",
                         sizeof c->peer / sizeof c->peer[0]);
                return false;
            }
            memcpy(c->peer[c->npeers++], one, len + 1);
        }
        p = end;
    }
    return true;
}

/* The identity and listening port: --addr (or ADDR) names this node; its
 * port is the one listened on unless --port was given. */
static bool settle_addr(struct config *c, bool port_flag, bool addr_flag, char *err,
                        size_t errlen)
{
    if (!c->addr[0]) {
        snprintf(c->addr, sizeof c->addr, "127.0.0.1:%llu", (unsigned long long)c->port);
        return true;
    }
    uint64_t port;
    if (!valid_hostport(c->addr, &port)) {
        char q[64];
        snprintf(err, errlen, "--addr: invalid value '%s' (expected host:port)",
                 shown(c->addr, SIZE_MAX, q));
        return false;
    }
    if (addr_flag && !port_flag)
        c->port = port;
    return true;
}

static bool apply_env(struct config *c, config_getenv_fn getenv_fn, char *err, size_t errlen)
{
    if (!getenv_fn)
        return true;
    const char *addr = getenv_fn("ADDR");
    if (addr && *addr) {
        uint64_t port;
        if (!valid_hostport(addr, &port) || !set_opt(c, find_opt("addr", 4), addr, err, errlen)) {
            char q[64];
            snprintf(err, errlen, "ADDR: invalid value '%s' (expected host:port)",
                     shown(addr, SIZE_MAX, q));
            return false;
        }
        c->port = port;
    }
    const char *join = getenv_fn("JOIN");
    if (join && *join)
        c->join = strcmp(join, "0") != 0 && strcmp(join, "false") != 0 && strcmp(join, "no") != 0;
    const char *secret = getenv_fn("CLUSTER_SECRET");
    if (secret && !set_opt(c, find_opt("cluster-secret", 14), secret, err, errlen))
        return false;
    const char *dir = getenv_fn("DATA_DIR");
    if (dir && *dir && !set_opt(c, find_opt("working-dir", 11), dir, err, errlen))
        return false;
    const char *peers = getenv_fn("PEERS");
    if (peers && !set_opt(c, find_opt("peers", 5), peers, err, errlen))
        return false;
    return true;
}

enum config_status config_parse(struct config *c, int argc, char *const argv[],
                                config_getenv_fn getenv_fn, FILE *out, char *err,
                                size_t errlen)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NOPTS; i++) {
        if (opts[i].def && !set_opt(c, &opts[i], opts[i].def, err, errlen))
            return CONFIG_ERROR; /* a bad default is a bug; still report it */
    }
    if (!apply_env(c, getenv_fn, err, errlen))
        return CONFIG_ERROR;

    bool port_flag = false, addr_flag = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            char q[64];
            snprintf(err, errlen, "unexpected argument '%s' (options start with --)",
                     shown(arg, SIZE_MAX, q));
            return CONFIG_ERROR;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const struct opt *o = find_opt(name, nlen);
        if (!o) {
            char q[64];
            snprintf(err, errlen, "unknown option '--%s' (see --help)", shown(name, nlen, q));
            return CONFIG_ERROR;
        }
        if (o->kind == OPT_BOOL) {
            if (eq) {
                snprintf(err, errlen, "--%s takes no value", o->name);
                return CONFIG_ERROR;
            }
            uint64_t one = 1;
            memcpy((char *)c + o->offset, &one, sizeof one);
            continue;
        }
        port_flag = port_flag || o->offset == offsetof(struct config, port);
        addr_flag = addr_flag || o->offset == offsetof(struct config, addr);
        if (o->kind == OPT_FLAG) {
            if (eq) {
                snprintf(err, errlen, "--%s takes no value", o->name);
                return CONFIG_ERROR;
            }
            if (strcmp(o->name, "help") == 0)
                print_help(out);
            else
                fprintf(out, "little-key-value %s\n", LKV_VERSION);
            return CONFIG_EXIT_OK;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", o->name);
                return CONFIG_ERROR;
            }
            val = argv[++i];
        }
        if (!set_opt(c, o, val, err, errlen))
            return CONFIG_ERROR;
    }
    char q[64];
    if (!settle_addr(c, port_flag, addr_flag, err, errlen) || !parse_peers(c, err, errlen))
        return CONFIG_ERROR;
    if (c->heartbeat_ms >= c->election_timeout_ms) {
        snprintf(err, errlen, "--heartbeat-ms: %llu must be below --election-timeout-ms (%llu)",
                 (unsigned long long)c->heartbeat_ms, (unsigned long long)c->election_timeout_ms);
        return CONFIG_ERROR;
    }
    if (strcmp(c->read_mode, "index") != 0 && strcmp(c->read_mode, "lease") != 0) {
        snprintf(err, errlen, "--read-mode: invalid value '%s' (expected index or lease)",
                 shown(c->read_mode, SIZE_MAX, q));
        return CONFIG_ERROR;
    }
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    bool level_ok = false;
    for (size_t i = 0; i < 4; i++)
        level_ok = level_ok || strcmp(c->log_level, levels[i]) == 0;
    if (!level_ok) {
        snprintf(err, errlen, "--log-level: invalid value '%s' (expected error, warn, info or debug)",
                 shown(c->log_level, SIZE_MAX, q));
        return CONFIG_ERROR;
    }
    if (!c->data_dir[0]) {
        snprintf(err, errlen, "--working-dir: must not be empty");
        return CONFIG_ERROR;
    }
    return CONFIG_OK;
}
