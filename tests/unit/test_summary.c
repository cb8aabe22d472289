/*
 * test_summary.c - reconciliation summaries (sync/summary.h): which fields
 * the entry digest covers, bucket digests and canonical order against a
 * naive 128-bit oracle and independent of insertion order, SUMMARY and
 * SUMMARY_WANT round trips, the diff of modified/extra/missing entries,
 * every decoder rejection (forged payloads, all truncations), and the wire
 * size for 100 000 entries next to the full INDEX of the same records.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sync/summary.h"
#include "util/rd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static uint64_t rng = 0x243f6a8885a308d3u;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define SELF 0x1111222233334444u

/* A live file with one chunk (so the full INDEX encoder accepts it too). */
static void mk_file(struct lr_file_rec *r, const char *path, uint64_t vvc)
{
    memset(r, 0, sizeof(*r));
    r->path_len = strlen(path);
    r->path = (uint8_t *)strdup(path);
    r->type = LR_FT_FILE;
    r->size = 1 + rnd() % 200000;
    r->mtime_ns = (int64_t)(1700000000000000000ull + rnd() % 1000000000000ull);
    r->mode = 0644;
    r->inode = rnd();
    r->ctime_ns = (int64_t)(rnd() >> 2);
    r->seq = 1 + rnd() % 1000;
    r->chunks = calloc(1, sizeof(r->chunks[0]));
    r->nchunks = 1;
    r->chunks[0].len = (uint32_t)r->size;
    for (size_t i = 0; i < LR_HASH_LEN; i++)
        r->chunks[0].hash.b[i] = (uint8_t)rnd();
    lr_index_blocks_hash(r->chunks, 1, &r->blocks_hash);
    assert_int_equal(lr_vv_set(&r->vv, SELF, vvc), 0);
}

static void rec_copy(struct lr_file_rec *d, const struct lr_file_rec *s)
{
    *d = *s;
    d->path = (uint8_t *)strndup((const char *)s->path, s->path_len);
    d->target = s->target ? (uint8_t *)strndup((const char *)s->target, s->target_len) : NULL;
    d->chunks = s->nchunks ? malloc(s->nchunks * sizeof(s->chunks[0])) : NULL;
    if (s->nchunks)
        memcpy(d->chunks, s->chunks, s->nchunks * sizeof(s->chunks[0]));
    memset(&d->vv, 0, sizeof(d->vv));
    lr_vv_copy(&d->vv, &s->vv);
}

static void digest_of(const struct lr_file_rec *r, struct lr_summary_digest *d)
{
    lr_summary_entry_digest(r, d);
}

static bool same_digest(const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    struct lr_summary_digest x, y;
    digest_of(a, &x);
    digest_of(b, &y);
    return memcmp(x.b, y.b, sizeof(x.b)) == 0;
}

/* ---- digest fields ---------------------------------------------------------- */

static void test_digest_fields(void **state)
{
    (void)state;
    struct lr_file_rec a, b;
    mk_file(&a, "dir/file.txt", 5);

    /* Ignored: vector, sequence, inode, ctime. */
    rec_copy(&b, &a);
    assert_int_equal(lr_vv_set(&b.vv, SELF + 1, 9), 0);
    b.seq++;
    b.inode++;
    b.ctime_ns++;
    assert_true(same_digest(&a, &b));
    lr_file_rec_release(&b);

    /* Each content field of a file changes it. */
    for (int f = 0; f < 6; f++) {
        rec_copy(&b, &a);
        switch (f) {
        case 0:
            b.path[0] = 'D';
            break;
        case 1:
            b.size++;
            break;
        case 2:
            b.blocks_hash.b[31] ^= 1;
            break;
        case 3:
            b.mode = 0600;
            break;
        case 4:
            b.mtime_ns++;
            break;
        case 5:
            b.type = LR_FT_DIR;
            break;
        }
        assert_false(same_digest(&a, &b));
        lr_file_rec_release(&b);
    }
    /* Length-prefixed path: "dir/file.tx" + a different tail is not ambiguous. */
    rec_copy(&b, &a);
    b.path_len--;
    assert_false(same_digest(&a, &b));
    lr_file_rec_release(&b);

    /* Directory: mode counts; mtime and size do not. */
    struct lr_file_rec d, d2;
    memset(&d, 0, sizeof(d));
    d.path = (uint8_t *)strdup("dir");
    d.path_len = 3;
    d.type = LR_FT_DIR;
    d.mode = 0755;
    d.mtime_ns = 100;
    assert_int_equal(lr_vv_set(&d.vv, SELF, 1), 0);
    rec_copy(&d2, &d);
    d2.mtime_ns = 200;
    assert_true(same_digest(&d, &d2));
    d2.mode = 0700;
    assert_false(same_digest(&d, &d2));
    lr_file_rec_release(&d2);

    /* Symlink: target and mtime count; mode does not. */
    struct lr_file_rec l, l2;
    memset(&l, 0, sizeof(l));
    l.path = (uint8_t *)strdup("link");
    l.path_len = 4;
    l.type = LR_FT_SYMLINK;
    l.target = (uint8_t *)strdup("target");
    l.target_len = 6;
    l.mtime_ns = 5;
    l.mode = 0777;
    assert_int_equal(lr_vv_set(&l.vv, SELF, 1), 0);
    rec_copy(&l2, &l);
    l2.mode = 0755;
    assert_true(same_digest(&l, &l2));
    l2.mtime_ns = 6;
    assert_false(same_digest(&l, &l2));
    l2.mtime_ns = 5;
    l2.target_len = 5;
    assert_false(same_digest(&l, &l2));
    lr_file_rec_release(&l2);

    /* Tombstones: path + deleted only. */
    struct lr_file_rec t1, t2;
    rec_copy(&t1, &a);
    t1.deleted = true;
    memset(&t2, 0, sizeof(t2));
    t2.path = (uint8_t *)strdup("dir/file.txt");
    t2.path_len = a.path_len;
    t2.type = LR_FT_SYMLINK;
    t2.deleted = true;
    t2.mtime_ns = 77;
    t2.mode = 01777;
    assert_true(same_digest(&t1, &t2));
    assert_false(same_digest(&t1, &a));
    t2.path[0] = 'x';
    assert_false(same_digest(&t1, &t2));
    lr_file_rec_release(&t1);
    lr_file_rec_release(&t2);
    lr_file_rec_release(&a);
    lr_file_rec_release(&d);
    lr_file_rec_release(&l);
}

