/*
 * agent.c - see agent.h.
 *
 * One ROUTER socket on ipc://PATH serves every client. Each client (keyed by
 * its ZeroMQ routing id) has a session: an id-mint lease, its waiters, and,
 * for workers, its invocations. Libpmesh keeps a session alive with pings from
 * a side thread; a session silent for client_timeout is closed (waiters
 * dropped, invocations re-queued), which is how dead workers are detected.
 *
 * Requests are validated (wire.c) before anything changes; every refusal is a
 * typed error reply, a counter and (rate-limited) a log line.
 */
#include "agent_priv.h"
#include "agent_step.h"
#include "fanins.h"
#include "isr_agent.h"
#include "localsock.h"
#include "mint.h"
#include "place.h"
#include "rand.h"
#include "relay.h"
#include "requests.h"
#include "session.h"
#include "stats.h"
#include "takeover.h"
#include "thens.h"
#include "waiters.h"

#include <sodium.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A list, or the agent stops (base.h). */
/* mem:// for agents in one process (unit tests): the store they share. */
pm_coord_mem_t *pm_agent_coord_mem;

zlistx_t *
pm_agent_xlist(void)
{
    zlistx_t *l = zlistx_new();
    if (!l)
        pm_oom("list");
    return l;
}

/* Reads the clocks for the parts (agent_priv.h): the one place that does. */
void
pm_agent_clock(pm_agent_t *self)
{
    self->now_mono = pm_mono_ms();
    self->now_real = pm_real_ms();
}

void
pm_agent_bad_frame(pm_agent_t *self, const char *why)
{
    self->bad_frames++;
    /* The first ten, then one in a thousand: a flood must not become a
     * log flood. */
    if (self->bad_frames <= 10 || self->bad_frames % 1000 == 0)
        pm_log_warn("PM-CLIENT-BAD-FRAME", "%s (bad frames so far: %llu)", why,
                    (unsigned long long) self->bad_frames);
}

static void
s_observe(pm_agent_t *self, int type, int64_t t0_us)
{
    if (type > 0 && type < PM_MSG_TYPE_COUNT && type != PM_MSG_AWAIT)
        pm_hist_add(&self->op_ms[type], (double) (pm_mono_us() - t0_us) / 1000.0);
}

/* A reply that shows no state (an await that ended with the promise still
 * pending, or the agent cannot serve the request; a session's hello or a
 * worker's registration): nothing it says can be undone by a crash, so it
 * need not wait behind changes not yet durable. An await's timeout must not
 * wait for backups a split has cut off, nor a worker's registration for a
 * store that is down (its hello held, it would never serve). */
static int
s_reveals_nothing(const pm_agent_t *self, const pm_session_t *s, const pm_msg_t *m)
{
    if (m->type != PM_MSG_REPLY)
        return 0;
    if (m->err == PM_ERR_WAIT_TIMEOUT || m->err == PM_ERR_UNAVAILABLE ||
        m->err == PM_ERR_OWNER_LOST || m->err == PM_ERR_UNREACHABLE)
        return 1;
    return s == self->cur_session && m->req_id == self->cur_req &&
           (self->cur_type == PM_MSG_HELLO || self->cur_type == PM_MSG_REGISTER);
}

void
pm_agent_send(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m)
{
    /* The reply to the request being dispatched is timed when it leaves. */
    int timed = m->type == PM_MSG_REPLY && s == self->cur_session && m->req_id == self->cur_req;
    if (self->journal && (m->type == PM_MSG_REPLY || m->type == PM_MSG_REPLICATE_ACK) &&
        !s_reveals_nothing(self, s, m) && pm_journal_must_hold(self->journal)) {
        /* Acknowledge nothing before the records it acknowledges are durable
         * (here, and for a reply at the backups too). */
        pm_msg_t copy = *m;
        if (s->peer)
            copy.from = self->node;
        size_t len;
        uint8_t *buf = pm_wire_encode(&copy, &len);
        if (!buf)
            pm_oom("encoding a held reply");
        /* tag: the request type to time (> 0), or -type of a mesh message
         * that is not a reply (a backup's acknowledgement), so that the
         * mesh counts it under its own type when it is released. */
        int ack = m->type == PM_MSG_REPLICATE_ACK;
        /* A reply waits at most its await's deadline, else
         * held_reply_timeout: then it is answered UNAVAILABLE, never
         * silence (a backup's acknowledgement has no asker waiting). */
        int64_t deadline = self->send_deadline;
        if (!deadline && !ack)
            deadline = -(self->now_mono + self->held_reply_timeout);
        pm_journal_hold_ex(self->journal, s->id, s->peer, buf, len, ack,
                           ack ? -PM_MSG_REPLICATE_ACK : timed ? self->cur_type : 0,
                           self->cur_t0_us, deadline);
        return;
    }
    if (timed)
        s_observe(self, self->cur_type, self->cur_t0_us);
    if (s->peer) {
        pm_msg_t copy = *m;
        if (pm_mesh_send(self->mesh, s->peer, &copy) != 0)
            self->replies_dropped++;
        return;
    }
    size_t len;
    uint8_t *buf = pm_wire_encode(m, &len);
    if (!buf)
        pm_oom("encoding a reply");
    /* Unroutable (client gone) or its queue is full: dropped, counted. */
    if (pm_local_out(self, s, buf, len) != 0)
        self->replies_dropped++;
}

