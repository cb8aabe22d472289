/*
 * test_chunker.c - FastCDC chunker: pinned boundaries, a differential test
 * against a naive byte-at-a-time reference, edit resilience, limits, eof.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "chunker/chunker.h"
#include "hash/hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* splitmix64: fixed, portable pseudo-random bytes for pinned tests. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Bytes are taken little-endian from each output, on any host. */
static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t s = seed, v = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 8 == 0)
            v = rng_next(&s);
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* Split p[0..n) with lr_chunker_cut into at most cap lengths; returns the count. */
static size_t split(const struct lr_chunker_params *prm, const uint8_t *p, size_t n, size_t *lens,
                    size_t cap)
{
    size_t k = 0, off = 0;
    while (off < n) {
        size_t c = lr_chunker_cut(prm, p + off, n - off, true);
        assert_true(c > 0);
        assert_true(c <= n - off);
        assert_true(c <= prm->max);
        assert_true(k < cap);
        lens[k++] = c;
        off += c;
    }
    return k;
}

/*
 * Naive reference, written from the spec in docs/internals/chunker.md rather
 * than from chunker.c: the stream is fed one byte at a time into a state
 * machine that counts the chunk length and decides after each byte.
 */
struct ref {
    const struct lr_chunker_params *prm;
    size_t len;
    uint64_t fp;
};

static uint64_t ref_mask(unsigned bits)
{
    uint64_t m = 0;
    for (unsigned b = 0; b < bits; b++)
        m |= UINT64_C(1) << (63 - b);
    return m;
}

static unsigned ref_log2(uint32_t v)
{
    unsigned b = 0;
    while ((UINT32_C(1) << b) < v)
        b++;
    return b;
}

/* Returns true if the chunk ends after this byte. */
static bool ref_push(struct ref *r, uint8_t byte)
{
    r->len++;
    if (r->len > r->prm->min) {
        r->fp = r->fp * 2 + lr_chunker_gear[byte];
        unsigned bits = ref_log2(r->prm->avg);
        uint64_t mask = r->len <= r->prm->avg ? ref_mask(bits + 2) : ref_mask(bits - 2);
        if ((r->fp & mask) == 0 || r->len == r->prm->max) {
            r->len = 0;
            r->fp = 0;
            return true;
        }
    }
    return false;
}

static size_t ref_split(const struct lr_chunker_params *prm, const uint8_t *p, size_t n,
                        size_t *lens, size_t cap)
{
    struct ref r = {prm, 0, 0};
    size_t k = 0, start = 0;
    for (size_t i = 0; i < n; i++) {
        if (ref_push(&r, p[i])) {
            assert_true(k < cap);
            lens[k++] = i + 1 - start;
            start = i + 1;
        }
    }
    if (start < n) {
        assert_true(k < cap);
        lens[k++] = n - start;
    }
    return k;
}

static void test_gear_table(void **state)
{
    (void)state;
    for (int i = 0; i < 256; i++) {
        char seed[32];
        int l = snprintf(seed, sizeof(seed), "landropic gear v1 %d", i);
        struct lr_hash h;
        lr_sha256(seed, (size_t)l, &h);
        uint64_t v = 0;
        for (int j = 0; j < 8; j++)
            v = v << 8 | h.b[j];
        assert_int_equal(lr_chunker_gear[i], v);
    }
}

static void test_params_check(void **state)
{
    (void)state;
    struct lr_err err;
    assert_int_equal(lr_chunker_params_check(&lr_chunker_default, &err), 0);
    assert_int_equal(lr_chunker_default.min, 16384);
    assert_int_equal(lr_chunker_default.avg, 65536);
    assert_int_equal(lr_chunker_default.max, 262144);
    struct lr_chunker_params ok = {64, 128, 129};
    assert_int_equal(lr_chunker_params_check(&ok, NULL), 0);
    const struct lr_chunker_params bad[] = {
        {63, 128, 256},           /* min too small */
        {128, 128, 256},          /* min == avg */
        {64, 256, 256},           /* avg == max */
        {64, 96, 256},            /* avg not a power of two */
        {1024, 512, 4096},        /* min > avg */
        {16384, 65536, 2u << 20}, /* max over the frame limit */
        {0, 0, 0},
        {UINT32_MAX, UINT32_MAX, UINT32_MAX},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lr_err_clear(&err);
        assert_int_equal(lr_chunker_params_check(&bad[i], &err), LR_EBADVAL);
        assert_int_equal(err.code, LR_EBADVAL);
        assert_non_null(strstr(err.msg, "chunker"));
    }
}

