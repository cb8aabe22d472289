/*
 * test_xfer_have.c - the scheduler's partial holders (HAVE) and keys:
 * a peer still downloading is asked only for the chunks it announced, beside
 * the full holders; announcements merge, are forgotten when the peer leaves,
 * upgrade to a full holder when its index arrives; refusals count against
 * it; chunks nobody connected has are skipped, not waited on forever; keys
 * find transfers and go with them.
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
    .wants_max = 64, .bytes_max = 1u << 30, .failures_max = 3, .blocked_max = 2};

#define ACTS 256

static void set(uint8_t *bits, size_t k)
{
    bits[k >> 3] = (uint8_t)(bits[k >> 3] | (1u << (k & 7)));
}

static struct lr_xs_xfer *add(struct lr_xs *xs, size_t n, const struct lr_device_id *holders,
                              size_t nholders)
{
    uint32_t len[256];
    for (size_t i = 0; i < n; i++)
        len[i] = 100;
    return lr_xs_add(xs, (void *)0x1, len, n, NULL, holders, nholders);
}

/* Answer OK and mark written every WANT in a[0..n). */
static void serve_all(struct lr_xs *xs, const struct lr_xs_act *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].kind != LR_XS_WANT)
            continue;
        struct lr_xs_xfer *x;
        size_t chunk;
        assert_int_equal(lr_xs_answer(xs, a[i].peer, a[i].req_id, LR_XS_ANS_OK, &x, &chunk), 0);
        assert_int_equal(chunk, a[i].chunk);
        lr_xs_written(xs, x, chunk, true);
    }
}

/* No full holder connected: the partial holder is asked for exactly its
 * chunks, the rest is skipped, and once nothing is in flight the transfer
 * is dropped (resumable) rather than parked for ever. */
static void test_partial_only(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id a = dev(1), b = dev(2);
    lr_xs_peer_up(xs, &b); /* a, the full holder, is not connected */
    struct lr_xs_xfer *x = add(xs, 10, &a, 1);
    uint8_t bits[2] = {0};
    set(bits, 2);
    set(bits, 3);
    set(bits, 7);
    assert_int_equal(lr_xs_have(xs, x, &b, bits), 3);
    assert_int_equal(lr_xs_holder_of(xs, x, &b), LR_XS_HOLDER_PARTIAL);
    assert_int_equal(lr_xs_holder_of(xs, x, &a), LR_XS_HOLDER_FULL);
    struct lr_xs_act act[ACTS];
    size_t n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(n, 3);
    size_t want[3] = {2, 3, 7};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(act[i].kind, LR_XS_WANT);
        assert_int_equal(act[i].chunk, want[i]);
        assert_true(lr_device_id_eq(act[i].peer, &b));
    }
    assert_int_equal(lr_xs_pump(xs, act, ACTS), 0); /* parked: answers pending */
    serve_all(xs, act, n);
    assert_int_equal(lr_xs_ndone(x), 3);
    assert_int_equal(lr_xs_nfrom_partial(x), 3);
    n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(n, 1);
    assert_int_equal(act[0].kind, LR_XS_DROP);
    assert_string_equal(act[0].why, "no peer can serve it");
    lr_xs_free(xs);
}

/* A new HAVE wakes a transfer parked with requests in flight. */
static void test_have_wakes_parked(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id a = dev(1), b = dev(2);
    lr_xs_peer_up(xs, &b);
    struct lr_xs_xfer *x = add(xs, 3, &a, 1);
    uint8_t bits[1] = {0x01};
    lr_xs_have(xs, x, &b, bits);
    struct lr_xs_act act[ACTS];
    assert_int_equal(lr_xs_pump(xs, act, ACTS), 1);
    assert_int_equal(act[0].chunk, 0);
    struct lr_xs_act first = act[0];
    assert_int_equal(lr_xs_pump(xs, act, ACTS), 0);
    /* Same chunks again: nothing learned, nothing to do. */
    assert_int_equal(lr_xs_have(xs, x, &b, bits), 0);
    assert_int_equal(lr_xs_pump(xs, act, ACTS), 0);
    bits[0] = 0x07;
    assert_int_equal(lr_xs_have(xs, x, &b, bits), 2);
    size_t n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(n, 2);
    assert_int_equal(act[0].chunk, 1);
    assert_int_equal(act[1].chunk, 2);
    serve_all(xs, &first, 1);
    serve_all(xs, act, n);
    n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(n, 1);
    assert_int_equal(act[0].kind, LR_XS_COMPLETE);
    assert_int_equal(lr_xs_nfrom_partial(x), 3);
    lr_xs_free(xs);
}

/* With a full holder connected, the partial one shares the chunks it has
 * (fewest bytes outstanding) and is never asked for the others. */
