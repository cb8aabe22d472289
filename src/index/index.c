/*
 * index.c - SQLite schema, migrations and every query of the project.
 *
 * Layout (docs/internals/index.md): folders(id, name, index_id, short_id,
 * max_seq); files(id, folder, path key, ... , seq) with unique indexes on
 * (folder, path) and (folder, seq); chunks(file, idx, off, len, hash, weak)
 * WITHOUT ROWID keyed by (file, idx) with an index on hash.
 *
 * The stored path ("key") is the path with '/' replaced by 0x00: names never
 * contain NUL, and SQLite compares BLOBs with memcmp, so ORDER BY path is
 * component-wise order, the order of a sorted depth-first walk.
 */
#include "index/index_int.h"

#include "util/log.h"
#include "util/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define FOLDER_ID_MAX 256
#define FOLDER_CACHE LR__IX_FOLDER_CACHE

/* Farthest a counter of ours may be ahead of the wall clock to count: quick
 * saves run counters ahead a second each, a day of them is not plausible. */
#define CLOCK_AHEAD_MAX_S 86400

/* ---- schema ----------------------------------------------------------- */

/* migrations[v] takes user_version v to v + 1. Append only; never edit a shipped entry. */
static const char *const migrations[] = {
    "CREATE TABLE folders ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  index_id INTEGER NOT NULL,"
    "  short_id INTEGER NOT NULL,"
    "  max_seq INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE files ("
    "  id INTEGER PRIMARY KEY,"
    "  folder INTEGER NOT NULL,"
    "  path BLOB NOT NULL,"
    "  type INTEGER NOT NULL,"
    "  deleted INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL,"
    "  mode INTEGER NOT NULL,"
    "  inode INTEGER NOT NULL,"
    "  ctime_ns INTEGER NOT NULL,"
    "  target BLOB,"
    "  vv BLOB NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  blocks BLOB"
    ");"
    "CREATE UNIQUE INDEX files_path ON files(folder, path);"
    "CREATE UNIQUE INDEX files_seq ON files(folder, seq);"
    "CREATE TABLE chunks ("
    "  file INTEGER NOT NULL,"
    "  idx INTEGER NOT NULL,"
    "  off INTEGER NOT NULL,"
    "  len INTEGER NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  PRIMARY KEY (file, idx)"
    ") WITHOUT ROWID;"
    "CREATE INDEX chunks_hash ON chunks(hash);",
    /* v2: remote indexes, per-peer sync state, need (docs/internals/index.md). */
    "CREATE TABLE remotes ("
    "  id INTEGER PRIMARY KEY,"
    "  folder INTEGER NOT NULL,"
    "  device BLOB NOT NULL,"
    "  index_id INTEGER NOT NULL DEFAULT 0,"
    "  max_seq INTEGER NOT NULL DEFAULT 0,"
    "  gen INTEGER NOT NULL DEFAULT 0,"
    "  full_pending INTEGER NOT NULL DEFAULT 0,"
    "  sent_index_id INTEGER NOT NULL DEFAULT 0,"
    "  sent_seq INTEGER NOT NULL DEFAULT 0,"
    "  UNIQUE (folder, device)"
    ");"
    "CREATE TABLE rfiles ("
    "  id INTEGER PRIMARY KEY,"
    "  folder INTEGER NOT NULL,"
    "  path BLOB NOT NULL,"
    "  remote INTEGER NOT NULL,"
    "  type INTEGER NOT NULL,"
    "  flags INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL,"
    "  mode INTEGER NOT NULL,"
    "  target BLOB,"
    "  vv BLOB NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  blocks BLOB,"
    "  nblk INTEGER NOT NULL,"
    "  total INTEGER NOT NULL,"
    "  cover INTEGER NOT NULL,"
    "  gen INTEGER NOT NULL"
    ");"
    "CREATE UNIQUE INDEX rfiles_path ON rfiles(folder, path, remote);"
    "CREATE INDEX rfiles_gen ON rfiles(remote, gen);"
    "CREATE TABLE rchunks ("
    "  file INTEGER NOT NULL,"
    "  idx INTEGER NOT NULL,"
    "  len INTEGER NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  PRIMARY KEY (file, idx)"
    ") WITHOUT ROWID;"
    "CREATE TABLE need ("
    "  folder INTEGER NOT NULL,"
    "  path BLOB NOT NULL,"
    "  kind INTEGER NOT NULL,"
    "  flags INTEGER NOT NULL,"
    "  size INTEGER NOT NULL,"
    "  PRIMARY KEY (folder, path)"
    ") WITHOUT ROWID;"
    "CREATE TABLE need_stats ("
    "  folder INTEGER PRIMARY KEY,"
    "  items INTEGER NOT NULL DEFAULT 0,"
    "  files INTEGER NOT NULL DEFAULT 0,"
    "  deletes INTEGER NOT NULL DEFAULT 0,"
    "  bytes INTEGER NOT NULL DEFAULT 0"
    ");"
    /* One counter row per folder, made with the folder (atomically, by trigger),
     * so the per-row triggers below are a single UPDATE each. */
    "INSERT INTO need_stats(folder) SELECT id FROM folders;"
    "CREATE TRIGGER folders_ai AFTER INSERT ON folders BEGIN"
    "  INSERT OR IGNORE INTO need_stats(folder) VALUES (new.id);"
    "END;"
    "CREATE TRIGGER folders_ad AFTER DELETE ON folders BEGIN"
    "  DELETE FROM need_stats WHERE folder = old.id;"
    "END;"
    "CREATE TRIGGER need_ai AFTER INSERT ON need BEGIN"
    "  UPDATE need_stats SET items = items + 1, files = files + (new.kind = 0),"
    "    deletes = deletes + (new.kind = 2), bytes = bytes + new.size WHERE folder = new.folder;"
    "END;"
    "CREATE TRIGGER need_ad AFTER DELETE ON need BEGIN"
    "  UPDATE need_stats SET items = items - 1, files = files - (old.kind = 0),"
    "    deletes = deletes - (old.kind = 2), bytes = bytes - old.size WHERE folder = old.folder;"
    "END;"
    "CREATE TRIGGER need_au AFTER UPDATE ON need BEGIN"
    "  UPDATE need_stats SET files = files - (old.kind = 0) + (new.kind = 0),"
    "    deletes = deletes - (old.kind = 2) + (new.kind = 2), bytes = bytes - old.size + new.size"
    "    WHERE folder = new.folder;"
    "END;",
    /* v3: a peer's unfinished segmented record (its sequence and path key), so
     * the stored max sequence never passes it (docs/internals/index.md). */
    "ALTER TABLE remotes ADD COLUMN open_seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE remotes ADD COLUMN open_path BLOB;",
    /* v4: the conflict audit trail (conflicts.c). Keyed by the folder's name,
     * not its row, so the history outlives a removed and re-added folder. */
    "CREATE TABLE conflicts ("
    "  id INTEGER PRIMARY KEY,"
    "  folder TEXT NOT NULL,"
    "  path BLOB NOT NULL,"
    "  dedup BLOB NOT NULL,"
    "  time_s INTEGER NOT NULL,"
    "  type TEXT NOT NULL,"
    "  detail TEXT NOT NULL,"
    "  strategy TEXT NOT NULL,"
    "  resolution TEXT NOT NULL,"
    "  winner TEXT NOT NULL,"
    "  devices TEXT NOT NULL,"
    "  kept_device TEXT,"
    "  kept_path BLOB,"
    "  archive_path BLOB"
    ");"
    "CREATE UNIQUE INDEX conflicts_dedup ON conflicts(folder, dedup);"
    "CREATE INDEX conflicts_path ON conflicts(folder, path);"
    "CREATE INDEX conflicts_order ON conflicts(folder, id);",
    /* v5: transfer sessions (sessions.c): the last checkpoint of each file
     * pulled, keyed by folder, path and the version's blocks hash. */
    "CREATE TABLE sessions ("
    "  folder TEXT NOT NULL,"
    "  path BLOB NOT NULL,"
    "  blocks BLOB NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  doc TEXT NOT NULL,"
    "  PRIMARY KEY (folder, path, blocks)"
    ") WITHOUT ROWID;"
    "CREATE INDEX sessions_updated ON sessions(updated_ms);",
    /* v6: the configuration's folder token (lr_index_folder_bind); 0: none yet. */
    "ALTER TABLE folders ADD COLUMN token INTEGER NOT NULL DEFAULT 0;",
    /* v7: stored version vectors may end with their author (vv.c,
     * lr_vv_encode_stored); no table changes, but a build before it would
     * refuse such a vector as corrupt, so it must refuse the database. */
    "SELECT 1;",
    /* v8: the highest counter of this device in the folder's records
     * (lr_folder_info.clock): local changes count from above it. */
    "ALTER TABLE folders ADD COLUMN clock INTEGER NOT NULL DEFAULT 0;"
    /* and the latest entry held of each peer's index, which our FOLDERS
     * shows the peer (lr_index_remote_set_check). */
    "ALTER TABLE remotes ADD COLUMN check_seq INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE remotes ADD COLUMN check_digest BLOB;"
    "ALTER TABLE remotes ADD COLUMN check_path BLOB;",
    /* v9: each chunk's lr_weak64 where this device read the bytes itself
     * (lr_chunk.weak); 0 in rows written before it. */
    "ALTER TABLE chunks ADD COLUMN weak INTEGER NOT NULL DEFAULT 0;",
    /* v10: live regular files by content and mtime (lr_index_file_twin).
     * Through the first chunk's hash, a delete walked every live file
     * starting with that chunk: N identical files deleted cost N^2 row
     * visits; by size and mtime alone, N files of one size and mtime (a
     * tarball's) would. */
    "CREATE INDEX files_twin ON files(folder, blocks, mtime_ns) WHERE deleted = 0 AND type = 0;",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

#define FILE_COLS                                                                                  \
    "path, type, deleted, size, mtime_ns, mode, inode, ctime_ns, target, vv, seq, blocks, id"

enum stmt_id {
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_FOLDER_GET,
    S_FOLDER_ADD,
    S_FOLDER_SET_SHORT,
    S_FOLDER_NEXT_SEQ,
    S_FOLDER_DEL,
    S_FOLDER_DEL_FILES,
    S_FOLDER_DEL_CHUNKS,
    S_FOLDER_STATS,
    S_FOLDER_TOKEN_GET,
    S_FOLDER_TOKEN_SET,
    S_FOLDER_RESET,
    S_FOLDER_DEL_SESSIONS,
    S_FOLDER_REKEY,
    S_FOLDER_REKEY_ANY,
    S_FOLDER_VVS,
    S_FOLDER_SET_CLOCK,
    S_FILE_UPSERT,
    S_FILE_SET_STAT,
    S_FILE_SET_VV,
    S_FILE_GET,
    S_FILE_TWIN,
    S_LIST_PATH,
    S_LIST_SEQ,
    S_CHUNKS_DEL,
    S_CHUNK_ADD,
    S_CHUNKS_GET,
    S_CHUNK_FIND,
    S_CHUNK_FIND_IN,
    S__COUNT
};

static const char *const stmt_sql[S__COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_FOLDER_GET] = "SELECT id, index_id, short_id, max_seq, clock FROM folders WHERE name = ?1",
    [S_FOLDER_ADD] =
        "INSERT INTO folders(name, index_id, short_id, max_seq) VALUES (?1, ?2, ?3, 0)",
    [S_FOLDER_SET_SHORT] = "UPDATE folders SET short_id = ?2 WHERE id = ?1",
    [S_FOLDER_NEXT_SEQ] = "UPDATE folders SET max_seq = max_seq + 1, clock = CASE WHEN "
                          "short_id = ?2 AND ?3 > clock THEN ?3 ELSE clock END WHERE id = ?1 "
                          "RETURNING max_seq",
    [S_FOLDER_DEL] = "DELETE FROM folders WHERE id = ?1",
    [S_FOLDER_DEL_FILES] = "DELETE FROM files WHERE folder = ?1",
    [S_FOLDER_DEL_CHUNKS] =
        "DELETE FROM chunks WHERE file IN (SELECT id FROM files WHERE folder = ?1)",
    [S_FOLDER_STATS] = "SELECT type, deleted, count(*), sum(size) FROM files WHERE folder = ?1 "
                       "GROUP BY type, deleted",
    [S_FOLDER_TOKEN_GET] = "SELECT token FROM folders WHERE id = ?1",
    [S_FOLDER_TOKEN_SET] = "UPDATE folders SET token = ?2 WHERE id = ?1",
    [S_FOLDER_RESET] = "UPDATE folders SET index_id = ?2, max_seq = 0, token = ?3 WHERE id = ?1",
    [S_FOLDER_DEL_SESSIONS] = "DELETE FROM sessions WHERE folder = ?1",
    /* Conditional, so the check and the change are one step. */
    [S_FOLDER_REKEY] = "UPDATE folders SET index_id = ?2, clock = max(clock, ?5) WHERE name = ?1 "
                       "AND index_id = ?3 AND max_seq < ?4",
    [S_FOLDER_REKEY_ANY] =
        "UPDATE folders SET index_id = ?2, clock = max(clock, ?3) WHERE name = ?1",
    [S_FOLDER_VVS] = "SELECT vv FROM files WHERE folder = ?1",
    [S_FOLDER_SET_CLOCK] = "UPDATE folders SET clock = max(clock, ?2) WHERE id = ?1",
    [S_FILE_UPSERT] =
        "INSERT INTO files(folder, path, type, deleted, size, mtime_ns, mode, inode, ctime_ns, "
        "target, vv, seq, blocks) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) "
        "ON CONFLICT(folder, path) DO UPDATE SET type = excluded.type, deleted = excluded.deleted, "
        "size = excluded.size, mtime_ns = excluded.mtime_ns, mode = excluded.mode, "
        "inode = excluded.inode, ctime_ns = excluded.ctime_ns, target = excluded.target, "
        "vv = excluded.vv, seq = excluded.seq, blocks = excluded.blocks RETURNING id",
    [S_FILE_SET_STAT] =
        "UPDATE files SET inode = ?3, ctime_ns = ?4 WHERE folder = ?1 AND path = ?2",
    [S_FILE_SET_VV] = "UPDATE files SET vv = ?3 WHERE folder = ?1 AND path = ?2",
    [S_FILE_GET] = "SELECT " FILE_COLS " FROM files WHERE folder = ?1 AND path = ?2",
    /* Through files_twin: only live files of the same content and mtime
     * are visited, so a delete costs a look-up, not a walk of the folder
     * (nor of every file that begins with the same chunk). "+p.size":
     * a range on a column of the join once took SQLite 3.40 off the whole
     * key of an index (test_index.c checks the plan). */
    [S_FILE_TWIN] =
        "SELECT " FILE_COLS " FROM files WHERE id = (SELECT f.id FROM files p "
        "JOIN files f INDEXED BY files_twin ON f.folder = p.folder AND f.blocks = p.blocks AND "
        "f.mtime_ns = p.mtime_ns AND f.deleted = 0 AND f.type = 0 "
        "WHERE p.folder = ?1 AND p.path = ?2 AND p.deleted = 0 AND p.type = 0 AND +p.size > 0 AND "
        "f.id <> p.id AND f.size = p.size ORDER BY f.id DESC LIMIT 1)",
    [S_LIST_PATH] = "SELECT " FILE_COLS " FROM files WHERE folder = ?1 AND path > ?2 "
                    "ORDER BY path LIMIT ?3",
    [S_LIST_SEQ] = "SELECT " FILE_COLS " FROM files WHERE folder = ?1 AND seq >= ?2 "
                   "ORDER BY seq LIMIT ?3",
    [S_CHUNKS_DEL] = "DELETE FROM chunks WHERE file = ?1",
    [S_CHUNK_ADD] =
        "INSERT INTO chunks(file, idx, off, len, hash, weak) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [S_CHUNKS_GET] = "SELECT off, len, hash, weak FROM chunks WHERE file = ?1 ORDER BY idx",
    [S_CHUNK_FIND] = "SELECT fo.name, f.path, c.off, c.len FROM chunks c "
                     "JOIN files f ON f.id = c.file JOIN folders fo ON fo.id = f.folder "
                     "WHERE c.hash = ?1 AND f.deleted = 0 LIMIT 1",
    [S_CHUNK_FIND_IN] = "SELECT fo.name, f.path, c.off, c.len FROM chunks c "
                        "JOIN files f ON f.id = c.file JOIN folders fo ON fo.id = f.folder "
                        "WHERE c.hash = ?1 AND f.deleted = 0 AND fo.name = ?2 LIMIT 1",
};

