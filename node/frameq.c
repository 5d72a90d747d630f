/*
 * frameq.c - see frameq.h.
 */
#include "frameq.h"

#include "base.h"

#include <stdlib.h>

/* Per envelope in a Batch: its tag and length prefix, generously. */
#define S_OVERHEAD 16

int
pm_frameq_alone(size_t len)
{
    return len + S_OVERHEAD > PM_FRAMEQ_MAX;
}

int
pm_frameq_full(const pm_frameq_t *q, size_t len)
{
    return q->n && q->bytes + (q->n + 1) * S_OVERHEAD + len > PM_FRAMEQ_MAX;
}

void
pm_frameq_push(pm_frameq_t *q, uint8_t *buf, size_t len)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 16;
        q->frames = pm_xrealloc(q->frames, q->cap * sizeof *q->frames, "batched frames");
    }
    q->frames[q->n++] = (pm_bytes_t){.data = buf, .len = len};
    q->bytes += len;
}

uint8_t *
pm_frameq_take(pm_frameq_t *q, const char *from, size_t *len, size_t *count)
{
    *count = q->n;
    uint8_t *buf = NULL;
    if (q->n == 1) {
        buf = (uint8_t *) q->frames[0].data;
        *len = q->frames[0].len;
    } else if (q->n > 1) {
        pm_msg_t m = {.type = PM_MSG_BATCH, .from = from, .records = q->frames,
                      .record_count = q->n};
        buf = pm_wire_encode(&m, len);
        if (!buf)
            pm_oom("batching frames");
        for (size_t i = 0; i < q->n; i++)
            free((void *) q->frames[i].data);
    }
    q->n = 0;
    q->bytes = 0;
    return buf;
}

void
pm_frameq_free(pm_frameq_t *q)
{
    for (size_t i = 0; i < q->n; i++)
        free((void *) q->frames[i].data);
    free(q->frames);
    *q = (pm_frameq_t){0};
}
