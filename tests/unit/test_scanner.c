/*
 * test_scanner.c - the folder scanner against real temporary trees.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "chunker/chunker.h"
#include "hash/hash.h"
#include "index/index.h"
#include "scanner/scanner.h"
#include "util/log.h"

#include <errno.h>
#include <ftw.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FOLDER "f1"
#define SHORT 0xabcdef

struct fx {
    char dir[64];
    char root[128];
    char db[128];
    struct lr_index *ix;
    struct lr_scan_opts opts;
};

static int setup(void **state)
{
    lr_log_set_level(LR_LOG_ERROR);
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/lr-test-scan-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof(f->root), "%s/root", f->dir);
    snprintf(f->db, sizeof(f->db), "%s/index.db", f->dir);
    assert_int_equal(mkdir(f->root, 0755), 0);
    char m[256];
    snprintf(m, sizeof(m), "%s/.landropic", f->root);
    assert_int_equal(mkdir(m, 0700), 0);
    struct lr_err err = {0};
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
    f->opts.short_id = SHORT;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    lr_index_close(f->ix);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static char *P(const struct fx *f, const char *rel)
{
    static char buf[4][512];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 512, "%s/%s", f->root, rel);
    return b;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t xs(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void write_file(const struct fx *f, const char *rel, size_t size, bool append)
{
    int fd = open(P(f, rel), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)(xs() >> 24);
    assert_int_equal(write(fd, buf, size), (ssize_t)size);
    free(buf);
    close(fd);
}

static void mkd(const struct fx *f, const char *rel)
{
    assert_int_equal(mkdir(P(f, rel), 0755), 0);
}

static int scan(struct fx *f, struct lr_scan_result *r)
{
    struct lr_err err = {0};
    int rc = lr_scan_folder(f->ix, FOLDER, f->root, &f->opts, r, &err);
    if (rc && rc != LR_ENOMARKER)
        fprintf(stderr, "scan: %s\n", lr_err_msg(&err, rc));
    return rc;
}

static int get(struct fx *f, const char *rel, unsigned flags, struct lr_file_rec *out)
{
    return lr_index_file_get(f->ix, FOLDER, (const uint8_t *)rel, strlen(rel), flags, out, NULL);
}

/* Oracle: chunk the whole file in memory with the chunker and hash each chunk. */
static void check_chunks(struct fx *f, const char *rel)
{
    int fd = open(P(f, rel), O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    size_t n = (size_t)st.st_size;
    uint8_t *d = malloc(n ? n : 1);
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, d + got, n - got);
        assert_true(k > 0);
        got += (size_t)k;
    }
    close(fd);
    struct lr_file_rec r;
    assert_int_equal(get(f, rel, LR_IX_CHUNKS, &r), 0);
    assert_int_equal(r.size, n);
    size_t off = 0, i = 0;
    while (off < n) {
        size_t len = lr_chunker_cut(&lr_chunker_default, d + off, n - off, true);
        assert_true(len > 0);
        assert_true(i < r.nchunks);
        assert_int_equal(r.chunks[i].off, off);
        assert_int_equal(r.chunks[i].len, len);
        struct lr_hash h;
        lr_sha256(d + off, len, &h);
        assert_memory_equal(h.b, r.chunks[i].hash.b, LR_HASH_LEN);
        assert_true(r.chunks[i].weak == lr_weak64(d + off, len)); /* kept for serving */
        off += len;
        i++;
    }
    assert_int_equal(i, r.nchunks);
    struct lr_hash bh;
    lr_index_blocks_hash(r.chunks, r.nchunks, &bh);
    assert_memory_equal(bh.b, r.blocks_hash.b, LR_HASH_LEN);
    lr_file_rec_release(&r);
    free(d);
}

static void test_first_scan_and_rescan(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    mkd(f, "a");
    mkd(f, "a/b");
    write_file(f, "empty", 0, false);
    write_file(f, "one", 1, false);
    write_file(f, "a/mid", 100000, false);
    write_file(f, "a/b/big", 3 * 1024 * 1024 + 17, false); /* many chunks, several buffers */
    write_file(f, "a.b", 20000, false);                    /* sorts between a/... and a0 */
    write_file(f, "a0", 5, false);
    uint64_t total = 0 + 1 + 100000 + 3 * 1024 * 1024 + 17 + 20000 + 5;

    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.files, 6);
    assert_int_equal(r.dirs, 2);
    assert_int_equal(r.symlinks, 0);
    assert_int_equal(r.bytes, total);
    assert_int_equal(r.added, 8);
    assert_int_equal(r.changed, 0);
    assert_int_equal(r.deleted, 0);
    assert_int_equal(r.bytes_hashed, total);
    assert_int_equal(r.skipped, 0);
    check_chunks(f, "empty");
    check_chunks(f, "one");
    check_chunks(f, "a/mid");
    check_chunks(f, "a/b/big");
    check_chunks(f, "a.b");
    struct lr_file_rec rec;
    assert_int_equal(get(f, ".landropic", 0, &rec), LR_ENOTFOUND);
    struct lr_folder_info fi;
    assert_int_equal(lr_index_folder_get(f->ix, FOLDER, &fi, NULL), 0);
    assert_int_equal(fi.max_seq, 8);
    assert_int_equal(fi.short_id, SHORT);

    /* Unchanged: nothing read, nothing written. */
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.bytes_hashed, 0);
    assert_int_equal(r.added + r.changed + r.deleted, 0);
    assert_int_equal(r.files, 6);
    assert_int_equal(r.bytes, total);
    assert_int_equal(lr_index_folder_get(f->ix, FOLDER, &fi, NULL), 0);
    assert_int_equal(fi.max_seq, 8);

    /* The default (opts NULL) uses the stored short ID. */
    struct lr_err err = {0};
    assert_int_equal(lr_scan_folder(f->ix, FOLDER, f->root, NULL, &r, &err), 0);
    assert_int_equal(r.bytes_hashed, 0);
    assert_int_equal(lr_scan_folder(f->ix, "other", f->root, NULL, &r, &err), LR_ENOTFOUND);
}

