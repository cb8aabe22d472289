/*
 * test_pairmsg.c - pairing wire messages: round trips, exact byte layout,
 * incremental framing, and hostile frames (bounds, unknown types,
 * non-minimal varints, trailing bytes, bad text). Then the exchange built
 * on them (session.h): two sessions talking through encoded frames, with
 * wrong codes, expired and reused codes, a relay in the middle, forged
 * hellos, vanished peers and out-of-order messages.
 */
#include "pair/msg.h"
#include "pair/session.h"

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

/* ---- the exchange (session.h) ---- */

struct party {
    struct lr_pair_session s;
    struct lr_buf out; /* frames not yet delivered */
    int rc;            /* last result */
    struct lr_err err;
};

static void party_init(struct party *p)
{
    memset(p, 0, sizeof(*p));
    lr_buf_init(&p->out, 16 * LR_PAIR_FRAME_MAX);
}

static void party_release(struct party *p)
{
    lr_pair_session_clear(&p->s);
    lr_buf_release(&p->out);
}

static bool finished(const struct party *p)
{
    return p->s.state == LR_PAIR_S_DONE || p->s.state == LR_PAIR_S_FAILED;
}

/* Deliver everything `from` has queued to `to`; returns frames delivered. */
static int deliver(struct party *from, struct party *to, uint64_t now)
{
    int frames = 0;
    size_t off = 0;
    while (off < from->out.len) {
        struct lr_pair_msg m;
        int n = lr_pair_msg_decode(from->out.data + off, from->out.len - off, &m, NULL);
        assert_true(n > 0); /* sessions only ever emit whole, valid frames */
        off += (size_t)n;
        frames++;
        if (finished(to))
            continue; /* a closed connection: the rest is dropped */
        lr_err_clear(&to->err);
        to->rc = lr_pair_session_on_msg(&to->s, &m, now, &to->out, &to->err);
    }
    lr_buf_reset(&from->out);
    return frames;
}

/* Run until nothing moves. */
static void pump(struct party *j, struct party *h, uint64_t now)
{
    for (int i = 0; i < 20; i++) {
        int moved = deliver(j, h, now) + deliver(h, j, now);
        if (moved == 0)
            return;
    }
    fail_msg("pairing did not settle");
}

static struct lr_device_id dev(uint8_t v)
{
    struct lr_device_id id;
    memset(id.b, v, sizeof(id.b));
    return id;
}

struct setup {
    struct lr_pair_session_cfg j, h;
};

static void setup_default(struct setup *st, struct lr_pair_code *code)
{
    memset(st, 0, sizeof(*st));
    st->j.role = LR_PAIR_JOINER;
    st->j.self_id = dev(0x11);
    st->j.self_name = "phone";
    st->j.peer_cert_id = dev(0x22);
    st->j.joiner_code = *code;
    st->j.joiner_code.created_ms = 0;
    st->h.role = LR_PAIR_HOLDER;
    st->h.self_id = dev(0x22);
    st->h.self_name = "laptop";
    st->h.peer_cert_id = dev(0x11);
    st->h.holder_code = code;
    for (int i = 0; i < LR_PAIR_EXPORTER_LEN; i++)
        st->j.exporter[i] = st->h.exporter[i] = (uint8_t)(0x30 + i);
}

static void start(struct party *j, struct party *h, const struct setup *st, uint64_t now)
{
    party_init(j);
    party_init(h);
    assert_int_equal(lr_pair_session_start(&j->s, &st->j, now, &j->out, &j->err), 0);
    assert_true(j->out.len > 0);
    assert_int_equal(lr_pair_session_start(&h->s, &st->h, now, &h->out, &h->err), 0);
    assert_int_equal(h->out.len, 0);
}

