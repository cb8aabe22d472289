/*
 * test_discovery.c - the receive path of the discovery component, over
 * loopback only: the component is restricted to interfaces holding
 * 127.0.0.1 (none qualify: loopback is never used for multicast), so it sends
 * nothing, and the test feeds it unicast datagrams on its port. Checks a
 * valid announcement reaches the callback with its source, and that forged,
 * replayed, own and flooding datagrams do not.
 */
#include "discovery/discovery.h"
#include "identity/identity.h"
#include "util/xalloc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
    char *dir;
    char *key_a, *key_b;
    struct lr_device_id id_a, id_b;
    uv_loop_t loop;
    struct lr_discovery *disc;
    int tx; /* sender socket */
    struct sockaddr_in to;
    int seen;
    struct lr_announce last;
    char last_from[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    bool closed;
};

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void on_seen(void *ud, const struct lr_discovery_seen *s)
{
    struct fx *f = ud;
    f->seen++;
    f->last = *s->ann;
    snprintf(f->last_from, sizeof(f->last_from), "%s", s->from_ip);
}

static uint16_t free_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static char *mkid(const char *dir, const char *sub, struct lr_device_id *id)
{
    char *d = lr_xasprintf("%s/%s", dir, sub);
    assert_int_equal(mkdir(d, 0700), 0);
    assert_int_equal(lr_identity_create(d, id, NULL), 0);
    char *k = lr_xasprintf("%s/key.pem", d);
    free(d);
    return k;
}

static uint64_t g_interval_ms; /* 0 = default; set by setup_fast */

