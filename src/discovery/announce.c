/*
 * announce.c - discovery announcement codec, signer and replay guard.
 *
 * Signing uses libsodium's Ed25519 on the seed GnuTLS exports from key.pem
 * (pure Ed25519, RFC 8032: the same signature GnuTLS would make), so the hot
 * receive path (verify) needs no GnuTLS objects at all.
 */
#include "discovery/announce.h"

#include "hash/hash.h"
#include "proto/proto.h"
#include "util/fsutil.h"
#include "util/rd.h"
#include "util/xalloc.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sodium.h>

#include <errno.h>
#include <string.h>
#include <time.h>

static const uint8_t magic[4] = {'L', 'R', 'D', 'A'};
/* Domain separation: this key also signs TLS handshakes and certificates. */
static const char sig_context[] = "landropic-announce-v1";
/* DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQ{SEQ{OID 1.3.101.112}, BITSTR}. */
static const uint8_t spki_prefix[12] = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                        0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};

#define KEY_PEM_MAX 16384

struct lr_announce_signer {
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    struct lr_device_id id;
    uint64_t last_ts;
};

struct replay_ent {
    struct lr_device_id id;
    uint64_t ts;
};

struct lr_announce_replay {
    struct replay_ent *ents;
    size_t n, cap;
};

uint64_t lr_announce_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)(ts.tv_nsec / 1000000);
}

static void id_of_pubkey(const uint8_t pk[32], struct lr_device_id *out)
{
    uint8_t spki[sizeof(spki_prefix) + 32];
    memcpy(spki, spki_prefix, sizeof(spki_prefix));
    memcpy(spki + sizeof(spki_prefix), pk, 32);
    struct lr_hash h;
    lr_sha256(spki, sizeof(spki), &h);
    memcpy(out->b, h.b, LR_DEVICE_ID_LEN);
}

/* ---- signer ---- */

int lr_announce_signer_load(const char *key_path, struct lr_announce_signer **out,
                            struct lr_err *err)
{
    *out = NULL;
    if (sodium_init() < 0)
        return lr_err_set(err, LR_EINTERNAL, "libsodium failed to initialise");
    char *txt = NULL;
    size_t len = 0;
    int rc = lr_read_file(key_path, KEY_PEM_MAX, &txt, &len, err);
    if (rc < 0)
        return rc;
    gnutls_x509_privkey_t key = NULL;
    gnutls_datum_t x = {0}, y = {0}, k = {0};
    gnutls_ecc_curve_t curve;
    struct lr_announce_signer *s = NULL;
    uint8_t kid[LR_DEVICE_ID_LEN];
    size_t kid_len = sizeof(kid);
    rc = LR_ETLS;
    if (gnutls_x509_privkey_init(&key) < 0) {
        key = NULL;
        lr_err_set(err, rc, "key init failed");
        goto out;
    }
    gnutls_datum_t d = {.data = (unsigned char *)txt, .size = (unsigned)len};
    int g = gnutls_x509_privkey_import2(key, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (g < 0) {
        lr_err_set(err, rc, "cannot load %s: %s", key_path, gnutls_strerror(g));
        goto out;
    }
    if (gnutls_x509_privkey_get_pk_algorithm2(key, NULL) != GNUTLS_PK_EDDSA_ED25519 ||
        gnutls_x509_privkey_export_ecc_raw(key, &curve, &x, &y, &k) < 0 ||
        curve != GNUTLS_ECC_CURVE_ED25519 || x.size != 32 || k.size != 32) {
        lr_err_set(err, rc, "%s is not a usable Ed25519 key", key_path);
        goto out;
    }
    s = lr_xcalloc(1, sizeof(*s));
    crypto_sign_seed_keypair(s->pk, s->sk, k.data);
    id_of_pubkey(s->pk, &s->id);
    /* The ID we sign under must be the ID TLS pins: check both derivations agree. */
    if (memcmp(s->pk, x.data, 32) != 0 ||
        gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, kid, &kid_len) < 0 ||
        kid_len != sizeof(kid) || memcmp(kid, s->id.b, sizeof(kid)) != 0) {
        lr_err_set(err, rc, "%s: public key does not match its device ID", key_path);
        goto out;
    }
    *out = s;
    s = NULL;
    rc = 0;
out:
    lr_announce_signer_free(s);
    if (k.data) {
        sodium_memzero(k.data, k.size);
        gnutls_free(k.data);
    }
    gnutls_free(x.data);
    gnutls_free(y.data);
    if (key)
        gnutls_x509_privkey_deinit(key);
    sodium_memzero(txt, len);
    free(txt);
    return rc;
}

