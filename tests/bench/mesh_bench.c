/*
 * mesh_bench.c - the driver behind scripts/bench-mesh. It talks to running
 * pmeshd agents through libpmesh only, so it measures what a function sees.
 * Subcommands (each prints key=value lines on stdout; diagnostics on stderr):
 *
 *   worker SOCKET FN[,FN...] [CONCURRENCY]
 *       A C worker: each invocation's input is a decimal number, the result
 *       is that number plus one. Runs until SIGTERM/SIGINT, then prints how
 *       many invocations it served.
 *   chain --caller S --agents S1,S2,.. [--owner S] --fns f0,f1,.. [--steps 10]
 *         [--chains 200] [--warmup 20] [--rounds 4]
 *       Chains of `steps` then-steps (step i calls fns[i % n]) measured three
 *       ways, interleaved round by round so drift hits all of them alike:
 *         pipelined  the whole chain is built with then before its head is
 *                    resolved; timed from the resolve to the final await
 *         driven     the caller drives each step with blocking calls:
 *                    create, then, resolve (with the previous value), await
 *         batched    as driven, but the four requests of a step are sent
 *                    at once on the async interface (one client round trip)
 *       With --owner the head is created through that agent, so it (and the
 *       whole pipelined chain) is owned there; the caller still chains,
 *       resolves and awaits through its own agent. Mesh messages come from
 *       every agent's `status` counters, read before and after each run.
 *   converge --expect N [--timeout-ms T] [--since-ms EPOCH_MS] S1 S2 ..
 *       Waits until every agent reports N alive members; prints when each
 *       first did, relative to --since-ms (wall clock), and the latest.
 *   idle [--seconds 10] [--retries 2] S1 S2 ..
 *       Mesh bytes sent per second per agent over the interval (every byte
 *       counted, SWIM included), with the bytes per message type. A window
 *       with membership churn is measured again (up to --retries times).
 *   stall [--seconds S] [--tick-ms 5]
 *       The scheduler yardstick: sleeps tick-ms at a time for S seconds (or
 *       until SIGTERM) and counts wake-ups that came late by more than 100 ms
 *       and 500 ms; each late one goes to stderr with its wall-clock time. An
 *       agent suffers the same delays, so this says what a soak's verdicts
 *       were up against.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pmesh.h"

/* Longest any one chain (or step) may take before the run is called stuck. */
#define S_WAIT_MS 30000
/* Agents and message types tracked by the counter snapshots. */
#define S_MAX_AGENTS 64
#define S_MAX_KINDS 48

static int64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int
s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples (ns), in microseconds. */
static double
s_pct_us(const int64_t *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t) (q * (double) n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double) sorted[rank - 1] / 1000.0;
}

/* Splits "a,b,c" into a NULL-terminated array of strdup'd pieces. */
static char **
s_split(const char *csv, size_t *n)
{
    char *copy = strdup(csv);
    size_t cap = 1;
    for (const char *c = csv; *c; c++)
        cap += *c == ',';
    char **out = calloc(cap + 1, sizeof *out);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save))
        out[(*n)++] = strdup(tok);
    free(copy);
    return out;
}

static void
s_die(const char *what, int err, pm_client_t *c)
{
    fprintf(stderr, "mesh_bench: %s: %s%s%s\n", what, pm_err_name(err), c ? ": " : "",
            c ? pm_client_last_error(c) : "");
    exit(1);
}

/* ---- worker ----------------------------------------------------------------- */

static volatile sig_atomic_t s_stop;

static void
s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

