/*
 * syncint.h - state shared by the sync driver's files (sync.c, syncpull.c,
 * syncserve.c). Loop-owned unless marked "job-owned": those fields are
 * touched only by daemon jobs (which run one at a time), never by the loop.
 */
#ifndef LR_DAEMON_SYNCINT_H
#define LR_DAEMON_SYNCINT_H

#include "daemon/daemon_int.h"
#include "proto/proto.h"
#include "store/store.h"
#include "sync/decide.h"
#include "sync/xfer.h"
#include "daemon/ownset.h"
#include "daemon/syncerr.h"

/* Per peer: most WANTs and requested bytes outstanding (protocol.md §6.7). */
#define SYNC_WANTS_MAX 256
#define SYNC_WANT_BYTES_MAX (32u << 20)
/* The per-peer byte window adapts between these (sync/xfer.h): about a
 * second's worth of what the peer delivers, so a file found during a big
 * transfer over a slow or lossy link is not queued behind 32 MiB. At least
 * eight of the largest chunks. */
#define SYNC_WANT_BYTES_MIN (2u << 20)
#define SYNC_WANT_LATENCY_MS 1000
/* Records read per index sender job. */
#define SYNC_SEND_RECORDS 1000
/* Needs read per page of a pull round. */
#define SYNC_PULL_PAGE 1000
/* Transfers in flight (each holds a staging descriptor and its chunk list)
 * above which a pull round stops at a page boundary and resumes later. */
#define SYNC_XFERS_MAX 1536
/* WANTs queued for serving per peer before answering BUSY. */
#define SYNC_SERVE_QUEUE_MAX 256
/* INDEX bytes waiting for the transport above which a burst pauses until
 * they drain (sync_on_writable), so a large folder's index is never queued
 * whole in memory. */
#define SYNC_INDEX_BACKLOG_MAX (1u << 20)
/* INDEX bytes received but not yet stored above which the connection is
 * closed (there is no way to pause a peer's stream): memory stays bounded,
 * and the next FOLDERS resumes from what was stored. */
#define SYNC_INDEX_QUEUED_MAX (128u << 20)
/* SEQ_ASKs a peer may have waiting for their answer (syncseqs.c). */
#define SYNC_SEQS_PENDING_MAX 64u
/* A peer that is not connected this long after start counts as settled. */
#define SYNC_CONNECT_GRACE_MS 5000
/* How long `sync --wait` holds for the dial `sync` makes to a disconnected
 * peer (sync_redial_for_wait): a peer up answers within milliseconds; one
 * that is down would otherwise hold every wait for the whole grace. */
#define SYNC_REDIAL_GRACE_MS 2000

/* A frame waiting for room in the connection's send budget. */
struct sync_frame {
    struct sync_frame *next;
    enum lr_stream_class cls;
    uint64_t type;
    uint8_t *p;
    size_t len;
};

struct sync_serve_req;

