/*
 * server.c - the control socket, on the daemon's libuv loop thread.
 *
 * Sockets are raw non-blocking descriptors watched with uv_poll_t rather
 * than uv_pipe_t: uv_write() queues without limit and cannot take back a
 * queued event, while a slow `events` reader must lose its oldest events
 * instead of growing the daemon. So each connection owns one output queue
 * of lines that we write ourselves with sendmsg(MSG_NOSIGNAL), and can edit
 * while it is unsent.
 *
 * Lifetimes: a conn is freed only in its uv_close callback, so code that
 * closed it may keep looking at its `closing` flag until it returns to the
 * loop. A req points to its conn until the conn closes; then it is detached
 * (conn = NULL) and a later reply only frees it. Stream reqs belong to
 * their conn and die with it.
 */
#include "api/api_int.h"
#include "util/log.h"
#include "util/xalloc.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOD "api"
/* Input buffer: grown in steps, never beyond one maximal line plus its '\n'. */
#define IN_STEP ((size_t)64 << 10)
#define IN_CAP_MAX (LR_API_LINE_MAX + 1)
#define IOV_MAX_BATCH 64
#define READS_PER_WAKE 16
#define ACCEPTS_PER_WAKE 32
#define ACCEPT_RETRY_MS 1000

enum item_kind { IT_REPLY, IT_EVENT, IT_MARKER };

struct out_item {
    TAILQ_ENTRY(out_item) link;
    enum item_kind kind;
    struct lr_api_req *stream; /* IT_EVENT / IT_MARKER */
    unsigned long long count;  /* IT_MARKER: events dropped at this spot */
    char *data;                /* heap line, or mbuf for a marker */
    size_t len;
    char mbuf[128];
};
TAILQ_HEAD(out_queue, out_item);

struct conn;

struct lr_api_req {
    struct conn *conn; /* NULL once the connection is gone */
    LIST_ENTRY(lr_api_req) link;
    long long id;
    bool streaming;
    void (*gone)(struct lr_api_req *req, void *ud); /* lr_api_req_on_gone */
    void *gone_ud;
};
LIST_HEAD(req_list, lr_api_req);

struct conn {
    struct lr_api_server *srv;
    TAILQ_ENTRY(conn) link;
    uv_poll_t poll;
    int fd;
    int armed; /* UV_* events the poll handle is started with */
    bool closing;
    bool eof;         /* the client will send nothing more */
    bool need_kick;   /* has buffered lines to dispatch once below the in-flight limit */
    bool dispatching; /* inside conn_dispatch(): it will see freed slots itself */

    char *in;
    size_t in_len, in_cap;
    size_t in_scanned; /* prefix of in[] known to hold no '\n' */
    unsigned bad_lines;

    size_t inflight;
    size_t nstreams;
    struct req_list reqs;    /* awaiting a reply */
    struct req_list streams; /* owned */

    struct out_queue out;
    size_t out_off; /* bytes of the head item already written */
    size_t n_events, ev_bytes, rep_bytes;
};
TAILQ_HEAD(conn_list, conn);

struct lr_api_server {
    uv_loop_t *loop;
    lr_api_handler handler;
    void *ud;
    char *home;
    struct lr__api_addr addr;
    dev_t sock_dev;
    ino_t sock_ino;
    int lfd;
    uv_poll_t lpoll;
    uv_timer_t kick;
    uv_timer_t accept_retry;
    struct conn_list conns;
    size_t nconns;
    bool closing;
    int handles_open;
    void (*done)(void *);
    void *done_ud;
    struct lr_api_server_stats st;
};

static void conn_on_io(uv_poll_t *p, int status, int events);
static void conn_close(struct conn *c, const char *why);
static void conn_dispatch(struct conn *c);

/* ---- output queue ---- */

static void item_free(struct out_item *it)
{
    if (it->kind != IT_MARKER)
        free(it->data);
    free(it);
}

static void marker_render(struct out_item *m)
{
    int n = snprintf(m->mbuf, sizeof(m->mbuf),
                     "{\"id\":%lld,\"event\":{\"type\":\"dropped\",\"count\":%llu}}\n",
                     m->stream->id, m->count);
    m->data = m->mbuf;
    m->len = (size_t)n;
}

