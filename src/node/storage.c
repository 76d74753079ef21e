#include "node/storage.h"

#include "util/err.h"

#include <stddef.h>

static int st_term(void *ctx, uint64_t index, uint64_t *term)
{
    struct node_storage *s = ctx;
    if (index == s->snap_index) {
        *term = s->snap_term;
        return 0;
    }
    if (index == 0) {
        *term = 0;
        return 0;
    }
    return wal_term_of(s->wal, index, term);
}

struct fill {
    struct raft_entry *out;
    size_t n;
};

/* Copies one record read back from the log into an entry of its own. */
static int fill_cb(const struct wal_rec_hdr *h, const uint8_t *payload, void *arg)
{
    struct fill *f = arg;
    struct raft_entry *e = &f->out[f->n];
    *e = (struct raft_entry){.index = h->index, .term = h->term, .type = h->type};
    if (h->len && !(e->data = lkv_blob_copy(payload, h->len)))
        return LKV_ENOMEM;
    f->n++;
    return 0;
}

static int st_entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes,
                      struct raft_entry *out, size_t max_n, size_t *n)
{
    struct node_storage *s = ctx;
    if (hi - lo > max_n)
        hi = lo + max_n;
    struct fill f = {.out = out};
    int rc = wal_read(s->wal, lo, hi, max_bytes, fill_cb, &f);
    if (rc < 0) {
        for (size_t i = 0; i < f.n; i++)
            lkv_blob_unref(out[i].data);
        return rc;
    }
    *n = f.n;
    return 0;
}

static uint64_t st_first_index(void *ctx)
{
    struct node_storage *s = ctx;
    return wal_first_index(s->wal);
}

static uint64_t st_last_index(void *ctx)
{
    struct node_storage *s = ctx;
    return wal_last_index(s->wal);
}

/* Snapshots do not travel between nodes yet: a member that needs one is
 * reported instead (the core then leaves it waiting). */
static int st_snapshot(void *ctx, struct raft_snapshot *out)
{
    (void)ctx;
    (void)out;
    return LKV_EUNAVAILABLE;
}

void node_storage_init(struct node_storage *s, struct wal *wal, uint64_t snap_index,
                       uint64_t snap_term)
{
    s->st = (struct raft_storage){.ctx = s, .term = st_term, .entries = st_entries,
                                  .first_index = st_first_index, .last_index = st_last_index,
                                  .snapshot = st_snapshot};
    s->wal = wal;
    s->snap_index = snap_index;
    s->snap_term = snap_term;
}

void node_storage_set_snapshot(struct node_storage *s, uint64_t index, uint64_t term)
{
    s->snap_index = index;
    s->snap_term = term;
}
