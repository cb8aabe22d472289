/* test_qmem.c - the per-connection ngtcp2 allocator: tracking, realloc, sweep, and a real
 * ngtcp2 connection freeing everything through it. */
#include "transport/qmem.h"

#include <netinet/in.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

static void test_tracks_and_sweeps(void **state)
{
    (void)state;
    struct lr_qmem m;
    lr_qmem_init(&m);
    const ngtcp2_mem *mem = lr_qmem_ngtcp2(&m);
    assert_ptr_equal(mem->user_data, &m);

    unsigned char *a = mem->malloc(100, mem->user_data);
    unsigned char *b = mem->calloc(10, 30, mem->user_data);
    unsigned char *c = mem->malloc(7, mem->user_data);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal((uintptr_t)a % alignof(max_align_t), 0);
    assert_int_equal((uintptr_t)b % alignof(max_align_t), 0);
    for (size_t i = 0; i < 300; i++)
        assert_int_equal(b[i], 0);
    assert_int_equal(m.nblocks, 3);
    assert_int_equal(m.nbytes, 100 + 300 + 7);

    /* Freeing a block in the middle of the list keeps the others. */
    mem->free(b, mem->user_data);
    assert_int_equal(m.nblocks, 2);
    assert_int_equal(m.nbytes, 107);

    /* Growing keeps the contents and the new size is what counts. */
    memset(a, 0xab, 100);
    a = mem->realloc(a, 5000, mem->user_data);
    assert_non_null(a);
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(a[i], 0xab);
    a[4999] = 1;
    assert_int_equal(m.nblocks, 2);
    assert_int_equal(m.nbytes, 5007);

    /* realloc(NULL) allocates, free(NULL) does nothing. */
    void *d = mem->realloc(NULL, 16, mem->user_data);
    assert_non_null(d);
    mem->free(NULL, mem->user_data);
    assert_int_equal(m.nblocks, 3);

    /* What was not freed is freed by the sweep (ASan would report it otherwise). */
    size_t bytes = 0;
    assert_int_equal(lr_qmem_sweep(&m, &bytes), 3);
    assert_int_equal(bytes, 5007 + 16);
    assert_int_equal(m.nblocks, 0);
    assert_int_equal(m.nbytes, 0);
    assert_null(m.head);
    assert_int_equal(lr_qmem_sweep(&m, NULL), 0);
}

static void test_overflow_refused(void **state)
{
    (void)state;
    struct lr_qmem m;
    lr_qmem_init(&m);
    const ngtcp2_mem *mem = lr_qmem_ngtcp2(&m);
    assert_null(mem->calloc(SIZE_MAX / 2, 4, mem->user_data));
    assert_null(mem->malloc(SIZE_MAX - 8, mem->user_data));
    void *p = mem->malloc(32, mem->user_data);
    assert_null(mem->realloc(p, SIZE_MAX - 8, mem->user_data));
    /* A failed realloc leaves the old block tracked and intact. */
    assert_int_equal(m.nblocks, 1);
    assert_int_equal(m.nbytes, 32);
    mem->free(p, mem->user_data);
    assert_int_equal(lr_qmem_sweep(&m, NULL), 0);
}

static void rand_cb(uint8_t *dest, size_t len, const ngtcp2_rand_ctx *ctx)
{
    (void)ctx;
    memset(dest, 0x5a, len);
}

static int new_cid_cb(ngtcp2_conn *conn, ngtcp2_cid *cid, uint8_t *token, size_t cidlen, void *ud)
{
    (void)conn;
    (void)ud;
    memset(cid->data, 0x11, cidlen);
    cid->datalen = cidlen;
    memset(token, 0x22, NGTCP2_STATELESS_RESET_TOKENLEN);
    return 0;
}

/* ngtcp2 allocates a connection's state through the allocator and frees it all through it:
 * a connection that never saw a packet leaves nothing behind. */
static void test_ngtcp2_conn_pairs_frees(void **state)
{
    (void)state;
    struct lr_qmem m;
    lr_qmem_init(&m);
    ngtcp2_callbacks cbs = {
        .client_initial = ngtcp2_crypto_client_initial_cb,
        .recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb,
        .encrypt = ngtcp2_crypto_encrypt_cb,
        .decrypt = ngtcp2_crypto_decrypt_cb,
        .hp_mask = ngtcp2_crypto_hp_mask_cb,
        .recv_retry = ngtcp2_crypto_recv_retry_cb,
        .rand = rand_cb,
        .get_new_connection_id = new_cid_cb,
        .update_key = ngtcp2_crypto_update_key_cb,
        .delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb,
        .delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb,
        .get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb,
        .version_negotiation = ngtcp2_crypto_version_negotiation_cb,
    };
    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    ngtcp2_cid dcid, scid;
    uint8_t raw[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ngtcp2_cid_init(&dcid, raw, sizeof raw);
    raw[0] = 9;
    ngtcp2_cid_init(&scid, raw, sizeof raw);
    struct sockaddr_in la = {.sin_family = AF_INET}, ra = {.sin_family = AF_INET};
    ngtcp2_path path = {
        .local = {.addr = (ngtcp2_sockaddr *)&la, .addrlen = sizeof la},
        .remote = {.addr = (ngtcp2_sockaddr *)&ra, .addrlen = sizeof ra},
    };
    ngtcp2_conn *qc = NULL;
    assert_int_equal(ngtcp2_conn_client_new(&qc, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cbs,
                                            &settings, &params, lr_qmem_ngtcp2(&m), NULL),
                     0);
    assert_true(m.nblocks > 0);
    ngtcp2_conn_del(qc);
    assert_int_equal(m.nblocks, 0);
    assert_int_equal(m.nbytes, 0);
    assert_int_equal(lr_qmem_sweep(&m, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tracks_and_sweeps),
        cmocka_unit_test(test_overflow_refused),
        cmocka_unit_test(test_ngtcp2_conn_pairs_frees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