/* Pages of rel in the page cache, or -1 if that cannot be told. */
static long resident_pages(const struct fx *f, const char *rel)
{
    int fd = open(P(f, rel), O_RDONLY);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    long pg = sysconf(_SC_PAGESIZE);
    size_t n = ((size_t)st.st_size + (size_t)pg - 1) / (size_t)pg;
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    assert_true(m != MAP_FAILED);
    unsigned char *v = calloc(n, 1);
    long res = mincore(m, (size_t)st.st_size, v) == 0 ? 0 : -1;
    for (size_t i = 0; res >= 0 && i < n; i++)
        res += v[i] & 1;
    free(v);
    munmap(m, (size_t)st.st_size);
    close(fd);
    return res;
}

/* Drops rel's pages from the page cache; false if the kernel kept some. */
static bool evict(const struct fx *f, const char *rel)
{
    int fd = open(P(f, rel), O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(fsync(fd), 0);
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
    return resident_pages(f, rel) == 0;
}

/* Read-ahead asks the disk only for files the scan will read: after a
 * changed file, its unchanged siblings stay out of the page cache. */
static void test_readahead_skips_unchanged(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    char rel[32];
    mkd(f, "d");
    for (int i = 0; i < 8; i++) {
        snprintf(rel, sizeof(rel), "d/f%d", i);
        write_file(f, rel, 64 * 1024, false);
    }
    assert_int_equal(scan(f, &r), 0);
    write_file(f, "d/f0", 1000, true); /* changed: read, then the rest is looked ahead at */
    for (int i = 1; i < 8; i++) {
        snprintf(rel, sizeof(rel), "d/f%d", i);
        if (!evict(f, rel)) {
            skip(); /* this file system keeps clean pages: nothing to observe */
            return;
        }
    }
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.changed, 1);
    assert_int_equal(r.bytes_hashed, 64 * 1024 + 1000);
    for (int i = 1; i < 8; i++) {
        snprintf(rel, sizeof(rel), "d/f%d", i);
        assert_int_equal(resident_pages(f, rel), 0);
    }
}

static void test_modify_add_delete(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    mkd(f, "d");
    write_file(f, "d/x", 1000, false);
    write_file(f, "d/y", 2000, false);
    write_file(f, "keep", 300, false);
    write_file(f, "gone", 400, false);
    assert_int_equal(scan(f, &r), 0);
    struct lr_file_rec before;
    assert_int_equal(get(f, "d/x", 0, &before), 0);
    uint64_t c0 = lr_vv_get(&before.vv, SHORT);
    assert_true(c0 > 0);

    write_file(f, "d/x", 10, true); /* modify */
    write_file(f, "new", 50, false);
    assert_int_equal(unlink(P(f, "gone")), 0);
    time_t now = time(NULL);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.changed, 1);
    assert_int_equal(r.added, 1);
    assert_int_equal(r.deleted, 1);
    assert_int_equal(r.bytes_hashed, 1010 + 50);
    assert_int_equal(r.files, 4);
    assert_int_equal(r.bytes, 1010 + 2000 + 300 + 50);

    struct lr_file_rec x, g;
    assert_int_equal(get(f, "d/x", 0, &x), 0);
    assert_int_equal(x.size, 1010);
    assert_true(x.seq > before.seq);
    /* Bump rule: max(old + 1, now). */
    uint64_t c1 = lr_vv_get(&x.vv, SHORT);
    assert_true(c1 >= c0 + 1);
    assert_true(c1 >= (uint64_t)now);
    check_chunks(f, "d/x");

    /* Tombstone: deleted, keeps vv (bumped) and a new sequence. */
    assert_int_equal(get(f, "gone", LR_IX_CHUNKS, &g), 0);
    assert_true(g.deleted);
    assert_int_equal(g.nchunks, 0);
    assert_true(lr_vv_get(&g.vv, SHORT) >= c0 + 1);
    assert_true(g.seq > before.seq);
    uint64_t tseq = g.seq;
    lr_file_rec_release(&g);

    /* A tombstone is not deleted again; a whole directory goes. */
    assert_int_equal(system("true"), 0);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", P(f, "d"));
    assert_int_equal(system(cmd), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, 3); /* d, d/x, d/y */
    assert_int_equal(r.added + r.changed, 0);
    assert_int_equal(get(f, "gone", 0, &g), 0);
    assert_int_equal(g.seq, tseq);
    lr_file_rec_release(&g);
    assert_int_equal(get(f, "d/y", 0, &g), 0);
    assert_true(g.deleted);
    lr_file_rec_release(&g);

    /* Re-created path: added again, vector continues from the tombstone. */
    write_file(f, "gone", 10, false);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.added, 1);
    assert_int_equal(get(f, "gone", 0, &g), 0);
    assert_false(g.deleted);
    assert_true(lr_vv_get(&g.vv, SHORT) > c0 + 1);
    lr_file_rec_release(&g);

    /* Type change: file -> directory. */
    assert_int_equal(unlink(P(f, "keep")), 0);
    mkd(f, "keep");
    write_file(f, "keep/inner", 3, false);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.changed, 1);
    assert_int_equal(r.added, 1);
    assert_int_equal(get(f, "keep", 0, &g), 0);
    assert_int_equal(g.type, LR_FT_DIR);
    lr_file_rec_release(&g);

    /* Same content rewritten with the same mtime: no new version, stat refreshed. */
    struct lr_file_rec n0, n1;
    assert_int_equal(get(f, "new", 0, &n0), 0);
    char cp[600];
    snprintf(cp, sizeof(cp), "cp -p '%s' '%s.tmp' && mv '%s.tmp' '%s'", P(f, "new"), P(f, "new"),
             P(f, "new"), P(f, "new"));
    assert_int_equal(system(cp), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.bytes_hashed, 50);
    assert_int_equal(r.changed + r.added + r.deleted, 0);
    assert_int_equal(get(f, "new", 0, &n1), 0);
    assert_int_equal(n1.seq, n0.seq);
    assert_true(n1.inode != n0.inode);
    lr_file_rec_release(&n0);
    lr_file_rec_release(&n1);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.bytes_hashed, 0);

    lr_file_rec_release(&x);
    lr_file_rec_release(&before);
}

