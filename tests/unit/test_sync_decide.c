/*
 * test_sync_decide.c - the pure sync decisions: version-vector order against
 * a brute-force oracle, merges, modify vs delete in both orders, type
 * changes, conflict symmetry, 3-device convergence, conflict copy names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "identity/identity.h"
#include "index/index.h"
#include "sync/decide.h"
#include "util/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers ----------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic across runs */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

static unsigned rndn(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* 2024-03-05 06:07:08.123456789 UTC */
#define T0 (INT64_C(1709618828) * 1000000000 + 123456789)

/* Vector from (id, counter) pairs; a 0 counter means "absent". */
static void vv_make(struct lr_vv *v, const uint64_t *pairs, size_t npairs)
{
    memset(v, 0, sizeof(*v));
    for (size_t i = 0; i < npairs; i++)
        if (pairs[2 * i + 1])
            assert_int_equal(lr_vv_set(v, pairs[2 * i], pairs[2 * i + 1]), 0);
}

/*
 * A record: `content` names the data (file: size and blocks hash derived from
 * it; symlink: the target "t<content>"; directory: unused).
 */
static void mk(struct lr_file_rec *r, const char *path, enum lr_ftype t, bool deleted,
               unsigned content, int64_t mtime, uint32_t mode, const uint64_t *pairs, size_t npairs)
{
    memset(r, 0, sizeof(*r));
    r->path_len = strlen(path);
    r->path = (uint8_t *)strdup(path);
    r->type = t;
    r->deleted = deleted;
    r->mtime_ns = mtime;
    r->mode = mode;
    if (!deleted && t == LR_FT_FILE) {
        r->size = 1000 + content;
        char tag[32];
        int n = snprintf(tag, sizeof(tag), "content-%u", content);
        lr_sha256(tag, (size_t)n, &r->blocks_hash);
    }
    if (!deleted && t == LR_FT_SYMLINK) {
        char tag[32];
        int n = snprintf(tag, sizeof(tag), "t%u", content);
        r->target = (uint8_t *)strdup(tag);
        r->target_len = (size_t)n;
    }
    vv_make(&r->vv, pairs, npairs);
}

static void rec_copy(struct lr_file_rec *dst, const struct lr_file_rec *src)
{
    *dst = *src;
    dst->path = (uint8_t *)strdup((const char *)src->path);
    dst->target = src->target ? (uint8_t *)strdup((const char *)src->target) : NULL;
    dst->chunks = NULL;
    dst->nchunks = 0;
    memset(&dst->vv, 0, sizeof(dst->vv));
    lr_vv_copy(&dst->vv, &src->vv);
}

/* Same data (type and content), whatever the metadata and vector. */
static bool same_data(const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    if (a->deleted != b->deleted || a->type != b->type)
        return false;
    return a->deleted || (a->size == b->size &&
                          memcmp(&a->blocks_hash, &b->blocks_hash, sizeof(a->blocks_hash)) == 0 &&
                          a->target_len == b->target_len &&
                          (a->target_len == 0 || memcmp(a->target, b->target, a->target_len) == 0));
}

/* Same version: every synced field and the vector. */
static bool rec_same(const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    if (a->deleted != b->deleted || a->type != b->type || !lr_vv_equal(&a->vv, &b->vv))
        return false;
    if (a->deleted)
        return true;
    if (a->mtime_ns != b->mtime_ns || a->mode != b->mode || a->size != b->size ||
        memcmp(&a->blocks_hash, &b->blocks_hash, sizeof(a->blocks_hash)) != 0)
        return false;
    if (a->target_len != b->target_len)
        return false;
    return a->target_len == 0 || memcmp(a->target, b->target, a->target_len) == 0;
}

/* What the device holding `local` stores after the decision (the daemon's job). */
static void apply_result(struct lr_file_rec *local, const struct lr_file_rec *remote,
                         const struct lr_sync_decision *d)
{
    if (d->apply == LR_SYNC_APPLY_NONE)
        return;
    struct lr_file_rec n;
    rec_copy(&n, d->from_remote ? remote : local);
    lr_vv_copy(&n.vv, &d->vv);
    lr_file_rec_release(local);
    *local = n;
}

static int decide(const struct lr_file_rec *l, const struct lr_file_rec *r,
                  struct lr_sync_decision *d)
{
    struct lr_err err = {0};
    int rc = lr_sync_decide(l, r, d, &err);
    assert_true(rc >= 0);
    assert_int_equal(rc, (int)d->action);
    return rc;
}

/* ---- version vectors --------------------------------------------------------- */

enum { O_EQ, O_LT, O_GT, O_CC };

/* Brute force over every id of a small universe. */
static int oracle_order(const uint64_t *a, const uint64_t *b, size_t nid)
{
    bool lt = false, gt = false;
    for (size_t i = 0; i < nid; i++) {
        if (a[i] < b[i])
            lt = true;
        if (a[i] > b[i])
            gt = true;
    }
    return lt && gt ? O_CC : lt ? O_LT : gt ? O_GT : O_EQ;
}

/* Whether counters `a` have seen the version with counters `b` (author
 * unknown: the largest counter, ties to the larger index, as ids ascend). */
static bool oracle_saw(const uint64_t *a, const uint64_t *b, size_t n)
{
    size_t au = 0;
    for (size_t i = 0; i < n; i++)
        if (b[i] >= b[au])
            au = i;
    return b[au] > 0 && a[au] >= b[au];
}

static void test_vv_order_oracle(void **state)
{
    (void)state;
    enum { NID = 4 };
    int seen[4] = {0};
    for (int iter = 0; iter < 20000; iter++) {
        uint64_t ca[NID], cb[NID], pa[2 * NID], pb[2 * NID];
        for (size_t i = 0; i < NID; i++) {
            ca[i] = rndn(4);
            cb[i] = rndn(3) ? ca[i] : rndn(4); /* often equal, to reach EQUAL/LESS */
            uint64_t id = 1000 * (i + 1) + (i == 3 ? UINT64_C(0xffffffff00000000) : 0);
            pa[2 * i] = pb[2 * i] = id;
            pa[2 * i + 1] = ca[i];
            pb[2 * i + 1] = cb[i];
        }
        int want = oracle_order(ca, cb, NID);
        seen[want]++;
        /* different content, so order alone decides the action */
        struct lr_file_rec l, r;
        mk(&l, "f", LR_FT_FILE, false, 1, 10, 0644, pa, NID);
        mk(&r, "f", LR_FT_FILE, false, 2, 20, 0644, pb, NID);
        /* known authors (what a local change stores): the largest counters */
        l.vv.author = lr_sync_vv_author(&l.vv);
        r.vv.author = lr_sync_vv_author(&r.vv);
        struct lr_sync_decision d;
        int act = decide(&l, &r, &d);
        switch (want) {
        case O_EQ:
            assert_int_equal(act, LR_SYNC_NOTHING);
            assert_true(d.flags & LR_SYNC_F_INCONSISTENT);
            break;
        case O_GT:
            assert_int_equal(act, LR_SYNC_NOTHING);
            assert_false(d.flags & LR_SYNC_F_INCONSISTENT);
            assert_int_equal(d.apply, LR_SYNC_APPLY_NONE);
            break;
        case O_LT:
            assert_int_equal(act, LR_SYNC_TAKE_REMOTE);
            assert_true(lr_vv_equal(&d.vv, &r.vv));
            assert_int_equal(d.apply, LR_SYNC_APPLY_FILE);
            break;
        case O_CC: {
            bool r_saw = oracle_saw(cb, ca, NID), l_saw = oracle_saw(ca, cb, NID);
            if (l_saw && !r_saw) {
                assert_int_equal(act, LR_SYNC_NOTHING); /* ours superseded theirs */
                break;
            }
            if (r_saw && !l_saw)
                assert_int_equal(act, LR_SYNC_TAKE_REMOTE); /* theirs superseded ours */
            else
                assert_int_equal(act, LR_SYNC_CONFLICT);
            /* remote has the newer mtime: remote wins, local holds the loser
             * (a conflict: copied); either way with the merged vector */
            assert_true(d.from_remote);
            assert_int_equal(d.copy_here, act == LR_SYNC_CONFLICT);
            uint64_t mx[2 * NID];
            for (size_t i = 0; i < NID; i++) {
                mx[2 * i] = pa[2 * i];
                mx[2 * i + 1] = ca[i] > cb[i] ? ca[i] : cb[i];
            }
            struct lr_vv m;
            vv_make(&m, mx, NID);
            assert_true(lr_vv_equal(&d.vv, &m));
            lr_vv_release(&m);
            break;
        }
        }
        lr_sync_decision_release(&d);
        lr_file_rec_release(&l);
        lr_file_rec_release(&r);
    }
    for (int i = 0; i < 4; i++)
        assert_true(seen[i] > 100);
}

static void test_vv_merge(void **state)
{
    (void)state;
    for (int iter = 0; iter < 2000; iter++) {
        uint64_t pa[16], pb[16], pm[16];
        for (size_t i = 0; i < 8; i++) {
            pa[2 * i] = pb[2 * i] = pm[2 * i] = i * 7 + 1;
            pa[2 * i + 1] = rndn(3) ? 0 : rnd() % 100 + 1;
            pb[2 * i + 1] = rndn(3) ? 0 : rnd() % 100 + 1;
            pm[2 * i + 1] = pa[2 * i + 1] > pb[2 * i + 1] ? pa[2 * i + 1] : pb[2 * i + 1];
        }
        struct lr_vv a, b, m, got, got2;
        vv_make(&a, pa, 8);
        vv_make(&b, pb, 8);
        vv_make(&m, pm, 8);
        assert_int_equal(lr_sync_vv_merge(&a, &b, &got), 0);
        assert_int_equal(lr_sync_vv_merge(&b, &a, &got2), 0);
        assert_true(lr_vv_equal(&got, &m));
        assert_true(lr_vv_equal(&got2, &m));
        for (size_t i = 1; i < got.n; i++)
            assert_true(got.e[i - 1].id < got.e[i].id);
        lr_vv_release(&a);
        lr_vv_release(&b);
        lr_vv_release(&m);
        lr_vv_release(&got);
        lr_vv_release(&got2);
    }
    /* a union above LR_VV_MAX is refused, and leaves out zeroed */
    struct lr_vv a = {0}, b = {0}, out;
    for (uint64_t i = 0; i < 600; i++) {
        assert_int_equal(lr_vv_set(&a, 2 * i + 1, 5), 0);
        assert_int_equal(lr_vv_set(&b, 2 * i + 2, 5), 0);
    }
    assert_int_equal(lr_sync_vv_merge(&a, &b, &out), LR_ETOOBIG);
    assert_null(out.e);
    assert_int_equal(out.n, 0);
    /* ...and so is a concurrent decision needing it */
    struct lr_file_rec l, r;
    mk(&l, "f", LR_FT_FILE, false, 1, 1, 0644, NULL, 0);
    mk(&r, "f", LR_FT_FILE, false, 2, 1, 0644, NULL, 0);
    lr_vv_copy(&l.vv, &a);
    lr_vv_copy(&r.vv, &b);
    struct lr_sync_decision d;
    struct lr_err err = {0};
    assert_int_equal(lr_sync_decide(&l, &r, &d, &err), LR_ETOOBIG);
    assert_int_equal(err.code, LR_ETOOBIG);
    assert_non_null(strstr(err.msg, "f"));
    assert_null(d.vv.e);
    lr_file_rec_release(&l);
    lr_file_rec_release(&r);
    /* empty with empty */
    struct lr_vv e = {0};
    assert_int_equal(lr_sync_vv_merge(&e, &e, &out), 0);
    assert_int_equal(out.n, 0);
    assert_int_equal(lr_sync_vv_merge(&e, &a, &out), 0);
    assert_true(lr_vv_equal(&out, &a));
    lr_vv_release(&out);
    lr_vv_release(&a);
    lr_vv_release(&b);
}

static void test_vv_author(void **state)
{
    (void)state;
    struct lr_vv v;
    assert_int_equal(lr_sync_vv_author(&(struct lr_vv){0}), 0);
    vv_make(&v, (const uint64_t[]){5, 100, 9, 300, 12, 200}, 3);
    assert_int_equal(lr_sync_vv_author(&v), 9);
    lr_vv_release(&v);
    /* a tie on the counter goes to the larger id, in any entry order */
    vv_make(&v, (const uint64_t[]){5, 300, 9, 300, 12, 200}, 3);
    assert_int_equal(lr_sync_vv_author(&v), 9);
    lr_vv_release(&v);
    vv_make(&v, (const uint64_t[]){UINT64_MAX, 7, 1, 7}, 2);
    assert_int_equal(lr_sync_vv_author(&v), UINT64_MAX);
    /* a known author names it, whatever the counters; one not in the
     * vector does not */
    v.author = 1;
    assert_int_equal(lr_sync_vv_author(&v), 1);
    v.author = 2;
    assert_int_equal(lr_sync_vv_author(&v), UINT64_MAX);
    lr_vv_release(&v);
    assert_int_equal(v.author, 0);
}

/* A conflict's loser takes the winner with the merged vector, which keeps
 * the winner's author although the loser's counter is larger (it was
 * scanned later). The winner's holder, editing again before it hears of
 * that merge, makes a version concurrent with it that has seen the merged
 * version itself (its author's counter): a newer version for the loser's
 * holder, no second conflict, no copy of the winner's previous content
 * (black-box: saves every 10 ms after one real conflict made 9-22 copies). */
static void test_winner_editing_again_is_newer(void **state)
{
    (void)state;
    struct lr_file_rec loser, winner;
    mk(&loser, "doc.txt", LR_FT_FILE, false, 1, T0, 0644, (const uint64_t[]){0xA0, 1000}, 1);
    loser.vv.author = 0xA0;
    mk(&winner, "doc.txt", LR_FT_FILE, false, 2, T0 + 10 * 1000000000ll, 0644,
       (const uint64_t[]){0xB0, 999}, 1);
    winner.vv.author = 0xB0;
    struct lr_sync_decision d;
    assert_int_equal(decide(&loser, &winner, &d), LR_SYNC_CONFLICT);
    assert_true(d.copy_here && d.from_remote);
    assert_int_equal(lr_vv_get(&d.vv, 0xA0), 1000);
    assert_int_equal(lr_vv_get(&d.vv, 0xB0), 999);
    assert_int_equal(lr_sync_vv_author(&d.vv), 0xB0);
    struct lr_file_rec resolved;
    rec_copy(&resolved, &loser);
    apply_result(&resolved, &winner, &d);
    lr_sync_decision_release(&d);
    /* Unknown author (an older peer): stays unknown in the merge (derived
     * and stored, it would pass for known). */
    winner.vv.author = 0;
    assert_int_equal(decide(&loser, &winner, &d), LR_SYNC_CONFLICT);
    assert_int_equal(d.vv.author, 0);
    lr_sync_decision_release(&d);
    winner.vv.author = 0xB0;
    /* The winner's holder changes nothing; told of the merge, it takes the
     * merged vector (same content). */
    assert_int_equal(decide(&winner, &loser, &d), LR_SYNC_CONFLICT);
    assert_int_equal(d.apply, LR_SYNC_APPLY_NONE);
    lr_sync_decision_release(&d);
    assert_int_equal(decide(&winner, &resolved, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    lr_sync_decision_release(&d);
    /* The winner's holder edits twice more before hearing of it. */
    for (int k = 1; k <= 2; k++) {
        struct lr_file_rec next;
        mk(&next, "doc.txt", LR_FT_FILE, false, 2 + (unsigned)k, T0 + (10 + k) * 1000000000ll, 0644,
           NULL, 0);
        assert_int_equal(lr_sync_local_change(&winner.vv, 0xB0, 999 + (uint64_t)k, &next.vv), 0);
        assert_int_equal(lr_vv_compare(&resolved.vv, &next.vv), LR_VV_CONCURRENT);
        /* at the loser's holder: newer, taken with the merged vector */
        assert_int_equal(decide(&resolved, &next, &d), LR_SYNC_TAKE_REMOTE);
        assert_int_equal(d.conflict, LR_SYNC_CONFLICT_NONE);
        assert_int_equal(d.apply, LR_SYNC_APPLY_FILE);
        assert_null(d.copy_path);
        assert_int_equal(lr_vv_get(&d.vv, 0xA0), 1000); /* still dominates the loser */
        assert_int_equal(lr_sync_vv_author(&d.vv), 0xB0);
        struct lr_sync_decision back;
        /* at the winner's holder: the merge is older than its edit */
        assert_int_equal(decide(&next, &resolved, &back), LR_SYNC_NOTHING);
        lr_sync_decision_release(&back);
        apply_result(&resolved, &next, &d);
        lr_sync_decision_release(&d);
        lr_file_rec_release(&winner);
        winner = next;
    }
    /* A stale copy of the loser (a device still holding it) is dominated. */
    assert_int_equal(decide(&resolved, &loser, &d), LR_SYNC_NOTHING);
    lr_sync_decision_release(&d);
    /* Both edited again without seeing each other's: a conflict as ever. */
    struct lr_file_rec mine, theirs;
    mk(&mine, "doc.txt", LR_FT_FILE, false, 7, T0 + 30 * 1000000000ll, 0644, NULL, 0);
    assert_int_equal(lr_sync_local_change(&resolved.vv, 0xA0, 2000, &mine.vv), 0);
    mk(&theirs, "doc.txt", LR_FT_FILE, false, 8, T0 + 40 * 1000000000ll, 0644, NULL, 0);
    assert_int_equal(lr_sync_local_change(&winner.vv, 0xB0, 1500, &theirs.vv), 0);
    assert_int_equal(decide(&mine, &theirs, &d), LR_SYNC_CONFLICT);
    assert_true(d.copy_here);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&mine);
    lr_file_rec_release(&theirs);
    lr_file_rec_release(&resolved);
    lr_file_rec_release(&loser);
    lr_file_rec_release(&winner);
}

/* An mtime tie goes to the larger author's short ID, whatever the order of
 * resolution (docs/internals/sync.md's example: X {P:100}, Y {Q:50},
 * Z {R:60}, P < Q < R; with merged vectors on resolution the order decided
 * the winner). */
static void test_mtime_tie_goes_to_the_larger_author(void **state)
{
    (void)state;
    struct lr_file_rec v[3];
    const uint64_t ids[3] = {0x10, 0x20, 0x30}, ctr[3] = {100, 50, 60};
    for (int i = 0; i < 3; i++) {
        mk(&v[i], "f", LR_FT_FILE, false, 3 - (unsigned)i, T0, 0644,
           (const uint64_t[]){ids[i], ctr[i]}, 1);
        v[i].vv.author = ids[i];
    }
    for (int first = 0; first < 3; first++) {
        /* a device holding v[first] meets the other two in both orders */
        for (int rev = 0; rev < 2; rev++) {
            struct lr_file_rec held;
            rec_copy(&held, &v[first]);
            for (int k = 1; k <= 2; k++) {
                int other = (first + (rev ? 3 - k : k)) % 3;
                struct lr_sync_decision d;
                decide(&held, &v[other], &d);
                assert_int_equal(d.action, LR_SYNC_CONFLICT);
                apply_result(&held, &v[other], &d);
                lr_sync_decision_release(&d);
            }
            /* v[2]'s version, with the merged vector */
            assert_true(same_data(&held, &v[2]) && held.mtime_ns == v[2].mtime_ns);
            assert_int_equal(lr_sync_vv_author(&held.vv), ids[2]);
            lr_file_rec_release(&held);
        }
    }
    for (int i = 0; i < 3; i++)
        lr_file_rec_release(&v[i]);
}

static void test_local_change(void **state)
{
    (void)state;
    struct lr_vv out;
    /* no previous record (or the database was lost): the clock */
    assert_int_equal(lr_sync_local_change(NULL, 42, 1700000000, &out), 0);
    assert_int_equal(out.n, 1);
    assert_int_equal(lr_vv_get(&out, 42), 1700000000);
    lr_vv_release(&out);
    /* a counter ahead of the clock still goes up */
    struct lr_vv old;
    vv_make(&old, (const uint64_t[]){42, 1800000000, 7, 3}, 2);
    assert_int_equal(lr_sync_local_change(&old, 42, 1700000000, &out), 0);
    assert_int_equal(lr_vv_get(&out, 42), 1800000001);
    assert_int_equal(lr_vv_get(&out, 7), 3);
    /* the new vector dominates the old: peers take it as newer */
    struct lr_file_rec l, r;
    mk(&l, "f", LR_FT_FILE, false, 1, 5, 0644, NULL, 0);
    mk(&r, "f", LR_FT_FILE, false, 2, 1, 0644, NULL, 0);
    lr_vv_copy(&l.vv, &old);
    lr_vv_copy(&r.vv, &out);
    struct lr_sync_decision d;
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&l);
    lr_file_rec_release(&r);
    lr_vv_release(&out);
    lr_vv_release(&old);
    /* the counter cannot overflow */
    vv_make(&old, (const uint64_t[]){42, UINT64_MAX}, 1);
    assert_int_equal(lr_sync_local_change(&old, 42, 5, &out), LR_ETOOBIG);
    assert_null(out.e);
    lr_vv_release(&old);
    /* a full vector cannot take a new device */
    memset(&old, 0, sizeof(old));
    for (uint64_t i = 0; i < LR_VV_MAX; i++)
        assert_int_equal(lr_vv_set(&old, i + 100, 1), 0);
    assert_int_equal(lr_sync_local_change(&old, 1, 5, &out), LR_ETOOBIG);
    assert_int_equal(lr_sync_local_change(&old, 100, 5, &out), 0);
    assert_int_equal(lr_vv_get(&out, 100), 5);
    lr_vv_release(&out);
    lr_vv_release(&old);
}

/* ---- decisions ------------------------------------------------------------------ */

static void test_bad_input(void **state)
{
    (void)state;
    struct lr_file_rec l, r;
    struct lr_sync_decision d;
    struct lr_err err = {0};
    mk(&l, "a", LR_FT_FILE, false, 1, 1, 0644, (const uint64_t[]){1, 1}, 1);
    mk(&r, "b", LR_FT_FILE, false, 1, 1, 0644, (const uint64_t[]){1, 2}, 1);
    assert_int_equal(lr_sync_decide(&l, NULL, &d, &err), LR_EUSAGE);
    assert_int_equal(lr_sync_decide(&l, &r, &d, &err), LR_EUSAGE);
    assert_int_equal(d.action, LR_SYNC_NOTHING);
    assert_null(d.vv.e);
    lr_file_rec_release(&r);
    /* a type this build does not know: kept, never fetched or deleted for */
    mk(&r, "a", LR_FT_FILE, false, 1, 1, 0644, (const uint64_t[]){1, 9}, 1);
    r.type = LR_FT_UNKNOWN;
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_NOTHING);
    assert_true(d.flags & LR_SYNC_F_UNKNOWN_TYPE);
    assert_int_equal(lr_sync_decide(NULL, &r, &d, &err), LR_SYNC_NOTHING);
    r.deleted = true;
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_NOTHING);
    assert_int_equal(d.apply, LR_SYNC_APPLY_NONE);
    lr_file_rec_release(&l);
    lr_file_rec_release(&r);
}

