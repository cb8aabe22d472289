/*
 * session.c - transfer session state machine and checkpoint/pruning
 * policies (see session.h).
 */
#include "sync/session.h"

#include "util/err.h"

#include <assert.h>

/* allowed[from][to] */
static const bool allowed[LR_SESSION_NSTATES][LR_SESSION_NSTATES] = {
    [LR_SESSION_PENDING] =
        {[LR_SESSION_ACTIVE] = true, [LR_SESSION_INTERRUPTED] = true, [LR_SESSION_FAILED] = true},
    [LR_SESSION_ACTIVE] =
        {[LR_SESSION_COMPLETE] = true, [LR_SESSION_FAILED] = true, [LR_SESSION_INTERRUPTED] = true},
    [LR_SESSION_INTERRUPTED] =
        {[LR_SESSION_ACTIVE] = true, [LR_SESSION_COMPLETE] = true, [LR_SESSION_FAILED] = true},
    [LR_SESSION_FAILED] = {[LR_SESSION_ACTIVE] = true, [LR_SESSION_COMPLETE] = true},
    [LR_SESSION_COMPLETE] = {0},
};

static bool valid(int s)
{
    return s >= 0 && s < LR_SESSION_NSTATES;
}

const char *lr_session_state_name(enum lr_session_state s)
{
    switch (s) {
    case LR_SESSION_PENDING:
        return "pending";
    case LR_SESSION_ACTIVE:
        return "active";
    case LR_SESSION_INTERRUPTED:
        return "interrupted";
    case LR_SESSION_FAILED:
        return "failed";
    case LR_SESSION_COMPLETE:
        return "complete";
    }
    return NULL;
}

bool lr_session_can(enum lr_session_state from, enum lr_session_state to)
{
    return valid((int)from) && valid((int)to) && allowed[from][to];
}

void lr_session_assert_state(const struct lr_session *s)
{
    assert(valid((int)s->state));
    assert(s->chunks_done <= s->chunks_total);
    assert(s->bytes_done <= s->bytes_total);
    assert(!s->in_use || s->state == LR_SESSION_ACTIVE);
    assert(s->state != LR_SESSION_COMPLETE ||
           (s->chunks_done == s->chunks_total && s->bytes_done == s->bytes_total));
    (void)s;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void touch(struct lr_session *s, int64_t now_ms)
{
    s->updated_ms = now_ms;
    s->dirty = true;
}

void lr_session_init(struct lr_session *s, int64_t now_ms)
{
    *s = (struct lr_session){.state = LR_SESSION_PENDING};
    touch(s, now_ms);
}

static void set_progress(struct lr_session *s, const struct lr_session_progress *p)
{
    s->chunks_total = p->chunks_total;
    s->bytes_total = p->bytes_total;
    s->chunks_done = min_u64(p->chunks_done, p->chunks_total);
    s->bytes_done = min_u64(p->bytes_done, p->bytes_total);
}

void lr_session_restore(struct lr_session *s, int state, const struct lr_session_progress *p,
                        uint64_t chunks_failed, int64_t updated_ms)
{
    *s = (struct lr_session){.stored = true};
    set_progress(s, p);
    s->chunks_failed = chunks_failed;
    s->updated_ms = updated_ms;
    if (!valid(state) || state == LR_SESSION_PENDING || state == LR_SESSION_ACTIVE) {
        /* The run that wrote it ended mid-transfer (or the row is damaged). */
        s->state = LR_SESSION_INTERRUPTED;
        s->dirty = true;
    } else {
        s->state = (enum lr_session_state)state;
    }
    if (s->state == LR_SESSION_COMPLETE) {
        s->chunks_done = s->chunks_total;
        s->bytes_done = s->bytes_total;
    }
}

int lr_session_start(struct lr_session *s, const struct lr_session_progress *p, int64_t now_ms)
{
    if (!lr_session_can(s->state, LR_SESSION_ACTIVE))
        return LR_EBADVAL;
    s->state = LR_SESSION_ACTIVE;
    set_progress(s, p); /* chunks_failed accumulates over resumes */
    s->in_use = true;
    touch(s, now_ms);
    return 0;
}

int lr_session_chunk(struct lr_session *s, bool ok, uint32_t len, int64_t now_ms)
{
    if (s->state != LR_SESSION_ACTIVE)
        return LR_EBADVAL;
    if (ok) {
        s->chunks_done += s->chunks_done < s->chunks_total;
        s->bytes_done = s->bytes_done + len < s->bytes_done
                            ? s->bytes_total
                            : min_u64(s->bytes_done + len, s->bytes_total);
    } else {
        s->chunks_failed++;
    }
    touch(s, now_ms);
    return 0;
}

int lr_session_end(struct lr_session *s, enum lr_session_state to, int64_t now_ms)
{
    if (to == LR_SESSION_ACTIVE || to == LR_SESSION_PENDING || !lr_session_can(s->state, to))
        return LR_EBADVAL;
    s->state = to;
    if (to == LR_SESSION_COMPLETE) {
        s->chunks_done = s->chunks_total;
        s->bytes_done = s->bytes_total;
    }
    s->in_use = false;
    touch(s, now_ms);
    return 0;
}

bool lr_session_finished(const struct lr_session *s)
{
    return s->state != LR_SESSION_ACTIVE && s->state != LR_SESSION_PENDING;
}

bool lr_session_take_dirty(struct lr_session *s)
{
    bool d = s->dirty;
    s->dirty = false;
    if (d)
        s->stored = true;
    return d;
}

void lr_session_ckpt_init(struct lr_session_ckpt *c, uint64_t every_events, int64_t every_ms,
                          int64_t now_ms)
{
    *c = (struct lr_session_ckpt){
        .every_events = every_events ? every_events : 1, .every_ms = every_ms, .last_ms = now_ms};
}

void lr_session_ckpt_note(struct lr_session_ckpt *c, uint64_t n)
{
    c->events = c->events + n < c->events ? UINT64_MAX : c->events + n;
}

bool lr_session_ckpt_due(const struct lr_session_ckpt *c, int64_t now_ms)
{
    if (!c->events)
        return false;
    /* A clock that went back counts as time passed: never starve a batch. */
    return c->events >= c->every_events || now_ms - c->last_ms >= c->every_ms ||
           now_ms < c->last_ms;
}

void lr_session_ckpt_taken(struct lr_session_ckpt *c, int64_t now_ms)
{
    c->events = 0;
    c->last_ms = now_ms;
}

size_t lr_session_prune(const struct lr_session *const *v, size_t n, size_t keep, bool *drop)
{
    size_t finished = 0, interrupted = 0, marked = 0;
    for (size_t i = 0; i < n; i++) {
        drop[i] = false;
        const struct lr_session *s = v[i];
        if (!lr_session_finished(s) || s->in_use || (s->dirty && s->stored))
            continue;
        bool over = s->state == LR_SESSION_INTERRUPTED
                        ? ++interrupted > keep * LR_SESSION_INTERRUPTED_KEEP
                        : ++finished > keep;
        if (over) {
            drop[i] = true;
            marked++;
        }
    }
    return marked;
}