/* An item may be edited or removed unless part of it is already on the wire. */
static bool item_mutable(const struct conn *c, const struct out_item *it)
{
    return !(it == TAILQ_FIRST(&c->out) && c->out_off > 0);
}

static void item_unlink(struct conn *c, struct out_item *it)
{
    TAILQ_REMOVE(&c->out, it, link);
    if (it->kind == IT_EVENT) {
        c->n_events--;
        c->ev_bytes -= it->len;
    } else if (it->kind == IT_REPLY) {
        c->rep_bytes -= it->len;
    }
}

/* Whether an unanswered request of the connection asked to hear of its end. */
static bool waits_for_client(struct conn *c)
{
    struct lr_api_req *r;
    LIST_FOREACH(r, &c->reqs, link)
    {
        if (r->gone)
            return true;
    }
    return false;
}

/* Both directions closed (the client closed its socket or exited), not only
 * its sending side (shutdown(SHUT_WR), then reading the replies). */
static bool peer_hung_up(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLHUP | POLLERR));
}

static void conn_update_poll(struct conn *c)
{
    if (c->closing)
        return;
    int want = 0;
    if (!c->eof && !c->need_kick && c->inflight < LR_API_INFLIGHT_MAX && c->in_len < IN_CAP_MAX)
        want |= UV_READABLE;
    if (!TAILQ_EMPTY(&c->out))
        want |= UV_WRITABLE;
    if (want == c->armed)
        return;
    int rc = want ? uv_poll_start(&c->poll, want, conn_on_io) : uv_poll_stop(&c->poll);
    if (rc < 0) {
        lr_warn(MOD, "poll update failed fd=%d: %s", c->fd, uv_strerror(rc));
        conn_close(c, "poll failure");
        return;
    }
    c->armed = want;
}

/*
 * Write as much queued output as the socket takes now. Returns 0 or -errno
 * for a dead connection (the caller closes it).
 */
static int conn_flush(struct conn *c)
{
    while (!TAILQ_EMPTY(&c->out)) {
        struct iovec iov[IOV_MAX_BATCH];
        int n = 0;
        struct out_item *it;
        TAILQ_FOREACH(it, &c->out, link)
        {
            if (n == IOV_MAX_BATCH)
                break;
            size_t off = n == 0 ? c->out_off : 0;
            iov[n].iov_base = it->data + off;
            iov[n].iov_len = it->len - off;
            n++;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -errno;
        }
        size_t left = (size_t)w;
        while (left > 0) {
            it = TAILQ_FIRST(&c->out);
            size_t rest = it->len - c->out_off;
            if (left < rest) {
                c->out_off += left;
                break;
            }
            left -= rest;
            c->out_off = 0;
            item_unlink(c, it);
            item_free(it);
        }
    }
    return 0;
}

/* After output or a reply: close a finished half-closed connection, re-arm the poll. */
static void conn_after_output(struct conn *c)
{
    if (c->closing)
        return;
    if (c->eof && c->inflight == 0 && c->in_len == 0 && !c->dispatching && TAILQ_EMPTY(&c->out)) {
        conn_close(c, "client finished");
        return;
    }
    conn_update_poll(c);
}

static void conn_push(struct conn *c, struct out_item *it)
{
    TAILQ_INSERT_TAIL(&c->out, it, link);
    /* Writable already armed means the socket is full: a write would fail now. */
    if (!(c->armed & UV_WRITABLE)) {
        int rc = conn_flush(c);
        if (rc < 0) {
            lr_debug(MOD, "write to client failed fd=%d: %s", c->fd, strerror(-rc));
            conn_close(c, "write failed");
            return;
        }
    }
    conn_after_output(c);
}

static void peak(size_t *p, size_t v)
{
    if (v > *p)
        *p = v;
}

