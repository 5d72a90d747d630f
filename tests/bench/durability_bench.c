/*
 * durability_bench.c - the driver behind scripts/bench-durability. It talks
 * to running pmeshd agents through libpmesh only, so it measures what a
 * function sees. Every subcommand prints key=value lines on stdout (one
 * record per line, the first word naming it) and diagnostics on stderr; it
 * exits 1 when the agents do something they must not (an error reply, a
 * wrong value), so a broken run never passes for a slow one.
 *
 *   latency SOCKET [--count 2000] [--warmup 200] [--value-bytes 32] [--stats S,..]
 *       Sequential blocking create + resolve on one connection; latency of
 *       each call, and the WAL counters of the --stats agents over the run.
 *   load SOCKET [--clients 8] [--window 256] [--seconds 5] [--warmup-seconds 1]
 *        [--promises N] [--value-bytes 32] [--stats S,..]
 *       Each client keeps `window` requests in flight on the async interface:
 *       pm_send_create, then pm_send_resolve on the minted id at once.
 *       Timed: operations acknowledged per second over --seconds after the
 *       warm-up. With --promises: creates and resolves N promises in all
 *       (the WAL filler of the recovery test) and reports the rate.
 *   takeover --owner S --kill-pid PID --via S[,S..] [--timeout-ms 30000]
 *       Creates and resolves a promise on its owner, SIGKILLs PID (the
 *       owner), then gets it through each --via agent (one thread each),
 *       retrying on errors, until a get succeeds; the time from the kill.
 *   gate --owner S --stop-pid PID [--burst 32] [--hold-ms 300] [--settle-ms 50]
 *       Checks that replies wait for the backups: one create, a pause of
 *       settle-ms, then SIGSTOPs PID (the owner's backup), sends a burst of
 *       creates, counts the ones answered within hold-ms (must be 0: their
 *       records are not at the backup), SIGCONTs.
 *   ready SOCKET --since-ms EPOCH_MS [--timeout-ms 60000]
 *       Waits until the socket listens and the agent answers status; the
 *       time from since-ms (wall clock), and the agent's WAL recovery
 *       counters.
 *   converge --expect N [--backups K] [--timeout-ms 30000] S1 S2 ..
 *       Waits until every agent sees N alive members (and, with K, has K
 *       backups chosen); prints each agent's node, id space and backups.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pmesh.h"

/* Longest any single reply may take before the run is called stuck: far
 * above a group commit, below the client library's own 30 s call limit. */
#define S_WAIT_MS 20000
/* Agents whose counters one run snapshots. */
#define S_MAX_STATS 8
/* Largest value written: the benchmark measures durability, not copying. */
#define S_MAX_VALUE 4096

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

/* Splits "a,b,c" into strdup'd pieces (caller frees each and the array). */
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
    fprintf(stderr, "durability_bench: %s: %s%s%s\n", what, pm_err_name(err), c ? ": " : "",
            c ? pm_client_last_error(c) : "");
    exit(1);
}

static pm_client_t *
s_connect(const char *socket)
{
    pm_client_t *c = NULL;
    int err = pm_client_connect(socket, &c);
    if (err) {
        fprintf(stderr, "durability_bench: connect %s: %s\n", socket, pm_err_name(err));
        exit(1);
    }
    return c;
}

/* Flag parsing shared by the subcommands: `--name value` pairs and
 * positional arguments, in any order. */
typedef struct {
    int argc;
    char **argv;
} s_args_t;

static const char *
s_opt(const s_args_t *a, const char *name, const char *dflt)
{
    for (int i = 1; i + 1 < a->argc; i++)
        if (strcmp(a->argv[i], name) == 0)
            return a->argv[i + 1];
    return dflt;
}

static long
s_opt_long(const s_args_t *a, const char *name, long dflt)
{
    const char *v = s_opt(a, name, NULL);
    return v ? strtol(v, NULL, 10) : dflt;
}

