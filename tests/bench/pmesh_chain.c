/*
 * pmesh_chain.c - a C worker and a chain driver over libpmesh, the C
 * yardstick of the SDK benchmark (scripts/bench-sdk runs the same driver
 * against a C, Python or Node worker), and the C client of
 * tests/integration/test_worker_restart.sh.
 *
 *   pmesh_chain worker --socket PATH --function F [--concurrency N]
 *                      [--append SUFFIX] [--sync]
 *       serves F (value -> value, or value + SUFFIX) with N invocations in
 *       flight until SIGTERM / SIGINT; outlives agent restarts (libpmesh
 *       reconnects) and says so on stderr; prints "served=N" at the end.
 *       --delay-ms D holds each invocation about D ms before answering it,
 *       with up to N held at once, and answers them in the order their time
 *       is up, not the order they came in: of a burst, the later ones are
 *       held a little less (D - k * D / (2N) for the k-th of N), so they are
 *       answered first. Prints "served=N dropped=M out_of_order=K" (K:
 *       answers sent while an invocation that came earlier was still held)
 *       and, with -v, one stderr line per invocation held and answered.
 *       Answers with pm_worker_send_complete (no wait for the agent's
 *       acknowledgement); --sync waits for it (pm_worker_complete).
 *
 *   pmesh_chain chains --socket PATH --function F [--steps 10] [--inflight 32]
 *                      [--seconds 5] [--warmup 1] [--value-bytes 16]
 *       keeps `inflight` chains of `steps` thens on F in flight, each fully
 *       pipelined (create, then x steps, await the end, resolve: no round
 *       trip in between), for `seconds` after a warm-up; a chain counts when
 *       its end resolves with the value it started with (F must be the
 *       identity). Prints one line:
 *       "chains steps=.. inflight=.. seconds=.. chains=.. chains_per_s=..
 *        p50_ms=.. p99_ms=.. errors=.."
 *
 *   pmesh_chain await-restart --socket PATH --id ID [--wait-agent 30]
 *       for test_worker_restart.sh: awaits ID twice (one blocking call, one
 *       pipelined request) and expects both to fail UNREACHABLE when the
 *       agent dies, and a call made while it is away to fail at once; then,
 *       on the same client, waits for an agent to be back and runs a create /
 *       resolve / await round trip. Prints what happened
 *       as "key=value" lines; exits 0 if all of it went as it should.
 *
 * Exit status: 0 ok, 1 failure, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pmesh.h"
#include "steptrace.h"

#define S_MAX_STEPS 1000
#define S_MAX_INFLIGHT 4096

typedef struct {
    const char *socket;
    const char *function;
    const char *append;
    const char *id;
    long concurrency;
    long steps;
    long inflight;
    double seconds;
    double warmup;
    long value_bytes;
    long wait_agent;
    long delay_ms;
    int sync;
    int verbose;
} s_opts_t;

static volatile sig_atomic_t s_stop;

static void
s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

static int64_t
s_mono_ns(void)
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

/* ---- worker ------------------------------------------------------------------ */

