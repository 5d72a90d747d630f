/*
 * agent.h - the pmeshd reactor: one thread that owns the promise table, the
 * client sessions, the waiters and the workers, and serves the local socket.
 */
#ifndef PM_AGENT_H
#define PM_AGENT_H

#include "config.h"

typedef struct pm_agent pm_agent_t;

/* Binds the local socket (creating its directory; mode 0660) and sets up the
 * store. node and socket_path are resolved by the caller. Returns NULL with a
 * logged reason on failure. Caller owns the agent. */
pm_agent_t *pm_agent_new(const pm_config_t *cfg, const char *node, const char *socket_path);
/* Serves until SIGTERM or SIGINT (which the caller must have blocked), then
 * answers pending awaits with AGENT_SHUTTING_DOWN and returns 0. */
int pm_agent_run(pm_agent_t *self);
/* Closes the socket, removes the socket file, frees everything. */
void pm_agent_destroy(pm_agent_t **self_p);

#endif
