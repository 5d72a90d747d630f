/*
 * waiters.c - awaits: a local waiter watches a promise of ours; awaits of a
 * promise another member owns share one subscription there (pm_rwait_t).
 * Every waiter ends with a reply: the promise, WAIT_TIMEOUT, or an error.
 */

#include "waiters.h"

#include "fanin.h"
#include "fanins.h"
#include "relay.h"
#include "thens.h"

#include "waiters.h"

void
pm_waiter_free(pm_agent_t *self, pm_waiter_t *w)
{
    pm_watch_cancel(&w->watch);
    pm_timers_cancel(self->timers, &w->timer);
    if (w->prev)
        w->prev->next = w->next;
    else
        w->session->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->session->n_waiters--;
    free(w);
}

/* ---- a subscription answered once ----------------------------------------------------
 *
 * Another member sends its subscription (an AWAIT with no end, from its
 * relay: the same req_id each time) again every sub_resend until it hears
 * our answer (relay.c). A resend that crosses our answer (our answer held
 * until the settle is on our backups, or on its way) used to be answered
 * again: a second settlement message the member drops (issue 15: 1.000-1.008
 * messages per input). So we remember for a window (s_window: 2 x
 * sub_resend, at least PM_WAITER_REPEAT_MIN_MS) which peer subscriptions we
 * answered (peer, req_id, promise) and drop a repeat within it, counting it
 * (mesh.sub_repeats_dropped).
 *
 * Nothing can be missed: the repeat asks for the outcome of a promise that
 * is settled (a repeat on a pending promise finds its waiter, s_subscribed),
 * and a settled outcome never changes, so it asks for exactly what our
 * answer carries. If that answer arrives, the member's relay ends and it
 * sends nothing more. If it is lost (a cut link, its peer session closed
 * before the answer left, the member restarted), the member's relay lives
 * on and sends the subscription every sub_resend; the window closes after
 * our answer, and the first repeat after it is answered again (and
 * remembered again): a lost answer is recovered within the window plus one
 * resend period, never dropped for good. The memory is ours only (not
 * journalled): an heir that took the space over, or we after a restart,
 * answer the first repeat. An answer held for longer than the window (a
 * backup slow to acknowledge) can still be followed by a second one:
 * harmless, as before (the member drops it).
 *
 * The window is at least twice the resend period (so the one resend that
 * crosses an answer falls inside it), and at least 1 s whatever the period:
 * the answer's hold is the replication round trip (and fsyncs), which does
 * not shrink with a short period (bench-fanin --sub-resend 10ms at load 5:
 * 1.002 messages per input with a 20 ms window). */
#define PM_WAITER_REPEAT_MIN_MS 1000

static int64_t
s_window(const pm_agent_t *self)
{
    int64_t w = 2 * pm_relay_sub_resend_ms(self);
    return w > PM_WAITER_REPEAT_MIN_MS ? w : PM_WAITER_REPEAT_MIN_MS;
}

static void
s_until_free(void **item)
{
    free(*item);
    *item = NULL;
}

/* The key of peer's subscription req_id on pid (malloc'd). */
static char *
s_answer_key(const char *peer, uint64_t req_id, const char *pid)
{
    size_t n = strlen(peer) + strlen(pid) + 24;
    char *k = pm_xmalloc(n, "subscription key");
    snprintf(k, n, "%s %llx %s", peer, (unsigned long long) req_id, pid);
    return k;
}

/* Forgets the answers whose window closed (at most once per window). */
static void
s_answers_prune(pm_agent_t *self, int64_t mono, int64_t window)
{
    if (!self->sub_answers || mono < self->sub_answers_prune)
        return;
    self->sub_answers_prune = mono + window;
    zlistx_t *gone = NULL;
    for (int64_t *until = zhashx_first(self->sub_answers); until;
         until = zhashx_next(self->sub_answers)) {
        if (*until > mono)
            continue;
        if (!gone) {
            gone = zlistx_new();
            if (!gone)
                pm_oom("pruning answered subscriptions");
            zlistx_set_duplicator(gone, (zlistx_duplicator_fn *) strdup);
            zlistx_set_destructor(gone, (zlistx_destructor_fn *) zstr_free);
        }
        zlistx_add_end(gone, (void *) zhashx_cursor(self->sub_answers));
    }
    if (!gone)
        return;
    for (const char *k = zlistx_first(gone); k; k = zlistx_next(gone))
        zhashx_delete(self->sub_answers, k);
    zlistx_destroy(&gone);
}

