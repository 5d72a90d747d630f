/*
 * test_timer.c - cmocka suite for node/timer.c: the indexed min-heap checked
 * against a brute-force model over many thousands of random set / re-arm /
 * cancel / pop operations, plus ordering, growth and destroy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "timer.h"

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t s_rng;

static uint64_t
s_rand(void)
{
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 2685821657736338717ULL;
}

static void
test_empty(void **state)
{
    (void) state;
    pm_timers_t *h = pm_timers_new();
    assert_non_null(h);
    assert_null(pm_timers_peek(h));
    assert_null(pm_timers_pop_due(h, INT64_MAX));
    assert_int_equal(pm_timers_count(h), 0);
    pm_timer_t t = {0};
    pm_timers_cancel(h, &t); /* not armed: no-op */
    assert_int_equal(pm_timers_count(h), 0);
    pm_timers_destroy(&h);
    assert_null(h);
    pm_timers_destroy(&h);
}

static void
test_order_and_due(void **state)
{
    (void) state;
    pm_timers_t *h = pm_timers_new();
    pm_timer_t t[5] = {{0}};
    int64_t at[5] = {50, 10, 40, 10, 30};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(pm_timers_set(h, &t[i], at[i]), 0);
        assert_int_not_equal(t[i].idx, 0);
        assert_int_equal(t[i].at, at[i]);
    }
    assert_int_equal(pm_timers_count(h), 5);
    assert_int_equal(pm_timers_peek(h)->at, 10);
    assert_null(pm_timers_pop_due(h, 9));
    assert_int_equal(pm_timers_count(h), 5);
    pm_timer_t *a = pm_timers_pop_due(h, 10);
    pm_timer_t *b = pm_timers_pop_due(h, 10);
    assert_non_null(a);
    assert_non_null(b);
    assert_true((a == &t[1] && b == &t[3]) || (a == &t[3] && b == &t[1]));
    assert_int_equal(a->idx, 0);
    assert_int_equal(b->idx, 0);
    assert_null(pm_timers_pop_due(h, 10));
    /* Re-arm earlier and later. */
    assert_int_equal(pm_timers_set(h, &t[0], 5), 0); /* 50 -> 5 */
    assert_ptr_equal(pm_timers_peek(h), &t[0]);
    assert_int_equal(pm_timers_set(h, &t[0], 45), 0); /* 5 -> 45 */
    assert_ptr_equal(pm_timers_peek(h), &t[4]);        /* 30 */
    assert_int_equal(pm_timers_count(h), 3);
    pm_timers_cancel(h, &t[4]);
    pm_timers_cancel(h, &t[4]);
    assert_int_equal(t[4].idx, 0);
    assert_int_equal(pm_timers_count(h), 2);
    assert_ptr_equal(pm_timers_pop_due(h, 1000), &t[2]); /* 40 */
    assert_ptr_equal(pm_timers_pop_due(h, 1000), &t[0]); /* 45 */
    assert_null(pm_timers_pop_due(h, 1000));
    /* Negative and extreme deadlines. */
    pm_timers_set(h, &t[0], INT64_MAX);
    pm_timers_set(h, &t[1], INT64_MIN);
    pm_timers_set(h, &t[2], -5);
    assert_ptr_equal(pm_timers_pop_due(h, -6), &t[1]);
    assert_null(pm_timers_pop_due(h, -6));
    assert_ptr_equal(pm_timers_pop_due(h, 0), &t[2]);
    assert_null(pm_timers_pop_due(h, INT64_MAX - 1));
    assert_ptr_equal(pm_timers_pop_due(h, INT64_MAX), &t[0]);
    /* Destroy disarms what is left. */
    pm_timers_set(h, &t[3], 7);
    pm_timers_set(h, &t[4], 8);
    pm_timers_destroy(&h);
    assert_int_equal(t[3].idx, 0);
    assert_int_equal(t[4].idx, 0);
}

/* The model: armed[i] and at[i] mirror what the heap should hold. */
enum { S_N = 600 };

static void
s_check_consistent(pm_timers_t *h, pm_timer_t *t, const int *armed, const int64_t *at)
{
    size_t n = 0;
    int64_t min = INT64_MAX;
    for (int i = 0; i < S_N; i++) {
        assert_int_equal(t[i].idx != 0, armed[i]);
        if (armed[i]) {
            n++;
            assert_int_equal(t[i].at, at[i]);
            if (at[i] < min)
                min = at[i];
        }
    }
    assert_int_equal(pm_timers_count(h), n);
    pm_timer_t *top = pm_timers_peek(h);
    if (!n) {
        assert_null(top);
    } else {
        assert_non_null(top);
        assert_int_equal(top->at, min);
    }
}

