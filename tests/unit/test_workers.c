/*
 * test_workers.c - cmocka suite for node/workers.c, driven through fake hooks
 * that capture every message sent to a worker and settle targets in a real
 * store: registration, dispatch to free slots, concurrency, round-robin,
 * queueing until a worker appears, results settling targets, NOT_HOLDER
 * answers, re-queueing when a worker goes away, and dropping invocations
 * whose target was settled before dispatch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"
#include "workers.h"

#define S_MAX_VALUE 64

typedef struct {
    void *who;
    char inv_id[300];
    char function[300];
    uint8_t input[128];
    size_t input_len;
    char target[300];
    uint32_t attempt;
} s_sent_t;

typedef struct {
    char target[300];
    int state;
    char data[256];
    size_t len;
    int rc;
    char onode[64], oinv[64]; /* its origin ("": none) */
} s_settled_t;

/* One fake owner per test (reset by s_setup). */
static struct {
    pm_store_t *store;
    pm_workers_t *workers;
    s_sent_t sent[256];
    size_t n_sent;
    s_settled_t settled[256];
    size_t n_settled;
} s_ctx;

/* Worker session handles: only their addresses matter. */
static int s_w1, s_w2, s_w3;
#define W1 ((void *) &s_w1)
#define W2 ((void *) &s_w2)
#define W3 ((void *) &s_w3)

static void
s_send(void *arg, void *who, const pm_msg_t *m)
{
    assert_ptr_equal(arg, &s_ctx);
    assert_int_equal(m->type, PM_MSG_INVOKE);
    assert_true(s_ctx.n_sent < 256);
    assert_true(m->value_len <= sizeof s_ctx.sent[0].input);
    s_sent_t *s = &s_ctx.sent[s_ctx.n_sent++];
    s->who = who;
    snprintf(s->inv_id, sizeof s->inv_id, "%s", m->invocation_id);
    snprintf(s->function, sizeof s->function, "%s", m->function);
    if (m->value_len)
        memcpy(s->input, m->value, m->value_len);
    s->input_len = m->value_len;
    snprintf(s->target, sizeof s->target, "%s", m->target_id);
    s->attempt = m->attempt;
}

static int
s_settle(void *arg, const pm_workers_origin_t *origin, const char *function, const char *target,
         int state, const void *data, size_t len)
{
    assert_ptr_equal(arg, &s_ctx);
    assert_non_null(origin);
    assert_non_null(function);
    assert_true(s_ctx.n_settled < 256);
    s_settled_t *s = &s_ctx.settled[s_ctx.n_settled++];
    snprintf(s->target, sizeof s->target, "%s", target);
    snprintf(s->onode, sizeof s->onode, "%s", origin->node ? origin->node : "");
    snprintf(s->oinv, sizeof s->oinv, "%s", origin->inv_id ? origin->inv_id : "");
    s->state = state;
    s->len = len;
    memcpy(s->data, data, len < sizeof s->data ? len : sizeof s->data);
    s->rc = pm_store_settle(s_ctx.store, target, state, data, len, 1, NULL);
    return s->rc;
}

/* Unknown targets may live elsewhere: they count as waiting. */
static int
s_pending(void *arg, const char *target)
{
    assert_ptr_equal(arg, &s_ctx);
    pm_prom_t *p = pm_store_get(s_ctx.store, target);
    return !p || p->state == PM_STATE_PENDING;
}

static const pm_workers_hooks_t s_hooks = {
    .send = s_send, .settle = s_settle, .pending = s_pending};

static int
s_setup(void **state)
{
    (void) state;
    memset(&s_ctx, 0, sizeof s_ctx);
    pm_store_limits_t limits = {
        .max_value_bytes = S_MAX_VALUE, .max_labels = 4, .max_id_bytes = 256};
    s_ctx.store = pm_store_new(&limits);
    s_ctx.workers = pm_workers_new("sp-1", &s_hooks, &s_ctx);
    return s_ctx.store && s_ctx.workers ? 0 : -1;
}

static int
s_teardown(void **state)
{
    (void) state;
    pm_workers_destroy(&s_ctx.workers);
    pm_store_destroy(&s_ctx.store);
    return s_ctx.workers || s_ctx.store ? -1 : 0;
}

static void
s_target(const char *id)
{
    pm_create_args_t a = {.id = id};
    pm_prom_t *p;
    assert_int_equal(pm_store_create(s_ctx.store, &a, 0, &p, NULL), PM_OK);
}

