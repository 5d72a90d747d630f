/*
 * test_place.c - cmocka suite for the result guard of node/place.c, driven
 * directly on a real agent (its mesh on loopback without peers, its WAL in
 * a temporary directory, fsync always, no backups; no loop thread: the test
 * flushes the journal itself). A then across id spaces (source p in a space
 * the agent took over, target q in another it serves) is placed; then:
 *
 *   - the source's space moves after the placement's position is covered
 *     (R5, pmesh-sim seed 8732): the placement stands, and its result
 *     settles q;
 *   - the source's space moves before it is covered: the placement is
 *     dropped and its result refused (R2), q untouched;
 *   - after R5, q settled otherwise: the result is refused (one outcome);
 *   - after R5, the target's space moved: the placement is dropped and its
 *     result refused;
 *   - a placement started early (its source not settled yet, fanins.c)
 *     keeps the source's guard until it is adopted, then R5 applies from
 *     its position at adoption;
 *   - an early placement whose member goes down is dropped, not placed
 *     again as a placement of its own (takeover.c; pmesh-sim seed 8685,
 *     V6): the then places its function when the source settles;
 *   - R6 (issue 16): a result whose source is in its target's space is
 *     applied at once, its position not covered; a source in another space
 *     still holds it until the position is covered (R3);
 *   - chain forwarding (issue 16): a chained record (a continuation handed
 *     on with its source's invocation to member n9, set up here as
 *     s_chain_each makes it) is dropped when its source settles and the
 *     member never said it started it (input unknown), or started it on
 *     another input; it is adopted when the member's result for the source
 *     said it started it on exactly what the then places, and its own
 *     result then settles the target at once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "agent.h"
#include "agent_priv.h"
#include "config.h"
#include "journal.h"
#include "log.h"
#include "place.h"
#include "mesh.h"
#include "takeover.h"
#include "wire.h"

#define S_SRC "s1-aaaaaaaa"
#define S_TGT "t1-bbbbbbbb"
#define S_P S_SRC "~1.1"
#define S_Q S_TGT "~1.1"
/* Two more promises in the target's space. */
#define S_X S_TGT "~1.2"
#define S_Y S_TGT "~1.3"

typedef struct fx {
    char dir[128], sock[192], data[200];
    pm_config_t *cfg;
    pm_agent_t *a;
} fx_t;

static int
setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/pm-place-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->sock, sizeof fx->sock, "%s/agent.sock", fx->dir);
    snprintf(fx->data, sizeof fx->data, "%s/data", fx->dir);
    pm_log_setup(PM_LOG_WARN, PM_LOG_TEXT, "t");
    char err[256];
    for (int attempt = 0; attempt < 20 && !fx->a; attempt++) {
        uint16_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t) sizeof r)
            return -1;
        char ep[64];
        snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 20000 + r % 30000);
        pm_config_destroy(&fx->cfg);
        fx->cfg = pm_config_new();
        if (pm_config_set(fx->cfg, "bind", ep, err, sizeof err) != 0 ||
            pm_config_set(fx->cfg, "insecure", "true", err, sizeof err) != 0 ||
            pm_config_set(fx->cfg, "replicas", "1", err, sizeof err) != 0 ||
            pm_config_set(fx->cfg, "fsync", "always", err, sizeof err) != 0 ||
            pm_config_set(fx->cfg, "data_dir", fx->data, err, sizeof err) != 0)
            return -1;
        fx->a = pm_agent_new(fx->cfg, "t", fx->sock);
    }
    if (!fx->a || !fx->a->mesh || !fx->a->journal)
        return -1;
    /* The source's space taken over at epoch 2, the target's at epoch 3. */
    pm_takeover_take_space(fx->a, S_SRC, 2, "test");
    pm_takeover_take_space(fx->a, S_TGT, 3, "test");
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    fx_t *fx = *state;
    pm_agent_destroy(&fx->a);
    pm_config_destroy(&fx->cfg);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", fx->dir);
    free(fx);
    return 0;
}

static pm_prom_t *
s_create(pm_agent_t *a, const char *id)
{
    pm_create_args_t ca = {.id = id};
    pm_prom_t *p = NULL;
    assert_int_equal(pm_store_create(a->store, &ca, a->now_real, &p, NULL), PM_OK);
    assert_non_null(p);
    return p;
}

/* p rejected, and g placed for q on that outcome (as a then's on_reject
 * handler): the agent's one placement. */
