/*
 * rd.h - bounds-checked reader over borrowed bytes (parsing side of buf.h).
 *
 * A reader is a pos/end cursor over memory it does not own; the memory must
 * outlive the reader and every pointer obtained from it. Every lr_rd_get_*
 * checks the remaining length first, zeroes its output, and advances only on
 * success; on failure it returns LR_ETRUNC (or LR_EBADVAL / LR_ETOOBIG as
 * documented) and the cursor is unchanged. Length-prefixed fields give
 * sub-readers (lr_rd_get_sub), so a field can never read past its own end.
 */
#ifndef LR_UTIL_RD_H
#define LR_UTIL_RD_H

#include <stddef.h>
#include <stdint.h>

struct lr_rd {
    const uint8_t *pos;
    const uint8_t *end;
};

static inline void lr_rd_init(struct lr_rd *r, const void *p, size_t n)
{
    /* NULL + 0 is undefined behaviour in C (UBSan flags it): an empty reader
     * over no memory points at a private empty array instead. */
    static const uint8_t none[1];
    r->pos = p ? (const uint8_t *)p : none;
    r->end = r->pos + (p ? n : 0);
}

static inline size_t lr_rd_left(const struct lr_rd *r)
{
    return (size_t)(r->end - r->pos);
}

int lr_rd_get_u8(struct lr_rd *r, uint8_t *v);
int lr_rd_get_u16(struct lr_rd *r, uint16_t *v);
int lr_rd_get_u32(struct lr_rd *r, uint32_t *v);
int lr_rd_get_u64(struct lr_rd *r, uint64_t *v);
int lr_rd_get_varint(struct lr_rd *r, uint64_t *v);
/* Copy exactly n bytes into out. */
int lr_rd_get_bytes(struct lr_rd *r, void *out, size_t n);
/* Borrow n bytes (points into the reader's memory). */
int lr_rd_get_view(struct lr_rd *r, const uint8_t **p, size_t n);
/* varint length (must be <= max, else LR_ETOOBIG) then a view of that many bytes. */
int lr_rd_get_lview(struct lr_rd *r, const uint8_t **p, size_t *n, size_t max);
/* varint length (<= max) then a sub-reader over that many bytes. */
int lr_rd_get_sub(struct lr_rd *r, struct lr_rd *sub, size_t max);
int lr_rd_skip(struct lr_rd *r, size_t n);

#endif
