/*
 * test_sync_plan.c - chunk source plans (all local, all remote, mixed,
 * duplicates, rebuilt byte for byte against a naive model) and the apply
 * order of a pull round.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hash/hash.h"
#include "index/index.h"
#include "sync/decide.h"
#include "sync/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x243f6a8885a308d3u;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

static unsigned rndn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* ---- a small world of chunks: symbol s has a length and bytes of its own ---- */

static uint32_t sym_len(int s)
{
    return 50 + (uint32_t)s * 13;
}

static uint8_t sym_byte(int s, uint32_t i)
{
    return (uint8_t)(s * 31 + i * 7 + 1);
}

static void sym_hash(int s, struct lr_hash *h)
{
    uint8_t buf[1024];
    for (uint32_t i = 0; i < sym_len(s); i++)
        buf[i] = sym_byte(s, i);
    lr_sha256(buf, sym_len(s), h);
}

/* Chunk list of a sequence of symbols (offsets deliberately wrong: ignored). */
static struct lr_chunk *chunks_of(const int *syms, size_t n)
{
    struct lr_chunk *c = calloc(n ? n : 1, sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        c[i].len = sym_len(syms[i]);
        c[i].off = 12345;
        sym_hash(syms[i], &c[i].hash);
    }
    return c;
}

static size_t bytes_of(const int *syms, size_t n, uint8_t *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        for (uint32_t k = 0; k < sym_len(syms[i]); k++)
            out[o++] = sym_byte(syms[i], k);
    return o;
}

#define MAXF 8
#define MAXS 64

/* Local files: each a symbol sequence; the lookup answers with the first place. */
struct world {
    int nfiles;
    char names[MAXF][16];
    int syms[MAXF][MAXS];
    size_t nsyms[MAXF];
    int calls;
    int asked[4096]; /* symbol -> times asked */
    int fail_at;     /* call number that fails (0: never) */
};

static int lookup(void *user, const struct lr_hash *h, uint32_t len, struct lr_plan_cand *out)
{
    struct world *w = user;
    w->calls++;
    if (w->fail_at && w->calls == w->fail_at)
        return -5;
    for (int s = 0; s < 200; s++) {
        struct lr_hash hs;
        sym_hash(s, &hs);
        if (sym_len(s) != len || memcmp(&hs, h, sizeof(hs)) != 0)
            continue;
        w->asked[s]++;
        for (int f = 0; f < w->nfiles; f++) {
            uint64_t off = 0;
            for (size_t i = 0; i < w->nsyms[f]; i++) {
                if (w->syms[f][i] == s) {
                    out->path = (const uint8_t *)w->names[f];
                    out->path_len = strlen(w->names[f]);
                    out->off = off;
                    return 1;
                }
                off += sym_len(w->syms[f][i]);
            }
        }
        return 0;
    }
    fail();
    return -1;
}

static void world_file(struct world *w, const char *name, const int *syms, size_t n)
{
    int f = w->nfiles++;
    snprintf(w->names[f], sizeof(w->names[f]), "%s", name);
    memcpy(w->syms[f], syms, n * sizeof(int));
    w->nsyms[f] = n;
}

/*
 * Rebuild the target from the plan like the daemon would (LOCAL and REMOTE
 * first, SELF after) and check the plan's invariants on the way.
 */
