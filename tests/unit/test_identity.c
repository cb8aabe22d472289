/*
 * test_identity.c - key/certificate files and the device ID text form.
 */
#include "hash/hash.h"
#include "identity/identity.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/xalloc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
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

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* --- helpers ------------------------------------------------------------------------------ */

static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *t = lr_xasprintf("%s/lr-test-identity-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(t));
    return t;
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void rm_rf(char *dir)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static char *path_in(const char *dir, const char *name)
{
    return lr_xasprintf("%s/%s", dir, name);
}

static void random_id(struct lr_device_id *id)
{
    assert_int_equal(gnutls_rnd(GNUTLS_RND_NONCE, id->b, sizeof(id->b)), 0);
}

/* Strip dashes: the 56 significant characters. */
static void compact(const char *fmt, char out[57])
{
    size_t o = 0;
    for (const char *p = fmt; *p; p++)
        if (*p != '-')
            out[o++] = *p;
    assert_int_equal(o, 56);
    out[o] = '\0';
}

static void expand(const char c[57], char out[LR_DEVICE_ID_STRLEN + 1])
{
    size_t o = 0;
    for (size_t i = 0; i < 56; i++) {
        if (i && i % 7 == 0)
            out[o++] = '-';
        out[o++] = c[i];
    }
    out[o] = '\0';
}

static unsigned val(char c)
{
    const char *p = strchr(alphabet, c);
    assert_non_null(p);
    return (unsigned)(p - alphabet);
}

/*
 * Independent oracle: the validating form of Luhn mod 32 (factor 1 on the
 * rightmost character, i.e. the check character, alternating with 2) must sum
 * to 0 mod 32 over a block of 14.
 */
static bool oracle_block_ok(const char *blk14)
{
    unsigned sum = 0;
    for (int i = 13, k = 0; i >= 0; i--, k++) {
        unsigned a = val(blk14[i]) * (k % 2 ? 2u : 1u);
        sum += a / 32 + a % 32;
    }
    return sum % 32 == 0;
}

/* --- text form ------------------------------------------------------------------------------ */

static void test_format_shape(void **state)
{
    (void)state;
    for (int n = 0; n < 200; n++) {
        struct lr_device_id id;
        random_id(&id);
        char s[LR_DEVICE_ID_STRLEN + 1];
        memset(s, 'x', sizeof(s));
        lr_device_id_format(&id, s);
        assert_int_equal(strlen(s), LR_DEVICE_ID_STRLEN);
        for (size_t i = 0; i < LR_DEVICE_ID_STRLEN; i++) {
            if (i % 8 == 7)
                assert_int_equal(s[i], '-');
            else
                assert_non_null(strchr(alphabet, s[i]));
        }
        char c[57];
        compact(s, c);
        for (int b = 0; b < 4; b++)
            assert_true(oracle_block_ok(c + 14 * b));
        char sh[LR_DEVICE_ID_SHORTLEN + 1];
        lr_device_id_short(&id, sh);
        assert_int_equal(strlen(sh), LR_DEVICE_ID_SHORTLEN);
        assert_memory_equal(sh, s, LR_DEVICE_ID_SHORTLEN);
    }
}

static void test_known_answers(void **state)
{
    (void)state;
    struct lr_device_id id;
    char s[LR_DEVICE_ID_STRLEN + 1];
    memset(&id, 0, sizeof(id));
    lr_device_id_format(&id, s);
    assert_string_equal(s, "AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA");

    /* 0xF8 = 11111 000..: first character '7' (31), the rest 'A'. Block 1 check:
     * factors 2,1,2,... from the rightmost data character give position 0 (12
     * steps left) factor 2: 62 folds to 1 + 30 = 31, so check = 1 = 'B'. */
    id.b[0] = 0xF8;
    lr_device_id_format(&id, s);
    assert_string_equal(s, "7AAAAAA-AAAAAAB-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA");
    struct lr_device_id back;
    assert_int_equal(lr_device_id_parse(s, &back, NULL), 0);
    assert_true(lr_device_id_eq(&id, &back));

    /* Last byte 0x01: its bit is the first of the last character, 1 << 4 = 16 = 'Q';
     * factor 2 (rightmost data char): 32 -> 1 + 0 = 1, check = 31 = '7'. */
    memset(&id, 0, sizeof(id));
    id.b[31] = 0x01;
    lr_device_id_format(&id, s);
    assert_string_equal(s, "AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAQ7");
}

static void test_roundtrip_random(void **state)
{
    (void)state;
    for (int n = 0; n < 2000; n++) {
        struct lr_device_id id, back;
        random_id(&id);
        char s[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&id, s);
        struct lr_err err = {0};
        assert_int_equal(lr_device_id_parse(s, &back, &err), 0);
        assert_true(lr_device_id_eq(&id, &back));
    }
}

static void test_lenient_forms(void **state)
{
    (void)state;
    struct lr_device_id id, back;
    random_id(&id);
    char s[LR_DEVICE_ID_STRLEN + 1], c[57];
    lr_device_id_format(&id, s);
    compact(s, c);

    /* no dashes */
    assert_int_equal(lr_device_id_parse(c, &back, NULL), 0);
    assert_true(lr_device_id_eq(&id, &back));

    /* lower case */
    char low[LR_DEVICE_ID_STRLEN + 1];
    for (size_t i = 0; i <= LR_DEVICE_ID_STRLEN; i++)
        low[i] = (char)tolower((unsigned char)s[i]);
    assert_int_equal(lr_device_id_parse(low, &back, NULL), 0);
    assert_true(lr_device_id_eq(&id, &back));

    /* spaces instead of dashes, surrounding whitespace, mixed case */
    char sp[128];
    size_t o = 0;
    sp[o++] = ' ';
    for (size_t i = 0; i < 56; i++) {
        if (i && i % 4 == 0)
            sp[o++] = ' ';
        sp[o++] = (char)(i % 2 ? tolower((unsigned char)c[i]) : c[i]);
    }
    sp[o++] = '\n';
    sp[o] = '\0';
    assert_int_equal(lr_device_id_parse(sp, &back, NULL), 0);
    assert_true(lr_device_id_eq(&id, &back));

    /* look-alikes: an ID full of O, I and B typed as 0, 1, 8 */
    struct lr_device_id la;
    bool found = false;
    for (int tries = 0; tries < 10000 && !found; tries++) {
        random_id(&la);
        lr_device_id_format(&la, s);
        found = strchr(s, 'O') && strchr(s, 'I') && strchr(s, 'B');
    }
    assert_true(found);
    for (char *p = s; *p; p++)
        *p = *p == 'O' ? '0' : *p == 'I' ? '1' : *p == 'B' ? '8' : *p;
    assert_int_equal(lr_device_id_parse(s, &back, NULL), 0);
    assert_true(lr_device_id_eq(&la, &back));
}

static void test_every_substitution_rejected(void **state)
{
    (void)state;
    const char extra[] = "9!@/_.+=\x80\xff";
    for (int n = 0; n < 6; n++) {
        struct lr_device_id id, back;
        random_id(&id);
        if (n == 0)
            memset(&id, 0, sizeof(id));
        if (n == 1)
            memset(&id, 0xff, sizeof(id));
        char s[LR_DEVICE_ID_STRLEN + 1], c[57], t[57], ts[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&id, s);
        compact(s, c);
        size_t tried = 0;
        for (size_t pos = 0; pos < 56; pos++) {
            for (size_t a = 0; a < 32; a++) {
                if (alphabet[a] == c[pos])
                    continue;
                memcpy(t, c, sizeof(t));
                t[pos] = alphabet[a];
                expand(t, ts);
                struct lr_err err = {0};
                int rc = lr_device_id_parse(ts, &back, &err);
                if (rc != LR_EBADID)
                    fail_msg("substitution at %zu by %c accepted: %s", pos, alphabet[a], ts);
                assert_int_equal(err.code, LR_EBADID);
                assert_true(err.msg[0] != '\0');
                tried++;
            }
            for (size_t e = 0; e < sizeof(extra) - 1; e++) {
                memcpy(t, c, sizeof(t));
                t[pos] = extra[e];
                assert_int_equal(lr_device_id_parse(t, &back, NULL), LR_EBADID);
            }
        }
        assert_int_equal(tried, 56 * 31);
    }
}

static void test_transposition_rate(void **state)
{
    (void)state;
    size_t swaps = 0, caught = 0, swaps_in_block = 0, caught_in_block = 0;
    for (int n = 0; n < 300; n++) {
        struct lr_device_id id, back;
        random_id(&id);
        char s[LR_DEVICE_ID_STRLEN + 1], c[57], ts[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&id, s);
        compact(s, c);
        for (size_t pos = 0; pos + 1 < 56; pos++) {
            if (c[pos] == c[pos + 1])
                continue;
            char t[57];
            memcpy(t, c, sizeof(t));
            t[pos] = c[pos + 1];
            t[pos + 1] = c[pos];
            expand(t, ts);
            int rc = lr_device_id_parse(ts, &back, NULL);
            bool in_block = pos % 14 < 12; /* both characters are data of one block */
            swaps++;
            swaps_in_block += in_block;
            if (rc == LR_EBADID) {
                caught++;
                caught_in_block += in_block;
            } else {
                /* A missed swap within a block can only be the A <-> 7 pair. */
                assert_int_equal(rc, 0);
                if (in_block)
                    assert_true((c[pos] == 'A' && c[pos + 1] == '7') ||
                                (c[pos] == '7' && c[pos + 1] == 'A'));
            }
        }
    }
    double rate = (double)caught / (double)swaps;
    double rate_in = (double)caught_in_block / (double)swaps_in_block;
    print_message("adjacent transpositions detected: %zu/%zu = %.4f%% (within a block's data: "
                  "%.4f%%)\n",
                  caught, swaps, 100.0 * rate, 100.0 * rate_in);
    assert_true(rate > 0.99);
}

static void test_parse_errors(void **state)
{
    (void)state;
    struct lr_device_id id, back;
    random_id(&id);
    char s[LR_DEVICE_ID_STRLEN + 1], c[57];
    lr_device_id_format(&id, s);
    compact(s, c);
    struct lr_err err = {0};

    assert_int_equal(lr_device_id_parse("", &back, &err), LR_EBADID);
    assert_non_null(strstr(err.msg, "too short"));
    for (size_t i = 0; i < LR_DEVICE_ID_LEN; i++)
        assert_int_equal(back.b[i], 0);

    char shorter[57];
    memcpy(shorter, c, 55);
    shorter[55] = '\0';
    assert_int_equal(lr_device_id_parse(shorter, &back, &err), LR_EBADID);
    assert_non_null(strstr(err.msg, "55 characters"));

    char longer[80];
    snprintf(longer, sizeof(longer), "%sA", s);
    assert_int_equal(lr_device_id_parse(longer, &back, &err), LR_EBADID);
    assert_non_null(strstr(err.msg, "too long"));

    char bad[LR_DEVICE_ID_STRLEN + 1];
    memcpy(bad, s, sizeof(bad));
    bad[10] = '9';
    assert_int_equal(lr_device_id_parse(bad, &back, &err), LR_EBADID);
    assert_non_null(strstr(err.msg, "'9' at position 11"));
    bad[10] = '\x1b';
    assert_int_equal(lr_device_id_parse(bad, &back, &err), LR_EBADID);
    assert_non_null(strstr(err.msg, "\\x1b"));

    /* A typo in displayed group 1 or 2 is blamed on group 2's check character. */
    for (size_t pos = 0; pos < 56; pos++) {
        char t[57], ts[LR_DEVICE_ID_STRLEN + 1];
        memcpy(t, c, sizeof(t));
        t[pos] = t[pos] == 'C' ? 'D' : 'C';
        expand(t, ts);
        assert_int_equal(lr_device_id_parse(ts, &back, &err), LR_EBADID);
        char want[64];
        unsigned g = (unsigned)(pos / 14) * 2 + 2;
        snprintf(want, sizeof(want), "check character of group %u does not match", g);
        if (!strstr(err.msg, want) && !strstr(err.msg, "valid ending"))
            fail_msg("pos %zu: got '%s', want '%s'", pos, err.msg, want);
    }
}

static void test_padding_bits_rejected(void **state)
{
    (void)state;
    struct lr_device_id id, back;
    memset(&id, 0, sizeof(id));
    char s[LR_DEVICE_ID_STRLEN + 1], c[57];
    lr_device_id_format(&id, s);
    compact(s, c);
    /* Last data char (index 54) 'A' -> 'B' sets a padding bit; fix up the check
     * character (index 55) so only the padding rule can reject it. */
    c[54] = 'B';
    for (size_t a = 0; a < 32; a++) {
        c[55] = alphabet[a];
        if (oracle_block_ok(c + 42))
            break;
    }
    assert_true(oracle_block_ok(c + 42));
    struct lr_err err = {0};
    assert_int_equal(lr_device_id_parse(c, &back, &err), LR_EBADID);
    assert_non_null(strstr(err.msg, "group 8"));
}

static void test_eq_u64(void **state)
{
    (void)state;
    struct lr_device_id a, b;
    for (size_t i = 0; i < LR_DEVICE_ID_LEN; i++)
        a.b[i] = (uint8_t)(i + 1);
    b = a;
    assert_true(lr_device_id_eq(&a, &b));
    b.b[31] ^= 1;
    assert_false(lr_device_id_eq(&a, &b));
    assert_true(lr_device_id_u64(&a) == UINT64_C(0x0102030405060708));
}

/* --- key and certificate files -------------------------------------------------------------- */

static void assert_mode_0600(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
}

static gnutls_x509_crt_t load_crt(const char *path)
{
    char *txt;
    size_t len;
    assert_int_equal(lr_read_file(path, 1 << 16, &txt, &len, NULL), 0);
    gnutls_x509_crt_t crt;
    assert_int_equal(gnutls_x509_crt_init(&crt), 0);
    gnutls_datum_t d = {.data = (unsigned char *)txt, .size = (unsigned)len};
    assert_int_equal(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
    free(txt);
    return crt;
}

static void test_create_load(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    struct lr_device_id id;
    struct lr_err err = {0};
    int rc = lr_identity_create(dir, &id, &err);
    if (rc)
        fail_msg("create: %s", err.msg);

    char *kp = path_in(dir, "key.pem"), *cp = path_in(dir, "cert.pem");
    assert_mode_0600(kp);
    assert_mode_0600(cp);

    struct lr_identity *ident = NULL;
    rc = lr_identity_load(dir, &ident, &err);
    if (rc)
        fail_msg("load: %s", err.msg);
    assert_true(lr_device_id_eq(&id, lr_identity_device_id(ident)));
    assert_string_equal(lr_identity_key_path(ident), kp);
    assert_string_equal(lr_identity_cert_path(ident), cp);

    /* PEM kinds: PKCS#8 key, X.509 certificate. */
    char *txt;
    size_t len;
    assert_int_equal(lr_read_file(kp, 1 << 16, &txt, &len, NULL), 0);
    assert_non_null(strstr(txt, "-----BEGIN PRIVATE KEY-----"));
    free(txt);

    /* The key pair is usable by GnuTLS as TLS credentials (what transport does). */
    gnutls_certificate_credentials_t cred;
    assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
    assert_true(gnutls_certificate_set_x509_key_file2(cred, cp, kp, GNUTLS_X509_FMT_PEM, NULL, 0) >=
                0);
    gnutls_certificate_free_credentials(cred);

    lr_identity_free(ident);
    lr_identity_free(NULL);
    free(kp);
    free(cp);
    rm_rf(dir);
}

static void test_id_is_spki_sha256(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    struct lr_device_id id;
    assert_int_equal(lr_identity_create(dir, &id, NULL), 0);
    char *cp = path_in(dir, "cert.pem");
    gnutls_x509_crt_t crt = load_crt(cp);

    gnutls_pubkey_t pub;
    assert_int_equal(gnutls_pubkey_init(&pub), 0);
    assert_int_equal(gnutls_pubkey_import_x509(pub, crt, 0), 0);
    gnutls_datum_t spki;
    assert_int_equal(gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki), 0);
    struct lr_hash h;
    lr_sha256(spki.data, spki.size, &h);
    assert_memory_equal(h.b, id.b, LR_DEVICE_ID_LEN);

    /* Not the hash of the whole certificate. */
    gnutls_datum_t der;
    assert_int_equal(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der), 0);
    struct lr_hash hc;
    lr_sha256(der.data, der.size, &hc);
    assert_memory_not_equal(hc.b, id.b, LR_DEVICE_ID_LEN);

    struct lr_device_id from_der;
    assert_int_equal(lr_device_id_from_cert_der(der.data, der.size, &from_der), 0);
    assert_true(lr_device_id_eq(&id, &from_der));
    /* Truncated and garbage DER are refused. */
    assert_int_equal(lr_device_id_from_cert_der(der.data, der.size / 2, &from_der), LR_ETLS);
    for (size_t i = 0; i < LR_DEVICE_ID_LEN; i++)
        assert_int_equal(from_der.b[i], 0);
    assert_int_equal(lr_device_id_from_cert_der("garbage", 7, &from_der), LR_ETLS);
    assert_int_equal(lr_device_id_from_cert_der("", 0, &from_der), LR_ETLS);

    gnutls_free(spki.data);
    gnutls_free(der.data);
    gnutls_pubkey_deinit(pub);
    gnutls_x509_crt_deinit(crt);
    free(cp);
    rm_rf(dir);
}

