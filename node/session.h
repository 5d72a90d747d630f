/*
 * session.h - client and peer sessions: one per ZeroMQ routing id (its id-mint
 * lease, its waiters), one per peer agent (replies go back over the mesh);
 * idle sessions are swept, and a stall of the agent itself forgives them.
 */
#ifndef PM_SESSION_H
#define PM_SESSION_H

#include "agent_priv.h"

/* The session with this id, or NULL if it is gone. */
pm_session_t *pm_session_by_id(pm_agent_t *self, uint64_t id);
/* The session of routing id rid (created on first sight); its last_seen becomes now. */
pm_session_t *pm_session_get(pm_agent_t *self, const uint8_t *rid, size_t len, int64_t now);
/* Closes s: its waiters go, its worker registration goes; frees s. */
void pm_session_close(pm_agent_t *self, pm_session_t *s, const char *why);
/* zhashx destructor of the sessions table. */
void pm_session_destructor(void **item);
/* The session standing for another agent: its requests are served like a
 * client's, its replies go back over the mesh. */
pm_session_t *pm_session_peer(pm_agent_t *self, const char *node);
/* Closes sessions silent for client_timeout. A session without a keep-alive
 * thread that still has waiters is kept: its awaits end by their own timeout
 * or by settlement. */
void pm_session_sweep(pm_agent_t *self, int64_t now);
/* After a stall, the silence was ours, not the clients': every session gets
 * a full client_timeout again (a worker expired for it would never hear
 * that its registration is gone). */
void pm_session_check_stall(pm_agent_t *self, int64_t mono);

#endif
