/*
 * http_router.c - the gateway's router thread (see http.c for the threads
 * and who owns what). It owns the gateway's pm_client: it takes jobs from
 * the MHD threads, starts each operation with libpmesh's asynchronous calls,
 * matches the agent's replies to jobs by request id, answers /readyz and
 * /metrics, reconnects when the agent goes away, answers 503 to replies
 * that never come, and reloads the API keys on SIGHUP or a file change.
 */
#include "http_priv.h"

#include "clock.h"
#include "log.h"
#include "pjson.h"
#include "prom.h"
#include "stats.h"
#include "token.h"
#include "wire.h"

#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>

/* Between attempts to (re)connect to the agent. */
#define S_RECONNECT_MS 500
/* A reply that has not come this long after the agent's own limits
 * (forward_timeout, the await's wait) was lost: answer 503 rather than keep
 * the connection suspended forever. */
#define S_REPLY_GRACE_MS 60000
/* With seeds configured, an agent still alone this long after start counts
 * as ready anyway: a one-agent mesh whose seed is itself must not stay
 * unready forever. Before that, alone means "not joined yet". */
#define S_JOIN_GRACE_MS 10000

/* A GET's steps: the operation (an await when it has a wait), then a
 * plain get (without a wait, or after the await timed out). */
enum { S_PHASE_MAIN = 0, S_PHASE_GET };

/* Hands the job back to MHD with status, body (owned) and content type
 * (NULL: JSON). After this the job must not be touched: MHD may already be
 * sending the answer and freeing the job. */
static void
s_answer_typed(pm_http_job_t *job, int status, char *body, const char *ctype)
{
    job->status = status;
    free(job->resp);
    job->resp = body;
    job->ctype = ctype;
    job->stage = PM_HTTP_BACK;
    MHD_resume_connection(job->conn);
}

static void
s_answer(pm_http_job_t *job, int status, char *body)
{
    s_answer_typed(job, status, body, NULL);
}

/* Forgets every outstanding request id of the job (late replies are then
 * dropped). Router thread. */
static void
s_untrack(pm_http_t *self, pm_http_job_t *job)
{
    for (int i = 0; i < 2; i++) {
        if (!job->reqs[i])
            continue;
        zhashx_delete(self->inflight, (void *) (uintptr_t) job->reqs[i]);
        job->reqs[i] = 0;
    }
}

static void
s_track(pm_http_t *self, pm_http_job_t *job, uint64_t req, pm_op_t op)
{
    int i = job->reqs[0] ? 1 : 0;
    job->reqs[i] = req;
    job->ops[i] = op;
    zhashx_insert(self->inflight, (void *) (uintptr_t) req, job);
}

/* Answers with the error err (message: the agent's words, or ours). */
static void
s_fail(pm_http_t *self, pm_http_job_t *job, int err, const char *message)
{
    s_untrack(self, job);
    int status = pm_http_status_of(err);
    const char *msg = message && *message ? message : pm_strerror(err);
    if (status == 503 || status == 500)
        pm_http_note_refusal(self, status == 503 ? "unavailable" : "internal", status,
                       pm_err_name(err), pm_http_route_name(job->req.route), "-", job->req.id,
                       msg);
    s_answer(job, status, pm_http_error_body(pm_err_name(err), msg));
}

/* The promise JSON, or {"id":..,"state":..} if the get that followed a
 * successful operation failed. */
static char *
s_promise_body(pm_http_job_t *job, const char *id, int fallback_state, pm_http_t *self, int with_token)
{
    json_t *o = job->promise ? pm_promise_to_json_obj(job->promise) : json_object();
    if (!o)
        return NULL;
    if (!job->promise) {
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "state", json_string(pm_state_name(fallback_state)));
    }
    if (with_token) {
        char token[PM_TOKEN_MAX + 1];
        if (self->key && pm_token_make_exp(self->key, self->keylen, id, job->req.token_exp_s, token,
                                           sizeof token) == 0)
            json_object_set_new(o, "settle_token", json_string(token));
        char *url = NULL;
        if (asprintf(&url, "%s/v1/promises/%s/resolve", self->base_url, id) >= 0) {
            json_object_set_new(o, "callback_url", json_string(url));
            free(url);
        }
    }
    char *text = pm_http_json_line(o);
    json_decref(o);
    return text;
}

