/* tmpdir: the scratch directory of a fuzz target that needs real files. */
#ifndef LKV_FUZZ_TMPDIR_H
#define LKV_FUZZ_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_DIR_MAX 256

/* Deletes every file in dir (no subdirectories are expected), keeping dir. */
static inline void fuzz_clear_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[FUZZ_DIR_MAX + 264];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

/* The one directory of this target, removed with its files at exit. */
static const char *fuzz_tmpdir;

static void fuzz_remove_tmpdir(void)
{
    fuzz_clear_dir(fuzz_tmpdir);
    rmdir(fuzz_tmpdir);
}

/* Creates <base>/lkv-fuzz-<tag>-XXXXXX in out (FUZZ_DIR_MAX bytes) and
 * removes it at exit. base is $LKV_FUZZ_TMPDIR, which run.sh points at a
 * directory it removes afterwards (a crash skips atexit cleanup), or
 * /dev/shm: tmpfs keeps the fsyncs free. Once per target. */
static void fuzz_make_tmpdir(char out[FUZZ_DIR_MAX], const char *tag)
{
    const char *base = getenv("LKV_FUZZ_TMPDIR");
    if (base == NULL || base[0] == '\0')
        base = "/dev/shm";
    snprintf(out, FUZZ_DIR_MAX, "%s/lkv-fuzz-%s-XXXXXX", base, tag);
    if (mkdtemp(out) == NULL) {
        perror(out);
        abort();
    }
    fuzz_tmpdir = out;
    atexit(fuzz_remove_tmpdir);
}

#endif
