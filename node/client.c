/*
 * client.c - libpmesh: see pmesh.h.
 *
 * One DEALER socket per client. Request ids carry the operation in their low
 * four bits, so a reply can be typed without a table of outstanding requests.
 * Blocking calls and pm_recv share one receive path: replies that are not the
 * one a blocking call waits for are queued for pm_recv.
 *
 * Two side channels keep waits honest: a keep-alive thread pings the agent
 * with the session id (so the agent notices a dead client or worker), and a
 * socket monitor reports when the connection to the agent drops (so a wait on
 * a dead agent fails with PM_ERR_UNREACHABLE instead of hanging).
 *
 * One connection is one session (proto/PROTOCOL.md, "Losing the agent"): the
 * DEALER does not reconnect by itself for S_NO_RECONNECT_MS (the monitor
 * closes it long before), so it cannot carry on, unnoticed, with a restarted
 * agent that knows nothing of its session. (Not -1, "never": with that,
 * libzmq drops replies that had arrived but were not yet read when the
 * connection went, such as the AGENT_SHUTTING_DOWN of a stopping agent.) When the monitor says the connection dropped, the socket and the
 * pinger go, every request in flight gets an UNREACHABLE result (the set of
 * outstanding request ids is kept for that), and the next send connects a new
 * socket and says hello again. Workers do that from pm_worker_next, with
 * backoff, and register again.
 */
#include "clock.h"
#include "pmesh.h"
#include "stats.h"
#include "steptrace.h"
#include "wire.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* How long a blocking call (other than await) waits for its reply before it
 * calls the agent unreachable. Generous: a loaded agent on a busy node is
 * slow, not gone. */
#define S_CALL_TIMEOUT_MS 30000
/* How long connect waits for the hello reply (and a reconnecting worker for
 * its registration). */
#define S_CONNECT_TIMEOUT_MS 3000
/* After the connection drops, how long replies already sent by the agent
 * (its last words) may still take to come out of ZeroMQ's I/O thread. */
#define S_LAST_WORDS_MS 300
/* ZMQ_RECONNECT_IVL of the request socket: "not for 10 minutes", i.e.
 * never in practice (the monitor closes the socket within milliseconds of a
 * drop); not -1, which makes libzmq drop replies not yet read. */
#define S_NO_RECONNECT_MS 600000
/* Keep-alive period: a quarter of the agent's client_timeout (three pings
 * may be late before a live session expires), at most S_PING_MAX_MS (the
 * period before agents said their timeout: nothing changes on the default
 * 2 s) and at least S_PING_MIN_MS. proto/PROTOCOL.md says more. */
#define S_PING_MAX_MS 400
#define S_PING_MIN_MS 10
/* A worker's reconnection backoff: first try at once, then from this
 * doubling to the cap, each delay drawn from [d/2, d]. */
#define S_BACKOFF_MIN_MS 50
#define S_BACKOFF_MAX_MS 2000
#define S_OP_BITS 4

typedef struct s_queue {
    void **items;
    size_t head, n, cap;
} s_queue_t;

/* Request ids awaiting a reply: open addressing, 0 free, S_GONE deleted. */
#define S_GONE UINT64_MAX
typedef struct s_idset {
    uint64_t *slots;
    size_t cap, n, used; /* used: live + deleted */
} s_idset_t;

/* Continuations the agent handed on with an invocation this worker holds
 * (chain forwarding, proto/PROTOCOL.md 7a): when the invocation resolves,
 * each whose source is its target and whose function this worker serves
 * is started here at once, on the result, without waiting for the agent. */
typedef struct s_chain {
    struct s_chain *next;
    char *inv_id;
    pm_wire_step_t *steps; /* one block (pm_wire_steps_copy) */
    size_t n;
} s_chain_t;

struct pm_client {
    void *ctx;
    void *sock;    /* NULL while disconnected */
    void *monitor; /* PAIR reading sock's monitor events */
    int64_t monitor_read_us; /* when the monitor was last read (s_dropped) */
    char path[4096];
    char endpoint[4200];
    char node[128];
    char mint[PM_WIRE_MAX_NAME];
    uint64_t session; /* 0 while disconnected (or saying hello) */
    uint64_t max_value; /* the agent's limit (0: unknown) */
    uint64_t client_timeout_ms; /* the agent's (0: not said) */
    uint64_t next_req;
    uint64_t next_mint;
    unsigned conn_no; /* connections so far: names their inproc endpoints */
    char last_error[512];
    s_queue_t results;     /* pm_result_t * */
    s_queue_t invocations; /* pm_invocation_t * (workers) */
    s_idset_t outstanding; /* req ids sent and not yet answered */
    pthread_t pinger;
    int pinger_running;
    void *pinger_ctl; /* inproc PAIR: any message stops the pinger */
    s_chain_t *chains; /* workers: continuations handed on (few: one per held invocation) */
    /* workers: what to register again after a reconnect */
    char **functions;
    size_t function_count;
    uint32_t concurrency;
    int64_t retry_at;   /* monotonic ms of the next reconnection attempt */
    int64_t backoff_ms; /* the last delay's base (0: none yet) */
    unsigned seed;
    int connecting; /* inside s_connect: a lost connection is not retried */
};

struct pm_worker {
    pm_client_t *client;
};


/* ---- request ids awaiting replies ----------------------------------------- */

static size_t
s_hash(uint64_t v)
{
    v ^= v >> 33;
    v *= 0xff51afd7ed558ccdULL;
    v ^= v >> 33;
    return (size_t) v;
}

static int s_idset_add(s_idset_t *set, uint64_t id);

static int
s_idset_grow(s_idset_t *set)
{
    s_idset_t bigger = {0};
    bigger.cap = 64; /* a power of two: slots are found by masking */
    while (bigger.cap < set->n * 4)
        bigger.cap *= 2;
    bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
    if (!bigger.slots)
        return -1;
    for (size_t i = 0; i < set->cap; i++)
        if (set->slots[i] && set->slots[i] != S_GONE)
            s_idset_add(&bigger, set->slots[i]);
    free(set->slots);
    *set = bigger;
    return 0;
}

static int
s_idset_add(s_idset_t *set, uint64_t id)
{
    if ((set->used + 1) * 2 > set->cap && s_idset_grow(set) != 0)
        return -1;
    size_t i = s_hash(id) & (set->cap - 1);
    while (set->slots[i] && set->slots[i] != S_GONE)
        i = (i + 1) & (set->cap - 1);
    if (!set->slots[i])
        set->used++;
    set->slots[i] = id;
    set->n++;
    return 0;
}

/* Removes id; 1 if it was there. */
static int
s_idset_del(s_idset_t *set, uint64_t id)
{
    if (!set->n)
        return 0;
    size_t i = s_hash(id) & (set->cap - 1);
    while (set->slots[i]) {
        if (set->slots[i] == id) {
            set->slots[i] = S_GONE;
            set->n--;
            return 1;
        }
        i = (i + 1) & (set->cap - 1);
    }
    return 0;
}

static void
s_idset_clear(s_idset_t *set)
{
    if (set->slots)
        memset(set->slots, 0, set->cap * sizeof *set->slots);
    set->n = set->used = 0;
}

/* ---- small things --------------------------------------------------------- */

static int
s_push(s_queue_t *q, void *item)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        void **items = malloc(cap * sizeof *items);
        if (!items)
            return -1;
        for (size_t i = 0; i < q->n; i++)
            items[i] = q->items[(q->head + i) % q->cap];
        free(q->items);
        q->items = items;
        q->cap = cap;
        q->head = 0;
    }
    q->items[(q->head + q->n++) % q->cap] = item;
    return 0;
}

static void *
s_pop(s_queue_t *q)
{
    if (!q->n)
        return NULL;
    void *item = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->n--;
    return item;
}

static char *
s_dup(const char *s)
{
    return strdup(s ? s : "");
}

static void
s_set_error(pm_client_t *self, int err, const char *message)
{
    snprintf(self->last_error, sizeof self->last_error, "%s",
             message && *message ? message : pm_strerror(err));
}

