/*
 * cli.h - shared pieces of the landropic command-line tool.
 *
 * Each command is a function `int cmd_x(struct cli *c, int argc, char **argv)`
 * returning the process exit code (0 ok, 1 runtime error, 2 usage error,
 * 3 timeout, 4 daemon not running; shared/cli-contract.md). argv[0] is the
 * command word. Errors are printed as one line on stderr, "landropic: ...",
 * naming the culprit. stdout carries only results (one JSON document with
 * --json).
 *
 * A command that needs the daemon talks to it only through the control API
 * (api/api.h). Configuration commands work with or without a daemon: they
 * build the operation's parameters and either send them to the daemon or
 * apply them to the config file here (config/ops.h), so both paths behave
 * the same.
 */
#ifndef LR_CLI_CLI_H
#define LR_CLI_CLI_H

#include "util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_TIMEOUT = 3, EXIT_NODAEMON = 4 };

struct cli {
    char *home; /* resolved, absolute */
};

/* ---- option parsing ---- */
#define OPT_MAX_VALUES 32

struct opt_spec {
    const char *name; /* long name without dashes */
    bool has_arg;
    bool repeat;
};

struct opt_val {
    int count;
    const char *values[OPT_MAX_VALUES];
};

struct opts {
    const struct opt_spec *spec;
    int nspec;
    struct opt_val vals[16];
    const char *pos[OPT_MAX_VALUES];
    int npos;
};

/*
 * Parse argv[1..argc) against `spec` (always accepting --help and --home).
 * Prints the usage error and returns EXIT_USAGE, or -1 after printing help
 * (caller exits 0), or 0.
 */
int opts_parse(struct opts *o, const struct opt_spec *spec, int nspec, int argc, char **argv,
               const char *cmd, const char *usage);
const char *opt_get(const struct opts *o, const char *name);
bool opt_has(const struct opts *o, const char *name);
const struct opt_val *opt_all(const struct opts *o, const char *name);

/* ---- output and errors ---- */
int cli_exit_code(int rc);
/* Print "landropic: MSG" for rc/err and return its exit code. */
int cli_fail(int rc, const struct lr_err *err);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "landropic: MESSAGE" on stderr, control characters in it escaped (a home
 * or path the user typed may hold some); returns code. */
int cli_errorf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A plain decimal from min to max (digits only: no sign, space or base
 * prefix, which strtoll would take) into *out; false if s is not one. */
bool cli_parse_count(const char *s, long long min, long long max, long long *out);
/* FOLDER_ID arguments are UTF-8 (IDs are): one that is not cannot be sent
 * (json_string refuses it) and was left out of the request, which then
 * meant every folder. Usage error naming it, or 0. */
int cli_check_folder_args(const char *cmd, const char *const *ids, int n);
/* Print a JSON document (stolen) on stdout. */
void cli_print_json(json_t *doc);
/* The same on one line (documents streamed one per line); frees it. */
void cli_print_json_line(json_t *doc);
/* Print a name for humans with control characters and bad UTF-8 escaped. */
void cli_print_name(FILE *f, const char *s);
/* Print a message from the daemon: as cli_print_name, but a backslash is
 * kept, as the names inside it are escaped already (else "a\x0ab"). */
void cli_print_msg(FILE *f, const char *s);
/* obj[key] escaped for humans, from the raw bytes in obj[key "_b64"] when
 * there are (so a name that is not UTF-8 shows \xff, not U+FFFD). */
void cli_print_path(FILE *f, json_t *obj, const char *key);

/* ---- daemon ---- */
/* True if a daemon holds this home's lock. */
bool cli_daemon_running(const char *home);
/* The PID daemon.lock names (0 if none can be read). */
pid_t cli_lock_pid(const char *home);
struct lr_api_client;
/*
 * Connect to the running daemon's control socket. A daemon takes its lock
 * before it listens, so while the lock is held and the socket does not
 * answer yet (start-up) this waits for it, up to 10 s. Returns 0 with *out
 * owned by the caller, or, after one line on stderr, EXIT_NODAEMON (no
 * daemon holds the lock) or EXIT_RUNTIME (one holds it but never answered,
 * or another failure).
 */
int cli_connect(struct cli *c, struct lr_api_client **out);
/*
 * Call `method` on the running daemon (params stolen). On failure prints the
 * error and returns the exit code (EXIT_NODAEMON if none runs); 0 on success
 * with *result owned by the caller.
 */
int cli_call(struct cli *c, const char *method, json_t *params, int timeout_ms, json_t **result);
/* cli_call; with quiet_timeout a reply not in time prints nothing (the
 * caller says why) and returns EXIT_TIMEOUT. */
int cli_call_ex(struct cli *c, const char *method, json_t *params, int timeout_ms,
                bool quiet_timeout, json_t **result);
/* A failed lr_api_call()/lr_api_await() on `cl`: print its error, return the
 * exit code (the daemon's for an error reply). */
int cli_api_fail(struct lr_api_client *cl, int rc, const struct lr_err *err);
/* Apply a configuration operation through the daemon or, if none runs, locally. */
int cli_config_op(struct cli *c, const char *method, json_t *params, json_t **result);
/* Require an initialised home; prints the error and returns its exit code, or 0. */
int cli_require_init(struct cli *c);

/* ---- commands ---- */
int cmd_init(struct cli *c, int argc, char **argv);
int cmd_id(struct cli *c, int argc, char **argv);
int cmd_pair(struct cli *c, int argc, char **argv);
int cmd_peer(struct cli *c, int argc, char **argv);
int cmd_peers(struct cli *c, int argc, char **argv);
int cmd_folder(struct cli *c, int argc, char **argv);
int cmd_folders(struct cli *c, int argc, char **argv);
int cmd_scan(struct cli *c, int argc, char **argv);
int cmd_daemon(struct cli *c, int argc, char **argv);
int cmd_stop(struct cli *c, int argc, char **argv);
int cmd_status(struct cli *c, int argc, char **argv);
int cmd_sync(struct cli *c, int argc, char **argv);
int cmd_conflicts(struct cli *c, int argc, char **argv);
int cmd_sessions(struct cli *c, int argc, char **argv);
int cmd_events(struct cli *c, int argc, char **argv);
/* cmd_versions.c: the versions archive (beyond the contract, docs/cli.md). */
int cmd_versions(struct cli *c, int argc, char **argv);
int cmd_restore(struct cli *c, int argc, char **argv);

#endif
