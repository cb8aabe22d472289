/*
 * test_sessions_ix.c - the index's transfer session checkpoints: insert,
 * replace by key, a new version as a new session, list order and bound,
 * the other names of a version,
 * prune by state and age, validation of hostile values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "index/index.h"
#include "util/err.h"
#include "util/log.h"

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
    snprintf(f->dir, sizeof(f->dir), "/tmp/lr-test-sess-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/index.db", f->dir);
    struct lr_err err = {0};
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
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

static struct lr_session_row row(const char *path, uint8_t ver, int state, int64_t t,
                                 const char *doc)
{
    struct lr_session_row r;
    memset(&r, 0, sizeof(r));
    r.folder = (char *)"docs";
    r.path = (uint8_t *)path;
    r.path_len = strlen(path);
    memset(r.blocks.b, ver, sizeof(r.blocks.b));
    r.state = state;
    r.updated_ms = t;
    r.doc = (char *)doc;
    return r;
}

static void test_put_replace_list(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_session_row r = row("a/b.bin", 1, 1, 100, "{\"v\":1}");
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    r = row("a/b.bin", 1, 2, 300, "{\"v\":2}"); /* same key: replaced */
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    r = row("a/b.bin", 2, 1, 200, "{\"v\":3}"); /* a newer version: its own session */
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    r = row("c", 9, 4, 50, "{}");
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    struct lr_session_list l;
    assert_int_equal(lr_index_session_list(f->ix, 10, &l, &err), 0);
    assert_int_equal(l.n, 3);
    /* most recently updated first */
    assert_string_equal(l.v[0].doc, "{\"v\":2}");
    assert_int_equal(l.v[0].state, 2);
    assert_int_equal(l.v[0].updated_ms, 300);
    assert_string_equal((const char *)l.v[0].path, "a/b.bin");
    assert_int_equal(l.v[0].path_len, 7);
    assert_int_equal(l.v[0].blocks.b[0], 1);
    assert_string_equal(l.v[1].doc, "{\"v\":3}");
    assert_string_equal(l.v[2].folder, "docs");
    lr_session_list_release(&l);
    assert_int_equal(lr_index_session_list(f->ix, 2, &l, &err), 0);
    assert_int_equal(l.n, 2);
    lr_session_list_release(&l);
}

