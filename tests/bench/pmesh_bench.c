/*
 * pmesh_bench.c - the single-node benchmark driver. It talks to a running
 * pmeshd through libpmesh only, so it measures what a function would see.
 * scripts/bench-local composes its subcommands into the report:
 *
 *   latency    one promise lifecycle at a time (create, resolve, await),
 *              either pipelined on the async interface or fully sequential
 *              with the blocking calls; p50/p99 in microseconds
 *   throughput C forked client processes, each keeping a window of requests
 *              in flight for S seconds; lifecycles per second
 *   fill       N pending promises created (async, windowed) while the agent's
 *              VmRSS is read before and after; bytes per promise
 *
 * Every subcommand prints one line of key=value figures on stdout. A lifecycle
 * counts only when its await reply says resolved and carries the value that
 * was resolved ("bench:" + the promise id).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pmesh.h"

/* Longest a client waits for any one reply before calling the agent stuck. */
#define BENCH_RECV_TIMEOUT_MS 10000
/* Requests in one lifecycle: create, resolve, await. */
#define BENCH_OPS_PER_LIFECYCLE 3
/* The resolved value is this prefix plus the promise id, so an await reply
 * can be checked without remembering what was sent. */
#define BENCH_VALUE_PREFIX "bench:"

typedef struct {
    const char *socket;
    const char *mode;
    long count;
    long warmup;
    long window;
    long clients;
    double seconds;
    long agent_pid;
} bench_opts_t;

/* What one throughput client reports to the parent through a pipe (well
 * under PIPE_BUF, so the write is atomic). */
typedef struct {
    int ok;              /* 0 if the client ran to the end */
    long lifecycles;     /* await replies that said resolved with the right value */
    long in_deadline;    /* of those, completed before the deadline */
    long create_errors;  /* create replies with an error */
    long resolve_errors; /* resolve replies with an error */
    long await_bad;      /* await replies not resolved or with a wrong value */
    int64_t elapsed_ns;  /* from the start signal to the last reply */
} client_report_t;

static int64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples, in microseconds. */
static double
s_pct_us(const int64_t *sorted, size_t n, double q)
{
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1000.0;
}

/* VmRSS of a process in kB from /proc/PID/status; -1 if unreadable. */
static long
s_vmrss_kb(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    }
    fclose(f);
    return kb;
}

/* Length of the last value s_value_for made, for the report. */
static size_t s_value_bytes;

/* Value a lifecycle resolves its promise with; caller frees. */
static char *
s_value_for(const char *id)
{
    char *value = NULL;
    int len = asprintf(&value, "%s%s", BENCH_VALUE_PREFIX, id);
    if (len < 0)
        return NULL;
    s_value_bytes = (size_t)len;
    return value;
}

/* True if an await reply reports the promise resolved with its bench value. */
static int
s_await_ok(const pm_result_t *r)
{
    const pm_promise_t *p = r->promise;
    if (r->err != PM_OK || !p || p->state != PM_STATE_RESOLVED || !p->id || !p->value)
        return 0;
    size_t plen = strlen(BENCH_VALUE_PREFIX), ilen = strlen(p->id);
    return p->value_len == plen + ilen && memcmp(p->value, BENCH_VALUE_PREFIX, plen) == 0
           && memcmp(p->value + plen, p->id, ilen) == 0;
}

static int
s_connect(const char *socket, pm_client_t **client_p)
{
    int rc = pm_client_connect(socket, client_p);
    if (rc != PM_OK)
        fprintf(stderr, "pmesh-bench: connect %s: %s\n", socket ? socket : "(default)",
                pm_strerror(rc));
    return rc;
}

/* Queues create, resolve and await of one new promise. */
static int
s_send_lifecycle(pm_client_t *client)
{
    static const pm_create_opts_t create_opts = {0};
    char *id = NULL, *value = NULL;
    uint64_t req;
    int rc = pm_send_create(client, &create_opts, &id, &req);
    if (rc != PM_OK || !id) {
        fprintf(stderr, "pmesh-bench: send create: %s\n", pm_strerror(rc));
        rc = rc != PM_OK ? rc : PM_ERR_INTERNAL;
        goto out;
    }
    value = s_value_for(id);
    if (!value) {
        rc = PM_ERR_INTERNAL;
        goto out;
    }
    rc = pm_send_resolve(client, id, value, strlen(value), &req);
    if (rc != PM_OK) {
        fprintf(stderr, "pmesh-bench: send resolve: %s\n", pm_strerror(rc));
        goto out;
    }
    rc = pm_send_await(client, id, -1, &req);
    if (rc != PM_OK)
        fprintf(stderr, "pmesh-bench: send await: %s\n", pm_strerror(rc));
out:
    free(id);
    free(value);
    return rc;
}

