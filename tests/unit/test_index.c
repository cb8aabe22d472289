/*
 * test_index.c - the SQLite index: schema, folders, records, order, batches,
 * chunk lookup, version vectors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "index/index.h"
#include "index/index_int.h"
#include "util/buf.h"
#include "util/log.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
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
    snprintf(f->dir, sizeof(f->dir), "/tmp/lr-test-index-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof(f->db), "%s/index.db", f->dir);
    struct lr_err err = {0};
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
    assert_int_equal(lr_index_folder_ensure(f->ix, "fold-1", 0x1111, NULL, &err), 0);
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

/* A live file record with n chunks of `clen` bytes, hashes derived from `tag`. */
static void mkfile(struct lr_file_rec *r, const char *path, size_t n, uint32_t clen, uint8_t tag)
{
    memset(r, 0, sizeof(*r));
    r->path = (uint8_t *)strdup(path);
    r->path_len = strlen(path);
    r->type = LR_FT_FILE;
    r->size = (uint64_t)n * clen;
    r->mtime_ns = 1700000000123456789LL;
    r->mode = 0644;
    r->inode = 42;
    r->ctime_ns = 1700000000987654321LL;
    r->chunks = calloc(n ? n : 1, sizeof(r->chunks[0]));
    r->nchunks = n;
    for (size_t i = 0; i < n; i++) {
        r->chunks[i].off = (uint64_t)i * clen;
        r->chunks[i].len = clen;
        memset(r->chunks[i].hash.b, tag, LR_HASH_LEN);
        r->chunks[i].hash.b[0] = (uint8_t)i;
    }
    lr_index_blocks_hash(r->chunks, n, &r->blocks_hash);
    assert_true(lr_vv_bump(&r->vv, 0x1111, 1000) == 1000);
}

/* Processes opening one new database at the same moment: each one ends up
 * with the whole schema (they used to run the first migration twice: "table
 * folders already exists", or "database is locked" switching to WAL). */
static void test_open_concurrent_fresh(void **state)
{
    struct fx *f = *state;
    for (int round = 0; round < 8; round++) {
        char db[160];
        snprintf(db, sizeof(db), "%s/fresh-%d.db", f->dir, round);
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        start.tv_nsec += 50 * 1000000L;
        if (start.tv_nsec >= 1000000000L) {
            start.tv_sec++;
            start.tv_nsec -= 1000000000L;
        }
        pid_t kids[4];
        for (int k = 0; k < 4; k++) {
            kids[k] = fork();
            assert_true(kids[k] >= 0);
            if (kids[k] == 0) {
                clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &start, NULL);
                struct lr_index *ix = NULL;
                struct lr_err err = {0};
                int rc = lr_index_open(db, &ix, &err);
                if (rc == 0)
                    rc = lr_index_folder_ensure(ix, "fold-1", 0x1111, NULL, &err);
                if (rc)
                    fprintf(stderr, "child %d: %s\n", k, err.msg);
                lr_index_close(ix);
                _exit(rc ? 1 : 0);
            }
        }
        for (int k = 0; k < 4; k++) {
            int st = 0;
            assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
            assert_true(WIFEXITED(st));
            assert_int_equal(WEXITSTATUS(st), 0);
        }
    }
}

static void test_open_reopen_schema(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_folder_info a, b;
    assert_int_equal(lr_index_folder_get(f->ix, "fold-1", &a, &err), 0);
    assert_true(a.index_id != 0);
    assert_int_equal(a.short_id, 0x1111);
    assert_int_equal(a.max_seq, 0);
    lr_index_close(f->ix);
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
    assert_int_equal(lr_index_folder_get(f->ix, "fold-1", &b, &err), 0);
    assert_true(a.index_id == b.index_id);

    /* WAL mode persisted in the file header. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(s, 0), lr_index_schema_version());
    sqlite3_finalize(s);
    /* A database from a newer build is refused, not downgraded. */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct lr_index *ix2 = NULL;
    assert_int_equal(lr_index_open(f->db, &ix2, &err), LR_EUNSUPPORTED);
    assert_null(ix2);
    assert_non_null(strstr(err.msg, "99"));
}

static void test_folders(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_folder_info a, b, c;
    assert_int_equal(lr_index_folder_get(f->ix, "nope", &a, &err), LR_ENOTFOUND);
    assert_int_equal(lr_index_folder_ensure(f->ix, "", 1, NULL, &err), LR_EUSAGE);
    assert_int_equal(lr_index_folder_ensure(f->ix, "fold-2", 7, &a, &err), 0);
    assert_int_equal(lr_index_folder_ensure(f->ix, "fold-2", 9, &b, &err), 0);
    assert_true(a.index_id == b.index_id);
    assert_int_equal(b.short_id, 9);
    assert_int_equal(lr_index_folder_get(f->ix, "fold-1", &c, &err), 0);
    assert_true(c.index_id != a.index_id);

    struct lr_file_rec r;
    mkfile(&r, "x", 1, 10, 1);
    assert_int_equal(lr_index_file_put(f->ix, "fold-2", &r, NULL, &err), 0);
    assert_int_equal(lr_index_file_put(f->ix, "missing", &r, NULL, &err), LR_ENOTFOUND);
    assert_int_equal(lr_index_folder_remove(f->ix, "fold-2", &err), 0);
    assert_int_equal(lr_index_folder_get(f->ix, "fold-2", &a, &err), LR_ENOTFOUND);
    struct lr_chunk_loc loc;
    assert_int_equal(lr_index_chunk_find(f->ix, NULL, &r.chunks[0].hash, &loc, &err), LR_ENOTFOUND);
    /* Re-created: a new index ID, so peers resend everything. */
    assert_int_equal(lr_index_folder_ensure(f->ix, "fold-2", 9, &c, &err), 0);
    assert_true(c.index_id != a.index_id);
    assert_int_equal(c.max_seq, 0);
    lr_file_rec_release(&r);
}

