/*
 * fsutil.h - small durable-file helpers.
 *
 * lr_write_file_atomic() writes a whole file so that after a crash at any
 * point the path holds either the old or the new contents: temp file in the
 * same directory, write, fsync, rename over, fsync the directory.
 * lr_read_file() reads a whole regular file up to `max` bytes (LR_ETOOBIG
 * beyond); the caller frees *out. All return 0 or a negative code and fill
 * `err` naming the path.
 */
#ifndef LR_UTIL_FSUTIL_H
#define LR_UTIL_FSUTIL_H

#include "util/err.h"

#include <stddef.h>
#include <sys/types.h>

int lr_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         struct lr_err *err);
int lr_read_file(const char *path, size_t max, char **out, size_t *len, struct lr_err *err);
/* mkdir -p with the given mode for created components. */
int lr_mkdirs(const char *path, mode_t mode, struct lr_err *err);
/* fsync a directory by path. */
int lr_fsync_dir(const char *path);
/* Canonical absolute path (realpath); caller frees. */
int lr_realpath(const char *path, char **out, struct lr_err *err);
/*
 * Open the directory at `path` (O_RDONLY | O_DIRECTORY | O_CLOEXEC) only if
 * no component of the path is a symbolic link: a folder root is stored
 * canonical, so a link found on the way later means the path now leads
 * somewhere else (a folder replaced by a link to another tree), which must
 * not be taken for the folder. Returns the descriptor, -ELOOP for a link on
 * the way, or another -errno.
 */
int lr_open_dir_nofollow(const char *path);

#endif
