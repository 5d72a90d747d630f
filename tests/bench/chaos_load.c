/*
 * chaos_load.c - the load generator, worker and invariant checker of the
 * chaos harness (scripts/chaos, tests/chaos/). Built as $(BUILD)/bin/chaos_load
 * (the Makefile builds every tests/bench/NAME.c).
 *
 *   chaos_load worker --socket S --log FILE [--delay-ms N] [--seed N]
 *                     [--wrong-tag N]
 *       serves `inc` (decimal input + 1) and `fix` (the rejection handler:
 *       "e<N>" gives 2N, anything else fails), `tag` ("tag:" + its input)
 *       and `tagfix` ("fix:" + its input; the two never fail: the function
 *       and handler of thens on combinators) on the agent at S,
 *       reconnecting when the agent goes away; logs every invocation it ran:
 *       WALL_MS inv INVOCATION TARGET ATTEMPT INPUT OUTPUT ERR FUNCTION
 *       (INPUT and OUTPUT "-" when the function failed; percent-escaped like
 *       an await's VALUE for tag and tagfix). --wrong-tag N: the first N tag
 *       invocations answer "tag:" alone (the checker's self-test).
 *   chaos_load load --sockets S1,S2,.. --log FILE [--duration-ms N]
 *                   [--threads N] [--seed N] [--race-pct P] [--sides FILE]
 *                   [--only SCENARIO]
 *       creates promises, settles them from random agents as an outside
 *       system would, builds then-chains across agents and awaits them,
 *       makes combinators over inputs on several agents and then-chains
 *       with a rejection handler; logs every acknowledgement it received
 *       (the "ack log"). --only settle|await|chain|fanin|catch|deadline|race:
 *       run that scenario alone (tests).
 *       --race-pct P: P% of the scenarios are races (default 0): one
 *       promise resolved at once through two agents with two different
 *       values (at most one may be acknowledged). --sides FILE: the agents
 *       (1-based, space separated) currently cut off from the rest, one
 *       line, empty when healed (written by scripts/chaos); a race then
 *       sends one resolve to each side.
 *   chaos_load check --sockets S1,.. --log FILE [--events FILE]
 *                    [--inv FILE]... [--replicas R] [--read-wait-ms N]
 *       reads every promise of the ack log back (from any live agent,
 *       retrying while a takeover is in progress), checks the invariants,
 *       prints the report and exits 1 if any is broken.
 *
 * The ack log has one line per event, fields separated by one space, no
 * field ever holds a space:
 *   WALL_MS AGENT create ID TIMEOUT_MS
 *   WALL_MS AGENT try STATE ID VALUE        before each attempt of the one
 *                                           outcome a promise is meant to get
 *   WALL_MS AGENT probe STATE ID VALUE      before a deliberately conflicting
 *                                           second settle (must be refused)
 *   WALL_MS AGENT race STATE ID VALUE SIDE  before each of the two resolves
 *                                           of a race (SIDE: cut|rest|any)
 *   WALL_MS AGENT raced ID ACKED            a race ended with ACKED (0-2)
 *                                           of its resolves acknowledged
 *   WALL_MS AGENT resolve|reject|cancel ID VALUE     acknowledged settle
 *   WALL_MS AGENT refused STATE ID ERR      a settle answered with an error
 *   WALL_MS AGENT then SRC FUNCTION DST [ON_REJECT]
 *                                           acknowledged then (ON_REJECT: its
 *                                           rejection handler, if any)
 *   WALL_MS AGENT then CID tag DST tagfix   the same for the then the fan-in
 *       scenario chains (half of the time) on a combinator CID right after
 *       its combine was acknowledged, from CID's own agent (early starts,
 *       issue 15): DST must read resolved "tag:" + CID's final value, or
 *       "fix:" + CID's final reason when CID failed
 *   WALL_MS AGENT combine KIND ID TIMEOUT_MS SENT_MS IN1,IN2,...
 *       acknowledged combinator: KIND all|any|race|all-settled, its own
 *       timeout (0: none), the wall ms its request was sent (its deadline
 *       is later than SENT_MS + TIMEOUT_MS), its inputs in order (an id
 *       twice is two inputs)
 *   WALL_MS AGENT await ID TIMEOUT WALL SETTLED_AT KIND OUTCOME VALUE
 *       an await that ended: its wall time, when (ms after it started) the
 *       promise's settle was acknowledged (-1: not by us), KIND
 *       await|chain|fanin (fanin: of a combinator; its VALUE is the value
 *       or reason percent-escaped: "-" empty, "%2D" a lone "-", '%', space,
 *       control and non-ASCII bytes as %XX; OUTCOME a state or an error)
 *   WALL_MS AGENT chain HEAD END LENGTH INPUT    all links and the head's
 *                                                settle acknowledged
 *   WALL_MS AGENT catchchain HEAD END LENGTH INPUT
 *       the same for then(HEAD, inc, on_reject fix), then(.., inc)...:
 *       INPUT e<N> (HEAD rejected: END must read 2N + LENGTH - 1) or <N>
 *       (resolved: N + LENGTH)
 *   WALL_MS AGENT stale ID STATE            a read right after an
 *                                           acknowledged settle saw STATE
 *   WALL_MS AGENT err OP ID ERR             any other failed operation (OP
 *                                           create, then, combine)
 * AGENT is the 1-based index of the agent the client talked to. VALUE is "-"
 * when there is none.
 *
 * The events log (written by scripts/chaos): WALL_MS kill|start|stop|cont|crash K,
 * WALL_MS noconverge|norecover K, WALL_MS recovered K MS, WALL_MS split N
 * two-way|one-way-out|one-way-in AGENTS (N agents cut off), WALL_MS heal N,
 * WALL_MS etcdkill 0, WALL_MS etcdstart 0.
 */
#include "pmesh.h"
#include "../common/comb_judge.h"

#include <czmq.h>
#include <jansson.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_AGENTS 64
/* An await may end this long after its timeout and still count as on time:
 * detection plus a takeover plus a loaded 2-core box (the brief's 2 s). */
#define S_AWAIT_SLACK_MS 2000
/* An await that timed out although its settle was acknowledged this long
 * before the timeout missed the settle (propagation never takes that long). */
#define S_MISSED_MARGIN_MS 1000
/* How long the load waits for an await reply beyond its timeout before it
 * gives up and records NO_REPLY (an await that outlived its timeout). */
#define S_AWAIT_GRACE_MS 10000
/* After a connection to an agent failed, leave it alone this long. */
#define S_RECONNECT_MS 300
/* Promises each actor keeps for races during a split. */
#define S_RACE_POOL 16
/* Combinators with more inputs than this are not judged by the checker. */
#define S_COMB_MAX 64
/* Timeout of every chain's final await. */
#define S_CHAIN_AWAIT_MS 15000

/* ---- small helpers -------------------------------------------------------- */

static int64_t
s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
s_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* xorshift64*: one per thread, seeded from --seed, so a run can be repeated. */
static uint64_t
s_rand(uint64_t *st)
{
    uint64_t x = *st;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *st = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int64_t
s_below(uint64_t *st, int64_t n)
{
    return n <= 0 ? 0 : (int64_t) (s_rand(st) % (uint64_t) n);
}

/* Errors that mean "this connection is gone": drop the client. */
static int
s_conn_err(int err)
{
    return err == PM_ERR_UNREACHABLE || err == PM_ERR_AGENT_SHUTTING_DOWN;
}

static const char *
s_state_tag(int state)
{
    return pm_state_name(state);
}

static int
s_split_sockets(const char *list, char **out, int max)
{
    int n = 0;
    char *copy = strdup(list);
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && n < max;
         t = strtok_r(NULL, ",", &save))
        out[n++] = strdup(t);
    free(copy);
    return n;
}

/* ---- the ack log: one write() per line, so lines of threads never mix ---- */

static int s_log_fd = -1;

static void
s_logf(const char *fmt, ...)
{
    char line[8192];
    int n = snprintf(line, sizeof line, "%" PRId64 " ", s_wall_ms());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t) n, fmt, ap);
    va_end(ap);
    if (n >= (int) sizeof line - 1)
        n = sizeof line - 2;
    line[n++] = '\n';
    if (write(s_log_fd, line, (size_t) n) < 0)
        perror("chaos_load: log");
}

/* A value or reason as one field of the ack log: "-" when empty, "%2D" for
 * a literal "-", else the bytes with '%', space, control bytes and bytes
 * >= 0x7f percent-escaped (%XX). s_unesc reverses it. */
static void
s_esc(const void *data, size_t n, char *out, size_t cap)
{
    const unsigned char *b = data;
    size_t o = 0;
    if (!n || !b) {
        snprintf(out, cap, "-");
        return;
    }
    if (n == 1 && b[0] == '-') {
        snprintf(out, cap, "%%2D");
        return;
    }
    for (size_t i = 0; i < n && o + 4 < cap; i++) {
        if (b[i] <= ' ' || b[i] >= 0x7f || b[i] == '%')
            o += (size_t) snprintf(out + o, cap - o, "%%%02X", b[i]);
        else
            out[o++] = (char) b[i];
    }
    out[o] = 0;
}

/* ================================================================ worker */

static volatile sig_atomic_t s_stop;

static void
s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

/* fix, the rejection handler of the load's on-reject chains: "e<N>" (the
 * reason the load rejects with) gives 2N; anything else fails. The main
 * function inc fails on that input, so which of the two ran shows. */
static int
s_fix(const char *in, char *out, size_t cap)
{
    char *end = NULL;
    if (in[0] != 'e' || !in[1])
        return -1;
    errno = 0;
    long long n = strtoll(in + 1, &end, 10);
    if (*end || errno)
        return -1;
    return snprintf(out, cap, "%lld", 2 * n);
}

/* tag / tagfix, the function and rejection handler of the thens the load
 * chains on combinators: "tag:" + the combinator's value, "fix:" + its
 * reason (any bytes; never fail), so a target shows which ran and on what.
 * out (malloc'd) gets the result; its length is returned. */
static size_t
s_tag(const char *prefix, const void *in, size_t n, char **out)
{
    size_t pl = strlen(prefix);
    *out = malloc(pl + n + 1);
    memcpy(*out, prefix, pl);
    if (n)
        memcpy(*out + pl, in, n);
    (*out)[pl + n] = 0;
    return pl + n;
}

/* --wrong-tag N: the first N `tag` invocations answer a wrong value (the
 * checker's self-test: the row of thens on combinators must count them). */
static int s_wrong_tag;

static int
s_worker_main(const char *sock, int delay_ms, uint64_t seed)
{
    const char *fns[] = {"inc", "fix", "tag", "tagfix"};
    pm_worker_t *w = NULL;
    uint64_t rng = seed | 1;
    int64_t served = 0;
    while (!s_stop) {
        if (!w) {
            if (pm_worker_new(sock, fns, 4, 8, &w) != PM_OK) {
                w = NULL;
                s_sleep_ms(200);
                continue;
            }
            fprintf(stderr, "chaos worker: serving inc, fix, tag and tagfix on %s\n", sock);
        }
        pm_invocation_t *inv = NULL;
        int rc = pm_worker_next(w, 500, &inv);
        if (rc == PM_ERR_WAIT_TIMEOUT)
            continue;
        if (rc != PM_OK) {
            pm_worker_destroy(&w);
            continue;
        }
        const char *in = inv->input ? (const char *) inv->input : "";
        char buf[32], *out = buf, *tagged = NULL;
        int len = -1;
        int tag = !strcmp(inv->function, "tag"), tagfix = !strcmp(inv->function, "tagfix");
        if (tag || tagfix) {
            len = (int) s_tag(tag ? "tag:" : "fix:", inv->input, inv->input_len, &tagged);
            out = tagged;
            if (tag && s_wrong_tag > 0) {
                s_wrong_tag--;
                len = (int) strlen(strcpy(out, "tag:"));
                fprintf(stderr, "chaos worker: --wrong-tag: answered tag with \"tag:\" on %s\n",
                        inv->target_id);
            }
        } else if (!strcmp(inv->function, "fix")) {
            len = s_fix(in, out, sizeof buf);
        } else {
            char *end = NULL;
            errno = 0;
            long long n = strtoll(in, &end, 10);
            if (inv->input_len && end && *end == 0 && errno == 0)
                len = snprintf(out, sizeof buf, "%lld", n + 1);
        }
        /* A short random delay keeps invocations in flight long enough for
         * a kill to land in the middle of one now and then. */
        if (delay_ms > 0)
            s_sleep_ms(s_below(&rng, delay_ms));
        rc = len >= 0 ? pm_worker_complete(w, inv, out, (size_t) len)
                      : pm_worker_fail(w, inv,
                                       !strcmp(inv->function, "fix") ? "fix: unexpected input"
                                                                     : "input is not a number");
        if (tag || tagfix) {
            /* Any bytes: escaped to one field each (s_esc). */
            size_t ci = 3 * inv->input_len + 8, co = 3 * (size_t) len + 8;
            char *ein = malloc(ci), *eout = malloc(co);
            s_esc(inv->input, inv->input_len, ein, ci);
            s_esc(out, (size_t) len, eout, co);
            s_logf("inv %s %s %u %s %s %s %s", inv->invocation_id, inv->target_id, inv->attempt,
                   ein, eout, pm_err_name(rc), inv->function);
            free(ein);
            free(eout);
        } else {
            s_logf("inv %s %s %u %s %s %s %s", inv->invocation_id, inv->target_id, inv->attempt,
                   len >= 0 ? in : "-", len >= 0 ? out : "-", pm_err_name(rc), inv->function);
        }
        free(tagged);
        served++;
        pm_invocation_destroy(&inv);
        if (s_conn_err(rc))
            pm_worker_destroy(&w);
    }
    pm_worker_destroy(&w);
    fprintf(stderr, "chaos worker: stopped after %" PRId64 " invocations\n", served);
    return 0;
}

