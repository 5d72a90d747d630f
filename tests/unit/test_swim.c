/*
 * test_swim.c - SWIM membership (mesh/swim.c) in a simulated network.
 *
 * N pm_swim_t instances share one virtual clock and one message queue with
 * per-message latency, random loss, partitions, per-node inbound delay and
 * outbound blocking. Nodes can be killed (stop answering, forever), paused
 * (messages held, no ticks, then delivered on resume, like SIGSTOP/SIGCONT)
 * and restarted. Every event each node reports is logged with its time, so
 * the tests check what every member believed and when.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "swim.h"

#define MAXN 40
#define NEVER UINT64_MAX

typedef struct sim sim_t;

typedef struct {
    sim_t *sim;
    int id;
    pm_swim_t *swim;
    char name[16];
    char ep[40];
    bool up;               /* false: killed, drops everything */
    uint64_t paused_until; /* paused while now < paused_until */
    bool out_blocked;      /* everything it sends is lost */
    uint32_t in_delay;     /* extra latency on everything it receives */
    int group;             /* partition side */
} node_t;

typedef struct {
    uint64_t at;
    uint64_t order;
    int to;
    pm_swim_msg_t msg; /* deep copy */
} qmsg_t;

typedef struct {
    uint64_t at;
    int observer;
    pm_swim_event_t ev;
    char name[16];
    uint64_t inc;
} logev_t;

struct sim {
    node_t nodes[MAXN];
    int n;
    pm_swim_config_t cfg;
    uint64_t now;
    uint64_t order;
    uint64_t rng;
    qmsg_t **heap;
    size_t heap_n, heap_cap;
    double loss;
    bool partitioned;
    logev_t *log;
    size_t log_n, log_cap;
    /* sees every message sent, before loss */
    void (*tap)(sim_t *sim, int from, int to, const pm_swim_msg_t *msg);
    int tap_hits;
    int tap_total;
    uint64_t tap_base;
    /* may rewrite the copy in flight (strings stay owned by the copy) */
    void (*mangle)(sim_t *sim, int from, int to, pm_swim_msg_t *copy);
};

/* ------------------------------------------------------------- utilities */