static int
s_cmd_worker(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: mesh_bench worker SOCKET FN[,FN...] [CONCURRENCY]\n");
        return 2;
    }
    size_t nf;
    char **fns = s_split(argv[2], &nf);
    int conc = argc > 3 ? atoi(argv[3]) : 4;
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pm_worker_t *w;
    int err = pm_worker_new(argv[1], (const char *const *) fns, nf, conc, &w);
    if (err)
        s_die("worker register", err, NULL);
    long served = 0, failed = 0;
    while (!s_stop) {
        pm_invocation_t *inv;
        err = pm_worker_next(w, 200, &inv);
        if (err == PM_ERR_WAIT_TIMEOUT)
            continue;
        if (err) {
            fprintf(stderr, "mesh_bench worker: next: %s\n", pm_err_name(err));
            break;
        }
        char out[32];
        long v = inv->input_len ? strtol((const char *) inv->input, NULL, 10) : 0;
        int n = snprintf(out, sizeof out, "%ld", v + 1);
        if (pm_worker_complete(w, inv, out, (size_t) n) == PM_OK)
            served++;
        else
            failed++;
        pm_invocation_destroy(&inv);
    }
    printf("worker socket=%s fns=%s served=%ld failed=%ld\n", argv[1], argv[2], served, failed);
    pm_worker_destroy(&w);
    return 0;
}

/* ---- counters ----------------------------------------------------------------- */

/* One agent's mesh counters at one moment. */
typedef struct {
    size_t n;
    char kind[S_MAX_KINDS][32];
    int64_t sent_msgs[S_MAX_KINDS], sent_bytes[S_MAX_KINDS];
    int64_t recv_msgs[S_MAX_KINDS];
    int64_t bytes_sent;
    int64_t alive, suspect, dead;
    int64_t churn; /* suspicions raised + refutations + deaths declared, so far */
} s_counters_t;

static size_t
s_kind_index(s_counters_t *c, const char *kind)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kind[i], kind) == 0)
            return i;
    if (c->n == S_MAX_KINDS)
        return S_MAX_KINDS - 1;
    snprintf(c->kind[c->n], sizeof c->kind[0], "%s", kind);
    return c->n++;
}

static int
s_counters_read(pm_client_t *client, s_counters_t *c)
{
    memset(c, 0, sizeof *c);
    char *js = NULL;
    int err = pm_status(client, &js);
    if (err)
        return err;
    json_error_t jerr;
    json_t *root = json_loads(js, 0, &jerr);
    free(js);
    json_t *mesh = root ? json_object_get(root, "mesh") : NULL;
    if (!mesh) {
        json_decref(root);
        return PM_ERR_INTERNAL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(mesh, "sent"), k, v)
    {
        size_t i = s_kind_index(c, k);
        c->sent_msgs[i] = json_integer_value(json_object_get(v, "messages"));
        c->sent_bytes[i] = json_integer_value(json_object_get(v, "bytes"));
    }
    json_object_foreach(json_object_get(mesh, "received"), k, v)
    {
        size_t i = s_kind_index(c, k);
        c->recv_msgs[i] = json_integer_value(json_object_get(v, "messages"));
    }
    c->bytes_sent = json_integer_value(json_object_get(mesh, "bytes_sent"));
    c->churn = json_integer_value(json_object_get(mesh, "suspicions")) +
               json_integer_value(json_object_get(mesh, "refutations")) +
               json_integer_value(json_object_get(mesh, "deaths_declared"));
    json_t *m = json_object_get(mesh, "members");
    c->alive = json_integer_value(json_object_get(m, "alive"));
    c->suspect = json_integer_value(json_object_get(m, "suspect"));
    c->dead = json_integer_value(json_object_get(m, "dead"));
    json_decref(root);
    return PM_OK;
}

static int
s_is_swim(const char *kind)
{
    return strncmp(kind, "swim_", 5) == 0;
}

/* Differences between two snapshots of a set of agents: operation (non-SWIM)
 * messages sent across all agents, SWIM messages sent, and the operation
 * messages the agent `focus` sent or received, by type. */
typedef struct {
    int64_t op_sent;
    int64_t swim_sent;
    int64_t swim_bytes;
    int64_t focus_touch;
    size_t nk;
    char kind[S_MAX_KINDS][32];
    int64_t focus_by_kind[S_MAX_KINDS];
    int64_t all_by_kind[S_MAX_KINDS];
} s_delta_t;

