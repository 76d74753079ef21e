/* The simulator's command line: runs seeds (optionally in parallel worker
 * processes), prints a summary, and for a failing seed the invariant and
 * the commands that replay it. */
#include "sim.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct args {
    uint64_t start, seeds;
    unsigned jobs;
    bool keep_going;
    struct sim_config cfg;
    const char *argv0;
};

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--seeds N] [--start S] [--seed X] [--nodes 3|5|7] [--steps K]\n"
            "          [--jobs J] [--keep-going] [--verbose]\n"
            "  --seeds N     run seeds S .. S+N-1 (default 1 seed)\n"
            "  --seed X      run seed X only (same as --start X --seeds 1)\n"
            "  --nodes       cluster size (default: drawn from each seed)\n"
            "  --steps K     steps of the fault phase (default 3000)\n"
            "  --jobs J      worker processes (default 1)\n"
            "  --verbose     print a trace of every step\n",
            argv0);
    exit(2);
}

static uint64_t number(const char *argv0, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *s == '\0' || *end != '\0')
        usage(argv0);
    return (uint64_t)v;
}

static struct args parse(int argc, char **argv)
{
    struct args a = {.start = 1, .seeds = 1, .jobs = 1, .argv0 = argv[0]};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--verbose"))
            a.cfg.verbose = true;
        else if (!strcmp(o, "--keep-going"))
            a.keep_going = true;
        else if (!v)
            usage(argv[0]);
        else if (!strcmp(o, "--seeds"))
            a.seeds = number(argv[0], v), i++;
        else if (!strcmp(o, "--start"))
            a.start = number(argv[0], v), i++;
        else if (!strcmp(o, "--seed"))
            a.start = number(argv[0], v), a.seeds = 1, i++;
        else if (!strcmp(o, "--nodes"))
            a.cfg.nodes = (unsigned)number(argv[0], v), i++;
        else if (!strcmp(o, "--steps"))
            a.cfg.steps = number(argv[0], v), i++;
        else if (!strcmp(o, "--jobs"))
            a.jobs = (unsigned)number(argv[0], v), i++;
        else
            usage(argv[0]);
    }
    if ((a.cfg.nodes && a.cfg.nodes != 3 && a.cfg.nodes != 5 && a.cfg.nodes != 7) ||
        a.jobs == 0 || a.jobs > 64)
        usage(argv[0]);
    return a;
}

struct totals {
    uint64_t seeds, failed, steps, ticks, commits, reads, crashes, snapshots, confs, elections;
    uint64_t live_max, by_nodes[8];
};

static void add_result(struct totals *t, const struct sim_result *r)
{
    t->seeds++;
    t->failed += r->failed;
    t->steps += r->step;
    t->ticks += r->tick;
    t->commits += r->commits;
    t->reads += r->reads;
    t->crashes += r->crashes;
    t->snapshots += r->snapshots_sent;
    t->confs += r->conf_changes;
    t->elections += r->elections;
    if (r->liveness_ticks > t->live_max)
        t->live_max = r->liveness_ticks;
    t->by_nodes[r->nodes & 7]++;
}

static void add_totals(struct totals *t, const struct totals *u)
{
    t->seeds += u->seeds;
    t->failed += u->failed;
    t->steps += u->steps;
    t->ticks += u->ticks;
    t->commits += u->commits;
    t->reads += u->reads;
    t->crashes += u->crashes;
    t->snapshots += u->snapshots;
    t->confs += u->confs;
    t->elections += u->elections;
    if (u->live_max > t->live_max)
        t->live_max = u->live_max;
    for (int i = 0; i < 8; i++)
        t->by_nodes[i] += u->by_nodes[i];
}

static void print_failure(const struct args *a, uint64_t seed, const struct sim_result *r)
{
    char flags[64] = "";
    int k = 0;
    if (a->cfg.nodes)
        k = snprintf(flags, sizeof flags, " --nodes %u", a->cfg.nodes);
    if (a->cfg.steps && k >= 0)
        snprintf(flags + k, sizeof flags - (size_t)k, " --steps %" PRIu64, a->cfg.steps);
    printf("\nSIM FAILURE seed=%" PRIu64 " (%u nodes) at step %" PRIu64 ", tick %" PRIu64 "\n"
           "  invariant: %s\n"
           "  %s\n"
           "  replay: make sim SEED=%" PRIu64 "%s%s%s\n"
           "          %s --seed %" PRIu64 "%s --verbose\n",
           seed, r->nodes, r->step, r->tick, r->invariant, r->detail, seed,
           flags[0] ? " SIM_ARGS='" : "", flags[0] ? flags + 1 : "", flags[0] ? "'" : "",
           a->argv0, seed, flags);
    fflush(stdout);
}

/* A core (or the simulator) that crashes or loops still names its seed:
 * the running seed is kept where a signal handler (or the sanitizers'
 * death callback) can print it. */
#define SEED_TIMEOUT_S 120
#define SEED_TIMEOUT_TEXT "120"
static volatile sig_atomic_t running_seed_lo, running_seed_hi;
static const char *crash_argv0;

