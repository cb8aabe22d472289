/*
 * lr_test_peer.c - a scripted, possibly malicious peer for integration tests.
 *
 * It holds a real device identity (a home made by `landropic --home H init`)
 * and talks to a running daemon over the real transport, as a peer would:
 * HELLO, FOLDERS listing one folder, then INDEX bursts, and it answers the
 * daemon's WANTs with correct CHUNK data for the files it announced (so a
 * daemon that accepts an entry really writes it). Everything else the
 * daemon sends (its FOLDERS, its INDEX) is ignored.
 *
 * INDEX entries are encoded here byte by byte from docs/protocol.md §6.6,
 * not with the proto batch builder, which refuses invalid records: the point
 * is to see what the daemon does with hostile bytes from the wire (`../x`,
 * `/etc/x`, a NUL in a name, a path over the limit...).
 *
 * Usage:
 *   lr_test_peer --home H --connect HOST:PORT --peer DEVICE_ID --script FILE
 *                [--timeout-ms N] [--linger-ms N] [--exit-on-close] [--corrupt N|all]
 *
 * --corrupt: the first N chunk answers (or all of them) carry data with one
 * byte flipped (its length and the request it answers stay right), so a test
 * can check the daemon refuses data that fails verification and gets the
 * chunk elsewhere. Printed as "served-corrupt path=... off=...".
 *
 * The script is JSON:
 *   {"folder": "docs",
 *    "bursts": [{"entries": [ENTRY...],
 *                "wait_served": false,    before sending: every chunk of the
 *                                         "good" entries already sent was served
 *                "delay_ms": 0,           then wait this long
 *                "reconnect": false,      then drop the connection and dial again
 *                "per_batch": 0,          entries per INDEX batch (0: all in one)
 *                "first_flag": 1,         the flag a new connection's first batch
 *                                         carries instead of FIRST (e.g. 4: RECON)
 *                "raw": [{"type": 20, "hex": "00ff"}]}],   frames sent as they are
 *                                         on the control stream after the burst
 *    "features": 0,                       HELLO feature bits (default none)
 *    "want_first": {"path": "a", "data": "text", "folders_delay_ms": 300}}
 *                                         on connecting, WANT every chunk of that
 *                                         file (the daemon's copy: under 16 KiB it
 *                                         is one chunk) on a bulk stream, and send
 *                                         our FOLDERS only that much later; the
 *                                         answers print as "chunk-answer"
 *   ENTRY: {"path": "a/b" (may hold \u0000) | "path_hex": "612f62",
 *           "type": "file" | "dir" | "symlink",   default "file"
 *           "deleted": false,
 *           "data": "text" | "data_file": "/some/file",   live files
 *           "target": "..",                        live symlinks
 *           "mode": 420, "good": false,
 *           "mtime_ns": N}                         default: now; two runs given the
 *                                                  same script and mtime_ns announce
 *                                                  the very same version
 * Each burst's first batch on a new connection carries FIRST (a full index,
 * which the protocol allows at any time), its last batch LAST. Entries get
 * sequences 1, 2, 3... in script order and the version vector {us: seq}.
 *
 * Output: one line per event on stdout ("connected", "sent index ...",
 * "served path=... off=...", "no-such path=...", "disconnected reason=...",
 * "all-good-served", "exit reason=..."), names escaped with lr_esc.
 * Exit status: 0 after the timeout, the linger time after the last burst
 * (once every good entry is served and every want_first WANT answered), or
 * the daemon closing the connection with --exit-on-close; 1 on a setup
 * error; 2 on bad usage.
 */
#include "identity/identity.h"
#include "index/index.h"
#include "proto/proto.h"
#include "transport/transport.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <uv.h>

/* Block size used to split file data (the receiver accepts 1..256 KiB). */
#define TP_BLOCK (64u * 1024)
/* Largest data_file read. */
#define TP_DATA_MAX (64u << 20)

struct tp_entry {
    uint8_t *path;
    size_t path_len;
    enum lr_ftype type;
    bool deleted, good;
    uint8_t *data;
    size_t size;
    char *target;
    size_t target_len;
    uint32_t mode;
    uint64_t seq;
    int64_t mtime_ns;
    struct lr_chunk *chunks;
    size_t nchunks;
    struct lr_hash blocks_hash;
    bool *served; /* per chunk */
    bool sent;
};

/* A frame sent byte for byte after a burst (hostile messages). */
struct tp_raw {
    uint64_t type;
    uint8_t *p;
    size_t len;
};

struct tp_burst {
    size_t first, n; /* entries[first .. first + n) */
    bool wait_served, reconnect;
    uint64_t delay_ms;
    size_t per_batch;
    uint64_t first_flag;
    struct tp_raw *raw;
    size_t nraw;
};

/* A CHUNK answer waiting for room in the connection's send budget. */
struct tp_pending {
    struct tp_pending *next;
    uint8_t *p;
    size_t len;
};