static int setup(void **state)
{
    struct fx *f = lr_xcalloc(1, sizeof(*f));
    const char *base = getenv("TMPDIR");
    f->dir = lr_xasprintf("%s/lr-test-discovery-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    f->key_a = mkid(f->dir, "a", &f->id_a);
    f->key_b = mkid(f->dir, "b", &f->id_b);
    assert_int_equal(uv_loop_init(&f->loop), 0);

    uint16_t port = free_port();
    uint16_t ports[] = {4242};
    struct lr_announce_addr lo = {.family = 4, .a = {127, 0, 0, 1}};
    struct lr_discovery_config cfg = {
        .key_path = f->key_a,
        .name = "alpha",
        .ports = ports,
        .nports = 1,
        .addrs = &lo,
        .naddrs = 1,
        .port = port,
        .restrict_ifaces = true,
        .interval_ms = g_interval_ms,
    };
    struct lr_err err = {0};
    int rc = lr_discovery_start(&f->loop, &cfg, on_seen, f, &f->disc, &err);
    if (rc != 0)
        fail_msg("start: %s", err.msg);
    assert_int_equal(lr_discovery_port(f->disc), port);

    f->tx = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(f->tx >= 0);
    f->to.sin_family = AF_INET;
    f->to.sin_port = htons(port);
    f->to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *state = f;
    return 0;
}

static int setup_fast(void **state)
{
    g_interval_ms = 200;
    int rc = setup(state);
    g_interval_ms = 0;
    return rc;
}

static void on_closed(void *ud)
{
    ((struct fx *)ud)->closed = true;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    lr_discovery_close(f->disc, on_closed, f);
    for (int i = 0; i < 100 && !f->closed; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_true(f->closed);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    close(f->tx);
    nftw(f->dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    free(f->key_a);
    free(f->key_b);
    free(f->dir);
    free(f);
    return 0;
}

/* A signed announcement from the key at `key` (a fresh signer each time is fine:
 * timestamps still increase because real time passes or `bump` is added). */
static size_t make_np(const char *key, const char *name, uint64_t bump, int nameplate, uint8_t *out)
{
    struct lr_announce_signer *s;
    assert_int_equal(lr_announce_signer_load(key, &s, NULL), 0);
    struct lr_announce a;
    memset(&a, 0, sizeof(a));
    snprintf(a.name, sizeof(a.name), "%s", name);
    a.ports[0] = 5555;
    a.nports = 1;
    a.has_nameplate = nameplate >= 0;
    a.nameplate = (uint16_t)(nameplate >= 0 ? nameplate : 0);
    struct lr_buf b;
    lr_buf_init(&b, LR_ANNOUNCE_MAX);
    assert_int_equal(lr_announce_sign(s, &a, lr_announce_now_ms() + bump, &b, NULL), 0);
    memcpy(out, b.data, b.len);
    size_t n = b.len;
    lr_buf_release(&b);
    lr_announce_signer_free(s);
    return n;
}

static size_t make(const char *key, const char *name, uint64_t bump, uint8_t *out)
{
    return make_np(key, name, bump, -1, out);
}

static void xmit(struct fx *f, const uint8_t *p, size_t n)
{
    assert_int_equal(sendto(f->tx, p, n, 0, (struct sockaddr *)&f->to, sizeof(f->to)), (ssize_t)n);
}

/* Run the loop until `received` reaches want (bounded: 2 s). */
static void pump(struct fx *f, uint64_t want)
{
    struct lr_discovery_stats st;
    for (int i = 0; i < 200; i++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        lr_discovery_get_stats(f->disc, &st);
        if (st.received >= want)
            return;
        usleep(10000);
    }
    fail_msg("only %llu of %llu datagrams received", (unsigned long long)st.received,
             (unsigned long long)want);
}

static void test_valid_forged_replayed_own(void **state)
{
    struct fx *f = *state;
    uint8_t p[LR_ANNOUNCE_MAX];
    size_t n = make(f->key_b, "bravo", 0, p);

    xmit(f, p, n);
    pump(f, 1);
    assert_int_equal(f->seen, 1);
    assert_true(lr_device_id_eq(&f->last.id, &f->id_b));
    assert_string_equal(f->last.name, "bravo");
    assert_int_equal(f->last.nports, 1);
    assert_int_equal(f->last.ports[0], 5555);
    assert_string_equal(f->last_from, "127.0.0.1");

    /* The same datagram again: a replay. */
    xmit(f, p, n);
    pump(f, 2);
    assert_int_equal(f->seen, 1);

    /* Forged: a newer one with one bit of its nonce changed. */
    n = make(f->key_b, "bravo", 10, p);
    p[n - 80] ^= 1;
    xmit(f, p, n);
    pump(f, 3);
    assert_int_equal(f->seen, 1);

    /* Our own announcement, looped back. */
    n = make(f->key_a, "alpha", 0, p);
    xmit(f, p, n);
    pump(f, 4);
    assert_int_equal(f->seen, 1);

    /* Garbage and an oversized datagram. */
    uint8_t big[LR_ANNOUNCE_MAX + 100];
    memset(big, 'L', sizeof(big));
    xmit(f, big, 3);
    xmit(f, big, sizeof(big));
    pump(f, 6);
    assert_int_equal(f->seen, 1);

    struct lr_discovery_stats st;
    lr_discovery_get_stats(f->disc, &st);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.replayed, 1);
    assert_int_equal(st.own, 1);
    assert_int_equal(st.invalid, 3);
    assert_int_equal(st.rate_limited, 0);
    /* Restricted to loopback's address: nothing may leave the host. */
    assert_int_equal(st.sent, 0);
}

static void test_flood_is_rate_limited(void **state)
{
    struct fx *f = *state;
    enum { N = 40 };
    uint8_t p[N][LR_ANNOUNCE_MAX];
    size_t n[N];
    for (int i = 0; i < N; i++)
        n[i] = make(f->key_b, "bravo", (uint64_t)i * 10, p[i]);
    for (int i = 0; i < N; i++)
        xmit(f, p[i], n[i]);
    pump(f, N);
    struct lr_discovery_stats st;
    lr_discovery_get_stats(f->disc, &st);
    /* Burst of 3 s worth per source, plus what refilled while signing. */
    assert_true(st.accepted >= 1);
    assert_true(st.accepted <= 3 * LR_DISCOVERY_SRC_RATE + 4);
    assert_int_equal(st.accepted + st.rate_limited + st.replayed, N);
    assert_true(st.rate_limited >= N / 2);
    assert_int_equal((uint64_t)f->seen, st.accepted);
}

static void test_nameplate(void **state)
{
    struct fx *f = *state;
    assert_int_equal(lr_discovery_set_nameplate(f->disc, -2), LR_EBADVAL);
    assert_int_equal(lr_discovery_set_nameplate(f->disc, 1000), LR_EBADVAL);
    assert_int_equal(lr_discovery_set_nameplate(f->disc, 417), 0);
    assert_int_equal(lr_discovery_set_nameplate(f->disc, -1), 0);
    uint8_t p[LR_ANNOUNCE_MAX];
    size_t n = make_np(f->key_b, "bravo", 0, 417, p);
    xmit(f, p, n);
    pump(f, 1);
    assert_int_equal(f->seen, 1);
    assert_true(f->last.has_nameplate);
    assert_int_equal(f->last.nameplate, 417);
    n = make_np(f->key_b, "bravo", 10, -1, p);
    xmit(f, p, n);
    pump(f, 2);
    assert_int_equal(f->seen, 2);
    assert_false(f->last.has_nameplate);
}

static uint64_t rounds(struct fx *f)
{
    struct lr_discovery_stats st;
    lr_discovery_get_stats(f->disc, &st);
    return st.rounds;
}

/* Run the loop for about `ms` milliseconds. */
static void run_for(struct fx *f, uint64_t ms)
{
    uint64_t end = uv_hrtime() / 1000000 + ms;
    while (uv_hrtime() / 1000000 < end) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
}

static void test_periodic(void **state)
{
    struct fx *f = *state;
    /* One round at start, then one every 200 ms +-20 %. */
    assert_int_equal(rounds(f), 1);
    run_for(f, 1100);
    uint64_t r = rounds(f);
    if (r < 1 + 4 || r > 1 + 7)
        fail_msg("%llu rounds in 1.1 s at a 200 ms interval", (unsigned long long)r);
}

static void test_on_demand_gap(void **state)
{
    struct fx *f = *state; /* default 30 s interval: only on-demand rounds happen */
    assert_int_equal(rounds(f), 1);
    lr_discovery_announce(f->disc); /* inside the gap after the start round */
    lr_discovery_announce(f->disc);
    assert_int_equal(rounds(f), 1);
    run_for(f, 600);
    assert_int_equal(rounds(f), 1);
    run_for(f, 700);
    assert_int_equal(rounds(f), 2); /* sent once, at the end of the gap */
    run_for(f, 1200);
    assert_int_equal(rounds(f), 2);
    lr_discovery_announce(f->disc); /* gap over: at once */
    assert_int_equal(rounds(f), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_forged_replayed_own, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flood_is_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nameplate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic, setup_fast, teardown),
        cmocka_unit_test_setup_teardown(test_on_demand_gap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
