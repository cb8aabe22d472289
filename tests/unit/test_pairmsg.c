/*
 * test_pairmsg.c - pairing wire messages: round trips, exact byte layout,
 * incremental framing, and hostile frames (bounds, unknown types,
 * non-minimal varints, trailing bytes, bad text).
 */
#include "pair/msg.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct lr_pair_msg hello(uint16_t np, const char *name)
{
    struct lr_pair_msg m;
    memset(&m, 0, sizeof(m));
    m.type = LR_PAIR_MSG_HELLO;
    m.u.hello.version = LR_PAIR_VERSION;
    m.u.hello.nameplate = np;
    for (int i = 0; i < LR_DEVICE_ID_LEN; i++)
        m.u.hello.id.b[i] = (uint8_t)(0xa0 + i);
    snprintf(m.u.hello.name, sizeof(m.u.hello.name), "%s", name);
    return m;
}

static struct lr_pair_msg result(enum lr_pair_status st, const char *reason)
{
    struct lr_pair_msg m;
    memset(&m, 0, sizeof(m));
    m.type = LR_PAIR_MSG_RESULT;
    m.u.result.status = st;
    snprintf(m.u.result.reason, sizeof(m.u.result.reason), "%s", reason);
    return m;
}

static void roundtrip(const struct lr_pair_msg *m)
{
    struct lr_buf b;
    struct lr_pair_msg d;
    struct lr_err err;
    lr_buf_init(&b, LR_PAIR_FRAME_MAX);
    assert_int_equal(lr_pair_msg_encode(m, &b), 0);
    assert_true(b.len <= LR_PAIR_FRAME_MAX);
    assert_int_equal(lr_pair_msg_decode(b.data, b.len, &d, &err), (int)b.len);
    assert_memory_equal(&d, m, sizeof(d));
    /* every strict prefix is "need more", never an error or a message */
    for (size_t k = 0; k < b.len; k++) {
        memset(&d, 0x5a, sizeof(d));
        assert_int_equal(lr_pair_msg_decode(b.data, k, &d, &err), 0);
    }
    lr_buf_release(&b);
}

static void test_roundtrips(void **state)
{
    (void)state;
    struct lr_pair_msg m = hello(0, "laptop");
    roundtrip(&m);
    m = hello(999, "Zoë's phone \xf0\x9f\x93\xb1");
    roundtrip(&m);
    char longname[LR_PAIR_NAME_MAX + 1];
    memset(longname, 'n', LR_PAIR_NAME_MAX);
    longname[LR_PAIR_NAME_MAX] = '\0';
    m = hello(123, longname);
    roundtrip(&m);

    memset(&m, 0, sizeof(m));
    m.type = LR_PAIR_MSG_CPACE;
    for (int i = 0; i < 32; i++)
        m.u.y[i] = (uint8_t)(i * 3);
    roundtrip(&m);
    memset(&m, 0, sizeof(m));
    m.type = LR_PAIR_MSG_CONFIRM;
    memset(m.u.tag, 0xff, 32);
    roundtrip(&m);

    for (int st = 0; st <= LR_PAIR_STATUS_MAX; st++) {
        m = result((enum lr_pair_status)st, st ? "the code did not match" : "");
        roundtrip(&m);
    }
    char longreason[LR_PAIR_REASON_MAX + 1];
    memset(longreason, 'r', LR_PAIR_REASON_MAX);
    longreason[LR_PAIR_REASON_MAX] = '\0';
    m = result(LR_PAIR_ERROR, longreason);
    roundtrip(&m);
}

/* The exact bytes, so the wire format in docs/pairing.md is what we send. */
static void test_layout(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, LR_PAIR_FRAME_MAX);
    struct lr_pair_msg m = hello(417, "ab");
    assert_int_equal(lr_pair_msg_encode(&m, &b), 0);
    /* type 1, len = 1 (version) + 2 (417 as 2-byte varint 0x41a1) + 32 + 1 + 2 = 38 */
    assert_int_equal(b.len, 2 + 38);
    assert_int_equal(b.data[0], 0x01);
    assert_int_equal(b.data[1], 38);
    assert_int_equal(b.data[2], 0x01);
    assert_int_equal(b.data[3], 0x41);
    assert_int_equal(b.data[4], 0xa1);
    assert_memory_equal(b.data + 5, m.u.hello.id.b, 32);
    assert_int_equal(b.data[37], 2);
    assert_memory_equal(b.data + 38, "ab", 2);

    lr_buf_reset(&b);
    m = result(LR_PAIR_WRONG_CODE, "");
    assert_int_equal(lr_pair_msg_encode(&m, &b), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "\x04\x02\x01\x00", 4);

    lr_buf_reset(&b);
    memset(&m, 0, sizeof(m));
    m.type = LR_PAIR_MSG_CPACE;
    assert_int_equal(lr_pair_msg_encode(&m, &b), 0);
    assert_int_equal(b.len, 34);
    assert_int_equal(b.data[0], 0x02);
    assert_int_equal(b.data[1], 32);
    lr_buf_release(&b);
}

