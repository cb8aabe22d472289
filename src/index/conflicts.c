/*
 * conflicts.c - the conflict audit trail (index.h, "conflict audit trail";
 * table `conflicts`, schema v4 in index.c).
 *
 * Conflicts are rare next to file records, so statements are prepared per
 * call instead of being cached in the connection: simpler, and nothing here
 * is on a hot path. Paths are stored as given ('/'-separated): the trail is
 * listed in recording order, never in path order.
 */
#include "index/index_int.h"

#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define FOLDER_ID_MAX 256

#define CONFLICT_COLS                                                                              \
    "id, time_s, folder, path, type, detail, strategy, resolution, winner, devices, "              \
    "kept_device, kept_path, archive_path"

void lr_conflict_rec_release(struct lr_conflict_rec *c)
{
    if (!c)
        return;
    free(c->folder);
    free(c->path);
    free(c->type);
    free(c->detail);
    free(c->strategy);
    free(c->resolution);
    free(c->winner);
    free(c->devices);
    free(c->kept_device);
    free(c->kept_path);
    free(c->archive_path);
    memset(c, 0, sizeof(*c));
}

void lr_conflict_list_release(struct lr_conflict_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        lr_conflict_rec_release(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int check_text(const char *what, const char *s, bool optional, struct lr_err *err)
{
    if (!s)
        return optional ? 0 : lr_err_set(err, LR_EBADVAL, "conflict record: no %s", what);
    size_t n = strlen(s);
    if ((n == 0 && !optional) || n > LR_CONFLICT_TEXT_MAX)
        return lr_err_set(err, LR_EBADVAL, "conflict record: %s of %zu bytes (1..%d allowed)", what,
                          n, LR_CONFLICT_TEXT_MAX);
    return 0;
}

static int check_kept(const char *what, const uint8_t *p, size_t n, struct lr_err *err)
{
    if (!p)
        return 0;
    if (n == 0 || n > LR_CONFLICT_KEPT_PATH_MAX || memchr(p, 0, n))
        return lr_err_set(err, LR_EBADVAL, "conflict record: invalid %s of %zu bytes", what, n);
    return 0;
}

static int check_rec(const struct lr_conflict_rec *c, struct lr_err *err)
{
    int rc;
    if (!c->folder || !*c->folder || strlen(c->folder) > FOLDER_ID_MAX)
        return lr_err_set(err, LR_EBADVAL, "conflict record: folder ID missing or over %d bytes",
                          FOLDER_ID_MAX);
    if ((rc = lr_index_path_check(c->path, c->path_len, err)) < 0)
        return rc;
    if ((rc = check_text("type", c->type, false, err)) < 0 ||
        (rc = check_text("detail", c->detail, false, err)) < 0 ||
        (rc = check_text("strategy", c->strategy, false, err)) < 0 ||
        (rc = check_text("resolution", c->resolution, false, err)) < 0 ||
        (rc = check_text("winner", c->winner, false, err)) < 0 ||
        (rc = check_text("devices", c->devices, true, err)) < 0 ||
        (rc = check_text("kept device", c->kept_device, true, err)) < 0 ||
        (rc = check_kept("kept path", c->kept_path, c->kept_path_len, err)) < 0 ||
        (rc = check_kept("archive path", c->archive_path, c->archive_path_len, err)) < 0)
        return rc;
    return 0;
}

static sqlite3_stmt *prepare(struct lr_index *ix, const char *sql, struct lr_err *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(ix->db, sql, -1, &s, NULL) != SQLITE_OK) {
        lr__ix_dberr(ix, err, sql);
        sqlite3_finalize(s);
        return NULL;
    }
    return s;
}

static void bind_opt_blob(sqlite3_stmt *s, int col, const uint8_t *p, size_t n)
{
    if (p)
        lr__ix_bind_blob(s, col, p, n);
    else
        sqlite3_bind_null(s, col);
}

struct put_arg {
    const struct lr_conflict_rec *c;
    const struct lr_hash *dedup;
    bool added;
    int64_t id;
};

static int put_locked(struct lr_index *ix, void *arg, struct lr_err *err)
{
    struct put_arg *a = arg;
    const struct lr_conflict_rec *c = a->c;
    sqlite3_stmt *s = prepare(ix,
                              "INSERT OR IGNORE INTO conflicts(folder, path, dedup, time_s, type, "
                              "detail, strategy, resolution, winner, devices, kept_device, "
                              "kept_path, archive_path) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                              "?9, ?10, ?11, ?12, ?13)",
                              err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_text(s, 1, c->folder, -1, SQLITE_STATIC);
    lr__ix_bind_blob(s, 2, c->path, c->path_len);
    lr__ix_bind_blob(s, 3, a->dedup->b, LR_HASH_LEN);
    sqlite3_bind_int64(s, 4, c->time_s);
    sqlite3_bind_text(s, 5, c->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, c->detail, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, c->strategy, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 8, c->resolution, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 9, c->winner, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 10, c->devices ? c->devices : "", -1, SQLITE_STATIC);
    if (c->kept_device)
        sqlite3_bind_text(s, 11, c->kept_device, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 11);
    bind_opt_blob(s, 12, c->kept_path, c->kept_path_len);
    bind_opt_blob(s, 13, c->archive_path, c->archive_path_len);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "conflict insert");
    a->added = rc == 0 && sqlite3_changes(ix->db) > 0;
    sqlite3_finalize(s);
    if (rc < 0 || !a->added)
        return rc;
    /* Bound the trail. Row ids are unique, so a folder whose oldest row is
     * less than KEEP + SLACK ids back holds fewer rows than that: an O(log n)
     * check spares the O(KEEP) prune below on all but one put in SLACK. */
    int64_t new_id = sqlite3_last_insert_rowid(ix->db);
    a->id = new_id;
    s = prepare(ix, "SELECT min(id) FROM conflicts WHERE folder = ?1", err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_text(s, 1, c->folder, -1, SQLITE_STATIC);
    rc = sqlite3_step(s) == SQLITE_ROW ? 0 : lr__ix_dberr(ix, err, "conflict oldest");
    int64_t oldest = rc == 0 ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_finalize(s);
    if (rc < 0 || new_id - oldest < LR_CONFLICTS_KEEP + LR_CONFLICTS_SLACK)
        return rc;
    s = prepare(ix,
                "DELETE FROM conflicts WHERE folder = ?1 AND id <= (SELECT id FROM conflicts "
                "WHERE folder = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_text(s, 1, c->folder, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, LR_CONFLICTS_KEEP);
    rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "conflict prune");
    sqlite3_finalize(s);
    return rc;
}

int lr_index_conflict_put(struct lr_index *ix, const struct lr_conflict_rec *c,
                          const struct lr_hash *dedup, int64_t *added_id, struct lr_err *err)
{
    if (added_id)
        *added_id = 0;
    int rc = check_rec(c, err);
    if (rc < 0)
        return rc;
    if (!dedup)
        return lr_err_set(err, LR_EUSAGE, "conflict record without a dedup key");
    struct put_arg a = {.c = c, .dedup = dedup};
    if ((rc = lr__ix_in_tx(ix, err, put_locked, &a)) < 0)
        return rc;
    if (added_id)
        *added_id = a.added ? a.id : 0;
    return 0;
}

static char *col_text(sqlite3_stmt *s, int col)
{
    if (sqlite3_column_type(s, col) == SQLITE_NULL)
        return NULL;
    const unsigned char *t = sqlite3_column_text(s, col);
    int n = sqlite3_column_bytes(s, col);
    char *out = lr_xmalloc((size_t)n + 1);
    if (n)
        memcpy(out, t, (size_t)n);
    out[n] = 0;
    return out;
}

/* A BLOB column as an owned NUL-terminated copy (NULL for SQL NULL). */
static uint8_t *col_blob(sqlite3_stmt *s, int col, size_t *len)
{
    *len = 0;
    if (sqlite3_column_type(s, col) == SQLITE_NULL)
        return NULL;
    const void *p = sqlite3_column_blob(s, col);
    int n = sqlite3_column_bytes(s, col);
    uint8_t *out = lr_xmalloc((size_t)n + 1);
    if (n)
        memcpy(out, p, (size_t)n);
    out[n] = 0;
    *len = (size_t)n;
    return out;
}

int lr_index_conflict_list(struct lr_index *ix, const char *folder, const uint8_t *path,
                           size_t path_len, int64_t after_id, size_t max,
                           struct lr_conflict_list *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (max > LR_CONFLICT_LIST_MAX)
        max = LR_CONFLICT_LIST_MAX;
    if (max == 0)
        return 0;
    sqlite3_stmt *s = prepare(ix,
                              "SELECT " CONFLICT_COLS " FROM conflicts WHERE id > ?1 "
                              "AND (?2 IS NULL OR folder = ?2) AND (?3 IS NULL OR path = ?3) "
                              "ORDER BY id LIMIT ?4",
                              err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, after_id);
    if (folder)
        sqlite3_bind_text(s, 2, folder, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 2);
    bind_opt_blob(s, 3, path, path_len);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)max);
    struct lr_conflict_list l = {0};
    l.v = lr_xcalloc(max, sizeof(*l.v));
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && l.n < max) {
        struct lr_conflict_rec *c = &l.v[l.n++];
        c->id = sqlite3_column_int64(s, 0);
        c->time_s = sqlite3_column_int64(s, 1);
        c->folder = col_text(s, 2);
        c->path = col_blob(s, 3, &c->path_len);
        c->type = col_text(s, 4);
        c->detail = col_text(s, 5);
        c->strategy = col_text(s, 6);
        c->resolution = col_text(s, 7);
        c->winner = col_text(s, 8);
        c->devices = col_text(s, 9);
        c->kept_device = col_text(s, 10);
        c->kept_path = col_blob(s, 11, &c->kept_path_len);
        c->archive_path = col_blob(s, 12, &c->archive_path_len);
        if (!c->folder || !c->path || !c->type || !c->detail || !c->strategy || !c->resolution ||
            !c->winner || !c->devices) {
            rc = lr_err_set(err, LR_EBADVAL, "index %s: conflict row %lld has a NULL field",
                            ix->path, (long long)c->id);
            goto fail;
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        rc = lr__ix_dberr(ix, err, "conflict list");
        goto fail;
    }
    sqlite3_finalize(s);
    *out = l;
    return 0;
fail:
    sqlite3_finalize(s);
    lr_conflict_list_release(&l);
    return rc;
}