static void test_empty_and_small(void **state)
{
    (void)state;
    const struct lr_chunker_params *d = &lr_chunker_default;
    assert_int_equal(lr_chunker_cut(d, NULL, 0, true), 0);
    assert_int_equal(lr_chunker_cut(d, NULL, 0, false), 0);
    uint8_t *p = malloc(d->min + 1);
    fill_random(p, d->min + 1, 7);
    assert_int_equal(lr_chunker_cut(d, p, 1, true), 1);
    assert_int_equal(lr_chunker_cut(d, p, 1, false), 0);
    assert_int_equal(lr_chunker_cut(d, p, d->min, true), d->min);
    assert_int_equal(lr_chunker_cut(d, p, d->min, false), 0);
    /* One byte past min: hashed, but a cut needs (fp & mask) == 0. */
    size_t c = lr_chunker_cut(d, p, d->min + 1, true);
    assert_int_equal(c, d->min + 1);
    free(p);
}

static void test_zeros_hit_max(void **state)
{
    (void)state;
    const struct lr_chunker_params *d = &lr_chunker_default;
    size_t n = 4 * (size_t)d->max + 100;
    uint8_t *p = calloc(1, n);
    size_t lens[16];
    size_t k = split(d, p, n, lens, 16);
    assert_int_equal(k, 5);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(lens[i], d->max);
    assert_int_equal(lens[4], 100);
    /* With or without eof, a full max-sized buffer gives max. */
    assert_int_equal(lr_chunker_cut(d, p, d->max, false), d->max);
    assert_int_equal(lr_chunker_cut(d, p, n, false), d->max);
    assert_int_equal(lr_chunker_cut(d, p, d->max - 1, false), 0);
    assert_int_equal(lr_chunker_cut(d, p, d->max - 1, true), d->max - 1);
    /* Same for a run of any byte value: sparse and filled files. */
    for (int v = 1; v < 256; v++) {
        memset(p, v, d->max);
        assert_int_equal(lr_chunker_cut(d, p, d->max, false), d->max);
    }
    free(p);
}

/* Boundaries of a fixed pseudo-random input. These are protocol behaviour:
 * if this test fails, peers running the old code would chunk differently. */
static void test_pinned_boundaries(void **state)
{
    (void)state;
    static const size_t want[] = {
        73312,   106376,  173517,  218098,  306753,  384077,  480581,  554914,  701650,  796540,
        889022,  972738,  1103054, 1153736, 1232688, 1311905, 1332729, 1365790, 1444298, 1525535,
        1645520, 1717921, 1790184, 1878744, 1943787, 2017736, 2088062, 2170593, 2238905, 2305523,
        2383241, 2477887, 2506189, 2603810, 2675676, 2750290, 2823479, 2891468, 2964510, 3000973,
        3096320, 3243199, 3325717, 3398758, 3465689, 3520759, 3620142, 3719389, 3785771, 3857467,
        3935305, 3998169, 4065998, 4132775, 4194304,
    };
    size_t n = 4u << 20;
    uint8_t *p = malloc(n);
    fill_random(p, n, 42);
    size_t lens[256];
    size_t k = split(&lr_chunker_default, p, n, lens, 256);
    if (getenv("LR_PRINT_PINNED")) {
        for (size_t i = 0, off = 0; i < k; i++)
            printf("%zu,%s", off += lens[i], i % 8 == 7 ? "\n" : " ");
        printf("\n");
    }
    assert_int_equal(k, sizeof(want) / sizeof(want[0]));
    size_t off = 0;
    for (size_t i = 0; i < k; i++) {
        off += lens[i];
        assert_int_equal(off, want[i]);
    }
    free(p);
}

static void check_differential(const struct lr_chunker_params *prm, const uint8_t *p, size_t n)
{
    size_t cap = n / (prm->min + 1) + 2;
    size_t *a = calloc(cap, sizeof(*a));
    size_t *b = calloc(cap, sizeof(*b));
    size_t ka = split(prm, p, n, a, cap);
    size_t kb = ref_split(prm, p, n, b, cap);
    assert_int_equal(ka, kb);
    for (size_t i = 0; i < ka; i++)
        assert_int_equal(a[i], b[i]);
    free(a);
    free(b);
}

static void test_differential(void **state)
{
    (void)state;
    const struct lr_chunker_params params[] = {
        {LR_CHUNK_MIN, LR_CHUNK_AVG, LR_CHUNK_MAX},
        {64, 128, 129},
        {64, 256, 1024},
        {100, 512, 700},
        {2048, 8192, 65536},
        {16384, 65536, LR_CHUNK_LIMIT_MAX},
    };
    size_t n = 3u << 20;
    uint8_t *p = malloc(n);
    for (size_t j = 0; j < sizeof(params) / sizeof(params[0]); j++) {
        assert_int_equal(lr_chunker_params_check(&params[j], NULL), 0);
        fill_random(p, n, 1000 + j);
        check_differential(&params[j], p, n);
        /* Low-entropy data: few distinct bytes in long runs. */
        uint64_t s = 77 + j;
        for (size_t i = 0; i < n;) {
            uint64_t r = rng_next(&s);
            size_t run = 1 + (size_t)(r % 300);
            uint8_t v = (uint8_t)((r >> 20) % 3);
            for (size_t e = i + run; i < e && i < n; i++)
                p[i] = v;
        }
        check_differential(&params[j], p, n);
    }
    free(p);
}

