/*
 * http.c - the HTTP gateway (see http.h): webhooks, REST and /metrics for
 * systems that cannot link libpmesh.
 *
 * The gateway is an ordinary client of its own agent. It shares no state
 * with the reactor: every request becomes libpmesh calls on the agent's
 * local socket, so an operation on a promise another agent owns is relayed
 * to that owner exactly like a local function's request.
 *
 * Threads and who owns what (no mutex anywhere in this file):
 *
 *   MHD threads (libmicrohttpd's internal epoll pool, a few threads)
 *     read a request, copy its body, run pm_http_parse_request (routing,
 *     JSON, limits, the settle token: pure and cheap), answer what needs no
 *     agent (errors, /healthz), and otherwise SUSPEND the connection and
 *     send the request's job pointer to the router over an inproc PUSH
 *     socket (one per MHD thread; ZeroMQ sockets are not thread-safe). From
 *     that send until the connection is resumed the job belongs to the
 *     gateway threads; MHD does not touch a suspended connection.
 *   router thread
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
 The router sleeps in one zmq_poll on "a request from MHD, or a reply
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
#include "clock.h"
#include "http.h"

#include "apikeys.h"
#include "log.h"
#include "pjson.h"
#include "token.h"
#include "wire.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* ---- constants ------------------------------------------------------------------ */

/* A request body may hold the largest value plus this much JSON around it
 * (field names, escapes of a few characters). Beyond that: 413 at once. */
#define S_BODY_SLACK (64 * 1024)
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
/* MHD threads: up to 4, one per core; parsing and HMAC are cheap, the
 * agent is the bottleneck. */
#define S_MAX_MHD_THREADS 4
/* Query arguments accepted per request: every route takes at most 5. */
#define S_MAX_QUERY 16
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
/* Refusal log lines per second; the rest are counted and summarised so a
 * flood of bad requests cannot flood the log. */
#define S_LOG_PER_SEC 20
/* Shutdown: longest wait for suspended connections to be handed back. */
#define S_DRAIN_MS 10000

/* ---- metrics: counters shared by the MHD threads (atomics, not locks) ---------- */

static const int s_codes[] = {200, 201, 400, 401, 403, 404, 405, 409, 410, 413, 429, 500, 503, 504};
#define S_NCODES (sizeof s_codes / sizeof s_codes[0])

static const char *s_le[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
                             "0.025",  "0.05",    "0.1",    "0.25",  "0.5",    "1",     "2.5",
                             "5",      "10",      "30",     "60",    "300"};
static const int64_t s_le_us[] = {100,    250,    500,     1000,    2500,    5000,     10000,
                                  25000,  50000,  100000,  250000,  500000,  1000000,  2500000,
                                  5000000, 10000000, 30000000, 60000000, 300000000};
#define S_NBUCKETS (sizeof s_le_us / sizeof s_le_us[0])

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
#define S_NREFUSALS (sizeof s_refusals / sizeof s_refusals[0])

typedef struct s_metrics {
    atomic_uint_fast64_t by_code[S_NCODES + 1]; /* last: any other code */
    atomic_uint_fast64_t buckets[PM_HTTP_ROUTE_COUNT][S_NBUCKETS + 1];
    atomic_uint_fast64_t sum_us[PM_HTTP_ROUTE_COUNT];
    atomic_uint_fast64_t refusals[S_NREFUSALS];
} s_metrics_t;

/* ---- jobs ------------------------------------------------------------------------ */

typedef enum {
    S_NEW = 0, /* MHD side: reading the request */
    S_AWAY,    /* suspended; the gateway threads own the job */
    S_BACK,    /* resumed with an answer; MHD side again */
    S_DONE,    /* answered (or answering) from the MHD side */
} s_stage_t;

typedef struct s_job {
    pm_http_t *gw;
    struct MHD_Connection *conn;
    s_stage_t stage;
    int counted; /* included in gw->suspended */
    int64_t t0_us;
    char *body;
    size_t body_len, body_cap, discarded;
    int body_too_big;
    pm_http_req_t req;
    /* router side */
    uint64_t reqs[2]; /* outstanding request ids, 0: free slot */
    pm_op_t ops[2];
    int64_t deadline_ms; /* monotonic: answer 503 if nothing came by then */
    int phase;
    int main_err, get_err, got_main, got_get;
    char *main_msg, *get_msg; /* the agent's words with an error */
    char *id; /* create: the new promise's id */
    pm_promise_t *promise;
    int64_t sent_wall_ms;
    /* the answer, filled by whoever answers */
    int status;
    char *resp;
    const char *ctype;
} s_job_t;

enum { S_PHASE_MAIN = 0, S_PHASE_GET };

/* ---- the gateway ----------------------------------------------------------------- */

/* One HTTP listener: the full API or the public (token-only) one. */
typedef struct s_listener {
    pm_http_t *gw;
    struct MHD_Daemon *mhd;
    int public;
    const char *spec; /* ADDR:PORT as configured, borrowed from gw */
} s_listener_t;

/* A keys table replaced by a reload: readers that loaded it just before may
 * still be parsing with it, for microseconds; it is freed a minute later. */
typedef struct s_retired {
    pm_apikeys_t *keys;
    int64_t since_ms;
    struct s_retired *next;
} s_retired_t;

struct pm_http {
    s_listener_t lst[2];
    int nlst;
    char *socket_path;
    char *base_url; /* callback base, no trailing '/' */
    char *listen;   /* cfg->http as given, for logs */
    char *listen_public; /* cfg->http_public */
    uint8_t *key;
    size_t keylen;
    pm_http_policy_t policy; /* the fixed part; each request copies it */
    /* API keys: written by the router thread only (reloads), read by the MHD
     * threads once per request. */
    _Atomic(pm_apikeys_t *) keys;
    char *keys_path;   /* NULL: no keys configured */
    struct stat keys_st; /* of the file last loaded: a change reloads it */
    int sigfd;         /* SIGHUP: reload the keys (-1: none) */
    int64_t next_keys_check_ms;
    s_retired_t *retired;
    size_t max_body;
    long max_conns;
    atomic_long admitted; /* connections within http_max_connections */
    int has_seeds;
    int64_t forward_timeout_ms;
    int64_t started_ms;
    /* ZeroMQ: MHD threads -> router (PUSH per MHD thread), main <-> router,
     * Each socket is used by one thread only. */
    void *zctx;
    void *pull;
    void *push[2 * S_MAX_MHD_THREADS];
    int n_push;
    int n_threads; /* MHD threads per listener */
    atomic_int next_slot;
    void *ctl_main, *ctl_router;
    pthread_t router;
    int router_started;
    /* shutdown */
    atomic_int stopping;
    atomic_long suspended;
    /* metrics and log throttling */
    s_metrics_t m;
    atomic_llong log_sec;
    atomic_int log_count;
    atomic_uint_fast64_t log_suppressed;
    /* router thread only */
    pm_client_t *client;
    zhashx_t *inflight; /* request id -> job (not owned) */
    int64_t next_connect_ms, next_sweep_ms;
    int draining;
};

/* ==== request parsing (pure) ====================================================== */

const char *
pm_http_route_name(pm_http_route_t route)
{
    static const char *names[] = {"none",   "healthz", "readyz",  "metrics", "create",   "list",
                                  "get",    "resolve", "reject",  "cancel",  "heartbeat"};
    return route >= 0 && route < PM_HTTP_ROUTE_COUNT ? names[route] : "none";
}

int
pm_http_status_of(int err)
{
    switch (err) {
    case PM_OK:
        return 200;
    case PM_ERR_NOT_FOUND:
        return 404;
    case PM_ERR_ALREADY_SETTLED:
    case PM_ERR_NOT_HOLDER:
        return 409;
    case PM_ERR_TIMED_OUT:
        return 410;
    case PM_ERR_VALUE_TOO_LARGE:
        return 413;
    case PM_ERR_BAD_REQUEST:
        return 400;
    case PM_ERR_LIMIT:
        return 429;
    case PM_ERR_WAIT_TIMEOUT:
        return 504;
    case PM_ERR_AGENT_SHUTTING_DOWN:
    case PM_ERR_UNREACHABLE:
    case PM_ERR_OWNER_LOST:
    case PM_ERR_NO_SESSION:
    case PM_ERR_UNAVAILABLE:
        return 503;
    default:
        return 500;
    }
}

