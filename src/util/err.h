/*
 * err.h - landropic error codes and the error message channel.
 *
 * Contract:
 *  - Every fallible function returns 0 (or a non-negative count) on success
 *    and a negative code on failure. Codes derived from errno are -errno;
 *    project codes live in their own band below LR_E__BASE, so the two never
 *    collide.
 *  - A function that can say *what* failed takes an optional
 *    `struct lr_err *` (may be NULL) and fills it at the point of failure,
 *    naming the culprit (file, peer, value). lr_err_set() returns the code so
 *    call sites read `return lr_err_set(err, LR_EBADID, "...", ...);`.
 *  - lr_strerror()/lr_errname() are generated from one X-macro table and
 *    never return NULL.
 *  - Codes at or below LR_E__FATAL_PEER mean "drop the peer" when they come
 *    out of a decoder (see proto/).
 */
#ifndef LR_UTIL_ERR_H
#define LR_UTIL_ERR_H

#include <stddef.h>

#define LR_E__BASE (-10000)

/* X(name, offset, message) */
#define LR_ERRORS(X)                                                                               \
    X(LR_EINTERNAL, 0, "internal error")                                                           \
    X(LR_EUSAGE, 1, "usage error")                                                                 \
    X(LR_ENOTFOUND, 2, "not found")                                                                \
    X(LR_EEXISTS, 3, "already exists")                                                             \
    X(LR_EBADID, 4, "invalid device ID")                                                           \
    X(LR_ECONFIG, 5, "invalid configuration")                                                      \
    X(LR_EDB, 6, "database error")                                                                 \
    X(LR_ETLS, 7, "TLS error")                                                                     \
    X(LR_ECHANGED, 8, "changed on disk meanwhile")                                                 \
    X(LR_ENOMARKER, 9, "folder marker missing")                                                    \
    X(LR_EBADPATH, 10, "invalid path")                                                             \
    X(LR_ENODAEMON, 11, "daemon not running")                                                      \
    X(LR_ETIMEOUT, 12, "timed out")                                                                \
    X(LR_ENOTINIT, 13, "home not initialised")                                                     \
    X(LR_EBUSY, 14, "in use")                                                                      \
    X(LR_EPATTERN, 15, "invalid ignore pattern")                                                   \
    X(LR_EUNSUPPORTED, 16, "unsupported")                                                          \
    X(LR_ECANCELED, 17, "canceled")                                                                \
    X(LR_EAPI, 18, "control API error")                                                            \
    X(LR_EVERIFY, 19, "verification failed")                                                       \
    X(LR_ECLASH, 20, "name clashes with one differing only by case or normalisation")              \
    X(LR_ETRUNC, 100, "truncated input")                                                           \
    X(LR_EPROTO, 101, "protocol violation")                                                        \
    X(LR_ETOOBIG, 102, "size over limit")                                                          \
    X(LR_EBADVAL, 103, "invalid field value")

enum lr_errcode {
#define LR__ERR_ENUM(name, off, msg) name = LR_E__BASE - (off),
    LR_ERRORS(LR__ERR_ENUM)
#undef LR__ERR_ENUM
};

/* Decoder errors at or below this mean the peer is broken or hostile. */
#define LR_E__FATAL_PEER (LR_E__BASE - 100)

#define LR_ERR_MSG_MAX 256

struct lr_err {
    int code;
    char msg[LR_ERR_MSG_MAX];
};

/* Message for any code: project codes from the table, -errno via strerror. */
const char *lr_strerror(int code);
/* Symbolic name ("LR_EBADID", "ENOENT", ...). */
const char *lr_errname(int code);

/*
 * Record `code` and a formatted message in `err` (which may be NULL) and
 * return `code`. The message should name the culprit.
 */
int lr_err_set(struct lr_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reset to "no error". */
void lr_err_clear(struct lr_err *err);

/* The message if one was set, else lr_strerror(code). Never NULL. */
const char *lr_err_msg(const struct lr_err *err, int code);

#endif
