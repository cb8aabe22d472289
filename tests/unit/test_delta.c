/*
 * test_delta.c - chunk-list deltas: round trips over random edits
 * (overwrite, insert, delete, append, truncate, identical, disjoint, empty
 * lists, repeated blocks), the "only when smaller" rule, and hostile deltas
 * (zero counts, copies outside the base, overflowing starts, bad lengths,
 * truncation, counts over the limit, wrong size or blocks hash).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sync/delta.h"
#include "chunker/chunker.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A fresh block: random length, a hash no other block has (a counter). */
static struct lr_chunk fresh(void)
{
    static uint64_t serial;
    struct lr_chunk c;
    memset(&c, 0, sizeof(c));
    c.len = (uint32_t)(rnd() % LR_CHUNK_MAX) + 1;
    serial++;
    memcpy(c.hash.b, &serial, sizeof(serial));
    uint64_t r = rnd();
    memcpy(c.hash.b + 8, &r, sizeof(r));
    return c;
}

struct list {
    struct lr_chunk *v;
    size_t n;
};

static void push(struct list *l, struct lr_chunk c)
{
    l->v = realloc(l->v, (l->n + 1) * sizeof(*l->v));
    assert_non_null(l->v);
    l->v[l->n++] = c;
}

static void fix_offsets(struct list *l)
{
    uint64_t off = 0;
    for (size_t i = 0; i < l->n; i++) {
        l->v[i].off = off;
        off += l->v[i].len;
    }
}

static uint64_t list_size(const struct list *l)
{
    uint64_t s = 0;
    for (size_t i = 0; i < l->n; i++)
        s += l->v[i].len;
    return s;
}

static struct list random_list(size_t n)
{
    struct list l = {0};
    for (size_t i = 0; i < n; i++)
        push(&l, fresh());
    fix_offsets(&l);
    return l;
}