static void test_symlink_not_followed(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    char outside[256], cmd[600];
    snprintf(outside, sizeof(outside), "%s/outside", f->dir);
    assert_int_equal(mkdir(outside, 0755), 0);
    snprintf(cmd, sizeof(cmd), "echo secret > '%s/secret'", outside);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(symlink(outside, P(f, "link")), 0);
    assert_int_equal(symlink("../outside/secret", P(f, "flink")), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.symlinks, 2);
    assert_int_equal(r.files, 0);
    assert_int_equal(r.bytes_hashed, 0);
    struct lr_file_rec g;
    assert_int_equal(get(f, "link", 0, &g), 0);
    assert_int_equal(g.type, LR_FT_SYMLINK);
    assert_int_equal(g.target_len, strlen(outside));
    assert_string_equal((char *)g.target, outside);
    lr_file_rec_release(&g);
    assert_int_equal(get(f, "link/secret", 0, &g), LR_ENOTFOUND);
    /* Retarget: a new version. */
    assert_int_equal(unlink(P(f, "flink")), 0);
    assert_int_equal(symlink("elsewhere", P(f, "flink")), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.changed, 1);
    assert_int_equal(get(f, "flink", 0, &g), 0);
    assert_string_equal((char *)g.target, "elsewhere");
    lr_file_rec_release(&g);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.changed + r.added + r.deleted, 0);
}

static void test_fifo_skipped(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    write_file(f, "p", 10, false);
    assert_int_equal(scan(f, &r), 0);
    /* Replace a file by a FIFO (opening it for reading would block forever). */
    assert_int_equal(unlink(P(f, "p")), 0);
    assert_int_equal(mkfifo(P(f, "p"), 0644), 0);
    assert_int_equal(mkfifo(P(f, "q"), 0644), 0);
    alarm(20); /* a hang fails the test instead of stalling ctest */
    assert_int_equal(scan(f, &r), 0);
    alarm(0);
    assert_int_equal(r.skipped_special, 2);
    assert_int_equal(r.skipped, 2);
    assert_int_equal(r.deleted, 1); /* the regular file is gone */
    struct lr_file_rec g;
    assert_int_equal(get(f, "q", 0, &g), LR_ENOTFOUND);
    assert_int_equal(get(f, "p", 0, &g), 0);
    assert_true(g.deleted);
    lr_file_rec_release(&g);
}

static void assert_none_deleted(struct fx *f, size_t want_n)
{
    struct lr_file_list l;
    assert_int_equal(lr_index_list_by_path(f->ix, FOLDER, NULL, 0, 1000, 0, &l, NULL), 0);
    assert_int_equal(l.n, want_n);
    for (size_t i = 0; i < l.n; i++)
        assert_false(l.v[i].deleted);
    lr_file_list_release(&l);
}

static void test_marker_missing(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    mkd(f, "sub");
    write_file(f, "sub/a", 10, false);
    write_file(f, "b", 10, false);
    assert_int_equal(scan(f, &r), 0);
    struct lr_folder_info fi0, fi1;
    assert_int_equal(lr_index_folder_get(f->ix, FOLDER, &fi0, NULL), 0);
    /* Root emptied (as an unmounted mount point looks): refuse, record nothing. */
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'/* '%s'/.landropic", f->root, f->root);
    assert_int_equal(system(cmd), 0);
    struct lr_err err = {0};
    assert_int_equal(lr_scan_folder(f->ix, FOLDER, f->root, &f->opts, &r, &err), LR_ENOMARKER);
    assert_non_null(strstr(err.msg, f->root));
    assert_non_null(strstr(err.msg, ".landropic"));
    assert_non_null(strstr(err.msg, "is missing"));
    assert_int_equal(r.deleted, 0);
    assert_none_deleted(f, 3);
    assert_int_equal(lr_index_folder_get(f->ix, FOLDER, &fi1, NULL), 0);
    assert_int_equal(fi1.max_seq, fi0.max_seq);
    /* A marker that is a symlink to a directory does not count. */
    char m[256];
    snprintf(m, sizeof(m), "%s/elsewhere", f->dir);
    assert_int_equal(mkdir(m, 0755), 0);
    assert_int_equal(symlink(m, P(f, ".landropic")), 0);
    assert_int_equal(lr_scan_folder(f->ix, FOLDER, f->root, &f->opts, &r, &err), LR_ENOMARKER);
    assert_non_null(strstr(err.msg, "is not a directory (it is a symlink)"));
    assert_none_deleted(f, 3);
    /* Nor does a file of that name; the message says what is there. */
    assert_int_equal(unlink(P(f, ".landropic")), 0);
    write_file(f, ".landropic", 3, false);
    assert_int_equal(lr_scan_folder(f->ix, FOLDER, f->root, &f->opts, &r, &err), LR_ENOMARKER);
    assert_non_null(strstr(err.msg, "is not a directory (it is a file"));
    assert_none_deleted(f, 3);
}

/* The root replaced by a link to another tree that has a marker of its own
 * (a folder moved away and a link put in its place): refused, not scanned
 * as an emptied folder; back in place, nothing was deleted. */
