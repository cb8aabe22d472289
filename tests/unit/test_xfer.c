/*
 * test_xfer.c - the chunk transfer scheduler without sockets or disks:
 * per-peer windows, swarming across holders, a peer leaving mid-file,
 * refusals, BUSY, failed verification, drops, completion exactly once,
 * answers for removed transfers, and a randomised run against invariants.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sync/xfer.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>

static struct lr_device_id dev(uint8_t n)
{
    struct lr_device_id d;
    memset(&d, n, sizeof(d));
    return d;
}

static const struct lr_xs_limits LIM = {
    .wants_max = 4, .bytes_max = 1000, .failures_max = 3, .blocked_max = 2};

#define ACTS 64

static size_t pump(struct lr_xs *xs, struct lr_xs_act *a)
{
    return lr_xs_pump(xs, a, ACTS);
}

static size_t count_kind(const struct lr_xs_act *a, size_t n, enum lr_xs_act_kind k)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += a[i].kind == k;
    return c;
}

static void test_window_limits(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id p = dev(1);
    lr_xs_peer_up(xs, &p);
    uint32_t len[10];
    for (int i = 0; i < 10; i++)
        len[i] = 100;
    struct lr_xs_xfer *x = lr_xs_add(xs, (void *)0x1, len, 10, NULL, &p, 1);
    struct lr_xs_act a[ACTS];
    size_t n = pump(xs, a);
    /* wants_max = 4 */
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(a[i].kind, LR_XS_WANT);
        assert_ptr_equal(a[i].x, x);
        assert_int_equal(a[i].chunk, i); /* in order */
        assert_true(lr_device_id_eq(a[i].peer, &p));
    }
    assert_int_equal(lr_xs_peer_wants(xs, &p), 4);
    assert_int_equal(lr_xs_peer_bytes(xs, &p), 400);
    assert_int_equal(pump(xs, a), 0); /* window full */
    /* One answer frees one slot. */
    struct lr_xs_xfer *got;
    size_t chunk;
    assert_int_equal(lr_xs_answer(xs, &p, a[0].req_id, LR_XS_ANS_OK, &got, &chunk), 0);
    assert_ptr_equal(got, x);
    assert_int_equal(chunk, 0);
    assert_int_equal(lr_xs_state(x, 0), LR_XS_RECV);
    n = pump(xs, a);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].chunk, 4);
    lr_xs_free(xs);
}

static void test_byte_limit(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id p = dev(1);
    lr_xs_peer_up(xs, &p);
    uint32_t len[3] = {600, 300, 200};
    lr_xs_add(xs, NULL, len, 3, NULL, &p, 1);
    struct lr_xs_act a[ACTS];
    /* 600 + 300 fit in 1000; 200 more would not. */
    assert_int_equal(pump(xs, a), 2);
    assert_int_equal(lr_xs_peer_bytes(xs, &p), 900);
    lr_xs_free(xs);
}

/* Two holders: the chunks spread over both (fewest bytes outstanding first). */
static void test_swarming_spreads(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id h[2] = {dev(1), dev(2)};
    lr_xs_peer_up(xs, &h[0]);
    lr_xs_peer_up(xs, &h[1]);
    uint32_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = 100;
    lr_xs_add(xs, NULL, len, 8, NULL, h, 2);
    struct lr_xs_act a[ACTS];
    assert_int_equal(pump(xs, a), 8);
    assert_int_equal(lr_xs_peer_wants(xs, &h[0]), 4);
    assert_int_equal(lr_xs_peer_wants(xs, &h[1]), 4);
    lr_xs_free(xs);
}

