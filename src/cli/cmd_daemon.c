/*
 * cmd_daemon.c - daemon, stop, and the commands that read the daemon's
 * state: status, sync, sessions, events (conflicts: cmd_versions.c).
 */
#include "cli.h"

#include "api/api.h"
#include "config/config.h"
#include "daemon/daemon.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char daemon_usage[] =
    "usage: landropic daemon [--listen HOST:PORT]... [--detach] [--log FILE] [--no-discovery]\n"
    "Run this device's sync daemon. Default listen: UDP port 21037 on all addresses.\n"
    "--detach returns once the daemon accepts connections and commands; it then logs to\n"
    "HOME/landropic.log unless --log says otherwise. SIGTERM/SIGINT stop it gracefully.\n"
    "Options beyond the contract:\n"
    "  --log-level LEVEL      error, warn, info (default), debug or trace\n"
    "  --idle-timeout SECS    QUIC idle timeout (default 60)\n"
    "  --no-discovery         do not announce this device on the LAN nor listen for others\n"
    "  --discovery-port PORT  UDP port of LAN announcements (default 21038; all devices\n"
    "                         of a LAN must use the same one)\n";

int cmd_daemon(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {
        {"listen", true, true},         {"detach", false, false},
        {"log", true, false},           {"log-level", true, false},
        {"idle-timeout", true, false},  {"no-discovery", false, false},
        {"discovery-port", true, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 7, argc, argv, "daemon", daemon_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos)
        return cli_usage_error("daemon", "unexpected argument '%s'", o.pos[0]);
    struct lr_err err = {0};
    struct lr_daemon_opts d = {0};
    const struct opt_val *listen = opt_all(&o, "listen");
    for (int i = 0; i < listen->count; i++) {
        if (lr_config_check_addr(listen->values[i], &err) < 0)
            return cli_usage_error("daemon", "%s", err.msg);
        /* The second bind failed "Address already in use", as if another
         * process held the port (black-box round 28). */
        for (int k = 0; k < i; k++)
            if (strcmp(listen->values[k], listen->values[i]) == 0)
                return cli_usage_error("daemon", "--listen %s given twice", listen->values[i]);
    }
    d.home = c->home;
    d.listen = listen->values;
    d.nlisten = (size_t)listen->count;
    d.detach = opt_has(&o, "detach");
    d.log_path = opt_get(&o, "log");
    d.log_level = LR_LOG_INFO;
    const char *lvl = opt_get(&o, "log-level");
    if (lvl && lr_log_parse_level(lvl, &d.log_level) < 0)
        return cli_usage_error("daemon",
                               "invalid --log-level '%s' (expected error, warn, info, debug or "
                               "trace)",
                               lvl);
    const char *idle = opt_get(&o, "idle-timeout");
    if (idle) {
        long long v;
        if (!cli_parse_count(idle, 1, 3600, &v))
            return cli_usage_error("daemon", "invalid --idle-timeout '%s': 1 to 3600 seconds",
                                   idle);
        d.idle_timeout_s = (unsigned)v;
    }
    d.no_discovery = opt_has(&o, "no-discovery");
    const char *dport = opt_get(&o, "discovery-port");
    if (dport) {
        long long v;
        if (!cli_parse_count(dport, 1, 65535, &v))
            return cli_usage_error("daemon", "invalid --discovery-port '%s': 1 to 65535", dport);
        d.discovery_port = (unsigned)v;
    }
    if ((rc = cli_require_init(c)))
        return rc;
    rc = lr_daemon_run(&d, &err);
    if (rc < 0)
        return cli_fail(rc, &err);
    return EXIT_OK;
}

/* One object as a line of key=value for humans: names escaped, raw-bytes twins skipped. */
/* key=value pairs of obj after `prefix`; *n counts the pairs printed. A
 * string's raw bytes come from its KEY_b64 sibling when it has one (names
 * that are not UTF-8: they showed as U+FFFD), a nested object's fields as
 * key.field=value, an array's strings joined by commas; null fields are left out. */
static void print_pairs(json_t *obj, const char *prefix, const char *sep, int *n)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        size_t kl = strlen(k);
        /* A null field (no error, no peer yet) says nothing: "error=null"
         * read as an error named "null". */
        if ((kl > 4 && strcmp(k + kl - 4, "_b64") == 0) || json_is_null(v))
            continue;
        if (json_is_object(v)) {
            char *p = lr_xasprintf("%s%s.", prefix, k);
            print_pairs(v, p, sep, n);
            free(p);
            continue;
        }
        printf("%s%s%s=", (*n)++ ? sep : "", prefix, k);
        if (json_is_string(v)) {
            cli_print_path(stdout, obj, k);
        } else if (json_is_array(v)) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e)
            {
                if (i)
                    putchar(',');
                char *txt =
                    json_is_string(e) ? NULL : json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
                cli_print_name(stdout, txt ? txt : json_string_value(e));
                free(txt);
            }
        } else {
            /* As --json writes it: 9 significant digits, not 0.45318610199999998. */
            char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
            if (txt) {
                cli_print_name(stdout, txt);
                free(txt);
            }
        }
    }
}

