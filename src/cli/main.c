/*
 * main.c - landropic's entry point: global options and command dispatch.
 */
#include "cli.h"
#include "cmd_modes.h"

#include "config/config.h"
#include "util/log.h"
#include "util/str.h"
#include "util/xalloc.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: landropic [--home DIR] COMMAND [ARGS...]\n"
    "\n"
    "Encrypted peer-to-peer folder sync for devices on one network.\n"
    "\n"
    "Identity:\n"
    "  init [--name NAME]        create this device's identity and configuration\n"
    "  id                        print this device's ID\n"
    "  pair [--qr] | --code | --join CODE [--folder ID]\n"
    "                            show ID and addresses; or pair with a one-time code\n"
    "Daemon:\n"
    "  daemon [--listen HOST:PORT]... [--detach] [--log FILE]\n"
    "  stop                      stop the daemon gracefully\n"
    "Peers:\n"
    "  peer add DEVICE_ID [--name NAME] [--addr HOST:PORT]...\n"
    "  peer remove DEVICE_ID\n"
    "  peers [--json]\n"
    "Folders:\n"
    "  folder add PATH [--id ID] [--share DEVICE_ID]... [--mode MODE] [--conflict STRATEGY]\n"
    "                  [--conflict-window SECS] [--versions-keep N] [--versions-days DAYS]\n"
    "  folder set FOLDER_ID [--conflict STRATEGY] [--conflict-window SECS]\n"
    "                  [--versions-keep N] [--versions-days DAYS]\n"
    "  folder share FOLDER_ID DEVICE_ID\n"
    "  folder remove FOLDER_ID   stop syncing; never deletes files\n"
    "  folder override FOLDER_ID send-only: our version wins again (docs/modes.md)\n"
    "  folder revert FOLDER_ID   receive-only: discard local changes (docs/modes.md)\n"
    "  folders [--json]\n"
    "Sync and state:\n"
    "  scan [FOLDER_ID]... [--json]\n"
    "  sync [FOLDER_ID]... [--wait] [--timeout SECS]\n"
    "  status [FOLDER_ID] [--json]\n"
    "  conflicts [FOLDER_ID] [--json]\n"
    "  versions FOLDER_ID [PATH] [--json]   archived versions (replaced, deleted, conflict "
    "losers)\n"
    "  restore FOLDER_ID PATH [--version ID] put an archived version back; it syncs\n"
    "  sessions [--json]\n"
    "  events [--json]\n"
    "Global options:\n"
    "  --home DIR   state directory (default $LANDROPIC_HOME, $XDG_STATE_HOME/landropic,\n"
    "               ~/.local/state/landropic)\n"
    "  --version    print the version\n"
    "Run 'landropic COMMAND --help' for a command's options.\n"
    "Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 timeout, 4 daemon not running.\n";

static const struct {
    const char *name;
    int (*fn)(struct cli *, int, char **);
} commands[] = {
    {"init", cmd_init},           {"id", cmd_id},
    {"pair", cmd_pair},           {"peer", cmd_peer},
    {"peers", cmd_peers},         {"folder", cmd_folder},
    {"folders", cmd_folders},     {"scan", cmd_scan},
    {"daemon", cmd_daemon},       {"stop", cmd_stop},
    {"status", cmd_status},       {"sync", cmd_sync},
    {"conflicts", cmd_conflicts}, {"sessions", cmd_sessions},
    {"events", cmd_events},       {"versions", cmd_versions},
    {"restore", cmd_restore},
};

/*
 * --home is global but users also write it after the command; take it from
 * anywhere before a "--". Returns the value (borrowed) or NULL; sets *bad on
 * a missing value.
 */
static const char *find_home(int argc, char **argv, bool *bad)
{
    const char *home = NULL;
    *bad = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--home") == 0) {
            if (i + 1 >= argc) {
                *bad = true;
                return NULL;
            }
            home = argv[++i];
        } else if (strncmp(argv[i], "--home=", 7) == 0) {
            home = argv[i] + 7;
        }
    }
    return home;
}

static int find_command(const char *name)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(name, commands[i].name) == 0)
            return (int)i;
    return -1;
}

static int unknown_command(const char *name)
{
    char *e = lr_escs(name);
    fprintf(stderr, "landropic: unknown command '%s' (see 'landropic --help')\n", e);
    free(e);
    return EXIT_USAGE;
}