/* ================================================================== load */

typedef struct {
    atomic_long scenarios, creates, settles, thens, awaits, chains, conflicts_refused, errors;
    atomic_long races, races_split, races_two_acked;
    atomic_long combines, catches, comb_thens;
} s_totals_t;

static s_totals_t s_tot;
static char *s_socks[S_MAX_AGENTS];
static int s_nsocks;
static int64_t s_end_mono;
static int s_race_pct;
static const char *s_sides_file;
/* --only NAME: every scenario is NAME (tests); NULL: the mix. */
static const char *s_only;

typedef struct {
    pm_client_t *c;
    int64_t retry_at;
} s_conn_t;

typedef struct {
    int index;
    uint64_t rng;
    s_conn_t conns[S_MAX_AGENTS];
    /* Clients for awaits: used only by the awaiter thread while it runs, so
     * an await's reply is seen when it arrives, however long the actor is
     * blocked in another call meanwhile. */
    s_conn_t aconns[S_MAX_AGENTS];
    /* Promises created while the mesh was whole, kept pending for a race
     * during a split (their owner's backups hold them when it starts). */
    char *pool[S_RACE_POOL];
    int pool_owner[S_RACE_POOL];
    int npool;
    pthread_t thread;
} s_actor_t;

static pm_client_t *
s_client_in(s_conn_t *c, int k)
{
    if (c->c)
        return c->c;
    if (s_mono_ms() < c->retry_at)
        return NULL;
    if (pm_client_connect(s_socks[k], &c->c) != PM_OK) {
        c->c = NULL;
        c->retry_at = s_mono_ms() + S_RECONNECT_MS;
    }
    return c->c;
}

static pm_client_t *
s_client(s_actor_t *a, int k)
{
    return s_client_in(&a->conns[k], k);
}

static void
s_drop_in(s_conn_t *c)
{
    pm_client_destroy(&c->c);
    c->retry_at = s_mono_ms() + S_RECONNECT_MS;
}

static void
s_drop(s_actor_t *a, int k)
{
    s_drop_in(&a->conns[k]);
}

/* A random agent we can talk to, preferably not `avoid`; -1 if none. */
static int
s_pick(s_actor_t *a, int avoid)
{
    for (int tries = 0; tries < 4 * s_nsocks; tries++) {
        int k = (int) s_below(&a->rng, s_nsocks);
        if (k == avoid && s_nsocks > 1 && tries < 2 * s_nsocks)
            continue;
        if (s_client(a, k))
            return k;
    }
    return -1;
}

/* Settles id (state, value) from random agents, retrying what may not have
 * arrived, as an outside system that holds the outcome would. Returns the
 * monotonic time of the acknowledgement, or -1. probe: a deliberately
 * conflicting settle (logged as probe, tried once). */
static int64_t
s_settle(s_actor_t *a, const char *id, int state, const char *value, int avoid, int probe)
{
    int tries = probe ? 1 : 4;
    for (int t = 0; t < tries; t++) {
        if (t)
            s_sleep_ms(100 * t);
        int k = s_pick(a, avoid);
        if (k < 0)
            continue;
        pm_client_t *c = a->conns[k].c;
        s_logf("%d %s %s %s %s", k + 1, probe ? "probe" : "try", s_state_tag(state), id, value);
        int err;
        if (state == PM_STATE_RESOLVED)
            err = pm_resolve(c, id, value, strlen(value));
        else if (state == PM_STATE_REJECTED)
            err = pm_reject(c, id, value);
        else
            err = pm_cancel(c, id);
        if (err == PM_OK) {
            s_logf("%d %s %s %s", k + 1,
                   state == PM_STATE_RESOLVED   ? "resolve"
                   : state == PM_STATE_REJECTED ? "reject"
                                                : "cancel",
                   id, value);
            atomic_fetch_add(&s_tot.settles, 1);
            return s_mono_ms();
        }
        s_logf("%d refused %s %s %s", k + 1, s_state_tag(state), id, pm_err_name(err));
        if (s_conn_err(err))
            s_drop(a, k);
        /* Only a lost connection or a takeover in progress is worth a retry;
         * ALREADY_SETTLED, NOT_FOUND, TIMED_OUT are answers. */
        if (!s_conn_err(err) && err != PM_ERR_OWNER_LOST && err != PM_ERR_INTERNAL &&
            err != PM_ERR_UNAVAILABLE)
            break;
    }
    return -1;
}

/* Creates a promise through agent k (a random one if k < 0 or k cannot be
 * reached); caller frees. NULL if not acknowledged. */
static char *
s_create_at(s_actor_t *a, int k, int64_t timeout_ms, int *agent)
{
    if (k < 0 || !s_client(a, k))
        k = s_pick(a, -1);
    if (k < 0)
        return NULL;
    pm_create_opts_t o = {.timeout_ms = timeout_ms};
    char *id = NULL;
    int err = pm_create(a->conns[k].c, &o, &id, NULL);
    if (err != PM_OK) {
        s_logf("%d err create - %s", k + 1, pm_err_name(err));
        atomic_fetch_add(&s_tot.errors, 1);
        if (s_conn_err(err))
            s_drop(a, k);
        free(id);
        return NULL;
    }
    s_logf("%d create %s %" PRId64, k + 1, id, timeout_ms);
    atomic_fetch_add(&s_tot.creates, 1);
    if (agent)
        *agent = k;
    return id;
}

/* Creates a promise on a random agent; caller frees. NULL if not acknowledged. */
static char *
s_create(s_actor_t *a, int64_t timeout_ms, int *agent)
{
    return s_create_at(a, -1, timeout_ms, agent);
}

/* Reads id right after an acknowledged settle: anything still pending is a
 * read that missed an acknowledged write (logged; the checker counts it). */
static void
s_read_back(s_actor_t *a, const char *id)
{
    int k = s_pick(a, -1);
    if (k < 0)
        return;
    pm_promise_t *p = NULL;
    int err = pm_get(a->conns[k].c, id, &p);
    if (err == PM_OK && p->state == PM_STATE_PENDING)
        s_logf("%d stale %s pending", k + 1, id);
    else if (err != PM_OK && err != PM_ERR_OWNER_LOST && !s_conn_err(err))
        s_logf("%d stale %s %s", k + 1, id, pm_err_name(err));
    if (s_conn_err(err))
        s_drop(a, k);
    pm_promise_destroy(&p);
}

/* One await, run by its own thread on the actor's await client for agent k.
 * The actor waits until it was sent, settles, and joins the thread. */
typedef struct {
    s_actor_t *a;
    int k;
    const char *id;
    int64_t timeout;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int sent; /* 0 not yet, 1 sent, -1 could not be sent */
    int done;
    int64_t t0, wall;
    int rc; /* PM_OK with res, a pm_err, or S_NO_REPLY */
    pm_result_t *res;
} s_await_job_t;

#define S_NO_REPLY (-1000)

static void
s_job_set(s_await_job_t *j, int *field, int value)
{
    pthread_mutex_lock(&j->mu);
    *field = value;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void *
s_awaiter(void *arg)
{
    s_await_job_t *j = arg;
    s_conn_t *slot = &j->a->aconns[j->k];
    pm_client_t *c = s_client_in(slot, j->k);
    uint64_t req = 0;
    if (!c || pm_send_await(c, j->id, j->timeout, &req) != PM_OK) {
        if (c)
            s_drop_in(slot);
        s_job_set(j, &j->sent, -1);
        return NULL;
    }
    j->t0 = s_mono_ms();
    s_job_set(j, &j->sent, 1);
    int64_t limit = j->t0 + j->timeout + S_AWAIT_GRACE_MS;
    j->rc = S_NO_REPLY;
    for (;;) {
        int64_t left = limit - s_mono_ms();
        if (left <= 0)
            break;
        pm_result_t *r = NULL;
        int rc = pm_recv(c, (int) left, &r);
        if (rc == PM_ERR_WAIT_TIMEOUT)
            continue;
        if (rc != PM_OK) {
            j->rc = rc;
            s_drop_in(slot);
            break;
        }
        if (r->req_id == req) {
            j->rc = PM_OK;
            j->res = r;
            break;
        }
        pm_result_destroy(&r); /* a reply to an abandoned earlier await */
    }
    j->wall = s_mono_ms() - j->t0;
    if (j->rc == S_NO_REPLY)
        s_drop_in(slot); /* its reply may still come: do not read it as another's */
    s_job_set(j, &j->done, 1);
    return NULL;
}

/* Starts an await of id from agent k; 0 once it is sent, -1 if it could not be. */
static int
s_await_start(s_await_job_t *j, s_actor_t *a, int k, const char *id, int64_t timeout)
{
    memset(j, 0, sizeof *j);
    j->a = a;
    j->k = k;
    j->id = id;
    j->timeout = timeout;
    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&j->thread, NULL, s_awaiter, j) != 0)
        return -1;
    pthread_mutex_lock(&j->mu);
    while (!j->sent)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    if (j->sent < 0) {
        pthread_join(j->thread, NULL);
        return -1;
    }
    return 0;
}

/* Waits until the await ended or until (monotonic); 1 if it ended. */
static int
s_await_wait(s_await_job_t *j, int64_t until)
{
    struct timespec ts = {until / 1000, (until % 1000) * 1000000};
    pthread_mutex_lock(&j->mu);
    while (!j->done && pthread_cond_timedwait(&j->cv, &j->mu, &ts) == 0)
        ;
    int done = j->done;
    pthread_mutex_unlock(&j->mu);
    return done;
}

/* Joins the await and logs it; settled_at: when its settle was acknowledged
 * (monotonic), -1 if not by us. */
static void
s_await_finish(s_await_job_t *j, int64_t settled_at, const char *kind)
{
    pthread_join(j->thread, NULL);
    const char *outcome, *value = "-";
    char esc[4096];
    pm_result_t *r = j->res;
    if (j->rc == S_NO_REPLY)
        outcome = "NO_REPLY";
    else if (j->rc != PM_OK)
        outcome = pm_err_name(j->rc);
    else if (r->err != PM_OK)
        outcome = pm_err_name(r->err);
    else if (r->promise && !strcmp(kind, "fanin")) {
        /* A combinator's value (JSON) or reason, escaped: compared with
         * what it reads back. */
        outcome = s_state_tag(r->promise->state);
        if (r->promise->state == PM_STATE_RESOLVED)
            s_esc(r->promise->value, r->promise->value_len, esc, sizeof esc);
        else
            s_esc(r->promise->reason, r->promise->reason ? strlen(r->promise->reason) : 0, esc,
                  sizeof esc);
        value = esc;
    } else if (r->promise) {
        outcome = s_state_tag(r->promise->state);
        if (r->promise->state == PM_STATE_RESOLVED)
            value = r->promise->value_len ? (const char *) r->promise->value : "-";
        else if (r->promise->reason && *r->promise->reason && !strchr(r->promise->reason, ' '))
            value = r->promise->reason;
    } else
        outcome = "EMPTY";
    s_logf("%d await %s %" PRId64 " %" PRId64 " %" PRId64 " %s %s %s", j->k + 1, j->id,
           j->timeout, j->wall, settled_at >= 0 ? settled_at - j->t0 : -1, kind, outcome, value);
    atomic_fetch_add(&s_tot.awaits, 1);
    pm_result_destroy(&j->res);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
}

/* create, settle from another agent, read back, sometimes a conflicting
 * second settle that must be refused. */
static void
s_scenario_settle(s_actor_t *a)
{
    int owner = -1;
    char *id = s_create(a, 0, &owner);
    if (!id)
        return;
    int64_t r = s_below(&a->rng, 10);
    int state = r < 6 ? PM_STATE_RESOLVED : r < 9 ? PM_STATE_REJECTED : PM_STATE_CANCELED;
    char value[256];
    snprintf(value, sizeof value, "%s", state == PM_STATE_CANCELED ? "-" : id);
    value[0] = state == PM_STATE_RESOLVED ? 'v' : state == PM_STATE_REJECTED ? 'r' : '-';
    if (s_settle(a, id, state, value, owner, 0) >= 0) {
        s_read_back(a, id);
        if (s_below(&a->rng, 4) == 0) {
            int other = state == PM_STATE_RESOLVED ? PM_STATE_REJECTED : PM_STATE_RESOLVED;
            char v2[256];
            snprintf(v2, sizeof v2, "x%s", id + 1);
            if (s_settle(a, id, other, v2, owner, 1) < 0)
                atomic_fetch_add(&s_tot.conflicts_refused, 1);
        }
    }
    free(id);
}

/* An await from one agent on a promise another agent owns, settled from a
 * third at a random time before or after the await's timeout. */
static void
s_scenario_await(s_actor_t *a)
{
    int owner = -1;
    char *id = s_create(a, 0, &owner);
    if (!id)
        return;
    int64_t timeout = 1000 + s_below(&a->rng, 4000);
    int kw = (int) s_below(&a->rng, s_nsocks);
    if (kw == owner && s_nsocks > 1)
        kw = (kw + 1) % s_nsocks;
    s_await_job_t j;
    if (s_await_start(&j, a, kw, id, timeout) != 0) {
        free(id);
        return;
    }
    /* An outside system does not know about awaits: it settles when it
     * is ready, before or after the await gave up. */
    s_await_wait(&j, j.t0 + s_below(&a->rng, timeout * 3 / 2));
    char value[256];
    snprintf(value, sizeof value, "v%s", id + 1);
    int64_t settled = s_settle(a, id, PM_STATE_RESOLVED, value, kw, 0);
    s_await_finish(&j, settled, "await");
    free(id);
}

