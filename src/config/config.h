/*
 * config.h - the device's configuration: its name, its peers and its folders.
 *
 * Stored as HOME/config.json (jansson), replaced atomically on every save
 * (temp file + fsync + rename + directory fsync), so a crash leaves either
 * the old or the new file, never a torn one. The daemon is the only writer
 * while it runs; the CLI edits the file directly only when no daemon runs,
 * holding lr_config_lock() (which the daemon takes to read it at start).
 *
 * Home resolution (lr_config_home): --home, else $LANDROPIC_HOME, else
 * $XDG_STATE_HOME/landropic, else ~/.local/state/landropic.
 *
 * Ownership: a `struct lr_config` owns every string and array inside it;
 * lr_config_free() releases all. Functions that add entries copy their
 * arguments. Validation functions fill `err` with a one-line message naming
 * the bad value and return LR_EUSAGE for malformed input (exit code 2) or
 * LR_EEXISTS / LR_ENOTFOUND / LR_ECONFIG for state conflicts (exit 1).
 */
#ifndef LR_CONFIG_CONFIG_H
#define LR_CONFIG_CONFIG_H

#include "identity/identity.h"
#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_CONFIG_FILE "config.json"
#define LR_CONFIG_NAME_MAX 64
#define LR_FOLDER_ID_MAX 255
#define LR_ADDR_MAX 16 /* addresses per peer */

enum lr_folder_mode { LR_MODE_SEND_RECEIVE, LR_MODE_SEND_ONLY, LR_MODE_RECEIVE_ONLY };

struct lr_peer_cfg {
    struct lr_device_id id;
    char *name;   /* may be empty, never NULL */
    char **addrs; /* "HOST:PORT" strings */
    size_t naddrs;
};

/* The longest --conflict-window: a year. */
#define LR_CONFLICT_WINDOW_MAX (365 * 86400)
/* Versions archive retention (docs/conflicts.md, "Archive retention"). */
#define LR_VERSIONS_KEEP_MAX 1000000
#define LR_VERSIONS_DAYS_MAX 36500

struct lr_folder_cfg {
    char *id;
    char *path; /* absolute, canonical */
    enum lr_folder_mode mode;
    char *conflict;           /* strategy text, validated by lr_config_check_strategy */
    uint32_t conflict_window; /* seconds, 0..LR_CONFLICT_WINDOW_MAX */
    /* This device's archive retention: the newest versions_keep archived
     * versions of each file stay (0: all), and none older than
     * versions_days days (0: no limit). Both 0: nothing is ever pruned. */
    uint32_t versions_keep; /* 0..LR_VERSIONS_KEEP_MAX */
    uint32_t versions_days; /* 0..LR_VERSIONS_DAYS_MAX */
    struct lr_device_id *shared;
    size_t nshared;
    /* Random, made by `folder add` (never 0 then; 0: a configuration from
     * before tokens). The folder's index carries it (lr_index_folder_bind):
     * a folder removed and added again under the same ID gets a fresh
     * index, not the old one's records (which a scan of another or an
     * emptied directory would turn into deletions on every peer). */
    uint64_t token;
};

struct lr_config {
    char *home;     /* absolute */
    char *name;     /* device name */
    bool discovery; /* "device": {"discovery": false} turns LAN discovery off (default on) */
    struct lr_peer_cfg *peers;
    size_t npeers;
    struct lr_folder_cfg *folders;
    size_t nfolders;
};

/* Resolve the home directory (caller frees *out). `opt` is --home or NULL. */
int lr_config_home(const char *opt, char **out, struct lr_err *err);

/* A fresh config for `home` with device name `name` (copied). */
struct lr_config *lr_config_new(const char *home, const char *name);
/* LR_ENOTINIT if HOME/config.json is missing; LR_ECONFIG naming the problem if malformed. */
int lr_config_load(const char *home, struct lr_config **out, struct lr_err *err);
int lr_config_save(const struct lr_config *cfg, struct lr_err *err);
/*
 * Serialise read-modify-write cycles of HOME/config.json between processes
 * (two offline `folder add`s, or one racing a starting daemon, each loaded
 * the same file and the later save dropped the other's change): an
 * exclusive flock on HOME/config.lock, waited for. Returns the lock's
 * descriptor, which lr_config_unlock() releases, or a negative code.
 */
int lr_config_lock(const char *home, struct lr_err *err);
/* Decode a `path_b64` value (standard base64) into a new string; NULL if it
 * is malformed or holds a NUL byte. */
char *lr_config_unbase64_str(const char *s);
void lr_config_unlock(int fd);
void lr_config_free(struct lr_config *cfg);

struct lr_peer_cfg *lr_config_find_peer(const struct lr_config *cfg, const struct lr_device_id *id);
struct lr_folder_cfg *lr_config_find_folder(const struct lr_config *cfg, const char *folder_id);

/* Adds a peer, or (if present) updates its name/addresses when given. */
int lr_config_add_peer(struct lr_config *cfg, const struct lr_device_id *id, const char *name,
                       char *const *addrs, size_t naddrs, struct lr_err *err);
int lr_config_remove_peer(struct lr_config *cfg, const struct lr_device_id *id, struct lr_err *err);

/*
 * Adds a folder. `path` must already be canonical (the caller resolved it and
 * checked it is a directory); this checks the id and overlaps with other
 * folders and with the home.
 */
/* A new random folder token (never 0). 0 or a negative error (getrandom). */
int lr_config_new_token(uint64_t *out, struct lr_err *err);
/*
 * Give every folder without a token (a configuration from before tokens)
 * a new one; *changed tells whether any was given (the caller saves the
 * configuration, under its lock, before the tokens are used: an unsaved
 * token would differ at the next load and look like a re-added folder).
 */
int lr_config_assign_tokens(struct lr_config *cfg, bool *changed, struct lr_err *err);
int lr_config_add_folder(struct lr_config *cfg, const struct lr_folder_cfg *f, struct lr_err *err);
int lr_config_remove_folder(struct lr_config *cfg, const char *folder_id, struct lr_err *err);
/* Returns 1 if newly shared, 0 if it already was. */
int lr_config_share_folder(struct lr_config *cfg, const char *folder_id,
                           const struct lr_device_id *dev, struct lr_err *err);
bool lr_folder_shared_with(const struct lr_folder_cfg *f, const struct lr_device_id *dev);

/* Validators for user input (LR_EUSAGE with a message naming the value). */
int lr_config_check_folder_id(const char *id, struct lr_err *err);
int lr_config_check_strategy(const char *s, struct lr_err *err);
/* A checked strategy in the form the audit trail and peers use (prefer:ID
 * with the ID grouped as `id` prints it, whatever spelling was typed); the
 * caller frees it. */
char *lr_config_norm_strategy(const char *s);
int lr_config_check_addr(const char *addr, struct lr_err *err);
int lr_config_check_name(const char *name, struct lr_err *err);
int lr_folder_mode_parse(const char *s, enum lr_folder_mode *out, struct lr_err *err);
const char *lr_folder_mode_name(enum lr_folder_mode m);

/* True if `a` equals `b` or lies inside it (both canonical absolute paths). */
bool lr_path_within(const char *a, const char *b);

#endif