/* A peer leaves mid-file: its outstanding chunks are asked of the other. */
static void test_peer_leaves_mid_file(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id h[2] = {dev(1), dev(2)};
    lr_xs_peer_up(xs, &h[0]);
    lr_xs_peer_up(xs, &h[1]);
    uint32_t len[6] = {100, 100, 100, 100, 100, 100};
    struct lr_xs_xfer *x = lr_xs_add(xs, NULL, len, 6, NULL, h, 2);
    struct lr_xs_act a[ACTS];
    size_t n = pump(xs, a);
    assert_int_equal(n, 6);
    uint64_t old_req[ACTS], pending[ACTS];
    size_t nold = 0, npend = 0;
    for (size_t i = 0; i < n; i++) {
        if (lr_device_id_eq(a[i].peer, &h[0]))
            old_req[nold++] = a[i].req_id;
        else
            pending[npend++] = a[i].req_id;
    }
    assert_true(nold > 0);
    lr_xs_peer_down(xs, &h[0]);
    assert_int_equal(lr_xs_peer_wants(xs, &h[0]), 0);
    /* Its answers are no longer outstanding: a late one is a violation. */
    struct lr_xs_xfer *got;
    size_t chunk;
    assert_int_equal(lr_xs_answer(xs, &h[0], old_req[0], LR_XS_ANS_OK, &got, &chunk), LR_ENOTFOUND);
    /* The remaining holder has 6 - nold outstanding; its window allows 4. */
    size_t room = 4 - lr_xs_peer_wants(xs, &h[1]);
    n = pump(xs, a);
    assert_int_equal(n, room < nold ? room : nold);
    for (size_t i = 0; i < n; i++)
        assert_true(lr_device_id_eq(a[i].peer, &h[1]));
    for (size_t i = 0; i < n; i++)
        pending[npend++] = a[i].req_id;
    /* Finish everything through h[1]: the file completes exactly once. */
    for (int round = 0; round < 10; round++) {
        for (size_t i = 0; i < npend; i++)
            assert_int_equal(lr_xs_answer(xs, &h[1], pending[i], LR_XS_ANS_OK, &got, &chunk), 0);
        npend = 0;
        for (size_t k = 0; k < 6; k++)
            if (lr_xs_state(x, k) == LR_XS_RECV)
                lr_xs_written(xs, x, k, true);
        n = pump(xs, a);
        for (size_t i = 0; i < n; i++) {
            if (a[i].kind == LR_XS_COMPLETE) {
                assert_ptr_equal(a[i].x, x);
                assert_int_equal(lr_xs_ndone(x), 6);
                assert_int_equal(count_kind(a, n, LR_XS_COMPLETE), 1);
                lr_xs_remove(xs, x);
                assert_int_equal(lr_xs_count(xs), 0);
                assert_int_equal(pump(xs, a), 0);
                lr_xs_free(xs);
                return;
            }
            assert_int_equal(a[i].kind, LR_XS_WANT);
            assert_true(lr_device_id_eq(a[i].peer, &h[1]));
            pending[npend++] = a[i].req_id;
        }
    }
    fail_msg("never completed");
}

/* A refusing holder is not asked again for that file; BUSY does not mark it. */
static void test_refusal_and_busy(void **state)
{
    (void)state;
    struct lr_xs_limits lim = LIM;
    lim.failures_max = 10;
    struct lr_xs *xs = lr_xs_new(&lim);
    struct lr_device_id h[2] = {dev(1), dev(2)};
    lr_xs_peer_up(xs, &h[0]);
    uint32_t len[2] = {100, 100};
    struct lr_xs_xfer *x = lr_xs_add(xs, NULL, len, 2, NULL, h, 2);
    struct lr_xs_act a[ACTS];
    assert_int_equal(pump(xs, a), 2);
    struct lr_xs_xfer *got;
    size_t chunk;
    /* BUSY: asked again of the same (only connected) holder. */
    assert_int_equal(lr_xs_answer(xs, &h[0], a[0].req_id, LR_XS_ANS_BUSY, &got, &chunk), 0);
    assert_int_equal(lr_xs_state(x, 0), LR_XS_TODO);
    size_t n = pump(xs, a + 2);
    assert_int_equal(n, 1);
    assert_true(lr_device_id_eq(a[2].peer, &h[0]));
    /* REFUSED: h[0] is never asked for this file again; h[1] comes up. */
    assert_int_equal(lr_xs_answer(xs, &h[0], a[2].req_id, LR_XS_ANS_REFUSED, &got, &chunk), 0);
    assert_int_equal(pump(xs, a + 3), 0); /* chunk 1 still at h[0]; no usable holder free */
    lr_xs_peer_up(xs, &h[1]);
    n = pump(xs, a + 3);
    assert_int_equal(n, 1);
    assert_true(lr_device_id_eq(a[3].peer, &h[1]));
    assert_int_equal(a[3].chunk, 0);
    lr_xs_free(xs);
}