_Static_assert(S__COUNT <= LR__IX_LOCAL_STMTS, "raise LR__IX_LOCAL_STMTS");

const char *lr__ix_twin_sql(void)
{
    return stmt_sql[S_FILE_TWIN];
}

/* ---- helpers --------------------------------------------------------------- */

int lr__ix_dberr(struct lr_index *ix, struct lr_err *err, const char *what)
{
    int code = sqlite3_errcode(ix->db) & 0xff;
    if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
        /* The index holds nothing that cannot be had again (docs/
         * decisions/0002): say how to get past a damaged one. */
        return lr_err_set(err, LR_EDB,
                          "index %s: %s: %s (damaged: with the daemon stopped, move it and its "
                          "-wal and -shm files aside; a new one is built from the folders and "
                          "the peers)",
                          ix->path, what, sqlite3_errmsg(ix->db));
    return lr_err_set(err, LR_EDB, "index %s: %s: %s", ix->path, what, sqlite3_errmsg(ix->db));
}

static sqlite3_stmt *stmt(struct lr_index *ix, enum stmt_id id, struct lr_err *err)
{
    if (!ix->st[id]) {
        if (sqlite3_prepare_v3(ix->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &ix->st[id],
                               NULL) != SQLITE_OK) {
            lr__ix_dberr(ix, err, "prepare");
            ix->st[id] = NULL;
            return NULL;
        }
    }
    return ix->st[id];
}