static void check_plan(const struct lr_plan *p, const int *syms, size_t n, const struct world *w)
{
    static uint8_t want[MAXS * 1024], got[MAXS * 1024], file[MAXS * 1024];
    size_t size = bytes_of(syms, n, want);
    assert_int_equal(p->size, size);
    memset(got, 0xEE, size);
    uint64_t off = 0, local = 0, remote = 0, self = 0;
    size_t chunk = 0;
    for (size_t k = 0; k < p->nops; k++) {
        const struct lr_plan_op *o = &p->ops[k];
        /* contiguous cover, in order */
        assert_int_equal(o->off, off);
        assert_int_equal(o->chunk, chunk);
        assert_true(o->nchunks > 0);
        uint64_t len = 0;
        for (size_t c = o->chunk; c < o->chunk + o->nchunks; c++)
            len += sym_len(syms[c]);
        assert_int_equal(o->len, len);
        off += len;
        chunk += o->nchunks;
        if (o->src == LR_PLAN_LOCAL) {
            assert_true(o->path < p->npaths);
            int f = -1;
            for (int i = 0; i < w->nfiles; i++)
                if (strlen(w->names[i]) == p->paths[o->path].len &&
                    memcmp(w->names[i], p->paths[o->path].p, p->paths[o->path].len) == 0)
                    f = i;
            assert_true(f >= 0);
            size_t fs = bytes_of(w->syms[f], w->nsyms[f], file);
            assert_true(o->src_off + o->len <= fs);
            memcpy(got + o->off, file + o->src_off, o->len);
            local += o->len;
        } else if (o->src == LR_PLAN_REMOTE) {
            memcpy(got + o->off, want + o->off, o->len); /* the peer sends the truth */
            remote += o->len;
        } else {
            self += o->len;
        }
        /* maximal runs: the next op could not have been joined */
        if (k + 1 < p->nops) {
            const struct lr_plan_op *q = &p->ops[k + 1];
            if (q->src == o->src) {
                assert_true(o->src != LR_PLAN_REMOTE);
                if (o->src == LR_PLAN_LOCAL)
                    assert_true(q->path != o->path || o->src_off + o->len != q->src_off);
                else
                    assert_true(o->src_off + o->len != q->src_off);
            }
        }
    }
    assert_int_equal(off, size);
    assert_int_equal(chunk, n);
    for (size_t k = 0; k < p->nops; k++) {
        const struct lr_plan_op *o = &p->ops[k];
        if (o->src != LR_PLAN_SELF)
            continue;
        /* copies only bytes that are fetched (or placed) before it */
        assert_true(o->src_off + o->len <= o->off);
        memmove(got + o->off, got + o->src_off, o->len);
    }
    assert_memory_equal(got, want, size);
    assert_int_equal(p->local_bytes, local);
    assert_int_equal(p->remote_bytes, remote);
    assert_int_equal(p->self_bytes, self);
    /* each distinct chunk asked once and fetched at most once */
    size_t distinct_remote = 0;
    for (size_t i = 0; i < n; i++) {
        bool first = true;
        for (size_t j = 0; j < i; j++)
            if (syms[j] == syms[i])
                first = false;
        if (!first)
            continue;
        assert_int_equal(w->asked[syms[i]], 1);
        bool have = false;
        for (int f = 0; f < w->nfiles; f++)
            for (size_t k = 0; k < w->nsyms[f]; k++)
                if (w->syms[f][k] == syms[i])
                    have = true;
        if (!have)
            distinct_remote++;
    }
    assert_int_equal(p->remote_chunks, distinct_remote);
}

static void plan_case(struct world *w, const int *syms, size_t n, struct lr_plan *p)
{
    struct lr_chunk *c = chunks_of(syms, n);
    struct lr_err err = {0};
    memset(w->asked, 0, sizeof(w->asked));
    w->calls = 0;
    assert_int_equal(lr_plan_build(c, n, lookup, w, p, &err), 0);
    check_plan(p, syms, n, w);
    free(c);
}

static void test_plan_all_remote(void **state)
{
    (void)state;
    struct world w = {0};
    const int t[] = {1, 2, 3, 4};
    struct lr_plan p;
    plan_case(&w, t, 4, &p);
    assert_int_equal(p.nops, 1);
    assert_int_equal(p.ops[0].src, LR_PLAN_REMOTE);
    assert_int_equal(p.ops[0].nchunks, 4);
    assert_int_equal(p.remote_chunks, 4);
    assert_int_equal(p.npaths, 0);
    assert_int_equal(w.calls, 4);
    lr_plan_release(&p);
    /* no lookup at all */
    struct lr_chunk *c = chunks_of(t, 4);
    assert_int_equal(lr_plan_build(c, 4, NULL, NULL, &p, NULL), 0);
    assert_int_equal(p.nops, 1);
    assert_int_equal(p.remote_bytes, p.size);
    lr_plan_release(&p);
    lr_plan_release(&p);
    free(c);
}

