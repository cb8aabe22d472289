/*
 * workq.h - the scanner's hashing pool: N pthreads that SHA-256 chunks held
 * in a small set of shared read buffers (scanner-internal header); each job
 * also gets its lr_weak64, for the serve side's re-read check.
 *
 * Model: one producer (the scanning thread) reads file data into a buffer it
 * got from lr__wq_buf_get(), cuts chunks and submits one job per chunk with
 * lr__wq_submit(). Workers hash and, under the pool mutex, drop the job's
 * reference on its buffer and on its file group. A group (one attempt at one
 * file) starts with one reference held by the producer (dropped by
 * lr__wq_group_close() when reading is done); when its count reaches zero it
 * is appended to the done list, which the producer drains with
 * lr__wq_reap(). Buffers are reused once their count is zero, so memory is
 * bounded by LR_WQ_BUFS x LR_WQ_BUF_SIZE whatever the file sizes.
 *
 * Threads: every lr__wq_* function is called from the producer thread only;
 * workers touch only jobs, reference counts and the done list, under `mu`.
 */
#ifndef LR_SCANNER_WORKQ_H
#define LR_SCANNER_WORKQ_H

#include "hash/hash.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lr__wq_buf {
    uint8_t *data;
    size_t cap;
    size_t fill;   /* bytes valid (producer only) */
    unsigned refs; /* jobs in flight + 1 while it is the producer's current buffer */
    bool allocated;
};

/* One attempt at hashing one file; embedded in the scanner's job struct. */
struct lr__wq_group {
    struct lr__wq_group *next_done;
    unsigned refs; /* chunks in flight + 1 while the producer reads */
};

struct lr__wq_job {
    const uint8_t *p;
    size_t len;
    struct lr_hash *out;
    uint64_t *weak; /* lr_weak64 of the same bytes */
    struct lr__wq_group *g;
    struct lr__wq_buf *b;
};

struct lr__wq {
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* jobs available or stop */
    pthread_cond_t done_cv; /* a buffer or a group was released */
    struct lr__wq_job *q;   /* ring */
    size_t qhead, qlen, qcap;
    bool stop;
    pthread_t *th;
    unsigned nth;
    struct lr__wq_buf *bufs;
    unsigned nbufs;
    size_t buf_size;
    struct lr__wq_group *done_head, *done_tail;
};

/* 0 or -errno (pthread_create). Buffers are allocated on first use. */
int lr__wq_start(struct lr__wq *wq, unsigned threads, unsigned nbufs, size_t buf_size);
/* Wait for every job, stop and join the workers, free buffers. */
void lr__wq_stop(struct lr__wq *wq);

/* A free buffer (fill = 0, refs = 1 for the producer); blocks until one is free. */
struct lr__wq_buf *lr__wq_buf_get(struct lr__wq *wq);
/* Drop the producer's reference. */
void lr__wq_buf_put(struct lr__wq *wq, struct lr__wq_buf *b);

/* Start a group with the producer's reference. */
void lr__wq_group_init(struct lr__wq_group *g);
/*
 * Queue jobs[0..n): each hashes p[0..len) (inside its buffer b) into *out as
 * part of group g. One lock and one wake-up for the whole batch.
 */
void lr__wq_submit(struct lr__wq *wq, const struct lr__wq_job *jobs, size_t n);
/* The producer is done reading the group. */
void lr__wq_group_close(struct lr__wq *wq, struct lr__wq_group *g);
/* Pop finished groups (linked by next_done), waiting for at least one if `wait`. */
struct lr__wq_group *lr__wq_reap(struct lr__wq *wq, bool wait);

#endif
