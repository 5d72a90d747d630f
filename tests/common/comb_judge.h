/*
 * comb_judge.h - what a combinator may read, given its inputs as they read
 * back (proto/PROTOCOL.md 5a): the one copy of the rule that the chaos
 * checker (tests/bench/chaos_load.c) and the simulator (tests/sim/sim.c)
 * both hold every combinator to. Header-only (static inline): each includes
 * it after pmesh.h and jansson.h.
 */
#ifndef PM_TEST_COMB_JUDGE_H
#define PM_TEST_COMB_JUDGE_H

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "pmesh.h"

static inline int
s_cj_failed(int state)
{
    return state == PM_STATE_REJECTED || state == PM_STATE_CANCELED || state == PM_STATE_TIMEDOUT;
}

static inline int
s_cj_jstr_is(const json_t *j, const char *v)
{
    return json_is_string(j) && !strcmp(json_string_value(j), v);
}

/* {"id": ID, "state": STATE, "reason": R} of an input. */
static inline int
s_cj_jfail_is(const json_t *o, const char *id, int st, const char *reason)
{
    return json_is_object(o) && s_cj_jstr_is(json_object_get(o, "id"), id) &&
           s_cj_jstr_is(json_object_get(o, "state"), pm_state_name(st)) &&
           s_cj_jstr_is(json_object_get(o, "reason"), reason);
}

/* Whether a combinator of `kind` over inputs ids[0..n) reading (state,
 * value) is what its inputs (st, data; st[i] 0: unknown, never acknowledged,
 * unreadable or pending, so it may have been heard as anything, even
 * NOT_FOUND as a rejection) determine; why filled when not. With a timeout
 * of its own it may also read timed out (when is judged apart). */
static inline int
pm_comb_judge(int kind, int n, const char *const *ids, int own_timeout, const int *st,
              const char **data, int state, const char *value, char *why, size_t cap)
{
    int ok = 0, nfail = 0, nunk = 0;
    for (int i = 0; i < n; i++) {
        nfail += s_cj_failed(st[i]);
        nunk += !st[i];
    }
    if (state == PM_STATE_TIMEDOUT && own_timeout)
        return 1;
    json_t *j = NULL;
    if (((kind == PM_COMBINE_ALL || kind == PM_COMBINE_ALL_SETTLED) &&
         state == PM_STATE_RESOLVED) ||
        ((kind == PM_COMBINE_ALL || kind == PM_COMBINE_ANY) && state == PM_STATE_REJECTED))
        j = json_loads(value, JSON_DECODE_ANY, NULL);
    switch (kind) {
    case PM_COMBINE_ALL:
        if (state == PM_STATE_RESOLVED) {
            ok = !nfail && json_is_array(j) && json_array_size(j) == (size_t) n;
            for (int i = 0; ok && i < n; i++)
                ok = !st[i] ? json_is_string(json_array_get(j, (size_t) i)) ||
                                  json_is_object(json_array_get(j, (size_t) i))
                            : s_cj_jstr_is(json_array_get(j, (size_t) i), data[i]);
            if (!ok)
                snprintf(why, cap, "%s", nfail ? "resolved although an input failed"
                                               : "not the inputs' values in order");
        } else if (state == PM_STATE_REJECTED) {
            for (int i = 0; !ok && i < n; i++)
                ok = !st[i] ? json_is_object(j) && s_cj_jstr_is(json_object_get(j, "id"), ids[i])
                            : s_cj_failed(st[i]) && s_cj_jfail_is(j, ids[i], st[i], data[i]);
            if (!ok)
                snprintf(why, cap, "%s", nfail || nunk
                                             ? "the reason names no failed input as it reads"
                                             : "rejected although every input resolved");
        } else {
            snprintf(why, cap, "all settles resolved or rejected only");
        }
        break;
    case PM_COMBINE_ANY:
        if (state == PM_STATE_RESOLVED) {
            ok = nunk > 0;
            for (int i = 0; !ok && i < n; i++)
                ok = st[i] == PM_STATE_RESOLVED && !strcmp(data[i], value);
            if (!ok)
                snprintf(why, cap, "not the value of a resolved input");
        } else if (state == PM_STATE_REJECTED) {
            ok = nfail + nunk == n && json_is_array(j) && json_array_size(j) == (size_t) n;
            for (int i = 0; ok && i < n; i++)
                ok = !st[i] ? json_is_object(json_array_get(j, (size_t) i))
                            : s_cj_jfail_is(json_array_get(j, (size_t) i), ids[i], st[i],
                                         data[i]);
            if (!ok)
                snprintf(why, cap, "%s", nfail + nunk < n ? "rejected although an input resolved"
                                                          : "not every input's failure in order");
        } else {
            snprintf(why, cap, "any settles resolved or rejected only");
        }
        break;
    case PM_COMBINE_RACE:
        ok = nunk > 0;
        for (int i = 0; !ok && i < n; i++)
            ok = st[i] == state && !strcmp(data[i], value);
        if (!ok)
            snprintf(why, cap, "not the outcome of any input");
        break;
    case PM_COMBINE_ALL_SETTLED:
        ok = state == PM_STATE_RESOLVED && json_is_array(j) && json_array_size(j) == (size_t) n;
        for (int i = 0; ok && i < n; i++) {
            json_t *o = json_array_get(j, (size_t) i);
            ok = json_is_object(o) &&
                 (!st[i] || (s_cj_jstr_is(json_object_get(o, "state"), pm_state_name(st[i])) &&
                             s_cj_jstr_is(json_object_get(o, st[i] == PM_STATE_RESOLVED ? "value"
                                                                                    : "reason"),
                                       data[i])));
        }
        if (!ok)
            snprintf(why, cap, "not every input's outcome in order");
        break;
    default:
        snprintf(why, cap, "unknown kind");
    }
    json_decref(j);
    return ok;
}

#endif
