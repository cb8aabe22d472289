/*
 * test_daemon_modes.c - daemon_modes_own_version (docs/modes.md): which
 * records a receive-only device withholds. Ours when our counter is the
 * largest, ties included (two devices changing a path in the same second),
 * unless a peer holds exactly that version (we took it from the peer).
 * And daemon_modes_adopt_equal: which equal versions take the peer's vector.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "daemon/modes.h"
#include "index/index.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FOLDER "fold-o"
#define SELF 0x1000 /* smaller than the peer's: a tie goes to the peer as author */
#define PEER_SHORT 0x9000

struct fx {
    char dir[64];
    char db[128];
    struct lr_index *ix;
    struct lr_device_id peer;
    uint64_t rseq;
};

static int setup(void **state)
{
    lr_log_set_level(LR_LOG_ERROR);
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/lr-test-dmo-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/index.db", f->dir);
    assert_int_equal(lr_index_open(f->db, &f->ix, NULL), 0);
    assert_int_equal(lr_index_folder_ensure(f->ix, FOLDER, SELF, NULL, NULL), 0);
    memset(f->peer.b, 9, sizeof(f->peer.b));
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &f->peer, 77, NULL), 0);
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

/* A tombstone record (no chunks needed) with vector {SELF: own, PEER: peer} (0: absent). */
static void rec(struct lr_file_rec *r, const char *path, uint64_t own, uint64_t peer)
{
    memset(r, 0, sizeof(*r));
    r->path = (uint8_t *)strdup(path);
    r->path_len = strlen(path);
    r->type = LR_FT_FILE;
    r->deleted = true;
    if (own)
        assert_int_equal(lr_vv_set(&r->vv, SELF, own), 0);
    if (peer)
        assert_int_equal(lr_vv_set(&r->vv, PEER_SHORT, peer), 0);
}

static void peer_holds(struct fx *f, const struct lr_file_rec *r)
{
    struct lr_remote_rec rr;
    memset(&rr, 0, sizeof(rr));
    rr.rec = *r;
    rr.rec.seq = ++f->rseq;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &f->peer, 77, &rr, NULL), 0);
}

static bool own(struct fx *f, const char *path, uint64_t o, uint64_t p)
{
    struct lr_file_rec r;
    rec(&r, path, o, p);
    bool v = daemon_modes_own_version(f->ix, FOLDER, &r, SELF);
    lr_file_rec_release(&r);
    return v;
}

static void test_own_version_rules(void **state)
{
    struct fx *f = *state;
    assert_true(own(f, "a", 1700000010, 1700000000));  /* edited here after the peer */
    assert_true(own(f, "b", 1700000000, 1700000000));  /* same second: a tie is ours */
    assert_true(own(f, "c", 5, 0));                    /* only we ever changed it */
    assert_false(own(f, "d", 1700000000, 1700000010)); /* the peer changed it after us */
    assert_false(own(f, "e", 0, 1700000000));          /* never changed here */
    /* A tie (or our larger counter) that a peer holds exactly: we took it from the peer. */
    struct lr_file_rec r;
    rec(&r, "b", 1700000000, 1700000000);
    peer_holds(f, &r);
    assert_false(daemon_modes_own_version(f->ix, FOLDER, &r, SELF));
    lr_file_rec_release(&r);
    rec(&r, "a", 1700000010, 1700000000);
    peer_holds(f, &r);
    assert_false(daemon_modes_own_version(f->ix, FOLDER, &r, SELF));
    lr_file_rec_release(&r);
    /* The peer holding another version of the path does not make ours theirs. */
    assert_true(own(f, "a", 1700000011, 1700000000));
    assert_true(own(f, "b", 1700000001, 1700000000));
}

/* Our live directory `path` with vector {SELF: own, PEER: peer}; the peer's
 * equal one (all but the vector) with {SELF: r_own, PEER: r_peer} in *remote,
 * stored as the peer's. Answers whether ours was an own version before. */
