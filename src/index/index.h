/*
 * index.h - the local index: one SQLite database per device home that owns
 * every query in the project (no SQL string exists outside src/index/).
 *
 * What it stores, per folder (keyed by the folder ID string):
 *  - the folder row: a random 64-bit index ID created with the folder's
 *    index (a peer that sees a new index ID must resend everything), the
 *    device's own short ID used to bump version vectors, and the folder's
 *    highest local sequence number;
 *  - one row per path ever seen (tombstones included): type, size, mtime,
 *    mode, inode + ctime (change detection only, never sent), symlink
 *    target, version vector, local sequence, deleted flag, blocks hash;
 *  - the ordered chunk list of every live regular file (offset, length,
 *    SHA-256), which doubles as the chunk-hash -> local location lookup;
 *  - (schema v2) per peer device: a copy of the peer's index of the folder
 *    (remote records with their block lists), the sync state of that copy
 *    (peer index ID, highest peer sequence stored, generation), and the
 *    derived need: which paths some peer has newer than ours, with counters
 *    (section "remote indexes" below).
 *
 * Paths. A path is the file's name relative to the folder root as raw bytes
 * (any encoding, non-UTF-8 allowed), components separated by '/', no empty,
 * "." or ".." component, no NUL byte, no leading or trailing '/', at most
 * LR_INDEX_PATH_MAX bytes; anything else is LR_EBADPATH. Path order
 * ("ORDER BY path" below) is component-wise byte order: 'a' < 'a/b' < 'a.b',
 * i.e. the order of a depth-first walk that visits each directory's entries
 * sorted by name bytes (lr_index_path_cmp()). The database stores the path
 * with '/' replaced by a 0x00 byte so that SQLite's memcmp order of the BLOB
 * is exactly this order (docs/internals/index.md).
 *
 * Sequences. Every lr_index_file_put() assigns the folder's next local
 * sequence number (monotonic per folder, never reused, stored with the
 * folder). A put is "this path has a new version"; the caller supplies the
 * version vector (for a local change: the old vector bumped with
 * lr_vv_bump() and the folder's short ID).
 *
 * Transactions. Writes outside lr_index_begin()/lr_index_commit() each run
 * in their own transaction (slow: one WAL sync each); batch them. Reads are
 * short statements (bounded by `max` rows) that never stay open across
 * calls, so no read transaction outlives a call and the WAL can checkpoint.
 *
 * Durability: journal_mode=WAL, synchronous=FULL: a committed batch survives
 * a power cut, because a lost commit would hand out sequence numbers twice
 * (peers that saw the first use would never ask again). With batching this
 * costs one WAL fsync per batch of thousands of rows.
 *
 * Ownership. Every record, list and location filled by this module owns its
 * heap members; release it with the matching *_release() (safe on a zeroed
 * struct, and twice). Records passed in (put) are borrowed for the call.
 * Out-params are zeroed on entry and filled only on success.
 *
 * Errors: LR_EDB (SQLite failure; message has SQLite's text), LR_ENOTFOUND,
 * LR_EBADPATH, LR_EBADVAL (corrupt stored value, invalid record),
 * LR_EPROTO (a peer's entries that would skip or regress its index: see
 * lr_index_remote_put), LR_EUNSUPPORTED (database schema newer than this
 * build), -errno for file system failures. After a failed write inside
 * lr_index_begin/commit, roll the batch back.
 *
 * Threads: a struct lr_index is one SQLite connection, used by one thread at
 * a time (no internal locking). Open one per thread if needed.
 */
#ifndef LR_INDEX_INDEX_H
#define LR_INDEX_INDEX_H

#include "hash/hash.h"
#include "identity/identity.h"
#include "util/buf.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest path accepted, in bytes (names up to 255 bytes, deep trees). */
#define LR_INDEX_PATH_MAX 32768
/* Longest path a FOLDERS peer check carries (proto.h, option 8). */
#define LR_INDEX_CHECK_PATH_MAX 200
/* Longest database path SQLite's unix VFS opens (its MAX_PATHNAME is 512
 * bytes with the NUL); lr_index_open refuses longer ones by name. */
#define LR_INDEX_DB_PATH_MAX 511
/* Longest symlink target stored. */
#define LR_INDEX_TARGET_MAX 4096
/* Most entries in a version vector (one per device that ever changed the file). */
#define LR_VV_MAX 1024
/* Encoded size of one (id, counter) pair. */
#define LR_VV_PAIR_LEN 16
/* Most chunks in one file record: 16 TiB at the 256 KiB maximum chunk. */
#define LR_INDEX_CHUNKS_MAX (UINT64_C(1) << 26)

/* ---- version vectors --------------------------------------------------- */

struct lr_vv_entry {
    uint64_t id;      /* device short ID */
    uint64_t counter; /* > 0 */
};

/*
 * Invariant: entries sorted by id, ids unique, counters > 0, n <= LR_VV_MAX.
 * Owns `e`. Encoding (the wire form sync uses): n pairs of (u64 id, u64
 * counter), big-endian, in id order, no header, so the empty vector is zero
 * bytes. The stored form (index, staging journals) may add the author.
 *
 * `author`: the short ID of the device that made this version (its last
 * local change, lr_vv_bump), kept when the version is copied or relayed, 0
 * when unknown. Only an id present in the vector counts (lr_sync_vv_author
 * falls back to the largest counter otherwise). It names a conflict copy's
 * device; it takes no part in ordering or equality.
 */
