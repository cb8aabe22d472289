/*
 * fuzz_chunker.c - FastCDC invariants on arbitrary data and parameters.
 *
 * Input: 3 bytes choosing (min, avg, max) among valid settings, the rest is
 * the data. Checks: every chunk but the last is within [min, max]; the last
 * is within [1, max]; chunks tile the input exactly; a streaming caller that
 * feeds growing windows gets the same cut points as one call over the whole
 * buffer (the property the scanner's sliding buffer relies on).
 */
#include "chunker/chunker.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint32_t avgs[] = {256, 1024, 4096, 65536};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    struct lr_chunker_params prm;
    prm.avg = avgs[data[0] % 4];
    prm.min = prm.avg / (2u + data[1] % 3u);
    prm.max = prm.avg * (2u + data[2] % 4u);
    if (prm.min < 64)
        prm.min = 64;
    if (lr_chunker_params_check(&prm, NULL) != 0)
        return 0;
    const uint8_t *p = data + 3;
    size_t n = size - 3, off = 0;
    while (off < n) {
        size_t c = lr_chunker_cut(&prm, p + off, n - off, true);
        if (c == 0 || c > prm.max || c > n - off)
            abort();
        if (off + c < n && c < prm.min)
            abort();
        /* Streaming: growing windows must give the same first cut. */
        size_t w = prm.min;
        size_t s = 0;
        for (;;) {
            size_t win = w < n - off ? w : n - off;
            s = lr_chunker_cut(&prm, p + off, win, win == n - off);
            if (s)
                break;
            w = w * 3 / 2 + 1;
        }
        if (s != c)
            abort();
        off += c;
    }
    return 0;
}
