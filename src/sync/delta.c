/* delta.c - chunk-list deltas (see delta.h). */
#include "sync/delta.h"

#include "chunker/chunker.h"
#include "util/rd.h"
#include "util/xalloc.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool same_block(const struct lr_chunk *a, const struct lr_chunk *b)
{
    return a->len == b->len && memcmp(a->hash.b, b->hash.b, LR_HASH_LEN) == 0;
}

/* ---- encoding ---- */

/* Open-addressing table from a block to its first index in the base. */
struct btab {
    uint32_t *slot; /* base index + 1; 0: empty */
    size_t mask;
};

static size_t hkey(const struct lr_chunk *c)
{
    uint64_t k;
    memcpy(&k, c->hash.b, sizeof(k)); /* SHA-256 bytes are already uniform */
    return (size_t)(k ^ c->len);
}

static void btab_build(struct btab *t, const struct lr_chunk *base, size_t nbase)
{
    size_t cap = 16;
    while (cap < nbase * 2)
        cap <<= 1;
    t->slot = lr_xcalloc(cap, sizeof(t->slot[0]));
    t->mask = cap - 1;
    for (size_t i = 0; i < nbase; i++) {
        size_t h = hkey(&base[i]) & t->mask;
        while (t->slot[h] && !same_block(&base[t->slot[h] - 1], &base[i]))
            h = (h + 1) & t->mask;
        if (!t->slot[h])
            t->slot[h] = (uint32_t)(i + 1);
    }
}

/* First base index holding c, or SIZE_MAX. */
static size_t btab_find(const struct btab *t, const struct lr_chunk *base, const struct lr_chunk *c)
{
    for (size_t h = hkey(c) & t->mask; t->slot[h]; h = (h + 1) & t->mask)
        if (same_block(&base[t->slot[h] - 1], c))
            return t->slot[h] - 1;
    return SIZE_MAX;
}

static int put_new(struct lr_buf *out, const struct lr_chunk *cur, size_t from, size_t to)
{
    int rc = lr_buf_put_varint(out, (uint64_t)(to - from) << 1 | LR_DELTA_OP_NEW);
    for (size_t i = from; i < to && rc == 0; i++) {
        rc = lr_buf_put_varint(out, cur[i].len);
        if (rc == 0)
            rc = lr_buf_put(out, cur[i].hash.b, LR_HASH_LEN);
    }
    return rc;
}

int lr_sync_delta_encode(const struct lr_chunk *base, size_t nbase, const struct lr_chunk *cur,
                         size_t ncur, struct lr_buf *out)
{
    struct btab t;
    btab_build(&t, base, nbase);
    int rc = 0;
    size_t j = 0, pending = 0;   /* cur[pending..j) not yet written: NEW blocks */
    size_t next_base = SIZE_MAX; /* where the previous copy ended */
    while (j < ncur && rc == 0) {
        /* Prefer going on where the last copy stopped: a run of identical
         * blocks (a file of zeros) then stays one copy. */
        size_t s = next_base < nbase && same_block(&base[next_base], &cur[j])
                       ? next_base
                       : btab_find(&t, base, &cur[j]);
        if (s == SIZE_MAX) {
            j++;
            continue;
        }
        size_t k = 1;
        while (j + k < ncur && s + k < nbase && same_block(&base[s + k], &cur[j + k]))
            k++;
        if (pending < j)
            rc = put_new(out, cur, pending, j);
        if (rc == 0)
            rc = lr_buf_put_varint(out, (uint64_t)k << 1 | LR_DELTA_OP_COPY);
        if (rc == 0)
            rc = lr_buf_put_varint(out, s);
        j += k;
        pending = j;
        next_base = s + k;
    }
    if (rc == 0 && pending < ncur)
        rc = put_new(out, cur, pending, ncur);
    free(t.slot);
    return rc < 0 ? LR_ETOOBIG : 0;
}

int lr_sync_delta_make(const struct lr_chunk *base, size_t nbase, const struct lr_chunk *cur,
                       size_t ncur, size_t overhead, struct lr_buf *out)
{
    /* ncur <= 2^26 for any list we hold: no overflow. */
    size_t full = ncur * LR_DELTA_BLOCK_LEN;
    if (overhead >= full)
        return 0;
    struct lr_buf tmp;
    lr_buf_init(&tmp, full - overhead - 1);
    int rc = lr_sync_delta_encode(base, nbase, cur, ncur, &tmp);
    if (rc == 0)
        rc = lr_buf_put(out, tmp.data, tmp.len) < 0 ? LR_ETOOBIG : 1;
    else
        rc = 0; /* longer than the budget: send the list */
    lr_buf_release(&tmp);
    return rc;
}

/* ---- decoding ---- */

/*
 * Walk the operations; with `out` set, also write the result into
 * out[0..count) (the caller sized it from a previous scan of the same bytes).
 */