static void test_session_ok(void **state)
{
    (void)state;
    struct lr_pair_code code;
    struct setup st;
    struct party j, h;
    assert_int_equal(lr_pair_code_new(&code, 1000, NULL), 0);
    setup_default(&st, &code);
    start(&j, &h, &st, 1000);
    pump(&j, &h, 2000);
    assert_int_equal(h.rc, 1);
    assert_int_equal(j.rc, 1);
    assert_int_equal(h.s.state, LR_PAIR_S_DONE);
    assert_int_equal(j.s.state, LR_PAIR_S_DONE);
    assert_int_equal(h.s.status, LR_PAIR_OK);
    assert_int_equal(j.s.status, LR_PAIR_OK);
    struct lr_device_id a = dev(0x11), b = dev(0x22);
    assert_true(lr_device_id_eq(&h.s.peer_id, &a));
    assert_true(lr_device_id_eq(&j.s.peer_id, &b));
    assert_string_equal(h.s.peer_name, "phone");
    assert_string_equal(j.s.peer_name, "laptop");
    assert_true(code.used);
    /* keys are gone once finished */
    uint8_t isk[LR_CPACE_ISK_LEN];
    assert_int_equal(lr_cpace_isk(&j.s.cpace, isk), LR_EINTERNAL);
    /* a finished session takes nothing more */
    struct lr_pair_msg m = result(LR_PAIR_OK, "");
    assert_int_equal(lr_pair_session_on_msg(&j.s, &m, 0, &j.out, NULL), LR_EINTERNAL);
    assert_int_equal(lr_pair_session_on_msg(&h.s, &m, 0, &h.out, NULL), LR_EINTERNAL);
    /* and the code cannot pair again */
    party_release(&j);
    party_release(&h);
    start(&j, &h, &st, 3000);
    pump(&j, &h, 3000);
    assert_int_equal(j.rc, LR_EVERIFY);
    assert_int_equal(j.s.status, LR_PAIR_USED);
    assert_int_equal(h.rc, LR_EVERIFY);
    party_release(&j);
    party_release(&h);
}

static void test_session_wrong_code(void **state)
{
    (void)state;
    struct lr_pair_code code;
    struct setup st;
    struct party j, h;
    assert_int_equal(lr_pair_code_new(&code, 0, NULL), 0);
    setup_default(&st, &code);
    st.j.joiner_code.secret = (code.secret + 1) % (LR_PAIR_SECRET_MAX + 1);
    start(&j, &h, &st, 0);
    pump(&j, &h, 10);
    assert_int_equal(j.rc, LR_EVERIFY);
    assert_non_null(strstr(j.err.msg, "wrong code"));
    assert_int_equal(j.s.status, LR_PAIR_WRONG_CODE);
    assert_int_equal(h.rc, LR_EVERIFY);
    assert_non_null(strstr(h.err.msg, "wrong code"));
    assert_int_equal(h.s.state, LR_PAIR_S_FAILED);
    assert_true(code.failed);
    assert_false(code.used);
    party_release(&j);
    party_release(&h);

    /* the right code afterwards is refused: one attempt per code */
    setup_default(&st, &code);
    start(&j, &h, &st, 20);
    pump(&j, &h, 20);
    assert_int_equal(j.rc, LR_EVERIFY);
    assert_non_null(strstr(j.err.msg, "code already used"));
    /* said once, not "code already used: code already used" */
    assert_null(strstr(strstr(j.err.msg, "code already used") + 1, "code already used"));
    assert_int_equal(h.s.state, LR_PAIR_S_FAILED);
    assert_int_equal(h.s.status, LR_PAIR_USED);
    party_release(&j);
    party_release(&h);
}

static void test_session_expired(void **state)
{
    (void)state;
    struct lr_pair_code code;
    struct setup st;
    struct party j, h;
    assert_int_equal(lr_pair_code_new(&code, 100, NULL), 0);
    setup_default(&st, &code);
    start(&j, &h, &st, 100);
    pump(&j, &h, 100 + LR_PAIR_CODE_TTL_MS);
    assert_int_equal(h.rc, LR_ETIMEOUT);
    assert_int_equal(j.rc, LR_ETIMEOUT);
    assert_int_equal(j.s.status, LR_PAIR_EXPIRED);
    assert_non_null(strstr(j.err.msg, "code expired"));
    assert_false(code.claimed);
    party_release(&j);
    party_release(&h);
}

