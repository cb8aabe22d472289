/*
 * test_sync_strategy.c - conflict strategies (sync/strategy.h) and how the
 * pure decision evaluates them (lr_sync_decide_with): every pair of
 * strategies on two devices x content and metadata conflicts, decided on
 * both devices (both message orders) against an oracle written in terms of
 * devices rather than local/remote; window edges; mismatches; prefer:ID of
 * a third device; fixed rules kept for type and modify/delete conflicts;
 * convergence after applying; text and FOLDERS wire forms, hostile values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "identity/identity.h"
#include "index/index.h"
#include "proto/proto.h"
#include "sync/decide.h"
#include "sync/strategy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC 1000000000LL

/* ---- helpers ----------------------------------------------------------------- */

static struct lr_device_id dev_a, dev_b, dev_c;
/* Short IDs: a version's author is the largest counter's id (lr_sync_vv_author). */
static uint64_t sid_a, sid_b, sid_c;

static void dev_make(struct lr_device_id *d, uint8_t seed)
{
    for (size_t i = 0; i < sizeof(d->b); i++)
        d->b[i] = (uint8_t)(seed * 31u + i * 7u);
}

static int setup(void **state)
{
    (void)state;
    dev_make(&dev_a, 1);
    dev_make(&dev_b, 2);
    dev_make(&dev_c, 3);
    sid_a = lr_device_id_u64(&dev_a);
    sid_b = lr_device_id_u64(&dev_b);
    sid_c = lr_device_id_u64(&dev_c);
    return 0;
}

