/*
 * test_proto.c - frames (put + incremental reader) and the Hello/Close codecs,
 * including byte-at-a-time feeding, split headers and hostile lengths.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "proto/proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TYPE_UNKNOWN 0x3fabu /* not in the registry */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Raw header with chosen encodings, for frames our own encoder refuses. */
static void put_raw_header(struct lr_buf *b, uint64_t type, uint64_t len)
{
    assert_int_equal(lr_buf_put_varint(b, type), 0);
    assert_int_equal(lr_buf_put_varint(b, len), 0);
}

static void test_registry(void **state)
{
    (void)state;
    assert_int_equal(lr_proto_max_payload(LR_MSG_HELLO), LR_PROTO_HELLO_MAX);
    assert_int_equal(lr_proto_max_payload(LR_MSG_PING), LR_PROTO_PING_MAX);
    assert_int_equal(lr_proto_max_payload(LR_MSG_CLOSE), LR_PROTO_CLOSE_MAX);
    assert_int_equal(lr_proto_max_payload(0), 0);
    assert_int_equal(lr_proto_max_payload(TYPE_UNKNOWN), 0);
    assert_int_equal(lr_proto_max_payload(LR_VARINT_MAX), 0);
    assert_int_equal(lr_proto_max_payload(UINT64_MAX), 0);
    assert_string_equal(lr_proto_type_name(LR_MSG_HELLO), "HELLO");
    assert_string_equal(lr_proto_type_name(LR_MSG_CLOSE), "CLOSE");
    assert_string_equal(lr_proto_type_name(TYPE_UNKNOWN), "unknown");
    /* Every known type fits the reader's buffer. */
    for (uint64_t t = 0; t < 4096; t++)
        assert_true(lr_proto_max_payload(t) <= LR_PROTO_FRAME_MAX);
}

static void test_frame_put(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 1 << 22);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_PING, "abc", 3), 0);
    static const uint8_t want[] = {0x02, 0x03, 'a', 'b', 'c'};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));

    /* Zero-length payload, NULL allowed. */
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_PING, NULL, 0), 0);
    assert_int_equal(b.len, 2);

    /* Two-byte varints: type 0x3fab, length 300. */
    lr_buf_reset(&b);
    uint8_t pay[300];
    memset(pay, 7, sizeof(pay));
    assert_int_equal(lr_proto_frame_put(&b, TYPE_UNKNOWN, pay, sizeof(pay)), 0);
    static const uint8_t hdr[] = {0x7f, 0xab, 0x41, 0x2c};
    assert_int_equal(b.len, 4 + 300);
    assert_memory_equal(b.data, hdr, 4);

    lr_buf_reset(&b);
    assert_int_equal(lr_proto_frame_put(&b, 0, "x", 1), LR_EBADVAL);
    assert_int_equal(lr_proto_frame_put(&b, LR_VARINT_MAX + 1, "x", 1), LR_EBADVAL);
    uint8_t *big = calloc(1, LR_PROTO_UNKNOWN_MAX + 1);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_HELLO, big, LR_PROTO_HELLO_MAX + 1), LR_ETOOBIG);
    assert_int_equal(lr_proto_frame_put(&b, TYPE_UNKNOWN, big, LR_PROTO_UNKNOWN_MAX + 1),
                     LR_ETOOBIG);
    assert_int_equal(lr_proto_frame_put(&b, TYPE_UNKNOWN, big, LR_PROTO_UNKNOWN_MAX), 0);
    assert_int_equal(b.len, 4 + 2 + LR_PROTO_UNKNOWN_MAX);
    free(big);
    assert_true(lr_buf_ok(&b));
    lr_buf_release(&b);

    /* A full buffer takes none of the frame and is poisoned. */
    lr_buf_init(&b, 10);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_PING, "abcdef", 6), 0);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_PING, "abc", 3), LR_ETOOBIG);
    assert_int_equal(b.len, 8);
    assert_false(lr_buf_ok(&b));
    lr_buf_release(&b);
}

struct frame {
    uint64_t type;
    size_t len;
    uint8_t fill;
};

