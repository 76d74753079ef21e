/* Unit tests for util/reclaim: the name goes at once, the blocks (the last
 * descriptor) go in the background, and stop leaves nothing open. */
#include "util/reclaim.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void make_file(char *path, size_t len, off_t size)
{
    snprintf(path, len, "/tmp/lkv-reclaim-XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(ftruncate(fd, size), 0);
    cr_assert_eq(pwrite(fd, "x", 1, size - 1), 1);
    close(fd);
}

/* How many of our descriptors point at `path` (now deleted). */
static int fds_open_on(const char *path)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert(d != NULL);
    char want[600];
    snprintf(want, sizeof want, "%s (deleted)", path);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char link[700], target[700];
        snprintf(link, sizeof link, "/proc/self/fd/%s", de->d_name);
        ssize_t len = readlink(link, target, sizeof target - 1);
        if (len < 0)
            continue;
        target[len] = '\0';
        if (strcmp(target, want) == 0)
            n++;
    }
    closedir(d);
    return n;
}

Test(reclaim, without_thread_unlinks_at_once)
{
    char path[64];
    make_file(path, sizeof path, 1 << 20);
    cr_assert_eq(reclaim_unlink(NULL, path), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), -1);
    cr_assert_eq(fds_open_on(path), 0);
}

Test(reclaim, name_gone_at_once_and_stop_closes_everything)
{
    cr_assert_eq(reclaim_start(), 0);
    char paths[5][64];
    for (int i = 0; i < 5; i++)
        make_file(paths[i], sizeof paths[i], (off_t)(40 << 20)); /* sparse, several steps */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(reclaim_unlink(NULL, paths[i]), 0);
        struct stat st;
        cr_assert_eq(stat(paths[i], &st), -1, "%s still has its name", paths[i]);
        cr_assert_eq(errno, ENOENT);
    }
    reclaim_stop();
    for (int i = 0; i < 5; i++)
        cr_assert_eq(fds_open_on(paths[i]), 0, "%s still open after stop", paths[i]);
}

Test(reclaim, missing_file_reports_enoent)
{
    cr_assert_eq(reclaim_start(), 0);
    errno = 0;
    cr_assert_eq(reclaim_unlink(NULL, "/tmp/lkv-reclaim-no-such-file"), -1);
    cr_assert_eq(errno, ENOENT);
    reclaim_stop();
}

/* An io table whose unlink fails: the file must stay, and no descriptor
 * may be left behind. */
static int failing_unlink(const char *path)
{
    (void)path;
    errno = EIO;
    return -1;
}

Test(reclaim, failed_unlink_keeps_file_and_leaks_nothing)
{
    cr_assert_eq(reclaim_start(), 0);
    struct io_ops io = io_libc;
    io.unlink = failing_unlink;
    char path[64];
    make_file(path, sizeof path, 4096);
    cr_assert_eq(reclaim_unlink(&io, path), -1);
    cr_assert_eq(errno, EIO);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    reclaim_stop();
    unlink(path);
    cr_assert_eq(fds_open_on(path), 0);
}

/* Two stores in one process share the thread: the first to stop must not
 * end it under the other. */
Test(reclaim, thread_runs_until_its_last_user_stops)
{
    cr_assert_eq(reclaim_start(), 0);
    cr_assert_eq(reclaim_start(), 0);
    reclaim_stop();
    char path[64];
    /* sparse: 256 steps with a pause after each, half a second at least */
    make_file(path, sizeof path, (off_t)2 << 30);
    cr_assert_eq(reclaim_unlink(NULL, path), 0);
    /* Queued, so still open; without the thread it would be closed at once. */
    cr_assert_eq(fds_open_on(path), 1, "the thread stopped while a user was left");
    reclaim_stop();
    cr_assert_eq(fds_open_on(path), 0, "%s still open after the last stop", path);

    reclaim_stop(); /* unmatched: nothing happens */
    make_file(path, sizeof path, 4096);
    cr_assert_eq(reclaim_unlink(NULL, path), 0);
    cr_assert_eq(fds_open_on(path), 0);
}
