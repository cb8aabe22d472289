/*
 * workq.c - hashing pool for the scanner (see workq.h).
 */
#include "scanner/workq.h"

#include "util/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

/* Jobs taken per lock acquisition: small chunks are cheap, the mutex is not. */
#define TAKE_MAX 8

static void release_locked(struct lr__wq *wq, struct lr__wq_buf *b, struct lr__wq_group *g)
{
    bool wake = false;
    if (b && --b->refs == 0)
        wake = true;
    if (g && --g->refs == 0) {
        g->next_done = NULL;
        if (wq->done_tail)
            wq->done_tail->next_done = g;
        else
            wq->done_head = g;
        wq->done_tail = g;
        wake = true;
    }
    if (wake)
        pthread_cond_signal(&wq->done_cv);
}

static void *worker(void *arg)
{
    struct lr__wq *wq = arg;
    struct lr__wq_job jobs[TAKE_MAX];
    (void)prctl(PR_SET_NAME, "lr-hash", 0, 0, 0); /* for per-thread profiles */
    pthread_mutex_lock(&wq->mu);
    for (;;) {
        while (wq->qlen == 0 && !wq->stop)
            pthread_cond_wait(&wq->work_cv, &wq->mu);
        if (wq->qlen == 0)
            break;
        /* Leave work for the other workers when the queue is short. */
        size_t take = wq->qlen / wq->nth;
        take = take < 1 ? 1 : take > TAKE_MAX ? TAKE_MAX : take;
        for (size_t i = 0; i < take; i++) {
            jobs[i] = wq->q[wq->qhead];
            wq->qhead = (wq->qhead + 1) % wq->qcap;
            wq->qlen--;
        }
        pthread_mutex_unlock(&wq->mu);
        for (size_t i = 0; i < take; i++) {
            lr_sha256(jobs[i].p, jobs[i].len, jobs[i].out);
            *jobs[i].weak = lr_weak64(jobs[i].p, jobs[i].len);
        }
        pthread_mutex_lock(&wq->mu);
        for (size_t i = 0; i < take; i++)
            release_locked(wq, jobs[i].b, jobs[i].g);
    }
    pthread_mutex_unlock(&wq->mu);
    return NULL;
}

int lr__wq_start(struct lr__wq *wq, unsigned threads, unsigned nbufs, size_t buf_size)
{
    memset(wq, 0, sizeof(*wq));
    pthread_mutex_init(&wq->mu, NULL);
    pthread_cond_init(&wq->work_cv, NULL);
    pthread_cond_init(&wq->done_cv, NULL);
    wq->bufs = lr_xcalloc(nbufs, sizeof(wq->bufs[0]));
    wq->nbufs = nbufs;
    wq->buf_size = buf_size;
    wq->th = lr_xcalloc(threads, sizeof(wq->th[0]));
    for (unsigned i = 0; i < threads; i++) {
        int rc = pthread_create(&wq->th[i], NULL, worker, wq);
        if (rc) {
            lr__wq_stop(wq);
            return -rc;
        }
        wq->nth++;
    }
    return 0;
}

void lr__wq_stop(struct lr__wq *wq)
{
    pthread_mutex_lock(&wq->mu);
    wq->stop = true;
    pthread_cond_broadcast(&wq->work_cv);
    pthread_mutex_unlock(&wq->mu);
    for (unsigned i = 0; i < wq->nth; i++)
        pthread_join(wq->th[i], NULL);
    for (unsigned i = 0; i < wq->nbufs; i++)
        free(wq->bufs[i].data);
    free(wq->bufs);
    free(wq->th);
    free(wq->q);
    pthread_cond_destroy(&wq->work_cv);
    pthread_cond_destroy(&wq->done_cv);
    pthread_mutex_destroy(&wq->mu);
    memset(wq, 0, sizeof(*wq));
}

struct lr__wq_buf *lr__wq_buf_get(struct lr__wq *wq)
{
    pthread_mutex_lock(&wq->mu);
    for (;;) {
        for (unsigned i = 0; i < wq->nbufs; i++) {
            struct lr__wq_buf *b = &wq->bufs[i];
            if (b->refs == 0) {
                b->refs = 1;
                pthread_mutex_unlock(&wq->mu);
                if (!b->allocated) {
                    b->data = lr_xmalloc(wq->buf_size);
                    b->cap = wq->buf_size;
                    b->allocated = true;
                }
                b->fill = 0;
                return b;
            }
        }
        pthread_cond_wait(&wq->done_cv, &wq->mu);
    }
}

void lr__wq_buf_put(struct lr__wq *wq, struct lr__wq_buf *b)
{
    pthread_mutex_lock(&wq->mu);
    release_locked(wq, b, NULL);
    pthread_mutex_unlock(&wq->mu);
}

void lr__wq_group_init(struct lr__wq_group *g)
{
    g->next_done = NULL;
    g->refs = 1;
}

void lr__wq_submit(struct lr__wq *wq, const struct lr__wq_job *jobs, size_t n)
{
    if (n == 0)
        return;
    pthread_mutex_lock(&wq->mu);
    if (wq->qlen + n > wq->qcap) {
        /* Grow the ring, unrolling it. Bounded: every job pins a chunk of a buffer. */
        size_t ncap = wq->qcap ? wq->qcap : 256;
        while (ncap < wq->qlen + n)
            ncap *= 2;
        struct lr__wq_job *nq = lr_xmallocarray(ncap, sizeof(nq[0]));
        for (size_t i = 0; i < wq->qlen; i++)
            nq[i] = wq->q[(wq->qhead + i) % wq->qcap];
        free(wq->q);
        wq->q = nq;
        wq->qcap = ncap;
        wq->qhead = 0;
    }
    for (size_t i = 0; i < n; i++) {
        wq->q[(wq->qhead + wq->qlen) % wq->qcap] = jobs[i];
        wq->qlen++;
        jobs[i].b->refs++;
        jobs[i].g->refs++;
    }
    if (n > 1)
        pthread_cond_broadcast(&wq->work_cv);
    else
        pthread_cond_signal(&wq->work_cv);
    pthread_mutex_unlock(&wq->mu);
}

void lr__wq_group_close(struct lr__wq *wq, struct lr__wq_group *g)
{
    pthread_mutex_lock(&wq->mu);
    release_locked(wq, NULL, g);
    pthread_mutex_unlock(&wq->mu);
}

struct lr__wq_group *lr__wq_reap(struct lr__wq *wq, bool wait)
{
    pthread_mutex_lock(&wq->mu);
    while (wait && !wq->done_head)
        pthread_cond_wait(&wq->done_cv, &wq->mu);
    struct lr__wq_group *g = wq->done_head;
    wq->done_head = wq->done_tail = NULL;
    pthread_mutex_unlock(&wq->mu);
    return g;
}
