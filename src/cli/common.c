#include "cli.h"

#include "api/api.h"
#include "config/ops.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const struct opt_spec builtin[] = {{"help", false, false}, {"home", true, false}};

static const struct opt_spec *find_spec(const struct opts *o, const char *name, size_t len,
                                        int *idx)
{
    for (int i = 0; i < o->nspec; i++) {
        if (strlen(o->spec[i].name) == len && strncmp(o->spec[i].name, name, len) == 0) {
            *idx = i;
            return &o->spec[i];
        }
    }
    for (int i = 0; i < 2; i++) {
        if (strlen(builtin[i].name) == len && strncmp(builtin[i].name, name, len) == 0) {
            *idx = -1 - i;
            return &builtin[i];
        }
    }
    return NULL;
}

int opts_parse(struct opts *o, const struct opt_spec *spec, int nspec, int argc, char **argv,
               const char *cmd, const char *usage)
{
    memset(o, 0, sizeof(*o));
    o->spec = spec;
    o->nspec = nspec;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (o->npos >= OPT_MAX_VALUES)
                return cli_usage_error(cmd, "too many arguments");
            o->pos[o->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return -1;
        }
        if (a[1] != '-') {
            char *e = lr_escs(a);
            int rc = cli_usage_error(cmd, "unknown option '%s'", e);
            free(e);
            return rc;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        int idx;
        const struct opt_spec *s = find_spec(o, name, nlen, &idx);
        if (!s) {
            char *e = lr_esc(a, eq ? (size_t)(eq - a) : strlen(a));
            int rc = cli_usage_error(cmd, "unknown option '%s'", e);
            free(e);
            return rc;
        }
        const char *val = NULL;
        if (s->has_arg) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else
                return cli_usage_error(cmd, "option '--%s' needs a value", s->name);
        } else if (eq) {
            return cli_usage_error(cmd, "option '--%s' takes no value", s->name);
        }
        if (idx == -1) {
            fputs(usage, stdout);
            return -1;
        }
        if (idx == -2)
            continue; /* --home was taken care of before dispatch */
        struct opt_val *v = &o->vals[idx];
        if (v->count && !s->repeat)
            return cli_usage_error(cmd, "option '--%s' given more than once", s->name);
        if (v->count >= OPT_MAX_VALUES)
            return cli_usage_error(cmd, "option '--%s' given too many times", s->name);
        v->values[v->count++] = val ? val : "";
    }
    return 0;
}

static int spec_index(const struct opts *o, const char *name)
{
    for (int i = 0; i < o->nspec; i++)
        if (strcmp(o->spec[i].name, name) == 0)
            return i;
    return -1;
}

const char *opt_get(const struct opts *o, const char *name)
{
    int i = spec_index(o, name);
    return i >= 0 && o->vals[i].count ? o->vals[i].values[o->vals[i].count - 1] : NULL;
}

bool opt_has(const struct opts *o, const char *name)
{
    int i = spec_index(o, name);
    return i >= 0 && o->vals[i].count > 0;
}

const struct opt_val *opt_all(const struct opts *o, const char *name)
{
    static const struct opt_val none;
    int i = spec_index(o, name);
    return i >= 0 ? &o->vals[i] : &none;
}

int cli_exit_code(int rc)
{
    switch (rc) {
    case 0:
        return EXIT_OK;
    case LR_EUSAGE:
    case LR_EBADID:
        return EXIT_USAGE;
    case LR_ETIMEOUT:
        return EXIT_TIMEOUT;
    case LR_ENODAEMON:
        return EXIT_NODAEMON;
    default:
        return EXIT_RUNTIME;
    }
}

int cli_fail(int rc, const struct lr_err *err)
{
    char *e = lr_esc_msg(lr_err_msg(err, rc));
    fprintf(stderr, "landropic: %s\n", e);
    free(e);
    return cli_exit_code(rc);
}

/*
 * "HEAD: MESSAGE TAIL" on stderr. Some callers quote the user's value raw
 * (a bad number, a home): a control character in MESSAGE must not reach
 * the terminal; values escaped already are left as they are.
 */
