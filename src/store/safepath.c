/*
 * safepath.c - resolving peer paths beneath the folder root without
 * following symlinks or crossing mounts (openat2, with a per-component
 * fallback), and the path check at the store's boundary.
 */
#include "store/store_int.h"
#include "util/timens.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RESOLVE_FLAGS                                                                              \
    (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS)
/* openat2 takes at most PATH_MAX bytes; longer paths are opened in segments. */
#define SEGMENT_MAX 3800
/* openat2 says EAGAIN when a concurrent rename might have raced the lookup. */
#define EAGAIN_RETRIES 64

static atomic_bool no_openat2; /* set once the kernel said ENOSYS */
static atomic_bool force_walk; /* test hook */
static atomic_uint_fast64_t nfsync_dirs;

#ifdef LR_FAILPOINTS
void lr_store_test_force_walk(bool on)
{
    atomic_store(&force_walk, on);
}

uint64_t lr_store_test_dir_fsyncs(void)
{
    return (uint64_t)atomic_load(&nfsync_dirs);
}
#endif

int lr__store_fail(struct lr_err *err, int rc, const char *what, const char *path)
{
    if (!err)
        return rc;
    char *e = lr_escs(path ? path : "");
    /* Paths are resolved without following symlinks (RESOLVE_NO_SYMLINKS,
     * O_NOFOLLOW): ELOOP is a symlink met on the way, not a loop ("Too many
     * levels of symbolic links" misled, black-box round 28). */
    lr_err_set(err, rc, "%s %s: %s", what, e,
               rc == -ELOOP ? "a symbolic link is in the way (never followed)" : lr_strerror(rc));
    free(e);
    return rc;
}

int lr__store_fsync(int fd, bool is_dir)
{
    int r;
    do
        r = fsync(fd);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (is_dir)
        atomic_fetch_add(&nfsync_dirs, 1);
    return 0;
}

void lr__store_info_from_stat(const struct stat *sb, struct lr_store_info *out)
{
    memset(out, 0, sizeof(*out));
    if (S_ISREG(sb->st_mode)) {
        out->type = LR_FT_FILE;
        out->size = (uint64_t)sb->st_size;
    } else if (S_ISDIR(sb->st_mode)) {
        out->type = LR_FT_DIR;
    } else if (S_ISLNK(sb->st_mode)) {
        out->type = LR_FT_SYMLINK;
    } else {
        out->type = LR_FT_FILE;
        out->special = true;
    }
    out->dev = (uint64_t)sb->st_dev;
    out->ino = (uint64_t)sb->st_ino;
    out->mtime_ns = lr_timespec_ns(&sb->st_mtim);
    out->ctime_ns = lr_timespec_ns(&sb->st_ctim);
    out->mode = (uint32_t)(sb->st_mode & 07777);
}

int lr_store_path_check(const char *relpath, struct lr_err *err)
{
    if (!relpath)
        return lr_err_set(err, LR_EBADPATH, "NULL path");
    size_t n = strlen(relpath);
    struct lr_err sub = {0};
    int rc = lr_index_path_check((const uint8_t *)relpath, n, &sub);
    if (rc) {
        /* Name the path: a user typed it (restore, versions). */
        char *e = lr_escs_short(relpath);
        rc = lr_err_set(err, rc, "invalid path '%s': %s", e, sub.msg);
        free(e);
        return rc;
    }
    /* Our own territory; case-folded so a vfat/exFAT folder cannot alias it. */
    static const char m[] = LR_STORE_MARKER;
    size_t mn = sizeof(m) - 1;
    if (n >= mn && strncasecmp(relpath, m, mn) == 0 && (n == mn || relpath[mn] == '/'))
        return lr__store_fail(err, LR_EBADPATH, "reserved path", relpath);
    return 0;
}

static int sys_openat2(int dirfd, const char *path, int flags)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (uint64_t)(unsigned)flags;
    how.resolve = RESOLVE_FLAGS;
    for (int i = 0; i < EAGAIN_RETRIES; i++) {
        long r = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
        if (r >= 0)
            return (int)r;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
    }
    return -EAGAIN;
}

static bool use_openat2(void)
{
    return !atomic_load(&no_openat2) && !atomic_load(&force_walk);
}

/* One component, no '/', never "." or ".." (checked by the caller's path check). */
int lr__store_open_one_dir(const struct lr_store *st, int dirfd, const char *name, int *out)
{
    *out = -1;
    int fd;
    if (use_openat2()) {
        fd = sys_openat2(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            *out = fd;
            return 0;
        }
        if (fd == -ENOSYS)
            atomic_store(&no_openat2, true);
        else if (fd != -EAGAIN)
            return fd;
    }
    /* Fallback: O_NOFOLLOW refuses a symlink as the (only) component; st_dev stands in for
     * RESOLVE_NO_XDEV. */
    fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        struct stat ls;
        /* O_DIRECTORY wins over O_NOFOLLOW: a symlink says ENOTDIR; report it as openat2 does. */
        if (e == -ENOTDIR && fstatat(dirfd, name, &ls, AT_SYMLINK_NOFOLLOW) == 0 &&
            S_ISLNK(ls.st_mode))
            e = -ELOOP;
        return e;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (sb.st_dev != st->dev) {
        close(fd);
        return -EXDEV;
    }
    *out = fd;
    return 0;
}