const char *
pm_client_last_error(pm_client_t *self)
{
    return self->last_error;
}

const char *
pm_client_node(pm_client_t *self)
{
    return self->node;
}

/* ---- owned copies of wire data -------------------------------------------- */

void
pm_promise_destroy(pm_promise_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_promise_t *p = *self_p;
    free(p->id);
    free(p->value);
    free(p->reason);
    free(p->idempotency_key);
    for (size_t i = 0; i < p->label_count; i++) {
        free((char *) p->labels[i].key);
        free((char *) p->labels[i].value);
    }
    free(p->labels);
    free(p);
    *self_p = NULL;
}

static pm_promise_t *
s_promise_copy(const pm_wire_promise_t *w)
{
    pm_promise_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->id = s_dup(w->id);
    p->state = (pm_state_t) w->state;
    p->value = malloc(w->value_len + 1);
    if (p->value) {
        if (w->value_len)
            memcpy(p->value, w->value, w->value_len);
        p->value[w->value_len] = 0;
    }
    p->value_len = w->value_len;
    p->reason = s_dup(w->reason);
    p->created_ms = w->created_ms;
    p->settled_ms = w->settled_ms;
    p->timeout_at_ms = w->timeout_at_ms;
    p->heartbeat_ms = w->heartbeat_ms;
    p->heartbeat_at_ms = w->heartbeat_at_ms;
    p->idempotency_key = s_dup(w->key);
    if (w->label_count) {
        p->labels = calloc(w->label_count, sizeof *p->labels);
        if (p->labels) {
            for (size_t i = 0; i < w->label_count; i++) {
                p->labels[i].key = s_dup(w->labels[i].key);
                p->labels[i].value = s_dup(w->labels[i].value);
            }
            p->label_count = w->label_count;
        }
    }
    if (!p->id || !p->value || !p->reason || !p->idempotency_key ||
        (w->label_count && !p->labels)) {
        pm_promise_destroy(&p);
        return NULL;
    }
    return p;
}

void
pm_promise_list_destroy(pm_promise_list_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_promise_list_t *l = *self_p;
    for (size_t i = 0; i < l->count; i++)
        pm_promise_destroy(&l->items[i]);
    free(l->items);
    free(l->cursor);
    free(l);
    *self_p = NULL;
}

void
pm_result_destroy(pm_result_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_result_t *r = *self_p;
    free(r->message);
    free(r->id);
    free(r->json);
    pm_promise_destroy(&r->promise);
    pm_promise_list_destroy(&r->list);
    free(r);
    *self_p = NULL;
}

void
pm_invocation_destroy(pm_invocation_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_invocation_t *inv = *self_p;
    free(inv->invocation_id);
    free(inv->function);
    free(inv->input);
    free(inv->target_id);
    free(inv);
    *self_p = NULL;
}

/* Queues an invocation for pm_worker_next (on the current session); NULL
 * (nothing queued) when out of memory. */
static pm_invocation_t *
s_invocation_queue(pm_client_t *self, const char *id, const char *function, const char *target,
                   const void *input, size_t len, uint32_t attempt)
{
    pm_invocation_t *inv = calloc(1, sizeof *inv);
    if (!inv)
        return NULL;
    inv->invocation_id = s_dup(id);
    inv->function = s_dup(function);
    inv->target_id = s_dup(target);
    inv->input = malloc(len + 1);
    if (inv->input) {
        if (len)
            memcpy(inv->input, input, len);
        inv->input[len] = 0;
    }
    inv->input_len = len;
    inv->attempt = attempt;
    inv->session = self->session;
    if (!inv->invocation_id || !inv->function || !inv->target_id || !inv->input ||
        s_push(&self->invocations, inv) != 0) {
        pm_invocation_destroy(&inv);
        return NULL;
    }
    return inv;
}

static void
s_chain_free(s_chain_t *ch)
{
    free(ch->inv_id);
    free(ch->steps);
    free(ch);
}

static void
s_chains_clear(pm_client_t *self)
{
    while (self->chains) {
        s_chain_t *ch = self->chains;
        self->chains = ch->next;
        s_chain_free(ch);
    }
}

/* Keeps the continuations handed on with invocation inv_id. */
static void
s_chain_add(pm_client_t *self, const char *inv_id, const pm_wire_step_t *steps, size_t n)
{
    s_chain_t *ch = calloc(1, sizeof *ch);
    if (!ch)
        return; /* not started here then: the agent starts them */
    ch->inv_id = strdup(inv_id);
    ch->steps = pm_wire_steps_copy(steps, n);
    ch->n = n;
    if (!ch->inv_id || !ch->steps) {
        s_chain_free(ch);
        return;
    }
    ch->next = self->chains;
    self->chains = ch;
}

/* Takes the continuations handed on with invocation inv_id off the list
 * (NULL: none). */
static s_chain_t *
s_chain_take(pm_client_t *self, const char *inv_id)
{
    for (s_chain_t **at = &self->chains; *at; at = &(*at)->next)
        if (strcmp((*at)->inv_id, inv_id) == 0) {
            s_chain_t *ch = *at;
            *at = ch->next;
            return ch;
        }
    return NULL;
}

static int
s_serves(const pm_client_t *self, const char *function)
{
    for (size_t i = 0; i < self->function_count; i++)
        if (strcmp(self->functions[i], function) == 0)
            return 1;
    return 0;
}

/* inv resolved with value: queues, for pm_worker_next, each continuation
 * handed on with it that this worker serves and whose source is inv's
 * target (under the placer's invocation id, with the steps after it), and
 * fills started with them (the Result says so, and the agent takes them as
 * held by this worker). Returns how many. */
static size_t
s_chain_start(pm_client_t *self, const pm_invocation_t *inv, const void *value, size_t len,
              pm_wire_step_t *started, size_t cap)
{
    s_chain_t *ch = s_chain_take(self, inv->invocation_id);
    if (!ch)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < ch->n && n < cap; i++) {
        const pm_wire_step_t *st = &ch->steps[i];
        if (strcmp(st->source, inv->target_id) != 0 || !s_serves(self, st->function))
            continue;
        pm_invocation_t *x = s_invocation_queue(self, st->invocation_id, st->function,
                                                st->target_id, value, len, 1);
        if (!x)
            continue;
        if (i + 1 < ch->n)
            s_chain_add(self, st->invocation_id, ch->steps + i + 1, ch->n - i - 1);
        started[n++] = (pm_wire_step_t){.target_id = x->target_id,
                                        .invocation_id = x->invocation_id};
        PM_STEPTRACE_MARK("l_chain", value, len);
    }
    s_chain_free(ch);
    return n;
}

/* ---- sending and receiving ------------------------------------------------ */

static void
s_free_buf(void *data, void *hint)
{
    (void) hint;
    free(data);
}

static int s_connect(pm_client_t *self);

static void
s_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Reads the monitor's pending events; 1 if the connection dropped. */
static int
s_dropped_now(pm_client_t *self)
{
    if (!self->monitor)
        return 0;
    self->monitor_read_us = pm_mono_us();
    int dropped = 0;
    zmq_msg_t ev;
    zmq_msg_init(&ev);
    while (zmq_msg_recv(&ev, self->monitor, ZMQ_DONTWAIT) >= 0) {
        /* Event frames start with the 16-bit event number; the address
         * frames that follow them never start with 0x0200. */
        uint16_t event = 0;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), sizeof event);
            if (event == ZMQ_EVENT_DISCONNECTED)
                dropped = 1;
        }
    }
    zmq_msg_close(&ev);
    return dropped;
}

/* The same at most once a millisecond: every send and every minted id asks,
 * and an empty read of the monitor costs ZeroMQ a poll(2) and a getpid(2)
 * (a fifth of a pipelined client's throughput). A drop noticed up to 1 ms
 * late costs nothing more: a request sent into the lost connection gets
 * UNREACHABLE (outcome unknown) like every other one in flight, when the
 * receive (which polls the monitor) sees the drop. */
