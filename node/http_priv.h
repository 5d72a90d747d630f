/*
 * http_priv.h - what the files of the HTTP gateway share; nothing here is
 * public (http.h is). The gateway is four files:
 *
 *   http.c         the MHD side (request in, answer out), the metrics and
 *                  refusal logs the MHD threads count, start and stop
 *   http_router.c  the router thread: the gateway's pm_client, dispatch,
 *                  replies, readiness and /metrics answers, key reloads
 *   http_parse.c   the request router: routing, JSON, limits, credentials
 *                  (pure: pm_http_parse_request, http.h)
 *   prom.c         Prometheus text from the agent's typed status snapshot (stats.h; pure)
 *
 * Threads and ownership are described at the top of http.c.
 */
#ifndef PM_HTTP_PRIV_H
#define PM_HTTP_PRIV_H

#include "apikeys.h"
#include "http.h"

#include <czmq.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

/* A request body may hold the largest value plus this much JSON around it
 * (field names, escapes of a few characters). Beyond that: 413 at once. */
#define PM_HTTP_BODY_SLACK (64 * 1024)
/* MHD threads: up to 4, one per core; parsing and HMAC are cheap, the
 * agent is the bottleneck. */
#define PM_HTTP_MAX_MHD_THREADS 4

/* ---- metrics: counters shared by the MHD threads (atomics, not locks) ---------- */

/* The sizes of the tables in http.c (status codes counted, latency buckets,
 * refusal reasons); http.c checks them against the tables. */
#define PM_HTTP_NCODES 14
#define PM_HTTP_NBUCKETS 19
#define PM_HTTP_NREFUSALS 16

typedef struct pm_http_metrics {
    atomic_uint_fast64_t by_code[PM_HTTP_NCODES + 1]; /* last: any other code */
    atomic_uint_fast64_t buckets[PM_HTTP_ROUTE_COUNT][PM_HTTP_NBUCKETS + 1];
    atomic_uint_fast64_t sum_us[PM_HTTP_ROUTE_COUNT];
    atomic_uint_fast64_t refusals[PM_HTTP_NREFUSALS];
    atomic_uint_fast64_t stats_bad; /* agent status snapshots that did not decode */
} pm_http_metrics_t;


/* ---- jobs ------------------------------------------------------------------------ */

typedef enum {
    PM_HTTP_NEW = 0, /* MHD side: reading the request */
    PM_HTTP_AWAY,    /* suspended; the gateway threads own the job */
    PM_HTTP_BACK,    /* resumed with an answer; MHD side again */
    PM_HTTP_DONE,    /* answered (or answering) from the MHD side */
} pm_http_stage_t;

typedef struct pm_http_job {
    pm_http_t *gw;
    struct MHD_Connection *conn;
    pm_http_stage_t stage;
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
} pm_http_job_t;


/* ---- the gateway ----------------------------------------------------------------- */

/* One HTTP listener: the full API or the public (token-only) one. */
typedef struct pm_http_listener {
    pm_http_t *gw;
    struct MHD_Daemon *mhd;
    int public;
    const char *spec; /* ADDR:PORT as configured, borrowed from gw */
} pm_http_listener_t;

struct pm_http {
    pm_http_listener_t lst[2];
    int nlst;
    char *socket_path;
    char *base_url; /* callback base, no trailing '/' */
    char *listen;   /* cfg->http as given, for logs */
    char *listen_public; /* cfg->http_public */
    uint8_t *key;
    size_t keylen;
    pm_http_policy_t policy; /* the fixed part; each request copies it */
    /* API keys (NULL: none configured): reloaded by the router thread only,
     * read by the MHD threads once per request (apikeys.h, the keyring). */
    pm_keyring_t *keyring;
    int sigfd; /* SIGHUP: reload the keys (-1: none) */
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
    void *push[2 * PM_HTTP_MAX_MHD_THREADS];
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
    pm_http_metrics_t m;
    atomic_llong log_sec;
    atomic_int log_count;
    atomic_uint_fast64_t log_suppressed;
    /* router thread only */
    pm_client_t *client;
    zhashx_t *inflight; /* request id -> job (not owned) */
    int64_t next_connect_ms, next_sweep_ms;
    int draining;
};


/* ---- shared between the files ------------------------------------------------ */

/* Sets r's refusal (status, error code, refusal reason for the metrics, a
 * message) and returns -1. http_parse.c; the MHD side refuses with it too. */
int pm_http_refuse(pm_http_req_t *r, int status, const char *error, const char *refusal,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* o as one line of compact JSON with a trailing newline (caller frees); NULL
 * if o is NULL or memory runs out. http_parse.c */
char *pm_http_json_line(json_t *o);

#define PM_HTTP_BAD(r, ...) pm_http_refuse(r, 400, "BAD_REQUEST", "bad_request", __VA_ARGS__)

/* Counts a refusal and logs it (throttled) with a stable tag per kind. Any
 * thread. http.c */
void pm_http_note_refusal(pm_http_t *self, const char *refusal, int status, const char *error,
                          const char *method, const char *path, const char *id,
                          const char *message);

/* The gateway's own metrics (responses by code, latency by route, refusals,
 * waiting requests) as Prometheus text on f. Any thread. http.c */
void pm_http_metrics_write(pm_http_t *self, FILE *f);

/* The router thread (arg: the pm_http_t). http_router.c */
void *pm_http_router_main(void *arg);

#endif