/* The test stream: known frames, unknown frames (to be skipped), empty ones. */
static const struct frame stream_frames[] = {
    {LR_MSG_HELLO, 40, 1},   {LR_MSG_PING, 0, 0},
    {TYPE_UNKNOWN, 1000, 2}, {LR_MSG_CLOSE, LR_PROTO_CLOSE_MAX, 3},
    {TYPE_UNKNOWN, 0, 0},    {LR_VARINT_MAX, 70000, 4}, /* 8-byte type varint, unknown */
    {LR_MSG_PING, 1, 5},     {LR_MSG_HELLO, LR_PROTO_HELLO_MAX, 6},
    {LR_MSG_PING, 63, 7},    {LR_MSG_PING, 64, 8},
};
#define NFRAMES (sizeof(stream_frames) / sizeof(stream_frames[0]))

static void build_stream(struct lr_buf *b)
{
    lr_buf_init(b, 1 << 22);
    for (size_t i = 0; i < NFRAMES; i++) {
        uint8_t *pay = malloc(stream_frames[i].len + 1);
        for (size_t j = 0; j < stream_frames[i].len; j++)
            pay[j] = (uint8_t)(stream_frames[i].fill + j);
        assert_int_equal(lr_proto_frame_put(b, stream_frames[i].type, pay, stream_frames[i].len),
                         0);
        free(pay);
    }
}

/* Feed the stream in pieces whose sizes come from next_piece(); check that
 * exactly the known frames come out, in order, with their payloads. */
static void feed_stream(size_t (*next_piece)(uint64_t *), uint64_t seed)
{
    struct lr_buf s;
    build_stream(&s);
    struct lr_frame_reader r;
    lr_frame_reader_init(&r);
    size_t want = 0, off = 0;
    uint64_t rs = seed;
    while (off < s.len) {
        size_t piece = next_piece(&rs);
        if (piece > s.len - off)
            piece = s.len - off;
        size_t used = 0;
        while (used < piece) {
            size_t c;
            int rc = lr_frame_reader_feed(&r, s.data + off + used, piece - used, &c, NULL);
            assert_true(rc == 0 || rc == 1);
            used += c;
            if (rc == 0) {
                assert_int_equal(used, piece);
                break;
            }
            /* Skip the unknown frames in the expectation. */
            while (lr_proto_max_payload(stream_frames[want].type) == 0)
                want++;
            uint64_t type;
            const uint8_t *pay;
            size_t len;
            assert_int_equal(lr_frame_reader_take(&r, &type, &pay, &len), 0);
            assert_int_equal(type, stream_frames[want].type);
            assert_int_equal(len, stream_frames[want].len);
            assert_non_null(pay);
            for (size_t j = 0; j < len; j++)
                assert_int_equal(pay[j], (uint8_t)(stream_frames[want].fill + j));
            want++;
            assert_int_equal(lr_frame_reader_take(&r, &type, &pay, &len), LR_ENOTFOUND);
        }
        off += piece;
        /* Unknown payloads are never buffered, header + largest known frame only. */
        assert_true(r.acc.cap <= LR_PROTO_HELLO_MAX);
    }
    while (want < NFRAMES && lr_proto_max_payload(stream_frames[want].type) == 0)
        want++;
    assert_int_equal(want, NFRAMES);
    assert_false(r.ready);
    lr_frame_reader_release(&r);
    lr_buf_release(&s);
}

static size_t piece_one(uint64_t *s)
{
    (void)s;
    return 1;
}

static size_t piece_all(uint64_t *s)
{
    (void)s;
    return SIZE_MAX;
}

static size_t piece_random(uint64_t *s)
{
    uint64_t r = rng_next(s);
    return (r & 1) ? 1 + (size_t)(r >> 1) % 5 : 1 + (size_t)(r >> 1) % 3000;
}

static void test_reader_byte_at_a_time(void **state)
{
    (void)state;
    feed_stream(piece_one, 0);
}

static void test_reader_whole(void **state)
{
    (void)state;
    feed_stream(piece_all, 0);
}

static void test_reader_random_pieces(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 50; seed++)
        feed_stream(piece_random, seed);
}

