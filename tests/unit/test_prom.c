/*
 * test_prom.c - Prometheus text from the agent's status JSON (node/prom.c):
 * label escaping, histograms in seconds, samples by key, the dotted lookup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

/* What fn wrote, as a string the caller frees. */
#define CAPTURE(text, stmt)                                                                        \
    do {                                                                                           \
        size_t len_ = 0;                                                                           \
        FILE *f = open_memstream(&(text), &len_);                                                  \
        assert_non_null(f);                                                                        \
        stmt;                                                                                      \
        fclose(f);                                                                                 \
    } while (0)

static void
test_label_value_escapes(void **state)
{
    (void) state;
    char *t = NULL;
    CAPTURE(t, pm_prom_label_value(f, "a\\b\"c\nd"));
    assert_string_equal(t, "a\\\\b\\\"c\\nd");
    free(t);
}

static void
test_jint_path(void **state)
{
    (void) state;
    json_t *st = json_loads("{\"mesh\":{\"members\":{\"alive\":3}},\"s\":\"x\"}", 0, NULL);
    assert_non_null(st);
    assert_int_equal(pm_prom_jint(st, "mesh.members.alive"), 3);
    assert_int_equal(pm_prom_jint(st, "mesh.members.dead"), 0);
    assert_int_equal(pm_prom_jint(st, "s"), 0); /* not an integer */
    json_decref(st);
}

static void
test_histogram_seconds(void **state)
{
    (void) state;
    json_t *h = json_loads("{\"le_ms\":[1,10],\"buckets\":[2,5],\"count\":7,\"sum_ms\":1500}", 0,
                           NULL);
    char *t = NULL;
    CAPTURE(t, pm_prom_histogram(f, "x", "op=\"get\"", h));
    assert_string_equal(t, "x_bucket{op=\"get\",le=\"0.001\"} 2\n"
                           "x_bucket{op=\"get\",le=\"0.01\"} 5\n"
                           "x_bucket{op=\"get\",le=\"+Inf\"} 7\n"
                           "x_sum{op=\"get\"} 1.5\n"
                           "x_count{op=\"get\"} 7\n");
    free(t);
    CAPTURE(t, pm_prom_histogram(f, "y", NULL, h));
    assert_non_null(strstr(t, "y_bucket{le=\"0.001\"} 2\n"));
    assert_non_null(strstr(t, "y_sum 1.5\ny_count 7\n"));
    free(t);
    json_t *bad = json_loads("{\"count\":1}", 0, NULL);
    CAPTURE(t, pm_prom_histogram(f, "z", NULL, bad));
    assert_string_equal(t, ""); /* malformed: nothing */
    free(t);
    json_decref(bad);
    json_decref(h);
}

static void
test_samples_by_key_skip(void **state)
{
    (void) state;
    json_t *o = json_loads("{\"pending\":2,\"total\":9,\"odd\\\"k\":1,\"s\":\"x\"}", 0, NULL);
    char *t = NULL;
    CAPTURE(t, pm_prom_samples_by_key(f, "p", o, "state", "total"));
    assert_non_null(strstr(t, "p{state=\"pending\"} 2\n"));
    assert_non_null(strstr(t, "p{state=\"odd\\\"k\"} 1\n"));
    assert_null(strstr(t, "total"));
    assert_null(strstr(t, "\"s\""));
    free(t);
    json_decref(o);
}

static void
test_agent_families(void **state)
{
    (void) state;
    json_t *st = json_loads("{\"uptime_ms\":2500,\"promises\":{\"pending\":1,\"total\":1}}", 0,
                            NULL);
    char *t = NULL;
    CAPTURE(t, pm_prom_agent(f, st));
    assert_non_null(strstr(t, "pmesh_uptime_seconds 2.500\n"));
    assert_non_null(strstr(t, "# TYPE pmesh_promises gauge\n"));
    assert_non_null(strstr(t, "pmesh_promises{state=\"pending\"} 1\n"));
    free(t);
    json_decref(st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_value_escapes), cmocka_unit_test(test_jint_path),
        cmocka_unit_test(test_histogram_seconds),   cmocka_unit_test(test_samples_by_key_skip),
        cmocka_unit_test(test_agent_families),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
