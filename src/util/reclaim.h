/* reclaim: removing large files without stalling the caller.
 *
 * On ext4 (more so when mounted with `discard`) the cost of deleting a file
 * is paid when its last name and descriptor go: the blocks are freed and
 * discarded inside one journal transaction, and any fdatasync that needs a
 * commit meanwhile waits for it. Deleting a 125 MB snapshot from the log's
 * writer thread stalled writes for 10-20 ms. reclaim_unlink removes the
 * name at once but keeps a descriptor, and a background thread shrinks the
 * file a few megabytes at a time before closing it, so the freeing is
 * spread over many small transactions off the caller's path. */
#ifndef LKV_UTIL_RECLAIM_H
#define LKV_UTIL_RECLAIM_H

#include "util/io.h"

/* Starts the background thread, or, when it runs already, counts one more
 * user of it: the process has at most one, shared by every store in it.
 * Returns 0, or -1 when the thread cannot be started. Without the thread,
 * reclaim_unlink frees the file at once. Any thread. */
int reclaim_start(void);

/* Drops one user (from a reclaim_start that returned 0; an unmatched call
 * does nothing). The last one frees everything still queued (at full speed)
 * and stops the thread. Any thread but the reclaim thread. */
void reclaim_stop(void);

/* Like io->unlink(path): the name is gone when this returns 0 (-1 and
 * errno otherwise). The blocks are freed later, in steps. */
int reclaim_unlink(const struct io_ops *io, const char *path);

#endif