struct lr_vv {
    struct lr_vv_entry *e;
    size_t n, cap;
    uint64_t author;
};

void lr_vv_release(struct lr_vv *vv);
/* Deep copy into *dst (released first). */
void lr_vv_copy(struct lr_vv *dst, const struct lr_vv *src);
/* Counter for id, 0 if absent. */
uint64_t lr_vv_get(const struct lr_vv *vv, uint64_t id);
/*
 * Set id's counter (inserting in order). 0 or LR_ETOOBIG when a new entry
 * would exceed LR_VV_MAX, LR_EBADVAL for counter 0.
 */
int lr_vv_set(struct lr_vv *vv, uint64_t id, uint64_t counter);
/*
 * A local change by device `id` at Unix time `now_s` (seconds): the counter
 * becomes max(old + 1, now_s), so counters never go backwards even after the
 * database is lost (the clock has moved on), and above every other device's
 * counter in the vector (those up to 2^62; a larger one is a peer's bogus
 * value and is not followed), so the largest counter names the device that
 * made the version (its author). Returns the new counter, or 0
 * with the vector unchanged if it is full (LR_VV_MAX) or the counter would
 * overflow.
 */
uint64_t lr_vv_bump(struct lr_vv *vv, uint64_t id, uint64_t now_s);
/* Append the encoding (pairs only) to b; 0 or LR_ETOOBIG (b's limit). */
int lr_vv_encode(const struct lr_vv *vv, struct lr_buf *b);
/* Append the stored form: the pairs, then the author (u64) when it is an
 * id of the vector. 0 or LR_ETOOBIG. */
int lr_vv_encode_stored(const struct lr_vv *vv, struct lr_buf *b);
/*
 * Decode p[0..n) (hostile input: checked before allocating) into *out,
 * which is zeroed first: n / 16 pairs, and with n % 16 == 8 the stored
 * form's author after them (kept only if it is an id of the vector).
 * LR_EBADVAL for another length, unsorted or duplicate ids, or a zero
 * counter; LR_ETOOBIG above LR_VV_MAX.
 */
int lr_vv_decode(const uint8_t *p, size_t n, struct lr_vv *out);
bool lr_vv_equal(const struct lr_vv *a, const struct lr_vv *b);

/* Order of two vectors (a missing id counts as 0). */
enum lr_vv_order {
    LR_VV_EQUAL = 0,
    LR_VV_LESS = 1,       /* a < b: every counter <=, one < (b supersedes a) */
    LR_VV_GREATER = 2,    /* a > b */
    LR_VV_CONCURRENT = 3, /* each has a counter above the other's: a conflict */
};
/* One merge walk, O(a->n + b->n); both must satisfy the invariant above. */
enum lr_vv_order lr_vv_compare(const struct lr_vv *a, const struct lr_vv *b);

/* ---- records ----------------------------------------------------------- */

enum lr_ftype { LR_FT_FILE = 0, LR_FT_DIR = 1, LR_FT_SYMLINK = 2 };
/* Type of a remote record whose wire type this build does not know (equal
 * to proto's LR_PROTO_FT_UNKNOWN; deliberately not an enum member). */
#define LR_FT_UNKNOWN ((enum lr_ftype)255)

struct lr_chunk {
    uint64_t off;
    uint32_t len;
    struct lr_hash hash;
    /* lr_weak64 of the chunk when this device read its bytes itself (its
     * scanner, or its receive path after verifying the SHA-256); 0: not
     * known. Local only, never sent: it lets the serve side check a chunk
     * it reads again without a second SHA-256 (docs/internals/index.md). */
    uint64_t weak;
};

/*
 * The inode of a directory's record whose directory the daemon removed to
 * put a peer's file in its place, while that file is not committed yet
 * (its transfer in flight, or resumed after a restart): the directory's
 * absence is not the user's deletion (scanner.h). Set with
 * lr_index_file_set_stat; the commit's record, or a scan finding a
 * directory there again, replaces it.
 */
#define LR_IX_INODE_REPLACED UINT64_MAX

struct lr_file_rec {
    uint8_t *path; /* '/'-separated bytes, NUL-terminated for convenience */
    size_t path_len;
    enum lr_ftype type;
    bool deleted;     /* tombstone: keeps path, type, vv, seq */
    uint64_t size;    /* regular files; 0 otherwise */
    int64_t mtime_ns; /* ns since the Unix epoch */
    uint32_t mode;    /* permission bits (07777) */
    uint64_t inode;   /* change detection only (LR_IX_INODE_REPLACED: see below) */
    int64_t ctime_ns; /* change detection only */
    uint8_t *target;  /* symlink target bytes (NUL-terminated), else NULL */
    size_t target_len;
    struct lr_vv vv;
    uint64_t seq;               /* set by put, read back by get/list */
    struct lr_hash blocks_hash; /* SHA-256 over the concatenated chunk hashes */
    struct lr_chunk *chunks;    /* only with LR_IX_CHUNKS on read */
    size_t nchunks;
};

/* Free owned members and zero the record. */
void lr_file_rec_release(struct lr_file_rec *r);
/* blocks hash of a chunk list: SHA-256(hash_0 || hash_1 || ...). */
void lr_index_blocks_hash(const struct lr_chunk *c, size_t n, struct lr_hash *out);