/* Takes ownership of line. May close c. */
static void conn_send_reply(struct conn *c, char *line, size_t len)
{
    if (c->closing) {
        free(line);
        return;
    }
    /* A lone reply always goes out, however large (its size is the daemon's
     * choice); queueing more behind unread ones means the client is not
     * reading, and holding its replies for ever is not our job. */
    if (c->rep_bytes > 0 && c->rep_bytes + len > LR_API_REPLY_QUEUE_MAX) {
        free(line);
        lr_warn(MOD, "client fd=%d does not read its replies (%zu bytes queued): closing", c->fd,
                c->rep_bytes);
        c->srv->st.clients_kicked++;
        conn_close(c, "reply queue full");
        return;
    }
    struct out_item *it = lr_xcalloc(1, sizeof(*it));
    it->kind = IT_REPLY;
    it->data = line;
    it->len = len;
    c->rep_bytes += len;
    peak(&c->srv->st.reply_bytes_peak, c->rep_bytes);
    conn_push(c, it);
}

static struct out_item *oldest_droppable_event(struct conn *c)
{
    struct out_item *it;
    TAILQ_FOREACH(it, &c->out, link)
    {
        if (it->kind == IT_EVENT && item_mutable(c, it))
            return it;
    }
    return NULL;
}

/*
 * Drop `victim`, recording the loss in the stream's marker just before it
 * (every item between such a marker and the oldest event is a reply or
 * another marker, so the count stays at the right spot), or by turning the
 * victim itself into a marker.
 */
static void drop_event(struct conn *c, struct out_item *victim)
{
    struct lr_api_req *st = victim->stream;
    struct out_item *m = NULL, *it;
    TAILQ_FOREACH(it, &c->out, link)
    {
        if (it == victim)
            break;
        if (it->kind == IT_MARKER && it->stream == st && item_mutable(c, it))
            m = it;
    }
    c->srv->st.events_dropped++;
    if (m) {
        m->count++;
        marker_render(m);
        item_unlink(c, victim);
        item_free(victim);
        return;
    }
    c->n_events--;
    c->ev_bytes -= victim->len;
    free(victim->data);
    victim->kind = IT_MARKER;
    victim->count = 1;
    marker_render(victim);
}

/* Takes ownership of line. May close c. */
static void conn_send_event(struct conn *c, struct lr_api_req *st, char *line, size_t len)
{
    if (len > LR_API_EVENT_BYTES_MAX) {
        /* Can never fit: it is lost; say so at the tail. */
        free(line);
        c->srv->st.events_dropped++;
        struct out_item *t = TAILQ_LAST(&c->out, out_queue);
        if (t && t->kind == IT_MARKER && t->stream == st && item_mutable(c, t)) {
            t->count++;
            marker_render(t);
            return;
        }
        struct out_item *m = lr_xcalloc(1, sizeof(*m));
        m->kind = IT_MARKER;
        m->stream = st;
        m->count = 1;
        marker_render(m);
        conn_push(c, m);
        return;
    }
    while (c->n_events + 1 > LR_API_EVENT_QUEUE_MAX || c->ev_bytes + len > LR_API_EVENT_BYTES_MAX) {
        struct out_item *v = oldest_droppable_event(c);
        if (!v)
            break;
        drop_event(c, v);
    }
    struct out_item *it = lr_xcalloc(1, sizeof(*it));
    it->kind = IT_EVENT;
    it->stream = st;
    it->data = line;
    it->len = len;
    c->n_events++;
    c->ev_bytes += len;
    peak(&c->srv->st.event_queue_peak, c->n_events);
    peak(&c->srv->st.event_bytes_peak, c->ev_bytes);
    conn_push(c, it);
}

static void conn_send_error(struct conn *c, bool has_id, long long id, const char *code,
                            int exit_code, const char *msg)
{
    size_t len;
    char *line = lr__api_encode_error(has_id, id, code, exit_code, msg, &len);
    if (line)
        conn_send_reply(c, line, len);
}

/* ---- connection lifecycle ---- */

static void server_maybe_done(struct lr_api_server *s)
{
    if (!s->closing || s->handles_open > 0 || s->nconns > 0)
        return;
    void (*done)(void *) = s->done;
    void *ud = s->done_ud;
    if (s->lfd >= 0)
        close(s->lfd);
    lr__api_addr_release(&s->addr);
    free(s->home);
    free(s);
    if (done)
        done(ud);
}

