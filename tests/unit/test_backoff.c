/* test_backoff.c - exponential backoff with injected jitter. */
#include "transport/backoff.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static uint64_t rng_fixed(void *ud)
{
    return *(const uint64_t *)ud;
}

struct seq {
    uint64_t v[16];
    size_t n, i;
};

static uint64_t rng_seq(void *ud)
{
    struct seq *s = ud;
    return s->v[s->i++ % s->n];
}

/* The lowest draw gives half the ceiling; the ceiling doubles up to the cap and stays there. */
static void test_min_draw_doubles_to_cap(void **state)
{
    (void)state;
    uint64_t zero = 0;
    struct lr_backoff b;
    lr_backoff_init(&b, 1000, 60000, rng_fixed, &zero);
    const uint32_t want[] = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(lr_backoff_next(&b), want[i]);
}

/* The span is [ceil/2, ceil] inclusive: a draw of exactly span-1 gives the ceiling. */
static void test_max_draw_hits_ceiling(void **state)
{
    (void)state;
    struct seq s = {.v = {500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000}, .n = 9};
    struct lr_backoff b;
    lr_backoff_init(&b, 1000, 60000, rng_seq, &s);
    const uint32_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(lr_backoff_next(&b), want[i]);
}

/* Any RNG output stays within [ceil/2, ceil]; large outputs wrap instead of overflowing. */
static void test_bounds_for_any_draw(void **state)
{
    (void)state;
    uint64_t draws[] = {0, 1, 7, 12345, UINT64_MAX, UINT64_MAX - 1, 1ull << 63};
    for (size_t d = 0; d < sizeof draws / sizeof draws[0]; d++) {
        struct lr_backoff b;
        lr_backoff_init(&b, 1000, 60000, rng_fixed, &draws[d]);
        uint64_t ceil = 1000;
        for (int i = 0; i < 100; i++) {
            uint32_t v = lr_backoff_next(&b);
            assert_true(v >= ceil / 2);
            assert_true(v <= ceil);
            ceil = ceil * 2 > 60000 ? 60000 : ceil * 2;
        }
    }
}

static void test_reset_restarts(void **state)
{
    (void)state;
    uint64_t zero = 0;
    struct lr_backoff b;
    lr_backoff_init(&b, 1000, 60000, rng_fixed, &zero);
    for (int i = 0; i < 20; i++)
        (void)lr_backoff_next(&b);
    assert_int_equal(lr_backoff_next(&b), 30000);
    lr_backoff_reset(&b);
    assert_int_equal(lr_backoff_next(&b), 500);
    assert_int_equal(lr_backoff_next(&b), 1000);
}

/* Degenerate bounds are repaired; huge attempt counts neither overflow nor exceed the cap. */
static void test_degenerate_bounds(void **state)
{
    (void)state;
    uint64_t big = UINT64_MAX;
    struct lr_backoff b;
    lr_backoff_init(&b, 0, 0, rng_fixed, &big);
    assert_int_equal(b.min_ms, 1);
    assert_int_equal(b.max_ms, 1);
    assert_int_equal(lr_backoff_next(&b), 1); /* [0,1]: UINT64_MAX % 2 == 1 */

    lr_backoff_init(&b, 5000, 100, rng_fixed, &big);
    assert_int_equal(b.max_ms, 5000);

    lr_backoff_init(&b, UINT32_MAX, UINT32_MAX, rng_fixed, &big);
    b.attempt = UINT32_MAX;
    uint32_t v = lr_backoff_next(&b);
    assert_true(v >= UINT32_MAX / 2);
    assert_int_equal(b.attempt, UINT32_MAX);
}

/* No RNG: deterministic lower bound. */
static void test_null_rng(void **state)
{
    (void)state;
    struct lr_backoff b;
    lr_backoff_init(&b, 1000, 4000, NULL, NULL);
    assert_int_equal(lr_backoff_next(&b), 500);
    assert_int_equal(lr_backoff_next(&b), 1000);
    assert_int_equal(lr_backoff_next(&b), 2000);
    assert_int_equal(lr_backoff_next(&b), 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_min_draw_doubles_to_cap),
        cmocka_unit_test(test_max_draw_hits_ceiling),
        cmocka_unit_test(test_bounds_for_any_draw),
        cmocka_unit_test(test_reset_restarts),
        cmocka_unit_test(test_degenerate_bounds),
        cmocka_unit_test(test_null_rng),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