/* A regular file: `content` names the data (size = size_base + content). */
static void mk_file(struct lr_file_rec *r, unsigned content, uint64_t size, int64_t mtime,
                    uint32_t mode, uint64_t vid, uint64_t vc)
{
    memset(r, 0, sizeof(*r));
    r->path = (uint8_t *)strdup("dir/report.txt");
    r->path_len = strlen("dir/report.txt");
    r->type = LR_FT_FILE;
    r->mtime_ns = mtime;
    r->mode = mode;
    r->size = size;
    char tag[32];
    int n = snprintf(tag, sizeof(tag), "content-%u", content);
    lr_sha256(tag, (size_t)n, &r->blocks_hash);
    /* both versions descend from {1:10}; each device then bumped its own */
    assert_int_equal(lr_vv_set(&r->vv, 1, 10), 0);
    if (vid)
        assert_int_equal(lr_vv_set(&r->vv, vid, vc), 0);
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

static struct lr_sync_strategy st(enum lr_sync_strat k, uint32_t window,
                                  const struct lr_device_id *prefer)
{
    struct lr_sync_strategy s = {k, window, {{0}}};
    if (prefer)
        s.prefer = *prefer;
    return s;
}

/* The sides as the device `self` (holding the local record) sees them. */
static struct lr_sync_sides sides_of(const struct lr_device_id *self,
                                     const struct lr_device_id *peer,
                                     const struct lr_sync_strategy *s_self,
                                     const struct lr_sync_strategy *s_peer)
{
    struct lr_sync_sides sd;
    memset(&sd, 0, sizeof(sd));
    sd.local_dev = *self;
    sd.remote_dev = *peer;
    sd.local = *s_self;
    sd.remote = *s_peer;
    return sd;
}

static int decide_on(const struct lr_file_rec *l, const struct lr_file_rec *r,
                     const struct lr_sync_sides *sd, struct lr_sync_decision *d)
{
    struct lr_err err = {0};
    int rc = lr_sync_decide_with(l, r, sd, d, &err);
    assert_true(rc >= 0);
    assert_int_equal(rc, (int)d->action);
    return rc;
}

/*
 * Oracle: which device a strategy owned by `owner` names for versions a
 * (held by A) and b (held by B): 'A', 'B' or 0. Written per device, not per
 * local/remote, so it checks the framing in decide.c too.
 */
static char oracle_pick(const struct lr_sync_strategy *s, char owner, const struct lr_file_rec *a,
                        const struct lr_file_rec *b)
{
    char other = owner == 'A' ? 'B' : 'A';
    switch (s->kind) {
    case LR_STRAT_NEWEST: {
        long double diff = (long double)a->mtime_ns - (long double)b->mtime_ns;
        long double w = (long double)s->window_s * 1e9L;
        if (diff == 0 || (diff < 0 ? -diff : diff) < w)
            return 0;
        return diff > 0 ? 'A' : 'B';
    }
    case LR_STRAT_LARGEST:
        return a->size == b->size ? 0 : a->size > b->size ? 'A' : 'B';
    case LR_STRAT_PREFER_LOCAL:
        return owner;
    case LR_STRAT_PREFER_REMOTE:
        return other;
    case LR_STRAT_PREFER_DEVICE:
        if (lr_device_id_eq(&s->prefer, &dev_a))
            return 'A';
        if (lr_device_id_eq(&s->prefer, &dev_b))
            return 'B';
        return 0;
    default:
        return 0;
    }
}

static char oracle_winner(const struct lr_sync_strategy *sa, const struct lr_sync_strategy *sb,
                          const struct lr_file_rec *a, const struct lr_file_rec *b)
{
    char x = oracle_pick(sa, 'A', a, b), y = oracle_pick(sb, 'B', a, b);
    return x == y ? x : 0;
}

/*
 * Decide on A (local a, remote b) and on B (local b, remote a) and check
 * they agree with each other and with the oracle. Returns the strategy
 * winner ('A', 'B' or 0 for keep-both).
 */
static char check_pair(const struct lr_file_rec *a, const struct lr_file_rec *b,
                       const struct lr_sync_strategy *sa, const struct lr_sync_strategy *sb,
                       bool same_content)
{
    struct lr_sync_sides on_a = sides_of(&dev_a, &dev_b, sa, sb);
    struct lr_sync_sides on_b = sides_of(&dev_b, &dev_a, sb, sa);
    struct lr_sync_decision da, db, ka, kb;
    decide_on(a, b, &on_a, &da);
    decide_on(b, a, &on_b, &db);
    /* keep-both reference: the plain decision */
    struct lr_err err = {0};
    assert_true(lr_sync_decide(a, b, &ka, &err) >= 0);
    assert_true(lr_sync_decide(b, a, &kb, &err) >= 0);

    char want = oracle_winner(sa, sb, a, b);
    enum lr_sync_action act = same_content ? LR_SYNC_MERGE_VV : LR_SYNC_CONFLICT;
    assert_int_equal(da.action, act);
    assert_int_equal(db.action, act);
    assert_int_equal(da.by_strategy, want != 0);
    assert_int_equal(db.by_strategy, want != 0);
    char ta[LR_SYNC_STRATEGY_STRLEN + 1], tb[LR_SYNC_STRATEGY_STRLEN + 1];
    assert_string_equal(da.strategy, lr_sync_strategy_format(sa, ta));
    assert_string_equal(db.strategy, lr_sync_strategy_format(sb, tb));

    /* Exactly one side takes the other's version; both name the same winner. */
    bool a_wins_on_a = !da.from_remote, a_wins_on_b = db.from_remote;
    if (!same_content) {
        a_wins_on_a = da.apply == LR_SYNC_APPLY_NONE;
        a_wins_on_b = db.apply != LR_SYNC_APPLY_NONE;
        assert_true(a_wins_on_a == a_wins_on_b);
    } else {
        assert_true(a_wins_on_a == a_wins_on_b);
    }
    if (want) {
        assert_int_equal(a_wins_on_a, want == 'A');
        if (!same_content) {
            assert_null(da.copy_path);
            assert_null(db.copy_path);
            assert_false(da.copy_here || db.copy_here);
            assert_true(da.flags & LR_SYNC_F_ARCHIVE_LOSER);
            assert_true(db.flags & LR_SYNC_F_ARCHIVE_LOSER);
        }
    } else {
        /* keep-both: the same winner, vector and copy as without strategies */
        assert_int_equal(da.from_remote, ka.from_remote);
        assert_int_equal(da.apply, ka.apply);
        assert_int_equal(db.apply, kb.apply);
        assert_int_equal(da.copy_here, ka.copy_here);
        assert_int_equal(db.copy_here, kb.copy_here);
        assert_false(da.flags & LR_SYNC_F_ARCHIVE_LOSER);
        if (!same_content) {
            assert_non_null(da.copy_path);
            assert_non_null(db.copy_path);
            assert_string_equal(da.copy_path, db.copy_path);
            assert_true(da.copy_here != db.copy_here);
        }
    }
    /* The loser's holder stores the merged vector; equal on both when both store. */
    if (da.apply != LR_SYNC_APPLY_NONE && db.apply != LR_SYNC_APPLY_NONE)
        assert_true(lr_vv_equal(&da.vv, &db.vv));
    lr_sync_decision_release(&da);
    lr_sync_decision_release(&db);
    lr_sync_decision_release(&ka);
    lr_sync_decision_release(&kb);
    return want;
}

/* Every strategy a device may hold in these tests. */
static size_t all_strategies(struct lr_sync_strategy *v)
{
    size_t n = 0;
    v[n++] = st(LR_STRAT_KEEP_BOTH, 0, NULL);
    v[n++] = st(LR_STRAT_NEWEST, 0, NULL);
    v[n++] = st(LR_STRAT_NEWEST, 30, NULL);
    v[n++] = st(LR_STRAT_LARGEST, 0, NULL);
    v[n++] = st(LR_STRAT_PREFER_LOCAL, 0, NULL);
    v[n++] = st(LR_STRAT_PREFER_REMOTE, 0, NULL);
    v[n++] = st(LR_STRAT_PREFER_DEVICE, 0, &dev_a);
    v[n++] = st(LR_STRAT_PREFER_DEVICE, 0, &dev_b);
    v[n++] = st(LR_STRAT_PREFER_DEVICE, 0, &dev_c);
    return n;
}

/* ---- the matrix ------------------------------------------------------------------ */

/* (mtime A, mtime B, size A, size B) shapes: each strategy both ways and tied. */
static const struct {
    int64_t ma, mb;
    uint64_t sa, sb;
} shapes[] = {
    {1000 * SEC, 1060 * SEC, 500, 400},     /* B newer (beyond 30 s), A larger */
    {1060 * SEC, 1000 * SEC, 400, 500},     /* A newer, B larger */
    {1000 * SEC, 1010 * SEC, 500, 500},     /* B newer within 30 s, equal sizes */
    {1000 * SEC, 1000 * SEC, 700, 600},     /* equal mtimes, A larger */
    {1000 * SEC + 1, 1000 * SEC, 600, 600}, /* 1 ns apart, equal sizes */
};

static void test_matrix_content(void **state)
{
    (void)state;
    struct lr_sync_strategy s[16];
    size_t n = all_strategies(s);
    size_t winners[3] = {0};
    for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
        struct lr_file_rec a, b;
        mk_file(&a, 1, shapes[k].sa, shapes[k].ma, 0644, sid_a, 20);
        mk_file(&b, 2, shapes[k].sb, shapes[k].mb, 0644, sid_b, 30);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) {
                char w = check_pair(&a, &b, &s[i], &s[j], false);
                winners[w == 0 ? 0 : w == 'A' ? 1 : 2]++;
            }
        lr_file_rec_release(&a);
        lr_file_rec_release(&b);
    }
    /* the matrix exercises all three outcomes, many times */
    assert_true(winners[0] > 50 && winners[1] > 20 && winners[2] > 20);
}

