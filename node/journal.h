/*
 * journal.h - the agent's durability: every change to the store and every
 * continuation becomes a record in the WAL (wal.c) before anything that
 * acknowledges it leaves the agent. Replies are handed here and held until
 * the records written before them are durable (group commit: one fsync
 * releases everything that waited on it). On start the journal replays the
 * WAL into the store; when the log grows it compacts it into a snapshot of
 * the live state. Owned by the reactor thread.
 */
#ifndef PM_JOURNAL_H
#define PM_JOURNAL_H

#include "records.h"
#include "store.h"
#include "wire.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pm_journal pm_journal_t;

/* Delivers a released message: to local session `session` (peer == NULL) or
 * to mesh member `peer`. buf (malloc'd, len bytes) is handed over. tag and
 * t0_us are what the holder passed (for latency accounting). */
typedef void(pm_journal_send_fn)(void *arg, uint64_t session, const char *peer, uint8_t *buf,
                                 size_t len, int tag, int64_t t0_us);

/* A continuation as the journal sees it: a then (chained on p, runs
 * function, its result settles q) or a combinator (records.h). */
typedef pm_cont_t pm_journal_then_t;

/* A space the agent served besides its primary, or its primary at an epoch
 * above 1 (generation 0 records), and not released since. */
typedef struct pm_journal_claim {
    char *space;
    uint64_t epoch;
} pm_journal_claim_t;

/* What replay found besides the promises (which it put in the store). */
typedef struct pm_journal_state {
    char space[PM_WIRE_MAX_NAME + 1]; /* the agent's id space; "" on a new data dir */
    char mint[PM_WIRE_MAX_NAME + 1];  /* the space it minted ids in (its own, or resumed) */
    uint64_t mint_pid;                /* resumed: the last process here that served it */
    uint64_t generation;              /* starts so far, this one included */
    pm_journal_claim_t *claimed;      /* spaces it served (took over or resumed) */
    size_t claimed_count;
    pm_journal_then_t *thens;         /* continuations whose q was pending */
    size_t then_count;
    uint64_t records;
    int64_t recovery_ms;
} pm_journal_state_t;

/* Opens the WAL in dir (fsync: 0 always, 1 batch, 2 never); dir NULL: no
 * WAL, only replication holds replies. NULL with a message in err. Caller
 * owns the journal. */
pm_journal_t *pm_journal_open(const char *dir, int fsync_mode, void *zmq_ctx,
                              pm_journal_send_fn *send, void *arg, char *err, size_t errlen);
/* Stops taking records, makes what was appended durable, releases what is
 * held and covered (durable here, and for replies at the backups), drops the
 * rest, and frees. */
void pm_journal_close(pm_journal_t **self_p);

/* Replays the WAL into store (which must be empty and have no listener yet)
 * and fills *st (free with pm_journal_state_free). -1 with a message in err
 * when the WAL cannot be trusted (corruption before its tail). */
int pm_journal_replay(pm_journal_t *self, pm_store_t *store, pm_journal_state_t *st, char *err,
                      size_t errlen);
void pm_journal_state_free(pm_journal_state_t *st);

/* Records a store change (use as, or from, the store listener). */
void pm_journal_store_event(pm_journal_t *self, pm_store_event_t ev, const pm_prom_t *p);
/* Records a continuation registration. */
void pm_journal_then(pm_journal_t *self, const char *p, const char *function, const char *q);
/* Records a continuation or a combinator (a THEN or COMBINE record). */
void pm_journal_cont(pm_journal_t *self, const pm_rec_t *rec);
/* Records this start: our primary space, the space we mint ids in (mint:
 * the primary itself, or a space resumed from the process before us on this
 * data dir; mint.h) with the last process of this data dir that served it
 * (mint_pid), and the generation. Recorded again when the mint space
 * changes; a snapshot carries the last one. */
void pm_journal_generation(pm_journal_t *self, const char *space, const char *mint,
                           uint64_t mint_pid, uint64_t generation);
/* Makes everything appended so far durable before returning (not with
 * fsync never). 0, or -1 when the WAL failed. */
int pm_journal_sync(pm_journal_t *self);
/* Records that this agent serves space at epoch (a takeover or a resumed
 * space): a restart resumes it unless somebody else serves it by then. */
void pm_journal_claim(pm_journal_t *self, const char *space, uint64_t epoch);
/* Records that space is no longer served here (it moved to a newer epoch). */
void pm_journal_release(pm_journal_t *self, const char *space);

/* Whether a reply sent now must wait (records are appended, not yet
 * durable). */
int pm_journal_must_hold(const pm_journal_t *self);
/* Holds an encoded message until everything appended so far is durable here
 * and acknowledged by the backups. */
void pm_journal_hold(pm_journal_t *self, uint64_t session, const char *peer, uint8_t *buf,
                     size_t len);
/* The same; wal_only: wait for the local WAL only (a backup's own
 * acknowledgement must not wait on its own backups: that could wait in a
 * circle). */
