/*
 * test_waiters.c - cmocka suite for node/waiters.c and node/thens.c, run on
 * a real agent in this process (its own thread, ipc socket in a temporary
 * directory) driven through the real client library: an await is answered
 * by the settlement, by its timeout, or refused at the client's limit; a
 * continuation runs its function on the source's value (also when the
 * source had settled already) and a failed source rejects its target. The
 * last case drives waiters.c directly on a virtual clock (no loop thread):
 * a wait ends exactly at its deadline, never before; and another member's
 * subscription sent again is one waiter (issue 11).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "agent.h"
#include "agent_priv.h"
#include "config.h"
#include "log.h"
#include "pmesh.h"
#include "relay.h"
#include "session.h"
#include "waiters.h"

typedef struct fx {
    char dir[128];
    char sock[192];
    pm_config_t *cfg;
    pm_agent_t *agent;
    pthread_t thread;
    pm_client_t *a, *b;
} fx_t;

static void *
s_run(void *arg)
{
    pm_agent_run(arg);
    return NULL;
}

static int
setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/pm-waiters-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!fx || !mkdtemp(fx->dir))
        return -1;
    snprintf(fx->sock, sizeof fx->sock, "%s/agent.sock", fx->dir);
    /* The agent stops on SIGTERM through its signalfd: blocked everywhere. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pm_log_setup(PM_LOG_WARN, PM_LOG_TEXT, "t");
    fx->cfg = pm_config_new();
    char err[256];
    if (pm_config_set(fx->cfg, "max_waiters_per_client", "2", err, sizeof err) != 0)
        return -1;
    fx->agent = pm_agent_new(fx->cfg, "t", fx->sock);
    if (!fx->agent || pthread_create(&fx->thread, NULL, s_run, fx->agent) != 0)
        return -1;
    if (pm_client_connect(fx->sock, &fx->a) != PM_OK ||
        pm_client_connect(fx->sock, &fx->b) != PM_OK)
        return -1;
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fx_t *fx = *state;
    pm_client_destroy(&fx->a);
    pm_client_destroy(&fx->b);
    pthread_kill(fx->thread, SIGTERM);
    pthread_join(fx->thread, NULL);
    pm_agent_destroy(&fx->agent);
    pm_config_destroy(&fx->cfg);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static char *
s_create(pm_client_t *c)
{
    pm_create_opts_t o = {0};
    char *id = NULL;
    assert_int_equal(pm_create(c, &o, &id, NULL), PM_OK);
    return id;
}

/* The next reply on c, which must come within 5 s. */
static pm_result_t *
s_next(pm_client_t *c)
{
    pm_result_t *r = NULL;
    assert_int_equal(pm_recv(c, 5000, &r), PM_OK);
    return r;
}

static void
test_await_answered_by_the_settlement(void **state)
{
    fx_t *fx = *state;
    char *id = s_create(fx->a);
    uint64_t req;
    assert_int_equal(pm_send_await(fx->a, id, 10000, &req), PM_OK);
    /* still pending: nothing comes back yet */
    pm_result_t *r = NULL;
    assert_int_equal(pm_recv(fx->a, 100, &r), PM_ERR_WAIT_TIMEOUT);
    assert_int_equal(pm_resolve(fx->b, id, "42", 2), PM_OK);
    r = s_next(fx->a);
    assert_int_equal(r->req_id, req);
    assert_int_equal(r->err, PM_OK);
    assert_non_null(r->promise);
    assert_int_equal(r->promise->state, PM_STATE_RESOLVED);
    assert_memory_equal(r->promise->value, "42", 2);
    pm_result_destroy(&r);
    free(id);
}

static void
test_await_times_out_and_polls(void **state)
{
    fx_t *fx = *state;
    char *id = s_create(fx->a);
    pm_promise_t *p = NULL;
    assert_int_equal(pm_await(fx->a, id, 50, &p), PM_ERR_WAIT_TIMEOUT);
    assert_int_equal(pm_await(fx->a, id, 0, &p), PM_ERR_WAIT_TIMEOUT); /* a poll */
    assert_int_equal(pm_cancel(fx->b, id), PM_OK);
    assert_int_equal(pm_await(fx->a, id, 0, &p), PM_OK);
    assert_int_equal(p->state, PM_STATE_CANCELED);
    pm_promise_destroy(&p);
    free(id);
}