static void test_root_replaced_by_symlink(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    write_file(f, "a", 10, false);
    write_file(f, "b", 10, false);
    assert_int_equal(scan(f, &r), 0);
    char away[160], other[160];
    snprintf(away, sizeof(away), "%s.away", f->root);
    snprintf(other, sizeof(other), "%s/other", f->dir);
    assert_int_equal(mkdir(other, 0755), 0);
    assert_int_equal(mkdir(P(f, "../other/.landropic"), 0755), 0);
    assert_int_equal(rename(f->root, away), 0);
    assert_int_equal(symlink(other, f->root), 0);
    struct lr_err err = {0};
    assert_int_equal(lr_scan_folder(f->ix, FOLDER, f->root, &f->opts, &r, &err), -ELOOP);
    assert_non_null(strstr(err.msg, "symbolic link"));
    assert_int_equal(r.deleted, 0);
    assert_none_deleted(f, 2);
    assert_int_equal(unlink(f->root), 0);
    assert_int_equal(rename(away, f->root), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, 0);
    assert_none_deleted(f, 2);
}

/* The marker vanishes mid-scan (hook runs while a file is read): no tombstones. */
static void rm_marker_hook(void *arg, const char *rel, int attempt)
{
    struct fx *f = arg;
    (void)attempt;
    if (strcmp(rel, "a-first") != 0)
        return;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/.landropic' '%s/z1' '%s/z2'", f->root, f->root, f->root);
    assert_int_equal(system(cmd), 0);
}

static void test_marker_removed_during_scan(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    write_file(f, "z1", 10, false);
    write_file(f, "z2", 10, false);
    assert_int_equal(scan(f, &r), 0);
    write_file(f, "a-first", 10, false);
#ifdef LR_FAILPOINTS
    f->opts.fp_after_read = rm_marker_hook;
    f->opts.fp_arg = f;
    assert_int_equal(scan(f, &r), LR_ENOMARKER);
    assert_none_deleted(f, 2);
    struct lr_file_rec g;
    assert_int_equal(get(f, "z1", 0, &g), 0);
    assert_false(g.deleted);
    lr_file_rec_release(&g);
#else
    skip();
#endif
}

static void test_ignored(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    write_file(f, "keep.txt", 10, false);
    write_file(f, "junk.tmp", 10, false);
    mkd(f, "build");
    write_file(f, "build/out.o", 10, false);
    mkd(f, "src");
    write_file(f, "src/x.tmp", 10, false);
    write_file(f, "src/x.c", 10, false);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.files, 5);
    /* Now ignore some: previously indexed entries are kept, not deleted. */
    FILE *fp = fopen(P(f, ".landropicignore"), "w");
    assert_non_null(fp);
    fputs("*.tmp\nbuild/\n", fp);
    fclose(fp);
    write_file(f, "new.tmp", 10, false);
    write_file(f, "build/new.o", 10, false);
    assert_int_equal(scan(f, &r), 0);
    /* .landropicignore (built-in rule), junk.tmp, build, new.tmp, src/x.tmp */
    assert_int_equal(r.ignored, 5);
    assert_int_equal(r.deleted, 0);
    assert_int_equal(r.added, 0);
    struct lr_file_rec g;
    assert_int_equal(get(f, ".landropicignore", 0, &g), LR_ENOTFOUND);
    assert_int_equal(get(f, "new.tmp", 0, &g), LR_ENOTFOUND);
    assert_int_equal(get(f, "build/new.o", 0, &g), LR_ENOTFOUND);
    assert_int_equal(get(f, "build/out.o", 0, &g), 0);
    assert_false(g.deleted);
    lr_file_rec_release(&g);
    /* Even after deletion on disk, ignored paths are left alone. */
    assert_int_equal(unlink(P(f, "junk.tmp")), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, 0);
    /* A broken ignore file fails the scan instead of syncing too much. */
    fp = fopen(P(f, ".landropicignore"), "w");
    fputs("[unterminated\n", fp);
    fclose(fp);
    struct lr_err err = {0};
    assert_int_equal(lr_scan_folder(f->ix, FOLDER, f->root, &f->opts, &r, &err), LR_EPATTERN);
}

static void write_text(const struct fx *f, const char *rel, const char *text)
{
    FILE *fp = fopen(P(f, rel), "w");
    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static uint64_t max_seq(struct fx *f)
{
    struct lr_folder_info fi;
    assert_int_equal(lr_index_folder_get(f->ix, FOLDER, &fi, NULL), 0);
    return fi.max_seq;
}

/* A directory gone from disk that holds an ignored record stays indexed
 * (with every directory between): a peer could never remove it, as it
 * still holds the file we leave it. Its siblings' deletions go through. */
static void test_ignored_record_keeps_its_directories(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    mkd(f, "a");
    mkd(f, "a/b");
    write_file(f, "a/b/k.log", 10, false);
    write_file(f, "a/b/x.txt", 10, false);
    mkd(f, "a/c");
    write_file(f, "a/c/y.txt", 10, false);
    mkd(f, "a-z");
    write_file(f, "a-z/z.txt", 10, false);
    assert_int_equal(scan(f, &r), 0);
    write_text(f, ".landropicignore", "*.log\n");
    const char *files[] = {"a/b/k.log", "a/b/x.txt", "a/c/y.txt", "a-z/z.txt"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        assert_int_equal(unlink(P(f, files[i])), 0);
    const char *dirs[] = {"a/b", "a/c", "a", "a-z"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        assert_int_equal(rmdir(P(f, dirs[i])), 0);
    assert_int_equal(scan(f, &r), 0);
    /* a/b/x.txt, a/c, a/c/y.txt, a-z, a-z/z.txt */
    assert_int_equal(r.deleted, 5);
    const char *live[] = {"a", "a/b", "a/b/k.log"};
    const char *gone[] = {"a/b/x.txt", "a/c", "a/c/y.txt", "a-z", "a-z/z.txt"};
    struct lr_file_rec g;
    for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
        assert_int_equal(get(f, live[i], 0, &g), 0);
        assert_false(g.deleted);
        lr_file_rec_release(&g);
    }
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        assert_int_equal(get(f, gone[i], 0, &g), 0);
        assert_true(g.deleted);
        lr_file_rec_release(&g);
    }
    /* Stable: the next scan changes nothing. */
    uint64_t seq = max_seq(f);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, 0);
    assert_int_equal(max_seq(f), seq);
    /* No longer ignored: the file and its directories are deleted. */
    assert_int_equal(unlink(P(f, ".landropicignore")), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, 3);
}

