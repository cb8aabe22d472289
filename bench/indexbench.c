/*
 * indexbench.c - driver for bench/index.sh: scan one folder into an index and
 * print one line of figures.
 *
 * Usage: indexbench DB ROOT [THREADS]
 *   Scans ROOT (which must hold a .landropic directory) as folder "bench"
 *   into the index at DB (created if needed). Prints:
 *     seconds=<scan wall time> hashed=<bytes> files=<n> added=<n> changed=<n>
 *     deleted=<n> maxrss_kib=<peak RSS of this process>
 *   Exit status 0 on success, 1 on a scan error (message on stderr).
 */
#include "index/index.h"
#include "scanner/scanner.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: indexbench DB ROOT [THREADS]\n");
        return 2;
    }
    lr_log_set_level(LR_LOG_WARN);
    struct lr_err err = {0};
    struct lr_index *ix = NULL;
    int rc = lr_index_open(argv[1], &ix, &err);
    if (rc) {
        fprintf(stderr, "indexbench: %s\n", lr_err_msg(&err, rc));
        return 1;
    }
    struct lr_scan_opts opts = {0};
    opts.short_id = 1;
    if (argc == 4)
        opts.threads = (unsigned)strtoul(argv[3], NULL, 10);
    struct lr_scan_result r;
    rc = lr_scan_folder(ix, "bench", argv[2], &opts, &r, &err);
    lr_index_close(ix);
    if (rc) {
        fprintf(stderr, "indexbench: %s\n", lr_err_msg(&err, rc));
        return 1;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("seconds=%.4f hashed=%" PRIu64 " files=%" PRIu64 " added=%" PRIu64 " changed=%" PRIu64
           " deleted=%" PRIu64 " maxrss_kib=%ld\n",
           r.seconds, r.bytes_hashed, r.files, r.added, r.changed, r.deleted, ru.ru_maxrss);
    return 0;
}