static void
s_register(void *who, const char *fn, uint32_t concurrency)
{
    const char *fns[1] = {fn};
    assert_int_equal(pm_workers_register(s_ctx.workers, who, fns, 1, concurrency), PM_OK);
}

static void
s_invoke(const char *fn, const char *target, const char *input)
{
    assert_int_equal(pm_workers_invoke(s_ctx.workers, fn, (const uint8_t *) input,
                                       input ? strlen(input) : 0, target, NULL),
                     PM_OK);
}

static int
s_result(void *who, const char *inv_id, int ok, const void *value, size_t len, const char *reason)
{
    pm_msg_t r = {.type = PM_MSG_RESULT, .invocation_id = inv_id, .ok = ok, .value = value,
                  .value_len = len, .reason = reason ? reason : ""};
    return pm_workers_result(s_ctx.workers, who, &r);
}

static pm_workers_stats_t
s_stats(void)
{
    pm_workers_stats_t st;
    pm_workers_stats(s_ctx.workers, &st);
    return st;
}

static pm_prom_t *
s_get(const char *id)
{
    pm_prom_t *p = pm_store_get(s_ctx.store, id);
    assert_non_null(p);
    return p;
}

static size_t
s_settles_of(const char *target)
{
    size_t n = 0;
    for (size_t i = 0; i < s_ctx.n_settled; i++)
        n += strcmp(s_ctx.settled[i].target, target) == 0;
    return n;
}

/* ---- tests ------------------------------------------------------------------- */

static void
test_register(void **state)
{
    (void) state;
    const char *none[1] = {""};
    const char *two[2] = {"f", ""};
    const char *f[1] = {"f"};
    assert_int_equal(pm_workers_register(s_ctx.workers, W1, f, 0, 1), PM_ERR_BAD_REQUEST);
    assert_int_equal(pm_workers_register(s_ctx.workers, W1, f, 1, 0), PM_ERR_BAD_REQUEST);
    assert_int_equal(pm_workers_register(s_ctx.workers, W1, none, 1, 1), PM_ERR_BAD_REQUEST);
    assert_int_equal(pm_workers_register(s_ctx.workers, W1, two, 2, 1), PM_ERR_BAD_REQUEST);
    assert_false(pm_workers_is_worker(s_ctx.workers, W1));
    assert_int_equal(s_stats().workers, 0);
    assert_false(pm_workers_serves(s_ctx.workers, "f"));

    s_register(W1, "f", 2);
    assert_true(pm_workers_is_worker(s_ctx.workers, W1));
    assert_false(pm_workers_is_worker(s_ctx.workers, W2));
    assert_true(pm_workers_serves(s_ctx.workers, "f"));
    assert_false(pm_workers_serves(s_ctx.workers, "g"));
    assert_int_equal(s_stats().workers, 1);
    /* Registering again adds functions, is still one worker. */
    s_register(W1, "g", 3);
    s_register(W1, "f", 3);
    assert_int_equal(s_stats().workers, 1);
    assert_true(pm_workers_serves(s_ctx.workers, "g"));
    pm_fn_cap_t caps[4];
    assert_int_equal(pm_workers_caps(s_ctx.workers, caps, 4), 2);
    for (int i = 0; i < 2; i++) {
        assert_true(!strcmp(caps[i].name, "f") || !strcmp(caps[i].name, "g"));
        assert_int_equal(caps[i].total, 3);
        assert_int_equal(caps[i].free, 3);
    }
    assert_int_equal(s_ctx.n_sent, 0);
    pm_workers_forget(s_ctx.workers, W2); /* not a worker: no-op */
    assert_int_equal(s_stats().workers, 1);
}

