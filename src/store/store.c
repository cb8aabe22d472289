/*
 * store.c - opening a folder, applying changes (commit, symlink, mkdir,
 * delete, metadata), the versions archive, and chunk reads for peers.
 */
#include "store/store_int.h"
#include "util/fsutil.h"
#include "util/timens.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/*
 * Permission bits we apply: set-id and sticky bits never come from a peer,
 * and the owner keeps read on files (to serve chunks) and rwx on
 * directories (to apply into them), else a non-root daemon would lock
 * itself out of its own folder.
 */
#define MODE_MASK 0777u
#define FILE_MODE(m) ((mode_t)(((m)&MODE_MASK) | 0400u))
#define DIR_MODE(m) ((mode_t)(((m)&MODE_MASK) | 0700u))

static atomic_uint_fast64_t tmp_counter;

static void tmp_name(char out[64])
{
    snprintf(out, 64, "t-%ld-%" PRIu64, (long)getpid(),
             (uint64_t)atomic_fetch_add(&tmp_counter, 1));
}

/* times[] for futimens/utimensat: atime untouched, mtime from ns. */
static void mtime_times(int64_t mtime_ns, struct timespec ts[2])
{
    ts[0].tv_sec = 0;
    ts[0].tv_nsec = UTIME_OMIT;
    ts[1] = lr_ns_timespec(mtime_ns);
}

#ifdef LR_FAILPOINTS
static void (*race_hook)(void *arg, const char *relpath, int point);
static void *race_arg;

void lr_store_test_set_race_hook(void (*fn)(void *arg, const char *relpath, int point), void *arg)
{
    race_hook = fn;
    race_arg = arg;
}

static void run_race_hook(const char *relpath, int point)
{
    if (race_hook)
        race_hook(race_arg, relpath, point);
}
#else
static void run_race_hook(const char *relpath, int point)
{
    (void)relpath;
    (void)point;
}
#endif

/* ---- lifecycle ----------------------------------------------------------- */

static int open_sub(const struct lr_store *st, int dirfd, const char *name, int *out)
{
    if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
        return -errno;
    return lr__store_open_one_dir(st, dirfd, name, out);
}

int lr_store_open(const char *root, struct lr_store **out, struct lr_err *err)
{
    return lr_store_open_with(root, NULL, out, err);
}

