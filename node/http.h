/*
 * http.h - the HTTP gateway of pmeshd: REST and webhooks over libmicrohttpd,
 * served by an ordinary libpmesh client of the agent it runs beside.
 *
 *   POST /v1/promises                     create        -> 201 (200: idempotent repeat)   (write)
 *   GET  /v1/promises/{id}[?wait=30s]     get / long-poll                         (read | token)
 *   GET  /v1/promises?state=&prefix=&label=k=v&limit=&cursor=                     (read)
 *   POST /v1/promises/{id}/resolve        {"value":".."} | {"value_b64":".."}   (write | token)
 *   POST /v1/promises/{id}/reject         {"reason":".."}                      (write | token)
 *   POST /v1/promises/{id}/cancel                                              (write | token)
 *   POST /v1/promises/{id}/heartbeat                                           (write | token)
 *   POST /v1/promises/all|any|race|all-settled  {"ids":[..],"timeout":"30s"} -> 201  (write)
 *   GET  /healthz  /readyz  /metrics
 *
 * Two kinds of caller, told apart on every request by its
 * `Authorization: Bearer X`:
 *   - an outside system holds a settle token (token.h) for one promise: with
 *     it, and only with it, it may read that promise and settle it;
 *   - a client (functions, tools) holds an API key (apikeys.h) of scope read
 *     (list, get) or write (everything).
 * Without API keys configured, a caller without a credential is a client
 * with write scope, and the full API may only listen on loopback (or with
 * insecure_http). A presented credential is always checked.
 *
 * Two listeners: `http` serves everything above; `http_public` serves only
 * the token routes (get and settle of one promise) and /healthz, and takes
 * only settle tokens: that is the one to expose to the outside world.
 *
 * Create answers 201 with the promise (as `pmesh get` prints it, pjson.h)
 * plus settle_token (only if the agent has a token_secret_file; with
 * "token_ttl":"1h" it expires then) and callback_url; an idempotent repeat
 * answers 200. A combinator (all, any, race, all-settled over "ids", with an
 * optional "timeout") answers 201 with the new promise, without a settle
 * token or callback_url: nobody settles it but its inputs, so a settle of it
 * answers 409 NOT_SETTLEABLE. Settles answer 200 with the promise after the settle. A
 * long-poll (?wait=, capped by http_max_wait) that ends before the promise
 * settles answers 200 with the pending promise.
 *
 * /healthz: 200 while the process runs. /readyz: 200 when the agent answers
 * status, its WAL (if any) has not failed and, with a mesh, it is not alone
 * while seeds are configured (alone is accepted 10 s after start, so a
 * one-agent mesh whose seed is itself becomes ready); else 503 NOT_READY.
 * /metrics: Prometheus text from the agent's status plus the gateway's own
 * request counters, latency histogram and refusals.
 *
 * Errors: {"error":CODE,"message":..} with 400 BAD_REQUEST, 401
 * UNAUTHORIZED (no credential), 403 FORBIDDEN (a wrong credential or scope)
 * or TOKEN_EXPIRED, both with WWW-Authenticate, 404 NOT_FOUND, 405
 * METHOD_NOT_ALLOWED, 409 ALREADY_SETTLED or NOT_SETTLEABLE (a combinator), 410 TIMED_OUT, 413
 * VALUE_TOO_LARGE, 429 LIMIT, 503 (UNREACHABLE, OWNER_LOST,
 * AGENT_SHUTTING_DOWN, LIMIT for connections over http_max_connections,
 * NOT_READY). Credentials are checked before anything is looked up, so a
 * wrong token for an existing promise and any token for a missing one get
 * the same answer. Every refusal is logged (PM-HTTP-*, throttled) and
 * counted (pmesh_http_refusals_total{reason}).
 *
 * The request parsing and validation is one pure function,
 * pm_http_parse_request, so the fuzzer and the tests reach it without sockets.
 */
#ifndef PM_HTTP_H
#define PM_HTTP_H

#include "config.h"
#include "pmesh.h"

#include <stddef.h>
#include <stdint.h>

/* ---- the gateway ------------------------------------------------------------ */

typedef struct pm_http pm_http_t;

/* Reads what it needs from cfg (http, http_public_url, token_secret_file,
 * http_max_connections, http_max_wait, max_value_bytes, max_labels, seeds),
 * loads the token secret, binds cfg->http and starts serving; requests are
 * carried out through a client of the agent at socket_path, which it
 * connects to (and reconnects to) on its own thread. Call with SIGTERM /
 * SIGINT blocked: the gateway's threads inherit the mask. Returns NULL with a
 * logged reason (PM-HTTP-START) on failure. cfg is not kept. Caller owns. */
pm_http_t *pm_http_new(const pm_config_t *cfg, const char *socket_path);

/* Stops serving: answers every request still waiting with 503, stops the
 * HTTP server and the gateway's threads, frees everything, sets *self_p to
 * NULL. NULL-safe. Call after the agent has stopped (pm_agent_destroy), so
 * that no request waits on an agent that will never answer. */
