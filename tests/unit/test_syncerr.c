/* test_syncerr.c - the table of failing items: first-seen times, clearing,
 * the per-folder bound with an exact "and N more", retry backoff, threads. */
#include "daemon/syncerr.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#define P(s) (const uint8_t *)(s), strlen(s)

static void test_set_keeps_first_seen(void **state)
{
    (void)state;
    struct lr_syncerr *t = lr_syncerr_new(10);
    assert_int_equal(lr_syncerr_set(t, "docs", P("a/b"), "not applied: EACCES", 100), 1);
    assert_int_equal(lr_syncerr_set(t, "docs", P("a/b"), "not applied: ENOSPC", 250), 0);
    struct lr_syncerr_list l;
    lr_syncerr_list(t, "docs", &l);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.more, 0);
    assert_memory_equal(l.v[0].path, "a/b", 4);
    assert_int_equal(l.v[0].path_len, 3);
    assert_string_equal(l.v[0].msg, "not applied: ENOSPC");
    assert_int_equal(l.v[0].since_s, 100);
    assert_int_equal(l.v[0].last_s, 250);
    assert_int_equal(l.v[0].attempts, 2);
    lr_syncerr_list_release(&l);
    lr_syncerr_list_release(&l); /* twice is safe */
    /* Fixed, then failing again: a new first-seen time. */
    assert_true(lr_syncerr_clear(t, "docs", P("a/b")));
    assert_false(lr_syncerr_clear(t, "docs", P("a/b")));
    assert_int_equal(lr_syncerr_count(t, "docs"), 0);
    assert_int_equal(lr_syncerr_set(t, "docs", P("a/b"), "again", 900), 1);
    lr_syncerr_list(t, "docs", &l);
    assert_int_equal(l.v[0].since_s, 900);
    assert_int_equal(l.v[0].attempts, 1);
    lr_syncerr_list_release(&l);
    lr_syncerr_free(t);
    lr_syncerr_free(NULL);
}

/* The folder-level entry ("") holds one cause at a time; each clears only its own. */
static void test_clear_if_its_own_cause(void **state)
{
    (void)state;
    struct lr_syncerr *t = lr_syncerr_new(10);
    lr_syncerr_set(t, "docs", P(""), "cannot store the index of peer ABC: disk full", 1);
    assert_false(lr_syncerr_clear_if(t, "docs", P(""), "cannot pull"));
    assert_int_equal(lr_syncerr_count(t, "docs"), 1);
    assert_true(lr_syncerr_clear_if(t, "docs", P(""), "cannot store the index"));
    assert_int_equal(lr_syncerr_count(t, "docs"), 0);
    lr_syncerr_set(t, "docs", P(""), "cannot pull: no tmp", 2);
    assert_false(lr_syncerr_clear_if(t, "docs", P(""), "cannot store the index"));
    assert_true(lr_syncerr_clear_if(t, "docs", P(""), NULL));
    /* Unlisted (over the bound) paths carry no message: only a plain clear drops them. */
    struct lr_syncerr *u = lr_syncerr_new(1);
    lr_syncerr_set(u, "docs", P("a"), "m", 1);
    lr_syncerr_set(u, "docs", P("b"), "m", 1);
    assert_false(lr_syncerr_clear_if(u, "docs", P("b"), "m"));
    assert_true(lr_syncerr_clear_if(u, "docs", P("b"), NULL));
    lr_syncerr_free(u);
    lr_syncerr_free(t);
}