struct lr_file_list {
    struct lr_file_rec *v;
    size_t n;
};
void lr_file_list_release(struct lr_file_list *l);

/* Read flags. */
#define LR_IX_CHUNKS 0x1u /* also load each record's chunk list */

/*
 * Validate a path (rules above). 0 or LR_EBADPATH with a message.
 */
int lr_index_path_check(const uint8_t *p, size_t n, struct lr_err *err);
/* Path order: <0, 0, >0, comparing bytes with '/' sorting below every other byte. */
int lr_index_path_cmp(const uint8_t *a, size_t an, const uint8_t *b, size_t bn);

/* ---- lifecycle ----------------------------------------------------------- */

struct lr_index;

/*
 * Open (creating if needed) the database at `path` (copied), switch it to
 * WAL, and migrate its schema to the current version. *out is set on
 * success; close it with lr_index_close() (NULL is a no-op).
 */
int lr_index_open(const char *path, struct lr_index **out, struct lr_err *err);
void lr_index_close(struct lr_index *ix);
/* Bound this handle's page cache (default 16 MiB): a second handle that only
 * reads a record at a time needs little, and each handle's cache is its own. */
int lr_index_set_cache_kib(struct lr_index *ix, unsigned kib, struct lr_err *err);
/* Schema version this build writes (PRAGMA user_version). */
int lr_index_schema_version(void);

/*
 * Transactions (not nestable): begin, then commit or rollback. Commit
 * returns LR_EDB if SQLite refuses (the transaction is then rolled back).
 * lr_index_in_tx() tells whether one is open.
 */
int lr_index_begin(struct lr_index *ix, struct lr_err *err);
int lr_index_commit(struct lr_index *ix, struct lr_err *err);
/*
 * Begin a batch whose commit does not wait for the disk (synchronous=NORMAL
 * for this batch only; commit or rollback puts FULL back). A power cut may
 * lose it and any later lazy batch, never an earlier or later durable one
 * (a durable commit syncs the whole WAL), and never leaves a torn state.
 * Only for batches that a restart can recreate and that nothing durable
 * depends on: a peer's index entries together with the sequence recorded
 * for them (our next FOLDERS asks for them again); transfer-session
 * checkpoints (reports: a resume re-verifies its staging file). Never for
 * our own records, whose sequences are announced to peers.
 */
int lr_index_begin_lazy(struct lr_index *ix, struct lr_err *err);
void lr_index_rollback(struct lr_index *ix);
bool lr_index_in_tx(const struct lr_index *ix);

/* ---- folders ------------------------------------------------------------- */

struct lr_folder_info {
    uint64_t index_id; /* random, created with the folder */
    uint64_t short_id; /* this device's short ID in the folder's vectors */
    uint64_t max_seq;  /* highest local sequence handed out (0: none) */
    /* Highest counter of this device (short_id) in the folder's records, or
     * raised by lr_index_folder_check_mark: a local change is stamped above
     * it (lr_index_folder_now), so it never looks older than one before. */
    uint64_t clock;
};

/*
 * Create the folder `folder_id` (a non-empty string of at most 256 bytes)
 * with a fresh random index ID, or, if it exists, update its short ID.
 * Fills *info (may be NULL).
 */
int lr_index_folder_ensure(struct lr_index *ix, const char *folder_id, uint64_t short_id,
                           struct lr_folder_info *info, struct lr_err *err);
/*
 * Tie the folder's index to the configuration's folder token (config.h:
 * made anew by every `folder add`), creating the index if need be (as
 * lr_index_folder_ensure). An index that carries another token belonged to
 * a folder since removed: it is emptied (its records, the peers' records,
 * transfer sessions) and gets a new random index ID, in place (the row id
 * stays), and *reset is set. An index without a token takes this one;
 * token 0 (a configuration from before tokens) changes nothing. A clock
 * still 0 over records (a database from before it) is set from them. Its
 * own transaction unless one is open.
 */
int lr_index_folder_bind(struct lr_index *ix, const char *folder_id, uint64_t short_id,
                         uint64_t token, bool *reset, struct lr_err *err);
/*
 * Rollback check. (mark_id, mark_seq) is the folder's mark (store.h,
 * lr_store_mark_read): the index ID and the highest sequence this device
 * had handed out when its index was last announced. If the index still
 * has that ID but a lower max_seq, the database is older than what peers
 * may hold (put back from a backup, or its last commits lost), and the
 * sequences it hands out next would name other changes than the ones the
 * peers hold under those numbers; they would skip them. The index then
 * gets a new random ID, its records and sequences kept, so peers take it
 * in full again; *rekeyed tells whether it did. Its clock is raised to
 * mark_clock (the mark's highest counter of ours): the changes lost with
 * the database may hold counters above any it has, and a new change must
 * not look older than them. mark_id 0 (no mark), an absent folder or
 * another index ID change nothing. One statement.
 */
int lr_index_folder_check_mark(struct lr_index *ix, const char *folder_id, uint64_t mark_id,
                               uint64_t mark_seq, uint64_t mark_clock, bool *rekeyed,
                               struct lr_err *err);
/* The `now_s` a local change of the folder is stamped with (lr_vv_bump):
 * the wall clock, or above the folder's clock if that is ahead. */