static void test_take_remote_kinds(void **state)
{
    (void)state;
    const uint64_t v1[] = {1, 10}, v2[] = {1, 10, 2, 20};
    struct lr_file_rec l, r;
    struct lr_sync_decision d;

    /* nothing local: create each type; the disk must still be empty there */
    const enum lr_ftype types[] = {LR_FT_FILE, LR_FT_DIR, LR_FT_SYMLINK};
    const enum lr_sync_apply want[] = {LR_SYNC_APPLY_FILE, LR_SYNC_APPLY_DIR,
                                       LR_SYNC_APPLY_SYMLINK};
    for (int i = 0; i < 3; i++) {
        mk(&r, "n", types[i], false, 3, 5, 0755, v1, 1);
        assert_int_equal(decide(NULL, &r, &d), LR_SYNC_TAKE_REMOTE);
        assert_int_equal(d.apply, want[i]);
        assert_int_equal(d.flags, LR_SYNC_F_CHECK_DISK);
        assert_true(d.from_remote);
        assert_false(d.old_live);
        assert_true(d.new_live);
        assert_int_equal(d.new_type, types[i]);
        assert_true(lr_vv_equal(&d.vv, &r.vv));
        lr_sync_decision_release(&d);
        lr_file_rec_release(&r);
    }
    /* a remote record with an empty vector still beats no record */
    mk(&r, "n", LR_FT_FILE, false, 3, 5, 0644, NULL, 0);
    assert_int_equal(decide(NULL, &r, &d), LR_SYNC_TAKE_REMOTE);
    lr_file_rec_release(&r);

    /* newer, same content, same metadata: only the vector */
    mk(&l, "f", LR_FT_FILE, false, 3, 5, 0644, v1, 1);
    mk(&r, "f", LR_FT_FILE, false, 3, 5, 0644, v2, 2);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    assert_int_equal(d.flags, 0);
    lr_sync_decision_release(&d);
    /* newer, same content, other mode: metadata only */
    r.mode = 0600;
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_META);
    assert_int_equal(d.flags, LR_SYNC_F_CHECK_DISK);
    lr_sync_decision_release(&d);
    /* newer content */
    lr_file_rec_release(&r);
    mk(&r, "f", LR_FT_FILE, false, 4, 5, 0644, v2, 2);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_FILE);
    lr_sync_decision_release(&d);
    /* older remote: nothing, whatever it holds */
    assert_int_equal(decide(&r, &l, &d), LR_SYNC_NOTHING);
    assert_int_equal(d.apply, LR_SYNC_APPLY_NONE);
    assert_null(d.vv.e);
    lr_file_rec_release(&r);

    /* newer tombstone over a live file: delete, if the disk is still as indexed */
    mk(&r, "f", LR_FT_FILE, true, 0, 9, 0, v2, 2);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_DELETE);
    assert_int_equal(d.flags, LR_SYNC_F_CHECK_DISK);
    assert_true(d.old_live);
    assert_false(d.new_live);
    lr_sync_decision_release(&d);
    /* a tombstone for a path never seen: record it (no disk change) */
    assert_int_equal(decide(NULL, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    assert_int_equal(d.flags, 0);
    lr_sync_decision_release(&d);
    /* a newer tombstone over an older one: record only */
    lr_file_rec_release(&l);
    mk(&l, "f", LR_FT_FILE, true, 0, 9, 0, v1, 1);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    lr_sync_decision_release(&d);
    /* the same delete again: nothing */
    assert_int_equal(decide(&r, &r, &d), LR_SYNC_NOTHING);
    assert_int_equal(d.flags, 0);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&r);
    /* a newer live version over a local tombstone: re-create */
    mk(&r, "f", LR_FT_FILE, false, 7, 9, 0644, v2, 2);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_FILE);
    assert_int_equal(d.flags, LR_SYNC_F_CHECK_DISK);
    assert_false(d.old_live);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&r);
    lr_file_rec_release(&l);

    /* a directory deleted: only if empty */
    mk(&l, "d", LR_FT_DIR, false, 0, 5, 0755, v1, 1);
    mk(&r, "d", LR_FT_DIR, true, 0, 5, 0, v2, 2);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_DELETE);
    assert_int_equal(d.flags, LR_SYNC_F_CHECK_DISK | LR_SYNC_F_IF_EMPTY);
    assert_int_equal(d.old_type, LR_FT_DIR);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&r);
    /* a directory's mtime is not metadata; its mode is */
    mk(&r, "d", LR_FT_DIR, false, 0, 99, 0755, v2, 2);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    lr_sync_decision_release(&d);
    r.mode = 0700;
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_META);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&r);
    lr_file_rec_release(&l);

    /* symlinks: the target is the content, the mtime metadata, the mode nothing */
    mk(&l, "s", LR_FT_SYMLINK, false, 1, 5, 0777, v1, 1);
    mk(&r, "s", LR_FT_SYMLINK, false, 1, 5, 0700, v2, 2);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    lr_sync_decision_release(&d);
    r.mtime_ns = 6;
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_META);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&r);
    mk(&r, "s", LR_FT_SYMLINK, false, 2, 5, 0777, v2, 2);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_SYMLINK);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&r);
    lr_file_rec_release(&l);
}

