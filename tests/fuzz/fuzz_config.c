/* libFuzzer target: command lines and environments through config_parse.
 *
 * Input: byte 0 says which of ADDR, DATA_DIR, PEERS are set (bits 0..2);
 * the rest is split at NUL bytes into at most MAX_TOKENS strings. The first
 * ones are the values of the variables that are set, in that order; the
 * others are argv[1..]. */
#include "config.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 16
#define ERR_LEN 160

static const char *env_names[3] = {"ADDR", "DATA_DIR", "PEERS"};
static const char *env_values[3];
static FILE *devnull;

static const char *fake_getenv(const char *name)
{
    for (int i = 0; i < 3; i++) {
        if (strcmp(name, env_names[i]) == 0)
            return env_values[i];
    }
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    devnull = fopen("/dev/null", "w");
    if (devnull == NULL)
        abort();
    return 0;
}

static bool terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

/* Options that take no value (with CONFIG_OK: --help and --version exit). */
static bool bare_option(const char *arg)
{
    return strcmp(arg, "--join") == 0;
}

/* The value the command line gives an option last, or NULL. Only called
 * after CONFIG_OK, so every argument is a well-formed option. */
static const char *last_flag_value(int argc, char *const argv[], const char *name)
{
    const char *found = NULL;
    size_t nl = strlen(name);
    for (int i = 1; i < argc; i++) {
        if (bare_option(argv[i]))
            continue;
        const char *a = argv[i] + 2;
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        if (!eq)
            i++;
        if (len == nl && memcmp(a, name, nl) == 0)
            found = val;
    }
    return found;
}

static bool has_arg(int argc, char *const argv[], const char *s)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], s) == 0)
            return true;
    }
    return false;
}

static void check_ok(const struct config *c, int argc, char *const argv[])
{
    assert(c->port >= 1 && c->port <= 65535);
    assert(c->threads <= 256);
    assert(c->max_connections >= 16 && c->max_connections <= 1000000);
    assert(c->max_key_bytes >= 1 && c->max_key_bytes <= 65536);
    assert(c->max_value_bytes >= 1 && c->max_value_bytes <= (uint64_t)64 << 20);
    assert(c->max_header_bytes >= 1024 && c->max_header_bytes <= 1 << 20);
    assert(c->idle_timeout_s >= 1 && c->idle_timeout_s <= 86400);
    assert(c->request_timeout_s >= 1 && c->request_timeout_s <= 3600);
    assert(c->shutdown_timeout_s <= 3600);
    assert(c->checkpoint_bytes >= 4096 && c->checkpoint_bytes <= (uint64_t)1 << 40);
    assert(terminated(c->bind, sizeof c->bind) && terminated(c->data_dir, sizeof c->data_dir));
    assert(terminated(c->peers, sizeof c->peers));
    assert(c->npeers <= sizeof c->peer / sizeof c->peer[0]);
    for (size_t i = 0; i < c->npeers; i++) {
        assert(terminated(c->peer[i], sizeof c->peer[i]) && strchr(c->peer[i], ':') != NULL);
        assert(strcmp(c->peer[i], c->addr) != 0);
        for (size_t j = 0; j < i; j++)
            assert(strcmp(c->peer[i], c->peer[j]) != 0);
    }
    assert(c->data_dir[0] != '\0');
    assert(terminated(c->log_level, sizeof c->log_level));
    assert(strcmp(c->log_level, "error") == 0 || strcmp(c->log_level, "warn") == 0 ||
           strcmp(c->log_level, "info") == 0 || strcmp(c->log_level, "debug") == 0);
    /* Every argument is an option, each valued one followed by its value. */
    bool join = false;
    for (int i = 1; i < argc; i++) {
        assert(strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0');
        if (bare_option(argv[i])) {
            join = true;
            continue;
        }
        if (strchr(argv[i], '=') == NULL) {
            assert(i + 1 < argc);
            i++;
        }
    }

    /* Flags win over the environment, which wins over the defaults. */
    if (join)
        assert(c->join == 1);
    const char *peers = last_flag_value(argc, argv, "peers");
    if (peers == NULL)
        peers = env_values[2] ? env_values[2] : "";
    assert(strcmp(c->peers, peers) == 0);
    const char *dir = last_flag_value(argc, argv, "working-dir");
    if (dir == NULL)
        dir = env_values[1] && env_values[1][0] ? env_values[1] : "./data";
    assert(strcmp(c->data_dir, dir) == 0);
    const char *bind = last_flag_value(argc, argv, "bind");
    assert(strcmp(c->bind, bind ? bind : "0.0.0.0") == 0);
    const char *port = last_flag_value(argc, argv, "port");
    const char *addr = last_flag_value(argc, argv, "addr");
    if (port != NULL) {
        assert(c->port == strtoull(port, NULL, 10));
    } else if (addr != NULL && addr[0]) { /* --addr alone: its port is the one to listen on */
        assert(c->port == strtoull(strrchr(addr, ':') + 1, NULL, 10));
        assert(strcmp(c->addr, addr) == 0);
    } else if (env_values[0] && env_values[0][0]) {
        assert(c->port == strtoull(strrchr(env_values[0], ':') + 1, NULL, 10));
    } else {
        assert(c->port == 8080);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    char *text = malloc(size);
    if (text == NULL)
        abort();
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';

    char *tokens[MAX_TOKENS];
    int ntok = 0;
    for (char *p = text; size > 1 && ntok < MAX_TOKENS && p < text + size;) {
        tokens[ntok++] = p;
        p += strlen(p) + 1;
    }

    int t = 0;
    for (int i = 0; i < 3; i++)
        env_values[i] = (flags >> i & 1) && t < ntok ? tokens[t++] : NULL;
    char *argv[MAX_TOKENS + 2];
    int argc = 0;
    argv[argc++] = (char *)"little-key-value";
    while (t < ntok)
        argv[argc++] = tokens[t++];
    argv[argc] = NULL;

    struct config *c = malloc(sizeof *c), *again = malloc(sizeof *again);
    if (c == NULL || again == NULL)
        abort();
    char err[ERR_LEN] = "", err2[ERR_LEN] = "";
    enum config_status st = config_parse(c, argc, argv, fake_getenv, devnull, err, sizeof err);
    assert(st == CONFIG_OK || st == CONFIG_EXIT_OK || st == CONFIG_ERROR);
    assert(terminated(err, sizeof err));
    switch (st) {
    case CONFIG_OK:
        assert(err[0] == '\0');
        check_ok(c, argc, argv);
        break;
    case CONFIG_EXIT_OK:
        assert(err[0] == '\0');
        assert(has_arg(argc, argv, "--help") || has_arg(argc, argv, "--version"));
        break;
    case CONFIG_ERROR:
        assert(err[0] != '\0');
        assert(strchr(err, '\n') == NULL && strchr(err, '\r') == NULL);
        break;
    }

    /* Pure: the same input gives the same answer. */
    enum config_status st2 =
        config_parse(again, argc, argv, fake_getenv, devnull, err2, sizeof err2);
    assert(st2 == st && strcmp(err, err2) == 0);
    if (st == CONFIG_OK)
        assert(memcmp(c, again, sizeof *c) == 0);

    free(c);
    free(again);
    free(text);
    return 0;
}
