/*
 * test_api.c - control API: codec, and the real server on a libuv loop in a
 * second thread driven by the real client (or a raw socket for hostile
 * input). SIGPIPE is left at its default on purpose: a write without
 * MSG_NOSIGNAL to a closed socket would kill the test.
 */
#include "api/api.h"
#include "api/api_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* ================= harness: server loop in a thread ================= */

struct harness;
typedef void (*loop_fn)(struct harness *h, void *arg);

struct harness {
    uv_loop_t loop;
    uv_async_t async;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    loop_fn fn;
    void *arg;
    bool fn_done;

    char home[4096];
    struct lr_api_server *srv;
    int closed_done; /* lr_api_server_close's done callback ran */

    /* loop-thread state */
    struct lr_api_req *held[256];
    int nheld;
    uv_timer_t bc_timer;
    int bc_total, bc_sent, bc_pad, bc_window;
    atomic_int fast_seen;
};

static void async_cb(uv_async_t *a)
{
    struct harness *h = a->data;
    pthread_mutex_lock(&h->mu);
    loop_fn fn = h->fn;
    void *arg = h->arg;
    pthread_mutex_unlock(&h->mu);
    if (fn)
        fn(h, arg);
    pthread_mutex_lock(&h->mu);
    if (fn) {
        h->fn = NULL;
        h->fn_done = true;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
}

/* Run fn(h, arg) on the loop thread and wait for it. */
static void on_loop(struct harness *h, loop_fn fn, void *arg)
{
    pthread_mutex_lock(&h->mu);
    h->fn = fn;
    h->arg = arg;
    h->fn_done = false;
    pthread_mutex_unlock(&h->mu);
    uv_async_send(&h->async);
    pthread_mutex_lock(&h->mu);
    while (!h->fn_done)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

struct later {
    uv_timer_t t;
    struct lr_api_req *req;
    long long ms;
};

static void later_closed(uv_handle_t *hd)
{
    free(hd->data);
}

static void later_fire(uv_timer_t *t)
{
    struct later *l = t->data;
    lr_api_reply(l->req, json_pack("{s:I}", "ms", (json_int_t)l->ms));
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void server_closed(void *ud)
{
    struct harness *h = ud;
    h->closed_done++;
}

static void handler(void *ud, struct lr_api_req *req, const char *method, json_t *params)
{
    struct harness *h = ud;
    if (strcmp(method, "echo") == 0) {
        lr_api_reply(req, json_incref(params));
    } else if (strcmp(method, "fail") == 0) {
        const char *why = json_string_value(json_object_get(params, "why"));
        lr_api_reply_error(req, "nope", 3, "failing on purpose: %s", why ? why : "-");
    } else if (strcmp(method, "later") == 0) {
        struct later *l = calloc(1, sizeof(*l));
        l->req = req;
        l->ms = json_integer_value(json_object_get(params, "ms"));
        uv_timer_init(&h->loop, &l->t);
        l->t.data = l;
        uv_timer_start(&l->t, later_fire, (uint64_t)l->ms, 0);
    } else if (strcmp(method, "hold") == 0) {
        h->held[h->nheld++] = req;
    } else if (strcmp(method, "big") == 0) {
        size_t n = (size_t)json_integer_value(json_object_get(params, "n"));
        char *s = malloc(n + 1);
        memset(s, 'x', n);
        s[n] = '\0';
        lr_api_reply(req, json_pack("{s:s}", "s", s));
        free(s);
    } else if (strcmp(method, "events") == 0) {
        int rc = lr_api_req_stream(req);
        if (rc < 0)
            lr_api_reply_rc(req, rc, NULL);
    } else if (strcmp(method, "rc") == 0) {
        struct lr_err e;
        lr_err_set(&e, LR_ENOTFOUND, "no folder named %s", "photos");
        lr_api_reply_rc(req, LR_ENOTFOUND, &e);
    } else if (strcmp(method, "null") == 0) {
        lr_api_reply(req, NULL);
    } else if (strcmp(method, "notobj") == 0) {
        lr_api_reply(req, json_integer(5));
    } else if (strcmp(method, "badutf8") == 0) {
        lr_api_reply_error(req, "bad_path", 1, "cannot read %s", "caf\xe9\nline2");
    } else if (strcmp(method, "stop_server") == 0) {
        lr_api_reply(req, json_pack("{s:b}", "stopping", 1));
        lr_api_server_close(h->srv, server_closed, h);
        h->srv = NULL;
    } else {
        lr_api_reply_error(req, LR_API_E_UNKNOWN_METHOD, 1, "unknown method %s", method);
    }
}

static void *loop_main(void *arg)
{
    struct harness *h = arg;
    uv_run(&h->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void make_home(char *out, size_t n)
{
    snprintf(out, n, "/tmp/lr-api-XXXXXX");
    assert_non_null(mkdtemp(out));
    assert_int_equal(chmod(out, 0700), 0);
}

static void rm_home(const char *home)
{
    char p[4200];
    snprintf(p, sizeof(p), "%s/%s", home, LR_API_SOCK_NAME);
    unlink(p);
    assert_int_equal(rmdir(home), 0);
}

/* Start a server for `home` (or a fresh temp home when NULL). */
static struct harness *h_start(const char *home)
{
    struct harness *h = calloc(1, sizeof(*h));
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    if (home)
        snprintf(h->home, sizeof(h->home), "%s", home);
    else
        make_home(h->home, sizeof(h->home));
    assert_int_equal(uv_loop_init(&h->loop), 0);
    uv_async_init(&h->loop, &h->async, async_cb);
    h->async.data = h;
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_api_server_start(&h->loop, h->home, handler, h, &h->srv, &err);
    if (rc != 0)
        fail_msg("server start: %s", err.msg);
    assert_int_equal(pthread_create(&h->th, NULL, loop_main, h), 0);
    return h;
}

static void do_close(struct harness *h, void *arg)
{
    (void)arg;
    if (h->srv)
        lr_api_server_close(h->srv, server_closed, h);
    h->srv = NULL;
    /* Replies after the close must be harmless. */
    for (int i = 0; i < h->nheld; i++)
        lr_api_reply(h->held[i], json_object());
    h->nheld = 0;
    if (uv_is_active((uv_handle_t *)&h->bc_timer) || h->bc_total)
        uv_close((uv_handle_t *)&h->bc_timer, NULL);
    uv_close((uv_handle_t *)&h->async, NULL);
}

static void h_stop(struct harness *h, bool remove_home)
{
    on_loop(h, do_close, NULL);
    pthread_join(h->th, NULL);
    assert_int_equal(h->closed_done, 1);
    /* Every handle the server opened is closed: */
    assert_int_equal(uv_loop_close(&h->loop), 0);
    char p[4200];
    snprintf(p, sizeof(p), "%s/%s", h->home, LR_API_SOCK_NAME);
    assert_int_equal(access(p, F_OK), -1); /* socket file removed */
    if (remove_home)
        rm_home(h->home);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

static void get_stats_fn(struct harness *h, void *arg)
{
    if (h->srv)
        lr_api_server_stats(h->srv, arg);
}

static struct lr_api_server_stats stats(struct harness *h)
{
    struct lr_api_server_stats st;
    memset(&st, 0, sizeof(st));
    on_loop(h, get_stats_fn, &st);
    return st;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#define WAIT_FOR(h, cond)                                                                          \
    do {                                                                                           \
        int waited_ = 0;                                                                           \
        for (;;) {                                                                                 \
            struct lr_api_server_stats st = stats(h);                                              \
            if (cond)                                                                              \
                break;                                                                             \
            if (waited_ > 10000)                                                                   \
                fail_msg("timed out waiting for %s", #cond);                                       \
            sleep_ms(5);                                                                           \
            waited_ += 5;                                                                          \
        }                                                                                          \
    } while (0)

static struct lr_api_client *connect_ok(const char *home)
{
    struct lr_api_client *c = NULL;
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_api_client_connect(home, &c, &err);
    if (rc != 0)
        fail_msg("connect: %s", err.msg);
    return c;
}

/* ================= raw socket client ================= */

struct raw {
    int fd;
    char *buf;
    size_t off, len, cap;
};

static struct raw *raw_connect(const char *home)
{
    struct raw *r = calloc(1, sizeof(*r));
    r->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", home, LR_API_SOCK_NAME);
    assert_int_equal(connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    r->cap = 1 << 16;
    r->buf = malloc(r->cap);
    return r;
}

static void raw_close(struct raw *r)
{
    close(r->fd);
    free(r->buf);
    free(r);
}

static void raw_send(struct raw *r, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(r->fd, s, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

static void raw_sends(struct raw *r, const char *s)
{
    raw_send(r, s, strlen(s));
}

/* Next line (malloc'd, no '\n'), or NULL at EOF/reset (*eof set) or timeout. */
static char *raw_line(struct raw *r, int timeout_ms, bool *eof)
{
    if (eof)
        *eof = false;
    for (;;) {
        char *nl = memchr(r->buf + r->off, '\n', r->len - r->off);
        if (nl) {
            size_t n = (size_t)(nl - (r->buf + r->off));
            char *s = malloc(n + 1);
            memcpy(s, r->buf + r->off, n);
            s[n] = '\0';
            r->off += n + 1;
            return s;
        }
        if (r->off > 0) {
            memmove(r->buf, r->buf + r->off, r->len - r->off);
            r->len -= r->off;
            r->off = 0;
        }
        if (r->cap - r->len < 4096) {
            r->cap *= 2;
            r->buf = realloc(r->buf, r->cap);
        }
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) == 0)
            return NULL;
        ssize_t n = recv(r->fd, r->buf + r->len, r->cap - r->len, 0);
        if (n <= 0) {
            if (eof)
                *eof = true;
            return NULL;
        }
        r->len += (size_t)n;
    }
}

/* Read one line and decode it as a server line. */
static void raw_reply(struct raw *r, struct lr_api_reply *out)
{
    char *l = raw_line(r, 10000, NULL);
    assert_non_null(l);
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_api_reply_decode(l, strlen(l), out, &err);
    if (rc != 0)
        fail_msg("bad server line %.200s: %s", l, err.msg);
    free(l);
}

static void assert_raw_eof(struct raw *r)
{
    bool eof;
    char *l = raw_line(r, 10000, &eof);
    if (l)
        fail_msg("expected EOF, got %.200s", l);
    assert_true(eof);
}

/* ================= codec ================= */

struct req_case {
    const char *line;
    int rc;
    const char *code;
    bool has_id;
    long long id;
    const char *method;
};

static void test_codec_request(void **state)
{
    (void)state;
    const struct req_case cases[] = {
        {"{\"id\":1,\"method\":\"status\"}", 0, NULL, true, 1, "status"},
        {"  {\"method\":\"a.b-c_9\",\"id\":-3,\"params\":{\"x\":1}}  ", 0, NULL, true, -3,
         "a.b-c_9"},
        {"{\"id\":9223372036854775807,\"method\":\"x\",\"params\":null}", 0, NULL, true,
         9223372036854775807LL, "x"},
        {"{\"id\":1,\"method\":\"x\",\"extra\":[1]}", 0, NULL, true, 1, "x"},
        {"garbage", LR_EPROTO, LR_API_E_PARSE, false, 0, NULL},
        {"", LR_EPROTO, LR_API_E_PARSE, false, 0, NULL},
        {"42", LR_EPROTO, LR_API_E_PARSE, false, 0, NULL},
        {"[1,2]", LR_EPROTO, LR_API_E_BAD_REQUEST, false, 0, NULL},
        {"{\"id\":\"1\",\"method\":\"x\"}", LR_EPROTO, LR_API_E_BAD_REQUEST, false, 0, NULL},
        {"{\"id\":1.5,\"method\":\"x\"}", LR_EPROTO, LR_API_E_BAD_REQUEST, false, 0, NULL},
        {"{\"method\":\"x\"}", LR_EPROTO, LR_API_E_BAD_REQUEST, false, 0, NULL},
        {"{\"id\":2}", LR_EPROTO, LR_API_E_BAD_REQUEST, true, 2, NULL},
        {"{\"id\":2,\"method\":\"\"}", LR_EPROTO, LR_API_E_BAD_REQUEST, true, 2, NULL},
        {"{\"id\":2,\"method\":\"Status\"}", LR_EPROTO, LR_API_E_BAD_REQUEST, true, 2, NULL},
        {"{\"id\":2,\"method\":\"a b\"}", LR_EPROTO, LR_API_E_BAD_REQUEST, true, 2, NULL},
        {"{\"id\":2,\"method\":7}", LR_EPROTO, LR_API_E_BAD_REQUEST, true, 2, NULL},
        {"{\"id\":2,\"method\":\"x\",\"params\":[]}", LR_EPROTO, LR_API_E_BAD_REQUEST, true, 2,
         NULL},
        {"{\"id\":2,\"method\":\"x\",\"params\":\"p\"}", LR_EPROTO, LR_API_E_BAD_REQUEST, true, 2,
         NULL},
        {"{\"id\":2,\"method\":\"x\",\"id\":3}", LR_EPROTO, LR_API_E_PARSE, false, 0, NULL},
        {"{\"id\":2,\"method\":\"x\"} x", LR_EPROTO, LR_API_E_PARSE, false, 0, NULL},
        {"{\"id\":1,\"method\":\"a\"}{\"id\":2,\"method\":\"b\"}", LR_EPROTO, LR_API_E_PARSE, false,
         0, NULL},
        {"{\"id\":2,\"method\":\"x\\u0000y\"}", LR_EPROTO, LR_API_E_PARSE, false, 0, NULL},
        {"{\"id\":2,\"method\":\"caf\xe9\"}", LR_EPROTO, LR_API_E_PARSE, false, 0, NULL},
        {"{\"id\":2,\"method\":\"x\",\"params\":{\"s\":\"\xc0\xaf\"}}", LR_EPROTO, LR_API_E_PARSE,
         false, 0, NULL},
        {"{\"id\":99999999999999999999,\"method\":\"x\"}", LR_EPROTO, LR_API_E_PARSE, false, 0,
         NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct req_case *k = &cases[i];
        struct lr_api_request r;
        const char *code = "unset";
        struct lr_err err;
        lr_err_clear(&err);
        int rc = lr_api_request_decode(k->line, strlen(k->line), &r, &code, &err);
        if (rc != k->rc)
            fail_msg("case %zu (%s): rc %d want %d (%s)", i, k->line, rc, k->rc, err.msg);
        assert_int_equal(r.has_id, k->has_id);
        assert_true(r.id == k->id);
        if (rc == 0) {
            assert_null(code);
            assert_string_equal(r.method, k->method);
            assert_true(json_is_object(r.params));
            assert_non_null(r.root);
            lr_api_request_release(&r);
        } else {
            assert_string_equal(code, k->code);
            assert_null(r.root);
            assert_true(err.msg[0] != '\0');
            assert_null(memchr(err.msg, '\n', strlen(err.msg)));
        }
    }

    /* A method of exactly the maximum length passes; one more byte does not. */
    char line[256];
    char m[LR_API_METHOD_MAX + 2];
    memset(m, 'm', LR_API_METHOD_MAX);
    m[LR_API_METHOD_MAX] = '\0';
    snprintf(line, sizeof(line), "{\"id\":1,\"method\":\"%s\"}", m);
    struct lr_api_request r;
    const char *code;
    assert_int_equal(lr_api_request_decode(line, strlen(line), &r, &code, NULL), 0);
    lr_api_request_release(&r);
    m[LR_API_METHOD_MAX] = 'm';
    m[LR_API_METHOD_MAX + 1] = '\0';
    snprintf(line, sizeof(line), "{\"id\":1,\"method\":\"%s\"}", m);
    assert_int_equal(lr_api_request_decode(line, strlen(line), &r, &code, NULL), LR_EPROTO);

    /* Deep nesting is refused by the parser's depth limit, not the stack. */
    size_t depth = 100000;
    char *deep = malloc(depth * 2 + 64);
    size_t n = (size_t)snprintf(deep, 64, "{\"id\":1,\"method\":\"x\",\"params\":{\"a\":");
    memset(deep + n, '[', depth);
    memset(deep + n + depth, ']', depth);
    memcpy(deep + n + 2 * depth, "}}", 2);
    assert_int_equal(lr_api_request_decode(deep, n + 2 * depth + 2, &r, &code, NULL), LR_EPROTO);
    assert_string_equal(code, LR_API_E_PARSE);
    free(deep);

    /* Length limit: checked before parsing. */
    char *big = malloc(LR_API_LINE_MAX + 1);
    memset(big, ' ', LR_API_LINE_MAX + 1);
    assert_int_equal(lr_api_request_decode(big, LR_API_LINE_MAX + 1, &r, &code, NULL), LR_ETOOBIG);
    assert_string_equal(code, LR_API_E_TOO_LARGE);
    free(big);
}

static void test_codec_reply(void **state)
{
    (void)state;
    struct lr_api_reply r;
    struct lr_err err;
    size_t len;

    json_t *res = json_pack("{s:s,s:[i,i]}", "name", "caf\xc3\xa9", "v", 1, 2);
    char *line = lr__api_encode_result(true, 77, res, &len);
    assert_non_null(line);
    assert_int_equal(line[len - 1], '\n');
    assert_int_equal(strlen(line), len);
    assert_null(memchr(line, '\n', len - 1));
    assert_int_equal(lr_api_reply_decode(line, len - 1, &r, &err), 0);
    assert_int_equal(r.kind, LR_API_RESULT);
    assert_true(r.has_id && r.id == 77);
    assert_true(json_equal(r.body, res));
    lr_api_reply_release(&r);
    free(line);
    json_t *three = json_integer(3);
    assert_null(lr__api_encode_result(true, 1, three, &len)); /* results are objects */
    json_decref(three);
    json_decref(res);

    /* Errors: message made one line and valid UTF-8; null id round-trips. */
    line = lr__api_encode_error(false, 0, "nope", 3, "bad \xff name\nsecond\tline", &len);
    assert_null(memchr(line, '\n', len - 1));
    assert_int_equal(lr_api_reply_decode(line, len - 1, &r, &err), 0);
    assert_int_equal(r.kind, LR_API_ERROR);
    assert_false(r.has_id);
    assert_string_equal(r.code, "nope");
    assert_int_equal(r.exit_code, 3);
    assert_string_equal(r.message, "bad \xef\xbf\xbd name second line");
    lr_api_reply_release(&r);
    free(line);

    line = lr__api_encode_event(-5, "{\"type\":\"x\"}", 12, &len);
    assert_string_equal(line, "{\"id\":-5,\"event\":{\"type\":\"x\"}}\n");
    assert_int_equal(lr_api_reply_decode(line, len - 1, &r, &err), 0);
    assert_int_equal(r.kind, LR_API_EVENT);
    assert_true(r.id == -5);
    assert_string_equal(json_string_value(json_object_get(r.body, "type")), "x");
    lr_api_reply_release(&r);
    free(line);

    json_t *p = json_pack("{s:i}", "k", 1);
    line = lr__api_encode_request(12, "scan", p, &len);
    struct lr_api_request q;
    const char *code;
    assert_int_equal(lr_api_request_decode(line, len - 1, &q, &code, &err), 0);
    assert_true(q.id == 12);
    assert_string_equal(q.method, "scan");
    assert_true(json_equal(q.params, p));
    lr_api_request_release(&q);
    free(line);
    json_decref(p);

    /* Hostile server lines. */
    const char *bad[] = {
        "",
        "nope",
        "[]",
        "{\"result\":{}}",
        "{\"id\":\"1\",\"result\":{}}",
        "{\"id\":1}",
        "{\"id\":1,\"result\":{},\"error\":{\"code\":\"a\",\"message\":\"b\"}}",
        "{\"id\":1,\"result\":[]}",
        "{\"id\":null,\"result\":{}}",
        "{\"id\":null,\"event\":{}}",
        "{\"id\":1,\"event\":3}",
        "{\"id\":1,\"error\":\"x\"}",
        "{\"id\":1,\"error\":{\"message\":\"b\"}}",
        "{\"id\":1,\"error\":{\"code\":\"a\",\"message\":2}}",
        "{\"id\":1,\"error\":{\"code\":\"a\",\"message\":\"b\",\"exit\":\"2\"}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lr_err_clear(&err);
        int rc = lr_api_reply_decode(bad[i], strlen(bad[i]), &r, &err);
        if (rc != LR_EPROTO)
            fail_msg("bad reply %zu (%s) gave %d", i, bad[i], rc);
        assert_null(r.root);
        assert_false(r.has_id);
    }
    /* Exit status outside 1..255 becomes 1, absent becomes 1. */
    const char *ex[] = {"{\"id\":1,\"error\":{\"code\":\"a\",\"message\":\"b\",\"exit\":0}}",
                        "{\"id\":1,\"error\":{\"code\":\"a\",\"message\":\"b\",\"exit\":-4}}",
                        "{\"id\":1,\"error\":{\"code\":\"a\",\"message\":\"b\",\"exit\":256}}",
                        "{\"id\":1,\"error\":{\"code\":\"a\",\"message\":\"b\"}}"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(lr_api_reply_decode(ex[i], strlen(ex[i]), &r, &err), 0);
        assert_int_equal(r.exit_code, 1);
        lr_api_reply_release(&r);
    }

    char *ol = lr__api_one_line("a\r\nb\x01"
                                "c\x7f"
                                "d\xc3");
    assert_string_equal(ol, "a  b c d\xef\xbf\xbd");
    free(ol);

    assert_int_equal(lr_api_exit_for_rc(0), 0);
    assert_int_equal(lr_api_exit_for_rc(LR_EUSAGE), 2);
    assert_int_equal(lr_api_exit_for_rc(LR_EBADID), 2);
    assert_int_equal(lr_api_exit_for_rc(LR_ETIMEOUT), 3);
    assert_int_equal(lr_api_exit_for_rc(LR_ENODAEMON), 4);
    assert_int_equal(lr_api_exit_for_rc(-ENOENT), 1);
}

static void test_addr(void **state)
{
    (void)state;
    char home[64];
    make_home(home, sizeof(home));
    struct lr__api_addr a;
    assert_int_equal(lr__api_addr_init(&a, home, NULL), 0);
    assert_false(a.via_proc);
    char want[128];
    snprintf(want, sizeof(want), "%s/%s", home, LR_API_SOCK_NAME);
    assert_string_equal(a.sa.sun_path, want);
    lr__api_addr_release(&a);

    /* 107 bytes of path still fit (with the NUL); 108 do not. */
    char p[4096];
    size_t base = strlen(home) + 1 + strlen(LR_API_SOCK_NAME);
    snprintf(p, sizeof(p), "%s/%0*d", home, (int)(107 - base - 1), 0);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(lr__api_addr_init(&a, p, NULL), 0);
    assert_int_equal(strlen(a.sa.sun_path), 107);
    assert_false(a.via_proc);
    lr__api_addr_release(&a);
    rmdir(p);
    snprintf(p, sizeof(p), "%s/%0*d", home, (int)(107 - base), 0);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(lr__api_addr_init(&a, p, NULL), 0);
    assert_true(a.via_proc);
    assert_true(strncmp(a.sa.sun_path, "/proc/self/fd/", 14) == 0);
    lr__api_addr_release(&a);
    rmdir(p);

    struct lr_err err;
    snprintf(p, sizeof(p), "%s/missing", home);
    assert_int_equal(lr__api_addr_init(&a, p, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "missing"));
    rm_home(home);
}

/* ================= server + client ================= */

static void test_call_basic(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    struct lr_api_client *c = connect_ok(h->home);
    struct lr_err err;
    json_t *res;

    json_t *p = json_pack("{s:[i,i],s:s,s:{}}", "a", 1, 2, "s", "h\xc3\xa9llo\n", "o");
    json_t *want = json_deep_copy(p);
    assert_int_equal(lr_api_call(c, "echo", p, 5000, &res, &err), 0);
    assert_true(json_equal(res, want));
    json_decref(res);
    json_decref(want);

    /* NULL params arrive as an empty object. */
    assert_int_equal(lr_api_call(c, "echo", NULL, 5000, &res, &err), 0);
    assert_true(json_is_object(res) && json_object_size(res) == 0);
    json_decref(res);

    lr_err_clear(&err);
    assert_int_equal(lr_api_call(c, "fail", json_pack("{s:s}", "why", "x"), 5000, &res, &err),
                     LR_EAPI);
    assert_null(res);
    assert_int_equal(err.code, LR_EAPI);
    assert_string_equal(err.msg, "failing on purpose: x");
    assert_string_equal(lr_api_client_error_code(c), "nope");
    assert_int_equal(lr_api_client_error_exit(c), 3);

    assert_int_equal(lr_api_call(c, "no_such_thing", NULL, 5000, &res, &err), LR_EAPI);
    assert_string_equal(lr_api_client_error_code(c), LR_API_E_UNKNOWN_METHOD);
    assert_int_equal(lr_api_client_error_exit(c), 1);
    assert_non_null(strstr(err.msg, "no_such_thing"));

    assert_int_equal(lr_api_call(c, "rc", NULL, 5000, &res, &err), LR_EAPI);
    assert_string_equal(lr_api_client_error_code(c), "notfound");
    assert_string_equal(err.msg, "no folder named photos");

    assert_int_equal(lr_api_call(c, "null", NULL, 5000, &res, &err), LR_EAPI);
    assert_string_equal(lr_api_client_error_code(c), LR_API_E_INTERNAL);
    assert_int_equal(lr_api_call(c, "notobj", NULL, 5000, &res, &err), LR_EAPI);
    assert_string_equal(lr_api_client_error_code(c), LR_API_E_INTERNAL);

    assert_int_equal(lr_api_call(c, "badutf8", NULL, 5000, &res, &err), LR_EAPI);
    assert_string_equal(err.msg, "cannot read caf\xef\xbf\xbd line2");

    /* A success clears the last error code. */
    assert_int_equal(lr_api_call(c, "echo", NULL, 5000, NULL, &err), 0);
    assert_string_equal(lr_api_client_error_code(c), "");

    /* Client-side refusals: bad method name, params not an object, oversize. */
    assert_int_equal(lr_api_call(c, "echo", json_integer(1), 5000, &res, &err), LR_EUSAGE);
    json_t *hugep = json_object();
    char *hs = malloc(LR_API_LINE_MAX + 1);
    memset(hs, 'y', LR_API_LINE_MAX);
    hs[LR_API_LINE_MAX] = '\0';
    json_object_set_new(hugep, "s", json_string(hs));
    free(hs);
    assert_int_equal(lr_api_call(c, "echo", hugep, 5000, &res, &err), LR_ETOOBIG);
    /* The connection is still fine. */
    assert_int_equal(lr_api_call(c, "echo", NULL, 5000, NULL, &err), 0);

    /* A large reply (3 MiB) comes through whole. */
    assert_int_equal(lr_api_call(c, "big", json_pack("{s:i}", "n", 3 << 20), 5000, &res, &err), 0);
    assert_int_equal(strlen(json_string_value(json_object_get(res, "s"))), 3 << 20);
    json_decref(res);

    lr_api_client_close(c);
    lr_api_client_close(NULL);
    WAIT_FOR(h, st.clients == 0);
    struct lr_api_server_stats fin = stats(h);
    assert_int_equal(fin.inflight, 0);
    assert_int_equal(fin.accepted, 1);
    h_stop(h, true);
}

static void test_async_and_timeout(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    struct lr_api_client *c = connect_ok(h->home);
    struct lr_err err;
    json_t *res;

    assert_int_equal(lr_api_call(c, "later", json_pack("{s:i}", "ms", 30), 5000, &res, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "ms")), 30);
    json_decref(res);

    /* A times out; its late reply arrives before B's and must be skipped. */
    assert_int_equal(lr_api_call(c, "later", json_pack("{s:i}", "ms", 300), 50, &res, &err),
                     LR_ETIMEOUT);
    assert_null(res);
    assert_int_equal(lr_api_call(c, "later", json_pack("{s:i}", "ms", 600), 5000, &res, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "ms")), 600);
    json_decref(res);

    /* A held request times out; the daemon may answer it any time later. */
    assert_int_equal(lr_api_call(c, "hold", NULL, 50, &res, &err), LR_ETIMEOUT);
    lr_api_client_close(c);
    h_stop(h, true);
}

/* Many requests in one write: every one answered once, out of order allowed. */
static void test_pipelined(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    struct raw *r = raw_connect(h->home);
    enum { N = 400 };
    size_t cap = N * 96, len = 0;
    char *all = malloc(cap);
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            len += (size_t)snprintf(all + len, cap - len,
                                    "{\"id\":%d,\"method\":\"later\",\"params\":{\"ms\":%d}}\n", i,
                                    (i * 7) % 40);
        else
            len += (size_t)snprintf(all + len, cap - len,
                                    "{\"id\":%d,\"method\":\"echo\",\"params\":{\"i\":%d}}\n", i,
                                    i * 10);
    }
    raw_send(r, all, len);
    free(all);
    int seen[N] = {0};
    for (int k = 0; k < N; k++) {
        struct lr_api_reply rep;
        raw_reply(r, &rep);
        assert_int_equal(rep.kind, LR_API_RESULT);
        assert_true(rep.has_id && rep.id >= 0 && rep.id < N);
        int i = (int)rep.id;
        seen[i]++;
        if (i % 3 == 0)
            assert_int_equal(json_integer_value(json_object_get(rep.body, "ms")), (i * 7) % 40);
        else
            assert_int_equal(json_integer_value(json_object_get(rep.body, "i")), i * 10);
        lr_api_reply_release(&rep);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    assert_int_equal(stats(h).inflight, 0);
    raw_close(r);
    h_stop(h, true);
}

static void test_garbage_lines(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    struct raw *r = raw_connect(h->home);
    struct lr_api_reply rep;

    raw_sends(r, "garbage\n");
    raw_reply(r, &rep);
    assert_int_equal(rep.kind, LR_API_ERROR);
    assert_false(rep.has_id);
    assert_string_equal(rep.code, LR_API_E_PARSE);
    lr_api_reply_release(&rep);

    raw_sends(r, "\n  \r\n[1,2]\r\n"); /* blank lines get no reply */
    raw_reply(r, &rep);
    assert_false(rep.has_id);
    assert_string_equal(rep.code, LR_API_E_BAD_REQUEST);
    lr_api_reply_release(&rep);

    raw_sends(r, "{\"id\":5}\n");
    raw_reply(r, &rep);
    assert_true(rep.has_id && rep.id == 5);
    assert_string_equal(rep.code, LR_API_E_BAD_REQUEST);
    assert_non_null(strstr(rep.message, "method"));
    lr_api_reply_release(&rep);

    raw_sends(r, "{\"id\":6,\"method\":\"echo\",\"params\":{\"k\":1}}\r\n");
    raw_reply(r, &rep);
    assert_int_equal(rep.kind, LR_API_RESULT);
    assert_true(rep.id == 6);
    assert_int_equal(json_integer_value(json_object_get(rep.body, "k")), 1);
    lr_api_reply_release(&rep);

    /* A request trickling in a byte at a time, two lines in one go after it. */
    const char *slow = "{\"id\":8,\"method\":\"echo\",\"params\":{\"t\":\"trickle\"}}\n";
    for (size_t i = 0; slow[i]; i++) {
        raw_send(r, slow + i, 1);
        if (i % 8 == 0)
            sleep_ms(1);
    }
    raw_sends(r, "{\"id\":9,\"method\":\"echo\"}\n{\"id\":10,\"method\":\"echo\"}\n");
    for (int id = 8; id <= 10; id++) {
        raw_reply(r, &rep);
        assert_int_equal(rep.kind, LR_API_RESULT);
        assert_true(rep.id == id);
        if (id == 8)
            assert_string_equal(json_string_value(json_object_get(rep.body, "t")), "trickle");
        lr_api_reply_release(&rep);
    }

    /* 15 bad, 1 good, 15 bad: never 16 in a row, so the connection stays. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < LR_API_BAD_LINES_MAX - 1; i++)
            raw_sends(r, "{\"id\":1,\"method\":\"x\",\"params\":3}\n");
        for (int i = 0; i < LR_API_BAD_LINES_MAX - 1; i++) {
            raw_reply(r, &rep);
            assert_int_equal(rep.kind, LR_API_ERROR);
            lr_api_reply_release(&rep);
        }
        raw_sends(r, "{\"id\":7,\"method\":\"echo\"}\n");
        raw_reply(r, &rep);
        assert_int_equal(rep.kind, LR_API_RESULT);
        lr_api_reply_release(&rep);
    }
    assert_int_equal(stats(h).clients_kicked, 0);

    /* 16 in a row: 16 error replies, then the server hangs up. */
    for (int i = 0; i < LR_API_BAD_LINES_MAX; i++)
        raw_sends(r, "\x01\x02 nope\n");
    for (int i = 0; i < LR_API_BAD_LINES_MAX; i++) {
        raw_reply(r, &rep);
        assert_string_equal(rep.code, LR_API_E_PARSE);
        lr_api_reply_release(&rep);
    }
    assert_raw_eof(r);
    raw_close(r);
    WAIT_FOR(h, st.clients == 0 && st.clients_kicked == 1);
    h_stop(h, true);
}

/* Send n bytes without '\n', until the server stops taking them. */
static size_t blast(int fd, size_t n)
{
    char *chunk = malloc(1 << 16);
    memset(chunk, 'a', 1 << 16);
    chunk[0] = '{';
    size_t sent = 0;
    while (sent < n) {
        size_t k = n - sent < (1 << 16) ? n - sent : (1 << 16);
        ssize_t w = send(fd, chunk, k, MSG_NOSIGNAL);
        if (w < 0) {
            assert_true(errno == EPIPE || errno == ECONNRESET);
            break;
        }
        chunk[0] = 'a';
        sent += (size_t)w;
    }
    free(chunk);
    return sent;
}

static void test_line_limit(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);

    /* Exactly LR_API_LINE_MAX bytes: accepted. */
    struct raw *r = raw_connect(h->home);
    const char *pre = "{\"id\":3,\"method\":\"echo\",\"params\":{\"s\":\"";
    const char *post = "\"}}";
    size_t fill = LR_API_LINE_MAX - strlen(pre) - strlen(post);
    char *line = malloc(LR_API_LINE_MAX + 2);
    size_t n = 0;
    memcpy(line, pre, strlen(pre));
    n += strlen(pre);
    memset(line + n, 'z', fill);
    n += fill;
    memcpy(line + n, post, strlen(post));
    n += strlen(post);
    assert_int_equal(n, LR_API_LINE_MAX);
    line[n++] = '\n';
    raw_send(r, line, n);
    struct lr_api_reply rep;
    raw_reply(r, &rep);
    assert_int_equal(rep.kind, LR_API_RESULT);
    assert_int_equal(strlen(json_string_value(json_object_get(rep.body, "s"))), fill);
    lr_api_reply_release(&rep);

    /* One byte more: too_large, then close. */
    memmove(line + strlen(pre) + 1, line + strlen(pre), n - strlen(pre));
    n++;
    raw_send(r, line, n);
    raw_reply(r, &rep);
    assert_string_equal(rep.code, LR_API_E_TOO_LARGE);
    lr_api_reply_release(&rep);
    assert_raw_eof(r);
    raw_close(r);
    free(line);

    /* 2 MiB without a newline: error + close, memory bounded. */
    r = raw_connect(h->home);
    size_t sent = blast(r->fd, (size_t)2 << 20);
    assert_true(sent > LR_API_LINE_MAX);
    assert_true(sent < ((size_t)2 << 20)); /* the server stopped taking it */
    raw_reply(r, &rep);
    assert_false(rep.has_id);
    assert_string_equal(rep.code, LR_API_E_TOO_LARGE);
    lr_api_reply_release(&rep);
    assert_raw_eof(r);
    raw_close(r);

    WAIT_FOR(h, st.clients == 0);
    struct lr_api_server_stats fin = stats(h);
    assert_true(fin.in_buf_peak <= LR_API_LINE_MAX + 1);
    assert_int_equal(fin.clients_kicked, 2);

    /* The server still serves others. */
    struct lr_api_client *c = connect_ok(h->home);
    assert_int_equal(lr_api_call(c, "echo", NULL, 5000, NULL, NULL), 0);
    lr_api_client_close(c);
    h_stop(h, true);
}

/* A client that pipelines big requests and never reads is cut off. */
static void test_reply_queue_bound(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    struct raw *r = raw_connect(h->home);
    char line[128];
    enum { N = 60, SZ = 100000 };
    for (int i = 0; i < N; i++) {
        int n = snprintf(line, sizeof(line),
                         "{\"id\":%d,\"method\":\"big\",\"params\":{\"n\":%d}}\n", i, SZ);
        raw_send(r, line, (size_t)n);
    }
    WAIT_FOR(h, st.accepted == 1 && st.clients == 0);
    struct lr_api_server_stats fin = stats(h);
    if (fin.clients_kicked != 1)
        fail_msg("kicked %llu accepted %llu peak %zu", fin.clients_kicked, fin.accepted,
                 fin.reply_bytes_peak);
    assert_true(fin.reply_bytes_peak <= LR_API_REPLY_QUEUE_MAX);
    assert_true(fin.reply_bytes_peak > LR_API_REPLY_QUEUE_MAX - 2 * SZ);
    /* What was written before the cut is whole replies, in order. */
    int got = 0;
    bool eof = false;
    for (;;) {
        char *l = raw_line(r, 5000, &eof);
        if (!l)
            break;
        struct lr_api_reply rep;
        assert_int_equal(lr_api_reply_decode(l, strlen(l), &rep, NULL), 0);
        assert_true(rep.id == got);
        lr_api_reply_release(&rep);
        free(l);
        got++;
    }
    assert_true(eof);
    assert_true(got > 0 && got < N);
    raw_close(r);
    h_stop(h, true);
}

static void reply_held(struct harness *h, void *arg);

/* ---- streams ---- */

static void bc_tick(uv_timer_t *t)
{
    struct harness *h = t->data;
    char *pad = malloc((size_t)h->bc_pad + 1);
    memset(pad, 'p', (size_t)h->bc_pad);
    pad[h->bc_pad] = '\0';
    for (int k = 0; k < 100 && h->bc_sent < h->bc_total; k++) {
        /* Pace against the fast reader only, so it never falls behind. */
        if (h->bc_sent - atomic_load(&h->fast_seen) >= h->bc_window)
            break;
        json_t *ev = json_pack("{s:s,s:i,s:s}", "type", "tick", "seq", h->bc_sent, "pad", pad);
        lr_api_server_broadcast(h->srv, ev);
        json_decref(ev);
        h->bc_sent++;
    }
    free(pad);
    if (h->bc_sent == h->bc_total)
        uv_timer_stop(t);
}

static void bc_start(struct harness *h, void *arg)
{
    (void)arg;
    uv_timer_init(&h->loop, &h->bc_timer);
    h->bc_timer.data = h;
    uv_timer_start(&h->bc_timer, bc_tick, 1, 1);
}

struct fast {
    struct harness *h;
    int next;
    bool bad;
    int rc;
};

static int fast_event(void *ud, json_t *ev)
{
    struct fast *f = ud;
    const char *type = json_string_value(json_object_get(ev, "type"));
    if (!type || strcmp(type, "tick") != 0 ||
        json_integer_value(json_object_get(ev, "seq")) != f->next) {
        f->bad = true;
        return 1;
    }
    f->next++;
    atomic_store(&f->h->fast_seen, f->next);
    return f->next == f->h->bc_total ? 1 : 0;
}

static void *fast_main(void *arg)
{
    struct fast *f = arg;
    struct lr_api_client *c = NULL;
    struct lr_err err;
    f->rc = lr_api_client_connect(f->h->home, &c, &err);
    if (f->rc == 0)
        f->rc = lr_api_stream(c, "events", NULL, fast_event, f, &err);
    lr_api_client_close(c);
    return NULL;
}

/*
 * One fast subscriber (library client, paced so it never falls behind) and
 * one slow connection holding `ns` streams that reads nothing until the
 * broadcaster is done.
 */
static void run_streams(int total, int pad, int ns)
{
    struct harness *h = h_start(NULL);
    h->bc_total = total;
    h->bc_pad = pad;
    h->bc_window = 300;

    struct raw *slow = raw_connect(h->home);
    char line[96];
    for (int k = 0; k < ns; k++) {
        int n = snprintf(line, sizeof(line), "{\"id\":%d,\"method\":\"events\"}\n", 41 + k);
        raw_send(slow, line, (size_t)n);
    }
    struct lr_api_reply rep;
    for (int k = 0; k < ns; k++) {
        raw_reply(slow, &rep);
        assert_int_equal(rep.kind, LR_API_RESULT);
        assert_true(rep.id == 41 + k);
        assert_true(json_is_true(json_object_get(rep.body, "stream")));
        lr_api_reply_release(&rep);
    }

    struct fast f = {.h = h};
    pthread_t ft;
    assert_int_equal(pthread_create(&ft, NULL, fast_main, &f), 0);
    WAIT_FOR(h, st.streams == (size_t)ns + 1);
    on_loop(h, bc_start, NULL);
    pthread_join(ft, NULL);
    assert_int_equal(f.rc, 0);
    assert_false(f.bad);
    assert_int_equal(f.next, total); /* the fast one got every event, in order */

    struct lr_api_server_stats fin = stats(h);
    assert_true(fin.events_dropped > 0);
    assert_true(fin.event_queue_peak <= LR_API_EVENT_QUEUE_MAX);
    assert_true(fin.event_bytes_peak <= LR_API_EVENT_BYTES_MAX);

    /* The slow streams: events in order, every gap exactly announced by
     * that stream's drop markers just before it, nothing lost unannounced. */
    long long prev[4], pending[4], dropped = 0, got = 0, markers = 0;
    int done = 0;
    for (int k = 0; k < ns; k++)
        prev[k] = -1, pending[k] = 0;
    while (done < ns) {
        raw_reply(slow, &rep);
        assert_int_equal(rep.kind, LR_API_EVENT);
        assert_true(rep.id >= 41 && rep.id < 41 + ns);
        int k = (int)(rep.id - 41);
        const char *type = json_string_value(json_object_get(rep.body, "type"));
        if (strcmp(type, "dropped") == 0) {
            long long cnt = json_integer_value(json_object_get(rep.body, "count"));
            assert_true(cnt > 0);
            pending[k] += cnt;
            dropped += cnt;
            markers++;
        } else {
            long long seq = json_integer_value(json_object_get(rep.body, "seq"));
            if (seq - prev[k] - 1 != pending[k])
                fail_msg("stream %d: gap before seq %lld is %lld but markers said %lld", k, seq,
                         seq - prev[k] - 1, pending[k]);
            pending[k] = 0;
            prev[k] = seq;
            got++;
            if (seq == total - 1)
                done++;
        }
        lr_api_reply_release(&rep);
    }
    assert_int_equal(got + dropped, (long long)total * ns);
    assert_int_equal(dropped, (long long)fin.events_dropped);
    assert_true(markers >= ns);
    raw_close(slow);
    WAIT_FOR(h, st.clients == 0 && st.streams == 0);
    h_stop(h, true);
}

/* Small events: the count bound (1000) is what bites. */
static void test_stream_slow_reader_count(void **state)
{
    (void)state;
    run_streams(30000, 20, 1);
}

/* 2 KiB events on two streams of one connection: the byte bound (1 MiB) bites first. */
static void test_stream_slow_reader_bytes(void **state)
{
    (void)state;
    run_streams(4000, 2048, 2);
}

static void broadcast_one(struct harness *h, void *arg)
{
    (void)arg;
    json_t *ev = json_pack("{s:s}", "type", "x");
    lr_api_server_broadcast(h->srv, ev);
    json_decref(ev);
    json_t *notobj = json_integer(1);
    lr_api_server_broadcast(h->srv, notobj); /* ignored */
    json_decref(notobj);
}

static void test_stream_limits(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    struct raw *r = raw_connect(h->home);
    char line[96];
    for (int i = 0; i < LR_API_STREAMS_MAX + 1; i++) {
        int n = snprintf(line, sizeof(line), "{\"id\":%d,\"method\":\"events\"}\n", 100 + i);
        raw_send(r, line, (size_t)n);
    }
    struct lr_api_reply rep;
    for (int i = 0; i < LR_API_STREAMS_MAX + 1; i++) {
        raw_reply(r, &rep);
        assert_true(rep.id == 100 + i);
        if (i < LR_API_STREAMS_MAX) {
            assert_int_equal(rep.kind, LR_API_RESULT);
        } else {
            assert_int_equal(rep.kind, LR_API_ERROR);
            assert_string_equal(rep.code, "busy");
        }
        lr_api_reply_release(&rep);
    }
    /* Requests still work on a streaming connection. */
    raw_sends(r, "{\"id\":1,\"method\":\"echo\"}\n");
    raw_reply(r, &rep);
    assert_int_equal(rep.kind, LR_API_RESULT);
    lr_api_reply_release(&rep);
    /* One broadcast reaches each stream once. */
    on_loop(h, broadcast_one, NULL);
    int seen[LR_API_STREAMS_MAX] = {0};
    for (int i = 0; i < LR_API_STREAMS_MAX; i++) {
        raw_reply(r, &rep);
        assert_int_equal(rep.kind, LR_API_EVENT);
        assert_true(rep.id >= 100 && rep.id < 100 + LR_API_STREAMS_MAX);
        seen[rep.id - 100]++;
        lr_api_reply_release(&rep);
    }
    for (int i = 0; i < LR_API_STREAMS_MAX; i++)
        assert_int_equal(seen[i], 1);
    /* Closing the write side ends the streams (and the connection). */
    shutdown(r->fd, SHUT_WR);
    assert_raw_eof(r);
    raw_close(r);
    WAIT_FOR(h, st.clients == 0 && st.streams == 0);
    on_loop(h, broadcast_one, NULL); /* no streams left: nothing happens */
    h_stop(h, true);
}

static void count_held(struct harness *h, void *arg)
{
    *(int *)arg = h->nheld;
}

/* Past LR_API_INFLIGHT_MAX unanswered requests the server stops reading the
 * connection; each answer lets one more in. */
static void test_inflight_limit(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    struct raw *r = raw_connect(h->home);
    enum { N = 3 * LR_API_INFLIGHT_MAX + 7 };
    char line[96];
    for (int i = 0; i < N; i++) {
        int n = snprintf(line, sizeof(line), "{\"id\":%d,\"method\":\"hold\"}\n", i);
        raw_send(r, line, (size_t)n);
    }
    int answered = 0;
    while (answered < N) {
        int want = N - answered < LR_API_INFLIGHT_MAX ? N - answered : LR_API_INFLIGHT_MAX;
        WAIT_FOR(h, st.inflight == (size_t)want);
        sleep_ms(20); /* nothing more is dispatched meanwhile */
        int held = 0;
        on_loop(h, count_held, &held);
        assert_int_equal(held, want);
        assert_int_equal(stats(h).inflight, want);
        on_loop(h, reply_held, NULL);
        for (int k = 0; k < want; k++) {
            struct lr_api_reply rep;
            raw_reply(r, &rep);
            assert_int_equal(rep.kind, LR_API_RESULT);
            assert_true(rep.id == answered + k); /* held in order, answered in order */
            lr_api_reply_release(&rep);
        }
        answered += want;
    }
    raw_close(r);
    WAIT_FOR(h, st.clients == 0);
    h_stop(h, true);
}

/* Beyond LR_API_CLIENTS_MAX connections, new ones are closed at once. */
static void test_clients_limit(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    enum { EXTRA = 5, N = LR_API_CLIENTS_MAX + EXTRA };
    struct raw *r[N];
    for (int i = 0; i < LR_API_CLIENTS_MAX; i++)
        r[i] = raw_connect(h->home);
    WAIT_FOR(h, st.clients == LR_API_CLIENTS_MAX);
    for (int i = LR_API_CLIENTS_MAX; i < N; i++)
        r[i] = raw_connect(h->home);
    WAIT_FOR(h, st.clients_kicked == EXTRA);
    for (int i = LR_API_CLIENTS_MAX; i < N; i++)
        assert_raw_eof(r[i]);
    /* The admitted ones all work. */
    for (int i = 0; i < LR_API_CLIENTS_MAX; i++) {
        raw_sends(r[i], "{\"id\":1,\"method\":\"echo\"}\n");
        struct lr_api_reply rep;
        raw_reply(r[i], &rep);
        assert_int_equal(rep.kind, LR_API_RESULT);
        lr_api_reply_release(&rep);
    }
    for (int i = 0; i < N; i++)
        raw_close(r[i]);
    WAIT_FOR(h, st.clients == 0);
    /* Slots are free again. */
    struct lr_api_client *c = connect_ok(h->home);
    assert_int_equal(lr_api_call(c, "echo", NULL, 5000, NULL, NULL), 0);
    lr_api_client_close(c);
    h_stop(h, true);
}

/* Random bytes (with newlines) on many connections: every line the server
 * writes back is a well-formed error or result, and it keeps serving. */
static void test_random_garbage(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int conn = 0; conn < 24; conn++) {
        struct raw *r = raw_connect(h->home);
        size_t n = 4096 + (size_t)conn * 1024;
        char *buf = malloc(n);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* Mostly JSON-ish bytes so some lines get past the parser. */
            static const char alpha[] = "{}[]\":,0123456789-.eEtruefalsnl idmethodparams\\u\n\n";
            buf[i] = (x >> 32) % 4 == 0 ? (char)(x >> 40) : alpha[(x >> 24) % (sizeof(alpha) - 1)];
        }
        ssize_t w = send(r->fd, buf, n, MSG_NOSIGNAL);
        assert_true(w > 0 || errno == EPIPE || errno == ECONNRESET);
        shutdown(r->fd, SHUT_WR);
        free(buf);
        bool eof = false;
        int lines = 0;
        for (;;) {
            char *l = raw_line(r, 10000, &eof);
            if (!l)
                break;
            struct lr_api_reply rep;
            struct lr_err err;
            if (lr_api_reply_decode(l, strlen(l), &rep, &err) != 0)
                fail_msg("server wrote a bad line %.200s: %s", l, err.msg);
            /* Only "unknown_method" and protocol errors can come back for
             * random methods; a result would need a real method name. */
            if (rep.kind == LR_API_ERROR)
                assert_true(rep.exit_code == 1);
            lr_api_reply_release(&rep);
            free(l);
            lines++;
        }
        assert_true(eof);
        assert_true(lines > 0);
        raw_close(r);
    }
    WAIT_FOR(h, st.clients == 0 && st.inflight == 0);
    struct lr_api_client *c = connect_ok(h->home);
    assert_int_equal(lr_api_call(c, "echo", NULL, 5000, NULL, NULL), 0);
    lr_api_client_close(c);
    h_stop(h, true);
}

/* ---- lifetimes ---- */

static void reply_held(struct harness *h, void *arg)
{
    (void)arg;
    for (int i = 0; i < h->nheld; i++)
        lr_api_reply(h->held[i], json_pack("{s:i}", "late", i));
    h->nheld = 0;
}

static void test_disconnect_before_reply(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);

    /* (a) the client gives up and closes; the daemon answers later. */
    struct lr_api_client *c = connect_ok(h->home);
    assert_int_equal(lr_api_call(c, "hold", NULL, 30, NULL, NULL), LR_ETIMEOUT);
    WAIT_FOR(h, st.inflight == 1);
    lr_api_client_close(c);
    on_loop(h, reply_held, NULL);
    WAIT_FOR(h, st.accepted == 1 && st.clients == 0 && st.inflight == 0);

    /* (b) the server drops the connection (16 bad lines) while a request
     * is held: the req is detached, its later reply only frees it. */
    struct raw *r = raw_connect(h->home);
    raw_sends(r, "{\"id\":1,\"method\":\"hold\"}\n");
    for (int i = 0; i < LR_API_BAD_LINES_MAX; i++)
        raw_sends(r, "x\n");
    WAIT_FOR(h, st.accepted == 2 && st.clients == 0);
    int held = 0;
    on_loop(h, count_held, &held);
    assert_int_equal(held, 1);
    raw_close(r);
    on_loop(h, reply_held, NULL);

    /* (c) a stream client vanishes; broadcasts go nowhere. */
    r = raw_connect(h->home);
    raw_sends(r, "{\"id\":1,\"method\":\"events\"}\n");
    struct lr_api_reply rep;
    raw_reply(r, &rep);
    lr_api_reply_release(&rep);
    raw_close(r);
    WAIT_FOR(h, st.accepted == 3 && st.clients == 0 && st.streams == 0);
    on_loop(h, broadcast_one, NULL);

    /* (d) held across the server's close: answered in h_stop afterwards. */
    c = connect_ok(h->home);
    assert_int_equal(lr_api_call(c, "hold", NULL, 30, NULL, NULL), LR_ETIMEOUT);
    WAIT_FOR(h, st.inflight == 1);
    h_stop(h, true);
    /* The server is gone: the next call sees the connection closed. */
    struct lr_err err;
    assert_int_equal(lr_api_call(c, "echo", NULL, 5000, NULL, &err), -ECONNRESET);
    lr_api_client_close(c);
}

/* The handler closes the server while more lines wait in the buffer. */
static void test_close_from_handler(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    char home[4096];
    snprintf(home, sizeof(home), "%s", h->home);
    struct raw *r = raw_connect(home);
    raw_sends(r, "{\"id\":1,\"method\":\"echo\"}\n{\"id\":2,\"method\":\"stop_server\"}\n"
                 "{\"id\":3,\"method\":\"echo\"}\n");
    struct lr_api_reply rep;
    raw_reply(r, &rep);
    assert_true(rep.id == 1);
    lr_api_reply_release(&rep);
    raw_reply(r, &rep);
    assert_true(rep.id == 2);
    assert_true(json_is_true(json_object_get(rep.body, "stopping")));
    lr_api_reply_release(&rep);
    assert_raw_eof(r); /* id 3 is never dispatched */
    raw_close(r);
    h_stop(h, true);
}

/* A client that half-closes after its request still gets the reply. */
static void test_half_close(void **state)
{
    (void)state;
    struct harness *h = h_start(NULL);
    struct raw *r = raw_connect(h->home);
    /* Last line without '\n', answered asynchronously. */
    raw_sends(
        r,
        "{\"id\":1,\"method\":\"echo\"}\n{\"id\":2,\"method\":\"later\",\"params\":{\"ms\":50}}");
    shutdown(r->fd, SHUT_WR);
    struct lr_api_reply rep;
    raw_reply(r, &rep);
    assert_true(rep.id == 1);
    lr_api_reply_release(&rep);
    raw_reply(r, &rep);
    assert_true(rep.id == 2);
    assert_int_equal(json_integer_value(json_object_get(rep.body, "ms")), 50);
    lr_api_reply_release(&rep);
    assert_raw_eof(r);
    raw_close(r);
    WAIT_FOR(h, st.clients == 0);
    h_stop(h, true);
}

/* ---- socket file ---- */

static void test_long_home(void **state)
{
    (void)state;
    char base[64];
    make_home(base, sizeof(base));
    char home[4096];
    snprintf(home, sizeof(home), "%s", base);
    const char *parts[] = {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                           "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                           "cccccccccccccccccccccccccccccccccccccccccccccccccc",
                           "dddddddddddddddddddddddddddddddddddddddddddddddddd"};
    for (int i = 0; i < 4; i++) {
        size_t n = strlen(home);
        snprintf(home + n, sizeof(home) - n, "/%s", parts[i]);
        assert_int_equal(mkdir(home, 0700), 0);
    }
    assert_true(strlen(home) >= 200);

    struct harness *h = h_start(home);
    char sock[4200];
    snprintf(sock, sizeof(sock), "%s/%s", home, LR_API_SOCK_NAME);
    struct stat st;
    assert_int_equal(lstat(sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    struct lr_api_client *c = connect_ok(home);
    json_t *res;
    assert_int_equal(lr_api_call(c, "echo", json_pack("{s:i}", "deep", 1), 5000, &res, NULL), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "deep")), 1);
    json_decref(res);
    lr_api_client_close(c);
    h_stop(h, false);

    /* Stopped: nobody home. */
    struct lr_err err;
    assert_int_equal(lr_api_client_connect(home, &c, &err), LR_ENODAEMON);
    for (int i = 3; i >= 0; i--) {
        assert_int_equal(rmdir(home), 0);
        *strrchr(home, '/') = '\0';
    }
    rm_home(base);
}

/* Make HOME/control.sock a socket nobody listens on (a killed daemon's). */
static void make_stale(const char *home)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", home, LR_API_SOCK_NAME);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
}

static void noop_handler(void *ud, struct lr_api_req *req, const char *method, json_t *params)
{
    (void)ud;
    (void)method;
    (void)params;
    lr_api_reply(req, json_object());
}

static void test_stale_and_busy(void **state)
{
    (void)state;
    char home[64];
    make_home(home, sizeof(home));
    char sock[128];
    snprintf(sock, sizeof(sock), "%s/%s", home, LR_API_SOCK_NAME);
    struct lr_err err;
    struct lr_api_client *c = NULL;

    /* Nothing there / no such home / stale socket: LR_ENODAEMON. */
    assert_int_equal(lr_api_client_connect(home, &c, &err), LR_ENODAEMON);
    assert_null(c);
    assert_int_equal(lr_api_client_connect("/nonexistent/lr-home", &c, &err), LR_ENODAEMON);
    make_stale(home);
    assert_int_equal(lr_api_client_connect(home, &c, &err), LR_ENODAEMON);
    assert_non_null(strstr(err.msg, home));

    /* The stale socket does not prevent start. */
    struct harness *h = h_start(home);
    c = connect_ok(home);
    assert_int_equal(lr_api_call(c, "echo", NULL, 5000, NULL, NULL), 0);

    /* A second server on a live socket: LR_EBUSY, and the live one survives. */
    uv_loop_t l2;
    uv_loop_init(&l2);
    struct lr_api_server *s2 = (struct lr_api_server *)&l2; /* must be reset to NULL */
    assert_int_equal(lr_api_server_start(&l2, home, noop_handler, NULL, &s2, &err), LR_EBUSY);
    assert_null(s2);
    assert_non_null(strstr(err.msg, "another daemon"));
    assert_int_equal(lr_api_call(c, "echo", NULL, 5000, NULL, NULL), 0);
    lr_api_client_close(c);
    h_stop(h, false);

    /* Not a socket in the way: refused, left alone. */
    int fd = open(sock, O_CREAT | O_WRONLY, 0600);
    close(fd);
    assert_int_equal(lr_api_server_start(&l2, home, noop_handler, NULL, &s2, &err), LR_EEXISTS);
    assert_int_equal(access(sock, F_OK), 0);
    unlink(sock);
    assert_int_equal(symlink("/tmp", sock), 0);
    assert_int_equal(lr_api_server_start(&l2, home, noop_handler, NULL, &s2, &err), LR_EEXISTS);
    unlink(sock);
    /* No such home. */
    assert_int_equal(
        lr_api_server_start(&l2, "/nonexistent/lr-home", noop_handler, NULL, &s2, &err), -ENOENT);
    assert_int_equal(uv_run(&l2, UV_RUN_NOWAIT), 0);
    assert_int_equal(uv_loop_close(&l2), 0);
    rm_home(home);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_request),
        cmocka_unit_test(test_codec_reply),
        cmocka_unit_test(test_addr),
        cmocka_unit_test(test_call_basic),
        cmocka_unit_test(test_async_and_timeout),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_garbage_lines),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_reply_queue_bound),
        cmocka_unit_test(test_stream_slow_reader_count),
        cmocka_unit_test(test_stream_slow_reader_bytes),
        cmocka_unit_test(test_stream_limits),
        cmocka_unit_test(test_inflight_limit),
        cmocka_unit_test(test_clients_limit),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_disconnect_before_reply),
        cmocka_unit_test(test_close_from_handler),
        cmocka_unit_test(test_half_close),
        cmocka_unit_test(test_long_home),
        cmocka_unit_test(test_stale_and_busy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
