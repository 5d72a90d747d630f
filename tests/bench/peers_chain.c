/*
 * peers_chain.c - the pmesh chain driver of scripts/bench-peers: a fixed
 * number of chains, so both sides of the comparison run the same count.
 *
 *   peers_chain --socket PATH --function F [--steps 10] [--inflight 1]
 *               [--count 100] [--suffix .]
 *
 * Each chain is one pipelined burst on libpmesh (create p, then x steps on F,
 * await the end, resolve p with a value of its own; no round trip in
 * between), with `inflight` chains at a time until `count` have ended. F must
 * append `suffix` to its input (pmesh_chain worker --append .), so a chain is
 * right only if its end holds its own start value followed by `steps`
 * suffixes: a chain that skipped, repeated or mixed up a step is an error.
 *
 * Prints one JSON line, the same fields as bench/peers/service.mjs:
 *   {"ops":N,"errors":E,"seconds":S,"rate":R,"p50_ms":A,"p99_ms":B,"first_error":".."}
 * Exit status: 0 if every chain ended right, 1 otherwise, 2 usage.
 */
#include <getopt.h>
#include <inttypes.h>
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
#define S_VALUE_MAX 64

typedef struct {
    int busy;
    uint64_t await_req;
    int64_t started_ns;
    char want[S_VALUE_MAX + S_MAX_STEPS * 8];
} s_chain_t;

static int64_t
s_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

/* Sends one chain: create p, then x steps, await the end, resolve p. */
static int
s_chain_start(pm_client_t *c, const char *function, long steps, const char *suffix,
              const char *value, s_chain_t *ch)
{
    char *id = NULL;
    int err = pm_send_create(c, NULL, &id, NULL);
    if (err)
        return err;
    char *cur = id;
    for (long i = 0; i < steps && !err; i++) {
        char *next = NULL;
        err = pm_send_then(c, cur, function, 0, &next, NULL);
        if (cur != id)
            free(cur);
        cur = next;
    }
    if (!err)
        err = pm_send_await(c, cur, -1, &ch->await_req);
    PM_STEPTRACE_MARK("d_start", value, strlen(value));
    if (!err)
        err = pm_send_resolve(c, id, value, strlen(value), NULL);
    if (cur != id)
        free(cur);
    free(id);
    if (!err) {
        size_t n = (size_t) snprintf(ch->want, sizeof ch->want, "%s", value);
        for (long i = 0; i < steps; i++)
            n += (size_t) snprintf(ch->want + n, sizeof ch->want - n, "%s", suffix);
        ch->busy = 1;
        ch->started_ns = s_mono_ns();
    }
    return err;
}

/* JSON string body: the few characters an error message may hold escaped. */
static void
s_json_str(const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char) *s < 0x20)
            printf(" ");
        else
            putchar(*s);
    }
}

static void
s_usage(FILE *f)
{
    fputs("usage: peers_chain --socket PATH --function F [--steps 10] [--inflight 1]\n"
          "                   [--count 100] [--suffix .]\n",
          f);
}

