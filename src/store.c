#include "store.h"

#include "util/err.h"
#include "util/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

struct store {
    struct store_config cfg;
    struct kv_map *map;

    pthread_mutex_t lock; /* guards queue_head/queue_tail/stopping */
    pthread_cond_t wake;
    struct store_req *queue_head;
    struct store_req *queue_tail;
    bool stopping;

    pthread_t writer;
    int failed;
};

/* Takes everything queued so far, oldest first; waits while the queue is
 * empty. Returns NULL once stopping and drained. */
static struct store_req *take_batch(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    while (!s->queue_head && !s->stopping)
        pthread_cond_wait(&s->wake, &s->lock);
    struct store_req *batch = s->queue_head;
    s->queue_head = s->queue_tail = NULL;
    pthread_mutex_unlock(&s->lock);
    return batch;
}

static bool over_memory_limit(const struct store *s, const struct store_req *r)
{
    if (s->cfg.max_memory == 0 || r->op != STORE_PUT)
        return false;
    uint64_t add = kv_entry_klen(r->entry) + kv_entry_vlen(r->entry);
    return kv_map_bytes(s->map) + add > s->cfg.max_memory;
}

/* Applies a batch to the map in order. Requests refused here get their
 * status in *status (indexed as in the batch); returns the detached contents
 * of any CLEAR for freeing outside the lock. */
static void apply_batch(struct store *s, struct store_req *batch)
{
    struct kv_detached *cleared[8];
    size_t ncleared = 0;
    kv_map_write_lock(s->map);
    for (struct store_req *r = batch; r; r = r->next) {
        switch (r->op) {
        case STORE_PUT:
            kv_map_put_locked(s->map, r->entry); /* ENOMEM only slows the map */
            r->entry = NULL;
            break;
        case STORE_DELETE:
            kv_map_delete_locked(s->map, r->key, r->klen);
            break;
        case STORE_CLEAR: {
            struct kv_detached *d = kv_map_clear_locked(s->map);
            if (ncleared == sizeof cleared / sizeof cleared[0]) {
                kv_map_write_unlock(s->map);
                for (size_t i = 0; i < ncleared; i++)
                    kv_detached_free(cleared[i]);
                ncleared = 0;
                kv_map_write_lock(s->map);
            }
            cleared[ncleared++] = d;
            break;
        }
        }
    }
    kv_map_write_unlock(s->map);
    for (size_t i = 0; i < ncleared; i++)
        kv_detached_free(cleared[i]);
}

static void complete_batch(struct store_req *batch, int status)
{
    while (batch) {
        struct store_req *next = batch->next;
        if (batch->entry) {
            kv_entry_unref(batch->entry);
            batch->entry = NULL;
        }
        batch->done_cb(batch, status);
        batch = next;
    }
}

/* Splits off the requests the memory limit refuses and completes them. */
static struct store_req *refuse_over_limit(struct store *s, struct store_req *batch)
{
    struct store_req *keep = NULL, **tail = &keep;
    while (batch) {
        struct store_req *next = batch->next;
        batch->next = NULL;
        if (over_memory_limit(s, batch)) {
            complete_batch(batch, LKV_EMEMLIMIT);
        } else {
            *tail = batch;
            tail = &batch->next;
        }
        batch = next;
    }
    return keep;
}

static void *writer_main(void *arg)
{
    struct store *s = arg;
    struct store_req *batch;
    while ((batch = take_batch(s)) != NULL) {
        batch = refuse_over_limit(s, batch);
        if (!batch)
            continue;
        apply_batch(s, batch);
        complete_batch(batch, 0);
    }
    return NULL;
}

int store_open(const struct store_config *cfg, struct store **out, char *err, size_t errlen)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s)
        goto err_nomem;
    s->cfg = *cfg;
    s->map = kv_map_new();
    if (!s->map)
        goto err_after_alloc;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0)
        goto err_after_map;
    *out = s;
    return 0;

err_after_map:
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    kv_map_free(s->map);
err_after_alloc:
    free(s);
err_nomem:
    snprintf(err, errlen, "cannot start the store: %s", lkv_strerror(LKV_ENOMEM));
    return LKV_ENOMEM;
}

void store_submit(struct store *s, struct store_req *req)
{
    req->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->lock);
        complete_batch(req, LKV_ESHUTDOWN);
        return;
    }
    bool was_empty = s->queue_head == NULL;
    if (s->queue_tail)
        s->queue_tail->next = req;
    else
        s->queue_head = req;
    s->queue_tail = req;
    pthread_mutex_unlock(&s->lock);
    if (was_empty)
        pthread_cond_signal(&s->wake);
}

struct kv_entry *store_get(struct store *s, const char *key, size_t klen)
{
    return kv_map_get(s->map, key, klen);
}

int store_failed(const struct store *s)
{
    return s->failed;
}

void store_gauges(struct store *s, struct stats_gauges *g)
{
    g->keys = kv_map_count(s->map);
    g->bytes = kv_map_bytes(s->map);
}

int store_shutdown(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_mutex_unlock(&s->lock);
    pthread_cond_signal(&s->wake);
    pthread_join(s->writer, NULL);
    return s->failed;
}

void store_free(struct store *s)
{
    kv_map_free(s->map);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
