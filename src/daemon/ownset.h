/*
 * ownset.h - the paths this daemon wrote into a folder lately, so the live
 * watcher can tell its own writes from the user's.
 *
 * While pulls write into a folder, the watcher reports mostly the daemon's
 * own commits (recorded with their inode and ctime, so a scan finds
 * nothing), and the change scan is held back to spare the folder repeated
 * rescans. A user's save reported among them must not wait for that: held,
 * it reached the peer seconds later, long enough for the peer's own edit
 * to make a needless conflict copy (black-box round 25). So each path a
 * commit or a pull round writes is noted here with its ancestor directories
 * (a commit may create them); a reported path not found here is a user's.
 *
 * A file the daemon wrote and the user then edited in place is the same
 * path: each entry's inode and ctime after the write are kept too (or
 * LR_OWNSET_ABSENT after a deletion), so the watcher can tell; a write not
 * finished yet has none (ino 0).
 *
 * Paths are kept as 64-bit hashes (lr_weak64): a collision only makes a
 * user's change wait as before, never lose it. Entries older than the
 * `keep_ms` given to lr_ownset_note are dropped when the set grows.
 *
 * Ownership: the caller owns the struct (zeroed is empty) and frees its
 * memory with lr_ownset_free. Not thread-safe: the daemon's loop thread.
 */
#ifndef LR_DAEMON_OWNSET_H
#define LR_DAEMON_OWNSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct lr_ownset_entry {
    uint64_t key; /* 0: empty slot */
    uint64_t at;  /* when it was last noted (ms) */
    uint64_t ino; /* the file written, if known (else 0) */
    int64_t ctime_ns;
    /* A directory's entries were all found ours while it still had this
     * identity (its ctime changes with any entry added or removed). */
    bool entries_ours;
};

struct lr_ownset {
    struct lr_ownset_entry *v;
    size_t cap, n; /* cap: 0 or a power of two */
};

/* Note path[0..len) and each of its ancestor directories as written at
 * `now_ms`; the path itself with ino and ctime_ns (0: not known). Entries
 * noted before now_ms - keep_ms may be dropped. */
void lr_ownset_note(struct lr_ownset *s, const uint8_t *path, size_t len, uint64_t ino,
                    int64_t ctime_ns, uint64_t now_ms, uint64_t keep_ms);

/* Set one entry (no ancestors) with an identity: ino and ctime_ns of what
 * is there now, or LR_OWNSET_ABSENT (nothing is there: a deletion). */
#define LR_OWNSET_ABSENT UINT64_MAX
void lr_ownset_set(struct lr_ownset *s, const uint8_t *path, size_t len, uint64_t ino,
                   int64_t ctime_ns, uint64_t now_ms, uint64_t keep_ms);

/* The entry of `path` (NUL-terminated, relative to the folder root) if it
 * was noted at or after since_ms, else NULL. Valid until the next note;
 * the caller may set its entries_ours. */
struct lr_ownset_entry *lr_ownset_get(struct lr_ownset *s, const char *path, uint64_t since_ms);

void lr_ownset_free(struct lr_ownset *s);

#endif
