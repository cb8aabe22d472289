/*
 * index_int.h - shared by the files of src/index/ only: the connection
 * struct and the helpers index.c (local records) and remote.c (remote
 * indexes, need) both use. Not a contract for other modules.
 */
#ifndef LR_INDEX_INDEX_INT_H
#define LR_INDEX_INDEX_INT_H

#include "index/index.h"

#include <sqlite3.h>

#define LR__IX_FOLDER_CACHE 8
/* Statements of index.c (its enum stmt_id). */
#define LR__IX_LOCAL_STMTS 32
/* Statements of remote.c (its own enum, prepared lazily into rst[]). */
#define LR__IX_REMOTE_STMTS 40

struct lr__ix_folder_cache {
    char *name;
    int64_t id;
};

struct lr_index {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *st[LR__IX_LOCAL_STMTS]; /* index.c's statements, by its enum */
    sqlite3_stmt *rst[LR__IX_REMOTE_STMTS];
    /* sessions.c's checkpoint write (prepared once: a 20 000-file pull
     * checkpoints tens of thousands of rows). */
    sqlite3_stmt *sess_put;
    bool in_tx;
    bool lazy; /* synchronous=NORMAL is set (lr_index_begin_lazy) and not yet put back */
    struct lr__ix_folder_cache fc[LR__IX_FOLDER_CACHE];
    unsigned fc_next;
    struct lr_buf key;  /* scratch: path key of the current call */
    struct lr_buf key2; /* scratch: second key (list bounds) */
    struct lr_buf vvb;  /* scratch: encoded vector */
    struct lr_buf okey; /* scratch: a peer's unfinished path key (remote.c state reads) */
};

/* Fill err with SQLite's message for `what`; returns LR_EDB. */
int lr__ix_dberr(struct lr_index *ix, struct lr_err *err, const char *what);
/* path -> stored key ('/' -> 0x00) in b (reset first). */
void lr__ix_to_key(struct lr_buf *b, const uint8_t *p, size_t n);
/* stored key -> owned NUL-terminated path. */
uint8_t *lr__ix_from_key(const uint8_t *key, size_t n);
/* Bind a blob (zero length binds as an empty BLOB, not NULL); copied. */
int lr__ix_bind_blob(sqlite3_stmt *s, int col, const void *p, size_t n);
/* Row id of a folder (cached). LR_ENOTFOUND if the folder has no index. */
int lr__ix_folder_rowid(struct lr_index *ix, const char *folder_id, int64_t *id,
                        struct lr_err *err);
/* Validate a record for storage (path, type, chunks contiguous, size). */
int lr__ix_check_rec(const struct lr_file_rec *rec, struct lr_err *err);
/* Run fn inside the open transaction, or inside its own one. */
int lr__ix_in_tx(struct lr_index *ix, struct lr_err *err,
                 int (*fn)(struct lr_index *ix, void *arg, struct lr_err *err), void *arg);

/* remote.c hooks. */
/* Re-evaluate the need of one path after a local put; `local` is the new
 * local vector (the record exists). */
int lr__ix_need_local_changed(struct lr_index *ix, int64_t folder, const uint8_t *key, size_t klen,
                              const struct lr_vv *local, struct lr_err *err);
/* Delete every remote-index and need row of a folder (inside a transaction). */
int lr__ix_remote_folder_remove(struct lr_index *ix, int64_t folder, struct lr_err *err);
void lr__ix_remote_finalize(struct lr_index *ix);
/* Test hook: the connection's PRAGMA synchronous (2 = FULL, 1 = NORMAL), or -1. */
int lr__ix_synchronous(struct lr_index *ix);

/* The twin look-up's SQL (lr_index_file_twin), for the test that checks its query plan. */
const char *lr__ix_twin_sql(void);

#endif