static void
test_invoke_dispatches_to_free_slot(void **state)
{
    (void) state;
    s_register(W1, "resize", 1);
    s_target("t1");
    s_target("t2");
    const uint8_t input[] = {'i', 0, 'n', 0xfe};
    assert_int_equal(pm_workers_invoke(s_ctx.workers, "resize", input, sizeof input, "t1", NULL), PM_OK);
    assert_int_equal(s_ctx.n_sent, 1);
    s_sent_t *s = &s_ctx.sent[0];
    assert_ptr_equal(s->who, W1);
    assert_string_equal(s->function, "resize");
    assert_string_equal(s->target, "t1");
    assert_int_equal(s->attempt, 1);
    assert_int_equal(s->input_len, sizeof input);
    assert_memory_equal(s->input, input, sizeof input);
    assert_int_equal(strncmp(s->inv_id, "sp-1~i", 6), 0);
    pm_workers_stats_t st = s_stats();
    assert_int_equal(st.invoked, 1);
    assert_int_equal(st.dispatched, 1);
    assert_int_equal(st.inflight, 1);
    assert_int_equal(st.queued, 0);

    /* The only slot is taken: the next waits. */
    s_invoke("resize", "t2", NULL);
    assert_int_equal(s_ctx.n_sent, 1);
    st = s_stats();
    assert_int_equal(st.invoked, 2);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.inflight, 1);
    pm_fn_cap_t cap;
    assert_int_equal(pm_workers_caps(s_ctx.workers, &cap, 1), 1);
    assert_int_equal(cap.free, 0);
    assert_int_equal(cap.total, 1);

    /* The answer frees the slot, which takes the next one. */
    assert_int_equal(s_result(W1, s->inv_id, 1, "out", 3, NULL), PM_OK);
    assert_int_equal(s_ctx.n_sent, 2);
    assert_string_equal(s_ctx.sent[1].target, "t2");
    assert_int_equal(s_ctx.sent[1].input_len, 0);
    assert_string_not_equal(s_ctx.sent[1].inv_id, s_ctx.sent[0].inv_id);
    st = s_stats();
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.inflight, 1);
    assert_int_equal(st.dispatched, 2);
    assert_int_equal(st.completed, 1);
}

static void
test_concurrency_respected(void **state)
{
    (void) state;
    char t[16];
    s_register(W1, "f", 3);
    for (int i = 0; i < 8; i++) {
        snprintf(t, sizeof t, "t%d", i);
        s_target(t);
        s_invoke("f", t, "x");
    }
    assert_int_equal(s_ctx.n_sent, 3);
    assert_int_equal(s_stats().inflight, 3);
    assert_int_equal(s_stats().queued, 5);
    /* Answer one at a time; exactly one more goes out each time, in order. */
    for (int i = 0; i < 8; i++) {
        size_t before = s_ctx.n_sent;
        assert_int_equal(s_result(W1, s_ctx.sent[i].inv_id, 1, "v", 1, NULL), PM_OK);
        assert_int_equal(s_ctx.n_sent, before + (before < 8 ? 1 : 0));
        assert_true(s_stats().inflight <= 3);
    }
    for (int i = 0; i < 8; i++) {
        snprintf(t, sizeof t, "t%d", i);
        assert_string_equal(s_ctx.sent[i].target, t);
        assert_int_equal(s_get(t)->state, PM_STATE_RESOLVED);
    }
    assert_int_equal(s_stats().inflight, 0);
    assert_int_equal(s_stats().completed, 8);

    /* Lowering the concurrency holds new work back until slots free. */
    s_register(W1, "f", 1);
    s_target("a");
    s_target("b");
    s_invoke("f", "a", NULL);
    s_invoke("f", "b", NULL);
    assert_int_equal(s_ctx.n_sent, 9);
    assert_int_equal(s_stats().queued, 1);
    /* Raising it dispatches at once. */
    s_register(W1, "f", 5);
    assert_int_equal(s_ctx.n_sent, 10);
    assert_string_equal(s_ctx.sent[9].target, "b");
}

static void
test_round_robin(void **state)
{
    (void) state;
    s_register(W1, "f", 100);
    s_register(W2, "f", 100);
    s_register(W3, "f", 100);
    char t[16];
    for (int i = 0; i < 12; i++) {
        snprintf(t, sizeof t, "t%d", i);
        s_target(t);
        s_invoke("f", t, NULL);
    }
    assert_int_equal(s_ctx.n_sent, 12);
    int per[3] = {0};
    for (int i = 0; i < 12; i++) {
        void *who = s_ctx.sent[i].who;
        per[who == W1 ? 0 : who == W2 ? 1 : 2]++;
        if (i >= 3)
            assert_ptr_equal(who, s_ctx.sent[i - 3].who); /* period 3 */
    }
    assert_ptr_not_equal(s_ctx.sent[0].who, s_ctx.sent[1].who);
    assert_ptr_not_equal(s_ctx.sent[1].who, s_ctx.sent[2].who);
    assert_ptr_not_equal(s_ctx.sent[0].who, s_ctx.sent[2].who);
    assert_int_equal(per[0], 4);
    assert_int_equal(per[1], 4);
    assert_int_equal(per[2], 4);

    /* A full worker is skipped, the others keep taking turns. */
    s_register(W2, "f", 4); /* W2 holds 4: full */
    for (int i = 12; i < 18; i++) {
        snprintf(t, sizeof t, "t%d", i);
        s_target(t);
        s_invoke("f", t, NULL);
    }
    for (int i = 12; i < 18; i++)
        assert_ptr_not_equal(s_ctx.sent[i].who, W2);
    assert_ptr_not_equal(s_ctx.sent[12].who, s_ctx.sent[13].who);
}

