/*
 * test_pair_code.c - the one-time pairing code: text form, lenient parsing,
 * typo detection, randomness and the expiry / single-attempt rules.
 */
#include "pair/code.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fmt(uint16_t np, uint32_t sec, char *out)
{
    struct lr_pair_code c = {.nameplate = np, .secret = sec};
    lr_pair_code_format(&c, out);
}

/* Naive Luhn validity of a whole digit string (check digit included). */
static bool luhn_ok(const char *d, size_t n)
{
    int sum = 0;
    for (size_t i = 0; i < n; i++) {
        int v = d[n - 1 - i] - '0';
        if (i % 2 == 1) {
            v *= 2;
            if (v > 9)
                v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

static void test_luhn_known(void **state)
{
    (void)state;
    /* textbook example: 7992739871 has check digit 3 */
    assert_int_equal(lr__pair_luhn_digit("7992739871", 10), 3);
    assert_int_equal(lr__pair_luhn_digit("000000000", 9), 0);
    assert_int_equal(lr__pair_luhn_digit("000000001", 9), 8); /* 1 doubled = 2 -> 8 */
    assert_int_equal(lr__pair_luhn_digit("000000010", 9), 9);
}

static void test_format(void **state)
{
    (void)state;
    char s[LR_PAIR_CODE_STRLEN + 1];
    fmt(0, 0, s);
    assert_string_equal(s, "000-000-0000");
    fmt(417, 305911, s);
    assert_int_equal(strlen(s), LR_PAIR_CODE_STRLEN);
    assert_memory_equal(s, "417-305-911", 11);
    char digits[11] = "417305911";
    assert_int_equal(s[11] - '0', lr__pair_luhn_digit(digits, 9));
    fmt(999, 999999, s);
    assert_memory_equal(s, "999-999-999", 11);
    fmt(7, 42, s);
    assert_memory_equal(s, "007-000-042", 11);

    char np[4];
    lr_pair_nameplate_format(5, np);
    assert_string_equal(np, "005");
    lr_pair_nameplate_format(999, np);
    assert_string_equal(np, "999");

    struct lr_pair_code c = {.nameplate = 1, .secret = 4321};
    char sec[LR_PAIR_SECRET_DIGITS];
    lr_pair_code_secret_str(&c, sec);
    assert_memory_equal(sec, "004321", 6);
}

/* Format then parse gives back the same code, for many random codes. */
static void test_roundtrip_random(void **state)
{
    (void)state;
    char s[LR_PAIR_CODE_STRLEN + 1];
    struct lr_pair_code c, p;
    for (int i = 0; i < 2000; i++) {
        assert_int_equal(lr_pair_code_new(&c, 1000, NULL), 0);
        assert_true(c.nameplate <= LR_PAIR_NAMEPLATE_MAX);
        assert_true(c.secret <= LR_PAIR_SECRET_MAX);
        lr_pair_code_format(&c, s);
        assert_true(
            luhn_ok((char[]){s[0], s[1], s[2], s[4], s[5], s[6], s[8], s[9], s[10], s[11]}, 10));
        assert_int_equal(lr_pair_code_parse(s, &p, NULL), 0);
        assert_int_equal(p.nameplate, c.nameplate);
        assert_int_equal(p.secret, c.secret);
        assert_int_equal(p.created_ms, 0);
        assert_false(p.claimed || p.failed || p.used);
    }
}

/* The secret is not constant: crude spread check over many draws. */
static void test_randomness_spread(void **state)
{
    (void)state;
    struct lr_pair_code c;
    int hi_secret = 0, digit_seen[10] = {0}, np_hi = 0;
    uint32_t first = 0;
    bool differs = false;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(lr_pair_code_new(&c, 5, NULL), 0);
        assert_int_equal(c.created_ms, 5);
        if (i == 0)
            first = c.secret;
        else if (c.secret != first)
            differs = true;
        if (c.secret >= 500000)
            hi_secret++;
        if (c.nameplate >= 500)
            np_hi++;
        digit_seen[c.secret % 10]++;
    }
    assert_true(differs);
    /* binomial(1000, 1/2): 350..650 is > 9 sigma wide */
    assert_in_range(hi_secret, 350, 650);
    assert_in_range(np_hi, 350, 650);
    for (int d = 0; d < 10; d++)
        assert_true(digit_seen[d] > 30);
}

static void test_parse_lenient(void **state)
{
    (void)state;
    char s[LR_PAIR_CODE_STRLEN + 1];
    struct lr_pair_code p;
    fmt(107, 10010, s); /* "107-010-010C" */
    char c = s[11];
    const char *forms[] = {"107-010-010#",     "107010010#",          " 107 010 010 # ",
                           "1O7.OlO.OIO#",     "107_010_010-#",       "1,0,7,0,1,0,0,1,0,#",
                           "\t107-010-010#\t", "--107--010--010--#--"};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        char in[64];
        snprintf(in, sizeof(in), "%s", forms[i]);
        *strchr(in, '#') = c;
        struct lr_err err = {0};
        assert_int_equal(lr_pair_code_parse(in, &p, &err), 0);
        assert_int_equal(p.nameplate, 107);
        assert_int_equal(p.secret, 10010);
    }
}

static void expect_usage(const char *in, const char *needle)
{
    struct lr_pair_code p;
    struct lr_err err;
    lr_err_clear(&err);
    memset(&p, 0xee, sizeof(p));
    assert_int_equal(lr_pair_code_parse(in, &p, &err), LR_EUSAGE);
    assert_int_equal(err.code, LR_EUSAGE);
    if (!strstr(err.msg, needle))
        fail_msg("parse(\"%s\"): message \"%s\" lacks \"%s\"", in, err.msg, needle);
    /* out-param zeroed on failure */
    struct lr_pair_code zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&p, &zero, sizeof(p));
}

