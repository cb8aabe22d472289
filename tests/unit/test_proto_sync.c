/*
 * test_proto_sync.c - the sync message codecs: FOLDERS, INDEX (batch
 * builder, streaming and whole decoders, zstd), WANT, CHUNK, PULLED,
 * SEQ_ASK, SEQS. Round trips,
 * every truncation, one test per validation rule, hostile numbers, and the
 * batch bound on a 200k-record input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "proto/proto.h"
#include "sync/delta.h"
#include "util/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define MIB (1u << 20)

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void fill_hash(struct lr_hash *h, uint64_t seed)
{
    for (int i = 0; i < LR_HASH_LEN; i += 8) {
        uint64_t v = rng_next(&seed);
        memcpy(h->b + i, &v, 8);
    }
}

/* ---- records ------------------------------------------------------------------ */

static void rec_init(struct lr_file_rec *r, const char *path, enum lr_ftype type, uint64_t seq)
{
    memset(r, 0, sizeof(*r));
    r->path_len = strlen(path);
    r->path = (uint8_t *)lr_xstrdup(path);
    r->type = type;
    r->seq = seq;
    r->mtime_ns = -1234567890123LL + (int64_t)seq;
    r->mode = type == LR_FT_DIR ? 0755 : 0644;
    assert_int_equal(lr_vv_set(&r->vv, 0x1111, seq ? seq : 1), 0);
    assert_int_equal(lr_vv_set(&r->vv, 0x2222, 7), 0);
    if (type == LR_FT_SYMLINK) {
        r->target = (uint8_t *)lr_xstrdup("../some/target");
        r->target_len = strlen("../some/target");
    }
}

/* A live file of nchunks chunks of varying lengths. */
static void rec_file(struct lr_file_rec *r, const char *path, uint64_t seq, size_t nchunks)
{
    rec_init(r, path, LR_FT_FILE, seq);
    r->nchunks = nchunks;
    r->chunks = nchunks ? lr_xcalloc(nchunks, sizeof(r->chunks[0])) : NULL;
    uint64_t off = 0, s = seq;
    for (size_t i = 0; i < nchunks; i++) {
        r->chunks[i].off = off;
        r->chunks[i].len = (uint32_t)(1 + rng_next(&s) % (256 * 1024));
        fill_hash(&r->chunks[i].hash, seq * 1000003 + i);
        off += r->chunks[i].len;
    }
    r->size = off;
    lr_index_blocks_hash(r->chunks, r->nchunks, &r->blocks_hash);
}

__attribute__((noinline)) static void assert_rec_equal(const struct lr_file_rec *a,
                                                       const struct lr_file_rec *b)
{
    assert_int_equal(a->path_len, b->path_len);
    assert_memory_equal(a->path, b->path, a->path_len);
    assert_int_equal(b->path[b->path_len], 0);
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->deleted, b->deleted);
    assert_int_equal(a->size, b->size);
    assert_true(a->mtime_ns == b->mtime_ns);
    assert_int_equal(a->mode, b->mode);
    assert_int_equal(a->seq, b->seq);
    assert_true(lr_vv_equal(&a->vv, &b->vv));
    assert_int_equal(a->target_len, b->target_len);
    if (a->target_len)
        assert_memory_equal(a->target, b->target, a->target_len);
    assert_int_equal(a->nchunks, b->nchunks);
    for (size_t i = 0; i < a->nchunks; i++) {
        assert_int_equal(a->chunks[i].off, b->chunks[i].off);
        assert_int_equal(a->chunks[i].len, b->chunks[i].len);
        assert_memory_equal(a->chunks[i].hash.b, b->chunks[i].hash.b, LR_HASH_LEN);
    }
    if (a->type == LR_FT_FILE && !a->deleted)
        assert_memory_equal(a->blocks_hash.b, b->blocks_hash.b, LR_HASH_LEN);
}

/* Every strict prefix of a valid payload must fail with a fatal code. */
typedef int (*decode_fn)(const uint8_t *p, size_t n, struct lr_err *err);

static void assert_fatal(int rc, const struct lr_err *err)
{
    assert_true(rc <= LR_E__FATAL_PEER);
    assert_int_equal(err->code, rc);
    assert_true(err->msg[0] != '\0');
}

static void all_truncations(const uint8_t *p, size_t n, decode_fn f)
{
    for (size_t k = 0; k < n; k++) {
        struct lr_err err;
        lr_err_clear(&err);
        uint8_t *copy = lr_xmalloc(k ? k : 1); /* exact size: ASan sees overreads */
        memcpy(copy, p, k);
        int rc = f(copy, k, &err);
        if (rc >= 0)
            fail_msg("prefix of %zu/%zu bytes decoded", k, n);
        assert_fatal(rc, &err);
        free(copy);
    }
}

/* ---- registry ------------------------------------------------------------------ */

static void test_registry(void **state)
{
    (void)state;
    assert_int_equal(lr_proto_max_payload(LR_MSG_FOLDERS), LR_PROTO_FOLDERS_MAX);
    assert_int_equal(lr_proto_max_payload(LR_MSG_INDEX), LR_PROTO_INDEX_MAX);
    assert_int_equal(lr_proto_max_payload(LR_MSG_WANT), LR_PROTO_WANT_MAX);
    assert_int_equal(lr_proto_max_payload(LR_MSG_CHUNK), LR_PROTO_CHUNK_MAX);
    assert_int_equal(lr_proto_max_payload(LR_MSG_DEBUG_DATA), LR_PROTO_DEBUG_MAX);
    assert_int_equal(lr_proto_max_payload(LR_MSG_HAVE), LR_PROTO_HAVE_MAX);
    assert_int_equal(lr_proto_max_payload(LR_MSG_SUMMARY), LR_PROTO_SUMMARY_MAX);
    assert_int_equal(lr_proto_max_payload(LR_MSG_SUMMARY_WANT), LR_PROTO_SUMMARY_WANT_MAX);
    assert_int_equal(lr_proto_max_payload(LR_MSG_PULLED), LR_PROTO_PULLED_MAX);
    assert_string_equal(lr_proto_type_name(LR_MSG_PULLED), "PULLED");
    assert_int_equal(lr_proto_max_payload(LR_MSG_SEQ_ASK), LR_PROTO_SEQ_ASK_MAX);
    assert_string_equal(lr_proto_type_name(LR_MSG_SEQ_ASK), "SEQ_ASK");
    assert_int_equal(lr_proto_max_payload(LR_MSG_SEQS), LR_PROTO_SEQS_MAX);
    assert_string_equal(lr_proto_type_name(LR_MSG_SEQS), "SEQS");
    assert_true(LR_PROTO_SEQS_MAX <= LR_PROTO_FRAME_MAX);
    assert_true(LR_PROTO_SUMMARY_MAX <= LR_PROTO_FRAME_MAX);
    /* Reserved, unused: unknown to the reader (skipped). */
    assert_int_equal(lr_proto_max_payload(LR_MSG_INDEX_DELTA), 0);
    assert_int_equal(lr_proto_max_payload(0x1b), 0);
    assert_string_equal(lr_proto_type_name(LR_MSG_INDEX), "INDEX");
    assert_string_equal(lr_proto_type_name(LR_MSG_DEBUG_DATA), "DEBUG_DATA");
    assert_true(LR_FEAT_HAVE != LR_FEAT_INDEX_DELTA && LR_FEAT_RECON != LR_FEAT_HAVE &&
                LR_FEAT_RECON != LR_FEAT_INDEX_DELTA);
    assert_true((LR_FEAT_HAVE | LR_FEAT_INDEX_DELTA | LR_FEAT_RECON) <= LR_VARINT_MAX);
    assert_true((LR_FEAT_SEQS & (LR_FEAT_HAVE | LR_FEAT_INDEX_DELTA | LR_FEAT_RECON |
                                 LR_FEAT_FOLDER_STOPPED)) == 0);
    /* The biggest CHUNK and WANT fit their limits. */
    assert_true(LR_PROTO_CHUNK_DATA_MAX + 3 * 8 + 4 <= LR_PROTO_CHUNK_MAX);
    assert_true(LR_PROTO_CHUNK_MAX <= LR_PROTO_FRAME_MAX);
    assert_true(LR_PROTO_WANT_MAX <= LR_PROTO_FRAME_MAX);

    /* A 1 MiB DEBUG_DATA frame goes through the reader whole. */
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_FRAME_MAX + 16);
    uint8_t *big = lr_xcalloc(1, LR_PROTO_DEBUG_MAX + 1);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_DEBUG_DATA, big, LR_PROTO_DEBUG_MAX), 0);
    struct lr_frame_reader r;
    lr_frame_reader_init(&r);
    size_t used;
    assert_int_equal(lr_frame_reader_feed(&r, b.data, b.len, &used, NULL), 1);
    uint64_t type;
    const uint8_t *pl;
    size_t len;
    assert_int_equal(lr_frame_reader_take(&r, &type, &pl, &len), 0);
    assert_int_equal(type, LR_MSG_DEBUG_DATA);
    assert_int_equal(len, LR_PROTO_DEBUG_MAX);
    lr_frame_reader_release(&r);
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_frame_put(&b, LR_MSG_DEBUG_DATA, big, LR_PROTO_DEBUG_MAX + 1),
                     LR_ETOOBIG);
    free(big);
    lr_buf_release(&b);
}

static void test_folder_id_rule(void **state)
{
    (void)state;
    assert_true(lr_proto_folder_id_ok("photos", 6));
    assert_true(lr_proto_folder_id_ok("a.b", 3));
    assert_true(lr_proto_folder_id_ok("\xc3\xa9t\xc3\xa9", 5));
    assert_false(lr_proto_folder_id_ok("", 0));
    assert_false(lr_proto_folder_id_ok(".", 1));
    assert_false(lr_proto_folder_id_ok("..", 2));
    assert_false(lr_proto_folder_id_ok("a/b", 3));
    assert_false(lr_proto_folder_id_ok("a\nb", 3));
    assert_false(lr_proto_folder_id_ok("a\0b", 3));
    assert_false(lr_proto_folder_id_ok("\xff", 1));
    char longid[300];
    memset(longid, 'x', sizeof(longid));
    assert_true(lr_proto_folder_id_ok(longid, 255));
    assert_false(lr_proto_folder_id_ok(longid, 256));
}

/* ---- FOLDERS ------------------------------------------------------------------- */

static void folder_init(struct lr_proto_folder *f, const char *id, uint64_t index_id)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->id, sizeof(f->id), "%s", id);
    f->index_id = index_id;
    f->max_seq = 1000;
    f->peer_index_id = UINT64_MAX; /* any 64-bit value: u64 on the wire */
    f->peer_seq = 999;
}

static int folders_dec(const uint8_t *p, size_t n, struct lr_err *err)
{
    struct lr_proto_folders f;
    int rc = lr_proto_folders_decode(p, n, &f, err);
    lr_proto_folders_release(&f);
    return rc;
}

static void test_folders_roundtrip(void **state)
{
    (void)state;
    struct lr_proto_folder v[3];
    folder_init(&v[0], "docs", 1);
    folder_init(&v[1], "music", UINT64_MAX);
    v[1].mode = LR_PROTO_MODE_SEND_ONLY;
    snprintf(v[1].conflict, sizeof(v[1].conflict), "newest-wins");
    folder_init(&v[2], "photos", 42);
    v[2].mode = LR_PROTO_MODE_RECEIVE_ONLY;
    v[2].peer_index_id = 0; /* "I hold nothing of yours": send everything */
    v[2].peer_seq = 0;
    v[2].max_seq = LR_VARINT_MAX;
    v[0].list_upto = 77; /* option 4: lists, not deltas, up to seq 77 */
    v[2].list_upto = LR_VARINT_MAX;
    v[1].scanning = true; /* option 5: its first scan still running */
    v[2].scanning = true;
    v[2].stopped = true;  /* option 6: in error on the sender */
    v[1].unshared = true; /* option 7: not shared back by the sender */

    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_FOLDERS_MAX);
    assert_int_equal(lr_proto_folders_encode(v, 3, &b), 0);
    struct lr_proto_folders out;
    struct lr_err err;
    assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, &err), 0);
    assert_int_equal(out.n, 3);
    for (size_t i = 0; i < 3; i++)
        assert_memory_equal(&out.v[i], &v[i], sizeof(v[i]));
    lr_proto_folders_release(&out);
    lr_proto_folders_release(&out); /* twice is fine */
    all_truncations(b.data, b.len, folders_dec);

    /* Empty list: valid ("nothing shared with you any more"). */
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_folders_encode(NULL, 0, &b), 0);
    assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, NULL), 0);
    assert_int_equal(out.n, 0);

    /* Trailing bytes are ignored. */
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_folders_encode(v, 1, &b), 0);
    assert_int_equal(lr_buf_put_u32(&b, 0xdeadbeef), 0);
    assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, NULL), 0);
    assert_int_equal(out.n, 1);
    lr_proto_folders_release(&out);
    lr_buf_release(&b);
}

static void test_folders_sort_and_encoder_rules(void **state)
{
    (void)state;
    struct lr_proto_folder v[3];
    folder_init(&v[0], "zeta", 1);
    folder_init(&v[1], "alpha", 2);
    folder_init(&v[2], "mid", 3);
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_FOLDERS_MAX);
    assert_int_equal(lr_proto_folders_encode(v, 3, &b), LR_EBADVAL); /* unsorted */
    assert_int_equal(b.len, 0);
    lr_proto_folders_sort(v, 3);
    assert_string_equal(v[0].id, "alpha");
    assert_string_equal(v[2].id, "zeta");
    assert_int_equal(lr_proto_folders_encode(v, 3, &b), 0);

    struct lr_proto_folder f;
    lr_buf_reset(&b);
    folder_init(&f, "x", 0); /* index_id 0 */
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    folder_init(&f, "a/b", 1);
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    folder_init(&f, "x", 1);
    f.peer_index_id = 0; /* a seq without an index */
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    folder_init(&f, "x", 1);
    f.mode = 3;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    folder_init(&f, "x", 1);
    f.max_seq = LR_VARINT_MAX + 1;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    folder_init(&f, "x", 1);
    snprintf(f.conflict, sizeof(f.conflict), "a\tb");
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    assert_int_equal(b.len, 0);
    assert_true(lr_buf_ok(&b));

    /* 4096 entries with 255-byte IDs and strategies exceed 1 MiB: refused. */
    struct lr_proto_folder *many = lr_xcalloc(LR_PROTO_FOLDERS_ENTRIES_MAX + 1, sizeof(*many));
    for (size_t i = 0; i <= LR_PROTO_FOLDERS_ENTRIES_MAX; i++) {
        char id[LR_PROTO_FOLDER_ID_MAX + 1];
        memset(id, 'f', LR_PROTO_FOLDER_ID_MAX);
        snprintf(id + LR_PROTO_FOLDER_ID_MAX - 8, 9, "%08zu", i);
        folder_init(&many[i], id, i + 1);
        memset(many[i].conflict, 'c', LR_PROTO_STRATEGY_MAX);
    }
    lr_buf_release(&b);
    lr_buf_init(&b, 4 * MIB);
    assert_int_equal(lr_proto_folders_encode(many, LR_PROTO_FOLDERS_ENTRIES_MAX + 1, &b),
                     LR_EBADVAL);
    assert_int_equal(lr_proto_folders_encode(many, LR_PROTO_FOLDERS_ENTRIES_MAX, &b), LR_ETOOBIG);
    assert_false(lr_buf_ok(&b));
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_folders_encode(many, 2000, &b), 0);
    assert_true(b.len <= LR_PROTO_FOLDERS_MAX);
    struct lr_proto_folders out;
    assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, NULL), 0);
    assert_int_equal(out.n, 2000);
    assert_string_equal(out.v[1999].conflict, many[1999].conflict);
    lr_proto_folders_release(&out);
    free(many);
    lr_buf_release(&b);
}