static int
s_worker(const s_opts_t *o)
{
    const char *fns[] = {o->function};
    pm_worker_t *w = NULL;
    int err = pm_worker_new(o->socket, fns, 1, (int) o->concurrency, &w);
    if (err) {
        fprintf(stderr, "pmesh_chain worker: cannot register %s: %s\n", o->function,
                pm_err_name(err));
        return 1;
    }
    uint64_t session = pm_worker_session(w);
    fprintf(stderr, "pmesh_chain worker: serving %s with concurrency %ld (session %" PRIu64 ")\n",
            o->function, o->concurrency, session);
    size_t alen = o->append ? strlen(o->append) : 0;
    char *buf = NULL;
    size_t cap = 0;
    long served = 0, dropped = 0, out_of_order = 0;
    /* --delay-ms: the invocations held, each with its arrival number and the
     * time it is answered. */
    typedef struct {
        pm_invocation_t *inv;
        int64_t due_ns;
        long seq;
    } s_held_t;
    s_held_t *held = o->delay_ms > 0 ? calloc((size_t) o->concurrency, sizeof *held) : NULL;
    long n_held = 0, seq = 0;
    if (o->delay_ms > 0 && !held)
        return 1;
    while (!s_stop) {
        pm_invocation_t *inv = NULL;
        int wait_ms = 200;
        if (held) {
            /* Answer every held invocation whose time is up, earliest first. */
            for (;;) {
                long k = -1;
                int64_t now_ns = s_mono_ns();
                for (long i = 0; i < n_held; i++)
                    if (held[i].due_ns <= now_ns && (k < 0 || held[i].due_ns < held[k].due_ns))
                        k = i;
                if (k < 0)
                    break;
                for (long i = 0; i < n_held; i++)
                    if (held[i].seq < held[k].seq) {
                        out_of_order++;
                        break;
                    }
                pm_invocation_t *h = held[k].inv;
                held[k] = held[--n_held];
                size_t hl = h->input_len;
                if (cap < hl + alen + 1) {
                    cap = (hl + alen + 1) * 2;
                    free(buf);
                    if (!(buf = malloc(cap)))
                        return 1;
                }
                memcpy(buf, h->input, hl);
                if (alen)
                    memcpy(buf + hl, o->append, alen);
                err = o->sync ? pm_worker_complete(w, h, buf, hl + alen)
                              : pm_worker_send_complete(w, h, buf, hl + alen);
                if (o->verbose)
                    fprintf(stderr, "pmesh_chain worker: answered %s (attempt %" PRIu32 "): %s\n",
                            h->target_id, h->attempt, pm_err_name(err));
                if (err == PM_OK)
                    served++;
                else
                    dropped++;
                pm_invocation_destroy(&h);
            }
            int64_t next = INT64_MAX;
            for (long i = 0; i < n_held; i++)
                if (held[i].due_ns < next)
                    next = held[i].due_ns;
            if (next != INT64_MAX) {
                int64_t left = (next - s_mono_ns()) / 1000000 + 1;
                wait_ms = left < 1 ? 1 : left < 200 ? (int) left : 200;
            }
        }
        err = pm_worker_next(w, wait_ms, &inv);
        uint64_t now = pm_worker_session(w);
        if (now != session) {
            if (now)
                fprintf(stderr, "pmesh_chain worker: reconnected (session %" PRIu64 ")\n", now);
            else
                fprintf(stderr, "pmesh_chain worker: lost the agent; reconnecting\n");
            session = now;
        }
        if (err == PM_ERR_WAIT_TIMEOUT)
            continue;
        if (err) {
            fprintf(stderr, "pmesh_chain worker: %s\n", pm_err_name(err));
            break;
        }
        if (held) {
            if (o->verbose)
                fprintf(stderr, "pmesh_chain worker: holding %s (attempt %" PRIu32 ")\n",
                        inv->target_id, inv->attempt);
            if (n_held == o->concurrency) { /* the agent sends no more than that */
                pm_worker_send_fail(w, inv, "worker over its concurrency");
                pm_invocation_destroy(&inv);
                dropped++;
                continue;
            }
            long k = seq % o->concurrency;
            int64_t d = o->delay_ms * 1000000 - k * o->delay_ms * 1000000 / (2 * o->concurrency);
            held[n_held++] = (s_held_t){inv, s_mono_ns() + d, seq++};
            continue;
        }
        PM_STEPTRACE_MARK("w_got", inv->input, inv->input_len);
        const void *out = inv->input;
        size_t len = inv->input_len;
        if (alen) {
            if (cap < len + alen) {
                cap = (len + alen) * 2;
                free(buf);
                buf = malloc(cap);
                if (!buf) {
                    cap = 0;
                    pm_invocation_destroy(&inv);
                    break;
                }
            }
            memcpy(buf, inv->input, len);
            memcpy(buf + len, o->append, alen);
            out = buf;
            len += alen;
        }
        err = o->sync ? pm_worker_complete(w, inv, out, len)
                      : pm_worker_send_complete(w, inv, out, len);
        PM_STEPTRACE_MARK("w_sent", out, len);
        if (err == PM_OK)
            served++;
        else {
            dropped++;
            fprintf(stderr, "pmesh_chain worker: result of %s not taken: %s\n",
                    inv->invocation_id, pm_err_name(err));
        }
        pm_invocation_destroy(&inv);
    }
    for (long i = 0; i < n_held; i++)
        pm_invocation_destroy(&held[i].inv);
    free(held);
    free(buf);
    pm_worker_destroy(&w);
    if (o->delay_ms > 0)
        printf("served=%ld dropped=%ld out_of_order=%ld\n", served, dropped, out_of_order);
    else
        printf("served=%ld dropped=%ld\n", served, dropped);
    return 0;
}

