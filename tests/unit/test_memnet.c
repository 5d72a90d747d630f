/*
 * test_memnet.c - cmocka suite for the mesh transport's seam (mesh/memnet.c,
 * mesh/transport.c): the in-memory network's own rules (ports, FIFO inboxes,
 * cut links, seeded loss), and three real meshes (mesh.c, SWIM) in one
 * process without sockets or threads: each with its own fake clock and seeded
 * random source (the per-agent "current context" switched before each step,
 * as the simulator will), seeds found through a table of names. They join,
 * detect a node cut off within SWIM's bound in simulated time, take it back
 * when the link heals, and the same seed replays the same run. With CURVE, a
 * frame from a member whose address we have not learnt yet waits for its
 * membership and is then answered; one from a sender that never joins is
 * dropped after a bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "memnet.h"
#include "mesh.h"
#include "mesh_priv.h"
#include "rand.h"
#include "resolve.h"
#include "transport.h"
#include "wire.h"

/* --- the network itself ---------------------------------------------------------- */

static uint8_t *
s_buf(const char *s)
{
    uint8_t *b = malloc(strlen(s) + 1);
    memcpy(b, s, strlen(s) + 1);
    return b;
}

static void
test_memnet_rules(void **state)
{
    (void) state;
    pm_memnet_t *net = pm_memnet_new(1);
    pm_memnet_port_t *a = pm_memnet_bind(net, "tcp://a:1");
    pm_memnet_port_t *b = pm_memnet_bind(net, "tcp://b:1");
    assert_non_null(a);
    assert_non_null(b);
    assert_null(pm_memnet_bind(net, "tcp://a:1")); /* in use */
    assert_int_equal(pm_memnet_send(a, "tcp://b:1", s_buf("one"), 4), 0);
    assert_int_equal(pm_memnet_send(a, "tcp://b:1", s_buf("two"), 4), 0);
    assert_int_equal(pm_memnet_send(a, "tcp://nobody:1", s_buf("x"), 2), 0);
    assert_int_equal(pm_memnet_waiting(b), 2);
    size_t len;
    uint8_t *m = pm_memnet_recv(b, &len);
    assert_string_equal((char *) m, "one"); /* in order */
    free(m);
    m = pm_memnet_recv(b, &len);
    assert_string_equal((char *) m, "two");
    free(m);
    assert_null(pm_memnet_recv(b, &len));
    /* One way cut: b hears nothing from a, a still hears b. */
    pm_memnet_cut(net, "tcp://a:1", "tcp://b:1", true);
    pm_memnet_send(a, "tcp://b:1", s_buf("cut"), 4);
    pm_memnet_send(b, "tcp://a:1", s_buf("back"), 5);
    assert_int_equal(pm_memnet_waiting(b), 0);
    assert_int_equal(pm_memnet_waiting(a), 1);
    free(pm_memnet_recv(a, &len));
    pm_memnet_cut(net, "tcp://a:1", "tcp://b:1", false);
    pm_memnet_send(a, "tcp://b:1", s_buf("healed"), 7);
    assert_int_equal(pm_memnet_waiting(b), 1);
    pm_memnet_stats_t st;
    pm_memnet_stats(net, &st);
    assert_int_equal(st.sent, 6);
    assert_int_equal(st.delivered, 4);
    assert_int_equal(st.lost, 2);
    /* Random loss: about what was asked, and the same for the same seed. */
    pm_memnet_loss(net, 300);
    for (int i = 0; i < 1000; i++)
        pm_memnet_send(a, "tcp://b:1", s_buf("x"), 2);
    pm_memnet_stats(net, &st);
    uint64_t lost = st.lost - 2;
    assert_true(lost > 220 && lost < 380);
    pm_memnet_unbind(&a);
    pm_memnet_unbind(&b); /* frees what waits in its inbox */
    assert_null(b);
    pm_memnet_destroy(&net);
}

/* Delay keeps a link's order; only a reconnect (reorder) or a restarted
 * sender lets later frames overtake; duplicates arrive twice. */