void pm_http_destroy(pm_http_t **self_p);

/* ---- request parsing (pure; used by the gateway, the fuzzer, the tests) ---- */

typedef enum pm_http_route {
    PM_HTTP_ROUTE_NONE = 0,
    PM_HTTP_ROUTE_HEALTHZ,
    PM_HTTP_ROUTE_READYZ,
    PM_HTTP_ROUTE_METRICS,
    PM_HTTP_ROUTE_CREATE,
    PM_HTTP_ROUTE_LIST,
    PM_HTTP_ROUTE_GET,
    PM_HTTP_ROUTE_RESOLVE,
    PM_HTTP_ROUTE_REJECT,
    PM_HTTP_ROUTE_CANCEL,
    PM_HTTP_ROUTE_HEARTBEAT,
    PM_HTTP_ROUTE_COMBINE,
    PM_HTTP_ROUTE_COUNT
} pm_http_route_t;

/* One query argument, already percent-decoded; value may be NULL ("?wait"). */
typedef struct pm_http_kv {
    const char *key;
    const char *value;
} pm_http_kv_t;

struct pm_apikeys;

/* What the parser checks requests against. Borrowed. */
typedef struct pm_http_policy {
    const uint8_t *key; /* token secret; NULL: settle tokens are refused (403) */
    size_t keylen;
    size_t max_value_bytes; /* the agent's max_value_bytes */
    size_t max_labels;      /* the agent's max_labels */
    int64_t max_wait_ms;    /* ?wait= is capped to this */
    const struct pm_apikeys *keys; /* API keys; NULL: none configured */
    int anonymous;          /* no credential = a write client (no keys, loopback/insecure) */
    int public_listener;    /* only token routes (with a token) and /healthz */
    int64_t now_ms;         /* unix ms: settle tokens expire against this */
} pm_http_policy_t;

/* Who the caller turned out to be. */
typedef enum pm_http_caller {
    PM_HTTP_CALLER_NONE = 0,   /* a route that needs no credential */
    PM_HTTP_CALLER_TOKEN,      /* a settle token of req.id */
    PM_HTTP_CALLER_READ,       /* an API key of scope read */
    PM_HTTP_CALLER_WRITE,      /* an API key of scope write, or anonymous where allowed */
} pm_http_caller_t;

/* A parsed, validated request. Owns every string and buffer in it; clear
 * with pm_http_req_clear. When parsing fails, status/error/refusal/message
 * describe the answer to send. */
typedef struct pm_http_req {
    pm_http_route_t route;
    char *id;                 /* {id} of the path */
    pm_create_opts_t create;  /* CREATE: labels and key owned by the request */
    pm_list_opts_t list;      /* LIST: strings owned by the request */
    int64_t wait_ms;          /* GET: long-poll, 0: none (already capped) */
    uint8_t *value;           /* RESOLVE: decoded value (NUL-terminated) */
    size_t value_len;
    char *reason;             /* REJECT: NULL if none */
    int combine_kind;         /* COMBINE: pm_combinator_t (timeout in create.timeout_ms) */
    char **ids;               /* COMBINE: the inputs, in order */
    size_t id_count;
    int64_t token_exp_s;      /* CREATE: the settle token expires then (0: never) */
    pm_http_caller_t caller;  /* who is asking (when parsing succeeded) */
    char key_name[65];        /* the API key's name, or "" */
    const char *challenge;    /* 401/403: the WWW-Authenticate value */
    /* the refusal, when pm_http_parse_request returns -1 */
    int status;               /* HTTP status code */
    const char *error;        /* "BAD_REQUEST", "UNAUTHORIZED", ... */
    const char *refusal;      /* metrics / log kind: "bad_json", "bad_token", ... */
    const char *allow;        /* 405: the methods the path takes */
    char message[256];
} pm_http_req_t;

/* Routes and validates one request: method ("GET"), path without the query,
 * the decoded query arguments, the Authorization header (NULL if absent) and
 * the body. 0 and a filled *out; -1 with out->status, error, refusal and
 * message set. Either way call pm_http_req_clear(out) afterwards. Never
 * aborts on any input. */
int pm_http_parse_request(const char *method, const char *path, const pm_http_kv_t *query,
                          size_t nquery, const char *authorization, const char *body,
                          size_t body_len, const pm_http_policy_t *policy, pm_http_req_t *out);

/* Frees what the request owns and zeroes it. */
void pm_http_req_clear(pm_http_req_t *req);

/* The HTTP status of a pm_err (404 NOT_FOUND, 409 ALREADY_SETTLED, ...). */
int pm_http_status_of(int err);

/* {"error":CODE,"message":MSG}\n. Caller frees; NULL if memory runs out. */
char *pm_http_error_body(const char *code, const char *message);

/* Stable lower-case name of a route ("resolve"), for metrics; never NULL. */
const char *pm_http_route_name(pm_http_route_t route);

#endif
