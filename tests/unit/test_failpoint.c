/* test_failpoint.c - failpoint specs (valid and hostile), and that an armed
 * point aborts at exactly its Nth hit, in a child process. */
#include "daemon/failpoint.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#ifdef LR_FAILPOINTS

#include "util/log.h"

static void test_bad_specs_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "x",
        "x:",
        ":3",
        "x:0",
        "x:-1",
        "x:1a",
        "X:1",
        "a b:1",
        "x:1,,y:2",
        "x:1,",
        "x:1234567890123",
        "x:1,y",
        ",x:1",
        "name-with-dash:1",
        "a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1,i:1",                /* one over LR_FAILPOINT_MAX */
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1", /* 48-byte name */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct lr_err err = {0};
        int rc = lr_failpoint_init(bad[i], &err);
        if (rc != LR_EUSAGE)
            fail_msg("spec '%s' accepted (rc %d)", bad[i], rc);
        assert_non_null(strstr(err.msg, "LR_FAILPOINT"));
    }
}

static void test_good_specs_accepted(void **state)
{
    (void)state;
    static const char *const good[] = {
        "",
        "x:1",
        "commit_before_rename:3",
        "a:1,b:2",
        "rx_after_write:999999999999",
        "a:1,b:1,c:1,d:1,e:1,f:1,g:1,h:1",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:1", /* 47-byte name */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct lr_err err = {0};
        if (lr_failpoint_init(good[i], &err) != 0)
            fail_msg("spec '%s' refused: %s", good[i], err.msg);
    }
    assert_int_equal(lr_failpoint_init(NULL, NULL), 0);
}

/* Runs `hits` hits of `name` in a child armed with spec; returns its wait status. */
static int run_child(const char *spec, const char *name, int hits)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGABRT, SIG_DFL); /* not cmocka's handler: the child must really die */
        lr_log_set_level(LR_LOG_ERROR);
        if (lr_failpoint_init(spec, NULL) != 0)
            _exit(3);
        for (int i = 0; i < hits; i++) {
            lr_failpoint_hit("unrelated");
            lr_failpoint_hit(name);
        }
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return st;
}

static void test_aborts_at_nth_hit_only(void **state)
{
    (void)state;
    int st = run_child("p:3", "p", 2);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = run_child("p:3", "p", 3);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    /* Another point's name never fires it; the second of two armed does. */
    st = run_child("p:1", "q", 5);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    st = run_child("p:9,q:2", "q", 2);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    /* A refused spec arms nothing, not even its valid part. */
    struct lr_err err = {0};
    assert_int_equal(lr_failpoint_init("p:1,bad", &err), LR_EUSAGE);
    lr_failpoint_hit("p");
    /* Disarmed by an empty spec. */
    assert_int_equal(lr_failpoint_init("p:1", NULL), 0);
    assert_int_equal(lr_failpoint_init("", NULL), 0);
    lr_failpoint_hit("p");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_specs_refused),
        cmocka_unit_test(test_good_specs_accepted),
        cmocka_unit_test(test_aborts_at_nth_hit_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

static void test_compiled_out(void **state)
{
    (void)state;
    LR_FAILPOINT("anything"); /* a no-op */
    assert_int_equal(LR_FAILPOINT_INIT_ENV((struct lr_err *)NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_compiled_out)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