static void
test_memnet_delay_reorder_dup(void **state)
{
    (void) state;
    pm_memnet_t *net = pm_memnet_new(3);
    pm_memnet_port_t *a = pm_memnet_bind(net, "tcp://a:1");
    pm_memnet_port_t *b = pm_memnet_bind(net, "tcp://b:1");
    pm_memnet_set_now(net, 1000);
    pm_memnet_delay(net, 100);
    char s[16];
    for (int i = 0; i < 200; i++) {
        snprintf(s, sizeof s, "%d", i);
        pm_memnet_send(a, "tcp://b:1", s_buf(s), strlen(s) + 1);
    }
    /* Nothing is due before its time; the rest in order, by 1100 at the latest. */
    assert_true(pm_memnet_next_due(net) >= 1000);
    size_t len;
    int next = 0;
    for (int64_t t = 1000; t <= 1100; t++) {
        pm_memnet_set_now(net, t);
        uint8_t *m;
        while ((m = pm_memnet_recv(b, &len))) {
            assert_int_equal(atoi((char *) m), next);
            next++;
            free(m);
        }
    }
    assert_int_equal(next, 200);
    assert_int_equal(pm_memnet_next_due(net), INT64_MAX);
    pm_memnet_stats_t st;
    pm_memnet_stats(net, &st);
    assert_int_equal(st.reordered, 0);
    assert_true(st.delayed > 150);
    /* Reconnects: some frames overtake earlier ones; every frame arrives once. */
    pm_memnet_reorder(net, 100);
    for (int i = 0; i < 200; i++) {
        snprintf(s, sizeof s, "%d", i);
        pm_memnet_send(a, "tcp://b:1", s_buf(s), strlen(s) + 1);
    }
    pm_memnet_set_now(net, 1300);
    assert_int_equal(pm_memnet_waiting(b), 200);
    int seen[200] = {0}, inversions = 0, prev = -1;
    uint8_t *m;
    while ((m = pm_memnet_recv(b, &len))) {
        int v = atoi((char *) m);
        seen[v]++;
        inversions += v < prev;
        prev = v;
        free(m);
    }
    for (int i = 0; i < 200; i++)
        assert_int_equal(seen[i], 1);
    assert_true(inversions > 0);
    pm_memnet_stats(net, &st);
    assert_true(st.reordered > 0 && st.reconnects > 5);
    /* Duplicates: about what was asked, each copy the original's bytes. */
    pm_memnet_reorder(net, 0);
    pm_memnet_dup(net, 200);
    for (int i = 0; i < 500; i++)
        pm_memnet_send(a, "tcp://b:1", s_buf("dup"), 4);
    pm_memnet_set_now(net, 1600);
    pm_memnet_stats(net, &st);
    assert_true(st.duplicated > 60 && st.duplicated < 140);
    assert_int_equal(pm_memnet_waiting(b), 500 + st.duplicated);
    while ((m = pm_memnet_recv(b, &len))) {
        assert_string_equal((char *) m, "dup");
        free(m);
    }
    /* A restarted sender: new connections, its new frames may overtake. */
    pm_memnet_dup(net, 0);
    pm_memnet_delay(net, 0);
    pm_memnet_send(a, "tcp://b:1", s_buf("late"), 5);
    pm_memnet_unbind(&a); /* killed: what it sent is still on the wire */
    assert_int_equal(pm_memnet_waiting(b), 1);
    a = pm_memnet_bind(net, "tcp://a:1");
    pm_memnet_send(a, "tcp://b:1", s_buf("new"), 4);
    assert_int_equal(pm_memnet_waiting(b), 2);
    pm_memnet_unbind(&a);
    pm_memnet_unbind(&b); /* frees what waits, due or not */
    pm_memnet_destroy(&net);
}

