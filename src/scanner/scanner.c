/*
 * scanner.c - folder walk merged against the index, change detection,
 * pipelined chunking and hashing (docs/internals/scanner.md).
 *
 * The scanning thread walks and reads; lr__wq workers hash. The merge: the
 * walk produces paths in index path order (sorted names, depth-first), and a
 * cursor reads the folder's records in the same order in batches of
 * CURSOR_BATCH (keyset pagination: each batch is one short statement). For
 * each walked path, every record sorting before it is gone from disk
 * (tombstone), an equal record is the previous version, and no record means
 * a new path. Writes land at or before the walk position, which the cursor
 * has already passed, so they never disturb it.
 */
#include "scanner/scanner.h"

#include "chunker/chunker.h"
#include "ignore/ignore.h"
#include "scanner/workq.h"
#include "util/fsutil.h"
#include "util/timens.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CURSOR_BATCH 1000
/* A first scan's records are committed (and so announced to peers, who
 * start fetching) at least this often; the first commits of a scan come
 * sooner (the interval starts at COMMIT_FIRST_SECONDS and doubles), so a
 * peer waiting for the folder starts fetching after the first file instead
 * of a quarter of a second into the scan (0.25 s of a 2.6 s sync of a
 * 450 MB tree here). */
#define COMMIT_SECONDS 0.25
#define COMMIT_FIRST_SECONDS 0.015
/* A file at least this big is committed as soon as it is hashed (at most
 * every COMMIT_FIRST_SECONDS): hashing it cost far more than a commit, and
 * otherwise its record waited for the next file's hash and the interval,
 * up to COMMIT_SECONDS, while the peer that wants it had nothing to fetch
 * (the 40 files of 1-16 MiB of the mixed benchmark tree reached the peer
 * 100-350 ms after they were hashed). */
#define COMMIT_NOW_BYTES ((uint64_t)1024 * 1024)
/* Switch to a fresh buffer when less than this is free (and the file needs more). */
#define READ_MIN (1024u * 1024)
#define SEG_CHUNKS_MAX 1024
/* Chunk jobs handed to the pool per lock/wake-up (about 1 MiB of data). */
#define SUBMIT_BATCH 16
/* Commit pending writes before reading a file at least this big. */
#define BIG_FILE ((off_t)64 * 1024 * 1024)
/* Files being hashed at once (bounds memory for many small files). */
#define INFLIGHT_MAX 4096
/* Read-ahead: once a file of a directory needed reading, the disk is asked
 * (posix_fadvise WILLNEED, which does not wait) for this many of its next
 * files that will need it too, up to PREFETCH_BYTES of each. One reader
 * thread reading file after file waits out one disk round trip per file:
 * 20 000 cold files of 16-48 KiB took 2.5 s to read that way here and
 * 0.8 s with 32 files asked ahead (docs/benchmarks.md). */
#define PREFETCH_FILES 32
#define PREFETCH_BYTES ((off_t)2 * 1024 * 1024)

/* Chunk slots in segments that never move (workers write hashes into them);
 * the first is small because most files have one chunk. */
struct cseg {
    struct cseg *next;
    size_t n, cap;
    struct lr_chunk c[];
};

/* One attempt at one regular file. */
struct fjob {
    struct lr__wq_group g; /* first: container_of by cast */
    uint8_t *path;
    size_t path_len;
    struct lr_file_rec old; /* previous record (path NULL if none) */
    struct stat st;         /* fstat of the open file before reading */
    struct cseg *segs, *tail;
    size_t nchunks;
};

struct scan {
    struct lr_index *ix;
    const char *folder;
    const char *root;
    const struct lr_scan_opts *opts;
    struct lr_scan_result *res;
    struct lr_err *err;
    int rootfd;
    dev_t dev;
    uint64_t short_id;
    uint64_t now_s;
    struct lr_ignore *ig;

    /* path of the entry being visited */
    uint8_t *path;
    size_t plen, pcap;

    /* index cursor */
    struct lr_file_list batch;
    size_t bi;
    bool cur_eof;
    uint8_t *after;
    size_t after_len, after_cap;

    /* write batching */
    size_t pending;
    bool pending_tombs;
    /* Tombstones not written yet (owned records): they go into the index
     * at the scan's last commit, after every record the walk put (or when
     * TOMBS_MAX of them are held), so the new names of a renamed file or
     * directory reach peers before the old names' deletions, whatever the
     * walk order and however many commits the scan makes: peers copy the
     * content locally instead of downloading it. (Written at every commit,
     * a 4000-file directory renamed to a later-sorting name had most of
     * its deletions announced before its new names: 21 MB crossed the
     * wire for a 41 MB directory.) */
    struct lr_file_rec *tombs;
    size_t ntombs, ctombs;
    /* Of those, the directories whose subtree the cursor is in (indexes
     * into tombs, outermost first): an ignored record kept under one (see
     * tombstone()) withdraws them. */
    size_t *open_dirs;
    size_t nopen, copen;
    bool walk_done;   /* the last flush: the deferred tombstones go in */
    bool mass_held;   /* mass_delete_hold waited once already */
    uint64_t present; /* entries the walk found (visit) */
    /* Directories the walk found entries gone from, not inside a directory
     * gone too: a deletion under way works in them (deleting_sig). */
    char **watch;
    size_t nwatch;
    /* A uniform sample of the synced entries the walk found (reservoir
     * sampling over nseen of them): an rm anywhere in the tree takes some. */
    char **sample;
    size_t nsample;
    uint64_t nseen;
    uint64_t rng;
    struct timespec tx_start;
    struct timespec last_commit;
    double commit_every; /* seconds; ramps up to COMMIT_SECONDS */

    /* hashing */
    struct lr__wq wq;
    bool wq_started;
    struct lr__wq_buf *buf; /* current read buffer, NULL if none */
    size_t inflight;
    bool hashed; /* the entry just visited was read */
};

/* Report an entry counted in skipped_error to the caller. */
static void skipped(struct scan *s, int rc, const char *what)
{
    if (s->opts && s->opts->on_skip)
        s->opts->on_skip(s->opts->skip_arg, s->path, s->plen, rc, what);
}

static bool canceled(const struct scan *s)
{
    return s->opts && s->opts->cancel &&
           atomic_load_explicit(s->opts->cancel, memory_order_relaxed);
}

static int cancel_error(struct scan *s)
{
    return lr_err_set(s->err, LR_ECANCELED, "scan of folder %s canceled", s->folder);
}

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static char *esc_path(const struct scan *s)
{
    return lr_esc(s->path, s->plen);
}

/* ---- index writes ------------------------------------------------------------ */

