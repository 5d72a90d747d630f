/*
 * store.h - the promise table: every promise this agent owns, their deadlines
 * and who watches them. Owned by the reactor thread; no locks, no I/O, no
 * knowledge of clients or peers. Callers change it through operations and hear
 * about changes through watches (one promise) and the listener (every change),
 * which is the narrow interface the WAL and the mesh build on.
 */
#ifndef PM_STORE_H
#define PM_STORE_H

#include "pmesh.h"
#include "timer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pm_store pm_store_t;
typedef struct pm_prom pm_prom_t;
typedef struct pm_watch pm_watch_t;

/* Called once when the watched promise settles (or is dropped from the store,
 * with p->state still PM_STATE_PENDING is never the case: dropped promises are
 * settled ones). The watch is already unlinked when fn runs; fn may free it and
 * may call back into the store. */
typedef void(pm_watch_fn)(pm_watch_t *w, pm_prom_t *p);

struct pm_watch {
    pm_watch_t *next;
    pm_watch_t **pprev; /* NULL when not linked */
    pm_watch_fn *fn;
};

typedef struct pm_prom_extra {
    char *key;            /* idempotency key, or NULL */
    size_t label_count;
    pm_label_t *labels;   /* strings owned here */
} pm_prom_extra_t;

/* A promise. Read it freely; change it only through the store. */
struct pm_prom {
    pm_timer_t timer;       /* earliest of timeout_at and heartbeat_at */
    uint8_t state;          /* pm_state_t */
    uint8_t passive;        /* a replica of another owner's promise: no timers fire */
    uint16_t id_len;
    uint32_t data_len;
    int64_t created_ms;     /* unix ms */
    int64_t settled_ms;     /* 0 while pending */
    int64_t timeout_at;     /* 0: none */
    int64_t heartbeat_at;   /* 0: none */
    int64_t heartbeat_ms;
    uint64_t seq;           /* creation order, for list cursors */
    uint8_t *data;          /* value if resolved, else reason (NUL-terminated); NULL if none */
    pm_watch_t *watches;
    pm_prom_extra_t *extra; /* NULL unless labels or a key */
    pm_prom_t *older, *newer;               /* every promise, in creation order */
    pm_prom_t *settled_older, *settled_newer; /* settled ones, in the order they settled */
    char id[];
};

typedef struct pm_create_args {
    const char *id;  /* required; minted by the caller */
    int64_t timeout_ms;
    int64_t heartbeat_ms;
    /* Restoring (WAL replay, replication): the original times, absolute;
     * 0 means "compute from now". */
    int64_t created_ms;
    int64_t timeout_at;
    int64_t heartbeat_at;
    int passive;     /* a replica: kept, never fires */
    const char *key;
    size_t label_count;
    const pm_label_t *labels;
} pm_create_args_t;

typedef enum pm_store_event {
    PM_STORE_CREATED = 1,
    PM_STORE_SETTLED,
    PM_STORE_HEARTBEAT,
    PM_STORE_DROPPED,
} pm_store_event_t;

/* Told about every change after it happened. */
typedef void(pm_store_listener_fn)(void *arg, pm_store_event_t ev, const pm_prom_t *p);

typedef struct pm_store_limits {
    size_t max_value_bytes;
    size_t max_labels;
    size_t max_id_bytes;     /* ids, keys, label keys and values */
} pm_store_limits_t;

/* Caller owns the store. */
pm_store_t *pm_store_new(const pm_store_limits_t *limits);
/* Frees every promise; watches still linked are dropped without being called. */
void pm_store_destroy(pm_store_t **self_p);
void pm_store_set_listener(pm_store_t *self, pm_store_listener_fn *fn, void *arg);

/* Creates a promise. With a key that names an existing promise, returns that
 * one with *created = 0 and changes nothing. */
int pm_store_create(pm_store_t *self, const pm_create_args_t *args, int64_t now, pm_prom_t **out,
                    int *created);
/* Settles: state is RESOLVED (data = value), REJECTED or CANCELED (data =
 * reason). Identical outcome again: PM_OK, nothing changes. Other outcome:
 * PM_ERR_ALREADY_SETTLED (or PM_ERR_TIMED_OUT if it timed out). Watches fire
 * before this returns (or, when called from a watch, right after it). */
int pm_store_settle(pm_store_t *self, const char *id, int state, const void *data, size_t len,
                    int64_t now, pm_prom_t **out);
/* Restoring: settles id with any final state (TIMEDOUT included) at time at.
 * Same outcome again: PM_OK. Watches fire as for pm_store_settle. */
int pm_store_apply_settle(pm_store_t *self, const char *id, int state, const void *data,
                          size_t len, int64_t at);
/* Restoring: sets the heartbeat deadline of a pending promise. */
int pm_store_apply_heartbeat(pm_store_t *self, const char *id, int64_t at);
/* Makes every passive promise whose id starts with prefix active (its timers
 * armed); returns how many. Deadlines already past fire on the next tick. */
size_t pm_store_activate(pm_store_t *self, const char *prefix);
/* The reverse: promises under prefix become passive replicas (timers off);
 * with keep set, every promise NOT under prefix does. */
size_t pm_store_passivate(pm_store_t *self, const char *prefix, int keep);
/* Removes a settled promise. PM_ERR_NOT_FOUND, or PM_ERR_BAD_REQUEST if it
 * is pending. */
int pm_store_drop(pm_store_t *self, const char *id);
/* Drops up to max settled promises settled before `before`; returns how
 * many. Visits settled promises in the order they settled and stops at the
 * first settled at or after `before` (one restored with an older time after
 * it waits for it: retention is a lower bound). */
size_t pm_store_expire(pm_store_t *self, int64_t before, size_t max);
/* The oldest promise (iterate with ->newer), or NULL. */
pm_prom_t *pm_store_oldest(pm_store_t *self);

/* Extends the heartbeat deadline of a pending promise that has one. */
int pm_store_heartbeat(pm_store_t *self, const char *id, int64_t now, pm_prom_t **out);
/* The promise with that id, or NULL. Borrowed. */
pm_prom_t *pm_store_get(pm_store_t *self, const char *id);
/* Links w on pending promise p; fn runs when p settles. */
void pm_store_watch(pm_prom_t *p, pm_watch_t *w, pm_watch_fn *fn);
/* Links w on any list of watches (for owners that keep their own lists). */
void pm_watch_link(pm_watch_t **head, pm_watch_t *w, pm_watch_fn *fn);
/* Unlinks w if linked; safe to call twice. */
void pm_watch_cancel(pm_watch_t *w);

/* Fires every deadline due at `now`. */
void pm_store_tick(pm_store_t *self, int64_t now);
/* The earliest deadline, or INT64_MAX if none. */
int64_t pm_store_next_deadline(const pm_store_t *self);

typedef struct pm_list_filter {
    int state;           /* 0: any */
    const char *prefix;  /* NULL: any */
    const char *label_key;
    const char *label_value;
    uint32_t limit;
    const char *cursor;  /* NULL or "": from the oldest */
} pm_list_filter_t;

/* Fills out[0..limit) with matching promises, oldest first, passive copies
 * of other owners' promises left out; returns how many. next_cursor (at
 * least 48 bytes) gets the cursor of the next page, or "". */
size_t pm_store_list(pm_store_t *self, const pm_list_filter_t *f, const pm_prom_t **out,
                     char *next_cursor, size_t cursor_cap);

/* Number of promises in a state (0: all). */
size_t pm_store_count(const pm_store_t *self, int state);

/* The promise's labels and key, or empty. */
const char *pm_prom_key(const pm_prom_t *p);

#endif