/* We answer peer's subscription req_id on pid at mono: a repeat within the
 * window is dropped. */
static void
s_answer_remember(pm_agent_t *self, const char *peer, uint64_t req_id, const char *pid,
                  int64_t mono)
{
    int64_t window = s_window(self);
    s_answers_prune(self, mono, window);
    if (!self->sub_answers) {
        if (!(self->sub_answers = zhashx_new()))
            pm_oom("answered subscriptions");
        zhashx_set_destructor(self->sub_answers, s_until_free);
        self->sub_answers_prune = mono + window;
    }
    char *k = s_answer_key(peer, req_id, pid);
    int64_t *until = zhashx_lookup(self->sub_answers, k);
    if (!until) {
        until = pm_xmalloc(sizeof *until, "answered subscription");
        zhashx_insert(self->sub_answers, k, until);
    }
    *until = mono + window;
    free(k);
}

/* Whether we answered peer's subscription req_id on pid within the window
 * before mono. */
static int
s_answered_lately(pm_agent_t *self, const char *peer, uint64_t req_id, const char *pid,
                  int64_t mono)
{
    if (!self->sub_answers)
        return 0;
    char *k = s_answer_key(peer, req_id, pid);
    const int64_t *until = zhashx_lookup(self->sub_answers, k);
    free(k);
    return until && *until > mono;
}

/* A combinator's subscription on p, whose settle is not durable yet: its
 * outcome goes to the combinator's agent at once, marked tentative, ahead of
 * the ordinary answer that follows once the settle is durable here and at
 * the backups (held in the journal). The combinator's agent only starts its
 * continuation's function on it (fanins.c, place.c): nothing computed from
 * it becomes visible before the durable answer came (PROTOCOL.md 5a, early starts). */
static void
s_send_tentative(pm_agent_t *self, pm_waiter_t *w, pm_prom_t *p)
{
    if (!(w->tentative & (1u << p->state)) || !self->mesh || !self->journal ||
        !pm_journal_must_hold(self->journal))
        return;
    pm_wire_promise_t v;
    pm_records_view(p, &v);
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = w->req_id, .promise = &v, .id = p->id,
                  .tentative = 1, .from = self->node};
    if (pm_mesh_send(self->mesh, w->session->peer, &r) == 0)
        self->fanin_tentative_sent++;
}

void
pm_waiter_fired(pm_watch_t *watch, pm_prom_t *p)
{
    pm_waiter_t *w = (pm_waiter_t *) watch;
    pm_agent_t *self = w->agent;
    if (w->session->peer) { /* (a peer's waiter is its subscription: do_await) */
        s_answer_remember(self, w->session->peer, w->req_id, p->id, self->now_mono);
        s_send_tentative(self, w, p);
    }
    int64_t was = self->send_deadline;
    self->send_deadline = w->timer.idx ? w->timer.at : 0;
    pm_agent_reply_promise(self, w->session, w->req_id, p);
    self->send_deadline = was;
    pm_waiter_free(self, w);
}

int64_t
pm_waiter_deadline(int64_t mono, const pm_msg_t *m)
{
    /* A wait longer than a century is a wait without end: no timer, and no
     * "now + timeout" that could wrap into the past. */
    if (m->timeout_ms > 0 && m->timeout_ms < 100LL * 365 * 24 * 3600 * 1000)
        return mono + m->timeout_ms;
    return 0;
}

/* A waiter for session s, not yet linked to anything. */
pm_waiter_t *
pm_waiter_new(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono, int *err)
{
    if (s->n_waiters >= self->max_waiters) {
        *err = PM_ERR_LIMIT;
        return NULL;
    }
    pm_waiter_t *w = pm_xcalloc(1, sizeof *w, "waiter");
    w->agent = self;
    w->session = s;
    w->req_id = m->req_id;
    w->next = s->waiters;
    if (s->waiters)
        s->waiters->prev = w;
    s->waiters = w;
    s->n_waiters++;
    int64_t at = pm_waiter_deadline(mono, m);
    if (at)
        pm_timers_set(self->timers, &w->timer, at);
    return w;
}