static void test_matrix_metadata(void **state)
{
    (void)state;
    struct lr_sync_strategy s[16];
    size_t n = all_strategies(s);
    for (size_t k = 0; k < sizeof(shapes) / sizeof(shapes[0]); k++) {
        if (shapes[k].ma == shapes[k].mb)
            continue; /* same content needs a metadata difference: mode below */
        struct lr_file_rec a, b;
        /* same content (so same size), metadata differs in mtime and mode */
        mk_file(&a, 7, 900, shapes[k].ma, 0600, sid_a, 20);
        mk_file(&b, 7, 900, shapes[k].mb, 0644, sid_b, 30);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++)
                check_pair(&a, &b, &s[i], &s[j], true);
        lr_file_rec_release(&a);
        lr_file_rec_release(&b);
    }
}

/* ---- named cases -------------------------------------------------------------------- */

static void test_newest_window_edges(void **state)
{
    (void)state;
    struct lr_sync_strategy w10 = st(LR_STRAT_NEWEST, 10, NULL);
    struct lr_sync_strategy w0 = st(LR_STRAT_NEWEST, 0, NULL);
    const struct {
        int64_t diff;
        const struct lr_sync_strategy *s;
        char want;
    } cases[] = {
        {10 * SEC - 1, &w10, 0}, /* closer than the window: a tie */
        {10 * SEC, &w10, 'B'},   /* exactly the window: not closer, newest wins */
        {10 * SEC + 1, &w10, 'B'},
        {-(10 * SEC - 1), &w10, 0},
        {-(10 * SEC), &w10, 'A'},
        {0, &w0, 0}, /* equal mtimes tie even without a window */
        {1, &w0, 'B'},
        {-1, &w0, 'A'},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lr_file_rec a, b;
        mk_file(&a, 1, 100, 5000 * SEC, 0644, sid_a, 20);
        mk_file(&b, 2, 100, 5000 * SEC + cases[i].diff, 0644, sid_b, 30);
        assert_int_equal(check_pair(&a, &b, cases[i].s, cases[i].s, false), cases[i].want);
        lr_file_rec_release(&a);
        lr_file_rec_release(&b);
    }
    /* the largest window across the int64 range: no overflow in the difference */
    struct lr_sync_strategy wmax = st(LR_STRAT_NEWEST, LR_SYNC_WINDOW_MAX, NULL);
    struct lr_file_rec a, b;
    mk_file(&a, 1, 100, INT64_MIN, 0644, sid_a, 20);
    mk_file(&b, 2, 100, INT64_MAX, 0644, sid_b, 30);
    assert_int_equal(check_pair(&a, &b, &wmax, &wmax, false), 'B');
    lr_file_rec_release(&b);
    mk_file(&b, 2, 100, INT64_MIN + (int64_t)LR_SYNC_WINDOW_MAX * SEC - 1, 0644, sid_b, 30);
    assert_int_equal(check_pair(&a, &b, &wmax, &wmax, false), 0);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
}