void lr_announce_signer_free(struct lr_announce_signer *s)
{
    if (!s)
        return;
    sodium_memzero(s, sizeof(*s));
    free(s);
}

const struct lr_device_id *lr_announce_signer_id(const struct lr_announce_signer *s)
{
    return &s->id;
}

const uint8_t *lr_announce_signer_pubkey(const struct lr_announce_signer *s)
{
    return s->pk;
}

/* ---- encoding ---- */

int lr_announce_encode_body(const struct lr_announce *a, struct lr_buf *out, struct lr_err *err)
{
    size_t nl = strnlen(a->name, sizeof(a->name));
    if (nl == 0 || nl > LR_ANNOUNCE_NAME_MAX || !lr_proto_text_ok(a->name, nl))
        return lr_err_set(err, LR_EBADVAL, "announcement name is empty, too long or not text");
    if (a->nports > LR_ANNOUNCE_MAX_PORTS || a->naddrs > LR_ANNOUNCE_MAX_ADDRS)
        return lr_err_set(err, LR_ETOOBIG, "announcement has %zu ports and %zu addresses",
                          a->nports, a->naddrs);
    for (size_t i = 0; i < a->nports; i++)
        if (a->ports[i] == 0)
            return lr_err_set(err, LR_EBADVAL, "announcement port %zu is 0", i);
    for (size_t i = 0; i < a->naddrs; i++)
        if (a->addrs[i].family != 4 && a->addrs[i].family != 6)
            return lr_err_set(err, LR_EBADVAL, "announcement address %zu has family %u", i,
                              a->addrs[i].family);
    if (a->has_nameplate && a->nameplate > LR_ANNOUNCE_NAMEPLATE_MAX)
        return lr_err_set(err, LR_EBADVAL, "announcement nameplate %u over %d", a->nameplate,
                          LR_ANNOUNCE_NAMEPLATE_MAX);
    lr_buf_put(out, magic, sizeof(magic));
    lr_buf_put_u8(out, LR_ANNOUNCE_VERSION);
    lr_buf_put_u8(out, a->has_nameplate ? LR_ANNOUNCE_FLAG_NAMEPLATE : 0);
    lr_buf_put(out, a->pubkey, sizeof(a->pubkey));
    lr_buf_put(out, a->id.b, sizeof(a->id.b));
    lr_buf_put_u64(out, a->ts_ms);
    lr_buf_put(out, a->nonce, sizeof(a->nonce));
    lr_buf_put_u8(out, (uint8_t)nl);
    lr_buf_put(out, a->name, nl);
    lr_buf_put_u8(out, (uint8_t)a->nports);
    for (size_t i = 0; i < a->nports; i++)
        lr_buf_put_u16(out, a->ports[i]);
    lr_buf_put_u8(out, (uint8_t)a->naddrs);
    for (size_t i = 0; i < a->naddrs; i++) {
        lr_buf_put_u8(out, a->addrs[i].family);
        lr_buf_put(out, a->addrs[i].a, a->addrs[i].family == 4 ? 4 : 16);
    }
    if (a->has_nameplate)
        lr_buf_put_u16(out, a->nameplate);
    if (!lr_buf_ok(out))
        return lr_err_set(err, LR_ETOOBIG, "announcement does not fit its buffer");
    return 0;
}

/* Ed25519 over context || body, without copying body twice. */
static void sig_input(struct lr_buf *m, const uint8_t *body, size_t n)
{
    lr_buf_put(m, sig_context, sizeof(sig_context)); /* with its NUL */
    lr_buf_put(m, body, n);
}

int lr_announce_sign(struct lr_announce_signer *s, struct lr_announce *a, uint64_t now_ms,
                     struct lr_buf *out, struct lr_err *err)
{
    memcpy(a->pubkey, s->pk, sizeof(a->pubkey));
    a->id = s->id;
    a->ts_ms = now_ms > s->last_ts ? now_ms : s->last_ts + 1;
    randombytes_buf(a->nonce, sizeof(a->nonce));
    size_t start = out->len;
    int rc = lr_announce_encode_body(a, out, err);
    if (rc < 0)
        return rc;
    struct lr_buf m;
    lr_buf_init(&m, LR_ANNOUNCE_MAX + sizeof(sig_context));
    sig_input(&m, out->data + start, out->len - start);
    uint8_t sig[crypto_sign_BYTES];
    if (!lr_buf_ok(&m) || crypto_sign_detached(sig, NULL, m.data, m.len, s->sk) != 0) {
        lr_buf_release(&m);
        return lr_err_set(err, LR_EINTERNAL, "cannot sign the announcement");
    }
    lr_buf_release(&m);
    if (lr_buf_put(out, sig, sizeof(sig)) < 0)
        return lr_err_set(err, LR_ETOOBIG, "announcement does not fit its buffer");
    s->last_ts = a->ts_ms;
    return 0;
}