/* A relay holds two TLS sessions: the exporters differ. It fails and burns the code. */
static void test_session_relay(void **state)
{
    (void)state;
    struct lr_pair_code code;
    struct setup st;
    struct party j, h;
    assert_int_equal(lr_pair_code_new(&code, 0, NULL), 0);
    setup_default(&st, &code);
    st.h.exporter[0] ^= 1;
    start(&j, &h, &st, 0);
    pump(&j, &h, 0);
    assert_int_equal(j.rc, LR_EVERIFY);
    assert_int_equal(h.rc, LR_EVERIFY);
    assert_true(code.failed);
    party_release(&j);
    party_release(&h);

    /* the relay's own certificate towards the holder: IDs in CI differ */
    assert_int_equal(lr_pair_code_new(&code, 0, NULL), 0);
    setup_default(&st, &code);
    st.j.peer_cert_id = dev(0x33); /* J sees M's certificate */
    st.h.peer_cert_id = dev(0x11);
    start(&j, &h, &st, 0);
    pump(&j, &h, 0);
    /* H's hello names 0x22, J's certificate view says 0x33: refused at hello */
    assert_int_equal(j.rc, LR_EPROTO);
    assert_non_null(strstr(j.err.msg, "certificate"));
    assert_true(code.failed); /* H had claimed it: burnt */
    party_release(&j);
    party_release(&h);
}

static void test_session_hello_checks(void **state)
{
    (void)state;
    struct lr_pair_code code;
    struct setup st;
    struct party j, h;
    assert_int_equal(lr_pair_code_new(&code, 0, NULL), 0);

    /* joiner's hello carries an ID that is not its certificate's */
    setup_default(&st, &code);
    st.h.peer_cert_id = dev(0x44);
    start(&j, &h, &st, 0);
    pump(&j, &h, 0);
    assert_int_equal(h.rc, LR_EPROTO);
    assert_int_equal(j.rc, LR_EPROTO);
    assert_int_equal(j.s.status, LR_PAIR_ERROR);
    assert_false(code.claimed); /* refused before the attempt began */
    party_release(&j);
    party_release(&h);

    /* other nameplate: no such code, and ours stays usable */
    setup_default(&st, &code);
    st.j.joiner_code.nameplate = (uint16_t)((code.nameplate + 1) % 1000);
    start(&j, &h, &st, 0);
    pump(&j, &h, 0);
    assert_int_equal(h.rc, LR_ENOTFOUND);
    assert_int_equal(j.rc, LR_ENOTFOUND);
    assert_int_equal(j.s.status, LR_PAIR_NO_CODE);
    assert_int_equal(lr_pair_code_check(&code, 0, NULL), 0);
    party_release(&j);
    party_release(&h);

    /* unsupported version */
    setup_default(&st, &code);
    party_init(&h);
    assert_int_equal(lr_pair_session_start(&h.s, &st.h, 0, &h.out, NULL), 0);
    struct lr_pair_msg m = hello(code.nameplate, "phone");
    m.u.hello.id = dev(0x11);
    m.u.hello.version = 2;
    assert_int_equal(lr_pair_session_on_msg(&h.s, &m, 0, &h.out, &h.err), LR_EUNSUPPORTED);
    assert_true(h.out.len > 0); /* tells the peer */
    assert_false(code.claimed);
    party_release(&h);

    /* bad configuration */
    party_init(&h);
    setup_default(&st, &code);
    st.h.self_name = "";
    assert_int_equal(lr_pair_session_start(&h.s, &st.h, 0, &h.out, NULL), LR_EINTERNAL);
    st.h.self_name = "laptop";
    st.h.holder_code = NULL;
    assert_int_equal(lr_pair_session_start(&h.s, &st.h, 0, &h.out, NULL), LR_EINTERNAL);
    party_release(&h);
}