static void test_plan_all_local(void **state)
{
    (void)state;
    struct world w = {0};
    const int old[] = {9, 1, 2, 3, 4};
    world_file(&w, "old.bin", old, 5);
    const int t[] = {1, 2, 3, 4};
    struct lr_plan p;
    /* a file whose first chunk was cut: one copy of the rest */
    plan_case(&w, t, 4, &p);
    assert_int_equal(p.nops, 1);
    assert_int_equal(p.ops[0].src, LR_PLAN_LOCAL);
    assert_int_equal(p.ops[0].src_off, sym_len(9));
    assert_int_equal(p.npaths, 1);
    assert_string_equal((char *)p.paths[0].p, "old.bin");
    assert_int_equal(p.remote_bytes, 0);
    lr_plan_release(&p);
    /* reordered chunks: one run each */
    const int r[] = {4, 3, 2, 1};
    plan_case(&w, r, 4, &p);
    assert_int_equal(p.nops, 4);
    lr_plan_release(&p);
    /* from two files: runs split by path, paths interned once */
    const int other[] = {5, 6};
    world_file(&w, "b/other", other, 2);
    const int m[] = {1, 2, 5, 6, 3, 4};
    plan_case(&w, m, 6, &p);
    assert_int_equal(p.nops, 3);
    assert_int_equal(p.npaths, 2);
    assert_int_equal(p.ops[0].path, p.ops[2].path);
    assert_int_not_equal(p.ops[0].path, p.ops[1].path);
    lr_plan_release(&p);
}

static void test_plan_mixed(void **state)
{
    (void)state;
    struct world w = {0};
    const int old[] = {1, 3};
    world_file(&w, "f", old, 2);
    const int t[] = {1, 2, 3, 4, 5};
    struct lr_plan p;
    plan_case(&w, t, 5, &p);
    assert_int_equal(p.nops, 4);
    assert_int_equal(p.ops[0].src, LR_PLAN_LOCAL);
    assert_int_equal(p.ops[1].src, LR_PLAN_REMOTE);
    assert_int_equal(p.ops[2].src, LR_PLAN_LOCAL);
    assert_int_equal(p.ops[2].src_off, sym_len(1));
    assert_int_equal(p.ops[3].src, LR_PLAN_REMOTE);
    assert_int_equal(p.ops[3].nchunks, 2); /* adjacent remote chunks merged */
    assert_int_equal(p.remote_chunks, 3);
    lr_plan_release(&p);
}

static void test_plan_duplicates(void **state)
{
    (void)state;
    struct world w = {0};
    struct lr_plan p;
    /* one chunk four times: fetched once, copied three times */
    const int a[] = {7, 7, 7, 7};
    plan_case(&w, a, 4, &p);
    assert_int_equal(p.remote_chunks, 1);
    assert_int_equal(p.remote_bytes, sym_len(7));
    assert_int_equal(p.self_bytes, 3 * sym_len(7));
    assert_int_equal(w.calls, 1);
    assert_int_equal(p.ops[0].src, LR_PLAN_REMOTE);
    for (size_t i = 1; i < p.nops; i++) {
        assert_int_equal(p.ops[i].src, LR_PLAN_SELF);
        assert_int_equal(p.ops[i].src_off, 0);
    }
    lr_plan_release(&p);
    /* a repeated run copies as one run */
    const int b[] = {1, 2, 1, 2, 3};
    plan_case(&w, b, 5, &p);
    assert_int_equal(p.nops, 3);
    assert_int_equal(p.ops[0].src, LR_PLAN_REMOTE);
    assert_int_equal(p.ops[0].nchunks, 2);
    assert_int_equal(p.ops[1].src, LR_PLAN_SELF);
    assert_int_equal(p.ops[1].nchunks, 2);
    assert_int_equal(p.ops[1].src_off, 0);
    assert_int_equal(p.ops[2].src, LR_PLAN_REMOTE);
    assert_int_equal(p.remote_chunks, 3);
    lr_plan_release(&p);
    /* a duplicate of a local chunk comes from the same local place */
    const int old[] = {4};
    world_file(&w, "o", old, 1);
    const int c[] = {4, 5, 4};
    plan_case(&w, c, 3, &p);
    assert_int_equal(p.nops, 3);
    assert_int_equal(p.ops[2].src, LR_PLAN_LOCAL);
    assert_int_equal(p.ops[2].src_off, 0);
    assert_int_equal(p.self_bytes, 0);
    lr_plan_release(&p);
    /* same hash, other length: not the same chunk */
    struct lr_chunk two[2];
    memset(two, 0, sizeof(two));
    two[0].len = 10;
    two[1].len = 20;
    assert_int_equal(lr_plan_build(two, 2, NULL, NULL, &p, NULL), 0);
    assert_int_equal(p.remote_chunks, 2);
    assert_int_equal(p.self_bytes, 0);
    lr_plan_release(&p);
}