static void
test_queue_until_worker_registers(void **state)
{
    (void) state;
    s_target("a");
    s_target("b");
    s_target("c");
    s_invoke("f", "a", "1");
    s_invoke("f", "b", "2");
    s_invoke("f", "c", "3");
    assert_int_equal(s_ctx.n_sent, 0);
    assert_int_equal(s_stats().queued, 3);
    assert_int_equal(s_stats().invoked, 3);
    s_register(W1, "g", 10); /* another function: nothing moves */
    assert_int_equal(s_ctx.n_sent, 0);
    s_register(W2, "f", 2);
    assert_int_equal(s_ctx.n_sent, 2);
    assert_string_equal(s_ctx.sent[0].target, "a");
    assert_string_equal(s_ctx.sent[1].target, "b");
    assert_memory_equal(s_ctx.sent[1].input, "2", 1);
    assert_ptr_equal(s_ctx.sent[0].who, W2);
    assert_int_equal(s_stats().queued, 1);
    s_register(W3, "f", 1);
    assert_int_equal(s_ctx.n_sent, 3);
    assert_string_equal(s_ctx.sent[2].target, "c");
    assert_ptr_equal(s_ctx.sent[2].who, W3);
    assert_int_equal(s_ctx.sent[2].attempt, 1);
    assert_int_equal(s_stats().queued, 0);
}

static void
test_result_settles_target(void **state)
{
    (void) state;
    s_register(W1, "f", 10);
    s_target("ok");
    s_target("bad");
    s_target("silent");
    s_target("huge");
    s_invoke("f", "ok", NULL);
    s_invoke("f", "bad", NULL);
    s_invoke("f", "silent", NULL);
    s_invoke("f", "huge", NULL);
    assert_int_equal(s_ctx.n_sent, 4);
    const uint8_t value[] = {'v', 0, 'w'};
    assert_int_equal(s_result(W1, s_ctx.sent[0].inv_id, 1, value, sizeof value, NULL), PM_OK);
    pm_prom_t *p = s_get("ok");
    assert_int_equal(p->state, PM_STATE_RESOLVED);
    assert_int_equal(p->data_len, 3);
    assert_memory_equal(p->data, value, 3);

    assert_int_equal(s_result(W1, s_ctx.sent[1].inv_id, 0, NULL, 0, "disk full"), PM_OK);
    p = s_get("bad");
    assert_int_equal(p->state, PM_STATE_REJECTED);
    assert_string_equal((char *) p->data, "disk full");

    assert_int_equal(s_result(W1, s_ctx.sent[2].inv_id, 0, NULL, 0, ""), PM_OK);
    p = s_get("silent");
    assert_int_equal(p->state, PM_STATE_REJECTED);
    assert_string_equal((char *) p->data, "worker failed");

    /* A value over the limit rejects the target with a reason that says so. */
    uint8_t big[S_MAX_VALUE + 1];
    memset(big, 'b', sizeof big);
    assert_int_equal(s_result(W1, s_ctx.sent[3].inv_id, 1, big, sizeof big, NULL), PM_OK);
    p = s_get("huge");
    assert_int_equal(p->state, PM_STATE_REJECTED);
    assert_string_equal((char *) p->data, "VALUE_TOO_LARGE: f returned 65 bytes");

    pm_workers_stats_t st = s_stats();
    assert_int_equal(st.completed, 2);
    assert_int_equal(st.failed, 2);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.not_holder, 0);
    assert_int_equal(s_settles_of("ok"), 1);
    assert_int_equal(s_settles_of("bad"), 1);
    assert_int_equal(s_settles_of("huge"), 2); /* resolve refused, then the rejection */
}

/* The owner sends a placed invocation again when it hears nothing for a
 * while: one queued or running here for that target is enough; once it is
 * answered, a new one for the target is taken (the owner's next attempt). */
static void
test_one_invocation_per_target(void **state)
{
    (void) state;
    s_target("t");
    s_invoke("f", "t", NULL); /* queued: nobody serves f yet */
    s_invoke("f", "t", NULL);
    pm_workers_stats_t st = s_stats();
    assert_int_equal(st.invoked, 1);
    assert_int_equal(st.duplicates, 1);
    assert_int_equal(st.queued, 1);
    s_register(W1, "f", 4);
    assert_int_equal(s_ctx.n_sent, 1);
    s_invoke("f", "t", NULL); /* running */
    assert_int_equal(s_ctx.n_sent, 1);
    assert_int_equal(s_stats().duplicates, 2);
    assert_int_equal(s_result(W1, s_ctx.sent[0].inv_id, 0, NULL, 0, "boom"), PM_OK);
    /* The target was rejected: a later invocation is dropped at dispatch,
     * but it is taken, not refused as a duplicate. */
    s_invoke("f", "t", NULL);
    st = s_stats();
    assert_int_equal(st.invoked, 2);
    assert_int_equal(st.duplicates, 2);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(s_settles_of("t"), 1);
}