/* The global --home (find_home checked it) is allowed anywhere. */
static int skip_home(int argc, char **argv, int i)
{
    while (i < argc && (strcmp(argv[i], "--home") == 0 || strncmp(argv[i], "--home=", 7) == 0))
        i += argv[i][6] == '=' ? 1 : 2;
    return i;
}

/* "landropic help folder set": what "landropic folder set --help" prints.
 * Only COMMAND [SUBCOMMAND] words are taken, and --help goes right after
 * them: the command then shows its help before reading anything (after a
 * user's option, --help could be taken as that option's value, and the
 * command run for real without a home). */
static int help_for(int argc, char **argv)
{
    char *w[2];
    int n = 0;
    for (int i = skip_home(argc, argv, 0); i < argc; i = skip_home(argc, argv, i + 1)) {
        if (n == 2 || argv[i][0] == '-') {
            char *e = lr_escs(argv[i]);
            fprintf(stderr,
                    "landropic help: unexpected argument '%s' (usage: landropic help COMMAND "
                    "[SUBCOMMAND])\n",
                    e);
            free(e);
            return EXIT_USAGE;
        }
        w[n++] = argv[i];
    }
    if (n == 0 || strcmp(w[0], "help") == 0) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    int i = find_command(w[0]);
    if (i < 0)
        return unknown_command(w[0]);
    char *v[] = {w[0], n > 1 ? w[1] : NULL, NULL};
    v[n] = (char[]){"--help"}; /* the block's lifetime: the whole call */
    struct cli c = {0};
    bool modes = strcmp(w[0], "folder") == 0 && cmd_modes_handles(n + 1, v);
    return (modes ? cmd_folder_mode : commands[i].fn)(&c, n + 1, v);
}

int main(int argc, char **argv)
{
    /* A reader that goes away (e.g. `landropic events | head`) must not kill us mid-write. */
    signal(SIGPIPE, SIG_IGN);
    /* Commands report through stderr themselves; module chatter is for the daemon's log. */
    lr_log_set_level(LR_LOG_WARN);

    bool bad_home;
    const char *home_opt = find_home(argc, argv, &bad_home);
    if (bad_home) {
        fputs("landropic: option '--home' needs a value\n", stderr);
        return EXIT_USAGE;
    }
    if (home_opt && !*home_opt) {
        fputs("landropic: option '--home' needs a non-empty value\n", stderr);
        return EXIT_USAGE;
    }
    /* Skip global options to find the command word. */
    int ci = 1;
    while (ci < argc) {
        if (strcmp(argv[ci], "--home") == 0) {
            ci += 2;
        } else if (strncmp(argv[ci], "--home=", 7) == 0) {
            ci++;
        } else if (strcmp(argv[ci], "--version") == 0 || strcmp(argv[ci], "-V") == 0) {
            int extra = skip_home(argc, argv, ci + 1);
            if (extra < argc) {
                /* A script's "landropic --version foo" is a mistake, not a query. */
                char *e = lr_escs(argv[extra]);
                fprintf(stderr,
                        "landropic: unexpected argument '%s' after %s (see 'landropic --help')\n",
                        e, argv[ci]);
                free(e);
                return EXIT_USAGE;
            }
            printf("landropic %s\n", LR_VERSION);
            return EXIT_OK;
        } else if (strcmp(argv[ci], "--help") == 0 || strcmp(argv[ci], "-h") == 0 ||
                   strcmp(argv[ci], "help") == 0) {
            return help_for(argc - ci - 1, argv + ci + 1);
        } else {
            break;
        }
    }
    if (ci >= argc) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (argv[ci][0] == '-') {
        char *e = lr_escs(argv[ci]);
        fprintf(stderr, "landropic: unknown option '%s' (see 'landropic --help')\n", e);
        free(e);
        return EXIT_USAGE;
    }
    int i = find_command(argv[ci]);
    if (i < 0)
        return unknown_command(argv[ci]);
    struct cli c = {0};
    struct lr_err err = {0};
    int rc = lr_config_home(home_opt, &c.home, &err);
    if (rc < 0)
        return cli_fail(rc, &err);
    bool modes = strcmp(argv[ci], "folder") == 0 && cmd_modes_handles(argc - ci, argv + ci);
    rc = (modes ? cmd_folder_mode : commands[i].fn)(&c, argc - ci, argv + ci);
    free(c.home);
    return rc;
}
