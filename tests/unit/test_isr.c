/*
 * test_isr.c - cmocka suite for the rules of node/isr.c (issue 11) played
 * against the in-memory configuration store (mem://, deterministic): an
 * owner's set change racing its backup's takeover (exactly one wins, and
 * the loser's re-read forbids what it tried), an heir outside the in-sync
 * set (refused), a restarted agent that finds a newer epoch (takes nothing
 * back) or finds itself still the owner (takes its space back from its own
 * WAL), the store down (nothing changes, the change happens once it is
 * back), and the operator's forced takeover.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord.h"
#include "isr.h"

static pm_coord_t *
s_client(pm_coord_mem_t *store)
{
    pm_coord_config_t cfg = {.url = "mem://", .prefix = "/pmesh/isr", .mem = store};
    char err[256] = "";
    pm_coord_t *c = pm_coord_new(&cfg, err, sizeof err);
    assert_non_null(c);
    return c;
}

static pm_coord_result_t *
s_next(pm_coord_t *c)
{
    pm_coord_result_t *r = NULL;
    assert_int_equal(pm_coord_recv(c, &r), 0);
    assert_non_null(r);
    return r;
}

static pm_coord_member_t
s_m(const char *node, uint64_t pid)
{
    pm_coord_member_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.node, sizeof m.node, "%s", node);
    m.pid = pid;
    return m;
}

/* Creates space S: owner a (pid 1) at epoch 1, in sync b (pid 2) and, if
 * three, c (pid 3). Returns the stored record. */
static pm_coord_record_t
s_setup(pm_coord_t *c, int three)
{
    pm_coord_record_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.space, sizeof r.space, "S");
    snprintf(r.owner, sizeof r.owner, "a");
    r.owner_pid = 1;
    r.epoch = 1;
    r.in_sync[r.n_in_sync++] = s_m("b", 2);
    if (three)
        r.in_sync[r.n_in_sync++] = s_m("c", 3);
    assert_true(pm_coord_create(c, &r) > 0);
    pm_coord_result_t *res = s_next(c);
    assert_int_equal(res->status, PM_COORD_OK);
    pm_coord_record_t out = res->records[0];
    pm_coord_result_destroy(&res);
    return out;
}

static void
test_takeover_rule(void **state)
{
    (void) state;
    pm_coord_record_t cur;
    memset(&cur, 0, sizeof cur);
    snprintf(cur.space, sizeof cur.space, "S");
    snprintf(cur.owner, sizeof cur.owner, "a");
    cur.owner_pid = 1;
    cur.epoch = 4;
    cur.in_sync[0] = s_m("b", 2);
    cur.in_sync[1] = s_m("c", 3);
    cur.n_in_sync = 2;
    pm_coord_record_t next;
    assert_int_equal(pm_isr_rule_takeover(&cur, "b", 2, 0, &next), 0);
    assert_string_equal(next.owner, "b");
    assert_int_equal(next.owner_pid, 2);
    assert_int_equal(next.epoch, 5);
    /* The other member stays; the new owner is not its own backup. */
    assert_int_equal(next.n_in_sync, 1);
    assert_string_equal(next.in_sync[0].node, "c");
    /* An heir outside the set: refused, whatever it holds. */
    assert_int_equal(pm_isr_rule_takeover(&cur, "d", 9, 0, &next), -1);
    /* The right node as another process (restarted without its WAL). */
    assert_int_equal(pm_isr_rule_takeover(&cur, "b", 7, 0, &next), -1);
    /* ... or with a WAL from a process that was not the member. */
    assert_int_equal(pm_isr_rule_takeover(&cur, "b", 7, 6, &next), -1);
    /* The process after the member, on its data dir: it stands in for it,
     * and the old membership goes. */
    assert_int_equal(pm_isr_rule_takeover(&cur, "b", 7, 2, &next), 0);
    assert_int_equal(next.owner_pid, 7);
    assert_int_equal(next.n_in_sync, 1);
    assert_string_equal(next.in_sync[0].node, "c");
    /* The owner's own next process, on its data dir: it holds everything it
     * acknowledged. */
    assert_int_equal(pm_isr_rule_takeover(&cur, "a", 8, 1, &next), 0);
    assert_int_equal(next.epoch, 5);
    assert_int_equal(next.n_in_sync, 2);
    /* The force ignores the set and empties it. */
    pm_isr_rule_force(&cur, "d", 9, &next);
    assert_string_equal(next.owner, "d");
    assert_int_equal(next.epoch, 5);
    assert_int_equal(next.n_in_sync, 0);
    /* Set comparison ignores order. */
    pm_coord_member_t x[2] = {s_m("c", 3), s_m("b", 2)};
    assert_true(pm_isr_rule_same_set(x, 2, cur.in_sync, 2));
    assert_false(pm_isr_rule_same_set(x, 1, cur.in_sync, 2));
    x[1].pid = 4;
    assert_false(pm_isr_rule_same_set(x, 2, cur.in_sync, 2));
}