struct tp {
    uv_loop_t *loop;
    struct lr_transport *t;
    struct lr_conn *conn;
    struct lr_device_id peer;
    char addr[128];
    uint64_t me_u64;
    char folder[LR_PROTO_FOLDER_ID_MAX + 1];
    uint64_t index_id;
    uint64_t features; /* HELLO */
    struct tp_entry *e;
    size_t ne;
    struct tp_burst *b;
    size_t nb;
    size_t next; /* next burst to send */
    bool first_pending;
    bool delay_done, reconnect_done;
    bool said_all_served;
    bool exit_on_close, exiting;
    uint64_t linger_ms;
    int64_t corrupt_left;                     /* chunk answers still to corrupt; < 0: all */
    struct tp_pending *pend_head, *pend_tail; /* in WANT order */
    struct tp_entry wf;                       /* want_first: path and data (chunked like ours) */
    bool have_wf;
    size_t wf_answers; /* answers to want_first WANTs: the linger waits for all */
    uint64_t wf_delay_ms;
    uv_timer_t timeout, delay, linger, quit, folders_delay;
};

/* ---- script ---- */

static void fail_usage(const char *msg)
{
    fprintf(stderr, "lr_test_peer: %s\n", msg);
    exit(2);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *p = lr_xmalloc(TP_DATA_MAX);
    size_t n = fread(p, 1, TP_DATA_MAX, f);
    bool bad = ferror(f) || !feof(f);
    fclose(f);
    if (bad) {
        free(p);
        return NULL;
    }
    *len = n;
    return p;
}

static void entry_chunks(struct tp_entry *e)
{
    e->nchunks = (e->size + TP_BLOCK - 1) / TP_BLOCK;
    e->chunks = lr_xcalloc(e->nchunks ? e->nchunks : 1, sizeof(*e->chunks));
    e->served = lr_xcalloc(e->nchunks ? e->nchunks : 1, sizeof(*e->served));
    for (size_t i = 0; i < e->nchunks; i++) {
        struct lr_chunk *c = &e->chunks[i];
        c->off = (uint64_t)i * TP_BLOCK;
        c->len = (uint32_t)(e->size - c->off < TP_BLOCK ? e->size - c->off : TP_BLOCK);
        lr_sha256(e->data + c->off, c->len, &c->hash);
    }
    lr_index_blocks_hash(e->chunks, e->nchunks, &e->blocks_hash);
}

static void load_entry(struct tp *tp, json_t *j, struct tp_entry *e)
{
    json_t *v;
    memset(e, 0, sizeof(*e));
    if ((v = json_object_get(j, "path")) && json_is_string(v)) {
        e->path_len = json_string_length(v);
        e->path = lr_xmalloc(e->path_len + 1);
        memcpy(e->path, json_string_value(v), e->path_len);
        e->path[e->path_len] = 0;
    } else if ((v = json_object_get(j, "path_hex")) && json_is_string(v)) {
        size_t hl = json_string_length(v);
        e->path_len = hl / 2;
        e->path = lr_xmalloc(e->path_len + 1);
        if (hl % 2 || lr_unhex(json_string_value(v), e->path, e->path_len) < 0)
            fail_usage("entry: bad path_hex");
        e->path[e->path_len] = 0;
    } else {
        fail_usage("entry: no path");
    }
    const char *type = json_string_value(json_object_get(j, "type"));
    e->type = LR_FT_FILE;
    if (type && strcmp(type, "dir") == 0)
        e->type = LR_FT_DIR;
    else if (type && strcmp(type, "symlink") == 0)
        e->type = LR_FT_SYMLINK;
    else if (type && strcmp(type, "file") != 0)
        fail_usage("entry: type must be file, dir or symlink");
    e->deleted = json_is_true(json_object_get(j, "deleted"));
    e->good = json_is_true(json_object_get(j, "good"));
    v = json_object_get(j, "mode");
    e->mode = json_is_integer(v) ? (uint32_t)json_integer_value(v)
                                 : (e->type == LR_FT_DIR ? 0755u : 0644u);
    e->seq = ++tp->ne;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    e->mtime_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    v = json_object_get(j, "mtime_ns");
    if (v && !json_is_integer(v))
        fail_usage("entry: mtime_ns must be an integer");
    if (v)
        e->mtime_ns = (int64_t)json_integer_value(v);
    if (e->type == LR_FT_SYMLINK && !e->deleted) {
        v = json_object_get(j, "target");
        if (!json_is_string(v))
            fail_usage("entry: a symlink needs a target");
        e->target_len = json_string_length(v);
        e->target = lr_xmalloc(e->target_len + 1);
        memcpy(e->target, json_string_value(v), e->target_len + 1);
    }
    if (e->type == LR_FT_FILE && !e->deleted) {
        if ((v = json_object_get(j, "data")) && json_is_string(v)) {
            e->size = json_string_length(v);
            e->data = lr_xmalloc(e->size + 1);
            memcpy(e->data, json_string_value(v), e->size);
        } else if ((v = json_object_get(j, "data_file")) && json_is_string(v)) {
            e->data = read_file(json_string_value(v), &e->size);
            if (!e->data)
                fail_usage("entry: cannot read data_file (or over 64 MiB)");
        } else {
            e->data = lr_xmalloc(1);
        }
        entry_chunks(e);
    } else {
        e->served = lr_xcalloc(1, 1);
    }
}