static void done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Run a statement that returns no rows (or whose rows are ignored). */
static int exec_stmt(struct lr_index *ix, enum stmt_id id, struct lr_err *err)
{
    sqlite3_stmt *s = stmt(ix, id, err);
    if (!s)
        return LR_EDB;
    int rc = sqlite3_step(s);
    int r = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? 0 : lr__ix_dberr(ix, err, stmt_sql[id]);
    done(s);
    return r;
}

int lr_index_path_check(const uint8_t *p, size_t n, struct lr_err *err)
{
    if (n == 0)
        return lr_err_set(err, LR_EBADPATH, "empty path");
    if (n > LR_INDEX_PATH_MAX)
        return lr_err_set(err, LR_EBADPATH, "path of %zu bytes over %d", n, LR_INDEX_PATH_MAX);
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] == 0)
            return lr_err_set(err, LR_EBADPATH, "NUL byte in path at %zu", i);
        if (i == n || p[i] == '/') {
            size_t len = i - start;
            if (len == 0 && start == 0 && p[0] == '/')
                return lr_err_set(err, LR_EBADPATH, "absolute path (it must be relative)");
            if (len == 0)
                return lr_err_set(err, LR_EBADPATH, "empty component at byte %zu", start);
            if ((len == 1 && p[start] == '.') ||
                (len == 2 && p[start] == '.' && p[start + 1] == '.'))
                return lr_err_set(err, LR_EBADPATH, "'%.*s' component at byte %zu", (int)len,
                                  (const char *)p + start, start);
            start = i + 1;
        }
    }
    return 0;
}

int lr_index_path_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn;
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            unsigned x = a[i] == '/' ? 0u : a[i];
            unsigned y = b[i] == '/' ? 0u : b[i];
            return x < y ? -1 : 1;
        }
    }
    return an < bn ? -1 : an > bn ? 1 : 0;
}

/* path -> key in b (b reset first). */
void lr__ix_to_key(struct lr_buf *b, const uint8_t *p, size_t n)
{
    lr_buf_reset(b);
    uint8_t *d = lr_buf_reserve(b, n + 1);
    if (!d)
        abort(); /* max is SIZE_MAX: cannot fail */
    for (size_t i = 0; i < n; i++)
        d[i] = p[i] == '/' ? 0 : p[i];
    b->len = n;
}

int lr__ix_bind_blob(sqlite3_stmt *s, int col, const void *p, size_t n)
{
    /* A zero-length blob must bind as a BLOB, not NULL: give SQLite a valid pointer. */
    static const uint8_t empty[1];
    return sqlite3_bind_blob64(s, col, n ? p : empty, n, SQLITE_TRANSIENT);
}

uint8_t *lr__ix_from_key(const uint8_t *key, size_t n)
{
    uint8_t *p = lr_xmalloc(n + 1);
    for (size_t i = 0; i < n; i++)
        p[i] = key[i] == 0 ? '/' : key[i];
    p[n] = 0;
    return p;
}

void lr_file_rec_release(struct lr_file_rec *r)
{
    if (!r)
        return;
    free(r->path);
    free(r->target);
    lr_vv_release(&r->vv);
    free(r->chunks);
    memset(r, 0, sizeof(*r));
}