/* ---- decoding ---- */

int lr_announce_parse(const uint8_t *p, size_t n, struct lr_announce *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (n > LR_ANNOUNCE_MAX)
        return lr_err_set(err, LR_ETOOBIG, "announcement of %zu bytes (max %d)", n,
                          LR_ANNOUNCE_MAX);
    if (n < LR_ANNOUNCE_SIG_LEN)
        return lr_err_set(err, LR_ETRUNC, "announcement of %zu bytes is truncated", n);
    size_t body_len = n - LR_ANNOUNCE_SIG_LEN;
    struct lr_announce a;
    memset(&a, 0, sizeof(a));
    struct lr_rd r;
    lr_rd_init(&r, p, body_len);
    uint8_t m[4], ver, flags, nl, np, na;
    const uint8_t *name;
    if (lr_rd_get_bytes(&r, m, sizeof(m)) < 0 || lr_rd_get_u8(&r, &ver) < 0 ||
        lr_rd_get_u8(&r, &flags) < 0)
        return lr_err_set(err, LR_ETRUNC, "announcement header is truncated");
    if (memcmp(m, magic, sizeof(magic)) != 0)
        return lr_err_set(err, LR_EPROTO, "not an announcement (bad magic)");
    if (ver != LR_ANNOUNCE_VERSION)
        return lr_err_set(err, LR_EPROTO, "announcement version %u unsupported", ver);
    if (flags & ~LR_ANNOUNCE_FLAG_NAMEPLATE)
        return lr_err_set(err, LR_EPROTO, "announcement flags 0x%02x unknown", flags);
    if (lr_rd_get_bytes(&r, a.pubkey, sizeof(a.pubkey)) < 0 ||
        lr_rd_get_bytes(&r, a.id.b, sizeof(a.id.b)) < 0 || lr_rd_get_u64(&r, &a.ts_ms) < 0 ||
        lr_rd_get_bytes(&r, a.nonce, sizeof(a.nonce)) < 0 || lr_rd_get_u8(&r, &nl) < 0)
        return lr_err_set(err, LR_ETRUNC, "announcement identity fields are truncated");
    if (nl == 0)
        return lr_err_set(err, LR_EBADVAL, "announcement name is empty");
    if (nl > LR_ANNOUNCE_NAME_MAX)
        return lr_err_set(err, LR_ETOOBIG, "announcement name of %u bytes (max %d)", nl,
                          LR_ANNOUNCE_NAME_MAX);
    if (lr_rd_get_view(&r, &name, nl) < 0)
        return lr_err_set(err, LR_ETRUNC, "announcement name is truncated");
    if (!lr_proto_text_ok(name, nl) || memchr(name, '\0', nl))
        return lr_err_set(err, LR_EBADVAL, "announcement name is not valid text");
    memcpy(a.name, name, nl);
    if (lr_rd_get_u8(&r, &np) < 0)
        return lr_err_set(err, LR_ETRUNC, "announcement port count is truncated");
    if (np > LR_ANNOUNCE_MAX_PORTS)
        return lr_err_set(err, LR_ETOOBIG, "announcement with %u ports (max %d)", np,
                          LR_ANNOUNCE_MAX_PORTS);
    for (size_t i = 0; i < np; i++) {
        if (lr_rd_get_u16(&r, &a.ports[i]) < 0)
            return lr_err_set(err, LR_ETRUNC, "announcement port %zu is truncated", i);
        if (a.ports[i] == 0)
            return lr_err_set(err, LR_EBADVAL, "announcement port %zu is 0", i);
    }
    a.nports = np;
    if (lr_rd_get_u8(&r, &na) < 0)
        return lr_err_set(err, LR_ETRUNC, "announcement address count is truncated");
    if (na > LR_ANNOUNCE_MAX_ADDRS)
        return lr_err_set(err, LR_ETOOBIG, "announcement with %u addresses (max %d)", na,
                          LR_ANNOUNCE_MAX_ADDRS);
    for (size_t i = 0; i < na; i++) {
        uint8_t fam;
        if (lr_rd_get_u8(&r, &fam) < 0)
            return lr_err_set(err, LR_ETRUNC, "announcement address %zu is truncated", i);
        if (fam != 4 && fam != 6)
            return lr_err_set(err, LR_EBADVAL, "announcement address %zu has family %u", i, fam);
        a.addrs[i].family = fam;
        if (lr_rd_get_bytes(&r, a.addrs[i].a, fam == 4 ? 4 : 16) < 0)
            return lr_err_set(err, LR_ETRUNC, "announcement address %zu is truncated", i);
    }
    a.naddrs = na;
    if (flags & LR_ANNOUNCE_FLAG_NAMEPLATE) {
        if (lr_rd_get_u16(&r, &a.nameplate) < 0)
            return lr_err_set(err, LR_ETRUNC, "announcement nameplate is truncated");
        if (a.nameplate > LR_ANNOUNCE_NAMEPLATE_MAX)
            return lr_err_set(err, LR_EBADVAL, "announcement nameplate %u over %d", a.nameplate,
                              LR_ANNOUNCE_NAMEPLATE_MAX);
        a.has_nameplate = true;
    }
    if (lr_rd_left(&r) != 0)
        return lr_err_set(err, LR_EPROTO,
                          "announcement has %zu unexpected bytes before its "
                          "signature",
                          lr_rd_left(&r));

    struct lr_device_id want;
    id_of_pubkey(a.pubkey, &want);
    if (!lr_device_id_eq(&want, &a.id))
        return lr_err_set(err, LR_EVERIFY, "announcement key does not hash to its device ID");
    if (sodium_init() < 0)
        return lr_err_set(err, LR_EINTERNAL, "libsodium failed to initialise");
    uint8_t buf[sizeof(sig_context) + LR_ANNOUNCE_MAX];
    memcpy(buf, sig_context, sizeof(sig_context));
    memcpy(buf + sizeof(sig_context), p, body_len);
    if (crypto_sign_verify_detached(p + body_len, buf, sizeof(sig_context) + body_len, a.pubkey) !=
        0)
        return lr_err_set(err, LR_EVERIFY, "announcement signature does not verify");
    *out = a;
    return 0;
}