/* Everything this job waited for has come: answer or take the next step. */
static void
s_advance(pm_http_t *self, pm_http_job_t *job)
{
    pm_http_req_t *r = &job->req;
    uint64_t req;
    int err;
    switch (r->route) {
    case PM_HTTP_ROUTE_CREATE:
        if (job->main_err) {
            s_fail(self, job, job->main_err, job->main_msg);
            return;
        }
        if (!job->got_get) { /* keyed: the id came with the reply */
            if ((err = pm_send_get(self->client, job->id, &req)) != 0) {
                job->got_get = 1;
                job->get_err = err;
            } else {
                s_track(self, job, req, PM_OP_GET);
                return;
            }
        }
        {
            int created = !r->create.idempotency_key ||
                          (job->promise && job->promise->created_ms >= job->sent_wall_ms);
            char *body = s_promise_body(job, job->id, PM_STATE_PENDING, self, 1);
            s_answer(job, body ? (created ? 201 : 200) : 500,
                     body ? body : pm_http_error_body("INTERNAL", "out of memory"));
        }
        return;
    case PM_HTTP_ROUTE_COMBINE: {
        /* Like a create, without a settle token: only its inputs settle it. */
        if (job->main_err) {
            s_fail(self, job, job->main_err, job->main_msg);
            return;
        }
        char *body = s_promise_body(job, job->id, PM_STATE_PENDING, self, 0);
        s_answer(job, body ? 201 : 500, body ? body : pm_http_error_body("INTERNAL", "out of memory"));
        return;
    }
    case PM_HTTP_ROUTE_GET:
        if (job->phase == S_PHASE_MAIN && r->wait_ms > 0) {
            if (job->main_err == PM_ERR_WAIT_TIMEOUT) { /* still pending: say so, 200 */
                job->phase = S_PHASE_GET;
                if ((err = pm_send_get(self->client, r->id, &req)) != 0) {
                    s_fail(self, job, err, pm_client_last_error(self->client));
                    return;
                }
                s_track(self, job, req, PM_OP_GET);
                return;
            }
            if (job->main_err) {
                s_fail(self, job, job->main_err, job->main_msg);
                return;
            }
        } else if (job->get_err) {
            s_fail(self, job, job->get_err, job->get_msg);
            return;
        }
        if (!job->promise) {
            s_fail(self, job, PM_ERR_INTERNAL, "the agent sent no promise");
            return;
        }
        {
            char *body = s_promise_body(job, r->id, PM_STATE_PENDING, self, 0);
            s_answer(job, body ? 200 : 500,
                     body ? body : pm_http_error_body("INTERNAL", "out of memory"));
        }
        return;
    case PM_HTTP_ROUTE_RESOLVE:
    case PM_HTTP_ROUTE_REJECT:
    case PM_HTTP_ROUTE_CANCEL:
    case PM_HTTP_ROUTE_HEARTBEAT: {
        if (job->main_err) {
            s_fail(self, job, job->main_err, job->main_msg);
            return;
        }
        int state = r->route == PM_HTTP_ROUTE_RESOLVE  ? PM_STATE_RESOLVED
                    : r->route == PM_HTTP_ROUTE_REJECT ? PM_STATE_REJECTED
                    : r->route == PM_HTTP_ROUTE_CANCEL ? PM_STATE_CANCELED
                                                       : PM_STATE_PENDING;
        char *body = s_promise_body(job, r->id, state, self, 0);
        s_answer(job, body ? 200 : 500,
                 body ? body : pm_http_error_body("INTERNAL", "out of memory"));
        return;
    }
    default:
        s_fail(self, job, PM_ERR_INTERNAL, "unexpected route");
        return;
    }
}