static void print_fields(json_t *obj, const char *sep)
{
    int n = 0;
    print_pairs(obj, "", sep, &n);
    putchar('\n');
}

static int simple_call(struct cli *c, int argc, char **argv, const char *cmd, const char *usage,
                       const char *method, bool allow_folder)
{
    static const struct opt_spec spec[] = {{"json", false, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 1, argc, argv, cmd, usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos > (allow_folder ? 1 : 0))
        return cli_usage_error(cmd, "unexpected argument '%s'", o.pos[allow_folder ? 1 : 0]);
    if ((rc = cli_check_folder_args(cmd, o.pos, o.npos)) || (rc = cli_require_init(c)))
        return rc;
    json_t *params = json_object();
    if (o.npos)
        json_object_set_new(params, "folder", json_string(o.pos[0]));
    json_t *res;
    if ((rc = cli_call(c, method, params, 30000, &res)))
        return rc;
    if (opt_has(&o, "json")) {
        cli_print_json(res);
        return EXIT_OK;
    }
    /* Human form: each listed object on one line, keys in order, names escaped. */
    const char *key;
    json_t *arr;
    json_object_foreach(res, key, arr)
    {
        if (!json_is_array(arr))
            continue;
        if (json_array_size(arr) == 0)
            printf("No %s.\n", key);
        size_t i;
        json_t *item;
        json_array_foreach(arr, i, item)
        {
            print_fields(item, "  ");
        }
    }
    json_decref(res);
    return EXIT_OK;
}

static const char status_usage[] =
    "usage: landropic status [FOLDER_ID] [--json]\n"
    "Show each folder's state (idle, scanning, syncing, error), whether it is in sync,\n"
    "what it still needs, its conflict copies and per-file errors (every item that\n"
    "currently fails, since when; failed items are retried with backoff). Needs the daemon.\n";

/* "1 file", "2 files". */
static const char *files_word(int64_t n)
{
    return n == 1 ? "file" : "files";
}

static void print_status(json_t *res)
{
    json_t *arr = json_object_get(res, "folders");
    if (json_array_size(arr) == 0)
        printf("No folders.\n");
    size_t i;
    json_t *f;
    json_array_foreach(arr, i, f)
    {
        cli_print_name(stdout, json_string_value(json_object_get(f, "id")));
        const char *state = json_string_value(json_object_get(f, "state"));
        printf(": %s, %s", state,
               json_is_true(json_object_get(f, "in_sync")) ? "in sync" : "not in sync");
        /* Scanning and error say why themselves. */
        const char *why = json_string_value(json_object_get(f, "why_not_in_sync"));
        if (why && state && strcmp(state, "scanning") != 0 && strcmp(state, "error") != 0) {
            printf(" (");
            cli_print_msg(stdout, why);
            printf(")");
        }
        json_int_t nf = json_integer_value(json_object_get(f, "need_files"));
        json_int_t nb = json_integer_value(json_object_get(f, "need_bytes"));
        if (nf || nb)
            printf(", needs %lld %s (%lld bytes)", (long long)nf, files_word(nf), (long long)nb);
        /* docs/modes.md: what the mode keeps from being applied or sent. */
        json_int_t op = json_integer_value(json_object_get(f, "override_pending"));
        json_int_t lc = json_integer_value(json_object_get(f, "local_changes"));
        if (op)
            printf(", %lld not taken (send-only: 'folder override' takes them)", (long long)op);
        if (lc)
            printf(", %lld local change%s (receive-only: 'folder revert' undoes them)",
                   (long long)lc, lc == 1 ? "" : "s");
        json_int_t nc = json_integer_value(json_object_get(f, "conflicts"));
        if (nc)
            printf(", %lld conflict copies", (long long)nc);
        json_t *errs = json_object_get(f, "errors");
        json_int_t more = json_integer_value(json_object_get(f, "errors_more"));
        size_t nerr = json_array_size(errs) + (size_t)more;
        if (nerr)
            printf(", %zu failing item%s", nerr, nerr == 1 ? "" : "s");
        printf("\n  path=");
        cli_print_path(stdout, f, "path"); /* \xff for a byte that is not UTF-8 */
        printf(" mode=%s", json_string_value(json_object_get(f, "mode")));
        if (json_object_get(f, "files"))
            printf(" files=%lld bytes=%lld",
                   (long long)json_integer_value(json_object_get(f, "files")),
                   (long long)json_integer_value(json_object_get(f, "bytes")));
        printf("\n");
        size_t k;
        json_t *e;
        json_array_foreach(errs, k, e)
        {
            const char *path = json_string_value(json_object_get(e, "path"));
            printf("  error: ");
            if (path && *path) {
                cli_print_path(stdout, e, "path");
                printf(": ");
            }
            cli_print_msg(stdout, json_string_value(json_object_get(e, "error")));
            const char *since = json_string_value(json_object_get(e, "since"));
            if (since && *since)
                printf(" (since %s)", since);
            printf("\n");
        }
        if (more)
            printf("  ... and %lld more failing items\n", (long long)more);
    }
}

int cmd_status(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"json", false, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 1, argc, argv, "status", status_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos > 1)
        return cli_usage_error("status", "unexpected argument '%s'", o.pos[1]);
    if ((rc = cli_check_folder_args("status", o.pos, o.npos)) || (rc = cli_require_init(c)))
        return rc;
    json_t *params = json_object();
    if (o.npos)
        json_object_set_new(params, "folder", json_string(o.pos[0]));
    json_t *res;
    if ((rc = cli_call(c, "status", params, 30000, &res)))
        return rc;
    if (opt_has(&o, "json")) {
        cli_print_json(res);
        return EXIT_OK;
    }
    print_status(res);
    json_decref(res);
    return EXIT_OK;
}

