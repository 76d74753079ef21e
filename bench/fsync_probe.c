/* fsync_probe: latency of "write one record, fdatasync" for each way of preparing a log file.
 *
 * Decides whether WAL segments should be preallocated. Every sample times one pwrite of
 * --record-bytes plus the fdatasync that makes it durable; file creation and preparation
 * are done and fsync'ed (file and directory) before the clock starts, so they are not
 * charged to any sample.
 *
 * Modes, one fresh temp file per run:
 *   append     pwrite at the end of a growing file
 *   fallocate  fallocate(fd, 0, 0, size) first (unwritten extents, i_size set), then overwrite
 *   keepsize   fallocate with FALLOC_FL_KEEP_SIZE first, then pwrite past EOF
 *   prezero    write() zeros over the whole file and fsync, then overwrite
 *   all        every mode above, interleaved in --rounds rounds with the order rotated each
 *              round, so that background noise lands on all of them alike
 *
 * Build: cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Werror
 *           -o build/bench/fsync_probe bench/fsync_probe.c
 * Usage: fsync_probe [--record-bytes N] [--count N] [--rounds N] [--mode M] [--json] [DIR]
 */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_APPEND, MODE_FALLOCATE, MODE_KEEPSIZE, MODE_PREZERO, MODE_COUNT };

#define MODE_ALL MODE_COUNT

static const char *const mode_names[MODE_COUNT] = {"append", "fallocate", "keepsize", "prezero"};

#define MAX_RECORD_BYTES ((size_t)64 << 20)
#define MAX_COUNT ((size_t)1000000)
#define MAX_ROUNDS ((size_t)1000)
#define ZERO_CHUNK ((size_t)1 << 20)

struct opts {
    const char *dir;
    size_t record_bytes;
    size_t count; /* records per mode, summed over all rounds */
    size_t rounds;
    int mode; /* an enum mode, or MODE_ALL */
    bool json;
};

struct samples {
    uint64_t *ns; /* capacity opts.count, owned by main */
    size_t n;
};

struct summary {
    size_t records;
    uint64_t p50, p90, p99, max; /* nanoseconds */
    double mean;                 /* nanoseconds */
};

/* The temp file that exists right now (name relative to dir_fd), so fail() can remove it. */
static const char *dir_name = ".";
static int dir_fd = -1;
static char tmp_name[96];
static unsigned tmp_seq;

static _Noreturn void fail(int err, const char *fmt, ...)
{
    va_list ap;
    fputs("fsync_probe: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (err != 0)
        fprintf(stderr, ": %s", strerror(err));
    fputc('\n', stderr);
    if (tmp_name[0] != '\0' && unlinkat(dir_fd, tmp_name, 0) != 0)
        fprintf(stderr, "fsync_probe: also failed to remove temp file %s/%s: %s\n", dir_name,
                tmp_name, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        fail(errno, "clock_gettime(CLOCK_MONOTONIC)");
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void pwrite_full(int fd, const unsigned char *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail(errno, "pwrite(%zu bytes at offset %lld) to %s", len, (long long)off, tmp_name);
        }
        if (n == 0)
            fail(0, "pwrite to %s wrote nothing", tmp_name);
        buf += n;
        len -= (size_t)n;
        off += n;
    }
}

static void write_full(int fd, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail(errno, "write(%zu zero bytes) to %s", len, tmp_name);
        }
        if (n == 0)
            fail(0, "write to %s wrote nothing", tmp_name);
        buf += n;
        len -= (size_t)n;
    }
}

static int create_temp(void)
{
    int n =
        snprintf(tmp_name, sizeof tmp_name, "fsync_probe.%ld.%u.tmp", (long)getpid(), tmp_seq++);
    if (n < 0 || (size_t)n >= sizeof tmp_name)
        fail(0, "temp file name too long");
    /* No O_APPEND: Linux pwrite ignores the offset on O_APPEND files. */
    int fd = openat(dir_fd, tmp_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        tmp_name[0] = '\0';
        fail(err, "create temp file in %s", dir_name);
    }
    return fd;
}

static void remove_temp(int fd)
{
    if (close(fd) != 0)
        fail(errno, "close %s", tmp_name);
    if (unlinkat(dir_fd, tmp_name, 0) != 0)
        fail(errno, "unlink %s", tmp_name);
    tmp_name[0] = '\0';
}

static void fill_zeros(int fd, size_t size)
{
    size_t chunk = size < ZERO_CHUNK ? size : ZERO_CHUNK;
    unsigned char *zeros = calloc(chunk > 0 ? chunk : 1, 1);
    if (zeros == NULL)
        fail(ENOMEM, "allocate %zu-byte zero buffer", chunk);
    for (size_t done = 0; done < size; done += chunk) {
        size_t len = size - done < chunk ? size - done : chunk;
        write_full(fd, zeros, len);
    }
    free(zeros);
}

