/*
 * proto_int.h - helpers shared by the files of src/proto/ only.
 */
#ifndef LR_PROTO_PROTO_INT_H
#define LR_PROTO_PROTO_INT_H

#include "proto/proto.h"

#include <zstd.h>

struct lr_proto_zc {
    ZSTD_CCtx *c; /* created on first use */
    ZSTD_DCtx *d;
    uint8_t *buf; /* compression output scratch, grown on demand */
    size_t cap;
};

/* A hash field: lbytes of exactly 32 (LR_EBADVAL otherwise, so a short
 * or long hash is an error rather than a shift of every later field). */
int lr__proto_get_hash(struct lr_rd *rd, const char *what, struct lr_hash *h, struct lr_err *err);
/* A varint that must be < 2^62 and <= max. */
int lr__proto_get_uint(struct lr_rd *rd, const char *what, uint64_t max, uint64_t *v,
                       struct lr_err *err);

/* The frame checks of lr__proto_unzstd alone (nothing decompressed). */
int lr__proto_zstd_check(const uint8_t *src, size_t n, size_t expect, const char *what,
                         struct lr_err *err);
/*
 * Decompress src[0..n) (one whole zstd frame, nothing after it, content size
 * declared and equal to `expect`) into dst[0..expect). LR_EBADVAL otherwise.
 */
int lr__proto_unzstd(struct lr_proto_zc *zc, const uint8_t *src, size_t n, uint8_t *dst,
                     size_t expect, const char *what, struct lr_err *err);
/*
 * Compress src[0..n) at `level` into dst (cap bytes). Returns the compressed
 * size if it is smaller than n, else 0 (send it raw).
 */
size_t lr__proto_zstd(struct lr_proto_zc *zc, int level, const void *src, size_t n, uint8_t *dst,
                      size_t cap);

#endif