static uint64_t
sim_rand(sim_t *sim)
{
    uint64_t z = (sim->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double
sim_rand01(sim_t *sim)
{
    return (double) (sim_rand(sim) >> 11) / (double) (1ULL << 53);
}

static char *
xstrdup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static qmsg_t *
qmsg_copy(const pm_swim_msg_t *m)
{
    qmsg_t *q = calloc(1, sizeof *q);
    q->msg = *m;
    q->msg.from_name = strdup(m->from_name);
    q->msg.from_endpoint = strdup(m->from_endpoint);
    q->msg.target_name = xstrdup_or_null(m->target_name);
    q->msg.target_endpoint = xstrdup_or_null(m->target_endpoint);
    if (m->update_count) {
        pm_swim_update_t *u = calloc(m->update_count, sizeof *u);
        for (size_t i = 0; i < m->update_count; i++) {
            u[i] = m->updates[i];
            u[i].name = strdup(m->updates[i].name);
            u[i].endpoint = strdup(m->updates[i].endpoint);
            u[i].from = xstrdup_or_null(m->updates[i].from);
            if (m->updates[i].meta_len) {
                uint8_t *meta = malloc(m->updates[i].meta_len);
                memcpy(meta, m->updates[i].meta, m->updates[i].meta_len);
                u[i].meta = meta;
            }
        }
        q->msg.updates = u;
    }
    return q;
}

static void
qmsg_free(qmsg_t *q)
{
    free((void *) q->msg.from_name);
    free((void *) q->msg.from_endpoint);
    free((void *) q->msg.target_name);
    free((void *) q->msg.target_endpoint);
    for (size_t i = 0; i < q->msg.update_count; i++) {
        free((void *) q->msg.updates[i].name);
        free((void *) q->msg.updates[i].endpoint);
        free((void *) q->msg.updates[i].from);
        free((void *) q->msg.updates[i].meta);
    }
    free((void *) q->msg.updates);
    free(q);
}

static bool
q_before(const qmsg_t *a, const qmsg_t *b)
{
    return a->at < b->at || (a->at == b->at && a->order < b->order);
}

static void
heap_push(sim_t *sim, qmsg_t *q)
{
    if (sim->heap_n == sim->heap_cap) {
        sim->heap_cap = sim->heap_cap ? sim->heap_cap * 2 : 256;
        sim->heap = realloc(sim->heap, sim->heap_cap * sizeof *sim->heap);
    }
    q->order = sim->order++;
    size_t i = sim->heap_n++;
    while (i > 0 && q_before(q, sim->heap[(i - 1) / 2])) {
        sim->heap[i] = sim->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    sim->heap[i] = q;
}

static qmsg_t *
heap_pop(sim_t *sim)
{
    qmsg_t *top = sim->heap[0];
    qmsg_t *last = sim->heap[--sim->heap_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= sim->heap_n)
            break;
        if (c + 1 < sim->heap_n && q_before(sim->heap[c + 1], sim->heap[c]))
            c++;
        if (!q_before(sim->heap[c], last))
            break;
        sim->heap[i] = sim->heap[c];
        i = c;
    }
    if (sim->heap_n)
        sim->heap[i] = last;
    return top;
}

static int
sim_find_ep(const sim_t *sim, const char *ep)
{
    for (int i = 0; i < sim->n; i++)
        if (strcmp(sim->nodes[i].ep, ep) == 0)
            return i;
    return -1;
}

static void
sim_send(const char *endpoint, const pm_swim_msg_t *msg, void *arg)
{
    node_t *from = arg;
    sim_t *sim = from->sim;
    int to = sim_find_ep(sim, endpoint);
    /* The message must name its sender correctly: a check on swim.c. */
    assert_string_equal(msg->from_name, from->name);
    assert_string_equal(msg->from_endpoint, from->ep);
    assert_int_equal(msg->from_incarnation, pm_swim_incarnation(from->swim));
    if (to >= 0 && sim->tap)
        sim->tap(sim, from->id, to, msg);
    if (to < 0 || from->out_blocked)
        return;
    if (sim->partitioned && sim->nodes[to].group != from->group)
        return;
    if (sim->loss > 0 && sim_rand01(sim) < sim->loss)
        return;
    qmsg_t *q = qmsg_copy(msg);
    if (sim->mangle)
        sim->mangle(sim, from->id, to, &q->msg);
    q->to = to;
    q->at = sim->now + 1 + sim_rand(sim) % 3 + sim->nodes[to].in_delay;
    heap_push(sim, q);
}

static void
sim_event(pm_swim_event_t ev, const pm_swim_member_t *m, void *arg)
{
    node_t *node = arg;
    sim_t *sim = node->sim;
    assert_false(m->is_self);
    if (sim->log_n == sim->log_cap) {
        sim->log_cap = sim->log_cap ? sim->log_cap * 2 : 1024;
        sim->log = realloc(sim->log, sim->log_cap * sizeof *sim->log);
    }
    logev_t *e = &sim->log[sim->log_n++];
    e->at = sim->now;
    e->observer = node->id;
    e->ev = ev;
    snprintf(e->name, sizeof e->name, "%s", m->name);
    e->inc = m->incarnation;
}

static void
sim_start_node(sim_t *sim, int i, uint64_t seed)
{
    node_t *node = &sim->nodes[i];
    node->swim = pm_swim_new(node->name, node->ep, &sim->cfg, seed, sim_send, sim_event, node);
    assert_non_null(node->swim);
    node->up = true;
    node->paused_until = 0;
    /* Everyone is told about two seeds (nodes 0 and 1); a seed skips itself. */
    assert_int_equal(pm_swim_join(node->swim, sim->nodes[0].ep, sim->now), 0);
    if (sim->n > 1)
        assert_int_equal(pm_swim_join(node->swim, sim->nodes[1].ep, sim->now), 0);
}

static sim_t *
sim_new_cfg(int n, uint64_t seed, const pm_swim_config_t *cfg)
{
    assert_true(n <= MAXN);
    sim_t *sim = calloc(1, sizeof *sim);
    sim->n = n;
    sim->rng = seed * 7919 + 17;
    if (cfg)
        sim->cfg = *cfg;
    else
        pm_swim_config_defaults(&sim->cfg);
    for (int i = 0; i < n; i++) {
        sim->nodes[i].sim = sim;
        sim->nodes[i].id = i;
        snprintf(sim->nodes[i].name, sizeof sim->nodes[i].name, "n%d", i);
        snprintf(sim->nodes[i].ep, sizeof sim->nodes[i].ep, "tcp://10.0.0.%d:7946", i);
    }
    for (int i = 0; i < n; i++)
        sim_start_node(sim, i, seed * 1000 + (uint64_t) i);
    return sim;
}

static sim_t *
sim_new(int n, uint64_t seed)
{
    return sim_new_cfg(n, seed, NULL);
}

static void
sim_destroy(sim_t **sim_p)
{
    sim_t *sim = *sim_p;
    for (int i = 0; i < sim->n; i++) {
        pm_swim_destroy(&sim->nodes[i].swim);
        assert_null(sim->nodes[i].swim);
    }
    while (sim->heap_n)
        qmsg_free(heap_pop(sim));
    free(sim->heap);
    free(sim->log);
    free(sim);
    *sim_p = NULL;
}

static bool
sim_running(const sim_t *sim, int i)
{
    return sim->nodes[i].up && sim->nodes[i].paused_until <= sim->now;
}

/* Runs the network until virtual time `until`, ticking each instance exactly
 * when its pm_swim_next_deadline says. */
static void
sim_run(sim_t *sim, uint64_t until)
{
    uint64_t last = NEVER;
    int spins = 0;
    for (;;) {
        uint64_t next = NEVER;
        if (sim->heap_n)
            next = sim->heap[0]->at;
        for (int i = 0; i < sim->n; i++) {
            node_t *node = &sim->nodes[i];
            if (!node->up)
                continue;
            if (node->paused_until > sim->now) {
                next = node->paused_until < next ? node->paused_until : next;
                continue;
            }
            uint64_t d = pm_swim_next_deadline(node->swim);
            if (d < sim->now)
                d = sim->now;
            next = d < next ? d : next;
        }
        if (next > until) {
            sim->now = until;
            return;
        }
        /* A deadline that stays due after a tick would spin the agent's
         * reactor: that is a bug in swim.c. */
        if (next == last)
            assert_true(++spins < 1000);
        else
            spins = 0;
        last = next;
        sim->now = next;
        while (sim->heap_n && sim->heap[0]->at <= sim->now) {
            qmsg_t *q = heap_pop(sim);
            node_t *to = &sim->nodes[q->to];
            if (to->up && to->paused_until > sim->now) {
                q->at = to->paused_until;
                heap_push(sim, q);
                continue;
            }
            if (to->up)
                pm_swim_receive(to->swim, &q->msg, sim->now);
            qmsg_free(q);
        }
        for (int i = 0; i < sim->n; i++)
            if (sim_running(sim, i) && pm_swim_next_deadline(sim->nodes[i].swim) <= sim->now)
                pm_swim_tick(sim->nodes[i].swim, sim->now);
    }
}

static void
sim_advance(sim_t *sim, uint64_t ms)
{
    sim_run(sim, sim->now + ms);
}

/* State of `name` as node i sees it; 0 if unknown. */
static int
sim_state(const sim_t *sim, int i, const char *name)
{
    pm_swim_member_t m;
    if (pm_swim_lookup(sim->nodes[i].swim, name, &m) != 0)
        return 0;
    return m.state;
}

/* Every running node sees exactly the running nodes, all alive. */
static bool
sim_converged(const sim_t *sim)
{
    size_t live = 0;
    for (int j = 0; j < sim->n; j++)
        if (sim->nodes[j].up)
            live++;
    for (int i = 0; i < sim->n; i++) {
        if (!sim_running(sim, i))
            continue;
        if (pm_swim_count(sim->nodes[i].swim, PM_SWIM_ALIVE) != live)
            return false;
        for (int j = 0; j < sim->n; j++)
            if (sim->nodes[j].up && sim_state(sim, i, sim->nodes[j].name) != PM_SWIM_ALIVE)
                return false;
    }
    return true;
}

/* Runs until converged; returns the virtual time it took, or NEVER. */
static uint64_t
sim_converge(sim_t *sim, uint64_t limit_ms)
{
    uint64_t start = sim->now;
    while (sim->now - start <= limit_ms) {
        if (sim_converged(sim))
            return sim->now - start;
        sim_advance(sim, 10);
    }
    return NEVER;
}

/* Does every running node other than `skip` see `name` in `state`? */
static bool
sim_all_see(const sim_t *sim, const char *name, int state, int skip)
{
    for (int i = 0; i < sim->n; i++)
        if (i != skip && sim_running(sim, i) && sim_state(sim, i, name) != state)
            return false;
    return true;
}

static size_t
sim_count_events(const sim_t *sim, pm_swim_event_t ev, const char *name, uint64_t since)
{
    size_t n = 0;
    for (size_t i = 0; i < sim->log_n; i++)
        if (sim->log[i].ev == ev && sim->log[i].at >= since &&
            (name == NULL || strcmp(sim->log[i].name, name) == 0))
            n++;
    return n;
}

static uint64_t
sim_first_event(const sim_t *sim, int observer, pm_swim_event_t ev, const char *name,
                uint64_t since)
{
    for (size_t i = 0; i < sim->log_n; i++)
        if (sim->log[i].observer == observer && sim->log[i].ev == ev && sim->log[i].at >= since &&
            strcmp(sim->log[i].name, name) == 0)
            return sim->log[i].at;
    return NEVER;
}

static pm_swim_stats_t
sim_stats(const sim_t *sim, int i)
{
    pm_swim_stats_t st;
    pm_swim_stats(sim->nodes[i].swim, &st);
    return st;
}

static uint64_t
sim_sent_total(const sim_t *sim, int i)
{
    pm_swim_stats_t st = sim_stats(sim, i);
    uint64_t n = 0;
    for (int t = 0; t < PM_SWIM_MSG_TYPES; t++)
        n += st.sent[t];
    return n;
}

static uint64_t
sim_inc_seen(const sim_t *sim, int observer, const char *name)
{
    pm_swim_member_t m;
    assert_int_equal(pm_swim_lookup(sim->nodes[observer].swim, name, &m), 0);
    return m.incarnation;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

/* Buddy system as a property: every ping to a member the sender holds
 * suspect carries that suspicion. Reads the sender's view (const calls are
 * allowed from a callback). */
static void
tap_ping_to_suspect(sim_t *sim, int from, int to, const pm_swim_msg_t *msg)
{
    (void) to;
    if (msg->type != PM_SWIM_MSG_PING || sim->nodes[from].paused_until > sim->now)
        return;
    pm_swim_member_t target;
    if (pm_swim_lookup(sim->nodes[from].swim, msg->target_name, &target) != 0 ||
        target.state != PM_SWIM_SUSPECT)
        return;
    sim->tap_total++;
    for (size_t i = 0; i < msg->update_count; i++)
        if (strcmp(msg->updates[i].name, target.name) == 0 &&
            msg->updates[i].state == PM_SWIM_SUSPECT &&
            msg->updates[i].incarnation == target.incarnation) {
            sim->tap_hits++;
            return;
        }
}

/* ------------------------------------------------------------- tests */

static void
test_api(void **state)
{
    (void) state;
    pm_swim_config_t cfg;
    pm_swim_config_defaults(&cfg);
    const char *why = "x";
    assert_int_equal(pm_swim_config_check(&cfg, &why), 0);
    assert_null(why);
    cfg.probe_timeout_ms = cfg.probe_interval_ms;
    assert_int_equal(pm_swim_config_check(&cfg, &why), -1);
    assert_non_null(why);
    assert_null(pm_swim_new("a", "ep", &cfg, 1, sim_send, NULL, NULL));
    pm_swim_config_defaults(&cfg);
    cfg.piggyback_bytes = 100;
    assert_int_equal(pm_swim_config_check(&cfg, NULL), -1);

    assert_null(pm_swim_new("", "ep", NULL, 1, sim_send, NULL, NULL));
    assert_null(pm_swim_new("a", "", NULL, 1, sim_send, NULL, NULL));
    assert_null(pm_swim_new("a\nb", "ep", NULL, 1, sim_send, NULL, NULL));
    char big[PM_SWIM_NAME_MAX + 2];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_null(pm_swim_new(big, "ep", NULL, 1, sim_send, NULL, NULL));

    pm_swim_t *s = pm_swim_new("a", "ep-a", NULL, 1, sim_send, NULL, NULL);
    assert_non_null(s);
    assert_int_equal(pm_swim_next_deadline(s), 0);
    assert_int_equal(pm_swim_size(s), 1);
    pm_swim_member_t m;
    assert_int_equal(pm_swim_member_at(s, 0, &m), 0);
    assert_true(m.is_self);
    assert_string_equal(m.name, "a");
    assert_int_equal(m.state, PM_SWIM_ALIVE);
    assert_int_equal(pm_swim_member_at(s, 1, &m), -1);
    assert_int_equal(pm_swim_lookup(s, "nobody", &m), -1);
    assert_int_equal(pm_swim_count(s, PM_SWIM_ALIVE), 1);
    assert_int_equal(pm_swim_incarnation(s), 0);
    assert_int_equal(pm_swim_health(s), 0);
    assert_int_equal(pm_swim_probe_period(s), 200);

    static uint8_t meta[PM_SWIM_META_MAX + 1];
    assert_int_equal(pm_swim_set_meta(s, meta, sizeof meta, 0), -1);
    assert_int_equal(pm_swim_incarnation(s), 0);
    assert_int_equal(pm_swim_set_meta(s, "fn=x", 4, 0), 0);
    assert_int_equal(pm_swim_incarnation(s), 1);
    assert_int_equal(pm_swim_lookup(s, "a", &m), 0);
    assert_int_equal(m.meta_len, 4);
    assert_memory_equal(m.meta, "fn=x", 4);
    assert_int_equal(pm_swim_join(s, "", 0), -1);
    /* Alone, nothing to probe: ticking must not spin (deadline moves on). */
    pm_swim_tick(s, 0);
    assert_true(pm_swim_next_deadline(s) > 0);

    assert_string_equal(pm_swim_state_name(PM_SWIM_SUSPECT), "suspect");
    assert_string_equal(pm_swim_state_name(99), "unknown");
    assert_string_equal(pm_swim_msg_type_name(PM_SWIM_MSG_PING_REQ), "ping-req");
    assert_string_equal(pm_swim_msg_type_name(0), "unknown");
    assert_string_equal(pm_swim_event_name(PM_SWIM_EV_LEFT), "left");
    assert_string_equal(pm_swim_event_name(-1), "unknown");

    pm_swim_destroy(&s);
    assert_null(s);
    pm_swim_destroy(&s);
}

static void
check_converges(int n, uint64_t limit_ms)
{
    for (uint64_t seed = 1; seed <= 5; seed++) {
        sim_t *sim = sim_new(n, seed);
        uint64_t t = sim_converge(sim, limit_ms);
        if (t == NEVER)
            fail_msg("%d members did not converge within %llu ms (seed %llu)", n,
                     (unsigned long long) limit_ms, (unsigned long long) seed);
        /* and it stays converged, with no one ever suspected */
        sim_advance(sim, 5000);
        assert_true(sim_converged(sim));
        assert_int_equal(sim_count_events(sim, PM_SWIM_EV_SUSPECT, NULL, 0), 0);
        assert_int_equal(sim_count_events(sim, PM_SWIM_EV_JOINED, NULL, 0), (size_t) n * (n - 1));
        sim_destroy(&sim);
    }
}

static void
test_converge_3(void **state)
{
    (void) state;
    check_converges(3, 2000);
}

static void
test_converge_5(void **state)
{
    (void) state;
    check_converges(5, 2000);
}

static void
test_converge_32(void **state)
{
    (void) state;
    /* Gossip spreads in O(log N) rounds: 32 members in a few seconds. */
    check_converges(32, 5000);
}

/* The documented target (swim.c): 5 members, a killed member is dead at every
 * survivor within 1.5 s of the kill, p99. Measured over 500 seeded runs with
 * random kill times. */
static void
test_kill_detected_within_bound(void **state)
{
    (void) state;
    enum { TRIALS = 500, N = 5 };
    uint64_t det[TRIALS];
    for (int trial = 0; trial < TRIALS; trial++) {
        sim_t *sim = sim_new(N, 100 + (uint64_t) trial);
        assert_true(sim_converge(sim, 3000) != NEVER);
        sim_advance(sim, sim_rand(sim) % 2000);
        int victim = (int) (sim_rand(sim) % N);
        const char *vname = sim->nodes[victim].name;
        uint64_t t0 = sim->now;
        sim->nodes[victim].up = false;
        while (!sim_all_see(sim, vname, PM_SWIM_DEAD, victim) && sim->now - t0 < 10000)
            sim_advance(sim, 5);
        assert_true(sim_all_see(sim, vname, PM_SWIM_DEAD, victim));
        uint64_t worst = 0;
        for (int i = 0; i < N; i++) {
            if (i == victim)
                continue;
            uint64_t dead = sim_first_event(sim, i, PM_SWIM_EV_DEAD, vname, t0);
            assert_true(dead != NEVER);
            worst = dead - t0 > worst ? dead - t0 : worst;
        }
        /* suspected first, and nobody else was hurt */
        assert_true(sim_count_events(sim, PM_SWIM_EV_SUSPECT, vname, t0) > 0);
        assert_int_equal(sim_count_events(sim, PM_SWIM_EV_DEAD, NULL, 0), N - 1);
        det[trial] = worst;
        sim_destroy(&sim);
    }
    qsort(det, TRIALS, sizeof det[0], cmp_u64);
    uint64_t p50 = det[TRIALS / 2], p99 = det[(TRIALS * 99 + 99) / 100 - 1];
    print_message("kill -> dead at all 4 survivors: p50 %llu ms, p99 %llu ms, max %llu ms\n",
                  (unsigned long long) p50, (unsigned long long) p99,
                  (unsigned long long) det[TRIALS - 1]);
    assert_true(p99 <= 1500);
    assert_true(det[TRIALS - 1] <= 1700);
    /* Not instantaneous either: the suspicion phase must be there. */
    assert_true(det[0] >= 600);
}

static void
test_short_pause_not_dead(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 7);
    assert_true(sim_converge(sim, 3000) != NEVER);
    uint64_t t0 = sim->now;
    /* Pauses below the 600 ms suspicion minimum, at random points. */
    for (int round = 0; round < 40; round++) {
        int victim = (int) (sim_rand(sim) % 5);
        sim_advance(sim, sim_rand(sim) % 400);
        sim->nodes[victim].paused_until = sim->now + 500;
        sim_advance(sim, 3000);
    }
    /* The pauses were noticed (suspicions, refutations), yet nobody died. */
    assert_true(sim_count_events(sim, PM_SWIM_EV_SUSPECT, NULL, t0) > 0);
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_DEAD, NULL, t0), 0);
    uint64_t refutations = 0;
    for (int i = 0; i < 5; i++)
        refutations += sim_stats(sim, i).refutations;
    assert_true(refutations > 0);
    assert_true(sim_converge(sim, 2000) != NEVER);
    sim_destroy(&sim);
}

