/* Minimal in-process stand-in for <criterion/criterion.h>, for ThreadSanitizer builds.
 *
 * Criterion 2.4 cannot start under TSan (Snaipe/Criterion#274: "Could not
 * initialize inheritable arena"), so `make tsan` compiles the unit tests with
 * -Itests/unit/tsan, which makes this header shadow the real one.  It provides
 * only what tests/unit/test_*.c use:
 *
 *   Test(suite, name[, .init = f, .fini = f, .timeout = s, .disabled = b, .description = "..."])
 *   TestSuite(suite[, same options])
 *   cr_assert / cr_expect families: (plain), _not, _eq, _neq, _lt, _leq, _gt, _geq,
 *     _null, _not_null, _zero, _not_zero, _str_eq, _str_neq, _arr_eq, _arr_neq,
 *     _float_eq, _float_neq, and cr_assert_fail / cr_expect_fail;
 *     each takes an optional printf-style message after its operands
 *   cr_log_info / cr_log_warn / cr_log_error
 *
 * Tests run one after another in this process (no fork, no timeouts), in the
 * order they appear in the file.  For each test: suite .init, test .init, the
 * body, test .fini, suite .fini; the .fini functions run even when an assertion
 * failed earlier.  A failed cr_assert* longjmps back to the runner; a failed
 * cr_expect* is recorded and the test goes on.  A failed cr_assert* on a thread
 * the test started ends that thread (pthread_exit) and fails the test.
 * A crash ends the whole run (the last "[RUN ]" line names the test).
 *
 * Options: --filter=SUITE/TEST (fnmatch pattern), --list, --quiet;
 * --jobs/-j N and --verbose are accepted and ignored.
 *
 * Everything lives in this header (it also defines main()), so include it from
 * exactly one translation unit per test program, as the tests do. */
#ifndef CRSHIM_CRITERION_H
#define CRSHIM_CRITERION_H

#include <fnmatch.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- options accepted by Test() and TestSuite() ---- */

struct crshim_opts {
    void (*init)(void);
    void (*fini)(void);
    double timeout; /* ignored */
    bool disabled;
    const char *description;
    int crshim_end_; /* lets the option list be empty */
};

struct crshim_test {
    const char *suite, *name, *file;
    int line;
    void (*fn)(void);
    const struct crshim_opts *opts;
};

struct crshim_suite {
    const char *name;
    const struct crshim_opts *opts;
};

/* ---- runner state (one test program = one translation unit) ---- */

#define CRSHIM_UNUSED __attribute__((unused))

static struct crshim_test *crshim_tests_ CRSHIM_UNUSED;
static size_t crshim_ntests_ CRSHIM_UNUSED;
static struct crshim_suite *crshim_suites_ CRSHIM_UNUSED;
static size_t crshim_nsuites_ CRSHIM_UNUSED;

static jmp_buf crshim_jmp_;
static bool crshim_jmp_armed_;             /* only touched by the runner thread */
static pthread_t crshim_runner_;           /* the thread that runs the tests */
static atomic_int crshim_failures_;        /* failed assertions in the current test */
static pthread_mutex_t crshim_out_lock_ = PTHREAD_MUTEX_INITIALIZER;

static CRSHIM_UNUSED void crshim_oom_(void)
{
    fputs("criterion shim: out of memory\n", stderr);
    abort();
}

static CRSHIM_UNUSED void crshim_add_test_(const char *suite, const char *name, const char *file,
                                          int line, void (*fn)(void),
                                          const struct crshim_opts *opts)
{
    struct crshim_test *t =
        realloc(crshim_tests_, (crshim_ntests_ + 1) * sizeof *crshim_tests_);
    if (!t)
        crshim_oom_();
    crshim_tests_ = t;
    crshim_tests_[crshim_ntests_++] = (struct crshim_test){suite, name, file, line, fn, opts};
}

static CRSHIM_UNUSED void crshim_add_suite_(const char *name, const struct crshim_opts *opts)
{
    struct crshim_suite *s =
        realloc(crshim_suites_, (crshim_nsuites_ + 1) * sizeof *crshim_suites_);
    if (!s)
        crshim_oom_();
    crshim_suites_ = s;
    crshim_suites_[crshim_nsuites_++] = (struct crshim_suite){name, opts};
}