/* ---- chains ------------------------------------------------------------------ */

typedef struct {
    int busy;
    uint64_t await_req;
    int64_t started_ns;
} s_chain_t;

static int
s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

/* Sends one chain: create p, then x steps, await the end, resolve p. */
static int
s_chain_start(pm_client_t *c, const s_opts_t *o, const char *value, s_chain_t *ch)
{
    char *id = NULL;
    int err = pm_send_create(c, NULL, &id, NULL);
    if (err)
        return err;
    char *cur = id;
    for (long i = 0; i < o->steps && !err; i++) {
        char *next = NULL;
        err = pm_send_then(c, cur, o->function, 0, &next, NULL);
        if (cur != id)
            free(cur);
        cur = next;
    }
    if (!err)
        err = pm_send_await(c, cur, -1, &ch->await_req);
    if (!err)
        err = pm_send_resolve(c, id, value, strlen(value), NULL);
    if (cur != id)
        free(cur);
    free(id);
    if (!err) {
        ch->busy = 1;
        ch->started_ns = s_mono_ns();
    }
    return err;
}

static int
s_chains(const s_opts_t *o)
{
    pm_client_t *c = NULL;
    int err = pm_client_connect(o->socket, &c);
    if (err) {
        fprintf(stderr, "pmesh_chain chains: %s\n", pm_err_name(err));
        return 1;
    }
    char *value = malloc((size_t) o->value_bytes + 1);
    if (!value)
        return 1;
    for (long i = 0; i < o->value_bytes; i++)
        value[i] = (char) ('a' + i % 26);
    value[o->value_bytes] = 0;
    s_chain_t *chains = calloc((size_t) o->inflight, sizeof *chains);
    size_t lat_cap = 1 << 16, lat_n = 0;
    int64_t *lat = malloc(lat_cap * sizeof *lat);
    if (!chains || !lat)
        return 1;
    long errors = 0, done = 0, bad = 0;
    int64_t t0 = s_mono_ns();
    int64_t measure_from = t0 + (int64_t) (o->warmup * 1e9);
    int64_t end = measure_from + (int64_t) (o->seconds * 1e9);
    int64_t measured_end = 0;
    int stopping = 0;
    for (;;) {
        int64_t now = s_mono_ns();
        if (now >= end)
            stopping = 1;
        long busy = 0;
        for (long i = 0; i < o->inflight; i++) {
            if (!chains[i].busy && !stopping) {
                err = s_chain_start(c, o, value, &chains[i]);
                if (err) {
                    fprintf(stderr, "pmesh_chain chains: send: %s\n", pm_err_name(err));
                    errors++;
                    stopping = 1;
                }
            }
            busy += chains[i].busy;
        }
        if (!busy)
            break;
        pm_result_t *r = NULL;
        err = pm_recv(c, 10000, &r);
        if (err) {
            fprintf(stderr, "pmesh_chain chains: recv: %s\n", pm_err_name(err));
            errors++;
            break;
        }
        if (r->op != PM_OP_AWAIT) {
            if (r->err) {
                errors++;
                if (errors <= 5)
                    fprintf(stderr, "pmesh_chain chains: %d: %s %s\n", (int) r->op,
                            pm_err_name(r->err), r->message);
            }
            pm_result_destroy(&r);
            continue;
        }
        s_chain_t *ch = NULL;
        for (long i = 0; i < o->inflight && !ch; i++)
            if (chains[i].busy && chains[i].await_req == r->req_id)
                ch = &chains[i];
        if (ch) {
            int64_t t = s_mono_ns();
            int good = !r->err && r->promise && r->promise->state == PM_STATE_RESOLVED &&
                       r->promise->value_len == (size_t) o->value_bytes &&
                       memcmp(r->promise->value, value, (size_t) o->value_bytes) == 0;
            if (!good) {
                bad++;
                if (bad <= 5)
                    fprintf(stderr, "pmesh_chain chains: chain ended %s %s\n",
                            r->err ? pm_err_name(r->err)
                                   : pm_state_name(r->promise ? (int) r->promise->state : 0),
                            r->promise ? r->promise->reason : r->message);
            } else if (ch->started_ns >= measure_from && t <= end) {
                done++;
                measured_end = t;
                if (lat_n == lat_cap) {
                    int64_t *more = realloc(lat, 2 * lat_cap * sizeof *lat);
                    if (more) {
                        lat = more;
                        lat_cap *= 2;
                    }
                }
                if (lat_n < lat_cap)
                    lat[lat_n++] = t - ch->started_ns;
            }
            ch->busy = 0;
        }
        pm_result_destroy(&r);
    }
    (void) measured_end;
    qsort(lat, lat_n, sizeof *lat, s_cmp_i64);
    double p50 = lat_n ? lat[lat_n / 2] / 1e6 : 0, p99 = lat_n ? lat[lat_n * 99 / 100] / 1e6 : 0;
    printf("chains steps=%ld inflight=%ld seconds=%.1f chains=%ld chains_per_s=%.1f "
           "p50_ms=%.2f p99_ms=%.2f errors=%ld\n",
           o->steps, o->inflight, o->seconds, done, done / o->seconds, p50, p99, errors + bad);
    free(lat);
    free(chains);
    free(value);
    pm_client_destroy(&c);
    return errors + bad || !done ? 1 : 0;
}