/* No holder connected and nothing in flight: dropped, once. */
static void test_drop_without_holder(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id p = dev(7);
    uint32_t len[1] = {10};
    struct lr_xs_xfer *x = lr_xs_add(xs, (void *)0x42, len, 1, NULL, &p, 1);
    struct lr_xs_act a[ACTS];
    size_t n = pump(xs, a);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].kind, LR_XS_DROP);
    assert_ptr_equal(a[0].x, x);
    assert_ptr_equal(lr_xs_user(a[0].x), (void *)0x42);
    assert_non_null(a[0].why);
    assert_int_equal(pump(xs, a), 0); /* reported once */
    lr_xs_remove(xs, x);
    lr_xs_free(xs);
}

/* In flight at a peer that leaves, no other holder: the transfer waits for
 * it (a reconnect resumes it where it was), and is dropped only once the
 * caller gives the peer up. */
static void test_parked_then_dropped(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id p = dev(3);
    lr_xs_peer_up(xs, &p);
    uint32_t len[6] = {10, 10, 10, 10, 10, 10};
    struct lr_xs_xfer *x = lr_xs_add(xs, NULL, len, 6, NULL, &p, 1);
    struct lr_xs_act a[ACTS];
    struct lr_xs_xfer *got;
    size_t chunk;
    assert_int_equal(pump(xs, a), 4);
    assert_int_equal(lr_xs_answer(xs, &p, a[0].req_id, LR_XS_ANS_OK, &got, &chunk), 0);
    lr_xs_written(xs, x, chunk, true);
    lr_xs_peer_down(xs, &p);
    assert_int_equal(pump(xs, a), 0); /* parked, not dropped */
    struct lr_device_id stranger = dev(9);
    lr_xs_peer_gone(xs, &stranger); /* unknown peer: nothing */
    assert_int_equal(pump(xs, a), 0);
    /* Back: the three chunks in flight and the rest are asked again. */
    lr_xs_peer_up(xs, &p);
    lr_xs_peer_gone(xs, &p); /* up: no-op */
    assert_int_equal(pump(xs, a), 4);
    assert_int_equal(lr_xs_ndone(x), 1);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(a[i].kind, LR_XS_WANT);
    lr_xs_peer_down(xs, &p);
    assert_int_equal(pump(xs, a), 0);
    lr_xs_peer_gone(xs, &p);
    size_t n = pump(xs, a);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].kind, LR_XS_DROP);
    assert_ptr_equal(a[0].x, x);
    lr_xs_remove(xs, x);
    lr_xs_free(xs);
}

/* Failed verification from the only holder: it is not asked again, so the
 * transfer is dropped (to be retried later, e.g. from another holder); too
 * many BUSY answers drop it too. */
static void test_verify_failures(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM); /* failures_max 3 */
    struct lr_device_id p = dev(1);
    lr_xs_peer_up(xs, &p);
    uint32_t len[1] = {10};
    struct lr_xs_xfer *x = lr_xs_add(xs, NULL, len, 1, NULL, &p, 1);
    struct lr_xs_act a[ACTS];
    struct lr_xs_xfer *got;
    size_t chunk;
    assert_int_equal(pump(xs, a), 1);
    assert_int_equal(lr_xs_answer(xs, &p, a[0].req_id, LR_XS_ANS_OK, &got, &chunk), 0);
    lr_xs_written(xs, x, 0, false);
    assert_int_equal(lr_xs_state(x, 0), LR_XS_TODO);
    size_t n = pump(xs, a);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].kind, LR_XS_DROP);
    lr_xs_remove(xs, x);
    x = lr_xs_add(xs, NULL, len, 1, NULL, &p, 1);
    for (int i = 0; i < 4; i++) {
        n = pump(xs, a);
        assert_int_equal(n, 1);
        assert_int_equal(a[0].kind, LR_XS_WANT);
        assert_int_equal(lr_xs_answer(xs, &p, a[0].req_id, LR_XS_ANS_BUSY, &got, &chunk), 0);
    }
    n = pump(xs, a);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].kind, LR_XS_DROP);
    lr_xs_remove(xs, x);
    lr_xs_free(xs);
}

