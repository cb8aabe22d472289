/*
 * xfer.c - the chunk transfer scheduler (see xfer.h).
 */
#include "sync/xfer.h"

#include "util/err.h"
#include "util/xalloc.h"

#include <stdlib.h>
#include <string.h>

struct xs_peer {
    struct lr_device_id id;
    bool up;
    bool grace; /* down, and may be back soon (lr_xs_peer_gone ends it) */
    uint32_t nwants;
    uint64_t bytes;
    uint64_t window; /* bytes it may have outstanding (adaptive, xfer.h) */
    /* The delivery rate sample in progress (adaptive window): its busy
     * time so far (periods with requests outstanding), the start of the
     * current busy period (0: idle), bytes answered in it; the estimate. */
    uint64_t rate_busy, rate_t0, rate_bytes;
    double rate;
    bool full; /* within one lr_xs_pump walk: found without room */
};

/* An outstanding WANT. x is NULL once its transfer was removed. */
struct xs_req {
    uint64_t req_id; /* 0: free slot (IDs start at 1) */
    struct lr_xs_xfer *x;
    size_t chunk;
    uint32_t len;
    uint32_t peer;
    uint64_t sent_ms; /* lr_xs_clock when it was made */
};

struct lr_xs_xfer {
    struct lr_xs_xfer *next, *prev; /* every transfer */
    struct lr_xs_xfer *knext;       /* key table chain */
    bool keyed;
    struct lr_hash key;
    struct lr_xs_xfer *rnext, *rprev; /* ready queue, or the report list */
    bool in_ready, reported, in_report;
    void *user;
    size_t n;
    uint32_t *len;
    uint8_t *st;
    uint32_t *from; /* per chunk: the peer index whose answer is RECV */
    size_t ndone, cursor;
    size_t ninflight;  /* WANTED + RECV */
    size_t nwanted;    /* WANTED: requests in the table that point here */
    uint32_t *holders; /* indices into xs->peers */
    bool *bad;
    /* Per holder: NULL for a peer whose index holds the version; for a peer
     * that announced chunks (HAVE) while downloading it, a bitmap of the
     * chunks it holds (n bits, sized from our own count). */
    uint8_t **have;
    size_t nholders;
    size_t nfrom_partial; /* chunks written whose data came from a partial holder */
    uint32_t failures;
    enum lr_xs_act_kind report; /* COMPLETE or DROP while in_report */
    const char *why;
};

struct lr_xs {
    struct lr_xs_limits lim;
    bool adaptive;
    uint64_t now_ms;
    struct xs_peer *peers;
    size_t npeers;
    struct lr_xs_xfer *all;
    size_t count;
    struct lr_xs_xfer *ready, *ready_tail;
    struct lr_xs_xfer *rep, *rep_tail; /* COMPLETE / DROP to report, FIFO */
    /* Outstanding requests: open addressing, linear probing, power-of-two size. */
    struct xs_req *req;
    size_t req_cap, nreq;
    uint64_t next_req_id;
    /* Keyed transfers (lr_xs_set_key): chained, power-of-two buckets. */
    struct lr_xs_xfer **kt;
    size_t kt_cap, nkeyed;
};

/* ---- peers ---- */

static uint32_t peer_index(struct lr_xs *xs, const struct lr_device_id *id, bool create)
{
    for (size_t i = 0; i < xs->npeers; i++)
        if (lr_device_id_eq(&xs->peers[i].id, id))
            return (uint32_t)i;
    if (!create)
        return UINT32_MAX;
    xs->peers = lr_xreallocarray(xs->peers, xs->npeers + 1, sizeof(*xs->peers));
    struct xs_peer *p = &xs->peers[xs->npeers];
    memset(p, 0, sizeof(*p));
    p->id = *id;
    p->window = xs->lim.bytes_max;
    if (xs->adaptive && 2 * xs->lim.bytes_min < p->window)
        p->window = 2 * xs->lim.bytes_min;
    return (uint32_t)xs->npeers++;
}

/* ---- request table ---- */

static size_t slot_of(const struct lr_xs *xs, uint64_t id)
{
    /* IDs are sequential: a multiplicative hash spreads them anyway. */
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (xs->req_cap - 1);
}

