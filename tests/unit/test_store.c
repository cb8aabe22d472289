/*
 * test_store.c - the store against real temporary folders: path checks,
 * symlinks planted in and swapped into the path, expectations, the
 * versions archive, staging resume, FIFOs, long names and deep paths,
 * a parent-flipping race, batches, and ENOSPC/EXDEV on a tiny tmpfs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hash/hash.h"
#include "store/store.h"
#include "store/staging_reuse.h"
#include "store/store_int.h" /* lr__store_name_check, st->folds: the clash checks */
#include "util/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct fx {
    char dir[64];
    char root[128];
    char out[128]; /* "outside": must stay empty whatever peers send */
    struct lr_store *st;
};

static int setup(void **state)
{
    lr_log_set_level(LR_LOG_ERROR);
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/lr-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof(f->root), "%s/root", f->dir);
    snprintf(f->out, sizeof(f->out), "%s/outside", f->dir);
    assert_int_equal(mkdir(f->root, 0755), 0);
    assert_int_equal(mkdir(f->out, 0755), 0);
    char m[256];
    snprintf(m, sizeof(m), "%s/.landropic", f->root);
    assert_int_equal(mkdir(m, 0700), 0);
    struct lr_err err = {0};
    assert_int_equal(lr_store_open(f->root, &f->st, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    lr_store_close(f->st);
    lr_store_test_force_walk(false);
    lr_store_test_set_race_hook(NULL, NULL);
    char cmd[256];
    /* A failed tmpfs test may leave its mounts: detach them before removing. */
    snprintf(cmd, sizeof(cmd), "%s/small", f->dir);
    umount2(cmd, MNT_DETACH);
    snprintf(cmd, sizeof(cmd), "%s/mnt", f->root);
    umount2(cmd, MNT_DETACH);
    snprintf(cmd, sizeof(cmd), "%s/fold", f->dir);
    umount2(cmd, MNT_DETACH);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static char *P(const struct fx *f, const char *rel)
{
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 1024, "%s/%s", f->root, rel);
    return b;
}

static void put_file(const char *path, const char *data)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    size_t n = strlen(data);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

/* Whole content of a (small) file, "" if absent; static buffer. */
static const char *content(const char *path)
{
    static char buf[4][65536];
    static int k;
    char *b = buf[k++ % 4];
    b[0] = '\0';
    int fd = open(path, O_RDONLY | O_NOFOLLOW);
    if (fd < 0)
        return b;
    ssize_t n = read(fd, b, 65535);
    close(fd);
    b[n > 0 ? n : 0] = '\0';
    return b;
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* The one entry of dir whose name starts with prefix, or NULL. */
static const char *find_entry(const char *dir, const char *prefix)
{
    static char name[NAME_MAX + 1];
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    struct dirent *de;
    const char *r = NULL;
    while ((de = readdir(d))) {
        if (!strncmp(de->d_name, prefix, strlen(prefix))) {
            snprintf(name, sizeof(name), "%s", de->d_name);
            r = name;
        }
    }
    closedir(d);
    return r;
}

static void key_of(const char *s, struct lr_hash *k)
{
    lr_sha256(s, strlen(s), k);
}

/* A complete staging file for key `ks` holding data. */
static int stage(struct fx *f, const char *ks, const char *data)
{
    struct lr_hash k;
    key_of(ks, &k);
    int fd;
    bool resumed;
    struct lr_err err = {0};
    size_t n = strlen(data);
    assert_int_equal(lr_store_staging_open(f->st, &k, n, &fd, &resumed, &err), 0);
    assert_int_equal(lr_store_staging_write(fd, 0, data, n, &err), 0);
    return fd;
}

static const struct lr_store_expect ABSENT = {.exists = false};

static struct lr_store_expect expect_of(const struct lr_store_info *i)
{
    struct lr_store_expect e = {.exists = true,
                                .type = i->type,
                                .ino = i->ino,
                                .size = i->size,
                                .mtime_ns = i->mtime_ns,
                                .ctime_ns = i->ctime_ns};
    return e;
}

static struct lr_store_expect expect_path(struct fx *f, const char *rel)
{
    struct lr_store_info i;
    struct lr_err err = {0};
    assert_int_equal(lr_store_stat(f->st, rel, &i, &err), 0);
    return expect_of(&i);
}

static int commit(struct fx *f, const char *rel, const char *data, const struct lr_store_expect *e,
                  unsigned flags, struct lr_err *err)
{
    struct lr_hash k;
    key_of(rel, &k);
    int fd = stage(f, rel, data);
    int rc = lr_store_commit_file(f->st, NULL, &k, fd, rel, 0644, 1700000000123456789LL, e, flags,
                                  NULL, err);
    close(fd);
    return rc;
}

/* ---- open / marker / paths ----------------------------------------------- */

static void test_open_marker(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_store *st = NULL;
    char r2[256], m[300];
    snprintf(r2, sizeof(r2), "%s/r2", f->dir);
    assert_int_equal(mkdir(r2, 0755), 0);
    assert_int_equal(lr_store_open(r2, &st, &err), LR_ENOMARKER);
    assert_null(st);
    /* A marker that is a symlink to a directory is not a marker. */
    snprintf(m, sizeof(m), "%s/.landropic", r2);
    assert_int_equal(symlink(f->out, m), 0);
    assert_int_equal(lr_store_open(r2, &st, &err), LR_ENOMARKER);
    assert_int_equal(count_entries(f->out), 0);
    unlink(m);
    put_file(m, "x");
    assert_int_equal(lr_store_open(r2, &st, &err), LR_ENOMARKER);
    unlink(m);
    assert_int_equal(mkdir(m, 0700), 0);
    assert_int_equal(lr_store_open(r2, &st, &err), 0);
    snprintf(m, sizeof(m), "%s/.landropic/tmp", r2);
    assert_int_equal(access(m, F_OK), 0);
    snprintf(m, sizeof(m), "%s/.landropic/versions", r2);
    assert_int_equal(access(m, F_OK), 0);
    assert_int_equal(lr_store_check_marker(st, &err), 0);

    /* Marker replaced by another directory, then removed. */
    char a[300], b[300];
    snprintf(a, sizeof(a), "%s/.landropic", r2);
    snprintf(b, sizeof(b), "%s/old-marker", r2);
    assert_int_equal(rename(a, b), 0);
    assert_int_equal(lr_store_check_marker(st, &err), LR_ENOMARKER);
    assert_int_equal(mkdir(a, 0700), 0);
    assert_int_equal(lr_store_check_marker(st, &err), LR_ENOMARKER);
    assert_int_equal(rmdir(a), 0);
    assert_int_equal(rename(b, a), 0);
    assert_int_equal(lr_store_check_marker(st, &err), 0);
    /* Root itself replaced (e.g. unmounted, recreated). */
    snprintf(b, sizeof(b), "%s/r2-old", f->dir);
    assert_int_equal(rename(r2, b), 0);
    assert_int_equal(mkdir(r2, 0755), 0);
    assert_int_equal(lr_store_check_marker(st, &err), LR_ENOMARKER);
    assert_non_null(strstr(err.msg, "r2"));
    lr_store_close(st);
}

/* A peer's rename as a move: the file becomes a staging file, or goes back. */
static void test_adopt(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_hash key, key2;
    key_of("adopted", &key);
    key_of("adopted 2", &key2);
    char name[LR_HASH_HEX_LEN + 1], sp[600];
    lr_hash_hex(&key, name);
    snprintf(sp, sizeof(sp), "%s/%s", P(f, ".landropic/tmp"), name);
    assert_int_equal(mkdir(P(f, "d"), 0755), 0);
    put_file(P(f, "d/old"), "the content");
    struct stat before, sb;
    assert_int_equal(stat(P(f, "d/old"), &before), 0);
    /* Not what the scan saw: nothing moves. */
    struct lr_store_expect e = expect_path(f, "d/old");
    e.size++;
    assert_int_equal(lr_store_adopt(f->st, "d/old", &e, &key, &err), LR_ECHANGED);
    assert_string_equal(content(P(f, "d/old")), "the content");
    /* A second link: not adopted either. */
    assert_int_equal(link(P(f, "d/old"), P(f, "d/other")), 0);
    e = expect_path(f, "d/old");
    assert_int_equal(lr_store_adopt(f->st, "d/old", &e, &key, &err), LR_ECHANGED);
    assert_int_equal(unlink(P(f, "d/other")), 0);
    /* Moved: same inode, now the staging file, which resumes with its data. */
    e = expect_path(f, "d/old");
    assert_int_equal(lr_store_adopt(f->st, "d/old", &e, &key, &err), 0);
    assert_int_equal(lstat(P(f, "d/old"), &sb), -1);
    assert_int_equal(stat(sp, &sb), 0);
    assert_true(sb.st_ino == before.st_ino);
    int fd = -1;
    bool resumed = false;
    assert_int_equal(lr_store_staging_open(f->st, &key, 11, &fd, &resumed, &err), 0);
    assert_true(resumed);
    close(fd);
    /* Gone already, or a staging file of that key exists: refused. */
    assert_int_equal(lr_store_adopt(f->st, "d/old", &e, &key, &err), -ENOENT);
    put_file(P(f, "d/again"), "other");
    struct lr_store_expect e2 = expect_path(f, "d/again");
    assert_int_equal(lr_store_adopt(f->st, "d/again", &e2, &key, &err), -EEXIST);
    assert_string_equal(content(P(f, "d/again")), "other");
    /* Back to its name; taken meanwhile: into the archive, not left in tmp/. */
    assert_int_equal(lr_store_unadopt(f->st, &key, "d/old", &err), 0);
    assert_string_equal(content(P(f, "d/old")), "the content");
    e = expect_path(f, "d/old");
    assert_int_equal(lr_store_adopt(f->st, "d/old", &e, &key2, &err), 0);
    put_file(P(f, "d/old"), "a new file");
    assert_int_equal(lr_store_unadopt(f->st, &key2, "d/old", &err), 0);
    assert_string_equal(content(P(f, "d/old")), "a new file");
    const char *v = find_entry(P(f, ".landropic/versions/d"), "old~");
    assert_non_null(v);
    snprintf(sp, sizeof(sp), "%s/%s", P(f, ".landropic/versions/d"), v);
    assert_string_equal(content(sp), "the content");
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 0);
    /* Only regular files. */
    assert_int_equal(symlink("x", P(f, "ln")), 0);
    e = expect_path(f, "ln");
    assert_int_equal(lr_store_adopt(f->st, "ln", &e, &key, &err), LR_EUSAGE);
}

/* The index mark: strict text, written by rename, a bad file is no mark. */
static void test_index_mark(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_store_mark m = {1, 1, 1},
                         want = {0x0123456789abcdefull, 4611686018427387903ull, 1764000000};
    assert_int_equal(lr_store_mark_read(f->st, &m, &err), 0);
    assert_true(m.index_id == 0 && m.max_seq == 0);
    assert_int_equal(lr_store_mark_write(f->st, &want, &err), 0);
    assert_int_equal(lr_store_mark_read(f->st, &m, &err), 1);
    assert_true(m.index_id == want.index_id && m.max_seq == want.max_seq && m.clock == want.clock);
    assert_string_equal(content(P(f, ".landropic/index-mark")),
                        "landropic-index-mark 1 0123456789abcdef 4611686018427387903 1764000000\n");
    struct lr_store_mark zero = {0, 5, 5};
    assert_int_equal(lr_store_mark_write(f->st, &zero, &err), LR_EUSAGE);

    static const char *const bad[] = {
        "",
        "landropic-index-mark 1 0123456789abcdef 7 9",                     /* no newline */
        "landropic-index-mark 1 0123456789abcdef 7\n",                     /* no clock */
        "landropic-index-mark 2 0123456789abcdef 7 9\n",                   /* version */
        "landropic-index-mark 1 0123456789ABCDEF 7 9\n",                   /* upper case */
        "landropic-index-mark 1 123456789abcdef 7 9\n",                    /* 15 digits */
        "landropic-index-mark 1 0000000000000000 7 9\n",                   /* ID 0 */
        "landropic-index-mark 1 0123456789abcdef -7 9\n",                  /* sign */
        "landropic-index-mark 1 0123456789abcdef 07 9\n",                  /* leading zero */
        "landropic-index-mark 1 0123456789abcdef 4611686018427387904 9\n", /* 2^62 */
        "landropic-index-mark 1 0123456789abcdef 7 4611686018427387904\n",
        "landropic-index-mark 1 0123456789abcdef 99999999999999999999 9\n",
        "landropic-index-mark 1 0123456789abcdef 7 9\n\n", /* trailing */
        "landropic-index-mark 1 0123456789abcdef  7 9\n",  /* two spaces */
        "landropic-index-mark 1 0123456789abcdef 7 9 1\n", /* a field more */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m.index_id = 9;
        assert_false(lr_store_mark_parse(bad[i], strlen(bad[i]), &m));
        assert_true(m.index_id == 0 && m.max_seq == 0);
    }
    assert_true(lr_store_mark_parse("landropic-index-mark 1 00000000000000ff 0 0\n", 44, &m));
    assert_true(m.index_id == 255 && m.max_seq == 0 && m.clock == 0);

    /* Garbage on disk reads as no mark; a planted symlink is not followed
     * and is replaced by the next write. */
    put_file(P(f, ".landropic/index-mark"), "garbage\n");
    assert_int_equal(lr_store_mark_read(f->st, &m, &err), 0);
    unlink(P(f, ".landropic/index-mark"));
    assert_int_equal(symlink(P(f, "../outside/victim"), P(f, ".landropic/index-mark")), 0);
    assert_int_equal(lr_store_mark_read(f->st, &m, &err), 0);
    assert_int_equal(symlink(P(f, "../outside/victim2"), P(f, ".landropic/index-mark.new")), 0);
    assert_int_equal(lr_store_mark_write(f->st, &want, &err), 0);
    assert_int_equal(lr_store_mark_read(f->st, &m, &err), 1);
    struct stat sb;
    assert_int_equal(stat(P(f, "../outside/victim"), &sb), -1);
    assert_int_equal(stat(P(f, "../outside/victim2"), &sb), -1);
    /* A directory there: no mark, and an empty one makes way for the next. */
    unlink(P(f, ".landropic/index-mark"));
    assert_int_equal(mkdir(P(f, ".landropic/index-mark"), 0755), 0);
    assert_int_equal(lr_store_mark_read(f->st, &m, &err), 0);
    assert_int_equal(lr_store_mark_write(f->st, &want, &err), 0);
    assert_int_equal(lr_store_mark_read(f->st, &m, &err), 1);
}

static void test_bad_paths(void **state)
{
    struct fx *f = *state;
    static const char *bad[] = {"",
                                ".",
                                "..",
                                "/etc/x",
                                "../x",
                                "a/../../x",
                                "a//b",
                                "./a",
                                "a/",
                                "a/.",
                                ".landropic",
                                ".landropic/tmp/x",
                                ".LandRopic/versions/x",
                                "../outside/x"};
    struct lr_err err = {0};
    struct lr_hash k;
    key_of("bad", &k);
    int fd = stage(f, "bad", "payload");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(lr_store_path_check(bad[i], &err), LR_EBADPATH);
        assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, bad[i], 0644, 0, &ABSENT,
                                              LR_STORE_MKPARENTS, NULL, &err),
                         LR_EBADPATH);
        assert_int_equal(lr_store_mkdir(f->st, NULL, bad[i], 0755, 0, NULL, &err), LR_EBADPATH);
    }
    close(fd);
    assert_int_equal(lr_store_path_check(".landropicignore", &err), 0);
    assert_int_equal(lr_store_path_check("a/.landropic", &err), 0);
    assert_int_equal(lr_store_path_check("x/\xff\xfe name", &err), 0);
    /* Nothing was written anywhere but the staging file. */
    assert_int_equal(count_entries(f->root), 1);
    assert_int_equal(count_entries(f->out), 0);
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 1);
}