/* The journal releases a held message. */
void
pm_agent_journal_send(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len, int tag,
               int64_t t0_us)
{
    pm_agent_t *self = arg;
    if (tag > 0)
        s_observe(self, tag, t0_us);
    if (peer) {
        int type = tag < 0 ? -tag : PM_MSG_REPLY;
        if (!self->mesh || pm_mesh_send_raw(self->mesh, peer, type, buf, len) != 0)
            self->replies_dropped++;
        return;
    }
    pm_session_t *s = pm_session_by_id(self, session);
    if (!s) {
        free(buf);
        self->replies_dropped++;
    } else if (pm_local_out(self, s, buf, len) != 0)
        self->replies_dropped++;
}

/* A held reply whose asker has stopped waiting (its await's timeout) while
 * what it shows was not yet durable here and at the backups: a value
 * becomes WAIT_TIMEOUT (as far as anything durable says, the promise is
 * still pending), anything else UNAVAILABLE (this agent could not confirm
 * its answer in time: cut off from its backups, or its copy is stale). */
static void
s_expire_held(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len)
{
    pm_agent_t *self = arg;
    pm_msg_t m;
    int ok = pm_wire_decode(buf, len, &m) == PM_OK && m.type == PM_MSG_REPLY;
    int err = ok && !m.err ? PM_ERR_WAIT_TIMEOUT : PM_ERR_UNAVAILABLE;
    pm_fail_ctx_t ctx = {self, err,
                         err == PM_ERR_WAIT_TIMEOUT
                             ? NULL
                             : "this agent could not confirm its answer within the await's "
                               "timeout (cut off from its backups, or its copy is out of date)"};
    pm_wire_release(&m);
    self->held_expired++;
    pm_agent_fail_held(&ctx, session, peer, buf, len);
}

/* A held reply outlived held_reply_timeout: its change is not durable on
 * the backups yet, and may never be (a backup cut off while the store cannot
 * record the smaller set): answered UNAVAILABLE rather than never. */
static void
s_expire_bound(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len)
{
    pm_agent_t *self = arg;
    pm_fail_ctx_t ctx = {self, PM_ERR_UNAVAILABLE,
                         "this agent could not make its answer durable on its backups within "
                         "held_reply_timeout (cut off from them): the change may or may not "
                         "have happened"};
    self->held_expired++;
    pm_agent_fail_held(&ctx, session, peer, buf, len);
}

/* The journal hands over a held reply that must not be sent (its change may
 * not survive): the request is answered with the context's error instead. */
void
pm_agent_fail_held(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len)
{
    const pm_fail_ctx_t *ctx = arg;
    pm_agent_t *self = ctx->self;
    pm_msg_t m;
    if (pm_wire_decode(buf, len, &m) == PM_OK && m.type == PM_MSG_REPLY) {
        pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m.req_id, .err = ctx->err,
                      .from = peer ? self->node : NULL, .message = ctx->message};
        size_t n;
        uint8_t *out = pm_wire_encode(&r, &n);
        if (!out)
            pm_oom("encoding an error reply");
        self->replies_failed++;
        pm_agent_journal_send(self, session, peer, out, n, 0, 0);
    } else {
        self->replies_dropped++;
    }
    pm_wire_release(&m);
    free(buf);
}

void
pm_agent_workers_send(void *arg, void *who, const pm_msg_t *m)
{
    pm_agent_send(arg, who, m);
}

