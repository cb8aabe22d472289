/*
 * modes.c - index helpers for folder modes (docs/modes.md): forgetting a
 * local record so the need list wants a peer's version again (`folder
 * revert` of a receive-only folder). Contract in index.h, section
 * "folder modes".
 */
#include "index/index_int.h"

#include <string.h>

struct forget_arg {
    int64_t folder;
    bool *removed;
};

static int forget_tx(struct lr_index *ix, void *argp, struct lr_err *err)
{
    struct forget_arg *a = argp;
    sqlite3_stmt *s = NULL;
    int rc = 0;
    /* Rarely run (an explicit revert): plain statements, not cached ones. */
    if (sqlite3_prepare_v2(ix->db,
                           "DELETE FROM chunks WHERE file = "
                           "(SELECT id FROM files WHERE folder = ?1 AND path = ?2)",
                           -1, &s, NULL) != SQLITE_OK)
        return lr__ix_dberr(ix, err, "forget chunks");
    sqlite3_bind_int64(s, 1, a->folder);
    lr__ix_bind_blob(s, 2, ix->key.data, ix->key.len);
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = lr__ix_dberr(ix, err, "forget chunks");
        goto out;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(ix->db, "DELETE FROM files WHERE folder = ?1 AND path = ?2", -1, &s,
                           NULL) != SQLITE_OK)
        return lr__ix_dberr(ix, err, "forget record");
    sqlite3_bind_int64(s, 1, a->folder);
    lr__ix_bind_blob(s, 2, ix->key.data, ix->key.len);
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = lr__ix_dberr(ix, err, "forget record");
        goto out;
    }
    *a->removed = sqlite3_changes(ix->db) > 0;
    if (!*a->removed)
        goto out;
    /* No local record compares as the empty vector: every peer's version of
     * the path is then newer, so the need list wants it. */
    struct lr_vv none = {0};
    rc = lr__ix_need_local_changed(ix, a->folder, ix->key.data, ix->key.len, &none, err);
out:
    sqlite3_finalize(s);
    return rc;
}

int lr_index_file_forget(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                         size_t path_len, bool *removed, struct lr_err *err)
{
    bool dummy;
    if (!removed)
        removed = &dummy;
    *removed = false;
    int rc = lr_index_path_check(path, path_len, err);
    if (rc)
        return rc;
    struct forget_arg a = {0, removed};
    if ((rc = lr__ix_folder_rowid(ix, folder_id, &a.folder, err)))
        return rc;
    lr__ix_to_key(&ix->key, path, path_len);
    return lr__ix_in_tx(ix, err, forget_tx, &a);
}
