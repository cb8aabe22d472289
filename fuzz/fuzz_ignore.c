/*
 * fuzz_ignore.c - .landropicignore parser and matcher.
 *
 * Input: the rules, then a NUL byte, then paths one per line (a trailing '/'
 * marks a directory). Without a NUL, the first line is the rules and the
 * remaining lines are paths.
 *
 * Invariants: parsing never crashes and fails only with LR_EPATTERN or
 * LR_ETOOBIG plus a message; matching never crashes and stays within the
 * documented work bound; a path is ignored exactly when it is ignored by its
 * own last matching rule or its parent directory is ignored; explain agrees
 * with match (line 0 only for the built-in /.landropicignore rule).
 */
#include "ignore/ignore.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t bound(size_t path_len, size_t text_len, size_t nrules)
{
    return 4 * ((uint64_t)path_len + 2) * ((uint64_t)text_len + 2 * nrules + 2);
}

static void check_path(const struct lr_ignore *ig, size_t text_len, const char *p, size_t n)
{
    bool is_dir = n && p[n - 1] == '/';
    uint64_t steps = 0;
    bool full = lr__ignore_match_steps(ig, p, n, is_dir, false, &steps);
    if (steps > bound(n, text_len, lr_ignore_count(ig)))
        abort();
    bool entry = lr_ignore_match_entry(ig, p, n, is_dir);
    if (full != lr_ignore_match(ig, p, n, is_dir))
        abort();
    unsigned line = 0;
    /* Line 0 names the built-in first rule, /.landropicignore (ignore.h):
     * only that root entry, or a path below it, may be decided by it. */
    static const char builtin[] = ".landropicignore";
    size_t bl = sizeof(builtin) - 1;
    size_t s0 = 0;
    while (s0 < n && p[s0] == '/')
        s0++;
    bool under_builtin =
        n - s0 >= bl && memcmp(p + s0, builtin, bl) == 0 && (n - s0 == bl || p[s0 + bl] == '/');
    if (lr_ignore_explain(ig, p, n, is_dir, &line) != full || (full && line == 0 && !under_builtin))
        abort();

    /* parent: drop trailing slashes, then the last component */
    size_t e = n;
    while (e && p[e - 1] == '/')
        e--;
    while (e && p[e - 1] != '/')
        e--;
    bool parent = e ? lr_ignore_match(ig, p, e, true) : false;
    bool has_name = false;
    for (size_t i = 0; i < n; i++)
        has_name |= p[i] != '/';
    if (!has_name) {
        if (full || entry)
            abort();
        return;
    }
    if (full != (entry || parent))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    const char *d = (const char *)data;
    const char *sep = memchr(d, '\0', size);
    if (!sep)
        sep = memchr(d, '\n', size);
    size_t text_len = sep ? (size_t)(sep - d) : size;
    struct lr_ignore *ig = NULL;
    struct lr_err err = {0};
    int rc = lr_ignore_parse(d, text_len, &ig, &err);
    if (rc != 0) {
        if ((rc != LR_EPATTERN && rc != LR_ETOOBIG) || ig || err.code != rc || !err.msg[0])
            abort();
        return 0;
    }
    if (!sep) {
        lr_ignore_free(ig);
        return 0;
    }
    const char *p = sep + 1, *end = d + size;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        check_path(ig, text_len, p, n);
        if (!nl)
            break;
        p = nl + 1;
    }
    lr_ignore_free(ig);
    return 0;
}
