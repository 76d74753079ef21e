/* wal/record: byte layout of log records and segment headers (pure codec, no I/O). */
#ifndef LKV_WAL_RECORD_H
#define LKV_WAL_RECORD_H

#include <stddef.h>
#include <stdint.h>

/*
 * Record: a 32-byte header followed by `len` payload bytes. Integers are
 * little-endian.
 *
 *   0..3    crc32c over header bytes 4..31 followed by the payload
 *   4..7    u32 payload length
 *   8       u8  type (enum wal_rec_type)
 *   9       u8  flags, 0
 *   10..11  u16 reserved, 0
 *   12..15  u32 batch_pos: position inside the write batch (0 = first)
 *   16..23  u64 index, > 0
 *   24..31  u64 term
 *
 * Segment header: 32 bytes at the start of every segment file.
 *
 *   0..7    magic "LKVLOG\0\1"
 *   8..11   u32 format version
 *   12..15  u32 reserved, 0
 *   16..23  u64 first index the segment may hold, > 0
 *   24..27  u32 reserved, 0
 *   28..31  u32 crc32c of bytes 0..27
 *
 * Every future format version keeps the magic, the version at 8..11 and the
 * crc of bytes 0..27 at 28..31; that is what lets a reader tell a header
 * written by a newer program (crc good, version unknown) from a damaged one.
 */

#define WAL_REC_HDR_SIZE 32
#define WAL_SEG_HDR_SIZE 32
#define WAL_FORMAT_VERSION 1

/* Values are limited to tens of MiB by the HTTP layer; 64 MiB plus 64 KiB of
 * room for the key and command prefix keeps every legal command encodable
 * while a corrupt length can never make recovery allocate or read gigabytes. */
#define WAL_REC_MAX_PAYLOAD ((uint32_t)(64u * 1024 * 1024 + 64u * 1024))

enum wal_rec_type {
    WAL_REC_COMMAND = 1, /* opaque application payload (a kv_cmd) */
    WAL_REC_NOOP = 2,    /* no payload meaning; e.g. a new leader's first entry */
    WAL_REC_CONFIG = 3,  /* reserved for Raft membership changes */
};

/* Caller-owned plain struct; the crc is not part of it. */
struct wal_rec_hdr {
    uint32_t len;       /* payload bytes, <= WAL_REC_MAX_PAYLOAD */
    uint8_t type;       /* enum wal_rec_type */
    uint32_t batch_pos; /* 0 for the first record of a write batch */
    uint64_t index;     /* > 0 */
    uint64_t term;
};

enum wal_rec_status {
    WAL_REC_OK = 0,
    WAL_REC_ZERO,  /* 32 header bytes all zero: preallocated, never written */
    WAL_REC_SHORT, /* fewer than 32 bytes, or the payload runs past avail */
    WAL_REC_BAD,   /* crc mismatch or an impossible header field */
};

/*
 * Writing a record whose payload is scattered over several buffers:
 *
 *   uint8_t hdr[WAL_REC_HDR_SIZE];
 *   wal_rec_hdr_pack(hdr, &h);
 *   uint32_t crc = wal_rec_crc_begin(hdr);
 *   for each piece: crc = crc32c_extend(crc, piece, piece_len);
 *   wal_rec_hdr_seal(hdr, crc);
 *
 * then write hdr and the pieces, which must total h.len bytes.
 */

/* Writes header bytes 4..31 from *h and zeroes bytes 0..3. Preconditions
 * (asserted): h->len <= WAL_REC_MAX_PAYLOAD, h->type is an enum wal_rec_type,
 * h->index > 0. Borrows h. */
void wal_rec_hdr_pack(uint8_t out[WAL_REC_HDR_SIZE], const struct wal_rec_hdr *h);

/* Returns the crc of header bytes 4..31, to be extended over the payload
 * with crc32c_extend(). hdr must have been filled by wal_rec_hdr_pack(). */
