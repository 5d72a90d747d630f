/*
 * fanins.c - see fanins.h.
 */
#include "fanins.h"

#include "fanin.h"
#include "relay.h"
#include "thens.h"
#include "requests.h"
#include "waiters.h"
#include "steptrace.h"

/* One input's subscription: its watch is on the local input promise, or on
 * the list of subscribers of a remote input (comb_subs). */
typedef struct pm_fanin_sub {
    pm_watch_t watch;
    pm_comb_t *comb;
    size_t i;
    pm_timer_t retry; /* not found yet: asked again then (agent's fanin_timers) */
    int final;        /* its wait is over: the next lookup at its owner is final */
} pm_fanin_sub_t;

/* An input not found at its owner may not exist *yet*: a pipelined then or
 * create that mints it can reach its owner after the combinator's
 * subscription (a takeover parks both, and re-sends them in no particular
 * order). It is asked again, 100 ms doubling to 1.6 s, until this long has
 * passed since the combinator started (fanin_not_found_wait). Then its owner
 * is asked for a final answer (pm_fanins_tombstone): no time bound can tell
 * "not made" from "not made yet" (clocks and delays are unbounded), only the
 * owner, who serializes the input's creation with that answer, can. */
#define S_NOT_FOUND_WAIT_MS 10000
#define S_RETRY_MIN_MS 100
#define S_RETRY_MAX_MS 1600

/* The subscribers of one remote input id. */
typedef struct s_subs {
    pm_watch_t *head;
    unsigned asked; /* the outcomes its owner was asked early copies of (fanin.h) */
    char id[];
} s_subs_t;

struct pm_comb {
    pm_watch_t watch; /* on q: when q settles (from here, or its own timeout) we are done */
    pm_agent_t *agent;
    pm_fanin_t *f;
    pm_fanin_sub_t *subs; /* f->n */
    int64_t started;      /* monotonic ms: when this process started it */
    int busy;             /* subscribing: a settlement now only marks it dead */
    int dead;
    /* Its early guess: what it heard plus the tentative outcomes of inputs
     * whose settle is not durable yet (pm_fanins_tentative); once that
     * decides, q's continuations are started early (once). */
    pm_fanin_t *early;
    int early_done;
    char q[];
};

static void
s_comb_destructor(void **item)
{
    pm_comb_t *c = *item;
    pm_watch_cancel(&c->watch);
    for (size_t i = 0; i < c->f->n; i++) {
        pm_watch_cancel(&c->subs[i].watch);
        pm_timers_cancel(c->agent->fanin_timers, &c->subs[i].retry);
    }
    pm_fanin_destroy(&c->f);
    pm_fanin_destroy(&c->early);
    free(c->subs);
    free(c);
    *item = NULL;
}

static void
s_subs_destructor(void **item)
{
    s_subs_t *e = *item;
    while (e->head)
        pm_watch_cancel(e->head);
    free(e);
    *item = NULL;
}

static void
s_init(pm_agent_t *self)
{
    if (self->combs)
        return;
    self->combs = zhashx_new();
    self->comb_subs = zhashx_new();
    if (!self->combs || !self->comb_subs)
        pm_oom("combinator tables");
    self->fanin_timers = pm_timers_new();
    if (!self->fanin_timers)
        pm_oom("combinator timers");
    zhashx_set_destructor(self->combs, s_comb_destructor);
    zhashx_set_destructor(self->comb_subs, s_subs_destructor);
    if (!self->max_fanin)
        self->max_fanin = PM_FANIN_MAX_INPUTS;
}

/* q settled: the combinator is over. */
static void
s_q_settled(pm_watch_t *watch, pm_prom_t *q)
{
    (void) q;
    pm_comb_t *c = (pm_comb_t *) watch;
    if (c->busy) {
        c->dead = 1;
        return;
    }
    zhashx_delete(c->agent->combs, c->q);
}

