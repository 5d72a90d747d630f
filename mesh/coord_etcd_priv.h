/*
 * coord_etcd_priv.h - what coord_etcd.c (requests, the loop, the backend) and
 * coord_etcd_watch.c (watches) share. The configuration store in etcd, through its v3 JSON gateway
 * (/v3/kv/range, /v3/kv/txn, /v3/watch; keys and values base64), on a thread
 * of its own. See coord.h.
 *
 * One thread, one loop, like httpfn.c: zmq_poll over the PAIR the requests
 * come in on and the sockets libcurl asks for (CURLMOPT_SOCKETFUNCTION, so
 * any descriptor number works), with libcurl's timer as the poll timeout.
 * Requests run as libcurl multi transfers with one deadline each
 * (request_timeout_ms): a transfer that cannot connect moves on to the next
 * endpoint (the request never left, so even a write may be sent again); a
 * read also moves on after any failure; a write that may have reached the
 * store is answered UNAVAILABLE (outcome unknown), never repeated. A watch
 * is one long POST whose answer is newline-delimited JSON; when it breaks it
 * is started again after a backoff, from the revision after the last one
 * delivered, on the next endpoint; when etcd has compacted that revision
 * away, the thread lists every record and hands it over as a RESYNC.
 * Everything etcd answers is outside input: decoded and checked before use;
 * what does not fit is BAD, never a crash.
 */
#ifndef PM_COORD_ETCD_PRIV_H
#define PM_COORD_ETCD_PRIV_H

#include "clock.h"
#include "coord.h"
#include "log.h"

#include <curl/curl.h>
#include <errno.h>
#include <unistd.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Endpoints of one etcd cluster: 3 or 5 members, with room. */
#define S_MAX_ENDPOINTS 8
/* An answer larger than this is refused (BAD): a list of every space of a
 * big mesh is far below it, a runaway answer is not. */
#define S_MAX_BODY (16 * 1024 * 1024)
/* Watch restarts back off from 100 ms to 2 s: quick after a blip, gentle on
 * a store that is down for long. */
#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_MAX_MS 2000
/* A read's attempt on one endpoint, when others remain, gets at least this
 * long: a loaded etcd answers well within it. */
#define S_MIN_ATTEMPT_MS 300
/* Sockets libcurl may ask us to poll at once: a transfer each. */
#define S_MAX_SOCKS 256
/* gRPC status codes etcd passes through its gateway that mean "not now". */
#define S_GRPC_DEADLINE_EXCEEDED 4
#define S_GRPC_UNAVAILABLE 14

typedef struct pm_etcd pm_etcd_t;
typedef struct pm_etcd_watch pm_etcd_watch_t;

typedef struct pm_etcd_op {
    pm_etcd_t *e;
    pm_coord_req_t *req;   /* NULL: a list on behalf of a watch */
    pm_etcd_watch_t *relist_for; /* that watch */
    const char *path;      /* "/v3/kv/range" or "/v3/kv/txn" */
    char *post;            /* the JSON request */
    int write;
    int endpoint;
    int tried;        /* endpoints tried so far */
    int64_t deadline; /* monotonic ms */
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t len;
    char errbuf[CURL_ERROR_SIZE];
    struct pm_etcd_op *next, *prev;
} pm_etcd_op_t;

enum { W_BACKOFF, W_CONNECTING, W_LIVE, W_RELIST };

struct pm_etcd_watch {
    pm_etcd_t *e;
    uint64_t id;
    int64_t next_rev; /* the first revision not yet delivered; 0: from now */
    int state;
    int endpoint;
    CURL *easy;
    struct curl_slist *headers;
    char *post;
    char *buf; /* received, not yet a whole line */
    size_t len;
    char errbuf[CURL_ERROR_SIZE];
    int64_t retry_at; /* W_BACKOFF: when to start again */
    int64_t deadline; /* W_CONNECTING: "created" must come by then */
    int64_t backoff;
    int fails; /* attempts failed in a row */
    int bad;   /* torn down for a malformed message (the caller was told BAD) */
    int64_t live_since;
    int down_told; /* the caller was told it broke, not yet that it is back */
    int compacted; /* the stream said its revision was compacted */
    char why[200]; /* why the stream is being torn down */
    struct pm_etcd_watch *next;
};

struct pm_etcd {
    pm_coord_t *c;
    char endpoints[S_MAX_ENDPOINTS][256];
    int n_ep;
    int cur; /* the endpoint that answered last */
    int64_t timeout, connect_timeout;
    char ca_file[512], cert_file[512], key_file[512]; /* TLS: "" for plain http */
    char key_prefix[300]; /* PREFIX "/spaces/" */
    size_t key_prefix_len;
    char *b64_key, *b64_end; /* the range of every space, base64 */
    CURLM *multi;
    pthread_t thread;
    int running;
    int stop;
    int store_down; /* for logging transitions only */
    pm_etcd_op_t *ops;
    pm_etcd_watch_t *watches;
    struct {
        curl_socket_t fd;
        int what;
    } socks[S_MAX_SOCKS];
    size_t n_socks;
    int64_t timer_at; /* libcurl's timeout, monotonic ms; -1: none */
};

/* coord_etcd.c: answers, the store's state, transfers and the list a
 * watch needs after a compaction. */
void pm_etcd_deliver(pm_etcd_t *e, pm_coord_result_t *r);
void pm_etcd_done(pm_etcd_t *e);
CURL *pm_etcd_easy(pm_etcd_t *e, int endpoint, const char *path, const char *post,
                   struct curl_slist **headers, char *errbuf);
int pm_etcd_header_rev(json_t *o, int64_t *rev);
int pm_etcd_i64(json_t *v, int64_t *out);
int pm_etcd_kv(pm_etcd_t *e, json_t *kv, pm_coord_record_t *rec, int want_value,
               pm_coord_result_t *r);
void pm_etcd_op_free(pm_etcd_op_t *op);
pm_etcd_op_t *pm_etcd_op_new(pm_etcd_t *e);
int pm_etcd_op_start(pm_etcd_op_t *op);
void pm_etcd_op_unavailable(pm_etcd_op_t *op, const char *why);
char *pm_etcd_range_all(pm_etcd_t *e);
void pm_etcd_store_down(pm_etcd_t *e, const char *why);
void pm_etcd_store_up(pm_etcd_t *e, int endpoint);
/* coord_etcd_watch.c: a watch started, broken, finished, released. */
void pm_etcd_watch_done(pm_etcd_watch_t *w, CURLcode rc);
void pm_etcd_watch_fail(pm_etcd_watch_t *w, const char *why);
void pm_etcd_watch_release(pm_etcd_watch_t *w);
void pm_etcd_watch_start(pm_etcd_watch_t *w);

#endif