/* Peer session s's waiter on p for its subscription req_id, if it has one
 * already. Another member sends its subscription again until we answer
 * (relay.c), so a repeat must not add a second waiter; the watches of one
 * promise are few (one per subscribing member, plus local awaits). */
static pm_waiter_t *
s_subscribed(const pm_prom_t *p, const pm_session_t *s, uint64_t req_id)
{
    for (pm_watch_t *x = p->watches; x; x = x->next) {
        if (x->fn != pm_waiter_fired)
            continue;
        pm_waiter_t *w = pm_container_of(x, pm_waiter_t, watch);
        if (w->session == s && w->req_id == req_id)
            return w;
    }
    return NULL;
}

/* The outcomes another member's subscription m wants an early copy of. */
static unsigned
s_tentative_states(const pm_msg_t *m)
{
    if (m->tentative_states)
        return m->tentative_states & PM_FANIN_EVERY;
    return m->tentative_ok ? PM_FANIN_EVERY : 0;
}

int
pm_waiter_do_await(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono)
{
    pm_prom_t *p = pm_store_get(self->store, m->id);
    /* Another member's combinator gave up waiting for it: its final lookup
     * records it as never made (fanins.c), and is answered with that. */
    if (!p && s->peer && m->final) {
        int err = pm_fanins_tombstone(self, m->id, &p);
        if (err)
            return err;
    }
    if (!p)
        return PM_ERR_NOT_FOUND;
    if (p->state != PM_STATE_PENDING) {
        if (s->peer && m->timeout_ms < 0) { /* another member's subscription */
            if (s_answered_lately(self, s->peer, m->req_id, p->id, mono)) {
                self->sub_repeats_dropped++;
                return PM_OK; /* a repeat that crossed our answer (see above) */
            }
            s_answer_remember(self, s->peer, m->req_id, p->id, mono);
        }
        pm_agent_reply_promise(self, s, m->req_id, p);
        return PM_OK;
    }
    if (m->timeout_ms == 0) {
        pm_agent_reply_err(self, s, m->req_id, PM_ERR_WAIT_TIMEOUT, NULL);
        return PM_OK; /* a poll, not a failure */
    }
    pm_waiter_t *w = s->peer ? s_subscribed(p, s, m->req_id) : NULL;
    if (w) {
        /* A subscription sent again: it has its waiter (answered once). It
         * may want early copies of more outcomes now (its input became the
         * last its combinator waits for: fanins.c). */
        w->tentative |= s_tentative_states(m);
        return PM_OK;
    }
    int err = PM_OK;
    w = pm_waiter_new(self, s, m, mono, &err);
    if (w) {
        w->tentative = s->peer ? s_tentative_states(m) : 0;
        pm_store_watch(p, &w->watch, pm_waiter_fired);
    }
    return err;
}

void
pm_waiter_rwait_destructor(void **item)
{
    free(*item);
    *item = NULL;
}

/* Sends the owner's answer to a subscription on to local waiter w. It is
 * not held behind our own journal: what it shows is the owner's, and the
 * owner answered only once that was durable at it and its in-sync backups
 * (it holds its replies); nothing here acknowledges it. Held, it waited for
 * our own replication, which a split's heal can leave catching up for
 * seconds, and ended as WAIT_TIMEOUT although the settle was acknowledged
 * long before (issue 11; pmesh-sim seed 62). */
static void
s_send_owners_answer(pm_agent_t *self, pm_waiter_t *w, const pm_msg_t *m)
{
    if (w->session->peer) { /* (a peer's waiter on a promise we relay: none today) */
        int64_t was = self->send_deadline;
        self->send_deadline = w->timer.idx ? w->timer.at : 0;
        pm_agent_send(self, w->session, m);
        self->send_deadline = was;
        return;
    }
    size_t len;
    uint8_t *buf = pm_wire_encode(m, &len);
    if (!buf)
        pm_oom("encoding an owner's answer");
    pm_agent_journal_send(self, w->session->id, NULL, buf, len, 0, 0);
}

/* Answers every local waiter of a remote promise with the owner's reply (or
 * with err when reply is NULL), and forgets the subscription. */