static void test_mismatch_keeps_both(void **state)
{
    (void)state;
    struct lr_file_rec a, b;
    mk_file(&a, 1, 100, 1000 * SEC, 0644, sid_a, 20);
    mk_file(&b, 2, 200, 2000 * SEC, 0644, sid_b, 30);
    struct lr_sync_strategy pl = st(LR_STRAT_PREFER_LOCAL, 0, NULL);
    struct lr_sync_strategy pr = st(LR_STRAT_PREFER_REMOTE, 0, NULL);
    struct lr_sync_strategy nw = st(LR_STRAT_NEWEST, 0, NULL);
    struct lr_sync_strategy lg = st(LR_STRAT_LARGEST, 0, NULL);
    struct lr_sync_strategy kb = st(LR_STRAT_KEEP_BOTH, 0, NULL);
    struct lr_sync_strategy pa = st(LR_STRAT_PREFER_DEVICE, 0, &dev_a);
    assert_int_equal(check_pair(&a, &b, &pl, &pl, false), 0);   /* both prefer themselves */
    assert_int_equal(check_pair(&a, &b, &pr, &pr, false), 0);   /* both defer */
    assert_int_equal(check_pair(&a, &b, &pl, &pr, false), 'A'); /* both name A */
    assert_int_equal(check_pair(&a, &b, &pr, &pl, false), 'B');
    assert_int_equal(check_pair(&a, &b, &nw, &nw, false), 'B');
    assert_int_equal(check_pair(&a, &b, &nw, &lg, false), 'B'); /* both name B */
    assert_int_equal(check_pair(&a, &b, &pa, &nw, false), 0);   /* A vs B */
    assert_int_equal(check_pair(&a, &b, &nw, &kb, false), 0);   /* keep-both is a choice */
    assert_int_equal(check_pair(&a, &b, &pa, &pl, false), 0);   /* A vs B's own */
    assert_int_equal(check_pair(&a, &b, &pa, &pr, false), 'A'); /* both name A */
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
}

static void test_prefer_third_device(void **state)
{
    (void)state;
    struct lr_file_rec a, b, c;
    mk_file(&a, 1, 100, 1000 * SEC, 0644, sid_a, 20);
    mk_file(&b, 2, 200, 2000 * SEC, 0644, sid_b, 30);
    struct lr_sync_strategy pc = st(LR_STRAT_PREFER_DEVICE, 0, &dev_c);
    struct lr_sync_strategy pb = st(LR_STRAT_PREFER_DEVICE, 0, &dev_b);
    /* C made neither version: no opinion, keep-both */
    assert_int_equal(check_pair(&a, &b, &pc, &pc, false), 0);
    assert_int_equal(check_pair(&a, &b, &pb, &pb, false), 'B');
    struct lr_sync_sides on_c = sides_of(&dev_c, &dev_a, &pc, &pc);
    struct lr_sync_sides on_a = sides_of(&dev_a, &dev_c, &pc, &pc);
    struct lr_sync_decision dc, da;
    /* C holding B's version is still B's version: prefer:C names neither. */
    decide_on(&b, &a, &on_c, &dc);
    decide_on(&a, &b, &on_a, &da);
    assert_false(dc.by_strategy || da.by_strategy);
    lr_sync_decision_release(&dc);
    lr_sync_decision_release(&da);
    /* A version C made wins with prefer:C wherever it is decided, also on A,
     * which got it through B (the sender is not the author). */
    mk_file(&c, 3, 50, 500 * SEC, 0644, sid_c, 40);
    struct lr_sync_sides a_from_b = sides_of(&dev_a, &dev_b, &pc, &pc);
    decide_on(&a, &c, &a_from_b, &da);
    decide_on(&c, &a, &on_c, &dc);
    assert_true(dc.by_strategy && da.by_strategy);
    assert_int_equal(dc.apply, LR_SYNC_APPLY_NONE); /* C's wins: C changes nothing */
    assert_int_equal(da.apply, LR_SYNC_APPLY_FILE); /* A takes it, its own archived */
    assert_true(da.from_remote);
    lr_sync_decision_release(&dc);
    lr_sync_decision_release(&da);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
    lr_file_rec_release(&c);
}

/* Type and modify/delete conflicts keep their fixed rules whatever the strategies. */
static void test_fixed_rules_kept(void **state)
{
    (void)state;
    struct lr_sync_strategy pr = st(LR_STRAT_PREFER_REMOTE, 0, NULL);
    struct lr_sync_strategy pl = st(LR_STRAT_PREFER_LOCAL, 0, NULL);
    struct lr_file_rec a, b;
    mk_file(&a, 1, 100, 9000 * SEC, 0644, sid_a, 20);
    mk_file(&b, 2, 100, 1000 * SEC, 0644, sid_b, 30);
    b.deleted = true;                                               /* B deleted, A edited */
    struct lr_sync_sides on_b = sides_of(&dev_b, &dev_a, &pl, &pr); /* both name B's */
    struct lr_sync_decision d;
    decide_on(&b, &a, &on_b, &d);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_MODIFY_DELETE);
    assert_false(d.by_strategy);
    assert_true(d.from_remote); /* the edit comes back */
    lr_sync_decision_release(&d);
    /* a directory beats a file, even one both strategies name */
    b.deleted = false;
    b.type = LR_FT_DIR;
    b.size = 0;
    struct lr_sync_sides on_a = sides_of(&dev_a, &dev_b, &pl, &pr); /* both name A's file */
    decide_on(&a, &b, &on_a, &d);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_TYPE);
    assert_false(d.by_strategy);
    assert_true(d.from_remote);
    assert_true(d.copy_here);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
    /* symlinks: not archived by the store, so never resolved without a copy */
    struct lr_file_rec x, y;
    mk_file(&x, 1, 0, 2000 * SEC, 0777, sid_a, 20);
    mk_file(&y, 2, 0, 1000 * SEC, 0777, sid_b, 30);
    x.type = y.type = LR_FT_SYMLINK;
    x.target = (uint8_t *)strdup("ta");
    x.target_len = 2;
    y.target = (uint8_t *)strdup("tb");
    y.target_len = 2;
    on_a = sides_of(&dev_a, &dev_b, &pr, &pl); /* both name B's */
    decide_on(&x, &y, &on_a, &d);
    assert_false(d.by_strategy);
    assert_int_equal(d.apply, LR_SYNC_APPLY_NONE); /* keep-both: A's newer link keeps the name */
    lr_sync_decision_release(&d);
    lr_file_rec_release(&x);
    lr_file_rec_release(&y);
}

