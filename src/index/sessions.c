/*
 * sessions.c - transfer session checkpoints (index.h, "transfer sessions";
 * table `sessions`, schema v5 in index.c).
 *
 * Written in batches by the daemon (a checkpoint every few hundred ms, not
 * per chunk) and read at start and by the `sessions` command. The row
 * write is prepared once per connection (a pull of 20 000 small files
 * writes about 40 000 rows: preparing each cost about half of every
 * checkpoint); the rare reads and prunes are prepared per call, as in
 * conflicts.c.
 */
#include "index/index_int.h"

#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

#define FOLDER_ID_MAX 256

void lr_session_row_release(struct lr_session_row *r)
{
    if (!r)
        return;
    free(r->folder);
    free(r->path);
    free(r->doc);
    memset(r, 0, sizeof(*r));
}

void lr_session_list_release(struct lr_session_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        lr_session_row_release(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
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

static int put_locked(struct lr_index *ix, void *arg, struct lr_err *err)
{
    const struct lr_session_row *r = arg;
    if (!ix->sess_put &&
        sqlite3_prepare_v3(ix->db,
                           "INSERT OR REPLACE INTO sessions(folder, path, blocks, state, "
                           "updated_ms, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           -1, SQLITE_PREPARE_PERSISTENT, &ix->sess_put, NULL) != SQLITE_OK) {
        sqlite3_finalize(ix->sess_put);
        ix->sess_put = NULL;
        return lr__ix_dberr(ix, err, "prepare session put");
    }
    sqlite3_stmt *s = ix->sess_put;
    sqlite3_bind_text(s, 1, r->folder, -1, SQLITE_STATIC);
    lr__ix_bind_blob(s, 2, r->path, r->path_len);
    lr__ix_bind_blob(s, 3, r->blocks.b, LR_HASH_LEN);
    sqlite3_bind_int(s, 4, r->state);
    sqlite3_bind_int64(s, 5, r->updated_ms);
    sqlite3_bind_text(s, 6, r->doc, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "session put");
    sqlite3_reset(s);
    sqlite3_clear_bindings(s); /* the bound texts are the caller's (SQLITE_STATIC) */
    return rc;
}

int lr_index_session_put(struct lr_index *ix, const struct lr_session_row *r, struct lr_err *err)
{
    if (!r->folder || !*r->folder || strlen(r->folder) > FOLDER_ID_MAX)
        return lr_err_set(err, LR_EBADVAL, "session: folder ID missing or over %d bytes",
                          FOLDER_ID_MAX);
    int rc = lr_index_path_check(r->path, r->path_len, err);
    if (rc < 0)
        return rc;
    if (!r->doc || strlen(r->doc) > LR_SESSION_DOC_MAX)
        return lr_err_set(err, LR_EBADVAL, "session: document missing or over %d bytes",
                          LR_SESSION_DOC_MAX);
    return lr__ix_in_tx(ix, err, put_locked, (void *)r);
}

/* Step s (its parameters bound), collecting up to max rows into out. */
static int read_rows(struct lr_index *ix, sqlite3_stmt *s, size_t max, struct lr_session_list *out,
                     struct lr_err *err)
{
    out->v = lr_xcalloc(max ? max : 1, sizeof(*out->v));
    int rc = 0, step = SQLITE_DONE;
    while (out->n < max && (step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *folder = (const char *)sqlite3_column_text(s, 0);
        const void *path = sqlite3_column_blob(s, 1);
        int plen = sqlite3_column_bytes(s, 1);
        const void *blocks = sqlite3_column_blob(s, 2);
        int blen = sqlite3_column_bytes(s, 2);
        const char *doc = (const char *)sqlite3_column_text(s, 5);
        if (!folder || !doc || plen <= 0 || blen != LR_HASH_LEN)
            continue; /* a damaged row is skipped, not fatal */
        struct lr_session_row *r = &out->v[out->n++];
        r->folder = lr_xstrdup(folder);
        r->path = lr_xmalloc((size_t)plen + 1);
        memcpy(r->path, path, (size_t)plen);
        r->path[plen] = 0;
        r->path_len = (size_t)plen;
        memcpy(r->blocks.b, blocks, LR_HASH_LEN);
        r->state = sqlite3_column_int(s, 3);
        r->updated_ms = sqlite3_column_int64(s, 4);
        r->doc = lr_xstrdup(doc);
    }
    if (out->n < max && step != SQLITE_DONE)
        rc = lr__ix_dberr(ix, err, "session list");
    sqlite3_finalize(s);
    if (rc < 0)
        lr_session_list_release(out);
    return rc;
}

int lr_index_session_list(struct lr_index *ix, size_t max, struct lr_session_list *out,
                          struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (max > LR_SESSION_LIST_MAX)
        max = LR_SESSION_LIST_MAX;
    sqlite3_stmt *s = prepare(ix,
                              "SELECT folder, path, blocks, state, updated_ms, doc FROM sessions "
                              "ORDER BY updated_ms DESC LIMIT ?1",
                              err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, (sqlite3_int64)max);
    return read_rows(ix, s, max, out, err);
}

int lr_index_session_others(struct lr_index *ix, const char *folder, const struct lr_hash *blocks,
                            const uint8_t *path, size_t path_len, size_t max,
                            struct lr_session_list *out, struct lr_err *err)
{
    memset(out, 0, sizeof(*out));
    if (max > LR_SESSION_LIST_MAX)
        max = LR_SESSION_LIST_MAX;
    if (path_len > LR_INDEX_PATH_MAX)
        return lr_err_set(err, LR_EBADVAL, "session look-up: path of %zu bytes", path_len);
    sqlite3_stmt *s = prepare(ix,
                              "SELECT folder, path, blocks, state, updated_ms, doc FROM sessions "
                              "WHERE folder = ?1 AND blocks = ?2 AND path != ?3 "
                              "ORDER BY updated_ms DESC LIMIT ?4",
                              err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_text(s, 1, folder, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, blocks->b, LR_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, path, (int)path_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)max);
    return read_rows(ix, s, max, out, err);
}

struct prune_arg {
    int state;
    int64_t before_ms;
    uint64_t removed;
};

static int prune_locked(struct lr_index *ix, void *arg, struct lr_err *err)
{
    struct prune_arg *a = arg;
    sqlite3_stmt *s = prepare(ix,
                              a->state < 0 ? "DELETE FROM sessions WHERE updated_ms < ?1"
                                           : "DELETE FROM sessions WHERE updated_ms < ?1 "
                                             "AND state = ?2",
                              err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int64(s, 1, a->before_ms);
    if (a->state >= 0)
        sqlite3_bind_int(s, 2, a->state);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "session prune");
    if (rc == 0)
        a->removed = (uint64_t)sqlite3_changes(ix->db);
    sqlite3_finalize(s);
    return rc;
}

struct trim_arg {
    int state_a, state_b;
    size_t keep;
    uint64_t removed;
};

static int trim_locked(struct lr_index *ix, void *arg, struct lr_err *err)
{
    struct trim_arg *a = arg;
    /* The keep-th newest row (sessions_updated, which holds the key too,
     * read backwards; the key breaks ties: a commit batch ends hundreds of
     * sessions in one millisecond) and every older one go. No such row:
     * nothing to trim. */
    sqlite3_stmt *s = prepare(ix,
                              "DELETE FROM sessions WHERE state IN (?1, ?2) AND "
                              "(updated_ms, folder, path, blocks) < "
                              "(SELECT updated_ms, folder, path, blocks FROM sessions "
                              "WHERE state IN (?1, ?2) ORDER BY updated_ms DESC, folder DESC, "
                              "path DESC, blocks DESC LIMIT 1 OFFSET ?3)",
                              err);
    if (!s)
        return LR_EDB;
    sqlite3_bind_int(s, 1, a->state_a);
    sqlite3_bind_int(s, 2, a->state_b);
    sqlite3_bind_int64(s, 3, a->keep ? (sqlite3_int64)a->keep - 1 : 0);
    int rc = sqlite3_step(s) == SQLITE_DONE ? 0 : lr__ix_dberr(ix, err, "session trim");
    if (rc == 0)
        a->removed = (uint64_t)sqlite3_changes(ix->db);
    sqlite3_finalize(s);
    return rc;
}

int lr_index_session_trim(struct lr_index *ix, int state_a, int state_b, size_t keep,
                          uint64_t *removed, struct lr_err *err)
{
    if (keep == 0 || keep > INT64_MAX)
        return lr_err_set(err, LR_EUSAGE, "session trim: keep must be 1 to INT64_MAX");
    struct trim_arg a = {state_a, state_b, keep, 0};
    int rc = lr__ix_in_tx(ix, err, trim_locked, &a);
    if (removed)
        *removed = rc == 0 ? a.removed : 0;
    return rc;
}

int lr_index_session_prune(struct lr_index *ix, int state, int64_t before_ms, uint64_t *removed,
                           struct lr_err *err)
{
    struct prune_arg a = {state, before_ms, 0};
    int rc = lr__ix_in_tx(ix, err, prune_locked, &a);
    if (removed)
        *removed = rc == 0 ? a.removed : 0;
    return rc;
}
