/* meta: the small file of durable state that is not a log entry: the
 * on-disk format version, and (for Raft) the current term and vote. */
#ifndef LKV_WAL_META_H
#define LKV_WAL_META_H

#include "util/io.h"

#include <stddef.h>
#include <stdint.h>

#define META_FILE "meta"
#define META_SIZE 64        /* version 2; version 1 records are 40 bytes */
#define META_SIZE_V1 40
#define META_FORMAT_VERSION 2

struct meta {
    uint32_t version;    /* META_FORMAT_VERSION when written by this build */
    uint64_t term;       /* Raft's current term */
    uint64_t vote;       /* member voted for in that term, 0 = none */
    uint64_t cluster_id; /* set when the directory first joined a cluster; 0 = not yet */
};

/* Reads <dir>/meta. Returns 1 and fills *m when it exists and is intact, 0
 * when it does not exist, LKV_ECORRUPT (damaged), LKV_EFORMAT (a version
 * this build cannot read) or LKV_EIO, with the reason in err. */
int meta_load(const char *dir, const struct io_ops *io, struct meta *m, char *err,
              size_t errlen);

/* Replaces <dir>/meta atomically and durably (temp file, fsync, rename,
 * directory fsync). Returns 0, LKV_ENOSPC or LKV_EIO. */
int meta_store(const char *dir, const struct io_ops *io, const struct meta *m);

/* Encodes a version-2 record (always META_SIZE bytes; m->version is not
 * looked at). Decodes version 1 (40 bytes, cluster_id 0) and version 2
 * (pure): 0, LKV_ECORRUPT (bad magic or checksum, a known version of the
 * wrong length) or LKV_EFORMAT (an intact record of another version, which
 * is then in m->version). Every version ends in a CRC-32C of all the bytes
 * before it. */
void meta_encode(uint8_t out[META_SIZE], const struct meta *m);
int meta_decode(const uint8_t *buf, size_t len, struct meta *m);

#endif
