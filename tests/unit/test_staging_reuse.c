/*
 * test_staging_reuse.c - staging sidecars against a real temporary folder:
 * round trip, the superseded-keys chain, reusing verified chunks of an
 * older version's staging file (and refusing corrupted ones), forgetting,
 * collecting orphans, the crash roll-forward's checks, hostile sidecars
 * (every truncation, bad fields, trailing bytes), and commit journals
 * (round trip, truncations, roll-forward of only what was renamed).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "hash/hash.h"
#include "store/staging_reuse.h"
#include "store/store.h"
#include "util/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CH 4096 /* chunk size used here */

struct fx {
    char dir[64];
    char root[128];
    char tmp[192];
    struct lr_store *st;
};

static int setup(void **state)
{
    lr_log_set_level(LR_LOG_ERROR);
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/lr-test-sidecar-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof(f->root), "%s/root", f->dir);
    assert_int_equal(mkdir(f->root, 0755), 0);
    char m[256];
    snprintf(m, sizeof(m), "%s/.landropic", f->root);
    assert_int_equal(mkdir(m, 0700), 0);
    struct lr_err err = {0};
    assert_int_equal(lr_store_open(f->root, &f->st, &err), 0);
    snprintf(f->tmp, sizeof(f->tmp), "%s/.landropic/tmp", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    lr_store_close(f->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static struct lr_hash key_of(int n)
{
    struct lr_hash h;
    lr_sha256(&n, sizeof(n), &h);
    return h;
}

/* n chunks of CH bytes, chunk i filled with byte seed[i]. */
static void make_chunks(const uint8_t *seed, size_t n, struct lr_chunk *c, uint8_t *data)
{
    for (size_t i = 0; i < n; i++) {
        memset(data + i * CH, seed[i], CH);
        c[i].off = i * CH;
        c[i].len = CH;
        lr_sha256(data + i * CH, CH, &c[i].hash);
    }
}

/* The staging file for key holding data (len bytes); returns its fd. */
static int stage(struct fx *f, const struct lr_hash *key, const uint8_t *data, size_t len)
{
    int fd;
    bool resumed;
    struct lr_err err = {0};
    assert_int_equal(lr_store_staging_open(f->st, key, len, &fd, &resumed, &err), 0);
    assert_int_equal(lr_store_staging_write(fd, 0, data, len, &err), 0);
    return fd;
}

static bool staged(struct fx *f, const struct lr_hash *key)
{
    char hex[LR_HASH_HEX_LEN + 1], p[300];
    lr_hash_hex(key, hex);
    snprintf(p, sizeof(p), "%s/%s", f->tmp, hex);
    return access(p, F_OK) == 0;
}

/* The one sidecar file in tmp (its full path into out); false if none.
 * Every entry of tmp is named with 64 hex digits (staging files too). */
static bool sidecar_path(struct fx *f, char *out, size_t n)
{
    DIR *d = opendir(f->tmp);
    assert_non_null(d);
    bool found = false;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        assert_int_equal(strlen(de->d_name), LR_HASH_HEX_LEN);
        char p[300], head[8] = {0};
        snprintf(p, sizeof(p), "%s/%.64s", f->tmp, de->d_name);
        FILE *fp = fopen(p, "rb");
        if (!fp)
            continue; /* a planted symlink to nowhere, a directory */
        size_t got = fread(head, 1, sizeof(head), fp);
        fclose(fp);
        if (got == sizeof(head) && memcmp(head, "LRSIDEC2", 8) == 0) {
            assert_false(found);
            snprintf(out, n, "%s", p);
            found = true;
        }
    }
    closedir(d);
    return found;
}

static uint8_t *slurp(const char *p, size_t *n)
{
    FILE *fp = fopen(p, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long l = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)l + 1);
    assert_int_equal(fread(b, 1, (size_t)l, fp), (size_t)l);
    fclose(fp);
    *n = (size_t)l;
    return b;
}