static inline uint64_t lr_index_folder_now(const struct lr_folder_info *info, uint64_t now_s)
{
    return info->clock >= now_s ? info->clock + 1 : now_s;
}
/* lr_index_folder_now of the folder's index and the wall clock (the wall
 * clock alone if the folder has no index). */
uint64_t lr_index_folder_stamp(struct lr_index *ix, const char *folder_id);
/*
 * A new random index ID for the folder, records and sequences kept, and
 * the clock raised to `clock` (0: unchanged): a peer holds entries of ours
 * this index no longer has under their sequences (FOLDERS option 8), so
 * the database went back in time (home and folder restored together,
 * where the index mark went back too). LR_ENOTFOUND if the folder has no
 * index. One statement.
 */
int lr_index_folder_rekey(struct lr_index *ix, const char *folder_id, uint64_t clock,
                          struct lr_err *err);
/* LR_ENOTFOUND if the folder has no index. */
int lr_index_folder_get(struct lr_index *ix, const char *folder_id, struct lr_folder_info *info,
                        struct lr_err *err);
/* Delete a folder and all its records. LR_ENOTFOUND if absent. */
int lr_index_folder_remove(struct lr_index *ix, const char *folder_id, struct lr_err *err);

/* Totals over live (non-deleted) records of a folder. */
struct lr_folder_stats {
    uint64_t files, dirs, symlinks, bytes, deleted;
};
int lr_index_folder_stats(struct lr_index *ix, const char *folder_id, struct lr_folder_stats *out,
                          struct lr_err *err);

/* ---- files ----------------------------------------------------------------- */

/*
 * Record a new version of rec->path: insert or replace its row, replace its
 * chunk list with rec->chunks (must be empty unless a live regular file;
 * offsets must be contiguous from 0 and sum to rec->size, else LR_EBADVAL),
 * and assign the folder's next sequence number, returned in *seq (may be
 * NULL). rec->seq is ignored. rec is borrowed.
 */
int lr_index_file_put(struct lr_index *ix, const char *folder_id, const struct lr_file_rec *rec,
                      uint64_t *seq, struct lr_err *err);
/*
 * Replace only the version vector of an existing record, with no new
 * sequence: reconciliation without history (docs/protocol.md §6.11) merges
 * a peer's vector into a record whose content both devices hold, and both
 * devices do the same, so announcing it would only echo. Re-evaluates the
 * path's need. vv must be non-empty and valid (borrowed). LR_ENOTFOUND if
 * there is no record. Own transaction unless one is open.
 */
int lr_index_file_set_vv(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                         size_t path_len, const struct lr_vv *vv, struct lr_err *err);
/*
 * Update only the change-detection fields (inode, ctime_ns) of an existing
 * record: the file was re-read and found identical. No new sequence.
 */
int lr_index_file_set_stat(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                           size_t path_len, uint64_t inode, int64_t ctime_ns, struct lr_err *err);
/* One record by path (flags: LR_IX_CHUNKS). LR_ENOTFOUND if absent. */
int lr_index_file_get(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                      size_t path_len, unsigned flags, struct lr_file_rec *out, struct lr_err *err);
/*
 * Another live regular file of the folder holding exactly what the live
 * regular file at path holds, by the records: same size, mtime and blocks
 * hash (so the same chunks), found through an index of live files by
 * blocks hash and mtime (schema v10), so N files deleted cost N look-ups. A
 * file renamed (or moved) by a peer is one: the receiver made the new name
 * from the old one's chunks, and mtime equality tells that copy from
 * files that merely have the same content. Fills *out (without chunks;
 * release it) or returns LR_ENOTFOUND (also for an empty or absent file).
 */
int lr_index_file_twin(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                       size_t path_len, struct lr_file_rec *out, struct lr_err *err);

/*
 * Up to `max` records (tombstones included) in path order whose path sorts
 * after `after` (after_len 0: from the start). Continue with the last
 * returned path; out->n < max means the end was reached.
 */
int lr_index_list_by_path(struct lr_index *ix, const char *folder_id, const uint8_t *after,
                          size_t after_len, size_t max, unsigned flags, struct lr_file_list *out,
                          struct lr_err *err);
/*
 * Up to `max` records with seq >= from_seq in sequence order (what a peer
 * asking "everything since N" needs). Continue from last seq + 1.
 */
int lr_index_list_by_seq(struct lr_index *ix, const char *folder_id, uint64_t from_seq, size_t max,
                         unsigned flags, struct lr_file_list *out, struct lr_err *err);

/* ---- chunk lookup ------------------------------------------------------------- */

struct lr_chunk_loc {
    char *folder_id; /* owned */
    uint8_t *path;   /* owned, '/'-separated, NUL-terminated */
    size_t path_len;
    uint64_t off;
    uint32_t len;
};
void lr_chunk_loc_release(struct lr_chunk_loc *l);

/*
 * A live local file holding a chunk with this hash, in `folder_id` or in any
 * folder if folder_id is NULL. LR_ENOTFOUND if none. The caller must verify
 * the bytes it reads (the file may have changed since it was indexed).
 */
int lr_index_chunk_find(struct lr_index *ix, const char *folder_id, const struct lr_hash *h,
                        struct lr_chunk_loc *out, struct lr_err *err);

