/*
 * test_announce.c - discovery announcement codec: round trip with the real
 * device key, an independent signer (libsodium key + our own SPKI hash),
 * forged signatures, wrong IDs, stale/future timestamps, replays, and
 * truncated, oversized and malformed input.
 */
#include "discovery/announce.h"
#include "hash/hash.h"
#include "identity/identity.h"
#include "util/xalloc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NOW UINT64_C(1700000000000)

struct fx {
    char *dir;
    struct lr_device_id id;
    struct lr_announce_signer *s;
};

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    struct fx *f = lr_xcalloc(1, sizeof(*f));
    const char *base = getenv("TMPDIR");
    f->dir = lr_xasprintf("%s/lr-test-announce-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(lr_identity_create(f->dir, &f->id, NULL), 0);
    char *kp = lr_xasprintf("%s/key.pem", f->dir);
    struct lr_err err = {0};
    int rc = lr_announce_signer_load(kp, &f->s, &err);
    free(kp);
    if (rc != 0)
        fail_msg("signer: %s", err.msg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    lr_announce_signer_free(f->s);
    nftw(f->dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    free(f->dir);
    free(f);
    return 0;
}

static void base_ann(struct lr_announce *a, const char *name)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->name, sizeof(a->name), "%s", name);
    a->ports[0] = 21037;
    a->ports[1] = 4000;
    a->nports = 2;
    a->addrs[0].family = 4;
    memcpy(a->addrs[0].a, "\x0a\x00\x00\x01", 4);
    a->addrs[1].family = 6;
    memset(a->addrs[1].a, 0xfe, 16);
    a->naddrs = 2;
}

static void sign(struct fx *f, struct lr_announce *a, uint64_t now, struct lr_buf *b)
{
    lr_buf_init(b, LR_ANNOUNCE_MAX);
    struct lr_err err = {0};
    int rc = lr_announce_sign(f->s, a, now, b, &err);
    if (rc != 0)
        fail_msg("sign: %s", err.msg);
}

/* Independent signer: raw libsodium key, SPKI hashed here, context prefix per the doc. */
struct rawkey {
    uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    struct lr_device_id id;
};

static void rawkey_new(struct rawkey *k)
{
    assert_true(sodium_init() >= 0);
    crypto_sign_keypair(k->pk, k->sk);
    uint8_t spki[44] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
    memcpy(spki + 12, k->pk, 32);
    struct lr_hash h;
    lr_sha256(spki, sizeof(spki), &h);
    memcpy(k->id.b, h.b, 32);
}

/* Encode `a` as is (pubkey/id untouched) and sign with k->sk. */
static void forge(const struct rawkey *k, const struct lr_announce *a, struct lr_buf *b)
{
    lr_buf_init(b, LR_ANNOUNCE_MAX);
    assert_int_equal(lr_announce_encode_body(a, b, NULL), 0);
    static const char ctx[] = "landropic-announce-v1";
    uint8_t *m = lr_xmalloc(sizeof(ctx) + b->len);
    memcpy(m, ctx, sizeof(ctx));
    memcpy(m + sizeof(ctx), b->data, b->len);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, m, sizeof(ctx) + b->len, k->sk);
    free(m);
    assert_int_equal(lr_buf_put(b, sig, 64), 0);
}

static void test_signer_id_matches_identity(void **state)
{
    struct fx *f = *state;
    assert_true(lr_device_id_eq(lr_announce_signer_id(f->s), &f->id));
}

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    struct lr_announce a, d;
    base_ann(&a, "laptop \xc3\xa9");
    struct lr_buf b;
    sign(f, &a, NOW, &b);
    assert_true(b.len <= LR_ANNOUNCE_MAX);
    struct lr_err err = {0};
    int rc = lr_announce_decode(b.data, b.len, NOW + 5, &d, &err);
    if (rc != 0)
        fail_msg("decode: %s", err.msg);
    assert_true(lr_device_id_eq(&d.id, &f->id));
    assert_memory_equal(d.pubkey, lr_announce_signer_pubkey(f->s), 32);
    assert_int_equal(d.ts_ms, NOW);
    assert_memory_equal(d.nonce, a.nonce, sizeof(a.nonce));
    assert_string_equal(d.name, "laptop \xc3\xa9");
    assert_int_equal(d.nports, 2);
    assert_int_equal(d.ports[0], 21037);
    assert_int_equal(d.ports[1], 4000);
    assert_int_equal(d.naddrs, 2);
    assert_int_equal(d.addrs[0].family, 4);
    assert_memory_equal(d.addrs[0].a, "\x0a\x00\x00\x01", 4);
    assert_int_equal(d.addrs[1].family, 6);
    assert_memory_equal(d.addrs[1].a, a.addrs[1].a, 16);
    /* The body re-encodes to the exact signed bytes. */
    struct lr_buf b2;
    lr_buf_init(&b2, LR_ANNOUNCE_MAX);
    assert_int_equal(lr_announce_encode_body(&d, &b2, NULL), 0);
    assert_int_equal(b2.len, b.len - 64);
    assert_memory_equal(b2.data, b.data, b2.len);
    lr_buf_release(&b2);
    lr_buf_release(&b);
}