/* Settles q with what the rules decided. c may be freed on return. */
static void
s_settle(pm_agent_t *self, pm_comb_t *c, pm_fanin_outcome_t *o)
{
    char q[PM_WIRE_MAX_NAME + 1];
    snprintf(q, sizeof q, "%s", c->q);
    PM_STEPTRACE_MARK("f_settle", q, strlen(q));
    int err;
    if (o->state == PM_STATE_TIMEDOUT) /* race: as its first input settled */
        err = pm_store_apply_settle(self->store, q, o->state, o->data, o->len, self->now_real);
    else
        err = pm_store_settle(self->store, q, o->state, o->data, o->len, self->now_real, NULL);
    free(o->data);
    o->data = NULL;
    if (err && err != PM_ERR_ALREADY_SETTLED && err != PM_ERR_TIMED_OUT) {
        /* The outcome cannot be stored as it is (a reason with a NUL): say so
         * rather than leave q pending for ever. */
        char why[128];
        int n = snprintf(why, sizeof why, "combinator could not settle: %s", pm_err_name(err));
        pm_log_warn("PM-COMBINE-SETTLE", "%s: %s", q, pm_err_name(err));
        pm_store_settle(self->store, q, PM_STATE_REJECTED, why, (size_t) n, self->now_real, NULL);
    }
}

/* Input i of c is heard in c's early guess (tentatively, or for good):
 * once the guess decides, the functions of q's continuations are started
 * on it (thens.c, pm_then_early), before q settles. That shows nothing:
 * their results wait until q settled with exactly that outcome, which only
 * durable inputs decide (place.c); a guess an input's real outcome
 * contradicts (its owner died before making it durable) starts a function
 * for nothing, and q's real outcome starts it again. */
static void
s_hear_early(pm_agent_t *self, pm_comb_t *c, size_t i, int state, const void *data, size_t len)
{
    if (c->early_done)
        return;
    if (!c->early)
        c->early = pm_fanin_clone(c->f);
    pm_fanin_outcome_t o = {0};
    if (pm_fanin_hear(c->early, i, state, data, len, &o) != 1)
        return;
    c->early_done = 1;
    pm_prom_t *q = pm_store_get(self->store, c->q);
    if (q && q->state == PM_STATE_PENDING)
        pm_then_early(self, q, o.state, (const uint8_t *) o.data, o.data ? o.len : 0);
    free(o.data);
}

/* Whether combinators here ask for early copies at all: fanin_early, and
 * answers are held somewhere (a WAL, or backups). An agent with neither
 * (--replicas 1, no data dir) holds nothing, and its peers, configured
 * alike, send no early copy: asking would cost a message for nothing. */
static int
s_early_wanted(const pm_agent_t *self)
{
    return self->fanin_early && self->journal;
}

/* The outcomes of input i that c wants an early copy of from its owner
 * (fanin_early): every one with fanin_early_copies=every; else those that
 * decide c (an early copy costs a second settlement message, and only
 * the input that decides c starts its continuation): a failure for all, a
 * resolve for any, every outcome for race and for the input c waits for
 * last (s_ask_last), none for all-settled's others. */
static unsigned
s_early_states(const pm_agent_t *self, const pm_comb_t *c, size_t i)
{
    if (!s_early_wanted(self) || c->early_done)
        return 0;
    if (self->fanin_early_every)
        return PM_FANIN_EVERY;
    long last = pm_fanin_last_pending(c->early ? c->early : c->f);
    if (last >= 0 && strcmp(c->f->ids[last], c->f->ids[i]) == 0)
        return PM_FANIN_EVERY;
    return pm_fanin_decides(c->f->kind);
}

/* c heard an input (heard: its id): if one input is all c waits for now,
 * whatever it settles with decides c, so its owner is asked for an early
 * copy of every outcome (its subscription, sent again wider). So a
 * combinator costs one settlement message per input and one more for its
 * last, and its continuation still starts one mesh hop after the last
 * input settles (PROTOCOL.md 5a). */