/* ---- commit -------------------------------------------------------------- */

static void test_commit_new_and_replace(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_hash k;
    key_of("a/b/c.txt", &k);
    int fd = stage(f, "a/b/c.txt", "version one");
    struct lr_store_info info;
    /* Without MKPARENTS the missing parent is an error and nothing moves. */
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, "a/b/c.txt", 0640, 1234567890,
                                          &ABSENT, 0, &info, &err),
                     -ENOENT);
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, "a/b/c.txt", 04640, 1234567890,
                                          &ABSENT, LR_STORE_MKPARENTS, &info, &err),
                     0);
    close(fd);
    assert_string_equal(content(P(f, "a/b/c.txt")), "version one");
    struct stat sb;
    assert_int_equal(lstat(P(f, "a/b/c.txt"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0640); /* set-uid from a peer is dropped */
    assert_int_equal(sb.st_mtim.tv_sec, 1);
    assert_int_equal(sb.st_mtim.tv_nsec, 234567890);
    assert_int_equal(info.ino, sb.st_ino);
    assert_int_equal(info.size, 11);
    assert_int_equal(info.ctime_ns, (int64_t)sb.st_ctim.tv_sec * 1000000000 + sb.st_ctim.tv_nsec);
    assert_int_equal(info.mtime_ns, 1234567890);
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 0);

    /* Replace with the scan's view: old content lands in versions/a/b/. */
    struct lr_store_expect e = expect_of(&info);
    assert_int_equal(commit(f, "a/b/c.txt", "version two!", &e, 0, &err), 0);
    assert_string_equal(content(P(f, "a/b/c.txt")), "version two!");
    const char *v = find_entry(P(f, ".landropic/versions/a/b"), "c.txt~");
    assert_non_null(v);
    assert_int_equal(strlen(v), strlen("c.txt~20261125-134501"));
    char vp[600];
    snprintf(vp, sizeof(vp), "%s/%s", P(f, ".landropic/versions/a/b"), v);
    assert_string_equal(content(vp), "version one");

    /* And again within the same second: a collision suffix, nothing overwritten. */
    e = expect_path(f, "a/b/c.txt");
    assert_int_equal(commit(f, "a/b/c.txt", "three", &e, 0, &err), 0);
    e = expect_path(f, "a/b/c.txt");
    assert_int_equal(commit(f, "a/b/c.txt", "four", &e, 0, &err), 0);
    assert_string_equal(content(P(f, "a/b/c.txt")), "four");
    assert_int_equal(count_entries(P(f, ".landropic/versions/a/b")), 3);
    /* Zero-byte files commit too. */
    assert_int_equal(commit(f, "empty", "", &ABSENT, 0, &err), 0);
    assert_int_equal(lstat(P(f, "empty"), &sb), 0);
    assert_int_equal(sb.st_size, 0);
}

static void test_commit_changed(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    put_file(P(f, "x"), "local");
    /* Expected absent, but a local file appeared. */
    struct lr_hash k;
    key_of("x", &k);
    int fd = stage(f, "x", "remote");
    assert_int_equal(
        lr_store_commit_file(f->st, NULL, &k, fd, "x", 0644, 0, &ABSENT, 0, NULL, &err),
        LR_ECHANGED);
    assert_string_equal(content(P(f, "x")), "local");
    /* Scan saw it; then the user edited it (size and mtime differ). */
    struct lr_store_expect e = expect_path(f, "x");
    put_file(P(f, "x"), "local edit, longer");
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, "x", 0644, 0, &e, 0, NULL, &err),
                     LR_ECHANGED);
    assert_non_null(strstr(err.msg, "x"));
    assert_string_equal(content(P(f, "x")), "local edit, longer");
    /* Same size and mtime restored, but rewritten: ctime tells. */
    e = expect_path(f, "x");
    struct timespec ts[2] = {{0, UTIME_OMIT}, {0, 0}};
    ts[1].tv_sec = (time_t)(e.mtime_ns / 1000000000);
    ts[1].tv_nsec = (long)(e.mtime_ns % 1000000000);
    usleep(20000);
    put_file(P(f, "x"), "LOCAL EDIT, LONGER");
    assert_int_equal(utimensat(AT_FDCWD, P(f, "x"), ts, 0), 0);
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, "x", 0644, 0, &e, 0, NULL, &err),
                     LR_ECHANGED);
    assert_string_equal(content(P(f, "x")), "LOCAL EDIT, LONGER");
    /* A directory where a file was expected; and a directory as the expectation. */
    assert_int_equal(mkdir(P(f, "d"), 0755), 0);
    e.exists = true;
    e.type = LR_FT_FILE;
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, "d", 0644, 0, &e, 0, NULL, &err),
                     LR_ECHANGED);
    e = expect_path(f, "d");
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, "d", 0644, 0, &e, 0, NULL, &err),
                     LR_EUSAGE);
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, "d", 0644, 0, NULL, 0, NULL, &err),
                     LR_EUSAGE);
    /* The staging file survived every refusal and still commits. */
    e = expect_path(f, "x");
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, "x", 0644, 0, &e, 0, NULL, &err), 0);
    close(fd);
    assert_string_equal(content(P(f, "x")), "remote");
    assert_int_equal(count_entries(P(f, ".landropic/versions")), 1);
    /* A staging fd that is not the file under the key's name is refused. */
    fd = stage(f, "y", "y data");
    key_of("other", &k);
    int fd2 = stage(f, "other", "zzz");
    assert_int_equal(
        lr_store_commit_file(f->st, NULL, &k, fd, "y", 0644, 0, &ABSENT, 0, NULL, &err),
        LR_ECHANGED);
    close(fd);
    close(fd2);
    assert_int_equal(access(P(f, "y"), F_OK), -1);
}

