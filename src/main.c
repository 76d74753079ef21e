/* main: flags and environment to config, signals, start and stop. */
#include "config.h"
#include "http/server.h"
#include "stats/stats.h"
#include "store.h"
#include "util/err.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/reclaim.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define EXIT_USAGE 2

/* Posted once when the server must stop: by the first SIGTERM/SIGINT, or by
 * a fatal storage error. */
static sem_t stop_sem;
static volatile sig_atomic_t stop_reason; /* signal number, or -1 for fatal */

static const char *env_lookup(const char *name)
{
    return getenv(name);
}

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    for (int count = 0;; count++) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        if (count > 0) {
            /* Every acknowledged write is already on disk: leaving now is safe. */
            LOG_WARN("event=second_signal signal=%d action=exit_now", sig);
            _exit(128 + sig);
        }
        stop_reason = sig;
        sem_post(&stop_sem);
    }
    return NULL;
}

static void on_fatal(int err)
{
    LOG_ERROR("event=storage_fatal error=\"%s\" action=stopping", lkv_strerror(err));
    stop_reason = -1;
    sem_post(&stop_sem);
}

/* 10,000 connections need as many descriptors: take all the hard limit
 * allows, and size the connection limit to fit under it. */
static unsigned fit_connection_limit(unsigned wanted)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return wanted;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t reserve = 64; /* log segments, snapshots, the listener, stdio */
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)wanted + reserve) {
        unsigned fit = rl.rlim_cur > reserve + 16 ? (unsigned)(rl.rlim_cur - reserve) : 16;
        LOG_WARN("event=connection_limit_lowered wanted=%u allowed=%u nofile=%llu", wanted, fit,
                 (unsigned long long)rl.rlim_cur);
        return fit;
    }
    return wanted;
}

/* glibc reads its tunables only when a process starts, so the one that
 * puts malloc's heap on transparent huge pages is set by re-executing once.
 * With a million keys it halves recovery time (fewer, cheaper page faults). */
static void exec_with_huge_pages(char **argv)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    (void)argv; /* sanitizer allocators ignore glibc's tunables */
    return;
#endif
    const char *cur = getenv("GLIBC_TUNABLES");
    if ((cur && strstr(cur, "glibc.malloc.hugetlb")) || getenv("LKV_NO_REEXEC"))
        return;
    char val[1024];
    snprintf(val, sizeof val, "%s%sglibc.malloc.hugetlb=1", cur ? cur : "", cur ? ":" : "");
    if (setenv("GLIBC_TUNABLES", val, 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    unsetenv("GLIBC_TUNABLES"); /* exec failed: carry on with the plain heap */
    if (cur)
        setenv("GLIBC_TUNABLES", cur, 1);
}

int main(int argc, char **argv)
{
    exec_with_huge_pages(argv);
    struct config cfg;
    char err[1024];
    switch (config_parse(&cfg, argc, argv, env_lookup, stdout, err, sizeof err)) {
    case CONFIG_EXIT_OK:
        return EXIT_SUCCESS;
    case CONFIG_ERROR:
        fprintf(stderr, "little-key-value: %s\n", err);
        return EXIT_USAGE;
    case CONFIG_OK:
        break;
    }
    log_set_level(cfg.log_level);

    /* Signals are taken by one thread with sigwait; every other thread,
     * created after this point, inherits the blocked mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    sem_init(&stop_sem, 0, 0);
    pthread_t sig_tid;
    if (pthread_create(&sig_tid, NULL, signal_thread, &set) != 0) {
        fprintf(stderr, "little-key-value: cannot start the signal thread\n");
        return EXIT_FAILURE;
    }

    if (fs_mkdir_p(cfg.data_dir, err, sizeof err) != 0 ||
        fs_lock_dir(cfg.data_dir, err, sizeof err) < 0) {
        fprintf(stderr, "little-key-value: %s\n", err);
        return EXIT_FAILURE;
    }

    /* Old segments and snapshots are freed in the background from here on. */
    if (reclaim_start() != 0)
        LOG_WARN("event=reclaim_thread_failed effect=\"files are freed synchronously\"");

    struct stats *stats = stats_new();
    if (!stats) {
        fprintf(stderr, "little-key-value: %s\n", lkv_strerror(LKV_ENOMEM));
        return EXIT_FAILURE;
    }
    struct store *store;
    struct store_config scfg = {.dir = cfg.data_dir,
                                .stats = stats,
                                .checkpoint_bytes = cfg.checkpoint_bytes,
                                .max_memory = cfg.max_memory,
                                .on_fatal = on_fatal};
    if (store_open(&scfg, &store, err, sizeof err) != 0) {
        fprintf(stderr, "little-key-value: %s\n", err);
        return EXIT_FAILURE;
    }

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct http_server_config hcfg = {
        .bind = cfg.bind,
        .port = (uint16_t)cfg.port,
        .threads = cfg.threads ? (unsigned)cfg.threads : (unsigned)(ncpu > 0 ? ncpu : 1),
        .max_connections = fit_connection_limit((unsigned)cfg.max_connections),
        .max_key_bytes = cfg.max_key_bytes,
        .max_value_bytes = cfg.max_value_bytes,
        .max_header_bytes = cfg.max_header_bytes,
        .idle_timeout_s = (unsigned)cfg.idle_timeout_s,
        .request_timeout_s = (unsigned)cfg.request_timeout_s,
        .stats = stats,
    };
    /* Logged before the port opens, so that anyone who sees the port
     * accept connections also finds this line. */
    LOG_INFO("event=start version=%s addr=%s:%u data_dir=%s threads=%u max_connections=%u "
             "pid=%ld",
             LKV_VERSION, cfg.bind, hcfg.port, cfg.data_dir, hcfg.threads, hcfg.max_connections,
             (long)getpid());

    struct http_server *http;
    if (http_server_start(&hcfg, store, &http, err, sizeof err) != 0) {
        fprintf(stderr, "little-key-value: %s\n", err);
        store_shutdown(store);
        store_free(store);
        return EXIT_FAILURE;
    }

    while (sem_wait(&stop_sem) != 0 && errno == EINTR)
        ;
    int reason = stop_reason;
    if (reason > 0)
        LOG_INFO("event=shutdown signal=%s", reason == SIGTERM ? "SIGTERM" : "SIGINT");

    http_server_quiesce(http);
    if (!http_server_wait_idle(http, (unsigned)cfg.shutdown_timeout_s * 1000u))
        LOG_WARN("event=shutdown_timeout waited_s=%llu", (unsigned long long)cfg.shutdown_timeout_s);
    int rc = store_shutdown(store);
    http_server_stop(http);
    store_free(store);
    reclaim_stop();
    stats_log_summary(stats);
    stats_free(stats);
    int code = (reason < 0 || rc != 0) ? EXIT_FAILURE : EXIT_SUCCESS;
    LOG_INFO("event=stop exit_code=%d", code);
    return code;
}
