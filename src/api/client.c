/*
 * client.c - blocking control API client for the CLI (no libuv).
 *
 * The socket is non-blocking underneath so that every wait goes through
 * poll() with the call's deadline; sends use MSG_NOSIGNAL so a daemon that
 * dies mid-call gives an error, not SIGPIPE.
 */
#include "api/api_int.h"
#include "util/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RD_STEP ((size_t)64 << 10)

struct lr_api_client {
    int fd;
    long long next_id;
    char *buf; /* unread bytes are buf[off..len) */
    size_t off, len, cap;
    size_t scanned; /* bytes after off known to hold no '\n' */
    char ecode[64];
    int eexit;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for `ev` on the socket until `deadline` (-1: none). 0, LR_ETIMEOUT or -errno. */
static int wait_fd(struct lr_api_client *c, short ev, int64_t deadline, struct lr_err *err)
{
    for (;;) {
        int tmo = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return lr_err_set(err, LR_ETIMEOUT, "no reply from the daemon in time");
            tmo = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        struct pollfd p = {.fd = c->fd, .events = ev};
        int n = poll(&p, 1, tmo);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            return lr_err_set(err, -e, "poll on the control socket: %s", strerror(e));
        }
        if (n > 0)
            return 0; /* ready, or HUP/ERR, which the next recv/send reports */
    }
}

static int closed_err(struct lr_err *err)
{
    return lr_err_set(err, -ECONNRESET, "the daemon closed the control connection");
}

static int send_all(struct lr_api_client *c, const char *p, size_t n, int64_t deadline,
                    struct lr_err *err)
{
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int rc = wait_fd(c, POLLOUT, deadline, err);
                if (rc < 0)
                    return rc;
                continue;
            }
            if (errno == EPIPE || errno == ECONNRESET)
                return closed_err(err);
            int e = errno;
            return lr_err_set(err, -e, "send on the control socket: %s", strerror(e));
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Next line (without '\n'), valid until the next read_line(). 0, or
 * LR_ETIMEOUT, LR_ETOOBIG, -ECONNRESET, -errno.
 */
static int read_line(struct lr_api_client *c, int64_t deadline, char **line, size_t *ll,
                     struct lr_err *err)
{
    for (;;) {
        size_t avail = c->len - c->off;
        char *nl = avail > c->scanned
                       ? memchr(c->buf + c->off + c->scanned, '\n', avail - c->scanned)
                       : NULL;
        if (nl) {
            *line = c->buf + c->off;
            *ll = (size_t)(nl - *line);
            c->off += *ll + 1;
            c->scanned = 0;
            return 0;
        }
        c->scanned = avail;
        if (avail > LR_API_CLIENT_LINE_MAX)
            return lr_err_set(err, LR_ETOOBIG, "reply from the daemon is over %zu bytes",
                              LR_API_CLIENT_LINE_MAX);
        if (c->off > 0) {
            memmove(c->buf, c->buf + c->off, avail);
            c->len = avail;
            c->off = 0;
        }
        if (c->cap - c->len < RD_STEP) {
            size_t ncap = c->cap ? c->cap * 2 : RD_STEP;
            if (ncap < c->len + RD_STEP)
                ncap = c->len + RD_STEP;
            c->buf = lr_xrealloc(c->buf, ncap);
            c->cap = ncap;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n == 0)
            return closed_err(err);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int rc = wait_fd(c, POLLIN, deadline, err);
            if (rc < 0)
                return rc;
            continue;
        }
        if (errno == ECONNRESET)
            return closed_err(err);
        int e = errno;
        return lr_err_set(err, -e, "recv on the control socket: %s", strerror(e));
    }
}

int lr_api_client_connect(const char *home_dir, struct lr_api_client **out, struct lr_err *err)
{
    *out = NULL;
    struct lr__api_addr a;
    int rc = lr__api_addr_init(&a, home_dir, err);
    if (rc == -ENOENT || rc == -ENOTDIR)
        return lr_err_set(err, LR_ENODAEMON, "no daemon running for %s (no such home)", home_dir);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        rc = lr_err_set(err, -e, "socket: %s", strerror(e));
        goto out;
    }
    for (;;) {
        if (connect(fd, (struct sockaddr *)&a.sa, a.len) == 0)
            break;
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == ENOENT || e == ECONNREFUSED)
            rc = lr_err_set(err, LR_ENODAEMON, "no daemon running for %s (%s/%s: %s)", home_dir,
                            home_dir, LR_API_SOCK_NAME, strerror(e));
        else
            rc = lr_err_set(err, -e, "cannot connect to %s/%s: %s", home_dir, LR_API_SOCK_NAME,
                            strerror(e));
        close(fd);
        goto out;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        rc = lr_err_set(err, -e, "fcntl on the control socket: %s", strerror(e));
        goto out;
    }
    struct lr_api_client *c = lr_xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->next_id = 1;
    c->eexit = 1;
    *out = c;
    rc = 0;
out:
    lr__api_addr_release(&a);
    return rc;
}

void lr_api_client_close(struct lr_api_client *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c->buf);
    free(c);
}

const char *lr_api_client_error_code(const struct lr_api_client *c)
{
    return c->ecode;
}

int lr_api_client_error_exit(const struct lr_api_client *c)
{
    return c->eexit;
}

