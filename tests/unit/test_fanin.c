/*
 * test_fanin.c - cmocka suite for node/fanin.c: the combinators' rules
 * (all, any, race, all-settled) fed input outcomes in chosen orders,
 * including failures of every kind, timeouts, duplicate inputs, outcomes
 * heard twice, the input limit, the size limit, and the JSON encodings of
 * list results (UTF-8 strings, {"base64"} for other bytes, escapes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanin.h"

static const char *ids3[] = {"a~1", "b~2", "c~3"};

static pm_fanin_t *
s_new(int kind, size_t n)
{
    return pm_fanin_new(kind, ids3, n, 0);
}

/* Hears input i; returns hear's result and keeps the outcome in *out. */
static int
s_hear(pm_fanin_t *f, size_t i, int state, const char *data, pm_fanin_outcome_t *out)
{
    memset(out, 0, sizeof *out);
    return pm_fanin_hear(f, i, state, data, data ? strlen(data) : 0, out);
}

static void
test_check(void **state)
{
    (void) state;
    assert_int_equal(pm_fanin_check(PM_COMBINE_ALL, 3, 1000), PM_OK);
    assert_int_equal(pm_fanin_check(PM_COMBINE_ALL_SETTLED, 1000, 1000), PM_OK);
    assert_int_equal(pm_fanin_check(PM_COMBINE_RACE, 1001, 1000), PM_ERR_LIMIT);
    assert_int_equal(pm_fanin_check(PM_COMBINE_ANY, 0, 1000), PM_ERR_BAD_REQUEST);
    assert_int_equal(pm_fanin_check(0, 2, 1000), PM_ERR_BAD_REQUEST);
    assert_int_equal(pm_fanin_check(5, 2, 1000), PM_ERR_BAD_REQUEST);
    assert_int_equal(pm_combinator_parse("all-settled"), PM_COMBINE_ALL_SETTLED);
    assert_int_equal(pm_combinator_parse("all_settled"), PM_COMBINE_ALL_SETTLED);
    assert_int_equal(pm_combinator_parse("race"), PM_COMBINE_RACE);
    assert_int_equal(pm_combinator_parse("first"), 0);
    assert_string_equal(pm_combinator_name(PM_COMBINE_ANY), "any");
}

static void
test_all_resolves_in_input_order(void **state)
{
    (void) state;
    pm_fanin_t *f = s_new(PM_COMBINE_ALL, 3);
    pm_fanin_outcome_t o;
    assert_int_equal(s_hear(f, 2, PM_STATE_RESOLVED, "three", &o), 0);
    assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "one", &o), 0);
    assert_int_equal(s_hear(f, 1, PM_STATE_RESOLVED, "two", &o), 1);
    assert_int_equal(o.state, PM_STATE_RESOLVED);
    assert_string_equal(o.data, "[\"one\",\"two\",\"three\"]");
    assert_int_equal(o.len, strlen(o.data));
    free(o.data);
    /* done: nothing more is heard */
    assert_int_equal(s_hear(f, 1, PM_STATE_REJECTED, "late", &o), 0);
    pm_fanin_destroy(&f);
    assert_null(f);
}

/* The early guess (fanins.c): a clone carries what was heard, decides on
 * its own, and leaves the original undecided. */
static void
test_clone_guesses_without_deciding(void **state)
{
    (void) state;
    pm_fanin_t *f = s_new(PM_COMBINE_ALL, 3);
    pm_fanin_outcome_t o;
    assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "one", &o), 0);
    pm_fanin_t *g = pm_fanin_clone(f);
    assert_int_equal(g->heard, 1);
    assert_int_equal(s_hear(g, 0, PM_STATE_RESOLVED, "other", &o), 0); /* heard before */
    assert_int_equal(s_hear(g, 1, PM_STATE_RESOLVED, "two", &o), 0);
    assert_int_equal(s_hear(g, 2, PM_STATE_RESOLVED, "three", &o), 1);
    assert_string_equal(o.data, "[\"one\",\"two\",\"three\"]");
    free(o.data);
    /* The original heard only the first; the guess's inputs are its own. */
    assert_int_equal(f->heard, 1);
    assert_int_equal(f->done, 0);
    assert_int_equal(s_hear(f, 1, PM_STATE_REJECTED, "no", &o), 1);
    assert_int_equal(o.state, PM_STATE_REJECTED);
    free(o.data);
    pm_fanin_destroy(&g);
    pm_fanin_destroy(&f);
}

