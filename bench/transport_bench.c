/*
 * transport_bench.c - move N MiB client -> server between two processes over
 * QUIC on loopback, through the real transport (pinned mutual TLS, GSO/GRO).
 *
 *   transport_bench gen HOME
 *   transport_bench server HOME PEER_HOME PORTFILE MIB [--no-gso] [--no-gro] [--no-host-jumbo]
 *   transport_bench client HOME PEER_HOME PORT MIB [--no-gso] [--no-gro] [--no-host-jumbo]
 *
 * The server listens on 127.0.0.1:0 and writes its port to PORTFILE. The
 * client sends MIB MiB as 256 KiB DEBUG_DATA frames (ChunkData-sized, handed
 * over without a copy with lr_conn_send_owned, reassembled whole by the
 * receiver's frame reader as real chunks are) on the bulk streams.
 * When every payload byte is in, the server answers with a PING and both
 * print one line of key=value results (see bench/transport.sh).
 */
#include "identity/identity.h"
#include "transport/transport.h"
#include "util/log.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BENCH_TYPE LR_MSG_DEBUG_DATA
#define FRAME (256u * 1024) /* a ChunkData-sized frame */

struct bench {
    uv_loop_t *loop;
    struct lr_transport *t;
    bool server;
    struct lr_device_id peer;
    uint64_t total;  /* payload bytes to move */
    uint64_t got;    /* payload bytes the server received */
    uint64_t queued; /* payload bytes queued by the client */
    struct lr_conn *c;
    uint64_t t0, t1;
    double cpu0, cpu1;
    uint64_t hs_ns;
    bool done;
    uint8_t *frame;
    uv_check_t check;
    uv_timer_t quit;
};

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static long rss_anon_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "RssAnon: %ld kB", &v) == 1)
            break;
    fclose(f);
    return v;
}

static bool trusted(void *ud, const struct lr_device_id *id)
{
    struct bench *b = ud;
    return lr_device_id_eq(id, &b->peer);
}

static void keep(void *p)
{
    (void)p;
}

static void pump(struct bench *b)
{
    while (b->queued < b->total) {
        size_t n = b->total - b->queued < FRAME ? (size_t)(b->total - b->queued) : FRAME;
        /* One shared read-only buffer stands in for refcounted chunk buffers. */
        int rc = lr_conn_send_owned(b->c, LR_STREAM_BULK, BENCH_TYPE, b->frame, n, keep);
        if (rc == LR_EBUSY)
            return; /* on_writable resumes */
        if (rc < 0) {
            fprintf(stderr, "send: %s\n", lr_strerror(rc));
            exit(1);
        }
        b->queued += n;
    }
}

static void report(struct bench *b)
{
    double secs = (double)(b->t1 - b->t0) / 1e9;
    double gib = (double)b->total / (double)(1u << 30);
    malloc_trim(0);
    printf("%s bytes=%" PRIu64 " secs=%.3f mbps=%.1f cpu_s_per_gib=%.3f handshake_ms=%.3f "
           "rss_anon_kib=%ld\n",
           b->server ? "server" : "client", b->total, secs, (double)b->total / secs / 1e6,
           (b->cpu1 - b->cpu0) / gib, (double)b->hs_ns / 1e6, rss_anon_kib());
    fflush(stdout);
}

static void closed(void *ud)
{
    (void)ud;
}

static void quit_cb(uv_timer_t *h)
{
    struct bench *b = h->data;
    uv_check_stop(&b->check);
    uv_close((uv_handle_t *)&b->check, NULL);
    uv_close((uv_handle_t *)&b->quit, NULL);
    lr_transport_close(b->t, 0, closed, NULL);
}

static void finish(struct bench *b)
{
    b->done = true;
    b->t1 = uv_hrtime();
    b->cpu1 = cpu_seconds();
    report(b);
    uv_timer_start(&b->quit, quit_cb, b->server ? 200 : 0, 0);
}

static void on_connected(void *ud, struct lr_conn *c, const struct lr_device_id *peer,
                         const struct lr_proto_hello *h)
{
    struct bench *b = ud;
    struct lr_conn_stats st;
    (void)peer;
    (void)h;
    b->c = c;
    lr_conn_get_stats(c, &st);
    b->hs_ns = st.handshake_ns;
    b->t0 = uv_hrtime();
    b->cpu0 = cpu_seconds();
    if (!b->server)
        pump(b);
}

static void on_writable(void *ud, struct lr_conn *c)
{
    (void)c;
    pump(ud);
}

