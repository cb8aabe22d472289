/*
 * xalloc.h - allocation that aborts on out-of-memory.
 *
 * Use for sizes we chose ourselves. Sizes that come from a peer or a file
 * must be checked against a limit before they reach these functions;
 * lr_xmallocarray/lr_xreallocarray also abort on multiplication overflow.
 * The caller frees every returned pointer with free().
 */
#ifndef LR_UTIL_XALLOC_H
#define LR_UTIL_XALLOC_H

#include <stddef.h>

void *lr_xmalloc(size_t n);
void *lr_xcalloc(size_t nmemb, size_t size);
void *lr_xrealloc(void *p, size_t n);
void *lr_xmallocarray(size_t nmemb, size_t size);
void *lr_xreallocarray(void *p, size_t nmemb, size_t size);
/* Room for element n of an append-only array that holds n elements: grows
 * geometrically (capacity is the power of two at or above n, at least 4),
 * so appending N elements costs O(N) copies, not O(N^2) as growing by one
 * does. Valid only for arrays that start as NULL with n = 0 and are never
 * shrunk or grown any other way. */
void *lr_xappendarray(void *p, size_t n, size_t size);
char *lr_xstrdup(const char *s);
char *lr_xstrndup(const char *s, size_t n);
void *lr_xmemdup(const void *p, size_t n);
/* Allocate and format; aborts on OOM. */
char *lr_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
