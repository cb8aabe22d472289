/*
 * test_hash.c - SHA-256 wrapper: FIPS 180-2 / NIST vectors, streaming equals
 * one-shot, hex round trip, ordering; the weak check (XXH3 vector, never 0,
 * any one-bit change seen).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hash/hash.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>

static void check_hex(const struct lr_hash *h, const char *want)
{
    char hex[LR_HASH_HEX_LEN + 1];
    lr_hash_hex(h, hex);
    assert_string_equal(hex, want);
}

static void test_vectors(void **state)
{
    (void)state;
    struct lr_hash h;
    lr_sha256("", 0, &h);
    check_hex(&h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    lr_sha256("abc", 3, &h);
    check_hex(&h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    lr_sha256(two, strlen(two), &h);
    check_hex(&h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

    size_t n = 1000000;
    char *a = malloc(n);
    memset(a, 'a', n);
    lr_sha256(a, n, &h);
    check_hex(&h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    /* The same million 'a' streamed 1000 bytes at a time. */
    struct lr_sha256_ctx *c = lr_sha256_new();
    assert_non_null(c);
    for (size_t i = 0; i < n; i += 1000)
        lr_sha256_update(c, a + i, 1000);
    struct lr_hash h2;
    lr_sha256_final(c, &h2);
    lr_sha256_free(c);
    assert_memory_equal(h.b, h2.b, LR_HASH_LEN);
    free(a);
}

static void test_streaming_equals_oneshot(void **state)
{
    (void)state;
    size_t n = 300000;
    uint8_t *p = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
    /* Several lengths (block boundaries 55, 56, 63, 64, 65 matter for padding). */
    static const size_t lens[] = {0, 1, 55, 56, 63, 64, 65, 127, 128, 1000, 300000};
    for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
        size_t len = lens[li];
        struct lr_hash one, str;
        lr_sha256(p, len, &one);
        struct lr_sha256_ctx *c = lr_sha256_new();
        assert_non_null(c);
        size_t off = 0, step = 1;
        while (off < len) {
            size_t k = len - off < step ? len - off : step;
            lr_sha256_update(c, p + off, k);
            off += k;
            step = step * 3 + 1; /* 1, 4, 13, 40, ... irregular pieces */
        }
        lr_sha256_update(c, p, 0);
        lr_sha256_final(c, &str);
        lr_sha256_free(c);
        assert_memory_equal(one.b, str.b, LR_HASH_LEN);
    }
    /* A different input must give a different digest. */
    struct lr_hash a, b;
    lr_sha256(p, 1000, &a);
    p[999] ^= 1;
    lr_sha256(p, 1000, &b);
    assert_int_not_equal(lr_hash_cmp(&a, &b), 0);
    lr_sha256_free(NULL);
    free(p);
}

static void test_hex_roundtrip(void **state)
{
    (void)state;
    struct lr_hash h, back;
    for (int i = 0; i < LR_HASH_LEN; i++)
        h.b[i] = (uint8_t)(i * 37 + 11);
    char hex[LR_HASH_HEX_LEN + 1];
    lr_hash_hex(&h, hex);
    assert_int_equal(strlen(hex), 64);
    assert_int_equal(lr_hash_from_hex(hex, &back), 0);
    assert_int_equal(lr_hash_cmp(&h, &back), 0);

    /* Upper case parses to the same value. */
    for (int i = 0; i < 64; i++)
        if (hex[i] >= 'a' && hex[i] <= 'f')
            hex[i] = (char)(hex[i] - 'a' + 'A');
    assert_int_equal(lr_hash_from_hex(hex, &back), 0);
    assert_int_equal(lr_hash_cmp(&h, &back), 0);

    const char *good = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    assert_int_equal(lr_hash_from_hex(good, &back), 0);
    struct lr_hash empty;
    lr_sha256("", 0, &empty);
    assert_int_equal(lr_hash_cmp(&empty, &back), 0);

    /* 63 and 65 digits, a non-hex digit, an embedded space, empty. */
    char bad[80];
    memcpy(bad, good, 63);
    bad[63] = '\0';
    assert_int_equal(lr_hash_from_hex(bad, &back), LR_EBADVAL);
    memcpy(bad, good, 64);
    bad[64] = '0';
    bad[65] = '\0';
    assert_int_equal(lr_hash_from_hex(bad, &back), LR_EBADVAL);
    memcpy(bad, good, 65);
    bad[10] = 'g';
    assert_int_equal(lr_hash_from_hex(bad, &back), LR_EBADVAL);
    bad[10] = ' ';
    assert_int_equal(lr_hash_from_hex(bad, &back), LR_EBADVAL);
    assert_int_equal(lr_hash_from_hex("", &back), LR_EBADVAL);
}

static void test_cmp_order(void **state)
{
    (void)state;
    struct lr_hash a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    assert_int_equal(lr_hash_cmp(&a, &b), 0);
    b.b[LR_HASH_LEN - 1] = 1;
    assert_true(lr_hash_cmp(&a, &b) < 0);
    a.b[0] = 1;
    assert_true(lr_hash_cmp(&a, &b) > 0);
}

static void test_weak64(void **state)
{
    (void)state;
    /* XXH3-64 with seed 0 of the empty input (xxHash's own sanity vector):
     * the value is stored in index.db, so it must not change with a build. */
    assert_true(lr_weak64("", 0) == 0x2D06800538D394C2ULL);
    uint8_t *p = malloc(70000);
    assert_non_null(p);
    for (size_t i = 0; i < 70000; i++)
        p[i] = (uint8_t)(i * 2654435761u >> 13);
    uint64_t w = lr_weak64(p + 1, 65536);
    assert_true(w != 0);
    uint8_t *q = malloc(65536); /* another alignment, same bytes */
    assert_non_null(q);
    memcpy(q, p + 1, 65536);
    assert_true(lr_weak64(q, 65536) == w);
    for (size_t bit = 0; bit < 65536 * 8; bit += 4099) {
        q[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_true(lr_weak64(q, 65536) != w);
        q[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_true(lr_weak64(p + 1, 65535) != w);
    free(q);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),       cmocka_unit_test(test_streaming_equals_oneshot),
        cmocka_unit_test(test_hex_roundtrip), cmocka_unit_test(test_cmp_order),
        cmocka_unit_test(test_weak64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
