/*
 * test_ownset.c - the set of paths the daemon wrote lately: a path and its
 * ancestors are found, nothing else is; the file identity is kept for the
 * path only; old entries are dropped as the set grows, recent ones never.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "daemon/ownset.h"

#include <stdio.h>
#include <string.h>

static void note(struct lr_ownset *s, const char *p, uint64_t ino, uint64_t now)
{
    lr_ownset_note(s, (const uint8_t *)p, strlen(p), ino, (int64_t)ino * 10, now, 1000);
}

static void test_path_and_ancestors(void **state)
{
    (void)state;
    struct lr_ownset s = {0};
    assert_null(lr_ownset_get(&s, "a", 0));
    note(&s, "a/b/c.txt", 7, 100);
    const struct lr_ownset_entry *e = lr_ownset_get(&s, "a/b/c.txt", 0);
    assert_non_null(e);
    assert_int_equal(e->ino, 7);
    assert_int_equal(e->ctime_ns, 70);
    for (const char *p = "a/b", *q = "a"; p; p = q, q = NULL) {
        e = lr_ownset_get(&s, p, 0);
        assert_non_null(e);
        assert_int_equal(e->ino, 0); /* a directory: no identity */
    }
    assert_null(lr_ownset_get(&s, "a/b/c", 0));
    assert_null(lr_ownset_get(&s, "b", 0));
    assert_null(lr_ownset_get(&s, "a/b/c.txt/", 0));
    /* Noted before `since`: not found. Noted again: found, new identity. */
    assert_null(lr_ownset_get(&s, "a/b/c.txt", 101));
    lr_ownset_get(&s, "a/b/c.txt", 0)->entries_ours = true;
    note(&s, "a/b/c.txt", 9, 200);
    e = lr_ownset_get(&s, "a/b/c.txt", 101);
    assert_non_null(e);
    assert_int_equal(e->ino, 9);
    assert_false(e->entries_ours); /* a verdict about the old identity */
    note(&s, "top", 3, 200);
    assert_non_null(lr_ownset_get(&s, "top", 0));
    lr_ownset_free(&s);
    assert_null(lr_ownset_get(&s, "top", 0));
}

static void test_old_entries_dropped_recent_kept(void **state)
{
    (void)state;
    struct lr_ownset s = {0};
    char p[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(p, sizeof(p), "old/f%d", i);
        note(&s, p, (uint64_t)i + 1, 1000);
    }
    assert_true(s.n >= 5001);
    /* 5 s later (keep 1 s): the old ones go as the set grows. */
    for (int i = 0; i < 5000; i++) {
        snprintf(p, sizeof(p), "new/f%d", i);
        note(&s, p, (uint64_t)i + 1, 6000);
    }
    assert_true(s.n < 8000);
    assert_true(s.n * 2 <= s.cap);
    for (int i = 0; i < 5000; i++) {
        snprintf(p, sizeof(p), "new/f%d", i);
        const struct lr_ownset_entry *e = lr_ownset_get(&s, p, 0);
        assert_non_null(e);
        assert_int_equal(e->ino, (uint64_t)i + 1);
    }
    assert_non_null(lr_ownset_get(&s, "new", 6000));
    lr_ownset_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_and_ancestors),
        cmocka_unit_test(test_old_entries_dropped_recent_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