static void test_folders_are_separate(void **state)
{
    (void)state;
    struct lr_syncerr *t = lr_syncerr_new(10);
    lr_syncerr_set(t, "one", P("x"), "m1", 1);
    lr_syncerr_set(t, "two", P("x"), "m2", 2);
    lr_syncerr_set(t, "two", P("y"), "m3", 3);
    assert_false(lr_syncerr_clear(t, "three", P("x")));
    assert_true(lr_syncerr_clear(t, "one", P("x")));
    assert_int_equal(lr_syncerr_count(t, "one"), 0);
    assert_int_equal(lr_syncerr_count(t, "two"), 2);
    struct lr_syncerr_folders f;
    lr_syncerr_folders(t, &f);
    assert_int_equal(f.n, 1); /* "one" has no errors left */
    assert_string_equal(f.v[0], "two");
    lr_syncerr_folders_release(&f);
    lr_syncerr_clear_folder(t, "two");
    assert_int_equal(lr_syncerr_count(t, "two"), 0);
    lr_syncerr_folders(t, &f);
    assert_int_equal(f.n, 0);
    lr_syncerr_folders_release(&f);
    struct lr_syncerr_list l;
    lr_syncerr_list(t, "two", &l);
    assert_int_equal(l.n, 0);
    assert_null(l.v);
    lr_syncerr_list_release(&l);
    lr_syncerr_free(t);
}

/* Listed in byte order; any bytes in names; similar names are not confused. */
static void test_list_sorted_raw_bytes(void **state)
{
    (void)state;
    struct lr_syncerr *t = lr_syncerr_new(10);
    const uint8_t bad[] = {'d', 0xff, 0xfe, '/', 'x'};
    lr_syncerr_set(t, "f", bad, sizeof(bad), "m", 1);
    lr_syncerr_set(t, "f", P("b"), "m", 1);
    lr_syncerr_set(t, "f", P("ab"), "m", 1);
    lr_syncerr_set(t, "f", P("a"), "m", 1);
    struct lr_syncerr_list l;
    lr_syncerr_list(t, "f", &l);
    assert_int_equal(l.n, 4);
    assert_string_equal((const char *)l.v[0].path, "a");
    assert_string_equal((const char *)l.v[1].path, "ab");
    assert_string_equal((const char *)l.v[2].path, "b");
    assert_int_equal(l.v[3].path_len, sizeof(bad));
    assert_memory_equal(l.v[3].path, bad, sizeof(bad));
    lr_syncerr_list_release(&l);
    /* "a" cleared does not clear "ab". */
    assert_true(lr_syncerr_clear(t, "f", P("a")));
    assert_false(lr_syncerr_clear(t, "f", (const uint8_t *)"ab", 1));
    assert_int_equal(lr_syncerr_count(t, "f"), 3);
    lr_syncerr_free(t);
}

static void test_long_message_cut(void **state)
{
    (void)state;
    struct lr_syncerr *t = lr_syncerr_new(1);
    char *m = malloc(5000);
    memset(m, 'x', 4999);
    m[4999] = 0;
    lr_syncerr_set(t, "f", P("p"), m, 1);
    lr_syncerr_set(t, "f", P("q"), NULL, 1); /* unlisted: no message kept */
    struct lr_syncerr_list l;
    lr_syncerr_list(t, "f", &l);
    assert_int_equal(strlen(l.v[0].msg), LR_SYNCERR_MSG_MAX - 1);
    assert_int_equal(l.more, 1);
    lr_syncerr_list_release(&l);
    free(m);
    lr_syncerr_free(t);
}

/* Beyond the bound paths are only counted, exactly: re-failing does not count twice,
 * clearing counts down, and a re-failing unlisted path takes a freed slot. */
