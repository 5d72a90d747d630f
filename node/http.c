/*
 * http.c - the HTTP gateway (see http.h): webhooks, REST and /metrics for
 * systems that cannot link libpmesh. This file is the MHD side, the
 * gateway's metrics and refusal logs, and start and stop; the router thread
 * is http_router.c, the request router http_parse.c, the Prometheus text
 * prom.c, the API keys apikeys.c (http_priv.h lists them).
 *
 * The gateway is an ordinary client of its own agent. It shares no state
 * with the reactor: every request becomes libpmesh calls on the agent's
 * local socket, so an operation on a promise another agent owns is relayed
 * to that owner exactly like a local function's request.
 *
 * Threads and who owns what (no mutex anywhere in the gateway):
 *
 *   MHD threads (libmicrohttpd's internal epoll pool, a few threads)
 *     read a request, copy its body, run pm_http_parse_request (http_parse.c:
 *     routing, JSON, limits, the settle token: pure and cheap), answer what needs no
 *     agent (errors, /healthz), and otherwise SUSPEND the connection and
 *     send the request's job pointer to the router over an inproc PUSH
 *     socket (one per MHD thread; ZeroMQ sockets are not thread-safe). From
 *     that send until the connection is resumed the job belongs to the
 *     gateway threads; MHD does not touch a suspended connection.
 *   router thread (http_router.c)
 *     owns the pm_client. It starts each operation with the asynchronous
 *     calls (pm_send_create / resolve / reject / cancel / get / await),
 *     matches replies (pm_recv) to jobs by request id, fills in the answer
 *     and calls MHD_resume_connection (thread-safe; MHD wakes through its
 *     ITC), which hands the job back: the MHD thread queues the response.
 *     Hundreds of long-polls are just outstanding awaits: nothing blocks.
 *     list and status have no asynchronous form but are answered by the
 *     local reactor without relaying (microseconds), so the router calls
 *     them directly.
 *
 * The router sleeps in one zmq_poll on "a request from MHD, or a reply
 * from the agent" (libpmesh's pm_client_socket), so it neither polls nor
 * adds latency: parked long-polls cost nothing while they wait.
 *
 * Tokens: settling (resolve / reject / cancel / heartbeat) needs the
 * promise's settle token; creating and reading do not. Promise ids are not
 * secrets (they appear in logs, URLs and other promises' values), so a
 * token that only an id's creator receives is what stands between an
 * outside caller and someone else's promise; reading a promise is what any
 * holder of the id may do on the local socket anyway. Put the gateway
 * behind the same network policy as the agent.
 */
#include "http_priv.h"

#include "clock.h"
#include "log.h"
#include "prom.h"
#include "token.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* ---- constants ------------------------------------------------------------------ */

/* 32 KiB per connection for the request line and headers (MHD's own pool);
 * a bigger header block gets 431 from MHD. Bodies are copied out, so this
 * does not bound them. */
#define S_CONN_MEMORY (32 * 1024)
/* 30 s: an idle keep-alive connection holds one of http_max_connections;
 * suspended connections (long-polls) do not time out. */
#define S_CONN_TIMEOUT_S 30
/* libmicrohttpd stops accepting at its connection limit and leaves new
 * connections in the kernel's backlog, unanswered. The gateway admits
 * http_max_connections itself and lets MHD hold this many more, so a
 * connection over the limit gets a typed 503 LIMIT instead of silence. */
#define S_CONN_HEADROOM 32
/* Query arguments accepted per request: every route takes at most 5. */
#define S_MAX_QUERY 16
/* Refusal log lines per second; the rest are counted and summarised so a
 * flood of bad requests cannot flood the log. */
#define S_LOG_PER_SEC 20
/* Shutdown: longest wait for suspended connections to be handed back. */
#define S_DRAIN_MS 10000

/* ---- metrics: what the counters count (the counters: http_priv.h) ------------ */

static const int s_codes[] = {200, 201, 400, 401, 403, 404, 405, 409, 410, 413, 429, 500, 503, 504};
_Static_assert(sizeof s_codes / sizeof s_codes[0] == PM_HTTP_NCODES, "PM_HTTP_NCODES");

static const char *s_le[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
                             "0.025",  "0.05",    "0.1",    "0.25",  "0.5",    "1",     "2.5",
                             "5",      "10",      "30",     "60",    "300"};
static const int64_t s_le_us[] = {100,    250,    500,     1000,    2500,    5000,     10000,
                                  25000,  50000,  100000,  250000,  500000,  1000000,  2500000,
                                  5000000, 10000000, 30000000, 60000000, 300000000};
