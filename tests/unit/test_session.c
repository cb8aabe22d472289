/* test_session.c - the transfer session state machine (every transition,
 * legal and refused, against a table written out here independently),
 * counters and their bounds, checkpoint batching by count and by time,
 * restoring hostile checkpoints, and history pruning. */
#include "sync/session.h"

#include "util/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#define P LR_SESSION_PENDING
#define A LR_SESSION_ACTIVE
#define I LR_SESSION_INTERRUPTED
#define F LR_SESSION_FAILED
#define C LR_SESSION_COMPLETE

static const struct lr_session_progress prog10 = {
    .chunks_total = 10, .bytes_total = 1000, .chunks_done = 0, .bytes_done = 0};

/* A session in state st, reached only through legal transitions. */
static void reach(struct lr_session *s, enum lr_session_state st)
{
    lr_session_init(s, 1);
    switch (st) {
    case P:
        break;
    case A:
        assert_int_equal(lr_session_start(s, &prog10, 2), 0);
        break;
    case I:
    case F:
    case C:
        assert_int_equal(lr_session_start(s, &prog10, 2), 0);
        assert_int_equal(lr_session_end(s, st, 3), 0);
        break;
    }
    assert_int_equal(s->state, st);
    lr_session_assert_state(s);
}

/* The lifecycle, written as the list of allowed edges. */
static bool expected_edge(enum lr_session_state from, enum lr_session_state to)
{
    static const int edges[][2] = {{P, A}, {P, I}, {P, F}, {A, C}, {A, F}, {A, I},
                                   {I, A}, {I, C}, {I, F}, {F, A}, {F, C}};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        if (edges[i][0] == (int)from && edges[i][1] == (int)to)
            return true;
    return false;
}

static void test_every_transition(void **state)
{
    (void)state;
    for (int from = 0; from < LR_SESSION_NSTATES; from++) {
        for (int to = 0; to < LR_SESSION_NSTATES; to++) {
            enum lr_session_state f = (enum lr_session_state)from, t = (enum lr_session_state)to;
            bool want = expected_edge(f, t);
            assert_int_equal(lr_session_can(f, t), want);
            struct lr_session s;
            reach(&s, f);
            struct lr_session before = s;
            before.dirty = false;
            s.dirty = false;
            int rc = t == A ? lr_session_start(&s, &prog10, 50) : lr_session_end(&s, t, 50);
            if (t == P) {
                /* Nothing goes back to pending. */
                assert_int_equal(rc, LR_EBADVAL);
            } else {
                assert_int_equal(rc, want ? 0 : LR_EBADVAL);
            }
            if (rc == 0) {
                assert_int_equal(s.state, t);
                assert_true(s.dirty);
                assert_int_equal(s.updated_ms, 50);
                assert_int_equal(s.in_use, t == A);
                lr_session_assert_state(&s);
            } else {
                /* A refused transition changes nothing, not even the mark. */
                assert_memory_equal(&s, &before, sizeof(s));
            }
        }
    }
}

static void test_state_names(void **state)
{
    (void)state;
    assert_string_equal(lr_session_state_name(P), "pending");
    assert_string_equal(lr_session_state_name(A), "active");
    assert_string_equal(lr_session_state_name(I), "interrupted");
    assert_string_equal(lr_session_state_name(F), "failed");
    assert_string_equal(lr_session_state_name(C), "complete");
    assert_null(lr_session_state_name((enum lr_session_state)5));
    assert_null(lr_session_state_name((enum lr_session_state) - 1));
    assert_false(lr_session_can((enum lr_session_state)7, A));
    assert_false(lr_session_can(I, (enum lr_session_state) - 3));
}

