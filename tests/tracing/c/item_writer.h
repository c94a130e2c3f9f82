/* The consumer thread the C test programs share: it pulls the ingestion bodies with
 * sirius_next_item until the tracer closes and writes each one to the FILE * it is given as
 * [u8 kind][u32 nb_objects][u32 size][body] (tests/tracing/c_programs.py reads them back).
 * Include after sirius_tracing.h; start it with pthread_create(&t, NULL, write_items, file). */
#ifndef SIRIUS_TEST_ITEM_WRITER_H
#define SIRIUS_TEST_ITEM_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static void *write_items(void *arg) {
    FILE *out = arg;
    size_t cap = 1 << 20;
    uint8_t *buf = malloc(cap);
    for (;;) {
        sirius_item_info info;
        int64_t n = sirius_next_item(buf, cap, 100, &info);
        if (n == SIRIUS_E_CLOSED) break;
        if (n == SIRIUS_E_TOO_SMALL) {
            /* the item waits for a buffer twice its size */
            cap = info.size * 2;
            buf = realloc(buf, cap);
            continue;
        }
        if (n <= 0) continue;
        uint8_t kind = (uint8_t)info.kind;
        uint32_t nb = info.nb_objects, size = (uint32_t)n;
        fwrite(&kind, 1, 1, out);
        fwrite(&nb, 4, 1, out);
        fwrite(&size, 4, 1, out);
        fwrite(buf, 1, (size_t)n, out);
    }
    free(buf);
    return NULL;
}

#endif