_Static_assert(sizeof s_le_us / sizeof s_le_us[0] == PM_HTTP_NBUCKETS, "PM_HTTP_NBUCKETS");
_Static_assert(sizeof s_le / sizeof s_le[0] == PM_HTTP_NBUCKETS, "PM_HTTP_NBUCKETS");

static const char *s_refusals[] = {
    "bad_request",     /* malformed JSON, unknown field, bad duration, bad query, bad id */
    "too_many_labels", /* more labels than max_labels */
    "body_too_large",  /* body over max_value_bytes + 64 KiB */
    "value_too_large", /* decoded value over max_value_bytes */
    "no_credential",   /* no (or a malformed) Authorization: Bearer where one is needed */
    "bad_credential",  /* neither this promise's settle token nor an API key */
    "token_expired",   /* this promise's settle token, past its expiry */
    "wrong_scope",     /* an API key of scope read for a write */
    "tokens_disabled", /* a settle token while the agent has no token_secret_file */
    "public_route",    /* a client route (or /metrics, /readyz) on the public listener */
    "no_route",        /* unknown path */
    "bad_method",      /* known path, wrong method */
    "unavailable",     /* agent unreachable / shutting down / gateway stopping */
    "connection_limit", /* http_max_connections reached (MHD closes the socket) */
    "header_too_large", /* headers over the per-connection memory (MHD answers 431) */
    "internal",        /* out of memory, a socket failure */
};
_Static_assert(sizeof s_refusals / sizeof s_refusals[0] == PM_HTTP_NREFUSALS, "PM_HTTP_NREFUSALS");

/* ==== metrics and refusal logs ==================================================== */