/* A 16-byte header (8-byte type and length varints) split at every point. */
static void test_reader_split_header(void **state)
{
    (void)state;
    uint8_t f[16 + 3];
    /* type 1 (HELLO) and length 3, both in non-minimal 8-byte form. */
    memset(f, 0, sizeof(f));
    f[0] = 0xc0;
    f[7] = 0x01;
    f[8] = 0xc0;
    f[15] = 0x03;
    f[16] = 'x';
    f[17] = 'y';
    f[18] = 'z';
    for (size_t a = 0; a <= sizeof(f); a++) {
        for (size_t b = a; b <= sizeof(f); b++) {
            struct lr_frame_reader r;
            lr_frame_reader_init(&r);
            size_t c, tot = 0;
            int rc = lr_frame_reader_feed(&r, f, a, &c, NULL);
            tot += c;
            if (rc == 0)
                rc = lr_frame_reader_feed(&r, f + a, b - a, &c, NULL), tot += c;
            if (rc == 0)
                rc = lr_frame_reader_feed(&r, f + b, sizeof(f) - b, &c, NULL), tot += c;
            assert_int_equal(rc, 1);
            assert_int_equal(tot, sizeof(f));
            uint64_t type;
            const uint8_t *p;
            size_t len;
            assert_int_equal(lr_frame_reader_take(&r, &type, &p, &len), 0);
            assert_int_equal(type, LR_MSG_HELLO);
            assert_int_equal(len, 3);
            assert_memory_equal(p, "xyz", 3);
            lr_frame_reader_release(&r);
        }
    }
}

static void test_reader_steal(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 1024);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_PING, "abcdef", 6), 0);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_PING, NULL, 0), 0);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_PING, "xyz", 3), 0);
    struct lr_frame_reader r;
    lr_frame_reader_init(&r);
    size_t c, off = 0;
    uint64_t type;
    const uint8_t *p;
    size_t len;
    /* Nothing taken yet: nothing to steal. */
    assert_null(lr_frame_reader_steal(&r));
    assert_int_equal(lr_frame_reader_feed(&r, b.data, b.len, &c, NULL), 1);
    off += c;
    assert_null(lr_frame_reader_steal(&r)); /* ready, not taken */
    assert_int_equal(lr_frame_reader_take(&r, &type, &p, &len), 0);
    uint8_t *own = lr_frame_reader_steal(&r);
    assert_ptr_equal(own, p);
    assert_null(lr_frame_reader_steal(&r)); /* once */
    /* The next frames go into a new buffer: the stolen bytes stay. */
    assert_int_equal(lr_frame_reader_feed(&r, b.data + off, b.len - off, &c, NULL), 1);
    off += c;
    assert_int_equal(lr_frame_reader_take(&r, &type, &p, &len), 0);
    assert_int_equal(len, 0);
    assert_null(lr_frame_reader_steal(&r)); /* empty payload */
    assert_int_equal(lr_frame_reader_feed(&r, b.data + off, b.len - off, &c, NULL), 1);
    assert_int_equal(lr_frame_reader_take(&r, &type, &p, &len), 0);
    assert_memory_equal(p, "xyz", 3);
    assert_memory_equal(own, "abcdef", 6);
    free(own);
    /* A feed after the take ends the chance to steal it. */
    assert_int_equal(lr_frame_reader_feed(&r, NULL, 0, &c, NULL), 0);
    assert_null(lr_frame_reader_steal(&r));
    lr_frame_reader_release(&r);
    lr_buf_release(&b);
}

static void test_reader_zero_length_and_ready(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 1024);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_PING, NULL, 0), 0);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_PING, "q", 1), 0);
    struct lr_frame_reader r;
    lr_frame_reader_init(&r);
    size_t c;
    uint64_t type;
    const uint8_t *p;
    size_t len;
    assert_int_equal(lr_frame_reader_take(&r, &type, &p, &len), LR_ENOTFOUND);
    assert_null(p);
    assert_int_equal(lr_frame_reader_feed(&r, b.data, b.len, &c, NULL), 1);
    assert_int_equal(c, 2);
    /* Not taken yet: feeding again consumes nothing. */
    assert_int_equal(lr_frame_reader_feed(&r, b.data + c, b.len - c, &c, NULL), 1);
    assert_int_equal(c, 0);
    assert_int_equal(lr_frame_reader_take(&r, &type, &p, &len), 0);
    assert_int_equal(type, LR_MSG_PING);
    assert_int_equal(len, 0);
    assert_non_null(p);
    assert_int_equal(lr_frame_reader_feed(&r, b.data + 2, b.len - 2, &c, NULL), 1);
    assert_int_equal(c, 3);
    assert_int_equal(lr_frame_reader_take(&r, &type, &p, &len), 0);
    assert_int_equal(len, 1);
    assert_int_equal(p[0], 'q');
    /* Empty feeds are harmless. */
    assert_int_equal(lr_frame_reader_feed(&r, NULL, 0, &c, NULL), 0);
    assert_int_equal(c, 0);
    lr_frame_reader_release(&r);
    lr_buf_release(&b);
}