/* lr_index_folder_bind: the token ties an index to one `folder add`. */
static void test_folder_bind(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_folder_info a, b;
    bool reset = true;
    /* Created by the bind; then the same token again changes nothing. */
    assert_int_equal(lr_index_folder_bind(f->ix, "fb", 7, 0xAAAA, &reset, &err), 0);
    assert_false(reset);
    struct lr_file_rec r;
    mkfile(&r, "x", 2, 10, 3);
    assert_int_equal(lr_index_file_put(f->ix, "fb", &r, NULL, &err), 0);
    assert_int_equal(lr_index_folder_get(f->ix, "fb", &a, &err), 0);
    assert_int_equal(lr_index_folder_bind(f->ix, "fb", 7, 0xAAAA, &reset, &err), 0);
    assert_false(reset);
    /* Token 0 (an old configuration) never resets. */
    assert_int_equal(lr_index_folder_bind(f->ix, "fb", 7, 0, &reset, &err), 0);
    assert_false(reset);
    struct lr_file_rec got;
    assert_int_equal(lr_index_file_get(f->ix, "fb", r.path, r.path_len, 0, &got, &err), 0);
    lr_file_rec_release(&got);
    /* Another token: emptied in place, a new index ID, sequences from 1. */
    assert_int_equal(lr_index_folder_bind(f->ix, "fb", 7, 0xBBBB, &reset, &err), 0);
    assert_true(reset);
    assert_int_equal(lr_index_folder_get(f->ix, "fb", &b, &err), 0);
    assert_true(b.index_id != a.index_id);
    assert_int_equal(b.max_seq, 0);
    assert_int_equal(lr_index_file_get(f->ix, "fb", r.path, r.path_len, 0, &got, &err),
                     LR_ENOTFOUND);
    struct lr_chunk_loc loc;
    assert_int_equal(lr_index_chunk_find(f->ix, NULL, &r.chunks[1].hash, &loc, &err), LR_ENOTFOUND);
    uint64_t seq = 0;
    assert_int_equal(lr_index_file_put(f->ix, "fb", &r, &seq, &err), 0);
    assert_int_equal(seq, 1);
    /* An index made before tokens (by a scan) takes the first token it sees. */
    assert_int_equal(lr_index_folder_ensure(f->ix, "old", 7, NULL, &err), 0);
    assert_int_equal(lr_index_file_put(f->ix, "old", &r, NULL, &err), 0);
    assert_int_equal(lr_index_folder_bind(f->ix, "old", 7, 0xCCCC, &reset, &err), 0);
    assert_false(reset);
    assert_int_equal(lr_index_file_get(f->ix, "old", r.path, r.path_len, 0, &got, &err), 0);
    lr_file_rec_release(&got);
    assert_int_equal(lr_index_folder_bind(f->ix, "old", 7, 0xDDDD, &reset, &err), 0);
    assert_true(reset);
    /* The other folder is untouched. */
    assert_int_equal(lr_index_folder_get(f->ix, "fold-1", &a, &err), 0);
    lr_file_rec_release(&r);
}