/* Encode cur against base, apply, and expect cur back exactly. Returns the delta length. */
static size_t roundtrip(const struct list *base, const struct list *cur)
{
    struct lr_buf b;
    lr_buf_init(&b, 1u << 26);
    assert_int_equal(lr_sync_delta_encode(base->v, base->n, cur->v, cur->n, &b), 0);
    uint64_t count, need;
    assert_int_equal(lr_sync_delta_scan(b.data, b.len, &count, &need, NULL), 0);
    assert_int_equal(count, cur->n);
    assert_true(need <= base->n);
    struct lr_hash h;
    lr_index_blocks_hash(cur->v, cur->n, &h);
    struct lr_chunk *out;
    size_t nout;
    struct lr_err err;
    int rc =
        lr_sync_delta_apply(base->v, base->n, b.data, b.len, list_size(cur), &h, &out, &nout, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(nout, cur->n);
    for (size_t i = 0; i < nout; i++) {
        assert_int_equal(out[i].off, cur->v[i].off);
        assert_int_equal(out[i].len, cur->v[i].len);
        assert_memory_equal(out[i].hash.b, cur->v[i].hash.b, LR_HASH_LEN);
    }
    free(out);
    size_t len = b.len;
    lr_buf_release(&b);
    return len;
}

static struct list copy_list(const struct list *a)
{
    struct list l = {0};
    for (size_t i = 0; i < a->n; i++)
        push(&l, a->v[i]);
    return l;
}

enum edit { OVERWRITE, INSERT, DELETE, APPEND, TRUNCATE, IDENTICAL, DISJOINT, EDITS };

static struct list edited(const struct list *base, enum edit e)
{
    struct list l = {0};
    size_t at = base->n ? (size_t)(rnd() % base->n) : 0;
    size_t k = 1 + (size_t)(rnd() % 3);
    switch (e) {
    case OVERWRITE: /* k blocks replaced in the middle */
        for (size_t i = 0; i < base->n; i++)
            push(&l, i >= at && i < at + k ? fresh() : base->v[i]);
        break;
    case INSERT: /* k new blocks before block `at` (the block there changes too) */
        for (size_t i = 0; i < base->n; i++) {
            if (i == at) {
                for (size_t j = 0; j < k; j++)
                    push(&l, fresh());
                continue;
            }
            push(&l, base->v[i]);
        }
        break;
    case DELETE:
        for (size_t i = 0; i < base->n; i++)
            if (i < at || i >= at + k)
                push(&l, base->v[i]);
        break;
    case APPEND:
        l = copy_list(base);
        for (size_t j = 0; j < k; j++)
            push(&l, fresh());
        break;
    case TRUNCATE:
        for (size_t i = 0; i < at; i++)
            push(&l, base->v[i]);
        push(&l, fresh()); /* the new last block is shorter */
        break;
    case IDENTICAL:
        l = copy_list(base);
        break;
    case DISJOINT:
    case EDITS:
        for (size_t i = 0; i < base->n; i++)
            push(&l, fresh());
        break;
    }
    fix_offsets(&l);
    return l;
}

static void test_random_edits(void **state)
{
    (void)state;
    for (int round = 0; round < 300; round++) {
        size_t n = (size_t)(rnd() % 200);
        struct list base = random_list(n);
        enum edit e = (enum edit)(round % EDITS);
        struct list cur = edited(&base, e);
        size_t len = roundtrip(&base, &cur);
        /* Unchanged runs cost a few bytes, changed blocks at most a full block each. */
        if (e == IDENTICAL && n > 0)
            assert_true(len <= 1 + 4 + 4);
        if (e == OVERWRITE && n > 10)
            assert_true(len < 6 * LR_DELTA_BLOCK_LEN);
        free(base.v);
        free(cur.v);
    }
}

/* A list of one block repeated (a file of zeros) stays one copy operation. */
static void test_repeated_blocks(void **state)
{
    (void)state;
    struct list base = {0};
    struct lr_chunk z = fresh();
    for (int i = 0; i < 1000; i++)
        push(&base, z);
    fix_offsets(&base);
    struct list cur = copy_list(&base);
    push(&cur, fresh());
    fix_offsets(&cur);
    assert_true(roundtrip(&base, &cur) < 4 + 4 + 1 + 4 + LR_HASH_LEN + 2);
    /* Reordered runs of a base: copies from anywhere, out of order. */
    struct list b2 = random_list(50), c2 = {0};
    for (size_t i = 25; i < 50; i++)
        push(&c2, b2.v[i]);
    for (size_t i = 0; i < 25; i++)
        push(&c2, b2.v[i]);
    push(&c2, b2.v[3]);
    fix_offsets(&c2);
    assert_true(roundtrip(&b2, &c2) < 20);
    free(base.v);
    free(cur.v);
    free(b2.v);
    free(c2.v);
}

/* The "only when smaller" rule: 16 000 blocks with 16 changed, and a disjoint list. */
static void test_make_chooses(void **state)
{
    (void)state;
    struct list base = random_list(16000);
    struct list cur = copy_list(&base);
    for (size_t i = 8000; i < 8016; i++)
        cur.v[i] = fresh();
    fix_offsets(&cur);
    struct lr_buf b;
    lr_buf_init(&b, 1u << 24);
    assert_int_equal(lr_sync_delta_make(base.v, base.n, cur.v, cur.n, 64, &b), 1);
    assert_true(b.len < 17 * LR_DELTA_BLOCK_LEN + 16);
    size_t first = b.len;
    struct list dis = edited(&base, DISJOINT);
    /* Disjoint with block lengths >= 16 KiB (4-byte varints, as the
     * chunker's sizes mostly are): a NEW block costs as much as a listed
     * one, so the delta is never chosen and out is untouched. */
    for (size_t i = 0; i < dis.n; i++)
        dis.v[i].len = 16384 + dis.v[i].len % (LR_CHUNK_MAX - 16384);
    assert_int_equal(lr_sync_delta_make(base.v, base.n, dis.v, dis.n, 0, &b), 0);
    assert_int_equal(b.len, first);
    /* The choice is exactly "shorter than the list": short blocks make a
     * disjoint delta cheaper (2-byte length varints). */
    for (size_t i = 0; i < dis.n; i++)
        dis.v[i].len = 1 + dis.v[i].len % 1000;
    struct lr_buf enc;
    lr_buf_init(&enc, 1u << 24);
    assert_int_equal(lr_sync_delta_encode(base.v, base.n, dis.v, dis.n, &enc), 0);
    assert_true(enc.len < dis.n * LR_DELTA_BLOCK_LEN);
    assert_int_equal(lr_sync_delta_make(base.v, base.n, dis.v, dis.n, 0, &b), 1);
    assert_int_equal(b.len, first + enc.len);
    assert_int_equal(
        lr_sync_delta_make(base.v, base.n, dis.v, dis.n, dis.n * LR_DELTA_BLOCK_LEN - enc.len, &b),
        0);
    assert_int_equal(lr_sync_delta_make(base.v, base.n, dis.v, dis.n,
                                        dis.n * LR_DELTA_BLOCK_LEN - enc.len - 1, &b),
                     1);
    lr_buf_release(&enc);
    /* Overhead larger than the list: never a delta. */
    assert_int_equal(lr_sync_delta_make(base.v, base.n, cur.v, 1, 1000, &b), 0);
    assert_int_equal(lr_sync_delta_make(NULL, 0, NULL, 0, 0, &b), 0);
    /* A full output buffer is reported, not ignored. */
    struct lr_buf small;
    lr_buf_init(&small, 10);
    assert_int_equal(lr_sync_delta_make(base.v, base.n, cur.v, cur.n, 0, &small), LR_ETOOBIG);
    assert_false(lr_buf_ok(&small));
    lr_buf_release(&small);
    lr_buf_release(&b);
    free(base.v);
    free(cur.v);
    free(dis.v);
}

/* ---- hostile deltas ---- */

static int apply_raw(const struct list *base, const uint8_t *p, size_t n, uint64_t size,
                     const struct lr_hash *h)
{
    struct lr_chunk *out = (struct lr_chunk *)1;
    size_t nout = 7;
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_sync_delta_apply(base->v, base->n, p, n, size, h, &out, &nout, &err);
    if (rc < 0) {
        assert_null(out);
        assert_int_equal(nout, 0);
        assert_true(rc <= LR_E__FATAL_PEER);
        assert_int_equal(err.code, rc);
        assert_true(err.msg[0] != '\0');
    } else {
        free(out);
    }
    return rc;
}

static void test_hostile(void **state)
{
    (void)state;
    struct list base = random_list(10);
    uint64_t bsize = list_size(&base);
    struct lr_hash bh;
    lr_index_blocks_hash(base.v, base.n, &bh);
    struct lr_buf b;
    lr_buf_init(&b, 1u << 20);

    /* Valid: the whole base as one copy. */
    lr_buf_put_varint(&b, 10u << 1 | LR_DELTA_OP_COPY);
    lr_buf_put_varint(&b, 0);
    assert_int_equal(apply_raw(&base, b.data, b.len, bsize, &bh), 0);
    /* Wrong size, wrong hash. */
    assert_int_equal(apply_raw(&base, b.data, b.len, bsize + 1, &bh), LR_EBADVAL);
    struct lr_hash bad = bh;
    bad.b[5] ^= 1;
    assert_int_equal(apply_raw(&base, b.data, b.len, bsize, &bad), LR_EBADVAL);
    /* Size impossible for the count (checked before allocating). */
    assert_int_equal(apply_raw(&base, b.data, b.len, 5, &bh), LR_EBADVAL);
    /* Truncated: head without start. */
    assert_int_equal(apply_raw(&base, b.data, 1, bsize, &bh), LR_ETRUNC);

    /* Copy past the base; a start that would overflow. */
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 3u << 1 | LR_DELTA_OP_COPY);
    lr_buf_put_varint(&b, 8);
    assert_int_equal(apply_raw(&base, b.data, b.len, bsize, &bh), LR_EBADVAL);
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 3u << 1 | LR_DELTA_OP_COPY);
    lr_buf_put_varint(&b, LR_VARINT_MAX);
    assert_int_equal(apply_raw(&base, b.data, b.len, bsize, &bh), LR_EBADVAL);
    uint64_t cnt, need;
    assert_int_equal(lr_sync_delta_scan(b.data, b.len, &cnt, &need, NULL), 0);
    assert_int_equal(need, LR_VARINT_MAX + UINT64_C(3));

    /* Count 0, either kind. */
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, LR_DELTA_OP_COPY);
    lr_buf_put_varint(&b, 0);
    assert_int_equal(apply_raw(&base, b.data, b.len, 0, &bh), LR_EBADVAL);
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, LR_DELTA_OP_NEW);
    assert_int_equal(apply_raw(&base, b.data, b.len, 0, &bh), LR_EBADVAL);

    /* A huge NEW count in a few bytes: refused before allocating. */
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, (UINT64_C(1) << 25) << 1 | LR_DELTA_OP_NEW);
    lr_buf_put_varint(&b, 100);
    lr_buf_put(&b, bh.b, LR_HASH_LEN);
    assert_int_equal(apply_raw(&base, b.data, b.len, 100, &bh), LR_ETRUNC);
    /* Counts over the list limit, in one op or summed over copies. */
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, (LR_INDEX_CHUNKS_MAX + 1) << 1 | LR_DELTA_OP_COPY);
    lr_buf_put_varint(&b, 0);
    assert_int_equal(apply_raw(&base, b.data, b.len, bsize, &bh), LR_ETOOBIG);
    lr_buf_reset(&b);
    for (int i = 0; i < 3; i++) {
        lr_buf_put_varint(&b, (LR_INDEX_CHUNKS_MAX / 2) << 1 | LR_DELTA_OP_COPY);
        lr_buf_put_varint(&b, 0);
    }
    assert_int_equal(lr_sync_delta_scan(b.data, b.len, NULL, NULL, NULL), LR_ETOOBIG);

    /* NEW lengths 0 and over the chunk maximum; a hash cut short. */
    uint64_t lens[] = {0, LR_CHUNK_MAX + 1};
    for (size_t i = 0; i < 2; i++) {
        lr_buf_reset(&b);
        lr_buf_put_varint(&b, 1u << 1 | LR_DELTA_OP_NEW);
        lr_buf_put_varint(&b, lens[i]);
        lr_buf_put(&b, bh.b, LR_HASH_LEN);
        assert_int_equal(apply_raw(&base, b.data, b.len, 1, &bh), LR_EBADVAL);
    }
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 1u << 1 | LR_DELTA_OP_NEW);
    lr_buf_put_varint(&b, 100);
    lr_buf_put(&b, bh.b, LR_HASH_LEN - 1);
    assert_int_equal(apply_raw(&base, b.data, b.len, 100, &bh), LR_ETRUNC);

    /* A valid NEW block with its own hash. */
    lr_buf_reset(&b);
    struct lr_chunk c = fresh();
    c.off = 0;
    lr_buf_put_varint(&b, 1u << 1 | LR_DELTA_OP_NEW);
    lr_buf_put_varint(&b, c.len);
    lr_buf_put(&b, c.hash.b, LR_HASH_LEN);
    struct lr_hash ch;
    lr_index_blocks_hash(&c, 1, &ch);
    assert_int_equal(apply_raw(&base, b.data, b.len, c.len, &ch), 0);
    /* ... and against an empty base (copies impossible, NEW fine). */
    struct list empty = {0};
    assert_int_equal(apply_raw(&empty, b.data, b.len, c.len, &ch), 0);

    /* Empty delta: the empty list, size 0 only. */
    struct lr_hash eh;
    lr_index_blocks_hash(NULL, 0, &eh);
    assert_int_equal(apply_raw(&base, b.data, 0, 0, &eh), 0);
    assert_int_equal(apply_raw(&base, b.data, 0, 1, &eh), LR_EBADVAL);

    /* Random bytes: never a crash, always a fatal code or a checked result. */
    for (int r = 0; r < 2000; r++) {
        uint8_t junk[64];
        size_t n = (size_t)(rnd() % sizeof(junk));
        for (size_t i = 0; i < n; i++)
            junk[i] = (uint8_t)rnd();
        apply_raw(&base, junk, n, bsize, &bh);
    }
    lr_buf_release(&b);
    free(base.v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_edits),
        cmocka_unit_test(test_repeated_blocks),
        cmocka_unit_test(test_make_chooses),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