/* A directory made again under the same name and mode: no new version, but
 * its new inode is recorded (the store checks it before removing it). */
static void test_directory_made_again(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    mkd(f, "d");
    assert_int_equal(scan(f, &r), 0);
    uint64_t seq = max_seq(f);
    assert_int_equal(rename(P(f, "d"), P(f, "d.old")), 0);
    mkd(f, "d");
    assert_int_equal(rmdir(P(f, "d.old")), 0);
    struct stat st;
    assert_int_equal(stat(P(f, "d"), &st), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.changed + r.added + r.deleted, 0);
    assert_int_equal(max_seq(f), seq);
    struct lr_file_rec g;
    assert_int_equal(get(f, "d", 0, &g), 0);
    assert_int_equal(g.inode, (uint64_t)st.st_ino);
    lr_file_rec_release(&g);
}

/*
 * A directory the daemon removed to put a peer's file in its place (its
 * record's inode LR_IX_INODE_REPLACED) keeps its record when gone from disk;
 * an unmarked one is a deletion, and the peer's file arriving at the marked
 * path is recorded as usual.
 */
static void test_replaced_directory_not_deleted(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    mkd(f, "a");
    mkd(f, "d");
    mkd(f, "z");
    write_file(f, "z/f", 2, false);
    assert_int_equal(scan(f, &r), 0);
    uint64_t seq = max_seq(f);
    assert_int_equal(lr_index_file_set_stat(f->ix, FOLDER, (const uint8_t *)"d", 1,
                                            LR_IX_INODE_REPLACED, 0, NULL),
                     0);
    assert_int_equal(max_seq(f), seq); /* no new version */
    assert_int_equal(rmdir(P(f, "d")), 0);
    assert_int_equal(rmdir(P(f, "a")), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, 1); /* "a" only */
    struct lr_file_rec g;
    assert_int_equal(get(f, "d", 0, &g), 0);
    assert_false(g.deleted);
    assert_int_equal(g.type, LR_FT_DIR);
    assert_true(g.inode == LR_IX_INODE_REPLACED);
    assert_true(g.seq <= seq);
    lr_file_rec_release(&g);
    assert_int_equal(get(f, "a", 0, &g), 0);
    assert_true(g.deleted);
    lr_file_rec_release(&g);
    /* The peer's file arrives at the marked path: a change like any other. */
    write_file(f, "d", 8, false);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.changed + r.added, 1);
    assert_int_equal(get(f, "d", 0, &g), 0);
    assert_int_equal(g.type, LR_FT_FILE);
    lr_file_rec_release(&g);
    /* A directory made there again clears the mark: its absence later is a deletion. */
    assert_int_equal(unlink(P(f, "d")), 0);
    mkd(f, "e");
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(lr_index_file_set_stat(f->ix, FOLDER, (const uint8_t *)"e", 1,
                                            LR_IX_INODE_REPLACED, 0, NULL),
                     0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(get(f, "e", 0, &g), 0);
    assert_true(g.inode != LR_IX_INODE_REPLACED);
    lr_file_rec_release(&g);
    assert_int_equal(rmdir(P(f, "e")), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, 1);
}

/* A record of the ignore file as an older version (which indexed it) left it. */
static void put_old_record(struct fx *f, bool deleted)
{
    struct lr_file_rec rec = {0};
    rec.path = (uint8_t *)".landropicignore";
    rec.path_len = strlen(".landropicignore");
    rec.type = LR_FT_FILE;
    rec.deleted = deleted;
    rec.mode = 0644;
    assert_int_equal(lr_vv_set(&rec.vv, 77, 5), 0);
    assert_int_equal(lr_index_file_put(f->ix, FOLDER, &rec, NULL, NULL), 0);
    lr_vv_release(&rec.vv);
}

/*
 * The root .landropicignore is not indexed unless a `!.landropicignore`
 * line opts it in; a record of it left from before is forgotten (no
 * tombstone, no new sequence: peers are told nothing).
 */
static void test_ignore_file_itself(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    struct lr_file_rec g;
    write_text(f, ".landropicignore", "*.tmp\n");
    write_file(f, "a.txt", 10, false);
    write_file(f, "b.tmp", 10, false);
    mkd(f, "sub");
    write_text(f, "sub/.landropicignore", "only the root one is special\n");
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.added, 3); /* a.txt, sub, sub/.landropicignore */
    assert_int_equal(r.ignored, 2);
    assert_int_equal(get(f, ".landropicignore", 0, &g), LR_ENOTFOUND);
    assert_int_equal(get(f, "sub/.landropicignore", 0, &g), 0);
    lr_file_rec_release(&g);
    /* Edits of the (ignored) file record nothing. */
    uint64_t seq0 = max_seq(f);
    write_text(f, ".landropicignore", "*.tmp\n*.bak\n");
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.added + r.changed + r.deleted, 0);
    assert_int_equal(max_seq(f), seq0);

    /* Opted in: indexed like any file, and edits are versions. */
    write_text(f, ".landropicignore", "*.tmp\n!.landropicignore\n");
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.added, 1);
    assert_int_equal(r.ignored, 1);
    assert_int_equal(get(f, ".landropicignore", 0, &g), 0);
    assert_false(g.deleted);
    assert_int_equal(g.size, strlen("*.tmp\n!.landropicignore\n"));
    lr_file_rec_release(&g);

    /* Opted out again: the record goes, without a tombstone or a sequence. */
    seq0 = max_seq(f);
    write_text(f, ".landropicignore", "*.tmp\n");
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, 0);
    assert_int_equal(r.added + r.changed, 0);
    assert_int_equal(get(f, ".landropicignore", 0, &g), LR_ENOTFOUND);
    assert_int_equal(max_seq(f), seq0);

    /* A live record from an older version, the file gone from disk: forgotten too
     * (the path is not walked, so this is the end-of-walk path). */
    assert_int_equal(unlink(P(f, ".landropicignore")), 0);
    put_old_record(f, false);
    seq0 = max_seq(f);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, 0);
    assert_int_equal(r.added, 1); /* b.tmp: no rules now */
    assert_int_equal(get(f, ".landropicignore", 0, &g), LR_ENOTFOUND);
    assert_int_equal(max_seq(f), seq0 + 1);
    assert_int_equal(get(f, "b.tmp", 0, &g), 0);
    lr_file_rec_release(&g);

    /* A tombstone from an older version, the file on disk: forgotten. */
    put_old_record(f, true);
    write_text(f, ".landropicignore", "# mine\n");
    seq0 = max_seq(f);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.added + r.changed + r.deleted, 0);
    assert_int_equal(get(f, ".landropicignore", 0, &g), LR_ENOTFOUND);
    assert_int_equal(max_seq(f), seq0);
    /* ...and a tombstone with the file gone. */
    assert_int_equal(unlink(P(f, ".landropicignore")), 0);
    put_old_record(f, true);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(get(f, ".landropicignore", 0, &g), LR_ENOTFOUND);

    /* Re-included by a later rule that matches it, then excluded by a last one. */
    write_text(f, ".landropicignore", "!.landropic*\n/.landropicignore\n");
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(get(f, ".landropicignore", 0, &g), LR_ENOTFOUND);
    write_text(f, ".landropicignore", "!/.landropicignore\n");
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(get(f, ".landropicignore", 0, &g), 0);
    lr_file_rec_release(&g);
}

