/*
 * relay.c - requests for promises other members own: relayed to the owner
 * and answered when its reply comes back; parked while a takeover is
 * coming (or, just started, while we have not heard of the space), then
 * sent where the space went or run here if it came to us.
 */

#include "relay.h"

#include "isr.h"

#include "fanin.h"
#include "fanins.h"
#include "requests.h"
#include "session.h"
#include "thens.h"
#include "waiters.h"

pm_route_t
pm_relay_route_of(pm_agent_t *self, const char *id, const char **node)
{
    pm_route_t route = pm_mesh_route(self->mesh, id, node);
    char space[PM_WIRE_MAX_NAME + 1];
    if (route == PM_ROUTE_LOCAL || !self->isr || !pm_id_space(id, space, sizeof space))
        return route;
    /* The store is the authority (R4): gossip may still name the owner
     * before the last takeover, or none yet. But an owner announced at a
     * newer epoch than the record we hold won a later CAS (an agent serves
     * a space it took over only once the store recorded it): our record is
     * stale (the watch's stream stalls across a split), gossip is right. */
    uint64_t epoch = 0;
    const char *owner = pm_isr_live_owner(self->isr, space, &epoch);
    if (!owner || strcmp(owner, self->node) == 0 ||
        (route == PM_ROUTE_REMOTE && pm_mesh_owner_epoch(self->mesh, space) > epoch))
        return route;
    *node = owner;
    return PM_ROUTE_REMOTE;
}

void
pm_relay_destructor(void **item)
{
    pm_relay_t *r = *item;
    free(r->frame);
    free(r);
    *item = NULL;
}

int64_t
pm_relay_sub_resend_ms(const pm_agent_t *self)
{
    return self->sub_resend > 0 ? self->sub_resend : PM_RELAY_SUB_RESEND_MS;
}

/* A relay's key in the relays table: its id in hex. */
static void
s_key(uint64_t id, char k[24])
{
    snprintf(k, 24, "%llx", (unsigned long long) id);
}

pm_relay_t *
pm_relay_find(pm_agent_t *self, uint64_t id)
{
    char k[24];
    s_key(id, k);
    return zhashx_lookup(self->relays, k);
}

pm_relay_t *
pm_relay_new(pm_agent_t *self, pm_relay_kind_t kind, const char *node, const char *pid)
{
    size_t plen = pid ? strlen(pid) : 0;
    pm_relay_t *r = pm_xcalloc(1, sizeof *r + plen + 1, "relay");
    r->id = ++self->next_relay;
    r->kind = kind;
    r->born = self->now_mono;
    snprintf(r->node, sizeof r->node, "%s", node);
    if (pid)
        memcpy(r->pid, pid, plen + 1);
    char k[24];
    s_key(r->id, k);
    zhashx_insert(self->relays, k, r);
    /* A subscription lasts as long as the promise is pending: its timer
     * sends it again (pm_relay_expired), it never ends it. */
    pm_timers_set(self->relay_timers, &r->timer,
                  self->now_mono +
                      (kind == PM_RELAY_SUB ? pm_relay_sub_resend_ms(self) : self->forward_timeout));
    return r;
}

static void
s_relay_free(pm_agent_t *self, pm_relay_t *r)
{
    pm_timers_cancel(self->relay_timers, &r->timer);
    char k[24];
    s_key(r->id, k);
    zhashx_delete(self->relays, k);
}

/* Sends relay r's kept frame again, to node (the mesh takes a copy's
 * ownership; r keeps its own for the next time). */
static int
s_send_frame(pm_agent_t *self, const pm_relay_t *r, const char *node, int type)
{
    uint8_t *buf = pm_xmalloc(r->frame_len, "re-sent request");
    memcpy(buf, r->frame, r->frame_len);
    return pm_mesh_send_raw(self->mesh, node, type, buf, r->frame_len);
}

/* The type of relay r's kept frame (for the mesh's per-type counters: an
 * unparked request is a request, not a reply). */
static int
s_frame_type(const pm_relay_t *r)
{
    pm_msg_t m;
    int type = PM_MSG_REPLY;
    if (pm_wire_decode(r->frame, r->frame_len, &m) == PM_OK)
        type = m.type;
    pm_wire_release(&m);
    return type;
}