void
pm_agent_reply_err(pm_agent_t *self, pm_session_t *s, uint64_t req_id, int err, const char *message)
{
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = req_id, .err = err,
                  .message = message ? message : pm_strerror(err)};
    pm_agent_send(self, s, &r);
}

void
pm_agent_reply_promise(pm_agent_t *self, pm_session_t *s, uint64_t req_id, const pm_prom_t *p)
{
    pm_wire_promise_t v;
    pm_records_view(p, &v);
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = req_id, .promise = &v, .id = p->id};
    pm_agent_send(self, s, &r);
}

void
pm_agent_reply_ok(pm_agent_t *self, pm_session_t *s, uint64_t req_id)
{
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = req_id};
    pm_agent_send(self, s, &r);
}

void
pm_agent_store_changed(void *arg, pm_store_event_t ev, const pm_prom_t *p)
{
    pm_agent_t *self = arg;
    pm_journal_store_event(self->journal, ev, p);
}

void
pm_agent_on_peer_message(void *arg, const char *from, pm_msg_t *m)
{
    pm_agent_t *self = arg;
    pm_agent_clock(self);
    if (m->type == PM_MSG_REPLY) {
        pm_relay_on_peer_reply(self, from, m);
    } else if (m->type == PM_MSG_REPLICATE) {
        pm_takeover_on_replicate(self, from, m);
    } else if (m->type == PM_MSG_REPLICATE_ACK) {
        if (self->replica) {
            pm_replica_ack(self->replica, from, m, self->now_mono);
            pm_journal_repl(self->journal, pm_replica_produced(self->replica),
                            pm_replica_acked(self->replica));
        }
    } else if (m->type == PM_MSG_INVOKE) {
        /* Its result goes back to `from`, who placed it (place.c). */
        pm_workers_origin_t o = {.node = from, .inv_id = m->invocation_id,
                                 .next = self->chain_forward ? m->steps : NULL,
                                 .n_next = self->chain_forward ? m->step_count : 0};
        int err = pm_workers_invoke(self->workers, m->function, m->value, m->value_len,
                                    m->target_id, &o);
        if (err)
            pm_log(PM_LOG_ERROR, "PM-INVOKE-FAILED", m->target_id, "%s", pm_err_name(err));
    } else if (m->type == PM_MSG_RESULT) {
        pm_place_on_result(self, from, m); /* of an invocation we placed on `from` */
    } else {
        pm_session_t *s = pm_session_peer(self, from);
        if (s)
            pm_agent_dispatch(self, s, m);
    }
}