/* ---- reporting ---- */

/* Writes `text` with every line prefixed by `prefix`. */
static CRSHIM_UNUSED void crshim_put_lines_(const char *prefix, const char *text)
{
    while (*text) {
        const char *nl = strchr(text, '\n');
        int len = nl ? (int)(nl - text) : (int)strlen(text);
        fprintf(stderr, "%s%.*s\n", prefix, len, text);
        text += len + (nl != NULL);
    }
}

/* vsnprintf into a fresh buffer; NULL when out of memory. */
static CRSHIM_UNUSED char *crshim_vformat_(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static CRSHIM_UNUSED void crshim_report_(bool fatal, const char *file, int line, const char *text,
                                        const char *msg)
{
    atomic_fetch_add(&crshim_failures_, 1);
    pthread_mutex_lock(&crshim_out_lock_);
    fprintf(stderr, "[----] %s:%d: %s\n", file, line,
            fatal ? "Assertion Failed" : "Expectation Failed");
    fprintf(stderr, "[----]   %s\n", text);
    if (msg && *msg)
        crshim_put_lines_("[----]   ", msg);
    pthread_mutex_unlock(&crshim_out_lock_);
}

static CRSHIM_UNUSED void crshim_fail_plain_(bool fatal, const char *file, int line,
                                            const char *text)
{
    crshim_report_(fatal, file, line, text, NULL);
}

static CRSHIM_UNUSED __attribute__((format(printf, 5, 6))) void
crshim_fail_fmt_(bool fatal, const char *file, int line, const char *text, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = crshim_vformat_(fmt, ap);
    va_end(ap);
    crshim_report_(fatal, file, line, text, msg ? msg : fmt);
    free(msg);
}

/* Leaves the current test after a failed cr_assert*. */
static CRSHIM_UNUSED __attribute__((noreturn)) void crshim_abort_(void)
{
    if (!pthread_equal(pthread_self(), crshim_runner_)) {
        /* A thread the test started: it cannot longjmp into the runner. */
        pthread_mutex_lock(&crshim_out_lock_);
        fputs("[----]   (failed on a helper thread: that thread exits, the test goes on)\n",
              stderr);
        pthread_mutex_unlock(&crshim_out_lock_);
        pthread_exit(NULL);
    }
    if (!crshim_jmp_armed_) {
        fputs("[----]   (failed outside any test)\n", stderr);
        exit(1);
    }
    longjmp(crshim_jmp_, 1);
}

static CRSHIM_UNUSED __attribute__((format(printf, 2, 3))) void
crshim_log_(const char *tag, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = crshim_vformat_(fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&crshim_out_lock_);
    crshim_put_lines_(tag, msg ? msg : fmt);
    pthread_mutex_unlock(&crshim_out_lock_);
    free(msg);
}

/* ---- registration macros ---- */

#define CRSHIM_CAT_(a, b) a##b
#define CRSHIM_CAT(a, b) CRSHIM_CAT_(a, b)

#define Test(...) CRSHIM_TEST_(__VA_ARGS__, .crshim_end_ = 0)
#define CRSHIM_TEST_(suite, name, ...)                                                          \
    static void crshim_fn_##suite##__##name(void);                                              \
    static const struct crshim_opts crshim_opts_##suite##__##name = {__VA_ARGS__};              \
    __attribute__((constructor)) static void crshim_reg_##suite##__##name(void)                 \
    {                                                                                           \
        crshim_add_test_(#suite, #name, __FILE__, __LINE__, crshim_fn_##suite##__##name,        \
                         &crshim_opts_##suite##__##name);                                       \
    }                                                                                           \
    static void crshim_fn_##suite##__##name(void)

/* Ends in a declaration so that the `;` after TestSuite(...) is not stray. */
#define TestSuite(...) CRSHIM_SUITE_(__VA_ARGS__, .crshim_end_ = 0)
#define CRSHIM_SUITE_(suite, ...)                                                               \
    static const struct crshim_opts crshim_suite_opts_##suite;                                  \
    __attribute__((constructor)) static void crshim_suite_reg_##suite(void)                     \
    {                                                                                           \
        crshim_add_suite_(#suite, &crshim_suite_opts_##suite);                                  \
    }                                                                                           \
    static const struct crshim_opts crshim_suite_opts_##suite = {__VA_ARGS__}

/* ---- assertion macros ----
 *
 * CRSHIM_MOREk(args...) is 0 when exactly k arguments are given and M when
 * there are more (up to 40), i.e. when a message format follows the operands.
 * Counting avoids empty variadic arguments, which ISO C11 does not allow. */

#define CRSHIM_PICK_(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17,  \
                     a18, a19, a20, a21, a22, a23, a24, a25, a26, a27, a28, a29, a30, a31, a32,   \
                     a33, a34, a35, a36, a37, a38, a39, a40, N, ...)                              \
    N
#define CRSHIM_MORE1(...)                                                                       \
    CRSHIM_PICK_(__VA_ARGS__, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,   \
                 M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, 0, ~)
#define CRSHIM_MORE2(...)                                                                       \
    CRSHIM_PICK_(__VA_ARGS__, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,   \
                 M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, 0, 0, ~)
#define CRSHIM_MORE3(...)                                                                       \
    CRSHIM_PICK_(__VA_ARGS__, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,   \
                 M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, 0, 0, 0, ~)

#define CRSHIM_CHECK_0(fatal, cond, text)                                                       \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            crshim_fail_plain_(fatal, __FILE__, __LINE__, text);                                \
            if (fatal)                                                                          \
                crshim_abort_();                                                                \
        }                                                                                       \
    } while (0)