static void test_largest_fits(void **state)
{
    struct fx *f = *state;
    struct lr_announce a, d;
    memset(&a, 0, sizeof(a));
    memset(a.name, 'n', LR_ANNOUNCE_NAME_MAX);
    for (size_t i = 0; i < LR_ANNOUNCE_MAX_PORTS; i++)
        a.ports[a.nports++] = (uint16_t)(1000 + i);
    for (size_t i = 0; i < LR_ANNOUNCE_MAX_ADDRS; i++)
        a.addrs[a.naddrs++].family = 6;
    a.has_nameplate = true;
    a.nameplate = LR_ANNOUNCE_NAMEPLATE_MAX;
    struct lr_buf b;
    sign(f, &a, NOW, &b);
    assert_int_equal(b.len, 379);
    assert_int_equal(lr_announce_decode(b.data, b.len, NOW, &d, NULL), 0);
    assert_int_equal(strlen(d.name), LR_ANNOUNCE_NAME_MAX);
    assert_true(d.has_nameplate);
    assert_int_equal(d.nameplate, 999);
    lr_buf_release(&b);
}

static void test_nameplate(void **state)
{
    struct fx *f = *state;
    struct lr_announce a, d;
    struct lr_buf b;
    /* Absent: flag clear, field zero. */
    base_ann(&a, "x");
    sign(f, &a, NOW, &b);
    assert_int_equal(b.data[5], 0);
    assert_int_equal(lr_announce_decode(b.data, b.len, NOW, &d, NULL), 0);
    assert_false(d.has_nameplate);
    lr_buf_release(&b);
    /* Present, 0 is a valid nameplate. */
    base_ann(&a, "x");
    a.has_nameplate = true;
    a.nameplate = 0;
    sign(f, &a, NOW, &b);
    assert_int_equal(b.data[5], LR_ANNOUNCE_FLAG_NAMEPLATE);
    assert_int_equal(lr_announce_decode(b.data, b.len, NOW, &d, NULL), 0);
    assert_true(d.has_nameplate);
    assert_int_equal(d.nameplate, 0);
    lr_buf_release(&b);
    /* Over 999 is refused when signing. */
    base_ann(&a, "x");
    a.has_nameplate = true;
    a.nameplate = 1000;
    lr_buf_init(&b, LR_ANNOUNCE_MAX);
    assert_int_equal(lr_announce_sign(f->s, &a, NOW, &b, NULL), LR_EBADVAL);
    lr_buf_release(&b);
}

static void test_sign_rejects_bad_fields(void **state)
{
    struct fx *f = *state;
    struct lr_announce a;
    struct lr_buf b;
    lr_buf_init(&b, LR_ANNOUNCE_MAX);
    base_ann(&a, "");
    assert_int_equal(lr_announce_sign(f->s, &a, NOW, &b, NULL), LR_EBADVAL);
    base_ann(&a, "a\nb");
    assert_int_equal(lr_announce_sign(f->s, &a, NOW, &b, NULL), LR_EBADVAL);
    base_ann(&a, "x");
    memset(a.name, 'x', sizeof(a.name)); /* 65 bytes, no NUL */
    assert_int_equal(lr_announce_sign(f->s, &a, NOW, &b, NULL), LR_EBADVAL);
    base_ann(&a, "x");
    a.nports = LR_ANNOUNCE_MAX_PORTS + 1;
    assert_int_equal(lr_announce_sign(f->s, &a, NOW, &b, NULL), LR_ETOOBIG);
    base_ann(&a, "x");
    a.ports[1] = 0;
    assert_int_equal(lr_announce_sign(f->s, &a, NOW, &b, NULL), LR_EBADVAL);
    base_ann(&a, "x");
    a.addrs[0].family = 5;
    assert_int_equal(lr_announce_sign(f->s, &a, NOW, &b, NULL), LR_EBADVAL);
    lr_buf_release(&b);
}

