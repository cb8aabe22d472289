/*
 * backoff.h - exponential backoff with jitter for redialling (pure).
 *
 * Delay n (0-based, counted since the last reset) has a ceiling of
 * min(max_ms, min_ms * 2^n); the delay returned is drawn uniformly from
 * [ceiling/2, ceiling] using the injected RNG, so peers that lost each
 * other at the same moment do not redial in lockstep, and no delay is
 * ever above max_ms nor below min_ms/2. The RNG is called once per delay.
 *
 * No allocation, no I/O; the struct is plain data owned by the caller.
 * rng_ud is borrowed and must outlive the struct.
 */
#ifndef LR_TRANSPORT_BACKOFF_H
#define LR_TRANSPORT_BACKOFF_H

#include <stdint.h>

struct lr_backoff {
    uint32_t min_ms;
    uint32_t max_ms;
    uint32_t attempt; /* delays handed out since the last reset */
    uint64_t (*rng)(void *rng_ud);
    void *rng_ud;
};

/* min_ms 0 becomes 1; max_ms below min_ms becomes min_ms. */
void lr_backoff_init(struct lr_backoff *b, uint32_t min_ms, uint32_t max_ms,
                     uint64_t (*rng)(void *rng_ud), void *rng_ud);
/* Next delay in ms; advances the attempt counter. */
uint32_t lr_backoff_next(struct lr_backoff *b);
/* Back to the first delay (call once a connection is up). */
void lr_backoff_reset(struct lr_backoff *b);

#endif