static int check_marker(struct scan *s)
{
    struct stat st;
    int rc = fstatat(s->rootfd, LR_SCAN_MARKER, &st, AT_SYMLINK_NOFOLLOW);
    if (rc == 0 && S_ISDIR(st.st_mode))
        return 0;
    if (rc == 0) /* a symlink is not followed: it could lead anywhere */
        return lr_err_set(s->err, LR_ENOMARKER,
                          "folder marker %s/" LR_SCAN_MARKER " is not a directory (it is a %s); "
                          "no deletions recorded",
                          s->root, S_ISLNK(st.st_mode) ? "symlink" : "file or special file");
    if (errno != ENOENT)
        return lr_err_set(s->err, LR_ENOMARKER,
                          "folder marker %s/" LR_SCAN_MARKER " cannot be checked: %s; no "
                          "deletions recorded",
                          s->root, strerror(errno));
    return lr_err_set(s->err, LR_ENOMARKER,
                      "folder marker %s/" LR_SCAN_MARKER " is missing (disk unmounted or folder "
                      "emptied?); no deletions recorded",
                      s->root);
}

/* Deferred tombstones a commit takes regardless (bounds the memory they hold). */
#define TOMBS_MAX 65536

static void tombs_free(struct scan *s)
{
    for (size_t i = 0; i < s->ntombs; i++) {
        free(s->tombs[i].path);
        lr_vv_release(&s->tombs[i].vv);
    }
    s->ntombs = 0;
    s->nopen = 0;
}

/* Write the deferred tombstones into the open (or a new) transaction. */
static int tombs_write(struct scan *s)
{
    int rc = 0;
    if (s->ntombs && !lr_index_in_tx(s->ix)) {
        if ((rc = lr_index_begin(s->ix, s->err)))
            return rc;
        clock_gettime(CLOCK_MONOTONIC, &s->tx_start);
    }
    for (size_t i = 0; i < s->ntombs && rc == 0; i++)
        if (s->tombs[i].path) /* NULL: withdrawn */
            rc = lr_index_file_put(s->ix, s->folder, &s->tombs[i], NULL, s->err);
    if (s->ntombs)
        s->pending_tombs = true;
    tombs_free(s);
    return rc;
}

static int commit(struct scan *s);

/*
 * A scan that finds most of the folder gone, or many entries gone while
 * more were still going, may have walked it while `rm -rf` of the whole
 * folder was under way, before the marker went (black-box round 26: 5052
 * deletions announced, the peer emptied; the marker outlived the rm
 * because the daemon wrote into it meanwhile). Such deletions are
 * believed only if the marker is still there a moment later:
 * checked every MASS_DELETE_STEP_MS for at least MASS_DELETE_WAIT_MS, and
 * then for as long as something is still deleting in the folder
 * (deleting_sig keeps changing: an rm of a large tree reaches the marker
 * last), until that has been quiet for
 * MASS_DELETE_QUIET_MS or MASS_DELETE_MAX_MS have passed. Nothing of the
 * scan is committed meanwhile (its transaction stays open: the serial
 * queue waits too), and a scan holds once. A real mass deletion only
 * waits that long.
 */
#define MASS_DELETE_MIN 100
#define MASS_DELETE_WAIT_MS 2000
#define MASS_DELETE_QUIET_MS 500
#define MASS_DELETE_MAX_MS 30000
#define MASS_DELETE_STEP_MS 100

/* Top-level entries whose times sample a deletion still under way. */
#define MASS_DELETE_SAMPLE 64
/* Directories with deletions in them that deleting_sig samples too. */
#define MASS_DELETE_WATCH 256
/* Entries the walk found whose existence deleting_sig samples. */
#define MASS_DELETE_SAMPLED 256

static uint64_t mix_time(uint64_t h, const struct timespec *t)
{
    h ^= (uint64_t)t->tv_sec * 1000000007u + (uint64_t)t->tv_nsec;
    return h * 0x100000001b3u;
}

/*
 * A signature of what an rm still running in the folder changes: the
 * modification and change times of the root and of its first
 * MASS_DELETE_SAMPLE subdirectories (a removal changes its parent's times;
 * rm works through one top-level subtree after the other). Only this
 * folder: activity elsewhere on the file system does not stretch the hold.
 */
static uint64_t top_sig(const struct scan *s)
{
    struct stat st;
    uint64_t h = 0xcbf29ce484222325u;
    if (fstat(s->rootfd, &st) == 0) {
        h = mix_time(h, &st.st_mtim);
        h = mix_time(h, &st.st_ctim);
    }
    int fd = openat(s->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (!dir) {
        if (fd >= 0)
            close(fd);
        return h;
    }
    struct dirent *de;
    unsigned n = 0;
    while (n < MASS_DELETE_SAMPLE && (de = readdir(dir))) {
        if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, LR_SCAN_MARKER) == 0)
            continue;
        n++;
        if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            h = mix_time(h, &st.st_mtim);
            h = mix_time(h, &st.st_ctim);
        }
    }
    closedir(dir);
    return h;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 0x100000001b3u;
}

/* How many of the sampled entries are gone (the walk saw them all). */
static unsigned sample_gone(const struct scan *s, uint64_t *h)
{
    unsigned n = 0;
    for (size_t i = 0; i < s->nsample; i++) {
        struct stat st;
        bool gone = fstatat(s->rootfd, s->sample[i], &st, AT_SYMLINK_NOFOLLOW) < 0 &&
                    (errno == ENOENT || errno == ENOTDIR);
        n += gone;
        if (h)
            *h = mix(*h, gone);
    }
    return n;
}

/*
 * With `times`: top_sig and the times of the directories the walk found
 * entries gone from (up to MASS_DELETE_WATCH of them), which creations
 * move too. Always: which of those directories and of a sample of the
 * synced entries the walk found are still there, which only removals
 * change. An rm deep in one top-level subtree changes that subtree's top
 * only when it moves on from it, seconds apart in a large tree; the
 * directories it is emptying change with every removal, and wherever it
 * goes next it takes sampled entries with it.
 */
static uint64_t deleting_sig(const struct scan *s, bool times)
{
    uint64_t h = times ? top_sig(s) : 0xcbf29ce484222325u;
    for (size_t i = 0; i < s->nwatch; i++) {
        struct stat st;
        if (fstatat(s->rootfd, s->watch[i], &st, AT_SYMLINK_NOFOLLOW) == 0) {
            if (times) {
                h = mix_time(h, &st.st_mtim);
                h = mix_time(h, &st.st_ctim);
            }
        } else {
            h = mix(h, (uint64_t)errno);
        }
    }
    sample_gone(s, &h);
    return h;
}

/* Reservoir sampling (Vitter's algorithm R) of the entry just found:
 * each of the nseen ends in the sample with the same chance. */
static void sample_present(struct scan *s)
{
    size_t slot;
    s->nseen++;
    if (s->nsample < MASS_DELETE_SAMPLED) {
        if (!s->sample)
            s->sample = lr_xcalloc(MASS_DELETE_SAMPLED, sizeof(*s->sample));
        slot = s->nsample++;
    } else {
        s->rng ^= s->rng << 13; /* xorshift64: spread, not secrecy */
        s->rng ^= s->rng >> 7;
        s->rng ^= s->rng << 17;
        uint64_t r = s->rng % s->nseen;
        if (r >= MASS_DELETE_SAMPLED)
            return;
        slot = (size_t)r;
        free(s->sample[slot]);
    }
    s->sample[slot] = lr_xstrndup((const char *)s->path, s->plen);
}

/* Note the directory holding a deleted entry that is not itself inside a
 * deleted directory (the walk saw it there). The root is in top_sig. */
