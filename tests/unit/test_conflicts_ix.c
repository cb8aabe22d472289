/*
 * test_conflicts_ix.c - the index's conflict audit trail: put/list round
 * trip, dedup, filters and paging, validation of hostile values, the bound
 * per folder, migration of an older database, and the conflict copy count.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "index/index.h"
#include "sync/decide.h"
#include "util/log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fx {
    char dir[64];
    char db[128];
    struct lr_index *ix;
};

static int setup(void **state)
{
    lr_log_set_level(LR_LOG_ERROR);
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/lr-test-cfix-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/index.db", f->dir);
    struct lr_err err = {0};
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
    assert_int_equal(lr_index_folder_ensure(f->ix, "f1", 0x1111, NULL, &err), 0);
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

/* A record with every mandatory field set; strings point at literals. */
static struct lr_conflict_rec mkrec(const char *folder, const char *path)
{
    struct lr_conflict_rec c = {0};
    c.time_s = 1700000000;
    c.folder = (char *)folder;
    c.path = (uint8_t *)path;
    c.path_len = strlen(path);
    c.type = (char *)"content";
    c.detail = (char *)"content";
    c.strategy = (char *)"keep-both";
    c.resolution = (char *)"copy";
    c.winner = (char *)"remote";
    c.devices = (char *)"AAAAAAA-BBB CCCCCCC-DDD";
    return c;
}

static void key_of(struct lr_hash *h, unsigned v)
{
    memset(h, 0, sizeof(*h));
    memcpy(h->b, &v, sizeof(v));
}

static void test_put_list_roundtrip(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_hash k;
    int64_t added = 0;
    struct lr_conflict_rec c = mkrec("f1", "a/b.txt");
    c.kept_device = (char *)"ABCDEFG";
    static const uint8_t kept[] = "a/b.sync-conflict-20231114-221320-ABCDEFG.txt";
    c.kept_path = (uint8_t *)kept;
    c.kept_path_len = sizeof(kept) - 1;
    /* Raw non-UTF-8 bytes survive unchanged. */
    static const uint8_t arch[] = ".landropic/versions/a/b.txt~\xff";
    c.archive_path = (uint8_t *)arch;
    c.archive_path_len = sizeof(arch) - 1;
    key_of(&k, 1);
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, &added, &err), 0);
    assert_true(added > 0);
    int64_t first_id = added;

    struct lr_conflict_rec m = mkrec("f1", "meta");
    m.type = (char *)"metadata";
    m.detail = (char *)"metadata";
    m.resolution = (char *)"merged";
    m.winner = (char *)"local";
    m.time_s = 1700000100;
    key_of(&k, 2);
    assert_int_equal(lr_index_conflict_put(f->ix, &m, &k, &added, &err), 0);
    assert_true(added);

    struct lr_conflict_list l;
    assert_int_equal(lr_index_conflict_list(f->ix, NULL, NULL, 0, 0, 100, &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_true(l.v[0].id < l.v[1].id);
    /* put hands out the id the list gives (the conflict event carries it). */
    assert_true(l.v[0].id == first_id);
    assert_true(l.v[1].id == added);
    assert_string_equal(l.v[0].folder, "f1");
    assert_int_equal(l.v[0].path_len, 7);
    assert_memory_equal(l.v[0].path, "a/b.txt", 7);
    assert_int_equal(l.v[0].time_s, 1700000000);
    assert_string_equal(l.v[0].type, "content");
    assert_string_equal(l.v[0].strategy, "keep-both");
    assert_string_equal(l.v[0].resolution, "copy");
    assert_string_equal(l.v[0].winner, "remote");
    assert_string_equal(l.v[0].devices, "AAAAAAA-BBB CCCCCCC-DDD");
    assert_string_equal(l.v[0].kept_device, "ABCDEFG");
    assert_int_equal(l.v[0].kept_path_len, sizeof(kept) - 1);
    assert_memory_equal(l.v[0].kept_path, kept, sizeof(kept) - 1);
    assert_int_equal(l.v[0].archive_path_len, sizeof(arch) - 1);
    assert_memory_equal(l.v[0].archive_path, arch, sizeof(arch) - 1);
    /* Optional fields come back NULL, not empty. */
    assert_string_equal(l.v[1].type, "metadata");
    assert_null(l.v[1].kept_device);
    assert_null(l.v[1].kept_path);
    assert_int_equal(l.v[1].kept_path_len, 0);
    assert_null(l.v[1].archive_path);
    lr_conflict_list_release(&l);
    lr_conflict_list_release(&l); /* twice is safe */
}

static void test_dedup(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_hash k;
    int64_t added = 1;
    struct lr_conflict_rec c = mkrec("f1", "x");
    key_of(&k, 7);
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, &added, &err), 0);
    assert_true(added);
    /* The same conflict decided again (next pull round): no second row. */
    c.resolution = (char *)"archive";
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, &added, &err), 0);
    assert_false(added);
    /* The same key in another folder is another conflict. */
    c.folder = (char *)"f2";
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, &added, &err), 0);
    assert_true(added);
    struct lr_conflict_list l;
    assert_int_equal(lr_index_conflict_list(f->ix, "f1", NULL, 0, 0, 100, &l, &err), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].resolution, "copy"); /* the first record stays */
    lr_conflict_list_release(&l);
    assert_int_equal(lr_index_conflict_list(f->ix, "f2", NULL, 0, 0, 100, &l, &err), 0);
    assert_int_equal(l.n, 1);
    lr_conflict_list_release(&l);
    /* A missing dedup key is a caller bug, refused. */
    assert_int_equal(lr_index_conflict_put(f->ix, &c, NULL, &added, &err), LR_EUSAGE);
}