static int
s_dropped(pm_client_t *self)
{
    if (self->monitor && pm_mono_us() - self->monitor_read_us < 1000)
        return 0;
    return s_dropped_now(self);
}

/* Stops the pinger and closes the connection's sockets: the session is over
 * as far as this client is concerned. */
static void
s_conn_close(pm_client_t *self)
{
    if (self->pinger_running) {
        zmq_send(self->pinger_ctl, "", 0, 0);
        pthread_join(self->pinger, NULL);
        self->pinger_running = 0;
    }
    if (self->pinger_ctl) {
        zmq_close(self->pinger_ctl);
        self->pinger_ctl = NULL;
    }
    if (self->monitor) {
        zmq_socket_monitor(self->sock, NULL, 0);
        zmq_close(self->monitor);
        self->monitor = NULL;
    }
    if (self->sock) {
        zmq_close(self->sock);
        self->sock = NULL;
    }
    self->session = 0;
}

/* The connection dropped: every request in flight is answered UNREACHABLE,
 * invocations of the ended session are dropped (the agent hands them out
 * again), and a worker may try to reconnect at once. */
static void
s_lost(pm_client_t *self, const char *why)
{
    s_conn_close(self);
    for (size_t i = 0; i < self->outstanding.cap; i++) {
        uint64_t id = self->outstanding.slots[i];
        if (!id || id == S_GONE)
            continue;
        pm_result_t *r = calloc(1, sizeof *r);
        if (!r)
            continue;
        r->req_id = id;
        r->message = s_dup(why);
        r->op = (pm_op_t) (id & ((1u << S_OP_BITS) - 1));
        r->err = PM_ERR_UNREACHABLE;
        if (!r->message || s_push(&self->results, r) != 0)
            pm_result_destroy(&r);
    }
    s_idset_clear(&self->outstanding);
    void *inv;
    while ((inv = s_pop(&self->invocations)))
        pm_invocation_destroy((pm_invocation_t **) &inv);
    s_chains_clear(self);
    s_set_error(self, PM_ERR_UNREACHABLE, why);
    if (!self->connecting) { /* (a connection lost while connecting backs off) */
        self->retry_at = pm_mono_ms();
        self->backoff_ms = 0;
    }
}

/* Sends on the current connection (there must be one). */
static int
s_send_now(pm_client_t *self, pm_msg_t *m, pm_op_t op, uint64_t *req_id_p)
{
    /* A value over the agent's limit is refused here: sent, it would cost a
     * frame the agent must read only to refuse it. */
    if (self->max_value && (m->value_len > self->max_value ||
                            (m->reason && strlen(m->reason) > self->max_value))) {
        s_set_error(self, PM_ERR_VALUE_TOO_LARGE, "value is larger than the agent accepts");
        return PM_ERR_VALUE_TOO_LARGE;
    }
    m->req_id = (++self->next_req << S_OP_BITS) | (uint64_t) op;
    size_t len;
    uint8_t *buf = pm_wire_encode(m, &len);
    if (!buf)
        return PM_ERR_INTERNAL;
    zmq_msg_t msg;
    zmq_msg_init_data(&msg, buf, len, s_free_buf, NULL);
    /* Never blocks: without reconnection, a DEALER whose connection is
     * gone has no pipe left and would wait forever. */
    if (zmq_msg_send(&msg, self->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        s_lost(self, "connection to the agent was lost");
        return PM_ERR_UNREACHABLE;
    }
    if (m->type != PM_MSG_PING && m->type != PM_MSG_BYE)
        s_idset_add(&self->outstanding, m->req_id); /* (untracked if out of memory) */
    if (req_id_p)
        *req_id_p = m->req_id;
    return PM_OK;
}

/* Sends, connecting first if the connection was lost. */
static int
s_send(pm_client_t *self, pm_msg_t *m, pm_op_t op, uint64_t *req_id_p)
{
    if (self->sock && s_dropped(self))
        s_lost(self, "connection to the agent was lost");
    if (!self->sock) {
        if (self->connecting) {
            s_set_error(self, PM_ERR_UNREACHABLE, "connection to the agent was lost");
            return PM_ERR_UNREACHABLE;
        }
        int err = s_connect(self);
        if (err)
            return err;
    }
    return s_send_now(self, m, op, req_id_p);
}

/* Turns a decoded message into a queued result or invocation. */
static void
s_accept(pm_client_t *self, const pm_msg_t *m)
{
    if (m->type == PM_MSG_INVOKE) {
        PM_STEPTRACE_MARK("l_invoke", m->value, m->value_len);
        pm_invocation_t *inv = s_invocation_queue(self, m->invocation_id, m->function,
                                                  m->target_id, m->value, m->value_len,
                                                  m->attempt);
        if (!inv)
            return;
        if (m->step_count && self->functions)
            s_chain_add(self, inv->invocation_id, m->steps, m->step_count);
        return;
    }
    if (m->type != PM_MSG_REPLY)
        return; /* nothing else is meant for clients */
    pm_result_t *r = calloc(1, sizeof *r);
    if (!r)
        return;
    r->req_id = m->req_id;
    r->op = (pm_op_t) (m->req_id & ((1u << S_OP_BITS) - 1));
    r->err = m->err;
    r->message = s_dup(m->message);
    r->id = m->id ? s_dup(m->id) : NULL;
    if (m->promise)
        r->promise = s_promise_copy(m->promise);
    if (!m->err && r->op == PM_OP_STATUS)
        r->json = s_dup(m->json);
    if (!m->err && r->op == PM_OP_LIST) {
        pm_promise_list_t *l = calloc(1, sizeof *l);
        if (l) {
            l->items = calloc(m->promise_count ? m->promise_count : 1, sizeof *l->items);
            l->cursor = s_dup(m->cursor);
            for (size_t i = 0; l->items && i < m->promise_count; i++)
                if ((l->items[l->count] = s_promise_copy(&m->promises[i])))
                    l->count++;
            if (!l->items || !l->cursor || l->count != m->promise_count)
                pm_promise_list_destroy(&l);
        }
        r->list = l;
        if (!l) {
            r->err = PM_ERR_INTERNAL;
            free(r->message);
            r->message = s_dup(pm_strerror(PM_ERR_INTERNAL));
        }
    }
    if (s_push(&self->results, r) != 0)
        pm_result_destroy(&r);
}

/* Receives what is there (waiting up to timeout_ms for the first message;
 * < 0 forever). Returns PM_OK when something was accepted, PM_ERR_WAIT_TIMEOUT
 * if nothing came, PM_ERR_UNREACHABLE if there is no connection (any more:
 * then every request in flight has its UNREACHABLE result queued). Replies
 * that a caller wants raw (list, hello, status) go to *raw when raw_req
 * matches. */
/* One envelope from the agent (a frame, or one of a batch's): accepted, or
 * kept in *raw when it is the raw reply wanted (returns 1; the caller
 * releases it). A batch's envelopes each go through here in order; a batch
 * inside a batch is dropped. */
static int
s_read_one(pm_client_t *self, const void *buf, size_t len, int in_batch, uint64_t raw_req,
           pm_msg_t *raw, int *got_raw)
{
    pm_msg_t m;
    int found = 0;
    if (pm_wire_decode(buf, len, &m) == PM_OK) {
        if (m.type == PM_MSG_BATCH && !in_batch) {
            for (size_t i = 0; i < m.record_count; i++)
                found |= s_read_one(self, m.records[i].data, m.records[i].len, 1, raw_req, raw,
                                    got_raw);
        } else if (m.type == PM_MSG_REPLY && raw && !*got_raw && m.req_id == raw_req) {
            s_idset_del(&self->outstanding, m.req_id);
            *raw = m; /* the caller releases it; protobuf-c copied what it decoded */
            *got_raw = 1;
            return 1;
        } else if (m.type != PM_MSG_BATCH) {
            if (m.type == PM_MSG_REPLY)
                s_idset_del(&self->outstanding, m.req_id);
            s_accept(self, &m);
        }
    }
    pm_wire_release(&m);
    return found;
}

/* Reads every message already on the socket. Returns 1 when the raw reply
 * (raw_req) was among them (it is in *raw then), else 0; *got is set when
 * anything was read. */
static int
s_read_all(pm_client_t *self, uint64_t raw_req, pm_msg_t *raw, int *got_raw, int *got)
{
    for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, self->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return 0;
        }
        int found = s_read_one(self, zmq_msg_data(&msg), zmq_msg_size(&msg), 0, raw_req, raw,
                               got_raw);
        zmq_msg_close(&msg);
        *got = 1;
        if (found)
            return 1;
    }
}