static pm_deleg_t *
s_place(pm_agent_t *a)
{
    s_create(a, S_P);
    s_create(a, S_Q);
    assert_int_equal(pm_store_settle(a->store, S_P, PM_STATE_REJECTED, "e1", 2, a->now_real, NULL),
                     PM_OK);
    assert_null(a->delegs);
    pm_place_then(a, S_P, "g", (const uint8_t *) "e1", 2, S_Q);
    pm_deleg_t *d = a->delegs;
    assert_non_null(d);
    assert_null(d->next);
    assert_string_equal(d->target, S_Q);
    assert_non_null(d->src_space); /* guarded by the source's space too */
    assert_string_equal(d->src_space, S_SRC);
    assert_int_equal(d->src_epoch, 2);
    assert_int_equal(d->epoch, 3);
    return d;
}

/* Flushes the journal until d's position is covered (here: durable, no
 * backups) and R5 has dropped the source's half of the guard. */
static void
s_cover(pm_agent_t *a, pm_deleg_t *d)
{
    for (int i = 0; i < 500 && d->src_space; i++) {
        assert_true(pm_journal_flush(a->journal) >= 0);
        if (d->src_space)
            usleep(1000);
    }
    assert_true(pm_journal_covered(a->journal, d->pos));
    assert_null(d->src_space);
}

/* The agent loses space (the store named another owner). */
static void
s_move(pm_agent_t *a, const char *space)
{
    pm_mesh_unclaim(a->mesh, space);
    pm_takeover_on_moved(a, space);
    a->now_mono += 2000;
    pm_place_tick(a, a->now_mono); /* forgets placements that no longer stand */
}

/* The local worker's answer for d's invocation. */
static int
s_result(pm_agent_t *a, const char *inv_id, const char *value)
{
    pm_workers_origin_t o = {.node = NULL, .inv_id = inv_id};
    return pm_place_settle_anywhere(a, &o, "g", S_Q, PM_STATE_RESOLVED, value, strlen(value));
}

static void
test_source_moves_after_covered(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    pm_deleg_t *d = s_place(a);
    s_cover(a, d);
    char inv[128];
    snprintf(inv, sizeof inv, "%s", d->inv_id);
    uint64_t refused = a->results_refused;
    s_move(a, S_SRC);
    assert_ptr_equal(a->delegs, d); /* still stands: only the target guards it */
    assert_int_equal(s_result(a, inv, "g:e1"), PM_OK);
    pm_prom_t *q = pm_store_get(a->store, S_Q);
    assert_non_null(q);
    assert_int_equal(q->state, PM_STATE_RESOLVED);
    assert_int_equal(q->data_len, 4);
    assert_memory_equal(q->data, "g:e1", 4);
    assert_int_equal(a->results_refused, refused);
    assert_null(a->delegs); /* done: q settled */
}

static void
test_source_moves_before_covered(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    pm_deleg_t *d = s_place(a);
    char inv[128];
    snprintf(inv, sizeof inv, "%s", d->inv_id);
    assert_false(pm_journal_covered(a->journal, d->pos)); /* nothing flushed yet */
    uint64_t refused = a->results_refused;
    s_move(a, S_SRC);
    assert_null(a->delegs); /* R2: p's settle may be lost with the move */
    for (int i = 0; i < 20; i++)
        assert_true(pm_journal_flush(a->journal) >= 0);
    assert_int_equal(s_result(a, inv, "g:e1"), PM_ERR_NOT_FOUND);
    pm_prom_t *q = pm_store_get(a->store, S_Q);
    assert_non_null(q);
    assert_int_equal(q->state, PM_STATE_PENDING);
    assert_int_equal(a->results_refused, refused + 1);
}

static void
test_target_settled_otherwise(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    pm_deleg_t *d = s_place(a);
    s_cover(a, d);
    char inv[128];
    snprintf(inv, sizeof inv, "%s", d->inv_id);
    s_move(a, S_SRC);
    /* q settled by another path (say its own timeout) before the result */
    assert_int_equal(pm_store_settle(a->store, S_Q, PM_STATE_REJECTED, "x", 1, a->now_real, NULL),
                     PM_OK);
    assert_null(a->delegs);
    uint64_t refused = a->results_refused;
    assert_int_equal(s_result(a, inv, "g:e1"), PM_ERR_NOT_FOUND);
    pm_prom_t *q = pm_store_get(a->store, S_Q);
    assert_int_equal(q->state, PM_STATE_REJECTED);
    assert_memory_equal(q->data, "x", 1);
    assert_int_equal(a->results_refused, refused + 1);
}