/* hostile case 13 (croc #1191), case 2 */
static void check_symlinked_parent(struct fx *f)
{
    struct lr_err err = {0};
    assert_int_equal(symlink(f->out, P(f, "nested")), 0);
    assert_int_equal(commit(f, "nested/payload", "evil", &ABSENT, 0, &err), -ELOOP);
    assert_non_null(strstr(err.msg, "nested/payload"));
    assert_non_null(strstr(err.msg, "a symbolic link is in the way (never followed)"));
    assert_int_equal(commit(f, "nested/payload", "evil", &ABSENT, LR_STORE_MKPARENTS, &err),
                     -ELOOP);
    assert_int_equal(commit(f, "nested/deeper/payload", "evil", &ABSENT, LR_STORE_MKPARENTS, &err),
                     -ELOOP);
    assert_int_equal(lr_store_mkdir(f->st, NULL, "nested/dir", 0755, 0, NULL, &err), -ELOOP);
    struct lr_store_expect e = {.exists = true, .type = LR_FT_SYMLINK};
    assert_int_equal(lr_store_symlink(f->st, NULL, "nested/l", "/etc", 0, &ABSENT, 0, NULL, &err),
                     -ELOOP);
    /* Operations on an entry that exists beyond the link are refused too. */
    put_file(P(f, "../outside/victim"), "precious");
    e.type = LR_FT_FILE;
    assert_int_equal(lr_store_delete(f->st, NULL, "nested/victim", &e, &err), -ELOOP);
    assert_int_equal(lr_store_set_meta(f->st, NULL, "nested/victim", 0777, 0, &e, NULL, &err),
                     -ELOOP);
    char buf[8];
    struct lr_hash h;
    lr_sha256("precious", 8, &h);
    assert_int_equal(lr_store_read_chunk(f->st, "nested/victim", 0, 8, &h, buf, &err), -ELOOP);
    struct lr_store_info info;
    assert_int_equal(lr_store_stat(f->st, "nested/victim", &info, &err), -ELOOP);
    assert_int_equal(count_entries(f->out), 1);
    assert_string_equal(content(P(f, "../outside/victim")), "precious");
    struct stat sb;
    assert_int_equal(stat(P(f, "../outside/victim"), &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    assert_int_equal(lstat(P(f, "nested"), &sb), 0);
    assert_true(S_ISLNK(sb.st_mode));
}

static void test_symlink_parent_refused(void **state)
{
    check_symlinked_parent(*state);
}

static void test_symlink_parent_refused_walk(void **state)
{
    lr_store_test_force_walk(true);
    check_symlinked_parent(*state);
}

/* A symlink as the final component is replaced, never written through. */
static void test_symlink_final_component(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    put_file(P(f, "../outside/target"), "outside data");
    char tgt[300];
    snprintf(tgt, sizeof(tgt), "%s/target", f->out);
    assert_int_equal(symlink(tgt, P(f, "link")), 0);
    /* The engine believed it was a file: refused. */
    struct lr_store_expect e = {.exists = true, .type = LR_FT_FILE, .size = 12};
    assert_int_equal(commit(f, "link", "new", &e, 0, &err), LR_ECHANGED);
    e = expect_path(f, "link");
    assert_int_equal(e.type, LR_FT_SYMLINK);
    assert_int_equal(commit(f, "link", "new", &e, 0, &err), 0);
    struct stat sb;
    assert_int_equal(lstat(P(f, "link"), &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_string_equal(content(P(f, "link")), "new");
    assert_string_equal(content(tgt), "outside data");
    /* Symlinks are not archived, and no leftovers in tmp. */
    assert_int_equal(count_entries(P(f, ".landropic/versions")), 0);
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 0);
    assert_int_equal(count_entries(f->out), 1);
    /* Same through set_meta: a symlink's target is never chmod'ed. */
    assert_int_equal(symlink(tgt, P(f, "link2")), 0);
    e = expect_path(f, "link2");
    assert_int_equal(lr_store_set_meta(f->st, NULL, "link2", 0777, 42, &e, NULL, &err), 0);
    assert_int_equal(stat(tgt, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    assert_int_equal(lstat(P(f, "link2"), &sb), 0);
    assert_int_equal(sb.st_mtim.tv_sec, 0);
    assert_int_equal(sb.st_mtim.tv_nsec, 42);
}

static void test_symlink_create(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_store_info info;
    assert_int_equal(lr_store_symlink(f->st, NULL, "s", f->out, -1, &ABSENT, 0, &info, &err), 0);
    char buf[256];
    ssize_t n = readlink(P(f, "s"), buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, f->out);
    assert_int_equal(info.type, LR_FT_SYMLINK);
    assert_int_equal(info.mtime_ns, -1);
    /* hostile case 2: s -> outside, then s/f */
    assert_int_equal(commit(f, "s/f", "evil", &ABSENT, LR_STORE_MKPARENTS, &err), -ELOOP);
    /* hostile case 3: delete s, then create s/bar, then delete s/bar */
    struct lr_store_expect e = expect_of(&info);
    assert_int_equal(lr_store_delete(f->st, NULL, "s", &e, &err), 0);
    assert_int_equal(commit(f, "s/bar", "fine", &ABSENT, LR_STORE_MKPARENTS, &err), 0);
    e = expect_path(f, "s/bar");
    assert_int_equal(lr_store_delete(f->st, NULL, "s/bar", &e, &err), 0);
    assert_int_equal(count_entries(f->out), 0);
    assert_int_equal(access(P(f, "s/bar"), F_OK), -1);
    /* Replacing a regular file with a symlink archives the file. */
    put_file(P(f, "r"), "was a file");
    e = expect_path(f, "r");
    assert_int_equal(lr_store_symlink(f->st, NULL, "r", "s/bar", 0, &e, 0, NULL, &err), 0);
    const char *v = find_entry(P(f, ".landropic/versions"), "r~");
    assert_non_null(v);
    char vp[600];
    snprintf(vp, sizeof(vp), "%s/%s", P(f, ".landropic/versions"), v);
    assert_string_equal(content(vp), "was a file");
    /* Bad targets, and a symlink over an unexpected entry. */
    assert_int_equal(lr_store_symlink(f->st, NULL, "t", "", 0, &ABSENT, 0, NULL, &err), LR_EBADVAL);
    assert_int_equal(lr_store_symlink(f->st, NULL, "r", "x", 0, &ABSENT, 0, NULL, &err),
                     LR_ECHANGED);
    /* No temporary symlink left behind; the refused s/f staging file stays for a retry. */
    assert_null(find_entry(P(f, ".landropic/tmp"), "t-"));
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 1);
}

static void test_delete(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    assert_int_equal(mkdir(P(f, "d"), 0755), 0);
    put_file(P(f, "d/file"), "keep me");
    struct lr_store_expect e = expect_path(f, "d");
    assert_int_equal(lr_store_delete(f->st, NULL, "d", &e, &err), -ENOTEMPTY);
    assert_non_null(strstr(err.msg, "file"));
    assert_string_equal(content(P(f, "d/file")), "keep me");
    /* Mismatch: refused, intact. */
    struct lr_store_expect ef = expect_path(f, "d/file");
    ef.size = 3;
    assert_int_equal(lr_store_delete(f->st, NULL, "d/file", &ef, &err), LR_ECHANGED);
    assert_string_equal(content(P(f, "d/file")), "keep me");
    /* A file delete is a move into versions/. */
    ef = expect_path(f, "d/file");
    assert_int_equal(lr_store_delete(f->st, NULL, "d/file", &ef, &err), 0);
    assert_int_equal(access(P(f, "d/file"), F_OK), -1);
    const char *v = find_entry(P(f, ".landropic/versions/d"), "file~");
    assert_non_null(v);
    char vp[600];
    snprintf(vp, sizeof(vp), "%s/%s", P(f, ".landropic/versions/d"), v);
    assert_string_equal(content(vp), "keep me");
    assert_int_equal(lr_store_delete(f->st, NULL, "d/file", &ef, &err), -ENOENT);
    /* Now empty: rmdir. A file where the directory was expected: refused. */
    put_file(P(f, "notdir"), "x");
    struct lr_store_expect ed = e;
    ed.ino = 0;
    ed.ctime_ns = 0;
    assert_int_equal(lr_store_delete(f->st, NULL, "notdir", &ed, &err), LR_ECHANGED);
    e = expect_path(f, "d");
    assert_int_equal(lr_store_delete(f->st, NULL, "d", &e, &err), 0);
    assert_int_equal(access(P(f, "d"), F_OK), -1);
    /* A symlink is unlinked, its target untouched. */
    put_file(P(f, "../outside/t"), "outside");
    char tgt[300];
    snprintf(tgt, sizeof(tgt), "%s/t", f->out);
    assert_int_equal(symlink(tgt, P(f, "l")), 0);
    e = expect_path(f, "l");
    assert_int_equal(lr_store_delete(f->st, NULL, "l", &e, &err), 0);
    struct stat sb;
    assert_int_equal(lstat(P(f, "l"), &sb), -1);
    assert_string_equal(content(tgt), "outside");
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 0);
    assert_int_equal(lr_store_delete(f->st, NULL, "l", NULL, &err), LR_EUSAGE);
    /* Unarchived (a peer's rename): checked the same way, then unlinked. */
    put_file(P(f, "renamed"), "old name");
    ef = expect_path(f, "renamed");
    ef.mtime_ns++;
    assert_int_equal(lr_store_delete_ex(f->st, NULL, "renamed", &ef, LR_STORE_DEL_UNARCHIVED, &err),
                     LR_ECHANGED);
    assert_string_equal(content(P(f, "renamed")), "old name");
    ef = expect_path(f, "renamed");
    assert_int_equal(lr_store_delete_ex(f->st, NULL, "renamed", &ef, LR_STORE_DEL_UNARCHIVED, &err),
                     0);
    assert_int_equal(lstat(P(f, "renamed"), &sb), -1);
    assert_null(find_entry(P(f, ".landropic/versions"), "renamed~"));
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 0);
}

/* The archive entry of a file at `dir` starting with `prefix`: its path. */
static const char *archived(struct fx *f, const char *dir, const char *prefix)
{
    static char vp[600];
    const char *v = find_entry(P(f, dir), prefix);
    assert_non_null(v);
    snprintf(vp, sizeof(vp), "%s/%s", P(f, dir), v);
    return vp;
}

/* A file with another hard link is archived as a copy: linked or moved,
 * the archive entry was the same inode, and a write through the other link
 * rewrote the version kept. */
static void test_hard_linked_archived_as_copy(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct stat sb, vs;
    /* Replaced by a peer's version. */
    put_file(P(f, "r.txt"), "precious v1");
    assert_int_equal(chmod(P(f, "r.txt"), 0604), 0);
    assert_int_equal(link(P(f, "r.txt"), P(f, "../outside/r-link")), 0);
    assert_int_equal(lstat(P(f, "r.txt"), &sb), 0);
    struct lr_store_expect e = expect_path(f, "r.txt");
    assert_int_equal(commit(f, "r.txt", "peer v2", &e, 0, &err), 0);
    assert_string_equal(content(P(f, "r.txt")), "peer v2");
    const char *vp = archived(f, ".landropic/versions", "r.txt~");
    assert_int_equal(lstat(vp, &vs), 0);
    assert_true(vs.st_ino != sb.st_ino);
    assert_int_equal(vs.st_nlink, 1);
    assert_int_equal(vs.st_mode & 07777, 0604);
    assert_int_equal(vs.st_mtim.tv_sec, sb.st_mtim.tv_sec);
    assert_int_equal(vs.st_mtim.tv_nsec, sb.st_mtim.tv_nsec);
    put_file(P(f, "../outside/r-link"), "scratch");
    assert_string_equal(content(vp), "precious v1");
    /* Deleted by a peer; both links in the folder. */
    put_file(P(f, "d1"), "kept v1");
    assert_int_equal(link(P(f, "d1"), P(f, "d2")), 0);
    e = expect_path(f, "d1");
    assert_int_equal(lr_store_delete(f->st, NULL, "d1", &e, &err), 0);
    assert_int_equal(lstat(P(f, "d1"), &sb), -1);
    vp = archived(f, ".landropic/versions", "d1~");
    put_file(P(f, "d2"), "edited through the other link");
    assert_string_equal(content(vp), "kept v1");
    /* A file changed since the scan is refused, nothing archived. */
    put_file(P(f, "c1"), "scanned");
    assert_int_equal(link(P(f, "c1"), P(f, "c2")), 0);
    e = expect_path(f, "c1");
    e.mtime_ns++;
    assert_int_equal(lr_store_delete(f->st, NULL, "c1", &e, &err), LR_ECHANGED);
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 0);
    assert_int_equal(commit(f, "c1", "new", &e, 0, &err), LR_ECHANGED);
    assert_string_equal(content(P(f, "c1")), "scanned");
    assert_null(find_entry(P(f, ".landropic/versions"), "c1~"));
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 1); /* the staging file stays */
}

