/*
 * test_index_remote.c - schema v2: migration from v1, remote indexes, sync
 * state atomicity, full resends, segments, need (against a brute-force
 * oracle), holders, counters, bounded memory and speed; lr_vv_compare
 * against a brute-force oracle.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "index/index.h"
#include "util/buf.h"
#include "util/log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FOLDER "fold-r"

struct fx {
    char dir[64];
    char db[128];
    struct lr_index *ix;
};

static int setup(void **state)
{
    lr_log_set_level(LR_LOG_ERROR);
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/lr-test-ixr-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/index.db", f->dir);
    struct lr_err err = {0};
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
    assert_int_equal(lr_index_folder_ensure(f->ix, FOLDER, 0x1111, NULL, &err), 0);
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

static struct lr_device_id dev(uint8_t n)
{
    struct lr_device_id d;
    memset(d.b, n, sizeof(d.b));
    d.b[31] = (uint8_t)(n ^ 0x5a);
    return d;
}

/* A remote live file: n chunks of clen bytes, hashes from tag. */
static void rfile(struct lr_remote_rec *r, const char *path, uint64_t seq, size_t n, uint32_t clen,
                  uint8_t tag)
{
    memset(r, 0, sizeof(*r));
    r->rec.path = (uint8_t *)strdup(path);
    r->rec.path_len = strlen(path);
    r->rec.type = LR_FT_FILE;
    r->rec.size = (uint64_t)n * clen;
    r->rec.mtime_ns = 1700000000000000001LL;
    r->rec.mode = 0640;
    r->rec.seq = seq;
    r->rec.chunks = calloc(n ? n : 1, sizeof(r->rec.chunks[0]));
    r->rec.nchunks = n;
    for (size_t i = 0; i < n; i++) {
        r->rec.chunks[i].off = (uint64_t)i * clen;
        r->rec.chunks[i].len = clen;
        memset(r->rec.chunks[i].hash.b, tag, LR_HASH_LEN);
        r->rec.chunks[i].hash.b[0] = (uint8_t)i;
        r->rec.chunks[i].hash.b[1] = (uint8_t)(i >> 8);
    }
    assert_int_equal(lr_vv_set(&r->rec.vv, 0x2222, seq), 0);
}

/* ---- version vectors ------------------------------------------------------ */

#define NIDS 5
static const uint64_t vv_ids[NIDS] = {3, 70, 0x1111, 0x2222, UINT64_MAX};

static void vv_from(struct lr_vv *v, const uint32_t *ctr)
{
    lr_vv_release(v);
    for (int i = 0; i < NIDS; i++)
        if (ctr[i])
            assert_int_equal(lr_vv_set(v, vv_ids[i], ctr[i]), 0);
}

/* Brute force: compare dense counter arrays. */
static enum lr_vv_order brute_cmp(const uint32_t *a, const uint32_t *b)
{
    bool le = true, ge = true;
    for (int i = 0; i < NIDS; i++) {
        if (a[i] > b[i])
            le = false;
        if (a[i] < b[i])
            ge = false;
    }
    if (le && ge)
        return LR_VV_EQUAL;
    if (le)
        return LR_VV_LESS;
    if (ge)
        return LR_VV_GREATER;
    return LR_VV_CONCURRENT;
}