static void conn_closed_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct lr_api_server *s = c->srv;
    close(c->fd);
    TAILQ_REMOVE(&s->conns, c, link);
    s->nconns--;
    s->st.clients = s->nconns;
    free(c);
    server_maybe_done(s);
}

static void conn_close(struct conn *c, const char *why)
{
    if (c->closing)
        return;
    struct lr_api_server *s = c->srv;
    /* One last non-blocking try, so an error reply sent just before closing
     * (too_large, too many bad lines, server stop) has a chance to arrive. */
    (void)conn_flush(c);
    c->closing = true;
    lr_debug(MOD, "client closed fd=%d reason=%s", c->fd, why);

    struct lr_api_req *r;
    while ((r = LIST_FIRST(&c->reqs))) {
        LIST_REMOVE(r, link);
        r->conn = NULL;
        s->st.inflight--;
        if (r->gone)
            r->gone(r, r->gone_ud); /* may answer (free) r */
    }
    while ((r = LIST_FIRST(&c->streams))) {
        LIST_REMOVE(r, link);
        s->st.streams--;
        free(r);
    }
    c->inflight = 0;
    c->nstreams = 0;
    struct out_item *it;
    while ((it = TAILQ_FIRST(&c->out))) {
        TAILQ_REMOVE(&c->out, it, link);
        item_free(it);
    }
    free(c->in);
    c->in = NULL;
    c->in_len = c->in_cap = 0;
    uv_close((uv_handle_t *)&c->poll, conn_closed_cb);
}

static void kick_cb(uv_timer_t *t)
{
    struct lr_api_server *s = t->data;
    struct conn *c;
    TAILQ_FOREACH(c, &s->conns, link)
    {
        if (s->closing)
            return;
        if (c->closing || !c->need_kick || c->inflight >= LR_API_INFLIGHT_MAX)
            continue;
        c->need_kick = false;
        conn_dispatch(c);
    }
}

/* A request slot freed up: dispatch buffered lines on the next loop turn
 * (not now: we may be inside the handler that answered). */
static void conn_slot_freed(struct conn *c)
{
    struct lr_api_server *s = c->srv;
    if (c->in_len > 0 && !c->dispatching) {
        c->need_kick = true;
        if (!uv_is_active((uv_handle_t *)&s->kick))
            uv_timer_start(&s->kick, kick_cb, 0, 0);
    }
    conn_after_output(c);
}

/* ---- requests ---- */

static void handle_line(struct conn *c, char *line, size_t len)
{
    struct lr_api_server *s = c->srv;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
        i++;
    if (i == len)
        return; /* blank lines are allowed (handy with socat / nc) */

    struct lr_api_request rq;
    const char *code;
    struct lr_err e;
    lr_err_clear(&e);
    int rc = lr_api_request_decode(line, len, &rq, &code, &e);
    if (rc < 0) {
        c->bad_lines++;
        lr_debug(MOD, "bad request fd=%d: %s", c->fd, e.msg);
        conn_send_error(c, rq.has_id, rq.id, code, 1, e.msg);
        if (!c->closing && c->bad_lines >= LR_API_BAD_LINES_MAX) {
            s->st.clients_kicked++;
            conn_close(c, "too many bad lines");
        }
        return;
    }
    c->bad_lines = 0;
    struct lr_api_req *r = lr_xcalloc(1, sizeof(*r));
    r->conn = c;
    r->id = rq.id;
    LIST_INSERT_HEAD(&c->reqs, r, link);
    c->inflight++;
    s->st.inflight++;
    s->handler(s->ud, r, rq.method, rq.params);
    lr_api_request_release(&rq);
}