/* The peer's strategy unknown: pairs our strategy could decide wait; the rest not. */
static void test_deferred(void **state)
{
    (void)state;
    struct lr_sync_strategy nw = st(LR_STRAT_NEWEST, 0, NULL);
    struct lr_sync_strategy kb = st(LR_STRAT_KEEP_BOTH, 0, NULL);
    struct lr_sync_strategy pl = st(LR_STRAT_PREFER_LOCAL, 0, NULL);
    struct lr_file_rec a, b;
    mk_file(&a, 1, 100, 1000 * SEC, 0644, sid_a, 20);
    mk_file(&b, 2, 200, 2000 * SEC, 0644, sid_b, 30);
    struct lr_sync_sides sd = sides_of(&dev_a, &dev_b, &nw, &pl); /* remote: a wrong guess */
    sd.remote_unknown = true;
    struct lr_sync_decision d;
    assert_int_equal(decide_on(&a, &b, &sd, &d), LR_SYNC_NOTHING);
    assert_true(d.flags & LR_SYNC_F_DEFERRED);
    assert_int_equal(d.apply, LR_SYNC_APPLY_NONE);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_NONE); /* not in the trail yet */
    assert_null(d.copy_path);
    lr_sync_decision_release(&d);
    /* metadata only: deferred too (the strategies pick whose metadata) */
    struct lr_file_rec m;
    mk_file(&m, 1, 100, 1500 * SEC, 0600, sid_b, 30);
    assert_int_equal(decide_on(&a, &m, &sd, &d), LR_SYNC_NOTHING);
    assert_true(d.flags & LR_SYNC_F_DEFERRED);
    lr_sync_decision_release(&d);
    /* identical versions merge at once */
    struct lr_file_rec same;
    mk_file(&same, 1, 100, 1000 * SEC, 0644, sid_b, 30);
    assert_int_equal(decide_on(&a, &same, &sd, &d), LR_SYNC_MERGE_VV);
    assert_false(d.flags & LR_SYNC_F_DEFERRED);
    lr_sync_decision_release(&d);
    /* ours keep-both: theirs cannot matter, keep-both now */
    struct lr_sync_sides sk = sides_of(&dev_a, &dev_b, &kb, &pl);
    sk.remote_unknown = true;
    assert_int_equal(decide_on(&a, &b, &sk, &d), LR_SYNC_CONFLICT);
    assert_false(d.by_strategy || (d.flags & LR_SYNC_F_DEFERRED));
    assert_true(d.copy_here);
    lr_sync_decision_release(&d);
    /* a fixed rule needs no strategy: an edit against a delete goes ahead */
    b.deleted = true;
    assert_int_equal(decide_on(&b, &a, &sd, &d), LR_SYNC_CONFLICT);
    assert_int_equal(d.conflict, LR_SYNC_CONFLICT_MODIFY_DELETE);
    assert_false(d.flags & LR_SYNC_F_DEFERRED);
    lr_sync_decision_release(&d);
    /* known again: decided */
    b.deleted = false;
    sd.remote_unknown = false;
    sd.remote = nw;
    assert_int_equal(decide_on(&a, &b, &sd, &d), LR_SYNC_CONFLICT);
    assert_true(d.by_strategy);
    lr_sync_decision_release(&d);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
    lr_file_rec_release(&m);
    lr_file_rec_release(&same);
}