/* A header alone must fail with `code` and a message containing `needle`;
 * the failure is sticky and nothing big was allocated. */
static void expect_header_fails(uint64_t type, uint64_t len, int code, const char *needle)
{
    struct lr_buf b;
    lr_buf_init(&b, 64);
    put_raw_header(&b, type, len);
    assert_int_equal(lr_buf_put(&b, "tail", 4), 0);
    struct lr_frame_reader r;
    lr_frame_reader_init(&r);
    struct lr_err err;
    lr_err_clear(&err);
    size_t c;
    int rc = 0;
    /* Byte at a time, so the error comes exactly at the end of the header. */
    size_t fed = 0;
    while (rc == 0 && fed < b.len) {
        rc = lr_frame_reader_feed(&r, b.data + fed, 1, &c, &err);
        fed++;
    }
    assert_int_equal(rc, code);
    assert_int_equal(fed, lr_varint_len(type) + lr_varint_len(len));
    assert_int_equal(err.code, code);
    assert_non_null(strstr(err.msg, needle));
    assert_true(r.acc.cap <= 64);
    assert_int_equal(lr_frame_reader_feed(&r, (const uint8_t *)"x", 1, &c, NULL), code);
    assert_int_equal(c, 0);
    uint64_t t;
    const uint8_t *p;
    size_t l;
    assert_int_equal(lr_frame_reader_take(&r, &t, &p, &l), LR_ENOTFOUND);
    lr_frame_reader_release(&r);
    lr_buf_release(&b);
}

static void test_reader_oversize(void **state)
{
    (void)state;
    char num[32];
    snprintf(num, sizeof(num), "length %u", LR_PROTO_HELLO_MAX + 1);
    expect_header_fails(LR_MSG_HELLO, LR_PROTO_HELLO_MAX + 1, LR_ETOOBIG, num);
    expect_header_fails(LR_MSG_HELLO, LR_PROTO_HELLO_MAX + 1, LR_ETOOBIG, "HELLO");
    expect_header_fails(LR_MSG_PING, LR_PROTO_PING_MAX + 1, LR_ETOOBIG, "PING");
    expect_header_fails(LR_MSG_CLOSE, UINT32_MAX, LR_ETOOBIG, "length 4294967295");
    expect_header_fails(LR_MSG_CLOSE, LR_VARINT_MAX, LR_ETOOBIG, "length 4611686018427387903");
    expect_header_fails(TYPE_UNKNOWN, LR_PROTO_UNKNOWN_MAX + 1, LR_ETOOBIG, "unknown type 0x3fab");
    expect_header_fails(TYPE_UNKNOWN, UINT32_MAX, LR_ETOOBIG, "length 4294967295");
    expect_header_fails(LR_VARINT_MAX, LR_VARINT_MAX, LR_ETOOBIG, "0x3fffffffffffffff");
    expect_header_fails(0, 5, LR_EPROTO, "type 0");
    expect_header_fails(0, 0, LR_EPROTO, "type 0");
}

