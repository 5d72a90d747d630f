/*
 * isr_agent.h - the coordinator's environment (isr.h) for the agent.
 */
#ifndef PM_ISR_AGENT_H
#define PM_ISR_AGENT_H

#include "agent_priv.h"
#include "isr.h"

/* pm_isr_new(&cfg, &pm_isr_agent_env, agent, ...). */
extern const pm_isr_env_t pm_isr_agent_env;

/* FORCE_OWNER (pmesh space force-owner), the operator's request on the
 * local socket: refused from peers and without accept_data_loss; carried
 * out by pm_isr_force with the agent's own store client, answered when the
 * store has. Returns a pm_err for the dispatcher, or PM_OK when answered
 * or under way. */
int pm_isr_agent_force(pm_agent_t *self, pm_session_t *s, const pm_msg_t *m);

#endif