static void test_vv_compare_oracle(void **state)
{
    (void)state;
    srand(7);
    struct lr_vv a = {0}, b = {0};
    unsigned seen[4] = {0};
    for (int it = 0; it < 200000; it++) {
        uint32_t ca[NIDS], cb[NIDS];
        for (int i = 0; i < NIDS; i++) {
            ca[i] = (uint32_t)(rand() % 3 == 0 ? 0 : rand() % 4);
            cb[i] = (rand() % 3 == 0) ? ca[i] : (uint32_t)(rand() % 4);
        }
        vv_from(&a, ca);
        vv_from(&b, cb);
        enum lr_vv_order o = lr_vv_compare(&a, &b);
        assert_int_equal(o, brute_cmp(ca, cb));
        /* Antisymmetry. */
        enum lr_vv_order r = lr_vv_compare(&b, &a);
        assert_int_equal(r, o == LR_VV_LESS ? LR_VV_GREATER : o == LR_VV_GREATER ? LR_VV_LESS : o);
        seen[o]++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(seen[i] > 1000); /* every outcome exercised */
    /* Huge counters and the empty vector. */
    lr_vv_release(&a);
    lr_vv_release(&b);
    assert_int_equal(lr_vv_compare(&a, &b), LR_VV_EQUAL);
    assert_int_equal(lr_vv_set(&a, 9, UINT64_MAX), 0);
    assert_int_equal(lr_vv_compare(&a, &b), LR_VV_GREATER);
    assert_int_equal(lr_vv_set(&b, 9, UINT64_MAX - 1), 0);
    assert_int_equal(lr_vv_compare(&b, &a), LR_VV_LESS);
    lr_vv_release(&a);
    lr_vv_release(&b);
}

/* ---- migration --------------------------------------------------------------- */

/* The v1 schema exactly as shipped (index.c migrations[0]). */
static const char v1_schema[] =
    "CREATE TABLE folders (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    "  index_id INTEGER NOT NULL, short_id INTEGER NOT NULL, max_seq INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE files (id INTEGER PRIMARY KEY, folder INTEGER NOT NULL, path BLOB NOT NULL,"
    "  type INTEGER NOT NULL, deleted INTEGER NOT NULL, size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL, mode INTEGER NOT NULL, inode INTEGER NOT NULL,"
    "  ctime_ns INTEGER NOT NULL, target BLOB, vv BLOB NOT NULL, seq INTEGER NOT NULL, blocks "
    "BLOB);"
    "CREATE UNIQUE INDEX files_path ON files(folder, path);"
    "CREATE UNIQUE INDEX files_seq ON files(folder, seq);"
    "CREATE TABLE chunks (file INTEGER NOT NULL, idx INTEGER NOT NULL, off INTEGER NOT NULL,"
    "  len INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (file, idx)) WITHOUT ROWID;"
    "CREATE INDEX chunks_hash ON chunks(hash);";

static void test_migration_from_v1(void **state)
{
    (void)state;
    lr_log_set_level(LR_LOG_ERROR);
    char dir[64], db[128];
    snprintf(dir, sizeof(dir), "/tmp/lr-test-ixmig-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(db, sizeof(db), "%s/index.db", dir);
    sqlite3 *s;
    assert_int_equal(sqlite3_open(db, &s), SQLITE_OK);
    assert_int_equal(sqlite3_exec(s, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(s, v1_schema, NULL, NULL, NULL), SQLITE_OK);
    /* Data as v1 wrote it: folder, a file "d/x" (key d\0x) with 2 chunks, a tombstone. */
    const char *data = "INSERT INTO folders VALUES (1, 'old', -5, 4660, 2);"
                       "INSERT INTO files VALUES (1, 1, x'640078', 0, 0, 20, 5, 420, 9, 8, NULL,"
                       "  x'00000000000012340000000000000002', 1, zeroblob(32));"
                       "INSERT INTO files VALUES (2, 1, x'67', 0, 1, 0, 6, 420, 0, 0, NULL,"
                       "  x'00000000000012340000000000000001', 2, NULL);"
                       "INSERT INTO chunks VALUES (1, 0, 0, 12, x'" /* 32 bytes of 0xaa */
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa');"
                       "INSERT INTO chunks VALUES (1, 1, 12, 8, x'"
                       "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb');"
                       "PRAGMA user_version = 1;";
    assert_int_equal(sqlite3_exec(s, data, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(s);

    struct lr_index *ix;
    struct lr_err err = {0};
    assert_true(lr_index_schema_version() >= 3); /* later versions migrate v1 too */
    assert_int_equal(lr_index_open(db, &ix, &err), 0);
    /* Old data intact. */
    struct lr_folder_info fi;
    assert_int_equal(lr_index_folder_get(ix, "old", &fi, &err), 0);
    assert_true(fi.index_id == (uint64_t)-5);
    assert_int_equal(fi.short_id, 0x1234);
    assert_int_equal(fi.max_seq, 2);
    struct lr_file_rec g;
    assert_int_equal(
        lr_index_file_get(ix, "old", (const uint8_t *)"d/x", 3, LR_IX_CHUNKS, &g, &err), 0);
    assert_int_equal(g.size, 20);
    assert_int_equal(g.nchunks, 2);
    assert_int_equal(g.chunks[1].off, 12);
    assert_int_equal(g.chunks[1].hash.b[5], 0xbb);
    assert_int_equal(lr_vv_get(&g.vv, 0x1234), 2);
    lr_file_rec_release(&g);
    struct lr_hash h;
    memset(h.b, 0xaa, sizeof(h.b));
    struct lr_chunk_loc loc;
    assert_int_equal(lr_index_chunk_find(ix, NULL, &h, &loc, &err), 0);
    assert_string_equal((char *)loc.path, "d/x");
    lr_chunk_loc_release(&loc);
    /* New tables usable: a peer's newer version of d/x is needed. */
    struct lr_device_id p = dev(1);
    assert_int_equal(lr_index_remote_full_begin(ix, "old", &p, 77, &err), 0);
    struct lr_remote_rec r;
    rfile(&r, "d/x", 1, 1, 30, 0x33);
    assert_int_equal(lr_vv_set(&r.rec.vv, 0x1234, 2), 0); /* {1234:2, 2222:1} > {1234:2} */
    assert_int_equal(lr_index_remote_put(ix, "old", &p, 77, &r, &err), 0);
    lr_remote_rec_release(&r);
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(ix, "old", &ns, &err), 0);
    assert_int_equal(ns.items, 1);
    assert_int_equal(ns.bytes, 30);
    /* A local put still works and sees the need (old files are the inputs). */
    struct lr_file_rec lf = {0};
    lf.path = (uint8_t *)"d/x";
    lf.path_len = 3;
    lf.type = LR_FT_DIR;
    assert_int_equal(lr_vv_set(&lf.vv, 0x1234, 9), 0);
    uint64_t seq;
    assert_int_equal(lr_index_file_put(ix, "old", &lf, &seq, &err), 0);
    assert_int_equal(seq, 3);
    lr_vv_release(&lf.vv);
    struct lr_need_list nl;
    assert_int_equal(lr_index_need_list(ix, "old", NULL, 0, 10, 0, &nl, &err), 0);
    assert_int_equal(nl.n, 1);
    assert_int_equal(nl.v[0].flags, LR_NEED_LOCAL_CONFLICT);
    lr_need_list_release(&nl);
    lr_index_close(ix);
    /* Reopen: already current, nothing re-run. */
    assert_int_equal(lr_index_open(db, &ix, &err), 0);
    assert_int_equal(lr_index_need_stats(ix, "old", &ns, &err), 0);
    assert_int_equal(ns.items, 1);
    lr_index_close(ix);
    assert_int_equal(sqlite3_open(db, &s), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(s, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), lr_index_schema_version());
    sqlite3_finalize(st);
    sqlite3_close(s);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- remote records ------------------------------------------------------------- */

static void test_remote_put_get(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_device_id p = dev(1), q = dev(2);
    struct lr_remote_state st;
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_true(st.index_id == 0 && st.max_seq == 0 && !st.full_pending);
    assert_int_equal(lr_index_remote_state(f->ix, "nope", &p, &st, &err), LR_ENOTFOUND);

    struct lr_remote_rec r, g;
    rfile(&r, "a/\xff-bin", 5, 3, 100, 0x44);
    /* No full index started: refused, never silently stored. */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &r, &err), LR_EPROTO);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &p, 0, &err), LR_EBADVAL);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &p, 99, &err), 0);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 98, &r, &err), LR_EPROTO);
    assert_non_null(strstr(err.msg, "full index"));
    r.rec.inode = 5;                                /* ignored */
    memset(r.rec.blocks_hash.b, 0xee, LR_HASH_LEN); /* ignored: computed */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &r, &err), 0);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_true(st.index_id == 99 && st.max_seq == 5 && st.full_pending && st.gen == 1);
    /* Same or lower sequence again: refused. */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &r, &err), LR_EPROTO);

    assert_int_equal(
        lr_index_remote_get(f->ix, FOLDER, &p, r.rec.path, r.rec.path_len, LR_IX_CHUNKS, &g, &err),
        0);
    assert_int_equal(g.rec.path_len, r.rec.path_len);
    assert_memory_equal(g.rec.path, r.rec.path, r.rec.path_len);
    assert_int_equal(g.rec.type, LR_FT_FILE);
    assert_int_equal(g.rec.size, 300);
    assert_true(g.rec.mtime_ns == r.rec.mtime_ns);
    assert_int_equal(g.rec.mode, 0640);
    assert_int_equal(g.rec.seq, 5);
    assert_int_equal(g.rec.inode, 0);
    assert_true(lr_vv_equal(&g.rec.vv, &r.rec.vv));
    assert_memory_equal(g.device.b, p.b, LR_DEVICE_ID_LEN);
    assert_int_equal(g.flags, 0);
    assert_int_equal(g.rec.nchunks, 3);
    struct lr_hash bh;
    lr_index_blocks_hash(r.rec.chunks, 3, &bh);
    assert_memory_equal(g.rec.blocks_hash.b, bh.b, LR_HASH_LEN);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(g.rec.chunks[i].off, i * 100);
        assert_int_equal(g.rec.chunks[i].len, 100);
        assert_memory_equal(g.rec.chunks[i].hash.b, r.rec.chunks[i].hash.b, LR_HASH_LEN);
    }
    lr_remote_rec_release(&g);
    /* The other peer has nothing. */
    assert_int_equal(
        lr_index_remote_get(f->ix, FOLDER, &q, r.rec.path, r.rec.path_len, 0, &g, &err),
        LR_ENOTFOUND);

    /* Symlink, directory, tombstone, unknown type. */
    struct lr_remote_rec l = {0}, d = {0}, t = {0}, u = {0};
    l.rec.path = (uint8_t *)"link";
    l.rec.path_len = 4;
    l.rec.type = LR_FT_SYMLINK;
    l.rec.target = (uint8_t *)"../x";
    l.rec.target_len = 4;
    l.rec.seq = 6;
    assert_int_equal(lr_vv_set(&l.rec.vv, 1, 1), 0);
    d = l;
    d.rec.path = (uint8_t *)"dir";
    d.rec.path_len = 3;
    d.rec.type = LR_FT_DIR;
    d.rec.target = NULL;
    d.rec.target_len = 0;
    d.rec.seq = 7;
    t = d;
    t.rec.path = (uint8_t *)"gone";
    t.rec.path_len = 4;
    t.rec.type = LR_FT_FILE;
    t.rec.deleted = true;
    t.rec.seq = 8;
    u = d;
    u.rec.path = (uint8_t *)"future";
    u.rec.path_len = 6;
    u.flags = LR_RREC_UNKNOWN_TYPE;
    u.wire_type = 9;
    u.rec.seq = 9;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &l, &err), 0);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &d, &err), 0);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &t, &err), 0);
    u.wire_type = 2; /* a known type number with the unknown flag: invalid */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &u, &err), LR_EBADVAL);
    u.wire_type = 9;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &u, &err), 0);
    struct lr_remote_list rl;
    assert_int_equal(lr_index_remote_list(f->ix, FOLDER, &p, NULL, 0, 100, 0, &rl, &err), 0);
    assert_int_equal(rl.n, 5);
    /* Path order: a/..., dir, future, gone, link. */
    assert_int_equal(rl.v[0].rec.type, LR_FT_FILE);
    assert_string_equal((char *)rl.v[1].rec.path, "dir");
    assert_int_equal(rl.v[1].rec.type, LR_FT_DIR);
    assert_string_equal((char *)rl.v[2].rec.path, "future");
    assert_int_equal(rl.v[2].flags, LR_RREC_UNKNOWN_TYPE);
    assert_int_equal(rl.v[2].rec.type, LR_FT_UNKNOWN);
    assert_int_equal(rl.v[2].wire_type, 9);
    assert_true(rl.v[3].rec.deleted);
    assert_int_equal(rl.v[3].rec.seq, 8);
    assert_string_equal((char *)rl.v[4].rec.target, "../x");
    lr_remote_list_release(&rl);
    /* Paging with a bound. */
    assert_int_equal(
        lr_index_remote_list(f->ix, FOLDER, &p, (const uint8_t *)"dir", 3, 2, 0, &rl, &err), 0);
    assert_int_equal(rl.n, 2);
    assert_string_equal((char *)rl.v[0].rec.path, "future");
    lr_remote_list_release(&rl);

    /* Needs: the file, link, dir and tombstone; the unknown entry never. */
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 4);
    assert_int_equal(ns.files, 1);
    assert_int_equal(ns.deletes, 1);
    assert_int_equal(ns.bytes, 300);

    /* Replace the file with a newer, smaller version: chunks replaced. */
    lr_remote_rec_release(&r);
    rfile(&r, "a/\xff-bin", 10, 1, 7, 0x55);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &r, &err), 0);
    assert_int_equal(
        lr_index_remote_get(f->ix, FOLDER, &p, r.rec.path, r.rec.path_len, LR_IX_CHUNKS, &g, &err),
        0);
    assert_int_equal(g.rec.nchunks, 1);
    assert_int_equal(g.rec.chunks[0].hash.b[3], 0x55);
    lr_remote_rec_release(&g);
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 4);
    assert_int_equal(ns.bytes, 7);

    /* Invalid records are refused before any write. */
    struct lr_remote_rec bad;
    rfile(&bad, "x", 11, 2, 10, 1);
    bad.rec.chunks[1].off = 11;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &bad, &err), LR_EBADVAL);
    bad.rec.chunks[1].off = 10;
    bad.rec.deleted = true;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &bad, &err), LR_EBADVAL);
    bad.rec.deleted = false;
    bad.rec.seq = 0;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &bad, &err), LR_EBADVAL);
    bad.rec.seq = (uint64_t)INT64_MAX + 1;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &bad, &err), LR_EBADVAL);
    bad.rec.seq = 11;
    bad.rec.path[0] = '/';
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &bad, &err), LR_EBADPATH);
    bad.rec.path[0] = 'x';
    bad.blk_first = 1; /* segment of a list given as if whole */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 99, &bad, &err), LR_EBADVAL);
    lr_remote_rec_release(&bad);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_int_equal(st.max_seq, 10);

    /* What we told the peer: stored, independent of its own state. */
    assert_int_equal(lr_index_remote_set_sent(f->ix, FOLDER, &q, 1234, 56, &err), 0);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &q, &st, &err), 0);
    assert_true(st.sent_index_id == 1234 && st.sent_seq == 56 && st.index_id == 0);

    /* Folder removal takes everything with it. */
    assert_int_equal(lr_index_folder_remove(f->ix, FOLDER, &err), 0);
    assert_int_equal(lr_index_folder_ensure(f->ix, FOLDER, 0x1111, NULL, &err), 0);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_true(st.index_id == 0 && st.gen == 0);
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 0);
    sqlite3 *s;
    assert_int_equal(sqlite3_open(f->db, &s), SQLITE_OK);
    sqlite3_stmt *q1;
    assert_int_equal(sqlite3_prepare_v2(s,
                                        "SELECT (SELECT count(*) FROM rfiles) + (SELECT count(*) "
                                        "FROM rchunks) + (SELECT count(*) FROM need)",
                                        -1, &q1, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q1), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q1, 0), 0);
    sqlite3_finalize(q1);
    sqlite3_close(s);
    lr_vv_release(&l.rec.vv);
    lr_remote_rec_release(&r);
}

