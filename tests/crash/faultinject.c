/* faultinject: LD_PRELOAD shim that makes file-system calls fail on demand, for the crash tests.
 *
 * Environment:
 *   LKV_FAULT_CTL  path of the control file, read again on every intercepted
 *                  call; while it is missing or empty nothing fails.
 *   LKV_FAULT_DIR  only descriptors naming this directory or a file under it
 *                  are affected (checked with readlink of /proc/self/fd/N),
 *                  so stdio and sockets never see a fault.
 *
 * Control file: one fault per line,
 *
 *   <call> <ERRNO> [short] [match=<substring>]
 *
 *   call      fdatasync, fsync, pwritev, pwrite, pread, fallocate or ftruncate
 *   ERRNO     EIO, ENOSPC, EDQUOT, EROFS or EFBIG
 *   short     pwritev/pwrite only: write half the bytes and report that
 *             count; the next matching call then fails with ERRNO
 *   match=S   only files whose path contains S
 *
 * Each injected fault is reported on stderr as one key=value line
 * ("faultinject call=... error=... file=..."), so a test can tell that the
 * fault really fired. The hot path allocates nothing: the control file and
 * the descriptor's path are read into stack buffers.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define CTL_MAX 4096
#define PATH_MAX_LEN 4096
#define SHORT_IOV_MAX 1024

struct fault {
    int err;     /* errno to fail with, 0 = no fault for this call */
    int is_short;
};

static const struct {
    const char *name;
    int value;
} errno_names[] = {
    {"EIO", EIO}, {"ENOSPC", ENOSPC}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS}, {"EFBIG", EFBIG},
};

/* Set by a short write; the next matching call of that kind fails. */
static atomic_int short_pending_pwritev;
static atomic_int short_pending_pwrite;

static void *next_fn(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);
    if (!fn) {
        static const char msg[] = "faultinject: dlsym failed\n";
        ssize_t ignored = write(2, msg, sizeof msg - 1);
        (void)ignored;
        abort();
    }
    return fn;
}

/* Reads the path of fd into out; returns 0 if it lies in LKV_FAULT_DIR. */
static int fd_in_fault_dir(int fd, char *out, size_t outlen)
{
    const char *dir = getenv("LKV_FAULT_DIR");
    if (!dir || !dir[0])
        return -1;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, outlen - 1);
    if (n <= 0)
        return -1;
    out[n] = '\0';
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    if (strncmp(out, dir, dl) != 0)
        return -1;
    return out[dl] == '\0' || out[dl] == '/' || out[dl] == ' ' ? 0 : -1;
}

static int parse_errno(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++) {
        if (strlen(errno_names[i].name) == len && strncmp(errno_names[i].name, s, len) == 0)
            return errno_names[i].value;
    }
    return 0;
}

/* Looks up the first control-file line for `call` that applies to `path`. */
static struct fault lookup(const char *call, const char *path)
{
    struct fault f = {0, 0};
    const char *ctl = getenv("LKV_FAULT_CTL");
    if (!ctl || !ctl[0])
        return f;
    int saved = errno;
    int fd = open(ctl, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errno = saved;
        return f;
    }
    char buf[CTL_MAX];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    errno = saved;
    if (n <= 0)
        return f;
    buf[n] = '\0';
    for (char *line = buf; line && *line;) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = '\0';
        char *tok[4] = {0};
        int ntok = 0;
        for (char *p = line; *p && ntok < 4;) {
            while (*p == ' ' || *p == '\t' || *p == '\r')
                *p++ = '\0';
            if (!*p)
                break;
            tok[ntok++] = p;
            while (*p && *p != ' ' && *p != '\t' && *p != '\r')
                p++;
        }
        if (ntok >= 2 && strcmp(tok[0], call) == 0) {
            struct fault cand = {parse_errno(tok[1], strlen(tok[1])), 0};
            int applies = cand.err != 0;
            for (int i = 2; i < ntok; i++) {
                if (strcmp(tok[i], "short") == 0)
                    cand.is_short = 1;
                else if (strncmp(tok[i], "match=", 6) == 0)
                    applies = applies && strstr(path, tok[i] + 6) != NULL;
            }
            if (applies)
                return cand;
        }
        line = eol ? eol + 1 : NULL;
    }
    return f;
}

static void report(const char *call, int err, const char *how, const char *path)
{
    char line[PATH_MAX_LEN + 128];
    const char *name = "?";
    for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++) {
        if (errno_names[i].value == err)
            name = errno_names[i].name;
    }
    int n = snprintf(line, sizeof line, "faultinject call=%s error=%s mode=%s pid=%ld file=%s\n",
                     call, name, how, (long)getpid(), path);
    if (n > 0) {
        size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
        ssize_t ignored = write(2, line, len);
        (void)ignored;
    }
}

