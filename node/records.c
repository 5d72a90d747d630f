/*
 * records.c - see records.h.
 */
#include "records.h"

#include "base.h"

#include <stdlib.h>
#include <string.h>

/* A replica's copy of a promise settled otherwise than its owner's record
 * says holds an outcome nobody acknowledged: its own, from when this agent
 * served the space and was cut off, or a former owner's. It goes, so that
 * the owner's record applies. */
static int
s_replace_stale(pm_store_t *store, pm_prom_t *q)
{
    /* (Also an active one: records of a space we still serve come only from
     * an owner at a newer epoch, so we are the stale one, and everything we
     * acknowledged there is in its state.) */
    if (q->watches || q->state == PM_STATE_PENDING)
        return 0;
    return pm_store_drop(store, q->id) == PM_OK;
}

static int
s_create(pm_store_t *store, const pm_wire_promise_t *p, int passive)
{
    pm_create_args_t a = {.id = p->id, .heartbeat_ms = p->heartbeat_ms, .key = p->key,
                          .label_count = p->label_count, .labels = p->labels,
                          .created_ms = p->created_ms, .timeout_at = p->timeout_at_ms,
                          .heartbeat_at = p->heartbeat_at_ms, .passive = passive};
    pm_prom_t *out;
    int created = 1;
    int err = pm_store_create(store, &a, p->created_ms, &out, &created);
    if (!err && !created)
        return PM_RECORD_REDUNDANT; /* its key names a promise we hold */
    return err;
}

static int
s_settle(pm_store_t *store, const pm_wire_promise_t *p)
{
    if (p->state == PM_STATE_RESOLVED)
        return pm_store_apply_settle(store, p->id, p->state, p->value, p->value_len,
                                     p->settled_ms);
    return pm_store_apply_settle(store, p->id, p->state, p->reason,
                                 p->reason ? strlen(p->reason) : 0, p->settled_ms);
}

int
pm_records_apply(pm_store_t *store, const pm_rec_t *rec, int passive)
{
    const pm_wire_promise_t *p = &rec->promise;
    int err;
    switch (rec->kind) {
    case PM_REC_CREATE: {
        /* Ids are minted once: one that exists is this record applied before,
         * or a passive copy's stale outcome. An owner sends a promise's
         * CREATE again only when it streams its state (a state transfer, or
         * a space it took over), followed at once by the SETTLE if it has
         * it settled; so a copy settled where the owner's state has it
         * pending holds an outcome nobody acknowledged (pmesh-sim seed 4752:
         * a deposed owner kept a then's target settled from a value the new
         * owner never had, and took the space over again with it). It goes
         * pending again, but only when the caller knows that no SETTLE
         * follows (PM_RECORDS_PENDING_AT_OWNER: the next record of the same
         * message is another one): a transfer cut between the two must not
         * take an acknowledged outcome back. */
        pm_prom_t *q = pm_store_get(store, p->id);
        if (q && !(passive == PM_RECORDS_PENDING_AT_OWNER && q->state != PM_STATE_PENDING &&
                   s_replace_stale(store, q)))
            return PM_RECORD_REDUNDANT;
        err = s_create(store, p, passive != 0);
        break;
    }
    case PM_REC_SETTLE: {
        pm_prom_t *q = pm_store_get(store, p->id);
        int already = q && q->state != PM_STATE_PENDING;
        err = s_settle(store, p);
        if (err == PM_ERR_ALREADY_SETTLED && passive && s_replace_stale(store, q)) {
            /* The owner's outcome, over a stale one of our copy. */
            pm_wire_promise_t pending = *p;
            pending.state = PM_STATE_PENDING;
            err = s_create(store, &pending, passive);
            if (err >= 0)
                err = s_settle(store, p);
            already = 0;
        }
        if (!err && already)
            return PM_RECORD_REDUNDANT; /* the same outcome again */
        break;
    }
    case PM_REC_HEARTBEAT:
        err = pm_store_apply_heartbeat(store, p->id, p->heartbeat_at_ms);
        break;
    case PM_REC_DROP:
        if (!pm_store_get(store, p->id))
            return PM_RECORD_REDUNDANT;
        err = pm_store_drop(store, p->id);
        break;
    default:
        return PM_ERR_BAD_REQUEST;
    }
    if (err == PM_ERR_INTERNAL)
        pm_oom("applying a record to the store");
    return err;
}