/* One INDEX message: a transaction with puts (and begin/end as flagged). */
static void put_batch(struct lr_index *ix, const struct lr_device_id *p, uint64_t index_id,
                      bool first, bool last, const char *pfx, int from, int to, uint64_t *seq,
                      uint64_t *dropped)
{
    struct lr_err err = {0};
    char name[64];
    assert_int_equal(lr_index_begin(ix, &err), 0);
    if (first)
        assert_int_equal(lr_index_remote_full_begin(ix, FOLDER, p, index_id, &err), 0);
    for (int i = from; i < to; i++) {
        struct lr_remote_rec r;
        snprintf(name, sizeof(name), "%s%03d", pfx, i);
        rfile(&r, name, ++*seq, 1, 10, (uint8_t)i);
        assert_int_equal(lr_index_remote_put(ix, FOLDER, p, index_id, &r, &err), 0);
        lr_remote_rec_release(&r);
    }
    if (last)
        assert_int_equal(lr_index_remote_burst_end(ix, FOLDER, p, index_id, dropped, &err), 0);
    assert_int_equal(lr_index_commit(ix, &err), 0);
}

static uint64_t count_remote(struct lr_index *ix, const struct lr_device_id *p)
{
    struct lr_err err = {0};
    uint64_t n = 0;
    uint8_t last[256];
    size_t ll = 0;
    for (;;) {
        struct lr_remote_list l;
        assert_int_equal(lr_index_remote_list(ix, FOLDER, p, last, ll, 7, 0, &l, &err), 0);
        n += l.n;
        if (l.n) {
            ll = l.v[l.n - 1].rec.path_len;
            memcpy(last, l.v[l.n - 1].rec.path, ll);
        }
        size_t got = l.n;
        lr_remote_list_release(&l);
        if (got < 7)
            return n;
    }
}

static void test_full_resend_drops_stale(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_device_id p = dev(1), q = dev(2);
    uint64_t seq = 0, dropped = 99;
    put_batch(f->ix, &p, 500, true, false, "f", 0, 30, &seq, NULL);
    put_batch(f->ix, &p, 500, false, true, "f", 30, 50, &seq, &dropped);
    assert_int_equal(dropped, 0);
    assert_int_equal(count_remote(f->ix, &p), 50);
    /* Another peer holds some of the same paths: they stay needed through it. */
    uint64_t qseq = 0;
    put_batch(f->ix, &q, 600, true, true, "f", 40, 45, &qseq, NULL);
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 50);

    /* The peer's database was recreated: new index ID, full resend of f010..f029 only. */
    struct lr_remote_state st;
    seq = 0;
    put_batch(f->ix, &p, 501, true, false, "f", 10, 20, &seq, NULL);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_true(st.index_id == 501 && st.max_seq == 10 && st.full_pending && st.gen == 2);
    /* Until the burst ends, the old copy stays. */
    assert_int_equal(count_remote(f->ix, &p), 50);
    /* Puts for the old index are refused now. */
    struct lr_remote_rec r;
    rfile(&r, "zz", 1000, 1, 1, 1);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 500, &r, &err), LR_EPROTO);
    lr_remote_rec_release(&r);

    /* "Crash" and reconnect mid-resend: the state is durable, the resend resumes
     * incrementally (same index ID, from max_seq + 1) and its end drops the stale rows. */
    lr_index_close(f->ix);
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_true(st.index_id == 501 && st.max_seq == 10 && st.full_pending);
    put_batch(f->ix, &p, 501, false, true, "f", 20, 30, &seq, &dropped);
    assert_int_equal(dropped, 30);
    assert_int_equal(count_remote(f->ix, &p), 20);
    assert_int_equal(count_remote(f->ix, &q), 5);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_true(st.index_id == 501 && st.max_seq == 20 && !st.full_pending);
    /* Needs: f010..f029 from p, f040..f044 from q (dropped rows re-evaluated). */
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 25);
    assert_int_equal(ns.bytes, 250);
    struct lr_remote_rec g;
    assert_int_equal(
        lr_index_remote_get(f->ix, FOLDER, &p, (const uint8_t *)"f005", 4, 0, &g, &err),
        LR_ENOTFOUND);
    /* A later incremental burst drops nothing. */
    put_batch(f->ix, &p, 501, false, true, "g", 0, 3, &seq, &dropped);
    assert_int_equal(dropped, 0);
    assert_int_equal(count_remote(f->ix, &p), 23);
    /* An empty full index (FIRST|LAST) of an emptied folder drops all. */
    seq = 0;
    put_batch(f->ix, &p, 502, true, true, "h", 0, 0, &seq, &dropped);
    assert_int_equal(dropped, 23);
    assert_int_equal(count_remote(f->ix, &p), 0);
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 5);
    assert_int_equal(lr_index_remote_burst_end(f->ix, FOLDER, &p, 999, NULL, &err), LR_EPROTO);
    /* Forget q. */
    assert_int_equal(lr_index_remote_forget(f->ix, FOLDER, &q, &err), 0);
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 0);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &q, &st, &err), 0);
    assert_int_equal(st.index_id, 0);
    assert_int_equal(lr_index_remote_forget(f->ix, FOLDER, &q, &err), 0);
}

/* Hostile case 22: records and the sequence state commit together or not at all. */
static void test_state_atomic_with_records(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_device_id p = dev(3);
    uint64_t seq = 0;
    put_batch(f->ix, &p, 42, true, true, "base", 0, 5, &seq, NULL);
    lr_index_close(f->ix);
    f->ix = NULL;
    /* A child process crashes (no commit, no close) in the middle of a batch. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct lr_index *ix;
        if (lr_index_open(f->db, &ix, NULL) || lr_index_begin(ix, NULL))
            _exit(2);
        for (int i = 0; i < 100; i++) {
            struct lr_remote_rec r;
            char name[32];
            snprintf(name, sizeof(name), "crash%03d", i);
            rfile(&r, name, 6 + (uint64_t)i, 1, 10, 1);
            if (lr_index_remote_put(ix, FOLDER, &p, 42, &r, NULL))
                _exit(3);
            lr_remote_rec_release(&r);
        }
        _exit(0); /* as if killed: the transaction was never committed */
    }
    int wst;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
    struct lr_remote_state st;
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_int_equal(st.max_seq, 5);
    assert_int_equal(count_remote(f->ix, &p), 5);
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 5);
    /* Rolled back in-process too. */
    assert_int_equal(lr_index_begin(f->ix, &err), 0);
    struct lr_remote_rec r;
    rfile(&r, "rolled", 6, 1, 10, 1);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 42, &r, &err), 0);
    lr_index_rollback(f->ix);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_int_equal(st.max_seq, 5);
    /* And the same entry is accepted again afterwards (sequence not consumed). */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 42, &r, &err), 0);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_int_equal(st.max_seq, 6);
    lr_remote_rec_release(&r);
    /* A full begin rolled back leaves the old index ID and generation. */
    assert_int_equal(lr_index_begin(f->ix, &err), 0);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &p, 43, &err), 0);
    lr_index_rollback(f->ix);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_true(st.index_id == 42 && st.max_seq == 6 && st.gen == 1 && !st.full_pending);
}

