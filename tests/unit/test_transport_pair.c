/*
 * test_transport_pair.c - pairing connections (ALPN landropic-pair/1) over
 * real QUIC on 127.0.0.1: any certificate is accepted on that ALPN only,
 * the pairing ALPN is refused unless the server listens for it, both ends
 * see each other's certificate ID and the same TLS exporter, bytes flow on
 * stream 0 both ways, the time limit closes the connection, and a pairing
 * connection never becomes a sync connection.
 */
#include "transport/transport.h"
#include "transport/transport_int.h"

#include "identity/identity.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct side {
    char name[8];
    char home[320];
    char cert[340], key[340];
    struct lr_device_id id;
    struct lr_transport *t;
    int port;
    uint64_t pair_timeout_ms;
    int trust_calls, refused, connected, msgs;
    /* pairing */
    int up, closed;
    bool outgoing;
    struct lr_conn *pc;
    struct lr_device_id pair_peer;
    uint8_t exporter[32];
    uint8_t rx[4096];
    size_t rxn;
    char reason[160];
    bool echo; /* send back what arrives */
};

struct env {
    char dir[128];
    uv_loop_t loop;
    struct side s[3];
};

static bool tr_trusted(void *ud, const struct lr_device_id *peer)
{
    struct side *s = ud;
    (void)peer;
    s->trust_calls++;
    return false; /* nobody is trusted for sync: pairing must not need it */
}

static void tr_refused(void *ud, const struct lr_device_id *peer, const char *addr)
{
    struct side *s = ud;
    (void)peer;
    (void)addr;
    s->refused++;
}

static void tr_connected(void *ud, struct lr_conn *c, const struct lr_device_id *peer,
                         const struct lr_proto_hello *h)
{
    struct side *s = ud;
    (void)c;
    (void)peer;
    (void)h;
    s->connected++;
}

static void tr_message(void *ud, struct lr_conn *c, uint64_t type, const uint8_t *p, size_t n)
{
    struct side *s = ud;
    (void)c;
    (void)type;
    (void)p;
    (void)n;
    s->msgs++;
}

static void pr_up(void *ud, struct lr_conn *c, const struct lr_device_id *peer, bool outgoing)
{
    struct side *s = ud;
    s->up++;
    s->pc = c;
    s->pair_peer = *peer;
    s->outgoing = outgoing;
    assert_true(lr_device_id_eq(lr_conn_peer(c), peer));
    assert_int_equal(lr_conn_export(c, "EXPORTER-landropic-pair/1", s->exporter, 32), 0);
    /* Never a sync connection: the sync send path refuses it. */
    assert_int_equal(lr_conn_send(c, LR_STREAM_CONTROL, LR_MSG_PING, "x", 1), LR_ECANCELED);
}

static void pr_data(void *ud, struct lr_conn *c, const uint8_t *p, size_t n)
{
    struct side *s = ud;
    assert_ptr_equal(c, s->pc);
    assert_true(s->rxn + n <= sizeof(s->rx));
    memcpy(s->rx + s->rxn, p, n);
    s->rxn += n;
    if (s->echo)
        assert_int_equal(lr_conn_pair_send(c, p, n), 0);
}

static void pr_closed(void *ud, struct lr_conn *c, const char *reason)
{
    struct side *s = ud;
    (void)c;
    s->closed++;
    if (s->pc == c)
        s->pc = NULL;
    snprintf(s->reason, sizeof(s->reason), "%s", reason);
}

