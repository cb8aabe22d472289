/*
 * foldfs.c - a FUSE 3 file system that mirrors a backing directory and
 * folds names the way an ext4 "casefold" directory does, for testing
 * landropic on a folding file system where the kernel has no
 * CONFIG_UNICODE (docs/testing.md).
 *
 *   foldfs BACKING MOUNTPOINT [FUSE options, e.g. -f]
 *
 * Names are stored as created. A lookup of a name that is not in the
 * directory byte for byte finds the entry whose folded form is equal, so
 * "foo" finds "Foo", and "café" in NFC (U+00E9) finds it in NFD
 * (e + U+0301) and the other way round; creating either is then EEXIST
 * (O_EXCL, mkdir, RENAME_NOREPLACE) or opens the existing entry. Folding:
 * ASCII and Latin-1 letters to lower case, and the Latin-1 letters with a
 * grave, acute, circumflex, tilde, diaeresis, ring or cedilla decomposed
 * to base letter + combining mark, so both normalisation forms fold alike.
 * Other characters compare as bytes. Not a full Unicode casefold: enough
 * to exercise the clash paths with real kernel lookups.
 *
 * Everything else is passed through to the backing directory: open,
 * create, read/write, fsync, truncate, chmod, chown, utimens (also on
 * symlinks), mkdir, rmdir, unlink, symlink, readlink, link, rename with
 * RENAME_NOREPLACE / RENAME_EXCHANGE (other flags EINVAL), statfs,
 * readdir (names as stored, real inode numbers). Entries and attributes
 * are never cached by the kernel (timeouts 0), and an unlinked open file
 * is removed at once (no .fuse_hidden files).
 *
 * Run it as root (the daemon under test runs as root and the mount is not
 * allow_other). Unmount with `fusermount3 -u MOUNTPOINT`.
 */
#define FUSE_USE_VERSION 31

#include <fuse.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static char *backing; /* absolute, no trailing slash */

/* ---- folding ---- */

/* Latin-1 U+00C0..U+00FF: base letter (lower case) and combining mark (0: none). */
struct decomp {
    char base;
    uint16_t mark;
};

static const struct decomp latin1[64] = {
    /* C0 */ {'a', 0x300}, {'a', 0x301}, {'a', 0x302}, {'a', 0x303},
    /* C4 */ {'a', 0x308}, {'a', 0x30a}, {0, 0},       {'c', 0x327},
    /* C8 */ {'e', 0x300}, {'e', 0x301}, {'e', 0x302}, {'e', 0x308},
    /* CC */ {'i', 0x300}, {'i', 0x301}, {'i', 0x302}, {'i', 0x308},
    /* D0 */ {0, 0},       {'n', 0x303}, {'o', 0x300}, {'o', 0x301},
    /* D4 */ {'o', 0x302}, {'o', 0x303}, {'o', 0x308}, {0, 0},
    /* D8 */ {0, 0},       {'u', 0x300}, {'u', 0x301}, {'u', 0x302},
    /* DC */ {'u', 0x308}, {'y', 0x301}, {0, 0},       {0, 0},
    /* E0 */ {'a', 0x300}, {'a', 0x301}, {'a', 0x302}, {'a', 0x303},
    /* E4 */ {'a', 0x308}, {'a', 0x30a}, {0, 0},       {'c', 0x327},
    /* E8 */ {'e', 0x300}, {'e', 0x301}, {'e', 0x302}, {'e', 0x308},
    /* EC */ {'i', 0x300}, {'i', 0x301}, {'i', 0x302}, {'i', 0x308},
    /* F0 */ {0, 0},       {'n', 0x303}, {'o', 0x300}, {'o', 0x301},
    /* F4 */ {'o', 0x302}, {'o', 0x303}, {'o', 0x308}, {0, 0},
    /* F8 */ {0, 0},       {'u', 0x300}, {'u', 0x301}, {'u', 0x302},
    /* FC */ {'u', 0x308}, {'y', 0x301}, {0, 0},       {'y', 0x308},
};

static void put_cp(char *out, size_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        out[(*o)++] = (char)cp;
    } else { /* < 0x800 here */
        out[(*o)++] = (char)(0xc0 | (cp >> 6));
        out[(*o)++] = (char)(0x80 | (cp & 0x3f));
    }
}

/* The folded key of name into out (at most 2 * strlen + 1 bytes). */
static void fold(const char *name, char *out)
{
    const unsigned char *p = (const unsigned char *)name;
    size_t o = 0;
    while (*p) {
        if (*p >= 'A' && *p <= 'Z') {
            out[o++] = (char)(*p + 32);
            p++;
        } else if (p[0] == 0xc3 && p[1] >= 0x80 && p[1] <= 0xbf) {
            uint32_t cp = 0xc0 + (uint32_t)(p[1] - 0x80);
            const struct decomp *d = &latin1[cp - 0xc0];
            if (d->base) {
                out[o++] = d->base;
                put_cp(out, &o, d->mark);
            } else {
                /* No decomposition: Æ Ð Ø Þ fold to æ ð ø þ; the rest stay. */
                if (cp >= 0xc0 && cp <= 0xde && cp != 0xd7)
                    cp += 0x20;
                put_cp(out, &o, cp);
            }
            p += 2;
        } else {
            out[o++] = (char)*p++;
        }
    }
    out[o] = '\0';
}

