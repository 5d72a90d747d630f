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
static void
s_clock(pm_agent_t *self)
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
 * pending, or the agent cannot serve the request): nothing it says can be
 * undone by a crash, so it need not wait behind changes not yet durable.
 * An await's timeout must not wait for backups a split has cut off. */
static int
s_reveals_nothing(const pm_msg_t *m)
{
    return m->type == PM_MSG_REPLY &&
           (m->err == PM_ERR_WAIT_TIMEOUT || m->err == PM_ERR_UNAVAILABLE ||
            m->err == PM_ERR_OWNER_LOST || m->err == PM_ERR_UNREACHABLE);
}

void
pm_agent_send(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m)
{
    /* The reply to the request being dispatched is timed when it leaves. */
    int timed = m->type == PM_MSG_REPLY && s == self->cur_session && m->req_id == self->cur_req;
    if (self->journal && (m->type == PM_MSG_REPLY || m->type == PM_MSG_REPLICATE_ACK) &&
        !s_reveals_nothing(m) && pm_journal_must_hold(self->journal)) {
        /* Acknowledge nothing before the records it acknowledges are durable
         * (here, and for a reply at the backups too). */
        pm_msg_t copy = *m;
        if (s->peer)
            copy.from = self->node;
        size_t len;
        uint8_t *buf = pm_wire_encode(&copy, &len);
        if (!buf)
            pm_oom("encoding a held reply");
        pm_journal_hold_ex(self->journal, s->id, s->peer, buf, len,
                           m->type == PM_MSG_REPLICATE_ACK, timed ? self->cur_type : 0,
                           self->cur_t0_us, self->send_deadline);
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
    if (pm_local_send(self->router, s->rid, s->rid_len, buf, len) != 0)
        self->replies_dropped++;
}

/* The journal releases a held message. */
static void
s_journal_send(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len, int tag,
               int64_t t0_us)
{
    pm_agent_t *self = arg;
    if (tag)
        s_observe(self, tag, t0_us);
    if (peer) {
        if (!self->mesh || pm_mesh_send_raw(self->mesh, peer, PM_MSG_REPLY, buf, len) != 0)
            self->replies_dropped++;
        return;
    }
    pm_session_t *s = pm_session_by_id(self, session);
    if (!s) {
        free(buf);
        self->replies_dropped++;
    } else if (pm_local_send(self->router, s->rid, s->rid_len, buf, len) != 0)
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
        s_journal_send(self, session, peer, out, n, 0, 0);
    } else {
        self->replies_dropped++;
    }
    pm_wire_release(&m);
    free(buf);
}

static void
s_workers_send(void *arg, void *who, const pm_msg_t *m)
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

static void
s_store_changed(void *arg, pm_store_event_t ev, const pm_prom_t *p)
{
    pm_agent_t *self = arg;
    pm_journal_store_event(self->journal, ev, p);
}

