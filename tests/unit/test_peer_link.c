/*
 * test_peer_link.c - landropic:// links: the device ID with its check
 * characters, addresses (IPv4, bracketed IPv6, %-escaped), and refusal of
 * unknown parameters, bad escapes, bad IDs and addresses, too many addresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/link.h"

#include <stdio.h>
#include <string.h>

/* A valid device ID (its check characters included), from a real identity. */
static const char *ID = "TZNTQSC-SNYGLIR-56DJZVZ-67ID4PY-JQKAGXG-4MKGE2Y-SVV4YIX-J3TGKQN";

static int parse(const char *s, struct lr_peer_link *l)
{
    struct lr_err err = {0};
    int rc = lr_peer_link_parse(s, l, &err);
    if (rc < 0)
        assert_true(err.msg[0] != 0);
    return rc;
}

static void test_valid(void **state)
{
    (void)state;
    char s[512];
    struct lr_peer_link l;
    struct lr_device_id want;
    assert_int_equal(lr_device_id_parse(ID, &want, NULL), 0);
    snprintf(s, sizeof(s), "landropic://%s", ID);
    assert_true(lr_peer_link_is(s));
    assert_int_equal(parse(s, &l), 0);
    assert_true(lr_device_id_eq(&l.id, &want));
    assert_int_equal(l.naddrs, 0);
    lr_peer_link_release(&l);
    snprintf(s, sizeof(s), "LANDROPIC://%s/?addr=192.168.1.7:21037&addr=[fd00::1]:21037", ID);
    assert_int_equal(parse(s, &l), 0);
    assert_int_equal(l.naddrs, 2);
    assert_string_equal(l.addrs[0], "192.168.1.7:21037");
    assert_string_equal(l.addrs[1], "[fd00::1]:21037");
    lr_peer_link_release(&l);
    snprintf(s, sizeof(s), "landropic://%s?addr=%%5Bfd00%%3A%%3A2%%5D%%3A9&&", ID);
    assert_int_equal(parse(s, &l), 0);
    assert_int_equal(l.naddrs, 1);
    assert_string_equal(l.addrs[0], "[fd00::2]:9");
    lr_peer_link_release(&l);
}

static void test_refused(void **state)
{
    (void)state;
    char s[8192];
    struct lr_peer_link l;
    assert_false(lr_peer_link_is("TZNTQSC"));
    assert_int_equal(parse("https://example.org", &l), LR_EUSAGE);
    assert_int_equal(parse("landropic://", &l), LR_EUSAGE);
    /* one check character changed */
    snprintf(s, sizeof(s), "landropic://%s", ID);
    s[strlen("landropic://") + 6] = s[strlen("landropic://") + 6] == 'A' ? 'B' : 'A';
    assert_int_equal(parse(s, &l), LR_EUSAGE);
    snprintf(s, sizeof(s), "landropic://%s?adr=1.2.3.4:5", ID);
    assert_int_equal(parse(s, &l), LR_EUSAGE);
    snprintf(s, sizeof(s), "landropic://%s?addr=1.2.3.4", ID); /* no port */
    assert_int_equal(parse(s, &l), LR_EUSAGE);
    snprintf(s, sizeof(s), "landropic://%s?addr=1.2.3.4:5%%", ID);
    assert_int_equal(parse(s, &l), LR_EUSAGE);
    snprintf(s, sizeof(s), "landropic://%s?addr=1.2.3.4:5%%0", ID);
    assert_int_equal(parse(s, &l), LR_EUSAGE);
    snprintf(s, sizeof(s), "landropic://%s?addr=1.2.3.4:5%%00", ID); /* NUL */
    assert_int_equal(parse(s, &l), LR_EUSAGE);
    snprintf(s, sizeof(s), "landropic://%s?addr=1.2.3.4:5%%zz", ID);
    assert_int_equal(parse(s, &l), LR_EUSAGE);
    /* 17 addresses */
    int n = snprintf(s, sizeof(s), "landropic://%s?", ID);
    for (int i = 0; i < LR_PEER_LINK_ADDRS_MAX + 1; i++)
        n += snprintf(s + n, sizeof(s) - (size_t)n, "addr=10.0.0.%d:1&", i + 1);
    assert_int_equal(parse(s, &l), LR_EUSAGE);
    /* too long */
    char big[LR_PEER_LINK_MAX + 64];
    n = snprintf(big, sizeof(big), "landropic://%s?", ID);
    memset(big + n, 'a', sizeof(big) - (size_t)n - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(parse(big, &l), LR_EUSAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