/* The largest allowed lengths are accepted; a frame cut short stays pending. */
static void test_reader_limits_and_truncated(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 1 << 22);
    uint8_t *big = calloc(1, LR_PROTO_UNKNOWN_MAX);
    assert_int_equal(lr_proto_frame_put(&b, TYPE_UNKNOWN, big, LR_PROTO_UNKNOWN_MAX), 0);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_HELLO, big, LR_PROTO_HELLO_MAX), 0);
    free(big);
    struct lr_frame_reader r;
    lr_frame_reader_init(&r);
    size_t c;
    /* All but the last byte: the unknown frame is skipped, HELLO is pending. */
    assert_int_equal(lr_frame_reader_feed(&r, b.data, b.len - 1, &c, NULL), 0);
    assert_int_equal(c, b.len - 1);
    assert_true(r.acc.cap <= LR_PROTO_HELLO_MAX);
    uint64_t t;
    const uint8_t *p;
    size_t l;
    assert_int_equal(lr_frame_reader_take(&r, &t, &p, &l), LR_ENOTFOUND);
    assert_int_equal(lr_frame_reader_feed(&r, b.data + b.len - 1, 1, &c, NULL), 1);
    assert_int_equal(lr_frame_reader_take(&r, &t, &p, &l), 0);
    assert_int_equal(t, LR_MSG_HELLO);
    assert_int_equal(l, LR_PROTO_HELLO_MAX);
    lr_frame_reader_release(&r);

    /* A truncated header stays pending too (the stream's end is the caller's
     * to judge): 1 byte of a 2-byte type. */
    lr_frame_reader_init(&r);
    assert_int_equal(lr_frame_reader_feed(&r, (const uint8_t *)"\x7f", 1, &c, NULL), 0);
    assert_int_equal(c, 1);
    assert_int_equal(lr_frame_reader_take(&r, &t, &p, &l), LR_ENOTFOUND);
    lr_frame_reader_release(&r);
    lr_buf_release(&b);
}

static void fill_hello(struct lr_proto_hello *h)
{
    memset(h, 0, sizeof(*h));
    h->version = LR_PROTO_VERSION;
    snprintf(h->name, sizeof(h->name), "laptop");
    snprintf(h->software, sizeof(h->software), "landropic 0.1.0");
    h->features = 5;
}

static void test_hello_roundtrip(void **state)
{
    (void)state;
    struct lr_proto_hello h, d;
    fill_hello(&h);
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_HELLO_MAX);
    assert_int_equal(lr_proto_hello_encode(&h, &b), 0);
    static const uint8_t want[] = {0x01, 0x06, 'l', 'a', 'p', 't', 'o', 'p', 0x0f,
                                   'l',  'a',  'n', 'd', 'r', 'o', 'p', 'i', 'c',
                                   ' ',  '0',  '.', '1', '.', '0', 0x05};
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    assert_int_equal(lr_proto_hello_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(d.version, 1);
    assert_string_equal(d.name, "laptop");
    assert_string_equal(d.software, "landropic 0.1.0");
    assert_int_equal(d.features, 5);

    /* Extremes: 64-byte UTF-8 name, empty software, largest values. */
    memset(h.name, 0, sizeof(h.name));
    for (int i = 0; i < 32; i++)
        memcpy(h.name + 2 * i, "\xc3\xa9", 2); /* é */
    memset(h.software, 0, sizeof(h.software));
    h.version = UINT32_MAX;
    h.features = LR_VARINT_MAX;
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_hello_encode(&h, &b), 0);
    assert_int_equal(lr_proto_hello_decode(b.data, b.len, &d, NULL), 0);
    assert_memory_equal(&d, &h, sizeof(h));

    /* Trailing bytes from a newer version are ignored. */
    assert_int_equal(lr_buf_put(&b,
                                "\x42"
                                "future-field",
                                13),
                     0);
    assert_int_equal(lr_proto_hello_decode(b.data, b.len, &d, NULL), 0);
    assert_memory_equal(&d, &h, sizeof(h));
    lr_buf_release(&b);
}

static void test_hello_truncated(void **state)
{
    (void)state;
    struct lr_proto_hello h, d;
    fill_hello(&h);
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_HELLO_MAX);
    assert_int_equal(lr_proto_hello_encode(&h, &b), 0);
    for (size_t n = 0; n < b.len; n++) {
        struct lr_err err;
        lr_err_clear(&err);
        memset(&d, 0xee, sizeof(d));
        assert_int_equal(lr_proto_hello_decode(b.data, n, &d, &err), LR_ETRUNC);
        assert_non_null(strstr(err.msg, "hello."));
        /* Zeroed, never half-filled. */
        struct lr_proto_hello zero;
        memset(&zero, 0, sizeof(zero));
        assert_memory_equal(&d, &zero, sizeof(d));
    }
    lr_buf_release(&b);
}

/* Decode a hand-made payload: version 1, name (raw), software "s", features 0. */
static int decode_with_name(const void *name, size_t n, struct lr_err *err)
{
    struct lr_buf b;
    lr_buf_init(&b, 1024);
    lr_buf_put_varint(&b, 1);
    lr_buf_put_lbytes(&b, name, n);
    lr_buf_put_lbytes(&b, "s", 1);
    lr_buf_put_varint(&b, 0);
    assert_true(lr_buf_ok(&b));
    struct lr_proto_hello d;
    int rc = lr_proto_hello_decode(b.data, b.len, &d, err);
    lr_buf_release(&b);
    return rc;
}