/* Leaves the file ready for the timed loop, with everything so far durable. */
static void prepare(int fd, enum mode m, size_t size)
{
    int rc = 0;
    switch (m) {
    case MODE_APPEND:
        break;
    case MODE_FALLOCATE:
        rc = fallocate(fd, 0, 0, (off_t)size);
        break;
    case MODE_KEEPSIZE:
        rc = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size);
        break;
    case MODE_PREZERO:
        fill_zeros(fd, size);
        break;
    case MODE_COUNT:
        fail(0, "internal error: prepare(MODE_COUNT)");
    }
    if (rc != 0) {
        int err = errno;
        if (err == EOPNOTSUPP)
            fail(err, "fallocate (mode %s): this filesystem does not support it", mode_names[m]);
        fail(err, "fallocate(mode %s, %zu bytes) on %s", mode_names[m], size, tmp_name);
    }
    if (fsync(fd) != 0)
        fail(errno, "fsync %s after preparing it", tmp_name);
    /* The new directory entry would otherwise ride along with the first timed fdatasync. */
    if (fsync(dir_fd) != 0)
        fail(errno, "fsync directory %s", dir_name);
}

/* Times n records of rec_len bytes into a fresh file; writes n samples to out. */
static void run_once(enum mode m, size_t n, unsigned char *rec, size_t rec_len, uint64_t *out)
{
    int fd = create_temp();
    prepare(fd, m, n * rec_len);
    for (size_t i = 0; i < n; i++) {
        /* Distinct contents per record, as a real log would have. */
        memcpy(rec, &i, rec_len < sizeof i ? rec_len : sizeof i);
        off_t off = (off_t)(i * rec_len);
        uint64_t t0 = now_ns();
        pwrite_full(fd, rec, rec_len, off);
        if (fdatasync(fd) != 0)
            fail(errno, "fdatasync %s (mode %s, record %zu)", tmp_name, mode_names[m], i);
        out[i] = now_ns() - t0;
    }
    remove_temp(fd);
}

