/* wal: the write-ahead log: numbered, checksummed records in segment files,
 * appended in batches with one fdatasync each, scanned back at start, and
 * indexed in memory so that Raft can ask for any record's term and bytes. */
#ifndef LKV_WAL_WAL_H
#define LKV_WAL_WAL_H

#include "util/io.h"
#include "wal/record.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* One thread at a time: nothing here locks. */
struct wal;

struct wal_options {
    const char *dir;          /* directory holding the segment files */
    const struct io_ops *io;  /* NULL = io_libc */
    uint64_t segment_bytes;   /* a segment is closed once it passes this size */
    bool preallocate;         /* fallocate each new segment to segment_bytes */
    /* Records at or before the snapshot that recovery keeps on disk and in
     * the index (the trailing window a slow follower is served from):
     * wal_open keeps every segment holding an index > after_index -
     * retain_entries. 0 = delete every segment the snapshot covers. */
    uint64_t retain_entries;
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
 * gone: the log is refused. Segments holding no record after after_index -
 * opt->retain_entries are deleted, and so is every record that does not
 * lead without a gap up to after_index (a log ending before the snapshot,
 * or records before a hole the snapshot covers), so that the records kept
 * are consecutive and end at or after after_index. All kept records are
 * indexed; only those after after_index are replayed. Returns 0 and sets
 * *out, or LKV_ECORRUPT (with file and offset in err), LKV_EFORMAT
 * (unsupported version), LKV_EIO, LKV_ENOMEM, or the callback's non-zero
 * return. On error the directory is as it was found. */
int wal_open(const struct wal_options *opt, uint64_t after_index, wal_replay_cb cb, void *arg,
             struct wal **out, struct wal_recovery *info, char *err, size_t errlen);

/* One record to append: its type, term, and payload as scattered pieces.
 * The iovec array is borrowed for the call only. `index` is read only by
 * wal_append_at; it is last so that positional initialisers written before
 * it existed still mean the same. */
struct wal_entry {
    uint8_t type;
    uint64_t term;
    const struct iovec *iov;
    int iovcnt;
    uint64_t index;
};

/* Appends n >= 1 records with consecutive indexes (last + 1 ...), in one
 * write and one fdatasync, and sets *first_index to the first one's index.
 * e[].index is ignored and terms are not checked. Returns 0 once they are
 * durable. LKV_ENOSPC: the disk is full; nothing was appended and the log is
 * as before, so a later append may succeed. LKV_EFATAL: the write or
 * fdatasync failed in a way that leaves durability unknown; the log refuses
 * every later call (a failed fsync is never retried). LKV_EINVAL: n is 0, a
 * type is not an enum wal_rec_type, a payload is over WAL_REC_MAX_PAYLOAD, or
 * the batch is over the 4 GiB a segment can hold. LKV_ENOMEM: nothing was
 * written. */
int wal_append(struct wal *w, const struct wal_entry *e, size_t n, uint64_t *first_index);

/* Appends n >= 1 records at the indexes and terms the caller gives (a Raft
 * follower storing a leader's entries). Requires e[0].index ==
 * wal_last_index(w) + 1, e[i].index == e[0].index + i, and terms that never
 * decrease, starting at or above the last record's term when the log holds
 * one. Returns LKV_EINVAL with the log unchanged when any of that does not
 * hold; otherwise exactly as wal_append. */
int wal_append_at(struct wal *w, const struct wal_entry *e, size_t n);

/* Starts a new segment for the next record, so that everything before it can
 * later be dropped as a whole. Returns 0 or LKV_EFATAL (a broken log). A
 * no-op when the current segment is empty. */
int wal_rotate(struct wal *w);

/* Deletes the segments all of whose records have index <= upto. The segment
 * being appended to is kept (unless wal_rotate was called since its last
 * record). To keep a trailing window of R records after a durable snapshot
 * at index S, pass S - R (0 when R >= S), the same cut that
 * opt->retain_entries = R makes wal_open keep. Returns 0 or LKV_EIO (the
 * log itself is still consistent, the index included). */
int wal_drop_prefix(struct wal *w, uint64_t upto);

/* Removes every record with index >= from (a leader overwriting a follower's
 * conflicting entries). Requires wal_first_index(w) <= from; from ==
 * wal_first_index(w) empties the log and the next append gets index from.
 * from > wal_last_index(w) changes nothing. Later segments are deleted
 * newest first and the one holding from - 1 is cut, so a crash at any point
 * leaves a prefix of the old log. Durable when it returns 0. LKV_ECOMPACTED:
 * from is before the first record held; nothing changed. LKV_EFATAL: a
 * delete, cut or sync failed (or the log was already broken); the log
 * refuses every later call. */
int wal_truncate_suffix(struct wal *w, uint64_t from);

/* Drops every record so that the next append gets index next_index >= 1 (a
 * follower installing a snapshot at next_index - 1 that its log does not
 * match). Every segment is deleted, newest first, and the directory synced:
 * a restart with after_index = next_index - 1 then finds an empty log. A
 * crash midway leaves a prefix of the old log, which the caller must check
 * again against the snapshot (wal_term_of at its index) after the restart.
 * Returns 0 once durable; LKV_EINVAL for next_index 0 (nothing changed);
 * LKV_EFATAL when a delete or sync failed, after which the log refuses every
 * later call. */
int wal_reset(struct wal *w, uint64_t next_index);

/* Sets *term to the term of record `index`. Returns 0, LKV_ECOMPACTED (index
 * < wal_first_index(w), including the snapshot's own index: its term is the
 * snapshot's to give), LKV_EUNAVAILABLE (index > wal_last_index(w)) or
 * LKV_EFATAL (a broken log); *term is set only on 0. */
int wal_term_of(const struct wal *w, uint64_t index, uint64_t *term);

/* Called by wal_read for each record, in index order. `h` and `payload` are
 * valid only during the call. Return 0 to go on; anything else stops the
 * read and is returned by wal_read (use a negative LKV_E* code). The
 * callback must not call into the same log. */
typedef int (*wal_read_cb)(const struct wal_rec_hdr *h, const uint8_t *payload, void *arg);

/* Reads records lo .. hi-1 back from the files, checking each one's crc, and
 * hands them to cb in order: always the first one, then each further one
 * while the payload bytes handed over stay within max_bytes. Returns the
 * number of records handed over (>= 1; at most INT_MAX), or: LKV_ECOMPACTED
 * (lo < wal_first_index(w)), LKV_EUNAVAILABLE (hi > wal_last_index(w) + 1),
 * LKV_EINVAL (hi <= lo), LKV_EIO (a read failed), LKV_ECORRUPT (a record
 * does not decode where the index says it is; logged with file and offset),
 * LKV_EFATAL (a broken log), LKV_ENOMEM, or cb's non-zero return. Records
 * already handed over stay handed over when it fails midway. Borrows w for
 * the call (it holds the read buffer); arg is passed through. */
int wal_read(struct wal *w, uint64_t lo, uint64_t hi, size_t max_bytes, wal_read_cb cb,
             void *arg);

/* The index of the first record held; wal_last_index(w) + 1 when the log is
 * empty. */
uint64_t wal_first_index(const struct wal *w);

/* The index of the last record (or the after_index given to wal_open, or
 * next_index - 1 after wal_reset, when no record is held past it). */
uint64_t wal_last_index(const struct wal *w);

/* How long the last successful append's fdatasync took, in nanoseconds. */
uint64_t wal_last_sync_ns(const struct wal *w);

/* Bytes of records currently held in segment files. */
uint64_t wal_size_bytes(const struct wal *w);

/* A rough upper estimate of the records the log in dir holds (the blocks
 * allocated to its segment files over 160 bytes, a small record), for
 * sizing tables before recovery. 0 when dir cannot be read. Borrows dir. */
uint64_t wal_estimate_records(const char *dir);

/* Closes the files and frees the log (NULL is a no-op). Nothing is written. */
void wal_close(struct wal *w);

#endif
