/*
 * replica.h - replication of this agent's promises to its backups.
 *
 * Every record of a space this agent serves (the journal hands them over as
 * they are written) goes to R-1 backups, chosen by rendezvous hashing on the
 * agent's primary id space over the alive members, in one REPLICATE message
 * per space per loop iteration, over the FIFO channel to each backup. The
 * backups acknowledge; the journal holds replies until every counted backup
 * has acknowledged the records before them. A backup that joins the set is
 * first sent the whole state ("copies the state over") and only counts once
 * it has acknowledged that. Records are numbered in a stream of this process
 * (see backup.h): a backup that missed some asks for the whole state again
 * rather than acknowledge over a hole, and a backup that restarted (its
 * primary space changed) is a new backup. Knows nothing of the store: the
 * agent supplies the full state when asked.
 */
#ifndef PM_REPLICA_H
#define PM_REPLICA_H

#include "mesh.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pm_replica pm_replica_t;

/* Adds one record of space to a full-state transfer. */
typedef void(pm_replica_add_fn)(pm_replica_t *r, const char *space, const uint8_t *rec,
                                 size_t len);

typedef struct pm_replica_hooks {
    /* Emits every record of the full state of space, or (NULL) of every
     * served space. */
    void (*full_state)(void *arg, pm_replica_t *r, const char *space, pm_replica_add_fn *add);
    /* Backup `fencer` refused our records for space: it knows a claim at
     * `epoch` (its own, or another it heard of) that may win over ours. */
    void (*fenced)(void *arg, const char *space, uint64_t epoch, const char *fencer);
} pm_replica_hooks_t;

/* replicas is R (>= 2); stream is this process's stream id (random, not 0:
 * the caller draws it); now_ms the monotonic time. The replica never reads
 * the clock or the random source: time is handed to it (here, flush and
 * ack). Caller owns the result. */
pm_replica_t *pm_replica_new(pm_mesh_t *mesh, const char *primary, int replicas,
                             const pm_replica_hooks_t *hooks, void *arg, uint64_t stream,
                             int64_t now_ms);
void pm_replica_destroy(pm_replica_t **self_p);
/* Queues a record of a space this agent serves (copied). */
void pm_replica_record(pm_replica_t *self, const char *space, const uint8_t *rec, size_t len);
/* Once per loop iteration: re-checks the backup set and sends what is queued. */
void pm_replica_flush(pm_replica_t *self, int64_t now_ms);
/* A backup's REPLICATE_ACK (an acknowledgement, a resync request or a
 * fencing refusal). */
void pm_replica_ack(pm_replica_t *self, const char *from, const pm_msg_t *m, int64_t now_ms);
/* Sends the whole state to every backup again: after a space moved away,
 * the records of it that the backups refused left a hole in the stream. */
void pm_replica_resync(pm_replica_t *self);
/* Streams the whole state of space (just taken over) to the backups as
 * ordinary records, so the backups that hold the rest keep counting (and
 * stay heirs) while they receive it. Returns the records queued. */
size_t pm_replica_add_space(pm_replica_t *self, const char *space);
/* Records produced so far, and acknowledged by every counted backup (equal
 * to produced when no backup can be had: the mesh is too small). */
uint64_t pm_replica_produced(const pm_replica_t *self);
uint64_t pm_replica_acked(const pm_replica_t *self);
/* Issue 11, R1: with a configuration store, only the recorded in-sync set
 * counts. pm_replica_set_gate(self, nodes, pids, n) makes pm_replica_acked
 * the lowest acknowledgement among exactly those backups (a member that is
 * not a counted backup of the same process holds everything back; an empty
 * set acknowledges on local durability). pids are the members' process ids
 * (pm_replica_pid_of). Called once per loop iteration by the agent. */
void pm_replica_set_gate(pm_replica_t *self, const char *const *nodes, const uint64_t *pids,
                         size_t n);
/* Backup i (0.. while it returns 1): name, process id, acknowledged LSN,
 * counted (holds the whole state). */
int pm_replica_backup(const pm_replica_t *self, size_t i, const char **name, uint64_t *pid,
                      uint64_t *acked, int *counted);
/* The process id in an agent's primary space name ("NODE-TAG": TAG in base
 * 36); 0 when it does not parse. */
uint64_t pm_replica_pid_of(const char *primary);
/* Fills the replication part of a status snapshot (stats.h): backups and
 * their progress. */
struct pm_stats;
void pm_replica_stats_fill(pm_replica_t *self, struct pm_stats *out);

#endif