static bool same_folded(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *fa = malloc(2 * la + 1), *fb = malloc(2 * lb + 1);
    if (!fa || !fb) {
        free(fa);
        free(fb);
        return false;
    }
    fold(a, fa);
    fold(b, fb);
    bool eq = strcmp(fa, fb) == 0;
    free(fa);
    free(fb);
    return eq;
}

/* ---- paths ---- */

struct sbuf {
    char *p;
    size_t n, cap;
};

static int sb_add(struct sbuf *s, const char *x, size_t n)
{
    if (s->n + n + 1 > s->cap) {
        size_t cap = (s->n + n + 1) * 2;
        char *q = realloc(s->p, cap);
        if (!q)
            return -ENOMEM;
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->n, x, n);
    s->n += n;
    s->p[s->n] = '\0';
    return 0;
}

/*
 * The backing path of a mount path ("/a/b"): each component as stored, if
 * one folds equal (an exact name wins), else as given (a name to create).
 * *out is malloc'ed.
 */
static int resolve(const char *path, char **out)
{
    *out = NULL;
    struct sbuf s = {0};
    int rc = sb_add(&s, backing, strlen(backing));
    bool missing = false; /* a component did not exist: nothing below can */
    const char *p = path;
    while (rc == 0 && *p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t n = strcspn(p, "/");
        char comp[NAME_MAX + 1];
        if (n > NAME_MAX) {
            rc = -ENAMETOOLONG;
            break;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        p += n;
        size_t dirlen = s.n;
        if ((rc = sb_add(&s, "/", 1)) < 0 || (rc = sb_add(&s, comp, n)) < 0)
            break;
        struct stat st;
        if (missing || lstat(s.p, &st) == 0)
            continue;
        if (errno != ENOENT) {
            missing = true;
            continue;
        }
        s.p[dirlen] = '\0';
        DIR *d = opendir(s.p);
        s.p[dirlen] = '/';
        const char *found = NULL;
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
                same_folded(de->d_name, comp)) {
                found = de->d_name;
                break;
            }
        }
        if (found) {
            s.n = dirlen + 1;
            rc = sb_add(&s, found, strlen(found));
        } else {
            missing = true;
        }
        if (d)
            closedir(d);
    }
    if (rc < 0) {
        free(s.p);
        return rc;
    }
    *out = s.p;
    return 0;
}

#define RESOLVE(path, var)                                                                         \
    char *var;                                                                                     \
    do {                                                                                           \
        int r_ = resolve(path, &var);                                                              \
        if (r_ < 0)                                                                                \
            return r_;                                                                             \
    } while (0)

/* ---- operations ---- */

static void *ff_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    cfg->use_ino = 1;
    cfg->readdir_ino = 1;
    cfg->entry_timeout = 0;
    cfg->negative_timeout = 0;
    cfg->attr_timeout = 0;
    cfg->hard_remove = 1;
    return NULL;
}

static int ff_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    if (fi)
        return fstat((int)fi->fh, st) < 0 ? -errno : 0;
    RESOLVE(path, b);
    int r = lstat(b, st) < 0 ? -errno : 0;
    free(b);
    return r;
}

static int ff_readlink(const char *path, char *buf, size_t size)
{
    RESOLVE(path, b);
    ssize_t n = readlink(b, buf, size - 1);
    int r = n < 0 ? -errno : 0;
    if (n >= 0)
        buf[n] = '\0';
    free(b);
    return r;
}

static int ff_mkdir(const char *path, mode_t mode)
{
    RESOLVE(path, b);
    int r = mkdir(b, mode) < 0 ? -errno : 0;
    free(b);
    return r;
}

static int ff_unlink(const char *path)
{
    RESOLVE(path, b);
    int r = unlink(b) < 0 ? -errno : 0;
    free(b);
    return r;
}

static int ff_rmdir(const char *path)
{
    RESOLVE(path, b);
    int r = rmdir(b) < 0 ? -errno : 0;
    free(b);
    return r;
}

static int ff_symlink(const char *target, const char *path)
{
    RESOLVE(path, b);
    int r = symlink(target, b) < 0 ? -errno : 0;
    free(b);
    return r;
}

static int ff_rename(const char *from, const char *to, unsigned int flags)
{
    if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
        return -EINVAL;
    RESOLVE(from, a);
    char *b;
    int r = resolve(to, &b);
    if (r < 0) {
        free(a);
        return r;
    }
    r = renameat2(AT_FDCWD, a, AT_FDCWD, b, flags) < 0 ? -errno : 0;
    free(a);
    free(b);
    return r;
}