/* m as relay r sends it: its req_id the relay's, from us. */
static uint8_t *
s_encode_as(pm_agent_t *self, const pm_relay_t *r, const pm_msg_t *m, size_t *len)
{
    pm_msg_t copy = *m;
    copy.req_id = r->id;
    copy.from = self->node;
    uint8_t *buf = pm_wire_encode(&copy, len);
    if (!buf)
        pm_oom("encoding a relayed request");
    return buf;
}

/* Sends m to node as relay r (m's req_id becomes the relay's). */
int
pm_relay_send(pm_agent_t *self, pm_relay_t *r, const pm_msg_t *m)
{
    size_t len;
    uint8_t *buf = s_encode_as(self, r, m, &len);
    if (self->replica || r->kind == PM_RELAY_SUB) {
        /* Kept to send again if the owner dies (or, a subscription, until
         * the owner answers). */
        r->frame = pm_xmalloc(len, "relayed request");
        memcpy(r->frame, buf, len);
        r->frame_len = len;
    }
    if (pm_mesh_send_raw(self->mesh, r->node, m->type, buf, len) != 0) {
        s_relay_free(self, r);
        return PM_ERR_OWNER_LOST;
    }
    self->relayed++;
    return PM_OK;
}

/* Subscription r asks its owner for early copies of these outcomes from
 * now on (wider than before): its kept frame says so, and goes now unless
 * it is parked (it goes when the space is served somewhere). */
void
pm_relay_sub_widen(pm_agent_t *self, pm_relay_t *r, unsigned states)
{
    if (r->kind != PM_RELAY_SUB || !r->frame)
        return;
    pm_msg_t m;
    if (pm_wire_decode(r->frame, r->frame_len, &m) != PM_OK || m.type != PM_MSG_AWAIT) {
        pm_wire_release(&m);
        return;
    }
    m.tentative_states = states;
    m.tentative_ok = states == PM_FANIN_EVERY;
    size_t len;
    uint8_t *buf = pm_wire_encode(&m, &len);
    pm_wire_release(&m);
    if (!buf)
        pm_oom("encoding a subscription");
    free(r->frame);
    r->frame = buf;
    r->frame_len = len;
    if (!r->parked && *r->node)
        s_send_frame(self, r, r->node, PM_MSG_AWAIT);
}

/* Relays a client's request to the promise's owner; the owner's reply goes
 * back to the client with the client's req_id. */
int
pm_relay_forward(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, const char *node)
{
    pm_relay_t *r = pm_relay_new(self, PM_RELAY_OP, node, m->id);
    r->session = s->id;
    r->req_id = m->req_id;
    return pm_relay_send(self, r, m);
}

/* A reply from another agent to one of our relays. */
void
pm_relay_on_peer_reply(pm_agent_t *self, const char *from, pm_msg_t *m)
{
    pm_relay_t *r = pm_relay_find(self, m->req_id);
    if (!r || strcmp(r->node, from) != 0)
        return; /* late (timed out) or not ours: nothing waits for it */
    if (m->tentative) {
        /* An early copy of a subscription's answer (not durable yet): only
         * combinators may start their continuation on it; the relay waits
         * for the durable answer (waiters.c, fanins.c). */
        if (r->kind == PM_RELAY_SUB && !m->err && m->promise)
            pm_fanins_tentative(self, r->pid, m);
        return;
    }
    char space[PM_WIRE_MAX_NAME + 1];
    if (m->err == PM_ERR_OWNER_LOST && self->isr && pm_id_space(r->pid, space, sizeof space))
        pm_isr_refresh(self->isr, space, "the member we took for its owner does not serve it");
    if (r->kind == PM_RELAY_OP) {
        pm_session_t *s = pm_session_by_id(self, r->session);
        if (s) {
            pm_msg_t copy = *m;
            copy.req_id = r->req_id;
            copy.from = NULL;
            pm_agent_send(self, s, &copy);
        }
    } else if (r->kind == PM_RELAY_SUB) {
        if (m->err == PM_ERR_OWNER_LOST && self->replica && r->frame) {
            /* Its space moved on from that agent: subscribe where it went.
             * If we know no other place yet (our record of the space is
             * stale), the store is asked again and the subscription is
             * sent again at its next resend, to wherever the space is by
             * then; parked, it would wait for a member event that may not
             * come (a healed split brings none). */
            const char *node = NULL;
            if (pm_relay_route_of(self, r->pid, &node) == PM_ROUTE_REMOTE &&
                strcmp(node, from) == 0) {
                pm_timers_set(self->relay_timers, &r->timer,
                              self->now_mono + pm_relay_sub_resend_ms(self));
                return;
            }
            pm_relay_park(self, r);
            pm_relay_unpark(self);
            return;
        }
        pm_waiter_rwait_finish(self, r->pid, m, 0);
    }
    s_relay_free(self, r);
}