/* lr_index_folder_check_mark: a mark above the index under its ID rekeys it. */
static void test_folder_check_mark(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_folder_info a, b;
    bool rekeyed = true;
    struct lr_file_rec r;
    mkfile(&r, "x", 2, 10, 3);
    /* Our short ID is the records' author: their counter (1000) is the clock;
     * another device's counter is not. */
    assert_int_equal(lr_index_folder_ensure(f->ix, "fm", 0x1111, NULL, &err), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lr_index_file_put(f->ix, "fm", &r, NULL, &err), 0);
    struct lr_file_rec other;
    mkfile(&other, "y", 1, 10, 4);
    assert_true(lr_vv_bump(&other.vv, 0x2222, 5000) == 5000);
    assert_int_equal(lr_index_file_put(f->ix, "fm", &other, NULL, &err), 0);
    lr_file_rec_release(&other);
    assert_int_equal(lr_index_folder_get(f->ix, "fm", &a, &err), 0);
    assert_int_equal(a.max_seq, 4);
    /* No mark, another index's mark, a mark at or below the index: nothing. */
    assert_int_equal(lr_index_folder_check_mark(f->ix, "fm", 0, 99, 0, &rekeyed, &err), 0);
    assert_false(rekeyed);
    assert_int_equal(lr_index_folder_check_mark(f->ix, "fm", a.index_id + 1, 99, 0, &rekeyed, &err),
                     0);
    assert_false(rekeyed);
    assert_int_equal(lr_index_folder_check_mark(f->ix, "fm", a.index_id, 4, 0, &rekeyed, &err), 0);
    assert_false(rekeyed);
    assert_int_equal(lr_index_folder_check_mark(f->ix, "fm", a.index_id, 2, 0, &rekeyed, &err), 0);
    assert_false(rekeyed);
    assert_int_equal(lr_index_folder_check_mark(f->ix, "nope", a.index_id, 9, 0, &rekeyed, &err),
                     0);
    assert_false(rekeyed);
    assert_int_equal(lr_index_folder_get(f->ix, "fm", &b, &err), 0);
    assert_true(b.index_id == a.index_id);
    /* The mark is ahead: a new ID, records and sequences kept, the clock
     * raised to the mark's (never lowered). */
    assert_int_equal(a.clock, 1000);
    assert_int_equal(lr_index_folder_now(&a, 999), 1001);
    assert_int_equal(lr_index_folder_now(&a, 5000), 5000);
    assert_int_equal(lr_index_folder_check_mark(f->ix, "fm", a.index_id, 5, 7777, &rekeyed, &err),
                     0);
    assert_true(rekeyed);
    assert_int_equal(lr_index_folder_get(f->ix, "fm", &b, &err), 0);
    assert_true(b.index_id != a.index_id && b.index_id != 0);
    assert_int_equal(b.max_seq, 4);
    assert_int_equal(b.clock, 7777);
    assert_int_equal(lr_index_folder_stamp(f->ix, "fm") >= 7778, 1);
    struct lr_file_rec got;
    assert_int_equal(lr_index_file_get(f->ix, "fm", r.path, r.path_len, 0, &got, &err), 0);
    assert_int_equal(got.seq, 3);
    lr_file_rec_release(&got);
    /* The old mark no longer matches the new ID. */
    assert_int_equal(lr_index_folder_check_mark(f->ix, "fm", a.index_id, 5, 0, &rekeyed, &err), 0);
    assert_false(rekeyed);
    /* The other folder is untouched. */
    assert_int_equal(lr_index_folder_get(f->ix, "fold-1", &a, &err), 0);
    assert_int_equal(lr_index_folder_check_mark(f->ix, "", 1, 1, 0, &rekeyed, &err), LR_EUSAGE);
    lr_file_rec_release(&r);
}

/* lr_index_file_twin: same size, mtime and chunks elsewhere in the folder. */
static void test_file_twin(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_file_rec a, b, got;
    assert_int_equal(lr_index_folder_ensure(f->ix, "tw", 7, NULL, &err), 0);
    mkfile(&a, "old/name", 3, 100, 0x51);
    assert_int_equal(lr_index_file_put(f->ix, "tw", &a, NULL, &err), 0);
    /* Alone: no twin; the same content in another folder does not count. */
    assert_int_equal(lr_index_file_twin(f->ix, "tw", a.path, a.path_len, &got, &err), LR_ENOTFOUND);
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &a, NULL, &err), 0);
    assert_int_equal(lr_index_file_twin(f->ix, "tw", a.path, a.path_len, &got, &err), LR_ENOTFOUND);
    /* Same chunks, another mtime (a copy, not a move): no twin. */
    mkfile(&b, "new/name", 3, 100, 0x51);
    b.mtime_ns++;
    assert_int_equal(lr_index_file_put(f->ix, "tw", &b, NULL, &err), 0);
    assert_int_equal(lr_index_file_twin(f->ix, "tw", a.path, a.path_len, &got, &err), LR_ENOTFOUND);
    /* Same mtime, other chunks: no twin. */
    lr_file_rec_release(&b);
    mkfile(&b, "new/name", 3, 100, 0x52);
    assert_int_equal(lr_index_file_put(f->ix, "tw", &b, NULL, &err), 0);
    assert_int_equal(lr_index_file_twin(f->ix, "tw", a.path, a.path_len, &got, &err), LR_ENOTFOUND);
    /* The renamed copy: found, both ways. */
    lr_file_rec_release(&b);
    mkfile(&b, "new/name", 3, 100, 0x51);
    b.inode = 77;
    assert_int_equal(lr_index_file_put(f->ix, "tw", &b, NULL, &err), 0);
    assert_int_equal(lr_index_file_twin(f->ix, "tw", a.path, a.path_len, &got, &err), 0);
    assert_memory_equal(got.path, "new/name", 9);
    assert_int_equal(got.inode, 77);
    lr_file_rec_release(&got);
    assert_int_equal(lr_index_file_twin(f->ix, "tw", b.path, b.path_len, &got, &err), 0);
    assert_memory_equal(got.path, "old/name", 9);
    lr_file_rec_release(&got);
    /* A deleted twin is none. */
    b.deleted = true;
    b.nchunks = 0;
    b.size = 0;
    assert_int_equal(lr_index_file_put(f->ix, "tw", &b, NULL, &err), 0);
    assert_int_equal(lr_index_file_twin(f->ix, "tw", a.path, a.path_len, &got, &err), LR_ENOTFOUND);
    /* Absent or empty paths: none. */
    assert_int_equal(lr_index_file_twin(f->ix, "tw", (const uint8_t *)"nope", 4, &got, &err),
                     LR_ENOTFOUND);
    lr_file_rec_release(&a);
    mkfile(&a, "e1", 0, 100, 0x53);
    assert_int_equal(lr_index_file_put(f->ix, "tw", &a, NULL, &err), 0);
    lr_file_rec_release(&b);
    mkfile(&b, "e2", 0, 100, 0x53);
    assert_int_equal(lr_index_file_put(f->ix, "tw", &b, NULL, &err), 0);
    assert_int_equal(lr_index_file_twin(f->ix, "tw", a.path, a.path_len, &got, &err), LR_ENOTFOUND);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
    /* Among many files of the same content (other mtimes) and of the same
     * size and mtime (other content), the one twin is found. */
    for (int i = 0; i < 300; i++) {
        char p[32];
        snprintf(p, sizeof(p), "many/c%03d", i);
        mkfile(&a, p, 2, 64, i % 2 ? 0x61 : 0x62);
        if (i % 2)
            a.mtime_ns += i;
        assert_int_equal(lr_index_file_put(f->ix, "tw", &a, NULL, &err), 0);
        lr_file_rec_release(&a);
    }
    mkfile(&a, "many/orig", 2, 64, 0x61);
    assert_int_equal(lr_index_file_put(f->ix, "tw", &a, NULL, &err), 0);
    assert_int_equal(lr_index_file_twin(f->ix, "tw", a.path, a.path_len, &got, &err), LR_ENOTFOUND);
    mkfile(&b, "many/moved", 2, 64, 0x61);
    assert_int_equal(lr_index_file_put(f->ix, "tw", &b, NULL, &err), 0);
    assert_int_equal(lr_index_file_twin(f->ix, "tw", a.path, a.path_len, &got, &err), 0);
    assert_memory_equal(got.path, "many/moved", 11);
    lr_file_rec_release(&got);
    lr_file_rec_release(&a);
    lr_file_rec_release(&b);
}