static void test_filters_and_paging(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_hash k;
    /* 25 rows alternating two folders and three paths. */
    static const char *paths[] = {"p0", "d/p1", "p2"};
    assert_int_equal(lr_index_begin(f->ix, &err), 0);
    for (unsigned i = 0; i < 25; i++) {
        struct lr_conflict_rec c = mkrec(i % 2 ? "odd" : "even", paths[i % 3]);
        c.time_s = 1000 + i;
        key_of(&k, 100 + i);
        assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), 0);
    }
    assert_int_equal(lr_index_commit(f->ix, &err), 0);

    /* Page through everything 4 at a time: 25 rows in order, each once. */
    int64_t after = 0, prev_time = 0;
    size_t total = 0;
    for (;;) {
        struct lr_conflict_list l;
        assert_int_equal(lr_index_conflict_list(f->ix, NULL, NULL, 0, after, 4, &l, &err), 0);
        for (size_t i = 0; i < l.n; i++) {
            assert_true(l.v[i].time_s > prev_time);
            prev_time = l.v[i].time_s;
            after = l.v[i].id;
        }
        total += l.n;
        size_t n = l.n;
        lr_conflict_list_release(&l);
        if (n < 4)
            break;
    }
    assert_int_equal(total, 25);

    /* Folder "even" and path "d/p1": i even and i % 3 == 1 -> i = 4, 10, 16, 22. */
    struct lr_conflict_list l;
    assert_int_equal(
        lr_index_conflict_list(f->ix, "even", (const uint8_t *)"d/p1", 4, 0, 100, &l, &err), 0);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.v[0].time_s, 1004);
    assert_int_equal(l.v[3].time_s, 1022);
    lr_conflict_list_release(&l);
    /* max above the cap is clamped, max 0 returns nothing. */
    assert_int_equal(lr_index_conflict_list(f->ix, NULL, NULL, 0, 0, 0, &l, &err), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(lr_index_conflict_list(f->ix, "none", NULL, 0, 0, SIZE_MAX, &l, &err), 0);
    assert_int_equal(l.n, 0);
    lr_conflict_list_release(&l);
}

static void test_validation(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_hash k;
    key_of(&k, 9);
    struct lr_conflict_rec c = mkrec("f1", "../etc/passwd");
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), LR_EBADPATH);
    c = mkrec("f1", "/abs");
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), LR_EBADPATH);
    c = mkrec("", "ok");
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), LR_EBADVAL);
    c = mkrec("f1", "ok");
    c.type = NULL;
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), LR_EBADVAL);
    assert_non_null(strstr(err.msg, "type"));
    c = mkrec("f1", "ok");
    c.strategy = (char *)"";
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), LR_EBADVAL);
    c = mkrec("f1", "ok");
    char *big = malloc(LR_CONFLICT_TEXT_MAX + 2);
    memset(big, 'D', LR_CONFLICT_TEXT_MAX + 1);
    big[LR_CONFLICT_TEXT_MAX + 1] = 0;
    c.devices = big;
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), LR_EBADVAL);
    big[LR_CONFLICT_TEXT_MAX] = 0; /* exactly the limit is fine */
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), 0);
    free(big);
    c = mkrec("f1", "ok2");
    static const uint8_t nul[] = {'a', 0, 'b'};
    c.kept_path = (uint8_t *)nul;
    c.kept_path_len = sizeof(nul);
    key_of(&k, 10);
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), LR_EBADVAL);
    c.kept_path_len = 0; /* non-NULL pointer with no bytes */
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), LR_EBADVAL);
    /* Nothing refused was stored. */
    struct lr_conflict_list l;
    assert_int_equal(lr_index_conflict_list(f->ix, NULL, NULL, 0, 0, 100, &l, &err), 0);
    assert_int_equal(l.n, 1);
    lr_conflict_list_release(&l);
}