/* A holder whose data failed verification is not asked again for that file:
 * the retry goes to the other holder even though the first is less loaded. */
static void test_corrupt_holder_avoided(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id h[2] = {dev(1), dev(2)};
    lr_xs_peer_up(xs, &h[0]);
    uint32_t len[1] = {10};
    struct lr_xs_xfer *x = lr_xs_add(xs, NULL, len, 1, NULL, h, 2);
    struct lr_xs_act a[ACTS];
    assert_int_equal(pump(xs, a), 1);
    assert_true(lr_device_id_eq(a[0].peer, &h[0]));
    struct lr_xs_xfer *got;
    size_t chunk;
    assert_int_equal(lr_xs_answer(xs, &h[0], a[0].req_id, LR_XS_ANS_OK, &got, &chunk), 0);
    lr_xs_written(xs, x, 0, false);
    lr_xs_peer_up(xs, &h[1]);
    assert_int_equal(pump(xs, a), 1);
    assert_true(lr_device_id_eq(a[0].peer, &h[1]));
    lr_xs_free(xs);
}

/* Resumed staging: done chunks are not asked again; all done -> COMPLETE. */
static void test_resume_and_complete(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id p = dev(1);
    lr_xs_peer_up(xs, &p);
    uint32_t len[4] = {10, 10, 10, 10};
    bool done[4] = {true, false, true, false};
    struct lr_xs_xfer *x = lr_xs_add(xs, NULL, len, 4, done, &p, 1);
    struct lr_xs_act a[ACTS];
    assert_int_equal(pump(xs, a), 2);
    assert_int_equal(a[0].chunk, 1);
    assert_int_equal(a[1].chunk, 3);
    bool all[4] = {true, true, true, true};
    struct lr_xs_xfer *y = lr_xs_add(xs, NULL, len, 4, all, &p, 1);
    size_t n = pump(xs, a);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].kind, LR_XS_COMPLETE);
    assert_ptr_equal(a[0].x, y);
    lr_xs_remove(xs, y);
    (void)x;
    lr_xs_free(xs);
}

/* Answers for a transfer removed meanwhile are matched and reported stale. */
static void test_answer_after_remove(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id p = dev(1), q = dev(2);
    lr_xs_peer_up(xs, &p);
    uint32_t len[3] = {10, 10, 10};
    struct lr_xs_xfer *x = lr_xs_add(xs, NULL, len, 3, NULL, &p, 1);
    struct lr_xs_act a[ACTS];
    assert_int_equal(pump(xs, a), 3);
    lr_xs_remove(xs, x);
    struct lr_xs_xfer *got = (void *)1;
    size_t chunk;
    /* from the wrong peer: a violation */
    assert_int_equal(lr_xs_answer(xs, &q, a[0].req_id, LR_XS_ANS_OK, &got, &chunk), LR_ENOTFOUND);
    assert_int_equal(lr_xs_answer(xs, &p, a[0].req_id, LR_XS_ANS_OK, &got, &chunk), 0);
    assert_null(got);
    assert_int_equal(lr_xs_answer(xs, &p, a[0].req_id, LR_XS_ANS_OK, &got, &chunk), LR_ENOTFOUND);
    assert_int_equal(lr_xs_answer(xs, &p, 999999, LR_XS_ANS_OK, &got, &chunk), LR_ENOTFOUND);
    assert_int_equal(lr_xs_peer_wants(xs, &p), 2);
    lr_xs_free(xs); /* the two still outstanding are freed with it */
}