/* Ends a relay with a typed error: its client hears err, its subscribers
 * all hear err, a relayed settle is simply dropped. */
void
pm_relay_fail(pm_agent_t *self, pm_relay_t *r, int err)
{
    if (r->kind == PM_RELAY_OP) {
        pm_session_t *s = pm_session_by_id(self, r->session);
        if (s)
            pm_agent_reply_err(self, s, r->req_id, err, NULL);
    } else if (r->kind == PM_RELAY_SUB) {
        pm_waiter_rwait_finish(self, r->pid, NULL, err);
    }
    s_relay_free(self, r);
}

/* A subscription not answered yet is sent again, to whoever serves its
 * space now (the store's record, or gossip): the owner may never have had
 * it, or have dropped it (it took us for dead and closed our session), or
 * the space may have moved. The owner keeps one waiter per subscription
 * (pm_waiter_do_await) and answers it once; a second answer finds the relay
 * gone and is dropped (pm_relay_on_peer_reply). */
static void
s_sub_resend(pm_agent_t *self, pm_relay_t *r)
{
    pm_rwait_t *rw = zhashx_lookup(self->rwaits, r->pid);
    if (!(rw && rw->watches) && !pm_fanins_listening(self, r->pid) &&
        !pm_then_listening(self, r->pid)) {
        /* Nobody listens any more (the awaits timed out, the combinators
         * ended): the subscription ends here. The owner's waiter answers
         * once, when the promise settles, and that answer is dropped. */
        pm_fanins_heard(self, r->pid, NULL, PM_ERR_WAIT_TIMEOUT); /* (forgets its empty list) */
        pm_then_heard(self, r->pid, NULL, PM_ERR_WAIT_TIMEOUT);
        if (rw)
            zhashx_delete(self->rwaits, r->pid);
        s_relay_free(self, r);
        return;
    }
    const char *node = NULL;
    pm_route_t route = pm_relay_route_of(self, r->pid, &node);
    if (route == PM_ROUTE_REMOTE && r->frame) {
        if (strcmp(node, r->node) != 0) {
            pm_log_info("PM-RELAY-REROUTED", "subscription to %s moves from %s to %s", r->pid,
                        r->node, node);
            snprintf(r->node, sizeof r->node, "%s", node);
        }
        pm_timers_set(self->relay_timers, &r->timer, self->now_mono + pm_relay_sub_resend_ms(self));
        self->sub_resends++;
        pm_log_debug("PM-RELAY-RESUB", "subscription to %s not answered yet: sent to %s again",
                     r->pid, node);
        s_send_frame(self, r, node, PM_MSG_AWAIT);
        return;
    }
    if (route == PM_ROUTE_REMOTE) { /* (no frame: cannot happen; keep it alive) */
        pm_timers_set(self->relay_timers, &r->timer, self->now_mono + pm_relay_sub_resend_ms(self));
        return;
    }
    /* Served here now, or its owner is gone: it waits for where the space
     * goes (or runs here), as a subscription whose owner went down does. */
    if (!r->frame) {
        pm_timers_set(self->relay_timers, &r->timer, self->now_mono + pm_relay_sub_resend_ms(self));
        return;
    }
    pm_relay_park(self, r);
    pm_relay_unpark(self);
}