static void test_bound_and_more(void **state)
{
    (void)state;
    struct lr_syncerr *t = lr_syncerr_new(3);
    char p[32];
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof(p), "f%d", i);
        assert_int_equal(lr_syncerr_set(t, "d", P(p), "m", i), 1);
    }
    assert_int_equal(lr_syncerr_count(t, "d"), 10);
    for (int i = 0; i < 10; i++) {
        snprintf(p, sizeof(p), "f%d", i);
        assert_int_equal(lr_syncerr_set(t, "d", P(p), "m", 50), 0);
    }
    struct lr_syncerr_list l;
    lr_syncerr_list(t, "d", &l);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.more, 7);
    assert_string_equal((const char *)l.v[0].path, "f0");
    assert_int_equal(l.v[0].since_s, 0); /* first seen kept */
    lr_syncerr_list_release(&l);
    assert_true(lr_syncerr_clear(t, "d", P("f9"))); /* unlisted */
    assert_int_equal(lr_syncerr_count(t, "d"), 9);
    assert_true(lr_syncerr_clear(t, "d", P("f1"))); /* listed: frees a slot */
    assert_int_equal(lr_syncerr_count(t, "d"), 8);
    /* f5 fails again: still failing (0), now listed, no longer counted as more. */
    assert_int_equal(lr_syncerr_set(t, "d", P("f5"), "m5", 60), 0);
    lr_syncerr_list(t, "d", &l);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.more, 5);
    assert_string_equal((const char *)l.v[2].path, "f5");
    assert_string_equal(l.v[2].msg, "m5");
    lr_syncerr_list_release(&l);
    assert_int_equal(lr_syncerr_count(t, "d"), 8);
    lr_syncerr_free(t);
}

/* Paths failing in two tables, listed or not in either, are found by hash. */
static void test_count_common(void **state)
{
    (void)state;
    struct lr_syncerr *a = lr_syncerr_new(3), *b = lr_syncerr_new(4);
    char p[32];
    lr_syncerr_set(a, "d", P("both-listed"), "pull", 0);
    lr_syncerr_set(b, "d", P("both-listed"), "scan", 0);
    for (int i = 0; i < 6; i++) { /* a: f0..f5 (f0, f1 listed) */
        snprintf(p, sizeof(p), "f%d", i);
        lr_syncerr_set(a, "d", P(p), "pull", i);
    }
    for (int i = 4; i < 10; i++) { /* b: f4..f9 (f4, f5, f6 listed) */
        snprintf(p, sizeof(p), "f%d", i);
        lr_syncerr_set(b, "d", P(p), "scan", i);
    }
    lr_syncerr_set(b, "d", P("f0"), "scan", 20); /* listed in a, unlisted in b */
    lr_syncerr_set(a, "d", P("both-unlisted"), "pull", 20);
    lr_syncerr_set(b, "d", P("both-unlisted"), "scan", 20);
    lr_syncerr_set(b, "e", P("f1"), "scan", 20); /* another folder */
    /* both-listed, both-unlisted, f0, f4, f5 */
    assert_int_equal(lr_syncerr_count_common(a, b, "d"), 5);
    assert_int_equal(lr_syncerr_count_common(b, a, "d"), 5);
    assert_int_equal(lr_syncerr_count_common(a, b, "e"), 0);
    assert_int_equal(lr_syncerr_count_common(a, b, "none"), 0);
    assert_true(lr_syncerr_clear(a, "d", P("f4")));
    assert_int_equal(lr_syncerr_count_common(a, b, "d"), 4);
    lr_syncerr_free(a);
    lr_syncerr_free(b);
}

/* The unlisted set against a naive oracle under random sets and clears (exercises
 * growth and backward-shift deletion over long probe runs). */