static void
test_all_rejects_on_first_failure(void **state)
{
    (void) state;
    static const int fails[] = {PM_STATE_REJECTED, PM_STATE_CANCELED, PM_STATE_TIMEDOUT};
    static const char *names[] = {"rejected", "canceled", "timedout"};
    for (int k = 0; k < 3; k++) {
        pm_fanin_t *f = s_new(PM_COMBINE_ALL, 3);
        pm_fanin_outcome_t o;
        assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "one", &o), 0);
        assert_int_equal(s_hear(f, 1, fails[k], "boom", &o), 1);
        assert_int_equal(o.state, PM_STATE_REJECTED);
        char want[128];
        snprintf(want, sizeof want, "{\"id\":\"b~2\",\"state\":\"%s\",\"reason\":\"boom\"}",
                 names[k]);
        assert_string_equal(o.data, want);
        free(o.data);
        /* a later failure changes nothing */
        assert_int_equal(s_hear(f, 2, PM_STATE_REJECTED, "other", &o), 0);
        pm_fanin_destroy(&f);
    }
}

static void
test_any(void **state)
{
    (void) state;
    pm_fanin_t *f = s_new(PM_COMBINE_ANY, 3);
    pm_fanin_outcome_t o;
    assert_int_equal(s_hear(f, 0, PM_STATE_REJECTED, "no", &o), 0);
    assert_int_equal(s_hear(f, 2, PM_STATE_RESOLVED, "yes", &o), 1);
    assert_int_equal(o.state, PM_STATE_RESOLVED);
    assert_int_equal(o.len, 3);
    assert_memory_equal(o.data, "yes", 3); /* the value itself, not JSON */
    free(o.data);
    assert_int_equal(s_hear(f, 1, PM_STATE_RESOLVED, "later", &o), 0);
    pm_fanin_destroy(&f);

    /* every input failed: every reason, in input order */
    f = s_new(PM_COMBINE_ANY, 3);
    assert_int_equal(s_hear(f, 2, PM_STATE_TIMEDOUT, "slow", &o), 0);
    assert_int_equal(s_hear(f, 0, PM_STATE_REJECTED, "bad", &o), 0);
    assert_int_equal(s_hear(f, 1, PM_STATE_CANCELED, "canceled", &o), 1);
    assert_int_equal(o.state, PM_STATE_REJECTED);
    assert_string_equal(o.data, "[{\"id\":\"a~1\",\"state\":\"rejected\",\"reason\":\"bad\"},"
                                "{\"id\":\"b~2\",\"state\":\"canceled\",\"reason\":\"canceled\"},"
                                "{\"id\":\"c~3\",\"state\":\"timedout\",\"reason\":\"slow\"}]");
    free(o.data);
    pm_fanin_destroy(&f);

    /* an empty value resolves too */
    f = s_new(PM_COMBINE_ANY, 2);
    assert_int_equal(s_hear(f, 1, PM_STATE_RESOLVED, NULL, &o), 1);
    assert_int_equal(o.state, PM_STATE_RESOLVED);
    assert_int_equal(o.len, 0);
    assert_null(o.data);
    pm_fanin_destroy(&f);
}

static void
test_race(void **state)
{
    (void) state;
    pm_fanin_outcome_t o;
    pm_fanin_t *f = s_new(PM_COMBINE_RACE, 3);
    assert_int_equal(s_hear(f, 1, PM_STATE_RESOLVED, "fast", &o), 1);
    assert_int_equal(o.state, PM_STATE_RESOLVED);
    assert_memory_equal(o.data, "fast", 4);
    free(o.data);
    assert_int_equal(s_hear(f, 0, PM_STATE_REJECTED, "slow", &o), 0);
    pm_fanin_destroy(&f);

    /* the first input fails: the race fails the same way */
    static const int fails[] = {PM_STATE_REJECTED, PM_STATE_CANCELED, PM_STATE_TIMEDOUT};
    for (int k = 0; k < 3; k++) {
        f = s_new(PM_COMBINE_RACE, 3);
        assert_int_equal(s_hear(f, 2, fails[k], "why", &o), 1);
        assert_int_equal(o.state, fails[k]);
        assert_string_equal(o.data, "why");
        free(o.data);
        assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "v", &o), 0);
        pm_fanin_destroy(&f);
    }
}