static int
s_handle(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now, int64_t mono)
{
    int routed_err;
    if (self->mesh && !s->peer &&
        (m->type == PM_MSG_SETTLE || m->type == PM_MSG_HEARTBEAT || m->type == PM_MSG_GET ||
         m->type == PM_MSG_AWAIT || m->type == PM_MSG_THEN) &&
        pm_relay_route(self, s, m, mono, &routed_err))
        return routed_err;
    /* A peer relays requests on promises of spaces it takes us to serve. In
     * one we do not serve (it moved on, or was never ours) nothing is
     * applied: our copy of it is a backup's, and a change made there would
     * be acknowledged without being at the space's owner or its backups. */
    if (self->mesh && s->peer && m->id &&
        (m->type == PM_MSG_SETTLE || m->type == PM_MSG_HEARTBEAT || m->type == PM_MSG_GET ||
         m->type == PM_MSG_AWAIT || m->type == PM_MSG_THEN) &&
        !pm_req_serves(self, m->id)) {
        self->refused_not_served++;
        pm_agent_reply_err(self, s, m->req_id, PM_ERR_OWNER_LOST,
                           "this agent does not serve the promise's id space (it moved on): "
                           "nothing was done");
        return PM_OK;
    }
    char create_sp[PM_WIRE_MAX_NAME + 1];
    if (self->replica && !s->peer && m->type == PM_MSG_CREATE &&
        !pm_mesh_owns(self->mesh,
                      m->id && pm_id_space(m->id, create_sp, sizeof create_sp) ? create_sp
                                                                               : self->mint,
                      NULL)) {
        /* The space new ids go to was taken over while we were cut off
         * (fenced, not restarted), or is not ours again yet after a restart
         * (mint.h), or a client's lease is in a space we mint in no more:
         * new promises in it are its owner's to create. */
        if (m->id && !pm_req_minted_by(s, m->id))
            return PM_ERR_BAD_REQUEST;
        char id[PM_WIRE_MAX_NAME + 1];
        pm_msg_t copy = *m;
        if (!m->id) {
            pm_req_mint(self, id, sizeof id);
            copy.id = id;
        }
        if (pm_relay_route(self, s, &copy, mono, &routed_err))
            return routed_err;
    }
    /* R2: an owner with fewer backups recorded in sync than min_in_sync
     * refuses writes; a space the store does not record as ours yet too. */
    if (self->isr && (m->type == PM_MSG_CREATE || m->type == PM_MSG_SETTLE ||
                      m->type == PM_MSG_THEN || m->type == PM_MSG_COMBINE)) {
        char space[PM_WIRE_MAX_NAME + 1], why[320];
        const char *sp = self->mint;
        if ((m->type != PM_MSG_CREATE && m->type != PM_MSG_COMBINE) || m->id) {
            if (!m->id || !pm_id_space(m->id, space, sizeof space))
                return PM_ERR_BAD_REQUEST;
            sp = space;
        }
        int err = pm_isr_write_check(self->isr, sp, why, sizeof why);
        if (err) {
            pm_agent_reply_err(self, s, m->req_id, err, why);
            return PM_OK; /* answered, with the reason */
        }
    }
    switch (m->type) {
    case PM_MSG_HELLO: {
        /* A client that says hello hears client_timeout_ms and pings well
         * within it (libpmesh, the Python and Node SDKs): its silence means
         * death from now on, also before its first ping (a worker that dies
         * holding its first invocation would otherwise hold it for ever). */
        s->pinged = 1;
        s->batches = m->batches; /* localbatch.c */
        pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .node = self->node,
                      .mint_prefix = s->mint, .session = s->id,
                      .max_value = self->max_value_bytes,
                      .client_timeout_ms = (uint64_t) self->client_timeout};
        pm_agent_send(self, s, &r);
        return PM_OK;
    }
    case PM_MSG_CREATE:
        return pm_req_do_create(self, s, m, now);
    case PM_MSG_SETTLE:
        return pm_req_do_settle(self, s, m, now);
    case PM_MSG_HEARTBEAT: {
        int err = pm_store_heartbeat(self->store, m->id, now, NULL);
        if (!err)
            pm_agent_reply_ok(self, s, m->req_id);
        return err;
    }
    case PM_MSG_GET: {
        pm_prom_t *p = pm_store_get(self->store, m->id);
        if (!p)
            return PM_ERR_NOT_FOUND;
        pm_agent_reply_promise(self, s, m->req_id, p);
        return PM_OK;
    }
    case PM_MSG_AWAIT:
        return pm_waiter_do_await(self, s, m, mono);
    case PM_MSG_THEN:
        return pm_then_do(self, s, m, now);
    case PM_MSG_COMBINE:
        return pm_fanins_do(self, s, m, now);
    case PM_MSG_LIST:
        return pm_req_do_list(self, s, m);
    case PM_MSG_STATUS:
        pm_req_do_status(self, s, m);
        return PM_OK;
    case PM_MSG_REGISTER: {
        int err = pm_workers_register(self->workers, s, m->functions, m->function_count,
                                      m->concurrency);
        if (!err)
            pm_agent_reply_ok(self, s, m->req_id);
        return err;
    }
    case PM_MSG_RESULT: {
        int err = pm_workers_result(self->workers, s, m);
        if (err == PM_ERR_NOT_HOLDER)
            pm_log_warn("PM-WORKER-NOT-HOLDER", "session %llu answered invocation %s it does "
                        "not hold", (unsigned long long) s->id, m->invocation_id);
        if (!err && m->req_id) /* req_id 0: the worker wants no acknowledgement */
            pm_agent_reply_ok(self, s, m->req_id);
        return err;
    }
    case PM_MSG_PING: {
        pm_session_t *target = pm_session_by_id(self, m->session);
        if (target) {
            target->last_seen = mono;
            target->pinged = 1;
        }
        return PM_OK; /* pings are never answered */
    }
    case PM_MSG_BYE:
        return PM_OK; /* the caller closes the session */
    case PM_MSG_FORCE_OWNER:
        return pm_isr_agent_force(self, s, m);
    case PM_MSG_MEMBERS: {
        char *json = self->mesh ? pm_mesh_members_json(self->mesh) : NULL;
        char solo[512];
        if (!json)
            snprintf(solo, sizeof solo, "[{\"node\":\"%s\",\"endpoint\":\"\",\"state\":"
                     "\"alive\",\"incarnation\":0,\"last_heard_ms_ago\":0,\"self\":true,"
                     "\"functions\":[]}]", self->node);
        pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .json = json ? json : solo};
        pm_agent_send(self, s, &r);
        free(json);
        return PM_OK;
    }
    default:
        return PM_ERR_BAD_REQUEST; /* replies and invocations do not flow this way */
    }
}