/* NULL sides and keep-both on both are exactly lr_sync_decide. */
static void test_null_sides(void **state)
{
    (void)state;
    struct lr_file_rec a, b;
    mk_file(&a, 1, 100, 1000 * SEC, 0644, sid_a, 20);
    mk_file(&b, 2, 200, 2000 * SEC, 0644, sid_b, 30);
    struct lr_sync_decision d1, d2, d3;
    struct lr_sync_strategy kb = st(LR_STRAT_KEEP_BOTH, 0, NULL);
    struct lr_sync_sides sd = sides_of(&dev_a, &dev_b, &kb, &kb);
    decide_on(&a, &b, NULL, &d1);
    decide_on(&a, &b, &sd, &d2);
    struct lr_err err = {0};
    assert_int_equal(lr_sync_decide(&a, &b, &d3, &err), LR_SYNC_CONFLICT);
    assert_string_equal(d1.strategy, "keep-both");
    assert_string_equal(d3.strategy, "keep-both");
    assert_int_equal(d1.apply, d3.apply);
    assert_int_equal(d2.apply, d3.apply);
    assert_string_equal(d1.copy_path, d3.copy_path);
    assert_string_equal(d2.copy_path, d3.copy_path);
    assert_true(d1.copy_here && d2.copy_here && d3.copy_here);
    lr_sync_decision_release(&d1);
    lr_sync_decision_release(&d2);
    lr_sync_decision_release(&d3);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
}

/*
 * Apply the decisions as the daemon would (the loser's holder takes the
 * winner with the merged vector; the winner's holder changes nothing), then
 * exchange again: both devices end with the same record and nothing to do.
 */
static void test_converges(void **state)
{
    (void)state;
    struct lr_sync_strategy s[16];
    size_t n = all_strategies(s);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            struct lr_file_rec a, b;
            mk_file(&a, 1, 300, 1000 * SEC, 0644, sid_a, 20);
            mk_file(&b, 2, 200, 1100 * SEC, 0600, sid_b, 30);
            struct lr_sync_sides on_a = sides_of(&dev_a, &dev_b, &s[i], &s[j]);
            struct lr_sync_sides on_b = sides_of(&dev_b, &dev_a, &s[j], &s[i]);
            struct lr_file_rec *dev[2] = {&a, &b};
            const struct lr_sync_sides *sd[2] = {&on_a, &on_b};
            for (int round = 0; round < 4; round++) {
                /* both decide on what the other held at the start of the round */
                struct lr_file_rec snap[2];
                rec_copy(&snap[0], &a);
                rec_copy(&snap[1], &b);
                for (int k = 0; k < 2; k++) {
                    struct lr_sync_decision d;
                    decide_on(dev[k], &snap[1 - k], sd[k], &d);
                    if (d.apply != LR_SYNC_APPLY_NONE) {
                        struct lr_file_rec nr;
                        rec_copy(&nr, d.from_remote ? &snap[1 - k] : dev[k]);
                        lr_vv_copy(&nr.vv, &d.vv);
                        lr_file_rec_release(dev[k]);
                        *dev[k] = nr;
                    }
                    lr_sync_decision_release(&d);
                }
                lr_file_rec_release(&snap[0]);
                lr_file_rec_release(&snap[1]);
            }
            assert_true(lr_vv_equal(&a.vv, &b.vv));
            assert_true(a.size == b.size && a.mtime_ns == b.mtime_ns && a.mode == b.mode);
            assert_memory_equal(a.blocks_hash.b, b.blocks_hash.b, LR_HASH_LEN);
            lr_file_rec_release(&a);
            lr_file_rec_release(&b);
        }
}

/* Random pairs (files, tombstones, directories, symlinks; any vectors) and
 * random strategies, decided on both devices: same action, same winner,
 * same copy name made by exactly one side; strategies only ever decide
 * between two live files. */
static void test_random_symmetry(void **state)
{
    (void)state;
    uint64_t x = 0x243f6a8885a308d3u;
    struct lr_sync_strategy s[16];
    size_t ns = all_strategies(s);
    for (int it = 0; it < 20000; it++) {
        x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
        uint64_t r = x * 0x2545f4914f6cdd1du;
        struct lr_file_rec a, b;
        mk_file(&a, (unsigned)(r & 3), 100 + (r >> 2 & 3), (int64_t)(r >> 4 & 7) * 7 * SEC, 0644,
                0xA0, 1 + (r >> 7 & 3));
        mk_file(&b, (unsigned)(r >> 9 & 3), 100 + (r >> 11 & 3), (int64_t)(r >> 13 & 7) * 7 * SEC,
                (r >> 16 & 1) ? 0600 : 0644, 0xB0, 1 + (r >> 17 & 3));
        if (r >> 19 & 1)
            assert_int_equal(lr_vv_set(&b.vv, 0xA0, 1 + (r >> 20 & 3)), 0);
        struct lr_file_rec *rs[2] = {&a, &b};
        for (int k = 0; k < 2; k++) {
            unsigned t = (unsigned)(r >> (22 + 3 * k) & 7);
            if (t == 5)
                rs[k]->deleted = true;
            else if (t == 6)
                rs[k]->type = LR_FT_DIR, rs[k]->size = 0;
            else if (t == 7) {
                rs[k]->type = LR_FT_SYMLINK;
                rs[k]->size = 0;
                rs[k]->target = (uint8_t *)strdup(k ? "tb" : "ta");
                rs[k]->target_len = 2;
            }
        }
        const struct lr_sync_strategy *sa = &s[(r >> 28) % ns], *sb = &s[(r >> 36) % ns];
        struct lr_sync_sides on_a = sides_of(&dev_a, &dev_b, sa, sb);
        struct lr_sync_sides on_b = sides_of(&dev_b, &dev_a, sb, sa);
        struct lr_sync_decision da, db;
        int ra = decide_on(&a, &b, &on_a, &da), rb = decide_on(&b, &a, &on_b, &db);
        if (ra == LR_SYNC_CONFLICT || ra == LR_SYNC_MERGE_VV) {
            assert_int_equal(rb, ra);
            assert_int_equal(da.by_strategy, db.by_strategy);
            if (da.by_strategy)
                assert_true(!a.deleted && !b.deleted && a.type == LR_FT_FILE &&
                            b.type == LR_FT_FILE);
            if (ra == LR_SYNC_CONFLICT) {
                assert_true((da.apply == LR_SYNC_APPLY_NONE) == (db.apply != LR_SYNC_APPLY_NONE));
                assert_true((da.copy_path == NULL) == (db.copy_path == NULL));
                if (da.copy_path) {
                    assert_string_equal(da.copy_path, db.copy_path);
                    assert_true(da.copy_here != db.copy_here);
                }
            } else {
                assert_true(da.from_remote != db.from_remote ||
                            (a.mtime_ns == b.mtime_ns && a.mode == b.mode));
            }
        } else if (ra == LR_SYNC_TAKE_REMOTE) {
            assert_int_equal(rb, LR_SYNC_NOTHING);
        }
        lr_sync_decision_release(&da);
        lr_sync_decision_release(&db);
        lr_file_rec_release(&a);
        lr_file_rec_release(&b);
    }
}

