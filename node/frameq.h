/*
 * frameq.h - encoded envelopes waiting to leave together: one frame for all
 * of them, a Batch envelope (or the lone one as itself). The agent keeps one
 * queue per peer (mesh/outbox.c) and one per local session that takes
 * batches (localbatch.c) for each turn of its loop.
 */
#ifndef PM_FRAMEQ_H
#define PM_FRAMEQ_H

#include "wire.h"

#include <stddef.h>
#include <stdint.h>

/* A batch stays under this many bytes; a bigger envelope goes alone. */
#define PM_FRAMEQ_MAX (256 * 1024)

typedef struct pm_frameq {
    pm_bytes_t *frames; /* each malloc'd, owned */
    size_t n, cap;
    size_t bytes; /* the frames' lengths, summed */
} pm_frameq_t;

/* 1 if an envelope of len bytes must go alone (too big for any batch). */
int pm_frameq_alone(size_t len);
/* 1 if q must be sent before an envelope of len bytes joins it. */
int pm_frameq_full(const pm_frameq_t *q, size_t len);
/* Appends buf (malloc'd, handed over). */
void pm_frameq_push(pm_frameq_t *q, uint8_t *buf, size_t len);
/* What q holds as one frame, malloc'd (the lone envelope, or a Batch whose
 * envelope says `from`); q is empty after. NULL if q was. *count: the
 * envelopes in it. */
uint8_t *pm_frameq_take(pm_frameq_t *q, const char *from, size_t *len, size_t *count);
/* Frees what q holds (never sent) and its array. */
void pm_frameq_free(pm_frameq_t *q);

#endif