struct sync_peer {
    struct sync_peer *next;
    struct lr_device_id id;
    struct lr_conn *conn; /* up connection or NULL */
    uint64_t gen;         /* bumped at every connect and disconnect */
    /* The connection (gen) on which its FOLDERS check (option 8) last gave
     * one of our indexes a new ID: once per connection, so a lying peer
     * cannot make us do it again and again. */
    uint64_t check_gen;
    uint64_t closed_ms; /* uv_now when we closed its connection to reconnect (0: never) */
    uint64_t lost_ms;   /* uv_now when its last connection's path failed (0: it did not) */
    /* uv_now when it was added, or a folder newly shared with it (0: at
     * start): `sync --wait` gives it the connect grace from then too. */
    uint64_t shared_ms;
    size_t nshared_cfg; /* folders the configuration shares with it */
    uint64_t redial_ms; /* uv_now of sync_redial_for_wait's dial (0: none) */
    /* Frames the transport had no room for yet: control ones (FOLDERS,
     * INDEX, SUMMARY) go before bulk ones (WANT, CHUNK, HAVE), which may
     * fill the window for a while; each list keeps its order. q_bytes
     * counts both, c_bytes the control ones. */
    struct sync_frame *c_head, *c_tail;
    struct sync_frame *q_head, *q_tail;
    size_t q_bytes, c_bytes;
    /* Requests to serve. */
    struct sync_serve_req *serve;
    size_t nserve;
    bool serve_busy;
    /* WANTs that arrived (on a bulk stream) before its FOLDERS did (on the
     * control stream) on this connection: answered once FOLDERS says
     * whether the folder is shared (sync_serve_replay). Raw payloads, owned. */
    struct sync_early_want *early;
    size_t nearly;
    uint64_t index_queued; /* bytes of INDEX payloads waiting for their job */
    unsigned seqs_pending; /* SEQ_ASKs of this connection not yet answered */
    /* Its latest FOLDERS (this connection). */
    struct lr_proto_folders theirs;
    bool have_folders;
    /* Our FOLDERS jobs not yet sent on this connection: INDEX waits for them
     * (the peer ignores INDEX for a folder we have not listed, §6.4). */
    unsigned folders_pending;
    uint64_t features; /* HELLO bits in force on this connection (ours & theirs) */
    /* The folders last listed to it as unshared (option 7), as a hash of
     * their IDs: its FOLDERS changing that set sends ours again. */
    uint64_t unshared_sig;
    /* The folders we share with it that its FOLDERS lists as removed there
     * (option 9), as a hash (0: none): a change forgets its index of them. */
    uint64_t removed_sig;
    /* Index exchange counters since the daemon started (peers --json). */
    uint64_t index_sent, index_recv;         /* INDEX payload bytes */
    uint64_t deltas_sent, deltas_recv;       /* entries with a delta chunk list */
    uint64_t delta_misses;                   /* received deltas whose base we lacked */
    uint64_t summaries_sent, summaries_recv; /* SUMMARY messages (§6.11) */
};

/* (peer, folder): exists once both configured it; never freed before sync_free. */
struct sync_link {
    struct sync_link *next;
    struct lr_device_id peer;
    char *folder;
    bool listed;             /* the peer's latest FOLDERS lists it and we share it */
    uint64_t their_index_id; /* their index of the folder */
    uint64_t their_max_seq;
    uint64_t their_view_id; /* what they hold of ours */
    uint64_t their_view_seq;
    uint64_t their_check_seq; /* ... and their check of it (FOLDERS option 8; 0: none) */
    uint8_t their_check[LR_PROTO_CHECK_LEN];
    uint8_t their_check_path[LR_INDEX_CHECK_PATH_MAX + 1];
    size_t their_check_path_len;
    bool their_scanning; /* their FOLDERS option 5: their index is still being built */
    uint64_t epoch;      /* bumped at each FOLDERS and connection change */
    /* Bumped when their burst to us restarts: the folder unlisted or listed
     * again, their index replaced, the connection changed (INDEX and
     * SUMMARY jobs match it). */
    uint64_t recv_epoch;
    /* Sender. */
    bool send_decided;   /* full/incremental decided for this epoch */
    bool send_first;     /* the next batch carries FIRST */
    uint64_t send_next;  /* next sequence to send */
    uint64_t send_index; /* our index ID the decided burst carries (0: none yet) */
    bool send_busy;      /* a sender job is queued or running */
    bool send_blocked;   /* burst continues once the send queue drains */
    bool send_dirty;     /* local change since the current burst started */
    bool send_caught_up; /* the last burst ended (LAST sent) with nothing new */
    /* What the last "index_exchanged sent" event said (p->gen: on which
     * connection): each burst that ended with nothing new repeated it, up
     * to three identical lines per reconnect (black-box round 27). */
    uint64_t told_sent_gen, told_sent_index, told_sent_next;
    /* The same for "received": on which connection, and whether a batch
     * stored anything since (an empty burst of theirs is not news). */
    uint64_t told_recv_gen;
    bool recv_news;
    bool send_waiting; /* a burst waits for our FOLDERS to go first */
    /* FOLDERS option 5 (docs/protocol.md §6.5): our last FOLDERS to the
     * peer said "scanning"; untell: the first scan ended, and a FOLDERS
     * without it goes once a burst has carried what it found. */
    bool told_scanning, untell_scanning;
    /* Chunk-list deltas (docs/protocol.md §6.6). */
    uint64_t their_list_upto; /* their FOLDERS option 4: lists for our seq <= this */
    uint64_t list_upto;       /* ours to send: a delta of theirs we could not decode */
    uint64_t list_upto_index; /* ... in their index with this ID */
    /* Reconciliation without history (§6.11), sender side: a SUMMARY went
     * and its SUMMARY_WANT has not come; then the buckets to send. */
    bool recon_wait;
    uint64_t recon_index, recon_seq; /* the SUMMARY's index ID and sequence */
    uint32_t recon_nb;
    uint8_t *recon_bits; /* owned; NULL: no filter */
    /* Receiver. */
    bool recv_last; /* a LAST arrived on this connection */
    bool recv_mid;  /* a burst's batches are arriving and its LAST has not */
    /* PULLED (docs/protocol.md §6.12), theirs: they hold our index
     * their_pulled_index up to their_pulled_seq and need their_need items
     * (0: in sync, their ignored paths not counted). */
    bool their_pulled;
    uint64_t their_pulled_index, their_pulled_seq, their_need;
    /* ... and ours to them, as last sent on this connection. */
    bool told_pulled;
    uint64_t told_pulled_index, told_pulled_seq;
    bool told_in_sync;
};