static int64_t
s_lookup(const s_counters_t *c, const char *kind, int sent)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kind[i], kind) == 0)
            return sent ? c->sent_msgs[i] : c->recv_msgs[i];
    return 0;
}

static int64_t
s_lookup_bytes(const s_counters_t *c, const char *kind)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kind[i], kind) == 0)
            return c->sent_bytes[i];
    return 0;
}

static void
s_delta_add_kind(s_delta_t *d, const char *kind, int64_t focus, int64_t all)
{
    size_t i = 0;
    while (i < d->nk && strcmp(d->kind[i], kind) != 0)
        i++;
    if (i == d->nk) {
        if (d->nk == S_MAX_KINDS)
            return;
        snprintf(d->kind[d->nk++], sizeof d->kind[0], "%s", kind);
    }
    d->focus_by_kind[i] += focus;
    d->all_by_kind[i] += all;
}

/* Adds (after - before) over agents [0, n) to *d. */
static void
s_delta_accumulate(s_delta_t *d, const s_counters_t *before, const s_counters_t *after, size_t n,
                   size_t focus)
{
    for (size_t a = 0; a < n; a++)
        for (size_t i = 0; i < after[a].n; i++) {
            const char *k = after[a].kind[i];
            int64_t ds = after[a].sent_msgs[i] - s_lookup(&before[a], k, 1);
            int64_t dr = after[a].recv_msgs[i] - s_lookup(&before[a], k, 0);
            if (s_is_swim(k)) {
                d->swim_sent += ds;
                d->swim_bytes += after[a].sent_bytes[i] - s_lookup_bytes(&before[a], k);
                continue;
            }
            if (strcmp(k, "batch") == 0)
                continue; /* a frame: its envelopes are counted by their own types */
            d->op_sent += ds;
            int64_t f = a == focus ? ds + dr : 0;
            d->focus_touch += f;
            if (ds || f)
                s_delta_add_kind(d, k, f, ds);
        }
}

static void
s_snapshot(pm_client_t **mon, size_t n, s_counters_t *out)
{
    for (size_t a = 0; a < n; a++) {
        int err = s_counters_read(mon[a], &out[a]);
        if (err)
            s_die("status", err, mon[a]);
    }
}

/* ---- chain ------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int64_t *lat;
    size_t n_lat;
    int64_t chains; /* every chain run, warm-up included: the message counts cover them */
    s_delta_t run;  /* counters over the timed part */
    s_delta_t build;
} s_mode_t;

typedef struct {
    pm_client_t *caller;
    pm_client_t *owner; /* creates the heads of pipelined chains */
    char **fns;
    size_t nf;
    int steps;
} s_chain_ctx_t;

static long
s_value_of(const pm_promise_t *p)
{
    return p->value_len ? strtol((const char *) p->value, NULL, 10) : 0;
}

/* Waits for the replies to req_a and req_b; returns the latter's promise
 * (caller frees); dies on any error. */
static pm_promise_t *
s_recv_pair(pm_client_t *c, uint64_t req_a, uint64_t req_b, const char *what)
{
    pm_promise_t *out = NULL;
    int got_a = 0, got_b = 0;
    while (!got_a || !got_b) {
        pm_result_t *r;
        int err = pm_recv(c, S_WAIT_MS, &r);
        if (err)
            s_die(what, err, c);
        if (r->err)
            s_die(what, r->err, c);
        if (r->req_id == req_a)
            got_a = 1;
        if (r->req_id == req_b) {
            got_b = 1;
            out = r->promise;
            r->promise = NULL;
        }
        pm_result_destroy(&r);
    }
    if (!out)
        s_die(what, PM_ERR_INTERNAL, c);
    return out;
}