/* p, then(p, inc) from another agent, then(that, inc) from a third, ... (1-3
 * links, each sent from a random agent), an await on the end from yet
 * another, then p settled from a random agent: the end must resolve to
 * p's value + length (or, when p is rejected, reject). */
static void
s_scenario_chain(s_actor_t *a)
{
    int owner = -1;
    char *head = s_create(a, 0, &owner);
    if (!head)
        return;
    int len = 1 + (int) s_below(&a->rng, 3);
    char *ids[4] = {head, NULL, NULL, NULL};
    int intact = 1;
    for (int i = 1; i <= len && intact; i++) {
        int k = s_pick(a, -1);
        char *nid = NULL;
        int err = k < 0 ? PM_ERR_UNREACHABLE : pm_then(a->conns[k].c, ids[i - 1], "inc", 0, &nid);
        if (err == PM_OK) {
            s_logf("%d then %s inc %s", k + 1, ids[i - 1], nid);
            atomic_fetch_add(&s_tot.thens, 1);
            ids[i] = nid;
        } else {
            s_logf("%d err then %s %s", k + 1, ids[i - 1], pm_err_name(err));
            atomic_fetch_add(&s_tot.errors, 1);
            if (k >= 0 && s_conn_err(err))
                s_drop(a, k);
            free(nid);
            intact = 0;
            len = i - 1;
        }
    }
    const char *end = ids[len];
    s_await_job_t j;
    int awaiting = 0;
    if (len) {
        int kw = (int) s_below(&a->rng, s_nsocks);
        awaiting = s_await_start(&j, a, kw, end, S_CHAIN_AWAIT_MS) == 0;
    }
    int reject = s_below(&a->rng, 10) == 0;
    char value[64];
    if (reject)
        snprintf(value, sizeof value, "head-rejected");
    else
        snprintf(value, sizeof value, "%" PRId64, s_below(&a->rng, 1000000000));
    int64_t settled = s_settle(a, head, reject ? PM_STATE_REJECTED : PM_STATE_RESOLVED, value,
                               -1, 0);
    if (settled >= 0 && intact && len) {
        s_logf("%d chain %s %s %d %s", owner + 1, head, end, len, reject ? "reject" : value);
        atomic_fetch_add(&s_tot.chains, 1);
    }
    if (awaiting)
        s_await_finish(&j, settled, "chain");
    for (int i = 0; i < 4; i++)
        free(ids[i]);
}

/* The agents currently cut off (0-based into cut[]), from --sides; 0 if
 * none or no file. */
static int
s_read_sides(int *cut, int max)
{
    if (!s_sides_file)
        return 0;
    FILE *f = fopen(s_sides_file, "r");
    if (!f)
        return 0;
    int n = 0, k;
    while (n < max && fscanf(f, "%d", &k) == 1)
        if (k >= 1 && k <= s_nsocks)
            cut[n++] = k - 1;
    fclose(f);
    return n;
}

/* Waits for the reply to req on c (the client is used by this thread only):
 * its error, PM_ERR_UNREACHABLE if the connection went, S_NO_REPLY if none
 * came within ms. */
static int
s_wait_reply(pm_client_t *c, uint64_t req, int64_t ms)
{
    int64_t limit = s_mono_ms() + ms;
    for (;;) {
        int64_t left = limit - s_mono_ms();
        if (left <= 0)
            return S_NO_REPLY;
        pm_result_t *r = NULL;
        int rc = pm_recv(c, (int) left, &r);
        if (rc == PM_ERR_WAIT_TIMEOUT)
            continue;
        if (rc != PM_OK)
            return rc;
        if (r->req_id == req) {
            int err = r->err;
            pm_result_destroy(&r);
            return err;
        }
        pm_result_destroy(&r);
    }
}

/* A race: one promise resolved at the same moment through two agents with two
 * different values, as two outside systems that both think they hold the
 * answer would (during a split: one agent on each side, on a promise made
 * before the split, its owner cut off when there is one). At most one may be
 * acknowledged; whichever is, every read afterwards must give its value.
 * While the mesh is whole, half of the races only make a promise for the
 * pool instead. */
static void
s_scenario_race(s_actor_t *a)
{
    int owner = -1;
    char *id = NULL;
    int cut[S_MAX_AGENTS], ncut = s_read_sides(cut, S_MAX_AGENTS);
    if (ncut > 0 && a->npool > 0) {
        /* A split: race a promise made before it, preferably one whose owner
         * is cut off (its heir on the other side may take it over: the
         * split-brain case). */
        int pick = -1;
        for (int i = 0; i < a->npool && pick < 0; i++)
            for (int j = 0; j < ncut; j++)
                if (a->pool_owner[i] == cut[j])
                    pick = i;
        if (pick < 0)
            pick = (int) s_below(&a->rng, a->npool);
        id = a->pool[pick];
        owner = a->pool_owner[pick];
        a->pool[pick] = a->pool[--a->npool];
        a->pool_owner[pick] = a->pool_owner[a->npool];
    } else if (ncut == 0 && a->npool < S_RACE_POOL && s_below(&a->rng, 2) == 0) {
        /* Whole: keep a promise pending for a race during the next split. */
        char *p = s_create(a, 0, &owner);
        if (p) {
            a->pool[a->npool] = p;
            a->pool_owner[a->npool++] = owner;
        }
        return;
    } else {
        id = s_create(a, 0, &owner);
    }
    if (!id)
        return;
    int k[2] = {-1, -1};
    const char *side[2] = {"any", "any"};
    if (ncut > 0 && ncut < s_nsocks) {
        int in_cut[S_MAX_AGENTS] = {0}, rest[S_MAX_AGENTS], nrest = 0;
        for (int i = 0; i < ncut; i++)
            in_cut[cut[i]] = 1;
        for (int i = 0; i < s_nsocks; i++)
            if (!in_cut[i])
                rest[nrest++] = i;
        int first = (int) s_below(&a->rng, 2);
        k[first] = in_cut[owner >= 0 ? owner : 0] ? owner : cut[s_below(&a->rng, ncut)];
        side[first] = "cut";
        k[1 - first] = rest[s_below(&a->rng, nrest)];
        side[1 - first] = "rest";
    } else {
        k[0] = (int) s_below(&a->rng, s_nsocks);
        k[1] = (k[0] + 1 + (int) s_below(&a->rng, s_nsocks - 1)) % s_nsocks;
    }
    pm_client_t *c[2];
    for (int i = 0; i < 2; i++)
        if (!(c[i] = s_client(a, k[i]))) {
            free(id);
            return; /* not connected: no race */
        }
    char value[2][256];
    uint64_t req[2] = {0, 0};
    int sent[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        snprintf(value[i], sizeof value[i], "%c%s", i ? 'b' : 'a', id + 1);
        s_logf("%d race resolved %s %s %s", k[i] + 1, id, value[i], side[i]);
    }
    for (int i = 0; i < 2; i++)
        sent[i] = pm_send_resolve(c[i], id, value[i], strlen(value[i]), &req[i]) == PM_OK;
    int acked = 0;
    for (int i = 0; i < 2; i++) {
        int err = sent[i] ? s_wait_reply(c[i], req[i], 20000) : PM_ERR_UNREACHABLE;
        if (err == PM_OK) {
            s_logf("%d resolve %s %s", k[i] + 1, id, value[i]);
            atomic_fetch_add(&s_tot.settles, 1);
            acked++;
        } else {
            s_logf("%d refused resolved %s %s", k[i] + 1, id,
                   err == S_NO_REPLY ? "NO_REPLY" : pm_err_name(err));
            if (err == S_NO_REPLY || s_conn_err(err))
                s_drop(a, k[i]); /* a late reply must not be read as another's */
        }
    }
    s_logf("%d raced %s %d", owner + 1, id, acked);
    atomic_fetch_add(&s_tot.races, 1);
    if (ncut > 0)
        atomic_fetch_add(&s_tot.races_split, 1);
    if (acked == 2)
        atomic_fetch_add(&s_tot.races_two_acked, 1);
    if (acked)
        s_read_back(a, id);
    free(id);
}

/* One reply awaited on the actor's client for agent k. */
typedef struct {
    int k;
    uint64_t req;
    int err; /* PM_OK, a pm_err or S_NO_REPLY; S_WAITING until it came */
} s_pend_t;

#define S_WAITING 1

/* Waits for the replies to p[0..m), each sent on a->conns[p[i].k] (several
 * may share a client), at most ms in all. A client that lost its connection
 * or left a reply unanswered is dropped (a late reply must not be read as
 * another's). */
static void
s_collect(s_actor_t *a, s_pend_t *p, int m, int64_t ms)
{
    int64_t limit = s_mono_ms() + ms;
    for (int i = 0; i < m; i++) {
        while (p[i].err == S_WAITING) {
            int k = p[i].k, fail = 0;
            pm_client_t *c = a->conns[k].c;
            int64_t left = limit - s_mono_ms();
            pm_result_t *r = NULL;
            int rc = !c ? PM_ERR_UNREACHABLE : left <= 0 ? S_NO_REPLY : pm_recv(c, (int) left, &r);
            if (rc == PM_ERR_WAIT_TIMEOUT)
                continue;
            if (rc != PM_OK)
                fail = rc;
            for (int j = 0; j < m; j++) {
                if (p[j].k != k || p[j].err != S_WAITING)
                    continue;
                if (fail)
                    p[j].err = fail;
                else if (p[j].req == r->req_id)
                    p[j].err = r->err;
            }
            pm_result_destroy(&r);
            if (fail && c)
                s_drop(a, k);
        }
    }
}

/* A combinator: 2-5 inputs on different agents, one of them sometimes
 * given twice; all / any / race / all-settled at random, one in four with a
 * timeout of its own, made on another agent; an await of it from yet
 * another; then the inputs settled in a random order from agents other than
 * their owners (resolved, rejected, canceled, or left to a timeout of their
 * own). Half of the time the inputs are promises created (acknowledged)
 * through their agents and the combinator is made after; the other half
 * they are pipelined: each input is then(p_i, inc) on a promise p_i of
 * agent i, sent from the combinator's client (it lives in p_i's space), and
 * the combinator is sent on the same connection before any then was
 * answered, so it subscribes to inputs that exist at their owners only
 * because requests to one owner travel one FIFO channel (proto/PROTOCOL.md
 * 5a); the load settles the p_i (a number, so inc runs). The checker works
 * out from what the inputs read what the combinator must read. */