struct sync_xfer;
struct sync_pullq;
struct sync_commitq;
struct pull_job;

struct sync_folder {
    struct sync_folder *next;
    char *id;
    bool pull_queued, pull_running, pull_again;
    const struct pull_job *round; /* the running round (loop thread; NULL: none) */
    unsigned rescans;             /* rescans asked by pulls without progress since */
    struct lr_need_stats need;
    bool need_known;
    bool stuck;    /* last round: needs left but none actionable */
    bool in_error; /* its last scan failed (not announced to peers) */
    size_t nxfers;
    /* A round cut short by SYNC_XFERS_MAX resumes after this path (NULL:
     * from the start); pull_cut asks for a pull once transfers drain. */
    uint8_t *pull_after;
    size_t pull_after_len;
    bool pull_cut;
    bool gc_done; /* staging cleaned since start, last at gc_at (uv_now ms) */
    uint64_t gc_at;
    /* Our own writes into it (sync_folder_applying): commit batches in
     * flight, and when the last commit or pull round ended (uv_now ms). */
    unsigned commits;
    uint64_t applied_at;
    /* The last round held deletes whose twin (a copy made from local data,
     * syncpull.c renamed_to) was not yet committed: a commit of such a
     * copy asks for another round. */
    bool twin_held;
    /* A staging write or create found the disk full, or a round refused a
     * file for want of free space: the next round first removes staging
     * data of transfers not running (syncpull.c, make_room). */
    bool low_space;
    /* Staging keys and sidecar names of resumed files the last round refused
     * for want of room: its sweep keeps them (they are not stale). */
    struct lr_hash *refused_keys;
    size_t nrefused_keys;
    /* A commit batch changed the folder without asking for a round (other
     * transfers were still in flight); cleared when a round starts. The
     * last batch then asks for one even if it only failed. */
    bool commit_untriggered;
    /* Paths (lr_weak64 of each, sorted) whose move (a peer's rename) failed
     * to commit: later rounds copy them instead. A move put back touches
     * the folder, its scan asks for a round, which moved it again (about 7
     * failures a second); a copy's failure waits for the retry backoff.
     * Forgotten once a round finds nothing needed. */
    uint64_t *no_move;
    size_t nno_move;
    /* Copies made from local data (and moves put back) that failed since
     * the last round that started from the need list's beginning, as twin
     * keys (syncpull.c pending_twin), at most SYNC_FAILED_TWINS_MAX. A round
     * resumed after a cut does not see the adds before its start: such a
     * failed one (a copy into a directory read-only here, waiting for the
     * backoff) is neither in flight nor that round's, and its old name's
     * deletion must still wait for it. */
    struct sync_twin *failed_twins;
    size_t nfailed_twins;
    /* Paths our commit batches and pull rounds wrote lately, kept
     * SYNC_OWN_KEEP_MS (sync_folder_wrote: the watcher's change is ours). */
    struct lr_ownset own;
    struct lr_store_mark mark; /* the index mark last written (advance_mark, sync.c) */
};

