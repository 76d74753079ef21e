/* err: the project's error codes, one table that also yields each message. */
#ifndef LKV_UTIL_ERR_H
#define LKV_UTIL_ERR_H

/* Every fallible function returns 0 or one of these (always negative). */
#define LKV_ERR_TABLE(X)                                                     \
    X(LKV_ENOMEM, -1, "out of memory")                                       \
    X(LKV_EIO, -2, "i/o error")                                              \
    X(LKV_ENOSPC, -3, "insufficient storage")                                \
    X(LKV_ECORRUPT, -4, "corrupt data")                                      \
    X(LKV_EINVAL, -5, "invalid argument")                                    \
    X(LKV_ESHUTDOWN, -6, "shutting down")                                    \
    X(LKV_ENOTFOUND, -7, "not found")                                        \
    X(LKV_ELOCKED, -8, "data directory is locked by another process")        \
    X(LKV_EFORMAT, -9, "unsupported on-disk format version")                 \
    X(LKV_EMEMLIMIT, -10, "memory limit reached")                            \
    X(LKV_EFATAL, -11, "storage failed; server is stopping")                 \
    X(LKV_ERESTART, -12, "the map was cleared during the walk")              \
    X(LKV_ENOTLEADER, -13, "not the leader")                                 \
    X(LKV_EBUSY, -14, "membership change in progress")                       \
    X(LKV_ECOMPACTED, -15, "log entry compacted into a snapshot")            \
    X(LKV_EUNAVAILABLE, -16, "log entry not available yet")                  \
    X(LKV_ETRANSFER, -17, "leadership transfer in progress")                 \
    X(LKV_ELEADERLOST, -18, "leadership lost")                               \
    X(LKV_EPERM, -19, "not a member of this cluster")                        \
    X(LKV_ETIMEDOUT, -20, "timed out")

enum lkv_err {
#define LKV_ERR_ENUM(name, value, msg) name = (value),
    LKV_OK = 0,
    LKV_ERR_TABLE(LKV_ERR_ENUM)
#undef LKV_ERR_ENUM
};

/* Returns a static message for `code` (0 or an LKV_E* value); never NULL. */
const char *lkv_strerror(int code);

/* Maps an errno value to the closest LKV_E* code (ENOSPC/EDQUOT -> LKV_ENOSPC,
 * ENOMEM -> LKV_ENOMEM, everything else -> LKV_EIO). */
int lkv_from_errno(int errnum);

#endif
