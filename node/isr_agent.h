/*
 * isr_agent.h - the coordinator's environment (isr.h) for the agent.
 */
#ifndef PM_ISR_AGENT_H
#define PM_ISR_AGENT_H

#include "agent_priv.h"
#include "isr.h"

/* pm_isr_new(&cfg, &pm_isr_agent_env, agent, ...). */
extern const pm_isr_env_t pm_isr_agent_env;

#endif