static void
test_long_pause_refutes(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 11);
    assert_true(sim_converge(sim, 3000) != NEVER);
    uint64_t inc0 = pm_swim_incarnation(sim->nodes[2].swim);
    sim->nodes[2].paused_until = sim->now + 4000;
    sim_advance(sim, 3900);
    assert_true(sim_all_see(sim, "n2", PM_SWIM_DEAD, 2));
    sim_advance(sim, 100); /* resumes: reads the backlog, learns it is dead */
    uint64_t resumed = sim->now;
    while (!sim_all_see(sim, "n2", PM_SWIM_ALIVE, 2) && sim->now - resumed < 3000)
        sim_advance(sim, 5);
    assert_true(sim_all_see(sim, "n2", PM_SWIM_ALIVE, 2));
    print_message("paused member back alive at all in %llu ms after resume\n",
                  (unsigned long long) (sim->now - resumed));
    assert_true(pm_swim_incarnation(sim->nodes[2].swim) > inc0);
    assert_true(sim_stats(sim, 2).refutations >= 1);
    for (int i = 0; i < 5; i++)
        if (i != 2) {
            assert_true(sim_inc_seen(sim, i, "n2") > inc0);
            assert_true(sim_first_event(sim, i, PM_SWIM_EV_ALIVE, "n2", resumed) != NEVER);
        }
    assert_true(sim_converge(sim, 3000) != NEVER);
    sim_destroy(&sim);
}

