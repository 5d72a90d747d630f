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

#include <stdlib.h>

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

/* Sends what q holds to its session as one frame. Frames of a session gone
 * meanwhile are dropped, counted. */
static void
s_send_queue(pm_agent_t *self, pm_localq_t *q)
{
    size_t len, count;
    uint8_t *buf = pm_frameq_take(&q->q, NULL, &len, &count);
    if (!buf)
        return;
    pm_session_t *s = pm_session_by_id(self, q->session);
    if (!s) {
        free(buf);
        self->replies_dropped += count;
    } else if (pm_local_send(self->router, s->rid, s->rid_len, buf, len) != 0) {
        self->replies_dropped += count;
    }
}

int
pm_local_out(pm_agent_t *self, pm_session_t *s, uint8_t *buf, size_t len)
{
    if (!self->turn_open || !s->batches)
        return pm_local_send(self->router, s->rid, s->rid_len, buf, len);
    pm_localq_t *q = s_queue(self, s->id);
    if (pm_frameq_alone(len)) { /* alone, after what was queued before it */
        s_send_queue(self, q);
        return pm_local_send(self->router, s->rid, s->rid_len, buf, len);
    }
    if (pm_frameq_full(&q->q, len))
        s_send_queue(self, q);
    pm_frameq_push(&q->q, buf, len);
    return 0;
}

void
pm_local_flush(pm_agent_t *self)
{
    for (size_t i = 0; i < self->n_lq; i++) {
        s_send_queue(self, &self->lq[i]);
        pm_frameq_free(&self->lq[i].q);
    }
    self->n_lq = 0; /* the sessions of this turn only: the next starts with none */
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
    for (size_t i = 0; i < self->n_lq; i++)
        pm_frameq_free(&self->lq[i].q);
    free(self->lq);
    self->lq = NULL;
    self->n_lq = self->cap_lq = 0;
}