/* The idx-th argument that is neither a flag nor a flag's value. */
static const char *
s_positional(const s_args_t *a, int idx)
{
    for (int i = 1; i < a->argc; i++) {
        if (strncmp(a->argv[i], "--", 2) == 0) {
            i++;
            continue;
        }
        if (idx-- == 0)
            return a->argv[i];
    }
    return NULL;
}

/* ---- agent counters ----------------------------------------------------------- */

/* What one agent's status says about durability at one moment. */
typedef struct {
    char node[64];
    char space[128];
    int64_t fsyncs, appended, durable, held, recovery_ms, recovered_records, promises;
    int64_t produced, acked, takeovers, parked, alive, n_backups;
    char backups[256]; /* "n1,n3" */
} s_status_t;

static int64_t
s_jint(json_t *o, const char *a, const char *b)
{
    json_t *x = json_object_get(o, a);
    if (b)
        x = x ? json_object_get(x, b) : NULL;
    return x ? (int64_t) json_integer_value(x) : -1;
}

static int
s_status_read(pm_client_t *c, s_status_t *st)
{
    memset(st, 0, sizeof *st);
    char *js = NULL;
    int err = pm_status(c, &js);
    if (err)
        return err;
    json_t *root = json_loads(js, 0, NULL);
    free(js);
    if (!root)
        return PM_ERR_INTERNAL;
    snprintf(st->node, sizeof st->node, "%s", json_string_value(json_object_get(root, "node")));
    snprintf(st->space, sizeof st->space, "%s",
             json_string_value(json_object_get(root, "id_space")));
    st->fsyncs = s_jint(root, "wal", "fsyncs");
    st->appended = s_jint(root, "wal", "appended");
    st->durable = s_jint(root, "wal", "durable");
    st->held = s_jint(root, "wal", "held");
    st->recovery_ms = s_jint(root, "wal", "recovery_ms");
    st->recovered_records = s_jint(root, "wal", "recovered_records");
    st->promises = s_jint(root, "promises", "total");
    st->produced = s_jint(root, "replication", "produced");
    st->acked = s_jint(root, "replication", "acked");
    st->takeovers = s_jint(root, "replication", "takeovers");
    st->parked = s_jint(root, "replication", "parked");
    json_t *mesh = json_object_get(root, "mesh");
    st->alive = mesh ? s_jint(mesh, "members", "alive") : -1;
    json_t *bs = json_object_get(json_object_get(root, "replication"), "backups");
    size_t i;
    json_t *b;
    json_array_foreach(bs, i, b)
    {
        size_t used = strlen(st->backups);
        snprintf(st->backups + used, sizeof st->backups - used, "%s%s", used ? "," : "",
                 json_string_value(json_object_get(b, "node")));
        st->n_backups++;
    }
    json_decref(root);
    return PM_OK;
}

/* Status clients for --stats, connected before the run. */
typedef struct {
    size_t n;
    pm_client_t *c[S_MAX_STATS];
} s_stats_t;

static void
s_stats_open(s_stats_t *s, const char *csv)
{
    s->n = 0;
    if (!csv || !*csv)
        return;
    size_t n;
    char **socks = s_split(csv, &n);
    for (size_t i = 0; i < n; i++) {
        if (s->n < S_MAX_STATS)
            s->c[s->n++] = s_connect(socks[i]);
        free(socks[i]);
    }
    free(socks);
}

static void
s_stats_snap(s_stats_t *s, s_status_t *out)
{
    for (size_t i = 0; i < s->n; i++) {
        int err = s_status_read(s->c[i], &out[i]);
        if (err)
            s_die("status", err, s->c[i]);
    }
}

/* One line per agent: what its WAL and replication did between two snapshots. */
static void
s_stats_print(s_stats_t *s, const s_status_t *a, const s_status_t *b)
{
    for (size_t i = 0; i < s->n; i++)
        printf("wal node=%s fsyncs=%lld appended=%lld produced=%lld acked=%lld\n", b[i].node,
               (long long) (b[i].fsyncs - a[i].fsyncs),
               (long long) (b[i].appended - a[i].appended),
               (long long) (b[i].produced - a[i].produced),
               (long long) (b[i].acked - a[i].acked));
}

