/*
 * cmd_modes.c - `folder override FOLDER_ID` (send-only: our version of
 * every path the peers changed wins again) and `folder revert FOLDER_ID`
 * (receive-only: local changes are discarded, the peers' version comes
 * back, the local one goes to the versions archive). Both need the daemon:
 * they run in its serial job queue, in line with the puller and scans
 * (docs/modes.md). Exit codes as the contract's: 0 done, 1 unknown folder
 * or wrong mode, 2 usage, 4 no daemon.
 */
#include "cmd_modes.h"

#include "util/str.h"

#include <stdlib.h>
#include <string.h>

static const char override_usage[] =
    "usage: landropic folder override FOLDER_ID [--json]\n"
    "Send-only folder: make this device's version of every path the peers changed win again\n"
    "(the peers replace theirs, keeping it in their versions archive). Needs the daemon.\n";

static const char revert_usage[] =
    "usage: landropic folder revert FOLDER_ID [--json]\n"
    "Receive-only folder: discard this device's local changes; the peers' versions come back\n"
    "and the local files go to .landropic/versions/. Needs the daemon.\n";

bool cmd_modes_handles(int argc, char **argv)
{
    return argc >= 2 && (strcmp(argv[1], "override") == 0 || strcmp(argv[1], "revert") == 0);
}

int cmd_folder_mode(struct cli *c, int argc, char **argv)
{
    /* argv[0] "folder", argv[1] the subcommand. */
    bool revert = strcmp(argv[1], "revert") == 0;
    const char *name = revert ? "folder revert" : "folder override";
    static const struct opt_spec spec[] = {{"json", false, false}};
    struct opts o;
    int rc =
        opts_parse(&o, spec, 1, argc - 1, argv + 1, name, revert ? revert_usage : override_usage);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (o.npos < 1)
        return cli_usage_error(name, "missing FOLDER_ID");
    if (o.npos > 1) {
        char *e = lr_escs(o.pos[1]);
        rc = cli_usage_error(name, "unexpected argument '%s'", e);
        free(e);
        return rc;
    }
    if ((rc = cli_check_folder_args(name, o.pos, 1)) || (rc = cli_require_init(c)))
        return rc;
    json_t *params = json_pack("{s:s}", "folder", o.pos[0]);
    json_t *res = NULL;
    /* A large folder may take a while: the daemon answers when the job ran. */
    rc = cli_call(c, revert ? "folder.revert" : "folder.override", params, 600 * 1000, &res);
    if (rc)
        return rc;
    if (opt_has(&o, "json")) {
        cli_print_json(res);
        return EXIT_OK;
    }
    cli_print_name(stdout, o.pos[0]);
    if (revert)
        printf(": %lld local changes reverted (%lld files archived in .landropic/versions/), "
               "%lld kept\n",
               (long long)json_integer_value(json_object_get(res, "reverted")),
               (long long)json_integer_value(json_object_get(res, "archived")),
               (long long)json_integer_value(json_object_get(res, "kept")));
    else
        printf(": %lld paths overridden with this device's version, %lld kept\n",
               (long long)json_integer_value(json_object_get(res, "overridden")),
               (long long)json_integer_value(json_object_get(res, "kept")));
    json_decref(res);
    return EXIT_OK;
}
