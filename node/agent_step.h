/*
 * agent_step.h - driving a real agent (pm_agent_t, agent.c) without its poll
 * loop, its socket or its signals: the deterministic simulator (tests/sim,
 * issue 14) runs many agents in one thread and steps each in turn.
 *
 * The agent is the production code; only its edges differ:
 *   - no local socket: client frames are handed in (pm_agent_sim_deliver)
 *     and what it sends to clients leaves through the current local sender
 *     (localsock.h; the simulator installs a capture per agent);
 *   - no signalfd, no zmq_poll: pm_agent_sim_step runs one loop iteration
 *     without waiting (mesh inbox, store answers, then every timer);
 *   - the mesh binds in the current in-memory network (memnet.h), the WAL on
 *     the current disk (disk.h; in batch mode through the syncer the
 *     simulator installs instead of the fsync thread, wal.h), the clock and
 *     randomness are the
 *     current ones (clock.h, rand.h): the caller makes this agent's context
 *     current before every call here, pm_agent_destroy included;
 *   - coordination "mem://" uses pm_agent_coord_mem (agent_priv.h), the
 *     in-memory store whose virtual clock the caller advances.
 * The ZeroMQ context is the caller's (only the store client's inproc pair
 * uses it); pm_agent_destroy leaves it alone.
 */
#ifndef PM_AGENT_STEP_H
#define PM_AGENT_STEP_H

#include "agent.h"
#include "coord.h"

#include <stddef.h>
#include <stdint.h>

/* An agent for cfg (node: its name) in the current seam context; zmq_ctx is
 * borrowed and must outlive it. NULL with a logged reason. Free with
 * pm_agent_destroy (in its context). */
pm_agent_t *pm_agent_sim_new(const pm_config_t *cfg, const char *node, void *zmq_ctx);
/* One frame from the client whose routing id is rid, as the socket would
 * hand it over (a new rid opens a session). */
void pm_agent_sim_deliver(pm_agent_t *self, const uint8_t *rid, size_t rid_len,
                          const uint8_t *buf, size_t len);
/* One loop iteration at the current clock's "now", without waiting. */
void pm_agent_sim_step(pm_agent_t *self);
/* Milliseconds until the agent next needs a step if nothing arrives. */
int64_t pm_agent_sim_timeout(pm_agent_t *self);
/* The agent's primary id space (where it mints). Borrowed. */
const char *pm_agent_sim_space(const pm_agent_t *self);
/* Its configuration store client (NULL: none); the simulator cuts it off. */
pm_coord_t *pm_agent_sim_coord(pm_agent_t *self);
/* Its status as `pmesh status` shows it (JSON, malloc'd; NULL if out of
 * memory), read directly: a STATUS request's reply may be held behind
 * replication, which is what the simulator wants to look at then. */
char *pm_agent_sim_status(pm_agent_t *self);

#endif
