/*
 * fanin.h - combinators (all, any, race, all-settled) as pure state: which
 * inputs have been heard and how, and whether the combinator settles now,
 * with what. No I/O, no clock, no store: the agent (fanins.c) subscribes to
 * the inputs and feeds what it hears in here.
 *
 * Design (issue 15)
 * -----------------
 * A combinator is an ordinary promise q, owned by the agent that created it,
 * plus this state: its kind, its inputs (promise ids, in order, on any
 * agents; duplicates allowed and each counted as an input of its own), one
 * outcome slot per input (not heard yet, or the input's final state with its
 * value or reason), how many inputs were heard, resolved and failed, and the
 * timeout of q (an ordinary promise timeout: the store times q out, which
 * ends the combinator like any other settlement of q).
 *
 * "An input settled" is pm_fanin_hear(f, i, state, data): it fills slot i if
 * it is empty (the first outcome heard per input wins; hearing it again, from
 * a second subscription or after a takeover, is ignored), and says whether q
 * settles now:
 *
 *   all          the first failure (rejected / canceled / timed out) rejects
 *                q with {"id","state","reason"} of that input; once every
 *                input resolved, q resolves with the JSON array of values
 *                in input order.
 *   any          the first input to resolve resolves q with its value
 *                (bytes as they are); once every input failed, q rejects
 *                with the JSON array of {"id","state","reason"} in input
 *                order.
 *   race         the first input heard settles q the same way: resolved
 *                with its value, or rejected / canceled / timed out with
 *                its reason.
 *   all-settled  once every input settled, q resolves with the JSON array
 *                of {"state":"resolved","value":V} or
 *                {"state":"rejected"|"canceled"|"timedout","reason":R}.
 *
 * A value V (and a reason R) in those JSON texts is a JSON string when its
 * bytes are valid UTF-8, else {"base64":"..."} (RFC 4648 with padding), so
 * arbitrary bytes round-trip. A combined value larger than max_value rejects
 * q with a reason starting "VALUE_TOO_LARGE:". After q settled (done), every
 * hear is ignored: settling is single-assignment, so duplicates are harmless.
 *
 * Durability lives in the agent: q's creation and a COMBINE record (kind,
 * inputs) are journalled and replicated like a continuation; outcomes are
 * not, because every input is single-assignment and settled promises are
 * kept (retention): whoever revives the combinator subscribes again and
 * hears the same outcomes. For race and any, which input comes "first" may
 * differ after a takeover, but q settled before it is settled in the copy
 * too, and an unsettled q has told nobody anything.
 */
#ifndef PM_FANIN_H
#define PM_FANIN_H

#include "pmesh.h"

#include <stddef.h>
#include <stdint.h>

/* Default limit on a combinator's inputs (max_fanin_inputs): 1,000 ids of up
 * to 256 bytes keep a request and its record under ~260 KB, and the
 * subscriptions of one combinator cost one relay per remote input. */
#define PM_FANIN_MAX_INPUTS 1000

/* The reason an input a combinator waited for in vain is rejected with, at
 * its owner, for good (fanins.c: pm_fanins_tombstone). The simulator's
 * checker knows it by this prefix (tests/sim). */
#define PM_FANIN_NOT_FOUND_PREFIX "NOT_FOUND: no promise with that id"
#define PM_FANIN_NOT_FOUND_REASON                                                              \
    PM_FANIN_NOT_FOUND_PREFIX " (a combinator waited for it in vain: it is recorded as never "  \
                              "made)"

typedef struct pm_fanin_input {
    int state;     /* 0: not heard yet; else the input's final PM_STATE_* */
    uint8_t *data; /* value (resolved) or reason; owned; NULL when empty */
    size_t len;
} pm_fanin_input_t;

typedef struct pm_fanin {
    int kind;               /* PM_COMBINE_* */
    size_t n;               /* inputs */
    char **ids;             /* owned */
    pm_fanin_input_t *in;   /* one slot per input */
    size_t heard, resolved, failed;
    size_t max_value;       /* largest combined value (0: no limit) */
    int done;               /* the combinator settled: ignore everything */
} pm_fanin_t;

/* How the combinator settles. data is malloc'd (caller frees), NUL-terminated
 * after len bytes; NULL when empty. */
typedef struct pm_fanin_outcome {
    int state;
    char *data;
    size_t len;
} pm_fanin_outcome_t;

/* Whether a combinator of kind over n inputs may be made with at most max
 * inputs: PM_OK, PM_ERR_BAD_REQUEST (unknown kind, no input) or PM_ERR_LIMIT. */
int pm_fanin_check(int kind, size_t n, size_t max);

/* A combinator over ids[0..n-1] (copied). Caller owns it; out of memory
 * stops the process. */
pm_fanin_t *pm_fanin_new(int kind, const char *const *ids, size_t n, size_t max_value);
void pm_fanin_destroy(pm_fanin_t **self_p);
/* A copy of self with everything heard so far (a combinator's early guess:
 * fanins.c feeds it tentative outcomes too). Caller owns it. */
pm_fanin_t *pm_fanin_clone(const pm_fanin_t *self);

/* Input i settled with state (value or reason in data/len). Returns 1 when
 * the combinator settles now (*out filled), 0 when not (yet, or the slot was
 * heard before, or the combinator is done), -1 on a bad argument (i out of
 * range, a pending or unknown state). */
int pm_fanin_hear(pm_fanin_t *self, size_t i, int state, const void *data, size_t len,
                  pm_fanin_outcome_t *out);

/* Early copies (fanins.c, waiters.c; PROTOCOL.md 5a). An input's owner
 * may send a combinator's agent an input's outcome before it is durable,
 * for an early start of the combinator's continuation; that costs a second
 * settlement message, so it is asked only for the outcomes that would
 * decide the combinator: a bit (1 << state) per outcome. */
#define PM_FANIN_EVERY                                                                         \
    ((1u << PM_STATE_RESOLVED) | (1u << PM_STATE_REJECTED) | (1u << PM_STATE_CANCELED) |       \
     (1u << PM_STATE_TIMEDOUT))
#define PM_FANIN_FAILURES (PM_FANIN_EVERY & ~(1u << PM_STATE_RESOLVED))

/* The outcomes with which any input decides a combinator of kind, whatever
 * was heard before: all, a failure; any, a resolve; race, every outcome;
 * all-settled, none. */
unsigned pm_fanin_decides(int kind);

/* How many positions pm_fanin_last_pending looks at, at most. */
#define PM_FANIN_LAST_SCAN 8

/* The input whose outcome, whatever it is, decides self: the one id that
 * every position not heard yet holds (once the others are heard, it is
 * last). Its first such position, or -1 (several ids pending, none, self
 * done, or more than PM_FANIN_LAST_SCAN positions pending: not looked at). */
long pm_fanin_last_pending(const pm_fanin_t *self);

/* Appends to *buf (malloc'd, grown as needed; *len its length) the JSON of
 * bytes: a string when valid UTF-8, else {"base64":"..."}. 0, or -1 when out
 * of memory. */
int pm_fanin_json_bytes(char **buf, size_t *len, size_t *cap, const void *data, size_t n);

#endif