/* Hand-built FOLDERS entry: id, index_id, max_seq, peer index, peer seq; the
 * caller appends options. */
static void put_folder_head(struct lr_buf *b, const char *id, uint64_t index_id, uint64_t peer_ix,
                            uint64_t peer_seq)
{
    assert_int_equal(lr_buf_put_lbytes(b, id, strlen(id)), 0);
    assert_int_equal(lr_buf_put_u64(b, index_id), 0);
    assert_int_equal(lr_buf_put_varint(b, 5), 0);
    assert_int_equal(lr_buf_put_u64(b, peer_ix), 0);
    assert_int_equal(lr_buf_put_varint(b, peer_seq), 0);
}

static int folders_expect(struct lr_buf *b, int want)
{
    struct lr_err err;
    lr_err_clear(&err);
    int rc = folders_dec(b->data, b->len, &err);
    if (rc != want)
        fail_msg("want %s, got %s (%s)", lr_errname(want), lr_errname(rc), err.msg);
    if (rc < 0)
        assert_fatal(rc, &err);
    lr_buf_reset(b);
    return rc;
}

/* Option 4 (list_upto, §6.5): one varint >= 1, nothing else; the encoder
 * refuses a sequence over the varint range. */
static void test_folders_list_upto(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 4096);
    const struct {
        size_t len;
        uint8_t v[3];
        int want;
    } cases[] = {
        {1, {5}, 0},
        {1, {0}, LR_EBADVAL},    /* seq 0 */
        {0, {0}, LR_EBADVAL},    /* empty */
        {2, {5, 1}, LR_EBADVAL}, /* trailing byte */
        {2, {0x40, 0x05}, 0},    /* two-byte varint */
        {1, {0x40}, LR_EBADVAL}, /* cut varint */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(lr_buf_put_varint(&b, 1), 0);
        put_folder_head(&b, "docs", 1, 0, 0);
        assert_int_equal(lr_buf_put_varint(&b, 1), 0);
        assert_int_equal(lr_buf_put_varint(&b, LR_PROTO_FOPT_LIST_UPTO), 0);
        assert_int_equal(lr_buf_put_lbytes(&b, cases[i].v, cases[i].len), 0);
        if (cases[i].want == 0) {
            struct lr_proto_folders out;
            assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, NULL), 0);
            assert_int_equal(out.v[0].list_upto, 5); /* both encodings of 5 */
            lr_proto_folders_release(&out);
            lr_buf_reset(&b);
        } else {
            folders_expect(&b, cases[i].want);
        }
    }
    struct lr_proto_folder f;
    folder_init(&f, "docs", 1);
    f.list_upto = LR_VARINT_MAX + 1;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    assert_int_equal(b.len, 0);
    lr_buf_release(&b);
}

/* Option 8 (peer_check, §6.4): a sequence within what is held and 16 bytes. */
static void test_folders_peer_check(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 4096);
    struct lr_proto_folder f;
    folder_init(&f, "docs", 1);
    f.peer_index_id = 9;
    f.peer_seq = 40;
    f.peer_check_seq = 40;
    memset(f.peer_check, 0xab, sizeof(f.peer_check));
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), 0);
    struct lr_proto_folders out;
    assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, NULL), 0);
    assert_int_equal(out.v[0].peer_check_seq, 40);
    assert_memory_equal(out.v[0].peer_check, f.peer_check, sizeof(f.peer_check));
    lr_proto_folders_release(&out);
    lr_buf_reset(&b);
    /* The encoder refuses a check beyond what is held, or without an index. */
    f.peer_check_seq = 41;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    lr_buf_reset(&b);
    f.peer_check_seq = 5;
    f.peer_index_id = 0;
    f.peer_seq = 0;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    lr_buf_reset(&b);
    /* The decoder: seq 0, above peer_seq, no peer index, wrong lengths. */
    const struct {
        uint64_t peer_ix, peer_seq, seq;
        size_t digest;
        int want;
    } cases[] = {
        {9, 40, 7, 16, 0},         {9, 40, 0, 16, LR_EBADVAL}, {9, 40, 41, 16, LR_EBADVAL},
        {0, 0, 1, 16, LR_EBADVAL}, {9, 40, 7, 15, LR_EBADVAL}, {9, 40, 7, 17, 0}, /* path "Z" */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t val[32];
        size_t vl = 0;
        val[vl++] = (uint8_t)cases[i].seq; /* < 64: one byte */
        memset(val + vl, 0x5a, cases[i].digest);
        vl += cases[i].digest;
        assert_int_equal(lr_buf_put_varint(&b, 1), 0);
        put_folder_head(&b, "docs", 1, cases[i].peer_ix, cases[i].peer_seq);
        assert_int_equal(lr_buf_put_varint(&b, 1), 0);
        assert_int_equal(lr_buf_put_varint(&b, LR_PROTO_FOPT_PEER_CHECK), 0);
        assert_int_equal(lr_buf_put_lbytes(&b, val, vl), 0);
        if (cases[i].want == 0) {
            assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, NULL), 0);
            assert_int_equal(out.v[0].peer_check_seq, cases[i].seq);
            lr_proto_folders_release(&out);
            lr_buf_reset(&b);
        } else {
            folders_expect(&b, cases[i].want);
        }
    }
    /* With the entry's path: kept; a bad or over-long path is refused. */
    folder_init(&f, "docs", 1);
    f.peer_index_id = 9;
    f.peer_seq = 40;
    f.peer_check_seq = 40;
    memcpy(f.peer_check_path, "dir/file.txt", 13);
    f.peer_check_path_len = 12;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), 0);
    assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, NULL), 0);
    assert_int_equal(out.v[0].peer_check_path_len, 12);
    assert_string_equal((const char *)out.v[0].peer_check_path, "dir/file.txt");
    lr_proto_folders_release(&out);
    lr_buf_reset(&b);
    memcpy(f.peer_check_path, "../x", 5);
    f.peer_check_path_len = 4;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), LR_EBADVAL);
    lr_buf_reset(&b);
    static const char *const bad_paths[] = {"../x", "/abs", "a//b", ""};
    for (size_t k = 0; k < 4; k++) {
        uint8_t val[300];
        size_t vl = 0, pl = k == 3 ? LR_INDEX_CHECK_PATH_MAX + 1 : strlen(bad_paths[k]);
        val[vl++] = 7;
        memset(val + vl, 0x5a, 16);
        vl += 16;
        if (k == 3)
            memset(val + vl, 'a', pl);
        else
            memcpy(val + vl, bad_paths[k], pl);
        vl += pl;
        assert_int_equal(lr_buf_put_varint(&b, 1), 0);
        put_folder_head(&b, "docs", 1, 9, 40);
        assert_int_equal(lr_buf_put_varint(&b, 1), 0);
        assert_int_equal(lr_buf_put_varint(&b, LR_PROTO_FOPT_PEER_CHECK), 0);
        assert_int_equal(lr_buf_put_lbytes(&b, val, vl), 0);
        folders_expect(&b, LR_EBADVAL);
    }
    lr_buf_release(&b);
}

/* Options 5 (scanning), 6 (stopped) and 7 (unshared), §6.5: present with an empty value,
 * absent means not so; a value is refused rather than taken for a newer
 * form. */
static void test_folders_flag_options(void **state)
{
    (void)state;
    static const uint64_t keys[] = {LR_PROTO_FOPT_SCANNING, LR_PROTO_FOPT_STOPPED,
                                    LR_PROTO_FOPT_UNSHARED};
    struct lr_buf b;
    lr_buf_init(&b, 4096);
    for (size_t k = 0; k < 3; k++) {
        for (size_t len = 0; len < 3; len++) {
            static const uint8_t val[2] = {1, 0};
            assert_int_equal(lr_buf_put_varint(&b, 1), 0);
            put_folder_head(&b, "docs", 1, 0, 0);
            assert_int_equal(lr_buf_put_varint(&b, 1), 0);
            assert_int_equal(lr_buf_put_varint(&b, keys[k]), 0);
            assert_int_equal(lr_buf_put_lbytes(&b, val, len), 0);
            if (len == 0) {
                struct lr_proto_folders out;
                assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, NULL), 0);
                assert_int_equal(out.v[0].scanning, k == 0);
                assert_int_equal(out.v[0].stopped, k == 1);
                assert_int_equal(out.v[0].unshared, k == 2);
                assert_int_equal(out.v[0].mode, LR_PROTO_MODE_SEND_RECEIVE); /* absent: default */
                lr_proto_folders_release(&out);
                lr_buf_reset(&b);
            } else {
                folders_expect(&b, LR_EBADVAL);
            }
        }
    }
    /* Neither: no option on the wire (an older peer sees no change). */
    struct lr_proto_folder f;
    folder_init(&f, "docs", 1);
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), 0);
    size_t plain = b.len;
    lr_buf_reset(&b);
    f.scanning = true;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), 0);
    assert_int_equal(b.len, plain + 2); /* key 5, empty value */
    lr_buf_reset(&b);
    f.stopped = true;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), 0);
    assert_int_equal(b.len, plain + 4); /* and key 6, empty value */
    lr_buf_reset(&b);
    f.unshared = true;
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), 0);
    assert_int_equal(b.len, plain + 6); /* and key 7, empty value */
    lr_buf_release(&b);
}

/* Option 9 (removed), §6.5: empty value; it comes after option 8 on the
 * wire, round-trips with the entry's other fields, and never goes with
 * option 6 or 7 (a folder removed there is neither in error nor kept back). */
static void test_folders_removed_option(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 4096);
    struct lr_proto_folder f;
    folder_init(&f, "docs", 7);
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), 0);
    size_t plain = b.len;
    lr_buf_reset(&b);
    f.removed = true;
    f.peer_check_seq = 5; /* key 8 first, then key 9 */
    memset(f.peer_check, 0xab, sizeof(f.peer_check));
    assert_int_equal(lr_proto_folders_encode(&f, 1, &b), 0);
    assert_int_equal(b.len, plain + 2 + 2 + 1 + LR_PROTO_CHECK_LEN);
    struct lr_proto_folders out;
    assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, NULL), 0);
    assert_int_equal(out.n, 1);
    assert_true(out.v[0].removed);
    assert_false(out.v[0].stopped || out.v[0].unshared);
    assert_int_equal(out.v[0].index_id, 7);
    assert_int_equal(out.v[0].peer_check_seq, 5);
    lr_proto_folders_release(&out);
    lr_buf_reset(&b);

    /* A value, and either of the other two inert flags beside it: refused. */
    for (int k = 0; k < 3; k++) {
        static const uint8_t one = 1;
        assert_int_equal(lr_buf_put_varint(&b, 1), 0);
        put_folder_head(&b, "docs", 1, 0, 0);
        assert_int_equal(lr_buf_put_varint(&b, k == 0 ? 1 : 2), 0);
        if (k > 0) {
            assert_int_equal(
                lr_buf_put_varint(&b, k == 1 ? LR_PROTO_FOPT_STOPPED : LR_PROTO_FOPT_UNSHARED), 0);
            assert_int_equal(lr_buf_put_lbytes(&b, &one, 0), 0);
        }
        assert_int_equal(lr_buf_put_varint(&b, LR_PROTO_FOPT_REMOVED), 0);
        assert_int_equal(lr_buf_put_lbytes(&b, &one, k == 0), 0);
        folders_expect(&b, LR_EBADVAL);
    }
    lr_buf_release(&b);
}

static void test_folders_hostile(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 2 * MIB);
    /* Count over the cap, and a count the bytes cannot hold. */
    lr_buf_put_varint(&b, LR_PROTO_FOLDERS_ENTRIES_MAX + 1);
    folders_expect(&b, LR_ETOOBIG);
    lr_buf_put_varint(&b, LR_VARINT_MAX);
    folders_expect(&b, LR_ETOOBIG);
    lr_buf_put_varint(&b, 4000);
    put_folder_head(&b, "a", 1, 0, 0);
    lr_buf_put_varint(&b, 0);
    folders_expect(&b, LR_ETRUNC);
    /* Unknown option key skipped; mode and conflict parsed. */
    lr_buf_put_varint(&b, 1);
    put_folder_head(&b, "a", 1, 0, 0);
    lr_buf_put_varint(&b, 3);
    lr_buf_put_varint(&b, LR_PROTO_FOPT_MODE);
    lr_buf_put_lbytes(&b, "\x02", 1);
    lr_buf_put_varint(&b, LR_PROTO_FOPT_CONFLICT);
    lr_buf_put_lbytes(&b, "keep-both", 9);
    lr_buf_put_varint(&b, 9999);
    lr_buf_put_lbytes(&b, "future stuff", 12);
    struct lr_proto_folders out;
    assert_int_equal(lr_proto_folders_decode(b.data, b.len, &out, NULL), 0);
    assert_int_equal(out.v[0].mode, LR_PROTO_MODE_RECEIVE_ONLY);
    assert_string_equal(out.v[0].conflict, "keep-both");
    lr_proto_folders_release(&out);
    lr_buf_reset(&b);
    /* Duplicate option key, key 0, keys out of order. */
    static const uint64_t bad_keys[][2] = {{1, 1}, {0, 5}, {7, 3}};
    for (size_t i = 0; i < 3; i++) {
        lr_buf_put_varint(&b, 1);
        put_folder_head(&b, "a", 1, 0, 0);
        lr_buf_put_varint(&b, 2);
        for (int k = 0; k < 2; k++) {
            lr_buf_put_varint(&b, bad_keys[i][k]);
            lr_buf_put_lbytes(&b, "\x00", 1);
        }
        folders_expect(&b, LR_EBADVAL);
    }
    /* Unknown mode value; mode value with trailing bytes; empty mode value. */
    static const char *modes[] = {"\x03", "\x00\x00", ""};
    static const size_t mlen[] = {1, 2, 0};
    for (size_t i = 0; i < 3; i++) {
        lr_buf_put_varint(&b, 1);
        put_folder_head(&b, "a", 1, 0, 0);
        lr_buf_put_varint(&b, 1);
        lr_buf_put_varint(&b, LR_PROTO_FOPT_MODE);
        lr_buf_put_lbytes(&b, modes[i], mlen[i]);
        folders_expect(&b, LR_EBADVAL);
    }
    /* Conflict text with a control character; empty. */
    lr_buf_put_varint(&b, 1);
    put_folder_head(&b, "a", 1, 0, 0);
    lr_buf_put_varint(&b, 1);
    lr_buf_put_varint(&b, LR_PROTO_FOPT_CONFLICT);
    lr_buf_put_lbytes(&b, "a\x1b[1Ab", 6);
    folders_expect(&b, LR_EBADVAL);
    /* Option value over 255 bytes; too many options. */
    uint8_t big[300] = {0};
    lr_buf_put_varint(&b, 1);
    put_folder_head(&b, "a", 1, 0, 0);
    lr_buf_put_varint(&b, 1);
    lr_buf_put_varint(&b, 50);
    lr_buf_put_lbytes(&b, big, 256);
    folders_expect(&b, LR_ETOOBIG);
    lr_buf_put_varint(&b, 1);
    put_folder_head(&b, "a", 1, 0, 0);
    lr_buf_put_varint(&b, LR_PROTO_FOLDER_OPTS_MAX + 1);
    folders_expect(&b, LR_ETOOBIG);
    /* index_id 0; peer seq without a peer index. */
    lr_buf_put_varint(&b, 1);
    put_folder_head(&b, "a", 0, 0, 0);
    lr_buf_put_varint(&b, 0);
    folders_expect(&b, LR_EBADVAL);
    lr_buf_put_varint(&b, 1);
    put_folder_head(&b, "a", 1, 0, 17);
    lr_buf_put_varint(&b, 0);
    folders_expect(&b, LR_EBADVAL);
    /* Duplicate folder ID; out of order. */
    static const char *pairs[][2] = {{"a", "a"}, {"b", "a"}};
    for (size_t i = 0; i < 2; i++) {
        lr_buf_put_varint(&b, 2);
        for (int k = 0; k < 2; k++) {
            put_folder_head(&b, pairs[i][k], 1, 0, 0);
            lr_buf_put_varint(&b, 0);
        }
        folders_expect(&b, LR_EBADVAL);
    }
    /* Bad IDs: '/', "..", empty, control, over 255 bytes (length 2^62-1). */
    static const char *ids[] = {"a/b", "..", "", "x\ty"};
    for (size_t i = 0; i < 4; i++) {
        lr_buf_put_varint(&b, 1);
        put_folder_head(&b, ids[i], 1, 0, 0);
        lr_buf_put_varint(&b, 0);
        folders_expect(&b, LR_EBADVAL);
    }
    lr_buf_put_varint(&b, 1);
    lr_buf_put_varint(&b, LR_VARINT_MAX);
    lr_buf_put(&b, big, sizeof(big));
    folders_expect(&b, LR_ETOOBIG);
    lr_buf_release(&b);
}

