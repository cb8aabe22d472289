/*
 * test_index_modes.c - lr_index_file_forget (folder revert, docs/modes.md):
 * the record and its chunks go, no sequence is used, the path's need is
 * re-evaluated against "no local record", it rolls back with the caller's
 * transaction, and bad input is refused before anything is written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "index/index.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FOLDER "fold-m"
#define SELF 0x1111
#define PEER_SHORT 0x2222

struct fx {
    char dir[64];
    char db[128];
    struct lr_index *ix;
    struct lr_device_id peer;
};

static int setup(void **state)
{
    lr_log_set_level(LR_LOG_ERROR);
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/lr-test-ixm-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/index.db", f->dir);
    assert_int_equal(lr_index_open(f->db, &f->ix, NULL), 0);
    assert_int_equal(lr_index_folder_ensure(f->ix, FOLDER, SELF, NULL, NULL), 0);
    memset(f->peer.b, 7, sizeof(f->peer.b));
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &f->peer, 99, NULL), 0);
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

/* A live one-chunk file whose chunk hash is all `tag`, vector {id: ctr}. */
static void file_rec(struct lr_file_rec *r, const char *path, uint8_t tag, uint64_t id,
                     uint64_t ctr)
{
    memset(r, 0, sizeof(*r));
    r->path = (uint8_t *)strdup(path);
    r->path_len = strlen(path);
    r->type = LR_FT_FILE;
    r->size = 100;
    r->mtime_ns = 1700000000000000000LL;
    r->mode = 0644;
    r->chunks = calloc(1, sizeof(*r->chunks));
    r->nchunks = 1;
    r->chunks[0].len = 100;
    memset(r->chunks[0].hash.b, tag, LR_HASH_LEN);
    lr_index_blocks_hash(r->chunks, 1, &r->blocks_hash);
    assert_int_equal(lr_vv_set(&r->vv, id, ctr), 0);
}

static void put_local(struct fx *f, const char *path, uint8_t tag, uint64_t ctr)
{
    struct lr_file_rec r;
    file_rec(&r, path, tag, SELF, ctr);
    /* Made here after taking the peer's version 5: dominates it. */
    assert_int_equal(lr_vv_set(&r.vv, PEER_SHORT, 5), 0);
    assert_int_equal(lr_index_file_put(f->ix, FOLDER, &r, NULL, NULL), 0);
    lr_file_rec_release(&r);
}

static void put_remote(struct fx *f, const char *path, uint8_t tag, uint64_t ctr, uint64_t seq)
{
    struct lr_remote_rec r;
    memset(&r, 0, sizeof(r));
    file_rec(&r.rec, path, tag, PEER_SHORT, ctr);
    r.rec.seq = seq;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &f->peer, 99, &r, NULL), 0);
    lr_remote_rec_release(&r);
}

static uint64_t need_items(struct fx *f)
{
    struct lr_need_stats s;
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &s, NULL), 0);
    return s.items;
}

static uint64_t max_seq(struct fx *f)
{
    struct lr_folder_info info;
    assert_int_equal(lr_index_folder_get(f->ix, FOLDER, &info, NULL), 0);
    return info.max_seq;
}

