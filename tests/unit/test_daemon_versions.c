/*
 * test_daemon_versions.c - the versions archive listing behind `versions`
 * and `restore` (daemon/conflicts.h): stamp parsing, order, path filters,
 * names that are not ours, symlinks never followed, the bound, "why" from
 * the audit trail, and restore itself (choice of version, the replaced
 * file archived, refusals), and pruning by retention (daemon/retention.h:
 * the newest N per file, the age rule, names that are not the archive's,
 * symlinks never followed, empty mirrors removed, failures counted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "daemon/conflicts.h"
#include "daemon/retention.h"
#include "hash/hash.h"
#include "index/index.h"
#include "util/log.h"
#include "util/str.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <signal.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
    char dir[64];
    char root[128];
    char vers[160];
};

static int setup(void **state)
{
    lr_log_set_level(LR_LOG_ERROR);
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/lr-test-dvers-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof(f->root), "%s/root", f->dir);
    assert_int_equal(mkdir(f->root, 0755), 0);
    char m[160];
    snprintf(m, sizeof(m), "%s/.landropic", f->root);
    assert_int_equal(mkdir(m, 0755), 0);
    snprintf(f->vers, sizeof(f->vers), "%s/.landropic/versions", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Create vers/rel (parents made) holding `size` bytes. */
static void put(const struct fx *f, const char *rel, size_t size)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", f->vers, rel);
    mkdir(f->vers, 0755);
    for (char *s = p + strlen(f->vers) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        mkdir(p, 0755);
        *s = '/';
    }
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    char buf[64] = {0};
    while (size) {
        size_t n = size < sizeof(buf) ? size : sizeof(buf);
        assert_int_equal(write(fd, buf, n), (ssize_t)n);
        size -= n;
    }
    close(fd);
}

static void test_no_marker_no_archive(void **state)
{
    struct fx *f = *state;
    struct daemon_version_list l;
    struct lr_err err = {0};
    /* A marker but no archive yet: an empty list. */
    assert_int_equal(daemon_versions_list(f->root, NULL, &l, &err), 0);
    assert_int_equal(l.n, 0);
    assert_false(l.truncated);
    daemon_version_list_release(&l);
    /* No marker (disk not mounted?): refused, never an empty answer. */
    char m[160];
    snprintf(m, sizeof(m), "%s/.landropic", f->root);
    assert_int_equal(rmdir(m), 0);
    assert_int_equal(daemon_versions_list(f->root, NULL, &l, &err), LR_ENOMARKER);
    assert_non_null(strstr(err.msg, f->root));
    /* The marker as a symlink to a directory elsewhere is not a marker. */
    char other[160];
    snprintf(other, sizeof(other), "%s/elsewhere", f->dir);
    assert_int_equal(mkdir(other, 0755), 0);
    assert_int_equal(symlink(other, m), 0);
    assert_int_equal(daemon_versions_list(f->root, NULL, &l, &err), LR_ENOMARKER);
}

