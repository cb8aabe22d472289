/*
 * cpace.h - CPace balanced PAKE (ristretto255 + SHA-512) and how pairing
 * uses it.
 *
 * Pinned revision: draft-irtf-cfrg-cpace-21 (2026-04-23), cipher suite
 * CPACE-RISTR255-SHA512 (section "CPace group objects G_Ristretto255"),
 * initiator-responder mode (transcript_ir). Checked against that
 * revision's ristretto255 test vectors (tests/unit/test_cpace.c).
 *
 * Group operations come from libsodium 1.0.18:
 *   calculate_generator = crypto_core_ristretto255_from_hash(
 *       SHA-512(generator_string(b"CPaceRistretto255", PRS, CI, sid, 128)))
 *   sample_scalar       = crypto_core_ristretto255_scalar_random (uniform in
 *                         1..order-1, the draft's permitted alternative)
 *   scalar_mult(_vfy)   = crypto_scalarmult_ristretto255, which fails on a
 *                         non-canonical encoding and on the identity result;
 *                         either makes the exchange abort (K = G.I).
 *   ISK = SHA-512(lv_cat(b"CPaceRistretto255_ISK", sid, K)
 *                 || lv_cat(Ya, ADa) || lv_cat(Yb, ADb))
 * A is always the initiator. K is never exposed.
 *
 * Key confirmation (the draft's section "Key confirmation", with HMAC-SHA256
 * and HKDF-SHA256 from GnuTLS instead of H.hash for the MAC key):
 *   prk   = HKDF-Extract(SHA-256, salt = sid, IKM = ISK)
 *   key_A = HKDF-Expand(prk, "landropic-pair/1 confirm initiator", 32)
 *   key_B = HKDF-Expand(prk, "landropic-pair/1 confirm responder", 32)
 *   Ta    = HMAC-SHA256(key_A, lv_cat(Ya, ADa))   sent by the initiator
 *   Tb    = HMAC-SHA256(key_B, lv_cat(Yb, ADb))   sent by the responder
 * Direction-specific keys mean a reflected tag never verifies. Tags are
 * compared with sodium_memcmp (constant time).
 *
 * How landropic fills the draft's inputs (lr_pair_cpace_start):
 *   PRS = the code's six secret digits, ASCII (code.h)
 *   CI  = lv_cat(b"landropic-pair/1", nameplate as 3 ASCII digits,
 *                initiator device ID (32 bytes), responder device ID (32))
 *         i.e. both parties' identities in CI, initiator first, as the
 *         draft's "Party identifiers" section recommends; device IDs are
 *         the SHA-256 of each side's certificate SPKI (identity.h), taken
 *         from the pairing connection's TLS handshake.
 *   sid = 32 bytes exported from that TLS session with
 *         gnutls_prf_rfc5705(label LR_PAIR_EXPORTER_LABEL, no context),
 *         so the PAKE is bound to this one channel: a relay in the middle
 *         holds two TLS sessions with different exporters and different
 *         certificates, and both CPace runs fail.
 *   ADa = ADb = b"" (names travel in PAIR_HELLO over the same channel,
 *         which the confirmed sid authenticates).
 * Initiator = the joiner (`pair --join`, QUIC client); responder = the code
 * holder (`pair --code`).
 *
 * Ownership: struct lr_cpace is caller-allocated and owns no heap memory;
 * every input is copied (nothing borrowed after a call returns).
 * lr_cpace_clear() wipes the secrets (scalar, ISK, keys); call it when done
 * (a failed call also wipes them). Not thread-safe per struct; distinct
 * structs may be used from distinct threads.
 *
 * Errors: LR_ETOOBIG (an input over its *_MAX), LR_EINTERNAL (wrong call
 * order, libsodium/GnuTLS failure), LR_EPROTO (the peer's point is not a
 * valid ristretto255 encoding or yields the identity: drop the peer),
 * LR_EVERIFY (the peer's confirmation tag is wrong: the codes differ, or a
 * third party is in the middle).
 */
#ifndef LR_PAIR_CPACE_H
#define LR_PAIR_CPACE_H

#include "identity/identity.h"
#include "pair/code.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_CPACE_DRAFT "draft-irtf-cfrg-cpace-21"
#define LR_CPACE_POINT_LEN 32
#define LR_CPACE_SCALAR_LEN 32
#define LR_CPACE_ISK_LEN 64
#define LR_CPACE_TAG_LEN 32
#define LR_CPACE_PRS_MAX 256
#define LR_CPACE_CI_MAX 256
#define LR_CPACE_SID_MAX 64
#define LR_CPACE_AD_MAX 64

/* TLS exporter used as CPace sid (gnutls_prf_rfc5705, empty context). */
#define LR_PAIR_EXPORTER_LABEL "EXPORTER-landropic-pair/1"
#define LR_PAIR_EXPORTER_LEN 32

enum lr_cpace_role {
    LR_CPACE_INITIATOR = 1, /* party A: sends Ya first */
    LR_CPACE_RESPONDER = 2, /* party B */
};

enum lr_cpace_state {
    LR_CPACE_NONE = 0,  /* zeroed / cleared */
    LR_CPACE_STARTED,   /* own Y made, waiting for the peer's */
    LR_CPACE_KEYED,     /* ISK derived, own tag made, waiting for the peer's tag */
    LR_CPACE_CONFIRMED, /* the peer's tag verified */
    LR_CPACE_FAILED,    /* aborted; secrets wiped */
};