static void
s_stats_close(s_stats_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        pm_client_destroy(&s->c[i]);
    s->n = 0;
}

static size_t
s_value(char *buf, long bytes)
{
    if (bytes < 1)
        bytes = 1;
    if (bytes > S_MAX_VALUE)
        bytes = S_MAX_VALUE;
    for (long i = 0; i < bytes; i++)
        buf[i] = (char) ('a' + i % 26);
    return (size_t) bytes;
}

/* ---- latency ------------------------------------------------------------------ */

static int
s_cmd_latency(const s_args_t *a)
{
    const char *sock = s_positional(a, 0);
    if (!sock) {
        fprintf(stderr, "usage: durability_bench latency SOCKET [--count N] [--warmup W] "
                        "[--value-bytes B] [--stats S,..]\n");
        return 2;
    }
    long count = s_opt_long(a, "--count", 2000), warm = s_opt_long(a, "--warmup", 200);
    char value[S_MAX_VALUE];
    size_t vlen = s_value(value, s_opt_long(a, "--value-bytes", 32));
    s_stats_t stats;
    s_stats_open(&stats, s_opt(a, "--stats", NULL));
    pm_client_t *c = s_connect(sock);
    int64_t *lc = calloc((size_t) count, sizeof *lc), *ls = calloc((size_t) count, sizeof *ls);
    int64_t *lp = calloc((size_t) count, sizeof *lp);
    s_status_t before[S_MAX_STATS], after[S_MAX_STATS];
    for (long i = -warm; i < count; i++) {
        if (i == 0)
            s_stats_snap(&stats, before);
        char *id = NULL;
        int64_t t0 = s_now_ns();
        int err = pm_create(c, NULL, &id, NULL);
        if (err)
            s_die("create", err, c);
        int64_t t1 = s_now_ns();
        err = pm_resolve(c, id, value, vlen);
        if (err)
            s_die("resolve", err, c);
        int64_t t2 = s_now_ns();
        free(id);
        if (i >= 0) {
            lc[i] = t1 - t0;
            ls[i] = t2 - t1;
            lp[i] = t2 - t0;
        }
    }
    s_stats_snap(&stats, after);
    qsort(lc, (size_t) count, sizeof *lc, s_cmp_i64);
    qsort(ls, (size_t) count, sizeof *ls, s_cmp_i64);
    qsort(lp, (size_t) count, sizeof *lp, s_cmp_i64);
    size_t n = (size_t) count;
    printf("latency count=%ld ops=%ld create_p50_us=%.1f create_p99_us=%.1f create_max_us=%.1f "
           "settle_p50_us=%.1f settle_p99_us=%.1f settle_max_us=%.1f pair_p50_us=%.1f "
           "pair_p99_us=%.1f\n",
           count, 2 * count, s_pct_us(lc, n, 0.5), s_pct_us(lc, n, 0.99), s_pct_us(lc, n, 1),
           s_pct_us(ls, n, 0.5), s_pct_us(ls, n, 0.99), s_pct_us(ls, n, 1), s_pct_us(lp, n, 0.5),
           s_pct_us(lp, n, 0.99));
    s_stats_print(&stats, before, after);
    free(lc);
    free(ls);
    free(lp);
    pm_client_destroy(&c);
    s_stats_close(&stats);
    return 0;
}

/* ---- load --------------------------------------------------------------------- */

typedef struct {
    pthread_t thread;
    pm_client_t *c;
    long window;
    long quota; /* promises to create and resolve; 0: until s_stop */
    const char *value;
    size_t vlen;
    long errors;
    char first_error[256];
} s_loader_t;

static atomic_long s_acked;   /* operations acknowledged, all clients */
static atomic_int s_stop;
static atomic_int s_go;