static void
s_ask_last(pm_agent_t *self, pm_comb_t *c, const char *heard)
{
    if (!s_early_wanted(self) || self->fanin_early_every || c->early_done || !self->comb_subs)
        return;
    long last = pm_fanin_last_pending(c->early ? c->early : c->f);
    if (last < 0)
        return;
    const char *id = c->f->ids[last];
    if (heard && strcmp(id, heard) == 0)
        return; /* its other positions are being heard now */
    s_subs_t *e = zhashx_lookup(self->comb_subs, id);
    if (!e || !(PM_FANIN_EVERY & ~e->asked))
        return; /* ours (watched here), or asked already */
    e->asked = PM_FANIN_EVERY;
    self->fanin_last_asked++;
    pm_waiter_widen(self, id, e->asked);
}

/* Input i of c settled (the first outcome heard for it wins). c may be
 * freed on return. */
static void
s_hear(pm_agent_t *self, pm_comb_t *c, size_t i, int state, const void *data, size_t len)
{
    pm_fanin_outcome_t o = {0};
    if (pm_fanin_hear(c->f, i, state, data, len, &o) == 1) {
        s_settle(self, c, &o);
        return;
    }
    if (c->early)
        s_hear_early(self, c, i, state, data, len);
    s_ask_last(self, c, c->f->ids[i]);
}

/* An input that cannot be heard (missing, its owner lost) fails with why. */
static void
s_hear_err(pm_agent_t *self, pm_comb_t *c, size_t i, int err, const char *message)
{
    char why[PM_WIRE_MAX_NAME + 200];
    int n = snprintf(why, sizeof why, "%s %s: %s", c->f->ids[i], pm_err_name(err),
                     message && *message ? message : pm_strerror(err));
    if (n >= (int) sizeof why)
        n = sizeof why - 1;
    s_hear(self, c, i, PM_STATE_REJECTED, why, (size_t) n);
}

static int64_t
s_not_found_wait(const pm_agent_t *self)
{
    return self->fanin_not_found_wait > 0 ? self->fanin_not_found_wait : S_NOT_FOUND_WAIT_MS;
}

/* Input i is looked up again delay ms from now (pm_fanins_fire). */
static void
s_retry_in(pm_agent_t *self, pm_comb_t *c, size_t i, int64_t delay)
{
    if (pm_timers_set(self->fanin_timers, &c->subs[i].retry, self->now_mono + delay) != 0)
        pm_oom("combinator retry");
}

/* Input i could not be heard for a while (its owner unreachable, its space
 * unavailable or being taken over, ...): that is no outcome of the input,
 * which may well settle (or have settled) with one of its own, so it is
 * asked again (the same backoff as a missing input, without the deadline:
 * the combinator's own timeout bounds the wait). Hearing such an error as a
 * rejection would make the combinator read an outcome its inputs do not
 * give (found by the simulator, tests/sim: seeds 107, 116, 117). */
static void
s_retry(pm_agent_t *self, pm_comb_t *c, size_t i)
{
    int64_t waited = self->now_mono - c->started;
    int64_t delay = S_RETRY_MIN_MS;
    while (delay < S_RETRY_MAX_MS && delay < waited)
        delay *= 2;
    s_retry_in(self, c, i, delay);
}

/* Input i was not found at its owner (a plain answer, which says nothing
 * final: it may be made later): asked again later; once the wait is over
 * (fanin_not_found_wait), at once and for a final answer. An owner that
 * answers a final lookup NOT_FOUND again (it could not record it: a pmesh
 * that ignores the flag) is asked again with the backoff: a combinator is
 * never decided from a plain "not found" (its own timeout bounds it). */
static void
s_not_found(pm_agent_t *self, pm_comb_t *c, size_t i)
{
    if (!c->subs[i].final && self->now_mono - c->started >= s_not_found_wait(self)) {
        c->subs[i].final = 1;
        s_retry_in(self, c, i, 0);
        return;
    }
    s_retry(self, c, i);
}