static void test_cert_properties(void **state)
{
    (void)state;
    char *dir = make_tmpdir(), *dir2 = make_tmpdir();
    struct lr_device_id id, id2;
    assert_int_equal(lr_identity_create(dir, &id, NULL), 0);
    assert_int_equal(lr_identity_create(dir2, &id2, NULL), 0);
    assert_false(lr_device_id_eq(&id, &id2));

    char *cp = path_in(dir, "cert.pem"), *cp2 = path_in(dir2, "cert.pem");
    gnutls_x509_crt_t crt = load_crt(cp), crt2 = load_crt(cp2);

    assert_int_equal(gnutls_x509_crt_get_version(crt), 3);
    assert_int_equal(gnutls_x509_crt_get_pk_algorithm(crt, NULL), GNUTLS_PK_EDDSA_ED25519);
    char cn[64];
    size_t cn_len = sizeof(cn);
    assert_int_equal(
        gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &cn_len), 0);
    assert_string_equal(cn, "landropic");

    unsigned ku = 0, critical = 0;
    assert_true(gnutls_x509_crt_get_key_usage(crt, &ku, &critical) >= 0);
    assert_true(ku & GNUTLS_KEY_DIGITAL_SIGNATURE);
    bool server = false, client = false;
    for (unsigned i = 0;; i++) {
        char oid[128];
        size_t oid_len = sizeof(oid);
        if (gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &oid_len, NULL) < 0)
            break;
        server |= strcmp(oid, GNUTLS_KP_TLS_WWW_SERVER) == 0;
        client |= strcmp(oid, GNUTLS_KP_TLS_WWW_CLIENT) == 0;
    }
    assert_true(server && client);

    time_t now = time(NULL);
    assert_true(gnutls_x509_crt_get_activation_time(crt) <= now);
    assert_true(gnutls_x509_crt_get_expiration_time(crt) > now + (time_t)19 * 365 * 86400);

    unsigned char s1[64], s2[64];
    size_t l1 = sizeof(s1), l2 = sizeof(s2);
    assert_int_equal(gnutls_x509_crt_get_serial(crt, s1, &l1), 0);
    assert_int_equal(gnutls_x509_crt_get_serial(crt2, s2, &l2), 0);
    assert_true(l1 >= 8);
    assert_true(l1 != l2 || memcmp(s1, s2, l1) != 0);

    /* Self-signature verifies against itself as the only anchor. */
    unsigned status = 1;
    assert_int_equal(gnutls_x509_crt_verify(crt, &crt, 1, 0, &status), 0);
    assert_int_equal(status, 0);
    /* ...and not against another device's certificate. */
    assert_int_equal(gnutls_x509_crt_verify(crt, &crt2, 1, 0, &status), 0);
    assert_int_not_equal(status, 0);

    gnutls_x509_crt_deinit(crt);
    gnutls_x509_crt_deinit(crt2);
    free(cp);
    free(cp2);
    rm_rf(dir);
    rm_rf(dir2);
}