/* The pump stops after blocked_max full-window transfers (bounded work). */
static void test_pump_bounded(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id p = dev(1);
    lr_xs_peer_up(xs, &p);
    uint32_t len[1] = {10};
    for (int i = 0; i < 1000; i++)
        lr_xs_add(xs, NULL, len, 1, NULL, &p, 1);
    struct lr_xs_act a[ACTS];
    assert_int_equal(pump(xs, a), 4);
    assert_int_equal(pump(xs, a), 0);
    assert_int_equal(lr_xs_count(xs), 1000);
    /* max bounds the output too */
    lr_xs_peer_down(xs, &p);
    lr_xs_peer_up(xs, &p);
    assert_int_equal(lr_xs_pump(xs, a, 2), 2);
    lr_xs_free(xs);
}

/* A holder learned of after the start is asked too (and a known one is not
 * duplicated): the transfer spreads over both. */
static void test_holder_added_later(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id h[2] = {dev(1), dev(2)};
    lr_xs_peer_up(xs, &h[0]);
    lr_xs_peer_up(xs, &h[1]);
    uint32_t len[8] = {100, 100, 100, 100, 100, 100, 100, 100};
    struct lr_xs_xfer *x = lr_xs_add(xs, NULL, len, 8, NULL, &h[0], 1);
    struct lr_xs_act a[ACTS];
    assert_int_equal(pump(xs, a), 4); /* h[0]'s window */
    assert_int_equal(pump(xs, a), 0);
    lr_xs_add_holders(xs, x, h, 2);
    lr_xs_add_holders(xs, x, h, 2);
    size_t n = pump(xs, a);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        assert_true(lr_device_id_eq(a[i].peer, &h[1]));
    assert_int_equal(lr_xs_peer_wants(xs, &h[1]), 4);
    lr_xs_free(xs);
}

static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1du;
}

/*
 * Random events against invariants: windows never exceeded, a chunk is
 * outstanding at most once, every transfer ends COMPLETE with every chunk
 * written exactly once or DROPped, and everything ends.
 */
/* A large file queued first does not keep the small ones behind it waiting:
 * each transfer gets a turn of about 256 KiB of requests while others wait,
 * and a freed slot goes to the next in turn, not back to the head. */
static void test_turns_between_transfers(void **state)
{
    (void)state;
    const struct lr_xs_limits lim = {
        .wants_max = 16, .bytes_max = 1u << 30, .failures_max = 3, .blocked_max = 2};
    struct lr_xs *xs = lr_xs_new(&lim);
    struct lr_device_id p = dev(1);
    lr_xs_peer_up(xs, &p);
    enum { BIG = 1000, SMALL = 20 };
    static uint32_t big[BIG];
    for (int i = 0; i < BIG; i++)
        big[i] = 64 * 1024;
    uint32_t one = 1000;
    struct lr_xs_xfer *xb = lr_xs_add(xs, (void *)0x1, big, BIG, NULL, &p, 1);
    struct lr_xs_xfer *xsm[SMALL];
    for (int i = 0; i < SMALL; i++)
        xsm[i] = lr_xs_add(xs, (void *)(uintptr_t)(i + 2), &one, 1, NULL, &p, 1);
    struct lr_xs_act a[ACTS];
    size_t n = pump(xs, a);
    assert_int_equal(n, 16);
    /* The big file's first turn (4 chunks of 64 KiB), then one per small file. */
    size_t nbig = 0;
    for (size_t i = 0; i < n; i++)
        nbig += a[i].x == xb;
    assert_int_equal(nbig, 4);
    assert_ptr_equal(a[4].x, xsm[0]);
    assert_ptr_equal(a[15].x, xsm[11]);
    /* Each answer frees a slot for the next small file, not the big one. */
    for (int round = 0; round < SMALL - 12; round++) {
        struct lr_xs_xfer *got;
        size_t chunk;
        assert_int_equal(lr_xs_answer(xs, &p, a[0].req_id, LR_XS_ANS_OK, &got, &chunk), 0);
        memmove(a, a + 1, (n - 1) * sizeof(*a));
        size_t m = lr_xs_pump(xs, a + n - 1, 1);
        assert_int_equal(m, 1);
        assert_ptr_equal(a[n - 1].x, xsm[12 + round]);
    }
    /* Every small file asked for; the big one alone takes the window again. */
    for (int i = 0; i < SMALL; i++)
        assert_int_not_equal(lr_xs_state(xsm[i], 0), LR_XS_TODO);
    struct lr_xs_xfer *got;
    size_t chunk;
    assert_int_equal(lr_xs_answer(xs, &p, a[0].req_id, LR_XS_ANS_OK, &got, &chunk), 0);
    assert_int_equal(lr_xs_answer(xs, &p, a[1].req_id, LR_XS_ANS_OK, &got, &chunk), 0);
    n = pump(xs, a);
    assert_int_equal(n, 2);
    assert_ptr_equal(a[0].x, xb);
    assert_ptr_equal(a[1].x, xb);
    assert_int_equal(a[1].chunk, a[0].chunk + 1);
    lr_xs_free(xs);
}