static void test_hello_hostile(void **state)
{
    (void)state;
    struct lr_err err;
    char name[70];
    memset(name, 'a', sizeof(name));
    assert_int_equal(decode_with_name(name, 64, NULL), 0);
    assert_int_equal(decode_with_name(name, 65, &err), LR_ETOOBIG);
    assert_non_null(strstr(err.msg, "hello.name"));
    assert_non_null(strstr(err.msg, "65"));
    assert_int_equal(decode_with_name("", 0, &err), LR_EBADVAL);
    assert_non_null(strstr(err.msg, "empty"));

    static const struct {
        const char *s;
        size_t n;
        const char *why;
    } bad[] = {
        {"a\nb", 3, "control"},
        {"a\0b", 3, "control"},
        {"\x1b[1A", 4, "control"},
        {"del\x7f", 4, "control"},
        {"c1\xc2\x85", 4, "control"},
        {"c1\xc2\x9f", 4, "control"},
        {"\xff", 1, "UTF-8"},
        {"\xc3", 1, "UTF-8"},
        {"\xc0\xaf", 2, "UTF-8"},
        {"\xed\xa0\x80", 3, "UTF-8"},
        {"\xf4\x90\x80\x80", 4, "UTF-8"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lr_err_clear(&err);
        assert_int_equal(decode_with_name(bad[i].s, bad[i].n, &err), LR_EBADVAL);
        assert_non_null(strstr(err.msg, bad[i].why));
    }
    /* Non-ASCII printable is fine: U+00A0 (just past C1), U+00E9, an emoji. */
    assert_int_equal(decode_with_name("\xc2\xa0", 2, NULL), 0);
    assert_int_equal(decode_with_name("caf\xc3\xa9 \xf0\x9f\x98\x80", 10, NULL), 0);

    /* Hostile lengths for the name: 2^32-1 and 2^62-1, with little data behind. */
    static const uint64_t lens[] = {UINT32_MAX, LR_VARINT_MAX, 65, 1000};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        struct lr_buf b;
        lr_buf_init(&b, 64);
        lr_buf_put_varint(&b, 1);
        lr_buf_put_varint(&b, lens[i]);
        lr_buf_put(&b, "abc", 3);
        struct lr_proto_hello d;
        assert_int_equal(lr_proto_hello_decode(b.data, b.len, &d, &err), LR_ETOOBIG);
        lr_buf_release(&b);
    }
    /* Software length over the limit. */
    {
        struct lr_buf b;
        lr_buf_init(&b, 256);
        lr_buf_put_varint(&b, 1);
        lr_buf_put_lbytes(&b, "n", 1);
        lr_buf_put_lbytes(&b, name, 65);
        lr_buf_put_varint(&b, 0);
        struct lr_proto_hello d;
        assert_int_equal(lr_proto_hello_decode(b.data, b.len, &d, &err), LR_ETOOBIG);
        assert_non_null(strstr(err.msg, "hello.software"));
        lr_buf_release(&b);
    }
    /* Versions 0 and 2^32 are out of range. */
    static const uint64_t vers[] = {0, UINT64_C(1) << 32, LR_VARINT_MAX};
    for (size_t i = 0; i < sizeof(vers) / sizeof(vers[0]); i++) {
        struct lr_buf b;
        lr_buf_init(&b, 64);
        lr_buf_put_varint(&b, vers[i]);
        lr_buf_put_lbytes(&b, "n", 1);
        lr_buf_put_lbytes(&b, "s", 1);
        lr_buf_put_varint(&b, 0);
        struct lr_proto_hello d;
        assert_int_equal(lr_proto_hello_decode(b.data, b.len, &d, &err), LR_EBADVAL);
        assert_non_null(strstr(err.msg, "hello.version"));
        lr_buf_release(&b);
    }
}