static void run_schedule(const struct opts *o, struct samples s[MODE_COUNT])
{
    unsigned char *rec = malloc(o->record_bytes);
    if (rec == NULL)
        fail(ENOMEM, "allocate %zu-byte record", o->record_bytes);
    memset(rec, 0xa5, o->record_bytes);

    size_t first = o->mode == MODE_ALL ? 0 : (size_t)o->mode;
    size_t nmodes = o->mode == MODE_ALL ? MODE_COUNT : 1;
    for (size_t r = 0; r < o->rounds; r++) {
        size_t n = o->count / o->rounds + (r < o->count % o->rounds ? 1 : 0);
        if (n == 0)
            continue;
        /* Rotate the order so no mode always runs first (or right after another's unlink). */
        for (size_t k = 0; k < nmodes; k++) {
            enum mode m = (enum mode)(first + (k + r) % nmodes);
            run_once(m, n, rec, o->record_bytes, s[m].ns + s[m].n);
            s[m].n += n;
        }
    }
    free(rec);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted v[0..n), n > 0. */
static uint64_t percentile(const uint64_t *v, size_t n, unsigned p)
{
    size_t rank = (n * p + 99) / 100;
    return v[rank > 0 ? rank - 1 : 0];
}

static struct summary summarize(struct samples *s)
{
    struct summary sum = {.records = s->n};
    qsort(s->ns, s->n, sizeof s->ns[0], cmp_u64);
    double total = 0;
    for (size_t i = 0; i < s->n; i++)
        total += (double)s->ns[i];
    sum.p50 = percentile(s->ns, s->n, 50);
    sum.p90 = percentile(s->ns, s->n, 90);
    sum.p99 = percentile(s->ns, s->n, 99);
    sum.max = s->ns[s->n - 1];
    sum.mean = total / (double)s->n;
    return sum;
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static double p50_ratio(const struct summary *sum, enum mode m)
{
    uint64_t base = sum[MODE_APPEND].p50 > 0 ? sum[MODE_APPEND].p50 : 1;
    return (double)sum[m].p50 / (double)base;
}

static enum mode fastest_p50(const struct summary *sum)
{
    enum mode best = MODE_APPEND;
    for (int m = 1; m < MODE_COUNT; m++)
        if (sum[m].p50 < sum[best].p50)
            best = (enum mode)m;
    return best;
}

static void print_text(const struct opts *o, const struct summary *sum)
{
    for (int m = 0; m < MODE_COUNT; m++) {
        if (sum[m].records == 0)
            continue;
        printf("mode=%s records=%zu p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f "
               "mean_us=%.1f\n",
               mode_names[m], sum[m].records, us(sum[m].p50), us(sum[m].p90), us(sum[m].p99),
               us(sum[m].max), sum[m].mean / 1000.0);
    }
    if (o->mode != MODE_ALL)
        return;
    printf("fastest=%s", mode_names[fastest_p50(sum)]);
    for (int m = 0; m < MODE_COUNT; m++)
        printf(" p50_ratio_%s=%.3f", mode_names[m], p50_ratio(sum, (enum mode)m));
    putchar('\n');
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_json(const struct opts *o, const struct summary *sum)
{
    printf("{\"dir\":");
    print_json_string(o->dir);
    printf(",\"record_bytes\":%zu,\"count\":%zu,\"rounds\":%zu,\"mode\":\"%s\",\"modes\":{",
           o->record_bytes, o->count, o->rounds, o->mode == MODE_ALL ? "all" : mode_names[o->mode]);
    const char *sep = "";
    for (int m = 0; m < MODE_COUNT; m++) {
        if (sum[m].records == 0)
            continue;
        printf("%s\"%s\":{\"records\":%zu,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
               "\"max_us\":%.1f,\"mean_us\":%.1f}",
               sep, mode_names[m], sum[m].records, us(sum[m].p50), us(sum[m].p90), us(sum[m].p99),
               us(sum[m].max), sum[m].mean / 1000.0);
        sep = ",";
    }
    putchar('}');
    if (o->mode == MODE_ALL) {
        printf(",\"fastest\":\"%s\",\"p50_ratio_to_append\":{", mode_names[fastest_p50(sum)]);
        for (int m = 0; m < MODE_COUNT; m++)
            printf("%s\"%s\":%.3f", m > 0 ? "," : "", mode_names[m], p50_ratio(sum, (enum mode)m));
        putchar('}');
    }
    printf("}\n");
}

static _Noreturn void usage(int status)
{
    if (status != 0) {
        fputs("fsync_probe: try --help\n", stderr);
        exit(status);
    }
    printf("usage: fsync_probe [--record-bytes N] [--count N] [--rounds N]\n"
           "                   [--mode append|fallocate|keepsize|prezero|all] [--json] [DIR]\n"
           "  DIR             where temp files are created and removed (default: .)\n"
           "  --record-bytes  bytes per record (default 128)\n"
           "  --count         timed records per mode (default 2000)\n"
           "  --rounds        split each mode's records over this many files; with --mode all\n"
           "                  the modes take turns each round (default 5)\n"
           "  --json          print one JSON object instead of key=value lines\n");
    exit(status);
}

static size_t parse_size(const char *flag, const char *s, size_t min, size_t max)
{
    if (s == NULL) {
        fprintf(stderr, "fsync_probe: %s needs a value\n", flag);
        usage(2);
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "fsync_probe: %s must be an integer in [%zu, %zu], got '%s'\n", flag, min,
                max, s);
        usage(2);
    }
    return (size_t)v;
}

static int parse_mode(const char *s)
{
    if (s != NULL && strcmp(s, "all") == 0)
        return MODE_ALL;
    for (int m = 0; s != NULL && m < MODE_COUNT; m++)
        if (strcmp(s, mode_names[m]) == 0)
            return m;
    fprintf(stderr, "fsync_probe: --mode must be append, fallocate, keepsize, prezero or all\n");
    usage(2);
}

static struct opts parse_args(int argc, char **argv)
{
    struct opts o = {.dir = ".",
                     .record_bytes = 128,
                     .count = 2000,
                     .rounds = 5,
                     .mode = MODE_ALL,
                     .json = false};
    bool have_dir = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--record-bytes") == 0) {
            o.record_bytes = parse_size(a, next, 1, MAX_RECORD_BYTES);
            i++;
        } else if (strcmp(a, "--count") == 0) {
            o.count = parse_size(a, next, 1, MAX_COUNT);
            i++;
        } else if (strcmp(a, "--rounds") == 0) {
            o.rounds = parse_size(a, next, 1, MAX_ROUNDS);
            i++;
        } else if (strcmp(a, "--mode") == 0) {
            o.mode = parse_mode(next);
            i++;
        } else if (strcmp(a, "--json") == 0) {
            o.json = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(0);
        } else if (a[0] == '-' || have_dir) {
            fprintf(stderr, "fsync_probe: unexpected argument '%s'\n", a);
            usage(2);
        } else {
            o.dir = a;
            have_dir = true;
        }
    }
    return o;
}

int main(int argc, char **argv)
{
    struct opts o = parse_args(argc, argv);

    dir_name = o.dir;
    dir_fd = open(o.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0)
        fail(errno, "open directory %s", o.dir);

    struct samples s[MODE_COUNT] = {{0}};
    for (int m = 0; m < MODE_COUNT; m++) {
        s[m].ns = malloc(o.count * sizeof s[m].ns[0]);
        if (s[m].ns == NULL)
            fail(ENOMEM, "allocate %zu samples", o.count);
    }

    run_schedule(&o, s);

    struct summary sum[MODE_COUNT] = {{0}};
    for (int m = 0; m < MODE_COUNT; m++) {
        if (s[m].n > 0)
            sum[m] = summarize(&s[m]);
        free(s[m].ns);
    }
    if (o.json)
        print_json(&o, sum);
    else
        print_text(&o, sum);

    if (close(dir_fd) != 0)
        fail(errno, "close directory %s", o.dir);
    if (fflush(stdout) != 0 || ferror(stdout))
        fail(errno, "write results to stdout");
    return 0;
}