static void
s_scenario_fanin(s_actor_t *a)
{
    static const int kinds[4] = {PM_COMBINE_ALL, PM_COMBINE_ANY, PM_COMBINE_RACE,
                                 PM_COMBINE_ALL_SETTLED};
    int n = 2 + (int) s_below(&a->rng, 4);
    int perm[S_MAX_AGENTS] = {0};
    for (int i = 0; i < s_nsocks; i++)
        perm[i] = i;
    for (int i = s_nsocks - 1; i > 0; i--) {
        int j = (int) s_below(&a->rng, i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int kc = perm[n % s_nsocks], kw = perm[(n + 1) % s_nsocks];
    if (kw == kc && s_nsocks > 1)
        kw = (kc + 1) % s_nsocks;
    int kind = kinds[s_below(&a->rng, 4)];
    int64_t ctimeout = s_below(&a->rng, 4) == 0 ? 300 + s_below(&a->rng, 2700) : 0;
    int pipelined = (int) s_below(&a->rng, 2);
    char *src[6] = {0}, *ids[6] = {0}, *cid = NULL;
    int plan[6], owner[6], ok = 1;
    int64_t itimeout[6];
    for (int i = 0; i < n && ok; i++) {
        int64_t r = s_below(&a->rng, 100);
        plan[i] = r < 65 ? PM_STATE_RESOLVED
                  : r < 85 ? PM_STATE_REJECTED
                  : r < 90 ? PM_STATE_CANCELED
                           : PM_STATE_TIMEDOUT; /* nobody settles it */
        itimeout[i] = plan[i] == PM_STATE_TIMEDOUT ? 300 + s_below(&a->rng, 1200) : 0;
        owner[i] = -1;
        src[i] = s_create_at(a, perm[i % s_nsocks], itimeout[i], &owner[i]);
        ok = src[i] != NULL;
    }
    if (ok && !s_client(a, kc))
        ok = 0;
    const char *ins[6];
    int nin = n, cerr = PM_ERR_UNREACHABLE;
    int64_t sent = s_wall_ms(); /* the combinator's deadline is after sent + ctimeout */
    if (ok && pipelined) {
        s_pend_t pend[7];
        int m = 0;
        pm_client_t *c = a->conns[kc].c;
        for (int i = 0; i < n && ok; i++) {
            uint64_t req = 0;
            int err = pm_send_then(c, src[i], "inc", 0, &ids[i], &req);
            if (err == PM_OK)
                pend[m++] = (s_pend_t){kc, req, S_WAITING};
            else
                ok = 0;
        }
        uint64_t req = 0;
        for (int i = 0; i < n; i++)
            ins[i] = ids[i];
        if (ok && s_below(&a->rng, 5) == 0)
            ins[nin++] = ids[s_below(&a->rng, n)]; /* a duplicate counts on its own */
        if (ok && (cerr = pm_send_combine(c, kind, ins, (size_t) nin, ctimeout, &cid, &req)) ==
                      PM_OK)
            pend[m++] = (s_pend_t){kc, req, S_WAITING};
        s_collect(a, pend, m, 20000);
        for (int i = 0; i < n && i < m; i++) {
            if (pend[i].err == PM_OK) {
                s_logf("%d then %s inc %s", kc + 1, src[i], ids[i]);
                atomic_fetch_add(&s_tot.thens, 1);
            } else {
                s_logf("%d err then %s %s", kc + 1, src[i],
                       pend[i].err == S_NO_REPLY ? "NO_REPLY" : pm_err_name(pend[i].err));
                atomic_fetch_add(&s_tot.errors, 1);
            }
        }
        if (ok)
            cerr = pend[m - 1].err;
    } else if (ok) {
        for (int i = 0; i < n; i++)
            ins[i] = src[i];
        if (s_below(&a->rng, 5) == 0)
            ins[nin++] = src[s_below(&a->rng, n)];
        cerr = pm_combine(a->conns[kc].c, kind, ins, (size_t) nin, ctimeout, &cid);
    }
    if (!ok || cerr != PM_OK) {
        if (cid || cerr != PM_ERR_UNREACHABLE || ok)
            s_logf("%d err combine %s %s", kc + 1, cid ? cid : "-",
                   cerr == S_NO_REPLY ? "NO_REPLY" : pm_err_name(cerr));
        atomic_fetch_add(&s_tot.errors, 1);
        if (s_conn_err(cerr) || cerr == S_NO_REPLY)
            s_drop(a, kc);
    } else {
        char list[6 * 300];
        size_t off = 0;
        for (int i = 0; i < nin; i++)
            off += (size_t) snprintf(list + off, sizeof list - off, "%s%s", i ? "," : "",
                                     ins[i]);
        s_logf("%d combine %s %s %" PRId64 " %" PRId64 " %s", kc + 1, pm_combinator_name(kind),
               cid, ctimeout, sent, list);
        atomic_fetch_add(&s_tot.combines, 1);
        /* Half of the time a then chained on it (early starts, issue 15):
         * its agent starts tag on the inputs' tentative outcomes; the
         * target must end as tag (or tagfix) on the combinator's final
         * outcome. */
        if (s_below(&a->rng, 2) == 0) {
            char *tid = NULL;
            int terr = pm_then_catch(a->conns[kc].c, cid, "tag", "tagfix", 0, &tid);
            if (terr == PM_OK) {
                s_logf("%d then %s tag %s tagfix", kc + 1, cid, tid);
                atomic_fetch_add(&s_tot.thens, 1);
                atomic_fetch_add(&s_tot.comb_thens, 1);
            } else {
                s_logf("%d err then %s %s", kc + 1, cid, pm_err_name(terr));
                atomic_fetch_add(&s_tot.errors, 1);
                if (s_conn_err(terr))
                    s_drop(a, kc);
            }
            free(tid);
        }
    }
    s_await_job_t j;
    int64_t tw = ctimeout + 3000 + s_below(&a->rng, 3000);
    int awaiting = cerr == PM_OK && s_await_start(&j, a, kw, cid, tw) == 0;
    /* The outside systems answer in their own order. */
    int order[6];
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int x = (int) s_below(&a->rng, i + 1), t = order[i];
        order[i] = order[x];
        order[x] = t;
    }
    for (int o = 0; o < n; o++) {
        int i = order[o];
        if (!src[i] || plan[i] == PM_STATE_TIMEDOUT)
            continue;
        s_sleep_ms(s_below(&a->rng, 150));
        char value[256];
        if (plan[i] == PM_STATE_RESOLVED && pipelined)
            snprintf(value, sizeof value, "%" PRId64, s_below(&a->rng, 1000000000));
        else
            snprintf(value, sizeof value, "%c%s",
                     plan[i] == PM_STATE_RESOLVED   ? 'v'
                     : plan[i] == PM_STATE_REJECTED ? 'r'
                                                    : '-',
                     plan[i] == PM_STATE_CANCELED ? "" : src[i] + 1);
        s_settle(a, src[i], plan[i], value, owner[i], 0);
    }
    if (awaiting)
        s_await_finish(&j, -1, "fanin");
    for (int i = 0; i < n; i++) {
        free(src[i]);
        free(ids[i]);
    }
    free(cid);
}

/* then(p, inc, on_reject = fix) from one agent, sometimes then(.., inc)
 * after it from another, an await of the end from a third, then p
 * rejected with "e<N>" (four in five) or resolved with N: a rejected
 * source must run the handler (the target reads 2N; inc would fail on
 * that input), a resolved one the main function (N + 1). */
static void
s_scenario_catch(s_actor_t *a)
{
    int owner = -1;
    char *head = s_create(a, 0, &owner);
    if (!head)
        return;
    int len = 1 + (int) s_below(&a->rng, 2);
    char *ids[3] = {head, NULL, NULL};
    int intact = 1;
    for (int i = 1; i <= len && intact; i++) {
        int k = s_pick(a, -1);
        char *nid = NULL;
        int err = k < 0    ? PM_ERR_UNREACHABLE
                  : i == 1 ? pm_then_catch(a->conns[k].c, ids[0], "inc", "fix", 0, &nid)
                           : pm_then(a->conns[k].c, ids[i - 1], "inc", 0, &nid);
        if (err == PM_OK) {
            s_logf("%d then %s inc %s%s", k + 1, ids[i - 1], nid, i == 1 ? " fix" : "");
            atomic_fetch_add(&s_tot.thens, 1);
            if (i == 1)
                atomic_fetch_add(&s_tot.catches, 1);
            ids[i] = nid;
        } else {
            s_logf("%d err then %s %s", k + 1, ids[i - 1], pm_err_name(err));
            atomic_fetch_add(&s_tot.errors, 1);
            if (k >= 0 && s_conn_err(err))
                s_drop(a, k);
            free(nid);
            intact = 0;
            len = i - 1;
        }
    }
    const char *end = ids[len];
    s_await_job_t j;
    int awaiting = 0;
    if (len)
        awaiting = s_await_start(&j, a, (int) s_below(&a->rng, s_nsocks), end,
                                 S_CHAIN_AWAIT_MS) == 0;
    int reject = s_below(&a->rng, 5) != 0;
    char value[64];
    snprintf(value, sizeof value, "%s%" PRId64, reject ? "e" : "", s_below(&a->rng, 1000000000));
    int64_t settled = s_settle(a, head, reject ? PM_STATE_REJECTED : PM_STATE_RESOLVED, value,
                               -1, 0);
    if (settled >= 0 && intact && len) {
        s_logf("%d catchchain %s %s %d %s", owner + 1, head, end, len, value);
        atomic_fetch_add(&s_tot.chains, 1);
    }
    if (awaiting)
        s_await_finish(&j, settled, "chain");
    for (int i = 0; i < 3; i++)
        free(ids[i]);
}

/* A promise with a short timeout that nobody settles: it must end timed out,
 * even when its owner dies before the deadline. */
static void
s_scenario_deadline(s_actor_t *a)
{
    char *id = s_create(a, 300 + s_below(&a->rng, 2700), NULL);
    free(id);
}

static const struct {
    const char *name;
    void (*run)(s_actor_t *a);
} s_scenarios[] = {
    {"settle", s_scenario_settle}, {"await", s_scenario_await},
    {"chain", s_scenario_chain},   {"fanin", s_scenario_fanin},
    {"catch", s_scenario_catch},   {"deadline", s_scenario_deadline},
    {"race", s_scenario_race},
};

static int
s_scenario_named(s_actor_t *a, const char *name)
{
    for (size_t i = 0; i < sizeof s_scenarios / sizeof s_scenarios[0]; i++)
        if (!strcmp(name, s_scenarios[i].name)) {
            if (a)
                s_scenarios[i].run(a);
            return 0;
        }
    return -1;
}

static void *
s_actor(void *arg)
{
    s_actor_t *a = arg;
    while (!s_stop && s_mono_ms() < s_end_mono) {
        int64_t r = s_below(&a->rng, 100);
        /* While a split is in force the load slows down (requests wait for
         * the far side): half of what runs then is a race across the cut. */
        int cut[S_MAX_AGENTS], pct = s_race_pct;
        if (pct > 0 && pct < 50 && s_read_sides(cut, S_MAX_AGENTS) > 0)
            pct = 50;
        if (s_only)
            s_scenario_named(a, s_only);
        else if (pct > 0 && s_below(&a->rng, 100) < pct)
            s_scenario_race(a);
        else if (r < 35)
            s_scenario_settle(a);
        else if (r < 53)
            s_scenario_await(a);
        else if (r < 80)
            s_scenario_chain(a);
        else if (r < 90)
            s_scenario_fanin(a);
        else if (r < 94)
            s_scenario_catch(a);
        else
            s_scenario_deadline(a);
        atomic_fetch_add(&s_tot.scenarios, 1);
        if (s_pick(a, -1) < 0)
            s_sleep_ms(100); /* nobody answers: do not spin */
    }
    for (int k = 0; k < s_nsocks; k++) {
        pm_client_destroy(&a->conns[k].c);
        pm_client_destroy(&a->aconns[k].c);
    }
    for (int i = 0; i < a->npool; i++)
        free(a->pool[i]); /* never settled: they read pending */
    return NULL;
}

static int
s_load_main(int threads, int64_t duration_ms, uint64_t seed)
{
    s_end_mono = s_mono_ms() + duration_ms;
    s_actor_t *actors = calloc((size_t) threads, sizeof *actors);
    for (int i = 0; i < threads; i++) {
        actors[i].index = i;
        actors[i].rng = (seed + 1) * 0x9E3779B97F4A7C15ULL + (uint64_t) i * 7919 + 1;
        pthread_create(&actors[i].thread, NULL, s_actor, &actors[i]);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(actors[i].thread, NULL);
    free(actors);
    printf("load: %ld scenarios, %ld creates, %ld settles, %ld thens, %ld awaits, %ld chains, "
           "%ld conflicting settles refused, %ld failed operations, %ld races (%ld across a "
           "split, %ld with both resolves acknowledged), %ld combinators, %ld on-reject thens, %ld thens on combinators\n",
           atomic_load(&s_tot.scenarios), atomic_load(&s_tot.creates),
           atomic_load(&s_tot.settles), atomic_load(&s_tot.thens), atomic_load(&s_tot.awaits),
           atomic_load(&s_tot.chains), atomic_load(&s_tot.conflicts_refused),
           atomic_load(&s_tot.errors), atomic_load(&s_tot.races), atomic_load(&s_tot.races_split),
           atomic_load(&s_tot.races_two_acked), atomic_load(&s_tot.combines),
           atomic_load(&s_tot.catches), atomic_load(&s_tot.comb_thens));
    return 0;
}

/* ================================================================= check */

typedef struct {
    char *id;
    int acked;         /* acknowledged create or then */
    int64_t timeout;   /* create's timeout (0: none) */
    int64_t acked_at;  /* wall ms of the create/then ack */
    int ack_state;     /* first acknowledged settle */
    char *ack_value;
    int64_t ack_wall;
    int ack_conflict;  /* a second acknowledged settle with another outcome */
    char conflict_desc[160];
    int try_state;     /* the outcome we tried to give it (0: none) */
    char *try_value;
    char *then_src;    /* for a then target */
    char *on_reject;   /* for a then target: its rejection handler (NULL: none) */
    struct s_comb *comb; /* for a combinator: its kind and inputs */
    int race;          /* resolves raced: values race_value[0..race) were sent */
    char *race_value[2];
    int race_split;    /* one resolve went to each side of a split */
    int race_acked;    /* from the raced line: how many were acknowledged (-1: no line) */
    /* read back */
    int read_err;
    int read_state;
    char *read_value;
    int final;
} s_rec_t;

static zhashx_t *s_recs;
static s_rec_t **s_order;
static size_t s_nrec, s_caprec;

static s_rec_t *
s_rec(const char *id)
{
    s_rec_t *r = zhashx_lookup(s_recs, id);
    if (r)
        return r;
    r = calloc(1, sizeof *r);
    r->id = strdup(id);
    zhashx_insert(s_recs, r->id, r);
    if (s_nrec == s_caprec) {
        s_caprec = s_caprec ? 2 * s_caprec : 4096;
        s_order = realloc(s_order, s_caprec * sizeof *s_order);
    }
    s_order[s_nrec++] = r;
    return r;
}

static int
s_same_outcome(int s1, const char *v1, int s2, const char *v2)
{
    if (s1 != s2)
        return 0;
    if (s1 == PM_STATE_CANCELED)
        return 1;
    return strcmp(v1 ? v1 : "", v2 ? v2 : "") == 0;
}

typedef struct {
    char *head, *end, *input;
    int len;
    int catch_; /* catchchain: the first link has on_reject fix */
} s_chain_t;

/* An acknowledged combinator (combine line). */
typedef struct s_comb {
    char *id;
    int kind;
    int64_t timeout;  /* its own (0: none) */
    int64_t sent;     /* wall ms the request was sent: its deadline is later than sent + timeout */
    int agent;
    int n;
    char **ins;
} s_comb_t;

typedef struct {
    int agent;
    char *id;
    int64_t end_wall, timeout, wall, settled_at;
    char *kind, *outcome, *value;
} s_await_rec_t;

typedef struct {
    int64_t at;
    char what[16];
    int agent;
    long ms; /* recovered: how long re-replication took after the mesh converged */
    char how[16]; /* split: two-way, one-way-out, one-way-in */
} s_event_t;

static s_rec_t **s_races;
static size_t s_nraces, s_capraces;
static s_comb_t **s_combs;
static size_t s_ncombs, s_capcombs;
static s_chain_t *s_chains;
static size_t s_nchains, s_capchains;
static s_await_rec_t *s_awaits;
static size_t s_nawaits, s_capawaits;
static s_event_t *s_events;
static size_t s_nevents, s_capevents;
static long s_stale, s_stale_examples_n;
/* Requests the load sent that are not acknowledgements in the log:
 * settle attempts (try, probe, race) and failed creates/thens. */
static long s_attempts;
static char s_stale_examples[3][200];

#define S_PUSH(arr, n, cap)                                                                        \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            (cap) = (cap) ? 2 * (cap) : 1024;                                                      \
            (arr) = realloc((arr), (cap) * sizeof *(arr));                                         \
        }                                                                                          \
    } while (0)

