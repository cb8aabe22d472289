/*
 * storebench.c - durability strategies for applying N small files with the store.
 * usage: storebench DIR N THREADS MODE   (MODE: none|each|fsync|syncfs)
 *  none:   batch in syncfs mode but barrier/sync_dirs skipped (lower bound)
 *  each:   b == NULL: fsync file + every directory per commit
 *  fsync:  LR_STORE_BARRIER_FSYNC: staged fds fsynced by THREADS workers, dirs fsynced once
 *  syncfs: LR_STORE_BARRIER_SYNCFS: one syncfs before renames, one after
 */
#include "hash/hash.h"
#include "store/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct lr_store *st;
static struct lr_store_batch *bt;
static int nfiles, nthreads;
static int *fds;
static struct lr_hash *keys;
static char mode[16];
static unsigned char data[65536];

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *stager(void *arg)
{
    long id = (long)arg;
    struct lr_err err = {0};
    for (int i = (int)id; i < nfiles; i += nthreads) {
        char k[64];
        snprintf(k, sizeof(k), "bench-%d-%ld", i, (long)getpid());
        lr_sha256(k, strlen(k), &keys[i]);
        size_t len = 1024 + ((size_t)i * 7919) % (64 * 1024 - 1024);
        if (lr_store_staging_open(st, &keys[i], len, &fds[i], NULL, &err) ||
            lr_store_staging_write(fds[i], 0, data, len, &err)) {
            fprintf(stderr, "stage: %s\n", err.msg);
            exit(1);
        }
    }
    return NULL;
}

static void *syncer(void *arg)
{
    long id = (long)arg;
    for (int i = (int)id; i < nfiles; i += nthreads)
        if (fsync(fds[i]) < 0)
            exit(1);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    nfiles = (int)strtol(argv[2], NULL, 10);
    nthreads = (int)strtol(argv[3], NULL, 10);
    if (nfiles <= 0 || nthreads <= 0) {
        fprintf(stderr, "usage: storebench DIR N THREADS MODE\n");
        return 2;
    }
    snprintf(mode, sizeof(mode), "%s", argv[4]);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 31 + 7);
    struct lr_err err = {0};
    char m[512];
    snprintf(m, sizeof(m), "%s/.landropic", argv[1]);
    mkdir(argv[1], 0755);
    mkdir(m, 0700);
    if (lr_store_open(argv[1], &st, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (int d = 0; d < 20; d++) {
        char rel[32];
        snprintf(rel, sizeof(rel), "d%02d", d);
        lr_store_mkdir(st, NULL, rel, 0755, 0, NULL, &err);
    }
    sync();
    fds = calloc((size_t)nfiles, sizeof(int));
    keys = calloc((size_t)nfiles, sizeof(*keys));
    bt = lr_store_batch_new(st, strcmp(mode, "fsync") ? LR_STORE_BARRIER_SYNCFS
                                                      : LR_STORE_BARRIER_FSYNC);
    double t0 = now();
    pthread_t th[16];
    for (long i = 0; i < nthreads; i++)
        pthread_create(&th[i], NULL, stager, (void *)i);
    for (int i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    double t1 = now();
    if (!strcmp(mode, "syncfs")) {
        lr_store_batch_stage(bt, fds[0], &err);
        if (lr_store_batch_barrier(bt, &err)) {
            fprintf(stderr, "barrier: %s\n", err.msg);
            return 1;
        }
    } else if (!strcmp(mode, "fsync")) {
        /* what LR_STORE_BARRIER_FSYNC does at stage time, timed on its own */
        for (long i = 0; i < nthreads; i++)
            pthread_create(&th[i], NULL, syncer, (void *)i);
        for (int i = 0; i < nthreads; i++)
            pthread_join(th[i], NULL);
    }
    double t2 = now();
    static const struct lr_store_expect absent = {.exists = false};
    for (int i = 0; i < nfiles; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "d%02d/f%d-%ld", i % 20, i, (long)getpid());
        if (lr_store_commit_file(st, strcmp(mode, "each") ? bt : NULL, &keys[i], fds[i], rel, 0644,
                                 0, &absent, 0, NULL, &err)) {
            fprintf(stderr, "commit: %s\n", err.msg);
            return 1;
        }
        close(fds[i]);
    }
    double t3 = now();
    if (strcmp(mode, "each") && strcmp(mode, "none") && lr_store_batch_sync_dirs(bt, &err)) {
        fprintf(stderr, "sync_dirs: %s\n", err.msg);
        return 1;
    }
    double t4 = now();
    printf("%-6s n=%d threads=%d stage=%.3fs barrier=%.3fs commit=%.3fs dirsync=%.3fs "
           "total=%.3fs\n",
           mode, nfiles, nthreads, t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0);
    lr_store_batch_free(bt);
    lr_store_close(st);
    return 0;
}