/* ---- remote indexes (schema v2-v3, docs/internals/index.md) ----------------
 *
 * For each (folder, peer device) the index keeps a copy of the peer's
 * announced records ("remote records") and the sync state of that copy.
 * Peers are named by their full 32-byte device ID.
 *
 * Receiving a peer's index (protocol.md 6.4): on an INDEX batch with FIRST
 * call lr_index_remote_full_begin(), then lr_index_remote_put() for every
 * entry, and lr_index_remote_burst_end() on LAST, all inside the batch's
 * transaction (lr_index_begin/commit: one per INDEX message). The highest
 * peer sequence stored is advanced by each put in that same transaction, so
 * a crash can never record a sequence whose entry is not committed
 * (hostile case 22). A full index starts a new generation of the copy;
 * remote records not re-sent by the time a burst ends with LAST are then
 * forgotten (dropped, never read as deletions), in bounded batches. A full
 * index interrupted by a reconnect may resume incrementally (same index ID,
 * from max_seq + 1): the LAST of that burst completes the replacement; or
 * the caller may ask for a new full index (a new FIRST starts a newer
 * generation). Device IDs and records passed in are borrowed for the call.
 *
 * Need: a path is needed when some peer's remote record has a version
 * vector that is not <= the local record's (no local record: the empty
 * vector), ignoring records of unknown type and unfinished segmented
 * records. The `need` table is maintained at write time by every remote put,
 * drop and local put (lr_index_file_put), with per-folder counters kept by
 * triggers, so listing and counting never compare vectors over the whole
 * folder.
 */

/* Remote record flags. */
#define LR_RREC_UNKNOWN_TYPE 0x1u /* wire type unknown here: kept, never fetched or deleted for */
#define LR_RREC_PARTIAL 0x2u      /* read only: segmented chunk list not complete yet */

struct lr_remote_rec {
    /* rec.seq is the peer's sequence; rec.inode/ctime_ns are unused (0).
     * Put: rec.chunks are blocks [blk_first, blk_first + rec.nchunks) of
     * the whole list, with absolute offsets; rec.blocks_hash is ignored
     * (computed here over the whole list). rec.type is LR_FT_UNKNOWN on read
     * (ignored on put) with LR_RREC_UNKNOWN_TYPE. */
    struct lr_file_rec rec;
    uint32_t flags;             /* LR_RREC_* */
    uint64_t wire_type;         /* the type number as sent (== rec.type when known) */
    uint64_t blk_total;         /* put: blocks in the whole list (0 and blk_first 0: rec.nchunks) */
    uint64_t blk_first;         /* put: index of rec.chunks[0] in the whole list */
    struct lr_device_id device; /* read: the peer whose record this is */
};
void lr_remote_rec_release(struct lr_remote_rec *r);

struct lr_remote_list {
    struct lr_remote_rec *v;
    size_t n;
};
void lr_remote_list_release(struct lr_remote_list *l);

struct lr_device_list {
    struct lr_device_id *v; /* owned */
    size_t n;
};
void lr_device_list_release(struct lr_device_list *l);

/* Sync state of one (folder, peer); all zero for a peer never heard from. */
struct lr_remote_state {
    uint64_t index_id;      /* peer's index ID whose entries we hold; 0: none */
    uint64_t max_seq;       /* every peer entry with seq <= this is stored */
    bool full_pending;      /* a full index is being received (FIRST seen, LAST not yet) */
    uint64_t gen;           /* generation of the copy (bumped by each full begin) */
    uint64_t sent_index_id; /* our index ID the peer said it holds (lr_index_remote_set_sent) */
    uint64_t sent_seq;      /* our highest sequence the peer said it holds */
    uint64_t open_seq;      /* seq of a segmented record not complete yet (0: none);
                             * max_seq stays below it until it completes or is replaced */
    uint64_t check_seq;     /* the latest entry stored (lr_index_remote_set_check); 0: none */
    uint8_t check[16];      /* its content digest (lr_summary_entry_digest) */
    /* its path if at most LR_INDEX_CHECK_PATH_MAX bytes (NUL-terminated), else "" */
    uint8_t check_path[LR_INDEX_CHECK_PATH_MAX + 1];
    size_t check_path_len;
};

/*
 * After storing entries of the peer's index `index_id`: the one with the
 * highest sequence, `seq`, has digest `check` (16 bytes, borrowed; computed
 * by the caller) and path `path` (kept only if at most
 * LR_INDEX_CHECK_PATH_MAX bytes). Our FOLDERS shows it to the peer, which compares it with
 * its own entry of that sequence to find out that its index went back in
 * time. Nothing if the stored index is another or there is no state; a
 * full begin clears it. In the caller's transaction if one is open.
 */
int lr_index_remote_set_check(struct lr_index *ix, const char *folder_id,
                              const struct lr_device_id *dev, uint64_t index_id, uint64_t seq,
                              const uint8_t check[16], const uint8_t *path, size_t path_len,
                              struct lr_err *err);
/* State of (folder, device): zeros (and 0 returned) if never heard from.
 * LR_ENOTFOUND only if the folder has no index. */
int lr_index_remote_state(struct lr_index *ix, const char *folder_id,
                          const struct lr_device_id *dev, struct lr_remote_state *out,
                          struct lr_err *err);
/*
 * Record what the peer says it holds of OUR index (its FOLDERS peer_index_id
 * and peer_seq), for status and the next send decision. Own transaction
 * unless one is open.
 */
int lr_index_remote_set_sent(struct lr_index *ix, const char *folder_id,
                             const struct lr_device_id *dev, uint64_t sent_index_id,
                             uint64_t sent_seq, struct lr_err *err);