/* Input i's space is served by nobody we know of (relay.c gave up waiting
 * to hear of it): there is no owner to ask for a final answer, so it is
 * NOT_FOUND once the wait is over, as the id of an unknown space. */
static void
s_not_found_unowned(pm_agent_t *self, pm_comb_t *c, size_t i, const char *message)
{
    if (self->now_mono - c->started >= s_not_found_wait(self)) {
        s_hear_err(self, c, i, PM_ERR_NOT_FOUND, message);
        return;
    }
    s_retry(self, c, i);
}

/*
 * Makes "no promise id" final at its owner (us): q is created as an ordinary
 * promise and rejected at once with PM_FANIN_NOT_FOUND_REASON, through the store
 * like any create and settle, so both are journalled and replicated, and
 * every reply that shows them (the answer to the combinator's final lookup,
 * the combinator's own outcome) is held until they are durable here and at
 * the in-sync backups (agent.c). If id exists, *out is it, unchanged.
 *
 * Why this is sound: the owner of id's space is the one place that can
 * mint id (a create with that id, a then or combinator whose new id it is:
 * each goes to that owner and finds its store), and it runs one request at
 * a time, so "mint id" and "id is not found" are ordered there: whichever
 * comes first wins, and the other finds id existing (the store refuses a
 * second create of an id: BAD_REQUEST, and a then or combinator then
 * registers nothing, so no continuation ever runs into it). Both are
 * durable before anyone hears of them, and a takeover replays the owner's
 * records in order, so an heir makes the same choice (it has the tombstone
 * if anyone heard of it; if it has neither, nobody heard of either). A late
 * then or create that minted id and was answered UNAVAILABLE ("may or may
 * not have happened") is refused when it is re-sent, without effect. (Like
 * every settled promise, the record is kept for `retention`, 24 h by
 * default, far beyond any re-send: forward_timeout bounds those.)
 */
int
pm_fanins_tombstone(pm_agent_t *self, const char *id, pm_prom_t **out)
{
    pm_prom_t *p = pm_store_get(self->store, id);
    if (p) {
        *out = p;
        return PM_OK;
    }
    pm_create_args_t a = {.id = id};
    int err = pm_store_create(self->store, &a, self->now_real, &p, NULL);
    if (err)
        return err;
    err = pm_store_settle(self->store, id, PM_STATE_REJECTED, PM_FANIN_NOT_FOUND_REASON,
                          strlen(PM_FANIN_NOT_FOUND_REASON), self->now_real, NULL);
    if (err)
        return err;
    pm_log_info("PM-COMBINE-NOT-FOUND", "%s: a combinator's final lookup found no such promise: "
                "recorded as rejected NOT_FOUND", id);
    *out = pm_store_get(self->store, id);
    return *out ? PM_OK : PM_ERR_INTERNAL;
}

static void
s_hear_prom(pm_agent_t *self, pm_comb_t *c, size_t i, const pm_prom_t *p)
{
    s_hear(self, c, i, p->state, p->data, p->data ? p->data_len : 0);
}

static void
s_local_fired(pm_watch_t *watch, pm_prom_t *p)
{
    pm_fanin_sub_t *sub = (pm_fanin_sub_t *) watch;
    s_hear_prom(sub->comb->agent, sub->comb, sub->i, p);
}

/* Input i is ours: watch it, or hear it now. Missing once the wait is over,
 * it is recorded here as never made (pm_fanins_tombstone), as its owner
 * would for another agent's combinator, and heard as such. */
static void
s_watch_local(pm_agent_t *self, pm_comb_t *c, size_t i)
{
    pm_prom_t *p = pm_store_get(self->store, c->f->ids[i]);
    if (!p && self->now_mono - c->started < s_not_found_wait(self)) {
        s_retry(self, c, i);
        return;
    }
    int err = p ? PM_OK : pm_fanins_tombstone(self, c->f->ids[i], &p);
    if (err) /* an id no promise can have (too long, ...): never made, for good */
        s_hear_err(self, c, i, PM_ERR_NOT_FOUND, NULL);
    else if (p->state == PM_STATE_PENDING)
        pm_store_watch(p, &c->subs[i].watch, s_local_fired);
    else
        s_hear_prom(self, c, i, p);
}