static void
test_not_holder(void **state)
{
    (void) state;
    s_register(W1, "f", 1);
    s_register(W2, "f", 1);
    s_target("t");
    s_invoke("f", "t", NULL);
    assert_int_equal(s_ctx.n_sent, 1);
    void *holder = s_ctx.sent[0].who;
    void *other = holder == W1 ? W2 : W1;
    const char *inv = s_ctx.sent[0].inv_id;

    assert_int_equal(s_result(other, inv, 1, "stolen", 6, NULL), PM_ERR_NOT_HOLDER);
    assert_int_equal(s_result(W3, inv, 1, "stolen", 6, NULL), PM_ERR_NOT_HOLDER);
    assert_int_equal(s_result(holder, "sp-1~i999", 1, "x", 1, NULL), PM_ERR_NOT_HOLDER);
    assert_int_equal(s_result(holder, "", 1, "x", 1, NULL), PM_ERR_NOT_HOLDER);
    assert_int_equal(s_get("t")->state, PM_STATE_PENDING);
    assert_int_equal(s_ctx.n_settled, 0);
    assert_int_equal(s_stats().inflight, 1);

    assert_int_equal(s_result(holder, inv, 1, "real", 4, NULL), PM_OK);
    assert_int_equal(s_result(holder, inv, 1, "again", 5, NULL), PM_ERR_NOT_HOLDER);
    assert_int_equal(s_result(holder, inv, 0, NULL, 0, "late"), PM_ERR_NOT_HOLDER);
    pm_prom_t *p = s_get("t");
    assert_int_equal(p->state, PM_STATE_RESOLVED);
    assert_memory_equal(p->data, "real", 4);
    assert_int_equal(s_settles_of("t"), 1);
    pm_workers_stats_t st = s_stats();
    assert_int_equal(st.not_holder, 6);
    assert_int_equal(st.completed, 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.inflight, 0);
}

static void
test_forget_requeues(void **state)
{
    (void) state;
    s_register(W1, "f", 1);
    s_register(W2, "f", 1);
    s_target("a");
    s_target("b");
    s_invoke("f", "a", "in-a");
    s_invoke("f", "b", "in-b");
    assert_int_equal(s_ctx.n_sent, 2);
    s_sent_t first = s_ctx.sent[0], second = s_ctx.sent[1];
    assert_ptr_not_equal(first.who, second.who);

    /* The holder of "a" goes away while the other worker is busy. */
    pm_workers_forget(s_ctx.workers, first.who);
    assert_false(pm_workers_is_worker(s_ctx.workers, first.who));
    pm_workers_stats_t st = s_stats();
    assert_int_equal(st.workers, 1);
    assert_int_equal(st.retried, 1);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.inflight, 1);
    assert_int_equal(s_ctx.n_sent, 2);
    /* Its late answer is refused. */
    assert_int_equal(s_result(first.who, first.inv_id, 1, "late", 4, NULL), PM_ERR_NOT_HOLDER);
    assert_int_equal(s_get("a")->state, PM_STATE_PENDING);

    /* The other worker finishes "b" and gets "a", attempt 2, same invocation. */
    assert_int_equal(s_result(second.who, second.inv_id, 1, "vb", 2, NULL), PM_OK);
    assert_int_equal(s_ctx.n_sent, 3);
    s_sent_t retry = s_ctx.sent[2];
    assert_ptr_equal(retry.who, second.who);
    assert_string_equal(retry.inv_id, first.inv_id);
    assert_string_equal(retry.target, "a");
    assert_int_equal(retry.attempt, 2);
    assert_int_equal(retry.input_len, 4);
    assert_memory_equal(retry.input, "in-a", 4);

    /* That worker goes too: with nobody left, "a" waits; a newcomer takes it. */
    pm_workers_forget(s_ctx.workers, second.who);
    assert_int_equal(s_stats().workers, 0);
    assert_int_equal(s_stats().queued, 1);
    assert_int_equal(s_stats().inflight, 0);
    assert_false(pm_workers_serves(s_ctx.workers, "f"));
    s_register(W3, "f", 1);
    assert_int_equal(s_ctx.n_sent, 4);
    assert_ptr_equal(s_ctx.sent[3].who, W3);
    assert_string_equal(s_ctx.sent[3].inv_id, first.inv_id);
    assert_int_equal(s_ctx.sent[3].attempt, 3);
    assert_int_equal(s_result(second.who, first.inv_id, 1, "x", 1, NULL), PM_ERR_NOT_HOLDER);
    assert_int_equal(s_result(W3, first.inv_id, 1, "va", 2, NULL), PM_OK);
    assert_int_equal(s_get("a")->state, PM_STATE_RESOLVED);
    assert_memory_equal(s_get("a")->data, "va", 2);
    assert_int_equal(s_settles_of("a"), 1);
    assert_int_equal(s_settles_of("b"), 1);
    st = s_stats();
    assert_int_equal(st.retried, 2);
    assert_int_equal(st.completed, 2);
    assert_int_equal(st.not_holder, 2);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.inflight, 0);
}