/*
 * A full index of the peer's index `index_id` (!= 0) starts (INDEX FIRST):
 * creates the (folder, peer) state if needed, sets index_id, resets max_seq
 * to 0, starts a new generation and marks the replacement pending. Nothing
 * is deleted yet: the old copy stays usable until the burst ends.
 */
int lr_index_remote_full_begin(struct lr_index *ix, const char *folder_id,
                               const struct lr_device_id *dev, uint64_t index_id,
                               struct lr_err *err);
/*
 * Store one entry of the peer's index `index_id` (borrowed r): replaces the
 * peer's record of the path (first segment) or appends a continuation
 * segment, advances max_seq to r->rec.seq once the record is complete (but
 * never to or past an unfinished segmented record's seq: a reconnect then
 * resends it), and re-evaluates the path's need. Errors:
 *   LR_EPROTO  no state for the peer (no full_begin yet), index_id not the
 *              stored one (a changed index needs a full resend), seq not
 *              above max_seq, or a segment that does not continue the stored
 *              unfinished record (same seq, blk_total, next block, offset);
 *   LR_EBADVAL / LR_EBADPATH / LR_ETOOBIG  invalid record (as for
 *              lr_index_file_put; unknown types: path, seq, vv only);
 *   LR_EDB.
 * Validation happens before any write. Own transaction unless one is open.
 */
int lr_index_remote_put(struct lr_index *ix, const char *folder_id, const struct lr_device_id *dev,
                        uint64_t index_id, const struct lr_remote_rec *r, struct lr_err *err);
/*
 * Reconciliation without history (docs/protocol.md §6.11): a SUMMARY showed
 * the peer's record of r->rec.path has the content of ours. Store r (our
 * record's content and whole chunk list, the peer's vector, rec.seq the
 * summary's sequence) as the peer's, in the generation a full_begin of
 * index_id started and not yet ended (else LR_EPROTO), without the
 * sequence checks of put and without moving max_seq; re-evaluates need.
 * LR_EBADVAL for a segment or an unknown type. Own transaction unless one
 * is open.
 */
int lr_index_remote_adopt(struct lr_index *ix, const char *folder_id,
                          const struct lr_device_id *dev, uint64_t index_id,
                          const struct lr_remote_rec *r, struct lr_err *err);
/*
 * The copy of the peer's index `index_id` holds every entry up to seq (a
 * reconciled replacement: the summary covered them): raise max_seq to seq
 * unless it is already there or an unfinished segmented record holds it.
 * LR_EPROTO if index_id is not the stored one.
 */
int lr_index_remote_seq_raise(struct lr_index *ix, const char *folder_id,
                              const struct lr_device_id *dev, uint64_t index_id, uint64_t seq,
                              struct lr_err *err);
/*
 * The peer's burst ended (INDEX LAST). If a full index is pending, drop the
 * remote records of older generations (paths the new index did not contain),
 * re-evaluating their need, and clear the pending mark. *dropped (may be
 * NULL) gets the number dropped. LR_EPROTO if index_id is not the stored one.
 */
int lr_index_remote_burst_end(struct lr_index *ix, const char *folder_id,
                              const struct lr_device_id *dev, uint64_t index_id, uint64_t *dropped,
                              struct lr_err *err);
/* Drop everything held of the peer in the folder (unshared, peer removed). */
int lr_index_remote_forget(struct lr_index *ix, const char *folder_id,
                           const struct lr_device_id *dev, struct lr_err *err);
/* The peer's record of a path (flags: LR_IX_CHUNKS). LR_ENOTFOUND if none. */
int lr_index_remote_get(struct lr_index *ix, const char *folder_id, const struct lr_device_id *dev,
                        const uint8_t *path, size_t path_len, unsigned flags,
                        struct lr_remote_rec *out, struct lr_err *err);
/* Up to `max` of the peer's records in path order after `after` (as
 * lr_index_list_by_path). */
int lr_index_remote_list(struct lr_index *ix, const char *folder_id, const struct lr_device_id *dev,
                         const uint8_t *after, size_t after_len, size_t max, unsigned flags,
                         struct lr_remote_list *out, struct lr_err *err);
/*
 * Page through the chunk list of the peer's record of `path` without
 * loading it whole (a 16 TiB file has 2^26 blocks): up to `max` blocks from
 * index `first` into out[0..max) (caller-owned), offsets starting at
 * `first_off` (the end of the previous page; 0 for first 0). *n gets the
 * count; *n < max means the end of the stored list. If `blocks` is not NULL
 * the record must still be that version (LR_ENOTFOUND otherwise, as when
 * the peer has no record of the path): the list cannot change under a
 * caller that pages a version it chose from the need list.
 */
int lr_index_remote_chunks(struct lr_index *ix, const char *folder_id,
                           const struct lr_device_id *dev, const uint8_t *path, size_t path_len,
                           const struct lr_hash *blocks, uint64_t first, uint64_t first_off,
                           size_t max, struct lr_chunk *out, size_t *n, struct lr_err *err);
/* Every peer with sync state in the folder, sorted by device ID. */
int lr_index_remote_peers(struct lr_index *ix, const char *folder_id, struct lr_device_list *out,
                          struct lr_err *err);
