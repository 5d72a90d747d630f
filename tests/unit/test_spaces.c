/*
 * test_spaces.c - cmocka suite for mesh/spaces.c: the epoch rule and the
 * decisions built on it (fencing on both sides, takeover and resume epochs
 * against stale metadata, the probation list), including the races: equal
 * epochs from two claimants, refusals meant for an earlier holder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "spaces.h"

static void
test_the_rule_is_a_total_order(void **state)
{
    (void) state;
    assert_true(pm_epoch_wins(3, "z", 2, "a"));   /* higher epoch, whatever the name */
    assert_false(pm_epoch_wins(2, "a", 3, "z"));
    assert_true(pm_epoch_wins(2, "a", 2, "b"));   /* equal: smaller name */
    assert_false(pm_epoch_wins(2, "b", 2, "a"));
    assert_false(pm_epoch_wins(2, "a", 2, "a"));  /* the same claim does not beat itself */
    /* exactly one of two distinct claims wins, whichever is asked first */
    const char *names[] = {"n1", "n2", "n10"};
    for (uint64_t ea = 1; ea <= 3; ea++)
        for (uint64_t eb = 1; eb <= 3; eb++)
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) {
                    if (ea == eb && i == j)
                        continue;
                    assert_int_equal(pm_epoch_wins(ea, names[i], eb, names[j]) +
                                         pm_epoch_wins(eb, names[j], ea, names[i]),
                                     1);
                }
}

static void
test_fence_by_a_higher_known_epoch(void **state)
{
    (void) state;
    uint64_t at = 0;
    /* not ours; a newer epoch was announced: the sender is fenced */
    assert_true(pm_spaces_fence("b", 0, 0, 5, "a", 4, &at));
    assert_int_equal(at, 5);
    /* not ours; the sender's epoch is the newest: accepted */
    assert_false(pm_spaces_fence("b", 0, 0, 4, "a", 4, &at));
    assert_false(pm_spaces_fence("b", 0, 0, 0, "a", 1, &at));
}

static void
test_fence_by_our_own_claim(void **state)
{
    (void) state;
    uint64_t at = 0;
    /* we serve it at a higher epoch */
    assert_true(pm_spaces_fence("b", 1, 3, 3, "a", 2, &at));
    assert_int_equal(at, 3);
    /* equal epochs: the rule decides, and both sides agree */
    assert_true(pm_spaces_fence("a", 1, 2, 2, "b", 2, &at)); /* a < b: a's claim wins */
    assert_int_equal(at, 2);
    assert_false(pm_spaces_fence_is_stale(2, "b", at, "a"));  /* so b lets go */
    assert_false(pm_spaces_fence("b", 1, 2, 2, "a", 2, &at)); /* b's claim loses: accept a */
    /* records we sent ourselves are never refused by our own claim */
    assert_false(pm_spaces_fence("a", 1, 3, 3, "a", 3, &at));
    /* a lower epoch of ours does not refuse a newer sender */
    assert_false(pm_spaces_fence("b", 1, 1, 2, "a", 2, &at));
}

static void
test_stale_refusals_are_ignored(void **state)
{
    (void) state;
    /* a refusal at an epoch below ours was meant for an earlier holder */
    assert_true(pm_spaces_fence_is_stale(4, "a", 3, "b"));
    /* at a higher epoch it is not */
    assert_false(pm_spaces_fence_is_stale(3, "a", 4, "b"));
    /* equal epochs: only if our name wins */
    assert_true(pm_spaces_fence_is_stale(3, "a", 3, "b"));
    assert_false(pm_spaces_fence_is_stale(3, "b", 3, "a"));
}

static void
test_takeover_and_resume_against_stale_metadata(void **state)
{
    (void) state;
    /* the dead owner listed 2; nothing newer known: claim 3 */
    assert_int_equal(pm_spaces_takeover_epoch(2, 2), 3);
    assert_int_equal(pm_spaces_takeover_epoch(2, 0), 3);
    /* it had moved on from the dead owner (its metadata was stale) */
    assert_int_equal(pm_spaces_takeover_epoch(2, 3), 0);
    /* resume after a restart */
    assert_int_equal(pm_spaces_resume_epoch(1, 0), 2);
    assert_int_equal(pm_spaces_resume_epoch(4, 4), 5);
    assert_int_equal(pm_spaces_resume_epoch(4, 5), 0);
    /* a takeover and a resume of one space can meet at one epoch: the rule
     * then picks one owner everywhere */
    uint64_t heir = pm_spaces_takeover_epoch(2, 2), back = pm_spaces_resume_epoch(2, 2);
    assert_int_equal(heir, back);
    assert_true(pm_epoch_wins(heir, "n1", back, "n2") != pm_epoch_wins(back, "n2", heir, "n1"));
}

