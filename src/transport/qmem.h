/*
 * qmem.h - a per-connection allocator for ngtcp2 that can take back what
 * the library forgets to free.
 *
 * ngtcp2 0.12 (Debian 12's) leaks on lossy links: a connection that went
 * through loss, reordering and duplication (test_18) sometimes leaves a
 * block or two (128 bytes seen) allocated after ngtcp2_conn_del. Upstream
 * fixed leaks of exactly this kind later: a STREAM frame chain malloc'd
 * for its many data vectors, whose vector count retransmission shrinks in
 * place, goes back to the object pool instead of free(), and the pool
 * frees only its own blocks (ngtcp2 af11b29c in 1.6.0, 17d5b7a0 in 1.20).
 * A daemon that reconnects for months must not accumulate that, and the
 * sanitizer build must stay leak-free. Every block handed to ngtcp2 is
 * linked into its connection's lr_qmem, so lr_qmem_sweep, called after
 * ngtcp2_conn_del, frees whatever the library left behind.
 *
 * The lr_qmem is owned by the connection and must stay at one address from
 * lr_qmem_init until after lr_qmem_sweep: ngtcp2 keeps the pointer that
 * lr_qmem_ngtcp2 returns. Blocks are malloc'd with a header (linked list
 * and size) in front and keep malloc's alignment; failed allocations
 * return NULL, which ngtcp2 reports as NGTCP2_ERR_NOMEM. Not thread-safe:
 * one connection's allocations happen on its loop thread.
 */
#ifndef LR_TRANSPORT_QMEM_H
#define LR_TRANSPORT_QMEM_H

#include <ngtcp2/ngtcp2.h>
#include <stddef.h>

struct lr_qmem_block;

struct lr_qmem {
    ngtcp2_mem mem;             /* user_data points back here */
    struct lr_qmem_block *head; /* live blocks, most recent first */
    size_t nblocks, nbytes;     /* live now (payload bytes) */
};

void lr_qmem_init(struct lr_qmem *m);
/* The allocator to pass to ngtcp2_conn_{client,server}_new; borrowed from m. */
const ngtcp2_mem *lr_qmem_ngtcp2(struct lr_qmem *m);
/* Free every live block (after ngtcp2_conn_del: nothing may use them). Returns how many
 * blocks were left, and their payload bytes in *bytes if bytes is not NULL; m is empty after. */
size_t lr_qmem_sweep(struct lr_qmem *m, size_t *bytes);

#endif