/* A copy's identity as a rename's new name (syncpull.c pending_twin). */
struct sync_twin {
    struct lr_hash blocks;
    int64_t mtime_ns;
    uint64_t size;
    uint64_t author, counter; /* the copy's version: renamed_to's rename test */
};

#define SYNC_FAILED_TWINS_MAX 65536

/* Job-owned: cross-batch checker of one peer's INDEX burst for a folder. */
struct sync_tracker {
    struct sync_tracker *next;
    struct lr_device_id peer;
    char *folder;
    uint64_t epoch_key; /* (peer gen, link epoch) it was reset for */
    struct lr_proto_burst burst;
    uint64_t
        miss_epoch; /* a delta without base in this link epoch: ignore the rest (+1; 0: none) */
    /* A batch of this link epoch was not stored (our disk full, a bad
     * batch): the connection is closing, and the batches queued behind it
     * must not be stored either, or the sequence held would pass the lost
     * one and the reconnect would never resend it (+1; 0: none). */
    uint64_t failed_epoch;
    /* A SUMMARY of theirs began a replacement (§6.11): its RECON burst may
     * follow in this link epoch; its LAST raises max_seq to recon_seq. */
    uint64_t recon_index, recon_seq, recon_epoch;
};

struct sync_state {
    struct sync_peer *peers;
    struct sync_link *links;
    struct sync_folder *folders;
    struct sync_xfer *xfers;        /* every live transfer */
    struct lr_xs *xs;               /* the chunk scheduler (sync/xfer.h) */
    struct sync_sessions *sessions; /* sessions.c */
    /* Spare sidecar inodes for the pull's store handles (store.h). */
    struct lr_store_spares *spares;
    size_t nxfers;
    bool pumping, pump_again; /* sync_pump re-entry guard */
    uint64_t next_req_id;
    struct sync_pullq *rx;      /* received chunks waiting for a job (syncpull.c) */
    struct lr_proto_zc **rx_zc; /* idle decompression contexts lent to rx jobs */
    size_t nrx_zc;
    struct sync_commitq *cq;  /* complete transfers waiting for a commit job */
    struct sync_items *items; /* failing items, item events, retries (syncerr.h) */
    /* Job-owned. */
    struct sync_tracker *trackers;
    struct lr_proto_zc *zc;
    /*
     * The last record (with its chunk list) a WANT was served from: a peer pulls
     * a large file chunk by chunk, and loading its whole list per WANT made
     * serving quadratic. Keyed by folder, path and blocks hash (the hash of the
     * list itself), so a hit always describes the wanted version; the data is
     * verified on read regardless.
     */
    struct lr_file_rec serve_rec;
    char *serve_folder;
    /* Serve-lane-owned (one job at a time, beside the serial queue):
     * serve_rec and serve_folder above, the side index handle
     * (sync_side_ix), the compression context and the raw-run counter. */
    struct lr_index *serve_ix;
    struct lr_proto_zc *serve_zc;
    unsigned serve_plain_left;
};

/* sync.c */
struct sync_peer *sync_peer_get(struct lr_daemon *d, const struct lr_device_id *id);
/* The device's connection, if one is up now (it need not have a sync_peer). */
struct lr_conn *sync_peer_conn(struct lr_daemon *d, const struct lr_device_id *id);
struct sync_folder *sync_folder_get(struct lr_daemon *d, const char *id);
/* PULLED from a peer (docs/protocol.md §6.12). */
void sync_on_pulled(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload, size_t len);

/* syncseqs.c: SEQ_ASK and SEQS (docs/protocol.md §6.13). */
void sync_on_seq_ask(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload, size_t len);
void sync_on_seqs(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload, size_t len);
struct sync_link *sync_link_find(struct lr_daemon *d, const struct lr_device_id *peer,
                                 const char *folder);
/* Append a frame (payload taken over) to the peer's queue and flush what fits. */
void sync_send(struct lr_daemon *d, struct sync_peer *p, enum lr_stream_class cls, uint64_t type,
               uint8_t *payload, size_t len);
