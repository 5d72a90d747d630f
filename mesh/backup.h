/*
 * backup.h - the backup's side of replication: for every owner that sends us
 * its records, which of its stream we hold without a gap.
 *
 * An owner numbers its records in a stream (a random id per owner process)
 * and sends them in order; ZeroMQ keeps that order on one connection but
 * drops what was queued when a connection is torn down (a peer restarted, or
 * was declared dead and came back). A backup that applied records after such
 * a hole would acknowledge state it does not have, and the owner would count
 * it as a full copy. So a backup only applies and acknowledges records that
 * follow on what it holds: a full state transfer (counted, so a transfer cut
 * short is noticed) starts the stream, and every later message must begin
 * where the last one ended. Anything else is answered with a resync request:
 * the owner sends its whole state again. Pure bookkeeping, no I/O; owned by
 * the reactor thread.
 */
#ifndef PM_BACKUP_H
#define PM_BACKUP_H

#include "wire.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pm_backup pm_backup_t;

/* What to do with one REPLICATE message. */
typedef struct pm_backup_verdict {
    int fenced;    /* refuse every record: the sender lost the space (spaces.h) */
    uint64_t fence_epoch; /* the epoch to refuse them with */
    int apply;     /* apply records [skip, record_count) to the passive copy */
    size_t skip;   /* records at the front that we hold already */
    int ack;       /* acknowledge lsn (everything up to it is held, no gap) */
    uint64_t lsn;
    int resync;    /* ask the owner for its whole state (rate-limited here) */
    const char *why; /* for the log when resync (static string) */
} pm_backup_verdict_t;

/* Caller owns the result; NULL when out of memory. */
pm_backup_t *pm_backup_new(void);
void pm_backup_destroy(pm_backup_t **self_p);

/* What this agent knows of the claims on the space of a REPLICATE. */
typedef struct pm_backup_claims {
    const char *self_node; /* this agent's name */
    int owned;             /* whether we serve the space ourselves */
    uint64_t mine;         /* at which epoch, if owned */
    uint64_t known;        /* the highest epoch announced for it */
} pm_backup_claims_t;

/* Decides what to do with m, a REPLICATE from owner `from`, at monotonic time
 * now_ms, and advances the owner's stream position. Records from a sender
 * whose claim loses to one in `claims` are fenced: refused, and the owner's
 * stream is forgotten (it has a hole now: what follows needs a transfer). A
 * transfer's closing marker carries no records: nothing to fence. claims
 * NULL: no fencing (tests of the stream alone). */
void pm_backup_check(pm_backup_t *self, const char *from, const pm_msg_t *m,
                     const pm_backup_claims_t *claims, int64_t now_ms, pm_backup_verdict_t *v);
/* Forgets owner `from` (it is gone; a successor starts a new stream). */
void pm_backup_forget(pm_backup_t *self, const char *from);
/* Owners we hold a gap-free stream of. */
size_t pm_backup_synced(const pm_backup_t *self);
/* Resync requests sent so far. */
uint64_t pm_backup_resyncs(const pm_backup_t *self);

#endif