static void spit(const char *p, const uint8_t *b, size_t n)
{
    FILE *fp = fopen(p, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
}

static const uint8_t PATH[] = "dir/file.bin";
#define PLEN (sizeof(PATH) - 1)

static struct lr_store_sidecar_commit commit_of(uint64_t ino, uint64_t size)
{
    struct lr_store_sidecar_commit c = {0};
    c.rec.path = (uint8_t *)PATH;
    c.rec.path_len = PLEN;
    c.rec.type = LR_FT_FILE;
    c.rec.size = size;
    c.rec.mtime_ns = 1700000000123456789LL;
    c.rec.mode = 0640;
    c.rec.blocks_hash = key_of(99);
    assert_int_equal(lr_vv_set(&c.rec.vv, 0x1111, 7), 0);
    assert_int_equal(lr_vv_set(&c.rec.vv, 0x2222, 3), 0);
    c.staging_ino = ino;
    c.had_local = true;
    c.local_seq = 42;
    return c;
}

static void test_round_trip(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_store_sidecar sc;
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), LR_ENOTFOUND);
    uint8_t seed[3] = {1, 2, 3}, data[3 * CH];
    struct lr_chunk ch[3];
    make_chunks(seed, 3, ch, data);
    struct lr_hash k = key_of(1);
    struct lr_store_sidecar_commit cm = commit_of(12345, 3 * CH);
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k, ch, 3, NULL, &cm, &err), 0);
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), 0);
    assert_memory_equal(&sc.key, &k, sizeof(k));
    assert_int_equal(sc.nchunks, 3);
    assert_memory_equal(sc.chunks, ch, sizeof(ch));
    assert_int_equal(sc.nold, 0);
    assert_true(sc.has_commit);
    assert_int_equal(sc.commit.rec.path_len, PLEN);
    assert_string_equal((char *)sc.commit.rec.path, (char *)PATH);
    assert_int_equal(sc.commit.rec.size, 3 * CH);
    assert_true(sc.commit.rec.mtime_ns == 1700000000123456789LL);
    assert_int_equal(sc.commit.rec.mode, 0640);
    assert_memory_equal(&sc.commit.rec.blocks_hash, &cm.rec.blocks_hash, LR_HASH_LEN);
    assert_int_equal(sc.commit.rec.vv.n, 2);
    assert_int_equal(sc.commit.staging_ino, 12345);
    assert_true(sc.commit.had_local);
    assert_int_equal(sc.commit.local_seq, 42);
    lr_store_sidecar_release(&sc);
    /* Another path has no sidecar. */
    assert_int_equal(lr_store_sidecar_load(f->st, (const uint8_t *)"dir/other", 9, &sc, &err),
                     LR_ENOTFOUND);
    /* Without a commit record. */
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k, ch, 3, NULL, NULL, &err), 0);
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), 0);
    assert_false(sc.has_commit);
    lr_store_sidecar_release(&sc);
    lr_vv_release(&cm.rec.vv);
}

static void test_superseded_chain(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    uint8_t seed[1] = {9}, data[CH];
    struct lr_chunk ch[1];
    make_chunks(seed, 1, ch, data);
    struct lr_store_sidecar prev = {0};
    bool have = false;
    /* Twelve versions in a row: each remembers the ones before, newest
     * first, at most LR_STORE_SIDECAR_OLD_MAX. */
    for (int v = 1; v <= 12; v++) {
        struct lr_hash k = key_of(v);
        assert_int_equal(
            lr_store_sidecar_write(f->st, PATH, PLEN, &k, ch, 1, have ? &prev : NULL, NULL, &err),
            0);
        lr_store_sidecar_release(&prev);
        assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &prev, &err), 0);
        have = true;
        size_t want =
            (size_t)(v - 1) < LR_STORE_SIDECAR_OLD_MAX ? (size_t)(v - 1) : LR_STORE_SIDECAR_OLD_MAX;
        assert_int_equal(prev.nold, want);
        for (size_t i = 0; i < prev.nold; i++) {
            struct lr_hash o = key_of(v - 1 - (int)i);
            assert_memory_equal(&prev.old[i], &o, LR_HASH_LEN);
        }
    }
    /* The same version written again (a resume) keeps the list, never
     * naming itself as superseded. */
    struct lr_hash k12 = key_of(12);
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k12, ch, 1, &prev, NULL, &err), 0);
    struct lr_store_sidecar again;
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &again, &err), 0);
    assert_int_equal(again.nold, prev.nold);
    for (size_t i = 0; i < again.nold; i++)
        assert_true(lr_hash_cmp(&again.old[i], &k12) != 0);
    lr_store_sidecar_release(&again);
    lr_store_sidecar_release(&prev);
}