static int walk(const uint8_t *p, size_t n, const struct lr_chunk *base, size_t nbase,
                struct lr_chunk *out, uint64_t *count, uint64_t *base_min, struct lr_err *err)
{
    struct lr_rd rd;
    uint64_t total = 0, need = 0, off = 0;
    bool fill = out != NULL;
    lr_rd_init(&rd, p, n);
    for (uint64_t op = 0; lr_rd_left(&rd) > 0; op++) {
        uint64_t head, start;
        if (lr_rd_get_varint(&rd, &head) < 0)
            return lr_err_set(err, LR_ETRUNC, "delta.op[%" PRIu64 "]: truncated", op);
        uint64_t cnt = head >> 1;
        if (cnt == 0)
            return lr_err_set(err, LR_EBADVAL, "delta.op[%" PRIu64 "]: count 0", op);
        if (cnt > LR_INDEX_CHUNKS_MAX - total)
            return lr_err_set(err, LR_ETOOBIG,
                              "delta.op[%" PRIu64 "]: %" PRIu64 " blocks after %" PRIu64
                              " exceed %" PRIu64,
                              op, cnt, total, LR_INDEX_CHUNKS_MAX);
        if ((head & 1) == LR_DELTA_OP_COPY) {
            if (lr_rd_get_varint(&rd, &start) < 0)
                return lr_err_set(err, LR_ETRUNC, "delta.op[%" PRIu64 "]: copy start truncated",
                                  op);
            /* cnt <= 2^26 and start < 2^62: the sum cannot overflow. */
            if (start + cnt > need)
                need = start + cnt;
            if (fill && start + cnt > nbase)
                return lr_err_set(err, LR_EBADVAL,
                                  "delta.op[%" PRIu64 "]: copy %" PRIu64 "+%" PRIu64
                                  " outside the base's %zu blocks",
                                  op, start, cnt, nbase);
            for (uint64_t i = 0; fill && i < cnt; i++) {
                struct lr_chunk *c = &out[total + i];
                *c = base[start + i];
                c->off = off;
                c->weak = 0; /* a peer's record: local only (index.h) */
                off += c->len;
            }
        } else {
            /* Each NEW block takes at least 1 + 32 bytes: bound cnt by what is left. */
            if (cnt > lr_rd_left(&rd) / (1 + LR_HASH_LEN))
                return lr_err_set(err, LR_ETRUNC,
                                  "delta.op[%" PRIu64 "]: %" PRIu64 " new blocks, %zu bytes left",
                                  op, cnt, lr_rd_left(&rd));
            for (uint64_t i = 0; i < cnt; i++) {
                uint64_t len;
                const uint8_t *h;
                if (lr_rd_get_varint(&rd, &len) < 0 || lr_rd_get_view(&rd, &h, LR_HASH_LEN) < 0)
                    return lr_err_set(err, LR_ETRUNC,
                                      "delta.op[%" PRIu64 "].new[%" PRIu64 "]: truncated", op, i);
                if (len == 0 || len > LR_CHUNK_MAX)
                    return lr_err_set(err, LR_EBADVAL,
                                      "delta.op[%" PRIu64 "].new[%" PRIu64 "]: length %" PRIu64
                                      " not in 1..%u",
                                      op, i, len, LR_CHUNK_MAX);
                if (fill) {
                    struct lr_chunk *c = &out[total + i];
                    c->off = off;
                    c->len = (uint32_t)len;
                    memcpy(c->hash.b, h, LR_HASH_LEN);
                    c->weak = 0;
                    off += len;
                }
            }
        }
        total += cnt;
    }
    if (count)
        *count = total;
    if (base_min)
        *base_min = need;
    return 0;
}

int lr_sync_delta_scan(const uint8_t *p, size_t n, uint64_t *count, uint64_t *base_min,
                       struct lr_err *err)
{
    if (count)
        *count = 0;
    if (base_min)
        *base_min = 0;
    return walk(p, n, NULL, 0, NULL, count, base_min, err);
}

int lr_sync_delta_apply(const struct lr_chunk *base, size_t nbase, const uint8_t *p, size_t n,
                        uint64_t size, const struct lr_hash *blocks_hash, struct lr_chunk **out,
                        size_t *nout, struct lr_err *err)
{
    uint64_t count, need;
    *out = NULL;
    *nout = 0;
    int rc = lr_sync_delta_scan(p, n, &count, &need, err);
    if (rc < 0)
        return rc;
    if (need > nbase)
        return lr_err_set(err, LR_EBADVAL,
                          "delta: copies need %" PRIu64 " base blocks, base has %zu", need, nbase);
    /* Every block holds 1..LR_CHUNK_MAX bytes (count <= 2^26: no overflow). */
    if (count > size || size > count * LR_CHUNK_MAX)
        return lr_err_set(err, LR_EBADVAL,
                          "delta: %" PRIu64 " blocks cannot hold %" PRIu64 " bytes", count, size);
    struct lr_chunk *v = count ? lr_xmallocarray((size_t)count, sizeof(*v)) : NULL;
    if ((rc = walk(p, n, base, nbase, v, NULL, NULL, err)) < 0) {
        free(v);
        return rc;
    }
    uint64_t sum = count ? v[count - 1].off + v[count - 1].len : 0;
    struct lr_hash h;
    lr_index_blocks_hash(v, (size_t)count, &h);
    if (sum != size)
        rc = lr_err_set(err, LR_EBADVAL, "delta: blocks sum to %" PRIu64 " bytes, size is %" PRIu64,
                        sum, size);
    else if (memcmp(h.b, blocks_hash->b, LR_HASH_LEN) != 0)
        rc = lr_err_set(err, LR_EBADVAL, "delta: result does not match the blocks hash");
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *nout = (size_t)count;
    return 0;
}