/* A JSON string of s; bytes that would make it invalid UTF-8 (messages can
 * quote a client's input) become '?'. */
static json_t *
s_safe_string(const char *s)
{
    size_t len = strlen(s);
    if (pm_pjson_is_text(s, len))
        return json_stringn(s, len);
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char) *p >= 0x80)
            *p = '?';
    json_t *j = json_string(copy);
    free(copy);
    return j;
}

char *
pm_http_error_body(const char *code, const char *message)
{
    json_t *o = json_object();
    char *text = NULL;
    if (o && json_object_set_new(o, "error", s_safe_string(code ? code : "INTERNAL")) == 0 &&
        json_object_set_new(o, "message", s_safe_string(message ? message : "")) == 0)
        text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *out = realloc(text, n + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}

void
pm_http_req_clear(pm_http_req_t *r)
{
    if (!r)
        return;
    free(r->id);
    free((char *) r->create.idempotency_key);
    for (size_t i = 0; i < r->create.label_count; i++) {
        free((char *) r->create.labels[i].key);
        free((char *) r->create.labels[i].value);
    }
    free((pm_label_t *) r->create.labels);
    free((char *) r->list.prefix);
    free((char *) r->list.label_key);
    free((char *) r->list.label_value);
    free((char *) r->list.cursor);
    free(r->value);
    free(r->reason);
    memset(r, 0, sizeof *r);
}

static int
s_refuse(pm_http_req_t *r, int status, const char *error, const char *refusal, const char *fmt,
         ...) __attribute__((format(printf, 5, 6)));

static int
s_refuse(pm_http_req_t *r, int status, const char *error, const char *refusal, const char *fmt,
         ...)
{
    r->status = status;
    r->error = error;
    r->refusal = refusal;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    return -1;
}

#define S_BAD(r, ...) s_refuse(r, 400, "BAD_REQUEST", "bad_request", __VA_ARGS__)

/* Promise ids are made of node names ([A-Za-z0-9._-]), '~' and base36: any
 * other byte means the id cannot exist, and keeps junk out of logs. */
static int
s_valid_id(const char *s, size_t len)
{
    if (len == 0 || len > PM_WIRE_MAX_NAME)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '~'))
            return 0;
    }
    return 1;
}

/* A JSON string field as a C string without NUL bytes, at most max bytes. */
static int
s_json_text(pm_http_req_t *r, json_t *v, const char *field, size_t max, char **out)
{
    if (!json_is_string(v))
        return S_BAD(r, "field \"%s\" must be a string", field);
    size_t len = json_string_length(v);
    const char *s = json_string_value(v);
    if (memchr(s, '\0', len))
        return S_BAD(r, "field \"%s\" must not contain NUL", field);
    if (len > max)
        return S_BAD(r, "field \"%s\" is longer than %zu bytes", field, max);
    *out = strdup(s);
    return *out ? 0 : s_refuse(r, 500, "INTERNAL", "internal", "out of memory");
}

static int
s_json_duration(pm_http_req_t *r, json_t *v, const char *field, int64_t *ms)
{
    if (!json_is_string(v) || pm_parse_duration(json_string_value(v), ms) != 0 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return S_BAD(r, "field \"%s\" must be a duration such as \"250ms\", \"60s\", \"5m\", "
                        "\"2h\"",
                     field);
    return 0;
}

/* The body as a JSON object; an empty (or all-blank) body is {}. NULL with
 * the refusal set on error. Caller owns the reference. */
static json_t *
s_body_object(pm_http_req_t *r, const char *body, size_t len)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i == len) {
        json_t *o = json_object();
        if (!o)
            s_refuse(r, 500, "INTERNAL", "internal", "out of memory");
        return o;
    }
    json_error_t jerr;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!o) {
        S_BAD(r, "malformed JSON body: %s (line %d, column %d)", jerr.text, jerr.line,
              jerr.column);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        S_BAD(r, "the body must be a JSON object");
        return NULL;
    }
    return o;
}

/* Refuses any key of o not in allowed (NULL-terminated). */
static int
s_only_keys(pm_http_req_t *r, json_t *o, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        int known = 0;
        for (size_t i = 0; allowed[i] && !known; i++)
            known = strcmp(k, allowed[i]) == 0;
        if (!known) {
            char shown[64];
            snprintf(shown, sizeof shown, "%s", k);
            for (char *p = shown; *p; p++)
                if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                    *p = '?';
            return S_BAD(r, "unknown field \"%s\"", shown);
        }
    }
    return 0;
}

static int
s_parse_create(pm_http_req_t *r, json_t *o, const pm_http_policy_t *policy)
{
    static const char *const keys[] = {"timeout",   "heartbeat", "idempotency_key",
                                       "labels",    "token_ttl", NULL};
    if (s_only_keys(r, o, keys))
        return -1;
    json_t *v;
    int64_t ttl = 0;
    if ((v = json_object_get(o, "token_ttl")) && s_json_duration(r, v, "token_ttl", &ttl))
        return -1;
    if (ttl > 0) /* rounded up to whole seconds: never shorter than asked */
        r->token_exp_s = (policy->now_ms + ttl + 999) / 1000;
    if ((v = json_object_get(o, "timeout")) && s_json_duration(r, v, "timeout", &r->create.timeout_ms))
        return -1;
    if ((v = json_object_get(o, "heartbeat")) &&
        s_json_duration(r, v, "heartbeat", &r->create.heartbeat_ms))
        return -1;
    if ((v = json_object_get(o, "idempotency_key"))) {
        char *key = NULL;
        if (s_json_text(r, v, "idempotency_key", PM_WIRE_MAX_NAME, &key))
            return -1;
        if (*key)
            r->create.idempotency_key = key;
        else
            free(key);
    }
    if ((v = json_object_get(o, "labels"))) {
        if (!json_is_object(v))
            return S_BAD(r, "field \"labels\" must be an object of strings");
        size_t n = json_object_size(v);
        if (n > policy->max_labels)
            return s_refuse(r, 400, "BAD_REQUEST", "too_many_labels",
                            "%zu labels; the agent takes at most %zu", n, policy->max_labels);
        pm_label_t *labels = calloc(n ? n : 1, sizeof *labels);
        if (!labels)
            return s_refuse(r, 500, "INTERNAL", "internal", "out of memory");
        r->create.labels = labels;
        const char *k;
        json_t *lv;
        json_object_foreach(v, k, lv)
        {
            size_t klen = strlen(k);
            if (klen == 0 || klen > PM_WIRE_MAX_NAME)
                return S_BAD(r, "a label key must be 1 to %d bytes", PM_WIRE_MAX_NAME);
            char *value = NULL;
            if (s_json_text(r, lv, "labels.*", PM_WIRE_MAX_NAME, &value))
                return -1;
            labels[r->create.label_count].value = value;
            labels[r->create.label_count].key = strdup(k);
            r->create.label_count++;
            if (!labels[r->create.label_count - 1].key)
                return s_refuse(r, 500, "INTERNAL", "internal", "out of memory");
        }
    }
    return 0;
}