static void test_plan_random(void **state)
{
    (void)state;
    for (int iter = 0; iter < 3000; iter++) {
        struct world w = {0};
        int nf = (int)rndn(4);
        for (int f = 0; f < nf; f++) {
            int s[MAXS];
            size_t n = 1 + rndn(12);
            for (size_t i = 0; i < n; i++)
                s[i] = (int)rndn(12);
            char name[16];
            snprintf(name, sizeof(name), "f%d", f);
            world_file(&w, name, s, n);
        }
        int t[MAXS];
        size_t n = rndn(MAXS);
        for (size_t i = 0; i < n; i++)
            t[i] = rndn(3) ? (int)rndn(12) : (int)(12 + rndn(6));
        struct lr_plan p;
        plan_case(&w, t, n, &p);
        lr_plan_release(&p);
    }
}

static void test_plan_repeated_half(void **state)
{
    (void)state;
    /* a file that is two copies of the same 300 chunks: fetch half, one SELF run */
    enum { N = 300 };
    struct lr_chunk *c = calloc(2 * N, sizeof(*c));
    for (size_t i = 0; i < 2 * N; i++) {
        c[i].len = 100;
        uint32_t v = (uint32_t)(i % N);
        lr_sha256(&v, sizeof(v), &c[i].hash);
    }
    struct lr_plan p;
    struct lr_err err = {0};
    assert_int_equal(lr_plan_build(c, 2 * N, NULL, NULL, &p, &err), 0);
    assert_int_equal(p.remote_chunks, N);
    assert_int_equal(p.self_bytes, 100 * N);
    assert_int_equal(p.nops, 2);
    assert_int_equal(p.ops[1].src, LR_PLAN_SELF);
    assert_int_equal(p.ops[1].off, 100 * N);
    assert_int_equal(p.ops[1].src_off, 0);
    assert_int_equal(p.ops[1].nchunks, N);
    lr_plan_release(&p);
    free(c);
}

static int lookup_distinct(void *user, const struct lr_hash *h, uint32_t len,
                           struct lr_plan_cand *out)
{
    (void)len;
    static char name[16];
    int *calls = user;
    (*calls)++;
    snprintf(name, sizeof(name), "p%u", h->b[0] % 50u);
    out->path = (const uint8_t *)name;
    out->path_len = strlen(name);
    out->off = h->b[1];
    return 1;
}

static void test_plan_interning(void **state)
{
    (void)state;
    enum { N = 500 };
    struct lr_chunk *c = calloc(N, sizeof(*c));
    bool seen[50] = {false};
    size_t want = 0;
    for (size_t i = 0; i < N; i++) {
        c[i].len = 64;
        uint32_t v = (uint32_t)i;
        lr_sha256(&v, sizeof(v), &c[i].hash);
        if (!seen[c[i].hash.b[0] % 50]) {
            seen[c[i].hash.b[0] % 50] = true;
            want++;
        }
    }
    int calls = 0;
    struct lr_plan p;
    assert_int_equal(lr_plan_build(c, N, lookup_distinct, &calls, &p, NULL), 0);
    assert_int_equal(calls, N);
    assert_int_equal(p.npaths, want);
    for (size_t i = 0; i < p.nops; i++) {
        const struct lr_plan_op *o = &p.ops[i];
        assert_int_equal(o->src, LR_PLAN_LOCAL);
        char name[16];
        snprintf(name, sizeof(name), "p%u", c[o->chunk].hash.b[0] % 50u);
        assert_string_equal((char *)p.paths[o->path].p, name);
        assert_int_equal(o->src_off, c[o->chunk].hash.b[1]);
    }
    for (size_t i = 0; i < p.npaths; i++)
        for (size_t j = i + 1; j < p.npaths; j++)
            assert_string_not_equal((char *)p.paths[i].p, (char *)p.paths[j].p);
    lr_plan_release(&p);
    free(c);
}

static int lookup_bad_path(void *user, const struct lr_hash *h, uint32_t len,
                           struct lr_plan_cand *out)
{
    (void)user;
    (void)h;
    (void)len;
    out->path = NULL;
    out->path_len = 3;
    return 1;
}