static void
test_forged_dead_refuted(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 13);
    assert_true(sim_converge(sim, 3000) != NEVER);
    uint64_t inc2 = pm_swim_incarnation(sim->nodes[2].swim);
    /* n3 (current incarnation, so not stale) "says" n2 is dead, to n1. */
    pm_swim_update_t forged = {
        .name = "n2",
        .endpoint = sim->nodes[2].ep,
        .incarnation = inc2,
        .state = PM_SWIM_DEAD,
        .from = "n3",
    };
    pm_swim_msg_t msg = {
        .type = PM_SWIM_MSG_GOSSIP,
        .from_name = "n3",
        .from_endpoint = sim->nodes[3].ep,
        .from_incarnation = pm_swim_incarnation(sim->nodes[3].swim),
        .update_count = 1,
        .updates = &forged,
    };
    uint64_t t0 = sim->now;
    assert_int_equal(pm_swim_receive(sim->nodes[1].swim, &msg, sim->now), 0);
    assert_int_equal(sim_state(sim, 1, "n2"), PM_SWIM_DEAD);
    while (!sim_all_see(sim, "n2", PM_SWIM_ALIVE, -1) && sim->now - t0 < 5000)
        sim_advance(sim, 5);
    assert_true(sim_all_see(sim, "n2", PM_SWIM_ALIVE, 2));
    assert_true(pm_swim_incarnation(sim->nodes[2].swim) > inc2);
    assert_true(sim_stats(sim, 2).refutations >= 1);
    print_message("forged death refuted everywhere in %llu ms\n",
                  (unsigned long long) (sim->now - t0));

    /* The same rumor delivered to the victim itself is refuted at once. */
    uint64_t inc = pm_swim_incarnation(sim->nodes[2].swim);
    forged.incarnation = inc;
    msg.from_incarnation = pm_swim_incarnation(sim->nodes[3].swim);
    uint64_t refuted = sim_stats(sim, 2).refutations;
    assert_int_equal(pm_swim_receive(sim->nodes[2].swim, &msg, sim->now), 0);
    assert_int_equal(pm_swim_incarnation(sim->nodes[2].swim), inc + 1);
    assert_int_equal(sim_stats(sim, 2).refutations, refuted + 1);
    pm_swim_member_t me;
    assert_int_equal(pm_swim_lookup(sim->nodes[2].swim, "n2", &me), 0);
    assert_int_equal(me.state, PM_SWIM_ALIVE);
    assert_true(sim_converge(sim, 3000) != NEVER);
    sim_destroy(&sim);
}

static void
test_stale_dropped(void **state)
{
    (void) state;
    sim_t *sim = sim_new(3, 17);
    assert_int_equal(pm_swim_set_meta(sim->nodes[1].swim, "a", 1, sim->now), 0);
    assert_int_equal(pm_swim_set_meta(sim->nodes[2].swim, "b", 1, sim->now), 0);
    assert_true(sim_converge(sim, 3000) != NEVER);
    sim_advance(sim, 2000);
    uint64_t inc1 = sim_inc_seen(sim, 0, "n1"), inc2 = sim_inc_seen(sim, 0, "n2");
    assert_true(inc1 >= 1 && inc2 >= 1);

    /* A ping from n1 at an older incarnation than n0 holds: dropped, no ack. */
    pm_swim_stats_t before = sim_stats(sim, 0);
    pm_swim_msg_t ping = {
        .type = PM_SWIM_MSG_PING,
        .from_name = "n1",
        .from_endpoint = sim->nodes[1].ep,
        .from_incarnation = inc1 - 1,
        .seq = 42,
        .target_name = "n0",
    };
    assert_int_equal(pm_swim_receive(sim->nodes[0].swim, &ping, sim->now), -1);
    pm_swim_stats_t after = sim_stats(sim, 0);
    assert_int_equal(after.dropped_stale, before.dropped_stale + 1);
    assert_int_equal(after.received[PM_SWIM_MSG_PING], before.received[PM_SWIM_MSG_PING]);
    assert_int_equal(after.sent[PM_SWIM_MSG_ACK], before.sent[PM_SWIM_MSG_ACK]);

    /* A current sender carrying a stale update about n2: the update is
     * ignored and counted, the message itself accepted. */
    pm_swim_update_t old = {
        .name = "n2", .endpoint = sim->nodes[2].ep, .incarnation = inc2 - 1, .state = PM_SWIM_DEAD};
    pm_swim_msg_t gossip = {
        .type = PM_SWIM_MSG_GOSSIP,
        .from_name = "n1",
        .from_endpoint = sim->nodes[1].ep,
        .from_incarnation = inc1,
        .update_count = 1,
        .updates = &old,
    };
    assert_int_equal(pm_swim_receive(sim->nodes[0].swim, &gossip, sim->now), 0);
    pm_swim_stats_t last = sim_stats(sim, 0);
    assert_int_equal(last.stale_updates, after.stale_updates + 1);
    assert_int_equal(last.received[PM_SWIM_MSG_GOSSIP], after.received[PM_SWIM_MSG_GOSSIP] + 1);
    assert_int_equal(sim_state(sim, 0, "n2"), PM_SWIM_ALIVE);
    assert_int_equal(sim_inc_seen(sim, 0, "n2"), inc2);
    sim_advance(sim, 2000);
    assert_true(sim_converged(sim));
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_DEAD, NULL, 0), 0);
    sim_destroy(&sim);
}