static void test_equal_vv_inconsistent(void **state)
{
    (void)state;
    const uint64_t v[] = {1, 10};
    struct lr_file_rec l, r;
    struct lr_sync_decision d;
    mk(&l, "f", LR_FT_FILE, false, 1, 5, 0644, v, 1);
    mk(&r, "f", LR_FT_FILE, false, 1, 5, 0644, v, 1);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_NOTHING);
    assert_int_equal(d.flags, 0);
    r.mode = 0600;
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_NOTHING);
    assert_int_equal(d.flags, LR_SYNC_F_INCONSISTENT);
    lr_file_rec_release(&r);
    mk(&r, "f", LR_FT_DIR, false, 0, 5, 0644, v, 1);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_NOTHING);
    assert_int_equal(d.flags, LR_SYNC_F_INCONSISTENT);
    lr_file_rec_release(&r);
    lr_file_rec_release(&l);
}

static void test_identical_content_merge(void **state)
{
    (void)state;
    const uint64_t va[] = {1, 10, 2, 3}, vb[] = {1, 4, 3, 8}, vm[] = {1, 10, 2, 3, 3, 8};
    struct lr_vv m;
    vv_make(&m, vm, 3);
    struct lr_file_rec a, b;
    struct lr_sync_decision d;
    /* the same file made on two devices: no copy, no transfer */
    mk(&a, "f", LR_FT_FILE, false, 5, 100, 0644, va, 2);
    mk(&b, "f", LR_FT_FILE, false, 5, 100, 0644, vb, 2);
    assert_int_equal(decide(&a, &b, &d), LR_SYNC_MERGE_VV);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_NONE);
    assert_true(lr_vv_equal(&d.vv, &m));
    assert_null(d.copy_path);
    assert_int_equal(d.flags, 0);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
    /* two concurrent deletes: identical */
    mk(&a, "f", LR_FT_FILE, true, 0, 100, 0, va, 2);
    mk(&b, "f", LR_FT_FILE, true, 0, 200, 0, vb, 2);
    assert_int_equal(decide(&a, &b, &d), LR_SYNC_MERGE_VV);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    assert_true(lr_vv_equal(&d.vv, &m));
    assert_false(d.new_live);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&b);
    /* even a deleted directory vs a deleted file */
    mk(&b, "f", LR_FT_DIR, true, 0, 1, 0, vb, 2);
    assert_int_equal(decide(&a, &b, &d), LR_SYNC_MERGE_VV);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
    /* two directories made concurrently */
    mk(&a, "d", LR_FT_DIR, false, 0, 100, 0755, va, 2);
    mk(&b, "d", LR_FT_DIR, false, 0, 300, 0755, vb, 2);
    assert_int_equal(decide(&a, &b, &d), LR_SYNC_MERGE_VV);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_NONE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD); /* the dir mtime does not matter */
    assert_true(d.from_remote);                      /* but still decides the record */
    lr_sync_decision_release(&d);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
    lr_vv_release(&m);
}