static void test_resume_and_retry_cycles(void **state)
{
    (void)state;
    struct lr_session s;
    lr_session_init(&s, 0);
    assert_int_equal(lr_session_start(&s, &prog10, 1), 0);
    assert_int_equal(lr_session_chunk(&s, true, 100, 2), 0);
    assert_int_equal(lr_session_chunk(&s, false, 100, 3), 0);
    assert_int_equal(lr_session_end(&s, I, 4), 0);
    assert_false(s.in_use);
    /* Resumed: 4 chunks were found verified in staging. */
    struct lr_session_progress p = prog10;
    p.chunks_done = 4;
    p.bytes_done = 400;
    assert_int_equal(lr_session_start(&s, &p, 5), 0);
    assert_int_equal(s.chunks_done, 4);
    assert_int_equal(s.bytes_done, 400);
    assert_int_equal(s.chunks_failed, 1); /* accumulates over resumes */
    assert_int_equal(lr_session_chunk(&s, false, 100, 6), 0);
    assert_int_equal(lr_session_end(&s, F, 7), 0);
    assert_int_equal(lr_session_start(&s, &p, 8), 0); /* retried */
    assert_int_equal(s.chunks_failed, 2);
    assert_int_equal(lr_session_chunk(&s, true, 100, 9), 0);
    assert_int_equal(s.chunks_done, 5);
    assert_int_equal(s.bytes_done, 500);
    assert_int_equal(lr_session_end(&s, C, 10), 0);
    assert_int_equal(s.chunks_done, 10);
    assert_int_equal(s.bytes_done, 1000);
    assert_false(s.in_use);
    lr_session_assert_state(&s);
    /* Complete is final: no chunk, start or end. */
    assert_int_equal(lr_session_chunk(&s, true, 1, 11), LR_EBADVAL);
    assert_int_equal(lr_session_start(&s, &prog10, 11), LR_EBADVAL);
    assert_int_equal(lr_session_end(&s, I, 11), LR_EBADVAL);
    assert_int_equal(s.updated_ms, 10);
}

static void test_chunks_only_while_active(void **state)
{
    (void)state;
    static const enum lr_session_state idle[] = {P, I, F, C};
    for (size_t i = 0; i < 4; i++) {
        struct lr_session s;
        reach(&s, idle[i]);
        struct lr_session before = s;
        assert_int_equal(lr_session_chunk(&s, true, 10, 99), LR_EBADVAL);
        assert_int_equal(lr_session_chunk(&s, false, 10, 99), LR_EBADVAL);
        assert_memory_equal(&s, &before, sizeof(s));
    }
}

static void test_counters_never_exceed_totals(void **state)
{
    (void)state;
    struct lr_session s;
    lr_session_init(&s, 0);
    /* A resume claiming more than the file has is clamped. */
    struct lr_session_progress p = {
        .chunks_total = 3, .bytes_total = 300, .chunks_done = 9, .bytes_done = 9000};
    assert_int_equal(lr_session_start(&s, &p, 1), 0);
    assert_int_equal(s.chunks_done, 3);
    assert_int_equal(s.bytes_done, 300);
    /* Duplicated or oversized chunk answers do not push past the totals. */
    for (int i = 0; i < 5; i++)
        assert_int_equal(lr_session_chunk(&s, true, UINT32_MAX, 2), 0);
    assert_int_equal(s.chunks_done, 3);
    assert_int_equal(s.bytes_done, 300);
    lr_session_assert_state(&s);
    /* Near the top of the range: no wrap-around. */
    struct lr_session_progress big = {.chunks_total = UINT64_MAX,
                                      .bytes_total = UINT64_MAX,
                                      .chunks_done = UINT64_MAX - 1,
                                      .bytes_done = UINT64_MAX - 5};
    assert_int_equal(lr_session_end(&s, I, 3), 0);
    assert_int_equal(lr_session_start(&s, &big, 4), 0);
    assert_int_equal(lr_session_chunk(&s, true, 100, 5), 0);
    assert_true(s.bytes_done == UINT64_MAX);
    assert_int_equal(lr_session_chunk(&s, true, 100, 5), 0);
    assert_true(s.chunks_done == UINT64_MAX);
    lr_session_assert_state(&s);
    /* Failures are counted but never as done. */
    struct lr_session t;
    reach(&t, A);
    for (int i = 0; i < 7; i++)
        assert_int_equal(lr_session_chunk(&t, false, 100, 6), 0);
    assert_int_equal(t.chunks_failed, 7);
    assert_int_equal(t.chunks_done, 0);
    assert_int_equal(t.bytes_done, 0);
}

