/*
 * test_cpace.c - CPace (ristretto255, SHA-512) against the test vectors of
 * draft-irtf-cfrg-cpace-21 (appendix "Test vector for CPace using group
 * ristretto255 and hash SHA-512"), then the properties the pairing relies
 * on: both sides agree, a wrong password or any changed binding input
 * disagrees, invalid and identity points are refused, tags do not reflect.
 */
#include "pair/code.h"
#include "pair/cpace.h"
#include "util/str.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- vector values copied from the draft ---- */
static const char v_prs[] = "Password";
static const char v_ci_hex[] = "0b415f696e69746961746f720b425f726573706f6e646572";
static const char v_sid_hex[] = "7e4b4791d6a8ef019b936c79fb7f2c57";
static const char v_hash_hex[] =
    "da6d3ddc8802fca9058755ffd3ebde08a9c2c74945901a258482a288b6663af06bf645c93cd1c515123071"
    "99c80e84908916d983b34af77205f90851a657ee27";
static const char v_g_hex[] = "222b6b195fe84b1652badb6f6a3ae3d24341e7306967f0b8115b40d5698c7e56";
static const char v_ya_hex[] = "da3d23700a9e5699258aef94dc060dfda5ebb61f02a5ea77fad53f4ff0976d08";
static const char v_Ya_hex[] = "d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0eec482b9157";
static const char v_yb_hex[] = "d2316b454718c35362d83d69df6320f38578ed5984651435e2949762d900b80d";
static const char v_Yb_hex[] = "3ea7e0b19560d7c0b0f5734f63b955286dfa8232b5ebe63324e2d9e7433f7258";
static const char v_K_hex[] = "80b69a8a76457ab6a4d7f887a4bf6b55a2f80ac19c333f917a05fc9887c8b40f";
static const char v_isk_ir_hex[] =
    "b69effbf61b51d56401c0f65601abe428de8206feaaf0e32198896dcae7b35cd2b38950a39dfd5d4a79164"
    "614c2984f7daa460b588c1e80c3fa2068af7900447";
/* scalar_mult valid / invalid cases */
static const char v_s_hex[] = "7cd0e075fa7955ba52c02759a6c90dbbfc10e6d40aea8d283e407d88cf538a05";
static const char v_X_hex[] = "2c3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c";
static const char v_sX_hex[] = "7c13645fe790a468f62c39beb7388e541d8405d1ade69d1778c5fe3e7f6b600e";
static const char v_Yi1_hex[] = "2b3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c";

static void unhex(const char *s, uint8_t *out, size_t n)
{
    assert_int_equal(strlen(s), 2 * n);
    assert_int_equal(lr_unhex(s, out, n), 0);
}

struct vec {
    uint8_t ci[24], sid[16], ya[32], Ya[32], yb[32], Yb[32], K[32], isk[64];
};

static void load(struct vec *v)
{
    unhex(v_ci_hex, v->ci, sizeof(v->ci));
    unhex(v_sid_hex, v->sid, sizeof(v->sid));
    unhex(v_ya_hex, v->ya, 32);
    unhex(v_Ya_hex, v->Ya, 32);
    unhex(v_yb_hex, v->yb, 32);
    unhex(v_Yb_hex, v->Yb, 32);
    unhex(v_K_hex, v->K, 32);
    unhex(v_isk_ir_hex, v->isk, 64);
}

static void test_vector_generator(void **state)
{
    (void)state;
    struct vec v;
    uint8_t want_h[64], h[64], want_g[32], g[32];
    load(&v);
    unhex(v_hash_hex, want_h, 64);
    unhex(v_g_hex, want_g, 32);
    assert_int_equal(
        lr__cpace_generator_hash(v_prs, strlen(v_prs), v.ci, sizeof(v.ci), v.sid, sizeof(v.sid), h),
        0);
    assert_memory_equal(h, want_h, 64);
    assert_int_equal(
        lr__cpace_generator(v_prs, strlen(v_prs), v.ci, sizeof(v.ci), v.sid, sizeof(v.sid), g), 0);
    assert_memory_equal(g, want_g, 32);
}