static int
s_parse_resolve(pm_http_req_t *r, json_t *o, const pm_http_policy_t *policy)
{
    static const char *const keys[] = {"value", "value_b64", NULL};
    if (s_only_keys(r, o, keys))
        return -1;
    json_t *text = json_object_get(o, "value");
    json_t *b64 = json_object_get(o, "value_b64");
    if (!text == !b64)
        return S_BAD(r, "give exactly one of \"value\" (a string) and \"value_b64\" (base64)");
    if (text) {
        if (!json_is_string(text))
            return S_BAD(r, "field \"value\" must be a string (use value_b64 for bytes)");
        size_t len = json_string_length(text);
        if (len > policy->max_value_bytes)
            return s_refuse(r, 413, "VALUE_TOO_LARGE", "value_too_large",
                            "value is %zu bytes; the agent takes at most %zu", len,
                            policy->max_value_bytes);
        r->value = malloc(len + 1);
        if (!r->value)
            return s_refuse(r, 500, "INTERNAL", "internal", "out of memory");
        memcpy(r->value, json_string_value(text), len);
        r->value[len] = 0;
        r->value_len = len;
        return 0;
    }
    if (!json_is_string(b64))
        return S_BAD(r, "field \"value_b64\" must be a base64 string");
    const char *s = json_string_value(b64);
    size_t slen = json_string_length(b64);
    size_t cap = slen / 4 * 3 + 3;
    if (cap - 3 > policy->max_value_bytes + 3)
        return s_refuse(r, 413, "VALUE_TOO_LARGE", "value_too_large",
                        "value is over %zu bytes; the agent takes at most that",
                        policy->max_value_bytes);
    r->value = malloc(cap + 1);
    if (!r->value)
        return s_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    size_t n = 0;
    if (memchr(s, '\0', slen) ||
        (sodium_base642bin(r->value, cap, s, slen, NULL, &n, NULL,
                           sodium_base64_VARIANT_ORIGINAL) != 0 &&
         sodium_base642bin(r->value, cap, s, slen, NULL, &n, NULL,
                           sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0))
        return S_BAD(r, "field \"value_b64\" is not valid base64 (RFC 4648, standard alphabet)");
    if (n > policy->max_value_bytes)
        return s_refuse(r, 413, "VALUE_TOO_LARGE", "value_too_large",
                        "value is %zu bytes; the agent takes at most %zu", n,
                        policy->max_value_bytes);
    r->value[n] = 0;
    r->value_len = n;
    return 0;
}

/* RFC 6750 challenges: no credential, a wrong one, not enough scope. */
#define S_CHALLENGE "Bearer realm=\"pmesh\""
#define S_CHALLENGE_BAD "Bearer realm=\"pmesh\", error=\"invalid_token\""
#define S_CHALLENGE_SCOPE "Bearer realm=\"pmesh\", error=\"insufficient_scope\""

/* The credential of `Authorization: Bearer X`: *cred and *len, or 0 with
 * none (no header), or -1 with a malformed header. */
static int
s_bearer(const char *a, const char **cred, size_t *len)
{
    *cred = NULL;
    *len = 0;
    if (!a)
        return 0;
    if (strncasecmp(a, "Bearer", 6) != 0 || (a[6] != ' ' && a[6] != '\t'))
        return -1;
    a += 6;
    while (*a == ' ' || *a == '\t')
        a++;
    size_t n = 0;
    while (a[n] && a[n] != ' ' && a[n] != '\t')
        n++;
    const char *rest = a + n;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    if (n == 0 || *rest)
        return -1;
    *cred = a;
    *len = n;
    return 1;
}

/* Who may do what (see http.h): decides r->caller from the Authorization
 * header before anything about the promise is looked up, so a refusal says
 * nothing about whether it exists. */
static int
s_authorize(pm_http_req_t *r, const char *authorization, const pm_http_policy_t *policy)
{
    int token_route = r->route == PM_HTTP_ROUTE_GET ||
                      (r->route >= PM_HTTP_ROUTE_RESOLVE && r->route <= PM_HTTP_ROUTE_HEARTBEAT);
    pm_scope_t need = r->route == PM_HTTP_ROUTE_GET || r->route == PM_HTTP_ROUTE_LIST
                          ? PM_SCOPE_READ
                          : PM_SCOPE_WRITE;
    const char *cred;
    size_t len;
    int has = s_bearer(authorization, &cred, &len);
    if (has < 0) {
        r->challenge = S_CHALLENGE;
        return s_refuse(r, 401, "UNAUTHORIZED", "no_credential",
                        "the Authorization header must be 'Bearer <credential>'");
    }
    if (has == 0) {
        if (policy->anonymous && !policy->public_listener) {
            r->caller = PM_HTTP_CALLER_WRITE;
            return 0;
        }
        r->challenge = S_CHALLENGE;
        return s_refuse(r, 401, "UNAUTHORIZED", "no_credential",
                        token_route && policy->public_listener
                            ? "this needs 'Authorization: Bearer <settle_token>' of the promise"
                        : token_route
                            ? "this needs 'Authorization: Bearer <settle_token or API key>'"
                            : "this needs 'Authorization: Bearer <API key>'");
    }
    /* An API key (never on the public listener). */
    if (!policy->public_listener && policy->keys) {
        const char *name = NULL;
        pm_scope_t scope = pm_apikeys_match(policy->keys, cred, len, &name);
        if (scope != PM_SCOPE_NONE) {
            snprintf(r->key_name, sizeof r->key_name, "%s", name ? name : "");
            if (scope < need) {
                r->challenge = S_CHALLENGE_SCOPE;
                return s_refuse(r, 403, "FORBIDDEN", "wrong_scope",
                                "the API key %s has scope %s; this needs %s", r->key_name,
                                pm_scope_name(scope), pm_scope_name(need));
            }
            r->caller = scope == PM_SCOPE_WRITE ? PM_HTTP_CALLER_WRITE : PM_HTTP_CALLER_READ;
            return 0;
        }
    }
    /* The settle token of this promise. */
    if (token_route && !policy->key) {
        r->challenge = S_CHALLENGE_BAD;
        return s_refuse(r, 403, "FORBIDDEN", "tokens_disabled",
                        "settle tokens are disabled: this agent has no token_secret_file");
    }
    if (token_route && len <= PM_TOKEN_MAX) {
        char token[PM_TOKEN_MAX + 1];
        memcpy(token, cred, len);
        token[len] = 0;
        int64_t exp = 0;
        int64_t now_s = policy->now_ms / 1000;
        int v = pm_token_verify(policy->key, policy->keylen, r->id, token, now_s, &exp);
        if (v == PM_TOKEN_OK) {
            r->caller = PM_HTTP_CALLER_TOKEN;
            return 0;
        }
        if (v == PM_TOKEN_EXPIRED) {
            r->challenge = S_CHALLENGE_BAD;
            return s_refuse(r, 403, "TOKEN_EXPIRED", "token_expired",
                            "the settle token expired %lld s ago (at unix time %lld); ask its "
                            "issuer for a new one",
                            (long long) (now_s - exp), (long long) exp);
        }
    }
    r->challenge = S_CHALLENGE_BAD;
    return s_refuse(r, 403, "FORBIDDEN", "bad_credential",
                    token_route ? "the credential does not grant this request on this promise"
                                : "the credential does not grant this request");
}

static const char *
s_query(const pm_http_kv_t *query, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (query[i].key && strcmp(query[i].key, key) == 0)
            return query[i].value ? query[i].value : "";
    return NULL;
}

/* Every query key must be in allowed and appear once. */
static int
s_check_query(pm_http_req_t *r, const pm_http_kv_t *query, size_t n, const char *const *allowed)
{
    for (size_t i = 0; i < n; i++) {
        const char *k = query[i].key ? query[i].key : "";
        int known = 0;
        for (size_t a = 0; allowed[a] && !known; a++)
            known = strcmp(k, allowed[a]) == 0;
        if (!known) {
            char takes[96] = "";
            for (size_t a = 0; allowed[a]; a++)
                snprintf(takes + strlen(takes), sizeof takes - strlen(takes), "%s%s",
                         a ? ", " : "", allowed[a]);
            return S_BAD(r, "unknown query parameter (this path takes %s)",
                         *takes ? takes : "none");
        }
        for (size_t j = 0; j < i; j++)
            if (query[j].key && strcmp(query[j].key, k) == 0)
                return S_BAD(r, "a query parameter is given twice");
    }
    return 0;
}

static int
s_parse_list(pm_http_req_t *r, const pm_http_kv_t *query, size_t n)
{
    static const char *const keys[] = {"state", "prefix", "label", "limit", "cursor", NULL};
    if (s_check_query(r, query, n, keys))
        return -1;
    const char *v;
    if ((v = s_query(query, n, "state")) && *v) {
        r->list.state = pm_state_parse(v);
        if (!r->list.state)
            return S_BAD(r, "state must be pending, resolved, rejected, canceled or timedout");
    }
    if ((v = s_query(query, n, "prefix")) && *v) {
        if (strlen(v) > PM_WIRE_MAX_NAME)
            return S_BAD(r, "prefix is longer than %d bytes", PM_WIRE_MAX_NAME);
        if (!(r->list.prefix = strdup(v)))
            return s_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    }
    if ((v = s_query(query, n, "label")) && *v) {
        const char *eq = strchr(v, '=');
        size_t klen = eq ? (size_t) (eq - v) : strlen(v);
        if (klen == 0 || klen > PM_WIRE_MAX_NAME || (eq && strlen(eq + 1) > PM_WIRE_MAX_NAME))
            return S_BAD(r, "label must be KEY or KEY=VALUE (each 1 to %d bytes)",
                         PM_WIRE_MAX_NAME);
        r->list.label_key = strndup(v, klen);
        r->list.label_value = eq ? strdup(eq + 1) : NULL;
        if (!r->list.label_key || (eq && !r->list.label_value))
            return s_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    }
    if ((v = s_query(query, n, "limit"))) {
        char *end;
        errno = 0;
        long lim = strtol(v, &end, 10);
        if (!*v || *end || errno || lim < 1 || lim > 10000 || *v == '+' || *v == ' ')
            return S_BAD(r, "limit must be an integer from 1 to 10000");
        r->list.limit = (uint32_t) lim;
    }
    if ((v = s_query(query, n, "cursor")) && *v) {
        if (strlen(v) > 2 * PM_WIRE_MAX_NAME)
            return S_BAD(r, "cursor is too long");
        if (!(r->list.cursor = strdup(v)))
            return s_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    }
    return 0;
}

int
pm_http_parse_request(const char *method, const char *path, const pm_http_kv_t *query,
                      size_t nquery, const char *authorization, const char *body,
                      size_t body_len, const pm_http_policy_t *policy, pm_http_req_t *r)
{
    memset(r, 0, sizeof *r);
    if (!method || !path)
        return S_BAD(r, "no method or path");
    if (!body)
        body_len = 0;
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int is_post = strcmp(method, "POST") == 0;

    /* Routing: fixed paths, then /v1/promises[/{id}[/{action}]]. */
    static const struct {
        const char *path;
        pm_http_route_t route;
    } fixed[] = {{"/healthz", PM_HTTP_ROUTE_HEALTHZ},
                 {"/readyz", PM_HTTP_ROUTE_READYZ},
                 {"/metrics", PM_HTTP_ROUTE_METRICS}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (strcmp(path, fixed[i].path) != 0)
            continue;
        if (policy->public_listener && fixed[i].route != PM_HTTP_ROUTE_HEALTHZ)
            return s_refuse(r, 404, "NOT_FOUND", "public_route",
                            "this listener serves only /healthz and a promise's own routes");
        if (!is_get) {
            r->allow = "GET, HEAD";
            return s_refuse(r, 405, "METHOD_NOT_ALLOWED", "bad_method", "%s takes GET",
                            fixed[i].path);
        }
        r->route = fixed[i].route;
        return 0; /* query arguments of probes and scrapers are ignored */
    }
    static const char base[] = "/v1/promises";
    if (strncmp(path, base, sizeof base - 1) != 0 ||
        (path[sizeof base - 1] != '\0' && path[sizeof base - 1] != '/'))
        return s_refuse(r, 404, "NOT_FOUND", "no_route", "no such path");
    const char *rest = path + sizeof base - 1;
    if (*rest == '\0' && policy->public_listener)
        return s_refuse(r, 404, "NOT_FOUND", "public_route",
                        "this listener serves only /healthz and a promise's own routes "
                        "(/v1/promises/{id}...)");
    if (*rest == '\0') {
        if (is_post)
            r->route = PM_HTTP_ROUTE_CREATE;
        else if (is_get)
            r->route = PM_HTTP_ROUTE_LIST;
        else {
            r->allow = "GET, HEAD, POST";
            return s_refuse(r, 405, "METHOD_NOT_ALLOWED", "bad_method",
                            "/v1/promises takes GET (list) and POST (create)");
        }
    } else {
        rest++; /* the '/' */
        const char *slash = strchr(rest, '/');
        size_t idlen = slash ? (size_t) (slash - rest) : strlen(rest);
        if (idlen == 0)
            return s_refuse(r, 404, "NOT_FOUND", "no_route", "no such path");
        if (!slash) {
            if (!is_get) {
                r->allow = "GET, HEAD";
                return s_refuse(r, 405, "METHOD_NOT_ALLOWED", "bad_method",
                                "a promise takes GET; settle it with POST .../resolve, "
                                ".../reject, .../cancel");
            }
            r->route = PM_HTTP_ROUTE_GET;
        } else {
            static const struct {
                const char *name;
                pm_http_route_t route;
            } actions[] = {{"resolve", PM_HTTP_ROUTE_RESOLVE},
                           {"reject", PM_HTTP_ROUTE_REJECT},
                           {"cancel", PM_HTTP_ROUTE_CANCEL},
                           {"heartbeat", PM_HTTP_ROUTE_HEARTBEAT}};
            for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
                if (strcmp(slash + 1, actions[i].name) == 0)
                    r->route = actions[i].route;
            if (!r->route)
                return s_refuse(r, 404, "NOT_FOUND", "no_route", "no such path");
            if (!is_post) {
                r->route = PM_HTTP_ROUTE_NONE;
                r->allow = "POST";
                return s_refuse(r, 405, "METHOD_NOT_ALLOWED", "bad_method",
                                "settling takes POST");
            }
        }
        if (!s_valid_id(rest, idlen)) {
            r->route = PM_HTTP_ROUTE_NONE;
            return S_BAD(r, "malformed promise id");
        }
        if (!(r->id = strndup(rest, idlen)))
            return s_refuse(r, 500, "INTERNAL", "internal", "out of memory");
    }

    /* The credential first, so nothing else is revealed without it. */
    if (s_authorize(r, authorization, policy))
        return -1;
    if (body_len > policy->max_value_bytes + S_BODY_SLACK)
        return s_refuse(r, 413, "VALUE_TOO_LARGE", "body_too_large",
                        "body is over %zu bytes (max_value_bytes + 64 KiB)",
                        policy->max_value_bytes + S_BODY_SLACK);

    static const char *const none[] = {NULL};
    switch (r->route) {
    case PM_HTTP_ROUTE_LIST:
        return s_parse_list(r, query, nquery);
    case PM_HTTP_ROUTE_GET: {
        static const char *const keys[] = {"wait", NULL};
        if (s_check_query(r, query, nquery, keys))
            return -1;
        const char *w = s_query(query, nquery, "wait");
        if (w) {
            int64_t ms;
            if (pm_parse_duration(w, &ms) != 0)
                return S_BAD(r, "wait must be a duration such as \"30s\"");
            r->wait_ms = ms < policy->max_wait_ms ? ms : policy->max_wait_ms;
        }
        return 0;
    }
    default:
        break;
    }
    /* The POST routes: no query, a JSON object body. */
    if (s_check_query(r, query, nquery, none))
        return -1;
    json_t *o = s_body_object(r, body, body_len);
    if (!o)
        return -1;
    int rc = 0;
    switch (r->route) {
    case PM_HTTP_ROUTE_CREATE:
        rc = s_parse_create(r, o, policy);
        break;
    case PM_HTTP_ROUTE_RESOLVE:
        rc = s_parse_resolve(r, o, policy);
        break;
    case PM_HTTP_ROUTE_REJECT: {
        static const char *const keys[] = {"reason", NULL};
        json_t *v;
        rc = s_only_keys(r, o, keys);
        if (!rc && (v = json_object_get(o, "reason"))) {
            rc = s_json_text(r, v, "reason", policy->max_value_bytes, &r->reason);
            if (rc && r->status == 400 && json_is_string(v) &&
                json_string_length(v) > policy->max_value_bytes)
                rc = s_refuse(r, 413, "VALUE_TOO_LARGE", "value_too_large",
                              "reason is over %zu bytes", policy->max_value_bytes);
        }
        break;
    }
    default: /* cancel, heartbeat: nothing to say */
        rc = s_only_keys(r, o, none);
        break;
    }
    json_decref(o);
    return rc;
}

/* ==== metrics and refusal logs ==================================================== */

static void
s_count_response(pm_http_t *self, pm_http_route_t route, int status, int64_t t0_us)
{
    size_t i = 0;
    while (i < S_NCODES && s_codes[i] != status)
        i++;
    atomic_fetch_add_explicit(&self->m.by_code[i], 1, memory_order_relaxed);
    int64_t us = pm_mono_us() - t0_us;
    size_t b = 0;
    while (b < S_NBUCKETS && us > s_le_us[b])
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

/* Counts a refusal and logs it (throttled) with a stable tag per kind. */
static void
s_note_refusal(pm_http_t *self, const char *refusal, int status, const char *error,
               const char *method, const char *path, const char *id, const char *message)
{
    size_t i = 0;
    while (i < S_NREFUSALS && strcmp(s_refusals[i], refusal ? refusal : "internal") != 0)
        i++;
    if (i == S_NREFUSALS)
        i = S_NREFUSALS - 1;
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
s_queue(s_job_t *job, int status, char *body, const char *ctype, const char *allow)
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
    job->stage = S_DONE;
    return rc;
}

/* Answers a refusal decided on the MHD side. */
static enum MHD_Result
s_queue_refusal(s_job_t *job, const char *method, const char *path)
{
    pm_http_req_t *r = &job->req;
    s_note_refusal(job->gw, r->refusal, r->status, r->error, method, path, r->id, r->message);
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
    pm_http_t *self = ((s_listener_t *) cls)->gw;
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
    s_listener_t *lst = cls;
    pm_http_t *self = lst->gw;
    s_job_t *job = *con_cls;
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
            s_refuse(&job->req, 503, "LIMIT", "connection_limit",
                     "more than %ld concurrent connections (http_max_connections)",
                     self->max_conns);
            return s_queue_refusal(job, method, url);
        }
        /* Refuse an announced oversized body before reading a byte of it. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > self->max_body) {
            s_refuse(&job->req, 413, "VALUE_TOO_LARGE", "body_too_large",
                     "body is over %zu bytes (max_value_bytes + 64 KiB)", self->max_body);
            return s_queue_refusal(job, method, url);
        }
        return MHD_YES;
    }
    switch (job->stage) {
    case S_AWAY:
        return MHD_YES; /* not ours until resumed */
    case S_BACK: {
        if (job->counted) {
            job->counted = 0;
            atomic_fetch_sub(&self->suspended, 1);
        }
        char *resp = job->resp;
        job->resp = NULL;
        return s_queue(job, job->status, resp, job->ctype, NULL);
    }
    case S_DONE:
        *upload_data_size = 0; /* the rest of a refused body */
        return MHD_YES;
    case S_NEW:
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
        s_refuse(&job->req, 413, "VALUE_TOO_LARGE", "body_too_large",
                 "body is over %zu bytes (max_value_bytes + 64 KiB)", self->max_body);
        return s_queue_refusal(job, method, url);
    }
    s_kv_collect_t args = {.n = 0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, s_collect_arg, &args);
    const char *auth =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (args.overflow) {
        S_BAD(&job->req, "more than %d query parameters", S_MAX_QUERY);
        return s_queue_refusal(job, method, url);
    }
    pm_http_policy_t policy = self->policy;
    policy.keys = atomic_load_explicit(&self->keys, memory_order_acquire);
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
        s_refuse(&job->req, 503, push ? "AGENT_SHUTTING_DOWN" : "INTERNAL",
                 push ? "unavailable" : "internal",
                 push ? "the gateway is stopping" : "no request channel for this thread");
        return s_queue_refusal(job, method, url);
    }
    /* Suspend first, then hand over: the router may resume at once. */
    job->stage = S_AWAY;
    job->counted = 1;
    atomic_fetch_add(&self->suspended, 1);
    MHD_suspend_connection(conn);
    if (zmq_send(push, &job, sizeof job, ZMQ_DONTWAIT) != (int) sizeof job) {
        job->status = 500;
        job->resp = pm_http_error_body("INTERNAL", "could not reach the gateway thread");
        s_note_refusal(self, "internal", 500, "INTERNAL", method, url, job->req.id,
                       zmq_strerror(errno));
        job->stage = S_BACK;
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
    pm_http_t *self = ((s_listener_t *) cls)->gw;
    s_job_t *job = *con_cls;
    if (!job)
        return;
    *con_cls = NULL;
    if (job->stage == S_AWAY) {
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
        s_note_refusal(self, "connection_limit", 503, "LIMIT", "-", "-", NULL, msg);
        return;
    }
    if (strstr(msg, "431") || strstr(msg, "too big") || strstr(msg, "Too Large")) {
        s_note_refusal(self, "header_too_large", 431, "HEADER_TOO_LARGE", "-", "-", NULL, msg);
        return;
    }
    pm_log_debug("PM-HTTP-MHD", "%s", msg);
}