static int
s_parse_state(const char *op)
{
    if (!strcmp(op, "resolve") || !strcmp(op, "resolved"))
        return PM_STATE_RESOLVED;
    if (!strcmp(op, "reject") || !strcmp(op, "rejected"))
        return PM_STATE_REJECTED;
    if (!strcmp(op, "cancel") || !strcmp(op, "canceled"))
        return PM_STATE_CANCELED;
    return pm_state_parse(op);
}

static int
s_load_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "chaos check: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[16384];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *fld[12] = {0};
        int n = 0;
        for (char *save = NULL, *t = strtok_r(line, " ", &save); t && n < 12;
             t = strtok_r(NULL, " ", &save))
            fld[n++] = t;
        if (n < 4)
            continue;
        int64_t wall = strtoll(fld[0], NULL, 10);
        int agent = atoi(fld[1]);
        const char *op = fld[2];
        if (!strcmp(op, "try") || !strcmp(op, "probe") || !strcmp(op, "race") ||
            !strcmp(op, "err"))
            s_attempts++;
        if (!strcmp(op, "create") && n >= 5) {
            s_rec_t *r = s_rec(fld[3]);
            r->acked = 1;
            r->timeout = strtoll(fld[4], NULL, 10);
            r->acked_at = wall;
        } else if (!strcmp(op, "then") && n >= 6) {
            s_rec_t *r = s_rec(fld[5]);
            r->acked = 1;
            r->acked_at = wall;
            r->then_src = strdup(fld[3]);
            if (n >= 7)
                r->on_reject = strdup(fld[6]);
        } else if (!strcmp(op, "combine") && n >= 8) {
            s_rec_t *r = s_rec(fld[4]);
            s_comb_t *c = calloc(1, sizeof *c);
            c->id = r->id;
            c->kind = pm_combinator_parse(fld[3]);
            c->timeout = strtoll(fld[5], NULL, 10);
            c->sent = strtoll(fld[6], NULL, 10);
            c->agent = agent;
            for (char *save = NULL, *t = strtok_r(fld[7], ",", &save); t;
                 t = strtok_r(NULL, ",", &save)) {
                c->ins = realloc(c->ins, (size_t) (c->n + 1) * sizeof *c->ins);
                c->ins[c->n++] = strdup(t);
            }
            r->acked = 1;
            r->acked_at = wall;
            r->comb = c;
            S_PUSH(s_combs, s_ncombs, s_capcombs);
            s_combs[s_ncombs++] = c;
        } else if (!strcmp(op, "try") && n >= 6) {
            s_rec_t *r = s_rec(fld[4]);
            r->try_state = s_parse_state(fld[3]);
            free(r->try_value);
            r->try_value = strdup(fld[5]);
        } else if ((!strcmp(op, "resolve") || !strcmp(op, "reject") || !strcmp(op, "cancel")) &&
                   n >= 5) {
            s_rec_t *r = s_rec(fld[3]);
            int st = s_parse_state(op);
            if (!r->ack_state) {
                r->ack_state = st;
                r->ack_value = strdup(fld[4]);
                r->ack_wall = wall;
            } else if (!s_same_outcome(r->ack_state, r->ack_value, st, fld[4])) {
                r->ack_conflict = 1;
                snprintf(r->conflict_desc, sizeof r->conflict_desc, "%s %s then %s %s (via n%d)",
                         pm_state_name(r->ack_state), r->ack_value, pm_state_name(st), fld[4],
                         agent);
            }
        } else if (!strcmp(op, "race") && n >= 6) {
            s_rec_t *r = s_rec(fld[4]);
            if (r->race < 2)
                r->race_value[r->race++] = strdup(fld[5]);
            if (n >= 7 && strcmp(fld[6], "any"))
                r->race_split = 1;
        } else if (!strcmp(op, "raced") && n >= 5) {
            s_rec_t *r = s_rec(fld[3]);
            r->race_acked = atoi(fld[4]);
            S_PUSH(s_races, s_nraces, s_capraces);
            s_races[s_nraces++] = r;
        } else if ((!strcmp(op, "chain") || !strcmp(op, "catchchain")) && n >= 7) {
            S_PUSH(s_chains, s_nchains, s_capchains);
            s_chain_t *c = &s_chains[s_nchains++];
            c->catch_ = !strcmp(op, "catchchain");
            c->head = strdup(fld[3]);
            c->end = strdup(fld[4]);
            c->len = atoi(fld[5]);
            c->input = strdup(fld[6]);
        } else if (!strcmp(op, "await") && n >= 10) {
            S_PUSH(s_awaits, s_nawaits, s_capawaits);
            s_await_rec_t *w = &s_awaits[s_nawaits++];
            w->agent = agent;
            w->id = strdup(fld[3]);
            w->end_wall = wall;
            w->timeout = strtoll(fld[4], NULL, 10);
            w->wall = strtoll(fld[5], NULL, 10);
            w->settled_at = strtoll(fld[6], NULL, 10);
            w->kind = strdup(fld[7]);
            w->outcome = strdup(fld[8]);
            w->value = strdup(fld[9]);
        } else if (!strcmp(op, "stale")) {
            s_stale++;
            if (s_stale_examples_n < 3)
                snprintf(s_stale_examples[s_stale_examples_n++], 200, "%s read %s via n%d at %s",
                         fld[3], n > 4 ? fld[4] : "?", agent, fld[0]);
        }
    }
    fclose(f);
    return 0;
}

static int
s_load_events(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        s_event_t e = {0};
        if (sscanf(line, "%" SCNd64 " %15s %d %ld", &e.at, e.what, &e.agent, &e.ms) < 3)
            continue;
        if (!strcmp(e.what, "split"))
            sscanf(line, "%*s %*s %*d %15s", e.how);
        S_PUSH(s_events, s_nevents, s_capevents);
        s_events[s_nevents++] = e;
    }
    fclose(f);
    return 0;
}

/* Whether agent k was stopped (SIGSTOP) at any moment of [from, to]. */
static int
s_stopped_during(int k, int64_t from, int64_t to)
{
    int64_t stop_at = -1;
    for (size_t i = 0; i < s_nevents; i++) {
        s_event_t *e = &s_events[i];
        if (e->agent != k)
            continue;
        if (!strcmp(e->what, "stop"))
            stop_at = e->at;
        else if (!strcmp(e->what, "cont") && stop_at >= 0) {
            if (stop_at <= to && e->at >= from)
                return 1;
            stop_at = -1;
        }
    }
    return stop_at >= 0 && stop_at <= to;
}

/* Whether a split was in force (part of the mesh cut off) at any moment of
 * [from, to]: an await may then miss a settle made on the other side. */
static int
s_split_during(int64_t from, int64_t to)
{
    /* Splits may overlap (scripts/chaos --overlap): in force from the first
     * split until as many heals as splits. */
    int64_t split_at = -1;
    int depth = 0;
    for (size_t i = 0; i < s_nevents; i++) {
        s_event_t *e = &s_events[i];
        if (!strcmp(e->what, "split")) {
            if (depth++ == 0)
                split_at = e->at;
        } else if (!strcmp(e->what, "heal") && depth > 0 && --depth == 0) {
            if (split_at <= to && e->at >= from)
                return 1;
            split_at = -1;
        }
    }
    return depth > 0 && split_at <= to;
}

/* ---- combinators: what their inputs determine ---------------------------- */

/* Reverses s_esc into out (NUL-terminated). */
static void
s_unesc(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    if (!strcmp(in, "-")) {
        out[0] = 0;
        return;
    }
    for (size_t i = 0; in[i] && o + 1 < cap; i++) {
        unsigned v;
        if (in[i] == '%' && sscanf(in + i + 1, "%2x", &v) == 1) {
            out[o++] = (char) v;
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = 0;
}

static int
s_failed(int state)
{
    return state == PM_STATE_REJECTED || state == PM_STATE_CANCELED || state == PM_STATE_TIMEDOUT;
}

/* One input of a combinator as it reads back (single assignment: what the
 * combinator must have heard). 1 when it is known (read, settled): *st, *data
 * and *at, the wall ms by which it was certainly settled (its acknowledged
 * settle, or its own deadline when nobody settled it; INT64_MAX when we
 * cannot tell, e.g. a then target). 0 when unknown (never acknowledged,
 * unreadable, pending). */
static int
s_input(const char *id, int *st, const char **data, int64_t *at)
{
    s_rec_t *r = zhashx_lookup(s_recs, id);
    if (!r || !r->acked || r->read_err != PM_OK || r->read_state <= PM_STATE_PENDING)
        return 0;
    *st = r->read_state;
    *data = r->read_value ? r->read_value : "";
    if (r->ack_state)
        *at = r->ack_wall;
    else if (r->timeout && r->read_state == PM_STATE_TIMEDOUT && !r->try_state)
        *at = r->acked_at + r->timeout;
    else
        *at = INT64_MAX;
    return 1;
}

/* Reads every input of c: how many are unknown (st[i] 0, data[i] NULL for
 * those; st/data/at filled for the others); -1 when c has too many inputs
 * to judge. */
static int
s_comb_read(const s_comb_t *c, int *st, const char **data, int64_t *at)
{
    if (c->n > S_COMB_MAX)
        return -1;
    int unknown = 0;
    for (int i = 0; i < c->n; i++)
        if (!s_input(c->ins[i], &st[i], &data[i], &at[i])) {
            st[i] = 0;
            data[i] = NULL;
            at[i] = INT64_MAX;
            unknown++;
        }
    return unknown;
}

/* Reads every input of c: 1 when all are known (st/data/at filled). */
static int
s_comb_inputs(const s_comb_t *c, int *st, const char **data, int64_t *at)
{
    return s_comb_read(c, st, data, at) == 0;
}

/* By when (wall ms) the inputs certainly decided c, INT64_MAX if we cannot
 * tell: all: the first failure, else the last resolve; any: the first
 * resolve, else the last failure; race: the first settle; all-settled: the
 * last settle. Also, with a timeout of its own, its deadline (at the latest
 * sent + timeout + 1 s: a create takes less). */
static int64_t
s_comb_decided(const s_comb_t *c, const int *st, const int64_t *at)
{
    int64_t first_fail = INT64_MAX, first_ok = INT64_MAX, first = INT64_MAX, last = 0;
    int nfail = 0, nok = 0;
    for (int i = 0; i < c->n; i++) {
        if (at[i] < first)
            first = at[i];
        if (at[i] > last)
            last = at[i];
        if (s_failed(st[i])) {
            nfail++;
            if (at[i] < first_fail)
                first_fail = at[i];
        } else {
            nok++;
            if (at[i] < first_ok)
                first_ok = at[i];
        }
    }
    int64_t d = INT64_MAX;
    switch (c->kind) {
    case PM_COMBINE_ALL:
        d = nfail ? first_fail : last;
        break;
    case PM_COMBINE_ANY:
        d = nok ? first_ok : last;
        break;
    case PM_COMBINE_RACE:
        d = first;
        break;
    default:
        d = last;
        break;
    }
    if (c->timeout && c->sent + c->timeout + 1000 < d)
        d = c->sent + c->timeout + 1000;
    return d;
}

/* Whether c reading (state, value) is what its inputs (st, data) determine
 * (proto/PROTOCOL.md 5a). 0 with why filled when it is not. An input not
 * known (st[i] 0: never acknowledged, unreadable, pending) may have been
 * heard as anything (even NOT_FOUND as a rejection): only the known ones are
 * held to what they read. A combinator with a timeout of its own may also
 * read timed out (when is judged apart). */
static int
s_comb_judge(const s_comb_t *c, const int *st, const char **data, int state, const char *value,
             char *why, size_t cap)
{
    return pm_comb_judge(c->kind, c->n, (const char *const *) c->ins, c->timeout != 0, st, data,
                         state, value, why, cap);
}

/* Inputs of c as text for a report: "ID=state:data,..." (bounded). */
static const char *
s_comb_desc(const s_comb_t *c, const int *st, const char **data, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < c->n && o + 1 < cap; i++)
        o += (size_t) snprintf(buf + o, cap - o, "%s%s=%s:%.40s", i ? "," : "", c->ins[i],
                               st && st[i] ? pm_state_name(st[i]) : "?",
                               data && data[i] ? data[i] : "?");
    return buf;
}

/* Whether a hit (kill, stop, split, etcd kill) was in force or happened at
 * any moment of [from, to]: a combinator may then hear late. */
static int
s_hit_during(int64_t from, int64_t to)
{
    for (size_t i = 0; i < s_nevents; i++) {
        s_event_t *e = &s_events[i];
        if ((!strcmp(e->what, "kill") || !strcmp(e->what, "stop") ||
             !strcmp(e->what, "etcdkill")) &&
            e->at <= to && e->at >= from)
            return 1;
    }
    for (int k = 1; k <= S_MAX_AGENTS; k++)
        if (s_stopped_during(k, from, to))
            return 1;
    return s_split_during(from, to);
}

/* Whether a read of r can be taken as final. */
static int
s_settled_expected(const s_rec_t *r, int64_t now)
{
    if (r->ack_state)
        return 1;
    if (r->comb) {
        int st[S_COMB_MAX];
        const char *data[S_COMB_MAX];
        int64_t at[S_COMB_MAX];
        if (s_comb_inputs(r->comb, st, data, at))
            return 1;
        return r->comb->timeout && r->comb->sent + r->comb->timeout + 3000 < now;
    }
    if (r->timeout && r->acked_at + r->timeout + 3000 < now && !r->try_state)
        return 1;
    if (r->then_src) {
        s_rec_t *src = zhashx_lookup(s_recs, r->then_src);
        if (src && src->read_err == PM_OK && src->read_state > PM_STATE_PENDING)
            return 1;
    }
    return 0;
}

typedef struct {
    pm_client_t *c[S_MAX_AGENTS];
    int n;
} s_readers_t;

/* Reads the promises in todo[0..n) through agent k's client, pipelined. */
static void
s_read_batch(s_readers_t *rd, int k, s_rec_t **todo, size_t n)
{
    pm_client_t *c = rd->c[k];
    uint64_t *reqs = calloc(n, sizeof *reqs);
    size_t sent = 0;
    for (; sent < n; sent++) {
        todo[sent]->read_err = PM_ERR_UNREACHABLE;
        if (pm_send_get(c, todo[sent]->id, &reqs[sent]) != PM_OK)
            break;
    }
    size_t got = 0;
    int64_t limit = s_mono_ms() + 15000;
    while (got < sent && s_mono_ms() < limit) {
        pm_result_t *res = NULL;
        int rc = pm_recv(c, 1000, &res);
        if (rc == PM_ERR_WAIT_TIMEOUT)
            continue;
        if (rc != PM_OK) {
            pm_client_destroy(&rd->c[k]);
            break;
        }
        /* Request ids grow by one step per request on this client. */
        size_t i = (size_t) ((res->req_id - reqs[0]) >> 4);
        if (i < sent && reqs[i] == res->req_id) {
            s_rec_t *r = todo[i];
            r->read_err = res->err;
            free(r->read_value);
            r->read_value = NULL;
            if (res->err == PM_OK && res->promise) {
                r->read_state = res->promise->state;
                const char *v = r->read_state == PM_STATE_RESOLVED ? (const char *) res->promise->value
                                                                  : res->promise->reason;
                r->read_value = strdup(v ? v : "");
            }
            got++;
        }
        pm_result_destroy(&res);
    }
    free(reqs);
}

static void
s_read_all(s_readers_t *rd, int64_t wait_ms)
{
    int64_t deadline = s_mono_ms() + wait_ms;
    s_rec_t **todo = malloc((s_nrec ? s_nrec : 1) * sizeof *todo);
    int round = 0;
    uint64_t rng = 42;
    for (;;) {
        size_t n = 0;
        for (size_t i = 0; i < s_nrec; i++)
            if (s_order[i]->acked && !s_order[i]->final)
                todo[n++] = s_order[i];
        if (!n)
            break;
        for (int k = 0; k < rd->n; k++)
            if (!rd->c[k])
                pm_client_connect(s_socks[k], &rd->c[k]);
        /* Unread until a reply says otherwise (no agent may answer at all). */
        for (size_t i = 0; i < n; i++) {
            todo[i]->read_err = PM_ERR_UNREACHABLE;
            todo[i]->read_state = 0;
        }
        for (size_t off = 0; off < n; off += 512) {
            int k = -1;
            for (int t = 0; t < 4 * rd->n && k < 0; t++) {
                int cand = (int) s_below(&rng, rd->n);
                if (rd->c[cand])
                    k = cand;
            }
            if (k < 0)
                break;
            s_read_batch(rd, k, todo + off, n - off < 512 ? n - off : 512);
        }
        int64_t now = s_wall_ms();
        int last = s_mono_ms() >= deadline;
        size_t open = 0;
        for (size_t i = 0; i < n; i++) {
            s_rec_t *r = todo[i];
            int ok = r->read_err == PM_OK &&
                     (r->read_state != PM_STATE_PENDING || !s_settled_expected(r, now));
            if (ok || last)
                r->final = 1;
            else
                open++;
        }
        round++;
        if (!open || last)
            break;
        fprintf(stderr, "chaos check: round %d: %zu promise(s) not readable or still pending; "
                "reading them again\n", round, open);
        s_sleep_ms(1000);
    }
    free(todo);
}

typedef struct {
    long n;
    char ex[3][400];
} s_count_t;

static void
s_count(s_count_t *c, const char *fmt, ...)
{
    if (c->n < 3) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->ex[c->n], sizeof c->ex[c->n], fmt, ap);
        va_end(ap);
    }
    c->n++;
}

