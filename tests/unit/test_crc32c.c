/* Unit tests for util/crc32c: known vectors, the extend contract, and the
 * hardware and software paths agreeing. */
#include <criterion/criterion.h>

#include "util/crc32c.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Both paths must produce each vector, whichever one crc32c() picks here. */
static void expect_both(const void *data, size_t len, uint32_t want)
{
    cr_expect_eq(crc32c(data, len), want, "crc32c len=%zu got %08x want %08x", len,
                 crc32c(data, len), want);
    cr_expect_eq(crc32c_extend_sw(0, data, len), want, "sw len=%zu got %08x want %08x", len,
                 crc32c_extend_sw(0, data, len), want);
}

Test(crc32c, check_value)
{
    expect_both("123456789", 9, 0xE3069283u);
}

Test(crc32c, rfc3720_vectors)
{
    uint8_t buf[32];

    memset(buf, 0, sizeof(buf));
    expect_both(buf, sizeof(buf), 0x8A9136AAu);

    memset(buf, 0xFF, sizeof(buf));
    expect_both(buf, sizeof(buf), 0x62A8AB43u);

    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    expect_both(buf, sizeof(buf), 0x46DD794Eu);

    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    expect_both(buf, sizeof(buf), 0x113FDB5Cu);
}

Test(crc32c, empty_input_is_zero)
{
    expect_both(NULL, 0, 0);
    cr_expect_eq(crc32c_extend(0x12345678u, NULL, 0), 0x12345678u);
    cr_expect_eq(crc32c_extend_sw(0x12345678u, NULL, 0), 0x12345678u);
}

Test(crc32c, extend_equals_concatenation_at_every_split)
{
    uint8_t buf[300];
    srand(7);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)rand();
    uint32_t whole = crc32c(buf, sizeof(buf));
    for (size_t cut = 0; cut <= sizeof(buf); cut++) {
        uint32_t a = crc32c(buf, cut);
        cr_assert_eq(crc32c_extend(a, buf + cut, sizeof(buf) - cut), whole, "cut=%zu", cut);
        cr_assert_eq(crc32c_extend_sw(a, buf + cut, sizeof(buf) - cut), whole, "sw cut=%zu", cut);
    }
}

Test(crc32c, hw_and_sw_agree_on_random_inputs)
{
    enum { MAXLEN = 1100, MAXOFF = 16 };
    uint8_t *buf = malloc(MAXLEN + MAXOFF);
    cr_assert_not_null(buf);
    srand(12345);
    for (size_t i = 0; i < MAXLEN + MAXOFF; i++)
        buf[i] = (uint8_t)rand();

    if (!crc32c_hw_available())
        cr_log_warn("no SSE4.2 on this CPU: only the software path is exercised");
    for (size_t off = 0; off < MAXOFF; off++) {
        for (size_t len = 0; len <= MAXLEN; len += (len < 80 ? 1 : 7)) {
            uint32_t seed = (uint32_t)rand() ^ (uint32_t)rand() << 16;
            cr_assert_eq(crc32c_extend(seed, buf + off, len),
                         crc32c_extend_sw(seed, buf + off, len), "off=%zu len=%zu", off, len);
        }
    }
    free(buf);
}

Test(crc32c, hw_and_sw_agree_on_large_input)
{
    size_t len = (1u << 20) + 3;
    uint8_t *buf = malloc(len);
    cr_assert_not_null(buf);
    srand(99);
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)rand();
    cr_expect_eq(crc32c(buf, len), crc32c_extend_sw(0, buf, len));
    free(buf);
}

/* The table is built on first use; racing first users must all see it
 * complete. Each Criterion test runs in a fresh process, so this one really
 * is the first use of the software path. */
struct race_arg {
    const uint8_t *data;
    uint32_t got;
};

static void *race_cb(void *p)
{
    struct race_arg *a = p;
    a->got = crc32c_extend_sw(0, a->data, 32);
    return NULL;
}

Test(crc32c, sw_tables_built_once_under_concurrent_first_use)
{
    uint8_t buf[32];
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    pthread_t th[8];
    struct race_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (struct race_arg){.data = buf};
        cr_assert_eq(pthread_create(&th[i], NULL, race_cb, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(args[i].got, 0x46DD794Eu, "thread %d got %08x", i, args[i].got);
    }
}
