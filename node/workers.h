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

#include <stdint.h>

typedef struct pm_workers pm_workers_t;

/* Sends msg to the worker whose session handle is `who`. */
typedef void(pm_workers_send_fn)(void *arg, void *who, const pm_msg_t *msg);

typedef struct pm_workers_stats {
    uint64_t invoked;   /* invocations created */
    uint64_t dispatched;
    uint64_t completed; /* worker answered ok */
    uint64_t failed;    /* worker answered with an error */
    uint64_t retried;   /* re-queued after a worker vanished */
    uint64_t dropped;   /* target settled before a worker took it */
    uint64_t not_holder;
    size_t queued;
    size_t inflight;
    size_t workers;
} pm_workers_stats_t;

/* id_space prefixes invocation ids. Caller owns the result. */
pm_workers_t *pm_workers_new(pm_store_t *store, const char *id_space, pm_workers_send_fn *send,
                             void *arg);
void pm_workers_destroy(pm_workers_t **self_p);

/* Session `who` serves these functions with `concurrency` slots. Registering
 * again adds functions and replaces the concurrency. */
int pm_workers_register(pm_workers_t *self, void *who, const char *const *functions, size_t n,
                        uint32_t concurrency);
/* Queues an invocation of `function` with input that settles target_id. */
int pm_workers_invoke(pm_workers_t *self, const char *function, const uint8_t *input, size_t len,
                      const char *target_id);
/* A worker's answer. PM_ERR_NOT_HOLDER if `who` does not hold that invocation
 * (unknown, already answered, or given to another worker). */
int pm_workers_result(pm_workers_t *self, void *who, const pm_msg_t *result, int64_t now);
/* Session `who` is gone: its invocations go back to their queues. */
void pm_workers_forget(pm_workers_t *self, void *who);
/* Whether `who` is a registered worker. */
int pm_workers_is_worker(pm_workers_t *self, void *who);
void pm_workers_stats(pm_workers_t *self, pm_workers_stats_t *out);

#endif