static void test_timestamps_increase(void **state)
{
    struct fx *f = *state;
    struct lr_announce a1, a2, a3;
    struct lr_buf b1, b2, b3;
    base_ann(&a1, "x");
    base_ann(&a2, "x");
    base_ann(&a3, "x");
    sign(f, &a1, NOW, &b1);
    sign(f, &a2, NOW, &b2);      /* same clock reading */
    sign(f, &a3, NOW - 10, &b3); /* clock stepped back */
    assert_true(a2.ts_ms > a1.ts_ms);
    assert_true(a3.ts_ms > a2.ts_ms);
    assert_memory_not_equal(a1.nonce, a2.nonce, sizeof(a1.nonce));
    lr_buf_release(&b1);
    lr_buf_release(&b2);
    lr_buf_release(&b3);
}

static void test_independent_signer_accepted(void **state)
{
    (void)state;
    struct rawkey k;
    rawkey_new(&k);
    struct lr_announce a, d;
    base_ann(&a, "other");
    memcpy(a.pubkey, k.pk, 32);
    a.id = k.id;
    a.ts_ms = NOW;
    struct lr_buf b;
    forge(&k, &a, &b);
    struct lr_err err = {0};
    int rc = lr_announce_decode(b.data, b.len, NOW, &d, &err);
    if (rc != 0)
        fail_msg("decode: %s", err.msg);
    assert_true(lr_device_id_eq(&d.id, &k.id));
    lr_buf_release(&b);
}

static void test_forged_signature(void **state)
{
    struct fx *f = *state;
    struct lr_announce a, d;
    base_ann(&a, "x");
    struct lr_buf b;
    sign(f, &a, NOW, &b);
    /* Any flipped bit, in the signature or in the signed body, fails verification. */
    size_t where[] = {b.len - 1,   b.len - 64,     6 /* pubkey */,
                      70 /* ts */, 90 /* nonce */, b.len - 70 /* addresses */};
    for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
        b.data[where[i]] ^= 0x01;
        struct lr_err err = {0};
        assert_int_equal(lr_announce_decode(b.data, b.len, NOW, &d, &err), LR_EVERIFY);
        assert_true(err.msg[0] != '\0');
        for (size_t j = 0; j < sizeof(d); j++)
            assert_int_equal(((uint8_t *)&d)[j], 0);
        b.data[where[i]] ^= 0x01;
    }
    assert_int_equal(lr_announce_decode(b.data, b.len, NOW, &d, NULL), 0);

    /* Our key and ID, signed by somebody else. */
    struct rawkey k;
    rawkey_new(&k);
    struct lr_buf fb;
    forge(&k, &a, &fb);
    assert_int_equal(lr_announce_decode(fb.data, fb.len, NOW, &d, NULL), LR_EVERIFY);
    lr_buf_release(&fb);
    lr_buf_release(&b);
}

static void test_wrong_device_id(void **state)
{
    struct fx *f = *state;
    struct rawkey k;
    rawkey_new(&k);
    struct lr_announce a, d;
    base_ann(&a, "impostor");
    /* Attacker's own key, validly signed, claiming the victim's device ID. */
    memcpy(a.pubkey, k.pk, 32);
    a.id = f->id;
    a.ts_ms = NOW;
    struct lr_buf b;
    forge(&k, &a, &b);
    struct lr_err err = {0};
    assert_int_equal(lr_announce_decode(b.data, b.len, NOW, &d, &err), LR_EVERIFY);
    assert_non_null(strstr(err.msg, "device ID"));
    lr_buf_release(&b);
    /* The victim's public key with the attacker's signature. */
    memcpy(a.pubkey, lr_announce_signer_pubkey(f->s), 32);
    forge(&k, &a, &b);
    assert_int_equal(lr_announce_decode(b.data, b.len, NOW, &d, NULL), LR_EVERIFY);
    lr_buf_release(&b);
}

