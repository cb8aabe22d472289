#include "util/xalloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "landropic: out of memory allocating %zu bytes\n", n);
    abort();
}

void *lr_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *lr_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        oom(nmemb * size);
    return p;
}

void *lr_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

static size_t mul_or_die(size_t a, size_t b)
{
    if (b && a > SIZE_MAX / b) {
        fprintf(stderr, "landropic: allocation size overflow (%zu x %zu)\n", a, b);
        abort();
    }
    return a * b;
}

void *lr_xmallocarray(size_t nmemb, size_t size)
{
    return lr_xmalloc(mul_or_die(nmemb, size));
}

void *lr_xreallocarray(void *p, size_t nmemb, size_t size)
{
    return lr_xrealloc(p, mul_or_die(nmemb, size));
}

void *lr_xappendarray(void *p, size_t n, size_t size)
{
    if (n == 0)
        return lr_xreallocarray(p, 4, size);
    if (n < 4 || (n & (n - 1)) != 0)
        return p;
    return lr_xreallocarray(p, mul_or_die(n, 2), size);
}

char *lr_xstrdup(const char *s)
{
    return lr_xmemdup(s, strlen(s) + 1);
}

char *lr_xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = lr_xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void *lr_xmemdup(const void *p, size_t n)
{
    void *q = lr_xmalloc(n);
    if (n)
        memcpy(q, p, n);
    return q;
}

char *lr_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    char *s = lr_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}