/* ---- INDEX: round trips through the builder ------------------------------------ */

static struct lr_proto_index_batch *batch_new(size_t raw_max, size_t max_entries)
{
    struct lr_proto_index_batch *b = lr_xmalloc(sizeof(*b));
    assert_int_equal(lr_proto_index_batch_init(b, "docs", 0xfeedface12345678, raw_max, max_entries),
                     0);
    return b;
}

static void batch_free(struct lr_proto_index_batch *b)
{
    lr_proto_index_batch_release(b);
    free(b);
}

static int index_dec(const uint8_t *p, size_t n, struct lr_err *err)
{
    struct lr_proto_index ix;
    int rc = lr_proto_index_decode(p, n, NULL, &ix, err);
    lr_proto_index_release(&ix);
    return rc;
}

static void test_index_roundtrip(void **state)
{
    (void)state;
    struct lr_file_rec recs[7];
    rec_file(&recs[0], "a", 1, 3);
    rec_init(&recs[1], "a/b", LR_FT_DIR, 2);
    rec_init(&recs[2], "link", LR_FT_SYMLINK, 5);
    rec_file(&recs[3], "empty", 6, 0); /* zero-byte file */
    rec_init(&recs[4], "gone", LR_FT_FILE, 9);
    recs[4].deleted = true;
    rec_init(&recs[5], "gone-link", LR_FT_SYMLINK, 10);
    recs[5].deleted = true;
    free(recs[5].target);
    recs[5].target = NULL;
    recs[5].target_len = 0;
    rec_file(&recs[6], "\xff\xfe non-utf8 name", 11, 1);
    recs[6].mode = 07777;
    /* Authors (the optional last field): known on a file, a directory and a
     * tombstone; one not in the vector is not sent. */
    recs[0].vv.author = 0x2222;
    recs[1].vv.author = 0x1111;
    recs[4].vv.author = 0x2222;
    recs[6].vv.author = 0x3333;

    struct lr_proto_index_batch *b = batch_new(0, 0);
    for (size_t i = 0; i < 7; i++) {
        size_t nb = 0;
        assert_int_equal(lr_proto_index_batch_add(b, &recs[i], &nb), 0);
        assert_int_equal(nb, recs[i].nchunks);
    }
    assert_int_equal(lr_proto_index_batch_count(b), 7);
    struct lr_buf out;
    lr_buf_init(&out, LR_PROTO_INDEX_MAX);
    assert_int_equal(
        lr_proto_index_batch_finish(b, LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_LAST, &out), 0);
    assert_int_equal(lr_proto_index_batch_count(b), 0);

    struct lr_proto_index ix;
    struct lr_err err;
    struct lr_proto_zc *zc = lr_proto_zc_new();
    assert_int_equal(lr_proto_index_decode(out.data, out.len, zc, &ix, &err), 0);
    assert_string_equal(ix.hdr.folder_id, "docs");
    assert_true(ix.hdr.index_id == 0xfeedface12345678);
    assert_int_equal(ix.hdr.flags, LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_LAST);
    assert_int_equal(ix.n, 7);
    for (size_t i = 0; i < 7; i++) {
        assert_rec_equal(&recs[i], &ix.v[i].rec);
        assert_true(ix.v[i].whole);
        assert_false(ix.v[i].unknown_type);
        uint64_t author = i == 6 ? 0 : recs[i].vv.author;
        assert_true(ix.v[i].rec.vv.author == author);
    }
    /* The empty file's blocks hash is that of the empty list. */
    struct lr_hash eh;
    lr_index_blocks_hash(NULL, 0, &eh);
    assert_memory_equal(ix.v[3].rec.blocks_hash.b, eh.b, LR_HASH_LEN);
    lr_proto_index_release(&ix);

    /* Streaming reader yields the same, then 0. */
    struct lr_proto_index_rd rd;
    assert_int_equal(lr_proto_index_open(&rd, out.data, out.len, zc, &err), 0);
    struct lr_proto_entry e;
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(lr_proto_index_next(&rd, &e, &err), 1);
        assert_rec_equal(&recs[i], &e.rec);
        lr_proto_entry_release(&e);
    }
    assert_int_equal(lr_proto_index_next(&rd, &e, &err), 0);
    lr_proto_index_close(&rd);

    all_truncations(out.data, out.len, index_dec);

    /* An empty batch (full index of an empty folder). */
    lr_buf_reset(&out);
    assert_int_equal(
        lr_proto_index_batch_finish(b, LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_LAST, &out), 0);
    assert_int_equal(lr_proto_index_decode(out.data, out.len, zc, &ix, &err), 0);
    assert_int_equal(ix.n, 0);
    assert_int_equal(ix.hdr.comp, LR_PROTO_COMP_NONE);
    lr_proto_index_release(&ix);
    assert_int_equal(lr_proto_index_batch_finish(b, 8, &out), LR_EBADVAL);
    assert_int_equal(
        lr_proto_index_batch_finish(b, LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_RECON, &out),
        LR_EBADVAL);
    lr_buf_reset(&out);
    assert_int_equal(
        lr_proto_index_batch_finish(b, LR_PROTO_INDEX_RECON | LR_PROTO_INDEX_LAST, &out), 0);
    assert_int_equal(lr_proto_index_decode(out.data, out.len, zc, &ix, &err), 0);
    assert_int_equal(ix.hdr.flags, LR_PROTO_INDEX_RECON | LR_PROTO_INDEX_LAST);
    lr_proto_index_release(&ix);

    lr_proto_zc_free(zc);
    batch_free(b);
    lr_buf_release(&out);
    for (size_t i = 0; i < 7; i++)
        lr_file_rec_release(&recs[i]);
}

static void test_index_builder_rejects(void **state)
{
    (void)state;
    struct lr_proto_index_batch *b = batch_new(0, 0);
    struct lr_file_rec r;
    size_t nb;
#define ADD_EXPECT(rc)                                                                             \
    do {                                                                                           \
        nb = 0;                                                                                    \
        assert_int_equal(lr_proto_index_batch_add(b, &r, &nb), rc);                                \
        lr_file_rec_release(&r);                                                                   \
    } while (0)
    rec_file(&r, "../x", 1, 1);
    ADD_EXPECT(LR_EBADVAL);
    rec_file(&r, "x", 0, 1); /* seq 0 */
    ADD_EXPECT(LR_EBADVAL);
    rec_file(&r, "x", 1, 2);
    r.chunks[1].off++; /* gap */
    ADD_EXPECT(LR_EBADVAL);
    rec_file(&r, "x", 1, 2);
    r.size++; /* size != sum */
    ADD_EXPECT(LR_EBADVAL);
    rec_init(&r, "d", LR_FT_DIR, 1);
    r.size = 1;
    ADD_EXPECT(LR_EBADVAL);
    rec_file(&r, "x", 1, 1);
    r.deleted = true; /* tombstone with chunks */
    ADD_EXPECT(LR_EBADVAL);
    rec_file(&r, "x", 1, 1);
    lr_vv_release(&r.vv); /* empty vv */
    ADD_EXPECT(LR_EBADVAL);
    rec_file(&r, "x", 1, 1);
    r.mode = 010000;
    ADD_EXPECT(LR_EBADVAL);
    rec_init(&r, "l", LR_FT_SYMLINK, 1);
    r.target_len = 0;
    ADD_EXPECT(LR_EBADVAL);
    rec_file(&r, "x", 1, 1);
    r.type = (enum lr_ftype)7;
    ADD_EXPECT(LR_EBADVAL);
    /* Sequence must increase within a batch. */
    rec_file(&r, "x", 5, 1);
    ADD_EXPECT(0);
    rec_file(&r, "y", 5, 1);
    ADD_EXPECT(LR_EBADVAL);
    rec_file(&r, "y", 6, 1);
    ADD_EXPECT(0);
    assert_int_equal(lr_proto_index_batch_count(b), 2);
#undef ADD_EXPECT
    batch_free(b);
    struct lr_proto_index_batch bb;
    assert_int_equal(lr_proto_index_batch_init(&bb, "a/b", 1, 0, 0), LR_EBADVAL);
    assert_int_equal(lr_proto_index_batch_init(&bb, "a", 0, 0, 0), LR_EBADVAL);
    assert_int_equal(lr_proto_index_batch_init(&bb, "a", 1, 1000, 0), LR_EBADVAL);
    assert_int_equal(lr_proto_index_batch_init(&bb, "a", 1, 2 * MIB, 0), LR_EBADVAL);
    assert_int_equal(lr_proto_index_batch_init(&bb, "a", 1, 0, 10001), LR_EBADVAL);
}

/* 200k small records: many batches, each within every bound, nothing lost. */
static void test_index_batch_bound(void **state)
{
    (void)state;
    const size_t total = 200000;
    struct lr_proto_index_batch *b = batch_new(0, 0);
    struct lr_buf out;
    lr_buf_init(&out, LR_PROTO_INDEX_MAX);
    struct lr_proto_zc *zc = lr_proto_zc_new();
    size_t batches = 0, seen = 0, max_payload = 0;
    uint64_t last_seq = 0;

    /* Decode one finished batch and check it continues the sequence. */
#define FLUSH(flags)                                                                               \
    do {                                                                                           \
        lr_buf_reset(&out);                                                                        \
        assert_int_equal(lr_proto_index_batch_finish(b, (flags), &out), 0);                        \
        assert_true(out.len <= LR_PROTO_INDEX_MAX);                                                \
        if (out.len > max_payload)                                                                 \
            max_payload = out.len;                                                                 \
        struct lr_proto_index ix;                                                                  \
        assert_int_equal(lr_proto_index_decode(out.data, out.len, zc, &ix, NULL), 0);              \
        assert_true(ix.hdr.raw_len <= LR_PROTO_INDEX_BATCH_RAW);                                   \
        assert_true(ix.n >= 1 && ix.n <= LR_PROTO_INDEX_ENTRIES_MAX);                              \
        for (size_t k = 0; k < ix.n; k++) {                                                        \
            assert_true(ix.v[k].rec.seq == last_seq + 1);                                          \
            last_seq = ix.v[k].rec.seq;                                                            \
        }                                                                                          \
        seen += ix.n;                                                                              \
        lr_proto_index_release(&ix);                                                               \
        batches++;                                                                                 \
    } while (0)

    for (size_t i = 0; i < total; i++) {
        struct lr_file_rec r;
        char path[64];
        snprintf(path, sizeof(path), "dir%03zu/file-%07zu.txt", i % 977, i);
        if (i % 3 == 0)
            rec_init(&r, path, LR_FT_DIR, i + 1);
        else
            rec_file(&r, path, i + 1, 1 + i % 3);
        size_t nb = 0;
        int rc;
        while ((rc = lr_proto_index_batch_add(b, &r, &nb)) == LR_PROTO_BATCH_FULL)
            FLUSH(batches == 0 ? LR_PROTO_INDEX_FIRST : 0);
        assert_int_equal(rc, 0);
        lr_file_rec_release(&r);
    }
    FLUSH(LR_PROTO_INDEX_LAST);
    assert_int_equal(seen, total);
    assert_true(batches >= total / LR_PROTO_INDEX_ENTRIES_MAX);
    print_message("200000 records -> %zu INDEX batches, largest payload %zu bytes\n", batches,
                  max_payload);
#undef FLUSH
    lr_proto_zc_free(zc);
    batch_free(b);
    lr_buf_release(&out);
}

/* A file whose chunk list exceeds any batch is split into segments that
 * each decode alone and chain with lr_proto_entry_continues. */
static void test_index_segments(void **state)
{
    (void)state;
    struct lr_file_rec small1, big, small2;
    rec_file(&small1, "a-first", 1, 2);
    rec_file(&big, "big.iso", 2, 100000); /* 3.6 MB of block list */
    rec_file(&small2, "z-last", 3, 1);
    struct lr_proto_index_batch *b = batch_new(0, 0);
    struct lr_buf out;
    lr_buf_init(&out, LR_PROTO_INDEX_MAX);
    struct lr_proto_entry *segs = lr_xcalloc(64, sizeof(*segs));
    size_t nseg = 0, nb = 0;
    const struct lr_file_rec *in[] = {&small1, &big, &small2};
    size_t batches = 0;
    struct lr_proto_index all[16];
    for (size_t i = 0; i < 3; i++) {
        nb = 0;
        int rc;
        while ((rc = lr_proto_index_batch_add(b, in[i], &nb)) == LR_PROTO_BATCH_FULL) {
            lr_buf_reset(&out);
            assert_int_equal(lr_proto_index_batch_finish(b, 0, &out), 0);
            assert_int_equal(lr_proto_index_decode(out.data, out.len, NULL, &all[batches], NULL),
                             0);
            batches++;
        }
        assert_int_equal(rc, 0);
    }
    lr_buf_reset(&out);
    assert_int_equal(lr_proto_index_batch_finish(b, LR_PROTO_INDEX_LAST, &out), 0);
    assert_int_equal(lr_proto_index_decode(out.data, out.len, NULL, &all[batches], NULL), 0);
    batches++;
    assert_true(batches >= 4);
    /* The small file shares the first batch with the big file's first
     * segment (which is last in that batch). */
    assert_int_equal(all[0].n, 2);
    assert_rec_equal(&small1, &all[0].v[0].rec);
    for (size_t k = 0; k < batches; k++) {
        for (size_t i = 0; i < all[k].n; i++) {
            struct lr_proto_entry *e = &all[k].v[i];
            if (strcmp((const char *)e->rec.path, "big.iso") == 0) {
                segs[nseg++] = *e;
                memset(e, 0, sizeof(*e));
            }
        }
    }
    assert_true(nseg >= 4);
    size_t got = 0;
    for (size_t s = 0; s < nseg; s++) {
        assert_int_equal(segs[s].blk_total, 100000);
        assert_int_equal(segs[s].blk_first, got);
        assert_int_equal(segs[s].whole, false);
        if (s > 0)
            assert_true(lr_proto_entry_continues(&segs[s - 1], &segs[s]));
        for (size_t i = 0; i < segs[s].rec.nchunks; i++) {
            assert_int_equal(segs[s].rec.chunks[i].off, big.chunks[got + i].off);
            assert_int_equal(segs[s].rec.chunks[i].len, big.chunks[got + i].len);
            assert_memory_equal(segs[s].rec.chunks[i].hash.b, big.chunks[got + i].hash.b, 32);
        }
        got += segs[s].rec.nchunks;
    }
    assert_int_equal(got, 100000);
    /* Not a continuation: reversed, or a different file. */
    assert_false(lr_proto_entry_continues(&segs[1], &segs[0]));
    assert_false(lr_proto_entry_continues(&segs[0], &segs[2]));
    assert_false(lr_proto_entry_continues(&all[0].v[0], &segs[1]));
    segs[1].rec.seq++;
    assert_false(lr_proto_entry_continues(&segs[0], &segs[1]));
    struct lr_proto_index *last = &all[batches - 1];
    assert_rec_equal(&small2, &last->v[last->n - 1].rec);

    for (size_t s = 0; s < nseg; s++)
        lr_proto_entry_release(&segs[s]);
    for (size_t k = 0; k < batches; k++)
        lr_proto_index_release(&all[k]);
    free(segs);
    batch_free(b);
    lr_buf_release(&out);
    lr_file_rec_release(&small1);
    lr_file_rec_release(&big);
    lr_file_rec_release(&small2);
}

