/*
 * plan.h - pure planning for a pull round: where each chunk of a file to
 * fetch comes from, and in which order a batch of decided actions is applied.
 *
 * Chunk plan. Chunks come first from local files (the index's hash lookup
 * finds unchanged parts of a changed file, duplicates, renamed or moved
 * files: no network), then from a peer. lr_plan_build() walks the target's
 * chunk list once, asks the caller's lookup for each distinct chunk, and
 * returns runs covering the file in offset order:
 *   LOCAL  copy [src_off, src_off + len) of paths[path] (verify each chunk's
 *          hash after reading: the file may have changed since it was
 *          indexed; a chunk that fails is fetched from a peer instead);
 *   REMOTE fetch these chunks from a peer (each verified on arrival);
 *   SELF   a repeat of bytes planned earlier in this same file (fetched
 *          once): copy [src_off, src_off + len) of the target itself, after
 *          the REMOTE runs have landed.
 * Adjacent chunks with the same source merge into one run: REMOTE always,
 * LOCAL when the source path is the same and the source bytes continue,
 * SELF when the source bytes continue.
 *
 * Apply order. lr_plan_order() sorts a round's decisions (decide.h) into
 * phases: directories are created parents first; files, symlinks and
 * metadata next; deletes come last, deepest first, so the chunks of a file
 * renamed in this round (add + delete) are still on disk to copy from and a
 * directory is empty before its parent goes; an entry whose old directory
 * must go first (directory -> file or symlink) is applied after the deletes.
 * A file -> directory change is in the directory phase, so its children can
 * follow (the daemon moves the old file aside as an archived version, which
 * it does for every replaced version anyway).
 *
 * Ownership: struct lr_plan owns its arrays; lr_plan_release() (safe on a
 * zeroed struct, and twice). The lookup's path is borrowed until it returns;
 * the plan copies it. lr_plan_order() borrows items and only permutes them.
 *
 * Errors: LR_EBADVAL (a chunk of length 0, or a size overflowing 64 bits),
 * LR_ETOOBIG (more than LR_INDEX_CHUNKS_MAX chunks), or whatever negative
 * code the lookup returns (the build then stops, and *out stays zeroed).
 *
 * Threads: no shared state; reentrant.
 */
#ifndef LR_SYNC_PLAN_H
#define LR_SYNC_PLAN_H

#include "hash/hash.h"
#include "index/index.h"
#include "sync/decide.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- chunk plan ------------------------------------------------------------- */

/* A local candidate for a chunk (to be verified by whoever reads it). */
struct lr_plan_cand {
    const uint8_t *path; /* folder-relative; borrowed until the lookup returns */
    size_t path_len;
    uint64_t off;
};

enum lr_plan_src { LR_PLAN_REMOTE = 0, LR_PLAN_LOCAL = 1, LR_PLAN_SELF = 2 };

struct lr_plan_op {
    enum lr_plan_src src;
    uint64_t off, len;     /* target byte range */
    size_t chunk, nchunks; /* target chunks [chunk, chunk + nchunks) */
    size_t path;           /* LOCAL: index into lr_plan.paths */
    uint64_t src_off;      /* LOCAL: offset in that file; SELF: offset in the target */
};

struct lr_plan_path {
    uint8_t *p; /* NUL-terminated */
    size_t len;
};

struct lr_plan {
    struct lr_plan_op *ops; /* in target offset order, covering [0, size) */
    size_t nops;
    struct lr_plan_path *paths; /* distinct LOCAL sources */
    size_t npaths;
    uint64_t size;
    uint64_t local_bytes, remote_bytes, self_bytes;
    size_t remote_chunks; /* chunks to fetch (each distinct chunk once) */
};

/*
 * Plan the file whose chunk list is chunks[0..n) (len and hash used; the
 * offsets are implied by the lengths, chunks[i].off is ignored).
 *
 * lookup(user, hash, len, &cand) finds a local copy of a chunk: 1 with cand
 * filled, 0 if none, or a negative error that aborts the build. It is called
 * once per distinct (hash, len), in order of first appearance; NULL means
 * no local sources (everything REMOTE or SELF).
 */
int lr_plan_build(const struct lr_chunk *chunks, size_t n,
                  int (*lookup)(void *user, const struct lr_hash *h, uint32_t len,
                                struct lr_plan_cand *cand),
                  void *user, struct lr_plan *out, struct lr_err *err);
void lr_plan_release(struct lr_plan *p);

/* ---- apply order -------------------------------------------------------------- */

enum lr_sync_phase {
    LR_SYNC_PHASE_DIRS = 0,    /* create directories (file -> dir too), parents first */
    LR_SYNC_PHASE_FILES = 1,   /* files, symlinks, metadata, index-only records */
    LR_SYNC_PHASE_DELETES = 2, /* deletes, deepest first (directories only if empty) */
    LR_SYNC_PHASE_AFTER = 3,   /* dir -> file/symlink: after the old directory emptied */
    LR_SYNC_PHASE_SKIP = 4,    /* NOTHING: no work */
};

/* One decided path of a round. */
struct lr_sync_item {
    const uint8_t *path; /* borrowed */
    size_t path_len;
    const struct lr_sync_decision *d; /* borrowed */
    void *user;
};

enum lr_sync_phase lr_plan_phase(const struct lr_sync_decision *d);

/*
 * Sort items in place into apply order: by phase, then path order
 * (lr_index_path_cmp) ascending, except deletes descending (children before
 * parents); equal keys keep their input order. Returns how many items need
 * work (the LR_SYNC_PHASE_SKIP ones are moved to the end).
 */
size_t lr_plan_order(struct lr_sync_item *items, size_t n);

#endif
