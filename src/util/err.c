#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Copy src[0..len) into dst[cap] keeping its start and its end, "..." in
 * between, cut on UTF-8 character boundaries: a message names its value
 * first and its reason last, and a long path must not push the reason out. */
static void elide(char *dst, size_t cap, const char *src, size_t len)
{
    size_t head = (cap - 4) / 2, tail_at = len - (cap - 4 - head);
    while (head > 0 && ((unsigned char)src[head] & 0xC0) == 0x80)
        head--;
    while (tail_at < len && ((unsigned char)src[tail_at] & 0xC0) == 0x80)
        tail_at++;
    memcpy(dst, src, head);
    memcpy(dst + head, "...", 3);
    memcpy(dst + head + 3, src + tail_at, len - tail_at);
    dst[head + 3 + (len - tail_at)] = '\0';
}

int lr_err_set(struct lr_err *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    /* Formatted apart first: an argument may be err->msg itself. A long one
     * (a 32 KiB peer path) is formatted again whole, so its end survives. */
    char small[2 * LR_ERR_MSG_MAX] = "", *full = small;
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(small) && (full = malloc((size_t)n + 1)) != NULL)
        vsnprintf(full, (size_t)n + 1, fmt, again);
    va_end(again);
    if (!full) { /* out of memory: the start is better than nothing */
        full = small;
        n = (int)sizeof(small) - 1;
    }
    size_t len = n < 0 ? 0 : (size_t)n;
    err->code = code;
    if (len < sizeof(err->msg))
        memcpy(err->msg, full, len + 1);
    else
        elide(err->msg, sizeof(err->msg), full, len);
    if (full != small)
        free(full);
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