/* The joiner vanishes after the holder's tag: that was its one guess. */
static void test_session_abort_burns(void **state)
{
    (void)state;
    struct lr_pair_code code;
    struct setup st;
    struct party j, h;
    assert_int_equal(lr_pair_code_new(&code, 0, NULL), 0);
    setup_default(&st, &code);
    start(&j, &h, &st, 0);
    deliver(&j, &h, 0); /* HELLO + CPACE -> HELLO, CPACE, CONFIRM(Tb) */
    assert_int_equal(h.s.state, LR_PAIR_S_WAIT_CONFIRM);
    assert_true(code.claimed);
    /* a second joiner meanwhile gets nothing */
    struct party j2, h2;
    start(&j2, &h2, &st, 0);
    pump(&j2, &h2, 0);
    assert_int_equal(j2.rc, LR_EVERIFY);
    assert_int_equal(h2.s.status, LR_PAIR_USED);
    party_release(&j2);
    party_release(&h2);
    lr_pair_session_abort(&h.s);
    assert_int_equal(h.s.state, LR_PAIR_S_FAILED);
    assert_true(code.failed);
    assert_int_equal(lr_pair_code_check(&code, 0, NULL), LR_EVERIFY);
    party_release(&j);
    party_release(&h);
}

static void test_session_out_of_order(void **state)
{
    (void)state;
    struct lr_pair_code code;
    struct setup st;
    struct party h, j;
    struct lr_pair_msg m;
    assert_int_equal(lr_pair_code_new(&code, 0, NULL), 0);
    setup_default(&st, &code);

    /* holder gets a CONFIRM first */
    party_init(&h);
    assert_int_equal(lr_pair_session_start(&h.s, &st.h, 0, &h.out, NULL), 0);
    memset(&m, 0, sizeof(m));
    m.type = LR_PAIR_MSG_CONFIRM;
    assert_int_equal(lr_pair_session_on_msg(&h.s, &m, 0, &h.out, &h.err), LR_EPROTO);
    assert_non_null(strstr(h.err.msg, "unexpected PAIR_CONFIRM"));
    struct lr_pair_msg r;
    assert_true(lr_pair_msg_decode(h.out.data, h.out.len, &r, NULL) > 0);
    assert_int_equal(r.type, LR_PAIR_MSG_RESULT);
    assert_int_equal(r.u.result.status, LR_PAIR_ERROR);
    assert_false(code.claimed);
    party_release(&h);

    /* holder gets the identity as the joiner's share: refused, code burnt */
    party_init(&h);
    assert_int_equal(lr_pair_session_start(&h.s, &st.h, 0, &h.out, NULL), 0);
    m = hello(code.nameplate, "phone");
    m.u.hello.id = dev(0x11);
    assert_int_equal(lr_pair_session_on_msg(&h.s, &m, 0, &h.out, NULL), 0);
    memset(&m, 0, sizeof(m));
    m.type = LR_PAIR_MSG_CPACE;
    assert_int_equal(lr_pair_session_on_msg(&h.s, &m, 0, &h.out, &h.err), LR_EPROTO);
    assert_non_null(strstr(h.err.msg, "ristretto255"));
    assert_true(code.failed);
    party_release(&h);

    /* joiner gets a CONFIRM before the holder's share; and an early "ok" */
    assert_int_equal(lr_pair_code_new(&code, 0, NULL), 0);
    setup_default(&st, &code);
    party_init(&j);
    assert_int_equal(lr_pair_session_start(&j.s, &st.j, 0, &j.out, NULL), 0);
    m = hello(code.nameplate, "laptop");
    m.u.hello.id = dev(0x22);
    assert_int_equal(lr_pair_session_on_msg(&j.s, &m, 0, &j.out, NULL), 0);
    memset(&m, 0, sizeof(m));
    m.type = LR_PAIR_MSG_CONFIRM;
    assert_int_equal(lr_pair_session_on_msg(&j.s, &m, 0, &j.out, NULL), LR_EPROTO);
    party_release(&j);

    party_init(&j);
    assert_int_equal(lr_pair_session_start(&j.s, &st.j, 0, &j.out, NULL), 0);
    m = result(LR_PAIR_OK, "");
    assert_int_equal(lr_pair_session_on_msg(&j.s, &m, 0, &j.out, &j.err), LR_EPROTO);
    assert_int_equal(j.s.state, LR_PAIR_S_FAILED);
    party_release(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrips),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_decode_hostile),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_session_ok),
        cmocka_unit_test(test_session_wrong_code),
        cmocka_unit_test(test_session_expired),
        cmocka_unit_test(test_session_relay),
        cmocka_unit_test(test_session_hello_checks),
        cmocka_unit_test(test_session_abort_burns),
        cmocka_unit_test(test_session_out_of_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