static void
test_forget_keeps_order(void **state)
{
    (void) state;
    /* A worker holding several invocations: they go back in their order,
     * ahead of newer work. */
    s_register(W1, "f", 3);
    char t[8];
    for (int i = 0; i < 5; i++) {
        snprintf(t, sizeof t, "t%d", i);
        s_target(t);
        s_invoke("f", t, NULL);
    }
    assert_int_equal(s_ctx.n_sent, 3);
    pm_workers_forget(s_ctx.workers, W1);
    assert_int_equal(s_stats().queued, 5);
    s_register(W2, "f", 5);
    assert_int_equal(s_ctx.n_sent, 8);
    for (int i = 0; i < 5; i++) {
        snprintf(t, sizeof t, "t%d", i);
        assert_string_equal(s_ctx.sent[3 + i].target, t);
        assert_int_equal(s_ctx.sent[3 + i].attempt, i < 3 ? 2 : 1);
    }
}

static void
test_settled_target_dropped_at_dispatch(void **state)
{
    (void) state;
    s_target("gone");
    s_target("kept");
    s_invoke("f", "gone", NULL);
    s_invoke("f", "kept", NULL);
    assert_int_equal(pm_store_settle(s_ctx.store, "gone", PM_STATE_CANCELED, "c", 1, 1, NULL),
                     PM_OK);
    s_register(W1, "f", 5);
    assert_int_equal(s_ctx.n_sent, 1);
    assert_string_equal(s_ctx.sent[0].target, "kept");
    pm_workers_stats_t st = s_stats();
    assert_int_equal(st.dropped, 1);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.dispatched, 1);

    /* Canceled while held by a worker that then vanishes: re-queued, then
     * dropped instead of being sent to the next worker. */
    s_register(W2, "f", 1);
    assert_int_equal(pm_store_settle(s_ctx.store, "kept", PM_STATE_CANCELED, "c", 1, 1, NULL),
                     PM_OK);
    pm_workers_forget(s_ctx.workers, W1);
    assert_int_equal(s_ctx.n_sent, 1);
    st = s_stats();
    assert_int_equal(st.retried, 1);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(s_ctx.n_settled, 0);
}

static int s_take_calls;

static int
s_take(void *arg, const pm_workers_origin_t *origin, const char *function, const uint8_t *input,
       size_t len, const char *target)
{
    assert_null(origin->node);
    assert_ptr_equal(arg, &s_take_calls);
    s_take_calls++;
    assert_string_equal(function, "remote");
    assert_int_equal(len, 2);
    assert_memory_equal(input, "in", 2);
    return strcmp(target, "take-me") == 0;
}

static void
test_offer_unserved(void **state)
{
    (void) state;
    s_register(W1, "local", 1);
    s_target("take-me");
    s_target("leave-me");
    s_target("l");
    s_target("l2");
    s_invoke("remote", "take-me", "in");
    s_invoke("remote", "leave-me", "in");
    s_invoke("local", "l", "in");
    s_invoke("local", "l2", "in"); /* queued behind l, but served here */
    assert_int_equal(s_stats().queued, 3);
    pm_workers_offer_unserved(s_ctx.workers, s_take, &s_take_calls);
    assert_int_equal(s_take_calls, 2);
    assert_int_equal(s_stats().queued, 2);
    /* What was left still dispatches here later. */
    s_register(W2, "remote", 5);
    assert_int_equal(s_ctx.n_sent, 2);
    assert_string_equal(s_ctx.sent[1].target, "leave-me");
}