static void
test_validation(void **state)
{
    (void) state;
    sim_t *sim = sim_new(3, 19);
    assert_true(sim_converge(sim, 3000) != NEVER);
    pm_swim_t *s = sim->nodes[0].swim;
    uint64_t inc1 = sim_inc_seen(sim, 0, "n1");
    char longname[PM_SWIM_NAME_MAX + 2];
    memset(longname, 'y', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    static uint8_t bigmeta[PM_SWIM_META_MAX + 1];
    static pm_swim_update_t many[PM_SWIM_MAX_PIGGYBACK + 1];
    for (size_t i = 0; i < PM_SWIM_MAX_PIGGYBACK + 1; i++)
        many[i] = (pm_swim_update_t) {.name = "zz", .endpoint = "e", .state = PM_SWIM_ALIVE};

    pm_swim_update_t good = {.name = "new", .endpoint = "tcp://new", .state = PM_SWIM_ALIVE};
    const pm_swim_msg_t base = {
        .type = PM_SWIM_MSG_GOSSIP,
        .from_name = "n1",
        .from_endpoint = sim->nodes[1].ep,
        .from_incarnation = inc1,
        .update_count = 1,
        .updates = &good,
    };
    /* base is well-formed: prove it, on a copy of the world that we discard */
    pm_swim_update_t bad_u[8];
    pm_swim_msg_t bad[16];
    int nb = 0, nu = 0;
    bad[nb] = base, bad[nb++].type = 0;
    bad[nb] = base, bad[nb++].type = 99;
    bad[nb] = base, bad[nb++].from_name = "";
    bad[nb] = base, bad[nb++].from_name = NULL;
    bad[nb] = base, bad[nb++].from_name = longname;
    bad[nb] = base, bad[nb++].from_endpoint = "";
    bad[nb] = base, bad[nb++].from_name = "n1\x01";
    bad[nb] = base, bad[nb++].updates = NULL;
    bad[nb] = base, bad[nb].update_count = PM_SWIM_MAX_PIGGYBACK + 1, bad[nb++].updates = many;
    bad[nb] = base, bad[nb].type = PM_SWIM_MSG_PING_REQ, bad[nb++].target_name = "n2";
    bad_u[nu] = good, bad_u[nu].name = "";
    bad[nb] = base, bad[nb++].updates = &bad_u[nu++];
    bad_u[nu] = good, bad_u[nu].endpoint = NULL;
    bad[nb] = base, bad[nb++].updates = &bad_u[nu++];
    bad_u[nu] = good, bad_u[nu].state = 0;
    bad[nb] = base, bad[nb++].updates = &bad_u[nu++];
    bad_u[nu] = good, bad_u[nu].meta = bigmeta, bad_u[nu].meta_len = sizeof bigmeta;
    bad[nb] = base, bad[nb++].updates = &bad_u[nu++];
    bad_u[nu] = good, bad_u[nu].meta = NULL, bad_u[nu].meta_len = 3;
    bad[nb] = base, bad[nb++].updates = &bad_u[nu++];
    bad_u[nu] = good, bad_u[nu].from = longname;
    bad[nb] = base, bad[nb++].updates = &bad_u[nu++];

    size_t size = pm_swim_size(s);
    pm_swim_stats_t before = sim_stats(sim, 0);
    assert_int_equal(pm_swim_receive(s, NULL, sim->now), -1);
    for (int i = 0; i < nb; i++)
        assert_int_equal(pm_swim_receive(s, &bad[i], sim->now), -1);
    pm_swim_stats_t after = sim_stats(sim, 0);
    assert_int_equal(after.dropped_invalid, before.dropped_invalid + 1 + (uint64_t) nb);
    assert_int_equal(pm_swim_size(s), size);
    assert_int_equal(pm_swim_lookup(s, "new", &(pm_swim_member_t) {0}), -1);
    assert_int_equal(memcmp(after.sent, before.sent, sizeof after.sent), 0);

    /* Misdirected: a ping for someone else, and a message "from" ourselves. */
    pm_swim_msg_t ping = base;
    ping.type = PM_SWIM_MSG_PING;
    ping.target_name = "n9";
    assert_int_equal(pm_swim_receive(s, &ping, sim->now), -1);
    pm_swim_msg_t echo = base;
    echo.from_name = "n0";
    echo.from_endpoint = sim->nodes[0].ep;
    assert_int_equal(pm_swim_receive(s, &echo, sim->now), -1);
    assert_int_equal(sim_stats(sim, 0).dropped_misdirected, after.dropped_misdirected + 2);
    assert_int_equal(pm_swim_size(s), size);

    /* ...and the base message itself is accepted, which makes the above mean
     * something. */
    assert_int_equal(pm_swim_receive(s, &base, sim->now), 0);
    assert_int_equal(pm_swim_size(s), size + 1);
    sim_destroy(&sim);
}

static void
test_graceful_leave(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 23);
    assert_true(sim_converge(sim, 3000) != NEVER);
    uint64_t inc = pm_swim_incarnation(sim->nodes[3].swim);
    uint64_t t0 = sim->now;
    pm_swim_leave(sim->nodes[3].swim, sim->now);
    assert_true(pm_swim_incarnation(sim->nodes[3].swim) > inc);
    sim_advance(sim, 50);
    /* told directly: everyone knows within one hop */
    assert_true(sim_all_see(sim, "n3", PM_SWIM_LEFT, 3));
    sim_advance(sim, 1000);
    uint64_t pings = sim_stats(sim, 3).received[PM_SWIM_MSG_PING];
    uint64_t probes = sim_stats(sim, 3).probes;
    sim_advance(sim, 5000);
    /* nobody probes it any more, and it probes nobody */
    assert_int_equal(sim_stats(sim, 3).received[PM_SWIM_MSG_PING], pings);
    assert_int_equal(sim_stats(sim, 3).probes, probes);
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_SUSPECT, "n3", t0), 0);
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_DEAD, "n3", t0), 0);
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_LEFT, "n3", t0), 4);
    /* the others carry on */
    for (int i = 0; i < 5; i++)
        if (i != 3)
            assert_int_equal(pm_swim_count(sim->nodes[i].swim, PM_SWIM_ALIVE), 4);
    /* forgotten after gc_interval */
    sim_advance(sim, sim->cfg.gc_interval_ms);
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_REMOVED, "n3", t0), 4);
    for (int i = 0; i < 5; i++)
        if (i != 3)
            assert_int_equal(sim_state(sim, i, "n3"), 0);
    sim_destroy(&sim);
}