/* A chunk list split over several INDEX messages. */
static void test_segments(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_device_id p = dev(4);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &p, 7, &err), 0);
    struct lr_remote_rec whole, seg;
    rfile(&whole, "big", 3, 10, 1000, 0x66);
    /* Segment 0: blocks 0..3. */
    seg = whole;
    seg.blk_total = 10;
    seg.blk_first = 0;
    seg.rec.nchunks = 4;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 7, &seg, &err), 0);
    struct lr_remote_state st;
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_int_equal(st.max_seq, 0); /* not complete: a reconnect resends it */
    struct lr_remote_rec g;
    assert_int_equal(
        lr_index_remote_get(f->ix, FOLDER, &p, (const uint8_t *)"big", 3, LR_IX_CHUNKS, &g, &err),
        0);
    assert_int_equal(g.flags, LR_RREC_PARTIAL);
    assert_int_equal(g.rec.nchunks, 4);
    lr_remote_rec_release(&g);
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 0); /* cannot be fetched yet */
    /* A segment that does not continue: wrong start, wrong offset, other vv. */
    seg.rec.chunks = whole.rec.chunks + 5;
    seg.blk_first = 5;
    seg.rec.nchunks = 2;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 7, &seg, &err), LR_EPROTO);
    seg.rec.chunks = whole.rec.chunks + 4;
    seg.blk_first = 4;
    seg.rec.chunks[0].off = 4001;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 7, &seg, &err), LR_EBADVAL);
    seg.rec.chunks[0].off = 4000;
    struct lr_vv keep = seg.rec.vv, other = {0};
    assert_int_equal(lr_vv_set(&other, 0x2222, 4), 0);
    seg.rec.vv = other;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 7, &seg, &err), LR_EPROTO);
    seg.rec.vv = keep;
    lr_vv_release(&other);
    seg.rec.mode = 0600;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 7, &seg, &err), LR_EPROTO);
    seg.rec.mode = 0640;
    /* Continuation: blocks 4..5 then 6..9. */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 7, &seg, &err), 0);
    seg.rec.chunks = whole.rec.chunks + 6;
    seg.blk_first = 6;
    seg.rec.nchunks = 4;
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 7, &seg, &err), 0);
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &st, &err), 0);
    assert_int_equal(st.max_seq, 3);
    assert_int_equal(
        lr_index_remote_get(f->ix, FOLDER, &p, (const uint8_t *)"big", 3, LR_IX_CHUNKS, &g, &err),
        0);
    assert_int_equal(g.flags, 0);
    assert_int_equal(g.rec.nchunks, 10);
    struct lr_hash bh;
    lr_index_blocks_hash(whole.rec.chunks, 10, &bh);
    assert_memory_equal(g.rec.blocks_hash.b, bh.b, LR_HASH_LEN);
    for (size_t i = 0; i < 10; i++) {
        assert_int_equal(g.rec.chunks[i].off, i * 1000);
        assert_memory_equal(g.rec.chunks[i].hash.b, whole.rec.chunks[i].hash.b, LR_HASH_LEN);
    }
    lr_remote_rec_release(&g);
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 1);
    assert_int_equal(ns.bytes, 10000);
    /* Paged reads of the stored list, at every page size. */
    for (size_t pg = 1; pg <= 11; pg++) {
        struct lr_chunk buf[11];
        uint64_t first = 0, off = 0;
        for (;;) {
            size_t n = 99;
            assert_int_equal(lr_index_remote_chunks(f->ix, FOLDER, &p, (const uint8_t *)"big", 3,
                                                    &bh, first, off, pg, buf, &n, &err),
                             0);
            assert_true(n <= pg);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(buf[i].off, whole.rec.chunks[first + i].off);
                assert_int_equal(buf[i].len, 1000);
                assert_memory_equal(buf[i].hash.b, whole.rec.chunks[first + i].hash.b, LR_HASH_LEN);
            }
            first += n;
            if (n)
                off = buf[n - 1].off + buf[n - 1].len;
            if (n < pg)
                break;
        }
        assert_int_equal(first, 10);
    }
    {
        struct lr_chunk buf[2];
        size_t n = 7;
        struct lr_hash other_h;
        memset(other_h.b, 1, LR_HASH_LEN);
        assert_int_equal(lr_index_remote_chunks(f->ix, FOLDER, &p, (const uint8_t *)"big", 3,
                                                &other_h, 0, 0, 2, buf, &n, &err),
                         LR_ENOTFOUND);
        assert_int_equal(n, 0);
        assert_int_equal(lr_index_remote_chunks(f->ix, FOLDER, &p, (const uint8_t *)"small", 5,
                                                NULL, 0, 0, 2, buf, &n, &err),
                         LR_ENOTFOUND);
        assert_int_equal(lr_index_remote_chunks(f->ix, FOLDER, &p, (const uint8_t *)"big", 3, NULL,
                                                9, 9000, 2, buf, &n, &err),
                         0);
        assert_int_equal(n, 1);
        assert_int_equal(buf[0].off, 9000);
    }
    /* A segment after completion is refused (seq not above max). */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 7, &seg, &err), LR_EPROTO);
    seg.rec.chunks = whole.rec.chunks; /* restore for release */
    seg.rec.nchunks = 10;
    lr_remote_rec_release(&whole);
}

/* The stored max sequence never passes an unfinished segmented record, whatever comes next. */
static void put_seg(struct lr_index *ix, const struct lr_device_id *p, const char *path,
                    uint64_t seq, size_t first, size_t n, size_t total, int want)
{
    struct lr_err err = {0};
    struct lr_remote_rec w, seg;
    rfile(&w, path, seq, total, 100, 0x77);
    seg = w;
    seg.rec.chunks = w.rec.chunks + first;
    seg.rec.nchunks = n;
    seg.blk_first = first;
    seg.blk_total = total;
    assert_int_equal(lr_index_remote_put(ix, FOLDER, p, 8, &seg, &err), want);
    lr_remote_rec_release(&w);
}

static void expect_state(struct lr_index *ix, const struct lr_device_id *p, uint64_t max,
                         uint64_t open)
{
    struct lr_err err = {0};
    struct lr_remote_state st;
    assert_int_equal(lr_index_remote_state(ix, FOLDER, p, &st, &err), 0);
    assert_int_equal(st.max_seq, max);
    assert_int_equal(st.open_seq, open);
}

static void test_segment_progress(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_device_id p = dev(6);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &p, 8, &err), 0);
    put_seg(f->ix, &p, "a", 1, 0, 1, 1, 0);
    expect_state(f->ix, &p, 1, 0);
    put_seg(f->ix, &p, "big", 2, 0, 2, 5, 0); /* unfinished */
    expect_state(f->ix, &p, 1, 2);
    put_seg(f->ix, &p, "big", 2, 2, 1, 5, 0); /* still unfinished */
    expect_state(f->ix, &p, 1, 2);
    /* Against the protocol, the peer moves on: stored, but max_seq holds. */
    put_seg(f->ix, &p, "c", 3, 0, 1, 1, 0);
    put_seg(f->ix, &p, "d", 4, 0, 1, 3, 0); /* another unfinished one: the older holds */
    expect_state(f->ix, &p, 1, 2);
    /* Reconnect: state durable; the peer resends from 2. "big" was superseded
     * meanwhile: other entries first, then big's new version at seq 5. */
    lr_index_close(f->ix);
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
    expect_state(f->ix, &p, 1, 2);
    put_seg(f->ix, &p, "c", 3, 0, 1, 1, 0);
    expect_state(f->ix, &p, 1, 2);
    put_seg(f->ix, &p, "big", 5, 0, 5, 5, 0); /* the path is whole again */
    expect_state(f->ix, &p, 5, 0);
    /* An honest peer would also resend d (seq 4 > 1) in this burst; this one
     * did not, so d's partial row stays unusable and is never needed. */
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 3); /* a, big, c */
    /* Completing in the normal order. */
    put_seg(f->ix, &p, "e", 6, 0, 3, 6, 0);
    expect_state(f->ix, &p, 5, 6);
    put_seg(f->ix, &p, "e", 6, 3, 3, 6, 0);
    expect_state(f->ix, &p, 6, 0);
    /* A full begin clears an unfinished record's hold. */
    put_seg(f->ix, &p, "g", 7, 0, 1, 4, 0);
    expect_state(f->ix, &p, 6, 7);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &p, 8, &err), 0);
    expect_state(f->ix, &p, 0, 0);
}

