/*
 * thens.h - continuations: a then watches its source until it settles, runs
 * its function (or rejects its target), then watches the target; the
 * continuations of spaces we back up are kept (pm_rthen_t) for a takeover.
 */
#ifndef PM_THENS_H
#define PM_THENS_H

#include "agent_priv.h"

/* Frees t (unlinked, not watching). */
void pm_then_free(pm_then_t *t);
/* Takes t off the agent's list of continuations. */
void pm_then_unlink(pm_agent_t *self, pm_then_t *t);
/* Continuations from the WAL whose target still waits: chained again on a
 * pending source; run again (at-least-once) when the source had resolved, as
 * their invocation may have been lost with the last run; rejected when the
 * source failed. */
void pm_then_revive(pm_agent_t *self, const pm_cont_t *c);
/* The record of a registered continuation (borrows from t). */
pm_rec_t pm_then_rec(const pm_then_t *t);
/* Continuations from the WAL whose target still waits: those of spaces we
 * serve are chained again on a pending source, run again (at-least-once)
 * when the source had resolved, as their invocation may have been lost with
 * the last run, and rejected when the source failed; the others are kept
 * for a takeover. */
size_t pm_then_restore(pm_agent_t *self, const pm_journal_state_t *st);
/* zhashx destructor of the backed-up continuations. */
void pm_then_rthen_destructor(void **item);
/* Keeps a continuation or combinator of a space we back up for a takeover (copied). */
void pm_then_rthen_add(pm_agent_t *self, const pm_cont_t *c);
/* q (pending, a combinator) is expected to settle with state and data (its
 * early guess, fanins.c): the functions of q's continuations start now
 * (place.c, pm_place_early); a continuation that would only reject its
 * target waits for q to settle. */
void pm_then_early(pm_agent_t *self, pm_prom_t *q, int state, const uint8_t *data, size_t len);
/* Calls each(arg, source, function, target) for every then watching
 * pending p (its function is what runs when p resolves); returns how many. */
typedef void(pm_then_each_fn)(void *arg, const char *source, const char *function,
                              const char *target);
size_t pm_then_each_on(pm_prom_t *p, pm_then_each_fn *each, void *arg);
/* The id space of prefix moved to another agent: the thens on a source in
 * it whose targets we still serve subscribe to the source at its new owner
 * instead of watching our passive copy (thens.c). */
void pm_then_source_moved(pm_agent_t *self, const char *prefix);
/* The remote-await subscription of pid ended (waiters.c): its thens fire on
 * the owner's answer, or subscribe again later on an error. */
void pm_then_heard(pm_agent_t *self, const char *pid, const pm_msg_t *reply, int err);
/* Whether a then still waits on the remote-await subscription of pid. */
int pm_then_listening(pm_agent_t *self, const char *pid);
/* Pid's space is served here now: its thens watch it here. */
void pm_then_local(pm_agent_t *self, const char *pid);
/* Subscriptions of remote sources that failed are made again when due. */
void pm_then_tick(pm_agent_t *self, int64_t mono);
/* Frees the remote sources' table (teardown, after the thens). */
void pm_then_destroy_remote(pm_agent_t *self);
/* THEN: creates the target promise and chains function on source m->id. */
int pm_then_do(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now);

#endif
