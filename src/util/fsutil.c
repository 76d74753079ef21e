#include "util/fsutil.h"

#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdir_p(const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof tmp) {
        snprintf(err, errlen, "%s: path is empty or too long", path);
        return LKV_EINVAL;
    }
    memcpy(tmp, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create data directory %s: %s", path, strerror(errno));
            return lkv_from_errno(errno);
        }
        tmp[i] = saved;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "cannot use data directory %s: %s", path,
                 errno ? strerror(errno) : "not a directory");
        return LKV_EIO;
    }
    return 0;
}

int fs_lock_dir(const char *dir, char *err, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return lkv_from_errno(errno);
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int saved = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (saved == EWOULDBLOCK) {
            snprintf(err, errlen, "data directory %s is locked by another process (pid %s)", dir,
                     pid[0] ? pid : "unknown");
            return LKV_ELOCKED;
        }
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(saved));
        return lkv_from_errno(saved);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        /* The pid is only informative; the lock itself is held. */
    }
    return fd;
}

int fs_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return lkv_from_errno(errno);
    int rc = fsync(fd) == 0 ? 0 : lkv_from_errno(errno);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}