static void test_reuse_copies_verified_chunks(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    /* Old version: chunks 1 2 3 4. New version: 5 2 6 4 3 (2, 3, 4 moved). */
    uint8_t os[4] = {1, 2, 3, 4}, odata[4 * CH];
    struct lr_chunk oc[4];
    make_chunks(os, 4, oc, odata);
    uint8_t ns[5] = {5, 2, 6, 4, 3}, ndata[5 * CH];
    struct lr_chunk nc[5];
    make_chunks(ns, 5, nc, ndata);
    struct lr_hash ko = key_of(10), kn = key_of(11);
    /* Only half of the old version made it to staging: chunk 3 (offset
     * 2*CH) was never written (a hole of zeros). */
    uint8_t partial[4 * CH];
    memcpy(partial, odata, sizeof(partial));
    memset(partial + 2 * CH, 0, CH);
    int ofd = stage(f, &ko, partial, sizeof(partial));
    close(ofd);
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &ko, oc, 4, NULL, NULL, &err), 0);
    struct lr_store_sidecar prev;
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &prev, &err), 0);

    int nfd;
    bool resumed;
    assert_int_equal(lr_store_staging_open(f->st, &kn, sizeof(ndata), &nfd, &resumed, &err), 0);
    bool done[5] = {0};
    done[3] = true; /* say chunk "4" came from a local file already */
    uint8_t buf[CH];
    size_t copied = 99;
    assert_int_equal(lr_store_sidecar_reuse(f->st, &prev, &kn, nfd, nc, 5, done, buf, sizeof(buf),
                                            &copied, &err),
                     0);
    /* "2" copied; "3" is not in the old staging file (verification fails);
     * "4" was done already; "5" and "6" are new. */
    assert_int_equal(copied, 1);
    assert_false(done[0]);
    assert_true(done[1]);
    assert_false(done[2]);
    assert_true(done[3]);
    assert_false(done[4]);
    assert_int_equal(lr_store_staging_verify_chunk(nfd, nc[1].off, CH, &nc[1].hash, &err), 0);
    assert_int_equal(lr_store_staging_verify_chunk(nfd, nc[4].off, CH, &nc[4].hash, NULL),
                     LR_EVERIFY);

    /* A corrupted byte in the old staging file: that chunk is not copied. */
    char hex[LR_HASH_HEX_LEN + 1], p[300];
    lr_hash_hex(&ko, hex);
    snprintf(p, sizeof(p), "%s/%s", f->tmp, hex);
    int w = open(p, O_WRONLY);
    assert_true(w >= 0);
    assert_int_equal(pwrite(w, "X", 1, CH + 17), 1);
    close(w);
    bool done2[5] = {0};
    assert_int_equal(lr_store_sidecar_reuse(f->st, &prev, &kn, nfd, nc, 5, done2, buf, sizeof(buf),
                                            &copied, &err),
                     0);
    assert_int_equal(copied, 1); /* only "4" now */
    assert_true(done2[3]);
    assert_false(done2[1]);
    /* A scratch buffer too small for the chunks: nothing copied. */
    bool done3[5] = {0};
    assert_int_equal(
        lr_store_sidecar_reuse(f->st, &prev, &kn, nfd, nc, 5, done3, buf, CH - 1, &copied, &err),
        0);
    assert_int_equal(copied, 0);
    /* The same version: nothing to do. */
    assert_int_equal(lr_store_sidecar_reuse(f->st, &prev, &ko, nfd, nc, 5, done3, buf, sizeof(buf),
                                            &copied, &err),
                     0);
    assert_int_equal(copied, 0);
    /* The old staging file gone: nothing copied, no error. */
    assert_int_equal(lr_store_staging_discard(f->st, &ko, &err), 0);
    assert_int_equal(lr_store_sidecar_reuse(f->st, &prev, &kn, nfd, nc, 5, done3, buf, sizeof(buf),
                                            &copied, &err),
                     0);
    assert_int_equal(copied, 0);
    close(nfd);
    lr_store_sidecar_release(&prev);
}