static void
s_on_result(pm_http_t *self, pm_result_t *res)
{
    pm_http_job_t *job = zhashx_lookup(self->inflight, (void *) (uintptr_t) res->req_id);
    if (!job) {
        pm_result_destroy(&res); /* for a job already answered */
        return;
    }
    for (int i = 0; i < 2; i++) {
        if (job->reqs[i] != res->req_id)
            continue;
        zhashx_delete(self->inflight, (void *) (uintptr_t) res->req_id);
        job->reqs[i] = 0;
    }
    int is_get = res->op == PM_OP_GET;
    if (is_get) {
        job->got_get = 1;
        job->get_err = res->err;
    } else {
        job->got_main = 1;
        job->main_err = res->err;
        if (res->id && !job->id)
            job->id = strdup(res->id);
    }
    if (res->err && res->message && *res->message) {
        char **msg = is_get ? &job->get_msg : &job->main_msg;
        free(*msg);
        *msg = strdup(res->message);
    }
    if (res->promise) {
        pm_promise_destroy(&job->promise);
        job->promise = res->promise;
        res->promise = NULL;
    }
    pm_result_destroy(&res);
    if (!job->reqs[0] && !job->reqs[1])
        s_advance(self, job);
}

static void s_lost(pm_http_t *self, const char *why);

/* Sends helper: on failure answers the job; returns 0 if sent. */
static int
s_sent(pm_http_t *self, pm_http_job_t *job, int err, uint64_t req, pm_op_t op)
{
    if (err) {
        const char *msg = pm_client_last_error(self->client);
        s_fail(self, job, err, msg);
        if (err == PM_ERR_UNREACHABLE)
            s_lost(self, msg);
        return -1;
    }
    s_track(self, job, req, op);
    return 0;
}

/* ---- readiness and metrics -------------------------------------------------------- */

/* The agent's typed status snapshot in *st (pm_stats_clear it). 0, or -1
 * with why filled in: the agent did not answer, or its snapshot did not
 * decode (counted in pmesh_http_status_decode_errors_total). */
static int
s_fetch_stats(pm_http_t *self, pm_stats_t *st, char *why, size_t cap)
{
    memset(st, 0, sizeof *st);
    uint8_t *buf = NULL;
    size_t len = 0;
    int err = self->client ? pm_client_stats(self->client, &buf, &len) : PM_ERR_UNREACHABLE;
    if (err) {
        snprintf(why, cap, "the agent does not answer: %s", pm_strerror(err));
        if (err == PM_ERR_UNREACHABLE && self->client)
            s_lost(self, why);
        return -1;
    }
    int rc = pm_stats_unpack(buf, len, st);
    free(buf);
    if (rc) {
        atomic_fetch_add_explicit(&self->m.stats_bad, 1, memory_order_relaxed);
        snprintf(why, cap, "the agent's status snapshot does not decode (another version?)");
        pm_log_warn("PM-HTTP-STATUS-DECODE", "%s", why);
    }
    return rc;
}

static void
s_readyz(pm_http_t *self, pm_http_job_t *job)
{
    pm_stats_t st;
    char why[200] = "";
    if (s_fetch_stats(self, &st, why, sizeof why) == 0) {
        if ((st.parts & PM_STATS_WAL) && st.wal_failed)
            snprintf(why, sizeof why, "the agent's write-ahead log has failed");
        else if ((st.parts & PM_STATS_MESH) && st.mesh_alive < 1)
            snprintf(why, sizeof why, "no alive mesh member (not even this agent)");
        else if ((st.parts & PM_STATS_MESH) && st.mesh_alive < 2 && self->has_seeds &&
                 pm_mono_ms() - self->started_ms < S_JOIN_GRACE_MS)
            snprintf(why, sizeof why, "not joined yet: alone, still waiting for a seed");
    }
    if (*why) {
        pm_stats_clear(&st);
        s_answer(job, 503, pm_http_error_body("NOT_READY", why));
        return;
    }
    json_t *o = json_pack("{s:b,s:s}", "ready", 1, "node", st.node);
    if (o && (st.parts & PM_STATS_MESH))
        json_object_set_new(o, "members_alive", json_integer((json_int_t) st.mesh_alive));
    char *body = o ? pm_http_json_line(o) : NULL;
    json_decref(o);
    pm_stats_clear(&st);
    s_answer(job, body ? 200 : 500, body ? body : pm_http_error_body("INTERNAL", "out of memory"));
}