static void side_start(struct env *e, struct side *s)
{
    static const char *one[1] = {"127.0.0.1:0"};
    struct lr_transport_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.listen = one;
    cfg.nlisten = 1;
    cfg.cert_path = s->cert;
    cfg.key_path = s->key;
    cfg.home = s->home;
    cfg.hello.version = LR_PROTO_VERSION;
    snprintf(cfg.hello.name, sizeof(cfg.hello.name), "dev-%s", s->name);
    snprintf(cfg.hello.software, sizeof(cfg.hello.software), "test");
    cfg.idle_timeout_ms = 5000;
    cfg.keepalive_ms = 1000;
    cfg.pair_timeout_ms = s->pair_timeout_ms;
    cfg.pair_cbs.ud = s;
    cfg.pair_cbs.on_up = pr_up;
    cfg.pair_cbs.on_data = pr_data;
    cfg.pair_cbs.on_closed = pr_closed;
    struct lr_transport_cbs cbs = {
        .ud = s,
        .is_trusted = tr_trusted,
        .on_refused = tr_refused,
        .on_connected = tr_connected,
        .on_message = tr_message,
    };
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_transport_new(&e->loop, &cfg, &cbs, &s->t, &err);
    if (rc != 0)
        fail_msg("lr_transport_new: %s", lr_err_msg(&err, rc));
    s->port = lr_transport_local_port(s->t, 0);
    assert_true(s->port > 0);
}

static void on_done(void *ud)
{
    *(bool *)ud = true;
}

static void tick(uv_timer_t *h)
{
    (void)h;
}