static int reopen(int fd)
{
    int r = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return r < 0 ? -errno : r;
}

int lr__store_name_check(int dirfd, const char *leaf, const struct stat *found,
                         char existing[NAME_MAX + 1])
{
    existing[0] = '\0';
    /* A description of its own: readdir must not move the caller's offset. */
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    bool exact = false;
    int best = 0; /* 2: same inode and ASCII-equal; 1: one of the two */
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, leaf) == 0) {
            exact = true;
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        int score = (found && de->d_ino == found->st_ino) + (strcasecmp(de->d_name, leaf) == 0);
        if (score > best && strlen(de->d_name) <= NAME_MAX) {
            best = score;
            snprintf(existing, NAME_MAX + 1, "%s", de->d_name);
        }
        errno = 0;
    }
    int e = de == NULL && errno ? -errno : 0;
    closedir(d);
    if (exact) {
        existing[0] = '\0';
        return 0;
    }
    return e ? e : LR_ECLASH;
}

int lr__store_clash_fail(struct lr_err *err, const char *relpath, size_t off, size_t len,
                         const char *existing)
{
    if (!err)
        return LR_ECLASH;
    char *mine = lr_esc(relpath, off + len);
    size_t en = strlen(existing);
    char *theirs;
    if (en) {
        char *t = lr_xmalloc(off + en + 1);
        memcpy(t, relpath, off);
        memcpy(t + off, existing, en + 1);
        theirs = lr_escs(t);
        free(t);
    } else {
        theirs = lr_xstrdup("(another spelling)");
    }
    lr_err_set(err, LR_ECLASH,
               "name \"%s\" clashes with existing \"%s\" (this folder ignores case or Unicode "
               "normalisation; rename one of them on a device that tells them apart)",
               mine, theirs);
    free(mine);
    free(theirs);
    return LR_ECLASH;
}

/*
 * Directories whose spelling was checked, so a folding store does not read
 * every parent on every create: (file system, parent inode, name) is known
 * to hold exactly that name for the child inode as long as the child's
 * ctime is unchanged (a rename, also a case-only one through a temporary
 * name, changes the renamed inode's ctime; so does any entry added to or
 * removed from the child, which only costs a check more). Process-wide,
 * small, replaced round-robin.
 */
#define SPELL_CACHE 64

struct spell_ent {
    bool used;
    uint64_t dev, pino, cino;
    int64_t cctime_ns;
    char name[NAME_MAX + 1];
};

static pthread_mutex_t spell_mu = PTHREAD_MUTEX_INITIALIZER;
static struct spell_ent spell[SPELL_CACHE];
static unsigned spell_next;

static int64_t ctime_ns(const struct stat *sb)
{
    return lr_timespec_ns(&sb->st_ctim);
}

static bool spell_known(const struct stat *pb, const char *name, const struct stat *cb)
{
    bool hit = false;
    pthread_mutex_lock(&spell_mu);
    for (unsigned i = 0; i < SPELL_CACHE && !hit; i++) {
        const struct spell_ent *e = &spell[i];
        hit = e->used && e->dev == (uint64_t)pb->st_dev && e->pino == (uint64_t)pb->st_ino &&
              e->cino == (uint64_t)cb->st_ino && e->cctime_ns == ctime_ns(cb) &&
              strcmp(e->name, name) == 0;
    }
    pthread_mutex_unlock(&spell_mu);
    return hit;
}

static void spell_add(const struct stat *pb, const char *name, const struct stat *cb)
{
    if (strlen(name) > NAME_MAX)
        return;
    pthread_mutex_lock(&spell_mu);
    struct spell_ent *e = &spell[spell_next++ % SPELL_CACHE];
    e->used = true;
    e->dev = (uint64_t)pb->st_dev;
    e->pino = (uint64_t)pb->st_ino;
    e->cino = (uint64_t)cb->st_ino;
    e->cctime_ns = ctime_ns(cb);
    snprintf(e->name, sizeof(e->name), "%s", name);
    pthread_mutex_unlock(&spell_mu);
}

/* Is directory `name` of cur (open as fd) spelled exactly so? 0, LR_ECLASH (cl filled), -errno. */
static int check_component(int cur, const char *name, int fd, const char *buf,
                           struct lr__store_clash *cl)
{
    struct stat cb, pb;
    if (fstat(fd, &cb) < 0 || fstat(cur, &pb) < 0)
        return -errno;
    if (spell_known(&pb, name, &cb))
        return 0;
    char found[NAME_MAX + 1];
    int r = lr__store_name_check(cur, name, &cb, found);
    if (r == 0)
        spell_add(&pb, name, &cb);
    if (r == LR_ECLASH) {
        cl->off = (size_t)(name - buf);
        cl->len = strlen(name);
        memcpy(cl->name, found, sizeof(found));
    }
    return r;
}