/* Transfers held only by a peer without room, queued ahead of one whose
 * peer has room, do not stop the walk before it (blocked_max counted them:
 * a file from a fast peer waited behind ten from a slow one). */
static void test_full_peer_does_not_block_another(void **state)
{
    (void)state;
    const struct lr_xs_limits lim = {
        .wants_max = 4, .bytes_max = 1u << 30, .failures_max = 3, .blocked_max = 2};
    struct lr_xs *xs = lr_xs_new(&lim);
    struct lr_device_id fast = dev(1), slow = dev(2);
    lr_xs_peer_up(xs, &fast);
    lr_xs_peer_up(xs, &slow);
    uint32_t one = 100;
    struct lr_xs_xfer *small[10];
    for (int i = 0; i < 10; i++)
        small[i] = lr_xs_add(xs, NULL, &one, 1, NULL, &slow, 1);
    static uint32_t big[100];
    for (int i = 0; i < 100; i++)
        big[i] = 100;
    struct lr_xs_xfer *xb = lr_xs_add(xs, NULL, big, 100, NULL, &fast, 1);
    struct lr_xs_act a[ACTS];
    size_t n = pump(xs, a);
    /* Four small files fill the slow peer; the big one fills the fast one. */
    assert_int_equal(lr_xs_peer_wants(xs, &slow), 4);
    assert_int_equal(lr_xs_peer_wants(xs, &fast), 4);
    assert_int_equal(n, 8);
    assert_int_equal(lr_xs_state(small[4], 0), LR_XS_TODO);
    /* The fast peer answers; the slow one does not. Each walk still reaches
     * the big file past the six small ones waiting for the slow peer. */
    for (int round = 0; round < 5; round++) {
        size_t got = 0;
        for (size_t i = 0; i < n; i++) {
            if (a[i].x != xb)
                continue;
            struct lr_xs_xfer *x;
            size_t chunk;
            assert_int_equal(lr_xs_answer(xs, &fast, a[i].req_id, LR_XS_ANS_OK, &x, &chunk), 0);
            got++;
        }
        assert_int_equal(got, 4);
        n = pump(xs, a);
        assert_int_equal(n, 4);
        for (size_t i = 0; i < n; i++)
            assert_ptr_equal(a[i].x, xb);
    }
    lr_xs_free(xs);
}

/* One pump, then every request it made answered OK `ms` later; returns how
 * many there were. */
static size_t pump_and_answer(struct lr_xs *xs, const struct lr_device_id *p, uint64_t *now,
                              uint64_t ms)
{
    struct lr_xs_act a[ACTS];
    size_t n = pump(xs, a);
    lr_xs_clock(xs, *now += ms);
    struct lr_xs_xfer *got;
    size_t chunk;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(lr_xs_answer(xs, p, a[i].req_id, LR_XS_ANS_OK, &got, &chunk), 0);
    return n;
}

