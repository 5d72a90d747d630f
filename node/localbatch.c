/*
 * localbatch.c - what one turn of the loop sends a local client leaves as
 * one frame, for clients that take batches (libpmesh says so in its hello).
 *
 * A caller that pipelines (a chain created, ten thens, an await, a resolve
 * in one burst) is answered a reply per request; the journal releases held
 * replies in bursts (one fsync covers many). Each frame costs a ZeroMQ
 * message on both sides and a wake-up of the client, so within a turn the
 * frames for a session that said `batches` in its hello wait in a queue and
 * leave at the turn's end as one Batch envelope (a lone one as itself), in
 * the order they were sent: the client applies them one by one, as if each
 * had come alone (proto/PROTOCOL.md 2). Nothing waits for a timer. A client
 * that did not ask (the Python and Node SDKs, older libpmesh) gets every
 * frame as before. The mesh does the same per peer (mesh/outbox.c).
 */
#include "agent_priv.h"

#include "base.h"
#include "localsock.h"
#include "session.h"
#include "wire.h"

#include <stdlib.h>

#define S_BATCH_MAX (256 * 1024)
#define S_BATCH_OVERHEAD 16

static pm_localq_t *
s_queue(pm_agent_t *self, uint64_t session)
{
    for (size_t i = 0; i < self->n_lq; i++)
        if (self->lq[i].session == session)
            return &self->lq[i];
    if (self->n_lq == self->cap_lq) {
        size_t cap = self->cap_lq ? self->cap_lq * 2 : 8;
        self->lq = pm_xrealloc(self->lq, cap * sizeof *self->lq, "local batches");
        self->cap_lq = cap;
    }
    pm_localq_t *q = &self->lq[self->n_lq++];
    *q = (pm_localq_t){.session = session};
    return q;
}

/* Sends q's frames to its session (one as itself, several as a batch) and
 * empties q. Frames of a session gone meanwhile are dropped, counted. */
static void
s_send_queue(pm_agent_t *self, pm_localq_t *q)
{
    pm_session_t *s = q->n ? pm_session_by_id(self, q->session) : NULL;
    if (q->n && !s) {
        for (size_t i = 0; i < q->n; i++)
            free((void *) q->frames[i].data);
        self->replies_dropped += q->n;
    } else if (q->n == 1) {
        if (pm_local_send(self->router, s->rid, s->rid_len, (uint8_t *) q->frames[0].data,
                          q->frames[0].len) != 0)
            self->replies_dropped++;
    } else if (q->n > 1) {
        pm_msg_t m = {.type = PM_MSG_BATCH, .records = q->frames, .record_count = q->n};
        size_t len;
        uint8_t *buf = pm_wire_encode(&m, &len);
        if (!buf)
            pm_oom("batching frames to a client");
        for (size_t i = 0; i < q->n; i++)
            free((void *) q->frames[i].data);
        if (pm_local_send(self->router, s->rid, s->rid_len, buf, len) != 0)
            self->replies_dropped += q->n;
    }
    q->n = 0;
    q->bytes = 0;
}

int
pm_local_out(pm_agent_t *self, pm_session_t *s, uint8_t *buf, size_t len)
{
    if (!self->turn_open || !s->batches)
        return pm_local_send(self->router, s->rid, s->rid_len, buf, len);
    pm_localq_t *q = s_queue(self, s->id);
    if (len + S_BATCH_OVERHEAD > S_BATCH_MAX) { /* alone, after what was queued before it */
        s_send_queue(self, q);
        return pm_local_send(self->router, s->rid, s->rid_len, buf, len);
    }
    if (q->bytes + len + S_BATCH_OVERHEAD > S_BATCH_MAX)
        s_send_queue(self, q);
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 16;
        q->frames = pm_xrealloc(q->frames, q->cap * sizeof *q->frames, "local batches");
    }
    q->frames[q->n++] = (pm_bytes_t){.data = buf, .len = len};
    q->bytes += len + S_BATCH_OVERHEAD;
    return 0;
}

void
pm_local_flush(pm_agent_t *self)
{
    for (size_t i = 0; i < self->n_lq; i++)
        s_send_queue(self, &self->lq[i]);
    /* The sessions of this turn only: the next starts with none. */
    for (size_t i = 0; i < self->n_lq; i++)
        free(self->lq[i].frames);
    self->n_lq = 0;
}

void
pm_local_flush_session(pm_agent_t *self, uint64_t session)
{
    for (size_t i = 0; i < self->n_lq; i++)
        if (self->lq[i].session == session)
            s_send_queue(self, &self->lq[i]);
}

void
pm_local_queues_free(pm_agent_t *self)
{
    for (size_t i = 0; i < self->n_lq; i++) {
        for (size_t f = 0; f < self->lq[i].n; f++)
            free((void *) self->lq[i].frames[f].data);
        free(self->lq[i].frames);
    }
    free(self->lq);
    self->lq = NULL;
    self->n_lq = self->cap_lq = 0;
}
