/*
 * records.h - a promise as records, and records applied to the store: the
 * one place both directions live. The WAL replay (journal.c), a backup
 * applying an owner's stream (agent.c), the full-state transfer to a new
 * backup and a takeover's copy to our backups (agent.c) and the snapshot
 * (journal.c) all go through here, so a promise restored from the WAL and one
 * received from its owner end up the same. Pure: no I/O, no clock.
 */
#ifndef PM_RECORDS_H
#define PM_RECORDS_H

#include "store.h"
#include "wire.h"

/* What pm_records_apply did (besides the store's own errors, < 0). */
#define PM_RECORD_APPLIED 0
#define PM_RECORD_REDUNDANT 1 /* already applied: the store holds it as it says */

/* Applies a promise record (CREATE, SETTLE, HEARTBEAT or DROP) to store:
 * created promises are passive replicas when `passive`. Idempotent: applying
 * a record again changes nothing and returns PM_RECORD_REDUNDANT. A negative
 * pm_err when the store refuses it (a settle with another outcome, a
 * heartbeat of a settled promise), PM_ERR_BAD_REQUEST for other kinds. Out of
 * memory stops the agent (an acknowledged record is never dropped).
 * `passive` records come from the space's owner (a replication stream,
 * fenced to the newest epoch): they are the truth, so a settle record
 * replaces the outcome of a passive copy settled otherwise (an outcome
 * nobody acknowledged, kept from when this agent served the space). In the
 * WAL replay (not passive) the first settle wins, as it did live. */
int pm_records_apply(pm_store_t *store, const pm_rec_t *rec, int passive);
/* `passive` for a create record whose promise the owner is known to hold
 * pending (no settle record follows it): a copy settled otherwise goes
 * pending again (takeover.c). */
#define PM_RECORDS_PENDING_AT_OWNER 2

/* Fills v with a view of p (pointers borrow from p). */
void pm_records_view(const pm_prom_t *p, pm_wire_promise_t *v);

/* Receives one record (borrowed for the call). */
typedef void(pm_records_emit_fn)(void *arg, const pm_rec_t *rec);
/* Emits the records that recreate p: its creation (as pending), and its
 * outcome if it has one. */
void pm_records_of_promise(const pm_prom_t *p, pm_records_emit_fn *emit, void *arg);
/* A continuation's record: chained on p, runs function, settles q. */
pm_rec_t pm_records_then(const char *p, const char *function, const char *q);

/* A continuation as records carry it (strings owned): a then (p -> function,
 * or on_reject when p fails -> q) or a combinator (kind over inputs -> q).
 * One shape for the WAL replay, the backed-up copies and the revival. */
typedef struct pm_cont {
    char *p;          /* then: the source */
    char *function;   /* then */
    char *on_reject;  /* then: NULL, or run with p's reason when p fails */
    int combinator;   /* 0: a then; else PM_COMBINE_* */
    size_t n_inputs;  /* combinator */
    char **inputs;
    char *q;          /* the promise it settles */
} pm_cont_t;

/* Fills c with copies of a THEN or COMBINE record's fields. */
void pm_cont_init(pm_cont_t *c, const pm_rec_t *rec);
/* Frees c's strings (c itself is the caller's). */
void pm_cont_clear(pm_cont_t *c);
/* The record of c (pointers borrow from c). */
pm_rec_t pm_cont_rec(const pm_cont_t *c);

#endif