static void
s_print_count(const char *name, const s_count_t *c, int invariant)
{
    printf("  %-52s %8ld%s\n", name, c->n, invariant ? (c->n ? "   BROKEN" : "   ok") : "");
    for (long i = 0; i < c->n && i < 3; i++)
        if (c->ex[i][0])
            printf("      e.g. %s\n", c->ex[i]);
}

static const char *
s_read_desc(const s_rec_t *r, char *buf, size_t cap)
{
    if (r->read_err != PM_OK)
        snprintf(buf, cap, "%s", pm_err_name(r->read_err));
    else
        snprintf(buf, cap, "%s %s", pm_state_name(r->read_state),
                 r->read_value && *r->read_value ? r->read_value : "-");
    return buf;
}

/* Functions the workers ran per target (S_RAN_* bits), from their logs. */
#define S_RAN_INC 1
#define S_RAN_FIX 2
#define S_RAN_TAG 4
#define S_RAN_TAGFIX 8
static zhashx_t *s_ran;

static int
s_ran_on(const char *target)
{
    return s_ran ? (int) (intptr_t) zhashx_lookup(s_ran, target) : 0;
}

/* Worker invocation logs: invocations and targets invoked more than once;
 * fills s_ran. */
static void
s_count_invocations(char **files, int n, long *invocations, long *targets, long *reruns)
{
    zhashx_t *seen = zhashx_new();
    s_ran = zhashx_new();
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "r");
        if (!f)
            continue;
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            char inv[256], target[256], fn[64] = "inc";
            if (sscanf(line, "%*s inv %255s %255s %*s %*s %*s %*s %63s", inv, target, fn) < 2)
                continue;
            (*invocations)++;
            int bits = s_ran_on(target) | (!strcmp(fn, "fix")      ? S_RAN_FIX
                                            : !strcmp(fn, "tag")    ? S_RAN_TAG
                                            : !strcmp(fn, "tagfix") ? S_RAN_TAGFIX
                                                                    : S_RAN_INC);
            zhashx_update(s_ran, target, (void *) (intptr_t) bits);
            if (zhashx_lookup(seen, target))
                (*reruns)++;
            else {
                zhashx_insert(seen, target, (void *) 1);
                (*targets)++;
            }
        }
        fclose(f);
    }
    zhashx_destroy(&seen);
}