/* ---- INDEX: hand-built hostile batches ------------------------------------------ */

/* Wire fields of one entry, defaulting to a valid 2-block file. */
struct raw_ent {
    const char *path;
    size_t path_len; /* 0: strlen */
    uint64_t type, flags, seq, size, mtime, mode;
    uint64_t nvv; /* vv pairs written: (i+1, i+1) unless vv_raw */
    const uint8_t *vv_raw;
    size_t vv_raw_len;
    const char *target;
    size_t target_len;
    uint64_t blk_total, blk_first, blk_off, nblk;
    uint32_t lens[4];
    const uint8_t *extra; /* bytes after the known fields */
    size_t extra_len;
};

static struct raw_ent raw_file(const char *path, uint64_t seq)
{
    struct raw_ent e;
    memset(&e, 0, sizeof(e));
    e.path = path;
    e.type = LR_FT_FILE;
    e.seq = seq;
    e.size = 300;
    e.mode = 0644;
    e.nvv = 1;
    e.blk_total = 2;
    e.nblk = 2;
    e.lens[0] = 100;
    e.lens[1] = 200;
    return e;
}

static void put_raw_ent(struct lr_buf *body, const struct raw_ent *e)
{
    struct lr_buf b;
    lr_buf_init(&b, 4 * MIB);
    size_t pl = e->path_len ? e->path_len : strlen(e->path);
    lr_buf_put_lbytes(&b, e->path, pl);
    lr_buf_put_varint(&b, e->type);
    lr_buf_put_varint(&b, e->flags);
    lr_buf_put_varint(&b, e->seq);
    lr_buf_put_varint(&b, e->size);
    lr_buf_put_u64(&b, e->mtime);
    lr_buf_put_varint(&b, e->mode);
    if (e->vv_raw) {
        lr_buf_put_varint(&b, e->nvv);
        lr_buf_put(&b, e->vv_raw, e->vv_raw_len);
    } else {
        lr_buf_put_varint(&b, e->nvv);
        for (uint64_t i = 0; i < e->nvv; i++) {
            lr_buf_put_u64(&b, i + 1);
            lr_buf_put_u64(&b, i + 1);
        }
    }
    lr_buf_put_lbytes(&b, e->target, e->target_len);
    lr_buf_put_varint(&b, e->blk_total);
    lr_buf_put_varint(&b, e->blk_first);
    lr_buf_put_varint(&b, e->blk_off);
    lr_buf_put_varint(&b, e->nblk);
    for (uint64_t i = 0; i < e->nblk && i < 4; i++) {
        struct lr_hash h;
        fill_hash(&h, i);
        lr_buf_put_u32(&b, e->lens[i]);
        lr_buf_put(&b, h.b, 32);
    }
    lr_buf_put(&b, e->extra, e->extra_len);
    assert_true(lr_buf_ok(&b));
    lr_buf_put_varint(body, b.len);
    lr_buf_put(body, b.data, b.len);
    lr_buf_release(&b);
}

/* INDEX header + uncompressed body. */
static void put_index(struct lr_buf *out, uint64_t flags, uint64_t count, const struct lr_buf *body)
{
    lr_buf_put_lbytes(out, "docs", 4);
    lr_buf_put_u64(out, 77);
    lr_buf_put_varint(out, flags);
    lr_buf_put_varint(out, count);
    lr_buf_put_varint(out, body->len);
    lr_buf_put_varint(out, LR_PROTO_COMP_NONE);
    lr_buf_put_lbytes(out, body->data, body->len);
    assert_true(lr_buf_ok(out));
}

/* Decode a batch of the given entries; expect rc; return the error text. */
static int index_expect(const struct raw_ent *ents, size_t n, int want)
{
    struct lr_buf body, msg;
    lr_buf_init(&body, 8 * MIB);
    lr_buf_init(&msg, 9 * MIB);
    for (size_t i = 0; i < n; i++)
        put_raw_ent(&body, &ents[i]);
    put_index(&msg, 0, n, &body);
    struct lr_err err;
    lr_err_clear(&err);
    int rc = index_dec(msg.data, msg.len, &err);
    if (rc != want)
        fail_msg("want %s, got %s (%s)", lr_errname(want), lr_errname(rc), err.msg);
    if (rc < 0)
        assert_fatal(rc, &err);
    lr_buf_release(&body);
    lr_buf_release(&msg);
    return rc;
}

static void expect1(struct raw_ent e, int want)
{
    index_expect(&e, 1, want);
}

static void test_index_entry_valid_baseline(void **state)
{
    (void)state;
    struct raw_ent e[2] = {raw_file("a", 1), raw_file("b", 2)};
    index_expect(e, 2, 0);
    /* Trailing fields of a newer version inside an entry are ignored. */
    e[0].extra = (const uint8_t *)"\x01\x02\x03";
    e[0].extra_len = 3;
    index_expect(e, 2, 0);
}

static void test_index_rule_path(void **state)
{
    (void)state;
    static const char *bad[] = {"../x", "/etc/x", "a//b", "./a", "a/", "a/../../x", ".."};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect1(raw_file(bad[i], 1), LR_EBADVAL);
    struct raw_ent e = raw_file("a\0b", 1);
    e.path_len = 3;
    expect1(e, LR_EBADVAL);
    e = raw_file("", 1);
    e.path_len = 0;
    expect1(e, LR_EBADVAL);
    char *longp = lr_xmalloc(LR_INDEX_PATH_MAX + 2);
    memset(longp, 'p', LR_INDEX_PATH_MAX + 1);
    longp[LR_INDEX_PATH_MAX + 1] = 0;
    expect1(raw_file(longp, 1), LR_ETOOBIG);
    longp[LR_INDEX_PATH_MAX] = 0;
    expect1(raw_file(longp, 1), 0);
    free(longp);
}

static void test_index_rule_flags_and_seq(void **state)
{
    (void)state;
    struct raw_ent e = raw_file("a", 1);
    e.flags = 4; /* unknown entry flag: an unnegotiated feature */
    expect1(e, LR_EBADVAL);
    e.flags = LR_PROTO_ENTRY_DELTA; /* a list where a delta should be: cut short */
    expect1(e, LR_ETRUNC);
    expect1(raw_file("a", 0), LR_EBADVAL); /* seq 0 */
    struct raw_ent two[2] = {raw_file("a", 5), raw_file("b", 5)};
    index_expect(two, 2, LR_EBADVAL); /* not increasing */
    two[1].seq = 4;
    index_expect(two, 2, LR_EBADVAL);
    two[1].seq = LR_VARINT_MAX;
    index_expect(two, 2, 0);
}

static void test_index_rule_mode(void **state)
{
    (void)state;
    struct raw_ent e = raw_file("a", 1);
    e.mode = 07777;
    expect1(e, 0);
    e.mode = 010000;
    expect1(e, LR_EBADVAL);
    e.mode = UINT32_MAX;
    expect1(e, LR_EBADVAL);
}

static void test_index_rule_vv(void **state)
{
    (void)state;
    struct raw_ent e = raw_file("a", 1);
    e.nvv = 0;
    expect1(e, LR_EBADVAL);
    e.nvv = LR_VV_MAX;
    expect1(e, 0);
    e.nvv = LR_VV_MAX + 1;
    expect1(e, LR_ETOOBIG);
    uint8_t vv[32] = {0};
    vv[7] = 5, vv[15] = 1, vv[23] = 5, vv[31] = 1; /* duplicate id 5 */
    e.nvv = 2;
    e.vv_raw = vv;
    e.vv_raw_len = 32;
    expect1(e, LR_EBADVAL);
    vv[23] = 4; /* unsorted */
    expect1(e, LR_EBADVAL);
    vv[23] = 6, vv[31] = 0; /* zero counter */
    expect1(e, LR_EBADVAL);
    vv[31] = 9;
    expect1(e, 0);
    e.nvv = UINT32_MAX; /* count with no bytes behind it */
    expect1(e, LR_ETOOBIG);
    e.nvv = 1000; /* 16 000 bytes declared, fewer left in the entry */
    expect1(e, LR_ETRUNC);
}

static void test_index_rule_target(void **state)
{
    (void)state;
    struct raw_ent e = raw_file("a", 1);
    e.target = "x";
    e.target_len = 1;
    expect1(e, LR_EBADVAL); /* target on a file */
    struct raw_ent l = raw_file("l", 1);
    l.type = LR_FT_SYMLINK;
    l.size = l.blk_total = l.nblk = 0;
    expect1(l, LR_EBADVAL); /* symlink without target */
    l.target = "t\0x";
    l.target_len = 3;
    expect1(l, LR_EBADVAL);
    char *t = lr_xcalloc(1, LR_INDEX_TARGET_MAX + 2);
    memset(t, 't', LR_INDEX_TARGET_MAX + 1);
    l.target = t;
    l.target_len = LR_INDEX_TARGET_MAX;
    expect1(l, 0);
    l.target_len = LR_INDEX_TARGET_MAX + 1;
    expect1(l, LR_ETOOBIG);
    l.flags = LR_PROTO_ENTRY_DELETED; /* deleted symlinks carry no target */
    l.target_len = 3;
    expect1(l, LR_EBADVAL);
    l.target_len = 0;
    expect1(l, 0);
    free(t);
}

static void test_index_rule_nonfile_blocks(void **state)
{
    (void)state;
    struct raw_ent e = raw_file("a", 1);
    e.flags = LR_PROTO_ENTRY_DELETED; /* deleted with chunks and a size */
    expect1(e, LR_EBADVAL);
    e.blk_total = e.nblk = 0;
    expect1(e, LR_EBADVAL); /* deleted with a size */
    e.size = 0;
    expect1(e, 0);
    struct raw_ent d = raw_file("d", 1);
    d.type = LR_FT_DIR;
    d.blk_total = d.nblk = 0;
    expect1(d, LR_EBADVAL); /* directory with a size */
    d.size = 0;
    expect1(d, 0);
    d.blk_first = 1; /* any block field on a directory */
    expect1(d, LR_EBADVAL);
}

static void test_index_rule_block_sum(void **state)
{
    (void)state;
    struct raw_ent e = raw_file("a", 1);
    e.size = 301;
    expect1(e, LR_EBADVAL);
    e.size = 299;
    expect1(e, LR_EBADVAL);
    e.size = 0; /* size 0 but blocks */
    expect1(e, LR_EBADVAL);
    e = raw_file("a", 1);
    e.blk_total = e.nblk = 0; /* size without blocks */
    expect1(e, LR_EBADVAL);
}

static void test_index_rule_block_len(void **state)
{
    (void)state;
    struct raw_ent e = raw_file("a", 1);
    e.lens[0] = 0;
    e.size = 200;
    expect1(e, LR_EBADVAL);
    e = raw_file("a", 1);
    e.lens[0] = 256 * 1024 + 1;
    e.size = e.lens[0] + 200;
    expect1(e, LR_EBADVAL);
    e.lens[0] = 256 * 1024;
    e.size = e.lens[0] + 200;
    expect1(e, 0);
    e.lens[0] = UINT32_MAX;
    e.size = (uint64_t)UINT32_MAX + 200;
    expect1(e, LR_EBADVAL);
}

static void test_index_rule_block_counts(void **state)
{
    (void)state;
    struct raw_ent e = raw_file("a", 1);
    e.blk_total = 301; /* more blocks than bytes */
    expect1(e, LR_EBADVAL);
    e.blk_total = LR_INDEX_CHUNKS_MAX + 1;
    e.size = LR_VARINT_MAX;
    expect1(e, LR_ETOOBIG);
    e = raw_file("a", 1);
    e.size = 2 * 256 * 1024 + 1; /* 2 blocks cannot hold it */
    expect1(e, LR_EBADVAL);
    e = raw_file("a", 1);
    e.nblk = UINT32_MAX; /* hostile count, nothing behind it */
    expect1(e, LR_ETRUNC);
    e.nblk = LR_VARINT_MAX;
    expect1(e, LR_ETRUNC);
    e = raw_file("a", 1);
    e.nblk = 3; /* past the total */
    expect1(e, LR_EBADVAL);
    e = raw_file("a", 1);
    e.blk_off = 5; /* offset for block 0 */
    expect1(e, LR_EBADVAL);
    e = raw_file("a", 1);
    e.nblk = 0; /* empty segment */
    expect1(e, LR_EBADVAL);
}

static void test_index_rule_segments(void **state)
{
    (void)state;
    /* First segment: blocks 0..0 of 2 (size 300); must be last in batch. */
    struct raw_ent head = raw_file("big", 1);
    head.nblk = 1;
    expect1(head, 0);
    struct raw_ent two[2] = {head, raw_file("z", 2)};
    index_expect(two, 2, LR_EBADVAL);
    /* Continuation: block 1 of 2 at offset 100; must be first in batch. */
    struct raw_ent cont = raw_file("big", 1);
    cont.blk_first = 1;
    cont.blk_off = 100;
    cont.nblk = 1;
    cont.lens[0] = 200;
    expect1(cont, 0);
    two[0] = raw_file("a", 1);
    two[1] = cont;
    two[1].seq = 2;
    index_expect(two, 2, LR_EBADVAL);
    /* Continuation that does not end at size. */
    cont.lens[0] = 199;
    expect1(cont, LR_EBADVAL);
    cont.lens[0] = 200;
    cont.blk_off = 0; /* impossible offset for block 1 */
    expect1(cont, LR_EBADVAL);
    cont.blk_off = 300;
    expect1(cont, LR_EBADVAL);
    cont.blk_off = 100;
    cont.blk_first = 3;
    expect1(cont, LR_EBADVAL);
}

static void test_index_unknown_type(void **state)
{
    (void)state;
    /* A newer version's entry type: kept, flagged, never a decode error, and
     * its size/target/blocks (meaning unknown) are not passed on. */
    struct raw_ent e[2] = {raw_file("a", 1), raw_file("new-thing", 2)};
    e[1].type = 9;
    e[1].target = "whatever";
    e[1].target_len = 8;
    e[1].size = 12345;
    struct lr_buf body, msg;
    lr_buf_init(&body, MIB);
    lr_buf_init(&msg, 2 * MIB);
    put_raw_ent(&body, &e[0]);
    put_raw_ent(&body, &e[1]);
    put_index(&msg, 0, 2, &body);
    struct lr_proto_index ix;
    assert_int_equal(lr_proto_index_decode(msg.data, msg.len, NULL, &ix, NULL), 0);
    assert_int_equal(ix.n, 2);
    assert_false(ix.v[0].unknown_type);
    assert_true(ix.v[1].unknown_type);
    assert_int_equal(ix.v[1].wire_type, 9);
    assert_int_equal(ix.v[1].rec.type, LR_PROTO_FT_UNKNOWN);
    assert_string_equal((const char *)ix.v[1].rec.path, "new-thing");
    assert_int_equal(ix.v[1].rec.seq, 2);
    assert_int_equal(ix.v[1].rec.size, 0);
    assert_int_equal(ix.v[1].rec.nchunks, 0);
    assert_null(ix.v[1].rec.target);
    assert_int_equal(ix.v[1].rec.vv.n, 1);
    /* Never a continuation of anything. */
    assert_false(lr_proto_entry_continues(&ix.v[0], &ix.v[1]));
    lr_proto_index_release(&ix);
    /* Still bounded: a bad path or flag in an unknown entry is fatal. */
    e[1].flags = 4;
    index_expect(e, 2, LR_EBADVAL);
    e[1].flags = 0;
    e[1].path = "../x";
    index_expect(e, 2, LR_EBADVAL);
    lr_buf_release(&body);
    lr_buf_release(&msg);
}