struct lr_cpace {
    enum lr_cpace_state state;
    enum lr_cpace_role role;
    uint8_t scalar[LR_CPACE_SCALAR_LEN];
    uint8_t own_y[LR_CPACE_POINT_LEN];
    uint8_t sid[LR_CPACE_SID_MAX];
    size_t sid_len;
    uint8_t own_ad[LR_CPACE_AD_MAX];
    size_t own_ad_len;
    uint8_t isk[LR_CPACE_ISK_LEN];
    uint8_t peer_tag[LR_CPACE_TAG_LEN]; /* the tag we expect from the peer */
};

/*
 * Begin one exchange: derive the generator from prs/ci/sid, sample a
 * scalar, write our share Y (the PAIR_CPACE payload) to y_out. All inputs
 * are copied; ad is our own associated data (sent in clear by the caller).
 * *c is overwritten. LR_ETOOBIG if an input is over its maximum,
 * LR_EINTERNAL if libsodium fails.
 */
int lr_cpace_start(struct lr_cpace *c, enum lr_cpace_role role, const void *prs, size_t prs_len,
                   const void *ci, size_t ci_len, const void *sid, size_t sid_len, const void *ad,
                   size_t ad_len, uint8_t y_out[LR_CPACE_POINT_LEN], struct lr_err *err);

/*
 * Take the peer's share and associated data: check it (LR_EPROTO if it is
 * invalid or gives the identity; the exchange is then dead), derive ISK and
 * write our confirmation tag to tag_out. State STARTED -> KEYED.
 */
int lr_cpace_receive(struct lr_cpace *c, const uint8_t peer_y[LR_CPACE_POINT_LEN],
                     const void *peer_ad, size_t peer_ad_len, uint8_t tag_out[LR_CPACE_TAG_LEN],
                     struct lr_err *err);

/*
 * Check the peer's confirmation tag in constant time. 0 and state CONFIRMED,
 * or LR_EVERIFY and state FAILED (secrets wiped). State must be KEYED.
 */
int lr_cpace_confirm(struct lr_cpace *c, const uint8_t peer_tag[LR_CPACE_TAG_LEN],
                     struct lr_err *err);

/*
 * Copy ISK to out (state KEYED or CONFIRMED, else LR_EINTERNAL). Before
 * CONFIRMED it is implicitly authenticated only: use it after confirmation.
 */
int lr_cpace_isk(const struct lr_cpace *c, uint8_t out[LR_CPACE_ISK_LEN]);

/* Wipe everything (state NONE). NULL is a no-op. */
void lr_cpace_clear(struct lr_cpace *c);

/*
 * Start the pairing exchange with landropic's inputs (see above): PRS from
 * `code` (borrowed during the call), CI from the nameplate and both device
 * IDs (initiator's first whatever `role` is), sid = exporter.
 */
int lr_pair_cpace_start(struct lr_cpace *c, enum lr_cpace_role role,
                        const struct lr_pair_code *code, const struct lr_device_id *initiator,
                        const struct lr_device_id *responder,
                        const uint8_t exporter[LR_PAIR_EXPORTER_LEN],
                        uint8_t y_out[LR_CPACE_POINT_LEN], struct lr_err *err);

/*
 * The sid for pairing: LR_PAIR_EXPORTER_LEN bytes exported from the
 * pairing connection's TLS session (borrowed; the handshake must be
 * complete) with gnutls_prf_rfc5705(LR_PAIR_EXPORTER_LABEL, no context).
 * Both ends of one TLS session get the same bytes; any other session gets
 * different ones. Returns 0, or LR_ETLS (handshake not done, GnuTLS error).
 * `session` is a gnutls_session_t (void * here so this header does not
 * pull in GnuTLS).
 */
int lr_pair_exporter(void *session, uint8_t out[LR_PAIR_EXPORTER_LEN], struct lr_err *err);

/* ---- test-only: the draft's intermediate values, for its test vectors ---- */

/* SHA-512 of generator_string(DSI, prs, ci, sid, 128) into out[64]. */
int lr__cpace_generator_hash(const void *prs, size_t prs_len, const void *ci, size_t ci_len,
                             const void *sid, size_t sid_len, uint8_t out[64]);
/* Encoded generator g into out[32]. */
int lr__cpace_generator(const void *prs, size_t prs_len, const void *ci, size_t ci_len,
                        const void *sid, size_t sid_len, uint8_t out[LR_CPACE_POINT_LEN]);
/* lr_cpace_start with a given scalar (little-endian) instead of a random one. */
int lr__cpace_start_with_scalar(struct lr_cpace *c, enum lr_cpace_role role, const void *prs,
                                size_t prs_len, const void *ci, size_t ci_len, const void *sid,
                                size_t sid_len, const void *ad, size_t ad_len,
                                const uint8_t scalar[LR_CPACE_SCALAR_LEN],
                                uint8_t y_out[LR_CPACE_POINT_LEN], struct lr_err *err);
/* G.scalar_mult_vfy: 0 and out = s*X, or -1 (X invalid or result identity; out = G.I). */
int lr__cpace_scalar_mult_vfy(const uint8_t s[LR_CPACE_SCALAR_LEN],
                              const uint8_t x[LR_CPACE_POINT_LEN], uint8_t out[LR_CPACE_POINT_LEN]);
/* The CI lr_pair_cpace_start uses, into out[cap]; returns its length or LR_ETOOBIG. */
int lr__pair_cpace_ci(uint16_t nameplate, const struct lr_device_id *initiator,
                      const struct lr_device_id *responder, uint8_t *out, size_t cap);

#endif
