/* blob: an immutable, reference-counted byte buffer, shared without copying
 * between the HTTP layer, the Raft core's log, messages and the state
 * machine. */
#ifndef LKV_UTIL_BLOB_H
#define LKV_UTIL_BLOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct lkv_blob {
    atomic_uint refs;
    size_t len;
    uint8_t data[]; /* len bytes; writable only until the blob is shared */
};

/* Allocates a blob of `len` uninitialised bytes with one reference, owned by
 * the caller. Returns NULL when out of memory. */
struct lkv_blob *lkv_blob_new(size_t len);

/* A new blob holding a copy of p[0..len). NULL when out of memory. */
struct lkv_blob *lkv_blob_copy(const void *p, size_t len);

/* Resizes a blob that has never been shared (the caller holds its only
 * reference) to `len` bytes, keeping the first min(old, len) bytes, as
 * realloc does: for buffers that grow while a body arrives and are cut to
 * size when it ends. Returns the blob, which may have moved, or NULL when
 * out of memory (b is then unchanged and still the caller's). */
struct lkv_blob *lkv_blob_resize(struct lkv_blob *b, size_t len);

/* Takes another reference (b may be NULL); returns b. Any thread. */
struct lkv_blob *lkv_blob_ref(struct lkv_blob *b);

/* Drops a reference (b may be NULL); the last one frees the blob. Any thread. */
void lkv_blob_unref(struct lkv_blob *b);

#endif