static void test_chunk_lookup(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    mkd(f, "m");
    write_file(f, "m/big", 2 * 1024 * 1024, false);
    assert_int_equal(scan(f, &r), 0);
    struct lr_file_rec g;
    assert_int_equal(get(f, "m/big", LR_IX_CHUNKS, &g), 0);
    assert_true(g.nchunks >= 8);
    size_t k = g.nchunks / 2;
    struct lr_chunk_loc loc;
    assert_int_equal(lr_index_chunk_find(f->ix, FOLDER, &g.chunks[k].hash, &loc, NULL), 0);
    assert_string_equal((char *)loc.path, "m/big");
    assert_int_equal(loc.off, g.chunks[k].off);
    assert_int_equal(loc.len, g.chunks[k].len);
    /* The location really holds those bytes. */
    int fd = open(P(f, "m/big"), O_RDONLY);
    uint8_t *buf = malloc(loc.len);
    assert_int_equal(pread(fd, buf, loc.len, (off_t)loc.off), (ssize_t)loc.len);
    close(fd);
    struct lr_hash h;
    lr_sha256(buf, loc.len, &h);
    assert_memory_equal(h.b, g.chunks[k].hash.b, LR_HASH_LEN);
    free(buf);
    lr_chunk_loc_release(&loc);
    lr_file_rec_release(&g);
}

static void test_many_files_batches(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    char name[64];
    const int n = LR_SCAN_BATCH * 2 + 123;
    for (int d = 0; d < 10; d++) {
        snprintf(name, sizeof(name), "dir%d", d);
        mkd(f, name);
    }
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "dir%d/file%05d", i % 10, i);
        write_file(f, name, (size_t)(i % 7), false);
    }
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.files, n);
    assert_int_equal(r.added, n + 10);
    struct lr_folder_info fi;
    assert_int_equal(lr_index_folder_get(f->ix, FOLDER, &fi, NULL), 0);
    assert_int_equal(fi.max_seq, n + 10);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.added + r.changed + r.deleted + r.bytes_hashed, 0);
    /* Delete every third file across batches. */
    for (int i = 0; i < n; i += 3) {
        snprintf(name, sizeof(name), "dir%d/file%05d", i % 10, i);
        assert_int_equal(unlink(P(f, name)), 0);
    }
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, (n + 2) / 3);
    assert_int_equal(r.files, n - (n + 2) / 3);
}

static void count_commit(void *arg)
{
    (*(int *)arg)++;
}

/* A directory renamed to a later-sorting name is walked as deletions first; they are
 * written after every new name however many commits the scan makes, so a peer gets the
 * new names (and copies their content from the old files) before the old names go. */
static void test_rename_deletions_after_additions(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    char name[64], old[64];
    const int n = LR_SCAN_BATCH * 2 + 5;
    mkd(f, "a");
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "a/f%05d", i);
        write_file(f, name, 64 + (size_t)(i % 5), false);
    }
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(rename(P(f, "a"), P(f, "b")), 0);
    int commits = 0;
    f->opts.on_commit = count_commit;
    f->opts.commit_arg = &commits;
    assert_int_equal(scan(f, &r), 0);
    f->opts.on_commit = NULL;
    assert_int_equal(r.deleted, n + 1);
    assert_true(commits >= 2); /* the case that broke: several commits in one scan */
    uint64_t max_live = 0, min_tomb = UINT64_MAX;
    for (int i = 0; i < n; i++) {
        struct lr_file_rec rec;
        snprintf(name, sizeof(name), "b/f%05d", i);
        snprintf(old, sizeof(old), "a/f%05d", i);
        assert_int_equal(get(f, name, 0, &rec), 0);
        assert_false(rec.deleted);
        max_live = rec.seq > max_live ? rec.seq : max_live;
        lr_file_rec_release(&rec);
        assert_int_equal(get(f, old, 0, &rec), 0);
        assert_true(rec.deleted);
        min_tomb = rec.seq < min_tomb ? rec.seq : min_tomb;
        lr_file_rec_release(&rec);
    }
    assert_true(max_live < min_tomb);
}

static void cancel_on_commit(void *arg)
{
    atomic_store((atomic_bool *)arg, true);
}

/* A scan canceled from outside ends at its next entry: what it committed stays, a file it
 * did not reach keeps its record (not a deletion), and the next scan completes the job. */