static void test_index_duplicate_path(void **state)
{
    (void)state;
    struct raw_ent e[3] = {raw_file("a", 1), raw_file("b", 2), raw_file("a", 3)};
    index_expect(e, 3, LR_EBADVAL);
    e[2].type = LR_FT_DIR; /* one path, two types */
    e[2].size = e[2].blk_total = e[2].nblk = 0;
    index_expect(e, 3, LR_EBADVAL);
    e[2].path = "a/b";
    index_expect(e, 3, 0);
}

/* Header rules, with an otherwise valid 1-entry body. */
static void hdr_expect(const char *folder, uint64_t index_id, uint64_t flags, uint64_t count,
                       uint64_t raw_len, uint64_t comp, const uint8_t *body, size_t body_len,
                       int want)
{
    struct lr_buf m;
    lr_buf_init(&m, 10 * MIB);
    lr_buf_put_lbytes(&m, folder, strlen(folder));
    lr_buf_put_u64(&m, index_id);
    lr_buf_put_varint(&m, flags);
    lr_buf_put_varint(&m, count);
    lr_buf_put_varint(&m, raw_len);
    lr_buf_put_varint(&m, comp);
    lr_buf_put_lbytes(&m, body, body_len);
    struct lr_err err;
    lr_err_clear(&err);
    int rc = index_dec(m.data, m.len, &err);
    if (rc != want)
        fail_msg("want %s, got %s (%s)", lr_errname(want), lr_errname(rc), err.msg);
    if (rc < 0)
        assert_fatal(rc, &err);
    lr_buf_release(&m);
}

static void test_index_header_rules(void **state)
{
    (void)state;
    struct lr_buf body;
    lr_buf_init(&body, MIB);
    struct raw_ent e = raw_file("a", 1);
    put_raw_ent(&body, &e);
    const uint8_t *p = body.data;
    size_t n = body.len;
    hdr_expect("docs", 1, 3, 1, n, 0, p, n, 0);
    hdr_expect("a/b", 1, 0, 1, n, 0, p, n, LR_EBADVAL);
    hdr_expect("docs", 0, 0, 1, n, 0, p, n, LR_EBADVAL);
    hdr_expect("docs", 1, 8, 1, n, 0, p, n, LR_EBADVAL); /* unknown batch flag */
    hdr_expect("docs", 1, LR_PROTO_INDEX_FIRST | LR_PROTO_INDEX_RECON, 1, n, 0, p, n,
               LR_EBADVAL); /* a burst starts one way */
    hdr_expect("docs", 1, 0, 10001, n, 0, p, n, LR_ETOOBIG);
    hdr_expect("docs", 1, 0, LR_VARINT_MAX, n, 0, p, n, LR_ETOOBIG);
    hdr_expect("docs", 1, 0, 1000, n, 0, p, n, LR_EBADVAL); /* count cannot fit */
    /* The smallest entry (38 bytes: 1-byte path, directory, one vv pair)
     * passes the count check exactly; one byte less does not. */
    struct raw_ent d = raw_file("d", 1);
    d.type = LR_FT_DIR;
    d.size = d.blk_total = d.nblk = 0;
    d.mode = 0; /* a one-byte varint */
    struct lr_buf mb;
    lr_buf_init(&mb, 256);
    put_raw_ent(&mb, &d);
    assert_int_equal(mb.len, 38);
    hdr_expect("docs", 1, 0, 1, 38, 0, mb.data, mb.len, 0);
    hdr_expect("docs", 1, 0, 1, 37, 0, mb.data, 37, LR_EBADVAL);
    lr_buf_release(&mb);
    hdr_expect("docs", 1, 0, 2, n, 0, p, n, LR_ETRUNC);      /* one entry missing */
    hdr_expect("docs", 1, 0, 0, n, 0, p, n, LR_EBADVAL);     /* bytes after the last entry */
    hdr_expect("docs", 1, 0, 1, n, 2, p, n, LR_EBADVAL);     /* unknown compression */
    hdr_expect("docs", 1, 0, 1, n + 1, 0, p, n, LR_EBADVAL); /* raw_len != body */
    hdr_expect("docs", 1, 0, 1, n, 1, p, n, LR_EBADVAL);     /* "compressed" not smaller */
    hdr_expect("docs", 1, 0, 1, UINT64_C(1) << 62 >> 1, 1, p, n, LR_ETOOBIG);
    hdr_expect("docs", 1, 0, 1, LR_PROTO_INDEX_RAW_MAX + 1, 1, p, n, LR_ETOOBIG);
    lr_buf_release(&body);
}

/* zstd frame with a chosen declared content size and one raw block of
 * `blk` bytes (4 + 1 + 8 + 3 + blk bytes). */
static size_t forge_zstd(uint8_t *out, uint64_t fcs, size_t blk)
{
    static const uint8_t magic[4] = {0x28, 0xb5, 0x2f, 0xfd};
    memcpy(out, magic, 4);
    out[4] = 0xe0; /* FCS field 8 bytes, single segment */
    for (int i = 0; i < 8; i++)
        out[5 + i] = (uint8_t)(fcs >> (8 * i));
    uint32_t bh = (uint32_t)(blk << 3) | 1; /* last block, raw */
    out[13] = (uint8_t)bh;
    out[14] = (uint8_t)(bh >> 8);
    out[15] = (uint8_t)(bh >> 16);
    memset(out + 16, 'z', blk);
    return 16 + blk;
}

static void test_index_zstd_hostile(void **state)
{
    (void)state;
    struct lr_buf body;
    lr_buf_init(&body, MIB);
    struct raw_ent ents[40];
    for (size_t i = 0; i < 40; i++) {
        char *pth = lr_xasprintf("same/prefix/for/compression/%02zu", i);
        ents[i] = raw_file(pth, i + 1);
        put_raw_ent(&body, &ents[i]);
    }
    size_t cap = ZSTD_compressBound(body.len);
    uint8_t *z = lr_xmalloc(cap + 64);
    size_t zl = ZSTD_compress(z, cap, body.data, body.len, 3);
    assert_false(ZSTD_isError(zl));
    assert_true(zl < body.len);
    hdr_expect("docs", 1, 0, 40, body.len, 1, z, zl, 0);
    /* Declared raw_len disagrees with the frame. */
    hdr_expect("docs", 1, 0, 40, body.len + 1, 1, z, zl, LR_EBADVAL);
    /* Two frames; trailing garbage after the frame. */
    memcpy(z + zl, z, 8);
    hdr_expect("docs", 1, 0, 40, body.len, 1, z, zl + 8, LR_EBADVAL);
    /* A frame cut short by one byte. */
    hdr_expect("docs", 1, 0, 40, body.len, 1, z, zl - 1, LR_EBADVAL);
    /* A 40-byte frame declaring 2^63 bytes: refused from the header, with
     * raw_len both at the cap and at 2^63. */
    uint8_t f[64];
    size_t fl = forge_zstd(f, UINT64_C(1) << 63, 24);
    assert_int_equal(fl, 40);
    hdr_expect("docs", 1, 0, 1, LR_PROTO_INDEX_RAW_MAX, 1, f, fl, LR_EBADVAL);
    hdr_expect("docs", 1, 0, 1, (UINT64_C(1) << 62) - 1, 1, f, fl, LR_ETOOBIG);
    /* A frame with no content size. */
    size_t nl = ZSTD_compress(z, cap, body.data, body.len, 1);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    nl = ZSTD_compress2(cc, z, cap, body.data, body.len);
    ZSTD_freeCCtx(cc);
    assert_false(ZSTD_isError(nl));
    assert_true(ZSTD_getFrameContentSize(z, nl) == ZSTD_CONTENTSIZE_UNKNOWN);
    hdr_expect("docs", 1, 0, 40, body.len, 1, z, nl, LR_EBADVAL);
    /* A raw block that claims more than the declared size. */
    fl = forge_zstd(f, 20, 24);
    hdr_expect("docs", 1, 0, 0, 48, 1, f, fl, LR_EBADVAL);
    /* A skippable frame (content size 0). */
    static const uint8_t skip[12] = {0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4};
    hdr_expect("docs", 1, 0, 0, 100, 1, skip, sizeof(skip), LR_EBADVAL);
    for (size_t i = 0; i < 40; i++)
        free((char *)ents[i].path);
    free(z);
    lr_buf_release(&body);
}

/* ---- cross-batch checks ----------------------------------------------------------- */

static void test_index_full_needed(void **state)
{
    (void)state;
    assert_true(lr_proto_index_full_needed(5, 100, 0, 0));    /* peer holds nothing */
    assert_true(lr_proto_index_full_needed(5, 100, 6, 40));   /* another index */
    assert_true(lr_proto_index_full_needed(5, 100, 5, 101));  /* beyond what we issued */
    assert_false(lr_proto_index_full_needed(5, 100, 5, 100)); /* up to date */
    assert_false(lr_proto_index_full_needed(5, 100, 5, 0));   /* same index, nothing yet */
    assert_false(lr_proto_index_full_needed(5, 100, 5, 40));
}

/* Encode records into batches (splitting as the builder decides); flags of
 * the first and last batch given; returns the number of batches. */
static size_t make_batches(const struct lr_file_rec *const *recs, size_t n, uint64_t first_flags,
                           uint64_t last_flags, struct lr_proto_index *out, size_t max)
{
    struct lr_proto_index_batch *b = batch_new(0, 0);
    struct lr_buf buf;
    lr_buf_init(&buf, LR_PROTO_INDEX_MAX);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t nb = 0;
        int rc;
        while ((rc = lr_proto_index_batch_add(b, recs[i], &nb)) == LR_PROTO_BATCH_FULL) {
            lr_buf_reset(&buf);
            assert_int_equal(lr_proto_index_batch_finish(b, k == 0 ? first_flags : 0, &buf), 0);
            assert_true(k < max);
            assert_int_equal(lr_proto_index_decode(buf.data, buf.len, NULL, &out[k++], NULL), 0);
        }
        assert_int_equal(rc, 0);
    }
    lr_buf_reset(&buf);
    assert_int_equal(lr_proto_index_batch_finish(b, (k == 0 ? first_flags : 0) | last_flags, &buf),
                     0);
    assert_true(k < max);
    assert_int_equal(lr_proto_index_decode(buf.data, buf.len, NULL, &out[k++], NULL), 0);
    lr_buf_release(&buf);
    batch_free(b);
    return k;
}

#define IX_ID 0xfeedface12345678

static void test_burst_sequences(void **state)
{
    (void)state;
    struct lr_file_rec r[4];
    rec_file(&r[0], "a", 1, 1);
    rec_file(&r[1], "b", 2, 1);
    rec_file(&r[2], "c", 3, 1);
    rec_file(&r[3], "d", 4, 1);
    const struct lr_file_rec *p01[] = {&r[0], &r[1]}, *p23[] = {&r[2], &r[3]};
    const struct lr_file_rec *p1[] = {&r[1]};
    struct lr_proto_index full, upd, old, again, recon;
    assert_int_equal(make_batches(p01, 2, LR_PROTO_INDEX_FIRST, LR_PROTO_INDEX_LAST, &full, 1), 1);
    assert_int_equal(make_batches(p1, 1, LR_PROTO_INDEX_RECON, 0, &recon, 1), 1);
    assert_int_equal(make_batches(p23, 2, 0, LR_PROTO_INDEX_LAST, &upd, 1), 1);
    assert_int_equal(make_batches(p1, 1, 0, LR_PROTO_INDEX_LAST, &old, 1), 1);
    assert_int_equal(make_batches(p1, 1, LR_PROTO_INDEX_FIRST, 0, &again, 1), 1);

    struct lr_proto_burst b;
    struct lr_err err;
    lr_proto_burst_init(&b);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &full, &err), 0);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &upd, &err), 0);
    assert_int_equal(b.last_seq, 4);
    /* seq 2 after 4 without FIRST: refused. */
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &old, &err), LR_EPROTO);
    /* A FIRST restarts the count, and so does a RECON (§6.11). */
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &again, &err), 0);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &upd, &err), 0);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &recon, &err), 0);
    assert_int_equal(b.last_seq, 2);
    /* Index ID other than FOLDERS announced. */
    assert_int_equal(lr_proto_burst_check(&b, IX_ID + 1, &upd, &err), LR_EPROTO);
    assert_non_null(strstr(err.msg, "FOLDERS"));
    lr_proto_burst_release(&b);
    lr_proto_index_release(&full);
    lr_proto_index_release(&upd);
    lr_proto_index_release(&old);
    lr_proto_index_release(&again);
    lr_proto_index_release(&recon);
    for (size_t i = 0; i < 4; i++)
        lr_file_rec_release(&r[i]);
}

static void test_burst_segments(void **state)
{
    (void)state;
    struct lr_file_rec small, big, after;
    rec_file(&small, "a", 1, 1);
    rec_file(&big, "big", 2, 70000); /* about 2.4 MB of blocks: 3 batches or more */
    rec_file(&after, "c", 3, 1);
    const struct lr_file_rec *recs[] = {&small, &big, &after};
    struct lr_proto_index v[16];
    size_t n = make_batches(recs, 3, LR_PROTO_INDEX_FIRST, LR_PROTO_INDEX_LAST, v, 16);
    assert_true(n >= 3);
    struct lr_proto_burst b;
    struct lr_err err;

    /* In order: accepted. */
    lr_proto_burst_init(&b);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[k], &err), 0);
    assert_false(b.seg_open);
    assert_int_equal(b.last_seq, 3);
    /* A batch missing in the middle: the next one does not continue. */
    lr_proto_burst_reset(&b);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[0], &err), 0);
    assert_true(b.seg_open);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[2], &err), LR_EPROTO);
    /* The first batch missing: a continuation of nothing. */
    lr_proto_burst_reset(&b);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[1], &err), LR_EPROTO);
    /* An empty batch, or a batch of something else, while a list is open. */
    struct lr_proto_index empty, other;
    const struct lr_file_rec *pa[] = {&after};
    assert_int_equal(make_batches(NULL, 0, 0, 0, &empty, 1), 1);
    assert_int_equal(make_batches(pa, 1, 0, 0, &other, 1), 1);
    lr_proto_burst_reset(&b);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[0], &err), 0);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &empty, &err), LR_EPROTO);
    lr_proto_burst_reset(&b);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[0], &err), 0);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &other, &err), LR_EPROTO);
    /* FIRST while open. */
    lr_proto_burst_reset(&b);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[0], &err), 0);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[0], &err), LR_EPROTO);
    /* LAST while open: the sender ended the burst in the middle of a file. */
    lr_proto_burst_reset(&b);
    v[0].hdr.flags |= LR_PROTO_INDEX_LAST;
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[0], &err), LR_EPROTO);
    v[0].hdr.flags &= ~(uint64_t)LR_PROTO_INDEX_LAST;
    /* A continuation whose metadata differs from the first piece's. */
    lr_proto_burst_reset(&b);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[0], &err), 0);
    v[1].v[0].rec.mtime_ns++;
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[1], &err), LR_EPROTO);
    v[1].v[0].rec.mtime_ns--;
    lr_proto_burst_reset(&b);
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[0], &err), 0);
    v[1].v[0].rec.chunks[0].off++;
    assert_int_equal(lr_proto_burst_check(&b, IX_ID, &v[1], &err), LR_EPROTO);

    lr_proto_burst_release(&b);
    lr_proto_index_release(&empty);
    lr_proto_index_release(&other);
    for (size_t k = 0; k < n; k++)
        lr_proto_index_release(&v[k]);
    lr_file_rec_release(&small);
    lr_file_rec_release(&big);
    lr_file_rec_release(&after);
}

/* ---- WANT ------------------------------------------------------------------------ */