static void req_grow(struct lr_xs *xs)
{
    size_t old_cap = xs->req_cap;
    struct xs_req *old = xs->req;
    xs->req_cap = old_cap ? old_cap * 2 : 64;
    xs->req = lr_xcalloc(xs->req_cap, sizeof(*xs->req));
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].req_id)
            continue;
        size_t s = slot_of(xs, old[i].req_id);
        while (xs->req[s].req_id)
            s = (s + 1) & (xs->req_cap - 1);
        xs->req[s] = old[i];
    }
    free(old);
}

static struct xs_req *req_insert(struct lr_xs *xs, uint64_t id)
{
    if ((xs->nreq + 1) * 2 > xs->req_cap)
        req_grow(xs);
    size_t s = slot_of(xs, id);
    while (xs->req[s].req_id)
        s = (s + 1) & (xs->req_cap - 1);
    xs->nreq++;
    xs->req[s].req_id = id;
    return &xs->req[s];
}

static struct xs_req *req_find(struct lr_xs *xs, uint64_t id)
{
    if (!xs->req_cap || !id)
        return NULL;
    for (size_t s = slot_of(xs, id);; s = (s + 1) & (xs->req_cap - 1)) {
        if (!xs->req[s].req_id)
            return NULL;
        if (xs->req[s].req_id == id)
            return &xs->req[s];
    }
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void req_delete(struct lr_xs *xs, struct xs_req *r)
{
    size_t mask = xs->req_cap - 1, i = (size_t)(r - xs->req);
    xs->req[i].req_id = 0;
    xs->nreq--;
    for (size_t j = (i + 1) & mask; xs->req[j].req_id; j = (j + 1) & mask) {
        size_t home = slot_of(xs, xs->req[j].req_id);
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (stays)
            continue;
        xs->req[i] = xs->req[j];
        xs->req[j].req_id = 0;
        i = j;
    }
}

/* ---- queues ---- */

static void ready_add(struct lr_xs *xs, struct lr_xs_xfer *x)
{
    if (x->in_ready || x->reported || x->in_report)
        return;
    x->in_ready = true;
    x->rnext = NULL;
    x->rprev = xs->ready_tail;
    if (xs->ready_tail)
        xs->ready_tail->rnext = x;
    else
        xs->ready = x;
    xs->ready_tail = x;
}

static void ready_remove(struct lr_xs *xs, struct lr_xs_xfer *x)
{
    if (!x->in_ready)
        return;
    x->in_ready = false;
    if (x->rprev)
        x->rprev->rnext = x->rnext;
    else
        xs->ready = x->rnext;
    if (x->rnext)
        x->rnext->rprev = x->rprev;
    else
        xs->ready_tail = x->rprev;
    x->rnext = x->rprev = NULL;
}

static void report(struct lr_xs *xs, struct lr_xs_xfer *x, enum lr_xs_act_kind kind,
                   const char *why)
{
    if (x->reported || x->in_report)
        return;
    ready_remove(xs, x);
    x->in_report = true;
    x->report = kind;
    x->why = why;
    x->rnext = NULL;
    x->rprev = xs->rep_tail;
    if (xs->rep_tail)
        xs->rep_tail->rnext = x;
    else
        xs->rep = x;
    xs->rep_tail = x;
}

static void report_unlink(struct lr_xs *xs, struct lr_xs_xfer *x)
{
    if (!x->in_report)
        return;
    x->in_report = false;
    if (x->rprev)
        x->rprev->rnext = x->rnext;
    else
        xs->rep = x->rnext;
    if (x->rnext)
        x->rnext->rprev = x->rprev;
    else
        xs->rep_tail = x->rprev;
    x->rnext = x->rprev = NULL;
}

/* ---- lifecycle ---- */

struct lr_xs *lr_xs_new(const struct lr_xs_limits *lim)
{
    struct lr_xs *xs = lr_xcalloc(1, sizeof(*xs));
    xs->lim = *lim;
    if (!xs->lim.wants_max)
        xs->lim.wants_max = 1;
    if (!xs->lim.blocked_max)
        xs->lim.blocked_max = 1;
    xs->adaptive = xs->lim.bytes_min && xs->lim.latency_ms && xs->lim.bytes_min < xs->lim.bytes_max;
    xs->next_req_id = 1;
    return xs;
}

void lr_xs_clock(struct lr_xs *xs, uint64_t now_ms)
{
    xs->now_ms = now_ms;
}

uint64_t lr_xs_peer_window(const struct lr_xs *xs, const struct lr_device_id *peer)
{
    for (size_t i = 0; i < xs->npeers; i++)
        if (lr_device_id_eq(&xs->peers[i].id, peer))
            return xs->peers[i].window;
    return xs->adaptive && 2 * xs->lim.bytes_min < xs->lim.bytes_max ? 2 * xs->lim.bytes_min
                                                                     : xs->lim.bytes_max;
}

/* Shortest delivery-rate sample of the adaptive window (window_adapt). */
#define XS_RATE_SAMPLE_MS 250

/*
 * The answer to a request of `len` bytes made at sent_ms came now. The
 * window follows the peer's delivery rate, measured over samples of at
 * least XS_RATE_SAMPLE_MS while requests are outstanding: rate × latency_ms.
 * Widening by each quick answer (slow start) overshot on a lossy link: the
 * first answers come before any queue has built, and 32 MiB was asked for
 * before the slow ones showed it, with every later file queued behind it.
 */
static void window_adapt(struct lr_xs *xs, struct xs_peer *p, uint64_t sent_ms, uint32_t len)
{
    if (!xs->adaptive)
        return;
    if (p->rate_t0 == 0)
        p->rate_t0 = sent_ms ? sent_ms : 1;
    p->rate_bytes += len;
    uint64_t busy = xs->now_ms > p->rate_t0 ? xs->now_ms - p->rate_t0 : 0;
    uint64_t span = p->rate_busy + busy;
    if (span >= XS_RATE_SAMPLE_MS) {
        double r = (double)p->rate_bytes * 1000.0 / (double)span;
        p->rate = p->rate > 0 ? 0.5 * p->rate + 0.5 * r : r;
        double w = p->rate * (double)xs->lim.latency_ms / 1000.0;
        p->window = w >= (double)xs->lim.bytes_max   ? xs->lim.bytes_max
                    : w <= (double)xs->lim.bytes_min ? xs->lim.bytes_min
                                                     : (uint64_t)w;
        p->rate_t0 = xs->now_ms;
        p->rate_bytes = 0;
        p->rate_busy = busy = 0;
    }
    if (p->nwants == 0) { /* idle until the next request: not counted */
        p->rate_busy += busy;
        p->rate_t0 = 0;
    }
}

static void xfer_free(struct lr_xs_xfer *x)
{
    for (size_t i = 0; i < x->nholders; i++)
        free(x->have[i]);
    free(x->have);
    free(x->len);
    free(x->st);
    free(x->from);
    free(x->holders);
    free(x->bad);
    free(x);
}

void lr_xs_free(struct lr_xs *xs)
{
    if (!xs)
        return;
    while (xs->all) {
        struct lr_xs_xfer *x = xs->all;
        xs->all = x->next;
        xfer_free(x);
    }
    free(xs->req);
    free(xs->peers);
    free(xs->kt);
    free(xs);
}

struct lr_xs_xfer *lr_xs_add(struct lr_xs *xs, void *user, const uint32_t *chunk_len,
                             size_t nchunks, const bool *done, const struct lr_device_id *holders,
                             size_t nholders)
{
    struct lr_xs_xfer *x = lr_xcalloc(1, sizeof(*x));
    x->user = user;
    x->n = nchunks;
    x->len = lr_xcalloc(nchunks ? nchunks : 1, sizeof(*x->len));
    x->st = lr_xcalloc(nchunks ? nchunks : 1, 1);
    x->from = lr_xcalloc(nchunks ? nchunks : 1, sizeof(*x->from));
    if (nchunks)
        memcpy(x->len, chunk_len, nchunks * sizeof(*x->len));
    for (size_t k = 0; done && k < nchunks; k++) {
        if (done[k]) {
            x->st[k] = LR_XS_DONE;
            x->ndone++;
        }
    }
    x->holders = lr_xcalloc(nholders ? nholders : 1, sizeof(*x->holders));
    x->bad = lr_xcalloc(nholders ? nholders : 1, sizeof(*x->bad));
    x->have = lr_xcalloc(nholders ? nholders : 1, sizeof(*x->have));
    for (size_t i = 0; i < nholders; i++) {
        uint32_t pi = peer_index(xs, &holders[i], true);
        bool dup = false;
        for (size_t k = 0; k < x->nholders && !dup; k++)
            dup = x->holders[k] == pi;
        if (!dup)
            x->holders[x->nholders++] = pi;
    }
    x->next = xs->all;
    if (xs->all)
        xs->all->prev = x;
    xs->all = x;
    xs->count++;
    if (x->ndone == x->n)
        report(xs, x, LR_XS_COMPLETE, NULL);
    else
        ready_add(xs, x);
    return x;
}

/* The holder slot of peer pi in x, or -1. */
static ptrdiff_t holder_slot(const struct lr_xs_xfer *x, uint32_t pi)
{
    for (size_t k = 0; k < x->nholders; k++)
        if (x->holders[k] == pi)
            return (ptrdiff_t)k;
    return -1;
}

static size_t holder_new(struct lr_xs_xfer *x, uint32_t pi)
{
    x->holders = lr_xreallocarray(x->holders, x->nholders + 1, sizeof(*x->holders));
    x->bad = lr_xreallocarray(x->bad, x->nholders + 1, sizeof(*x->bad));
    x->have = lr_xreallocarray(x->have, x->nholders + 1, sizeof(*x->have));
    x->holders[x->nholders] = pi;
    x->bad[x->nholders] = false;
    x->have[x->nholders] = NULL;
    return x->nholders++;
}

void lr_xs_add_holders(struct lr_xs *xs, struct lr_xs_xfer *x, const struct lr_device_id *holders,
                       size_t nholders)
{
    for (size_t i = 0; i < nholders; i++) {
        uint32_t pi = peer_index(xs, &holders[i], true);
        ptrdiff_t k = holder_slot(x, pi);
        if (k < 0) {
            holder_new(x, pi);
        } else if (x->have[k]) {
            /* Finished its download: it has every chunk now. */
            free(x->have[k]);
            x->have[k] = NULL;
        }
    }
    if (x->cursor < x->n)
        ready_add(xs, x);
}

static bool bit_get(const uint8_t *bits, size_t k)
{
    return (bits[k >> 3] >> (k & 7)) & 1;
}

size_t lr_xs_have(struct lr_xs *xs, struct lr_xs_xfer *x, const struct lr_device_id *peer,
                  const uint8_t *bits)
{
    uint32_t pi = peer_index(xs, peer, true);
    ptrdiff_t k = holder_slot(x, pi);
    if (k >= 0 && !x->have[k])
        return 0; /* its index holds the version: nothing to learn */
    if (k < 0)
        k = (ptrdiff_t)holder_new(x, pi);
    size_t nb = (x->n + 7) / 8;
    if (!x->have[k])
        x->have[k] = lr_xcalloc(nb ? nb : 1, 1);
    uint8_t *h = x->have[k];
    size_t learned = 0;
    bool useful = false; /* a chunk we still lack */
    for (size_t b = 0; b < nb; b++) {
        uint8_t in = bits[b];
        if (b == nb - 1 && (x->n & 7))
            in = (uint8_t)(in & ((1u << (x->n & 7)) - 1));
        uint8_t fresh = (uint8_t)(in & ~h[b]);
        if (!fresh)
            continue;
        h[b] = (uint8_t)(h[b] | fresh);
        for (size_t j = 0; j < 8; j++) {
            if (!((fresh >> j) & 1))
                continue;
            learned++;
            if (x->st[b * 8 + j] == LR_XS_TODO)
                useful = true;
        }
    }
    if (useful && x->cursor < x->n)
        ready_add(xs, x);
    return learned;
}

enum lr_xs_holder lr_xs_holder_of(const struct lr_xs *xs, const struct lr_xs_xfer *x,
                                  const struct lr_device_id *peer)
{
    for (size_t k = 0; k < x->nholders; k++)
        if (lr_device_id_eq(&xs->peers[x->holders[k]].id, peer))
            return x->have[k] ? LR_XS_HOLDER_PARTIAL : LR_XS_HOLDER_FULL;
    return LR_XS_HOLDER_NONE;
}

void lr_xs_done_bits(const struct lr_xs_xfer *x, uint8_t *bits)
{
    memset(bits, 0, (x->n + 7) / 8);
    for (size_t k = 0; k < x->n; k++)
        if (x->st[k] == LR_XS_DONE)
            bits[k >> 3] = (uint8_t)(bits[k >> 3] | (1u << (k & 7)));
}

size_t lr_xs_nfrom_partial(const struct lr_xs_xfer *x)
{
    return x->nfrom_partial;
}

/* ---- keys ---- */

static size_t key_slot(const struct lr_xs *xs, const struct lr_hash *key)
{
    uint64_t v;
    memcpy(&v, key->b, sizeof(v)); /* a cryptographic hash: any 8 bytes spread */
    return (size_t)v & (xs->kt_cap - 1);
}

static void key_unlink(struct lr_xs *xs, struct lr_xs_xfer *x)
{
    if (!x->keyed)
        return;
    struct lr_xs_xfer **pp = &xs->kt[key_slot(xs, &x->key)];
    while (*pp != x)
        pp = &(*pp)->knext;
    *pp = x->knext;
    x->knext = NULL;
    x->keyed = false;
    xs->nkeyed--;
}

void lr_xs_set_key(struct lr_xs *xs, struct lr_xs_xfer *x, const struct lr_hash *key)
{
    key_unlink(xs, x);
    if (xs->nkeyed + 1 > xs->kt_cap) {
        size_t old_cap = xs->kt_cap;
        struct lr_xs_xfer **old = xs->kt;
        xs->kt_cap = old_cap ? old_cap * 2 : 16;
        xs->kt = lr_xcalloc(xs->kt_cap, sizeof(*xs->kt));
        for (size_t i = 0; i < old_cap; i++) {
            struct lr_xs_xfer *next;
            for (struct lr_xs_xfer *y = old[i]; y; y = next) {
                next = y->knext;
                size_t s = key_slot(xs, &y->key);
                y->knext = xs->kt[s];
                xs->kt[s] = y;
            }
        }
        free(old);
    }
    x->key = *key;
    x->keyed = true;
    size_t s = key_slot(xs, key);
    x->knext = xs->kt[s];
    xs->kt[s] = x;
    xs->nkeyed++;
}

struct lr_xs_xfer *lr_xs_find(const struct lr_xs *xs, const struct lr_hash *key)
{
    if (!xs->kt_cap)
        return NULL;
    for (struct lr_xs_xfer *x = xs->kt[key_slot(xs, key)]; x; x = x->knext)
        if (memcmp(&x->key, key, sizeof(*key)) == 0)
            return x;
    return NULL;
}

void lr_xs_remove(struct lr_xs *xs, struct lr_xs_xfer *x)
{
    ready_remove(xs, x);
    report_unlink(xs, x);
    key_unlink(xs, x);
    if (x->nwanted) {
        /* Answers to these still arrive: keep them matched, pointing nowhere. */
        for (size_t i = 0; i < xs->req_cap && x->nwanted; i++) {
            if (xs->req[i].req_id && xs->req[i].x == x) {
                xs->req[i].x = NULL;
                x->nwanted--;
            }
        }
    }
    if (x->prev)
        x->prev->next = x->next;
    else
        xs->all = x->next;
    if (x->next)
        x->next->prev = x->prev;
    xs->count--;
    xfer_free(x);
}

void *lr_xs_user(const struct lr_xs_xfer *x)
{
    return x->user;
}

size_t lr_xs_nchunks(const struct lr_xs_xfer *x)
{
    return x->n;
}

size_t lr_xs_ndone(const struct lr_xs_xfer *x)
{
    return x->ndone;
}

enum lr_xs_chunk_state lr_xs_state(const struct lr_xs_xfer *x, size_t chunk)
{
    return chunk < x->n ? (enum lr_xs_chunk_state)x->st[chunk] : LR_XS_DONE;
}

size_t lr_xs_count(const struct lr_xs *xs)
{
    return xs->count;
}

/* ---- peers ---- */

void lr_xs_peer_up(struct lr_xs *xs, const struct lr_device_id *peer)
{
    uint32_t pi = peer_index(xs, peer, true); /* may move xs->peers */
    xs->peers[pi].up = true;
    xs->peers[pi].grace = false;
    /* Transfers parked for want of a holder may now have one. */
    for (struct lr_xs_xfer *x = xs->all; x; x = x->next)
        if (x->cursor < x->n)
            ready_add(xs, x);
}

/* A chunk goes back to TODO (answer refused, peer gone, verification failed). */
static void back_to_todo(struct lr_xs *xs, struct lr_xs_xfer *x, size_t chunk)
{
    x->st[chunk] = LR_XS_TODO;
    x->ninflight--;
    if (chunk < x->cursor)
        x->cursor = chunk;
    ready_add(xs, x);
}

void lr_xs_peer_down(struct lr_xs *xs, const struct lr_device_id *peer)
{
    uint32_t pi = peer_index(xs, peer, false);
    if (pi == UINT32_MAX)
        return;
    struct xs_peer *p = &xs->peers[pi];
    p->up = false;
    p->grace = true;
    for (size_t i = 0; i < xs->req_cap;) {
        struct xs_req *r = &xs->req[i];
        if (!r->req_id || r->peer != pi) {
            i++;
            continue;
        }
        struct lr_xs_xfer *x = r->x;
        size_t chunk = r->chunk;
        req_delete(xs, r); /* may move another entry into slot i: look again */
        if (x) {
            x->nwanted--;
            back_to_todo(xs, x, chunk);
        }
    }
    p->nwants = 0;
    p->bytes = 0;
    /* What it announced held only while connected: it may lose or drop its
     * staging file meanwhile, and says so again when it is back. */
    for (struct lr_xs_xfer *x = xs->all; x; x = x->next) {
        ptrdiff_t k = holder_slot(x, pi);
        if (k >= 0 && x->have[k])
            memset(x->have[k], 0, (x->n + 7) / 8 ? (x->n + 7) / 8 : 1);
    }
}

void lr_xs_peer_gone(struct lr_xs *xs, const struct lr_device_id *peer)
{
    uint32_t pi = peer_index(xs, peer, false);
    if (pi == UINT32_MAX || xs->peers[pi].up || !xs->peers[pi].grace)
        return;
    xs->peers[pi].grace = false;
    /* Transfers parked waiting for it are judged again (dropped if nobody
     * else can serve them). */
    for (struct lr_xs_xfer *x = xs->all; x; x = x->next)
        if (x->cursor < x->n)
            ready_add(xs, x);
}

uint32_t lr_xs_peer_wants(const struct lr_xs *xs, const struct lr_device_id *peer)
{
    for (size_t i = 0; i < xs->npeers; i++)
        if (lr_device_id_eq(&xs->peers[i].id, peer))
            return xs->peers[i].nwants;
    return 0;
}

uint64_t lr_xs_peer_bytes(const struct lr_xs *xs, const struct lr_device_id *peer)
{
    for (size_t i = 0; i < xs->npeers; i++)
        if (lr_device_id_eq(&xs->peers[i].id, peer))
            return xs->peers[i].bytes;
    return 0;
}

/* ---- pumping ---- */

enum pump_res { PUMP_MORE, PUMP_BLOCKED, PUMP_OUT_OF_ROOM, PUMP_ROTATE };

/* Bytes of WANTs a transfer may send per visit of the pump while others
 * wait in the ready queue; it then goes to the back. Without the turn, the
 * queue's head took every slot a reply freed, so a 300 MB file kept 300
 * one-chunk files waiting until its last chunk was asked for (minutes on a
 * lossy link). About 4 average chunks: a run of a large file still reaches
 * its sender together, and a small file is asked for whole in one turn. */
#define XS_TURN_BYTES (256u * 1024)
/* Transfers whose holders are all full that one walk passes over, at most. */
#define XS_PASS_MAX 4096

/* The usable holder of chunk k with the fewest bytes outstanding that has
 * room for it; *any says whether any usable holder of k is connected at all. */
static int pick(struct lr_xs *xs, struct lr_xs_xfer *x, size_t k, bool *any)
{
    int best = -1;
    uint32_t len = x->len[k];
    for (size_t i = 0; i < x->nholders; i++) {
        struct xs_peer *p = &xs->peers[x->holders[i]];
        if (x->bad[i] || !p->up || (x->have[i] && !bit_get(x->have[i], k)))
            continue;
        *any = true;
        if (p->nwants >= xs->lim.wants_max || p->bytes + len > p->window)
            continue;
        if (best < 0 || p->bytes < xs->peers[x->holders[best]].bytes)
            best = (int)i;
    }
    return best;
}

/* Whether a connected usable holder has every chunk; if not, chunks no
 * connected holder has are skipped (partial holders may have later ones). */
static bool full_holder_up(const struct lr_xs *xs, const struct lr_xs_xfer *x)
{
    for (size_t i = 0; i < x->nholders; i++)
        if (!x->bad[i] && !x->have[i] && xs->peers[x->holders[i]].up)
            return true;
    return false;
}

/* Whether a usable full holder of x is down but not given up on. */
static bool holder_in_grace(const struct lr_xs *xs, const struct lr_xs_xfer *x)
{
    for (size_t i = 0; i < x->nholders; i++)
        if (!x->bad[i] && !x->have[i] && xs->peers[x->holders[i]].grace)
            return true;
    return false;
}

/* Chunk k of x found no holder with room: those holders are full for this
 * walk (a smaller chunk of another transfer might still have fitted; the
 * next walk tries again). */
static void mark_full(struct lr_xs *xs, struct lr_xs_xfer *x, size_t k)
{
    for (size_t i = 0; i < x->nholders; i++) {
        struct xs_peer *p = &xs->peers[x->holders[i]];
        if (!x->bad[i] && p->up && (!x->have[i] || bit_get(x->have[i], k)))
            p->full = true;
    }
}

/* Whether every usable holder of x was found full in this walk: the pump
 * passes over it without counting it as blocked. Otherwise transfers held
 * only by a full peer, queued ahead, stopped every walk (blocked_max)
 * before it reached one whose peer had room (a file from a fast peer
 * waited behind ten from a slow one). A partial holder counts as usable. */
static bool holders_full(const struct lr_xs *xs, const struct lr_xs_xfer *x)
{
    bool any = false;
    for (size_t i = 0; i < x->nholders; i++) {
        const struct xs_peer *p = &xs->peers[x->holders[i]];
        if (x->bad[i] || !p->up)
            continue;
        if (!p->full)
            return false;
        any = true;
    }
    return any;
}

static enum pump_res pump_one(struct lr_xs *xs, struct lr_xs_xfer *x, struct lr_xs_act *out,
                              size_t *n, size_t max)
{
    bool full = false;
    bool skip = !full_holder_up(xs, x);
    bool others = xs->ready != x || x->rnext;
    uint64_t turn = 0;
    for (size_t k = x->cursor; k < x->n; k++) {
        if (x->st[k] != LR_XS_TODO) {
            if (k == x->cursor)
                x->cursor++;
            continue;
        }
        if (*n >= max)
            return PUMP_OUT_OF_ROOM;
        if (others && turn >= XS_TURN_BYTES)
            return PUMP_ROTATE;
        bool any = false;
        int h = pick(xs, x, k, &any);
        if (h < 0 && !any && skip)
            continue; /* nobody connected has it: maybe a later one */
        if (h < 0) {
            full = any;
            if (full)
                mark_full(xs, x, k);
            break;
        }
        uint32_t pi = x->holders[h];
        struct xs_peer *p = &xs->peers[pi];
        struct xs_req *r = req_insert(xs, xs->next_req_id++);
        r->x = x;
        r->chunk = k;
        r->len = x->len[k];
        r->peer = pi;
        r->sent_ms = xs->now_ms;
        p->nwants++;
        p->bytes += x->len[k];
        turn += x->len[k];
        x->st[k] = LR_XS_WANTED;
        x->ninflight++;
        x->nwanted++;
        if (k == x->cursor)
            x->cursor++;
        struct lr_xs_act *a = &out[(*n)++];
        memset(a, 0, sizeof(*a));
        a->kind = LR_XS_WANT;
        a->x = x;
        a->chunk = k;
        a->peer = &p->id;
        a->req_id = r->req_id;
    }
    if (x->cursor >= x->n) {
        ready_remove(xs, x); /* all asked; a failure puts it back */
        return PUMP_MORE;
    }
    if (full)
        return PUMP_BLOCKED;
    /* No usable holder is connected. One that just left may be back (a
     * reconnect, a crossing dial replacing the connection): wait for it. */
    if (x->ninflight == 0 && !holder_in_grace(xs, x))
        report(xs, x, LR_XS_DROP, LR_XS_NO_PEER);
    else
        ready_remove(xs, x); /* back when an answer arrives or a peer comes or goes */
    return PUMP_MORE;
}

size_t lr_xs_pump(struct lr_xs *xs, struct lr_xs_act *out, size_t max)
{
    size_t n = 0;
    while (xs->rep && n < max) {
        struct lr_xs_xfer *x = xs->rep;
        report_unlink(xs, x);
        x->reported = true;
        struct lr_xs_act *a = &out[n++];
        memset(a, 0, sizeof(*a));
        a->kind = x->report;
        a->x = x;
        a->why = x->why;
    }
    uint32_t blocked = 0;
    size_t up = 0, nfull = 0, passed = 0;
    for (size_t i = 0; i < xs->npeers; i++) {
        xs->peers[i].full = false;
        up += xs->peers[i].up;
    }
    struct lr_xs_xfer *next;
    for (struct lr_xs_xfer *x = xs->ready; x && n < max && blocked < xs->lim.blocked_max;
         x = next) {
        next = x->rnext;
        if (nfull && holders_full(xs, x)) {
            if (++passed > XS_PASS_MAX)
                break; /* bounded work per walk */
            continue;
        }
        enum pump_res r = pump_one(xs, x, out, &n, max);
        if (r == PUMP_BLOCKED) {
            blocked++;
            nfull = 0;
            for (size_t i = 0; i < xs->npeers; i++)
                nfull += xs->peers[i].up && xs->peers[i].full;
            if (nfull >= up)
                break; /* nobody has room */
        } else if (r == PUMP_OUT_OF_ROOM) {
            break;
        } else if (r == PUMP_ROTATE) {
            /* Its turn is over: to the back, where this walk reaches it
             * again after the others had theirs. */
            ready_remove(xs, x);
            ready_add(xs, x);
            if (!next)
                next = x;
        }
    }
    /* A drop found while pumping is reported in this same call if room is left. */
    while (xs->rep && n < max) {
        struct lr_xs_xfer *x = xs->rep;
        report_unlink(xs, x);
        x->reported = true;
        struct lr_xs_act *a = &out[n++];
        memset(a, 0, sizeof(*a));
        a->kind = x->report;
        a->x = x;
        a->why = x->why;
    }
    return n;
}

/* ---- answers ---- */

static void failed(struct lr_xs *xs, struct lr_xs_xfer *x, const char *why)
{
    if (++x->failures > xs->lim.failures_max)
        report(xs, x, LR_XS_DROP, why);
}

int lr_xs_answer(struct lr_xs *xs, const struct lr_device_id *peer, uint64_t req_id,
                 enum lr_xs_answer ans, struct lr_xs_xfer **xo, size_t *chunk)
{
    *xo = NULL;
    *chunk = 0;
    uint32_t pi = peer_index(xs, peer, false);
    struct xs_req *r = req_find(xs, req_id);
    if (pi == UINT32_MAX || !r || r->peer != pi)
        return LR_ENOTFOUND;
    struct xs_peer *p = &xs->peers[pi];
    struct lr_xs_xfer *x = r->x;
    size_t k = r->chunk;
    p->nwants--;
    p->bytes -= r->len;
    if (ans == LR_XS_ANS_OK)
        window_adapt(xs, p, r->sent_ms, r->len);
    req_delete(xs, r);
    *chunk = k;
    if (!x)
        return 0;
    x->nwanted--;
    *xo = x;
    switch (ans) {
    case LR_XS_ANS_OK:
        x->st[k] = LR_XS_RECV;
        x->from[k] = pi;
        break;
    case LR_XS_ANS_REFUSED: {
        bool newly = false;
        for (size_t i = 0; i < x->nholders; i++) {
            if (x->holders[i] == pi) {
                newly = !x->bad[i];
                x->bad[i] = true;
            }
        }
        back_to_todo(xs, x, k);
        if (newly)
            failed(xs, x, "too many refused chunks");
        break;
    }
    case LR_XS_ANS_BUSY:
    default:
        back_to_todo(xs, x, k);
        failed(xs, x, "too many refused chunks");
        break;
    }
    return 0;
}

void lr_xs_written(struct lr_xs *xs, struct lr_xs_xfer *x, size_t chunk, bool ok)
{
    if (chunk >= x->n || x->st[chunk] != LR_XS_RECV)
        return;
    if (!ok) {
        /* Data that does not hash right: that holder is not asked again for
         * this version (a corrupting peer is often the fastest one). */
        bool newly = false;
        for (size_t i = 0; i < x->nholders; i++) {
            if (x->holders[i] == x->from[chunk]) {
                newly = !x->bad[i];
                x->bad[i] = true;
            }
        }
        back_to_todo(xs, x, chunk);
        /* Its other answers already in flight are not held against the file. */
        if (newly)
            failed(xs, x, "too many failed chunks");
        return;
    }
    x->st[chunk] = LR_XS_DONE;
    x->ninflight--;
    x->ndone++;
    ptrdiff_t k = holder_slot(x, x->from[chunk]);
    if (k >= 0 && x->have[k])
        x->nfrom_partial++;
    if (x->ndone == x->n)
        report(xs, x, LR_XS_COMPLETE, NULL);
    else if (x->cursor < x->n)
        ready_add(xs, x); /* it may have been parked without a peer */
}