/* The twin look-up seeks files_twin by folder, content and mtime: a plan
 * that visits more (a range, every file of one size and mtime, or every
 * file beginning with the same chunk) makes N deletes cost N^2 row visits. */
static void test_file_twin_plan(void **state)
{
    struct fx *f = *state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    char sql[2048];
    snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", lr__ix_twin_sql());
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    bool seek = false;
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(s, 3);
        if (d &&
            strstr(d, "SEARCH f USING INDEX files_twin (folder=? AND blocks=? AND mtime_ns=?)"))
            seek = true;
        assert_null(strstr(d ? d : "", "SCAN"));
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    assert_true(seek);
}

static void test_put_get_roundtrip(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_file_rec r, g;
    /* Non-UTF-8 bytes in the path. */
    mkfile(&r, "dir/caf\xe9-\xff\xfe.bin", 3, 1000, 0xab);
    assert_int_equal(lr_vv_set(&r.vv, 0x2222, 77), 0);
    r.chunks[0].weak = 0xfedcba9876543210ULL; /* all 64 bits kept (stored signed) */
    r.chunks[1].weak = 0;                     /* not known */
    r.chunks[2].weak = 7;
    uint64_t seq = 0;
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, &seq, &err), 0);
    assert_int_equal(seq, 1);
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", r.path, r.path_len, LR_IX_CHUNKS, &g, &err),
                     0);
    assert_int_equal(g.path_len, r.path_len);
    assert_memory_equal(g.path, r.path, r.path_len);
    assert_int_equal(g.path[g.path_len], 0);
    assert_int_equal(g.type, LR_FT_FILE);
    assert_false(g.deleted);
    assert_int_equal(g.size, 3000);
    assert_true(g.mtime_ns == r.mtime_ns && g.ctime_ns == r.ctime_ns);
    assert_int_equal(g.mode, 0644);
    assert_int_equal(g.inode, 42);
    assert_true(lr_vv_equal(&g.vv, &r.vv));
    assert_int_equal(g.seq, 1);
    assert_memory_equal(g.blocks_hash.b, r.blocks_hash.b, LR_HASH_LEN);
    assert_int_equal(g.nchunks, 3);
    for (size_t i = 0; i < 3; i++) { /* field by field: the struct has padding */
        assert_int_equal(g.chunks[i].off, r.chunks[i].off);
        assert_int_equal(g.chunks[i].len, r.chunks[i].len);
        assert_memory_equal(g.chunks[i].hash.b, r.chunks[i].hash.b, LR_HASH_LEN);
        assert_true(g.chunks[i].weak == r.chunks[i].weak);
    }
    lr_file_rec_release(&g);
    /* Without the flag: no chunks loaded. */
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", r.path, r.path_len, 0, &g, &err), 0);
    assert_int_equal(g.nchunks, 0);
    assert_null(g.chunks);
    lr_file_rec_release(&g);
    lr_file_rec_release(&g); /* twice is fine */

    /* Symlink with a target; directory. */
    struct lr_file_rec l = {0};
    l.path = (uint8_t *)"link";
    l.path_len = 4;
    l.type = LR_FT_SYMLINK;
    l.target = (uint8_t *)"../../outside";
    l.target_len = 13;
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &l, &seq, &err), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", l.path, 4, 0, &g, &err), 0);
    assert_int_equal(g.type, LR_FT_SYMLINK);
    assert_int_equal(g.target_len, 13);
    assert_string_equal((char *)g.target, "../../outside");
    lr_file_rec_release(&g);

    assert_int_equal(lr_index_file_get(f->ix, "fold-1", (const uint8_t *)"nope", 4, 0, &g, &err),
                     LR_ENOTFOUND);
    struct lr_folder_info fi;
    assert_int_equal(lr_index_folder_get(f->ix, "fold-1", &fi, &err), 0);
    assert_int_equal(fi.max_seq, 2);
    lr_file_rec_release(&r);
}