static void want_init(struct lr_proto_want *w)
{
    memset(w, 0, sizeof(*w));
    w->req_id = 12345;
    snprintf(w->folder_id, sizeof(w->folder_id), "photos");
    w->path = (const uint8_t *)"2024/img 001.jpg";
    w->path_len = strlen((const char *)w->path);
    fill_hash(&w->blocks_hash, 1);
    w->offset = 3 * 65536;
    w->size = 65536;
    fill_hash(&w->hash, 2);
}

static int want_dec(const uint8_t *p, size_t n, struct lr_err *err)
{
    struct lr_proto_want w;
    return lr_proto_want_decode(p, n, &w, err);
}

static void test_want_roundtrip(void **state)
{
    (void)state;
    struct lr_proto_want w, d;
    want_init(&w);
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_WANT_MAX);
    assert_int_equal(lr_proto_want_encode(&w, &b), 0);
    assert_int_equal(lr_proto_want_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(d.req_id, w.req_id);
    assert_string_equal(d.folder_id, w.folder_id);
    assert_int_equal(d.path_len, w.path_len);
    assert_memory_equal(d.path, w.path, w.path_len);
    assert_true(d.path >= b.data && d.path < b.data + b.len); /* borrowed */
    assert_memory_equal(&d.blocks_hash, &w.blocks_hash, 32);
    assert_memory_equal(&d.hash, &w.hash, 32);
    assert_int_equal(d.offset, w.offset);
    assert_int_equal(d.size, w.size);
    all_truncations(b.data, b.len, want_dec);
    /* Extremes: size 256 KiB, offset just below 2^62, longest path. */
    w.size = LR_PROTO_CHUNK_DATA_MAX;
    w.offset = LR_VARINT_MAX - w.size;
    uint8_t *lp = lr_xmalloc(LR_INDEX_PATH_MAX);
    memset(lp, 'q', LR_INDEX_PATH_MAX);
    w.path = lp;
    w.path_len = LR_INDEX_PATH_MAX;
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_want_encode(&w, &b), 0);
    assert_true(b.len <= LR_PROTO_WANT_MAX);
    assert_int_equal(lr_proto_want_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(d.offset, w.offset);
    free(lp);
    lr_buf_release(&b);
}

static void test_want_encoder_rules(void **state)
{
    (void)state;
    struct lr_proto_want w;
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_WANT_MAX);
    want_init(&w);
    w.size = 0;
    assert_int_equal(lr_proto_want_encode(&w, &b), LR_EBADVAL);
    want_init(&w);
    w.size = LR_PROTO_CHUNK_DATA_MAX + 1;
    assert_int_equal(lr_proto_want_encode(&w, &b), LR_EBADVAL);
    want_init(&w);
    w.offset = LR_VARINT_MAX;
    assert_int_equal(lr_proto_want_encode(&w, &b), LR_EBADVAL);
    want_init(&w);
    w.path = (const uint8_t *)"../etc/passwd";
    w.path_len = 13;
    assert_int_equal(lr_proto_want_encode(&w, &b), LR_EBADVAL);
    want_init(&w);
    w.folder_id[0] = '\0';
    assert_int_equal(lr_proto_want_encode(&w, &b), LR_EBADVAL);
    assert_int_equal(b.len, 0);
    lr_buf_release(&b);
}

/* Hand-built WANT with chosen hash lengths, offset and size. */
static int want_forge(const char *path, size_t bh_len, uint64_t offset, uint64_t size, size_t h_len)
{
    uint8_t h[40] = {0};
    struct lr_buf b;
    lr_buf_init(&b, MIB);
    lr_buf_put_varint(&b, 1);
    lr_buf_put_lbytes(&b, "photos", 6);
    lr_buf_put_lbytes(&b, path, strlen(path));
    lr_buf_put_lbytes(&b, h, bh_len);
    lr_buf_put_varint(&b, offset);
    lr_buf_put_varint(&b, size);
    lr_buf_put_lbytes(&b, h, h_len);
    lr_buf_put(&b, h, sizeof(h)); /* trailing bytes: ignored when valid */
    struct lr_err err;
    lr_err_clear(&err);
    int rc = want_dec(b.data, b.len, &err);
    if (rc < 0)
        assert_fatal(rc, &err);
    lr_buf_release(&b);
    return rc;
}

static void test_want_hostile(void **state)
{
    (void)state;
    assert_int_equal(want_forge("f", 32, 0, 1, 32), 0);
    assert_int_equal(want_forge("f", 31, 0, 1, 32), LR_EBADVAL);
    assert_int_equal(want_forge("f", 33, 0, 1, 32), LR_EBADVAL);
    assert_int_equal(want_forge("f", 32, 0, 1, 31), LR_EBADVAL);
    assert_int_equal(want_forge("f", 32, 0, 1, 33), LR_EBADVAL);
    assert_int_equal(want_forge("f", 0, 0, 1, 32), LR_EBADVAL);
    assert_int_equal(want_forge("f", 32, 0, 0, 32), LR_EBADVAL);
    assert_int_equal(want_forge("f", 32, 0, LR_PROTO_CHUNK_DATA_MAX + 1, 32), LR_EBADVAL);
    assert_int_equal(want_forge("f", 32, 0, UINT32_MAX, 32), LR_EBADVAL);
    assert_int_equal(want_forge("f", 32, 0, LR_VARINT_MAX, 32), LR_EBADVAL);
    assert_int_equal(want_forge("f", 32, LR_VARINT_MAX, 1, 32), LR_EBADVAL);
    assert_int_equal(want_forge("f", 32, LR_VARINT_MAX - 1, 1, 32), 0);
    assert_int_equal(want_forge("../x", 32, 0, 1, 32), LR_EBADVAL);
    assert_int_equal(want_forge("/etc/shadow", 32, 0, 1, 32), LR_EBADVAL);
    assert_int_equal(want_forge("", 32, 0, 1, 32), LR_EBADVAL);
    /* Path length 2^62-1 and 2^32-1: refused before reading. */
    static const uint64_t lens[] = {LR_VARINT_MAX, UINT32_MAX, LR_INDEX_PATH_MAX + 1};
    for (size_t i = 0; i < 3; i++) {
        struct lr_buf b;
        lr_buf_init(&b, 64);
        lr_buf_put_varint(&b, 1);
        lr_buf_put_lbytes(&b, "photos", 6);
        lr_buf_put_varint(&b, lens[i]);
        struct lr_err err;
        assert_int_equal(want_dec(b.data, b.len, &err), LR_ETOOBIG);
        lr_buf_release(&b);
    }
}

/* ---- CHUNK ------------------------------------------------------------------------ */

static int chunk_dec(const uint8_t *p, size_t n, struct lr_err *err)
{
    struct lr_proto_chunk c;
    return lr_proto_chunk_decode(p, n, &c, err);
}

static int pulled_dec(const uint8_t *p, size_t n, struct lr_err *err)
{
    struct lr_proto_pulled m;
    return lr_proto_pulled_decode(p, n, &m, err);
}

static void test_pulled(void **state)
{
    (void)state;
    struct lr_proto_pulled m = {.peer_index_id = 0x8000000000000001u,
                                .peer_seq = LR_VARINT_MAX,
                                .need = 0},
                           d;
    memset(m.folder_id, 'f', LR_PROTO_FOLDER_ID_MAX); /* the longest folder ID */
    m.folder_id[LR_PROTO_FOLDER_ID_MAX] = 0;
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_PULLED_MAX);
    assert_int_equal(lr_proto_pulled_encode(&m, &b), 0);
    assert_true(b.len <= LR_PROTO_PULLED_MAX);
    assert_int_equal(lr_proto_pulled_decode(b.data, b.len, &d, NULL), 0);
    assert_string_equal(d.folder_id, m.folder_id);
    assert_int_equal(d.peer_index_id, m.peer_index_id);
    assert_int_equal(d.peer_seq, m.peer_seq);
    assert_int_equal(d.need, 0);
    all_truncations(b.data, b.len, pulled_dec);
    /* Trailing bytes are a newer version's fields: skipped (§5). */
    assert_int_equal(lr_buf_put_varint(&b, 7), 0);
    assert_int_equal(lr_proto_pulled_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(d.peer_seq, m.peer_seq);
    /* The encoder refuses what the decoder would. */
    lr_buf_reset(&b);
    snprintf(m.folder_id, sizeof(m.folder_id), "docs");
    m.need = 3;
    m.peer_index_id = 0;
    assert_int_equal(lr_proto_pulled_encode(&m, &b), LR_EBADVAL);
    m.peer_index_id = 9;
    m.need = LR_VARINT_MAX + 1;
    assert_int_equal(lr_proto_pulled_encode(&m, &b), LR_EBADVAL);
    m.need = 3;
    snprintf(m.folder_id, sizeof(m.folder_id), "a/b");
    assert_int_equal(lr_proto_pulled_encode(&m, &b), LR_EBADVAL);
    snprintf(m.folder_id, sizeof(m.folder_id), "docs");
    assert_int_equal(lr_proto_pulled_encode(&m, &b), 0);
    assert_int_equal(lr_proto_pulled_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(d.need, 3);
    /* Hostile: index ID 0, a folder ID with a slash. */
    static const uint8_t zero_id[] = {1, 'x', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    struct lr_err err;
    lr_err_clear(&err);
    assert_int_equal(lr_proto_pulled_decode(zero_id, sizeof(zero_id), &d, &err), LR_EBADVAL);
    assert_fatal(LR_EBADVAL, &err);
    static const uint8_t slash[] = {3, 'a', '/', 'b', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
    lr_err_clear(&err);
    int rc = lr_proto_pulled_decode(slash, sizeof(slash), &d, &err);
    assert_true(rc < 0);
    assert_fatal(rc, &err);
    lr_buf_release(&b);
}

/* ---- SEQ_ASK and SEQS ---------------------------------------------------------- */

static int seq_ask_dec(const uint8_t *p, size_t n, struct lr_err *err)
{
    uint64_t req;
    return lr_proto_seq_ask_decode(p, n, &req, err);
}

static int seqs_dec(const uint8_t *p, size_t n, struct lr_err *err)
{
    struct lr_proto_seqs s;
    int rc = lr_proto_seqs_decode(p, n, &s, err);
    lr_proto_seqs_release(&s);
    return rc;
}

static void test_seq_ask(void **state)
{
    (void)state;
    static const uint64_t reqs[] = {0, 1, 63, 64, 16383, 16384, LR_VARINT_MAX};
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_SEQ_ASK_MAX);
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        uint64_t got = 99;
        lr_buf_reset(&b);
        assert_int_equal(lr_proto_seq_ask_encode(reqs[i], &b), 0);
        assert_int_equal(lr_proto_seq_ask_decode(b.data, b.len, &got, NULL), 0);
        assert_int_equal(got, reqs[i]);
        all_truncations(b.data, b.len, seq_ask_dec);
    }
    /* Trailing bytes are a newer version's fields: skipped (§5). */
    uint64_t got = 0;
    assert_int_equal(lr_buf_put_varint(&b, 5), 0);
    assert_int_equal(lr_proto_seq_ask_decode(b.data, b.len, &got, NULL), 0);
    assert_int_equal(got, LR_VARINT_MAX);
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_seq_ask_encode(LR_VARINT_MAX + 1, &b), LR_EBADVAL);
    assert_int_equal(lr_proto_seq_ask_encode(UINT64_MAX, &b), LR_EBADVAL);
    assert_int_equal(b.len, 0);
    lr_buf_release(&b);
}

static void seq_set(struct lr_proto_seq *e, const char *id, uint64_t index_id, uint64_t max_seq)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->folder_id, sizeof(e->folder_id), "%s", id);
    e->index_id = index_id;
    e->max_seq = max_seq;
}

static void seqs_roundtrip(uint64_t req, const struct lr_proto_seq *v, size_t n)
{
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_SEQS_MAX);
    assert_int_equal(lr_proto_seqs_encode(req, v, n, &b), 0);
    assert_true(b.len <= LR_PROTO_SEQS_MAX);
    struct lr_proto_seqs d;
    assert_int_equal(lr_proto_seqs_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(d.req, req);
    assert_int_equal(d.n, n);
    assert_true(n ? d.v != NULL : d.v == NULL);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(d.v[i].folder_id, v[i].folder_id);
        assert_int_equal(d.v[i].index_id, v[i].index_id);
        assert_int_equal(d.v[i].max_seq, v[i].max_seq);
    }
    lr_proto_seqs_release(&d);
    assert_null(d.v);
    assert_int_equal(d.n, 0);
    assert_int_equal(d.req, 0);
    if (b.len < 2000)
        all_truncations(b.data, b.len, seqs_dec);
    /* Trailing bytes are a newer version's fields: skipped (§5). */
    assert_int_equal(lr_buf_put_varint(&b, 77), 0);
    assert_int_equal(lr_buf_put_u64(&b, 0), 0);
    assert_int_equal(lr_proto_seqs_decode(b.data, b.len, &d, NULL), 0);
    assert_int_equal(d.req, req);
    assert_int_equal(d.n, n);
    lr_proto_seqs_release(&d);
    lr_buf_release(&b);
}

static void test_seqs_roundtrip(void **state)
{
    (void)state;
    struct lr_proto_seq v[4];
    seqs_roundtrip(0, NULL, 0);
    seqs_roundtrip(LR_VARINT_MAX, NULL, 0);
    seq_set(&v[0], "docs", 1, 0);
    seqs_roundtrip(7, v, 1);
    /* Byte order, not locale: a prefix first, then by unsigned byte
     * ("Z" < "a" < "ab" < "\xc3\xa9"). */
    seq_set(&v[0], "Z", UINT64_MAX, LR_VARINT_MAX);
    seq_set(&v[1], "a", 0x8000000000000001u, 1);
    seq_set(&v[2], "ab", 2, 16384);
    seq_set(&v[3], "\xc3\xa9t\xc3\xa9", 3, 63);
    seqs_roundtrip(16384, v, 4);
    /* The longest folder ID. */
    memset(v[0].folder_id, 'f', LR_PROTO_FOLDER_ID_MAX);
    v[0].folder_id[LR_PROTO_FOLDER_ID_MAX] = 0;
    seqs_roundtrip(1, v, 1);
    /* The most entries, with short IDs. */
    struct lr_proto_seq *big = lr_xcalloc(LR_PROTO_SEQS_ENTRIES_MAX, sizeof(big[0]));
    for (size_t i = 0; i < LR_PROTO_SEQS_ENTRIES_MAX; i++) {
        char id[16];
        snprintf(id, sizeof(id), "f%05zu", i);
        seq_set(&big[i], id, i + 1, i * 1000);
    }
    seqs_roundtrip(3, big, LR_PROTO_SEQS_ENTRIES_MAX);
    free(big);
}

