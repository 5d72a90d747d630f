/*
 * fanin_bench.c - the driver behind scripts/bench-fanin (issue 15's fan-in
 * figure). It talks to running pmeshd agents through libpmesh only.
 *
 *   fanin_bench --owners S1,S2,.. --hub S [--inputs 10] [--trials 40]
 *               [--warmup 5] [--gap-ms 20]
 *
 * The hub agent runs a C worker (in this process) serving "fanin_cont";
 * the inputs are created through the owner agents (so each is owned there)
 * and settled through them by "outside callers" (clients of the owners, not
 * of the hub). Two kinds of trial, interleaved so drift hits both alike:
 *
 *   fanin  `inputs` promises round-robin over the owners, all(...) of them
 *          created through the hub (so the hub owns the combinator) and
 *          then(all, "fanin_cont") on it. Every input but one is resolved,
 *          then (after gap-ms, so their notifications are in) the last is;
 *          timed from just before that resolve is sent to the moment the
 *          worker receives the continuation's invocation.
 *   hop    the yardstick, one mesh hop: one promise created through an
 *          owner, then(p, "fanin_cont") on it (so p and its continuation
 *          live at the owner and the invocation is relayed to the hub's
 *          worker), resolved after gap-ms; timed the same way: the resolve
 *          to the worker's receipt. Same clients, same worker, same clock.
 *
 * Mesh messages come from every agent's `status` counters (mesh.sent, by
 * type; SWIM excluded), read around each block of trials: per input for
 * fanin, per trial for hop, by type. Prints key=value lines on stdout.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmesh.h"

#define S_MAX_AGENTS 16
#define S_MAX_KINDS 48
#define S_FN "fanin_cont"
/* Longest a continuation may take to start before the run is called stuck. */
#define S_WAIT_MS 20000

static int64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void
s_die(const char *what, int err, pm_client_t *c)
{
    fprintf(stderr, "fanin_bench: %s: %s%s%s\n", what, pm_strerror(err), c ? ": " : "",
            c ? pm_client_last_error(c) : "");
    exit(1);
}

/* ---- the worker: records when each continuation's invocation arrives ---------- */

#define S_SEEN_MAX 4096

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t n;
    char *target[S_SEEN_MAX];
    int64_t at_ns[S_SEEN_MAX];
    int stop;
} s_seen = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, {0}, {0}, 0};

static void *
s_worker_main(void *arg)
{
    pm_worker_t *w = arg;
    for (;;) {
        pm_invocation_t *inv = NULL;
        int err = pm_worker_next(w, 100, &inv);
        int64_t t = s_now_ns();
        pthread_mutex_lock(&s_seen.mu);
        int stop = s_seen.stop;
        if (!err && s_seen.n < S_SEEN_MAX) {
            s_seen.target[s_seen.n] = strdup(inv->target_id);
            s_seen.at_ns[s_seen.n++] = t;
            pthread_cond_broadcast(&s_seen.cv);
        }
        pthread_mutex_unlock(&s_seen.mu);
        if (!err) {
            pm_worker_send_complete(w, inv, "ok", 2);
            pm_invocation_destroy(&inv);
        }
        if (stop)
            return NULL;
    }
}

/* When the worker received the invocation whose target is id; -1 if none
 * came within S_WAIT_MS. */
static int64_t
s_seen_wait(const char *id)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += S_WAIT_MS / 1000;
    pthread_mutex_lock(&s_seen.mu);
    int64_t at = -1;
    for (;;) {
        for (size_t i = 0; i < s_seen.n && at < 0; i++)
            if (strcmp(s_seen.target[i], id) == 0)
                at = s_seen.at_ns[i];
        if (at >= 0 || pthread_cond_timedwait(&s_seen.cv, &s_seen.mu, &dl) == ETIMEDOUT)
            break;
    }
    if (at < 0)
        for (size_t i = 0; i < s_seen.n && at < 0; i++)
            if (strcmp(s_seen.target[i], id) == 0)
                at = s_seen.at_ns[i];
    /* Forget what was seen: one continuation per trial. */
    for (size_t i = 0; i < s_seen.n; i++)
        free(s_seen.target[i]);
    s_seen.n = 0;
    pthread_mutex_unlock(&s_seen.mu);
    return at;
}

