/*
 * chunkbench.c - chunker and chunker+SHA-256 throughput over random data in RAM.
 *
 * Usage: chunkbench [MiB (default 1024)] [runs (default 3)]
 * Prints the best run of each, in MB/s (10^6 bytes per second), plus the
 * chunk count and size range, single thread.
 */
#include "chunker/chunker.h"
#include "hash/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

struct stats {
    size_t chunks, smallest, largest;
};

static double run(const uint8_t *p, size_t n, int hash, struct stats *st)
{
    double t0 = now();
    size_t off = 0;
    st->chunks = 0;
    st->smallest = SIZE_MAX;
    st->largest = 0;
    while (off < n) {
        size_t c = lr_chunker_cut(&lr_chunker_default, p + off, n - off, true);
        if (hash) {
            struct lr_hash h;
            lr_sha256(p + off, c, &h);
        }
        if (off + c < n) {
            st->smallest = c < st->smallest ? c : st->smallest;
            st->largest = c > st->largest ? c : st->largest;
        }
        st->chunks++;
        off += c;
    }
    return now() - t0;
}

static unsigned long parse_arg(const char *s, unsigned long dflt)
{
    if (!s)
        return dflt;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || v == 0) {
        fprintf(stderr, "chunkbench: bad number '%s'\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    unsigned long mib = parse_arg(argc > 1 ? argv[1] : NULL, 1024);
    unsigned long runs = parse_arg(argc > 2 ? argv[2] : NULL, 3);
    size_t n = (size_t)mib << 20;
    uint8_t *p = malloc(n);
    if (!p) {
        fprintf(stderr, "chunkbench: cannot allocate %lu MiB\n", mib);
        return 1;
    }
    uint64_t s = 1;
    for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t v = splitmix(&s);
        for (int j = 0; j < 8; j++)
            p[i + (size_t)j] = (uint8_t)(v >> (8 * j));
    }

    static const char *names[] = {"fastcdc", "fastcdc+sha256"};
    struct stats st = {0};
    for (int hash = 0; hash <= 1; hash++) {
        double best = 1e30;
        for (unsigned long r = 0; r < runs; r++) {
            double t = run(p, n, hash, &st);
            best = t < best ? t : best;
        }
        printf("%-15s %8.0f MB/s  (%lu MiB, best of %lu; %zu chunks, mean %.1f KiB, "
               "%zu..%zu B)\n",
               names[hash], (double)n / best / 1e6, mib, runs, st.chunks,
               (double)n / (double)st.chunks / 1024.0, st.smallest, st.largest);
    }
    free(p);
    return 0;
}