static void test_hello_encode_rejects(void **state)
{
    (void)state;
    struct lr_proto_hello h;
    struct lr_buf b;
    lr_buf_init(&b, 1024);

    fill_hello(&h);
    h.version = 0;
    assert_int_equal(lr_proto_hello_encode(&h, &b), LR_EBADVAL);
    fill_hello(&h);
    h.name[0] = '\0';
    assert_int_equal(lr_proto_hello_encode(&h, &b), LR_EBADVAL);
    fill_hello(&h);
    memset(h.name, 'x', sizeof(h.name)); /* not terminated */
    assert_int_equal(lr_proto_hello_encode(&h, &b), LR_EBADVAL);
    fill_hello(&h);
    memcpy(h.name, "a\tb", 4);
    assert_int_equal(lr_proto_hello_encode(&h, &b), LR_EBADVAL);
    fill_hello(&h);
    memcpy(h.software, "\xfe", 2);
    assert_int_equal(lr_proto_hello_encode(&h, &b), LR_EBADVAL);
    fill_hello(&h);
    h.features = LR_VARINT_MAX + 1;
    assert_int_equal(lr_proto_hello_encode(&h, &b), LR_EBADVAL);
    /* Nothing was written by any of the refusals. */
    assert_int_equal(b.len, 0);
    assert_true(lr_buf_ok(&b));
    lr_buf_release(&b);

    /* Out of room: poisoned, not half-sent. */
    fill_hello(&h);
    lr_buf_init(&b, 10);
    assert_int_equal(lr_proto_hello_encode(&h, &b), LR_ETOOBIG);
    assert_false(lr_buf_ok(&b));
    lr_buf_release(&b);
}

static void test_close(void **state)
{
    (void)state;
    struct lr_proto_close c, d;
    memset(&c, 0, sizeof(c));
    c.code = LR_CLOSE_VERSION;
    snprintf(c.reason, sizeof(c.reason), "need version 1");
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_CLOSE_MAX);
    assert_int_equal(lr_proto_close_encode(&c, &b), 0);
    assert_int_equal(b.len, 1 + 1 + 14);
    assert_int_equal(lr_proto_close_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(d.code, LR_CLOSE_VERSION);
    assert_string_equal(d.reason, "need version 1");
    for (size_t n = 0; n < b.len; n++)
        assert_int_equal(lr_proto_close_decode(b.data, n, &d, NULL), LR_ETRUNC);

    /* Empty reason, huge code. */
    c.reason[0] = '\0';
    c.code = LR_VARINT_MAX;
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_close_encode(&c, &b), 0);
    assert_int_equal(lr_proto_close_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(d.code, LR_VARINT_MAX);
    assert_string_equal(d.reason, "");

    struct lr_err err;
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 0);
    lr_buf_put_varint(&b, LR_PROTO_REASON_MAX + 1);
    assert_int_equal(lr_proto_close_decode(b.data, b.len, &d, &err), LR_ETOOBIG);
    assert_non_null(strstr(err.msg, "close.reason"));
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 0);
    lr_buf_put_lbytes(&b, "bye\r\n", 5);
    assert_int_equal(lr_proto_close_decode(b.data, b.len, &d, &err), LR_EBADVAL);
    c.code = 0;
    memcpy(c.reason, "\x1b]0;x\x07", 7);
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_close_encode(&c, &b), LR_EBADVAL);
    lr_buf_release(&b);
}

static void test_text_ok(void **state)
{
    (void)state;
    assert_true(lr_proto_text_ok("", 0));
    assert_true(lr_proto_text_ok("plain ~!", 8));
    assert_false(lr_proto_text_ok(" \x1f", 2));
    assert_false(lr_proto_text_ok("\xc2\x80", 2));
    assert_true(lr_proto_text_ok("\xc2\xa9", 2));
    assert_false(lr_proto_text_ok("\xc2", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_frame_put),
        cmocka_unit_test(test_reader_byte_at_a_time),
        cmocka_unit_test(test_reader_whole),
        cmocka_unit_test(test_reader_random_pieces),
        cmocka_unit_test(test_reader_split_header),
        cmocka_unit_test(test_reader_zero_length_and_ready),
        cmocka_unit_test(test_reader_steal),
        cmocka_unit_test(test_reader_oversize),
        cmocka_unit_test(test_reader_limits_and_truncated),
        cmocka_unit_test(test_hello_roundtrip),
        cmocka_unit_test(test_hello_truncated),
        cmocka_unit_test(test_hello_hostile),
        cmocka_unit_test(test_hello_encode_rejects),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_text_ok),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
