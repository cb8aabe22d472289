/*
 * ignore.h - .landropicignore: which paths of a folder are not synced.
 *
 * A folder's root may hold a `.landropicignore` file in gitignore syntax
 * (docs/ignore.md has the full grammar): blank lines and `#` comments,
 * `\#` `\!` escapes, trailing spaces trimmed unless escaped, `!` negation
 * (the last matching rule wins), `/` at the start or in the middle anchors a
 * pattern to the root, a trailing `/` matches directories only, `*` `?`
 * `[...]` never cross `/`, and `**` works as a leading `**` + `/`, a trailing
 * `/` + `**`, or a middle `/` + `**` + `/`.
 *
 * As in git, a path whose parent directory is excluded cannot be re-included:
 * lr_ignore_match() checks every ancestor directory of the path as well.
 *
 * Built-in rule: every rule set (also an empty or NULL one) acts as if its
 * file began with the line `/.landropicignore`, so the root ignore file is
 * ignored itself: each device keeps its own rules, the scanner does not
 * index it, and a peer's entry of that path is never applied (neither over
 * ours nor as a delete). A later `!.landropicignore` (or `!/.landropicignore`)
 * line re-includes it, by the ordinary last-match rule: that device then
 * syncs its rules like any file.
 *
 * Paths are byte strings (they need not be valid UTF-8) relative to the
 * folder root, with '/' separators and no leading slash; empty components
 * (from "a//b", a leading or trailing '/') are skipped. Matching is
 * case-sensitive and byte-wise (`?` matches one byte).
 *
 * Cost: matching one path is bounded by about (path length) x (total pattern
 * length) steps: the glob matcher backtracks only to the last `*`, and `**`
 * is run as a set of states over path components, so no pattern can take
 * exponential time.
 *
 * Ownership and threads: lr_ignore_parse()/lr_ignore_load*() allocate a
 * compiled rule set owned by the caller, freed with lr_ignore_free(). It is
 * immutable, so any number of threads may match against it at once without
 * locking. Matching allocates nothing for paths up to 4096 bytes.
 *
 * Errors: LR_EPATTERN (bad pattern; the message names the line), LR_ETOOBIG
 * (file or text over LR_IGNORE_MAX_FILE), -errno from the file system.
 */
#ifndef LR_IGNORE_IGNORE_H
#define LR_IGNORE_IGNORE_H

#include "util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LR_IGNORE_FILE ".landropicignore"
/* Limits; exceeding one fails the whole load (a partial rule set could sync too much). */
#define LR_IGNORE_MAX_RULES 10000
#define LR_IGNORE_MAX_LINE 4096
#define LR_IGNORE_MAX_FILE (1024 * 1024)

struct lr_ignore;

/*
 * Compile the rules in text[0..len) (borrowed; not retained). len may be 0
 * (empty rule set). On success *out owns the new rule set; on failure *out
 * is NULL and err names the offending line ("line 3: unterminated '['").
 * Returns 0, LR_EPATTERN or LR_ETOOBIG.
 */
int lr_ignore_parse(const char *text, size_t len, struct lr_ignore **out, struct lr_err *err);

/*
 * Load ROOT/.landropicignore relative to the open directory `rootfd`
 * (borrowed; not closed). The file is opened with O_NOFOLLOW|O_NONBLOCK, so a
 * symlink (-ELOOP) or anything but a regular file (LR_EBADVAL) is refused
 * rather than followed or blocked on. A missing file gives an empty rule set
 * and returns 0. Larger than LR_IGNORE_MAX_FILE: LR_ETOOBIG.
 */
int lr_ignore_load_at(int rootfd, struct lr_ignore **out, struct lr_err *err);
/* Same, given the folder root's path (borrowed). */
int lr_ignore_load(const char *root, struct lr_ignore **out, struct lr_err *err);

/* NULL is a no-op. */
void lr_ignore_free(struct lr_ignore *ig);

/* Number of rules (not counting blank and comment lines, nor the built-in one). */
size_t lr_ignore_count(const struct lr_ignore *ig);

/*
 * Is relpath[0..len) ignored? `is_dir` says whether the path itself is a
 * directory (its ancestors are directories by definition). True if the path
 * or any of its ancestor directories is excluded by its last matching rule.
 * An empty path (the root) is never ignored. `ig` may be NULL (no rules but
 * the built-in `/.landropicignore`).
 */
bool lr_ignore_match(const struct lr_ignore *ig, const char *relpath, size_t len, bool is_dir);

/*
 * Like lr_ignore_match() but judges only the last component, assuming the
 * caller already knows no ancestor is ignored: what a directory walk that
 * does not descend into ignored directories needs, at a cost independent of
 * depth for most patterns.
 */
bool lr_ignore_match_entry(const struct lr_ignore *ig, const char *relpath, size_t len,
                           bool is_dir);

/*
 * lr_ignore_match() that also reports, in *line, the line number of the rule
 * that decided (a `!` rule for a re-included path), or 0 if no rule of the
 * file matched (true with line 0: the built-in `/.landropicignore` decided).
 */
bool lr_ignore_explain(const struct lr_ignore *ig, const char *relpath, size_t len, bool is_dir,
                       unsigned *line);

/* --- test-only ---------------------------------------------------------------------------- */

/*
 * lr_ignore_match() (or _entry() if `entry_only`) that adds the number of
 * matcher steps taken to *steps, so tests can bound the work without clocks.
 */
bool lr__ignore_match_steps(const struct lr_ignore *ig, const char *relpath, size_t len,
                            bool is_dir, bool entry_only, uint64_t *steps);

#endif