uint32_t wal_rec_crc_begin(const uint8_t hdr[WAL_REC_HDR_SIZE]);

/* Stores the finished crc (header bytes 4..31 then the payload) in bytes 0..3. */
void wal_rec_hdr_seal(uint8_t hdr[WAL_REC_HDR_SIZE], uint32_t crc);

/* Encodes header and contiguous payload into out, which must have room for
 * WAL_REC_HDR_SIZE + h->len bytes; returns that count. Same preconditions as
 * wal_rec_hdr_pack(); payload may be NULL only when h->len is 0. Borrows all
 * pointers; out must not overlap payload. */
size_t wal_rec_encode(uint8_t *out, const struct wal_rec_hdr *h, const void *payload);

/*
 * Decodes the record at buf, reading no byte at or past buf + avail. Checks,
 * in this order:
 *   avail < 32                                   -> WAL_REC_SHORT
 *   header bytes all zero                        -> WAL_REC_ZERO
 *   flags/reserved != 0, unknown type, index 0,
 *   len > WAL_REC_MAX_PAYLOAD                    -> WAL_REC_BAD
 *   32 + len > avail                             -> WAL_REC_SHORT
 *   crc mismatch                                 -> WAL_REC_BAD
 * On WAL_REC_OK fills *out and sets *payload (if payload is not NULL) to
 * buf + 32; the record occupies WAL_REC_HDR_SIZE + out->len bytes.
 * On WAL_REC_SHORT with avail >= 32, *out holds the header as read (its crc
 * not yet checked) so a caller reading in chunks knows how many bytes to
 * fetch. In every other case *out and *payload are left untouched.
 *
 * Notes for the recovery scan:
 * - A prefix of a valid record is always SHORT, never ZERO: a valid header
 *   has a nonzero type and index.
 * - SHORT means "ends past avail", not "torn": a bit flip that raises len
 *   looks the same. The record is a torn tail only if avail ends the file.
 * - A record torn inside preallocated (zeroed) space has its full length
 *   available and so decodes as BAD (crc mismatch), not SHORT; whether a BAD
 *   record is a torn tail or mid-log damage depends on what follows it.
 */
enum wal_rec_status wal_rec_decode(const uint8_t *buf, size_t avail, struct wal_rec_hdr *out,
                                   const uint8_t **payload);

/* Static name for a status ("ok", "zero", "short", "bad"); never NULL. */
const char *wal_rec_status_str(enum wal_rec_status s);

enum wal_seg_status {
    WAL_SEG_OK = 0,
    WAL_SEG_SHORT,       /* fewer than 32 bytes */
    WAL_SEG_ZERO,        /* all 32 bytes zero: created but header never written */
    WAL_SEG_BAD_MAGIC,   /* not a segment file */
    WAL_SEG_BAD_CRC,     /* damaged header */
    WAL_SEG_BAD_VERSION, /* intact header of an unsupported format version */
    WAL_SEG_BAD_FIELD,   /* crc good but reserved != 0 or first index 0 */
};

/* Writes a version-WAL_FORMAT_VERSION segment header. Precondition
 * (asserted): first_index > 0. */
void wal_seg_hdr_encode(uint8_t out[WAL_SEG_HDR_SIZE], uint64_t first_index);

/* Decodes a segment header, reading no byte at or past buf + avail. Checks
 * in the order of enum wal_seg_status (short, zero, magic, crc, version,
 * fields). On WAL_SEG_OK sets *first_index; otherwise leaves it untouched.
 * Callers report WAL_SEG_BAD_VERSION as LKV_EFORMAT and the other failures
 * as LKV_ECORRUPT. */
enum wal_seg_status wal_seg_hdr_decode(const uint8_t *buf, size_t avail, uint64_t *first_index);

/* Static name for a status; never NULL. */
const char *wal_seg_status_str(enum wal_seg_status s);

#endif