/* Hand complete buffered lines to the handler while below the in-flight limit. */
static void conn_dispatch(struct conn *c)
{
    struct lr_api_server *s = c->srv;
    size_t start = 0;
    c->dispatching = true;
    while (!c->closing && !s->closing && c->inflight < LR_API_INFLIGHT_MAX) {
        size_t from = c->in_scanned > start ? c->in_scanned : start;
        char *nl = c->in_len > from ? memchr(c->in + from, '\n', c->in_len - from) : NULL;
        if (!nl) {
            c->in_scanned = c->in_len;
            break;
        }
        size_t ll = (size_t)(nl - (c->in + start));
        c->in_scanned = start + ll + 1;
        handle_line(c, c->in + start, ll);
        start += ll + 1;
    }
    c->dispatching = false;
    if (c->closing || s->closing)
        return;
    if (start > 0) {
        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
        c->in_scanned = c->in_scanned > start ? c->in_scanned - start : 0;
    }
    /* Past in_scanned there may be a complete line (the loop stopped at the
     * in-flight limit); up to it there is none. No rescan: a line trickling
     * in byte by byte must not cost O(n^2). */
    bool has_nl = c->in_scanned < c->in_len;
    if (c->inflight >= LR_API_INFLIGHT_MAX && (has_nl || c->in_len > 0)) {
        /* Wait for a reply to free a slot (conn_slot_freed schedules us). */
    } else if (!has_nl && c->in_len > LR_API_LINE_MAX) {
        lr_warn(MOD, "request line over %zu bytes fd=%d: closing", LR_API_LINE_MAX, c->fd);
        s->st.clients_kicked++;
        char msg[96];
        snprintf(msg, sizeof(msg), "request line is over the limit of %zu bytes", LR_API_LINE_MAX);
        conn_send_error(c, false, 0, LR_API_E_TOO_LARGE, 1, msg);
        conn_close(c, "line too large");
        return;
    } else if (!has_nl && c->eof && c->in_len > 0) {
        /* A last line without '\n' before EOF still counts. */
        size_t ll = c->in_len;
        c->in_len = 0;
        c->in_scanned = 0;
        c->dispatching = true;
        handle_line(c, c->in, ll);
        c->dispatching = false;
        if (c->closing)
            return;
    }
    if (c->in_cap > IN_STEP && c->in_len <= IN_STEP) {
        c->in = lr_xrealloc(c->in, IN_STEP);
        c->in_cap = IN_STEP;
    }
    conn_after_output(c);
}

static void conn_read(struct conn *c)
{
    struct lr_api_server *s = c->srv;
    for (int i = 0; i < READS_PER_WAKE && !c->closing && !c->eof; i++) {
        if (c->in_cap - c->in_len < IN_STEP && c->in_cap < IN_CAP_MAX) {
            size_t ncap = c->in_cap ? c->in_cap * 2 : IN_STEP;
            if (ncap < c->in_len + IN_STEP)
                ncap = c->in_len + IN_STEP;
            if (ncap > IN_CAP_MAX)
                ncap = IN_CAP_MAX;
            c->in = lr_xrealloc(c->in, ncap);
            c->in_cap = ncap;
            peak(&s->st.in_buf_peak, ncap);
        }
        size_t room = c->in_cap - c->in_len;
        if (room == 0)
            break;
        ssize_t n = recv(c->fd, c->in + c->in_len, room, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            lr_debug(MOD, "read from client failed fd=%d: %s", c->fd, strerror(errno));
            conn_close(c, "read failed");
            return;
        }
        if (n == 0) {
            c->eof = true;
            if (c->nstreams > 0) {
                /* A stream lives as long as the client's sending side. */
                conn_close(c, "stream client gone");
                return;
            }
            if (waits_for_client(c) && peer_hung_up(c->fd)) {
                /* Not a half-close awaiting its replies: the client is gone,
                 * and a request that cares (lr_api_req_on_gone) hears it now. */
                conn_close(c, "client gone");
                return;
            }
        } else {
            c->in_len += (size_t)n;
        }
        conn_dispatch(c);
        if (c->inflight >= LR_API_INFLIGHT_MAX)
            break;
    }
    if (!c->closing)
        conn_update_poll(c);
}

static void conn_on_io(uv_poll_t *p, int status, int events)
{
    struct conn *c = p->data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c, "poll error");
        return;
    }
    if (events & UV_WRITABLE) {
        int rc = conn_flush(c);
        if (rc < 0) {
            conn_close(c, "write failed");
            return;
        }
        conn_after_output(c);
        if (c->closing)
            return;
    }
    if (events & UV_READABLE)
        conn_read(c);
}

static void req_finish(struct lr_api_req *r)
{
    struct conn *c = r->conn;
    if (c) {
        LIST_REMOVE(r, link);
        c->inflight--;
        c->srv->st.inflight--;
        free(r);
        conn_slot_freed(c);
        return;
    }
    free(r);
}