static void run_once(struct env *e)
{
    uv_timer_t t;
    uv_timer_init(&e->loop, &t);
    /* From now, not from the loop's cached time: after slow test code (a
     * loaded machine) the timer would be due at once, fire before the poll,
     * and the poll would then wait with no timeout for traffic that never
     * comes. */
    uv_update_time(&e->loop);
    uv_timer_start(&t, tick, 5, 0);
    uv_run(&e->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
}

#define RUN_UNTIL(e, cond, ms)                                                                     \
    do {                                                                                           \
        uint64_t end_ = uv_hrtime() + (uint64_t)(ms)*1000000u;                                     \
        while (!(cond) && uv_hrtime() < end_)                                                      \
            run_once(e);                                                                           \
    } while (0)

static void side_stop(struct env *e, struct side *s)
{
    bool done = false;
    if (!s->t)
        return;
    lr_transport_close(s->t, 0, on_done, &done);
    s->t = NULL;
    RUN_UNTIL(e, done, 5000);
    assert_true(done);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/lr-tpair-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        struct side *s = &e->s[i];
        snprintf(s->name, sizeof(s->name), "%s", names[i]);
        char hb[160];
        snprintf(hb, sizeof(hb), "%s/%s", e->dir, names[i]);
        snprintf(s->home, sizeof(s->home), "%s", hb);
        snprintf(s->cert, sizeof(s->cert), "%s/cert.pem", hb);
        snprintf(s->key, sizeof(s->key), "%s/key.pem", hb);
        assert_int_equal(mkdir(s->home, 0700), 0);
        assert_int_equal(lr_identity_create(s->home, &s->id, NULL), 0);
    }
    assert_int_equal(uv_loop_init(&e->loop), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    for (int i = 0; i < 3; i++)
        side_stop(e, &e->s[i]);
    assert_int_equal(uv_loop_close(&e->loop), 0);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

static struct lr_conn *pair_dial(struct side *from, const struct side *to)
{
    char a[64];
    snprintf(a, sizeof(a), "127.0.0.1:%d", to->port);
    struct lr_conn *c = NULL;
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_transport_pair_dial(from->t, a, &c, &err);
    if (rc != 0)
        fail_msg("pair dial: %s", lr_err_msg(&err, rc));
    assert_non_null(c);
    from->pc = c;
    return c;
}

/* ---- tests ---- */

static void test_pair_unknown_certs_exporter_and_data(void **state)
{
    struct env *e = *state;
    struct side *a = &e->s[0], *b = &e->s[1];
    side_start(e, a);
    side_start(e, b);
    lr_transport_pair_listen(a->t, true);
    a->echo = true;
    pair_dial(b, a);
    RUN_UNTIL(e, a->up == 1 && b->up == 1, 5000);
    assert_int_equal(a->up, 1);
    assert_int_equal(b->up, 1);
    assert_true(b->outgoing);
    assert_false(a->outgoing);
    /* Each side sees the other's certificate ID, with no trust asked. */
    assert_true(lr_device_id_eq(&a->pair_peer, &b->id));
    assert_true(lr_device_id_eq(&b->pair_peer, &a->id));
    assert_int_equal(a->trust_calls + b->trust_calls + a->refused + b->refused, 0);
    /* One TLS session, one exporter value; a different label gives another. */
    assert_memory_equal(a->exporter, b->exporter, 32);
    uint8_t other[32];
    assert_int_equal(lr_conn_export(b->pc, "EXPORTER-other", other, 32), 0);
    assert_memory_not_equal(other, b->exporter, 32);
    /* Not a sync connection on either side. */
    assert_null(lr_transport_conn(a->t, &b->id));
    assert_null(lr_transport_conn(b->t, &a->id));
    assert_int_equal(a->connected + b->connected, 0);

    /* Bytes both ways on stream 0, in order, in pieces. */
    uint8_t msg[1000];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(lr_conn_pair_send(b->pc, msg, 300), 0);
    assert_int_equal(lr_conn_pair_send(b->pc, msg + 300, 700), 0);
    RUN_UNTIL(e, b->rxn == sizeof(msg), 3000);
    assert_int_equal(a->rxn, sizeof(msg));
    assert_memory_equal(a->rx, msg, sizeof(msg));
    assert_int_equal(b->rxn, sizeof(msg));
    assert_memory_equal(b->rx, msg, sizeof(msg));
    assert_int_equal(a->msgs + b->msgs, 0);

    /* Closing one end reports on_closed once on both. */
    lr_conn_close(b->pc, "done");
    RUN_UNTIL(e, a->closed == 1 && b->closed == 1, 3000);
    assert_int_equal(a->closed, 1);
    assert_int_equal(b->closed, 1);
    assert_null(a->pc);
}

static void test_pair_refused_without_listen(void **state)
{
    struct env *e = *state;
    struct side *a = &e->s[0], *b = &e->s[1];
    side_start(e, a);
    side_start(e, b);
    /* a does not listen for pairing: the ALPN is refused in the handshake. */
    pair_dial(b, a);
    RUN_UNTIL(e, b->closed == 1, 5000);
    assert_int_equal(b->closed, 1);
    assert_int_equal(a->up + b->up + a->closed, 0);
    assert_int_equal(a->trust_calls, 0);
    assert_int_equal(lr__transport_nconns(b->t), 0);
    RUN_UNTIL(e, lr__transport_nconns(a->t) == 0, 3000);
    assert_int_equal(lr__transport_nconns(a->t), 0);

    /* Open, then closed again: refused again. */
    lr_transport_pair_listen(a->t, true);
    lr_transport_pair_listen(a->t, false);
    pair_dial(b, a);
    RUN_UNTIL(e, b->closed == 2, 5000);
    assert_int_equal(b->closed, 2);
    assert_int_equal(a->up + b->up, 0);
}

static void test_sync_dial_still_needs_trust(void **state)
{
    struct env *e = *state;
    struct side *a = &e->s[0], *b = &e->s[1];
    side_start(e, a);
    side_start(e, b);
    /* Pairing open on a does not let an untrusted device in for sync. */
    lr_transport_pair_listen(a->t, true);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", a->port);
    const char *addrs[] = {addr};
    assert_int_equal(lr_transport_dial(b->t, &a->id, addrs, 1, NULL), 0);
    RUN_UNTIL(e, a->refused == 1, 3000);
    assert_int_equal(a->refused, 1);
    assert_true(a->trust_calls >= 1);
    RUN_UNTIL(e, false, 300);
    assert_int_equal(a->connected + b->connected + a->up + b->up, 0);
    assert_null(lr_transport_conn(b->t, &a->id));
    /* A sync dial pinned to a different ID is still refused by the client. */
    struct side *c = &e->s[2];
    assert_int_equal(lr_transport_forget_peer(b->t, &a->id), 0);
    int before = a->trust_calls;
    assert_int_equal(lr_transport_dial(b->t, &c->id, addrs, 1, NULL), 0);
    RUN_UNTIL(e, false, 500);
    assert_int_equal(a->trust_calls, before);
    assert_int_equal(a->connected + b->connected + a->up + b->up, 0);
}

static void test_pair_conn_does_not_disturb_sync_peer(void **state)
{
    struct env *e = *state;
    struct side *a = &e->s[0], *b = &e->s[1];
    side_start(e, a);
    side_start(e, b);
    lr_transport_pair_listen(a->t, true);
    /* forget_peer on the device ID of a pairing peer does not touch the pairing connection. */
    pair_dial(b, a);
    RUN_UNTIL(e, a->up == 1 && b->up == 1, 5000);
    assert_int_equal(a->up, 1);
    assert_int_equal(lr_transport_forget_peer(a->t, &b->id), LR_ENOTFOUND);
    assert_int_equal(lr_transport_forget_peer(b->t, &a->id), LR_ENOTFOUND);
    RUN_UNTIL(e, false, 200);
    assert_int_equal(a->closed + b->closed, 0);
    assert_non_null(a->pc);
    /* The server queues first, but its bytes go once the client has opened stream 0. */
    assert_int_equal(lr_conn_pair_send(a->pc, "hi", 2), 0);
    RUN_UNTIL(e, false, 100);
    assert_int_equal(b->rxn, 0);
    assert_int_equal(lr_conn_pair_send(b->pc, "x", 1), 0);
    RUN_UNTIL(e, b->rxn == 2, 2000);
    assert_int_equal(a->rxn, 1);
    assert_memory_equal(b->rx, "hi", 2);
}

static void test_pair_timeout(void **state)
{
    struct env *e = *state;
    struct side *a = &e->s[0], *b = &e->s[1];
    a->pair_timeout_ms = 400;
    b->pair_timeout_ms = 5000;
    side_start(e, a);
    side_start(e, b);
    lr_transport_pair_listen(a->t, true);
    uint64_t t0 = uv_hrtime();
    pair_dial(b, a);
    RUN_UNTIL(e, a->closed == 1 && b->closed == 1, 5000);
    uint64_t dt = uv_hrtime() - t0;
    assert_int_equal(a->up, 1);
    assert_int_equal(a->closed, 1);
    assert_int_equal(b->closed, 1);
    assert_non_null(strstr(a->reason, "pairing timed out"));
    assert_true(dt >= 350000000ull); /* never early; how late is the machine's load */
}

static void test_pair_dial_bad_addr(void **state)
{
    struct env *e = *state;
    struct side *b = &e->s[1];
    side_start(e, b);
    struct lr_conn *c = (struct lr_conn *)1;
    struct lr_err err;
    lr_err_clear(&err);
    assert_int_equal(lr_transport_pair_dial(b->t, "nonsense", &c, &err), LR_EUSAGE);
    assert_null(c);
    assert_non_null(strstr(err.msg, "nonsense"));
    assert_int_equal(lr_transport_pair_dial(b->t, NULL, &c, NULL), LR_EUSAGE);
    RUN_UNTIL(e, false, 50);
    assert_int_equal(b->closed, 0);
}

static void test_pair_closed_by_peer(void **state)
{
    struct env *e = *state;
    struct side *a = &e->s[0], *b = &e->s[1];
    side_start(e, a);
    side_start(e, b);
    lr_transport_pair_listen(a->t, true);
    pair_dial(b, a);
    RUN_UNTIL(e, a->up == 1 && b->up == 1, 5000);
    /* The sync send paths refuse a pairing connection. */
    assert_int_equal(lr__conn_send_raw(b->pc, LR_STREAM_BULK, "zz", 2), LR_ECANCELED);
    lr_conn_close(a->pc, "bye");
    RUN_UNTIL(e, a->closed == 1 && b->closed == 1, 3000);
    assert_int_equal(b->closed, 1);
    assert_non_null(strstr(b->reason, "closed by peer"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pair_unknown_certs_exporter_and_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair_refused_without_listen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_dial_still_needs_trust, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair_conn_does_not_disturb_sync_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair_dial_bad_addr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pair_closed_by_peer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
