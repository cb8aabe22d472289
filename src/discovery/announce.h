/*
 * announce.h - the LAN discovery announcement: a signed, timestamped UDP
 * datagram saying "device ID X, called N, listens on these ports".
 *
 * Wire format (docs/discovery.md; all integers big-endian):
 *   magic "LRDA" | u8 version (1) | u8 flags (bit 0: nameplate present; others 0)
 *   pubkey[32]      raw Ed25519 public key of the device
 *   device_id[32]   SHA-256 of the key's SubjectPublicKeyInfo (identity.h)
 *   u64 timestamp   ms since the Unix epoch, strictly increasing per sender
 *   nonce[16]       random
 *   u8 name_len (1..64) | name        UTF-8, no control characters
 *   u8 nports (0..8)    | u16 port... each non-zero
 *   u8 naddrs (0..8)    | (u8 family 4|6, 4 or 16 bytes)...
 *   [u16 nameplate (0..999)]          only with flag bit 0: a pairing code's
 *                                     public part (docs/pairing.md)
 *   signature[64]   Ed25519 over "landropic-announce-v1\0" || everything above
 * Nothing may follow the signature. The device ID is redundant with the key
 * on purpose: the receiver checks SHA-256(SPKI(pubkey)) == device_id, so a
 * valid announcement can only come from the holder of that device's key.
 *
 * Validation (lr_announce_parse) is total: every size is checked before use,
 * input over LR_ANNOUNCE_MAX is refused before parsing; the signature is
 * checked last. Freshness (lr_announce_check_fresh) and replay
 * (struct lr_announce_replay) are separate steps so the codec stays pure;
 * lr_announce_decode() runs parse + freshness.
 *
 * Errors: LR_ETRUNC (short input), LR_ETOOBIG (over a limit), LR_EPROTO (bad
 * magic, version, flags or trailing bytes), LR_EBADVAL (bad field value),
 * LR_EVERIFY (ID/key mismatch, bad signature, stale, future or replayed),
 * LR_ETLS (signing key unusable); `err` (may be NULL) names the field.
 *
 * Thread-safety: functions are reentrant; a signer or replay cache must not
 * be used from two threads at once.
 */
#ifndef LR_DISCOVERY_ANNOUNCE_H
#define LR_DISCOVERY_ANNOUNCE_H

#include "identity/identity.h"
#include "util/buf.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_ANNOUNCE_VERSION 1
#define LR_ANNOUNCE_NAME_MAX 64
#define LR_ANNOUNCE_MAX_PORTS 8
#define LR_ANNOUNCE_MAX_ADDRS 8
#define LR_ANNOUNCE_NONCE_LEN 16
#define LR_ANNOUNCE_PUBKEY_LEN 32
#define LR_ANNOUNCE_SIG_LEN 64
#define LR_ANNOUNCE_FLAG_NAMEPLATE 0x01
#define LR_ANNOUNCE_NAMEPLATE_MAX 999
/* Hard limit on a datagram; the largest valid one is 379 bytes. */
#define LR_ANNOUNCE_MAX 512
/* Accepted clock window around the receiver's time. */
#define LR_ANNOUNCE_MAX_AGE_MS 90000
#define LR_ANNOUNCE_MAX_SKEW_MS 30000

struct lr_announce_addr {
    uint8_t family; /* 4 or 6 */
    uint8_t a[16];  /* first 4 bytes used for IPv4 */
};

struct lr_announce {
    uint8_t pubkey[LR_ANNOUNCE_PUBKEY_LEN];
    struct lr_device_id id;
    uint64_t ts_ms;
    uint8_t nonce[LR_ANNOUNCE_NONCE_LEN];
    char name[LR_ANNOUNCE_NAME_MAX + 1]; /* NUL-terminated */
    uint16_t ports[LR_ANNOUNCE_MAX_PORTS];
    size_t nports;
    struct lr_announce_addr addrs[LR_ANNOUNCE_MAX_ADDRS];
    size_t naddrs;
    bool has_nameplate; /* the device holds a pairing code with this public part */
    uint16_t nameplate;
};

/* ---- Signing side ---- */

struct lr_announce_signer;

/*
 * Load the device's Ed25519 key (PKCS#8 PEM at key_path, identity.h's
 * key.pem) into a signer. Returns 0 and *out (free with
 * lr_announce_signer_free, which wipes the key), or LR_ETLS / -errno.
 */
int lr_announce_signer_load(const char *key_path, struct lr_announce_signer **out,
                            struct lr_err *err);
void lr_announce_signer_free(struct lr_announce_signer *s);
/* The signer's device ID and raw public key (borrowed, valid while s lives). */
const struct lr_device_id *lr_announce_signer_id(const struct lr_announce_signer *s);
const uint8_t *lr_announce_signer_pubkey(const struct lr_announce_signer *s);

/*
 * Fill a->pubkey, a->id, a->nonce (random) and a->ts_ms (now_ms, or one
 * more than the signer's previous timestamp if that is not lower, so a
 * sender's timestamps strictly increase), then write the signed datagram to
 * `out` (appended). Name, ports and addresses come from `a` and must be
 * valid (else LR_EBADVAL/LR_ETOOBIG and nothing usable in `out`).
 */
int lr_announce_sign(struct lr_announce_signer *s, struct lr_announce *a, uint64_t now_ms,
                     struct lr_buf *out, struct lr_err *err);

/* Append the signed part (everything before the signature) of `a`. */
int lr_announce_encode_body(const struct lr_announce *a, struct lr_buf *out, struct lr_err *err);

/* ---- Receiving side ---- */

/* Decode and fully verify p[0..n) (not freshness). *out is zeroed first, set on success. */
int lr_announce_parse(const uint8_t *p, size_t n, struct lr_announce *out, struct lr_err *err);
/* LR_EVERIFY if a->ts_ms is older than MAX_AGE_MS or ahead by more than MAX_SKEW_MS. */
int lr_announce_check_fresh(const struct lr_announce *a, uint64_t now_ms, struct lr_err *err);
/* parse + check_fresh. */
int lr_announce_decode(const uint8_t *p, size_t n, uint64_t now_ms, struct lr_announce *out,
                       struct lr_err *err);

/*
 * Replay guard: remembers the newest timestamp accepted from each of up to
 * `cap` devices; an announcement is accepted only if its timestamp is newer.
 * When full, an entry whose newest timestamp is already outside the
 * freshness window is reused (a replay of that device would be stale
 * anyway); if there is none, the new device is refused (LR_EBUSY) rather
 * than forgetting a device whose announcements could then be replayed.
 */
struct lr_announce_replay;
struct lr_announce_replay *lr_announce_replay_new(size_t cap);
void lr_announce_replay_free(struct lr_announce_replay *r);
/* 0 (accepted and recorded), LR_EVERIFY (not newer: replay), LR_EBUSY (full). */
int lr_announce_replay_check(struct lr_announce_replay *r, const struct lr_announce *a,
                             uint64_t now_ms, struct lr_err *err);

/* Wall clock in ms since the epoch (CLOCK_REALTIME). */
uint64_t lr_announce_now_ms(void);

#endif
