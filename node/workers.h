/*
 * workers.h - function workers and the invocations waiting for them.
 *
 * A worker is a client session that registered function names with a
 * concurrency. An invocation (function, input, the promise its result
 * settles) waits in its function's FIFO until a worker of that function has
 * a free slot, then is sent to it. If the worker goes away mid-invocation the
 * invocation goes back to the head of the queue (at-least-once); the target
 * promise still settles once, because the store refuses a second outcome.
 * Owned by the reactor thread.
 */
#ifndef PM_WORKERS_H
#define PM_WORKERS_H

#include "store.h"
#include "wire.h"

#include <jansson.h>

#include <stdint.h>

typedef struct pm_workers pm_workers_t;

/* Who placed an invocation: the member (node, NULL: this agent) and its id
 * there (inv_id; NULL: none, the result settles the target directly). Its
 * result goes back to whoever placed it (place.c says why). */
typedef struct pm_workers_origin {
    const char *node;
    const char *inv_id;
    /* Continuations the placer chained after the target (place.c): kept
     * with the invocation and handed back with its result. */
    const pm_wire_step_t *next;
    size_t n_next;
} pm_workers_origin_t;

/* What the worker table needs from its owner: sending to a worker session,
 * handing a result to the invocation's origin (settle: which may refuse it
 * or hold it; PM_ERR_VALUE_TOO_LARGE makes the table reject the target
 * instead), and whether a target still waits for a result (true when
 * unknown). */
typedef struct pm_workers_hooks {
    void (*send)(void *arg, void *who, const pm_msg_t *msg);
    int (*settle)(void *arg, const pm_workers_origin_t *origin, const char *function,
                  const char *target, int state, const void *data, size_t len);
    int (*pending)(void *arg, const char *target);
} pm_workers_hooks_t;

/* Offered a queued invocation nobody here serves and this agent placed
 * (origin->node NULL); returns 1 to take it. */
typedef int(pm_workers_take_fn)(void *arg, const pm_workers_origin_t *origin,
                                 const char *function, const uint8_t *input, size_t len,
                                 const char *target);

typedef struct pm_workers_stats {
    uint64_t invoked;   /* invocations created */
    uint64_t dispatched;
    uint64_t completed; /* worker answered ok */
    uint64_t failed;    /* worker answered with an error */
    uint64_t retried;   /* re-queued after a worker vanished */
    uint64_t dropped;   /* target settled before a worker took it */
    uint64_t duplicates; /* an invocation already queued or running here (its origin's id,
                          * or its target) */
    uint64_t not_holder;
    size_t queued;
    size_t inflight;
    size_t workers;
} pm_workers_stats_t;

/* id_space prefixes invocation ids. Caller owns the result. */
pm_workers_t *pm_workers_new(const char *id_space, const pm_workers_hooks_t *hooks, void *arg);
void pm_workers_destroy(pm_workers_t **self_p);

/* Session `who` serves these functions with `concurrency` slots. Registering
 * again adds functions and replaces the concurrency. */
int pm_workers_register(pm_workers_t *self, void *who, const char *const *functions, size_t n,
                        uint32_t concurrency);
/* Queues an invocation of `function` with input that settles target_id;
 * origin (NULL: placed here, no id) says where its result goes. One
 * invocation per origin id is queued or running at a time (its placer
 * sends it again when it hears nothing: place.c), or, without an id, one
 * per target. */
int pm_workers_invoke(pm_workers_t *self, const char *function, const uint8_t *input, size_t len,
                      const char *target_id, const pm_workers_origin_t *origin);
/* A worker's answer. PM_ERR_NOT_HOLDER if `who` does not hold that invocation
 * (unknown, already answered, or given to another worker). */
int pm_workers_result(pm_workers_t *self, void *who, const pm_msg_t *result);
/* Session `who` is gone: its invocations go back to their queues. */
void pm_workers_forget(pm_workers_t *self, void *who);
/* Whether `who` is a registered worker. */
int pm_workers_is_worker(pm_workers_t *self, void *who);
void pm_workers_stats(pm_workers_t *self, pm_workers_stats_t *out);
/* Whether a local worker serves function. */
int pm_workers_serves(pm_workers_t *self, const char *function);
/* Offers every queued invocation of a function no local worker serves to
 * take (for placement on another member); taken ones leave the queue. */
void pm_workers_offer_unserved(pm_workers_t *self, pm_workers_take_fn *take, void *arg);
/* Fills out[0..cap) with each served function's free and total slots;
 * returns how many. Names are borrowed. */
size_t pm_workers_caps(pm_workers_t *self, pm_fn_cap_t *out, size_t cap);
/* Adds each function's numbers (invoked, completed, failed, retried,
 * queued, workers) to a status snapshot (stats.h). */
struct pm_stats;
void pm_workers_functions_fill(pm_workers_t *self, struct pm_stats *out);

#endif