static void
test_all_settled(void **state)
{
    (void) state;
    pm_fanin_outcome_t o;
    pm_fanin_t *f = s_new(PM_COMBINE_ALL_SETTLED, 3);
    assert_int_equal(s_hear(f, 1, PM_STATE_REJECTED, "no", &o), 0);
    assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "v", &o), 0);
    assert_int_equal(s_hear(f, 2, PM_STATE_TIMEDOUT, "timed out", &o), 1);
    assert_int_equal(o.state, PM_STATE_RESOLVED);
    assert_string_equal(o.data, "[{\"state\":\"resolved\",\"value\":\"v\"},"
                                "{\"state\":\"rejected\",\"reason\":\"no\"},"
                                "{\"state\":\"timedout\",\"reason\":\"timed out\"}]");
    free(o.data);
    pm_fanin_destroy(&f);
}

/* The same id twice is two inputs: each is counted, each must be heard. */
static void
test_duplicates_count_each(void **state)
{
    (void) state;
    const char *ids[] = {"x~1", "x~1", "y~2"};
    pm_fanin_outcome_t o;
    pm_fanin_t *f = pm_fanin_new(PM_COMBINE_ALL, ids, 3, 0);
    assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "x", &o), 0);
    assert_int_equal(s_hear(f, 2, PM_STATE_RESOLVED, "y", &o), 0); /* slot 1 still open */
    assert_int_equal(s_hear(f, 1, PM_STATE_RESOLVED, "x", &o), 1);
    assert_string_equal(o.data, "[\"x\",\"x\",\"y\"]");
    free(o.data);
    pm_fanin_destroy(&f);
}

/* Which outcomes decide a combinator whatever else was heard, and which
 * input is the last it waits for (the early copies it asks for, fanins.c):
 * checked against what pm_fanin_hear then does. */
static void
test_decisive_outcomes(void **state)
{
    (void) state;
    unsigned res = 1u << PM_STATE_RESOLVED;
    assert_int_equal(pm_fanin_decides(PM_COMBINE_ALL), PM_FANIN_FAILURES);
    assert_int_equal(pm_fanin_decides(PM_COMBINE_ANY), res);
    assert_int_equal(pm_fanin_decides(PM_COMBINE_RACE), PM_FANIN_EVERY);
    assert_int_equal(pm_fanin_decides(PM_COMBINE_ALL_SETTLED), 0);
    assert_int_equal(PM_FANIN_EVERY & PM_FANIN_FAILURES, PM_FANIN_FAILURES);
    assert_false(PM_FANIN_FAILURES & res);
    /* A failure decides all (and a resolve does not) from the first input on. */
    pm_fanin_outcome_t o;
    for (int st = PM_STATE_RESOLVED; st <= PM_STATE_TIMEDOUT; st++) {
        pm_fanin_t *f = s_new(PM_COMBINE_ALL, 3);
        int decided = s_hear(f, 0, st, "v", &o);
        assert_int_equal(decided, (pm_fanin_decides(PM_COMBINE_ALL) >> st) & 1);
        if (decided)
            free(o.data);
        pm_fanin_destroy(&f);
        f = s_new(PM_COMBINE_ANY, 3);
        decided = s_hear(f, 0, st, "v", &o);
        assert_int_equal(decided, (pm_fanin_decides(PM_COMBINE_ANY) >> st) & 1);
        if (decided)
            free(o.data);
        pm_fanin_destroy(&f);
    }
}