static int
s_check_main(const char *log, const char *events, char **inv_files, int ninv, int replicas,
             int64_t read_wait_ms)
{
    s_recs = zhashx_new();
    if (s_load_log(log) != 0)
        return 2;
    if (events)
        s_load_events(events);
    s_readers_t rd = {.n = s_nsocks};
    s_read_all(&rd, read_wait_ms);
    long invocations = 0, targets = 0, reruns = 0;
    s_count_invocations(inv_files, ninv, &invocations, &targets, &reruns);

    s_count_t lost_settle = {0}, two_outcomes = {0}, lost_create = {0}, stuck = {0},
              wrong_chain = {0}, outlived = {0}, missed = {0}, deadline = {0}, unreadable = {0},
              exempt = {0}, chain_wait_timeout = {0};
    s_count_t comb_lost = {0}, comb_wrong = {0}, comb_two = {0}, comb_stuck = {0},
              comb_late = {0}, comb_missed = {0}, catch_wrong = {0}, comb_then_wrong = {0};
    long comb_thens = 0, comb_then_tag = 0, comb_then_fix = 0, comb_then_unjudged = 0,
         comb_then_both = 0;
    long acked_creates = 0, acked_thens = 0, acked_settles = 0, link_ok = 0, link_failed = 0;
    long comb_judged = 0, comb_unjudged = 0, comb_partly = 0, comb_by_state[6] = {0}, catches = 0,
         catch_handled = 0, catch_main = 0;
    int64_t check_wall = s_wall_ms();
    char b1[512], b2[1024];
    for (size_t i = 0; i < s_nrec; i++) {
        s_rec_t *r = s_order[i];
        const char *rd_s = s_read_desc(r, b1, sizeof b1);
        if (r->comb) {
            /* A combinator: never lost; reads what its inputs determine; not
             * pending once they decided it or its own deadline passed. */
            s_comb_t *c = r->comb;
            int st[S_COMB_MAX];
            const char *data[S_COMB_MAX];
            int64_t at[S_COMB_MAX];
            if (r->read_err == PM_ERR_NOT_FOUND ||
                (r->read_err == PM_ERR_OWNER_LOST && replicas >= 2)) {
                s_count(&comb_lost, "%s (%s via n%d at %" PRId64 "): reads %s", r->id,
                        pm_combinator_name(c->kind), c->agent, r->acked_at, rd_s);
                continue;
            }
            if (r->read_err != PM_OK) {
                s_count(&unreadable, "%s: %s", r->id, rd_s);
                continue;
            }
            if (r->read_state >= PM_STATE_PENDING && r->read_state <= PM_STATE_TIMEDOUT)
                comb_by_state[r->read_state]++;
            char why[128];
            int unknown = s_comb_read(c, st, data, at);
            if (unknown != 0) {
                /* Some input unknown: it may have been heard as anything;
                 * the known ones still bind the outcome. */
                if (unknown > 0 && r->read_state > PM_STATE_PENDING) {
                    comb_partly++;
                    if (!s_comb_judge(c, st, data, r->read_state, r->read_value, why, sizeof why))
                        s_count(&comb_wrong, "%s = %s(%s) reads %s: %s", r->id,
                                pm_combinator_name(c->kind),
                                s_comb_desc(c, st, data, b2, sizeof b2), rd_s, why);
                } else {
                    comb_unjudged++;
                }
                if (r->read_state == PM_STATE_PENDING && c->timeout &&
                    c->sent + c->timeout + 3000 < check_wall)
                    s_count(&comb_stuck, "%s (%s, timeout %" PRId64 " ms, sent at %" PRId64
                            "): still pending long after its own deadline", r->id,
                            pm_combinator_name(c->kind), c->timeout, c->sent);
                continue;
            }
            comb_judged++;
            int64_t decided = s_comb_decided(c, st, at);
            if (r->read_state == PM_STATE_PENDING) {
                s_count(&comb_stuck, "%s = %s(%s): every input settled, still pending", r->id,
                        pm_combinator_name(c->kind), s_comb_desc(c, st, data, b2, sizeof b2));
            } else if (!s_comb_judge(c, st, data, r->read_state, r->read_value, why,
                                     sizeof why)) {
                s_count(&comb_wrong, "%s = %s(%s) reads %s: %s", r->id,
                        pm_combinator_name(c->kind), s_comb_desc(c, st, data, b2, sizeof b2),
                        rd_s, why);
            } else if (r->read_state == PM_STATE_TIMEDOUT && decided != INT64_MAX &&
                       decided + S_MISSED_MARGIN_MS < c->sent + c->timeout) {
                /* Its own deadline came although the inputs decided it a
                 * second or more before: it did not hear them in time. */
                if (s_hit_during(decided - 10000, c->sent + c->timeout))
                    s_count(&exempt, "%s: decided at %" PRId64 ", timed out at ~%" PRId64
                            "; a hit meanwhile", r->id, decided, c->sent + c->timeout);
                else
                    s_count(&comb_late, "%s = %s(%s): decided by its inputs at %" PRId64
                            ", timed out by its own deadline ~%" PRId64, r->id,
                            pm_combinator_name(c->kind), s_comb_desc(c, st, data, b2, sizeof b2),
                            decided, c->sent + c->timeout);
            }
            continue;
        }
        if (r->acked && !r->then_src)
            acked_creates++;
        if (r->then_src)
            acked_thens++;
        if (r->ack_state)
            acked_settles++;
        if (r->ack_conflict)
            s_count(&two_outcomes, "%s: acknowledged %s", r->id, r->conflict_desc);
        if (r->ack_state) {
            if (r->read_err != PM_OK || r->read_state == PM_STATE_PENDING) {
                if (r->read_err == PM_ERR_OWNER_LOST && replicas < 2)
                    s_count(&unreadable, "%s: %s (R=1)", r->id, rd_s);
                else
                    s_count(&lost_settle, "%s: acknowledged %s %s at %" PRId64 ", reads %s",
                            r->id, pm_state_name(r->ack_state), r->ack_value, r->ack_wall, rd_s);
            } else if (!r->ack_conflict && /* counted once per promise */
                       !s_same_outcome(r->ack_state, r->ack_value, r->read_state,
                                       r->read_value)) {
                s_count(&two_outcomes, "%s: acknowledged %s %s, reads %s", r->id,
                        pm_state_name(r->ack_state), r->ack_value, rd_s);
            }
            continue;
        }
        if (!r->acked)
            continue;
        if (r->read_err == PM_ERR_NOT_FOUND ||
            (r->read_err == PM_ERR_OWNER_LOST && replicas >= 2)) {
            s_count(&lost_create, "%s: acknowledged %s at %" PRId64 ", reads %s", r->id,
                    r->then_src ? "then" : "create", r->acked_at, rd_s);
            continue;
        }
        if (r->read_err != PM_OK) {
            s_count(&unreadable, "%s: %s", r->id, rd_s);
            continue;
        }
        if (r->then_src) {
            s_rec_t *src = zhashx_lookup(s_recs, r->then_src);
            if (src && src->comb) {
                /* then(C, tag, on_reject tagfix) on a combinator (early
                 * starts, issue 15): its function may have started on the
                 * inputs' tentative outcomes, but the target must read tag
                 * on C's final value ("tag:" + value), or tagfix on C's
                 * final reason when C failed ("fix:" + reason). */
                int st[S_COMB_MAX];
                const char *data[S_COMB_MAX];
                int64_t at[S_COMB_MAX];
                comb_thens++;
                int ran = s_ran_on(r->id);
                comb_then_both += (ran & S_RAN_TAG) && (ran & S_RAN_TAGFIX);
                if (src->read_err != PM_OK || src->read_state == PM_STATE_PENDING ||
                    s_comb_read(src->comb, st, data, at) != 0) {
                    /* C unreadable or pending (judged by its own checks), or
                     * an input of C not known: C may have heard anything. */
                    comb_then_unjudged++;
                    continue;
                }
                int failed = s_failed(src->read_state);
                const char *sv = src->read_value ? src->read_value : "";
                size_t wl = strlen(sv) + 5;
                char *want = malloc(wl);
                snprintf(want, wl, "%s%s", failed ? "fix:" : "tag:", sv);
                if (r->read_state == PM_STATE_PENDING) {
                    s_count(&stuck, "%s = then(%s, tag, on_reject tagfix): the combinator reads "
                            "%s, target still pending", r->id, src->id,
                            s_read_desc(src, b2, sizeof b2));
                } else if (r->read_state == PM_STATE_RESOLVED && r->read_value &&
                           !strcmp(r->read_value, want)) {
                    if (failed)
                        comb_then_fix++;
                    else
                        comb_then_tag++;
                } else {
                    s_count(&comb_then_wrong, "%s = then(%s, tag, on_reject tagfix) reads %s, "
                            "expected resolved %.80s (%s on the combinator's final %s)", r->id,
                            src->id, rd_s, want, failed ? "tagfix" : "tag",
                            s_read_desc(src, b2, sizeof b2));
                }
                free(want);
                continue;
            }
            catches += r->on_reject != NULL;
            if (!src || src->read_err != PM_OK)
                continue; /* judged through its source's own checks */
            if (src->read_state == PM_STATE_PENDING)
                continue; /* the source was never settled: nothing to run yet */
            if (r->on_reject && s_failed(src->read_state)) {
                /* then(p, inc, on_reject = fix) on a failed p: fix runs on
                 * p's reason ("e<N>" gives 2N), never inc. */
                char want[64];
                int wl = s_fix(src->read_value ? src->read_value : "", want, sizeof want);
                int ran = s_ran_on(r->id);
                if (ran & S_RAN_INC) {
                    catch_main++;
                    s_count(&catch_wrong, "%s = then(%s, inc, on_reject %s): the worker ran inc "
                            "although %s reads %s", r->id, src->id, r->on_reject, src->id,
                            s_read_desc(src, b2, sizeof b2));
                } else if (r->read_state == PM_STATE_PENDING) {
                    s_count(&stuck, "%s = then(%s, inc, on_reject %s): source reads %s, target "
                            "still pending", r->id, src->id, r->on_reject,
                            s_read_desc(src, b2, sizeof b2));
                } else if (wl >= 0 && r->read_state == PM_STATE_RESOLVED &&
                           !strcmp(r->read_value, want)) {
                    catch_handled++;
                } else if (r->read_state == PM_STATE_REJECTED && r->read_value &&
                           strstr(r->read_value, "not a number")) {
                    catch_main++;
                    s_count(&catch_wrong, "%s = then(%s, inc, on_reject %s) reads %s: the main "
                            "function ran on %s's failure", r->id, src->id, r->on_reject, rd_s,
                            src->id);
                } else {
                    s_count(&catch_wrong, "%s = then(%s, inc, on_reject %s) reads %s, expected "
                            "resolved %s (the handler on %s's reason)", r->id, src->id,
                            r->on_reject, rd_s, wl >= 0 ? want : "?", src->id);
                }
                continue;
            }
            if (r->on_reject && (s_ran_on(r->id) & S_RAN_FIX))
                s_count(&catch_wrong, "%s = then(%s, inc, on_reject %s): the worker ran the "
                        "handler although %s reads %s", r->id, src->id, r->on_reject, src->id,
                        s_read_desc(src, b2, sizeof b2));
            if (r->read_state == PM_STATE_PENDING) {
                s_count(&stuck, "%s = then(%s, inc): source reads %s, target still pending",
                        r->id, src->id, s_read_desc(src, b1, sizeof b1));
            } else if (src->read_state == PM_STATE_RESOLVED &&
                       r->read_state == PM_STATE_RESOLVED) {
                char want[64];
                snprintf(want, sizeof want, "%lld", strtoll(src->read_value, NULL, 10) + 1);
                if (strcmp(want, r->read_value))
                    s_count(&wrong_chain, "%s = then(%s = %s, inc) reads %s, expected %s", r->id,
                            src->id, src->read_value, r->read_value, want);
                else
                    link_ok++;
            } else if (src->read_state != PM_STATE_RESOLVED &&
                       r->read_state == PM_STATE_RESOLVED) {
                s_count(&wrong_chain, "%s = then(%s, inc) resolved (%s) although %s is %s", r->id,
                        src->id, r->read_value, src->id, pm_state_name(src->read_state));
            } else {
                link_failed++;
            }
            continue;
        }
        if (r->race) {
            /* Nobody's resolve was acknowledged: it may read pending, or
             * either raced value (one may have been applied unacknowledged). */
            int sent = r->read_state == PM_STATE_PENDING;
            for (int v = 0; v < r->race && !sent; v++)
                sent = s_same_outcome(PM_STATE_RESOLVED, r->race_value[v], r->read_state,
                                      r->read_value);
            if (!sent)
                s_count(&two_outcomes, "%s: raced %s / %s, none acknowledged, reads %s", r->id,
                        r->race_value[0], r->race > 1 ? r->race_value[1] : "-", b1);
            continue;
        }
        if (r->try_state && r->read_state != PM_STATE_PENDING &&
            !s_same_outcome(r->try_state, r->try_value, r->read_state, r->read_value) &&
            !(r->timeout && r->read_state == PM_STATE_TIMEDOUT)) {
            s_count(&two_outcomes, "%s: only %s %s was ever sent, reads %s", r->id,
                    pm_state_name(r->try_state), r->try_value, b1);
        }
        if (!r->try_state && r->read_state != PM_STATE_PENDING &&
            r->read_state != PM_STATE_TIMEDOUT) {
            s_count(&two_outcomes, "%s: never settled by anyone, reads %s", r->id, b1);
        }
        if (r->timeout && !r->try_state && r->read_state == PM_STATE_PENDING)
            s_count(&deadline, "%s: created at %" PRId64 " with timeout %" PRId64
                    " ms, still pending", r->id, r->acked_at, r->timeout);
    }
    /* Chains end to end. */
    long chains_done = 0, chains_failed = 0, chains_pending = 0, catch_chains_done = 0;
    for (size_t i = 0; i < s_nchains; i++) {
        s_chain_t *c = &s_chains[i];
        s_rec_t *e = zhashx_lookup(s_recs, c->end);
        if (!e || e->read_err != PM_OK) {
            chains_pending++;
            continue;
        }
        if (c->catch_) {
            /* then(p, inc, on_reject = fix), then(.., inc)...: p rejected
             * with e<N> ends at 2N + length - 1, resolved with N at N +
             * length; it never fails. */
            int rej = c->input[0] == 'e';
            char want[64];
            snprintf(want, sizeof want, "%lld",
                     rej ? 2 * strtoll(c->input + 1, NULL, 10) + c->len - 1
                         : strtoll(c->input, NULL, 10) + c->len);
            if (e->read_state == PM_STATE_PENDING) {
                chains_pending++;
                s_count(&stuck, "on-reject chain %s..%s (%d links, input %s): end still pending",
                        c->head, c->end, c->len, c->input);
            } else if (e->read_state == PM_STATE_RESOLVED && !strcmp(want, e->read_value)) {
                chains_done++;
                catch_chains_done += rej;
            } else {
                s_count(&wrong_chain, "on-reject chain %s..%s (%d links, %s %s) reads %s, "
                        "expected resolved %s", c->head, c->end, c->len,
                        rej ? "head rejected" : "head resolved", c->input,
                        s_read_desc(e, b1, sizeof b1), want);
            }
            continue;
        }
        if (e->read_state == PM_STATE_RESOLVED && strcmp(c->input, "reject")) {
            char want[64];
            snprintf(want, sizeof want, "%lld", strtoll(c->input, NULL, 10) + c->len);
            if (!strcmp(want, e->read_value))
                chains_done++;
            else
                s_count(&wrong_chain, "chain %s..%s (%d links, input %s) ended with %s", c->head,
                        c->end, c->len, c->input, e->read_value);
        } else if (e->read_state == PM_STATE_PENDING) {
            chains_pending++;
            s_count(&stuck, "chain %s..%s (%d links, input %s): end still pending", c->head,
                    c->end, c->len, c->input);
        } else if (e->read_state == PM_STATE_RESOLVED) {
            s_count(&wrong_chain, "chain %s..%s: head rejected, end resolved %s", c->head, c->end,
                    e->read_value);
        } else {
            chains_failed++;
        }
    }
    /* Awaits. */
    long awaits_value = 0, awaits_timeout = 0, awaits_other = 0, comb_awaits = 0;
    for (size_t i = 0; i < s_nawaits; i++) {
        s_await_rec_t *w = &s_awaits[i];
        int is_chain = !strcmp(w->kind, "chain");
        if (w->wall > w->timeout + S_AWAIT_SLACK_MS) {
            if (s_stopped_during(w->agent, w->end_wall - w->wall, w->end_wall))
                s_count(&exempt, "%s via n%d: %" PRId64 " ms for a %" PRId64
                        " ms await; n%d was stopped meanwhile", w->id, w->agent, w->wall,
                        w->timeout, w->agent);
            else
                s_count(&outlived, "%s via n%d: %s after %" PRId64 " ms, timeout %" PRId64 " ms",
                        w->id, w->agent, w->outcome, w->wall, w->timeout);
        }
        if (!strcmp(w->kind, "fanin")) {
            /* An await on a combinator: the outcome it got is the one that
             * reads back; it does not time out once the combinator was
             * decided (by its inputs or its own deadline) a second before. */
            comb_awaits++;
            s_rec_t *r = zhashx_lookup(s_recs, w->id);
            s_comb_t *c = r ? r->comb : NULL;
            int ost = s_parse_state(w->outcome);
            if (!strcmp(w->outcome, "WAIT_TIMEOUT")) {
                awaits_timeout++;
                int st[S_COMB_MAX];
                const char *data[S_COMB_MAX];
                int64_t at[S_COMB_MAX], decided = INT64_MAX;
                if (c && s_comb_inputs(c, st, data, at))
                    decided = s_comb_decided(c, st, at);
                else if (c && c->timeout)
                    decided = c->sent + c->timeout + 1000;
                int64_t start = w->end_wall - w->wall;
                if (decided != INT64_MAX && decided + S_MISSED_MARGIN_MS < start + w->timeout) {
                    if (s_stopped_during(w->agent, decided, w->end_wall) ||
                        s_split_during(decided, w->end_wall))
                        s_count(&exempt, "%s via n%d: combinator decided at %" PRId64
                                ", await timed out at %" PRId64 "; stopped / split meanwhile",
                                w->id, w->agent, decided, w->end_wall);
                    else
                        s_count(&comb_missed, "%s via n%d: combinator decided at %" PRId64
                                " (+%" PRId64 " ms), await timed out at +%" PRId64
                                " ms (timeout %" PRId64 ")", w->id, w->agent, decided,
                                decided - start, w->wall, w->timeout);
                }
            } else if (ost >= PM_STATE_RESOLVED) {
                awaits_value++;
                char got[4096];
                s_unesc(w->value, got, sizeof got);
                if (r && r->read_err == PM_OK && r->read_state > PM_STATE_PENDING &&
                    !(ost == r->read_state && !strcmp(got, r->read_value ? r->read_value : "")))
                    s_count(&comb_two, "%s via n%d: an await got %s %.200s, reads %s", w->id,
                            w->agent, w->outcome, got, s_read_desc(r, b2, sizeof b2));
            } else {
                awaits_other++;
            }
            continue;
        }
        if (!strcmp(w->outcome, "WAIT_TIMEOUT")) {
            awaits_timeout++;
            if (is_chain)
                s_count(&chain_wait_timeout, "%s via n%d: chain end still pending after %" PRId64
                        " ms", w->id, w->agent, w->wall);
            else if (w->settled_at >= 0 && w->settled_at < w->timeout - S_MISSED_MARGIN_MS) {
                /* An agent that was stopped after the settle could not hear
                 * of it: nobody can answer its await then. */
                int64_t start = w->end_wall - w->wall;
                if (s_stopped_during(w->agent, start + w->settled_at, w->end_wall))
                    s_count(&exempt, "%s via n%d: settle acknowledged at +%" PRId64
                            " ms, await timed out at +%" PRId64 " ms; n%d was stopped meanwhile",
                            w->id, w->agent, w->settled_at, w->wall, w->agent);
                else if (s_split_during(start + w->settled_at, w->end_wall))
                    s_count(&exempt, "%s via n%d: settle acknowledged at +%" PRId64
                            " ms, await timed out at +%" PRId64 " ms; the mesh was split "
                            "meanwhile", w->id, w->agent, w->settled_at, w->wall);
                else
                    s_count(&missed, "%s via n%d: settle acknowledged at +%" PRId64
                            " ms, await timed out at +%" PRId64 " ms (timeout %" PRId64 ")",
                            w->id, w->agent, w->settled_at, w->wall, w->timeout);
            }
        } else if (!strcmp(w->outcome, "resolved") || !strcmp(w->outcome, "rejected")) {
            awaits_value++;
            s_rec_t *r = zhashx_lookup(s_recs, w->id);
            if (r && r->ack_state &&
                !s_same_outcome(r->ack_state, r->ack_value, s_parse_state(w->outcome), w->value))
                s_count(&two_outcomes, "%s: acknowledged %s %s, an await got %s %s", r->id,
                        pm_state_name(r->ack_state), r->ack_value, w->outcome, w->value);
        } else {
            awaits_other++;
        }
    }
    long kills = 0, stops = 0, crashes = 0, unconverged = 0, unrecovered = 0;
    long recoveries = 0, recover_max = 0, splits = 0, splits_two = 0, splits_one = 0;
    long etcd_kills = 0;
    for (size_t i = 0; i < s_nevents; i++) {
        if (!strcmp(s_events[i].what, "split")) {
            splits++;
            if (!strncmp(s_events[i].how, "one-way", 7))
                splits_one++;
            else
                splits_two++;
        }
        etcd_kills += !strcmp(s_events[i].what, "etcdkill");
        kills += !strcmp(s_events[i].what, "kill");
        stops += !strcmp(s_events[i].what, "stop");
        crashes += !strcmp(s_events[i].what, "crash");
        unconverged += !strcmp(s_events[i].what, "noconverge");
        unrecovered += !strcmp(s_events[i].what, "norecover");
        if (!strcmp(s_events[i].what, "recovered")) {
            recoveries++;
            if (s_events[i].ms > recover_max)
                recover_max = s_events[i].ms;
        }
    }
    /* Races: how many of the two resolves were acknowledged. */
    long races_split = 0, races_one = 0, races_none = 0, races_two = 0;
    for (size_t i = 0; i < s_nraces; i++) {
        s_rec_t *r = s_races[i];
        races_split += r->race_split;
        if (r->race_acked >= 2)
            races_two++; /* also counted under two outcomes when the values differ */
        else if (r->race_acked == 1)
            races_one++;
        else
            races_none++;
    }

    printf("chaos report\n");
    printf(" operations acknowledged\n");
    printf("  %-52s %8ld\n", "creates", acked_creates);
    printf("  %-52s %8ld\n", "thens", acked_thens);
    printf("  %-52s %8ld\n", "settles (resolve/reject/cancel)", acked_settles);
    printf("  %-52s %8zu\n", "awaits ended", s_nawaits);
    printf("  %-52s %8ld\n", "  with the promise settled", awaits_value);
    printf("  %-52s %8ld\n", "  with WAIT_TIMEOUT", awaits_timeout);
    printf("  %-52s %8ld\n", "  with another typed error (UNREACHABLE, ...)", awaits_other);
    printf("  %-52s %8zu\n", "combinators", s_ncombs);
    printf("  %-52s %8ld\n", "total", acked_creates + acked_thens + (long) s_ncombs +
                                          acked_settles + (long) s_nawaits);
    printf("  %-52s %8zu\n", "promises read back", s_nrec);
    printf("  %-52s %8ld\n", "chains fully acknowledged", (long) s_nchains);
    printf("  %-52s %8ld\n", "  completed with the right value", chains_done);
    printf("  %-52s %8ld\n", "  failed with a typed error", chains_failed);
    printf("  %-52s %8ld\n", "continuation links that ran (source + 1)", link_ok);
    printf("  %-52s %8ld\n", "continuation links that propagated a failure", link_failed);
    printf("  %-52s %8ld\n", "thens with on_reject (then ID inc --on-reject fix)", catches);
    printf("  %-52s %8ld\n", "  source failed, handler ran with its reason", catch_handled);
    printf("  %-52s %8ld\n", "  on-reject chains completed after a rejected head",
           catch_chains_done);
    printf("  %-52s %8ld\n", "thens on combinators (then C tag --on-reject tagfix)",
           comb_thens);
    printf("  %-52s %8ld\n", "  combinator resolved, tag ran on its value", comb_then_tag);
    printf("  %-52s %8ld\n", "  combinator failed, tagfix ran on its reason", comb_then_fix);
    printf("  %-52s %8ld\n", "  not judged (combinator or an input not known)",
           comb_then_unjudged);
    printf("  %-52s %8zu\n", "combinators (all/any/race/all-settled)", s_ncombs);
    printf("  %-52s %8ld\n", "  judged (every input read settled)", comb_judged);
    printf("  %-52s %8ld\n", "  judged in part (settled; some input not known)",
           comb_partly);
    printf("  %-52s %8ld\n", "  not judged (pending; some input not known)", comb_unjudged);
    printf("  %-52s %8ld / %ld / %ld / %ld\n", "  read resolved / rejected / canceled / timed out",
           comb_by_state[PM_STATE_RESOLVED], comb_by_state[PM_STATE_REJECTED],
           comb_by_state[PM_STATE_CANCELED], comb_by_state[PM_STATE_TIMEDOUT]);
    printf("  %-52s %8ld\n", "  awaits on combinators ended", comb_awaits);
    if (s_nraces) {
        printf("  %-52s %8zu\n", "races (one promise, two resolves at once)", s_nraces);
        printf("  %-52s %8ld\n", "  one resolve on each side of a split", races_split);
        printf("  %-52s %8ld\n", "  exactly one resolve acknowledged", races_one);
        printf("  %-52s %8ld\n", "  none acknowledged", races_none);
        printf("  %-52s %8ld%s\n", "  both acknowledged (two outcomes)", races_two,
               races_two ? "   BROKEN" : "");
    }
    printf("  %-52s %8ld\n", "worker invocations", invocations);
    printf("  %-52s %8ld\n", "  ran again (at-least-once)", reruns);
    printf(" chaos\n");
    printf("  %-52s %8ld\n", "agents killed (SIGKILL) and restarted", kills);
    printf("  %-52s %8ld\n", "agents paused (SIGSTOP/SIGCONT)", stops);
    printf("  %-52s %8ld\n", "partitions (a minority of 1-2 cut off, healed)", splits);
    printf("  %-52s %8ld\n", "  two-way (moved to another bridge)", splits_two);
    printf("  %-52s %8ld\n", "  one-way (one direction dropped)", splits_one);
    printf("  %-52s %8ld\n", "coordination store (etcd) killed and restarted", etcd_kills);
    printf("  %-52s %8ld\n", "hits after which the mesh did not converge in 30 s", unconverged);
    printf("  %-52s %8ld\n", "hits after which backups were complete again", recoveries);
    printf("  %-52s %8ld\n", "  longest wait for that after convergence (ms)", recover_max);
    printf(" invariants\n");
    s_print_count("acknowledged settles lost", &lost_settle, 1);
    s_print_count("promises with two different outcomes", &two_outcomes, 1);
    s_print_count("acknowledged creates/thens lost", &lost_create, 1);
    s_print_count("chains neither completed nor failed (stuck)", &stuck, 1);
    s_print_count("chains/continuations with a wrong result", &wrong_chain, 1);
    s_print_count("awaits that outlived their timeout (+2 s)", &outlived, 1);
    s_print_count("awaits that missed an acknowledged settle", &missed, 1);
    s_print_count("deadlines that never fired", &deadline, 1);
    s_print_count("agents that exited on their own", &(s_count_t){.n = crashes}, 1);
    s_print_count("hits after which backups were incomplete for 20 s",
                  &(s_count_t){.n = unrecovered}, 1);
    s_print_count("acknowledged promises no live agent can read", &unreadable, 1);
    s_print_count("acknowledged combinators lost", &comb_lost, 1);
    s_print_count("combinators reading what their inputs do not give", &comb_wrong, 1);
    s_print_count("combinators with two outcomes (await vs read)", &comb_two, 1);
    s_print_count("combinators decided, still pending (hung)", &comb_stuck, 1);
    s_print_count("combinators timed out although decided in time", &comb_late, 1);
    s_print_count("awaits on combinators that missed their outcome", &comb_missed, 1);
    s_print_count("on-reject thens that ran inc, or not fix", &catch_wrong, 1);
    s_print_count("thens on combinators that ran on another outcome", &comb_then_wrong, 1);
    printf(" for information\n");
    s_print_count("reads right after an acked settle that missed it", &(s_count_t){.n = s_stale},
                  0);
    for (long i = 0; i < s_stale_examples_n; i++)
        printf("      e.g. %s\n", s_stale_examples[i]);
    s_print_count("chain awaits that timed out (chain slow)", &chain_wait_timeout, 0);
    s_print_count("awaits excused: own agent stopped / mesh split", &exempt, 0);
    s_print_count("thens on combinators where both tag and tagfix ran",
                  &(s_count_t){.n = comb_then_both}, 0);
    long broken = lost_settle.n + two_outcomes.n + lost_create.n + stuck.n + wrong_chain.n +
                  outlived.n + missed.n + deadline.n + crashes + unreadable.n + comb_lost.n +
                  comb_wrong.n + comb_two.n + comb_stuck.n + comb_late.n + comb_missed.n +
                  catch_wrong.n + comb_then_wrong.n;
    /* The figures of issue 11 on one line: requests sent (acknowledged
     * creates, thens and awaits, settle attempts, failed creates/thens),
     * acknowledged, lost, conflicting, hung; and the hits. */
    printf("summary: operations %ld, acknowledged %ld, lost %ld, conflicting %ld, hung %ld, "
           "splits %ld, kills %ld, stops %ld, etcd kills %ld\n",
           acked_creates + acked_thens + (long) s_ncombs + (long) s_nawaits + s_attempts,
           acked_creates + acked_thens + (long) s_ncombs + acked_settles + (long) s_nawaits,
           lost_settle.n + lost_create.n + comb_lost.n,
           two_outcomes.n + comb_wrong.n + comb_two.n + catch_main + comb_then_wrong.n,
           stuck.n + outlived.n + comb_stuck.n, splits, kills, stops, etcd_kills);
    printf("result: %s (%ld broken invariant instance(s))\n", broken ? "FAIL" : "PASS", broken);
    for (int k = 0; k < rd.n; k++)
        pm_client_destroy(&rd.c[k]);
    return broken ? 1 : 0;
}