/* Input i lives elsewhere: join (or open) the one subscription at its owner.
 * node is its owner, or NULL when the owner is being taken over (or, just
 * started, not heard of yet: unknown) and the subscription waits parked. */
static void
s_watch_remote(pm_agent_t *self, pm_comb_t *c, size_t i, const char *node, int unknown)
{
    /* (An await's subscription already there, not final, may be answered
     * NOT_FOUND: s_not_found asks again, with the final flag, once it is
     * gone.) */
    const char *id = c->f->ids[i];
    s_subs_t *e = zhashx_lookup(self->comb_subs, id);
    if (!e) {
        size_t n = strlen(id);
        e = pm_xcalloc(1, sizeof *e + n + 1, "combinator subscription");
        memcpy(e->id, id, n + 1);
        zhashx_insert(self->comb_subs, e->id, e);
    }
    pm_watch_link(&e->head, &c->subs[i].watch, NULL);
    unsigned want = s_early_states(self, c, i);
    if (zhashx_lookup(self->rwaits, id)) {
        /* An await (or another combinator) subscribed already: it asks
         * for what we want too. */
        if (want & ~e->asked) {
            e->asked |= want;
            pm_waiter_widen(self, id, e->asked);
        }
        return;
    }
    e->asked = want;
    pm_msg_t sub = {.type = PM_MSG_AWAIT, .id = id, .timeout_ms = -1, .final = c->subs[i].final,
                    .tentative_ok = want == PM_FANIN_EVERY, .tentative_states = want};
    pm_waiter_subscribe(self, &sub, node, unknown);
}

static void
s_subscribe(pm_agent_t *self, pm_comb_t *c, size_t i)
{
    const char *node = NULL;
    pm_route_t route = self->mesh ? pm_relay_route_of(self, c->f->ids[i], &node)
                                  : PM_ROUTE_LOCAL;
    switch (route) {
    case PM_ROUTE_LOCAL:
        s_watch_local(self, c, i);
        return;
    case PM_ROUTE_REMOTE:
        s_watch_remote(self, c, i, node, 0);
        return;
    case PM_ROUTE_LOST:
        if (self->replica)
            s_watch_remote(self, c, i, NULL, 0);
        else
            s_hear_err(self, c, i, PM_ERR_OWNER_LOST, NULL);
        return;
    case PM_ROUTE_UNKNOWN:
        if (self->replica)
            s_watch_remote(self, c, i, NULL, 1);
        else
            s_hear_err(self, c, i, PM_ERR_NOT_FOUND, NULL);
        return;
    }
}

/* Registers a combinator over q (pending) and subscribes to its inputs. */
static void
s_start(pm_agent_t *self, pm_prom_t *q, int kind, const char *const *ids, size_t n)
{
    size_t len = strlen(q->id);
    pm_comb_t *c = pm_xcalloc(1, sizeof *c + len + 1, "combinator");
    memcpy(c->q, q->id, len + 1);
    c->agent = self;
    c->f = pm_fanin_new(kind, ids, n, self->max_value_bytes);
    c->subs = pm_xcalloc(n, sizeof *c->subs, "combinator subscriptions");
    c->started = self->now_mono;
    zhashx_insert(self->combs, c->q, c);
    pm_store_watch(q, &c->watch, s_q_settled);
    c->busy = 1;
    for (size_t i = 0; i < n && !c->dead; i++) {
        c->subs[i].comb = c;
        c->subs[i].i = i;
        s_subscribe(self, c, i);
    }
    c->busy = 0;
    if (c->dead)
        zhashx_delete(self->combs, c->q);
}

