/* cpace.c - CPace on ristretto255/SHA-512 (draft-irtf-cfrg-cpace-21) with key confirmation. */
#include "pair/cpace.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <sodium.h>
#include <string.h>

#define DSI "CPaceRistretto255"
#define DSI_ISK "CPaceRistretto255_ISK"
#define SHA512_BLOCK 128 /* H.s_in_bytes */
#define PAIR_CI_TAG "landropic-pair/1"
#define CONFIRM_INFO_A "landropic-pair/1 confirm initiator"
#define CONFIRM_INFO_B "landropic-pair/1 confirm responder"
_Static_assert(sizeof(CONFIRM_INFO_A) <= 64 && sizeof(CONFIRM_INFO_B) <= 64, "info_buf");

/* LEB128 of n into out (at most 10 bytes); returns its length. */
static size_t leb128(size_t n, uint8_t out[10])
{
    size_t i = 0;
    do {
        uint8_t b = (uint8_t)(n & 0x7f);
        n >>= 7;
        out[i++] = (uint8_t)(n ? b | 0x80 : b);
    } while (n);
    return i;
}

/* Feed prepend_len(p[0..n)) to the hash. */
static void hash_lv(crypto_hash_sha512_state *st, const void *p, size_t n)
{
    uint8_t len[10];
    crypto_hash_sha512_update(st, len, leb128(n, len));
    if (n)
        crypto_hash_sha512_update(st, p, n);
}

static int check_inputs(size_t prs_len, size_t ci_len, size_t sid_len, size_t ad_len,
                        struct lr_err *err)
{
    if (prs_len > LR_CPACE_PRS_MAX)
        return lr_err_set(err, LR_ETOOBIG, "cpace: password of %zu bytes over %d", prs_len,
                          LR_CPACE_PRS_MAX);
    if (ci_len > LR_CPACE_CI_MAX)
        return lr_err_set(err, LR_ETOOBIG, "cpace: channel identifier of %zu bytes over %d", ci_len,
                          LR_CPACE_CI_MAX);
    if (sid_len > LR_CPACE_SID_MAX)
        return lr_err_set(err, LR_ETOOBIG, "cpace: session id of %zu bytes over %d", sid_len,
                          LR_CPACE_SID_MAX);
    if (ad_len > LR_CPACE_AD_MAX)
        return lr_err_set(err, LR_ETOOBIG, "cpace: associated data of %zu bytes over %d", ad_len,
                          LR_CPACE_AD_MAX);
    return 0;
}

int lr__cpace_generator_hash(const void *prs, size_t prs_len, const void *ci, size_t ci_len,
                             const void *sid, size_t sid_len, uint8_t out[64])
{
    static const uint8_t zeros[SHA512_BLOCK];
    crypto_hash_sha512_state st;
    uint8_t tmp[10];
    if (prs_len > LR_CPACE_PRS_MAX || ci_len > LR_CPACE_CI_MAX || sid_len > LR_CPACE_SID_MAX)
        return LR_ETOOBIG;
    /* generator_string = lv_cat(DSI, PRS, zero_bytes(len_zpad), CI, sid), where the
     * padding makes DSI and PRS fill the first hash block. */
    size_t used = leb128(prs_len, tmp) + prs_len + leb128(sizeof(DSI) - 1, tmp) + sizeof(DSI) - 1;
    size_t zpad = used + 1 < SHA512_BLOCK ? SHA512_BLOCK - 1 - used : 0;
    crypto_hash_sha512_init(&st);
    hash_lv(&st, DSI, sizeof(DSI) - 1);
    hash_lv(&st, prs, prs_len);
    hash_lv(&st, zeros, zpad);
    hash_lv(&st, ci, ci_len);
    hash_lv(&st, sid, sid_len);
    crypto_hash_sha512_final(&st, out);
    sodium_memzero(&st, sizeof(st));
    return 0;
}

int lr__cpace_generator(const void *prs, size_t prs_len, const void *ci, size_t ci_len,
                        const void *sid, size_t sid_len, uint8_t out[LR_CPACE_POINT_LEN])
{
    uint8_t h[64];
    int rc = lr__cpace_generator_hash(prs, prs_len, ci, ci_len, sid, sid_len, h);
    if (rc == 0 && crypto_core_ristretto255_from_hash(out, h) != 0)
        rc = LR_EINTERNAL;
    sodium_memzero(h, sizeof(h));
    return rc;
}