static void test_vector_exchange(void **state)
{
    (void)state;
    struct vec v;
    struct lr_cpace a, b;
    uint8_t Ya[32], Yb[32], ta[32], tb[32], isk_a[64], isk_b[64], K[32];
    struct lr_err err;
    load(&v);

    assert_int_equal(lr__cpace_start_with_scalar(&a, LR_CPACE_INITIATOR, v_prs, strlen(v_prs), v.ci,
                                                 sizeof(v.ci), v.sid, sizeof(v.sid), "ADa", 3, v.ya,
                                                 Ya, &err),
                     0);
    assert_memory_equal(Ya, v.Ya, 32);
    assert_int_equal(lr__cpace_start_with_scalar(&b, LR_CPACE_RESPONDER, v_prs, strlen(v_prs), v.ci,
                                                 sizeof(v.ci), v.sid, sizeof(v.sid), "ADb", 3, v.yb,
                                                 Yb, &err),
                     0);
    assert_memory_equal(Yb, v.Yb, 32);

    /* K both ways */
    assert_int_equal(lr__cpace_scalar_mult_vfy(v.ya, Yb, K), 0);
    assert_memory_equal(K, v.K, 32);
    assert_int_equal(lr__cpace_scalar_mult_vfy(v.yb, Ya, K), 0);
    assert_memory_equal(K, v.K, 32);

    /* ISK, initiator-responder transcript */
    assert_int_equal(lr_cpace_isk(&a, isk_a), LR_EINTERNAL); /* not yet keyed */
    assert_int_equal(lr_cpace_receive(&a, Yb, "ADb", 3, ta, &err), 0);
    assert_int_equal(lr_cpace_receive(&b, Ya, "ADa", 3, tb, &err), 0);
    assert_int_equal(lr_cpace_isk(&a, isk_a), 0);
    assert_int_equal(lr_cpace_isk(&b, isk_b), 0);
    assert_memory_equal(isk_a, v.isk, 64);
    assert_memory_equal(isk_b, v.isk, 64);

    /* confirmation tags are direction-specific, and each side accepts the other's */
    assert_memory_not_equal(ta, tb, 32);
    assert_int_equal(lr_cpace_confirm(&a, tb, &err), 0);
    assert_int_equal(lr_cpace_confirm(&b, ta, &err), 0);
    assert_int_equal(a.state, LR_CPACE_CONFIRMED);
    assert_int_equal(b.state, LR_CPACE_CONFIRMED);
    lr_cpace_clear(&a);
    lr_cpace_clear(&b);
    assert_int_equal(a.state, LR_CPACE_NONE);
    lr_cpace_clear(NULL);
}

static void test_vector_scalar_mult(void **state)
{
    (void)state;
    uint8_t s[32], X[32], want[32], out[32], bad[32], id[32] = {0}, zero[32] = {0};
    unhex(v_s_hex, s, 32);
    unhex(v_X_hex, X, 32);
    unhex(v_sX_hex, want, 32);
    unhex(v_Yi1_hex, bad, 32);
    assert_int_equal(lr__cpace_scalar_mult_vfy(s, X, out), 0);
    assert_memory_equal(out, want, 32);
    /* invalid encoding and the identity: G.I */
    memset(out, 0xaa, 32);
    assert_int_equal(lr__cpace_scalar_mult_vfy(s, bad, out), -1);
    assert_memory_equal(out, zero, 32);
    memset(out, 0xaa, 32);
    assert_int_equal(lr__cpace_scalar_mult_vfy(s, id, out), -1);
    assert_memory_equal(out, zero, 32);
}