static void watch_parent(struct scan *s, const uint8_t *path, size_t len)
{
    size_t n = len;
    while (n > 0 && path[n - 1] != '/')
        n--;
    if (n <= 1 || s->nwatch >= MASS_DELETE_WATCH)
        return;
    n--; /* the slash */
    const char *last = s->nwatch ? s->watch[s->nwatch - 1] : NULL;
    if (last && strlen(last) == n && memcmp(last, path, n) == 0)
        return; /* the walk is ordered: siblings come together */
    if (!s->watch)
        s->watch = lr_xmallocarray(MASS_DELETE_WATCH, sizeof(*s->watch));
    s->watch[s->nwatch++] = lr_xstrndup((const char *)path, n);
}

static void step_sleep(void)
{
    struct timespec step = {0, MASS_DELETE_STEP_MS * 1000000L};
    nanosleep(&step, NULL);
}

static int mass_delete_hold(struct scan *s)
{
    uint64_t gone = s->res->deleted;
    if (s->mass_held || gone < MASS_DELETE_MIN)
        return 0;
    /* Less than half gone, only removals count (creations, a build
     * refilling what it cleaned, would hold the serial queue up to 30 s). */
    bool most = gone >= s->present;
    uint64_t was = deleting_sig(s, most);
    const char *why = "";
    if (!most) {
        /* Believed at once, unless something went since the walk saw it or
         * goes in the next step: a scan in the middle of an rm -rf sees
         * only the part already removed (the watcher's scan at its 1 s
         * delay, the rm slowed by a loaded machine: 379 and 488 of 1000
         * files deleted on the peer in CI). */
        if (sample_gone(s, NULL) == 0) {
            step_sleep();
            uint64_t now = deleting_sig(s, false);
            if (now == was)
                return 0;
            was = now;
        }
        why = " while entries were still going";
    }
    s->mass_held = true;
    lr_info("scan",
            "folder=%s %" PRIu64 " entries gone, %" PRIu64
            " left%s: the marker is checked again before the deletions are recorded",
            s->folder, gone, s->present, why);
    unsigned waited = 0, quiet = 0;
    for (;;) {
        if (canceled(s))
            return cancel_error(s);
        int rc = check_marker(s);
        if (rc)
            return rc;
        if ((waited >= MASS_DELETE_WAIT_MS && quiet >= MASS_DELETE_QUIET_MS) ||
            waited >= MASS_DELETE_MAX_MS)
            break;
        if (waited == MASS_DELETE_WAIT_MS)
            lr_info("scan", "folder=%s something is still deleting: deletions held until it stops",
                    s->folder);
        step_sleep();
        waited += MASS_DELETE_STEP_MS;
        uint64_t now = deleting_sig(s, most);
        quiet = now != was ? 0 : quiet + MASS_DELETE_STEP_MS;
        was = now;
    }
    if (waited > MASS_DELETE_WAIT_MS)
        lr_info("scan", "folder=%s deletions held %u ms, the marker still there: recorded",
                s->folder, waited);
    return 0;
}

/* Commit what is pending, with the deferred tombstones at the end of the
 * walk (or once TOMBS_MAX are held). */
static int flush(struct scan *s)
{
    if (s->ntombs && (s->walk_done || s->ntombs >= TOMBS_MAX)) {
        int rc = tombs_write(s);
        if (rc) {
            lr_index_rollback(s->ix);
            return rc;
        }
    }
    return commit(s);
}

static int commit(struct scan *s)
{
    if (!lr_index_in_tx(s->ix))
        return 0;
    if (s->pending_tombs) {
        /* Deletions are only believed while the marker still exists (hostile case 19). */
        int rc = mass_delete_hold(s);
        if (rc == 0)
            rc = check_marker(s);
        if (rc) {
            lr_index_rollback(s->ix);
            return rc;
        }
    }
    s->pending = 0;
    s->pending_tombs = false;
    clock_gettime(CLOCK_MONOTONIC, &s->last_commit);
    int rc = lr_index_commit(s->ix, s->err);
    if (rc == 0 && s->opts && s->opts->on_commit)
        s->opts->on_commit(s->opts->commit_arg);
    return rc;
}

static int put(struct scan *s, const struct lr_file_rec *rec)
{
    int rc;
    if (!lr_index_in_tx(s->ix)) {
        if ((rc = lr_index_begin(s->ix, s->err)))
            return rc;
        clock_gettime(CLOCK_MONOTONIC, &s->tx_start);
    }
    if ((rc = lr_index_file_put(s->ix, s->folder, rec, NULL, s->err)))
        return rc;
    if (rec->deleted)
        s->pending_tombs = true;
    else if (rec->mtime_ns == INT64_MAX || rec->mtime_ns == INT64_MIN) {
        /* Said once per version (files, directories, symlinks): the date
         * stays on disk here, but peers get the range's end (timens.h). */
        char *e = lr_esc(rec->path, rec->path_len);
        lr_warn("scan",
                "modification time outside 1677-09-21..2262-04-11, peers get the nearest end "
                "folder=%s path=%s",
                s->folder, e);
        free(e);
    }
    /* Deletions wait for the full interval: a directory renamed to a name
     * sorting after the old one is walked as tombstones first, and a peer
     * given those before the new names would have deleted the content it
     * could have copied locally (the pull applies additions before the
     * deletions it sees in the same round). */
    double every = s->pending_tombs ? COMMIT_SECONDS : s->commit_every;
    bool big = !s->pending_tombs && !rec->deleted && rec->size >= COMMIT_NOW_BYTES &&
               since(&s->last_commit) > COMMIT_FIRST_SECONDS;
    if (++s->pending >= LR_SCAN_BATCH || big || since(&s->tx_start) > every) {
        /* The ramp counts interval commits: after a run of big files the
         * next small ones are announced as soon as the first ones were. */
        if (!big)
            s->commit_every =
                s->commit_every * 2 < COMMIT_SECONDS ? s->commit_every * 2 : COMMIT_SECONDS;
        return flush(s);
    }
    return 0;
}

static int set_stat(struct scan *s, const struct lr_file_rec *old, uint64_t inode, int64_t ctime_ns)
{
    int rc;
    if (!lr_index_in_tx(s->ix)) {
        if ((rc = lr_index_begin(s->ix, s->err)))
            return rc;
        clock_gettime(CLOCK_MONOTONIC, &s->tx_start);
    }
    rc =
        lr_index_file_set_stat(s->ix, s->folder, old->path, old->path_len, inode, ctime_ns, s->err);
    if (rc == 0 && ++s->pending >= LR_SCAN_BATCH)
        rc = flush(s);
    return rc;
}

static int bump(struct scan *s, struct lr_file_rec *rec)
{
    if (lr_vv_bump(&rec->vv, s->short_id, s->now_s) == 0)
        return lr_err_set(s->err, LR_ETOOBIG, "version vector of %s is full",
                          (const char *)rec->path);
    return 0;
}

static bool is_ignore_file(const uint8_t *path, size_t len)
{
    return len == sizeof(LR_IGNORE_FILE) - 1 && memcmp(path, LR_IGNORE_FILE, len) == 0;
}