static void report(const char *head, const char *tail, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void report(const char *head, const char *tail, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    char *e = lr_esc_msg(msg);
    fprintf(stderr, "%s: %s%s\n", head, e, tail);
    free(e);
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char head[128], tail[160];
    snprintf(head, sizeof(head), "landropic %s", cmd);
    snprintf(tail, sizeof(tail), " (see 'landropic %s --help')", cmd);
    va_list ap;
    va_start(ap, fmt);
    report(head, tail, fmt, ap);
    va_end(ap);
    return EXIT_USAGE;
}

int cli_errorf(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report("landropic", "", fmt, ap);
    va_end(ap);
    return code;
}

bool cli_parse_count(const char *s, long long min, long long max, long long *out)
{
    if (!s[0] || strspn(s, "0123456789") != strlen(s))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int cli_check_folder_args(const char *cmd, const char *const *ids, int n)
{
    for (int i = 0; i < n; i++) {
        if (lr_utf8_valid(ids[i], strlen(ids[i])))
            continue;
        char *e = lr_escs(ids[i]);
        int rc = cli_usage_error(cmd, "FOLDER_ID '%s' is not valid UTF-8", e);
        free(e);
        return rc;
    }
    return 0;
}

void cli_print_json(json_t *doc)
{
    /* Nine significant digits: a duration as 0.00063782, not 0.00063781999999999999. */
    char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    json_decref(doc);
}

void cli_print_json_line(json_t *doc)
{
    char *s = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    json_decref(doc);
}

void cli_print_name(FILE *f, const char *s)
{
    char *e = lr_escs(s ? s : "?");
    fputs(e, f);
    free(e);
}

void cli_print_msg(FILE *f, const char *s)
{
    char *e = lr_esc_msg(s ? s : "?");
    fputs(e, f);
    free(e);
}

void cli_print_path(FILE *f, json_t *obj, const char *key)
{
    char *k = lr_xasprintf("%s_b64", key);
    const char *b = json_string_value(json_object_get(obj, k));
    free(k);
    size_t n;
    uint8_t *raw = b ? lr_unbase64(b, &n) : NULL;
    if (!raw) {
        cli_print_name(f, json_string_value(json_object_get(obj, key)));
        return;
    }
    char *e = lr_esc(raw, n);
    fputs(e, f);
    free(e);
    free(raw);
}

bool cli_daemon_running(const char *home)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/daemon.lock", home);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

/* The PID daemon.lock names (0 if none can be read). */
pid_t cli_lock_pid(const char *home)
{
    char path[4096], buf[32];
    snprintf(path, sizeof(path), "%s/daemon.lock", home);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    long v = strtol(buf, NULL, 10);
    return v > 1 ? (pid_t)v : 0;
}

#define CONNECT_WAIT_MS 10000
#define CONNECT_STEP_MS 20

int cli_connect(struct cli *c, struct lr_api_client **out)
{
    *out = NULL;
    for (int waited = 0;; waited += CONNECT_STEP_MS) {
        struct lr_err err = {0};
        int rc = lr_api_client_connect(c->home, out, &err);
        if (rc == 0)
            return 0;
        if (rc != LR_ENODAEMON)
            return cli_fail(rc, &err);
        if (!cli_daemon_running(c->home)) {
            return cli_errorf(EXIT_NODAEMON, "daemon not running (home %s)", c->home);
        }
        if (waited >= CONNECT_WAIT_MS) {
            char *h = lr_escs(c->home);
            fprintf(stderr,
                    "landropic: the daemon holding %s/daemon.lock (PID %ld) does not answer on "
                    "%s/control.sock; stop it with 'kill %ld' and start it again\n",
                    h, (long)cli_lock_pid(c->home), h, (long)cli_lock_pid(c->home));
            free(h);
            return EXIT_RUNTIME;
        }
        struct timespec ts = {0, CONNECT_STEP_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int cli_call(struct cli *c, const char *method, json_t *params, int timeout_ms, json_t **result)
{
    return cli_call_ex(c, method, params, timeout_ms, false, result);
}

static int api_exit_code(struct lr_api_client *cl, int rc)
{
    int exit_code = rc == LR_EAPI ? lr_api_client_error_exit(cl) : cli_exit_code(rc);
    return exit_code > 0 ? exit_code : EXIT_RUNTIME;
}

/* One call to the daemon. Returns 0, or an exit code > 0 after reporting
 * (no daemon, ...), or the call's error rc < 0, not reported, with err and
 * *exit_code (what the daemon's error, or rc, means for our exit). */
static int call(struct cli *c, const char *method, json_t *params, int timeout_ms, json_t **result,
                struct lr_err *err, int *exit_code)
{
    struct lr_api_client *cl = NULL;
    *result = NULL;
    *exit_code = EXIT_OK;
    int rc = cli_connect(c, &cl);
    if (rc) {
        json_decref(params);
        return rc;
    }
    rc = lr_api_call(cl, method, params, timeout_ms, result, err);
    if (rc < 0)
        *exit_code = api_exit_code(cl, rc);
    lr_api_client_close(cl);
    return rc;
}

int cli_call_ex(struct cli *c, const char *method, json_t *params, int timeout_ms,
                bool quiet_timeout, json_t **result)
{
    struct lr_err err = {0};
    int exit_code;
    int rc = call(c, method, params, timeout_ms, result, &err, &exit_code);
    if (rc >= 0)
        return rc;
    if (quiet_timeout && rc == LR_ETIMEOUT)
        return EXIT_TIMEOUT;
    cli_fail(rc, &err);
    return exit_code;
}

int cli_api_fail(struct lr_api_client *cl, int rc, const struct lr_err *err)
{
    int exit_code = api_exit_code(cl, rc);
    cli_fail(rc, err);
    return exit_code;
}

/* A configuration operation's failure: a usage error (this device's own ID
 * as a peer, ...) reads like the command's other usage errors, naming the
 * command ("peer.add" is `peer add`). */
static int config_op_fail(const char *method, int exit_code, int rc, const struct lr_err *err)
{
    if (exit_code != EXIT_USAGE) {
        cli_fail(rc, err);
        return exit_code;
    }
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "%s", method);
    for (char *p = cmd; *p; p++)
        if (*p == '.')
            *p = ' ';
    return cli_usage_error(cmd, "%s", lr_err_msg(err, rc));
}

/* cli_call for a configuration operation: its errors by config_op_fail. */
static int config_call(struct cli *c, const char *method, json_t *params, json_t **result)
{
    struct lr_err err = {0};
    int exit_code;
    int rc = call(c, method, params, 30000, result, &err, &exit_code);
    return rc < 0 ? config_op_fail(method, exit_code, rc, &err) : rc;
}

int cli_require_init(struct cli *c)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/config.json", c->home);
    if (access(path, F_OK) == 0)
        return 0;
    int e = errno;
    struct stat st;
    if (e != ENOENT && e != ENOTDIR)
        return cli_errorf(EXIT_RUNTIME, "cannot read %s: %s", path, strerror(e));
    if (stat(c->home, &st) == 0 && !S_ISDIR(st.st_mode))
        return cli_errorf(EXIT_RUNTIME, "home %s is not a directory", c->home);
    return cli_errorf(EXIT_RUNTIME, "%s is not initialised (run 'landropic init')", c->home);
}

int cli_config_op(struct cli *c, const char *method, json_t *params, json_t **result)
{
    int rc = cli_require_init(c);
    *result = NULL;
    if (rc) {
        json_decref(params);
        return rc;
    }
    struct lr_err err = {0};
    /* Looked at under the lock: a daemon starting now reads the file after us. */
    int lock = lr_config_lock(c->home, &err);
    if (lock < 0) {
        json_decref(params);
        return cli_fail(lock, &err);
    }
    if (cli_daemon_running(c->home)) {
        lr_config_unlock(lock);
        return config_call(c, method, params, result);
    }
    struct lr_config *cfg = NULL;
    rc = lr_config_load(c->home, &cfg, &err);
    if (rc == 0)
        rc = lr_config_apply(cfg, method, params, result, &err);
    if (rc == 0)
        rc = lr_config_save(cfg, &err);
    lr_config_unlock(lock);
    lr_config_free(cfg);
    json_decref(params);
    if (rc < 0) {
        json_decref(*result);
        *result = NULL;
        return config_op_fail(method, cli_exit_code(rc), rc, &err);
    }
    return 0;
}