/* ---- await-restart -------------------------------------------------------- */

static int
s_await_restart(const s_opts_t *o)
{
    pm_client_t *c = NULL;
    int err = pm_client_connect(o->socket, &c);
    if (err) {
        printf("connect=%s\n", pm_err_name(err));
        return 1;
    }
    uint64_t first = pm_client_session(c);
    uint64_t req = 0;
    err = pm_send_await(c, o->id, -1, &req);
    printf("session=%" PRIu64 " send_await=%s\n", first, pm_err_name(err));
    printf("waiting=1\n");
    fflush(stdout);
    pm_promise_t *p = NULL;
    int ok = 1;
    err = pm_await(c, o->id, -1, &p); /* blocks until the agent goes away */
    printf("await_err=%s at_ms=%" PRId64 "\n", pm_err_name(err), s_wall_ms());
    ok &= err == PM_ERR_UNREACHABLE;
    pm_promise_destroy(&p);
    pm_result_t *r = NULL;
    err = pm_recv(c, 0, &r);
    printf("pipelined_await=%s\n",
           err ? pm_err_name(err) : r->req_id == req ? pm_err_name(r->err) : "wrong-req");
    ok &= !err && r->req_id == req && r->err == PM_ERR_UNREACHABLE;
    pm_result_destroy(&r);
    err = pm_recv(c, 0, &r);
    printf("after_results=%s\n", pm_err_name(err));
    ok &= err == PM_ERR_UNREACHABLE; /* nothing more owed, not connected */
    pm_result_destroy(&r);
    printf("session_while_away=%" PRIu64 "\n", pm_client_session(c));
    ok &= pm_client_session(c) == 0;
    /* No agent now (the script restarts it only after this line): a call
     * fails at once rather than after a deadline. */
    int64_t t0 = s_wall_ms();
    err = pm_get(c, o->id, &p);
    printf("call_while_away=%s elapsed_ms=%" PRId64 "\n", pm_err_name(err), s_wall_ms() - t0);
    fflush(stdout);
    ok &= err == PM_ERR_UNREACHABLE && s_wall_ms() - t0 < 1000;

    /* The same client, once an agent is back: its calls reconnect by
     * themselves. */
    int64_t deadline = s_wall_ms() + o->wait_agent * 1000;
    char *json = NULL;
    long tries = 0;
    while ((err = pm_status(c, &json)) != PM_OK && s_wall_ms() < deadline) {
        tries++;
        usleep(50 * 1000);
    }
    free(json);
    printf("status_again=%s failed_tries=%ld session=%" PRIu64 "\n", pm_err_name(err), tries,
           pm_client_session(c));
    ok &= err == PM_OK && pm_client_session(c) != 0;
    char *id = NULL;
    err = pm_send_create(c, NULL, &id, NULL); /* minted under the new lease */
    if (!err)
        err = pm_resolve(c, id, "again", 5);
    if (!err)
        err = pm_await(c, id, 5000, &p);
    int round = !err && p && p->state == PM_STATE_RESOLVED && strcmp((char *) p->value, "again") == 0;
    printf("roundtrip=%s\n", round ? "ok" : pm_err_name(err));
    ok &= round;
    free(id);
    pm_promise_destroy(&p);
    pm_client_destroy(&c);
    printf("result=%s\n", ok ? "ok" : "failed");
    return ok ? 0 : 1;
}

