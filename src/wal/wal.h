/* wal: the write-ahead log: numbered, checksummed records in segment files,
 * appended in batches with one fdatasync each, scanned back at start. */
#ifndef LKV_WAL_WAL_H
#define LKV_WAL_WAL_H

#include "util/io.h"
#include "wal/record.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct wal;

struct wal_options {
    const char *dir;          /* directory holding the segment files */
    const struct io_ops *io;  /* NULL = io_libc */
    uint64_t segment_bytes;   /* a segment is closed once it passes this size */
    bool preallocate;         /* fallocate each new segment to segment_bytes */
};

/* Called for each record recovered, in index order. `payload` is valid only
 * during the call. A non-zero return stops recovery and is returned by
 * wal_open. */
typedef int (*wal_replay_cb)(const struct wal_rec_hdr *h, const uint8_t *payload, void *arg);

struct wal_recovery {
    uint64_t replayed;      /* records handed to the callback */
    uint64_t last_index;    /* last index in the log (or after_index if none later) */
    uint64_t segments;      /* segment files kept */
    uint64_t torn_bytes;    /* bytes cut from the tail, 0 if none */
};

/* Opens the log in opt->dir and replays every record with an index greater
 * than after_index (the index the loaded snapshot covers) through cb.
 *
 * A damaged or incomplete stretch at the very end of the log (what a crash
 * during a write leaves) is cut off, with a warning. Damage followed by a
 * record from a later write batch means records that were once durable are
 * gone: the log is refused. Segments wholly covered by after_index are
 * deleted. Returns 0 and sets *out, or LKV_ECORRUPT (with file and offset in
 * err), LKV_EFORMAT (unsupported version), LKV_EIO, LKV_ENOMEM, or the
 * callback's non-zero return. */
int wal_open(const struct wal_options *opt, uint64_t after_index, wal_replay_cb cb, void *arg,
             struct wal **out, struct wal_recovery *info, char *err, size_t errlen);

/* One record to append: its type, term, and payload as scattered pieces.
 * The iovec array is borrowed for the call only. */
struct wal_entry {
    uint8_t type;
    uint64_t term;
    const struct iovec *iov;
    int iovcnt;
};

/* Appends n records with consecutive indexes (last + 1 ...), in one write
 * and one fdatasync, and sets *first_index to the first one's index.
 * Returns 0 once they are durable. LKV_ENOSPC: the disk is full; nothing was
 * appended and the log is as before, so a later append may succeed.
 * LKV_EFATAL: the write or fdatasync failed in a way that leaves durability
 * unknown; the log refuses every later call (a failed fsync is never
 * retried). LKV_EINVAL: a payload over WAL_REC_MAX_PAYLOAD. */
int wal_append(struct wal *w, const struct wal_entry *e, size_t n, uint64_t *first_index);

/* Starts a new segment for the next record, so that everything before it can
 * later be dropped as a whole. Returns 0 or LKV_ENOSPC/LKV_EFATAL as
 * wal_append. A no-op when the current segment is empty. */
int wal_rotate(struct wal *w);

/* Deletes the segments all of whose records have index <= upto (covered by
 * a durable snapshot). The segment being appended to is kept. Returns 0 or
 * LKV_EIO (the log itself is still consistent). */
int wal_drop_prefix(struct wal *w, uint64_t upto);

/* Removes every record with index >= from (Raft needs this when a leader
 * overwrites a follower's log). Durable when it returns 0; LKV_EFATAL
 * otherwise. from must be > the first index still in the log. */
int wal_truncate_suffix(struct wal *w, uint64_t from);

/* The index of the last record (or the after_index given to wal_open). */
uint64_t wal_last_index(const struct wal *w);

/* How long the last successful append's fdatasync took, in nanoseconds. */
uint64_t wal_last_sync_ns(const struct wal *w);

/* Bytes of records currently held in segment files. */
uint64_t wal_size_bytes(const struct wal *w);

/* Closes the files and frees the log. Nothing is written. */
void wal_close(struct wal *w);

#endif
