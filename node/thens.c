/*
 * thens.c - continuations: a then watches its source until it settles, runs
 * its function (or rejects its target), then watches the target; the
 * continuations of spaces we back up are kept (pm_rthen_t) for a takeover.
 */

#include "thens.h"

#include "fanins.h"
#include "place.h"
#include "relay.h"
#include "requests.h"
#include "waiters.h"

void
pm_then_free(pm_then_t *t)
{
    free(t->function);
    free(t->on_reject);
    free(t->source);
    free(t);
}

void
pm_then_unlink(pm_agent_t *self, pm_then_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        self->thens = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

/* The continuation's target settled: nothing more to remember. */
static void
s_then_done(pm_watch_t *watch, pm_prom_t *q)
{
    (void) q;
    pm_then_t *t = (pm_then_t *) watch;
    pm_then_unlink(t->agent, t);
    pm_then_free(t);
}

/* Runs function on the source's outcome at once: the invocation overlaps
 * the durability of the settle that fired it, and its result is what waits
 * (place.c: it settles the target only when that settle is durable here and
 * at the backups, and only while this agent still serves the spaces in the
 * epoch it placed it in). */
static void
s_place(pm_agent_t *self, const char *source, const char *function, const uint8_t *input,
        size_t len, const char *target)
{
    pm_place_then(self, source, function, input, len, target);
}

static void
s_then_fired(pm_watch_t *watch, pm_prom_t *p)
{
    pm_then_t *t = (pm_then_t *) watch;
    pm_agent_t *self = t->agent;
    if (p->state == PM_STATE_RESOLVED) {
        s_place(self, p->id, t->function, p->data, p->data_len, t->target);
    } else if (t->on_reject) {
        /* The chain recovers: the handler gets the reason as its input. */
        s_place(self, p->id, t->on_reject, p->data, p->data ? p->data_len : 0, t->target);
    } else {
        /* The chain stops here: say which link failed and why. */
        char why[512];
        int n = snprintf(why, sizeof why, "%s %s: %s", p->id, pm_state_name(p->state),
                         p->data ? (const char *) p->data : "");
        if (n >= (int) sizeof why)
            n = sizeof why - 1;
        pm_store_settle(self->store, t->target, PM_STATE_REJECTED, why, (size_t) n, self->now_real,
                        NULL);
    }
    pm_prom_t *q = pm_store_get(self->store, t->target);
    if (q && q->state == PM_STATE_PENDING) {
        pm_store_watch(q, &t->watch, s_then_done);
        return;
    }
    pm_then_unlink(self, t);
    pm_then_free(t);
}

void
pm_then_early(pm_agent_t *self, pm_prom_t *q, int state, const uint8_t *data, size_t len)
{
    for (pm_watch_t *w = q->watches; w; w = w->next) {
        if (w->fn != s_then_fired)
            continue;
        pm_then_t *t = (pm_then_t *) w;
        const char *fn = state == PM_STATE_RESOLVED ? t->function : t->on_reject;
        if (fn)
            pm_place_early(self, q->id, fn, data, len, t->target);
    }
}

size_t
pm_then_each_on(pm_prom_t *p, pm_then_each_fn *each, void *arg)
{
    size_t n = 0;
    for (pm_watch_t *w = p->watches; w; w = w->next)
        if (w->fn == s_then_fired) {
            pm_then_t *t = (pm_then_t *) w;
            each(arg, p->id, t->function, t->target);
            n++;
        }
    return n;
}

/* ---- sources served elsewhere ----------------------------------------------
 *
 * A then whose source's id space moved to another agent while its target's
 * stayed here cannot watch our copy of the source: that copy is passive and
 * never hears the source settle or time out at its new owner, so the target
 * stayed pending for good (pmesh-sim seed 7972; also why R5 in place.c does
 * not cover a source whose space moves before it settles). It subscribes to
 * the source at its owner instead, sharing the one remote-await
 * subscription per id of waiters.c with awaits and combinators, and fires
 * on the owner's answer, which the owner sends only once the outcome is
 * durable there and at its backups. An error answer (the owner unreachable,
 * the space being taken over, a not-found from an owner that has not
 * received it yet) is no outcome: it subscribes again a second later (the
 * target's own timeout bounds the wait). */
#define S_RSRC_RETRY_MS 1000

typedef struct s_rsrc {
    pm_watch_t *head;  /* the thens' watches */
    pm_timer_t retry;  /* armed: subscribed again then (agent's then_timers) */
    pm_agent_t *agent;
    char id[];
} s_rsrc_t;

static void
s_rsrc_destructor(void **item)
{
    s_rsrc_t *e = *item;
    while (e->head)
        pm_watch_cancel(e->head);
    pm_timers_cancel(e->agent->then_timers, &e->retry);
    free(e);
    *item = NULL;
}

/* e is subscribed again a second from now (pm_then_tick). */
static void
s_rsrc_retry(pm_agent_t *self, s_rsrc_t *e)
{
    if (pm_timers_set(self->then_timers, &e->retry, self->now_mono + S_RSRC_RETRY_MS) != 0)
        pm_oom("remote source retry");
}

static void
s_rsrc_subscribe(pm_agent_t *self, s_rsrc_t *e)
{
    const char *id = e->id;
    if (zhashx_lookup(self->rwaits, id))
        return; /* an await or a combinator subscribed already: its answer comes here too */
    const char *node = NULL;
    pm_route_t route = pm_relay_route_of(self, id, &node);
    if (route == PM_ROUTE_LOCAL) {
        pm_then_local(self, id);
        return;
    }
    pm_msg_t sub = {.type = PM_MSG_AWAIT, .id = id, .timeout_ms = -1};
    pm_waiter_subscribe(self, &sub, route == PM_ROUTE_REMOTE ? node : NULL,
                        route == PM_ROUTE_UNKNOWN);
}

/* t (not watching) waits for its source at the source's owner. */
static void
s_watch_source_remote(pm_agent_t *self, pm_then_t *t)
{
    if (!self->then_rsrcs) {
        self->then_rsrcs = zhashx_new();
        self->then_timers = pm_timers_new();
        if (!self->then_rsrcs || !self->then_timers)
            pm_oom("remote sources");
        zhashx_set_destructor(self->then_rsrcs, s_rsrc_destructor);
    }
    s_rsrc_t *e = zhashx_lookup(self->then_rsrcs, t->source);
    int fresh = !e;
    if (fresh) {
        size_t n = strlen(t->source);
        e = pm_xcalloc(1, sizeof *e + n + 1, "remote source");
        e->agent = self;
        memcpy(e->id, t->source, n + 1);
        zhashx_insert(self->then_rsrcs, e->id, e);
    }
    pm_watch_link(&e->head, &t->watch, s_then_fired);
    pm_log(PM_LOG_DEBUG, "PM-THEN-REMOTE-SOURCE", t->target,
           "its source %s is served elsewhere: subscribed to it there", t->source);
    if (fresh)
        s_rsrc_subscribe(self, e);
}

void
pm_then_source_moved(pm_agent_t *self, const char *prefix)
{
    size_t plen = strlen(prefix);
    for (pm_then_t *t = self->thens; t; t = t->next) {
        if (t->watch.fn != s_then_fired || !t->watch.pprev ||
            strncmp(t->source, prefix, plen) != 0 || !pm_req_serves(self, t->target))
            continue;
        pm_watch_cancel(&t->watch);
        s_watch_source_remote(self, t);
    }
}

void
pm_then_heard(pm_agent_t *self, const char *pid, const pm_msg_t *reply, int err)
{
    (void) err; /* any error is no outcome: asked again */
    s_rsrc_t *e = self->then_rsrcs ? zhashx_lookup(self->then_rsrcs, pid) : NULL;
    if (!e)
        return;
    if (!e->head) {
        zhashx_delete(self->then_rsrcs, pid);
        return;
    }
    const pm_wire_promise_t *w = reply && !reply->err ? reply->promise : NULL;
    if (!w || w->state == PM_STATE_PENDING) {
        s_rsrc_retry(self, e);
        return;
    }
    /* The owner's outcome, as the watch of a local promise would see it. */
    const void *data = w->state == PM_STATE_RESOLVED ? (const void *) w->value : w->reason;
    size_t len = w->state == PM_STATE_RESOLVED ? (w->value ? w->value_len : 0)
                                               : (w->reason ? strlen(w->reason) : 0);
    size_t n = strlen(pid);
    pm_prom_t *p = pm_xcalloc(1, sizeof *p + n + 1, "remote source");
    memcpy(p->id, pid, n + 1);
    p->id_len = (uint16_t) n;
    p->state = (uint8_t) w->state;
    p->data = pm_xmalloc(len + 1, "remote source");
    if (len)
        memcpy(p->data, data, len);
    p->data[len] = 0;
    p->data_len = (uint32_t) len;
    while (e->head) {
        pm_watch_t *x = e->head;
        pm_watch_cancel(x);
        s_then_fired(x, p);
    }
    zhashx_delete(self->then_rsrcs, pid);
    free(p->data);
    free(p);
}

int
pm_then_listening(pm_agent_t *self, const char *pid)
{
    s_rsrc_t *e = self->then_rsrcs ? zhashx_lookup(self->then_rsrcs, pid) : NULL;
    return e && e->head;
}

void
pm_then_local(pm_agent_t *self, const char *pid)
{
    s_rsrc_t *e = self->then_rsrcs ? zhashx_lookup(self->then_rsrcs, pid) : NULL;
    if (!e)
        return;
    pm_prom_t *p = pm_store_get(self->store, pid);
    if (!p) {
        s_rsrc_retry(self, e);
        return;
    }
    /* (Watched here as routing says, not through s_then_start's check.) */
    while (e->head) {
        pm_then_t *t = (pm_then_t *) e->head;
        pm_watch_cancel(&t->watch);
        if (p->state == PM_STATE_PENDING)
            pm_store_watch(p, &t->watch, s_then_fired);
        else
            s_then_fired(&t->watch, p);
    }
    zhashx_delete(self->then_rsrcs, pid);
}

void
pm_then_tick(pm_agent_t *self, int64_t mono)
{
    if (!self->then_timers)
        return;
    pm_timer_t *t;
    while ((t = pm_timers_pop_due(self->then_timers, mono))) {
        s_rsrc_t *e = pm_container_of(t, s_rsrc_t, retry);
        if (e->head)
            s_rsrc_subscribe(self, e); /* (may forget e: pm_then_local) */
        else
            zhashx_delete(self->then_rsrcs, e->id);
    }
}

void
pm_then_destroy_remote(pm_agent_t *self)
{
    zhashx_destroy(&self->then_rsrcs); /* cancels their retry timers: the heap goes after */
    pm_timers_destroy(&self->then_timers);
}

/* A continuation (src -> function -> q), registered with the agent. */
static pm_then_t *
s_then_new(pm_agent_t *self, const char *src, const char *function, const char *on_reject,
           const char *q)
{
    size_t n = strlen(q);
    pm_then_t *t = pm_xcalloc(1, sizeof *t + n + 1, "continuation");
    memcpy(t->target, q, n + 1);
    t->agent = self;
    t->function = pm_xstrdup(function, "continuation");
    if (on_reject && *on_reject)
        t->on_reject = pm_xstrdup(on_reject, "continuation");
    t->source = pm_xstrdup(src, "continuation");
    t->next = self->thens;
    if (self->thens)
        self->thens->prev = t;
    self->thens = t;
    return t;
}

/* Chains t on its source p: watches it while pending, runs at once if not.
 * A pending p whose space another agent serves (a continuation revived
 * from the WAL or a backed-up copy after that space moved on) is our copy,
 * which never hears it settle: t waits for it at its owner. */
static void
s_then_start(pm_then_t *t, pm_prom_t *p)
{
    if (p->state == PM_STATE_PENDING && t->agent->mesh && !pm_req_serves(t->agent, p->id))
        s_watch_source_remote(t->agent, t);
    else if (p->state == PM_STATE_PENDING)
        pm_store_watch(p, &t->watch, s_then_fired);
    else
        s_then_fired(&t->watch, p);
}

/* Continuations from the WAL whose target still waits: chained again on a
 * pending source; run again (at-least-once) when the source had resolved, as
 * their invocation may have been lost with the last run; rejected when the
 * source failed. */
void
pm_then_revive(pm_agent_t *self, const pm_cont_t *c)
{
    if (c->combinator) {
        pm_fanins_revive(self, c);
        return;
    }
    const char *src = c->p;
    pm_then_t *t = s_then_new(self, src, c->function, c->on_reject, c->q);
    pm_prom_t *p = pm_store_get(self->store, src);
    if (p) {
        s_then_start(t, p);
    } else {
        const char *why = "source promise is gone";
        pm_store_settle(self->store, t->target, PM_STATE_REJECTED, why, strlen(why),
                        self->now_real, NULL);
    }
}

/* Continuations from the WAL whose target still waits: those of spaces we
 * serve are chained again on a pending source, run again (at-least-once)
 * when the source had resolved, as their invocation may have been lost with
 * the last run, and rejected when the source failed; the others are kept
 * for a takeover. */
size_t
pm_then_restore(pm_agent_t *self, const pm_journal_state_t *st)
{
    char space[PM_WIRE_MAX_NAME + 1];
    for (size_t i = 0; i < st->then_count; i++) {
        const pm_journal_then_t *jt = &st->thens[i];
        pm_id_space(jt->q, space, sizeof space);
        if (!self->mesh ? strcmp(space, self->space) == 0 : pm_mesh_owns(self->mesh, space, NULL))
            pm_then_revive(self, jt);
        else
            pm_then_rthen_add(self, jt);
    }
    return st->then_count;
}

void
pm_then_rthen_destructor(void **item)
{
    pm_rthen_t *t = *item;
    pm_cont_clear(&t->c);
    free(t);
    *item = NULL;
}

void
pm_then_rthen_add(pm_agent_t *self, const pm_cont_t *c)
{
    if (zhashx_lookup(self->rthens, c->q))
        return;
    pm_rthen_t *t = pm_xcalloc(1, sizeof *t, "backed-up continuation");
    pm_rec_t rec = pm_cont_rec(c);
    pm_cont_init(&t->c, &rec);
    zhashx_insert(self->rthens, t->c.q, t);
}

pm_rec_t
pm_then_rec(const pm_then_t *t)
{
    pm_rec_t rec = pm_records_then(t->source, t->function, t->target);
    rec.on_reject = t->on_reject;
    return rec;
}

int
pm_then_do(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now)
{
    if (!m->function || !*m->function)
        return PM_ERR_BAD_REQUEST;
    pm_prom_t *p = pm_store_get(self->store, m->id);
    if (!p)
        return PM_ERR_NOT_FOUND;
    /* A peer relays ids its client minted in our space under the peer's
     * lease (<our space>~<their space>~...); a local client mints under its
     * own lease. Either way the id cannot clash with ours. (A peer mints in
     * the source's space: ours, under its own lease; or one we took over,
     * whose former owner's clients mint there.) */
    /* (A local client whose source lives in a space we took over mints
     * <that space>~<its lease><n>, as for a remote owner: relay.c takes the
     * same form.) */
    size_t plen = pm_id_space_len(p->id);
    int ok = !m->new_id ||
             (s->peer ? (pm_id_nested_in(m->new_id, self->space, strlen(self->space)) ||
                         pm_id_nested_in(m->new_id, self->mint, strlen(self->mint)) ||
                         (pm_id_same_space(m->new_id, p->id) &&
                          pm_req_owned_space(self, m->new_id)))
                      : (pm_req_minted_by(s, m->new_id) ||
                         (pm_id_same_space(m->new_id, p->id) &&
                          pm_req_minted_by(s, m->new_id + plen + 1))));
    char id[PM_WIRE_MAX_NAME + 1];
    const char *new_id = m->new_id;
    char nested[PM_WIRE_MAX_NAME + 1];
    if (!new_id && self->replica && !pm_mesh_owns(self->mesh, self->mint, NULL)) {
        /* The space we mint in was taken over while we were cut off (fenced,
         * not restarted): a q minted there would live only here, and the
         * space's owner would never hear of it (pmesh-sim seed 7). Mint it
         * in p's space, which we serve, nested under our own space: nobody
         * else mints there (ids.h). */
        char inner[PM_WIRE_MAX_NAME + 1];
        pm_req_mint(self, inner, sizeof inner);
        if (snprintf(nested, sizeof nested, "%.*s~%s", (int) pm_id_space_len(p->id), p->id,
                     inner) >= (int) sizeof nested)
            return PM_ERR_BAD_REQUEST;
        new_id = nested;
        ok = 1;
    }
    pm_prom_t *q;
    int err = pm_req_create_new(self, new_id, ok, m->timeout_ms, now, id, sizeof id, &q);
    if (err)
        return err;
    pm_then_t *t = s_then_new(self, p->id, m->function, m->on_reject, id);
    if (self->journal) {
        pm_rec_t rec = pm_then_rec(t);
        pm_journal_cont(self->journal, &rec);
    }
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .id = id, .created = 1};
    pm_agent_send(self, s, &r);
    s_then_start(t, p);
    return PM_OK;
}