static void load_script(struct tp *tp, const char *path)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!root) {
        fprintf(stderr, "lr_test_peer: %s:%d: %s\n", path, je.line, je.text);
        exit(2);
    }
    const char *folder = json_string_value(json_object_get(root, "folder"));
    if (!folder || strlen(folder) >= sizeof(tp->folder))
        fail_usage("script: no folder");
    snprintf(tp->folder, sizeof(tp->folder), "%s", folder);
    json_t *feat = json_object_get(root, "features");
    tp->features = json_is_integer(feat) ? (uint64_t)json_integer_value(feat) : 0;
    json_t *wf = json_object_get(root, "want_first");
    if (wf) {
        const char *wp = json_string_value(json_object_get(wf, "path"));
        json_t *wd = json_object_get(wf, "data");
        if (!wp || !json_is_string(wd))
            fail_usage("script: want_first needs a path and data");
        tp->have_wf = true;
        tp->wf.path = (uint8_t *)lr_xstrdup(wp);
        tp->wf.path_len = strlen(wp);
        tp->wf.size = json_string_length(wd);
        tp->wf.data = lr_xmalloc(tp->wf.size + 1);
        memcpy(tp->wf.data, json_string_value(wd), tp->wf.size);
        entry_chunks(&tp->wf);
        json_t *fd = json_object_get(wf, "folders_delay_ms");
        tp->wf_delay_ms = json_is_integer(fd) ? (uint64_t)json_integer_value(fd) : 0;
    }
    json_t *bursts = json_object_get(root, "bursts");
    if (!json_is_array(bursts) || json_array_size(bursts) == 0)
        fail_usage("script: bursts must be a non-empty array");
    size_t total = 0, i;
    json_t *b;
    json_array_foreach(bursts, i, b)
    {
        json_t *es = json_object_get(b, "entries");
        if (!json_is_array(es))
            fail_usage("script: a burst without entries");
        total += json_array_size(es);
    }
    tp->e = lr_xcalloc(total ? total : 1, sizeof(*tp->e));
    tp->nb = json_array_size(bursts);
    tp->b = lr_xcalloc(tp->nb, sizeof(*tp->b));
    json_array_foreach(bursts, i, b)
    {
        struct tp_burst *tb = &tp->b[i];
        json_t *es = json_object_get(b, "entries"), *x;
        size_t k;
        tb->first = tp->ne;
        tb->n = json_array_size(es);
        tb->wait_served = json_is_true(json_object_get(b, "wait_served"));
        tb->reconnect = json_is_true(json_object_get(b, "reconnect"));
        x = json_object_get(b, "delay_ms");
        tb->delay_ms = json_is_integer(x) ? (uint64_t)json_integer_value(x) : 0;
        x = json_object_get(b, "per_batch");
        tb->per_batch = json_is_integer(x) ? (size_t)json_integer_value(x) : 0;
        x = json_object_get(b, "first_flag");
        tb->first_flag =
            json_is_integer(x) ? (uint64_t)json_integer_value(x) : LR_PROTO_INDEX_FIRST;
        json_t *raw = json_object_get(b, "raw");
        if (raw && !json_is_array(raw))
            fail_usage("script: raw must be an array");
        tb->nraw = raw ? json_array_size(raw) : 0;
        tb->raw = lr_xcalloc(tb->nraw ? tb->nraw : 1, sizeof(*tb->raw));
        for (size_t r = 0; r < tb->nraw; r++) {
            json_t *f = json_array_get(raw, r);
            const char *hex = json_string_value(json_object_get(f, "hex"));
            json_t *t = json_object_get(f, "type");
            size_t hl = hex ? strlen(hex) : 1;
            if (!json_is_integer(t) || !hex || hl % 2)
                fail_usage("script: a raw frame needs an integer type and even-length hex");
            tb->raw[r].type = (uint64_t)json_integer_value(t);
            tb->raw[r].len = hl / 2;
            tb->raw[r].p = lr_xmalloc(hl / 2 + 1);
            if (lr_unhex(hex, tb->raw[r].p, hl / 2) < 0)
                fail_usage("script: raw hex is not hex");
        }
        json_array_foreach(es, k, x)
        {
            load_entry(tp, x, &tp->e[tp->ne]);
        }
    }
    json_decref(root);
}

/* ---- encoding (raw: nothing is validated, on purpose) ---- */