static void
s_count_response(pm_http_t *self, pm_http_route_t route, int status, int64_t t0_us)
{
    size_t i = 0;
    while (i < PM_HTTP_NCODES && s_codes[i] != status)
        i++;
    atomic_fetch_add_explicit(&self->m.by_code[i], 1, memory_order_relaxed);
    int64_t us = pm_mono_us() - t0_us;
    size_t b = 0;
    while (b < PM_HTTP_NBUCKETS && us > s_le_us[b])
        b++;
    if (route < 0 || route >= PM_HTTP_ROUTE_COUNT)
        route = PM_HTTP_ROUTE_NONE;
    atomic_fetch_add_explicit(&self->m.buckets[route][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&self->m.sum_us[route], (uint_fast64_t) (us > 0 ? us : 0),
                              memory_order_relaxed);
}

static int
s_log_allowed(pm_http_t *self)
{
    long long sec = pm_mono_ms() / 1000;
    long long cur = atomic_load(&self->log_sec);
    if (cur != sec && atomic_compare_exchange_strong(&self->log_sec, &cur, sec)) {
        atomic_store(&self->log_count, 0);
        uint_fast64_t n = atomic_exchange(&self->log_suppressed, 0);
        if (n)
            pm_log_warn("PM-HTTP-LOG-SUPPRESSED", "%llu refusal lines not logged (over %d/s)",
                        (unsigned long long) n, S_LOG_PER_SEC);
    }
    if (atomic_fetch_add(&self->log_count, 1) < S_LOG_PER_SEC)
        return 1;
    atomic_fetch_add(&self->log_suppressed, 1);
    return 0;
}

/* The log tag and level of a refusal: auth problems and capacity limits are
 * warnings (someone may be probing, or the gateway is too small); malformed
 * requests are the caller's business, logged at info. */
static void
s_refusal_tag(const char *refusal, int status, const char **tag, int *level)
{
    *level = PM_LOG_INFO;
    if (strcmp(refusal, "connection_limit") == 0) {
        *tag = "PM-HTTP-CONN-LIMIT";
        *level = PM_LOG_WARN;
        return;
    }
    if (strcmp(refusal, "header_too_large") == 0) {
        *tag = "PM-HTTP-HEADER-LIMIT";
        *level = PM_LOG_WARN;
        return;
    }
    switch (status) {
    case 401:
        *tag = "PM-HTTP-UNAUTHORIZED";
        *level = PM_LOG_WARN;
        return;
    case 403:
        *tag = "PM-HTTP-FORBIDDEN";
        *level = PM_LOG_WARN;
        return;
    case 404:
        *tag = "PM-HTTP-NO-ROUTE";
        return;
    case 405:
        *tag = "PM-HTTP-BAD-METHOD";
        return;
    case 413:
        *tag = "PM-HTTP-TOO-LARGE";
        return;
    case 500:
        *tag = "PM-HTTP-INTERNAL";
        *level = PM_LOG_ERROR;
        return;
    case 503:
        *tag = "PM-HTTP-UNAVAILABLE";
        *level = PM_LOG_WARN;
        return;
    default:
        *tag = "PM-HTTP-BAD-REQUEST";
        return;
    }
}

void
pm_http_note_refusal(pm_http_t *self, const char *refusal, int status, const char *error,
               const char *method, const char *path, const char *id, const char *message)
{
    size_t i = 0;
    while (i < PM_HTTP_NREFUSALS && strcmp(s_refusals[i], refusal ? refusal : "internal") != 0)
        i++;
    if (i == PM_HTTP_NREFUSALS)
        i = PM_HTTP_NREFUSALS - 1;
    atomic_fetch_add_explicit(&self->m.refusals[i], 1, memory_order_relaxed);
    if (!s_log_allowed(self))
        return;
    const char *tag;
    int level;
    s_refusal_tag(s_refusals[i], status, &tag, &level);
    /* The path comes from outside: printable ASCII only, bounded. */
    char shown[128];
    size_t n = 0;
    for (const char *p = path ? path : ""; *p && n < sizeof shown - 1; p++)
        shown[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
    shown[n] = 0;
    pm_log(level, tag, id, "%s %s -> %d %s: %s", method ? method : "?", shown, status,
           error ? error : "", message ? message : "");
}

void
pm_http_metrics_write(pm_http_t *self, FILE *f)
{
    pm_prom_family(f, "pmesh_http_requests_total", "counter", "HTTP responses by status code.");
    for (size_t i = 0; i <= PM_HTTP_NCODES; i++) {
        uint_fast64_t n = atomic_load_explicit(&self->m.by_code[i], memory_order_relaxed);
        if (i == PM_HTTP_NCODES)
            fprintf(f, "pmesh_http_requests_total{code=\"other\"} %llu\n", (unsigned long long) n);
        else
            fprintf(f, "pmesh_http_requests_total{code=\"%d\"} %llu\n", s_codes[i],
                    (unsigned long long) n);
    }
    pm_prom_family(f, "pmesh_http_request_duration_seconds", "histogram",
             "Time from a request's headers to its response being queued, by route.");
    for (int r = 0; r < PM_HTTP_ROUTE_COUNT; r++) {
        const char *name = pm_http_route_name((pm_http_route_t) r);
        unsigned long long cum = 0;
        for (size_t b = 0; b <= PM_HTTP_NBUCKETS; b++) {
            cum += atomic_load_explicit(&self->m.buckets[r][b], memory_order_relaxed);
            fprintf(f, "pmesh_http_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"} %llu\n",
                    name, b < PM_HTTP_NBUCKETS ? s_le[b] : "+Inf", cum);
        }
        fprintf(f, "pmesh_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
                (double) atomic_load_explicit(&self->m.sum_us[r], memory_order_relaxed) / 1e6);
        fprintf(f, "pmesh_http_request_duration_seconds_count{route=\"%s\"} %llu\n", name, cum);
    }
    pm_prom_family(f, "pmesh_http_refusals_total", "counter",
             "Requests the gateway refused, by reason (each is also logged).");
    for (size_t i = 0; i < PM_HTTP_NREFUSALS; i++)
        fprintf(f, "pmesh_http_refusals_total{reason=\"%s\"} %llu\n", s_refusals[i],
                (unsigned long long) atomic_load_explicit(&self->m.refusals[i],
                                                          memory_order_relaxed));
    pm_prom_family(f, "pmesh_http_status_decode_errors_total", "counter",
             "Agent status snapshots the gateway could not decode (another layout or "
             "malformed): pmesh_up is 0 for them.");
    fprintf(f, "pmesh_http_status_decode_errors_total %llu\n",
            (unsigned long long) atomic_load_explicit(&self->m.stats_bad, memory_order_relaxed));
    pm_prom_family(f, "pmesh_http_waiting_requests", "gauge",
             "HTTP requests handed to the agent and not answered yet (long-polls included).");
    fprintf(f, "pmesh_http_waiting_requests %ld\n", atomic_load(&self->suspended));
}

/* ==== MHD side ==================================================================== */

/* MHD threads find their PUSH socket here; a thread serves one gateway. */
static __thread pm_http_t *s_tls_gw;
static __thread void *s_tls_push;

static void *
s_my_push(pm_http_t *self)
{
    if (s_tls_gw != self) {
        int slot = atomic_fetch_add(&self->next_slot, 1);
        s_tls_gw = self;
        s_tls_push = slot < self->n_push ? self->push[slot] : NULL;
    }
    return s_tls_push;
}

/* Queues status + body (owned; NULL: an empty body) on the connection. */
static enum MHD_Result
s_queue(pm_http_job_t *job, int status, char *body, const char *ctype, const char *allow)
{
    pm_http_t *self = job->gw;
    size_t len = body ? strlen(body) : 0;
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body ? body : (void *) "", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            ctype ? ctype : "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if ((status == 401 || status == 403) && job->req.challenge)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, job->req.challenge);
    if (status == 405 && allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (job->req.refusal && strcmp(job->req.refusal, "connection_limit") == 0) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    }
    enum MHD_Result rc = MHD_queue_response(job->conn, (unsigned) status, resp);
    MHD_destroy_response(resp);
    s_count_response(self, job->req.route, status, job->t0_us);
    job->stage = PM_HTTP_DONE;
    return rc;
}

/* Answers a refusal decided on the MHD side. */
static enum MHD_Result
s_queue_refusal(pm_http_job_t *job, const char *method, const char *path)
{
    pm_http_req_t *r = &job->req;
    pm_http_note_refusal(job->gw, r->refusal, r->status, r->error, method, path, r->id, r->message);
    return s_queue(job, r->status, pm_http_error_body(r->error, r->message), NULL, r->allow);
}

typedef struct s_kv_collect {
    pm_http_kv_t items[S_MAX_QUERY];
    size_t n;
    int overflow;
} s_kv_collect_t;

static enum MHD_Result
s_collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void) kind;
    s_kv_collect_t *c = cls;
    if (c->n == S_MAX_QUERY) {
        c->overflow = 1;
        return MHD_NO;
    }
    c->items[c->n].key = key;
    c->items[c->n].value = value;
    c->n++;
    return MHD_YES;
}