static void test_restore_from_checkpoint(void **state)
{
    (void)state;
    struct lr_session s;
    struct lr_session_progress p = {
        .chunks_total = 10, .bytes_total = 1000, .chunks_done = 6, .bytes_done = 600};
    /* Active or pending in the checkpoint: the run died mid-transfer. */
    lr_session_restore(&s, A, &p, 2, 77);
    assert_int_equal(s.state, I);
    assert_true(s.dirty);
    assert_false(s.in_use);
    assert_int_equal(s.chunks_done, 6);
    assert_int_equal(s.chunks_failed, 2);
    assert_int_equal(s.updated_ms, 77);
    lr_session_restore(&s, P, &p, 0, 77);
    assert_int_equal(s.state, I);
    assert_true(s.dirty);
    /* Finished ones are history as they were (nothing to write back). */
    lr_session_restore(&s, F, &p, 3, 77);
    assert_int_equal(s.state, F);
    assert_false(s.dirty);
    assert_int_equal(s.chunks_done, 6);
    lr_session_restore(&s, I, &p, 0, 77);
    assert_int_equal(s.state, I);
    assert_false(s.dirty);
    /* Complete means everything, whatever the document said. */
    lr_session_restore(&s, C, &p, 0, 77);
    assert_int_equal(s.state, C);
    assert_int_equal(s.chunks_done, 10);
    assert_int_equal(s.bytes_done, 1000);
    lr_session_assert_state(&s);
    /* Hostile rows: unknown states and counters above their totals. */
    static const int bad[] = {-1, 5, 1000, -2147483647 - 1};
    struct lr_session_progress over = {
        .chunks_total = 2, .bytes_total = 20, .chunks_done = 99, .bytes_done = UINT64_MAX};
    for (size_t i = 0; i < 4; i++) {
        lr_session_restore(&s, bad[i], &over, 0, 1);
        assert_int_equal(s.state, I);
        assert_true(s.dirty);
        assert_int_equal(s.chunks_done, 2);
        assert_int_equal(s.bytes_done, 20);
        lr_session_assert_state(&s);
        /* And it can resume from there. */
        assert_int_equal(lr_session_start(&s, &prog10, 2), 0);
    }
}

static void test_dirty_taken_once(void **state)
{
    (void)state;
    struct lr_session s;
    lr_session_init(&s, 0);
    assert_true(lr_session_take_dirty(&s));
    assert_false(lr_session_take_dirty(&s));
    assert_int_equal(lr_session_start(&s, &prog10, 1), 0);
    assert_true(lr_session_take_dirty(&s));
    assert_false(lr_session_take_dirty(&s));
    assert_int_equal(lr_session_chunk(&s, true, 10, 2), 0);
    assert_int_equal(lr_session_chunk(&s, true, 10, 2), 0);
    assert_true(lr_session_take_dirty(&s));
    assert_false(lr_session_take_dirty(&s));
    /* A refused change leaves it clean. */
    assert_int_equal(lr_session_end(&s, P, 3), LR_EBADVAL);
    assert_false(lr_session_take_dirty(&s));
}

static void test_checkpoint_by_count(void **state)
{
    (void)state;
    struct lr_session_ckpt c;
    lr_session_ckpt_init(&c, 100, 500, 1000);
    assert_false(lr_session_ckpt_due(&c, 1000));
    /* 99 changes within the interval: not yet; the 100th: due at once. */
    for (int i = 0; i < 99; i++) {
        lr_session_ckpt_note(&c, 1);
        assert_false(lr_session_ckpt_due(&c, 1000 + i));
    }
    lr_session_ckpt_note(&c, 1);
    assert_true(lr_session_ckpt_due(&c, 1099));
    lr_session_ckpt_taken(&c, 1099);
    assert_false(lr_session_ckpt_due(&c, 1099));
    /* Many at once count as many. */
    lr_session_ckpt_note(&c, 250);
    assert_true(lr_session_ckpt_due(&c, 1100));
    lr_session_ckpt_taken(&c, 1100);
    /* Saturates instead of wrapping to "nothing pending". */
    lr_session_ckpt_note(&c, UINT64_MAX);
    lr_session_ckpt_note(&c, 5);
    assert_true(c.events == UINT64_MAX);
    assert_true(lr_session_ckpt_due(&c, 1100));
    /* 0 as the count would never batch: treated as 1. */
    lr_session_ckpt_init(&c, 0, 500, 0);
    lr_session_ckpt_note(&c, 1);
    assert_true(lr_session_ckpt_due(&c, 0));
}

static void test_checkpoint_by_time(void **state)
{
    (void)state;
    struct lr_session_ckpt c;
    lr_session_ckpt_init(&c, 1000, 500, 10000);
    /* Time alone does not make a batch: nothing changed. */
    assert_false(lr_session_ckpt_due(&c, 10000 + 5000));
    lr_session_ckpt_note(&c, 3);
    assert_false(lr_session_ckpt_due(&c, 10499));
    assert_true(lr_session_ckpt_due(&c, 10500));
    lr_session_ckpt_taken(&c, 10500);
    assert_false(lr_session_ckpt_due(&c, 20000));
    /* The interval runs from the last checkpoint, not the first change. */
    lr_session_ckpt_note(&c, 1);
    assert_false(lr_session_ckpt_due(&c, 10999));
    assert_true(lr_session_ckpt_due(&c, 11000));
    /* Whichever first: count before time... */
    lr_session_ckpt_taken(&c, 11000);
    lr_session_ckpt_note(&c, 1000);
    assert_true(lr_session_ckpt_due(&c, 11001));
    /* ...and a clock stepping back does not hold a batch forever. */
    lr_session_ckpt_taken(&c, 11001);
    lr_session_ckpt_note(&c, 1);
    assert_true(lr_session_ckpt_due(&c, 5000));
}