static void test_bound_per_folder(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_hash k;
    unsigned total = LR_CONFLICTS_KEEP + LR_CONFLICTS_SLACK + 10;
    assert_int_equal(lr_index_begin(f->ix, &err), 0);
    for (unsigned i = 0; i < total; i++) {
        struct lr_conflict_rec c = mkrec("f1", "same");
        c.time_s = i;
        key_of(&k, i);
        assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, NULL, &err), 0);
    }
    /* Another folder's trail is not pruned by this one's. */
    struct lr_conflict_rec o = mkrec("other", "x");
    key_of(&k, 0);
    assert_int_equal(lr_index_conflict_put(f->ix, &o, &k, NULL, &err), 0);
    assert_int_equal(lr_index_commit(f->ix, &err), 0);
    size_t n = 0;
    int64_t after = 0, first_time = -1, last_time = -1;
    for (;;) {
        struct lr_conflict_list l;
        assert_int_equal(lr_index_conflict_list(f->ix, "f1", NULL, 0, after, 1000, &l, &err), 0);
        if (l.n && first_time < 0)
            first_time = l.v[0].time_s;
        if (l.n) {
            after = l.v[l.n - 1].id;
            last_time = l.v[l.n - 1].time_s;
        }
        n += l.n;
        size_t got = l.n;
        lr_conflict_list_release(&l);
        if (got < 1000)
            break;
    }
    assert_true(n >= LR_CONFLICTS_KEEP);
    assert_true(n <= LR_CONFLICTS_KEEP + LR_CONFLICTS_SLACK);
    /* The newest survive, the oldest went, with no gap. */
    assert_int_equal(last_time, total - 1);
    assert_int_equal((size_t)(last_time - first_time + 1), n);
    struct lr_conflict_list l;
    assert_int_equal(lr_index_conflict_list(f->ix, "other", NULL, 0, 0, 10, &l, &err), 0);
    assert_int_equal(l.n, 1);
    lr_conflict_list_release(&l);
}

static void test_migrates_v3_database(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    lr_index_close(f->ix);
    f->ix = NULL;
    /* Turn the file into what a v3 build left behind. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(
            db,
            "DROP TABLE sessions; DROP TABLE conflicts; "
            "ALTER TABLE folders DROP COLUMN token; ALTER TABLE folders DROP COLUMN clock; "
            "ALTER TABLE remotes DROP COLUMN check_seq; "
            "ALTER TABLE remotes DROP COLUMN check_digest; "
            "ALTER TABLE remotes DROP COLUMN check_path; "
            "ALTER TABLE chunks DROP COLUMN weak; DROP INDEX files_twin; "
            "PRAGMA user_version = 3;",
            NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
    struct lr_folder_info info;
    assert_int_equal(lr_index_folder_get(f->ix, "f1", &info, &err), 0); /* data kept */
    assert_int_equal(info.short_id, 0x1111);
    struct lr_hash k;
    key_of(&k, 1);
    struct lr_conflict_rec c = mkrec("f1", "after-upgrade");
    int64_t added = 0;
    assert_int_equal(lr_index_conflict_put(f->ix, &c, &k, &added, &err), 0);
    assert_true(added);
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), lr_index_schema_version());
    assert_true(lr_index_schema_version() >= 4);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void put_entry(struct lr_index *ix, const char *path, bool deleted, enum lr_ftype type)
{
    struct lr_file_rec r = {0};
    r.path = (uint8_t *)path;
    r.path_len = strlen(path);
    r.type = type;
    r.deleted = deleted;
    r.mode = 0644;
    r.mtime_ns = 1;
    struct lr_vv vv = {0};
    assert_true(lr_vv_bump(&vv, 0x1111, 5) != 0);
    r.vv = vv;
    struct lr_err err = {0};
    assert_int_equal(lr_index_file_put(ix, "f1", &r, NULL, &err), 0);
    lr_vv_release(&vv);
}

static void put_file(struct lr_index *ix, const char *path, bool deleted)
{
    put_entry(ix, path, deleted, LR_FT_FILE);
}

static void test_copies_count(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    uint64_t n = 99;
    assert_int_equal(lr_index_conflict_copies(f->ix, "f1", lr_sync_is_conflict_copy, &n, &err), 0);
    assert_int_equal(n, 0);
    put_file(f->ix, "a.sync-conflict-20240305-060708-ABCDEFG.txt", false);
    /* In a subdirectory: the stored key's separator is not '/'. */
    put_file(f->ix, "d/e/Makefile.sync-conflict-20240305-060708-ABCDEFG", false);
    /* Deleted copies are not present. */
    put_file(f->ix, "gone.sync-conflict-20240305-060708-ABCDEFG.txt", true);
    /* The text without a complete marker, or in a directory name, is not a copy. */
    put_file(f->ix, "b.sync-conflict-2024.txt", false);
    put_file(f->ix, "x.sync-conflict-20240305-060708-ABCDEFG/inner.txt", false);
    put_file(f->ix, "plain.txt", false);
    /* A directory with a marker in its name is not a copy either. */
    put_entry(f->ix, "dir.sync-conflict-20240305-060708-ABCDEFG", false, LR_FT_DIR);
    assert_int_equal(lr_index_conflict_copies(f->ix, "f1", lr_sync_is_conflict_copy, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(lr_index_conflict_copies(f->ix, "nope", lr_sync_is_conflict_copy, &n, &err),
                     LR_ENOTFOUND);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_list_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters_and_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_per_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_v3_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copies_count, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
