/*
 * store_int.h - internals shared by the store's own files (store.c,
 * safepath.c, staging.c, batch.c). Not a contract for other modules.
 */
#ifndef LR_STORE_STORE_INT_H
#define LR_STORE_STORE_INT_H

#include "store/store.h"

#include <limits.h>
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
    /* The root's directory ignores case (a lookup of ".LANDROPIC" finds the
     * marker): every name a change creates or touches is then compared with
     * the directory's entries byte for byte (lr__store_name_check). */
    bool folds;
    ino_t tmp_ino;                  /* .landropic/tmp's inode: keys the spare sidecar inodes */
    struct lr_store_spares *spares; /* borrowed, thread-safe; NULL: none kept */
};

/* Internal flag of lr__store_open_parent: verify each parent component's
 * spelling (on a folding store, and where a mkdir met an existing entry). */
#define LR__STORE_EXACT 0x100u

/* Where a path's spelling and a folding directory's entry differ. */
struct lr__store_clash {
    size_t off, len;         /* the component in the path given */
    char name[NAME_MAX + 1]; /* the entry's name on disk ("" if not identified) */
};

/*
 * Is `leaf` in directory dirfd under exactly that name (bytes)? `found` is
 * what a lookup of leaf returned (lstat). 0: an entry of that exact name
 * exists; LR_ECLASH: none does, so the lookup matched another spelling
 * (a case- or normalisation-insensitive directory); existing[] gets the
 * entry's name (same inode preferred, then an ASCII-case-insensitive
 * match; "" if neither is listed). -errno if the directory cannot be read.
 * Reads the whole directory (getdents): call it on rare paths only.
 */
int lr__store_name_check(int dirfd, const char *leaf, const struct stat *found,
                         char existing[NAME_MAX + 1]);

/*
 * LR_ECLASH with the message naming both spellings: relpath's prefix up to
 * the end of the clashing component at [off, off+len), and the same prefix
 * with `existing` in its place.
 */
int lr__store_clash_fail(struct lr_err *err, const char *relpath, size_t off, size_t len,
                         const char *existing);

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
/*
 * lr__store_open_dir verifying spelling: each component that exists is
 * checked with lr__store_name_check when st->folds (always per component,
 * no openat2 fast path), and any component mkdirat found existing is
 * checked whatever st->folds says. LR_ECLASH with *cl filled (offsets into
 * `path`).
 */
int lr__store_open_dir_exact(const struct lr_store *st, struct lr_store_batch *b, int basefd,
                             const char *path, bool create, mode_t mode, int *out,
                             struct lr__store_clash *cl);

/* lr_store_open_parent() recording created directories in b; flags may add
 * LR__STORE_EXACT (a spelling clash of a parent: LR_ECLASH, message set). */
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

/* Drop the spare sidecar inodes kept for st's tmp/ once it holds nothing
 * else (staging_reuse.c); called by lr_store_close(). */
void lr__store_spares_drain(struct lr_store *st);

#endif
