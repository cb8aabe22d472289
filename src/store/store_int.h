/*
 * store_int.h - internals shared by the store's own files (store.c,
 * safepath.c, staging.c, batch.c). Not a contract for other modules.
 */
#ifndef LR_STORE_STORE_INT_H
#define LR_STORE_STORE_INT_H

#include "store/store.h"

#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Immutable after lr_store_open(), hence shareable between threads. */
struct lr_store {
    char *root; /* as given, for lr_store_check_marker */
    int rootfd; /* O_RDONLY|O_DIRECTORY: *at() base, fsync, syncfs */
    int tmpfd;  /* .landropic/tmp */
    int versfd; /* .landropic/versions */
    dev_t dev;  /* root's file system: nothing is resolved across it */
    ino_t root_ino;
    ino_t marker_ino;
};

/* Record `rc` in err with "<what> <escaped path>: <strerror>" and return it. */
int lr__store_fail(struct lr_err *err, int rc, const char *what, const char *path);

/*
 * Open directory `path` (NUL-terminated, '/'-separated, already checked)
 * beneath basefd without following any symlink or crossing a mount;
 * "" opens basefd itself again. create: mkdir missing components with
 * `mode`, each new directory's parent recorded via lr__store_touch().
 * *out is O_RDONLY|O_DIRECTORY|O_CLOEXEC. -ELOOP, -ENOTDIR, -EXDEV,
 * -ENOENT, other -errno.
 */
int lr__store_open_dir(const struct lr_store *st, struct lr_store_batch *b, int basefd,
                       const char *path, bool create, mode_t mode, int *out);

/* lr_store_open_parent() recording created directories in b. */
int lr__store_open_parent(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                          unsigned flags, int *dirfd, const char **leaf, struct lr_err *err);

/* Open one directory entry `name` of dirfd as a directory, safely. */
int lr__store_open_one_dir(const struct lr_store *st, int dirfd, const char *name, int *out);

/*
 * A directory whose entries changed: with a batch, remembered for
 * lr_store_batch_sync_dirs(); without one, fsynced now.
 */
int lr__store_touch(struct lr_store_batch *b, int dirfd);
/* fsync(2) with EINTR retry, counted for the test hooks; 0 or -errno. */
int lr__store_fsync(int fd, bool is_dir);

void lr__store_info_from_stat(const struct stat *sb, struct lr_store_info *out);

/* 64 hex digits + NUL: the staging file name of key. */
void lr__store_staging_name(const struct lr_hash *key, char out[LR_HASH_HEX_LEN + 1]);

#endif