static void test_freshness(void **state)
{
    struct fx *f = *state;
    struct lr_announce a, d;
    base_ann(&a, "x");
    struct lr_buf b;
    sign(f, &a, NOW, &b);
    uint64_t ts = a.ts_ms;
    assert_int_equal(lr_announce_decode(b.data, b.len, ts + LR_ANNOUNCE_MAX_AGE_MS, &d, NULL), 0);
    assert_int_equal(lr_announce_decode(b.data, b.len, ts + LR_ANNOUNCE_MAX_AGE_MS + 1, &d, NULL),
                     LR_EVERIFY);
    assert_int_equal(lr_announce_decode(b.data, b.len, ts - LR_ANNOUNCE_MAX_SKEW_MS, &d, NULL), 0);
    assert_int_equal(lr_announce_decode(b.data, b.len, ts - LR_ANNOUNCE_MAX_SKEW_MS - 1, &d, NULL),
                     LR_EVERIFY);
    /* parse alone does not judge time. */
    assert_int_equal(lr_announce_parse(b.data, b.len, &d, NULL), 0);
    d.ts_ms = UINT64_MAX;
    assert_int_equal(lr_announce_check_fresh(&d, NOW, NULL), LR_EVERIFY);
    d.ts_ms = 0;
    assert_int_equal(lr_announce_check_fresh(&d, NOW, NULL), LR_EVERIFY);
    lr_buf_release(&b);
}

static void test_replay(void **state)
{
    struct fx *f = *state;
    struct lr_announce_replay *r = lr_announce_replay_new(4);
    struct lr_announce a1, a2, d;
    base_ann(&a1, "x");
    base_ann(&a2, "x");
    struct lr_buf b1, b2;
    sign(f, &a1, NOW, &b1);
    sign(f, &a2, NOW + 1000, &b2);

    assert_int_equal(lr_announce_decode(b1.data, b1.len, NOW, &d, NULL), 0);
    assert_int_equal(lr_announce_replay_check(r, &d, NOW, NULL), 0);
    /* The same datagram again. */
    assert_int_equal(lr_announce_decode(b1.data, b1.len, NOW, &d, NULL), 0);
    struct lr_err err = {0};
    assert_int_equal(lr_announce_replay_check(r, &d, NOW, &err), LR_EVERIFY);
    assert_non_null(strstr(err.msg, "replayed"));
    /* A newer one is fine, after which the older one is a replay too. */
    assert_int_equal(lr_announce_decode(b2.data, b2.len, NOW + 1000, &d, NULL), 0);
    assert_int_equal(lr_announce_replay_check(r, &d, NOW + 1000, NULL), 0);
    assert_int_equal(lr_announce_decode(b1.data, b1.len, NOW + 1000, &d, NULL), 0);
    assert_int_equal(lr_announce_replay_check(r, &d, NOW + 1000, NULL), LR_EVERIFY);
    lr_buf_release(&b1);
    lr_buf_release(&b2);
    lr_announce_replay_free(r);
}

static void test_replay_cache_bounded(void **state)
{
    (void)state;
    struct lr_announce_replay *r = lr_announce_replay_new(2);
    struct lr_announce a[3];
    for (int i = 0; i < 3; i++) {
        memset(&a[i], 0, sizeof(a[i]));
        a[i].id.b[0] = (uint8_t)(i + 1);
    }
    a[0].ts_ms = NOW - LR_ANNOUNCE_MAX_AGE_MS + 10;
    a[1].ts_ms = NOW;
    a[2].ts_ms = NOW;
    assert_int_equal(lr_announce_replay_check(r, &a[0], NOW, NULL), 0);
    assert_int_equal(lr_announce_replay_check(r, &a[1], NOW, NULL), 0);
    /* Full, and both devices could still be replayed: the newcomer is refused. */
    assert_int_equal(lr_announce_replay_check(r, &a[2], NOW, NULL), LR_EBUSY);
    /* Once a[0]'s newest timestamp is out of the window its slot is reused... */
    assert_int_equal(lr_announce_replay_check(r, &a[2], NOW + 20, NULL), 0);
    /* ...and a[1], still fresh, is remembered. */
    assert_int_equal(lr_announce_replay_check(r, &a[1], NOW + 20, NULL), LR_EVERIFY);
    lr_announce_replay_free(r);
    lr_announce_replay_free(NULL);
}