static void test_metadata_only(void **state)
{
    (void)state;
    const uint64_t va[] = {1, 10}, vb[] = {2, 10};
    struct lr_file_rec a, b;
    struct lr_sync_decision d;
    /* remote newer mtime: its metadata wins, set on disk, no copy */
    mk(&a, "f", LR_FT_FILE, false, 5, 100, 0644, va, 1);
    mk(&b, "f", LR_FT_FILE, false, 5, 200, 0600, vb, 1);
    assert_int_equal(decide(&a, &b, &d), LR_SYNC_MERGE_VV);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_METADATA);
    assert_true(d.from_remote);
    assert_int_equal(d.apply, LR_SYNC_APPLY_META);
    assert_int_equal(d.flags, LR_SYNC_F_CHECK_DISK);
    assert_null(d.copy_path);
    assert_int_equal(d.vv.n, 2);
    lr_sync_decision_release(&d);
    /* seen from the other side: local keeps its metadata, stores the merged vector */
    assert_int_equal(decide(&b, &a, &d), LR_SYNC_MERGE_VV);
    assert_false(d.from_remote);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    assert_int_equal(d.vv.n, 2);
    lr_sync_decision_release(&d);
    /* an mtime tie: the larger known author's metadata, on both sides */
    b.mtime_ns = 100;
    a.vv.author = 1;
    b.vv.author = 2;
    assert_int_equal(decide(&a, &b, &d), LR_SYNC_MERGE_VV);
    assert_true(d.from_remote); /* author 2 > 1 */
    assert_int_equal(lr_sync_vv_author(&d.vv), 2);
    lr_sync_decision_release(&d);
    assert_int_equal(decide(&b, &a, &d), LR_SYNC_MERGE_VV);
    assert_false(d.from_remote);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    assert_int_equal(lr_sync_vv_author(&d.vv), 2);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
    /* the same author too (both by device 1): the larger mode */
    mk(&a, "f", LR_FT_FILE, false, 5, 100, 0644, (const uint64_t[]){1, 10, 2, 5}, 2);
    mk(&b, "f", LR_FT_FILE, false, 5, 100, 0600, (const uint64_t[]){1, 9, 2, 6}, 2);
    assert_int_equal(decide(&a, &b, &d), LR_SYNC_MERGE_VV);
    assert_false(d.from_remote); /* 0644 > 0600 */
    lr_sync_decision_release(&d);
    assert_int_equal(decide(&b, &a, &d), LR_SYNC_MERGE_VV);
    assert_true(d.from_remote);
    assert_int_equal(d.apply, LR_SYNC_APPLY_META);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
}

/* Check the stored outcome of one side against the other's: both must reach it. */
static void test_modify_delete(void **state)
{
    (void)state;
    const uint64_t base[] = {1, 1};
    const uint64_t del[] = {1, 2};        /* device 1 deleted */
    const uint64_t edit[] = {1, 1, 2, 5}; /* device 2 edited */
    struct lr_file_rec t, e, orig;
    struct lr_sync_decision d;
    mk(&orig, "f", LR_FT_FILE, false, 1, 100, 0644, base, 1);
    /* the tombstone is newer by mtime: modify still beats delete */
    mk(&t, "f", LR_FT_FILE, true, 0, 900, 0, del, 1);
    mk(&e, "f", LR_FT_FILE, false, 2, 200, 0644, edit, 2);

    /* on the deleting device: re-create the edited file, merged vector */
    assert_int_equal(decide(&t, &e, &d), LR_SYNC_CONFLICT);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_MODIFY_DELETE);
    assert_true(d.from_remote);
    assert_int_equal(d.apply, LR_SYNC_APPLY_FILE);
    assert_null(d.copy_path);
    assert_false(d.copy_here);
    struct lr_file_rec on1;
    rec_copy(&on1, &t);
    apply_result(&on1, &e, &d);
    assert_false(on1.deleted);
    assert_int_equal(lr_vv_get(&on1.vv, 1), 2);
    assert_int_equal(lr_vv_get(&on1.vv, 2), 5);
    lr_sync_decision_release(&d);
    /* on the editing device: nothing changes */
    assert_int_equal(decide(&e, &t, &d), LR_SYNC_CONFLICT);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_MODIFY_DELETE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_NONE);
    assert_null(d.copy_path);
    lr_sync_decision_release(&d);
    /* the re-created version then reaches the editor as newer, same content */
    assert_int_equal(decide(&e, &on1, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_RECORD);
    lr_sync_decision_release(&d);

    /* a third device that had the base, both orders of arrival */
    for (int order = 0; order < 2; order++) {
        struct lr_file_rec c;
        rec_copy(&c, &orig);
        const struct lr_file_rec *first = order ? &e : &t, *second = order ? &t : &e;
        decide(&c, first, &d);
        assert_int_equal(d.action, LR_SYNC_TAKE_REMOTE);
        assert_int_equal(d.apply, order ? LR_SYNC_APPLY_FILE : LR_SYNC_APPLY_DELETE);
        apply_result(&c, first, &d);
        lr_sync_decision_release(&d);
        decide(&c, second, &d);
        assert_int_equal(d.action, LR_SYNC_CONFLICT);
        apply_result(&c, second, &d);
        lr_sync_decision_release(&d);
        /* the live edit survives either way */
        assert_false(c.deleted);
        assert_int_equal(c.size, e.size);
        /* and one more exchange with the re-created version converges */
        decide(&c, &on1, &d);
        apply_result(&c, &on1, &d);
        lr_sync_decision_release(&d);
        assert_true(rec_same(&c, &on1));
        lr_file_rec_release(&c);
    }

    /* a delete that saw the edit wins: the vector dominates */
    struct lr_file_rec t2;
    mk(&t2, "f", LR_FT_FILE, true, 0, 10, 0, (const uint64_t[]){1, 3, 2, 5}, 2);
    assert_int_equal(decide(&e, &t2, &d), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_DELETE);
    lr_sync_decision_release(&d);
    /* a delete dominated by the local edit: nothing */
    assert_int_equal(decide(&t2, &t, &d), LR_SYNC_NOTHING);
    struct lr_file_rec e2;
    mk(&e2, "f", LR_FT_FILE, false, 3, 10, 0644, (const uint64_t[]){1, 2, 2, 6}, 2);
    assert_int_equal(decide(&e2, &t, &d), LR_SYNC_NOTHING);
    lr_sync_decision_release(&d);
    /* a deleted directory vs a live one with a new mode: the directory lives */
    struct lr_file_rec dd, dl;
    mk(&dd, "d", LR_FT_DIR, true, 0, 10, 0, del, 1);
    mk(&dl, "d", LR_FT_DIR, false, 0, 10, 0700, edit, 2);
    assert_int_equal(decide(&dd, &dl, &d), LR_SYNC_CONFLICT);
    assert_int_equal(d.apply, LR_SYNC_APPLY_DIR);
    assert_null(d.copy_path);
    lr_sync_decision_release(&d);

    lr_file_rec_release(&dd);
    lr_file_rec_release(&dl);
    lr_file_rec_release(&e2);
    lr_file_rec_release(&t2);
    lr_file_rec_release(&on1);
    lr_file_rec_release(&t);
    lr_file_rec_release(&e);
    lr_file_rec_release(&orig);
}