void
pm_relay_expired(pm_agent_t *self, pm_relay_t *r)
{
    if (r->kind == PM_RELAY_SUB && !r->parked) {
        s_sub_resend(self, r);
        return;
    }
    self->relay_timeouts++;
    if (r->parked && r->unknown) {
        /* Still nobody serves that space now that we know the mesh. */
        pm_relay_fail(self, r, PM_ERR_NOT_FOUND);
        return;
    }
    if (r->parked) {
        /* Nobody announced a takeover in time: the space is lost. */
        self->owner_lost++;
        pm_relay_fail(self, r, PM_ERR_OWNER_LOST);
        return;
    }
    if (r->kind == PM_RELAY_OP) {
        char why[PM_WIRE_MAX_NAME + 64];
        snprintf(why, sizeof why, "owner %s did not answer in time", r->node);
        pm_session_t *s = pm_session_by_id(self, r->session);
        if (s)
            pm_agent_reply_err(self, s, r->req_id, PM_ERR_UNREACHABLE, why);
    } else {
        pm_log_warn("PM-RELAY-TIMEOUT", "settle of %s relayed to %s was not acknowledged",
                    r->pid, r->node);
    }
    s_relay_free(self, r);
}

/* When relay r gives up if nothing happens before: wait ms from now, but a
 * client's request (PM_RELAY_OP) ends within forward_timeout of its arrival
 * ("how long an operation relayed to a promise's owner may take") however
 * often it is parked and sent again (its owner died, a takeover came, the
 * new owner did not answer either): the client hears a typed error in
 * bounded time, not three full timeouts later. */
static int64_t
s_until(pm_agent_t *self, const pm_relay_t *r, int64_t wait)
{
    int64_t until = self->now_mono + wait;
    int64_t cap = r->born + self->forward_timeout;
    return r->kind == PM_RELAY_OP && cap < until ? cap : until;
}

void
pm_relay_park_msg(pm_agent_t *self, pm_relay_t *r, const pm_msg_t *m)
{
    r->frame = s_encode_as(self, r, m, &r->frame_len);
    pm_relay_park(self, r);
}

void
pm_relay_park(pm_agent_t *self, pm_relay_t *r)
{
    r->parked = 1;
    r->unknown = 0; /* (sent once, its space was known: it waits for a takeover now) */
    r->node[0] = 0;
    self->parked++;
    /* A takeover is announced within detection + one gossip round; wait up
     * to forward_timeout for it before giving up with OWNER_LOST. */
    pm_timers_set(self->relay_timers, &r->timer, s_until(self, r, self->forward_timeout));
}

/* With a configuration store: parked requests on a space that nobody can
 * take over (no recorded in-sync member alive) end with UNAVAILABLE and
 * the reason, rather than wait for forward_timeout. */
static void
s_fail_unavailable(pm_agent_t *self)
{
    zlistx_t *gone = NULL;
    for (pm_relay_t *r = zhashx_first(self->relays); r; r = zhashx_next(self->relays)) {
        char space[PM_WIRE_MAX_NAME + 1], why[320];
        if (r->parked && !r->unknown && pm_id_space(r->pid, space, sizeof space) &&
            pm_isr_route_check(self->isr, space, why, sizeof why)) {
            if (!gone)
                gone = pm_agent_xlist();
            zlistx_add_end(gone, r);
        }
    }
    if (!gone)
        return;
    for (pm_relay_t *r = zlistx_first(gone); r; r = zlistx_next(gone)) {
        char space[PM_WIRE_MAX_NAME + 1], why[320];
        pm_id_space(r->pid, space, sizeof space);
        pm_isr_route_check(self->isr, space, why, sizeof why);
        pm_session_t *s = r->kind == PM_RELAY_OP ? pm_session_by_id(self, r->session) : NULL;
        if (s) {
            pm_agent_reply_err(self, s, r->req_id, PM_ERR_UNAVAILABLE, why);
            s_relay_free(self, r);
        } else {
            pm_relay_fail(self, r, PM_ERR_UNAVAILABLE);
        }
    }
    zlistx_destroy(&gone);
}

