/*
 * daemon.c - lifecycle and wiring: lock, detach, logging, signals, the
 * control API server, the transport, and the runtime view of peers and
 * folders.
 */
#include "daemon/daemon_int.h"
#include "daemon/disc.h"
#include "daemon/failpoint.h"
#include "daemon/live.h"
#include "daemon/pairing.h"
#include "daemon/retention.h"

#include "util/fsutil.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MOD "daemon"

const char *daemon_folder_state_name(enum folder_state s)
{
    switch (s) {
    case FOLDER_SCANNING:
        return "scanning";
    case FOLDER_SYNCING:
        return "syncing";
    case FOLDER_ERROR:
        return "error";
    case FOLDER_IDLE:
    default:
        return "idle";
    }
}

static void iso_now(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[24];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03ldZ", base, ts.tv_nsec / 1000000L);
}

void daemon_event(struct lr_daemon *d, json_t *ev)
{
    char when[64];
    iso_now(when, sizeof(when));
    json_object_set_new(ev, "time", json_string(when));
    if (d->api)
        lr_api_server_broadcast(d->api, ev);
    json_decref(ev);
    syncstate_poke(d);
}

/* ---- peers and folders ---- */

struct peer_rt *daemon_peer(struct lr_daemon *d, const struct lr_device_id *id)
{
    for (size_t i = 0; i < d->npeers; i++)
        if (lr_device_id_eq(&d->peers[i].id, id))
            return &d->peers[i];
    return NULL;
}

void daemon_peer_bytes(const struct peer_rt *p, uint64_t *sent, uint64_t *recv)
{
    *sent = p ? p->sent_done : 0;
    *recv = p ? p->recv_done : 0;
    if (p && p->conn) {
        struct lr_conn_stats st;
        lr_conn_get_stats(p->conn, &st);
        *sent += st.payload_sent;
        *recv += st.payload_recv;
    }
}

void daemon_folder_fail(struct folder_rt *f, const char *msg)
{
    int64_t now = (int64_t)time(NULL);
    /* A rescan puts the folder in `scanning` meanwhile: still the same
     * failure until a scan succeeds (which clears the message). */
    if (!f->error) {
        f->error_since = now;
        f->error_attempts = 0;
    }
    f->error_last = now;
    if (f->error_attempts < UINT32_MAX)
        f->error_attempts++;
    f->state = FOLDER_ERROR;
    free(f->error);
    f->error = lr_xstrdup(msg);
}

struct folder_rt *daemon_folder(struct lr_daemon *d, const char *id)
{
    for (size_t i = 0; i < d->nfolders; i++)
        if (strcmp(d->folders[i].id, id) == 0)
            return &d->folders[i];
    return NULL;
}

static void folder_rt_release(struct folder_rt *f)
{
    free(f->id);
    free(f->error);
}

static void dial_peer(struct lr_daemon *d, const struct lr_peer_cfg *p)
{
    if (!d->tr || p->naddrs == 0)
        return;
    struct lr_err err = {0};
    char s[LR_DEVICE_ID_SHORTLEN + 1];
    lr_device_id_short(&p->id, s);
    if (lr_transport_dial(d->tr, &p->id, (const char *const *)p->addrs, p->naddrs, &err) < 0)
        lr_warn(MOD, "cannot dial peer=%s: %s", s, err.msg);
}

void daemon_dial_now(struct lr_daemon *d, const struct lr_device_id *id)
{
    const struct lr_peer_cfg *pc = lr_config_find_peer(d->cfg, id);
    if (pc)
        dial_peer(d, pc);
}

enum { DAEMON_GONE_MAX = 256 };

/* Counters of a peer being removed, closed connection included. */
static void peer_gone_keep(struct lr_daemon *d, struct peer_rt *p)
{
    uint64_t sent, recv;
    daemon_peer_bytes(p, &sent, &recv);
    if (sent == 0 && recv == 0)
        return;
    if (d->ngone == DAEMON_GONE_MAX) {
        memmove(&d->gone[0], &d->gone[1], (d->ngone - 1) * sizeof(*d->gone));
        d->ngone--;
    }
    d->gone = lr_xreallocarray(d->gone, d->ngone + 1, sizeof(*d->gone));
    d->gone[d->ngone++] = (struct peer_gone){.id = p->id, .sent = sent, .recv = recv};
}