/* ---- text and wire forms ------------------------------------------------------------ */

static void test_parse_format(void **state)
{
    (void)state;
    const char *ok[] = {"keep-both", "newest", "largest", "prefer-local", "prefer-remote"};
    struct lr_sync_strategy s;
    char t[LR_SYNC_STRATEGY_STRLEN + 1];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(lr_sync_strategy_parse(ok[i], 5, &s, NULL), 0);
        assert_int_equal((int)s.kind, (int)i);
        assert_int_equal(s.window_s, 5);
        assert_string_equal(lr_sync_strategy_format(&s, t), ok[i]);
    }
    assert_int_equal(lr_sync_strategy_parse(NULL, 0, &s, NULL), 0);
    assert_int_equal(s.kind, LR_STRAT_KEEP_BOTH);

    char id[LR_DEVICE_ID_STRLEN + 1], text[LR_SYNC_STRATEGY_STRLEN + 8];
    lr_device_id_format(&dev_b, id);
    snprintf(text, sizeof(text), "prefer:%s", id);
    assert_int_equal(lr_sync_strategy_parse(text, 0, &s, NULL), 0);
    assert_int_equal(s.kind, LR_STRAT_PREFER_DEVICE);
    assert_true(lr_device_id_eq(&s.prefer, &dev_b));
    assert_string_equal(lr_sync_strategy_format(&s, t), text);

    struct lr_err err = {0};
    const char *bad[] = {"", "Newest", "prefer", "prefer:", "prefer:XYZ", "keep-both ", "oldest"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(lr_sync_strategy_parse(bad[i], 0, &s, &err), LR_EUSAGE);
        assert_non_null(strstr(err.msg, "invalid conflict strategy"));
        assert_non_null(strstr(err.msg, bad[i]));
        assert_int_equal(s.kind, LR_STRAT_KEEP_BOTH); /* zeroed on failure */
    }
    /* a typo in the ID (bad check character) is refused */
    text[strlen(text) - 1] = text[strlen(text) - 1] == 'A' ? 'B' : 'A';
    assert_int_equal(lr_sync_strategy_parse(text, 0, &s, &err), LR_EUSAGE);
    assert_int_equal(lr_sync_strategy_parse("newest", LR_SYNC_WINDOW_MAX, &s, NULL), 0);
    assert_int_equal(lr_sync_strategy_parse("newest", LR_SYNC_WINDOW_MAX + 1, &s, &err), LR_EUSAGE);
}

static void folder_entry(struct lr_proto_folder *f, const char *id)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->id, sizeof(f->id), "%s", id);
    f->index_id = 77;
    f->max_seq = 5;
}

