/*
 * batch.c - batched durability: one barrier for many staged files, one
 * fsync per touched directory (docs/decisions/0001-durability-batching.md).
 */
#include "store/store_int.h"
#include "util/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dirent_ref {
    dev_t dev;
    ino_t ino;
    int fd;
};

struct lr_store_batch {
    struct lr_store *st; /* borrowed */
    enum lr_store_barrier how;
    pthread_mutex_t mu;
    bool staged;  /* a barrier is owed (syncfs mode) */
    bool touched; /* a directory changed (syncfs mode) */
    int err;      /* first fsync error of stage() in fsync mode, reported by the barrier */
    struct dirent_ref dirs[LR_STORE_BATCH_DIRS]; /* fsync mode: held, deduplicated */
    size_t ndirs;
};

struct lr_store_batch *lr_store_batch_new(struct lr_store *st, enum lr_store_barrier how)
{
    struct lr_store_batch *b = lr_xcalloc(1, sizeof(*b));
    b->st = st;
    b->how = how;
    pthread_mutex_init(&b->mu, NULL);
    return b;
}

static void drop_dirs(struct lr_store_batch *b)
{
    for (size_t i = 0; i < b->ndirs; i++)
        close(b->dirs[i].fd);
    b->ndirs = 0;
}

void lr_store_batch_free(struct lr_store_batch *b)
{
    if (!b)
        return;
    drop_dirs(b);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

static int syncfs_root(struct lr_store_batch *b)
{
    int r;
    do
        r = syncfs(b->st->rootfd);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : 0;
}

int lr_store_batch_stage(struct lr_store_batch *b, int fd, struct lr_err *err)
{
    if (b->how == LR_STORE_BARRIER_FSYNC) {
        /* fsync on the calling worker thread now: the barrier then only collects errors. */
        int rc = lr__store_fsync(fd, false);
        if (rc) {
            pthread_mutex_lock(&b->mu);
            if (!b->err)
                b->err = rc;
            pthread_mutex_unlock(&b->mu);
            return lr_err_set(err, rc, "fsync staging file: %s", lr_strerror(rc));
        }
        return 0;
    }
    pthread_mutex_lock(&b->mu);
    b->staged = true;
    pthread_mutex_unlock(&b->mu);
    return 0;
}

int lr_store_batch_barrier(struct lr_store_batch *b, struct lr_err *err)
{
    pthread_mutex_lock(&b->mu);
    int rc = b->err;
    b->err = 0;
    if (!rc && b->how == LR_STORE_BARRIER_SYNCFS && b->staged)
        rc = syncfs_root(b);
    b->staged = false;
    pthread_mutex_unlock(&b->mu);
    if (rc)
        return lr_err_set(err, rc, "staging barrier: %s", lr_strerror(rc));
    return 0;
}

/* Called with the mutex held. */
static int flush_dirs(struct lr_store_batch *b)
{
    int rc = 0;
    for (size_t i = 0; i < b->ndirs; i++) {
        int r = lr__store_fsync(b->dirs[i].fd, true);
        if (r && !rc)
            rc = r;
    }
    drop_dirs(b);
    return rc;
}

int lr__store_touch(struct lr_store_batch *b, int dirfd)
{
    if (!b)
        return lr__store_fsync(dirfd, true);
    if (b->how == LR_STORE_BARRIER_SYNCFS) {
        pthread_mutex_lock(&b->mu);
        b->touched = true;
        pthread_mutex_unlock(&b->mu);
        return 0;
    }
    struct stat sb;
    if (fstat(dirfd, &sb) < 0)
        return -errno;
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->ndirs; i++) {
        if (b->dirs[i].dev == sb.st_dev && b->dirs[i].ino == sb.st_ino)
            goto out;
    }
    if (b->ndirs == LR_STORE_BATCH_DIRS) {
        /* The renames into these directories are done: syncing them early is correct, and
         * it bounds the descriptors a batch holds. */
        rc = flush_dirs(b);
        if (rc)
            goto out;
    }
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    b->dirs[b->ndirs].dev = sb.st_dev;
    b->dirs[b->ndirs].ino = sb.st_ino;
    b->dirs[b->ndirs].fd = fd;
    b->ndirs++;
out:
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int lr_store_batch_sync_dirs(struct lr_store_batch *b, struct lr_err *err)
{
    pthread_mutex_lock(&b->mu);
    int rc;
    if (b->how == LR_STORE_BARRIER_SYNCFS) {
        rc = b->touched ? syncfs_root(b) : 0;
        b->touched = false;
    } else {
        rc = flush_dirs(b);
    }
    pthread_mutex_unlock(&b->mu);
    if (rc)
        return lr_err_set(err, rc, "directory sync: %s", lr_strerror(rc));
    return 0;
}
