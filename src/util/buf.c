#include "util/buf.h"

#include "util/err.h"
#include "util/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lr_buf_init(struct lr_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
    b->failed = false;
}

void lr_buf_release(struct lr_buf *b)
{
    free(b->data);
    lr_buf_init(b, b->max);
}

void lr_buf_reset(struct lr_buf *b)
{
    b->len = 0;
    b->failed = false;
}

uint8_t *lr_buf_detach(struct lr_buf *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len)
        *len = b->len;
    lr_buf_init(b, b->max);
    return p;
}

uint8_t *lr_buf_reserve(struct lr_buf *b, size_t n)
{
    if (b->failed || n > b->max - b->len) {
        b->failed = true;
        return NULL;
    }
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 64;
        while (ncap < b->len + n)
            ncap = ncap > SIZE_MAX / 2 ? b->len + n : ncap * 2;
        if (ncap > b->max)
            ncap = b->max;
        b->data = lr_xrealloc(b->data, ncap);
        b->cap = ncap;
    }
    return b->data + b->len;
}

int lr_buf_put(struct lr_buf *b, const void *p, size_t n)
{
    uint8_t *dst = lr_buf_reserve(b, n);
    if (!dst && (n || b->failed)) /* reserve(0) on an unallocated buffer gives NULL */
        return LR_ETOOBIG;
    if (n)
        memcpy(dst, p, n);
    b->len += n;
    return 0;
}

int lr_buf_put_u8(struct lr_buf *b, uint8_t v)
{
    return lr_buf_put(b, &v, 1);
}

int lr_buf_put_u16(struct lr_buf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return lr_buf_put(b, x, 2);
}

int lr_buf_put_u32(struct lr_buf *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return lr_buf_put(b, x, 4);
}

int lr_buf_put_u64(struct lr_buf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 7; i >= 0; i--) {
        x[i] = (uint8_t)v;
        v >>= 8;
    }
    return lr_buf_put(b, x, 8);
}

size_t lr_varint_len(uint64_t v)
{
    if (v < 64)
        return 1;
    if (v < 16384)
        return 2;
    if (v < 1073741824)
        return 4;
    return 8;
}

int lr_buf_put_varint(struct lr_buf *b, uint64_t v)
{
    if (v > LR_VARINT_MAX) {
        b->failed = true;
        return LR_EBADVAL;
    }
    switch (lr_varint_len(v)) {
    case 1:
        return lr_buf_put_u8(b, (uint8_t)v);
    case 2:
        return lr_buf_put_u16(b, (uint16_t)(v | 0x4000u));
    case 4:
        return lr_buf_put_u32(b, (uint32_t)(v | 0x80000000u));
    default:
        return lr_buf_put_u64(b, v | UINT64_C(0xc000000000000000));
    }
}

int lr_buf_put_lbytes(struct lr_buf *b, const void *p, size_t n)
{
    int rc = lr_buf_put_varint(b, n);
    if (rc < 0)
        return rc;
    return lr_buf_put(b, p, n);
}

int lr_buf_put_str(struct lr_buf *b, const char *s)
{
    return lr_buf_put(b, s, strlen(s));
}

int lr_buf_printf(struct lr_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return LR_EINTERNAL;
    }
    uint8_t *dst = lr_buf_reserve(b, (size_t)n + 1);
    if (!dst)
        return LR_ETOOBIG;
    va_start(ap, fmt);
    vsnprintf((char *)dst, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}