/* ==== router thread =============================================================== */

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

/* Hands the job back to MHD with status, body (owned) and content type
 * (NULL: JSON). After this the job must not be touched: MHD may already be
 * sending the answer and freeing the job. */
static void
s_answer_typed(s_job_t *job, int status, char *body, const char *ctype)
{
    job->status = status;
    free(job->resp);
    job->resp = body;
    job->ctype = ctype;
    job->stage = S_BACK;
    MHD_resume_connection(job->conn);
}

static void
s_answer(s_job_t *job, int status, char *body)
{
    s_answer_typed(job, status, body, NULL);
}

/* Forgets every outstanding request id of the job (late replies are then
 * dropped). Router thread. */
static void
s_untrack(pm_http_t *self, s_job_t *job)
{
    for (int i = 0; i < 2; i++) {
        if (!job->reqs[i])
            continue;
        zhashx_delete(self->inflight, (void *) (uintptr_t) job->reqs[i]);
        job->reqs[i] = 0;
    }
}

static void
s_track(pm_http_t *self, s_job_t *job, uint64_t req, pm_op_t op)
{
    int i = job->reqs[0] ? 1 : 0;
    job->reqs[i] = req;
    job->ops[i] = op;
    zhashx_insert(self->inflight, (void *) (uintptr_t) req, job);
}