/* Serves one decoded request from session s (a client or a peer agent). */
void
pm_agent_dispatch(pm_agent_t *self, pm_session_t *s, pm_msg_t *m)
{
    if (self->stopping && m->type != PM_MSG_PING && m->type != PM_MSG_BYE) {
        pm_agent_reply_err(self, s, m->req_id, PM_ERR_AGENT_SHUTTING_DOWN, NULL);
        return;
    }
    self->cur_session = s;
    self->cur_req = m->req_id;
    self->cur_type = m->type;
    self->cur_t0_us = pm_mono_us();
    pm_agent_clock(self);
    /* An await's own answer (not found, refused, already settled) is due by
     * its timeout like the value it waits for. */
    self->send_deadline = m->type == PM_MSG_AWAIT ? pm_waiter_deadline(self->now_mono, m) : 0;
    int err = s_handle(self, s, m, self->now_real, self->now_mono);
    if (m->type < PM_MSG_TYPE_COUNT) {
        if (err)
            self->ops[m->type].err++;
        else
            self->ops[m->type].ok++;
    }
    if (err) {
        if (err == PM_ERR_BAD_REQUEST)
            pm_agent_bad_frame(self, "invalid request");
        if (m->req_id || m->type != PM_MSG_RESULT)
            pm_agent_reply_err(self, s, m->req_id, err, NULL);
    }
    self->send_deadline = 0;
    self->cur_session = NULL;
    if (m->type == PM_MSG_BYE && !s->peer)
        pm_session_close(self, s, "said bye");
}

/* One frame from a client (routing id rid): decoded, dispatched or refused. */
static void
s_on_frame(pm_agent_t *self, const uint8_t *rid, size_t rid_len, const uint8_t *body,
           size_t body_len)
{
    int64_t mono = pm_mono_ms();
    pm_session_t *s = pm_session_get(self, rid, rid_len, mono);
    if (!s)
        return;
    pm_msg_t m;
    int err = pm_wire_decode(body, body_len, &m);
    if (err) {
        char why[96];
        snprintf(why, sizeof why, "%s frame of %zu bytes from session %llu", pm_err_name(err),
                 body_len, (unsigned long long) s->id);
        pm_agent_bad_frame(self, why);
        pm_agent_reply_err(self, s, m.req_id, err,
                    err == PM_ERR_BAD_VERSION ? "unsupported envelope version" : "malformed frame");
    } else {
        pm_agent_dispatch(self, s, &m);
    }
    pm_wire_release(&m);
}

static void
s_drain_router(pm_agent_t *self)
{
    for (int i = 0; i < PM_AGENT_BATCH; i++) {
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, self->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&rid);
            return;
        }
        zmq_msg_init(&body);
        int ok = zmq_msg_more(&rid) && zmq_msg_recv(&body, self->router, 0) >= 0;
        int extra = 0;
        while (ok && zmq_msg_more(&body)) { /* more than one body frame: drain and refuse */
            zmq_msg_t junk;
            zmq_msg_init(&junk);
            zmq_msg_recv(&junk, self->router, 0);
            extra = zmq_msg_more(&junk);
            zmq_msg_close(&junk);
            if (!extra)
                break;
        }
        if (!ok || zmq_msg_more(&body) || extra)
            pm_agent_bad_frame(self, "unexpected frame count");
        else
            s_on_frame(self, zmq_msg_data(&rid), zmq_msg_size(&rid), zmq_msg_data(&body),
                       zmq_msg_size(&body));
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
}