int lr_store_open_with(const char *root, struct lr_store_spares *spares, struct lr_store **out,
                       struct lr_err *err)
{
    *out = NULL;
    int rootfd = lr_open_dir_nofollow(root);
    if (rootfd < 0)
        return lr__store_fail(err, rootfd, "folder root", root);
    struct stat rs, ms;
    if (fstat(rootfd, &rs) < 0) {
        int e = -errno;
        close(rootfd);
        return lr__store_fail(err, e, "folder root", root);
    }
    struct lr_store *st = lr_xcalloc(1, sizeof(*st));
    st->rootfd = rootfd;
    st->tmpfd = st->versfd = -1;
    st->dev = rs.st_dev;
    st->root_ino = rs.st_ino;
    st->root = lr_xstrdup(root);
    st->spares = spares;
    int rc, mfd = -1;
    if (fstatat(rootfd, LR_STORE_MARKER, &ms, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(ms.st_mode) ||
        ms.st_dev != rs.st_dev || lr__store_open_one_dir(st, rootfd, LR_STORE_MARKER, &mfd) < 0) {
        rc = lr__store_fail(err, LR_ENOMARKER, "no " LR_STORE_MARKER " directory in", root);
        goto fail;
    }
    st->marker_ino = ms.st_ino;
    /* A root that ignores case finds its marker under another spelling. */
    struct stat fs;
    st->folds = fstatat(rootfd, ".LANDROPIC", &fs, AT_SYMLINK_NOFOLLOW) == 0 &&
                fs.st_dev == ms.st_dev && fs.st_ino == ms.st_ino;
    if (st->folds)
        lr_debug("store", "folder %s ignores case: names are checked for spelling clashes", root);
    rc = open_sub(st, mfd, "tmp", &st->tmpfd);
    struct stat ts;
    if (rc == 0)
        rc = fstat(st->tmpfd, &ts) < 0 ? -errno : 0;
    if (rc == 0) {
        st->tmp_ino = ts.st_ino;
        rc = open_sub(st, mfd, "versions", &st->versfd);
    }
    close(mfd);
    if (rc) {
        lr__store_fail(err, rc, "creating " LR_STORE_TMP " or " LR_STORE_VERSIONS " in", root);
        goto fail;
    }
    *out = st;
    return 0;
fail:
    lr_store_close(st);
    return rc;
}

void lr_store_close(struct lr_store *st)
{
    if (!st)
        return;
    if (st->versfd >= 0)
        close(st->versfd);
    if (st->tmpfd >= 0) {
        lr__store_spares_drain(st);
        close(st->tmpfd);
    }
    if (st->rootfd >= 0)
        close(st->rootfd);
    free(st->root);
    free(st);
}

int lr_store_check_marker(struct lr_store *st, struct lr_err *err)
{
    struct stat a, m;
    if (stat(st->root, &a) < 0 || a.st_dev != st->dev || a.st_ino != st->root_ino)
        return lr__store_fail(err, LR_ENOMARKER,
                              "root is no longer the directory opened:", st->root);
    if (fstatat(st->rootfd, LR_STORE_MARKER, &m, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(m.st_mode) ||
        m.st_dev != st->dev || m.st_ino != st->marker_ino)
        return lr__store_fail(err, LR_ENOMARKER, LR_STORE_MARKER " missing or replaced in",
                              st->root);
    return 0;
}

/* ---- expectations -------------------------------------------------------- */

static bool type_is(const struct stat *sb, enum lr_ftype t)
{
    switch (t) {
    case LR_FT_FILE:
        return S_ISREG(sb->st_mode);
    case LR_FT_DIR:
        return S_ISDIR(sb->st_mode);
    case LR_FT_SYMLINK:
        return S_ISLNK(sb->st_mode);
    }
    return false;
}

/*
 * sb == NULL: nothing there. with_ctime is false after our own rename,
 * which changed the ctime itself.
 */
static bool matches(const struct stat *sb, const struct lr_store_expect *e, bool with_ctime)
{
    if (!e->exists)
        return sb == NULL;
    if (!sb || !type_is(sb, e->type))
        return false;
    if (e->ino && (uint64_t)sb->st_ino != e->ino)
        return false;
    if (with_ctime && e->ctime_ns && lr_timespec_ns(&sb->st_ctim) != e->ctime_ns)
        return false;
    if (e->type == LR_FT_FILE &&
        ((uint64_t)sb->st_size != e->size || lr_timespec_ns(&sb->st_mtim) != e->mtime_ns))
        return false;
    return true;
}

/* lstat dirfd/leaf: 0 with *present set, or -errno. */
static int lstat_at(int dirfd, const char *leaf, struct stat *sb, bool *present)
{
    *present = false;
    if (fstatat(dirfd, leaf, sb, AT_SYMLINK_NOFOLLOW) == 0) {
        *present = true;
        return 0;
    }
    return errno == ENOENT ? 0 : -errno;
}

/*
 * parent/leaf was found by a lookup: is it there under exactly that name?
 * 0 if so (or if that cannot be told), LR_ECLASH with the message set if a
 * folding directory matched another spelling.
 */
static int spelled_exactly(int parent, const char *leaf, const struct stat *sb, const char *relpath,
                           struct lr_err *err)
{
    char existing[NAME_MAX + 1];
    int rc = lr__store_name_check(parent, leaf, sb, existing);
    if (rc != LR_ECLASH)
        return 0;
    return lr__store_clash_fail(err, relpath, (size_t)(leaf - relpath), strlen(leaf), existing);
}

/*
 * Before a delete: the entry expected there is there, but (on a folding
 * store) under another spelling, i.e. renamed by case since the last scan.
 * Deleting it would take the user's rename away with the peer's delete, so
 * it is LR_ECHANGED (the rescan records the new name). A replace or a
 * metadata change of the same inode is let through: the result is the
 * peer's data under the user's new name, and the replaced file is archived.
 */
static int check_spelling(const struct lr_store *st, int parent, const char *leaf,
                          const struct stat *sb, const char *relpath, struct lr_err *err)
{
    if (!st->folds)
        return 0;
    char existing[NAME_MAX + 1];
    if (lr__store_name_check(parent, leaf, sb, existing) != LR_ECLASH)
        return 0;
    char *e = lr_escs(relpath), *x = lr_escs(existing);
    lr_err_set(err, LR_ECHANGED, "changed since the last scan: %s is spelled \"%s\" on disk", e, x);
    free(e);
    free(x);
    return LR_ECHANGED;
}

/*
 * A FIFO, socket or device node where an entry is to go: the scanner skips
 * them and the store never replaces one (it may be some program's
 * endpoint), so the item fails until the user moves it. 0 if sb is none.
 */
static int special_in_way(const struct stat *sb, const char *relpath, struct lr_err *err)
{
    const char *kind = S_ISFIFO(sb->st_mode)                          ? "a FIFO"
                       : S_ISSOCK(sb->st_mode)                        ? "a socket"
                       : S_ISCHR(sb->st_mode) || S_ISBLK(sb->st_mode) ? "a device node"
                                                                      : NULL;
    if (!kind)
        return 0;
    char *e = lr_escs(relpath);
    lr_err_set(err, LR_ECHANGED, "%s is in the way at %s (special files are never replaced)", kind,
               e);
    free(e);
    return LR_ECHANGED;
}

static int check_expect(int parent, const char *leaf, const struct lr_store_expect *e,
                        const char *relpath, struct lr_err *err)
{
    struct stat sb;
    bool present;
    int rc = lstat_at(parent, leaf, &sb, &present);
    if (rc)
        return lr__store_fail(err, rc, "stat", relpath);
    if (present && !e->exists && (rc = spelled_exactly(parent, leaf, &sb, relpath, err)) < 0)
        return rc; /* "absent" and found: another spelling? */
    if (!matches(present ? &sb : NULL, e, true)) {
        if (present && (rc = special_in_way(&sb, relpath, err)) < 0)
            return rc;
        return lr__store_fail(err, LR_ECHANGED, "changed since the last scan:", relpath);
    }
    return 0;
}

/* A parent spelled otherwise on disk, for a change to an existing entry: the
 * entry meant is not there (renamed by case), so it is a changed path. */
static int changed_if_clash(int rc, struct lr_err *err)
{
    if (rc == LR_ECLASH) {
        rc = LR_ECHANGED;
        if (err)
            err->code = rc;
    }
    return rc;
}

/* ---- moving entries ------------------------------------------------------ */

static int move_noreplace(int od, const char *on, int nd, const char *nn)
{
    if (renameat2(od, on, nd, nn, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL)
        return -errno;
    /* No RENAME_NOREPLACE on this file system: a link never replaces either. */
    if (linkat(od, on, nd, nn, 0) < 0)
        return -errno;
    if (unlinkat(od, on, 0) < 0) {
        int e = -errno;
        unlinkat(nd, nn, 0);
        return e;
    }
    return 0;
}

/* leaf~STAMP[-n], cut (at a UTF-8 boundary) and tagged with a hash if over NAME_MAX. */
static void archive_name(const char *leaf, const char *stamp, unsigned n, char out[NAME_MAX + 1])
{
    char suffix[48];
    if (n)
        snprintf(suffix, sizeof(suffix), "~%s-%u", stamp, n);
    else
        snprintf(suffix, sizeof(suffix), "~%s", stamp);
    size_t sl = strlen(suffix), ll = strlen(leaf);
    if (ll + sl <= NAME_MAX) {
        memcpy(out, leaf, ll);
        memcpy(out + ll, suffix, sl + 1);
        return;
    }
    struct lr_hash h;
    char hx[LR_HASH_HEX_LEN + 1];
    lr_sha256(leaf, ll, &h);
    lr_hash_hex(&h, hx);
    size_t keep = NAME_MAX - sl - 9; /* "~" + 8 hex */
    while (keep > 0 && ((unsigned char)leaf[keep] & 0xC0) == 0x80)
        keep--;
    memcpy(out, leaf, keep);
    out[keep] = '~';
    memcpy(out + keep + 1, hx, 8);
    memcpy(out + keep + 9, suffix, sl + 1);
}

/*
 * Put srcdir/srcname into vdir under a fresh archive name for `leaf`
 * (moved, or hard-linked with `link`); the name chosen is left in out.
 */
static int archive(int srcdir, const char *srcname, int vdir, const char *leaf, bool link,
                   char out[NAME_MAX + 1])
{
    time_t now = time(NULL);
    struct tm tm;
    char stamp[32];
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
    for (unsigned n = 0; n < 100000; n++) {
        archive_name(leaf, stamp, n, out);
        int r;
        if (link)
            r = linkat(srcdir, srcname, vdir, out, 0) < 0 ? -errno : 0;
        else
            r = move_noreplace(srcdir, srcname, vdir, out);
        if (r != -EEXIST)
            return r;
    }
    return -EEXIST;
}

int lr_store_copy_bytes(int in, int out, uint64_t size)
{
    if (ftruncate(out, (off_t)size) < 0)
        return -errno;
    size_t cap = 1u << 20;
    char *buf = lr_xmalloc(cap);
    int rc = 0;
    for (uint64_t off = 0; off < size && rc == 0;) {
        size_t want = size - off < cap ? (size_t)(size - off) : cap;
        ssize_t n = pread(in, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = -errno;
        else if (n == 0)
            rc = LR_ECHANGED;
        else if ((rc = lr_store_staging_write(out, off, buf, (size_t)n, NULL)) == 0)
            off += (uint64_t)n;
    }
    free(buf);
    return rc;
}

/*
 * A file with links besides srcdir/srcname (hard links, in the folder or
 * out of it) is archived as a copy of its own, mode and mtime kept: a link
 * or a move would make the archive entry that same inode, which a write
 * through another link rewrites (black-box round 25: a restore brought back
 * what an editor had written since, the version kept was gone). The source
 * must match `e` before and after the copy, or LR_ECHANGED. The copy is
 * made durable: the original may go right after. *ino: the copied inode.
 */
static int archive_copy(struct lr_store *st, int srcdir, const char *srcname, int vdir,
                        const char *leaf, const struct lr_store_expect *e, uint64_t *ino,
                        char out[NAME_MAX + 1])
{
    int in = openat(srcdir, srcname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (in < 0)
        return errno == ENOENT || errno == ELOOP ? LR_ECHANGED : -errno;
    struct stat before, after;
    if (fstat(in, &before) < 0 || !S_ISREG(before.st_mode) || !matches(&before, e, true)) {
        close(in);
        return LR_ECHANGED;
    }
    char tn[64];
    tmp_name(tn);
    int o = openat(st->tmpfd, tn, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (o < 0) {
        int rc = -errno;
        close(in);
        return rc;
    }
    struct timespec ts[2];
    mtime_times(lr_timespec_ns(&before.st_mtim), ts);
    /* A clone shares no writes either and costs nothing where the file
     * system has it (btrfs, XFS); ext4 copies. */
    int rc = ioctl(o, FICLONE, in) == 0 ? 0 : lr_store_copy_bytes(in, o, (uint64_t)before.st_size);
    /* Its owner's, where we may (best effort: only root can); no set-id
     * bits, as for every file the store writes. */
    if (!rc && fchown(o, before.st_uid, before.st_gid) < 0) {
        /* not root: the copy stays ours, readable as the archive is */
    }
    if (!rc && (fchmod(o, FILE_MODE(before.st_mode)) < 0 || futimens(o, ts) < 0))
        rc = -errno;
    if (!rc)
        rc = lr__store_fsync(o, false);
    if (!rc && (fstat(in, &after) < 0 || after.st_size != before.st_size ||
                lr_timespec_ns(&after.st_mtim) != lr_timespec_ns(&before.st_mtim) ||
                lr_timespec_ns(&after.st_ctim) != lr_timespec_ns(&before.st_ctim)))
        rc = LR_ECHANGED;
    close(o);
    close(in);
    if (!rc)
        rc = archive(st->tmpfd, tn, vdir, leaf, false, out);
    if (rc)
        unlinkat(st->tmpfd, tn, 0);
    *ino = (uint64_t)before.st_ino;
    return rc;
}

/* archive_copy of parent/leaf (relpath), its failure described in err. */
static int archive_copy_of(struct lr_store *st, int parent, const char *leaf, int vdir,
                           const struct lr_store_expect *e, const char *relpath, uint64_t *ino,
                           char out[NAME_MAX + 1], struct lr_err *err)
{
    int rc = archive_copy(st, parent, leaf, vdir, leaf, e, ino, out);
    if (rc == LR_ECHANGED)
        return lr__store_fail(err, rc, "changed since the last scan:", relpath);
    if (rc)
        return lr__store_fail(err, rc, "archive a copy of", relpath);
    return 0;
}

static int open_versions_dir(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                             int *out)
{
    const char *slash = strrchr(relpath, '/');
    char *dir = slash ? lr_xstrndup(relpath, (size_t)(slash - relpath)) : lr_xstrdup("");
    int rc = lr__store_open_dir(st, b, st->versfd, dir, true, 0700, out);
    free(dir);
    return rc;
}

/*
 * An entry we did not expect ended up at tmp/name and could not be put
 * back: keep it in versions/ so the user can find it.
 */
static void rescue(struct lr_store *st, const char *name, const char *relpath)
{
    int vfd;
    char an[NAME_MAX + 1];
    const char *slash = strrchr(relpath, '/');
    const char *leaf = slash ? slash + 1 : relpath;
    char *e = lr_escs(relpath);
    if (open_versions_dir(st, NULL, relpath, &vfd) == 0) {
        int r = archive(st->tmpfd, name, vfd, leaf, false, an);
        close(vfd);
        if (r == 0) {
            lr_error("store", "racing edit of path=%s kept in " LR_STORE_VERSIONS, e);
            free(e);
            return;
        }
    }
    lr_error("store", "racing edit of path=%s left at " LR_STORE_TMP "/%s", e, name);
    free(e);
}

/*
 * Put tmp/name at parent/leaf as `e` allows: nothing expected there -> a
 * no-replace rename; a file or symlink -> an atomic exchange, a second
 * check of what came out (undone if it is not what was expected), and the
 * old entry archived (file) or unlinked (symlink).
 */
static int place(struct lr_store *st, struct lr_store_batch *b, const char *name, int parent,
                 const char *leaf, const char *relpath, const struct lr_store_expect *e,
                 struct lr_err *err)
{
    int rc = check_expect(parent, leaf, e, relpath, err);
    if (rc)
        return rc;
    int vfd = -1;
    char an[NAME_MAX + 1];
    run_race_hook(relpath, 0);
    if (!e->exists) {
        rc = move_noreplace(st->tmpfd, name, parent, leaf);
        if (rc == -EEXIST) {
            struct stat sb;
            if (fstatat(parent, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                (rc = spelled_exactly(parent, leaf, &sb, relpath, err)) < 0)
                return rc;
            return lr__store_fail(err, LR_ECHANGED, "created meanwhile:", relpath);
        }
        if (rc)
            return lr__store_fail(err, rc, "rename into place", relpath);
        goto touch;
    }
    /* A directory that refuses the exchange fails it before the archive link:
     * link and unlink change the file's ctime, and the next attempt took our
     * own touch for a local change ("changed since the last scan"). */
    if (faccessat(parent, ".", W_OK | X_OK, AT_EACCESS) < 0 &&
        (errno == EACCES || errno == EPERM || errno == EROFS))
        return lr__store_fail(err, -errno, "exchange into place", relpath);
    bool linked = false, copied = false;
    ino_t linked_ino = 0;
    uint64_t copied_ino = 0;
    struct stat cur;
    if (e->type == LR_FT_FILE) {
        rc = open_versions_dir(st, b, relpath, &vfd);
        if (rc)
            return lr__store_fail(err, rc, "versions directory for", relpath);
    }
    if (e->type == LR_FT_FILE && fstatat(parent, leaf, &cur, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(cur.st_mode) && cur.st_nlink > 1) {
        if ((rc = archive_copy_of(st, parent, leaf, vfd, e, relpath, &copied_ino, an, err)))
            goto out;
        copied = true;
    } else if (e->type == LR_FT_FILE) {
        /*
         * Archive first, by hard link: from the exchange on, the old data is reachable from
         * versions/ at every instant. A crash after the exchange leaves it doubly linked under
         * the staging name, and lr_store_staging_open drops such an entry instead of reusing it.
         */
        rc = archive(parent, leaf, vfd, leaf, true, an);
        if (rc == -ENOENT) {
            rc = lr__store_fail(err, LR_ECHANGED, "vanished meanwhile:", relpath);
            goto out;
        }
        if (rc == 0) {
            struct stat ls;
            linked = true;
            run_race_hook(relpath, 1);
            if (fstatat(vfd, an, &ls, AT_SYMLINK_NOFOLLOW) == 0)
                linked_ino = ls.st_ino;
        } else if (rc != -EPERM && rc != -EMLINK && rc != -EOPNOTSUPP) {
            lr__store_fail(err, rc, "archive", relpath);
            goto out;
        }
        rc = 0; /* no hard links here: the old file is moved to versions/ after the exchange */
    }
    if (renameat2(st->tmpfd, name, parent, leaf, RENAME_EXCHANGE) < 0) {
        rc = -errno;
        if (rc == -EINVAL && (linked || copied || e->type != LR_FT_FILE)) {
            /* No RENAME_EXCHANGE on this file system: the old file is archived already, so
             * replace it; the second look is lost (a small window for a racing save). */
            if (renameat(st->tmpfd, name, parent, leaf) == 0) {
                rc = linked || copied ? lr__store_touch(b, vfd) : 0;
                goto touch;
            }
            rc = -errno;
        }
        if (linked || copied)
            unlinkat(vfd, an, 0);
        if (rc == -ENOENT)
            rc = lr__store_fail(err, LR_ECHANGED, "vanished meanwhile:", relpath);
        else
            lr__store_fail(err, rc, "exchange into place", relpath);
        goto out;
    }
    run_race_hook(relpath, 2);
    /* The old entry is now tmp/name. Is it the one the caller meant to replace? */
    struct stat old;
    if (fstatat(st->tmpfd, name, &old, AT_SYMLINK_NOFOLLOW) < 0 || !matches(&old, e, false) ||
        (linked && old.st_ino != linked_ino) || (copied && (uint64_t)old.st_ino != copied_ino)) {
        if (renameat2(st->tmpfd, name, parent, leaf, RENAME_EXCHANGE) < 0)
            rescue(st, name, relpath);
        if (linked || copied)
            unlinkat(vfd, an, 0);
        rc = lr__store_fail(err, LR_ECHANGED, "changed during apply:", relpath);
        goto out;
    }
    if (e->type == LR_FT_FILE) {
        if (linked || copied) {
            if (unlinkat(st->tmpfd, name, 0) < 0)
                lr_warn("store", "unlink replaced file tmp/%s (kept in versions): %s", name,
                        strerror(errno));
        } else {
            rc = archive(st->tmpfd, name, vfd, leaf, false, an);
            if (rc) {
                lr__store_fail(err, rc, "archive", relpath);
                if (renameat2(st->tmpfd, name, parent, leaf, RENAME_EXCHANGE) < 0)
                    rescue(st, name, relpath);
                goto out;
            }
        }
        rc = lr__store_touch(b, vfd);
    } else if (unlinkat(st->tmpfd, name, 0) < 0) {
        /* Harmless: an old symlink left in tmp/ is removed by lr_store_staging_gc. */
        lr_warn("store", "unlink replaced symlink tmp/%s: %s", name, strerror(errno));
    }
touch:
    if (!rc)
        rc = lr__store_touch(b, parent);
    if (!rc)
        rc = lr__store_touch(b, st->tmpfd);
    if (rc)
        lr__store_fail(err, rc, "sync directory of", relpath);
out:
    if (vfd >= 0)
        close(vfd);
    return rc;
}

static int check_replace_expect(const struct lr_store_expect *e, const char *relpath,
                                struct lr_err *err)
{
    if (!e)
        return lr_err_set(err, LR_EUSAGE, "no expectation given");
    if (e->exists && e->type != LR_FT_FILE && e->type != LR_FT_SYMLINK)
        return lr__store_fail(err, LR_EUSAGE,
                              "cannot replace a directory (delete it first):", relpath);
    return 0;
}

/* ---- applying changes ---------------------------------------------------- */

int lr_store_commit_file(struct lr_store *st, struct lr_store_batch *b, const struct lr_hash *key,
                         int fd, const char *relpath, uint32_t mode, int64_t mtime_ns,
                         const struct lr_store_expect *expect, unsigned flags,
                         struct lr_store_info *out, struct lr_err *err)
{
    if (out)
        memset(out, 0, sizeof(*out));
    int rc = lr_store_path_check(relpath, err);
    if (!rc)
        rc = check_replace_expect(expect, relpath, err);
    if (rc)
        return rc;
    char name[LR_HASH_HEX_LEN + 1];
    lr__store_staging_name(key, name);
    struct stat fs, ns;
    if (fstat(fd, &fs) < 0)
        return lr__store_fail(err, -errno, "staging file for", relpath);
    if (!S_ISREG(fs.st_mode) || fstatat(st->tmpfd, name, &ns, AT_SYMLINK_NOFOLLOW) < 0 ||
        ns.st_dev != fs.st_dev || ns.st_ino != fs.st_ino)
        return lr__store_fail(
            err, LR_ECHANGED,
            "staging file taken over by another writer at the same moment (a second restore?), for",
            relpath);
    struct timespec ts[2];
    mtime_times(mtime_ns, ts);
    if (fchmod(fd, FILE_MODE(mode)) < 0 || futimens(fd, ts) < 0)
        return lr__store_fail(err, -errno, "set mode/mtime of staging file for", relpath);
    if (!b && (rc = lr__store_fsync(fd, false)) != 0)
        return lr__store_fail(err, rc, "fsync staging file for", relpath);
    int parent;
    const char *leaf;
    rc = lr__store_open_parent(st, b, relpath, flags | LR__STORE_EXACT, &parent, &leaf, err);
    if (rc)
        return rc;
    rc = place(st, b, name, parent, leaf, relpath, expect, err);
    close(parent);
    if (rc)
        return rc;
    if (out && fstat(fd, &fs) == 0) /* same inode, now in place: ctime after the rename */
        lr__store_info_from_stat(&fs, out);
    return 0;
}

int lr_store_symlink(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                     const char *target, int64_t mtime_ns, const struct lr_store_expect *expect,
                     unsigned flags, struct lr_store_info *out, struct lr_err *err)
{
    if (out)
        memset(out, 0, sizeof(*out));
    int rc = lr_store_path_check(relpath, err);
    if (!rc)
        rc = check_replace_expect(expect, relpath, err);
    if (rc)
        return rc;
    size_t tl = target ? strlen(target) : 0;
    if (tl == 0 || tl > LR_INDEX_TARGET_MAX)
        return lr__store_fail(err, LR_EBADVAL, "symlink target empty or too long, for", relpath);
    int parent;
    const char *leaf;
    rc = lr__store_open_parent(st, b, relpath, flags | LR__STORE_EXACT, &parent, &leaf, err);
    if (rc)
        return rc;
    char tn[64];
    tmp_name(tn);
    struct timespec ts[2];
    struct stat ls;
    mtime_times(mtime_ns, ts);
    if (symlinkat(target, st->tmpfd, tn) < 0) {
        rc = lr__store_fail(err, -errno, "create symlink for", relpath);
        close(parent);
        return rc;
    }
    if (utimensat(st->tmpfd, tn, ts, AT_SYMLINK_NOFOLLOW) < 0 ||
        fstatat(st->tmpfd, tn, &ls, AT_SYMLINK_NOFOLLOW) < 0) {
        rc = lr__store_fail(err, -errno, "set mtime of symlink for", relpath);
        unlinkat(st->tmpfd, tn, 0);
        close(parent);
        return rc;
    }
    rc = place(st, b, tn, parent, leaf, relpath, expect, err);
    if (rc) {
        struct stat now;
        /* Remove only our own link: after a failed swap-back tn may hold someone's data. */
        if (fstatat(st->tmpfd, tn, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == ls.st_ino &&
            S_ISLNK(now.st_mode))
            unlinkat(st->tmpfd, tn, 0);
    } else if (out) {
        struct stat now;
        if (fstatat(parent, leaf, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_ino == ls.st_ino)
            lr__store_info_from_stat(&now, out);
    }
    close(parent);
    return rc;
}

int lr_store_mkdir(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                   uint32_t mode, unsigned flags, struct lr_store_info *out, struct lr_err *err)
{
    if (out)
        memset(out, 0, sizeof(*out));
    int parent, dfd = -1;
    const char *leaf;
    int rc = lr__store_open_parent(st, b, relpath, flags | LR__STORE_EXACT, &parent, &leaf, err);
    if (rc)
        return rc;
    bool created = true;
    if (mkdirat(parent, leaf, 0700) < 0) {
        if (errno != EEXIST) {
            rc = lr__store_fail(err, -errno, "mkdir", relpath);
            goto out;
        }
        created = false;
        /* Never adopt another spelling's directory as this one. */
        struct stat sb;
        if (fstatat(parent, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
            (rc = spelled_exactly(parent, leaf, &sb, relpath, err)) < 0)
            goto out;
    }
    rc = lr__store_open_one_dir(st, parent, leaf, &dfd);
    if (rc == -ENOTDIR || rc == -ELOOP || rc == -ENOENT) {
        struct stat sb;
        if (fstatat(parent, leaf, &sb, AT_SYMLINK_NOFOLLOW) != 0 ||
            (rc = special_in_way(&sb, relpath, err)) == 0)
            rc = lr__store_fail(err, LR_ECHANGED, "exists and is not a directory:", relpath);
        goto out;
    }
    if (rc) {
        lr__store_fail(err, rc, "open new directory", relpath);
        goto out;
    }
    if (fchmod(dfd, DIR_MODE(mode)) < 0) {
        rc = lr__store_fail(err, -errno, "chmod", relpath);
        goto out;
    }
    rc = lr__store_touch(b, dfd);
    if (!rc && created)
        rc = lr__store_touch(b, parent);
    if (rc) {
        lr__store_fail(err, rc, "sync directory", relpath);
        goto out;
    }
    struct stat sb;
    if (out && fstat(dfd, &sb) == 0)
        lr__store_info_from_stat(&sb, out);
out:
    if (dfd >= 0)
        close(dfd);
    close(parent);
    return rc;
}

/* -ENOTEMPTY, naming one entry that keeps directory parent/leaf alive. */
static int not_empty(struct lr_store *st, int parent, const char *leaf, const char *relpath,
                     struct lr_err *err)
{
    int dfd;
    if (lr__store_open_one_dir(st, parent, leaf, &dfd) == 0) {
        DIR *d = fdopendir(dfd);
        if (!d) {
            close(dfd);
        } else {
            struct dirent *de;
            uint64_t n = 0;
            char *first = NULL;
            while ((de = readdir(d)) != NULL && n < 100000) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                    continue;
                if (!first)
                    first = lr_escs(de->d_name);
                n++;
            }
            closedir(d);
            if (first) {
                char *ep = lr_escs(relpath);
                lr_err_set(err, -ENOTEMPTY, "directory %s not empty: holds %s%s (%" PRIu64 "%s)",
                           ep, first, n > 1 ? " and more" : "", n, n >= 100000 ? "+" : "");
                free(ep);
                free(first);
                return -ENOTEMPTY;
            }
        }
    }
    return lr__store_fail(err, -ENOTEMPTY, "directory not empty:", relpath);
}

int lr_store_delete(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                    const struct lr_store_expect *e, struct lr_err *err)
{
    return lr_store_delete_ex(st, b, relpath, e, 0, err);
}

int lr_store_delete_ex(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                       const struct lr_store_expect *e, unsigned flags, struct lr_err *err)
{
    if (!e || !e->exists)
        return lr_err_set(err, LR_EUSAGE, "delete needs the expected entry");
    int parent, vfd = -1;
    const char *leaf;
    int rc = lr__store_open_parent(st, b, relpath, LR__STORE_EXACT, &parent, &leaf, err);
    if (rc)
        return changed_if_clash(rc, err);
    struct stat sb;
    bool present;
    char an[NAME_MAX + 1];
    rc = lstat_at(parent, leaf, &sb, &present);
    if (rc || !present) {
        rc = lr__store_fail(err, rc ? rc : -ENOENT, "delete", relpath);
        goto out;
    }
    if (!matches(&sb, e, true)) {
        rc = lr__store_fail(err, LR_ECHANGED, "changed since the last scan:", relpath);
        goto out;
    }
    /* A delete of "foo" never takes "Foo" away (a case-only rename not yet scanned). */
    if ((rc = check_spelling(st, parent, leaf, &sb, relpath, err)) < 0)
        goto out;
    run_race_hook(relpath, 0);
    if (e->type == LR_FT_DIR) {
        if (unlinkat(parent, leaf, AT_REMOVEDIR) < 0) {
            rc = -errno;
            if (rc == -ENOTEMPTY || rc == -EEXIST)
                rc = not_empty(st, parent, leaf, relpath, err);
            else if (rc == -ENOTDIR)
                rc = lr__store_fail(err, LR_ECHANGED, "changed during delete:", relpath);
            else
                lr__store_fail(err, rc, "rmdir", relpath);
            goto out;
        }
    } else if (e->type == LR_FT_FILE && !(flags & LR_STORE_DEL_UNARCHIVED) && sb.st_nlink <= 1) {
        /* Moving into versions/ is the delete: atomic, and nothing is destroyed. */
        rc = open_versions_dir(st, b, relpath, &vfd);
        if (!rc)
            rc = archive(parent, leaf, vfd, leaf, false, an);
        if (rc == -ENOENT) {
            rc = lr__store_fail(err, LR_ECHANGED, "vanished during delete:", relpath);
            goto out;
        }
        if (rc) {
            lr__store_fail(err, rc, "archive", relpath);
            goto out;
        }
        struct stat old;
        if (fstatat(vfd, an, &old, AT_SYMLINK_NOFOLLOW) < 0 || !matches(&old, e, false)) {
            if (move_noreplace(vfd, an, parent, leaf) < 0) {
                char *ep = lr_escs(relpath);
                lr_warn("store", "racing edit of path=%s kept in " LR_STORE_VERSIONS, ep);
                free(ep);
            }
            rc = lr__store_fail(err, LR_ECHANGED, "changed during delete:", relpath);
            goto out;
        }
        rc = lr__store_touch(b, vfd);
    } else {
        /* A symlink, a file deleted unarchived, or a file with other links
         * (archived as a copy: archive_copy), unlinked once checked. */
        bool copied = false;
        uint64_t copied_ino = 0;
        if (e->type == LR_FT_FILE && !(flags & LR_STORE_DEL_UNARCHIVED)) {
            if ((rc = open_versions_dir(st, b, relpath, &vfd))) {
                lr__store_fail(err, rc, "versions directory for", relpath);
                goto out;
            }
            if ((rc = archive_copy_of(st, parent, leaf, vfd, e, relpath, &copied_ino, an, err)))
                goto out;
            copied = true;
        }
        char tn[64];
        tmp_name(tn);
        rc = move_noreplace(parent, leaf, st->tmpfd, tn);
        if (rc) {
            if (copied)
                unlinkat(vfd, an, 0);
            rc = lr__store_fail(err, rc == -ENOENT ? LR_ECHANGED : rc, "delete", relpath);
            goto out;
        }
        struct stat old;
        if (fstatat(st->tmpfd, tn, &old, AT_SYMLINK_NOFOLLOW) < 0 || !matches(&old, e, false) ||
            (copied && (uint64_t)old.st_ino != copied_ino)) {
            if (move_noreplace(st->tmpfd, tn, parent, leaf) < 0)
                rescue(st, tn, relpath);
            if (copied)
                unlinkat(vfd, an, 0);
            rc = lr__store_fail(err, LR_ECHANGED, "changed during delete:", relpath);
            goto out;
        }
        unlinkat(st->tmpfd, tn, 0);
        if (copied)
            rc = lr__store_touch(b, vfd);
    }
    if (!rc)
        rc = lr__store_touch(b, parent);
    if (rc)
        lr__store_fail(err, rc, "sync directory of", relpath);
out:
    if (vfd >= 0)
        close(vfd);
    close(parent);
    return rc;
}

int lr_store_adopt(struct lr_store *st, const char *relpath, const struct lr_store_expect *e,
                   const struct lr_hash *key, struct lr_err *err)
{
    if (!e || !e->exists || e->type != LR_FT_FILE)
        return lr_err_set(err, LR_EUSAGE, "adopt needs the expected regular file");
    int parent;
    const char *leaf;
    int rc = lr__store_open_parent(st, NULL, relpath, LR__STORE_EXACT, &parent, &leaf, err);
    if (rc)
        return changed_if_clash(rc, err);
    char name[LR_HASH_HEX_LEN + 1];
    lr__store_staging_name(key, name);
    struct stat sb, moved;
    bool present;
    rc = lstat_at(parent, leaf, &sb, &present);
    if (rc || !present) {
        rc = lr__store_fail(err, rc ? rc : -ENOENT, "adopt", relpath);
        goto out;
    }
    /* A second name would keep reading as the old file, and staging never
     * reuses a file with one (staging.c, clear_stray). */
    if (!matches(&sb, e, true) || sb.st_nlink != 1) {
        rc = lr__store_fail(err, LR_ECHANGED, "changed since the last scan:", relpath);
        goto out;
    }
    if ((rc = check_spelling(st, parent, leaf, &sb, relpath, err)) < 0)
        goto out;
    if ((rc = move_noreplace(parent, leaf, st->tmpfd, name)) < 0) {
        lr__store_fail(err, rc == -ENOENT ? LR_ECHANGED : rc, "adopt", relpath);
        rc = rc == -ENOENT ? LR_ECHANGED : rc;
        goto out;
    }
    if (fstatat(st->tmpfd, name, &moved, AT_SYMLINK_NOFOLLOW) < 0 || !matches(&moved, e, false)) {
        /* Swapped between the check and the move: put back what came. */
        if (move_noreplace(st->tmpfd, name, parent, leaf) < 0)
            rescue(st, name, relpath);
        rc = lr__store_fail(err, LR_ECHANGED, "changed during adopt:", relpath);
        goto out;
    }
    /* The staging file is made durable with the commit; the old name's
     * absence with the parent's sync. */
    if (fsync(parent) < 0)
        rc = lr__store_fail(err, -errno, "sync directory of", relpath);
out:
    close(parent);
    return rc;
}

int lr_store_unadopt(struct lr_store *st, const struct lr_hash *key, const char *relpath,
                     struct lr_err *err)
{
    int parent;
    const char *leaf;
    int rc = lr__store_open_parent(st, NULL, relpath, LR__STORE_EXACT, &parent, &leaf, err);
    if (rc)
        return rc;
    char name[LR_HASH_HEX_LEN + 1];
    lr__store_staging_name(key, name);
    if ((rc = move_noreplace(st->tmpfd, name, parent, leaf)) < 0) {
        /* The name is taken again: into the archive, never left in tmp/
         * for a cleanup to remove. */
        int vfd;
        char an[NAME_MAX + 1];
        if (open_versions_dir(st, NULL, relpath, &vfd) == 0) {
            if (archive(st->tmpfd, name, vfd, leaf, false, an) == 0)
                rc = 0;
            close(vfd);
        }
        if (rc < 0)
            lr__store_fail(err, rc, "put back", relpath);
    } else if (fsync(parent) < 0) {
        rc = lr__store_fail(err, -errno, "sync directory of", relpath);
    }
    close(parent);
    return rc;
}

int lr_store_set_meta(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                      uint32_t mode, int64_t mtime_ns, const struct lr_store_expect *e,
                      struct lr_store_info *out, struct lr_err *err)
{
    if (out)
        memset(out, 0, sizeof(*out));
    if (!e || !e->exists)
        return lr_err_set(err, LR_EUSAGE, "set_meta needs the expected entry");
    int parent, fd = -1;
    const char *leaf;
    int rc = lr__store_open_parent(st, b, relpath, LR__STORE_EXACT, &parent, &leaf, err);
    if (rc)
        return changed_if_clash(rc, err);
    struct timespec ts[2];
    struct stat sb, now;
    mtime_times(mtime_ns, ts);
    bool present;
    rc = lstat_at(parent, leaf, &sb, &present);
    if (rc) {
        lr__store_fail(err, rc, "stat", relpath);
        goto out;
    }
    if (!matches(present ? &sb : NULL, e, true)) {
        rc = lr__store_fail(err, LR_ECHANGED, "changed since the last scan:", relpath);
        goto out;
    }
    if (e->type == LR_FT_SYMLINK) {
        if (utimensat(parent, leaf, ts, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = lr__store_fail(err, -errno, "set mtime of", relpath);
            goto out;
        }
        rc = lr__store_touch(b, parent);
        if (!rc && out && fstatat(parent, leaf, &now, AT_SYMLINK_NOFOLLOW) == 0)
            lr__store_info_from_stat(&now, out);
        goto out;
    }
    fd = openat(parent, leaf,
                O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC |
                    (e->type == LR_FT_DIR ? O_DIRECTORY : 0));
    if (fd < 0) {
        rc = -errno;
        if (rc == -ELOOP || rc == -ENOTDIR || rc == -ENOENT)
            rc = LR_ECHANGED;
        lr__store_fail(err, rc, "open", relpath);
        goto out;
    }
    if (fstat(fd, &now) < 0 || now.st_ino != sb.st_ino || !type_is(&now, e->type)) {
        rc = lr__store_fail(err, LR_ECHANGED, "changed during apply:", relpath);
        goto out;
    }
    if (fchmod(fd, e->type == LR_FT_DIR ? DIR_MODE(mode) : FILE_MODE(mode)) < 0 ||
        futimens(fd, ts) < 0) {
        rc = lr__store_fail(err, -errno, "set mode/mtime of", relpath);
        goto out;
    }
    rc = lr__store_touch(b, fd);
    if (rc) {
        lr__store_fail(err, rc, "sync", relpath);
        goto out;
    }
    if (out && fstat(fd, &now) == 0)
        lr__store_info_from_stat(&now, out);
out:
    if (fd >= 0)
        close(fd);
    close(parent);
    return rc;
}

/* ---- folding names --------------------------------------------------------- */

bool lr_store_folds(const struct lr_store *st)
{
    return st->folds;
}

int lr_store_find_clash(struct lr_store *st, const char *relpath, size_t *prefix_len,
                        char **existing, struct lr_err *err)
{
    *prefix_len = 0;
    *existing = NULL;
    int rc = lr_store_path_check(relpath, err);
    if (rc)
        return rc;
    int cur = fcntl(st->rootfd, F_DUPFD_CLOEXEC, 0);
    if (cur < 0)
        return lr__store_fail(err, -errno, "open root for", relpath);
    char *buf = lr_xstrdup(relpath);
    char *p = buf;
    rc = LR_ENOTFOUND;
    for (;;) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        struct stat sb;
        char name[NAME_MAX + 1];
        if (fstatat(cur, p, &sb, AT_SYMLINK_NOFOLLOW) < 0)
            break; /* absent (or unreadable): nothing clashes here now */
        int r = lr__store_name_check(cur, p, &sb, name);
        if (r == LR_ECLASH) {
            size_t off = (size_t)(p - buf), nl = strlen(name);
            char *x = lr_xmalloc(off + nl + 1);
            memcpy(x, relpath, off);
            memcpy(x + off, name, nl + 1);
            *prefix_len = off + strlen(p);
            *existing = x;
            rc = 0;
            break;
        }
        int next = -1;
        if (r < 0 || !slash || lr__store_open_one_dir(st, cur, p, &next) < 0)
            break;
        close(cur);
        cur = next;
        p = slash + 1;
    }
    close(cur);
    free(buf);
    if (rc == LR_ENOTFOUND)
        lr__store_fail(err, rc, "no spelling clash for", relpath);
    return rc;
}

int lr_store_check_clash(struct lr_store *st, const char *relpath, struct lr_err *err)
{
    size_t end;
    char *existing;
    int rc = lr_store_find_clash(st, relpath, &end, &existing, err);
    if (rc == LR_ENOTFOUND) {
        lr_err_clear(err);
        return 0;
    }
    if (rc < 0)
        return rc;
    size_t off = end; /* start of the clashing component */
    while (off > 0 && relpath[off - 1] != '/')
        off--;
    rc = lr__store_clash_fail(err, relpath, off, end - off, existing + off);
    free(existing);
    return rc;
}

/* ---- reading ------------------------------------------------------------- */

int lr_store_stat(struct lr_store *st, const char *relpath, struct lr_store_info *out,
                  struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int parent;
    const char *leaf;
    int rc = lr__store_open_parent(st, NULL, relpath, 0, &parent, &leaf, err);
    if (rc)
        return rc;
    struct stat sb;
    if (fstatat(parent, leaf, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        rc = lr__store_fail(err, -errno, "stat", relpath);
    else
        lr__store_info_from_stat(&sb, out);
    close(parent);
    return rc;
}

int lr_store_open_read(struct lr_store *st, const char *relpath, int *fd,
                       struct lr_store_info *info, struct lr_err *err)
{
    *fd = -1;
    if (info)
        memset(info, 0, sizeof(*info));
    int parent;
    const char *leaf;
    int rc = lr__store_open_parent(st, NULL, relpath, 0, &parent, &leaf, err);
    if (rc)
        return rc;
    struct stat sb, now;
    int f = -1;
    /* Look before opening: a device must not even be opened, a FIFO would block. */
    if (fstatat(parent, leaf, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
        rc = lr__store_fail(err, -errno, "open", relpath);
        goto out;
    }
    if (S_ISLNK(sb.st_mode)) {
        rc = lr__store_fail(err, -ELOOP, "refusing to read a symlink:", relpath);
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = lr__store_fail(err, LR_ECHANGED, "not a regular file:", relpath);
        goto out;
    }
    f = openat(parent, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (f < 0) {
        rc = lr__store_fail(err, errno == ELOOP ? LR_ECHANGED : -errno, "open", relpath);
        goto out;
    }
    if (fstat(f, &now) < 0 || !S_ISREG(now.st_mode) || now.st_ino != sb.st_ino) {
        rc = lr__store_fail(err, LR_ECHANGED, "replaced while opening:", relpath);
        close(f);
        goto out;
    }
    *fd = f;
    if (info)
        lr__store_info_from_stat(&now, info);
out:
    close(parent);
    return rc;
}

static int read_chunk(int fd, uint64_t off, uint32_t len, const struct lr_hash *expect,
                      uint64_t weak, bool *by_weak, void *buf, struct lr_err *err)
{
    if (by_weak)
        *by_weak = false;
    if (len > LR_STORE_CHUNK_MAX)
        return lr_err_set(err, LR_ETOOBIG, "read: chunk of %" PRIu32 " bytes", len);
    if (off > (uint64_t)INT64_MAX - len)
        return lr_err_set(err, LR_ETOOBIG, "read: offset %" PRIu64, off);
    uint8_t *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t r = pread(fd, p + done, len - done, (off_t)(off + done));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            return lr_err_set(err, e, "read at %" PRIu64 ": %s", off + done, lr_strerror(e));
        }
        if (r == 0)
            return lr_err_set(err, LR_EVERIFY, "read at %" PRIu64 ": file ends early", off + done);
        done += (size_t)r;
    }
    /* The weak check only ever says yes: a mismatch is settled by the
     * SHA-256, so a wrong stored value costs time, never a refused chunk
     * (the file's unchanged stat would not get it rescanned). */
    bool same = weak && lr_weak64(buf, len) == weak;
    if (by_weak)
        *by_weak = same;
    if (!same) {
        struct lr_hash h;
        lr_sha256(buf, len, &h);
        same = lr_hash_cmp(&h, expect) == 0;
    }
    if (!same)
        return lr_err_set(err, LR_EVERIFY, "chunk at %" PRIu64 " (%" PRIu32 " bytes) changed", off,
                          len);
    return 0;
}

int lr_store_read_chunk_fd(int fd, uint64_t off, uint32_t len, const struct lr_hash *expect,
                           void *buf, struct lr_err *err)
{
    return read_chunk(fd, off, len, expect, 0, NULL, buf, err);
}

int lr_store_read_chunk_named(int fd, const char *relpath, uint64_t off, uint32_t len,
                              const struct lr_hash *expect, uint64_t weak, bool *by_weak, void *buf,
                              struct lr_err *err)
{
    int rc = read_chunk(fd, off, len, expect, weak, by_weak, buf, err);
    if (rc == LR_EVERIFY && err) {
        char *e = lr_escs(relpath);
        char msg[LR_ERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "%s", err->msg);
        lr_err_set(err, rc, "%s: %s", e, msg);
        free(e);
    }
    return rc;
}

int lr_store_read_chunk(struct lr_store *st, const char *relpath, uint64_t off, uint32_t len,
                        const struct lr_hash *expect, void *buf, struct lr_err *err)
{
    int fd;
    int rc = lr_store_open_read(st, relpath, &fd, NULL, err);
    if (rc)
        return rc;
    rc = lr_store_read_chunk_named(fd, relpath, off, len, expect, 0, NULL, buf, err);
    close(fd);
    return rc;
}
