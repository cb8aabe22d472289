/*
 * test_proto_have.c - the HAVE codec (proto/have.h): round trips of both
 * forms checked chunk by chunk against the input bitmap, the encoder's
 * choice of form and its truncation to the buffer, every truncation of a
 * valid payload, one test per validation rule, hostile numbers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "proto/have.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void have_init(struct lr_proto_have *h, const char *path, uint64_t nchunks)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->folder_id, sizeof(h->folder_id), "docs");
    h->path = (const uint8_t *)path;
    h->path_len = strlen(path);
    for (int i = 0; i < LR_HASH_LEN; i++)
        h->blocks_hash.b[i] = (uint8_t)(i * 7 + 1);
    h->nchunks = nchunks;
}

static uint8_t *bits_new(uint64_t n)
{
    return lr_xcalloc((size_t)((n + 7) / 8) + 1, 1);
}

static void bit_set(uint8_t *b, uint64_t k)
{
    b[k >> 3] = (uint8_t)(b[k >> 3] | (1u << (k & 7)));
}

static bool bit_get(const uint8_t *b, uint64_t k)
{
    return (b[k >> 3] >> (k & 7)) & 1;
}

static uint64_t count_bits(const uint8_t *b, uint64_t n)
{
    uint64_t c = 0;
    for (uint64_t k = 0; k < n; k++)
        c += bit_get(b, k);
    return c;
}

/* Decoded chunks as a bitmap, through the iterator; checks the ranges are
 * maximal, in order and inside nchunks. */
static uint8_t *decoded_bits(const struct lr_proto_have *h)
{
    uint8_t *b = bits_new(h->nchunks);
    struct lr_proto_have_it it;
    uint64_t first, count, prev_end = 0, total = 0;
    bool any = false;
    lr_proto_have_iter(h, &it);
    while (lr_proto_have_next(h, &it, &first, &count)) {
        assert_true(count > 0);
        if (any)
            assert_true(first > prev_end); /* disjoint and not adjacent */
        assert_true(first + count <= h->nchunks);
        for (uint64_t k = first; k < first + count; k++)
            bit_set(b, k);
        prev_end = first + count;
        total += count;
        any = true;
    }
    assert_int_equal(total, h->nheld);
    return b;
}

static void round_trip(const char *path, uint64_t n, const uint8_t *bits, size_t max,
                       enum lr_proto_have_form want_form)
{
    struct lr_proto_have h, d;
    have_init(&h, path, n);
    struct lr_buf b;
    lr_buf_init(&b, max);
    uint64_t sent = 99;
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, &sent), 0);
    assert_true(lr_buf_ok(&b));
    struct lr_err err = {0};
    assert_int_equal(lr_proto_have_decode(b.data, b.len, &d, &err), 0);
    assert_int_equal(d.form, want_form);
    assert_string_equal(d.folder_id, "docs");
    assert_int_equal(d.path_len, strlen(path));
    assert_memory_equal(d.path, path, d.path_len);
    assert_memory_equal(&d.blocks_hash, &h.blocks_hash, LR_HASH_LEN);
    assert_int_equal(d.nchunks, n);
    assert_int_equal(d.nheld, sent);
    uint8_t *got = decoded_bits(&d);
    /* Everything announced is held; untruncated, everything held is announced. */
    for (uint64_t k = 0; k < n; k++) {
        if (bit_get(got, k))
            assert_true(bit_get(bits, k));
    }
    if (sent == count_bits(bits, n))
        for (uint64_t k = 0; k < n; k++)
            assert_int_equal(bit_get(got, k), bit_get(bits, k));
    free(got);
    lr_buf_release(&b);
}

static void test_round_trip_prefix_uses_ranges(void **state)
{
    (void)state;
    uint64_t n = 5000;
    uint8_t *bits = bits_new(n);
    for (uint64_t k = 0; k < 1234; k++)
        bit_set(bits, k);
    round_trip("a/big.bin", n, bits, LR_PROTO_HAVE_MAX, LR_PROTO_HAVE_RANGES);
    /* A sequential download costs a few bytes, whatever the file's size. */
    struct lr_proto_have h;
    have_init(&h, "a/big.bin", n);
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_HAVE_MAX);
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), 0);
    assert_true(b.len < 64);
    lr_buf_release(&b);
    free(bits);
}