static void test_put_rejects_bad_records(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_file_rec r;
    mkfile(&r, "ok", 3, 100, 1);
    r.chunks[1].off = 150; /* gap */
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), LR_EBADVAL);
    r.chunks[1].off = 100;
    r.size = 301; /* size != sum */
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), LR_EBADVAL);
    r.size = 300;
    r.deleted = true; /* tombstone with chunks */
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), LR_EBADVAL);
    r.deleted = false;
    r.type = (enum lr_ftype)7;
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), LR_EBADVAL);
    r.type = LR_FT_FILE;
    static const char *const bad[] = {"", "/abs", "a/", "a//b", ".", "..", "a/../b", "./a", "a/."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        free(r.path);
        r.path = (uint8_t *)strdup(bad[i]);
        r.path_len = strlen(bad[i]);
        assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), LR_EBADPATH);
    }
    uint8_t nul[3] = {'a', 0, 'b'};
    assert_int_equal(lr_index_path_check(nul, 3, &err), LR_EBADPATH);
    /* The message names what is wrong and where. */
    static const char *const why[][2] = {{"/abs", "absolute path (it must be relative)"},
                                         {"a//b", "empty component at byte 2"},
                                         {"a/", "empty component at byte 2"},
                                         {"a/./b", "'.' component at byte 2"},
                                         {"a/..", "'..' component at byte 2"}};
    for (size_t i = 0; i < sizeof(why) / sizeof(why[0]); i++) {
        assert_int_equal(lr_index_path_check((const uint8_t *)why[i][0], strlen(why[i][0]), &err),
                         LR_EBADPATH);
        assert_string_equal(err.msg, why[i][1]);
    }
    /* Nothing was written, no sequence consumed. */
    struct lr_folder_info fi;
    assert_int_equal(lr_index_folder_get(f->ix, "fold-1", &fi, &err), 0);
    assert_int_equal(fi.max_seq, 0);
    lr_file_rec_release(&r);
}

static void test_replace_and_tombstone(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_file_rec r, g;
    mkfile(&r, "a/file", 4, 50, 0x10);
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), 0);
    struct lr_hash old0 = r.chunks[0].hash;
    lr_file_rec_release(&r);
    mkfile(&r, "a/file", 2, 50, 0x20); /* new content, fewer chunks */
    assert_true(lr_vv_bump(&r.vv, 0x1111, 1000) == 1001);
    uint64_t seq;
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, &seq, &err), 0);
    assert_int_equal(seq, 2);
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", r.path, r.path_len, LR_IX_CHUNKS, &g, &err),
                     0);
    assert_int_equal(g.nchunks, 2);
    assert_int_equal(g.chunks[0].hash.b[1], 0x20);
    lr_file_rec_release(&g);
    struct lr_chunk_loc loc;
    assert_int_equal(lr_index_chunk_find(f->ix, NULL, &old0, &loc, &err), LR_ENOTFOUND);

    /* Tombstone: keeps path, type, vv, gets a sequence; chunks gone. */
    struct lr_file_rec t = {0};
    t.path = r.path;
    t.path_len = r.path_len;
    t.type = LR_FT_FILE;
    t.deleted = true;
    lr_vv_copy(&t.vv, &r.vv);
    assert_true(lr_vv_bump(&t.vv, 0x1111, 5) == 1002);
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &t, &seq, &err), 0);
    assert_int_equal(seq, 3);
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", r.path, r.path_len, LR_IX_CHUNKS, &g, &err),
                     0);
    assert_true(g.deleted);
    assert_int_equal(g.seq, 3);
    assert_int_equal(g.nchunks, 0);
    assert_int_equal(lr_vv_get(&g.vv, 0x1111), 1002);
    lr_file_rec_release(&g);
    assert_int_equal(lr_index_chunk_find(f->ix, NULL, &r.chunks[0].hash, &loc, &err), LR_ENOTFOUND);
    struct lr_folder_stats st;
    assert_int_equal(lr_index_folder_stats(f->ix, "fold-1", &st, &err), 0);
    assert_int_equal(st.files, 0);
    assert_int_equal(st.deleted, 1);
    lr_vv_release(&t.vv);
    lr_file_rec_release(&r);
}

/* Component-wise order, the order of a sorted depth-first walk. */
static void test_path_order_and_paging(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    static const char *const want[] = {"a",    "a/b", "a/b/c", "a/b0", "a.b",   "a0",
                                       "a0/x", "aa",  "a\xff", "b",    "b/\x01"};
    const size_t n = sizeof(want) / sizeof(want[0]);
    /* Insert in a scrambled order. */
    for (size_t k = 0; k < n; k++) {
        size_t i = (k * 7) % n;
        struct lr_file_rec r;
        mkfile(&r, want[i], 1, 1, (uint8_t)i);
        assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), 0);
        lr_file_rec_release(&r);
    }
    for (size_t pg = 1; pg <= n + 1; pg++) {
        size_t got = 0;
        uint8_t last[64];
        size_t last_len = 0;
        for (;;) {
            struct lr_file_list l;
            assert_int_equal(
                lr_index_list_by_path(f->ix, "fold-1", last, last_len, pg, 0, &l, &err), 0);
            for (size_t i = 0; i < l.n; i++) {
                assert_true(got < n);
                assert_int_equal(l.v[i].path_len, strlen(want[got]));
                assert_memory_equal(l.v[i].path, want[got], l.v[i].path_len);
                got++;
            }
            if (l.n) {
                last_len = l.v[l.n - 1].path_len;
                memcpy(last, l.v[l.n - 1].path, last_len);
            }
            size_t cnt = l.n;
            lr_file_list_release(&l);
            if (cnt < pg)
                break;
        }
        assert_int_equal(got, n);
    }
    /* lr_index_path_cmp agrees with the database order. */
    for (size_t i = 0; i + 1 < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            assert_true(lr_index_path_cmp((const uint8_t *)want[i], strlen(want[i]),
                                          (const uint8_t *)want[j], strlen(want[j])) < 0);
            assert_true(lr_index_path_cmp((const uint8_t *)want[j], strlen(want[j]),
                                          (const uint8_t *)want[i], strlen(want[i])) > 0);
        }
    }
}