static void on_message(void *ud, struct lr_conn *c, uint64_t type, const uint8_t *p, size_t n)
{
    struct bench *b = ud;
    (void)c;
    (void)p;
    (void)n;
    if (!b->server && type == LR_MSG_PING && !b->done)
        finish(b);
    if (b->server && type == BENCH_TYPE)
        b->got += n;
}

static void on_disconnected(void *ud, struct lr_conn *c, const struct lr_device_id *peer,
                            const char *reason)
{
    struct bench *b = ud;
    (void)peer;
    if (c == b->c)
        b->c = NULL;
    if (!b->done)
        fprintf(stderr, "%s: disconnected before the end: %s\n", b->server ? "server" : "client",
                reason);
}

/* Server: after each loop turn, see whether every byte is in. */
static void check_cb(uv_check_t *h)
{
    struct bench *b = h->data;
    if (b->done || !b->c)
        return;
    if (b->got >= b->total) {
        (void)lr_conn_send(b->c, LR_STREAM_CONTROL, LR_MSG_PING, "done", 4);
        finish(b);
    }
}

static int load_id(const char *home, struct lr_identity **out)
{
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_identity_load(home, out, &err);
    if (rc < 0)
        fprintf(stderr, "%s: %s\n", home, lr_err_msg(&err, rc));
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "gen") == 0)
        return lr_identity_create(argv[2], NULL, NULL) == 0 ? 0 : 1;
    if (argc < 6 || (strcmp(argv[1], "server") != 0 && strcmp(argv[1], "client") != 0)) {
        fprintf(stderr,
                "usage: %s gen HOME | server HOME PEER_HOME PORTFILE MIB | "
                "client HOME PEER_HOME PORT MIB [--no-gso] [--no-gro] [--no-host-jumbo]\n",
                argv[0]);
        return 2;
    }
    lr_log_set_level(LR_LOG_WARN);
    struct bench b;
    memset(&b, 0, sizeof(b));
    b.server = strcmp(argv[1], "server") == 0;
    b.total = strtoull(argv[5], NULL, 10) << 20;
    if (b.total == 0)
        return 2;

    struct lr_identity *me, *peer;
    if (load_id(argv[2], &me) < 0 || load_id(argv[3], &peer) < 0)
        return 1;
    b.peer = *lr_identity_device_id(peer);
    lr_identity_free(peer);

    b.loop = uv_default_loop();
    struct lr_transport_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    const char *listen[] = {"127.0.0.1:0"};
    cfg.listen = listen;
    cfg.nlisten = 1;
    cfg.cert_path = lr_identity_cert_path(me);
    cfg.key_path = lr_identity_key_path(me);
    cfg.home = argv[2];
    cfg.hello.version = LR_PROTO_VERSION;
    snprintf(cfg.hello.name, sizeof(cfg.hello.name), "bench-%s", argv[1]);
    snprintf(cfg.hello.software, sizeof(cfg.hello.software), "transport_bench");
    for (int i = 6; i < argc; i++) {
        if (strcmp(argv[i], "--no-gso") == 0)
            cfg.no_gso = true;
        else if (strcmp(argv[i], "--no-gro") == 0)
            cfg.no_gro = true;
        else if (strcmp(argv[i], "--no-host-jumbo") == 0)
            cfg.no_host_jumbo = true;
    }
    struct lr_transport_cbs cbs = {
        .ud = &b,
        .is_trusted = trusted,
        .on_connected = on_connected,
        .on_disconnected = on_disconnected,
        .on_message = on_message,
        .on_writable = on_writable,
    };
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_transport_new(b.loop, &cfg, &cbs, &b.t, &err);
    lr_identity_free(me);
    if (rc < 0) {
        fprintf(stderr, "transport: %s\n", lr_err_msg(&err, rc));
        return 1;
    }
    uv_timer_init(b.loop, &b.quit);
    b.quit.data = &b;
    uv_check_init(b.loop, &b.check);
    b.check.data = &b;
    if (b.server) {
        FILE *f = fopen(argv[4], "w");
        if (!f)
            return 1;
        fprintf(f, "%d\n", lr_transport_local_port(b.t, 0));
        fclose(f);
        uv_check_start(&b.check, check_cb);
    } else {
        b.frame = malloc(FRAME);
        for (size_t i = 0; i < FRAME; i++)
            b.frame[i] = (uint8_t)(i * 131 + 7);
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%s", argv[4]);
        const char *addrs[] = {addr};
        rc = lr_transport_dial(b.t, &b.peer, addrs, 1, &err);
        if (rc < 0) {
            fprintf(stderr, "dial: %s\n", lr_err_msg(&err, rc));
            return 1;
        }
    }
    uv_run(b.loop, UV_RUN_DEFAULT);
    free(b.frame);
    return b.done ? 0 : 1;
}