static void test_truncated_and_oversized(void **state)
{
    struct fx *f = *state;
    struct lr_announce a, d;
    base_ann(&a, "truncate-me");
    struct lr_buf b;
    sign(f, &a, NOW, &b);
    for (size_t n = 0; n < b.len; n++) {
        uint8_t *copy = lr_xmemdup(b.data, b.len); /* exact-size heap copy for ASan */
        struct lr_err err = {0};
        int rc = lr_announce_decode(copy, n, NOW, &d, &err);
        assert_true(rc < 0);
        assert_true(err.msg[0] != '\0');
        free(copy);
    }
    uint8_t big[LR_ANNOUNCE_MAX + 1];
    memset(big, 0, sizeof(big));
    memcpy(big, b.data, b.len);
    assert_int_equal(lr_announce_decode(big, sizeof(big), NOW, &d, NULL), LR_ETOOBIG);
    /* One trailing byte: the signature is then read from the wrong place. */
    assert_int_equal(lr_announce_decode(big, b.len + 1, NOW, &d, NULL), LR_EPROTO);
    assert_int_equal(lr_announce_decode(NULL, 0, NOW, &d, NULL), LR_ETRUNC);
    lr_buf_release(&b);
}

/* Hand-built bodies with a valid signature, so the field checks themselves are hit. */
static void test_malformed_fields(void **state)
{
    (void)state;
    struct rawkey k;
    rawkey_new(&k);
    struct {
        const char *what;
        size_t off; /* offset from the start of the name length byte */
        uint8_t val;
        int want;
    } cases[] = {
        {"empty name", 0, 0, LR_EBADVAL},
        {"name 65", 0, 65, LR_ETOOBIG},
        {"control char in name", 1, 0x07, LR_EBADVAL},
        {"NUL in name", 1, 0x00, LR_EBADVAL},
        {"invalid utf-8", 1, 0xff, LR_EBADVAL},
        {"9 ports", 2, 9, LR_ETOOBIG},
        {"port 0 (hi)", 3, 0, 0 /* low byte still set */},
        {"9 addrs", 2 + 1 + 4, 9, LR_ETOOBIG},
        {"family 5", 2 + 1 + 4 + 1, 5, LR_EBADVAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lr_announce a, d;
        memset(&a, 0, sizeof(a));
        a.name[0] = 'n';
        a.ports[0] = 0x0101;
        a.ports[1] = 0x0202;
        a.nports = 2;
        a.addrs[0].family = 4;
        a.naddrs = 1;
        memcpy(a.pubkey, k.pk, 32);
        a.id = k.id;
        a.ts_ms = NOW;
        struct lr_buf b;
        lr_buf_init(&b, LR_ANNOUNCE_MAX);
        assert_int_equal(lr_announce_encode_body(&a, &b, NULL), 0);
        size_t name_off = 4 + 2 + 32 + 32 + 8 + 16;
        assert_int_equal(b.data[name_off], 1);
        b.data[name_off + cases[i].off] = cases[i].val;
        /* sign the modified body */
        static const char ctx[] = "landropic-announce-v1";
        uint8_t m[sizeof(ctx) + LR_ANNOUNCE_MAX];
        memcpy(m, ctx, sizeof(ctx));
        memcpy(m + sizeof(ctx), b.data, b.len);
        uint8_t sig[64];
        crypto_sign_detached(sig, NULL, m, sizeof(ctx) + b.len, k.sk);
        lr_buf_put(&b, sig, 64);
        struct lr_err err = {0};
        int rc = lr_announce_decode(b.data, b.len, NOW, &d, &err);
        if (rc != cases[i].want)
            fail_msg("%s: got %d (%s), want %d", cases[i].what, rc, err.msg, cases[i].want);
        lr_buf_release(&b);
    }
    /* Header faults. */
    struct lr_announce a, d;
    memset(&a, 0, sizeof(a));
    a.name[0] = 'n';
    memcpy(a.pubkey, k.pk, 32);
    a.id = k.id;
    a.ts_ms = NOW;
    struct lr_buf b;
    forge(&k, &a, &b);
    size_t hdr[] = {0, 4, 5};
    int want[] = {LR_EPROTO, LR_EPROTO, LR_EPROTO};
    for (size_t i = 0; i < 3; i++) {
        b.data[hdr[i]] ^= 0x40;
        assert_int_equal(lr_announce_decode(b.data, b.len, NOW, &d, NULL), want[i]);
        b.data[hdr[i]] ^= 0x40;
    }
    assert_int_equal(lr_announce_decode(b.data, b.len, NOW, &d, NULL), 0);
    lr_buf_release(&b);
}

/* Sign body[0..n) with k and decode it. */
static int decode_signed(const struct rawkey *k, struct lr_buf *b)
{
    static const char ctx[] = "landropic-announce-v1";
    uint8_t m[sizeof(ctx) + LR_ANNOUNCE_MAX];
    memcpy(m, ctx, sizeof(ctx));
    memcpy(m + sizeof(ctx), b->data, b->len);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, m, sizeof(ctx) + b->len, k->sk);
    lr_buf_put(b, sig, 64);
    struct lr_announce d;
    return lr_announce_decode(b->data, b->len, NOW, &d, NULL);
}