int lr__cpace_scalar_mult_vfy(const uint8_t s[LR_CPACE_SCALAR_LEN],
                              const uint8_t x[LR_CPACE_POINT_LEN], uint8_t out[LR_CPACE_POINT_LEN])
{
    /* libsodium decodes x (rejecting most non-canonical encodings) and refuses
     * an identity result: the draft's conditions for returning G.I. But
     * libsodium 1.0.18 ignores bit 255 while decoding, so an encoding with it
     * set (a value >= 2^255 > p, invalid per RFC 9496) would be accepted as
     * an alias of a valid point: refuse it here. */
    if ((x[LR_CPACE_POINT_LEN - 1] & 0x80) || crypto_scalarmult_ristretto255(out, s, x) != 0) {
        memset(out, 0, LR_CPACE_POINT_LEN);
        return -1;
    }
    return 0;
}

static void fail(struct lr_cpace *c)
{
    sodium_memzero(c, sizeof(*c));
    c->state = LR_CPACE_FAILED;
}

int lr__cpace_start_with_scalar(struct lr_cpace *c, enum lr_cpace_role role, const void *prs,
                                size_t prs_len, const void *ci, size_t ci_len, const void *sid,
                                size_t sid_len, const void *ad, size_t ad_len,
                                const uint8_t scalar[LR_CPACE_SCALAR_LEN],
                                uint8_t y_out[LR_CPACE_POINT_LEN], struct lr_err *err)
{
    uint8_t g[LR_CPACE_POINT_LEN];
    int rc;
    sodium_memzero(c, sizeof(*c));
    memset(y_out, 0, LR_CPACE_POINT_LEN);
    if (role != LR_CPACE_INITIATOR && role != LR_CPACE_RESPONDER)
        return lr_err_set(err, LR_EINTERNAL, "cpace: bad role %d", (int)role);
    rc = check_inputs(prs_len, ci_len, sid_len, ad_len, err);
    if (rc < 0)
        return rc;
    if (sodium_init() < 0)
        return lr_err_set(err, LR_EINTERNAL, "cpace: libsodium failed to initialise");
    rc = lr__cpace_generator(prs, prs_len, ci, ci_len, sid, sid_len, g);
    if (rc == 0 && crypto_scalarmult_ristretto255(c->own_y, scalar, g) != 0)
        rc = LR_EINTERNAL; /* only a zero scalar gets here */
    sodium_memzero(g, sizeof(g));
    if (rc < 0) {
        fail(c);
        return lr_err_set(err, rc, "cpace: cannot compute our share");
    }
    c->role = role;
    memcpy(c->scalar, scalar, LR_CPACE_SCALAR_LEN);
    if (sid_len)
        memcpy(c->sid, sid, sid_len);
    c->sid_len = sid_len;
    if (ad_len)
        memcpy(c->own_ad, ad, ad_len);
    c->own_ad_len = ad_len;
    c->state = LR_CPACE_STARTED;
    memcpy(y_out, c->own_y, LR_CPACE_POINT_LEN);
    return 0;
}

int lr_cpace_start(struct lr_cpace *c, enum lr_cpace_role role, const void *prs, size_t prs_len,
                   const void *ci, size_t ci_len, const void *sid, size_t sid_len, const void *ad,
                   size_t ad_len, uint8_t y_out[LR_CPACE_POINT_LEN], struct lr_err *err)
{
    uint8_t y[LR_CPACE_SCALAR_LEN];
    if (sodium_init() < 0) {
        sodium_memzero(c, sizeof(*c));
        memset(y_out, 0, LR_CPACE_POINT_LEN);
        return lr_err_set(err, LR_EINTERNAL, "cpace: libsodium failed to initialise");
    }
    crypto_core_ristretto255_scalar_random(y);
    int rc = lr__cpace_start_with_scalar(c, role, prs, prs_len, ci, ci_len, sid, sid_len, ad,
                                         ad_len, y, y_out, err);
    sodium_memzero(y, sizeof(y));
    return rc;
}

/* HMAC-SHA256 under HKDF-Expand(prk, info) over lv_cat(y, ad). */
static int confirm_tag(uint8_t prk[32], const char *info, const uint8_t *y, const uint8_t *ad,
                       size_t ad_len, uint8_t tag[LR_CPACE_TAG_LEN])
{
    uint8_t key[32], msg[1 + LR_CPACE_POINT_LEN + 10 + LR_CPACE_AD_MAX], info_buf[64];
    size_t n = 0, info_len = strlen(info);
    /* gnutls_datum_t holds non-const pointers: give it our own copy. */
    memcpy(info_buf, info, info_len);
    gnutls_datum_t k = {prk, 32};
    gnutls_datum_t in = {info_buf, (unsigned)info_len};
    int rc = 0;
    n += leb128(LR_CPACE_POINT_LEN, msg);
    memcpy(msg + n, y, LR_CPACE_POINT_LEN);
    n += LR_CPACE_POINT_LEN;
    n += leb128(ad_len, msg + n);
    if (ad_len)
        memcpy(msg + n, ad, ad_len);
    n += ad_len;
    if (gnutls_hkdf_expand(GNUTLS_MAC_SHA256, &k, &in, key, sizeof(key)) < 0 ||
        gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, sizeof(key), msg, n, tag) < 0)
        rc = LR_EINTERNAL;
    sodium_memzero(key, sizeof(key));
    return rc;
}

