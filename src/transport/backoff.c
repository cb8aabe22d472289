/* backoff.c - see backoff.h. */
#include "transport/backoff.h"

void lr_backoff_init(struct lr_backoff *b, uint32_t min_ms, uint32_t max_ms,
                     uint64_t (*rng)(void *rng_ud), void *rng_ud)
{
    if (min_ms == 0)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    b->min_ms = min_ms;
    b->max_ms = max_ms;
    b->attempt = 0;
    b->rng = rng;
    b->rng_ud = rng_ud;
}

void lr_backoff_reset(struct lr_backoff *b)
{
    b->attempt = 0;
}

uint32_t lr_backoff_next(struct lr_backoff *b)
{
    /* Doubling in 64 bits and stopping at the cap keeps this overflow-free for any attempt. */
    uint64_t ceil = b->min_ms;
    for (uint32_t i = 0; i < b->attempt && ceil < b->max_ms; i++)
        ceil *= 2;
    if (ceil > b->max_ms)
        ceil = b->max_ms;
    if (b->attempt < UINT32_MAX)
        b->attempt++;

    uint64_t lo = ceil / 2;
    uint64_t span = ceil - lo + 1;
    uint64_t r = b->rng ? b->rng(b->rng_ud) : 0;
    return (uint32_t)(lo + r % span);
}