/* Two frames back to back decode one at a time. */
static void test_stream(void **state)
{
    (void)state;
    struct lr_buf b;
    struct lr_pair_msg m1 = hello(5, "x"), m2 = result(LR_PAIR_OK, "ok"), d;
    lr_buf_init(&b, 2 * LR_PAIR_FRAME_MAX);
    assert_int_equal(lr_pair_msg_encode(&m1, &b), 0);
    size_t first = b.len;
    assert_int_equal(lr_pair_msg_encode(&m2, &b), 0);
    int n = lr_pair_msg_decode(b.data, b.len, &d, NULL);
    assert_int_equal(n, (int)first);
    assert_memory_equal(&d, &m1, sizeof(d));
    n = lr_pair_msg_decode(b.data + first, b.len - first, &d, NULL);
    assert_int_equal(n, (int)(b.len - first));
    assert_memory_equal(&d, &m2, sizeof(d));
    lr_buf_release(&b);
}

static void test_encode_rejects(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, LR_PAIR_FRAME_MAX);
    struct lr_pair_msg m = hello(1000, "x");
    assert_int_equal(lr_pair_msg_encode(&m, &b), LR_EBADVAL);
    m = hello(1, "");
    assert_int_equal(lr_pair_msg_encode(&m, &b), LR_EBADVAL);
    m = hello(1, "tab\there");
    assert_int_equal(lr_pair_msg_encode(&m, &b), LR_EBADVAL);
    m = hello(1, "bad \xff utf8");
    assert_int_equal(lr_pair_msg_encode(&m, &b), LR_EBADVAL);
    m = hello(1, "x");
    m.u.hello.version = 0;
    assert_int_equal(lr_pair_msg_encode(&m, &b), LR_EBADVAL);
    m = hello(1, "x");
    memset(m.u.hello.name, 'n', sizeof(m.u.hello.name)); /* not terminated */
    assert_int_equal(lr_pair_msg_encode(&m, &b), LR_EBADVAL);
    m = result((enum lr_pair_status)(LR_PAIR_STATUS_MAX + 1), "");
    assert_int_equal(lr_pair_msg_encode(&m, &b), LR_EBADVAL);
    m = result(LR_PAIR_OK, "\x1b[31m");
    assert_int_equal(lr_pair_msg_encode(&m, &b), LR_EBADVAL);
    memset(&m, 0, sizeof(m));
    m.type = (enum lr_pair_msg_type)9;
    assert_int_equal(lr_pair_msg_encode(&m, &b), LR_EBADVAL);
    assert_int_equal(b.len, 0); /* untouched */
    assert_true(lr_buf_ok(&b));

    /* a full buffer poisons */
    struct lr_buf small;
    lr_buf_init(&small, 10);
    m = hello(1, "x");
    assert_int_equal(lr_pair_msg_encode(&m, &small), LR_ETOOBIG);
    assert_false(lr_buf_ok(&small));
    lr_buf_release(&small);
    lr_buf_release(&b);
}

