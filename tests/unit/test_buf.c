/* Unit tests for util/buf: growth, formatting, ownership hand-off. */
#include "util/buf.h"
#include "util/err.h"

#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

Test(buf, append_grows_and_keeps_every_byte)
{
    struct buf b = {0};
    char expect[10000];
    for (size_t i = 0; i < sizeof expect; i++) {
        char c = (char)('a' + i % 26);
        expect[i] = c;
        cr_assert_eq(buf_append(&b, &c, 1), 0);
        cr_assert_eq(b.len, i + 1);
        cr_assert(b.cap > b.len, "no room for the NUL at len %zu", b.len);
        cr_assert_eq(b.data[b.len], '\0');
    }
    cr_assert_eq(memcmp(b.data, expect, sizeof expect), 0);
    cr_assert_eq(b.failed, 0);
    buf_free(&b);
}

Test(buf, append_keeps_embedded_nul_bytes)
{
    struct buf b = {0};
    const char bytes[] = {'x', '\0', 'y', '\0', 'z'};
    cr_assert_eq(buf_append(&b, bytes, sizeof bytes), 0);
    cr_assert_eq(buf_append(&b, bytes, sizeof bytes), 0);
    cr_assert_eq(b.len, 2 * sizeof bytes);
    cr_assert_eq(memcmp(b.data, bytes, sizeof bytes), 0);
    cr_assert_eq(memcmp(b.data + sizeof bytes, bytes, sizeof bytes), 0);
    buf_free(&b);
}

Test(buf, empty_append_yields_empty_string)
{
    struct buf b = {0};
    cr_assert_eq(buf_append(&b, NULL, 0), 0);
    cr_assert_not_null(b.data);
    cr_assert_str_eq(b.data, "");
    cr_assert_eq(b.len, 0);
    buf_free(&b);
}

Test(buf, printf_appends_formatted_text_past_the_initial_capacity)
{
    struct buf b = {0};
    cr_assert_eq(buf_printf(&b, "%s=%d", "a", 1), 0);
    cr_assert_str_eq(b.data, "a=1");
    char big[5000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cr_assert_eq(buf_printf(&b, " %s|%u", big, 42u), 0);
    cr_assert_eq(b.len, 3 + 1 + (sizeof big - 1) + 3);
    cr_assert_eq(strlen(b.data), b.len);
    cr_assert_eq(strncmp(b.data, "a=1 qqq", 7), 0);
    cr_assert_str_eq(b.data + b.len - 3, "|42");
    buf_free(&b);
}

Test(buf, printf_exactly_filling_the_room_is_terminated)
{
    struct buf b = {0};
    cr_assert_eq(buf_append(&b, "x", 1), 0);
    /* Whatever the capacity is, fill it exactly to the last byte and one past. */
    size_t room = b.cap - b.len;
    for (size_t extra = room - 2; extra <= room + 1; extra++) {
        struct buf c = {0};
        cr_assert_eq(buf_append(&c, "x", 1), 0);
        cr_assert_eq(buf_printf(&c, "%*s", (int)extra, ""), 0);
        cr_assert_eq(c.len, 1 + extra);
        cr_assert_eq(strlen(c.data), c.len);
        buf_free(&c);
    }
    buf_free(&b);
}

Test(buf, take_hands_over_data_and_resets)
{
    struct buf b = {0};
    buf_printf(&b, "hello %d", 7);
    size_t len = 0;
    char *s = buf_take(&b, &len);
    cr_assert_not_null(s);
    cr_assert_eq(len, 7);
    cr_assert_str_eq(s, "hello 7");
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);
    /* The buffer is reusable and does not alias what was taken. */
    cr_assert_eq(buf_append(&b, "zz", 2), 0);
    cr_assert_str_eq(s, "hello 7");
    cr_assert_str_eq(b.data, "zz");
    free(s); /* the caller owns it; ASan flags a leak or double free here */
    buf_free(&b);
}

Test(buf, take_of_untouched_buffer_is_an_empty_string)
{
    struct buf b = {0};
    size_t len = 99;
    char *s = buf_take(&b, &len);
    cr_assert_not_null(s);
    cr_assert_str_eq(s, "");
    cr_assert_eq(len, 0);
    free(s);
}

Test(buf, free_resets_to_empty)
{
    struct buf b = {0};
    buf_append(&b, "abc", 3);
    buf_free(&b);
    cr_assert_null(b.data);
    cr_assert_eq(b.len, 0);
    cr_assert_eq(b.cap, 0);
    cr_assert_eq(b.failed, 0);
    buf_free(&b); /* freeing twice is harmless */
}

Test(buf, oversized_append_fails_and_sticks)
{
    struct buf b = {0};
    cr_assert_eq(buf_append(&b, "ok", 2), 0);
    /* A length that cannot be represented with the NUL must fail before any
     * allocation or copy is attempted. */
    cr_assert_eq(buf_append(&b, "x", SIZE_MAX - 1), LKV_ENOMEM);
    cr_assert_eq(b.failed, 1);
    cr_assert_eq(b.len, 2);
    cr_assert_eq(buf_append(&b, "more", 4), LKV_ENOMEM);
    cr_assert_eq(buf_printf(&b, "%d", 1), LKV_ENOMEM);
    cr_assert_eq(b.len, 2);
    size_t len = 5;
    cr_assert_null(buf_take(&b, &len), "a failed buffer must not pass for a complete one");
    cr_assert_eq(len, 0);
    cr_assert_eq(b.failed, 0);
    cr_assert_null(b.data);
}
