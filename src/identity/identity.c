#include "identity/identity.h"

#include "hash/hash.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/xalloc.h"

#include <errno.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* PEM files we write are well under 1 KiB; anything big is not ours. */
#define PEM_MAX (64 * 1024)
#define CERT_DAYS_BACK 1
#define CERT_YEARS 20

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* Data characters (52) in 4 blocks of 13, each block followed by its check character. */
#define DATA_CHARS 52
#define BLOCK_DATA 13
#define BLOCKS 4
#define BLOCK_CHARS (BLOCK_DATA + 1)
#define ID_CHARS (BLOCKS * BLOCK_CHARS) /* 56 */
#define GROUP_CHARS 7

struct lr_identity {
    char *key_path;
    char *cert_path;
    struct lr_device_id id;
};

/* --- text form ------------------------------------------------------------------------ */

/*
 * Luhn mod 32 (the generic Luhn mod N): walking from the rightmost data
 * character, every other value is doubled and its base-32 "digits" summed.
 * Both x -> x and x -> 2x folded are permutations of 0..31, so changing any
 * single character changes the sum mod 32; adjacent transpositions are missed
 * only for the pair 'A' <-> '7' (values 0 and 31).
 */
static unsigned luhn32_check(const unsigned *v, size_t n)
{
    unsigned sum = 0, factor = 2;
    for (size_t i = n; i-- > 0;) {
        unsigned a = v[i] * factor;
        sum += a / 32 + a % 32;
        factor = factor == 2 ? 1 : 2;
    }
    return (32 - sum % 32) % 32;
}

static void base32_encode(const uint8_t *in, size_t n, unsigned *out /* ceil(8n/5) values */)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = (acc >> bits) & 31;
        }
    }
    if (bits)
        out[o++] = (acc << (5 - bits)) & 31;
}

static void format_chars(const struct lr_device_id *id, char out[ID_CHARS])
{
    unsigned data[DATA_CHARS];
    base32_encode(id->b, LR_DEVICE_ID_LEN, data);
    for (size_t k = 0; k < BLOCKS; k++) {
        const unsigned *blk = data + k * BLOCK_DATA;
        for (size_t j = 0; j < BLOCK_DATA; j++)
            out[k * BLOCK_CHARS + j] = b32_alphabet[blk[j]];
        out[k * BLOCK_CHARS + BLOCK_DATA] = b32_alphabet[luhn32_check(blk, BLOCK_DATA)];
    }
}

void lr_device_id_format(const struct lr_device_id *id, char *out)
{
    char c[ID_CHARS];
    format_chars(id, c);
    size_t o = 0;
    for (size_t i = 0; i < ID_CHARS; i++) {
        if (i && i % GROUP_CHARS == 0)
            out[o++] = '-';
        out[o++] = c[i];
    }
    out[o] = '\0';
}

void lr_device_id_short(const struct lr_device_id *id, char *out)
{
    char c[ID_CHARS];
    format_chars(id, c);
    memcpy(out, c, LR_DEVICE_ID_SHORTLEN);
    out[LR_DEVICE_ID_SHORTLEN] = '\0';
}

/* Value of an ID character after case folding and look-alike mapping, or -1. */
static int b32_value(unsigned char c)
{
    if (c >= 'a' && c <= 'z')
        c = (unsigned char)(c - 'a' + 'A');
    switch (c) {
    case '0':
        c = 'O';
        break;
    case '1':
        c = 'I';
        break;
    case '8':
        c = 'B';
        break;
    default:
        break;
    }
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

static int is_separator(unsigned char c)
{
    return c == '-' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int lr_device_id_parse(const char *s, struct lr_device_id *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    unsigned v[ID_CHARS];
    size_t n = 0, pos = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        pos++;
        if (is_separator(*p))
            continue;
        int x = b32_value(*p);
        if (x < 0) {
            if (*p >= 0x20 && *p < 0x7f)
                return lr_err_set(err, LR_EBADID,
                                  "invalid character '%c' at position %zu of device ID", *p, pos);
            return lr_err_set(err, LR_EBADID, "invalid byte \\x%02x at position %zu of device ID",
                              *p, pos);
        }
        if (n == ID_CHARS)
            return lr_err_set(err, LR_EBADID,
                              "device ID too long: more than %d characters (not counting "
                              "dashes and spaces)",
                              ID_CHARS);
        v[n++] = (unsigned)x;
    }
    if (n != ID_CHARS)
        return lr_err_set(err, LR_EBADID,
                          "device ID too short: %zu characters, expected %d (not counting "
                          "dashes and spaces)",
                          n, ID_CHARS);
    unsigned data[DATA_CHARS];
    for (size_t k = 0; k < BLOCKS; k++) {
        const unsigned *blk = v + k * BLOCK_CHARS;
        if (luhn32_check(blk, BLOCK_DATA) != blk[BLOCK_DATA]) {
            /* The check character closes every second group of 7 as displayed. */
            unsigned g = (unsigned)(2 * k + 2);
            return lr_err_set(err, LR_EBADID,
                              "check character of group %u does not match: typo in group %u "
                              "or %u?",
                              g, g - 1, g);
        }
        memcpy(data + k * BLOCK_DATA, blk, BLOCK_DATA * sizeof(*blk));
    }
    /* 52 characters carry 260 bits; the last 4 must be zero so each ID has one spelling. */
    if (data[DATA_CHARS - 1] & 15)
        return lr_err_set(err, LR_EBADID, "last character of group 8 is not a valid ending");
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < DATA_CHARS && o < LR_DEVICE_ID_LEN; i++) {
        acc = (acc << 5) | data[i];
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out->b[o++] = (uint8_t)(acc >> bits);
        }
    }
    return 0;
}

