/* Unit tests for util/blob: copies, reference counts, and resizing a blob
 * while it is still being filled. */
#include "util/blob.h"

#include <criterion/criterion.h>

#include <string.h>

Test(blob, copy_holds_the_bytes_with_one_reference)
{
    struct lkv_blob *b = lkv_blob_copy("abc", 3);
    cr_assert_not_null(b);
    cr_assert_eq(b->len, 3);
    cr_assert_arr_eq(b->data, "abc", 3);
    cr_assert_eq(atomic_load(&b->refs), 1);
    lkv_blob_unref(b);
}

Test(blob, ref_and_unref_count_holders)
{
    struct lkv_blob *b = lkv_blob_copy("x", 1);
    cr_assert_not_null(b);
    cr_assert_eq(lkv_blob_ref(b), b);
    cr_assert_eq(atomic_load(&b->refs), 2);
    lkv_blob_unref(b);
    cr_assert_eq(atomic_load(&b->refs), 1);
    lkv_blob_unref(b);
    cr_assert_null(lkv_blob_ref(NULL));
    lkv_blob_unref(NULL);
}

Test(blob, resize_grows_keeping_the_bytes_written)
{
    struct lkv_blob *b = lkv_blob_new(4);
    cr_assert_not_null(b);
    memcpy(b->data, "abcd", 4);
    b = lkv_blob_resize(b, 1 << 20);
    cr_assert_not_null(b);
    cr_assert_eq(b->len, 1u << 20);
    cr_assert_arr_eq(b->data, "abcd", 4);
    b->data[(1 << 20) - 1] = 'z'; /* the new room is writable */
    lkv_blob_unref(b);
}

Test(blob, resize_shrinks_to_the_bytes_used)
{
    struct lkv_blob *b = lkv_blob_new(4096);
    cr_assert_not_null(b);
    memcpy(b->data, "hello", 5);
    b = lkv_blob_resize(b, 5);
    cr_assert_not_null(b);
    cr_assert_eq(b->len, 5);
    cr_assert_arr_eq(b->data, "hello", 5);
    cr_assert_eq(atomic_load(&b->refs), 1);
    lkv_blob_unref(b);
}