static void
s_metrics(pm_http_t *self, pm_http_job_t *job)
{
    pm_stats_t st;
    char why[200];
    int up = s_fetch_stats(self, &st, why, sizeof why) == 0;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        pm_stats_clear(&st);
        s_answer(job, 500, pm_http_error_body("INTERNAL", "out of memory"));
        return;
    }
    pm_prom_family(f, "pmesh_up", "gauge",
                   "1 if the agent answered the gateway's status request with a snapshot it "
                   "could decode.");
    fprintf(f, "pmesh_up %d\n", up);
    if (up)
        pm_prom_stats(f, &st);
    pm_stats_clear(&st);
    pm_http_metrics_write(self, f);
    fclose(f);
    s_answer_typed(job, 200, text, "text/plain; version=0.0.4; charset=utf-8");
}

/* ---- dispatch --------------------------------------------------------------------- */

static void
s_dispatch(pm_http_t *self, pm_http_job_t *job)
{
    pm_http_req_t *r = &job->req;
    if (self->draining) {
        s_fail(self, job, PM_ERR_AGENT_SHUTTING_DOWN, "the gateway is stopping");
        return;
    }
    if (r->route == PM_HTTP_ROUTE_METRICS) {
        s_metrics(self, job);
        return;
    }
    if (r->route == PM_HTTP_ROUTE_READYZ) {
        s_readyz(self, job);
        return;
    }
    if (!self->client) {
        s_fail(self, job, PM_ERR_UNREACHABLE, "the gateway is not connected to its agent");
        return;
    }
    job->deadline_ms = pm_mono_ms() + self->forward_timeout_ms + S_REPLY_GRACE_MS;
    uint64_t req = 0;
    int err;
    switch (r->route) {
    case PM_HTTP_ROUTE_CREATE: {
        char *id = NULL;
        job->sent_wall_ms = pm_real_ms();
        err = pm_send_create(self->client, &r->create, &id, &req);
        if (s_sent(self, job, err, req, PM_OP_CREATE))
            return;
        if (id) { /* no key: the id is known now; ask for the promise at once */
            job->id = id;
            err = pm_send_get(self->client, id, &req);
            if (err) {
                job->got_get = 1;
                job->get_err = err;
            } else {
                s_track(self, job, req, PM_OP_GET);
            }
        }
        return;
    }
    case PM_HTTP_ROUTE_COMBINE: {
        char *id = NULL;
        err = pm_send_combine(self->client, r->combine_kind, (const char *const *) r->ids,
                              r->id_count, r->create.timeout_ms, &id, &req);
        if (s_sent(self, job, err, req, PM_OP_COMBINE)) {
            free(id);
            return;
        }
        job->id = id;
        /* The get travels behind the combine on the same channel: it sees
         * the new promise. */
        if ((err = pm_send_get(self->client, id, &req)) != 0) {
            job->got_get = 1;
            job->get_err = err;
        } else {
            s_track(self, job, req, PM_OP_GET);
        }
        return;
    }
    case PM_HTTP_ROUTE_GET:
        if (r->wait_ms > 0) {
            job->deadline_ms += r->wait_ms;
            err = pm_send_await(self->client, r->id, r->wait_ms, &req);
            s_sent(self, job, err, req, PM_OP_AWAIT);
        } else {
            job->phase = S_PHASE_GET;
            err = pm_send_get(self->client, r->id, &req);
            s_sent(self, job, err, req, PM_OP_GET);
        }
        return;
    case PM_HTTP_ROUTE_LIST: {
        pm_promise_list_t *list = NULL;
        err = pm_list(self->client, &r->list, &list);
        if (err) {
            const char *msg = pm_client_last_error(self->client);
            s_fail(self, job, err, msg);
            if (err == PM_ERR_UNREACHABLE)
                s_lost(self, msg);
            return;
        }
        char *text = pm_promise_list_to_json(list);
        pm_promise_list_destroy(&list);
        char *body = text ? realloc(text, strlen(text) + 2) : NULL;
        if (body)
            strcat(body, "\n");
        else
            free(text);
        s_answer(job, body ? 200 : 500,
                 body ? body : pm_http_error_body("INTERNAL", "out of memory"));
        return;
    }
    case PM_HTTP_ROUTE_RESOLVE:
    case PM_HTTP_ROUTE_REJECT:
    case PM_HTTP_ROUTE_CANCEL:
    case PM_HTTP_ROUTE_HEARTBEAT:
        if (r->route == PM_HTTP_ROUTE_RESOLVE)
            err = pm_send_resolve(self->client, r->id, r->value, r->value_len, &req);
        else if (r->route == PM_HTTP_ROUTE_REJECT)
            err = pm_send_reject(self->client, r->id, r->reason, &req);
        else if (r->route == PM_HTTP_ROUTE_CANCEL)
            err = pm_send_cancel(self->client, r->id, &req);
        else
            err = pm_send_heartbeat(self->client, r->id, &req);
        if (s_sent(self, job, err, req, PM_OP_RESOLVE))
            return;
        /* The get travels behind the settle on the same channel to the
         * owner, so it sees the outcome; both answers are awaited. */
        err = pm_send_get(self->client, r->id, &req);
        if (!err)
            s_track(self, job, req, PM_OP_GET);
        return;
    default:
        s_fail(self, job, PM_ERR_INTERNAL, "unexpected route");
        return;
    }
}