/* Receives what is there (waiting up to timeout_ms for the first message;
 * < 0 forever). Returns PM_OK when something was accepted, PM_ERR_WAIT_TIMEOUT
 * if nothing came, PM_ERR_UNREACHABLE if there is no connection (any more:
 * then every request in flight has its UNREACHABLE result queued). Replies
 * that a caller wants raw (list, hello, status) go to *raw when raw_req
 * matches. */
static int
s_pump(pm_client_t *self, int64_t timeout_ms, uint64_t raw_req, pm_msg_t *raw, int *got_raw)
{
    if (!self->sock) {
        s_set_error(self, PM_ERR_UNREACHABLE, "not connected to the agent");
        return PM_ERR_UNREACHABLE;
    }
    zmq_pollitem_t items[2] = {{self->sock, 0, ZMQ_POLLIN, 0}, {self->monitor, 0, ZMQ_POLLIN, 0}};
    int rc = zmq_poll(items, self->monitor ? 2 : 1, (long) timeout_ms);
    if (rc < 0) {
        if (errno == EINTR)
            return PM_ERR_WAIT_TIMEOUT;
        s_lost(self, zmq_strerror(errno));
        return PM_ERR_UNREACHABLE;
    }
    /* Replies that came before the drop are good: read them first. */
    int dropped = self->monitor && (items[1].revents & ZMQ_POLLIN) && s_dropped_now(self);
    int got = 0;
    int found = (items[0].revents & ZMQ_POLLIN) && s_read_all(self, raw_req, raw, got_raw, &got);
    /* The agent's last words (AGENT_SHUTTING_DOWN to every waiter as it
     * stops) may still be in ZeroMQ's I/O thread when the drop is seen:
     * give them S_LAST_WORDS_MS to arrive before the rest fail. */
    for (int64_t until = pm_mono_ms() + S_LAST_WORDS_MS; dropped && !found;) {
        int64_t left = until - pm_mono_ms();
        zmq_pollitem_t item = {self->sock, 0, ZMQ_POLLIN, 0};
        if (left <= 0 || zmq_poll(&item, 1, (long) left) <= 0)
            break;
        found = s_read_all(self, raw_req, raw, got_raw, &got);
    }
    if (dropped) {
        s_lost(self, "connection to the agent was lost");
        return found ? PM_OK : PM_ERR_UNREACHABLE;
    }
    return found || got ? PM_OK : PM_ERR_WAIT_TIMEOUT;
}

/* Takes the queued result for req_id, if there. */
static pm_result_t *
s_take(pm_client_t *self, uint64_t req_id)
{
    s_queue_t *q = &self->results;
    for (size_t i = 0; i < q->n; i++) {
        size_t at = (q->head + i) % q->cap;
        pm_result_t *r = q->items[at];
        if (r->req_id != req_id)
            continue;
        for (size_t j = i; j + 1 < q->n; j++)
            q->items[(q->head + j) % q->cap] = q->items[(q->head + j + 1) % q->cap];
        q->n--;
        return r;
    }
    return NULL;
}

/* Gives up on req_id: no reply in time. */
static int
s_give_up(pm_client_t *self, uint64_t req_id)
{
    s_idset_del(&self->outstanding, req_id);
    s_set_error(self, PM_ERR_UNREACHABLE, "no reply from the agent in time");
    return PM_ERR_UNREACHABLE;
}

/* Waits for the reply to req_id. timeout_ms < 0: forever (still failing if
 * the connection drops). */
static int
s_wait(pm_client_t *self, uint64_t req_id, int64_t timeout_ms, pm_result_t **out)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : pm_mono_ms() + timeout_ms;
    for (;;) {
        pm_result_t *r = s_take(self, req_id);
        if (r) {
            *out = r;
            if (r->err)
                s_set_error(self, r->err, r->message);
            return r->err;
        }
        if (!self->sock)
            return PM_ERR_UNREACHABLE;
        int64_t left = deadline == INT64_MAX ? 1000 : deadline - pm_mono_ms();
        if (left <= 0)
            return s_give_up(self, req_id);
        s_pump(self, left > 1000 ? 1000 : left, 0, NULL, NULL);
    }
}

/* Sends m and waits for its reply; frees the result unless out is given. */
static int
s_call(pm_client_t *self, pm_msg_t *m, pm_op_t op, int64_t timeout_ms, pm_result_t **out)
{
    uint64_t req;
    int err = s_send(self, m, op, &req);
    if (err)
        return err;
    pm_result_t *r = NULL;
    err = s_wait(self, req, timeout_ms, &r);
    if (out)
        *out = r;
    else
        pm_result_destroy(&r);
    return err;
}

/* Like s_call, for replies read field by field (hello, list, status): *raw
 * must be released with pm_wire_release when PM_OK. */
static int
s_call_raw(pm_client_t *self, pm_msg_t *m, pm_op_t op, int64_t timeout_ms, pm_msg_t *raw)
{
    uint64_t req;
    int err = s_send(self, m, op, &req);
    if (err)
        return err;
    int64_t deadline = pm_mono_ms() + timeout_ms;
    int got = 0;
    while (!got) {
        if (!self->sock) {
            /* Lost: the UNREACHABLE result queued for it is ours. */
            pm_result_t *r = s_take(self, req);
            pm_result_destroy(&r);
            return PM_ERR_UNREACHABLE;
        }
        int64_t left = deadline - pm_mono_ms();
        if (left <= 0)
            return s_give_up(self, req);
        s_pump(self, left, req, raw, &got);
    }
    if (raw->err) {
        s_set_error(self, raw->err, raw->message);
        err = raw->err;
        pm_wire_release(raw);
    }
    return err;
}

/* ---- keep-alive ----------------------------------------------------------- */

typedef struct s_pinger_args {
    void *ctx;
    char endpoint[4200];
    uint64_t session;
    int period_ms;
    char ctl[80];
} s_pinger_args_t;

static void *
s_pinger(void *arg)
{
    s_pinger_args_t *a = arg;
    void *ctl = zmq_socket(a->ctx, ZMQ_PAIR);
    zmq_connect(ctl, a->ctl);
    void *sock = zmq_socket(a->ctx, ZMQ_DEALER);
    int zero = 0, never = -1;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    /* Never to a restarted agent: its session ids start again at 1, and a
     * stale ping could keep another client's session alive. */
    zmq_setsockopt(sock, ZMQ_RECONNECT_IVL, &never, sizeof never);
    zmq_connect(sock, a->endpoint);
    pm_msg_t m = {.type = PM_MSG_PING, .session = a->session};
    size_t len;
    uint8_t *buf = pm_wire_encode(&m, &len);
    zmq_pollitem_t item = {ctl, 0, ZMQ_POLLIN, 0};
    for (;;) {
        if (buf)
            zmq_send(sock, buf, len, ZMQ_DONTWAIT);
        int rc = zmq_poll(&item, 1, a->period_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc != 0)
            break; /* told to stop, or the context is going */
    }
    free(buf);
    zmq_close(sock);
    zmq_close(ctl);
    free(a);
    return NULL;
}

/* The keep-alive period for the agent's client_timeout (0: not said). */
static int
s_ping_period(uint64_t client_timeout_ms)
{
    uint64_t p = client_timeout_ms ? client_timeout_ms / 4 : S_PING_MAX_MS;
    if (p > S_PING_MAX_MS)
        p = S_PING_MAX_MS;
    if (p < S_PING_MIN_MS)
        p = S_PING_MIN_MS;
    return (int) p;
}