int lr_index_conflict_copies(struct lr_index *ix, const char *folder,
                             bool (*is_copy)(const uint8_t *path, size_t len), uint64_t *count,
                             struct lr_err *err)
{
    *count = 0;
    int64_t fid;
    int rc = lr__ix_folder_rowid(ix, folder, &fid, err);
    if (rc < 0)
        return rc;
    /* instr() on two BLOBs compares bytes, so the stored key's 0x00
     * separators do not stop it (LIKE would treat the BLOB as C text). */
    static const char marker[] = ".sync-conflict-";
    /* Copies are files or symlinks: a directory so named is not one. */
    sqlite3_stmt *s = prepare(ix,
                              "SELECT path FROM files WHERE folder = ?1 AND deleted = 0 AND "
                              "type != ?3 AND instr(path, ?2) > 0",
                              err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, fid);
    lr__ix_bind_blob(s, 2, marker, sizeof(marker) - 1);
    sqlite3_bind_int(s, 3, LR_FT_DIR);
    uint64_t n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const uint8_t *key = sqlite3_column_blob(s, 0);
        size_t klen = (size_t)sqlite3_column_bytes(s, 0);
        uint8_t *p = lr__ix_from_key(key, klen);
        if (is_copy(p, klen))
            n++;
        free(p);
    }
    if (rc != SQLITE_DONE) {
        rc = lr__ix_dberr(ix, err, "conflict copies");
        sqlite3_finalize(s);
        return rc;
    }
    sqlite3_finalize(s);
    *count = n;
    return 0;
}