static void test_others_of_a_version(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    /* Version 1 under old.bin (twice as old), mid.bin and new.bin; version 2
     * under x.bin; version 1 in another folder. */
    struct lr_session_row r = row("old.bin", 1, 3, 100, "{}");
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    r = row("mid.bin", 1, 3, 200, "{}");
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    r = row("new.bin", 1, 1, 300, "{}");
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    r = row("x.bin", 2, 3, 400, "{}");
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    r = row("elsewhere.bin", 1, 3, 500, "{}");
    r.folder = (char *)"music";
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    struct lr_hash v1;
    memset(v1.b, 1, sizeof(v1.b));
    struct lr_session_list l;
    /* Other names of version 1 in docs than new.bin, most recent first. */
    assert_int_equal(
        lr_index_session_others(f->ix, "docs", &v1, (const uint8_t *)"new.bin", 7, 4, &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal((const char *)l.v[0].path, "mid.bin");
    assert_string_equal((const char *)l.v[1].path, "old.bin");
    lr_session_list_release(&l);
    /* The bound. */
    assert_int_equal(
        lr_index_session_others(f->ix, "docs", &v1, (const uint8_t *)"new.bin", 7, 1, &l, &err), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal((const char *)l.v[0].path, "mid.bin");
    lr_session_list_release(&l);
    /* A version nobody pulled. */
    struct lr_hash v3;
    memset(v3.b, 3, sizeof(v3.b));
    assert_int_equal(
        lr_index_session_others(f->ix, "docs", &v3, (const uint8_t *)"new.bin", 7, 4, &l, &err), 0);
    assert_int_equal(l.n, 0);
    lr_session_list_release(&l);
}

static void test_prune(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    const int64_t times[4] = {100, 200, 300, 400};
    const int states[4] = {4, 1, 4, 4};
    const char *paths[4] = {"p0", "p1", "p2", "p3"};
    for (int i = 0; i < 4; i++) {
        struct lr_session_row r = row(paths[i], 1, states[i], times[i], "{}");
        assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    }
    uint64_t removed = 99;
    /* state 4 before 350: p0 and p2, not p1 (other state) nor p3 (newer) */
    assert_int_equal(lr_index_session_prune(f->ix, 4, 350, &removed, &err), 0);
    assert_int_equal(removed, 2);
    struct lr_session_list l;
    assert_int_equal(lr_index_session_list(f->ix, 10, &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal((const char *)l.v[0].path, "p3");
    assert_string_equal((const char *)l.v[1].path, "p1");
    lr_session_list_release(&l);
    assert_int_equal(lr_index_session_prune(f->ix, -1, 1000, &removed, &err), 0);
    assert_int_equal(removed, 2);
    assert_int_equal(lr_index_session_list(f->ix, 10, &l, &err), 0);
    assert_int_equal(l.n, 0);
    lr_session_list_release(&l);
}

static void test_trim_keeps_the_newest_finished(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    /* p0..p5: finished (3 failed, 4 complete) but p1 (active), p4 and p5
     * of the same millisecond. */
    const int64_t times[7] = {100, 150, 200, 300, 400, 400, 500};
    const int states[7] = {4, 1, 3, 4, 4, 4, 3};
    const char *paths[7] = {"p0", "p1", "p2", "p3", "p4", "p5", "p6"};
    for (int i = 0; i < 7; i++) {
        struct lr_session_row r = row(paths[i], 1, states[i], times[i], "{}");
        assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    }
    uint64_t removed = 99;
    /* Fewer finished rows than kept: nothing goes. */
    assert_int_equal(lr_index_session_trim(f->ix, 3, 4, 10, &removed, &err), 0);
    assert_int_equal(removed, 0);
    /* The 3 newest finished: p6, then p5 and p4 (same ms: the path decides). */
    assert_int_equal(lr_index_session_trim(f->ix, 3, 4, 3, &removed, &err), 0);
    assert_int_equal(removed, 3); /* p0, p2, p3 */
    /* Exactly `keep` stay, ties or not: p4 goes, p5 stays. */
    assert_int_equal(lr_index_session_trim(f->ix, 3, 4, 2, &removed, &err), 0);
    assert_int_equal(removed, 1);
    struct lr_session_list l;
    assert_int_equal(lr_index_session_list(f->ix, 10, &l, &err), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal((const char *)l.v[0].path, "p6");
    assert_string_equal((const char *)l.v[1].path, "p5");
    assert_string_equal((const char *)l.v[2].path, "p1"); /* not finished: kept */
    lr_session_list_release(&l);
    assert_int_equal(lr_index_session_trim(f->ix, 3, 4, 1, &removed, &err), 0);
    assert_int_equal(removed, 1); /* p5 */
    assert_int_equal(lr_index_session_trim(f->ix, 3, 4, 0, &removed, &err), LR_EUSAGE);
}

static void test_hostile_values(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_session_row r = row("../x", 1, 1, 1, "{}");
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), LR_EBADPATH);
    r = row("ok", 1, 1, 1, NULL);
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), LR_EBADVAL);
    char *big = malloc(LR_SESSION_DOC_MAX + 2);
    memset(big, 'x', LR_SESSION_DOC_MAX + 1);
    big[LR_SESSION_DOC_MAX + 1] = 0;
    r = row("ok", 1, 1, 1, big);
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), LR_EBADVAL);
    big[LR_SESSION_DOC_MAX] = 0; /* exactly the maximum is fine */
    r = row("ok", 1, 1, 1, big);
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), 0);
    free(big);
    r = row("ok", 1, 1, 1, "{}");
    r.folder = (char *)"";
    assert_int_equal(lr_index_session_put(f->ix, &r, &err), LR_EBADVAL);
    struct lr_session_list l;
    assert_int_equal(lr_index_session_list(f->ix, 100000, &l, &err), 0); /* capped */
    assert_int_equal(l.n, 1);
    lr_session_list_release(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_replace_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_others_of_a_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_keeps_the_newest_finished, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_values, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