/* ================================================================== main */

static void
s_usage(void)
{
    fprintf(stderr,
            "usage: chaos_load worker --socket S --log FILE [--delay-ms N] [--seed N] "
            "[--wrong-tag N]\n"
            "       chaos_load load --sockets S1,S2,.. --log FILE [--duration-ms N] "
            "[--threads N] [--seed N] [--race-pct P] [--sides FILE]\n"
            "                       [--only settle|await|chain|fanin|catch|deadline|race]\n"
            "       chaos_load check --sockets S1,.. --log FILE [--events FILE] [--inv FILE]... "
            "[--replicas R] [--read-wait-ms N]\n");
    exit(64);
}

int
main(int argc, char **argv)
{
    if (argc < 2)
        s_usage();
    const char *cmd = argv[1], *sock = NULL, *log = NULL, *events = NULL;
    char *inv[S_MAX_AGENTS];
    int ninv = 0, threads = 8, delay_ms = 30, replicas = 2;
    int64_t duration_ms = 60000, read_wait_ms = 60000;
    uint64_t seed = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            s_usage();
        if (!strcmp(a, "--socket"))
            sock = v;
        else if (!strcmp(a, "--sockets"))
            s_nsocks = s_split_sockets(v, s_socks, S_MAX_AGENTS);
        else if (!strcmp(a, "--log"))
            log = v;
        else if (!strcmp(a, "--events"))
            events = v;
        else if (!strcmp(a, "--inv") && ninv < S_MAX_AGENTS)
            inv[ninv++] = (char *) v;
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--wrong-tag"))
            s_wrong_tag = atoi(v);
        else if (!strcmp(a, "--delay-ms"))
            delay_ms = atoi(v);
        else if (!strcmp(a, "--replicas"))
            replicas = atoi(v);
        else if (!strcmp(a, "--duration-ms"))
            duration_ms = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--read-wait-ms"))
            read_wait_ms = strtoll(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--race-pct"))
            s_race_pct = atoi(v);
        else if (!strcmp(a, "--sides"))
            s_sides_file = v;
        else if (!strcmp(a, "--only") && s_scenario_named(NULL, v) == 0)
            s_only = v;
        else
            s_usage();
        i++;
    }
    signal(SIGTERM, s_on_signal);
    signal(SIGINT, s_on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(cmd, "check")) {
        if (!log || !s_nsocks)
            s_usage();
        return s_check_main(log, events, inv, ninv, replicas, read_wait_ms);
    }
    if (!log)
        s_usage();
    s_log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (s_log_fd < 0) {
        fprintf(stderr, "chaos_load: cannot open %s: %s\n", log, strerror(errno));
        return 1;
    }
    if (!strcmp(cmd, "worker")) {
        if (!sock)
            s_usage();
        return s_worker_main(sock, delay_ms, seed);
    }
    if (!strcmp(cmd, "load")) {
        if (!s_nsocks || threads < 1)
            s_usage();
        return s_load_main(threads, duration_ms, seed);
    }
    s_usage();
    return 64;
}