void lr_file_list_release(struct lr_file_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        lr_file_rec_release(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

void lr_chunk_loc_release(struct lr_chunk_loc *l)
{
    if (!l)
        return;
    free(l->folder_id);
    free(l->path);
    memset(l, 0, sizeof(*l));
}

void lr_index_blocks_hash(const struct lr_chunk *c, size_t n, struct lr_hash *out)
{
    /* Hash in stack-sized groups: no allocation, one pass. */
    struct lr_sha256_ctx *ctx = lr_sha256_new();
    if (!ctx)
        abort(); /* GnuTLS allocation failure: treat as OOM like lr_xmalloc */
    for (size_t i = 0; i < n; i++)
        lr_sha256_update(ctx, c[i].hash.b, LR_HASH_LEN);
    lr_sha256_final(ctx, out);
    lr_sha256_free(ctx);
}

/* ---- lifecycle -------------------------------------------------------------- */

static int exec_sql(struct lr_index *ix, const char *sql, struct lr_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(ix->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = lr_err_set(err, LR_EDB, "index %s: %s: %s", ix->path, sql,
                            msg ? msg : sqlite3_errmsg(ix->db));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

static int pragma_int(struct lr_index *ix, const char *sql, int64_t *out, struct lr_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(ix->db, sql, -1, &s, NULL) != SQLITE_OK)
        return lr__ix_dberr(ix, err, sql);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        rc = lr__ix_dberr(ix, err, sql);
        sqlite3_finalize(s);
        return rc;
    }
    *out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return 0;
}

/* One migration step under a write lock: the version is read inside it, so
 * two processes opening a new database at once do not both run a step (the
 * second failed with "table folders already exists", its message the SQL). */
static int migrate_step(struct lr_index *ix, bool *done, struct lr_err *err)
{
    int64_t v = 0;
    int rc = exec_sql(ix, "BEGIN IMMEDIATE", err);
    if (rc)
        return rc;
    if ((rc = pragma_int(ix, "PRAGMA user_version", &v, err)))
        goto fail;
    if (v > SCHEMA_VERSION) {
        rc = lr_err_set(err, LR_EUNSUPPORTED,
                        "index %s: schema version %" PRId64 " is newer than this build's %d",
                        ix->path, v, SCHEMA_VERSION);
        goto fail;
    }
    if (v == SCHEMA_VERSION) {
        *done = true;
        return exec_sql(ix, "COMMIT", err);
    }
    char setv[64];
    snprintf(setv, sizeof(setv), "PRAGMA user_version = %d", (int)(v + 1));
    char *msg = NULL;
    if (sqlite3_exec(ix->db, migrations[v], NULL, NULL, &msg) != SQLITE_OK) {
        rc = lr_err_set(err, LR_EDB, "index %s: schema upgrade to version %d failed: %s", ix->path,
                        (int)(v + 1), msg ? msg : sqlite3_errmsg(ix->db));
        sqlite3_free(msg);
        goto fail;
    }
    if ((rc = exec_sql(ix, setv, err)) || (rc = exec_sql(ix, "COMMIT", err)))
        goto fail;
    lr_debug("index", "migrated schema path=%s version=%d", ix->path, (int)(v + 1));
    return 0;
fail:
    sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int migrate(struct lr_index *ix, struct lr_err *err)
{
    /* Current already (every open but a new database's first): no write
     * lock. Taking one each time made the daemon's second handle, opened
     * while a first scan writes, wait out the scan (its FOLDERS, and so the
     * whole index exchange, came after the scan: 20 000 files synced 1 s
     * slower). */
    int64_t v = 0;
    int rc = pragma_int(ix, "PRAGMA user_version", &v, err);
    if (rc || v == SCHEMA_VERSION)
        return rc;
    bool done = false;
    while (!done && rc == 0)
        rc = migrate_step(ix, &done, err);
    return rc;
}

/* WAL mode. Switching takes an exclusive lock and SQLite may answer BUSY
 * without waiting (another process opening the new database at the same
 * moment: "database is locked"), so it is retried for up to 10 s. */
static int set_wal(struct lr_index *ix, struct lr_err *err)
{
    for (int tries = 0;; tries++) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(ix->db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(s);
        bool wal = rc == SQLITE_ROW && strcmp((const char *)sqlite3_column_text(s, 0), "wal") == 0;
        sqlite3_finalize(s);
        if (wal)
            return 0;
        if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
            return lr__ix_dberr(ix, err, "journal_mode=WAL");
        if (tries >= 500)
            return lr__ix_dberr(ix, err, "journal_mode=WAL (locked for 10 s)");
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int lr_index_set_cache_kib(struct lr_index *ix, unsigned kib, struct lr_err *err)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%u", kib ? kib : 1);
    return exec_sql(ix, sql, err);
}

int lr_index_schema_version(void)
{
    return SCHEMA_VERSION;
}

int lr_index_open(const char *path, struct lr_index **out, struct lr_err *err)
{
    *out = NULL;
    if (strlen(path) > LR_INDEX_DB_PATH_MAX)
        return lr_err_set(err, LR_EDB,
                          "index %s: the path is %zu bytes long, SQLite opens at most %d (use a "
                          "shorter home)",
                          path, strlen(path), LR_INDEX_DB_PATH_MAX);
    struct lr_index *ix = lr_xcalloc(1, sizeof(*ix));
    ix->path = lr_xstrdup(path);
    lr_buf_init(&ix->key, SIZE_MAX);
    lr_buf_init(&ix->key2, SIZE_MAX);
    lr_buf_init(&ix->vvb, SIZE_MAX);
    lr_buf_init(&ix->okey, SIZE_MAX);
    int rc;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &ix->db, flags, NULL) != SQLITE_OK) {
        /* SQLite's own text ("unable to open database file") hides the
         * cause; its last errno is that of its read-only retry. A database
         * to create in a directory that takes no new file is the usual one. */
        struct stat sb;
        int e = 0;
        char *dir = lr_xstrdup(path), *slash = strrchr(dir, '/');
        if (slash)
            *(slash == dir ? slash + 1 : slash) = '\0';
        if (stat(path, &sb) < 0 && errno == ENOENT && access(slash ? dir : ".", W_OK | X_OK) < 0)
            e = errno;
        free(dir);
        rc = e        ? lr_err_set(err, LR_EDB, "index %s: cannot create it: %s", path, strerror(e))
             : ix->db ? lr__ix_dberr(ix, err, "open")
                      : lr_err_set(err, LR_EDB, "index %s: cannot open", path);
        goto fail;
    }
    sqlite3_extended_result_codes(ix->db, 1);
    /* SQLite falls back to reading a file it may not write (mode 0444, chattr
     * +i, a read-only mount); every write would then fail, and a daemon
     * started on it retried its scans for good, even after a fix. */
    if (sqlite3_db_readonly(ix->db, "main") == 1) {
        rc = lr_err_set(err, LR_EDB,
                        "index %s cannot be written (read-only file, attribute or file "
                        "system): check its permissions",
                        path);
        goto fail;
    }
    sqlite3_busy_timeout(ix->db, 10000);
    /* WAL: readers never block the writer. synchronous=FULL: see index.h (sequence
     * numbers must not be handed out twice after a power cut). */
    if ((rc = set_wal(ix, err)))
        goto fail;
    if ((rc = exec_sql(ix,
                       "PRAGMA synchronous=FULL; PRAGMA temp_store=MEMORY; "
                       "PRAGMA cache_size=-16384; PRAGMA foreign_keys=OFF",
                       err)))
        goto fail;
    if ((rc = migrate(ix, err)))
        goto fail;
    *out = ix;
    return 0;
fail:
    lr_index_close(ix);
    return rc;
}

void lr_index_close(struct lr_index *ix)
{
    if (!ix)
        return;
    if (ix->in_tx)
        lr_index_rollback(ix);
    for (int i = 0; i < S__COUNT; i++)
        sqlite3_finalize(ix->st[i]);
    lr__ix_remote_finalize(ix);
    sqlite3_finalize(ix->sess_put);
    if (ix->db && sqlite3_close(ix->db) != SQLITE_OK)
        lr_warn("index", "close path=%s: %s", ix->path, sqlite3_errmsg(ix->db));
    for (int i = 0; i < FOLDER_CACHE; i++)
        free(ix->fc[i].name);
    lr_buf_release(&ix->key);
    lr_buf_release(&ix->key2);
    lr_buf_release(&ix->vvb);
    lr_buf_release(&ix->okey);
    free(ix->path);
    free(ix);
}

/* ---- transactions ------------------------------------------------------------- */

/* Back to synchronous=FULL after a lazy batch (SQLite refuses the change
 * inside a transaction, so it brackets the batch). */
static int lazy_end(struct lr_index *ix, struct lr_err *err)
{
    int rc = exec_sql(ix, "PRAGMA synchronous=FULL", err);
    if (rc == 0)
        ix->lazy = false;
    return rc;
}

int lr_index_begin_lazy(struct lr_index *ix, struct lr_err *err)
{
    if (ix->in_tx)
        return lr_err_set(err, LR_EINTERNAL, "index: transaction already open");
    int rc = exec_sql(ix, "PRAGMA synchronous=NORMAL", err);
    if (rc < 0)
        return rc;
    ix->lazy = true;
    if ((rc = exec_stmt(ix, S_BEGIN, err)) < 0) {
        (void)lazy_end(ix, NULL);
        return rc;
    }
    ix->in_tx = true;
    return 0;
}

int lr_index_begin(struct lr_index *ix, struct lr_err *err)
{
    if (ix->in_tx)
        return lr_err_set(err, LR_EINTERNAL, "index: transaction already open");
    /* A lazy batch could not put durability back: no batch starts without it. */
    if (ix->lazy && lazy_end(ix, err) < 0)
        return LR_EDB;
    int rc = exec_stmt(ix, S_BEGIN, err);
    if (rc == 0)
        ix->in_tx = true;
    return rc;
}

int lr_index_commit(struct lr_index *ix, struct lr_err *err)
{
    if (!ix->in_tx)
        return lr_err_set(err, LR_EINTERNAL, "index: commit without transaction");
    int rc = exec_stmt(ix, S_COMMIT, err);
    if (rc) {
        /* A failed COMMIT may leave the transaction open; end it so state is known. */
        if (!sqlite3_get_autocommit(ix->db))
            sqlite3_exec(ix->db, "ROLLBACK", NULL, NULL, NULL);
    }
    ix->in_tx = false;
    if (ix->lazy)
        (void)lazy_end(ix, NULL); /* else the next begin retries it, and fails if it must */
    return rc;
}

int lr__ix_synchronous(struct lr_index *ix)
{
    int64_t v = -1;
    return pragma_int(ix, "PRAGMA synchronous", &v, NULL) == 0 ? (int)v : -1;
}

void lr_index_rollback(struct lr_index *ix)
{
    if (!ix->in_tx)
        return;
    if (!sqlite3_get_autocommit(ix->db))
        exec_stmt(ix, S_ROLLBACK, NULL);
    ix->in_tx = false;
    if (ix->lazy)
        (void)lazy_end(ix, NULL);
}

bool lr_index_in_tx(const struct lr_index *ix)
{
    return ix->in_tx;
}

int lr__ix_in_tx(struct lr_index *ix, struct lr_err *err,
                 int (*fn)(struct lr_index *ix, void *arg, struct lr_err *err), void *arg)
{
    if (ix->in_tx)
        return fn(ix, arg, err);
    int rc = lr_index_begin(ix, err);
    if (rc)
        return rc;
    if ((rc = fn(ix, arg, err))) {
        lr_index_rollback(ix);
        return rc;
    }
    return lr_index_commit(ix, err);
}

/* ---- folders ------------------------------------------------------------------ */

static int check_folder_id(const char *folder_id, struct lr_err *err)
{
    size_t n = strlen(folder_id);
    if (n == 0 || n > FOLDER_ID_MAX)
        return lr_err_set(err, LR_EUSAGE, "folder ID of %zu bytes (1..%d allowed)", n,
                          FOLDER_ID_MAX);
    return 0;
}

static int folder_query(struct lr_index *ix, const char *folder_id, int64_t *id,
                        struct lr_folder_info *info, struct lr_err *err)
{
    sqlite3_stmt *s = stmt(ix, S_FOLDER_GET, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_text(s, 1, folder_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        if (info) {
            info->index_id = (uint64_t)sqlite3_column_int64(s, 1);
            info->short_id = (uint64_t)sqlite3_column_int64(s, 2);
            info->max_seq = (uint64_t)sqlite3_column_int64(s, 3);
            info->clock = (uint64_t)sqlite3_column_int64(s, 4);
        }
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = lr_err_set(err, LR_ENOTFOUND, "folder %s has no index", folder_id);
    } else {
        rc = lr__ix_dberr(ix, err, "folder lookup");
    }
    done(s);
    return rc;
}

/* Row id of a folder, cached (folders are few and rarely removed). */
int lr__ix_folder_rowid(struct lr_index *ix, const char *folder_id, int64_t *id, struct lr_err *err)
{
    for (int i = 0; i < FOLDER_CACHE; i++) {
        if (ix->fc[i].name && strcmp(ix->fc[i].name, folder_id) == 0) {
            *id = ix->fc[i].id;
            return 0;
        }
    }
    int rc = folder_query(ix, folder_id, id, NULL, err);
    if (rc)
        return rc;
    struct lr__ix_folder_cache *c = &ix->fc[ix->fc_next++ % FOLDER_CACHE];
    free(c->name);
    c->name = lr_xstrdup(folder_id);
    c->id = *id;
    return 0;
}

static void folder_uncache(struct lr_index *ix, const char *folder_id)
{
    for (int i = 0; i < FOLDER_CACHE; i++) {
        if (ix->fc[i].name && strcmp(ix->fc[i].name, folder_id) == 0) {
            free(ix->fc[i].name);
            ix->fc[i].name = NULL;
        }
    }
}

int lr_index_folder_get(struct lr_index *ix, const char *folder_id, struct lr_folder_info *info,
                        struct lr_err *err)
{
    struct lr_folder_info tmp;
    int64_t id;
    memset(info, 0, sizeof(*info));
    int rc = check_folder_id(folder_id, err);
    if (rc)
        return rc;
    if ((rc = folder_query(ix, folder_id, &id, &tmp, err)))
        return rc;
    *info = tmp;
    return 0;
}

uint64_t lr_index_folder_stamp(struct lr_index *ix, const char *folder_id)
{
    struct lr_folder_info info;
    time_t t = time(NULL);
    uint64_t now_s = t > 0 ? (uint64_t)t : 0;
    if (lr_index_folder_get(ix, folder_id, &info, NULL) < 0)
        return now_s;
    return lr_index_folder_now(&info, now_s);
}

static int new_index_id(uint64_t *out, struct lr_err *err)
{
    *out = 0;
    while (*out == 0) {
        if (getrandom(out, sizeof(*out), 0) != (ssize_t)sizeof(*out))
            return lr_err_set(err, -errno, "getrandom for index ID");
    }
    return 0;
}

int lr_index_folder_ensure(struct lr_index *ix, const char *folder_id, uint64_t short_id,
                           struct lr_folder_info *info, struct lr_err *err)
{
    struct lr_folder_info tmp;
    int64_t id;
    if (info)
        memset(info, 0, sizeof(*info));
    int rc = check_folder_id(folder_id, err);
    if (rc)
        return rc;
    rc = folder_query(ix, folder_id, &id, &tmp, err);
    if (rc == LR_ENOTFOUND) {
        uint64_t index_id;
        if ((rc = new_index_id(&index_id, err)) < 0)
            return rc;
        sqlite3_stmt *s = stmt(ix, S_FOLDER_ADD, err);
        if (!s)
            return LR_EDB;
        sqlite3_bind_text(s, 1, folder_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, (int64_t)index_id);
        sqlite3_bind_int64(s, 3, (int64_t)short_id);
        int step = sqlite3_step(s);
        /* Another handle (a second process, or the daemon's other handle) can
         * create the row between our look-up and this insert: its row and
         * index ID stand, and we read them back like any existing folder. */
        bool raced = (step & 0xff) == SQLITE_CONSTRAINT;
        rc = step == SQLITE_DONE || raced ? 0 : lr__ix_dberr(ix, err, "folder create");
        done(s);
        if (rc)
            return rc;
        if (!raced) {
            lr_info("index", "folder index created folder=%s index_id=%016" PRIx64, folder_id,
                    index_id);
            if (info)
                *info = (struct lr_folder_info){index_id, short_id, 0, 0};
            return 0;
        }
        rc = folder_query(ix, folder_id, &id, &tmp, err);
    }
    if (rc == 0 && tmp.short_id != short_id) {
        sqlite3_stmt *s = stmt(ix, S_FOLDER_SET_SHORT, err);
        if (!s)
            return LR_EDB;
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_int64(s, 2, (int64_t)short_id);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "folder short ID");
        done(s);
        tmp.short_id = short_id;
    }
    if (rc == 0 && info)
        *info = tmp;
    return rc;
}

/* One statement on the folder's row: ?1 the row id, ?2 and ?3 the values. */
static int folder_exec(struct lr_index *ix, enum stmt_id which, int64_t id, int64_t v2, int64_t v3,
                       struct lr_err *err)
{
    sqlite3_stmt *s = stmt(ix, which, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, id);
    if (sqlite3_bind_parameter_count(s) >= 2)
        sqlite3_bind_int64(s, 2, v2);
    if (sqlite3_bind_parameter_count(s) >= 3)
        sqlite3_bind_int64(s, 3, v3);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "folder update");
    done(s);
    return rc;
}

/* Empty the folder's index in place (the row, and so its row id, stays:
 * other connections cache it) under a new index ID. */
static int folder_reset(struct lr_index *ix, const char *folder_id, int64_t id, uint64_t token,
                        struct lr_err *err)
{
    uint64_t index_id;
    int rc = new_index_id(&index_id, err);
    if (rc == 0)
        rc = lr__ix_remote_folder_remove(ix, id, err);
    if (rc == 0)
        rc = folder_exec(ix, S_FOLDER_DEL_CHUNKS, id, 0, 0, err);
    if (rc == 0)
        rc = folder_exec(ix, S_FOLDER_DEL_FILES, id, 0, 0, err);
    if (rc == 0)
        rc = folder_exec(ix, S_FOLDER_RESET, id, (int64_t)index_id, (int64_t)token, err);
    if (rc == 0) {
        sqlite3_stmt *s = stmt(ix, S_FOLDER_DEL_SESSIONS, err);
        if (!s)
            return LR_EDB;
        sqlite3_bind_text(s, 1, folder_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "folder sessions");
        done(s);
    }
    if (rc == 0)
        lr_info("index", "folder index reset folder=%s index_id=%016" PRIx64, folder_id, index_id);
    return rc;
}

static int clock_init(struct lr_index *ix, const char *folder_id, struct lr_err *err);

int lr_index_folder_bind(struct lr_index *ix, const char *folder_id, uint64_t short_id,
                         uint64_t token, bool *reset, struct lr_err *err)
{
    *reset = false;
    int64_t id;
    bool own = !ix->in_tx;
    int rc = 0;
    if (own && (rc = lr_index_begin(ix, err)))
        return rc;
    rc = lr_index_folder_ensure(ix, folder_id, short_id, NULL, err);
    if (rc == 0)
        rc = lr__ix_folder_rowid(ix, folder_id, &id, err);
    uint64_t have = 0;
    if (rc == 0) {
        sqlite3_stmt *s = stmt(ix, S_FOLDER_TOKEN_GET, err);
        if (!s) {
            rc = LR_EDB;
        } else {
            sqlite3_bind_int64(s, 1, id);
            if (sqlite3_step(s) == SQLITE_ROW)
                have = (uint64_t)sqlite3_column_int64(s, 0);
            else
                rc = lr__ix_dberr(ix, err, "folder token");
            done(s);
        }
    }
    if (rc == 0 && token != 0 && have != token) {
        if (have != 0) {
            rc = folder_reset(ix, folder_id, id, token, err);
            *reset = rc == 0;
        } else {
            rc = folder_exec(ix, S_FOLDER_TOKEN_SET, id, (int64_t)token, 0, err);
        }
    }
    if (rc == 0)
        rc = clock_init(ix, folder_id, err);
    if (own) {
        if (rc)
            lr_index_rollback(ix);
        else
            rc = lr_index_commit(ix, err);
    }
    if (rc)
        *reset = false;
    return rc;
}

int lr_index_folder_check_mark(struct lr_index *ix, const char *folder_id, uint64_t mark_id,
                               uint64_t mark_seq, uint64_t mark_clock, bool *rekeyed,
                               struct lr_err *err)
{
    *rekeyed = false;
    int rc = check_folder_id(folder_id, err);
    if (rc)
        return rc;
    if (mark_id == 0)
        return 0;
    uint64_t index_id;
    if ((rc = new_index_id(&index_id, err)) < 0)
        return rc;
    sqlite3_stmt *s = stmt(ix, S_FOLDER_REKEY, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_text(s, 1, folder_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (int64_t)index_id);
    sqlite3_bind_int64(s, 3, (int64_t)mark_id);
    /* Sequences stay below 2^62 (index.h), so the signed compare is exact. */
    sqlite3_bind_int64(s, 4, mark_seq > INT64_MAX ? INT64_MAX : (int64_t)mark_seq);
    sqlite3_bind_int64(s, 5, mark_clock < (1ull << 62) ? (int64_t)mark_clock : 0);
    rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "folder index ID");
    done(s);
    struct lr_folder_info info;
    if (rc == 0 && sqlite3_changes(ix->db) == 1 &&
        (rc = lr_index_folder_get(ix, folder_id, &info, err)) == 0) {
        *rekeyed = true;
        lr_warn("index",
                "folder=%s index.db is older than the folder's index mark (sequence %" PRIu64
                " was announced, the index ends at %" PRIu64 "): new index_id=%016" PRIx64
                ", so peers take it in full again",
                folder_id, mark_seq, info.max_seq, index_id);
    }
    return rc;
}

int lr_index_folder_rekey(struct lr_index *ix, const char *folder_id, uint64_t clock,
                          struct lr_err *err)
{
    int rc = check_folder_id(folder_id, err);
    if (rc)
        return rc;
    uint64_t index_id;
    if ((rc = new_index_id(&index_id, err)) < 0)
        return rc;
    sqlite3_stmt *s = stmt(ix, S_FOLDER_REKEY_ANY, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_text(s, 1, folder_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (int64_t)index_id);
    sqlite3_bind_int64(s, 3, clock < (1ull << 62) ? (int64_t)clock : 0);
    rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "folder index ID");
    done(s);
    if (rc == 0 && sqlite3_changes(ix->db) != 1)
        rc = lr_err_set(err, LR_ENOTFOUND, "folder %s has no index", folder_id);
    if (rc == 0)
        lr_warn("index",
                "folder=%s index is older than what peers hold: new index_id=%016" PRIx64
                ", so peers take it in full again",
                folder_id, index_id);
    return rc;
}

/* A database from before the clock (v8): its value from the records, once. */
static int clock_init(struct lr_index *ix, const char *folder_id, struct lr_err *err)
{
    struct lr_folder_info info;
    int64_t id;
    int rc = folder_query(ix, folder_id, &id, &info, err);
    if (rc || info.clock != 0 || info.max_seq == 0 || info.short_id == 0)
        return rc;
    sqlite3_stmt *s = stmt(ix, S_FOLDER_VVS, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, id);
    uint64_t max = 0;
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct lr_vv vv = {0};
        if (lr_vv_decode(sqlite3_column_blob(s, 0), (size_t)sqlite3_column_bytes(s, 0), &vv) == 0) {
            uint64_t c = lr_vv_get(&vv, info.short_id);
            time_t now = time(NULL);
            if (c > max && now > 0 && c <= (uint64_t)now + CLOCK_AHEAD_MAX_S)
                max = c;
        }
        lr_vv_release(&vv);
    }
    rc = step == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "folder clock");
    done(s);
    /* 1 when none of ours is there: done once (every stamp is above it). */
    if (rc == 0)
        rc = folder_exec(ix, S_FOLDER_SET_CLOCK, id, max ? (int64_t)max : 1, 0, err);
    return rc;
}