/* One pipelined lifecycle: queue all three requests, then collect the three
 * replies. Returns 0 if create and resolve succeeded and the await reply said
 * resolved with the right value. */
static int
s_lifecycle_pipelined(pm_client_t *client)
{
    if (s_send_lifecycle(client) != PM_OK)
        return -1;
    int ok = 1;
    for (int got = 0; got < BENCH_OPS_PER_LIFECYCLE; got++) {
        pm_result_t *r = NULL;
        int rc = pm_recv(client, BENCH_RECV_TIMEOUT_MS, &r);
        if (rc != PM_OK) {
            fprintf(stderr, "pmesh-bench: recv: %s\n", pm_strerror(rc));
            return -1;
        }
        if (r->op == PM_OP_AWAIT ? !s_await_ok(r) : r->err != PM_OK) {
            fprintf(stderr, "pmesh-bench: op %d failed: %s %s\n", (int)r->op,
                    pm_err_name(r->err), r->message ? r->message : "");
            ok = 0;
        }
        pm_result_destroy(&r);
    }
    return ok ? 0 : -1;
}

/* One sequential lifecycle with the blocking calls. */
static int
s_lifecycle_sequential(pm_client_t *client)
{
    static const pm_create_opts_t create_opts = {0};
    char *id = NULL, *value = NULL;
    pm_promise_t *promise = NULL;
    int rc = pm_create(client, &create_opts, &id, NULL);
    if (rc != PM_OK) {
        fprintf(stderr, "pmesh-bench: create: %s\n", pm_strerror(rc));
        goto out;
    }
    value = s_value_for(id);
    if (!value) {
        rc = PM_ERR_INTERNAL;
        goto out;
    }
    rc = pm_resolve(client, id, value, strlen(value));
    if (rc != PM_OK) {
        fprintf(stderr, "pmesh-bench: resolve: %s\n", pm_strerror(rc));
        goto out;
    }
    rc = pm_await(client, id, -1, &promise);
    if (rc != PM_OK) {
        fprintf(stderr, "pmesh-bench: await: %s\n", pm_strerror(rc));
        goto out;
    }
    pm_result_t check = {.err = PM_OK, .promise = promise};
    if (!s_await_ok(&check)) {
        fprintf(stderr, "pmesh-bench: await: promise not resolved with its value\n");
        rc = PM_ERR_INTERNAL;
    }
out:
    pm_promise_destroy(&promise);
    free(id);
    free(value);
    return rc == PM_OK ? 0 : -1;
}

static int
s_cmd_latency(const bench_opts_t *o)
{
    int pipelined;
    if (strcmp(o->mode, "pipelined") == 0)
        pipelined = 1;
    else if (strcmp(o->mode, "sequential") == 0)
        pipelined = 0;
    else {
        fprintf(stderr, "pmesh-bench: --mode must be pipelined or sequential\n");
        return 2;
    }
    int rc = 1;
    pm_client_t *client = NULL;
    int64_t *samples = malloc(sizeof(int64_t) * (size_t)o->count);
    if (!samples || s_connect(o->socket, &client) != PM_OK)
        goto out;
    for (long i = 0; i < o->warmup + o->count; i++) {
        int64_t t0 = s_now_ns();
        int failed = pipelined ? s_lifecycle_pipelined(client) : s_lifecycle_sequential(client);
        int64_t t1 = s_now_ns();
        if (failed) {
            fprintf(stderr, "pmesh-bench: lifecycle %ld failed\n", i);
            goto out;
        }
        if (i >= o->warmup)
            samples[i - o->warmup] = t1 - t0;
    }
    size_t n = (size_t)o->count;
    qsort(samples, n, sizeof *samples, s_cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)samples[i];
    printf("pmesh-bench latency mode=%s n=%ld warmup=%ld value_bytes=%zu p50_us=%.1f p90_us=%.1f "
           "p99_us=%.1f mean_us=%.1f min_us=%.1f max_us=%.1f\n",
           o->mode, o->count, o->warmup, s_value_bytes,
           s_pct_us(samples, n, 0.50), s_pct_us(samples, n, 0.90), s_pct_us(samples, n, 0.99),
           sum / (double)n / 1000.0, (double)samples[0] / 1000.0,
           (double)samples[n - 1] / 1000.0);
    rc = 0;
out:
    pm_client_destroy(&client);
    free(samples);
    return rc;
}