/* Socket contexts: whether the connection was admitted. */
static char s_admitted_mark, s_refused_mark;

static void
s_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                enum MHD_ConnectionNotificationCode toe)
{
    (void) conn;
    pm_http_t *self = ((pm_http_listener_t *) cls)->gw;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        if (atomic_fetch_add(&self->admitted, 1) < self->max_conns) {
            *socket_context = &s_admitted_mark;
        } else {
            atomic_fetch_sub(&self->admitted, 1);
            *socket_context = &s_refused_mark;
        }
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context == &s_admitted_mark) {
        atomic_fetch_sub(&self->admitted, 1);
    }
}

static enum MHD_Result
s_on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
             const char *version, const char *upload_data, size_t *upload_data_size,
             void **con_cls)
{
    (void) version;
    pm_http_listener_t *lst = cls;
    pm_http_t *self = lst->gw;
    pm_http_job_t *job = *con_cls;
    if (!job) {
        job = calloc(1, sizeof *job);
        if (!job)
            return MHD_NO; /* MHD closes the connection */
        job->gw = self;
        job->conn = conn;
        job->t0_us = pm_mono_us();
        *con_cls = job;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (ci && ci->socket_context == &s_refused_mark) {
            pm_http_refuse(&job->req, 503, "LIMIT", "connection_limit",
                     "more than %ld concurrent connections (http_max_connections)",
                     self->max_conns);
            return s_queue_refusal(job, method, url);
        }
        /* Refuse an announced oversized body before reading a byte of it. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > self->max_body) {
            pm_http_refuse(&job->req, 413, "VALUE_TOO_LARGE", "body_too_large",
                     "body is over %zu bytes (max_value_bytes + 64 KiB)", self->max_body);
            return s_queue_refusal(job, method, url);
        }
        return MHD_YES;
    }
    switch (job->stage) {
    case PM_HTTP_AWAY:
        return MHD_YES; /* not ours until resumed */
    case PM_HTTP_BACK: {
        if (job->counted) {
            job->counted = 0;
            atomic_fetch_sub(&self->suspended, 1);
        }
        char *resp = job->resp;
        job->resp = NULL;
        return s_queue(job, job->status, resp, job->ctype, NULL);
    }
    case PM_HTTP_DONE:
        *upload_data_size = 0; /* the rest of a refused body */
        return MHD_YES;
    case PM_HTTP_NEW:
        break;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (job->body_too_big || job->body_len + n > self->max_body) {
            /* Read on (and discard) so the 413 can be sent, but not forever. */
            job->body_too_big = 1;
            job->discarded += n;
            return job->discarded > 4 * self->max_body ? MHD_NO : MHD_YES;
        }
        if (job->body_len + n + 1 > job->body_cap) {
            size_t cap = job->body_cap ? job->body_cap : 1024;
            while (cap < job->body_len + n + 1)
                cap *= 2;
            char *b = realloc(job->body, cap);
            if (!b)
                return MHD_NO;
            job->body = b;
            job->body_cap = cap;
        }
        memcpy(job->body + job->body_len, upload_data, n);
        job->body_len += n;
        job->body[job->body_len] = 0;
        return MHD_YES;
    }

    /* The whole request is in. */
    if (job->body_too_big) {
        pm_http_refuse(&job->req, 413, "VALUE_TOO_LARGE", "body_too_large",
                 "body is over %zu bytes (max_value_bytes + 64 KiB)", self->max_body);
        return s_queue_refusal(job, method, url);
    }
    s_kv_collect_t args = {.n = 0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, s_collect_arg, &args);
    const char *auth =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (args.overflow) {
        PM_HTTP_BAD(&job->req, "more than %d query parameters", S_MAX_QUERY);
        return s_queue_refusal(job, method, url);
    }
    pm_http_policy_t policy = self->policy;
    policy.keys = self->keyring ? pm_keyring_keys(self->keyring) : NULL;
    policy.public_listener = lst->public;
    policy.now_ms = pm_real_ms();
    if (pm_http_parse_request(method, url, args.items, args.n, auth, job->body, job->body_len,
                              &policy, &job->req) != 0)
        return s_queue_refusal(job, method, url);
    free(job->body); /* parsed: the request owns what it needs */
    job->body = NULL;
    job->body_len = job->body_cap = 0;

    if (job->req.route == PM_HTTP_ROUTE_HEALTHZ)
        return s_queue(job, 200, strdup("{\"status\":\"ok\"}\n"), NULL, NULL);
    void *push = s_my_push(self);
    if (atomic_load(&self->stopping) || !push) {
        pm_http_refuse(&job->req, 503, push ? "AGENT_SHUTTING_DOWN" : "INTERNAL",
                 push ? "unavailable" : "internal",
                 push ? "the gateway is stopping" : "no request channel for this thread");
        return s_queue_refusal(job, method, url);
    }
    /* Suspend first, then hand over: the router may resume at once. */
    job->stage = PM_HTTP_AWAY;
    job->counted = 1;
    atomic_fetch_add(&self->suspended, 1);
    MHD_suspend_connection(conn);
    if (zmq_send(push, &job, sizeof job, ZMQ_DONTWAIT) != (int) sizeof job) {
        job->status = 500;
        job->resp = pm_http_error_body("INTERNAL", "could not reach the gateway thread");
        pm_http_note_refusal(self, "internal", 500, "INTERNAL", method, url, job->req.id,
                       zmq_strerror(errno));
        job->stage = PM_HTTP_BACK;
        MHD_resume_connection(conn);
    }
    return MHD_YES;
}