static void test_round_trip_random_uses_bitmap(void **state)
{
    (void)state;
    uint64_t seed = 42;
    for (uint64_t n = 1; n < 300; n += 7) {
        uint8_t *bits = bits_new(n);
        for (uint64_t k = 0; k < n; k++)
            if (rng_next(&seed) & 1)
                bit_set(bits, k);
        struct lr_proto_have h;
        have_init(&h, "f", n);
        struct lr_buf b;
        lr_buf_init(&b, LR_PROTO_HAVE_MAX);
        assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), 0);
        struct lr_proto_have d;
        assert_int_equal(lr_proto_have_decode(b.data, b.len, &d, NULL), 0);
        lr_buf_release(&b);
        round_trip("f", n, bits, LR_PROTO_HAVE_MAX, d.form);
        free(bits);
    }
    /* Half the chunks at random in a big file: the bitmap is smaller. */
    uint64_t n = 40000;
    uint8_t *bits = bits_new(n);
    for (uint64_t k = 0; k < n; k++)
        if (rng_next(&seed) & 1)
            bit_set(bits, k);
    round_trip("f", n, bits, LR_PROTO_HAVE_MAX, LR_PROTO_HAVE_BITMAP);
    free(bits);
}

static void test_empty_and_full(void **state)
{
    (void)state;
    uint8_t *bits = bits_new(100);
    round_trip("x", 100, bits, LR_PROTO_HAVE_MAX, LR_PROTO_HAVE_RANGES); /* nothing held */
    for (uint64_t k = 0; k < 100; k++)
        bit_set(bits, k);
    round_trip("x", 100, bits, LR_PROTO_HAVE_MAX, LR_PROTO_HAVE_RANGES);
    free(bits);
    bits = bits_new(1);
    bit_set(bits, 0);
    round_trip("x", 1, bits, LR_PROTO_HAVE_MAX, LR_PROTO_HAVE_BITMAP); /* 1 byte vs 2 */
    free(bits);
}

static void test_encoder_ignores_bits_past_end(void **state)
{
    (void)state;
    uint8_t bits[2] = {0x55, 0xff}; /* 10 chunks: bits 10..15 set but not chunks */
    struct lr_proto_have h, d;
    have_init(&h, "p", 10);
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_HAVE_MAX);
    uint64_t sent;
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, &sent), 0);
    assert_int_equal(lr_proto_have_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(sent, 6); /* 0,2,4,6,8,9 */
    assert_int_equal(d.nheld, 6);
    uint8_t *got = decoded_bits(&d);
    assert_int_equal(got[0], 0x55);
    assert_int_equal(got[1], 0x03);
    free(got);
    lr_buf_release(&b);
}

/* Neither form fits: a prefix of the ranges is announced. */
static void test_encoder_truncates_to_fit(void **state)
{
    (void)state;
    uint64_t n = 1u << 20; /* bitmap 128 KiB: over the message limit */
    uint8_t *bits = bits_new(n);
    for (uint64_t k = 0; k < n; k += 3)
        bit_set(bits, k); /* isolated chunks: ranges cost ~2 bytes each */
    for (size_t max = 100; max <= LR_PROTO_HAVE_MAX; max = max * 3 + 17) {
        struct lr_proto_have h, d;
        have_init(&h, "dir/file", n);
        struct lr_buf b;
        lr_buf_init(&b, max);
        uint64_t sent;
        assert_int_equal(lr_proto_have_encode(&h, bits, &b, &sent), 0);
        assert_true(b.len <= max);
        assert_true(sent > 0);
        assert_true(sent < n / 3);
        assert_int_equal(lr_proto_have_decode(b.data, b.len, &d, NULL), 0);
        assert_int_equal(d.form, LR_PROTO_HAVE_RANGES);
        assert_int_equal(d.nheld, sent);
        uint8_t *got = decoded_bits(&d);
        /* The announced ones are exactly the first `sent` held chunks. */
        uint64_t seen = 0;
        for (uint64_t k = 0; k < n; k += 3) {
            assert_int_equal(bit_get(got, k), seen < sent);
            seen++;
        }
        assert_int_equal(count_bits(got, n), sent);
        free(got);
        lr_buf_release(&b);
    }
    /* Not even the header fits: ETOOBIG, buffer poisoned. */
    struct lr_proto_have h;
    have_init(&h, "dir/file", n);
    struct lr_buf b;
    lr_buf_init(&b, 10);
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), LR_ETOOBIG);
    assert_false(lr_buf_ok(&b));
    lr_buf_release(&b);
    /* Header (folder 5, path 9, hash 33, nchunks 4 bytes) and the form fit,
     * not a count: ETOOBIG; one byte more: a valid HAVE announcing nothing. */
    size_t header = 5 + 9 + 33 + 4;
    lr_buf_init(&b, header + 1);
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), LR_ETOOBIG);
    lr_buf_release(&b);
    lr_buf_init(&b, header + 2);
    uint64_t sent = 1;
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, &sent), 0);
    assert_int_equal(sent, 0);
    struct lr_proto_have d;
    assert_int_equal(lr_proto_have_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(d.nheld, 0);
    lr_buf_release(&b);
    free(bits);
}