static void
s_pinger_start(pm_client_t *self)
{
    s_pinger_args_t *a = calloc(1, sizeof *a);
    if (!a)
        return;
    a->ctx = self->ctx;
    a->session = self->session;
    a->period_ms = s_ping_period(self->client_timeout_ms);
    snprintf(a->endpoint, sizeof a->endpoint, "%s", self->endpoint);
    snprintf(a->ctl, sizeof a->ctl, "inproc://pm-pinger-%p-%u", (void *) self, self->conn_no);
    self->pinger_ctl = zmq_socket(self->ctx, ZMQ_PAIR);
    zmq_bind(self->pinger_ctl, a->ctl);
    /* The thread takes no signals: they are the application's, and a
     * reconnect starts it from whatever thread and mask the caller has. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&self->pinger, NULL, s_pinger, a) == 0)
        self->pinger_running = 1;
    else
        free(a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- connection ----------------------------------------------------------- */

/* Whether something accepts connections at path: a plain connect(2), so
 * that a dead agent's leftover socket file fails at once rather than after
 * the hello deadline. 0 also when it cannot tell (ZeroMQ will find out). */
static int
s_probe(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return 0;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int rc = connect(fd, (struct sockaddr *) &sa, sizeof sa);
    int e = errno;
    close(fd);
    return rc == 0 || (e != ECONNREFUSED && e != ENOENT) ? 0 : -1;
}

/* Connects a new socket, says hello (a new session) and, for a worker,
 * registers its functions. */
static int
s_connect(pm_client_t *self)
{
    struct stat st;
    if (stat(self->path, &st) < 0 || !S_ISSOCK(st.st_mode) || s_probe(self->path) != 0) {
        char why[480];
        snprintf(why, sizeof why, "no agent listens at %.440s", self->path);
        s_set_error(self, PM_ERR_UNREACHABLE, why);
        return PM_ERR_UNREACHABLE;
    }
    self->conn_no++;
    self->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!self->sock)
        return PM_ERR_INTERNAL;
    int zero = 0, never = S_NO_RECONNECT_MS, hwm = 1000000;
    zmq_setsockopt(self->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL, &never, sizeof never);
    char mon[80];
    snprintf(mon, sizeof mon, "inproc://pm-monitor-%p-%u", (void *) self, self->conn_no);
    if (zmq_socket_monitor(self->sock, mon, ZMQ_EVENT_DISCONNECTED) == 0) {
        self->monitor = zmq_socket(self->ctx, ZMQ_PAIR);
        if (self->monitor && zmq_connect(self->monitor, mon) != 0) {
            zmq_close(self->monitor);
            self->monitor = NULL;
        }
    }
    if (zmq_connect(self->sock, self->endpoint) < 0) {
        s_set_error(self, PM_ERR_UNREACHABLE, zmq_strerror(errno));
        s_conn_close(self);
        return PM_ERR_UNREACHABLE;
    }
    self->connecting = 1;
    pm_msg_t hello = {.type = PM_MSG_HELLO, .client_name = "libpmesh", .batches = 1};
    pm_msg_t r;
    int err = s_call_raw(self, &hello, 0, S_CONNECT_TIMEOUT_MS, &r);
    if (!err) {
        snprintf(self->node, sizeof self->node, "%s", r.node);
        snprintf(self->mint, sizeof self->mint, "%s", r.mint_prefix);
        self->max_value = r.max_value;
        self->client_timeout_ms = r.client_timeout_ms;
        uint64_t session = r.session;
        pm_wire_release(&r);
        self->session = session;
        s_pinger_start(self);
        if (self->functions) {
            pm_msg_t m = {.type = PM_MSG_REGISTER,
                          .functions = (const char *const *) self->functions,
                          .function_count = self->function_count,
                          .concurrency = self->concurrency};
            err = s_call(self, &m, 0, S_CONNECT_TIMEOUT_MS, NULL);
        }
    }
    self->connecting = 0;
    if (err) {
        s_conn_close(self);
        s_idset_clear(&self->outstanding);
        return err == PM_ERR_INTERNAL || err == PM_ERR_BAD_REQUEST ? err : PM_ERR_UNREACHABLE;
    }
    return PM_OK;
}

static pm_client_t *
s_client_new(const char *socket_path)
{
    if (!socket_path || !*socket_path)
        socket_path = getenv("PMESH_SOCKET");
    if (!socket_path || !*socket_path)
        socket_path = PMESH_DEFAULT_SOCKET;
    pm_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    snprintf(self->path, sizeof self->path, "%s", socket_path);
    snprintf(self->endpoint, sizeof self->endpoint, "ipc://%s", socket_path);
    self->seed = (unsigned) (pm_mono_us() ^ (uint64_t) getpid() ^ (uintptr_t) self);
    self->ctx = zmq_ctx_new();
    if (!self->ctx) {
        free(self);
        return NULL;
    }
    return self;
}

int
pm_client_connect(const char *socket_path, pm_client_t **client_p)
{
    *client_p = NULL;
    pm_client_t *self = s_client_new(socket_path);
    if (!self)
        return PM_ERR_INTERNAL;
    int err = s_connect(self);
    if (err) {
        pm_client_destroy(&self);
        return err;
    }
    *client_p = self;
    return PM_OK;
}

void
pm_client_destroy(pm_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_client_t *self = *self_p;
    if (self->sock && self->session && !s_dropped(self)) {
        pm_msg_t bye = {.type = PM_MSG_BYE};
        if (s_send_now(self, &bye, 0, NULL) == PM_OK) {
            /* Let the bye go out: linger briefly for it alone. */
            int linger = 100;
            zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger);
        }
    }
    s_conn_close(self);
    void *r;
    while ((r = s_pop(&self->results)))
        pm_result_destroy((pm_result_t **) &r);
    while ((r = s_pop(&self->invocations)))
        pm_invocation_destroy((pm_invocation_t **) &r);
    s_chains_clear(self);
    free(self->results.items);
    free(self->invocations.items);
    free(self->outstanding.slots);
    for (size_t i = 0; i < self->function_count; i++)
        free(self->functions[i]);
    free(self->functions);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    free(self);
    *self_p = NULL;
}

uint64_t
pm_client_session(pm_client_t *self)
{
    return self->session;
}

void *
pm_client_socket(pm_client_t *self)
{
    return self->sock;
}

int
pm_client_fd(pm_client_t *self)
{
    int fd = -1;
    size_t len = sizeof fd;
    if (!self->sock || zmq_getsockopt(self->sock, ZMQ_FD, &fd, &len) != 0)
        return -1;
    return fd;
}

/* ---- asynchronous interface ----------------------------------------------- */

/* Connects now if the connection was lost, so that ids are minted under
 * the lease of the session they are sent on. */
static int
s_ready(pm_client_t *self)
{
    if (self->sock && s_dropped(self))
        s_lost(self, "connection to the agent was lost");
    return self->sock ? PM_OK : s_connect(self);
}

static void
s_mint(pm_client_t *self, char *out, size_t cap)
{
    snprintf(out, cap, "%s%llx", self->mint, (unsigned long long) ++self->next_mint);
}

int
pm_send_create(pm_client_t *self, const pm_create_opts_t *opts, char **id_p, uint64_t *req_id_p)
{
    pm_create_opts_t none = {0};
    if (!opts)
        opts = &none;
    char id[PM_WIRE_MAX_NAME + 32] = "";
    int keyed = opts->idempotency_key && *opts->idempotency_key;
    int err = s_ready(self);
    if (err)
        return err;
    if (!keyed)
        s_mint(self, id, sizeof id);
    pm_msg_t m = {.type = PM_MSG_CREATE,
                  .id = keyed ? NULL : id,
                  .timeout_ms = opts->timeout_ms,
                  .heartbeat_ms = opts->heartbeat_ms,
                  .key = opts->idempotency_key,
                  .label_count = opts->label_count,
                  .labels = opts->labels};
    if (opts->timeout_ms < 0 || opts->heartbeat_ms < 0)
        return PM_ERR_BAD_REQUEST;
    err = s_send_now(self, &m, PM_OP_CREATE, req_id_p);
    if (!err && id_p)
        *id_p = keyed ? NULL : strdup(id);
    return err;
}