static void
s_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
               enum MHD_RequestTerminationCode toe)
{
    (void) conn;
    (void) toe;
    pm_http_t *self = ((pm_http_listener_t *) cls)->gw;
    pm_http_job_t *job = *con_cls;
    if (!job)
        return;
    *con_cls = NULL;
    if (job->stage == PM_HTTP_AWAY) {
        /* Cannot happen (we resume everything before stopping MHD); if it
         * did, the gateway threads may still hold the job: leak it. */
        pm_log_error("PM-HTTP-INTERNAL", "request completed while suspended");
        return;
    }
    if (job->counted)
        atomic_fetch_sub(&self->suspended, 1);
    pm_http_req_clear(&job->req);
    free(job->body);
    free(job->resp);
    free(job->main_msg);
    free(job->get_msg);
    free(job->id);
    pm_promise_destroy(&job->promise);
    free(job);
}

/* MHD's own messages: count the refusals it makes itself. */
static void
s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    pm_http_t *self = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    if (strstr(msg, "connection limit") || strstr(msg, "Connection limit")) {
        pm_http_note_refusal(self, "connection_limit", 503, "LIMIT", "-", "-", NULL, msg);
        return;
    }
    if (strstr(msg, "431") || strstr(msg, "too big") || strstr(msg, "Too Large")) {
        pm_http_note_refusal(self, "header_too_large", 431, "HEADER_TOO_LARGE", "-", "-", NULL, msg);
        return;
    }
    pm_log_debug("PM-HTTP-MHD", "%s", msg);
}

/* ==== start and stop =============================================================== */

/* The router's table of request ids: the id is the key itself. */
static size_t
s_hash_req(const void *key)
{
    uint64_t x = (uint64_t) (uintptr_t) key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t) x;
}

