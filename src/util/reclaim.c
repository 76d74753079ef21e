#include "util/reclaim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_MAX 64
#define STEP_BYTES (8 << 20)  /* freed per transaction */
#define STEP_PAUSE_NS 2000000 /* between steps: lets commits go by */

/* `life` orders starts and stops, so a start never creates a thread while
 * the last stop is still joining the old one; it is never taken by the
 * reclaim thread. The rest is under `mu`. */
static pthread_mutex_t life = PTHREAD_MUTEX_INITIALIZER;
static unsigned users; /* under life */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running;
    bool stopping;
    int fds[QUEUE_MAX];
    int n;
} rq = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* Shrinks the unlinked file behind fd to nothing, step by step, then
 * closes it. `hurry` skips the pauses. */
static void shrink_and_close(int fd, bool hurry)
{
    struct stat st;
    if (fstat(fd, &st) == 0) {
        off_t size = st.st_size;
        while (size > STEP_BYTES) {
            size -= STEP_BYTES;
            if (ftruncate(fd, size) != 0)
                break;
            if (!hurry) {
                struct timespec ts = {0, STEP_PAUSE_NS};
                nanosleep(&ts, NULL);
            }
        }
    }
    close(fd);
}

static void *reclaim_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&rq.mu);
    for (;;) {
        while (rq.n == 0 && !rq.stopping)
            pthread_cond_wait(&rq.cv, &rq.mu);
        if (rq.n == 0)
            break;
        int fd = rq.fds[0];
        for (int i = 1; i < rq.n; i++)
            rq.fds[i - 1] = rq.fds[i];
        rq.n--;
        bool hurry = rq.stopping;
        pthread_mutex_unlock(&rq.mu);
        shrink_and_close(fd, hurry);
        pthread_mutex_lock(&rq.mu);
    }
    pthread_mutex_unlock(&rq.mu);
    return NULL;
}

int reclaim_start(void)
{
    pthread_mutex_lock(&life);
    int rc = 0;
    if (users == 0) {
        pthread_mutex_lock(&rq.mu);
        rq.stopping = false;
        rc = pthread_create(&rq.thread, NULL, reclaim_main, NULL) == 0 ? 0 : -1;
        rq.running = rc == 0;
        pthread_mutex_unlock(&rq.mu);
    }
    if (rc == 0)
        users++;
    pthread_mutex_unlock(&life);
    return rc;
}

void reclaim_stop(void)
{
    pthread_mutex_lock(&life);
    if (users == 0 || --users > 0) {
        pthread_mutex_unlock(&life);
        return;
    }
    pthread_mutex_lock(&rq.mu);
    rq.stopping = true;
    pthread_cond_signal(&rq.cv);
    pthread_mutex_unlock(&rq.mu);
    pthread_join(rq.thread, NULL);
    pthread_mutex_lock(&rq.mu);
    rq.running = false;
    pthread_mutex_unlock(&rq.mu);
    pthread_mutex_unlock(&life);
}

int reclaim_unlink(const struct io_ops *io, const char *path)
{
    io = io ? io : &io_libc;
    /* The descriptor keeps the blocks alive past the unlink. If it cannot
     * be opened, the unlink alone still does the job, only synchronously. */
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (io->unlink(path) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        errno = e;
        return -1;
    }
    if (fd < 0)
        return 0;
    pthread_mutex_lock(&rq.mu);
    bool queued = rq.running && !rq.stopping && rq.n < QUEUE_MAX;
    if (queued) {
        rq.fds[rq.n++] = fd;
        pthread_cond_signal(&rq.cv);
    }
    pthread_mutex_unlock(&rq.mu);
    if (!queued)
        close(fd);
    return 0;
}