static void expect_fail(const void *p, size_t n, int code, const char *needle)
{
    struct lr_pair_msg m;
    struct lr_err err;
    lr_err_clear(&err);
    memset(&m, 0x77, sizeof(m));
    int rc = lr_pair_msg_decode(p, n, &m, &err);
    if (rc != code)
        fail_msg("decode: got %d (%s), want %d", rc, err.msg, code);
    assert_true(rc <= LR_E__FATAL_PEER);
    assert_int_equal(err.code, code);
    if (!strstr(err.msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
    struct lr_pair_msg zero;
    memset(&zero, 0, sizeof(zero));
    assert_memory_equal(&m, &zero, sizeof(m));
}

static void test_decode_hostile(void **state)
{
    (void)state;
    uint8_t f[300];

    /* unknown and reserved types, refused from the header alone */
    expect_fail("\x00", 1, LR_EPROTO, "unknown type 0");
    expect_fail("\x05", 1, LR_EPROTO, "unknown type 5");
    expect_fail("\x7f\xff", 2, LR_EPROTO, "unknown type");
    /* non-minimal varints */
    expect_fail("\x40\x02\x20", 3, LR_EPROTO, "type varint not minimal");
    expect_fail("\x02\x40\x20", 3, LR_EPROTO, "length varint not minimal");
    /* length over the bound: refused before the payload arrives */
    expect_fail("\x02\x21", 2, LR_ETOOBIG, "PAIR_CPACE: length 33 over 32");
    expect_fail("\x03\x50\x00", 3, LR_ETOOBIG, "PAIR_CONFIRM");
    expect_fail("\x01\x80\xff\xff\xff", 5, LR_ETOOBIG, "PAIR_HELLO");
    /* short fixed fields */
    memset(f, 0, sizeof(f));
    f[0] = 0x02;
    f[1] = 31;
    expect_fail(f, 33, LR_ETRUNC, "pair_cpace.y");
    f[0] = 0x03;
    expect_fail(f, 33, LR_ETRUNC, "pair_confirm.tag");
    /* empty RESULT */
    expect_fail("\x04\x00", 2, LR_ETRUNC, "pair_result.status");
    expect_fail("\x04\x01\x06", 3, LR_EBADVAL, "unknown 6");
    expect_fail("\x04\x01\x00", 3, LR_ETRUNC, "pair_result.reason");
    expect_fail("\x04\x03\x00\x01\x07", 5, LR_EBADVAL, "pair_result.reason");
    expect_fail("\x04\x04\x00\x01\x41\x41", 6, LR_EPROTO, "1 bytes after");
    expect_fail("\x04\x03\x00\x05\x41", 5, LR_ETRUNC, "5 bytes declared");
    expect_fail("\x04\x03\x00\x40\x81", 5, LR_ETOOBIG, "pair_result.reason: length 129");
    expect_fail("\x04\x02\x40\x00", 4, LR_EPROTO, "pair_result.status: varint not minimal");

    /* HELLO fields */
    size_t n = 0;
    f[n++] = 0x01;
    f[n++] = 0;    /* length, set below */
    f[n++] = 0x00; /* version 0 */
    f[1] = (uint8_t)(n - 2);
    expect_fail(f, n, LR_EBADVAL, "pair_hello.version: 0");
    uint8_t h[64] = {0x01, 0, 0x01, 0x43, 0xe8}; /* version 1, nameplate 1000 */
    h[1] = 3;
    expect_fail(h, 5, LR_EBADVAL, "nameplate: 1000 over 999");
    uint8_t h2[80] = {0x01, 0, 0x01, 0x05};
    h2[1] = 2 + 31;
    expect_fail(h2, 2 + 2 + 31, LR_ETRUNC, "pair_hello.id");
    h2[1] = 2 + 32 + 1;
    h2[2 + 2 + 32] = 0; /* name length 0 */
    expect_fail(h2, 2 + 2 + 32 + 1, LR_EBADVAL, "pair_hello.name: empty");
    h2[1] = 2 + 32 + 2;
    h2[2 + 2 + 32] = 1;
    h2[2 + 2 + 32 + 1] = 0xc3; /* truncated UTF-8 */
    expect_fail(h2, 2 + 2 + 32 + 2, LR_EBADVAL, "pair_hello.name");
    h2[2 + 2 + 32] = 0x40; /* 65 as a (minimal) 2-byte varint */
    h2[2 + 2 + 32 + 1] = 65;
    expect_fail(h2, 2 + 2 + 32 + 2, LR_ETOOBIG, "pair_hello.name: length 65");
    /* a huge version varint */
    uint8_t h3[16] = {0x01, 9, 0xc0, 0, 0, 1, 0, 0, 0, 0, 0x05};
    expect_fail(h3, 11, LR_EBADVAL, "version");
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(lr_pair_msg_type_name(LR_PAIR_MSG_HELLO), "PAIR_HELLO");
    assert_string_equal(lr_pair_msg_type_name(LR_PAIR_MSG_RESULT), "PAIR_RESULT");
    assert_string_equal(lr_pair_msg_type_name(77), "unknown");
    assert_string_equal(lr_pair_status_str(LR_PAIR_WRONG_CODE), "wrong code");
    assert_string_equal(lr_pair_status_str(LR_PAIR_EXPIRED), "code expired");
    assert_string_equal(lr_pair_status_str(99), "unknown status");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrips),     cmocka_unit_test(test_layout),
        cmocka_unit_test(test_stream),         cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_decode_hostile), cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