static void peer_gone_restore(struct lr_daemon *d, struct peer_rt *p)
{
    for (size_t i = 0; i < d->ngone; i++) {
        if (!lr_device_id_eq(&d->gone[i].id, &p->id))
            continue;
        p->sent_done = d->gone[i].sent;
        p->recv_done = d->gone[i].recv;
        memmove(&d->gone[i], &d->gone[i + 1], (d->ngone - i - 1) * sizeof(*d->gone));
        d->ngone--;
        return;
    }
}

void daemon_config_changed(struct lr_daemon *d)
{
    /* Peers: keep runtime state of those still configured, forget the others. */
    for (size_t i = 0; i < d->npeers;) {
        if (!lr_config_find_peer(d->cfg, &d->peers[i].id)) {
            if (d->tr)
                lr_transport_forget_peer(d->tr, &d->peers[i].id);
            /* forget_peer ran on_disconnected synchronously or will not find this entry. */
            struct peer_rt *p = daemon_peer(d, &d->peers[i].id);
            if (p) {
                peer_gone_keep(d, p);
                size_t k = (size_t)(p - d->peers);
                memmove(&d->peers[k], &d->peers[k + 1], (d->npeers - k - 1) * sizeof(*p));
                d->npeers--;
            }
            continue;
        }
        i++;
    }
    for (size_t i = 0; i < d->cfg->npeers; i++) {
        const struct lr_peer_cfg *pc = &d->cfg->peers[i];
        if (!daemon_peer(d, &pc->id)) {
            d->peers = lr_xreallocarray(d->peers, d->npeers + 1, sizeof(*d->peers));
            struct peer_rt *p = &d->peers[d->npeers++];
            memset(p, 0, sizeof(*p));
            p->id = pc->id;
            peer_gone_restore(d, p);
        }
        dial_peer(d, pc);
    }
    /* Folders. Watchers first, so a change during the first scan is not missed. */
    live_config_changed(d);
    for (size_t i = 0; i < d->nfolders;) {
        if (!lr_config_find_folder(d->cfg, d->folders[i].id)) {
            folder_rt_release(&d->folders[i]);
            memmove(&d->folders[i], &d->folders[i + 1],
                    (d->nfolders - i - 1) * sizeof(d->folders[0]));
            d->nfolders--;
            continue;
        }
        i++;
    }
    for (size_t i = 0; i < d->cfg->nfolders; i++) {
        const char *id = d->cfg->folders[i].id;
        if (daemon_folder(d, id))
            continue;
        d->folders = lr_xreallocarray(d->folders, d->nfolders + 1, sizeof(*d->folders));
        struct folder_rt *f = &d->folders[d->nfolders++];
        memset(f, 0, sizeof(*f));
        f->id = lr_xstrdup(id);
        f->state = FOLDER_IDLE;
        scanjobs_bind(d, id);
        scanjobs_queue(d, &id, 1, NULL, NULL);
    }
    sync_config_changed(d);
    disc_config_changed(d);
}

/* ---- transport callbacks ---- */

static bool cb_is_trusted(void *ud, const struct lr_device_id *peer)
{
    struct lr_daemon *d = ud;
    return lr_config_find_peer(d->cfg, peer) != NULL;
}

