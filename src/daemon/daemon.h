/*
 * daemon.h - the landropic daemon: wiring of the loop, the control API, the
 * transport and the folders.
 *
 * lr_daemon_run() owns the whole process while it runs:
 *  - one daemon per home: an flock()ed HOME/daemon.lock holding the PID; a
 *    second daemon fails with LR_EBUSY naming the PID that holds it;
 *  - with `detach`, it forks before any thread exists, and the parent
 *    returns 0 only once the child accepts connections and commands (or
 *    returns the child's start-up error); the child logs to
 *    HOME/landropic.log unless `log_path` says otherwise;
 *  - SIGTERM/SIGINT and the API's "stop" end it gracefully: in-flight work
 *    is finished or persisted, peers get CONNECTION_CLOSE, the socket file
 *    is removed; it then returns 0. SIGPIPE is ignored.
 * All mutable state lives in one struct owned by this call; the loop thread
 * is the only one touching it, and slow work (scanning, hashing, disk) runs
 * on worker threads and reports back through the loop.
 */
#ifndef LR_DAEMON_DAEMON_H
#define LR_DAEMON_DAEMON_H

#include "scanner/scanner.h"
#include "util/err.h"
#include "util/log.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>

struct lr_daemon_opts {
    const char *home;          /* absolute, initialised */
    const char *const *listen; /* "HOST:PORT"; none = default [::]:21037 */
    size_t nlisten;
    bool detach;
    const char *log_path; /* NULL: stderr, or HOME/landropic.log when detached */
    enum lr_log_level log_level;
    unsigned idle_timeout_s; /* 0 = transport default (60 s) */
    bool no_discovery;       /* no LAN announcements (daemon/disc.h) */
    unsigned discovery_port; /* 0 = LR_DISCOVERY_PORT (tests use their own) */
};

/* The contract's `scan --json` entry for one folder (new reference). */
json_t *lr_scan_result_json(const char *id, const struct lr_scan_result *r);

/* Runs until stopped; returns 0 after a graceful stop, or a negative code. */
int lr_daemon_run(const struct lr_daemon_opts *opts, struct lr_err *err);

#endif