#define CRSHIM_CHECK_M(fatal, cond, text, ...)                                                  \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            crshim_fail_fmt_(fatal, __FILE__, __LINE__, text, __VA_ARGS__);                     \
            if (fatal)                                                                          \
                crshim_abort_();                                                                \
        }                                                                                       \
    } while (0)

/* One, two or three operands, then an optional message; OP builds the condition. */
#define CRSHIM_1_(fatal, OP, text, ...)                                                         \
    CRSHIM_CAT(CRSHIM_1_, CRSHIM_MORE1(__VA_ARGS__))(fatal, OP, text, __VA_ARGS__)
#define CRSHIM_1_0(fatal, OP, text, a) CRSHIM_CHECK_0(fatal, OP(a), text)
#define CRSHIM_1_M(fatal, OP, text, a, ...) CRSHIM_CHECK_M(fatal, OP(a), text, __VA_ARGS__)

#define CRSHIM_2_(fatal, OP, text, ...)                                                         \
    CRSHIM_CAT(CRSHIM_2_, CRSHIM_MORE2(__VA_ARGS__))(fatal, OP, text, __VA_ARGS__)
#define CRSHIM_2_0(fatal, OP, text, a, b) CRSHIM_CHECK_0(fatal, OP(a, b), text)
#define CRSHIM_2_M(fatal, OP, text, a, b, ...) CRSHIM_CHECK_M(fatal, OP(a, b), text, __VA_ARGS__)

#define CRSHIM_3_(fatal, OP, text, ...)                                                         \
    CRSHIM_CAT(CRSHIM_3_, CRSHIM_MORE3(__VA_ARGS__))(fatal, OP, text, __VA_ARGS__)
#define CRSHIM_3_0(fatal, OP, text, a, b, c) CRSHIM_CHECK_0(fatal, OP(a, b, c), text)
#define CRSHIM_3_M(fatal, OP, text, a, b, c, ...)                                               \
    CRSHIM_CHECK_M(fatal, OP(a, b, c), text, __VA_ARGS__)

