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
#include "clock.h"
#include "agent.h"

#include "base.h"
#include "hist.h"
#include "ids.h"
#include "journal.h"
#include "log.h"
#include "mesh.h"
#include "records.h"
#include "backup.h"
#include "replica.h"
#include "spaces.h"
#include "store.h"
#include "timer.h"
#include "token.h"
#include "wire.h"
#include "workers.h"

#include <czmq.h>
#include <sodium.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* How often idle sessions are swept; a quarter of the shortest allowed
 * client_timeout keeps detection within ~1.25x the timeout. */
#define S_SWEEP_MS 50
/* A just-started agent has not heard every member's metadata: a join and the
 * first full sync take ~1 s. Until this long after its start, a request on a
 * space it has never heard of waits for that rather than failing NOT_FOUND. */
#define S_YOUNG_MS 3000
/* A space named after a live member that we have not heard of is most likely
 * its new primary (it restarted a moment ago), announced within a gossip
 * round or two: a request on it waits this long for the news. */
#define S_UNKNOWN_WAIT_MS 2000
/* A restarted agent that has heard no member's full state after this many
 * takeover_grace periods takes itself to be alone (the whole mesh went down)
 * and resumes its spaces from its own WAL. */
#define S_ALONE_GRACES 4
/* Messages handled per poll wake-up before timers get a turn. */
#define S_BATCH 512
/* Largest list page, whatever the client asks: bounds reply size. */
#define S_MAX_PAGE 10000
/* Outgoing queue per client: large, because a burst of async replies to one
 * client must not be dropped while it is merely busy. */
#define S_SNDHWM 1000000

typedef struct s_session s_session_t;
typedef struct s_waiter s_waiter_t;
typedef struct s_then s_then_t;

struct s_session {
    char key[2 * 256 + 1]; /* hex of the routing id */
    uint8_t rid[256];
    size_t rid_len;
    uint64_t id;
    char mint[PM_WIRE_MAX_NAME];
    size_t mint_len;
    int64_t last_seen; /* monotonic ms */
    int pinged;        /* has a keep-alive thread: silence means death */
    char *peer;        /* set for another agent's session: replies go over the mesh */
    s_waiter_t *waiters;
    size_t n_waiters;
};

struct s_waiter {
    pm_watch_t watch; /* on a local promise, or on an s_rwait_t's list */
    pm_timer_t timer;
    pm_agent_t *agent;
    s_session_t *session;
    uint64_t req_id;
    s_waiter_t *next, *prev;
};

/* A continuation: watches p until p settles, then watches its target q until
 * q settles (so a snapshot can still name it while its invocation runs). */
struct s_then {
    pm_watch_t watch;
    pm_agent_t *agent;
    s_then_t *next, *prev;
    char *function;
    char *source;
    char target[];
};

/* A request relayed to the owner of its promise; answered when the owner's
 * reply comes back, the owner is lost, or forward_timeout passes. */
typedef enum { S_RELAY_OP = 1, S_RELAY_SUB, S_RELAY_FIRE } s_relay_kind_t;

typedef struct s_relay {
    pm_timer_t timer;
    uint64_t id;      /* req_id on the mesh */
    s_relay_kind_t kind;
    uint8_t *frame;   /* the request as sent, to send again to a new owner */
    size_t frame_len;
    int parked;       /* its owner died; waiting for a takeover to be announced */
    int unknown;      /* parked because, just started, we had not heard of its space */
    uint64_t session; /* S_RELAY_OP: whom to answer */
    uint64_t req_id;  /* S_RELAY_OP: the client's req_id */
    char node[PM_WIRE_MAX_NAME + 1];
    char pid[];       /* the promise it is about */
} s_relay_t;

/* A continuation of a space we back up: revived if we take the space over. */
typedef struct s_rthen {
    char *p;
    char *function;
    char q[];
} s_rthen_t;

/* Local awaits of one remote promise: one subscription at the owner. */
typedef struct s_rwait {
    pm_watch_t *watches; /* s_waiter_t.watch */
    uint64_t relay;      /* the subscription's relay id */
    char id[];
} s_rwait_t;

/* An invocation this agent placed on another member's workers; kept until
 * its target settles so it can be placed again if that member dies. */
typedef struct s_deleg {
    pm_watch_t watch; /* on the target promise */
    pm_agent_t *agent;
    char node[PM_WIRE_MAX_NAME + 1];
    char *function;
    uint8_t *input;
    size_t input_len;
    char *inv_id;
    struct s_deleg *next, *prev;
    char target[];
} s_deleg_t;

typedef struct s_op_counts {
    uint64_t ok, err;
} s_op_counts_t;

struct pm_agent {
    char *node;
    char *socket_path;
    char space[128]; /* node (<= 63) + "-" + boot tag */
    size_t max_value_bytes;
    int64_t client_timeout;
    size_t max_waiters;
    uint32_t list_limit;
    void *ctx;
    void *router;
    int sigfd;
    pm_store_t *store;
    pm_workers_t *workers;
    pm_timers_t *timers; /* waiters' wait timeouts, monotonic ms */
    pm_mesh_t *mesh;     /* NULL: single node */
    pm_journal_t *journal; /* NULL: no data dir and no replication */
    pm_replica_t *replica; /* NULL: replicas == 1 or no mesh */
    pm_backup_t *backup;   /* what we hold of other owners' streams; NULL: no mesh */
    int replicas;
    zhashx_t *rthens;      /* q id -> s_rthen_t: continuations of spaces we back up */
    /* Spaces we served before a restart (our old primary, and spaces we had
     * taken over or resumed), not yet resumed: each is served again at the
     * end of the grace period unless another agent serves it by then. */
    pm_claims_t probation;
    int64_t probation_until;
    int64_t probation_alone; /* resume without a sync after this (nobody came) */
    uint64_t takeovers, parked;
    uint8_t *token_key;    /* settle-token secret; NULL: none configured */
    size_t token_key_len;
    uint64_t generation;
    int64_t retention;
    int64_t next_expire, next_compact, next_retire, retire_interval;
    uint64_t retired;
    int64_t forward_timeout;
    zhashx_t *relays;    /* "%llx" relay id -> s_relay_t (owned) */
    pm_timers_t *relay_timers;
    uint64_t next_relay;
    zhashx_t *rwaits;    /* promise id -> s_rwait_t (owned) */
    s_deleg_t *delegs;
    uint64_t next_deleg;
    uint64_t relayed, relay_timeouts, owner_lost;
    zhashx_t *sessions;  /* key -> s_session_t (owned) */
    zhashx_t *by_id;     /* "%llx" session id -> s_session_t (borrowed) */
    s_then_t *thens;     /* every registered continuation, for cleanup */
    uint64_t next_session;
    uint64_t next_seq;
    int64_t started_mono;
    int64_t started_real;
    int64_t last_sweep;
    int64_t last_loop; /* monotonic ms of the last loop iteration (stall detection) */
    int stopping;
    s_op_counts_t ops[PM_MSG_TYPE_COUNT];
    /* Receipt of a request to its reply leaving the agent (durability and
     * replication waits included), by type. */
    pm_hist_t op_ms[PM_MSG_TYPE_COUNT];
    /* The request being dispatched, so the reply to it can be timed. */
    s_session_t *cur_session;
    uint64_t cur_req;
    int cur_type;
    int64_t cur_t0_us;
    uint64_t bad_frames;
    uint64_t replies_dropped;
    uint64_t replies_failed; /* held replies answered with an error instead */
    uint64_t sessions_expired;
    uint64_t waiters_timed_out;
};

/* A list, or the agent stops (base.h). */
static zlistx_t *
s_xlist(void)
{
    zlistx_t *l = zlistx_new();
    if (!l)
        pm_oom("list");
    return l;
}

/* ---- logging of bad input, rate-limited ----------------------------------- */

static void
s_bad_frame(pm_agent_t *self, const char *why)
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

/* The session with this id, or NULL if it is gone. */
static s_session_t *
s_session_by_id(pm_agent_t *self, uint64_t id)
{
    char idk[24];
    snprintf(idk, sizeof idk, "%llx", (unsigned long long) id);
    return zhashx_lookup(self->by_id, idk);
}

/* ---- sending -------------------------------------------------------------- */

static void
s_free_buf(void *data, void *hint)
{
    (void) hint;
    free(data);
}

static void
s_send(pm_agent_t *self, s_session_t *s, const pm_msg_t *m)
{
    /* The reply to the request being dispatched is timed when it leaves. */
    int timed = m->type == PM_MSG_REPLY && s == self->cur_session && m->req_id == self->cur_req;
    if (self->journal && (m->type == PM_MSG_REPLY || m->type == PM_MSG_REPLICATE_ACK) &&
        pm_journal_must_hold(self->journal)) {
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
                           self->cur_t0_us);
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
    zmq_msg_t body;
    zmq_msg_init_data(&body, buf, len, s_free_buf, NULL);
    if (zmq_send(self->router, s->rid, s->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&body, self->router, ZMQ_DONTWAIT) < 0) {
        /* Unroutable (client gone) or its queue is full: drop, count. */
        zmq_msg_close(&body);
        self->replies_dropped++;
    }
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
    s_session_t *s = s_session_by_id(self, session);
    zmq_msg_t body;
    zmq_msg_init_data(&body, buf, len, s_free_buf, NULL);
    if (!s || zmq_send(self->router, s->rid, s->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&body, self->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&body);
        self->replies_dropped++;
    }
}

/* What held replies that must not be sent are answered with. */
typedef struct s_fail_ctx {
    pm_agent_t *self;
    int err;
    const char *message;
} s_fail_ctx_t;

/* The journal hands over a held reply that must not be sent (its change may
 * not survive): the request is answered with the context's error instead. */
static void
s_fail_held(void *arg, uint64_t session, const char *peer, uint8_t *buf, size_t len)
{
    const s_fail_ctx_t *ctx = arg;
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
    s_send(arg, who, m);
}

static void
s_reply_err(pm_agent_t *self, s_session_t *s, uint64_t req_id, int err, const char *message)
{
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = req_id, .err = err,
                  .message = message ? message : pm_strerror(err)};
    s_send(self, s, &r);
}

static void
s_reply_promise(pm_agent_t *self, s_session_t *s, uint64_t req_id, const pm_prom_t *p)
{
    pm_wire_promise_t v;
    pm_records_view(p, &v);
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = req_id, .promise = &v, .id = p->id};
    s_send(self, s, &r);
}

static void
s_reply_ok(pm_agent_t *self, s_session_t *s, uint64_t req_id)
{
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = req_id};
    s_send(self, s, &r);
}

/* ---- sessions ------------------------------------------------------------- */

static void s_waiter_free(pm_agent_t *self, s_waiter_t *w);

static s_session_t *
s_session_get(pm_agent_t *self, const uint8_t *rid, size_t len, int64_t now)
{
    char key[2 * 256 + 1];
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        key[2 * i] = hex[rid[i] >> 4];
        key[2 * i + 1] = hex[rid[i] & 15];
    }
    key[2 * len] = 0;
    s_session_t *s = zhashx_lookup(self->sessions, key);
    if (s) {
        s->last_seen = now;
        return s;
    }
    s = pm_xcalloc(1, sizeof *s, "session");
    memcpy(s->key, key, 2 * len + 1);
    memcpy(s->rid, rid, len);
    s->rid_len = len;
    s->id = ++self->next_session;
    /* The generation keeps leases of this run apart from the last run's. */
    s->mint_len = (size_t) pm_id_lease(s->mint, sizeof s->mint, self->space, self->generation,
                                       s->id);
    s->last_seen = now;
    zhashx_insert(self->sessions, s->key, s);
    char idk[24];
    snprintf(idk, sizeof idk, "%llx", (unsigned long long) s->id);
    zhashx_insert(self->by_id, idk, s);
    return s;
}

