/* log: one-line key=value event logging to stderr, filtered by level. */
#ifndef LKV_UTIL_LOG_H
#define LKV_UTIL_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN = 1, LOG_LVL_INFO = 2, LOG_LVL_DEBUG = 3 };

/* Current threshold; set once at start-up by log_set_level(). */
extern int log_threshold;

/* Sets the threshold. Returns 0, or LKV_EINVAL for a name other than
 * error|warn|info|debug. */
int log_set_level(const char *name);

/* Writes one line: timestamp, level, then the formatted text. The line is
 * written with a single write(2), so lines from threads never interleave.
 * Text longer than 4 KiB is truncated. */
void log_emit(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The level check happens before any argument is formatted. */
#define LOG(level, ...)                                                      \
    do {                                                                     \
        if ((level) <= log_threshold)                                        \
            log_emit((level), __VA_ARGS__);                                  \
    } while (0)
#define LOG_ERROR(...) LOG(LOG_LVL_ERROR, __VA_ARGS__)
#define LOG_WARN(...) LOG(LOG_LVL_WARN, __VA_ARGS__)
#define LOG_INFO(...) LOG(LOG_LVL_INFO, __VA_ARGS__)
#define LOG_DEBUG(...) LOG(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