static void test_seqs_encoder_rules(void **state)
{
    (void)state;
    struct lr_proto_seq v[3];
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_SEQS_MAX);
    seq_set(&v[0], "a", 1, 1);
    seq_set(&v[1], "b", 2, 2);
    seq_set(&v[2], "c", 3, 3);
    assert_int_equal(lr_proto_seqs_encode(1, v, 3, &b), 0);
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_seqs_encode(LR_VARINT_MAX + 1, v, 3, &b), LR_EBADVAL);
    v[1].index_id = 0;
    assert_int_equal(lr_proto_seqs_encode(1, v, 3, &b), LR_EBADVAL);
    v[1].index_id = 2;
    v[1].max_seq = LR_VARINT_MAX + 1;
    assert_int_equal(lr_proto_seqs_encode(1, v, 3, &b), LR_EBADVAL);
    v[1].max_seq = 2;
    seq_set(&v[2], "a", 3, 3); /* out of order */
    assert_int_equal(lr_proto_seqs_encode(1, v, 3, &b), LR_EBADVAL);
    seq_set(&v[2], "b", 3, 3); /* duplicate */
    assert_int_equal(lr_proto_seqs_encode(1, v, 3, &b), LR_EBADVAL);
    seq_set(&v[2], "c", 3, 3);
    static const char *const bad[] = {"", ".", "..", "a/b", "x\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        seq_set(&v[2], bad[i], 3, 3);
        assert_int_equal(lr_proto_seqs_encode(1, v, 3, &b), LR_EBADVAL);
    }
    memset(v[2].folder_id, 'z', sizeof(v[2].folder_id)); /* not NUL-terminated */
    assert_int_equal(lr_proto_seqs_encode(1, v, 3, &b), LR_EBADVAL);
    assert_int_equal(b.len, 0);
    assert_true(lr_buf_ok(&b));
    seq_set(&v[2], "c", 3, 3);
    /* More entries than the maximum: refused before any is looked at. */
    assert_int_equal(lr_proto_seqs_encode(1, v, LR_PROTO_SEQS_ENTRIES_MAX + 1, &b), LR_EBADVAL);
    /* The most entries of the longest IDs would not fit one frame. */
    struct lr_proto_seq *big = lr_xcalloc(LR_PROTO_SEQS_ENTRIES_MAX, sizeof(big[0]));
    for (size_t i = 0; i < LR_PROTO_SEQS_ENTRIES_MAX; i++) {
        memset(big[i].folder_id, 'f', LR_PROTO_FOLDER_ID_MAX);
        snprintf(big[i].folder_id + LR_PROTO_FOLDER_ID_MAX - 5, 6, "%05zu", i);
        big[i].index_id = 1;
        big[i].max_seq = LR_VARINT_MAX;
    }
    struct lr_buf huge;
    lr_buf_init(&huge, 2 * LR_PROTO_SEQS_MAX);
    assert_int_equal(lr_proto_seqs_encode(1, big, LR_PROTO_SEQS_ENTRIES_MAX, &huge), LR_ETOOBIG);
    assert_int_equal(huge.len, 0);
    lr_buf_release(&huge);
    free(big);
    /* A full buffer: LR_ETOOBIG. */
    struct lr_buf small;
    lr_buf_init(&small, 4);
    assert_int_equal(lr_proto_seqs_encode(1, v, 3, &small), LR_ETOOBIG);
    lr_buf_release(&small);
    lr_buf_release(&b);
}

/* Decode a hand-built SEQS payload and expect `want`; on failure *out must
 * stay zeroed. */
static void seqs_expect(const struct lr_buf *b, int want)
{
    struct lr_err err;
    lr_err_clear(&err);
    struct lr_proto_seqs d;
    memset(&d, 0xa5, sizeof(d));
    int rc = lr_proto_seqs_decode(b->data, b->len, &d, &err);
    if (rc != want)
        fail_msg("want %s, got %s (%s)", lr_errname(want), lr_errname(rc), err.msg);
    if (rc < 0) {
        assert_fatal(rc, &err);
        assert_null(d.v);
        assert_int_equal(d.n, 0);
        assert_int_equal(d.req, 0);
    }
    lr_proto_seqs_release(&d);
}

static void put_seq(struct lr_buf *b, const char *id, uint64_t index_id, uint64_t max_seq)
{
    assert_int_equal(lr_buf_put_lbytes(b, id, strlen(id)), 0);
    assert_int_equal(lr_buf_put_u64(b, index_id), 0);
    assert_int_equal(lr_buf_put_varint(b, max_seq), 0);
}

static void test_seqs_hostile(void **state)
{
    (void)state;
    struct lr_buf b;
    lr_buf_init(&b, 4 * LR_PROTO_SEQS_MAX);
    /* Baseline. */
    lr_buf_put_varint(&b, 9);
    lr_buf_put_varint(&b, 2);
    put_seq(&b, "a", 1, 1);
    put_seq(&b, "b", 2, 2);
    seqs_expect(&b, 0);
    /* Out of order, duplicate. */
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 9);
    lr_buf_put_varint(&b, 2);
    put_seq(&b, "b", 1, 1);
    put_seq(&b, "a", 2, 2);
    seqs_expect(&b, LR_EBADVAL);
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 9);
    lr_buf_put_varint(&b, 2);
    put_seq(&b, "a", 1, 1);
    put_seq(&b, "a", 2, 2);
    seqs_expect(&b, LR_EBADVAL);
    /* Index ID 0, first and later entry. */
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 9);
    lr_buf_put_varint(&b, 1);
    put_seq(&b, "a", 0, 1);
    seqs_expect(&b, LR_EBADVAL);
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 9);
    lr_buf_put_varint(&b, 2);
    put_seq(&b, "a", 1, 1);
    put_seq(&b, "b", 0, 2);
    seqs_expect(&b, LR_EBADVAL);
    /* Bad folder IDs: a slash, "..", empty, a control character. */
    static const char *const bad[] = {"a/b", "..", "", "x\ty"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lr_buf_reset(&b);
        lr_buf_put_varint(&b, 9);
        lr_buf_put_varint(&b, 1);
        put_seq(&b, bad[i], 1, 1);
        lr_buf_put_u64(&b, 0); /* padding: the count check is not what fails */
        seqs_expect(&b, LR_EBADVAL);
    }
    /* An ID longer than the maximum. */
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 9);
    lr_buf_put_varint(&b, 1);
    char longid[LR_PROTO_FOLDER_ID_MAX + 2];
    memset(longid, 'x', LR_PROTO_FOLDER_ID_MAX + 1);
    longid[LR_PROTO_FOLDER_ID_MAX + 1] = 0;
    put_seq(&b, longid, 1, 1);
    seqs_expect(&b, LR_ETOOBIG);
    /* Count over the maximum, though the bytes would hold that many. */
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 9);
    lr_buf_put_varint(&b, LR_PROTO_SEQS_ENTRIES_MAX + 1);
    for (size_t i = 0; i <= LR_PROTO_SEQS_ENTRIES_MAX; i++) {
        char id[16];
        snprintf(id, sizeof(id), "f%05zu", i);
        put_seq(&b, id, 1, 1);
    }
    seqs_expect(&b, LR_ETOOBIG);
    /* Hostile counts: more entries than the bytes could hold, the largest
     * varint. Nothing may be allocated from them (ASan/LSan would see). */
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 9);
    lr_buf_put_varint(&b, 2);
    put_seq(&b, "a", 1, 1); /* 11 bytes: room for one entry, not two */
    seqs_expect(&b, LR_ETRUNC);
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 9);
    lr_buf_put_varint(&b, LR_VARINT_MAX);
    put_seq(&b, "a", 1, 1);
    seqs_expect(&b, LR_ETOOBIG);
    /* Every truncation point of a valid payload (also in the round trip). */
    lr_buf_reset(&b);
    lr_buf_put_varint(&b, 16384);
    lr_buf_put_varint(&b, 2);
    put_seq(&b, "alpha", 0x0102030405060708u, 70000);
    put_seq(&b, "beta", 9, LR_VARINT_MAX);
    all_truncations(b.data, b.len, seqs_dec);
    lr_buf_release(&b);
}

static void test_chunk_roundtrip(void **state)
{
    (void)state;
    const size_t n = LR_PROTO_CHUNK_DATA_MAX;
    uint8_t *text = lr_xmalloc(n), *rnd = lr_xmalloc(n), *got = lr_xmalloc(n);
    uint64_t s = 99;
    for (size_t i = 0; i < n; i++) {
        text[i] = (uint8_t) "the quick brown fox "[i % 20];
        rnd[i] = (uint8_t)rng_next(&s);
    }
    struct lr_proto_zc *zc = lr_proto_zc_new();
    struct lr_buf b;
    lr_buf_init(&b, LR_PROTO_CHUNK_MAX);
    struct lr_proto_chunk c;
    struct lr_err err;
    /* Compressible: sent as zstd, much smaller, restored exactly. */
    assert_int_equal(lr_proto_chunk_encode(zc, 7, LR_PROTO_CHUNK_OK, text, n, true, &b), 0);
    assert_true(b.len < n / 10);
    assert_int_equal(lr_proto_chunk_decode(b.data, b.len, &c, &err), 0);
    assert_int_equal(c.req_id, 7);
    assert_int_equal(c.comp, LR_PROTO_COMP_ZSTD);
    assert_int_equal(lr_proto_chunk_data(zc, &c, got, n, &err), 0);
    assert_memory_equal(got, text, n);
    /* Wrong expected size: refused (no output beyond `expect`). */
    assert_int_equal(lr_proto_chunk_data(zc, &c, got, n - 1, &err), LR_EBADVAL);
    assert_int_equal(lr_proto_chunk_data(NULL, &c, got, n, &err), 0);
    all_truncations(b.data, b.len, chunk_dec);
    /* Incompressible: sent raw. */
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_chunk_encode(NULL, 8, LR_PROTO_CHUNK_OK, rnd, n, true, &b), 0);
    assert_true(b.len > n && b.len <= LR_PROTO_CHUNK_MAX);
    assert_int_equal(lr_proto_chunk_decode(b.data, b.len, &c, &err), 0);
    assert_int_equal(c.comp, LR_PROTO_COMP_NONE);
    assert_int_equal(lr_proto_chunk_data(zc, &c, got, n, &err), 0);
    assert_memory_equal(got, rnd, n);
    assert_int_equal(lr_proto_chunk_data(zc, &c, got, n - 1, &err), LR_EBADVAL);
    /* Without a copy: raw bytes are borrowed from the payload... */
    const uint8_t *view = NULL;
    assert_int_equal(lr_proto_chunk_bytes(zc, &c, got, n, &view, &err), 0);
    assert_ptr_equal(view, c.data);
    assert_true(view >= b.data && view + n <= b.data + b.len);
    assert_memory_equal(view, rnd, n);
    assert_int_equal(lr_proto_chunk_bytes(zc, &c, got, n - 1, &view, &err), LR_EBADVAL);
    assert_null(view);
    /* ...compressed ones land in the scratch buffer. */
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_chunk_encode(zc, 7, LR_PROTO_CHUNK_OK, text, n, true, &b), 0);
    assert_int_equal(lr_proto_chunk_decode(b.data, b.len, &c, &err), 0);
    memset(got, 0, n);
    assert_int_equal(lr_proto_chunk_bytes(zc, &c, got, n, &view, &err), 0);
    assert_ptr_equal(view, got);
    assert_memory_equal(got, text, n);
    assert_int_equal(lr_proto_chunk_bytes(zc, &c, got, n + 1, &view, &err), LR_EBADVAL);
    assert_null(view);
    /* compress=false: raw even if compressible. */
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_chunk_encode(zc, 9, LR_PROTO_CHUNK_OK, text, 1000, false, &b), 0);
    assert_int_equal(lr_proto_chunk_decode(b.data, b.len, &c, &err), 0);
    assert_int_equal(c.comp, LR_PROTO_COMP_NONE);
    /* The same payload built in place: header, then the reserved bytes. */
    struct lr_buf in_place;
    lr_buf_init(&in_place, LR_PROTO_CHUNK_MAX);
    uint8_t *dst = NULL;
    assert_int_equal(lr_proto_chunk_encode_raw(9, 1000, &in_place, &dst), 0);
    assert_non_null(dst);
    assert_ptr_equal(dst + 1000, in_place.data + in_place.len);
    memcpy(dst, text, 1000);
    assert_int_equal(in_place.len, b.len);
    assert_memory_equal(in_place.data, b.data, b.len);
    /* Largest chunk fits a CHUNK payload; out-of-range sizes and ids do not. */
    lr_buf_reset(&in_place);
    assert_int_equal(
        lr_proto_chunk_encode_raw(LR_VARINT_MAX, LR_PROTO_CHUNK_DATA_MAX, &in_place, &dst), 0);
    assert_true(in_place.len <= LR_PROTO_CHUNK_MAX);
    lr_buf_reset(&in_place);
    assert_int_equal(lr_proto_chunk_encode_raw(1, 0, &in_place, &dst), LR_EBADVAL);
    assert_null(dst);
    assert_int_equal(lr_proto_chunk_encode_raw(1, LR_PROTO_CHUNK_DATA_MAX + 1, &in_place, &dst),
                     LR_EBADVAL);
    assert_int_equal(lr_proto_chunk_encode_raw(LR_VARINT_MAX + 1, 10, &in_place, &dst), LR_EBADVAL);
    assert_int_equal(in_place.len, 0);
    lr_buf_release(&in_place);
    /* Error statuses carry nothing. */
    lr_buf_reset(&b);
    assert_int_equal(lr_proto_chunk_encode(zc, 10, LR_PROTO_CHUNK_NO_SUCH, NULL, 0, true, &b), 0);
    assert_int_equal(lr_proto_chunk_decode(b.data, b.len, &c, &err), 0);
    assert_int_equal(c.status, LR_PROTO_CHUNK_NO_SUCH);
    assert_int_equal(lr_proto_chunk_data(zc, &c, got, 10, &err), LR_EBADVAL);
    /* Encoder rules. */
    assert_int_equal(lr_proto_chunk_encode(zc, 1, LR_PROTO_CHUNK_OK, text, 0, true, &b),
                     LR_EBADVAL);
    assert_int_equal(lr_proto_chunk_encode(zc, 1, LR_PROTO_CHUNK_OK, text, n + 1, true, &b),
                     LR_EBADVAL);
    assert_int_equal(lr_proto_chunk_encode(zc, 1, LR_PROTO_CHUNK_ERROR, text, 5, true, &b),
                     LR_EBADVAL);
    assert_int_equal(lr_proto_chunk_encode(zc, LR_VARINT_MAX + 1, 0, text, 5, true, &b),
                     LR_EBADVAL);
    lr_proto_zc_free(zc);
    lr_proto_zc_free(NULL);
    lr_buf_release(&b);
    free(text);
    free(rnd);
    free(got);
}

static int chunk_forge(uint64_t status, uint64_t comp, const uint8_t *data, uint64_t len,
                       size_t expect)
{
    struct lr_buf b;
    lr_buf_init(&b, 2 * MIB);
    lr_buf_put_varint(&b, 1);
    lr_buf_put_varint(&b, status);
    lr_buf_put_varint(&b, comp);
    lr_buf_put_varint(&b, len);
    if (len <= MIB)
        lr_buf_put(&b, data, (size_t)len);
    struct lr_proto_chunk c;
    struct lr_err err;
    lr_err_clear(&err);
    int rc = lr_proto_chunk_decode(b.data, b.len, &c, &err);
    if (rc == 0 && expect) {
        uint8_t *out = lr_xmalloc(expect); /* exact: ASan catches overflow */
        rc = lr_proto_chunk_data(NULL, &c, out, expect, &err);
        free(out);
    }
    if (rc < 0)
        assert_fatal(rc, &err);
    lr_buf_release(&b);
    return rc;
}