static void test_buckets(void **state)
{
    (void)state;
    assert_int_equal(lr_summary_nbuckets(0), 1);
    assert_int_equal(lr_summary_nbuckets(32), 1);
    assert_int_equal(lr_summary_nbuckets(33), 2);
    assert_int_equal(lr_summary_nbuckets(64), 2);
    assert_int_equal(lr_summary_nbuckets(65), 4);
    assert_int_equal(lr_summary_nbuckets(100000), 4096);
    assert_int_equal(lr_summary_nbuckets(32u * 65536), 65536);
    assert_int_equal(lr_summary_nbuckets(UINT64_MAX), 65536);
    /* First 4 bytes of SHA-256, big-endian, masked. */
    for (int i = 0; i < 200; i++) {
        char p[32];
        int n = snprintf(p, sizeof(p), "p%d/%llu", i, (unsigned long long)rnd());
        struct lr_hash h;
        lr_sha256(p, (size_t)n, &h);
        uint32_t v =
            (uint32_t)h.b[0] << 24 | (uint32_t)h.b[1] << 16 | (uint32_t)h.b[2] << 8 | h.b[3];
        for (uint32_t nb = 1; nb <= LR_SUMMARY_BUCKETS_MAX; nb <<= 1)
            assert_int_equal(lr_summary_bucket((const uint8_t *)p, (size_t)n, nb), v & (nb - 1));
    }
    struct lr_summary *s = (struct lr_summary *)1;
    struct lr_err err;
    uint32_t bad[] = {0, 3, 6, 65535, 131072, UINT32_MAX};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(lr_summary_new(bad[i], &s, &err), LR_EBADVAL);
        assert_null(s);
    }
}

/* ---- builder ------------------------------------------------------------------ */

struct set {
    struct lr_file_rec *r;
    size_t n;
};

/* n records with paths "d<k>/f<i>", vectors {SELF: base + i / run}. */
static void mk_set(struct set *s, size_t n, uint64_t base, size_t run)
{
    s->r = calloc(n ? n : 1, sizeof(s->r[0])); /* one: gcc -O3 took calloc(0) for void[0] */
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        char p[64];
        snprintf(p, sizeof(p), "d%03zu/sub%02zu/file%07zu.txt", i % 300, i % 17, i);
        mk_file(&s->r[i], p, base + i / run);
    }
}

static void free_set(struct set *s)
{
    for (size_t i = 0; i < s->n; i++)
        lr_file_rec_release(&s->r[i]);
    free(s->r);
}

static struct lr_summary *build(const struct set *set, uint32_t nb, const size_t *order)
{
    struct lr_summary *s;
    struct lr_err err;
    assert_int_equal(lr_summary_new(nb, &s, &err), 0);
    for (size_t k = 0; k < set->n; k++) {
        size_t i = order ? order[k] : k;
        assert_int_equal(lr_summary_add(s, &set->r[i], i, &err), 0);
    }
    lr_summary_finish(s);
    return s;
}

static unsigned __int128 be128(const struct lr_summary_digest *d)
{
    unsigned __int128 v = 0;
    for (int i = 0; i < LR_SUMMARY_DIGEST_LEN; i++)
        v = v << 8 | d->b[i];
    return v;
}

