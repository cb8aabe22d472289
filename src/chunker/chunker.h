/*
 * chunker.h - content-defined chunking (FastCDC, normalised level 2).
 *
 * Splits a byte stream into chunks whose boundaries depend only on nearby
 * content, so an insertion moves only the boundaries around it and the other
 * chunks keep their SHA-256 (dedup across versions and across files).
 *
 * Algorithm (Xia et al., "FastCDC", USENIX ATC'16, with normalised chunking
 * level 2): the first `min` bytes of a chunk are skipped unhashed; from there
 * a gear hash fp = (fp << 1) + lr_chunker_gear[byte] is rolled over each byte
 * and a cut is made after the first byte where (fp & mask) == 0. The mask has
 * log2(avg)+2 bits before the chunk reaches `avg` bytes (harder to cut) and
 * log2(avg)-2 bits after (easier), which narrows the size distribution. The
 * mask bits are the top bits of fp, so the decision depends on the last 64
 * bytes hashed. A chunk that reaches `max` bytes is cut there. The exact rule
 * is normative (peers must cut identically): docs/internals/chunker.md.
 *
 * Purity: lr_chunker_cut() keeps no state and allocates nothing; it reads
 * p[0..n) (borrowed) and is safe to call from any number of threads. It is
 * prefix-consistent: a non-zero result for (p, n, eof=false) is the same for
 * every longer buffer with the same prefix, so a caller may slide a window
 * over a file and call it again with more bytes after a 0.
 *
 * Parameters are validated once by lr_chunker_params_check(); passing
 * unchecked parameters to lr_chunker_cut() is a programmer error (asserted).
 */
#ifndef LR_CHUNKER_CHUNKER_H
#define LR_CHUNKER_CHUNKER_H

#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_CHUNK_MIN (16u * 1024)
#define LR_CHUNK_AVG (64u * 1024)
#define LR_CHUNK_MAX (256u * 1024)

/* Bounds accepted by lr_chunker_params_check(). The upper bound keeps every
 * chunk (plus its header) inside one ChunkData frame (LR_PROTO_FRAME_MAX). */
#define LR_CHUNK_LIMIT_MIN 64u
#define LR_CHUNK_LIMIT_MAX (1024u * 1024)

struct lr_chunker_params {
    uint32_t min, avg, max;
};

/* {LR_CHUNK_MIN, LR_CHUNK_AVG, LR_CHUNK_MAX}: what every landropic peer uses. */
extern const struct lr_chunker_params lr_chunker_default;

/* The gear table: a fixed protocol constant (see gear.c for how it was made). */
extern const uint64_t lr_chunker_gear[256];

/*
 * 0 if LR_CHUNK_LIMIT_MIN <= min < avg < max <= LR_CHUNK_LIMIT_MAX and avg
 * is a power of two; else LR_EBADVAL with a message naming the bad value.
 */
int lr_chunker_params_check(const struct lr_chunker_params *prm, struct lr_err *err);

/*
 * Length of the first chunk of p[0..n) (p may be NULL when n == 0):
 *  - a cut point was found: its length (min < len <= max, len <= n);
 *  - n >= max and no earlier cut: max (whatever eof says);
 *  - no cut in p[0..n), n < max: with eof, n (the last, short chunk; this
 *    includes n <= min); without eof, 0 meaning "give me more data".
 * Returns 0 for n == 0 either way (no chunk). Never more than prm->max.
 */
size_t lr_chunker_cut(const struct lr_chunker_params *prm, const uint8_t *p, size_t n, bool eof);

#endif