static int send_request(struct lr_api_client *c, const char *method, json_t *params,
                        int64_t deadline, long long *id, struct lr_err *err)
{
    c->ecode[0] = '\0';
    c->eexit = 1;
    if (!params)
        params = json_object();
    if (!method) {
        json_decref(params);
        return lr_err_set(err, LR_EUSAGE, "control API call without a method");
    }
    *id = c->next_id++;
    size_t len;
    char *line = lr__api_encode_request(*id, method, params, &len);
    json_decref(params);
    if (!line)
        return lr_err_set(err, LR_EUSAGE, "request %s: params are not a JSON object", method);
    if (len - 1 > LR_API_LINE_MAX) {
        free(line);
        return lr_err_set(err, LR_ETOOBIG, "request %s is %zu bytes, over the limit of %zu", method,
                          len - 1, LR_API_LINE_MAX);
    }
    int rc = send_all(c, line, len, deadline, err);
    free(line);
    return rc;
}

static int bad_line(struct lr_err *err, int rc, const char *what)
{
    char why[LR_ERR_MSG_MAX];
    snprintf(why, sizeof(why), "%s", lr_err_msg(err, rc));
    return lr_err_set(err, LR_EPROTO, "bad %s from the daemon: %s", what, why);
}

/*
 * Read until the reply (result or error) for `id`, skipping late replies to
 * earlier calls and events. On success *out holds the decoded reply.
 */
static int wait_reply(struct lr_api_client *c, long long id, int64_t deadline,
                      struct lr_api_reply *out, struct lr_err *err)
{
    for (;;) {
        char *line = NULL; /* set on success; gcc -O3 cannot see that */
        size_t ll = 0;
        int rc = read_line(c, deadline, &line, &ll, err);
        if (rc < 0)
            return rc;
        rc = lr_api_reply_decode(line, ll, out, err);
        if (rc < 0)
            return bad_line(err, rc, "reply");
        /* A null id answers a line the daemon could not decode: only ours is outstanding. */
        bool ours = out->has_id ? out->id == id : out->kind == LR_API_ERROR;
        if (ours && out->kind != LR_API_EVENT)
            return 0;
        lr_api_reply_release(out);
    }
}

static int take_error(struct lr_api_client *c, struct lr_api_reply *r, struct lr_err *err)
{
    size_t n = strlen(r->code);
    if (n >= sizeof(c->ecode))
        n = sizeof(c->ecode) - 1;
    memcpy(c->ecode, r->code, n);
    c->ecode[n] = '\0';
    c->eexit = r->exit_code;
    int rc = lr_err_set(err, LR_EAPI, "%s", r->message);
    lr_api_reply_release(r);
    return rc;
}

static int await_reply(struct lr_api_client *c, long long id, int64_t deadline, json_t **result,
                       struct lr_err *err)
{
    if (result)
        *result = NULL;
    struct lr_api_reply r;
    int rc = wait_reply(c, id, deadline, &r, err);
    if (rc < 0)
        return rc;
    if (r.kind == LR_API_ERROR)
        return take_error(c, &r, err);
    if (result)
        *result = json_incref(r.body);
    lr_api_reply_release(&r);
    return 0;
}

int lr_api_send(struct lr_api_client *c, const char *method, json_t *params, long long *id,
                struct lr_err *err)
{
    /* A line this small goes out at once unless the daemon stopped reading. */
    return send_request(c, method, params, now_ms() + 10000, id, err);
}

int lr_api_await(struct lr_api_client *c, long long id, int timeout_ms, json_t **result,
                 struct lr_err *err)
{
    return await_reply(c, id, timeout_ms > 0 ? now_ms() + timeout_ms : -1, result, err);
}

int lr_api_call(struct lr_api_client *c, const char *method, json_t *params, int timeout_ms,
                json_t **result, struct lr_err *err)
{
    if (result)
        *result = NULL;
    int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : -1;
    long long id;
    int rc = send_request(c, method, params, deadline, &id, err);
    if (rc < 0)
        return rc;
    return await_reply(c, id, deadline, result, err);
}

int lr_api_stream(struct lr_api_client *c, const char *method, json_t *params,
                  int (*on_event)(void *ud, json_t *ev), void *ud, struct lr_err *err)
{
    long long id;
    int rc = send_request(c, method, params, -1, &id, err);
    if (rc < 0)
        return rc;
    struct lr_api_reply r;
    rc = wait_reply(c, id, -1, &r, err);
    if (rc < 0)
        return rc;
    if (r.kind == LR_API_ERROR)
        return take_error(c, &r, err);
    lr_api_reply_release(&r); /* the {"stream": true} acknowledgement */
    for (;;) {
        char *line;
        size_t ll;
        rc = read_line(c, -1, &line, &ll, err);
        if (rc < 0)
            return rc;
        rc = lr_api_reply_decode(line, ll, &r, err);
        if (rc < 0)
            return bad_line(err, rc, "event");
        if (r.kind != LR_API_EVENT || r.id != id) {
            lr_api_reply_release(&r);
            continue;
        }
        int v = on_event(ud, r.body);
        lr_api_reply_release(&r);
        if (v > 0)
            return 0;
        if (v < 0)
            return v;
    }
}