static void test_forget_and_gc(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    uint8_t seed[1] = {7}, data[CH];
    struct lr_chunk ch[1];
    make_chunks(seed, 1, ch, data);
    struct lr_hash k1 = key_of(21), k2 = key_of(22), k3 = key_of(23);
    close(stage(f, &k1, data, CH));
    close(stage(f, &k2, data, CH));
    close(stage(f, &k3, data, CH));
    struct lr_store_sidecar_commit cm = commit_of(1, CH);
    struct lr_store_sidecar prev;
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k1, ch, 1, NULL, &cm, &err), 0);
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &prev, &err), 0);
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k2, ch, 1, &prev, &cm, &err), 0);
    lr_store_sidecar_release(&prev);
    /* k2 committed (its staging file renamed away): k1 goes, the sidecar
     * goes, an unrelated staging file stays. */
    assert_int_equal(lr_store_staging_discard(f->st, &k2, &err), 0);
    assert_int_equal(lr_store_sidecar_forget(f->st, PATH, PLEN, &k2, &err), 0);
    assert_false(staged(f, &k1));
    assert_true(staged(f, &k3));
    char p[300];
    assert_false(sidecar_path(f, p, sizeof(p)));
    /* No sidecar: fine. */
    assert_int_equal(lr_store_sidecar_forget(f->st, PATH, PLEN, &k2, &err), 0);

    /* gc: a sidecar whose staging files are all gone goes; one whose
     * version is still staged stays. */
    uint64_t removed = 9;
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k3, ch, 1, NULL, &cm, &err), 0);
    assert_int_equal(lr_store_sidecar_gc(f->st, &removed, &err), 0);
    assert_int_equal(removed, 0);
    assert_true(sidecar_path(f, p, sizeof(p)));
    /* A staging file whose content looks like a sidecar (a user's file may
     * start with anything) is never taken for one: it is not named after
     * the path it names. */
    struct lr_hash k4 = key_of(24);
    size_t sn;
    uint8_t *scb = slurp(p, &sn);
    close(stage(f, &k4, scb, sn));
    free(scb);
    assert_int_equal(lr_store_staging_discard(f->st, &k3, &err), 0);
    assert_int_equal(lr_store_sidecar_gc(f->st, &removed, &err), 0);
    assert_int_equal(removed, 1);
    assert_true(staged(f, &k4));
    /* A sidecar without a commit record is left to the staging gc. */
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k3, ch, 1, NULL, NULL, &err), 0);
    assert_int_equal(lr_store_sidecar_gc(f->st, &removed, &err), 0);
    assert_int_equal(removed, 0);
    lr_vv_release(&cm.rec.vv);
}

