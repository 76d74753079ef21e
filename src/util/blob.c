#include "util/blob.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct lkv_blob *lkv_blob_new(size_t len)
{
    struct lkv_blob *b = malloc(sizeof *b + (len ? len : 1));
    if (!b)
        return NULL;
    atomic_init(&b->refs, 1);
    b->len = len;
    return b;
}

struct lkv_blob *lkv_blob_copy(const void *p, size_t len)
{
    struct lkv_blob *b = lkv_blob_new(len);
    if (b && len)
        memcpy(b->data, p, len);
    return b;
}

struct lkv_blob *lkv_blob_resize(struct lkv_blob *b, size_t len)
{
    assert(atomic_load_explicit(&b->refs, memory_order_relaxed) == 1);
    struct lkv_blob *nb = realloc(b, sizeof *b + (len ? len : 1));
    if (!nb)
        return NULL;
    nb->len = len;
    return nb;
}

struct lkv_blob *lkv_blob_ref(struct lkv_blob *b)
{
    if (b)
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

void lkv_blob_unref(struct lkv_blob *b)
{
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}