static void
test_target_moves_after_covered(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    pm_deleg_t *d = s_place(a);
    s_cover(a, d);
    char inv[128];
    snprintf(inv, sizeof inv, "%s", d->inv_id);
    uint64_t refused = a->results_refused;
    s_move(a, S_TGT);
    assert_null(a->delegs); /* the target's next owner runs it from its copy */
    assert_int_equal(s_result(a, inv, "g:e1"), PM_ERR_NOT_FOUND);
    pm_prom_t *q = pm_store_get(a->store, S_Q);
    assert_non_null(q);
    assert_int_equal(q->state, PM_STATE_PENDING);
    assert_int_equal(a->results_refused, refused + 1);
}

static void
test_early_placement_guarded_until_adopted(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    s_create(a, S_P);
    s_create(a, S_Q);
    pm_place_early(a, S_P, "g", (const uint8_t *) "v", 1, S_Q);
    pm_deleg_t *d = a->delegs;
    assert_non_null(d);
    assert_true(d->early);
    assert_non_null(d->src_space);
    /* Everything appended so far durable: the source has not settled, so
     * nothing of it is covered and the source's guard stays. */
    for (int i = 0; i < 50; i++) {
        assert_true(pm_journal_flush(a->journal) >= 0);
        usleep(200);
    }
    assert_non_null(d->src_space);
    /* p settles as guessed and its then places the same: adopted */
    assert_int_equal(pm_store_settle(a->store, S_P, PM_STATE_RESOLVED, "v", 1, a->now_real, NULL),
                     PM_OK);
    pm_place_then(a, S_P, "g", (const uint8_t *) "v", 1, S_Q);
    assert_ptr_equal(a->delegs, d);
    assert_false(d->early);
    assert_non_null(d->src_space);
    s_cover(a, d); /* R5 from the position at adoption */
    char inv[128];
    snprintf(inv, sizeof inv, "%s", d->inv_id);
    s_move(a, S_SRC);
    assert_ptr_equal(a->delegs, d);
    assert_int_equal(s_result(a, inv, "g:v"), PM_OK);
    pm_prom_t *q = pm_store_get(a->store, S_Q);
    assert_int_equal(q->state, PM_STATE_RESOLVED);
    assert_memory_equal(q->data, "g:v", 3);
}

static void
test_early_placement_on_a_member_that_dies(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    s_create(a, S_P);
    s_create(a, S_Q);
    pm_place_early(a, S_P, "g", (const uint8_t *) "guess", 5, S_Q);
    pm_deleg_t *d = a->delegs;
    assert_non_null(d);
    assert_true(d->early);
    snprintf(d->node, sizeof d->node, "n9"); /* as if placed on member n9 */
    uint64_t dropped = a->fanin_early_dropped;
    pm_takeover_on_member(a, PM_MESH_DOWN, "n9");
    assert_null(a->delegs); /* the guess is not placed again on its own */
    assert_int_equal(a->fanin_early_dropped, dropped + 1);
    /* the source settles otherwise: its then places g on that outcome, the
     * only placement for q */
    assert_int_equal(pm_store_settle(a->store, S_P, PM_STATE_REJECTED, "other", 5, a->now_real,
                                     NULL),
                     PM_OK);
    pm_place_then(a, S_P, "g", (const uint8_t *) "other", 5, S_Q);
    d = a->delegs;
    assert_non_null(d);
    assert_null(d->next);
    assert_false(d->early);
    assert_int_equal(d->input_len, 5);
    assert_memory_equal(d->input, "other", 5);
}

/* R6: the source x is in q's space. */
static void
test_same_space_result_applied_at_once(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    s_create(a, S_X);
    s_create(a, S_Q);
    assert_int_equal(pm_store_settle(a->store, S_X, PM_STATE_RESOLVED, "v", 1, a->now_real, NULL),
                     PM_OK);
    pm_place_then(a, S_X, "g", (const uint8_t *) "v", 1, S_Q);
    pm_deleg_t *d = a->delegs;
    assert_non_null(d);
    assert_null(d->next);
    assert_true(d->same_space);
    assert_null(d->src_space); /* the target's space alone guards it */
    pm_journal_pos_t pos = d->pos;
    char inv[128];
    snprintf(inv, sizeof inv, "%s", d->inv_id);
    assert_false(pm_journal_covered(a->journal, pos)); /* nothing flushed: x's settle not durable */
    assert_int_equal(s_result(a, inv, "g:v"), PM_OK);
    pm_prom_t *q = pm_store_get(a->store, S_Q);
    assert_int_equal(q->state, PM_STATE_RESOLVED); /* at once, no journal hold */
    assert_int_equal(q->data_len, 3);
    assert_memory_equal(q->data, "g:v", 3);
    assert_false(pm_journal_covered(a->journal, pos));
    assert_null(a->delegs);
}