static size_t tmp_entries(struct fx *f)
{
    DIR *d = opendir(f->tmp);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

/*
 * Spare sidecar inodes (docs/decisions/0003): through a handle with a pool,
 * a forgotten sidecar stays as an 8-byte spare, the next sidecar takes its
 * inode over, and closing the handle with tmp/ idle removes the spares;
 * without a pool a forgotten sidecar is unlinked at once.
 */
static void test_spare_inodes(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    uint8_t seed[1] = {9}, data[CH];
    struct lr_chunk ch[1];
    make_chunks(seed, 1, ch, data);
    struct lr_hash k1 = key_of(31), k2 = key_of(32), k3 = key_of(33);
    struct lr_store_sidecar_commit cm = commit_of(1, CH);
    struct lr_store_spares *sp = lr_store_spares_new();
    struct lr_store *st = NULL;
    assert_int_equal(lr_store_open_with(f->root, sp, &st, &err), 0);

    assert_int_equal(lr_store_sidecar_write(st, PATH, PLEN, &k1, ch, 1, NULL, &cm, &err), 0);
    char p[300];
    assert_true(sidecar_path(f, p, sizeof(p)));
    struct stat s1, s2;
    assert_int_equal(stat(p, &s1), 0);
    assert_int_equal(lr_store_sidecar_forget(st, PATH, PLEN, &k1, &err), 0);
    assert_false(sidecar_path(f, p, sizeof(p)));
    assert_int_equal(tmp_entries(f), 1); /* the spare */

    /* The next sidecar is the spare's inode, rewritten whole. */
    assert_int_equal(lr_store_sidecar_write(st, PATH, PLEN, &k2, ch, 1, NULL, &cm, &err), 0);
    assert_true(sidecar_path(f, p, sizeof(p)));
    assert_int_equal(stat(p, &s2), 0);
    assert_int_equal(s2.st_ino, s1.st_ino);
    assert_int_equal(tmp_entries(f), 1);
    struct lr_store_sidecar got;
    assert_int_equal(lr_store_sidecar_load(st, PATH, PLEN, &got, &err), 0);
    assert_memory_equal(got.key.b, k2.b, LR_HASH_LEN);
    lr_store_sidecar_release(&got);

    /* A staging file keeps tmp/ busy: closing a handle keeps the spare. */
    assert_int_equal(lr_store_sidecar_forget(st, PATH, PLEN, &k2, &err), 0);
    close(stage(f, &k3, data, CH));
    struct lr_store *st2 = NULL;
    assert_int_equal(lr_store_open_with(f->root, sp, &st2, &err), 0);
    assert_int_equal(lr_store_sidecar_write(st2, PATH, PLEN, &k3, ch, 1, NULL, &cm, &err), 0);
    assert_int_equal(lr_store_sidecar_forget(st2, PATH, PLEN, &k3, &err), 0);
    assert_int_equal(tmp_entries(f), 2); /* k3's staging file and the spare */
    lr_store_close(st2);
    assert_int_equal(tmp_entries(f), 2);
    /* Idle (the staging file gone): the close removes the spares. */
    assert_int_equal(lr_store_staging_discard(st, &k3, &err), 0);
    lr_store_close(st);
    assert_int_equal(tmp_entries(f), 0);

    /* Without a pool: unlinked at once. */
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k1, ch, 1, NULL, &cm, &err), 0);
    assert_int_equal(lr_store_sidecar_forget(f->st, PATH, PLEN, &k1, &err), 0);
    assert_int_equal(tmp_entries(f), 0);
    lr_store_spares_free(sp);
    lr_vv_release(&cm.rec.vv);
}

struct applied {
    int calls;
    int ret;
    uint64_t ino;
};

static int apply_cb(void *u, const struct lr_store_sidecar *sc, const struct lr_store_info *disk)
{
    struct applied *a = u;
    a->calls++;
    a->ino = disk->ino;
    assert_true(sc->has_commit);
    assert_int_equal(disk->ino, sc->commit.staging_ino);
    return a->ret;
}