/* The adaptive byte window: starts at twice bytes_min and follows the
 * peer's delivery rate (bytes answered per second, over samples of at least
 * 250 ms) times latency_ms, within [bytes_min, bytes_max]. Quick first
 * answers do not widen it before a sample: widening per quick answer
 * overshot on a lossy link before the queue showed. */
static void test_adaptive_window(void **state)
{
    (void)state;
    const struct lr_xs_limits lim = {.wants_max = 1000,
                                     .bytes_max = 8000,
                                     .failures_max = 3,
                                     .blocked_max = 2,
                                     .bytes_min = 1000,
                                     .latency_ms = 1000};
    struct lr_xs *xs = lr_xs_new(&lim);
    struct lr_device_id p = dev(1);
    lr_xs_peer_up(xs, &p);
    assert_int_equal(lr_xs_peer_window(xs, &p), 2000);
    enum { N = 5000 };
    static uint32_t len[N];
    for (int i = 0; i < N; i++)
        len[i] = 100;
    lr_xs_add(xs, NULL, len, N, NULL, &p, 1);
    uint64_t now = 1000;
    lr_xs_clock(xs, now);
    /* 2000 bytes of 100-byte chunks, all answered within 10 ms: no sample
     * yet, the window stays. */
    assert_int_equal(pump_and_answer(xs, &p, &now, 10), 20);
    assert_int_equal(lr_xs_peer_window(xs, &p), 2000);
    /* 2000 bytes every 100 ms: 20 000 B/s, a second of it is over the top. */
    for (int round = 0; round < 5; round++)
        pump_and_answer(xs, &p, &now, 100);
    assert_int_equal(lr_xs_peer_window(xs, &p), 8000);
    /* The window's worth every 1.5 s (answers slower than latency_ms): the
     * rate falls, and the window with it, to bytes_min. */
    for (int round = 0; round < 3; round++)
        pump_and_answer(xs, &p, &now, 1500);
    uint64_t w = lr_xs_peer_window(xs, &p);
    assert_true(w < 8000 && w > 1000);
    for (int round = 0; round < 30; round++)
        pump_and_answer(xs, &p, &now, 1500);
    assert_int_equal(lr_xs_peer_window(xs, &p), 1000);
    /* Answers within 250 ms again: it widens back to the top. */
    for (int round = 0; round < 12; round++)
        pump_and_answer(xs, &p, &now, 250);
    assert_int_equal(lr_xs_peer_window(xs, &p), 8000);
    lr_xs_free(xs);
}