static void test_parse_order_filters(void **state)
{
    struct fx *f = *state;
    put(f, "a.txt~20240101-000000", 3);
    put(f, "a.txt~20240101-000000-1", 4);
    put(f, "a.txt~20231231-235959", 2);
    put(f, "a.txt~20240101-000000-10", 5); /* -10 sorts after -1 and -2 by number */
    put(f, "a.txt~20240101-000000-2", 6);
    put(f, "d/e/b.bin~20240202-101010", 7);
    put(f, "d/a.txt~20240101-000000", 1); /* another a.txt, in d/ */
    /* Not ours: no stamp, bad stamps, a stamp with nothing before it. */
    put(f, "plain", 1);
    put(f, "x~2024", 1);
    put(f, "y~20240101-000000-", 1);
    put(f, "z~20240101-00000x", 1);
    put(f, "~20240101-000000", 1);
    put(f, "w~20240101-000000-12345678901", 1);
    /* The archive's cut form of an over-long leaf fills NAME_MAX (230 + 9 + 16 bytes);
     * a short name of the same shape is a user's own. */
    char cut[NAME_MAX + 1];
    memset(cut, 'l', 230);
    snprintf(cut + 230, sizeof(cut) - 230, "~0123abcd~20240101-000000");
    put(f, cut, 8);
    put(f, "m~0123abcd~20240101-000000", 9);

    struct daemon_version_list l;
    struct lr_err err = {0};
    assert_int_equal(daemon_versions_list(f->root, NULL, &l, &err), 0);
    assert_int_equal(l.n, 9);
    /* Path order, then archiving time, then -N numerically. */
    assert_string_equal((char *)l.v[0].path, "a.txt");
    assert_string_equal(l.v[0].id, "a.txt~20231231-235959");
    assert_int_equal(l.v[0].size, 2);
    assert_int_equal(l.v[0].archived_s, 1704067199);
    assert_string_equal(l.v[1].id, "a.txt~20240101-000000");
    assert_int_equal(l.v[1].archived_s, 1704067200);
    assert_int_equal(l.v[1].seq, 0);
    assert_string_equal(l.v[2].id, "a.txt~20240101-000000-1");
    assert_string_equal(l.v[3].id, "a.txt~20240101-000000-2");
    assert_string_equal(l.v[4].id, "a.txt~20240101-000000-10");
    assert_int_equal(l.v[4].seq, 10);
    assert_string_equal((char *)l.v[5].path, "d/a.txt");
    assert_string_equal((char *)l.v[6].path, "d/e/b.bin");
    assert_int_equal(l.v[6].path_len, 9);
    assert_string_equal(l.v[6].id, "d/e/b.bin~20240202-101010");
    assert_int_equal(l.v[7].path_len, 239);
    assert_memory_equal(l.v[7].path, cut, 239);
    assert_true(l.v[7].cut);
    assert_string_equal((char *)l.v[8].path, "m~0123abcd");
    assert_false(l.v[8].cut);
    assert_false(l.v[0].cut);
    daemon_version_list_release(&l);
    daemon_version_list_release(&l);

    /* A file: only its own versions, not d/a.txt's. */
    assert_int_equal(daemon_versions_list(f->root, "a.txt", &l, &err), 0);
    assert_int_equal(l.n, 5);
    for (size_t i = 0; i < l.n; i++)
        assert_string_equal((char *)l.v[i].path, "a.txt");
    daemon_version_list_release(&l);
    /* A directory: everything below it. */
    assert_int_equal(daemon_versions_list(f->root, "d", &l, &err), 0);
    assert_int_equal(l.n, 2);
    daemon_version_list_release(&l);
    assert_int_equal(daemon_versions_list(f->root, "d/e/b.bin", &l, &err), 0);
    assert_int_equal(l.n, 1);
    daemon_version_list_release(&l);
    /* Unknown paths, also through a missing directory: empty. */
    assert_int_equal(daemon_versions_list(f->root, "nope", &l, &err), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(daemon_versions_list(f->root, "no/such/dir/x", &l, &err), 0);
    assert_int_equal(l.n, 0);
    /* A "directory" that is a file in the archive is just not one. */
    assert_int_equal(daemon_versions_list(f->root, "plain/x", &l, &err), 0);
    assert_int_equal(l.n, 0);
}

static void test_symlinks_never_followed(void **state)
{
    struct fx *f = *state;
    put(f, "real~20240101-000000", 1);
    /* Outside data the archive must never show or hand to restore. */
    char out[160], p[256];
    snprintf(out, sizeof(out), "%s/outside", f->dir);
    assert_int_equal(mkdir(out, 0755), 0);
    snprintf(p, sizeof(p), "%s/secret~20240101-000000", out);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    snprintf(p, sizeof(p), "%s/linkdir", f->vers);
    assert_int_equal(symlink(out, p), 0);
    snprintf(p, sizeof(p), "%s/link~20240101-000000", f->vers);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    struct daemon_version_list l;
    struct lr_err err = {0};
    assert_int_equal(daemon_versions_list(f->root, NULL, &l, &err), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].id, "real~20240101-000000");
    daemon_version_list_release(&l);
    /* Asking for a path through the linked directory finds nothing. */
    assert_int_equal(daemon_versions_list(f->root, "linkdir/secret", &l, &err), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(daemon_versions_list(f->root, "linkdir", &l, &err), 0);
    assert_int_equal(l.n, 0);
    /* The archive directory itself as a symlink: not followed either. */
    char moved[160];
    snprintf(moved, sizeof(moved), "%s/moved", f->dir);
    assert_int_equal(rename(f->vers, moved), 0);
    assert_int_equal(symlink(moved, f->vers), 0);
    assert_true(daemon_versions_list(f->root, NULL, &l, &err) < 0);
}

static void test_bounded(void **state)
{
    struct fx *f = *state;
    char name[64];
    for (unsigned i = 0; i < DAEMON_VERSIONS_MAX + 5; i++) {
        snprintf(name, sizeof(name), "d%u/f~20240101-000000-%u", i % 7, i);
        put(f, name, 0);
    }
    struct daemon_version_list l;
    struct lr_err err = {0};
    assert_int_equal(daemon_versions_list(f->root, NULL, &l, &err), 0);
    assert_int_equal(l.n, DAEMON_VERSIONS_MAX);
    assert_true(l.truncated);
    daemon_version_list_release(&l);
}

static void test_directories_bounded(void **state)
{
    struct fx *f = *state;
    /* Empty mirrors hold no version but cost a walk each: bounded too. */
    char p[256];
    snprintf(p, sizeof(p), "%s", f->vers);
    assert_int_equal(mkdir(p, 0755), 0);
    for (unsigned i = 0; i < DAEMON_VERSIONS_MAX + 3; i++) {
        snprintf(p, sizeof(p), "%s/e%u", f->vers, i);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    struct daemon_version_list l;
    struct lr_err err = {0};
    assert_int_equal(daemon_versions_list(f->root, NULL, &l, &err), 0);
    assert_int_equal(l.n, 0);
    assert_true(l.truncated);
    daemon_version_list_release(&l);
}

/* A content conflict of `path` (borrowed) in folder "docs", a minute before 2024. */
static struct lr_conflict_rec content_conflict(const char *path, const char *resolution)
{
    struct lr_conflict_rec c = {0};
    c.time_s = 1704067200 - 60;
    c.folder = (char *)"docs";
    c.path = (uint8_t *)path;
    c.path_len = strlen(path);
    c.type = (char *)"content";
    c.detail = (char *)"content";
    c.strategy = (char *)"keep-both";
    c.resolution = (char *)resolution;
    c.winner = (char *)"remote";
    c.devices = (char *)"X";
    return c;
}

static void test_json_why(void **state)
{
    struct fx *f = *state;
    put(f, "a.txt~20240101-000000", 3);
    put(f, "b.txt~20240101-000000", 3);
    put(f, "a.txt~20240101-000001", 4);
    /* The copy's marker carries the loser's mtime: a.txt's first archived
     * version has it; the second (a plain update one second later) does not. */
    char p[512];
    snprintf(p, sizeof(p), "%s/a.txt~20240101-000000", f->vers);
    struct timespec ts[2] = {{1704067200 - 3600, 0}, {1704067200 - 3600, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    struct daemon_version_list l;
    struct lr_err err = {0};
    assert_int_equal(daemon_versions_list(f->root, NULL, &l, &err), 0);
    assert_int_equal(l.n, 3);

    char db[160];
    snprintf(db, sizeof(db), "%s/index.db", f->dir);
    struct lr_index *ix;
    assert_int_equal(lr_index_open(db, &ix, &err), 0);
    /* a.txt lost a content conflict a minute before it was archived. */
    struct lr_conflict_rec c = content_conflict("a.txt", "copy");
    c.kept_path = (uint8_t *)"a.sync-conflict-20231231-230000-ABCDEFG.txt";
    c.kept_path_len = strlen((char *)c.kept_path);
    c.archive_path = (uint8_t *)".landropic/versions/a.txt~";
    c.archive_path_len = strlen((char *)c.archive_path);
    struct lr_hash k = {{1}};
    assert_int_equal(lr_index_conflict_put(ix, &c, &k, NULL, &err), 0);
    /* b.txt's conflict was a day earlier: not why it was archived now. */
    c.path = (uint8_t *)"b.txt";
    c.time_s = 1704067200 - 86400;
    k.b[0] = 2;
    assert_int_equal(lr_index_conflict_put(ix, &c, &k, NULL, &err), 0);

    json_t *doc = daemon_versions_json("docs", &l, ix);
    json_t *arr = json_object_get(doc, "versions");
    assert_int_equal(json_array_size(arr), 3);
    json_t *a = json_array_get(arr, 0), *a2 = json_array_get(arr, 1), *b = json_array_get(arr, 2);
    assert_string_equal(json_string_value(json_object_get(a2, "id")), "a.txt~20240101-000001");
    assert_non_null(strstr(json_string_value(json_object_get(a2, "why")), "peer"));
    assert_string_equal(json_string_value(json_object_get(a, "path")), "a.txt");
    assert_string_equal(json_string_value(json_object_get(a, "id")), "a.txt~20240101-000000");
    assert_string_equal(json_string_value(json_object_get(a, "archived")), "2024-01-01T00:00:00Z");
    assert_int_equal(json_integer_value(json_object_get(a, "size")), 3);
    const char *why = json_string_value(json_object_get(a, "why"));
    assert_non_null(strstr(why, "content conflict"));
    assert_non_null(strstr(why, "a.sync-conflict-20231231-230000-ABCDEFG.txt"));
    assert_non_null(strstr(json_string_value(json_object_get(b, "why")), "peer"));
    assert_null(json_object_get(a, "why_b64")); /* UTF-8 already */
    assert_null(json_object_get(doc, "truncated"));
    json_decref(doc);
    /* A copy named with bytes that are not UTF-8: "why" has U+FFFD, and
     * why_b64 the raw bytes the CLI's human output escapes. */
    snprintf(p, sizeof(p), "%s/b.txt~20240101-000000", f->vers);
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    daemon_version_list_release(&l);
    assert_int_equal(daemon_versions_list(f->root, NULL, &l, &err), 0);
    static const char bad[] = "b\xff.sync-conflict-20231231-230000-ABCDEFG.txt";
    c.time_s = 1704067200 - 30;
    c.kept_path = (uint8_t *)bad;
    c.kept_path_len = sizeof(bad) - 1;
    k.b[0] = 3;
    assert_int_equal(lr_index_conflict_put(ix, &c, &k, NULL, &err), 0);
    doc = daemon_versions_json("docs", &l, ix);
    b = json_array_get(json_object_get(doc, "versions"), 2);
    assert_string_equal(json_string_value(json_object_get(b, "path")), "b.txt");
    assert_non_null(strstr(json_string_value(json_object_get(b, "why")),
                           "also kept as b\xef\xbf\xbd.sync-conflict"));
    const char *b64 = json_string_value(json_object_get(b, "why_b64"));
    assert_non_null(b64);
    size_t n;
    uint8_t *raw = lr_unbase64(b64, &n);
    assert_non_null(raw);
    const char *want = "lost a content conflict (content); also kept as ";
    assert_int_equal(n, strlen(want) + sizeof(bad) - 1);
    assert_memory_equal(raw, want, strlen(want));
    assert_memory_equal(raw + strlen(want), bad, sizeof(bad) - 1);
    free(raw);
    json_decref(doc);
    /* Without a database: the same list, the generic reason. */
    doc = daemon_versions_json("docs", &l, NULL);
    a = json_array_get(json_object_get(doc, "versions"), 0);
    assert_non_null(strstr(json_string_value(json_object_get(a, "why")), "peer"));
    json_decref(doc);
    lr_index_close(ix);
    daemon_version_list_release(&l);
}

/* The archive's cut form of `leaf` (store.c archive_name) with this stamp. */
static void cut_name(const char *leaf, const char *stamp, char out[NAME_MAX + 1])
{
    struct lr_hash h;
    char hx[LR_HASH_HEX_LEN + 1];
    lr_sha256(leaf, strlen(leaf), &h);
    lr_hash_hex(&h, hx);
    size_t keep = NAME_MAX - (strlen(stamp) + 1) - 9;
    snprintf(out, NAME_MAX + 1, "%.*s~%.8s~%s", (int)keep, leaf, hx, stamp);
}

/* A whole-archive listing names a cut entry by its cut path; its "why" still
 * comes from the conflict of the full path (it said "replaced or deleted by
 * a change from a peer" there, and "lost a content conflict" when listed by
 * the full path: black-box round 21). */
static void test_json_why_cut(void **state)
{
    struct fx *f = *state;
    char lost[NAME_MAX + 1], plain[NAME_MAX + 1], rel[NAME_MAX + 8];
    char full[300], other[300];
    memset(full, 'l', 240);
    snprintf(full + 240, sizeof(full) - 240, ".txt");
    memset(other, 'l', 240);
    snprintf(other + 240, sizeof(other) - 240, ".dat");
    cut_name(full, "20240101-000000", lost);
    cut_name(other, "20240101-000000", plain);
    assert_int_equal(strlen(lost), NAME_MAX);
    snprintf(rel, sizeof(rel), "sub/%s", lost);
    put(f, rel, 3);
    snprintf(rel, sizeof(rel), "sub/%s", plain);
    put(f, rel, 3);

    char db[160];
    snprintf(db, sizeof(db), "%s/index.db", f->dir);
    struct lr_index *ix;
    struct lr_err err = {0};
    assert_int_equal(lr_index_open(db, &ix, &err), 0);
    /* 999 rows before it: its row ends the first page of the audit trail
     * (LR_CONFLICT_LIST_MAX), whose last id must still lead to the next. */
    for (int i = 0; i < LR_CONFLICT_LIST_MAX - 1; i++) {
        char fp[32];
        snprintf(fp, sizeof(fp), "f/%d", i);
        struct lr_conflict_rec fc = content_conflict(fp, "copy");
        struct lr_hash fk = {{0x77, (uint8_t)i, (uint8_t)(i >> 8)}};
        assert_int_equal(lr_index_conflict_put(ix, &fc, &fk, NULL, &err), 0);
    }
    char path[320];
    snprintf(path, sizeof(path), "sub/%s", full);
    struct lr_conflict_rec c = content_conflict(path, "archive");
    c.archive_path = (uint8_t *)".landropic/versions/sub/x";
    c.archive_path_len = strlen((char *)c.archive_path);
    struct lr_hash k = {{1}};
    assert_int_equal(lr_index_conflict_put(ix, &c, &k, NULL, &err), 0);
    /* The same leaf in another directory, and a short name: not its rows. */
    snprintf(path, sizeof(path), "elsewhere/%s", other);
    c.path_len = strlen(path);
    k.b[0] = 2;
    assert_int_equal(lr_index_conflict_put(ix, &c, &k, NULL, &err), 0);
    c.path = (uint8_t *)"sub/short.txt";
    c.path_len = strlen((char *)c.path);
    k.b[0] = 3;
    assert_int_equal(lr_index_conflict_put(ix, &c, &k, NULL, &err), 0);

    struct daemon_version_list l;
    assert_int_equal(daemon_versions_list(f->root, NULL, &l, &err), 0);
    assert_int_equal(l.n, 2);
    json_t *doc = daemon_versions_json("docs", &l, ix);
    json_t *arr = json_object_get(doc, "versions");
    assert_int_equal(json_array_size(arr), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *v = json_array_get(arr, i);
        const char *id = json_string_value(json_object_get(v, "id"));
        const char *why = json_string_value(json_object_get(v, "why"));
        assert_true(json_is_true(json_object_get(v, "cut")));
        if (strcmp(id + 4, lost) == 0) {
            assert_string_equal(why, "lost a content conflict (content)");
        } else {
            assert_string_equal(id + 4, plain);
            assert_non_null(strstr(why, "peer"));
        }
    }
    json_decref(doc);
    daemon_version_list_release(&l);
    /* Listed by the full path: the same reason. */
    snprintf(path, sizeof(path), "sub/%s", full);
    assert_int_equal(daemon_versions_list(f->root, path, &l, &err), 0);
    assert_int_equal(l.n, 1);
    doc = daemon_versions_json("docs", &l, ix);
    json_t *v = json_array_get(json_object_get(doc, "versions"), 0);
    assert_string_equal(json_string_value(json_object_get(v, "path")), path);
    assert_string_equal(json_string_value(json_object_get(v, "why")),
                        "lost a content conflict (content)");
    json_decref(doc);
    daemon_version_list_release(&l);
    lr_index_close(ix);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static char *read_text(const char *path)
{
    static char buf[256];
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = 0;
    return buf;
}

static size_t count_versions(const struct fx *f, const char *path)
{
    struct daemon_version_list l;
    assert_int_equal(daemon_versions_list(f->root, path, &l, NULL), 0);
    size_t n = l.n;
    daemon_version_list_release(&l);
    return n;
}

static void test_restore(void **state)
{
    struct fx *f = *state;
    char p[256], q[256];
    put(f, "doc.txt~20240101-000000", 0);
    put(f, "doc.txt~20240102-000000", 0);
    snprintf(p, sizeof(p), "%s/doc.txt~20240101-000000", f->vers);
    write_file(p, "old one\n");
    chmod(p, 0600);
    snprintf(p, sizeof(p), "%s/doc.txt~20240102-000000", f->vers);
    write_file(p, "newest archived\n");
    snprintf(q, sizeof(q), "%s/doc.txt", f->root);
    write_file(q, "current\n");
    char *id = NULL;
    bool replaced = false;
    struct lr_err err = {0};

    /* Default: the newest version; the current file is archived in turn. */
    assert_int_equal(daemon_restore_file(f->root, "doc.txt", NULL, &id, &replaced, &err), 0);
    assert_string_equal(id, "doc.txt~20240102-000000");
    assert_true(replaced);
    free(id);
    assert_string_equal(read_text(q), "newest archived\n");
    assert_string_equal(read_text(p), "newest archived\n"); /* the archive keeps its copy */
    assert_int_equal(count_versions(f, "doc.txt"), 3);

    /* By stamp alone, and by full ID; mode comes from the archived file. */
    assert_int_equal(
        daemon_restore_file(f->root, "doc.txt", "20240101-000000", &id, &replaced, &err), 0);
    free(id);
    assert_string_equal(read_text(q), "old one\n");
    struct stat st;
    assert_int_equal(stat(q, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(count_versions(f, "doc.txt"), 4);
    assert_int_equal(
        daemon_restore_file(f->root, "doc.txt", "doc.txt~20240102-000000", &id, &replaced, &err),
        0);
    free(id);
    assert_string_equal(read_text(q), "newest archived\n");

    /* Unknown version or path: not found, naming it; nothing changed. */
    assert_int_equal(
        daemon_restore_file(f->root, "doc.txt", "19990101-000000", &id, &replaced, &err),
        LR_ENOTFOUND);
    assert_null(id);
    assert_non_null(strstr(err.msg, "19990101-000000"));
    assert_non_null(strstr(err.msg, "doc.txt"));
    assert_int_equal(daemon_restore_file(f->root, "nope.txt", NULL, &id, &replaced, &err),
                     LR_ENOTFOUND);
    assert_non_null(strstr(err.msg, "nope.txt"));
    assert_string_equal(read_text(q), "newest archived\n");

    /* Hostile or reserved paths never reach the disk. */
    assert_int_equal(daemon_restore_file(f->root, "../doc.txt", NULL, &id, &replaced, &err),
                     LR_EBADPATH);
    assert_int_equal(daemon_restore_file(f->root, ".landropic/versions/doc.txt~20240101-000000",
                                         NULL, &id, &replaced, &err),
                     LR_EBADPATH);

    /* A directory at the path is not replaced. */
    put(f, "sub/x~20240101-000000", 0);
    snprintf(p, sizeof(p), "%s/sub", f->root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/sub/x", f->root);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(daemon_restore_file(f->root, "sub/x", NULL, &id, &replaced, &err), LR_EEXISTS);
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(rmdir(p), 0);
    /* A symlink there is not replaced either (nor followed). */
    assert_int_equal(symlink("/etc/passwd", p), 0);
    assert_int_equal(daemon_restore_file(f->root, "sub/x", NULL, &id, &replaced, &err), LR_EEXISTS);
    assert_int_equal(unlink(p), 0);
    /* Missing parents are made; nothing replaced. */
    snprintf(p, sizeof(p), "%s/sub", f->root);
    assert_int_equal(rmdir(p), 0);
    assert_int_equal(daemon_restore_file(f->root, "sub/x", NULL, &id, &replaced, &err), 0);
    assert_false(replaced);
    free(id);
    snprintf(p, sizeof(p), "%s/sub/x", f->root);
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    /* A staging file that cannot be written (the disk full; here a file
     * size limit) names the version: the message was only "staging write
     * at N: No space left on device" (black-box round 21b). */
    put(f, "big.bin~20240101-000000", 65536);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 16384;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    lr_err_clear(&err);
    int rc = daemon_restore_file(f->root, "big.bin", NULL, &id, &replaced, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, -EFBIG);
    assert_non_null(strstr(err.msg, "archived version big.bin~20240101-000000: "));
    snprintf(p, sizeof(p), "%s/big.bin", f->root);
    assert_int_equal(lstat(p, &st), -1);
}

/* ---- retention ---- */

static const char *P(const struct fx *f, const char *rel)
{
    static char buf[4][512];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 512, "%s/%s", f->vers, rel);
    return b;
}

static bool there(const struct fx *f, const char *rel)
{
    struct stat st;
    return lstat(P(f, rel), &st) == 0;
}

/* 2024-01-10 12:00:00 UTC */
#define NOW ((int64_t)1704888000)

static void test_keep_newest_per_file(void **state)
{
    struct fx *f = *state;
    put(f, "a.txt~20240101-000000", 10);
    put(f, "a.txt~20240101-000000-1", 11);
    put(f, "a.txt~20240101-000000-2", 12);
    put(f, "a.txt~20240102-000000", 13);
    put(f, "a.txt.bak~20231201-000000", 5); /* another file: its own count */
    put(f, "d/a.txt~20231201-000000", 7);   /* a.txt of d/: its own too */
    put(f, "d/a.txt~20231202-000000", 8);
    struct daemon_prune_result r;
    struct lr_err err = {0};
    assert_int_equal(daemon_versions_prune(f->root, 2, 0, NOW, NULL, &r, &err), 0);
    assert_int_equal(r.removed, 2);
    assert_int_equal(r.bytes, 21);
    assert_int_equal(r.failed, 0);
    /* Oldest first by stamp, then the stamp's -N. */
    assert_false(there(f, "a.txt~20240101-000000"));
    assert_false(there(f, "a.txt~20240101-000000-1"));
    assert_true(there(f, "a.txt~20240101-000000-2"));
    assert_true(there(f, "a.txt~20240102-000000"));
    assert_true(there(f, "a.txt.bak~20231201-000000"));
    assert_true(there(f, "d/a.txt~20231201-000000"));
    assert_true(there(f, "d/a.txt~20231202-000000"));
    /* Again: nothing more to do. */
    assert_int_equal(daemon_versions_prune(f->root, 2, 0, NOW, NULL, &r, &err), 0);
    assert_int_equal(r.removed, 0);
}

static void test_age_and_empty_mirrors(void **state)
{
    struct fx *f = *state;
    put(f, "x~20240101-000000", 1);       /* 9.5 days old */
    put(f, "x~20240105-000000", 1);       /* 5.5 days */
    put(f, "old/y~20231001-000000", 100); /* alone in its mirror, and old */
    put(f, "old/deeper/z~20231001-000000", 1);
    put(f, "new/w~20240110-110000", 1);
    struct daemon_prune_result r;
    struct lr_err err = {0};
    assert_int_equal(daemon_versions_prune(f->root, 0, 7, NOW, NULL, &r, &err), 0);
    assert_int_equal(r.removed, 3);
    assert_int_equal(r.bytes, 102);
    assert_false(there(f, "x~20240101-000000"));
    assert_true(there(f, "x~20240105-000000"));
    assert_false(there(f, "old")); /* emptied mirrors go, the deeper one first */
    assert_int_equal(r.dirs_removed, 2);
    assert_true(there(f, "new/w~20240110-110000"));
    /* Both rules: either one removes. */
    put(f, "x~20240109-000000", 1);
    put(f, "x~20240110-000000", 1);
    assert_int_equal(daemon_versions_prune(f->root, 2, 7, NOW, NULL, &r, &err), 0);
    assert_int_equal(r.removed, 1);
    assert_false(there(f, "x~20240105-000000"));
    assert_true(there(f, "x~20240109-000000") && there(f, "x~20240110-000000"));
}

static void test_leaves_what_is_not_the_archives(void **state)
{
    struct fx *f = *state;
    put(f, "notes", 1);
    put(f, "x~2024", 1);
    put(f, "mirror/plain.txt", 1);
    put(f, "a~20200101-000000", 1);
    /* A symlink named like a version goes as an entry, never through. */
    char target[256];
    snprintf(target, sizeof(target), "%s/outside", f->dir);
    assert_int_equal(mkdir(target, 0755), 0);
    char victim[300];
    snprintf(victim, sizeof(victim), "%s/keep~20200101-000000", target);
    int fd = open(victim, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(symlink(target, P(f, "link~20200101-000000")), 0);
    assert_int_equal(symlink(target, P(f, "dirlink")), 0);
    struct daemon_prune_result r;
    struct lr_err err = {0};
    assert_int_equal(daemon_versions_prune(f->root, 0, 1, NOW, NULL, &r, &err), 0);
    assert_int_equal(r.removed, 2);
    assert_false(there(f, "a~20200101-000000"));
    assert_false(there(f, "link~20200101-000000"));
    assert_true(there(f, "notes") && there(f, "x~2024") && there(f, "mirror/plain.txt"));
    assert_true(there(f, "dirlink"));
    assert_int_equal(access(victim, F_OK), 0);
}

static void test_no_rule_no_archive_no_marker(void **state)
{
    struct fx *f = *state;
    put(f, "a~20200101-000000", 1);
    struct daemon_prune_result r;
    struct lr_err err = {0};
    /* No rule: nothing is ever pruned. */
    assert_int_equal(daemon_versions_prune(f->root, 0, 0, NOW, NULL, &r, &err), 0);
    assert_int_equal(r.removed, 0);
    assert_true(there(f, "a~20200101-000000"));
    /* No archive: nothing to do. */
    assert_int_equal(unlink(P(f, "a~20200101-000000")), 0);
    assert_int_equal(rmdir(f->vers), 0);
    assert_int_equal(daemon_versions_prune(f->root, 1, 0, NOW, NULL, &r, &err), 0);
    /* No marker: refused. */
    char m[160];
    snprintf(m, sizeof(m), "%s/.landropic", f->root);
    assert_int_equal(rmdir(m), 0);
    assert_int_equal(daemon_versions_prune(f->root, 1, 0, NOW, NULL, &r, &err), LR_ENOMARKER);
}

/* Set or clear the immutable flag of path (false if the file system or
 * the caller cannot). */
static bool immutable(const char *path, bool on)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false;
    int flags = 0;
    bool ok = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    if (ok) {
        flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    }
    close(fd);
    return ok;
}

static void test_unremovable_is_counted(void **state)
{
    struct fx *f = *state;
    put(f, "m/a~20200101-000000", 1);
    put(f, "b~20200101-000000", 1);
    /* An entry that cannot be removed: immutable (root), or in a directory
     * this user may not write. */
    bool imm = immutable(P(f, "m/a~20200101-000000"), true);
    if (!imm && (geteuid() == 0 || chmod(P(f, "m"), 0555) < 0))
        skip();
    struct daemon_prune_result r;
    struct lr_err err = {0};
    int rc = daemon_versions_prune(f->root, 0, 1, NOW, NULL, &r, &err);
    if (imm)
        assert_true(immutable(P(f, "m/a~20200101-000000"), false));
    else
        assert_int_equal(chmod(P(f, "m"), 0755), 0);
    assert_int_equal(rc, imm ? -EPERM : -EACCES);
    assert_non_null(strstr(err.msg, "cannot remove m/a~20200101-000000: "));
    assert_int_equal(r.failed, 1);
    assert_int_equal(r.removed, 1); /* the walk went on */
    assert_true(there(f, "m/a~20200101-000000"));
}

/* Versions stamped in the last seconds stay for a later prune (a name freed
 * in its own second would be reused by a newer version); a set cancel flag
 * stops the walk. */
static void test_fresh_and_canceled(void **state)
{
    struct fx *f = *state;
    put(f, "a~20240110-115959", 1);   /* NOW - 1 */
    put(f, "a~20240110-115959-1", 1); /* NOW - 1 */
    put(f, "a~20240110-115957", 1);   /* NOW - 3 */
    put(f, "a~20240110-115900", 1);
    struct daemon_prune_result r;
    struct lr_err err = {0};
    assert_int_equal(daemon_versions_prune(f->root, 1, 0, NOW, NULL, &r, &err), 0);
    assert_int_equal(r.removed, 2);
    assert_true(there(f, "a~20240110-115959") && there(f, "a~20240110-115959-1"));
    /* Later, the keep rule takes the older one of that second too. */
    assert_int_equal(daemon_versions_prune(f->root, 1, 0, NOW + 60, NULL, &r, &err), 0);
    assert_int_equal(r.removed, 1);
    assert_false(there(f, "a~20240110-115959"));
    assert_true(there(f, "a~20240110-115959-1"));
    put(f, "b~20200101-000000", 1);
    atomic_bool stop = true;
    assert_int_equal(daemon_versions_prune(f->root, 0, 1, NOW, &stop, &r, &err), LR_ECANCELED);
    assert_int_equal(r.removed, 0);
    assert_true(there(f, "b~20200101-000000"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_marker_no_archive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_order_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlinks_never_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directories_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_why, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_why_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_newest_per_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_age_and_empty_mirrors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leaves_what_is_not_the_archives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_rule_no_archive_no_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unremovable_is_counted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_and_canceled, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
