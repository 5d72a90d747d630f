/*
 * outbox.c - what one reactor turn sends one peer leaves as one frame.
 *
 * Every mesh message costs the same fixed work whatever its size: a ZeroMQ
 * message through both I/O threads, a CURVE box, a wake-up of the receiving
 * reactor. Under load an agent sends the same peer many small messages per
 * turn (the results it relays, the replies its journal releases, the
 * records it replicates), so the agent corks the mesh for the turn
 * (pm_mesh_cork) and uncorks it before it polls again: each endpoint's
 * frames then go as one Batch envelope (a lone frame as itself), in the
 * order they were sent (node/frameq.c). Nothing waits for a timer, only for
 * the end of the turn that sent it (the rest of that turn's work: under
 * load tens of microseconds; a turn that handles one message ends at once).
 *
 * The receiver applies a batch's envelopes one by one, exactly as if each had
 * come alone (mesh.c), so batching changes the count of frames, never what a
 * message means or the order of one channel's messages. A batch never holds
 * more than PM_FRAMEQ_MAX bytes (a bigger frame goes alone), far below a
 * peer's frame limit.
 */
#include "mesh_priv.h"

#include "base.h"
#include "wire.h"

#include <stdlib.h>
#include <string.h>

void
pm_mesh_cork(pm_mesh_t *self)
{
    self->corked = 1;
}

void
pm_mesh_uncork(pm_mesh_t *self)
{
    self->corked = 0;
    pm_mesh_outbox_flush(self);
}

static pm_mesh_outq_t *
s_queue(pm_mesh_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->n_outq; i++)
        if (strcmp(self->outq[i].endpoint, endpoint) == 0)
            return &self->outq[i];
    if (self->n_outq == self->cap_outq) {
        size_t cap = self->cap_outq ? self->cap_outq * 2 : 8;
        self->outq = pm_xrealloc(self->outq, cap * sizeof *self->outq, "mesh outbox");
        self->cap_outq = cap;
    }
    pm_mesh_outq_t *q = &self->outq[self->n_outq++];
    *q = (pm_mesh_outq_t){.endpoint = pm_xstrdup(endpoint, "mesh outbox")};
    return q;
}

/* Sends what q holds as one frame (counted as a batch when it is one). */
static void
s_send_queue(pm_mesh_t *self, pm_mesh_outq_t *q)
{
    size_t inner = q->q.bytes, len, count;
    uint8_t *buf = pm_frameq_take(&q->q, self->node, &len, &count);
    if (!buf)
        return;
    if (count > 1) { /* its envelopes are counted by their own kinds */
        self->sent[PM_MSG_BATCH]++;
        self->sent_bytes[PM_MSG_BATCH] += len - inner;
    }
    pm_mesh_transmit_now(self, q->endpoint, buf, len);
}

int
pm_mesh_outbox_add(pm_mesh_t *self, const char *endpoint, uint8_t *buf, size_t len)
{
    pm_mesh_outq_t *q = s_queue(self, endpoint);
    if (pm_frameq_alone(len)) { /* alone, after what was queued before it */
        s_send_queue(self, q);
        return pm_mesh_transmit_now(self, endpoint, buf, len);
    }
    if (pm_frameq_full(&q->q, len))
        s_send_queue(self, q);
    pm_frameq_push(&q->q, buf, len);
    return 0;
}

void
pm_mesh_outbox_flush(pm_mesh_t *self)
{
    for (size_t i = 0; i < self->n_outq; i++)
        s_send_queue(self, &self->outq[i]);
}

void
pm_mesh_outbox_drop(pm_mesh_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->n_outq; i++)
        if (strcmp(self->outq[i].endpoint, endpoint) == 0)
            pm_frameq_free(&self->outq[i].q);
}

void
pm_mesh_outbox_free(pm_mesh_t *self)
{
    for (size_t i = 0; i < self->n_outq; i++) { /* never sent: the mesh is going */
        pm_frameq_free(&self->outq[i].q);
        free(self->outq[i].endpoint);
    }
    free(self->outq);
    self->outq = NULL;
    self->n_outq = self->cap_outq = 0;
}