static void
s_on_peer_message(void *arg, const char *from, pm_msg_t *m)
{
    pm_agent_t *self = arg;
    s_clock(self);
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
        int err = pm_workers_invoke(self->workers, m->function, m->value, m->value_len,
                                    m->target_id);
        if (err)
            pm_log(PM_LOG_ERROR, "PM-INVOKE-FAILED", m->target_id, "%s", pm_err_name(err));
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
    if (self->replica && !s->peer && m->type == PM_MSG_CREATE &&
        !pm_mesh_owns(self->mesh, self->space, NULL)) {
        /* Our space was taken over while we were cut off (fenced, not
         * restarted): new promises in it are the new owner's to create. */
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
        const char *sp = self->space;
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
    s_clock(self);
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
    s_clock(self);
    pm_store_tick(self->store, self->now_real);
    int64_t mono = self->now_mono;
    pm_waiter_fire_timeouts(self, mono);
    if (self->journal)
        pm_journal_expire(self->journal, mono, s_expire_held, self);
    pm_timer_t *t;
    while ((t = pm_timers_pop_due(self->relay_timers, mono)))
        pm_relay_expired(self, pm_container_of(t, pm_relay_t, timer));
    if (self->mesh) {
        size_t n = pm_workers_caps(self->workers, caps, sizeof caps / sizeof caps[0]);
        pm_mesh_set_functions(self->mesh, caps, n);
        pm_mesh_tick(self->mesh);
    }
    pm_takeover_housekeeping(self, mono);
    if (self->isr)
        pm_isr_tick(self->isr, mono);
    if (self->replica) {
        pm_takeover_check_probation(self, mono);
        pm_replica_flush(self->replica, mono);
        pm_journal_repl(self->journal, pm_replica_produced(self->replica),
                        pm_replica_acked(self->replica));
    }
    if (self->journal)
        pm_journal_flush(self->journal);
    if (mono - self->last_sweep >= PM_AGENT_SWEEP_MS) {
        pm_session_sweep(self, mono);
        self->last_sweep = mono;
    }
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
        s_clock(self);
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

static int
s_mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return 0;
}

/* A socket file left by a dead agent is removed; one that answers belongs to
 * a live agent and is not stolen. */
static int
s_claim_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        pm_log_error("PM-AGENT-SOCKET", "%s exists and is not a socket", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int live = fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    if (live) {
        pm_log_error("PM-AGENT-SOCKET", "another agent is serving %s", path);
        return -1;
    }
    unlink(path);
    return 0;
}

/* sim_ctx NULL: a real agent (its own ZeroMQ context, signals, the local
 * socket). Otherwise driven by the simulator (agent_step.h): no socket, no
 * signalfd, the caller's context, and nothing waits on the wall clock. */
static pm_agent_t *
s_new(const pm_config_t *cfg, const char *node, const char *socket_path, void *sim_ctx)
{
    if (strlen(socket_path) >= sizeof(((struct sockaddr_un *) 0)->sun_path)) {
        pm_log_error("PM-AGENT-SOCKET", "socket path too long (%zu bytes, max %zu): %s",
                     strlen(socket_path), sizeof(((struct sockaddr_un *) 0)->sun_path) - 1,
                     socket_path);
        return NULL;
    }
    pm_agent_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->sigfd = -1;
    self->node = strdup(node);
    self->socket_path = strdup(socket_path);
    self->max_value_bytes = (size_t) cfg->max_value_bytes;
    self->client_timeout = cfg->client_timeout;
    self->max_waiters = (size_t) cfg->max_waiters_per_client;
    self->max_fanin = (size_t) cfg->max_fanin_inputs;
    self->list_limit = (uint32_t) cfg->list_limit;
    self->started_mono = self->last_sweep = pm_mono_ms();
    /* Relay ids start at a random point: a reply meant for our previous run
     * (a peer that did not notice the restart) cannot match a relay of this
     * one. */
    self->next_relay = pm_rand_u64() >> 1;
    self->started_real = pm_real_ms();
    s_clock(self);

    pm_store_limits_t limits = {.max_value_bytes = self->max_value_bytes,
                                .max_labels = (size_t) cfg->max_labels,
                                .max_id_bytes = PM_WIRE_MAX_NAME};
    self->store = pm_store_new(&limits);
    self->timers = pm_timers_new();
    self->sessions = zhashx_new();
    self->by_id = zhashx_new();
    self->sim = sim_ctx != NULL;
    self->ctx = sim_ctx ? sim_ctx : zmq_ctx_new();
    if (!self->store || !self->timers || !self->sessions || !self->by_id || !self->ctx)
        goto fail;
    zhashx_set_destructor(self->sessions, pm_session_destructor);

    /* With a data dir the id space is the one the WAL remembers, and each
     * start is a new generation (so ids minted now never repeat old ones);
     * without one, a random boot tag makes the space new on every start. */
    pm_journal_state_t st = {0};
    self->generation = 1;
    self->retention = cfg->retention;
    self->retire_interval = cfg->retire_interval;
    self->next_retire = pm_mono_ms() + cfg->retire_interval;
    self->replicas = (int) cfg->replicas;
    int mesh_on = cfg->bind && *cfg->bind;
    int replicated = mesh_on && self->replicas >= 2;
    if (replicated && !(cfg->coordination && *cfg->coordination)) {
        snprintf(self->coord_desc, sizeof self->coord_desc,
                 "none (a split can lose acknowledged data)");
        pm_log_warn("PM-COORD-NONE", "no configuration store (--unsafe-no-coordination): "
                    "gossip decides who owns each id space, and a network split can lose "
                    "acknowledged data");
    }
    if ((cfg->data_dir && *cfg->data_dir) || replicated) {
        char err[512];
        const char *dir = cfg->data_dir && *cfg->data_dir ? cfg->data_dir : NULL;
        self->journal = pm_journal_open(dir, cfg->fsync, self->ctx, s_journal_send, self, err,
                                        sizeof err);
        /* A predecessor killed a moment ago may still be exiting (its last
         * threads hold the lock): give it up to 5 s before refusing. */
        for (int i = 0; i < 50 && !self->sim && !self->journal && strstr(err, "in use"); i++) {
            usleep(100 * 1000);
            self->journal = pm_journal_open(dir, cfg->fsync, self->ctx, s_journal_send, self,
                                            err, sizeof err);
        }
        if (!self->journal) {
            pm_log_error("PM-WAL-OPEN", "%s", err);
            goto fail;
        }
        if (pm_journal_replay(self->journal, self->store, &st, err, sizeof err) != 0) {
            pm_log_error("PM-WAL-CORRUPT", "refusing to start: %s", err);
            pm_journal_state_free(&st);
            goto fail;
        }
        self->generation = st.generation + 1;
    }
    int coordinated = replicated && cfg->coordination && *cfg->coordination;
    uint64_t boot = 0;
    if (st.space[0] && !replicated) {
        snprintf(self->space, sizeof self->space, "%.100s", st.space);
    } else {
        boot = pm_rand_u64() & 0xffffffffffULL;
        if (!boot)
            boot = 1; /* with a store, the tag is the process id: never 0 */
        pm_id_space_name(self->space, sizeof self->space, node, boot);
        /* With backups, the spaces we served may have been taken over while
         * we were down: new promises go to a new space, and the old ones are
         * resumed only if nobody announces them within takeover_grace. */
        /* With a configuration store, a new process takes nothing back by
         * itself: the store says who owns those spaces (R5, isr.h). */
        if (st.space[0] && !coordinated)
            pm_claims_add(&self->probation, st.space, 1);
        for (size_t i = 0; i < st.claimed_count && !coordinated; i++)
            pm_claims_add(&self->probation, st.claimed[i].space, st.claimed[i].epoch);
    }
    if (self->journal) {
        pm_journal_set_record_hook(self->journal, pm_takeover_on_record, self);
        pm_journal_generation(self->journal, self->space, self->generation);
        pm_store_set_listener(self->store, s_store_changed, self);
    }
    self->rthens = zhashx_new();
    if (!self->rthens)
        goto fail;
    zhashx_set_destructor(self->rthens, pm_then_rthen_destructor);
    if (mesh_on) {
        pm_mesh_hooks_t mh = {.message = s_on_peer_message, .member = pm_takeover_on_member,
                              .moved = pm_takeover_on_moved,
                              .contested = coordinated ? pm_takeover_on_contested : NULL};
        self->mesh = pm_mesh_new(self->ctx, cfg, node, self->space, &mh, self);
        if (!self->mesh) {
            pm_journal_state_free(&st);
            goto fail;
        }
        self->backup = pm_backup_new();
        if (!self->backup) {
            pm_journal_state_free(&st);
            goto fail;
        }
        if (replicated) {
            pm_replica_hooks_t rh = {.full_state = pm_takeover_full_state,
                                     .fenced = pm_takeover_on_fenced};
            /* The stream id: random, so a restarted owner's stream is new. */
            uint64_t stream = pm_rand_u64();
            /* With a store, the stream id is the process id the store
             * records: the tag of our primary space, which peers read. */
            if (coordinated)
                stream = boot;
            self->replica = pm_replica_new(self->mesh, self->space, self->replicas, &rh, self,
                                           stream, pm_mono_ms());
            if (!self->replica) {
                pm_journal_state_free(&st);
                goto fail;
            }
            if (coordinated) {
                char err[512];
                int min = cfg->min_in_sync >= 0 ? (int) cfg->min_in_sync : self->replicas - 1;
                /* The process before us on this data dir: what it acknowledged
                 * is in the WAL we replayed (unless fsync never), so we may
                 * stand in for it in an in-sync set (isr.h). */
                uint64_t prev = cfg->data_dir && *cfg->data_dir && cfg->fsync != 2 &&
                                        st.space[0]
                                    ? pm_replica_pid_of(st.space)
                                    : 0;
                pm_isr_config_t ic = {.url = cfg->coordination,
                                      .prefix = cfg->coordination_prefix,
                                      .mem = pm_agent_coord_mem, .zmq_ctx = self->ctx,
                                      .node = node, .primary = self->space, .pid = boot,
                                      .prev = prev, .min_in_sync = min,
                                      .ca_file = cfg->coordination_ca_file,
                                      .cert_file = cfg->coordination_cert_file,
                                      .key_file = cfg->coordination_key_file};
                self->isr = pm_isr_new(&ic, &pm_isr_agent_env, self, err, sizeof err);
                if (!self->isr) {
                    pm_log_error("PM-COORD-CONFIG", "%s", err);
                    pm_journal_state_free(&st);
                    goto fail;
                }
                snprintf(self->coord_desc, sizeof self->coord_desc, "%.150s",
                         cfg->coordination);
                pm_isr_start(self->isr);
            }
            /* Only our new space is ours until the grace period says more;
             * a space we had taken over before is treated like our old one. */
            char keep[PM_WIRE_MAX_NAME + 2];
            pm_id_space_prefix(keep, sizeof keep, self->space);
            pm_store_passivate(self->store, keep, 1);
            self->probation_until = pm_mono_ms() + cfg->takeover_grace;
            self->probation_alone = pm_mono_ms() + PM_AGENT_ALONE_GRACES * cfg->takeover_grace;
            for (size_t i = 0; i < self->probation.n; i++)
                pm_log_info("PM-SPACE-PROBATION", "restarted: id space %s (epoch %llu) is "
                            "resumed after %lld ms, once another member's state has reached "
                            "us, unless some agent serves it; new promises go to %s",
                            self->probation.v[i].space,
                            (unsigned long long) self->probation.v[i].epoch,
                            (long long) cfg->takeover_grace, self->space);
        }
    }

    pm_workers_hooks_t hooks = {.send = s_workers_send, .settle = pm_place_settle_anywhere,
                                .pending = pm_place_target_pending};
    self->workers = pm_workers_new(self->space, &hooks, self);
    self->relays = zhashx_new();
    self->rwaits = zhashx_new();
    self->relay_timers = pm_timers_new();
    if (!self->workers || !self->relays || !self->rwaits || !self->relay_timers) {
        pm_journal_state_free(&st);
        goto fail;
    }
    zhashx_set_destructor(self->relays, pm_relay_destructor);
    zhashx_set_destructor(self->rwaits, pm_waiter_rwait_destructor);
    self->forward_timeout = cfg->forward_timeout;
    if (cfg->token_secret_file && *cfg->token_secret_file) {
        char err[512];
        if (pm_token_load_secret(cfg->token_secret_file, &self->token_key, &self->token_key_len,
                                 err, sizeof err) != 0) {
            pm_log_error("PM-TOKEN-SECRET", "%s", err);
            pm_journal_state_free(&st);
            goto fail;
        }
    }
    if (self->journal) {
        size_t n = pm_then_restore(self, &st);
        pm_log_info("PM-AGENT-RECOVERED", "generation %llu of id space %s: %zu promises "
                    "(%zu pending), %zu continuations, %llu records in %lld ms",
                    (unsigned long long) self->generation, self->space,
                    pm_store_count(self->store, 0), pm_store_count(self->store, PM_STATE_PENDING),
                    n, (unsigned long long) st.records, (long long) st.recovery_ms);
    }
    pm_journal_state_free(&st);
    if (self->sim)
        return self;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    self->sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (self->sigfd < 0)
        goto fail;

    if (s_mkdirs(socket_path) < 0) {
        pm_log_error("PM-AGENT-SOCKET", "cannot create the directory of %s: %s", socket_path,
                     strerror(errno));
        goto fail;
    }
    if (s_claim_path(socket_path) < 0)
        goto fail;
    self->router = zmq_socket(self->ctx, ZMQ_ROUTER);
    int one = 1, zero = 0, hwm = PM_AGENT_SNDHWM;
    /* Frames up to 4x the value limit are read and refused with
     * VALUE_TOO_LARGE; beyond that libzmq cuts the connection before
     * buffering (libpmesh refuses such values itself, knowing the limit). */
    int64_t maxmsg = 4 * (int64_t) self->max_value_bytes + 64 * 1024;
    zmq_setsockopt(self->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    /* Frames larger than the largest legal request are cut off by libzmq
     * before they are buffered. */
    zmq_setsockopt(self->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    char ep[4200];
    snprintf(ep, sizeof ep, "ipc://%s", socket_path);
    mode_t old = umask(0117); /* socket file 0660 from the start */
    int rc = zmq_bind(self->router, ep);
    umask(old);
    if (rc < 0) {
        pm_log_error("PM-AGENT-SOCKET", "cannot bind %s: %s", ep, zmq_strerror(errno));
        goto fail;
    }
    chmod(socket_path, 0660);
    return self;
fail:
    pm_agent_destroy(&self);
    return NULL;
}

pm_agent_t *
pm_agent_new(const pm_config_t *cfg, const char *node, const char *socket_path)
{
    return s_new(cfg, node, socket_path, NULL);
}

/* ---- driven by the simulator (agent_step.h) ---------------------------------- */

pm_agent_t *
pm_agent_sim_new(const pm_config_t *cfg, const char *node, void *zmq_ctx)
{
    if (!zmq_ctx)
        return NULL;
    return s_new(cfg, node, "sim", zmq_ctx);
}

void
pm_agent_sim_deliver(pm_agent_t *self, const uint8_t *rid, size_t rid_len, const uint8_t *buf,
                     size_t len)
{
    s_clock(self);
    s_on_frame(self, rid, rid_len, buf, len);
}

void
pm_agent_sim_step(pm_agent_t *self)
{
    s_clock(self);
    pm_session_check_stall(self, self->now_mono);
    if (self->mesh)
        pm_mesh_readable(self->mesh);
    if (self->journal && pm_journal_socket(self->journal))
        pm_journal_readable(self->journal);
    if (self->isr)
        pm_isr_readable(self->isr, self->now_mono);
    s_timers(self);
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

void
pm_agent_destroy(pm_agent_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_agent_t *self = *self_p;
    if (self->sessions) {
        pm_session_t *s;
        while ((s = zhashx_first(self->sessions)))
            pm_session_close(self, s, "agent stopping");
    }
    while (self->thens) {
        pm_then_t *t = self->thens;
        pm_watch_cancel(&t->watch);
        pm_then_unlink(self, t);
        pm_then_free(t);
    }
    pm_fanins_destroy_all(self);
    while (self->delegs) {
        pm_deleg_t *d = self->delegs;
        pm_place_deleg_unlink(self, d);
        pm_place_deleg_free(d);
    }
    if (self->journal) {
        /* Replies the backups have not acknowledged are no acknowledgement. */
        pm_fail_ctx_t ctx = {self, PM_ERR_AGENT_SHUTTING_DOWN,
                            pm_strerror(PM_ERR_AGENT_SHUTTING_DOWN)};
        pm_journal_fail_unreplicated(self->journal, pm_agent_fail_held, &ctx);
    }
    pm_journal_close(&self->journal); /* releases what it held while the sockets live */
    pm_isr_destroy(&self->isr);
    pm_replica_destroy(&self->replica);
    zhashx_destroy(&self->rthens);
    pm_claims_free(&self->probation);
    pm_backup_destroy(&self->backup);
    if (self->token_key)
        sodium_memzero(self->token_key, self->token_key_len);
    free(self->token_key);
    pm_workers_destroy(&self->workers);
    pm_mesh_destroy(&self->mesh);
    /* The timer heap points into the relays: it goes first. */
    pm_timers_destroy(&self->relay_timers);
    zhashx_destroy(&self->relays);
    zhashx_destroy(&self->rwaits);
    zhashx_destroy(&self->by_id);
    zhashx_destroy(&self->sessions);
    pm_timers_destroy(&self->timers);
    pm_store_destroy(&self->store);
    if (self->router) {
        zmq_close(self->router);
        unlink(self->socket_path);
    }
    if (self->ctx && !self->sim)
        zmq_ctx_term(self->ctx);
    if (self->sigfd >= 0)
        close(self->sigfd);
    free(self->node);
    free(self->socket_path);
    free(self);
    *self_p = NULL;
}
