/*
 * syncjobs.c - the daemon's one FIFO of serial jobs (sync.h): one job at a
 * time on libuv's pool, so d->ix and the folder stores have one user at a
 * time. Scans and sync work share it, which also keeps them ordered (an
 * index batch received before a scan is stored before the scan runs).
 * Side lanes (sync.h) run beside it, each with its own FIFO and bound.
 */
#include "daemon/daemon_int.h"

#include "util/log.h"

#include <sys/prctl.h>

#define MOD "jobs"

/*
 * Name the pool thread after the lane it now works for, so per-thread
 * profiles (perf, top -H) say which lane is busy. libuv's threads serve
 * any lane, so the name follows the job (one cheap system call per job).
 */
static void name_thread(const char *name)
{
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

static const char *const lane_names[DAEMON_SIDE_COUNT] = {
    [DAEMON_SIDE_SERVE] = "lr-serve",
    [DAEMON_SIDE_RX] = "lr-rx",
    [DAEMON_SIDE_BARRIER] = "lr-barrier",
};

static void start_next(struct lr_daemon *d);

static void work_cb(uv_work_t *w)
{
    struct daemon_job *j = w->data;
    name_thread("lr-serial");
    j->work(j);
}

static void done_cb(uv_work_t *w, int status)
{
    struct daemon_job *j = w->data;
    struct lr_daemon *d = j->d;
    d->job_running = NULL;
    j->done(j, status);
    /* A pull round, index batch or commit ended: what sync --wait waits for
     * may have changed even if no event says so (syncstate.c). */
    syncstate_poke(d);
    if (!d->stopping)
        start_next(d);
}

static void start_next(struct lr_daemon *d)
{
    struct daemon_job *j = d->jobs_head;
    if (!j || d->job_running)
        return;
    d->jobs_head = j->next;
    if (!d->jobs_head)
        d->jobs_tail = NULL;
    j->next = NULL;
    if (j->start)
        j->start(j);
    d->job_running = j;
    d->job_work.data = j;
    int rc = uv_queue_work(&d->loop, &d->job_work, work_cb, done_cb);
    if (rc < 0) {
        /* Only fails for invalid arguments; report and drop rather than hang. */
        lr_error(MOD, "cannot queue job: %s", uv_strerror(rc));
        d->job_running = NULL;
        j->done(j, rc);
    }
}

/* A job was just linked into the queue: it runs in turn, or is cancelled
 * with the others if the daemon is stopping. */
static void queued(struct lr_daemon *d)
{
    if (d->stopping)
        daemon_jobs_cancel(d);
    else
        start_next(d);
}

void daemon_job_queue(struct lr_daemon *d, struct daemon_job *j)
{
    j->d = d;
    j->next = NULL;
    if (d->jobs_tail)
        d->jobs_tail->next = j;
    else
        d->jobs_head = j;
    d->jobs_tail = j;
    queued(d);
}

void daemon_job_queue_after(struct lr_daemon *d, struct daemon_job *j, struct daemon_job *after)
{
    struct daemon_job *w = d->jobs_head;
    while (w && w != after)
        w = w->next;
    if (!w && after != d->job_running) {
        daemon_job_queue(d, j); /* not known: the end is always safe */
        return;
    }
    j->d = d;
    if (w) {
        j->next = w->next;
        w->next = j;
        if (d->jobs_tail == w)
            d->jobs_tail = j;
    } else {
        j->next = d->jobs_head;
        d->jobs_head = j;
        if (!d->jobs_tail)
            d->jobs_tail = j;
    }
    queued(d);
}

static void cancel_list(struct daemon_job *j)
{
    while (j) {
        struct daemon_job *next = j->next;
        j->done(j, UV_ECANCELED);
        j = next;
    }
}

void daemon_jobs_cancel(struct lr_daemon *d)
{
    struct daemon_job *j = d->jobs_head;
    d->jobs_head = d->jobs_tail = NULL;
    cancel_list(j);
    for (int l = 0; l < DAEMON_SIDE_COUNT; l++) {
        j = d->side[l].head;
        d->side[l].head = d->side[l].tail = NULL;
        cancel_list(j);
    }
}

/* ---- side lanes ---- */

static void side_next(struct lr_daemon *d, enum daemon_side_lane lane);

static void side_work_cb(uv_work_t *w)
{
    struct daemon_job *j = w->data;
    name_thread(lane_names[j->lane]);
    j->work(j);
}

static void side_done_cb(uv_work_t *w, int status)
{
    struct daemon_job *j = w->data;
    struct lr_daemon *d = j->d;
    enum daemon_side_lane lane = j->lane; /* read before done() frees the job */
    d->side[lane].running--;
    j->done(j, status);
    if (!d->stopping)
        side_next(d, lane);
}

static unsigned side_max(enum daemon_side_lane lane)
{
    return lane == DAEMON_SIDE_RX ? DAEMON_SIDE_RX_MAX : 1;
}

static void side_next(struct lr_daemon *d, enum daemon_side_lane lane)
{
    struct daemon_side *s = &d->side[lane];
    while (s->head && s->running < side_max(lane)) {
        struct daemon_job *j = s->head;
        s->head = j->next;
        if (!s->head)
            s->tail = NULL;
        j->next = NULL;
        if (j->start)
            j->start(j);
        s->running++;
        j->req.data = j;
        int rc = uv_queue_work(&d->loop, &j->req, side_work_cb, side_done_cb);
        if (rc < 0) {
            lr_error(MOD, "cannot queue job: %s", uv_strerror(rc));
            s->running--;
            j->done(j, rc);
        }
    }
}

void daemon_side_queue(struct lr_daemon *d, enum daemon_side_lane lane, struct daemon_job *j)
{
    struct daemon_side *s = &d->side[lane];
    j->d = d;
    j->lane = lane;
    j->next = NULL;
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    if (d->stopping) {
        daemon_jobs_cancel(d);
        return;
    }
    side_next(d, lane);
}