static void
test_last_pending(void **state)
{
    (void) state;
    pm_fanin_outcome_t o;
    pm_fanin_t *f = s_new(PM_COMBINE_ALL_SETTLED, 3);
    assert_int_equal(pm_fanin_last_pending(f), -1); /* three ids pending */
    assert_int_equal(s_hear(f, 1, PM_STATE_REJECTED, "no", &o), 0);
    assert_int_equal(pm_fanin_last_pending(f), -1);
    assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "a", &o), 0);
    assert_int_equal(pm_fanin_last_pending(f), 2); /* whatever it says decides */
    assert_int_equal(s_hear(f, 2, PM_STATE_CANCELED, "c", &o), 1);
    free(o.data);
    assert_int_equal(pm_fanin_last_pending(f), -1); /* done */
    pm_fanin_destroy(&f);

    /* Duplicates: the last id may hold several positions (the first is given). */
    const char *ids[] = {"x~1", "y~2", "x~1"};
    f = pm_fanin_new(PM_COMBINE_ALL, ids, 3, 0);
    assert_int_equal(pm_fanin_last_pending(f), -1);
    assert_int_equal(s_hear(f, 1, PM_STATE_RESOLVED, "y", &o), 0);
    assert_int_equal(pm_fanin_last_pending(f), 0);
    pm_fanin_destroy(&f);

    /* One id only: last from the start. */
    const char *one[] = {"z~1", "z~1"};
    f = pm_fanin_new(PM_COMBINE_ANY, one, 2, 0);
    assert_int_equal(pm_fanin_last_pending(f), 0);
    pm_fanin_destroy(&f);

    /* More positions pending than it looks at: not looked at. */
    const char *many[PM_FANIN_LAST_SCAN + 2];
    for (size_t i = 0; i < PM_FANIN_LAST_SCAN + 2; i++)
        many[i] = "m~1";
    f = pm_fanin_new(PM_COMBINE_ALL, many, PM_FANIN_LAST_SCAN + 2, 0);
    assert_int_equal(pm_fanin_last_pending(f), -1);
    assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "m", &o), 0);
    assert_int_equal(s_hear(f, 1, PM_STATE_RESOLVED, "m", &o), 0);
    assert_int_equal(pm_fanin_last_pending(f), 2);
    pm_fanin_destroy(&f);
}

/* An outcome heard twice (a second subscription, a takeover) counts once,
 * and the first one heard wins. */
static void
test_heard_twice_counts_once(void **state)
{
    (void) state;
    pm_fanin_outcome_t o;
    pm_fanin_t *f = s_new(PM_COMBINE_ALL_SETTLED, 2);
    assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "first", &o), 0);
    assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "first", &o), 0);
    assert_int_equal(s_hear(f, 0, PM_STATE_REJECTED, "other", &o), 0);
    assert_int_equal(f->heard, 1);
    assert_int_equal(s_hear(f, 1, PM_STATE_RESOLVED, "second", &o), 1);
    assert_string_equal(o.data, "[{\"state\":\"resolved\",\"value\":\"first\"},"
                                "{\"state\":\"resolved\",\"value\":\"second\"}]");
    free(o.data);
    pm_fanin_destroy(&f);
}

static void
test_bad_arguments(void **state)
{
    (void) state;
    pm_fanin_outcome_t o;
    pm_fanin_t *f = s_new(PM_COMBINE_ALL, 2);
    assert_int_equal(s_hear(f, 2, PM_STATE_RESOLVED, "v", &o), -1);
    assert_int_equal(s_hear(f, 0, PM_STATE_PENDING, "v", &o), -1);
    assert_int_equal(s_hear(f, 0, 9, "v", &o), -1);
    assert_int_equal(f->heard, 0);
    pm_fanin_destroy(&f);
}