static void put_entry(struct lr_buf *out, const struct tp *tp, const struct tp_entry *e)
{
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_INDEX_RAW_MAX);
    bool live = e->type == LR_FT_FILE && !e->deleted;
    lr_buf_put_lbytes(&b, e->path, e->path_len);
    lr_buf_put_varint(&b, (uint64_t)e->type);
    lr_buf_put_varint(&b, e->deleted ? LR_PROTO_ENTRY_DELETED : 0);
    lr_buf_put_varint(&b, e->seq);
    lr_buf_put_varint(&b, live ? e->size : 0);
    lr_buf_put_u64(&b, (uint64_t)e->mtime_ns);
    lr_buf_put_varint(&b, e->mode);
    lr_buf_put_varint(&b, 1);
    lr_buf_put_u64(&b, tp->me_u64);
    lr_buf_put_u64(&b, e->seq);
    lr_buf_put_lbytes(&b, e->target, e->target_len);
    size_t n = live ? e->nchunks : 0;
    lr_buf_put_varint(&b, n); /* blk_total */
    lr_buf_put_varint(&b, 0); /* blk_first */
    lr_buf_put_varint(&b, 0); /* blk_off */
    lr_buf_put_varint(&b, n); /* nblk */
    for (size_t i = 0; i < n; i++) {
        lr_buf_put_u32(&b, e->chunks[i].len);
        lr_buf_put(&b, e->chunks[i].hash.b, LR_HASH_LEN);
    }
    lr_buf_put_varint(out, b.len);
    lr_buf_put(out, b.data, b.len);
    lr_buf_release(&b);
}

/* One INDEX payload with entries [from, from + n); caller frees. */
static uint8_t *encode_batch(const struct tp *tp, size_t from, size_t n, uint64_t flags,
                             size_t *len)
{
    struct lr_buf body, out;
    lr_buf_init(&body, LR_PROTO_INDEX_RAW_MAX);
    for (size_t i = from; i < from + n; i++)
        put_entry(&body, tp, &tp->e[i]);
    lr_buf_init(&out, LR_PROTO_INDEX_MAX);
    lr_buf_put_lbytes(&out, tp->folder, strlen(tp->folder));
    lr_buf_put_u64(&out, tp->index_id);
    lr_buf_put_varint(&out, flags);
    lr_buf_put_varint(&out, n);
    lr_buf_put_varint(&out, body.len);
    lr_buf_put_varint(&out, LR_PROTO_COMP_NONE);
    lr_buf_put_lbytes(&out, body.data, body.len);
    bool ok = lr_buf_ok(&body) && lr_buf_ok(&out);
    lr_buf_release(&body);
    if (!ok) {
        lr_buf_release(&out);
        return NULL;
    }
    uint8_t *p = lr_buf_detach(&out, len);
    lr_buf_release(&out);
    return p;
}

/* ---- sending ---- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
}

static void send_frame(struct tp *tp, uint64_t type, uint8_t *p, size_t len)
{
    int rc = lr_conn_send_owned(tp->conn, LR_STREAM_CONTROL, type, p, len, NULL);
    if (rc < 0) {
        say("send-failed type=%s error=%s", lr_proto_type_name(type), lr_strerror(rc));
        free(p);
    }
}

static void send_folders(struct tp *tp)
{
    struct lr_proto_folder f;
    memset(&f, 0, sizeof(f));
    snprintf(f.id, sizeof(f.id), "%s", tp->folder);
    f.index_id = tp->index_id;
    /* Highest sequence of what we are about to send. */
    size_t upto = tp->next < tp->nb ? tp->b[tp->next].first + tp->b[tp->next].n : tp->ne;
    f.max_seq = upto;
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_FOLDERS_MAX);
    int rc = lr_proto_folders_encode(&f, 1, &b);
    if (rc < 0) {
        say("folders-encode-failed error=%s", lr_strerror(rc));
        lr_buf_release(&b);
        return;
    }
    size_t len;
    uint8_t *p = lr_buf_detach(&b, &len);
    lr_buf_release(&b);
    send_frame(tp, LR_MSG_FOLDERS, p, len);
    say("sent folders folder=%s max_seq=%zu", tp->folder, upto);
}