static void
test_await_refused_at_the_limit(void **state)
{
    fx_t *fx = *state;
    char *id = s_create(fx->a);
    uint64_t r1, r2, r3;
    assert_int_equal(pm_send_await(fx->a, id, 10000, &r1), PM_OK);
    assert_int_equal(pm_send_await(fx->a, id, 10000, &r2), PM_OK);
    assert_int_equal(pm_send_await(fx->a, id, 10000, &r3), PM_OK);
    pm_result_t *r = s_next(fx->a); /* the third is over max_waiters_per_client (2) */
    assert_int_equal(r->req_id, r3);
    assert_int_equal(r->err, PM_ERR_LIMIT);
    pm_result_destroy(&r);
    /* another client has its own limit */
    pm_promise_t *p = NULL;
    assert_int_equal(pm_await(fx->b, id, 10, &p), PM_ERR_WAIT_TIMEOUT);
    assert_int_equal(pm_resolve(fx->b, id, "x", 1), PM_OK);
    for (int i = 0; i < 2; i++) {
        r = s_next(fx->a);
        assert_true(r->req_id == r1 || r->req_id == r2);
        assert_int_equal(r->err, PM_OK);
        pm_result_destroy(&r);
    }
    free(id);
}

static void
test_continuations(void **state)
{
    fx_t *fx = *state;
    const char *fns[] = {"double"};
    pm_worker_t *w = NULL;
    assert_int_equal(pm_worker_new(fx->sock, fns, 1, 1, &w), PM_OK);
    /* chained on a pending source */
    char *src = s_create(fx->a), *q = NULL;
    assert_int_equal(pm_then(fx->a, src, "double", 0, &q), PM_OK);
    pm_promise_t *p = NULL;
    assert_int_equal(pm_await(fx->a, q, 0, &p), PM_ERR_WAIT_TIMEOUT);
    assert_int_equal(pm_resolve(fx->b, src, "21", 2), PM_OK);
    pm_invocation_t *inv = NULL;
    assert_int_equal(pm_worker_next(w, 5000, &inv), PM_OK);
    assert_string_equal(inv->function, "double");
    assert_string_equal(inv->target_id, q);
    assert_int_equal(inv->input_len, 2);
    assert_memory_equal(inv->input, "21", 2);
    assert_int_equal(pm_worker_complete(w, inv, "42", 2), PM_OK);
    pm_invocation_destroy(&inv);
    assert_int_equal(pm_await(fx->a, q, 5000, &p), PM_OK);
    assert_int_equal(p->state, PM_STATE_RESOLVED);
    assert_memory_equal(p->value, "42", 2);
    pm_promise_destroy(&p);
    free(q);
    /* chained on a source that has resolved already: runs at once */
    assert_int_equal(pm_then(fx->a, src, "double", 0, &q), PM_OK);
    assert_int_equal(pm_worker_next(w, 5000, &inv), PM_OK);
    assert_string_equal(inv->target_id, q);
    assert_int_equal(pm_worker_fail(w, inv, "no"), PM_OK);
    pm_invocation_destroy(&inv);
    assert_int_equal(pm_await(fx->a, q, 5000, &p), PM_OK);
    assert_int_equal(p->state, PM_STATE_REJECTED);
    pm_promise_destroy(&p);
    free(q);
    free(src);
    /* a failed source rejects the target, naming the link that failed */
    src = s_create(fx->a);
    assert_int_equal(pm_then(fx->a, src, "double", 0, &q), PM_OK);
    assert_int_equal(pm_reject(fx->b, src, "broken"), PM_OK);
    assert_int_equal(pm_await(fx->a, q, 5000, &p), PM_OK);
    assert_int_equal(p->state, PM_STATE_REJECTED);
    assert_non_null(strstr(p->reason, src));
    assert_non_null(strstr(p->reason, "broken"));
    assert_int_equal(pm_worker_next(w, 100, &inv), PM_ERR_WAIT_TIMEOUT); /* nothing ran */
    pm_promise_destroy(&p);
    free(q);
    free(src);
    pm_worker_destroy(&w);
}

