#include "util/rd.h"

#include "util/err.h"

#include <string.h>

static int take(struct lr_rd *r, size_t n, const uint8_t **p)
{
    if (lr_rd_left(r) < n)
        return LR_ETRUNC;
    *p = r->pos;
    r->pos += n;
    return 0;
}

static int get_be(struct lr_rd *r, size_t n, uint64_t *v)
{
    const uint8_t *p;
    *v = 0;
    int rc = take(r, n, &p);
    if (rc < 0)
        return rc;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | p[i];
    *v = x;
    return 0;
}

int lr_rd_get_u8(struct lr_rd *r, uint8_t *v)
{
    uint64_t x;
    int rc = get_be(r, 1, &x);
    *v = (uint8_t)x;
    return rc;
}

int lr_rd_get_u16(struct lr_rd *r, uint16_t *v)
{
    uint64_t x;
    int rc = get_be(r, 2, &x);
    *v = (uint16_t)x;
    return rc;
}

int lr_rd_get_u32(struct lr_rd *r, uint32_t *v)
{
    uint64_t x;
    int rc = get_be(r, 4, &x);
    *v = (uint32_t)x;
    return rc;
}

int lr_rd_get_u64(struct lr_rd *r, uint64_t *v)
{
    return get_be(r, 8, v);
}

int lr_rd_get_varint(struct lr_rd *r, uint64_t *v)
{
    *v = 0;
    if (lr_rd_left(r) < 1)
        return LR_ETRUNC;
    size_t n = (size_t)1 << (r->pos[0] >> 6);
    struct lr_rd save = *r;
    uint64_t x;
    int rc = get_be(r, n, &x);
    if (rc < 0) {
        *r = save;
        return rc;
    }
    uint64_t mask = n == 8 ? UINT64_C(0x3fffffffffffffff) : ((UINT64_C(1) << (8 * n - 2)) - 1);
    *v = x & mask;
    return 0;
}

int lr_rd_get_bytes(struct lr_rd *r, void *out, size_t n)
{
    const uint8_t *p;
    int rc = take(r, n, &p);
    if (rc < 0) {
        if (n)
            memset(out, 0, n);
        return rc;
    }
    if (n)
        memcpy(out, p, n);
    return 0;
}

int lr_rd_get_view(struct lr_rd *r, const uint8_t **p, size_t n)
{
    *p = NULL;
    return take(r, n, p);
}

int lr_rd_get_lview(struct lr_rd *r, const uint8_t **p, size_t *n, size_t max)
{
    struct lr_rd save = *r;
    uint64_t len;
    *p = NULL;
    *n = 0;
    int rc = lr_rd_get_varint(r, &len);
    if (rc < 0)
        return rc;
    if (len > max) {
        *r = save;
        return LR_ETOOBIG;
    }
    rc = take(r, (size_t)len, p);
    if (rc < 0) {
        *r = save;
        *p = NULL;
        return rc;
    }
    *n = (size_t)len;
    return 0;
}

int lr_rd_get_sub(struct lr_rd *r, struct lr_rd *sub, size_t max)
{
    const uint8_t *p;
    size_t n;
    lr_rd_init(sub, NULL, 0);
    int rc = lr_rd_get_lview(r, &p, &n, max);
    if (rc < 0)
        return rc;
    lr_rd_init(sub, p, n);
    return 0;
}

int lr_rd_skip(struct lr_rd *r, size_t n)
{
    const uint8_t *p;
    return take(r, n, &p);
}