/* Parked requests whose space is now served somewhere go there. */
void
pm_relay_unpark(pm_agent_t *self)
{
    if (self->isr)
        s_fail_unavailable(self);
    zlistx_t *ready = NULL;
    for (pm_relay_t *r = zhashx_first(self->relays); r; r = zhashx_next(self->relays)) {
        if (!r->parked)
            continue;
        const char *node = NULL;
        pm_route_t route = pm_relay_route_of(self, r->pid, &node);
        if (route != PM_ROUTE_REMOTE && route != PM_ROUTE_LOCAL)
            continue;
        if (!ready)
            ready = pm_agent_xlist();
        zlistx_add_end(ready, r);
    }
    if (!ready)
        return;
    for (pm_relay_t *r = zlistx_first(ready); r; r = zlistx_next(ready)) {
        const char *node = NULL;
        pm_route_t route = pm_relay_route_of(self, r->pid, &node);
        if (route == PM_ROUTE_REMOTE && r->frame) {
            snprintf(r->node, sizeof r->node, "%s", node);
            r->parked = 0;
            pm_timers_set(self->relay_timers, &r->timer,
                          r->kind == PM_RELAY_SUB ? self->now_mono + pm_relay_sub_resend_ms(self)
                                                  : s_until(self, r, self->forward_timeout));
            s_send_frame(self, r, node, s_frame_type(r));
            continue;
        }
        /* Served here now (we took it over): run it as if the client had
         * asked us, with the client's own req_id. */
        pm_msg_t m;
        if (r->frame && pm_wire_decode(r->frame, r->frame_len, &m) == PM_OK) {
            pm_session_t *s = r->kind == PM_RELAY_OP ? pm_session_by_id(self, r->session) : NULL;
            if (r->kind == PM_RELAY_OP && s) {
                m.req_id = r->req_id;
                m.from = NULL;
                pm_agent_dispatch(self, s, &m);
            } else if (r->kind == PM_RELAY_SUB) {
                pm_rwait_t *rw = zhashx_lookup(self->rwaits, r->pid);
                pm_prom_t *p = pm_store_get(self->store, r->pid);
                while (rw && rw->watches) {
                    pm_waiter_t *w = pm_container_of(rw->watches, pm_waiter_t, watch);
                    pm_watch_cancel(&w->watch);
                    if (p && p->state == PM_STATE_PENDING) {
                        pm_store_watch(p, &w->watch, pm_waiter_fired);
                    } else {
                        if (p)
                            pm_agent_reply_promise(self, w->session, w->req_id, p);
                        else
                            pm_agent_reply_err(self, w->session, w->req_id, PM_ERR_NOT_FOUND, NULL);
                        pm_waiter_free(self, w);
                    }
                }
                pm_fanins_local(self, r->pid); /* and its combinators watch it here */
                pm_then_local(self, r->pid);   /* and its thens */
                if (rw)
                    zhashx_delete(self->rwaits, r->pid);
            }
        }
        pm_wire_release(&m);
        s_relay_free(self, r);
    }
    zlistx_destroy(&ready);
}

/* Parks a client's request until its space is served somewhere (pm_relay_unpark):
 * its owner died and a takeover is coming, or (unknown) we just started and
 * have not heard of the space yet. PM_OK if parked, else the error to answer. */
static int
s_park_request(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono, int unknown)
{
    pm_relay_kind_t kind = m->type == PM_MSG_AWAIT && m->timeout_ms ? PM_RELAY_SUB : PM_RELAY_OP;
    /* A parked await is a waiter like any other: at the client's limit it is
     * refused now, not parked without anyone to answer it. */
    if (kind == PM_RELAY_SUB && s->n_waiters >= self->max_waiters)
        return PM_ERR_LIMIT;
    pm_relay_t *r = pm_relay_new(self, kind, "", m->id);
    pm_msg_t copy = *m;
    copy.req_id = r->id;
    copy.from = self->node;
    if (kind == PM_RELAY_SUB)
        copy.timeout_ms = -1;
    size_t len;
    if (!(r->frame = pm_wire_encode(&copy, &len)))
        pm_oom("encoding a parked request");
    r->frame_len = len;
    r->session = s->id;
    r->req_id = m->req_id;
    if (kind == PM_RELAY_SUB)
        PM_INVARIANT(pm_waiter_remote_add(self, s, m, mono, r->id) == PM_OK,
                     "a parked await has a waiter (its limit was checked)");
    pm_relay_park(self, r);
    if (unknown) {
        r->unknown = 1;
        int64_t until = self->started_mono + PM_AGENT_YOUNG_MS;
        if (until < mono + PM_AGENT_UNKNOWN_WAIT_MS)
            until = mono + PM_AGENT_UNKNOWN_WAIT_MS;
        pm_timers_set(self->relay_timers, &r->timer, until);
    }
    return PM_OK;
}