/* ---- mesh counters ------------------------------------------------------------- */

typedef struct {
    size_t n;
    char kind[S_MAX_KINDS][32];
    int64_t sent[S_MAX_KINDS];
} s_counters_t;

static void
s_counters_read(pm_client_t *c, s_counters_t *out)
{
    memset(out, 0, sizeof *out);
    char *js = NULL;
    int err = pm_status(c, &js);
    if (err)
        s_die("status", err, c);
    json_t *root = json_loads(js, 0, NULL);
    free(js);
    json_t *sent = json_object_get(json_object_get(root, "mesh"), "sent");
    if (!sent) {
        fprintf(stderr, "fanin_bench: an agent has no mesh counters (not in a mesh?)\n");
        exit(1);
    }
    const char *k;
    json_t *v;
    json_object_foreach(sent, k, v)
    {
        if (out->n == S_MAX_KINDS)
            break;
        snprintf(out->kind[out->n], sizeof out->kind[0], "%s", k);
        out->sent[out->n++] = json_integer_value(json_object_get(v, "messages"));
    }
    /* The early (tentative) copies among the replies (fanin_early): shown
     * as "of_reply_tentative", not added to the total a second time. */
    json_t *tent = json_object_get(json_object_get(root, "fanin"), "tentative_sent");
    if (tent && out->n < S_MAX_KINDS) {
        snprintf(out->kind[out->n], sizeof out->kind[0], "of_reply_tentative");
        out->sent[out->n++] = json_integer_value(tent);
    }
    json_decref(root);
}

static int64_t
s_counter(const s_counters_t *c, const char *kind)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kind[i], kind) == 0)
            return c->sent[i];
    return 0;
}

/* Non-SWIM messages sent, by type, summed over agents. Batch frames are not
 * messages (their envelopes are counted by their own types): listed, not
 * added to the total. */
typedef struct {
    size_t n;
    char kind[S_MAX_KINDS][32];
    int64_t msgs[S_MAX_KINDS];
} s_delta_t;

static void
s_delta_add(s_delta_t *d, const s_counters_t *before, const s_counters_t *after, size_t nag)
{
    for (size_t a = 0; a < nag; a++)
        for (size_t i = 0; i < after[a].n; i++) {
            const char *k = after[a].kind[i];
            if (strncmp(k, "swim_", 5) == 0)
                continue;
            int64_t x = after[a].sent[i] - s_counter(&before[a], k);
            if (!x)
                continue;
            size_t j = 0;
            while (j < d->n && strcmp(d->kind[j], k) != 0)
                j++;
            if (j == d->n) {
                if (d->n == S_MAX_KINDS)
                    continue;
                snprintf(d->kind[d->n++], sizeof d->kind[0], "%s", k);
            }
            d->msgs[j] += x;
        }
}

static void
s_snapshot(pm_client_t **cs, size_t n, s_counters_t *out)
{
    for (size_t i = 0; i < n; i++)
        s_counters_read(cs[i], &out[i]);
}

static void
s_delta_print(const char *tag, const s_delta_t *d, double per)
{
    int64_t total = 0;
    for (size_t i = 0; i < d->n; i++)
        if (strncmp(d->kind[i], "of_", 3) != 0 /* a part of another kind */
            && strcmp(d->kind[i], "batch") != 0)
            total += d->msgs[i];
    printf("%s_msgs total=%.3f", tag, (double) total / per);
    for (size_t i = 0; i < d->n; i++)
        printf(" %s=%.3f", d->kind[i], (double) d->msgs[i] / per);
    printf("\n");
}

/* ---- statistics --------------------------------------------------------------- */

