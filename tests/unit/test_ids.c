/*
 * test_ids.c - cmocka suite for node/ids.c: the id grammar, formatted and
 * parsed back the same way (spaces, leases, minted and invocation ids).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "ids.h"

static void
test_base36(void **state)
{
    (void) state;
    char b[PM_ID_B36_MAX];
    pm_id_base36(0, b);
    assert_string_equal(b, "0");
    pm_id_base36(35, b);
    assert_string_equal(b, "z");
    pm_id_base36(36, b);
    assert_string_equal(b, "10");
    pm_id_base36(UINT64_MAX, b);
    assert_string_equal(b, "3w5e11264sgsf");
}

static void
test_space_of_an_id(void **state)
{
    (void) state;
    char sp[16];
    assert_int_equal(pm_id_space("n1-k3~1.2", sp, sizeof sp), 5);
    assert_string_equal(sp, "n1-k3");
    /* the first "~" ends the space */
    assert_int_equal(pm_id_space("n1-k3~n2-x~c1.1-3", sp, sizeof sp), 5);
    assert_string_equal(sp, "n1-k3");
    /* none, or too long for out */
    assert_int_equal(pm_id_space("nospace", sp, sizeof sp), 0);
    assert_string_equal(sp, "");
    assert_int_equal(pm_id_space("a-very-long-space-name~1", sp, sizeof sp), 0);
    assert_string_equal(sp, "");
    assert_int_equal(pm_id_space("~1", sp, sizeof sp), 0);
    assert_int_equal(pm_id_space_len("ab~c"), 2);
    assert_int_equal(pm_id_space_len("abc"), 0);
}

static void
test_membership(void **state)
{
    (void) state;
    assert_true(pm_id_in_space("n1-a~1.1", "n1-a", 4));
    assert_false(pm_id_in_space("n1-ab~1.1", "n1-a", 4));
    assert_false(pm_id_in_space("n1-a", "n1-a", 4));
    assert_true(pm_id_same_space("n1-a~x", "n1-a~y"));
    assert_false(pm_id_same_space("n1-a~x", "n1-b~y"));
    assert_false(pm_id_same_space("n1-a~x", "nospace"));
    assert_true(pm_id_nested_in("n1-a~n2-b~c1.2-7", "n1-a", 4));
    assert_false(pm_id_nested_in("n1-a~c1.2-7", "n1-a", 4));
}

static void
test_lease_and_mint_round_trip(void **state)
{
    (void) state;
    char lease[64], id[64], sp[64];
    int n = pm_id_lease(lease, sizeof lease, "n1-k3", 2, 37);
    assert_string_equal(lease, "n1-k3~c2.11-");
    assert_int_equal(n, (int) strlen(lease));
    snprintf(id, sizeof id, "%s%s", lease, "5");
    assert_true(pm_id_under_lease(id, lease, (size_t) n));
    /* nothing after the lease, another lease, or a nested space: not under it */
    assert_false(pm_id_under_lease(lease, lease, (size_t) n));
    assert_false(pm_id_under_lease("n1-k3~c2.12-5", lease, (size_t) n));
    snprintf(id, sizeof id, "%s5~x", lease);
    assert_false(pm_id_under_lease(id, lease, (size_t) n));

    pm_id_mint(id, sizeof id, "n1-k3", 2, 36);
    assert_string_equal(id, "n1-k3~2.10");
    assert_int_equal(pm_id_space(id, sp, sizeof sp), 5);
    assert_string_equal(sp, "n1-k3");
    pm_id_tagged(id, sizeof id, "n1-k3", 'd', 255);
    assert_string_equal(id, "n1-k3~dff");
    pm_id_space_prefix(id, sizeof id, "n1-k3");
    assert_string_equal(id, "n1-k3~");
}

static void
test_space_names_and_nodes(void **state)
{
    (void) state;
    char sp[64], node[64];
    pm_id_space_name(sp, sizeof sp, "node-with-dash", 36 * 36);
    assert_string_equal(sp, "node-with-dash-100");
    /* the last dash ends the node name */
    assert_true(pm_space_node(sp, node, sizeof node));
    assert_string_equal(node, "node-with-dash");
    assert_false(pm_space_node("nodash", node, sizeof node));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base36),
        cmocka_unit_test(test_space_of_an_id),
        cmocka_unit_test(test_membership),
        cmocka_unit_test(test_lease_and_mint_round_trip),
        cmocka_unit_test(test_space_names_and_nodes),
    };
    return cmocka_run_group_tests_name("ids", tests, NULL, NULL);
}