static void test_recover_only_our_committed_inode(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    uint8_t seed[2] = {3, 4}, data[2 * CH];
    struct lr_chunk ch[2];
    make_chunks(seed, 2, ch, data);
    struct lr_hash k = key_of(31);
    int fd = stage(f, &k, data, sizeof(data));
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    struct lr_store_sidecar_commit cm = commit_of((uint64_t)sb.st_ino, sizeof(data));
    struct timespec ts[2] = {{0, UTIME_OMIT},
                             {cm.rec.mtime_ns / 1000000000, cm.rec.mtime_ns % 1000000000}};
    assert_int_equal(futimens(fd, ts), 0);
    close(fd);
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k, ch, 2, NULL, &cm, &err), 0);
    struct applied a = {0};
    uint64_t n = 9;
    /* Not committed yet (staging file still there): nothing. */
    assert_int_equal(lr_store_sidecar_recover(f->st, apply_cb, &a, &n, &err), 0);
    assert_int_equal(a.calls, 0);
    assert_int_equal(n, 0);
    /* "Committed": renamed into place, as the store does. */
    char hex[LR_HASH_HEX_LEN + 1], from[300], dir[300], to[300];
    lr_hash_hex(&k, hex);
    snprintf(from, sizeof(from), "%s/%s", f->tmp, hex);
    snprintf(dir, sizeof(dir), "%s/dir", f->root);
    snprintf(to, sizeof(to), "%s/dir/file.bin", f->root);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(rename(from, to), 0);
    /* The caller refuses (say the local record changed): the sidecar stays. */
    a.ret = LR_ECHANGED;
    assert_int_equal(lr_store_sidecar_recover(f->st, apply_cb, &a, &n, &err), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(n, 0);
    char p[300];
    assert_true(sidecar_path(f, p, sizeof(p)));
    /* A different mtime (the file was touched since): not ours. */
    struct timespec t2[2] = {{0, UTIME_OMIT}, {5, 0}};
    assert_int_equal(utimensat(AT_FDCWD, to, t2, 0), 0);
    a.ret = 0;
    assert_int_equal(lr_store_sidecar_recover(f->st, apply_cb, &a, &n, &err), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(utimensat(AT_FDCWD, to, ts, 0), 0);
    /* A copy (another inode) with the same size and mtime: not ours. */
    char tmpcopy[320];
    snprintf(tmpcopy, sizeof(tmpcopy), "%s.copy", to);
    spit(tmpcopy, data, sizeof(data));
    assert_int_equal(utimensat(AT_FDCWD, tmpcopy, ts, 0), 0);
    assert_int_equal(rename(to, from), 0); /* keep ours aside (as staging: not committed) */
    assert_int_equal(rename(tmpcopy, to), 0);
    assert_int_equal(unlink(from), 0);
    assert_int_equal(lr_store_sidecar_recover(f->st, apply_cb, &a, &n, &err), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(n, 0);
    /* Ours back in place: applied, the sidecar forgotten. */
    struct stat cs;
    assert_int_equal(stat(to, &cs), 0);
    lr_vv_release(&cm.rec.vv);
    cm = commit_of((uint64_t)cs.st_ino, sizeof(data));
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k, ch, 2, NULL, &cm, &err), 0);
    assert_int_equal(lr_store_sidecar_recover(f->st, apply_cb, &a, &n, &err), 0);
    assert_int_equal(a.calls, 2);
    assert_int_equal(n, 1);
    assert_int_equal(a.ino, (uint64_t)cs.st_ino);
    assert_false(sidecar_path(f, p, sizeof(p)));
    lr_vv_release(&cm.rec.vv);
}

static void test_hostile_sidecars(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    uint8_t seed[2] = {1, 2}, data[2 * CH];
    struct lr_chunk ch[2];
    make_chunks(seed, 2, ch, data);
    struct lr_hash k = key_of(41), k0 = key_of(40);
    struct lr_store_sidecar prev = {0};
    prev.key = k0;
    struct lr_store_sidecar_commit cm = commit_of(1, sizeof(data));
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k, ch, 2, &prev, &cm, &err), 0);
    lr_vv_release(&cm.rec.vv);
    char p[300];
    assert_true(sidecar_path(f, p, sizeof(p)));
    size_t n;
    uint8_t *good = slurp(p, &n);
    struct lr_store_sidecar sc;
    /* Every truncation is refused (and the sidecar removed). */
    for (size_t cut = 0; cut < n; cut++) {
        spit(p, good, cut);
        assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), LR_EPROTO);
        assert_int_equal(access(p, F_OK), -1);
    }
    /* Trailing bytes. */
    uint8_t *longer = malloc(n + 1);
    memcpy(longer, good, n);
    longer[n] = 0;
    spit(p, longer, n + 1);
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), LR_EPROTO);
    free(longer);
    /* Field by field (offsets from the format in the header). */
    struct {
        size_t off;
        uint8_t val;
    } bad[] = {
        {0, 'X'},                /* magic */
        {8, 0xff},               /* nold huge */
        {12, 0xff},              /* nchunks huge */
        {12 + 3, 3},             /* nchunks 3: entries missing */
        {48 + 32 + 8 + 0, 0xff}, /* chunk 0 len far above the chunk maximum */
        {48 + 32 + 2 * 44, 2},   /* has_record not 0/1 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t *b = malloc(n);
        memcpy(b, good, n);
        b[bad[i].off] = bad[i].val;
        spit(p, b, n);
        assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), LR_EPROTO);
        free(b);
    }
    /* Chunk length 0. */
    uint8_t *z = malloc(n);
    memcpy(z, good, n);
    memset(z + 48 + 32 + 8, 0, 4);
    spit(p, z, n);
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), LR_EPROTO);
    /* A NUL inside the record's path. */
    memcpy(z, good, n);
    z[48 + 32 + 2 * 44 + 1 + 4 + 3] = 0;
    spit(p, z, n);
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), LR_EPROTO);
    free(z);
    /* Not a regular file. */
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), LR_EPROTO);
    rmdir(p);
    /* Intact again: loads. */
    spit(p, good, n);
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), 0);
    assert_int_equal(sc.nold, 1);
    lr_store_sidecar_release(&sc);
    /* A symlink planted as the sidecar is not followed, and a new write
     * replaces it instead of writing through it. */
    char target[320];
    snprintf(target, sizeof(target), "%s/outside", f->dir);
    spit(target, good, n);
    unlink(p);
    assert_int_equal(symlink(target, p), 0);
    assert_int_equal(lr_store_sidecar_load(f->st, PATH, PLEN, &sc, &err), -ELOOP);
    assert_int_equal(lr_store_sidecar_write(f->st, PATH, PLEN, &k0, ch, 1, NULL, NULL, &err), 0);
    size_t tn;
    uint8_t *t = slurp(target, &tn);
    assert_int_equal(tn, n);
    assert_memory_equal(t, good, n);
    free(t);
    free(good);
}