static void test_refuse_overwrite(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char *kp = path_in(dir, "key.pem"), *cp = path_in(dir, "cert.pem");
    struct lr_device_id id, id2;
    assert_int_equal(lr_identity_create(dir, &id, NULL), 0);
    char *k1, *c1, *k2, *c2;
    size_t kl1, cl1, kl2, cl2;
    assert_int_equal(lr_read_file(kp, 1 << 16, &k1, &kl1, NULL), 0);
    assert_int_equal(lr_read_file(cp, 1 << 16, &c1, &cl1, NULL), 0);

    struct lr_err err = {0};
    memset(&id2, 0xaa, sizeof(id2));
    assert_int_equal(lr_identity_create(dir, &id2, &err), LR_EEXISTS);
    assert_non_null(strstr(err.msg, "key.pem"));
    for (size_t i = 0; i < LR_DEVICE_ID_LEN; i++)
        assert_int_equal(id2.b[i], 0);

    /* Only one of the two present: still refused, and the survivor is untouched. */
    assert_int_equal(unlink(kp), 0);
    assert_int_equal(lr_identity_create(dir, &id2, &err), LR_EEXISTS);
    assert_non_null(strstr(err.msg, "cert.pem"));
    assert_int_equal(access(kp, F_OK), -1);
    assert_int_equal(lr_read_file(cp, 1 << 16, &c2, &cl2, NULL), 0);
    assert_int_equal(cl1, cl2);
    assert_memory_equal(c1, c2, cl1);
    free(c2);

    /* A dangling symlink named key.pem counts as present too. */
    assert_int_equal(unlink(cp), 0);
    assert_int_equal(symlink("/nonexistent/landropic-target", kp), 0);
    assert_int_equal(lr_identity_create(dir, NULL, &err), LR_EEXISTS);
    assert_int_equal(unlink(kp), 0);

    /* With both gone, create works again and yields a new identity. */
    assert_int_equal(lr_identity_create(dir, &id2, NULL), 0);
    assert_false(lr_device_id_eq(&id, &id2));
    assert_int_equal(lr_read_file(kp, 1 << 16, &k2, &kl2, NULL), 0);
    assert_true(kl1 != kl2 || memcmp(k1, k2, kl1) != 0);

    free(k1);
    free(c1);
    free(k2);
    free(kp);
    free(cp);
    rm_rf(dir);
}

