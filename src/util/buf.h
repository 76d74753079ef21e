/* buf: a growable byte buffer for building responses and files. */
#ifndef LKV_UTIL_BUF_H
#define LKV_UTIL_BUF_H

#include <stddef.h>

/* Caller-allocated; zero-initialise (struct buf b = {0};) before first use. */
struct buf {
    char *data; /* owned; NUL-terminated after any successful append */
    size_t len;
    size_t cap;
    int failed; /* set once an allocation fails; later appends are no-ops */
};

/* Appends bytes / formatted text. On allocation failure sets b->failed and
 * returns LKV_ENOMEM; otherwise 0. */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands the data to the caller (who frees it with free()) and resets b. */
char *buf_take(struct buf *b, size_t *len);

/* Frees the data and resets b to empty. */
void buf_free(struct buf *b);

#endif