/* Local puts re-evaluate need; holders by vv and by blocks hash. */
/*
 * Reconciliation (protocol §6.11): adopted records join the replacement's
 * generation without sequence checks and survive its end; set_vv changes
 * only the vector (no new sequence) and re-evaluates need; seq_raise moves
 * max_seq up only.
 */
static void test_adopt_and_silent_vv(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_device_id p = dev(4);
    /* Our own record of "same" and of "old", as a scan stores them. */
    struct lr_remote_rec mine, theirs, other;
    rfile(&mine, "same", 1, 3, 100, 0x30);
    lr_vv_release(&mine.rec.vv);
    assert_int_equal(lr_vv_set(&mine.rec.vv, 0x1111, 500), 0);
    uint64_t seq_before = 0;
    assert_int_equal(lr_index_file_put(f->ix, FOLDER, &mine.rec, &seq_before, &err), 0);

    /* Not inside a replacement: refused. */
    rfile(&theirs, "same", 9, 3, 100, 0x30);
    lr_vv_release(&theirs.rec.vv);
    assert_int_equal(lr_vv_set(&theirs.rec.vv, 0x2222, 700), 0);
    assert_int_equal(lr_index_remote_adopt(f->ix, FOLDER, &p, 5, &theirs, &err), LR_EPROTO);

    /* An older copy of the peer's index holds "gone": the replacement drops it. */
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &p, 5, &err), 0);
    rfile(&other, "gone", 3, 1, 10, 0x31);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 5, &other, &err), 0);
    assert_int_equal(lr_index_remote_burst_end(f->ix, FOLDER, &p, 5, NULL, &err), 0);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &p, 5, &err), 0);
    /* Wrong index, a segment: refused. */
    assert_int_equal(lr_index_remote_adopt(f->ix, FOLDER, &p, 6, &theirs, &err), LR_EPROTO);
    theirs.blk_first = 1;
    theirs.blk_total = 4;
    assert_int_equal(lr_index_remote_adopt(f->ix, FOLDER, &p, 5, &theirs, &err), LR_EBADVAL);
    theirs.blk_first = 0;
    theirs.blk_total = 0;
    assert_int_equal(lr_index_remote_adopt(f->ix, FOLDER, &p, 5, &theirs, &err), 0);

    /* Their vector {2222:700} is concurrent with ours {1111:500}: needed until
     * merged ("gone" is needed until the replacement ends). */
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 2);
    struct lr_vv m = {0};
    assert_int_equal(lr_vv_set(&m, 0x1111, 500), 0);
    assert_int_equal(lr_vv_set(&m, 0x2222, 700), 0);
    assert_int_equal(lr_index_file_set_vv(f->ix, FOLDER, (const uint8_t *)"same", 4, &m, &err), 0);
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 1);
    struct lr_file_rec got;
    assert_int_equal(lr_index_file_get(f->ix, FOLDER, (const uint8_t *)"same", 4, 0, &got, &err),
                     0);
    assert_true(lr_vv_equal(&got.vv, &m));
    assert_int_equal(got.seq, seq_before); /* no new sequence */
    lr_file_rec_release(&got);
    struct lr_folder_info info;
    assert_int_equal(lr_index_folder_get(f->ix, FOLDER, &info, &err), 0);
    assert_int_equal(info.max_seq, seq_before);
    assert_int_equal(lr_index_file_set_vv(f->ix, FOLDER, (const uint8_t *)"nope", 4, &m, &err),
                     LR_ENOTFOUND);
    struct lr_vv empty = {0};
    assert_int_equal(lr_index_file_set_vv(f->ix, FOLDER, (const uint8_t *)"same", 4, &empty, &err),
                     LR_EBADVAL);

    /* The replacement ends: the adopted record stays, "gone" is forgotten. */
    assert_int_equal(lr_index_remote_seq_raise(f->ix, FOLDER, &p, 6, 40, &err), LR_EPROTO);
    assert_int_equal(lr_index_remote_seq_raise(f->ix, FOLDER, &p, 5, 40, &err), 0);
    assert_int_equal(lr_index_remote_seq_raise(f->ix, FOLDER, &p, 5, 20, &err), 0);
    uint64_t dropped = 0;
    assert_int_equal(lr_index_remote_burst_end(f->ix, FOLDER, &p, 5, &dropped, &err), 0);
    assert_int_equal(dropped, 1);
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 0);
    struct lr_remote_state rs;
    assert_int_equal(lr_index_remote_state(f->ix, FOLDER, &p, &rs, &err), 0);
    assert_int_equal(rs.max_seq, 40); /* raised, never lowered */
    assert_false(rs.full_pending);
    struct lr_remote_rec rr;
    assert_int_equal(
        lr_index_remote_get(f->ix, FOLDER, &p, (const uint8_t *)"same", 4, LR_IX_CHUNKS, &rr, &err),
        0);
    assert_int_equal(rr.rec.nchunks, 3);
    assert_true(lr_vv_equal(&rr.rec.vv, &theirs.rec.vv));
    lr_remote_rec_release(&rr);
    assert_int_equal(
        lr_index_remote_get(f->ix, FOLDER, &p, (const uint8_t *)"gone", 4, 0, &rr, &err),
        LR_ENOTFOUND);
    /* Increments continue above the raised sequence. */
    lr_remote_rec_release(&other);
    rfile(&other, "later", 41, 1, 10, 0x32);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 5, &other, &err), 0);
    lr_vv_release(&m);
    lr_remote_rec_release(&mine);
    lr_remote_rec_release(&theirs);
    lr_remote_rec_release(&other);
}