bool lr_device_id_eq(const struct lr_device_id *a, const struct lr_device_id *b)
{
    return memcmp(a->b, b->b, LR_DEVICE_ID_LEN) == 0;
}

uint64_t lr_device_id_u64(const struct lr_device_id *id)
{
    uint64_t v = 0;
    for (size_t i = 0; i < 8; i++)
        v = (v << 8) | id->b[i];
    return v;
}

/* --- certificates ---------------------------------------------------------------------- */

static int crt_device_id(gnutls_x509_crt_t crt, struct lr_device_id *out, struct lr_err *err)
{
    size_t sz = LR_DEVICE_ID_LEN;
    int g = gnutls_x509_crt_get_key_id(crt, GNUTLS_KEYID_USE_SHA256, out->b, &sz);
    if (g < 0 || sz != LR_DEVICE_ID_LEN)
        return lr_err_set(err, LR_ETLS, "cannot compute certificate key ID: %s",
                          g < 0 ? gnutls_strerror(g) : "unexpected length");
    return 0;
}

int lr_device_id_from_cert_der(const void *der, size_t len, struct lr_device_id *out)
{
    memset(out, 0, sizeof(*out));
    if (len > UINT32_MAX)
        return LR_ETLS;
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
        return LR_ETLS;
    gnutls_datum_t d = {.data = (unsigned char *)(uintptr_t)der, .size = (unsigned)len};
    struct lr_device_id id;
    int rc = LR_ETLS;
    if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) >= 0 &&
        crt_device_id(crt, &id, NULL) == 0) {
        *out = id;
        rc = 0;
    }
    gnutls_x509_crt_deinit(crt);
    return rc;
}

static int gtls_fail(struct lr_err *err, const char *what, int g)
{
    return lr_err_set(err, LR_ETLS, "%s: %s", what, gnutls_strerror(g));
}

/* Build and self-sign the certificate for `key`. */
static int make_cert(gnutls_x509_privkey_t key, gnutls_x509_crt_t crt, struct lr_err *err)
{
    int g;
    unsigned char serial[16];
    if ((g = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial))) < 0)
        return gtls_fail(err, "random serial", g);
    /* DER INTEGER is signed: keep it positive and non-zero. */
    serial[0] = (unsigned char)((serial[0] & 0x7f) | 0x01);

    time_t now = time(NULL);
    /* Some clocks on a LAN are off by hours; a day back avoids "not yet valid" surprises. */
    time_t start = now - (time_t)CERT_DAYS_BACK * 86400;
    time_t end = now + (time_t)CERT_YEARS * 365 * 86400 + (time_t)5 * 86400;

    unsigned char kid[64];
    size_t kid_len = sizeof(kid);
    if ((g = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
        (g = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
        (g = gnutls_x509_crt_set_activation_time(crt, start)) < 0 ||
        (g = gnutls_x509_crt_set_expiration_time(crt, end)) < 0 ||
        (g = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "landropic", 9)) <
            0 ||
        (g = gnutls_x509_crt_set_key(crt, key)) < 0 ||
        (g = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
        /* TLS 1.3 with Ed25519 only ever signs (both roles). */
        (g = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
        (g = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
        (g = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0)) < 0 ||
        (g = gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA1, kid, &kid_len)) < 0 ||
        (g = gnutls_x509_crt_set_subject_key_id(crt, kid, kid_len)) < 0)
        return gtls_fail(err, "cannot build certificate", g);
    /* EdDSA hashes internally; GnuTLS ignores the digest argument for it. */
    if ((g = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA512, 0)) < 0)
        return gtls_fail(err, "cannot self-sign certificate", g);
    return 0;
}