static void
test_meta_propagates(void **state)
{
    (void) state;
    sim_t *sim = sim_new(8, 29);
    assert_true(sim_converge(sim, 3000) != NEVER);
    const char meta[] = "functions=resize,thumbnail;capacity=4";
    uint64_t inc = pm_swim_incarnation(sim->nodes[5].swim);
    uint64_t t0 = sim->now;
    assert_int_equal(pm_swim_set_meta(sim->nodes[5].swim, meta, sizeof meta, sim->now), 0);
    assert_int_equal(pm_swim_incarnation(sim->nodes[5].swim), inc + 1);
    sim_advance(sim, 1000);
    for (int i = 0; i < 8; i++) {
        if (i == 5)
            continue;
        pm_swim_member_t m;
        assert_int_equal(pm_swim_lookup(sim->nodes[i].swim, "n5", &m), 0);
        assert_int_equal(m.state, PM_SWIM_ALIVE);
        assert_int_equal(m.incarnation, inc + 1);
        assert_int_equal(m.meta_len, sizeof meta);
        assert_memory_equal(m.meta, meta, sizeof meta);
    }
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_META, "n5", t0), 7);
    /* A member that joins later gets the meta through the full sync. */
    pm_swim_destroy(&sim->nodes[7].swim);
    sim->nodes[7].up = false;
    sim_advance(sim, 40000); /* dead, then forgotten */
    assert_int_equal(sim_state(sim, 0, "n7"), 0);
    sim_start_node(sim, 7, 999);
    assert_true(sim_converge(sim, 3000) != NEVER);
    pm_swim_member_t m;
    assert_int_equal(pm_swim_lookup(sim->nodes[7].swim, "n5", &m), 0);
    assert_int_equal(m.meta_len, sizeof meta);
    assert_memory_equal(m.meta, meta, sizeof meta);
    sim_destroy(&sim);
}

static void
test_restart_comes_back(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 31);
    assert_true(sim_converge(sim, 3000) != NEVER);
    assert_int_equal(pm_swim_set_meta(sim->nodes[2].swim, "v1", 2, sim->now), 0);
    sim_advance(sim, 1000);
    uint64_t inc_before = sim_inc_seen(sim, 0, "n2");
    sim->nodes[2].up = false;
    sim_advance(sim, 3000);
    assert_true(sim_all_see(sim, "n2", PM_SWIM_DEAD, 2));
    /* restarted process: fresh instance, incarnation 0, below what peers hold */
    pm_swim_destroy(&sim->nodes[2].swim);
    uint64_t t0 = sim->now;
    sim_start_node(sim, 2, 4242);
    uint64_t took = sim_converge(sim, 5000);
    assert_true(took != NEVER);
    print_message("restarted member alive everywhere in %llu ms\n", (unsigned long long) took);
    for (int i = 0; i < 5; i++)
        if (i != 2) {
            assert_true(sim_inc_seen(sim, i, "n2") > inc_before);
            assert_true(sim_first_event(sim, i, PM_SWIM_EV_ALIVE, "n2", t0) != NEVER);
        }
    sim_destroy(&sim);
}

static void
test_gc_dead(void **state)
{
    (void) state;
    sim_t *sim = sim_new(4, 37);
    assert_true(sim_converge(sim, 3000) != NEVER);
    sim->nodes[1].up = false;
    sim_advance(sim, 3000);
    assert_true(sim_all_see(sim, "n1", PM_SWIM_DEAD, 1));
    assert_int_equal(pm_swim_size(sim->nodes[0].swim), 4);
    assert_int_equal(pm_swim_count(sim->nodes[0].swim, PM_SWIM_DEAD), 1);
    sim_advance(sim, sim->cfg.gc_interval_ms - 3000);
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_REMOVED, "n1", 0), 0);
    sim_advance(sim, 3000);
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_REMOVED, "n1", 0), 3);
    assert_int_equal(pm_swim_size(sim->nodes[0].swim), 3);
    assert_int_equal(sim_state(sim, 0, "n1"), 0);
    sim_advance(sim, 10000);
    assert_true(sim_converged(sim));
    sim_destroy(&sim);
}

/* Lifeguard: a starved node (everything reaching it is 400 ms late) misses
 * its acks, raises its local-health score and stretches its probe period,
 * instead of getting healthy members declared dead. */
static void
test_local_health_slows_probing(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 41);
    assert_true(sim_converge(sim, 3000) != NEVER);
    uint64_t t0 = sim->now;
    pm_swim_stats_t slow0 = sim_stats(sim, 4), ok0 = sim_stats(sim, 0);
    sim->nodes[4].in_delay = 400;
    uint32_t max_health = 0;
    for (int i = 0; i < 300; i++) {
        sim_advance(sim, 100);
        uint32_t h = pm_swim_health(sim->nodes[4].swim);
        max_health = h > max_health ? h : max_health;
    }
    pm_swim_stats_t slow1 = sim_stats(sim, 4), ok1 = sim_stats(sim, 0);
    uint64_t slow_probes = slow1.probes - slow0.probes, ok_probes = ok1.probes - ok0.probes;
    print_message("30 s: starved node %llu probes (health up to %u), healthy node %llu\n",
                  (unsigned long long) slow_probes, max_health, (unsigned long long) ok_probes);
    assert_true(max_health >= 4);
    assert_true(slow_probes * 2 < ok_probes);
    assert_true(pm_swim_probe_period(sim->nodes[4].swim) >=
                (uint64_t) sim->cfg.probe_interval_ms * (pm_swim_health(sim->nodes[4].swim) + 1));
    /* healthy members stay healthy, and nobody healthy is declared dead */
    for (int i = 0; i < 4; i++) {
        assert_true(pm_swim_health(sim->nodes[i].swim) <= 1);
        assert_int_equal(sim_count_events(sim, PM_SWIM_EV_DEAD, sim->nodes[i].name, t0), 0);
    }
    /* recovers once fed again */
    sim->nodes[4].in_delay = 0;
    sim_advance(sim, 20000);
    assert_int_equal(pm_swim_health(sim->nodes[4].swim), 0);
    assert_true(sim_converge(sim, 5000) != NEVER);
    sim_destroy(&sim);
}

/* Lifeguard nacks: when the target really is dead, the relays nack, so the
 * prober's health is not blamed; when the prober's own messages are lost,
 * the missing nacks raise its score. */
static void
test_nacks(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 43);
    assert_true(sim_converge(sim, 3000) != NEVER);
    sim->nodes[4].up = false;
    sim_advance(sim, 5000);
    uint64_t failed = 0, nacks = 0;
    for (int i = 0; i < 4; i++) {
        pm_swim_stats_t st = sim_stats(sim, i);
        failed += st.probes_failed;
        nacks += st.received[PM_SWIM_MSG_NACK];
        assert_int_equal(pm_swim_health(sim->nodes[i].swim), 0);
    }
    assert_true(failed > 0);
    assert_true(nacks >= failed * 3);

    sim->nodes[0].out_blocked = true;
    sim_advance(sim, 3000);
    assert_true(pm_swim_health(sim->nodes[0].swim) >= 3);
    sim_destroy(&sim);
}