int
main(int argc, char **argv)
{
    const char *socket = NULL, *function = NULL, *suffix = ".";
    long steps = 10, inflight = 1, count = 100;
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 'S'}, {"function", required_argument, NULL, 'f'},
        {"steps", required_argument, NULL, 'n'},  {"inflight", required_argument, NULL, 'w'},
        {"count", required_argument, NULL, 'c'},  {"suffix", required_argument, NULL, 'x'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'S': socket = optarg; break;
        case 'f': function = optarg; break;
        case 'n': steps = atol(optarg); break;
        case 'w': inflight = atol(optarg); break;
        case 'c': count = atol(optarg); break;
        case 'x': suffix = optarg; break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (!function || steps < 1 || steps > S_MAX_STEPS || inflight < 1 ||
        inflight > S_MAX_INFLIGHT || count < 1 || strlen(suffix) > 7) {
        s_usage(stderr);
        return 2;
    }
    pm_client_t *c = NULL;
    int err = pm_client_connect(socket, &c);
    if (err) {
        fprintf(stderr, "peers_chain: connect: %s\n", pm_err_name(err));
        return 1;
    }
    s_chain_t *chains = calloc((size_t) inflight, sizeof *chains);
    int64_t *lat = calloc((size_t) count, sizeof *lat);
    if (!chains || !lat)
        return 1;
    /* A start value of its own per chain and per run. */
    unsigned tag = (unsigned) (s_mono_ns() ^ (int64_t) getpid());
    long started = 0, ended = 0, good = 0, errors = 0;
    char first_error[256] = "";
    int64_t t0 = s_mono_ns();
    for (;;) {
        long busy = 0;
        for (long i = 0; i < inflight; i++) {
            if (!chains[i].busy && started < count && !errors) {
                char value[S_VALUE_MAX];
                snprintf(value, sizeof value, "c-%08x-%ld-", tag, started);
                err = s_chain_start(c, function, steps, suffix, value, &chains[i]);
                if (err) {
                    errors++;
                    snprintf(first_error, sizeof first_error, "send: %s", pm_err_name(err));
                    break;
                }
                started++;
            }
            busy += chains[i].busy;
        }
        if (!busy)
            break;
        pm_result_t *r = NULL;
        err = pm_recv(c, 30000, &r);
        if (err) {
            errors++;
            snprintf(first_error, sizeof first_error, "recv: %s", pm_err_name(err));
            break;
        }
        if (r->op != PM_OP_AWAIT) {
            if (r->err) {
                errors++;
                if (!first_error[0])
                    snprintf(first_error, sizeof first_error, "op %d: %s %s", (int) r->op,
                             pm_err_name(r->err), r->message);
            }
            pm_result_destroy(&r);
            continue;
        }
        s_chain_t *ch = NULL;
        for (long i = 0; i < inflight && !ch; i++)
            if (chains[i].busy && chains[i].await_req == r->req_id)
                ch = &chains[i];
        if (ch) {
            int64_t t = s_mono_ns();
            size_t wlen = strlen(ch->want);
            int ok = !r->err && r->promise && r->promise->state == PM_STATE_RESOLVED &&
                     r->promise->value_len == wlen &&
                     memcmp(r->promise->value, ch->want, wlen) == 0;
            if (ok)
                PM_STEPTRACE_MARK("d_end", ch->want, wlen);
            if (ok)
                lat[good++] = t - ch->started_ns;
            else {
                errors++;
                if (!first_error[0])
                    snprintf(first_error, sizeof first_error, "chain ended %s %.*s, expected %s",
                             r->err ? pm_err_name(r->err)
                                    : pm_state_name(r->promise ? (int) r->promise->state : 0),
                             r->promise ? (int) r->promise->value_len : 0,
                             r->promise && r->promise->value ? (const char *) r->promise->value
                                                             : "",
                             ch->want);
            }
            ended++;
            ch->busy = 0;
        }
        pm_result_destroy(&r);
    }
    double secs = (double) (s_mono_ns() - t0) / 1e9;
    qsort(lat, (size_t) good, sizeof *lat, s_cmp_i64);
    double p50 = good ? lat[good / 2] / 1e6 : 0, p99 = good ? lat[good * 99 / 100] / 1e6 : 0;
    printf("{\"ops\":%ld,\"errors\":%ld,\"seconds\":%.3f,\"rate\":%.1f,\"p50_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"first_error\":\"",
           good, errors + (count - ended > 0 && !errors ? count - ended : 0), secs,
           secs > 0 ? good / secs : 0, p50, p99);
    s_json_str(first_error);
    printf("\"}\n");
    free(lat);
    free(chains);
    pm_client_destroy(&c);
    return errors || good != count ? 1 : 0;
}