static void say_crash(const char *what)
{
    char msg[512];
    uint64_t seed = (uint64_t)running_seed_hi << 32 | (uint32_t)running_seed_lo;
    int k = snprintf(msg, sizeof msg,
                     "\nSIM FAILURE seed=%" PRIu64 ": %s\n  replay: make sim SEED=%" PRIu64
                     "\n          %s --seed %" PRIu64 " --verbose\n",
                     seed, what, seed, crash_argv0, seed);
    if (k > 0 && write(STDERR_FILENO, msg, (size_t)k) < 0)
        _exit(4);
}

static void on_alarm(int sig)
{
    (void)sig;
    say_crash("no end after " SEED_TIMEOUT_TEXT " s (a loop?)");
    _exit(4);
}

static void on_crash(int sig)
{
    say_crash(sig == SIGABRT ? "abort (an assertion?)" : "crashed (a signal)");
    signal(sig, SIG_DFL);
    raise(sig);
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
static void on_sanitizer_death(void)
{
    say_crash("the sanitizer stopped it (report above)");
}
#endif

static void watch_crashes(const char *argv0)
{
    crash_argv0 = argv0;
    signal(SIGALRM, on_alarm);
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGFPE, on_crash);
    signal(SIGILL, on_crash);
    signal(SIGABRT, on_crash);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_set_death_callback(on_sanitizer_death);
#endif
}

/* Runs every seed whose position is worker mod jobs. */
/* What a worker tells its parent: each seed as it starts, then its totals.
 * A worker that dies (even by SIGKILL) is thus known by the seed it ran. */
struct report {
    uint32_t done;
    uint64_t seed;
    struct totals t;
};

static void tell(int fd, const struct report *rep)
{
    if (fd >= 0 && write(fd, rep, sizeof *rep) != (ssize_t)sizeof *rep)
        _exit(3);
}

/* Runs every seed whose position is worker mod jobs. */
static struct totals run_share(const struct args *a, unsigned worker, int fd)
{
    struct totals t = {0};
    for (uint64_t i = worker; i < a->seeds; i += a->jobs) {
        uint64_t seed = a->start + i;
        struct sim_config cfg = a->cfg;
        cfg.seed = seed;
        struct sim_result r;
        tell(fd, &(struct report){.seed = seed});
        running_seed_lo = (sig_atomic_t)(uint32_t)seed;
        running_seed_hi = (sig_atomic_t)(seed >> 32);
        alarm(SEED_TIMEOUT_S);
        sim_run(&cfg, &r);
        alarm(0);
        add_result(&t, &r);
        if (r.failed) {
            print_failure(a, seed, &r);
            if (!a->keep_going)
                break;
        }
    }
    fflush(stdout);
    tell(fd, &(struct report){.done = 1, .t = t});
    return t;
}

/* Reads one worker's reports; false when it never sent its totals. */
static bool collect(int fd, struct totals *t, uint64_t *last_seed)
{
    struct report rep;
    while (read(fd, &rep, sizeof rep) == (ssize_t)sizeof rep) {
        if (rep.done) {
            *t = rep.t;
            return true;
        }
        *last_seed = rep.seed;
    }
    return false;
}

/* Forks the workers; each reports back through a pipe. */
static struct totals run_jobs(const struct args *a)
{
    struct totals all = {0};
    int fds[64];
    pid_t pids[64];
    for (unsigned w = 0; w < a->jobs; w++) {
        int p[2];
        if (pipe(p) != 0) {
            perror("pipe");
            exit(2);
        }
        fflush(stdout);
        pids[w] = fork();
        if (pids[w] < 0) {
            perror("fork");
            exit(2);
        }
        if (pids[w] == 0) {
            close(p[0]);
            run_share(a, w, p[1]);
            _exit(0);
        }
        close(p[1]);
        fds[w] = p[0];
    }
    for (unsigned w = 0; w < a->jobs; w++) {
        struct totals t = {0};
        uint64_t seed = 0;
        int status = 0;
        bool ok = collect(fds[w], &t, &seed);
        close(fds[w]);
        waitpid(pids[w], &status, 0);
        if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            printf("\nSIM FAILURE seed=%" PRIu64 ": worker %u died (status %d)\n"
                   "  replay: make sim SEED=%" PRIu64 "\n          %s --seed %" PRIu64
                   " --verbose\n",
                   seed, w, status, seed, a->argv0, seed);
            t.failed++;
        }
        add_totals(&all, &t);
    }
    return all;
}

int main(int argc, char **argv)
{
    struct args a = parse(argc, argv);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    watch_crashes(argv[0]);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct totals t = a.jobs > 1 ? run_jobs(&a) : run_share(&a, 0, -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("sim: %" PRIu64 " seeds from %" PRIu64 " (%" PRIu64 "x3 %" PRIu64 "x5 %" PRIu64
           "x7 nodes), %" PRIu64 " failed, %.1fs | steps %" PRIu64 " ticks %" PRIu64
           " committed %" PRIu64 " reads %" PRIu64 " leaders %" PRIu64 " crashes %" PRIu64
           " snapshots %" PRIu64 " conf changes %" PRIu64 " | slowest recovery %" PRIu64
           " ticks\n",
           t.seeds, a.start, t.by_nodes[3], t.by_nodes[5], t.by_nodes[7], t.failed, secs,
           t.steps, t.ticks, t.commits, t.reads, t.elections, t.crashes, t.snapshots, t.confs,
           t.live_max);
    return t.failed ? 1 : 0;
}
