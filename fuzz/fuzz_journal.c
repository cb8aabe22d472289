/*
 * fuzz_journal.c - the commit-journal decoder (store/staging_reuse.h), disk
 * input read at start to roll commits forward.
 *
 * Whatever it accepts must hold only what a writer could have stored:
 * records with a commit, a bounded chunk list of sane chunks, a non-empty
 * path without NUL within the limit, and a valid vector; a rejection must
 * leave nothing allocated (checked by the sanitizers' leak report).
 */
#include "store/staging_reuse.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lr_store_sidecar *v = (struct lr_store_sidecar *)&size; /* must be reset */
    size_t n = 1;
    if (lr_store_journal_parse(data, size, &v, &n) < 0) {
        if (v != NULL || n != 0)
            abort();
        return 0;
    }
    if (n > LR_STORE_JOURNAL_MAX || (n && !v))
        abort();
    for (size_t i = 0; i < n; i++) {
        const struct lr_store_sidecar *sc = &v[i];
        const struct lr_file_rec *r = &sc->commit.rec;
        if (!sc->has_commit || sc->nchunks > LR_STORE_JOURNAL_CHUNKS_MAX || r->path_len == 0 ||
            r->path_len > LR_STORE_SIDECAR_PATH_MAX || r->path[r->path_len] != 0 ||
            memchr(r->path, 0, r->path_len) || r->type != LR_FT_FILE)
            abort();
        for (size_t k = 0; k < sc->nchunks; k++)
            if (sc->chunks[k].len == 0 || sc->chunks[k].len > LR_STORE_CHUNK_MAX ||
                sc->chunks[k].off > (uint64_t)INT64_MAX - sc->chunks[k].len)
                abort();
        for (size_t k = 0; k < r->vv.n; k++)
            if (r->vv.e[k].counter == 0 || (k && r->vv.e[k].id <= r->vv.e[k - 1].id))
                abort();
    }
    lr_store_journal_release(v, n);
    return 0;
}