void sync_flush(struct lr_daemon *d, struct sync_peer *p);
/* Our index of the folder changed: send the news to every peer syncing it. */
void sync_local_changed(struct lr_daemon *d, const char *folder);
/* Close a connection for a protocol violation (logged with `what`). */
void sync_peer_fatal(struct lr_daemon *d, struct sync_peer *p, const char *what, int rc,
                     const struct lr_err *err);
bool sync_folder_usable(struct lr_daemon *d, const char *folder);
/*
 * The second handle on the index, for jobs on the serve side lane (serving
 * WANTs, building FOLDERS and INDEX): opened on first use; NULL with err set
 * if it cannot be. Those jobs only read through it: a write there could
 * invalidate a read snapshot the serial queue's transaction holds
 * (SQLITE_BUSY_SNAPSHOT), so writes stay on the serial queue.
 */
struct lr_index *sync_side_ix(struct lr_daemon *d, struct lr_err *err);

/* sync.c, for syncrecon.c */
struct sync_tracker *sync_tracker_get(struct sync_state *s, const struct lr_device_id *peer,
                                      const char *folder);
/* Queue the link's next index burst (no-op while one is queued or a
 * SUMMARY awaits its SUMMARY_WANT). */
void sync_queue_sender(struct lr_daemon *d, struct sync_link *l);

/* syncrecon.c: reconciliation without history (docs/protocol.md §6.11) */
/* Side lane: a SUMMARY of our index of folder up to info->max_seq into out
 * (*nb its bucket count). 1: built; 0: not worth it or too big for one
 * message (send the full index); negative: error (err set). */
int sync_recon_build(struct lr_index *ix, const char *folder, const struct lr_folder_info *info,
                     uint64_t skip_author, struct lr_buf *out, uint32_t *nb, struct lr_err *err);
void sync_recon_on_summary(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload,
                           size_t len);
void sync_recon_on_want(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload,
                        size_t len);

/* syncpull.c */
void sync_pull_trigger(struct lr_daemon *d, const char *folder);
/* Bytes of the folder's transfers in flight already verified in staging. */
uint64_t sync_pull_got_bytes(struct lr_daemon *d, const char *folder);
void sync_pull_on_chunk(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload,
                        size_t len);
/* A peer's HAVE (docs/protocol.md §6.10): chunks it holds of a version it is
 * still downloading. A protocol error unless LR_FEAT_HAVE is in force. */
void sync_pull_on_have(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload,
                       size_t len);
void sync_pull_peer_up(struct lr_daemon *d, struct sync_peer *p);
void sync_pull_peer_down(struct lr_daemon *d, struct sync_peer *p);
/* Drop transfers of folders no longer configured. */
void sync_pull_config_changed(struct lr_daemon *d);
/*
 * Serving WANTs from a version we are still downloading (syncserve.c): a
 * reference to the transfer of folder/path/blocks_hash whose staging file
 * holds the chunk (off, size, hash) verified and written, or NULL. The
 * reference keeps the staging descriptor open until unref (loop thread);
 * the server re-hashes what it reads before sending.
 */
struct sync_xfer *sync_pull_staging_ref(struct lr_daemon *d, const char *folder,
                                        const uint8_t *path, size_t path_len,
                                        const struct lr_hash *blocks_hash, uint64_t off,
                                        uint32_t size, const struct lr_hash *hash);
int sync_pull_staging_fd(const struct sync_xfer *x);
void sync_pull_staging_unref(struct sync_xfer *x);
void sync_pump(struct lr_daemon *d);
void sync_pull_free(struct lr_daemon *d);

/* syncserve.c */
void sync_serve_on_want(struct lr_daemon *d, struct sync_peer *p, const uint8_t *payload,
                        size_t len);
/* The peer's FOLDERS arrived: the WANTs parked before it are answered. */
void sync_serve_replay(struct lr_daemon *d, struct sync_peer *p);
/* Forgets the peer's queued and parked requests (connection gone or replaced). */
void sync_serve_peer_down(struct lr_daemon *d, struct sync_peer *p);

#endif
