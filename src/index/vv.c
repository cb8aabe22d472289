/*
 * vv.c - version vectors: a sorted list of (device short ID, counter).
 */
#include "index/index.h"

#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

void lr_vv_release(struct lr_vv *vv)
{
    if (!vv)
        return;
    free(vv->e);
    vv->e = NULL;
    vv->n = vv->cap = 0;
    vv->author = 0;
}

void lr_vv_copy(struct lr_vv *dst, const struct lr_vv *src)
{
    lr_vv_release(dst);
    if (src->n == 0)
        return;
    dst->e = lr_xmemdup(src->e, src->n * sizeof(src->e[0]));
    dst->n = dst->cap = src->n;
    dst->author = src->author;
}

/* Index of the first entry with e[i].id >= id. */
static size_t lower_bound(const struct lr_vv *vv, uint64_t id)
{
    size_t lo = 0, hi = vv->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (vv->e[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t lr_vv_get(const struct lr_vv *vv, uint64_t id)
{
    size_t i = lower_bound(vv, id);
    return i < vv->n && vv->e[i].id == id ? vv->e[i].counter : 0;
}

int lr_vv_set(struct lr_vv *vv, uint64_t id, uint64_t counter)
{
    if (counter == 0)
        return LR_EBADVAL;
    size_t i = lower_bound(vv, id);
    if (i < vv->n && vv->e[i].id == id) {
        vv->e[i].counter = counter;
        return 0;
    }
    if (vv->n >= LR_VV_MAX)
        return LR_ETOOBIG;
    if (vv->n == vv->cap) {
        vv->cap = vv->cap ? vv->cap * 2 : 4;
        vv->e = lr_xreallocarray(vv->e, vv->cap, sizeof(vv->e[0]));
    }
    memmove(&vv->e[i + 1], &vv->e[i], (vv->n - i) * sizeof(vv->e[0]));
    vv->e[i].id = id;
    vv->e[i].counter = counter;
    vv->n++;
    return 0;
}

/* Other devices' counters above this are not followed by a bump: a peer's
 * bogus huge counter must not drive ours to the top, where it would stick. */
#define FOLLOW_MAX (UINT64_C(1) << 62)

uint64_t lr_vv_bump(struct lr_vv *vv, uint64_t id, uint64_t now_s)
{
    uint64_t old = lr_vv_get(vv, id);
    if (old == UINT64_MAX)
        return 0;
    uint64_t c = old + 1 > now_s ? old + 1 : now_s;
    /* Above every other counter too, so the newest counter names the device
     * that made this version (lr_sync_vv_author), whatever the clocks say. */
    for (size_t i = 0; i < vv->n; i++)
        if (vv->e[i].id != id && vv->e[i].counter < FOLLOW_MAX && vv->e[i].counter >= c)
            c = vv->e[i].counter + 1;
    if (lr_vv_set(vv, id, c) < 0)
        return 0;
    vv->author = id;
    return c;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int lr_vv_encode(const struct lr_vv *vv, struct lr_buf *b)
{
    uint8_t *p = lr_buf_reserve(b, vv->n * LR_VV_PAIR_LEN);
    if (!lr_buf_ok(b))
        return LR_ETOOBIG;
    for (size_t i = 0; i < vv->n; i++) {
        put_be64(p + i * LR_VV_PAIR_LEN, vv->e[i].id);
        put_be64(p + i * LR_VV_PAIR_LEN + 8, vv->e[i].counter);
    }
    b->len += vv->n * LR_VV_PAIR_LEN;
    return 0;
}

int lr_vv_encode_stored(const struct lr_vv *vv, struct lr_buf *b)
{
    int rc = lr_vv_encode(vv, b);
    if (rc == 0 && vv->author && lr_vv_get(vv, vv->author))
        rc = lr_buf_put_u64(b, vv->author) < 0 ? LR_ETOOBIG : 0;
    return rc;
}

int lr_vv_decode(const uint8_t *p, size_t n, struct lr_vv *out)
{
    memset(out, 0, sizeof(*out));
    uint64_t author = 0;
    if (n % LR_VV_PAIR_LEN == 8) {
        author = get_be64(p + n - 8);
        n -= 8;
    }
    if (n % LR_VV_PAIR_LEN)
        return LR_EBADVAL;
    size_t cnt = n / LR_VV_PAIR_LEN;
    if (cnt > LR_VV_MAX)
        return LR_ETOOBIG;
    if (cnt == 0)
        return 0;
    struct lr_vv vv = {lr_xmallocarray(cnt, sizeof(vv.e[0])), cnt, cnt, 0};
    for (size_t i = 0; i < cnt; i++) {
        vv.e[i].id = get_be64(p + i * LR_VV_PAIR_LEN);
        vv.e[i].counter = get_be64(p + i * LR_VV_PAIR_LEN + 8);
        if (vv.e[i].counter == 0 || (i > 0 && vv.e[i].id <= vv.e[i - 1].id)) {
            free(vv.e);
            return LR_EBADVAL;
        }
    }
    if (author && lr_vv_get(&vv, author))
        vv.author = author;
    *out = vv;
    return 0;
}

bool lr_vv_equal(const struct lr_vv *a, const struct lr_vv *b)
{
    if (a->n != b->n)
        return false;
    return a->n == 0 || memcmp(a->e, b->e, a->n * sizeof(a->e[0])) == 0;
}

enum lr_vv_order lr_vv_compare(const struct lr_vv *a, const struct lr_vv *b)
{
    bool a_more = false, b_more = false; /* a has a counter above b's, and vice versa */
    size_t i = 0, j = 0;
    while ((i < a->n || j < b->n) && !(a_more && b_more)) {
        if (j == b->n || (i < a->n && a->e[i].id < b->e[j].id)) {
            a_more |= a->e[i++].counter > 0;
        } else if (i == a->n || b->e[j].id < a->e[i].id) {
            b_more |= b->e[j++].counter > 0;
        } else {
            a_more |= a->e[i].counter > b->e[j].counter;
            b_more |= b->e[j].counter > a->e[i].counter;
            i++;
            j++;
        }
    }
    if (a_more && b_more)
        return LR_VV_CONCURRENT;
    return a_more ? LR_VV_GREATER : b_more ? LR_VV_LESS : LR_VV_EQUAL;
}