static void test_set_meta_and_mkdir(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    mode_t old = umask(077);
    struct lr_store_info info;
    assert_int_equal(lr_store_mkdir(f->st, NULL, "p/q", 02755, LR_STORE_MKPARENTS, &info, &err), 0);
    umask(old);
    struct stat sb;
    assert_int_equal(stat(P(f, "p/q"), &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 07777, 0755);
    assert_int_equal(info.type, LR_FT_DIR);
    assert_int_equal(info.ino, sb.st_ino);
    /* Existing directory: fine, mode applied. A file in the way: refused. */
    assert_int_equal(lr_store_mkdir(f->st, NULL, "p/q", 0700, 0, NULL, &err), 0);
    assert_int_equal(stat(P(f, "p/q"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0700);
    put_file(P(f, "p/file"), "data");
    assert_int_equal(lr_store_mkdir(f->st, NULL, "p/file", 0700, 0, NULL, &err), LR_ECHANGED);
    assert_string_equal(content(P(f, "p/file")), "data");

    struct lr_store_expect e = expect_path(f, "p/file");
    assert_int_equal(
        lr_store_set_meta(f->st, NULL, "p/file", 06600, 1500000000000000001LL, &e, &info, &err), 0);
    assert_int_equal(stat(P(f, "p/file"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    assert_int_equal(sb.st_mtim.tv_sec, 1500000000);
    assert_int_equal(sb.st_mtim.tv_nsec, 1);
    assert_int_equal(info.mtime_ns, 1500000000000000001LL);
    assert_string_equal(content(P(f, "p/file")), "data");
    /* Stale expectation (ctime moved with the chmod above). */
    assert_int_equal(lr_store_set_meta(f->st, NULL, "p/file", 0644, 0, &e, NULL, &err),
                     LR_ECHANGED);
    assert_int_equal(stat(P(f, "p/file"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    e = expect_path(f, "p/q");
    assert_int_equal(lr_store_set_meta(f->st, NULL, "p/q", 0711, 5000000000LL, &e, NULL, &err), 0);
    assert_int_equal(stat(P(f, "p/q"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0711);
    assert_int_equal(sb.st_mtim.tv_sec, 5);
    /* The owner never loses read on a file, rwx on a directory. */
    e = expect_path(f, "p/q");
    assert_int_equal(lr_store_set_meta(f->st, NULL, "p/q", 0055, 5, &e, NULL, &err), 0);
    assert_int_equal(stat(P(f, "p/q"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0755);
    e = expect_path(f, "p/file");
    assert_int_equal(lr_store_set_meta(f->st, NULL, "p/file", 0044, 5, &e, NULL, &err), 0);
    assert_int_equal(stat(P(f, "p/file"), &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0444);
}

/* ---- racing local edits between check and apply (hostile case 16) -------- */

struct edit {
    const char *path; /* absolute */
    const char *data;
    bool in_place;
    int calls;
};

static void edit_hook(void *arg, const char *relpath, int point)
{
    (void)relpath;
    struct edit *ed = arg;
    if (point != LR_STORE_FP_CHECKED)
        return;
    ed->calls++;
    if (ed->in_place) { /* same inode, new bytes */
        int fd = open(ed->path, O_WRONLY | O_APPEND);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, ed->data, strlen(ed->data)), (ssize_t)strlen(ed->data));
        close(fd);
        return;
    }
    /* An editor's save: new inode renamed over the path. */
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.swp", ed->path);
    put_file(tmp, ed->data);
    assert_int_equal(rename(tmp, ed->path), 0);
}

static void test_racing_edit(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct edit ed = {.path = P(f, "doc"), .data = "user's edit"};
    lr_store_test_set_race_hook(edit_hook, &ed);
    /* Nothing expected, a file appears: the no-replace rename refuses. */
    assert_int_equal(commit(f, "doc", "remote", &ABSENT, 0, &err), LR_ECHANGED);
    assert_int_equal(ed.calls, 1);
    assert_string_equal(content(P(f, "doc")), "user's edit");
    /* A replace whose target is saved over meanwhile: swapped back. */
    struct lr_store_expect e = expect_path(f, "doc");
    ed.data = "user's second edit";
    assert_int_equal(commit(f, "doc", "remote", &e, 0, &err), LR_ECHANGED);
    assert_string_equal(content(P(f, "doc")), "user's second edit");
    assert_int_equal(count_entries(P(f, ".landropic/versions")), 0);
    /* The staging file is intact under its key, ready for the retry. */
    struct lr_hash k, h;
    key_of("doc", &k);
    int fd;
    bool resumed;
    assert_int_equal(lr_store_staging_open(f->st, &k, 6, &fd, &resumed, &err), 0);
    assert_true(resumed);
    lr_sha256("remote", 6, &h);
    assert_int_equal(lr_store_staging_verify_chunk(fd, 0, 6, &h, &err), 0);
    /* An in-place append (same inode) is caught by the second look too. */
    e = expect_path(f, "doc");
    ed.in_place = true;
    ed.data = "+more";
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, "doc", 0644, 0, &e, 0, NULL, &err),
                     LR_ECHANGED);
    assert_string_equal(content(P(f, "doc")), "user's second edit+more");
    /* Without the race the same staging file goes in, the edit is archived. */
    lr_store_test_set_race_hook(NULL, NULL);
    e = expect_path(f, "doc");
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, "doc", 0644, 0, &e, 0, NULL, &err),
                     0);
    close(fd);
    assert_string_equal(content(P(f, "doc")), "remote");
    const char *v = find_entry(P(f, ".landropic/versions"), "doc~");
    assert_non_null(v);
    char vp[600];
    snprintf(vp, sizeof(vp), "%s/%s", P(f, ".landropic/versions"), v);
    assert_string_equal(content(vp), "user's second edit+more");

    /* Delete racing a save: the new file stays in place. */
    e = expect_path(f, "doc");
    ed.in_place = false;
    ed.data = "saved during delete";
    lr_store_test_set_race_hook(edit_hook, &ed);
    assert_int_equal(lr_store_delete(f->st, NULL, "doc", &e, &err), LR_ECHANGED);
    assert_string_equal(content(P(f, "doc")), "saved during delete");
    assert_int_equal(count_entries(P(f, ".landropic/versions")), 1);
    /* Symlink delete or replace racing a save: the file stays. */
    assert_int_equal(symlink("target", P(f, "sl")), 0);
    e = expect_path(f, "sl");
    ed.path = P(f, "sl");
    ed.data = "file now";
    assert_int_equal(lr_store_delete(f->st, NULL, "sl", &e, &err), LR_ECHANGED);
    assert_string_equal(content(P(f, "sl")), "file now");
    assert_int_equal(unlink(P(f, "sl")), 0);
    assert_int_equal(symlink("target", P(f, "sl")), 0);
    e = expect_path(f, "sl");
    ed.data = "file again";
    assert_int_equal(lr_store_symlink(f->st, NULL, "sl", "other", 0, &e, 0, NULL, &err),
                     LR_ECHANGED);
    assert_string_equal(content(P(f, "sl")), "file again");
    lr_store_test_set_race_hook(NULL, NULL);
    assert_null(find_entry(P(f, ".landropic/tmp"), "t-"));
}

/* ---- SIGKILL at each named point of a replace (hostile case 20) ---------- */

static int kill_at;

static void kill_hook(void *arg, const char *relpath, int point)
{
    (void)arg;
    (void)relpath;
    if (point == kill_at)
        raise(SIGKILL);
}

static void test_crash_points(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    for (int pt = LR_STORE_FP_CHECKED; pt <= LR_STORE_FP_EXCHANGED; pt++) {
        char rel[32], vdir[300];
        snprintf(rel, sizeof(rel), "c%d/doc", pt);
        snprintf(vdir, sizeof(vdir), "c%d", pt);
        assert_int_equal(mkdir(P(f, vdir), 0755), 0);
        put_file(P(f, rel), "old version");
        struct lr_store_expect e = expect_path(f, rel);
        struct lr_hash k, h;
        key_of(rel, &k);
        close(stage(f, rel, "new version!"));
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            kill_at = pt;
            lr_store_test_set_race_hook(kill_hook, NULL);
            int fd;
            struct lr_err cerr = {0};
            if (lr_store_staging_open(f->st, &k, 12, &fd, NULL, &cerr))
                _exit(2);
            lr_store_commit_file(f->st, NULL, &k, fd, rel, 0644, 0, &e, 0, NULL, &cerr);
            _exit(3); /* the hook should have killed us */
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        /* Wholly old or wholly new, and the old version never lost. */
        const char *now = content(P(f, rel));
        snprintf(vdir, sizeof(vdir), "%s/c%d", P(f, ".landropic/versions"), pt);
        const char *v = find_entry(vdir, "doc~");
        if (pt < LR_STORE_FP_EXCHANGED) {
            assert_string_equal(now, "old version");
        } else {
            assert_string_equal(now, "new version!");
            assert_non_null(v);
        }
        if (v) {
            char vp[600];
            snprintf(vp, sizeof(vp), "%s/%s", vdir, v);
            assert_string_equal(content(vp), "old version");
        }
        /* Restart: the staging file is resumed only if it still holds our data. */
        int fd;
        bool resumed;
        assert_int_equal(lr_store_staging_open(f->st, &k, 12, &fd, &resumed, &err), 0);
        lr_sha256("new version!", 12, &h);
        if (pt < LR_STORE_FP_EXCHANGED) {
            assert_true(resumed);
            assert_int_equal(lr_store_staging_verify_chunk(fd, 0, 12, &h, &err), 0);
            /* and the retried commit completes */
            e = expect_path(f, rel);
            assert_int_equal(
                lr_store_commit_file(f->st, NULL, &k, fd, rel, 0644, 0, &e, 0, NULL, &err), 0);
            assert_string_equal(content(P(f, rel)), "new version!");
        } else {
            /* The old file sat doubly linked under the staging name: dropped, not reused. */
            assert_false(resumed);
            assert_int_equal(lr_store_staging_discard(f->st, &k, &err), 0);
        }
        close(fd);
        v = find_entry(vdir, "doc~");
        assert_non_null(v);
        char vp[600];
        snprintf(vp, sizeof(vp), "%s/%s", vdir, v);
        assert_string_equal(content(vp), "old version");
    }
}

/* ---- staging ------------------------------------------------------------- */

static void test_staging_resume(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_hash k, h1, h2, h3;
    key_of("resume-me", &k);
    enum { CH = 4096 };
    static char c1[CH], c2[CH], c3[CH];
    memset(c1, 'a', CH);
    memset(c2, 'b', CH);
    memset(c3, 'c', CH);
    lr_sha256(c1, CH, &h1);
    lr_sha256(c2, CH, &h2);
    lr_sha256(c3, CH, &h3);
    int fd;
    bool resumed = true;
    assert_int_equal(lr_store_staging_open(f->st, &k, 3 * CH, &fd, &resumed, &err), 0);
    assert_false(resumed);
    assert_int_equal(lr_store_staging_write(fd, 0, c1, CH, &err), 0);
    assert_int_equal(lr_store_staging_write(fd, CH, c2, CH, &err), 0);
    close(fd); /* "crash" */

    assert_int_equal(lr_store_staging_open(f->st, &k, 3 * CH, &fd, &resumed, &err), 0);
    assert_true(resumed);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal(sb.st_size, 3 * CH);
    assert_int_equal(lr_store_staging_verify_chunk(fd, 0, CH, &h1, &err), 0);
    assert_int_equal(lr_store_staging_verify_chunk(fd, CH, CH, &h2, &err), 0);
    /* Never written (sparse zeros), swapped, corrupted, and past the end. */
    assert_int_equal(lr_store_staging_verify_chunk(fd, 2 * CH, CH, &h3, &err), LR_EVERIFY);
    assert_int_equal(lr_store_staging_verify_chunk(fd, 0, CH, &h2, &err), LR_EVERIFY);
    assert_int_equal(pwrite(fd, "X", 1, CH + 100), 1);
    assert_int_equal(lr_store_staging_verify_chunk(fd, CH, CH, &h2, &err), LR_EVERIFY);
    assert_int_equal(lr_store_staging_verify_chunk(fd, 3 * CH - 10, CH, &h1, &err), LR_EVERIFY);
    assert_int_equal(lr_store_staging_verify_chunk(fd, 0, LR_STORE_CHUNK_MAX + 1, &h1, &err),
                     LR_ETOOBIG);
    close(fd);
    /* Reopen at a smaller size keeps what is below it. */
    assert_int_equal(lr_store_staging_open(f->st, &k, CH, &fd, &resumed, &err), 0);
    assert_int_equal(lr_store_staging_verify_chunk(fd, 0, CH, &h1, &err), 0);
    close(fd);
    assert_int_equal(lr_store_staging_discard(f->st, &k, &err), 0);
    assert_int_equal(lr_store_staging_discard(f->st, &k, &err), 0);
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 0);
}

/* Zeros are punched as holes, also over data a resumed file held there. */
static void test_staging_sparse(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_hash k, hz, hd;
    key_of("sparse", &k);
    enum { CH = 1 << 20, N = 16 };
    static char zeros[CH], data[CH];
    memset(data, 'd', CH);
    lr_sha256(zeros, CH, &hz);
    lr_sha256(data, CH, &hd);
    int fd;
    assert_int_equal(lr_store_staging_open(f->st, &k, (uint64_t)N * CH, &fd, NULL, &err), 0);
    /* A resumed file may hold other data where zeros go now. */
    assert_int_equal(lr_store_staging_write(fd, 3 * CH, data, CH, &err), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(
            lr_store_staging_write(fd, (uint64_t)i * CH, i == 5 ? data : zeros, CH, &err), 0);
    assert_int_equal(lr_store_staging_verify_chunk(fd, 3 * CH, CH, &hz, &err), 0);
    assert_int_equal(lr_store_staging_verify_chunk(fd, 5 * CH, CH, &hd, &err), 0);
    assert_int_equal(lr_store_staging_verify_chunk(fd, 15 * CH, CH, &hz, &err), 0);
    /* Short zero runs are written; a run of zeros not on a block edge reads back right. */
    assert_int_equal(lr_store_staging_write(fd, 7 * CH + 100, zeros, 10, &err), 0);
    assert_int_equal(lr_store_staging_write(fd, 5 * CH + 1000, zeros, 9000, &err), 0);
    char back[9000];
    assert_int_equal(pread(fd, back, sizeof(back), 5 * CH + 1000), (ssize_t)sizeof(back));
    assert_true(back[0] == 0 && memcmp(back, back + 1, sizeof(back) - 1) == 0);
    assert_int_equal(pread(fd, back, 1000, 5 * CH), 1000);
    assert_true(back[0] == 'd' && back[999] == 'd');
    assert_int_equal(pread(fd, back, 1, 5 * CH + 10000), 1);
    assert_true(back[0] == 'd');
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    /* One megabyte of data and a few blocks, not sixteen (tmpfs and ext4 both punch). */
    assert_true((uint64_t)sb.st_blocks * 512 < 2u * CH);
    close(fd);
    assert_int_equal(lr_store_staging_discard(f->st, &k, &err), 0);
}

static void test_staging_hostile(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_hash k;
    key_of("hostile", &k);
    int fd;
    /* hostile case 27: impossible sizes refused before anything is created. */
    assert_int_equal(lr_store_staging_open(f->st, &k, UINT64_C(1) << 63, &fd, NULL, &err),
                     LR_ETOOBIG);
    assert_int_equal(fd, -1);
    assert_int_equal(lr_store_staging_open(f->st, &k, UINT64_C(1) << 60, &fd, NULL, &err), -ENOSPC);
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 0);
    /* A symlink planted under the staging name is removed, not written through. */
    char hex[LR_HASH_HEX_LEN + 1], sp[600];
    lr_hash_hex(&k, hex);
    snprintf(sp, sizeof(sp), "%s/%s", P(f, ".landropic/tmp"), hex);
    put_file(P(f, "../outside/t"), "outside");
    char tgt[300];
    snprintf(tgt, sizeof(tgt), "%s/t", f->out);
    assert_int_equal(symlink(tgt, sp), 0);
    bool resumed = true;
    assert_int_equal(lr_store_staging_open(f->st, &k, 100, &fd, &resumed, &err), 0);
    assert_false(resumed);
    assert_int_equal(lr_store_staging_write(fd, 0, "zzz", 3, &err), 0);
    close(fd);
    assert_string_equal(content(tgt), "outside");
    /* A hard link to a user's file likewise. */
    unlink(sp);
    put_file(P(f, "user"), "user data");
    assert_int_equal(link(P(f, "user"), sp), 0);
    assert_int_equal(lr_store_staging_open(f->st, &k, 100, &fd, &resumed, &err), 0);
    assert_false(resumed);
    assert_int_equal(lr_store_staging_write(fd, 0, "zzz", 3, &err), 0);
    close(fd);
    assert_string_equal(content(P(f, "user")), "user data");
    /* A 100 GiB sparse staging file costs no space. */
    struct lr_hash k2;
    key_of("sparse", &k2);
    assert_int_equal(lr_store_staging_open(f->st, &k2, UINT64_C(100) << 30, &fd, NULL, &err), 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal((uint64_t)sb.st_size, UINT64_C(100) << 30);
    assert_true(sb.st_blocks < 64);
    close(fd);
}

static void test_staging_gc(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    close(stage(f, "g1", "one"));
    close(stage(f, "g2", "two"));
    uint64_t n = 99;
    assert_int_equal(lr_store_staging_gc(f->st, 3600, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 2);
    usleep(10000);
    assert_int_equal(lr_store_staging_gc(f->st, 0, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 0);
}

static void test_staging_sweep_keeps_what_runs(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    close(stage(f, "run", "data of a transfer still running"));
    close(stage(f, "old", "data of one nobody resumes"));
    close(stage(f, "spare", "LRSPARE1")); /* spare-sized: not worth a sweep */
    put_file(P(f, ".landropic/tmp/journal-1"), "a commit batch's journal: not ours to sweep");
    struct lr_hash keep[2];
    key_of("run", &keep[1]);
    lr_store_sidecar_key((const uint8_t *)"a/path", 6, &keep[0]);
    char side[LR_HASH_HEX_LEN + 1], path[128];
    lr_hash_hex(&keep[0], side);
    snprintf(path, sizeof(path), ".landropic/tmp/%s", side);
    put_file(P(f, path), "the running transfer's sidecar");
    uint64_t n = 99;
    assert_int_equal(lr_store_staging_sweep(f->st, keep, 2, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 4);
    struct lr_hash k;
    key_of("old", &k);
    char old[LR_HASH_HEX_LEN + 1];
    lr_hash_hex(&k, old);
    snprintf(path, sizeof(path), ".landropic/tmp/%s", old);
    assert_int_equal(access(P(f, path), F_OK), -1);
    /* Nothing kept: all but the spare goes. */
    assert_int_equal(lr_store_staging_sweep(f->st, NULL, 0, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 2);
    uint64_t avail = 0, total = 0, block = 0;
    assert_int_equal(lr_store_free_space(f->st, &avail, &total, &block, &err), 0);
    assert_true(total > 0 && avail <= total && block > 0);
}

/* ---- reading --------------------------------------------------------------- */

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "read blocked on a FIFO\n";
    ssize_t w = write(2, m, sizeof(m) - 1);
    (void)w;
    _exit(1);
}

static void test_read_chunk(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    put_file(P(f, "data"), "0123456789abcdef");
    struct lr_hash h, hz;
    char buf[32];
    lr_sha256("456789", 6, &h);
    assert_int_equal(lr_store_read_chunk(f->st, "data", 4, 6, &h, buf, &err), 0);
    assert_memory_equal(buf, "456789", 6);
    lr_sha256("456788", 6, &hz);
    assert_int_equal(lr_store_read_chunk(f->st, "data", 4, 6, &hz, buf, &err), LR_EVERIFY);
    assert_non_null(strstr(err.msg, "data"));
    assert_int_equal(lr_store_read_chunk(f->st, "data", 12, 6, &h, buf, &err), LR_EVERIFY);
    assert_int_equal(lr_store_read_chunk(f->st, "data", 0, LR_STORE_CHUNK_MAX + 1, &h, buf, &err),
                     LR_ETOOBIG);
    assert_int_equal(lr_store_read_chunk(f->st, "nope", 0, 6, &h, buf, &err), -ENOENT);
    /* hostile case 14: a FIFO is never opened for reading, so never blocks. */
    assert_int_equal(mkfifo(P(f, "fifo"), 0644), 0);
    signal(SIGALRM, on_alarm);
    alarm(10);
    assert_int_equal(lr_store_read_chunk(f->st, "fifo", 0, 6, &h, buf, &err), LR_ECHANGED);
    int fd;
    assert_int_equal(lr_store_open_read(f->st, "fifo", &fd, NULL, &err), LR_ECHANGED);
    assert_int_equal(fd, -1);
    alarm(0);
    /* A device node (we are root in CI; skip the mknod if not). */
    if (mknod(P(f, "null"), S_IFCHR | 0666, makedev(1, 3)) == 0)
        assert_int_equal(lr_store_read_chunk(f->st, "null", 0, 6, &h, buf, &err), LR_ECHANGED);
    /* A symlink to a readable file. */
    assert_int_equal(symlink("data", P(f, "ln")), 0);
    assert_int_equal(lr_store_read_chunk(f->st, "ln", 4, 6, &h, buf, &err), -ELOOP);
    struct lr_store_info info;
    assert_int_equal(lr_store_open_read(f->st, "data", &fd, &info, &err), 0);
    assert_int_equal(info.size, 16);
    assert_int_equal(lr_store_read_chunk_fd(fd, 4, 6, &h, buf, &err), 0);
    /* A matching weak check is enough (no SHA-256: hz is wrong here); a
     * stale one falls back to the SHA-256 and never refuses good bytes;
     * changed bytes fail both. */
    uint64_t w = lr_weak64("456789", 6);
    bool by_weak = false;
    assert_int_equal(lr_store_read_chunk_named(fd, "data", 4, 6, &hz, w, &by_weak, buf, &err), 0);
    assert_memory_equal(buf, "456789", 6);
    assert_true(by_weak);
    assert_int_equal(lr_store_read_chunk_named(fd, "data", 4, 6, &h, w ^ 1, &by_weak, buf, &err),
                     0);
    assert_false(by_weak);
    assert_int_equal(lr_store_read_chunk_named(fd, "data", 4, 6, &h, 0, &by_weak, buf, &err), 0);
    assert_false(by_weak);
    memset(&err, 0, sizeof(err));
    assert_int_equal(lr_store_read_chunk_named(fd, "data", 4, 6, &hz, w ^ 1, NULL, buf, &err),
                     LR_EVERIFY);
    assert_non_null(strstr(err.msg, "data"));
    assert_int_equal(lr_store_read_chunk_named(fd, "data", 5, 6, &h, w, &by_weak, buf, &err),
                     LR_EVERIFY);
    assert_false(by_weak);
    close(fd);
}

/* ---- long names, deep paths --------------------------------------------- */

static void test_long_names(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    char leaf[256], rel[300];
    memset(leaf, 'n', 255);
    leaf[255] = '\0';
    /* A multi-byte character right where the archive name is cut. */
    memcpy(leaf + 200, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 10);
    snprintf(rel, sizeof(rel), "dir/%s", leaf);
    assert_int_equal(commit(f, rel, "first", &ABSENT, LR_STORE_MKPARENTS, &err), 0);
    assert_string_equal(content(P(f, rel)), "first");
    struct lr_store_expect e = expect_path(f, rel);
    assert_int_equal(commit(f, rel, "second", &e, 0, &err), 0);
    e = expect_path(f, rel);
    assert_int_equal(lr_store_delete(f->st, NULL, rel, &e, &err), 0);
    /* Both versions kept, under names that fit, with the hash tag. */
    DIR *d = opendir(P(f, ".landropic/versions/dir"));
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        size_t l = strlen(de->d_name);
        assert_true(l <= NAME_MAX);
        assert_memory_equal(de->d_name, leaf, 150);
        n++;
    }
    closedir(d);
    assert_int_equal(n, 2);
}

/* Components of 200 bytes, nested past PATH_MAX. */
static void deep_path(char *out, size_t cap, int depth, const char *leaf)
{
    size_t o = 0;
    for (int i = 0; i < depth; i++) {
        assert_true(o + 202 < cap);
        memset(out + o, 'a' + (i % 26), 200);
        o += 200;
        out[o++] = '/';
    }
    size_t l = strlen(leaf);
    assert_true(o + l + 1 < cap);
    memcpy(out + o, leaf, l + 1);
}

static void check_deep(struct fx *f)
{
    struct lr_err err = {0};
    static char rel[16384];
    deep_path(rel, sizeof(rel), 30, "leaf.txt"); /* about 6 KiB */
    assert_true(strlen(rel) > PATH_MAX);
    struct lr_hash k;
    key_of(rel, &k);
    int fd = stage(f, "deep", "deep data");
    key_of("deep", &k);
    assert_int_equal(lr_store_commit_file(f->st, NULL, &k, fd, rel, 0600, 0, &ABSENT,
                                          LR_STORE_MKPARENTS, NULL, &err),
                     0);
    close(fd);
    struct lr_store_info info;
    assert_int_equal(lr_store_stat(f->st, rel, &info, &err), 0);
    assert_int_equal(info.size, 9);
    struct lr_hash h;
    char buf[16];
    lr_sha256("deep data", 9, &h);
    assert_int_equal(lr_store_read_chunk(f->st, rel, 0, 9, &h, buf, &err), 0);
    /* Check through our own *at() walk that it is really there. */
    int dfd = open(f->root, O_RDONLY | O_DIRECTORY);
    char comp[201];
    for (int i = 0; i < 30; i++) {
        memcpy(comp, rel + (size_t)i * 201, 200);
        comp[200] = '\0';
        int nfd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        assert_true(nfd >= 0);
        close(dfd);
        dfd = nfd;
    }
    int ffd = openat(dfd, "leaf.txt", O_RDONLY | O_NOFOLLOW);
    assert_true(ffd >= 0);
    assert_int_equal(read(ffd, buf, sizeof(buf)), 9);
    close(ffd);
    /* A symlink deep inside is still refused. */
    assert_int_equal(symlinkat(f->out, dfd, "lnk"), 0);
    close(dfd);
    static char rel2[16384];
    snprintf(rel2, sizeof(rel2), "%.*slnk/x", (int)(strlen(rel) - strlen("leaf.txt")), rel);
    assert_int_equal(commit(f, rel2, "evil", &ABSENT, LR_STORE_MKPARENTS, &err), -ELOOP);
    assert_int_equal(commit(f, rel2, "evil", &ABSENT, 0, &err), -ELOOP);
    assert_int_equal(count_entries(f->out), 0);
    struct lr_store_expect e = expect_of(&info);
    assert_int_equal(lr_store_delete(f->st, NULL, rel, &e, &err), 0);
    assert_int_equal(lr_store_stat(f->st, rel, &info, &err), -ENOENT);
}

static void test_deep_paths(void **state)
{
    check_deep(*state);
}

static void test_deep_paths_walk(void **state)
{
    lr_store_test_force_walk(true);
    check_deep(*state);
}

/* ---- race: parent flipped to a symlink during apply (hostile case 12) ---- */

struct flipper {
    struct fx *f;
    atomic_bool stop;
    unsigned long flips;
};

static void *flip(void *arg)
{
    struct flipper *fl = arg;
    char d[300], real[300];
    snprintf(d, sizeof(d), "%s/d", fl->f->root);
    snprintf(real, sizeof(real), "%s/d.real", fl->f->root);
    while (!atomic_load(&fl->stop)) {
        if (rename(d, real) == 0) {
            if (symlink(fl->f->out, d) == 0) {
                sched_yield();
                unlink(d);
            }
            rename(real, d);
        }
        fl->flips++;
    }
    return NULL;
}

static void race(struct fx *f)
{
    struct lr_err err = {0};
    assert_int_equal(mkdir(P(f, "d"), 0755), 0);
    put_file(P(f, "d/victim"), "v");
    /* Sentinels outside under the names the loop uses: never written, chmod'ed or deleted. */
    char sp[300];
    for (int j = 0; j < 200; j++) {
        snprintf(sp, sizeof(sp), "%s/f%d", f->out, j);
        put_file(sp, "sentinel");
    }
    snprintf(sp, sizeof(sp), "%s/victim", f->out);
    put_file(sp, "sentinel");
    assert_int_equal(chmod(sp, 0644), 0);
    struct flipper fl = {.f = f};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, flip, &fl), 0);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned ok = 0, refused = 0, i = 0;
    long elapsed = 0;
    char rel[64];
    do {
        snprintf(rel, sizeof(rel), "d/f%u", i);
        int rc = commit(f, rel, "payload", &ABSENT, LR_STORE_MKPARENTS, &err);
        rc == 0 ? ok++ : refused++;
        snprintf(rel, sizeof(rel), "d/sub%u/g", i);
        rc = commit(f, rel, "payload", &ABSENT, LR_STORE_MKPARENTS, &err);
        rc == 0 ? ok++ : refused++;
        snprintf(rel, sizeof(rel), "d/l%u", i);
        lr_store_symlink(f->st, NULL, rel, "/etc/passwd", 0, &ABSENT, 0, NULL, &err);
        snprintf(rel, sizeof(rel), "d/m%u", i);
        lr_store_mkdir(f->st, NULL, rel, 0777, 0, NULL, &err);
        snprintf(rel, sizeof(rel), "d/f%u", i);
        struct lr_store_info di;
        if (lr_store_stat(f->st, rel, &di, &err) == 0) {
            struct lr_store_expect de = expect_of(&di);
            lr_store_delete(f->st, NULL, rel, &de, &err);
        }
        struct lr_store_expect e = {.exists = true, .type = LR_FT_FILE, .size = 1};
        struct lr_store_info info;
        if (lr_store_stat(f->st, "d/victim", &info, &err) == 0) {
            e = expect_of(&info);
            lr_store_set_meta(f->st, NULL, "d/victim", 0600, 7, &e, NULL, &err);
        }
        i++;
        clock_gettime(CLOCK_MONOTONIC, &now);
        elapsed = (now.tv_sec - t0.tv_sec) * 1000000000L + (now.tv_nsec - t0.tv_nsec);
        /* One second of racing; longer (up to ten) until some operation got
         * through: the flipper is busy enough that a whole second without a
         * success happened about once in 40 runs. */
    } while ((elapsed < 1000000000L || (ok == 0 && elapsed < 10000000000L)) && i < 100000);
    atomic_store(&fl.stop, true);
    pthread_join(t, NULL);
    /* Zero writes outside; every success landed inside the root. */
    assert_int_equal(count_entries(f->out), 201);
    for (int j = 0; j < 200; j++) {
        snprintf(sp, sizeof(sp), "%s/f%d", f->out, j);
        assert_string_equal(content(sp), "sentinel");
    }
    snprintf(sp, sizeof(sp), "%s/victim", f->out);
    struct stat sb;
    assert_int_equal(stat(sp, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0644);
    assert_int_equal(sb.st_mtim.tv_sec > 7, 1);
    assert_string_equal(content(sp), "sentinel");
    assert_true(ok > 0);
    assert_true(fl.flips > 10);
    print_message("race: %u ops ok, %u refused, %lu flips\n", ok, refused, fl.flips);
}

static void test_race_flip(void **state)
{
    race(*state);
}

static void test_race_flip_walk(void **state)
{
    lr_store_test_force_walk(true);
    race(*state);
}

/* ---- batches ---------------------------------------------------------------- */

static void test_batch(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    assert_int_equal(mkdir(P(f, "x"), 0755), 0);
    assert_int_equal(mkdir(P(f, "y"), 0755), 0);
    for (int mode = 0; mode < 2; mode++) {
        struct lr_store_batch *b =
            lr_store_batch_new(f->st, mode ? LR_STORE_BARRIER_FSYNC : LR_STORE_BARRIER_SYNCFS);
        static const char *paths[] = {"x/1", "x/2", "x/3", "y/1"};
        int fds[4];
        struct lr_hash keys[4];
        char rel[16];
        for (int i = 0; i < 4; i++) {
            snprintf(rel, sizeof(rel), "%s%d", paths[i], mode);
            key_of(rel, &keys[i]);
            fds[i] = stage(f, rel, rel);
            assert_int_equal(lr_store_batch_stage(b, fds[i], &err), 0);
        }
        assert_int_equal(lr_store_batch_barrier(b, &err), 0);
        uint64_t before = lr_store_test_dir_fsyncs();
        for (int i = 0; i < 4; i++) {
            snprintf(rel, sizeof(rel), "%s%d", paths[i], mode);
            assert_int_equal(lr_store_commit_file(f->st, b, &keys[i], fds[i], rel, 0644, 0, &ABSENT,
                                                  0, NULL, &err),
                             0);
            close(fds[i]);
        }
        /* Nothing synced per file... */
        assert_int_equal(lr_store_test_dir_fsyncs(), before);
        assert_int_equal(lr_store_batch_sync_dirs(b, &err), 0);
        /* ...then x, y and tmp once each (fsync mode), or one syncfs. */
        assert_int_equal(lr_store_test_dir_fsyncs() - before, mode ? 3 : 0);
        assert_int_equal(lr_store_batch_sync_dirs(b, &err), 0);
        assert_int_equal(lr_store_test_dir_fsyncs() - before, mode ? 3 : 0);
        for (int i = 0; i < 4; i++) {
            snprintf(rel, sizeof(rel), "%s%d", paths[i], mode);
            assert_string_equal(content(P(f, rel)), rel);
        }
        lr_store_batch_free(b);
    }
    /* Many directories: the batch syncs early instead of holding descriptors. */
    struct lr_store_batch *b = lr_store_batch_new(f->st, LR_STORE_BARRIER_FSYNC);
    uint64_t before = lr_store_test_dir_fsyncs();
    char rel[32];
    for (int i = 0; i < LR_STORE_BATCH_DIRS + 10; i++) {
        snprintf(rel, sizeof(rel), "many/%d", i);
        assert_int_equal(lr_store_mkdir(f->st, b, rel, 0755, LR_STORE_MKPARENTS, NULL, &err), 0);
    }
    assert_true(lr_store_test_dir_fsyncs() - before >= LR_STORE_BATCH_DIRS);
    assert_int_equal(lr_store_batch_sync_dirs(b, &err), 0);
    /* Each new directory and "many" (with root once): at most one fsync each. */
    assert_true(lr_store_test_dir_fsyncs() - before <= LR_STORE_BATCH_DIRS + 10 + 3);
    lr_store_batch_free(b);
    lr_store_batch_free(NULL);
}

/* Worker threads committing different paths into one shared batch. */
struct worker {
    struct fx *f;
    struct lr_store_batch *b;
    int id;
    int failures;
};

#define WORKER_FILES 150

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct lr_err err = {0};
    for (int i = 0; i < WORKER_FILES; i++) {
        char rel[64], data[64];
        snprintf(rel, sizeof(rel), "w%d/s%d/f%d", w->id, i % 7, i);
        snprintf(data, sizeof(data), "worker %d file %d", w->id, i);
        struct lr_hash k;
        key_of(rel, &k);
        int fd;
        if (lr_store_staging_open(w->f->st, &k, strlen(data), &fd, NULL, &err) ||
            lr_store_staging_write(fd, 0, data, strlen(data), &err) ||
            lr_store_batch_stage(w->b, fd, &err) ||
            lr_store_commit_file(w->f->st, w->b, &k, fd, rel, 0644, 0, &ABSENT, LR_STORE_MKPARENTS,
                                 NULL, &err))
            w->failures++;
        close(fd);
        /* Shared parents too: everyone mkdirs "common/<i%5>" (EEXIST is fine). */
        snprintf(rel, sizeof(rel), "common/%d", i % 5);
        if (lr_store_mkdir(w->f->st, w->b, rel, 0755, LR_STORE_MKPARENTS, NULL, &err))
            w->failures++;
    }
    return NULL;
}

static void test_threads_shared_batch(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    for (int mode = 0; mode < 2; mode++) {
        struct lr_store_batch *b =
            lr_store_batch_new(f->st, mode ? LR_STORE_BARRIER_FSYNC : LR_STORE_BARRIER_SYNCFS);
        struct worker w[4];
        pthread_t t[4];
        for (int i = 0; i < 4; i++) {
            w[i] = (struct worker){.f = f, .b = b, .id = mode * 4 + i};
            assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(t[i], NULL);
            assert_int_equal(w[i].failures, 0);
        }
        assert_int_equal(lr_store_batch_barrier(b, &err), 0);
        assert_int_equal(lr_store_batch_sync_dirs(b, &err), 0);
        lr_store_batch_free(b);
        for (int i = 0; i < 4; i++) {
            char rel[64], want[64];
            snprintf(rel, sizeof(rel), "w%d/s3/f10", mode * 4 + i);
            snprintf(want, sizeof(want), "worker %d file 10", mode * 4 + i);
            assert_string_equal(content(P(f, rel)), want);
        }
    }
    assert_int_equal(count_entries(P(f, ".landropic/tmp")), 0);
    assert_int_equal(count_entries(P(f, "common")), 5);
}

/* hostile case 17: EACCES as a non-root daemon (a child drops to nobody). */
static int eacces_child(struct fx *f)
{
    if (setgid(65534) || setuid(65534))
        return 10;
    struct lr_store *st;
    struct lr_err err = {0};
    if (lr_store_open(f->root, &st, &err))
        return 11;
    struct lr_hash k;
    key_of("ro", &k);
    int fd;
    if (lr_store_staging_open(st, &k, 4, &fd, NULL, &err) ||
        lr_store_staging_write(fd, 0, "new!", 4, &err))
        return 12;
    /* A new file in a directory we may not write. */
    if (lr_store_commit_file(st, NULL, &k, fd, "ro/x", 0644, 0, &ABSENT, 0, NULL, &err) != -EACCES)
        return 13;
    /* Replacing a file there (and it is not ours to hard-link). */
    struct lr_store_info info;
    if (lr_store_stat(st, "ro/file", &info, &err))
        return 14;
    struct lr_store_expect e = expect_of(&info);
    if (lr_store_commit_file(st, NULL, &k, fd, "ro/file", 0644, 0, &e, 0, NULL, &err) != -EACCES)
        return 15;
    if (lr_store_delete(st, NULL, "ro/file", &e, &err) != -EACCES)
        return 16;
    /* Not left half-done: the staging file is intact and still commits elsewhere. */
    struct lr_hash h;
    lr_sha256("new!", 4, &h);
    if (lr_store_staging_verify_chunk(fd, 0, 4, &h, &err))
        return 17;
    if (lr_store_commit_file(st, NULL, &k, fd, "ok", 0644, 0, &ABSENT, 0, NULL, &err))
        return 18;
    close(fd);
    /* A file we may not read is a per-file error when serving. */
    char buf[8];
    if (lr_store_read_chunk(st, "ro/secret", 0, 4, &h, buf, &err) != -EACCES)
        return 19;
    lr_store_close(st);
    return 0;
}

static void test_eacces_nonroot(void **state)
{
    struct fx *f = *state;
    if (geteuid() != 0) {
        print_message("skipped: needs root to drop to nobody\n");
        skip();
    }
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "chmod 0755 '%s' && chown -R 65534:65534 '%s'", f->dir, f->root);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(mkdir(P(f, "ro"), 0755), 0); /* root's */
    put_file(P(f, "ro/file"), "old");
    put_file(P(f, "ro/secret"), "shh!");
    assert_int_equal(chmod(P(f, "ro/secret"), 0600), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(eacces_child(f));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_string_equal(content(P(f, "ro/file")), "old");
    assert_int_equal(access(P(f, "ro/x"), F_OK), -1);
    assert_string_equal(content(P(f, "ok")), "new!");
    assert_int_equal(count_entries(P(f, ".landropic/versions/ro")), 0);
}

/* ---- tiny tmpfs: ENOSPC mid-write, EXDEV at a mount point (cases 17, 26) -- */

static void test_tmpfs_enospc_exdev(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    char mnt[300];
    snprintf(mnt, sizeof(mnt), "%s/small", f->dir);
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=64k") != 0) {
        print_message("skipped: cannot mount tmpfs here (%s)\n", strerror(errno));
        skip();
    }
    char p[400];
    snprintf(p, sizeof(p), "%s/.landropic", mnt);
    assert_int_equal(mkdir(p, 0700), 0);
    struct lr_store *st;
    assert_int_equal(lr_store_open(mnt, &st, &err), 0);
    snprintf(p, sizeof(p), "%s/old", mnt);
    put_file(p, "old content");
    struct lr_hash k;
    key_of("small", &k);
    int fd;
    assert_int_equal(lr_store_staging_open(st, &k, 1 << 20, &fd, NULL, &err), -ENOSPC);
    assert_int_equal(lr_store_staging_open(st, &k, 16384, &fd, NULL, &err), 0);
    /* Fill the file system, then write: ENOSPC, per file. */
    char fill[400];
    snprintf(fill, sizeof(fill), "%s/filler", mnt);
    int ff = open(fill, O_WRONLY | O_CREAT, 0600);
    assert_true(ff >= 0);
    static char blk[4096];
    memset(blk, 'z', sizeof(blk));
    while (write(ff, blk, sizeof(blk)) > 0)
        ;
    close(ff);
    static char data[16384];
    memset(data, 'd', sizeof(data));
    assert_int_equal(lr_store_staging_write(fd, 0, data, sizeof(data), &err), -ENOSPC);
    assert_string_equal(content(p), "old content");
    /* Space back: the same staging file is reusable. */
    assert_int_equal(unlink(fill), 0);
    assert_int_equal(lr_store_staging_write(fd, 0, data, sizeof(data), &err), 0);
    struct lr_store_info info;
    assert_int_equal(lr_store_stat(st, "old", &info, &err), 0);
    struct lr_store_expect e = expect_of(&info);
    assert_int_equal(lr_store_commit_file(st, NULL, &k, fd, "old", 0644, 0, &e, 0, NULL, &err), 0);
    close(fd);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_size, 16384);
    lr_store_close(st);
    assert_int_equal(umount(mnt), 0);

    /* A mount inside the root is never crossed. */
    assert_int_equal(mkdir(P(f, "mnt"), 0755), 0);
    assert_int_equal(mount("tmpfs", P(f, "mnt"), "tmpfs", 0, "size=64k"), 0);
    int rc1 = commit(f, "mnt/x", "data", &ABSENT, 0, &err);
    int rc2 = commit(f, "mnt/sub/x", "data", &ABSENT, LR_STORE_MKPARENTS, &err);
    lr_store_test_force_walk(true);
    int rc3 = commit(f, "mnt/y", "data", &ABSENT, 0, &err);
    lr_store_test_force_walk(false);
    size_t n = count_entries(P(f, "mnt"));
    assert_int_equal(umount(P(f, "mnt")), 0);
    assert_int_equal(rc1, -EXDEV);
    assert_int_equal(rc2, -EXDEV);
    assert_int_equal(rc3, -EXDEV);
    assert_int_equal(n, 0);
}

/* ---- names that fold (case, Unicode normalisation) ------------------------ */

#define NFC_CAFE "caf\xc3\xa9"  /* U+00E9 */
#define NFD_CAFE "cafe\xcc\x81" /* e + U+0301 */

/* The exact-name check itself, on a case-sensitive directory: the store
 * calls it with what a folding lookup found; here the test plays the
 * lookup by passing the other spelling's lstat. */
static void test_fold_name_check(void **state)
{
    struct fx *f = *state;
    assert_false(lr_store_folds(f->st)); /* /tmp is case-sensitive */
    assert_int_equal(mkdir(P(f, "d"), 0755), 0);
    /* Enough entries that the directory takes several getdents calls. */
    for (int i = 0; i < 600; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "d/filler-%04d-with-a-longish-name", i);
        put_file(P(f, rel), "x");
    }
    put_file(P(f, "d/Foo"), "upper");
    put_file(P(f, "d/" NFD_CAFE), "nfd");
    int dfd = open(P(f, "d"), O_RDONLY | O_DIRECTORY);
    assert_true(dfd >= 0);
    struct stat foo, cafe;
    assert_int_equal(lstat(P(f, "d/Foo"), &foo), 0);
    assert_int_equal(lstat(P(f, "d/" NFD_CAFE), &cafe), 0);
    char name[NAME_MAX + 1];
    /* "foo" looked up, "Foo" found: a clash naming the entry on disk. */
    assert_int_equal(lr__store_name_check(dfd, "foo", &foo, name), LR_ECLASH);
    assert_string_equal(name, "Foo");
    assert_int_equal(lr__store_name_check(dfd, "FOO", NULL, name), LR_ECLASH);
    assert_string_equal(name, "Foo"); /* by ASCII case when the inode is unknown */
    assert_int_equal(lr__store_name_check(dfd, NFC_CAFE, &cafe, name), LR_ECLASH);
    assert_string_equal(name, NFD_CAFE); /* by inode: normalisation is not ASCII */
    /* The exact names are no clash. */
    assert_int_equal(lr__store_name_check(dfd, "Foo", &foo, name), 0);
    assert_string_equal(name, "");
    assert_int_equal(lr__store_name_check(dfd, NFD_CAFE, &cafe, name), 0);
    assert_int_equal(lr__store_name_check(dfd, "filler-0599-with-a-longish-name", NULL, name), 0);
    /* Found by a lookup but not identifiable in the listing: still a clash. */
    assert_int_equal(lr__store_name_check(dfd, "nothing-like-it", NULL, name), LR_ECLASH);
    assert_string_equal(name, "");
    /* The caller's directory offset is not moved by the check. */
    assert_int_equal(lseek(dfd, 0, SEEK_CUR), 0);
    close(dfd);
    struct lr_err err = {0};
    assert_int_equal(lr__store_clash_fail(&err, "d/foo/x", 2, 3, "Foo"), LR_ECLASH);
    assert_int_equal(err.code, LR_ECLASH);
    assert_non_null(strstr(err.msg, "name \"d/foo\" clashes with existing \"d/Foo\""));
    assert_non_null(strstr(err.msg, "ignores case or Unicode normalisation"));
    assert_int_equal(lr__store_clash_fail(&err, "a\nb", 0, 3, ""), LR_ECLASH);
    assert_non_null(strstr(err.msg, "a\\x0ab")); /* escaped */
    assert_non_null(strstr(err.msg, "another spelling"));
    /* On a case-sensitive directory nothing clashes. */
    size_t pl;
    char *ex;
    assert_int_equal(lr_store_find_clash(f->st, "d/foo", &pl, &ex, &err), LR_ENOTFOUND);
    assert_int_equal(lr_store_find_clash(f->st, "d/Foo", &pl, &ex, &err), LR_ENOTFOUND);
    assert_null(ex);
    assert_int_equal(lr_store_find_clash(f->st, "../x", &pl, &ex, &err), LR_EBADPATH);
    assert_int_equal(lr_store_check_clash(f->st, "d/Foo", &err), 0);
    assert_int_equal(lr_store_check_clash(f->st, "../x", &err), LR_EBADPATH);
}

/* With the folding checks forced on a case-sensitive folder, every change
 * still works: exact names never read as clashes (no false positives). */
static void test_fold_checks_no_false_clash(void **state)
{
    struct fx *f = *state;
    f->st->folds = true;
    struct lr_err err = {0};
    struct lr_store_info info;
    assert_int_equal(commit(f, "a/b/c.txt", "one", &ABSENT, LR_STORE_MKPARENTS, &err), 0);
    assert_string_equal(content(P(f, "a/b/c.txt")), "one");
    struct lr_store_expect e = expect_path(f, "a/b/c.txt");
    assert_int_equal(commit(f, "a/b/c.txt", "two", &e, 0, &err), 0);
    assert_string_equal(content(P(f, "a/b/c.txt")), "two");
    assert_int_equal(lr_store_mkdir(f->st, NULL, "a/b", 0755, 0, &info, &err), 0);
    assert_int_equal(lr_store_mkdir(f->st, NULL, "a/B", 0755, 0, &info, &err), 0);
    assert_int_equal(
        lr_store_symlink(f->st, NULL, "a/l", "b", 1700000000000000000LL, &ABSENT, 0, &info, &err),
        0);
    e = expect_path(f, "a/b/c.txt");
    assert_int_equal(
        lr_store_set_meta(f->st, NULL, "a/b/c.txt", 0600, 1600000000000000000LL, &e, &info, &err),
        0);
    e = expect_path(f, "a/b/c.txt");
    assert_int_equal(lr_store_delete(f->st, NULL, "a/b/c.txt", &e, &err), 0);
    int dfd;
    const char *leaf;
    assert_int_equal(lr_store_open_parent(f->st, "a/B/x", 0, &dfd, &leaf, &err), 0);
    close(dfd);
    /* Both spellings exist here, each is itself: a file may go into either. */
    assert_int_equal(commit(f, "a/B/x", "in B", &ABSENT, 0, &err), 0);
    assert_string_equal(content(P(f, "a/B/x")), "in B");
    assert_int_equal(access(P(f, "a/b/x"), F_OK), -1);
}

/* Path of a program next to this test binary (tools are built there). */
static bool sibling_tool(const char *name, char *out, size_t n)
{
    char self[PATH_MAX];
    ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (l <= 0)
        return false;
    self[l] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash)
        return false;
    *slash = '\0';
    snprintf(out, n, "%s/%s", self, name);
    return access(out, X_OK) == 0;
}

/* The real thing: the store on a folding file system (tests/tools/foldfs,
 * FUSE); skipped without /dev/fuse or the tool. */
static void test_fold_on_foldfs(void **state)
{
    struct fx *f = *state;
    char tool[PATH_MAX + 32], cmd[3 * PATH_MAX];
    if (access("/dev/fuse", R_OK | W_OK) != 0 || !sibling_tool("foldfs", tool, sizeof(tool))) {
        print_message("    skipped: no /dev/fuse or no foldfs next to this test\n");
        skip();
    }
    char back[256], mnt[256], root[300];
    snprintf(back, sizeof(back), "%s/back", f->dir);
    snprintf(mnt, sizeof(mnt), "%s/fold", f->dir);
    snprintf(root, sizeof(root), "%s/root", mnt);
    assert_int_equal(mkdir(back, 0755), 0);
    assert_int_equal(mkdir(mnt, 0755), 0);
    snprintf(cmd, sizeof(cmd), "'%s' '%s' '%s'", tool, back, mnt);
    if (system(cmd) != 0) {
        print_message("    skipped: foldfs could not mount\n");
        skip();
    }
    assert_int_equal(mkdir(root, 0755), 0);
    char m[400];
    snprintf(m, sizeof(m), "%s/.landropic", root);
    assert_int_equal(mkdir(m, 0700), 0);
    struct lr_store *st;
    struct lr_err err = {0};
    assert_int_equal(lr_store_open(root, &st, &err), 0);
    assert_true(lr_store_folds(st));
    /* A store for the helpers (stage/commit use f->st): swap it in. */
    struct lr_store *keep = f->st;
    f->st = st;
    char bp[600];
#define B(rel) (snprintf(bp, sizeof(bp), "%s/root/%s", back, rel), bp)

    /* Files: the second spelling is refused, the first kept intact. */
    assert_int_equal(commit(f, "Readme.txt", "first", &ABSENT, 0, &err), 0);
    assert_int_equal(commit(f, "README.txt", "second", &ABSENT, 0, &err), LR_ECLASH);
    assert_non_null(strstr(err.msg, "\"README.txt\" clashes with existing \"Readme.txt\""));
    assert_string_equal(content(B("Readme.txt")), "first");
    assert_int_equal(access(B("README.txt"), F_OK), -1);
    assert_int_equal(lr_store_symlink(st, NULL, "readme.TXT", "x", 1700000000000000000LL, &ABSENT,
                                      0, NULL, &err),
                     LR_ECLASH);
    assert_true(S_ISREG(({
        struct stat sb_;
        lstat(B("Readme.txt"), &sb_);
        sb_.st_mode;
    })));

    /* Directories: never adopted, nothing lands in the other spelling. */
    struct lr_store_info info;
    assert_int_equal(lr_store_mkdir(st, NULL, "Docs", 0755, 0, &info, &err), 0);
    assert_int_equal(commit(f, "Docs/a", "in Docs", &ABSENT, 0, &err), 0);
    assert_int_equal(lr_store_mkdir(st, NULL, "docs", 0755, 0, &info, &err), LR_ECLASH);
    assert_non_null(strstr(err.msg, "\"docs\" clashes with existing \"Docs\""));
    assert_int_equal(commit(f, "docs/b", "for docs", &ABSENT, LR_STORE_MKPARENTS, &err), LR_ECLASH);
    assert_int_equal(commit(f, "docs/b", "for docs", &ABSENT, 0, &err), LR_ECLASH);
    assert_int_equal(lr_store_mkdir(st, NULL, "DOCS/sub", 0755, LR_STORE_MKPARENTS, &info, &err),
                     LR_ECLASH);
    int dfd = -1;
    const char *leaf;
    assert_int_equal(lr_store_open_parent(st, "docs/b", 0, &dfd, &leaf, &err), LR_ECLASH);
    assert_int_equal(dfd, -1);
    assert_int_equal(count_entries(B("Docs")), 1);
    size_t pl;
    char *ex;
    assert_int_equal(lr_store_find_clash(st, "docs/b", &pl, &ex, &err), 0);
    assert_int_equal(pl, 4);
    assert_string_equal(ex, "Docs");
    free(ex);
    assert_int_equal(lr_store_find_clash(st, "Docs/A", &pl, &ex, &err), 0);
    assert_int_equal(pl, 6);
    assert_string_equal(ex, "Docs/a");
    free(ex);
    assert_int_equal(lr_store_find_clash(st, "Docs/a", &pl, &ex, &err), LR_ENOTFOUND);
    assert_int_equal(lr_store_find_clash(st, "Docs/zz", &pl, &ex, &err), LR_ENOTFOUND);
    /* The check a puller makes before fetching: the create's own message. */
    assert_int_equal(lr_store_check_clash(st, "Docs/A", &err), LR_ECLASH);
    assert_non_null(strstr(err.msg, "\"Docs/A\" clashes with existing \"Docs/a\""));
    assert_int_equal(lr_store_check_clash(st, "docs/b", &err), LR_ECLASH);
    assert_non_null(strstr(err.msg, "\"docs\" clashes with existing \"Docs\""));
    assert_int_equal(lr_store_check_clash(st, "Docs/zz", &err), 0);
    assert_int_equal(lr_store_check_clash(st, "Docs/a", &err), 0);
    /* A new directory made by MKPARENTS keeps its own spelling. */
    assert_int_equal(commit(f, "new/Deep/x", "x", &ABSENT, LR_STORE_MKPARENTS, &err), 0);
    assert_int_equal(commit(f, "new/deep/y", "y", &ABSENT, LR_STORE_MKPARENTS, &err), LR_ECLASH);
    assert_int_equal(count_entries(B("new/Deep")), 1);

    /* The checked-spelling cache forgets a directory renamed by case (through
     * a temporary name, as casefold needs): its ctime changed. */
    assert_int_equal(commit(f, "Sub/x", "x", &ABSENT, LR_STORE_MKPARENTS, &err), 0);
    assert_int_equal(commit(f, "Sub/y", "y", &ABSENT, LR_STORE_MKPARENTS, &err), 0);
    char mp[700], mq[700];
    snprintf(mp, sizeof(mp), "%s/Sub", root);
    snprintf(mq, sizeof(mq), "%s/tmp-name", root);
    assert_int_equal(rename(mp, mq), 0);
    snprintf(mp, sizeof(mp), "%s/sub", root);
    assert_int_equal(rename(mq, mp), 0);
    assert_int_equal(commit(f, "Sub/z", "z", &ABSENT, LR_STORE_MKPARENTS, &err), LR_ECLASH);
    assert_non_null(strstr(err.msg, "\"Sub\" clashes with existing \"sub\""));
    assert_int_equal(commit(f, "sub/z", "z", &ABSENT, 0, &err), 0);
    assert_int_equal(count_entries(B("sub")), 3);

    /* Unicode normalisation: NFD on disk, NFC from the peer. */
    assert_int_equal(commit(f, NFD_CAFE, "nfd", &ABSENT, 0, &err), 0);
    assert_int_equal(commit(f, NFC_CAFE, "nfc", &ABSENT, 0, &err), LR_ECLASH);
    assert_string_equal(content(B(NFD_CAFE)), "nfd");
    assert_int_equal(access(B(NFC_CAFE), F_OK), -1);

    /* A delete of "readme.txt" never removes "Readme.txt" (a case-only rename
     * not scanned yet), even with an expectation that matches it in every
     * field; nor below another spelling of a parent. */
    struct lr_store_expect e = expect_path(f, "Readme.txt");
    assert_int_equal(lr_store_delete(st, NULL, "readme.txt", &e, &err), LR_ECHANGED);
    assert_non_null(strstr(err.msg, "spelled \"Readme.txt\" on disk"));
    assert_string_equal(content(B("Readme.txt")), "first");
    struct lr_store_expect ed = expect_path(f, "Docs/a");
    assert_int_equal(lr_store_delete(st, NULL, "docs/a", &ed, &err), LR_ECHANGED);
    assert_string_equal(content(B("Docs/a")), "in Docs");
    assert_int_equal(
        lr_store_set_meta(st, NULL, "docs/a", 0600, 1600000000000000000LL, &ed, &info, &err),
        LR_ECHANGED);
    /* A replace or metadata change of that very inode goes to it, keeping the
     * name on disk: the peer's data under the user's spelling, the old data
     * archived (store.h). */
    assert_int_equal(
        lr_store_set_meta(st, NULL, "README.TXT", 0600, 1600000000000000000LL, &e, &info, &err), 0);
    e = expect_path(f, "Readme.txt");
    assert_int_equal(commit(f, "readme.txt", "replaced", &e, 0, &err), 0);
    assert_string_equal(content(B("Readme.txt")), "replaced");
    assert_int_equal(access(B("readme.txt"), F_OK), -1);
    assert_non_null(find_entry(B(".landropic/versions"), "readme.txt~"));
    /* The exact names work as usual. */
    e = expect_path(f, "Readme.txt");
    assert_int_equal(lr_store_delete(st, NULL, "Readme.txt", &e, &err), 0);
    assert_int_equal(access(B("Readme.txt"), F_OK), -1);
    assert_int_equal(commit(f, "README.txt", "second", &ABSENT, 0, &err), 0);
    assert_string_equal(content(B("README.txt")), "second");
#undef B
    f->st = keep;
    lr_store_close(st);
    snprintf(cmd, sizeof(cmd), "fusermount3 -u '%s'", mnt);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_new_and_replace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_parent_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_parent_refused_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_final_component, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hard_linked_archived_as_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_meta_and_mkdir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racing_edit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staging_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staging_sparse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staging_hostile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staging_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_staging_sweep_keeps_what_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deep_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deep_paths_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_flip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race_flip_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_shared_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eacces_nonroot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmpfs_enospc_exdev, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fold_name_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fold_checks_no_false_clash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fold_on_foldfs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