static void send_burst(struct tp *tp, size_t bi)
{
    const struct tp_burst *b = &tp->b[bi];
    size_t per = b->per_batch ? b->per_batch : (b->n ? b->n : 1);
    size_t done = 0;
    do {
        size_t n = b->n - done < per ? b->n - done : per;
        uint64_t flags = 0;
        if (tp->first_pending)
            flags |= b->first_flag;
        if (done + n == b->n)
            flags |= LR_PROTO_INDEX_LAST;
        size_t len;
        uint8_t *p = encode_batch(tp, b->first + done, n, flags, &len);
        if (!p) {
            say("index-encode-failed burst=%zu (over the frame limit)", bi);
            return;
        }
        tp->first_pending = false;
        send_frame(tp, LR_MSG_INDEX, p, len);
        say("sent index burst=%zu entries=%zu flags=%" PRIu64 " bytes=%zu", bi, n, flags, len);
        for (size_t i = b->first + done; i < b->first + done + n; i++)
            tp->e[i].sent = true;
        done += n;
    } while (done < b->n);
    for (size_t r = 0; r < b->nraw; r++) {
        uint8_t *p = lr_xmalloc(b->raw[r].len + 1);
        memcpy(p, b->raw[r].p, b->raw[r].len);
        send_frame(tp, b->raw[r].type, p, b->raw[r].len);
        say("sent raw type=%" PRIu64 " bytes=%zu", b->raw[r].type, b->raw[r].len);
    }
}

static bool all_good_served(const struct tp *tp)
{
    for (size_t i = 0; i < tp->ne; i++) {
        const struct tp_entry *e = &tp->e[i];
        if (!e->sent || !e->good)
            continue;
        for (size_t k = 0; k < e->nchunks; k++)
            if (!e->served[k])
                return false;
    }
    return true;
}

static void quit_cb(uv_timer_t *h);
static void drop_pending(struct tp *tp);

static void request_exit(struct tp *tp, const char *why)
{
    if (tp->exiting)
        return;
    tp->exiting = true;
    say("exit reason=%s", why);
    /* Not from inside a transport callback: defer. */
    uv_timer_start(&tp->quit, quit_cb, 0, 0);
}

static void linger_cb(uv_timer_t *h)
{
    request_exit(h->data, "finished");
}

static void delay_cb(uv_timer_t *h);
static void advance(struct tp *tp);

static void maybe_linger(struct tp *tp)
{
    if (tp->next < tp->nb || !all_good_served(tp))
        return;
    if (tp->have_wf && tp->wf_answers < tp->wf.nchunks)
        return;
    if (!tp->said_all_served) {
        tp->said_all_served = true;
        say("all-good-served");
        if (tp->linger_ms)
            uv_timer_start(&tp->linger, linger_cb, tp->linger_ms, 0);
    }
}

/* Send what the script allows now. */
static void advance(struct tp *tp)
{
    while (tp->next < tp->nb && !tp->exiting) {
        struct tp_burst *b = &tp->b[tp->next];
        if (b->wait_served && !all_good_served(tp))
            return;
        if (b->delay_ms && !tp->delay_done) {
            if (!uv_is_active((uv_handle_t *)&tp->delay))
                uv_timer_start(&tp->delay, delay_cb, b->delay_ms, 0);
            return;
        }
        if (b->reconnect && !tp->reconnect_done) {
            tp->reconnect_done = true;
            say("reconnecting");
            struct lr_err err = {0};
            const char *addrs[] = {tp->addr};
            tp->conn = NULL;
            lr_transport_forget_peer(tp->t, &tp->peer);
            if (lr_transport_dial(tp->t, &tp->peer, addrs, 1, &err) < 0)
                say("dial-failed error=%s", lr_err_msg(&err, LR_EINTERNAL));
            return; /* on_connected goes on */
        }
        if (!tp->conn)
            return;
        send_burst(tp, tp->next);
        tp->next++;
        tp->delay_done = false;
        tp->reconnect_done = false;
    }
    maybe_linger(tp);
}

static void delay_cb(uv_timer_t *h)
{
    struct tp *tp = h->data;
    tp->delay_done = true;
    advance(tp);
}

/* ---- transport callbacks ---- */

static bool is_trusted(void *ud, const struct lr_device_id *peer)
{
    struct tp *tp = ud;
    return lr_device_id_eq(peer, &tp->peer);
}

/* want_first: WANTs with request IDs 1.. (one per chunk), before FOLDERS. */
static void send_wants_first(struct tp *tp)
{
    for (size_t k = 0; k < tp->wf.nchunks; k++) {
        struct lr_proto_want w;
        memset(&w, 0, sizeof(w));
        w.req_id = k + 1;
        snprintf(w.folder_id, sizeof(w.folder_id), "%s", tp->folder);
        w.path = tp->wf.path;
        w.path_len = tp->wf.path_len;
        w.blocks_hash = tp->wf.blocks_hash;
        w.offset = tp->wf.chunks[k].off;
        w.size = tp->wf.chunks[k].len;
        w.hash = tp->wf.chunks[k].hash;
        struct lr_buf b;
        lr_buf_init(&b, 256);
        if (lr_proto_want_encode(&w, &b) < 0) {
            say("want-encode-failed");
            lr_buf_release(&b);
            return;
        }
        size_t len;
        uint8_t *p = lr_buf_detach(&b, &len);
        lr_buf_release(&b);
        int rc = lr_conn_send_owned(tp->conn, LR_STREAM_BULK, LR_MSG_WANT, p, len, NULL);
        if (rc < 0) {
            free(p);
            say("send-failed type=WANT error=%s", lr_strerror(rc));
            return;
        }
    }
    say("sent want-first count=%zu", tp->wf.nchunks);
}