/* ---- main ----------------------------------------------------------------- */

static void
s_usage(FILE *f)
{
    fputs("usage: pmesh_chain worker --socket PATH --function F [--concurrency N] "
          "[--append SUFFIX] [--sync]\n"
          "                   [--delay-ms D] [-v]\n"
          "       pmesh_chain chains --socket PATH --function F [--steps 10] [--inflight 32]\n"
          "                   [--seconds 5] [--warmup 1] [--value-bytes 16]\n"
          "       pmesh_chain await-restart --socket PATH --id ID [--wait-agent 30]\n",
          f);
}

int
main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        s_usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    s_opts_t o = {.concurrency = 32, .steps = 10, .inflight = 32, .seconds = 5, .warmup = 1,
                  .value_bytes = 16, .wait_agent = 30};
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 'S'},   {"function", required_argument, NULL, 'f'},
        {"append", required_argument, NULL, 'a'},   {"id", required_argument, NULL, 'i'},
        {"concurrency", required_argument, NULL, 'c'}, {"steps", required_argument, NULL, 'n'},
        {"inflight", required_argument, NULL, 'w'}, {"seconds", required_argument, NULL, 's'},
        {"warmup", required_argument, NULL, 'W'},   {"value-bytes", required_argument, NULL, 'b'},
        {"wait-agent", required_argument, NULL, 'A'}, {"sync", no_argument, NULL, 'y'},
        {"delay-ms", required_argument, NULL, 'D'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "v", longopts, NULL)) != -1) {
        switch (ch) {
        case 'S': o.socket = optarg; break;
        case 'f': o.function = optarg; break;
        case 'a': o.append = optarg; break;
        case 'i': o.id = optarg; break;
        case 'c': o.concurrency = atol(optarg); break;
        case 'n': o.steps = atol(optarg); break;
        case 'w': o.inflight = atol(optarg); break;
        case 's': o.seconds = atof(optarg); break;
        case 'W': o.warmup = atof(optarg); break;
        case 'b': o.value_bytes = atol(optarg); break;
        case 'A': o.wait_agent = atol(optarg); break;
        case 'y': o.sync = 1; break;
        case 'D': o.delay_ms = atol(optarg); break;
        case 'v': o.verbose = 1; break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (strcmp(cmd, "worker") == 0 && o.function && o.concurrency >= 1 &&
        o.concurrency <= S_MAX_INFLIGHT && o.delay_ms >= 0)
        return s_worker(&o);
    if (strcmp(cmd, "chains") == 0 && o.function && o.steps >= 1 && o.steps <= S_MAX_STEPS &&
        o.inflight >= 1 && o.inflight <= S_MAX_INFLIGHT && o.seconds > 0 && o.warmup >= 0 &&
        o.value_bytes >= 0)
        return s_chains(&o);
    if (strcmp(cmd, "await-restart") == 0 && o.id)
        return s_await_restart(&o);
    s_usage(stderr);
    return 2;
}
