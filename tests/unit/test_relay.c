/*
 * test_relay.c - cmocka suite for node/relay.c (with waiters.c and
 * takeover.c behind it), run on real agents in this process, each in its own
 * thread with its mesh on 127.0.0.1, driven through the real client library:
 * requests on another member's promise are relayed to it and answered with
 * its reply; a remote await is answered by the owner's settlement, and with
 * OWNER_LOST once the owner is gone and nobody took over; with backups, the
 * owner's backup takes its space over with everything acknowledged; and an await
 * that would be parked while its client is at max_waiters is refused with
 * LIMIT, never left unanswered.
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
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "clock.h"
#include "config.h"
#include "log.h"
#include "pmesh.h"

typedef struct s_node {
    char name[16];
    char sock[192];
    int port;
    pm_config_t *cfg;
    pm_agent_t *agent;
    pthread_t thread;
    int running;
} s_node_t;

static char s_dir[128];

static void *
s_run(void *arg)
{
    pm_agent_run(arg);
    return NULL;
}

static void
s_set(pm_config_t *cfg, const char *k, const char *v)
{
    char err[256];
    assert_int_equal(pm_config_set(cfg, k, v, err, sizeof err), 0);
}

/* Starts agent `name` with its mesh on a free loopback port (seeded by
 * `seed`, if not NULL) and the given replicas and waiter limit. */
static void
s_start(s_node_t *n, const char *name, const s_node_t *seed, const char *replicas,
        const char *max_waiters)
{
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%s", name);
    /* (a socket of its own per start: a failed case leaves its agents) */
    static int starts;
    snprintf(n->sock, sizeof n->sock, "%s/%s-%d.sock", s_dir, name, ++starts);
    for (int attempt = 0; attempt < 20 && !n->agent; attempt++) {
        uint16_t r = 0;
        assert_int_equal(getrandom(&r, sizeof r, 0), (ssize_t) sizeof r);
        n->port = 20000 + r % 30000;
        char ep[64];
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", n->port);
        pm_config_destroy(&n->cfg);
        n->cfg = pm_config_new();
        s_set(n->cfg, "bind", ep);
        s_set(n->cfg, "insecure", "true");
        s_set(n->cfg, "replicas", replicas);
        s_set(n->cfg, "max_waiters_per_client", max_waiters);
        s_set(n->cfg, "probe_interval", "50ms");
        s_set(n->cfg, "probe_timeout", "25ms");
        s_set(n->cfg, "takeover_grace", "300ms");
        s_set(n->cfg, "data_dir", "");
        s_set(n->cfg, "forward_timeout", "5s");
        if (seed) {
            snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", seed->port);
            s_set(n->cfg, "seeds", ep);
        }
        n->agent = pm_agent_new(n->cfg, name, n->sock);
    }
    assert_non_null(n->agent);
    assert_int_equal(pthread_create(&n->thread, NULL, s_run, n->agent), 0);
    n->running = 1;
}

static void
s_stop(s_node_t *n)
{
    if (n->running) {
        pthread_kill(n->thread, SIGTERM);
        pthread_join(n->thread, NULL);
        n->running = 0;
    }
    pm_agent_destroy(&n->agent);
    pm_config_destroy(&n->cfg);
}

/* Waits (up to 10 s) until client c's agent sees `alive` members alive. */
static void
s_wait_members(pm_client_t *c, int alive)
{
    int64_t until = pm_mono_ms() + 10000;
    for (;;) {
        char *json = NULL;
        int seen = 0;
        if (pm_members(c, &json) == PM_OK)
            for (const char *p = json; (p = strstr(p, "\"alive\"")); p++)
                seen++;
        free(json);
        if (seen >= alive)
            return;
        assert_true(pm_mono_ms() < until);
        usleep(20 * 1000);
    }
}

/* Waits (up to 10 s) until c's agent has a backup counted for its records. */
static void
s_wait_backed_up(pm_client_t *c)
{
    int64_t until = pm_mono_ms() + 10000;
    for (;;) {
        char *json = NULL;
        int ready = pm_status(c, &json) == PM_OK && strstr(json, "\"counted\":true");
        free(json);
        if (ready)
            return;
        assert_true(pm_mono_ms() < until);
        usleep(20 * 1000);
    }
}