void lr_api_reply(struct lr_api_req *req, json_t *result)
{
    if (!result) {
        lr_api_reply_error(req, LR_API_E_INTERNAL, 1,
                           "internal error: the daemon built no result for request %lld", req->id);
        return;
    }
    assert(!req->streaming);
    struct conn *c = req->conn;
    if (c && !c->closing) {
        size_t len;
        char *line = lr__api_encode_result(true, req->id, result, &len);
        if (line)
            conn_send_reply(c, line, len);
        else
            conn_send_error(c, true, req->id, LR_API_E_INTERNAL, 1,
                            "internal error: the daemon's result is not a JSON object");
    }
    json_decref(result);
    req_finish(req);
}

void lr_api_reply_error(struct lr_api_req *req, const char *code, int exit_code, const char *fmt,
                        ...)
{
    assert(!req->streaming);
    struct conn *c = req->conn;
    if (c && !c->closing) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        conn_send_error(c, true, req->id, code, exit_code, msg);
    }
    req_finish(req);
}

int lr_api_exit_for_rc(int rc)
{
    switch (rc) {
    case LR_EUSAGE:
    case LR_EBADID:
    case LR_EPATTERN:
        return 2;
    case LR_ETIMEOUT:
        return 3;
    case LR_ENODAEMON:
        return 4;
    default:
        return rc >= 0 ? 0 : 1;
    }
}

void lr_api_reply_rc(struct lr_api_req *req, int rc, const struct lr_err *err)
{
    const char *name = lr_errname(rc);
    if (strncmp(name, "LR_E", 4) == 0)
        name += 4;
    char code[48];
    size_t i = 0;
    for (; name[i] && i + 1 < sizeof(code); i++)
        code[i] = (char)tolower((unsigned char)name[i]);
    code[i] = '\0';
    lr_api_reply_error(req, code, lr_api_exit_for_rc(rc), "%s", lr_err_msg(err, rc));
}

int lr_api_req_stream(struct lr_api_req *req)
{
    struct conn *c = req->conn;
    if (!c || c->closing)
        return LR_ECANCELED;
    if (c->nstreams >= LR_API_STREAMS_MAX)
        return LR_EBUSY;
    struct lr_api_server *s = c->srv;
    LIST_REMOVE(req, link);
    c->inflight--;
    s->st.inflight--;
    LIST_INSERT_HEAD(&c->streams, req, link);
    c->nstreams++;
    s->st.streams++;
    req->streaming = true;
    json_t *ack = json_pack("{s:b}", "stream", 1);
    size_t len;
    char *line = lr__api_encode_result(true, req->id, ack, &len);
    json_decref(ack);
    conn_send_reply(c, line, len);
    if (!c->closing)
        conn_slot_freed(c);
    return 0;
}

void lr_api_req_on_gone(struct lr_api_req *req, void (*cb)(struct lr_api_req *req, void *ud),
                        void *ud)
{
    req->gone = cb;
    req->gone_ud = ud;
}

long long lr_api_req_id(const struct lr_api_req *req)
{
    return req->id;
}

void lr_api_server_broadcast(struct lr_api_server *s, json_t *event)
{
    if (s->closing || s->st.streams == 0)
        return;
    if (!json_is_object(event)) {
        lr_warn(MOD, "broadcast of a non-object event ignored");
        return;
    }
    char *ej = json_dumps(event, JSON_COMPACT);
    if (!ej)
        return;
    size_t el = strlen(ej);
    struct conn *c;
    TAILQ_FOREACH(c, &s->conns, link)
    {
        struct lr_api_req *r, *next;
        for (r = LIST_FIRST(&c->streams); r && !c->closing; r = next) {
            next = LIST_NEXT(r, link);
            size_t len;
            char *line = lr__api_encode_event(r->id, ej, el, &len);
            conn_send_event(c, r, line, len); /* may close c, freeing r and next */
        }
    }
    free(ej);
}

void lr_api_server_stats(const struct lr_api_server *s, struct lr_api_server_stats *st)
{
    *st = s->st;
}