static int ff_link(const char *from, const char *to)
{
    RESOLVE(from, a);
    char *b;
    int r = resolve(to, &b);
    if (r < 0) {
        free(a);
        return r;
    }
    r = link(a, b) < 0 ? -errno : 0;
    free(a);
    free(b);
    return r;
}

static int ff_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    if (fi)
        return fchmod((int)fi->fh, mode) < 0 ? -errno : 0;
    RESOLVE(path, b);
    int r = chmod(b, mode) < 0 ? -errno : 0;
    free(b);
    return r;
}

static int ff_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    if (fi)
        return fchown((int)fi->fh, uid, gid) < 0 ? -errno : 0;
    RESOLVE(path, b);
    int r = lchown(b, uid, gid) < 0 ? -errno : 0;
    free(b);
    return r;
}

static int ff_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    if (fi)
        return ftruncate((int)fi->fh, size) < 0 ? -errno : 0;
    RESOLVE(path, b);
    int r = truncate(b, size) < 0 ? -errno : 0;
    free(b);
    return r;
}

static int ff_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    if (fi)
        return futimens((int)fi->fh, tv) < 0 ? -errno : 0;
    RESOLVE(path, b);
    int r = utimensat(AT_FDCWD, b, tv, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
    free(b);
    return r;
}

static int ff_open(const char *path, struct fuse_file_info *fi)
{
    RESOLVE(path, b);
    int fd = open(b, fi->flags & ~O_NOFOLLOW);
    int r = fd < 0 ? -errno : 0;
    free(b);
    if (fd >= 0)
        fi->fh = (uint64_t)fd;
    return r;
}

static int ff_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    RESOLVE(path, b);
    int fd = open(b, fi->flags | O_CREAT, mode);
    int r = fd < 0 ? -errno : 0;
    free(b);
    if (fd >= 0)
        fi->fh = (uint64_t)fd;
    return r;
}

static int ff_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)path;
    ssize_t n = pread((int)fi->fh, buf, size, off);
    return n < 0 ? -errno : (int)n;
}

static int ff_write(const char *path, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)path;
    ssize_t n = pwrite((int)fi->fh, buf, size, off);
    return n < 0 ? -errno : (int)n;
}

static int ff_statfs(const char *path, struct statvfs *sv)
{
    (void)path;
    return statvfs(backing, sv) < 0 ? -errno : 0;
}

static int ff_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    close((int)fi->fh);
    return 0;
}

static int ff_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path;
    int r = datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh);
    return r < 0 ? -errno : 0;
}

static int ff_opendir(const char *path, struct fuse_file_info *fi)
{
    RESOLVE(path, b);
    DIR *d = opendir(b);
    int r = d ? 0 : -errno;
    free(b);
    if (d)
        fi->fh = (uint64_t)(uintptr_t)d;
    return r;
}

static int ff_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)path;
    (void)off;
    (void)flags;
    DIR *d = (DIR *)(uintptr_t)fi->fh;
    rewinddir(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        memset(&st, 0, sizeof(st));
        st.st_ino = de->d_ino;
        st.st_mode = (mode_t)(DTTOIF(de->d_type));
        if (filler(buf, de->d_name, &st, 0, 0))
            break;
    }
    return 0;
}

static int ff_releasedir(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    closedir((DIR *)(uintptr_t)fi->fh);
    return 0;
}

static int ff_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path;
    (void)datasync;
    return fsync(dirfd((DIR *)(uintptr_t)fi->fh)) < 0 ? -errno : 0;
}

static const struct fuse_operations ops = {
    .init = ff_init,
    .getattr = ff_getattr,
    .readlink = ff_readlink,
    .mkdir = ff_mkdir,
    .unlink = ff_unlink,
    .rmdir = ff_rmdir,
    .symlink = ff_symlink,
    .rename = ff_rename,
    .link = ff_link,
    .chmod = ff_chmod,
    .chown = ff_chown,
    .truncate = ff_truncate,
    .utimens = ff_utimens,
    .open = ff_open,
    .create = ff_create,
    .read = ff_read,
    .write = ff_write,
    .statfs = ff_statfs,
    .release = ff_release,
    .fsync = ff_fsync,
    .opendir = ff_opendir,
    .readdir = ff_readdir,
    .releasedir = ff_releasedir,
    .fsyncdir = ff_fsyncdir,
};

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s BACKING MOUNTPOINT [FUSE options]\n", argv[0]);
        return 2;
    }
    backing = realpath(argv[1], NULL);
    if (!backing) {
        perror(argv[1]);
        return 1;
    }
    /* FUSE sees argv without BACKING. */
    for (int i = 1; i < argc - 1; i++)
        argv[i] = argv[i + 1];
    argc--;
    return fuse_main(argc, argv, &ops, NULL);
}