/* ---- connection to the agent ------------------------------------------------------ */

/* The agent went away: every outstanding request gets 503 now. */
static void
s_lost(pm_http_t *self, const char *why)
{
    if (!self->client)
        return;
    char reason[256]; /* why may point into the client we are about to free */
    snprintf(reason, sizeof reason, "%s", why ? why : "");
    pm_http_job_t *job;
    while ((job = zhashx_first(self->inflight)))
        s_fail(self, job, PM_ERR_UNREACHABLE, "the connection to the agent was lost");
    pm_client_destroy(&self->client);
    self->next_connect_ms = pm_mono_ms() + S_RECONNECT_MS;
    if (!self->draining && !atomic_load(&self->stopping))
        pm_log_warn("PM-HTTP-AGENT-LOST", "lost the agent at %s (%s); reconnecting",
                    self->socket_path, reason);
}

static void
s_connect(pm_http_t *self)
{
    int err = pm_client_connect(self->socket_path, &self->client);
    if (err) {
        self->client = NULL;
        self->next_connect_ms = pm_mono_ms() + S_RECONNECT_MS;
        pm_log_debug("PM-HTTP-AGENT-WAIT", "agent at %s not reachable yet: %s",
                     self->socket_path, pm_strerror(err));
        return;
    }
    pm_log_info("PM-HTTP-AGENT-CONNECTED", "gateway connected to agent %s",
                pm_client_node(self->client));
}

/* Answers 503 to jobs whose reply never came (a lost reply must not keep a
 * connection suspended forever). */
static void
s_sweep(pm_http_t *self)
{
    int64_t now = pm_mono_ms();
    pm_http_job_t *late[64];
    size_t n = 0;
    for (pm_http_job_t *job = zhashx_first(self->inflight); job && n < 64;
         job = zhashx_next(self->inflight)) {
        if (job->deadline_ms && now > job->deadline_ms) {
            int dup = 0;
            for (size_t i = 0; i < n; i++)
                dup |= late[i] == job;
            if (!dup)
                late[n++] = job;
        }
    }
    for (size_t i = 0; i < n; i++)
        s_fail(self, late[i], PM_ERR_UNREACHABLE, "no reply from the agent in time");
}