static void test_plan_errors(void **state)
{
    (void)state;
    struct lr_plan p;
    struct lr_err err = {0};
    const int t[] = {1, 2, 3, 1};
    struct lr_chunk *c = chunks_of(t, 4);
    /* an empty file */
    assert_int_equal(lr_plan_build(c, 0, NULL, NULL, &p, &err), 0);
    assert_int_equal(p.nops, 0);
    assert_int_equal(p.size, 0);
    /* a zero-length chunk */
    c[2].len = 0;
    assert_int_equal(lr_plan_build(c, 4, NULL, NULL, &p, &err), LR_EBADVAL);
    assert_int_equal(err.code, LR_EBADVAL);
    c[2].len = sym_len(3);
    /* more chunks than any file may have: refused before reading them */
    assert_int_equal(lr_plan_build(c, (size_t)LR_INDEX_CHUNKS_MAX + 1, NULL, NULL, &p, &err),
                     LR_ETOOBIG);
    /* the lookup's error stops the build; nothing is returned or leaked */
    struct world w = {0};
    const int old[] = {1, 2};
    world_file(&w, "x", old, 2);
    w.fail_at = 2;
    assert_int_equal(lr_plan_build(c, 4, lookup, &w, &p, &err), -5);
    assert_int_equal(err.code, -5);
    assert_null(p.ops);
    assert_null(p.paths);
    assert_int_equal(w.calls, 2);
    /* a lookup that claims a hit without a path is a bug */
    assert_int_equal(lr_plan_build(c, 4, lookup_bad_path, NULL, &p, &err), LR_EUSAGE);
    assert_null(p.ops);
    free(c);
}

/* ---- apply order ----------------------------------------------------------------- */

static bool is_under(const char *anc, const char *p)
{
    size_t n = strlen(anc);
    return strncmp(anc, p, n) == 0 && p[n] == '/';
}

/* Check the ordering rules over every pair (i before j). */
static void check_order(const struct lr_sync_item *it, size_t n, size_t work)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (lr_plan_phase(it[i].d) != LR_SYNC_PHASE_SKIP)
            w++;
    assert_int_equal(work, w);
    for (size_t i = 0; i < n; i++) {
        enum lr_sync_phase pi = lr_plan_phase(it[i].d);
        if (i >= work)
            assert_int_equal(pi, LR_SYNC_PHASE_SKIP);
        for (size_t j = i + 1; j < n; j++) {
            enum lr_sync_phase pj = lr_plan_phase(it[j].d);
            const char *a = (const char *)it[i].path, *b = (const char *)it[j].path;
            /* phases in order */
            assert_true(pi <= pj);
            /* a directory is created before anything inside it */
            if (it[j].d->apply == LR_SYNC_APPLY_DIR && pi != LR_SYNC_PHASE_DELETES)
                assert_false(is_under(b, a));
            /* deletes: children first */
            if (pi == LR_SYNC_PHASE_DELETES && pj == LR_SYNC_PHASE_DELETES)
                assert_false(is_under(a, b));
            /* deletes after every creation except the type changes that wait for them */
            if (pi == LR_SYNC_PHASE_DELETES)
                assert_true(pj == LR_SYNC_PHASE_DELETES || pj == LR_SYNC_PHASE_AFTER ||
                            pj == LR_SYNC_PHASE_SKIP);
            /* a directory replaced by a file waits for its children's deletes */
            if (pi == LR_SYNC_PHASE_AFTER && pj == LR_SYNC_PHASE_DELETES)
                assert_false(is_under(a, b));
        }
    }
}

struct ord_case {
    const char *path;
    struct lr_file_rec l, r;
    bool has_local;
    struct lr_sync_decision d;
};

static void set_rec(struct lr_file_rec *r, const char *path, enum lr_ftype t, bool deleted,
                    uint64_t counter, uint32_t mode)
{
    memset(r, 0, sizeof(*r));
    r->path = (uint8_t *)strdup(path);
    r->path_len = strlen(path);
    r->type = t;
    r->deleted = deleted;
    r->mode = mode;
    r->mtime_ns = 1000;
    if (!deleted && t == LR_FT_FILE) {
        r->size = 10;
        lr_sha256(path, strlen(path), &r->blocks_hash);
    }
    if (!deleted && t == LR_FT_SYMLINK) {
        r->target = (uint8_t *)strdup("tgt");
        r->target_len = 3;
    }
    assert_int_equal(lr_vv_set(&r->vv, 1, counter), 0);
}