/* A receive-only device's own version yields to every concurrent peer
 * version (sides.local_yields), stored with the peer's vector. */
static void test_local_yields(void **state)
{
    (void)state;
    const uint64_t mine[] = {1, 1, 2, 9000}; /* device 2's own change */
    const uint64_t theirs[] = {1, 5};        /* device 1's, concurrent */
    struct lr_sync_sides sd = {0};
    sd.local_yields = true;
    struct lr_err err = {0};
    struct lr_file_rec l, r, t, ld;
    struct lr_sync_decision d;

    /* content: ours is newer and would keep the name; yielding, it becomes the copy */
    mk(&l, "f", LR_FT_FILE, false, 1, 900, 0644, mine, 2);
    mk(&r, "f", LR_FT_FILE, false, 2, 100, 0644, theirs, 1);
    assert_int_equal(decide(&l, &r, &d), LR_SYNC_CONFLICT);
    assert_int_equal(d.apply, LR_SYNC_APPLY_NONE);
    lr_sync_decision_release(&d);
    assert_int_equal(lr_sync_decide_with(&l, &r, &sd, &d, &err), LR_SYNC_CONFLICT);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_CONTENT);
    assert_true(d.flags & LR_SYNC_F_YIELDED);
    assert_true(d.from_remote && d.copy_here);
    assert_non_null(d.copy_path);
    assert_int_equal(d.apply, LR_SYNC_APPLY_FILE);
    assert_true(lr_vv_equal(&d.vv, &r.vv)); /* not merged: ours would stay unannounced */
    assert_string_equal(d.strategy, "receive-only");
    struct lr_file_rec after;
    rec_copy(&after, &l);
    apply_result(&after, &r, &d);
    lr_sync_decision_release(&d);
    assert_true(rec_same(&after, &r));
    assert_int_equal(lr_sync_decide_with(&after, &r, &sd, &d, &err), LR_SYNC_NOTHING);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&after);

    /* the peer deleted what we edited: the delete wins, our edit is archived */
    mk(&t, "f", LR_FT_FILE, true, 0, 50, 0, theirs, 1);
    assert_int_equal(lr_sync_decide_with(&l, &t, &sd, &d, &err), LR_SYNC_CONFLICT);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_MODIFY_DELETE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_DELETE);
    assert_true(d.flags & LR_SYNC_F_ARCHIVE_LOSER);
    assert_true(d.flags & LR_SYNC_F_CHECK_DISK);
    assert_null(d.copy_path);
    assert_true(lr_vv_equal(&d.vv, &t.vv));
    assert_false(d.new_live);
    lr_sync_decision_release(&d);

    /* a symlink of ours the peer deleted: not archivable, so it becomes the copy */
    struct lr_file_rec ls;
    mk(&ls, "f", LR_FT_SYMLINK, false, 4, 900, 0, mine, 2);
    assert_int_equal(lr_sync_decide_with(&ls, &t, &sd, &d, &err), LR_SYNC_CONFLICT);
    assert_int_equal(d.apply, LR_SYNC_APPLY_DELETE);
    assert_true(d.copy_here);
    assert_non_null(d.copy_path);
    assert_false(d.flags & LR_SYNC_F_ARCHIVE_LOSER);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&ls);

    /* we deleted what the peer edited: the edit comes back with its vector */
    struct lr_file_rec lt;
    mk(&lt, "f", LR_FT_FILE, true, 0, 900, 0, mine, 2);
    assert_int_equal(lr_sync_decide_with(&lt, &r, &sd, &d, &err), LR_SYNC_CONFLICT);
    assert_int_equal(d.apply, LR_SYNC_APPLY_FILE);
    assert_null(d.copy_path);
    assert_true(lr_vv_equal(&d.vv, &r.vv));
    lr_sync_decision_release(&d);

    /* same content, other mtime: the peer's metadata and vector, no copy */
    struct lr_file_rec same;
    mk(&same, "f", LR_FT_FILE, false, 2, 900, 0600, mine, 2);
    assert_int_equal(lr_sync_decide_with(&same, &r, &sd, &d, &err), LR_SYNC_TAKE_REMOTE);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_METADATA);
    assert_int_equal(d.apply, LR_SYNC_APPLY_META);
    assert_null(d.copy_path);
    assert_true(lr_vv_equal(&d.vv, &r.vv));
    lr_sync_decision_release(&d);

    /* our directory vs their file: the file takes the name once the directory is empty */
    mk(&ld, "f", LR_FT_DIR, false, 0, 900, 0755, mine, 2);
    assert_int_equal(lr_sync_decide_with(&ld, &r, &sd, &d, &err), LR_SYNC_CONFLICT);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_TYPE);
    assert_int_equal(d.apply, LR_SYNC_APPLY_FILE);
    assert_true((d.flags & (LR_SYNC_F_REPLACE_TYPE | LR_SYNC_F_IF_EMPTY)) ==
                (LR_SYNC_F_REPLACE_TYPE | LR_SYNC_F_IF_EMPTY));
    assert_null(d.copy_path);
    lr_sync_decision_release(&d);

    /* a strategy waiting for the peer's would defer; yielding needs no peer */
    sd.local.kind = LR_STRAT_NEWEST;
    sd.remote_unknown = true;
    assert_int_equal(lr_sync_decide_with(&l, &r, &sd, &d, &err), LR_SYNC_CONFLICT);
    assert_false(d.flags & LR_SYNC_F_DEFERRED);
    assert_true(d.from_remote);
    lr_sync_decision_release(&d);

    /* newer remote versions and older ones are ordered as ever */
    struct lr_file_rec newer;
    mk(&newer, "f", LR_FT_FILE, false, 3, 10, 0644, (const uint64_t[]){1, 6, 2, 9000}, 2);
    assert_int_equal(lr_sync_decide_with(&l, &newer, &sd, &d, &err), LR_SYNC_TAKE_REMOTE);
    assert_false(d.flags & LR_SYNC_F_YIELDED);
    lr_sync_decision_release(&d);
    assert_int_equal(lr_sync_decide_with(&newer, &l, &sd, &d, &err), LR_SYNC_NOTHING);
    lr_sync_decision_release(&d);

    lr_file_rec_release(&newer);
    lr_file_rec_release(&ld);
    lr_file_rec_release(&same);
    lr_file_rec_release(&lt);
    lr_file_rec_release(&t);
    lr_file_rec_release(&r);
    lr_file_rec_release(&l);
}

static void test_type_changes(void **state)
{
    (void)state;
    const uint64_t v1[] = {1, 10}, v2[] = {1, 10, 2, 20}, vc[] = {3, 30};
    const enum lr_ftype T[] = {LR_FT_FILE, LR_FT_DIR, LR_FT_SYMLINK};
    struct lr_sync_decision d;
    /* dominated: the remote type replaces the local one */
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            if (i == j)
                continue;
            struct lr_file_rec l, r;
            mk(&l, "x", T[i], false, 1, 5, 0644, v1, 1);
            mk(&r, "x", T[j], false, 2, 5, 0644, v2, 2);
            assert_int_equal(decide(&l, &r, &d), LR_SYNC_TAKE_REMOTE);
            unsigned want = LR_SYNC_F_CHECK_DISK | LR_SYNC_F_REPLACE_TYPE |
                            (T[i] == LR_FT_DIR ? LR_SYNC_F_IF_EMPTY : 0);
            assert_int_equal(d.flags, want);
            assert_int_equal(d.old_type, T[i]);
            assert_int_equal(d.new_type, T[j]);
            assert_int_equal(d.apply, T[j] == LR_FT_FILE  ? LR_SYNC_APPLY_FILE
                                      : T[j] == LR_FT_DIR ? LR_SYNC_APPLY_DIR
                                                          : LR_SYNC_APPLY_SYMLINK);
            lr_sync_decision_release(&d);

            /* concurrent: a type conflict */
            lr_file_rec_release(&r);
            mk(&r, "x", T[j], false, 2, 1, 0644, vc, 1); /* older mtime than local */
            assert_int_equal(decide(&l, &r, &d), LR_SYNC_CONFLICT);
            assert_int_equal(d.conflict, LR_SYNC_CONFLICT_TYPE);
            if (T[i] == LR_FT_DIR) {
                /* the directory keeps the name; the other device copies its file */
                assert_false(d.from_remote);
                assert_int_equal(d.apply, LR_SYNC_APPLY_NONE);
                assert_non_null(d.copy_path);
                assert_false(d.copy_here);
            } else if (T[j] == LR_FT_DIR) {
                /* the directory wins even with an older mtime */
                assert_true(d.from_remote);
                assert_int_equal(d.apply, LR_SYNC_APPLY_DIR);
                assert_true(d.copy_here);
                assert_true(d.flags & LR_SYNC_F_REPLACE_TYPE);
            } else {
                /* file vs symlink: the newer mtime (local) */
                assert_false(d.from_remote);
                assert_false(d.copy_here);
                assert_non_null(d.copy_path);
            }
            lr_sync_decision_release(&d);
            lr_file_rec_release(&l);
            lr_file_rec_release(&r);
        }
    }
}