static void test_encoder_rejects_invalid(void **state)
{
    (void)state;
    uint8_t bits[1] = {1};
    struct lr_proto_have h;
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_HAVE_MAX);
    have_init(&h, "f", 1);
    h.folder_id[0] = '\0';
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), LR_EBADVAL);
    have_init(&h, "f", 1);
    snprintf(h.folder_id, sizeof(h.folder_id), "..");
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), LR_EBADVAL);
    have_init(&h, "../f", 1);
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), LR_EBADVAL);
    have_init(&h, "f", 0);
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), LR_EBADVAL);
    have_init(&h, "f", LR_INDEX_CHUNKS_MAX + 1);
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), LR_EBADVAL);
    have_init(&h, "f", 1);
    assert_int_equal(lr_proto_have_encode(&h, NULL, &b, NULL), LR_EBADVAL);
    have_init(&h, "f", 1);
    h.path = NULL;
    assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), LR_EBADVAL);
    assert_int_equal(b.len, 0);
    assert_true(lr_buf_ok(&b));
    lr_buf_release(&b);
}

/* ---- decoder ---- */

/* A payload built field by field. */
struct msg {
    struct lr_buf b;
};

static void msg_head(struct msg *m, const char *folder, const char *path, size_t hash_len,
                     uint64_t nchunks)
{
    lr_buf_init(&m->b, 1u << 24);
    assert_int_equal(lr_buf_put_lbytes(&m->b, folder, strlen(folder)), 0);
    assert_int_equal(lr_buf_put_lbytes(&m->b, path, strlen(path)), 0);
    uint8_t h[40];
    memset(h, 0xab, sizeof(h));
    assert_int_equal(lr_buf_put_lbytes(&m->b, h, hash_len), 0);
    assert_int_equal(lr_buf_put_varint(&m->b, nchunks), 0);
}

static void put(struct msg *m, uint64_t v)
{
    assert_int_equal(lr_buf_put_varint(&m->b, v), 0);
}

static void expect_fail(struct msg *m, int code, const char *needle)
{
    struct lr_proto_have h;
    struct lr_err err = {0};
    memset(&h, 0x5a, sizeof(h));
    int rc = lr_proto_have_decode(m->b.data, m->b.len, &h, &err);
    assert_int_equal(rc, code);
    assert_int_equal(err.code, code);
    assert_true(rc <= LR_E__FATAL_PEER);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    /* Nothing filled on failure. */
    assert_int_equal(h.nchunks, 0);
    assert_null(h.path);
    lr_buf_release(&m->b);
}

static void expect_ok(struct msg *m, uint64_t nheld)
{
    struct lr_proto_have h;
    struct lr_err err = {0};
    int rc = lr_proto_have_decode(m->b.data, m->b.len, &h, &err);
    if (rc != 0)
        fail_msg("decode failed: %s", err.msg);
    assert_int_equal(h.nheld, nheld);
    free(decoded_bits(&h));
    lr_buf_release(&m->b);
}