/*
 * Drop the record of the root ignore file, which an older version indexed
 * and which is now ignored (by default: ignore.h's built-in rule). Not a
 * tombstone: peers running an older version would apply it and delete
 * their own rules. No sequence is handed out, so peers are told nothing and
 * none is left waiting for a version it will never take (sync --wait).
 */
static int forget(struct scan *s, const struct lr_file_rec *old)
{
    int rc;
    if (!lr_index_in_tx(s->ix)) {
        if ((rc = lr_index_begin(s->ix, s->err)))
            return rc;
        clock_gettime(CLOCK_MONOTONIC, &s->tx_start);
    }
    if ((rc = lr_index_file_forget(s->ix, s->folder, old->path, old->path_len, NULL, s->err)))
        return rc;
    lr_info("scan", "folder=%s: %s is not synced (ignored), its old record is forgotten", s->folder,
            LR_IGNORE_FILE);
    if (++s->pending >= LR_SCAN_BATCH)
        return flush(s);
    return 0;
}

/* The open directory tombstones that path p is not under: the cursor left their subtrees. */
static void open_dirs_leave(struct scan *s, const uint8_t *p, size_t n)
{
    while (s->nopen) {
        const struct lr_file_rec *d = &s->tombs[s->open_dirs[s->nopen - 1]];
        if (n > d->path_len && p[d->path_len] == '/' && memcmp(p, d->path, d->path_len) == 0)
            break;
        s->nopen--;
    }
}

static int tombstone(struct scan *s, struct lr_file_rec *old)
{
    bool ignored =
        lr_ignore_match(s->ig, (const char *)old->path, old->path_len, old->type == LR_FT_DIR);
    if (ignored && is_ignore_file(old->path, old->path_len))
        return forget(s, old);
    /* A directory the daemon removed for a peer's file still in transit
     * (index.h): no deletion of ours. */
    if (old->deleted || (old->type == LR_FT_DIR && old->inode == LR_IX_INODE_REPLACED))
        return 0;
    /* Ignored paths are not ours to delete, even when gone from disk. Nor,
     * then, the directories holding one: a peer could not remove such a
     * directory (it still holds the file we leave it), and tried again for
     * good ("directory not empty"). */
    open_dirs_leave(s, old->path, old->path_len);
    if (ignored) {
        for (size_t i = 0; i < s->nopen; i++) {
            struct lr_file_rec *d = &s->tombs[s->open_dirs[i]];
            free(d->path);
            d->path = NULL;
            s->res->deleted--;
        }
        s->nopen = 0;
        return 0;
    }
    if (s->nopen == 0)
        watch_parent(s, old->path, old->path_len);
    struct lr_file_rec t = {0};
    t.path = old->path;
    t.path_len = old->path_len;
    t.type = old->type;
    t.deleted = true;
    t.vv = old->vv;
    int rc = bump(s, &t);
    old->vv = t.vv; /* bump may have reallocated the entries */
    if (rc)
        return rc;
    /* Deferred (see struct scan): a copy, written at a commit. */
    if (s->ntombs == s->ctombs) {
        s->ctombs = s->ctombs ? 2 * s->ctombs : 64;
        s->tombs = lr_xreallocarray(s->tombs, s->ctombs, sizeof(*s->tombs));
    }
    struct lr_file_rec *d = &s->tombs[s->ntombs];
    memset(d, 0, sizeof(*d));
    d->path = lr_xmemdup(t.path, t.path_len + 1);
    d->path_len = t.path_len;
    d->type = t.type;
    d->deleted = true;
    lr_vv_copy(&d->vv, &t.vv);
    if (t.type == LR_FT_DIR) {
        if (s->nopen == s->copen) {
            s->copen = s->copen ? 2 * s->copen : 16;
            s->open_dirs = lr_xreallocarray(s->open_dirs, s->copen, sizeof(*s->open_dirs));
        }
        s->open_dirs[s->nopen++] = s->ntombs;
    }
    s->ntombs++;
    s->res->deleted++;
    if (s->ntombs >= TOMBS_MAX)
        return flush(s);
    return 0;
}

/* ---- index cursor -------------------------------------------------------------- */

/* Current record, NULL at the end. */
static int cur_head(struct scan *s, struct lr_file_rec **out)
{
    *out = NULL;
    if (s->bi < s->batch.n) {
        *out = &s->batch.v[s->bi];
        return 0;
    }
    if (s->cur_eof)
        return 0;
    lr_file_list_release(&s->batch);
    s->bi = 0;
    int rc = lr_index_list_by_path(s->ix, s->folder, s->after, s->after_len, CURSOR_BATCH, 0,
                                   &s->batch, s->err);
    if (rc)
        return rc;
    if (s->batch.n < CURSOR_BATCH)
        s->cur_eof = true;
    if (s->batch.n) {
        /* Remember the bound now: records are moved out of the batch as they are taken. */
        struct lr_file_rec *last = &s->batch.v[s->batch.n - 1];
        if (last->path_len > s->after_cap) {
            s->after_cap = last->path_len;
            s->after = lr_xrealloc(s->after, s->after_cap);
        }
        memcpy(s->after, last->path, last->path_len);
        s->after_len = last->path_len;
        *out = &s->batch.v[0];
    }
    return 0;
}

/*
 * Advance to `path`: every record before it is gone from disk (tombstone).
 * If the head is `path`, move it into *old (else old->path stays NULL).
 */
static int cur_take(struct scan *s, struct lr_file_rec *old)
{
    memset(old, 0, sizeof(*old));
    for (;;) {
        struct lr_file_rec *h;
        int rc = cur_head(s, &h);
        if (rc || !h)
            return rc;
        int c = lr_index_path_cmp(h->path, h->path_len, s->path, s->plen);
        if (c > 0)
            return 0;
        if (c == 0) {
            *old = *h;
            memset(h, 0, sizeof(*h));
            s->bi++;
            return 0;
        }
        rc = tombstone(s, h);
        s->bi++;
        if (rc)
            return rc;
    }
}

static int cur_skip_under(struct scan *s);

/* Leave the current path and everything under it as the index has it. */
static int cur_keep_subtree(struct scan *s)
{
    struct lr_file_rec old;
    int rc = cur_take(s, &old);
    lr_file_rec_release(&old);
    return rc ? rc : cur_skip_under(s);
}

/* Skip (keep) the records under the current path, which is already taken. */
static int cur_skip_under(struct scan *s)
{
    for (;;) {
        struct lr_file_rec *h;
        int rc = cur_head(s, &h);
        if (rc || !h)
            return rc;
        if (h->path_len <= s->plen || h->path[s->plen] != '/' ||
            memcmp(h->path, s->path, s->plen) != 0)
            return 0;
        s->bi++;
    }
}

/* Tombstone every remaining record (end of walk). */
static int cur_finish(struct scan *s)
{
    for (;;) {
        struct lr_file_rec *h;
        int rc = cur_head(s, &h);
        if (rc || !h)
            return rc;
        rc = tombstone(s, h);
        s->bi++;
        if (rc)
            return rc;
    }
}

/* ---- hashing ----------------------------------------------------------------------- */

