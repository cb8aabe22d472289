#include "chunker/chunker.h"

#include <assert.h>
#include <inttypes.h>

const struct lr_chunker_params lr_chunker_default = {LR_CHUNK_MIN, LR_CHUNK_AVG, LR_CHUNK_MAX};

static unsigned log2_u32(uint32_t v)
{
    unsigned b = 0;
    while (v >>= 1)
        b++;
    return b;
}

int lr_chunker_params_check(const struct lr_chunker_params *prm, struct lr_err *err)
{
    if (prm->min < LR_CHUNK_LIMIT_MIN)
        return lr_err_set(err, LR_EBADVAL, "chunker: min %" PRIu32 " below %u", prm->min,
                          LR_CHUNK_LIMIT_MIN);
    if (prm->max > LR_CHUNK_LIMIT_MAX)
        return lr_err_set(err, LR_EBADVAL, "chunker: max %" PRIu32 " above %u", prm->max,
                          LR_CHUNK_LIMIT_MAX);
    if (!(prm->min < prm->avg && prm->avg < prm->max))
        return lr_err_set(err, LR_EBADVAL,
                          "chunker: need min < avg < max, got %" PRIu32 "/%" PRIu32 "/%" PRIu32,
                          prm->min, prm->avg, prm->max);
    if (prm->avg & (prm->avg - 1))
        return lr_err_set(err, LR_EBADVAL, "chunker: avg %" PRIu32 " not a power of two", prm->avg);
    return 0;
}

/* A mask of the top `bits` bits: with fp = (fp << 1) + gear[b], bit k of fp
 * depends on the last k+1 bytes, so the top bits see the widest window. */
static uint64_t top_mask(unsigned bits)
{
    /* Checked parameters give 5..21 bits; the clamp only keeps unchecked
     * ones (a programmer error, asserted below) away from undefined shifts. */
    if (bits == 0 || bits > 63)
        bits = bits == 0 ? 1 : 63;
    return ~UINT64_C(0) << (64 - bits);
}

size_t lr_chunker_cut(const struct lr_chunker_params *prm, const uint8_t *p, size_t n, bool eof)
{
    assert(lr_chunker_params_check(prm, NULL) == 0);
    const size_t min = prm->min, avg = prm->avg, max = prm->max;
    if (n <= min)
        return eof ? n : 0;

    const unsigned bits = log2_u32(prm->avg);
    const uint64_t mask_s = top_mask(bits + 2); /* before avg: harder to cut */
    const uint64_t mask_l = top_mask(bits - 2); /* after avg: easier */
    const uint64_t *gear = lr_chunker_gear;

    size_t limit = n < max ? n : max;
    size_t mid = limit < avg ? limit : avg;
    uint64_t fp = 0;
    size_t i = min;
    for (; i < mid; i++) {
        fp = (fp << 1) + gear[p[i]];
        if (!(fp & mask_s))
            return i + 1;
    }
    for (; i < limit; i++) {
        fp = (fp << 1) + gear[p[i]];
        if (!(fp & mask_l))
            return i + 1;
    }
    if (limit == max)
        return max;
    return eof ? n : 0;
}