static void
test_probation_list(void **state)
{
    (void) state;
    pm_claims_t c = {0};
    pm_claims_add(&c, "a-1", 1);
    pm_claims_add(&c, "b-1", 3);
    pm_claims_add(&c, "a-1", 4); /* raises */
    pm_claims_add(&c, "b-1", 2); /* never lowers */
    assert_int_equal(c.n, 2);
    uint64_t ea = 0, eb = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (!strcmp(c.v[i].space, "a-1"))
            ea = c.v[i].epoch;
        if (!strcmp(c.v[i].space, "b-1"))
            eb = c.v[i].epoch;
    }
    assert_int_equal(ea, 4);
    assert_int_equal(eb, 3);
    assert_true(pm_claims_has(&c, "a-1"));
    assert_false(pm_claims_has(&c, "a-"));
    assert_true(pm_claims_drop(&c, "a-1"));
    assert_false(pm_claims_drop(&c, "a-1"));
    assert_false(pm_claims_has(&c, "a-1"));
    assert_true(pm_claims_has(&c, "b-1"));
    pm_claim_t out;
    assert_true(pm_claims_pop(&c, &out));
    assert_string_equal(out.space, "b-1");
    free(out.space);
    assert_false(pm_claims_pop(&c, &out));
    pm_claims_add(&c, "x-1", 1);
    pm_claims_free(&c);
    assert_int_equal(c.n, 0);
    assert_null(c.v);
}

static void
test_heir(void **state)
{
    (void) state;
    /* the first backup is dead, the second restarted since it got the copy
     * (a new primary space), the third holds it */
    pm_heir_t c[] = {{.name = "n2", .space_then = "n2-a", .space_now = "n2-a", .up = 0},
                     {.name = "n3", .space_then = "n3-a", .space_now = "n3-b", .up = 1},
                     {.name = "n4", .space_then = "n4-a", .space_now = "n4-a", .up = 1}};
    assert_int_equal(pm_spaces_heir(c, 3), 2);
    assert_false(c[0].restarted);
    assert_true(c[1].restarted);
    assert_false(c[2].restarted);
    /* stale metadata: what it announced is unknown now, or was not said */
    pm_heir_t d[] = {{.name = "n2", .space_then = "n2-a", .space_now = NULL, .up = 1}};
    assert_int_equal(pm_spaces_heir(d, 1), 0);
    pm_heir_t e[] = {{.name = "n2", .space_then = "", .space_now = "n2-z", .up = 1}};
    assert_int_equal(pm_spaces_heir(e, 1), 0);
    /* nobody holds the state */
    c[2].up = 0;
    assert_int_equal(pm_spaces_heir(c, 3), -1);
    assert_int_equal(pm_spaces_heir(c, 0), -1);
}

static void
test_retire(void **state)
{
    (void) state;
    assert_true(pm_spaces_retire(0, 0, 0));
    assert_false(pm_spaces_retire(1, 0, 0)); /* our primary stays */
    assert_false(pm_spaces_retire(0, 1, 0)); /* it holds promises */
    assert_false(pm_spaces_retire(0, 0, 1)); /* a live member mints there */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_rule_is_a_total_order),
        cmocka_unit_test(test_fence_by_a_higher_known_epoch),
        cmocka_unit_test(test_fence_by_our_own_claim),
        cmocka_unit_test(test_stale_refusals_are_ignored),
        cmocka_unit_test(test_takeover_and_resume_against_stale_metadata),
        cmocka_unit_test(test_probation_list),
        cmocka_unit_test(test_heir),
        cmocka_unit_test(test_retire),
    };
    return cmocka_run_group_tests_name("spaces", tests, NULL, NULL);
}