/* Answers with the error err (message: the agent's words, or ours). */
static void
s_fail(pm_http_t *self, s_job_t *job, int err, const char *message)
{
    s_untrack(self, job);
    int status = pm_http_status_of(err);
    const char *msg = message && *message ? message : pm_strerror(err);
    if (status == 503 || status == 500)
        s_note_refusal(self, status == 503 ? "unavailable" : "internal", status,
                       pm_err_name(err), pm_http_route_name(job->req.route), "-", job->req.id,
                       msg);
    s_answer(job, status, pm_http_error_body(pm_err_name(err), msg));
}

static char *
s_dump_line(json_t *o)
{
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *out = realloc(text, n + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = 0;
    return out;
}

/* The promise JSON, or {"id":..,"state":..} if the get that followed a
 * successful operation failed. */
static char *
s_promise_body(s_job_t *job, const char *id, int fallback_state, pm_http_t *self, int with_token)
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
    char *text = s_dump_line(o);
    json_decref(o);
    return text;
}

/* Everything this job waited for has come: answer or take the next step. */
static void
s_advance(pm_http_t *self, s_job_t *job)
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
    s_job_t *job = zhashx_lookup(self->inflight, (void *) (uintptr_t) res->req_id);
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
s_sent(pm_http_t *self, s_job_t *job, int err, uint64_t req, pm_op_t op)
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