static const char sessions_usage[] =
    "usage: landropic sessions [--json]\n"
    "Resumable transfer sessions and recent history. Needs the daemon.\n";

int cmd_sessions(struct cli *c, int argc, char **argv)
{
    return simple_call(c, argc, argv, "sessions", sessions_usage, "sessions", false);
}

static const char stop_usage[] =
    "usage: landropic stop\n"
    "Stop the daemon gracefully: in-flight work is finished or persisted. Waits until it\n"
    "has exited.\n";

/* Whether process pid still runs: it exists, and is not just a zombie leader whose other
 * threads are gone (a zombie waiting to be reaped has finished). */
static bool pid_running(pid_t pid)
{
    if (kill(pid, 0) < 0 && errno == ESRCH)
        return false;
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *paren = strrchr(buf, ')');
    if (!paren || paren[1] != ' ' || paren[2] != 'Z')
        return true;
    /* Field 20 is num_threads: the leader alone is left once every thread has ended. */
    const char *p = paren + 2;
    for (int field = 3; field < 20 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    return p && strtol(p, NULL, 10) > 1;
}

int cmd_stop(struct cli *c, int argc, char **argv)
{
    struct opts o;
    int rc = opts_parse(&o, NULL, 0, argc, argv, "stop", stop_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos)
        return cli_usage_error("stop", "unexpected argument '%s'", o.pos[0]);
    if ((rc = cli_require_init(c)))
        return rc;
    pid_t pid = cli_lock_pid(c->home);
    json_t *res;
    if ((rc = cli_call(c, "stop", NULL, 10000, &res)))
        return rc;
    json_decref(res);
    /* The lock is released as the daemon's last act, then its threads end and the
     * process exits (a sanitizer build checks for leaks then); wait for both (bounded). */
    int i = 0;
    for (; i < 600 && cli_daemon_running(c->home); i++) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (; i < 600 && pid && pid_running(pid); i++) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (cli_daemon_running(c->home) || (pid && pid_running(pid))) {
        fprintf(stderr, "landropic: daemon did not exit within 30 s\n");
        return EXIT_TIMEOUT;
    }
    return EXIT_OK;
}

static const char sync_usage[] =
    "usage: landropic sync [FOLDER_ID]... [--wait] [--timeout SECS]\n"
    "Ask the daemon to rescan now. With --wait, block until every named folder (default\n"
    "all) is idle and in sync with every connected peer it is shared with: nothing needed\n"
    "here, no failing item, and every connected peer announcing every version we have.\n"
    "Failing items are retried meanwhile. Exit 0 then, 3 at --timeout (default: none).\n";

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Why --wait is still waiting, for the timeout message. */
/* Ctrl-C during the progress line: end the line, then die of SIGINT as
 * before (the shell's prompt landed at the end of the line). */
static void progress_sigint(int sig)
{
    static const char nl = '\n';
    ssize_t w = write(STDOUT_FILENO, &nl, 1);
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Bytes in the largest unit that keeps the number at 1 or more (1000s). */
static void fmt_bytes(double b, char *out, size_t n)
{
    static const char *const unit[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1000 && u < 4) {
        b /= 1000;
        u++;
    }
    snprintf(out, n, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
}

/*
 * One progress line of sync --wait on a TTY: what is left to receive (less
 * what has arrived of files in flight) and to send, the rate of the bytes
 * exchanged with every peer (from the daemon's counter: what is left falls
 * only as files are committed, so one large file showed no rate), an ETA.
 */
static void print_progress(json_t *st, int64_t *last_moved, double *last_t, double *rate)
{
    int64_t nf = json_integer_value(json_object_get(st, "need_files"));
    int64_t nb = json_integer_value(json_object_get(st, "need_bytes"));
    int64_t rb = json_integer_value(json_object_get(st, "received_bytes"));
    int64_t pf = json_integer_value(json_object_get(st, "peer_need_files"));
    int64_t pb = json_integer_value(json_object_get(st, "peer_need_bytes"));
    int64_t ne = json_integer_value(json_object_get(st, "errors"));
    int64_t moved = json_integer_value(json_object_get(st, "bytes_moved"));
    int64_t left = (nb > rb ? nb - rb : 0) + pb;
    double now = mono_now();
    if (*last_moved >= 0 && now > *last_t && moved >= *last_moved) {
        double r = (double)(moved - *last_moved) / (now - *last_t);
        *rate = *rate > 0 ? 0.7 * *rate + 0.3 * r : r;
    }
    *last_moved = moved;
    *last_t = now;
    char a[32], b[32], r[32];
    fmt_bytes((double)(nb > rb ? nb - rb : 0), a, sizeof(a));
    printf("\r\033[K%lld %s (%s) to receive", (long long)nf, files_word(nf), a);
    if (pf || pb) {
        fmt_bytes((double)pb, b, sizeof(b));
        printf(", %lld %s (%s) to send", (long long)pf, files_word(pf), b);
    }
    if (*rate > 1000 && left > 0) {
        fmt_bytes(*rate, r, sizeof(r));
        printf(", %s/s, ETA %.0f s", r, (double)left / *rate);
    }
    if (ne)
        printf(", %lld failing (retrying)", (long long)ne);
    fflush(stdout);
}

/* Ends a "still need" line with st's `key`, the first item in words: one
 * owed to a peer (which a user on this device cannot otherwise find, e.g.
 * a deletion a peer cannot apply because its directory holds a file it
 * ignores), or the folder and file still needed here. */
static void print_first(json_t *st, const char *key)
{
    const char *first = json_string_value(json_object_get(st, key));
    if (first && *first) {
        fprintf(stderr, "; first: ");
        cli_print_msg(stderr, first);
    }
    fprintf(stderr, "\n");
}

static void print_not_done(json_t *st, double timeout)
{
    fprintf(stderr, "landropic: not in sync after %g s (timeout)", timeout);
    if (!st) {
        fprintf(stderr, "\n");
        return;
    }
    json_int_t nf = json_integer_value(json_object_get(st, "need_files"));
    json_int_t pf = json_integer_value(json_object_get(st, "peer_need_files"));
    json_int_t pi = json_integer_value(json_object_get(st, "peer_need_items"));
    json_int_t po = pi > pf ? pi - pf : 0; /* deletions and directories */
    json_int_t ne = json_integer_value(json_object_get(st, "errors"));
    json_t *fe = json_object_get(st, "first_error");
    if (ne && fe) {
        fprintf(stderr, ": %lld failing item%s, first in folder ", (long long)ne,
                ne == 1 ? "" : "s");
        cli_print_name(stderr, json_string_value(json_object_get(fe, "folder")));
        const char *path = json_string_value(json_object_get(fe, "path"));
        if (path && *path) {
            fprintf(stderr, ": ");
            cli_print_path(stderr, fe, "path"); /* its raw bytes, not U+FFFD */
        }
        fprintf(stderr, ": ");
        cli_print_msg(stderr, json_string_value(json_object_get(fe, "error")));
        fprintf(stderr, " (see 'landropic status')\n");
    } else if (nf) {
        fprintf(stderr, ": %lld %s still needed here", (long long)nf, files_word(nf));
        print_first(st, "need_first");
    } else if (pf && po) {
        /* Counting files only hid a deletion the peers lacked as well. */
        fprintf(stderr,
                ": peers still need %lld %s and %lld more %s (deletions, directories or symlinks) "
                "from us",
                (long long)pf, files_word(pf), (long long)po, po == 1 ? "item" : "items");
        print_first(st, "peer_need_first");
    } else if (pf) {
        fprintf(stderr, ": peers still need %lld %s from us", (long long)pf, files_word(pf));
        print_first(st, "peer_need_first");
    } else if (po) {
        fprintf(stderr, ": peers still need %lld %s from us (deletions, directories or symlinks)",
                (long long)po, po == 1 ? "item" : "items");
        print_first(st, "peer_need_first");
    } else {
        const char *w = json_string_value(json_object_get(st, "waiting"));
        /* The peers' part only when the reason is about a peer (it once said
         * so for every reason, with both peers connected). */
        bool peers = !w || strstr(w, "peer ") != NULL;
        if (w && (strstr(w, " has the folder ") || strncmp(w, "asking peer ", 12) == 0 ||
                  strstr(w, "'s index up to "))) {
            /* Not a wait for the peer to connect: it cannot sync until fixed
             * there, or it is connected and has not answered how far its
             * index has got, or its news have not all arrived. */
            fprintf(stderr, ": ");
            cli_print_msg(stderr, w);
            fprintf(stderr, "\n");
            return;
        }
        fprintf(stderr,
                peers ? ": waiting for peers to connect and exchange indexes" : ": not settled");
        if (w && *w) {
            fprintf(stderr, " (");
            cli_print_msg(stderr, w);
            fprintf(stderr, ")");
        }
        fprintf(stderr, "\n");
    }
}

int cmd_sync(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"wait", false, false}, {"timeout", true, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 2, argc, argv, "sync", sync_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    double timeout = 0;
    const char *t = opt_get(&o, "timeout");
    if (t) {
        char *end;
        errno = 0;
        /* Plain decimal only: strtod also takes "nan", "inf" and hex. */
        bool plain = t[0] && strspn(t, "0123456789.") == strlen(t);
        timeout = plain ? strtod(t, &end) : 0;
        if (!plain || *end || errno || !(timeout > 0) || timeout > 86400 * 365)
            return cli_usage_error("sync", "invalid --timeout '%s': expected seconds > 0", t);
        /* Without --wait nothing is waited for: a timeout there was ignored. */
        if (!opt_has(&o, "wait"))
            return cli_usage_error("sync", "--timeout needs --wait");
    }
    if ((rc = cli_check_folder_args("sync", o.pos, o.npos)) || (rc = cli_require_init(c)))
        return rc;
    json_t *ids = json_array();
    for (int i = 0; i < o.npos; i++)
        json_array_append_new(ids, json_string(o.pos[i]));
    json_t *res;
    if ((rc = cli_call(c, "sync", json_pack("{s:O}", "folders", ids), 30000, &res))) {
        json_decref(ids);
        return rc;
    }
    json_decref(res);
    if (!opt_has(&o, "wait")) {
        json_decref(ids);
        return EXIT_OK;
    }
    bool tty = isatty(STDOUT_FILENO);
    double t0 = mono_now(), last_t = t0, rate = 0;
    int64_t last_moved = -1;
    if (tty)
        signal(SIGINT, progress_sigint);
    int exit_code = EXIT_OK;
    json_t *last = NULL;
    /* The daemon holds each sync.state until done or wait_ms: it answers
     * within milliseconds of the folders being in sync, and a progress bar
     * still moves four times a second. */
    const double wait_s = tty ? 0.25 : 1.0;
    for (;;) {
        double el = mono_now() - t0;
        if (timeout > 0 && el >= timeout) {
            if (tty)
                printf("\n");
            print_not_done(last, timeout);
            exit_code = EXIT_TIMEOUT;
            break;
        }
        /* Held answers end 0.2 s before --timeout, so the last one (with
         * the reason it is not done) arrives before we stop listening. */
        double wait = wait_s;
        if (timeout > 0 && timeout - el - 0.2 < wait)
            wait = timeout - el - 0.2 > 0 ? timeout - el - 0.2 : 0;
        /* The daemon may answer late (the check runs in its job queue): never past --timeout. */
        int call_ms = 30000 + (int)(wait * 1000);
        if (timeout > 0 && (timeout - el) * 1000 < call_ms)
            call_ms = (int)((timeout - el) * 1000) + 1;
        json_t *st;
        double called = mono_now();
        rc = cli_call_ex(
            c, "sync.state",
            json_pack("{s:O, s:I}", "folders", ids, "wait_ms", (json_int_t)(wait * 1000)), call_ms,
            timeout > 0, &st);
        if (rc == EXIT_TIMEOUT && timeout > 0) {
            /* --timeout ran out before the daemon answered (a very short one) */
            if (tty)
                printf("\n");
            print_not_done(last, timeout);
            exit_code = EXIT_TIMEOUT;
            break;
        }
        if (rc) {
            exit_code = rc;
            break;
        }
        json_decref(last);
        last = st;
        bool done = json_is_true(json_object_get(st, "done"));
        if (tty)
            print_progress(st, &last_moved, &last_t, &rate);
        if (done)
            break;
        if (mono_now() - called < wait / 2 + 0.01) {
            /* Answered early without being done (near --timeout, or a daemon
             * that does not hold requests): do not spin. */
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (tty && exit_code == EXIT_OK)
        printf("\r\033[Kin sync\n");
    json_decref(last);
    json_decref(ids);
    return exit_code;
}

static const char events_usage[] =
    "usage: landropic events [--json]\n"
    "Stream what the daemon does, one line per event (NDJSON with --json), until\n"
    "interrupted.\n";

static int print_event(void *ud, json_t *ev)
{
    bool json = *(bool *)ud;
    if (json) {
        char *s = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
        if (s) {
            puts(s);
            free(s);
        }
    } else {
        print_fields(ev, " ");
    }
    return fflush(stdout) == EOF ? 1 : 0;
}

int cmd_events(struct cli *c, int argc, char **argv)
{
    static const struct opt_spec spec[] = {{"json", false, false}};
    struct opts o;
    int rc = opts_parse(&o, spec, 1, argc, argv, "events", events_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos)
        return cli_usage_error("events", "unexpected argument '%s'", o.pos[0]);
    if ((rc = cli_require_init(c)))
        return rc;
    struct lr_err err = {0};
    struct lr_api_client *cl;
    if ((rc = cli_connect(c, &cl)))
        return rc;
    bool json = opt_has(&o, "json");
    rc = lr_api_stream(cl, "events", NULL, print_event, &json, &err);
    lr_api_client_close(cl);
    if (rc < 0 && rc != -EPIPE)
        return cli_fail(rc, &err);
    return EXIT_OK;
}