/* The draft's Y_i1 and G.I in a protocol message make the receiver abort. */
static void test_invalid_points_abort(void **state)
{
    (void)state;
    struct vec v;
    uint8_t pts[4][32], y[32], tag[32], none[32] = {0};
    struct lr_cpace c;
    struct lr_err err;
    load(&v);
    unhex(v_Yi1_hex, pts[0], 32);
    memset(pts[1], 0, 32);    /* identity */
    memset(pts[2], 0xff, 32); /* non-canonical field element */
    memcpy(pts[3], v.Ya, 32);
    pts[3][31] |= 0x80; /* top bit set: never canonical */
    for (int i = 0; i < 4; i++) {
        lr_err_clear(&err);
        assert_int_equal(lr_pair_cpace_start(&c, LR_CPACE_RESPONDER,
                                             &(struct lr_pair_code){.nameplate = 1, .secret = 2},
                                             &(struct lr_device_id){{1}},
                                             &(struct lr_device_id){{2}}, v.isk, y, &err),
                         0);
        memset(tag, 0x55, sizeof(tag));
        assert_int_equal(lr_cpace_receive(&c, pts[i], NULL, 0, tag, &err), LR_EPROTO);
        assert_int_equal(err.code, LR_EPROTO);
        assert_non_null(strstr(err.msg, "ristretto255"));
        assert_memory_equal(tag, none, 32);
        assert_int_equal(c.state, LR_CPACE_FAILED);
        /* a dead exchange stays dead */
        assert_int_equal(lr_cpace_receive(&c, v.Ya, NULL, 0, tag, NULL), LR_EINTERNAL);
        assert_int_equal(lr_cpace_confirm(&c, tag, NULL), LR_EINTERNAL);
    }
}

/* ---- pairing properties ---- */

struct side {
    struct lr_pair_code code;
    struct lr_device_id ini, resp;
    uint8_t exporter[LR_PAIR_EXPORTER_LEN];
};

static void side_default(struct side *s)
{
    memset(s, 0, sizeof(*s));
    s->code.nameplate = 417;
    s->code.secret = 305911;
    memset(s->ini.b, 0x11, sizeof(s->ini.b));
    memset(s->resp.b, 0x22, sizeof(s->resp.b));
    for (int i = 0; i < LR_PAIR_EXPORTER_LEN; i++)
        s->exporter[i] = (uint8_t)(i * 7 + 3);
}

/*
 * Run a whole exchange between an initiator with view `a` and a responder
 * with view `b`. Returns 0 if both confirmed, else which step failed:
 * 1 the initiator refused B's tag (B then never sees a tag).
 * Also reports whether the ISKs matched.
 */
static int run(const struct side *a, const struct side *b, bool *isk_equal)
{
    struct lr_cpace ca, cb;
    uint8_t Ya[32], Yb[32], ta[32], tb[32], ia[64], ib[64];
    struct lr_err err;
    assert_int_equal(lr_pair_cpace_start(&ca, LR_CPACE_INITIATOR, &a->code, &a->ini, &a->resp,
                                         a->exporter, Ya, &err),
                     0);
    assert_int_equal(lr_pair_cpace_start(&cb, LR_CPACE_RESPONDER, &b->code, &b->ini, &b->resp,
                                         b->exporter, Yb, &err),
                     0);
    assert_int_equal(lr_cpace_receive(&cb, Ya, NULL, 0, tb, &err), 0);
    assert_int_equal(lr_cpace_receive(&ca, Yb, NULL, 0, ta, &err), 0);
    assert_int_equal(lr_cpace_isk(&ca, ia), 0);
    assert_int_equal(lr_cpace_isk(&cb, ib), 0);
    *isk_equal = memcmp(ia, ib, 64) == 0;
    /* the responder's tag goes first (see docs/pairing.md) */
    lr_err_clear(&err);
    int rc = lr_cpace_confirm(&ca, tb, &err);
    if (rc != 0) {
        assert_int_equal(rc, LR_EVERIFY);
        assert_int_equal(err.code, LR_EVERIFY);
        assert_int_equal(ca.state, LR_CPACE_FAILED);
        /* secrets wiped on failure */
        assert_int_equal(lr_cpace_isk(&ca, ia), LR_EINTERNAL);
        lr_cpace_clear(&cb);
        return 1;
    }
    /* B's tag verified at A implies A's tag verifies at B */
    assert_int_equal(lr_cpace_confirm(&cb, ta, &err), 0);
    lr_cpace_clear(&ca);
    lr_cpace_clear(&cb);
    return 0;
}