static int
s_send_settle(pm_client_t *self, pm_op_t op, const char *id, int state, const void *value,
              size_t len, const char *reason, uint64_t *req_id_p)
{
    if (!id)
        return PM_ERR_BAD_REQUEST;
    pm_msg_t m = {.type = PM_MSG_SETTLE,
                  .id = id,
                  .state = state,
                  .value = value,
                  .value_len = value ? len : 0,
                  .reason = reason};
    return s_send(self, &m, op, req_id_p);
}

int
pm_send_resolve(pm_client_t *self, const char *id, const void *value, size_t len,
                uint64_t *req_id_p)
{
    return s_send_settle(self, PM_OP_RESOLVE, id, PM_STATE_RESOLVED, value, len, NULL, req_id_p);
}

int
pm_send_reject(pm_client_t *self, const char *id, const char *reason, uint64_t *req_id_p)
{
    return s_send_settle(self, PM_OP_REJECT, id, PM_STATE_REJECTED, NULL, 0, reason, req_id_p);
}

int
pm_send_cancel(pm_client_t *self, const char *id, uint64_t *req_id_p)
{
    return s_send_settle(self, PM_OP_CANCEL, id, PM_STATE_CANCELED, NULL, 0, NULL, req_id_p);
}

int
pm_send_get(pm_client_t *self, const char *id, uint64_t *req_id_p)
{
    if (!id)
        return PM_ERR_BAD_REQUEST;
    pm_msg_t m = {.type = PM_MSG_GET, .id = id};
    return s_send(self, &m, PM_OP_GET, req_id_p);
}

int
pm_send_await(pm_client_t *self, const char *id, int64_t timeout_ms, uint64_t *req_id_p)
{
    if (!id)
        return PM_ERR_BAD_REQUEST;
    pm_msg_t m = {.type = PM_MSG_AWAIT, .id = id, .timeout_ms = timeout_ms < 0 ? -1 : timeout_ms};
    return s_send(self, &m, PM_OP_AWAIT, req_id_p);
}

int
pm_send_then(pm_client_t *self, const char *id, const char *function, int64_t timeout_ms,
             char **new_id_p, uint64_t *req_id_p)
{
    return pm_send_then_catch(self, id, function, NULL, timeout_ms, new_id_p, req_id_p);
}

int
pm_send_then_catch(pm_client_t *self, const char *id, const char *function,
                   const char *on_reject, int64_t timeout_ms, char **new_id_p,
                   uint64_t *req_id_p)
{
    if (!id || !function || timeout_ms < 0)
        return PM_ERR_BAD_REQUEST;
    /* The new promise lives where `id` lives (that is what pipelining
     * means), so it is minted in the owner's id space: under our lease
     * directly when our agent owns it, else as <owner space>~<our lease><n>,
     * which no other minter can produce. */
    int err = s_ready(self);
    if (err)
        return err;
    char nid[2 * PM_WIRE_MAX_NAME + 32];
    const char *tilde = strchr(id, '~');
    const char *mine = strchr(self->mint, '~');
    size_t olen = tilde ? (size_t) (tilde - id) : 0;
    if (!tilde || !mine || ((size_t) (mine - self->mint) == olen &&
                            strncmp(id, self->mint, olen) == 0))
        s_mint(self, nid, sizeof nid);
    else
        snprintf(nid, sizeof nid, "%.*s~%s%llx", (int) olen, id, self->mint,
                 (unsigned long long) ++self->next_mint);
    pm_msg_t m = {.type = PM_MSG_THEN,
                  .id = id,
                  .function = function,
                  .new_id = nid,
                  .on_reject = on_reject && *on_reject ? on_reject : NULL,
                  .timeout_ms = timeout_ms};
    err = s_send_now(self, &m, PM_OP_THEN, req_id_p);
    if (!err && new_id_p)
        *new_id_p = strdup(nid);
    return err;
}

int
pm_send_combine(pm_client_t *self, int kind, const char *const *ids, size_t n,
                int64_t timeout_ms, char **new_id_p, uint64_t *req_id_p)
{
    if (!ids || !n || timeout_ms < 0 || kind < PM_COMBINE_ALL || kind > PM_COMBINE_ALL_SETTLED)
        return PM_ERR_BAD_REQUEST;
    for (size_t i = 0; i < n; i++)
        if (!ids[i] || !*ids[i] || strlen(ids[i]) > PM_WIRE_MAX_NAME)
            return PM_ERR_BAD_REQUEST;
    /* The combinator lives with our agent: minted under our lease, so it
     * can be awaited, chained or combined before the reply arrives. */
    int err = s_ready(self);
    if (err)
        return err;
    char nid[PM_WIRE_MAX_NAME + 32];
    s_mint(self, nid, sizeof nid);
    pm_msg_t m = {.type = PM_MSG_COMBINE,
                  .combinator = kind,
                  .id_count = n,
                  .ids = ids,
                  .new_id = nid,
                  .timeout_ms = timeout_ms};
    err = s_send_now(self, &m, PM_OP_COMBINE, req_id_p);
    if (!err && new_id_p)
        *new_id_p = strdup(nid);
    return err;
}

int
pm_send_heartbeat(pm_client_t *self, const char *id, uint64_t *req_id_p)
{
    if (!id)
        return PM_ERR_BAD_REQUEST;
    pm_msg_t m = {.type = PM_MSG_HEARTBEAT, .id = id};
    return s_send(self, &m, PM_OP_HEARTBEAT, req_id_p);
}

/* A list request for opts; label must outlive the message. */
static pm_msg_t
s_list_msg(const pm_list_opts_t *opts, pm_label_t *label)
{
    label->key = opts->label_key;
    label->value = opts->label_value ? opts->label_value : "";
    return (pm_msg_t){.type = PM_MSG_LIST,
                      .state = opts->state,
                      .prefix = opts->prefix,
                      .limit = opts->limit,
                      .cursor = opts->cursor,
                      .label_count = opts->label_key && *opts->label_key ? 1 : 0,
                      .labels = label};
}

int
pm_send_list(pm_client_t *self, const pm_list_opts_t *opts, uint64_t *req_id_p)
{
    pm_list_opts_t none = {0};
    pm_label_t label;
    pm_msg_t m = s_list_msg(opts ? opts : &none, &label);
    return s_send(self, &m, PM_OP_LIST, req_id_p);
}

int
pm_send_status(pm_client_t *self, uint64_t *req_id_p)
{
    pm_msg_t m = {.type = PM_MSG_STATUS};
    return s_send(self, &m, PM_OP_STATUS, req_id_p);
}

int
pm_recv(pm_client_t *self, int timeout_ms, pm_result_t **result_p)
{
    *result_p = NULL;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : pm_mono_ms() + timeout_ms;
    for (;;) {
        pm_result_t *r = s_pop(&self->results);
        if (r) {
            *result_p = r;
            return PM_OK;
        }
        if (self->sock && s_dropped(self)) {
            s_lost(self, "connection to the agent was lost");
            continue; /* the requests in flight have their results now */
        }
        if (!self->sock) {
            s_set_error(self, PM_ERR_UNREACHABLE, "not connected to the agent");
            return PM_ERR_UNREACHABLE;
        }
        int64_t left = deadline == INT64_MAX ? 1000 : deadline - pm_mono_ms();
        if (left < 0)
            return PM_ERR_WAIT_TIMEOUT;
        int rc = s_pump(self, left > 1000 ? 1000 : left, 0, NULL, NULL);
        if (rc == PM_ERR_WAIT_TIMEOUT && deadline != INT64_MAX && pm_mono_ms() >= deadline &&
            !self->results.n)
            return PM_ERR_WAIT_TIMEOUT;
    }
}

/* ---- blocking calls ------------------------------------------------------- */