static int
s_cmp_req(const void *a, const void *b)
{
    return a == b ? 0 : (a < b ? -1 : 1);
}

/* "ADDR:PORT", ":PORT", "[V6]:PORT" -> a sockaddr. 0 ok, -1 with err. */
static int
s_resolve_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                 size_t errlen)
{
    const char *colon = strrchr(spec, ':');
    if (!colon || !colon[1]) {
        snprintf(err, errlen, "http '%s': expected ADDR:PORT", spec);
        return -1;
    }
    char host[256];
    size_t hlen = (size_t) (colon - spec);
    if (hlen >= sizeof host) {
        snprintf(err, errlen, "http '%s': address too long", spec);
        return -1;
    }
    memcpy(host, spec, hlen);
    host[hlen] = 0;
    char *h = host;
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h[hlen - 1] = 0;
        h++;
    }
    if (!*h || strcmp(h, "*") == 0)
        h = NULL;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(h, colon + 1, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "http '%s': %s", spec, gai_strerror(rc));
        return -1;
    }
    /* Without a host getaddrinfo lists IPv6 first on some systems; prefer
     * IPv4 any-address so ':PORT' behaves as everyone expects. */
    struct addrinfo *pick = res;
    for (struct addrinfo *a = res; !h && a; a = a->ai_next)
        if (a->ai_family == AF_INET) {
            pick = a;
            break;
        }
    memcpy(ss, pick->ai_addr, pick->ai_addrlen);
    *sslen = pick->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void s_free(pm_http_t *self);

static int
s_is_any(const struct sockaddr_storage *ss)
{
    return (ss->ss_family == AF_INET &&
            ((const struct sockaddr_in *) ss)->sin_addr.s_addr == htonl(INADDR_ANY)) ||
           (ss->ss_family == AF_INET6 &&
            IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *) ss)->sin6_addr));
}

static int
s_is_loopback(const struct sockaddr_storage *ss)
{
    return (ss->ss_family == AF_INET &&
            (ntohl(((const struct sockaddr_in *) ss)->sin_addr.s_addr) >> 24) == 127) ||
           (ss->ss_family == AF_INET6 &&
            IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *) ss)->sin6_addr));
}

/* Starts MHD for one listener (its address already resolved). */
static int
s_start_listener(pm_http_t *self, pm_http_listener_t *l, const struct sockaddr_storage *ss,
                 const pm_config_t *cfg)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ss->ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* No MHD_OPTION_LISTENING_ADDRESS_REUSE: its SO_REUSEPORT would let a
     * second agent share the port silently instead of failing to start. */
    l->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, s_on_request, l, MHD_OPTION_SOCK_ADDR, (struct sockaddr *) ss,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned) self->n_threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned) (cfg->http_max_connections + S_CONN_HEADROOM), MHD_OPTION_NOTIFY_CONNECTION,
        s_on_connection, l, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) S_CONN_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) S_CONN_TIMEOUT_S, MHD_OPTION_NOTIFY_COMPLETED,
        s_on_completed, l, MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, self, MHD_OPTION_END);
    if (!l->mhd) {
        pm_log_error("PM-HTTP-START", "cannot serve HTTP on %s: %s", l->spec,
                     errno ? strerror(errno) : "libmicrohttpd refused the options");
        return -1;
    }
    return 0;
}

