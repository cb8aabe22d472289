/* test_timens.c - timespec <-> int64 ns: exact inside the range, saturated outside it. */
#include "util/timens.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

static int64_t ns_of(int64_t s, long n)
{
    struct timespec t = {.tv_sec = (time_t)s, .tv_nsec = n};
    return lr_timespec_ns(&t);
}

static void test_exact_in_range(void **state)
{
    (void)state;
    assert_true(ns_of(0, 0) == 0);
    assert_true(ns_of(1, 5) == 1000000005);
    assert_true(ns_of(-1, 999999999) == -1);
    assert_true(ns_of(-1234567891, 876543211) == -1234567890123456789);
    /* The last and first representable instants. */
    assert_true(ns_of(9223372036, 854775807) == INT64_MAX);
    assert_true(ns_of(-9223372037, 145224192) == INT64_MIN);
}

static void test_saturates_outside(void **state)
{
    (void)state;
    assert_true(ns_of(9223372036, 854775808) == INT64_MAX);
    assert_true(ns_of(9223372037, 0) == INT64_MAX);
    assert_true(ns_of(10413792000, 0) == INT64_MAX); /* 2300-01-01 */
    assert_true(ns_of(INT64_MAX, 999999999) == INT64_MAX);
    assert_true(ns_of(-9223372037, 145224191) == INT64_MIN);
    assert_true(ns_of(-9223372038, 999999999) == INT64_MIN);
    assert_true(ns_of(INT64_MIN, 0) == INT64_MIN);
}

/* Back to a timespec and round again: the same value, so a saturated time read back from a
 * peer's disk is no change. */
static void test_round_trip(void **state)
{
    (void)state;
    const int64_t v[] = {0,          1,          -1,           999999999,
                         -999999999, 1000000000, -1000000000,  -1234567890123456789,
                         INT64_MAX,  INT64_MIN,  INT64_MAX - 1};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct timespec t = lr_ns_timespec(v[i]);
        assert_true(t.tv_nsec >= 0 && t.tv_nsec < 1000000000);
        assert_true(lr_timespec_ns(&t) == v[i]);
    }
    struct timespec t = lr_ns_timespec(-1);
    assert_int_equal(t.tv_sec, -1);
    assert_int_equal(t.tv_nsec, 999999999);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_in_range),
        cmocka_unit_test(test_saturates_outside),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
