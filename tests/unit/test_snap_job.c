/* Unit tests for snap's background checkpoints: a snapshot fed a step at a
 * time while the map changes loads back with every untouched key intact and
 * no key twice; a clear abandons it without leaving a file behind. */
#include "kv/kv_map.h"
#include "snap/snap.h"
#include "util/err.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEYS 20000
/* 100 bytes: with KEYS keys the walk takes several 256 KiB steps. */
#define LONG_VALUE "0123456789012345678901234567890123456789012345678901234567890123456789" \
                   "012345678901234567890123456789"

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/lkv-snapjob-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    char p[600];
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int count_files(const char *suffix)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name), s = strlen(suffix);
        if (l > s && strcmp(de->d_name + l - s, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void set(struct kv_map *m, const char *kind, int i, const char *val)
{
    char k[32];
    int kl = snprintf(k, sizeof k, "%s%d", kind, i);
    size_t vl = strlen(val);
    struct kv_entry *e = kv_entry_new(k, (size_t)kl, vl);
    cr_assert_not_null(e);
    memcpy(kv_entry_value_mut(e), val, vl);
    kv_map_write_lock(m);
    kv_map_put_locked(m, e);
    kv_map_write_unlock(m);
}

static void del(struct kv_map *m, const char *kind, int i)
{
    char k[32];
    int kl = snprintf(k, sizeof k, "%s%d", kind, i);
    kv_map_write_lock(m);
    kv_map_delete_locked(m, k, (size_t)kl);
    kv_map_write_unlock(m);
}

struct loaded {
    int stable[KEYS];  /* times seen */
    int touched[KEYS];
    int stable_bad;    /* stable keys with a value other than "v" + index */
    int other;
};

static int load_cb(const char *key, size_t klen, const char *value, size_t vlen, void *arg)
{
    struct loaded *l = arg;
    char k[32], want[32];
    cr_assert(klen < sizeof k);
    memcpy(k, key, klen);
    k[klen] = '\0';
    if (strncmp(k, "s", 1) == 0) {
        int i = atoi(k + 1);
        l->stable[i]++;
        int wl = snprintf(want, sizeof want, "v%d", i);
        if ((size_t)wl != vlen || memcmp(value, want, vlen) != 0)
            l->stable_bad++;
    } else if (strncmp(k, "t", 1) == 0) {
        l->touched[atoi(k + 1)]++;
    } else {
        l->other++;
    }
    return 0;
}

static int run_job(struct snap_job *j, struct kv_map *m, bool churn, bool clear_midway,
                   struct snap_info *info)
{
    unsigned rnd = 7;
    int result = 0, steps = 0;
    for (;;) {
        int fed = snap_feed(j, 1);
        if (fed > 0 && ++steps && churn) {
            for (int n = 0; n < 50; n++) {
                rnd = rnd * 1103515245u + 12345u;
                int i = (int)((rnd >> 8) % KEYS);
                if ((rnd >> 4) & 1)
                    set(m, "t", i, "changed");
                else
                    del(m, "t", i);
            }
            if (clear_midway && steps == 2) {
                kv_map_write_lock(m);
                struct kv_detached *d = kv_map_clear_locked(m);
                kv_map_write_unlock(m);
                kv_detached_free(d);
            }
        }
        if (snap_poll(j, false, &result, info))
            return result;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

Test(snap_job, fed_while_changing_loads_back_exactly_once, .init = make_dir, .fini = remove_dir)
{
    struct kv_map *m = kv_map_new();
    cr_assert_not_null(m);
    char v[32];
    for (int i = 0; i < KEYS; i++) {
        snprintf(v, sizeof v, "v%d", i);
        set(m, "s", i, v);
        set(m, "t", i, LONG_VALUE);
    }
    struct snap_job *j;
    cr_assert_eq(snap_start(dir, NULL, m, 42, 0, &j), 0);
    struct snap_info done;
    cr_assert_eq(run_job(j, m, true, false, &done), 0);
    snap_job_free(j);
    cr_assert_eq(count_files(".tmp"), 0);

    char path[600];
    uint64_t index;
    cr_assert_eq(snap_find_latest(dir, path, sizeof path, &index), 1);
    cr_assert_eq(index, 42);
    /* what the job reports is what is on disk */
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(done.index, 42);
    cr_assert_eq(done.bytes, (uint64_t)st.st_size);
    static struct loaded l;
    memset(&l, 0, sizeof l);
    struct snap_info info;
    char err[256];
    cr_assert_eq(snap_load(path, NULL, load_cb, &l, &info, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < KEYS; i++) {
        cr_assert_eq(l.stable[i], 1, "stable key %d appears %d times", i, l.stable[i]);
        cr_assert_leq(l.touched[i], 1, "touched key %d appears %d times", i, l.touched[i]);
    }
    cr_assert_eq(l.stable_bad, 0);
    cr_assert_eq(l.other, 0);
    uint64_t touched = 0;
    for (int i = 0; i < KEYS; i++)
        touched += (uint64_t)l.touched[i];
    cr_assert_eq(info.records, KEYS + touched);
    cr_assert_eq(done.records, info.records);
    kv_map_free(m);
}

/* A map of KEYS long values and a job started on it at `index`. */
static struct kv_map *start_on_full_map(uint64_t index, struct snap_job **j)
{
    struct kv_map *m = kv_map_new();
    cr_assert_not_null(m);
    for (int i = 0; i < KEYS; i++)
        set(m, "s", i, LONG_VALUE);
    cr_assert_eq(snap_start(dir, NULL, m, index, 0, j), 0);
    return m;
}

static void assert_no_files_left(void)
{
    cr_assert_eq(count_files(".tmp"), 0);
    cr_assert_eq(count_files(".snap"), 0);
}

Test(snap_job, clear_during_walk_abandons_without_a_file, .init = make_dir, .fini = remove_dir)
{
    struct snap_job *j;
    struct kv_map *m = start_on_full_map(7, &j);
    cr_assert_eq(run_job(j, m, true, true, NULL), LKV_ERESTART);
    snap_job_free(j);
    assert_no_files_left();
    kv_map_free(m);
}

Test(snap_job, waiting_on_an_unfed_job_abandons_it, .init = make_dir, .fini = remove_dir)
{
    struct snap_job *j;
    struct kv_map *m = start_on_full_map(9, &j);
    cr_assert_gt(snap_feed(j, 1), 0);
    int result = 0;
    cr_assert_eq(snap_poll(j, true, &result, NULL), 1);
    cr_assert_eq(result, LKV_ERESTART);
    snap_job_free(j);
    assert_no_files_left();
    /* the walk is closed: the table grows again */
    for (int i = 0; i < KEYS; i++)
        set(m, "u", i, "x");
    kv_map_free(m);
}

/* An empty map: the only piece is empty, and the snapshot still completes. */
Test(snap_job, empty_map_gives_an_empty_snapshot, .init = make_dir, .fini = remove_dir)
{
    struct kv_map *m = kv_map_new();
    cr_assert_not_null(m);
    struct snap_job *j;
    cr_assert_eq(snap_start(dir, NULL, m, 3, 0, &j), 0);
    struct snap_info done;
    cr_assert_eq(run_job(j, m, false, false, &done), 0);
    cr_assert_eq(done.bytes, SNAP_HDR_SIZE);
    snap_job_free(j);
    char path[600];
    uint64_t index;
    cr_assert_eq(snap_find_latest(dir, path, sizeof path, &index), 1);
    static struct loaded l;
    memset(&l, 0, sizeof l);
    struct snap_info info;
    char err[256];
    cr_assert_eq(snap_load(path, NULL, load_cb, &l, &info, err, sizeof err), 0, "%s", err);
    cr_assert_eq(info.records, 0);
    cr_assert_eq(info.index, 3);
    kv_map_free(m);
}
