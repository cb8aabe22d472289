/*
 * cmd_modes.h - `folder override` and `folder revert` (docs/modes.md),
 * dispatched from main.c before the other `folder` subcommands.
 */
#ifndef LR_CLI_CMD_MODES_H
#define LR_CLI_CMD_MODES_H

#include "cli.h"

/* True if argv[1] names a subcommand of `folder` handled here. */
bool cmd_modes_handles(int argc, char **argv);
/* `folder override|revert FOLDER_ID`; argv[0] is "folder". Exit code. */
int cmd_folder_mode(struct cli *c, int argc, char **argv);

#endif
