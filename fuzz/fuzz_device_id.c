/*
 * fuzz_device_id.c - lr_device_id_parse on arbitrary bytes.
 *
 * Invariants: never crashes or reads past the NUL; a rejected input sets
 * LR_EBADID with a message; an accepted input formats back to a canonical
 * string that parses to the same ID, and that canonical string is what
 * lr_device_id_format produces (formatting is a fixed point).
 */
#include "identity/identity.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';

    struct lr_device_id id, again;
    struct lr_err err = {0};
    int rc = lr_device_id_parse(s, &id, &err);
    if (rc == 0) {
        char fmt[LR_DEVICE_ID_STRLEN + 1], fmt2[LR_DEVICE_ID_STRLEN + 1];
        lr_device_id_format(&id, fmt);
        if (strlen(fmt) != LR_DEVICE_ID_STRLEN)
            abort();
        if (lr_device_id_parse(fmt, &again, NULL) != 0 || !lr_device_id_eq(&id, &again))
            abort();
        lr_device_id_format(&again, fmt2);
        if (strcmp(fmt, fmt2) != 0)
            abort();
        char sh[LR_DEVICE_ID_SHORTLEN + 1];
        lr_device_id_short(&id, sh);
        if (memcmp(sh, fmt, LR_DEVICE_ID_SHORTLEN) != 0)
            abort();
    } else if (rc != LR_EBADID || err.code != LR_EBADID || err.msg[0] == '\0') {
        abort();
    }
    free(s);
    return 0;
}