#define CRSHIM_OP_TRUE(a) (a)
#define CRSHIM_OP_NOT(a) (!(a))
#define CRSHIM_OP_NULL(a) ((a) == NULL)
#define CRSHIM_OP_NOT_NULL(a) ((a) != NULL)
#define CRSHIM_OP_ZERO(a) ((a) == 0)
#define CRSHIM_OP_NOT_ZERO(a) ((a) != 0)
#define CRSHIM_OP_EQ(a, b) ((a) == (b))
#define CRSHIM_OP_NEQ(a, b) ((a) != (b))
#define CRSHIM_OP_LT(a, b) ((a) < (b))
#define CRSHIM_OP_LEQ(a, b) ((a) <= (b))
#define CRSHIM_OP_GT(a, b) ((a) > (b))
#define CRSHIM_OP_GEQ(a, b) ((a) >= (b))
#define CRSHIM_OP_STR_EQ(a, b) (strcmp((a), (b)) == 0)
#define CRSHIM_OP_STR_NEQ(a, b) (strcmp((a), (b)) != 0)
#define CRSHIM_OP_ARR_EQ(a, b, n) (memcmp((a), (b), (n)) == 0)
#define CRSHIM_OP_ARR_NEQ(a, b, n) (memcmp((a), (b), (n)) != 0)
#define CRSHIM_OP_FLOAT_EQ(a, b, eps) ((b) - (a) <= (eps) && (a) - (b) <= (eps))
#define CRSHIM_OP_FLOAT_NEQ(a, b, eps) (!CRSHIM_OP_FLOAT_EQ(a, b, eps))

