/*
 * buf.h - bounded growable byte buffer (writer side).
 *
 * Invariants: `len <= cap <= max`; `data` is NULL only while cap == 0.
 * Every put either appends all of its bytes or fails with LR_ETOOBIG
 * without changing `len`; after a failed put the buffer is poisoned
 * (`failed` set, further puts fail) so a half-encoded message can never be
 * sent: check lr_buf_ok() (or the last put's result) before using `data`.
 * Integers are written big-endian; varints are QUIC-style (RFC 9000 §16,
 * 1/2/4/8 bytes, values < 2^62).
 *
 * Ownership: the buffer owns `data`; lr_buf_release() frees it,
 * lr_buf_detach() hands it to the caller (who frees it with free()).
 */
#ifndef LR_UTIL_BUF_H
#define LR_UTIL_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lr_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* hard limit on len */
    bool failed;
};

#define LR_VARINT_MAX ((UINT64_C(1) << 62) - 1)

void lr_buf_init(struct lr_buf *b, size_t max);
void lr_buf_release(struct lr_buf *b);
/* Drop contents and the failure flag, keep the allocation. */
void lr_buf_reset(struct lr_buf *b);
/* Caller owns the returned pointer (may be NULL if empty); buffer is reset to empty. */
uint8_t *lr_buf_detach(struct lr_buf *b, size_t *len);
static inline bool lr_buf_ok(const struct lr_buf *b)
{
    return !b->failed;
}

/* Make room for n more bytes; returns a pointer to them (not yet counted in len) or NULL. */
uint8_t *lr_buf_reserve(struct lr_buf *b, size_t n);
int lr_buf_put(struct lr_buf *b, const void *p, size_t n);
int lr_buf_put_u8(struct lr_buf *b, uint8_t v);
int lr_buf_put_u16(struct lr_buf *b, uint16_t v);
int lr_buf_put_u32(struct lr_buf *b, uint32_t v);
int lr_buf_put_u64(struct lr_buf *b, uint64_t v);
int lr_buf_put_varint(struct lr_buf *b, uint64_t v);
/* varint length prefix + bytes */
int lr_buf_put_lbytes(struct lr_buf *b, const void *p, size_t n);
int lr_buf_put_str(struct lr_buf *b, const char *s);
int lr_buf_printf(struct lr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Size in bytes of the varint encoding of v (v must be <= LR_VARINT_MAX). */
size_t lr_varint_len(uint64_t v);

#endif