static void *
s_loader(void *arg)
{
    s_loader_t *l = arg;
    while (!atomic_load(&s_go))
        s_sleep_ms(1);
    long inflight = 0, started = 0;
    for (;;) {
        int stop = atomic_load(&s_stop) || (l->quota && started >= l->quota);
        while (!stop && inflight + 2 <= l->window) {
            char *id = NULL;
            uint64_t rq;
            int err = pm_send_create(l->c, NULL, &id, &rq);
            if (!err)
                err = pm_send_resolve(l->c, id, l->value, l->vlen, &rq);
            free(id);
            if (err)
                s_die("send", err, l->c);
            inflight += 2;
            started++;
            stop = l->quota && started >= l->quota;
        }
        if (stop && inflight == 0)
            break;
        pm_result_t *r = NULL;
        int err = pm_recv(l->c, S_WAIT_MS, &r);
        if (err)
            s_die("recv (no reply in time)", err, l->c);
        inflight--;
        if (r->err) {
            if (!l->errors++)
                snprintf(l->first_error, sizeof l->first_error, "%s %s: %s",
                         r->op == PM_OP_CREATE ? "create" : "resolve", pm_err_name(r->err),
                         r->message);
        } else {
            atomic_fetch_add(&s_acked, 1);
        }
        pm_result_destroy(&r);
    }
    return NULL;
}

static int
s_cmd_load(const s_args_t *a)
{
    const char *sock = s_positional(a, 0);
    if (!sock) {
        fprintf(stderr, "usage: durability_bench load SOCKET [--clients 8] [--window 256] "
                        "[--seconds 5] [--warmup-seconds 1] [--promises N] [--stats S,..]\n");
        return 2;
    }
    long clients = s_opt_long(a, "--clients", 8), window = s_opt_long(a, "--window", 256);
    long seconds = s_opt_long(a, "--seconds", 5), warm = s_opt_long(a, "--warmup-seconds", 1);
    long promises = s_opt_long(a, "--promises", 0);
    if (clients < 1 || window < 2 || seconds < 1) {
        fprintf(stderr, "durability_bench load: bad --clients/--window/--seconds\n");
        return 2;
    }
    char value[S_MAX_VALUE];
    size_t vlen = s_value(value, s_opt_long(a, "--value-bytes", 32));
    s_stats_t stats;
    s_stats_open(&stats, s_opt(a, "--stats", NULL));
    s_loader_t *ls = calloc((size_t) clients, sizeof *ls);
    for (long i = 0; i < clients; i++) {
        ls[i].c = s_connect(sock);
        ls[i].window = window;
        ls[i].value = value;
        ls[i].vlen = vlen;
        if (promises)
            ls[i].quota = promises / clients + (i < promises % clients);
        pthread_create(&ls[i].thread, NULL, s_loader, &ls[i]);
    }
    s_status_t before[S_MAX_STATS], after[S_MAX_STATS];
    int64_t t0, t1;
    long n0, n1;
    if (promises) {
        s_stats_snap(&stats, before);
        t0 = s_now_ns();
        n0 = 0;
        atomic_store(&s_go, 1);
        for (long i = 0; i < clients; i++)
            pthread_join(ls[i].thread, NULL);
        t1 = s_now_ns();
        n1 = atomic_load(&s_acked);
        s_stats_snap(&stats, after);
    } else {
        atomic_store(&s_go, 1);
        s_sleep_ms((int) (warm * 1000));
        s_stats_snap(&stats, before);
        n0 = atomic_load(&s_acked);
        t0 = s_now_ns();
        s_sleep_ms((int) (seconds * 1000));
        n1 = atomic_load(&s_acked);
        t1 = s_now_ns();
        s_stats_snap(&stats, after);
        atomic_store(&s_stop, 1);
        for (long i = 0; i < clients; i++)
            pthread_join(ls[i].thread, NULL);
    }
    long errors = 0;
    for (long i = 0; i < clients; i++) {
        if (ls[i].errors && !errors)
            fprintf(stderr, "durability_bench load: %s\n", ls[i].first_error);
        errors += ls[i].errors;
        pm_client_destroy(&ls[i].c);
    }
    double secs = (double) (t1 - t0) / 1e9;
    printf("load mode=%s clients=%ld window=%ld seconds=%.3f ops=%ld ops_per_s=%.0f "
           "promises_per_s=%.0f errors=%ld\n",
           promises ? "fill" : "timed", clients, window, secs, n1 - n0,
           (double) (n1 - n0) / secs, (double) (n1 - n0) / 2 / secs, errors);
    s_stats_print(&stats, before, after);
    s_stats_close(&stats);
    free(ls);
    return errors ? 1 : 0;
}