int lr_cpace_receive(struct lr_cpace *c, const uint8_t peer_y[LR_CPACE_POINT_LEN],
                     const void *peer_ad, size_t peer_ad_len, uint8_t tag_out[LR_CPACE_TAG_LEN],
                     struct lr_err *err)
{
    uint8_t k[LR_CPACE_POINT_LEN], prk[32];
    crypto_hash_sha512_state st;
    int rc;
    memset(tag_out, 0, LR_CPACE_TAG_LEN);
    if (c->state != LR_CPACE_STARTED)
        return lr_err_set(err, LR_EINTERNAL, "cpace: receive in state %d", (int)c->state);
    if (peer_ad_len > LR_CPACE_AD_MAX) {
        fail(c);
        return lr_err_set(err, LR_ETOOBIG, "cpace: peer's associated data of %zu bytes over %d",
                          peer_ad_len, LR_CPACE_AD_MAX);
    }
    if (lr__cpace_scalar_mult_vfy(c->scalar, peer_y, k) != 0) {
        fail(c);
        return lr_err_set(err, LR_EPROTO,
                          "cpace: peer's share is not a valid ristretto255 point or is the "
                          "identity");
    }
    /* Party A is the initiator: order the transcript by role, not by who we are. */
    const uint8_t *ya = c->role == LR_CPACE_INITIATOR ? c->own_y : peer_y;
    const uint8_t *yb = c->role == LR_CPACE_INITIATOR ? peer_y : c->own_y;
    const void *ada = c->role == LR_CPACE_INITIATOR ? (const void *)c->own_ad : peer_ad;
    const void *adb = c->role == LR_CPACE_INITIATOR ? peer_ad : (const void *)c->own_ad;
    size_t ada_len = c->role == LR_CPACE_INITIATOR ? c->own_ad_len : peer_ad_len;
    size_t adb_len = c->role == LR_CPACE_INITIATOR ? peer_ad_len : c->own_ad_len;

    crypto_hash_sha512_init(&st);
    hash_lv(&st, DSI_ISK, sizeof(DSI_ISK) - 1);
    hash_lv(&st, c->sid, c->sid_len);
    hash_lv(&st, k, sizeof(k));
    hash_lv(&st, ya, LR_CPACE_POINT_LEN);
    hash_lv(&st, ada, ada_len);
    hash_lv(&st, yb, LR_CPACE_POINT_LEN);
    hash_lv(&st, adb, adb_len);
    crypto_hash_sha512_final(&st, c->isk);
    sodium_memzero(&st, sizeof(st));
    sodium_memzero(k, sizeof(k));
    sodium_memzero(c->scalar, sizeof(c->scalar)); /* never reused */

    gnutls_datum_t ikm = {c->isk, LR_CPACE_ISK_LEN};
    gnutls_datum_t salt = {c->sid, (unsigned)c->sid_len};
    rc = gnutls_hkdf_extract(GNUTLS_MAC_SHA256, &ikm, &salt, prk) < 0 ? LR_EINTERNAL : 0;
    if (rc == 0)
        rc = confirm_tag(prk, CONFIRM_INFO_A, ya, ada, ada_len,
                         c->role == LR_CPACE_INITIATOR ? tag_out : c->peer_tag);
    if (rc == 0)
        rc = confirm_tag(prk, CONFIRM_INFO_B, yb, adb, adb_len,
                         c->role == LR_CPACE_INITIATOR ? c->peer_tag : tag_out);
    sodium_memzero(prk, sizeof(prk));
    if (rc < 0) {
        fail(c);
        memset(tag_out, 0, LR_CPACE_TAG_LEN);
        return lr_err_set(err, rc, "cpace: key confirmation derivation failed (GnuTLS)");
    }
    c->state = LR_CPACE_KEYED;
    return 0;
}