static json_int_t
s_jint(json_t *root, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *v = root;
    for (char *save = NULL, *part = strtok_r(buf, ".", &save); part && v;
         part = strtok_r(NULL, ".", &save))
        v = json_object_get(v, part);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

static void
s_readyz(pm_http_t *self, s_job_t *job)
{
    char *status = NULL;
    int err = self->client ? pm_status(self->client, &status) : PM_ERR_UNREACHABLE;
    char why[200] = "";
    json_t *st = NULL;
    if (err) {
        snprintf(why, sizeof why, "the agent does not answer: %s", pm_strerror(err));
        if (err == PM_ERR_UNREACHABLE && self->client)
            s_lost(self, why);
    } else if (!(st = json_loads(status, 0, NULL))) {
        snprintf(why, sizeof why, "the agent's status is not JSON");
    } else if (json_is_true(json_object_get(json_object_get(st, "wal"), "failed"))) {
        snprintf(why, sizeof why, "the agent's write-ahead log has failed");
    } else if (json_object_get(st, "mesh")) {
        json_int_t alive = s_jint(st, "mesh.members.alive");
        if (alive < 1)
            snprintf(why, sizeof why, "no alive mesh member (not even this agent)");
        else if (alive < 2 && self->has_seeds && pm_mono_ms() - self->started_ms < S_JOIN_GRACE_MS)
            snprintf(why, sizeof why, "not joined yet: alone, still waiting for a seed");
    }
    if (*why) {
        free(status);
        json_decref(st);
        s_answer(job, 503, pm_http_error_body("NOT_READY", why));
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "ready", json_true());
    json_t *node = json_object_get(st, "node");
    if (node)
        json_object_set(o, "node", node);
    if (json_object_get(st, "mesh"))
        json_object_set_new(o, "members_alive", json_integer(s_jint(st, "mesh.members.alive")));
    char *body = s_dump_line(o);
    json_decref(o);
    json_decref(st);
    free(status);
    s_answer(job, body ? 200 : 500, body ? body : pm_http_error_body("INTERNAL", "out of memory"));
}

static void
s_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static void
s_label_value(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            fputc('\\', f), fputc(*s, f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* One sample per key of obj (integer values), labelled label="key". */
static void
s_samples_by_key(FILE *f, const char *name, json_t *obj, const char *label, const char *skip)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (!json_is_integer(v) || (skip && strcmp(k, skip) == 0))
            continue;
        fprintf(f, "%s{%s=\"", name, label);
        s_label_value(f, k);
        fprintf(f, "\"} %lld\n", (long long) json_integer_value(v));
    }
}

/* One histogram from the agent's JSON form ({"le_ms":[..],"buckets":[cumulative..],
 * "count":n,"sum_ms":x}) as Prometheus samples in seconds. */
static void
s_histogram(FILE *f, const char *name, const char *labels, json_t *h)
{
    json_t *le = json_object_get(h, "le_ms"), *b = json_object_get(h, "buckets");
    if (!json_is_array(le) || !json_is_array(b))
        return;
    const char *sep = labels && *labels ? "," : "";
    for (size_t i = 0; i < json_array_size(le) && i < json_array_size(b); i++)
        fprintf(f, "%s_bucket{%s%sle=\"%g\"} %lld\n", name, labels ? labels : "", sep,
                json_number_value(json_array_get(le, i)) / 1000.0,
                (long long) json_integer_value(json_array_get(b, i)));
    fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %lld\n", name, labels ? labels : "", sep,
            (long long) s_jint(h, "count"));
    int lab = labels && *labels;
    fprintf(f, "%s_sum%s%s%s %g\n", name, lab ? "{" : "", lab ? labels : "", lab ? "}" : "",
            json_number_value(json_object_get(h, "sum_ms")) / 1000.0);
    fprintf(f, "%s_count%s%s%s %lld\n", name, lab ? "{" : "", lab ? labels : "", lab ? "}" : "",
            (long long) s_jint(h, "count"));
}