static int
s_cmp(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static double
s_pct(double *v, size_t n, double q)
{
    if (!n)
        return 0;
    size_t r = (size_t) (q * (double) n + 0.999999);
    if (r < 1)
        r = 1;
    if (r > n)
        r = n;
    return v[r - 1];
}

static void
s_print_lat(const char *tag, double *v, size_t n)
{
    qsort(v, n, sizeof *v, s_cmp);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    printf("%s n=%zu p50_us=%.1f p90_us=%.1f p99_us=%.1f mean_us=%.1f min_us=%.1f max_us=%.1f\n",
           tag, n, s_pct(v, n, 0.5), s_pct(v, n, 0.9), s_pct(v, n, 0.99), n ? sum / (double) n : 0,
           n ? v[0] : 0, n ? v[n - 1] : 0);
}

/* ---- trials ------------------------------------------------------------------- */

/* Waits (through c, q's owner's client) until continuation q is settled
 * with the worker's result: its messages (the relayed result, its
 * replication, the owner's reply) are then counted in this trial's
 * window, not in the next trial's (which showed as ~0.001 stray
 * "settlement messages" per input). */
static void
s_settled_wait(pm_client_t *c, const char *q)
{
    pm_promise_t *p = NULL;
    int err = pm_await(c, q, S_WAIT_MS, &p);
    if (err)
        s_die("await (the continuation's result)", err, c);
    pm_promise_destroy(&p);
}

typedef struct {
    pm_client_t *own[S_MAX_AGENTS]; /* the outside callers, one per owner agent */
    size_t nown;
    pm_client_t *hub;
    size_t inputs;
    int gap_ms;
} s_run_t;

/* One fan-in trial: microseconds from the last input's resolve to the
 * continuation's invocation at the worker. last_owner rotates which owner
 * settles last. */
static double
s_fanin_trial(s_run_t *x, size_t last_owner)
{
    char **ids = calloc(x->inputs, sizeof *ids);
    pm_client_t **by = calloc(x->inputs, sizeof *by);
    for (size_t i = 0; i < x->inputs; i++) {
        by[i] = x->own[(last_owner + 1 + i) % x->nown];
        int err = pm_create(by[i], NULL, &ids[i], NULL);
        if (err)
            s_die("create", err, by[i]);
    }
    char *all = NULL, *q = NULL;
    int err = pm_combine(x->hub, PM_COMBINE_ALL, (const char *const *) ids, x->inputs, 0, &all);
    if (err)
        s_die("combine", err, x->hub);
    if ((err = pm_then(x->hub, all, S_FN, 0, &q)))
        s_die("then", err, x->hub);
    /* The last input to settle: the highest-numbered one owned by
     * own[last_owner], so each owner settles last in turn. */
    size_t last = x->inputs - 1;
    for (size_t i = 0; i < x->inputs; i++)
        if (by[i] == x->own[last_owner])
            last = i;
    for (size_t i = 0; i < x->inputs; i++) {
        if (i == last)
            continue;
        char v[32];
        int n = snprintf(v, sizeof v, "v%zu", i);
        if ((err = pm_resolve(by[i], ids[i], v, (size_t) n)))
            s_die("resolve", err, by[i]);
    }
    s_sleep_ms(x->gap_ms);
    int64_t t0 = s_now_ns();
    if ((err = pm_resolve(by[last], ids[last], "last", 4)))
        s_die("resolve (last)", err, by[last]);
    int64_t t1 = s_seen_wait(q);
    if (t1 < 0) {
        fprintf(stderr, "fanin_bench: the continuation of %s never started\n", all);
        exit(1);
    }
    s_settled_wait(x->hub, q);
    for (size_t i = 0; i < x->inputs; i++)
        free(ids[i]);
    free(ids);
    free(by);
    free(all);
    free(q);
    return (double) (t1 - t0) / 1000.0;
}

/* One yardstick trial on owner k: resolve -> worker receipt over one hop. */
static double
s_hop_trial(s_run_t *x, size_t k)
{
    pm_client_t *c = x->own[k];
    char *p = NULL, *q = NULL;
    int err = pm_create(c, NULL, &p, NULL);
    if (err)
        s_die("create", err, c);
    if ((err = pm_then(c, p, S_FN, 0, &q)))
        s_die("then", err, c);
    s_sleep_ms(x->gap_ms);
    int64_t t0 = s_now_ns();
    if ((err = pm_resolve(c, p, "x", 1)))
        s_die("resolve", err, c);
    int64_t t1 = s_seen_wait(q);
    if (t1 < 0) {
        fprintf(stderr, "fanin_bench: the continuation of %s never started\n", p);
        exit(1);
    }
    s_settled_wait(c, q);
    free(p);
    free(q);
    return (double) (t1 - t0) / 1000.0;
}

static void
s_usage(void)
{
    fprintf(stderr, "usage: fanin_bench --owners S1,S2,.. --hub S [--inputs 10] [--trials 40] "
                    "[--warmup 5] [--gap-ms 20]\n");
    exit(64);
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"owners", required_argument, NULL, 'o'}, {"hub", required_argument, NULL, 'h'},
        {"inputs", required_argument, NULL, 'i'}, {"trials", required_argument, NULL, 't'},
        {"warmup", required_argument, NULL, 'w'}, {"gap-ms", required_argument, NULL, 'g'},
        {NULL, 0, NULL, 0}};
    char *owners = NULL;
    const char *hub = NULL;
    long inputs = 10, trials = 40, warmup = 5, gap = 20;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'o': owners = strdup(optarg); break;
        case 'h': hub = optarg; break;
        case 'i': inputs = strtol(optarg, NULL, 10); break;
        case 't': trials = strtol(optarg, NULL, 10); break;
        case 'w': warmup = strtol(optarg, NULL, 10); break;
        case 'g': gap = strtol(optarg, NULL, 10); break;
        default: s_usage();
        }
    }
    if (!owners || !hub || inputs < 1 || inputs > 1000 || trials < 1 || warmup < 0 || gap < 0)
        s_usage();
    s_run_t x = {.inputs = (size_t) inputs, .gap_ms = (int) gap};
    pm_client_t *all[S_MAX_AGENTS + 1];
    for (char *save = NULL, *s = strtok_r(owners, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
        if (x.nown == S_MAX_AGENTS)
            s_usage();
        int err = pm_client_connect(s, &x.own[x.nown]);
        if (err)
            s_die(s, err, NULL);
        all[x.nown] = x.own[x.nown];
        x.nown++;
    }
    int err = pm_client_connect(hub, &x.hub);
    if (err)
        s_die(hub, err, NULL);
    size_t nag = x.nown + 1;
    all[x.nown] = x.hub;
    /* Status reads go on the same clients, between trials only. */
    pm_client_t **mon = all;
    const char *fns[] = {S_FN};
    pm_worker_t *w = NULL;
    if ((err = pm_worker_new(hub, fns, 1, 64, &w)))
        s_die("worker", err, NULL);
    pthread_t wt;
    pthread_create(&wt, NULL, s_worker_main, w);
    /* The function reaches the owners by gossip: wait until a hop trial's
     * continuation is placed on the hub's worker (the first ones may wait
     * for it). */
    for (long i = 0; i < warmup; i++) {
        s_hop_trial(&x, (size_t) i % x.nown);
        s_fanin_trial(&x, (size_t) i % x.nown);
    }
    double *lat_f = calloc((size_t) trials, sizeof *lat_f);
    double *lat_h = calloc((size_t) trials, sizeof *lat_h);
    s_delta_t df = {0}, dh = {0};
    s_counters_t b[S_MAX_AGENTS + 1], a[S_MAX_AGENTS + 1];
    for (long i = 0; i < trials; i++) {
        s_snapshot(mon, nag, b);
        lat_f[i] = s_fanin_trial(&x, (size_t) i % x.nown);
        s_snapshot(mon, nag, a);
        s_delta_add(&df, b, a, nag);
        lat_h[i] = s_hop_trial(&x, (size_t) i % x.nown);
        s_snapshot(mon, nag, b);
        s_delta_add(&dh, a, b, nag);
    }
    pthread_mutex_lock(&s_seen.mu);
    s_seen.stop = 1;
    pthread_mutex_unlock(&s_seen.mu);
    pthread_join(wt, NULL);
    printf("setup owners=%zu inputs=%ld trials=%ld warmup=%ld gap_ms=%ld hub=%s\n", x.nown, inputs,
           trials, warmup, gap, pm_client_node(x.hub));
    s_print_lat("fanin", lat_f, (size_t) trials);
    s_print_lat("hop", lat_h, (size_t) trials);
    s_delta_print("fanin_per_input", &df, (double) trials * (double) inputs);
    s_delta_print("hop_per_trial", &dh, (double) trials);
    pm_worker_destroy(&w);
    for (size_t i = 0; i < nag; i++)
        pm_client_destroy(&all[i]);
    free(lat_f);
    free(lat_h);
    free(owners);
    return 0;
}