int lr_index_folder_remove(struct lr_index *ix, const char *folder_id, struct lr_err *err)
{
    int64_t id;
    int rc = lr__ix_folder_rowid(ix, folder_id, &id, err);
    if (rc)
        return rc;
    bool own = !ix->in_tx;
    if (own && (rc = lr_index_begin(ix, err)))
        return rc;
    static const enum stmt_id seq[] = {S_FOLDER_DEL_CHUNKS, S_FOLDER_DEL_FILES, S_FOLDER_DEL};
    rc = lr__ix_remote_folder_remove(ix, id, err);
    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]) && rc == 0; i++) {
        sqlite3_stmt *s = stmt(ix, seq[i], err);
        if (!s) {
            rc = LR_EDB;
            break;
        }
        sqlite3_bind_int64(s, 1, id);
        rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "folder remove");
        done(s);
    }
    folder_uncache(ix, folder_id);
    if (own) {
        if (rc)
            lr_index_rollback(ix);
        else
            rc = lr_index_commit(ix, err);
    }
    return rc;
}

int lr_index_folder_stats(struct lr_index *ix, const char *folder_id, struct lr_folder_stats *out,
                          struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t id;
    int rc = lr__ix_folder_rowid(ix, folder_id, &id, err);
    if (rc)
        return rc;
    sqlite3_stmt *s = stmt(ix, S_FOLDER_STATS, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, id);
    struct lr_folder_stats st = {0};
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int type = sqlite3_column_int(s, 0);
        int deleted = sqlite3_column_int(s, 1);
        uint64_t cnt = (uint64_t)sqlite3_column_int64(s, 2);
        if (deleted)
            st.deleted += cnt;
        else if (type == LR_FT_FILE) {
            st.files += cnt;
            st.bytes += (uint64_t)sqlite3_column_int64(s, 3);
        } else if (type == LR_FT_DIR)
            st.dirs += cnt;
        else if (type == LR_FT_SYMLINK)
            st.symlinks += cnt;
    }
    rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "folder stats");
    done(s);
    if (rc == 0)
        *out = st;
    return rc;
}