pm_rec_t
pm_fanins_rec(const pm_comb_t *c)
{
    pm_rec_t rec = {.kind = PM_REC_COMBINE, .combinator = c->f->kind, .input_count = c->f->n,
                    .inputs = (const char *const *) c->f->ids};
    rec.promise.id = c->q;
    return rec;
}

int
pm_fanins_do(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now)
{
    s_init(self);
    if (s->peer)
        return PM_ERR_BAD_REQUEST; /* a combinator lives with the agent its client talks to */
    int err = pm_fanin_check(m->combinator, m->id_count, self->max_fanin);
    if (err)
        return err;
    for (size_t i = 0; i < m->id_count; i++)
        if (!*m->ids[i])
            return PM_ERR_BAD_REQUEST;
    /* Our space was taken over while we were cut off (paused, fenced, not
     * restarted): a combinator made here would live in a space another
     * agent serves, acknowledged and then NOT_FOUND everywhere (creates are
     * routed to the new owner; a combinator lives with the agent its client
     * talks to, so it is refused instead). */
    char sp[PM_WIRE_MAX_NAME + 1];
    if (self->replica &&
        !pm_mesh_owns(self->mesh,
                      m->new_id && pm_id_space(m->new_id, sp, sizeof sp) ? sp : self->mint,
                      NULL)) {
        pm_agent_reply_err(self, s, m->req_id, PM_ERR_UNAVAILABLE,
                           "this agent's id space was taken over while it was cut off: it "
                           "cannot hold a combinator; make it through another agent");
        return PM_OK;
    }
    char id[PM_WIRE_MAX_NAME + 1];
    pm_prom_t *q;
    err = pm_req_create_new(self, m->new_id, !m->new_id || pm_req_minted_by(s, m->new_id),
                            m->timeout_ms, now, id, sizeof id, &q);
    if (err)
        return err;
    if (self->journal) {
        pm_rec_t rec = {.kind = PM_REC_COMBINE, .combinator = m->combinator,
                        .input_count = m->id_count, .inputs = m->ids};
        rec.promise.id = id;
        pm_journal_cont(self->journal, &rec);
    }
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .id = id, .created = 1};
    pm_agent_send(self, s, &r);
    s_start(self, q, m->combinator, m->ids, m->id_count);
    return PM_OK;
}

void
pm_fanins_revive(pm_agent_t *self, const pm_cont_t *c)
{
    s_init(self);
    if (zhashx_lookup(self->combs, c->q))
        return;
    pm_prom_t *q = pm_store_get(self->store, c->q);
    if (!q || q->state != PM_STATE_PENDING ||
        pm_fanin_check(c->combinator, c->n_inputs, PM_WIRE_MAX_IDS) != PM_OK)
        return;
    s_start(self, q, c->combinator, (const char *const *) c->inputs, c->n_inputs);
}

void
pm_fanins_snapshot(pm_agent_t *self, pm_journal_t *j)
{
    if (!self->combs)
        return;
    for (pm_comb_t *c = zhashx_first(self->combs); c; c = zhashx_next(self->combs)) {
        pm_rec_t rec = pm_fanins_rec(c);
        pm_journal_snapshot_cont(j, &rec);
    }
}

void
pm_fanins_drop_space(pm_agent_t *self, const char *prefix)
{
    if (!self->combs)
        return;
    size_t plen = strlen(prefix);
    zlistx_t *gone = pm_agent_xlist();
    for (pm_comb_t *c = zhashx_first(self->combs); c; c = zhashx_next(self->combs))
        if (strncmp(c->q, prefix, plen) == 0)
            zlistx_add_end(gone, c->q);
    for (const char *q = zlistx_first(gone); q; q = zlistx_next(gone))
        zhashx_delete(self->combs, q);
    zlistx_destroy(&gone);
}

int
pm_fanins_is_combinator(pm_agent_t *self, const char *id)
{
    return self->combs && id && zhashx_lookup(self->combs, id) != NULL;
}