/* Whether id's space is one we served before our restart and have not
 * decided about yet (takeover.c, probation): resumed by us, or it moved. */
static int
s_on_probation(pm_agent_t *self, const char *id)
{
    char space[PM_WIRE_MAX_NAME + 1];
    return self->probation.n && pm_id_space(id, space, sizeof space) &&
           pm_claims_has(&self->probation, space);
}

/* Whether id's space ("<node>-<tag>~...") is named after a live member. */
static int
s_space_of_live_member(pm_agent_t *self, const char *id)
{
    char space[PM_WIRE_MAX_NAME + 1], node[PM_WIRE_MAX_NAME + 1];
    return pm_id_space(id, space, sizeof space) && pm_space_node(space, node, sizeof node) &&
           strcmp(node, self->node) != 0 && pm_mesh_is_up(self->mesh, node);
}

/* Routes a client's request on a promise that may live elsewhere. Returns 1
 * when handled here (relayed or refused in *err), 0 when it is local. */
int
pm_relay_route(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono, int *err)
{
    const char *node = NULL;
    switch (pm_relay_route_of(self, m->id, &node)) {
    case PM_ROUTE_LOCAL:
        return 0;
    case PM_ROUTE_LOST: {
        /* Its owner died; a backup is taking over: wait for it. With a
         * configuration store, unless no recorded in-sync member is alive:
         * then the space waits for one, and says so (never an older copy). */
        char space[PM_WIRE_MAX_NAME + 1], why[320];
        if (self->isr && pm_id_space(m->id, space, sizeof space) &&
            (*err = pm_isr_route_check(self->isr, space, why, sizeof why))) {
            pm_agent_reply_err(self, s, m->req_id, *err, why);
            *err = PM_OK;
            return 1;
        }
        *err = self->replica ? s_park_request(self, s, m, mono, 0) : PM_ERR_OWNER_LOST;
        return 1;
    }
    case PM_ROUTE_UNKNOWN: {
        /* A space of ours on probation: it is ours again or served
         * elsewhere once takeover_grace has passed (pm_relay_unpark then);
         * until then it waits, as for a takeover. Not NOT_FOUND: its
         * promises exist (in our WAL, and wherever it moved). */
        if (self->replica && s_on_probation(self, m->id)) {
            *err = s_park_request(self, s, m, mono, 0);
            return 1;
        }
        /* Gossip has not told us of the space, but the store may have: a
         * space whose owner and in-sync members are all gone is
         * UNAVAILABLE (it waits for one of them), not unknown. */
        char space[PM_WIRE_MAX_NAME + 1], why[320];
        if (self->isr && pm_id_space(m->id, space, sizeof space) &&
            (*err = pm_isr_route_check(self->isr, space, why, sizeof why))) {
            pm_agent_reply_err(self, s, m->req_id, *err, why);
            *err = PM_OK;
            return 1;
        }
        /* Just started, or the space is named after a live member (its new
         * primary): we may not have heard of it yet. Wait for the members'
         * metadata a moment before calling the id unknown. */
        if (self->replica &&
            (mono - self->started_mono < PM_AGENT_YOUNG_MS || s_space_of_live_member(self, m->id)))
            *err = s_park_request(self, s, m, mono, 1);
        else
            *err = PM_ERR_NOT_FOUND;
        return 1;
    }
    case PM_ROUTE_REMOTE:
        break;
    }
    if (m->type == PM_MSG_AWAIT) {
        *err = pm_waiter_remote_await(self, s, m, node, mono);
        return 1;
    }
    if (m->type == PM_MSG_THEN && m->new_id) {
        /* The caller minted the new id in the owner's space under its own
         * lease: <owner space>~<lease><n>. */
        size_t olen = pm_id_space_len(m->id);
        /* (Or, if the owner's space was ours until it moved: under the lease
         * as it stands, as for a promise of our own.) */
        if (strncmp(m->new_id, m->id, olen + 1) != 0 ||
            !(pm_req_minted_by(s, m->new_id + olen + 1) || pm_req_minted_by(s, m->new_id))) {
            *err = PM_ERR_BAD_REQUEST;
            return 1;
        }
    }
    *err = pm_relay_forward(self, s, m, node);
    return 1;
}