static void test_more_matches_oracle(void **state)
{
    (void)state;
    enum { N = 4000, OPS = 60000, MAX = 16 };
    struct lr_syncerr *t = lr_syncerr_new(MAX);
    bool *failing = calloc(N, sizeof(bool));
    uint64_t x = 88172645463325252ULL;
    size_t nfail = 0;
    char p[32];
    for (int op = 0; op < OPS; op++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned k = (unsigned)(x % N);
        bool set = (x >> 32) % 3 != 0;
        snprintf(p, sizeof(p), "dir/%u.bin", k);
        if (set) {
            int fresh = lr_syncerr_set(t, "f", P(p), "m", op);
            assert_int_equal(fresh, failing[k] ? 0 : 1);
            nfail += !failing[k];
            failing[k] = true;
        } else {
            assert_int_equal(lr_syncerr_clear(t, "f", P(p)), failing[k]);
            nfail -= failing[k];
            failing[k] = false;
        }
        assert_int_equal(lr_syncerr_count(t, "f"), nfail);
    }
    struct lr_syncerr_list l;
    lr_syncerr_list(t, "f", &l);
    assert_true(l.n <= MAX);
    assert_int_equal(l.n + l.more, nfail);
    for (size_t i = 0; i < l.n; i++) {
        unsigned k = (unsigned)strtoul((const char *)l.v[i].path + 4, NULL, 10);
        assert_true(failing[k]);
    }
    lr_syncerr_list_release(&l);
    /* Clear everything: nothing left anywhere. */
    for (unsigned k = 0; k < N; k++) {
        snprintf(p, sizeof(p), "dir/%u.bin", k);
        assert_int_equal(lr_syncerr_clear(t, "f", P(p)), failing[k]);
    }
    assert_int_equal(lr_syncerr_count(t, "f"), 0);
    free(failing);
    lr_syncerr_free(t);
}

static void test_backoff_doubles_and_resets(void **state)
{
    (void)state;
    struct lr_syncerr *t = lr_syncerr_new(10);
    assert_true(lr_syncerr_schedule(t, 0) == UINT64_MAX);
    lr_syncerr_set(t, "f", P("x"), "m", 1);
    uint64_t now = 1000;
    assert_int_equal(lr_syncerr_schedule(t, now), now + 5000);
    /* Scheduling again does not push the retry back. */
    assert_int_equal(lr_syncerr_schedule(t, now + 3000), now + 5000);
    struct lr_syncerr_folders due;
    lr_syncerr_take_due(t, now + 4999, &due);
    assert_int_equal(due.n, 0);
    lr_syncerr_folders_release(&due);
    uint64_t expect = 5000, at = now + 5000;
    for (int round = 0; round < 12; round++) {
        lr_syncerr_take_due(t, at, &due);
        assert_int_equal(due.n, 1);
        assert_string_equal(due.v[0], "f");
        lr_syncerr_folders_release(&due);
        lr_syncerr_take_due(t, at, &due); /* taken once */
        assert_int_equal(due.n, 0);
        lr_syncerr_folders_release(&due);
        expect = expect * 2 > LR_SYNCERR_BACKOFF_MAX_MS ? LR_SYNCERR_BACKOFF_MAX_MS : expect * 2;
        assert_int_equal(lr_syncerr_backoff(t, "f"), expect);
        assert_int_equal(lr_syncerr_schedule(t, at), at + expect);
        at += expect;
    }
    assert_int_equal(expect, LR_SYNCERR_BACKOFF_MAX_MS);
    /* Fixed: disarmed and back to the minimum. */
    lr_syncerr_clear(t, "f", P("x"));
    assert_true(lr_syncerr_schedule(t, at) == UINT64_MAX);
    assert_int_equal(lr_syncerr_backoff(t, "f"), LR_SYNCERR_BACKOFF_MIN_MS);
    lr_syncerr_take_due(t, at + 1000000, &due);
    assert_int_equal(due.n, 0);
    lr_syncerr_folders_release(&due);
    /* Two folders: the earliest wins. */
    lr_syncerr_set(t, "f", P("x"), "m", 1);
    assert_int_equal(lr_syncerr_schedule(t, 100), 5100);
    lr_syncerr_set(t, "g", P("x"), "m", 1);
    assert_int_equal(lr_syncerr_schedule(t, 2000), 5100);
    lr_syncerr_take_due(t, 5100, &due);
    assert_int_equal(due.n, 1);
    lr_syncerr_folders_release(&due);
    assert_int_equal(lr_syncerr_schedule(t, 5100), 7000);
    lr_syncerr_free(t);
}

/* A complete pass replaces the previous one: fixed paths go, paths failing in
 * both keep their first-seen time, unlisted ones are carried over exactly. */