static void test_random(void **state)
{
    (void)state;
    for (int iter = 0; iter < 200; iter++) {
        struct lr_xs_limits lim = {.wants_max = 1 + (uint32_t)(rnd() % 8),
                                   .bytes_max = 50 + rnd() % 500,
                                   .failures_max = 50,
                                   .blocked_max = 1 + (uint32_t)(rnd() % 4)};
        struct lr_xs *xs = lr_xs_new(&lim);
        struct lr_device_id peers[3] = {dev(1), dev(2), dev(3)};
        bool up[3] = {true, true, true};
        for (int i = 0; i < 3; i++)
            lr_xs_peer_up(xs, &peers[i]);
        enum { NX = 6, NC = 12 };
        struct lr_xs_xfer *xf[NX];
        unsigned writes[NX][NC];
        memset(writes, 0, sizeof(writes));
        bool ended[NX] = {0};
        for (int i = 0; i < NX; i++) {
            uint32_t len[NC];
            size_t n = 1 + rnd() % NC;
            for (size_t k = 0; k < n; k++)
                len[k] = 1 + (uint32_t)(rnd() % 50);
            xf[i] = lr_xs_add(xs, (void *)(uintptr_t)(i + 1), len, n, NULL, peers, 1 + rnd() % 3);
        }
        struct out {
            uint64_t id;
            int peer;
        } outs[512];
        size_t nouts = 0;
        for (int step = 0; step < 5000 && lr_xs_count(xs) > 0; step++) {
            struct lr_xs_act a[ACTS];
            size_t n = lr_xs_pump(xs, a, ACTS);
            for (size_t i = 0; i < n; i++) {
                int xi = (int)(uintptr_t)lr_xs_user(a[i].x) - 1;
                if (a[i].kind == LR_XS_WANT) {
                    int pi = a[i].peer->b[0] - 1;
                    assert_true(up[pi]);
                    assert_true(nouts < 512);
                    outs[nouts++] = (struct out){a[i].req_id, pi};
                } else {
                    assert_false(ended[xi]);
                    ended[xi] = true;
                    if (a[i].kind == LR_XS_COMPLETE)
                        for (size_t k = 0; k < lr_xs_nchunks(a[i].x); k++)
                            assert_int_equal(writes[xi][k], 1);
                    lr_xs_remove(xs, a[i].x);
                }
            }
            for (int pi = 0; pi < 3; pi++) {
                assert_true(lr_xs_peer_wants(xs, &peers[pi]) <= lim.wants_max);
                assert_true(lr_xs_peer_bytes(xs, &peers[pi]) <= lim.bytes_max);
            }
            uint64_t r = rnd() % 100;
            if (r < 5) { /* a peer flaps */
                int pi = (int)(rnd() % 3);
                if (up[pi]) {
                    lr_xs_peer_down(xs, &peers[pi]);
                    size_t keep = 0;
                    for (size_t i = 0; i < nouts; i++)
                        if (outs[i].peer != pi)
                            outs[keep++] = outs[i];
                    nouts = keep;
                } else {
                    lr_xs_peer_up(xs, &peers[pi]);
                }
                up[pi] = !up[pi];
            } else if (nouts) {
                size_t i = rnd() % nouts;
                struct out o = outs[i];
                outs[i] = outs[--nouts];
                struct lr_xs_xfer *got;
                size_t chunk;
                enum lr_xs_answer ans = rnd() % 10 == 0   ? LR_XS_ANS_BUSY
                                        : rnd() % 20 == 0 ? LR_XS_ANS_REFUSED
                                                          : LR_XS_ANS_OK;
                assert_int_equal(lr_xs_answer(xs, &peers[o.peer], o.id, ans, &got, &chunk), 0);
                if (got && ans == LR_XS_ANS_OK) {
                    bool ok = rnd() % 10 != 0;
                    int xi = (int)(uintptr_t)lr_xs_user(got) - 1;
                    if (ok)
                        writes[xi][chunk]++;
                    lr_xs_written(xs, got, chunk, ok);
                }
            } else {
                /* nothing outstanding: make sure someone is up */
                for (int pi = 0; pi < 3; pi++) {
                    if (!up[pi]) {
                        lr_xs_peer_up(xs, &peers[pi]);
                        up[pi] = true;
                    }
                }
            }
        }
        assert_int_equal(lr_xs_count(xs), 0);
        for (int i = 0; i < NX; i++)
            assert_true(ended[i]);
        (void)xf;
        lr_xs_free(xs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_limits),
        cmocka_unit_test(test_byte_limit),
        cmocka_unit_test(test_swarming_spreads),
        cmocka_unit_test(test_peer_leaves_mid_file),
        cmocka_unit_test(test_refusal_and_busy),
        cmocka_unit_test(test_drop_without_holder),
        cmocka_unit_test(test_parked_then_dropped),
        cmocka_unit_test(test_verify_failures),
        cmocka_unit_test(test_resume_and_complete),
        cmocka_unit_test(test_answer_after_remove),
        cmocka_unit_test(test_pump_bounded),
        cmocka_unit_test(test_holder_added_later),
        cmocka_unit_test(test_corrupt_holder_avoided),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_turns_between_transfers),
        cmocka_unit_test(test_adaptive_window),
        cmocka_unit_test(test_full_peer_does_not_block_another),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