static void folders_delay_cb(uv_timer_t *h)
{
    struct tp *tp = h->data;
    if (!tp->conn)
        return;
    send_folders(tp);
    advance(tp);
}

static void on_connected(void *ud, struct lr_conn *c, const struct lr_device_id *peer,
                         const struct lr_proto_hello *hello)
{
    struct tp *tp = ud;
    (void)peer;
    char *name = lr_escs(hello->name);
    say("connected name=%s", name);
    free(name);
    tp->conn = c;
    tp->first_pending = true;
    if (tp->have_wf) {
        send_wants_first(tp);
        uv_timer_start(&tp->folders_delay, folders_delay_cb, tp->wf_delay_ms, 0);
        return;
    }
    send_folders(tp);
    advance(tp);
}

/* An answer to a want_first WANT: its status, and whether the data is the
 * chunk asked for. */
static void on_chunk(struct tp *tp, const uint8_t *payload, size_t len)
{
    struct lr_proto_chunk c;
    struct lr_err err = {0};
    if (lr_proto_chunk_decode(payload, len, &c, &err) < 0) {
        say("bad-chunk error=%s", lr_err_msg(&err, LR_EPROTO));
        return;
    }
    bool right = false;
    if (tp->have_wf && c.req_id >= 1 && c.req_id <= tp->wf.nchunks &&
        c.status == LR_PROTO_CHUNK_OK) {
        const struct lr_chunk *ch = &tp->wf.chunks[c.req_id - 1];
        uint8_t *buf = lr_xmalloc(ch->len ? ch->len : 1);
        struct lr_hash h;
        struct lr_proto_zc *zc = lr_proto_zc_new();
        if (lr_proto_chunk_data(zc, &c, buf, ch->len, NULL) == 0) {
            lr_sha256(buf, ch->len, &h);
            right = memcmp(&h, &ch->hash, sizeof(h)) == 0;
        }
        lr_proto_zc_free(zc);
        free(buf);
    }
    say("chunk-answer req=%" PRIu64 " status=%" PRIu64 " right=%d", c.req_id, c.status, right);
    if (tp->have_wf && c.req_id >= 1 && c.req_id <= tp->wf.nchunks) {
        tp->wf_answers++;
        maybe_linger(tp);
    }
}

static void on_disconnected(void *ud, struct lr_conn *c, const struct lr_device_id *peer,
                            const char *reason)
{
    struct tp *tp = ud;
    (void)peer;
    char *r = lr_escs(reason ? reason : "");
    say("disconnected reason=%s", r);
    free(r);
    if (tp->conn == c) {
        tp->conn = NULL;
        drop_pending(tp);
    } else {
        return; /* one we dropped on purpose */
    }
    if (tp->exit_on_close)
        request_exit(tp, "closed");
}

static void drop_pending(struct tp *tp)
{
    while (tp->pend_head) {
        struct tp_pending *q = tp->pend_head;
        tp->pend_head = q->next;
        free(q->p);
        free(q);
    }
    tp->pend_tail = NULL;
}

/* Sends queued answers until the budget refuses one: 0, or a send error
 * (everything queued is dropped then). */
static int flush_pending(struct tp *tp, struct lr_conn *c)
{
    while (tp->pend_head) {
        struct tp_pending *q = tp->pend_head;
        int rc = lr_conn_send_owned(c, LR_STREAM_BULK, LR_MSG_CHUNK, q->p, q->len, NULL);
        if (rc == LR_EBUSY)
            return 0;
        if (rc < 0) {
            drop_pending(tp);
            return rc;
        }
        tp->pend_head = q->next;
        if (!tp->pend_head)
            tp->pend_tail = NULL;
        free(q);
    }
    return 0;
}

static void on_writable(void *ud, struct lr_conn *c)
{
    struct tp *tp = ud;
    if (c == tp->conn && flush_pending(tp, c) < 0)
        say("chunk-send-failed error=queued answers lost");
}

