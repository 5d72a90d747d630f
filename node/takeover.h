/*
 * takeover.h - the id spaces this agent serves (rules in spaces.h): records
 * to the backups, an owner's records applied to our copy (fenced in
 * backup.c), a dead member's spaces taken over by its heir, our spaces
 * moving away, spaces resumed after a restart, empty spaces retired.
 */
#ifndef PM_TAKEOVER_H
#define PM_TAKEOVER_H

#include "agent_priv.h"

/* Once a second: drop promises past retention; now and then, compact; every
 * retire_interval, give up served spaces left empty. */
void pm_takeover_housekeeping(pm_agent_t *self, int64_t mono);
/* Journal hook: a record was written; records of spaces we serve go to the
 * backups too. */
void pm_takeover_on_record(void *arg, const pm_rec_t *rec, const uint8_t *buf, size_t len);
/* An owner's records for us to keep. */
void pm_takeover_on_replicate(pm_agent_t *self, const char *from, const pm_msg_t *m);
/* Replica hook: every record of `only` (a space just claimed) or, NULL, of
 * every space we serve, for a new backup or after a takeover. */
void pm_takeover_full_state(void *arg, pm_replica_t *r, const char *only, pm_replica_add_fn *add);
/* Replica hook: a backup told us a space of ours moved on. */
void pm_takeover_on_fenced(void *arg, const char *space, uint64_t epoch, const char *fencer);
/* Mesh hook: a space we served is served elsewhere at a newer epoch. */
void pm_takeover_on_contested(void *arg, const char *space);
void pm_takeover_on_moved(void *arg, const char *space);
/* We serve space at epoch from now on (a takeover, a resumed space). */
void pm_takeover_take_space(pm_agent_t *self, const char *space, uint64_t epoch,
                            const char *why);
/* A restarted agent resumes a space it served before only if nobody took it
 * over, and nobody served it at a newer epoch than ours meanwhile (then its
 * WAL would be stale: that server's own restart resumes it). */
void pm_takeover_check_probation(pm_agent_t *self, int64_t mono);
/* Mesh hook: a member came, changed or went. */
void pm_takeover_on_member(void *arg, pm_mesh_event_t ev, const char *name);

/* zhashx destructor of agent->stale_tail items. */
void pm_takeover_stale_destructor(void **item);

#endif