/* A random record for "f" from a small space, so ties and equal content happen. */
static void rnd_rec(struct lr_file_rec *r)
{
    static const enum lr_ftype T[] = {LR_FT_FILE, LR_FT_FILE, LR_FT_FILE, LR_FT_DIR, LR_FT_SYMLINK};
    uint64_t pairs[6];
    for (size_t i = 0; i < 3; i++) {
        pairs[2 * i] = (i + 1) << 40;
        pairs[2 * i + 1] = rndn(3);
    }
    mk(r, "dir/f.txt", T[rndn(5)], rndn(5) == 0, rndn(3), (int64_t)rndn(3) * 1000000000,
       rndn(2) ? 0644 : 0600, pairs, 3);
}

static void test_conflict_symmetry(void **state)
{
    (void)state;
    int conflicts = 0, merges = 0;
    for (int iter = 0; iter < 20000; iter++) {
        struct lr_file_rec a, b;
        rnd_rec(&a);
        rnd_rec(&b);
        struct lr_sync_decision x, y;
        int ax = decide(&a, &b, &x);
        int ay = decide(&b, &a, &y);
        if (ax == LR_SYNC_TAKE_REMOTE)
            assert_int_equal(ay, LR_SYNC_NOTHING);
        if (ax == LR_SYNC_CONFLICT || ax == LR_SYNC_MERGE_VV) {
            assert_int_equal(ay, ax);
            assert_int_equal(x.conflict, y.conflict);
            /* one winner, seen from both sides */
            const struct lr_file_rec *wx = x.from_remote ? &b : &a;
            bool y_local_wins = !y.from_remote;
            const struct lr_file_rec *wy = y_local_wins ? &b : &a;
            if (ax == LR_SYNC_CONFLICT) {
                conflicts++;
                /* apply NONE means "local won" */
                wx = x.apply == LR_SYNC_APPLY_NONE ? &a : &b;
                wy = y.apply == LR_SYNC_APPLY_NONE ? &b : &a;
                assert_ptr_equal(wx, wy);
                /* the same copy name, made by exactly the loser's holder */
                assert_int_equal(x.copy_path != NULL, y.copy_path != NULL);
                if (x.copy_path) {
                    assert_int_equal(x.copy_path_len, y.copy_path_len);
                    assert_memory_equal(x.copy_path, y.copy_path, x.copy_path_len);
                    assert_true(x.copy_here != y.copy_here);
                    assert_true(lr_sync_is_conflict_copy(x.copy_path, x.copy_path_len));
                }
                /* the loser's holder ends with the winner and the merged vector */
                struct lr_file_rec ra, rb;
                rec_copy(&ra, &a);
                rec_copy(&rb, &b);
                apply_result(&ra, &b, &x);
                apply_result(&rb, &a, &y);
                struct lr_vv m;
                assert_int_equal(lr_sync_vv_merge(&a.vv, &b.vv, &m), 0);
                const struct lr_file_rec *loser_end = wx == &a ? &rb : &ra;
                assert_true(lr_vv_equal(&loser_end->vv, &m));
                lr_vv_release(&m);
                lr_file_rec_release(&ra);
                lr_file_rec_release(&rb);
            } else {
                merges++;
                /* different "winners" only for versions equal but for the vector */
                if (wx != wy) {
                    struct lr_file_rec t;
                    rec_copy(&t, &a);
                    lr_vv_copy(&t.vv, &b.vv);
                    assert_true(rec_same(&t, &b));
                    lr_file_rec_release(&t);
                }
                assert_true(lr_vv_equal(&x.vv, &y.vv));
                /* both store the same record */
                struct lr_file_rec ra, rb;
                rec_copy(&ra, &a);
                rec_copy(&rb, &b);
                apply_result(&ra, &b, &x);
                apply_result(&rb, &a, &y);
                assert_true(rec_same(&ra, &rb));
                lr_file_rec_release(&ra);
                lr_file_rec_release(&rb);
            }
        }
        lr_sync_decision_release(&x);
        lr_sync_decision_release(&y);
        lr_file_rec_release(&a);
        lr_file_rec_release(&b);
    }
    assert_true(conflicts > 1000);
    assert_true(merges > 100);
}

/*
 * Three devices edit one file concurrently (pairwise concurrent vectors),
 * then gossip in random order until nothing changes. Every device must end
 * with the same record, every losing live version must exist as a conflict
 * copy made by a device that held it, and the winner must not depend on the
 * gossip order (ties in mtime included).
 */
struct dev {
    struct lr_file_rec rec;
    int ncopies;
    struct {
        uint8_t *path;
        size_t len;
        struct lr_file_rec content;
    } copies[16];
};

static bool gossip(struct dev *dv, int ndev, uint64_t seed)
{
    rng_state = seed;
    for (int steps = 0; steps < 2000; steps++) {
        bool changed = false;
        /* a random sweep of all ordered pairs */
        int pairs[6][2] = {{0, 1}, {0, 2}, {1, 0}, {1, 2}, {2, 0}, {2, 1}};
        for (int i = 5; i > 0; i--) {
            int j = (int)rndn((unsigned)i + 1);
            int t0 = pairs[i][0], t1 = pairs[i][1];
            pairs[i][0] = pairs[j][0];
            pairs[i][1] = pairs[j][1];
            pairs[j][0] = t0;
            pairs[j][1] = t1;
        }
        for (int k = 0; k < 6; k++) {
            struct dev *dst = &dv[pairs[k][0]];
            const struct dev *src = &dv[pairs[k][1]];
            if (pairs[k][0] >= ndev || pairs[k][1] >= ndev)
                continue;
            struct lr_sync_decision d;
            struct lr_file_rec remote;
            rec_copy(&remote, &src->rec);
            decide(&dst->rec, &remote, &d);
            if (d.copy_here) {
                assert_true(dst->ncopies < 16);
                dst->copies[dst->ncopies].path = d.copy_path;
                dst->copies[dst->ncopies].len = d.copy_path_len;
                rec_copy(&dst->copies[dst->ncopies].content, &dst->rec);
                dst->ncopies++;
                d.copy_path = NULL;
            }
            if (d.apply != LR_SYNC_APPLY_NONE) {
                struct lr_file_rec before;
                rec_copy(&before, &dst->rec);
                apply_result(&dst->rec, &remote, &d);
                if (!rec_same(&before, &dst->rec))
                    changed = true;
                lr_file_rec_release(&before);
            }
            lr_sync_decision_release(&d);
            lr_file_rec_release(&remote);
        }
        if (!changed)
            return true;
    }
    return false;
}

static void test_three_devices_converge(void **state)
{
    (void)state;
    for (int trial = 0; trial < 3000; trial++) {
        rng_state = 0x1234567 + (uint64_t)trial * 0x9e3779b97f4a7c15u;
        struct lr_file_rec v[3];
        for (int i = 0; i < 3; i++) {
            /* common base {9:1}, then each device's own edit */
            uint64_t pairs[4] = {9, 1, (uint64_t)(i + 1) << 60, 100 + rndn(50)};
            static const enum lr_ftype T[] = {LR_FT_FILE, LR_FT_FILE, LR_FT_DIR, LR_FT_SYMLINK};
            mk(&v[i], "f", T[rndn(4)], rndn(6) == 0, (unsigned)i + rndn(2),
               (int64_t)rndn(2) * 1000000000, 0644, pairs, 2);
            v[i].vv.author = (uint64_t)(i + 1) << 60; /* a local change names its device */
        }
        struct lr_file_rec final0;
        for (int run = 0; run < 2; run++) {
            struct dev dv[3];
            memset(dv, 0, sizeof(dv));
            for (int i = 0; i < 3; i++)
                rec_copy(&dv[i].rec, &v[i]);
            assert_true(gossip(dv, 3, (uint64_t)trial * 31 + (uint64_t)run + 1));
            for (int i = 1; i < 3; i++)
                assert_true(rec_same(&dv[0].rec, &dv[i].rec));
            /* the final vector covers all three edits */
            for (int i = 0; i < 3; i++)
                assert_int_equal(lr_vv_get(&dv[0].rec.vv, (uint64_t)(i + 1) << 60),
                                 lr_vv_get(&v[i].vv, (uint64_t)(i + 1) << 60));
            /* every live, non-directory version that lost survives as a copy */
            for (int i = 0; i < 3; i++) {
                const struct lr_file_rec *x = &v[i];
                if (x->deleted || x->type == LR_FT_DIR)
                    continue;
                if (same_data(x, &dv[0].rec))
                    continue;
                bool found = false;
                for (int k = 0; k < 3 && !found; k++)
                    for (int c = 0; c < dv[k].ncopies; c++)
                        if (same_data(&dv[k].copies[c].content, x))
                            found = true;
                assert_true(found);
            }
            if (run == 0)
                rec_copy(&final0, &dv[0].rec);
            else
                assert_true(rec_same(&final0, &dv[0].rec));
            for (int i = 0; i < 3; i++) {
                for (int c = 0; c < dv[i].ncopies; c++) {
                    free(dv[i].copies[c].path);
                    lr_file_rec_release(&dv[i].copies[c].content);
                }
                lr_file_rec_release(&dv[i].rec);
            }
        }
        lr_file_rec_release(&final0);
        for (int i = 0; i < 3; i++)
            lr_file_rec_release(&v[i]);
    }
}