static void test_prune_keeps_newest_finished(void **state)
{
    (void)state;
    enum { N = 12 };
    struct lr_session s[N];
    const struct lr_session *v[N];
    bool drop[N];
    /* Newest first: 0 active (in use), 1 complete, 2 failed, 3 interrupted,
     * 4 complete but dirty, 5 complete, 6 pending, 7 complete, 8 failed in
     * use (impossible, but never dropped), 9..11 complete. */
    for (int i = 0; i < N; i++) {
        reach(&s[i], C);
        s[i].dirty = false;
        v[i] = &s[i];
    }
    reach(&s[0], A);
    reach(&s[2], F);
    reach(&s[3], I);
    reach(&s[6], P);
    reach(&s[8], F);
    for (int i = 0; i < N; i++) {
        s[i].dirty = false;
        s[i].stored = true;
    }
    s[4].dirty = true;
    s[8].in_use = true;
    /* Prunable, newest first: 1 2 5 7 9 10 11 (an interrupted session is
     * work to resume, not history). Keep 3: drop 7 9 10 11. */
    assert_int_equal(lr_session_prune(v, N, 3, drop), 4);
    bool want[N] = {0};
    want[7] = want[9] = want[10] = want[11] = true;
    for (int i = 0; i < N; i++)
        assert_int_equal(drop[i], want[i]);
    /* Keep everything: nothing dropped (and drop[] cleared). */
    assert_int_equal(lr_session_prune(v, N, 100, drop), 0);
    for (int i = 0; i < N; i++)
        assert_false(drop[i]);
    /* Keep none: every prunable one goes (interrupted too: their bound is
     * keep * LR_SESSION_INTERRUPTED_KEEP), the rest stays. */
    assert_int_equal(lr_session_prune(v, N, 0, drop), 8);
    assert_true(drop[3]);
    assert_false(drop[0] || drop[4] || drop[6] || drop[8]);
    /* Empty list. */
    assert_int_equal(lr_session_prune(v, 0, 0, drop), 0);
    /* A dirty one no checkpoint ever took loses nothing if dropped: it
     * counts, newest first 1 2 4 5 7 9 10 11, keep 3: drop 5 onwards. */
    s[4].stored = false;
    assert_int_equal(lr_session_prune(v, N, 3, drop), 5);
    assert_true(drop[5] && drop[7] && drop[11]);
    assert_false(drop[1] || drop[2] || drop[3] || drop[4]);
    /* The oldest interrupted behind more finished ones than are kept: it
     * stays (it left `sessions` until its transfer was retried). */
    reach(&s[11], I);
    assert_int_equal(lr_session_prune(v, N, 3, drop), 4);
    assert_false(drop[11]);
    /* Keep 0: both interrupted ones go with the rest (1 2 3 4 5 7 9 10 11). */
    assert_int_equal(lr_session_prune(v, N, 0, drop), 9);
    assert_true(drop[3] && drop[11]);
}

static void test_stored_once_taken_or_restored(void **state)
{
    (void)state;
    struct lr_session s;
    lr_session_init(&s, 1000);
    assert_false(s.stored);
    assert_true(lr_session_take_dirty(&s));
    assert_true(s.stored);
    /* A checkpoint that finds nothing to take writes no row. */
    struct lr_session clean = {0};
    assert_false(lr_session_take_dirty(&clean));
    assert_false(clean.stored);
    /* Restored from a row. */
    struct lr_session_progress p = {.chunks_total = 2, .bytes_total = 10};
    lr_session_restore(&s, LR_SESSION_COMPLETE, &p, 0, 500);
    assert_true(s.stored);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_transition),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_resume_and_retry_cycles),
        cmocka_unit_test(test_chunks_only_while_active),
        cmocka_unit_test(test_counters_never_exceed_totals),
        cmocka_unit_test(test_restore_from_checkpoint),
        cmocka_unit_test(test_dirty_taken_once),
        cmocka_unit_test(test_checkpoint_by_count),
        cmocka_unit_test(test_checkpoint_by_time),
        cmocka_unit_test(test_prune_keeps_newest_finished),
        cmocka_unit_test(test_stored_once_taken_or_restored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
