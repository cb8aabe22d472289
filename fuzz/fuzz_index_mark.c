/*
 * fuzz_index_mark.c - lr_store_mark_parse (store.h) on arbitrary bytes.
 *
 * Invariants: a rejected input leaves the mark zeroed; an accepted one has
 * a non-zero index ID, a sequence and a clock below 2^62, and formats back to the
 * very bytes parsed (the format is canonical: one spelling per mark).
 */
#include "store/store.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lr_store_mark m;
    if (!lr_store_mark_parse(data, size, &m)) {
        if (m.index_id != 0 || m.max_seq != 0)
            abort();
        return 0;
    }
    if (m.index_id == 0 || m.max_seq >= (1ull << 62) || m.clock >= (1ull << 62))
        abort();
    char buf[96];
    int n = lr_store_mark_format(&m, buf, sizeof(buf));
    if (n < 0 || (size_t)n != size || memcmp(buf, data, size) != 0)
        abort();
    return 0;
}
