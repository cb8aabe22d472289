/*
 * test_buf.c - util/buf.c (writer), util/rd.c (reader), util/str.c (UTF-8,
 * escaping, base64, hex), util/xalloc.c (append growth).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/rd.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <malloc.h>

#include <stdlib.h>
#include <string.h>

/* ---- err ---- */

/* A message too long for the buffer keeps its start and its end (the
 * reason), cut in the middle on a character boundary. */
static void test_err_long_message_keeps_reason(void **state)
{
    (void)state;
    struct lr_err err = {0};
    char path[1200];
    memset(path, 'q', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    path[5] = '\xc3'; /* a two-byte character where the cut may fall */
    path[6] = '\xa9';
    assert_int_equal(lr_err_set(&err, -2, "index /h/%s/index.db: no such file", path), -2);
    assert_int_equal(err.code, -2);
    size_t n = strlen(err.msg);
    assert_true(n < LR_ERR_MSG_MAX);
    assert_true(n > LR_ERR_MSG_MAX - 8);
    assert_memory_equal(err.msg, "index /h/", 9);
    assert_non_null(strstr(err.msg, "..."));
    const char *end = "/index.db: no such file";
    assert_string_equal(err.msg + n - strlen(end), end);
    assert_true(lr_utf8_valid(err.msg, n));
    /* The message may be built from the previous one. */
    lr_err_set(&err, 1, "short");
    lr_err_set(&err, 1, "%s, then %s", err.msg, "more");
    assert_string_equal(err.msg, "short, then more");
}

/* ---- buf ---- */

static void test_buf_ints(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 1024);
    assert_null(b.data);
    assert_int_equal(lr_buf_put_u8(&b, 0xab), 0);
    assert_int_equal(lr_buf_put_u16(&b, 0x1234), 0);
    assert_int_equal(lr_buf_put_u32(&b, 0xdeadbeef), 0);
    assert_int_equal(lr_buf_put_u64(&b, UINT64_C(0x0102030405060708)), 0);
    static const uint8_t want[] = {0xab, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1,
                                   2,    3,    4,    5,    6,    7,    8};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    assert_true(b.len <= b.cap && b.cap <= b.max);

    struct lr_rd r;
    lr_rd_init(&r, b.data, b.len);
    uint8_t v8;
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;
    assert_int_equal(lr_rd_get_u8(&r, &v8), 0);
    assert_int_equal(lr_rd_get_u16(&r, &v16), 0);
    assert_int_equal(lr_rd_get_u32(&r, &v32), 0);
    assert_int_equal(lr_rd_get_u64(&r, &v64), 0);
    assert_int_equal(v8, 0xab);
    assert_int_equal(v16, 0x1234);
    assert_int_equal(v32, 0xdeadbeef);
    assert_int_equal(v64, UINT64_C(0x0102030405060708));
    assert_int_equal(lr_rd_left(&r), 0);
    lr_buf_release(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_buf_varint(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        size_t len;
        uint8_t first;
    } cases[] = {
        {0, 1, 0x00},
        {63, 1, 0x3f},
        {64, 2, 0x40},
        {16383, 2, 0x7f},
        {16384, 4, 0x80},
        {(UINT64_C(1) << 30) - 1, 4, 0xbf},
        {UINT64_C(1) << 30, 8, 0xc0},
        {LR_VARINT_MAX, 8, 0xff},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lr_buf b;
        lr_buf_init(&b, 16);
        assert_int_equal(lr_varint_len(cases[i].v), cases[i].len);
        assert_int_equal(lr_buf_put_varint(&b, cases[i].v), 0);
        assert_int_equal(b.len, cases[i].len);
        assert_int_equal(b.data[0], cases[i].first);
        struct lr_rd r;
        lr_rd_init(&r, b.data, b.len);
        uint64_t got;
        assert_int_equal(lr_rd_get_varint(&r, &got), 0);
        assert_int_equal(got, cases[i].v);
        assert_int_equal(lr_rd_left(&r), 0);
        /* Every strict prefix is truncated, and the cursor does not move. */
        for (size_t n = 0; n < b.len; n++) {
            lr_rd_init(&r, b.data, n);
            got = 99;
            assert_int_equal(lr_rd_get_varint(&r, &got), LR_ETRUNC);
            assert_int_equal(got, 0);
            assert_int_equal(lr_rd_left(&r), n);
        }
        lr_buf_release(&b);
    }
    /* RFC 9000 §A.1 examples. */
    static const uint8_t ex8[] = {0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c};
    static const uint8_t ex4[] = {0x9d, 0x7f, 0x3e, 0x7d};
    static const uint8_t ex2[] = {0x7b, 0xbd};
    static const uint8_t ex2nm[] = {0x40, 0x25}; /* 37, not minimal */
    struct lr_rd r;
    uint64_t v;
    lr_rd_init(&r, ex8, 8);
    assert_int_equal(lr_rd_get_varint(&r, &v), 0);
    assert_int_equal(v, UINT64_C(151288809941952652));
    lr_rd_init(&r, ex4, 4);
    assert_int_equal(lr_rd_get_varint(&r, &v), 0);
    assert_int_equal(v, 494878333);
    lr_rd_init(&r, ex2, 2);
    assert_int_equal(lr_rd_get_varint(&r, &v), 0);
    assert_int_equal(v, 15293);
    lr_rd_init(&r, ex2nm, 2);
    assert_int_equal(lr_rd_get_varint(&r, &v), 0);
    assert_int_equal(v, 37);

    /* 2^62 does not fit: refused and the buffer is poisoned. */
    struct lr_buf b;
    lr_buf_init(&b, 16);
    assert_int_equal(lr_buf_put_varint(&b, LR_VARINT_MAX + 1), LR_EBADVAL);
    assert_false(lr_buf_ok(&b));
    assert_int_equal(b.len, 0);
    assert_int_equal(lr_buf_put_u8(&b, 1), LR_ETOOBIG);
    lr_buf_release(&b);
}

static void test_buf_limit_poison(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 5);
    assert_int_equal(lr_buf_put(&b, "abcd", 4), 0);
    /* Would exceed max: nothing appended, poisoned. */
    assert_int_equal(lr_buf_put_u16(&b, 1), LR_ETOOBIG);
    assert_int_equal(b.len, 4);
    assert_false(lr_buf_ok(&b));
    /* Even a put that would fit fails once poisoned. */
    assert_int_equal(lr_buf_put_u8(&b, 1), LR_ETOOBIG);
    assert_int_equal(b.len, 4);
    assert_null(lr_buf_reserve(&b, 0));
    /* Reset clears the poison and the contents but keeps the allocation. */
    uint8_t *data = b.data;
    lr_buf_reset(&b);
    assert_true(lr_buf_ok(&b));
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(lr_buf_put(&b, "12345", 5), 0);
    assert_true(b.cap <= 5);
    assert_int_equal(lr_buf_put(&b, "", 0), 0);
    assert_int_equal(lr_buf_put_u8(&b, 0), LR_ETOOBIG);
    lr_buf_release(&b);

    /* A hostile size never allocates. */
    lr_buf_init(&b, 1024);
    assert_null(lr_buf_reserve(&b, SIZE_MAX));
    assert_null(b.data);
    lr_buf_release(&b);
    lr_buf_init(&b, SIZE_MAX);
    assert_int_equal(lr_buf_put_u8(&b, 1), 0);
    assert_null(lr_buf_reserve(&b, SIZE_MAX));
    assert_int_equal(b.len, 1);
    lr_buf_release(&b);
}