/* A placed invocation carries its origin (the member that placed it and its
 * id there): a resend of the same placement is a duplicate, another
 * placement for the same target (an heir's) runs too, and each result goes
 * to its own origin. */
static void
test_origin_per_placement(void **state)
{
    (void) state;
    s_target("t");
    pm_workers_origin_t a = {.node = "n1", .inv_id = "n1-x-d1"};
    pm_workers_origin_t a2 = {.node = "n1", .inv_id = "n1-x-d1"};
    pm_workers_origin_t b = {.node = "n3", .inv_id = "n3-y-d7"};
    pm_workers_origin_t local = {.node = NULL, .inv_id = "me-d2"};
    assert_int_equal(pm_workers_invoke(s_ctx.workers, "f", (const uint8_t *) "in", 2, "t", &a),
                     PM_OK);
    assert_int_equal(pm_workers_invoke(s_ctx.workers, "f", (const uint8_t *) "in", 2, "t", &a2),
                     PM_OK); /* the placer's resend */
    assert_int_equal(s_stats().duplicates, 1);
    assert_int_equal(pm_workers_invoke(s_ctx.workers, "f", (const uint8_t *) "in", 2, "t", &b),
                     PM_OK); /* the heir's own placement */
    assert_int_equal(pm_workers_invoke(s_ctx.workers, "f", (const uint8_t *) "in", 2, "t",
                                       &local),
                     PM_OK);
    assert_int_equal(s_stats().invoked, 3);
    assert_int_equal(s_stats().duplicates, 1);
    s_register(W1, "f", 4);
    assert_int_equal(s_ctx.n_sent, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(s_result(W1, s_ctx.sent[i].inv_id, 1, "v", 1, NULL), PM_OK);
    assert_int_equal(s_ctx.n_settled, 3);
    assert_string_equal(s_ctx.settled[0].onode, "n1");
    assert_string_equal(s_ctx.settled[0].oinv, "n1-x-d1");
    assert_string_equal(s_ctx.settled[1].onode, "n3");
    assert_string_equal(s_ctx.settled[1].oinv, "n3-y-d7");
    assert_string_equal(s_ctx.settled[2].onode, "");
    assert_string_equal(s_ctx.settled[2].oinv, "me-d2");
    /* Answered: the same placement sent again runs again (its result may
     * have been lost on the way back). */
    assert_int_equal(pm_workers_invoke(s_ctx.workers, "f", (const uint8_t *) "in", 2, "u", &a),
                     PM_OK);
    assert_int_equal(s_stats().invoked, 4);
}

/* Chain forwarding: a worker that starts a continuation handed on with an
 * invocation (Result.started) holds it under the placer's id; one not
 * handed on, of a function it does not serve, or whose source is not the
 * invocation's target is not taken. */
static void
test_worker_started_steps(void **state)
{
    (void) state;
    s_target("t1");
    s_target("t2");
    s_target("t3");
    s_target("u2");
    pm_wire_step_t next[4] = {
        {.source = "t1", .function = "f", .target_id = "t2", .invocation_id = "n1-d2"},
        {.source = "t2", .function = "f", .target_id = "t3", .invocation_id = "n1-d3"},
        {.source = "t1", .function = "h", .target_id = "u2", .invocation_id = "n1-d9"},
        {.source = "t1", .function = "f", .target_id = "u2", .invocation_id = "n1-d8"},
    };
    pm_workers_origin_t o = {.node = "n1", .inv_id = "n1-d1", .next = next, .n_next = 3};
    s_register(W1, "f", 1);
    assert_int_equal(pm_workers_invoke(s_ctx.workers, "f", (const uint8_t *) "a", 1, "t1", &o),
                     PM_OK);
    assert_int_equal(s_ctx.n_sent, 1);
    /* The worker resolves t1 with "a." and says it started d2 (handed on),
     * d9 (h: not its function) and d8 (never handed on). */
    pm_wire_step_t started[3] = {{.target_id = "t2", .invocation_id = "n1-d2"},
                                 {.target_id = "u2", .invocation_id = "n1-d9"},
                                 {.target_id = "u2", .invocation_id = "n1-d8"}};
    pm_msg_t r = {.type = PM_MSG_RESULT, .invocation_id = s_ctx.sent[0].inv_id, .ok = 1,
                  .value = (const uint8_t *) "a.", .value_len = 2, .steps = started,
                  .step_count = 3};
    assert_int_equal(pm_workers_result(s_ctx.workers, W1, &r), PM_OK);
    assert_int_equal(s_ctx.n_settled, 1);
    assert_int_equal(s_stats().inflight, 1); /* d2, in the slot t1 left */
    assert_int_equal(s_ctx.n_sent, 1);       /* nothing dispatched: it holds d2 */
    assert_int_equal(s_result(W1, "n1-d9", 1, "x", 1, NULL), PM_ERR_NOT_HOLDER);
    assert_int_equal(s_result(W1, "n1-d8", 1, "x", 1, NULL), PM_ERR_NOT_HOLDER);
    assert_int_equal(s_result(W2, "n1-d2", 1, "x", 1, NULL), PM_ERR_NOT_HOLDER);
    /* Its answer goes to the placer under the placer's id, and d3 rides on. */
    pm_wire_step_t started3[1] = {{.target_id = "t3", .invocation_id = "n1-d3"}};
    pm_msg_t r2 = {.type = PM_MSG_RESULT, .invocation_id = "n1-d2", .ok = 1,
                   .value = (const uint8_t *) "a..", .value_len = 3, .steps = started3,
                   .step_count = 1};
    assert_int_equal(pm_workers_result(s_ctx.workers, W1, &r2), PM_OK);
    assert_int_equal(s_ctx.n_settled, 2);
    assert_string_equal(s_ctx.settled[1].target, "t2");
    assert_string_equal(s_ctx.settled[1].onode, "n1");
    assert_string_equal(s_ctx.settled[1].oinv, "n1-d2");
    assert_string_equal(s_ctx.settled[1].data, "a..");
    /* A worker that dies holding a started step: it goes back to the queue
     * with its input and is handed out again. */
    pm_workers_forget(s_ctx.workers, W1);
    s_register(W2, "f", 1);
    assert_int_equal(s_ctx.n_sent, 2);
    assert_string_equal(s_ctx.sent[1].inv_id, "n1-d3");
    assert_string_equal(s_ctx.sent[1].target, "t3");
    assert_int_equal(s_ctx.sent[1].input_len, 3);
    assert_memory_equal(s_ctx.sent[1].input, "a..", 3);
    assert_int_equal(s_result(W2, "n1-d3", 1, "a...", 4, NULL), PM_OK);
    assert_int_equal(s_ctx.n_settled, 3);
    assert_string_equal(s_ctx.settled[2].oinv, "n1-d3");
}

/* Only what this agent placed is offered for placement on a member: a
 * member's invocation waits here for a worker. */
static int s_take_any;
static int
s_take_all(void *arg, const pm_workers_origin_t *origin, const char *function,
           const uint8_t *input, size_t len, const char *target)
{
    (void) arg, (void) function, (void) input, (void) len, (void) target;
    assert_null(origin->node);
    s_take_any++;
    return 1;
}

static void
test_offer_only_own(void **state)
{
    (void) state;
    s_target("m");
    s_target("o");
    pm_workers_origin_t member = {.node = "n1", .inv_id = "n1-x-d1"};
    pm_workers_origin_t own = {.node = NULL, .inv_id = "me-d1"};
    assert_int_equal(pm_workers_invoke(s_ctx.workers, "g", NULL, 0, "m", &member), PM_OK);
    assert_int_equal(pm_workers_invoke(s_ctx.workers, "g", NULL, 0, "o", &own), PM_OK);
    s_take_any = 0;
    pm_workers_offer_unserved(s_ctx.workers, s_take_all, NULL);
    assert_int_equal(s_take_any, 1);
    assert_int_equal(s_stats().queued, 1);
}

static void
test_destroy_with_work_in_flight(void **state)
{
    (void) state;
    s_register(W1, "f", 2);
    char t[8];
    for (int i = 0; i < 6; i++) {
        snprintf(t, sizeof t, "t%d", i);
        s_target(t);
        s_invoke("f", t, "input");
    }
    s_target("tx");
    s_invoke("nobody", "tx", "input");
    assert_int_equal(s_stats().inflight, 2);
    assert_int_equal(s_stats().queued, 5);
    /* Teardown destroys with 2 held and 5 queued: valgrind checks nothing leaks. */
}

int
main(void)
{
    pm_log_setup(PM_LOG_ERROR, PM_LOG_TEXT, "test");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_register, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_invoke_dispatches_to_free_slot, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_concurrency_respected, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_round_robin, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_queue_until_worker_registers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_result_settles_target, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_one_invocation_per_target, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_not_holder, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_forget_requeues, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_forget_keeps_order, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_settled_target_dropped_at_dispatch, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_offer_unserved, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_origin_per_placement, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_offer_only_own, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_work_in_flight, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_worker_started_steps, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("workers", tests, NULL, NULL);
}
