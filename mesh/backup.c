/*
 * backup.c - see backup.h.
 */
#include "backup.h"

#include "base.h"
#include "spaces.h"
#include "steptrace.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

/* A resync request can be lost like any frame (the owner is restarting, its
 * channel was torn down): ask again at this pace while the gap lasts. Below
 * the owner's own retransfer period (1 s), so either side repairs it. */
#define S_RESYNC_REPEAT_MS 500

typedef struct s_stream {
    uint64_t stream;      /* the owner process's stream */
    uint64_t xfer;        /* the state transfer being received, or the last one */
    uint64_t xfer_got;    /* records of it received so far */
    int synced;           /* a transfer completed, and no gap since */
    uint64_t next;        /* the LSN that must come next */
    int64_t resync_at;    /* when we last asked for the whole state (0: never) */
    uint64_t resync_xfer; /* the transfer current when we asked */
} s_stream_t;

struct pm_backup {
    zhashx_t *owners; /* owner node name -> s_stream_t (owned) */
    uint64_t resyncs;
};

static void
s_stream_destroy(void **item)
{
    free(*item);
    *item = NULL;
}

pm_backup_t *
pm_backup_new(void)
{
    pm_backup_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->owners = zhashx_new();
    if (!self->owners) {
        free(self);
        return NULL;
    }
    zhashx_set_destructor(self->owners, s_stream_destroy);
    return self;
}

void
pm_backup_destroy(pm_backup_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zhashx_destroy(&(*self_p)->owners);
    free(*self_p);
    *self_p = NULL;
}

void
pm_backup_forget(pm_backup_t *self, const char *from)
{
    zhashx_delete(self->owners, from);
}

/* Asks for the whole state, unless we asked for this transfer a moment ago. */
static void
s_resync(pm_backup_t *self, s_stream_t *st, int64_t now_ms, const char *why,
         pm_backup_verdict_t *v)
{
    v->why = why;
    if (st->resync_at && st->resync_xfer == st->xfer &&
        now_ms - st->resync_at < S_RESYNC_REPEAT_MS)
        return;
    v->resync = 1;
    st->resync_at = now_ms ? now_ms : 1;
    st->resync_xfer = st->xfer;
    self->resyncs++;
}

void
pm_backup_check(pm_backup_t *self, const char *from, const pm_msg_t *m,
                const pm_backup_claims_t *claims, int64_t now_ms, pm_backup_verdict_t *v)
{
    memset(v, 0, sizeof *v);
    PM_STEPTRACE_MARK("b_recv", "", 0);
    if (claims && m->record_count &&
        pm_spaces_fence(claims->self_node, claims->owned, claims->mine, claims->known, from,
                        m->epoch, &v->fence_epoch)) {
        v->fenced = 1;
        pm_backup_forget(self, from);
        return;
    }
    s_stream_t *st = zhashx_lookup(self->owners, from);
    if (!st) {
        st = pm_xcalloc(1, sizeof *st, "backup stream");
        zhashx_insert(self->owners, from, st);
    }
    if (st->stream != m->stream) {
        /* A new owner process (or our first message from it): nothing of
         * the old stream carries over. */
        memset(st, 0, sizeof *st);
        st->stream = m->stream;
    }
    if (m->stream == 0) {
        s_resync(self, st, now_ms, "message without a stream", v);
        return;
    }
    if (m->full) {
        if (m->xfer != st->xfer) {
            /* A new transfer supersedes whatever we held of this stream. */
            st->xfer = m->xfer;
            st->xfer_got = 0;
            st->synced = 0;
        }
        if (m->record_count) {
            st->xfer_got += m->record_count;
            v->apply = 1;
            return;
        }
        if (st->xfer_got == m->count) {
            st->synced = 1;
            st->next = m->lsn + 1;
            v->ack = 1;
            v->lsn = m->lsn;
            return;
        }
        s_resync(self, st, now_ms, "state transfer arrived incomplete", v);
        return;
    }
    if (!st->synced) {
        s_resync(self, st, now_ms, "records without a complete state transfer before them", v);
        return;
    }
    if (m->record_count == 0)
        return;
    uint64_t first = m->first, last = m->lsn;
    if (first == 0 || last < first || last - first + 1 != m->record_count) {
        st->synced = 0;
        s_resync(self, st, now_ms, "records with an inconsistent LSN range", v);
        return;
    }
    if (first > st->next) {
        st->synced = 0;
        s_resync(self, st, now_ms, "records missing before these (a gap in the stream)", v);
        return;
    }
    v->ack = 1;
    if (last < st->next) {
        v->lsn = st->next - 1; /* all held already (they were in the transfer) */
        return;
    }
    v->apply = 1;
    v->skip = (size_t) (st->next - first);
    PM_INVARIANT(first + v->skip == st->next && v->skip < m->record_count,
                 "a backup applies only the next record of a stream");
    st->next = last + 1;
    v->lsn = last;
}

size_t
pm_backup_synced(const pm_backup_t *self)
{
    size_t n = 0;
    for (s_stream_t *st = zhashx_first(self->owners); st; st = zhashx_next(self->owners))
        n += st->synced != 0;
    return n;
}

uint64_t
pm_backup_resyncs(const pm_backup_t *self)
{
    return self->resyncs;
}