/* ---- conflict copy names ---------------------------------------------------------- */

static char *cname(const char *path, int64_t mtime_ns, uint64_t author)
{
    uint8_t *out = NULL;
    size_t n = 0;
    struct lr_err err = {0};
    assert_int_equal(lr_sync_conflict_name((const uint8_t *)path, strlen(path), mtime_ns, author,
                                           &out, &n, &err),
                     0);
    assert_int_equal(strlen((char *)out), n);
    assert_int_equal(lr_index_path_check(out, n, NULL), 0);
    assert_true(lr_sync_is_conflict_copy(out, n));
    return (char *)out;
}

static void test_conflict_name_basic(void **state)
{
    (void)state;
    /* DEVICE7 is the first 7 characters of the author's formatted device ID */
    struct lr_device_id id;
    for (size_t i = 0; i < sizeof(id.b); i++)
        id.b[i] = (uint8_t)(i * 37 + 11);
    char dev[LR_DEVICE_ID_SHORTLEN + 1], full[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_short(&id, dev);
    lr_device_id_format(&id, full);
    assert_memory_equal(dev, full, 7);
    uint64_t au = lr_device_id_u64(&id);

    char want[512];
    struct {
        const char *in, *fmt;
    } cases[] = {
        {"a/b/report.txt", "a/b/report.sync-conflict-20240305-060708-%s.txt"},
        {"Makefile", "Makefile.sync-conflict-20240305-060708-%s"},
        {".bashrc", ".bashrc.sync-conflict-20240305-060708-%s"},
        {"d/.bashrc", "d/.bashrc.sync-conflict-20240305-060708-%s"},
        {"..x", "..x.sync-conflict-20240305-060708-%s"},
        {".a.b", ".a.sync-conflict-20240305-060708-%s.b"},
        {"a.tar.gz", "a.tar.sync-conflict-20240305-060708-%s.gz"},
        {"a.", "a..sync-conflict-20240305-060708-%s"},
        {"x/...", "x/....sync-conflict-20240305-060708-%s"},
        {"dir.d/noext", "dir.d/noext.sync-conflict-20240305-060708-%s"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* "%s" in the pattern stands for DEVICE7 */
        const char *at = strstr(cases[i].fmt, "%s");
        assert_non_null(at);
        snprintf(want, sizeof(want), "%.*s%s%s", (int)(at - cases[i].fmt), cases[i].fmt, dev,
                 at + 2);
        char *got = cname(cases[i].in, T0, au);
        assert_string_equal(got, want);
        free(got);
    }
    /* a conflict copy of a conflict copy: the marker is replaced, not added */
    char *c1 = cname("a/report.txt", T0, au);
    char *c2 = cname(c1, T0 + INT64_C(86400) * 1000000000, 0);
    assert_string_equal(c2, "a/report.sync-conflict-20240306-060708-AAAAAAA.txt");
    char *c3 = cname(c2, T0, au);
    assert_string_equal(c3, c1);
    free(c1);
    free(c2);
    free(c3);
    char *n1 = cname("Makefile.sync-conflict-20000101-000000-ABCDEFG", T0, au);
    snprintf(want, sizeof(want), "Makefile.sync-conflict-20240305-060708-%s", dev);
    assert_string_equal(n1, want);
    free(n1);

    uint8_t *out = (uint8_t *)"x";
    size_t n = 9;
    assert_int_equal(lr_sync_conflict_name((const uint8_t *)"a/", 2, 0, 0, &out, &n, NULL),
                     LR_EBADPATH);
    assert_null(out);
    assert_int_equal(n, 0);
    assert_int_equal(lr_sync_conflict_name((const uint8_t *)"", 0, 0, 0, &out, &n, NULL),
                     LR_EBADPATH);
}

static void test_is_conflict_copy(void **state)
{
    (void)state;
    struct {
        const char *s;
        bool yes;
    } cases[] = {
        {"a.sync-conflict-20240305-060708-ABCDEF7", true},
        {"d/a.sync-conflict-20240305-060708-ABCDEF7.txt", true},
        {".sync-conflict-20240305-060708-ABCDEF7", true},
        {"a.sync-conflict-20240305-060708-ABCDEF7.x.y", true},
        {"a.sync-conflict-20240305-060708-ABCDEF7x", false},  /* not followed by a dot */
        {"a.sync-conflict-20240305-060708-abcdef7", false},   /* lower case */
        {"a.sync-conflict-20240305-060708-ABCDEF1", false},   /* not base32 */
        {"a.sync-conflict-2024030-060708-ABCDEF7", false},    /* short date */
        {"a.sync-conflict-20240305_060708-ABCDEF7", false},   /* separator */
        {"a.sync-conflict-2024030X-060708-ABCDEF7", false},   /* digit */
        {"a.sync-conflict-20240305-060708-ABCDEF", false},    /* short device */
        {"a.sync-conflict-20240305-060708-ABCDEF7/b", false}, /* only the directory */
        {"sync-conflict-20240305-060708-ABCDEF7", false},     /* no dot */
        {"", false},
        {"plain.txt", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(lr_sync_is_conflict_copy((const uint8_t *)cases[i].s, strlen(cases[i].s)),
                         cases[i].yes);
}

/* A second copy of the same author and second: the content tag after the marker. */
static void test_conflict_name_alt(void **state)
{
    (void)state;
    struct lr_hash h;
    memset(h.b, 0, sizeof(h.b));
    h.b[0] = 0xab;
    h.b[1] = 0x01;
    h.b[2] = 0xfe;
    const char *cases[] = {"a/report.txt", "Makefile",
                           "d/x.sync-conflict-20200101-000000-AAAAAAA.c"};
    for (size_t i = 0; i < 3; i++) {
        char *base = cname(cases[i], T0, 1);
        uint8_t *out = NULL;
        size_t n = 0;
        assert_int_equal(
            lr_sync_conflict_name_alt((const uint8_t *)base, strlen(base), &h, &out, &n, NULL), 0);
        assert_int_equal(n, strlen(base) + 7);
        assert_true(lr_sync_is_conflict_copy(out, n));
        assert_int_equal(lr_index_path_check(out, n, NULL), 0);
        /* the base name with ".ab01fe" right after its marker */
        const char *mk = strstr(base, ".sync-conflict-");
        size_t at = (size_t)(mk - base) + LR_SYNC_MARKER_LEN;
        assert_memory_equal(out, base, at);
        assert_memory_equal(out + at, ".ab01fe", 7);
        assert_string_equal((char *)out + at + 7, base + at);
        free(out);
        free(base);
    }
    uint8_t *out = NULL;
    size_t n = 0;
    assert_int_equal(lr_sync_conflict_name_alt((const uint8_t *)"plain.txt", 9, &h, &out, &n, NULL),
                     LR_EBADPATH);
    /* No room left in a 255-byte name. */
    char name[300];
    memset(name, 'x', 251);
    memcpy(name + 251, ".txt", 5);
    char *longc = cname(name, T0, 1);
    assert_int_equal(
        lr_sync_conflict_name_alt((const uint8_t *)longc, strlen(longc), &h, &out, &n, NULL),
        LR_ETOOBIG);
    free(longc);
}

static void test_conflict_name_long(void **state)
{
    (void)state;
    char name[600];
    /* 251 + ".txt" = 255 bytes: the stem is cut, the marker and extension kept */
    memset(name, 'x', 251);
    memcpy(name + 251, ".txt", 5);
    char *got = cname(name, T0, 1);
    size_t n = strlen(got);
    assert_int_equal(n, LR_SYNC_NAME_MAX);
    assert_memory_equal(got + n - 4, ".txt", 4);
    assert_memory_equal(got + n - 4 - LR_SYNC_MARKER_LEN, ".sync-conflict-", 15);
    free(got);

    /* a UTF-8 stem is cut on a character boundary */
    size_t o = 0;
    for (int i = 0; i < 125; i++) {
        name[o++] = (char)0xc3;
        name[o++] = (char)0xa9; /* é */
    }
    memcpy(name + o, ".txt", 5);
    got = cname(name, T0, 1);
    n = strlen(got);
    assert_true(n <= LR_SYNC_NAME_MAX && n >= LR_SYNC_NAME_MAX - 1);
    assert_true(lr_utf8_valid(got, n));
    free(got);
    /* three- and four-byte characters too */
    for (int w = 3; w <= 4; w++) {
        o = 0;
        while (o < 250) {
            if (w == 3) {
                name[o++] = (char)0xe2;
                name[o++] = (char)0x82;
                name[o++] = (char)0xac; /* € */
            } else {
                name[o++] = (char)0xf0;
                name[o++] = (char)0x9f;
                name[o++] = (char)0x98;
                name[o++] = (char)0x80;
            }
        }
        name[o] = '\0';
        got = cname(name, T0, 1);
        n = strlen(got);
        assert_true(n <= LR_SYNC_NAME_MAX && n > LR_SYNC_NAME_MAX - (size_t)w);
        assert_true(lr_utf8_valid(got, n));
        free(got);
    }
    /* an invalid UTF-8 stem is cut at the exact byte budget */
    memset(name, 0xff, 255);
    name[255] = '\0';
    got = cname(name, T0, 1);
    assert_int_equal(strlen(got), LR_SYNC_NAME_MAX);
    free(got);

    /* an extension too long to keep a byte of stem folds into the stem */
    name[0] = 'a';
    name[1] = '.';
    memset(name + 2, 'e', 240);
    name[242] = '\0';
    got = cname(name, T0, 1);
    n = strlen(got);
    assert_int_equal(n, LR_SYNC_NAME_MAX);
    assert_memory_equal(got, "a.eee", 5);
    assert_memory_equal(got + n - LR_SYNC_MARKER_LEN, ".sync-conflict-", 15);
    free(got);
    /* ...including when a conflict marker sits between stem and extension */
    char *first = cname("s.x", T0, 1);
    char big[400];
    size_t fl = strlen(first);
    memcpy(big, first, fl);
    memset(big + fl, 'e', 230);
    big[fl + 230] = '\0';
    free(first);
    got = cname(big, T0, 2);
    n = strlen(got);
    assert_int_equal(n, LR_SYNC_NAME_MAX);
    assert_memory_equal(got, "s.xeee", 6); /* stem "s" + ".xeee..." */
    free(got);
    /* a 255-byte extension-only name keeps the marker */
    memset(name, 'z', 255);
    name[0] = '.';
    name[255] = '\0';
    got = cname(name, T0, 1);
    assert_int_equal(strlen(got), LR_SYNC_NAME_MAX);
    free(got);

    /* the whole path stays within LR_INDEX_PATH_MAX */
    size_t plen = LR_INDEX_PATH_MAX - 20;
    char *p = malloc(plen + 1);
    for (size_t i = 0; i < plen; i++)
        p[i] = (i % 100 == 99) ? '/' : 'd';
    p[plen - 61] = '/';
    memset(p + plen - 60, 'n', 56);
    memcpy(p + plen - 4, ".txt", 4);
    p[plen] = '\0';
    got = cname(p, T0, 1);
    n = strlen(got);
    assert_int_equal(n, LR_INDEX_PATH_MAX);
    assert_memory_equal(got, p, plen - 60);
    assert_memory_equal(got + n - 4, ".txt", 4);
    free(got);
    /* below the limit, nothing is cut */
    p[plen - 30] = '\0';
    got = cname(p, T0, 1);
    assert_int_equal(strlen(got), plen - 30 + LR_SYNC_MARKER_LEN);
    free(got);
    /* with no room for even one byte of name: LR_ETOOBIG, and decide archives instead */
    free(p);
    plen = LR_INDEX_PATH_MAX - 5;
    p = malloc(plen + 1);
    for (size_t i = 0; i < plen; i++)
        p[i] = (i % 100 == 99) ? '/' : 'd';
    p[plen - 5] = '/';
    p[plen] = '\0';
    uint8_t *out = NULL;
    size_t on = 0;
    struct lr_err err = {0};
    assert_int_equal(lr_sync_conflict_name((uint8_t *)p, plen, T0, 1, &out, &on, &err), LR_ETOOBIG);
    assert_null(out);
    struct lr_file_rec a, b;
    mk(&a, "x", LR_FT_FILE, false, 1, 5, 0644, (const uint64_t[]){1, 1}, 1);
    mk(&b, "x", LR_FT_FILE, false, 2, 9, 0644, (const uint64_t[]){2, 1}, 1);
    free(a.path);
    free(b.path);
    a.path = (uint8_t *)strdup(p);
    b.path = (uint8_t *)strdup(p);
    a.path_len = b.path_len = plen;
    struct lr_sync_decision d;
    assert_int_equal(decide(&a, &b, &d), LR_SYNC_CONFLICT);
    assert_true(d.flags & LR_SYNC_F_ARCHIVE_LOSER);
    assert_null(d.copy_path);
    assert_false(d.copy_here);
    assert_int_equal(d.apply, LR_SYNC_APPLY_FILE);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
    free(p);
}

static void test_conflict_name_time(void **state)
{
    (void)state;
    /* before the epoch: floor, not truncation */
    char *got = cname("f", -1, 0);
    assert_string_equal(got, "f.sync-conflict-19691231-235959-AAAAAAA");
    free(got);
    got = cname("f", INT64_MAX, 0);
    assert_string_equal(got, "f.sync-conflict-22620411-234716-AAAAAAA");
    free(got);
    got = cname("f", INT64_MIN, 0);
    assert_string_equal(got, "f.sync-conflict-16770921-001243-AAAAAAA");
    free(got);
    /* against the C library, over the whole int64 range of seconds we can hit */
    for (int i = 0; i < 20000; i++) {
        int64_t ns = (int64_t)(rnd() >> 1) * (rndn(2) ? 1 : -1);
        int64_t s = ns / 1000000000 - (ns % 1000000000 < 0);
        time_t t = (time_t)s;
        struct tm tm;
        assert_non_null(gmtime_r(&t, &tm));
        char want[64];
        snprintf(want, sizeof(want), "f.sync-conflict-%04d%02d%02d-%02d%02d%02d-AAAAAAA",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        got = cname("f", ns, 0);
        assert_string_equal(got, want);
        free(got);
    }
}

/* The copy name depends on the losing version only: mtime and author. */
static void test_conflict_name_from_loser(void **state)
{
    (void)state;
    struct lr_file_rec a, b;
    /* b loses (older mtime); its author is device 0x77.. (largest counter) */
    mk(&a, "p/q.c", LR_FT_FILE, false, 1, T0 + 1000000000, 0644, (const uint64_t[]){1, 50}, 1);
    mk(&b, "p/q.c", LR_FT_FILE, false, 2, T0, 0644,
       (const uint64_t[]){UINT64_C(0x7700000000000000), 40, 1, 30}, 2);
    struct lr_sync_decision d;
    assert_int_equal(decide(&a, &b, &d), LR_SYNC_CONFLICT);
    struct lr_device_id id = {{0x77}};
    char dev[8], want[128];
    lr_device_id_short(&id, dev);
    snprintf(want, sizeof(want), "p/q.sync-conflict-20240305-060708-%s.c", dev);
    assert_string_equal((char *)d.copy_path, want);
    assert_false(d.copy_here);
    lr_sync_decision_release(&d);
    assert_int_equal(decide(&b, &a, &d), LR_SYNC_CONFLICT);
    assert_string_equal((char *)d.copy_path, want);
    assert_true(d.copy_here);
    assert_int_equal(d.apply, LR_SYNC_APPLY_FILE);
    lr_sync_decision_release(&d);
    /* an mtime tie: the content order decides, the same on both sides */
    b.mtime_ns = a.mtime_ns;
    int x = decide(&a, &b, &d);
    bool a_wins = d.apply == LR_SYNC_APPLY_NONE;
    lr_sync_decision_release(&d);
    assert_int_equal(decide(&b, &a, &d), x);
    assert_int_equal(d.apply == LR_SYNC_APPLY_NONE, !a_wins);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
    lr_sync_decision_release(NULL);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(lr_sync_action_str(LR_SYNC_TAKE_REMOTE), "take-remote");
    assert_string_equal(lr_sync_action_str(LR_SYNC_CONFLICT), "conflict");
    assert_string_equal(lr_sync_apply_str(LR_SYNC_APPLY_DELETE), "delete");
    assert_string_equal(lr_sync_apply_str(LR_SYNC_APPLY_NONE), "none");
    assert_string_equal(lr_sync_conflict_str(LR_SYNC_CONFLICT_MODIFY_DELETE), "modify-delete");
    assert_string_equal(lr_sync_action_str((enum lr_sync_action)4), "unknown");
    assert_string_equal(lr_sync_apply_str((enum lr_sync_apply)7), "unknown");
    assert_string_equal(lr_sync_conflict_str((enum lr_sync_conflict) - 1), "unknown");
    /* every value has its own name */
    for (int i = 0; i <= LR_SYNC_APPLY_DELETE; i++)
        for (int j = 0; j < i; j++)
            assert_string_not_equal(lr_sync_apply_str((enum lr_sync_apply)i),
                                    lr_sync_apply_str((enum lr_sync_apply)j));
    for (int i = 0; i <= LR_SYNC_CONFLICT_MODIFY_DELETE; i++)
        for (int j = 0; j < i; j++)
            assert_string_not_equal(lr_sync_conflict_str((enum lr_sync_conflict)i),
                                    lr_sync_conflict_str((enum lr_sync_conflict)j));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vv_order_oracle),
        cmocka_unit_test(test_vv_merge),
        cmocka_unit_test(test_vv_author),
        cmocka_unit_test(test_winner_editing_again_is_newer),
        cmocka_unit_test(test_mtime_tie_goes_to_the_larger_author),
        cmocka_unit_test(test_local_change),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_take_remote_kinds),
        cmocka_unit_test(test_equal_vv_inconsistent),
        cmocka_unit_test(test_identical_content_merge),
        cmocka_unit_test(test_metadata_only),
        cmocka_unit_test(test_modify_delete),
        cmocka_unit_test(test_local_yields),
        cmocka_unit_test(test_type_changes),
        cmocka_unit_test(test_conflict_symmetry),
        cmocka_unit_test(test_three_devices_converge),
        cmocka_unit_test(test_conflict_name_basic),
        cmocka_unit_test(test_is_conflict_copy),
        cmocka_unit_test(test_conflict_name_long),
        cmocka_unit_test(test_conflict_name_alt),
        cmocka_unit_test(test_conflict_name_time),
        cmocka_unit_test(test_conflict_name_from_loser),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