static void wipe_datum(gnutls_datum_t *d)
{
    if (d->data) {
        gnutls_memset(d->data, 0, d->size);
        gnutls_free(d->data);
    }
    d->data = NULL;
    d->size = 0;
}

static int path_absent(const char *path, struct lr_err *err)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        return lr_err_set(err, LR_EEXISTS, "%s already exists; not overwriting it", path);
    if (errno != ENOENT)
        return lr_err_set(err, -errno, "cannot check %s: %s", path, strerror(errno));
    return 0;
}

int lr_identity_create(const char *home, struct lr_device_id *id, struct lr_err *err)
{
    if (id)
        memset(id, 0, sizeof(*id));
    char *key_path = lr_xasprintf("%s/key.pem", home);
    char *cert_path = lr_xasprintf("%s/cert.pem", home);
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t key_pem = {NULL, 0}, cert_pem = {NULL, 0};
    struct lr_device_id nid;
    int rc, g;

    if ((rc = path_absent(key_path, err)) < 0 || (rc = path_absent(cert_path, err)) < 0)
        goto out;
    rc = LR_ETLS;
    if ((g = gnutls_x509_privkey_init(&key)) < 0) {
        key = NULL;
        rc = gtls_fail(err, "key init", g);
        goto out;
    }
    if ((g = gnutls_x509_privkey_generate2(key, GNUTLS_PK_EDDSA_ED25519, 256, 0, NULL, 0)) < 0) {
        rc = gtls_fail(err, "cannot generate Ed25519 key", g);
        goto out;
    }
    if ((g = gnutls_x509_crt_init(&crt)) < 0) {
        crt = NULL;
        rc = gtls_fail(err, "certificate init", g);
        goto out;
    }
    if ((rc = make_cert(key, crt, err)) < 0)
        goto out;
    if ((rc = crt_device_id(crt, &nid, err)) < 0)
        goto out;
    /* Plain PKCS#8: the legacy export writes a PEM GnuTLS cannot read back for Ed25519. */
    if ((g = gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN,
                                               &key_pem)) < 0) {
        rc = gtls_fail(err, "cannot export key", g);
        goto out;
    }
    if ((g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cert_pem)) < 0) {
        rc = gtls_fail(err, "cannot export certificate", g);
        goto out;
    }
    if ((rc = lr_write_file_atomic(key_path, key_pem.data, key_pem.size, 0600, err)) < 0)
        goto out;
    if ((rc = lr_write_file_atomic(cert_path, cert_pem.data, cert_pem.size, 0600, err)) < 0) {
        /* A lone key.pem would make every retry fail with LR_EEXISTS. */
        unlink(key_path);
        goto out;
    }
    if (id)
        *id = nid;
    rc = 0;
out:
    wipe_datum(&key_pem);
    wipe_datum(&cert_pem);
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (key)
        gnutls_x509_privkey_deinit(key);
    free(key_path);
    free(cert_path);
    return rc;
}

/* Make crt from key (as at init) and write it to cert_path. */
static int reissue_cert(gnutls_x509_privkey_t key, gnutls_x509_crt_t crt, const char *cert_path,
                        struct lr_err *err)
{
    int rc = make_cert(key, crt, err);
    if (rc < 0)
        return rc;
    gnutls_datum_t pem = {NULL, 0};
    int g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem);
    if (g < 0)
        return gtls_fail(err, "cannot export certificate", g);
    rc = lr_write_file_atomic(cert_path, pem.data, pem.size, 0600, err);
    wipe_datum(&pem);
    if (rc == 0)
        lr_info("identity", "certificate issued again from the key path=%s (device ID unchanged)",
                cert_path);
    return rc;
}

/* Read a PEM file; absent -> LR_ENOTINIT. Caller wipes and frees *out. */
static int read_pem(const char *path, char **out, size_t *len, struct lr_err *err)
{
    int rc = lr_read_file(path, PEM_MAX, out, len, err);
    if (rc == -ENOENT)
        return lr_err_set(err, LR_ENOTINIT,
                          "%s does not exist: the home is partly initialised (move it aside "
                          "and run 'landropic init' again)",
                          path);
    return rc;
}