static void
s_session_close(pm_agent_t *self, s_session_t *s, const char *why)
{
    while (s->waiters)
        s_waiter_free(self, s->waiters);
    if (pm_workers_is_worker(self->workers, s)) {
        pm_log_info("PM-WORKER-GONE", "worker session %llu closed: %s",
                    (unsigned long long) s->id, why);
        pm_workers_forget(self->workers, s);
    }
    char idk[24];
    snprintf(idk, sizeof idk, "%llx", (unsigned long long) s->id);
    zhashx_delete(self->by_id, idk);
    zhashx_delete(self->sessions, s->key); /* frees s */
}

static void
s_session_destructor(void **item)
{
    s_session_t *s = *item;
    free(s->peer);
    free(s);
    *item = NULL;
}

/* The session standing for another agent: its requests are served like a
 * client's, its replies go back over the mesh. */
static s_session_t *
s_peer_session(pm_agent_t *self, const char *node)
{
    char key[PM_WIRE_MAX_NAME + 8];
    snprintf(key, sizeof key, "peer:%s", node);
    s_session_t *s = zhashx_lookup(self->sessions, key);
    if (s)
        return s;
    s = pm_xcalloc(1, sizeof *s, "peer session");
    s->peer = pm_xstrdup(node, "peer session");
    snprintf(s->key, sizeof s->key, "%s", key);
    s->id = ++self->next_session;
    zhashx_insert(self->sessions, s->key, s);
    char idk[24];
    snprintf(idk, sizeof idk, "%llx", (unsigned long long) s->id);
    zhashx_insert(self->by_id, idk, s);
    return s;
}

/* Closes sessions silent for client_timeout. A session without a keep-alive
 * thread that still has waiters is kept: its awaits end by their own timeout
 * or by settlement. */
static void
s_sweep(pm_agent_t *self, int64_t now)
{
    zlistx_t *dead = NULL;
    for (s_session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions)) {
        if (s->peer || now - s->last_seen < self->client_timeout)
            continue;
        if (!s->pinged && (s->n_waiters || pm_workers_is_worker(self->workers, s)))
            continue;
        if (!dead)
            dead = s_xlist();
        zlistx_add_end(dead, s);
    }
    if (!dead)
        return;
    for (s_session_t *s = zlistx_first(dead); s; s = zlistx_next(dead)) {
        if (s->pinged || s->n_waiters)
            pm_log_info("PM-CLIENT-EXPIRED", "session %llu silent for %lld ms; closed",
                        (unsigned long long) s->id, (long long) (now - s->last_seen));
        self->sessions_expired++;
        s_session_close(self, s, "expired");
    }
    zlistx_destroy(&dead);
}

/* The loop wakes at least every S_SWEEP_MS: a gap this long means the agent
 * itself did not run (SIGSTOP, a frozen VM, swapping). */
#define S_STALL_MS 1000

/* After a stall, the silence was ours, not the clients': every session gets
 * a full client_timeout again (a worker expired for it would never hear
 * that its registration is gone). */
static void
s_check_stall(pm_agent_t *self, int64_t mono)
{
    int64_t gap = self->last_loop ? mono - self->last_loop : 0;
    self->last_loop = mono;
    if (gap < S_STALL_MS)
        return;
    pm_log_warn("PM-AGENT-STALLED", "the agent did not run for %lld ms (paused?); its clients "
                "get a full client_timeout again", (long long) gap);
    for (s_session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions))
        if (s->last_seen < mono)
            s->last_seen = mono;
}

/* ---- waiters -------------------------------------------------------------- */

static void
s_waiter_free(pm_agent_t *self, s_waiter_t *w)
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

static void
s_waiter_fired(pm_watch_t *watch, pm_prom_t *p)
{
    s_waiter_t *w = (s_waiter_t *) watch;
    pm_agent_t *self = w->agent;
    s_reply_promise(self, w->session, w->req_id, p);
    s_waiter_free(self, w);
}

/* ---- continuations -------------------------------------------------------- */

static void
s_then_free(s_then_t *t)
{
    free(t->function);
    free(t->source);
    free(t);
}

static void
s_then_unlink(pm_agent_t *self, s_then_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        self->thens = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void s_invoke(pm_agent_t *self, const char *function, const uint8_t *input, size_t len,
                     const char *target);

/* The continuation's target settled: nothing more to remember. */
static void
s_then_done(pm_watch_t *watch, pm_prom_t *q)
{
    (void) q;
    s_then_t *t = (s_then_t *) watch;
    s_then_unlink(t->agent, t);
    s_then_free(t);
}

static void
s_then_fired(pm_watch_t *watch, pm_prom_t *p)
{
    s_then_t *t = (s_then_t *) watch;
    pm_agent_t *self = t->agent;
    if (p->state == PM_STATE_RESOLVED) {
        s_invoke(self, t->function, p->data, p->data_len, t->target);
    } else {
        /* The chain stops here: say which link failed and why. */
        char why[512];
        int n = snprintf(why, sizeof why, "%s %s: %s", p->id, pm_state_name(p->state),
                         p->data ? (const char *) p->data : "");
        if (n >= (int) sizeof why)
            n = sizeof why - 1;
        pm_store_settle(self->store, t->target, PM_STATE_REJECTED, why, (size_t) n, pm_real_ms(),
                        NULL);
    }
    pm_prom_t *q = pm_store_get(self->store, t->target);
    if (q && q->state == PM_STATE_PENDING) {
        pm_store_watch(q, &t->watch, s_then_done);
        return;
    }
    s_then_unlink(self, t);
    s_then_free(t);
}

/* ---- requests ------------------------------------------------------------- */

static int
s_minted_by(const s_session_t *s, const char *id)
{
    return pm_id_under_lease(id, s->mint, s->mint_len);
}

/* Whether the space of id is one this agent took over (serves, and is not
 * its primary): the agent that lost it, and that agent's clients, still mint
 * there, and only they do. */
static int
s_owned_space(pm_agent_t *self, const char *id)
{
    char space[PM_WIRE_MAX_NAME + 1];
    return self->mesh && pm_id_space(id, space, sizeof space) &&
           strcmp(space, self->space) != 0 && pm_mesh_owns(self->mesh, space, NULL);
}

static void
s_mint(pm_agent_t *self, char *out, size_t cap)
{
    pm_id_mint(out, cap, self->space, self->generation, ++self->next_seq);
}

static int
s_do_create(pm_agent_t *self, s_session_t *s, const pm_msg_t *m, int64_t now)
{
    char id[PM_WIRE_MAX_NAME + 1];
    if (m->id) {
        /* A peer relays creates in a space it lost to us (its clients still
         * mint there); a client mints under its lease. */
        if (!(s->peer ? s_owned_space(self, m->id) : s_minted_by(s, m->id)))
            return PM_ERR_BAD_REQUEST;
        snprintf(id, sizeof id, "%s", m->id);
    } else {
        s_mint(self, id, sizeof id);
    }
    pm_create_args_t a = {.id = id,
                          .timeout_ms = m->timeout_ms,
                          .heartbeat_ms = m->heartbeat_ms,
                          .key = m->key,
                          .label_count = m->label_count,
                          .labels = m->labels};
    pm_prom_t *p;
    int created;
    int err = pm_store_create(self->store, &a, now, &p, &created);
    if (err)
        return err;
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .id = p->id, .created = created};
    char token[128];
    if (m->want_token && self->token_key &&
        pm_token_make(self->token_key, self->token_key_len, p->id, token, sizeof token) == 0)
        r.token = token;
    s_send(self, s, &r);
    return PM_OK;
}

static int
s_do_settle(pm_agent_t *self, s_session_t *s, const pm_msg_t *m, int64_t now)
{
    const void *data;
    size_t len;
    if (m->state == PM_STATE_RESOLVED) {
        data = m->value;
        len = m->value_len;
    } else if (m->state == PM_STATE_REJECTED || m->state == PM_STATE_CANCELED) {
        data = m->reason && *m->reason ? m->reason
                                       : (m->state == PM_STATE_CANCELED ? "canceled" : "rejected");
        len = strlen(data);
    } else {
        return PM_ERR_BAD_REQUEST;
    }
    if (len > self->max_value_bytes)
        return PM_ERR_VALUE_TOO_LARGE;
    int err = pm_store_settle(self->store, m->id, m->state, data, len, now, NULL);
    if (err)
        return err;
    s_reply_ok(self, s, m->req_id);
    return PM_OK;
}

/* A waiter for session s, not yet linked to anything. */
static s_waiter_t *
s_waiter_new(pm_agent_t *self, s_session_t *s, const pm_msg_t *m, int64_t mono, int *err)
{
    if (s->n_waiters >= self->max_waiters) {
        *err = PM_ERR_LIMIT;
        return NULL;
    }
    s_waiter_t *w = pm_xcalloc(1, sizeof *w, "waiter");
    w->agent = self;
    w->session = s;
    w->req_id = m->req_id;
    w->next = s->waiters;
    if (s->waiters)
        s->waiters->prev = w;
    s->waiters = w;
    s->n_waiters++;
    /* A wait longer than a century is a wait without end: no timer, and no
     * "now + timeout" that could wrap into the past. */
    if (m->timeout_ms > 0 && m->timeout_ms < 100LL * 365 * 24 * 3600 * 1000)
        pm_timers_set(self->timers, &w->timer, mono + m->timeout_ms);
    return w;
}

static int
s_do_await(pm_agent_t *self, s_session_t *s, const pm_msg_t *m, int64_t mono)
{
    pm_prom_t *p = pm_store_get(self->store, m->id);
    if (!p)
        return PM_ERR_NOT_FOUND;
    if (p->state != PM_STATE_PENDING) {
        s_reply_promise(self, s, m->req_id, p);
        return PM_OK;
    }
    if (m->timeout_ms == 0) {
        s_reply_err(self, s, m->req_id, PM_ERR_WAIT_TIMEOUT, NULL);
        return PM_OK; /* a poll, not a failure */
    }
    int err = PM_OK;
    s_waiter_t *w = s_waiter_new(self, s, m, mono, &err);
    if (w)
        pm_store_watch(p, &w->watch, s_waiter_fired);
    return err;
}

/* ---- durability ------------------------------------------------------------ */

static void
s_store_changed(void *arg, pm_store_event_t ev, const pm_prom_t *p)
{
    pm_agent_t *self = arg;
    pm_journal_store_event(self->journal, ev, p);
}

/* What a snapshot keeps besides the promises: continuations (ours and those
 * of spaces we back up) and the spaces we serve or may resume. */
static int
s_snapshot_extra(void *arg, pm_journal_t *j)
{
    pm_agent_t *self = arg;
    for (s_then_t *t = self->thens; t; t = t->next)
        pm_journal_snapshot_then(j, t->source, t->function, t->target);
    for (s_rthen_t *t = zhashx_first(self->rthens); t; t = zhashx_next(self->rthens))
        pm_journal_snapshot_then(j, t->p, t->function, t->q);
    for (size_t i = 0; i < self->probation.n; i++)
        pm_journal_snapshot_claim(j, self->probation.v[i].space, self->probation.v[i].epoch);
    if (self->mesh) {
        const char *const *spaces;
        const uint64_t *epochs;
        size_t n = pm_mesh_served(self->mesh, &spaces, &epochs);
        for (size_t i = 0; i < n; i++)
            if (strcmp(spaces[i], self->space) != 0 || epochs[i] > 1)
                pm_journal_snapshot_claim(j, spaces[i], epochs[i]);
    }
    return 0;
}

static void s_then_fired(pm_watch_t *watch, pm_prom_t *p);
static void s_revive_then(pm_agent_t *self, const char *src, const char *function,
                          const char *q);
static void s_rthen_add(pm_agent_t *self, const char *p, const char *function, const char *q);

/* Continuations from the WAL whose target still waits: chained again on a
 * pending source; run again (at-least-once) when the source had resolved, as
 * their invocation may have been lost with the last run; rejected when the
 * source failed. */