static void fjob_free(struct fjob *fj)
{
    struct cseg *sg = fj->segs;
    while (sg) {
        struct cseg *n = sg->next;
        free(sg);
        sg = n;
    }
    lr_file_rec_release(&fj->old);
    free(fj->path);
    free(fj);
}

static struct lr_chunk *fjob_slot(struct fjob *fj)
{
    if (!fj->tail || fj->tail->n == fj->tail->cap) {
        size_t cap = fj->tail ? fj->tail->cap * 2 : 2;
        if (cap > SEG_CHUNKS_MAX)
            cap = SEG_CHUNKS_MAX;
        struct cseg *sg = lr_xmalloc(sizeof(*sg) + cap * sizeof(sg->c[0]));
        sg->next = NULL;
        sg->n = 0;
        sg->cap = cap;
        if (fj->tail)
            fj->tail->next = sg;
        else
            fj->segs = sg;
        fj->tail = sg;
    }
    fj->nchunks++;
    return &fj->tail->c[fj->tail->n++];
}

/* A finished, consistent read: record the new version (or just the new stat). */
static int finish_file(struct scan *s, struct fjob *fj)
{
    struct lr_file_rec rec = {0};
    struct lr_file_rec *old = fj->old.path ? &fj->old : NULL;
    int rc = 0;
    rec.chunks = fj->nchunks ? lr_xmallocarray(fj->nchunks, sizeof(rec.chunks[0])) : NULL;
    size_t i = 0;
    for (struct cseg *sg = fj->segs; sg; sg = sg->next) {
        memcpy(&rec.chunks[i], sg->c, sg->n * sizeof(sg->c[0]));
        i += sg->n;
    }
    rec.nchunks = fj->nchunks;
    lr_index_blocks_hash(rec.chunks, rec.nchunks, &rec.blocks_hash);
    rec.path = fj->path;
    rec.path_len = fj->path_len;
    rec.type = LR_FT_FILE;
    rec.size = (uint64_t)fj->st.st_size;
    rec.mtime_ns = lr_timespec_ns(&fj->st.st_mtim);
    rec.mode = fj->st.st_mode & 07777;
    rec.inode = fj->st.st_ino;
    rec.ctime_ns = lr_timespec_ns(&fj->st.st_ctim);

    if (old && !old->deleted && old->type == LR_FT_FILE && old->size == rec.size &&
        old->mtime_ns == rec.mtime_ns && old->mode == rec.mode &&
        lr_hash_cmp(&old->blocks_hash, &rec.blocks_hash) == 0) {
        /* Same content and metadata, only inode/ctime moved (e.g. copied back, chmod undone). */
        rc = set_stat(s, old, rec.inode, rec.ctime_ns);
        goto out;
    }
    if (old)
        rec.vv = old->vv;
    rc = bump(s, &rec);
    if (old)
        old->vv = rec.vv;
    if (rc)
        goto out;
    if ((rc = put(s, &rec)))
        goto out;
    if (!old || old->deleted)
        s->res->added++;
    else
        s->res->changed++;
out:
    if (!old)
        lr_vv_release(&rec.vv);
    free(rec.chunks);
    return rc;
}

/*
 * Record finished attempts (those without a path were abandoned), waiting
 * until at most `keep` remain in flight (SIZE_MAX: do not wait). After an
 * error the rest are still collected, not recorded.
 */
static int reap(struct scan *s, size_t keep, int rc)
{
    for (;;) {
        bool block = s->inflight > keep;
        struct lr__wq_group *g = lr__wq_reap(&s->wq, block);
        while (g) {
            struct lr__wq_group *next = g->next_done;
            struct fjob *fj = (struct fjob *)g;
            s->inflight--;
            if (rc == 0 && fj->path)
                rc = finish_file(s, fj);
            fjob_free(fj);
            g = next;
        }
        if (!block || s->inflight <= keep)
            return rc;
    }
}

/* Make sure the current buffer has room; carry the unfinished tail [start, fill). */
static void ensure_room(struct scan *s, size_t *start, uint64_t remaining)
{
    struct lr__wq_buf *b = s->buf;
    if (b && (b->cap - b->fill >= READ_MIN || b->cap - b->fill >= remaining))
        return;
    struct lr__wq_buf *nb = lr__wq_buf_get(&s->wq);
    if (b) {
        size_t tail = b->fill - *start;
        memcpy(nb->data, b->data + *start, tail);
        nb->fill = tail;
        lr__wq_buf_put(&s->wq, b);
    }
    *start = 0;
    s->buf = nb;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/*
 * One attempt at reading `name` (in dfd) and queueing its chunks. Returns 0
 * (queued: *queued true), LR_ECHANGED (changed under us, retry), or another
 * code for a per-file failure (logged by the caller).
 */
static int read_attempt(struct scan *s, int dfd, const char *name, const struct stat *lst,
                        int attempt, struct lr_file_rec *old, bool *queued)
{
    *queued = false;
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return errno == ELOOP ? LR_ECHANGED : -errno; /* ELOOP: now a symlink */
    struct stat st, st2;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode) || st.st_ino != lst->st_ino || st.st_dev != lst->st_dev) {
        close(fd);
        return LR_ECHANGED; /* replaced between lstat and open */
    }
    if (st.st_size > (off_t)(1024 * 1024))
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

    struct fjob *fj = lr_xcalloc(1, sizeof(*fj));
    lr__wq_group_init(&fj->g);
    fj->st = st;
    uint64_t remaining = (uint64_t)st.st_size, total = 0;
    size_t start = s->buf ? s->buf->fill : 0;
    struct lr__wq_job jobs[SUBMIT_BATCH];
    int rc = 0;
    for (;;) {
        if (canceled(s)) {
            rc = cancel_error(s);
            break;
        }
        ensure_room(s, &start, remaining);
        struct lr__wq_buf *b = s->buf;
        size_t room = b->cap - b->fill;
        size_t want = remaining < room ? (size_t)remaining : room;
        bool eof = remaining == 0;
        if (want) {
            ssize_t n = read(fd, b->data + b->fill, want);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                rc = -errno;
                break;
            }
            if (n == 0) {
                rc = LR_ECHANGED; /* truncated while reading */
                break;
            }
            b->fill += (size_t)n;
            remaining -= (uint64_t)n;
            total += (uint64_t)n;
            eof = remaining == 0;
        }
        size_t len, nj = 0;
        while ((len = lr_chunker_cut(&lr_chunker_default, b->data + start, b->fill - start, eof))) {
            struct lr_chunk *c = fjob_slot(fj);
            c->off = total - (b->fill - start);
            c->len = (uint32_t)len;
            jobs[nj++] = (struct lr__wq_job){b->data + start, len, &c->hash, &c->weak, &fj->g, b};
            if (nj == SUBMIT_BATCH) {
                lr__wq_submit(&s->wq, jobs, nj);
                nj = 0;
            }
            start += len;
        }
        lr__wq_submit(&s->wq, jobs, nj);
        if (eof)
            break;
    }
    s->res->bytes_hashed += total;
    if (s->buf)
        s->buf->fill = start; /* drop any unconsumed bytes of a failed read */
