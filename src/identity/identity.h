/*
 * identity.h - this device's key and certificate, and device IDs.
 *
 * A device is an Ed25519 key pair with a self-signed X.509 certificate,
 * kept in the home as key.pem (PKCS#8, mode 0600) and cert.pem (0600).
 * Its device ID is the SHA-256 of the certificate's SubjectPublicKeyInfo
 * (so renewing the certificate keeps the ID). Transport pins peers by it.
 *
 * Text form (docs/identity.md): the 32 bytes in RFC 4648 base32 without
 * padding (52 characters), split into 4 blocks of 13, each followed by one
 * check character (Luhn mod 32 over the block), giving 56 characters shown
 * as 8 groups of 7 joined by '-'. Parsing ignores case, '-' and spaces, and
 * maps the look-alikes 0->O, 1->I, 8->B; any single wrong character fails
 * the check (LR_EBADID).
 *
 * Ownership: lr_identity_load() allocates; free with lr_identity_free().
 */
#ifndef LR_IDENTITY_IDENTITY_H
#define LR_IDENTITY_IDENTITY_H

#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_DEVICE_ID_LEN 32
/* 56 characters + 7 dashes */
#define LR_DEVICE_ID_STRLEN 63
/* characters of the formatted ID used in conflict-copy names and logs */
#define LR_DEVICE_ID_SHORTLEN 7

struct lr_device_id {
    uint8_t b[LR_DEVICE_ID_LEN];
};

struct lr_identity;

/*
 * Create key.pem and cert.pem in `home` (which must exist). Fails with
 * LR_EEXISTS if either file is already there (nothing is overwritten).
 * On success *id (may be NULL) receives the new device ID.
 */
int lr_identity_create(const char *home, struct lr_device_id *id, struct lr_err *err);

/* Load key and certificate from `home`; LR_ENOTINIT if absent. */
int lr_identity_load(const char *home, struct lr_identity **out, struct lr_err *err);
void lr_identity_free(struct lr_identity *ident);

const struct lr_device_id *lr_identity_device_id(const struct lr_identity *ident);
/* Paths of the PEM files (borrowed, valid while ident lives). */
const char *lr_identity_key_path(const struct lr_identity *ident);
const char *lr_identity_cert_path(const struct lr_identity *ident);

/* Device ID of a DER certificate: SHA-256 of its SPKI. LR_ETLS if unparsable. */
int lr_device_id_from_cert_der(const void *der, size_t len, struct lr_device_id *out);

/* Formatted ID, NUL-terminated, into out[LR_DEVICE_ID_STRLEN + 1]. */
void lr_device_id_format(const struct lr_device_id *id, char *out);
/* First LR_DEVICE_ID_SHORTLEN characters of the formatted ID (+NUL). */
void lr_device_id_short(const struct lr_device_id *id, char *out);
/* Parse the text form (lenient about case and separators); LR_EBADID naming the fault. */
int lr_device_id_parse(const char *s, struct lr_device_id *out, struct lr_err *err);
bool lr_device_id_eq(const struct lr_device_id *a, const struct lr_device_id *b);
/* First 8 bytes big-endian: the compact ID used in version vectors. */
uint64_t lr_device_id_u64(const struct lr_device_id *id);

#endif