/* Accounts one reply of the windowed lifecycle loop. */
static void
s_account(client_report_t *rep, const pm_result_t *r, int before_deadline)
{
    switch (r->op) {
    case PM_OP_CREATE:
        if (r->err != PM_OK)
            rep->create_errors++;
        break;
    case PM_OP_RESOLVE:
        if (r->err != PM_OK)
            rep->resolve_errors++;
        break;
    case PM_OP_AWAIT:
        if (s_await_ok(r)) {
            rep->lifecycles++;
            rep->in_deadline += before_deadline;
        } else {
            rep->await_bad++;
        }
        break;
    default:
        break;
    }
    if (r->err != PM_OK && rep->create_errors + rep->resolve_errors + rep->await_bad <= 3)
        fprintf(stderr, "pmesh-bench: op %d: %s %s\n", (int)r->op, pm_err_name(r->err),
                r->message ? r->message : "");
}

/* One throughput client: keep up to `window` requests in flight until the
 * deadline, then collect what is outstanding. */
static void
s_throughput_client(const bench_opts_t *o, client_report_t *rep, int ready_fd, int go_fd)
{
    pm_client_t *client = NULL;
    memset(rep, 0, sizeof *rep);
    char byte = 'r';
    if (s_connect(o->socket, &client) != PM_OK || write(ready_fd, &byte, 1) != 1)
        goto out;
    /* The parent starts every client at once by closing the go pipe. */
    if (read(go_fd, &byte, 1) != 0)
        goto out;
    int64_t start = s_now_ns();
    int64_t deadline = start + (int64_t)(o->seconds * 1e9);
    long outstanding = 0;
    int sending = 1;
    while (sending || outstanding > 0) {
        if (sending && s_now_ns() >= deadline) {
            sending = 0;
            if (outstanding == 0)
                break;
        }
        while (sending && outstanding + BENCH_OPS_PER_LIFECYCLE <= o->window) {
            if (s_send_lifecycle(client) != PM_OK)
                goto out;
            outstanding += BENCH_OPS_PER_LIFECYCLE;
        }
        /* Block for one reply, then take whatever else is already in. */
        int timeout = BENCH_RECV_TIMEOUT_MS;
        for (;;) {
            pm_result_t *r = NULL;
            int rc = pm_recv(client, timeout, &r);
            if (rc == PM_ERR_WAIT_TIMEOUT && timeout == 0)
                break;
            if (rc != PM_OK) {
                fprintf(stderr, "pmesh-bench: recv with %ld outstanding: %s\n", outstanding,
                        pm_strerror(rc));
                goto out;
            }
            outstanding--;
            s_account(rep, r, s_now_ns() < deadline);
            pm_result_destroy(&r);
            if (outstanding == 0)
                break;
            timeout = 0;
        }
    }
    rep->elapsed_ns = s_now_ns() - start;
    rep->ok = 1;
out:
    pm_client_destroy(&client);
}