static void test_need_local_and_holders(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_device_id p = dev(1), q = dev(2), s3 = dev(3);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &p, 1, &err), 0);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &q, 2, &err), 0);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &s3, 3, &err), 0);
    struct lr_remote_rec a, b, c;
    rfile(&a, "doc", 1, 2, 50, 0x10); /* {2222:1} */
    rfile(&b, "doc", 1, 2, 50, 0x10);
    rfile(&c, "doc", 2, 1, 9, 0x20); /* {2222:2}: newer */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 1, &a, &err), 0);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &q, 2, &b, &err), 0);
    struct lr_need_list nl;
    assert_int_equal(lr_index_need_list(f->ix, FOLDER, NULL, 0, 10, LR_IX_CHUNKS, &nl, &err), 0);
    assert_int_equal(nl.n, 1);
    assert_int_equal(nl.v[0].flags, LR_NEED_NO_LOCAL);
    assert_int_equal(nl.v[0].ncand, 1);
    assert_int_equal(nl.v[0].cand[0].nholders, 2);
    assert_memory_equal(nl.v[0].cand[0].holders[0].b, p.b, LR_DEVICE_ID_LEN);
    assert_memory_equal(nl.v[0].cand[0].holders[1].b, q.b, LR_DEVICE_ID_LEN);
    assert_int_equal(nl.v[0].cand[0].r.rec.nchunks, 2);
    lr_need_list_release(&nl);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &s3, 3, &c, &err), 0);
    assert_int_equal(lr_index_need_list(f->ix, FOLDER, NULL, 0, 10, 0, &nl, &err), 0);
    assert_int_equal(nl.n, 1);
    assert_int_equal(nl.v[0].ncand, 1);
    assert_int_equal(nl.v[0].cand[0].nholders, 1);
    assert_memory_equal(nl.v[0].cand[0].holders[0].b, s3.b, LR_DEVICE_ID_LEN);
    assert_int_equal(nl.v[0].cand[0].r.rec.size, 9);
    assert_null(nl.v[0].cand[0].r.rec.chunks);
    lr_need_list_release(&nl);

    struct lr_device_list dl;
    assert_int_equal(lr_index_remote_holders(f->ix, FOLDER, (const uint8_t *)"doc", 3, &a.rec.vv,
                                             NULL, &dl, &err),
                     0);
    assert_int_equal(dl.n, 2);
    lr_device_list_release(&dl);
    struct lr_hash bh;
    lr_index_blocks_hash(a.rec.chunks, 2, &bh);
    assert_int_equal(
        lr_index_remote_holders(f->ix, FOLDER, (const uint8_t *)"doc", 3, NULL, &bh, &dl, &err), 0);
    assert_int_equal(dl.n, 2);
    lr_device_list_release(&dl);
    assert_int_equal(lr_index_remote_holders(f->ix, FOLDER, (const uint8_t *)"doc", 3, &c.rec.vv,
                                             &bh, &dl, &err),
                     0);
    assert_int_equal(dl.n, 0);
    lr_device_list_release(&dl);
    assert_int_equal(
        lr_index_remote_holders(f->ix, FOLDER, (const uint8_t *)"doc", 3, NULL, NULL, &dl, &err),
        0);
    assert_int_equal(dl.n, 3);
    assert_memory_equal(dl.v[2].b, s3.b, LR_DEVICE_ID_LEN);
    lr_device_list_release(&dl);
    assert_int_equal(
        lr_index_remote_holders(f->ix, FOLDER, (const uint8_t *)"nope", 4, NULL, NULL, &dl, &err),
        0);
    assert_int_equal(dl.n, 0);

    struct lr_device_list pl;
    assert_int_equal(lr_index_remote_peers(f->ix, FOLDER, &pl, &err), 0);
    assert_int_equal(pl.n, 3);
    assert_memory_equal(pl.v[0].b, p.b, LR_DEVICE_ID_LEN);
    assert_memory_equal(pl.v[2].b, s3.b, LR_DEVICE_ID_LEN);
    lr_device_list_release(&pl);
    /* We apply c: the local record equals it, nothing is needed. */
    struct lr_file_rec lf = c.rec;
    lf.seq = 0;
    assert_int_equal(lr_index_file_put(f->ix, FOLDER, &lf, NULL, &err), 0);
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 0);
    /* A local edit concurrent with a new remote version: conflict with local. */
    struct lr_vv lv = {0};
    lr_vv_copy(&lv, &c.rec.vv);
    assert_int_equal(lr_vv_set(&lv, 0x1111, 5), 0);
    lf.vv = lv;
    assert_int_equal(lr_index_file_put(f->ix, FOLDER, &lf, NULL, &err), 0);
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 0); /* ours is newer than everything */
    struct lr_remote_rec d;
    rfile(&d, "doc", 3, 1, 4, 0x30); /* {2222:3} vs ours {1111:5, 2222:2} */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 1, &d, &err), 0);
    assert_int_equal(lr_index_need_list(f->ix, FOLDER, NULL, 0, 10, 0, &nl, &err), 0);
    assert_int_equal(nl.n, 1);
    assert_int_equal(nl.v[0].flags, LR_NEED_LOCAL_CONFLICT);
    lr_need_list_release(&nl);
    /* Two peers with concurrent versions: both returned, flagged. */
    struct lr_remote_rec e;
    rfile(&e, "doc", 4, 1, 5, 0x40);
    lr_vv_release(&e.rec.vv);
    assert_int_equal(lr_vv_set(&e.rec.vv, 0x3333, 1), 0); /* {3333:1}: concurrent with d */
    assert_int_equal(lr_vv_set(&e.rec.vv, 0x1111, 5), 0);
    assert_int_equal(lr_vv_set(&e.rec.vv, 0x2222, 2), 0); /* > ours */
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &q, 2, &e, &err), 0);
    assert_int_equal(lr_index_need_list(f->ix, FOLDER, NULL, 0, 10, 0, &nl, &err), 0);
    assert_int_equal(nl.n, 1);
    assert_int_equal(nl.v[0].flags, LR_NEED_CONFLICT | LR_NEED_LOCAL_CONFLICT);
    assert_int_equal(nl.v[0].ncand, 2);
    lr_need_list_release(&nl);
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 1);
    lr_vv_release(&lv);
    lr_remote_rec_release(&a);
    lr_remote_rec_release(&b);
    lr_remote_rec_release(&c);
    lr_remote_rec_release(&d);
    lr_remote_rec_release(&e);
}

/* Hostile database contents are refused on read and on need evaluation, not trusted. */
static void test_remote_corrupt_rows(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_device_id p = dev(5);
    assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &p, 3, &err), 0);
    struct lr_remote_rec r, g;
    rfile(&r, "victim", 1, 2, 10, 3);
    assert_int_equal(lr_index_remote_put(f->ix, FOLDER, &p, 3, &r, &err), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    static const char *const bad[] = {
        "UPDATE rfiles SET vv = x'0102'",
        "UPDATE rfiles SET flags = 64",
        "UPDATE rfiles SET type = 7",
        "UPDATE rfiles SET blocks = x'00'",
        "UPDATE rchunks SET hash = x'00' WHERE idx = 1",
        "UPDATE rfiles SET nblk = 3",
    };
    static const char *const fix[] = {
        NULL,
        "UPDATE rfiles SET flags = 0",
        "UPDATE rfiles SET type = 0",
        NULL,
        "UPDATE rchunks SET hash = zeroblob(32)",
        "UPDATE rfiles SET nblk = 2",
    };
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT vv, blocks FROM rfiles", -1, &s, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    uint8_t vv[64], blocks[LR_HASH_LEN];
    int vvn = sqlite3_column_bytes(s, 0);
    assert_true(vvn <= 64);
    memcpy(vv, sqlite3_column_blob(s, 0), (size_t)vvn);
    memcpy(blocks, sqlite3_column_blob(s, 1), LR_HASH_LEN);
    sqlite3_finalize(s);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sqlite3_exec(db, bad[i], NULL, NULL, NULL), SQLITE_OK);
        int rc = lr_index_remote_get(f->ix, FOLDER, &p, r.rec.path, r.rec.path_len, LR_IX_CHUNKS,
                                     &g, &err);
        assert_int_equal(rc, LR_EBADVAL);
        assert_null(g.rec.path);
        if (i < 4) { /* the need walk reads the same columns */
            struct lr_need_list nl;
            assert_int_equal(lr_index_need_list(f->ix, FOLDER, NULL, 0, 10, 0, &nl, &err),
                             LR_EBADVAL);
            assert_int_equal(nl.n, 0);
        }
        if (fix[i]) {
            assert_int_equal(sqlite3_exec(db, fix[i], NULL, NULL, NULL), SQLITE_OK);
        } else {
            assert_int_equal(
                sqlite3_prepare_v2(db, "UPDATE rfiles SET vv = ?1, blocks = ?2", -1, &s, NULL),
                SQLITE_OK);
            sqlite3_bind_blob(s, 1, vv, vvn, SQLITE_STATIC);
            sqlite3_bind_blob(s, 2, blocks, LR_HASH_LEN, SQLITE_STATIC);
            assert_int_equal(sqlite3_step(s), SQLITE_DONE);
            sqlite3_finalize(s);
        }
        assert_int_equal(lr_index_remote_get(f->ix, FOLDER, &p, r.rec.path, r.rec.path_len,
                                             LR_IX_CHUNKS, &g, &err),
                         0);
        lr_remote_rec_release(&g);
    }
    sqlite3_close(db);
    /* Zero-sized pages and unknown peers. */
    struct lr_remote_list rl;
    struct lr_device_id nobody = dev(77);
    assert_int_equal(lr_index_remote_list(f->ix, FOLDER, &p, NULL, 0, 0, 0, &rl, &err), 0);
    assert_int_equal(rl.n, 0);
    assert_int_equal(lr_index_remote_list(f->ix, FOLDER, &nobody, NULL, 0, 10, 0, &rl, &err), 0);
    assert_int_equal(rl.n, 0);
    assert_int_equal(
        lr_index_remote_get(f->ix, FOLDER, &nobody, r.rec.path, r.rec.path_len, 0, &g, &err),
        LR_ENOTFOUND);
    struct lr_need_list nl;
    assert_int_equal(lr_index_need_list(f->ix, FOLDER, NULL, 0, 0, 0, &nl, &err), 0);
    assert_int_equal(nl.n, 0);
    lr_remote_rec_release(&r);
}

/* ---- need against a brute-force oracle ----------------------------------------------- */

#define NPEERS 3
#define NPATHS 48

struct mver {
    bool present, deleted, unknown;
    int type;
    uint32_t ctr[NIDS];
    uint32_t size; /* live files: one chunk of this length (0: no chunk) */
    uint8_t tag;
};

struct model {
    struct mver local[NPATHS];
    struct mver rem[NPEERS][NPATHS];
    uint64_t seq[NPEERS], index_id[NPEERS];
};

static void path_name(char *b, size_t n, int i)
{
    /* Varied depth so path order differs from name order. */
    if (i % 3 == 0)
        snprintf(b, n, "d%d/f%02d", i % 5, i);
    else if (i % 3 == 1)
        snprintf(b, n, "d%d.x%02d", i % 4, i);
    else
        snprintf(b, n, "f%02d", i);
}