/* An agent driven by the test itself (no loop), with 3 waiters per client,
 * in a fresh directory; s_lone_agent_end stops it and removes the directory. */
typedef struct s_lone {
    char dir[128], sock[192];
    pm_config_t *cfg;
    pm_agent_t *agent;
} s_lone_t;

static pm_agent_t *
s_lone_agent(s_lone_t *l)
{
    char err[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(l->dir, sizeof l->dir, "%s/pm-waiters-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(l->dir));
    snprintf(l->sock, sizeof l->sock, "%s/agent.sock", l->dir);
    l->cfg = pm_config_new();
    assert_int_equal(pm_config_set(l->cfg, "max_waiters_per_client", "3", err, sizeof err), 0);
    l->agent = pm_agent_new(l->cfg, "t", l->sock);
    assert_non_null(l->agent);
    return l->agent;
}

/* As s_lone_agent, with a mesh on a free loopback port (no peers: a reply
 * to another member goes nowhere and shows as one dropped). */
static pm_agent_t *
s_lone_agent_mesh(s_lone_t *l, const char *sub_resend)
{
    char err[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(l->dir, sizeof l->dir, "%s/pm-waiters-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(l->dir));
    snprintf(l->sock, sizeof l->sock, "%s/agent.sock", l->dir);
    l->agent = NULL;
    l->cfg = NULL;
    for (int attempt = 0; attempt < 20 && !l->agent; attempt++) {
        uint16_t r = 0;
        assert_int_equal(getrandom(&r, sizeof r, 0), (ssize_t) sizeof r);
        char ep[64];
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 20000 + r % 30000);
        pm_config_destroy(&l->cfg);
        l->cfg = pm_config_new();
        assert_int_equal(pm_config_set(l->cfg, "bind", ep, err, sizeof err), 0);
        assert_int_equal(pm_config_set(l->cfg, "insecure", "true", err, sizeof err), 0);
        if (sub_resend)
            assert_int_equal(pm_config_set(l->cfg, "sub_resend", sub_resend, err, sizeof err), 0);
        l->agent = pm_agent_new(l->cfg, "t", l->sock);
    }
    assert_non_null(l->agent);
    return l->agent;
}

static void
s_lone_agent_end(s_lone_t *l)
{
    pm_agent_destroy(&l->agent);
    pm_config_destroy(&l->cfg);
    rmdir(l->dir);
}

/* ---- waiters.c on a virtual clock ------------------------------------------ */

static void
test_deadlines_on_a_virtual_clock(void **state)
{
    (void) state;
    s_lone_t lone;
    pm_agent_t *a = s_lone_agent(&lone);
    /* a session whose replies go nowhere: each reply shows as one dropped */
    pm_session_t *s = pm_session_get(a, (const uint8_t *) "x", 1, 0);
    pm_create_args_t ca = {.id = "t-v~1"};
    pm_prom_t *p;
    assert_int_equal(pm_store_create(a->store, &ca, 1, &p, NULL), PM_OK);
    uint64_t replies = a->replies_dropped;

    /* a 500 ms wait from t=1000 ends at 1500, not before */
    pm_msg_t m = {.type = PM_MSG_AWAIT, .id = "t-v~1", .req_id = 1, .timeout_ms = 500};
    assert_int_equal(pm_waiter_do_await(a, s, &m, 1000), PM_OK);
    assert_int_equal(s->n_waiters, 1);
    pm_waiter_fire_timeouts(a, 1499);
    assert_int_equal(s->n_waiters, 1);
    assert_int_equal(a->replies_dropped, replies);
    pm_waiter_fire_timeouts(a, 1500);
    assert_int_equal(s->n_waiters, 0);
    assert_int_equal(a->waiters_timed_out, 1);
    assert_int_equal(a->replies_dropped, replies + 1);

    /* a poll answers at once and leaves no waiter */
    m.timeout_ms = 0;
    assert_int_equal(pm_waiter_do_await(a, s, &m, 2000), PM_OK);
    assert_int_equal(s->n_waiters, 0);
    assert_int_equal(a->replies_dropped, replies + 2);

    /* a wait of two centuries has no deadline: only the settlement ends it */
    m.timeout_ms = 200LL * 365 * 24 * 3600 * 1000;
    assert_int_equal(pm_waiter_do_await(a, s, &m, 2000), PM_OK);
    m.timeout_ms = 10;
    assert_int_equal(pm_waiter_do_await(a, s, &m, 2000), PM_OK);
    m.timeout_ms = 20;
    assert_int_equal(pm_waiter_do_await(a, s, &m, 2000), PM_OK);
    /* the client's limit (3) */
    assert_int_equal(pm_waiter_do_await(a, s, &m, 2000), PM_ERR_LIMIT);
    assert_int_equal(s->n_waiters, 3);
    pm_waiter_fire_timeouts(a, INT64_MAX / 2);
    assert_int_equal(s->n_waiters, 1);
    assert_int_equal(a->waiters_timed_out, 3);
    assert_int_equal(pm_store_settle(a->store, "t-v~1", PM_STATE_RESOLVED, "x", 1, 5, NULL),
                     PM_OK);
    assert_int_equal(s->n_waiters, 0);
    assert_null(p->watches);
    assert_int_equal(a->replies_dropped, replies + 5);

    /* closing a session drops its waiters and their watches */
    pm_create_args_t cb = {.id = "t-v~2"};
    assert_int_equal(pm_store_create(a->store, &cb, 1, &p, NULL), PM_OK);
    m.id = "t-v~2";
    m.timeout_ms = 1000;
    assert_int_equal(pm_waiter_do_await(a, s, &m, 3000), PM_OK);
    assert_non_null(p->watches);
    pm_session_close(a, s, "test");
    assert_null(p->watches);
    pm_waiter_fire_timeouts(a, INT64_MAX / 2); /* its timer went with it */
    assert_int_equal(a->waiters_timed_out, 3);

    s_lone_agent_end(&lone);
}

/* Issue 11: another member sends its subscription (an AWAIT without end,
 * from its peer session) again until it is answered; the owner keeps one
 * waiter per subscription (member, req_id) however often it hears it, so it
 * is answered once and the member's waiters cannot pile up to the limit. */
static void
test_subscription_sent_again_is_one_waiter(void **state)
{
    (void) state;
    s_lone_t lone;
    pm_agent_t *a = s_lone_agent(&lone);
    pm_session_t *peer = pm_session_peer(a, "n9");
    pm_session_t *cl = pm_session_get(a, (const uint8_t *) "x", 1, 0);
    pm_create_args_t ca = {.id = "t-s~1"};
    pm_prom_t *p;
    assert_int_equal(pm_store_create(a->store, &ca, 1, &p, NULL), PM_OK);

    pm_msg_t m = {.type = PM_MSG_AWAIT, .id = "t-s~1", .req_id = 7, .timeout_ms = -1};
    for (int i = 0; i < 5; i++) /* the subscription and four resends */
        assert_int_equal(pm_waiter_do_await(a, peer, &m, 1000 + i * 500), PM_OK);
    assert_int_equal(peer->n_waiters, 1);
    size_t watches = 0;
    for (pm_watch_t *w = p->watches; w; w = w->next)
        watches++;
    assert_int_equal(watches, 1);
    /* another subscription of that member (another relay id) is another waiter */
    m.req_id = 8;
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 4000), PM_OK);
    assert_int_equal(peer->n_waiters, 2);
    /* a client's awaits are its own, never merged */
    pm_msg_t c = {.type = PM_MSG_AWAIT, .id = "t-s~1", .req_id = 7, .timeout_ms = 60000};
    assert_int_equal(pm_waiter_do_await(a, cl, &c, 4000), PM_OK);
    assert_int_equal(pm_waiter_do_await(a, cl, &c, 4000), PM_OK);
    assert_int_equal(cl->n_waiters, 2);
    /* the member's session closed (taken for dead): its subscriptions go, and
     * the next resend is a new waiter in the new session */
    pm_session_close(a, peer, "member down");
    peer = pm_session_peer(a, "n9");
    m.req_id = 7;
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 5000), PM_OK);
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 5500), PM_OK);
    assert_int_equal(peer->n_waiters, 1);
    pm_session_close(a, peer, "test");
    pm_session_close(a, cl, "test");
    assert_null(p->watches);

    s_lone_agent_end(&lone);
}

