/*
 * session.h - one pairing attempt as a sans-I/O state machine: pairing
 * messages in, pairing frames out, a verdict at the end. The transport
 * (a QUIC connection with ALPN LR_PAIR_ALPN, to come) feeds decoded
 * messages from the stream and writes what the session appends to `out`;
 * docs/pairing.md has the flow and the security argument.
 *
 * Roles: the joiner (`pair --join`, QUIC client, CPace initiator) starts
 * by sending PAIR_HELLO and PAIR_CPACE; the holder (`pair --code`, QUIC
 * server, CPace responder) answers. The holder's code is claimed when a
 * PAIR_HELLO with its nameplate arrives and is finished (used or failed)
 * by the session, so one connection is one attempt whatever happens.
 *
 * Results of lr_pair_session_start/on_msg:
 *   0  keep going (send `out`, feed the next message)
 *   1  paired: both sides confirmed; send `out`, then pin peer_id
 *      (and, for the joiner, after the holder's PAIR_RESULT(ok))
 *  <0  failed: send `out` if non-empty (a PAIR_RESULT telling the peer
 *      why), then close. `status` says what the user should hear and err
 *      explains: LR_EVERIFY (wrong code / code already used), LR_ETIMEOUT
 *      (expired), LR_ENOTFOUND (no code with that nameplate), LR_EPROTO
 *      (peer broke the protocol, or sent an invalid CPace share),
 *      LR_EUNSUPPORTED (pairing version), LR_EINTERNAL (misuse, crypto
 *      library failure).
 * Once finished (1 or <0), further calls return LR_EINTERNAL.
 *
 * Ownership: the session is caller-allocated and owns no heap memory.
 * cfg fields are copied except `holder_code`, which is borrowed and
 * mutated (claimed, finished) and must outlive the session. Call
 * lr_pair_session_abort() if the connection ends early (so a holder's
 * claimed code is burnt) and lr_pair_session_clear() when done (wipes
 * keys). One thread at a time per session.
 */
#ifndef LR_PAIR_SESSION_H
#define LR_PAIR_SESSION_H

#include "identity/identity.h"
#include "pair/code.h"
#include "pair/cpace.h"
#include "pair/msg.h"
#include "util/buf.h"
#include "util/err.h"

#include <stdbool.h>
#include <stdint.h>

enum lr_pair_role {
    LR_PAIR_JOINER = 1,
    LR_PAIR_HOLDER = 2,
};

struct lr_pair_session_cfg {
    enum lr_pair_role role;
    struct lr_device_id self_id;            /* our device ID */
    const char *self_name;                  /* our device name (copied; 1..64 bytes text) */
    struct lr_device_id peer_cert_id;       /* the peer's ID from its TLS certificate */
    uint8_t exporter[LR_PAIR_EXPORTER_LEN]; /* LR_PAIR_EXPORTER_LABEL of this TLS session */
    struct lr_pair_code joiner_code;        /* joiner: the parsed code (copied) */
    struct lr_pair_code *holder_code;       /* holder: the live code (borrowed, mutated) */
};

enum lr_pair_session_state {
    LR_PAIR_S_NONE = 0,
    LR_PAIR_S_WAIT_HELLO,   /* holder: J's hello; joiner: H's hello */
    LR_PAIR_S_WAIT_CPACE,   /* the peer's share */
    LR_PAIR_S_WAIT_CONFIRM, /* the peer's tag */
    LR_PAIR_S_WAIT_RESULT,  /* joiner: H's verdict after our tag */
    LR_PAIR_S_DONE,         /* paired */
    LR_PAIR_S_FAILED,
};

struct lr_pair_session {
    enum lr_pair_role role;
    enum lr_pair_session_state state;
    enum lr_pair_status status; /* final verdict (valid in DONE/FAILED) */
    struct lr_device_id self_id;
    struct lr_device_id peer_id; /* = peer_cert_id; pin it only in DONE */
    char self_name[LR_PAIR_NAME_MAX + 1];
    char peer_name[LR_PAIR_NAME_MAX + 1]; /* from the peer's PAIR_HELLO */
    uint8_t exporter[LR_PAIR_EXPORTER_LEN];
    struct lr_pair_code code;         /* joiner's copy / holder's nameplate */
    struct lr_pair_code *holder_code; /* borrowed */
    bool claimed;                     /* holder: we hold the code's attempt */
    bool was_claimer; /* holder: this session claimed the code (stays set once it ended) */
    struct lr_cpace cpace;
    uint8_t own_tag[LR_CPACE_TAG_LEN];
};

/* Set up from cfg; the joiner appends PAIR_HELLO + PAIR_CPACE to out. */
int lr_pair_session_start(struct lr_pair_session *s, const struct lr_pair_session_cfg *cfg,
                          uint64_t now_ms, struct lr_buf *out, struct lr_err *err);

/* Feed one decoded message from the peer (see the header comment). */
int lr_pair_session_on_msg(struct lr_pair_session *s, const struct lr_pair_msg *m, uint64_t now_ms,
                           struct lr_buf *out, struct lr_err *err);

/* The connection ended or timed out before a verdict: fail, burn a claimed code. */
void lr_pair_session_abort(struct lr_pair_session *s);

/* Wipe (keys, the code copy). NULL is a no-op. */
void lr_pair_session_clear(struct lr_pair_session *s);

#endif