/* ---- files ----------------------------------------------------------------------- */

/* Also raises the folder's clock to the record's counter if its author is
 * this device (the folder's short ID). */
static int next_seq(struct lr_index *ix, int64_t folder, const struct lr_vv *vv, uint64_t *seq,
                    struct lr_err *err)
{
    sqlite3_stmt *s = stmt(ix, S_FOLDER_NEXT_SEQ, err);
    if (!s)
        return LR_EDB;
    uint64_t c = vv->author ? lr_vv_get(vv, vv->author) : 0;
    /* A record stamped by us may also come from a peer (ours relayed back):
     * one far ahead of the wall clock is a peer's bogus value, not followed
     * (it would stamp every later change of the folder). */
    time_t now = time(NULL);
    if (now <= 0 || c > (uint64_t)now + CLOCK_AHEAD_MAX_S)
        c = 0;
    sqlite3_bind_int64(s, 1, folder);
    sqlite3_bind_int64(s, 2, (int64_t)vv->author);
    sqlite3_bind_int64(s, 3, (int64_t)c);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *seq = (uint64_t)sqlite3_column_int64(s, 0);
        rc = 0;
    } else {
        rc = lr__ix_dberr(ix, err, "next sequence");
    }
    done(s);
    return rc;
}

int lr__ix_check_rec(const struct lr_file_rec *rec, struct lr_err *err)
{
    int rc = lr_index_path_check(rec->path, rec->path_len, err);
    if (rc)
        return rc;
    if (rec->type != LR_FT_FILE && rec->type != LR_FT_DIR && rec->type != LR_FT_SYMLINK)
        return lr_err_set(err, LR_EBADVAL, "record %s: type %d", (const char *)rec->path,
                          (int)rec->type);
    if (rec->size > INT64_MAX)
        return lr_err_set(err, LR_EBADVAL, "record: size %" PRIu64 " too big", rec->size);
    if (rec->target_len > LR_INDEX_TARGET_MAX)
        return lr_err_set(err, LR_ETOOBIG, "record: symlink target of %zu bytes", rec->target_len);
    bool live_file = rec->type == LR_FT_FILE && !rec->deleted;
    if (!live_file && rec->nchunks)
        return lr_err_set(err, LR_EBADVAL, "record: chunks on a %s",
                          rec->deleted ? "tombstone" : "non-file");
    if (rec->nchunks > LR_INDEX_CHUNKS_MAX)
        return lr_err_set(err, LR_ETOOBIG, "record: %zu chunks", rec->nchunks);
    uint64_t off = 0;
    for (size_t i = 0; i < rec->nchunks; i++) {
        if (rec->chunks[i].off != off || rec->chunks[i].len == 0)
            return lr_err_set(err, LR_EBADVAL, "record: chunk %zu at %" PRIu64 " not contiguous", i,
                              rec->chunks[i].off);
        off += rec->chunks[i].len;
    }
    if (live_file && off != rec->size)
        return lr_err_set(err, LR_EBADVAL,
                          "record: chunks cover %" PRIu64 " bytes, size is %" PRIu64, off,
                          rec->size);
    return 0;
}