void
pm_waiter_rwait_finish(pm_agent_t *self, const char *pid, const pm_msg_t *reply, int err)
{
    pm_fanins_heard(self, pid, reply, err); /* combinators subscribed to it hear it too */
    pm_then_heard(self, pid, reply, err);   /* and thens whose source's space moved away */
    pm_rwait_t *rw = zhashx_lookup(self->rwaits, pid);
    if (!rw)
        return;
    while (rw->watches) {
        pm_waiter_t *w = pm_container_of(rw->watches, pm_waiter_t, watch);
        if (reply) {
            pm_msg_t copy = *reply;
            copy.req_id = w->req_id;
            copy.from = NULL;
            s_send_owners_answer(self, w, &copy);
        } else {
            pm_agent_reply_err(self, w->session, w->req_id, err, NULL);
        }
        pm_waiter_free(self, w);
    }
    zhashx_delete(self->rwaits, pid);
}

void
pm_waiter_subscribe(pm_agent_t *self, const pm_msg_t *sub, const char *node, int unknown)
{
    const char *id = sub->id;
    pm_relay_t *r = pm_relay_new(self, PM_RELAY_SUB, node ? node : "", id);
    size_t n = strlen(id);
    pm_rwait_t *rw = pm_xcalloc(1, sizeof *rw + n + 1, "remote await");
    memcpy(rw->id, id, n + 1);
    rw->relay = r->id;
    zhashx_insert(self->rwaits, rw->id, rw);
    if (node) {
        int err = pm_relay_send(self, r, sub); /* frees r on failure */
        if (err)
            pm_waiter_rwait_finish(self, id, NULL, err);
        return;
    }
    pm_relay_park_msg(self, r, sub);
    if (unknown) {
        r->unknown = 1;
        int64_t until = self->started_mono + PM_AGENT_YOUNG_MS;
        if (until < self->now_mono + PM_AGENT_UNKNOWN_WAIT_MS)
            until = self->now_mono + PM_AGENT_UNKNOWN_WAIT_MS;
        pm_timers_set(self->relay_timers, &r->timer, until);
    }
}

void
pm_waiter_widen(pm_agent_t *self, const char *id, unsigned states)
{
    pm_rwait_t *rw = zhashx_lookup(self->rwaits, id);
    if (!rw)
        return;
    pm_relay_t *r = pm_relay_find(self, rw->relay);
    if (r)
        pm_relay_sub_widen(self, r, states);
}

/* An await on a promise another member owns: one subscription there, however
 * many local waiters there are. */
int
pm_waiter_remote_await(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, const char *node,
                       int64_t mono)
{
    if (m->timeout_ms == 0)
        return pm_relay_forward(self, s, m, node); /* a poll: the owner answers at once */
    if (s->n_waiters >= self->max_waiters)
        return PM_ERR_LIMIT; /* before subscribing for nobody */
    uint64_t relay = 0;
    if (!zhashx_lookup(self->rwaits, m->id)) {
        pm_relay_t *r = pm_relay_new(self, PM_RELAY_SUB, node, m->id);
        relay = r->id;
        pm_msg_t sub = {.type = PM_MSG_AWAIT, .id = m->id, .timeout_ms = -1};
        int err = pm_relay_send(self, r, &sub);
        if (err)
            return err;
    }
    return pm_waiter_remote_add(self, s, m, mono, relay);
}

/* Adds a waiter of session s on the remote promise m->id, under its
 * subscription (relay: the subscription's relay id if there is none yet). */
int
pm_waiter_remote_add(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono,
                     uint64_t relay)
{
    pm_rwait_t *rw = zhashx_lookup(self->rwaits, m->id);
    if (!rw) {
        size_t n = strlen(m->id);
        rw = pm_xcalloc(1, sizeof *rw + n + 1, "remote await");
        memcpy(rw->id, m->id, n + 1);
        rw->relay = relay;
        zhashx_insert(self->rwaits, rw->id, rw);
    }
    int err = PM_OK;
    pm_waiter_t *w = pm_waiter_new(self, s, m, mono, &err);
    if (w)
        pm_watch_link(&rw->watches, &w->watch, NULL);
    return err;
}

void
pm_waiter_fire_timeouts(pm_agent_t *self, int64_t mono)
{
    pm_timer_t *t;
    while ((t = pm_timers_pop_due(self->timers, mono))) {
        pm_waiter_t *w = pm_container_of(t, pm_waiter_t, timer);
        self->waiters_timed_out++;
        pm_agent_reply_err(self, w->session, w->req_id, PM_ERR_WAIT_TIMEOUT, NULL);
        pm_waiter_free(self, w);
    }
}