static long
s_poll_timeout(pm_agent_t *self, int64_t real, int64_t mono)
{
    int64_t t = PM_AGENT_SWEEP_MS;
    int64_t d = pm_store_next_deadline(self->store);
    if (d != INT64_MAX && d - real < t)
        t = d - real;
    pm_timer_t *w = pm_timers_peek(self->timers);
    if (w && w->at - mono < t)
        t = w->at - mono;
    pm_timer_t *r = pm_timers_peek(self->relay_timers);
    if (r && r->at - mono < t)
        t = r->at - mono;
    pm_timer_t *f = self->fanin_timers ? pm_timers_peek(self->fanin_timers) : NULL;
    if (f && f->at - mono < t)
        t = f->at - mono;
    pm_timer_t *h = self->then_timers ? pm_timers_peek(self->then_timers) : NULL;
    if (h && h->at - mono < t)
        t = h->at - mono;
    if (self->mesh) {
        int64_t mt = pm_mesh_timeout(self->mesh);
        if (mt < t)
            t = mt;
    }
    return t < 0 ? 0 : t;
}

/* The second half of every loop iteration: the clocks, then every timer and
 * flush (deadlines, waits, relays, the mesh, takeovers, the store's rules,
 * replication, the WAL, idle sessions). */
static void
s_timers(pm_agent_t *self)
{
    pm_fn_cap_t caps[256];
    pm_agent_clock(self);
    pm_store_tick(self->store, self->now_real);
    int64_t mono = self->now_mono;
    pm_waiter_fire_timeouts(self, mono);
    if (self->journal)
        pm_journal_expire(self->journal, mono, s_expire_held, s_expire_bound, self);
    pm_fanins_fire(self, mono);
    pm_then_tick(self, mono);
    pm_timer_t *t;
    while ((t = pm_timers_pop_due(self->relay_timers, mono)))
        pm_relay_expired(self, pm_container_of(t, pm_relay_t, timer));
    if (self->mesh) {
        size_t n = pm_workers_caps(self->workers, caps, sizeof caps / sizeof caps[0]);
        pm_mesh_set_functions(self->mesh, caps, n);
        pm_mesh_tick(self->mesh);
    }
    pm_takeover_housekeeping(self, mono);
    pm_place_tick(self, mono);
    if (self->isr) {
        pm_isr_tick(self->isr, mono);
        pm_mint_tick(self, mono);
    }
    if (self->replica) {
        size_t probation = self->probation.n;
        pm_takeover_check_probation(self, mono);
        if (self->probation.n < probation)
            pm_relay_unpark(self); /* requests parked on a space it decided about */
        pm_replica_flush(self->replica, mono);
        pm_journal_repl(self->journal, pm_replica_produced(self->replica),
                        pm_replica_acked(self->replica));
    }
    /* 1: a result it released settled a target (place.c): its records go to
     * the backups now, not at the next wake-up. */
    if (self->journal && pm_journal_flush(self->journal) == 1 && self->replica) {
        pm_replica_flush(self->replica, mono);
        pm_journal_repl(self->journal, pm_replica_produced(self->replica),
                        pm_replica_acked(self->replica));
    }
    if (mono - self->last_sweep >= PM_AGENT_SWEEP_MS) {
        pm_session_sweep(self, mono);
        self->last_sweep = mono;
    }
}

/* A turn of the loop: what it sends a client that takes batches waits until
 * its end and leaves as one frame (localbatch.c); with mesh_batch, what it
 * sends a peer too (mesh/outbox.c). */
static void
s_turn_begin(pm_agent_t *self)
{
    self->turn_open = 1;
    if (self->mesh && self->mesh_batch)
        pm_mesh_cork(self->mesh);
}

static void
s_turn_end(pm_agent_t *self)
{
    self->turn_open = 0;
    pm_local_flush(self);
    if (self->mesh && self->mesh_batch)
        pm_mesh_uncork(self->mesh);
}