static int put_locked(struct lr_index *ix, int64_t folder, const struct lr_file_rec *rec,
                      uint64_t *seq_out, struct lr_err *err)
{
    uint64_t seq = 0;
    int rc = next_seq(ix, folder, &rec->vv, &seq, err);
    if (rc)
        return rc;
    lr_buf_reset(&ix->vvb);
    if ((rc = lr_vv_encode_stored(&rec->vv, &ix->vvb)))
        return lr_err_set(err, rc, "record: version vector too big");
    lr__ix_to_key(&ix->key, rec->path, rec->path_len);

    sqlite3_stmt *s = stmt(ix, S_FILE_UPSERT, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, ix->key.data, ix->key.len);
    sqlite3_bind_int(s, 3, (int)rec->type);
    sqlite3_bind_int(s, 4, rec->deleted ? 1 : 0);
    sqlite3_bind_int64(s, 5, (int64_t)rec->size);
    sqlite3_bind_int64(s, 6, rec->mtime_ns);
    sqlite3_bind_int64(s, 7, (int64_t)rec->mode);
    sqlite3_bind_int64(s, 8, (int64_t)rec->inode);
    sqlite3_bind_int64(s, 9, rec->ctime_ns);
    if (rec->type == LR_FT_SYMLINK && !rec->deleted)
        lr__ix_bind_blob(s, 10, rec->target, rec->target_len);
    lr__ix_bind_blob(s, 11, ix->vvb.data, ix->vvb.len);
    sqlite3_bind_int64(s, 12, (int64_t)seq);
    if (rec->type == LR_FT_FILE && !rec->deleted)
        lr__ix_bind_blob(s, 13, rec->blocks_hash.b, LR_HASH_LEN);
    int64_t file_id = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        file_id = sqlite3_column_int64(s, 0);
        rc = 0;
    } else {
        rc = lr__ix_dberr(ix, err, "file upsert");
    }
    done(s);
    if (rc)
        return rc;

    if (!(s = stmt(ix, S_CHUNKS_DEL, err)))
        return LR_EDB;
    sqlite3_bind_int64(s, 1, file_id);
    rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "chunk delete");
    done(s);
    if (rc)
        return rc;
    if (rec->nchunks) {
        if (!(s = stmt(ix, S_CHUNK_ADD, err)))
            return LR_EDB;
        for (size_t i = 0; i < rec->nchunks; i++) {
            sqlite3_bind_int64(s, 1, file_id);
            sqlite3_bind_int64(s, 2, (int64_t)i);
            sqlite3_bind_int64(s, 3, (int64_t)rec->chunks[i].off);
            sqlite3_bind_int64(s, 4, rec->chunks[i].len);
            lr__ix_bind_blob(s, 5, rec->chunks[i].hash.b, LR_HASH_LEN);
            sqlite3_bind_int64(s, 6, (int64_t)rec->chunks[i].weak);
            rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "chunk insert");
            sqlite3_reset(s);
            if (rc)
                break;
        }
        sqlite3_clear_bindings(s);
        if (rc)
            return rc;
    }
    /* The key scratch was overwritten by nothing since the upsert. */
    if ((rc = lr__ix_need_local_changed(ix, folder, ix->key.data, ix->key.len, &rec->vv, err)))
        return rc;
    if (seq_out)
        *seq_out = seq;
    return 0;
}

int lr_index_file_put(struct lr_index *ix, const char *folder_id, const struct lr_file_rec *rec,
                      uint64_t *seq, struct lr_err *err)
{
    if (seq)
        *seq = 0;
    int64_t folder;
    int rc = lr__ix_check_rec(rec, err);
    if (rc)
        return rc;
    if ((rc = lr__ix_folder_rowid(ix, folder_id, &folder, err)))
        return rc;
    if (ix->in_tx)
        return put_locked(ix, folder, rec, seq, err);
    if ((rc = lr_index_begin(ix, err)))
        return rc;
    if ((rc = put_locked(ix, folder, rec, seq, err))) {
        lr_index_rollback(ix);
        if (seq)
            *seq = 0;
        return rc;
    }
    return lr_index_commit(ix, err);
}

int lr_index_file_set_stat(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                           size_t path_len, uint64_t inode, int64_t ctime_ns, struct lr_err *err)
{
    int64_t folder;
    int rc = lr_index_path_check(path, path_len, err);
    if (rc)
        return rc;
    if ((rc = lr__ix_folder_rowid(ix, folder_id, &folder, err)))
        return rc;
    sqlite3_stmt *s = stmt(ix, S_FILE_SET_STAT, err);
    if (!s)
        return LR_EDB;
    lr__ix_to_key(&ix->key, path, path_len);
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, ix->key.data, ix->key.len);
    sqlite3_bind_int64(s, 3, (int64_t)inode);
    sqlite3_bind_int64(s, 4, ctime_ns);
    rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "set stat");
    done(s);
    if (rc == 0 && sqlite3_changes(ix->db) == 0)
        rc = lr_err_set(err, LR_ENOTFOUND, "no record for the path");
    return rc;
}

static int set_vv_tx(struct lr_index *ix, int64_t folder, const struct lr_vv *vv,
                     struct lr_err *err)
{
    sqlite3_stmt *s = stmt(ix, S_FILE_SET_VV, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, ix->key.data, ix->key.len);
    lr__ix_bind_blob(s, 3, ix->vvb.data, ix->vvb.len);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "set vector");
    done(s);
    if (rc == 0 && sqlite3_changes(ix->db) == 0)
        rc = lr_err_set(err, LR_ENOTFOUND, "no record for the path");
    if (rc == 0)
        rc = lr__ix_need_local_changed(ix, folder, ix->key.data, ix->key.len, vv, err);
    return rc;
}

int lr_index_file_set_vv(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                         size_t path_len, const struct lr_vv *vv, struct lr_err *err)
{
    int64_t folder;
    int rc = lr_index_path_check(path, path_len, err);
    if (rc)
        return rc;
    if (vv->n == 0)
        return lr_err_set(err, LR_EBADVAL, "empty version vector");
    if ((rc = lr__ix_folder_rowid(ix, folder_id, &folder, err)))
        return rc;
    lr_buf_reset(&ix->vvb);
    if ((rc = lr_vv_encode_stored(vv, &ix->vvb)))
        return lr_err_set(err, rc, "cannot encode the version vector");
    lr__ix_to_key(&ix->key, path, path_len);
    if (ix->in_tx)
        return set_vv_tx(ix, folder, vv, err);
    if ((rc = lr_index_begin(ix, err)))
        return rc;
    if ((rc = set_vv_tx(ix, folder, vv, err))) {
        lr_index_rollback(ix);
        return rc;
    }
    return lr_index_commit(ix, err);
}

static int load_chunks(struct lr_index *ix, int64_t file_id, struct lr_file_rec *r,
                       struct lr_err *err)
{
    sqlite3_stmt *s = stmt(ix, S_CHUNKS_GET, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, file_id);
    size_t cap = 0;
    int rc;
    uint64_t off = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (r->nchunks >= LR_INDEX_CHUNKS_MAX) {
            rc = lr_err_set(err, LR_EBADVAL, "index: too many chunks");
            goto out;
        }
        if (r->nchunks == cap) {
            cap = cap ? cap * 2 : 16;
            r->chunks = lr_xreallocarray(r->chunks, cap, sizeof(r->chunks[0]));
        }
        struct lr_chunk *c = &r->chunks[r->nchunks];
        int64_t coff = sqlite3_column_int64(s, 0), clen = sqlite3_column_int64(s, 1);
        if (sqlite3_column_bytes(s, 2) != LR_HASH_LEN || coff < 0 || (uint64_t)coff != off ||
            clen <= 0 || clen > UINT32_MAX) {
            rc = lr_err_set(err, LR_EBADVAL, "index: corrupt chunk row of file %" PRId64, file_id);
            goto out;
        }
        c->off = (uint64_t)coff;
        c->len = (uint32_t)clen;
        memcpy(c->hash.b, sqlite3_column_blob(s, 2), LR_HASH_LEN);
        c->weak = (uint64_t)sqlite3_column_int64(s, 3);
        off += c->len;
        r->nchunks++;
    }
    rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "chunk list");
