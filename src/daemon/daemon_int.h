/*
 * daemon_int.h - state shared by the daemon's own files (daemon.c: lifecycle
 * and wiring; methods.c: control API methods; scanjobs.c: folder scans on
 * worker threads). Everything here is touched only on the loop thread,
 * except a scan job between its start and its completion callback, which
 * belongs to the worker running it.
 */
#ifndef LR_DAEMON_DAEMON_INT_H
#define LR_DAEMON_DAEMON_INT_H

#include "api/api.h"
#include "daemon/sync.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "identity/identity.h"
#include "index/index.h"
#include "scanner/scanner.h"
#include "transport/transport.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

enum folder_state { FOLDER_IDLE, FOLDER_SCANNING, FOLDER_SYNCING, FOLDER_ERROR };

/* Runtime state of a configured peer (the config holds what is persistent). */
struct peer_rt {
    struct lr_device_id id;
    struct lr_conn *conn;          /* up connection, or NULL */
    uint64_t sent_done, recv_done; /* payload bytes of connections already closed */
    char name[LR_PROTO_NAME_MAX + 1];
};

/* Runtime state of a configured folder. */
struct folder_rt {
    char *id;
    enum folder_state state;
    char *error;             /* why it is in FOLDER_ERROR, or NULL */
    int64_t error_since;     /* Unix time it went into error (kept while it stays) */
    int64_t error_last;      /* ... and of its latest failure */
    uint32_t error_attempts; /* failures since it went into error */
    bool scan_queued;        /* a scan of it waits in the job queue */
    bool scanned;            /* at least one scan finished since start */
    bool bound;              /* its index is this configuration entry's (scanjobs_bind) */
    struct lr_scan_result last;
};

struct debug_peer;
struct sync_state;
struct disc_state;
struct pairing_state;
struct syncstate;

struct lr_daemon {
    uv_loop_t loop;
    const struct lr_daemon_opts *opts;
    struct lr_config *cfg;
    struct lr_identity *ident;
    uint64_t short_id;
    struct lr_index *ix; /* used only by the job currently running (sync.h) */
    struct lr_transport *tr;
    struct lr_api_server *api;
    uv_signal_t sig_term, sig_int;
    int lock_fd;
    int ready_fd; /* write end of the --detach readiness pipe, or -1 */
    FILE *log;
    bool stopping;
    /* Set by daemon_stop: a running scan stops at its next read (scanner.h). */
    atomic_bool scan_cancel;
    int pending_closes;

    struct peer_rt *peers;
    size_t npeers;
    /* Byte counters of peers removed while running, so a peer added again
     * keeps counting "since the daemon started" (cli-contract: peers).
     * At most DAEMON_GONE_MAX, oldest dropped first. */
    struct peer_gone {
        struct lr_device_id id;
        uint64_t sent, recv;
    } * gone;
    size_t ngone;
    struct folder_rt *folders;
    size_t nfolders;

    struct debug_peer *debug; /* test-only data streams (debug.c) */

    struct daemon_job *jobs_head, *jobs_tail; /* waiting (syncjobs.c) */
    struct daemon_job *job_running;
    uv_work_t job_work;
    struct daemon_side {
        struct daemon_job *head, *tail;
        unsigned running, max;
    } side[DAEMON_SIDE_COUNT];
    struct sync_state *sync;             /* sync.c */
    struct scan_progress *scan_progress; /* scanjobs.c */
    struct disc_state *disc;             /* disc.c */
    struct retention *retention;         /* retention.c */
    struct syncstate *syncstate;         /* syncstate.c: held sync.state requests */
    /* pairing.c */
    struct pairing_state *pairing;
    uint64_t started_ms; /* uv_now at start */
};

/* ---- daemon.c ---- */
/* Emit an event to `events` streams and the log. `ev` is stolen; "type" must be set. */
void daemon_event(struct lr_daemon *d, json_t *ev);
void daemon_stop(struct lr_daemon *d, const char *why);
struct peer_rt *daemon_peer(struct lr_daemon *d, const struct lr_device_id *id);
/* Put the folder in FOLDER_ERROR with `msg` (copied); error_last and
 * error_attempts count the failure, error_since is kept if it already was
 * failing (a rescan meanwhile does not end that: only a successful scan). */