/* The journal file of tmp/, if any (its name in `name`). */
static bool journal_file(struct fx *f, char *name, size_t cap)
{
    DIR *d = opendir(f->tmp);
    assert_non_null(d);
    struct dirent *de;
    bool found = false;
    while (!found && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "journal-", 8) == 0) {
            snprintf(name, cap, "%s/%s", f->tmp, de->d_name);
            found = true;
        }
    }
    closedir(d);
    return found;
}

static void test_journal(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    uint8_t seed[2] = {7, 8}, data[2 * CH];
    struct lr_chunk ch[2];
    make_chunks(seed, 2, ch, data);
    /* Two single-chunk versions staged; the second path is "dir/file.bin". */
    struct lr_hash k1 = key_of(51), k2 = key_of(52);
    int fd1 = stage(f, &k1, data, CH), fd2 = stage(f, &k2, data + CH, CH);
    struct stat s1, s2;
    assert_int_equal(fstat(fd1, &s1), 0);
    assert_int_equal(fstat(fd2, &s2), 0);
    struct lr_store_sidecar recs[2] = {0};
    recs[0].key = k1;
    recs[0].chunks = &ch[0];
    recs[0].nchunks = 1;
    recs[0].has_commit = true;
    recs[0].commit = commit_of((uint64_t)s1.st_ino, CH);
    static const uint8_t other[] = "other.bin";
    recs[0].commit.rec.path = (uint8_t *)other;
    recs[0].commit.rec.path_len = sizeof(other) - 1;
    recs[1].key = k2;
    recs[1].chunks = &ch[1];
    recs[1].nchunks = 1;
    recs[1].has_commit = true;
    recs[1].commit = commit_of((uint64_t)s2.st_ino, CH);
    recs[1].chunks[0].off = 0;
    struct timespec ts[2] = {
        {0, UTIME_OMIT},
        {recs[0].commit.rec.mtime_ns / 1000000000, recs[0].commit.rec.mtime_ns % 1000000000}};
    assert_int_equal(futimens(fd1, ts), 0);
    assert_int_equal(futimens(fd2, ts), 0);
    close(fd1);
    close(fd2);
    assert_int_equal(lr_store_journal_write(f->st, 1, recs, 2, &err), 0);

    /* Round trip through the decoder: what was written. */
    char jp[512];
    assert_true(journal_file(f, jp, sizeof(jp)));
    size_t jn;
    uint8_t *jd = slurp(jp, &jn);
    struct lr_store_sidecar *v;
    size_t n;
    assert_int_equal(lr_store_journal_parse(jd, jn, &v, &n), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_memory_equal(&v[i].key, &recs[i].key, sizeof(v[i].key));
        assert_int_equal(v[i].nchunks, 1);
        assert_int_equal(v[i].chunks[0].off, recs[i].chunks[0].off);
        assert_int_equal(v[i].chunks[0].len, recs[i].chunks[0].len);
        assert_memory_equal(&v[i].chunks[0].hash, &recs[i].chunks[0].hash, LR_HASH_LEN);
        assert_int_equal(v[i].commit.rec.path_len, recs[i].commit.rec.path_len);
        assert_memory_equal(v[i].commit.rec.path, recs[i].commit.rec.path,
                            recs[i].commit.rec.path_len);
        assert_int_equal(v[i].commit.rec.mtime_ns, recs[i].commit.rec.mtime_ns);
        assert_int_equal(v[i].commit.staging_ino, recs[i].commit.staging_ino);
        assert_int_equal(v[i].commit.local_seq, 42);
        assert_true(v[i].commit.had_local);
        assert_true(lr_vv_equal(&v[i].commit.rec.vv, &recs[i].commit.rec.vv));
    }
    lr_store_journal_release(v, n);
    /* Every truncation and a trailing byte are refused, with nothing allocated. */
    for (size_t cut = 0; cut < jn; cut++) {
        v = (struct lr_store_sidecar *)&n;
        assert_int_equal(lr_store_journal_parse(jd, cut, &v, &n), LR_EPROTO);
        assert_null(v);
        assert_int_equal(n, 0);
    }
    uint8_t *longer = malloc(jn + 1);
    memcpy(longer, jd, jn);
    longer[jn] = 0;
    assert_int_equal(lr_store_journal_parse(longer, jn + 1, &v, &n), LR_EPROTO);
    free(longer);

    /* Only the second was renamed into place before the "crash": it alone
     * is rolled forward (the first's staging file is still there), and the
     * journal is gone afterwards. */
    char hex[LR_HASH_HEX_LEN + 1], from[300], dir[300], to[300];
    lr_hash_hex(&k2, hex);
    snprintf(from, sizeof(from), "%s/%s", f->tmp, hex);
    snprintf(dir, sizeof(dir), "%s/dir", f->root);
    snprintf(to, sizeof(to), "%s/dir/file.bin", f->root);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(rename(from, to), 0);
    struct applied a = {0};
    uint64_t applied = 9;
    assert_int_equal(lr_store_sidecar_recover(f->st, apply_cb, &a, &applied, &err), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(applied, 1);
    assert_int_equal(a.ino, (uint64_t)s2.st_ino);
    assert_false(journal_file(f, jp, sizeof(jp)));

    /* A malformed journal (torn) is removed without calling anyone. */
    spit(jp, jd, jn / 2);
    a.calls = 0;
    assert_int_equal(lr_store_sidecar_recover(f->st, apply_cb, &a, &applied, &err), 0);
    assert_int_equal(a.calls, 0);
    assert_int_equal(applied, 0);
    assert_false(journal_file(f, jp, sizeof(jp)));
    free(jd);

    /* Removed after the batch's index commit; absent is fine. */
    assert_int_equal(lr_store_journal_write(f->st, 2, recs, 1, &err), 0);
    assert_true(journal_file(f, jp, sizeof(jp)));
    lr_store_journal_remove(f->st, 2);
    assert_false(journal_file(f, jp, sizeof(jp)));
    lr_store_journal_remove(f->st, 2);
    /* A record without a commit cannot be journaled; nothing is left. */
    recs[1].has_commit = false;
    assert_int_equal(lr_store_journal_write(f->st, 3, recs, 2, &err), LR_EBADVAL);
    assert_false(journal_file(f, jp, sizeof(jp)));
    lr_vv_release(&recs[0].commit.rec.vv);
    lr_vv_release(&recs[1].commit.rec.vv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_superseded_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_copies_verified_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_and_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spare_inodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recover_only_our_committed_inode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_sidecars, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