/* Appending nothing to a fresh (unallocated) buffer is a success. */
static void test_buf_empty_put(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 64);
    assert_int_equal(lr_buf_put(&b, "", 0), 0);
    assert_int_equal(lr_buf_put_str(&b, ""), 0);
    assert_true(lr_buf_ok(&b));
    assert_int_equal(b.len, 0);
    lr_buf_release(&b);
}

static void test_buf_growth_detach_printf(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 1 << 20);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(lr_buf_put_u8(&b, (uint8_t)i), 0);
    for (int i = 0; i < 100000; i++)
        assert_int_equal(b.data[i], (uint8_t)i);
    size_t len;
    uint8_t *p = lr_buf_detach(&b, &len);
    assert_int_equal(len, 100000);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.max, 1 << 20);
    free(p);

    assert_int_equal(lr_buf_printf(&b, "%s=%d", "x", 42), 0);
    assert_int_equal(lr_buf_put_str(&b, " y"), 0);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "x=42 y", 6);
    lr_buf_release(&b);

    /* printf over the limit. */
    lr_buf_init(&b, 4);
    assert_int_equal(lr_buf_printf(&b, "%d", 123456), LR_ETOOBIG);
    assert_false(lr_buf_ok(&b));
    lr_buf_release(&b);

    /* lbytes: varint length then the bytes. */
    lr_buf_init(&b, 1024);
    char big[100];
    memset(big, 'z', sizeof(big));
    assert_int_equal(lr_buf_put_lbytes(&b, big, 100), 0);
    assert_int_equal(b.len, 102);
    assert_int_equal(b.data[0], 0x40);
    assert_int_equal(b.data[1], 100);
    assert_int_equal(lr_buf_put_lbytes(&b, "", 0), 0);
    assert_int_equal(b.len, 103);
    lr_buf_release(&b);
}