/* Builds one pipelined chain; returns the head's id and sets *last. */
static char *
s_chain_build(s_chain_ctx_t *x, char **last)
{
    char *head = NULL;
    int err = pm_create(x->owner, NULL, &head, NULL);
    if (err)
        s_die("create head", err, x->owner);
    char *prev = strdup(head);
    for (int i = 0; i < x->steps; i++) {
        char *nid = NULL;
        err = pm_then(x->caller, prev, x->fns[i % x->nf], 0, &nid);
        if (err)
            s_die("then", err, x->caller);
        free(prev);
        prev = nid;
    }
    *last = prev;
    return head;
}

static int64_t
s_chain_run(s_chain_ctx_t *x, const char *head, const char *last)
{
    int64_t t0 = s_now_ns();
    uint64_t rq_res, rq_await;
    int err = pm_send_resolve(x->caller, head, "0", 1, &rq_res);
    if (!err)
        err = pm_send_await(x->caller, last, S_WAIT_MS, &rq_await);
    if (err)
        s_die("resolve/await", err, x->caller);
    pm_promise_t *p = s_recv_pair(x->caller, rq_res, rq_await, "pipelined chain");
    int64_t t1 = s_now_ns();
    if (p->state != PM_STATE_RESOLVED || s_value_of(p) != x->steps) {
        fprintf(stderr, "mesh_bench: pipelined chain ended %s with '%s' (want %d)\n",
                pm_state_name(p->state), p->value ? (char *) p->value : p->reason, x->steps);
        exit(1);
    }
    pm_promise_destroy(&p);
    return t1 - t0;
}

static int64_t
s_driven_run(s_chain_ctx_t *x, int batched)
{
    char value[32] = "0";
    int64_t t0 = s_now_ns();
    for (int i = 0; i < x->steps; i++) {
        const char *fn = x->fns[i % x->nf];
        char *id = NULL, *nid = NULL;
        pm_promise_t *p = NULL;
        int err;
        if (batched) {
            uint64_t r1, r2, r3, r4;
            err = pm_send_create(x->caller, NULL, &id, &r1);
            if (!err)
                err = pm_send_then(x->caller, id, fn, 0, &nid, &r2);
            if (!err)
                err = pm_send_resolve(x->caller, id, value, strlen(value), &r3);
            if (!err)
                err = pm_send_await(x->caller, nid, S_WAIT_MS, &r4);
            if (err)
                s_die("batched step", err, x->caller);
            int left = 4;
            while (left) {
                pm_result_t *r;
                err = pm_recv(x->caller, S_WAIT_MS, &r);
                if (err || r->err)
                    s_die("batched step", err ? err : r->err, x->caller);
                if (r->req_id == r4) {
                    p = r->promise;
                    r->promise = NULL;
                }
                pm_result_destroy(&r);
                left--;
            }
        } else {
            err = pm_create(x->caller, NULL, &id, NULL);
            if (!err)
                err = pm_then(x->caller, id, fn, 0, &nid);
            if (!err)
                err = pm_resolve(x->caller, id, value, strlen(value));
            if (!err)
                err = pm_await(x->caller, nid, S_WAIT_MS, &p);
            if (err)
                s_die("driven step", err, x->caller);
        }
        if (!p || p->state != PM_STATE_RESOLVED) {
            fprintf(stderr, "mesh_bench: driven step %d ended %s\n", i,
                    p ? pm_state_name(p->state) : "without a promise");
            exit(1);
        }
        snprintf(value, sizeof value, "%ld", s_value_of(p));
        pm_promise_destroy(&p);
        free(id);
        free(nid);
    }
    int64_t t1 = s_now_ns();
    if (atol(value) != x->steps) {
        fprintf(stderr, "mesh_bench: driven chain ended with %s (want %d)\n", value, x->steps);
        exit(1);
    }
    return t1 - t0;
}