static void test_wire_round_trip(void **state)
{
    (void)state;
    struct lr_sync_strategy in[4] = {
        st(LR_STRAT_NEWEST, 30, NULL),
        st(LR_STRAT_PREFER_DEVICE, 0, &dev_c),
        st(LR_STRAT_KEEP_BOTH, 0, NULL),
        st(LR_STRAT_PREFER_REMOTE, 0, NULL),
    };
    struct lr_proto_folder v[5];
    const char *ids[5] = {"a", "b", "c", "d", "e"};
    for (size_t i = 0; i < 5; i++) {
        folder_entry(&v[i], ids[i]);
        if (i < 4)
            lr_sync_strategy_to_proto(&in[i], &v[i]);
    }
    /* "prefer:" + a formatted ID is over option 2's 64 bytes: only option 3 */
    assert_string_equal(v[1].conflict, "");
    assert_string_equal(v[0].conflict, "newest");
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_FOLDERS_MAX);
    assert_int_equal(lr_proto_folders_encode(v, 5, &b), 0);
    struct lr_proto_folders out;
    struct lr_err err = {0};
    assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, &err), 0);
    assert_int_equal(out.n, 5);
    for (size_t i = 0; i < 4; i++) {
        struct lr_sync_strategy s;
        assert_true(out.v[i].has_resolve);
        assert_int_equal(lr_sync_strategy_from_proto(&out.v[i], &s), 0);
        assert_int_equal(s.kind, in[i].kind);
        assert_int_equal(s.window_s, in[i].window_s);
        assert_true(lr_device_id_eq(&s.prefer, &in[i].prefer));
    }
    /* no option 3: keep-both */
    struct lr_sync_strategy s = st(LR_STRAT_LARGEST, 9, NULL);
    assert_false(out.v[4].has_resolve);
    assert_int_equal(lr_sync_strategy_from_proto(&out.v[4], &s), 0);
    assert_int_equal(s.kind, LR_STRAT_KEEP_BOTH);
    lr_proto_folders_release(&out);
    lr_buf_release(&b);

    /* the encoder refuses what the decoder would */
    struct lr_proto_folder f;
    folder_entry(&f, "x");
    f.has_resolve = true;
    f.resolve = 6;
    lr_buf_init(&b, LR_PROTO_FOLDERS_MAX);
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    f.resolve = LR_PROTO_RESOLVE_NEWEST;
    f.resolve_window = LR_PROTO_RESOLVE_WINDOW_MAX + 1;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    lr_buf_release(&b);
}

/* Hand-made entries with a hostile option 3 value. */
static int decode_opt3(const uint8_t *val, size_t vl, struct lr_proto_folders *out,
                       struct lr_err *err)
{
    uint8_t p[128];
    size_t n = 0;
    p[n++] = 1;                        /* one entry */
    p[n++] = 1;                        /* id length */
    p[n++] = 'f';                      /* id */
    memset(p + n, 0, 8), p[n + 7] = 1; /* index_id 1 */
    n += 8;
    p[n++] = 0;          /* max_seq */
    memset(p + n, 0, 8); /* peer_index_id 0 */
    n += 8;
    p[n++] = 0; /* peer_seq */
    p[n++] = 1; /* one option */
    p[n++] = 3; /* key 3 */
    p[n++] = (uint8_t)vl;
    memcpy(p + n, val, vl);
    n += vl;
    return lr_proto_folders_decode(p, n, out, err);
}

static void test_wire_hostile(void **state)
{
    (void)state;
    struct lr_proto_folders out;
    struct lr_err err;
    uint8_t dev[1 + 1 + 32];
    dev[0] = 5;
    dev[1] = 0;
    memcpy(dev + 2, dev_a.b, 32);
    memset(&err, 0, sizeof(err));
    assert_int_equal(decode_opt3(dev, sizeof(dev), &out, &err), 0);
    assert_int_equal(out.v[0].resolve, LR_PROTO_RESOLVE_PREFER_DEVICE);
    assert_memory_equal(out.v[0].resolve_device, dev_a.b, 32);
    lr_proto_folders_release(&out);

    const struct {
        uint8_t v[40];
        size_t n;
        int rc;
        const char *msg;
    } bad[] = {
        {{0}, 0, LR_ETRUNC, "resolve: truncated"},
        {{1}, 1, LR_ETRUNC, "resolve: truncated"},
        {{6, 0}, 2, LR_EBADVAL, "not known"},
        {{0x40, 0x06, 0}, 3, LR_EBADVAL, "not known"},          /* 6 as a two-byte varint */
        {{1, 0x81, 0xe1, 0x33, 0x81}, 5, LR_EBADVAL, "window"}, /* > one year */
        {{5, 0, 1, 2, 3}, 5, LR_ETRUNC, "device ID truncated"},
        {{1, 0, 0}, 3, LR_EBADVAL, "trailing"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        assert_int_equal(decode_opt3(bad[i].v, bad[i].n, &out, &err), bad[i].rc);
        assert_non_null(strstr(err.msg, bad[i].msg));
        assert_null(out.v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix_content),      cmocka_unit_test(test_matrix_metadata),
        cmocka_unit_test(test_newest_window_edges), cmocka_unit_test(test_mismatch_keeps_both),
        cmocka_unit_test(test_prefer_third_device), cmocka_unit_test(test_fixed_rules_kept),
        cmocka_unit_test(test_null_sides),          cmocka_unit_test(test_converges),
        cmocka_unit_test(test_random_symmetry),     cmocka_unit_test(test_deferred),
        cmocka_unit_test(test_parse_format),        cmocka_unit_test(test_wire_round_trip),
        cmocka_unit_test(test_wire_hostile),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