static void
s_metrics_agent(FILE *f, json_t *st)
{
    json_t *v;
    fprintf(f, "# HELP pmesh_uptime_seconds Seconds since the agent started.\n"
               "# TYPE pmesh_uptime_seconds gauge\npmesh_uptime_seconds %.3f\n",
            (double) s_jint(st, "uptime_ms") / 1000.0);
    if ((v = json_object_get(st, "promises"))) {
        s_family(f, "pmesh_promises", "gauge", "Promises held by this agent, by state.");
        s_samples_by_key(f, "pmesh_promises", v, "state", "total");
    }
    if ((v = json_object_get(st, "ops"))) {
        s_family(f, "pmesh_operations_total", "counter",
                 "Requests the agent handled, by message type and result.");
        const char *k;
        json_t *op;
        json_object_foreach(v, k, op)
        {
            for (int ok = 1; ok >= 0; ok--) {
                json_t *n = json_object_get(op, ok ? "ok" : "error");
                if (!json_is_integer(n))
                    continue;
                fprintf(f, "pmesh_operations_total{type=\"");
                s_label_value(f, k);
                fprintf(f, "\",result=\"%s\"} %lld\n", ok ? "ok" : "error",
                        (long long) json_integer_value(n));
            }
        }
    }
    if ((v = json_object_get(st, "clients"))) {
        s_family(f, "pmesh_clients", "gauge",
                 "Client sessions, open awaits (waiters) and registered workers.");
        s_samples_by_key(f, "pmesh_clients", v, "kind", "expired");
        s_family(f, "pmesh_sessions_expired_total", "counter",
                 "Client sessions closed for silence.");
        fprintf(f, "pmesh_sessions_expired_total %lld\n",
                (long long) s_jint(st, "clients.expired"));
    }
    if ((v = json_object_get(st, "invocations"))) {
        s_family(f, "pmesh_invocations", "gauge", "Function invocations queued and in flight.");
        fprintf(f, "pmesh_invocations{state=\"queued\"} %lld\n",
                (long long) s_jint(st, "invocations.queued"));
        fprintf(f, "pmesh_invocations{state=\"inflight\"} %lld\n",
                (long long) s_jint(st, "invocations.inflight"));
        s_family(f, "pmesh_invocation_events_total", "counter",
                 "Function invocation events (invoked, dispatched, completed, failed, ...).");
        const char *k;
        json_t *n;
        json_object_foreach(v, k, n)
        {
            if (!json_is_integer(n) || !strcmp(k, "queued") || !strcmp(k, "inflight"))
                continue;
            fprintf(f, "pmesh_invocation_events_total{event=\"");
            s_label_value(f, k);
            fprintf(f, "\"} %lld\n", (long long) json_integer_value(n));
        }
    }
    if ((v = json_object_get(st, "errors"))) {
        s_family(f, "pmesh_errors_total", "counter",
                 "Bad frames from clients and replies the agent could not deliver.");
        s_samples_by_key(f, "pmesh_errors_total", v, "kind", NULL);
    }
    json_t *mesh = json_object_get(st, "mesh");
    if (mesh) {
        s_family(f, "pmesh_mesh_members", "gauge", "Mesh members by SWIM state, this agent included.");
        s_samples_by_key(f, "pmesh_mesh_members", json_object_get(mesh, "members"), "state", NULL);
        static const char *dirs[] = {"sent", "received"};
        s_family(f, "pmesh_mesh_messages_total", "counter",
                 "Mesh messages by direction and type.");
        for (int d = 0; d < 2; d++) {
            const char *k;
            json_t *t;
            json_object_foreach(json_object_get(mesh, dirs[d]), k, t)
            {
                fprintf(f, "pmesh_mesh_messages_total{direction=\"%s\",type=\"", dirs[d]);
                s_label_value(f, k);
                fprintf(f, "\"} %lld\n", (long long) s_jint(t, "messages"));
            }
        }
        s_family(f, "pmesh_mesh_bytes_total", "counter", "Mesh bytes by direction and type.");
        for (int d = 0; d < 2; d++) {
            const char *k;
            json_t *t;
            json_object_foreach(json_object_get(mesh, dirs[d]), k, t)
            {
                fprintf(f, "pmesh_mesh_bytes_total{direction=\"%s\",type=\"", dirs[d]);
                s_label_value(f, k);
                fprintf(f, "\"} %lld\n", (long long) s_jint(t, "bytes"));
            }
        }
        static const char *events[] = {"suspicions",      "deaths_declared", "refutations",
                                       "dropped_stale",   "dropped_invalid", "bad_frames",
                                       "unknown_peer",    "dropped_out",     "relayed",
                                       "relay_timeouts",  "owner_lost"};
        s_family(f, "pmesh_mesh_events_total", "counter",
                 "Mesh events: SWIM suspicions and deaths, drops, relays to owners.");
        for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
            if (json_is_integer(json_object_get(mesh, events[i])))
                fprintf(f, "pmesh_mesh_events_total{event=\"%s\"} %lld\n", events[i],
                        (long long) s_jint(mesh, events[i]));
    }
    if (json_object_get(st, "wal")) {
        s_family(f, "pmesh_wal_appended_total", "counter", "Records appended to the WAL.");
        fprintf(f, "pmesh_wal_appended_total %lld\n", (long long) s_jint(st, "wal.appended"));
        s_family(f, "pmesh_wal_durable_total", "counter", "WAL records known to be on disk.");
        fprintf(f, "pmesh_wal_durable_total %lld\n", (long long) s_jint(st, "wal.durable"));
        s_family(f, "pmesh_wal_fsyncs_total", "counter", "fsync calls on the WAL.");
        fprintf(f, "pmesh_wal_fsyncs_total %lld\n", (long long) s_jint(st, "wal.fsyncs"));
        s_family(f, "pmesh_wal_log_bytes", "gauge", "Bytes in the WAL since the last snapshot.");
        fprintf(f, "pmesh_wal_log_bytes %lld\n", (long long) s_jint(st, "wal.log_bytes"));
    }
    if ((v = json_object_get(st, "latency_ms")) && json_object_size(v)) {
        s_family(f, "pmesh_operation_duration_seconds", "histogram",
                 "Time from a request's arrival to its reply leaving the agent (durable and "
                 "replicated where it acknowledges a change), by type; awaits excluded.");
        const char *k;
        json_t *h;
        json_object_foreach(v, k, h)
        {
            char labels[96];
            snprintf(labels, sizeof labels, "type=\"%s\"", k);
            s_histogram(f, "pmesh_operation_duration_seconds", labels, h);
        }
    }
    if ((v = json_object_get(st, "functions")) && json_object_size(v)) {
        s_family(f, "pmesh_function_invocations_total", "counter",
                 "Invocations by function and outcome (on this agent's workers).");
        const char *k;
        json_t *fn;
        static const char *outcomes[] = {"invoked", "completed", "failed", "retried"};
        json_object_foreach(v, k, fn)
        {
            for (size_t i = 0; i < 4; i++) {
                fprintf(f, "pmesh_function_invocations_total{function=\"");
                s_label_value(f, k);
                fprintf(f, "\",outcome=\"%s\"} %lld\n", outcomes[i],
                        (long long) s_jint(fn, outcomes[i]));
            }
        }
    }
    if ((v = json_object_get(st, "wal")) && json_object_get(v, "fsync_ms")) {
        s_family(f, "pmesh_wal_fsync_duration_seconds", "histogram", "Duration of WAL fsyncs.");
        s_histogram(f, "pmesh_wal_fsync_duration_seconds", "", json_object_get(v, "fsync_ms"));
    }
    if (json_object_get(st, "replication")) {
        s_family(f, "pmesh_replication_produced_total", "counter",
                 "Records this owner produced for its backups.");
        fprintf(f, "pmesh_replication_produced_total %lld\n",
                (long long) s_jint(st, "replication.produced"));
        s_family(f, "pmesh_replication_acked_total", "counter",
                 "Records the backups acknowledged.");
        fprintf(f, "pmesh_replication_acked_total %lld\n",
                (long long) s_jint(st, "replication.acked"));
        s_family(f, "pmesh_replication_takeovers_total", "counter",
                 "Dead owners' id spaces this agent took over.");
        fprintf(f, "pmesh_replication_takeovers_total %lld\n",
                (long long) s_jint(st, "replication.takeovers"));
    }
    /* Issue 11: the configuration store (an object only when one is used). */
    if (json_is_object(json_object_get(st, "coordination"))) {
        static const struct {
            const char *name, *type, *path, *help;
        } co[] = {
            {"pmesh_coordination_store_up", "gauge", "coordination.store_up",
             "1 when the configuration store answers."},
            {"pmesh_coordination_waiting", "gauge", "coordination.waiting",
             "Id-space changes (takeovers, in-sync set changes) waiting for the store."},
            {"pmesh_coordination_retries_total", "counter", "coordination.retries",
             "Store requests tried again after the store did not answer."},
            {"pmesh_coordination_takeovers_total", "counter", "coordination.takeovers",
             "Id spaces taken over by CAS in the store."},
            {"pmesh_coordination_forced_total", "counter", "coordination.forced",
             "Id spaces forced to this agent by an operator."},
            {"pmesh_coordination_set_changes_total", "counter", "coordination.set_changes",
             "In-sync set changes recorded by this owner."},
            {"pmesh_coordination_refused_writes_total", "counter",
             "coordination.refused_writes",
             "Writes refused UNAVAILABLE: too few backups in sync (min_in_sync)."},
        };
        for (size_t i = 0; i < sizeof co / sizeof co[0]; i++) {
            s_family(f, co[i].name, co[i].type, co[i].help);
            json_t *v = json_object_get(json_object_get(st, "coordination"),
                                        co[i].path + strlen("coordination."));
            fprintf(f, "%s %lld\n", co[i].name,
                    json_is_boolean(v) ? (long long) json_is_true(v)
                                       : (long long) json_integer_value(v));
        }
    }
}

static void
s_metrics_http(pm_http_t *self, FILE *f)
{
    s_family(f, "pmesh_http_requests_total", "counter", "HTTP responses by status code.");
    for (size_t i = 0; i <= S_NCODES; i++) {
        uint_fast64_t n = atomic_load_explicit(&self->m.by_code[i], memory_order_relaxed);
        if (i == S_NCODES)
            fprintf(f, "pmesh_http_requests_total{code=\"other\"} %llu\n", (unsigned long long) n);
        else
            fprintf(f, "pmesh_http_requests_total{code=\"%d\"} %llu\n", s_codes[i],
                    (unsigned long long) n);
    }
    s_family(f, "pmesh_http_request_duration_seconds", "histogram",
             "Time from a request's headers to its response being queued, by route.");
    for (int r = 0; r < PM_HTTP_ROUTE_COUNT; r++) {
        const char *name = pm_http_route_name((pm_http_route_t) r);
        unsigned long long cum = 0;
        for (size_t b = 0; b <= S_NBUCKETS; b++) {
            cum += atomic_load_explicit(&self->m.buckets[r][b], memory_order_relaxed);
            fprintf(f, "pmesh_http_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"} %llu\n",
                    name, b < S_NBUCKETS ? s_le[b] : "+Inf", cum);
        }
        fprintf(f, "pmesh_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", name,
                (double) atomic_load_explicit(&self->m.sum_us[r], memory_order_relaxed) / 1e6);
        fprintf(f, "pmesh_http_request_duration_seconds_count{route=\"%s\"} %llu\n", name, cum);
    }
    s_family(f, "pmesh_http_refusals_total", "counter",
             "Requests the gateway refused, by reason (each is also logged).");
    for (size_t i = 0; i < S_NREFUSALS; i++)
        fprintf(f, "pmesh_http_refusals_total{reason=\"%s\"} %llu\n", s_refusals[i],
                (unsigned long long) atomic_load_explicit(&self->m.refusals[i],
                                                          memory_order_relaxed));
    s_family(f, "pmesh_http_waiting_requests", "gauge",
             "HTTP requests handed to the agent and not answered yet (long-polls included).");
    fprintf(f, "pmesh_http_waiting_requests %ld\n", atomic_load(&self->suspended));
}