/* Issue 15: a resend that crosses the owner's answer (the answer held until
 * the settle is on the backups, or on its way) is not answered a second
 * time within 2 x sub_resend of the answer (1 s at least); after that window a repeat is
 * answered again, so an answer that was lost is recovered by a later
 * resend. Replies to the peer go nowhere here (no mesh): each shows as one
 * dropped reply. */
static void
test_subscription_answered_once(void **state)
{
    (void) state;
    s_lone_t lone;
    pm_agent_t *a = s_lone_agent_mesh(&lone, NULL);
    assert_int_equal(pm_relay_sub_resend_ms(a), 500); /* the default: window 1 s */
    pm_session_t *peer = pm_session_peer(a, "n9");
    pm_create_args_t ca = {.id = "t-o~1"};
    pm_prom_t *p;
    assert_int_equal(pm_store_create(a->store, &ca, 1, &p, NULL), PM_OK);
    uint64_t replies = a->replies_dropped;

    pm_msg_t m = {.type = PM_MSG_AWAIT, .id = "t-o~1", .req_id = 7, .timeout_ms = -1};
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 1000), PM_OK);
    assert_int_equal(a->replies_dropped, replies); /* pending: a waiter, no answer */
    /* settled at t=1200: the waiter answers the member (once) */
    a->now_mono = 1200;
    assert_int_equal(pm_store_settle(a->store, "t-o~1", PM_STATE_RESOLVED, "v", 1, 5, NULL),
                     PM_OK);
    assert_int_equal(peer->n_waiters, 0);
    assert_int_equal(a->replies_dropped, replies + 1);
    /* the resend that crossed that answer (sent at 1500, before the member
     * heard it): not answered again, counted */
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 1500), PM_OK);
    assert_int_equal(a->replies_dropped, replies + 1);
    assert_int_equal(a->sub_repeats_dropped, 1);
    /* nor the next one inside the window (1200 + 2 x 500) */
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 2199), PM_OK);
    assert_int_equal(a->replies_dropped, replies + 1);
    assert_int_equal(a->sub_repeats_dropped, 2);
    /* the member still resends after the window: our answer was lost; it is
     * answered again, and that answer opens a new window */
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 2200), PM_OK);
    assert_int_equal(a->replies_dropped, replies + 2);
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 2700), PM_OK);
    assert_int_equal(a->replies_dropped, replies + 2);
    assert_int_equal(a->sub_repeats_dropped, 3);
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 3200), PM_OK);
    assert_int_equal(a->replies_dropped, replies + 3);
    /* another subscription of that member (another relay id), another
     * member's with the same relay id, and a poll: answered, each once */
    m.req_id = 8;
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 3300), PM_OK);
    assert_int_equal(a->replies_dropped, replies + 4);
    pm_session_t *other = pm_session_peer(a, "n8");
    m.req_id = 7;
    assert_int_equal(pm_waiter_do_await(a, other, &m, 3300), PM_OK);
    assert_int_equal(a->replies_dropped, replies + 5);
    m.timeout_ms = 0;
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 3300), PM_OK);
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 3300), PM_OK);
    assert_int_equal(a->replies_dropped, replies + 7);
    /* a client's awaits are never dropped */
    pm_session_t *cl = pm_session_get(a, (const uint8_t *) "x", 1, 0);
    pm_msg_t c = {.type = PM_MSG_AWAIT, .id = "t-o~1", .req_id = 7, .timeout_ms = -1};
    assert_int_equal(pm_waiter_do_await(a, cl, &c, 3300), PM_OK);
    assert_int_equal(pm_waiter_do_await(a, cl, &c, 3300), PM_OK);
    assert_int_equal(a->replies_dropped, replies + 9);
    assert_int_equal(a->sub_repeats_dropped, 3);
    /* answered subscriptions are forgotten after their window (the sweep
     * runs when a later one is remembered) */
    assert_non_null(a->sub_answers);
    pm_create_args_t cb = {.id = "t-o~2"};
    assert_int_equal(pm_store_create(a->store, &cb, 1, &p, NULL), PM_OK);
    assert_int_equal(pm_store_settle(a->store, "t-o~2", PM_STATE_RESOLVED, "w", 1, 5, NULL),
                     PM_OK);
    m.id = "t-o~2";
    m.timeout_ms = -1;
    assert_int_equal(pm_waiter_do_await(a, peer, &m, 9000), PM_OK);
    assert_int_equal(zhashx_size(a->sub_answers), 1);
    pm_session_close(a, peer, "test");
    pm_session_close(a, other, "test");
    pm_session_close(a, cl, "test");

    s_lone_agent_end(&lone);
}