static void test_list_by_seq(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    char name[32];
    for (int i = 0; i < 10; i++) {
        struct lr_file_rec r;
        snprintf(name, sizeof(name), "f%02d", 9 - i); /* path order opposite to seq order */
        mkfile(&r, name, 1, 5, (uint8_t)i);
        assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), 0);
        lr_file_rec_release(&r);
    }
    /* Re-put f05: it moves to the end of the sequence. */
    struct lr_file_rec r;
    mkfile(&r, "f05", 1, 5, 99);
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), 0);
    lr_file_rec_release(&r);
    struct lr_file_list l;
    assert_int_equal(lr_index_list_by_seq(f->ix, "fold-1", 3, 4, 0, &l, &err), 0);
    assert_int_equal(l.n, 4);
    assert_int_equal(l.v[0].seq, 3);
    assert_string_equal((char *)l.v[0].path, "f07");
    assert_int_equal(l.v[2].seq, 6); /* seq 5 (f05) was superseded by 11 */
    lr_file_list_release(&l);
    assert_int_equal(lr_index_list_by_seq(f->ix, "fold-1", 10, 100, LR_IX_CHUNKS, &l, &err), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.v[1].seq, 11);
    assert_string_equal((char *)l.v[1].path, "f05");
    assert_int_equal(l.v[1].nchunks, 1);
    assert_int_equal(l.v[1].chunks[0].hash.b[1], 99);
    lr_file_list_release(&l);
    assert_int_equal(lr_index_list_by_seq(f->ix, "fold-1", 12, 100, 0, &l, &err), 0);
    assert_int_equal(l.n, 0);
}

static void test_chunk_find(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    assert_int_equal(lr_index_folder_ensure(f->ix, "fold-2", 1, NULL, &err), 0);
    struct lr_file_rec r;
    mkfile(&r, "deep/dir/blob", 5, 4096, 0x55);
    assert_int_equal(lr_index_file_put(f->ix, "fold-2", &r, NULL, &err), 0);
    struct lr_chunk_loc loc;
    assert_int_equal(lr_index_chunk_find(f->ix, NULL, &r.chunks[3].hash, &loc, &err), 0);
    assert_string_equal(loc.folder_id, "fold-2");
    assert_string_equal((char *)loc.path, "deep/dir/blob");
    assert_int_equal(loc.path_len, 13);
    assert_int_equal(loc.off, 3 * 4096);
    assert_int_equal(loc.len, 4096);
    lr_chunk_loc_release(&loc);
    assert_int_equal(lr_index_chunk_find(f->ix, "fold-2", &r.chunks[4].hash, &loc, &err), 0);
    assert_int_equal(loc.off, 4 * 4096);
    lr_chunk_loc_release(&loc);
    assert_int_equal(lr_index_chunk_find(f->ix, "fold-1", &r.chunks[4].hash, &loc, &err),
                     LR_ENOTFOUND);
    struct lr_hash h;
    memset(h.b, 0x77, sizeof(h.b));
    assert_int_equal(lr_index_chunk_find(f->ix, NULL, &h, &loc, &err), LR_ENOTFOUND);
    lr_file_rec_release(&r);
}

static void test_batches_and_rollback(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    char name[32];
    assert_int_equal(lr_index_begin(f->ix, &err), 0);
    assert_true(lr_index_in_tx(f->ix));
    assert_int_equal(lr_index_begin(f->ix, &err), LR_EINTERNAL);
    for (int i = 0; i < 5000; i++) {
        struct lr_file_rec r;
        snprintf(name, sizeof(name), "d%d/f%d", i % 10, i);
        mkfile(&r, name, 2, 3, (uint8_t)i);
        assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), 0);
        lr_file_rec_release(&r);
    }
    assert_int_equal(lr_index_commit(f->ix, &err), 0);
    assert_false(lr_index_in_tx(f->ix));
    struct lr_folder_stats st;
    assert_int_equal(lr_index_folder_stats(f->ix, "fold-1", &st, &err), 0);
    assert_int_equal(st.files, 5000);
    assert_int_equal(st.bytes, 5000 * 6);

    assert_int_equal(lr_index_begin(f->ix, &err), 0);
    struct lr_file_rec r;
    mkfile(&r, "rolled-back", 1, 1, 1);
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), 0);
    lr_index_rollback(f->ix);
    struct lr_file_rec g;
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", r.path, r.path_len, 0, &g, &err),
                     LR_ENOTFOUND);
    struct lr_folder_info fi;
    assert_int_equal(lr_index_folder_get(f->ix, "fold-1", &fi, &err), 0);
    assert_int_equal(fi.max_seq, 5000);
    /* set_stat changes only inode/ctime, no new sequence. */
    assert_int_equal(
        lr_index_file_set_stat(f->ix, "fold-1", (const uint8_t *)"d3/f3", 5, 777, 555, &err), 0);
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", (const uint8_t *)"d3/f3", 5, 0, &g, &err),
                     0);
    assert_int_equal(g.inode, 777);
    assert_int_equal(g.ctime_ns, 555);
    assert_int_equal(g.seq, 4);
    lr_file_rec_release(&g);
    assert_int_equal(lr_index_file_set_stat(f->ix, "fold-1", (const uint8_t *)"zz", 2, 1, 1, &err),
                     LR_ENOTFOUND);
    lr_file_rec_release(&r);
}