static void test_chunk_hostile(void **state)
{
    (void)state;
    uint8_t *d = lr_xcalloc(1, MIB);
    assert_int_equal(chunk_forge(0, 0, d, 100, 100), 0);
    assert_int_equal(chunk_forge(0, 0, d, 0, 0), LR_EBADVAL);     /* OK, empty */
    assert_int_equal(chunk_forge(0, 2, d, 100, 100), LR_EBADVAL); /* unknown compression */
    assert_int_equal(chunk_forge(1, 0, d, 100, 0), LR_EBADVAL);   /* error status + data */
    assert_int_equal(chunk_forge(1, 1, d, 0, 0), LR_EBADVAL);     /* error status + zstd */
    assert_int_equal(chunk_forge(77, 0, d, 0, 0), 0);             /* unknown status: decodes */
    assert_int_equal(chunk_forge(0, 0, d, LR_PROTO_CHUNK_DATA_MAX + 1, 0), LR_ETOOBIG);
    assert_int_equal(chunk_forge(0, 0, d, UINT32_MAX, 0), LR_ETOOBIG);
    assert_int_equal(chunk_forge(0, 0, d, LR_VARINT_MAX, 0), LR_ETOOBIG);
    assert_int_equal(chunk_forge(0, 0, d, 100, 99), LR_EBADVAL);  /* long */
    assert_int_equal(chunk_forge(0, 0, d, 100, 101), LR_EBADVAL); /* short */
    /* zstd claims: 2^63 in a 40-byte frame; more than requested; garbage;
     * a "compressed" form no smaller than the data. */
    uint8_t f[64];
    size_t fl = forge_zstd(f, UINT64_C(1) << 63, 24);
    assert_int_equal(chunk_forge(0, 1, f, fl, 65536), LR_EBADVAL);
    fl = forge_zstd(f, 65536, 24); /* declares 64 KiB, holds 24 bytes */
    assert_int_equal(chunk_forge(0, 1, f, fl, 65536), LR_EBADVAL);
    fl = forge_zstd(f, 24, 24);
    assert_int_equal(chunk_forge(0, 1, f, fl, 24), LR_EBADVAL); /* 40 >= 24 */
    assert_int_equal(chunk_forge(0, 1, f, fl, 41), LR_EBADVAL); /* declares 24, want 41 */
    assert_int_equal(chunk_forge(0, 1, d, 100, 1000), LR_EBADVAL);
    /* Valid compressed data, but of another size than requested. */
    size_t zl = ZSTD_compress(d + 4096, 4096, d, 5000, 1);
    assert_int_equal(chunk_forge(0, 1, d + 4096, zl, 5000), 0);
    assert_int_equal(chunk_forge(0, 1, d + 4096, zl, 4999), LR_EBADVAL);
    assert_int_equal(chunk_forge(0, 1, d + 4096, zl, 5001), LR_EBADVAL);
    free(d);
}

/* ---- INDEX: chunk lists as deltas (§6.5) ---------------------------------------- */

static void test_index_delta_roundtrip(void **state)
{
    (void)state;
    struct lr_file_rec base, cur, other;
    rec_file(&base, "big", 5, 200);
    rec_file(&cur, "big", 9, 200);
    /* cur: base with blocks 100..101 replaced (cur's own) and the rest equal. */
    for (size_t i = 0; i < 200; i++)
        if (i < 100 || i > 101)
            cur.chunks[i] = base.chunks[i];
    uint64_t off = 0;
    for (size_t i = 0; i < 200; i++) {
        cur.chunks[i].off = off;
        off += cur.chunks[i].len;
    }
    cur.size = off;
    lr_index_blocks_hash(cur.chunks, cur.nchunks, &cur.blocks_hash);
    rec_file(&other, "small", 12, 2);

    struct lr_buf d;
    lr_buf_init(&d, MIB);
    assert_int_equal(lr_sync_delta_make(base.chunks, base.nchunks, cur.chunks, cur.nchunks,
                                        LR_PROTO_DELTA_OVERHEAD, &d),
                     1);
    assert_true(d.len < 3 * LR_PROTO_BLOCK_LEN);
    struct lr_proto_index_batch *b = batch_new(0, 0);
    cur.vv.author = 0x2222; /* after the delta, the author */
    assert_int_equal(lr_proto_index_batch_add_delta(b, &cur, &base.blocks_hash, d.data, d.len), 0);
    /* Sequences still increase across delta and list entries. */
    assert_int_equal(lr_proto_index_batch_add_delta(b, &cur, &base.blocks_hash, d.data, d.len),
                     LR_EBADVAL);
    size_t nb = 0;
    assert_int_equal(lr_proto_index_batch_add(b, &other, &nb), 0);
    struct lr_buf out;
    lr_buf_init(&out, LR_PROTO_INDEX_MAX);
    assert_int_equal(lr_proto_index_batch_finish(b, LR_PROTO_INDEX_LAST, &out), 0);
    /* Far below the list it replaces (200 blocks of 36 bytes). */
    assert_true(out.len < 600);

    struct lr_proto_index ix;
    struct lr_err err;
    assert_int_equal(lr_proto_index_decode(out.data, out.len, NULL, &ix, &err), 0);
    assert_int_equal(ix.n, 2);
    const struct lr_proto_entry *e = &ix.v[0];
    assert_true(e->delta && e->whole);
    assert_null(e->rec.chunks);
    assert_int_equal(e->rec.nchunks, 0);
    assert_int_equal(e->blk_total, 0);
    assert_int_equal(e->delta_count, 200);
    assert_true(e->rec.vv.author == 0x2222);
    assert_true(ix.v[1].rec.vv.author == 0);
    assert_int_equal(e->rec.size, cur.size);
    assert_int_equal(e->rec.seq, 9);
    assert_memory_equal(e->delta_base.b, base.blocks_hash.b, LR_HASH_LEN);
    assert_memory_equal(e->rec.blocks_hash.b, cur.blocks_hash.b, LR_HASH_LEN);
    struct lr_chunk *v;
    size_t nv;
    assert_int_equal(lr_sync_delta_apply(base.chunks, base.nchunks, e->delta_bytes, e->delta_len,
                                         e->rec.size, &e->rec.blocks_hash, &v, &nv, &err),
                     0);
    struct lr_file_rec got = e->rec;
    got.chunks = v;
    got.nchunks = nv;
    assert_rec_equal(&cur, &got);
    free(v);
    assert_false(ix.v[1].delta);
    assert_rec_equal(&other, &ix.v[1].rec);
    /* The burst tracker sees a whole entry: no open segment. */
    struct lr_proto_burst bt;
    lr_proto_burst_init(&bt);
    assert_int_equal(lr_proto_burst_check(&bt, ix.hdr.index_id, &ix, &err), 0);
    assert_false(bt.seg_open);
    lr_proto_burst_release(&bt);
    lr_proto_index_release(&ix);

    /* Builder refusals: wrong block count, a directory, a tombstone. */
    batch_free(b);
    b = batch_new(0, 0);
    struct lr_file_rec shorter = cur;
    shorter.nchunks = 199;
    assert_int_equal(lr_proto_index_batch_add_delta(b, &shorter, &base.blocks_hash, d.data, d.len),
                     LR_EBADVAL);
    struct lr_file_rec dir;
    rec_init(&dir, "d", LR_FT_DIR, 20);
    assert_int_equal(lr_proto_index_batch_add_delta(b, &dir, &base.blocks_hash, d.data, d.len),
                     LR_EBADVAL);
    struct lr_file_rec dead = cur;
    dead.deleted = true;
    assert_int_equal(lr_proto_index_batch_add_delta(b, &dead, &base.blocks_hash, d.data, d.len),
                     LR_EBADVAL);
    assert_int_equal(lr_proto_index_batch_add_delta(b, &cur, &base.blocks_hash, d.data, 1),
                     LR_EBADVAL);
    /* Size the count cannot hold. */
    struct lr_file_rec tiny = cur;
    tiny.size = 10;
    tiny.nchunks = 0;
    assert_int_equal(lr_proto_index_batch_add_delta(b, &tiny, &base.blocks_hash, d.data, d.len),
                     LR_EBADVAL);
    /* A delta yielding more blocks than a delta entry may carry: send the list. */
    struct lr_buf big;
    lr_buf_init(&big, 64);
    lr_buf_put_varint(&big, (uint64_t)(LR_PROTO_DELTA_BLOCKS_MAX + 1) << 1 | LR_DELTA_OP_COPY);
    lr_buf_put_varint(&big, 0);
    struct lr_file_rec huge = cur;
    huge.nchunks = 0;
    huge.size = (uint64_t)LR_PROTO_DELTA_BLOCKS_MAX * 1000;
    assert_int_equal(lr_proto_index_batch_add_delta(b, &huge, &base.blocks_hash, big.data, big.len),
                     LR_ETOOBIG);
    lr_buf_release(&big);
    assert_int_equal(lr_proto_index_batch_count(b), 0);
    lr_file_rec_release(&dir);
    batch_free(b);
    lr_buf_release(&out);
    lr_buf_release(&d);
    lr_file_rec_release(&base);
    lr_file_rec_release(&cur);
    lr_file_rec_release(&other);
}

/* One raw delta entry: a live file of `size` bytes. */
static void put_delta_ent(struct lr_buf *body, uint64_t type, uint64_t flags, uint64_t size,
                          uint64_t count, size_t hashes_len, const struct lr_buf *delta,
                          const char *target)
{
    struct lr_buf b;
    lr_buf_init(&b, MIB);
    lr_buf_put_lbytes(&b, "p", 1);
    lr_buf_put_varint(&b, type);
    lr_buf_put_varint(&b, flags);
    lr_buf_put_varint(&b, 1);
    lr_buf_put_varint(&b, size);
    lr_buf_put_u64(&b, 0);
    lr_buf_put_varint(&b, 0644);
    lr_buf_put_varint(&b, 1);
    lr_buf_put_u64(&b, 1);
    lr_buf_put_u64(&b, 1);
    lr_buf_put_lbytes(&b, target, target ? strlen(target) : 0);
    lr_buf_put_varint(&b, count);
    uint8_t h[64] = {0};
    lr_buf_put(&b, h, hashes_len);
    if (delta)
        lr_buf_put_lbytes(&b, delta->data, delta->len);
    lr_buf_put_varint(body, b.len);
    lr_buf_put(body, b.data, b.len);
    lr_buf_release(&b);
}

static int delta_expect(uint64_t type, uint64_t flags, uint64_t size, uint64_t count,
                        size_t hashes_len, const struct lr_buf *delta, const char *target, int want)
{
    struct lr_buf body, msg;
    lr_buf_init(&body, MIB);
    lr_buf_init(&msg, 2 * MIB);
    put_delta_ent(&body, type, flags, size, count, hashes_len, delta, target);
    put_index(&msg, 0, 1, &body);
    struct lr_err err;
    lr_err_clear(&err);
    struct lr_proto_index ix;
    int rc = lr_proto_index_decode(msg.data, msg.len, NULL, &ix, &err);
    if (rc != want)
        fail_msg("want %s, got %s (%s)", lr_errname(want), lr_errname(rc), err.msg);
    if (rc < 0)
        assert_fatal(rc, &err);
    else
        lr_proto_index_release(&ix);
    lr_buf_release(&body);
    lr_buf_release(&msg);
    return rc;
}

static void test_index_delta_hostile(void **state)
{
    (void)state;
    const uint64_t D = LR_PROTO_ENTRY_DELTA;
    struct lr_buf d; /* two blocks: copy 1 from base block 0, one new of 100 bytes */
    lr_buf_init(&d, 1024);
    lr_buf_put_varint(&d, 1u << 1 | LR_DELTA_OP_COPY);
    lr_buf_put_varint(&d, 0);
    lr_buf_put_varint(&d, 1u << 1 | LR_DELTA_OP_NEW);
    lr_buf_put_varint(&d, 100);
    uint8_t h[32] = {1};
    lr_buf_put(&d, h, 32);
    delta_expect(LR_FT_FILE, D, 300, 2, 64, &d, NULL, 0); /* baseline */
    /* Flags beyond the known ones; delta on a tombstone, directory, symlink, unknown type. */
    delta_expect(LR_FT_FILE, D | 4, 300, 2, 64, &d, NULL, LR_EBADVAL);
    delta_expect(LR_FT_FILE, D | LR_PROTO_ENTRY_DELETED, 300, 2, 64, &d, NULL, LR_EBADVAL);
    delta_expect(LR_FT_DIR, D, 300, 2, 64, &d, NULL, LR_EBADVAL);
    delta_expect(LR_FT_SYMLINK, D, 300, 2, 64, &d, "t", LR_EBADVAL);
    delta_expect(9, D, 300, 2, 64, &d, NULL, LR_EBADVAL);
    delta_expect(LR_FT_FILE, D, 300, 2, 64, &d, "t", LR_EBADVAL); /* target on a file */
    /* Count: zero, not what the delta yields, over the limit, impossible for the size. */
    delta_expect(LR_FT_FILE, D, 300, 0, 64, &d, NULL, LR_EBADVAL);
    delta_expect(LR_FT_FILE, D, 300, 3, 64, &d, NULL, LR_EBADVAL);
    delta_expect(LR_FT_FILE, D, 300, LR_INDEX_CHUNKS_MAX + 1, 64, &d, NULL, LR_ETOOBIG);
    /* Over the delta limit, though a list of that many blocks would be fine. */
    delta_expect(LR_FT_FILE, D, (uint64_t)LR_PROTO_DELTA_BLOCKS_MAX * 1000,
                 LR_PROTO_DELTA_BLOCKS_MAX + 1, 64, &d, NULL, LR_ETOOBIG);
    delta_expect(LR_FT_FILE, D, 1, 2, 64, &d, NULL, LR_EBADVAL);
    delta_expect(LR_FT_FILE, D, 2u * LR_PROTO_CHUNK_DATA_MAX + 1, 2, 64, &d, NULL, LR_EBADVAL);
    /* Truncated hashes or delta. */
    delta_expect(LR_FT_FILE, D, 300, 2, 40, NULL, NULL, LR_ETRUNC);
    delta_expect(LR_FT_FILE, D, 300, 2, 64, NULL, NULL, LR_ETRUNC);
    /* A malformed delta: count-0 op, a NEW block of length 0. */
    struct lr_buf bad;
    lr_buf_init(&bad, 1024);
    lr_buf_put_varint(&bad, LR_DELTA_OP_COPY);
    lr_buf_put_varint(&bad, 0);
    delta_expect(LR_FT_FILE, D, 300, 1, 64, &bad, NULL, LR_EBADVAL);
    lr_buf_reset(&bad);
    lr_buf_put_varint(&bad, 1u << 1 | LR_DELTA_OP_NEW);
    lr_buf_put_varint(&bad, 0);
    lr_buf_put(&bad, h, 32);
    delta_expect(LR_FT_FILE, D, 300, 1, 64, &bad, NULL, LR_EBADVAL);
    lr_buf_release(&bad);
    lr_buf_release(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_pulled),
        cmocka_unit_test(test_seq_ask),
        cmocka_unit_test(test_seqs_roundtrip),
        cmocka_unit_test(test_seqs_encoder_rules),
        cmocka_unit_test(test_seqs_hostile),
        cmocka_unit_test(test_folder_id_rule),
        cmocka_unit_test(test_folders_roundtrip),
        cmocka_unit_test(test_folders_sort_and_encoder_rules),
        cmocka_unit_test(test_folders_hostile),
        cmocka_unit_test(test_folders_list_upto),
        cmocka_unit_test(test_folders_flag_options),
        cmocka_unit_test(test_folders_removed_option),
        cmocka_unit_test(test_folders_peer_check),
        cmocka_unit_test(test_index_roundtrip),
        cmocka_unit_test(test_index_builder_rejects),
        cmocka_unit_test(test_index_batch_bound),
        cmocka_unit_test(test_index_segments),
        cmocka_unit_test(test_index_entry_valid_baseline),
        cmocka_unit_test(test_index_rule_path),
        cmocka_unit_test(test_index_rule_flags_and_seq),
        cmocka_unit_test(test_index_rule_mode),
        cmocka_unit_test(test_index_rule_vv),
        cmocka_unit_test(test_index_rule_target),
        cmocka_unit_test(test_index_rule_nonfile_blocks),
        cmocka_unit_test(test_index_rule_block_sum),
        cmocka_unit_test(test_index_rule_block_len),
        cmocka_unit_test(test_index_rule_block_counts),
        cmocka_unit_test(test_index_rule_segments),
        cmocka_unit_test(test_index_unknown_type),
        cmocka_unit_test(test_index_duplicate_path),
        cmocka_unit_test(test_index_delta_roundtrip),
        cmocka_unit_test(test_index_delta_hostile),
        cmocka_unit_test(test_index_header_rules),
        cmocka_unit_test(test_index_zstd_hostile),
        cmocka_unit_test(test_index_full_needed),
        cmocka_unit_test(test_burst_sequences),
        cmocka_unit_test(test_burst_segments),
        cmocka_unit_test(test_want_roundtrip),
        cmocka_unit_test(test_want_encoder_rules),
        cmocka_unit_test(test_want_hostile),
        cmocka_unit_test(test_chunk_roundtrip),
        cmocka_unit_test(test_chunk_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