/* ---- takeover ----------------------------------------------------------------- */

typedef struct {
    pthread_t thread;
    const char *socket;
    pm_client_t *c;
    const char *id;
    const char *value;
    int64_t kill_ns;
    int64_t deadline_ns;
    int64_t took_ns; /* -1: never */
    long attempts;
    int first_err, last_err; /* of the failed attempts (0: none failed) */
    int state;
    int value_ok;
} s_reader_t;

static void *
s_reader(void *arg)
{
    s_reader_t *r = arg;
    r->took_ns = -1;
    while (s_now_ns() < r->deadline_ns) {
        pm_promise_t *p = NULL;
        r->attempts++;
        int err = pm_get(r->c, r->id, &p);
        if (!err) {
            r->took_ns = s_now_ns() - r->kill_ns;
            r->state = p->state;
            r->value_ok = p->value && strcmp((const char *) p->value, r->value) == 0;
            pm_promise_destroy(&p);
            return NULL;
        }
        if (!r->first_err)
            r->first_err = err;
        r->last_err = err;
        /* A typed failure (OWNER_LOST, NOT_FOUND) came back at once: ask
         * again soon, the takeover may be a moment away. */
        s_sleep_ms(5);
    }
    return NULL;
}

static int
s_cmd_takeover(const s_args_t *a)
{
    const char *owner = s_opt(a, "--owner", NULL), *via = s_opt(a, "--via", NULL);
    long pid = s_opt_long(a, "--kill-pid", 0), timeout = s_opt_long(a, "--timeout-ms", 30000);
    if (!owner || !via || pid <= 1) {
        fprintf(stderr, "usage: durability_bench takeover --owner S --kill-pid PID --via S[,S..] "
                        "[--timeout-ms T]\n");
        return 2;
    }
    size_t nv;
    char **vias = s_split(via, &nv);
    s_reader_t *rs = calloc(nv, sizeof *rs);
    for (size_t i = 0; i < nv; i++) { /* connected before the kill: not part of the time */
        rs[i].socket = vias[i];
        rs[i].c = s_connect(vias[i]);
    }
    pm_client_t *oc = s_connect(owner);
    char *id = NULL;
    int err = pm_create(oc, NULL, &id, NULL);
    if (err)
        s_die("create on the owner", err, oc);
    char value[64];
    snprintf(value, sizeof value, "survives-%lld", (long long) s_wall_ms());
    err = pm_resolve(oc, id, value, strlen(value));
    if (err)
        s_die("resolve on the owner", err, oc);
    int64_t kill_wall = s_wall_ms();
    int64_t kill_ns = s_now_ns();
    if (kill((pid_t) pid, SIGKILL) != 0) {
        fprintf(stderr, "durability_bench: kill %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < nv; i++) {
        rs[i].id = id;
        rs[i].value = value;
        rs[i].kill_ns = kill_ns;
        rs[i].deadline_ns = kill_ns + timeout * 1000000;
        pthread_create(&rs[i].thread, NULL, s_reader, &rs[i]);
    }
    int bad = 0;
    for (size_t i = 0; i < nv; i++) {
        pthread_join(rs[i].thread, NULL);
        const char *node = pm_client_node(rs[i].c);
        const char *fe = rs[i].first_err ? pm_err_name(rs[i].first_err) : "-";
        const char *le = rs[i].last_err ? pm_err_name(rs[i].last_err) : "-";
        if (rs[i].took_ns < 0) {
            printf("takeover via=%s id=%s kill_wall_ms=%lld ms=-1 attempts=%ld first_error=%s "
                   "last_error=%s\n",
                   node, id, (long long) kill_wall, rs[i].attempts, fe, le);
            bad = 1;
            continue;
        }
        printf("takeover via=%s id=%s kill_wall_ms=%lld ms=%.1f attempts=%ld state=%s "
               "value_ok=%d first_error=%s last_error=%s\n",
               node, id, (long long) kill_wall, (double) rs[i].took_ns / 1e6, rs[i].attempts,
               pm_state_name(rs[i].state), rs[i].value_ok, fe, le);
    }
    for (size_t i = 0; i < nv; i++) {
        pm_client_destroy(&rs[i].c);
        free(vias[i]);
    }
    /* The owner is gone: its connection says so on close, harmlessly. */
    pm_client_destroy(&oc);
    free(vias);
    free(rs);
    free(id);
    return bad;
}

/* ---- gate --------------------------------------------------------------------- */

static int
s_cmd_gate(const s_args_t *a)
{
    const char *owner = s_opt(a, "--owner", NULL);
    long pid = s_opt_long(a, "--stop-pid", 0), burst = s_opt_long(a, "--burst", 32);
    long hold = s_opt_long(a, "--hold-ms", 300);
    if (!owner || pid <= 1 || burst < 1) {
        fprintf(stderr, "usage: durability_bench gate --owner S --stop-pid PID [--burst N] "
                        "[--hold-ms T]\n");
        return 2;
    }
    pm_client_t *c = s_connect(owner);
    /* One acknowledged create first: the backup holds the state and counts;
     * then a pause, as between any two requests, so every acknowledgement
     * the backup owes has arrived before it stops. */
    char *id = NULL;
    int err = pm_create(c, NULL, &id, NULL);
    if (err)
        s_die("create", err, c);
    free(id);
    s_sleep_ms((int) s_opt_long(a, "--settle-ms", 50));
    if (kill((pid_t) pid, SIGSTOP) != 0) {
        fprintf(stderr, "durability_bench: SIGSTOP %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    int64_t t0 = s_now_ns();
    for (long i = 0; i < burst; i++) {
        uint64_t rq;
        err = pm_send_create(c, NULL, NULL, &rq);
        if (err) {
            kill((pid_t) pid, SIGCONT);
            s_die("send create", err, c);
        }
    }
    long early = 0, got = 0;
    double first_ms = -1;
    int64_t until = t0 + hold * 1000000;
    while (got < burst) {
        int64_t left = (until - s_now_ns()) / 1000000;
        if (left <= 0)
            break;
        pm_result_t *r = NULL;
        if (pm_recv(c, (int) left, &r) != PM_OK)
            break;
        if (first_ms < 0)
            first_ms = (double) (s_now_ns() - t0) / 1e6;
        early += r->err == PM_OK;
        got++;
        pm_result_destroy(&r);
    }
    kill((pid_t) pid, SIGCONT);
    /* The rest are answered once the backup acknowledges (or is replaced). */
    long late_err = 0;
    while (got < burst) {
        pm_result_t *r = NULL;
        err = pm_recv(c, S_WAIT_MS, &r);
        if (err)
            s_die("recv after SIGCONT", err, c);
        late_err += r->err != PM_OK;
        got++;
        pm_result_destroy(&r);
    }
    printf("gate burst=%ld hold_ms=%ld acked_while_backup_stopped=%ld first_reply_ms=%.1f "
           "late_errors=%ld\n",
           burst, hold, early, first_ms, late_err);
    pm_client_destroy(&c);
    return 0;
}

/* ---- ready -------------------------------------------------------------------- */

/* Whether something listens on the unix socket at path: libzmq creates the
 * file at bind() and listens a moment later; a ZeroMQ connect that lands in
 * between is refused and retried only after its 100 ms reconnect interval,
 * which would be measured as recovery time. */
static int
s_listening(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int ok = connect(fd, (struct sockaddr *) &sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static int
s_cmd_ready(const s_args_t *a)
{
    const char *sock = s_positional(a, 0);
    long since = s_opt_long(a, "--since-ms", 0), timeout = s_opt_long(a, "--timeout-ms", 60000);
    if (!sock || since <= 0) {
        fprintf(stderr, "usage: durability_bench ready SOCKET --since-ms EPOCH_MS\n");
        return 2;
    }
    int64_t deadline = s_wall_ms() + timeout;
    int64_t sock_ms = -1;
    for (;;) {
        struct stat st;
        /* The agent binds its socket only after replaying the WAL, and the
         * script removed the dead agent's socket file: poll for a listening
         * socket, then connect once. */
        if (stat(sock, &st) == 0 && S_ISSOCK(st.st_mode) && s_listening(sock)) {
            if (sock_ms < 0)
                sock_ms = s_wall_ms() - since;
            pm_client_t *c = NULL;
            if (pm_client_connect(sock, &c) == PM_OK) {
                s_status_t s;
                int err = s_status_read(c, &s);
                int64_t ms = s_wall_ms() - since;
                pm_client_destroy(&c);
                if (!err) {
                    printf("ready ms=%lld socket_ms=%lld node=%s recovery_ms=%lld "
                           "recovered_records=%lld promises=%lld\n",
                           (long long) ms, (long long) sock_ms, s.node,
                           (long long) s.recovery_ms, (long long) s.recovered_records,
                           (long long) s.promises);
                    return 0;
                }
            }
        }
        if (s_wall_ms() > deadline) {
            fprintf(stderr, "durability_bench ready: %s did not answer within %ld ms\n", sock,
                    timeout);
            return 1;
        }
        s_sleep_ms(1);
    }
}

/* ---- converge ----------------------------------------------------------------- */

static int
s_cmd_converge(const s_args_t *a)
{
    long expect = s_opt_long(a, "--expect", 0), backups = s_opt_long(a, "--backups", 0);
    long timeout = s_opt_long(a, "--timeout-ms", 30000);
    size_t n = 0;
    while (s_positional(a, (int) n))
        n++;
    if (expect < 1 || n == 0) {
        fprintf(stderr, "usage: durability_bench converge --expect N [--backups K] S1 S2 ..\n");
        return 2;
    }
    int64_t t0 = s_now_ns(), deadline = t0 + timeout * 1000000;
    for (size_t i = 0; i < n; i++) {
        const char *sock = s_positional(a, (int) i);
        s_status_t st = {0};
        for (;;) {
            pm_client_t *c = NULL;
            int ok = 0;
            if (pm_client_connect(sock, &c) == PM_OK) {
                ok = s_status_read(c, &st) == PM_OK && st.alive == expect &&
                     st.n_backups >= backups;
                pm_client_destroy(&c);
            }
            if (ok)
                break;
            if (s_now_ns() > deadline) {
                fprintf(stderr, "durability_bench converge: %s sees %lld alive, %lld backups\n",
                        sock, (long long) st.alive, (long long) st.n_backups);
                return 1;
            }
            s_sleep_ms(20);
        }
        printf("agent socket=%s node=%s id_space=%s backups=%s\n", sock, st.node, st.space,
               st.backups[0] ? st.backups : "-");
    }
    printf("converge ms=%.0f\n", (double) (s_now_ns() - t0) / 1e6);
    return 0;
}

int
main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: durability_bench latency|load|takeover|gate|ready|converge ...\n");
        return 2;
    }
    s_args_t a = {argc - 1, argv + 1};
    const char *cmd = argv[1];
    if (strcmp(cmd, "latency") == 0)
        return s_cmd_latency(&a);
    if (strcmp(cmd, "load") == 0)
        return s_cmd_load(&a);
    if (strcmp(cmd, "takeover") == 0)
        return s_cmd_takeover(&a);
    if (strcmp(cmd, "gate") == 0)
        return s_cmd_gate(&a);
    if (strcmp(cmd, "ready") == 0)
        return s_cmd_ready(&a);
    if (strcmp(cmd, "converge") == 0)
        return s_cmd_converge(&a);
    fprintf(stderr, "durability_bench: unknown subcommand %s\n", cmd);
    return 2;
}