static void
s_model_run(uint64_t seed, int ops, int64_t spread)
{
    s_rng = seed;
    pm_timers_t *h = pm_timers_new();
    pm_timer_t *t = calloc(S_N, sizeof *t);
    int armed[S_N] = {0};
    int64_t at[S_N] = {0};
    int64_t now = 0;
    assert_non_null(t);
    for (int op = 0; op < ops; op++) {
        int i = (int) (s_rand() % S_N);
        switch (s_rand() % 8) {
        case 0:
        case 1:
        case 2: { /* set or re-arm */
            int64_t when = now + (int64_t) (s_rand() % (uint64_t) spread) - spread / 4;
            assert_int_equal(pm_timers_set(h, &t[i], when), 0);
            armed[i] = 1;
            at[i] = when;
            break;
        }
        case 3:
        case 4: /* cancel, armed or not */
            pm_timers_cancel(h, &t[i]);
            armed[i] = 0;
            break;
        case 5:
        case 6: { /* pop everything due as time moves on */
            now += (int64_t) (s_rand() % (uint64_t) (spread / 8 + 1));
            int64_t last = INT64_MIN;
            pm_timer_t *x;
            while ((x = pm_timers_pop_due(h, now))) {
                int k = (int) (x - t);
                assert_true(k >= 0 && k < S_N);
                assert_true(armed[k]);
                assert_true(x->at <= now);
                assert_true(x->at >= last);
                for (int j = 0; j < S_N; j++) /* nothing armed was earlier */
                    if (armed[j])
                        assert_true(at[j] >= x->at);
                last = x->at;
                armed[k] = 0;
                assert_int_equal(x->idx, 0);
            }
            for (int j = 0; j < S_N; j++) /* nothing due is left */
                if (armed[j])
                    assert_true(at[j] > now);
            break;
        }
        default: /* pop one if due, whatever "now" a caller passes */
        {
            int64_t probe = now + (int64_t) (s_rand() % (uint64_t) spread) - spread / 2;
            pm_timer_t *x = pm_timers_pop_due(h, probe);
            int64_t min = INT64_MAX;
            for (int j = 0; j < S_N; j++)
                if (armed[j] && at[j] < min)
                    min = at[j];
            if (min <= probe) {
                assert_non_null(x);
                assert_int_equal(x->at, min);
                armed[x - t] = 0;
            } else {
                assert_null(x);
            }
        }
        }
        s_check_consistent(h, t, armed, at);
    }
    /* Drain: non-decreasing, and exactly what the model holds. */
    size_t left = 0;
    for (int j = 0; j < S_N; j++)
        left += (size_t) armed[j];
    int64_t last = INT64_MIN;
    pm_timer_t *x;
    size_t popped = 0;
    while ((x = pm_timers_pop_due(h, INT64_MAX))) {
        assert_true(armed[x - t]);
        assert_true(x->at >= last);
        last = x->at;
        armed[x - t] = 0;
        popped++;
    }
    assert_int_equal(popped, left);
    assert_int_equal(pm_timers_count(h), 0);
    pm_timers_destroy(&h);
    free(t);
}

static void
test_random_against_model(void **state)
{
    (void) state;
    s_model_run(0x9e3779b97f4a7c15ULL, 20000, 1000); /* wide spread */
    s_model_run(12345, 20000, 8);                     /* many ties */
    s_model_run(777, 5000, 1000000);
}

static void
test_growth_and_many(void **state)
{
    (void) state;
    enum { N = 100000 };
    pm_timers_t *h = pm_timers_new();
    pm_timer_t *t = calloc(N, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < N; i++) /* descending: every insert sifts to the top */
        assert_int_equal(pm_timers_set(h, &t[i], N - i), 0);
    assert_int_equal(pm_timers_count(h), N);
    /* Cancel every third; re-arm every fifth to far later. */
    for (int i = 0; i < N; i += 3)
        pm_timers_cancel(h, &t[i]);
    for (int i = 1; i < N; i += 5)
        if (i % 3)
            assert_int_equal(pm_timers_set(h, &t[i], 10 * N + i), 0);
    int64_t last = INT64_MIN;
    size_t n = 0;
    pm_timer_t *x;
    while ((x = pm_timers_pop_due(h, INT64_MAX))) {
        assert_true(x->at >= last);
        int k = (int) (x - t);
        assert_true(k % 3 != 0);
        if (k % 5 == 1)
            assert_int_equal(x->at, 10 * N + k);
        else
            assert_int_equal(x->at, N - k);
        last = x->at;
        n++;
    }
    assert_int_equal(n, N - (N + 2) / 3);
    pm_timers_destroy(&h);
    free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_order_and_due),
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_growth_and_many),
    };
    return cmocka_run_group_tests_name("timer", tests, NULL, NULL);
}
