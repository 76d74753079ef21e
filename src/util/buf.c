#include "util/buf.h"

#include "util/err.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Small enough not to waste memory on tiny responses, big enough that a
 * typical /stats document needs only a few doublings. */
#define BUF_MIN_CAP 64

static int fail(struct buf *b)
{
    b->failed = 1;
    return LKV_ENOMEM;
}

/* Makes room for `extra` more bytes plus the terminating NUL. */
static int reserve(struct buf *b, size_t extra)
{
    if (b->failed)
        return LKV_ENOMEM;
    if (extra > SIZE_MAX - 1 - b->len)
        return fail(b);
    size_t need = b->len + extra + 1;
    if (b->data != NULL && need <= b->cap)
        return 0;
    size_t cap = b->cap < BUF_MIN_CAP ? BUF_MIN_CAP : b->cap;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (p == NULL)
        return fail(b); /* b->data is still valid and still owned by b */
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
    int rc = reserve(b, len);
    if (rc != 0)
        return rc;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    if (b->failed)
        return LKV_ENOMEM;
    /* First try to format into the spare room; most calls fit. */
    char *dst = b->data != NULL ? b->data + b->len : NULL;
    size_t room = b->data != NULL ? b->cap - b->len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        /* An encoding error. Poisoning the buffer keeps the rule that a
         * caller who checks only b->failed never sends half a document. */
        if (b->data != NULL)
            b->data[b->len] = '\0';
        return fail(b);
    }
    size_t need = (size_t)n;
    if (need >= room) {
        int rc = reserve(b, need);
        if (rc != 0)
            return rc;
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n != need) {
            b->data[b->len] = '\0';
            return fail(b);
        }
    }
    b->len += need;
    b->data[b->len] = '\0';
    return 0;
}

/* A buffer that never had a successful append still yields "" so callers can
 * use the result as a string; a failed buffer yields NULL (its contents are
 * incomplete) and is freed here. */
char *buf_take(struct buf *b, size_t *len)
{
    char *data = NULL;
    size_t n = 0;
    if (b->failed) {
        free(b->data);
    } else if (b->data == NULL) {
        data = malloc(1);
        if (data != NULL)
            data[0] = '\0';
    } else {
        data = b->data;
        n = b->len;
    }
    memset(b, 0, sizeof *b);
    if (len != NULL)
        *len = n;
    return data;
}

void buf_free(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}