int
pm_create(pm_client_t *self, const pm_create_opts_t *opts, char **id_p, int *created_p)
{
    *id_p = NULL;
    pm_create_opts_t none = {0};
    if (!opts)
        opts = &none;
    if (opts->timeout_ms < 0 || opts->heartbeat_ms < 0)
        return PM_ERR_BAD_REQUEST;
    /* The agent mints the id: a blocking call waits for the reply anyway. */
    pm_msg_t m = {.type = PM_MSG_CREATE,
                  .timeout_ms = opts->timeout_ms,
                  .heartbeat_ms = opts->heartbeat_ms,
                  .key = opts->idempotency_key,
                  .label_count = opts->label_count,
                  .labels = opts->labels,
                  .want_token = opts->token_p != NULL,
                  .token_ttl_ms = opts->token_ttl_ms};
    if (opts->token_p)
        *opts->token_p = NULL;
    pm_msg_t r;
    int err = s_call_raw(self, &m, PM_OP_CREATE, S_CALL_TIMEOUT_MS, &r);
    if (err)
        return err;
    *id_p = s_dup(r.id);
    if (opts->token_p && r.token)
        *opts->token_p = strdup(r.token);
    if (created_p)
        *created_p = r.created;
    pm_wire_release(&r);
    return *id_p ? PM_OK : PM_ERR_INTERNAL;
}

int
pm_resolve(pm_client_t *self, const char *id, const void *value, size_t len)
{
    pm_msg_t m = {.type = PM_MSG_SETTLE, .id = id, .state = PM_STATE_RESOLVED,
                  .value = value, .value_len = value ? len : 0};
    return id ? s_call(self, &m, PM_OP_RESOLVE, S_CALL_TIMEOUT_MS, NULL) : PM_ERR_BAD_REQUEST;
}

int
pm_reject(pm_client_t *self, const char *id, const char *reason)
{
    pm_msg_t m = {.type = PM_MSG_SETTLE, .id = id, .state = PM_STATE_REJECTED, .reason = reason};
    return id ? s_call(self, &m, PM_OP_REJECT, S_CALL_TIMEOUT_MS, NULL) : PM_ERR_BAD_REQUEST;
}

int
pm_cancel(pm_client_t *self, const char *id)
{
    pm_msg_t m = {.type = PM_MSG_SETTLE, .id = id, .state = PM_STATE_CANCELED};
    return id ? s_call(self, &m, PM_OP_CANCEL, S_CALL_TIMEOUT_MS, NULL) : PM_ERR_BAD_REQUEST;
}

int
pm_heartbeat(pm_client_t *self, const char *id)
{
    pm_msg_t m = {.type = PM_MSG_HEARTBEAT, .id = id};
    return id ? s_call(self, &m, PM_OP_HEARTBEAT, S_CALL_TIMEOUT_MS, NULL) : PM_ERR_BAD_REQUEST;
}

static int
s_promise_call(pm_client_t *self, pm_msg_t *m, pm_op_t op, int64_t timeout_ms,
               pm_promise_t **promise_p)
{
    *promise_p = NULL;
    pm_result_t *r = NULL;
    int err = s_call(self, m, op, timeout_ms, &r);
    if (!err) {
        if (r->promise) {
            *promise_p = r->promise;
            r->promise = NULL;
        } else {
            err = PM_ERR_INTERNAL;
        }
    }
    pm_result_destroy(&r);
    return err;
}

int
pm_get(pm_client_t *self, const char *id, pm_promise_t **promise_p)
{
    pm_msg_t m = {.type = PM_MSG_GET, .id = id};
    if (!id)
        return PM_ERR_BAD_REQUEST;
    return s_promise_call(self, &m, PM_OP_GET, S_CALL_TIMEOUT_MS, promise_p);
}

int
pm_await(pm_client_t *self, const char *id, int64_t timeout_ms, pm_promise_t **promise_p)
{
    if (!id)
        return PM_ERR_BAD_REQUEST;
    pm_msg_t m = {.type = PM_MSG_AWAIT, .id = id, .timeout_ms = timeout_ms < 0 ? -1 : timeout_ms};
    /* The agent ends the wait itself; our own limit only guards against a
     * vanished agent, so it is the wait plus the ordinary call timeout. */
    int64_t limit = timeout_ms < 0 ? -1 : timeout_ms + S_CALL_TIMEOUT_MS;
    return s_promise_call(self, &m, PM_OP_AWAIT, limit, promise_p);
}

int
pm_then(pm_client_t *self, const char *id, const char *function, int64_t timeout_ms,
        char **new_id_p)
{
    return pm_then_catch(self, id, function, NULL, timeout_ms, new_id_p);
}

/* A request sent with pm_send_*, whose new id (nid, minted here) is handed
 * back once the agent accepted it. */
static int
s_new_id_call(pm_client_t *self, int err, uint64_t req, char *nid, char **new_id_p)
{
    *new_id_p = NULL;
    if (err)
        return err;
    pm_result_t *r = NULL;
    err = s_wait(self, req, S_CALL_TIMEOUT_MS, &r);
    pm_result_destroy(&r);
    if (err)
        free(nid);
    else
        *new_id_p = nid;
    return err;
}

int
pm_combine(pm_client_t *self, int kind, const char *const *ids, size_t n, int64_t timeout_ms,
           char **new_id_p)
{
    uint64_t req = 0;
    char *nid = NULL;
    int err = pm_send_combine(self, kind, ids, n, timeout_ms, &nid, &req);
    return s_new_id_call(self, err, req, nid, new_id_p);
}

int
pm_then_catch(pm_client_t *self, const char *id, const char *function, const char *on_reject,
              int64_t timeout_ms, char **new_id_p)
{
    uint64_t req = 0;
    char *nid = NULL;
    int err = pm_send_then_catch(self, id, function, on_reject, timeout_ms, &nid, &req);
    return s_new_id_call(self, err, req, nid, new_id_p);
}

int
pm_list(pm_client_t *self, const pm_list_opts_t *opts, pm_promise_list_t **list_p)
{
    *list_p = NULL;
    pm_list_opts_t none = {0};
    pm_label_t label;
    pm_msg_t m = s_list_msg(opts ? opts : &none, &label);
    pm_msg_t r;
    int err = s_call_raw(self, &m, PM_OP_LIST, S_CALL_TIMEOUT_MS, &r);
    if (err)
        return err;
    pm_promise_list_t *l = calloc(1, sizeof *l);
    if (l) {
        l->items = calloc(r.promise_count ? r.promise_count : 1, sizeof *l->items);
        l->cursor = s_dup(r.cursor);
    }
    if (!l || !l->items || !l->cursor) {
        pm_promise_list_destroy(&l);
        pm_wire_release(&r);
        return PM_ERR_INTERNAL;
    }
    for (size_t i = 0; i < r.promise_count; i++)
        if ((l->items[l->count] = s_promise_copy(&r.promises[i])))
            l->count++;
    pm_wire_release(&r);
    *list_p = l;
    return PM_OK;
}

static int
s_json_call(pm_client_t *self, pm_msg_t *m, char **json_p)
{
    *json_p = NULL;
    pm_msg_t r;
    int err = s_call_raw(self, m, PM_OP_STATUS, S_CALL_TIMEOUT_MS, &r);
    if (err)
        return err;
    *json_p = s_dup(r.json);
    pm_wire_release(&r);
    return *json_p ? PM_OK : PM_ERR_INTERNAL;
}

int
pm_status(pm_client_t *self, char **json_p)
{
    return s_json_call(self, &(pm_msg_t){.type = PM_MSG_STATUS}, json_p);
}

int
pm_client_stats(pm_client_t *self, uint8_t **buf_p, size_t *len_p)
{
    *buf_p = NULL;
    *len_p = 0;
    pm_msg_t m = {.type = PM_MSG_STATUS};
    pm_msg_t r;
    int err = s_call_raw(self, &m, PM_OP_STATUS, S_CALL_TIMEOUT_MS, &r);
    if (err)
        return err;
    *buf_p = malloc(r.stats.len ? r.stats.len : 1);
    if (*buf_p) {
        memcpy(*buf_p, r.stats.data, r.stats.len);
        *len_p = r.stats.len;
    }
    pm_wire_release(&r);
    return *buf_p ? PM_OK : PM_ERR_INTERNAL;
}

