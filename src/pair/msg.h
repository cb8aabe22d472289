/*
 * msg.h - the pairing protocol's wire messages (pure codecs, no I/O).
 *
 * Pairing runs on its own QUIC connection (ALPN LR_PAIR_ALPN) whose first
 * client-initiated bidirectional stream carries a sequence of frames:
 *     varint type | varint length | payload[length]
 * with QUIC varints (util/buf.h) that must be minimally encoded, so every
 * message has exactly one encoding. The type space is this ALPN's own
 * (unrelated to proto.h's). Every type has a fixed payload bound; a frame
 * of an unknown type, over its bound, with a field out of range or with
 * bytes after its last field is a protocol violation (the peer is dropped
 * and, on the code holder's side, the code is burnt if CPace had begun).
 *
 * Messages (docs/pairing.md has the flow):
 *   PAIR_HELLO   (0x01) version, nameplate, sender's device ID, name
 *   PAIR_CPACE   (0x02) the sender's CPace share Y (32 bytes, cpace.h)
 *   PAIR_CONFIRM (0x03) the sender's key confirmation tag (32 bytes)
 *   PAIR_RESULT  (0x04) status (lr_pair_status) and an optional reason text
 *
 * Encoding: lr_pair_msg_encode() appends one whole frame to a caller-owned
 * lr_buf; LR_EBADVAL (buffer untouched) if a field is invalid, LR_ETOOBIG
 * if the buffer is full (buffer poisoned, see buf.h).
 * Decoding: lr_pair_msg_decode() reads one frame from the front of borrowed
 * bytes into a struct that owns no memory (text fields are copied).
 * Errors, all "drop the peer" codes (<= LR_E__FATAL_PEER) with err naming
 * the field: LR_EPROTO (unknown type, non-minimal varint, trailing bytes),
 * LR_ETOOBIG (length over the type's bound), LR_EBADVAL (field value),
 * LR_ETRUNC (payload shorter than its fields).
 * Pure and thread-safe.
 */
#ifndef LR_PAIR_MSG_H
#define LR_PAIR_MSG_H

#include "identity/identity.h"
#include "pair/cpace.h"
#include "util/buf.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_PAIR_ALPN "landropic-pair/1"
#define LR_PAIR_VERSION 1
#define LR_PAIR_NAME_MAX 64    /* device name in PAIR_HELLO, bytes of UTF-8 */
#define LR_PAIR_REASON_MAX 128 /* PAIR_RESULT reason, bytes of UTF-8 */
/* Largest payload of any pairing message, and of a whole frame. */
#define LR_PAIR_PAYLOAD_MAX 256
#define LR_PAIR_FRAME_MAX (LR_PAIR_PAYLOAD_MAX + 16)

enum lr_pair_msg_type {
    LR_PAIR_MSG_HELLO = 0x01,
    LR_PAIR_MSG_CPACE = 0x02,
    LR_PAIR_MSG_CONFIRM = 0x03,
    LR_PAIR_MSG_RESULT = 0x04,
};

enum lr_pair_status {
    LR_PAIR_OK = 0,         /* confirmed both ways: each side pins the other */
    LR_PAIR_WRONG_CODE = 1, /* confirmation failed: the code is now void */
    LR_PAIR_EXPIRED = 2,    /* the code is older than 5 minutes */
    LR_PAIR_NO_CODE = 3,    /* no active code with this nameplate */
    LR_PAIR_USED = 4,       /* the code was used, failed or is in use */
    LR_PAIR_ERROR = 5,      /* anything else (protocol violation, internal) */
};
#define LR_PAIR_STATUS_MAX LR_PAIR_ERROR

struct lr_pair_hello {
    uint32_t version;                /* LR_PAIR_VERSION; others decode, the caller judges */
    uint16_t nameplate;              /* 0..999: the code's public part */
    struct lr_device_id id;          /* must equal the TLS peer's ID */
    char name[LR_PAIR_NAME_MAX + 1]; /* 1..64 bytes, lr_proto_text_ok */
};

struct lr_pair_result {
    enum lr_pair_status status;
    char reason[LR_PAIR_REASON_MAX + 1]; /* 0..128 bytes, lr_proto_text_ok */
};

struct lr_pair_msg {
    enum lr_pair_msg_type type;
    union {
        struct lr_pair_hello hello;
        uint8_t y[LR_CPACE_POINT_LEN]; /* PAIR_CPACE */
        uint8_t tag[LR_CPACE_TAG_LEN]; /* PAIR_CONFIRM */
        struct lr_pair_result result;
    } u;
};

/* Append one frame. See the header comment for errors. */
int lr_pair_msg_encode(const struct lr_pair_msg *m, struct lr_buf *out);

/*
 * Decode the frame at the front of p[0..n) into *m (zeroed first, filled
 * only on success). Returns the frame's size in bytes (> 0) when a whole
 * frame was decoded, 0 if p holds only part of a frame so far (feed more
 * bytes; a length over the bound or an unknown type is refused as soon as
 * the header is complete), or a negative error as above.
 */
int lr_pair_msg_decode(const uint8_t *p, size_t n, struct lr_pair_msg *m, struct lr_err *err);

/* Static name of a type ("PAIR_HELLO") or "unknown"; never NULL. */
const char *lr_pair_msg_type_name(uint64_t type);
/* Static words for a status, for the user ("wrong code"); never NULL. */
const char *lr_pair_status_str(uint64_t status);

#endif