pm_http_t *
pm_http_new(const pm_config_t *cfg, const char *socket_path)
{
    char err[512];
    int has_full = cfg->http && *cfg->http;
    int has_public = cfg->http_public && *cfg->http_public;
    if ((!has_full && !has_public) || !socket_path)
        return NULL;
    if (sodium_init() < 0) {
        pm_log_error("PM-HTTP-START", "libsodium failed to initialise");
        return NULL;
    }
    pm_http_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->sigfd = -1;
    self->socket_path = strdup(socket_path);
    self->listen = strdup(has_full ? cfg->http : "-");
    self->listen_public = strdup(has_public ? cfg->http_public : "-");
    self->policy.max_value_bytes = (size_t) cfg->max_value_bytes;
    self->policy.max_labels = (size_t) cfg->max_labels;
    self->policy.max_wait_ms = cfg->http_max_wait;
    self->max_body = (size_t) cfg->max_value_bytes + PM_HTTP_BODY_SLACK;
    self->max_conns = (long) cfg->http_max_connections;
    self->has_seeds = cfg->seeds.len > 0;
    self->forward_timeout_ms = cfg->forward_timeout;
    self->started_ms = pm_mono_ms();
    /* callback_url: where outside systems call back, the public listener if any. */
    const char *cb = has_public ? cfg->http_public : cfg->http;
    if (cfg->http_public_url && *cfg->http_public_url)
        self->base_url = strdup(cfg->http_public_url);
    else if (asprintf(&self->base_url, "http://%s%s", cb[0] == ':' ? "127.0.0.1" : "", cb) < 0)
        self->base_url = NULL;
    if (!self->socket_path || !self->listen || !self->listen_public || !self->base_url)
        goto fail;
    size_t bl = strlen(self->base_url);
    while (bl > 0 && self->base_url[bl - 1] == '/')
        self->base_url[--bl] = 0;

    if (cfg->token_secret_file && *cfg->token_secret_file) {
        if (pm_token_load_secret(cfg->token_secret_file, &self->key, &self->keylen, err,
                                 sizeof err) != 0) {
            pm_log_error("PM-HTTP-START", "token_secret_file %s", err);
            goto fail;
        }
        self->policy.key = self->key;
        self->policy.keylen = self->keylen;
    }
    if (cfg->http_api_keys_file && *cfg->http_api_keys_file) {
        int rc = pm_keyring_new(cfg->http_api_keys_file, &self->keyring, err, sizeof err);
        if (rc == -1)
            pm_log_error("PM-HTTP-START", "http_api_keys_file %s", err);
        if (rc != 0)
            goto fail;
        /* SIGHUP reloads the keys: pmeshd blocks it in every thread, so
         * only this signalfd (read by the router thread) sees it. */
        sigset_t hup;
        sigemptyset(&hup);
        sigaddset(&hup, SIGHUP);
        self->sigfd = signalfd(-1, &hup, SFD_CLOEXEC | SFD_NONBLOCK);
        if (self->sigfd < 0)
            pm_log_warn("PM-HTTP-START", "no signalfd for SIGHUP (%s): the keys file is still "
                        "reloaded when it changes", strerror(errno));
    }

    struct sockaddr_storage ss[2];
    int pub_idx = -1;
    if (has_full) {
        socklen_t sslen = 0;
        if (s_resolve_listen(cfg->http, &ss[self->nlst], &sslen, err, sizeof err) != 0) {
            pm_log_error("PM-HTTP-START", "%s", err);
            goto fail;
        }
        int loop = s_is_loopback(&ss[self->nlst]);
        if (!self->keyring && !loop && !cfg->insecure_http) {
            pm_log_error("PM-HTTP-START",
                         "http %s is not a loopback address and no http_api_keys_file is set: "
                         "anyone who reaches it could read and settle every promise; set "
                         "http_api_keys_file (scripts/gen-secrets makes one), listen on "
                         "127.0.0.1, or pass --insecure-http to accept that",
                         cfg->http);
            goto fail;
        }
        if (!self->keyring) {
            self->policy.anonymous = 1;
            if (!loop)
                pm_log_warn("PM-HTTP-INSECURE",
                            "insecure_http: the full HTTP API on %s answers without any "
                            "credential; anyone who reaches it may read and settle every promise",
                            cfg->http);
        }
        self->lst[self->nlst++] = (pm_http_listener_t){.gw = self, .public = 0, .spec = self->listen};
    }
    if (has_public) {
        socklen_t sslen = 0;
        if (s_resolve_listen(cfg->http_public, &ss[self->nlst], &sslen, err, sizeof err) != 0) {
            pm_log_error("PM-HTTP-START", "%s", err);
            goto fail;
        }
        pub_idx = self->nlst;
        self->lst[self->nlst++] =
            (pm_http_listener_t){.gw = self, .public = 1, .spec = self->listen_public};
    }
    if ((!cfg->http_public_url || !*cfg->http_public_url) &&
        s_is_any(&ss[pub_idx >= 0 ? pub_idx : 0]))
        pm_log_warn("PM-HTTP-PUBLIC-URL",
                    "http %s listens on every address; callback_url will say %s - set "
                    "http_public_url to the address outside systems use",
                    cb, self->base_url);

    self->inflight = zhashx_new();
    self->zctx = zmq_ctx_new();
    if (!self->inflight || !self->zctx)
        goto fail;
    zhashx_set_key_hasher(self->inflight, s_hash_req);
    zhashx_set_key_comparator(self->inflight, s_cmp_req);
    zhashx_set_key_duplicator(self->inflight, NULL);
    zhashx_set_key_destructor(self->inflight, NULL);

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    self->n_threads = cores < 1 ? 1 : cores > PM_HTTP_MAX_MHD_THREADS ? PM_HTTP_MAX_MHD_THREADS : (int) cores;
    self->n_push = self->n_threads * self->nlst; /* one per MHD thread of every listener */
    char ep[96];
    int zero = 0;
    snprintf(ep, sizeof ep, "inproc://pm-http-jobs-%p", (void *) self);
    self->pull = zmq_socket(self->zctx, ZMQ_PULL);
    zmq_setsockopt(self->pull, ZMQ_RCVHWM, &zero, sizeof zero);
    if (!self->pull || zmq_bind(self->pull, ep) != 0)
        goto fail;
    for (int i = 0; i < self->n_push; i++) {
        self->push[i] = zmq_socket(self->zctx, ZMQ_PUSH);
        if (!self->push[i])
            goto fail;
        zmq_setsockopt(self->push[i], ZMQ_SNDHWM, &zero, sizeof zero);
        zmq_setsockopt(self->push[i], ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_connect(self->push[i], ep) != 0)
            goto fail;
    }
    snprintf(ep, sizeof ep, "inproc://pm-http-ctl-%p", (void *) self);
    self->ctl_router = zmq_socket(self->zctx, ZMQ_PAIR);
    self->ctl_main = zmq_socket(self->zctx, ZMQ_PAIR);
    if (!self->ctl_router || !self->ctl_main || zmq_bind(self->ctl_router, ep) != 0 ||
        zmq_connect(self->ctl_main, ep) != 0)
        goto fail;
    if (pthread_create(&self->router, NULL, pm_http_router_main, self) != 0)
        goto fail;
    self->router_started = 1;

    for (int i = 0; i < self->nlst; i++)
        if (s_start_listener(self, &self->lst[i], &ss[i], cfg) != 0)
            goto fail;
    pm_log_info("PM-HTTP-UP",
                "gateway serving the full API on %s and the public one on %s (callbacks at %s, "
                "settle tokens %s, API keys %s, %d threads each, at most %lld connections)",
                self->listen, self->listen_public, self->base_url,
                self->key ? "on" : "off (no token_secret_file)",
                self->keyring ? "on" : self->policy.anonymous ? "off (no credential needed)"
                                                                : "off",
                self->n_threads, (long long) cfg->http_max_connections);
    return self;
fail:
    s_free(self);
    return NULL;
}

