/* fsutil: file-system helpers: making and locking the data directory,
 * fsyncing directories, replacing files atomically. */
#ifndef LKV_UTIL_FSUTIL_H
#define LKV_UTIL_FSUTIL_H

#include <stddef.h>

/* Creates `path` and any missing parents (mode 0755). Returns 0, or a
 * negative LKV_E* code with "<path>: <reason>" in err. */
int fs_mkdir_p(const char *path, char *err, size_t errlen);

/* Takes an exclusive, non-blocking lock on <dir>/LOCK (created if missing)
 * and writes our pid into it. Returns the open descriptor (kept for the
 * process's life: closing it releases the lock), or a negative LKV_E* code
 * (LKV_ELOCKED when another process holds it) with a reason in err. */
int fs_lock_dir(const char *dir, char *err, size_t errlen);

/* fsyncs a directory so that entries created or renamed in it are durable.
 * Returns 0 or a negative LKV_E* code (errno is left set). */
int fs_fsync_dir(const char *dir);

#endif
