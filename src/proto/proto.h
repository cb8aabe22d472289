/*
 * proto.h - landropic wire protocol: frames and message codecs (pure, no I/O).
 *
 * Every QUIC stream carries a sequence of frames:
 *     varint type | varint length | payload[length]
 * (varints as in RFC 9000 §16, see util/buf.h). Each known type has a
 * maximum payload size, checked as soon as the header is read and before
 * anything is allocated; an unknown type (from a newer peer) is skipped
 * if its length is within LR_PROTO_UNKNOWN_MAX, else the connection closes.
 * Decoders validate every field and return LR_ETRUNC / LR_EPROTO /
 * LR_ETOOBIG / LR_EBADVAL (all <= LR_E__FATAL_PEER: drop the peer) with a
 * message naming the field.
 *
 * The first frame on the control stream (client-initiated bidi stream 0)
 * in each direction is HELLO. docs/protocol.md is the normative text.
 *
 * This file is the contract shared by transport/ (framing + Hello) and
 * sync/ (all other messages); message types are added here as the
 * protocol grows: one row in the type table in proto.c (type, name, max
 * payload) plus the codec.
 *
 * Everything here is pure (no I/O, no globals written) and thread-safe;
 * a frame reader belongs to one stream and one thread at a time.
 * Encoders append to a caller-owned lr_buf and, on failure, leave it
 * poisoned (lr_buf_ok() false) so a half-encoded message is never sent.
 * Decoders borrow their input; decoded structs own no pointers.
 */
#ifndef LR_PROTO_PROTO_H
#define LR_PROTO_PROTO_H

#include "util/buf.h"
#include "util/err.h"
#include "util/rd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_PROTO_VERSION 1
#define LR_PROTO_ALPN "landropic/1"

/* Largest payload of a type we do not know, which we skip. */
#define LR_PROTO_UNKNOWN_MAX (1u << 20)
/* Largest payload of any known type (ChunkData: 256 KiB chunk + header). */
#define LR_PROTO_FRAME_MAX ((size_t)(1u << 20) + 4096)

enum lr_msg_type {
    LR_MSG_HELLO = 0x01,
    LR_MSG_PING = 0x02,
    LR_MSG_CLOSE = 0x03,
    /* 0x04..0x0f: reserved for connection messages.
     * 0x10..: sync messages (folders, index, want, chunk data): added here, with a
     * row in proto.c's type table and a section in docs/protocol.md. */
};

/* Per-type payload limits (see the type table in proto.c). */
#define LR_PROTO_HELLO_MAX 4096 /* known fields need < 160; the rest is room to grow */
#define LR_PROTO_PING_MAX 256
#define LR_PROTO_CLOSE_MAX 1024

/* Maximum payload for `type`, or 0 if the type is unknown (to be skipped). */
size_t lr_proto_max_payload(uint64_t type);
/* Static name of a known type ("HELLO"), or "unknown"; never NULL. */
const char *lr_proto_type_name(uint64_t type);

/* ---- Hello ---- */
#define LR_PROTO_NAME_MAX 64
#define LR_PROTO_SOFTWARE_MAX 64

struct lr_proto_hello {
    uint32_t version;                         /* LR_PROTO_VERSION */
    char name[LR_PROTO_NAME_MAX + 1];         /* device name, UTF-8, no control chars */
    char software[LR_PROTO_SOFTWARE_MAX + 1]; /* e.g. "landropic 0.1.0" */
    uint64_t features;                        /* LR_FEAT_* bits (none assigned yet) */
};

/*
 * Append the Hello payload (not the frame header: wrap it with
 * lr_proto_frame_put(LR_MSG_HELLO)). Returns 0; LR_EBADVAL if a field is
 * invalid (version 0, name empty or > 64 bytes or not valid UTF-8 or with a
 * control character, software likewise but may be empty, features >= 2^62;
 * `out` unchanged); LR_ETOOBIG if `out` is full (poisoned).
 */
int lr_proto_hello_encode(const struct lr_proto_hello *h, struct lr_buf *out);
/*
 * Decode a Hello payload p[0..n) (borrowed) into *h, which is zeroed first
 * and filled only on success. Bytes after the known fields are ignored
 * (fields added by newer versions). The version is not judged here: any
 * 1..2^32-1 decodes, the caller decides what it supports.
 * Errors (err names the field): LR_ETRUNC, LR_ETOOBIG (name/software over
 * 64 bytes), LR_EBADVAL (version 0 or >= 2^32, empty name, invalid UTF-8,
 * control character).
 */