static void test_order_round(void **state)
{
    (void)state;
    /* (path, local type or -1, local deleted, remote type, remote deleted, remote mode) */
    struct {
        const char *path;
        int lt;
        int rt;
        bool rdel;
        uint32_t rmode;
        enum lr_sync_phase want;
    } spec[] = {
        {"d", -1, LR_FT_DIR, false, 0755, LR_SYNC_PHASE_DIRS},
        {"d/e", -1, LR_FT_DIR, false, 0755, LR_SYNC_PHASE_DIRS},
        {"d/e/g", -1, LR_FT_FILE, false, 0644, LR_SYNC_PHASE_FILES},
        {"d/f", -1, LR_FT_FILE, false, 0644, LR_SYNC_PHASE_FILES},
        {"x", LR_FT_DIR, LR_FT_DIR, true, 0, LR_SYNC_PHASE_DELETES},
        {"x/y", LR_FT_FILE, LR_FT_FILE, true, 0, LR_SYNC_PHASE_DELETES},
        {"x/z", LR_FT_SYMLINK, LR_FT_SYMLINK, true, 0, LR_SYNC_PHASE_DELETES},
        {"x/w", LR_FT_DIR, LR_FT_DIR, true, 0, LR_SYNC_PHASE_DELETES},
        {"x/w/q", LR_FT_FILE, LR_FT_FILE, true, 0, LR_SYNC_PHASE_DELETES},
        {"t", LR_FT_FILE, LR_FT_DIR, false, 0755, LR_SYNC_PHASE_DIRS},
        {"t/c", -1, LR_FT_FILE, false, 0644, LR_SYNC_PHASE_FILES},
        {"u", LR_FT_DIR, LR_FT_FILE, false, 0644, LR_SYNC_PHASE_AFTER},
        {"u/a", LR_FT_FILE, LR_FT_FILE, true, 0, LR_SYNC_PHASE_DELETES},
        {"u/b", LR_FT_DIR, LR_FT_DIR, true, 0, LR_SYNC_PHASE_DELETES},
        {"v", LR_FT_DIR, LR_FT_SYMLINK, false, 0777, LR_SYNC_PHASE_AFTER},
        {"s", LR_FT_SYMLINK, LR_FT_FILE, false, 0644, LR_SYNC_PHASE_FILES},
        {"k", LR_FT_DIR, LR_FT_DIR, false, 0700, LR_SYNC_PHASE_DIRS},
        {"m", LR_FT_FILE, LR_FT_FILE, false, 0600, LR_SYNC_PHASE_FILES},
        {"r", -1, LR_FT_FILE, true, 0, LR_SYNC_PHASE_FILES},
        {"d.x", -1, LR_FT_FILE, false, 0644, LR_SYNC_PHASE_FILES},
    };
    enum { N = sizeof(spec) / sizeof(spec[0]) };
    struct ord_case c[N + 1];
    memset(c, 0, sizeof(c));
    for (size_t i = 0; i < N; i++) {
        c[i].path = spec[i].path;
        c[i].has_local = spec[i].lt >= 0;
        if (c[i].has_local)
            set_rec(&c[i].l, spec[i].path, (enum lr_ftype)spec[i].lt, false, 1,
                    spec[i].lt == LR_FT_DIR ? 0755 : 0644);
        set_rec(&c[i].r, spec[i].path, (enum lr_ftype)spec[i].rt, spec[i].rdel, 2, spec[i].rmode);
        assert_int_equal(lr_sync_decide(c[i].has_local ? &c[i].l : NULL, &c[i].r, &c[i].d, NULL),
                         LR_SYNC_TAKE_REMOTE);
        assert_int_equal(lr_plan_phase(&c[i].d), spec[i].want);
    }
    /* and one with nothing to do */
    c[N].path = "n";
    c[N].has_local = true;
    set_rec(&c[N].l, "n", LR_FT_FILE, false, 3, 0644);
    set_rec(&c[N].r, "n", LR_FT_FILE, false, 2, 0644);
    assert_int_equal(lr_sync_decide(&c[N].l, &c[N].r, &c[N].d, NULL), LR_SYNC_NOTHING);

    for (int round = 0; round < 200; round++) {
        struct lr_sync_item it[N + 1];
        for (size_t i = 0; i <= N; i++) {
            it[i].path = (const uint8_t *)c[i].path;
            it[i].path_len = strlen(c[i].path);
            it[i].d = &c[i].d;
            it[i].user = &c[i];
        }
        for (size_t i = N; i > 0; i--) {
            size_t j = rndn((unsigned)i + 1);
            struct lr_sync_item tmp = it[i];
            it[i] = it[j];
            it[j] = tmp;
        }
        size_t work = lr_plan_order(it, N + 1);
        assert_int_equal(work, N);
        check_order(it, N + 1, work);
        assert_string_equal((const char *)it[N].path, "n");
        /* the exact order is a function of the set, not of the input order */
        const char *want[] = {"d",   "d/e", "k",   "t",     "d/e/g", "d/f", "d.x", "m",   "r", "s",
                              "t/c", "x/z", "x/y", "x/w/q", "x/w",   "x",   "u/b", "u/a", "u", "v"};
        for (size_t i = 0; i < N; i++)
            assert_string_equal((const char *)it[i].path, want[i]);
    }
    for (size_t i = 0; i <= N; i++) {
        lr_sync_decision_release(&c[i].d);
        lr_file_rec_release(&c[i].l);
        lr_file_rec_release(&c[i].r);
    }
}