static void
s_pump_replies(pm_http_t *self, int timeout_ms)
{
    pm_result_t *res;
    while (self->client) {
        int rc = pm_recv(self->client, timeout_ms, &res);
        if (rc == PM_OK) {
            s_on_result(self, res);
            timeout_ms = 0;
            continue;
        }
        if (rc == PM_ERR_UNREACHABLE)
            s_lost(self, pm_client_last_error(self->client));
        break;
    }
}

/* Drain mode: answer everything still out. */
static void
s_drain(pm_http_t *self)
{
    self->draining = 1;
    pm_http_job_t *job;
    while ((job = zhashx_first(self->inflight)))
        s_fail(self, job, PM_ERR_AGENT_SHUTTING_DOWN, "the gateway is stopping");
    pm_client_destroy(&self->client);
}

/* ---- API keys: reloaded on SIGHUP and when the file changes ---------------------- */

static void
s_keys_poll(pm_http_t *self, int signalled)
{
    if (!self->keyring)
        return;
    if (signalled) {
        struct signalfd_siginfo si;
        while (read(self->sigfd, &si, sizeof si) == sizeof si)
            ;
        pm_keyring_reload(self->keyring, "SIGHUP");
        return;
    }
    pm_keyring_check(self->keyring);
}

void *
pm_http_router_main(void *arg)
{
    pm_http_t *self = arg;
    /* Requests from MHD, control, the agent's replies (libpmesh's socket:
     * zmq_poll reads its ZMQ_EVENTS, so a reply already on it wakes us), and
     * SIGHUP. Replies that a blocking call queued inside libpmesh do not wake
     * the socket: every pass ends by draining pm_recv until it is empty. */
    zmq_pollitem_t items[4];
    for (;;) {
        int64_t now = pm_mono_ms();
        if (!self->draining && !self->client && now >= self->next_connect_ms)
            s_connect(self);
        int nitems = 0;
        items[nitems++] = (zmq_pollitem_t){self->pull, 0, ZMQ_POLLIN, 0};
        items[nitems++] = (zmq_pollitem_t){self->ctl_router, 0, ZMQ_POLLIN, 0};
        int sig_item = -1;
        if (self->sigfd >= 0) {
            sig_item = nitems;
            items[nitems++] = (zmq_pollitem_t){NULL, self->sigfd, ZMQ_POLLIN, 0};
        }
        void *agent = self->client ? pm_client_socket(self->client) : NULL;
        if (agent)
            items[nitems++] = (zmq_pollitem_t){agent, 0, ZMQ_POLLIN, 0};
        /* Wake for the sweep of lost replies, a reconnect, the keys file. */
        long timeout = self->draining ? -1 : 1000;
        if (!self->client && !self->draining)
            timeout = S_RECONNECT_MS;
        if (self->keyring && (timeout < 0 || timeout > PM_KEYRING_CHECK_MS))
            timeout = PM_KEYRING_CHECK_MS;
        if (zmq_poll(items, nitems, timeout) < 0 && errno != EINTR)
            break; /* the context is gone */
        s_keys_poll(self, sig_item >= 0 && (items[sig_item].revents & ZMQ_POLLIN));
        s_pump_replies(self, 0);
        pm_http_job_t *job;
        while (zmq_recv(self->pull, &job, sizeof job, ZMQ_DONTWAIT) == (int) sizeof job)
            s_dispatch(self, job);
        s_pump_replies(self, 0);
        now = pm_mono_ms();
        if (now >= self->next_sweep_ms) {
            s_sweep(self);
            self->next_sweep_ms = now + 1000;
        }
        char cmd[16];
        int n = zmq_recv(self->ctl_router, cmd, sizeof cmd - 1, ZMQ_DONTWAIT);
        if (n > 0) {
            cmd[n] = 0;
            if (strcmp(cmd, "DRAIN") == 0) {
                s_drain(self);
                zmq_send(self->ctl_router, "DRAINED", 7, 0);
            } else if (strcmp(cmd, "EXIT") == 0) {
                while (zmq_recv(self->pull, &job, sizeof job, ZMQ_DONTWAIT) == (int) sizeof job)
                    s_dispatch(self, job);
                break;
            }
        }
    }
    pm_client_destroy(&self->client);
    return NULL;
}