/* ---- listener ---- */

static bool peer_allowed(int fd)
{
    struct ucred cr;
    socklen_t cl = sizeof(cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0)
        return false;
    return cr.uid == geteuid() || cr.uid == 0;
}

static void listen_cb(uv_poll_t *p, int status, int events);

static void accept_retry_cb(uv_timer_t *t)
{
    struct lr_api_server *s = t->data;
    if (!s->closing)
        uv_poll_start(&s->lpoll, UV_READABLE, listen_cb);
}

static void conn_new(struct lr_api_server *s, int fd)
{
    struct conn *c = lr_xcalloc(1, sizeof(*c));
    c->srv = s;
    c->fd = fd;
    LIST_INIT(&c->reqs);
    LIST_INIT(&c->streams);
    TAILQ_INIT(&c->out);
    int rc = uv_poll_init(s->loop, &c->poll, fd);
    if (rc < 0) {
        lr_warn(MOD, "cannot watch client fd=%d: %s", fd, uv_strerror(rc));
        close(fd);
        free(c);
        return;
    }
    c->poll.data = c;
    TAILQ_INSERT_TAIL(&s->conns, c, link);
    s->nconns++;
    s->st.clients = s->nconns;
    s->st.accepted++;
    lr_debug(MOD, "client connected fd=%d", fd);
    conn_update_poll(c);
}

static void listen_cb(uv_poll_t *p, int status, int events)
{
    (void)events;
    struct lr_api_server *s = p->data;
    if (s->closing)
        return;
    if (status < 0) {
        lr_warn(MOD, "control socket poll error: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* Out of descriptors: a level-triggered poll would spin; pause. */
            lr_warn(MOD, "accept on the control socket failed: %s; retrying in %d ms",
                    strerror(errno), ACCEPT_RETRY_MS);
            uv_poll_stop(&s->lpoll);
            uv_timer_start(&s->accept_retry, accept_retry_cb, ACCEPT_RETRY_MS, 0);
            return;
        }
        if (!peer_allowed(fd)) {
            lr_warn(MOD, "control connection from another user refused");
            close(fd);
            continue;
        }
        if (s->nconns >= LR_API_CLIENTS_MAX) {
            lr_warn(MOD, "too many control connections (%d): refusing one", LR_API_CLIENTS_MAX);
            s->st.clients_kicked++;
            close(fd);
            continue;
        }
        conn_new(s, fd);
    }
}

static void server_handle_closed(uv_handle_t *h)
{
    struct lr_api_server *s = h->data;
    s->handles_open--;
    server_maybe_done(s);
}

/* Replace HOME/control.sock if it is a socket nobody answers on. */
static int clear_stale(struct lr__api_addr *a, const char *home, struct lr_err *err)
{
    struct stat st;
    if (fstatat(a->dirfd, LR_API_SOCK_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return 0;
        int e = errno;
        return lr_err_set(err, -e, "cannot stat %s/%s: %s", home, LR_API_SOCK_NAME, strerror(e));
    }
    if (!S_ISSOCK(st.st_mode))
        return lr_err_set(err, LR_EEXISTS, "%s/%s exists and is not a socket", home,
                          LR_API_SOCK_NAME);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        return lr_err_set(err, -e, "socket: %s", strerror(e));
    }
    int rc = connect(fd, (struct sockaddr *)&a->sa, a->len);
    int e = errno;
    close(fd);
    if (rc == 0 || e == EAGAIN)
        return lr_err_set(err, LR_EBUSY, "another daemon is listening on %s/%s", home,
                          LR_API_SOCK_NAME);
    if (e != ECONNREFUSED)
        return lr_err_set(err, -e, "cannot probe %s/%s: %s", home, LR_API_SOCK_NAME, strerror(e));
    if (unlinkat(a->dirfd, LR_API_SOCK_NAME, 0) < 0 && errno != ENOENT) {
        e = errno;
        return lr_err_set(err, -e, "cannot remove stale %s/%s: %s", home, LR_API_SOCK_NAME,
                          strerror(e));
    }
    lr_info(MOD, "removed stale control socket %s/%s", home, LR_API_SOCK_NAME);
    return 0;
}