static void rand_ver(struct mver *v, const struct mver *base)
{
    memset(v, 0, sizeof(*v));
    v->present = true;
    if (base && base->present && rand() % 2) {
        memcpy(v->ctr, base->ctr, sizeof(v->ctr));
        v->ctr[rand() % NIDS]++;
    } else {
        for (int i = 0; i < NIDS; i++)
            v->ctr[i] = (uint32_t)(rand() % 3 == 0 ? rand() % 3 : 0);
    }
    int k = rand() % 10;
    v->deleted = k == 0;
    v->type = k == 1 ? LR_FT_DIR : k == 2 ? LR_FT_SYMLINK : LR_FT_FILE;
    if (!v->deleted && v->type == LR_FT_FILE) {
        v->size = (uint32_t)(rand() % 4) * 100;
        /* Same vector: same content, except now and then. */
        uint32_t h = 0;
        for (int i = 0; i < NIDS; i++)
            h = h * 31 + v->ctr[i];
        v->tag = rand() % 8 == 0 ? (uint8_t)rand() : (uint8_t)h;
        if (v->size == 0)
            v->tag = 0;
    }
}

static void to_rec(const struct mver *v, int i, struct lr_file_rec *r)
{
    char name[32];
    path_name(name, sizeof(name), i);
    memset(r, 0, sizeof(*r));
    r->path = (uint8_t *)strdup(name);
    r->path_len = strlen(name);
    r->type = (enum lr_ftype)v->type;
    r->deleted = v->deleted;
    vv_from(&r->vv, v->ctr);
    if (!v->deleted && v->type == LR_FT_SYMLINK) {
        r->target = (uint8_t *)strdup("t");
        r->target_len = 1;
    }
    if (!v->deleted && v->type == LR_FT_FILE && v->size) {
        r->size = v->size;
        r->chunks = calloc(1, sizeof(r->chunks[0]));
        r->nchunks = 1;
        r->chunks[0].len = v->size;
        memset(r->chunks[0].hash.b, v->tag, LR_HASH_LEN);
        r->chunks[0].hash.b[1] = (uint8_t)(v->size / 100); /* the blocks hash tells sizes apart */
        lr_index_blocks_hash(r->chunks, 1, &r->blocks_hash);
    }
}

static bool live_file(const struct mver *v)
{
    return !v->deleted && v->type == LR_FT_FILE;
}

static bool same_version(const struct mver *a, const struct mver *b)
{
    if (memcmp(a->ctr, b->ctr, sizeof(a->ctr)) || a->deleted != b->deleted || a->type != b->type)
        return false;
    if (!live_file(a))
        return true;
    return a->size == b->size && a->tag == b->tag;
}

/* Expected classes for path i: class id per peer (-1: not a newest candidate). */
static int oracle(const struct model *m, int i, int *cls, unsigned *flags)
{
    uint32_t zero[NIDS] = {0};
    const uint32_t *lv = m->local[i].present ? m->local[i].ctr : zero;
    bool cand[NPEERS];
    for (int p = 0; p < NPEERS; p++) {
        const struct mver *v = &m->rem[p][i];
        enum lr_vv_order o = v->present && !v->unknown ? brute_cmp(v->ctr, lv) : LR_VV_EQUAL;
        cand[p] = o == LR_VV_GREATER || o == LR_VV_CONCURRENT;
    }
    *flags = m->local[i].present ? 0 : LR_NEED_NO_LOCAL;
    int ncls = 0, rep[NPEERS];
    for (int p = 0; p < NPEERS; p++) {
        cls[p] = -1;
        if (!cand[p])
            continue;
        bool dom = false;
        for (int q = 0; q < NPEERS; q++)
            if (q != p && m->rem[q][i].present && !m->rem[q][i].unknown &&
                brute_cmp(m->rem[q][i].ctr, m->rem[p][i].ctr) == LR_VV_GREATER)
                dom = true;
        if (dom)
            continue;
        if (brute_cmp(m->rem[p][i].ctr, lv) == LR_VV_CONCURRENT)
            *flags |= LR_NEED_LOCAL_CONFLICT;
        int k = 0;
        while (k < ncls && !same_version(&m->rem[rep[k]][i], &m->rem[p][i]))
            k++;
        if (k == ncls)
            rep[ncls++] = p;
        cls[p] = k;
    }
    if (ncls > 1)
        *flags |= LR_NEED_CONFLICT;
    return ncls;
}

static void model_remote_put(struct lr_index *ix, struct model *m, int p, int i,
                             const struct mver *v)
{
    struct lr_err err = {0};
    struct lr_device_id d = dev((uint8_t)(p + 1));
    struct lr_remote_rec r = {0};
    to_rec(v, i, &r.rec);
    r.rec.seq = ++m->seq[p];
    if (v->unknown) {
        r.flags = LR_RREC_UNKNOWN_TYPE;
        r.wire_type = 17;
        r.rec.type = LR_FT_UNKNOWN;
        free(r.rec.chunks);
        r.rec.chunks = NULL;
        r.rec.nchunks = 0;
        free(r.rec.target);
        r.rec.target = NULL;
        r.rec.target_len = 0;
    }
    assert_int_equal(lr_index_remote_put(ix, FOLDER, &d, m->index_id[p], &r, &err), 0);
    lr_remote_rec_release(&r);
    m->rem[p][i] = *v;
}

/* Compare the need list, at every page size, and the counters, with the oracle. */
static void check_need(struct lr_index *ix, const struct model *m)
{
    struct lr_err err = {0};
    /* Expected, in path order: sort path indexes by path. */
    int order[NPATHS];
    char names[NPATHS][32];
    for (int i = 0; i < NPATHS; i++) {
        order[i] = i;
        path_name(names[i], sizeof(names[i]), i);
    }
    for (int a = 1; a < NPATHS; a++) {
        int x = order[a], b = a;
        while (b > 0 &&
               lr_index_path_cmp((const uint8_t *)names[order[b - 1]], strlen(names[order[b - 1]]),
                                 (const uint8_t *)names[x], strlen(names[x])) > 0) {
            order[b] = order[b - 1];
            b--;
        }
        order[b] = x;
    }
    int want[NPATHS], nwant = 0;
    struct lr_need_stats es = {0};
    for (int k = 0; k < NPATHS; k++) {
        int cls[NPEERS];
        unsigned fl;
        if (oracle(m, order[k], cls, &fl))
            want[nwant++] = order[k];
    }
    for (size_t pg = 1; pg <= (size_t)nwant + 1; pg++) {
        int got = 0;
        uint8_t last[64];
        size_t ll = 0;
        for (;;) {
            struct lr_need_list nl;
            assert_int_equal(lr_index_need_list(ix, FOLDER, last, ll, pg, 0, &nl, &err), 0);
            assert_true(nl.n <= pg);
            for (size_t j = 0; j < nl.n; j++) {
                assert_true(got < nwant);
                int i = want[got++];
                assert_int_equal(nl.v[j].path_len, strlen(names[i]));
                assert_memory_equal(nl.v[j].path, names[i], nl.v[j].path_len);
                if (pg != 1)
                    continue; /* contents checked once */
                int cls[NPEERS];
                unsigned fl;
                int ncls = oracle(m, i, cls, &fl);
                assert_int_equal(nl.v[j].flags, fl);
                assert_int_equal(nl.v[j].ncand, ncls);
                for (size_t c = 0; c < nl.v[j].ncand; c++) {
                    const struct lr_need_cand *cd = &nl.v[j].cand[c];
                    /* Find the oracle class of this candidate by its first holder. */
                    int p0 = cd->holders[0].b[0] - 1;
                    assert_true(p0 >= 0 && p0 < NPEERS && cls[p0] >= 0);
                    const struct mver *v = &m->rem[p0][i];
                    size_t nh = 0;
                    for (int p = 0; p < NPEERS; p++) {
                        if (cls[p] != cls[p0])
                            continue;
                        assert_true(nh < cd->nholders);
                        assert_int_equal(cd->holders[nh].b[0], p + 1);
                        nh++;
                    }
                    assert_int_equal(nh, cd->nholders);
                    struct lr_vv ev = {0};
                    vv_from(&ev, v->ctr);
                    assert_true(lr_vv_equal(&ev, &cd->r.rec.vv));
                    lr_vv_release(&ev);
                    assert_int_equal(cd->r.rec.deleted, v->deleted);
                    assert_int_equal(cd->r.rec.type, v->type);
                    if (live_file(v))
                        assert_int_equal(cd->r.rec.size, v->size);
                    if (c == 0) {
                        if (v->deleted)
                            es.deletes++;
                        else if (v->type == LR_FT_FILE) {
                            es.files++;
                            es.bytes += v->size;
                        }
                    }
                    if (c > 0) { /* ordered by vv encoding first */
                        struct lr_buf b1, b2;
                        lr_buf_init(&b1, 1 << 16);
                        lr_buf_init(&b2, 1 << 16);
                        lr_vv_encode(&nl.v[j].cand[c - 1].r.rec.vv, &b1);
                        lr_vv_encode(&cd->r.rec.vv, &b2);
                        size_t mn = b1.len < b2.len ? b1.len : b2.len;
                        int o = mn ? memcmp(b1.data, b2.data, mn) : 0;
                        assert_true(o < 0 || (o == 0 && b1.len <= b2.len));
                        lr_buf_release(&b1);
                        lr_buf_release(&b2);
                    }
                }
            }
            if (nl.n) {
                ll = nl.v[nl.n - 1].path_len;
                memcpy(last, nl.v[nl.n - 1].path, ll);
            }
            size_t n = nl.n;
            lr_need_list_release(&nl);
            if (n < pg)
                break;
        }
        assert_int_equal(got, nwant);
    }
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, nwant);
    assert_int_equal(ns.files, es.files);
    assert_int_equal(ns.deletes, es.deletes);
    assert_int_equal(ns.bytes, es.bytes);
}