void
pm_records_view(const pm_prom_t *p, pm_wire_promise_t *v)
{
    memset(v, 0, sizeof *v);
    v->id = p->id;
    v->state = p->state;
    if (p->state == PM_STATE_RESOLVED) {
        v->value = p->data;
        v->value_len = p->data_len;
    } else if (p->data) {
        v->reason = (const char *) p->data;
    }
    v->created_ms = p->created_ms;
    v->settled_ms = p->settled_ms;
    v->timeout_at_ms = p->timeout_at;
    v->heartbeat_ms = p->heartbeat_ms;
    v->heartbeat_at_ms = p->state == PM_STATE_PENDING ? p->heartbeat_at : 0;
    if (p->extra) {
        v->key = p->extra->key;
        v->label_count = p->extra->label_count;
        v->labels = p->extra->labels;
    }
}

void
pm_records_of_promise(const pm_prom_t *p, pm_records_emit_fn *emit, void *arg)
{
    pm_rec_t rec = {.kind = PM_REC_CREATE};
    pm_records_view(p, &rec.promise);
    if (p->state != PM_STATE_PENDING) {
        rec.promise.state = PM_STATE_PENDING;
        emit(arg, &rec);
        pm_records_view(p, &rec.promise);
        rec.kind = PM_REC_SETTLE;
    }
    emit(arg, &rec);
}

void
pm_cont_init(pm_cont_t *c, const pm_rec_t *rec)
{
    memset(c, 0, sizeof *c);
    c->q = pm_xstrdup(rec->kind == PM_REC_COMBINE ? rec->promise.id : rec->target, "continuation");
    if (rec->kind == PM_REC_COMBINE) {
        c->combinator = rec->combinator;
        c->n_inputs = rec->input_count;
        c->inputs = pm_xcalloc(rec->input_count ? rec->input_count : 1, sizeof *c->inputs,
                               "combinator inputs");
        for (size_t i = 0; i < rec->input_count; i++)
            c->inputs[i] = pm_xstrdup(rec->inputs[i], "combinator input");
        return;
    }
    c->p = pm_xstrdup(rec->promise.id, "continuation");
    c->function = pm_xstrdup(rec->function ? rec->function : "", "continuation");
    if (rec->on_reject)
        c->on_reject = pm_xstrdup(rec->on_reject, "continuation");
}

void
pm_cont_clear(pm_cont_t *c)
{
    free(c->p);
    free(c->function);
    free(c->on_reject);
    for (size_t i = 0; i < c->n_inputs; i++)
        free(c->inputs[i]);
    free(c->inputs);
    free(c->q);
    memset(c, 0, sizeof *c);
}

pm_rec_t
pm_cont_rec(const pm_cont_t *c)
{
    if (c->combinator) {
        pm_rec_t rec = {.kind = PM_REC_COMBINE, .combinator = c->combinator,
                        .input_count = c->n_inputs, .inputs = (const char *const *) c->inputs};
        rec.promise.id = c->q;
        return rec;
    }
    pm_rec_t rec = pm_records_then(c->p, c->function, c->q);
    rec.on_reject = c->on_reject;
    return rec;
}

pm_rec_t
pm_records_then(const char *p, const char *function, const char *q)
{
    pm_rec_t rec = {.kind = PM_REC_THEN, .function = function, .target = q};
    rec.promise.id = p;
    return rec;
}