static void
s_print_mode(const s_mode_t *m, int steps, const char *owner)
{
    qsort(m->lat, m->n_lat, sizeof *m->lat, s_cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < m->n_lat; i++)
        sum += (double) m->lat[i];
    double total_steps = (double) m->chains * steps;
    printf("mode=%s owner=%s chains=%zu steps=%d p50_us=%.1f p99_us=%.1f mean_us=%.1f "
           "min_us=%.1f max_us=%.1f msgs_per_step=%.3f swim_msgs_per_step=%.3f "
           "swim_bytes_per_step=%.1f caller_msgs_per_step=%.3f caller_msgs_per_chain=%.3f "
           "build_msgs_per_chain=%.3f",
           m->name, owner, m->n_lat, steps, s_pct_us(m->lat, m->n_lat, 0.50),
           s_pct_us(m->lat, m->n_lat, 0.99), m->n_lat ? sum / (double) m->n_lat / 1000.0 : 0,
           s_pct_us(m->lat, m->n_lat, 0), s_pct_us(m->lat, m->n_lat, 1.0),
           (double) m->run.op_sent / total_steps, (double) m->run.swim_sent / total_steps,
           (double) m->run.swim_bytes / total_steps, (double) m->run.focus_touch / total_steps,
           (double) m->run.focus_touch / (double) m->chains,
           (double) m->build.op_sent / (double) m->chains);
    printf(" by_type=");
    for (size_t i = 0; i < m->run.nk; i++)
        printf("%s%s:%.2f/%.2f", i ? "," : "", m->run.kind[i],
               (double) m->run.all_by_kind[i] / total_steps,
               (double) m->run.focus_by_kind[i] / total_steps);
    printf("\n");
}