/*
 * Peers whose complete, known-type record of `path` has exactly version
 * `vv` (NULL: any) and, if `blocks` is not NULL, is a live file with that
 * blocks hash: who can serve that version's chunks (swarming). Empty list
 * (not an error) if none. Sorted by device ID.
 */
int lr_index_remote_holders(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                            size_t path_len, const struct lr_vv *vv, const struct lr_hash *blocks,
                            struct lr_device_list *out, struct lr_err *err);

/* ---- need ------------------------------------------------------------------ */

#define LR_NEED_CONFLICT 0x1u       /* peers hold two or more concurrent newest versions */
#define LR_NEED_LOCAL_CONFLICT 0x2u /* a newest remote version is concurrent with ours */
#define LR_NEED_NO_LOCAL 0x4u       /* we have no record of the path */

/* One newest version of a needed path and every peer holding it. */
struct lr_need_cand {
    struct lr_remote_rec r;       /* r.device: the first holder */
    struct lr_device_id *holders; /* owned, sorted; nholders >= 1 */
    size_t nholders;
};

struct lr_need {
    uint8_t *path; /* owned, '/'-separated, NUL-terminated */
    size_t path_len;
    unsigned flags;            /* LR_NEED_* */
    struct lr_need_cand *cand; /* owned; ncand >= 1, > 1 only with LR_NEED_CONFLICT */
    size_t ncand;              /* ordered by (vv encoding, deleted, type, blocks hash) */
};

struct lr_need_list {
    struct lr_need *v;
    size_t n;
};
void lr_need_list_release(struct lr_need_list *l);

/*
 * Up to `max` needed paths of the folder in path order after `after`
 * (after_len 0: from the start), each with its newest remote version(s)
 * (chunk lists with LR_IX_CHUNKS) and holders. Keyset pagination as in
 * lr_index_list_by_path; memory is bounded by `max` (and the peers).
 */
int lr_index_need_list(struct lr_index *ix, const char *folder_id, const uint8_t *after,
                       size_t after_len, size_t max, unsigned flags, struct lr_need_list *out,
                       struct lr_err *err);

struct lr_need_stats {
    uint64_t items;   /* needed paths */
    uint64_t files;   /* ... whose newest version is a live regular file */
    uint64_t deletes; /* ... whose newest version is a tombstone */
    uint64_t bytes;   /* sum of the sizes of those live files */
};
/* O(1): maintained counters. */
int lr_index_need_stats(struct lr_index *ix, const char *folder_id, struct lr_need_stats *out,
                        struct lr_err *err);

/* ---- conflict audit trail (schema v4, conflicts.c) -------------------------
 *
 * Every conflict this device detected, with how it was resolved and where
 * the losing version was kept (the `conflicts` command's document). Rows
 * are keyed by the folder's ID string, not its index row, so the history
 * survives `folder remove` and a re-add. A put carries a caller-chosen
 * dedup key: a conflict that is decided again (every pull round until the
 * peers' vectors merge) is recorded once. Each folder keeps its newest
 * LR_CONFLICTS_KEEP rows (up to LR_CONFLICTS_SLACK more); puts drop the oldest.
 *
 * Text fields are NUL-terminated UTF-8 the caller chose (type, strategy...),
 * at most LR_CONFLICT_TEXT_MAX bytes; paths are raw bytes like records'.
 * Ownership as for records: lists own everything; release them.
 */

/* Longest text field accepted (the device list of a 3+ device conflict). */
#define LR_CONFLICT_TEXT_MAX 4096
/* Rows kept per folder: at least the newest KEEP, at most KEEP + SLACK
 * (pruning runs once the oldest row is KEEP + SLACK ids back). */
#define LR_CONFLICTS_KEEP 10000
#define LR_CONFLICTS_SLACK 64
/* Most rows one lr_index_conflict_list call returns. */
#define LR_CONFLICT_LIST_MAX 1000
/* Longest kept/archive path: an index path plus the archive's prefix and stamp. */
#define LR_CONFLICT_KEPT_PATH_MAX (LR_INDEX_PATH_MAX + 512)

struct lr_conflict_rec {
    int64_t id;     /* read: increases in recording order; ignored by put */
    int64_t time_s; /* Unix seconds the conflict was detected */
    char *folder;   /* folder ID, 1..256 bytes */
    uint8_t *path;  /* the contested path (index rules) */
    size_t path_len;
    char *type;         /* "content", "metadata" or "structural" (contract) */
    char *detail;       /* finer kind: "content", "metadata", "type", "modify-delete" */
    char *strategy;     /* "keep-both", ... */
    char *resolution;   /* what was done: "copy", "archive", "merged", "modify-wins" */
    char *winner;       /* whose version kept the name: "local" or "remote" */
    char *devices;      /* device IDs involved, separated by single spaces */
    char *kept_device;  /* author of the losing version, or NULL (none lost) */
    uint8_t *kept_path; /* conflict copy path (folder-relative), or NULL */
    size_t kept_path_len;
    uint8_t *archive_path; /* where in the folder the archive keeps the loser, or NULL */
    size_t archive_path_len;
};
void lr_conflict_rec_release(struct lr_conflict_rec *c);

struct lr_conflict_list {
    struct lr_conflict_rec *v;
    size_t n;
};
void lr_conflict_list_release(struct lr_conflict_list *l);