out:
    done(s);
    return rc;
}

/* Fill r from the current row (FILE_COLS order); r is zeroed. */
static int read_row(struct lr_index *ix, sqlite3_stmt *s, unsigned flags, struct lr_file_rec *r,
                    struct lr_err *err)
{
    memset(r, 0, sizeof(*r));
    size_t klen = (size_t)sqlite3_column_bytes(s, 0);
    const uint8_t *key = sqlite3_column_blob(s, 0);
    int type = sqlite3_column_int(s, 1);
    if (!key || klen == 0 || klen > LR_INDEX_PATH_MAX || type < LR_FT_FILE || type > LR_FT_SYMLINK)
        return lr_err_set(err, LR_EBADVAL, "index: corrupt file row");
    r->path = lr_xmalloc(klen + 1);
    for (size_t i = 0; i < klen; i++)
        r->path[i] = key[i] == 0 ? '/' : key[i];
    r->path[klen] = 0;
    r->path_len = klen;
    r->type = (enum lr_ftype)type;
    r->deleted = sqlite3_column_int(s, 2) != 0;
    r->size = (uint64_t)sqlite3_column_int64(s, 3);
    r->mtime_ns = sqlite3_column_int64(s, 4);
    r->mode = (uint32_t)sqlite3_column_int64(s, 5);
    r->inode = (uint64_t)sqlite3_column_int64(s, 6);
    r->ctime_ns = sqlite3_column_int64(s, 7);
    if (sqlite3_column_type(s, 8) == SQLITE_BLOB) {
        size_t tl = (size_t)sqlite3_column_bytes(s, 8);
        const void *t = sqlite3_column_blob(s, 8);
        if (tl > LR_INDEX_TARGET_MAX)
            goto bad;
        r->target = lr_xmalloc(tl + 1);
        if (tl)
            memcpy(r->target, t, tl);
        r->target[tl] = 0;
        r->target_len = tl;
    }
    const uint8_t *vv = sqlite3_column_blob(s, 9);
    if (lr_vv_decode(vv, (size_t)sqlite3_column_bytes(s, 9), &r->vv))
        goto bad;
    r->seq = (uint64_t)sqlite3_column_int64(s, 10);
    if (sqlite3_column_type(s, 11) == SQLITE_BLOB) {
        if (sqlite3_column_bytes(s, 11) != LR_HASH_LEN)
            goto bad;
        memcpy(r->blocks_hash.b, sqlite3_column_blob(s, 11), LR_HASH_LEN);
    }
    if (flags & LR_IX_CHUNKS) {
        int rc = load_chunks(ix, sqlite3_column_int64(s, 12), r, err);
        if (rc) {
            lr_file_rec_release(r);
            return rc;
        }
    }
    return 0;
bad:
    lr_err_set(err, LR_EBADVAL, "index: corrupt record for %s", (const char *)r->path);
    lr_file_rec_release(r);
    return LR_EBADVAL;
}

/* One record by a statement taking (folder row, path key): S_FILE_GET's
 * record of the path, or S_FILE_TWIN's twin of it. */
static int file_one(struct lr_index *ix, enum stmt_id which, const char *folder_id,
                    const uint8_t *path, size_t path_len, unsigned flags, struct lr_file_rec *out,
                    struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t folder;
    int rc = lr_index_path_check(path, path_len, err);
    if (rc)
        return rc;
    if ((rc = lr__ix_folder_rowid(ix, folder_id, &folder, err)))
        return rc;
    sqlite3_stmt *s = stmt(ix, which, err);
    if (!s)
        return LR_EDB;
    lr__ix_to_key(&ix->key, path, path_len);
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, ix->key.data, ix->key.len);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rc = read_row(ix, s, flags, out, err);
    else if (rc == SQLITE_DONE)
        rc = lr_err_set(err, LR_ENOTFOUND,
                        which == S_FILE_GET ? "no record for the path" : "no twin for the path");
    else
        rc = lr__ix_dberr(ix, err, which == S_FILE_GET ? "file get" : "file twin");
    done(s);
    return rc;
}

int lr_index_file_get(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                      size_t path_len, unsigned flags, struct lr_file_rec *out, struct lr_err *err)
{
    return file_one(ix, S_FILE_GET, folder_id, path, path_len, flags, out, err);
}

int lr_index_file_twin(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                       size_t path_len, struct lr_file_rec *out, struct lr_err *err)
{
    return file_one(ix, S_FILE_TWIN, folder_id, path, path_len, 0, out, err);
}

static int list_rows(struct lr_index *ix, sqlite3_stmt *s, size_t max, unsigned flags,
                     struct lr_file_list *out, struct lr_err *err)
{
    size_t cap = 0;
    int rc;
    struct lr_file_list l = {0};
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (l.n == cap) {
            cap = cap ? cap * 2 : (max < 64 ? max : 64);
            l.v = lr_xreallocarray(l.v, cap, sizeof(l.v[0]));
        }
        if ((rc = read_row(ix, s, flags, &l.v[l.n], err)))
            goto out;
        l.n++;
    }
    rc = rc == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "list");
out:
    done(s);
    if (rc)
        lr_file_list_release(&l);
    else
        *out = l;
    return rc;
}

int lr_index_list_by_path(struct lr_index *ix, const char *folder_id, const uint8_t *after,
                          size_t after_len, size_t max, unsigned flags, struct lr_file_list *out,
                          struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t folder;
    int rc = lr__ix_folder_rowid(ix, folder_id, &folder, err);
    if (rc || max == 0)
        return rc;
    if (after_len > LR_INDEX_PATH_MAX)
        return lr_err_set(err, LR_EBADPATH, "list bound too long");
    sqlite3_stmt *s = stmt(ix, S_LIST_PATH, err);
    if (!s)
        return LR_EDB;
    /* The empty BLOB sorts before every key. */
    lr__ix_to_key(&ix->key2, after, after_len);
    sqlite3_bind_int64(s, 1, folder);
    lr__ix_bind_blob(s, 2, ix->key2.data, ix->key2.len);
    sqlite3_bind_int64(s, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
    return list_rows(ix, s, max, flags, out, err);
}

int lr_index_list_by_seq(struct lr_index *ix, const char *folder_id, uint64_t from_seq, size_t max,
                         unsigned flags, struct lr_file_list *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t folder;
    int rc = lr__ix_folder_rowid(ix, folder_id, &folder, err);
    if (rc || max == 0)
        return rc;
    if (from_seq > INT64_MAX)
        return 0;
    sqlite3_stmt *s = stmt(ix, S_LIST_SEQ, err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, folder);
    sqlite3_bind_int64(s, 2, (int64_t)from_seq);
    sqlite3_bind_int64(s, 3, max > INT64_MAX ? INT64_MAX : (int64_t)max);
    return list_rows(ix, s, max, flags, out, err);
}

int lr_index_chunk_find(struct lr_index *ix, const char *folder_id, const struct lr_hash *h,
                        struct lr_chunk_loc *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *s = stmt(ix, folder_id ? S_CHUNK_FIND_IN : S_CHUNK_FIND, err);
    if (!s)
        return LR_EDB;
    lr__ix_bind_blob(s, 1, h->b, LR_HASH_LEN);
    if (folder_id)
        sqlite3_bind_text(s, 2, folder_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *name = sqlite3_column_text(s, 0);
        const uint8_t *key = sqlite3_column_blob(s, 1);
        size_t klen = (size_t)sqlite3_column_bytes(s, 1);
        int64_t off = sqlite3_column_int64(s, 2), len = sqlite3_column_int64(s, 3);
        if (!name || !key || klen == 0 || klen > LR_INDEX_PATH_MAX || off < 0 || len <= 0 ||
            len > UINT32_MAX) {
            rc = lr_err_set(err, LR_EBADVAL, "index: corrupt chunk location");
        } else {
            struct lr_chunk_loc l = {lr_xstrdup((const char *)name), lr_xmalloc(klen + 1), klen,
                                     (uint64_t)off, (uint32_t)len};
            for (size_t i = 0; i < klen; i++)
                l.path[i] = key[i] == 0 ? '/' : key[i];
            l.path[klen] = 0;
            *out = l;
            rc = 0;
        }
    } else if (rc == SQLITE_DONE) {
        rc = lr_err_set(err, LR_ENOTFOUND, "no local file holds the chunk");
    } else {
        rc = lr__ix_dberr(ix, err, "chunk find");
    }
    done(s);
    return rc;
}