static int
s_cmd_chain(int argc, char **argv)
{
    const char *caller_s = NULL, *owner_s = NULL, *agents_s = NULL, *fns_s = NULL;
    int steps = 10, chains = 200, warmup = 20, rounds = 4;
    static struct option opts[] = {{"caller", 1, 0, 'c'}, {"owner", 1, 0, 'o'},
                                   {"agents", 1, 0, 'a'}, {"fns", 1, 0, 'f'},
                                   {"steps", 1, 0, 's'},  {"chains", 1, 0, 'n'},
                                   {"warmup", 1, 0, 'w'}, {"rounds", 1, 0, 'r'},
                                   {0, 0, 0, 0}};
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': caller_s = optarg; break;
        case 'o': owner_s = optarg; break;
        case 'a': agents_s = optarg; break;
        case 'f': fns_s = optarg; break;
        case 's': steps = atoi(optarg); break;
        case 'n': chains = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!caller_s || !agents_s || !fns_s || steps < 1 || chains < 1 || rounds < 1 ||
        warmup < 0) {
        fprintf(stderr, "usage: mesh_bench chain --caller S --agents S1,.. --fns f0,.. "
                        "[--owner S] [--steps N] [--chains N] [--warmup N] [--rounds N]\n");
        return 2;
    }
    size_t na;
    char **agents = s_split(agents_s, &na);
    if (na > S_MAX_AGENTS)
        na = S_MAX_AGENTS;
    size_t focus = na;
    pm_client_t *mon[S_MAX_AGENTS];
    for (size_t a = 0; a < na; a++) {
        int err = pm_client_connect(agents[a], &mon[a]);
        if (err)
            s_die(agents[a], err, NULL);
        if (strcmp(agents[a], caller_s) == 0)
            focus = a;
    }
    if (focus == na) {
        fprintf(stderr, "mesh_bench: --caller must be one of --agents\n");
        return 2;
    }
    s_chain_ctx_t x = {.steps = steps};
    x.fns = s_split(fns_s, &x.nf);
    int err = pm_client_connect(caller_s, &x.caller);
    if (err)
        s_die(caller_s, err, NULL);
    int remote_owner = owner_s && strcmp(owner_s, caller_s) != 0;
    x.owner = x.caller;
    if (remote_owner && (err = pm_client_connect(owner_s, &x.owner)))
        s_die(owner_s, err, NULL);
    const char *owner_node = pm_client_node(x.owner);

    /* Warm-up: every mode, every function, every path, untimed. */
    for (int i = 0; i < warmup; i++) {
        char *last, *head = s_chain_build(&x, &last);
        s_chain_run(&x, head, last);
        free(head);
        free(last);
        s_driven_run(&x, 0);
        s_driven_run(&x, 1);
    }

    /* What a pipelined chain costs at its two ends (resolving the head
     * through the caller's agent, awaiting the end there) with no step in
     * between: the head itself is awaited. */
    s_counters_t *b = calloc(na, sizeof *b), *e = calloc(na, sizeof *e);
    s_delta_t ends = {0};
    int n_ends = 20;
    for (int i = 0; i < n_ends; i++) {
        char *head = NULL;
        if ((err = pm_create(x.owner, NULL, &head, NULL)))
            s_die("create head", err, x.owner);
        s_snapshot(mon, na, b);
        s_chain_ctx_t zero = x;
        zero.steps = 0;
        s_chain_run(&zero, head, head);
        s_snapshot(mon, na, e);
        s_delta_accumulate(&ends, b, e, na, focus);
        free(head);
    }

    s_mode_t modes[3] = {{.name = "pipelined"}, {.name = "driven"}, {.name = "batched"}};
    for (int m = 0; m < 3; m++)
        modes[m].lat = calloc((size_t) chains, sizeof(int64_t));
    char **heads = calloc((size_t) chains, sizeof *heads);
    char **lasts = calloc((size_t) chains, sizeof *lasts);
    for (int r = 0; r < rounds; r++) {
        int lo = chains * r / rounds, hi = chains * (r + 1) / rounds;
        /* pipelined: build the round's chains, then run them one by one */
        s_snapshot(mon, na, b);
        for (int c = lo; c < hi; c++)
            heads[c] = s_chain_build(&x, &lasts[c]);
        s_snapshot(mon, na, e);
        s_delta_accumulate(&modes[0].build, b, e, na, focus);
        s_snapshot(mon, na, b);
        for (int c = lo; c < hi; c++) {
            modes[0].lat[modes[0].n_lat++] = s_chain_run(&x, heads[c], lasts[c]);
            free(heads[c]);
            free(lasts[c]);
        }
        s_snapshot(mon, na, e);
        s_delta_accumulate(&modes[0].run, b, e, na, focus);
        modes[0].chains += hi - lo;
        for (int m = 1; m < 3; m++) {
            s_snapshot(mon, na, b);
            for (int c = lo; c < hi; c++)
                modes[m].lat[modes[m].n_lat++] = s_driven_run(&x, m == 2);
            s_snapshot(mon, na, e);
            s_delta_accumulate(&modes[m].run, b, e, na, focus);
            modes[m].chains += hi - lo;
        }
    }
    printf("ends owner=%s caller=%s msgs_per_chain=%.3f caller_msgs_per_chain=%.3f\n", owner_node,
           pm_client_node(x.caller), (double) ends.op_sent / n_ends,
           (double) ends.focus_touch / n_ends);
    for (int m = 0; m < 3; m++)
        s_print_mode(&modes[m], steps, owner_node);

    for (int m = 0; m < 3; m++)
        free(modes[m].lat);
    free(heads);
    free(lasts);
    free(b);
    free(e);
    if (remote_owner)
        pm_client_destroy(&x.owner);
    pm_client_destroy(&x.caller);
    for (size_t a = 0; a < na; a++)
        pm_client_destroy(&mon[a]);
    return 0;
}

/* ---- converge ---------------------------------------------------------------- */