/* Values: UTF-8 as JSON strings (escaped), other bytes as base64. */
static void
test_json_encoding(void **state)
{
    (void) state;
    pm_fanin_outcome_t o;
    const char *ids[] = {"a", "b", "c", "d", "e"};
    pm_fanin_t *f = pm_fanin_new(PM_COMBINE_ALL, ids, 5, 0);
    const uint8_t bin[] = {0xff, 0x00, 0x41};
    const char *quote = "say \"hi\"\\\n\x01";
    const char *utf8 = "gr\xc3\xbc\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80";
    const uint8_t surrogate[] = {0xed, 0xa0, 0x80}; /* U+D800: not UTF-8 */
    assert_int_equal(pm_fanin_hear(f, 0, PM_STATE_RESOLVED, bin, sizeof bin, &o), 0);
    assert_int_equal(pm_fanin_hear(f, 1, PM_STATE_RESOLVED, quote, strlen(quote), &o), 0);
    assert_int_equal(pm_fanin_hear(f, 2, PM_STATE_RESOLVED, utf8, strlen(utf8), &o), 0);
    assert_int_equal(pm_fanin_hear(f, 3, PM_STATE_RESOLVED, surrogate, 3, &o), 0);
    assert_int_equal(pm_fanin_hear(f, 4, PM_STATE_RESOLVED, "", 0, &o), 1);
    assert_string_equal(o.data, "[{\"base64\":\"/wBB\"},\"say \\\"hi\\\"\\\\\\n\\u0001\",\"gr\xc3\xbc"
                                "\xc3\x9f \xe2\x82\xac \xf0\x9f\x98\x80\",{\"base64\":\"7aCA\"},"
                                "\"\"]");
    free(o.data);
    pm_fanin_destroy(&f);

    /* base64 padding of every length */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    assert_int_equal(pm_fanin_json_bytes(&buf, &len, &cap, "\xff", 1), 0);
    assert_int_equal(pm_fanin_json_bytes(&buf, &len, &cap, "\xff\xfe", 2), 0);
    assert_int_equal(pm_fanin_json_bytes(&buf, &len, &cap, "\xc3", 1), 0); /* truncated */
    assert_string_equal(buf, "{\"base64\":\"/w==\"}{\"base64\":\"//4=\"}{\"base64\":\"ww==\"}");
    assert_int_equal(len, strlen(buf));
    free(buf);
}

/* A combined value above max_value rejects the combinator instead. */
static void
test_value_too_large(void **state)
{
    (void) state;
    pm_fanin_outcome_t o;
    pm_fanin_t *f = pm_fanin_new(PM_COMBINE_ALL, ids3, 2, 10);
    assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "12345", &o), 0);
    assert_int_equal(s_hear(f, 1, PM_STATE_RESOLVED, "67890", &o), 1);
    assert_int_equal(o.state, PM_STATE_REJECTED);
    assert_non_null(strstr(o.data, "VALUE_TOO_LARGE"));
    free(o.data);
    pm_fanin_destroy(&f);
}

/* The limit case: 1,000 inputs, all resolved in reverse order. */
static void
test_many_inputs(void **state)
{
    (void) state;
    enum { N = PM_FANIN_MAX_INPUTS };
    char **ids = calloc(N, sizeof *ids);
    for (int i = 0; i < N; i++) {
        ids[i] = malloc(16);
        snprintf(ids[i], 16, "s~%d", i);
    }
    pm_fanin_t *f = pm_fanin_new(PM_COMBINE_ALL, (const char *const *) ids, N, 0);
    pm_fanin_outcome_t o;
    for (int i = N - 1; i > 0; i--)
        assert_int_equal(s_hear(f, (size_t) i, PM_STATE_RESOLVED, "v", &o), 0);
    assert_int_equal(s_hear(f, 0, PM_STATE_RESOLVED, "v", &o), 1);
    assert_int_equal(o.len, 2 + N * 3 + (N - 1));
    free(o.data);
    pm_fanin_destroy(&f);
    for (int i = 0; i < N; i++)
        free(ids[i]);
    free(ids);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_all_resolves_in_input_order),
        cmocka_unit_test(test_all_rejects_on_first_failure),
        cmocka_unit_test(test_clone_guesses_without_deciding),
        cmocka_unit_test(test_any),
        cmocka_unit_test(test_race),
        cmocka_unit_test(test_all_settled),
        cmocka_unit_test(test_duplicates_count_each),
        cmocka_unit_test(test_heard_twice_counts_once),
        cmocka_unit_test(test_decisive_outcomes),
        cmocka_unit_test(test_last_pending),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_json_encoding),
        cmocka_unit_test(test_value_too_large),
        cmocka_unit_test(test_many_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