static void test_decode_header_rules(void **state)
{
    (void)state;
    struct msg m;
    msg_head(&m, "", "f", 32, 1);
    expect_fail(&m, LR_EBADVAL, "have.folder");
    msg_head(&m, "a/b", "f", 32, 1);
    expect_fail(&m, LR_EBADVAL, "have.folder");
    msg_head(&m, "docs", "../x", 32, 1);
    expect_fail(&m, LR_EBADVAL, "have.path");
    msg_head(&m, "docs", "/etc/x", 32, 1);
    expect_fail(&m, LR_EBADVAL, "have.path");
    msg_head(&m, "docs", "a//b", 32, 1);
    expect_fail(&m, LR_EBADVAL, "have.path");
    msg_head(&m, "docs", "f", 31, 1);
    expect_fail(&m, LR_EBADVAL, "have.blocks_hash");
    msg_head(&m, "docs", "f", 33, 1);
    expect_fail(&m, LR_EBADVAL, "have.blocks_hash");
    msg_head(&m, "docs", "f", 32, 0);
    put(&m, 1);
    put(&m, 0);
    expect_fail(&m, LR_EBADVAL, "have.nchunks");
    msg_head(&m, "docs", "f", 32, LR_INDEX_CHUNKS_MAX + 1);
    put(&m, 1);
    put(&m, 0);
    expect_fail(&m, LR_EBADVAL, "have.nchunks");
    msg_head(&m, "docs", "f", 32, 8);
    put(&m, 2); /* unknown form */
    expect_fail(&m, LR_EBADVAL, "have.form");
    msg_head(&m, "docs", "f", 32, 8);
    put(&m, LR_VARINT_MAX);
    expect_fail(&m, LR_EBADVAL, "have.form");
    /* A path over the limit. */
    char *longp = lr_xmalloc(LR_INDEX_PATH_MAX + 2);
    memset(longp, 'a', LR_INDEX_PATH_MAX + 1);
    longp[LR_INDEX_PATH_MAX + 1] = '\0';
    msg_head(&m, "docs", longp, 32, 1);
    expect_fail(&m, LR_ETOOBIG, "have.path");
    free(longp);
}

static void test_decode_bitmap_rules(void **state)
{
    (void)state;
    struct msg m;
    uint8_t map[3] = {0xff, 0x0f, 0x01};
    /* 17 chunks: 3 bytes, bit 16 is the last chunk. */
    msg_head(&m, "docs", "f", 32, 17);
    put(&m, 0);
    assert_int_equal(lr_buf_put_lbytes(&m.b, map, 3), 0);
    expect_ok(&m, 13);
    /* A bit past the end. */
    map[2] = 0x02;
    msg_head(&m, "docs", "f", 32, 17);
    put(&m, 0);
    assert_int_equal(lr_buf_put_lbytes(&m.b, map, 3), 0);
    expect_fail(&m, LR_EBADVAL, "past 17");
    /* Wrong lengths, both ways. */
    msg_head(&m, "docs", "f", 32, 17);
    put(&m, 0);
    assert_int_equal(lr_buf_put_lbytes(&m.b, map, 2), 0);
    expect_fail(&m, LR_EBADVAL, "have.bitmap");
    msg_head(&m, "docs", "f", 32, 16);
    put(&m, 0);
    assert_int_equal(lr_buf_put_lbytes(&m.b, map, 3), 0);
    expect_fail(&m, LR_EBADVAL, "have.bitmap");
    /* Declared right, bytes missing. */
    msg_head(&m, "docs", "f", 32, 17);
    put(&m, 0);
    put(&m, 3);
    assert_int_equal(lr_buf_put(&m.b, map, 2), 0);
    expect_fail(&m, LR_ETRUNC, "have.bitmap");
    /* A huge declared count with a matching huge length: refused by the
     * remaining bytes, nothing allocated. */
    msg_head(&m, "docs", "f", 32, LR_INDEX_CHUNKS_MAX);
    put(&m, 0);
    put(&m, LR_INDEX_CHUNKS_MAX / 8);
    expect_fail(&m, LR_ETRUNC, "have.bitmap");
    /* Multiple of 8: every bit usable. */
    msg_head(&m, "docs", "f", 32, 16);
    put(&m, 0);
    assert_int_equal(lr_buf_put_lbytes(&m.b, "\xff\xff", 2), 0);
    expect_ok(&m, 16);
}