static void test_parse_errors(void **state)
{
    (void)state;
    char s[LR_PAIR_CODE_STRLEN + 1], in[80];
    fmt(417, 305911, s);
    expect_usage("", "empty");
    expect_usage(" - - ", "empty");
    expect_usage("417-305-91", "too few");
    snprintf(in, sizeof(in), "%s1", s);
    expect_usage(in, "too many");
    expect_usage("417-305-911x", "'x' at position 12");
    expect_usage("417/305-9110", "'/' at position 4");
    expect_usage("417\n305-9110", "byte 0x0a at position 4");
    expect_usage("417-305-911\xc3\xa9", "byte 0xc3 at position 12");
    memset(in, '1', sizeof(in) - 1);
    in[sizeof(in) - 1] = '\0';
    expect_usage(in, "too long");
    /* 64 separators plus nothing: exactly at the limit, then empty */
    char lim[LR_PAIR_CODE_INPUT_MAX + 1];
    memset(lim, '-', LR_PAIR_CODE_INPUT_MAX);
    lim[LR_PAIR_CODE_INPUT_MAX] = '\0';
    expect_usage(lim, "empty");
    /* wrong check digit */
    snprintf(in, sizeof(in), "%.11s%c", s, s[11] == '9' ? '0' : s[11] + 1);
    expect_usage(in, "check digit");
}

/* Every single-digit typo and every swap of two different neighbouring digits
 * (except Luhn's blind spot 09 <-> 90) is caught before it costs a guess. */
static void test_typos_detected(void **state)
{
    (void)state;
    struct lr_pair_code c, p;
    char s[LR_PAIR_CODE_STRLEN + 1];
    for (int round = 0; round < 50; round++) {
        assert_int_equal(lr_pair_code_new(&c, 0, NULL), 0);
        lr_pair_code_format(&c, s);
        char d[11];
        size_t n = 0;
        for (size_t i = 0; s[i]; i++)
            if (s[i] != '-')
                d[n++] = s[i];
        d[n] = '\0';
        assert_int_equal(n, 10);
        for (size_t i = 0; i < 10; i++) {
            for (char v = '0'; v <= '9'; v++) {
                if (v == d[i])
                    continue;
                char t[11];
                memcpy(t, d, sizeof(t));
                t[i] = v;
                assert_int_equal(lr_pair_code_parse(t, &p, NULL), LR_EUSAGE);
            }
        }
        for (size_t i = 0; i + 1 < 10; i++) {
            if (d[i] == d[i + 1] || (d[i] == '0' && d[i + 1] == '9') ||
                (d[i] == '9' && d[i + 1] == '0'))
                continue;
            char t[11];
            memcpy(t, d, sizeof(t));
            t[i] = d[i + 1];
            t[i + 1] = d[i];
            assert_int_equal(lr_pair_code_parse(t, &p, NULL), LR_EUSAGE);
        }
    }
}

