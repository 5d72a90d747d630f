/*
 * err.c - names and messages of pm_err, and promise state names. Shared by the
 * agent, the library and the CLI so the three always speak the same words.
 */
#include "pmesh.h"

#include <string.h>

static const struct {
    int err;
    const char *name;
    const char *message;
} s_errors[] = {
    {PM_OK, "OK", "success"},
    {PM_ERR_INTERNAL, "INTERNAL", "internal error"},
    {PM_ERR_NOT_FOUND, "NOT_FOUND", "no promise with that id"},
    {PM_ERR_ALREADY_SETTLED, "ALREADY_SETTLED", "promise already settled with another outcome"},
    {PM_ERR_TIMED_OUT, "TIMED_OUT", "promise timed out"},
    {PM_ERR_VALUE_TOO_LARGE, "VALUE_TOO_LARGE", "value is larger than the agent accepts"},
    {PM_ERR_BAD_REQUEST, "BAD_REQUEST", "malformed or invalid request"},
    {PM_ERR_AGENT_SHUTTING_DOWN, "AGENT_SHUTTING_DOWN", "the agent is shutting down"},
    {PM_ERR_WAIT_TIMEOUT, "WAIT_TIMEOUT", "wait timed out while the promise is pending"},
    {PM_ERR_UNREACHABLE, "UNREACHABLE", "the agent cannot be reached"},
    {PM_ERR_BAD_VERSION, "BAD_VERSION", "wire version not supported"},
    {PM_ERR_NOT_HOLDER, "NOT_HOLDER", "invocation is not held by this worker"},
    {PM_ERR_LIMIT, "LIMIT", "limit reached"},
    {PM_ERR_OWNER_LOST, "OWNER_LOST", "the promise's owner is lost"},
    {PM_ERR_NO_SESSION, "NO_SESSION", "no session: say hello first"},
    {PM_ERR_UNAVAILABLE, "UNAVAILABLE",
     "the id space is unavailable: its in-sync copies cannot be reached or too few are in sync"},
    {PM_ERR_NOT_SETTLEABLE, "NOT_SETTLEABLE",
     "the promise is a combinator: only its inputs settle it"},
};

static const char *s_states[] = {"unknown", "pending", "resolved", "rejected", "canceled",
                                 "timedout"};

const char *
pm_err_name(int err)
{
    for (size_t i = 0; i < sizeof s_errors / sizeof s_errors[0]; i++)
        if (s_errors[i].err == err)
            return s_errors[i].name;
    return "UNKNOWN_ERROR";
}

const char *
pm_strerror(int err)
{
    for (size_t i = 0; i < sizeof s_errors / sizeof s_errors[0]; i++)
        if (s_errors[i].err == err)
            return s_errors[i].message;
    return "unknown error";
}

const char *
pm_state_name(int state)
{
    if (state < PM_STATE_PENDING || state > PM_STATE_TIMEDOUT)
        return s_states[0];
    return s_states[state];
}

int
pm_state_parse(const char *name)
{
    for (int s = PM_STATE_PENDING; s <= PM_STATE_TIMEDOUT; s++)
        if (name && strcmp(name, s_states[s]) == 0)
            return s;
    return 0;
}

static const char *s_combinators[] = {"unknown", "all", "any", "race", "all-settled"};

const char *
pm_combinator_name(int kind)
{
    if (kind < PM_COMBINE_ALL || kind > PM_COMBINE_ALL_SETTLED)
        return s_combinators[0];
    return s_combinators[kind];
}

int
pm_combinator_parse(const char *name)
{
    if (!name)
        return 0;
    if (strcmp(name, "all_settled") == 0 || strcmp(name, "allSettled") == 0)
        return PM_COMBINE_ALL_SETTLED;
    for (int k = PM_COMBINE_ALL; k <= PM_COMBINE_ALL_SETTLED; k++)
        if (strcmp(name, s_combinators[k]) == 0)
            return k;
    return 0;
}