/* A lazy batch is stored like any other and leaves later batches durable. */
static void test_lazy_batch(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    assert_int_equal(lr__ix_synchronous(f->ix), 2);
    assert_int_equal(lr_index_begin_lazy(f->ix, &err), 0);
    assert_int_equal(lr_index_begin_lazy(f->ix, &err), LR_EINTERNAL);
    assert_int_equal(lr__ix_synchronous(f->ix), 1);
    struct lr_file_rec r;
    mkfile(&r, "lazy/a", 2, 3, 7);
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), 0);
    assert_int_equal(lr_index_commit(f->ix, &err), 0);
    assert_false(lr_index_in_tx(f->ix));
    assert_int_equal(lr__ix_synchronous(f->ix), 2);
    /* A rolled-back lazy batch puts durability back too. */
    assert_int_equal(lr_index_begin_lazy(f->ix, &err), 0);
    lr_index_rollback(f->ix);
    assert_int_equal(lr__ix_synchronous(f->ix), 2);
    /* The next batch is an ordinary one. */
    assert_int_equal(lr_index_begin(f->ix, &err), 0);
    struct lr_file_rec r2;
    mkfile(&r2, "lazy/b", 1, 3, 8);
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r2, NULL, &err), 0);
    assert_int_equal(lr_index_commit(f->ix, &err), 0);
    /* Both are there for the next connection. */
    lr_index_close(f->ix);
    assert_int_equal(lr_index_open(f->db, &f->ix, &err), 0);
    struct lr_file_rec g;
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", r.path, r.path_len, 0, &g, &err), 0);
    assert_int_equal(g.size, 6);
    lr_file_rec_release(&g);
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", r2.path, r2.path_len, 0, &g, &err), 0);
    lr_file_rec_release(&g);
    lr_file_rec_release(&r);
    lr_file_rec_release(&r2);
}