static void serve_want(struct tp *tp, struct lr_conn *c, const uint8_t *p, size_t len)
{
    struct lr_proto_want w;
    struct lr_err err = {0};
    int rc = lr_proto_want_decode(p, len, &w, &err);
    if (rc < 0) {
        say("bad-want error=%s", lr_err_msg(&err, rc));
        return;
    }
    char *pe = lr_esc(w.path, w.path_len);
    const struct tp_entry *hit = NULL;
    size_t k = 0;
    for (size_t i = 0; i < tp->ne && !hit; i++) {
        const struct tp_entry *e = &tp->e[i];
        if (!e->sent || e->path_len != w.path_len || memcmp(e->path, w.path, w.path_len) != 0 ||
            memcmp(&e->blocks_hash, &w.blocks_hash, LR_HASH_LEN) != 0)
            continue;
        for (k = 0; k < e->nchunks; k++) {
            const struct lr_chunk *ch = &e->chunks[k];
            if (ch->off == w.offset && ch->len == w.size &&
                memcmp(&ch->hash, &w.hash, LR_HASH_LEN) == 0) {
                hit = e;
                break;
            }
        }
    }
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_CHUNK_MAX);
    uint8_t *bad = NULL;
    bool corrupted = false;
    if (hit && tp->corrupt_left != 0 && w.size > 0) {
        bad = lr_xmalloc(w.size);
        memcpy(bad, hit->data + w.offset, w.size);
        bad[w.size / 2] ^= 0x5a;
        corrupted = true;
        if (tp->corrupt_left > 0)
            tp->corrupt_left--;
    }
    if (hit)
        rc = lr_proto_chunk_encode(NULL, w.req_id, LR_PROTO_CHUNK_OK,
                                   bad ? bad : hit->data + w.offset, w.size, false, &b);
    else
        rc = lr_proto_chunk_encode(NULL, w.req_id, LR_PROTO_CHUNK_NO_SUCH, NULL, 0, false, &b);
    free(bad);
    if (rc < 0) {
        say("chunk-encode-failed error=%s", lr_strerror(rc));
        lr_buf_release(&b);
        free(pe);
        return;
    }
    size_t n;
    uint8_t *pl = lr_buf_detach(&b, &n);
    lr_buf_release(&b);
    /* Answers leave in WANT order; one refused for lack of send budget
     * waits (with those after it) for on_writable. */
    struct tp_pending *q = lr_xcalloc(1, sizeof(*q));
    q->p = pl;
    q->len = n;
    if (tp->pend_tail)
        tp->pend_tail->next = q;
    else
        tp->pend_head = q;
    tp->pend_tail = q;
    rc = flush_pending(tp, c);
    if (rc < 0) {
        say("chunk-send-failed path=%s error=%s", pe, lr_strerror(rc));
    } else if (hit) {
        tp->e[hit - tp->e].served[k] = true;
        say("%s path=%s off=%" PRIu64 " len=%" PRIu32, corrupted ? "served-corrupt" : "served", pe,
            w.offset, w.size);
    } else {
        say("no-such path=%s off=%" PRIu64 " len=%" PRIu32, pe, w.offset, w.size);
    }
    free(pe);
    advance(tp);
}

static void on_message(void *ud, struct lr_conn *c, uint64_t type, const uint8_t *payload,
                       size_t len)
{
    struct tp *tp = ud;
    if (c != tp->conn)
        return;
    switch (type) {
    case LR_MSG_WANT:
        serve_want(tp, c, payload, len);
        break;
    case LR_MSG_CHUNK:
        on_chunk(tp, payload, len);
        break;
    case LR_MSG_FOLDERS: {
        struct lr_proto_folders f;
        if (lr_proto_folders_decode(payload, len, &f, NULL) == 0) {
            for (size_t i = 0; i < f.n; i++)
                say("their-folder id=%s index_id=%016" PRIx64 " holds_ours=%016" PRIx64 "/%" PRIu64,
                    f.v[i].id, f.v[i].index_id, f.v[i].peer_index_id, f.v[i].peer_seq);
            lr_proto_folders_release(&f);
        }
        break;
    }
    default:
        break; /* their INDEX, CHUNK: not our business */
    }
}

/* ---- main ---- */

static void closed(void *ud)
{
    struct tp *tp = ud;
    uv_close((uv_handle_t *)&tp->timeout, NULL);
    uv_close((uv_handle_t *)&tp->delay, NULL);
    uv_close((uv_handle_t *)&tp->folders_delay, NULL);
    uv_close((uv_handle_t *)&tp->linger, NULL);
    uv_close((uv_handle_t *)&tp->quit, NULL);
}

static void quit_cb(uv_timer_t *h)
{
    struct tp *tp = h->data;
    uv_timer_stop(&tp->timeout);
    uv_timer_stop(&tp->delay);
    uv_timer_stop(&tp->folders_delay);
    uv_timer_stop(&tp->linger);
    lr_transport_close(tp->t, 0, closed, tp);
}

static void timeout_cb(uv_timer_t *h)
{
    request_exit(h->data, "timeout");
}

static const char *arg_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        fail_usage("missing value after an option");
    return argv[++*i];
}