static void
test_partition_heals(void **state)
{
    (void) state;
    sim_t *sim = sim_new(6, 47);
    assert_true(sim_converge(sim, 3000) != NEVER);
    for (int i = 0; i < 6; i++)
        sim->nodes[i].group = i < 3 ? 0 : 1;
    sim->partitioned = true;
    sim_advance(sim, 6000);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++) {
            int want = sim->nodes[i].group == sim->nodes[j].group ? PM_SWIM_ALIVE : PM_SWIM_DEAD;
            assert_int_equal(sim_state(sim, i, sim->nodes[j].name), want);
        }
    sim->partitioned = false;
    uint64_t took = sim_converge(sim, 25000);
    assert_true(took != NEVER);
    print_message("partition healed in %llu ms\n", (unsigned long long) took);
    sim_advance(sim, 5000);
    assert_true(sim_converged(sim));
    sim_destroy(&sim);
}

static void
test_loss_no_false_deaths(void **state)
{
    (void) state;
    sim_t *sim = sim_new(8, 53);
    sim->loss = 0.20;
    assert_true(sim_converge(sim, 20000) != NEVER);
    sim->tap = tap_ping_to_suspect;
    uint64_t t0 = sim->now;
    sim_advance(sim, 600000); /* ten virtual minutes */
    size_t suspects = sim_count_events(sim, PM_SWIM_EV_SUSPECT, NULL, t0);
    size_t deaths = sim_count_events(sim, PM_SWIM_EV_DEAD, NULL, t0);
    uint64_t refutations = 0;
    for (int i = 0; i < 8; i++)
        refutations += sim_stats(sim, i).refutations;
    print_message("20%% loss, 8 members, 600 s: %zu suspicions, %llu refutations, %zu deaths\n",
                  suspects, (unsigned long long) refutations, deaths);
    assert_true(suspects > 0); /* the loss did bite */
    assert_true(sim->tap_total > 100);
    assert_int_equal(sim->tap_hits, sim->tap_total);
    assert_int_equal(deaths, 0);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++) {
            int st = sim_state(sim, i, sim->nodes[j].name);
            assert_true(st == PM_SWIM_ALIVE || st == PM_SWIM_SUSPECT);
        }
    sim->loss = 0;
    assert_true(sim_converge(sim, 5000) != NEVER);
    sim_destroy(&sim);
}

/* SWIM's point: each member's message rate does not grow with N. */
static void
test_rate_independent_of_n(void **state)
{
    (void) state;
    static const int sizes[] = {8, 16, 32};
    double rate[3];
    for (int k = 0; k < 3; k++) {
        int n = sizes[k];
        sim_t *sim = sim_new(n, 59);
        assert_true(sim_converge(sim, 5000) != NEVER);
        sim_advance(sim, 20000); /* let the join gossip drain */
        uint64_t before = 0, after = 0;
        for (int i = 0; i < n; i++)
            before += sim_sent_total(sim, i);
        sim_advance(sim, 60000);
        for (int i = 0; i < n; i++)
            after += sim_sent_total(sim, i);
        rate[k] = (double) (after - before) / n / 60.0;
        print_message("N=%d: %.2f messages/s per member\n", n, rate[k]);
        assert_true(sim_converged(sim));
        sim_destroy(&sim);
    }
    for (int k = 0; k < 3; k++) {
        assert_true(rate[k] < 12.0);
        assert_true(rate[k] > 9.0); /* 5 pings + 5 acks + syncs */
    }
    assert_true(fabs(rate[2] - rate[0]) / rate[0] < 0.05);
    assert_true(fabs(rate[1] - rate[0]) / rate[0] < 0.05);
}

/* Lifeguard's dynamic suspicion: a node cut off from everyone suspects all
 * the others, but nobody confirms its suspicions, so each runs the full
 * max timeout (3.6 s); the majority confirm each other's suspicion of it and
 * declare it dead at the min (0.6 s after suspecting). Also checks the buddy
 * system: every ping to a suspect carries the suspicion. */
static void
test_isolated_node_slow_to_accuse(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 61);
    assert_true(sim_converge(sim, 3000) != NEVER);
    for (int i = 0; i < 5; i++)
        sim->nodes[i].group = i == 0 ? 1 : 0;
    sim->partitioned = true;
    sim->tap = tap_ping_to_suspect;
    uint64_t t0 = sim->now;
    sim_advance(sim, 8000);
    /* its suspicions outlive their piggyback budget: only the buddy copy
     * puts them on its later pings (which the partition then drops) */
    assert_true(sim->tap_total > 10);
    assert_int_equal(sim->tap_hits, sim->tap_total);
    sim->tap = NULL;
    uint64_t majority = 0, isolated = NEVER, first_suspect = NEVER;
    for (int i = 1; i < 5; i++) {
        uint64_t d = sim_first_event(sim, i, PM_SWIM_EV_DEAD, "n0", t0);
        assert_true(d != NEVER);
        majority = d - t0 > majority ? d - t0 : majority;
        uint64_t s0 = sim_first_event(sim, 0, PM_SWIM_EV_SUSPECT, sim->nodes[i].name, t0);
        uint64_t d0 = sim_first_event(sim, 0, PM_SWIM_EV_DEAD, sim->nodes[i].name, t0);
        assert_true(s0 != NEVER && d0 != NEVER);
        /* each of its lone suspicions ran the whole max timeout */
        assert_true(d0 - s0 >= 6 * 3 * (uint64_t) sim->cfg.probe_interval_ms);
        first_suspect = s0 < first_suspect ? s0 : first_suspect;
        isolated = d0 - t0 < isolated ? d0 - t0 : isolated;
    }
    print_message("isolated node: majority declares it dead in %llu ms; it declares its "
                  "first peer dead in %llu ms\n",
                  (unsigned long long) majority, (unsigned long long) isolated);
    assert_true(majority <= 1700);
    assert_true(isolated >= 3600);
    /* no nacks come back to it either: its health degrades */
    assert_true(pm_swim_health(sim->nodes[0].swim) >= 4);
    sim->partitioned = false;
    assert_true(sim_converge(sim, 25000) != NEVER);
    sim_destroy(&sim);
}

static void
tap_buddy(sim_t *sim, int from, int to, const pm_swim_msg_t *msg)
{
    if (from != 1 || msg->type != PM_SWIM_MSG_PING || sim->tap_hits != 0)
        return;
    /* The ping of the first probe n1 starts after hearing the suspicion (a
     * probe counts itself just before sending its ping; pings n1 sends as
     * a ping-req relay do not count). */
    pm_swim_stats_t st;
    pm_swim_stats(sim->nodes[1].swim, &st);
    if (st.probes != sim->tap_base + 1)
        return;
    sim->tap_hits = -1;
    if (to != 2)
        return;
    for (size_t i = 0; i < msg->update_count; i++)
        if (strcmp(msg->updates[i].name, "n2") == 0 && msg->updates[i].state == PM_SWIM_SUSPECT)
            sim->tap_hits = 1;
}

/* A member that hears a suspicion probes the suspect next (to confirm it,
 * or to carry it to the suspect), and the ping carries the suspicion
 * (Lifeguard's buddy system). n2 is killed so that the suspicion stands. */