int lr_identity_load(const char *home, struct lr_identity **out, struct lr_err *err)
{
    *out = NULL;
    struct lr_identity *ident = lr_xcalloc(1, sizeof(*ident));
    ident->key_path = lr_xasprintf("%s/key.pem", home);
    ident->cert_path = lr_xasprintf("%s/cert.pem", home);
    char *key_txt = NULL, *cert_txt = NULL;
    size_t key_len = 0, cert_len = 0;
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t crt = NULL;
    int rc, g;

    if ((rc = read_pem(ident->key_path, &key_txt, &key_len, err)) < 0)
        goto out;
    /* The certificate is derived data: the device ID is the key's (SPKI
     * hash), so a lost or unreadable one is issued again from the key. */
    bool reissue = false;
    if ((rc = read_pem(ident->cert_path, &cert_txt, &cert_len, err)) == LR_ENOTINIT) {
        lr_err_clear(err);
        reissue = true;
    } else if (rc < 0) {
        goto out;
    }

    struct stat st;
    if (stat(ident->key_path, &st) == 0 && (st.st_mode & 077))
        lr_warn("identity", "key file is accessible by other users path=%s mode=%03o",
                ident->key_path, (unsigned)(st.st_mode & 0777));

    rc = LR_ETLS;
    if ((g = gnutls_x509_privkey_init(&key)) < 0) {
        key = NULL;
        rc = gtls_fail(err, "key init", g);
        goto out;
    }
    gnutls_datum_t kd = {.data = (unsigned char *)key_txt, .size = (unsigned)key_len};
    if ((g = gnutls_x509_privkey_import2(key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        rc = lr_err_set(err, LR_ETLS,
                        "cannot load %s: not a PEM private key (%s); the device's identity is "
                        "that key: restore it from a backup",
                        ident->key_path, gnutls_strerror(g));
        goto out;
    }
    if (gnutls_x509_privkey_get_pk_algorithm2(key, NULL) != GNUTLS_PK_EDDSA_ED25519) {
        rc = lr_err_set(err, LR_ETLS, "%s is not an Ed25519 key", ident->key_path);
        goto out;
    }
    if ((g = gnutls_x509_crt_init(&crt)) < 0) {
        crt = NULL;
        rc = gtls_fail(err, "certificate init", g);
        goto out;
    }
    gnutls_datum_t cd = {.data = (unsigned char *)cert_txt, .size = (unsigned)cert_len};
    if (!reissue && (g = gnutls_x509_crt_import(crt, &cd, GNUTLS_X509_FMT_PEM)) < 0) {
        lr_warn("identity", "cannot load %s (%s): issuing it again from the key", ident->cert_path,
                gnutls_strerror(g));
        gnutls_x509_crt_deinit(crt);
        if ((g = gnutls_x509_crt_init(&crt)) < 0) {
            crt = NULL;
            rc = gtls_fail(err, "certificate init", g);
            goto out;
        }
        reissue = true;
    }
    if (reissue && (rc = reissue_cert(key, crt, ident->cert_path, err)) < 0)
        goto out;
    if ((rc = crt_device_id(crt, &ident->id, err)) < 0)
        goto out;
    uint8_t kid[LR_DEVICE_ID_LEN];
    size_t kid_len = sizeof(kid);
    if ((g = gnutls_x509_privkey_get_key_id(key, GNUTLS_KEYID_USE_SHA256, kid, &kid_len)) < 0 ||
        kid_len != sizeof(kid) || memcmp(kid, ident->id.b, sizeof(kid)) != 0) {
        rc = lr_err_set(err, LR_ETLS, "%s does not belong to the key in %s", ident->cert_path,
                        ident->key_path);
        goto out;
    }
    *out = ident;
    ident = NULL;
    rc = 0;
out:
    if (key_txt) {
        gnutls_memset(key_txt, 0, key_len);
        free(key_txt);
    }
    free(cert_txt);
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (key)
        gnutls_x509_privkey_deinit(key);
    lr_identity_free(ident);
    return rc;
}

void lr_identity_free(struct lr_identity *ident)
{
    if (!ident)
        return;
    free(ident->key_path);
    free(ident->cert_path);
    free(ident);
}

const struct lr_device_id *lr_identity_device_id(const struct lr_identity *ident)
{
    return &ident->id;
}

const char *lr_identity_key_path(const struct lr_identity *ident)
{
    return ident->key_path;
}

const char *lr_identity_cert_path(const struct lr_identity *ident)
{
    return ident->cert_path;
}
