/* meta: the small file of durable state that is not a log entry: the
 * on-disk format version, and (for Raft) the current term and vote. */
#ifndef LKV_WAL_META_H
#define LKV_WAL_META_H

#include "util/io.h"

#include <stddef.h>
#include <stdint.h>

#define META_FILE "meta"
#define META_SIZE 40
#define META_FORMAT_VERSION 1

struct meta {
    uint32_t version; /* META_FORMAT_VERSION when written by this build */
    uint64_t term;    /* 0 until Raft */
    uint64_t vote;    /* 0 = none */
};

/* Reads <dir>/meta. Returns 1 and fills *m when it exists and is intact, 0
 * when it does not exist, LKV_ECORRUPT (damaged), LKV_EFORMAT (a version
 * this build cannot read) or LKV_EIO, with the reason in err. */
int meta_load(const char *dir, const struct io_ops *io, struct meta *m, char *err,
              size_t errlen);

/* Replaces <dir>/meta atomically and durably (temp file, fsync, rename,
 * directory fsync). Returns 0, LKV_ENOSPC or LKV_EIO. */
int meta_store(const char *dir, const struct io_ops *io, const struct meta *m);

/* Encodes/decodes the 40-byte record (pure). Decode returns 0,
 * LKV_ECORRUPT or LKV_EFORMAT. */
void meta_encode(uint8_t out[META_SIZE], const struct meta *m);
int meta_decode(const uint8_t *buf, size_t len, struct meta *m);

#endif