static void
s_revive_then(pm_agent_t *self, const char *src, const char *function, const char *q)
{
    size_t n = strlen(q);
    s_then_t *t = pm_xcalloc(1, sizeof *t + n + 1, "continuation");
    memcpy(t->target, q, n + 1);
    t->agent = self;
    t->function = pm_xstrdup(function, "continuation");
    t->source = pm_xstrdup(src, "continuation");
    t->next = self->thens;
    if (self->thens)
        self->thens->prev = t;
    self->thens = t;
    pm_prom_t *p = pm_store_get(self->store, src);
    if (p && p->state == PM_STATE_PENDING) {
        pm_store_watch(p, &t->watch, s_then_fired);
    } else if (p) {
        s_then_fired(&t->watch, p);
    } else {
        const char *why = "source promise is gone";
        pm_store_settle(self->store, t->target, PM_STATE_REJECTED, why, strlen(why),
                        pm_real_ms(), NULL);
    }
}

/* Continuations from the WAL whose target still waits: those of spaces we
 * serve are chained again on a pending source, run again (at-least-once)
 * when the source had resolved, as their invocation may have been lost with
 * the last run, and rejected when the source failed; the others are kept
 * for a takeover. */
static size_t
s_restore_thens(pm_agent_t *self, const pm_journal_state_t *st)
{
    char space[PM_WIRE_MAX_NAME + 1];
    for (size_t i = 0; i < st->then_count; i++) {
        const pm_journal_then_t *jt = &st->thens[i];
        pm_id_space(jt->q, space, sizeof space);
        if (!self->mesh ? strcmp(space, self->space) == 0 : pm_mesh_owns(self->mesh, space, NULL))
            s_revive_then(self, jt->p, jt->function, jt->q);
        else
            s_rthen_add(self, jt->p, jt->function, jt->q);
    }
    return st->then_count;
}

/* Whether space is the primary a live member announces: one that lost it
 * while cut off still mints there, sending creates to whoever serves it. */
static int
s_space_is_live_primary(pm_agent_t *self, const char *space)
{
    char node[PM_WIRE_MAX_NAME + 1];
    if (!pm_space_node(space, node, sizeof node))
        return 0;
    const char *primary = pm_mesh_primary_of(self->mesh, node);
    return pm_mesh_is_up(self->mesh, node) && primary && strcmp(primary, space) == 0;
}

/* Spaces we serve besides our primary that hold no promise any more are
 * given up: every restart leaves a space behind for its heir, and without
 * this they would pile up in the metadata we gossip. Nothing new is ever
 * minted in them (new ids go to primaries), so an empty one stays empty. */
static void
s_retire_empty(pm_agent_t *self)
{
    const char *const *spaces;
    const uint64_t *epochs;
    size_t n = pm_mesh_served(self->mesh, &spaces, &epochs);
    if (n <= 1)
        return;
    zhashx_t *used = zhashx_new();
    if (!used)
        pm_oom("retiring spaces");
    /* Neighbours in the store mostly share a space: hash only on a change. */
    char space[PM_WIRE_MAX_NAME + 1] = "";
    size_t slen = 0;
    for (pm_prom_t *p = pm_store_oldest(self->store); p; p = p->newer) {
        if (slen && pm_id_in_space(p->id, space, slen))
            continue;
        slen = pm_id_space(p->id, space, sizeof space);
        if (slen)
            zhashx_insert(used, space, (void *) "");
    }
    zlistx_t *empty = s_xlist();
    for (size_t i = 0; i < n; i++)
        if (strcmp(spaces[i], self->space) != 0 && !zhashx_lookup(used, spaces[i]) &&
            !s_space_is_live_primary(self, spaces[i]))
            zlistx_add_end(empty, pm_xstrdup(spaces[i], "retiring spaces"));
    zhashx_destroy(&used);
    for (char *sp = zlistx_first(empty); sp; sp = zlistx_next(empty)) {
        pm_log_info("PM-SPACE-RETIRED", "id space %s holds no promise any more: no longer "
                    "served", sp);
        pm_mesh_unclaim(self->mesh, sp);
        pm_claims_drop(&self->probation, sp);
        if (self->journal)
            pm_journal_release(self->journal, sp);
        self->retired++;
        free(sp);
    }
    zlistx_destroy(&empty);
}

/* Once a second: drop promises past retention; now and then, compact; every
 * retire_interval, give up served spaces left empty. */
static void
s_housekeeping(pm_agent_t *self, int64_t mono)
{
    if (mono < self->next_expire)
        return;
    self->next_expire = mono + 1000;
    /* Bounded per pass so a large backlog never stalls the reactor. */
    pm_store_expire(self->store, pm_real_ms() - self->retention, 100000);
    if (self->journal && mono >= self->next_compact) {
        self->next_compact = mono + 5000;
        pm_journal_maybe_compact(self->journal, self->store, self->space, self->generation,
                                 s_snapshot_extra, self);
    }
    if (self->mesh && mono >= self->next_retire) {
        self->next_retire = mono + self->retire_interval;
        s_retire_empty(self);
    }
}

/* ---- the mesh: relays, subscriptions, placement ---------------------------- */

static void
s_relay_destructor(void **item)
{
    s_relay_t *r = *item;
    free(r->frame);
    free(r);
    *item = NULL;
}

static void
s_rthen_destructor(void **item)
{
    s_rthen_t *t = *item;
    free(t->p);
    free(t->function);
    free(t);
    *item = NULL;
}

static void
s_rwait_destructor(void **item)
{
    free(*item);
    *item = NULL;
}

static s_relay_t *
s_relay_new(pm_agent_t *self, s_relay_kind_t kind, const char *node, const char *pid)
{
    size_t plen = pid ? strlen(pid) : 0;
    s_relay_t *r = pm_xcalloc(1, sizeof *r + plen + 1, "relay");
    r->id = ++self->next_relay;
    r->kind = kind;
    snprintf(r->node, sizeof r->node, "%s", node);
    if (pid)
        memcpy(r->pid, pid, plen + 1);
    char k[24];
    snprintf(k, sizeof k, "%llx", (unsigned long long) r->id);
    zhashx_insert(self->relays, k, r);
    if (kind != S_RELAY_SUB) /* a subscription lasts as long as the promise is pending */
        pm_timers_set(self->relay_timers, &r->timer, pm_mono_ms() + self->forward_timeout);
    return r;
}

static void
s_relay_free(pm_agent_t *self, s_relay_t *r)
{
    pm_timers_cancel(self->relay_timers, &r->timer);
    char k[24];
    snprintf(k, sizeof k, "%llx", (unsigned long long) r->id);
    zhashx_delete(self->relays, k);
}