static int
s_cmd_converge(int argc, char **argv)
{
    long expect = 0, timeout_ms = 30000;
    int64_t since = 0;
    static struct option opts[] = {{"expect", 1, 0, 'e'}, {"timeout-ms", 1, 0, 't'},
                                   {"since-ms", 1, 0, 's'}, {0, 0, 0, 0}};
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'e': expect = atol(optarg); break;
        case 't': timeout_ms = atol(optarg); break;
        case 's': since = atoll(optarg); break;
        default: return 2;
        }
    }
    size_t n = (size_t) (argc - optind);
    if (expect < 1 || n < 1 || n > 1024) {
        fprintf(stderr, "usage: mesh_bench converge --expect N [--timeout-ms T] "
                        "[--since-ms EPOCH_MS] SOCKET...\n");
        return 2;
    }
    if (!since)
        since = s_wall_ms();
    char **sock = argv + optind;
    pm_client_t **cl = calloc(n, sizeof *cl);
    int64_t *first = calloc(n, sizeof *first);
    long *seen = calloc(n, sizeof *seen);
    int64_t deadline = s_wall_ms() + timeout_ms;
    size_t done = 0;
    while (done < n && s_wall_ms() < deadline) {
        for (size_t i = 0; i < n; i++) {
            if (first[i])
                continue;
            if (!cl[i]) {
                struct stat st;
                if (stat(sock[i], &st) != 0 || pm_client_connect(sock[i], &cl[i]) != PM_OK) {
                    cl[i] = NULL;
                    continue;
                }
            }
            s_counters_t c;
            if (s_counters_read(cl[i], &c) != PM_OK)
                continue;
            seen[i] = c.alive;
            if (c.alive == expect) {
                first[i] = s_wall_ms();
                done++;
            }
        }
        if (done < n)
            s_sleep_ms(10);
    }
    /* Confirm: does every agent still see N alive now? */
    long stable = 0;
    for (size_t i = 0; i < n; i++) {
        s_counters_t c;
        if (cl[i] && s_counters_read(cl[i], &c) == PM_OK && c.alive == expect)
            stable++;
    }
    int64_t latest = 0;
    for (size_t i = 0; i < n; i++)
        if (first[i] > latest)
            latest = first[i];
    long min_seen = expect;
    for (size_t i = 0; i < n; i++)
        if (!first[i] && seen[i] < min_seen)
            min_seen = seen[i];
    printf("converge agents=%zu expect=%ld converged=%zu still_converged=%ld "
           "converge_ms=%lld min_alive_seen=%ld\n",
           n, expect, done, stable, done == n ? (long long) (latest - since) : -1LL, min_seen);
    for (size_t i = 0; i < n; i++)
        pm_client_destroy(&cl[i]);
    free(cl);
    free(first);
    free(seen);
    return done == n ? 0 : 1;
}

/* ---- idle -------------------------------------------------------------------- */

static int
s_cmd_idle(int argc, char **argv)
{
    double seconds = 10;
    int retries = 2;
    static struct option opts[] = {{"seconds", 1, 0, 's'}, {"retries", 1, 0, 'r'}, {0, 0, 0, 0}};
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 's')
            seconds = atof(optarg);
        else if (o == 'r')
            retries = atoi(optarg);
        else
            return 2;
    }
    size_t n = (size_t) (argc - optind);
    if (n < 1 || n > 1024 || seconds <= 0 || retries < 0) {
        fprintf(stderr, "usage: mesh_bench idle [--seconds S] [--retries K] SOCKET...\n");
        return 2;
    }
    pm_client_t **cl = calloc(n, sizeof *cl);
    s_counters_t *b = calloc(n, sizeof *b), *e = calloc(n, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        int err = pm_client_connect(argv[optind + i], &cl[i]);
        if (err)
            s_die(argv[optind + i], err, NULL);
    }
    /* A window in which membership changed (a suspicion, a refutation, a
     * death, or an agent not seeing all N) is not idle: measure again, up to
     * `retries` more times, and say how many windows were set aside. */
    int discarded = 0;
    for (;;) {
        int64_t t0 = s_now_ns();
        s_snapshot(cl, n, b);
        int64_t t1 = s_now_ns();
        s_sleep_ms((int) (seconds * 1000));
        int64_t t2 = s_now_ns();
        s_snapshot(cl, n, e);
        int64_t t3 = s_now_ns();
        /* The interval between the middles of the two sweeps. */
        double secs = (double) ((t2 + t3) / 2 - (t0 + t1) / 2) / 1e9;
        double sum = 0, lo = 1e18, hi = 0;
        long not_all_alive = 0;
        int64_t churn = 0;
        s_delta_t kinds = {0};
        for (size_t i = 0; i < n; i++) {
            double r = (double) (e[i].bytes_sent - b[i].bytes_sent) / secs;
            sum += r;
            lo = r < lo ? r : lo;
            hi = r > hi ? r : hi;
            if (e[i].alive != (int64_t) n || b[i].alive != (int64_t) n)
                not_all_alive++;
            churn += e[i].churn - b[i].churn;
            for (size_t k = 0; k < e[i].n; k++)
                s_delta_add_kind(&kinds, e[i].kind[k], 0,
                                 e[i].sent_bytes[k] - s_lookup_bytes(&b[i], e[i].kind[k]));
        }
        int clean = churn == 0 && not_all_alive == 0;
        if (!clean && discarded < retries) {
            fprintf(stderr, "mesh_bench idle: window with churn %lld, %ld agent(s) not seeing "
                            "all %zu: measuring again\n", (long long) churn, not_all_alive, n);
            discarded++;
            continue;
        }
        printf("idle agents=%zu seconds=%.2f bytes_per_s_per_agent=%.1f min=%.1f max=%.1f "
               "agents_not_seeing_all=%ld churn=%lld discarded=%d by_type=",
               n, secs, sum / (double) n, lo, hi, not_all_alive, (long long) churn, discarded);
        for (size_t k = 0; k < kinds.nk; k++)
            printf("%s%s:%.1f", k ? "," : "", kinds.kind[k],
                   (double) kinds.all_by_kind[k] / secs / (double) n);
        printf("\n");
        break;
    }
    for (size_t i = 0; i < n; i++)
        pm_client_destroy(&cl[i]);
    free(cl);
    free(b);
    free(e);
    return 0;
}

