#include "hash/hash.h"

#include "util/str.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdlib.h>
#include <xxhash.h>
#include <string.h>

void lr_sha256(const void *p, size_t n, struct lr_hash *out)
{
    /* gnutls_hash_fast only fails for unknown algorithms; SHA-256 always exists. */
    (void)gnutls_hash_fast(GNUTLS_DIG_SHA256, p, n, out->b);
}

uint64_t lr_weak64(const void *p, size_t n)
{
    uint64_t h = XXH3_64bits(p, n);
    return h ? h : 1;
}

struct lr_sha256_ctx {
    gnutls_hash_hd_t h;
};

struct lr_sha256_ctx *lr_sha256_new(void)
{
    struct lr_sha256_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (gnutls_hash_init(&c->h, GNUTLS_DIG_SHA256) < 0) {
        free(c);
        return NULL;
    }
    return c;
}

struct lr_sha256_ctx *lr_sha256_copy(const struct lr_sha256_ctx *c)
{
    struct lr_sha256_ctx *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->h = gnutls_hash_copy(c->h);
    if (!n->h) {
        free(n);
        return NULL;
    }
    return n;
}

void lr_sha256_update(struct lr_sha256_ctx *c, const void *p, size_t n)
{
    (void)gnutls_hash(c->h, p, n);
}

void lr_sha256_final(struct lr_sha256_ctx *c, struct lr_hash *out)
{
    gnutls_hash_output(c->h, out->b);
}

void lr_sha256_free(struct lr_sha256_ctx *c)
{
    if (!c)
        return;
    gnutls_hash_deinit(c->h, NULL);
    free(c);
}

void lr_hash_hex(const struct lr_hash *h, char out[LR_HASH_HEX_LEN + 1])
{
    lr_hex(h->b, LR_HASH_LEN, out);
}

int lr_hash_from_hex(const char *s, struct lr_hash *out)
{
    return lr_unhex(s, out->b, LR_HASH_LEN);
}

int lr_hash_cmp(const struct lr_hash *a, const struct lr_hash *b)
{
    return memcmp(a->b, b->b, LR_HASH_LEN);
}