static void test_swarm_full_and_partial(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id a = dev(1), b = dev(2);
    lr_xs_peer_up(xs, &a);
    lr_xs_peer_up(xs, &b);
    struct lr_xs_xfer *x = add(xs, 40, &a, 1);
    uint8_t bits[5] = {0};
    for (size_t k = 0; k < 20; k++)
        set(bits, k);
    lr_xs_have(xs, x, &b, bits);
    struct lr_xs_act act[ACTS];
    size_t n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(n, 40);
    size_t from_b = 0;
    for (size_t i = 0; i < n; i++) {
        if (lr_device_id_eq(act[i].peer, &b)) {
            assert_true(act[i].chunk < 20);
            from_b++;
        }
    }
    assert_int_equal(from_b, 10); /* alternating by bytes over the first 20 */
    serve_all(xs, act, n);
    assert_int_equal(lr_xs_nfrom_partial(x), 10);
    n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(act[0].kind, LR_XS_COMPLETE);
    lr_xs_free(xs);
}

/* Announcements of a peer whose index holds the version change nothing; a
 * partial holder whose index arrives becomes a full one. */
static void test_full_and_upgrade(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id a = dev(1), b = dev(2);
    lr_xs_peer_up(xs, &b);
    struct lr_xs_xfer *x = add(xs, 4, &a, 1);
    uint8_t bits[1] = {0x01};
    assert_int_equal(lr_xs_have(xs, x, &a, bits), 0);
    assert_int_equal(lr_xs_holder_of(xs, x, &a), LR_XS_HOLDER_FULL);
    assert_int_equal(lr_xs_holder_of(xs, x, &b), LR_XS_HOLDER_NONE);
    lr_xs_have(xs, x, &b, bits);
    lr_xs_add_holders(xs, x, &b, 1);
    assert_int_equal(lr_xs_holder_of(xs, x, &b), LR_XS_HOLDER_FULL);
    struct lr_xs_act act[ACTS];
    size_t n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(n, 4); /* every chunk, from b */
    for (size_t i = 0; i < n; i++)
        assert_true(lr_device_id_eq(act[i].peer, &b));
    serve_all(xs, act, n);
    assert_int_equal(lr_xs_nfrom_partial(x), 0);
    lr_xs_free(xs);
}

/* Bits past the chunk count are ignored. */
static void test_bits_past_end(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id a = dev(1), b = dev(2);
    struct lr_xs_xfer *x = add(xs, 10, &a, 1);
    uint8_t bits[2] = {0x00, 0xff};
    assert_int_equal(lr_xs_have(xs, x, &b, bits), 2); /* chunks 8 and 9 */
    uint8_t done[2] = {0xaa, 0xaa};
    lr_xs_done_bits(x, done);
    assert_int_equal(done[0], 0);
    assert_int_equal(done[1], 0);
    lr_xs_free(xs);
}

/* A peer that leaves takes its announcements along; back, it is not asked
 * until it announces again. */
static void test_peer_down_forgets(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id a = dev(1), b = dev(2), c = dev(3);
    lr_xs_peer_up(xs, &b);
    lr_xs_peer_up(xs, &c);
    struct lr_xs_xfer *x = add(xs, 8, &a, 1);
    uint8_t bits[1] = {0x0f};
    lr_xs_have(xs, x, &b, bits);
    bits[0] = 0xf0;
    lr_xs_have(xs, x, &c, bits);
    struct lr_xs_act act[ACTS];
    size_t n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(n, 8);
    lr_xs_peer_down(xs, &b); /* its 4 chunks go back to TODO */
    lr_xs_peer_up(xs, &b);
    struct lr_xs_act more[ACTS];
    assert_int_equal(lr_xs_pump(xs, more, ACTS), 0); /* c is still busy: parked */
    /* c answers: b's chunks have no holder now and nothing is in flight. */
    struct lr_xs_act cs[ACTS];
    size_t nc = 0;
    for (size_t i = 0; i < n; i++)
        if (lr_device_id_eq(act[i].peer, &c))
            cs[nc++] = act[i];
    serve_all(xs, cs, nc);
    n = lr_xs_pump(xs, more, ACTS);
    assert_int_equal(n, 1);
    assert_int_equal(more[0].kind, LR_XS_DROP);
    lr_xs_free(xs);

    /* Same, but b announces again after coming back. */
    xs = lr_xs_new(&LIM);
    lr_xs_peer_up(xs, &b);
    x = add(xs, 8, &a, 1);
    bits[0] = 0x0f;
    lr_xs_have(xs, x, &b, bits);
    n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(n, 4);
    lr_xs_peer_down(xs, &b);
    lr_xs_peer_up(xs, &b);
    assert_int_equal(lr_xs_have(xs, x, &b, bits), 4); /* learned again */
    n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++)
        assert_true(lr_device_id_eq(act[i].peer, &b));
    lr_xs_free(xs);
}

/* A partial holder that refuses is not asked again for that version, even
 * after a fresh announcement; the refusal counts as a failure. */