/* The owner drops b while b takes over, both from the same revision. */
static void
s_race(int shrink_first)
{
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *owner = s_client(store), *backup = s_client(store);
    pm_coord_record_t seen = s_setup(owner, 0);
    pm_coord_record_t shrunk, took;
    pm_isr_rule_set(&seen, NULL, 0, &shrunk);
    assert_int_equal(pm_isr_rule_takeover(&seen, "b", 2, 0, &took), 0);
    if (shrink_first) {
        pm_coord_cas(owner, seen.revision, &shrunk);
        pm_coord_cas(backup, seen.revision, &took);
    } else {
        pm_coord_cas(backup, seen.revision, &took);
        pm_coord_cas(owner, seen.revision, &shrunk);
    }
    pm_coord_result_t *ro = s_next(owner), *rb = s_next(backup);
    /* Exactly one wins. */
    assert_int_equal(ro->status == PM_COORD_OK, !!shrink_first);
    assert_int_equal(rb->status == PM_COORD_OK, !shrink_first);
    if (shrink_first) {
        /* b re-reads: it is no longer in the set, so it may not take over. */
        assert_int_equal(rb->status, PM_COORD_CONFLICT);
        pm_coord_record_t again;
        assert_int_equal(pm_isr_rule_takeover(&rb->records[0], "b", 2, 0, &again), -1);
        assert_string_equal(rb->records[0].owner, "a");
        assert_int_equal(rb->records[0].n_in_sync, 0);
    } else {
        /* The owner re-reads: the space is b's at epoch 2 (R4: it stops). */
        assert_int_equal(ro->status, PM_COORD_CONFLICT);
        assert_string_equal(ro->records[0].owner, "b");
        assert_int_equal(ro->records[0].epoch, 2);
        /* And its retried shrink from the new revision would only change
         * b's record: it is not the owner, so it must not (isr.c only
         * reconciles records it owns). */
        assert_int_not_equal(ro->records[0].owner_pid, 1);
    }
    pm_coord_result_destroy(&ro);
    pm_coord_result_destroy(&rb);
    pm_coord_destroy(&owner);
    pm_coord_destroy(&backup);
    pm_coord_mem_destroy(&store);
}

static void
test_race_shrink_wins(void **state)
{
    (void) state;
    s_race(1);
}

static void
test_race_takeover_wins(void **state)
{
    (void) state;
    s_race(0);
}

/* Two members race to take over: one wins, the other's re-read shows it. */
static void
test_two_candidates(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *b = s_client(store), *c = s_client(store);
    pm_coord_record_t seen = s_setup(b, 1);
    pm_coord_record_t tb, tc;
    assert_int_equal(pm_isr_rule_takeover(&seen, "b", 2, 0, &tb), 0);
    assert_int_equal(pm_isr_rule_takeover(&seen, "c", 3, 0, &tc), 0);
    pm_coord_cas(c, seen.revision, &tc);
    pm_coord_cas(b, seen.revision, &tb);
    pm_coord_result_t *rc = s_next(c), *rb = s_next(b);
    assert_int_equal(rc->status, PM_COORD_OK);
    assert_int_equal(rb->status, PM_COORD_CONFLICT);
    assert_string_equal(rb->records[0].owner, "c");
    assert_int_equal(rb->records[0].epoch, 2);
    /* b is still in c's set (it held everything), so it is c's heir next. */
    assert_true(pm_isr_rule_member(&rb->records[0], "b", 2));
    pm_coord_result_destroy(&rc);
    pm_coord_result_destroy(&rb);
    pm_coord_destroy(&b);
    pm_coord_destroy(&c);
    pm_coord_mem_destroy(&store);
}

/* A restarted agent reads the store first: its space moved on to a newer
 * epoch while it was down, so even its own WAL gives it no claim. */