int
pm_members(pm_client_t *self, char **json_p)
{
    return s_json_call(self, &(pm_msg_t){.type = PM_MSG_MEMBERS}, json_p);
}

int
pm_space_force_owner(pm_client_t *self, const char *space, int accept_data_loss, char **json_p)
{
    *json_p = NULL;
    if (!space || !*space || !accept_data_loss)
        return PM_ERR_BAD_REQUEST;
    pm_msg_t m = {.type = PM_MSG_FORCE_OWNER, .space = space, .accept_data_loss = 1};
    return s_json_call(self, &m, json_p);
}

/* ---- workers -------------------------------------------------------------- */

int
pm_worker_new(const char *socket_path, const char *const *functions, size_t function_count,
              int concurrency, pm_worker_t **worker_p)
{
    *worker_p = NULL;
    if (!functions || !function_count || concurrency < 1)
        return PM_ERR_BAD_REQUEST;
    pm_worker_t *self = calloc(1, sizeof *self);
    if (!self || !(self->client = s_client_new(socket_path))) {
        free(self);
        return PM_ERR_INTERNAL;
    }
    pm_client_t *c = self->client;
    c->functions = calloc(function_count, sizeof *c->functions);
    int err = c->functions ? PM_OK : PM_ERR_INTERNAL;
    for (size_t i = 0; !err && i < function_count; i++) {
        if (!functions[i])
            err = PM_ERR_BAD_REQUEST;
        else if (!(c->functions[c->function_count++] = strdup(functions[i])))
            err = PM_ERR_INTERNAL;
    }
    c->concurrency = (uint32_t) concurrency;
    if (!err)
        err = s_connect(c);
    if (err) {
        pm_worker_destroy(&self);
        return err;
    }
    *worker_p = self;
    return PM_OK;
}

void
pm_worker_destroy(pm_worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_client_destroy(&(*self_p)->client);
    free(*self_p);
    *self_p = NULL;
}

/* After a failed reconnection: the next try after a delay drawn from
 * [d/2, d], d doubling from S_BACKOFF_MIN_MS up to S_BACKOFF_MAX_MS. */
static void
s_backoff(pm_client_t *c)
{
    int64_t d = c->backoff_ms ? c->backoff_ms * 2 : S_BACKOFF_MIN_MS;
    if (d > S_BACKOFF_MAX_MS)
        d = S_BACKOFF_MAX_MS;
    c->backoff_ms = d;
    c->retry_at = pm_mono_ms() + d / 2 + (int64_t) (rand_r(&c->seed) % (unsigned) (d / 2 + 1));
}

int
pm_worker_next(pm_worker_t *self, int timeout_ms, pm_invocation_t **invocation_p)
{
    *invocation_p = NULL;
    pm_client_t *c = self->client;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : pm_mono_ms() + timeout_ms;
    for (;;) {
        pm_invocation_t *inv = s_pop(&c->invocations);
        if (inv) {
            *invocation_p = inv;
            return PM_OK;
        }
        /* Stray acknowledgements (and UNREACHABLE results of a lost
         * connection) are dropped here. */
        pm_result_t *r;
        while ((r = s_pop(&c->results)))
            pm_result_destroy(&r);
        int64_t now = pm_mono_ms();
        if (c->sock && s_dropped(c))
            s_lost(c, "connection to the agent was lost");
        if (!c->sock) {
            /* The agent went away: connect and register again, with backoff. */
            if (now >= c->retry_at) {
                if (s_connect(c) == PM_OK) {
                    c->backoff_ms = 0;
                    continue;
                }
                s_backoff(c);
                now = pm_mono_ms();
            }
            if (now >= deadline)
                return PM_ERR_WAIT_TIMEOUT;
            s_sleep_ms((c->retry_at < deadline ? c->retry_at : deadline) - now);
            continue;
        }
        int64_t left = deadline == INT64_MAX ? 1000 : deadline - now;
        if (left < 0)
            return PM_ERR_WAIT_TIMEOUT;
        int rc = s_pump(c, left > 1000 ? 1000 : left, 0, NULL, NULL);
        if (rc == PM_ERR_WAIT_TIMEOUT && deadline != INT64_MAX && pm_mono_ms() >= deadline &&
            !c->invocations.n)
            return PM_ERR_WAIT_TIMEOUT;
    }
}

static int
s_answer(pm_worker_t *self, const pm_invocation_t *inv, int ok, const void *value, size_t len,
         const char *reason, int wait)
{
    if (!inv)
        return PM_ERR_BAD_REQUEST;
    pm_client_t *c = self->client;
    if (c->sock && s_dropped(c))
        s_lost(c, "connection to the agent was lost");
    if (inv->session && inv->session != c->session) {
        /* Its session is over: the agent hands it out again (or, after a
         * restart, invokes its continuation again). Sent, it would only be
         * refused. */
        s_set_error(c, PM_ERR_NOT_HOLDER, "the invocation came on a session that has ended");
        return PM_ERR_NOT_HOLDER;
    }
    PM_STEPTRACE_MARK("l_answer", value, value ? len : 0);
    pm_wire_step_t started[PM_WIRE_MAX_STEPS];
    size_t n_started = 0;
    s_chain_t *ch;
    if (ok && (!c->max_value || len <= c->max_value))
        n_started = s_chain_start(c, inv, value, value ? len : 0, started, PM_WIRE_MAX_STEPS);
    else if ((ch = s_chain_take(c, inv->invocation_id)))
        s_chain_free(ch); /* failed (or too large to start anything on) */
    pm_msg_t m = {.type = PM_MSG_RESULT,
                  .invocation_id = inv->invocation_id,
                  .ok = ok,
                  .value = value,
                  .value_len = value ? len : 0,
                  .reason = reason,
                  .steps = started,
                  .step_count = n_started};
    if (wait)
        return s_call(c, &m, 0, S_CALL_TIMEOUT_MS, NULL);
    /* Not waited for: sent with req_id 0, which the agent does not answer
     * (an older agent does; pm_worker_next drops that with the other stray
     * results). One message less per invocation on both sides. */
    if (!c->sock || (c->max_value && (m.value_len > c->max_value ||
                                      (reason && strlen(reason) > c->max_value))))
        return s_send(c, &m, 0, NULL); /* reports UNREACHABLE / VALUE_TOO_LARGE */
    size_t n;
    uint8_t *buf = pm_wire_encode(&m, &n);
    if (!buf)
        return PM_ERR_INTERNAL;
    zmq_msg_t msg;
    zmq_msg_init_data(&msg, buf, n, s_free_buf, NULL);
    if (zmq_msg_send(&msg, c->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        s_lost(c, "connection to the agent was lost");
        return PM_ERR_UNREACHABLE;
    }
    return PM_OK;
}

int
pm_worker_complete(pm_worker_t *self, const pm_invocation_t *inv, const void *value, size_t len)
{
    return s_answer(self, inv, 1, value, len, NULL, 1);
}

int
pm_worker_fail(pm_worker_t *self, const pm_invocation_t *inv, const char *reason)
{
    return s_answer(self, inv, 0, NULL, 0, reason ? reason : "failed", 1);
}

int
pm_worker_send_complete(pm_worker_t *self, const pm_invocation_t *inv, const void *value,
                        size_t len)
{
    return s_answer(self, inv, 1, value, len, NULL, 0);
}

int
pm_worker_send_fail(pm_worker_t *self, const pm_invocation_t *inv, const char *reason)
{
    return s_answer(self, inv, 0, NULL, 0, reason ? reason : "failed", 0);
}

uint64_t
pm_worker_session(pm_worker_t *self)
{
    return self->client->session;
}

void *
pm_worker_socket(pm_worker_t *self)
{
    return self->client->sock;
}