static void test_load_errors(void **state)
{
    (void)state;
    char *dir = make_tmpdir(), *dir2 = make_tmpdir();
    struct lr_identity *ident = (struct lr_identity *)(uintptr_t)1;
    struct lr_err err = {0};

    assert_int_equal(lr_identity_load(dir, &ident, &err), LR_ENOTINIT);
    assert_null(ident);
    char *missing = lr_xasprintf("%s/nonexistent", dir);
    assert_int_equal(lr_identity_create(missing, NULL, &err), -ENOENT);
    free(missing);

    struct lr_device_id own;
    assert_int_equal(lr_identity_create(dir, &own, NULL), 0);
    assert_int_equal(lr_identity_create(dir2, NULL, NULL), 0);
    char *kp = path_in(dir, "key.pem"), *cp = path_in(dir, "cert.pem");
    char *cp2 = path_in(dir2, "cert.pem");

    /* Certificate of another device next to our key. */
    assert_int_equal(rename(cp2, cp), 0);
    assert_int_equal(lr_identity_load(dir, &ident, &err), LR_ETLS);
    assert_null(ident);
    assert_non_null(strstr(err.msg, "does not belong"));

    /* Garbage certificate, or none: issued again from the key, same device ID
     * (it advised a new init, which made a new device). */
    lr_log_set_level(LR_LOG_ERROR);
    assert_int_equal(lr_write_file_atomic(cp, "not a pem\n", 10, 0600, NULL), 0);
    assert_int_equal(lr_identity_load(dir, &ident, &err), 0);
    assert_true(lr_device_id_eq(lr_identity_device_id(ident), &own));
    lr_identity_free(ident);
    assert_int_equal(unlink(cp), 0);
    assert_int_equal(lr_identity_load(dir, &ident, &err), 0);
    assert_true(lr_device_id_eq(lr_identity_device_id(ident), &own));
    lr_identity_free(ident);
    struct stat cst;
    assert_int_equal(stat(cp, &cst), 0);
    assert_int_equal(cst.st_mode & 0777, 0600);
    assert_int_equal(lr_identity_load(dir, &ident, &err), 0); /* and it is kept */
    lr_identity_free(ident);

    /* Garbage key: no identity, and the message says so. */
    assert_int_equal(lr_write_file_atomic(kp, "junk\n", 5, 0600, NULL), 0);
    assert_int_equal(lr_identity_load(dir, &ident, &err), LR_ETLS);
    assert_null(ident);
    assert_non_null(strstr(err.msg, "not a PEM private key"));

    /* Key is a symlink to a valid key: not followed. */
    char *dir3 = make_tmpdir();
    assert_int_equal(lr_identity_create(dir3, NULL, NULL), 0);
    char *kp3 = path_in(dir3, "key.pem"), *real3 = path_in(dir3, "real-key.pem");
    assert_int_equal(rename(kp3, real3), 0);
    assert_int_equal(symlink(real3, kp3), 0);
    assert_int_equal(lr_identity_load(dir3, &ident, &err), -ELOOP);
    assert_null(ident);
    assert_int_equal(unlink(kp3), 0);
    assert_int_equal(rename(real3, kp3), 0);
    assert_int_equal(lr_identity_load(dir3, &ident, &err), 0);
    lr_identity_free(ident);
    free(kp3);
    free(real3);
    rm_rf(dir3);

    free(kp);
    free(cp);
    free(cp2);
    rm_rf(dir);
    rm_rf(dir2);
}

int main(void)
{
    gnutls_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_shape),
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_roundtrip_random),
        cmocka_unit_test(test_lenient_forms),
        cmocka_unit_test(test_every_substitution_rejected),
        cmocka_unit_test(test_transposition_rate),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_padding_bits_rejected),
        cmocka_unit_test(test_eq_u64),
        cmocka_unit_test(test_create_load),
        cmocka_unit_test(test_id_is_spki_sha256),
        cmocka_unit_test(test_cert_properties),
        cmocka_unit_test(test_refuse_overwrite),
        cmocka_unit_test(test_load_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    gnutls_global_deinit();
    return rc;
}