/* R3 still holds a source in another space. */
static void
test_other_space_result_held_until_covered(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    pm_deleg_t *d = s_place(a);
    assert_false(d->same_space);
    char inv[128];
    snprintf(inv, sizeof inv, "%s", d->inv_id);
    assert_false(pm_journal_covered(a->journal, d->pos));
    assert_int_equal(s_result(a, inv, "g:e1"), PM_OK);
    pm_prom_t *q = pm_store_get(a->store, S_Q);
    assert_int_equal(q->state, PM_STATE_PENDING); /* held until p's settle is durable */
    assert_ptr_equal(a->delegs, d);
    for (int i = 0; i < 500 && q->state == PM_STATE_PENDING; i++) {
        assert_true(pm_journal_flush(a->journal) >= 0);
        if (q->state == PM_STATE_PENDING)
            usleep(1000);
    }
    assert_int_equal(q->state, PM_STATE_RESOLVED);
    assert_int_equal(q->data_len, 4);
    assert_memory_equal(q->data, "g:e1", 4);
    assert_null(a->delegs);
}

/* A chained record for q whose source is x, on member n9, as s_chain_each
 * makes it when x's invocation is sent there: early, chained, input not
 * known. */
static pm_deleg_t *
s_chained(pm_agent_t *a)
{
    pm_place_early(a, S_X, "g", NULL, 0, S_Q);
    pm_prom_t *q = pm_store_get(a->store, S_Q);
    pm_deleg_t *d = NULL;
    for (pm_deleg_t *e = a->delegs; e; e = e->next)
        if (strcmp(e->target, S_Q) == 0)
            d = e;
    assert_non_null(q);
    assert_non_null(d);
    assert_true(d->early);
    assert_true(d->same_space);
    d->chained = 1;
    d->input_known = 0;
    snprintf(d->node, sizeof d->node, "n9");
    return d;
}

/* y resolved with "v", and g placed for x on it, on member n9; x's
 * invocation id goes to inv_x. */
static void
s_source_on_n9(pm_agent_t *a, char *inv_x, size_t cap)
{
    s_create(a, S_Y);
    s_create(a, S_X);
    s_create(a, S_Q);
    assert_int_equal(pm_store_settle(a->store, S_Y, PM_STATE_RESOLVED, "v", 1, a->now_real, NULL),
                     PM_OK);
    pm_place_then(a, S_Y, "g", (const uint8_t *) "v", 1, S_X);
    pm_deleg_t *dx = a->delegs;
    assert_non_null(dx);
    assert_string_equal(dx->target, S_X);
    snprintf(dx->node, sizeof dx->node, "n9");
    snprintf(inv_x, cap, "%s", dx->inv_id);
}

/* n9's result for invocation inv (target) with value, saying it started
 * the chained invocation started_inv for started_target on it (none if
 * NULL). */
static void
s_member_result(pm_agent_t *a, const char *inv, const char *target, const char *value,
                const char *started_target, const char *started_inv)
{
    pm_wire_step_t st = {.target_id = started_target, .invocation_id = started_inv};
    pm_msg_t m = {.type = PM_MSG_RESULT, .invocation_id = inv, .target_id = target, .ok = 1,
                  .value = (const uint8_t *) value, .value_len = strlen(value),
                  .steps = started_inv ? &st : NULL, .step_count = started_inv ? 1 : 0};
    pm_place_on_result(a, "n9", &m);
}

static void
test_chained_input_unknown_dropped(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    char inv_x[128], inv_q[128];
    s_source_on_n9(a, inv_x, sizeof inv_x);
    pm_deleg_t *d = s_chained(a);
    snprintf(inv_q, sizeof inv_q, "%s", d->inv_id);
    uint64_t dropped = a->chain_dropped, kept = a->chain_kept,
             early_dropped = a->fanin_early_dropped;
    /* n9 answers x without starting q's step (no worker of its own for g),
     * with an empty value: the very input the record was made with (none),
     * so only input_known tells them apart */
    s_member_result(a, inv_x, S_X, "", NULL, NULL);
    pm_prom_t *x = pm_store_get(a->store, S_X);
    assert_int_equal(x->state, PM_STATE_RESOLVED); /* R6: at once */
    assert_false(d->input_known);
    /* x's then places g on its value: the chained record is not adopted */
    pm_place_then(a, S_X, "g", (const uint8_t *) "", 0, S_Q);
    assert_int_equal(a->chain_dropped, dropped + 1);
    assert_int_equal(a->chain_kept, kept);
    assert_int_equal(a->fanin_early_dropped, early_dropped);
    pm_deleg_t *n = a->delegs;
    assert_non_null(n);
    assert_null(n->next); /* the only placement for q: a new one */
    assert_string_equal(n->target, S_Q);
    assert_string_not_equal(n->inv_id, inv_q);
    assert_false(n->early);
    assert_false(n->chained);
    assert_int_equal(n->input_len, 0);
    /* a late result of the dropped one is refused */
    uint64_t refused = a->results_refused;
    s_member_result(a, inv_q, S_Q, ".", NULL, NULL);
    assert_int_equal(a->results_refused, refused + 1);
    assert_int_equal(pm_store_get(a->store, S_Q)->state, PM_STATE_PENDING);
}