/* The failure text is the macro call as written in the test. */
#define cr_assert(...) CRSHIM_1_(1, CRSHIM_OP_TRUE, "cr_assert(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect(...) CRSHIM_1_(0, CRSHIM_OP_TRUE, "cr_expect(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_not(...)                                                                      \
    CRSHIM_1_(1, CRSHIM_OP_NOT, "cr_assert_not(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_not(...)                                                                      \
    CRSHIM_1_(0, CRSHIM_OP_NOT, "cr_expect_not(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_null(...)                                                                     \
    CRSHIM_1_(1, CRSHIM_OP_NULL, "cr_assert_null(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_null(...)                                                                     \
    CRSHIM_1_(0, CRSHIM_OP_NULL, "cr_expect_null(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_not_null(...)                                                                 \
    CRSHIM_1_(1, CRSHIM_OP_NOT_NULL, "cr_assert_not_null(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_not_null(...)                                                                 \
    CRSHIM_1_(0, CRSHIM_OP_NOT_NULL, "cr_expect_not_null(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_zero(...)                                                                     \
    CRSHIM_1_(1, CRSHIM_OP_ZERO, "cr_assert_zero(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_zero(...)                                                                     \
    CRSHIM_1_(0, CRSHIM_OP_ZERO, "cr_expect_zero(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_not_zero(...)                                                                 \
    CRSHIM_1_(1, CRSHIM_OP_NOT_ZERO, "cr_assert_not_zero(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_not_zero(...)                                                                 \
    CRSHIM_1_(0, CRSHIM_OP_NOT_ZERO, "cr_expect_not_zero(" #__VA_ARGS__ ")", __VA_ARGS__)

#define cr_assert_eq(...) CRSHIM_2_(1, CRSHIM_OP_EQ, "cr_assert_eq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_eq(...) CRSHIM_2_(0, CRSHIM_OP_EQ, "cr_expect_eq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_neq(...)                                                                      \
    CRSHIM_2_(1, CRSHIM_OP_NEQ, "cr_assert_neq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_neq(...)                                                                      \
    CRSHIM_2_(0, CRSHIM_OP_NEQ, "cr_expect_neq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_lt(...) CRSHIM_2_(1, CRSHIM_OP_LT, "cr_assert_lt(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_lt(...) CRSHIM_2_(0, CRSHIM_OP_LT, "cr_expect_lt(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_leq(...)                                                                      \
    CRSHIM_2_(1, CRSHIM_OP_LEQ, "cr_assert_leq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_leq(...)                                                                      \
    CRSHIM_2_(0, CRSHIM_OP_LEQ, "cr_expect_leq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_gt(...) CRSHIM_2_(1, CRSHIM_OP_GT, "cr_assert_gt(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_gt(...) CRSHIM_2_(0, CRSHIM_OP_GT, "cr_expect_gt(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_geq(...)                                                                      \
    CRSHIM_2_(1, CRSHIM_OP_GEQ, "cr_assert_geq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_geq(...)                                                                      \
    CRSHIM_2_(0, CRSHIM_OP_GEQ, "cr_expect_geq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_str_eq(...)                                                                   \
    CRSHIM_2_(1, CRSHIM_OP_STR_EQ, "cr_assert_str_eq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_str_eq(...)                                                                   \
    CRSHIM_2_(0, CRSHIM_OP_STR_EQ, "cr_expect_str_eq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_str_neq(...)                                                                  \
    CRSHIM_2_(1, CRSHIM_OP_STR_NEQ, "cr_assert_str_neq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_str_neq(...)                                                                  \
    CRSHIM_2_(0, CRSHIM_OP_STR_NEQ, "cr_expect_str_neq(" #__VA_ARGS__ ")", __VA_ARGS__)

#define cr_assert_arr_eq(...)                                                                   \
    CRSHIM_3_(1, CRSHIM_OP_ARR_EQ, "cr_assert_arr_eq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_arr_eq(...)                                                                   \
    CRSHIM_3_(0, CRSHIM_OP_ARR_EQ, "cr_expect_arr_eq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_arr_neq(...)                                                                  \
    CRSHIM_3_(1, CRSHIM_OP_ARR_NEQ, "cr_assert_arr_neq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_arr_neq(...)                                                                  \
    CRSHIM_3_(0, CRSHIM_OP_ARR_NEQ, "cr_expect_arr_neq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_float_eq(...)                                                                 \
    CRSHIM_3_(1, CRSHIM_OP_FLOAT_EQ, "cr_assert_float_eq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_float_eq(...)                                                                 \
    CRSHIM_3_(0, CRSHIM_OP_FLOAT_EQ, "cr_expect_float_eq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_assert_float_neq(...)                                                                \
    CRSHIM_3_(1, CRSHIM_OP_FLOAT_NEQ, "cr_assert_float_neq(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_float_neq(...)                                                                \
    CRSHIM_3_(0, CRSHIM_OP_FLOAT_NEQ, "cr_expect_float_neq(" #__VA_ARGS__ ")", __VA_ARGS__)

/* cr_assert_fail() and cr_assert_fail("fmt", ...): the message may be absent,
 * hence the "" prefix and the silenced zero-length-format warning. */
#define CRSHIM_FAIL_(fatal, text, ...)                                                          \
    do {                                                                                        \
        _Pragma("GCC diagnostic push")                                                          \
        _Pragma("GCC diagnostic ignored \"-Wformat-zero-length\"")                              \
        crshim_fail_fmt_(fatal, __FILE__, __LINE__, text, "" __VA_ARGS__);                      \
        _Pragma("GCC diagnostic pop")                                                           \
        if (fatal)                                                                              \
            crshim_abort_();                                                                    \
    } while (0)
#define cr_assert_fail(...) CRSHIM_FAIL_(1, "cr_assert_fail(" #__VA_ARGS__ ")", __VA_ARGS__)
#define cr_expect_fail(...) CRSHIM_FAIL_(0, "cr_expect_fail(" #__VA_ARGS__ ")", __VA_ARGS__)

#define cr_log_info(...) crshim_log_("[INFO] ", __VA_ARGS__)
#define cr_log_warn(...) crshim_log_("[WARN] ", __VA_ARGS__)
#define cr_log_error(...) crshim_log_("[ERR ] ", __VA_ARGS__)

/* ---- the runner ---- */

/* Runs fn; true when a cr_assert* inside it failed. */
static CRSHIM_UNUSED bool crshim_guarded_(void (*fn)(void))
{
    if (!fn)
        return false;
    crshim_jmp_armed_ = true;
    if (setjmp(crshim_jmp_) == 0) {
        fn();
        crshim_jmp_armed_ = false;
        return false;
    }
    crshim_jmp_armed_ = false;
    return true;
}

static CRSHIM_UNUSED const struct crshim_opts *crshim_suite_opts_(const char *suite)
{
    for (size_t i = 0; i < crshim_nsuites_; i++)
        if (strcmp(crshim_suites_[i].name, suite) == 0)
            return crshim_suites_[i].opts;
    return NULL;
}

static CRSHIM_UNUSED double crshim_now_(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Constructors may run in any order: put the tests back in source order
 * (files in order of first registration, then by line). */
static CRSHIM_UNUSED void crshim_sort_tests_(void)
{
    size_t n = crshim_ntests_;
    size_t *rank = malloc((n ? n : 1) * sizeof *rank);
    if (!rank)
        crshim_oom_();
    for (size_t i = 0; i < n; i++) {
        rank[i] = i;
        for (size_t j = 0; j < i; j++)
            if (strcmp(crshim_tests_[j].file, crshim_tests_[i].file) == 0) {
                rank[i] = rank[j];
                break;
            }
    }
    for (size_t i = 1; i < n; i++) { /* insertion sort: stable */
        struct crshim_test t = crshim_tests_[i];
        size_t r = rank[i], j = i;
        while (j > 0 && (rank[j - 1] > r || (rank[j - 1] == r && crshim_tests_[j - 1].line > t.line))) {
            crshim_tests_[j] = crshim_tests_[j - 1];
            rank[j] = rank[j - 1];
            j--;
        }
        crshim_tests_[j] = t;
        rank[j] = r;
    }
    free(rank);
}

static CRSHIM_UNUSED void crshim_usage_(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--filter=SUITE/TEST] [--list] [--quiet]\n"
            "  (sequential TSan runner; --jobs N and --verbose are accepted and ignored)\n",
            argv0);
}

int main(int argc, char **argv)
{
    const char *filter = NULL;
    bool list = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--filter=", 9) == 0) {
            filter = a + 9;
        } else if (strcmp(a, "--filter") == 0 && i + 1 < argc) {
            filter = argv[++i];
        } else if (strcmp(a, "--list") == 0 || strcmp(a, "-l") == 0) {
            list = true;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = true;
        } else if ((strcmp(a, "--jobs") == 0 || strcmp(a, "-j") == 0) && i + 1 < argc) {
            i++;
        } else if (strncmp(a, "--jobs=", 7) == 0 || strncmp(a, "-j", 2) == 0 ||
                   strncmp(a, "--verbose", 9) == 0 || strcmp(a, "--tap") == 0) {
            /* accepted, meaningless here */
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            crshim_usage_(argv[0]);
            return 0;
        } else {
            fprintf(stderr, "[WARN] criterion shim: ignoring unknown option %s\n", a);
        }
    }

    crshim_runner_ = pthread_self();
    crshim_sort_tests_();

    unsigned tested = 0, passing = 0, failing = 0, skipped = 0;
    for (size_t i = 0; i < crshim_ntests_; i++) {
        const struct crshim_test *t = &crshim_tests_[i];
        if (filter) {
            char id[512];
            snprintf(id, sizeof id, "%s/%s", t->suite, t->name);
            if (fnmatch(filter, id, 0) != 0)
                continue;
        }
        if (list) {
            printf("%s::%s\n", t->suite, t->name);
            continue;
        }
        const struct crshim_opts *so = crshim_suite_opts_(t->suite);
        if (t->opts->disabled || (so && so->disabled)) {
            skipped++;
            if (!quiet)
                fprintf(stderr, "[SKIP] %s::%s: test is disabled\n", t->suite, t->name);
            continue;
        }
        if (!quiet)
            fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        atomic_store(&crshim_failures_, 0);
        double start = crshim_now_();
        /* Setup: suite then test; a failed assertion there skips the body.
         * Teardown always runs (it removes temp dirs and the like). */
        bool aborted = crshim_guarded_(so ? so->init : NULL);
        if (!aborted)
            aborted = crshim_guarded_(t->opts->init);
        if (!aborted)
            crshim_guarded_(t->fn);
        crshim_guarded_(t->opts->fini);
        crshim_guarded_(so ? so->fini : NULL);
        double secs = crshim_now_() - start;

        tested++;
        if (atomic_load(&crshim_failures_) == 0) {
            passing++;
            if (!quiet)
                fprintf(stderr, "[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, secs);
        } else {
            failing++;
            fprintf(stderr, "[FAIL] %s::%s: (%.2fs)\n", t->suite, t->name, secs);
        }
    }
    if (list)
        return 0;
    if (skipped)
        fprintf(stderr, "[----] %u disabled test(s) skipped\n", skipped);
    fprintf(stderr, "[====] Synthesis: Tested: %u | Passing: %u | Failing: %u | Crashing: 0\n",
            tested, passing, failing);
    free(crshim_tests_);
    free(crshim_suites_);
    return failing == 0 ? 0 : 1;
}

#endif /* CRSHIM_CRITERION_H */
