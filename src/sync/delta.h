/*
 * delta.h - a file's chunk list as a delta against another version's list
 * (docs/protocol.md §6.6, "Chunk-list deltas"). Pure: no I/O, no globals,
 * thread-safe; every pointer parameter is borrowed for the call.
 *
 * A delta is a sequence of operations, read until its bytes end:
 *     varint head = count << 1 | kind          (count >= 1)
 *     kind 0, COPY: varint start               blocks [start, start + count) of the base
 *     kind 1, NEW:  count x (varint len, hash[32])
 * The result's offsets are the running sum of its lengths (from 0), so a
 * delta never carries one. A NEW block costs at most what a block of the
 * full list costs (LR_DELTA_BLOCK_LEN: u32 length + hash), so a delta is
 * chosen only when it is shorter than the full list (lr_sync_delta_make).
 *
 * Layering: this header needs only index/index.h (struct lr_chunk), so
 * proto/ uses lr_sync_delta_scan to validate a received delta without its
 * base; applying it needs the base, found by the receiver in its index.
 *
 * Errors: LR_ETRUNC (an operation cut short), LR_ETOOBIG (a count over
 * LR_INDEX_CHUNKS_MAX), LR_EBADVAL (anything else: zero count, block length
 * not 1..LR_CHUNK_MAX, a copy outside the base, wrong total, size or blocks
 * hash). All are "drop the peer" codes; err names the operation.
 */
#ifndef LR_SYNC_DELTA_H
#define LR_SYNC_DELTA_H

#include "index/index.h"
#include "util/buf.h"
#include "util/err.h"

#include <stddef.h>
#include <stdint.h>

#define LR_DELTA_OP_COPY 0u
#define LR_DELTA_OP_NEW 1u
/* Bytes of one block in a full chunk list on the wire (u32 len + hash). */
#define LR_DELTA_BLOCK_LEN (4 + LR_HASH_LEN)

/*
 * Append to out the delta turning base[0..nbase) into cur[0..ncur) (both
 * lists with lengths 1..LR_CHUNK_MAX; offsets are not read). Runs of cur
 * found in base (same hash and length) become COPY operations, the rest
 * NEW ones. Returns 0, or LR_ETOOBIG when out is full (poisoned).
 */
int lr_sync_delta_encode(const struct lr_chunk *base, size_t nbase, const struct lr_chunk *cur,
                         size_t ncur, struct lr_buf *out);

/*
 * The delta of cur against base, appended to out only if it saves bytes:
 * delta length + overhead (what the caller adds to carry a delta instead of
 * a list) < ncur * LR_DELTA_BLOCK_LEN. Returns 1 (appended), 0 (not worth
 * it, out untouched) or LR_ETOOBIG (out full: poisoned).
 */
int lr_sync_delta_make(const struct lr_chunk *base, size_t nbase, const struct lr_chunk *cur,
                       size_t ncur, size_t overhead, struct lr_buf *out);

/*
 * Validate p[0..n) without the base: well-formed operations, counts >= 1,
 * block lengths 1..LR_CHUNK_MAX, copy ranges without overflow, result count
 * <= LR_INDEX_CHUNKS_MAX. *count (may be NULL) gets the result's block count
 * and *base_min (may be NULL) the number of base blocks the copies need
 * (the highest copy end). Both are zeroed first. Nothing is allocated.
 */
int lr_sync_delta_scan(const uint8_t *p, size_t n, uint64_t *count, uint64_t *base_min,
                       struct lr_err *err);

/*
 * Apply p[0..n) to base[0..nbase): on success *out (heap, caller frees with
 * free()) holds the *nout blocks with offsets from 0, their lengths sum to
 * `size` and lr_index_blocks_hash over them equals *blocks_hash. Checked
 * with lr_sync_delta_scan before anything is allocated; a copy reaching
 * past nbase is LR_EBADVAL. The outputs are zeroed first, set only on
 * success. A delta with no operations yields an empty list (size 0).
 */
int lr_sync_delta_apply(const struct lr_chunk *base, size_t nbase, const uint8_t *p, size_t n,
                        uint64_t size, const struct lr_hash *blocks_hash, struct lr_chunk **out,
                        size_t *nout, struct lr_err *err);

#endif