static bool equal_dirs(struct fx *f, const char *path, uint64_t own, uint64_t peer, uint64_t r_own,
                       uint64_t r_peer, struct lr_file_rec *remote)
{
    struct lr_file_rec r;
    rec(&r, path, own, peer);
    r.type = LR_FT_DIR;
    r.deleted = false;
    r.mode = 0755;
    assert_int_equal(lr_index_file_put(f->ix, FOLDER, &r, NULL, NULL), 0);
    lr_file_rec_release(&r);
    rec(remote, path, r_own, r_peer);
    remote->type = LR_FT_DIR;
    remote->deleted = false;
    remote->mode = 0755;
    bool was_own = daemon_modes_own_version_at(f->ix, FOLDER, remote->path, remote->path_len, SELF);
    peer_holds(f, remote);
    return was_own;
}

/* adopt_equal on the peer's record `remote`, then our record's vector as {SELF, PEER}. */
static void adopt(struct fx *f, const struct lr_file_rec *remote, bool receive_only, bool was_own,
                  bool want_adopted, uint64_t want_own, uint64_t want_peer)
{
    bool adopted = !want_adopted;
    assert_int_equal(daemon_modes_adopt_equal(f->ix, FOLDER, remote, receive_only ? SELF : 0,
                                              was_own, &adopted, NULL),
                     0);
    assert_int_equal(adopted, want_adopted);
    struct lr_file_rec got;
    assert_int_equal(
        lr_index_file_get(f->ix, FOLDER, remote->path, remote->path_len, 0, &got, NULL), 0);
    assert_int_equal(lr_vv_get(&got.vv, SELF), want_own);
    assert_int_equal(lr_vv_get(&got.vv, PEER_SHORT), want_peer);
    lr_file_rec_release(&got);
}

static void test_adopt_equal(void **state)
{
    struct fx *f = *state;
    struct lr_file_rec r;
    bool w;
    /* Send-only: concurrent equal versions merge (the peer merges them too). */
    w = equal_dirs(f, "s", 1700000010, 0, 0, 1700000000, &r);
    adopt(f, &r, false, w, true, 1700000010, 1700000000);
    lr_file_rec_release(&r);
    /* Send-only: ours newer stays ours. */
    w = equal_dirs(f, "t", 1700000010, 0, 1700000000, 0, &r);
    adopt(f, &r, false, w, false, 1700000010, 0);
    lr_file_rec_release(&r);
    /* Receive-only, files the peer made, scanned afresh here: the peer's
     * vector as it is; merged, it stayed ours, withheld for good. */
    w = equal_dirs(f, "u", 1700000010, 0, 0, 1700000000, &r);
    assert_true(w);
    adopt(f, &r, true, w, true, 0, 1700000000);
    lr_file_rec_release(&r);
    /* Receive-only, files we made, scanned afresh: newer only by our counter. */
    w = equal_dirs(f, "v", 1700000010, 0, 1700000000, 0, &r);
    adopt(f, &r, true, w, true, 1700000000, 0);
    lr_file_rec_release(&r);
    /* Receive-only, the same vector: taken again only if it was withheld
     * (scanned in the second the peer made it) ... */
    w = equal_dirs(f, "x", 1700000010, 0, 1700000010, 0, &r);
    assert_true(w);
    adopt(f, &r, true, w, true, 1700000010, 0);
    /* ... not when the peer had it from us already: no re-announcement. */
    w = daemon_modes_own_version_at(f->ix, FOLDER, r.path, r.path_len, SELF);
    assert_false(w);
    adopt(f, &r, true, w, false, 1700000010, 0);
    lr_file_rec_release(&r);
    /* Receive-only, a version of ours another peer took from us (not
     * withheld) and this peer's older one: ours stays. */
    struct lr_file_rec held;
    rec(&held, "y", 1700000010, 1700000000);
    held.type = LR_FT_DIR;
    held.deleted = false;
    held.mode = 0755;
    struct lr_device_id other;
    memset(other.b, 7, sizeof(other.b));
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &other, 78, NULL), 0);
    struct lr_remote_rec rr;
    memset(&rr, 0, sizeof(rr));
    rr.rec = held;
    rr.rec.seq = 1;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &other, 78, &rr, NULL), 0);
    w = equal_dirs(f, "y", 1700000010, 1700000000, 0, 1700000000, &r);
    assert_false(w);
    adopt(f, &r, true, w, false, 1700000010, 1700000000);
    lr_file_rec_release(&held);
    lr_file_rec_release(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_own_version_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_equal, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