static void test_decode_ranges_rules(void **state)
{
    (void)state;
    struct msg m;
    /* [0,3) [5,6) [9,10): skip 0 len 3, skip 2 len 1, skip 3 len 1 */
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, 3);
    put(&m, 0), put(&m, 3), put(&m, 2), put(&m, 1), put(&m, 3), put(&m, 1);
    expect_ok(&m, 5);
    /* Trailing bytes are ignored. */
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, 1);
    put(&m, 4), put(&m, 6), put(&m, 77);
    expect_ok(&m, 6);
    /* Adjacent ranges (not canonical). */
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, 2);
    put(&m, 0), put(&m, 3), put(&m, 0), put(&m, 1);
    expect_fail(&m, LR_EBADVAL, "adjacent");
    /* Empty range. */
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, 1);
    put(&m, 2), put(&m, 0);
    expect_fail(&m, LR_EBADVAL, "empty");
    /* Past the end: by the length, by the skip, exactly at the end is fine. */
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, 1);
    put(&m, 5), put(&m, 6);
    expect_fail(&m, LR_EBADVAL, "past 10");
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, 2);
    put(&m, 0), put(&m, 1), put(&m, 10), put(&m, 1);
    expect_fail(&m, LR_EBADVAL, "past 10");
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, 1);
    put(&m, 9), put(&m, 1);
    expect_ok(&m, 1);
    /* Hostile numbers: no overflow of end + skip + len. */
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, 2);
    put(&m, 0), put(&m, 5), put(&m, LR_VARINT_MAX), put(&m, LR_VARINT_MAX);
    expect_fail(&m, LR_EBADVAL, "past 10");
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, 1);
    put(&m, 1), put(&m, LR_VARINT_MAX);
    expect_fail(&m, LR_EBADVAL, "past 10");
    /* A count far above what the bytes can hold: refused before the walk. */
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, LR_VARINT_MAX);
    put(&m, 0), put(&m, 1);
    expect_fail(&m, LR_ETRUNC, "have.nranges");
    msg_head(&m, "docs", "f", 32, 10);
    put(&m, 1);
    put(&m, 3);
    put(&m, 0), put(&m, 1), put(&m, 1), put(&m, 1), put(&m, 1);
    expect_fail(&m, LR_ETRUNC, "have.nranges");
    /* A range cut in its second varint. */
    msg_head(&m, "docs", "f", 32, 1000);
    put(&m, 1);
    put(&m, 1);
    put(&m, 0);
    assert_int_equal(lr_buf_put_u8(&m.b, 0x41), 0); /* 2-byte varint, 1 byte present */
    expect_fail(&m, LR_ETRUNC, "have.range 0");
    /* The largest file, one range: fine and cheap. */
    msg_head(&m, "docs", "f", 32, LR_INDEX_CHUNKS_MAX);
    put(&m, 1);
    put(&m, 1);
    put(&m, 0), put(&m, LR_INDEX_CHUNKS_MAX);
    expect_ok(&m, LR_INDEX_CHUNKS_MAX);
}

/* Every strict prefix of a valid payload fails with a drop-the-peer code. */
static void test_every_truncation(void **state)
{
    (void)state;
    uint64_t n = 50;
    uint8_t *bits = bits_new(n);
    for (uint64_t k = 0; k < n; k += 5)
        bit_set(bits, k);
    bit_set(bits, 1);
    for (int form = 0; form < 2; form++) {
        struct lr_proto_have h;
        have_init(&h, "some/path", form ? n : 12);
        struct lr_buf b;
        lr_buf_init(&b, LR_PROTO_HAVE_MAX);
        assert_int_equal(lr_proto_have_encode(&h, bits, &b, NULL), 0);
        struct lr_proto_have d;
        assert_int_equal(lr_proto_have_decode(b.data, b.len, &d, NULL), 0);
        for (size_t cut = 0; cut < b.len; cut++) {
            struct lr_err err = {0};
            int rc = lr_proto_have_decode(b.data, cut, &d, &err);
            assert_true(rc < 0);
            assert_true(rc <= LR_E__FATAL_PEER);
            assert_true(err.msg[0] != '\0');
        }
        lr_buf_release(&b);
    }
    free(bits);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_prefix_uses_ranges),
        cmocka_unit_test(test_round_trip_random_uses_bitmap),
        cmocka_unit_test(test_empty_and_full),
        cmocka_unit_test(test_encoder_ignores_bits_past_end),
        cmocka_unit_test(test_encoder_truncates_to_fit),
        cmocka_unit_test(test_encoder_rejects_invalid),
        cmocka_unit_test(test_decode_header_rules),
        cmocka_unit_test(test_decode_bitmap_rules),
        cmocka_unit_test(test_decode_ranges_rules),
        cmocka_unit_test(test_every_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
