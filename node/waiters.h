/*
 * waiters.h - awaits: a local waiter watches a promise of ours; awaits of a
 * promise another member owns share one subscription there (pm_rwait_t).
 * Every waiter ends with a reply: the promise, WAIT_TIMEOUT, or an error.
 */
#ifndef PM_WAITERS_H
#define PM_WAITERS_H

#include "agent_priv.h"

/* Unlinks and frees w (no reply is sent). */
void pm_waiter_free(pm_agent_t *self, pm_waiter_t *w);
/* Watch callback: the promise settled; answers the waiter and frees it. */
void pm_waiter_fired(pm_watch_t *watch, pm_prom_t *p);
/* A waiter for session s, not yet linked to anything. */
pm_waiter_t *pm_waiter_new(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono,
                           int *err);
/* AWAIT on a promise of ours: answered now if settled (or a poll), else a waiter. */
int pm_waiter_do_await(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono);
/* zhashx destructor of the remote-await table. */
void pm_waiter_rwait_destructor(void **item);
/* Answers every local waiter of a remote promise with the owner's reply (or
 * with err when reply is NULL), and forgets the subscription. */
void pm_waiter_rwait_finish(pm_agent_t *self, const char *pid, const pm_msg_t *reply, int err);
/* An await on a promise another member owns: one subscription there, however
 * many local waiters there are. */
/* Opens the one subscription on remote promise sub->id (an AWAIT with no
 * end; none must be open yet): sent to node, or, node NULL, parked until
 * the space's owner is known (unknown: not heard of yet, given up after a
 * while). Its answer ends it through pm_waiter_rwait_finish. */
void pm_waiter_subscribe(pm_agent_t *self, const pm_msg_t *sub, const char *node, int unknown);
/* The open subscription on remote promise id asks its owner for early
 * copies of these outcomes from now on (1 << state, fanin.h; a combinator
 * whose input became the last it waits for: fanins.c). */
void pm_waiter_widen(pm_agent_t *self, const char *id, unsigned states);
int pm_waiter_remote_await(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, const char *node,
                           int64_t mono);
/* Answers WAIT_TIMEOUT to every waiter whose wait ended by mono. */
void pm_waiter_fire_timeouts(pm_agent_t *self, int64_t mono);
/* Adds a waiter of session s on the remote promise m->id, under its
 * subscription (relay: the subscription's relay id if there is none yet). */
int pm_waiter_remote_add(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m, int64_t mono,
                         uint64_t relay);

/* When an await (m) that arrives at mono ends by its timeout: mono +
 * timeout_ms, or 0 for none (no timeout, a poll, or one beyond a century). */
int64_t pm_waiter_deadline(int64_t mono, const pm_msg_t *m);

#endif