#ifdef LR_FAILPOINTS
    if (rc == 0 && s->opts && s->opts->fp_after_read)
        s->opts->fp_after_read(s->opts->fp_arg, (const char *)s->path, attempt);
#else
    (void)attempt;
#endif
    if (rc == 0) {
        if (fstat(fd, &st2) < 0)
            rc = -errno;
        else if (!same_file(&st, &st2))
            rc = LR_ECHANGED;
    }
    close(fd);
    s->inflight++;
    if (rc == 0) {
        fj->path = lr_xmemdup(s->path, s->plen + 1);
        fj->path_len = s->plen;
        fj->old = *old;
        memset(old, 0, sizeof(*old));
        *queued = true;
    } else {
        /* Results of this attempt are discarded once its chunks are hashed
         * (finish_file sees no path). */
    }
    lr__wq_group_close(&s->wq, &fj->g);
    return rc;
}

static int hash_file(struct scan *s, int dfd, const char *name, struct stat *lst,
                     struct lr_file_rec *old)
{
    int rc = 0;
    /* Do not hold a write transaction open for the seconds a big file takes
     * (the deferred tombstones wait for it: struct scan). */
    if (lst->st_size >= BIG_FILE && (rc = commit(s)))
        return rc;
    for (int attempt = 0; attempt <= LR_SCAN_RETRIES; attempt++) {
        if (attempt > 0) {
            struct timespec d = {0, 20 * 1000 * 1000 * (long)attempt};
            nanosleep(&d, NULL);
            if (fstatat(dfd, name, lst, AT_SYMLINK_NOFOLLOW) < 0) {
                rc = -errno;
                break;
            }
            if (!S_ISREG(lst->st_mode)) {
                rc = LR_ECHANGED; /* replaced by another type: the next scan sees it */
                break;
            }
        }
        bool queued;
        rc = read_attempt(s, dfd, name, lst, attempt, old, &queued);
        if (rc != LR_ECHANGED)
            break;
    }
    if (rc == LR_ECANCELED) {
        lr_file_rec_release(old);
        return rc;
    }
    s->hashed = true;
    if (rc == 0)
        return reap(s, s->inflight > INFLIGHT_MAX ? INFLIGHT_MAX / 2 : SIZE_MAX, 0);
    char *e = esc_path(s);
    if (rc == -ENOENT) {
        /* Deleted while we looked at it: that is a deletion. */
        free(e);
        rc = old->path ? tombstone(s, old) : 0;
        lr_file_rec_release(old);
        return rc;
    }
    if (rc == LR_ECHANGED) {
        s->res->skipped_changing++;
        lr_warn("scan", "file kept changing while hashed, skipped folder=%s path=%s", s->folder, e);
    } else {
        s->res->skipped_error++;
        skipped(s, rc, "cannot read file");
        lr_warn("scan", "cannot read file, skipped folder=%s path=%s: %s", s->folder, e,
                lr_strerror(rc));
    }
    free(e);
    /* Not recorded: the previous record (if any) stays as it is. */
    lr_file_rec_release(old);
    return 0;
}

/* ---- walk ------------------------------------------------------------------------------ */

static void path_push(struct scan *s, const char *name, size_t *saved)
{
    size_t nl = strlen(name);
    *saved = s->plen;
    size_t need = s->plen + 1 + nl + 1;
    if (need > s->pcap) {
        s->pcap = need * 2;
        s->path = lr_xrealloc(s->path, s->pcap);
    }
    if (s->plen)
        s->path[s->plen++] = '/';
    memcpy(s->path + s->plen, name, nl);
    s->plen += nl;
    s->path[s->plen] = 0;
}

static void path_pop(struct scan *s, size_t saved)
{
    s->plen = saved;
    s->path[s->plen] = 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted entry names of an open directory (consumes dfd's duplicate). */
static int list_dir(int dfd, char ***names_out, size_t *n_out, char **arena_out)
{
    *names_out = NULL;
    *n_out = 0;
    *arena_out = NULL;
    int fd = dup(dfd);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = -errno;
        close(fd);
        return e;
    }
    struct lr_buf arena;
    lr_buf_init(&arena, SIZE_MAX);
    size_t n = 0;
    struct dirent *de;
    int rc = 0;
    for (;;) {
        errno = 0;
        de = readdir(d);
        if (!de) {
            rc = errno ? -errno : 0;
            break;
        }
        const char *nm = de->d_name;
        if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0)))
            continue;
        lr_buf_put(&arena, nm, strlen(nm) + 1);
        n++;
    }
    closedir(d);
    if (rc) {
        lr_buf_release(&arena);
        return rc;
    }
    char **names = lr_xmallocarray(n ? n : 1, sizeof(names[0]));
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        names[i] = (char *)arena.data + off;
        off += strlen(names[i]) + 1;
    }
    qsort(names, n, sizeof(names[0]), cmp_names);
    *names_out = names;
    *n_out = n;
    *arena_out = (char *)lr_buf_detach(&arena, &off);
    return 0;
}

static int walk_dir(struct scan *s, int dfd, bool is_root);

static int visit_dir(struct scan *s, int dfd, const char *name, const struct stat *st,
                     struct lr_file_rec *old)
{
    int rc;
    uint32_t mode = st->st_mode & 07777;
    /* Owner bits of a directory are not compared: the store gives the owner
     * rwx on every directory it applies (it must write into it), so a
     * peer's 0555 is 0755 here, and taking that for a local change sent
     * 0755 back and widened the origin's directory. Nor are set-id and
     * sticky bits the record has and the disk lacks: the store never sets
     * them (store.md), and sending their absence back stripped a shared
     * 2775 or 1777 directory on the device that made it. Adding one here
     * is still a change. */
    uint32_t kept = old->mode & 07000u;
    if (!old->path || old->deleted || old->type != LR_FT_DIR ||
        (old->mode | 0700u) != (mode | 0700u | kept)) {
        struct lr_file_rec rec = {0};
        rec.path = s->path;
        rec.path_len = s->plen;
        rec.type = LR_FT_DIR;
        rec.mtime_ns = lr_timespec_ns(&st->st_mtim);
        rec.mode = mode;
        rec.inode = st->st_ino;
        rec.ctime_ns = lr_timespec_ns(&st->st_ctim);
        rec.vv = old->vv;
        rc = bump(s, &rec);
        old->vv = rec.vv;
        if (rc || (rc = put(s, &rec)))
            return rc;
        if (!old->path || old->deleted)
            s->res->added++;
        else
            s->res->changed++;
    } else if (old->inode != (uint64_t)st->st_ino) {
        /* Made again under the same name and mode (mv away, mkdir): no new
         * version, but the store checks the inode before it removes or
         * changes the directory for a peer, and with the old one recorded
         * that failed for good ("changed since the last scan"). */
        if ((rc = set_stat(s, old, st->st_ino, lr_timespec_ns(&st->st_ctim))))
            return rc;
        old->inode = st->st_ino;
    }
    int cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat cst;
    if (cfd >= 0 && fstat(cfd, &cst) == 0 && cst.st_ino == st->st_ino && cst.st_dev == st->st_dev) {
        rc = walk_dir(s, cfd, false);
        close(cfd);
        return rc;
    }
    int e = cfd < 0 ? -errno : LR_ECHANGED;
    if (cfd >= 0)
        close(cfd);
    skipped(s, e, "cannot open directory");
    char *ep = esc_path(s);
    lr_warn("scan", "cannot open directory, contents kept as indexed folder=%s path=%s: %s",
            s->folder, ep, lr_strerror(e));
    free(ep);
    s->res->skipped_error++;
    return cur_skip_under(s); /* its records stay, without tombstones */
}