static void
test_chained_other_input_dropped(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    char inv_x[128], inv_q[128];
    s_source_on_n9(a, inv_x, sizeof inv_x);
    pm_deleg_t *d = s_chained(a);
    snprintf(inv_q, sizeof inv_q, "%s", d->inv_id);
    uint64_t dropped = a->chain_dropped, kept = a->chain_kept;
    s_member_result(a, inv_x, S_X, "v.", S_Q, inv_q);
    assert_true(d->input_known);
    /* x settled otherwise meanwhile (say it was placed again elsewhere and
     * that result came first): its then places g on another input */
    pm_place_then(a, S_X, "g", (const uint8_t *) "w", 1, S_Q);
    assert_int_equal(a->chain_dropped, dropped + 1);
    assert_int_equal(a->chain_kept, kept);
    pm_deleg_t *n = a->delegs;
    assert_non_null(n);
    assert_null(n->next);
    assert_string_not_equal(n->inv_id, inv_q);
    assert_int_equal(n->input_len, 1);
    assert_memory_equal(n->input, "w", 1);
}

static void
test_chained_input_learned_kept(void **state)
{
    fx_t *fx = *state;
    pm_agent_t *a = fx->a;
    char inv_x[128], inv_q[128];
    s_source_on_n9(a, inv_x, sizeof inv_x);
    pm_deleg_t *d = s_chained(a);
    snprintf(inv_q, sizeof inv_q, "%s", d->inv_id);
    uint64_t dropped = a->chain_dropped, kept = a->chain_kept;
    /* a result from another member does not teach q's record anything */
    pm_wire_step_t st = {.target_id = S_Q, .invocation_id = inv_q};
    pm_msg_t m = {.type = PM_MSG_RESULT, .invocation_id = inv_x, .target_id = S_X, .ok = 1,
                  .value = (const uint8_t *) "v.", .value_len = 2, .steps = &st,
                  .step_count = 1};
    pm_place_on_result(a, "n8", &m);
    assert_false(d->input_known);
    assert_int_equal(pm_store_get(a->store, S_X)->state, PM_STATE_PENDING); /* R1: refused */
    /* n9 answers x and says it started q's step on that value */
    s_member_result(a, inv_x, S_X, "v.", S_Q, inv_q);
    assert_true(d->input_known);
    assert_int_equal(d->input_len, 2);
    assert_memory_equal(d->input, "v.", 2);
    pm_prom_t *x = pm_store_get(a->store, S_X);
    assert_int_equal(x->state, PM_STATE_RESOLVED); /* R6: at once */
    /* n9's result for q may come before x's then runs here: kept */
    s_member_result(a, inv_q, S_Q, "v..", NULL, NULL);
    pm_prom_t *q = pm_store_get(a->store, S_Q);
    assert_int_equal(q->state, PM_STATE_PENDING);
    assert_true(d->has_res);
    /* x's then places g on its value: the member's invocation stands for
     * it, and its kept result settles q at once (R6, nothing flushed) */
    pm_place_then(a, S_X, "g", (const uint8_t *) "v.", 2, S_Q);
    assert_int_equal(a->chain_kept, kept + 1);
    assert_int_equal(a->chain_dropped, dropped);
    assert_int_equal(q->state, PM_STATE_RESOLVED);
    assert_int_equal(q->data_len, 3);
    assert_memory_equal(q->data, "v..", 3);
    assert_null(a->delegs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_source_moves_after_covered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_source_moves_before_covered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_settled_otherwise, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_moves_after_covered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_early_placement_guarded_until_adopted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_early_placement_on_a_member_that_dies, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_same_space_result_applied_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_space_result_held_until_covered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_chained_input_unknown_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chained_other_input_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chained_input_learned_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