/* Sends m to node as relay r (m's req_id becomes the relay's). */
static int
s_relay_send(pm_agent_t *self, s_relay_t *r, const pm_msg_t *m)
{
    pm_msg_t copy = *m;
    copy.req_id = r->id;
    copy.from = self->node;
    size_t len;
    uint8_t *buf = pm_wire_encode(&copy, &len);
    if (!buf)
        pm_oom("encoding a relayed request");
    if (self->replica) { /* kept to send again if the owner dies */
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

/* Relays a client's request to the promise's owner; the owner's reply goes
 * back to the client with the client's req_id. */
static int
s_forward(pm_agent_t *self, s_session_t *s, const pm_msg_t *m, const char *node)
{
    s_relay_t *r = s_relay_new(self, S_RELAY_OP, node, m->id);
    r->session = s->id;
    r->req_id = m->req_id;
    return s_relay_send(self, r, m);
}

/* Answers every local waiter of a remote promise with the owner's reply (or
 * with err when reply is NULL), and forgets the subscription. */
static void
s_rwait_finish(pm_agent_t *self, const char *pid, const pm_msg_t *reply, int err)
{
    s_rwait_t *rw = zhashx_lookup(self->rwaits, pid);
    if (!rw)
        return;
    while (rw->watches) {
        s_waiter_t *w = pm_container_of(rw->watches, s_waiter_t, watch);
        if (reply) {
            pm_msg_t copy = *reply;
            copy.req_id = w->req_id;
            copy.from = NULL;
            s_send(self, w->session, &copy);
        } else {
            s_reply_err(self, w->session, w->req_id, err, NULL);
        }
        s_waiter_free(self, w);
    }
    zhashx_delete(self->rwaits, pid);
}

/* An await on a promise another member owns: one subscription there, however
 * many local waiters there are. */
static int
s_remote_await(pm_agent_t *self, s_session_t *s, const pm_msg_t *m, const char *node,
               int64_t mono)
{
    if (m->timeout_ms == 0)
        return s_forward(self, s, m, node); /* a poll: the owner answers at once */
    if (s->n_waiters >= self->max_waiters)
        return PM_ERR_LIMIT; /* before subscribing for nobody */
    s_rwait_t *rw = zhashx_lookup(self->rwaits, m->id);
    if (!rw) {
        size_t n = strlen(m->id);
        rw = pm_xcalloc(1, sizeof *rw + n + 1, "remote await");
        memcpy(rw->id, m->id, n + 1);
        s_relay_t *r = s_relay_new(self, S_RELAY_SUB, node, m->id);
        pm_msg_t sub = {.type = PM_MSG_AWAIT, .id = m->id, .timeout_ms = -1};
        int err = s_relay_send(self, r, &sub);
        if (err) {
            free(rw);
            return err;
        }
        rw->relay = r->id;
        zhashx_insert(self->rwaits, rw->id, rw);
    }
    int err = PM_OK;
    s_waiter_t *w = s_waiter_new(self, s, m, mono, &err);
    if (w)
        pm_watch_link(&rw->watches, &w->watch, NULL);
    return err;
}

static void s_park(pm_agent_t *self, s_relay_t *r);
static void s_unpark(pm_agent_t *self);

/* A reply from another agent to one of our relays. */
static void
s_on_peer_reply(pm_agent_t *self, const char *from, pm_msg_t *m)
{
    char k[24];
    snprintf(k, sizeof k, "%llx", (unsigned long long) m->req_id);
    s_relay_t *r = zhashx_lookup(self->relays, k);
    if (!r || strcmp(r->node, from) != 0)
        return; /* late (timed out) or not ours: nothing waits for it */
    if (r->kind == S_RELAY_OP) {
        s_session_t *s = s_session_by_id(self, r->session);
        if (s) {
            pm_msg_t copy = *m;
            copy.req_id = r->req_id;
            copy.from = NULL;
            s_send(self, s, &copy);
        }
    } else if (r->kind == S_RELAY_SUB) {
        if (m->err == PM_ERR_OWNER_LOST && self->replica && r->frame) {
            /* Its space moved on from that agent: subscribe where it went. */
            s_park(self, r);
            s_unpark(self);
            return;
        }
        s_rwait_finish(self, r->pid, m, 0);
    } else if (m->err && m->err != PM_ERR_ALREADY_SETTLED && m->err != PM_ERR_TIMED_OUT) {
        pm_log_warn("PM-RELAY-FAILED", "%s answered %s to a relayed settle", from,
                    pm_err_name(m->err));
    }
    s_relay_free(self, r);
}

/* Ends a relay with a typed error: its client hears err, its subscribers
 * all hear err, a relayed settle is simply dropped. */
static void
s_relay_fail(pm_agent_t *self, s_relay_t *r, int err)
{
    if (r->kind == S_RELAY_OP) {
        s_session_t *s = s_session_by_id(self, r->session);
        if (s)
            s_reply_err(self, s, r->req_id, err, NULL);
    } else if (r->kind == S_RELAY_SUB) {
        s_rwait_finish(self, r->pid, NULL, err);
    }
    s_relay_free(self, r);
}

static void
s_relay_expired(pm_agent_t *self, s_relay_t *r)
{
    self->relay_timeouts++;
    if (r->parked && r->unknown) {
        /* Still nobody serves that space now that we know the mesh. */
        s_relay_fail(self, r, PM_ERR_NOT_FOUND);
        return;
    }
    if (r->parked) {
        /* Nobody announced a takeover in time: the space is lost. */
        self->owner_lost++;
        s_relay_fail(self, r, PM_ERR_OWNER_LOST);
        return;
    }
    if (r->kind == S_RELAY_OP) {
        char why[PM_WIRE_MAX_NAME + 64];
        snprintf(why, sizeof why, "owner %s did not answer in time", r->node);
        s_session_t *s = s_session_by_id(self, r->session);
        if (s)
            s_reply_err(self, s, r->req_id, PM_ERR_UNREACHABLE, why);
    } else {
        pm_log_warn("PM-RELAY-TIMEOUT", "settle relayed to %s was not acknowledged", r->node);
    }
    s_relay_free(self, r);
}

/* Settles a target wherever it lives (invocation results). */
static int
s_settle_anywhere(void *arg, const char *target, int state, const void *data, size_t len)
{
    pm_agent_t *self = arg;
    const char *node = NULL;
    pm_route_t route = self->mesh ? pm_mesh_route(self->mesh, target, &node) : PM_ROUTE_LOCAL;
    if (route == PM_ROUTE_LOCAL)
        return pm_store_settle(self->store, target, state, data, len, pm_real_ms(), NULL);
    if (route != PM_ROUTE_REMOTE)
        return route == PM_ROUTE_LOST ? PM_ERR_OWNER_LOST : PM_ERR_NOT_FOUND;
    s_relay_t *r = s_relay_new(self, S_RELAY_FIRE, node, target);
    pm_msg_t m = {.type = PM_MSG_SETTLE, .id = target, .state = state};
    if (state == PM_STATE_RESOLVED) {
        m.value = data;
        m.value_len = len;
    } else {
        m.reason = data; /* reasons are NUL-terminated text */
    }
    char reason[1024];
    if (state != PM_STATE_RESOLVED) {
        snprintf(reason, sizeof reason, "%.*s", (int) len, (const char *) data);
        m.reason = reason;
    }
    return s_relay_send(self, r, &m);
}

static int
s_target_pending(void *arg, const char *target)
{
    pm_agent_t *self = arg;
    pm_prom_t *p = pm_store_get(self->store, target);
    if (p)
        return p->state == PM_STATE_PENDING;
    return 1; /* another agent's promise: its owner refuses a late result */
}

static void
s_deleg_unlink(pm_agent_t *self, s_deleg_t *d)
{
    pm_watch_cancel(&d->watch);
    if (d->prev)
        d->prev->next = d->next;
    else
        self->delegs = d->next;
    if (d->next)
        d->next->prev = d->prev;
}

static void
s_deleg_free(s_deleg_t *d)
{
    free(d->function);
    free(d->input);
    free(d->inv_id);
    free(d);
}

static void
s_deleg_done(pm_watch_t *watch, pm_prom_t *p)
{
    (void) p;
    s_deleg_t *d = (s_deleg_t *) watch;
    s_deleg_unlink(d->agent, d);
    s_deleg_free(d);
}

/* Places an invocation on member `node`; kept until its target settles. */
static int
s_delegate(pm_agent_t *self, const char *node, const char *function, const uint8_t *input,
           size_t len, const char *target)
{
    pm_prom_t *q = pm_store_get(self->store, target);
    if (!q || q->state != PM_STATE_PENDING)
        return -1; /* only the owner of the target places; others queue */
    size_t tlen = strlen(target);
    s_deleg_t *d = pm_xcalloc(1, sizeof *d + tlen + 1, "placed invocation");
    memcpy(d->target, target, tlen + 1);
    d->agent = self;
    snprintf(d->node, sizeof d->node, "%s", node);
    d->function = pm_xstrdup(function, "placed invocation");
    d->input = pm_xmalloc(len, "placed invocation");
    char iid[PM_WIRE_MAX_NAME + 32];
    pm_id_tagged(iid, sizeof iid, self->space, 'd', ++self->next_deleg);
    d->inv_id = pm_xstrdup(iid, "placed invocation");
    if (len)
        memcpy(d->input, input, len);
    d->input_len = len;
    pm_msg_t m = {.type = PM_MSG_INVOKE, .invocation_id = iid, .function = function,
                  .value = input, .value_len = len, .target_id = target, .attempt = 1};
    if (pm_mesh_send(self->mesh, node, &m) != 0) {
        s_deleg_free(d);
        return -1;
    }
    pm_store_watch(q, &d->watch, s_deleg_done);
    d->next = self->delegs;
    if (self->delegs)
        self->delegs->prev = d;
    self->delegs = d;
    pm_log_debug("PM-INVOKE-PLACED", "%s for %s placed on %s", function, target, node);
    return 0;
}

/* Runs function on input to settle target: on a local worker if one serves
 * it, else on the member with the most free capacity for it, else queued
 * here until some worker serves it. */
static void
s_invoke(pm_agent_t *self, const char *function, const uint8_t *input, size_t len,
         const char *target)
{
    if (self->mesh && !pm_workers_serves(self->workers, function)) {
        const char *node = pm_mesh_place(self->mesh, function);
        if (node && s_delegate(self, node, function, input, len, target) == 0)
            return;
    }
    int err = pm_workers_invoke(self->workers, function, input, len, target);
    if (err != PM_OK)
        pm_log(PM_LOG_ERROR, "PM-INVOKE-FAILED", target, "%s", pm_err_name(err));
}

static int
s_take_unserved(void *arg, const char *function, const uint8_t *input, size_t len,
                const char *target)
{
    pm_agent_t *self = arg;
    const char *node = pm_mesh_place(self->mesh, function);
    return node && s_delegate(self, node, function, input, len, target) == 0;
}

/* Mesh hook: a message from another agent. */
static void s_dispatch(pm_agent_t *self, s_session_t *s, pm_msg_t *m);
static void s_on_replicate(pm_agent_t *self, const char *from, const pm_msg_t *m);

static void
s_on_peer_message(void *arg, const char *from, pm_msg_t *m)
{
    pm_agent_t *self = arg;
    if (m->type == PM_MSG_REPLY) {
        s_on_peer_reply(self, from, m);
    } else if (m->type == PM_MSG_REPLICATE) {
        s_on_replicate(self, from, m);
    } else if (m->type == PM_MSG_REPLICATE_ACK) {
        if (self->replica) {
            pm_replica_ack(self->replica, from, m);
            pm_journal_repl(self->journal, pm_replica_produced(self->replica),
                            pm_replica_acked(self->replica));
        }
    } else if (m->type == PM_MSG_INVOKE) {
        int err = pm_workers_invoke(self->workers, m->function, m->value, m->value_len,
                                    m->target_id);
        if (err)
            pm_log(PM_LOG_ERROR, "PM-INVOKE-FAILED", m->target_id, "%s", pm_err_name(err));
    } else {
        s_session_t *s = s_peer_session(self, from);
        if (s)
            s_dispatch(self, s, m);
    }
}

/* ---- replication and takeover --------------------------------------------- */

/* Journal hook: a record was written; records of spaces we serve go to the
 * backups too. */
static void
s_on_record(void *arg, const pm_rec_t *rec, const uint8_t *buf, size_t len)
{
    pm_agent_t *self = arg;
    if (!self->replica || rec->kind == PM_REC_GENERATION || !rec->promise.id)
        return;
    char space[PM_WIRE_MAX_NAME + 1];
    if (pm_id_space(rec->promise.id, space, sizeof space) && pm_mesh_owns(self->mesh, space, NULL)) {
        pm_replica_record(self->replica, space, buf, len);
        /* A reply held from now on waits for this record at the backups. */
        pm_journal_repl(self->journal, pm_replica_produced(self->replica), 0);
    }
}

static void
s_rthen_add(pm_agent_t *self, const char *p, const char *function, const char *q)
{
    if (zhashx_lookup(self->rthens, q))
        return;
    size_t n = strlen(q);
    s_rthen_t *t = pm_xcalloc(1, sizeof *t + n + 1, "backed-up continuation");
    memcpy(t->q, q, n + 1);
    t->p = pm_xstrdup(p, "backed-up continuation");
    t->function = pm_xstrdup(function, "backed-up continuation");
    zhashx_insert(self->rthens, t->q, t);
}

/* Applies one replicated record to our (passive) copy. */
static void
s_apply_record(pm_agent_t *self, const uint8_t *buf, size_t len)
{
    pm_rec_t rec;
    if (pm_wire_rec_decode(buf, len, &rec) != PM_OK) {
        pm_wire_rec_release(&rec);
        s_bad_frame(self, "replicated record does not decode");
        return;
    }
    const pm_wire_promise_t *p = &rec.promise;
    if (rec.kind == PM_REC_THEN) {
        s_rthen_add(self, p->id, rec.function, rec.target);
        if (self->journal) /* so a restart of ours still knows it */
            pm_journal_then(self->journal, p->id, rec.function, rec.target);
    } else {
        /* A record that does not apply (a settle the copy has with another
         * outcome) leaves the copy as it is, as the WAL replay does. */
        pm_records_apply(self->store, &rec, 1);
        if (rec.kind == PM_REC_SETTLE)
            zhashx_delete(self->rthens, p->id); /* its continuation is done */
    }
    pm_wire_rec_release(&rec);
}

/* An owner's records for us to keep. */
static void
s_on_replicate(pm_agent_t *self, const char *from, const pm_msg_t *m)
{
    uint64_t mine = 0, known = pm_mesh_epoch(self->mesh, m->space);
    int owned = pm_mesh_owns(self->mesh, m->space, &mine);
    s_session_t *peer = s_peer_session(self, from);
    /* Fenced (its sender lost the space), or only what follows on what we
     * hold, with no hole before it, is applied and acknowledged (backup.h). */
    pm_backup_claims_t claims = {.self_node = self->node, .owned = owned, .mine = mine,
                                 .known = known};
    pm_backup_verdict_t v;
    pm_backup_check(self->backup, from, m, &claims, pm_mono_ms(), &v);
    if (v.fenced) {
        pm_msg_t nack = {.type = PM_MSG_REPLICATE_ACK, .space = m->space, .fenced = 1,
                         .epoch = v.fence_epoch, .stream = m->stream};
        if (peer)
            s_send(self, peer, &nack);
        pm_log_warn("PM-REPL-FENCED", "refused records of %s from %s at epoch %llu (we know "
                    "epoch %llu)", m->space, from, (unsigned long long) m->epoch,
                    (unsigned long long) nack.epoch);
        return;
    }
    for (size_t i = v.apply ? v.skip : m->record_count; i < m->record_count; i++)
        s_apply_record(self, m->records[i].data, m->records[i].len);
    if (!peer)
        return;
    if (v.resync) {
        pm_log_warn("PM-REPL-GAP", "records of %s from %s: %s; asking for its whole state",
                    m->space, from, v.why);
        pm_msg_t req = {.type = PM_MSG_REPLICATE_ACK, .space = m->space, .resync = 1,
                        .stream = m->stream};
        s_send(self, peer, &req);
    } else if (v.ack) {
        pm_msg_t ack = {.type = PM_MSG_REPLICATE_ACK, .space = m->space, .lsn = v.lsn,
                        .stream = m->stream};
        s_send(self, peer, &ack); /* held by the journal until durable here */
    }
}

/* records.h emitter: one record of a full state, to the replica. */
typedef struct s_full_ctx {
    pm_replica_t *r;
    pm_replica_add_fn *add;
    const char *space;
} s_full_ctx_t;

static void
s_full_emit(void *arg, const pm_rec_t *rec)
{
    s_full_ctx_t *ctx = arg;
    size_t len;
    uint8_t *buf = pm_wire_rec_encode(rec, &len);
    if (!buf) /* a transfer missing a record would be counted as a whole copy */
        pm_oom("encoding a record of a state transfer");
    ctx->add(ctx->r, ctx->space, buf, len);
    free(buf);
}

/* Replica hook: every record of `only` (a space just claimed) or, NULL, of
 * every space we serve, for a new backup or after a takeover. */
static void
s_full_state(void *arg, pm_replica_t *r, const char *only, pm_replica_add_fn *add)
{
    pm_agent_t *self = arg;
    char space[PM_WIRE_MAX_NAME + 1];
    s_full_ctx_t ctx = {r, add, space};
    for (pm_prom_t *p = pm_store_oldest(self->store); p; p = p->newer) {
        if (!pm_id_space(p->id, space, sizeof space) ||
            (only ? strcmp(space, only) != 0 : !pm_mesh_owns(self->mesh, space, NULL)))
            continue;
        pm_records_of_promise(p, s_full_emit, &ctx);
    }
    for (s_then_t *t = self->thens; t; t = t->next) {
        if (!pm_id_space(t->target, space, sizeof space) ||
            (only ? strcmp(space, only) != 0 : !pm_mesh_owns(self->mesh, space, NULL)))
            continue;
        pm_rec_t rec = pm_records_then(t->source, t->function, t->target);
        s_full_emit(&ctx, &rec);
    }
}



/* We serve space from now on: its promises' timers run, its continuations
 * are ours, its state goes to our backups. */
static void
s_take_space(pm_agent_t *self, const char *space, uint64_t epoch, const char *why)
{
    int64_t t0 = pm_mono_ms();
    pm_mesh_claim(self->mesh, space, epoch);
    char prefix[PM_WIRE_MAX_NAME + 2];
    pm_id_space_prefix(prefix, sizeof prefix, space);
    size_t n = pm_store_activate(self->store, prefix);
    size_t nthen = 0;
    zlistx_t *mine = s_xlist();
    for (s_rthen_t *t = zhashx_first(self->rthens); t; t = zhashx_next(self->rthens))
        if (strncmp(t->q, prefix, strlen(prefix)) == 0)
            zlistx_add_end(mine, t);
    for (s_rthen_t *t = zlistx_first(mine); t; t = zlistx_next(mine)) {
        s_revive_then(self, t->p, t->function, t->q);
        zhashx_delete(self->rthens, t->q);
        nthen++;
    }
    zlistx_destroy(&mine);
    self->takeovers++;
    pm_claims_drop(&self->probation, space);
    /* So a restart of ours serves it again, unless somebody else does. */
    if (self->journal)
        pm_journal_claim(self->journal, space, epoch);
    /* Our backups hold everything else we serve: the new space goes to them
     * in the ordinary stream, so they stay counted (and heirs) meanwhile,
     * and replies on it wait until they have it. */
    if (self->replica) {
        pm_replica_add_space(self->replica, space);
        pm_journal_repl(self->journal, pm_replica_produced(self->replica), 0);
    }
    pm_log_warn("PM-TAKEOVER", "serving id space %s at epoch %llu (%s): %zu promises, %zu "
                "continuations, in %lld ms", space, (unsigned long long) epoch, why, n, nthen,
                (long long) (pm_mono_ms() - t0));
}

/* A member died or left: if we are the first alive backup of its spaces,
 * they are ours now. */
static void
s_maybe_take_over(pm_agent_t *self, const char *name)
{
    const char *primary;
    const char *const *spaces;
    const uint64_t *epochs;
    size_t n = pm_mesh_spaces_of(self->mesh, name, &primary, &spaces, &epochs);
    if (!n)
        return;
    /* The heir is the first of the backups the owner announced that is
     * still the same process (alive, under the primary space it had then):
     * only those hold the whole state. A backup that restarted since holds
     * what its WAL kept, which may miss the last records. */
    const char *heirs[16], *heir_spaces[16];
    size_t nh = pm_mesh_backups_of(self->mesh, name, heirs, heir_spaces, 16);
    const char *heir = NULL;
    for (size_t i = 0; i < nh && !heir; i++) {
        int me = strcmp(heirs[i], self->node) == 0;
        if (!me && !pm_mesh_is_up(self->mesh, heirs[i]))
            continue;
        const char *now = pm_mesh_primary_of(self->mesh, heirs[i]);
        if (*heir_spaces[i] && now && strcmp(now, heir_spaces[i]) != 0) {
            pm_log_warn("PM-TAKEOVER-SKIP", "%s's backup %s restarted since it got the copy; "
                        "it cannot take over", name, heirs[i]);
            continue;
        }
        heir = heirs[i];
    }
    if (!heir) {
        pm_log_warn("PM-TAKEOVER-NONE", "%s has no backup that holds its state (%zu announced): "
                    "its spaces wait for it to restart on its data dir", name, nh);
        return;
    }
    if (strcmp(heir, self->node) != 0)
        return;
    /* Copy: claiming publishes metadata, which may rebuild the peer table. */
    char **copy = pm_xcalloc(n, sizeof *copy, "takeover");
    uint64_t *ep = pm_xcalloc(n, sizeof *ep, "takeover");
    for (size_t i = 0; i < n; i++) {
        copy[i] = pm_xstrdup(spaces[i], "takeover");
        ep[i] = epochs[i];
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t e = pm_mesh_epoch(self->mesh, copy[i]);
        uint64_t claim = pm_spaces_takeover_epoch(ep[i], e);
        if (!claim) {
            /* It had moved on from name already (name was fenced, and its
             * metadata still listed it): its current owner keeps it. */
            pm_log_info("PM-TAKEOVER-STALE", "%s listed id space %s at epoch %llu, served at "
                        "epoch %llu since: not taking it over", name, copy[i],
                        (unsigned long long) ep[i], (unsigned long long) e);
            continue;
        }
        char why[PM_WIRE_MAX_NAME + 32];
        snprintf(why, sizeof why, "%s is down", name);
        s_take_space(self, copy[i], claim, why);
    }
    for (size_t i = 0; i < n; i++)
        free(copy[i]);
    free(copy);
    free(ep);
}

static void s_on_moved(void *arg, const char *space);

/* Replica hook: a backup told us a space of ours moved on. */
static void
s_on_fenced(void *arg, const char *space, uint64_t epoch, const char *fencer)
{
    pm_agent_t *self = arg;
    uint64_t mine = 0;
    /* A refusal that loses to our claim is stale (meant for an earlier
     * holder, or our previous process). */
    if (!pm_mesh_owns(self->mesh, space, &mine) ||
        pm_spaces_fence_is_stale(mine, self->node, epoch, fencer))
        return;
    pm_log_error("PM-FENCED", "id space %s is served elsewhere at epoch %llu: we stop "
                 "serving it and acknowledge nothing more for it", space,
                 (unsigned long long) epoch);
    pm_mesh_unclaim(self->mesh, space);
    s_on_moved(self, space);
}

/* Mesh hook: a space we served is served elsewhere at a newer epoch. */
static void
s_on_moved(void *arg, const char *space)
{
    pm_agent_t *self = arg;
    char prefix[PM_WIRE_MAX_NAME + 2];
    pm_id_space_prefix(prefix, sizeof prefix, space);
    pm_store_passivate(self->store, prefix, 0);
    pm_claims_drop(&self->probation, space);
    size_t plen = strlen(prefix);
    /* Its continuations are the new owner's now (it revived them from its
     * copy): ours would only run them a second time. */
    for (s_then_t *t = self->thens, *next; t; t = next) {
        next = t->next;
        if (strncmp(t->target, prefix, plen) != 0)
            continue;
        pm_watch_cancel(&t->watch);
        s_then_unlink(self, t);
        s_then_free(t);
    }
    if (self->journal) {
        pm_journal_release(self->journal, space);
        /* Changes the backups have not acknowledged may not be at the new
         * owner: their replies become errors, never acknowledgements. */
        s_fail_ctx_t ctx = {self, PM_ERR_UNREACHABLE,
                            "the id space moved to another agent before this change reached "
                            "its backups: it may not have happened"};
        size_t n = pm_journal_fail_unreplicated(self->journal, s_fail_held, &ctx);
        if (n)
            pm_log_warn("PM-REPLIES-FAILED", "%zu held repl%s answered UNREACHABLE: id space "
                        "%s moved before their changes were replicated", n, n == 1 ? "y" : "ies",
                        space);
    }
    /* Awaits of its promises here would never be answered (their settles go
     * to the new owner): another agent's subscription hears OWNER_LOST and
     * subscribes again where the space went; a local client hears
     * UNREACHABLE and may await again. */
    for (pm_prom_t *p = pm_store_oldest(self->store); p; p = p->newer) {
        if (p->state != PM_STATE_PENDING || strncmp(p->id, prefix, plen) != 0)
            continue;
        for (pm_watch_t *w = p->watches, *next; w; w = next) {
            next = w->next;
            if (w->fn != s_waiter_fired)
                continue;
            s_waiter_t *wt = (s_waiter_t *) w;
            s_reply_err(self, wt->session, wt->req_id,
                        wt->session->peer ? PM_ERR_OWNER_LOST : PM_ERR_UNREACHABLE,
                        "the promise's id space moved to another agent: await it again");
            s_waiter_free(self, wt);
        }
    }
    /* The backups refused (or will refuse) what we had of that space: they
     * get what we still serve afresh, so acknowledgements flow again. */
    if (self->replica)
        pm_replica_resync(self->replica);
}

/* A restarted agent resumes a space it served before only if nobody took it
 * over, and nobody served it at a newer epoch than ours meanwhile (then its
 * WAL would be stale: that server's own restart resumes it). */
static void
s_check_probation(pm_agent_t *self, int64_t mono)
{
    if (!self->probation.n || mono < self->probation_until)
        return;
    /* Not before another member's full state has told us who serves what
     * (a restarted seed hears of the others late), unless nobody has come
     * for long enough that we must be alone. */
    if (!pm_mesh_synced(self->mesh) && mono < self->probation_alone)
        return;
    pm_claim_t c;
    while (pm_claims_pop(&self->probation, &c)) {
        const char *node = NULL;
        pm_route_t r = pm_mesh_route_space(self->mesh, c.space, &node);
        uint64_t known = pm_mesh_epoch(self->mesh, c.space);
        uint64_t resume = pm_spaces_resume_epoch(c.epoch, known);
        if (r == PM_ROUTE_REMOTE) {
            pm_log_info("PM-SPACE-MOVED", "id space %s was taken over by %s while we were "
                        "down; new promises go to %s", c.space, node, self->space);
            if (self->journal)
                pm_journal_release(self->journal, c.space);
        } else if (r == PM_ROUTE_LOCAL) {
            /* served already */
        } else if (!resume) {
            pm_log_warn("PM-SPACE-SUPERSEDED", "id space %s was served at epoch %llu after "
                        "ours (%llu); not resuming it from our older copy", c.space,
                        (unsigned long long) known, (unsigned long long) c.epoch);
            if (self->journal)
                pm_journal_release(self->journal, c.space);
        } else {
            s_take_space(self, c.space, resume, "nobody took it over while we were down");
        }
        free(c.space);
    }
}

/* ---- requests waiting for a takeover -------------------------------------- */

static void
s_park(pm_agent_t *self, s_relay_t *r)
{
    r->parked = 1;
    r->node[0] = 0;
    self->parked++;
    /* A takeover is announced within detection + one gossip round; wait up
     * to forward_timeout for it before giving up with OWNER_LOST. */
    pm_timers_set(self->relay_timers, &r->timer, pm_mono_ms() + self->forward_timeout);
}

/* Parked requests whose space is now served somewhere go there. */
static void
s_unpark(pm_agent_t *self)
{
    zlistx_t *ready = NULL;
    for (s_relay_t *r = zhashx_first(self->relays); r; r = zhashx_next(self->relays)) {
        if (!r->parked)
            continue;
        const char *node = NULL;
        pm_route_t route = pm_mesh_route(self->mesh, r->pid, &node);
        if (route != PM_ROUTE_REMOTE && route != PM_ROUTE_LOCAL)
            continue;
        if (!ready)
            ready = s_xlist();
        zlistx_add_end(ready, r);
    }
    if (!ready)
        return;
    for (s_relay_t *r = zlistx_first(ready); r; r = zlistx_next(ready)) {
        const char *node = NULL;
        pm_route_t route = pm_mesh_route(self->mesh, r->pid, &node);
        if (route == PM_ROUTE_REMOTE && r->frame) {
            uint8_t *buf = pm_xmalloc(r->frame_len, "re-sent request");
            memcpy(buf, r->frame, r->frame_len);
            snprintf(r->node, sizeof r->node, "%s", node);
            r->parked = 0;
            pm_timers_set(self->relay_timers, &r->timer, pm_mono_ms() + self->forward_timeout);
            if (r->kind == S_RELAY_SUB)
                pm_timers_cancel(self->relay_timers, &r->timer);
            pm_mesh_send_raw(self->mesh, node, PM_MSG_REPLY, buf, r->frame_len);
            continue;
        }
        /* Served here now (we took it over): run it as if the client had
         * asked us, with the client's own req_id. */
        pm_msg_t m;
        if (r->frame && pm_wire_decode(r->frame, r->frame_len, &m) == PM_OK) {
            s_session_t *s = r->kind == S_RELAY_OP ? s_session_by_id(self, r->session) : NULL;
            if (r->kind == S_RELAY_OP && s) {
                m.req_id = r->req_id;
                m.from = NULL;
                s_dispatch(self, s, &m);
            } else if (r->kind == S_RELAY_FIRE && m.type == PM_MSG_SETTLE) {
                const char *data = m.state == PM_STATE_RESOLVED ? (const char *) m.value
                                                                : m.reason;
                size_t len = m.state == PM_STATE_RESOLVED ? m.value_len : strlen(m.reason);
                pm_store_settle(self->store, m.id, m.state, data, len, pm_real_ms(), NULL);
            } else if (r->kind == S_RELAY_SUB) {
                s_rwait_t *rw = zhashx_lookup(self->rwaits, r->pid);
                pm_prom_t *p = pm_store_get(self->store, r->pid);
                while (rw && rw->watches) {
                    s_waiter_t *w = pm_container_of(rw->watches, s_waiter_t, watch);
                    pm_watch_cancel(&w->watch);
                    if (p && p->state == PM_STATE_PENDING) {
                        pm_store_watch(p, &w->watch, s_waiter_fired);
                    } else {
                        if (p)
                            s_reply_promise(self, w->session, w->req_id, p);
                        else
                            s_reply_err(self, w->session, w->req_id, PM_ERR_NOT_FOUND, NULL);
                        s_waiter_free(self, w);
                    }
                }
                if (rw)
                    zhashx_delete(self->rwaits, r->pid);
            }
        }
        pm_wire_release(&m);
        s_relay_free(self, r);
    }
    zlistx_destroy(&ready);
}

/* Mesh hook: a member came, changed or went. */
static void
s_on_member(void *arg, pm_mesh_event_t ev, const char *name)
{
    pm_agent_t *self = arg;
    if (ev != PM_MESH_DOWN) {
        pm_workers_offer_unserved(self->workers, s_take_unserved, self);
        if (self->replica)
            s_unpark(self);
        return;
    }
    if (self->replica)
        s_maybe_take_over(self, name);
    /* Its channel is gone, and what was queued on it: whatever comes from
     * that name next must start with a state transfer. */
    if (self->backup)
        pm_backup_forget(self->backup, name);
    /* Everything that waited on that member: with backups, it waits for
     * the takeover; without, it ends now with a typed error. */
    zlistx_t *gone = s_xlist();
    for (s_relay_t *r = zhashx_first(self->relays); r; r = zhashx_next(self->relays))
        if (!r->parked && strcmp(r->node, name) == 0)
            zlistx_add_end(gone, r);
    size_t n = zlistx_size(gone), lost = 0;
    for (s_relay_t *r = zlistx_first(gone); r; r = zlistx_next(gone)) {
        if (self->replica && r->frame) {
            s_park(self, r);
            continue;
        }
        lost++;
        s_relay_fail(self, r, PM_ERR_OWNER_LOST);
    }
    zlistx_destroy(&gone);
    self->owner_lost += lost;
    char key[PM_WIRE_MAX_NAME + 8];
    snprintf(key, sizeof key, "peer:%s", name);
    s_session_t *peer = zhashx_lookup(self->sessions, key);
    if (peer)
        s_session_close(self, peer, "member down");
    /* Invocations placed there run again elsewhere (at-least-once; the target
     * still settles once). */
    s_deleg_t *redo = NULL;
    for (s_deleg_t *d = self->delegs, *next; d; d = next) {
        next = d->next;
        if (strcmp(d->node, name) != 0)
            continue;
        s_deleg_unlink(self, d);
        d->next = redo;
        redo = d;
    }
    while (redo) {
        s_deleg_t *d = redo;
        redo = d->next;
        pm_log(PM_LOG_WARN, "PM-INVOKE-RETRY", d->target, "%s was placed on %s, which is down; "
               "placing it again", d->function, name);
        s_invoke(self, d->function, d->input, d->input_len, d->target);
        s_deleg_free(d);
    }
    if (lost)
        pm_log_warn("PM-OWNER-LOST", "%zu request(s) waiting on %s failed with OWNER_LOST", lost,
                    name);
    if (n > lost)
        pm_log_info("PM-RELAY-PARKED", "%zu request(s) waiting on %s wait for its takeover",
                    n - lost, name);
    if (self->replica)
        s_unpark(self); /* we may have taken it over ourselves */
}

static int s_space_of_live_member(pm_agent_t *self, const char *id);

/* Parks a client's request until its space is served somewhere (s_unpark):
 * its owner died and a takeover is coming, or (unknown) we just started and
 * have not heard of the space yet. PM_OK if parked, else the error to answer. */
static int
s_park_request(pm_agent_t *self, s_session_t *s, const pm_msg_t *m, int64_t mono, int unknown)
{
    s_relay_kind_t kind = m->type == PM_MSG_AWAIT && m->timeout_ms ? S_RELAY_SUB : S_RELAY_OP;
    /* A parked await is a waiter like any other: at the client's limit it is
     * refused now, not parked without anyone to answer it. */
    if (kind == S_RELAY_SUB && s->n_waiters >= self->max_waiters)
        return PM_ERR_LIMIT;
    s_relay_t *r = s_relay_new(self, kind, "", m->id);
    pm_msg_t copy = *m;
    copy.req_id = r->id;
    copy.from = self->node;
    if (kind == S_RELAY_SUB)
        copy.timeout_ms = -1;
    size_t len;
    if (!(r->frame = pm_wire_encode(&copy, &len)))
        pm_oom("encoding a parked request");
    r->frame_len = len;
    r->session = s->id;
    r->req_id = m->req_id;
    if (kind == S_RELAY_SUB) {
        s_rwait_t *rw = zhashx_lookup(self->rwaits, m->id);
        if (!rw) {
            size_t n = strlen(m->id);
            rw = pm_xcalloc(1, sizeof *rw + n + 1, "remote await");
            memcpy(rw->id, m->id, n + 1);
            rw->relay = r->id;
            zhashx_insert(self->rwaits, rw->id, rw);
        }
        int werr = PM_OK;
        s_waiter_t *w = s_waiter_new(self, s, m, mono, &werr);
        PM_INVARIANT(w, "a parked await has a waiter (its limit was checked)");
        pm_watch_link(&rw->watches, &w->watch, NULL);
    }
    s_park(self, r);
    if (unknown) {
        r->unknown = 1;
        int64_t until = self->started_mono + S_YOUNG_MS;
        if (until < mono + S_UNKNOWN_WAIT_MS)
            until = mono + S_UNKNOWN_WAIT_MS;
        pm_timers_set(self->relay_timers, &r->timer, until);
    }
    return PM_OK;
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
static int
s_route(pm_agent_t *self, s_session_t *s, const pm_msg_t *m, int64_t mono, int *err)
{
    const char *node = NULL;
    switch (pm_mesh_route(self->mesh, m->id, &node)) {
    case PM_ROUTE_LOCAL:
        return 0;
    case PM_ROUTE_LOST:
        /* Its owner died; a backup is taking over: wait for it. */
        *err = self->replica ? s_park_request(self, s, m, mono, 0) : PM_ERR_OWNER_LOST;
        return 1;
    case PM_ROUTE_UNKNOWN:
        /* Just started, or the space is named after a live member (its new
         * primary): we may not have heard of it yet. Wait for the members'
         * metadata a moment before calling the id unknown. */
        if (self->replica &&
            (mono - self->started_mono < S_YOUNG_MS || s_space_of_live_member(self, m->id)))
            *err = s_park_request(self, s, m, mono, 1);
        else
            *err = PM_ERR_NOT_FOUND;
        return 1;
    case PM_ROUTE_REMOTE:
        break;
    }
    if (m->type == PM_MSG_AWAIT) {
        *err = s_remote_await(self, s, m, node, mono);
        return 1;
    }
    if (m->type == PM_MSG_THEN && m->new_id) {
        /* The caller minted the new id in the owner's space under its own
         * lease: <owner space>~<lease><n>. */
        size_t olen = pm_id_space_len(m->id);
        /* (Or, if the owner's space was ours until it moved: under the lease
         * as it stands, as for a promise of our own.) */
        if (strncmp(m->new_id, m->id, olen + 1) != 0 ||
            !(s_minted_by(s, m->new_id + olen + 1) || s_minted_by(s, m->new_id))) {
            *err = PM_ERR_BAD_REQUEST;
            return 1;
        }
    }
    *err = s_forward(self, s, m, node);
    return 1;
}

static int
s_do_then(pm_agent_t *self, s_session_t *s, const pm_msg_t *m, int64_t now)
{
    if (!m->function || !*m->function)
        return PM_ERR_BAD_REQUEST;
    pm_prom_t *p = pm_store_get(self->store, m->id);
    if (!p)
        return PM_ERR_NOT_FOUND;
    char id[PM_WIRE_MAX_NAME + 1];
    if (m->new_id) {
        /* A peer relays ids its client minted in our space under the peer's
         * lease (<our space>~<their space>~...); a local client mints under
         * its own lease. Either way the id cannot clash with ours. */
        /* (A peer mints in the source's space: ours, under its own lease;
         * or one we took over, whose former owner's clients mint there.) */
        int ok = s->peer ? (pm_id_nested_in(m->new_id, self->space, strlen(self->space)) ||
                            (pm_id_same_space(m->new_id, p->id) &&
                             s_owned_space(self, m->new_id)))
                         : s_minted_by(s, m->new_id);
        if (!ok)
            return PM_ERR_BAD_REQUEST;
        snprintf(id, sizeof id, "%s", m->new_id);
    } else {
        s_mint(self, id, sizeof id);
    }
    size_t idlen = strlen(id);
    s_then_t *t = pm_xcalloc(1, sizeof *t + idlen + 1, "continuation");
    memcpy(t->target, id, idlen + 1);
    t->function = pm_xstrdup(m->function, "continuation");
    t->source = pm_xstrdup(p->id, "continuation");
    t->agent = self;
    pm_create_args_t a = {.id = id, .timeout_ms = m->timeout_ms};
    pm_prom_t *q;
    int err = pm_store_create(self->store, &a, now, &q, NULL);
    if (err) {
        s_then_free(t);
        return err;
    }
    if (self->journal)
        pm_journal_then(self->journal, p->id, t->function, t->target);
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .id = id, .created = 1};
    s_send(self, s, &r);
    t->next = self->thens;
    if (self->thens)
        self->thens->prev = t;
    self->thens = t;
    if (p->state == PM_STATE_PENDING)
        pm_store_watch(p, &t->watch, s_then_fired);
    else
        s_then_fired(&t->watch, p);
    return PM_OK;
}

static int
s_do_list(pm_agent_t *self, s_session_t *s, const pm_msg_t *m)
{
    if (m->state < 0 || m->state > PM_STATE_TIMEDOUT)
        return PM_ERR_BAD_REQUEST;
    pm_list_filter_t f = {.state = m->state,
                          .prefix = m->prefix,
                          .limit = m->limit ? m->limit : self->list_limit,
                          .cursor = m->cursor};
    if (f.limit > S_MAX_PAGE)
        f.limit = S_MAX_PAGE;
    if (m->label_count) {
        f.label_key = m->labels[0].key;
        f.label_value = *m->labels[0].value ? m->labels[0].value : NULL;
    }
    const pm_prom_t **found = pm_xmalloc(f.limit * sizeof *found, "list page");
    pm_wire_promise_t *views = pm_xmalloc(f.limit * sizeof *views, "list page");
    char cursor[PM_WIRE_MAX_NAME + 32];
    size_t n = pm_store_list(self->store, &f, found, cursor, sizeof cursor);
    for (size_t i = 0; i < n; i++)
        pm_records_view(found[i], &views[i]);
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .promises = views,
                  .promise_count = n, .cursor = cursor};
    s_send(self, s, &r);
    free(found);
    free(views);
    return PM_OK;
}

static void
s_do_status(pm_agent_t *self, s_session_t *s, const pm_msg_t *m)
{
    json_t *promises = json_object();
    for (int st = PM_STATE_PENDING; st <= PM_STATE_TIMEDOUT; st++)
        json_object_set_new(promises, pm_state_name(st),
                            json_integer((json_int_t) pm_store_count(self->store, st)));
    json_object_set_new(promises, "total", json_integer((json_int_t) pm_store_count(self->store, 0)));
    json_t *ops = json_object();
    for (int t = PM_MSG_HELLO; t < PM_MSG_TYPE_COUNT; t++) {
        if (t == PM_MSG_REPLY || t == PM_MSG_INVOKE)
            continue;
        json_object_set_new(ops, pm_wire_type_name(t),
                            json_pack("{s:I,s:I}", "ok", (json_int_t) self->ops[t].ok, "error",
                                      (json_int_t) self->ops[t].err));
    }
    pm_workers_stats_t ws;
    pm_workers_stats(self->workers, &ws);
    size_t waiters = 0;
    for (s_session_t *x = zhashx_first(self->sessions); x; x = zhashx_next(self->sessions))
        waiters += x->n_waiters;
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:I,s:o,s:o,s:{s:I,s:I,s:I,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
        "s:{s:I,s:I,s:I}}",
        "node", self->node, "version", PMESH_VERSION, "id_space", self->space, "uptime_ms",
        (json_int_t) (pm_mono_ms() - self->started_mono), "promises", promises, "ops", ops,
        "clients", "sessions", (json_int_t) zhashx_size(self->sessions), "waiters",
        (json_int_t) waiters, "workers", (json_int_t) ws.workers, "expired",
        (json_int_t) self->sessions_expired, "invocations", "queued", (json_int_t) ws.queued,
        "inflight", (json_int_t) ws.inflight, "invoked", (json_int_t) ws.invoked, "dispatched",
        (json_int_t) ws.dispatched, "completed", (json_int_t) ws.completed, "failed",
        (json_int_t) ws.failed, "retried", (json_int_t) ws.retried, "dropped",
        (json_int_t) ws.dropped, "not_holder", (json_int_t) ws.not_holder, "errors",
        "bad_frames", (json_int_t) self->bad_frames, "replies_dropped",
        (json_int_t) self->replies_dropped, "replies_failed", (json_int_t) self->replies_failed);
    if (o && self->mesh) {
        char *ms = pm_mesh_stats_json(self->mesh);
        json_t *mj = ms ? json_loads(ms, 0, NULL) : NULL;
        free(ms);
        if (mj) {
            json_object_set_new(mj, "relayed", json_integer((json_int_t) self->relayed));
            json_object_set_new(mj, "relay_timeouts",
                                json_integer((json_int_t) self->relay_timeouts));
            json_object_set_new(mj, "owner_lost", json_integer((json_int_t) self->owner_lost));
            json_object_set_new(o, "mesh", mj);
        }
    }
    if (o && self->journal) {
        char *ws = pm_journal_stats_json(self->journal);
        json_t *wj = ws ? json_loads(ws, 0, NULL) : NULL;
        free(ws);
        if (wj)
            json_object_set_new(o, "wal", wj);
    }
    if (o && self->replica) {
        char *rs = pm_replica_stats_json(self->replica);
        json_t *rj = rs ? json_loads(rs, 0, NULL) : NULL;
        free(rs);
        if (rj) {
            json_object_set_new(rj, "takeovers", json_integer((json_int_t) self->takeovers));
            json_object_set_new(rj, "spaces_retired", json_integer((json_int_t) self->retired));
            json_object_set_new(rj, "parked", json_integer((json_int_t) self->parked));
            json_object_set_new(rj, "replica_continuations",
                                json_integer((json_int_t) zhashx_size(self->rthens)));
            json_object_set_new(rj, "owners_in_sync",
                                json_integer((json_int_t) pm_backup_synced(self->backup)));
            json_object_set_new(rj, "resyncs_asked",
                                json_integer((json_int_t) pm_backup_resyncs(self->backup)));
            json_object_set_new(o, "replication", rj);
        }
    }
    if (o) {
        json_object_set_new(o, "generation", json_integer((json_int_t) self->generation));
        json_t *lat = json_object();
        for (int t = PM_MSG_HELLO; t < PM_MSG_TYPE_COUNT; t++)
            if (self->op_ms[t].count)
                json_object_set_new(lat, pm_wire_type_name(t), pm_hist_json(&self->op_ms[t]));
        json_object_set_new(o, "latency_ms", lat);
        json_object_set_new(o, "functions", pm_workers_functions_json(self->workers));
    }
    char *json = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .json = json ? json : "{}"};
    s_send(self, s, &r);
    free(json);
}

