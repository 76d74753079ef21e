#include "util/err.h"

#include <errno.h>

const char *lkv_strerror(int code)
{
    switch (code) {
    case LKV_OK:
        return "ok";
#define LKV_ERR_CASE(name, value, msg)                                       \
    case name:                                                               \
        return msg;
        LKV_ERR_TABLE(LKV_ERR_CASE)
#undef LKV_ERR_CASE
    default:
        return "unknown error";
    }
}

int lkv_from_errno(int errnum)
{
    switch (errnum) {
    case ENOSPC:
    case EDQUOT:
        return LKV_ENOSPC;
    case ENOMEM:
        return LKV_ENOMEM;
    default:
        return LKV_EIO;
    }
}