static void test_pair_agree(void **state)
{
    (void)state;
    struct side a, b;
    bool eq;
    side_default(&a);
    side_default(&b);
    for (int i = 0; i < 8; i++) { /* fresh scalars every run */
        assert_int_equal(run(&a, &b, &eq), 0);
        assert_true(eq);
    }
}

static void test_pair_disagree(void **state)
{
    (void)state;
    struct side a, b;
    bool eq;
    /* each field that must be bound, changed on one side only */
    for (int which = 0; which < 7; which++) {
        side_default(&a);
        side_default(&b);
        switch (which) {
        case 0:
            b.code.secret = 305912;
            break; /* wrong code, one digit off */
        case 1:
            b.code.secret = 0;
            break; /* wrong code */
        case 2:
            b.code.nameplate = 418;
            break; /* other nameplate */
        case 3:
            b.ini.b[31] ^= 1;
            break; /* other initiator identity */
        case 4:
            b.resp.b[0] ^= 0x80;
            break; /* other responder identity */
        case 5:
            b.exporter[LR_PAIR_EXPORTER_LEN - 1] ^= 1;
            break; /* other TLS session */
        case 6:
            a.ini = b.resp;
            a.resp = b.ini;
            break; /* roles' identities swapped */
        }
        assert_int_equal(run(&a, &b, &eq), 1);
        assert_false(eq);
    }
}

/* A peer that reflects our own share or our own tag gets nowhere. */
static void test_reflection(void **state)
{
    (void)state;
    struct side s;
    struct lr_cpace c, d;
    uint8_t Y[32], Yd[32], tag[32], tagd[32];
    side_default(&s);
    assert_int_equal(
        lr_pair_cpace_start(&c, LR_CPACE_INITIATOR, &s.code, &s.ini, &s.resp, s.exporter, Y, NULL),
        0);
    assert_int_equal(lr_cpace_receive(&c, Y, NULL, 0, tag, NULL), 0);
    assert_int_equal(lr_cpace_confirm(&c, tag, NULL), LR_EVERIFY);

    /* honest peer's share, but our own tag echoed back */
    assert_int_equal(
        lr_pair_cpace_start(&c, LR_CPACE_INITIATOR, &s.code, &s.ini, &s.resp, s.exporter, Y, NULL),
        0);
    assert_int_equal(
        lr_pair_cpace_start(&d, LR_CPACE_RESPONDER, &s.code, &s.ini, &s.resp, s.exporter, Yd, NULL),
        0);
    assert_int_equal(lr_cpace_receive(&c, Yd, NULL, 0, tag, NULL), 0);
    assert_int_equal(lr_cpace_receive(&d, Y, NULL, 0, tagd, NULL), 0);
    assert_int_equal(lr_cpace_confirm(&c, tag, NULL), LR_EVERIFY);
    assert_int_equal(lr_cpace_confirm(&d, tagd, NULL), LR_EVERIFY);
}

