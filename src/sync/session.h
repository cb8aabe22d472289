/*
 * session.h - the state machine of one transfer session (one file being
 * pulled, docs/cli.md `sessions`), its counters, and the policies that say
 * when progress is checkpointed and which finished sessions are forgotten.
 *
 * Sans-I/O: no clock, no database, no event loop. The caller passes the
 * time (ms, any monotonic or wall clock, consistently) and does the
 * writing (src/daemon/sessions.c keeps them on the loop thread and writes
 * them to the index).
 *
 * States and the transitions allowed (anything else is refused with
 * LR_EBADVAL and changes nothing):
 *
 *   pending     -> active (start), interrupted, failed
 *   active      -> complete, failed, interrupted
 *   interrupted -> active (resume), complete (finished from its staging
 *                  file alone), failed (given up: superseded, stale)
 *   failed      -> active (retry), complete (finished from staging)
 *   complete    -> nothing: a finished session is history; pulling the same
 *                  version again is a new session.
 *
 * Counters: chunks/bytes done never exceed their totals (resumed chunks
 * count as done, and so does what a restored checkpoint claims, clamped);
 * a completed session has done == total; chunks_failed accumulates over the
 * session's resumes and retries.
 *
 * Checkpoints: every change marks the session dirty; a checkpoint writes
 * exactly the dirty sessions (lr_session_take_dirty) and is due when
 * `every_events` changes accumulated or `every_ms` passed since the last
 * one with at least one change pending, whichever comes first.
 *
 * Ownership: every struct is the caller's; nothing is allocated. Thread-
 * safety: none (each struct is used by one thread).
 */
#ifndef LR_SYNC_SESSION_H
#define LR_SYNC_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lr_session_state {
    LR_SESSION_PENDING = 0,
    LR_SESSION_ACTIVE = 1,
    LR_SESSION_INTERRUPTED = 2,
    LR_SESSION_FAILED = 3,
    LR_SESSION_COMPLETE = 4,
};
#define LR_SESSION_NSTATES 5

struct lr_session {
    enum lr_session_state state;
    uint64_t chunks_total, chunks_done, chunks_failed;
    uint64_t bytes_total, bytes_done;
    int64_t updated_ms;
    bool dirty;  /* changed since the last checkpoint took it */
    bool in_use; /* a transfer refers to it (active, or between start and end) */
    /* A checkpoint took it once (or it was restored from one): the index
     * holds a row of it, so its later changes must be written too. */
    bool stored;
};

/* What a start or resume knows: the version's size and what is already
 * verified in its staging file or local files. */
struct lr_session_progress {
    uint64_t chunks_total, bytes_total;
    uint64_t chunks_done, bytes_done;
};

/* "pending", "active", ...; NULL for a value outside the enum. */
const char *lr_session_state_name(enum lr_session_state s);
/* Whether from -> to is allowed (the table above). */
bool lr_session_can(enum lr_session_state from, enum lr_session_state to);
/* Invariants (done <= total, state in range, in_use only while active);
 * aborts through assert() when broken. */
void lr_session_assert_state(const struct lr_session *s);

/* A new pending session, dirty. */
void lr_session_init(struct lr_session *s, int64_t now_ms);
/*
 * A session read back from a checkpoint (disk input: counters clamped to
 * their totals, an unknown state read as interrupted). A session that was
 * pending or active when the checkpoint was taken belonged to a previous
 * run that ended mid-transfer: it becomes interrupted and dirty.
 */
void lr_session_restore(struct lr_session *s, int state, const struct lr_session_progress *p,
                        uint64_t chunks_failed, int64_t updated_ms);

/* Start or resume: -> active with p's totals and already-done counts
 * (clamped), in use. LR_EBADVAL from active or complete. */
int lr_session_start(struct lr_session *s, const struct lr_session_progress *p, int64_t now_ms);
/* A chunk of len bytes verified and written (ok), or refused. Only while
 * active (LR_EBADVAL otherwise); done counts stop at their totals. */
int lr_session_chunk(struct lr_session *s, bool ok, uint32_t len, int64_t now_ms);
/* -> to (complete, failed or interrupted; see the table); no longer in use.
 * Complete sets done to the totals. LR_EBADVAL if refused. */
int lr_session_end(struct lr_session *s, enum lr_session_state to, int64_t now_ms);

/* Whether s is finished for history purposes: interrupted, failed or
 * complete (not pending or active); lr_session_prune keeps interrupted
 * ones longer. */
bool lr_session_finished(const struct lr_session *s);
/* Whether a checkpoint must write s; clears the mark (the caller writes it). */
bool lr_session_take_dirty(struct lr_session *s);

/* ---- checkpoint batching ---- */

struct lr_session_ckpt {
    uint64_t every_events; /* a batch is taken after this many changes... */
    int64_t every_ms;      /* ...or this long after the last, whichever first */
    uint64_t events;       /* changes since the last checkpoint */
    int64_t last_ms;
};

void lr_session_ckpt_init(struct lr_session_ckpt *c, uint64_t every_events, int64_t every_ms,
                          int64_t now_ms);
/* n changes happened (chunks, starts, ends). */
void lr_session_ckpt_note(struct lr_session_ckpt *c, uint64_t n);
/* Whether a checkpoint is due now: changes are pending and either enough
 * of them accumulated or every_ms passed since the last checkpoint. */
bool lr_session_ckpt_due(const struct lr_session_ckpt *c, int64_t now_ms);
/* A checkpoint was taken now (its batch holds every change noted so far). */
void lr_session_ckpt_taken(struct lr_session_ckpt *c, int64_t now_ms);

/* ---- history pruning ---- */

/*
 * v: n sessions, newest first. Sets drop[i] for each session to forget:
 * complete or failed ones beyond the newest `keep` of them, interrupted
 * ones beyond the newest keep * LR_SESSION_INTERRUPTED_KEEP (work to
 * resume, kept longer: one left `sessions` between its transfer's drop and
 * its retry once 256 newer files had completed; bounded still, for a peer
 * that never comes back), oldest first, never one in use or one whose
 * change would be lost (dirty and stored: its row says less than it; a
 * dirty session never stored may go unwritten, which is what keeps a
 * 20 000 file pull from writing 20 000 rows of history that only the
 * newest `keep` of are ever shown). Unfinished sessions are neither
 * counted nor dropped. Returns how many were marked.
 */
#define LR_SESSION_INTERRUPTED_KEEP 16
size_t lr_session_prune(const struct lr_session *const *v, size_t n, size_t keep, bool *drop);

#endif