static void
test_suspect_probed_next_with_buddy(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 67);
    assert_true(sim_converge(sim, 3000) != NEVER);
    sim->nodes[2].up = false;
    uint64_t inc2 = pm_swim_incarnation(sim->nodes[2].swim);
    pm_swim_update_t rumor = {
        .name = "n2", .endpoint = sim->nodes[2].ep, .incarnation = inc2, .state = PM_SWIM_SUSPECT,
        .from = "n3"};
    pm_swim_msg_t msg = {
        .type = PM_SWIM_MSG_GOSSIP,
        .from_name = "n3",
        .from_endpoint = sim->nodes[3].ep,
        .from_incarnation = pm_swim_incarnation(sim->nodes[3].swim),
        .update_count = 1,
        .updates = &rumor,
    };
    sim->tap = tap_buddy;
    sim->tap_base = sim_stats(sim, 1).probes;
    assert_int_equal(pm_swim_receive(sim->nodes[1].swim, &msg, sim->now), 0);
    assert_int_equal(sim_state(sim, 1, "n2"), PM_SWIM_SUSPECT);
    sim_advance(sim, 1000);
    assert_int_equal(sim->tap_hits, 1);
    sim_advance(sim, 2000);
    assert_true(sim_all_see(sim, "n2", PM_SWIM_DEAD, 2));
    sim_destroy(&sim);
}

/* In a full sync a remote "dead" only raises a suspicion: a sync from a
 * peer with an old or partitioned view costs a refutation, not a death. */
static void
test_sync_dead_only_suspects(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 71);
    assert_true(sim_converge(sim, 3000) != NEVER);
    uint64_t inc2 = pm_swim_incarnation(sim->nodes[2].swim);
    pm_swim_update_t table[2] = {
        {.name = "n3", .endpoint = sim->nodes[3].ep,
         .incarnation = pm_swim_incarnation(sim->nodes[3].swim), .state = PM_SWIM_ALIVE},
        {.name = "n2", .endpoint = sim->nodes[2].ep, .incarnation = inc2, .state = PM_SWIM_DEAD},
    };
    pm_swim_msg_t msg = {
        .type = PM_SWIM_MSG_SYNC_RESP,
        .from_name = "n3",
        .from_endpoint = sim->nodes[3].ep,
        .from_incarnation = table[0].incarnation,
        .update_count = 2,
        .updates = table,
    };
    uint64_t t0 = sim->now;
    assert_int_equal(pm_swim_receive(sim->nodes[1].swim, &msg, sim->now), 0);
    assert_int_equal(sim_state(sim, 1, "n2"), PM_SWIM_SUSPECT);
    sim_advance(sim, 2000);
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_DEAD, NULL, t0), 0);
    assert_true(sim_all_see(sim, "n2", PM_SWIM_ALIVE, -1));
    assert_true(sim_inc_seen(sim, 1, "n2") > inc2);
    sim_destroy(&sim);
}

/* Hides from n1 every update about n2 newer than incarnation tap_hits, by
 * turning it into a harmless old alive. */
static void
mangle_hide_n2(sim_t *sim, int from, int to, pm_swim_msg_t *copy)
{
    (void) from;
    if (to != 1)
        return;
    pm_swim_update_t *u = (pm_swim_update_t *) copy->updates;
    for (size_t i = 0; i < copy->update_count; i++)
        if (strcmp(u[i].name, "n2") == 0 && u[i].incarnation > (uint64_t) sim->tap_hits) {
            u[i].incarnation = (uint64_t) sim->tap_hits;
            u[i].state = PM_SWIM_ALIVE;
            u[i].meta_len = 0;
        }
}

/* A member that missed every copy of an update (here n1 misses n2's new
 * meta at a higher incarnation, and the gossip dies out) then hears an old
 * suspicion about n2. Its probe of n2 carries the old rumor, and n2 (or
 * anyone else it sends the rumor to) answers with the newer record, so n1
 * neither keeps the stale view nor declares a live member dead. */
static void
test_stale_view_corrected(void **state)
{
    (void) state;
    sim_t *sim = sim_new(5, 73);
    assert_true(sim_converge(sim, 3000) != NEVER);
    uint64_t old = sim_inc_seen(sim, 1, "n2");
    sim->tap_hits = (int) old;
    sim->mangle = mangle_hide_n2;
    assert_int_equal(pm_swim_set_meta(sim->nodes[2].swim, "v2", 2, sim->now), 0);
    sim_advance(sim, 3000);
    sim->mangle = NULL;
    for (int i = 0; i < 5; i++)
        if (i != 1)
            assert_int_equal(sim_inc_seen(sim, i, "n2"), old + 1);
    assert_int_equal(sim_inc_seen(sim, 1, "n2"), old);
    assert_true(sim_converged(sim));
    pm_swim_update_t rumor = {
        .name = "n2", .endpoint = sim->nodes[2].ep, .incarnation = old, .state = PM_SWIM_SUSPECT,
        .from = "n4"};
    pm_swim_msg_t msg = {
        .type = PM_SWIM_MSG_GOSSIP,
        .from_name = "n4",
        .from_endpoint = sim->nodes[4].ep,
        .from_incarnation = pm_swim_incarnation(sim->nodes[4].swim),
        .update_count = 1,
        .updates = &rumor,
    };
    uint64_t t0 = sim->now;
    assert_int_equal(pm_swim_receive(sim->nodes[1].swim, &msg, sim->now), 0);
    assert_int_equal(sim_state(sim, 1, "n2"), PM_SWIM_SUSPECT);
    sim_advance(sim, 1000);
    pm_swim_member_t m;
    assert_int_equal(pm_swim_lookup(sim->nodes[1].swim, "n2", &m), 0);
    assert_int_equal(m.state, PM_SWIM_ALIVE);
    assert_int_equal(m.incarnation, old + 1);
    assert_int_equal(m.meta_len, 2);
    assert_memory_equal(m.meta, "v2", 2);
    sim_advance(sim, 5000);
    assert_int_equal(sim_count_events(sim, PM_SWIM_EV_DEAD, NULL, t0), 0);
    assert_true(sim_converged(sim));
    sim_destroy(&sim);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api),
        cmocka_unit_test(test_converge_3),
        cmocka_unit_test(test_converge_5),
        cmocka_unit_test(test_converge_32),
        cmocka_unit_test(test_kill_detected_within_bound),
        cmocka_unit_test(test_short_pause_not_dead),
        cmocka_unit_test(test_long_pause_refutes),
        cmocka_unit_test(test_forged_dead_refuted),
        cmocka_unit_test(test_stale_dropped),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_graceful_leave),
        cmocka_unit_test(test_meta_propagates),
        cmocka_unit_test(test_restart_comes_back),
        cmocka_unit_test(test_gc_dead),
        cmocka_unit_test(test_local_health_slows_probing),
        cmocka_unit_test(test_nacks),
        cmocka_unit_test(test_isolated_node_slow_to_accuse),
        cmocka_unit_test(test_suspect_probed_next_with_buddy),
        cmocka_unit_test(test_sync_dead_only_suspects),
        cmocka_unit_test(test_stale_view_corrected),
        cmocka_unit_test(test_partition_heals),
        cmocka_unit_test(test_loss_no_false_deaths),
        cmocka_unit_test(test_rate_independent_of_n),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