static int
s_handle(pm_agent_t *self, s_session_t *s, const pm_msg_t *m, int64_t now, int64_t mono)
{
    int routed_err;
    if (self->mesh && !s->peer &&
        (m->type == PM_MSG_SETTLE || m->type == PM_MSG_HEARTBEAT || m->type == PM_MSG_GET ||
         m->type == PM_MSG_AWAIT || m->type == PM_MSG_THEN) &&
        s_route(self, s, m, mono, &routed_err))
        return routed_err;
    if (self->replica && !s->peer && m->type == PM_MSG_CREATE &&
        !pm_mesh_owns(self->mesh, self->space, NULL)) {
        /* Our space was taken over while we were cut off (fenced, not
         * restarted): new promises in it are the new owner's to create. */
        if (m->id && !s_minted_by(s, m->id))
            return PM_ERR_BAD_REQUEST;
        char id[PM_WIRE_MAX_NAME + 1];
        pm_msg_t copy = *m;
        if (!m->id) {
            s_mint(self, id, sizeof id);
            copy.id = id;
        }
        if (s_route(self, s, &copy, mono, &routed_err))
            return routed_err;
    }
    switch (m->type) {
    case PM_MSG_HELLO: {
        pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .node = self->node,
                      .mint_prefix = s->mint, .session = s->id,
                      .max_value = self->max_value_bytes,
                      .client_timeout_ms = (uint64_t) self->client_timeout};
        s_send(self, s, &r);
        return PM_OK;
    }
    case PM_MSG_CREATE:
        return s_do_create(self, s, m, now);
    case PM_MSG_SETTLE:
        return s_do_settle(self, s, m, now);
    case PM_MSG_HEARTBEAT: {
        int err = pm_store_heartbeat(self->store, m->id, now, NULL);
        if (!err)
            s_reply_ok(self, s, m->req_id);
        return err;
    }
    case PM_MSG_GET: {
        pm_prom_t *p = pm_store_get(self->store, m->id);
        if (!p)
            return PM_ERR_NOT_FOUND;
        s_reply_promise(self, s, m->req_id, p);
        return PM_OK;
    }
    case PM_MSG_AWAIT:
        return s_do_await(self, s, m, mono);
    case PM_MSG_THEN:
        return s_do_then(self, s, m, now);
    case PM_MSG_LIST:
        return s_do_list(self, s, m);
    case PM_MSG_STATUS:
        s_do_status(self, s, m);
        return PM_OK;
    case PM_MSG_REGISTER: {
        int err = pm_workers_register(self->workers, s, m->functions, m->function_count,
                                      m->concurrency);
        if (!err)
            s_reply_ok(self, s, m->req_id);
        return err;
    }
    case PM_MSG_RESULT: {
        int err = pm_workers_result(self->workers, s, m);
        if (err == PM_ERR_NOT_HOLDER)
            pm_log_warn("PM-WORKER-NOT-HOLDER", "session %llu answered invocation %s it does "
                        "not hold", (unsigned long long) s->id, m->invocation_id);
        if (!err)
            s_reply_ok(self, s, m->req_id);
        return err;
    }
    case PM_MSG_PING: {
        s_session_t *target = s_session_by_id(self, m->session);
        if (target) {
            target->last_seen = mono;
            target->pinged = 1;
        }
        return PM_OK; /* pings are never answered */
    }
    case PM_MSG_BYE:
        return PM_OK; /* the caller closes the session */
    case PM_MSG_MEMBERS: {
        char *json = self->mesh ? pm_mesh_members_json(self->mesh) : NULL;
        char solo[512];
        if (!json)
            snprintf(solo, sizeof solo, "[{\"node\":\"%s\",\"endpoint\":\"\",\"state\":"
                     "\"alive\",\"incarnation\":0,\"last_heard_ms_ago\":0,\"self\":true,"
                     "\"functions\":[]}]", self->node);
        pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id, .json = json ? json : solo};
        s_send(self, s, &r);
        free(json);
        return PM_OK;
    }
    default:
        return PM_ERR_BAD_REQUEST; /* replies and invocations do not flow this way */
    }
}