void pm_journal_hold_ex(pm_journal_t *self, uint64_t session, const char *peer, uint8_t *buf,
                        size_t len, int wal_only, int tag, int64_t t0_us, int64_t deadline);
/* Hands every held reply that still waits for the backups' acknowledgement
 * to fail (buf is handed over), instead of ever sending it: after a space
 * moved away, or when stopping, those changes may never reach the agent that
 * serves their space next, so they must not be acknowledged. Own holds
 * (pm_journal_hold_at) not covered by the backups go to their fn with
 * PM_JOURNAL_FAILED. Returns how many. */
typedef void(pm_journal_fail_fn)(void *arg, uint64_t session, const char *peer, uint8_t *buf,
                                 size_t len);
size_t pm_journal_fail_unreplicated(pm_journal_t *self, pm_journal_fail_fn *fail, void *arg);
/* Hands every held message whose deadline (monotonic ms, given to
 * pm_journal_hold_ex; 0: none; negative: a bound of the agent's own at
 * -deadline, not its asker's) has passed by now to fail (fail_bound for a
 * bound), instead of ever sending it: its asker stops waiting then (an
 * await's timeout), and an answer that cannot be made durable in time is
 * not given. Returns how many. */
size_t pm_journal_expire(pm_journal_t *self, int64_t now, pm_journal_fail_fn *fail,
                         pm_journal_fail_fn *fail_bound, void *arg);
/* A position in the journal: what was appended so far, and what was
 * produced for the backups so far. Both only grow. */
typedef struct pm_journal_pos {
    uint64_t lsn, rseq;
} pm_journal_pos_t;
/* The position after everything appended so far. */
pm_journal_pos_t pm_journal_pos(const pm_journal_t *self);
/* Whether everything up to pos is durable here and acknowledged by the
 * counted backups (and the journal has not failed). */
int pm_journal_covered(const pm_journal_t *self, pm_journal_pos_t pos);
/* A hold of the owner's own (not a message): fn(item, how) runs once, with
 * PM_JOURNAL_RELEASED when pos is covered, PM_JOURNAL_FAILED when
 * pm_journal_fail_unreplicated fails what is not at the backups yet (fn
 * may hold again), or PM_JOURNAL_CLOSED when the journal closes with it
 * held (fn must only free item: its owner is going). Released in position
 * order; not bound to the order of replies (nothing is sent for it). */
enum { PM_JOURNAL_RELEASED, PM_JOURNAL_FAILED, PM_JOURNAL_CLOSED };
typedef void(pm_journal_hold_fn)(void *item, int how);
void pm_journal_hold_at(pm_journal_t *self, pm_journal_pos_t pos, pm_journal_hold_fn *fn,
                        void *item);
/* Replication watermarks: records produced for backups so far, and how far
 * every backup has acknowledged. Releases what is now covered. */
void pm_journal_repl(pm_journal_t *self, uint64_t produced, uint64_t acked);
/* Called with every record appended (encoded; borrowed), e.g. to replicate. */
typedef void(pm_journal_record_fn)(void *arg, const pm_rec_t *rec, const uint8_t *buf,
                                    size_t len);
void pm_journal_set_record_hook(pm_journal_t *self, pm_journal_record_fn *fn, void *arg);
/* Once per loop iteration: writes appended records, starts or completes an
 * fsync, and releases held messages that are now durable. 0; 1 when what it
 * released appended records (written already; the caller sends them to the
 * backups now); -1 on an I/O error (the agent must stop acknowledging). */
int pm_journal_flush(pm_journal_t *self);
/* The fsync thread's socket (poll for ZMQ_POLLIN), or NULL. */
void *pm_journal_socket(pm_journal_t *self);
void pm_journal_readable(pm_journal_t *self);

/* Adds what a snapshot keeps besides the promises: pending continuations
 * and served spaces (with the two calls below). 0 or -1. */
typedef int(pm_journal_extra_fn)(void *arg, pm_journal_t *j);
/* Compacts when the log since the last snapshot is large: writes every
 * promise of store, the generation, and (through extra) every pending
 * continuation and claimed space as a snapshot. Returns 1 if it compacted,
 * 0 if not needed, -1 on error. */
int pm_journal_maybe_compact(pm_journal_t *self, pm_store_t *store, pm_journal_extra_fn *extra,
                             void *arg);
/* From inside pm_journal_extra_fn: adds one continuation to the snapshot. */
void pm_journal_snapshot_then(pm_journal_t *self, const char *p, const char *function,
                              const char *q);
/* From inside pm_journal_extra_fn: adds one continuation or combinator record. */
void pm_journal_snapshot_cont(pm_journal_t *self, const pm_rec_t *rec);
/* From inside pm_journal_extra_fn: adds one claimed space to the snapshot. */
void pm_journal_snapshot_claim(pm_journal_t *self, const char *space, uint64_t epoch);

/* Fills the WAL part of a status snapshot (stats.h). */
struct pm_stats;
void pm_journal_stats_fill(pm_journal_t *self, struct pm_stats *out);

#endif