int
pm_agent_run(pm_agent_t *self)
{
    zmq_pollitem_t items[5] = {{self->router, 0, ZMQ_POLLIN, 0},
                               {NULL, self->sigfd, ZMQ_POLLIN, 0},
                               {NULL, -1, 0, 0},
                               {NULL, -1, 0, 0},
                               {NULL, -1, 0, 0}};
    int n_items = 2, mesh_item = -1, wal_item = -1, isr_item = -1;
    if (self->isr) {
        items[n_items] = (zmq_pollitem_t){pm_isr_socket(self->isr), 0, ZMQ_POLLIN, 0};
        isr_item = n_items++;
    }
    if (self->mesh) {
        items[n_items] = (zmq_pollitem_t){pm_mesh_socket(self->mesh), 0, ZMQ_POLLIN, 0};
        mesh_item = n_items++;
    }
    if (self->journal && pm_journal_socket(self->journal)) {
        items[n_items] = (zmq_pollitem_t){pm_journal_socket(self->journal), 0, ZMQ_POLLIN, 0};
        wal_item = n_items++;
    }
    pm_log_info("PM-AGENT-READY", "node %s serving ipc://%s (id space %s)", self->node,
                self->socket_path, self->space);
    while (!self->stopping) {
        long timeout = s_poll_timeout(self, pm_real_ms(), pm_mono_ms());
        int rc = zmq_poll(items, n_items, timeout);
        if (rc < 0 && errno != EINTR) {
            pm_log_error("PM-AGENT-POLL", "zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        pm_agent_clock(self);
        s_turn_begin(self);
        pm_session_check_stall(self, self->now_mono);
        if (items[0].revents & ZMQ_POLLIN)
            s_drain_router(self);
        if (mesh_item >= 0 && (items[mesh_item].revents & ZMQ_POLLIN))
            pm_mesh_readable(self->mesh);
        if (wal_item >= 0 && (items[wal_item].revents & ZMQ_POLLIN))
            pm_journal_readable(self->journal);
        if (isr_item >= 0 && (items[isr_item].revents & ZMQ_POLLIN))
            pm_isr_readable(self->isr, self->now_mono);
        if (items[1].revents & ZMQ_POLLIN) {
            struct signalfd_siginfo si;
            if (read(self->sigfd, &si, sizeof si) == sizeof si) {
                pm_log_info("PM-AGENT-STOPPING", "signal %u: shutting down", si.ssi_signo);
                self->stopping = 1;
            }
        }
        s_timers(self);
        s_turn_end(self);
    }
    /* Every pending await hears that we are going, rather than hanging. */
    size_t told = 0;
    for (pm_session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions))
        while (s->waiters) {
            pm_agent_reply_err(self, s, s->waiters->req_id, PM_ERR_AGENT_SHUTTING_DOWN, NULL);
            pm_waiter_free(self, s->waiters);
            told++;
        }
    for (pm_relay_t *r = zhashx_first(self->relays); r; r = zhashx_next(self->relays)) {
        pm_session_t *s = r->kind == PM_RELAY_OP ? pm_session_by_id(self, r->session) : NULL;
        if (s) {
            pm_agent_reply_err(self, s, r->req_id, PM_ERR_AGENT_SHUTTING_DOWN, NULL);
            told++;
        }
    }
    if (self->mesh)
        pm_mesh_leave(self->mesh); /* peers mark us left at once, no suspicion */
    pm_log_info("PM-AGENT-STOPPED", "told %zu waiters; bye", told);
    return 0;
}

/* ---- driven by the simulator (agent_step.h) ---------------------------------- */

void
pm_agent_sim_deliver(pm_agent_t *self, const uint8_t *rid, size_t rid_len, const uint8_t *buf,
                     size_t len)
{
    pm_agent_clock(self);
    s_turn_begin(self);
    s_on_frame(self, rid, rid_len, buf, len);
    s_turn_end(self);
}

void
pm_agent_sim_step(pm_agent_t *self)
{
    pm_agent_clock(self);
    s_turn_begin(self);
    pm_session_check_stall(self, self->now_mono);
    if (self->mesh)
        pm_mesh_readable(self->mesh);
    if (self->journal && pm_journal_socket(self->journal))
        pm_journal_readable(self->journal);
    if (self->isr)
        pm_isr_readable(self->isr, self->now_mono);
    s_timers(self);
    s_turn_end(self);
}

int64_t
pm_agent_sim_timeout(pm_agent_t *self)
{
    return s_poll_timeout(self, pm_real_ms(), pm_mono_ms());
}

const char *
pm_agent_sim_space(const pm_agent_t *self)
{
    return self->space;
}

pm_coord_t *
pm_agent_sim_coord(pm_agent_t *self)
{
    return self->isr ? pm_isr_coord(self->isr) : NULL;
}

char *
pm_agent_sim_status(pm_agent_t *self)
{
    pm_stats_t st;
    pm_req_stats(self, &st);
    json_t *o = pm_stats_json(&st);
    char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    pm_stats_clear(&st);
    return json;
}