static void test_partial_refusal(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id a = dev(1), b = dev(2);
    lr_xs_peer_up(xs, &a);
    lr_xs_peer_up(xs, &b);
    struct lr_xs_xfer *x = add(xs, 2, &a, 1);
    uint8_t bits[1] = {0x03};
    lr_xs_have(xs, x, &b, bits);
    struct lr_xs_act act[ACTS];
    size_t n = lr_xs_pump(xs, act, ACTS);
    assert_int_equal(n, 2);
    /* Chunk 0 went to a (tie: first holder), chunk 1 to b. */
    assert_true(lr_device_id_eq(act[1].peer, &b));
    struct lr_xs_xfer *got;
    size_t chunk;
    assert_int_equal(lr_xs_answer(xs, &b, act[1].req_id, LR_XS_ANS_REFUSED, &got, &chunk), 0);
    lr_xs_have(xs, x, &b, bits);
    struct lr_xs_act more[ACTS];
    n = lr_xs_pump(xs, more, ACTS);
    assert_int_equal(n, 1);
    assert_int_equal(more[0].chunk, 1);
    assert_true(lr_device_id_eq(more[0].peer, &a));
    lr_xs_free(xs);
}

/* Failed verification of a partial holder's data: retried from the full one. */
static void test_partial_bad_data(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id a = dev(1), b = dev(2);
    lr_xs_peer_up(xs, &b);
    struct lr_xs_xfer *x = add(xs, 1, &a, 1);
    uint8_t bits[1] = {0x01};
    lr_xs_have(xs, x, &b, bits);
    struct lr_xs_act act[ACTS];
    assert_int_equal(lr_xs_pump(xs, act, ACTS), 1);
    struct lr_xs_xfer *got;
    size_t chunk;
    assert_int_equal(lr_xs_answer(xs, &b, act[0].req_id, LR_XS_ANS_OK, &got, &chunk), 0);
    lr_xs_written(xs, got, chunk, false);
    assert_int_equal(lr_xs_nfrom_partial(x), 0);
    lr_xs_peer_up(xs, &a);
    assert_int_equal(lr_xs_pump(xs, act, ACTS), 1);
    assert_true(lr_device_id_eq(act[0].peer, &a));
    lr_xs_free(xs);
}

static void test_done_bits(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id a = dev(1);
    uint32_t len[12];
    bool done[12] = {0};
    for (size_t i = 0; i < 12; i++)
        len[i] = 10;
    done[0] = done[9] = done[11] = true;
    struct lr_xs_xfer *x = lr_xs_add(xs, NULL, len, 12, done, &a, 1);
    uint8_t bits[2];
    lr_xs_done_bits(x, bits);
    assert_int_equal(bits[0], 0x01);
    assert_int_equal(bits[1], 0x0a);
    lr_xs_free(xs);
}

static void test_keys(void **state)
{
    (void)state;
    struct lr_xs *xs = lr_xs_new(&LIM);
    struct lr_device_id a = dev(1);
    enum { N = 300 };
    struct lr_xs_xfer *v[N];
    struct lr_hash k[N];
    for (size_t i = 0; i < N; i++) {
        memset(&k[i], 0, sizeof(k[i]));
        k[i].b[0] = (uint8_t)(i & 0x0f); /* many share their low bits: long chains */
        k[i].b[9] = (uint8_t)i;
        k[i].b[10] = (uint8_t)(i >> 8);
        v[i] = add(xs, 2, &a, 1);
        lr_xs_set_key(xs, v[i], &k[i]);
    }
    for (size_t i = 0; i < N; i++)
        assert_ptr_equal(lr_xs_find(xs, &k[i]), v[i]);
    struct lr_hash none;
    memset(&none, 0x77, sizeof(none));
    assert_null(lr_xs_find(xs, &none));
    /* Re-keyed: found under the new key only. */
    lr_xs_set_key(xs, v[5], &none);
    assert_ptr_equal(lr_xs_find(xs, &none), v[5]);
    assert_null(lr_xs_find(xs, &k[5]));
    /* Removed: gone, the others still found. */
    for (size_t i = 0; i < N; i += 2)
        lr_xs_remove(xs, v[i]);
    for (size_t i = 0; i < N; i++) {
        if (i == 5)
            continue;
        assert_ptr_equal(lr_xs_find(xs, &k[i]), i % 2 ? v[i] : NULL);
    }
    assert_ptr_equal(lr_xs_find(xs, &none), v[5]);
    lr_xs_free(xs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partial_only),
        cmocka_unit_test(test_have_wakes_parked),
        cmocka_unit_test(test_swarm_full_and_partial),
        cmocka_unit_test(test_full_and_upgrade),
        cmocka_unit_test(test_bits_past_end),
        cmocka_unit_test(test_peer_down_forgets),
        cmocka_unit_test(test_partial_refusal),
        cmocka_unit_test(test_partial_bad_data),
        cmocka_unit_test(test_done_bits),
        cmocka_unit_test(test_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