static void
test_restart_finds_newer_epoch(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *b = s_client(store);
    pm_coord_record_t seen = s_setup(a, 0);
    pm_coord_record_t took;
    assert_int_equal(pm_isr_rule_takeover(&seen, "b", 2, 0, &took), 0);
    pm_coord_cas(b, seen.revision, &took);
    pm_coord_result_t *r = s_next(b);
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_result_destroy(&r);
    /* a restarts as process 11 on its data dir (prev 1) and lists. */
    pm_coord_t *a2 = s_client(store);
    pm_coord_list(a2);
    r = s_next(a2);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_int_equal(r->n_records, 1);
    assert_int_equal(r->records[0].epoch, 2);
    pm_coord_record_t back;
    assert_int_equal(pm_isr_rule_takeover(&r->records[0], "a", 11, 1, &back), -1);
    pm_coord_result_destroy(&r);
    pm_coord_destroy(&a);
    pm_coord_destroy(&a2);
    pm_coord_destroy(&b);
    pm_coord_mem_destroy(&store);
}

/* The store down: a takeover's CAS is UNAVAILABLE and changes nothing; a
 * re-read decides (the record is the old one); back up, the same CAS wins. */
static void
test_store_down_then_back(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *b = s_client(store);
    pm_coord_record_t seen = s_setup(a, 0);
    pm_coord_record_t took;
    assert_int_equal(pm_isr_rule_takeover(&seen, "b", 2, 0, &took), 0);
    pm_coord_mem_set_available(b, 0);
    pm_coord_cas(b, seen.revision, &took);
    pm_coord_result_t *r = s_next(b);
    assert_int_equal(r->status, PM_COORD_UNAVAILABLE);
    pm_coord_result_destroy(&r);
    /* The owner, still connected, reads its record unchanged: it keeps
     * serving (nothing it needs comes from the store). */
    pm_coord_get(a, "S");
    r = s_next(a);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_string_equal(r->records[0].owner, "a");
    assert_int_equal(r->records[0].revision, seen.revision);
    pm_coord_result_destroy(&r);
    /* Back: the re-read shows the old record (the write did not happen),
     * and the retried CAS from it wins. */
    pm_coord_mem_set_available(b, 1);
    pm_coord_get(b, "S");
    r = s_next(b);
    assert_false(pm_coord_record_same(&r->records[0], &took));
    pm_coord_record_t cur = r->records[0];
    pm_coord_result_destroy(&r);
    pm_coord_cas(b, cur.revision, &took);
    r = s_next(b);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_string_equal(r->records[0].owner, "b");
    assert_int_equal(r->records[0].epoch, 2);
    pm_coord_result_destroy(&r);
    pm_coord_destroy(&a);
    pm_coord_destroy(&b);
    pm_coord_mem_destroy(&store);
}

/* A grow by the owner, then a takeover by the new member: R2 then R3. */
static void
test_grow_then_member_takes_over(void **state)
{
    (void) state;
    pm_coord_mem_t *store = pm_coord_mem_new();
    pm_coord_t *a = s_client(store), *c = s_client(store);
    pm_coord_record_t seen = s_setup(a, 0);
    pm_coord_record_t none;
    assert_int_equal(pm_isr_rule_takeover(&seen, "c", 3, 0, &none), -1); /* not yet */
    pm_coord_member_t want[2] = {s_m("b", 2), s_m("c", 3)};
    pm_coord_record_t grown;
    pm_isr_rule_set(&seen, want, 2, &grown);
    pm_coord_cas(a, seen.revision, &grown);
    pm_coord_result_t *r = s_next(a);
    assert_int_equal(r->status, PM_COORD_OK);
    pm_coord_record_t now = r->records[0];
    pm_coord_result_destroy(&r);
    pm_coord_record_t took;
    assert_int_equal(pm_isr_rule_takeover(&now, "c", 3, 0, &took), 0);
    pm_coord_cas(c, now.revision, &took);
    r = s_next(c);
    assert_int_equal(r->status, PM_COORD_OK);
    assert_int_equal(r->records[0].epoch, 2);
    pm_coord_result_destroy(&r);
    pm_coord_destroy(&a);
    pm_coord_destroy(&c);
    pm_coord_mem_destroy(&store);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_takeover_rule),
        cmocka_unit_test(test_race_shrink_wins),
        cmocka_unit_test(test_race_takeover_wins),
        cmocka_unit_test(test_two_candidates),
        cmocka_unit_test(test_restart_finds_newer_epoch),
        cmocka_unit_test(test_store_down_then_back),
        cmocka_unit_test(test_grow_then_member_takes_over),
    };
    return cmocka_run_group_tests_name("isr", tests, NULL, NULL);
}