static void test_expiry(void **state)
{
    (void)state;
    struct lr_pair_code c;
    struct lr_err err;
    const uint64_t t0 = 1000000;
    assert_int_equal(lr_pair_code_new(&c, t0, NULL), 0);
    assert_int_equal(lr_pair_code_check(&c, t0, NULL), 0);
    assert_int_equal(lr_pair_code_check(&c, t0 + LR_PAIR_CODE_TTL_MS - 1, NULL), 0);
    lr_err_clear(&err);
    assert_int_equal(lr_pair_code_check(&c, t0 + LR_PAIR_CODE_TTL_MS, &err), LR_ETIMEOUT);
    assert_non_null(strstr(err.msg, "expired"));
    assert_non_null(strstr(err.msg, "5 minutes"));
    assert_int_equal(lr_pair_code_check(&c, UINT64_MAX, NULL), LR_ETIMEOUT);
    /* a clock that goes backwards fails closed */
    assert_int_equal(lr_pair_code_check(&c, t0 - 1, NULL), LR_ETIMEOUT);
    /* claim obeys the same rule and does not claim an expired code */
    assert_int_equal(lr_pair_code_claim(&c, t0 + LR_PAIR_CODE_TTL_MS, NULL), LR_ETIMEOUT);
    assert_false(c.claimed);
    assert_int_equal(LR_PAIR_CODE_TTL_MS, 300000);
}

static void test_single_attempt(void **state)
{
    (void)state;
    struct lr_pair_code c;
    struct lr_err err;
    const uint64_t t0 = 50;

    /* failed attempt kills the code */
    assert_int_equal(lr_pair_code_new(&c, t0, NULL), 0);
    assert_int_equal(lr_pair_code_claim(&c, t0 + 1, NULL), 0);
    lr_err_clear(&err);
    assert_int_equal(lr_pair_code_claim(&c, t0 + 2, &err), LR_EVERIFY); /* concurrent session */
    assert_non_null(strstr(err.msg, "in use"));
    lr_pair_code_finish(&c, false);
    lr_err_clear(&err);
    assert_int_equal(lr_pair_code_check(&c, t0 + 3, &err), LR_EVERIFY);
    assert_non_null(strstr(err.msg, "failed attempt"));
    assert_int_equal(lr_pair_code_claim(&c, t0 + 3, NULL), LR_EVERIFY);

    /* success uses it up */
    assert_int_equal(lr_pair_code_new(&c, t0, NULL), 0);
    assert_int_equal(lr_pair_code_claim(&c, t0, NULL), 0);
    lr_pair_code_finish(&c, true);
    lr_err_clear(&err);
    assert_int_equal(lr_pair_code_check(&c, t0, &err), LR_EVERIFY);
    assert_non_null(strstr(err.msg, "already used"));

    /* a failure without a claim (e.g. aborted before CPace) still kills it */
    assert_int_equal(lr_pair_code_new(&c, t0, NULL), 0);
    lr_pair_code_finish(&c, false);
    assert_int_equal(lr_pair_code_check(&c, t0, NULL), LR_EVERIFY);

    /* failure beats expiry in the message: the user should know why */
    assert_int_equal(lr_pair_code_check(&c, t0 + LR_PAIR_CODE_TTL_MS, NULL), LR_EVERIFY);

    lr_pair_code_wipe(&c);
    struct lr_pair_code zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&c, &zero, sizeof(c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_luhn_known),       cmocka_unit_test(test_format),
        cmocka_unit_test(test_roundtrip_random), cmocka_unit_test(test_randomness_spread),
        cmocka_unit_test(test_parse_lenient),    cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_typos_detected),   cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_single_attempt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