/* ---- stall ------------------------------------------------------------------- */

static int
s_cmd_stall(int argc, char **argv)
{
    double seconds = 60;
    int tick = 5;
    static struct option opts[] = {{"seconds", 1, 0, 's'}, {"tick-ms", 1, 0, 't'}, {0, 0, 0, 0}};
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 's')
            seconds = atof(optarg);
        else if (o == 't')
            tick = atoi(optarg);
        else
            return 2;
    }
    if (seconds <= 0 || tick < 1) {
        fprintf(stderr, "usage: mesh_bench stall [--seconds S] [--tick-ms MS]\n");
        return 2;
    }
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int64_t start = s_now_ns(), end = start + (int64_t) (seconds * 1e9), last = start;
    int64_t worst = 0;
    long wakeups = 0, late100 = 0, late500 = 0;
    while (!s_stop && last < end) {
        s_sleep_ms(tick);
        int64_t now = s_now_ns();
        int64_t late = now - last - (int64_t) tick * 1000000;
        last = now;
        wakeups++;
        if (late > worst)
            worst = late;
        if (late > 100000000) {
            late100++;
            late500 += late > 500000000;
            fprintf(stderr, "stall at %lld: woke %lld ms late\n", (long long) s_wall_ms(),
                    (long long) (late / 1000000));
        }
    }
    printf("stall seconds=%.1f wakeups=%ld late100=%ld late500=%ld worst_ms=%lld\n",
           (double) (last - start) / 1e9, wakeups, late100, late500,
           (long long) (worst / 1000000));
    return 0;
}

int
main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: mesh_bench worker|chain|converge|idle|stall ...\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "worker") == 0)
        return s_cmd_worker(argc - 1, argv + 1);
    if (strcmp(cmd, "chain") == 0)
        return s_cmd_chain(argc - 1, argv + 1);
    if (strcmp(cmd, "converge") == 0)
        return s_cmd_converge(argc - 1, argv + 1);
    if (strcmp(cmd, "idle") == 0)
        return s_cmd_idle(argc - 1, argv + 1);
    if (strcmp(cmd, "stall") == 0)
        return s_cmd_stall(argc - 1, argv + 1);
    fprintf(stderr, "mesh_bench: unknown subcommand %s\n", cmd);
    return 2;
}