static int
s_cmd_throughput(const bench_opts_t *o)
{
    if (o->window < BENCH_OPS_PER_LIFECYCLE || o->clients < 1 || o->seconds <= 0) {
        fprintf(stderr, "pmesh-bench: need --window >= 3, --clients >= 1, --seconds > 0\n");
        return 2;
    }
    int ready[2], go[2], results[2];
    if (pipe(ready) != 0 || pipe(go) != 0 || pipe(results) != 0) {
        perror("pmesh-bench: pipe");
        return 1;
    }
    fflush(NULL);
    pid_t *pids = calloc((size_t)o->clients, sizeof *pids);
    if (!pids)
        return 1;
    long started = 0;
    for (; started < o->clients; started++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("pmesh-bench: fork");
            break;
        }
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(ready[0]);
            close(go[1]);
            close(results[0]);
            client_report_t rep;
            s_throughput_client(o, &rep, ready[1], go[0]);
            ssize_t w = write(results[1], &rep, sizeof rep);
            _exit(w == (ssize_t)sizeof rep && rep.ok ? 0 : 1);
        }
        pids[started] = pid;
    }
    close(ready[1]);
    close(go[0]);
    close(results[1]);

    int rc = 1;
    char byte;
    long ready_count = 0;
    while (ready_count < started && read(ready[0], &byte, 1) == 1)
        ready_count++;
    if (started < o->clients || ready_count < started) {
        fprintf(stderr, "pmesh-bench: only %ld of %ld clients connected\n", ready_count,
                o->clients);
        close(go[1]);
        goto out;
    }
    int64_t start = s_now_ns();
    close(go[1]);

    client_report_t sum = {0};
    long reports = 0, failed = 0;
    int64_t slowest = 0;
    client_report_t rep;
    while (read(results[0], &rep, sizeof rep) == (ssize_t)sizeof rep) {
        reports++;
        failed += !rep.ok;
        sum.lifecycles += rep.lifecycles;
        sum.in_deadline += rep.in_deadline;
        sum.create_errors += rep.create_errors;
        sum.resolve_errors += rep.resolve_errors;
        sum.await_bad += rep.await_bad;
        if (rep.elapsed_ns > slowest)
            slowest = rep.elapsed_ns;
        if (reports == started)
            break;
    }
    int64_t wall = s_now_ns() - start;
    if (reports < started || failed) {
        fprintf(stderr, "pmesh-bench: %ld of %ld clients failed\n", failed + started - reports,
                started);
        goto out;
    }
    /* The rate counts every resolved lifecycle over the slowest client's time
     * including its drain; in_deadline / seconds is the steady-state check. */
    printf("pmesh-bench throughput clients=%ld window=%ld seconds=%.1f lifecycles=%ld "
           "per_s=%.0f in_deadline_per_s=%.0f create_errors=%ld resolve_errors=%ld await_bad=%ld "
           "slowest_client_s=%.3f wall_s=%.3f\n",
           o->clients, o->window, o->seconds, sum.lifecycles,
           (double)sum.lifecycles * 1e9 / (double)slowest, (double)sum.in_deadline / o->seconds,
           sum.create_errors, sum.resolve_errors, sum.await_bad, (double)slowest / 1e9,
           (double)wall / 1e9);
    rc = 0;
out:
    close(ready[0]);
    close(results[0]);
    for (long i = 0; i < started; i++) {
        int status;
        waitpid(pids[i], &status, 0);
    }
    free(pids);
    return rc;
}