static int visit_symlink(struct scan *s, int dfd, const char *name, const struct stat *st,
                         struct lr_file_rec *old)
{
    uint8_t target[LR_INDEX_TARGET_MAX + 1];
    ssize_t n = readlinkat(dfd, name, (char *)target, sizeof(target));
    if (n < 0 || n > LR_INDEX_TARGET_MAX) {
        skipped(s, n < 0 ? -errno : LR_ETOOBIG, "cannot read symlink");
        char *e = esc_path(s);
        lr_warn("scan", "cannot read symlink, skipped folder=%s path=%s: %s", s->folder, e,
                n < 0 ? strerror(errno) : "target too long");
        free(e);
        s->res->skipped_error++;
        return 0;
    }
    struct lr_file_rec rec = {0};
    rec.path = s->path;
    rec.path_len = s->plen;
    rec.type = LR_FT_SYMLINK;
    rec.mtime_ns = lr_timespec_ns(&st->st_mtim);
    rec.mode = st->st_mode & 07777;
    rec.inode = st->st_ino;
    rec.ctime_ns = lr_timespec_ns(&st->st_ctim);
    rec.target = target;
    rec.target_len = (size_t)n;
    target[n] = 0;
    if (old->path && !old->deleted && old->type == LR_FT_SYMLINK && old->target_len == (size_t)n &&
        memcmp(old->target, target, (size_t)n) == 0) {
        if (old->inode != rec.inode || old->ctime_ns != rec.ctime_ns)
            return set_stat(s, old, rec.inode, rec.ctime_ns);
        return 0;
    }
    rec.vv = old->vv;
    int rc = bump(s, &rec);
    old->vv = rec.vv;
    if (rc || (rc = put(s, &rec)))
        return rc;
    if (!old->path || old->deleted)
        s->res->added++;
    else
        s->res->changed++;
    return 0;
}

static int visit(struct scan *s, int dfd, const char *name)
{
    struct stat st;
    int rc;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0; /* vanished since readdir: gone, its record gets a tombstone */
        s->present++; /* there, unreadable: kept */
        skipped(s, -errno, "cannot stat");
        char *e = esc_path(s);
        lr_warn("scan", "cannot stat, kept as indexed folder=%s path=%s: %s", s->folder, e,
                strerror(errno));
        free(e);
        s->res->skipped_error++;
        return cur_keep_subtree(s);
    }
    s->present++;
    bool is_dir = S_ISDIR(st.st_mode);
    if (lr_ignore_match_entry(s->ig, (const char *)s->path, s->plen, is_dir)) {
        s->res->ignored++;
        if (!is_ignore_file(s->path, s->plen))
            return cur_keep_subtree(s);
        struct lr_file_rec old;
        if ((rc = cur_take(s, &old)) == 0 && old.path)
            rc = forget(s, &old);
        lr_file_rec_release(&old);
        return rc ? rc : cur_skip_under(s);
    }
    if (!is_dir && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
        enum lr_log_level lvl = s->opts && s->opts->quiet_specials ? LR_LOG_DEBUG : LR_LOG_INFO;
        if (lr_log_enabled(lvl)) {
            char *e = esc_path(s);
            lr_log_write(lvl, "scan",
                         "not a file, directory or symlink, skipped folder=%s path=%s mode=%o",
                         s->folder, e, (unsigned)(st.st_mode & S_IFMT));
            free(e);
        }
        s->res->skipped_special++;
        return 0; /* like a missing file: an older record of this path gets a tombstone */
    }
    sample_present(s); /* synced entries only: ignored ones come and go */
    if (st.st_dev != s->dev) {
        char *e = esc_path(s);
        lr_warn("scan", "another file system is mounted here, not descended folder=%s path=%s",
                s->folder, e);
        free(e);
        s->res->other_fs++;
        return cur_keep_subtree(s);
    }
    if (s->plen > LR_INDEX_PATH_MAX) {
        s->res->skipped_error++;
        skipped(s, LR_ETOOBIG, "path too long");
        lr_warn("scan", "path longer than %d bytes, skipped folder=%s", LR_INDEX_PATH_MAX,
                s->folder);
        return cur_keep_subtree(s);
    }

    struct lr_file_rec old;
    if ((rc = cur_take(s, &old)))
        return rc;
    if (is_dir) {
        rc = visit_dir(s, dfd, name, &st, &old);
    } else if (S_ISLNK(st.st_mode)) {
        rc = visit_symlink(s, dfd, name, &st, &old);
    } else if (old.path && !old.deleted && old.type == LR_FT_FILE &&
               old.size == (uint64_t)st.st_size && old.mtime_ns == lr_timespec_ns(&st.st_mtim) &&
               old.inode == st.st_ino && old.ctime_ns == lr_timespec_ns(&st.st_ctim)) {
        rc = 0; /* unchanged: not read again */
    } else {
        rc = hash_file(s, dfd, name, &st, &old);
    }
    lr_file_rec_release(&old);
    return rc;
}

/*
 * Whether the regular file at s->path (stat st) will be read by this scan,
 * judged from the index records still ahead of the cursor (sorted by path).
 * A path beyond the records loaded is not known: false, so an unchanged
 * file is never read ahead for nothing.
 */
static bool will_read(const struct scan *s, const struct stat *st)
{
    size_t lo = s->bi, hi = s->batch.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct lr_file_rec *r = &s->batch.v[mid];
        if (lr_index_path_cmp(r->path, r->path_len, s->path, s->plen) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == s->batch.n)
        return s->cur_eof; /* past every record: new */
    const struct lr_file_rec *r = &s->batch.v[lo];
    if (lr_index_path_cmp(r->path, r->path_len, s->path, s->plen) != 0)
        return true; /* not indexed: new */
    return r->deleted || r->type != LR_FT_FILE || r->size != (uint64_t)st->st_size ||
           r->mtime_ns != lr_timespec_ns(&st->st_mtim) || r->inode != st->st_ino ||
           r->ctime_ns != lr_timespec_ns(&st->st_ctim);
}

/* Ask the disk for names[*next .. upto] that this scan will read (see
 * PREFETCH_FILES). Best effort: any failure only skips the hint. */