/* Serves one decoded request from session s (a client or a peer agent). */
static void
s_dispatch(pm_agent_t *self, s_session_t *s, pm_msg_t *m)
{
    if (self->stopping && m->type != PM_MSG_PING && m->type != PM_MSG_BYE) {
        s_reply_err(self, s, m->req_id, PM_ERR_AGENT_SHUTTING_DOWN, NULL);
        return;
    }
    self->cur_session = s;
    self->cur_req = m->req_id;
    self->cur_type = m->type;
    self->cur_t0_us = pm_mono_us();
    int err = s_handle(self, s, m, pm_real_ms(), pm_mono_ms());
    if (m->type < PM_MSG_TYPE_COUNT) {
        if (err)
            self->ops[m->type].err++;
        else
            self->ops[m->type].ok++;
    }
    if (err) {
        if (err == PM_ERR_BAD_REQUEST)
            s_bad_frame(self, "invalid request");
        s_reply_err(self, s, m->req_id, err, NULL);
    }
    self->cur_session = NULL;
    if (m->type == PM_MSG_BYE && !s->peer)
        s_session_close(self, s, "said bye");
}

static void
s_on_message(pm_agent_t *self, zmq_msg_t *rid, zmq_msg_t *body)
{
    int64_t mono = pm_mono_ms();
    s_session_t *s = s_session_get(self, zmq_msg_data(rid), zmq_msg_size(rid), mono);
    if (!s)
        return;
    pm_msg_t m;
    int err = pm_wire_decode(zmq_msg_data(body), zmq_msg_size(body), &m);
    if (err) {
        char why[96];
        snprintf(why, sizeof why, "%s frame of %zu bytes from session %llu", pm_err_name(err),
                 zmq_msg_size(body), (unsigned long long) s->id);
        s_bad_frame(self, why);
        s_reply_err(self, s, m.req_id, err,
                    err == PM_ERR_BAD_VERSION ? "unsupported envelope version" : "malformed frame");
    } else {
        s_dispatch(self, s, &m);
    }
    pm_wire_release(&m);
}