static void test_canceled(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    struct lr_err err = {0};
    char name[64];
    const int n = LR_SCAN_BATCH * 3;
    mkd(f, "a");
    mkd(f, "z");
    write_file(f, "z/last", 100, false);
    assert_int_equal(scan(f, &r), 0);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "a/f%05d", i);
        write_file(f, name, 10, false);
    }
    assert_int_equal(unlink(P(f, "z/last")), 0);

    atomic_bool cancel = true;
    f->opts.cancel = &cancel;
    assert_int_equal(lr_scan_folder(f->ix, FOLDER, f->root, &f->opts, &r, &err), LR_ECANCELED);
    assert_non_null(strstr(lr_err_msg(&err, LR_ECANCELED), "canceled"));
    struct lr_file_rec rec;
    snprintf(name, sizeof(name), "a/f%05d", 0);
    assert_int_equal(get(f, name, 0, &rec), LR_ENOTFOUND);

    atomic_store(&cancel, false);
    f->opts.on_commit = cancel_on_commit;
    f->opts.commit_arg = &cancel;
    assert_int_equal(lr_scan_folder(f->ix, FOLDER, f->root, &f->opts, &r, &err), LR_ECANCELED);
    f->opts.on_commit = NULL;
    f->opts.cancel = NULL;
    struct lr_folder_stats st;
    assert_int_equal(lr_index_folder_stats(f->ix, FOLDER, &st, NULL), 0);
    assert_true(st.files < (uint64_t)n + 1); /* stopped after its first commit */
    assert_int_equal(get(f, "z/last", 0, &rec), 0);
    assert_false(rec.deleted); /* not reached: no deletion */
    lr_file_rec_release(&rec);

    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.files, n);
    assert_int_equal(r.deleted, 1);
    assert_int_equal(get(f, "z/last", 0, &rec), 0);
    assert_true(rec.deleted);
    lr_file_rec_release(&rec);
}

/* Names whose per-directory order differs from plain byte order of full paths. */
static void test_collation_and_non_utf8(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    mkd(f, "a");
    write_file(f, "a/b", 1, false);
    mkd(f, "a/b.d");
    write_file(f, "a/b.d/z", 1, false);
    write_file(f, "a.b", 1, false);
    write_file(f, "a-", 1, false);
    write_file(f, "a0", 1, false);
    write_file(f, "\xff\xfe", 3, false);
    write_file(f, "caf\xe9", 3, false);
    mkd(f, "\x01");
    write_file(f, "\x01/\x7f", 2, false);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.added, 11);
    /* A wrong merge order would show up as spurious deletes + adds. */
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.added + r.changed + r.deleted + r.bytes_hashed, 0);
    struct lr_file_rec g;
    assert_int_equal(get(f, "\xff\xfe", 0, &g), 0);
    assert_int_equal(g.size, 3);
    lr_file_rec_release(&g);
    assert_int_equal(unlink(P(f, "a/b.d/z")), 0);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.deleted, 1);
    assert_int_equal(r.added + r.changed, 0);
}

struct grow_hook {
    struct fx *f;
    int every; /* modify on attempts < every */
    int calls;
};

static void grow_hook(void *arg, const char *rel, int attempt)
{
    struct grow_hook *h = arg;
    if (strcmp(rel, "hot") != 0)
        return;
    h->calls++;
    if (attempt < h->every)
        write_file(h->f, "hot", 100, true);
}

static void test_changed_during_hashing(void **state)
{
    struct fx *f = *state;
#ifdef LR_FAILPOINTS
    struct lr_scan_result r;
    write_file(f, "hot", 1000, false);
    write_file(f, "cold", 10, false);
    struct grow_hook h = {f, 100, 0};
    f->opts.fp_after_read = grow_hook;
    f->opts.fp_arg = &h;
    /* Changes on every attempt: retried, then skipped, never recorded. */
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(h.calls, 1 + LR_SCAN_RETRIES);
    assert_int_equal(r.skipped_changing, 1);
    assert_int_equal(r.added, 1);
    struct lr_file_rec g;
    assert_int_equal(get(f, "hot", 0, &g), LR_ENOTFOUND);
    /* Changes once: the retry records what is there afterwards. */
    h.every = 1;
    h.calls = 0;
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(h.calls, 2);
    assert_int_equal(r.skipped_changing, 0);
    assert_int_equal(r.added, 1);
    assert_int_equal(get(f, "hot", 0, &g), 0);
    struct stat st;
    assert_int_equal(stat(P(f, "hot"), &st), 0);
    assert_int_equal(g.size, (uint64_t)st.st_size);
    lr_file_rec_release(&g);
    f->opts.fp_after_read = NULL;
    check_chunks(f, "hot");
#else
    (void)f;
    skip();
#endif
}

/* Differential: after random edits, the live records equal a naive nftw listing. */
struct oracle {
    char **paths;
    size_t n;
    size_t rootlen;
};
static struct oracle g_or;
static size_t g_or_max;

static int or_cb(const char *fpath, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    if (ftw->level == 0)
        return 0;
    const char *rel = fpath + g_or.rootlen + 1;
    if (strcmp(rel, ".landropic") == 0 || strncmp(rel, ".landropic/", 11) == 0)
        return 0;
    g_or.paths = realloc(g_or.paths, (g_or.n + 1) * sizeof(char *));
    g_or.paths[g_or.n++] = strdup(rel);
    return 0;
}

static int cmp_path(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return lr_index_path_cmp((const uint8_t *)x, strlen(x), (const uint8_t *)y, strlen(y));
}