void
pm_fanins_heard(pm_agent_t *self, const char *pid, const pm_msg_t *reply, int err)
{
    if (!self->comb_subs)
        return;
    s_subs_t *e = zhashx_lookup(self->comb_subs, pid);
    if (!e)
        return;
    PM_STEPTRACE_MARK("f_heard", pid, strlen(pid));
    const pm_wire_promise_t *p = reply && !reply->err ? reply->promise : NULL;
    if (reply && reply->err)
        err = reply->err;
    if (!p && !err)
        err = PM_ERR_INTERNAL; /* a reply without the promise: nothing to hear */
    while (e->head) {
        pm_fanin_sub_t *sub = (pm_fanin_sub_t *) e->head;
        pm_watch_cancel(&sub->watch);
        if (p && p->state != PM_STATE_RESOLVED)
            s_hear(self, sub->comb, sub->i, p->state, p->reason,
                   p->reason ? strlen(p->reason) : 0);
        else if (p)
            s_hear(self, sub->comb, sub->i, p->state, p->value, p->value_len);
        else if (err == PM_ERR_NOT_FOUND && reply)
            s_not_found(self, sub->comb, sub->i); /* its owner's answer */
        else if (err == PM_ERR_NOT_FOUND)
            s_not_found_unowned(self, sub->comb, sub->i, NULL);
        else if (err == PM_ERR_BAD_REQUEST)
            s_hear_err(self, sub->comb, sub->i, err, reply ? reply->message : NULL);
        else
            s_retry(self, sub->comb, sub->i);
    }
    zhashx_delete(self->comb_subs, pid);
}

void
pm_fanins_tentative(pm_agent_t *self, const char *pid, const pm_msg_t *reply)
{
    s_subs_t *e = self->comb_subs ? zhashx_lookup(self->comb_subs, pid) : NULL;
    const pm_wire_promise_t *p = reply->promise;
    if (!e || !p || p->state == PM_STATE_PENDING)
        return;
    PM_STEPTRACE_MARK("f_tentative", pid, strlen(pid));
    for (pm_watch_t *w = e->head; w; w = w->next) {
        pm_fanin_sub_t *sub = (pm_fanin_sub_t *) w;
        if (p->state != PM_STATE_RESOLVED)
            s_hear_early(self, sub->comb, sub->i, p->state, p->reason,
                         p->reason ? strlen(p->reason) : 0);
        else
            s_hear_early(self, sub->comb, sub->i, p->state, p->value, p->value_len);
        s_ask_last(self, sub->comb, pid);
    }
}

int
pm_fanins_listening(pm_agent_t *self, const char *pid)
{
    s_subs_t *e = self->comb_subs ? zhashx_lookup(self->comb_subs, pid) : NULL;
    return e && e->head;
}

void
pm_fanins_local(pm_agent_t *self, const char *pid)
{
    if (!self->comb_subs)
        return;
    s_subs_t *e = zhashx_lookup(self->comb_subs, pid);
    if (!e)
        return;
    while (e->head) {
        pm_fanin_sub_t *sub = (pm_fanin_sub_t *) e->head;
        pm_watch_cancel(&sub->watch);
        s_watch_local(self, sub->comb, sub->i);
    }
    zhashx_delete(self->comb_subs, pid);
}

void
pm_fanins_fire(pm_agent_t *self, int64_t mono)
{
    if (!self->fanin_timers)
        return;
    pm_timer_t *t;
    while ((t = pm_timers_pop_due(self->fanin_timers, mono))) {
        pm_fanin_sub_t *sub = pm_container_of(t, pm_fanin_sub_t, retry);
        pm_comb_t *c = sub->comb;
        c->busy = 1;
        s_subscribe(self, c, sub->i);
        c->busy = 0;
        if (c->dead)
            zhashx_delete(self->combs, c->q);
    }
}

void
pm_fanins_destroy_all(pm_agent_t *self)
{
    zhashx_destroy(&self->combs); /* cancels their retry timers: the heap goes after */
    zhashx_destroy(&self->comb_subs);
    pm_timers_destroy(&self->fanin_timers);
}
