/*
 * have.h - the HAVE message (type 0x14, docs/protocol.md §6.10): the chunks
 * a device holds, verified in its staging file, of a version it is still
 * downloading, so peers that want the same version can ask it for them
 * before it has the whole file (BitTorrent's "have"). Sent and accepted only
 * while LR_FEAT_HAVE is in force on the connection.
 *
 * Wire form (all in the payload, trailing bytes ignored):
 *     folder_id    folder-id
 *     path         path
 *     blocks_hash  lbytes, exactly 32: the version (as in WANT)
 *     nchunks      varint 1 .. LR_INDEX_CHUNKS_MAX: chunks of that version
 *     form         varint 0 bitmap, 1 ranges (other values: error)
 *     form 0: lbytes of exactly ceil(nchunks / 8) bytes; chunk k is bit
 *             (k & 7) of byte k >> 3 (least significant first); bits at
 *             nchunks and above must be 0
 *     form 1: varint nranges, then nranges times (varint skip, varint len):
 *             a range starts `skip` chunks after the end of the previous one
 *             (after 0 for the first), len >= 1, skip >= 1 except for the
 *             first (ranges are disjoint, sorted and not adjacent), and ends
 *             at or before nchunks
 * A chunk index at or beyond nchunks, in either form, is a protocol error.
 *
 * Pure (no I/O, no globals), thread-safe. The decoder allocates nothing: it
 * validates the whole payload and leaves views into it; the iterator then
 * walks the held chunks as ranges, so a receiver sizes its own structures
 * from its own chunk count, never from the peer's numbers.
 *
 * Errors: the encoder returns LR_EBADVAL (invalid field, `out` untouched)
 * or LR_ETOOBIG (not even the header fits `out`; `out` poisoned). The
 * decoder returns LR_ETRUNC, LR_ETOOBIG or LR_EBADVAL (all "drop the peer"
 * codes, util/err.h) with a message naming the field.
 */
#ifndef LR_PROTO_HAVE_H
#define LR_PROTO_HAVE_H

#include "proto/proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lr_proto_have_form { LR_PROTO_HAVE_BITMAP = 0, LR_PROTO_HAVE_RANGES = 1 };

struct lr_proto_have {
    char folder_id[LR_PROTO_FOLDER_ID_MAX + 1];
    const uint8_t *path; /* borrowed (decode: points into the payload) */
    size_t path_len;
    struct lr_hash blocks_hash; /* the version being downloaded */
    uint64_t nchunks;           /* 1 .. LR_INDEX_CHUNKS_MAX */
    /* Filled by the decoder (views into the payload, already validated). */
    uint64_t nheld; /* chunks announced */
    enum lr_proto_have_form form;
    const uint8_t *body; /* bitmap bytes, or the ranges after their count */
    size_t body_len;
    uint64_t nranges; /* form RANGES */
};

/*
 * Append a HAVE for h's folder, path, version and nchunks, announcing the
 * chunks set in bits[0 .. ceil(nchunks/8)) (same bit order as the wire;
 * bits at nchunks and above are ignored). The smaller of the two forms is
 * used; when neither fits the room left in `out` (its max), the ranges form
 * announces the longest prefix of the held ranges that fits (announcing
 * fewer chunks than held is always correct). *nsent (may be NULL): chunks
 * announced. h's decoder-filled fields are ignored.
 */
int lr_proto_have_encode(const struct lr_proto_have *h, const uint8_t *bits, struct lr_buf *out,
                         uint64_t *nsent);

/* Decode and validate p[0..n) whole; h's views point into p (valid while it
 * is). h is zeroed first and filled only on success. */
int lr_proto_have_decode(const uint8_t *p, size_t n, struct lr_proto_have *h, struct lr_err *err);

/* Walks the held chunks of a decoded HAVE as maximal ranges, in order. */
struct lr_proto_have_it {
    struct lr_rd rd;
    uint64_t pos;  /* bitmap: next chunk to look at; ranges: end of the last range */
    uint64_t left; /* ranges: ranges not yet returned */
};
void lr_proto_have_iter(const struct lr_proto_have *h, struct lr_proto_have_it *it);
/* The next range [*first, *first + *count) of held chunks; false at the end. */
bool lr_proto_have_next(const struct lr_proto_have *h, struct lr_proto_have_it *it, uint64_t *first,
                        uint64_t *count);

#endif