/* ---- rd ---- */

static void test_rd_bounds(void **state)
{
    (void)state;
    static const uint8_t d[] = {1, 2, 3};
    struct lr_rd r;
    lr_rd_init(&r, d, 3);
    uint32_t v32 = 7;
    assert_int_equal(lr_rd_get_u32(&r, &v32), LR_ETRUNC);
    assert_int_equal(v32, 0);
    assert_int_equal(lr_rd_left(&r), 3);
    uint8_t out[4] = {9, 9, 9, 9};
    assert_int_equal(lr_rd_get_bytes(&r, out, 4), LR_ETRUNC);
    assert_int_equal(out[0], 0);
    assert_int_equal(lr_rd_get_bytes(&r, out, 2), 0);
    assert_memory_equal(out, d, 2);
    const uint8_t *v;
    assert_int_equal(lr_rd_get_view(&r, &v, 2), LR_ETRUNC);
    assert_null(v);
    assert_int_equal(lr_rd_skip(&r, 2), LR_ETRUNC);
    assert_int_equal(lr_rd_skip(&r, 1), 0);
    assert_int_equal(lr_rd_left(&r), 0);
    uint8_t b;
    assert_int_equal(lr_rd_get_u8(&r, &b), LR_ETRUNC);
    lr_rd_init(&r, NULL, 0);
    assert_int_equal(lr_rd_get_view(&r, &v, 0), 0);
}

static void test_rd_lview_sub(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 256);
    lr_buf_put_lbytes(&b, "hello", 5);
    lr_buf_put_u8(&b, 0xee);
    struct lr_rd r, sub;
    lr_rd_init(&r, b.data, b.len);
    const uint8_t *p;
    size_t n;
    /* Over max: LR_ETOOBIG, cursor unchanged. */
    assert_int_equal(lr_rd_get_lview(&r, &p, &n, 4), LR_ETOOBIG);
    assert_null(p);
    assert_int_equal(n, 0);
    assert_int_equal(lr_rd_left(&r), b.len);
    assert_int_equal(lr_rd_get_sub(&r, &sub, 5), 0);
    assert_int_equal(lr_rd_left(&sub), 5);
    /* The sub-reader cannot read past its field. */
    uint64_t v64;
    assert_int_equal(lr_rd_get_u64(&sub, &v64), LR_ETRUNC);
    assert_int_equal(lr_rd_get_view(&sub, &p, 5), 0);
    assert_memory_equal(p, "hello", 5);
    assert_int_equal(lr_rd_left(&r), 1);
    lr_buf_release(&b);

    /* Declared length longer than the data (2^32-1 and 2^62-1). */
    static const uint64_t hostile[] = {6, UINT32_MAX, LR_VARINT_MAX};
    for (size_t i = 0; i < 3; i++) {
        lr_buf_init(&b, 64);
        lr_buf_put_varint(&b, hostile[i]);
        lr_buf_put(&b, "abcde", 5);
        lr_rd_init(&r, b.data, b.len);
        assert_int_equal(lr_rd_get_lview(&r, &p, &n, SIZE_MAX), LR_ETRUNC);
        assert_null(p);
        assert_int_equal(lr_rd_left(&r), b.len);
        assert_int_equal(lr_rd_get_sub(&r, &sub, 64), hostile[i] > 64 ? LR_ETOOBIG : LR_ETRUNC);
        assert_int_equal(lr_rd_left(&sub), 0);
        lr_buf_release(&b);
    }
}