static void test_vv(void **state)
{
    (void)state;
    struct lr_vv v = {0}, w = {0};
    /* Bump rule: max(old + 1, now). */
    assert_true(lr_vv_bump(&v, 5, 1000) == 1000);
    assert_int_equal(v.author, 5); /* a bump names its device the author */
    assert_true(lr_vv_bump(&v, 5, 1000) == 1001);
    assert_true(lr_vv_bump(&v, 5, 10) == 1002); /* clock went back: still forward */
    assert_true(lr_vv_bump(&v, 5, 5000) == 5000);
    assert_int_equal(lr_vv_set(&v, 1, 3), 0);
    assert_int_equal(lr_vv_set(&v, UINT64_MAX, 9), 0);
    assert_int_equal(lr_vv_set(&v, 3, 0), LR_EBADVAL);
    assert_int_equal(v.n, 3);
    assert_true(v.e[0].id == 1 && v.e[1].id == 5 && v.e[2].id == UINT64_MAX);
    assert_int_equal(lr_vv_get(&v, 4), 0);
    /* Above every other counter: the newest one names the author, even when
     * another device's clock ran ahead. */
    struct lr_vv a = {0};
    assert_int_equal(lr_vv_set(&a, 2, 7000), 0);
    assert_int_equal(lr_vv_set(&a, 9, 6999), 0);
    assert_true(lr_vv_bump(&a, 5, 1000) == 7001);
    assert_true(lr_vv_bump(&a, 9, 1000) == 7002);
    assert_true(lr_vv_bump(&a, 9, 8000) == 8000);
    /* A bogus huge counter (over 2^62) is not followed. */
    assert_int_equal(lr_vv_set(&a, 1, UINT64_MAX - 1), 0);
    assert_true(lr_vv_bump(&a, 2, 10) == 8001);
    lr_vv_release(&a);
    /* Counter at the top: no bump, vector unchanged. */
    assert_int_equal(lr_vv_set(&v, 7, UINT64_MAX), 0);
    assert_true(lr_vv_bump(&v, 7, 1) == 0);
    assert_true(lr_vv_get(&v, 7) == UINT64_MAX);

    struct lr_buf b;
    lr_buf_init(&b, 1 << 20);
    assert_int_equal(lr_vv_encode(&v, &b), 0);
    assert_int_equal(b.len, 4 * LR_VV_PAIR_LEN);
    /* Big-endian id then counter. */
    assert_int_equal(b.data[7], 1);
    assert_int_equal(b.data[15], 3);
    assert_int_equal(lr_vv_decode(b.data, b.len, &w), 0);
    assert_true(lr_vv_equal(&v, &w));
    assert_int_equal(w.author, 0); /* the wire form: pairs only */
    lr_vv_release(&w);
    /* The stored form adds the author, kept on decode... */
    v.author = 5;
    lr_buf_reset(&b);
    assert_int_equal(lr_vv_encode_stored(&v, &b), 0);
    assert_int_equal(b.len, 4 * LR_VV_PAIR_LEN + 8);
    assert_int_equal(lr_vv_decode(b.data, b.len, &w), 0);
    assert_true(lr_vv_equal(&v, &w) && w.author == 5);
    struct lr_vv cp = {0};
    lr_vv_copy(&cp, &w);
    assert_int_equal(cp.author, 5);
    lr_vv_release(&cp);
    lr_vv_release(&w);
    /* ...only if it is an id of the vector (a hostile trailer is dropped). */
    b.data[b.len - 1] ^= 0x40;
    assert_int_equal(lr_vv_decode(b.data, b.len, &w), 0);
    assert_true(lr_vv_equal(&v, &w) && w.author == 0);
    lr_vv_release(&w);
    v.author = 6; /* not in the vector: not stored */
    lr_buf_reset(&b);
    assert_int_equal(lr_vv_encode_stored(&v, &b), 0);
    assert_int_equal(b.len, 4 * LR_VV_PAIR_LEN);
    v.author = 0;
    lr_buf_reset(&b);
    assert_int_equal(lr_vv_encode(&v, &b), 0);
    /* Hostile encodings. */
    assert_int_equal(lr_vv_decode(b.data, b.len - 1, &w), LR_EBADVAL);
    uint8_t sw[32];
    memcpy(sw, b.data + 16, 16); /* entries out of order */
    memcpy(sw + 16, b.data, 16);
    assert_int_equal(lr_vv_decode(sw, 32, &w), LR_EBADVAL);
    memcpy(sw + 16, sw, 16); /* duplicate id */
    assert_int_equal(lr_vv_decode(sw, 32, &w), LR_EBADVAL);
    memset(sw + 8, 0, 8); /* zero counter */
    assert_int_equal(lr_vv_decode(sw, 16, &w), LR_EBADVAL);
    assert_null(w.e);
    size_t big = (LR_VV_MAX + 1) * LR_VV_PAIR_LEN;
    uint8_t *p = calloc(1, big);
    assert_int_equal(lr_vv_decode(p, big, &w), LR_ETOOBIG);
    free(p);
    assert_int_equal(lr_vv_decode(NULL, 0, &w), 0);
    assert_int_equal(w.n, 0);
    /* Full vector: a new id is refused. */
    for (uint64_t i = 100; w.n < LR_VV_MAX; i++)
        assert_int_equal(lr_vv_set(&w, i, 1), 0);
    assert_int_equal(lr_vv_set(&w, 1, 1), LR_ETOOBIG);
    assert_true(lr_vv_bump(&w, 2, 1) == 0);
    lr_vv_release(&w);
    lr_vv_release(&v);
    lr_buf_release(&b);
}

/* Hostile database contents are refused on read, not trusted. */
static void test_corrupt_rows(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    struct lr_file_rec r, g;
    mkfile(&r, "victim", 2, 10, 3);
    assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), 0);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE files SET vv = x'0102'", NULL, NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", r.path, r.path_len, 0, &g, &err),
                     LR_EBADVAL);
    assert_null(g.path);
    assert_int_equal(sqlite3_exec(db, "UPDATE files SET vv = x''", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "UPDATE chunks SET hash = x'00' WHERE idx = 1", NULL, NULL, NULL),
        SQLITE_OK);
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", r.path, r.path_len, LR_IX_CHUNKS, &g, &err),
                     LR_EBADVAL);
    assert_int_equal(sqlite3_exec(db, "UPDATE files SET type = 9", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(lr_index_file_get(f->ix, "fold-1", r.path, r.path_len, 0, &g, &err),
                     LR_EBADVAL);
    sqlite3_close(db);
    lr_file_rec_release(&r);
}

/* Many files sharing one chunk hash: lookups stay cheap (hostile case 11). */
static void test_shared_chunk_hash(void **state)
{
    struct fx *f = *state;
    struct lr_err err = {0};
    char name[32];
    assert_int_equal(lr_index_begin(f->ix, &err), 0);
    for (int i = 0; i < 3000; i++) {
        struct lr_file_rec r;
        snprintf(name, sizeof(name), "same%04d", i);
        mkfile(&r, name, 1, 7, 0x42); /* chunk 0 hash identical in every file */
        assert_int_equal(lr_index_file_put(f->ix, "fold-1", &r, NULL, &err), 0);
        lr_file_rec_release(&r);
    }
    assert_int_equal(lr_index_commit(f->ix, &err), 0);
    struct lr_hash h;
    memset(h.b, 0x42, sizeof(h.b));
    h.b[0] = 0;
    struct lr_chunk_loc loc;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(lr_index_chunk_find(f->ix, "fold-1", &h, &loc, &err), 0);
        assert_int_equal(strncmp((char *)loc.path, "same", 4), 0);
        assert_int_equal(loc.len, 7);
        lr_chunk_loc_release(&loc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_reopen_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_concurrent_fresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_bind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folder_check_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_twin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_twin_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_get_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_rejects_bad_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_and_tombstone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_order_and_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_by_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunk_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batches_and_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lazy_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_chunk_hash, setup, teardown),
        cmocka_unit_test(test_vv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