static void test_need_oracle(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    static struct model m;
    memset(&m, 0, sizeof(m));
    srand(12345);
    for (int p = 0; p < NPEERS; p++) {
        struct lr_device_id d = dev((uint8_t)(p + 1));
        m.index_id[p] = 1000 + (uint64_t)p;
        assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &d, m.index_id[p], &err), 0);
    }
    for (int round = 0; round < 12; round++) {
        assert_int_equal(lr_index_begin(f->ix, &err), 0);
        for (int op = 0; op < 60; op++) {
            int i = rand() % NPATHS, k = rand() % 10;
            struct mver v;
            if (k < 3) { /* local put (scan or apply) */
                const struct mver *base = &m.rem[rand() % NPEERS][i];
                if (rand() % 3 == 0 && base->present && !base->unknown)
                    v = *base; /* applied exactly */
                else
                    rand_ver(&v, m.local[i].present ? &m.local[i] : base);
                struct lr_file_rec r;
                to_rec(&v, i, &r);
                assert_int_equal(lr_index_file_put(f->ix, FOLDER, &r, NULL, &err), 0);
                lr_file_rec_release(&r);
                m.local[i] = v;
            } else {
                int p = rand() % NPEERS;
                const struct mver *base = rand() % 2 ? &m.local[i] : &m.rem[rand() % NPEERS][i];
                if (rand() % 4 == 0 && base->present && !base->unknown)
                    v = *base; /* the peer has the same version as someone */
                else
                    rand_ver(&v, base);
                v.unknown = rand() % 12 == 0;
                model_remote_put(f->ix, &m, p, i, &v);
            }
        }
        assert_int_equal(lr_index_commit(f->ix, &err), 0);
        check_need(f->ix, &m);
        if (round % 4 == 3) { /* a peer resends its full index, keeping about half */
            int p = rand() % NPEERS;
            struct lr_device_id d = dev((uint8_t)(p + 1));
            m.index_id[p]++;
            m.seq[p] = 0;
            assert_int_equal(lr_index_begin(f->ix, &err), 0);
            assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &d, m.index_id[p], &err), 0);
            for (int i = 0; i < NPATHS; i++) {
                if (!m.rem[p][i].present)
                    continue;
                if (rand() % 2) {
                    struct mver v = m.rem[p][i];
                    model_remote_put(f->ix, &m, p, i, &v);
                } else {
                    m.rem[p][i].present = false; /* forgotten at the burst's end */
                }
            }
            uint64_t dropped = 0;
            assert_int_equal(
                lr_index_remote_burst_end(f->ix, FOLDER, &d, m.index_id[p], &dropped, &err), 0);
            assert_int_equal(lr_index_commit(f->ix, &err), 0);
            check_need(f->ix, &m);
        }
        if (round == 9) { /* forget peer 1 entirely, then it starts over */
            struct lr_device_id d = dev(2);
            assert_int_equal(lr_index_remote_forget(f->ix, FOLDER, &d, &err), 0);
            memset(m.rem[1], 0, sizeof(m.rem[1]));
            check_need(f->ix, &m);
            m.seq[1] = 0;
            assert_int_equal(lr_index_remote_full_begin(f->ix, FOLDER, &d, m.index_id[1], &err), 0);
        }
    }
}

/* ---- scale: bounded memory, speed --------------------------------------------------------- */

static long rss_kib(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (!fp)
        return 0;
    if (fscanf(fp, "%ld %ld", &pages, &res) != 2)
        res = 0;
    fclose(fp);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One peer's full index of n entries in INDEX-sized transactions (10 000). */
static void store_full(struct lr_index *ix, const struct lr_device_id *p, uint64_t index_id, int n,
                       const char *pad)
{
    struct lr_err err = {0};
    char name[512];
    uint64_t seq = 0;
    for (int b = 0; b < n; b += 10000) {
        assert_int_equal(lr_index_begin(ix, &err), 0);
        if (b == 0)
            assert_int_equal(lr_index_remote_full_begin(ix, FOLDER, p, index_id, &err), 0);
        for (int i = b; i < b + 10000 && i < n; i++) {
            struct lr_remote_rec r;
            snprintf(name, sizeof(name), "dir%03d/%s/file%07d", i % 500, pad, i);
            rfile(&r, name, ++seq, 1 + (size_t)(i % 3), 4096, (uint8_t)i);
            assert_int_equal(lr_index_remote_put(ix, FOLDER, p, index_id, &r, &err), 0);
            lr_remote_rec_release(&r);
        }
        if (b + 10000 >= n)
            assert_int_equal(lr_index_remote_burst_end(ix, FOLDER, p, index_id, NULL, &err), 0);
        assert_int_equal(lr_index_commit(ix, &err), 0);
    }
}

static void test_speed_100k(void **state)
{
    struct fx *f = *state;
    struct lr_device_id p = dev(9);
    double t0 = now_s();
    clock_t c0 = clock();
    store_full(f->ix, &p, 5, 100000, "x");
    double dt = now_s() - t0;
    print_message("index: 100000-entry full index (200000 chunks) stored in %.2f s wall, %.2f s "
                  "CPU (%.0f entries/s)\n",
                  dt, (double)(clock() - c0) / CLOCKS_PER_SEC, 100000 / dt);
    /* Speed is the benchmarks' business (bench/index.sh), never an assertion
     * here: the figure is printed for the log only. */
    struct lr_need_stats ns;
    struct lr_err err = {0};
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 100000);
    /* A second full resend of the same entries replaces all rows, drops none. */
    t0 = now_s();
    store_full(f->ix, &p, 6, 100000, "x");
    print_message("index: 100000-entry full resend over an existing copy in %.2f s\n",
                  now_s() - t0);
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.items, 100000);
}

static void test_bounded_memory_200k(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_device_id p = dev(8);
    /* Long paths: materialising 200 000 need entries would cost > 60 MB. */
    char pad[121];
    memset(pad, 'p', 120);
    pad[120] = 0;
    long before = rss_kib();
    store_full(f->ix, &p, 5, 200000, pad);
    long after_store = rss_kib();
    /* Walk the need list in pages. */
    uint8_t *last = malloc(LR_INDEX_PATH_MAX);
    size_t ll = 0;
    uint64_t n = 0, bytes = 0;
    long peak = after_store;
    double t0 = now_s();
    for (;;) {
        struct lr_need_list nl;
        assert_int_equal(lr_index_need_list(f->ix, FOLDER, last, ll, 1000, 0, &nl, &err), 0);
        for (size_t j = 0; j < nl.n; j++)
            bytes += nl.v[j].cand[0].r.rec.size;
        n += nl.n;
        if (nl.n) {
            ll = nl.v[nl.n - 1].path_len;
            memcpy(last, nl.v[nl.n - 1].path, ll);
        }
        size_t got = nl.n;
        lr_need_list_release(&nl);
        long r = rss_kib();
        if (r > peak)
            peak = r;
        if (got < 1000)
            break;
    }
    free(last);
    print_message("index: need list of 200000 paths walked in pages of 1000 in %.2f s\n",
                  now_s() - t0);
    assert_int_equal(n, 200000);
    struct lr_need_stats ns;
    assert_int_equal(lr_index_need_stats(f->ix, FOLDER, &ns, &err), 0);
    assert_int_equal(ns.bytes, bytes);
    print_message("index: RSS %ld KiB before, %ld KiB after storing 200000 entries, peak %ld KiB "
                  "walking the need list\n",
                  before, after_store, peak);
    /* SQLite's page cache is capped at 16 MiB; everything else is per batch/page.
     * (ASan keeps freed memory in quarantine: RSS says nothing there.) */
#ifndef __SANITIZE_ADDRESS__
    assert_true(after_store - before < 40 * 1024);
    assert_true(peak - before < 40 * 1024);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vv_compare_oracle),
        cmocka_unit_test(test_migration_from_v1),
        cmocka_unit_test_setup_teardown(test_remote_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_resend_drops_stale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_atomic_with_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_need_local_and_holders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_adopt_and_silent_vv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remote_corrupt_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_need_oracle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_speed_100k, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounded_memory_200k, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
