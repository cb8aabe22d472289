#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *lr_strerror(int code)
{
    switch (code) {
#define LR__ERR_MSG(name, off, msg)                                                                \
    case name:                                                                                     \
        return msg;
        LR_ERRORS(LR__ERR_MSG)
#undef LR__ERR_MSG
    default:
        break;
    }
    if (code < 0 && code > -4096)
        return strerror(-code);
    if (code == 0)
        return "success";
    return "unknown error";
}

const char *lr_errname(int code)
{
    switch (code) {
#define LR__ERR_NAME(name, off, msg)                                                               \
    case name:                                                                                     \
        return #name;
        LR_ERRORS(LR__ERR_NAME)
#undef LR__ERR_NAME
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        const char *n = strerrorname_np(-code);
        return n ? n : "ERRNO";
    }
    return code == 0 ? "OK" : "UNKNOWN";
}

int lr_err_set(struct lr_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

void lr_err_clear(struct lr_err *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

const char *lr_err_msg(const struct lr_err *err, int code)
{
    if (err && err->msg[0])
        return err->msg;
    return lr_strerror(code);
}