static void prefetch(struct scan *s, int dfd, char *const *names, size_t n, size_t *next,
                     size_t upto)
{
    for (; *next < n && *next <= upto; (*next)++) {
        const char *nm = names[*next];
        struct stat st;
        if (fstatat(dfd, nm, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            st.st_size == 0 || st.st_dev != s->dev)
            continue;
        size_t saved;
        path_push(s, nm, &saved);
        bool want = s->plen <= LR_INDEX_PATH_MAX &&
                    !lr_ignore_match_entry(s->ig, (const char *)s->path, s->plen, false) &&
                    will_read(s, &st);
        path_pop(s, saved);
        if (!want)
            continue;
        /* O_NONBLOCK: it may have become a FIFO since the stat. */
        int fd = openat(dfd, nm, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat fst;
        if (fstat(fd, &fst) == 0 && S_ISREG(fst.st_mode))
            (void)posix_fadvise(fd, 0, fst.st_size < PREFETCH_BYTES ? fst.st_size : PREFETCH_BYTES,
                                POSIX_FADV_WILLNEED);
        close(fd);
    }
}

static int walk_dir(struct scan *s, int dfd, bool is_root)
{
    char **names, *arena;
    size_t n;
    int rc = list_dir(dfd, &names, &n, &arena);
    if (rc) {
        char *e = esc_path(s);
        lr_warn("scan", "cannot list directory, contents kept as indexed folder=%s path=%s: %s",
                s->folder, e, lr_strerror(rc));
        free(e);
        if (is_root)
            return lr_err_set(s->err, rc, "cannot list folder root %s", s->root);
        s->res->skipped_error++;
        skipped(s, rc, "cannot list directory");
        return cur_skip_under(s);
    }
    size_t ahead = 0; /* names before this were read ahead or judged not to need it */
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (canceled(s)) {
            rc = cancel_error(s);
            break;
        }
        if (is_root && strcmp(names[i], LR_SCAN_MARKER) == 0)
            continue;
        size_t saved;
        path_push(s, names[i], &saved);
        s->hashed = false;
        rc = visit(s, dfd, names[i]);
        path_pop(s, saved);
        if (rc == 0 && s->hashed) {
            if (ahead <= i)
                ahead = i + 1;
            prefetch(s, dfd, names, n, &ahead, i + PREFETCH_FILES);
        }
    }
    free(names);
    free(arena);
    return rc;
}

/* ---- entry point ----------------------------------------------------------------------------- */

static int scan_setup(struct scan *s, struct lr_err *err)
{
    int rc;
    uint64_t want = s->opts ? s->opts->short_id : 0;
    struct lr_folder_info fi;
    if (want) {
        rc = lr_index_folder_ensure(s->ix, s->folder, want, &fi, err);
    } else {
        rc = lr_index_folder_get(s->ix, s->folder, &fi, err);
        if (rc == LR_ENOTFOUND)
            rc = lr_err_set(err, LR_ENOTFOUND,
                            "folder %s has no index yet and no short ID was given "
                            "(lr_index_folder_ensure or lr_scan_opts.short_id)",
                            s->folder);
    }
    if (rc)
        return rc;
    s->short_id = fi.short_id;
    /* Above every counter we stamped before, also those of changes the
     * database lost (index.h, lr_index_folder_check_mark). */
    s->now_s = lr_index_folder_now(&fi, s->now_s);

    s->rootfd = lr_open_dir_nofollow(s->root);
    if (s->rootfd == -ELOOP)
        return lr_err_set(err, -ELOOP,
                          "cannot open folder root %s: a component of the path is now a "
                          "symbolic link (not followed: it may lead to another tree)",
                          s->root);
    if (s->rootfd < 0)
        return lr_err_set(err, s->rootfd, "cannot open folder root %s: %s", s->root,
                          strerror(-s->rootfd));
    struct stat st;
    if (fstat(s->rootfd, &st) < 0)
        return lr_err_set(err, -errno, "cannot stat folder root %s", s->root);
    s->dev = st.st_dev;
    if ((rc = check_marker(s)))
        return rc;
    if ((rc = lr_ignore_load_at(s->rootfd, &s->ig, err)))
        return rc;
    unsigned threads = s->opts && s->opts->threads ? s->opts->threads : 0;
    if (!threads) {
        long np = sysconf(_SC_NPROCESSORS_ONLN);
        threads = np > 2 ? (unsigned)np : 2;
    }
    if ((rc = lr__wq_start(&s->wq, threads, LR_SCAN_BUFS, LR_SCAN_BUF_SIZE)))
        return lr_err_set(err, rc, "cannot start hashing threads");
    s->wq_started = true;
    return 0;
}

int lr_scan_folder(struct lr_index *ix, const char *folder_id, const char *root,
                   const struct lr_scan_opts *opts, struct lr_scan_result *res, struct lr_err *err)
{
    memset(res, 0, sizeof(*res));
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_REALTIME, &now);
    struct scan s = {0};
    s.ix = ix;
    s.folder = folder_id;
    s.root = root;
    s.opts = opts;
    s.res = res;
    s.err = err;
    s.rootfd = -1;
    s.commit_every = COMMIT_FIRST_SECONDS;
    s.now_s = now.tv_sec > 0 ? (uint64_t)now.tv_sec : 0;
    s.rng = 0x9e3779b97f4a7c15u;
    s.pcap = 256;
    s.path = lr_xmalloc(s.pcap);
    s.path[0] = 0;

    int rc = lr_index_in_tx(ix) ? lr_err_set(err, LR_EUSAGE, "scan inside an open transaction")
                                : scan_setup(&s, err);
    if (rc == 0)
        rc = walk_dir(&s, s.rootfd, true);
    if (rc == 0)
        rc = cur_finish(&s);
    /* Every queued attempt must finish before buffers go away, even on failure. */
    if (s.wq_started) {
        rc = reap(&s, 0, rc);
        if (s.buf)
            lr__wq_buf_put(&s.wq, s.buf);
        lr__wq_stop(&s.wq);
    }
    s.walk_done = true;
    if (rc == 0)
        rc = flush(&s);
    else
        lr_index_rollback(ix);
    if (rc == 0) {
        struct lr_folder_stats fs;
        rc = lr_index_folder_stats(ix, folder_id, &fs, err);
        res->files = fs.files;
        res->dirs = fs.dirs;
        res->symlinks = fs.symlinks;
        res->bytes = fs.bytes;
    }
    res->skipped =
        res->skipped_special + res->skipped_changing + res->skipped_error + res->other_fs;
    lr_file_list_release(&s.batch);
    tombs_free(&s); /* none left after a successful flush */
    free(s.tombs);
    free(s.open_dirs);
    for (size_t i = 0; i < s.nwatch; i++)
        free(s.watch[i]);
    free(s.watch);
    for (size_t i = 0; i < s.nsample; i++)
        free(s.sample[i]);
    free(s.sample);
    lr_ignore_free(s.ig);
    free(s.after);
    free(s.path);
    if (s.rootfd >= 0)
        close(s.rootfd);
    res->seconds = since(&t0);
    if (rc == 0)
        lr_info("scan",
                "folder=%s files=%" PRIu64 " bytes=%" PRIu64 " added=%" PRIu64 " changed=%" PRIu64
                " deleted=%" PRIu64 " hashed=%" PRIu64 " skipped=%" PRIu64 " seconds=%.3f",
                folder_id, res->files, res->bytes, res->added, res->changed, res->deleted,
                res->bytes_hashed, res->skipped, res->seconds);
    return rc;
}