static void test_builder_order(void **state)
{
    (void)state;
    struct set set;
    mk_set(&set, 3000, 1000, 7);
    uint32_t nb = 64;
    size_t *perm = malloc(set.n * sizeof(*perm));
    for (size_t i = 0; i < set.n; i++)
        perm[i] = set.n - 1 - i;
    for (size_t i = set.n - 1; i > 0; i--) {
        size_t j = rnd() % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    struct lr_summary *a = build(&set, nb, NULL), *b = build(&set, nb, perm);
    assert_int_equal(lr_summary_nb(a), nb);
    assert_int_equal(lr_summary_count(a), set.n);

    /* Oracle: per bucket count and 128-bit sum. */
    uint32_t *cnt = calloc(nb, sizeof(*cnt));
    unsigned __int128 *sum = calloc(nb, sizeof(*sum));
    for (size_t i = 0; i < set.n; i++) {
        struct lr_summary_digest d;
        digest_of(&set.r[i], &d);
        uint32_t bk = lr_summary_bucket(set.r[i].path, set.r[i].path_len, nb);
        cnt[bk]++;
        sum[bk] += be128(&d);
    }
    size_t total = 0;
    for (uint32_t bk = 0; bk < nb; bk++) {
        uint32_t ca, cb;
        struct lr_summary_digest da, db;
        lr_summary_bucket_info(a, bk, &ca, &da);
        lr_summary_bucket_info(b, bk, &cb, &db);
        assert_int_equal(ca, cnt[bk]);
        assert_int_equal(cb, cnt[bk]);
        assert_true(be128(&da) == sum[bk]);
        assert_memory_equal(da.b, db.b, LR_SUMMARY_DIGEST_LEN);
        const uint64_t *ta, *tb;
        size_t na, nbt;
        lr_summary_bucket_tags(a, bk, &ta, &na);
        lr_summary_bucket_tags(b, bk, &tb, &nbt);
        assert_int_equal(na, ca);
        assert_int_equal(nbt, ca);
        if (na)
            assert_memory_equal(ta, tb, na * sizeof(*ta));
        /* Canonical: right bucket, digests strictly ascending. */
        struct lr_summary_digest prev;
        for (size_t j = 0; j < na; j++) {
            const struct lr_file_rec *r = &set.r[ta[j]];
            struct lr_summary_digest d;
            assert_int_equal(lr_summary_bucket(r->path, r->path_len, nb), bk);
            digest_of(r, &d);
            if (j > 0)
                assert_true(memcmp(prev.b, d.b, LR_SUMMARY_DIGEST_LEN) < 0);
            prev = d;
        }
        total += na;
    }
    assert_int_equal(total, set.n);

    /* Empty builder: zero buckets, no tags. */
    struct lr_summary *e;
    assert_int_equal(lr_summary_new(1, &e, NULL), 0);
    lr_summary_finish(e);
    uint32_t c;
    struct lr_summary_digest d;
    const uint64_t *t;
    size_t tn;
    lr_summary_bucket_info(e, 0, &c, &d);
    lr_summary_bucket_tags(e, 0, &t, &tn);
    assert_int_equal(c, 0);
    assert_int_equal(tn, 0);
    struct lr_summary_digest zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(d.b, zero.b, LR_SUMMARY_DIGEST_LEN);
    lr_summary_free(e);
    lr_summary_free(NULL);

    free(cnt);
    free(sum);
    free(perm);
    lr_summary_free(a);
    lr_summary_free(b);
    free_set(&set);
}

static void test_add_rejects(void **state)
{
    (void)state;
    struct lr_summary *s;
    struct lr_err err;
    struct lr_file_rec r;
    assert_int_equal(lr_summary_new(4, &s, NULL), 0);
    mk_file(&r, "ok", 1);
    const char *badp[] = {"", "/a", "a/", "a//b", "..", "a/./b"};
    for (size_t i = 0; i < sizeof(badp) / sizeof(badp[0]); i++) {
        struct lr_file_rec b;
        rec_copy(&b, &r);
        free(b.path);
        b.path = (uint8_t *)strdup(badp[i]);
        b.path_len = strlen(badp[i]);
        assert_int_equal(lr_summary_add(s, &b, 0, &err), LR_EBADVAL);
        lr_file_rec_release(&b);
    }
    struct lr_file_rec b;
    rec_copy(&b, &r);
    lr_vv_release(&b.vv);
    assert_int_equal(lr_summary_add(s, &b, 0, &err), LR_EBADVAL); /* empty vector */
    assert_int_equal(lr_vv_set(&b.vv, 5, 1), 0);
    assert_int_equal(lr_vv_set(&b.vv, 9, 1), 0);
    b.vv.e[1].id = 5; /* duplicate id */
    assert_int_equal(lr_summary_add(s, &b, 0, &err), LR_EBADVAL);
    b.vv.e[1].id = 9;
    b.vv.e[1].counter = 0;
    assert_int_equal(lr_summary_add(s, &b, 0, &err), LR_EBADVAL);
    lr_file_rec_release(&b);
    assert_int_equal(lr_summary_add(s, &r, 0, &err), 0);
    lr_summary_finish(s);
    assert_int_equal(lr_summary_count(s), 1);
    lr_summary_free(s);
    lr_file_rec_release(&r);
}

/* ---- SUMMARY round trip --------------------------------------------------------- */

static void check_round_trip(const struct set *set, uint32_t nb)
{
    struct lr_summary *s = build(set, nb, NULL);
    struct lr_buf out;
    struct lr_err err;
    lr_buf_init(&out, LR_PROTO_FRAME_MAX);
    assert_int_equal(lr_summary_encode(s, "photos", 0xabcdef, 12345, &out, &err), 0);
    struct lr_summary_msg m;
    int rc = lr_summary_decode(out.data, out.len, &m, &err);
    if (rc != 0)
        fail_msg("decode: %s", err.msg);
    assert_string_equal(m.folder, "photos");
    assert_true(m.index_id == 0xabcdef);
    assert_true(m.seq == 12345);
    assert_int_equal(m.nb, nb);
    assert_int_equal(m.n, set->n);
    for (uint32_t bk = 0; bk < nb; bk++) {
        uint32_t c;
        struct lr_summary_digest d;
        const uint64_t *tags;
        size_t tn;
        lr_summary_bucket_info(s, bk, &c, &d);
        lr_summary_bucket_tags(s, bk, &tags, &tn);
        assert_int_equal(m.count[bk], c);
        assert_memory_equal(m.digest[bk].b, d.b, LR_SUMMARY_DIGEST_LEN);
        for (size_t j = 0; j < tn; j++) {
            uint32_t k = m.entry_vv[m.first[bk] + j];
            assert_true(k < m.nvv);
            assert_true(lr_vv_equal(&m.vvs[k], &set->r[tags[j]].vv));
        }
    }
    /* The dictionary holds distinct vectors. */
    for (size_t i = 1; i < m.nvv && m.nvv < 200; i++)
        for (size_t j = 0; j < i; j++)
            assert_false(lr_vv_equal(&m.vvs[i], &m.vvs[j]));
    uint8_t *bits;
    uint32_t nd;
    assert_int_equal(lr_summary_diff(s, &m, &bits, &nd, &err), 0);
    assert_int_equal(nd, 0);
    free(bits);
    lr_summary_msg_release(&m);
    lr_summary_msg_release(&m); /* twice is fine */
    lr_buf_release(&out);
    lr_summary_free(s);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct set set;
    mk_set(&set, 5000, 1700000000, 1000); /* 5 vectors in runs */
    check_round_trip(&set, 128);
    check_round_trip(&set, 1);
    free_set(&set);
    mk_set(&set, 3000, 1, 1); /* all distinct: refs past one byte */
    for (size_t i = 0; i < set.n; i += 3)
        assert_int_equal(lr_vv_set(&set.r[i].vv, SELF + 7, i + 1), 0);
    check_round_trip(&set, 32);
    free_set(&set);
    mk_set(&set, 0, 1, 1);
    check_round_trip(&set, 1);
    check_round_trip(&set, 65536);
    free_set(&set);

    /* Encoder argument checks. */
    struct lr_summary *s = build(&set, 1, NULL);
    struct lr_buf out;
    lr_buf_init(&out, LR_PROTO_FRAME_MAX);
    assert_int_equal(lr_summary_encode(s, "", 1, 0, &out, NULL), LR_EBADVAL);
    assert_int_equal(lr_summary_encode(s, "a/b", 1, 0, &out, NULL), LR_EBADVAL);
    assert_int_equal(lr_summary_encode(s, "f", 0, 0, &out, NULL), LR_EBADVAL);
    assert_int_equal(lr_summary_encode(s, "f", 1, UINT64_MAX, &out, NULL), LR_EBADVAL);
    assert_int_equal(out.len, 0);
    lr_buf_release(&out);
    /* A payload over LR_PROTO_SUMMARY_MAX: LR_ETOOBIG, out unchanged, so the
     * caller can fall back to a full index. 2000 incompressible 64-entry
     * vectors make a ~2 MiB body. */
    struct set big;
    mk_set(&big, 2000, 1, 1);
    for (size_t i = 0; i < big.n; i++)
        for (uint64_t k = 0; k < 64; k++)
            assert_int_equal(lr_vv_set(&big.r[i].vv, rnd() | 1, rnd() | 1), 0);
    struct lr_summary *bs = build(&big, 64, NULL);
    struct lr_err err;
    lr_buf_init(&out, LR_PROTO_FRAME_MAX);
    lr_buf_put_u8(&out, 0xaa);
    assert_int_equal(lr_summary_encode(bs, "f", 1, 0, &out, &err), LR_ETOOBIG);
    assert_non_null(strstr(err.msg, "summary"));
    assert_int_equal(out.len, 1);
    assert_true(lr_buf_ok(&out));
    lr_buf_release(&out);
    lr_summary_free(bs);
    free_set(&big);
    /* A full output buffer: LR_ETOOBIG. */
    lr_buf_init(&out, 8);
    assert_int_equal(lr_summary_encode(s, "folder", 1, 0, &out, NULL), LR_ETOOBIG);
    lr_buf_release(&out);
    lr_summary_free(s);
}

/* ---- diff ------------------------------------------------------------------------- */

static void test_diff(void **state)
{
    (void)state;
    struct set local, remote;
    mk_set(&local, 2000, 10, 100);
    /* remote = local with [5] modified, [9] missing, plus an extra entry, and
     * every vector different (vectors never make a bucket differ). */
    remote.n = local.n;
    remote.r = calloc(local.n, sizeof(remote.r[0]));
    for (size_t i = 0; i < local.n; i++) {
        rec_copy(&remote.r[i], &local.r[i]);
        assert_int_equal(lr_vv_set(&remote.r[i].vv, SELF + 1, 3), 0);
        remote.r[i].seq += 100;
    }
    remote.r[5].mtime_ns++;
    lr_file_rec_release(&remote.r[9]);
    mk_file(&remote.r[9], "extra/file", 4);
    uint32_t nb = 256;
    struct lr_summary *ls = build(&local, nb, NULL), *rs = build(&remote, nb, NULL);
    struct lr_buf out;
    struct lr_err err;
    lr_buf_init(&out, LR_PROTO_FRAME_MAX);
    assert_int_equal(lr_summary_encode(rs, "f", 7, 1, &out, &err), 0);
    struct lr_summary_msg m;
    assert_int_equal(lr_summary_decode(out.data, out.len, &m, &err), 0);
    uint8_t *bits;
    uint32_t nd;
    assert_int_equal(lr_summary_diff(ls, &m, &bits, &nd, &err), 0);
    uint8_t *want = calloc(nb / 8, 1);
    const struct lr_file_rec *ch[] = {&local.r[5], &local.r[9], &remote.r[9]};
    uint32_t expect = 0;
    for (size_t i = 0; i < 3; i++) {
        uint32_t bk = lr_summary_bucket(ch[i]->path, ch[i]->path_len, nb);
        if (!lr_summary_bit(want, bk))
            expect++;
        want[bk / 8] |= (uint8_t)(1u << (bk % 8));
    }
    assert_int_equal(nd, expect);
    assert_memory_equal(bits, want, nb / 8);
    free(bits);

    /* Another bucket count: refused. */
    struct lr_summary *other = build(&local, nb / 2, NULL);
    assert_int_equal(lr_summary_diff(other, &m, &bits, &nd, &err), LR_EBADVAL);
    assert_null(bits);
    lr_summary_free(other);

    /* The want of these bits round-trips. */
    struct lr_summary_want w, w2;
    memset(&w, 0, sizeof(w));
    snprintf(w.folder, sizeof(w.folder), "%s", m.folder);
    w.index_id = m.index_id;
    w.seq = m.seq;
    w.nb = nb;
    w.bits = want;
    lr_buf_reset(&out);
    assert_int_equal(lr_summary_want_encode(&w, &out, &err), 0);
    assert_int_equal(lr_summary_want_decode(out.data, out.len, &w2, &err), 0);
    assert_string_equal(w2.folder, "f");
    assert_int_equal(w2.nb, nb);
    assert_true(w2.index_id == 7 && w2.seq == 1);
    assert_memory_equal(w2.bits, want, nb / 8);
    lr_summary_want_release(&w2);
    lr_summary_want_release(&w2);

    free(want);
    lr_summary_msg_release(&m);
    lr_buf_release(&out);
    lr_summary_free(ls);
    lr_summary_free(rs);
    free_set(&local);
    free_set(&remote);
}

/* ---- forged SUMMARY payloads ---------------------------------------------------- */

struct forge {
    const char *folder;
    uint64_t index_id, seq, nb, n, nvv;
    int64_t raw_len; /* -1: the body's length */
    uint64_t comp;   /* 0 raw, 1 zstd of the body */
    struct lr_buf body;
    const uint8_t *zbody; /* used instead of compressing, if set */
    size_t zlen;
    size_t trailing;
};

static void forge_init(struct forge *f)
{
    memset(f, 0, sizeof(*f));
    f->folder = "f";
    f->index_id = 1;
    f->nb = 1;
    f->raw_len = -1;
    lr_buf_init(&f->body, 1u << 26);
}

static void put_vv1(struct lr_buf *b, uint64_t id, uint64_t c)
{
    lr_buf_put_varint(b, 1);
    lr_buf_put_u64(b, id);
    lr_buf_put_u64(b, c);
}

/* A valid body: nb buckets, n entries all in bucket 0 (digest nonzero), one
 * vector, refs 0, 1, 1, ... */
static void forge_valid(struct forge *f, uint64_t nb, uint64_t n)
{
    f->nb = nb;
    f->n = n;
    f->nvv = n ? 1 : 0;
    lr_buf_reset(&f->body);
    for (uint64_t i = 0; i < nb; i++)
        lr_buf_put_varint(&f->body, i == 0 ? n : 0);
    for (uint64_t i = 0; i < nb; i++) {
        uint8_t d[16] = {0};
        if (i == 0 && n)
            d[15] = 1;
        lr_buf_put(&f->body, d, 16);
    }
    if (n)
        put_vv1(&f->body, 5, 9);
    for (uint64_t i = 0; i < n; i++)
        lr_buf_put_varint(&f->body, i == 0 ? 0 : 1);
}

static void forge_out(struct forge *f, struct lr_buf *out)
{
    lr_buf_init(out, 1u << 27);
    lr_buf_put_lbytes(out, f->folder, strlen(f->folder));
    lr_buf_put_u64(out, f->index_id);
    lr_buf_put_varint(out, f->seq);
    lr_buf_put_varint(out, f->nb);
    lr_buf_put_varint(out, f->n);
    lr_buf_put_varint(out, f->nvv);
    lr_buf_put_varint(out, f->raw_len < 0 ? f->body.len : (uint64_t)f->raw_len);
    lr_buf_put_varint(out, f->comp);
    if (f->zbody) {
        lr_buf_put_lbytes(out, f->zbody, f->zlen);
    } else if (f->comp == 1) {
        size_t cap = ZSTD_compressBound(f->body.len);
        uint8_t *z = malloc(cap);
        size_t zl = ZSTD_compress(z, cap, f->body.data, f->body.len, 3);
        assert_false(ZSTD_isError(zl));
        lr_buf_put_lbytes(out, z, zl);
        free(z);
    } else {
        lr_buf_put_lbytes(out, f->body.data, f->body.len);
    }
    for (size_t i = 0; i < f->trailing; i++)
        lr_buf_put_u8(out, 0);
    assert_true(lr_buf_ok(out));
}

/* Decode f: expect `code` (0: success) and, on failure, `field` in the message. */
static void expect_decode(struct forge *f, int code, const char *field)
{
    struct lr_buf out;
    struct lr_summary_msg m;
    struct lr_err err;
    lr_err_clear(&err);
    forge_out(f, &out);
    int rc = lr_summary_decode(out.data, out.len, &m, &err);
    if (rc != code)
        fail_msg("expected %d for %s, got %d (%s)", code, field, rc, err.msg);
    if (code == 0) {
        lr_summary_msg_release(&m);
    } else {
        if (!strstr(err.msg, field))
            fail_msg("message '%s' does not name %s", err.msg, field);
        assert_int_equal(err.code, code);
        assert_null(m.count);
        assert_null(m.entry_vv);
        assert_int_equal(m.n, 0);
    }
    lr_buf_release(&out);
}

static void test_decode_rejects(void **state)
{
    (void)state;
    struct forge f;
    forge_init(&f);
    forge_valid(&f, 4, 3);
    expect_decode(&f, 0, "");
    f.comp = 1;
    expect_decode(&f, 0, "");
    f.comp = 0;

    const char *badf[] = {"", "a/b", "..", ".", "x\ny"};
    for (size_t i = 0; i < 5; i++) {
        f.folder = badf[i];
        expect_decode(&f, LR_EBADVAL, "summary.folder");
    }
    f.folder = "f";
    f.index_id = 0;
    expect_decode(&f, LR_EBADVAL, "summary.index_id");
    f.index_id = 1;
    uint64_t badnb[] = {0, 3, 12, 131072, 1u << 30};
    for (size_t i = 0; i < 5; i++) {
        f.nb = badnb[i];
        expect_decode(&f, LR_EBADVAL, "summary.nb");
    }
    f.nb = 4;
    f.n = LR_SUMMARY_ENTRIES_MAX + 1;
    expect_decode(&f, LR_ETOOBIG, "summary.n");
    f.n = 3;
    f.nvv = 4;
    expect_decode(&f, LR_EBADVAL, "summary.nvv");
    f.nvv = 0;
    expect_decode(&f, LR_EBADVAL, "summary.nvv");
    f.n = 2u << 20;
    f.nvv = LR_SUMMARY_VVS_MAX + 1;
    expect_decode(&f, LR_ETOOBIG, "summary.nvv");
    f.n = 3;
    f.nvv = 1;
    f.raw_len = LR_SUMMARY_RAW_MAX + 1;
    expect_decode(&f, LR_ETOOBIG, "summary.raw_len");
    f.raw_len = 4 * 17 + 17 + 3 - 1; /* below the smallest body */
    expect_decode(&f, LR_EBADVAL, "summary.raw_len");
    f.raw_len = 4 * 20 + (2 + 16 * 1024) + 3 * 4 + 1; /* above the largest */
    expect_decode(&f, LR_EBADVAL, "summary.raw_len");
    f.raw_len = (int64_t)f.body.len + 1; /* raw body shorter than declared */
    expect_decode(&f, LR_EBADVAL, "summary.body");
    f.raw_len = -1;
    f.comp = 2;
    expect_decode(&f, LR_EBADVAL, "summary.compression");
    f.comp = 0;
    f.trailing = 1;
    expect_decode(&f, LR_EBADVAL, "summary.body");
    f.trailing = 0;

    /* zstd frames: garbage, wrong declared size, not smaller, two frames. */
    uint8_t junk[40];
    memset(junk, 0x5a, sizeof(junk));
    f.comp = 1;
    f.zbody = junk;
    f.zlen = sizeof(junk);
    expect_decode(&f, LR_EBADVAL, "summary.body");
    {
        uint8_t z[256];
        size_t zl = ZSTD_compress(z, sizeof(z), f.body.data, f.body.len - 1, 3);
        f.zbody = z;
        f.zlen = zl;
        expect_decode(&f, LR_EBADVAL, "summary.body"); /* declares raw_len - 1 */
        zl = ZSTD_compress(z, sizeof(z), f.body.data, f.body.len, 3);
        memcpy(z + zl, z, zl);
        f.zlen = 2 * zl;
        expect_decode(&f, LR_EBADVAL, "summary.body"); /* two frames */
        /* Corrupted content with the right header. */
        f.zlen = zl;
        z[zl - 1] ^= 0xff;
        z[zl - 2] ^= 0xff;
        struct lr_buf out;
        forge_out(&f, &out);
        struct lr_summary_msg m;
        struct lr_err err;
        int rc = lr_summary_decode(out.data, out.len, &m, &err);
        assert_true(rc == LR_EBADVAL);
        lr_buf_release(&out);
    }
    {
        /* A frame not smaller than the body. */
        uint8_t z[1024];
        size_t zl = ZSTD_compress(z, sizeof(z), f.body.data, f.body.len, 3);
        assert_false(ZSTD_isError(zl));
        f.zbody = z;
        f.zlen = zl;
        f.raw_len = (int64_t)zl;                   /* lie: body declared as long as the frame */
        expect_decode(&f, LR_EBADVAL, "summary."); /* raw_len bounds or body */
        f.raw_len = -1;
    }
    f.zbody = NULL;
    f.comp = 0;

    /* Body contents. Counts: exceed n, sum below n. */
    forge_valid(&f, 4, 3);
    f.body.data[0] = 4;
    expect_decode(&f, LR_EBADVAL, "summary.count[0]");
    f.body.data[0] = 2;
    expect_decode(&f, LR_EBADVAL, "summary.count");
    f.body.data[0] = 3;
    f.body.data[4 + 16 + 15] = 1; /* bucket 1 is empty but its digest is not */
    expect_decode(&f, LR_EBADVAL, "summary.digest[1]");
    f.body.data[4 + 16 + 15] = 0;
    expect_decode(&f, 0, "");

    /* Vectors: unsorted ids, zero counter, empty, over LR_VV_MAX. */
    size_t vvat = 4 + 4 * 16;
    struct forge g;
    forge_init(&g);
    g.nb = 1;
    g.n = 1;
    g.nvv = 1;
    lr_buf_put_varint(&g.body, 1);
    lr_buf_put(&g.body, (uint8_t[16]){0, [15] = 1}, 16);
    lr_buf_put_varint(&g.body, 2);
    lr_buf_put_u64(&g.body, 9);
    lr_buf_put_u64(&g.body, 1);
    lr_buf_put_u64(&g.body, 5);
    lr_buf_put_u64(&g.body, 1);
    lr_buf_put_varint(&g.body, 0);
    expect_decode(&g, LR_EBADVAL, "summary.vv[0]");
    g.body.data[1 + 16 + 1 + 16 + 7] = 10; /* ids 9, 10: valid */
    expect_decode(&g, 0, "");
    g.body.data[1 + 16 + 1 + 15] = 0; /* zero counter */
    expect_decode(&g, LR_EBADVAL, "summary.vv[0]");
    g.body.data[1 + 16 + 1 + 15] = 1;
    g.body.data[1 + 16] = 0; /* k = 0 */
    expect_decode(&g, LR_EBADVAL, "summary.vv[0]");
    g.body.data[1 + 16] = 3; /* k = 3: runs into the refs */
    expect_decode(&g, LR_ETRUNC, "summary.vv[0]");
    {
        /* k = 1025 (a two-byte varint) with enough bytes declared. */
        struct forge h;
        forge_init(&h);
        h.n = 1;
        h.nvv = 1;
        lr_buf_put_varint(&h.body, 1);
        lr_buf_put(&h.body, (uint8_t[16]){0, [15] = 1}, 16);
        lr_buf_put_varint(&h.body, LR_VV_MAX + 1);
        for (uint64_t i = 0; i < LR_VV_MAX + 1; i++) {
            lr_buf_put_u64(&h.body, i + 1);
            lr_buf_put_u64(&h.body, 1);
        }
        lr_buf_put_varint(&h.body, 0);
        h.raw_len = (int64_t)h.body.len;
        expect_decode(&h, LR_EBADVAL, "summary.raw_len"); /* over the implied maximum */
        lr_buf_release(&h.body);
    }
    (void)vvat;

    /* Refs: a new vector past nvv, a reference ahead of the used ones, an
     * unused dictionary vector, trailing bytes, truncated refs. */
    struct forge r;
    forge_init(&r);
    r.n = 3;
    r.nvv = 2;
    lr_buf_put_varint(&r.body, 3);
    lr_buf_put(&r.body, (uint8_t[16]){0, [15] = 1}, 16);
    put_vv1(&r.body, 1, 1);
    put_vv1(&r.body, 2, 2);
    size_t refs = r.body.len;
    lr_buf_put_varint(&r.body, 0);
    lr_buf_put_varint(&r.body, 0);
    lr_buf_put_varint(&r.body, 2);
    expect_decode(&r, 0, "");
    r.body.data[refs + 2] = 3; /* 3 back with 2 used */
    expect_decode(&r, LR_EBADVAL, "summary.ref[2]");
    r.body.data[refs + 2] = 0; /* a third new vector of 2 */
    expect_decode(&r, LR_EBADVAL, "summary.ref[2]");
    r.body.data[refs + 1] = 1;
    r.body.data[refs + 2] = 1; /* vector 1 never used */
    expect_decode(&r, LR_EBADVAL, "summary.vv");
    r.body.data[refs + 1] = 0;
    lr_buf_put_u8(&r.body, 0); /* trailing byte in the body */
    expect_decode(&r, LR_EBADVAL, "summary.body");
    r.body.len -= 2; /* last ref missing */
    r.raw_len = (int64_t)r.body.len;
    expect_decode(&r, LR_EBADVAL, "summary.raw_len"); /* fewer bytes than n refs need */
    lr_buf_release(&r.body);

    /* Every truncation of a valid payload fails cleanly. */
    forge_valid(&f, 8, 40);
    for (int c = 0; c < 2; c++) {
        f.comp = (uint64_t)c;
        struct lr_buf out;
        forge_out(&f, &out);
        struct lr_summary_msg m;
        struct lr_err err;
        assert_int_equal(lr_summary_decode(out.data, out.len, &m, &err), 0);
        lr_summary_msg_release(&m);
        for (size_t cut = 0; cut < out.len; cut++) {
            lr_err_clear(&err);
            int rc = lr_summary_decode(out.data, cut, &m, &err);
            assert_true(rc < 0 && rc <= LR_E__FATAL_PEER);
            assert_true(err.msg[0] != '\0');
            assert_null(m.count);
        }
        lr_buf_release(&out);
    }
    lr_buf_release(&f.body);
    lr_buf_release(&g.body);
}

/* ---- SUMMARY_WANT ---------------------------------------------------------------- */

static void want_out(struct lr_buf *out, const char *folder, uint64_t id, uint64_t seq, uint64_t nb,
                     uint64_t comp, const uint8_t *body, size_t bl, size_t trailing)
{
    lr_buf_init(out, 1u << 20);
    lr_buf_put_lbytes(out, folder, strlen(folder));
    lr_buf_put_u64(out, id);
    lr_buf_put_varint(out, seq);
    lr_buf_put_varint(out, nb);
    lr_buf_put_varint(out, comp);
    lr_buf_put_lbytes(out, body, bl);
    for (size_t i = 0; i < trailing; i++)
        lr_buf_put_u8(out, 1);
}

static void expect_want(struct lr_buf *out, int code, const char *field)
{
    struct lr_summary_want w;
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_summary_want_decode(out->data, out->len, &w, &err);
    if (rc != code)
        fail_msg("expected %d for %s, got %d (%s)", code, field, rc, err.msg);
    if (code) {
        assert_non_null(strstr(err.msg, field));
        assert_null(w.bits);
    }
    lr_summary_want_release(&w);
    lr_buf_release(out);
}

static void test_want(void **state)
{
    (void)state;
    uint32_t nbs[] = {1, 2, 8, 16, 4096, 65536};
    for (size_t t = 0; t < sizeof(nbs) / sizeof(nbs[0]); t++) {
        for (int dense = 0; dense < 3; dense++) {
            uint32_t nb = nbs[t];
            size_t bl = (nb + 7) / 8;
            struct lr_summary_want w, back;
            memset(&w, 0, sizeof(w));
            snprintf(w.folder, sizeof(w.folder), "music");
            w.index_id = rnd() | 1;
            w.seq = rnd() >> 3;
            w.nb = nb;
            w.bits = calloc(bl, 1);
            for (uint32_t i = 0; i < nb; i++)
                if (dense == 2 || (dense == 1 && rnd() % 2) || (dense == 0 && rnd() % 997 == 0))
                    w.bits[i / 8] |= (uint8_t)(1u << (i % 8));
            struct lr_buf out;
            struct lr_err err;
            lr_buf_init(&out, LR_PROTO_SUMMARY_WANT_MAX);
            assert_int_equal(lr_summary_want_encode(&w, &out, &err), 0);
            assert_true(out.len <= LR_PROTO_SUMMARY_WANT_MAX);
            assert_int_equal(lr_summary_want_decode(out.data, out.len, &back, &err), 0);
            assert_string_equal(back.folder, "music");
            assert_true(back.index_id == w.index_id && back.seq == w.seq);
            assert_int_equal(back.nb, nb);
            assert_memory_equal(back.bits, w.bits, bl);
            /* Truncations. */
            for (size_t cut = 0; cut < out.len; cut += (out.len > 300 ? 37 : 1)) {
                struct lr_summary_want x;
                assert_true(lr_summary_want_decode(out.data, cut, &x, &err) < 0);
                assert_null(x.bits);
            }
            lr_summary_want_release(&back);
            free(w.bits);
            lr_buf_release(&out);
        }
    }

    /* Encoder refusals. */
    uint8_t bits[8192] = {0};
    struct lr_summary_want w;
    memset(&w, 0, sizeof(w));
    snprintf(w.folder, sizeof(w.folder), "f");
    w.index_id = 1;
    w.nb = 4;
    w.bits = bits;
    struct lr_buf out;
    lr_buf_init(&out, LR_PROTO_SUMMARY_WANT_MAX);
    bits[0] = 0x10; /* bit 4 of 4 */
    assert_int_equal(lr_summary_want_encode(&w, &out, NULL), LR_EBADVAL);
    bits[0] = 0x0f;
    w.nb = 3;
    assert_int_equal(lr_summary_want_encode(&w, &out, NULL), LR_EBADVAL);
    w.nb = 4;
    w.index_id = 0;
    assert_int_equal(lr_summary_want_encode(&w, &out, NULL), LR_EBADVAL);
    w.index_id = 1;
    w.folder[0] = '\0';
    assert_int_equal(lr_summary_want_encode(&w, &out, NULL), LR_EBADVAL);
    snprintf(w.folder, sizeof(w.folder), "f");
    w.bits = NULL;
    assert_int_equal(lr_summary_want_encode(&w, &out, NULL), LR_EBADVAL);
    assert_int_equal(out.len, 0);
    lr_buf_release(&out);

    /* Decoder refusals. */
    uint8_t one = 0x0f;
    want_out(&out, "f", 1, 0, 4, 0, &one, 1, 0);
    expect_want(&out, 0, "");
    one = 0x1f;
    want_out(&out, "f", 1, 0, 4, 0, &one, 1, 0);
    expect_want(&out, LR_EBADVAL, "summary_want.bits");
    one = 0x02;
    want_out(&out, "f", 1, 0, 1, 0, &one, 1, 0);
    expect_want(&out, LR_EBADVAL, "summary_want.bits");
    one = 0x01;
    want_out(&out, "f", 1, 0, 1, 0, &one, 1, 1);
    expect_want(&out, LR_EBADVAL, "summary_want.bits");
    want_out(&out, "..", 1, 0, 1, 0, &one, 1, 0);
    expect_want(&out, LR_EBADVAL, "summary_want.folder");
    want_out(&out, "f", 0, 0, 1, 0, &one, 1, 0);
    expect_want(&out, LR_EBADVAL, "summary_want.index_id");
    want_out(&out, "f", 1, 0, 0, 0, &one, 1, 0);
    expect_want(&out, LR_EBADVAL, "summary_want.nb");
    want_out(&out, "f", 1, 0, 6, 0, &one, 1, 0);
    expect_want(&out, LR_EBADVAL, "summary_want.nb");
    want_out(&out, "f", 1, 0, 131072, 0, bits, sizeof(bits), 0);
    expect_want(&out, LR_EBADVAL, "summary_want.nb");
    want_out(&out, "f", 1, 0, 8, 2, &one, 1, 0);
    expect_want(&out, LR_EBADVAL, "summary_want.compression");
    want_out(&out, "f", 1, 0, 16, 0, &one, 1, 0); /* 1 byte for 16 bits */
    expect_want(&out, LR_EBADVAL, "summary_want.bits");
    want_out(&out, "f", 1, 0, 65536, 0, bits, sizeof(bits) - 1, 0);
    expect_want(&out, LR_EBADVAL, "summary_want.bits");
    {
        /* zstd: wrong declared size, and set tail bits hidden in a frame. */
        uint8_t z[128], raw[2] = {0, 0};
        size_t zl = ZSTD_compress(z, sizeof(z), bits, 64, 3);
        want_out(&out, "f", 1, 0, 1024, 1, z, zl, 0); /* declares 64, 128 expected */
        expect_want(&out, LR_EBADVAL, "summary_want.bits");
        zl = ZSTD_compress(z, sizeof(z), bits, 128, 3);
        want_out(&out, "f", 1, 0, 1024, 1, z, zl, 0);
        expect_want(&out, 0, "");
        (void)raw;
        memset(bits, 0, 8);
        bits[0] = 0x04; /* nb = 2: bit 2 set */
        raw[0] = 0x04;
        want_out(&out, "f", 1, 0, 2, 0, raw, 1, 0);
        expect_want(&out, LR_EBADVAL, "summary_want.bits");
        bits[0] = 0;
    }
}

/* ---- sizes ------------------------------------------------------------------------- */

/* Bytes of the full INDEX (all batches) of the set, as the daemon sends it. */
static size_t full_index_bytes(const struct set *set)
{
    struct lr_proto_index_batch b;
    struct lr_buf out;
    size_t total = 0, i = 0;
    assert_int_equal(lr_proto_index_batch_init(&b, "folder", 42, 0, 0), 0);
    lr_buf_init(&out, LR_PROTO_INDEX_MAX);
    while (i < set->n) {
        size_t nb = 0;
        int rc = lr_proto_index_batch_add(&b, &set->r[i], &nb);
        if (rc == 0) {
            i++;
            continue;
        }
        assert_int_equal(rc, LR_PROTO_BATCH_FULL);
        lr_buf_reset(&out);
        assert_int_equal(lr_proto_index_batch_finish(&b, 0, &out), 0);
        total += out.len;
    }
    lr_buf_reset(&out);
    assert_int_equal(lr_proto_index_batch_finish(&b, LR_PROTO_INDEX_LAST, &out), 0);
    total += out.len;
    lr_buf_release(&out);
    lr_proto_index_batch_release(&b);
    return total;
}

static size_t summary_bytes(const struct set *set)
{
    struct lr_summary *s = build(set, lr_summary_nbuckets(set->n), NULL);
    struct lr_buf out;
    struct lr_err err;
    lr_buf_init(&out, LR_PROTO_SUMMARY_MAX);
    int rc = lr_summary_encode(s, "folder", 42, set->n, &out, &err);
    if (rc != 0)
        fail_msg("encode: %s", err.msg);
    /* And it decodes. */
    struct lr_summary_msg m;
    assert_int_equal(lr_summary_decode(out.data, out.len, &m, &err), 0);
    assert_int_equal(m.n, set->n);
    lr_summary_msg_release(&m);
    size_t n = out.len;
    lr_buf_release(&out);
    lr_summary_free(s);
    return n;
}

static void test_sizes_100k(void **state)
{
    (void)state;
    struct set set;
    const size_t n = 100000;
    mk_set(&set, n, 1764100000, n / 5); /* first scan: 5 scan seconds in runs */
    for (size_t i = 0; i < n; i++)
        set.r[i].seq = i + 1;
    size_t full = full_index_bytes(&set);
    size_t runs = summary_bytes(&set);
    /* Worst case: every vector differs (two devices, counters spread). */
    for (size_t i = 0; i < n; i++) {
        lr_vv_release(&set.r[i].vv);
        assert_int_equal(lr_vv_set(&set.r[i].vv, SELF, 1764100000 + (rnd() % 100000000)), 0);
        assert_int_equal(lr_vv_set(&set.r[i].vv, SELF + 99, 1 + i), 0);
    }
    size_t distinct = summary_bytes(&set);
    /* Distinct single-device vectors: {self: T + i}. */
    for (size_t i = 0; i < n; i++) {
        lr_vv_release(&set.r[i].vv);
        assert_int_equal(lr_vv_set(&set.r[i].vv, SELF, 1764100000 + i), 0);
    }
    size_t distinct1 = summary_bytes(&set);
    printf("sizes for %zu entries (%u buckets): full INDEX %zu bytes; SUMMARY with 5 vectors "
           "%zu bytes (%.2f%%); all vectors distinct {self: T+i} %zu bytes (%.2f%%); all "
           "distinct, two random counters %zu bytes (%.2f%%)\n",
           n, lr_summary_nbuckets(n), full, runs, 100.0 * (double)runs / (double)full, distinct1,
           100.0 * (double)distinct1 / (double)full, distinct,
           100.0 * (double)distinct / (double)full);
    assert_true(runs * 10 < full);
    assert_true(distinct <= LR_PROTO_SUMMARY_MAX);
    free_set(&set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_fields),  cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_builder_order),  cmocka_unit_test(test_add_rejects),
        cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_diff),
        cmocka_unit_test(test_decode_rejects), cmocka_unit_test(test_want),
        cmocka_unit_test(test_sizes_100k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
