/*
 * hash.h - SHA-256, the content address of every chunk and the basis of
 * device IDs.
 *
 * Backed by GnuTLS/nettle, which uses SHA-NI on this hardware (about
 * 1.8 GB/s per core, quic-notes.md). lr_sha256() is thread-safe and
 * allocation-free; the streaming context is for data that arrives in pieces
 * (it allocates; release it with lr_sha256_free even on error paths).
 */
#ifndef LR_HASH_HASH_H
#define LR_HASH_HASH_H

#include <stddef.h>
#include <stdint.h>

#define LR_HASH_LEN 32
#define LR_HASH_HEX_LEN (2 * LR_HASH_LEN)

struct lr_hash {
    uint8_t b[LR_HASH_LEN];
};

/* One-shot digest of p[0..n) into out. */
void lr_sha256(const void *p, size_t n, struct lr_hash *out);

struct lr_sha256_ctx;
/* Returns NULL only on allocation failure inside GnuTLS. */
struct lr_sha256_ctx *lr_sha256_new(void);
void lr_sha256_update(struct lr_sha256_ctx *c, const void *p, size_t n);
/* An independent copy of the running state (NULL on allocation failure). */
struct lr_sha256_ctx *lr_sha256_copy(const struct lr_sha256_ctx *c);
/* Writes the digest; the context may not be updated afterwards, only freed. */
void lr_sha256_final(struct lr_sha256_ctx *c, struct lr_hash *out);
void lr_sha256_free(struct lr_sha256_ctx *c);

/*
 * A fast 64-bit check of p[0..n) (XXH3, about 20x SHA-256's speed), never 0
 * so that 0 can mean "not known". Not a content address and not collision
 * resistant: it only tells a device whether bytes it hashed itself are still
 * the same when it reads them again (a file changed since its scan). Anything
 * a peer sent or will check is verified with SHA-256.
 */
uint64_t lr_weak64(const void *p, size_t n);

/* Lower-case hex, 65 bytes with NUL. */
void lr_hash_hex(const struct lr_hash *h, char out[LR_HASH_HEX_LEN + 1]);
/* Parse 64 hex digits; 0 or LR_EBADVAL. */
int lr_hash_from_hex(const char *s, struct lr_hash *out);
int lr_hash_cmp(const struct lr_hash *a, const struct lr_hash *b);

#endif