/* A tag with any single bit flipped is refused. */
static void test_tag_bitflips(void **state)
{
    (void)state;
    struct side s;
    struct lr_cpace c, d, c2;
    uint8_t Y[32], Yd[32], tag[32], tagd[32];
    side_default(&s);
    assert_int_equal(
        lr_pair_cpace_start(&c, LR_CPACE_INITIATOR, &s.code, &s.ini, &s.resp, s.exporter, Y, NULL),
        0);
    assert_int_equal(
        lr_pair_cpace_start(&d, LR_CPACE_RESPONDER, &s.code, &s.ini, &s.resp, s.exporter, Yd, NULL),
        0);
    assert_int_equal(lr_cpace_receive(&c, Yd, NULL, 0, tag, NULL), 0);
    assert_int_equal(lr_cpace_receive(&d, Y, NULL, 0, tagd, NULL), 0);
    for (int bit = 0; bit < 256; bit++) {
        c2 = c;
        tagd[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(lr_cpace_confirm(&c2, tagd, NULL), LR_EVERIFY);
        tagd[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(lr_cpace_confirm(&c, tagd, NULL), 0);
    lr_cpace_clear(&c2);
    lr_cpace_clear(&c);
    lr_cpace_clear(&d);
}

static void test_call_order_and_limits(void **state)
{
    (void)state;
    struct lr_cpace c;
    uint8_t y[32] = {0}, tag[32] = {0}, big[LR_CPACE_PRS_MAX + 1];
    struct lr_err err;
    memset(big, 'x', sizeof(big));
    memset(&c, 0, sizeof(c));
    assert_int_equal(lr_cpace_receive(&c, y, NULL, 0, tag, &err), LR_EINTERNAL);
    assert_int_equal(lr_cpace_confirm(&c, tag, &err), LR_EINTERNAL);
    assert_int_equal(
        lr_cpace_start(&c, LR_CPACE_INITIATOR, big, sizeof(big), "", 0, "", 0, "", 0, y, &err),
        LR_ETOOBIG);
    assert_non_null(strstr(err.msg, "password"));
    assert_int_equal(lr_cpace_start(&c, LR_CPACE_INITIATOR, "pw", 2, big, LR_CPACE_CI_MAX + 1, "",
                                    0, "", 0, y, &err),
                     LR_ETOOBIG);
    assert_int_equal(lr_cpace_start(&c, LR_CPACE_INITIATOR, "pw", 2, "", 0, big,
                                    LR_CPACE_SID_MAX + 1, "", 0, y, &err),
                     LR_ETOOBIG);
    assert_int_equal(lr_cpace_start(&c, LR_CPACE_INITIATOR, "pw", 2, "", 0, "", 0, big,
                                    LR_CPACE_AD_MAX + 1, y, &err),
                     LR_ETOOBIG);
    assert_int_equal(
        lr_cpace_start(&c, (enum lr_cpace_role)3, "pw", 2, "", 0, "", 0, "", 0, y, &err),
        LR_EINTERNAL);
    /* maxima are accepted, and empty CI/sid/AD work (the draft's defaults) */
    assert_int_equal(lr_cpace_start(&c, LR_CPACE_INITIATOR, big, LR_CPACE_PRS_MAX, big,
                                    LR_CPACE_CI_MAX, big, LR_CPACE_SID_MAX, big, LR_CPACE_AD_MAX, y,
                                    &err),
                     0);
    assert_int_equal(lr_cpace_receive(&c, y, big, LR_CPACE_AD_MAX + 1, tag, &err), LR_ETOOBIG);
    assert_int_equal(c.state, LR_CPACE_FAILED);

    struct lr_cpace a, b;
    uint8_t ya[32], yb[32], ta[32], tb[32];
    assert_int_equal(
        lr_cpace_start(&a, LR_CPACE_INITIATOR, "pw", 2, NULL, 0, NULL, 0, NULL, 0, ya, &err), 0);
    assert_int_equal(
        lr_cpace_start(&b, LR_CPACE_RESPONDER, "pw", 2, NULL, 0, NULL, 0, NULL, 0, yb, &err), 0);
    assert_int_equal(lr_cpace_receive(&a, yb, NULL, 0, ta, &err), 0);
    assert_int_equal(lr_cpace_receive(&b, ya, NULL, 0, tb, &err), 0);
    /* receive twice is a programming error */
    uint8_t scratch[32];
    assert_int_equal(lr_cpace_receive(&a, yb, NULL, 0, scratch, &err), LR_EINTERNAL);
    assert_int_equal(lr_cpace_confirm(&a, tb, &err), 0);
    assert_int_equal(lr_cpace_confirm(&b, ta, &err), 0);
    lr_cpace_clear(&a);
    lr_cpace_clear(&b);
    lr_cpace_clear(&c);
}

/* CI layout: lv_cat(tag, nameplate digits, initiator ID, responder ID). */
static void test_ci_layout(void **state)
{
    (void)state;
    struct lr_device_id a, b;
    uint8_t ci[128];
    memset(a.b, 0xa1, 32);
    memset(b.b, 0xb2, 32);
    int n = lr__pair_cpace_ci(7, &a, &b, ci, sizeof(ci));
    assert_int_equal(n, 1 + 16 + 1 + 3 + 1 + 32 + 1 + 32);
    assert_int_equal(ci[0], 16);
    assert_memory_equal(ci + 1, "landropic-pair/1", 16);
    assert_int_equal(ci[17], 3);
    assert_memory_equal(ci + 18, "007", 3);
    assert_int_equal(ci[21], 32);
    assert_memory_equal(ci + 22, a.b, 32);
    assert_int_equal(ci[54], 32);
    assert_memory_equal(ci + 55, b.b, 32);
    assert_int_equal(lr__pair_cpace_ci(7, &a, &b, ci, (size_t)n - 1), LR_ETOOBIG);
}

/* ---- the TLS exporter used as sid ---- */

static int psk_cb(gnutls_session_t s, const char *user, gnutls_datum_t *key)
{
    (void)s;
    (void)user;
    key->data = gnutls_malloc(32);
    assert_non_null(key->data);
    memset(key->data, 0x5c, 32);
    key->size = 32;
    return 0;
}

struct tls_pair {
    int fd[2];
    gnutls_session_t c, s;
    gnutls_psk_client_credentials_t cc;
    gnutls_psk_server_credentials_t sc;
};

static void tls_open(struct tls_pair *t)
{
    static const char prio[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3:+ECDHE-PSK:+PSK";
    unsigned char k[32];
    memset(k, 0x5c, sizeof(k));
    gnutls_datum_t key = {k, sizeof(k)};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, t->fd), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(fcntl(t->fd[i], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(gnutls_psk_allocate_client_credentials(&t->cc), 0);
    assert_int_equal(gnutls_psk_set_client_credentials(t->cc, "pairtest", &key, GNUTLS_PSK_KEY_RAW),
                     0);
    assert_int_equal(gnutls_psk_allocate_server_credentials(&t->sc), 0);
    gnutls_psk_set_server_credentials_function(t->sc, psk_cb);
    assert_int_equal(gnutls_init(&t->c, GNUTLS_CLIENT | GNUTLS_NONBLOCK), 0);
    assert_int_equal(gnutls_init(&t->s, GNUTLS_SERVER | GNUTLS_NONBLOCK), 0);
    assert_int_equal(gnutls_priority_set_direct(t->c, prio, NULL), 0);
    assert_int_equal(gnutls_priority_set_direct(t->s, prio, NULL), 0);
    assert_int_equal(gnutls_credentials_set(t->c, GNUTLS_CRD_PSK, t->cc), 0);
    assert_int_equal(gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, t->sc), 0);
    gnutls_transport_set_int(t->c, t->fd[0]);
    gnutls_transport_set_int(t->s, t->fd[1]);
}

static void tls_handshake(struct tls_pair *t)
{
    int rc_c = GNUTLS_E_AGAIN, rc_s = GNUTLS_E_AGAIN;
    for (int i = 0; i < 1000 && (rc_c != 0 || rc_s != 0); i++) {
        if (rc_c != 0)
            rc_c = gnutls_handshake(t->c);
        if (rc_s != 0)
            rc_s = gnutls_handshake(t->s);
        assert_true(rc_c == 0 || rc_c == GNUTLS_E_AGAIN || rc_c == GNUTLS_E_INTERRUPTED);
        assert_true(rc_s == 0 || rc_s == GNUTLS_E_AGAIN || rc_s == GNUTLS_E_INTERRUPTED);
    }
    assert_int_equal(rc_c, 0);
    assert_int_equal(rc_s, 0);
    assert_int_equal(gnutls_protocol_get_version(t->c), GNUTLS_TLS1_3);
}

static void tls_close(struct tls_pair *t)
{
    gnutls_deinit(t->c);
    gnutls_deinit(t->s);
    gnutls_psk_free_client_credentials(t->cc);
    gnutls_psk_free_server_credentials(t->sc);
    close(t->fd[0]);
    close(t->fd[1]);
}

static void test_exporter(void **state)
{
    (void)state;
    struct tls_pair t1, t2;
    uint8_t c1[32], s1[32], c2[32], manual[32], zero[32] = {0};
    struct lr_err err;

    tls_open(&t1);
    /* before the handshake: refused, output zeroed */
    memset(c1, 0xaa, sizeof(c1));
    lr_err_clear(&err);
    assert_int_equal(lr_pair_exporter(t1.c, c1, &err), LR_ETLS);
    assert_non_null(strstr(err.msg, "exporter"));
    assert_memory_equal(c1, zero, 32);

    tls_handshake(&t1);
    assert_int_equal(lr_pair_exporter(t1.c, c1, NULL), 0);
    assert_int_equal(lr_pair_exporter(t1.s, s1, NULL), 0);
    assert_memory_equal(c1, s1, 32); /* both ends agree */
    assert_memory_not_equal(c1, zero, 32);
    /* it is exactly RFC 5705/8446 export with our label and no context */
    assert_int_equal(gnutls_prf_rfc5705(t1.c, strlen(LR_PAIR_EXPORTER_LABEL),
                                        LR_PAIR_EXPORTER_LABEL, 0, NULL, 32, (char *)manual),
                     0);
    assert_memory_equal(manual, c1, 32);
    assert_int_equal(gnutls_prf_rfc5705(t1.c, 5, "other", 0, NULL, 32, (char *)manual), 0);
    assert_memory_not_equal(manual, c1, 32);

    /* another session (same PSK, same peers) exports something else */
    tls_open(&t2);
    tls_handshake(&t2);
    assert_int_equal(lr_pair_exporter(t2.c, c2, NULL), 0);
    assert_memory_not_equal(c1, c2, 32);

    /* and the exporters drive a pairing: same session agrees, a relay's two do not */
    struct lr_pair_code code = {.nameplate = 12, .secret = 345678};
    struct lr_device_id a, b;
    memset(a.b, 1, 32);
    memset(b.b, 2, 32);
    struct lr_cpace ca, cb;
    uint8_t ya[32], yb[32], ta[32], tb[32];
    for (int relay = 0; relay < 2; relay++) {
        assert_int_equal(lr_pair_cpace_start(&ca, LR_CPACE_INITIATOR, &code, &a, &b, c1, ya, NULL),
                         0);
        assert_int_equal(
            lr_pair_cpace_start(&cb, LR_CPACE_RESPONDER, &code, &a, &b, relay ? c2 : s1, yb, NULL),
            0);
        assert_int_equal(lr_cpace_receive(&ca, yb, NULL, 0, ta, NULL), 0);
        assert_int_equal(lr_cpace_receive(&cb, ya, NULL, 0, tb, NULL), 0);
        assert_int_equal(lr_cpace_confirm(&ca, tb, NULL), relay ? LR_EVERIFY : 0);
        lr_cpace_clear(&ca);
        lr_cpace_clear(&cb);
    }
    tls_close(&t1);
    tls_close(&t2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_generator),
        cmocka_unit_test(test_vector_exchange),
        cmocka_unit_test(test_vector_scalar_mult),
        cmocka_unit_test(test_invalid_points_abort),
        cmocka_unit_test(test_pair_agree),
        cmocka_unit_test(test_pair_disagree),
        cmocka_unit_test(test_reflection),
        cmocka_unit_test(test_tag_bitflips),
        cmocka_unit_test(test_call_order_and_limits),
        cmocka_unit_test(test_ci_layout),
        cmocka_unit_test(test_exporter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
