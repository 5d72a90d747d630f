/*
 * fanins.h - combinators run by the agent (the rules are in fanin.h): a
 * combinator is a promise q of ours with one subscription per input. A
 * local input is watched in the store; a remote one shares the remote-await
 * subscription of waiters.c (one await at the input's owner per input id,
 * however many combinators and awaits here wait on it), which a takeover
 * of the owner parks and sends again to the heir. Combinators are journalled
 * and replicated as COMBINE records and revived like continuations.
 */
#ifndef PM_FANINS_H
#define PM_FANINS_H

#include "agent_priv.h"

/* COMBINE: creates q (new_id, or minted) and subscribes to every input. */
int pm_fanins_do(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t now);
/* A combinator from the WAL or a backed-up copy whose q still waits:
 * subscribes to its inputs again (their outcomes are single-assignment, so
 * what it hears again is what it heard before). */
void pm_fanins_revive(pm_agent_t *self, const pm_cont_t *c);
/* The COMBINE record of c (borrows from c). */
pm_rec_t pm_fanins_rec(const pm_comb_t *c);
/* Adds every combinator to a snapshot (from a pm_journal_extra_fn). */
void pm_fanins_snapshot(pm_agent_t *self, pm_journal_t *j);
/* Forgets the combinators whose q starts with prefix (their space moved on). */
void pm_fanins_drop_space(pm_agent_t *self, const char *prefix);
/* Whether id is a combinator of ours (settled only by its inputs). */
int pm_fanins_is_combinator(pm_agent_t *self, const char *id);
/* The remote-await subscription of input pid ended: with the owner's reply
 * (the settled promise, or an error), or with err when reply is NULL. */
void pm_fanins_heard(pm_agent_t *self, const char *pid, const pm_msg_t *reply, int err);
/* "No promise id" made final here, its owner (a combinator's final lookup,
 * from another agent's subscription or our own combinator): id is created
 * rejected NOT_FOUND through the store (journalled, replicated, its replies
 * held until durable) unless it exists; *out is the promise either way.
 * Why this is sound: fanins.c. */
int pm_fanins_tombstone(pm_agent_t *self, const char *id, pm_prom_t **out);
/* An early copy of the owner's answer to the remote-await subscription of
 * pid (Reply.tentative: the settle is not durable yet): heard in each
 * subscribed combinator's early guess only (fanins.c, s_hear_early). */
void pm_fanins_tentative(pm_agent_t *self, const char *pid, const pm_msg_t *reply);
/* Whether a combinator still waits on the remote-await subscription of pid. */
int pm_fanins_listening(pm_agent_t *self, const char *pid);
/* Input pid's space is served here now: its subscribers watch it locally. */
void pm_fanins_local(pm_agent_t *self, const char *pid);
/* Frees every combinator (agent teardown; the store must still exist). */
/* Inputs not found yet are asked again when due (called every loop). */
void pm_fanins_fire(pm_agent_t *self, int64_t mono);
void pm_fanins_destroy_all(pm_agent_t *self);

#endif