/* A transport created while a network is current binds there: no socket. */
static void
test_transport_on_memnet(void **state)
{
    (void) state;
    pm_memnet_t *net = pm_memnet_new(2);
    assert_null(pm_memnet_use(net));
    pm_transport_t *a = pm_transport_new(NULL, "tcp://10.0.0.1:7001", 1 << 20, NULL);
    pm_transport_t *b = pm_transport_new(NULL, "tcp://10.0.0.2:7001", 1 << 20, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(pm_transport_socket(a));
    assert_null(pm_transport_new(NULL, "tcp://10.0.0.1:7001", 1 << 20, NULL));
    assert_int_equal(pm_transport_send(a, "tcp://10.0.0.2:7001", s_buf("hi"), 3), 0);
    size_t len;
    uint8_t *m = pm_transport_recv(b, &len);
    assert_non_null(m);
    assert_int_equal(len, 3);
    assert_string_equal((char *) m, "hi");
    free(m);
    pm_transport_stats_t ts;
    pm_transport_stats(a, &ts);
    assert_int_equal(ts.frames_out, 1);
    pm_transport_stats(b, &ts);
    assert_int_equal(ts.frames_in, 1);
    pm_transport_destroy(&a);
    pm_transport_destroy(&b);
    assert_ptr_equal(pm_memnet_use(NULL), net);
    pm_memnet_destroy(&net);
}

/* --- three meshes in one process ------------------------------------------------------- */

#define N 3

typedef struct {
    pm_config_t *cfg;
    pm_mesh_t *mesh;
    pm_clock_fake_t clock;
    pm_rand_seeded_t rand;
    char name[8], ep[64];
} s_agent_t;

typedef struct {
    pm_memnet_t *net;
    s_agent_t ag[N];
    int64_t now_us; /* simulated time since the start */
} s_world_t;

static const pm_resolve_entry_t s_names[] = {{"node-a", "10.0.0.1"}};

static void
s_set(pm_config_t *cfg, const char *k, const char *v)
{
    char err[256];
    assert_int_equal(pm_config_set(cfg, k, v, err, sizeof err), 0);
}

/* Makes agent i current: its clock and random source. */
static void
s_enter(s_world_t *w, int i)
{
    pm_clock_use(&w->ag[i].clock.clock);
    pm_rand_use(&w->ag[i].rand.rand);
}

static void
s_world_start(s_world_t *w, uint64_t seed, pm_resolve_table_t *names)
{
    memset(w, 0, sizeof *w);
    w->net = pm_memnet_new(seed);
    pm_memnet_use(w->net);
    pm_resolve_table_init(names, s_names, 1);
    pm_resolve_use(&names->resolve);
    pm_mesh_hooks_t hooks = {0};
    for (int i = 0; i < N; i++) {
        s_agent_t *a = &w->ag[i];
        snprintf(a->name, sizeof a->name, "%c", 'a' + i);
        snprintf(a->ep, sizeof a->ep, "tcp://10.0.0.%d:7001", i + 1);
        /* Clocks that disagree: different boot times, one running fast. */
        pm_clock_fake_init(&a->clock, 1000000 * (i + 1), 1700000000000LL + 7 * i);
        pm_clock_fake_drift(&a->clock, i == 2 ? 200 : 0);
        pm_rand_seeded_init(&a->rand, seed * 31 + (uint64_t) i);
        a->cfg = pm_config_new();
        s_set(a->cfg, "bind", a->ep);
        s_set(a->cfg, "insecure", "true");
        if (i > 0)
            s_set(a->cfg, "seeds", "tcp://node-a:7001"); /* through the table of names */
        s_enter(w, i);
        char space[32];
        snprintf(space, sizeof space, "%s.1", a->name);
        a->mesh = pm_mesh_new(NULL, a->cfg, a->name, space, &hooks, NULL);
        assert_non_null(a->mesh);
        assert_null(pm_mesh_socket(a->mesh));
    }
}

/* Runs the world for ms of simulated time in steps of 1 ms: every clock
 * advances, then each agent in turn takes its frames and drives its timers. */
static void
s_run(s_world_t *w, int64_t ms)
{
    for (int64_t t = 0; t < ms; t++) {
        w->now_us += 1000;
        for (int i = 0; i < N; i++)
            pm_clock_fake_advance(&w->ag[i].clock, 1000);
        for (int i = 0; i < N; i++) {
            s_enter(w, i);
            pm_mesh_readable(w->ag[i].mesh);
            pm_mesh_tick(w->ag[i].mesh);
        }
    }
}

/* Runs until pred holds, at most limit_ms; returns the simulated ms it took,
 * or -1. */
static int64_t
s_run_until(s_world_t *w, int (*pred)(s_world_t *), int64_t limit_ms)
{
    for (int64_t ms = 0; ms <= limit_ms; ms += 10) {
        if (pred(w))
            return ms;
        s_run(w, 10);
    }
    return -1;
}

static int
s_all_joined(s_world_t *w)
{
    for (int i = 0; i < N; i++)
        if (pm_mesh_alive(w->ag[i].mesh) != N)
            return 0;
    return 1;
}

static int
s_c_down_for_ab(s_world_t *w)
{
    return !pm_mesh_is_up(w->ag[0].mesh, "c") && !pm_mesh_is_up(w->ag[1].mesh, "c");
}

static void
s_cut_c(s_world_t *w, bool cut)
{
    for (int i = 0; i < 2; i++) {
        pm_memnet_cut(w->net, w->ag[i].ep, w->ag[2].ep, cut);
        pm_memnet_cut(w->net, w->ag[2].ep, w->ag[i].ep, cut);
    }
}

static void
s_world_stop(s_world_t *w)
{
    for (int i = 0; i < N; i++) {
        s_enter(w, i);
        pm_mesh_destroy(&w->ag[i].mesh);
        pm_config_destroy(&w->ag[i].cfg);
    }
    pm_clock_use(NULL);
    pm_rand_use(NULL);
    pm_resolve_use(NULL);
    pm_memnet_use(NULL);
    pm_memnet_destroy(&w->net);
}

typedef struct {
    int64_t joined_ms, down_ms, back_ms;
    uint64_t sent;
} s_trace_t;

static void
s_scenario(uint64_t seed, s_trace_t *tr)
{
    static s_world_t w;
    pm_resolve_table_t names;
    s_world_start(&w, seed, &names);
    tr->joined_ms = s_run_until(&w, s_all_joined, 10000);
    assert_true(tr->joined_ms >= 0);
    s_cut_c(&w, true);
    tr->down_ms = s_run_until(&w, s_c_down_for_ab, 30000);
    assert_true(tr->down_ms >= 0);
    /* Not before a probe could time out, and within SWIM's bound with the
     * defaults (probe 200 ms, suspicion 3 x log(n) rounds) plus a margin. */
    assert_true(tr->down_ms >= 200);
    assert_true(tr->down_ms <= 10000);
    s_cut_c(&w, false);
    tr->back_ms = s_run_until(&w, s_all_joined, 120000);
    assert_true(tr->back_ms >= 0);
    pm_memnet_stats_t st;
    pm_memnet_stats(w.net, &st);
    tr->sent = st.sent;
    assert_true(st.lost > 0 && st.delivered > 0);
    s_world_stop(&w);
}

static void
test_meshes_join_detect_heal(void **state)
{
    (void) state;
    s_trace_t t1, t2;
    s_scenario(42, &t1);
    print_message("joined after %lld ms, c down after %lld ms, back after %lld ms; %llu frames\n",
                  (long long) t1.joined_ms, (long long) t1.down_ms, (long long) t1.back_ms,
                  (unsigned long long) t1.sent);
    /* Deterministic: the same seed gives the same run, frame for frame. */
    s_scenario(42, &t2);
    assert_int_equal(t1.joined_ms, t2.joined_ms);
    assert_int_equal(t1.down_ms, t2.down_ms);
    assert_int_equal(t1.back_ms, t2.back_ms);
    assert_int_equal(t1.sent, t2.sent);
}

/* Metadata that outgrows SWIM's 4 KiB: with a configuration store (which
 * routes what gossip leaves out), the longest prefix of our served spaces
 * that fits is announced, our own first; without one, nothing (gossip is
 * the only routing there, and a partial list would mislead). */
static void
test_mesh_meta_trim(void **state)
{
    (void) state;
    pm_memnet_t *net = pm_memnet_new(7);
    pm_memnet_use(net);
    pm_clock_fake_t clock;
    pm_clock_fake_init(&clock, 1000000, 1700000000000LL);
    pm_clock_use(&clock.clock);
    size_t announced[2];
    for (int coordinated = 0; coordinated < 2; coordinated++) {
        pm_config_t *cfg = pm_config_new();
        s_set(cfg, "bind", coordinated ? "tcp://10.0.0.9:7001" : "tcp://10.0.0.8:7001");
        s_set(cfg, "insecure", "true");
        if (coordinated)
            s_set(cfg, "coordination", "mem://");
        pm_mesh_hooks_t hooks = {0};
        pm_mesh_t *m = pm_mesh_new(NULL, cfg, "a", "a-own", &hooks, NULL);
        assert_non_null(m);
        pm_mesh_publish_meta(m, 1);
        assert_int_equal(pm_mesh_meta_spaces(m), 1); /* small: all of it */
        for (int i = 0; i < 400; i++) {
            char sp[32];
            snprintf(sp, sizeof sp, "b-%08d", i);
            pm_mesh_claim(m, sp, 2 + (uint64_t) i);
        }
        pm_mesh_publish_meta(m, 2);
        announced[coordinated] = pm_mesh_meta_spaces(m);
        const char *const *spaces;
        const uint64_t *epochs;
        assert_int_equal(pm_mesh_served(m, &spaces, &epochs), 401);
        assert_string_equal(spaces[0], "a-own"); /* our own first: always announced */
        pm_mesh_destroy(&m);
        pm_config_destroy(&cfg);
    }
    assert_int_equal(announced[0], 0);
    assert_true(announced[1] > 50 && announced[1] < 401);
    pm_clock_use(NULL);
    pm_memnet_use(NULL);
    pm_memnet_destroy(&net);
}

/* --- a frame from a member we have not heard of yet ----------------------------------- */

typedef struct {
    pm_mesh_t *mesh;
    int got;        /* frames delivered (not SWIM) */
    char from[16];  /* the last one's sender */
    int answered;   /* our reply to a GET could be sent */
    int replies;    /* replies that reached us */
    uint64_t order[16]; /* req_ids of what was delivered (not SWIM), in order */
    int n_order;
} s_hooked_t;

/* A member answering every GET with a REPLY to its sender, as an agent does. */
static void
s_on_message(void *arg, const char *from, pm_msg_t *m)
{
    s_hooked_t *h = arg;
    h->got++;
    if (h->n_order < 16)
        h->order[h->n_order++] = m->req_id;
    snprintf(h->from, sizeof h->from, "%s", from);
    if (m->type == PM_MSG_GET) {
        pm_msg_t r = {.type = PM_MSG_REPLY, .req_id = m->req_id};
        h->answered += pm_mesh_send(h->mesh, from, &r) == 0;
    } else if (m->type == PM_MSG_REPLY) {
        h->replies++;
    }
}

/* Sends a GET from `from` to `to` through mesh `via`'s port, as a member
 * that has not joined (its SWIM has not reached `to`) would. */
static void
s_send_get(pm_mesh_t *via, const char *from, const char *to)
{
    pm_msg_t m = {.type = PM_MSG_GET, .req_id = 7, .id = "a.1~1", .from = from};
    size_t len;
    uint8_t *buf = pm_wire_encode(&m, &len);
    assert_non_null(buf);
    assert_int_equal(pm_mesh_transmit(via, to, buf, len), 0);
}

/* Runs both meshes for ms of simulated time, 1 ms at a time. */
static void
s_step(pm_clock_fake_t *clocks, pm_mesh_t **meshes, int ms)
{
    for (int t = 0; t < ms; t++)
        for (int i = 0; i < 2; i++) {
            pm_clock_fake_advance(&clocks[i], 1000);
            pm_clock_use(&clocks[i].clock);
            pm_mesh_readable(meshes[i]);
            pm_mesh_tick(meshes[i]);
        }
}

/* Two meshes on an in-memory network, each with its fake clock and a hook
 * (s_on_message): with keys from key_dir (CURVE), else insecure with the
 * second seeded by the first. */
typedef struct {
    pm_memnet_t *net;
    pm_clock_fake_t clocks[2];
    pm_rand_seeded_t rnd;
    pm_config_t *cfg[2];
    pm_mesh_t *mesh[2];
    s_hooked_t hooked[2];
} s_pair_t;

static const char *s_pair_eps[2] = {"tcp://10.0.0.1:7001", "tcp://10.0.0.2:7001"};

static void
s_pair_start(s_pair_t *p, uint64_t seed, const char *name_a, const char *name_b,
             const char *key_dir)
{
    memset(p, 0, sizeof *p);
    const char *names[2] = {name_a, name_b};
    p->net = pm_memnet_new(seed);
    pm_memnet_use(p->net);
    pm_rand_seeded_init(&p->rnd, seed);
    pm_rand_use(&p->rnd.rand);
    for (int i = 0; i < 2; i++) {
        pm_clock_fake_init(&p->clocks[i], 1000000 * (i + 1), 1700000000000LL);
        pm_clock_use(&p->clocks[i].clock);
        p->cfg[i] = pm_config_new();
        s_set(p->cfg[i], "bind", s_pair_eps[i]);
        if (key_dir) {
            s_set(p->cfg[i], "mesh_key_dir", key_dir);
        } else {
            s_set(p->cfg[i], "insecure", "true");
            if (i)
                s_set(p->cfg[i], "seeds", s_pair_eps[0]);
        }
        pm_mesh_hooks_t hooks = {.message = s_on_message};
        char space[16];
        snprintf(space, sizeof space, "%s.1", names[i]);
        p->mesh[i] = p->hooked[i].mesh =
            pm_mesh_new(NULL, p->cfg[i], names[i], space, &hooks, &p->hooked[i]);
        assert_non_null(p->mesh[i]);
    }
}

static void
s_pair_stop(s_pair_t *p)
{
    for (int i = 0; i < 2; i++) {
        pm_clock_use(&p->clocks[i].clock);
        pm_mesh_destroy(&p->mesh[i]);
        pm_config_destroy(&p->cfg[i]);
    }
    pm_clock_use(NULL);
    pm_rand_use(NULL);
    pm_memnet_use(NULL);
    pm_memnet_destroy(&p->net);
}

/* A just-started agent asks a member that has not heard of it yet (its
 * seed gossips it on later): the frame is held until SWIM tells the member
 * where the sender is, then delivered, and the answer reaches the sender.
 * Delivered at once, the answer went nowhere and the asker's relay waited
 * forward_timeout for it (a just-restarted agent's get: UNREACHABLE). A
 * sender that never becomes a member: its frame is dropped after the bound,
 * counted in mesh.unknown_peer, never delivered. */
static void
test_mesh_early_frame_waits_for_membership(void **state)
{
    (void) state;
    char dir[] = "/tmp/pmesh-memnet-keys.XXXXXX", err[256];
    assert_non_null(mkdtemp(dir));
    assert_int_equal(pm_auth_generate_keys(dir, err, sizeof err), 0);
    static s_pair_t pair;
    s_pair_start(&pair, 3, "a", "x", dir);
    const char *const *eps = s_pair_eps;
    pm_clock_fake_t *clocks = pair.clocks;
    pm_mesh_t **mesh = pair.mesh;
    s_hooked_t *hooked = pair.hooked;
    /* x asks a before a has heard of it. */
    s_send_get(mesh[1], "x", eps[0]);
    pm_clock_use(&clocks[0].clock);
    pm_mesh_readable(mesh[0]);
    assert_int_equal(hooked[0].got, 0); /* held: a could not answer it */
    s_step(clocks, mesh, 100);
    assert_int_equal(hooked[0].got, 0); /* still: nothing told a of x */
    /* x joins through a (as through its seed). */
    pm_clock_use(&clocks[1].clock);
    assert_int_equal(pm_swim_join(mesh[1]->swim, eps[0], (uint64_t) pm_mono_ms()), 0);
    s_step(clocks, mesh, 200);
    assert_int_equal(hooked[0].got, 1);
    assert_string_equal(hooked[0].from, "x");
    assert_int_equal(hooked[0].answered, 1);
    assert_int_equal(hooked[1].replies, 1); /* the answer reached the asker */
    assert_int_equal(mesh[0]->unknown_peer, 0);
    /* A sender that never joins. */
    s_send_get(mesh[1], "ghost", eps[0]);
    s_step(clocks, mesh, 1000);
    assert_int_equal(hooked[0].got, 1);
    assert_int_equal(mesh[0]->n_early, 1);
    s_step(clocks, mesh, 5000);
    assert_int_equal(hooked[0].got, 1); /* never delivered */
    assert_int_equal(mesh[0]->n_early, 0);
    assert_int_equal(mesh[0]->unknown_peer, 1);
    s_pair_stop(&pair);
    char path[128];
    snprintf(path, sizeof path, "%s/mesh.key", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/mesh.pub", dir);
    unlink(path);
    rmdir(dir);
}

/* --- a turn's frames to a peer as one (outbox.c) --------------------------------------- */

static uint64_t
s_sent(pm_memnet_t *net)
{
    pm_memnet_stats_t st;
    pm_memnet_stats(net, &st);
    return st.sent;
}

/* Corked, the messages to a peer leave at the uncork as one frame (a lone
 * one as itself), in order, each delivered as if it had come alone; a frame
 * too big to batch goes alone, after what was queued before it. A batch
 * holding a batch, another sender's envelope or garbage: those are dropped
 * and counted, the rest of it delivered. */
static void
test_mesh_batch(void **state)
{
    (void) state;
    static s_pair_t pair;
    s_pair_start(&pair, 5, "a", "b", NULL);
    const char *const *eps = s_pair_eps;
    pm_memnet_t *net = pair.net;
    pm_clock_fake_t *clocks = pair.clocks;
    pm_mesh_t **mesh = pair.mesh;
    s_hooked_t *hooked = pair.hooked;
    for (int t = 0; t < 5000 && !(pm_mesh_alive(mesh[0]) == 2 && pm_mesh_alive(mesh[1]) == 2); t++)
        s_step(clocks, mesh, 1);
    assert_int_equal(pm_mesh_alive(mesh[1]), 2);
    pm_clock_use(&clocks[0].clock);

    /* Three GETs in one turn: one frame, delivered as three, in order. */
    pm_mesh_cork(mesh[0]);
    uint64_t before = s_sent(net);
    for (uint64_t r = 1; r <= 3; r++) {
        pm_msg_t m = {.type = PM_MSG_GET, .req_id = r, .id = "b.1~1"};
        assert_int_equal(pm_mesh_send(mesh[0], "b", &m), 0);
    }
    assert_int_equal(s_sent(net), before); /* nothing left yet */
    pm_mesh_uncork(mesh[0]);
    assert_int_equal(s_sent(net), before + 1);
    pm_clock_use(&clocks[1].clock);
    pm_mesh_readable(mesh[1]);
    assert_int_equal(hooked[1].got, 3);
    assert_int_equal(hooked[1].order[0], 1);
    assert_int_equal(hooked[1].order[1], 2);
    assert_int_equal(hooked[1].order[2], 3);
    assert_int_equal(mesh[1]->recv[PM_MSG_BATCH], 1);
    assert_int_equal(mesh[1]->recv[PM_MSG_GET], 3);
    assert_int_equal(mesh[0]->sent[PM_MSG_GET], 3);
    assert_int_equal(mesh[0]->sent[PM_MSG_BATCH], 1);
    /* b answered each in the same turn, uncorked: three frames. */
    pm_clock_use(&clocks[0].clock);
    pm_mesh_readable(mesh[0]);
    assert_int_equal(hooked[0].replies, 3);
    assert_int_equal(mesh[0]->recv[PM_MSG_BATCH], 0);

    /* A lone message goes as itself. */
    pm_mesh_cork(mesh[0]);
    pm_msg_t m4 = {.type = PM_MSG_GET, .req_id = 4, .id = "b.1~1"};
    assert_int_equal(pm_mesh_send(mesh[0], "b", &m4), 0);
    pm_mesh_uncork(mesh[0]);
    pm_clock_use(&clocks[1].clock);
    pm_mesh_readable(mesh[1]);
    assert_int_equal(hooked[1].got, 4);
    assert_int_equal(mesh[1]->recv[PM_MSG_BATCH], 1);

    /* Too big to batch (300 KiB): alone, after the GET queued before it and
     * before the one after. */
    pm_clock_use(&clocks[0].clock);
    size_t big_len = 300 * 1024;
    uint8_t *big = calloc(1, big_len);
    assert_non_null(big);
    pm_mesh_cork(mesh[0]);
    before = s_sent(net);
    pm_msg_t m5 = {.type = PM_MSG_GET, .req_id = 5, .id = "b.1~1"};
    pm_msg_t m6 = {.type = PM_MSG_SETTLE, .req_id = 6, .id = "b.1~1", .state = 2,
                   .value = big, .value_len = big_len};
    pm_msg_t m7 = {.type = PM_MSG_GET, .req_id = 7, .id = "b.1~1"};
    assert_int_equal(pm_mesh_send(mesh[0], "b", &m5), 0);
    assert_int_equal(pm_mesh_send(mesh[0], "b", &m6), 0);
    assert_int_equal(s_sent(net), before + 2); /* the GET before it, then it */
    assert_int_equal(pm_mesh_send(mesh[0], "b", &m7), 0);
    pm_mesh_uncork(mesh[0]);
    assert_int_equal(s_sent(net), before + 3);
    free(big);
    pm_clock_use(&clocks[1].clock);
    pm_mesh_readable(mesh[1]);
    assert_int_equal(hooked[1].got, 7);
    assert_int_equal(hooked[1].order[4], 5);
    assert_int_equal(hooked[1].order[5], 6);
    assert_int_equal(hooked[1].order[6], 7);

    /* What waits for a member that goes down (or moves) is dropped with its
     * channel, as the transport drops what it still queues for it. */
    pm_clock_use(&clocks[0].clock);
    pm_mesh_cork(mesh[0]);
    before = s_sent(net);
    pm_msg_t m9 = {.type = PM_MSG_GET, .req_id = 99, .id = "b.1~1"};
    assert_int_equal(pm_mesh_send(mesh[0], "b", &m9), 0);
    pm_mesh_outbox_drop(mesh[0], eps[1]);
    pm_mesh_uncork(mesh[0]);
    assert_int_equal(s_sent(net), before);
    pm_clock_use(&clocks[1].clock);
    pm_mesh_readable(mesh[1]);
    assert_int_equal(hooked[1].got, 7);

    /* A batch with a batch inside, another sender's envelope and garbage. */
    pm_msg_t ok = {.type = PM_MSG_GET, .req_id = 8, .id = "b.1~1", .from = "a"};
    pm_msg_t other = {.type = PM_MSG_GET, .req_id = 9, .id = "b.1~1", .from = "z"};
    size_t l_ok, l_other, l_inner;
    uint8_t *b_ok = pm_wire_encode(&ok, &l_ok), *b_other = pm_wire_encode(&other, &l_other);
    pm_bytes_t one[1] = {{b_ok, l_ok}};
    pm_msg_t inner = {.type = PM_MSG_BATCH, .from = "a", .records = one, .record_count = 1};
    uint8_t *b_inner = pm_wire_encode(&inner, &l_inner);
    pm_bytes_t frames[4] = {{b_inner, l_inner}, {b_other, l_other},
                            {(const uint8_t *) "garbage!", 8}, {b_ok, l_ok}};
    pm_msg_t outer = {.type = PM_MSG_BATCH, .from = "a", .records = frames, .record_count = 4};
    size_t l_outer;
    uint8_t *b_outer = pm_wire_encode(&outer, &l_outer);
    assert_non_null(b_outer);
    uint64_t bad = mesh[1]->bad_frames;
    pm_clock_use(&clocks[0].clock);
    assert_int_equal(pm_mesh_transmit(mesh[0], eps[1], b_outer, l_outer), 0);
    pm_clock_use(&clocks[1].clock);
    pm_mesh_readable(mesh[1]);
    assert_int_equal(hooked[1].got, 8); /* only the last one */
    assert_int_equal(hooked[1].order[7], 8);
    assert_int_equal(mesh[1]->bad_frames, bad + 3);
    free(b_ok);
    free(b_other);
    free(b_inner);
    s_pair_stop(&pair);
}

int
main(void)
{
    pm_log_setup(-1, PM_LOG_TEXT, "test"); /* a refused bind is one of the cases */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memnet_rules),
        cmocka_unit_test(test_memnet_delay_reorder_dup),
        cmocka_unit_test(test_transport_on_memnet),
        cmocka_unit_test(test_meshes_join_detect_heal),
        cmocka_unit_test(test_mesh_meta_trim),
        cmocka_unit_test(test_mesh_early_frame_waits_for_membership),
        cmocka_unit_test(test_mesh_batch),
    };
    return cmocka_run_group_tests_name("memnet", tests, NULL, NULL);
}