int lr_cpace_confirm(struct lr_cpace *c, const uint8_t peer_tag[LR_CPACE_TAG_LEN],
                     struct lr_err *err)
{
    if (c->state != LR_CPACE_KEYED)
        return lr_err_set(err, LR_EINTERNAL, "cpace: confirm in state %d", (int)c->state);
    if (sodium_memcmp(c->peer_tag, peer_tag, LR_CPACE_TAG_LEN) != 0) {
        fail(c);
        return lr_err_set(err, LR_EVERIFY,
                          "cpace: peer's confirmation does not match (different code, or "
                          "someone in between)");
    }
    c->state = LR_CPACE_CONFIRMED;
    return 0;
}

int lr_cpace_isk(const struct lr_cpace *c, uint8_t out[LR_CPACE_ISK_LEN])
{
    if (c->state != LR_CPACE_KEYED && c->state != LR_CPACE_CONFIRMED) {
        memset(out, 0, LR_CPACE_ISK_LEN);
        return LR_EINTERNAL;
    }
    memcpy(out, c->isk, LR_CPACE_ISK_LEN);
    return 0;
}

void lr_cpace_clear(struct lr_cpace *c)
{
    if (c)
        sodium_memzero(c, sizeof(*c));
}

int lr__pair_cpace_ci(uint16_t nameplate, const struct lr_device_id *initiator,
                      const struct lr_device_id *responder, uint8_t *out, size_t cap)
{
    char np[LR_PAIR_NAMEPLATE_DIGITS + 1];
    size_t need = 1 + (sizeof(PAIR_CI_TAG) - 1) + 1 + LR_PAIR_NAMEPLATE_DIGITS + 2 * (1 + 32);
    size_t n = 0;
    if (cap < need)
        return LR_ETOOBIG;
    lr_pair_nameplate_format(nameplate, np);
    /* All lengths are < 128, so each LEB128 prefix is the length byte itself. */
    out[n++] = (uint8_t)(sizeof(PAIR_CI_TAG) - 1);
    memcpy(out + n, PAIR_CI_TAG, sizeof(PAIR_CI_TAG) - 1);
    n += sizeof(PAIR_CI_TAG) - 1;
    out[n++] = LR_PAIR_NAMEPLATE_DIGITS;
    memcpy(out + n, np, LR_PAIR_NAMEPLATE_DIGITS);
    n += LR_PAIR_NAMEPLATE_DIGITS;
    out[n++] = LR_DEVICE_ID_LEN;
    memcpy(out + n, initiator->b, LR_DEVICE_ID_LEN);
    n += LR_DEVICE_ID_LEN;
    out[n++] = LR_DEVICE_ID_LEN;
    memcpy(out + n, responder->b, LR_DEVICE_ID_LEN);
    n += LR_DEVICE_ID_LEN;
    return (int)n;
}

int lr_pair_cpace_start(struct lr_cpace *c, enum lr_cpace_role role,
                        const struct lr_pair_code *code, const struct lr_device_id *initiator,
                        const struct lr_device_id *responder,
                        const uint8_t exporter[LR_PAIR_EXPORTER_LEN],
                        uint8_t y_out[LR_CPACE_POINT_LEN], struct lr_err *err)
{
    uint8_t ci[128];
    char prs[LR_PAIR_SECRET_DIGITS];
    int n = lr__pair_cpace_ci(code->nameplate, initiator, responder, ci, sizeof(ci));
    if (n < 0) {
        sodium_memzero(c, sizeof(*c));
        memset(y_out, 0, LR_CPACE_POINT_LEN);
        return lr_err_set(err, LR_EINTERNAL, "cpace: channel identifier does not fit");
    }
    lr_pair_code_secret_str(code, prs);
    int rc = lr_cpace_start(c, role, prs, sizeof(prs), ci, (size_t)n, exporter,
                            LR_PAIR_EXPORTER_LEN, NULL, 0, y_out, err);
    sodium_memzero(prs, sizeof(prs));
    return rc;
}

int lr_pair_exporter(void *session, uint8_t out[LR_PAIR_EXPORTER_LEN], struct lr_err *err)
{
    gnutls_session_t s = session;
    memset(out, 0, LR_PAIR_EXPORTER_LEN);
    /* GnuTLS refuses (GNUTLS_E_INVALID_REQUEST) before the handshake is done. */
    int rc = gnutls_prf_rfc5705(s, sizeof(LR_PAIR_EXPORTER_LABEL) - 1, LR_PAIR_EXPORTER_LABEL, 0,
                                NULL, LR_PAIR_EXPORTER_LEN, (char *)out);
    if (rc < 0) {
        memset(out, 0, LR_PAIR_EXPORTER_LEN);
        return lr_err_set(err, LR_ETLS, "pairing: TLS exporter: %s", gnutls_strerror(rc));
    }
    return 0;
}