static int
s_cmd_fill(const bench_opts_t *o)
{
    static const pm_create_opts_t create_opts = {0};
    if (o->agent_pid <= 0 || o->window < 1) {
        fprintf(stderr, "pmesh-bench: fill needs --agent-pid and --window >= 1\n");
        return 2;
    }
    int rc = 1;
    pm_client_t *client = NULL;
    char *first = NULL, *last = NULL;
    pm_promise_t *check = NULL;
    if (s_connect(o->socket, &client) != PM_OK)
        goto out;
    /* Read "before" with this session already open, so it is not counted. */
    long before = s_vmrss_kb(o->agent_pid);
    if (before < 0) {
        fprintf(stderr, "pmesh-bench: cannot read VmRSS of pid %ld\n", o->agent_pid);
        goto out;
    }
    int64_t t0 = s_now_ns();
    long sent = 0, outstanding = 0, created = 0, errors = 0;
    while (sent < o->count || outstanding > 0) {
        while (sent < o->count && outstanding < o->window) {
            char *id = NULL;
            uint64_t req;
            int src = pm_send_create(client, &create_opts, &id, &req);
            if (src != PM_OK) {
                fprintf(stderr, "pmesh-bench: send create: %s\n", pm_strerror(src));
                free(id);
                goto out;
            }
            if (sent == 0)
                first = id;
            else if (sent == o->count - 1)
                last = id;
            else
                free(id);
            sent++;
            outstanding++;
        }
        int timeout = BENCH_RECV_TIMEOUT_MS;
        for (;;) {
            pm_result_t *r = NULL;
            int rrc = pm_recv(client, timeout, &r);
            if (rrc == PM_ERR_WAIT_TIMEOUT && timeout == 0)
                break;
            if (rrc != PM_OK) {
                fprintf(stderr, "pmesh-bench: recv: %s\n", pm_strerror(rrc));
                goto out;
            }
            outstanding--;
            if (r->err == PM_OK) {
                created++;
            } else if (errors++ < 3) {
                fprintf(stderr, "pmesh-bench: create: %s %s\n", pm_err_name(r->err),
                        r->message ? r->message : "");
            }
            pm_result_destroy(&r);
            if (outstanding == 0)
                break;
            timeout = 0;
        }
    }
    int64_t t1 = s_now_ns();
    /* Let the agent finish whatever it does after replying, then read again. */
    usleep(200 * 1000);
    long after = s_vmrss_kb(o->agent_pid);
    /* Spot-check that the first and last promise are there and pending. */
    const char *probe[2] = {first, last ? last : first};
    int pending_ok = 1;
    for (int i = 0; i < 2; i++) {
        int grc = pm_get(client, probe[i], &check);
        if (grc != PM_OK || !check || check->state != PM_STATE_PENDING) {
            fprintf(stderr, "pmesh-bench: get %s: %s state %s\n", probe[i], pm_strerror(grc),
                    check ? pm_state_name(check->state) : "-");
            pending_ok = 0;
        }
        pm_promise_destroy(&check);
    }
    printf("pmesh-bench fill count=%ld window=%ld created=%ld errors=%ld pending_check=%s "
           "create_per_s=%.0f rss_before_kb=%ld rss_after_kb=%ld bytes_per_promise=%.1f\n",
           o->count, o->window, created, errors, pending_ok ? "ok" : "failed",
           (double)created * 1e9 / (double)(t1 - t0), before, after,
           created > 0 ? (double)(after - before) * 1024.0 / (double)created : 0.0);
    rc = errors == 0 && created == o->count && pending_ok ? 0 : 1;
out:
    free(first);
    free(last);
    pm_client_destroy(&client);
    return rc;
}

static void
s_usage(FILE *f)
{
    fprintf(f,
            "usage: pmesh-bench COMMAND --socket PATH [options]\n"
            "  latency     [--mode pipelined|sequential] [--count N] [--warmup N]\n"
            "              one lifecycle (create, resolve, await) at a time; p50/p99\n"
            "  throughput  [--clients C] [--window W] [--seconds S]\n"
            "              C forked clients, each with W requests in flight; lifecycles/s\n"
            "  fill        --agent-pid PID [--count N] [--window W]\n"
            "              N pending promises; agent VmRSS before/after; bytes per promise\n"
            "defaults: --mode pipelined --count 20000 (fill: 1000000) --warmup 1000\n"
            "          --clients 1 --window 256 --seconds 3\n");
}

int
main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        s_usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    const char *cmd = argv[1];
    bench_opts_t o = {
        .mode = "pipelined",
        .count = -1,
        .warmup = 1000,
        .window = 256,
        .clients = 1,
        .seconds = 3,
    };
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 'S'}, {"mode", required_argument, NULL, 'm'},
        {"count", required_argument, NULL, 'n'},  {"warmup", required_argument, NULL, 'w'},
        {"window", required_argument, NULL, 'W'}, {"clients", required_argument, NULL, 'c'},
        {"seconds", required_argument, NULL, 's'}, {"agent-pid", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'S': o.socket = optarg; break;
        case 'm': o.mode = optarg; break;
        case 'n': o.count = atol(optarg); break;
        case 'w': o.warmup = atol(optarg); break;
        case 'W': o.window = atol(optarg); break;
        case 'c': o.clients = atol(optarg); break;
        case 's': o.seconds = atof(optarg); break;
        case 'p': o.agent_pid = atol(optarg); break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (optind != argc || o.warmup < 0) {
        s_usage(stderr);
        return 2;
    }
    if (strcmp(cmd, "latency") == 0) {
        if (o.count < 0)
            o.count = 20000;
        return o.count < 1 ? 2 : s_cmd_latency(&o);
    }
    if (strcmp(cmd, "throughput") == 0)
        return s_cmd_throughput(&o);
    if (strcmp(cmd, "fill") == 0) {
        if (o.count < 0)
            o.count = 1000000;
        return o.count < 1 ? 2 : s_cmd_fill(&o);
    }
    fprintf(stderr, "pmesh-bench: unknown command '%s'\n", cmd);
    s_usage(stderr);
    return 2;
}
