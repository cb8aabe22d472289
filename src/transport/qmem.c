/* qmem.c - see qmem.h. */
#include "transport/qmem.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Padded to max_align_t so the payload after it keeps malloc's alignment. */
struct lr_qmem_block {
    alignas(max_align_t) struct lr_qmem_block *next;
    struct lr_qmem_block *prev;
    size_t size;
};

static void *payload(struct lr_qmem_block *b)
{
    return (unsigned char *)b + sizeof(*b);
}

static struct lr_qmem_block *block_of(void *p)
{
    return (struct lr_qmem_block *)(void *)((unsigned char *)p - sizeof(struct lr_qmem_block));
}

static void link_block(struct lr_qmem *m, struct lr_qmem_block *b, size_t size)
{
    b->size = size;
    b->prev = NULL;
    b->next = m->head;
    if (m->head)
        m->head->prev = b;
    m->head = b;
    m->nblocks++;
    m->nbytes += size;
}

static void unlink_block(struct lr_qmem *m, struct lr_qmem_block *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        m->head = b->next;
    if (b->next)
        b->next->prev = b->prev;
    m->nblocks--;
    m->nbytes -= b->size;
}

static void *qm_malloc(size_t size, void *ud)
{
    struct lr_qmem *m = ud;
    if (size > SIZE_MAX - sizeof(struct lr_qmem_block))
        return NULL;
    struct lr_qmem_block *b = malloc(sizeof(*b) + size);
    if (!b)
        return NULL;
    link_block(m, b, size);
    return payload(b);
}

static void qm_free(void *p, void *ud)
{
    if (!p)
        return;
    struct lr_qmem_block *b = block_of(p);
    unlink_block(ud, b);
    free(b);
}

static void *qm_calloc(size_t nmemb, size_t size, void *ud)
{
    if (size && nmemb > SIZE_MAX / size)
        return NULL;
    void *p = qm_malloc(nmemb * size, ud);
    if (p)
        memset(p, 0, nmemb * size);
    return p;
}

static void *qm_realloc(void *p, size_t size, void *ud)
{
    struct lr_qmem *m = ud;
    if (!p)
        return qm_malloc(size, ud);
    if (size > SIZE_MAX - sizeof(struct lr_qmem_block))
        return NULL;
    struct lr_qmem_block *b = block_of(p);
    /* Unlinked first: realloc may move the block, and on failure it stays as it was. */
    unlink_block(m, b);
    struct lr_qmem_block *nb = realloc(b, sizeof(*b) + size);
    if (!nb) {
        link_block(m, b, b->size);
        return NULL;
    }
    link_block(m, nb, size);
    return payload(nb);
}

void lr_qmem_init(struct lr_qmem *m)
{
    memset(m, 0, sizeof(*m));
    m->mem.user_data = m;
    m->mem.malloc = qm_malloc;
    m->mem.free = qm_free;
    m->mem.calloc = qm_calloc;
    m->mem.realloc = qm_realloc;
}

const ngtcp2_mem *lr_qmem_ngtcp2(struct lr_qmem *m)
{
    return &m->mem;
}

size_t lr_qmem_sweep(struct lr_qmem *m, size_t *bytes)
{
    size_t n = m->nblocks;
    if (bytes)
        *bytes = m->nbytes;
    while (m->head) {
        struct lr_qmem_block *b = m->head;
        m->head = b->next;
        free(b);
    }
    m->nblocks = 0;
    m->nbytes = 0;
    return n;
}
