/* config: the option table; flags and environment in, struct config out. */
#ifndef LKV_CONFIG_H
#define LKV_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct config {
    char bind[64];
    uint64_t port;
    char data_dir[4096];
    char addr[128];              /* this node's identity, host:port (default 127.0.0.1:<port>) */
    char peers[4096];            /* as given; parsed into peer[] */
    size_t npeers;
    char peer[15][128];          /* the other members, host:port, no duplicates, not addr */
    uint64_t join;               /* 1: start empty and wait to be added */
    uint64_t election_timeout_ms;
    uint64_t heartbeat_ms;
    char read_mode[8];           /* "index" (ReadIndex) or "lease" */
    char cluster_secret[256];
    uint64_t join_timeout_s;
    uint64_t log_retain;         /* log entries kept after a checkpoint, for slow followers */
    uint64_t threads;            /* HTTP worker threads; 0 = one per core */
    uint64_t max_connections;
    uint64_t max_key_bytes;
    uint64_t max_value_bytes;
    uint64_t max_header_bytes;
    uint64_t idle_timeout_s;
    uint64_t request_timeout_s;
    uint64_t shutdown_timeout_s;
    uint64_t checkpoint_bytes;   /* log bytes since the last checkpoint that trigger one */
    uint64_t max_memory;         /* 0 = unlimited */
    char log_level[8];
};

enum config_status {
    CONFIG_OK,       /* run the server */
    CONFIG_EXIT_OK,  /* --help or --version was printed: exit 0 */
    CONFIG_ERROR,    /* err holds one line naming the option: exit 2 */
};

/* Looks up an environment variable; returns NULL when unset. */
typedef const char *(*config_getenv_fn)(const char *name);

/* Fills `c` from defaults, then the environment (through getenv_fn, which may
 * be NULL for none), then argv[1..argc-1]; flags win over the environment.
 * --help and --version print to `out`. On CONFIG_ERROR `err` (errlen bytes)
 * holds a message without a trailing newline. Pure apart from writing `out`. */
enum config_status config_parse(struct config *c, int argc, char *const argv[],
                                config_getenv_fn getenv_fn, FILE *out, char *err,
                                size_t errlen);

#endif