/* Stops the threads (if started) and frees everything. */
static void
s_free(pm_http_t *self)
{
    atomic_store(&self->stopping, 1);
    if (self->router_started) {
        zmq_send(self->ctl_main, "DRAIN", 5, 0);
        char buf[16];
        zmq_recv(self->ctl_main, buf, sizeof buf, 0);
    }
    /* Every request handed over is being answered (the router answers all
     * it gets with 503 now); wait until MHD has taken each one back, because
     * stopping MHD with a suspended connection is undefined. */
    int64_t until = pm_mono_ms() + S_DRAIN_MS;
    while (atomic_load(&self->suspended) > 0 && pm_mono_ms() < until)
        usleep(1000);
    if (atomic_load(&self->suspended) > 0)
        pm_log_error("PM-HTTP-STOP", "%ld requests still suspended after %d ms",
                     atomic_load(&self->suspended), S_DRAIN_MS);
    for (int i = 0; i < self->nlst; i++) {
        if (self->lst[i].mhd)
            MHD_stop_daemon(self->lst[i].mhd);
        self->lst[i].mhd = NULL;
    }
    if (self->router_started) {
        zmq_send(self->ctl_main, "EXIT", 4, 0);
        pthread_join(self->router, NULL);
        self->router_started = 0;
    }
    void *socks[] = {self->pull, self->ctl_main, self->ctl_router};
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++)
        if (socks[i])
            zmq_close(socks[i]);
    for (int i = 0; i < 2 * PM_HTTP_MAX_MHD_THREADS; i++)
        if (self->push[i])
            zmq_close(self->push[i]);
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    zhashx_destroy(&self->inflight);
    if (self->key) {
        sodium_memzero(self->key, self->keylen);
        free(self->key);
    }
    pm_keyring_destroy(&self->keyring);
    if (self->sigfd >= 0)
        close(self->sigfd);
    free(self->socket_path);
    free(self->base_url);
    free(self->listen);
    free(self->listen_public);
    free(self);
}

void
pm_http_destroy(pm_http_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_http_t *self = *self_p;
    pm_log_info("PM-HTTP-STOPPING", "gateway on %s (public: %s) stopping", self->listen,
                self->listen_public);
    s_free(self);
    *self_p = NULL;
}