static void test_forget_makes_the_peer_version_needed(void **state)
{
    struct fx *f = *state;
    /* Ours is a later, different version than the peer's: not needed. */
    put_remote(f, "a/doc.txt", 0xAA, 5, 1);
    put_local(f, "a/doc.txt", 0xBB, 10);
    assert_int_equal(need_items(f), 0);
    uint64_t seq = max_seq(f);
    bool removed = false;
    struct lr_err err = {0};
    assert_int_equal(
        lr_index_file_forget(f->ix, FOLDER, (const uint8_t *)"a/doc.txt", 9, &removed, &err), 0);
    assert_true(removed);
    struct lr_file_rec g;
    assert_int_equal(lr_index_file_get(f->ix, FOLDER, (const uint8_t *)"a/doc.txt", 9, 0, &g, NULL),
                     LR_ENOTFOUND);
    /* Its chunks no longer serve as a local source. */
    struct lr_hash h;
    memset(h.b, 0xBB, sizeof(h.b));
    struct lr_chunk_loc loc;
    assert_int_equal(lr_index_chunk_find(f->ix, FOLDER, &h, &loc, NULL), LR_ENOTFOUND);
    /* No sequence handed out; the peer's version is needed now. */
    assert_int_equal(max_seq(f), seq);
    assert_int_equal(need_items(f), 1);
    struct lr_need_list nl = {0};
    assert_int_equal(lr_index_need_list(f->ix, FOLDER, NULL, 0, 10, 0, &nl, NULL), 0);
    assert_int_equal(nl.n, 1);
    assert_memory_equal(nl.v[0].path, "a/doc.txt", 9);
    assert_int_equal(lr_vv_get(&nl.v[0].cand[0].r.rec.vv, PEER_SHORT), 5);
    lr_need_list_release(&nl);
    /* Forgetting again: nothing there, nothing changes. */
    assert_int_equal(
        lr_index_file_forget(f->ix, FOLDER, (const uint8_t *)"a/doc.txt", 9, &removed, NULL), 0);
    assert_false(removed);
    assert_int_equal(need_items(f), 1);
    /* Other records are untouched. */
    put_local(f, "b", 0xCC, 3);
    assert_int_equal(lr_index_file_forget(f->ix, FOLDER, (const uint8_t *)"a", 1, &removed, NULL),
                     0);
    assert_false(removed);
    assert_int_equal(lr_index_file_get(f->ix, FOLDER, (const uint8_t *)"b", 1, 0, &g, NULL), 0);
    lr_file_rec_release(&g);
}

static void test_forget_without_peers_needs_nothing(void **state)
{
    struct fx *f = *state;
    put_local(f, "only-here", 0x11, 4);
    bool removed = false;
    assert_int_equal(
        lr_index_file_forget(f->ix, FOLDER, (const uint8_t *)"only-here", 9, &removed, NULL), 0);
    assert_true(removed);
    assert_int_equal(need_items(f), 0);
    struct lr_folder_stats st;
    assert_int_equal(lr_index_folder_stats(f->ix, FOLDER, &st, NULL), 0);
    assert_int_equal(st.files, 0);
}

static void test_forget_rolls_back_with_the_transaction(void **state)
{
    struct fx *f = *state;
    put_remote(f, "x", 0xAA, 5, 1);
    put_local(f, "x", 0xBB, 10);
    assert_int_equal(lr_index_begin(f->ix, NULL), 0);
    bool removed = false;
    assert_int_equal(lr_index_file_forget(f->ix, FOLDER, (const uint8_t *)"x", 1, &removed, NULL),
                     0);
    assert_true(removed);
    assert_int_equal(need_items(f), 1);
    lr_index_rollback(f->ix);
    struct lr_file_rec g;
    assert_int_equal(
        lr_index_file_get(f->ix, FOLDER, (const uint8_t *)"x", 1, LR_IX_CHUNKS, &g, NULL), 0);
    assert_int_equal(g.nchunks, 1);
    assert_int_equal(lr_vv_get(&g.vv, SELF), 10);
    lr_file_rec_release(&g);
    assert_int_equal(need_items(f), 0);
}

static void test_forget_refuses_bad_input(void **state)
{
    struct fx *f = *state;
    put_local(f, "ok", 0x11, 1);
    bool removed = true;
    struct lr_err err = {0};
    static const char *bad[] = {"", "/ok", "ok/", "a//b", "..", "a/./b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        removed = true;
        assert_int_equal(lr_index_file_forget(f->ix, FOLDER, (const uint8_t *)bad[i],
                                              strlen(bad[i]), &removed, &err),
                         LR_EBADPATH);
        assert_false(removed);
    }
    assert_int_equal(lr_index_file_forget(f->ix, FOLDER, (const uint8_t *)"a\0b", 3, NULL, NULL),
                     LR_EBADPATH);
    assert_int_equal(
        lr_index_file_forget(f->ix, "no-such-folder", (const uint8_t *)"ok", 2, NULL, NULL),
        LR_ENOTFOUND);
    struct lr_file_rec g;
    assert_int_equal(lr_index_file_get(f->ix, FOLDER, (const uint8_t *)"ok", 2, 0, &g, NULL), 0);
    lr_file_rec_release(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_forget_makes_the_peer_version_needed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_without_peers_needs_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forget_rolls_back_with_the_transaction, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_forget_refuses_bad_input, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