static void test_order_random(void **state)
{
    (void)state;
    static const enum lr_sync_apply A[] = {
        LR_SYNC_APPLY_NONE, LR_SYNC_APPLY_RECORD,  LR_SYNC_APPLY_META,  LR_SYNC_APPLY_FILE,
        LR_SYNC_APPLY_DIR,  LR_SYNC_APPLY_SYMLINK, LR_SYNC_APPLY_DELETE};
    enum { N = 40 };
    for (int iter = 0; iter < 500; iter++) {
        char paths[N][32];
        struct lr_sync_decision d[N];
        struct lr_sync_item it[N];
        for (size_t i = 0; i < N; i++) {
            /* paths over a tiny tree so ancestors collide */
            int depth = 1 + (int)rndn(3);
            size_t o = 0;
            for (int k = 0; k < depth; k++)
                o += (size_t)snprintf(paths[i] + o, sizeof(paths[i]) - o, "%s%c", k ? "/" : "",
                                      (char)('a' + rndn(3)));
            memset(&d[i], 0, sizeof(d[i]));
            d[i].apply = A[rndn(7)];
            d[i].old_live = rndn(2);
            d[i].old_type = (enum lr_ftype)rndn(3);
            d[i].new_type = d[i].apply == LR_SYNC_APPLY_DIR       ? LR_FT_DIR
                            : d[i].apply == LR_SYNC_APPLY_SYMLINK ? LR_FT_SYMLINK
                                                                  : (enum lr_ftype)rndn(3);
            if (d[i].old_live && d[i].old_type != d[i].new_type)
                d[i].flags |= LR_SYNC_F_REPLACE_TYPE;
            it[i] = (struct lr_sync_item){(const uint8_t *)paths[i], strlen(paths[i]), &d[i],
                                          (void *)(uintptr_t)i};
        }
        size_t work = lr_plan_order(it, N);
        check_order(it, N, work);
        /* equal paths in one phase keep their input order */
        for (size_t i = 0; i + 1 < N; i++)
            if (strcmp((const char *)it[i].path, (const char *)it[i + 1].path) == 0 &&
                lr_plan_phase(it[i].d) == lr_plan_phase(it[i + 1].d))
                assert_true((uintptr_t)it[i].user < (uintptr_t)it[i + 1].user);
    }
    assert_int_equal(lr_plan_order(NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_all_remote), cmocka_unit_test(test_plan_all_local),
        cmocka_unit_test(test_plan_mixed),      cmocka_unit_test(test_plan_duplicates),
        cmocka_unit_test(test_plan_random),     cmocka_unit_test(test_plan_repeated_half),
        cmocka_unit_test(test_plan_interning),  cmocka_unit_test(test_plan_errors),
        cmocka_unit_test(test_order_round),     cmocka_unit_test(test_order_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