/*
 * Record a conflict (c borrowed; its id ignored). `dedup` identifies it (e.g.
 * a hash of the path and both vectors). *added_id (may be NULL) is the new
 * row's id (> 0, as lr_index_conflict_list gives it), or 0 when a row of the
 * same folder with that key was already there (a no-op). LR_EBADPATH
 * for an invalid path, LR_EBADVAL for a missing or over-long field, LR_EDB.
 * Own transaction unless one is open.
 */
int lr_index_conflict_put(struct lr_index *ix, const struct lr_conflict_rec *c,
                          const struct lr_hash *dedup, int64_t *added_id, struct lr_err *err);
/*
 * Up to `max` (at most LR_CONFLICT_LIST_MAX) rows with id > after_id, in id
 * order, of `folder` (NULL: every folder) and, if path is not NULL, of that
 * path only. Continue with the last returned id; out->n < max: the end.
 */
int lr_index_conflict_list(struct lr_index *ix, const char *folder, const uint8_t *path,
                           size_t path_len, int64_t after_id, size_t max,
                           struct lr_conflict_list *out, struct lr_err *err);
/*
 * Number of live files and symlinks (not directories) of the folder whose
 * path contains ".sync-conflict-" and for which is_copy(path, len) is true (the caller's
 * exact rule, e.g. lr_sync_is_conflict_copy): the conflict copies present.
 * Reads every record whose path contains the marker text, nothing else.
 * LR_ENOTFOUND if the folder has no index.
 */
int lr_index_conflict_copies(struct lr_index *ix, const char *folder,
                             bool (*is_copy)(const uint8_t *path, size_t len), uint64_t *count,
                             struct lr_err *err);

/* ---- transfer sessions (schema v5, sessions.c) ----------------------------
 *
 * The last checkpoint of each file pulled (a "session"): its state and an
 * opaque document the daemon writes (the `sessions` command's object, JSON
 * text of at most LR_SESSION_DOC_MAX bytes). Keyed by folder, path and the
 * version's blocks hash, so a newer version of the path is a new session.
 * The index validates sizes only; it does not read the document.
 */
/* The document names the path twice (JSON-escaped, up to 6 bytes a byte,
 * and in base64 when it is not UTF-8): room for the longest path. It was
 * 8192, and a file whose path was over about 8 KB had no session kept. */
#define LR_SESSION_DOC_MAX (8 * LR_INDEX_PATH_MAX + 8192)
/* Most sessions one lr_index_session_list call returns. */
#define LR_SESSION_LIST_MAX 1000

struct lr_session_row {
    char *folder;
    uint8_t *path; /* NUL-terminated */
    size_t path_len;
    struct lr_hash blocks;
    int state; /* the daemon's enumeration */
    int64_t updated_ms;
    char *doc; /* NUL-terminated */
};
void lr_session_row_release(struct lr_session_row *r);

struct lr_session_list {
    struct lr_session_row *v;
    size_t n;
};
void lr_session_list_release(struct lr_session_list *l);

/* Insert or replace (r borrowed). Own transaction unless one is open.
 * LR_EBADVAL for an invalid folder, path or document. */
int lr_index_session_put(struct lr_index *ix, const struct lr_session_row *r, struct lr_err *err);
/* Up to `max` (<= LR_SESSION_LIST_MAX) sessions, most recently updated first. */
int lr_index_session_list(struct lr_index *ix, size_t max, struct lr_session_list *out,
                          struct lr_err *err);
/* Up to `max` sessions of the folder for the version `blocks` under a path
 * other than `path`, most recently updated first: where a file a peer
 * renamed while it was being pulled may have staging data. No index on
 * blocks: a scan of the table, whose complete and failed rows are trimmed
 * (lr_index_session_trim); the daemon asks only for files of 1 MiB or
 * more. */
int lr_index_session_others(struct lr_index *ix, const char *folder, const struct lr_hash *blocks,
                            const uint8_t *path, size_t path_len, size_t max,
                            struct lr_session_list *out, struct lr_err *err);
/* Delete the sessions in state_a or state_b (complete and failed ones) but
 * the `keep` (>= 1) most recently updated (ties broken by folder, path and
 * blocks); *removed (may be NULL) counts them. What
 * a restart lists is bounded anyway: without this the table kept a row per
 * file ever pulled until it aged out. */
int lr_index_session_trim(struct lr_index *ix, int state_a, int state_b, size_t keep,
                          uint64_t *removed, struct lr_err *err);
/* Delete sessions in `state` (or any state if state < 0) last updated before
 * before_ms; *removed (may be NULL) counts them. */
int lr_index_session_prune(struct lr_index *ix, int state, int64_t before_ms, uint64_t *removed,
                           struct lr_err *err);

/* ---- folder modes (modes.c, docs/modes.md) ---------------------------------
 *
 * Forget this device's record of a path: the row and its chunk list go, as
 * if the path had never been scanned, and the path's need is re-evaluated
 * against "no local record", so any peer's version of it is needed again.
 * Used by `folder revert` (receive-only) after the file itself was moved to
 * the versions archive; the caller must do both in the serial job so no
 * scan sees the path in between. No sequence number is handed out: peers
 * are told nothing. *removed (may be NULL) tells whether a record existed.
 * LR_EBADPATH, LR_ENOTFOUND (no folder index), LR_EDB. Own transaction
 * unless one is open.
 */
int lr_index_file_forget(struct lr_index *ix, const char *folder_id, const uint8_t *path,
                         size_t path_len, bool *removed, struct lr_err *err);

#endif