void daemon_folder_fail(struct folder_rt *f, const char *msg);
/* Payload bytes exchanged with p since the daemon started (closed
 * connections and the one up); p may be NULL (0, 0). */
void daemon_peer_bytes(const struct peer_rt *p, uint64_t *sent, uint64_t *recv);
struct folder_rt *daemon_folder(struct lr_daemon *d, const char *id);
/* Bring runtime state in line with the config after a change (dial, forget, folders). */
void daemon_config_changed(struct lr_daemon *d);
/* Dial a configured peer now (at its configured addresses), whatever its
 * redial backoff says; nothing if it has none or a connection is up or
 * being made. */
void daemon_dial_now(struct lr_daemon *d, const struct lr_device_id *id);
const char *daemon_folder_state_name(enum folder_state s);

/* ---- methods.c ---- */
void daemon_api_handler(void *ud, struct lr_api_req *req, const char *method, json_t *params);

/* ---- scanjobs.c ---- */
/*
 * Queue a scan of the named folders (all if n == 0). If `req` is given it is
 * answered with the contract's scan document when the scan finishes.
 * Returns 0, or LR_ENOTFOUND naming an unknown folder (nothing queued; req
 * untouched).
 */
int scanjobs_queue(struct lr_daemon *d, const char *const *ids, size_t n, struct lr_api_req *req,
                   struct lr_err *err);
/*
 * Queue the job that ties folder `id`'s index to its configuration entry
 * (lr_index_folder_bind: the index of a folder removed and added again is
 * emptied, never reused). Until it has run the folder is not synced
 * (sync_folder_usable); queued before the folder's first scan, it runs
 * first (the serial queue is in order). A failure puts the folder in error.
 */
void scanjobs_bind(struct lr_daemon *d, const char *id);
/*
 * The folder's index got (rekey: needs) a new ID while announced (index
 * mark, store.h; a peer's check, §6.4): it stops being announced, so every
 * link of it is reset, and is bound (given a new index ID first if rekey
 * and the mark check did not) and announced again under the new ID, which
 * peers take in full.
 */
void scanjobs_rebind(struct lr_daemon *d, const char *id, bool rekey);
/* The last scan job, waiting or running, of any of the named folders (all
 * if n == 0), or NULL if none has a scan queued or running: for
 * daemon_job_queue_after. Loop thread. */
struct daemon_job *scanjobs_last(struct lr_daemon *d, const char *const *ids, size_t n);
/* Drop waiting jobs (answering their requests) at shutdown. */
void scanjobs_cancel(struct lr_daemon *d);

/* ---- syncstate.c ---- */
/*
 * Answer sync.state for the named folders (all if n == 0; every one must
 * exist, the caller checked): at once if they are done or wait_ms is 0,
 * else when they are done or wait_ms (at most 60 s) has passed, whichever
 * comes first. req belongs to this module from now on; ids are copied.
 */
void syncstate_request(struct lr_daemon *d, struct lr_api_req *req, const char *const *ids,
                       size_t n, uint64_t wait_ms);
/* Something changed (daemon_event calls it): held requests are checked again soon. */
void syncstate_poke(struct lr_daemon *d);
struct lr_proto_seqs;
/* A peer's SEQS (docs/protocol.md §6.13) came on its connection `gen`:
 * the held requests that asked it learn what to wait for (m borrowed). */
void syncstate_on_seqs(struct lr_daemon *d, const struct lr_device_id *peer, uint64_t gen,
                       const struct lr_proto_seqs *m);
/* At shutdown: answer every held request ("stopping") and close the timer. */
void syncstate_stop(struct lr_daemon *d);

/* ---- debug.c (test builds only: LR_FAILPOINTS) ---- */
#ifdef LR_FAILPOINTS
void debug_send(struct lr_daemon *d, struct lr_api_req *req, json_t *params);
void debug_state(struct lr_daemon *d, struct lr_api_req *req, json_t *params);
void debug_on_message(struct lr_daemon *d, struct lr_conn *c, const uint8_t *payload, size_t len);
void debug_on_writable(struct lr_daemon *d, struct lr_conn *c);
void debug_free(struct lr_daemon *d);
#endif

#endif