/* ---- str ---- */

static void test_utf8_valid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n;
        bool ok;
    } cases[] = {
        {"", 0, true},
        {"ascii", 5, true},
        {"\xc3\xa9", 2, true},              /* é */
        {"\xe2\x82\xac", 3, true},          /* € */
        {"\xf0\x9f\x98\x80", 4, true},      /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 4, true},      /* U+10FFFF */
        {"a\0b", 3, true},                  /* NUL is valid UTF-8 */
        {"\x80", 1, false},                 /* lone continuation */
        {"\xc3", 1, false},                 /* truncated */
        {"\xe2\x82", 2, false},             /* truncated */
        {"\xc0\xaf", 2, false},             /* overlong '/' */
        {"\xe0\x80\xaf", 3, false},         /* overlong */
        {"\xed\xa0\x80", 3, false},         /* surrogate */
        {"\xf4\x90\x80\x80", 4, false},     /* > U+10FFFF */
        {"\xf8\x88\x80\x80\x80", 5, false}, /* 5-byte form */
        {"\xff", 1, false},
        {"\xc3\x28", 2, false}, /* bad continuation */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(lr_utf8_valid(cases[i].s, cases[i].n), cases[i].ok);
}

static void test_utf8_lossy(void **state)
{
    (void)state;
    char *s = lr_utf8_lossy("caf\xc3\xa9", 5);
    assert_string_equal(s, "caf\xc3\xa9");
    free(s);
    s = lr_utf8_lossy("a\xff"
                      "b",
                      3);
    assert_string_equal(s, "a\xef\xbf\xbd"
                           "b");
    free(s);
    s = lr_utf8_lossy("a\0b", 3);
    assert_string_equal(s, "a\xef\xbf\xbd"
                           "b");
    free(s);
    s = lr_utf8_lossy("", 0);
    assert_string_equal(s, "");
    free(s);
}

static void test_esc(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        {"plain/name.txt", 14, "plain/name.txt"},
        {"caf\xc3\xa9", 5, "caf\xc3\xa9"},
        {"\x1b[1A\r", 5, "\\x1b[1A\\x0d"},
        {"a\nb", 3, "a\\x0ab"},
        {"back\\slash", 10, "back\\\\slash"},
        {"del\x7f", 4, "del\\x7f"},
        {"c1\xc2\x85", 4, "c1\\x85"},
        {"bidi\xe2\x80\xae", 7, "bidi\\u{202e}"},
        {"bom\xef\xbb\xbf", 6, "bom\\u{feff}"},
        {"bad\xff", 4, "bad\\xff"},
        {"nul\0x", 5, "nul\\x00x"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *e = lr_esc(cases[i].in, cases[i].n);
        assert_string_equal(e, cases[i].out);
        free(e);
    }
    char *e = lr_escs("tab\there");
    assert_string_equal(e, "tab\\x09here");
    free(e);
    /* A message whose names were escaped already keeps its backslashes;
     * raw control bytes in it are still escaped. */
    char longv[300];
    memset(longv, 'y', sizeof(longv) - 1);
    longv[sizeof(longv) - 1] = '\0';
    e = lr_escs_short(longv);
    assert_int_equal(strlen(e), LR_ESC_SHORT_MAX);
    assert_string_equal(e + LR_ESC_SHORT_MAX - 3, "...");
    free(e);
    e = lr_escs_short("short");
    assert_string_equal(e, "short");
    free(e);
    e = lr_esc_msg("name 'a\\x0ab' and raw \x1b[31m");
    assert_string_equal(e, "name 'a\\x0ab' and raw \\x1b[31m");
    free(e);
}