static void check_against_disk(struct fx *f)
{
    g_or.n = 0;
    g_or.paths = NULL;
    g_or.rootlen = strlen(f->root);
    assert_int_equal(nftw(f->root, or_cb, 16, FTW_PHYS), 0);
    qsort(g_or.paths, g_or.n, sizeof(char *), cmp_path);
    size_t k = 0;
    uint8_t last[512];
    size_t last_len = 0;
    for (;;) {
        struct lr_file_list l;
        assert_int_equal(lr_index_list_by_path(f->ix, FOLDER, last, last_len, 7, 0, &l, NULL), 0);
        for (size_t i = 0; i < l.n; i++) {
            if (l.v[i].deleted)
                continue;
            assert_true(k < g_or.n);
            assert_string_equal((char *)l.v[i].path, g_or.paths[k]);
            struct stat st;
            assert_int_equal(lstat(P(f, g_or.paths[k]), &st), 0);
            if (S_ISREG(st.st_mode))
                assert_int_equal(l.v[i].size, (uint64_t)st.st_size);
            k++;
        }
        size_t n = l.n;
        if (n) {
            last_len = l.v[n - 1].path_len;
            memcpy(last, l.v[n - 1].path, last_len);
        }
        lr_file_list_release(&l);
        if (n < 7)
            break;
    }
    assert_int_equal(k, g_or.n);
    if (g_or.n > g_or_max)
        g_or_max = g_or.n;
    for (size_t i = 0; i < g_or.n; i++)
        free(g_or.paths[i]);
    free(g_or.paths);
}

static void test_random_edits_differential(void **state)
{
    struct fx *f = *state;
    static const char *const names[] = {"a", "a.b", "a-", "a0", "b", "\xff"};
    char path[64], cmd[600];
    for (int round = 0; round < 25; round++) {
        for (int op = 0; op < 12; op++) {
            /* A random path up to 3 levels deep from a small alphabet. */
            int depth = 1 + (int)(xs() % 3);
            path[0] = 0;
            size_t len = 0;
            for (int d = 0; d < depth; d++) {
                const char *nm = names[xs() % 6];
                len += (size_t)snprintf(path + len, sizeof(path) - len, "%s%s", d ? "/" : "", nm);
            }
            struct stat st;
            int kind = (int)(xs() % 4);
            if (lstat(P(f, path), &st) == 0) {
                if (kind == 0 || S_ISDIR(st.st_mode)) {
                    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", P(f, path));
                    assert_int_equal(system(cmd), 0);
                } else {
                    write_file(f, path, (size_t)(xs() % 3000), kind == 1);
                }
                continue;
            }
            /* Create parents as directories where possible. */
            char *slash = path;
            bool ok = true;
            while ((slash = strchr(slash, '/'))) {
                *slash = 0;
                if (lstat(P(f, path), &st) != 0)
                    mkd(f, path);
                else if (!S_ISDIR(st.st_mode))
                    ok = false;
                *slash++ = '/';
                if (!ok)
                    break;
            }
            if (!ok)
                continue;
            if (kind == 3)
                mkd(f, path);
            else if (kind == 2)
                assert_int_equal(symlink("target", P(f, path)), 0);
            else
                write_file(f, path, (size_t)(xs() % 3000), false);
        }
        struct lr_scan_result r;
        assert_int_equal(scan(f, &r), 0);
        check_against_disk(f);
        assert_int_equal(scan(f, &r), 0);
        assert_int_equal(r.added + r.changed + r.deleted + r.bytes_hashed, 0);
    }
    assert_true(g_or_max >= 10); /* the edits really built a tree */
}

/* Paths longer than PATH_MAX work: the walk only uses *at() calls. */
static void test_deep_path(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    char name[201];
    memset(name, 'n', 200);
    name[200] = 0;
    int fd = open(f->root, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(mkdirat(fd, name, 0755), 0);
        int nfd = openat(fd, name, O_RDONLY | O_DIRECTORY);
        assert_true(nfd >= 0);
        close(fd);
        fd = nfd;
    }
    int ffd = openat(fd, "leaf", O_WRONLY | O_CREAT, 0644);
    assert_true(ffd >= 0);
    assert_int_equal(write(ffd, "deep", 4), 4);
    close(ffd);
    close(fd);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.files, 1);
    assert_int_equal(r.dirs, 30);
    assert_int_equal(r.bytes, 4);
    struct lr_file_list l;
    assert_int_equal(lr_index_list_by_seq(f->ix, FOLDER, 31, 10, 0, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0].path_len, 30 * 201 + 4);
    assert_true(l.v[0].path_len > 4096);
    assert_string_equal((char *)l.v[0].path + 30 * 201, "leaf");
    lr_file_list_release(&l);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.added + r.changed + r.deleted + r.bytes_hashed, 0);
}

/* A file system mounted inside the folder is not descended and its records stay. */
static void test_other_fs_not_descended(void **state)
{
    struct fx *f = *state;
    struct lr_scan_result r;
    mkd(f, "mnt");
    write_file(f, "mnt/before", 10, false);
    write_file(f, "z", 10, false);
    assert_int_equal(scan(f, &r), 0);
    /* A private mount namespace keeps the tmpfs invisible outside this process. */
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("lr-test", P(f, "mnt"), "tmpfs", 0, "size=1m") != 0) {
        skip(); /* needs CAP_SYS_ADMIN */
    }
    write_file(f, "mnt/inside", 10, false);
    assert_int_equal(scan(f, &r), 0);
    assert_int_equal(r.other_fs, 1);
    assert_int_equal(r.skipped, 1);
    assert_int_equal(r.deleted, 0);
    assert_int_equal(r.added, 0);
    struct lr_file_rec g;
    assert_int_equal(get(f, "mnt/inside", 0, &g), LR_ENOTFOUND);
    assert_int_equal(get(f, "mnt/before", 0, &g), 0);
    assert_false(g.deleted);
    lr_file_rec_release(&g);
    assert_int_equal(umount(P(f, "mnt")), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_scan_and_rescan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_modify_add_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readahead_skips_unchanged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marker_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_replaced_by_symlink, setup, teardown),
        cmocka_unit_test_setup_teardown(test_marker_removed_during_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ignored_record_keeps_its_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_made_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replaced_directory_not_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ignore_file_itself, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_files_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_deletions_after_additions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canceled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collation_and_non_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_during_hashing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_edits_differential, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deep_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_fs_not_descended, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
