/*
 * failpoint.h - named crash points for test builds (LR_FAILPOINTS): a test
 * starts the daemon with LR_FAILPOINT=NAME:N in its environment and the
 * process abort()s at the Nth time (N >= 1) execution reaches
 * LR_FAILPOINT(NAME), so a crash lands at a chosen step of a transfer, not
 * wherever the timing of a SIGKILL happens to put it.
 *
 *   LR_FAILPOINT=commit_before_rename:1
 *   LR_FAILPOINT=rx_after_write:300,commit_before_index:2   (first to fire wins)
 *
 * Before aborting, one ERROR log line "failpoint NAME reached (hit N),
 * aborting" is written (the log flushes each line), so a test can tell a
 * death by the failpoint from any other; core dumps are switched off first
 * (RLIMIT_CORE 0) so planned crashes leave no core files behind.
 *
 * Points used by the sync driver (src/daemon/syncpull.c):
 *   commit_before_barrier  a commit batch's staging files staged, before the barrier
 *   commit_before_rename   after the barrier, before any rename into place
 *   commit_before_index    after the renames, before the index transaction commits
 *   commit_after_index     a commit batch recorded in the index, before the loop
 *                          hears of it (its sessions not yet ended)
 *   rx_after_write         a received chunk verified and written to staging
 *   pull_before_index      a pull page's moved files (a peer's renames) placed,
 *                          before the page's index transaction
 *
 * In builds without LR_FAILPOINTS the macros compile to nothing and the
 * environment variable is ignored.
 *
 * lr_failpoint_init(spec, err): parses a spec (NULL or "" disarms every
 * point); returns 0, or LR_EUSAGE naming the bad part (nothing armed then).
 * Names are copied. lr_failpoint_init_env(err) does the same with
 * getenv("LR_FAILPOINT").
 *
 * Threads: init before any thread that may hit a point starts; hits may come
 * from any thread at once (the hit counters are atomic).
 */
#ifndef LR_DAEMON_FAILPOINT_H
#define LR_DAEMON_FAILPOINT_H

#include "util/err.h"

/* Points armed at once (more in a spec: LR_EUSAGE). */
#define LR_FAILPOINT_MAX 8
/* Longest point name. */
#define LR_FAILPOINT_NAME_MAX 47

#ifdef LR_FAILPOINTS
int lr_failpoint_init(const char *spec, struct lr_err *err);
int lr_failpoint_init_env(struct lr_err *err);
/* Counts a hit of `name`; aborts the process when it is the armed one. */
void lr_failpoint_hit(const char *name);
#define LR_FAILPOINT(name) lr_failpoint_hit(name)
#define LR_FAILPOINT_INIT_ENV(err) lr_failpoint_init_env(err)
#else
#define LR_FAILPOINT(name) ((void)0)
#define LR_FAILPOINT_INIT_ENV(err) ((void)(err), 0)
#endif

#endif