static int open_dir(const struct lr_store *st, struct lr_store_batch *b, int basefd,
                    const char *path, bool create, mode_t mode, int *out,
                    struct lr__store_clash *cl)
{
    *out = -1;
    if (!*path) {
        int fd = reopen(basefd);
        if (fd < 0)
            return fd;
        *out = fd;
        return 0;
    }
    bool check_all = cl && st->folds;
    char *buf = lr_xstrdup(path);
    char *p = buf;
    int cur = basefd; /* not owned while == basefd */
    int rc = 0;
    while (*p) {
        size_t rest = strlen(p);
        int fd = -1;
        /* Fast path: a whole segment in one openat2 (most paths: one call). */
        if (!create && !check_all && use_openat2()) {
            size_t seg = rest;
            if (seg > SEGMENT_MAX) {
                seg = SEGMENT_MAX;
                while (seg > 0 && p[seg] != '/')
                    seg--;
                if (seg == 0) { /* a component over SEGMENT_MAX bytes */
                    rc = -ENAMETOOLONG;
                    break;
                }
            }
            char save = p[seg];
            p[seg] = '\0';
            int r = sys_openat2(cur, p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            p[seg] = save;
            if (r >= 0) {
                fd = r;
                p += seg + (save == '/' ? 1 : 0);
            } else if (r == -ENOSYS) {
                atomic_store(&no_openat2, true);
            } else if (r != -EAGAIN) {
                rc = r;
                break;
            }
        }
        if (fd < 0) { /* one component at a time (create, fallback, spelling checks) */
            char *slash = strchr(p, '/');
            if (slash)
                *slash = '\0';
            int r = lr__store_open_one_dir(st, cur, p, &fd);
            bool made = false, raced = false;
            if (r == -ENOENT && create) {
                if (mkdirat(cur, p, mode) == 0)
                    made = true;
                else if (errno == EEXIST)
                    raced = true; /* made meanwhile, or a lookup that folds names */
                else {
                    rc = -errno;
                    break;
                }
                r = lr__store_touch(b, cur);
                if (r == 0)
                    r = lr__store_open_one_dir(st, cur, p, &fd);
            }
            if (r == 0 && cl && ((check_all && !made) || raced)) {
                r = check_component(cur, p, fd, buf, cl);
                if (r < 0)
                    close(fd);
            }
            if (r < 0) {
                rc = r;
                break;
            }
            p = slash ? slash + 1 : p + strlen(p);
        }
        if (cur != basefd)
            close(cur);
        cur = fd;
    }
    free(buf);
    if (rc) {
        if (cur != basefd)
            close(cur);
        return rc;
    }
    if (cur == basefd) { /* cannot happen: path was non-empty */
        return -EINVAL;
    }
    *out = cur;
    return 0;
}

int lr__store_open_dir(const struct lr_store *st, struct lr_store_batch *b, int basefd,
                       const char *path, bool create, mode_t mode, int *out)
{
    return open_dir(st, b, basefd, path, create, mode, out, NULL);
}

int lr__store_open_dir_exact(const struct lr_store *st, struct lr_store_batch *b, int basefd,
                             const char *path, bool create, mode_t mode, int *out,
                             struct lr__store_clash *cl)
{
    memset(cl, 0, sizeof(*cl));
    return open_dir(st, b, basefd, path, create, mode, out, cl);
}

int lr__store_open_parent(struct lr_store *st, struct lr_store_batch *b, const char *relpath,
                          unsigned flags, int *dirfd, const char **leaf, struct lr_err *err)
{
    *dirfd = -1;
    *leaf = NULL;
    int rc = lr_store_path_check(relpath, err);
    if (rc)
        return rc;
    const char *slash = strrchr(relpath, '/');
    int fd;
    if (!slash) {
        fd = reopen(st->rootfd);
        if (fd < 0)
            return lr__store_fail(err, fd, "open root for", relpath);
        *dirfd = fd;
        *leaf = relpath;
        return 0;
    }
    char *dir = lr_xstrndup(relpath, (size_t)(slash - relpath));
    struct lr__store_clash cl = {0};
    rc = open_dir(st, b, st->rootfd, dir, (flags & LR_STORE_MKPARENTS) != 0, 0755, &fd,
                  (flags & LR__STORE_EXACT) ? &cl : NULL);
    free(dir);
    if (rc == LR_ECLASH)
        return lr__store_clash_fail(err, relpath, cl.off, cl.len, cl.name);
    if (rc)
        return lr__store_fail(err, rc, "parent of", relpath);
    *dirfd = fd;
    *leaf = slash + 1;
    return 0;
}

int lr_store_open_parent(struct lr_store *st, const char *relpath, unsigned flags, int *dirfd,
                         const char **leaf, struct lr_err *err)
{
    /* Its caller asks whether a file could be put there: a parent that is
     * another spelling of the path's directory could not take it. */
    return lr__store_open_parent(st, NULL, relpath, flags | LR__STORE_EXACT, dirfd, leaf, err);
}