static void test_esc_cut(void **state)
{
    (void)state;
    /* "éééé" is 8 bytes: cut to 6, "..." would start at byte 3, inside
     * the second é, so it starts after the first. */
    char *e = lr_esc_cut(lr_xstrdup("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"), 6);
    assert_string_equal(e, "\xc3\xa9...");
    free(e);
    e = lr_esc_cut(lr_xstrdup("\xc3\xa9\xc3\xa9\xc3\xa9"), 4); /* back to the start */
    assert_string_equal(e, "...");
    free(e);
    e = lr_esc_cut(lr_xstrdup("\xc3\xa9\xc3\xa9\xc3\xa9"), 5); /* on a boundary */
    assert_string_equal(e, "\xc3\xa9...");
    free(e);
    e = lr_esc_cut(lr_xstrdup("abcdef"), 6);
    assert_string_equal(e, "abcdef");
    free(e);
    e = lr_esc_cut(lr_xstrdup("abcdefg"), 6);
    assert_string_equal(e, "abc...");
    free(e);
}

static void test_base64(void **state)
{
    (void)state;
    /* RFC 4648 §10. */
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char *s = lr_base64(in[i], strlen(in[i]));
        assert_string_equal(s, out[i]);
        free(s);
    }
    static const uint8_t bin[] = {0xfb, 0xff, 0xbf};
    char *s = lr_base64(bin, 3);
    assert_string_equal(s, "+/+/");
    free(s);
    /* Back again: every vector, raw bytes, and what is not base64. */
    for (size_t i = 0; i < 7; i++) {
        size_t n = 99;
        uint8_t *b = lr_unbase64(out[i], &n);
        assert_non_null(b);
        assert_int_equal(n, strlen(in[i]));
        assert_memory_equal(b, in[i], n);
        assert_int_equal(b[n], 0);
        free(b);
    }
    size_t n;
    uint8_t *b = lr_unbase64("+/+/", &n);
    assert_non_null(b);
    assert_int_equal(n, 3);
    assert_memory_equal(b, bin, 3);
    free(b);
    static const char *bad[] = {"Zg",   "Zg=",      "Z===",     "Zg=a",
                                "=Zg=", "Zm9v!A==", "Zg==Zg==", "Zm 9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_null(lr_unbase64(bad[i], &n));
}

static void test_hex(void **state)
{
    (void)state;
    static const uint8_t in[] = {0x00, 0x01, 0xab, 0xff, 0x7f};
    char hex[11];
    lr_hex(in, 5, hex);
    assert_string_equal(hex, "0001abff7f");
    uint8_t back[5];
    assert_int_equal(lr_unhex(hex, back, 5), 0);
    assert_memory_equal(back, in, 5);
    assert_int_equal(lr_unhex("0001ABFF7F", back, 5), 0);
    assert_memory_equal(back, in, 5);
    assert_int_equal(lr_unhex("0001abff7", back, 5), LR_EBADVAL);
    assert_int_equal(lr_unhex("0001abff7f0", back, 5), LR_EBADVAL);
    assert_int_equal(lr_unhex("0001abfg7f", back, 5), LR_EBADVAL);
    assert_int_equal(lr_unhex("-001abff7f", back, 5), LR_EBADVAL);
    lr_hex(in, 0, hex);
    assert_string_equal(hex, "");
    assert_int_equal(lr_unhex("", back, 0), 0);
}

/* ---- xalloc ---- */

/* Appending must keep every element and reallocate O(log N) times: growing
 * by one element per append made a 50 000-record reconciliation quadratic. */
static void test_xappendarray(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint32_t *v = NULL;
    size_t grown = 0, usable = 0;
    for (size_t n = 0; n < N; n++) {
        v = lr_xappendarray(v, n, sizeof(*v));
        size_t u = malloc_usable_size(v);
        assert_true(u >= (n + 1) * sizeof(*v));
        grown += u != usable;
        usable = u;
        v[n] = (uint32_t)n * 2654435761u;
    }
    for (size_t n = 0; n < N; n++)
        assert_int_equal(v[n], (uint32_t)n * 2654435761u);
    assert_true(grown <= 20);
    assert_true(usable <= 2 * (size_t)N * sizeof(*v) + 64);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_long_message_keeps_reason),
        cmocka_unit_test(test_buf_ints),
        cmocka_unit_test(test_buf_varint),
        cmocka_unit_test(test_buf_limit_poison),
        cmocka_unit_test(test_buf_empty_put),
        cmocka_unit_test(test_buf_growth_detach_printf),
        cmocka_unit_test(test_rd_bounds),
        cmocka_unit_test(test_rd_lview_sub),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_lossy),
        cmocka_unit_test(test_esc),
        cmocka_unit_test(test_esc_cut),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_xappendarray),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