static void cb_refused(void *ud, const struct lr_device_id *peer, const char *addr)
{
    struct lr_daemon *d = ud;
    char id[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(peer, id);
    lr_warn(MOD,
            "refused handshake from unknown device id=%s addr=%s (add it with 'landropic "
            "peer add %s' to trust it)",
            id, addr, id);
    daemon_event(d, json_pack("{s:s, s:s, s:s}", "type", "handshake_refused", "device", id,
                              "address", addr));
    disc_pending_note(d, peer, NULL, &addr, 1, "connect");
}

static void cb_connected(void *ud, struct lr_conn *c, const struct lr_device_id *peer,
                         const struct lr_proto_hello *hello)
{
    struct lr_daemon *d = ud;
    struct peer_rt *p = daemon_peer(d, peer);
    if (!p) {
        /* Removed while the handshake ran: trust is checked again here. */
        lr_conn_close(c, "peer removed");
        return;
    }
    p->conn = c;
    snprintf(p->name, sizeof(p->name), "%s", hello->name);
    char id[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(peer, id);
    char *name = lr_escs(hello->name);
    lr_info(MOD, "peer connected id=%s name=%s addr=%s", id, name, lr_conn_addr(c));
    free(name);
    daemon_event(d, json_pack("{s:s, s:s, s:s, s:s}", "type", "peer_connected", "device", id,
                              "name", hello->name, "address", lr_conn_addr(c)));
    sync_peer_up(d, c, peer, hello->features);
}

static void cb_disconnected(void *ud, struct lr_conn *c, const struct lr_device_id *peer,
                            const char *reason)
{
    struct lr_daemon *d = ud;
    struct peer_rt *p = daemon_peer(d, peer);
    char id[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(peer, id);
    if (p && p->conn == c) {
        struct lr_conn_stats st;
        lr_conn_get_stats(c, &st);
        p->sent_done += st.payload_sent;
        p->recv_done += st.payload_recv;
        p->conn = NULL;
    }
    sync_peer_down(d, c, peer, lr_conn_lost_reason(reason));
    lr_info(MOD, "peer disconnected id=%s reason=%s", id, reason);
    daemon_event(d, json_pack("{s:s, s:s, s:s}", "type", "peer_disconnected", "device", id,
                              "reason", reason));
}

static void cb_message(void *ud, struct lr_conn *c, uint64_t type, const uint8_t *payload,
                       size_t len)
{
    struct lr_daemon *d = ud;
#ifdef LR_FAILPOINTS
    if (type == LR_MSG_DEBUG_DATA) {
        debug_on_message(d, c, payload, len);
        return;
    }
#endif
    sync_on_message(d, c, type, payload, len);
}

static void cb_writable(void *ud, struct lr_conn *c)
{
    struct lr_daemon *d = ud;
#ifdef LR_FAILPOINTS
    debug_on_writable(d, c);
#endif
    sync_on_writable(d, c);
}

/* ---- lifecycle ---- */

static void on_closed(void *ud)
{
    struct lr_daemon *d = ud;
    if (--d->pending_closes == 0)
        uv_stop(&d->loop);
}

void daemon_stop(struct lr_daemon *d, const char *why)
{
    if (d->stopping)
        return;
    d->stopping = true;
    lr_info(MOD, "stopping: %s", why);
    scanjobs_cancel(d);
    syncstate_stop(d);
    live_stop(d);
    pairing_stop(d);
    uv_signal_stop(&d->sig_term);
    uv_signal_stop(&d->sig_int);
    d->pending_closes = 1; /* the signal handles, closed below */
    if (d->api)
        d->pending_closes++;
    if (d->tr)
        d->pending_closes++;
    d->pending_closes += disc_stop(d, on_closed, d);
    if (d->api) {
        lr_api_server_close(d->api, on_closed, d);
        d->api = NULL;
    }
    if (d->tr) {
        lr_transport_close(d->tr, 0, on_closed, d);
        d->tr = NULL;
    }
    uv_close((uv_handle_t *)&d->sig_term, NULL);
    uv_close((uv_handle_t *)&d->sig_int, NULL);
    on_closed(d);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct lr_daemon *d = h->data;
    daemon_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Take HOME/daemon.lock; LR_EBUSY naming the holder's PID if another daemon has it. */
static int take_lock(struct lr_daemon *d, struct lr_err *err)
{
    char *path = lr_xasprintf("%s/daemon.lock", d->opts->home);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int rc = lr_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        int rc = lr_err_set(err, LR_EBUSY, "another daemon (PID %s) is already running for home %s",
                            pid[0] ? pid : "unknown", d->opts->home);
        free(path);
        return rc;
    }
    free(path);
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
        lr_warn(MOD, "cannot record PID in daemon.lock: %s", strerror(errno));
    d->lock_fd = fd;
    return 0;
}

static int open_log(struct lr_daemon *d, struct lr_err *err)
{
    const char *path = d->opts->log_path;
    char *def = NULL;
    if (!path && d->opts->detach)
        path = def = lr_xasprintf("%s/landropic.log", d->opts->home);
    if (path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0) {
            int rc = lr_err_set(err, -errno, "cannot open log %s: %s", path, strerror(errno));
            free(def);
            return rc;
        }
        /* Detached, stderr was /dev/null: what the C library, an assert or a
         * sanitizer prints there (their reports ignore log_path when ASan and
         * UBSan are combined) is the one line that explains a dead daemon. */
        if (d->opts->detach)
            dup2(fd, STDERR_FILENO);
        d->log = fdopen(fd, "a");
        lr_log_set_sink(d->log);
    }
    free(def);
    lr_log_set_level(d->opts->log_level);
    return 0;
}

static int start_transport(struct lr_daemon *d, struct lr_err *err)
{
    struct lr_transport_config tc = {0};
    /* No --listen: the transport's default (the CLI hands an empty list). */
    tc.listen = d->opts->nlisten ? d->opts->listen : NULL;
    tc.nlisten = d->opts->nlisten;
    tc.cert_path = lr_identity_cert_path(d->ident);
    tc.key_path = lr_identity_key_path(d->ident);
    tc.home = d->opts->home;
    tc.hello.version = LR_PROTO_VERSION;
    tc.hello.features = SYNC_FEATURES;
    /* A configuration from before init refused an empty host name may have
     * "": HELLO needs a name, and this one is only shown to peers. */
    snprintf(tc.hello.name, sizeof(tc.hello.name), "%s",
             d->cfg->name[0] ? d->cfg->name : "landropic");
    snprintf(tc.hello.software, sizeof(tc.hello.software), "landropic %s", LR_VERSION);
    tc.idle_timeout_ms = (uint64_t)d->opts->idle_timeout_s * 1000;
    tc.pair_cbs = pairing_transport_cbs(d);
    struct lr_transport_cbs cbs = {
        .ud = d,
        .is_trusted = cb_is_trusted,
        .on_refused = cb_refused,
        .on_connected = cb_connected,
        .on_disconnected = cb_disconnected,
        .on_message = cb_message,
        .on_writable = cb_writable,
    };
    return lr_transport_new(&d->loop, &tc, &cbs, &d->tr, err);
}

/* Everything after the lock: returns once the loop has ended. */
static int serve(struct lr_daemon *d, struct lr_err *err)
{
    int rc;
    if ((rc = LR_FAILPOINT_INIT_ENV(err)) < 0)
        return rc;
    /* We hold daemon.lock: an offline edit that has the config lock now
     * finishes first, and later ones go through our API. */
    int lock = lr_config_lock(d->opts->home, err);
    if (lock < 0)
        return lock;
    rc = lr_config_load(d->opts->home, &d->cfg, err);
    /* Folders from before tokens get theirs now, saved before any use, so a
     * later remove + add of one of them is told apart (lr_index_folder_bind). */
    bool tokens = false;
    if (rc == 0 && (rc = lr_config_assign_tokens(d->cfg, &tokens, err)) == 0 && tokens)
        rc = lr_config_save(d->cfg, err);
    lr_config_unlock(lock);
    if (rc < 0)
        return rc;
    if ((rc = lr_identity_load(d->opts->home, &d->ident, err)) < 0)
        return rc;
    d->short_id = lr_device_id_u64(lr_identity_device_id(d->ident));
    char *dbpath = lr_xasprintf("%s/index.db", d->opts->home);
    rc = lr_index_open(dbpath, &d->ix, err);
    free(dbpath);
    if (rc < 0)
        return rc;
    /* Read by libuv when it starts its pool (the first job): the default 4
     * would make a side lane wait for a thread behind a long syncfs. An
     * explicit setting in the environment wins. */
    setenv("UV_THREADPOOL_SIZE", DAEMON_POOL_THREADS, 0);
    if ((rc = uv_loop_init(&d->loop)) < 0)
        return lr_err_set(err, rc, "cannot start the event loop: %s", uv_strerror(rc));
    uv_signal_init(&d->loop, &d->sig_term);
    uv_signal_init(&d->loop, &d->sig_int);
    d->sig_term.data = d->sig_int.data = d;
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    d->started_ms = uv_now(&d->loop);
    sync_init(d);
    retention_init(d);

    if ((rc = start_transport(d, err)) < 0)
        goto fail;
    if ((rc = lr_api_server_start(&d->loop, d->opts->home, daemon_api_handler, d, &d->api, err)) <
        0)
        goto fail;
    if ((rc = disc_start(d, err)) < 0)
        goto fail;
    daemon_config_changed(d);

    char id[LR_DEVICE_ID_STRLEN + 1];
    lr_device_id_format(lr_identity_device_id(d->ident), id);
    lr_info(MOD, "started id=%s pid=%ld home=%s", id, (long)getpid(), d->opts->home);
    for (size_t i = 0; i < (d->opts->nlisten ? d->opts->nlisten : 1); i++)
        lr_info(MOD, "listening on %s (port %d)",
                d->opts->nlisten ? d->opts->listen[i] : LR_TRANSPORT_DEFAULT_LISTEN,
                lr_transport_local_port(d->tr, i));
    daemon_event(d, json_pack("{s:s, s:s}", "type", "daemon_started", "device", id));
    if (d->ready_fd >= 0) {
        if (write(d->ready_fd, "OK", 2) != 2)
            lr_warn(MOD, "cannot report readiness: %s", strerror(errno));
        close(d->ready_fd);
        d->ready_fd = -1;
    }
    uv_run(&d->loop, UV_RUN_DEFAULT);
    /* Let close callbacks and a running scan job finish (returns when nothing is left). */
    uv_run(&d->loop, UV_RUN_DEFAULT);
    lr_info(MOD, "stopped");
    uv_loop_close(&d->loop);
    return 0;
fail:
    daemon_stop(d, "start-up failed");
    uv_run(&d->loop, UV_RUN_DEFAULT);
    /* daemon_stop's uv_stop ends the first run at once; the jobs start-up
     * queued (the sessions' load) must end before release() frees the index. */
    uv_run(&d->loop, UV_RUN_DEFAULT);
    uv_loop_close(&d->loop);
    return rc;
}

static void release(struct lr_daemon *d)
{
#ifdef LR_FAILPOINTS
    debug_free(d);
#endif
    sync_free(d);
    retention_free(d);
    disc_free(d);
    pairing_free(d);
    for (size_t i = 0; i < d->nfolders; i++)
        folder_rt_release(&d->folders[i]);
    free(d->folders);
    free(d->peers);
    free(d->gone);
    lr_index_close(d->ix);
    lr_identity_free(d->ident);
    lr_config_free(d->cfg);
}

/* The child side of --detach: a new session, no terminal. */
static void detach_child(void)
{
    setsid();
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, STDIN_FILENO);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
}

/* Parent side of --detach: wait for "OK" or an error message from the child. */
static int wait_ready(int rfd, pid_t child, struct lr_err *err)
{
    char buf[LR_ERR_MSG_MAX + 8];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(rfd, buf + n, sizeof(buf) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n >= sizeof(buf) - 1)
            break;
    }
    close(rfd);
    buf[n] = '\0';
    if (n >= 2 && memcmp(buf, "OK", 2) == 0)
        return 0;
    if (n > 1 && buf[0] == 'E')
        return lr_err_set(err, LR_EINTERNAL, "%s", buf + 1);
    return lr_err_set(err, LR_EINTERNAL, "daemon (PID %ld) exited during start-up; see its log",
                      (long)child);
}