/* ---- the loop ------------------------------------------------------------- */

static void
s_drain_router(pm_agent_t *self)
{
    for (int i = 0; i < S_BATCH; i++) {
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
            s_bad_frame(self, "unexpected frame count");
        else
            s_on_message(self, &rid, &body);
        zmq_msg_close(&body);
        zmq_msg_close(&rid);
    }
}

static void
s_fire_waiter_timeouts(pm_agent_t *self, int64_t mono)
{
    pm_timer_t *t;
    while ((t = pm_timers_pop_due(self->timers, mono))) {
        s_waiter_t *w = pm_container_of(t, s_waiter_t, timer);
        self->waiters_timed_out++;
        s_reply_err(self, w->session, w->req_id, PM_ERR_WAIT_TIMEOUT, NULL);
        s_waiter_free(self, w);
    }
}

static long
s_poll_timeout(pm_agent_t *self, int64_t real, int64_t mono)
{
    int64_t t = S_SWEEP_MS;
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

int
pm_agent_run(pm_agent_t *self)
{
    zmq_pollitem_t items[4] = {{self->router, 0, ZMQ_POLLIN, 0},
                               {NULL, self->sigfd, ZMQ_POLLIN, 0},
                               {NULL, -1, 0, 0},
                               {NULL, -1, 0, 0}};
    int n_items = 2, mesh_item = -1, wal_item = -1;
    if (self->mesh) {
        items[n_items] = (zmq_pollitem_t){pm_mesh_socket(self->mesh), 0, ZMQ_POLLIN, 0};
        mesh_item = n_items++;
    }
    if (self->journal && pm_journal_socket(self->journal)) {
        items[n_items] = (zmq_pollitem_t){pm_journal_socket(self->journal), 0, ZMQ_POLLIN, 0};
        wal_item = n_items++;
    }
    pm_fn_cap_t caps[256];
    pm_log_info("PM-AGENT-READY", "node %s serving ipc://%s (id space %s)", self->node,
                self->socket_path, self->space);
    while (!self->stopping) {
        long timeout = s_poll_timeout(self, pm_real_ms(), pm_mono_ms());
        int rc = zmq_poll(items, n_items, timeout);
        if (rc < 0 && errno != EINTR) {
            pm_log_error("PM-AGENT-POLL", "zmq_poll: %s", zmq_strerror(errno));
            break;
        }
        s_check_stall(self, pm_mono_ms());
        if (items[0].revents & ZMQ_POLLIN)
            s_drain_router(self);
        if (mesh_item >= 0 && (items[mesh_item].revents & ZMQ_POLLIN))
            pm_mesh_readable(self->mesh);
        if (wal_item >= 0 && (items[wal_item].revents & ZMQ_POLLIN))
            pm_journal_readable(self->journal);
        if (items[1].revents & ZMQ_POLLIN) {
            struct signalfd_siginfo si;
            if (read(self->sigfd, &si, sizeof si) == sizeof si) {
                pm_log_info("PM-AGENT-STOPPING", "signal %u: shutting down", si.ssi_signo);
                self->stopping = 1;
            }
        }
        pm_store_tick(self->store, pm_real_ms());
        int64_t mono = pm_mono_ms();
        s_fire_waiter_timeouts(self, mono);
        pm_timer_t *t;
        while ((t = pm_timers_pop_due(self->relay_timers, mono)))
            s_relay_expired(self, pm_container_of(t, s_relay_t, timer));
        if (self->mesh) {
            size_t n = pm_workers_caps(self->workers, caps, sizeof caps / sizeof caps[0]);
            pm_mesh_set_functions(self->mesh, caps, n);
            pm_mesh_tick(self->mesh);
        }
        s_housekeeping(self, mono);
        if (self->replica) {
            s_check_probation(self, mono);
            pm_replica_flush(self->replica);
            pm_journal_repl(self->journal, pm_replica_produced(self->replica),
                            pm_replica_acked(self->replica));
        }
        if (self->journal)
            pm_journal_flush(self->journal);
        if (mono - self->last_sweep >= S_SWEEP_MS) {
            s_sweep(self, mono);
            self->last_sweep = mono;
        }
    }
    /* Every pending await hears that we are going, rather than hanging. */
    size_t told = 0;
    for (s_session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions))
        while (s->waiters) {
            s_reply_err(self, s, s->waiters->req_id, PM_ERR_AGENT_SHUTTING_DOWN, NULL);
            s_waiter_free(self, s->waiters);
            told++;
        }
    for (s_relay_t *r = zhashx_first(self->relays); r; r = zhashx_next(self->relays)) {
        s_session_t *s = r->kind == S_RELAY_OP ? s_session_by_id(self, r->session) : NULL;
        if (s) {
            s_reply_err(self, s, r->req_id, PM_ERR_AGENT_SHUTTING_DOWN, NULL);
            told++;
        }
    }
    if (self->mesh)
        pm_mesh_leave(self->mesh); /* peers mark us left at once, no suspicion */
    pm_log_info("PM-AGENT-STOPPED", "told %zu waiters; bye", told);
    return 0;
}

