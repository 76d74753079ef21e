/* clock: monotonic time, and absolute deadlines for condition-variable waits. */
#ifndef LKV_UTIL_CLOCK_H
#define LKV_UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The CLOCK_REALTIME moment `ns` nanoseconds from now (ns < 1 s), as
 * pthread_cond_timedwait wants it. */
static inline struct timespec clock_realtime_after(long ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += ns;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* A source of monotonic time, so that code driven by time can be given a
 * fake clock in tests. */
struct clock_src {
    uint64_t (*now_ns)(void *ctx);
    void *ctx;
};

#endif