int main(int argc, char **argv)
{
    const char *home = NULL, *connect = NULL, *peer = NULL, *script = NULL;
    uint64_t timeout_ms = 30000;
    struct tp tp;
    memset(&tp, 0, sizeof(tp));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--home") == 0)
            home = arg_value(argc, argv, &i);
        else if (strcmp(argv[i], "--connect") == 0)
            connect = arg_value(argc, argv, &i);
        else if (strcmp(argv[i], "--peer") == 0)
            peer = arg_value(argc, argv, &i);
        else if (strcmp(argv[i], "--script") == 0)
            script = arg_value(argc, argv, &i);
        else if (strcmp(argv[i], "--timeout-ms") == 0)
            timeout_ms = strtoull(arg_value(argc, argv, &i), NULL, 10);
        else if (strcmp(argv[i], "--linger-ms") == 0)
            tp.linger_ms = strtoull(arg_value(argc, argv, &i), NULL, 10);
        else if (strcmp(argv[i], "--exit-on-close") == 0)
            tp.exit_on_close = true;
        else if (strcmp(argv[i], "--corrupt") == 0) {
            const char *v = arg_value(argc, argv, &i);
            char *end = NULL;
            if (strcmp(v, "all") == 0) {
                tp.corrupt_left = -1;
            } else {
                tp.corrupt_left = (int64_t)strtoll(v, &end, 10);
                if (end == v || *end || tp.corrupt_left < 0)
                    fail_usage("--corrupt takes a count or 'all'");
            }
        } else
            fail_usage("usage: lr_test_peer --home H --connect HOST:PORT --peer DEVICE_ID "
                       "--script FILE [--timeout-ms N] [--linger-ms N] [--exit-on-close] "
                       "[--corrupt N|all]");
    }
    if (!home || !connect || !peer || !script || timeout_ms == 0)
        fail_usage("--home, --connect, --peer and --script are required");
    struct lr_err err = {0};
    if (lr_device_id_parse(peer, &tp.peer, &err) < 0)
        fail_usage(err.msg);
    snprintf(tp.addr, sizeof(tp.addr), "%s", connect);
    load_script(&tp, script);
    lr_log_set_level(LR_LOG_WARN);

    struct lr_identity *me;
    int rc = lr_identity_load(home, &me, &err);
    if (rc < 0) {
        fprintf(stderr, "lr_test_peer: %s\n", lr_err_msg(&err, rc));
        return 1;
    }
    tp.me_u64 = lr_device_id_u64(lr_identity_device_id(me));
    while (tp.index_id == 0) {
        if (getrandom(&tp.index_id, sizeof(tp.index_id), 0) != (ssize_t)sizeof(tp.index_id))
            tp.index_id = (uint64_t)time(NULL);
    }
    tp.loop = uv_default_loop();
    struct lr_transport_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    const char *listen[] = {"127.0.0.1:0"};
    cfg.listen = listen;
    cfg.nlisten = 1;
    cfg.cert_path = lr_identity_cert_path(me);
    cfg.key_path = lr_identity_key_path(me);
    cfg.home = home;
    cfg.hello.version = LR_PROTO_VERSION;
    snprintf(cfg.hello.name, sizeof(cfg.hello.name), "lr_test_peer");
    snprintf(cfg.hello.software, sizeof(cfg.hello.software), "lr_test_peer");
    cfg.hello.features = tp.features;
    cfg.backoff_min_ms = 200;
    cfg.backoff_max_ms = 1000;
    struct lr_transport_cbs cbs = {
        .ud = &tp,
        .is_trusted = is_trusted,
        .on_connected = on_connected,
        .on_disconnected = on_disconnected,
        .on_message = on_message,
        .on_writable = on_writable,
    };
    rc = lr_transport_new(tp.loop, &cfg, &cbs, &tp.t, &err);
    lr_identity_free(me);
    if (rc < 0) {
        fprintf(stderr, "lr_test_peer: transport: %s\n", lr_err_msg(&err, rc));
        return 1;
    }
    uv_timer_t *timers[] = {&tp.timeout, &tp.delay, &tp.linger, &tp.quit, &tp.folders_delay};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        uv_timer_init(tp.loop, timers[i]);
        timers[i]->data = &tp;
    }
    uv_timer_start(&tp.timeout, timeout_cb, timeout_ms, 0);
    const char *addrs[] = {tp.addr};
    rc = lr_transport_dial(tp.t, &tp.peer, addrs, 1, &err);
    if (rc < 0) {
        fprintf(stderr, "lr_test_peer: dial: %s\n", lr_err_msg(&err, rc));
        return 1;
    }
    uv_run(tp.loop, UV_RUN_DEFAULT);
    uv_loop_close(tp.loop);
    for (size_t i = 0; i < tp.ne; i++) {
        free(tp.e[i].path);
        free(tp.e[i].data);
        free(tp.e[i].target);
        free(tp.e[i].chunks);
        free(tp.e[i].served);
    }
    free(tp.e);
    for (size_t i = 0; i < tp.nb; i++) {
        for (size_t r = 0; r < tp.b[i].nraw; r++)
            free(tp.b[i].raw[r].p);
        free(tp.b[i].raw);
    }
    free(tp.b);
    free(tp.wf.path);
    free(tp.wf.data);
    free(tp.wf.chunks);
    free(tp.wf.served);
    drop_pending(&tp);
    return 0;
}