static void test_nameplate_malformed(void **state)
{
    (void)state;
    struct rawkey k;
    rawkey_new(&k);
    struct lr_announce a;
    memset(&a, 0, sizeof(a));
    a.name[0] = 'n';
    memcpy(a.pubkey, k.pk, 32);
    a.id = k.id;
    a.ts_ms = NOW;
    a.has_nameplate = true;
    a.nameplate = 999;
    struct lr_buf b;
    /* 1000 on the wire. */
    lr_buf_init(&b, LR_ANNOUNCE_MAX);
    assert_int_equal(lr_announce_encode_body(&a, &b, NULL), 0);
    b.data[b.len - 2] = 0x03;
    b.data[b.len - 1] = 0xe8;
    assert_int_equal(decode_signed(&k, &b), LR_EBADVAL);
    lr_buf_release(&b);
    /* Flag set, field missing. */
    lr_buf_init(&b, LR_ANNOUNCE_MAX);
    assert_int_equal(lr_announce_encode_body(&a, &b, NULL), 0);
    b.len -= 2;
    assert_int_equal(decode_signed(&k, &b), LR_ETRUNC);
    lr_buf_release(&b);
    /* Field present, flag clear: trailing bytes. */
    lr_buf_init(&b, LR_ANNOUNCE_MAX);
    assert_int_equal(lr_announce_encode_body(&a, &b, NULL), 0);
    b.data[5] = 0;
    assert_int_equal(decode_signed(&k, &b), LR_EPROTO);
    lr_buf_release(&b);
    /* Valid, for contrast. */
    lr_buf_init(&b, LR_ANNOUNCE_MAX);
    assert_int_equal(lr_announce_encode_body(&a, &b, NULL), 0);
    assert_int_equal(decode_signed(&k, &b), 0);
    lr_buf_release(&b);
}

static void test_port_zero_rejected(void **state)
{
    (void)state;
    struct rawkey k;
    rawkey_new(&k);
    struct lr_announce a, d;
    memset(&a, 0, sizeof(a));
    a.name[0] = 'n';
    a.ports[0] = 0x0101;
    a.nports = 1;
    memcpy(a.pubkey, k.pk, 32);
    a.id = k.id;
    a.ts_ms = NOW;
    struct lr_buf b;
    lr_buf_init(&b, LR_ANNOUNCE_MAX);
    assert_int_equal(lr_announce_encode_body(&a, &b, NULL), 0);
    size_t port_off = 4 + 2 + 32 + 32 + 8 + 16 + 2 + 1;
    b.data[port_off] = 0;
    b.data[port_off + 1] = 0;
    static const char ctx[] = "landropic-announce-v1";
    uint8_t m[sizeof(ctx) + LR_ANNOUNCE_MAX];
    memcpy(m, ctx, sizeof(ctx));
    memcpy(m + sizeof(ctx), b.data, b.len);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, m, sizeof(ctx) + b.len, k.sk);
    lr_buf_put(&b, sig, 64);
    assert_int_equal(lr_announce_decode(b.data, b.len, NOW, &d, NULL), LR_EBADVAL);
    lr_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_signer_id_matches_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_largest_fits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_rejects_bad_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nameplate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timestamps_increase, setup, teardown),
        cmocka_unit_test(test_independent_signer_accepted),
        cmocka_unit_test_setup_teardown(test_forged_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_device_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freshness, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay, setup, teardown),
        cmocka_unit_test(test_replay_cache_bounded),
        cmocka_unit_test_setup_teardown(test_truncated_and_oversized, setup, teardown),
        cmocka_unit_test(test_malformed_fields),
        cmocka_unit_test(test_port_zero_rejected),
        cmocka_unit_test(test_nameplate_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