/* ---- setup ---------------------------------------------------------------- */

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

pm_agent_t *
pm_agent_new(const pm_config_t *cfg, const char *node, const char *socket_path)
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
    self->list_limit = (uint32_t) cfg->list_limit;
    self->started_mono = self->last_sweep = pm_mono_ms();
    /* Relay ids start at a random point: a reply meant for our previous run
     * (a peer that did not notice the restart) cannot match a relay of this
     * one. */
    if (getrandom(&self->next_relay, sizeof self->next_relay, 0) != sizeof self->next_relay)
        self->next_relay = (uint64_t) pm_real_ms() << 20;
    self->next_relay >>= 1;
    self->started_real = pm_real_ms();

    pm_store_limits_t limits = {.max_value_bytes = self->max_value_bytes,
                                .max_labels = (size_t) cfg->max_labels,
                                .max_id_bytes = PM_WIRE_MAX_NAME};
    self->store = pm_store_new(&limits);
    self->timers = pm_timers_new();
    self->sessions = zhashx_new();
    self->by_id = zhashx_new();
    self->ctx = zmq_ctx_new();
    if (!self->store || !self->timers || !self->sessions || !self->by_id || !self->ctx)
        goto fail;
    zhashx_set_destructor(self->sessions, s_session_destructor);

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
    if ((cfg->data_dir && *cfg->data_dir) || replicated) {
        char err[512];
        const char *dir = cfg->data_dir && *cfg->data_dir ? cfg->data_dir : NULL;
        self->journal = pm_journal_open(dir, cfg->fsync, self->ctx, s_journal_send, self, err,
                                        sizeof err);
        /* A predecessor killed a moment ago may still be exiting (its last
         * threads hold the lock): give it up to 5 s before refusing. */
        for (int i = 0; i < 50 && !self->journal && strstr(err, "in use"); i++) {
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
    if (st.space[0] && !replicated) {
        snprintf(self->space, sizeof self->space, "%.100s", st.space);
    } else {
        uint64_t boot = 0;
        if (getrandom(&boot, sizeof boot, 0) != sizeof boot)
            boot = (uint64_t) self->started_real ^ ((uint64_t) getpid() << 32);
        pm_id_space_name(self->space, sizeof self->space, node, boot & 0xffffffffffULL);
        /* With backups, the spaces we served may have been taken over while
         * we were down: new promises go to a new space, and the old ones are
         * resumed only if nobody announces them within takeover_grace. */
        if (st.space[0])
            pm_claims_add(&self->probation, st.space, 1);
        for (size_t i = 0; i < st.claimed_count; i++)
            pm_claims_add(&self->probation, st.claimed[i].space, st.claimed[i].epoch);
    }
    if (self->journal) {
        pm_journal_set_record_hook(self->journal, s_on_record, self);
        pm_journal_generation(self->journal, self->space, self->generation);
        pm_store_set_listener(self->store, s_store_changed, self);
    }
    self->rthens = zhashx_new();
    if (!self->rthens)
        goto fail;
    zhashx_set_destructor(self->rthens, s_rthen_destructor);
    if (mesh_on) {
        pm_mesh_hooks_t mh = {.message = s_on_peer_message, .member = s_on_member,
                              .moved = s_on_moved};
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
            pm_replica_hooks_t rh = {.full_state = s_full_state, .fenced = s_on_fenced};
            self->replica = pm_replica_new(self->mesh, self->space, self->replicas, &rh, self);
            if (!self->replica) {
                pm_journal_state_free(&st);
                goto fail;
            }
            /* Only our new space is ours until the grace period says more;
             * a space we had taken over before is treated like our old one. */
            char keep[PM_WIRE_MAX_NAME + 2];
            pm_id_space_prefix(keep, sizeof keep, self->space);
            pm_store_passivate(self->store, keep, 1);
            self->probation_until = pm_mono_ms() + cfg->takeover_grace;
            self->probation_alone = pm_mono_ms() + S_ALONE_GRACES * cfg->takeover_grace;
            for (size_t i = 0; i < self->probation.n; i++)
                pm_log_info("PM-SPACE-PROBATION", "restarted: id space %s (epoch %llu) is "
                            "resumed after %lld ms, once another member's state has reached "
                            "us, unless some agent serves it; new promises go to %s",
                            self->probation.v[i].space,
                            (unsigned long long) self->probation.v[i].epoch,
                            (long long) cfg->takeover_grace, self->space);
        }
    }

    pm_workers_hooks_t hooks = {.send = s_workers_send, .settle = s_settle_anywhere,
                                .pending = s_target_pending};
    self->workers = pm_workers_new(self->space, &hooks, self);
    self->relays = zhashx_new();
    self->rwaits = zhashx_new();
    self->relay_timers = pm_timers_new();
    if (!self->workers || !self->relays || !self->rwaits || !self->relay_timers) {
        pm_journal_state_free(&st);
        goto fail;
    }
    zhashx_set_destructor(self->relays, s_relay_destructor);
    zhashx_set_destructor(self->rwaits, s_rwait_destructor);
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
        size_t n = s_restore_thens(self, &st);
        pm_log_info("PM-AGENT-RECOVERED", "generation %llu of id space %s: %zu promises "
                    "(%zu pending), %zu continuations, %llu records in %lld ms",
                    (unsigned long long) self->generation, self->space,
                    pm_store_count(self->store, 0), pm_store_count(self->store, PM_STATE_PENDING),
                    n, (unsigned long long) st.records, (long long) st.recovery_ms);
    }
    pm_journal_state_free(&st);

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
    int one = 1, zero = 0, hwm = S_SNDHWM;
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

void
pm_agent_destroy(pm_agent_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_agent_t *self = *self_p;
    if (self->sessions) {
        s_session_t *s;
        while ((s = zhashx_first(self->sessions)))
            s_session_close(self, s, "agent stopping");
    }
    while (self->thens) {
        s_then_t *t = self->thens;
        pm_watch_cancel(&t->watch);
        s_then_unlink(self, t);
        s_then_free(t);
    }
    while (self->delegs) {
        s_deleg_t *d = self->delegs;
        s_deleg_unlink(self, d);
        s_deleg_free(d);
    }
    if (self->journal) {
        /* Replies the backups have not acknowledged are no acknowledgement. */
        s_fail_ctx_t ctx = {self, PM_ERR_AGENT_SHUTTING_DOWN,
                            pm_strerror(PM_ERR_AGENT_SHUTTING_DOWN)};
        pm_journal_fail_unreplicated(self->journal, s_fail_held, &ctx);
    }
    pm_journal_close(&self->journal); /* releases what it held while the sockets live */
    pm_replica_destroy(&self->replica);
    zhashx_destroy(&self->rthens);
    pm_claims_free(&self->probation);
    pm_backup_destroy(&self->backup);
    if (self->token_key)
        sodium_memzero(self->token_key, self->token_key_len);
    free(self->token_key);
    pm_workers_destroy(&self->workers);
    pm_mesh_destroy(&self->mesh);
    zhashx_destroy(&self->relays);
    zhashx_destroy(&self->rwaits);
    pm_timers_destroy(&self->relay_timers);
    zhashx_destroy(&self->by_id);
    zhashx_destroy(&self->sessions);
    pm_timers_destroy(&self->timers);
    pm_store_destroy(&self->store);
    if (self->router) {
        zmq_close(self->router);
        unlink(self->socket_path);
    }
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    if (self->sigfd >= 0)
        close(self->sigfd);
    free(self->node);
    free(self->socket_path);
    free(self);
    *self_p = NULL;
}