int lr_announce_check_fresh(const struct lr_announce *a, uint64_t now_ms, struct lr_err *err)
{
    /* Written so that no sum can overflow, whatever ts_ms a sender chose. */
    if (a->ts_ms > now_ms && a->ts_ms - now_ms > LR_ANNOUNCE_MAX_SKEW_MS)
        return lr_err_set(err, LR_EVERIFY, "announcement is %llu ms in the future",
                          (unsigned long long)(a->ts_ms - now_ms));
    if (a->ts_ms < now_ms && now_ms - a->ts_ms > LR_ANNOUNCE_MAX_AGE_MS)
        return lr_err_set(err, LR_EVERIFY, "announcement is stale (%llu ms old)",
                          (unsigned long long)(now_ms - a->ts_ms));
    return 0;
}

int lr_announce_decode(const uint8_t *p, size_t n, uint64_t now_ms, struct lr_announce *out,
                       struct lr_err *err)
{
    int rc = lr_announce_parse(p, n, out, err);
    if (rc == 0 && (rc = lr_announce_check_fresh(out, now_ms, err)) < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

/* ---- replay guard ---- */

struct lr_announce_replay *lr_announce_replay_new(size_t cap)
{
    struct lr_announce_replay *r = lr_xcalloc(1, sizeof(*r));
    r->cap = cap ? cap : 1;
    r->ents = lr_xcalloc(r->cap, sizeof(*r->ents));
    return r;
}

void lr_announce_replay_free(struct lr_announce_replay *r)
{
    if (!r)
        return;
    free(r->ents);
    free(r);
}

int lr_announce_replay_check(struct lr_announce_replay *r, const struct lr_announce *a,
                             uint64_t now_ms, struct lr_err *err)
{
    for (size_t i = 0; i < r->n; i++) {
        struct replay_ent *e = &r->ents[i];
        if (!lr_device_id_eq(&e->id, &a->id))
            continue;
        if (a->ts_ms <= e->ts)
            return lr_err_set(err, LR_EVERIFY,
                              "announcement replayed (timestamp %llu not after %llu)",
                              (unsigned long long)a->ts_ms, (unsigned long long)e->ts);
        e->ts = a->ts_ms;
        return 0;
    }
    struct replay_ent *slot = NULL;
    if (r->n < r->cap) {
        slot = &r->ents[r->n++];
    } else {
        for (size_t i = 0; i < r->n; i++)
            if (r->ents[i].ts < now_ms && now_ms - r->ents[i].ts > LR_ANNOUNCE_MAX_AGE_MS &&
                (!slot || r->ents[i].ts < slot->ts))
                slot = &r->ents[i];
        if (!slot)
            return lr_err_set(err, LR_EBUSY, "replay cache full (%zu devices)", r->cap);
    }
    slot->id = a->id;
    slot->ts = a->ts_ms;
    return 0;
}