static void test_replace(void **state)
{
    (void)state;
    struct lr_syncerr *dst = lr_syncerr_new(2), *src = lr_syncerr_new(2);
    lr_syncerr_set(dst, "f", P("a"), "old a", 10);
    lr_syncerr_set(dst, "f", P("a"), "old a", 20);
    lr_syncerr_set(dst, "f", P("b"), "old b", 10);
    lr_syncerr_set(dst, "f", P("z"), "unlisted, fixed", 10);
    lr_syncerr_set(dst, "g", P("a"), "other folder", 10);
    lr_syncerr_set(src, "f", P("a"), "new a", 50);
    lr_syncerr_set(src, "f", P("c"), "new c", 50);
    lr_syncerr_set(src, "f", P("y"), "unlisted", 50);
    lr_syncerr_replace(dst, "f", src);
    struct lr_syncerr_list l;
    lr_syncerr_list(dst, "f", &l);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.more, 1);
    assert_string_equal((const char *)l.v[0].path, "a");
    assert_string_equal(l.v[0].msg, "new a");
    assert_int_equal(l.v[0].since_s, 10);
    assert_int_equal(l.v[0].last_s, 50);
    assert_int_equal(l.v[0].attempts, 3);
    assert_string_equal((const char *)l.v[1].path, "c");
    assert_int_equal(l.v[1].since_s, 50);
    lr_syncerr_list_release(&l);
    assert_false(lr_syncerr_clear(dst, "f", P("b")));
    assert_false(lr_syncerr_clear(dst, "f", P("z")));
    assert_true(lr_syncerr_clear(dst, "f", P("y"))); /* carried over as unlisted */
    assert_int_equal(lr_syncerr_count(dst, "g"), 1); /* untouched */
    assert_int_equal(lr_syncerr_count(src, "f"), 3); /* src unchanged */
    /* An empty pass clears the folder. */
    lr_syncerr_clear_folder(src, "f");
    lr_syncerr_replace(dst, "f", src);
    assert_int_equal(lr_syncerr_count(dst, "f"), 0);
    lr_syncerr_free(dst);
    lr_syncerr_free(src);
}

struct thr {
    struct lr_syncerr *t;
    int id;
};

static void *hammer(void *arg)
{
    struct thr *h = arg;
    char p[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(p, sizeof(p), "t%d/%d", h->id, i % 300);
        if (i % 2)
            lr_syncerr_clear(h->t, "f", P(p));
        else
            lr_syncerr_set(h->t, "f", P(p), "m", i);
        if (i % 1000 == 0) {
            struct lr_syncerr_list l;
            lr_syncerr_list(h->t, "f", &l);
            lr_syncerr_list_release(&l);
            lr_syncerr_schedule(h->t, (uint64_t)i);
        }
    }
    for (int k = 0; k < 300; k++) {
        snprintf(p, sizeof(p), "t%d/%d", h->id, k);
        lr_syncerr_clear(h->t, "f", P(p));
    }
    return NULL;
}

/* The puller (a pool thread) and the loop use one table at once. */
static void test_threads(void **state)
{
    (void)state;
    struct lr_syncerr *t = lr_syncerr_new(50);
    pthread_t th[4];
    struct thr a[4];
    for (int i = 0; i < 4; i++) {
        a[i].t = t;
        a[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    /* Each thread clears its paths at the end: nothing lost or left behind. */
    assert_int_equal(lr_syncerr_count(t, "f"), 0);
    lr_syncerr_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_keeps_first_seen),
        cmocka_unit_test(test_clear_if_its_own_cause),
        cmocka_unit_test(test_folders_are_separate),
        cmocka_unit_test(test_list_sorted_raw_bytes),
        cmocka_unit_test(test_long_message_cut),
        cmocka_unit_test(test_bound_and_more),
        cmocka_unit_test(test_count_common),
        cmocka_unit_test(test_more_matches_oracle),
        cmocka_unit_test(test_backoff_doubles_and_resets),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