/* The resend period is the sub_resend key; the owner's window for repeats
 * is twice that, 1 s at least. */
static void
test_sub_resend_key(void **state)
{
    (void) state;
    char err[256];
    pm_config_t *cfg = pm_config_new();
    assert_int_not_equal(pm_config_set(cfg, "sub_resend", "5ms", err, sizeof err), 0);
    pm_config_destroy(&cfg);
    struct {
        const char *period;
        int64_t ms, window;
    } cases[] = {{"2s", 2000, 4000}, {"100ms", 100, 1000}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_lone_t lone;
        pm_agent_t *a = s_lone_agent_mesh(&lone, cases[i].period);
        assert_int_equal(pm_relay_sub_resend_ms(a), cases[i].ms);
        pm_session_t *peer = pm_session_peer(a, "n9");
        pm_create_args_t ca = {.id = "t-k~1"};
        pm_prom_t *p;
        assert_int_equal(pm_store_create(a->store, &ca, 1, &p, NULL), PM_OK);
        assert_int_equal(pm_store_settle(a->store, "t-k~1", PM_STATE_RESOLVED, "v", 1, 5, NULL),
                         PM_OK);
        uint64_t replies = a->replies_dropped;
        pm_msg_t m = {.type = PM_MSG_AWAIT, .id = "t-k~1", .req_id = 3, .timeout_ms = -1};
        assert_int_equal(pm_waiter_do_await(a, peer, &m, 1000), PM_OK); /* answered */
        assert_int_equal(pm_waiter_do_await(a, peer, &m, 1000 + cases[i].window - 1), PM_OK);
        assert_int_equal(a->replies_dropped, replies + 1);
        assert_int_equal(a->sub_repeats_dropped, 1);
        assert_int_equal(pm_waiter_do_await(a, peer, &m, 1000 + cases[i].window), PM_OK);
        assert_int_equal(a->replies_dropped, replies + 2);
        pm_session_close(a, peer, "test");
        s_lone_agent_end(&lone);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_await_answered_by_the_settlement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_await_times_out_and_polls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_await_refused_at_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_continuations, setup, teardown),
        cmocka_unit_test(test_deadlines_on_a_virtual_clock),
        cmocka_unit_test(test_subscription_sent_again_is_one_waiter),
        cmocka_unit_test(test_subscription_answered_once),
        cmocka_unit_test(test_sub_resend_key),
    };
    return cmocka_run_group_tests_name("waiters and continuations", tests, NULL, NULL);
}