int lr_api_server_start(uv_loop_t *loop, const char *home_dir, lr_api_handler h, void *ud,
                        struct lr_api_server **out, struct lr_err *err)
{
    *out = NULL;
    struct lr__api_addr a;
    int rc = lr__api_addr_init(&a, home_dir, err);
    if (rc < 0)
        return rc;
    int lfd = -1;
    bool bound = false;
    struct stat st;
    if (fstat(a.dirfd, &st) == 0 && (st.st_mode & 077))
        lr_warn(MOD, "home %s is accessible to other users (mode %03o)", home_dir,
                (unsigned)(st.st_mode & 0777));
    rc = clear_stale(&a, home_dir, err);
    if (rc < 0)
        goto fail;
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        int e = errno;
        rc = lr_err_set(err, -e, "socket: %s", strerror(e));
        goto fail;
    }
    if (bind(lfd, (struct sockaddr *)&a.sa, a.len) < 0) {
        int e = errno;
        rc = lr_err_set(err, -e, "cannot bind %s/%s: %s", home_dir, LR_API_SOCK_NAME, strerror(e));
        goto fail;
    }
    bound = true;
    /* Connecting needs write permission on the socket: owner only. (The
     * moment before this chmod is covered by the home's 0700 and the
     * SO_PEERCRED check at accept.) */
    if (fchmodat(a.dirfd, LR_API_SOCK_NAME, 0600, 0) < 0 ||
        fstatat(a.dirfd, LR_API_SOCK_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        int e = errno;
        rc = lr_err_set(err, -e, "cannot chmod %s/%s: %s", home_dir, LR_API_SOCK_NAME, strerror(e));
        goto fail;
    }
    if (listen(lfd, 64) < 0) {
        int e = errno;
        rc = lr_err_set(err, -e, "cannot listen on %s/%s: %s", home_dir, LR_API_SOCK_NAME,
                        strerror(e));
        goto fail;
    }
    struct lr_api_server *s = lr_xcalloc(1, sizeof(*s));
    rc = uv_poll_init(loop, &s->lpoll, lfd);
    if (rc < 0) {
        free(s);
        rc = lr_err_set(err, rc, "cannot watch %s/%s: %s", home_dir, LR_API_SOCK_NAME,
                        uv_strerror(rc));
        goto fail;
    }
    s->loop = loop;
    s->handler = h;
    s->ud = ud;
    s->home = lr_xstrdup(home_dir);
    s->addr = a;
    s->sock_dev = st.st_dev;
    s->sock_ino = st.st_ino;
    s->lfd = lfd;
    TAILQ_INIT(&s->conns);
    s->lpoll.data = s;
    uv_timer_init(loop, &s->kick);
    s->kick.data = s;
    uv_timer_init(loop, &s->accept_retry);
    s->accept_retry.data = s;
    s->handles_open = 3;
    uv_poll_start(&s->lpoll, UV_READABLE, listen_cb);
    lr_info(MOD, "control socket listening path=%s/%s", home_dir, LR_API_SOCK_NAME);
    *out = s;
    return 0;
fail:
    if (bound)
        unlinkat(a.dirfd, LR_API_SOCK_NAME, 0);
    if (lfd >= 0)
        close(lfd);
    lr__api_addr_release(&a);
    return rc;
}

void lr_api_server_close(struct lr_api_server *s, void (*done)(void *), void *ud)
{
    if (!s)
        return;
    assert(!s->closing);
    s->closing = true;
    s->done = done;
    s->done_ud = ud;
    /* Remove the socket file only if it is still ours. */
    struct stat st;
    if (fstatat(s->addr.dirfd, LR_API_SOCK_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        st.st_dev == s->sock_dev && st.st_ino == s->sock_ino)
        unlinkat(s->addr.dirfd, LR_API_SOCK_NAME, 0);
    uv_close((uv_handle_t *)&s->lpoll, server_handle_closed);
    uv_close((uv_handle_t *)&s->kick, server_handle_closed);
    uv_close((uv_handle_t *)&s->accept_retry, server_handle_closed);
    struct conn *c;
    TAILQ_FOREACH(c, &s->conns, link)
    {
        conn_close(c, "server closing");
    }
}
