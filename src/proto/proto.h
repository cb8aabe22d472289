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
 * protocol grows.
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
    /* 0x10.. sync messages (folders, index, want, chunk data) are defined by sync/. */
};

/* Maximum payload for `type`, or 0 if the type is unknown (to be skipped). */
size_t lr_proto_max_payload(uint64_t type);

/* ---- Hello ---- */
#define LR_PROTO_NAME_MAX 64
#define LR_PROTO_SOFTWARE_MAX 64

struct lr_proto_hello {
    uint32_t version;                       /* LR_PROTO_VERSION */
    char name[LR_PROTO_NAME_MAX + 1];         /* device name, UTF-8, no control chars */
    char software[LR_PROTO_SOFTWARE_MAX + 1]; /* e.g. "landropic 0.1.0" */
    uint64_t features;                      /* LR_FEAT_* bits */
};

int lr_proto_hello_encode(const struct lr_proto_hello *h, struct lr_buf *out);
int lr_proto_hello_decode(const uint8_t *p, size_t n, struct lr_proto_hello *h,
                          struct lr_err *err);

/* Append one whole frame (header + payload) to out. */
int lr_proto_frame_put(struct lr_buf *out, uint64_t type, const void *payload, size_t len);

/*
 * Incremental frame reader for one stream. Bytes are fed as they arrive;
 * frames come out whole. Memory held is bounded by the largest allowed
 * frame. Unknown types are skipped without buffering their payload.
 */
struct lr_frame_reader {
    struct lr_buf acc;   /* header bytes and the current payload */
    uint64_t type;       /* of the frame being read */
    uint64_t need;       /* payload bytes still expected (or to skip) */
    bool have_header;
    bool skipping;
    bool ready;          /* a whole frame is in acc, not yet taken */
};

void lr_frame_reader_init(struct lr_frame_reader *r);
void lr_frame_reader_release(struct lr_frame_reader *r);
/*
 * Consume up to n bytes; stops early when a whole frame is ready (then
 * *consumed < n may hold). Returns 1 if a frame is ready, 0 if more bytes
 * are needed, or a fatal negative code (over-long frame, bad header).
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