static int
setup(void **state)
{
    (void) state;
    const char *tmp = getenv("TMPDIR");
    snprintf(s_dir, sizeof s_dir, "%s/pm-relay-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(s_dir))
        return -1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pm_log_setup(PM_LOG_ERROR, PM_LOG_TEXT, "t");
    return 0;
}

static int
teardown(void **state)
{
    (void) state;
    rmdir(s_dir);
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

static void
test_parked_await_at_the_limit(void **state)
{
    (void) state;
    /* Alone, just started, with backups configured: an id of a space never
     * heard of is parked a moment (its owner may announce it) rather than
     * refused at once. */
    s_node_t n1;
    s_start(&n1, "n1", NULL, "2", "1");
    pm_client_t *c = NULL;
    assert_int_equal(pm_client_connect(n1.sock, &c), PM_OK);
    uint64_t r1, r2;
    assert_int_equal(pm_send_await(c, "zz-1~1", 20000, &r1), PM_OK);
    assert_int_equal(pm_send_await(c, "zz-1~2", 20000, &r2), PM_OK);
    /* the second is over the limit of 1: refused now, not parked unanswered */
    pm_result_t *r = NULL;
    assert_int_equal(pm_recv(c, 1000, &r), PM_OK);
    assert_int_equal(r->req_id, r2);
    assert_int_equal(r->err, PM_ERR_LIMIT);
    pm_result_destroy(&r);
    /* the first ends once the space is still unknown after the wait */
    assert_int_equal(pm_recv(c, 10000, &r), PM_OK);
    assert_int_equal(r->req_id, r1);
    assert_int_equal(r->err, PM_ERR_NOT_FOUND);
    pm_result_destroy(&r);
    pm_client_destroy(&c);
    s_stop(&n1);
}

static void
test_relayed_requests_and_owner_lost(void **state)
{
    (void) state;
    s_node_t n1, n2;
    s_start(&n1, "n1", NULL, "1", "10");
    s_start(&n2, "n2", &n1, "1", "10");
    pm_client_t *c1 = NULL, *c2 = NULL;
    assert_int_equal(pm_client_connect(n1.sock, &c1), PM_OK);
    assert_int_equal(pm_client_connect(n2.sock, &c2), PM_OK);
    s_wait_members(c1, 2);
    s_wait_members(c2, 2);
    /* n2 owns p and q; n1's client works on them through relays */
    char *p = s_create(c2), *q = s_create(c2);
    uint64_t req;
    assert_int_equal(pm_send_await(c1, p, 20000, &req), PM_OK);
    assert_int_equal(pm_resolve(c1, p, "v", 1), PM_OK); /* a relayed settle */
    pm_result_t *r = NULL;
    assert_int_equal(pm_recv(c1, 5000, &r), PM_OK);
    assert_int_equal(r->req_id, req);
    assert_int_equal(r->err, PM_OK);
    assert_int_equal(r->promise->state, PM_STATE_RESOLVED);
    pm_result_destroy(&r);
    pm_promise_t *got = NULL;
    assert_int_equal(pm_get(c1, p, &got), PM_OK); /* a relayed get */
    assert_string_equal(got->id, p);
    assert_int_equal(got->state, PM_STATE_RESOLVED);
    pm_promise_destroy(&got);
    assert_int_equal(pm_get(c1, "n2-nope~1", &got), PM_ERR_NOT_FOUND);
    /* the owner stops, nobody backs it up: the await waiting there hears
     * that it stopped; later requests hear OWNER_LOST */
    assert_int_equal(pm_send_await(c1, q, 20000, &req), PM_OK);
    assert_int_equal(pm_recv(c1, 200, &r), PM_ERR_WAIT_TIMEOUT);
    pm_client_destroy(&c2);
    s_stop(&n2);
    assert_int_equal(pm_recv(c1, 5000, &r), PM_OK);
    assert_int_equal(r->req_id, req);
    assert_true(r->err == PM_ERR_AGENT_SHUTTING_DOWN || r->err == PM_ERR_OWNER_LOST);
    pm_result_destroy(&r);
    int64_t until = pm_mono_ms() + 5000;
    while (pm_get(c1, q, &got) != PM_ERR_OWNER_LOST) /* once n1 has seen it leave */
        assert_true(pm_mono_ms() < until);
    pm_promise_t *none = NULL;
    assert_int_equal(pm_await(c1, q, 1000, &none), PM_ERR_OWNER_LOST);
    free(p);
    free(q);
    pm_client_destroy(&c1);
    s_stop(&n1);
}

static void
test_takeover(void **state)
{
    (void) state;
    s_node_t n1, n2;
    s_start(&n1, "n1", NULL, "2", "10");
    s_start(&n2, "n2", &n1, "2", "10");
    pm_client_t *c1 = NULL, *c2 = NULL;
    assert_int_equal(pm_client_connect(n1.sock, &c1), PM_OK);
    assert_int_equal(pm_client_connect(n2.sock, &c2), PM_OK);
    s_wait_members(c1, 2);
    s_wait_members(c2, 2);
    s_wait_backed_up(c2); /* n1 holds n2's records */
    char *p = s_create(c2), *done = s_create(c2);
    assert_int_equal(pm_resolve(c2, done, "before", 6), PM_OK);
    uint64_t req;
    assert_int_equal(pm_send_await(c1, p, 20000, &req), PM_OK);
    pm_result_t *r = NULL;
    assert_int_equal(pm_recv(c1, 200, &r), PM_ERR_WAIT_TIMEOUT);
    pm_client_destroy(&c2);
    s_stop(&n2);
    /* the await that waited at n2 is answered (n2 said it was stopping) */
    assert_int_equal(pm_recv(c1, 5000, &r), PM_OK);
    assert_int_equal(r->req_id, req);
    assert_int_equal(r->err, PM_ERR_AGENT_SHUTTING_DOWN);
    pm_result_destroy(&r);
    /* n1 took n2's space over from its copy: p can be settled there, and
     * what n2 had acknowledged is there */
    int64_t until = pm_mono_ms() + 10000;
    while (pm_resolve(c1, p, "after", 5) != PM_OK)
        assert_true(pm_mono_ms() < until);
    pm_promise_t *got = NULL;
    assert_int_equal(pm_await(c1, p, 0, &got), PM_OK);
    assert_int_equal(got->state, PM_STATE_RESOLVED);
    assert_memory_equal(got->value, "after", 5);
    pm_promise_destroy(&got);
    assert_int_equal(pm_get(c1, done, &got), PM_OK);
    assert_int_equal(got->state, PM_STATE_RESOLVED);
    assert_memory_equal(got->value, "before", 6);
    pm_promise_destroy(&got);
    free(p);
    free(done);
    pm_client_destroy(&c1);
    s_stop(&n1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parked_await_at_the_limit),
        cmocka_unit_test(test_relayed_requests_and_owner_lost),
        cmocka_unit_test(test_takeover),
    };
    return cmocka_run_group_tests_name("relays", tests, setup, teardown);
}
