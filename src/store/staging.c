/*
 * staging.c - staging files in ROOT/.landropic/tmp: create or resume,
 * write, verify, discard, garbage-collect.
 */
#include "store/store_int.h"
#include "util/timens.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* Hash buffer for verify_chunk (streamed, so big chunks need no big allocation). */
#define VERIFY_BUF (64u * 1024)

void lr__store_staging_name(const struct lr_hash *key, char out[LR_HASH_HEX_LEN + 1])
{
    lr_hash_hex(key, out);
}

/* Remove whatever is at tmp/name if it is not a plain, singly linked file we may reuse. */
static int clear_stray(struct lr_store *st, const char *name, struct stat *sb, bool *exists)
{
    *exists = false;
    if (fstatat(st->tmpfd, name, sb, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISREG(sb->st_mode) && sb->st_nlink == 1) {
        *exists = true;
        return 0;
    }
    /* A hard link to a user's file or a symlink planted here must never be written through. */
    if (unlinkat(st->tmpfd, name, S_ISDIR(sb->st_mode) ? AT_REMOVEDIR : 0) < 0)
        return -errno;
    return 0;
}

int lr_store_staging_open(struct lr_store *st, const struct lr_hash *key, uint64_t size, int *fd,
                          bool *resumed, struct lr_err *err)
{
    *fd = -1;
    if (resumed)
        *resumed = false;
    char name[LR_HASH_HEX_LEN + 1];
    lr__store_staging_name(key, name);
    if (size > (uint64_t)INT64_MAX)
        return lr_err_set(err, LR_ETOOBIG, "staging %.16s: size %" PRIu64 " impossible", name,
                          size);
    struct stat sb;
    bool exists;
    int rc = clear_stray(st, name, &sb, &exists);
    if (rc)
        return lr_err_set(err, rc, "staging %.16s: %s", name, lr_strerror(rc));
    /*
     * A file larger than the whole file system cannot be stored (refused before anything is
     * created). Free space is not the limit: a sparse file may need much less than its size.
     */
    struct statvfs vfs;
    if (fstatvfs(st->tmpfd, &vfs) == 0) {
        uint64_t blocks = (uint64_t)vfs.f_blocks;
        uint64_t frsize = (uint64_t)vfs.f_frsize;
        if (frsize && blocks <= UINT64_MAX / frsize && size > blocks * frsize)
            return lr_err_set(err, -ENOSPC,
                              "staging %.16s: %" PRIu64 " bytes exceed the file system (%" PRIu64
                              " bytes)",
                              name, size, blocks * frsize);
    }
    int f = openat(st->tmpfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
    if (f < 0 && errno == EACCES && exists) {
        /* A refused commit already applied the peer's mode (say 0444): the file is ours. */
        if (fchmodat(st->tmpfd, name, 0600, AT_SYMLINK_NOFOLLOW) == 0)
            f = openat(st->tmpfd, name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    }
    if (f < 0)
        return lr_err_set(err, -errno, "staging %.16s: open: %s", name, strerror(errno));
    if (fstat(f, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_nlink != 1) {
        close(f);
        return lr_err_set(err, LR_ECHANGED, "staging %.16s: replaced while opening", name);
    }
    if ((uint64_t)sb.st_size != size && ftruncate(f, (off_t)size) < 0) {
        int e = -errno;
        close(f);
        if (!exists)
            unlinkat(st->tmpfd, name, 0);
        return lr_err_set(err, e, "staging %.16s: size %" PRIu64 ": %s", name, size,
                          lr_strerror(e));
    }
    *fd = f;
    if (resumed)
        *resumed = exists;
    return 0;
}

/* Zero runs shorter than this are written: a hole saves nothing below a block. */
#define HOLE_MIN 4096u

static bool all_zero(const unsigned char *p, size_t len)
{
    return len > 0 && p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

int lr_store_staging_write(int fd, uint64_t off, const void *data, size_t len, struct lr_err *err)
{
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return lr_err_set(err, LR_ETOOBIG, "staging write at %" PRIu64 " + %zu", off, len);
    /* Zeros become a hole (hostile case 27: a sparse file must not cost its
     * whole size here). Punching, not skipping the write: a resumed staging
     * file may hold other data there. The partial blocks at either end are
     * zeroed by the file system. Where holes are not supported, written. */
    if (len >= HOLE_MIN && all_zero(data, len) &&
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
        return 0;
    const char *p = data;
    while (len > 0) {
        ssize_t w = pwrite(fd, p, len, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            return lr_err_set(err, e, "staging write at %" PRIu64 ": %s", off, lr_strerror(e));
        }
        if (w == 0)
            return lr_err_set(err, -EIO, "staging write at %" PRIu64 ": no progress", off);
        p += w;
        off += (uint64_t)w;
        len -= (size_t)w;
    }
    return 0;
}

void lr_store_staging_writeback(int fd, uint64_t off, uint64_t len)
{
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return;
    (void)sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

int lr_store_staging_verify_chunk(int fd, uint64_t off, uint32_t len, const struct lr_hash *hash,
                                  struct lr_err *err)
{
    if (len > LR_STORE_CHUNK_MAX)
        return lr_err_set(err, LR_ETOOBIG, "verify: chunk of %" PRIu32 " bytes", len);
    if (off > (uint64_t)INT64_MAX - len)
        return lr_err_set(err, LR_ETOOBIG, "verify: offset %" PRIu64, off);
    struct lr_sha256_ctx *c = lr_sha256_new();
    if (!c)
        return lr_err_set(err, -ENOMEM, "verify: hash context");
    uint8_t *buf = lr_xmalloc(VERIFY_BUF);
    int rc = 0;
    uint32_t left = len;
    while (left > 0) {
        size_t want = left < VERIFY_BUF ? left : VERIFY_BUF;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            lr_err_set(err, rc, "verify at %" PRIu64 ": %s", off, lr_strerror(rc));
            goto out;
        }
        if (r == 0) {
            rc = lr_err_set(err, LR_EVERIFY, "verify at %" PRIu64 ": file ends early", off);
            goto out;
        }
        lr_sha256_update(c, buf, (size_t)r);
        off += (uint64_t)r;
        left -= (uint32_t)r;
    }
    struct lr_hash h;
    lr_sha256_final(c, &h);
    if (lr_hash_cmp(&h, hash) != 0)
        rc = lr_err_set(err, LR_EVERIFY, "verify at %" PRIu64 ": hash mismatch", off - len);
out:
    free(buf);
    lr_sha256_free(c);
    return rc;
}

int lr_store_staging_discard(struct lr_store *st, const struct lr_hash *key, struct lr_err *err)
{
    char name[LR_HASH_HEX_LEN + 1];
    lr__store_staging_name(key, name);
    if (unlinkat(st->tmpfd, name, 0) < 0 && errno != ENOENT)
        return lr_err_set(err, -errno, "discard staging %.16s: %s", name, strerror(errno));
    return 0;
}

static int cmp_hash(const void *a, const void *b)
{
    return lr_hash_cmp(a, b);
}

/* Remove what tmp/ holds that is older than cutoff (ns, ctime) and, with
 * keep, larger than a spare and not named in keep (sorted). */
static int sweep(struct lr_store *st, int64_t cutoff, const struct lr_hash *keep, size_t nkeep,
                 uint64_t *removed, struct lr_err *err)
{
    if (removed)
        *removed = 0;
    int dfd = openat(st->tmpfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return lr_err_set(err, -errno, "gc: open tmp: %s", strerror(errno));
    DIR *d = fdopendir(dfd);
    if (!d) {
        int e = -errno;
        close(dfd);
        return lr_err_set(err, e, "gc: %s", lr_strerror(e));
    }
    uint64_t n = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, ".."))
            continue;
        struct stat sb;
        if (fstatat(st->tmpfd, nm, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* vanished */
        int64_t ct = lr_timespec_ns(&sb.st_ctim);
        if (ct >= cutoff)
            continue;
        /* We never create directories here; one that appeared is left to the user. */
        if (S_ISDIR(sb.st_mode))
            continue;
        if (keep) {
            struct lr_hash h;
            /* Only staging files and sidecars (64 hex digits: a commit
             * batch's journal is not one), and no spares (staging_reuse.c):
             * they hold no space worth a sweep. */
            if (sb.st_size <= LR_STORE_SPARE_SIZE || lr_hash_from_hex(nm, &h) != 0 ||
                bsearch(&h, keep, nkeep, sizeof(*keep), cmp_hash))
                continue;
        }
        if (unlinkat(st->tmpfd, nm, 0) == 0)
            n++;
        else if (errno != ENOENT && !rc)
            rc = lr_err_set(err, -errno, "gc: unlink %.64s: %s", nm, strerror(errno));
        errno = 0;
    }
    closedir(d);
    if (removed)
        *removed = n;
    return rc;
}

int lr_store_staging_gc(struct lr_store *st, uint64_t older_than_s, uint64_t *removed,
                        struct lr_err *err)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t cutoff = lr_timespec_ns(&now);
    int64_t age = older_than_s > (uint64_t)INT64_MAX / 1000000000
                      ? INT64_MAX
                      : (int64_t)older_than_s * 1000000000;
    cutoff = age > cutoff ? INT64_MIN : cutoff - age;
    return sweep(st, cutoff, NULL, 0, removed, err);
}

int lr_store_staging_sweep(struct lr_store *st, struct lr_hash *keep, size_t nkeep,
                           uint64_t *removed, struct lr_err *err)
{
    static const struct lr_hash none;
    if (nkeep > 1)
        qsort(keep, nkeep, sizeof(*keep), cmp_hash);
    return sweep(st, INT64_MAX, nkeep ? keep : &none, nkeep, removed, err);
}

int lr_store_free_space(struct lr_store *st, uint64_t *avail, uint64_t *total, uint64_t *block,
                        struct lr_err *err)
{
    *avail = *total = *block = 0;
    struct statvfs vfs;
    if (fstatvfs(st->tmpfd, &vfs) < 0)
        return lr_err_set(err, -errno, "free space: %s", strerror(errno));
    uint64_t fr = (uint64_t)vfs.f_frsize;
    uint64_t a = (uint64_t)vfs.f_bavail, t = (uint64_t)vfs.f_blocks;
    *avail = fr && a > UINT64_MAX / fr ? UINT64_MAX : a * fr;
    *total = fr && t > UINT64_MAX / fr ? UINT64_MAX : t * fr;
    *block = fr;
    return 0;
}