int lr_proto_hello_decode(const uint8_t *p, size_t n, struct lr_proto_hello *h, struct lr_err *err);

/*
 * True if s[0..n) is acceptable as a peer-visible name (Hello name and
 * software, Close reason): valid UTF-8 without C0, DEL or C1 controls.
 */
bool lr_proto_text_ok(const void *s, size_t n);

/* ---- Close ---- */
/* Optionally sent on the control stream just before a deliberate
 * CONNECTION_CLOSE, to tell the peer why in more words than QUIC carries. */
#define LR_PROTO_REASON_MAX 256

/* One registry with the QUIC application error codes of transport.h
 * (enum lr_transport_app_error): the same number means the same thing. */
enum lr_close_code {
    LR_CLOSE_NORMAL = 0,    /* shutting down, or done */
    LR_CLOSE_PROTOCOL = 1,  /* the peer sent something invalid */
    LR_CLOSE_DUPLICATE = 2, /* replaced by another connection with the peer */
    LR_CLOSE_INTERNAL = 3,  /* local failure */
    LR_CLOSE_VERSION = 4,   /* no common protocol version */
    /* Unknown codes are treated like LR_CLOSE_INTERNAL. */
};

struct lr_proto_close {
    uint64_t code;                        /* enum lr_close_code */
    char reason[LR_PROTO_REASON_MAX + 1]; /* for logs; UTF-8, no control chars, may be empty */
};

/* Same conventions as the Hello codec (trailing bytes ignored on decode). */
int lr_proto_close_encode(const struct lr_proto_close *c, struct lr_buf *out);
int lr_proto_close_decode(const uint8_t *p, size_t n, struct lr_proto_close *c, struct lr_err *err);

/*
 * Append one whole frame (header + payload; payload borrowed, may be NULL
 * if len == 0) to out, or nothing. LR_EBADVAL: type 0 or >= 2^62.
 * LR_ETOOBIG: len over lr_proto_max_payload(type) (LR_PROTO_UNKNOWN_MAX
 * for types not in the table, so extensions can be sent), or out full
 * (poisoned).
 */
int lr_proto_frame_put(struct lr_buf *out, uint64_t type, const void *payload, size_t len);

/*
 * Incremental frame reader for one stream. Bytes are fed as they arrive;
 * frames come out whole. Memory held is bounded by the largest allowed
 * frame. Unknown types are skipped without buffering their payload.
 */
struct lr_frame_reader {
    struct lr_buf acc; /* header bytes and the current payload */
    uint64_t type;     /* of the frame being read */
    uint64_t need;     /* payload bytes still expected (or to skip) */
    bool have_header;
    bool skipping;
    bool ready; /* a whole frame is in acc, not yet taken */
    int error;  /* sticky: once a feed failed, every later feed fails */
};

void lr_frame_reader_init(struct lr_frame_reader *r);
void lr_frame_reader_release(struct lr_frame_reader *r);
/*
 * Consume up to n bytes of p (borrowed; copied as needed); stops early when
 * a whole frame is ready (then *consumed < n may hold: feed the rest after
 * taking the frame). Returns 1 if a frame is ready, 0 if more bytes are
 * needed (all n consumed), or a fatal negative code, after which the stream
 * must be closed (every later feed returns it again):
 *   LR_ETOOBIG  length over the type's limit (or LR_PROTO_UNKNOWN_MAX for an
 *               unknown type); err names the type and the length;
 *   LR_EPROTO   frame type 0 (reserved, never valid).
 * While a frame is ready and not taken, feed returns 1 and consumes nothing.
 * Frames of unknown types are consumed and dropped without being buffered.
 */
int lr_frame_reader_feed(struct lr_frame_reader *r, const uint8_t *p, size_t n, size_t *consumed,
                         struct lr_err *err);
/*
 * Take the ready frame: *payload is valid until the next feed/release.
 * Returns 0, or LR_ENOTFOUND if no frame is ready.
 */
int lr_frame_reader_take(struct lr_frame_reader *r, uint64_t *type, const uint8_t **payload,
                         size_t *len);

#endif