static void
s_metrics(pm_http_t *self, s_job_t *job)
{
    char *status = NULL;
    int err = self->client ? pm_status(self->client, &status) : PM_ERR_UNREACHABLE;
    if (err == PM_ERR_UNREACHABLE && self->client)
        s_lost(self, "status failed");
    json_t *st = err ? NULL : json_loads(status, 0, NULL);
    free(status);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        json_decref(st);
        s_answer(job, 500, pm_http_error_body("INTERNAL", "out of memory"));
        return;
    }
    s_family(f, "pmesh_up", "gauge", "1 if the agent answered the gateway's status request.");
    fprintf(f, "pmesh_up %d\n", st ? 1 : 0);
    if (st)
        s_metrics_agent(f, st);
    s_metrics_http(self, f);
    fclose(f);
    json_decref(st);
    s_answer_typed(job, 200, text, "text/plain; version=0.0.4; charset=utf-8");
}

/* ---- dispatch --------------------------------------------------------------------- */

static void
s_dispatch(pm_http_t *self, s_job_t *job)
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
    s_job_t *job;
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
    s_job_t *late[64];
    size_t n = 0;
    for (s_job_t *job = zhashx_first(self->inflight); job && n < 64;
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
    s_job_t *job;
    while ((job = zhashx_first(self->inflight)))
        s_fail(self, job, PM_ERR_AGENT_SHUTTING_DOWN, "the gateway is stopping");
    pm_client_destroy(&self->client);
}

/* ---- API keys: reloaded on SIGHUP and when the file changes ---------------------- */

/* How often the router looks at the keys file: a Kubernetes Secret volume
 * is updated in place (an atomic symlink swap), without a signal. */
#define S_KEYS_CHECK_MS 5000
/* A replaced table is freed this long after: no parse takes a minute. */
#define S_KEYS_RETIRE_MS 60000

static int
s_same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Loads the keys file and swaps it in; a bad file keeps the keys in force. */
static void
s_keys_reload(pm_http_t *self, const char *why)
{
    char err[512];
    struct stat st;
    if (stat(self->keys_path, &st) != 0)
        memset(&st, 0, sizeof st);
    pm_apikeys_t *fresh = NULL;
    if (pm_apikeys_load(self->keys_path, &fresh, err, sizeof err) != 0) {
        self->keys_st = st; /* do not retry an unchanged bad file every few seconds */
        pm_log_error("PM-HTTP-KEYS-RELOAD-FAILED", "%s: %s; the %zu keys loaded before stay in force",
                     why, err, pm_apikeys_count(atomic_load(&self->keys)));
        return;
    }
    self->keys_st = st;
    pm_apikeys_t *old = atomic_exchange_explicit(&self->keys, fresh, memory_order_acq_rel);
    pm_log_info("PM-HTTP-KEYS-LOADED", "%s: %zu API keys from %s (%zu before)", why,
                pm_apikeys_count(fresh), self->keys_path, pm_apikeys_count(old));
    int64_t now = pm_mono_ms();
    s_retired_t **pp = &self->retired;
    while (*pp) { /* free what no parse can still hold */
        if (now - (*pp)->since_ms > S_KEYS_RETIRE_MS) {
            s_retired_t *dead = *pp;
            *pp = dead->next;
            pm_apikeys_destroy(&dead->keys);
            free(dead);
        } else {
            pp = &(*pp)->next;
        }
    }
    s_retired_t *r = calloc(1, sizeof *r);
    if (!r) { /* keep it rather than free a table a parse may hold */
        pm_log_warn("PM-HTTP-KEYS-LOADED", "out of memory retiring the old keys; kept");
        return;
    }
    r->keys = old;
    r->since_ms = now;
    r->next = self->retired;
    self->retired = r;
}

static void
s_keys_poll(pm_http_t *self, int signalled)
{
    if (!self->keys_path)
        return;
    if (signalled) {
        struct signalfd_siginfo si;
        while (read(self->sigfd, &si, sizeof si) == sizeof si)
            ;
        s_keys_reload(self, "SIGHUP");
        return;
    }
    int64_t now = pm_mono_ms();
    if (now < self->next_keys_check_ms)
        return;
    self->next_keys_check_ms = now + S_KEYS_CHECK_MS;
    struct stat st;
    if (stat(self->keys_path, &st) == 0 && !s_same_file(&st, &self->keys_st))
        s_keys_reload(self, "the keys file changed");
}

static void *
s_router(void *arg)
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
        if (self->keys_path && (timeout < 0 || timeout > S_KEYS_CHECK_MS))
            timeout = S_KEYS_CHECK_MS;
        if (zmq_poll(items, nitems, timeout) < 0 && errno != EINTR)
            break; /* the context is gone */
        s_keys_poll(self, sig_item >= 0 && (items[sig_item].revents & ZMQ_POLLIN));        s_keys_poll(self, nitems > 2 && (items[2].revents & ZMQ_POLLIN));
        s_pump_replies(self, 0);
        s_job_t *job;
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

/* ==== start and stop =============================================================== */

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
s_start_listener(pm_http_t *self, s_listener_t *l, const struct sockaddr_storage *ss,
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
    self->max_body = (size_t) cfg->max_value_bytes + S_BODY_SLACK;
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
        pm_apikeys_t *keys = NULL;
        if (pm_apikeys_load(cfg->http_api_keys_file, &keys, err, sizeof err) != 0) {
            pm_log_error("PM-HTTP-START", "http_api_keys_file %s", err);
            goto fail;
        }
        atomic_store(&self->keys, keys);
        if (!(self->keys_path = strdup(cfg->http_api_keys_file)))
            goto fail;
        stat(self->keys_path, &self->keys_st);
        self->next_keys_check_ms = pm_mono_ms() + S_KEYS_CHECK_MS;
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
        if (!self->keys_path && !loop && !cfg->insecure_http) {
            pm_log_error("PM-HTTP-START",
                         "http %s is not a loopback address and no http_api_keys_file is set: "
                         "anyone who reaches it could read and settle every promise; set "
                         "http_api_keys_file (scripts/gen-secrets makes one), listen on "
                         "127.0.0.1, or pass --insecure-http to accept that",
                         cfg->http);
            goto fail;
        }
        if (!self->keys_path) {
            self->policy.anonymous = 1;
            if (!loop)
                pm_log_warn("PM-HTTP-INSECURE",
                            "insecure_http: the full HTTP API on %s answers without any "
                            "credential; anyone who reaches it may read and settle every promise",
                            cfg->http);
        }
        self->lst[self->nlst++] = (s_listener_t){.gw = self, .public = 0, .spec = self->listen};
    }
    if (has_public) {
        socklen_t sslen = 0;
        if (s_resolve_listen(cfg->http_public, &ss[self->nlst], &sslen, err, sizeof err) != 0) {
            pm_log_error("PM-HTTP-START", "%s", err);
            goto fail;
        }
        pub_idx = self->nlst;
        self->lst[self->nlst++] =
            (s_listener_t){.gw = self, .public = 1, .spec = self->listen_public};
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
    self->n_threads = cores < 1 ? 1 : cores > S_MAX_MHD_THREADS ? S_MAX_MHD_THREADS : (int) cores;
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
    if (pthread_create(&self->router, NULL, s_router, self) != 0)
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
                self->keys_path ? "on" : self->policy.anonymous ? "off (no credential needed)"
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
    for (int i = 0; i < 2 * S_MAX_MHD_THREADS; i++)
        if (self->push[i])
            zmq_close(self->push[i]);
    if (self->zctx)
        zmq_ctx_term(self->zctx);
    zhashx_destroy(&self->inflight);
    if (self->key) {
        sodium_memzero(self->key, self->keylen);
        free(self->key);
    }
    pm_apikeys_t *keys = atomic_load(&self->keys);
    pm_apikeys_destroy(&keys);
    while (self->retired) {
        s_retired_t *r = self->retired;
        self->retired = r->next;
        pm_apikeys_destroy(&r->keys);
        free(r);
    }
    if (self->sigfd >= 0)
        close(self->sigfd);
    free(self->keys_path);
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