/* Feeding a growing window (as the scanner does) gives the same chunks as the
 * whole buffer, and every non-zero answer without eof is final. */
static void test_streaming_prefix(void **state)
{
    (void)state;
    const struct lr_chunker_params *d = &lr_chunker_default;
    size_t n = 6u << 20;
    uint8_t *p = malloc(n);
    fill_random(p, n, 99);
    size_t cap = n / d->min + 2;
    size_t *whole = calloc(cap, sizeof(*whole));
    size_t kw = split(d, p, n, whole, cap);

    uint64_t s = 5;
    size_t off = 0, avail = 0, k = 0;
    while (off < n) {
        bool eof = avail == n;
        size_t c = lr_chunker_cut(d, p + off, avail - off, eof);
        if (c == 0) {
            assert_false(eof);
            assert_true(avail - off < d->max);
            size_t step = 1 + (size_t)(rng_next(&s) % 40000);
            avail = avail + step > n ? n : avail + step;
            continue;
        }
        assert_true(k < kw);
        assert_int_equal(c, whole[k]);
        k++;
        off += c;
    }
    assert_int_equal(k, kw);
    free(whole);
    free(p);
}

static void test_sizes_and_distribution(void **state)
{
    (void)state;
    const struct lr_chunker_params *d = &lr_chunker_default;
    size_t n = 64u << 20;
    uint8_t *p = malloc(n);
    fill_random(p, n, 2024);
    size_t cap = n / d->min + 2;
    size_t *lens = calloc(cap, sizeof(*lens));
    size_t k = split(d, p, n, lens, cap);
    size_t at_max = 0;
    for (size_t i = 0; i + 1 < k; i++) {
        assert_true(lens[i] > d->min);
        assert_true(lens[i] <= d->max);
        at_max += lens[i] == d->max;
    }
    double mean = (double)n / (double)k;
    /* Level-2 normalisation on random data: mean a little above avg, and
     * hitting max is rare (probability about e^-12 per chunk). */
    assert_true(mean > 60.0 * 1024 && mean < 90.0 * 1024);
    assert_true(at_max <= 2);
    free(lens);
    free(p);
}

static int cmp_hash(const void *a, const void *b)
{
    return lr_hash_cmp(a, b);
}

static size_t chunk_hashes(const uint8_t *p, size_t n, struct lr_hash *out, size_t cap)
{
    size_t k = 0, off = 0;
    while (off < n) {
        size_t c = lr_chunker_cut(&lr_chunker_default, p + off, n - off, true);
        assert_true(k < cap);
        lr_sha256(p + off, c, &out[k++]);
        off += c;
    }
    return k;
}

static void test_insert_resilience(void **state)
{
    (void)state;
    size_t n = 32u << 20;
    uint8_t *a = malloc(n);
    fill_random(a, n, 31337);
    size_t cap = n / LR_CHUNK_MIN + 4;
    struct lr_hash *ha = calloc(cap, sizeof(*ha));
    struct lr_hash *hb = calloc(cap, sizeof(*hb));
    size_t ka = chunk_hashes(a, n, ha, cap);
    qsort(ha, ka, sizeof(*ha), cmp_hash);

    /* A few bytes inserted at the start, then a few more in the middle. */
    static const size_t ins[] = {1, 7, 100};
    for (size_t t = 0; t < sizeof(ins) / sizeof(ins[0]); t++) {
        size_t m = n + 2 * ins[t];
        uint8_t *b = malloc(m);
        memset(b, 0xa5, ins[t]);
        memcpy(b + ins[t], a, n / 2);
        memset(b + ins[t] + n / 2, 0x5a, ins[t]);
        memcpy(b + 2 * ins[t] + n / 2, a + n / 2, n - n / 2);
        size_t kb = chunk_hashes(b, m, hb, cap);
        size_t same = 0;
        for (size_t i = 0; i < kb; i++)
            same += bsearch(&hb[i], ha, ka, sizeof(*ha), cmp_hash) != NULL;
        assert_true(same * 100 >= kb * 95);
        /* Only the chunks touching each edit may change. */
        assert_true(kb - same <= 6);
        free(b);
    }
    free(ha);
    free(hb);
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gear_table),        cmocka_unit_test(test_params_check),
        cmocka_unit_test(test_empty_and_small),   cmocka_unit_test(test_zeros_hit_max),
        cmocka_unit_test(test_pinned_boundaries), cmocka_unit_test(test_differential),
        cmocka_unit_test(test_streaming_prefix),  cmocka_unit_test(test_sizes_and_distribution),
        cmocka_unit_test(test_insert_resilience),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