int lr_daemon_run(const struct lr_daemon_opts *opts, struct lr_err *err)
{
    struct lr_daemon d;
    memset(&d, 0, sizeof(d));
    d.opts = opts;
    d.lock_fd = -1;
    d.ready_fd = -1;
    signal(SIGPIPE, SIG_IGN);
    /*
     * One malloc arena: glibc gives each thread that allocates (the loop, the
     * job threads, the hashing workers) its own arena, and what a pull round
     * frees in one stays resident there (20 000-file pull: receiver RssAnon
     * 33.7 MiB with the default, 25.6 MiB with one arena; docs/benchmarks.md).
     * The threads allocate little on their hot paths, so the shared lock costs
     * nothing measurable.
     */
    mallopt(M_ARENA_MAX, 1);
    if (chmod(opts->home, 0700) < 0 && errno != EPERM)
        return lr_err_set(err, -errno, "cannot secure home %s: %s", opts->home, strerror(errno));

    if (opts->detach) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
            return lr_err_set(err, -errno, "pipe: %s", strerror(errno));
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0)
            return lr_err_set(err, -errno, "fork: %s", strerror(errno));
        if (pid > 0) {
            close(p[1]);
            return wait_ready(p[0], pid, err);
        }
        close(p[0]);
        d.ready_fd = p[1];
        detach_child();
    }

    int rc = take_lock(&d, err);
    if (rc == 0)
        rc = open_log(&d, err);
    if (rc == 0)
        rc = serve(&d, err);
    if (rc < 0 && d.ready_fd >= 0) {
        char msg[LR_ERR_MSG_MAX + 2];
        int n = snprintf(msg, sizeof(msg), "E%s", lr_err_msg(err, rc));
        if (write(d.ready_fd, msg, (size_t)n) < 0)
            lr_error(MOD, "%s", msg + 1);
    } else if (rc < 0 && d.log) {
        lr_error(MOD, "%s", lr_err_msg(err, rc)); /* the CLI prints it on stderr too */
    }
    if (d.ready_fd >= 0)
        close(d.ready_fd);
    release(&d);
    if (d.log) {
        lr_log_set_sink(NULL);
        fclose(d.log);
    }
    /* Released last: `landropic stop` waits for this to know we are gone. */
    if (d.lock_fd >= 0)
        close(d.lock_fd);
    /* The detached child must not return into the CLI's caller. exit(), not _exit():
     * stdio was flushed before fork, and atexit handlers (coverage data) should run. */
    if (opts->detach)
        exit(rc < 0 ? 1 : 0);
    return rc;
}