/* Returns the errno to fail `call` on fd with, or 0; *f receives the fault. */
static int check(const char *call, int fd, struct fault *f, char *path, size_t pathlen)
{
    f->err = 0;
    f->is_short = 0;
    if (fd_in_fault_dir(fd, path, pathlen) != 0)
        return 0;
    *f = lookup(call, path);
    return f->err;
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))next_fn("fdatasync");
    char path[PATH_MAX_LEN];
    struct fault f;
    if (check("fdatasync", fd, &f, path, sizeof path)) {
        report("fdatasync", f.err, "fail", path);
        errno = f.err;
        return -1;
    }
    return real(fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int))next_fn("fsync");
    char path[PATH_MAX_LEN];
    struct fault f;
    if (check("fsync", fd, &f, path, sizeof path)) {
        report("fsync", f.err, "fail", path);
        errno = f.err;
        return -1;
    }
    return real(fd);
}

static ssize_t pread_impl(const char *name, int fd, void *buf, size_t n, off_t off)
{
    static ssize_t (*real)(int, void *, size_t, off_t);
    if (!real)
        real = (ssize_t(*)(int, void *, size_t, off_t))next_fn("pread");
    char path[PATH_MAX_LEN];
    struct fault f;
    if (check("pread", fd, &f, path, sizeof path)) {
        report(name, f.err, "fail", path);
        errno = f.err;
        return -1;
    }
    return real(fd, buf, n, off);
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    return pread_impl("pread", fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
    return pread_impl("pread", fd, buf, n, off);
}

int ftruncate(int fd, off_t len)
{
    static int (*real)(int, off_t);
    if (!real)
        real = (int (*)(int, off_t))next_fn("ftruncate");
    char path[PATH_MAX_LEN];
    struct fault f;
    if (check("ftruncate", fd, &f, path, sizeof path)) {
        report("ftruncate", f.err, "fail", path);
        errno = f.err;
        return -1;
    }
    return real(fd, len);
}

static int fallocate_impl(const char *sym, int fd, int mode, off_t off, off_t len)
{
    static int (*real)(int, int, off_t, off_t);
    if (!real)
        real = (int (*)(int, int, off_t, off_t))next_fn(sym);
    char path[PATH_MAX_LEN];
    struct fault f;
    if (check("fallocate", fd, &f, path, sizeof path)) {
        report("fallocate", f.err, "fail", path);
        errno = f.err;
        return -1;
    }
    return real(fd, mode, off, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    return fallocate_impl("fallocate", fd, mode, off, len);
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
    return fallocate_impl("fallocate64", fd, mode, off, len);
}

static ssize_t pwritev_impl(const char *sym, int fd, const struct iovec *iov, int iovcnt,
                            off_t off)
{
    static ssize_t (*real)(int, const struct iovec *, int, off_t);
    if (!real)
        real = (ssize_t(*)(int, const struct iovec *, int, off_t))next_fn(sym);
    char path[PATH_MAX_LEN];
    struct fault f;
    if (!check("pwritev", fd, &f, path, sizeof path))
        return real(fd, iov, iovcnt, off);
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (!f.is_short || atomic_exchange(&short_pending_pwritev, 0) || total < 2 ||
        iovcnt > SHORT_IOV_MAX) {
        report("pwritev", f.err, "fail", path);
        errno = f.err;
        return -1;
    }
    /* Write the first half of the bytes, as a disk filling up mid-write does. */
    struct iovec part[SHORT_IOV_MAX];
    size_t want = total / 2, have = 0;
    int k = 0;
    for (int i = 0; i < iovcnt && have < want; i++) {
        part[k] = iov[i];
        if (have + part[k].iov_len > want)
            part[k].iov_len = want - have;
        have += part[k].iov_len;
        k++;
    }
    ssize_t w = real(fd, part, k, off);
    if (w > 0) {
        atomic_store(&short_pending_pwritev, 1);
        report("pwritev", f.err, "short", path);
    }
    return w;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    return pwritev_impl("pwritev", fd, iov, iovcnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    return pwritev_impl("pwritev64", fd, iov, iovcnt, off);
}

static ssize_t pwrite_impl(const char *sym, int fd, const void *buf, size_t n, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real)
        real = (ssize_t(*)(int, const void *, size_t, off_t))next_fn(sym);
    char path[PATH_MAX_LEN];
    struct fault f;
    if (!check("pwrite", fd, &f, path, sizeof path))
        return real(fd, buf, n, off);
    if (!f.is_short || atomic_exchange(&short_pending_pwrite, 0) || n < 2) {
        report("pwrite", f.err, "fail", path);
        errno = f.err;
        return -1;
    }
    ssize_t w = real(fd, buf, n / 2, off);
    if (w > 0) {
        atomic_store(&short_pending_pwrite, 1);
        report("pwrite", f.err, "short", path);
    }
    return w;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return pwrite_impl("pwrite", fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    return pwrite_impl("pwrite64", fd, buf, n, off);
}
